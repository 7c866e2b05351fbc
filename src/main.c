/* sluice: command line, listening sockets, worker threads, signals. */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/generation.h"
#include "sluice/http.h"
#include "sluice/jwks.h"
#include "sluice/keystore.h"
#include "sluice/limit.h"
#include "sluice/limit_local.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/notify.h"
#include "sluice/usage.h"
#include "sluice/util.h"
#include "sluice/waitq.h"
#include "sluice/worker.h"

#ifdef SLUICE_DEFAULT_CONFIG /* CMake's SLUICE_CONF_DIR */
#define DEFAULT_CONFIG SLUICE_DEFAULT_CONFIG
#else
#define DEFAULT_CONFIG "/etc/sluice/sluice.conf"
#endif
/* Connections the kernel holds before sluice accepts them: a burst of new
 * clients (thousands of streams opened at once) would otherwise see SYNs dropped
 * and retried a second later. The kernel caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 4096

static void usage(FILE *out)
{
    fprintf(out, "usage: sluice [-c FILE]     run with that configuration (default %s)\n"
                 "       sluice -t [-c FILE]  check the configuration and exit 0 or 1\n"
                 "       sluice -V            print the version\n"
                 "       sluice -D            print the configuration reference\n"
                 "  -C ID:DIR | DIR  outside systemd: where cred:NAME values are read, as the\n"
                 "                   unit's LoadCredential=ID:DIR loads them (cred:ID_FILE is\n"
                 "                   DIR/FILE); e.g. -C sluice:/etc/sluice/credentials\n",
            DEFAULT_CONFIG);
}

/* Loads path; every problem is printed (to_log: as error lines of the log). */
static struct config *load_or_report(const char *path, bool to_log)
{
    struct cfg_errors errs = { 0 };
    struct config *cfg = cfg_load(path, &errs);
    for (int i = 0; i < errs.n; i++) {
        if (to_log)
            log_error("%s", errs.lines[i]);
        else
            fprintf(stderr, "%s\n", errs.lines[i]);
    }
    cfg_errors_free(&errs);
    return cfg;
}

/* A listening socket for l; with reuseport, several workers bind the same
 * address and the kernel spreads connections between them. */
static int listen_socket(const struct cfg_listen *l, bool reuseport)
{
    char port[8];
    snprintf(port, sizeof(port), "%d", l->port);
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    int rc = getaddrinfo(l->host, port, &hints, &res);
    if (rc) {
        log_error("listen %s:%d: %s", l->host, l->port, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (reuseport)
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        log_error("listen %s:%d: %s", l->host, l->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

struct daemon {
    struct event_base *base;
    const char *path;
    struct lim_local *local;
    struct keystore *keys; /* runtime keys: state_dir, from start to exit */
    struct jwks_store *jwks; /* [auth]'s signing keys, from start to exit */
    struct generation *gen;
    struct worker **workers;
    int nworkers;
    struct event *watchdog_ev;
    int64_t watchdog_usec;
    /* Replaced generations, held until no worker or request uses them: the
     * main thread frees them (reap_cb), so freeing a 100,000-key config never
     * stalls a worker. */
    struct generation **retired;
    int nretired;
    struct event *reap_ev;
};

/* [server] pid_file: the PID, written whole (a temporary file renamed over
 * the name), so `kill -HUP $(cat FILE)` never reads half a number. */
static int write_pid_file(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp)) {
        log_error("pid_file %s: path too long", path);
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    if (fd < 0 || write(fd, line, (size_t)n) != n || close(fd) != 0 || rename(tmp, path) != 0) {
        log_error("pid_file %s: %s", path, strerror(errno));
        if (fd >= 0)
            unlink(tmp);
        return -1;
    }
    return 0;
}

/* Removes the pid file at exit, unless another sluice has written its own PID there since. */
static void remove_pid_file(const char *path)
{
    char line[32] = { 0 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n > 0 && strtol(line, NULL, 10) == (long)getpid())
        unlink(path);
}

static bool same_listen(const struct cfg_server *a, const struct cfg_server *b)
{
    if (a->workers != b->workers)
        return false;
    const struct cfg_listens *la[] = { &a->listen, &a->admin_listen };
    const struct cfg_listens *lb[] = { &b->listen, &b->admin_listen };
    for (int k = 0; k < 2; k++) {
        if (la[k]->n != lb[k]->n)
            return false;
        for (int i = 0; i < la[k]->n; i++)
            if (la[k]->v[i].port != lb[k]->v[i].port || la[k]->v[i].tls != lb[k]->v[i].tls ||
                strcmp(la[k]->v[i].host, lb[k]->v[i].host))
                return false;
    }
    return true;
}

/* SIGHUP: a new file replaces the old one whole, or not at all. */
static void reload(struct daemon *d)
{
    notify("RELOADING=1");
    struct config *cfg = load_or_report(d->path, true);
    mx_reload(cfg != NULL);
    if (!cfg) {
        log_error("reload of %s failed; still serving the previous configuration", d->path);
        notify("READY=1");
        return;
    }
    if (!same_listen(&cfg->server, &d->gen->cfg->server))
        log_warn("reload: listen and workers changes take effect at the next restart");
    const char *was = d->gen->cfg->server.pid_file, *now = cfg->server.pid_file;
    if ((was == NULL) != (now == NULL) || (was && strcmp(was, now)))
        log_warn("reload: a pid_file change takes effect at the next restart");
    was = keystore_dir(d->keys);
    now = cfg->server.state_dir;
    if ((was == NULL) != (now == NULL) || (was && strcmp(was, now)))
        log_warn("reload: a state_dir change takes effect at the next restart");
    char why[400];
    if (!jwks_store_configure(d->jwks, &cfg->auth, why, sizeof(why)))
        log_warn("reload: [auth] jwks: %s; keeping the previous signing keys", why);
    struct generation *g = gen_new(cfg, d->gen);
    for (int i = 0; i < d->nworkers; i++)
        worker_set_generation(d->workers[i], g);
    d->retired = sl_grow(d->retired, sizeof(*d->retired), d->nretired);
    d->retired[d->nretired++] = d->gen; /* with the main thread's reference */
    d->gen = g;
    log_set_level((enum log_level)cfg->server.log_level);
    usage_log_set(cfg->server.usage_log); /* reopened: SIGHUP is logrotate's other signal */
    log_info("reloaded %s: %d backends, %d keys", d->path, cfg->nbackends, cfg->nkeys);
    notify("READY=1");
}

/* Frees the retired generations only the main thread still holds: nothing
 * can take a new reference to one (workers take theirs from their current
 * generation), so a count of one is final. */
static void reap(struct daemon *d, bool all)
{
    int kept = 0;
    for (int i = 0; i < d->nretired; i++) {
        if (all || atomic_load(&d->retired[i]->refs) == 1)
            gen_unref(d->retired[i]);
        else
            d->retired[kept++] = d->retired[i];
    }
    if (kept < d->nretired)
        malloc_trim(0); /* a big config's pages go back to the system, not only to malloc */
    d->nretired = kept;
    if (!kept) { /* sl_grow's capacity follows the count: start again from none */
        free(d->retired);
        d->retired = NULL;
    }
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reap(arg, false);
}

/* Pets systemd's watchdog only while every worker's loop is turning. */
static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct daemon *d = arg;
    int64_t now = sl_now_ms(), limit = d->watchdog_usec / 1000;
    for (int i = 0; i < d->nworkers; i++) {
        if (now - atomic_load(&d->workers[i]->heartbeat_ms) > limit) {
            log_error("worker %d has not run for %lld ms; not petting the watchdog", i,
                      (long long)(now - atomic_load(&d->workers[i]->heartbeat_ms)));
            return;
        }
    }
    notify("WATCHDOG=1");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct daemon *d = arg;
    if (sig == SIGHUP)
        return reload(d);
    if (sig == SIGUSR1) { /* logrotate moved the usage log: write a new one */
        usage_log_set(d->gen->cfg->server.usage_log);
        return;
    }
    notify("STOPPING=1");
    log_info("%s: no longer accepting; finishing in-flight requests (shutdown_timeout %llds)",
             sig == SIGTERM ? "SIGTERM" : "SIGINT",
             (long long)(d->gen->cfg->server.shutdown_timeout_ms / 1000));
    for (int i = 0; i < d->nworkers; i++)
        worker_request_stop(d->workers[i]);
    event_base_loopexit(d->base, NULL);
}

static int start_workers(struct daemon *d)
{
    const struct config *cfg = d->gen->cfg;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    d->nworkers = cfg->server.workers ? (int)cfg->server.workers : (int)(cores > 0 ? cores : 1);
    d->workers = sl_calloc((size_t)d->nworkers, sizeof(*d->workers));
    bool reuseport = d->nworkers > 1;
    for (int i = 0; i < d->nworkers; i++) {
        int fds[64], kinds[64], nfds = 0;
        bool tls[64];
        const struct cfg_listens *lists[] = { &cfg->server.listen, &cfg->server.admin_listen };
        for (int k = 0; k < 2; k++) {
            for (int j = 0; j < lists[k]->n && nfds < 64; j++) {
                int fd = listen_socket(&lists[k]->v[j], reuseport);
                if (fd < 0) {
                    while (nfds)
                        close(fds[--nfds]);
                    return -1;
                }
                kinds[nfds] = k == 0 ? HTTP_LISTENER_API : HTTP_LISTENER_OPERATOR;
                tls[nfds] = lists[k]->v[j].tls;
                fds[nfds++] = fd;
            }
        }
        d->workers[i] = worker_new(i, d->gen, d->local, fds, kinds, tls, nfds);
        if (d->workers[i]) {
            d->workers[i]->keys = d->keys;
            d->workers[i]->jwks = d->jwks;
        }
        if (d->workers[i] && i == 0) /* fetches an https JWKS on its loop */
            jwks_store_attach(d->jwks, d->workers[i]->base, d->workers[i]->up);
        if (d->workers[i] && i == 0) /* one node-wide reader of Redis's change log */
            keystore_watch(d->keys, d->workers[i]->base, &d->workers[i]->limiter);
        if (!d->workers[i] || worker_start(d->workers[i]) != 0) {
            log_error("cannot start worker %d", i);
            return -1;
        }
    }
    return 0;
}

/* "sluice VERSION listening on ..." with every address, once it does. */
static void log_listening(const struct config *cfg, int nworkers)
{
    struct sl_buf addrs = { 0 };
    for (int j = 0; j < cfg->server.listen.n; j++)
        sl_buf_printf(&addrs, "%s%s:%d%s", j ? ", " : "", cfg->server.listen.v[j].host,
                      cfg->server.listen.v[j].port, cfg->server.listen.v[j].tls ? " (tls)" : "");
    for (int j = 0; j < cfg->server.admin_listen.n; j++)
        sl_buf_printf(&addrs, ", %s:%d (operator endpoints)", cfg->server.admin_listen.v[j].host,
                      cfg->server.admin_listen.v[j].port);
    log_info("sluice %s listening on %s (%d worker%s, %d backends, %d keys, limits %s)",
             SLUICE_VERSION, addrs.data, nworkers, nworkers == 1 ? "" : "s", cfg->nbackends,
             cfg->nkeys, cfg->redis.enabled ? "in Redis" : "in-process");
    sl_buf_free(&addrs);
}

/* The main thread's timers: systemd's watchdog (at half its interval) and
 * the reaping of retired generations (every second). */
static void start_timers(struct daemon *d)
{
    d->watchdog_usec = notify_watchdog_usec();
    if (d->watchdog_usec) {
        d->watchdog_ev = event_new(d->base, -1, EV_PERSIST, watchdog_cb, d);
        struct timeval tv = { (time_t)(d->watchdog_usec / 2000000),
                              (suseconds_t)(d->watchdog_usec / 2 % 1000000) };
        event_add(d->watchdog_ev, &tv);
    }
    d->reap_ev = event_new(d->base, -1, EV_PERSIST, reap_cb, d);
    event_add(d->reap_ev, &(struct timeval){ .tv_sec = 1 });
}

/* After the loop: workers joined and freed, then what they used. */
static void stop_all(struct daemon *d)
{
    for (int i = 0; i < d->nworkers; i++)
        if (d->workers[i] && d->workers[i]->thread)
            worker_join(d->workers[i]);
    keystore_unwatch(d->keys); /* its event is on worker 0's loop, stopped now */
    jwks_store_detach(d->jwks); /* likewise, before the curl multi goes */
    for (int i = 0; i < d->nworkers; i++)
        worker_free(d->workers[i]);
    free(d->workers);
    usage_log_close(); /* after the workers: their last records are written */
    if (d->watchdog_ev)
        event_free(d->watchdog_ev);
    if (d->reap_ev)
        event_free(d->reap_ev);
    event_base_free(d->base);
    reap(d, true);
    gen_unref(d->gen);
    lim_local_free(d->local);
    keystore_close(d->keys);
    jwks_store_free(d->jwks);
}

static int run(const char *path)
{
    /* No core dumps, no ptrace or /proc/PID/mem by other processes of the
     * same user: the process holds every backend credential. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct config *cfg = load_or_report(path, false);
    if (!cfg)
        return 1;
    mx_config_loaded();
    log_set_level((enum log_level)cfg->server.log_level);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    evthread_use_pthreads();

    struct daemon d = { .base = event_base_new(), .path = path, .gen = gen_new(cfg, NULL),
                        .local = lim_local_new(lim_window_ms()) };
    int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
    struct event *sigev[4];
    for (int i = 0; i < 4; i++) {
        sigev[i] = evsignal_new(d.base, sigs[i], on_signal, &d);
        evsignal_add(sigev[i], NULL);
    }
    if (cfg->server.usage_log)
        usage_log_set(cfg->server.usage_log);
    char why[700];
    d.keys = keystore_open(cfg->server.state_dir, why, sizeof(why));
    d.jwks = jwks_store_new();
    if (d.keys && !jwks_store_configure(d.jwks, &cfg->auth, why, sizeof(why))) {
        log_error("[auth] jwks: %s", why);
        for (int i = 0; i < 4; i++)
            event_free(sigev[i]);
        stop_all(&d);
        return 1;
    }
    if (!d.keys) {
        log_error("state_dir %s: %s", cfg->server.state_dir, why);
        for (int i = 0; i < 4; i++)
            event_free(sigev[i]);
        stop_all(&d);
        return 1;
    }
    /* Kept from start to exit: a reload does not move it. */
    char *pid_file = cfg->server.pid_file ? sl_strdup(cfg->server.pid_file) : NULL;
    int rc = 0;
    if ((pid_file && write_pid_file(pid_file) != 0) || start_workers(&d) != 0) {
        rc = 1;
        for (int i = 0; i < d.nworkers; i++)
            if (d.workers[i])
                worker_request_stop(d.workers[i]);
    } else {
        log_listening(cfg, d.nworkers);
        start_timers(&d);
        notify("READY=1");
        event_base_dispatch(d.base);
    }
    for (int i = 0; i < 4; i++)
        event_free(sigev[i]);
    stop_all(&d);
    if (pid_file)
        remove_pid_file(pid_file);
    free(pid_file);
    mx_shutdown();
    waitq_shutdown();
    cfg_forget_environment();
    curl_global_cleanup();
    libevent_global_shutdown();
    if (rc == 0)
        log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    bool test = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:C:tVDh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            cfg_set_credentials(optarg);
            break;
        case 't':
            test = true;
            break;
        case 'V':
            printf("sluice %s\n", SLUICE_VERSION);
            return 0;
        case 'D':
            cfg_print_reference();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (test) {
        struct config *cfg = load_or_report(path, false);
        if (cfg && cfg->auth.enabled) { /* a JWKS file is read as at start */
            struct jwks_store *js = jwks_store_new();
            char why[400];
            if (!jwks_store_configure(js, &cfg->auth, why, sizeof(why))) {
                fprintf(stderr, "%s: [auth] jwks: %s\n", path, why);
                cfg_unref(cfg);
                cfg = NULL;
            }
            jwks_store_free(js);
        }
        fprintf(stderr, "sluice: configuration file %s test %s\n", path,
                cfg ? "is successful" : "failed");
        cfg_unref(cfg);
        return cfg ? 0 : 1;
    }
    return run(path);
}
