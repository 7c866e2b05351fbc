/* Runtime keys' records (keys.c): the admin body read, a change applied by
 * the file's own rules, the stored form round trip, the team's limits, the
 * secret's shape; and RFC 3339 times (util.c). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/keys.h"
#include "sluice/util.h"

static const char conf[] = "[backend a]\nurl = http://127.0.0.1:1/v1/\n"
                           "[team platform]\nrpm = 100\nbudget = 10\nbudget_period = month\n"
                           "[team free]\n";

static struct rt_key *made(const struct config *c, const char *body, char *msg, size_t n)
{
    struct keys_change ch;
    const char *param;
    if (!keys_change_parse(body, strlen(body), &ch, msg, n, &param))
        return NULL;
    struct rt_key *k = keys_apply(c, NULL, &ch, msg, n);
    keys_change_free(&ch);
    return k;
}

static void test_time(void)
{
    int64_t t;
    CHECK(sl_parse_time("1970-01-01T00:00:00Z", &t) && t == 0);
    CHECK(sl_parse_time("2027-01-01T00:00:00Z", &t) && t == 1798761600);
    CHECK(sl_parse_time("2024-02-29T12:30:15.250Z", &t) && t == 1709209815);
    CHECK(sl_parse_time("2027-01-01T02:00:00+02:00", &t) && t == 1798761600);
    CHECK(sl_parse_time("2026-12-31T19:00:00-05:00", &t) && t == 1798761600);
    const char *bad[] = { "2027-01-01",           "2027-01-01 00:00:00Z", "2023-02-29T00:00:00Z",
                          "2027-13-01T00:00:00Z", "2027-01-01T24:00:00Z", "2027-01-01T00:00:00",
                          "2027-01-01T00:00:00+2", "1969-12-31T23:59:59Z", "2027-01-01T00:00:00Zjunk",
                          "2027-01-01T00:00:00.Z", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        t = -7;
        CHECK(!sl_parse_time(bad[i], &t) && t == -7);
    }
    char out[21];
    sl_fmt_time(1798761600, out);
    CHECK_STR(out, "2027-01-01T00:00:00Z");
}

static void test_secret(void)
{
    char a[KEYS_SECRET_LEN + 1], b[KEYS_SECRET_LEN + 1];
    uint8_t da[32], db[32], want[32];
    CHECK(keys_new_secret(a, da) && keys_new_secret(b, db));
    CHECK(strlen(a) == KEYS_SECRET_LEN && strncmp(a, "sk-sluice-", 10) == 0);
    for (const char *p = a + 10; *p; p++)
        CHECK(isalnum((unsigned char)*p));
    CHECK(strcmp(a, b) != 0);
    sl_sha256(a, strlen(a), want);
    CHECK(memcmp(da, want, 32) == 0);
}

static void test_change_parse(void)
{
    struct keys_change c;
    char msg[256];
    const char *param;
    const char *body = "{\"name\":\"alice\",\"rpm\":10,\"budget\":2.5,\"models\":[\"gpt-4o\",\"o1\"],"
                       "\"queue_timeout\":\"2s\",\"expires_at\":null,\"disabled\":true,"
                       "\"metadata\":{\"a\":[1,2]}}";
    CHECK(keys_change_parse(body, strlen(body), &c, msg, sizeof(msg), &param));
    CHECK(c.has_name && strcmp(c.name, "alice") == 0 && c.disabled == 1 && c.nset == 5);
    CHECK_STR(c.vals[0], "10");
    CHECK_STR(c.vals[1], "2.500000");
    CHECK_STR(c.vals[2], "gpt-4o, o1");
    CHECK_STR(c.vals[3], "2s");
    CHECK(c.vals[4] == NULL); /* null: back to the default */
    CHECK_STR(c.metadata, "{\"a\":[1,2]}");
    keys_change_free(&c);

    const struct {
        const char *body, *param, *words;
    } bad[] = {
        { "{\"rpm\":1,\"rpm\":2}", NULL, "twice" },
        { "{\"x\":{\"a\":1,\"a\":2}}", NULL, "twice" },
        { "{\"colour\":1}", NULL, "Unknown member 'colour'" },
        { "{\"key\":\"sk-x\"}", "key", "makes the secret" },
        { "{\"name\":\"a b\"}", "name", "letters" },
        { "{\"rpm\":1.5}", "rpm", "whole number" },
        { "{\"rpm\":true}", "rpm", "whole number" },
        { "{\"models\":\"gpt-4o\"}", "models", "list" },
        { "{\"models\":[]}", "models", "list" },
        { "{\"models\":[\"a,b\"]}", "models", "list" },
        { "{\"models\":[\"a b\"]}", "models", "list" },
        { "{\"team\":\"a\\nb\"}", "team", "a string" },
        { "{\"budget\":-1}", "budget", "USD" },
        { "{\"metadata\":[1]}", "metadata", "object" },
        { "{\"disabled\":1}", "disabled", "true or false" },
        { "[1]", NULL, "JSON object" },
        { "{\"models\":[\"a\xff\"]}", NULL, "UTF-8" },
        { "", NULL, "JSON object" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        msg[0] = '\0';
        bool ok = keys_change_parse(bad[i].body, strlen(bad[i].body), &c, msg, sizeof(msg), &param);
        CHECK(!ok);
        CHECK((param == NULL) == (bad[i].param == NULL));
        if (param && bad[i].param)
            CHECK_STR(param, bad[i].param);
        if (!strstr(msg, bad[i].words))
            fprintf(stderr, "  %s -> %s\n", bad[i].body, msg);
        CHECK(strstr(msg, bad[i].words) != NULL);
    }
}

static void test_apply_and_records(const struct config *c)
{
    char msg[256];
    struct rt_key *k = made(c, "{\"name\":\"alice\",\"team\":\"platform\",\"rpm\":10,"
                               "\"models\":[\"gpt-4o\"],\"expires_at\":\"2030-01-01T00:00:00Z\","
                               "\"metadata\":{\"o\":\"x\"}}",
                            msg, sizeof(msg));
    CHECK(k != NULL);
    if (!k)
        return;
    CHECK(k->k.runtime && k->k.rpm == 10 && k->k.team == cfg_find_team(c, "platform"));
    CHECK(k->k.expires_at == 1893456000 && k->k.reserve_output_tokens == 1000);
    CHECK(cfg_models_match(&k->k.models, "gpt-4o", 6) && !cfg_models_match(&k->k.models, "o1", 2));
    memset(k->k.digest, 0xab, 32);
    k->created_at = 100;
    k->updated_at = 200;

    /* the stored form reads back to the same key */
    struct sl_buf b = { 0 };
    keys_record_json(k, &b);
    struct rt_key *back = keys_record_parse(c, b.data, b.len, msg, sizeof(msg));
    CHECK(back != NULL);
    if (back) {
        struct sl_buf b2 = { 0 };
        keys_record_json(back, &b2);
        CHECK_STR(b.data, b2.data);
        CHECK(memcmp(back->k.digest, k->k.digest, 32) == 0 && back->k.rpm == 10);
        sl_buf_free(&b2);
        keys_unref(back);
    }
    /* a record changed behind sluice's back is read by the same rules */
    char *tampered = sl_strdup(b.data);
    char *at = strstr(tampered, "\"rpm\":\"10\"");
    CHECK(at != NULL);
    if (at)
        memcpy(at, "\"rpm\":\"-1\"", 10);
    CHECK(keys_record_parse(c, tampered, strlen(tampered), msg, sizeof(msg)) == NULL);
    CHECK(strstr(msg, "rpm") != NULL);
    free(tampered);
    CHECK(keys_record_parse(c, "{\"name\":\"x\"}", 12, msg, sizeof(msg)) == NULL);
    sl_buf_free(&b);

    /* a change: null clears a setting, the rest stay; the digest stays */
    struct keys_change ch;
    const char *param;
    const char *patch = "{\"rpm\":null,\"input_tpm\":500,\"disabled\":true}";
    CHECK(keys_change_parse(patch, strlen(patch), &ch, msg, sizeof(msg), &param));
    struct rt_key *k2 = keys_apply(c, k, &ch, msg, sizeof(msg));
    keys_change_free(&ch);
    CHECK(k2 && k2->k.rpm == 0 && k2->k.input_tpm == 500 && k2->disabled);
    CHECK(k2 && memcmp(k2->k.digest, k->k.digest, 32) == 0 && k2->created_at == 100);
    CHECK(k2 && cfg_models_match(&k2->k.models, "gpt-4o", 6) && k2->k.expires_at == 1893456000);
    keys_unref(k2);

    /* the team's limits: a team admin may not give more */
    CHECK(keys_within_team(&k->k, msg, sizeof(msg)));
    struct rt_key *big = made(c, "{\"name\":\"b\",\"team\":\"platform\",\"rpm\":101}", msg, sizeof(msg));
    CHECK(big && !keys_within_team(&big->k, msg, sizeof(msg)) && strncmp(msg, "rpm:", 4) == 0);
    keys_unref(big);
    big = made(c, "{\"name\":\"b\",\"team\":\"platform\",\"budget\":10.5}", msg, sizeof(msg));
    CHECK(big && !keys_within_team(&big->k, msg, sizeof(msg)) && strstr(msg, "(10.000000)"));
    keys_unref(big);
    big = made(c, "{\"name\":\"b\",\"team\":\"free\",\"rpm\":100000}", msg, sizeof(msg));
    CHECK(big && keys_within_team(&big->k, msg, sizeof(msg))); /* no limit to stay within */
    keys_unref(big);

    /* the file's own rules */
    CHECK(made(c, "{\"name\":\"b\",\"team\":\"nobody\"}", msg, sizeof(msg)) == NULL);
    CHECK(strstr(msg, "team") == msg);
    CHECK(made(c, "{\"name\":\"b\",\"quota\":5,\"quota_period\":\"none\"}", msg, sizeof(msg)) == NULL);
    CHECK(made(c, "{\"name\":\"b\",\"mode\":\"lenient\"}", msg, sizeof(msg)) == NULL);
    CHECK(strncmp(msg, "mode:", 5) == 0);
    CHECK(made(c, "{\"name\":\"b\",\"queue_timeout\":\"2h\"}", msg, sizeof(msg)) == NULL);
    keys_unref(k);
}

int main(void)
{
    test_time();
    test_secret();
    test_change_parse();
    struct config *c = check_load_config(conf, NULL);
    CHECK(c != NULL);
    if (c) {
        test_apply_and_records(c);
        cfg_unref(c);
    }
    return check_done();
}
