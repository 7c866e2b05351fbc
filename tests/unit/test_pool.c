/* Pool: smooth weighted round-robin order, priority groups, breaker
 * transitions, the single half-open probe, Retry-After clamping; the model
 * index, max_inflight, the upstream's remaining counts, the least_inflight
 * and latency strategies. `test_pool --bench` prints the cost of a pick per
 * strategy with 2, 16 and 128 backends (scripts/bench-pool.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/pool.h"
#include "sluice/util.h"

static struct config *load(const char *text)
{
    return check_load_config(text, NULL);
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static int by_char(const void *a, const void *b)
{
    return *(const char *)a - *(const char *)b;
}

static int pick(struct pool *p, struct pool_pick *out)
{
    struct pool_tried tried = { { 0 } };
    *out = pool_pick(p, "m", 1, 0, &tried);
    return out->backend;
}

/* The state of backend i's breaker for model m. */
static enum breaker_state pair(struct pool *p, int i)
{
    return pool_pair_state(p, i, "m", 1);
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
    struct pool_pick pk = pool_pick(p, "m", 1, 0, &tried);
    CHECK(pk.backend == 1); /* b: priority 1 and serves m (c does not) */
    pk = pool_pick(p, "m", 1, 0, &tried);
    CHECK(pk.backend == 0); /* b tried: the next group */
    pk = pool_pick(p, "m", 1, 0, &tried);
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
    CHECK(pair(p, 0) == BREAKER_CLOSED);
    fail_once(p);
    CHECK(pair(p, 0) == BREAKER_OPEN);
    CHECK(pick(p, &pk) == -1);
    int64_t wait = pool_next_available_ms(p, "m", 1);
    CHECK(wait > 100 && wait <= 150);
    sleep_ms(160);
    CHECK(pair(p, 0) == BREAKER_HALF_OPEN);
    struct pool_pick probe;
    CHECK(pick(p, &probe) == 0 && probe.probe_model);
    CHECK(pick(p, &pk) == -1); /* one probe at a time */
    pool_report(p, &probe, UP_OUTCOME_ABORTED, -1);
    CHECK(pick(p, &probe) == 0 && probe.probe_model); /* a probe without verdict frees the slot */
    pool_report(p, &probe, UP_OUTCOME_ERROR_STATUS, -1);
    CHECK(pair(p, 0) == BREAKER_OPEN); /* failed probe reopens */
    sleep_ms(160);
    CHECK(pick(p, &probe) == 0 && probe.probe_model);
    pool_report(p, &probe, UP_OUTCOME_SUCCESS, -1);
    CHECK(pair(p, 0) == BREAKER_CLOSED);
    pool_free(p);
    cfg_unref(c);
}

/* A model's failures open its own breaker on the backend; the backend's other
 * models go on. A connection failure opens the backend's: every model waits. */
static void test_breakers_per_model(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nbreaker_failures = 1\nbreaker_trip = 150ms\n"
                            "[model m]\n[model n]\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_tried tried = { { 0 } };
    struct pool_pick pk = pool_pick(p, "m", 1, 0, &tried);
    CHECK(pk.backend == 0 && pk.model >= 0);
    pool_report(p, &pk, UP_OUTCOME_ERROR_STATUS, -1);
    CHECK(pair(p, 0) == BREAKER_OPEN);
    CHECK(pool_state(p, 0) == BREAKER_CLOSED); /* the backend's own breaker: the connection worked */
    CHECK(pool_pair_state(p, 0, "n", 1) == BREAKER_CLOSED);
    memset(&tried, 0, sizeof(tried));
    CHECK(pool_pick(p, "m", 1, 0, &tried).backend == -1);
    memset(&tried, 0, sizeof(tried));
    pk = pool_pick(p, "n", 1, 0, &tried); /* the other model is served */
    CHECK(pk.backend == 0);
    pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    /* a name no [model] lists shares the `*` breaker set, apart from m and n */
    memset(&tried, 0, sizeof(tried));
    pk = pool_pick(p, "zz", 2, 0, &tried);
    CHECK(pk.backend == 0);
    pool_report(p, &pk, UP_OUTCOME_ERROR_STATUS, -1);
    CHECK(pool_pair_state(p, 0, "zz", 2) == BREAKER_OPEN && pool_pair_state(p, 0, "yy", 2) == BREAKER_OPEN);
    CHECK(pool_pair_state(p, 0, "n", 1) == BREAKER_CLOSED);
    struct pool_model_breaker mb[4];
    CHECK(pool_model_breakers(p, mb, 4) == 2); /* m and *: the ones that opened */
    CHECK(strcmp(mb[0].model, "m") == 0 && mb[0].state == BREAKER_OPEN && mb[0].open_left_ms > 0);
    CHECK(strcmp(mb[1].model, "*") == 0);
    /* a connection failure: the whole backend */
    memset(&tried, 0, sizeof(tried));
    pk = pool_pick(p, "n", 1, 0, &tried);
    pool_report(p, &pk, UP_OUTCOME_CONNECT_FAILED, -1);
    CHECK(pool_state(p, 0) == BREAKER_OPEN && pool_pair_state(p, 0, "n", 1) == BREAKER_CLOSED);
    memset(&tried, 0, sizeof(tried));
    CHECK(pool_pick(p, "n", 1, 0, &tried).backend == -1);
    /* half-open: the probe of the backend and the model's own probe; its success closes both */
    sleep_ms(160);
    memset(&tried, 0, sizeof(tried));
    pk = pool_pick(p, "m", 1, 0, &tried);
    CHECK(pk.backend == 0 && pk.probe && pk.probe_model);
    memset(&tried, 0, sizeof(tried));
    CHECK(pool_pick(p, "n", 1, 0, &tried).backend == -1); /* the backend's one probe is out */
    pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    CHECK(pool_state(p, 0) == BREAKER_CLOSED && pair(p, 0) == BREAKER_CLOSED);
    /* the same backend again, for the same model, after it was tried */
    memset(&tried, 0, sizeof(tried));
    pk = pool_pick(p, "m", 1, 0, &tried);
    pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    CHECK(pool_pick(p, "m", 1, 0, &tried).backend == -1); /* tried */
    struct pool_pick again = pool_pick_again(p, &pk, 0, &tried);
    CHECK(again.backend == 0 && again.model == pk.model);
    pool_report(p, &again, UP_OUTCOME_SUCCESS, -1);
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
    CHECK(pair(p, 0) == BREAKER_CLOSED);
    fail_once(p);
    CHECK(pair(p, 0) == BREAKER_OPEN);
    pool_free(p);
    cfg_unref(c);
}

static void test_retry_after(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nbreaker_trip = 1h\n"
                            "[backend b]\nurl = http://b\nbreaker_retry_after = no\nbreaker_trip = 200ms\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_tried tried = { { 0 } };
    struct pool_pick a = pool_pick(p, "m", 1, 0, &tried), b = pool_pick(p, "m", 1, 0, &tried);
    pool_report(p, &a, UP_OUTCOME_ERROR_STATUS, 3600LL * 1000 * 24); /* a day: clamped */
    CHECK(pair(p, a.backend) == BREAKER_OPEN);
    pool_report(p, &b, UP_OUTCOME_ERROR_STATUS, 5000); /* ignored: breaker_retry_after = no */
    CHECK(pair(p, b.backend) == BREAKER_CLOSED);
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

static void test_model_index(void)
{
    /* a and c list models, b and d serve any: each name's candidates keep backend order */
    struct config *c = load("[backend a]\nurl = http://a\nmodels = x, y\n[backend b]\nurl = http://b\n"
                            "[backend c]\nurl = http://c\nmodels = y, z\n[backend d]\nurl = http://d\n");
    struct pool *p = pool_new(c, NULL);
    const char *names[] = { "x", "y", "z", "other" };
    const char *want[] = { "abd", "abcd", "bcd", "bd" };
    for (int n = 0; n < 4; n++) {
        struct pool_tried tried = { { 0 } };
        char got[8] = { 0 };
        for (int i = 0; i < 7; i++) {
            struct pool_pick pk = pool_pick(p, names[n], strlen(names[n]), 0, &tried);
            if (pk.backend < 0)
                break;
            got[strlen(got)] = (char)('a' + pk.backend);
            pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
        }
        qsort(got, strlen(got), 1, by_char);
        CHECK_STR(got, want[n]);
    }
    CHECK(pool_serves(p, "anything", 8));
    pool_free(p);
    cfg_unref(c);
}

static void test_max_inflight_and_unpick(void)
{
    struct config *c = load("[backend a]\nurl = http://a\nmax_inflight = 2\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_pick one, two, three;
    CHECK(pick(p, &one) == 0 && pick(p, &two) == 0);
    CHECK(pool_inflight(p, 0) == 2);
    CHECK(pick(p, &three) == -1 && three.full_ms == POOL_INFLIGHT_WAIT_MS);
    pool_report(p, &one, UP_OUTCOME_SUCCESS, -1);
    CHECK(pick(p, &three) == 0);
    pool_unpick(p, &three); /* given back unused */
    CHECK(pool_inflight(p, 0) == 1);
    /* a reload shares the count: the old config's requests still hold their slots */
    struct config *c2 = load("[backend a]\nurl = http://a\nmax_inflight = 2\n");
    struct pool *p2 = pool_new(c2, p);
    CHECK(pick(p2, &one) == 0 && pick(p2, &three) == -1);
    pool_report(p, &two, UP_OUTCOME_SUCCESS, -1);
    pool_free(p);
    cfg_unref(c);
    CHECK(pool_inflight(p2, 0) == 1 && pick(p2, &three) == 0);
    pool_free(p2);
    cfg_unref(c2);
}

static void test_upstream_said(void)
{
    struct config *c = load("[backend a]\nurl = http://a\npriority = 1\n"
                            "[backend b]\nurl = http://b\npriority = 2\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_pick pk;
    pool_upstream_said(p, 0, &(struct pool_upstream_limits){ 0, 150, -1, -1 });
    CHECK(pick(p, &pk) == 1); /* a has no requests left until its reset */
    struct pool_tried tried = { { 0 } };
    tried.bits[0] = 2; /* b tried */
    pk = pool_pick(p, "m", 1, 0, &tried);
    CHECK(pk.backend == -1 && pk.full_ms > 100 && pk.full_ms <= 150);
    sleep_ms(160);
    CHECK(pick(p, &pk) == 0);
    pool_upstream_said(p, 0, &(struct pool_upstream_limits){ 5, 1000, 100, 1000 });
    struct pool_tried t2 = { { 0 } };
    CHECK(pool_pick(p, "m", 1, 100, &t2).backend == 0);  /* 100 tokens left: fits */
    struct pool_tried t3 = { { 0 } };
    CHECK(pool_pick(p, "m", 1, 101, &t3).backend == 1);  /* one more does not */
    pool_free(p);
    cfg_unref(c);
}

static void test_least_inflight(void)
{
    struct config *c = load("[server]\nbalance = least_inflight\n[backend a]\nurl = http://a\n"
                            "weight = 2\n[backend b]\nurl = http://b\n");
    struct pool *p = pool_new(c, NULL);
    struct pool_pick held[3], pk;
    /* a (weight 2) takes two open requests for each of b's */
    char seq[4] = { 0 };
    for (int i = 0; i < 3; i++)
        seq[i] = (char)('a' + pick(p, &held[i]));
    qsort(seq, 3, 1, by_char);
    CHECK_STR(seq, "aab");
    pick(p, &pk); /* all at 1 per unit of weight: a tie, either */
    pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    for (int i = 0; i < 3; i++)
        if (held[i].backend == 1)
            pool_report(p, &held[i], UP_OUTCOME_SUCCESS, -1);
    CHECK(pick(p, &pk) == 1); /* b has none open now */
    pool_free(p);
    cfg_unref(c);
}

static void test_latency(void)
{
    struct config *c = load("[server]\nbalance = latency\nbalance_decay = 200ms\n"
                            "[backend a]\nurl = http://a\n[backend b]\nurl = http://b\n");
    struct pool *p = pool_new(c, NULL);
    pool_observe(p, 0, 1000);
    pool_observe(p, 1, 50000); /* b is 50 times slower */
    int to_b = 0;
    struct pool_pick pk;
    for (int i = 0; i < 100; i++) {
        to_b += pick(p, &pk) == 1;
        pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    }
    CHECK(to_b == 0);
    /* unrefreshed, b's estimate fades below a's within decay x ln(50): b is tried again */
    sleep_ms(900);
    pool_observe(p, 0, 1000);
    CHECK(pick(p, &pk) == 1);
    pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    /* a sample above the estimate replaces it at once (the peak) */
    pool_observe(p, 1, 80000);
    to_b = 0;
    for (int i = 0; i < 50; i++) {
        to_b += pick(p, &pk) == 1;
        pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
    }
    CHECK(to_b == 0);
    pool_free(p);
    cfg_unref(c);
}

/* ---- the cost of a pick ---- */

static void bench(void)
{
    static const char *const strategies[] = { "weighted", "least_inflight", "latency" };
    static const int sizes[] = { 2, 16, 128 };
    printf("| strategy | 2 backends | 16 backends | 128 backends |\n|---|---|---|---|\n");
    for (int s = 0; s < 3; s++) {
        printf("| %s |", strategies[s]);
        for (int z = 0; z < 3; z++) {
            char text[16384];
            int n = snprintf(text, sizeof(text), "[server]\nbalance = %s\n", strategies[s]);
            for (int i = 0; i < sizes[z]; i++) /* all serve m; every other one one more model */
                n += snprintf(text + n, sizeof(text) - (size_t)n,
                              "[backend b%d]\nurl = http://b%d\nweight = %d\nmodels = %s\n", i, i,
                              1 + i % 3, i % 2 ? "m, other" : "m");
            struct config *c = load(text);
            struct pool *p = pool_new(c, NULL);
            for (int i = 0; i < sizes[z]; i++)
                pool_observe(p, i, 1000 + 100 * i);
            const int rounds = 200000;
            struct pool_pick pk;
            int64_t t0 = sl_now_us();
            for (int i = 0; i < rounds; i++) {
                pick(p, &pk);
                pool_report(p, &pk, UP_OUTCOME_SUCCESS, -1);
            }
            double us = (double)(sl_now_us() - t0) / rounds;
            printf(" %.3f |", us);
            pool_free(p);
            cfg_unref(c);
        }
        printf("\n");
    }
}

int main(int argc, char **argv)
{
    log_set_level(LOG_ERROR);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench();
        return 0;
    }
    test_model_index();
    test_max_inflight_and_unpick();
    test_upstream_said();
    test_least_inflight();
    test_latency();
    test_smooth_wrr();
    test_priority_and_tried();
    test_breaker_cycle();
    test_breakers_per_model();
    test_failures_outside_window_do_not_trip();
    test_retry_after();
    return check_done();
}
