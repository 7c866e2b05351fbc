/* The attempt outcomes and end causes: the one classification of an attempt,
 * and docs/pool.md and docs/operations.md listing every member of both
 * vocabularies as the tables in outcome.c say. */
#include <stdlib.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/outcome.h"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 18;
    char *buf = malloc(cap);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void test_classify(void)
{
    struct config *c = check_load_config("[backend a]\nurl = http://127.0.0.1:1/v1\n"
                                         "breaker_status = 429, 500-599\n",
                                         NULL);
    const struct cfg_statuses *bs = &c->backends[0].breaker_status;
    CHECK(up_classify(UP_ANSWERED, 200, false, bs) == UP_OUTCOME_SUCCESS);
    CHECK(up_classify(UP_ANSWERED, 200, true, bs) == UP_OUTCOME_SUCCESS);
    CHECK(up_classify(UP_ANSWERED, 304, false, bs) == UP_OUTCOME_SUCCESS);
    CHECK(up_classify(UP_ANSWERED, 400, false, bs) == UP_OUTCOME_PASSED);
    CHECK(up_classify(UP_ANSWERED, 404, false, bs) == UP_OUTCOME_PASSED);
    CHECK(up_classify(UP_ANSWERED, 429, false, bs) == UP_OUTCOME_RATE_LIMITED);
    CHECK(up_classify(UP_ANSWERED, 500, false, bs) == UP_OUTCOME_ERROR_STATUS);
    CHECK(up_classify(UP_ANSWERED, 503, false, bs) == UP_OUTCOME_ERROR_STATUS);
    CHECK(up_classify(UP_ANSWERED, 401, false, bs) == UP_OUTCOME_PASSED); /* not listed here */
    CHECK(up_classify(UP_CONNECT_FAILED, 0, false, bs) == UP_OUTCOME_CONNECT_FAILED);
    CHECK(up_classify(UP_CONNECT_TIMEOUT, 0, false, bs) == UP_OUTCOME_CONNECT_TIMEOUT);
    CHECK(up_classify(UP_TLS_FAILED, 0, false, bs) == UP_OUTCOME_TLS_FAILED);
    CHECK(up_classify(UP_NO_ANSWER, 0, false, bs) == UP_OUTCOME_NO_ANSWER);
    CHECK(up_classify(UP_TIMEOUT, 0, false, bs) == UP_OUTCOME_TIMEOUT);
    CHECK(up_classify(UP_TIMEOUT, 0, true, bs) == UP_OUTCOME_TIMEOUT);
    CHECK(up_classify(UP_BROKEN, 0, false, bs) == UP_OUTCOME_BROKEN);
    CHECK(up_classify(UP_BROKEN, 0, true, bs) == UP_OUTCOME_STREAM_BROKEN);
    CHECK(up_classify(UP_REFUSED, 0, false, bs) == UP_OUTCOME_TOO_LARGE);
    cfg_unref(c);

    /* The default breaker_status: a refused backend credential is a failure. */
    c = check_load_config("[backend a]\nurl = http://127.0.0.1:1/v1\n", NULL);
    bs = &c->backends[0].breaker_status;
    CHECK(up_classify(UP_ANSWERED, 401, false, bs) == UP_OUTCOME_AUTH_REJECTED);
    CHECK(up_classify(UP_ANSWERED, 403, false, bs) == UP_OUTCOME_AUTH_REJECTED);
    CHECK(up_classify(UP_ANSWERED, 404, false, bs) == UP_OUTCOME_PASSED);
    CHECK(up_classify(UP_ANSWERED, 429, false, bs) == UP_OUTCOME_RATE_LIMITED);
    CHECK(up_classify(UP_ANSWERED, 500, false, bs) == UP_OUTCOME_ERROR_STATUS);
    CHECK(up_outcome_info(UP_OUTCOME_AUTH_REJECTED)->retry == RETRY_YES);
    CHECK(err_info(up_outcome_info(UP_OUTCOME_AUTH_REJECTED)->error)->status == 502);
    cfg_unref(c);

    /* A status outside breaker_status is an answer, passed through. */
    c = check_load_config("[backend a]\nurl = http://127.0.0.1:1/v1\nbreaker_status = 503\n", NULL);
    bs = &c->backends[0].breaker_status;
    CHECK(up_classify(UP_ANSWERED, 500, false, bs) == UP_OUTCOME_PASSED);
    CHECK(up_classify(UP_ANSWERED, 429, false, bs) == UP_OUTCOME_PASSED);
    CHECK(up_classify(UP_ANSWERED, 503, false, bs) == UP_OUTCOME_ERROR_STATUS);
    cfg_unref(c);
}

/* What the table says each outcome decides. */
static void test_decisions(void)
{
    for (int o = 0; o < UP_OUTCOME__COUNT; o++) {
        const struct up_outcome_info *oi = up_outcome_info(o);
        CHECK(oi->label && oi->doc && oi->end < END__COUNT);
        /* sluice answers itself exactly when it has a message to say */
        CHECK((oi->error == ERR_NONE) == (oi->message == NULL));
        /* only failures are tried again */
        CHECK(oi->retry == RETRY_NO || oi->verdict == VERDICT_FAILURE);
        /* one label per outcome: the metric and the log tell them apart */
        for (int other = 0; other < o; other++)
            CHECK(strcmp(oi->label, up_outcome_info(other)->label) != 0);
    }
    CHECK(up_outcome_info(UP_OUTCOME_SUCCESS)->verdict == VERDICT_SUCCESS);
    CHECK(up_outcome_info(UP_OUTCOME_PASSED)->verdict == VERDICT_SUCCESS);
    CHECK(up_outcome_info(UP_OUTCOME_ABORTED)->verdict == VERDICT_NEUTRAL);
    /* nothing was sent: always another attempt; sent: never by default */
    CHECK(up_outcome_info(UP_OUTCOME_CONNECT_FAILED)->retry == RETRY_YES);
    CHECK(up_outcome_info(UP_OUTCOME_CONNECT_TIMEOUT)->retry == RETRY_YES);
    CHECK(up_outcome_info(UP_OUTCOME_TLS_FAILED)->retry == RETRY_YES);
    CHECK(up_outcome_info(UP_OUTCOME_TIMEOUT)->retry == RETRY_NO);
    CHECK(up_outcome_info(UP_OUTCOME_BROKEN)->retry == RETRY_NO);
    CHECK(up_outcome_info(UP_OUTCOME_NO_ANSWER)->retry == RETRY_UNANSWERED);
    CHECK(err_info(up_outcome_info(UP_OUTCOME_CONNECT_TIMEOUT)->error)->status == 504);
    CHECK(err_info(up_outcome_info(UP_OUTCOME_TIMEOUT)->error)->status == 504);
    CHECK(err_info(up_outcome_info(UP_OUTCOME_BROKEN)->error)->status == 502);
    for (int e = 0; e < END__COUNT; e++) {
        const char *t = end_cause_token(e);
        CHECK(t && *t && end_cause_doc(e));
        for (const char *p = t; *p; p++) /* one token in a key=value line */
            CHECK((*p >= 'a' && *p <= 'z') || *p == '_');
    }
}

static const char *verdict_word(enum up_verdict v)
{
    return v == VERDICT_SUCCESS ? "success" : v == VERDICT_FAILURE ? "failure" : "none";
}

/* The row docs/pool.md has for an outcome. */
static void outcome_row(enum up_outcome o, char *out, size_t n)
{
    const struct up_outcome_info *oi = up_outcome_info(o);
    char client[96];
    if (oi->end == END_CLIENT_CLOSED)
        snprintf(client, sizeof(client), "nothing: it left");
    else if (oi->error == ERR_NONE)
        snprintf(client, sizeof(client), "the upstream's answer");
    else
        snprintf(client, sizeof(client), "%d `%s`", err_info(oi->error)->status,
                 err_info(oi->error)->code);
    const char *retry = oi->retry == RETRY_YES          ? "yes"
                        : oi->retry == RETRY_UNANSWERED ? "with `resend_unanswered`"
                                                        : "no";
    snprintf(out, n, "| `%s` | %s | %s | %s | %s | `%s` |", oi->label, oi->doc,
             verdict_word(oi->verdict), retry, client, end_cause_token(oi->end));
}

static void test_docs_list_every_member(void)
{
    char *pool_md = read_file("docs/pool.md");
    CHECK(pool_md != NULL);
    char row[512];
    for (int o = 0; pool_md && o < UP_OUTCOME__COUNT; o++) {
        outcome_row(o, row, sizeof(row));
        if (!strstr(pool_md, row))
            fprintf(stderr, "docs/pool.md lacks the row (test_outcome --tables):\n%s\n", row);
        CHECK(strstr(pool_md, row) != NULL);
    }
    char *ops_md = read_file("docs/operations.md");
    CHECK(ops_md != NULL);
    for (int e = 0; ops_md && e < END__COUNT; e++) {
        snprintf(row, sizeof(row), "| `%s` | %s |", end_cause_token(e), end_cause_doc(e));
        if (!strstr(ops_md, row))
            fprintf(stderr, "docs/operations.md lacks the row (test_outcome --tables):\n%s\n", row);
        CHECK(strstr(ops_md, row) != NULL);
    }
    free(pool_md);
    free(ops_md);
}

/* `test_outcome --tables` prints both tables as the docs must have them. */
static void print_tables(void)
{
    char row[512];
    printf("docs/pool.md:\n");
    for (int o = 0; o < UP_OUTCOME__COUNT; o++) {
        outcome_row(o, row, sizeof(row));
        printf("%s\n", row);
    }
    printf("docs/operations.md:\n");
    for (int e = 0; e < END__COUNT; e++)
        printf("| `%s` | %s |\n", end_cause_token(e), end_cause_doc(e));
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--tables") == 0) {
        print_tables();
        return 0;
    }
    test_classify();
    test_decisions();
    test_docs_list_every_member();
    return check_done();
}
