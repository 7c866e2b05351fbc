/* Metrics registry: every series keeps its own count however many there are
 * (the lookup table grows), labels are escaped, histograms add up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/metrics.h"
#include "sluice/util.h"
#include "sluice/generation.h"

#define NKEYS 300

static bool has_line(const struct sl_buf *b, const char *line)
{
    const char *p = b->data, *end = b->data + b->len;
    size_t n = strlen(line);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) == n && memcmp(p, line, n) == 0)
            return true;
        p = eol + 1;
    }
    return false;
}

static void test_many_series(void)
{
    struct config *c = check_load_config("[backend main]\nurl = http://a\n[key a]\nkey = sk-metrics-test\n", NULL);
    struct generation *g = gen_new(c, NULL);
    char key[32];
    /* key i gets i % 7 + 1 successes and one 429, tokens 10 * i in, i out */
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < NKEYS; i++) {
            if (round > i % 7)
                continue;
            snprintf(key, sizeof(key), "k%d", i);
            struct mx_request m = { key, "gpt-4o", "gpt-4o", "main", 200, 0.003, 10, 1, "", 0, NULL };
            mx_request_done(&m);
        }
    }
    for (int i = 0; i < NKEYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        struct mx_request m = { key, "gpt-4o", "-", "-", 429, 0.0, 0, 0, "", 0, NULL };
        mx_request_done(&m);
    }
    struct mx_request q = { "odd", "a\"b\\c\nd", "-", "main", 200, 2.0, 0, 0, "", 0, NULL };
    mx_request_done(&q);
    mx_attempt("main", "success", 0.02);
    mx_attempt("main", "success", 0.2);

    struct sl_buf out = { 0 };
    mx_render(&out, g, 0);
    char line[256];
    int missing = 0;
    int64_t total = 0;
    for (int i = 0; i < NKEYS; i++) {
        int ok = i % 7 + 1;
        total += ok + 1;
        snprintf(line, sizeof(line),
                 "sluice_requests_total{key=\"k%d\",model=\"gpt-4o\",served_model=\"gpt-4o\",backend=\"main\",code=\"200\"} %d", i, ok);
        missing += !has_line(&out, line);
        snprintf(line, sizeof(line),
                 "sluice_requests_total{key=\"k%d\",model=\"gpt-4o\",served_model=\"-\",backend=\"-\",code=\"429\"} 1", i);
        missing += !has_line(&out, line);
        snprintf(line, sizeof(line), "sluice_tokens_total{key=\"k%d\",model=\"gpt-4o\",direction=\"input\"} %d",
                 i, 10 * ok);
        missing += !has_line(&out, line);
        snprintf(line, sizeof(line), "sluice_tokens_total{key=\"k%d\",model=\"gpt-4o\",direction=\"output\"} %d",
                 i, ok);
        missing += !has_line(&out, line);
    }
    CHECK(missing == 0);
    CHECK(has_line(&out, "sluice_requests_total{key=\"odd\",model=\"abcd\",served_model=\"-\",backend=\"main\",code=\"200\"} 1"));
    snprintf(line, sizeof(line), "sluice_request_duration_seconds_count %lld", (long long)total + 1);
    CHECK(has_line(&out, line));
    snprintf(line, sizeof(line), "sluice_request_duration_seconds_bucket{le=\"0.005\"} %lld", (long long)total);
    CHECK(has_line(&out, line));
    CHECK(has_line(&out, "sluice_upstream_attempts_total{backend=\"main\",outcome=\"success\"} 2"));
    CHECK(has_line(&out, "sluice_upstream_ttfb_seconds_bucket{backend=\"main\",le=\"0.025\"} 1"));
    CHECK(has_line(&out, "sluice_upstream_ttfb_seconds_count{backend=\"main\"} 2"));
    /* one series per label set: 300 keys x (200, 429) request lines, no more */
    int series = 0;
    for (const char *p = out.data; (p = strstr(p, "\nsluice_requests_total{")); p++)
        series++;
    CHECK(series == 2 * NKEYS + 1);
    sl_buf_free(&out);
    mx_shutdown();
    gen_unref(g);
}

/* Money: spend adds up exactly in micro-dollars and is shown in USD; the
 * budget gauge shows the config's budgets only. */
static void test_spend_and_budget_gauge(void)
{
    struct config *c = check_load_config("[backend main]\nurl = http://a\n[team t]\nbudget = 5\n"
                                         "[key a]\nkey = sk-metrics-test\nteam = t\nbudget = 1\n"
                                         "[key b]\nkey = sk-metrics-test-2\n",
                                         NULL);
    struct generation *g = gen_new(c, NULL);
    for (int i = 0; i < 1000; i++) {
        struct mx_request m = { "a", "gpt-4o", "gpt-4o", "main", 200, 0.01, 10, 1, "t", 2083, NULL };
        mx_request_done(&m);
    }
    struct mx_request free_one = { "b", "gpt-4o", "gpt-4o", "main", 200, 0.01, 10, 1, "", 0, NULL };
    mx_request_done(&free_one);
    mx_budget_remaining("key", "a", 999877);
    mx_budget_remaining("team", "t", 0);
    mx_budget_remaining("key", "gone", 5); /* no longer configured: not shown */
    struct sl_buf out = { 0 };
    mx_render(&out, g, 0);
    CHECK(has_line(&out, "sluice_spend_usd_total{key=\"a\",team=\"t\",model=\"gpt-4o\"} 2.083000"));
    CHECK(!strstr(out.data, "sluice_spend_usd_total{key=\"b\""));
    CHECK(has_line(&out, "# TYPE sluice_budget_remaining_usd gauge"));
    CHECK(has_line(&out, "sluice_budget_remaining_usd{scope=\"key\",name=\"a\"} 0.999877"));
    CHECK(has_line(&out, "sluice_budget_remaining_usd{scope=\"team\",name=\"t\"} 0.000000"));
    CHECK(!strstr(out.data, "name=\"gone\""));
    sl_buf_free(&out);
    mx_shutdown();
    gen_unref(g);
}

int main(void)
{
    test_many_series();
    test_spend_and_budget_gauge();
    return check_done();
}
