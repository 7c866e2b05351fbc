/* INI file -> struct config. Options are declared once in `options[]`; the
 * parser, the defaults, validation, `sluice -t` and the reference printed by
 * `sluice -D` are all driven by that table. inih splits names and values; our
 * own line reader feeds it so every message can name file:line exactly. */
#include "sluice/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include "sluice/headers.h"
#include "sluice/redis_url.h"
#include "sluice/log.h"
#include "sluice/tls.h"
#include "sluice/util.h"

enum scope {
    SCOPE_SERVER,
    SCOPE_REDIS,
    SCOPE_BACKEND,
    SCOPE_KEY,
    SCOPE_TEAM,
    SCOPE_MODEL,
    SCOPE_TELEMETRY,
    SCOPE__COUNT
};
static const char *const scope_names[] = { "server",    "redis",      "backend NAME",
                                           "key NAME",  "team NAME",  "model NAME",
                                           "telemetry" };

enum opt_type {
    T_INT,      /* int64_t within [min, max] */
    T_DURATION, /* int64_t milliseconds */
    T_SIZE,     /* int64_t bytes */
    T_BOOL,
    T_STRING,  /* char* */
    T_URL,     /* char*, http:// or https://, trailing slash removed */
    T_LISTEN,  /* repeatable host:port */
    T_ENUM,    /* int, index into choices */
    T_MODELS,  /* struct cfg_models */
    T_STATUS,  /* struct cfg_statuses */
    T_HEADERS, /* struct cfg_models: header names, a trailing * for a prefix */
    T_DIGEST,  /* uint8_t[32]: sha256:<hex> or a plain secret */
    T_MONEY,   /* int64_t micro-dollars, from a decimal number of USD */
    T_PEM,     /* char*: the path of a PEM file; /path, file:/path or cred:NAME */
    T_RATIO,   /* int64_t parts per million, from a decimal number 0 to 1 */
};
static const char *const type_names[] = { "integer", "duration", "size", "boolean", "string", "URL",
                                           "host:port", "one of", "model list", "status list",
                                           "header list", "secret", "USD", "PEM file", "ratio" };

#define F_REQUIRED 1u /* must be set in its section */
#define F_REPEAT 2u   /* may appear several times */
#define F_SECRET 4u   /* holds a secret (a sha256: digest of one is not one) */

struct option {
    enum scope scope;
    const char *name;
    enum opt_type type;
    size_t offset;
    const char *def; /* default, in config syntax; NULL = unset */
    int64_t min, max;
    const char *const *choices;
    unsigned flags;
    const char *doc;
};

static const char *const backend_types[] = { "openai", "azure", NULL };
static const char *const on_error_modes[] = { "local", "allow", "deny", NULL };
static const char *const periods[] = { "none", "day", "month", "total", "week", NULL };
static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const key_modes[] = { "enforce", "shadow", NULL };
static const char *const access_formats[] = { "text", "json", NULL };
static const char *const balances[] = { "weighted", "latency", "least_inflight", NULL };

#define SRV(f) offsetof(struct cfg_server, f)
#define RDS(f) offsetof(struct cfg_redis, f)
#define TEL(f) offsetof(struct cfg_telemetry, f)
#define BCK(f) offsetof(struct cfg_backend, f)
#define KEY(f) offsetof(struct cfg_key, f)
#define MDL(f) offsetof(struct cfg_model, f)
#define TEAM(f) offsetof(struct cfg_team, f)
#define BIG INT64_MAX
#define DAY_MS (24LL * 3600 * 1000)

static const struct option options[] = {
    { SCOPE_SERVER, "listen", T_LISTEN, SRV(listen), "127.0.0.1:8080", 0, 0, NULL, F_REPEAT,
      "address to accept clients on; repeatable; `host:port tls` serves TLS (tls_cert, tls_key)" },
    { SCOPE_SERVER, "tls_cert", T_PEM, SRV(tls_cert), NULL, 0, 0, NULL, 0,
      "for `listen = host:port tls`: the certificate chain, server first (PEM); reread on SIGHUP" },
    { SCOPE_SERVER, "tls_key", T_PEM, SRV(tls_key), NULL, 0, 0, NULL, F_SECRET,
      "the private key of tls_cert (PEM); reread on SIGHUP" },
    { SCOPE_SERVER, "tls_client_ca", T_PEM, SRV(tls_client_ca), NULL, 0, 0, NULL, 0,
      "CA certificates (PEM): clients on tls listeners must present a certificate they signed "
      "(mTLS)" },
    { SCOPE_SERVER, "admin_listen", T_LISTEN, SRV(admin_listen), NULL, 0, 0, NULL, F_REPEAT,
      "repeatable; when set, /metrics, /readyz and /admin/* are served only here (404 on listen)" },
    { SCOPE_SERVER, "metrics_key", T_DIGEST, SRV(metrics_digest), NULL, 0, 0, NULL, F_SECRET,
      "bearer key /metrics requires; absent = none" },
    { SCOPE_SERVER, "workers", T_INT, SRV(workers), "1", 0, 256, NULL, 0,
      "event-loop threads; 0 = one per core" },
    { SCOPE_SERVER, "max_body_size", T_SIZE, SRV(max_body_size), "4m", 1, 1LL << 31, NULL, 0,
      "larger request bodies get 413" },
    { SCOPE_SERVER, "max_upload_size", T_SIZE, SRV(max_upload_size), "25m", 1, 1LL << 32, NULL, 0,
      "larger multipart/form-data bodies (audio, images, files) get 413" },
    { SCOPE_SERVER, "max_header_size", T_SIZE, SRV(max_header_size), "32k", 1024, 1 << 20, NULL,
      0, "larger request header sections get 413" },
    { SCOPE_SERVER, "request_timeout", T_DURATION, SRV(request_timeout_ms), "10m", 1, DAY_MS,
      NULL, 0, "whole-request limit towards the client" },
    { SCOPE_SERVER, "header_timeout", T_DURATION, SRV(header_timeout_ms), "10s", 1, DAY_MS, NULL,
      0, "total time a client has to send its request line and headers" },
    { SCOPE_SERVER, "body_timeout", T_DURATION, SRV(body_timeout_ms), "60s", 1, DAY_MS, NULL, 0,
      "total time a client has to send its request body" },
    { SCOPE_SERVER, "keepalive_timeout", T_DURATION, SRV(keepalive_timeout_ms), "75s", 1, DAY_MS,
      NULL, 0, "idle time before a kept-alive client connection is closed" },
    { SCOPE_SERVER, "send_timeout", T_DURATION, SRV(send_timeout_ms), "60s", 1, DAY_MS, NULL, 0,
      "a client that reads nothing of its response for this long is disconnected" },
    { SCOPE_SERVER, "shutdown_timeout", T_DURATION, SRV(shutdown_timeout_ms), "30s", 0, DAY_MS,
      NULL, 0, "how long SIGTERM waits for in-flight requests" },
    { SCOPE_SERVER, "admin_key", T_DIGEST, SRV(admin_digest), NULL, 0, 0, NULL, F_SECRET,
      "bearer key for /admin/*; absent = admin API off" },
    { SCOPE_SERVER, "max_attempts", T_INT, SRV(max_attempts), "3", 1, 10, NULL, 0,
      "upstream attempts per request (first + retries)" },
    { SCOPE_SERVER, "max_connections", T_INT, SRV(max_connections), "0", 0, 10000000, NULL, 0,
      "client connections held at once (shared out among workers); past it new ones wait in "
      "the kernel's backlog; 0 = half the file-descriptor limit" },
    { SCOPE_SERVER, "max_buffered", T_SIZE, SRV(max_buffered), "256m", 1 << 20, 1LL << 40, NULL,
      0, "request-body bytes held in memory by all connections together; past it a new body "
      "gets 503 with Retry-After (bodies over 64k may use 7/8 of it)" },
    { SCOPE_SERVER, "strict_permissions", T_BOOL, SRV(strict_permissions), "off", 0, 0, NULL, 0,
      "on: a config or secret file others may write, or read while it holds a plain secret, is "
      "an error instead of a warning" },
    { SCOPE_SERVER, "max_model_labels", T_INT, SRV(max_model_labels), "100", 0, 100000, NULL, 0,
      "distinct model names from clients that become metric labels (models = * backends); "
      "later ones are counted as other" },
    { SCOPE_SERVER, "require_prices", T_BOOL, SRV(require_prices), "off", 0, 0, NULL, 0,
      "on: every model a backend lists needs a [model] section with input and output prices" },
    { SCOPE_SERVER, "access_log", T_BOOL, SRV(access_log), "on", 0, 0, NULL, 0,
      "one line per request on stderr" },
    { SCOPE_SERVER, "access_log_format", T_ENUM, SRV(access_log_format), "text", 0, 0,
      access_formats, 0, "text (key=value after the time and level) or json (one object per line)" },
    { SCOPE_SERVER, "usage_log", T_STRING, SRV(usage_log), NULL, 0, 0, NULL, 0,
      "a file that gets one JSON record per finished request, appended by a thread of its own; "
      "reopened on SIGHUP and SIGUSR1 (logrotate)" },
    { SCOPE_SERVER, "pid_file", T_STRING, SRV(pid_file), NULL, 0, 0, NULL, 0,
      "a file that holds sluice's PID while it runs (written at start, removed at exit), for "
      "`kill -HUP $(cat FILE)` outside systemd; a change takes effect at the next restart" },
    { SCOPE_SERVER, "log_level", T_ENUM, SRV(log_level), "info", 0, 0, log_levels, 0,
      "least severe level logged" },
    { SCOPE_SERVER, "balance", T_ENUM, SRV(balance), "weighted", 0, 0, balances, 0,
      "how a backend is chosen within a priority group: weighted (smooth weighted round-robin), "
      "latency (peak-EWMA time to first byte, two random choices by weight) or least_inflight "
      "(fewest open requests per unit of weight); docs/pool.md" },
    { SCOPE_SERVER, "balance_decay", T_DURATION, SRV(balance_decay_ms), "10s", 100, DAY_MS, NULL,
      0, "balance = latency: the time over which a backend's latency estimate fades when no "
      "answer refreshes it, so a slow backend that recovered is tried again" },

    { SCOPE_REDIS, "url", T_STRING, RDS(url), "redis://127.0.0.1:6379/0", 0, 0, NULL, F_SECRET,
      "redis://[:password@]host:port/db; no [redis] section = limits kept in-process" },
    { SCOPE_REDIS, "timeout", T_DURATION, RDS(timeout_ms), "100ms", 1, 60000, NULL, 0,
      "longest wait for one Redis call" },
    { SCOPE_REDIS, "on_error", T_ENUM, RDS(on_error), "local", 0, 0, on_error_modes, 0,
      "what requests get while Redis is down" },

    { SCOPE_TELEMETRY, "otlp_endpoint", T_URL, TEL(otlp_endpoint), NULL, 0, 0, NULL, F_REQUIRED,
      "an OTLP/HTTP collector's base URL (http://127.0.0.1:4318); traces are posted to "
      "/v1/traces as JSON" },
    { SCOPE_TELEMETRY, "sample_ratio", T_RATIO, TEL(sample_ppm), "1", 0, 1000000, NULL, 0,
      "share of traces started here that are recorded (0 to 1); a client's traceparent decides "
      "for its own" },
    { SCOPE_TELEMETRY, "service_name", T_STRING, TEL(service_name), "sluice", 0, 0, NULL, 0,
      "the service.name resource attribute" },
    { SCOPE_TELEMETRY, "max_queue", T_INT, TEL(max_queue), "2048", 1, 1000000, NULL, 0,
      "spans each worker holds for export; past it new ones are dropped and counted "
      "(sluice_trace_spans_dropped_total)" },
    { SCOPE_TELEMETRY, "flush_interval", T_DURATION, TEL(flush_ms), "1s", 10, 60000, NULL, 0,
      "the longest a span waits before its batch is posted (512 spans go at once)" },

    { SCOPE_BACKEND, "url", T_URL, BCK(url), NULL, 0, 0, NULL, F_REQUIRED,
      "base URL; the request path after /v1 is appended" },
    { SCOPE_BACKEND, "type", T_ENUM, BCK(type), "openai", 0, 0, backend_types, 0,
      "openai (Authorization: Bearer) or azure (api-key header, deployment path)" },
    { SCOPE_BACKEND, "api_key", T_STRING, BCK(api_key), NULL, 0, 0, NULL, F_SECRET,
      "the backend's credential; use env:NAME or file:/path" },
    { SCOPE_BACKEND, "api_version", T_STRING, BCK(api_version), NULL, 0, 0, NULL, 0,
      "azure only: api-version query parameter" },
    { SCOPE_BACKEND, "deployment", T_STRING, BCK(deployment), NULL, 0, 0, NULL, 0,
      "azure only: deployment name; default = the request's model" },
    { SCOPE_BACKEND, "models", T_MODELS, BCK(models), "*", 0, 0, NULL, 0,
      "models this backend serves; * = any" },
    { SCOPE_BACKEND, "priority", T_INT, BCK(priority), "1", 0, 1000, NULL, 0,
      "lower number = tried first" },
    { SCOPE_BACKEND, "weight", T_INT, BCK(weight), "1", 1, 1000, NULL, 0,
      "share of traffic within its priority group" },
    { SCOPE_BACKEND, "connect_timeout", T_DURATION, BCK(connect_timeout_ms), "2s", 1, 600000,
      NULL, 0, "TCP+TLS connect limit" },
    { SCOPE_BACKEND, "timeout", T_DURATION, BCK(timeout_ms), "10m", 1, DAY_MS, NULL, 0,
      "first byte and whole response" },
    { SCOPE_BACKEND, "breaker_failures", T_INT, BCK(breaker_failures), "3", 1, 10000, NULL, 0,
      "failures within breaker_window that open the breaker" },
    { SCOPE_BACKEND, "breaker_window", T_DURATION, BCK(breaker_window_ms), "10s", 1, DAY_MS, NULL,
      0, "window in which failures are counted" },
    { SCOPE_BACKEND, "breaker_trip", T_DURATION, BCK(breaker_trip_ms), "30s", 1, DAY_MS, NULL, 0,
      "how long an open breaker stays open" },
    { SCOPE_BACKEND, "breaker_status", T_STATUS, BCK(breaker_status), "401, 403, 429, 500-599", 0,
      0, NULL, 0,
      "statuses that count as failures and go to the next backend (401/403: sluice's own 502)" },
    { SCOPE_BACKEND, "breaker_retry_after", T_BOOL, BCK(breaker_retry_after), "yes", 0, 0, NULL,
      0, "an upstream Retry-After sets the open time instead" },
    { SCOPE_BACKEND, "stream_idle_timeout", T_DURATION, BCK(stream_idle_timeout_ms), "60s", 1,
      DAY_MS, NULL, 0,
      "a stream that sends no byte for this long ends with an error event; counts for the breaker" },
    { SCOPE_BACKEND, "keepalive_timeout", T_DURATION, BCK(keepalive_timeout_ms), "4s", 1000,
      DAY_MS, NULL, 0,
      "an idle upstream connection is not reused after this (whole seconds); keep it below "
      "the upstream's own keep-alive timeout" },
    { SCOPE_BACKEND, "forward_headers", T_HEADERS, BCK(forward_headers), NULL, 0, 0, NULL, 0,
      "client headers forwarded beyond the allow-list of docs/http.md (x-foo, x-team-*); "
      "credentials, cookies, OpenAI-Organization/-Project and X-Forwarded-* never are" },
    { SCOPE_BACKEND, "organization", T_STRING, BCK(organization), NULL, 0, 0, NULL, 0,
      "OpenAI-Organization sent upstream (the client's is never forwarded)" },
    { SCOPE_BACKEND, "project", T_STRING, BCK(project), NULL, 0, 0, NULL, 0,
      "OpenAI-Project sent upstream (the client's is never forwarded)" },
    { SCOPE_BACKEND, "models_cache", T_DURATION, BCK(models_cache_ms), "5m", 1000, DAY_MS, NULL, 0,
      "with models = *: how long the upstream's own GET /models list is kept for GET /v1/models" },
    { SCOPE_BACKEND, "stateful", T_BOOL, BCK(stateful), "no", 0, 0, NULL, 0,
      "yes: files, batches, uploads, vector stores, stored responses and calls without a model "
      "go here (else to the first backend by priority); one backend at most" },
    { SCOPE_BACKEND, "ca_file", T_PEM, BCK(ca_file), NULL, 0, 0, NULL, 0,
      "https: CA certificates (PEM) to trust for this backend instead of the system's" },
    { SCOPE_BACKEND, "client_cert", T_PEM, BCK(client_cert), NULL, 0, 0, NULL, 0,
      "https: a client certificate (PEM) presented to the backend (upstream mTLS)" },
    { SCOPE_BACKEND, "client_key", T_PEM, BCK(client_key), NULL, 0, 0, NULL, F_SECRET,
      "the private key of client_cert (PEM)" },
    { SCOPE_BACKEND, "tls_verify", T_BOOL, BCK(tls_verify), "yes", 0, 0, NULL, 0,
      "no: the backend's certificate and name are not checked (logged as a warning at every "
      "load; for tests only)" },
    { SCOPE_BACKEND, "resend_unanswered", T_BOOL, BCK(resend_unanswered), "no", 0, 0, NULL, 0,
      "yes: a request sent but never answered (connection closed first) is sent again, each "
      "time a counted attempt; no: 502 (the upstream may have read it)" },
    { SCOPE_BACKEND, "rpm", T_INT, BCK(rpm), "0", 0, BIG, NULL, 0,
      "the deployment's own requests per minute: at it, the backend is skipped (shared by all "
      "nodes with [redis]); 0 = unknown" },
    { SCOPE_BACKEND, "tpm", T_INT, BCK(tpm), "0", 0, BIG, NULL, 0,
      "the deployment's own tokens per minute (prompt + completion; the output a request may "
      "generate is reserved); 0 = unknown" },
    { SCOPE_BACKEND, "max_inflight", T_INT, BCK(max_inflight), "0", 0, 1000000, NULL, 0,
      "requests this node has open at the backend at once (streams included); at it, the "
      "backend is skipped; 0 = no cap" },

    { SCOPE_MODEL, "upstream", T_STRING, MDL(upstream), NULL, 0, 0, NULL, 0,
      "the model name sent upstream (the body's model is rewritten); unset = NAME" },
    { SCOPE_MODEL, "fallbacks", T_MODELS, MDL(fallbacks), NULL, 0, 0, NULL, 0,
      "models tried in order when every backend of this one is exhausted (docs/pool.md)" },
    { SCOPE_MODEL, "context_fallbacks", T_MODELS, MDL(context_fallbacks), NULL, 0, 0, NULL, 0,
      "models tried in order when the upstream answers context_length_exceeded" },
    { SCOPE_MODEL, "input_price", T_MONEY, MDL(input_price), NULL, 0, BIG, NULL, 0,
      "USD per 1M prompt tokens" },
    { SCOPE_MODEL, "cached_input_price", T_MONEY, MDL(cached_input_price), NULL, 0, BIG, NULL, 0,
      "USD per 1M prompt tokens the upstream reports as cached; unset = input_price" },
    { SCOPE_MODEL, "output_price", T_MONEY, MDL(output_price), NULL, 0, BIG, NULL, 0,
      "USD per 1M completion tokens, reasoning tokens included" },

    { SCOPE_KEY, "key", T_DIGEST, KEY(digest), NULL, 0, 0, NULL, F_REQUIRED | F_SECRET,
      "sha256:<64 hex> of the client key (a plain key is accepted with a warning)" },
    { SCOPE_KEY, "rpm", T_INT, KEY(rpm), "0", 0, BIG, NULL, 0,
      "requests per minute; 0 = unlimited" },
    { SCOPE_KEY, "input_tpm", T_INT, KEY(input_tpm), "0", 0, BIG, NULL, 0,
      "prompt tokens per minute; 0 = unlimited" },
    { SCOPE_KEY, "output_tpm", T_INT, KEY(output_tpm), "0", 0, BIG, NULL, 0,
      "completion tokens per minute; 0 = unlimited" },
    { SCOPE_KEY, "models", T_MODELS, KEY(models), "*", 0, 0, NULL, 0,
      "models this key may call; * = any" },
    { SCOPE_KEY, "quota", T_INT, KEY(quota), "0", 0, BIG, NULL, 0,
      "total tokens per quota_period; 0 = none" },
    { SCOPE_KEY, "quota_period", T_ENUM, KEY(quota_period), "month", 0, 0, periods, 0,
      "day | week | month | total (UTC calendar; week from Monday)" },
    { SCOPE_KEY, "max_prompt_tokens", T_INT, KEY(max_prompt_tokens), "0", 0, BIG, NULL, 0,
      "per-request prompt cap (413 above it); 0 = none" },
    { SCOPE_KEY, "mode", T_ENUM, KEY(mode), "enforce", 0, 0, key_modes, 0,
      "shadow: limits, quota, budgets and prompt cap are computed and reported but never refuse" },
    { SCOPE_KEY, "team", T_STRING, KEY(team_name), NULL, 0, 0, NULL, 0,
      "a [team NAME] whose limits this key also counts against" },
    { SCOPE_KEY, "budget", T_MONEY, KEY(budget), "0", 0, BIG, NULL, 0,
      "USD per budget_period (docs/budgets.md); 0 = none" },
    { SCOPE_KEY, "budget_period", T_ENUM, KEY(budget_period), "month", 0, 0, periods, 0,
      "day | week | month | total (UTC calendar; week from Monday)" },
    { SCOPE_KEY, "reserve_output_tokens", T_INT, KEY(reserve_output_tokens), "1000", 0, 10000000,
      NULL, 0, "output tokens a budget reserves when the request sets no max_tokens" },
    { SCOPE_KEY, "max_inflight", T_INT, KEY(max_inflight), "0", 0, 1000000, NULL, 0,
      "requests of this key open at once, streams included, across all nodes (docs/limits.md); "
      "0 = no cap" },
    { SCOPE_KEY, "queue_timeout", T_DURATION, KEY(queue_timeout_ms), "0s", 0, 3600000, NULL, 0,
      "a request refused on requests, tokens or max_inflight waits up to this long for room "
      "(FIFO per key), instead of 429; 0 = never waits" },

    { SCOPE_TEAM, "rpm", T_INT, TEAM(rpm), "0", 0, BIG, NULL, 0,
      "requests per minute of all the team's keys together; 0 = unlimited" },
    { SCOPE_TEAM, "input_tpm", T_INT, TEAM(input_tpm), "0", 0, BIG, NULL, 0,
      "prompt tokens per minute, all keys together; 0 = unlimited" },
    { SCOPE_TEAM, "output_tpm", T_INT, TEAM(output_tpm), "0", 0, BIG, NULL, 0,
      "completion tokens per minute, all keys together; 0 = unlimited" },
    { SCOPE_TEAM, "budget", T_MONEY, TEAM(budget), "0", 0, BIG, NULL, 0,
      "USD per budget_period, all keys together; 0 = none" },
    { SCOPE_TEAM, "budget_period", T_ENUM, TEAM(budget_period), "month", 0, 0, periods, 0,
      "day | week | month | total" },
    { SCOPE_TEAM, "max_inflight", T_INT, TEAM(max_inflight), "0", 0, 1000000, NULL, 0,
      "requests of all the team's keys open at once, across all nodes; 0 = no cap" },
};
#define NOPTIONS ((int)SL_ARRAY_LEN(options))

/* ---- errors ---------------------------------------------------------------- */

static void add_error(struct cfg_errors *errs, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(struct cfg_errors *errs, const char *path, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct sl_buf b = { 0 };
    if (line > 0)
        sl_buf_printf(&b, "%s:%d: %s", path, line, msg);
    else
        sl_buf_printf(&b, "%s: %s", path, msg);
    errs->lines = sl_realloc(errs->lines, sizeof(char *) * (size_t)(errs->n + 1));
    errs->lines[errs->n++] = b.data;
}

void cfg_errors_free(struct cfg_errors *errs)
{
    for (int i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

/* ---- parse state ---------------------------------------------------------- */

struct section {
    enum scope scope;
    void *obj; /* the struct the option offsets point into */
    int line;  /* line of the [header] */
    int set_at[SL_ARRAY_LEN(options)]; /* line each option was set on, 0 = not set */
};

struct parser {
    const char *path;
    FILE *fp;
    int lineno;
    int maxline; /* what inih's buffer holds */
    struct config *cfg;
    struct cfg_errors *errs;
    struct section *sections;
    int nsections;
    struct section *cur; /* NULL before the first section or inside a bad one */
    bool bad_section;
    char *linebuf;
    size_t linecap;
    struct cfg_errors perms; /* permission problems: warnings, or errors when strict */
    bool readable_by_others;
    unsigned mode;
};

/* Backend and key arrays grow while parsing, so sections hold indexes for
 * them; this turns a section into the address of its struct. */
/* The named sections ([backend NAME], [key NAME], ...): the array of
 * struct config each fills. Their structs start with char *name, int line. */
struct named_scope {
    enum scope scope;
    const char *title;
    size_t array, count; /* offsets in struct config: the array pointer and its length */
    size_t names;        /* and the index of its names */
    size_t size;         /* of one element */
};

#define NAMED(sc, t, arr, cnt, idx, type)                                                          \
    { sc, t, offsetof(struct config, arr), offsetof(struct config, cnt),                            \
      offsetof(struct config, idx), sizeof(type) }
static const struct named_scope named_scopes[] = {
    NAMED(SCOPE_BACKEND, "backend", backends, nbackends, backend_names, struct cfg_backend),
    NAMED(SCOPE_KEY, "key", keys, nkeys, key_names, struct cfg_key),
    NAMED(SCOPE_TEAM, "team", teams, nteams, team_names, struct cfg_team),
    NAMED(SCOPE_MODEL, "model", models, nmodels, model_names, struct cfg_model),
};
#undef NAMED

struct named_head {
    char *name;
    int line;
};

static const struct named_scope *named_scope_of(enum scope scope)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(named_scopes); i++)
        if (named_scopes[i].scope == scope)
            return &named_scopes[i];
    return NULL;
}

static void *named_element(const struct config *c, const struct named_scope *ns, intptr_t i)
{
    char *array = *(char *const *)((const char *)c + ns->array);
    return array + (size_t)i * ns->size;
}

static struct sl_names *names_of(const struct config *c, const struct named_scope *ns)
{
    return (struct sl_names *)((const char *)c + ns->names);
}

static void *section_obj(struct parser *p, struct section *sec)
{
    const struct named_scope *ns = named_scope_of(sec->scope);
    return ns ? named_element(p->cfg, ns, (intptr_t)sec->obj) : sec->obj;
}

#define PERR(p, ...) add_error((p)->errs, (p)->path, (p)->lineno, __VA_ARGS__)

/* ---- value parsers ---------------------------------------------------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static bool parse_models(const char *v, struct cfg_models *m)
{
    struct cfg_models out = { 0 };
    char *copy = sl_strdup(v), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *name = trim(tok);
        if (!*name || strchr(name, ' ') || strchr(name, '\t')) {
            ok = false;
            break;
        }
        if (strcmp(name, "*") == 0) {
            out.any = true;
            continue;
        }
        out.names = sl_realloc(out.names, sizeof(char *) * (size_t)(out.n + 1));
        out.names[out.n++] = sl_strdup(name);
    }
    free(copy);
    if (!ok || (!out.any && out.n == 0)) {
        for (int i = 0; i < out.n; i++)
            free(out.names[i]);
        free(out.names);
        return false;
    }
    for (int i = 0; i < m->n; i++)
        free(m->names[i]);
    free(m->names);
    *m = out;
    return true;
}

static bool is_token(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'+-.^_`|~", *s))
            return false;
    return true;
}

/* forward_headers: header names, each a token with an optional trailing *. */
static bool parse_headers(struct parser *p, const struct option *o, const char *v,
                          struct cfg_models *h)
{
    if (!parse_models(v, h) || h->any) {
        PERR(p, "%s: '%s' is not a comma-separated list of header names", o->name, v);
        return false;
    }
    for (int i = 0; i < h->n; i++) {
        char name[CFG_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%s", h->names[i]);
        size_t len = strlen(name);
        if (len && name[len - 1] == '*')
            name[--len] = '\0';
        if (!len || !is_token(name)) {
            PERR(p, "%s: '%s' is not a header name", o->name, h->names[i]);
            return false;
        }
        if (hdr_never_forwarded((struct sl_str){ name, len })) { /* a prefix never opens them */
            PERR(p, "%s: %s is never forwarded (docs/http.md)", o->name, h->names[i]);
            return false;
        }
    }
    return true;
}

static bool parse_statuses(const char *v, struct cfg_statuses *st)
{
    struct cfg_statuses out = { { 0 } };
    char *copy = sl_strdup(v), *save = NULL;
    bool ok = true, any = false;
    for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        char *item = trim(tok), *dash = strchr(item, '-');
        int64_t lo, hi;
        if (dash) {
            *dash = '\0';
            ok = sl_parse_int(trim(item), &lo) && sl_parse_int(trim(dash + 1), &hi);
        } else {
            ok = sl_parse_int(item, &lo);
            hi = lo;
        }
        if (!ok || lo < 100 || hi > 599 || lo > hi) {
            ok = false;
            break;
        }
        for (int64_t s = lo; s <= hi; s++)
            out.bits[(s - 100) / 64] |= 1ULL << ((s - 100) % 64);
        any = true;
    }
    free(copy);
    if (!ok || !any)
        return false;
    *st = out;
    return true;
}

/* host:port, optionally followed by `tls`. */
static bool parse_listen(const char *value, struct cfg_listen *l)
{
    char v[128];
    const char *sp = strpbrk(value, " \t");
    size_t vlen = sp ? (size_t)(sp - value) : strlen(value);
    if (vlen >= sizeof(v))
        return false;
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    l->tls = false;
    if (sp) {
        sp += strspn(sp, " \t");
        if (strcmp(sp, "tls") != 0)
            return false;
        l->tls = true;
    }
    const char *colon = strrchr(v, ':');
    if (!colon)
        return false;
    size_t hlen = (size_t)(colon - v);
    const char *host = v;
    if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']') { /* [::1]:8080 */
        host++;
        hlen -= 2;
    }
    int64_t port;
    if (hlen >= sizeof(l->host) || !sl_parse_int(colon + 1, &port) || port < 1 || port > 65535)
        return false;
    if (hlen == 0 || (hlen == 1 && host[0] == '*')) {
        strcpy(l->host, "0.0.0.0");
    } else {
        memcpy(l->host, host, hlen);
        l->host[hlen] = '\0';
    }
    l->port = (int)port;
    return true;
}

static bool parse_digest(struct parser *p, const char *v, uint8_t out[32], const char *what)
{
    if (strncmp(v, "sha256:", 7) == 0) {
        if (strlen(v + 7) != 64 || !sl_unhex(v + 7, out, 32)) {
            PERR(p, "%s: sha256: must be followed by 64 hex digits", what);
            return false;
        }
        return true;
    }
    if (strlen(v) < 8) {
        PERR(p, "%s: a plain key must be at least 8 characters", what);
        return false;
    }
    sl_sha256(v, strlen(v), out);
    log_warn("%s:%d: %s is given in plain text; write sha256:<hex> instead "
             "(printf %%s KEY | sha256sum)",
             p->path, p->lineno, what);
    return true;
}

/* env: secrets are read once and kept here, and taken out of the process's
 * environment, the copy /proc/PID/environ shows included: a reload finds
 * them here, nothing else finds them at all. */
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept_env {
    char *name, *value;
} *env_kept;
static int nenv_kept;

static char *env_secret(const char *name)
{
    char *out = NULL;
    pthread_mutex_lock(&env_lock);
    for (int i = 0; i < nenv_kept && !out; i++)
        if (strcmp(env_kept[i].name, name) == 0)
            out = sl_strdup(env_kept[i].value);
    const char *e = out ? NULL : getenv(name);
    if (e && *e) {
        out = sl_strdup(e);
        env_kept = sl_realloc(env_kept, sizeof(*env_kept) * (size_t)(nenv_kept + 1));
        env_kept[nenv_kept++] = (struct kept_env){ sl_strdup(name), sl_strdup(e) };
        size_t n = strlen(name);
        for (char **ev = environ; *ev; ev++)
            if (strncmp(*ev, name, n) == 0 && (*ev)[n] == '=')
                explicit_bzero(*ev + n + 1, strlen(*ev + n + 1));
        unsetenv(name);
    }
    pthread_mutex_unlock(&env_lock);
    return out;
}

void cfg_forget_environment(void)
{
    pthread_mutex_lock(&env_lock);
    for (int i = 0; i < nenv_kept; i++) {
        explicit_bzero(env_kept[i].value, strlen(env_kept[i].value));
        free(env_kept[i].name);
        free(env_kept[i].value);
    }
    free(env_kept);
    env_kept = NULL;
    nenv_kept = 0;
    pthread_mutex_unlock(&env_lock);
}

/* Where a value came from: the file itself, the environment, or a file. */
enum source { SRC_INLINE, SRC_ENV, SRC_FILE };

/* A permission problem: a warning, or an error with strict_permissions. */
static void perm_issue(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void perm_issue(struct parser *p, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    add_error(&p->perms, p->path, line, "%s", msg);
}

/* A file a value is read from: nobody else may write it, and nobody else
 * may read it when it holds a plain secret. */
static void check_value_file(struct parser *p, const char *path, bool plain_secret)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if (st.st_mode & S_IWOTH)
        perm_issue(p, p->lineno, "%s is writable by other users (mode %04o)", path, mode);
    else if (plain_secret && (st.st_mode & S_IROTH))
        perm_issue(p, p->lineno, "%s holds a secret and is readable by other users (mode %04o)",
                   path, mode);
}

/* -C: where cred: values are read outside systemd (cfg_set_credentials). */
static const char *credentials_spec;

void cfg_set_credentials(const char *spec)
{
    credentials_spec = spec;
}

/* cred:NAME as a path in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=),
 * or outside systemd in the folder -C names, after prefix; reported when it
 * cannot be one. */
static bool cred_path(struct parser *p, const char *v, const char *prefix, char *out, size_t n)
{
    const char *name = v + 5, *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!*name || strchr(name, '/')) {
        PERR(p, "%s: a credential name, not a path", v);
        return false;
    }
    if (dir && *dir) {
        snprintf(out, n, "%s%s/%s", prefix, dir, name);
        return true;
    }
    if (!credentials_spec) {
        PERR(p, "%s: CREDENTIALS_DIRECTORY is not set (systemd's LoadCredential= sets it); "
                "outside systemd, name the folder as the unit does: sluice -C "
                "sluice:/etc/sluice/credentials",
             v);
        return false;
    }
    const char *colon = credentials_spec[0] == '/' ? NULL : strchr(credentials_spec, ':');
    if (!colon) { /* -C DIR: the names are the file names */
        snprintf(out, n, "%s%s/%s", prefix, credentials_spec, name);
        return true;
    }
    size_t idlen = (size_t)(colon - credentials_spec);
    if (strncmp(name, credentials_spec, idlen) != 0 || name[idlen] != '_' || !name[idlen + 1]) {
        PERR(p, "%s: -C %s loads credentials named %.*s_FILE", v, credentials_spec, (int)idlen,
             credentials_spec);
        return false;
    }
    snprintf(out, n, "%s%s/%s", prefix, colon + 1, name + idlen + 1);
    return true;
}

/* A PEM file's path: /path, file:/path or cred:NAME. OpenSSL reads the
 * whole file, so it is not resolved as a value (its first line). */
static char *pem_path(struct parser *p, const struct option *o, const char *v)
{
    char path[4096];
    if (strncmp(v, "cred:", 5) == 0) {
        if (!cred_path(p, v, "", path, sizeof(path)))
            return NULL;
    } else {
        snprintf(path, sizeof(path), "%s", strncmp(v, "file:", 5) == 0 ? v + 5 : v);
    }
    if (access(path, R_OK) != 0) {
        PERR(p, "%s: cannot read %s: %s", o->name, path, strerror(errno));
        return NULL;
    }
    check_value_file(p, path, o->flags & F_SECRET);
    return sl_strdup(path);
}

/* env:NAME, file:/path and cred:NAME (systemd's LoadCredential=, read from
 * $CREDENTIALS_DIRECTORY) indirections, for any value. Returns a malloc'd
 * string or NULL after reporting the error; *src says where it came from.
 * secret: the option holds one, so an env: one is taken out of the
 * environment and a file: one has its modes checked. */
static char *resolve_value(struct parser *p, const char *v, bool secret, enum source *src)
{
    *src = SRC_INLINE;
    if (strncmp(v, "cred:", 5) == 0) {
        char path[4096];
        if (!cred_path(p, v, "file:", path, sizeof(path)))
            return NULL;
        return resolve_value(p, path, secret, src);
    }
    if (strncmp(v, "env:", 4) == 0) {
        *src = SRC_ENV;
        const char *plain = secret ? NULL : getenv(v + 4);
        char *e = secret ? env_secret(v + 4) : plain && *plain ? sl_strdup(plain) : NULL;
        if (!e)
            PERR(p, "environment variable %s is not set", v + 4);
        return e;
    }
    if (strncmp(v, "file:", 5) == 0) {
        *src = SRC_FILE;
        FILE *f = fopen(v + 5, "r");
        if (!f) {
            PERR(p, "cannot read %s: %s", v + 5, strerror(errno));
            return NULL;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, f);
        fclose(f);
        if (n <= 0) {
            free(line);
            PERR(p, "%s is empty", v + 5);
            return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        check_value_file(p, v + 5, secret && strncmp(line, "sha256:", 7) != 0);
        return line;
    }
    return sl_strdup(v);
}

static int find_option(enum scope scope, const char *name)
{
    for (int i = 0; i < NOPTIONS; i++)
        if (options[i].scope == scope && strcmp(options[i].name, name) == 0)
            return i;
    return -1;
}

/* Stores value v for option o into obj. Reports and returns false on error. */
static bool set_option(struct parser *p, const struct option *o, void *obj, const char *v)
{
    char *field = (char *)obj + o->offset;
    int64_t n = 0;
    bool ok = true, b;
    switch (o->type) {
    case T_INT:
        ok = sl_parse_int(v, &n);
        goto bounds;
    case T_DURATION:
        ok = sl_parse_duration_ms(v, &n);
        goto bounds;
    case T_SIZE:
        ok = sl_parse_size(v, &n);
    bounds:
        if (!ok) {
            PERR(p, "%s: '%s' is not a %s", o->name, v, type_names[o->type]);
            return false;
        }
        if (n < o->min || n > o->max) {
            PERR(p, "%s: %s is out of range [%lld, %lld]", o->name, v, (long long)o->min,
                 (long long)o->max);
            return false;
        }
        *(int64_t *)field = n;
        return true;
    case T_BOOL:
        if (!sl_parse_bool(v, &b)) {
            PERR(p, "%s: '%s' is not yes/no, on/off or true/false", o->name, v);
            return false;
        }
        *(bool *)field = b;
        return true;
    case T_URL:
        if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
            PERR(p, "%s: '%s' must start with http:// or https://", o->name, v);
            return false;
        }
        /* fallthrough */
    case T_STRING: {
        if (!*v) {
            PERR(p, "%s: empty value", o->name);
            return false;
        }
        char *s = sl_strdup(v);
        if (o->type == T_URL)
            for (size_t len = strlen(s); len > 0 && s[len - 1] == '/'; len--)
                s[len - 1] = '\0';
        free(*(char **)field);
        *(char **)field = s;
        return true;
    }
    case T_ENUM:
        for (int i = 0; o->choices[i]; i++) {
            if (strcasecmp(o->choices[i], v) == 0) {
                *(int *)field = i;
                return true;
            }
        }
        {
            struct sl_buf list = { 0 };
            for (int i = 0; o->choices[i]; i++)
                sl_buf_printf(&list, "%s%s", i ? ", " : "", o->choices[i]);
            PERR(p, "%s: '%s' is not one of %s", o->name, v, list.data);
            sl_buf_free(&list);
        }
        return false;
    case T_MODELS:
        if (!parse_models(v, (struct cfg_models *)field)) {
            PERR(p, "%s: '%s' is not a comma-separated list of model names or *", o->name, v);
            return false;
        }
        return true;
    case T_HEADERS:
        return parse_headers(p, o, v, (struct cfg_models *)field);
    case T_RATIO: /* millionths, as money is */
    case T_MONEY:
        if (!sl_parse_money(v, &n) || n > o->max) {
            PERR(p, "%s: '%s' is not %s (digits, at most 6 decimals)", o->name, v,
                 o->type == T_RATIO ? "a ratio from 0 to 1" : "an amount of USD");
            return false;
        }
        *(int64_t *)field = n;
        return true;
    case T_STATUS:
        if (!parse_statuses(v, (struct cfg_statuses *)field)) {
            PERR(p, "%s: '%s' is not a list of statuses or ranges (100-599)", o->name, v);
            return false;
        }
        return true;
    case T_LISTEN: {
        struct cfg_listens *ls = (struct cfg_listens *)field;
        struct cfg_listen l;
        if (!parse_listen(v, &l)) {
            PERR(p, "%s: '%s' is not host:port or host:port tls", o->name, v);
            return false;
        }
        ls->v = sl_realloc(ls->v, sizeof(l) * (size_t)(ls->n + 1));
        ls->v[ls->n++] = l;
        return true;
    }
    case T_DIGEST:
        return parse_digest(p, v, (uint8_t *)field, o->name);
    case T_PEM: {
        char *path = pem_path(p, o, v);
        if (!path)
            return false;
        free(*(char **)field);
        *(char **)field = path;
        return true;
    }
    }
    return false;
}

/* ---- sections ------------------------------------------------------------- */

/* Section names become metric labels and log fields. Model names may also
 * hold ':' '/' '@' '+' (ft:gpt-4o:org:x, meta-llama/Llama-3-8B). */
static bool valid_name(const char *s, enum scope scope)
{
    if (!*s || strlen(s) > CFG_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.' &&
            !(scope == SCOPE_MODEL && strchr(":/@+", *s)))
            return false;
    return true;
}

static void apply_defaults(struct parser *p, enum scope scope, void *obj)
{
    for (int i = 0; i < NOPTIONS; i++) {
        const struct option *o = &options[i];
        if (o->scope == scope && o->def && !set_option(p, o, obj, o->def))
            log_error("internal: bad default for %s", o->name);
    }
}

static struct section *find_scope(struct parser *p, enum scope scope)
{
    for (int i = 0; i < p->nsections; i++)
        if (p->sections[i].scope == scope)
            return &p->sections[i];
    return NULL;
}

/* Called by the line reader for every [header]. */
static void open_section(struct parser *p, char *header)
{
    p->cur = NULL;
    p->bad_section = true;
    char *end = strchr(header, ']');
    if (!end) {
        PERR(p, "section header without ']'");
        return;
    }
    *end = '\0';
    char *rest = trim(end + 1);
    if (*rest && *rest != ';' && *rest != '#') {
        PERR(p, "unexpected text after section header");
        return;
    }
    char *title = trim(header + 1), *name = title;
    while (*name && !isspace((unsigned char)*name))
        name++;
    if (*name)
        *name++ = '\0';
    name = trim(name);

    enum scope scope;
    if (strcmp(title, "server") == 0)
        scope = SCOPE_SERVER;
    else if (strcmp(title, "redis") == 0)
        scope = SCOPE_REDIS;
    else if (strcmp(title, "telemetry") == 0)
        scope = SCOPE_TELEMETRY;
    else {
        size_t i = 0;
        while (i < SL_ARRAY_LEN(named_scopes) && strcmp(title, named_scopes[i].title) != 0)
            i++;
        if (i == SL_ARRAY_LEN(named_scopes)) {
            PERR(p, "unknown section [%s]", title);
            return;
        }
        scope = named_scopes[i].scope;
    }
    const struct named_scope *ns = named_scope_of(scope);
    bool named = ns != NULL;
    if (named && !valid_name(name, scope)) {
        PERR(p, "[%s NAME] needs a name of letters, digits, '-', '_' or '.' (at most 64)", title);
        return;
    }
    if (!named && *name) {
        PERR(p, "[%s] takes no name", title);
        return;
    }
    struct config *c = p->cfg;
    const struct section *prev = named ? NULL : find_scope(p, scope);
    int had = named ? sl_names_find(names_of(c, ns), name, strlen(name)) : -1;
    if (prev || had >= 0) {
        PERR(p, "section [%s%s%s] already defined at line %d", title, named ? " " : "", name,
             prev ? prev->line : ((struct named_head *)named_element(c, ns, had))->line);
        return;
    }

    void *obj;
    if (scope == SCOPE_SERVER) {
        obj = &c->server;
    } else if (scope == SCOPE_REDIS) {
        c->redis.enabled = true;
        obj = &c->redis;
    } else if (scope == SCOPE_TELEMETRY) {
        c->telemetry.enabled = true;
        obj = &c->telemetry;
    } else {
        /* The arrays grow, so sections hold an index into them, not a pointer. */
        char **array = (char **)((char *)c + ns->array);
        int *count = (int *)((char *)c + ns->count);
        *array = sl_grow(*array, ns->size, *count);
        struct named_head *h = named_element(c, ns, *count);
        memset(h, 0, ns->size);
        h->name = sl_strdup(name);
        h->line = p->lineno;
        sl_names_add(names_of(c, ns), h->name, strlen(h->name), *count, NULL);
        obj = (void *)(intptr_t)(*count)++;
    }
    p->sections = sl_grow(p->sections, sizeof(*p->sections), p->nsections);
    struct section *sec = &p->sections[p->nsections++];
    memset(sec, 0, sizeof(*sec));
    sec->scope = scope;
    sec->obj = obj;
    sec->line = p->lineno;
    p->cur = sec;
    p->bad_section = false;
    if (named)
        apply_defaults(p, scope, section_obj(p, sec));
}

/* ---- inih glue ------------------------------------------------------------- */

/* inih's reader: hands over one physical line at a time, counting lines and
 * catching what inih would report poorly (section headers, overlong lines,
 * lines that are neither section nor name = value). */
static char *read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    p->maxline = num;
    ssize_t n = getline(&p->linebuf, &p->linecap, p->fp);
    if (n < 0)
        return NULL;
    p->lineno++;
    char *line = p->linebuf;
    if (p->lineno == 1 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
        (unsigned char)line[2] == 0xBF)
        line += 3;
    char *t = trim(line);
    str[0] = '\n';
    str[1] = '\0';
    if (!*t || *t == ';' || *t == '#')
        return str;
    if ((size_t)n + 1 >= (size_t)num) {
        PERR(p, "line too long (at most %d characters)", num - 2);
        return str;
    }
    if (*t == '[') {
        /* Scan a copy: open_section modifies the text. */
        char *copy = sl_strdup(t);
        open_section(p, copy);
        free(copy);
        return str; /* inih never sees sections; the handler uses p->cur */
    }
    if (!strchr(t, '=')) {
        PERR(p, "expected 'name = value'");
        return str;
    }
    if (isspace((unsigned char)line[0])) {
        PERR(p, "continuation lines are not supported; put the value on one line");
        return str;
    }
    memcpy(str, line, (size_t)n + 1);
    return str;
}

static int on_value(void *user, const char *section, const char *name, const char *value)
{
    (void)section;
    struct parser *p = user;
    if (p->bad_section)
        return 1; /* already reported at the header */
    if (!p->cur) {
        PERR(p, "'%s' is outside any section", name);
        return 1;
    }
    struct section *sec = p->cur;
    int idx = find_option(sec->scope, name);
    if (idx < 0) {
        PERR(p, "unknown key '%s' in [%s]", name, scope_names[sec->scope]);
        return 1;
    }
    const struct option *o = &options[idx];
    if (sec->set_at[idx] && !(o->flags & F_REPEAT)) {
        PERR(p, "'%s' already set at line %d", name, sec->set_at[idx]);
        return 1;
    }
    bool secret = o->flags & F_SECRET;
    enum source src = SRC_FILE;
    char *v = o->type == T_PEM ? sl_strdup(value) : resolve_value(p, value, secret, &src);
    if (!v)
        return 1;
    bool plain = secret && strncmp(v, "sha256:", 7) != 0 &&
                 (sec->scope != SCOPE_REDIS || strchr(v, '@')); /* a Redis URL: its password */
    if (src == SRC_INLINE && plain && p->readable_by_others)
        perm_issue(p, p->lineno, "%s holds a plain secret and the file is readable by other users "
                   "(mode %04o); use env:, file: or cred:, or chmod o-r", name, p->mode);
    if (o->type == T_LISTEN && !sec->set_at[idx]) /* the first one replaces the default */
        ((struct cfg_listens *)((char *)section_obj(p, sec) + o->offset))->n = 0;
    if (set_option(p, o, section_obj(p, sec), v))
        sec->set_at[idx] = p->lineno;
    free(v);
    return 1;
}

/* ---- whole-file checks -------------------------------------------------------- */

static void check_required(struct parser *p)
{
    for (int s = 0; s < p->nsections; s++) {
        struct section *sec = &p->sections[s];
        for (int i = 0; i < NOPTIONS; i++) {
            if (options[i].scope == sec->scope && (options[i].flags & F_REQUIRED) &&
                !sec->set_at[i])
                add_error(p->errs, p->path, sec->line, "[%s] needs '%s'",
                          scope_names[sec->scope], options[i].name);
        }
    }
}

/* [model] prices left unset are -1 (cached: the input price). A model a
 * backend lists without both prices costs nothing: said once, or an error
 * with require_prices. */
static void check_prices(struct parser *p)
{
    struct config *c = p->cfg;
    for (int i = 0; i < p->nsections; i++) {
        struct section *sec = &p->sections[i];
        if (sec->scope != SCOPE_MODEL)
            continue;
        struct cfg_model *m = section_obj(p, sec);
        if (!sec->set_at[find_option(SCOPE_MODEL, "input_price")])
            m->input_price = -1;
        if (!sec->set_at[find_option(SCOPE_MODEL, "output_price")])
            m->output_price = -1;
        if (!sec->set_at[find_option(SCOPE_MODEL, "cached_input_price")])
            m->cached_input_price = m->input_price;
    }
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_models *ms = &c->backends[i].models;
        for (int j = 0; j < ms->n; j++) {
            const char *name = ms->names[j];
            bool listed_before = false;
            for (int k = 0; k <= i && !listed_before; k++)
                for (int l = 0; l < (k == i ? j : c->backends[k].models.n) && !listed_before; l++)
                    listed_before = strcmp(c->backends[k].models.names[l], name) == 0;
            const struct cfg_model *m = cfg_find_model(c, name);
            if (listed_before || (m && m->input_price >= 0 && m->output_price >= 0))
                continue;
            if (c->server.require_prices)
                add_error(p->errs, p->path, c->backends[i].line,
                          "[backend %s] lists %s, which has no [model %s] with input_price and "
                          "output_price (require_prices = on)",
                          c->backends[i].name, name, name);
            else
                log_info("%s: model %s has no price for its input or output ([model %s] "
                         "input_price, output_price): those tokens cost 0",
                         p->path, name, name);
        }
    }
}

/* Whether some backend lists the model (or serves any). */
static bool served(const struct config *c, const char *name)
{
    for (int i = 0; i < c->nbackends; i++)
        if (cfg_models_match(&c->backends[i].models, name, strlen(name)))
            return true;
    return false;
}

/* [model] routing: the upstream name is served; fallbacks name models that
 * are (after their own upstream name), never `*` or the model itself. */
static void check_model_routes(struct parser *p)
{
    struct config *c = p->cfg;
    for (int i = 0; i < c->nmodels; i++) {
        const struct cfg_model *m = &c->models[i];
        if (m->upstream && (!valid_name(m->upstream, SCOPE_MODEL) || !served(c, m->upstream)))
            add_error(p->errs, p->path, m->line,
                      "[model %s]: upstream %s must be a model name a backend lists", m->name,
                      m->upstream);
        const struct cfg_models *lists[2] = { &m->fallbacks, &m->context_fallbacks };
        for (int l = 0; l < 2; l++) {
            if (lists[l]->any)
                add_error(p->errs, p->path, m->line, "[model %s]: %s cannot be *", m->name,
                          l ? "context_fallbacks" : "fallbacks");
            for (int j = 0; j < lists[l]->n; j++) {
                const char *f = lists[l]->names[j];
                if (strcmp(f, m->name) == 0 || !served(c, cfg_upstream_name(c, f)))
                    add_error(p->errs, p->path, m->line,
                              "[model %s]: %s names %s, which no backend serves%s", m->name,
                              l ? "context_fallbacks" : "fallbacks", f,
                              strcmp(f, m->name) == 0 ? " but this model itself" : "");
            }
        }
    }
}

/* Periods, and each key's team. */
static void check_budgets(struct parser *p)
{
    struct config *c = p->cfg;
    for (int i = 0; i < c->nkeys; i++) {
        struct cfg_key *k = &c->keys[i];
        if (k->quota && k->quota_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, k->line,
                      "[key %s]: quota needs quota_period = day, week, month or total", k->name);
        if (k->budget && k->budget_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, k->line,
                      "[key %s]: budget needs budget_period = day, week, month or total", k->name);
        if (k->team_name && !(k->team = cfg_find_team(c, k->team_name)))
            add_error(p->errs, p->path, k->line, "[key %s]: team %s has no [team %s] section",
                      k->name, k->team_name, k->team_name);
    }
    for (int i = 0; i < c->nteams; i++)
        if (c->teams[i].budget && c->teams[i].budget_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, c->teams[i].line,
                      "[team %s]: budget needs budget_period = day, week, month or total",
                      c->teams[i].name);
}

/* The model names the config names (backends' and keys' lists, [model]
 * sections), each once, for cfg_model_label: O(1) per request. */
static void add_label(struct config *c, const char *name)
{
    if (sl_names_find(&c->label_names, name, strlen(name)) >= 0)
        return;
    c->labels = sl_grow(c->labels, sizeof(*c->labels), c->nlabels);
    c->labels[c->nlabels] = name;
    sl_names_add(&c->label_names, name, strlen(name), c->nlabels++, NULL);
}

static void index_labels(struct config *c)
{
    for (int i = 0; i < c->nbackends; i++)
        for (int j = 0; j < c->backends[i].models.n; j++)
            add_label(c, c->backends[i].models.names[j]);
    for (int i = 0; i < c->nkeys; i++)
        for (int j = 0; j < c->keys[i].models.n; j++)
            add_label(c, c->keys[i].models.names[j]);
    for (int i = 0; i < c->nmodels; i++)
        add_label(c, c->models[i].name);
}

/* With a listener marked tls: the context, made now so `sluice -t` and a
 * reload report a bad certificate or key (a failed reload keeps the old). */
static void check_tls(struct parser *p)
{
    struct config *c = p->cfg;
    const struct cfg_server *s = &c->server;
    bool any = false;
    for (int i = 0; i < s->listen.n; i++)
        any |= s->listen.v[i].tls;
    for (int i = 0; i < s->admin_listen.n; i++)
        any |= s->admin_listen.v[i].tls;
    if (!any)
        return;
    if (!s->tls_cert || !s->tls_key) {
        add_error(p->errs, p->path, 0, "a listener marked tls needs tls_cert and tls_key in [server]");
        return;
    }
    char err[512];
    c->tls = tls_server_new(s->tls_cert, s->tls_key, s->tls_client_ca, err, sizeof(err));
    if (!c->tls) {
        add_error(p->errs, p->path, 0, "%s", err);
        return;
    }
    int days;
    if (!tls_cert_days_left(s->tls_cert, &days))
        return;
    if (days < 0)
        log_warn("%s: tls_cert %s expired %d day%s ago", p->path, s->tls_cert, -days,
                 days == -1 ? "" : "s");
    else if (days < 14)
        log_warn("%s: tls_cert %s expires in %d day%s", p->path, s->tls_cert, days,
                 days == 1 ? "" : "s");
}

static void check_config(struct parser *p)
{
    struct config *c = p->cfg;
    check_required(p);
    struct section *rds = find_scope(p, SCOPE_REDIS);
    const char *why;
    struct redis_url url;
    if (rds && !redis_url_parse(c->redis.url, &url, &why)) {
        int url_line = rds->set_at[find_option(SCOPE_REDIS, "url")];
        add_error(p->errs, p->path, url_line ? url_line : rds->line, "url: %s", why);
    }
    struct section *srv = find_scope(p, SCOPE_SERVER);
    c->server.admin_enabled = srv && srv->set_at[find_option(SCOPE_SERVER, "admin_key")];
    c->server.metrics_protected = srv && srv->set_at[find_option(SCOPE_SERVER, "metrics_key")];
    c->stateful_backend = -1;
    for (int i = 0; i < c->nbackends; i++) {
        if (!c->backends[i].stateful)
            continue;
        if (c->stateful_backend >= 0)
            add_error(p->errs, p->path, c->backends[i].line,
                      "[backend %s]: stateful = yes, but [backend %s] already is; one at most",
                      c->backends[i].name, c->backends[c->stateful_backend].name);
        else
            c->stateful_backend = i;
    }
    if (c->stateful_backend < 0 && c->nbackends > 0) { /* else the first by priority */
        int best = 0;
        for (int i = 1; i < c->nbackends; i++)
            if (c->backends[i].priority < c->backends[best].priority)
                best = i;
        c->stateful_backend = best;
    }
    for (int i = 0; i < c->nbackends; i++) {
        struct cfg_backend *be = &c->backends[i];
        if (be->type == BACKEND_AZURE && !be->api_version)
            add_error(p->errs, p->path, be->line, "[backend %s] of type azure needs api_version",
                      be->name);
        if (be->type != BACKEND_AZURE && (be->api_version || be->deployment))
            add_error(p->errs, p->path, be->line,
                      "[backend %s]: api_version and deployment are for type = azure", be->name);
        bool https = be->url && strncmp(be->url, "https://", 8) == 0;
        if (!https && (be->ca_file || be->client_cert || be->client_key || !be->tls_verify))
            add_error(p->errs, p->path, be->line,
                      "[backend %s]: ca_file, client_cert, client_key and tls_verify are for "
                      "https:// URLs", be->name);
        if (!be->client_cert != !be->client_key)
            add_error(p->errs, p->path, be->line,
                      "[backend %s]: client_cert and client_key go together", be->name);
        if (https && !be->tls_verify)
            log_warn("%s:%d: [backend %s] tls_verify = no: its certificate is not checked, "
                     "anyone on the path can read the API key", p->path, be->line, be->name);
    }
    check_prices(p);
    check_model_routes(p);
    check_budgets(p);
    struct sl_names digests = { 0 };
    for (int i = 0, j; i < c->nkeys; i++)
        if (!sl_names_add(&digests, c->keys[i].digest, 32, i, &j))
            add_error(p->errs, p->path, c->keys[i].line,
                      "[key %s] has the same key as [key %s]", c->keys[i].name, c->keys[j].name);
    sl_names_free(&digests);
    index_labels(c);
    if (c->nbackends > 256)
        add_error(p->errs, p->path, 0, "at most 256 [backend] sections are supported");
    if (c->nbackends == 0)
        add_error(p->errs, p->path, 0, "no [backend NAME] section: nowhere to send requests");
    if (c->nkeys == 0)
        log_warn("%s: no [key NAME] section: every API request will be refused", p->path);
    if (c->server.listen.n == 0)
        add_error(p->errs, p->path, 0, "no listen address");
    check_tls(p);
}

/* ---- load / free --------------------------------------------------------------- */

static void models_free(struct cfg_models *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->names[i]);
    free(m->names);
}

static void config_free(struct config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->server.listen.v);
    free(c->server.admin_listen.v);
    free(c->server.usage_log);
    free(c->server.pid_file);
    free(c->server.tls_cert);
    free(c->server.tls_key);
    free(c->server.tls_client_ca);
    tls_ctx_free(c->tls);
    free(c->redis.url);
    free(c->telemetry.otlp_endpoint);
    free(c->telemetry.service_name);
    for (int i = 0; i < c->nbackends; i++) {
        struct cfg_backend *be = &c->backends[i];
        free(be->name);
        free(be->url);
        if (be->api_key)
            memset(be->api_key, 0, strlen(be->api_key));
        free(be->api_key);
        free(be->api_version);
        free(be->deployment);
        models_free(&be->models);
        models_free(&be->forward_headers);
        free(be->organization);
        free(be->project);
        free(be->ca_file);
        free(be->client_cert);
        free(be->client_key);
    }
    free(c->backends);
    for (int i = 0; i < c->nkeys; i++) {
        free(c->keys[i].name);
        free(c->keys[i].team_name);
        models_free(&c->keys[i].models);
    }
    free(c->keys);
    for (int i = 0; i < c->nteams; i++)
        free(c->teams[i].name);
    free(c->teams);
    for (int i = 0; i < c->nmodels; i++) {
        free(c->models[i].name);
        free(c->models[i].upstream);
        models_free(&c->models[i].fallbacks);
        models_free(&c->models[i].context_fallbacks);
    }
    free(c->models);
    for (size_t i = 0; i < SL_ARRAY_LEN(named_scopes); i++)
        sl_names_free(names_of(c, &named_scopes[i]));
    sl_names_free(&c->label_names);
    free(c->labels);
    free(c);
}

struct config *cfg_load(const char *path, struct cfg_errors *errs)
{
    struct config *c = sl_calloc(1, sizeof(*c));
    c->path = sl_strdup(path);
    atomic_init(&c->refs, 1);
    struct parser p = { .path = path, .cfg = c, .errs = errs };
    int before = errs->n;

    p.fp = fopen(path, "r");
    if (!p.fp) {
        add_error(errs, path, 0, "cannot open: %s", strerror(errno));
        config_free(c);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(p.fp), &st) == 0) {
        p.mode = (unsigned)(st.st_mode & 07777);
        p.readable_by_others = st.st_mode & S_IROTH;
        if (st.st_mode & S_IWOTH)
            perm_issue(&p, 0, "the configuration file is writable by other users (mode %04o)",
                       p.mode);
    }
    /* [server] and [redis] defaults apply even when the section is absent;
     * named sections get theirs the moment they open. */
    apply_defaults(&p, SCOPE_SERVER, &c->server);
    apply_defaults(&p, SCOPE_REDIS, &c->redis);
    apply_defaults(&p, SCOPE_TELEMETRY, &c->telemetry);
    ini_parse_stream(read_line, &p, on_value, &p);
    fclose(p.fp);
    free(p.linebuf);

    check_config(&p);
    free(p.sections);
    for (int i = 0; i < p.perms.n; i++) { /* errors with strict_permissions, else warnings */
        if (c->server.strict_permissions)
            add_error(errs, path, 0, "%s (strict_permissions)", p.perms.lines[i]);
        else
            log_warn("%s", p.perms.lines[i]);
    }
    cfg_errors_free(&p.perms);
    if (errs->n > before) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *cfg_ref(struct config *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void cfg_unref(struct config *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        config_free(c);
}

bool cfg_models_match(const struct cfg_models *m, const char *model, size_t len)
{
    if (m->any)
        return true;
    for (int i = 0; i < m->n; i++)
        if (strlen(m->names[i]) == len && memcmp(m->names[i], model, len) == 0)
            return true;
    return false;
}

bool cfg_status_in(const struct cfg_statuses *s, int status)
{
    if (status < 100 || status > 599)
        return false;
    return (s->bits[(status - 100) / 64] >> ((status - 100) % 64)) & 1;
}

/* The named section (struct named_head first) of that scope and name, or NULL. */
static const void *find_by_name(const struct config *c, enum scope scope, const char *name)
{
    const struct named_scope *ns = named_scope_of(scope);
    int i = sl_names_find(names_of(c, ns), name, strlen(name));
    return i < 0 ? NULL : named_element(c, ns, i);
}

const struct cfg_key *cfg_find_key(const struct config *c, const char *name)
{
    return find_by_name(c, SCOPE_KEY, name);
}

const struct cfg_team *cfg_find_team(const struct config *c, const char *name)
{
    return find_by_name(c, SCOPE_TEAM, name);
}

const struct cfg_model *cfg_find_model(const struct config *c, const char *name)
{
    return find_by_name(c, SCOPE_MODEL, name);
}

const char *cfg_upstream_name(const struct config *c, const char *name)
{
    const struct cfg_model *m = c->nmodels ? cfg_find_model(c, name) : NULL;
    return m && m->upstream ? m->upstream : name;
}

static bool priced(const struct cfg_model *m)
{
    return m && (m->input_price >= 0 || m->output_price >= 0);
}

const struct cfg_model *cfg_priced_model(const struct config *c, const char *name)
{
    if (!c->nmodels)
        return NULL;
    const struct cfg_model *m = cfg_find_model(c, name);
    if (priced(m))
        return m;
    const struct cfg_model *up = m && m->upstream ? cfg_find_model(c, m->upstream) : NULL;
    return priced(up) ? up : NULL;
}

const char *cfg_model_label(const struct config *c, const char *model)
{
    int i = sl_names_find(&c->label_names, model, strlen(model));
    return i < 0 ? "other" : c->labels[i];
}

/* The page's prose: what the option table cannot say. */
static const char reference_intro[] =
    "# Configuration reference\n"
    "\n"
    "sluice reads one INI file (`sluice -c FILE`, default `/etc/sluice/sluice.conf`).\n"
    "`sluice -t -c FILE` checks it and prints every problem as `file:line: message`,\n"
    "exiting 0 or 1. This page is what `sluice -D` prints: it comes from the option\n"
    "table in `src/config.c`, and a test keeps the copy in docs/ in step.\n"
    "\n"
    "## Syntax\n"
    "\n"
    "- Sections: `[server]`, `[redis]`, `[backend NAME]` (one per upstream\n"
    "  deployment), `[key NAME]` (one per client key), `[team NAME]` (limits and a\n"
    "  budget shared by the keys that name it) and `[model NAME]` (a model's\n"
    "  prices, docs/budgets.md; its upstream name and fallbacks, docs/pool.md);\n"
    "  `[telemetry]` sends traces to an OTLP collector (docs/operations.md).\n"
    "  Names are letters, digits, `-`, `_` and `.` (they\n"
    "  become metric labels and log fields); model names may also hold `:` `/` `@` `+`.\n"
    "- Money is USD with at most 6 decimals (`2.50`, `0.000125`); sluice keeps it\n"
    "  as whole micro-dollars.\n"
    "- `name = value`, one per line; lines may be at most 198 characters.\n"
    "- Comments: lines starting with `;` or `#`; `;` after whitespace ends a value.\n"
    "- Durations: `100ms`, `2s`, `10m`, `1h`; a bare number is seconds.\n"
    "- Sizes: `512`, `512k`, `4m`.\n"
    "- Booleans: `yes/no`, `on/off`, `true/false`, `1/0`.\n"
    "- Any value may be `env:NAME` (read from the environment), `file:/path`\n"
    "  (first line of the file) or `cred:NAME` (first line of\n"
    "  `$CREDENTIALS_DIRECTORY/NAME`, i.e. a systemd `LoadCredential=`), so\n"
    "  secrets need not sit in the file. A secret read with `env:` is taken out of\n"
    "  the process's environment; `cred:` is the one to prefer. Outside systemd,\n"
    "  `sluice -C ID:DIR` reads `cred:ID_FILE` from `DIR/FILE`, as the unit's\n"
    "  `LoadCredential=ID:DIR` does (`-C sluice:/etc/sluice/credentials`).\n"
    "- Client keys (`[key] key`, `[server] admin_key`, `metrics_key`) are\n"
    "  `sha256:<64 hex>` — the SHA-256 of the key (`printf %s 'the-key' | sha256sum`).\n"
    "  A plain key is accepted with a warning; sluice only ever keeps its digest.\n"
    "- The file, and any file a secret is read from, should be readable by the\n"
    "  service alone: other users' write access, or read access while a plain\n"
    "  secret is inside, is a warning with file:line (an error with\n"
    "  `strict_permissions = on`).\n"
    "- Unknown sections or keys, repeated keys, missing required keys, out-of-range\n"
    "  values and a config without any `[backend]` are errors.\n"
    "\n"
    "Without a `[redis]` section, limits are kept in-process (one node).\n"
    "\n"
    "## Options\n";

void cfg_print_reference(void)
{
    fputs(reference_intro, stdout);
    for (int s = 0; s < SCOPE__COUNT; s++) {
        printf("\n### [%s]\n\n| key | type | default | meaning |\n|---|---|---|---|\n",
               scope_names[s]);
        for (int i = 0; i < NOPTIONS; i++) {
            const struct option *o = &options[i];
            if (o->scope != (enum scope)s)
                continue;
            char type[128];
            if (o->type == T_ENUM) {
                struct sl_buf b = { 0 };
                for (int j = 0; o->choices[j]; j++)
                    sl_buf_printf(&b, "%s%s", j ? " \\| " : "", o->choices[j]);
                snprintf(type, sizeof(type), "%s", b.data);
                sl_buf_free(&b);
            } else if (o->type == T_INT && o->max != BIG) {
                snprintf(type, sizeof(type), "integer %lld..%lld", (long long)o->min,
                         (long long)o->max);
            } else {
                snprintf(type, sizeof(type), "%s", type_names[o->type]);
            }
            printf("| `%s` | %s | %s | %s |\n", o->name, type,
                   (o->flags & F_REQUIRED) ? "required" : o->def ? o->def : "unset", o->doc);
        }
    }
}
