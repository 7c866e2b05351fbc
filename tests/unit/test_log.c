/* The log: one line per event ("time level message"), below the level
 * nothing, and a line longer than the buffer cut, never split in two. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "sluice/log.h"

static char captured[8192];

/* What fn writes to stderr. */
static const char *capture(void (*fn)(void))
{
    int fds[2], saved = dup(STDERR_FILENO);
    if (pipe(fds) != 0)
        return "";
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    dup2(fds[1], STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], captured, sizeof(captured) - 1);
    close(fds[0]);
    captured[n > 0 ? n : 0] = '\0';
    return captured;
}

static void some_lines(void)
{
    log_set_level(LOG_WARN);
    log_msg(LOG_INFO, "not this one");
    log_msg(LOG_WARN, "worker %d: %s", 3, "redis down");
    log_msg(LOG_ERROR, "and this");
    log_set_level(LOG_INFO);
    log_line("access key=a status=200", 23);
}

static void a_long_line(void)
{
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    log_msg(LOG_ERROR, "%s", big);
}

int main(void)
{
    const char *out = capture(some_lines);
    CHECK(strstr(out, "not this one") == NULL);
    CHECK(strstr(out, " warn worker 3: redis down\n") != NULL);
    CHECK(strstr(out, " error and this\n") != NULL);
    CHECK(strstr(out, "\naccess key=a status=200\n") != NULL); /* a line made whole elsewhere: as it is */
    int lines = 0;
    for (const char *p = out; (p = strchr(p, '\n')); p++)
        lines++;
    CHECK(lines == 3);
    CHECK(out[4] == '-' && out[10] == 'T' && out[23] == 'Z'); /* 2026-12-06T12:00:00.123Z */
    CHECK(!log_enabled(LOG_DEBUG) && log_enabled(LOG_INFO));
    out = capture(a_long_line);
    CHECK(strlen(out) > 1000 && strlen(out) < 5000 && strchr(out, '\n') == out + strlen(out) - 1);
    return check_done();
}
