/* One Redis connection on sluice's own transport, against a redis-server
 * this test starts on a free loopback port (with a password): AUTH and
 * SELECT go first, pipelined commands are answered in order, a wrong
 * password and a refused connection are named, a command after the close
 * is refused, a retired connection reads the replies it waits for before it
 * closes, and every pending callback hears the close. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <string.h>
#include <unistd.h>

#define CHECK_WITH_REDIS
#include "check.h"
#include "sluice/redis_conn.h"
#include "sluice/redis_reply.h"

static struct event_base *base;

struct seen {
    int up, down;
    enum rconn_err why;
    char detail[200];
    int replies, nulls;
    char last[512];
    long long order[8];
};

static void state(struct rconn *c, bool up, enum rconn_err why, const char *detail, void *arg)
{
    (void)c;
    struct seen *s = arg;
    if (up) {
        s->up++;
        return;
    }
    s->down++;
    s->why = why;
    snprintf(s->detail, sizeof(s->detail), "%s", detail ? detail : "");
}

static void reply(struct rconn *c, struct redisReply *rep, void *arg)
{
    (void)c;
    struct seen *s = arg;
    if (!rep) {
        s->nulls++;
        return;
    }
    if (rep->type == REDIS_REPLY_INTEGER && s->replies < 8)
        s->order[s->replies] = rep->integer;
    if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS ||
        rep->type == REDIS_REPLY_ERROR)
        snprintf(s->last, sizeof(s->last), "%s", rep->str);
    s->replies++;
}

static void loop_until(const int *counter, int n)
{
    for (int i = 0; i < 5000 && *counter < n; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(200);
    }
}

static struct rconn *open_as(int port, const char *password, int db, struct reply_pool *pool,
                             struct seen *s)
{
    struct rconn_opts o = { .host = "127.0.0.1", .port = port, .password = password, .db = db,
                            .connect_timeout_ms = 2000 };
    return rconn_new(base, &o, pool, state, NULL, s);
}

int main(void)
{
    int port = check_free_port();
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t redis = check_start_redis(port, "pw-1");
    base = event_base_new();
    struct reply_pool *pool = reply_pool_new();

    /* up once AUTH and SELECT are answered; commands queued before that go after them */
    struct seen s = { 0 };
    struct rconn *c = NULL;
    for (int i = 0; i < 50 && !s.up; i++) { /* until the server listens */
        if (c && s.down) {
            rconn_free(c);
            c = NULL;
        }
        if (!c) {
            s = (struct seen){ 0 };
            c = open_as(port, "pw-1", 3, pool, &s);
            const char *argv[] = { "CLIENT", "INFO" };
            rconn_sendv(c, 2, argv, NULL, reply, &s);
        }
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(20000);
    }
    CHECK(s.up == 1 && rconn_up(c));
    loop_until(&s.replies, 1);
    CHECK(s.replies == 1 && strstr(s.last, "db=3") != NULL); /* SELECT ran first */

    /* a pipeline: answered in order, in one loop pass */
    s.replies = 0;
    for (int i = 0; i < 5; i++) {
        const char *argv[] = { "INCR", "n" };
        CHECK(rconn_sendv(c, 2, argv, NULL, reply, &s));
    }
    CHECK(rconn_pending(c) == 5);
    loop_until(&s.replies, 5);
    CHECK(s.replies == 5 && s.order[0] == 1 && s.order[4] == 5);
    CHECK(strncmp(rconn_where(c), "127.0.0.1:", 10) == 0 && strstr(rconn_where(c), portstr));

    /* retired: no new commands, the one waiting is still answered, then it closes */
    s.replies = 0;
    const char *slow[] = { "INCR", "n" };
    rconn_sendv(c, 2, slow, NULL, reply, &s);
    rconn_retire(c, 1000);
    CHECK(!rconn_sendv(c, 2, slow, NULL, reply, &s));
    CHECK(!rconn_up(c));
    loop_until(&s.down, 1);
    CHECK(s.replies == 1 && s.order[0] == 6 && s.down == 1 && s.why == RC_DROPPED);
    rconn_free(c);

    /* a name with several addresses (localhost: ::1 and 127.0.0.1, in the
     * order the system gives) reaches the server on whichever it listens on */
    struct seen l = { 0 };
    struct rconn_opts lo = { .host = "localhost", .port = port, .password = "pw-1",
                             .connect_timeout_ms = 2000 };
    c = rconn_new(base, &lo, pool, state, NULL, &l);
    for (int i = 0; i < 2000 && !l.up && !l.down; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(500);
    }
    CHECK(l.up == 1 && l.down == 0);
    rconn_free(c);

    /* a wrong password is named, the server's words kept */
    struct seen w = { 0 };
    c = open_as(port, "wrong", 0, pool, &w);
    loop_until(&w.down, 1);
    CHECK(w.down == 1 && w.up == 0 && w.why == RC_AUTH && strstr(w.detail, "WRONGPASS") != NULL);
    rconn_free(c);

    /* dropped with commands waiting: each callback gets NULL, then the state */
    struct seen d = { 0 };
    c = open_as(port, "pw-1", 0, pool, &d);
    loop_until(&d.up, 1);
    const char *argv[] = { "PING" };
    rconn_sendv(c, 1, argv, NULL, reply, &d);
    rconn_sendv(c, 1, argv, NULL, reply, &d);
    rconn_drop(c, RC_DROPPED);
    CHECK(d.nulls == 2 && d.down == 1 && !rconn_sendv(c, 1, argv, NULL, reply, &d));
    rconn_free(c);

    /* freed inside its own callback: no use after free (ASan) */
    kill(redis, SIGKILL);
    usleep(100000);
    struct seen r = { 0 };
    c = open_as(port, NULL, 0, pool, &r);
    loop_until(&r.down, 1);
    CHECK(r.down == 1 && r.why == RC_CONNECT && strstr(r.detail, "refused") != NULL);
    CHECK(strcmp(rconn_err_name(RC_TLS), "TLS handshake failed") == 0);
    rconn_free(c);
    struct rconn_opts bad = { .host = "no-such-host.invalid", .port = 1, .connect_timeout_ms = 500 };
    struct seen n = { 0 };
    c = rconn_new(base, &bad, NULL, state, NULL, &n);
    loop_until(&n.down, 1);
    CHECK(n.down == 1 && n.why == RC_RESOLVE);
    rconn_free(c);

    reply_pool_free(pool);
    event_base_free(base);
    return check_done();
}
