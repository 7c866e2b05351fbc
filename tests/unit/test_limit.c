/* The in-process windows: exact admission, refusal consumes nothing,
 * retry time, sliding, input correction, output semantics, release; budgets
 * and teams (one admission over key and team, all or nothing). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/limit_local.h"
#include "sluice/util.h"

static const struct lim_limits nolim;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
    nanosleep(&ts, NULL);
}

static void test_rpm_exact_and_retry(void)
{
    struct lim_local *l = lim_local_new(600); /* 10 ms buckets */
    struct lim_limits lim = { .rpm = 5 };
    struct lim_decision d;
    int admitted = 0;
    for (int i = 0; i < 8; i++) {
        lim_local_admit(l, "k", &lim, 0, 0, &d);
        admitted += d.admitted;
    }
    CHECK(admitted == 5);
    CHECK(!d.admitted && d.dim == LIM_DIM_REQUESTS && d.limit == 5 && d.used == 5 && d.requested == 1);
    CHECK(d.retry_ms > 500 && d.retry_ms <= 620);
    int64_t start = sl_now_ms();
    sleep_ms(d.retry_ms);
    lim_local_admit(l, "k", &lim, 0, 0, &d);
    CHECK(d.admitted); /* waiting retry_ms is enough */
    CHECK(sl_now_ms() - start < 700);
    lim_local_admit(l, "other", &lim, 0, 0, &d);
    CHECK(d.admitted && d.used_requests == 1); /* keys are independent */
    lim_local_free(l);
}

static void test_input_reservation_and_correction(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct lim_limits lim = { .input_tpm = 100 };
    struct lim_decision a, b;
    lim_local_admit(l, "k", &lim, 60, 0, &a);
    CHECK(a.admitted && a.used_input == 60 && a.input_reserved == 60);
    lim_local_admit(l, "k", &lim, 60, 0, &b);
    CHECK(!b.admitted && b.dim == LIM_DIM_INPUT && b.used == 60 && b.requested == 60);
    lim_local_settle(l, "k", &lim, &a, &(struct lim_usage){ .input_delta = 20 - 60 }); /* the upstream said 20 */
    lim_local_admit(l, "k", &lim, 60, 0, &b);
    CHECK(b.admitted && b.used_input == 80);
    lim_local_admit(l, "k", &lim, 101, 0, &b);
    CHECK(!b.admitted && b.retry_ms == -1); /* can never fit */
    lim_local_free(l);
}

/* Slots start 16 bits wide and widen to 32 and 64 when a count would not
 * fit: the counts, the correction and the sliding stay exact across. */
static void test_wide_counts(void)
{
    struct lim_local *l = lim_local_new(600); /* 10 ms buckets */
    const int64_t big = 5000000000; /* over 32 bits */
    struct lim_limits lim = { .rpm = 100, .input_tpm = 3 * big, .output_tpm = 3 * big };
    struct lim_decision a, b, c;
    lim_local_admit(l, "k", &lim, 60000, 0, &a);
    lim_local_admit(l, "k", &lim, 10000, 0, &b); /* same bucket: 70,000 > 16 bits */
    CHECK(a.admitted && b.admitted && b.used_input == 70000);
    lim_local_admit(l, "k", &lim, big, 0, &c); /* over 32 bits */
    CHECK(c.admitted && c.used_input == big + 70000 && c.used_requests == 3);
    lim_local_settle(l, "k", &lim, &c, &(struct lim_usage){ .input_delta = 1, .output = big });
    lim_local_settle(l, "k", &lim, &a, &(struct lim_usage){ .input_delta = -60000, .release = true });
    lim_local_peek(l, "k", &lim, &a);
    CHECK(a.used_input == big + 10001 && a.used_output == big && a.used_requests == 2);
    lim_local_admit(l, "k", &lim, 2 * big - 10001, 0, &b);
    CHECK(b.admitted && b.used_input == 3 * big);
    lim_local_admit(l, "k", &lim, 1, 0, &b);
    CHECK(!b.admitted && b.dim == LIM_DIM_INPUT && b.used == 3 * big);
    sleep_ms(650); /* the whole window */
    lim_local_admit(l, "k", &lim, 1, 0, &b);
    CHECK(b.admitted && b.used_input == 1 && b.used_output == 0 && b.used_requests == 1);
    lim_local_free(l);
}

static void test_output_semantics(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct lim_limits lim = { .output_tpm = 20 };
    struct lim_decision d;
    int admitted = 0;
    for (int i = 0; i < 5; i++) {
        lim_local_admit(l, "k", &lim, 0, 0, &d);
        if (!d.admitted)
            break;
        admitted++;
        lim_local_settle(l, "k", &lim, &d, &(struct lim_usage){ .output = 8 });
    }
    CHECK(admitted == 3); /* 0, 8, 16 are below 20; 24 is not */
    CHECK(d.dim == LIM_DIM_OUTPUT && d.used == 24);
    lim_local_free(l);
}

static void test_release(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct lim_limits lim = { .rpm = 1, .input_tpm = 10 };
    struct lim_decision d;
    lim_local_admit(l, "k", &lim, 10, 0, &d);
    CHECK(d.admitted);
    lim_local_settle(l, "k", &lim, &d, &(struct lim_usage){ .input_delta = -10, .release = true });
    /* the upstream never answered */
    lim_local_admit(l, "k", &lim, 10, 0, &d);
    CHECK(d.admitted);
    lim_local_free(l);
}

struct hammer {
    struct lim_local *l;
    int admitted;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    struct lim_limits lim = { .rpm = 1000, .input_tpm = 5000 };
    for (int i = 0; i < 2000; i++) {
        struct lim_decision d;
        lim_local_admit(h->l, "shared", &lim, 3, 0, &d);
        h->admitted += d.admitted;
    }
    return NULL;
}

static void test_threads_exact(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct hammer h[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){ l, 0 };
        pthread_create(&t[i], NULL, hammer, &h[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += h[i].admitted;
    }
    CHECK(total == 1000); /* rpm binds before 5000/3 */
    lim_local_free(l);
}

static void test_sliding_never_exceeds(void)
{
    /* Requests arrive continuously; in no span of the window's buckets (the
     * window less one bucket of time) may more than the limit be admitted. */
    struct lim_local *l = lim_local_new(300); /* 5 ms buckets */
    struct lim_limits lim = { .rpm = 10 };
    int64_t times[400];
    int n = 0;
    int64_t end = sl_now_ms() + 900;
    while (sl_now_ms() < end && n < 400) {
        struct lim_decision d;
        lim_local_admit(l, "k", &lim, 0, 0, &d);
        if (d.admitted)
            times[n++] = sl_now_ms();
        sleep_ms(2);
    }
    int worst = 0;
    for (int i = 0; i < n; i++) {
        int in = 0;
        for (int j = i; j < n && times[j] - times[i] < 300 - 5; j++)
            in++;
        worst = SL_MAX(worst, in);
    }
    CHECK(worst <= 10);
    CHECK(n >= 25); /* and it does let traffic through as the window slides */
    lim_local_free(l);
}

/* x-ratelimit-* headers: remaining never below zero, resets in OpenAI's
 * duration format. */
static void test_headers(void)
{
    struct lim_limits lim = { .rpm = 600, .input_tpm = 1000, .output_tpm = 50, .quota = 9000,
                              .budget = 25000000 };
    struct lim_decision d = { .admitted = true, .where = LIM_REDIS, .used_requests = 1,
                              .reset_requests_ms = 60500, .used_input = 1200, .reset_input_ms = 999,
                              .used_output = 7, .reset_output_ms = 1050, .used_quota = 10,
                              .quota_reset_ms = 3723004, .budget = { 123, 86400000, "d1" } };
    struct sl_buf b = { 0 };
    lim_headers(&d, &lim, false, &b);
    sl_buf_append(&b, "", 1);
    CHECK_STR(b.data, "x-ratelimit-limit-requests: 600\r\nx-ratelimit-remaining-requests: 599\r\n"
                      "x-ratelimit-reset-requests: 1m0.5s\r\n"
                      "x-ratelimit-limit-tokens: 1000\r\nx-ratelimit-remaining-tokens: 0\r\n"
                      "x-ratelimit-reset-tokens: 999ms\r\n"
                      "x-ratelimit-limit-output-tokens: 50\r\nx-ratelimit-remaining-output-tokens: 43\r\n"
                      "x-ratelimit-reset-output-tokens: 1.05s\r\n"
                      "x-ratelimit-limit-quota: 9000\r\nx-ratelimit-remaining-quota: 8990\r\n"
                      "x-ratelimit-reset-quota: 62m3.004s\r\n"
                      "x-ratelimit-limit-budget: 25.000000\r\n"
                      "x-ratelimit-remaining-budget: 24.999877\r\nx-ratelimit-reset-budget: 1440m0s\r\n");
    const int64_t ms[] = { -5, 0, 1000, 60000, 61234 };
    const char *want[] = { "0ms", "0ms", "1s", "1m0s", "1m1.234s" };
    for (int i = 0; i < 5; i++) {
        struct lim_limits one = { .rpm = 1 };
        struct lim_decision e = { .admitted = true, .where = LIM_LOCAL, .reset_requests_ms = ms[i] };
        b.len = 0;
        lim_headers(&e, &one, false, &b);
        sl_buf_append(&b, "", 1);
        const char *reset = strstr(b.data, "reset-requests: ");
        CHECK(reset && strncmp(reset + 16, want[i], strlen(want[i])) == 0 && reset[16 + strlen(want[i])] == '\r');
    }
    /* the largest values fit: five sets of 181 bytes at most */
    struct lim_limits huge = { .rpm = INT64_MAX, .input_tpm = INT64_MAX, .output_tpm = INT64_MAX,
                               .quota = INT64_MAX, .budget = INT64_MAX };
    struct lim_decision far = { .admitted = true, .where = LIM_REDIS, .reset_requests_ms = INT64_MAX,
                                .reset_input_ms = INT64_MAX, .reset_output_ms = INT64_MAX,
                                .quota_reset_ms = INT64_MAX, .budget.reset_ms = INT64_MAX };
    b.len = 0;
    lim_headers(&far, &huge, false, &b);
    sl_buf_append(&b, "", 1);
    CHECK(strlen(b.data) <= 5 * 181 &&
          strstr(b.data, "x-ratelimit-remaining-output-tokens: 9223372036854775807\r\n") &&
          strstr(b.data, "x-ratelimit-reset-quota: 153722867280912m55.807s\r\n") &&
          strstr(b.data, "x-ratelimit-remaining-budget: 9223372036854.775807\r\n"));
    /* Anthropic's callers: their rpm and token windows as anthropic-ratelimit-*,
     * each reset an RFC 3339 time; quota and budget as sluice's own */
    char before[21], after[21], line[2][96];
    sl_fmt_time((sl_wall_us() / 1000 + 60500 + 999) / 1000, before);
    b.len = 0;
    lim_headers(&d, &lim, true, &b);
    sl_buf_append(&b, "", 1);
    sl_fmt_time((sl_wall_us() / 1000 + 60500 + 999) / 1000, after); /* the clock may tick */
    snprintf(line[0], sizeof(line[0]), "anthropic-ratelimit-requests-reset: %s\r\n", before);
    snprintf(line[1], sizeof(line[1]), "anthropic-ratelimit-requests-reset: %s\r\n", after);
    CHECK(strncmp(b.data, "anthropic-ratelimit-requests-limit: 600\r\n"
                          "anthropic-ratelimit-requests-remaining: 599\r\n", 86) == 0 &&
          (strstr(b.data, line[0]) || strstr(b.data, line[1])));
    CHECK(strstr(b.data, "anthropic-ratelimit-input-tokens-limit: 1000\r\n"
                         "anthropic-ratelimit-input-tokens-remaining: 0\r\n") &&
          strstr(b.data, "anthropic-ratelimit-output-tokens-remaining: 43\r\n") &&
          strstr(b.data, "x-ratelimit-remaining-quota: 8990\r\n") &&
          !strstr(b.data, "x-ratelimit-limit-requests") && !strstr(b.data, "x-ratelimit-limit-tokens"));
    b.len = 0;
    lim_headers(&far, &huge, true, &b);
    sl_buf_append(&b, "", 1);
    CHECK(strstr(b.data, "anthropic-ratelimit-output-tokens-remaining: 9223372036854775807\r\n") &&
          strstr(b.data, "anthropic-ratelimit-requests-reset: 2") && strlen(b.data) < 1400);
    struct lim_decision refused = { .admitted = false, .where = LIM_LOCAL };
    b.len = 0;
    lim_headers(&refused, &lim, false, &b);
    CHECK(b.len == 0);
    sl_buf_free(&b);
}

/* A month ends at midnight on the 1st, and the end read back from a decision is that second
 * whatever the clock says a few ms later or earlier (the CI failure: 23:59:59 on the 30th). */
static void test_period_end(void)
{
    int64_t end_s = 1796083200; /* 2026-12-01T00:00:00Z */
    int64_t offsets_ms[] = { -86400000LL * 3 - 1, -3600000, -1001, -999, -500, -1 };
    for (size_t i = 0; i < sizeof(offsets_ms) / sizeof(offsets_ms[0]); i++) {
        int64_t decided = end_s * 1000 + offsets_ms[i];
        char id[LIM_PERIOD_ID];
        int64_t reset_ms;
        lim_period(QUOTA_PERIOD_MONTH, decided, id, &reset_ms);
        CHECK(strcmp(id, "m202611") == 0);
        CHECK(reset_ms == -offsets_ms[i]);
        for (int64_t later = -40; later <= 400; later += 1)
            CHECK(lim_period_end_s(reset_ms, decided + later) == end_s);
    }
    char id[LIM_PERIOD_ID];
    int64_t reset_ms;
    lim_period(QUOTA_PERIOD_MONTH, end_s * 1000, id, &reset_ms);
    CHECK(strcmp(id, "m202612") == 0);
    CHECK(lim_period_end_s(reset_ms, end_s * 1000 + 3) == 1798761600); /* 2027-01-01 */
    lim_period(QUOTA_PERIOD_DAY, end_s * 1000 - 1, id, &reset_ms);
    CHECK(reset_ms == 1 && lim_period_end_s(reset_ms, end_s * 1000 + 7) == end_s);
}

/* A seed (what Redis last reported) counts in the local window until it
 * would have left it: never more than the limit within any window. */
static void test_seed_from_redis(void)
{
    struct lim_local *l = lim_local_new(600); /* 10 ms buckets */
    struct lim_limits lim = { .rpm = 10, .input_tpm = 100 };
    struct lim_decision redis = { .admitted = true, .used_requests = 6, .used_input = 60 };
    lim_local_seed(l, "k", &nolim, &redis);
    struct lim_decision d;
    int admitted = 0;
    for (int i = 0; i < 10; i++) {
        lim_local_admit(l, "k", &lim, 5, 0, &d);
        admitted += d.admitted;
    }
    CHECK(admitted == 4); /* 6 + 4 = 10 */
    CHECK(!d.admitted && d.dim == LIM_DIM_REQUESTS && d.used == 10);
    CHECK(d.retry_ms > 500 && d.retry_ms <= 620); /* when the seed has gone too */
    lim_local_peek(l, "k", &lim, &d);
    CHECK(d.used_requests == 10 && d.used_input == 60 + 4 * 5);
    sleep_ms(640);
    admitted = 0;
    for (int i = 0; i < 12; i++) {
        lim_local_admit(l, "k", &lim, 5, 0, &d);
        admitted += d.admitted;
    }
    CHECK(admitted == 10); /* a new window: the seed and the local ones have left it */
    /* Input: 60 seeded of 100; 8 tokens each: 5 more fit. */
    lim_local_seed(l, "j", &nolim, &redis);
    struct lim_limits tokens = { .input_tpm = 100 };
    admitted = 0;
    for (int i = 0; i < 8; i++) {
        lim_local_admit(l, "j", &tokens, 8, 0, &d);
        admitted += d.admitted;
    }
    CHECK(admitted == 5);
    /* A newer report replaces the older one (each is a total, not an increment). */
    struct lim_decision later = { .admitted = true, .used_requests = 2 };
    lim_local_seed(l, "m", &nolim, &redis);
    lim_local_seed(l, "m", &nolim, &later);
    admitted = 0;
    for (int i = 0; i < 10; i++) {
        lim_local_admit(l, "m", &lim, 0, 0, &d);
        admitted += d.admitted;
    }
    CHECK(admitted == 8);
    lim_local_free(l);
}

/* A budget in micro-dollars: exactly what fits is admitted, a refusal
 * reserves nothing, settlement replaces the reservation with the cost. */
static void test_budget(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct lim_limits lim = { .budget = 10000, .budget_period = QUOTA_PERIOD_DAY };
    struct lim_decision d, t[15];
    int admitted = 0;
    for (int i = 0; i < 15; i++) {
        lim_local_admit(l, "k", &lim, 10, 1000, &t[i]);
        admitted += t[i].admitted;
    }
    d = t[14];
    CHECK(admitted == 10);
    CHECK(!d.admitted && d.dim == LIM_DIM_BUDGET && d.used == 10000 && d.limit == 10000 &&
          d.requested == 1000 && d.retry_ms == -1);
    CHECK(t[0].spend_reserved == 1000 && t[0].budget.period[0] == 'd');
    /* two cost 400 of their 1000: 1200 back, so one more fits (and no more) */
    for (int i = 0; i < 2; i++)
        lim_local_settle(l, "k", &lim, &t[i], &(struct lim_usage){ .spend_delta = 400 - 1000 });
    lim_local_admit(l, "k", &lim, 10, 1000, &d);
    CHECK(d.admitted && d.budget.used == 9800);
    lim_local_admit(l, "k", &lim, 10, 1000, &d);
    CHECK(!d.admitted && d.used == 9800);
    /* a request that costs nothing passes a budget that is not overdrawn */
    lim_local_admit(l, "k", &lim, 10, 0, &d);
    CHECK(d.admitted);
    /* the admin API: read, give back (never below 0), reset */
    lim_local_count(l, "k", &lim, LIM_BUDGET, LIM_QUOTA_ADD, -2500, &d);
    CHECK(d.budget.used == 7300);
    lim_local_count(l, "k", &lim, LIM_BUDGET, LIM_QUOTA_ADD, -1000000, &d);
    CHECK(d.budget.used == 0);
    lim_local_count(l, "k", &lim, LIM_BUDGET, LIM_QUOTA_ADD, 700, &d);
    lim_local_count(l, "k", &lim, LIM_BUDGET, LIM_QUOTA_READ, 0, &d);
    CHECK(d.budget.used == 700 && d.budget.reset_ms > 0 && d.budget.reset_ms <= 86400000);
    lim_local_count(l, "k", &lim, LIM_BUDGET, LIM_QUOTA_RESET, 0, &d);
    CHECK(d.budget.used == 0);
    lim_local_free(l);
}

/* Keys of a team count against its windows and budget as well as their
 * own; a refusal by either consumes nothing anywhere. */
static void test_team(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct lim_limits a = { .rpm = 2, .team = { "t", .rpm = 3, .budget = 5000,
                                                 .budget_period = QUOTA_PERIOD_MONTH } };
    struct lim_limits b = { .rpm = 10, .team = a.team };
    struct lim_decision d;
    lim_local_admit(l, "a", &a, 0, 1000, &d);
    CHECK(d.admitted && d.team_requests == 1 && d.team_budget.used == 1000);
    lim_local_admit(l, "a", &a, 0, 1000, &d);
    CHECK(d.admitted);
    lim_local_admit(l, "a", &a, 0, 1000, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_REQUESTS); /* the key's own rpm */
    lim_local_admit(l, "b", &b, 0, 1000, &d);
    CHECK(d.admitted && d.team_requests == 3 && d.used_requests == 1);
    lim_local_admit(l, "b", &b, 0, 1000, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_TEAM_REQUESTS && d.used == 3 && d.limit == 3);
    lim_local_peek(l, "b", &b, &d);
    CHECK(d.used_requests == 1 && d.team_requests == 3 && d.team_budget.used == 3000);
    /* the team's budget: 3000 of 5000 spent; a key without a rpm of its own */
    struct lim_limits c = { .team = { "t", .budget = 5000, .budget_period = QUOTA_PERIOD_MONTH } };
    lim_local_admit(l, "c", &c, 0, 2000, &d);
    CHECK(d.admitted && d.team_budget.used == 5000);
    lim_local_admit(l, "c", &c, 0, 1, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_TEAM_BUDGET && d.used == 5000 && d.requested == 1);
    struct lim_limits team_only = lim_team_limits_of(&(struct cfg_team){ .name = "t", .budget = 5000,
                                                     .budget_period = QUOTA_PERIOD_MONTH });
    lim_local_count(l, "", &team_only, LIM_TEAM_BUDGET, LIM_QUOTA_READ, 0, &d);
    CHECK(d.team_budget.used == 5000 && d.team_budget.period[0] == 'm');
    lim_local_free(l);
}

struct team_hammer {
    struct lim_local *l;
    const char *key;
    int admitted;
};

static void *team_hammer(void *arg)
{
    struct team_hammer *h = arg;
    struct lim_limits lim = { .rpm = 900, .team = { "t", .rpm = 1000, .budget = 700000,
                                                     .budget_period = QUOTA_PERIOD_TOTAL } };
    for (int i = 0; i < 1000; i++) {
        struct lim_decision d;
        lim_local_admit(h->l, h->key, &lim, 0, 1000, &d);
        h->admitted += d.admitted;
    }
    return NULL;
}

/* Four threads, two keys of one team: the team's budget admits exactly 700. */
static void test_team_threads_exact(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct team_hammer h[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct team_hammer){ l, i % 2 ? "x" : "y", 0 };
        pthread_create(&t[i], NULL, team_hammer, &h[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        total += h[i].admitted;
    }
    CHECK(total == 700);
    lim_local_free(l);
}

/* ISO weeks start on Monday 00:00 UTC. */
static void test_week(void)
{
    char id[LIM_PERIOD_ID];
    int64_t reset_ms;
    int64_t monday = 20787; /* 2026-11-30, a Monday */
    lim_period(QUOTA_PERIOD_WEEK, (monday + 1) * 86400000LL + 5000, id, &reset_ms); /* Tuesday */
    CHECK(strcmp(id, "w20787") == 0 && reset_ms == 6 * 86400000LL - 5000);
    lim_period(QUOTA_PERIOD_WEEK, monday * 86400000LL, id, &reset_ms);
    CHECK(strcmp(id, "w20787") == 0 && reset_ms == 7 * 86400000LL);
    lim_period(QUOTA_PERIOD_WEEK, monday * 86400000LL - 1, id, &reset_ms); /* Sunday night */
    CHECK(strcmp(id, "w20780") == 0 && reset_ms == 1);
}

/* max_inflight in-process: 4 threads take and give back slots of one key
 * whose team has fewer slots than the key; at no moment do more requests
 * hold a slot than the smaller limit, and every slot comes back. */
static atomic_int holding, most, wrong; /* CHECK counts are not thread-safe: wrong is */

static void *inflight_hammer(void *arg)
{
    struct lim_local *l = arg;
    struct lim_limits lim = { .max_inflight = 5, .team = { .name = "t", .max_inflight = 3 } };
    for (int i = 0; i < 3000; i++) {
        struct lim_decision d;
        lim_local_admit(l, "k", &lim, 0, 0, &d);
        if (!d.admitted) {
            if (!(d.dim == LIM_DIM_TEAM_INFLIGHT && d.retry_ms == 1000 && d.limit == 3))
                atomic_fetch_add(&wrong, 1);
            continue;
        }
        if (!(d.lease > 0 && d.used_inflight <= 3 && d.team_inflight <= 3))
            atomic_fetch_add(&wrong, 1);
        int now = atomic_fetch_add(&holding, 1) + 1, seen = atomic_load(&most);
        while (now > seen && !atomic_compare_exchange_weak(&most, &seen, now))
            ;
        atomic_fetch_sub(&holding, 1);
        lim_local_settle(l, "k", &lim, &d, &(struct lim_usage){ 0 });
    }
    return NULL;
}

static void test_inflight_threads(void)
{
    struct lim_local *l = lim_local_new(60000);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, inflight_hammer, l);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&wrong) == 0);
    CHECK(atomic_load(&most) >= 1 && atomic_load(&most) <= 3);
    /* all given back: three at once again, the fourth refused on the team's */
    struct lim_limits lim = { .max_inflight = 5, .team = { .name = "t", .max_inflight = 3 } };
    struct lim_decision d[4];
    for (int i = 0; i < 4; i++)
        lim_local_admit(l, "k", &lim, 0, 0, &d[i]);
    CHECK(d[0].admitted && d[1].admitted && d[2].admitted && !d[3].admitted);
    CHECK(d[2].used_inflight == 3 && d[2].team_inflight == 3 && d[3].used == 3);
    /* the key's own limit, alone */
    struct lim_limits own = { .max_inflight = 2 };
    struct lim_decision e[3];
    for (int i = 0; i < 3; i++)
        lim_local_admit(l, "k2", &own, 0, 0, &e[i]);
    CHECK(e[0].admitted && e[1].admitted && !e[2].admitted && e[2].dim == LIM_DIM_INFLIGHT);
    lim_local_settle(l, "k2", &own, &e[0], &(struct lim_usage){ 0 });
    lim_local_admit(l, "k2", &own, 0, 0, &e[2]);
    CHECK(e[2].admitted && e[2].used_inflight == 2);
    lim_local_free(l);
}

static struct lim_limits user_lim(const char *user)
{
    struct lim_limits lim = { .rpm = 5, .key_user = { .rpm = 2, .max_inflight = 1 } };
    snprintf(lim.team.name, sizeof(lim.team.name), "t");
    lim.team_user = (struct lim_user){ .rpm = 3, .budget = 100, .budget_period = 1 };
    snprintf(lim.user, sizeof(lim.user), "%s", user);
    return lim;
}

/* An end user's own windows, slots and budget, per key and per team, in the
 * same decision as the key's: a refusal on any reserves nothing anywhere. */
static void test_users(void)
{
    struct lim_local *l = lim_local_new(60000);
    struct lim_limits ann = user_lim("ann"), bo = user_lim("bo");
    struct lim_decision d, held;
    lim_local_admit(l, "k", &ann, 1, 10, &held);
    CHECK(held.admitted && held.lease && held.user.requests == 1 && held.user.inflight == 1);
    CHECK(held.team_user.budget.used == 10);
    lim_local_admit(l, "k", &ann, 1, 10, &d); /* her one slot is taken */
    CHECK(!d.admitted && d.dim == LIM_DIM_USER_INFLIGHT && d.retry_ms == 1000);
    lim_local_settle(l, "k", &ann, &held, &(struct lim_usage){ .spend_delta = -5 });
    lim_local_admit(l, "k", &ann, 1, 10, &d);
    CHECK(d.admitted && d.user.requests == 2 && d.team_user.budget.used == 15);
    lim_local_settle(l, "k", &ann, &d, &(struct lim_usage){ 0 });
    lim_local_admit(l, "k", &ann, 1, 10, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_USER_REQUESTS && d.limit == 2 && d.used == 2);
    lim_local_admit(l, "k2", &ann, 1, 10, &d); /* another key of the team: her per-team rpm */
    CHECK(d.admitted && d.user.requests == 1 && d.team_user.requests == 3);
    lim_local_settle(l, "k2", &ann, &d, &(struct lim_usage){ 0 });
    lim_local_admit(l, "k3", &ann, 1, 10, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_TEAM_USER_REQUESTS && d.used == 3);
    /* bo counts alone; the key's rpm (5: ann's 2 and bo's 2, then) stops him */
    for (int i = 0; i < 2; i++) {
        lim_local_admit(l, "k", &bo, 1, 95, &d);
        CHECK(i == 0 ? d.admitted : !d.admitted);
        if (d.admitted)
            lim_local_settle(l, "k", &bo, &d, &(struct lim_usage){ 0 });
    }
    CHECK(d.dim == LIM_DIM_TEAM_USER_BUDGET && d.limit == 100 && d.used == 95 && d.retry_ms == -1);
    lim_local_count(l, "k", &bo, LIM_TEAM_USER_BUDGET, LIM_QUOTA_RESET, 0, &d);
    CHECK(d.team_user.budget.used == 0);
    lim_local_admit(l, "k", &bo, 1, 95, &d);
    CHECK(d.admitted && d.used_requests == 4);
    struct lim_limits cy = user_lim("cy"), di = user_lim("di");
    lim_local_admit(l, "k", &cy, 1, 0, &d);
    CHECK(d.admitted && d.used_requests == 5);
    lim_local_admit(l, "k", &di, 1, 0, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_REQUESTS);
    /* without a user no user_* applies */
    struct lim_limits none = user_lim("");
    none.rpm = 0;
    for (int i = 0; i < 5; i++)
        lim_local_admit(l, "k4", &none, 1, 0, &d);
    CHECK(d.admitted);
    /* a seed from Redis counts for the user too */
    struct lim_decision redis = { .admitted = true, .user = { .requests = 2 } };
    struct lim_limits eve = user_lim("eve");
    lim_local_seed(l, "k5", &eve, &redis);
    lim_local_admit(l, "k5", &eve, 1, 0, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_USER_REQUESTS && d.used == 2);
    lim_local_free(l);
}

/* End users' entries are bounded: at the cap, idle ones are dropped; a
 * user who still counts (a window, a slot, spend) is never dropped, and a
 * new user then is not admitted uncounted. */
static void test_users_bounded(void)
{
    struct lim_local *l = lim_local_new(600); /* 10 ms buckets */
    lim_local_users_max(l, 3);
    struct lim_decision d;
    char name[8];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        struct lim_limits lim = user_lim(name);
        lim.team.name[0] = '\0'; /* per key only */
        lim_local_admit(l, "k", &lim, 1, 0, &d);
        CHECK(d.admitted);
    }
    struct lim_limits late = user_lim("late");
    late.team.name[0] = '\0';
    lim_local_admit(l, "k", &late, 1, 0, &d);
    CHECK(!d.admitted && d.unavailable); /* three users in their window and slots */
    /* u0 and u1 settle (slots freed); after the window they are idle and go */
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        struct lim_limits lim = user_lim(name);
        lim.team.name[0] = '\0';
        struct lim_decision t = { .admitted = true, .lease = 1 };
        lim_local_settle(l, "k", &lim, &t, &(struct lim_usage){ 0 });
    }
    sleep_ms(640);
    lim_local_admit(l, "k", &late, 1, 0, &d);
    CHECK(d.admitted && d.user.requests == 1);
    /* u2 still holds its slot: it was kept, and counts on */
    struct lim_limits u2 = user_lim("u2");
    u2.team.name[0] = '\0';
    lim_local_admit(l, "k", &u2, 1, 0, &d);
    CHECK(!d.admitted && d.dim == LIM_DIM_USER_INFLIGHT);
    lim_local_free(l);
}

int main(void)
{
    test_users_bounded();
    test_users();
    test_inflight_threads();
    test_budget();
    test_team();
    test_team_threads_exact();
    test_week();
    test_seed_from_redis();
    test_period_end();
    test_headers();
    test_rpm_exact_and_retry();
    test_input_reservation_and_correction();
    test_output_semantics();
    test_wide_counts();
    test_release();
    test_threads_exact();
    test_sliding_never_exceeds();
    return check_done();
}
