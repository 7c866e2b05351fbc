/* Pool: smooth weighted round-robin order, priority groups, breaker
 * transitions, the single half-open probe, Retry-After clamping. */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"

static struct config *load(const char *text)
{
    return check_load_config(text, NULL);
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static int pick(struct pool *p, struct pool_pick *out)
{
    struct pool_tried tried = { { 0 } };
    *out = pool_pick(p, "m", 1, &tried);
    return out->backend;
}

/* The next pick fails. */
static void fail_once(struct pool *p)
{
    struct pool_pick pk;
    pick(p, &pk);
    pool_report(p, &pk, UP_OUTCOME_ERROR_STATUS, -1);
}

static void test_smooth_wrr(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nweight = 5\n[backend b]\nurl = http://b\n"
                            "[backend c]\nurl = http://c\n");
    struct pool *p = pool_new(c, NULL);
    char seq[8] = { 0 };
    struct pool_pick pk;
    for (int i = 0; i < 7; i++)
        seq[i] = (char)('a' + pick(p, &pk));
    CHECK_STR(seq, "aabacaa"); /* nginx's smooth order for 5,1,1 */
    pool_free(p);
    cfg_unref(c);
}

static void test_priority_and_tried(void)
{
    struct config *c = load("[backend a]\nurl = http://a\npriority = 2\n[backend b]\nurl = http://b\n"
                            "priority = 1\nmodels = m\n[backend c]\nurl = http://c\npriority = 1\nmodels = x\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_tried tried = { { 0 } };
    struct pool_pick pk = pool_pick(p, "m", 1, &tried);
    CHECK(pk.backend == 1); /* b: priority 1 and serves m (c does not) */
    pk = pool_pick(p, "m", 1, &tried);
    CHECK(pk.backend == 0); /* b tried: the next group */
    pk = pool_pick(p, "m", 1, &tried);
    CHECK(pk.backend == -1);
    pool_free(p);
    cfg_unref(c);
}

static void test_breaker_cycle(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nbreaker_failures = 3\nbreaker_window = 1s\n"
                            "breaker_trip = 150ms\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_pick pk;
    for (int i = 0; i < 2; i++) {
        CHECK(pick(p, &pk) == 0);
        pool_report(p, &pk, UP_OUTCOME_ERROR_STATUS, -1);
    }
    CHECK(pool_state(p, 0) == BREAKER_CLOSED);
    fail_once(p);
    CHECK(pool_state(p, 0) == BREAKER_OPEN);
    CHECK(pick(p, &pk) == -1);
    int64_t wait = pool_next_available_ms(p, "m", 1);
    CHECK(wait > 100 && wait <= 150);
    sleep_ms(160);
    CHECK(pool_state(p, 0) == BREAKER_HALF_OPEN);
    struct pool_pick probe;
    CHECK(pick(p, &probe) == 0 && probe.probe);
    CHECK(pick(p, &pk) == -1); /* one probe at a time */
    pool_report(p, &probe, UP_OUTCOME_ABORTED, -1);
    CHECK(pick(p, &probe) == 0 && probe.probe); /* a probe without verdict frees the slot */
    pool_report(p, &probe, UP_OUTCOME_ERROR_STATUS, -1);
    CHECK(pool_state(p, 0) == BREAKER_OPEN); /* failed probe reopens */
    sleep_ms(160);
    CHECK(pick(p, &probe) == 0 && probe.probe);
    pool_report(p, &probe, UP_OUTCOME_SUCCESS, -1);
    CHECK(pool_state(p, 0) == BREAKER_CLOSED);
    pool_free(p);
    cfg_unref(c);
}

static void test_failures_outside_window_do_not_trip(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nbreaker_failures = 2\nbreaker_window = 100ms\n");
    struct pool *p = pool_new(c, NULL);
    fail_once(p);
    sleep_ms(120);
    fail_once(p);
    CHECK(pool_state(p, 0) == BREAKER_CLOSED);
    fail_once(p);
    CHECK(pool_state(p, 0) == BREAKER_OPEN);
    pool_free(p);
    cfg_unref(c);
}

static void test_retry_after(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nbreaker_trip = 1h\n"
                            "[backend b]\nurl = http://b\nbreaker_retry_after = no\nbreaker_trip = 200ms\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_tried tried = { { 0 } };
    struct pool_pick a = pool_pick(p, "m", 1, &tried), b = pool_pick(p, "m", 1, &tried);
    pool_report(p, &a, UP_OUTCOME_ERROR_STATUS, 3600LL * 1000 * 24); /* a day: clamped */
    CHECK(pool_state(p, a.backend) == BREAKER_OPEN);
    pool_report(p, &b, UP_OUTCOME_ERROR_STATUS, 5000); /* ignored: breaker_retry_after = no */
    CHECK(pool_state(p, b.backend) == BREAKER_CLOSED);
    int64_t wait = pool_next_available_ms(p, "m", 1);
    CHECK(wait == 0); /* b is still available */
    pool_free(p);
    cfg_unref(c);
    c = load("[backend a]\nurl = http://a\n");
    p = pool_new(c, NULL);
    struct pool_pick pk;
    pick(p, &pk);
    pool_report(p, &pk, UP_OUTCOME_ERROR_STATUS, 3600LL * 1000 * 24);
    wait = pool_next_available_ms(p, "m", 1);
    CHECK(wait > POOL_MAX_OPEN_MS - 1000 && wait <= POOL_MAX_OPEN_MS);
    pool_free(p);
    cfg_unref(c);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    test_smooth_wrr();
    test_priority_and_tried();
    test_breaker_cycle();
    test_failures_outside_window_do_not_trip();
    test_retry_after();
    return check_done();
}
