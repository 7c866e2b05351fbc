/* Counters and histograms keyed by their label text, in Prometheus text
 * exposition format 0.0.4. */
#include "sluice/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/keystore.h"
#include "sluice/limit.h"
#include "sluice/limit_redis.h"
#include "sluice/outcome.h"
#include "sluice/pool.h"
#include "sluice/telemetry.h"
#include "sluice/usage.h"
#include "sluice/util.h"
#include "sluice/waitq.h"
#include "sluice/generation.h"

static const double duration_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1, 2.5, 5, 10, 30, 60, 120, 300 };
#define NBUCKETS (sizeof(duration_buckets) / sizeof(duration_buckets[0]))

/* One allocation each (a busy node has one per key, model and status): the
 * struct, then a histogram's buckets, then the label text. */
struct series {
    char *labels; /* `a="x",b="y"` */
    size_t len;
    uint64_t hash;
    uint64_t value;
    uint64_t *buckets; /* histograms only: cumulative at render time */
    double sum;
    struct series *next; /* in creation order, newest first: for rendering */
};

struct family {
    const char *name, *help;
    bool histogram;
    bool usd; /* values are micro-dollars, shown as USD */
    struct series *head;
    struct series **table; /* open addressing by label text */
    size_t cap, count;
};

enum {
    F_REQUESTS, F_RATE_LIMITED, F_TOKENS, F_SPEND, F_ATTEMPTS, F_RETRIES, F_DURATION, F_TTFB,
    F_TTFT, F_QUEUE_WAIT, F_ADMIN_CHANGES, F_USER_REQUESTS, F_USER_TOKENS, F_USER_SPEND,
    F__COUNT,
    F_BUDGET_REMAINING = F__COUNT, /* gauges, rendered for the config's keys that have them */
    F_KEY_INFLIGHT,
    F__ALL
};

static struct family families[F__ALL] = {
    [F_REQUESTS] = { .name = "sluice_requests_total", .help = "API requests answered, by key, model asked for, model that answered, backend and status." },
    [F_RATE_LIMITED] = { .name = "sluice_rate_limited_total", .help = "Requests refused by a key's rate limit, by dimension." },
    [F_TOKENS] = { .name = "sluice_tokens_total", .help = "Tokens counted against keys (input = prompt, output = completion)." },
    [F_SPEND] = { .name = "sluice_spend_usd_total", .help = "What requests cost at their model's prices, in USD.", .usd = true },
    [F_ATTEMPTS] = { .name = "sluice_upstream_attempts_total", .help = "Upstream attempts by backend and outcome." },
    [F_RETRIES] = { .name = "sluice_retries_total", .help = "Requests retried on another backend, by the backend that failed." },
    [F_DURATION] = { .name = "sluice_request_duration_seconds", .help = "Time from the request's first byte to its end.", .histogram = true },
    [F_QUEUE_WAIT] = { .name = "sluice_queue_wait_seconds", .help = "Time requests waited for room (queue_timeout), admitted or not.", .histogram = true },
    [F_TTFB] = { .name = "sluice_upstream_ttfb_seconds", .help = "Time from sending to an upstream to its first response byte.", .histogram = true },
    [F_TTFT] = { .name = "sluice_upstream_ttft_seconds", .help = "Time from sending to an upstream to its stream's first event with output (time to first token).", .histogram = true },
    [F_USER_REQUESTS] = { .name = "sluice_user_requests_total", .help = "API requests answered, by key, end user (the first max_user_labels, then other) and status." },
    [F_USER_TOKENS] = { .name = "sluice_user_tokens_total", .help = "Tokens counted against end users, by key, user and direction." },
    [F_USER_SPEND] = { .name = "sluice_user_spend_usd_total", .help = "What end users' requests cost, by key and user, in USD.", .usd = true },
    [F_ADMIN_CHANGES] = { .name = "sluice_admin_changes_total", .help = "Changes made to runtime keys through the admin API, by action." },
    [F_KEY_INFLIGHT] = { .name = "sluice_inflight", .help = "Requests of a key with max_inflight open on this node (the limit counts every node's)." },
    [F_BUDGET_REMAINING] = { .name = "sluice_budget_remaining_usd", .help = "What is left of a key's or team's budget in the current period, in USD (read from the limiter every few seconds).", .usd = true },
};

/* Everything below is under the lock, the label text being built included:
 * one buffer serves every update. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_buf text;
static atomic_long inflight;

/* Names from clients that become labels, up to a cap: model names the
 * config does not name, end users (a set under the lock; the strings live
 * until mx_shutdown). */
struct seen {
    struct sl_names index; /* name -> position in names */
    char **names;          /* copies, in the order seen (sl_grow) */
    int n;
};
static struct seen seen_models, seen_users;

/* The name's label: itself if seen, or while fewer than max are; else "other". */
static const char *seen_label(struct seen *set, const char *name, size_t n, int64_t max)
{
    const char *out = "other";
    pthread_mutex_lock(&lock);
    int i = sl_names_find(&set->index, name, n);
    if (i >= 0) {
        out = set->names[i];
    } else if (set->n < max) {
        char *copy = sl_strdup(name);
        set->names = sl_grow(set->names, sizeof(*set->names), set->n);
        set->names[set->n] = copy;
        sl_names_add(&set->index, copy, n, set->n++, NULL);
        out = copy;
    }
    pthread_mutex_unlock(&lock);
    return out; /* stable: kept until mx_shutdown */
}

static void seen_free(struct seen *set)
{
    for (int i = 0; i < set->n; i++)
        free(set->names[i]);
    free(set->names);
    sl_names_free(&set->index);
    memset(set, 0, sizeof(*set));
}

static bool label_safe(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("-._:/@+", c)))
            return false;
    }
    return true;
}

const char *mx_model_label(const struct config *c, const char *model)
{
    if (!model)
        return "-";
    const char *named = cfg_model_label(c, model);
    size_t n = strlen(model);
    if (strcmp(named, "other") != 0 || c->server.max_model_labels == 0 || !label_safe(model, n))
        return named;
    return seen_label(&seen_models, model, n, c->server.max_model_labels);
}

const char *mx_user_label(const struct config *c, const char *user)
{
    if (!user || !user[0] || c->server.max_user_labels == 0)
        return NULL;
    return seen_label(&seen_users, user, strlen(user), c->server.max_user_labels);
}

static void table_put(struct family *f, struct series *s)
{
    size_t i = (size_t)s->hash & (f->cap - 1);
    while (f->table[i])
        i = (i + 1) & (f->cap - 1);
    f->table[i] = s;
}

/* The series for the label text in `text`, or NULL. */
static struct series *series_find(struct family *f, uint64_t h)
{
    const char *t = text.data ? text.data : "";
    if (f->cap) {
        for (size_t i = (size_t)h & (f->cap - 1); f->table[i]; i = (i + 1) & (f->cap - 1)) {
            struct series *s = f->table[i];
            if (s->hash == h && s->len == text.len && memcmp(s->labels, t, text.len) == 0)
                return s;
        }
    }
    return NULL;
}

/* The series for the label text in `text`, made on first use. */
static struct series *series_for(struct family *f)
{
    const char *t = text.data ? text.data : "";
    uint64_t h = sl_hash(t, text.len);
    struct series *found = series_find(f, h);
    if (found)
        return found;
    if (2 * (f->count + 1) > f->cap) { /* at most half full */
        free(f->table);
        f->cap = f->cap ? 2 * f->cap : 16;
        f->table = sl_calloc(f->cap, sizeof(*f->table));
        for (struct series *s = f->head; s; s = s->next)
            table_put(f, s);
    }
    size_t nbuckets = f->histogram ? NBUCKETS : 0;
    struct series *s = sl_calloc(1, sizeof(*s) + nbuckets * sizeof(uint64_t) + text.len + 1);
    s->buckets = nbuckets ? (uint64_t *)(s + 1) : NULL;
    s->labels = (char *)(s + 1) + nbuckets * sizeof(uint64_t);
    memcpy(s->labels, t, text.len);
    s->len = text.len;
    s->hash = h;
    s->next = f->head;
    f->head = s;
    f->count++;
    table_put(f, s);
    return s;
}

static void observe(struct series *s, double v)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        if (v <= duration_buckets[i]) {
            s->buckets[i]++;
            break;
        }
    s->value++;
    s->sum += v;
}

/* Label values come from config names (letters, digits, - _ . only) or
 * fixed words, so they need no escaping beyond a guard against quotes. */
static void label(const char *name, const char *value)
{
    size_t nlen = strlen(name), vlen = strlen(value), plain = strcspn(value, "\"\\\n");
    sl_buf_reserve(&text, nlen + vlen + 4);
    char *p = text.data + text.len;
    if (text.len)
        *p++ = ',';
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = '=';
    *p++ = '"';
    memcpy(p, value, plain); /* a '"', '\\' or newline is left out */
    p += plain;
    for (size_t i = plain; i < vlen; i++)
        if (value[i] != '"' && value[i] != '\\' && value[i] != '\n')
            *p++ = value[i];
    *p++ = '"';
    text.len = (size_t)(p - text.data);
}

void mx_request_done(const struct mx_request *m)
{
    char code[24];
    code[sl_fmt_int(m->code, code)] = '\0';
    pthread_mutex_lock(&lock);
    text.len = 0;
    label("key", m->key);
    label("model", m->model);
    size_t base = text.len;
    label("served_model", m->served_model);
    label("backend", m->backend);
    label("code", code);
    series_for(&families[F_REQUESTS])->value++;
    if (m->prompt_tokens > 0) {
        text.len = base;
        label("direction", "input");
        series_for(&families[F_TOKENS])->value += (uint64_t)m->prompt_tokens;
    }
    if (m->completion_tokens > 0) {
        text.len = base;
        label("direction", "output");
        series_for(&families[F_TOKENS])->value += (uint64_t)m->completion_tokens;
    }
    if (m->cost > 0) {
        text.len = 0;
        label("key", m->key);
        label("team", m->team);
        label("model", m->model);
        series_for(&families[F_SPEND])->value += (uint64_t)m->cost;
    }
    if (m->user) {
        text.len = 0;
        label("key", m->key);
        label("user", m->user);
        base = text.len;
        label("code", code);
        series_for(&families[F_USER_REQUESTS])->value++;
        const int64_t n[2] = { m->prompt_tokens, m->completion_tokens };
        for (int i = 0; i < 2; i++)
            if (n[i] > 0) {
                text.len = base;
                label("direction", i ? "output" : "input");
                series_for(&families[F_USER_TOKENS])->value += (uint64_t)n[i];
            }
        if (m->cost > 0) {
            text.len = base;
            series_for(&families[F_USER_SPEND])->value += (uint64_t)m->cost;
        }
    }
    text.len = 0;
    observe(series_for(&families[F_DURATION]), m->duration_s);
    pthread_mutex_unlock(&lock);
}

void mx_budget_remaining(const char *scope, const char *name, int64_t micro)
{
    pthread_mutex_lock(&lock);
    text.len = 0;
    label("scope", scope);
    label("name", name);
    series_for(&families[F_BUDGET_REMAINING])->value = (uint64_t)SL_MAX(micro, 0);
    pthread_mutex_unlock(&lock);
}

static void count2(int family, const char *n1, const char *v1, const char *n2, const char *v2)
{
    pthread_mutex_lock(&lock);
    text.len = 0;
    label(n1, v1);
    if (n2)
        label(n2, v2);
    series_for(&families[family])->value++;
    pthread_mutex_unlock(&lock);
}

void mx_rate_limited(const char *key, const char *dimension)
{
    count2(F_RATE_LIMITED, "key", key, "dimension", dimension);
}

void mx_attempt(const char *backend, const char *outcome, double ttfb_s)
{
    count2(F_ATTEMPTS, "backend", backend, "outcome", outcome);
    if (ttfb_s > 0) {
        pthread_mutex_lock(&lock);
        text.len = 0;
        label("backend", backend);
        observe(series_for(&families[F_TTFB]), ttfb_s);
        pthread_mutex_unlock(&lock);
    }
}

void mx_ttft(const char *backend, double seconds)
{
    pthread_mutex_lock(&lock);
    text.len = 0;
    label("backend", backend);
    observe(series_for(&families[F_TTFT]), seconds);
    pthread_mutex_unlock(&lock);
}

void mx_admin_change(const char *action)
{
    count2(F_ADMIN_CHANGES, "action", action, NULL, NULL);
}

void mx_retry(const char *backend)
{
    count2(F_RETRIES, "backend", backend, NULL, NULL);
}

void mx_queue_wait(double seconds)
{
    pthread_mutex_lock(&lock);
    text.len = 0;
    observe(series_for(&families[F_QUEUE_WAIT]), seconds);
    pthread_mutex_unlock(&lock);
}

void mx_key_inflight(const char *key, int delta)
{
    pthread_mutex_lock(&lock);
    text.len = 0;
    label("key", key);
    series_for(&families[F_KEY_INFLIGHT])->value += (uint64_t)(int64_t)delta;
    pthread_mutex_unlock(&lock);
}

static atomic_ullong reloads_ok, reloads_failed;
static atomic_llong last_reload_ok_s;

void mx_config_loaded(void)
{
    atomic_store(&last_reload_ok_s, (long long)(sl_wall_us() / 1000000));
}

void mx_reload(bool ok)
{
    if (!ok) {
        atomic_fetch_add(&reloads_failed, 1);
        return;
    }
    atomic_fetch_add(&reloads_ok, 1);
    mx_config_loaded();
}

void mx_inflight(int delta)
{
    atomic_fetch_add(&inflight, delta);
}

static void render_value(struct sl_buf *out, const struct family *f, const struct series *s)
{
    const char *open = s->labels[0] ? "{" : "", *close = s->labels[0] ? "}" : "";
    char usd[32];
    if (f->usd)
        sl_fmt_money((int64_t)s->value, usd);
    else
        usd[sl_fmt_int((int64_t)s->value, usd)] = '\0';
    sl_buf_printf(out, "%s%s%s%s %s\n", f->name, open, s->labels, close, usd);
}

static void render_family(struct sl_buf *out, struct family *f)
{
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                  f->histogram ? "histogram" : "counter");
    for (struct series *s = f->head; s; s = s->next) {
        const char *sep = s->labels[0] ? "," : "";
        const char *open = s->labels[0] ? "{" : "", *close = s->labels[0] ? "}" : "";
        if (!f->histogram) {
            render_value(out, f, s);
            continue;
        }
        uint64_t cum = 0;
        for (size_t i = 0; i < NBUCKETS; i++) {
            cum += s->buckets[i];
            sl_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", f->name, s->labels, sep,
                          duration_buckets[i], (unsigned long long)cum);
        }
        sl_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels, sep,
                      (unsigned long long)s->value);
        sl_buf_printf(out, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", f->name, open, s->labels,
                      close, s->sum, f->name, open, s->labels, close, (unsigned long long)s->value);
    }
}

/* The budgets of the config in force, and their remaining gauges (a series
 * seen but no longer configured is left out). Under the lock. */
static void render_budgets(struct sl_buf *out, const struct config *c)
{
    struct family *f = &families[F_BUDGET_REMAINING];
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", f->name, f->help, f->name);
    for (int i = 0; i < c->nkeys + c->nteams; i++) {
        bool key = i < c->nkeys;
        if (!(key ? c->keys[i].budget : c->teams[i - c->nkeys].budget))
            continue;
        text.len = 0;
        label("scope", key ? "key" : "team");
        label("name", key ? c->keys[i].name : c->teams[i - c->nkeys].name);
        const struct series *s = series_find(f, sl_hash(text.data, text.len));
        if (s)
            render_value(out, f, s);
    }
    sl_buf_appends(out, "# HELP sluice_budget_usd The budget of a key or team per period, in USD "
                        "(as configured; with sluice_budget_remaining_usd, the share left).\n"
                        "# TYPE sluice_budget_usd gauge\n");
    for (int i = 0; i < c->nkeys + c->nteams; i++) {
        bool key = i < c->nkeys;
        int64_t budget = key ? c->keys[i].budget : c->teams[i - c->nkeys].budget;
        if (!budget)
            continue;
        char usd[32];
        sl_fmt_money(budget, usd);
        sl_buf_printf(out, "sluice_budget_usd{scope=\"%s\",name=\"%s\"} %s\n", key ? "key" : "team",
                      key ? c->keys[i].name : c->teams[i - c->nkeys].name, usd);
    }
}

/* sluice_inflight{key} for every key with max_inflight, 0 when none is open. Under the lock. */
static void render_key_inflight(struct sl_buf *out, const struct config *c)
{
    struct family *f = &families[F_KEY_INFLIGHT];
    sl_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", f->name, f->help, f->name);
    for (int i = 0; i < c->nkeys; i++) {
        if (!c->keys[i].max_inflight)
            continue;
        text.len = 0;
        label("key", c->keys[i].name);
        const struct series *s = series_find(f, sl_hash(text.data, text.len));
        sl_buf_printf(out, "%s{%.*s} %lld\n", f->name, (int)text.len, text.data,
                      s ? (long long)(int64_t)s->value : 0LL);
    }
}

/* The gauges and counters kept outside the registry: breakers, Redis,
 * requests in flight and waiting, usage log and trace exports, reloads. */
#define MODEL_BREAKERS_SHOWN 4096

/* The (backend, model) breakers that have opened since the config loaded. */
static void model_breakers(struct sl_buf *out, struct generation *gen)
{
    struct pool_model_breaker *mb = sl_malloc(MODEL_BREAKERS_SHOWN * sizeof(*mb));
    int n = SL_MIN(pool_model_breakers(gen->pool, mb, MODEL_BREAKERS_SHOWN), MODEL_BREAKERS_SHOWN);
    sl_buf_appends(out, "# HELP sluice_backend_model_state Circuit breaker of a backend for one model "
                        "(shown once it has opened): 0 closed, 1 open, 2 half-open.\n"
                        "# TYPE sluice_backend_model_state gauge\n");
    pthread_mutex_lock(&lock); /* label() builds in the shared buffer */
    for (int k = 0; k < n; k++) {
        text.len = 0;
        label("backend", gen->cfg->backends[mb[k].backend].name);
        label("model", mb[k].model);
        sl_buf_printf(out, "sluice_backend_model_state{%.*s} %d\n", (int)text.len, text.data,
                      (int)mb[k].state);
    }
    pthread_mutex_unlock(&lock);
    free(mb);
}

/* sluice_redis_calls_total{result} and sluice_redis_call_duration_seconds. */
static void redis_calls(struct sl_buf *out)
{
    sl_buf_appends(out, "# HELP sluice_redis_calls_total Limiter script calls to Redis by how they "
                        "ended (moved, ask, tryagain: a Cluster's redirections on the way).\n"
                        "# TYPE sluice_redis_calls_total counter\n");
    for (int i = 0; i < LR_N; i++)
        sl_buf_printf(out, "sluice_redis_calls_total{result=\"%s\"} %lu\n",
                      lim_redis_result_names[i], (unsigned long)atomic_load(&lim_redis_calls[i]));
    sl_buf_appends(out, "# HELP sluice_redis_call_duration_seconds Time from sending a limiter "
                        "call to Redis to its answer.\n"
                        "# TYPE sluice_redis_call_duration_seconds histogram\n");
    unsigned long cum = 0;
    for (int b = 0; b <= LR_BUCKETS; b++) {
        cum += (unsigned long)atomic_load(&lim_redis_call_buckets[b]);
        if (b < LR_BUCKETS)
            sl_buf_printf(out, "sluice_redis_call_duration_seconds_bucket{le=\"%g\"} %lu\n",
                          lim_redis_bounds[b], cum);
        else
            sl_buf_printf(out, "sluice_redis_call_duration_seconds_bucket{le=\"+Inf\"} %lu\n", cum);
    }
    sl_buf_printf(out, "sluice_redis_call_duration_seconds_sum %.6f\n"
                       "sluice_redis_call_duration_seconds_count %lu\n",
                  (double)atomic_load(&lim_redis_call_us) / 1e6, cum);
}

static void render_node(struct sl_buf *out, struct generation *gen, long runtime_keys)
{
    unsigned long long reads[4];
    keystore_reads(reads);
    sl_buf_printf(out,
                  "# HELP sluice_config_reloads_total SIGHUP reloads, by result.\n"
                  "# TYPE sluice_config_reloads_total counter\n"
                  "sluice_config_reloads_total{result=\"ok\"} %llu\n"
                  "sluice_config_reloads_total{result=\"failed\"} %llu\n"
                  "# HELP sluice_config_last_reload_success_timestamp_seconds When the "
                  "configuration in force was loaded (start or reload), Unix seconds.\n"
                  "# TYPE sluice_config_last_reload_success_timestamp_seconds gauge\n"
                  "sluice_config_last_reload_success_timestamp_seconds %lld\n"
                  "# HELP sluice_keys API keys, by where they come from (the configuration file, "
                  "or made at run time through the admin API).\n"
                  "# TYPE sluice_keys gauge\n"
                  "sluice_keys{source=\"config\"} %d\nsluice_keys{source=\"runtime\"} %ld\n"
                  "# HELP sluice_key_store_reads_total Reads of the runtime key store for secrets "
                  "this node's cache did not know, by result (busy: not read, this second's reads "
                  "were used up).\n"
                  "# TYPE sluice_key_store_reads_total counter\n"
                  "sluice_key_store_reads_total{result=\"found\"} %llu\n"
                  "sluice_key_store_reads_total{result=\"unknown\"} %llu\n"
                  "sluice_key_store_reads_total{result=\"busy\"} %llu\n"
                  "sluice_key_store_reads_total{result=\"down\"} %llu\n",
                  (unsigned long long)atomic_load(&reloads_ok),
                  (unsigned long long)atomic_load(&reloads_failed),
                  (long long)atomic_load(&last_reload_ok_s), gen->cfg->nkeys,
                  runtime_keys, reads[KS_FOUND], reads[KS_UNKNOWN],
                  reads[KS_BUSY], reads[KS_DOWN]);
    sl_buf_appends(out, "# HELP sluice_backend_state Circuit breaker state: 0 closed, 1 open, 2 half-open.\n"
                        "# TYPE sluice_backend_state gauge\n");
    for (int i = 0; i < gen->cfg->nbackends; i++)
        sl_buf_printf(out, "sluice_backend_state{backend=\"%s\"} %d\n", gen->cfg->backends[i].name,
                      (int)pool_state(gen->pool, i));
    model_breakers(out, gen);
    redis_calls(out);
    sl_buf_printf(out,
                  "# HELP sluice_redis_errors_total Redis calls that failed or timed out.\n"
                  "# TYPE sluice_redis_errors_total counter\nsluice_redis_errors_total %lu\n"
                  "# HELP sluice_limiter_degraded_total Admissions decided without Redis while "
                  "it was down ([redis] on_error).\n"
                  "# TYPE sluice_limiter_degraded_total counter\nsluice_limiter_degraded_total %lu\n"
                  "# HELP sluice_inflight_requests API requests being handled.\n"
                  "# TYPE sluice_inflight_requests gauge\nsluice_inflight_requests %ld\n"
                  "# HELP sluice_queued_requests Requests waiting for room (queue_timeout).\n"
                  "# TYPE sluice_queued_requests gauge\nsluice_queued_requests %ld\n"
                  "# HELP sluice_usage_records_dropped_total Usage log records dropped because "
                  "16 MB were already waiting for the disk.\n"
                  "# TYPE sluice_usage_records_dropped_total counter\n"
                  "sluice_usage_records_dropped_total %llu\n"
                  "# HELP sluice_trace_spans_exported_total Spans the OTLP collector accepted.\n"
                  "# TYPE sluice_trace_spans_exported_total counter\n"
                  "sluice_trace_spans_exported_total %llu\n"
                  "# HELP sluice_trace_spans_dropped_total Spans dropped: the export queue was "
                  "full (max_queue) or the collector failed.\n"
                  "# TYPE sluice_trace_spans_dropped_total counter\n"
                  "sluice_trace_spans_dropped_total %llu\n",
                  (unsigned long)atomic_load(&lim_redis_errors),
                  (unsigned long)atomic_load(&lim_degraded), (long)atomic_load(&inflight),
                  waitq_count(), (unsigned long long)usage_log_dropped(),
                  (unsigned long long)tel_exported(), (unsigned long long)tel_dropped());
}

void mx_render(struct sl_buf *out, struct generation *gen, long runtime_keys)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < F__COUNT; i++)
        render_family(out, &families[i]);
    render_budgets(out, gen->cfg);
    render_key_inflight(out, gen->cfg);
    pthread_mutex_unlock(&lock);
    render_node(out, gen, runtime_keys);
}

/* The value of label `name` in a series' label text, or an empty string. */
static struct sl_str label_value(const struct series *s, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = s->labels; p && *p;) {
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '"')
            break;
        const char *end = strchr(eq + 2, '"');
        if (!end)
            break;
        if ((size_t)(eq - p) == n && memcmp(p, name, n) == 0)
            return (struct sl_str){ eq + 2, (size_t)(end - eq - 2) };
        p = end[1] == ',' ? end + 2 : end + 1;
    }
    return (struct sl_str){ "", 0 };
}

/* histogram_quantile over one series' buckets: linear within the bucket. */
static double quantile(const struct series *s, double q)
{
    if (!s || s->value == 0)
        return 0;
    double want = q * (double)s->value, cum = 0, lower = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        double next = cum + (double)s->buckets[i];
        if (next >= want && s->buckets[i])
            return lower + (duration_buckets[i] - lower) * (want - cum) / (double)s->buckets[i];
        cum = next;
        lower = duration_buckets[i];
    }
    return duration_buckets[NBUCKETS - 1]; /* in +Inf: the last finite bound, as Prometheus */
}

void mx_backend_stats(const char *backend, struct mx_backend_stats *out)
{
    *out = (struct mx_backend_stats){ 0 };
    pthread_mutex_lock(&lock);
    for (const struct series *s = families[F_ATTEMPTS].head; s; s = s->next) {
        if (!sl_str_eq(label_value(s, "backend"), backend))
            continue;
        out->attempts += s->value;
        /* what the breaker counts: a client error passed through or a client
         * that left is an attempt, not a failure */
        struct sl_str label = label_value(s, "outcome");
        enum up_outcome o;
        if (up_outcome_of_label(label.p, label.len, &o) &&
            up_outcome_info(o)->verdict == VERDICT_FAILURE)
            out->failures += s->value;
    }
    text.len = 0;
    label("backend", backend);
    const struct series *t = series_find(&families[F_TTFB], sl_hash(text.data, text.len));
    out->ttfb_p50 = quantile(t, 0.5);
    out->ttfb_p99 = quantile(t, 0.99);
    pthread_mutex_unlock(&lock);
}

int mx_busiest_keys(const struct config *c, int max, int *keys, uint64_t *requests)
{
    uint64_t *count = sl_calloc((size_t)c->nkeys + 1, sizeof(*count));
    pthread_mutex_lock(&lock);
    for (const struct series *s = families[F_REQUESTS].head; s; s = s->next) {
        struct sl_str k = label_value(s, "key");
        int i = sl_names_find(&c->key_names, k.p, k.len);
        if (i >= 0)
            count[i] += s->value;
    }
    pthread_mutex_unlock(&lock);
    int n = 0;
    for (int i = 0; i < c->nkeys; i++) { /* insertion into the top `max`, busiest first */
        if (!count[i] || (n == max && count[i] <= requests[n - 1]))
            continue;
        int j = n < max ? n++ : n - 1;
        while (j > 0 && requests[j - 1] < count[i]) {
            keys[j] = keys[j - 1];
            requests[j] = requests[j - 1];
            j--;
        }
        keys[j] = i;
        requests[j] = count[i];
    }
    free(count);
    return n;
}

long mx_inflight_now(void)
{
    return atomic_load(&inflight);
}

void mx_shutdown(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < F__ALL; i++) {
        struct series *s = families[i].head, *next;
        for (; s; s = next) {
            next = s->next;
            free(s);
        }
        families[i].head = NULL;
        free(families[i].table);
        families[i].table = NULL;
        families[i].cap = families[i].count = 0;
    }
    seen_free(&seen_models);
    seen_free(&seen_users);
    sl_buf_free(&text);
    pthread_mutex_unlock(&lock);
}
