/* Config parsing: values, defaults, and a file:line for every kind of error. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/util.h"

static struct config *load(const char *text, struct cfg_errors *errs)
{
    return check_load_config(text, errs);
}

/* True if some error line ends with ":<line>: " + contains msg. */
static int has_error(const struct cfg_errors *e, int line, const char *msg)
{
    char want[32];
    snprintf(want, sizeof(want), ":%d: ", line);
    for (int i = 0; i < e->n; i++)
        if ((line == 0 || strstr(e->lines[i], want)) && strstr(e->lines[i], msg))
            return 1;
    for (int i = 0; i < e->n; i++)
        fprintf(stderr, "  got: %s\n", e->lines[i]);
    return 0;
}

static const char base[] = "[backend a]\nurl = http://127.0.0.1:1/v1/\n";

static void test_valid(void)
{
    struct cfg_errors e = { 0 };
    struct config *c = load("; comment\n# another\n[server]\nlisten = 127.0.0.1:9000\n"
                            "listen = [::1]:9001\nworkers = 0\nmax_body_size = 1m\n"
                            "request_timeout = 90s\nadmin_key = sha256:"
                            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
                            "access_log = off   ; inline comment\n"
                            "[redis]\nurl = redis://127.0.0.1:6379/0\ntimeout = 250ms\non_error = deny\n"
                            "[backend az]\nurl = https://x.openai.azure.com/\ntype = azure\n"
                            "api_key = secret\napi_version = 2024-06-01\nmodels = gpt-4o, gpt-4o-mini\n"
                            "priority = 2\nweight = 5\nbreaker_status = 429, 500-502\n"
                            "[key team]\nkey = sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
                            "rpm = 600\ninput_tpm = 100000\nquota_period = day\nquota = 10\n",
                            &e);
    CHECK(c != NULL);
    CHECK(e.n == 0);
    if (!c)
        return;
    CHECK(c->server.listen.n == 2);
    CHECK(c->server.listen.v[0].port == 9000);
    CHECK_STR(c->server.listen.v[1].host, "::1");
    CHECK(c->server.workers == 0);
    CHECK(c->server.max_body_size == 1024 * 1024);
    CHECK(c->server.request_timeout_ms == 90000);
    CHECK(c->server.admin_enabled);
    CHECK(!c->server.access_log);
    CHECK(c->server.max_attempts == 3);
    CHECK(c->redis.enabled);
    CHECK(c->redis.timeout_ms == 250);
    CHECK(c->redis.on_error == REDIS_ON_ERROR_DENY);
    CHECK(c->nbackends == 1);
    struct cfg_backend *b = &c->backends[0];
    CHECK_STR(b->url, "https://x.openai.azure.com");
    CHECK(b->type == BACKEND_AZURE);
    CHECK(b->models.n == 2 && !b->models.any);
    CHECK(cfg_models_match(&b->models, "gpt-4o-mini", 11));
    CHECK(!cfg_models_match(&b->models, "gpt-4", 5));
    CHECK(b->priority == 2 && b->weight == 5);
    CHECK(cfg_status_in(&b->breaker_status, 429) && cfg_status_in(&b->breaker_status, 501));
    CHECK(!cfg_status_in(&b->breaker_status, 503));
    CHECK(b->breaker_trip_ms == 30000); /* default */
    CHECK(b->connect_timeout_ms == 2000);
    CHECK(c->nkeys == 1);
    CHECK(c->keys[0].rpm == 600 && c->keys[0].output_tpm == 0);
    CHECK(c->keys[0].models.any);
    CHECK(c->keys[0].quota_period == QUOTA_PERIOD_DAY);
    CHECK(c->keys[0].digest[0] == 0x01 && c->keys[0].digest[31] == 0xef);
    CHECK(cfg_find_key(c, "team") == &c->keys[0]);
    cfg_unref(c);
}

/* Prices, budgets and teams: money in micro-dollars, keys tied to their team. */
static void test_money_and_teams(void)
{
    struct cfg_errors e = { 0 };
    struct config *c = load("[backend a]\nurl = http://x/v1\nmodels = gpt-4o, m2\n"
                            "[model gpt-4o]\ninput_price = 2.50\ncached_input_price = 1.25\n"
                            "output_price = 10\n"
                            "[model ft:gpt-4o:org:x]\ninput_price = 0.000001\n"
                            "[team platform]\nrpm = 6000\nbudget = 500.00\nbudget_period = week\n"
                            "[key a]\nkey = some-key-123\nteam = platform\nbudget = 25\n"
                            "budget_period = day\n[key b]\nkey = other-key-123\n",
                            &e);
    CHECK(c != NULL);
    if (!c)
        return;
    const struct cfg_model *m = cfg_find_model(c, "gpt-4o");
    CHECK(m && m->input_price == 2500000 && m->cached_input_price == 1250000 &&
          m->output_price == 10000000);
    m = cfg_find_model(c, "ft:gpt-4o:org:x");
    CHECK(m && m->input_price == 1 && m->cached_input_price == 1 && m->output_price == -1);
    CHECK(!cfg_find_model(c, "m2"));
    const struct cfg_team *t = cfg_find_team(c, "platform");
    CHECK(t && t->rpm == 6000 && t->budget == 500000000 && t->budget_period == QUOTA_PERIOD_WEEK);
    const struct cfg_key *k = cfg_find_key(c, "a");
    CHECK(k->team == t && k->budget == 25000000 && k->budget_period == QUOTA_PERIOD_DAY &&
          k->reserve_output_tokens == 1000);
    k = cfg_find_key(c, "b");
    CHECK(!k->team && k->budget == 0 && k->budget_period == QUOTA_PERIOD_MONTH);
    cfg_unref(c);
    cfg_errors_free(&e);
}

/* [model NAME*] prices the models NAME starts (the longest wins); it holds
 * prices only; passthrough_paths are /v1 paths. */
static void test_price_prefixes_and_passthrough(void)
{
    struct cfg_errors e = { 0 };
    struct config *c = load("[backend a]\nurl = http://x/v1\n"
                            "[server]\npassthrough_paths = /v1/messages, /v1/x/y\n"
                            "[model gpt-4o*]\ninput_price = 5\noutput_price = 20\n"
                            "[model gpt-4o-mini*]\ninput_price = 0.15\noutput_price = 0.6\n"
                            "[model gpt-4o-mini]\nrequest_price = 0.04\n"
                            "[model dall-e-3]\nrequest_price = 0.04\n",
                            &e);
    CHECK(c != NULL);
    if (!c)
        return;
    const struct cfg_model *m = cfg_priced_model(c, "gpt-4o-2024-08-06");
    CHECK(m && strcmp(m->name, "gpt-4o*") == 0 && cfg_prices_tokens(m) && m->request_price == -1);
    m = cfg_priced_model(c, "gpt-4o-mini-2024-07-18");
    CHECK(m && strcmp(m->name, "gpt-4o-mini*") == 0 && m->input_price == 150000);
    m = cfg_priced_model(c, "gpt-4o-mini"); /* its own section first, even with only request_price */
    CHECK(m && strcmp(m->name, "gpt-4o-mini") == 0 && !cfg_prices_tokens(m));
    CHECK(cfg_priced_model(c, "o1") == NULL && cfg_priced_model(c, "gpt-4") == NULL);
    CHECK(cfg_model_is_prefix(cfg_find_model(c, "gpt-4o*")) &&
          !cfg_model_is_prefix(cfg_find_model(c, "dall-e-3")));
    CHECK(strcmp(cfg_model_label(c, "gpt-4o-2024-08-06"), "other") == 0); /* no label of its own */
    CHECK(c->server.passthrough_paths.n == 2 && c->server.unpriced_models == 0);
    cfg_unref(c);
    cfg_errors_free(&e);

    c = load("[backend a]\nurl = http://x/v1\n[model gpt*]\nupstream = gpt-4o\ninput_price = 1\n"
             "[model *]\ninput_price = 1\n[server]\npassthrough_paths = /v2/x, /v1/\n",
             &e);
    CHECK(c == NULL);
    CHECK(has_error(&e, 0, "[model gpt*] holds prices only"));
    CHECK(has_error(&e, 0, "[model NAME] needs a name"));
    CHECK(has_error(&e, 0, "'/v2/x' is not a /v1 path") && has_error(&e, 0, "'/v1/' is not a /v1 path"));
    cfg_errors_free(&e);
}

static void test_defaults_without_sections(void)
{
    struct cfg_errors e = { 0 };
    struct config *c = load(base, &e);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK(c->server.listen.n == 1 && c->server.listen.v[0].port == 8080);
    CHECK(!c->redis.enabled);
    CHECK(c->redis.on_error == REDIS_ON_ERROR_LOCAL);
    CHECK(c->server.max_body_size == 4 * 1024 * 1024);
    CHECK(c->server.request_timeout_ms == 600000);
    CHECK(!c->server.admin_enabled);
    CHECK_STR(c->backends[0].url, "http://127.0.0.1:1/v1");
    CHECK(c->backends[0].models.any);
    cfg_unref(c);
}

static void test_secrets(void)
{
    struct cfg_errors e = { 0 };
    setenv("SLUICE_TEST_SECRET", "from-env", 1);
    char secret_file[] = "/tmp/sluice-secret-XXXXXX";
    int fd = mkstemp(secret_file);
    if (write(fd, "from-file\nsecond line\n", 22) < 0)
        perror("write");
    close(fd);
    char text[512];
    snprintf(text, sizeof(text),
             "[backend a]\nurl = http://h/v1\napi_key = env:SLUICE_TEST_SECRET\n"
             "[backend b]\nurl = http://h/v1\napi_key = file:%s\n"
             "[key k]\nkey = a-plain-client-key\n",
             secret_file);
    struct config *c = load(text, &e);
    unlink(secret_file);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_STR(c->backends[0].api_key, "from-env");
    CHECK_STR(c->backends[1].api_key, "from-file");
    cfg_unref(c);

    c = load("[backend a]\nurl = http://h/v1\napi_key = env:SLUICE_NOT_SET_ANYWHERE\n"
             "api_version = file:/nonexistent/x\n",
             &e);
    CHECK(c == NULL);
    CHECK(has_error(&e, 3, "SLUICE_NOT_SET_ANYWHERE is not set"));
    CHECK(has_error(&e, 4, "cannot read /nonexistent/x"));
    cfg_errors_free(&e);

    /* A device or a FIFO would block or never end; a line of a megabyte is
     * no secret: each is an error, read no further. */
    char big_file[] = "/tmp/sluice-big-XXXXXX";
    fd = mkstemp(big_file);
    static char big[1 << 20];
    memset(big, 'k', sizeof(big));
    if (write(fd, big, sizeof(big)) < 0)
        perror("write");
    close(fd);
    snprintf(text, sizeof(text),
             "[backend a]\nurl = http://h/v1\napi_key = file:/dev/zero\n"
             "[backend b]\nurl = http://h/v1\napi_key = file:%s\n"
             "[server]\ntls_cert = /dev/zero\n",
             big_file);
    c = load(text, &e);
    unlink(big_file);
    CHECK(c == NULL);
    CHECK(has_error(&e, 3, "/dev/zero is not a regular file"));
    CHECK(has_error(&e, 6, "its first line is longer than 65536 bytes"));
    CHECK(has_error(&e, 8, "/dev/zero is not a regular file"));
    cfg_errors_free(&e);
}

struct bad_case {
    const char *text;
    int line;
    const char *msg;
};

static void test_errors(void)
{
    static const struct bad_case cases[] = {
        { "[server]\nlisten = 127.0.0.1:8080\nbogus = 1\n", 3, "unknown key 'bogus' in [server]" },
        { "[servr]\n", 1, "unknown section [servr]" },
        { "[server]\nrequest_timeout = 10x\n", 2, "request_timeout: '10x' is not a duration" },
        { "[server]\nmax_body_size = lots\n", 2, "max_body_size: 'lots' is not a size" },
        { "[server]\nworkers = 1000\n", 2, "out of range" },
        { "[server]\nworkers = 2\nworkers = 3\n", 3, "'workers' already set at line 2" },
        { "[server]\naccess_log = maybe\n", 2, "not yes/no" },
        { "[server]\nlisten = nowhere\n", 2, "'nowhere' is not host:port" },
        { "[server]\nlisten = 127.0.0.1:70000\n", 2, "is not host:port" },
        { "[server]\nadmin_key = sha256:abc\n", 2, "64 hex digits" },
        { "[server]\njust some words\n", 2, "expected 'name = value'" },
        { "workers = 1\n", 1, "outside any section" },
        { "[backend]\nurl = http://x\n", 1, "needs a name" },
        { "[backend a]\n", 1, "[backend NAME] needs 'url'" },
        { "[backend a]\nurl = ftp://x\n", 2, "must start with http:// or https://" },
        { "[backend a]\nurl = http://x\ntype = grpc\n", 3, "'grpc' is not one of openai, azure" },
        { "[backend a]\nurl = http://x\ntype = azure\n", 1, "of type azure needs api_version" },
        { "[backend a]\nurl = http://x\napi_version = 1\n", 1, "are for type = azure" },
        { "[backend a]\nurl = http://x\nbreaker_status = 429, 700\n", 3, "not a list of statuses" },
        { "[backend a]\nurl = http://x\nmodels = ,\n", 3, "not a comma-separated list" },
        { "[backend a]\nurl = http://x\n[backend a]\nurl = http://y\n", 3,
          "section [backend a] already defined at line 1" },
        { "[key k]\n", 1, "[key NAME] needs 'key'" },
        { "[key k]\nkey = short\n", 2, "at least 8 characters" },
        { "[key k]\nkey = same-key-123\n[key j]\nkey = same-key-123\n", 3,
          "has the same key as [key k]" },
        { "[key k]\nkey = some-key-123\nquota_period = fortnight\n", 3,
          "not one of none, day, month, total, week" },
        { "[key k]\nkey = some-key-123\nteam = nobody\n", 1,
          "[key k]: team nobody has no [team nobody] section" },
        { "[key k]\nkey = some-key-123\nbudget = 1.1234567\n", 3, "at most 6 decimals" },
        { "[key k]\nkey = some-key-123\nbudget = -5\n", 3, "is not an amount of USD" },
        { "[key k]\nkey = some-key-123\nbudget = 5\nbudget_period = none\n", 1,
          "budget needs budget_period" },
        { "[team t]\nquota = 5\n", 2, "unknown key 'quota' in [team NAME]" },
        { "[team t]\nbudget = 1\nbudget_period = none\n", 1, "budget needs budget_period" },
        { "[model gpt-4o]\ninput_price = $2\n", 2, "is not an amount of USD" },
        { "[server]\nrequire_prices = on\n[backend a]\nurl = http://x\nmodels = m1, m2\n"
          "[model m1]\ninput_price = 1\noutput_price = 2\n[model m2]\ninput_price = 1\n", 3,
          "[backend a] lists m2, which has no [model m2] with input_price and output_price" },
        { "[redis]\non_error = panic\n", 2, "not one of local, allow, deny" },
        { "[server] trailing\n", 1, "unexpected text after section header" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg_errors e = { 0 };
        char text[1024];
        snprintf(text, sizeof(text), "%s%s", cases[i].text,
                 strstr(cases[i].text, "[backend") ? "" : "\n[backend zz]\nurl = http://z/v1\n");
        struct config *c = load(text, &e);
        CHECK(c == NULL);
        if (!has_error(&e, cases[i].line, cases[i].msg))
            fprintf(stderr, "  case %zu: want line %d: %s\n", i, cases[i].line, cases[i].msg);
        CHECK(has_error(&e, cases[i].line, cases[i].msg));
        cfg_unref(c);
        cfg_errors_free(&e);
    }
}

static void test_no_backend_and_long_line(void)
{
    struct cfg_errors e = { 0 };
    CHECK(load("[server]\nworkers = 1\n", &e) == NULL);
    CHECK(has_error(&e, 0, "no [backend NAME] section"));
    cfg_errors_free(&e);

    char text[1024] = "[backend a]\nurl = http://x/v1\nmodels = ";
    for (int i = 0; i < 40; i++)
        strcat(text, "model-x, ");
    strcat(text, "last\n");
    CHECK(load(text, &e) == NULL);
    CHECK(has_error(&e, 3, "line too long"));
    cfg_errors_free(&e);

    CHECK(load("[key k]\nkey = x\n", &e) == NULL); /* several errors are all reported */
    CHECK(e.n >= 2);
    cfg_errors_free(&e);
}

static void test_values(void)
{
    int64_t v;
    CHECK(sl_parse_duration_ms("100ms", &v) && v == 100);
    CHECK(sl_parse_duration_ms("2s", &v) && v == 2000);
    CHECK(sl_parse_duration_ms("10m", &v) && v == 600000);
    /* OpenAI's reset durations */
    CHECK(sl_parse_reset_ms(SL_STR("6m0s"), &v) && v == 360000);
    CHECK(sl_parse_reset_ms(SL_STR("1.5s"), &v) && v == 1500);
    CHECK(sl_parse_reset_ms(SL_STR("20ms"), &v) && v == 20);
    CHECK(sl_parse_reset_ms(SL_STR("1h2m3s"), &v) && v == 3723000);
    CHECK(sl_parse_reset_ms(SL_STR("2"), &v) && v == 2000);
    CHECK(sl_parse_reset_ms(SL_STR("0.0005s"), &v) && v == 1);
    CHECK(!sl_parse_reset_ms(SL_STR(""), &v));
    CHECK(!sl_parse_reset_ms(SL_STR("5x"), &v));
    CHECK(!sl_parse_reset_ms(SL_STR("1m5"), &v));
    CHECK(!sl_parse_reset_ms(SL_STR("s"), &v));
    /* an upstream's header that adds up past any int64 (casting it is undefined) */
    static char huge[10 * 3000 + 1];
    for (int i = 0; i < 3000; i++)
        memcpy(huge + 10 * i, "999999999h", 10);
    CHECK(!sl_parse_reset_ms((struct sl_str){ huge, strlen(huge) }, &v));
    CHECK(sl_parse_reset_ms(SL_STR("999999999m"), &v) && v == INT64_C(59999999940000));
    CHECK(sl_parse_duration_ms("1h", &v) && v == 3600000);
    CHECK(sl_parse_duration_ms("5", &v) && v == 5000);
    CHECK(!sl_parse_duration_ms("5 s", &v));
    CHECK(!sl_parse_duration_ms("-1s", &v));
    CHECK(!sl_parse_duration_ms("", &v));
    CHECK(sl_parse_size("4m", &v) && v == 4 << 20);
    CHECK(sl_parse_size("512k", &v) && v == 512 << 10);
    CHECK(sl_parse_size("100", &v) && v == 100);
    CHECK(!sl_parse_size("1g", &v));
    CHECK(!sl_parse_int("99999999999999999999", &v));
    CHECK(sl_parse_int("-5", &v) && v == -5);
    bool b;
    CHECK(sl_parse_bool("Yes", &b) && b);
    CHECK(sl_parse_bool("off", &b) && !b);
    CHECK(!sl_parse_bool("nah", &b));
}

/* A model's metric label is the config's own name for it, found by the name
 * index: backends' and keys' lists and [model] sections; others are "other". */
static void test_model_labels(void)
{
    struct cfg_errors e = { 0 };
    struct config *c = load("[backend a]\nurl = http://127.0.0.1:1/v1/\nmodels = gpt-4o, gpt-4o-mini\n"
                            "[key k]\nkey = sk-test-aaaaaaaaaaaaaaaa\nmodels = fast, gpt-4o\n"
                            "[model fast]\nupstream = gpt-4o-mini\n[model o1]\n",
                            &e);
    CHECK(c && e.n == 0);
    if (!c)
        return;
    const char *names[] = { "gpt-4o", "gpt-4o-mini", "fast", "o1" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *label = cfg_model_label(c, names[i]);
        CHECK_STR(label, names[i]);
        CHECK(label != names[i]); /* the config's copy, which lives as long as it does */
    }
    CHECK_STR(cfg_model_label(c, "gpt-4"), "other");
    CHECK_STR(cfg_model_label(c, "gpt-4o-mini-2024"), "other");
    CHECK_STR(cfg_model_label(c, ""), "other");
    cfg_unref(c);
    cfg_errors_free(&e);
}

int main(void)
{
    test_money_and_teams();
    test_price_prefixes_and_passthrough();
    test_model_labels();
    log_set_level(LOG_ERROR);
    test_valid();
    test_defaults_without_sections();
    test_secrets();
    test_errors();
    test_no_backend_and_long_line();
    test_values();
    return check_done();
}
