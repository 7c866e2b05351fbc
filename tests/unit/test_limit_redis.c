/* The Redis limiter through its operations table, against a redis-server
 * this test starts on a free loopback port: it connects, admits exactly the
 * limit, refuses past it with its dimension, reads and adds to a quota,
 * settles, and says it is down once Redis is gone (then every call answers
 * ok=false, for on_error to decide). */
#include <event2/event.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#define CHECK_WITH_REDIS
#include "check.h"
#include "sluice/config.h"
#include "sluice/limit_redis.h"

static struct event_base *base;

struct answer {
    int n;
    bool ok;
    struct lim_decision d;
};

static void answered(bool ok, const struct lim_decision *d, void *arg)
{
    struct answer *a = arg;
    a->n++;
    a->ok = ok;
    if (d)
        a->d = *d;
}

static void until(struct answer *a, int n)
{
    for (int i = 0; i < 5000 && a->n < n; i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(200);
    }
}

int main(void)
{
    int port = check_free_port();
    char portstr[16], conf[256];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t redis = check_start_redis(port, NULL);
    usleep(300000);
    snprintf(conf, sizeof(conf), "[redis]\nurl = redis://127.0.0.1:%d/0\ntimeout = 1s\n"
             "[backend a]\nurl = http://127.0.0.1:9/v1\n", port);
    struct config *c = check_load_config(conf, NULL);
    base = event_base_new();
    struct lim_redis *r = NULL;
    for (int i = 0; i < 50 && !(r && lim_redis_up(r)); i++) { /* until it listens */
        if (!r)
            r = lim_redis_new(base, &c->redis, 60000, 0);
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(20000);
    }
    CHECK(r && lim_redis_up(r));
    const struct lim_ops *ops = &lim_redis_ops;
    struct lim_limits lim = { .rpm = 3, .quota = 100, .quota_period = QUOTA_PERIOD_DAY };
    struct answer a = { 0 };
    for (int i = 0; i < 4; i++)
        ops->admit(r, "k", &lim, 10, 0, answered, &a); /* one loop pass: one script call */
    until(&a, 4);
    CHECK(a.n == 4 && a.ok && !a.d.admitted && a.d.dim == LIM_DIM_REQUESTS && a.d.limit == 3);
    CHECK(a.d.where == LIM_REDIS && a.d.retry_ms > 0);
    struct answer q = { 0 };
    ops->count(r, "k", &lim, LIM_QUOTA, LIM_QUOTA_READ, 0, answered, &q);
    until(&q, 1);
    CHECK(q.ok && lim_count_of(&q.d, LIM_QUOTA).used == 30); /* three admissions of 10 */
    q.n = 0;
    ops->count(r, "k", &lim, LIM_QUOTA, LIM_QUOTA_ADD, 5, answered, &q);
    until(&q, 1);
    CHECK(q.ok && lim_count_of(&q.d, LIM_QUOTA).used == 35);
    /* a settlement that undoes a request: room for one more */
    struct lim_usage undo = { .release = true, .input_delta = -10, .quota_delta = -10 };
    struct lim_decision ticket = { .admitted = true, .where = LIM_REDIS, .bucket = a.d.bucket,
                                   .input_reserved = 10 };
    memcpy(ticket.period, q.d.period, sizeof(ticket.period));
    ops->settle(r, "k", &lim, &ticket, &undo);
    struct answer again = { 0 };
    ops->admit(r, "k", &lim, 10, 0, answered, &again);
    until(&again, 1);
    CHECK(again.ok && again.d.admitted);
    /* Redis gone: down, and calls answer ok=false */
    kill(redis, SIGKILL);
    waitpid(redis, NULL, 0);
    struct answer down = { 0 };
    ops->admit(r, "k", &lim, 1, 0, answered, &down);
    until(&down, 1);
    CHECK(down.n == 1 && !down.ok);
    for (int i = 0; i < 100 && lim_redis_up(r); i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(10000);
    }
    CHECK(!lim_redis_up(r));
    lim_redis_free(r);
    event_base_free(base);
    cfg_unref(c);
    return check_done();
}
