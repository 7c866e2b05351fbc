/* sd_notify without libsystemd: a datagram to $NOTIFY_SOCKET (a path or an
 * abstract '@' name), nothing without it; the watchdog interval for this
 * process only. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "sluice/notify.h"

static int bound(const char *name, bool abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    size_t len = strlen(name);
    memcpy(a.sun_path, name, len);
    if (abstract)
        a.sun_path[0] = '\0';
    if (bind(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)))
        perror("bind");
    return fd;
}

static bool got(int fd, const char *want)
{
    char buf[64] = { 0 };
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    return n == (ssize_t)strlen(want) && memcmp(buf, want, (size_t)n) == 0;
}

int main(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/sluice-notify-%d", (int)getpid());
    int fd = bound(path, false);
    setenv("NOTIFY_SOCKET", path, 1);
    notify("READY=1");
    CHECK(got(fd, "READY=1"));
    close(fd);
    unlink(path);
    char abstract[64];
    snprintf(abstract, sizeof(abstract), "@sluice-notify-%d", (int)getpid());
    fd = bound(abstract, true);
    setenv("NOTIFY_SOCKET", abstract, 1);
    notify("STOPPING=1");
    CHECK(got(fd, "STOPPING=1"));
    unsetenv("NOTIFY_SOCKET");
    notify("READY=1"); /* not started by systemd: nothing, no crash */
    CHECK(!got(fd, "READY=1"));
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    notify("READY=1");
    CHECK(!got(fd, "READY=1"));
    close(fd);

    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "30000000", 1);
    CHECK(notify_watchdog_usec() == 30000000);
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(notify_watchdog_usec() == 30000000);
    setenv("WATCHDOG_PID", "1", 1); /* meant for another process */
    CHECK(notify_watchdog_usec() == 0);
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "-5", 1);
    CHECK(notify_watchdog_usec() == 0);
    return check_done();
}
