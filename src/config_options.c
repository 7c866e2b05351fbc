/* The option table, and the configuration reference (`sluice -D`,
 * docs/config.md) generated from it. */
#include <stdio.h>

#include "sluice/config.h"
#include "sluice/config_options-t.h"
#include "sluice/util.h"

const char *const cfg_scope_names[SCOPE__COUNT] = { "server",   "redis",     "backend NAME",
                                                    "key NAME", "team NAME", "model NAME",
                                                    "telemetry", "auth" };
const char *const cfg_type_names[] = { "integer",   "duration",   "size",        "boolean",
                                       "string",    "URL",        "host:port",   "one of",
                                       "model list", "status list", "header list", "secret",
                                       "USD",       "PEM file",   "ratio",       "time",
                                       "rate" };

static const char *const backend_types[] = { "openai", "azure", "anthropic", NULL };
static const char *const on_error_modes[] = { "local", "allow", "deny", NULL };
static const char *const periods[] = { "none", "day", "month", "total", "week", NULL };
static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const key_modes[] = { "enforce", "shadow", NULL };
static const char *const trust_user_choices[] = { "no", "header", "body", NULL };
static const char *const access_formats[] = { "text", "json", NULL };
static const char *const unpriced_choices[] = { "deny", "allow", NULL };
static const char *const balances[] = { "weighted", "latency", "least_inflight", NULL };
static const char *const resend_modes[] = { "no", "yes", "stateless", NULL };

#define SRV(f) offsetof(struct cfg_server, f)
#define RDS(f) offsetof(struct cfg_redis, f)
#define TEL(f) offsetof(struct cfg_telemetry, f)
#define AUT(f) offsetof(struct cfg_auth, f)
#define BCK(f) offsetof(struct cfg_backend, f)
#define KEY(f) offsetof(struct cfg_key, f)
#define MDL(f) offsetof(struct cfg_model, f)
#define TEAM(f) offsetof(struct cfg_team, f)
#define BIG INT64_MAX
#define DAY_MS (24LL * 3600 * 1000)

/* user_* (docs/users.md): the same six options on keys and on teams. */
#define USER_OPTIONS(SCOPE, AT, WHOSE)                                                             \
    { .scope = SCOPE, .name = "user_rpm", .type = T_INT, .offset = AT(users.rpm), .def = "0",      \
      .max = BIG,                                                                                  \
      .doc = "requests per minute of each end user " WHOSE " (docs/users.md); 0 = unlimited" },    \
    { .scope = SCOPE, .name = "user_input_tpm", .type = T_INT, .offset = AT(users.input_tpm),      \
      .def = "0", .max = BIG,                                                                      \
      .doc = "prompt tokens per minute of each end user " WHOSE "; 0 = unlimited" },               \
    { .scope = SCOPE, .name = "user_output_tpm", .type = T_INT, .offset = AT(users.output_tpm),    \
      .def = "0", .max = BIG,                                                                      \
      .doc = "completion tokens per minute of each end user " WHOSE "; 0 = unlimited" },           \
    { .scope = SCOPE, .name = "user_budget", .type = T_MONEY, .offset = AT(users.budget),          \
      .def = "0", .max = BIG,                                                                      \
      .doc = "USD per user_budget_period of each end user " WHOSE "; 0 = none" },                  \
    { .scope = SCOPE, .name = "user_budget_period", .type = T_ENUM,                                \
      .offset = AT(users.budget_period), .def = "month", .choices = periods,                       \
      .doc = "day | week | month | total (UTC calendar; week from Monday)" },                      \
    { .scope = SCOPE, .name = "user_max_inflight", .type = T_INT, .offset = AT(users.max_inflight), \
      .def = "0", .max = 1000000,                                                                  \
      .doc = "requests of each end user " WHOSE " open at once, across all nodes; 0 = no cap" },

const struct option cfg_options[] = {
    { .scope = SCOPE_SERVER, .name = "listen", .type = T_LISTEN, .offset = SRV(listen),
      .def = "127.0.0.1:8080", .flags = F_REPEAT,
      .doc = "address to accept clients on; repeatable; `host:port tls` serves TLS (tls_cert, tls_key)" },
    { .scope = SCOPE_SERVER, .name = "tls_cert", .type = T_PEM, .offset = SRV(tls_cert),
      .doc = "for `listen = host:port tls`: the certificate chain, server first (PEM); reread on SIGHUP" },
    { .scope = SCOPE_SERVER, .name = "tls_key", .type = T_PEM, .offset = SRV(tls_key),
      .flags = F_SECRET,
      .doc = "the private key of tls_cert (PEM); reread on SIGHUP" },
    { .scope = SCOPE_SERVER, .name = "tls_client_ca", .type = T_PEM, .offset = SRV(tls_client_ca),
      .doc = "CA certificates (PEM): clients on tls listeners must present a certificate they signed "
             "(mTLS)" },
    { .scope = SCOPE_SERVER, .name = "admin_listen", .type = T_LISTEN, .offset = SRV(admin_listen),
      .flags = F_REPEAT,
      .doc = "repeatable; when set, /metrics, /readyz and /admin/* are served only here (404 on listen)" },
    { .scope = SCOPE_SERVER, .name = "metrics_key", .type = T_DIGEST, .offset = SRV(metrics_digest),
      .flags = F_SECRET,
      .doc = "bearer key /metrics requires; absent = none" },
    { .scope = SCOPE_SERVER, .name = "workers", .type = T_INT, .offset = SRV(workers),
      .def = "1", .max = 256,
      .doc = "event-loop threads; 0 = one per core" },
    { .scope = SCOPE_SERVER, .name = "max_body_size", .type = T_SIZE, .offset = SRV(max_body_size),
      .def = "4m", .min = 1, .max = 1LL << 31,
      .doc = "larger request bodies get 413" },
    { .scope = SCOPE_SERVER, .name = "max_upload_size", .type = T_SIZE, .offset = SRV(max_upload_size),
      .def = "25m", .min = 1, .max = 1LL << 32,
      .doc = "larger multipart/form-data bodies (audio, images, files) get 413" },
    { .scope = SCOPE_SERVER, .name = "max_header_size", .type = T_SIZE, .offset = SRV(max_header_size),
      .def = "32k", .min = 1024, .max = 1 << 20,
      .doc = "larger request header sections get 413" },
    { .scope = SCOPE_SERVER, .name = "request_timeout", .type = T_DURATION, .offset = SRV(request_timeout_ms),
      .def = "10m", .min = 1, .max = DAY_MS,
      .doc = "whole-request limit towards the client" },
    { .scope = SCOPE_SERVER, .name = "header_timeout", .type = T_DURATION, .offset = SRV(header_timeout_ms),
      .def = "10s", .min = 1, .max = DAY_MS,
      .doc = "total time a client has to send its request line and headers" },
    { .scope = SCOPE_SERVER, .name = "body_timeout", .type = T_DURATION, .offset = SRV(body_timeout_ms),
      .def = "60s", .min = 1, .max = DAY_MS,
      .doc = "total time a client has to send its request body" },
    { .scope = SCOPE_SERVER, .name = "keepalive_timeout", .type = T_DURATION, .offset = SRV(keepalive_timeout_ms),
      .def = "75s", .min = 1, .max = DAY_MS,
      .doc = "idle time before a kept-alive client connection is closed" },
    { .scope = SCOPE_SERVER, .name = "send_timeout", .type = T_DURATION, .offset = SRV(send_timeout_ms),
      .def = "60s", .min = 1, .max = DAY_MS,
      .doc = "a client that reads nothing of its response for this long is disconnected" },
    { .scope = SCOPE_SERVER, .name = "shutdown_timeout", .type = T_DURATION, .offset = SRV(shutdown_timeout_ms),
      .def = "30s", .max = DAY_MS,
      .doc = "how long SIGTERM waits for in-flight requests" },
    { .scope = SCOPE_SERVER, .name = "admin_key", .type = T_DIGEST, .offset = SRV(admin_digest),
      .flags = F_SECRET,
      .doc = "bearer key for /admin/*; absent = admin API off" },
    { .scope = SCOPE_SERVER, .name = "max_attempts", .type = T_INT, .offset = SRV(max_attempts),
      .def = "3", .min = 1, .max = 10,
      .doc = "upstream attempts per request (first + retries)" },
    { .scope = SCOPE_SERVER, .name = "max_connections", .type = T_INT, .offset = SRV(max_connections),
      .def = "0", .max = 10000000,
      .doc = "client connections held at once (shared out among workers); past it new ones wait in "
             "the kernel's backlog; 0 = half the file-descriptor limit" },
    { .scope = SCOPE_SERVER, .name = "max_buffered", .type = T_SIZE, .offset = SRV(max_buffered),
      .def = "256m", .min = 1 << 20, .max = 1LL << 40,
      .doc = "request-body bytes held in memory by all connections together; past it a new body "
             "gets 503 with Retry-After (bodies over 64k may use 7/8 of it)" },
    { .scope = SCOPE_SERVER, .name = "max_buffered_per_key", .type = T_SIZE,
      .offset = SRV(max_buffered_per_key), .def = "0", .max = 1LL << 40,
      .doc = "what the request bodies of one API key may hold of max_buffered together (one body "
             "alone may be larger); past it that key gets 503 with Retry-After; 0 = max_buffered / 4" },
    { .scope = SCOPE_SERVER, .name = "strict_permissions", .type = T_BOOL, .offset = SRV(strict_permissions),
      .def = "off",
      .doc = "on: a config or secret file others may write, or read while it holds a plain secret, is "
             "an error instead of a warning" },
    { .scope = SCOPE_SERVER, .name = "max_model_labels", .type = T_INT, .offset = SRV(max_model_labels),
      .def = "100", .max = 100000,
      .doc = "distinct model names from clients that become metric labels (models = * backends); "
             "later ones are counted as other" },
    { .scope = SCOPE_SERVER, .name = "max_user_labels", .type = T_INT, .offset = SRV(max_user_labels),
      .def = "0", .max = 100000,
      .doc = "end users with metrics of their own (sluice_user_*: the first this many seen; "
             "later ones are counted as other); 0 = no per-user metrics" },
    { .scope = SCOPE_SERVER, .name = "require_prices", .type = T_BOOL, .offset = SRV(require_prices),
      .def = "off",
      .doc = "on: every model a backend lists needs a [model] section with input and output prices" },
    { .scope = SCOPE_SERVER, .name = "access_log", .type = T_BOOL, .offset = SRV(access_log),
      .def = "on",
      .doc = "one line per request on stderr" },
    { .scope = SCOPE_SERVER, .name = "access_log_format", .type = T_ENUM, .offset = SRV(access_log_format),
      .def = "text", .choices = access_formats,
      .doc = "text (key=value after the time and level) or json (one object per line)" },
    { .scope = SCOPE_SERVER, .name = "state_dir", .type = T_STRING, .offset = SRV(state_dir),
      .doc = "a directory of sluice's own (mode 0700) where runtime keys live when there is no "
             "[redis] (docs/keys.md): each change written to a new file, fsync'd and renamed into "
             "place; absent = runtime keys only with [redis]" },
    { .scope = SCOPE_SERVER, .name = "audit_log", .type = T_STRING, .offset = SRV(audit_log),
      .doc = "a file that gets one JSON line per change made through the admin API (time, who, "
             "action, key, fields changed; never a secret); absent = the log line only" },
    { .scope = SCOPE_SERVER, .name = "usage_log", .type = T_STRING, .offset = SRV(usage_log),
      .doc = "a file that gets one JSON record per finished request, appended by a thread of its own; "
             "reopened on SIGHUP and SIGUSR1 (logrotate)" },
    { .scope = SCOPE_SERVER, .name = "admin_hosts", .type = T_MODELS, .offset = SRV(admin_hosts),
      .def = "localhost",
      .doc = "Host names the operator endpoints (/admin/*, /metrics, /readyz) answer; an IP "
             "address always is; others get 421 (a web page that rebinds its DNS name to this "
             "node cannot read them); * = any" },
    { .scope = SCOPE_SERVER, .name = "passthrough_paths", .type = T_MODELS,
      .offset = SRV(passthrough_paths),
      .doc = "/v1 paths sluice has no usage reader for (each with what is below it) that keys with "
             "token limits, quotas or budgets may still call, charged the request_price of the "
             "model the body names; other such paths get 404 for those keys" },
    { .scope = SCOPE_SERVER, .name = "unpriced_models", .type = T_ENUM,
      .offset = SRV(unpriced_models), .def = "deny", .choices = unpriced_choices,
      .doc = "deny: a key or team with a budget may call only models priced for the call ([model "
             "NAME] or [model NAME*] input_price and output_price, or request_price), others get "
             "403 model_not_allowed; allow: they cost 0" },
    { .scope = SCOPE_SERVER, .name = "pid_file", .type = T_STRING, .offset = SRV(pid_file),
      .doc = "a file that holds sluice's PID while it runs (written at start, removed at exit), for "
             "`kill -HUP $(cat FILE)` outside systemd; a change takes effect at the next restart" },
    { .scope = SCOPE_SERVER, .name = "log_level", .type = T_ENUM, .offset = SRV(log_level),
      .def = "info", .choices = log_levels,
      .doc = "least severe level logged" },
    { .scope = SCOPE_SERVER, .name = "balance", .type = T_ENUM, .offset = SRV(balance),
      .def = "weighted", .choices = balances,
      .doc = "how a backend is chosen within a priority group: weighted (smooth weighted round-robin), "
             "latency (peak-EWMA time to first byte, two random choices by weight) or least_inflight "
             "(fewest open requests per unit of weight); docs/pool.md" },
    { .scope = SCOPE_SERVER, .name = "balance_decay", .type = T_DURATION, .offset = SRV(balance_decay_ms),
      .def = "10s", .min = 100, .max = DAY_MS,
      .doc = "balance = latency: the time over which a backend's latency estimate fades when no "
             "answer refreshes it, so a slow backend that recovered is tried again" },
    { .scope = SCOPE_REDIS, .name = "url", .type = T_STRING, .offset = RDS(url),
      .def = "redis://127.0.0.1:6379/0", .flags = F_SECRET,
      .doc = "redis://[user:password@]host:port/db, rediss://… (TLS), "
             "redis+sentinel://[user:password@]s1:26379,s2:26379/MASTER[/db] (the master found and "
             "followed through Sentinel), redis+cluster://[user:password@]n1:6379,n2:6379 (Redis "
             "Cluster), or unix:///path; no [redis] section = limits kept in-process; docs/operations.md" },
    { .scope = SCOPE_REDIS, .name = "ca_file", .type = T_PEM, .offset = RDS(ca_file),
      .doc = "rediss: the CA certificates (PEM) the server's certificate is checked against; "
             "absent = the system's trust store" },
    { .scope = SCOPE_REDIS, .name = "client_cert", .type = T_PEM, .offset = RDS(client_cert),
      .doc = "rediss: a client certificate (PEM) for servers that require one (mutual TLS)" },
    { .scope = SCOPE_REDIS, .name = "client_key", .type = T_PEM, .offset = RDS(client_key),
      .doc = "rediss: the private key of client_cert (PEM)" },
    { .scope = SCOPE_REDIS, .name = "tls_verify", .type = T_BOOL, .offset = RDS(tls_verify),
      .def = "yes",
      .doc = "rediss: check the server's certificate and its name (the URL's host); no = encrypt "
             "without knowing who answers" },
    { .scope = SCOPE_REDIS, .name = "timeout", .type = T_DURATION, .offset = RDS(timeout_ms),
      .def = "100ms", .min = 1, .max = 60000,
      .doc = "longest wait for one Redis call" },
    { .scope = SCOPE_REDIS, .name = "on_error", .type = T_ENUM, .offset = RDS(on_error),
      .def = "local", .choices = on_error_modes,
      .doc = "what requests get while Redis is down" },
    { .scope = SCOPE_TELEMETRY, .name = "otlp_endpoint", .type = T_URL, .offset = TEL(otlp_endpoint),
      .flags = F_REQUIRED,
      .doc = "an OTLP/HTTP collector's base URL (http://127.0.0.1:4318); traces are posted to "
             "/v1/traces as JSON" },
    { .scope = SCOPE_TELEMETRY, .name = "sample_ratio", .type = T_RATIO, .offset = TEL(sample_ppm),
      .def = "1", .max = 1000000,
      .doc = "share of traces started here that are recorded (0 to 1); a client's traceparent decides "
             "for its own" },
    { .scope = SCOPE_TELEMETRY, .name = "service_name", .type = T_STRING, .offset = TEL(service_name),
      .def = "sluice",
      .doc = "the service.name resource attribute" },
    { .scope = SCOPE_TELEMETRY, .name = "max_queue", .type = T_INT, .offset = TEL(max_queue),
      .def = "2048", .min = 1, .max = 1000000,
      .doc = "spans each worker holds for export; past it new ones are dropped and counted "
             "(sluice_trace_spans_dropped_total)" },
    { .scope = SCOPE_TELEMETRY, .name = "flush_interval", .type = T_DURATION, .offset = TEL(flush_ms),
      .def = "1s", .min = 10, .max = 60000,
      .doc = "the longest a span waits before its batch is posted (512 spans go at once)" },
    { .scope = SCOPE_AUTH, .name = "jwks", .type = T_STRING, .offset = AUT(jwks),
      .flags = F_REQUIRED,
      .doc = "the identity provider's signing keys: a JWKS file (read at start and on SIGHUP) or an "
             "https:// URL (fetched at start, every jwks_refresh, and when a token names an unknown "
             "key id; the last good set is kept while it cannot be fetched) (docs/auth.md)" },
    { .scope = SCOPE_AUTH, .name = "ca_file", .type = T_STRING, .offset = AUT(ca_file),
      .doc = "PEM CA certificates an https JWKS URL is checked against; absent = the system's" },
    { .scope = SCOPE_AUTH, .name = "jwks_refresh", .type = T_DURATION, .offset = AUT(jwks_refresh_ms),
      .def = "10m", .min = 1000, .max = 86400000,
      .doc = "how often a JWKS URL is fetched again" },
    { .scope = SCOPE_AUTH, .name = "issuer", .type = T_STRING, .offset = AUT(issuer),
      .doc = "the iss a token must have; absent = not checked" },
    { .scope = SCOPE_AUTH, .name = "audience", .type = T_STRING, .offset = AUT(audience),
      .doc = "a value a token's aud must hold; absent = not checked" },
    { .scope = SCOPE_AUTH, .name = "algorithms", .type = T_MODELS, .offset = AUT(algorithms),
      .def = "RS256, ES256, EdDSA",
      .doc = "signature algorithms accepted: RS256, ES256, EdDSA (none and HMAC never are)" },
    { .scope = SCOPE_AUTH, .name = "leeway", .type = T_DURATION, .offset = AUT(leeway_ms),
      .def = "30s", .max = 600000,
      .doc = "clock skew allowed when exp and nbf are checked" },
    { .scope = SCOPE_AUTH, .name = "user_claim", .type = T_STRING, .offset = AUT(user_claim),
      .def = "sub",
      .doc = "the claim that names the end user: a string, an end user id as docs/users.md says "
             "(1 to 128 characters)" },
    { .scope = SCOPE_AUTH, .name = "team_claim", .type = T_STRING, .offset = AUT(team_claim),
      .doc = "a claim (a string or an array of strings) whose first value naming a [team] puts the "
             "user's requests in that team; absent = the key_profile's team" },
    { .scope = SCOPE_AUTH, .name = "key_profile", .type = T_STRING, .offset = AUT(key_profile),
      .flags = F_REQUIRED,
      .doc = "the [key NAME] whose models and limits (user_* included) JWT users get; its own "
             "secret keeps working as an API key" },
    { .scope = SCOPE_BACKEND, .name = "url", .type = T_URL, .offset = BCK(url),
      .flags = F_REQUIRED,
      .doc = "base URL; the request path after /v1 is appended" },
    { .scope = SCOPE_BACKEND, .name = "type", .type = T_ENUM, .offset = BCK(type),
      .def = "openai", .choices = backend_types,
      .doc = "openai (Authorization: Bearer), azure (api-key header, deployment path) or "
             "anthropic (x-api-key and anthropic-version headers; the Messages API)" },
    { .scope = SCOPE_BACKEND, .name = "api_key", .type = T_STRING, .offset = BCK(api_key),
      .flags = F_SECRET,
      .doc = "the backend's credential; use env:NAME or file:/path" },
    { .scope = SCOPE_BACKEND, .name = "api_version", .type = T_STRING, .offset = BCK(api_version),
      .doc = "azure only: api-version query parameter" },
    { .scope = SCOPE_BACKEND, .name = "deployment", .type = T_STRING, .offset = BCK(deployment),
      .doc = "azure only: deployment name; default = the request's model" },
    { .scope = SCOPE_BACKEND, .name = "models", .type = T_MODELS, .offset = BCK(models),
      .def = "*",
      .doc = "models this backend serves; * = any" },
    { .scope = SCOPE_BACKEND, .name = "priority", .type = T_INT, .offset = BCK(priority),
      .def = "1", .max = 1000,
      .doc = "lower number = tried first" },
    { .scope = SCOPE_BACKEND, .name = "weight", .type = T_INT, .offset = BCK(weight),
      .def = "1", .min = 1, .max = 1000,
      .doc = "share of traffic within its priority group" },
    { .scope = SCOPE_BACKEND, .name = "connect_timeout", .type = T_DURATION, .offset = BCK(connect_timeout_ms),
      .def = "2s", .min = 1, .max = 600000,
      .doc = "TCP+TLS connect limit" },
    { .scope = SCOPE_BACKEND, .name = "timeout", .type = T_DURATION, .offset = BCK(timeout_ms),
      .def = "10m", .min = 1, .max = DAY_MS,
      .doc = "the whole response, streams included" },
    { .scope = SCOPE_BACKEND, .name = "first_byte_timeout", .type = T_DURATION, .offset = BCK(first_byte_timeout_ms),
      .def = "60s", .min = 1, .max = DAY_MS,
      .doc = "request sent -> response head: when it passes and nothing reached the client, the "
             "attempt fails over as a connect error does (timeout stays the whole-response limit); "
             "a non-streamed answer's head comes with the whole answer, so keep it above the longest "
             "non-streamed generation" },
    { .scope = SCOPE_BACKEND, .name = "first_token_timeout", .type = T_DURATION, .offset = BCK(first_token_timeout_ms),
      .def = "0", .min = 0, .max = DAY_MS,
      .doc = "streams: response head -> the first event with output (content, a tool call, a refusal "
             "or reasoning); while it runs sluice holds the head back, so a slow first token fails "
             "over to the next backend or fallback before the client has a byte; 0 = off (the head "
             "is relayed at once)" },
    { .scope = SCOPE_BACKEND, .name = "max_retry_wait", .type = T_DURATION, .offset = BCK(max_retry_wait_ms),
      .def = "5s", .min = 0, .max = 600000,
      .doc = "a 429 or 5xx whose Retry-After is at most this is waited out, and the request sent to "
             "the same backend once more, before a fallback model is tried (within the client's "
             "x-stainless-timeout and request_timeout); 0 = never wait" },
    { .scope = SCOPE_BACKEND, .name = "breaker_failures", .type = T_INT, .offset = BCK(breaker_failures),
      .def = "3", .min = 1, .max = 10000,
      .doc = "failures within breaker_window that open the breaker" },
    { .scope = SCOPE_BACKEND, .name = "breaker_window", .type = T_DURATION, .offset = BCK(breaker_window_ms),
      .def = "10s", .min = 1, .max = DAY_MS,
      .doc = "window in which failures are counted" },
    { .scope = SCOPE_BACKEND, .name = "breaker_trip", .type = T_DURATION, .offset = BCK(breaker_trip_ms),
      .def = "30s", .min = 1, .max = DAY_MS,
      .doc = "how long an open breaker stays open" },
    { .scope = SCOPE_BACKEND, .name = "breaker_status", .type = T_STATUS, .offset = BCK(breaker_status),
      .def = "401, 403, 429, 500-599",
      .doc = "statuses that count as failures and go to the next backend (401/403: sluice's own 502)" },
    { .scope = SCOPE_BACKEND, .name = "breaker_retry_after", .type = T_BOOL, .offset = BCK(breaker_retry_after),
      .def = "yes",
      .doc = "an upstream Retry-After sets the open time instead" },
    { .scope = SCOPE_BACKEND, .name = "stream_idle_timeout", .type = T_DURATION, .offset = BCK(stream_idle_timeout_ms),
      .def = "60s", .min = 1, .max = DAY_MS,
      .doc = "a stream that sends no byte for this long ends with an error event; counts for the breaker" },
    { .scope = SCOPE_BACKEND, .name = "keepalive_timeout", .type = T_DURATION, .offset = BCK(keepalive_timeout_ms),
      .def = "4s", .min = 1000, .max = DAY_MS,
      .doc = "an idle upstream connection is not reused after this (whole seconds); keep it below "
             "the upstream's own keep-alive timeout" },
    { .scope = SCOPE_BACKEND, .name = "forward_headers", .type = T_HEADERS, .offset = BCK(forward_headers),
      .doc = "client headers forwarded beyond the allow-list of docs/http.md (x-foo, x-team-*); "
             "credentials, cookies, OpenAI-Organization/-Project and X-Forwarded-* never are" },
    { .scope = SCOPE_BACKEND, .name = "organization", .type = T_STRING, .offset = BCK(organization),
      .doc = "OpenAI-Organization sent upstream (the client's is never forwarded)" },
    { .scope = SCOPE_BACKEND, .name = "project", .type = T_STRING, .offset = BCK(project),
      .doc = "OpenAI-Project sent upstream (the client's is never forwarded)" },
    { .scope = SCOPE_BACKEND, .name = "models_cache", .type = T_DURATION, .offset = BCK(models_cache_ms),
      .def = "5m", .min = 1000, .max = DAY_MS,
      .doc = "with models = *: how long the upstream's own GET /models list is kept for GET /v1/models" },
    { .scope = SCOPE_BACKEND, .name = "stateful", .type = T_BOOL, .offset = BCK(stateful),
      .def = "no",
      .doc = "yes: files, batches, uploads, vector stores, stored responses and calls without a model "
             "go here (else to the first backend by priority); one backend at most" },
    { .scope = SCOPE_BACKEND, .name = "ca_file", .type = T_PEM, .offset = BCK(ca_file),
      .doc = "https: CA certificates (PEM) to trust for this backend instead of the system's" },
    { .scope = SCOPE_BACKEND, .name = "client_cert", .type = T_PEM, .offset = BCK(client_cert),
      .doc = "https: a client certificate (PEM) presented to the backend (upstream mTLS)" },
    { .scope = SCOPE_BACKEND, .name = "client_key", .type = T_PEM, .offset = BCK(client_key),
      .flags = F_SECRET,
      .doc = "the private key of client_cert (PEM)" },
    { .scope = SCOPE_BACKEND, .name = "tls_verify", .type = T_BOOL, .offset = BCK(tls_verify),
      .def = "yes",
      .doc = "no: the backend's certificate and name are not checked (logged as a warning at every "
             "load; for tests only)" },
    { .scope = SCOPE_BACKEND, .name = "resend_unanswered", .type = T_ENUM, .offset = BCK(resend_unanswered),
      .def = "stateless", .choices = resend_modes,
      .doc = "a request sent but never answered (the connection closed or reset before any response "
             "byte): stateless = sent once more when its path is stateless inference (chat "
             "completions, completions, embeddings, responses with store false, moderations, audio); "
             "yes = sent again whatever the path, each time a counted attempt; no = 502 (the "
             "upstream may have read it)" },
    { .scope = SCOPE_BACKEND, .name = "prefill", .type = T_BOOL, .offset = BCK(prefill),
      .def = "no",
      .doc = "yes: this backend can continue an assistant message it is given (assistant prefill, "
             "vLLM's continue_final_message): a chat stream cut after output was relayed continues "
             "here, and the client receives one whole answer (docs/pool.md)" },
    { .scope = SCOPE_BACKEND, .name = "rpm", .type = T_INT, .offset = BCK(rpm),
      .def = "0", .max = BIG,
      .doc = "the deployment's own requests per minute: at it, the backend is skipped (shared by all "
             "nodes with [redis]); 0 = unknown" },
    { .scope = SCOPE_BACKEND, .name = "tpm", .type = T_INT, .offset = BCK(tpm),
      .def = "0", .max = BIG,
      .doc = "the deployment's own tokens per minute (prompt + completion; the output a request may "
             "generate is reserved); 0 = unknown" },
    { .scope = SCOPE_BACKEND, .name = "max_inflight", .type = T_INT, .offset = BCK(max_inflight),
      .def = "0", .max = 1000000,
      .doc = "requests this node has open at the backend at once (streams included); at it, the "
             "backend is skipped; 0 = no cap" },
    { .scope = SCOPE_MODEL, .name = "upstream", .type = T_STRING, .offset = MDL(upstream),
      .doc = "the model name sent upstream (the body's model is rewritten); unset = NAME" },
    { .scope = SCOPE_MODEL, .name = "fallbacks", .type = T_MODELS, .offset = MDL(fallbacks),
      .doc = "models tried in order when every backend of this one is exhausted (docs/pool.md)" },
    { .scope = SCOPE_MODEL, .name = "context_fallbacks", .type = T_MODELS, .offset = MDL(context_fallbacks),
      .doc = "models tried in order when the upstream answers context_length_exceeded" },
    { .scope = SCOPE_MODEL, .name = "input_price", .type = T_MONEY, .offset = MDL(input_price),
      .max = BIG,
      .doc = "USD per 1M prompt tokens" },
    { .scope = SCOPE_MODEL, .name = "cached_input_price", .type = T_MONEY, .offset = MDL(cached_input_price),
      .max = BIG,
      .doc = "USD per 1M prompt tokens the upstream reports as cached; unset = input_price" },
    { .scope = SCOPE_MODEL, .name = "cache_write_price", .type = T_MONEY, .offset = MDL(cache_write_price),
      .max = BIG,
      .doc = "USD per 1M prompt tokens written to the prompt cache (Anthropic's "
             "cache_creation_input_tokens); unset = input_price" },
    { .scope = SCOPE_MODEL, .name = "output_price", .type = T_MONEY, .offset = MDL(output_price),
      .max = BIG,
      .doc = "USD per 1M completion tokens, reasoning tokens included" },
    { .scope = SCOPE_MODEL, .name = "request_price", .type = T_MONEY, .offset = MDL(request_price),
      .max = BIG,
      .doc = "USD per unit of an endpoint without token usage: an image (n of them per call), a "
             "transcription, a moderation, a passthrough_paths call; speech is charged per 1M "
             "input characters at input_price" },
    { .scope = SCOPE_KEY, .name = "key", .type = T_DIGEST, .offset = KEY(digest),
      .flags = F_REQUIRED | F_SECRET,
      .doc = "sha256:<64 hex> of the client key (a plain key is accepted with a warning)" },
    { .scope = SCOPE_KEY, .name = "rpm", .type = T_INT, .offset = KEY(rpm),
      .def = "0", .max = BIG,
      .doc = "requests per minute; 0 = unlimited" },
    { .scope = SCOPE_KEY, .name = "input_tpm", .type = T_INT, .offset = KEY(input_tpm),
      .def = "0", .max = BIG,
      .doc = "prompt tokens per minute; 0 = unlimited" },
    { .scope = SCOPE_KEY, .name = "output_tpm", .type = T_INT, .offset = KEY(output_tpm),
      .def = "0", .max = BIG,
      .doc = "completion tokens per minute; 0 = unlimited" },
    { .scope = SCOPE_KEY, .name = "models", .type = T_MODELS, .offset = KEY(models),
      .def = "*",
      .doc = "models this key may call; * = any" },
    { .scope = SCOPE_KEY, .name = "quota", .type = T_INT, .offset = KEY(quota),
      .def = "0", .max = BIG,
      .doc = "total tokens per quota_period; 0 = none" },
    { .scope = SCOPE_KEY, .name = "quota_period", .type = T_ENUM, .offset = KEY(quota_period),
      .def = "month", .choices = periods,
      .doc = "day | week | month | total (UTC calendar; week from Monday)" },
    { .scope = SCOPE_KEY, .name = "max_prompt_tokens", .type = T_INT, .offset = KEY(max_prompt_tokens),
      .def = "0", .max = BIG,
      .doc = "per-request prompt cap (413 above it); 0 = none" },
    { .scope = SCOPE_KEY, .name = "mode", .type = T_ENUM, .offset = KEY(mode),
      .def = "enforce", .choices = key_modes,
      .doc = "shadow: limits, quota, budgets and prompt cap are computed and reported but never refuse" },
    { .scope = SCOPE_KEY, .name = "team", .type = T_STRING, .offset = KEY(team_name),
      .doc = "a [team NAME] whose limits this key also counts against" },
    { .scope = SCOPE_KEY, .name = "budget", .type = T_MONEY, .offset = KEY(budget),
      .def = "0", .max = BIG,
      .doc = "USD per budget_period (docs/budgets.md); 0 = none" },
    { .scope = SCOPE_KEY, .name = "budget_period", .type = T_ENUM, .offset = KEY(budget_period),
      .def = "month", .choices = periods,
      .doc = "day | week | month | total (UTC calendar; week from Monday)" },
    { .scope = SCOPE_KEY, .name = "reserve_output_tokens", .type = T_INT, .offset = KEY(reserve_output_tokens),
      .def = "1000", .max = 10000000,
      .doc = "output tokens a budget reserves when the request sets no max_tokens" },
    { .scope = SCOPE_KEY, .name = "max_inflight", .type = T_INT, .offset = KEY(max_inflight),
      .def = "0", .max = 1000000,
      .doc = "requests of this key open at once, streams included, across all nodes (docs/limits.md); "
             "0 = no cap" },
    { .scope = SCOPE_KEY, .name = "spike_arrest", .type = T_RATE, .offset = KEY(spike_per_min),
      .def = "0",
      .doc = "smooths bursts: requests of this key at least 1/rate apart, across all nodes "
             "(10/s, 300/m; a GCRA in the same atomic call as every limit); 0 = none; "
             "docs/limits.md" },
    { .scope = SCOPE_KEY, .name = "spike_burst", .type = T_INT, .offset = KEY(spike_burst),
      .def = "0", .max = 1000000,
      .doc = "spike_arrest: requests allowed ahead of that spacing (a burst of spike_burst + 1)" },
    { .scope = SCOPE_KEY, .name = "queue_timeout", .type = T_DURATION, .offset = KEY(queue_timeout_ms),
      .def = "0s", .max = 3600000,
      .doc = "a request refused on requests, tokens or max_inflight waits up to this long for room "
             "(FIFO per key), instead of 429; 0 = never waits" },
    { .scope = SCOPE_KEY, .name = "expires_at", .type = T_TIME, .offset = KEY(expires_at),
      .doc = "an RFC 3339 time (2027-01-01T00:00:00Z); from then on the key gets 401 "
             "invalid_api_key, \"key expired\"; absent = never" },
    { .scope = SCOPE_KEY, .name = "trust_user", .type = T_ENUM, .offset = KEY(trust_user),
      .def = "no", .choices = trust_user_choices,
      .doc = "where the end user of a request comes from: no; header (x-sluice-user); body "
             "(safety_identifier or user, the Messages API's metadata.user_id); logged as user=" },
    { .scope = SCOPE_KEY, .name = "require_user", .type = T_BOOL, .offset = KEY(require_user),
      .def = "no",
      .doc = "yes: a request without an end user (trust_user) gets 400" },
    USER_OPTIONS(SCOPE_KEY, KEY, "of this key")
    { .scope = SCOPE_TEAM, .name = "rpm", .type = T_INT, .offset = TEAM(rpm),
      .def = "0", .max = BIG,
      .doc = "requests per minute of all the team's keys together; 0 = unlimited" },
    { .scope = SCOPE_TEAM, .name = "input_tpm", .type = T_INT, .offset = TEAM(input_tpm),
      .def = "0", .max = BIG,
      .doc = "prompt tokens per minute, all keys together; 0 = unlimited" },
    { .scope = SCOPE_TEAM, .name = "output_tpm", .type = T_INT, .offset = TEAM(output_tpm),
      .def = "0", .max = BIG,
      .doc = "completion tokens per minute, all keys together; 0 = unlimited" },
    { .scope = SCOPE_TEAM, .name = "budget", .type = T_MONEY, .offset = TEAM(budget),
      .def = "0", .max = BIG,
      .doc = "USD per budget_period, all keys together; 0 = none" },
    { .scope = SCOPE_TEAM, .name = "budget_period", .type = T_ENUM, .offset = TEAM(budget_period),
      .def = "month", .choices = periods,
      .doc = "day | week | month | total" },
    { .scope = SCOPE_TEAM, .name = "max_inflight", .type = T_INT, .offset = TEAM(max_inflight),
      .def = "0", .max = 1000000,
      .doc = "requests of all the team's keys open at once, across all nodes; 0 = no cap" },
    { .scope = SCOPE_TEAM, .name = "spike_arrest", .type = T_RATE, .offset = TEAM(spike_per_min),
      .def = "0",
      .doc = "requests of all the team's keys at least 1/rate apart (10/s, 300/m); 0 = none" },
    { .scope = SCOPE_TEAM, .name = "spike_burst", .type = T_INT, .offset = TEAM(spike_burst),
      .def = "0", .max = 1000000,
      .doc = "the team's spike_arrest: requests allowed ahead of that spacing" },
    { .scope = SCOPE_TEAM, .name = "admin_key", .type = T_DIGEST, .offset = TEAM(admin_digest),
      .flags = F_SECRET,
      .doc = "sha256:<64 hex> of a key that may manage this team's runtime keys through "
             "/admin/keys (docs/keys.md), and give them no more than the team has; absent = none" },
    { .scope = SCOPE_TEAM, .name = "share_resources", .type = T_BOOL, .offset = TEAM(share_resources),
      .def = "no",
      .doc = "yes: the stored resources (files, batches, responses...) one of the team's keys "
             "creates belong to the team, and its other keys may use them; no: to that key alone" },
    USER_OPTIONS(SCOPE_TEAM, TEAM, "of the team, all its keys together")
};
const int cfg_noptions = (int)SL_ARRAY_LEN(cfg_options);
_Static_assert(SL_ARRAY_LEN(cfg_options) <= CFG_MAX_OPTIONS, "raise CFG_MAX_OPTIONS");

/* The page's prose: what the option table cannot say. */
static const char reference_intro[] =
    "# Configuration reference\n"
    "\n"
    "sluice reads one INI file (`sluice -c FILE`, default `/etc/sluice/sluice.conf`).\n"
    "`sluice -t -c FILE` checks it and prints every problem as `file:line: message`,\n"
    "exiting 0 or 1. This page is what `sluice -D` prints: it comes from the option\n"
    "table in `src/config_options.c`, and a test keeps the copy in docs/ in step.\n"
    "\n"
    "## Syntax\n"
    "\n"
    "- Sections: `[server]`, `[redis]`, `[backend NAME]` (one per upstream\n"
    "  deployment), `[key NAME]` (one per client key), `[team NAME]` (limits and a\n"
    "  budget shared by the keys that name it) and `[model NAME]` (a model's\n"
    "  prices, docs/budgets.md; its upstream name and fallbacks, docs/pool.md);\n"
    "  `[telemetry]` sends traces to an OTLP collector (docs/operations.md).\n"
    "  `[auth]` accepts JWT bearer tokens from an identity provider (docs/auth.md).\n"
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
    "  The file must be a regular file (or a link to one) whose first line is at\n"
    "  most 64 KiB; a device, FIFO or socket is an error, as it is for the PEM\n"
    "  paths (`tls_cert`, `tls_key`, `ca_file`, ...).\n"
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
               cfg_scope_names[s]);
        for (int i = 0; i < cfg_noptions; i++) {
            const struct option *o = &cfg_options[i];
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
                snprintf(type, sizeof(type), "%s", cfg_type_names[o->type]);
            }
            printf("| `%s` | %s | %s | %s |\n", o->name, type,
                   (o->flags & F_REQUIRED) ? "required" : o->def ? o->def : "unset", o->doc);
        }
    }
}
