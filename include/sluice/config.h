/* The configuration: one INI file parsed into an immutable struct config.
 * Every option is declared once in the table in config.c; parsing, defaults,
 * validation, `sluice -t` and the option reference (`sluice -D`) come from it.
 * A loaded config is never modified; reload builds a new one and swaps it. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#define CFG_NAME_MAX 64 /* [backend NAME] and [key NAME]: longest name */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/util.h"

struct option;

enum backend_type { BACKEND_OPENAI, BACKEND_AZURE, BACKEND_ANTHROPIC };
/* Where a key's requests name their end user (enduser.h). */
enum trust_user { TRUST_USER_NO, TRUST_USER_HEADER, TRUST_USER_BODY };
enum redis_on_error { REDIS_ON_ERROR_LOCAL, REDIS_ON_ERROR_ALLOW, REDIS_ON_ERROR_DENY };
/* Calendar periods of quotas and budgets, UTC; week is ISO (from Monday). The
 * numbers are also lua/limits.lua's. */
enum quota_period {
    QUOTA_PERIOD_NONE,
    QUOTA_PERIOD_DAY,
    QUOTA_PERIOD_MONTH,
    QUOTA_PERIOD_TOTAL,
    QUOTA_PERIOD_WEEK,
};
enum key_mode { KEY_MODE_ENFORCE, KEY_MODE_SHADOW };
/* How the pool chooses within a priority group (docs/pool.md, "Balancing"). */
enum balance { BALANCE_WEIGHTED, BALANCE_LATENCY, BALANCE_LEAST_INFLIGHT };
/* resend_unanswered: never, always (within max_attempts), or once for stateless inference. */
enum resend { RESEND_NO, RESEND_YES, RESEND_STATELESS };

struct cfg_listen {
    char host[64];
    int port;
    bool tls; /* `host:port tls`: TLS with [server] tls_cert and tls_key */
};

struct cfg_listens {
    struct cfg_listen *v;
    int n;
};

/* A model allow-list: `*` means any. */
struct cfg_models {
    bool any;
    int n;
    char **names;
};

/* Set of HTTP statuses 100..599, for breaker_status. */
struct cfg_statuses {
    uint64_t bits[10];
};

struct cfg_server {
    struct cfg_listens listen;
    struct cfg_listens admin_listen; /* n > 0: the operator endpoints only there */
    bool metrics_protected;
    uint8_t metrics_digest[32];
    int64_t workers;
    int64_t max_body_size;
    int64_t max_upload_size;
    int64_t max_header_size;
    int64_t request_timeout_ms;
    int64_t header_timeout_ms;
    int64_t body_timeout_ms;
    int64_t keepalive_timeout_ms;
    int64_t send_timeout_ms;
    int64_t shutdown_timeout_ms;
    bool admin_enabled;
    uint8_t admin_digest[32];
    int64_t max_attempts;
    int64_t max_model_labels;
    int64_t max_user_labels; /* end users with metrics of their own; 0 = none */
    bool require_prices;
    int64_t max_connections; /* 0: sized from the file-descriptor limit */
    int64_t max_buffered;
    int64_t max_buffered_per_key; /* one key's share of it; 0 = max_buffered / 4 */
    bool access_log;
    int access_log_format; /* enum access_format (usage.h) */
    char *usage_log;       /* path of the usage log (usage.h); NULL: none */
    char *state_dir;       /* runtime keys without Redis (keys.h); NULL: none */
    char *audit_log;       /* one JSON line per admin change; NULL: none */
    bool strict_permissions;
    int log_level; /* enum log_level */
    int balance;   /* enum balance */
    int64_t balance_decay_ms; /* latency: how fast an unrefreshed estimate fades */
    char *tls_cert, *tls_key, *tls_client_ca; /* paths of PEM files */
    char *pid_file;        /* holds the PID while sluice runs; NULL: none */
    struct cfg_models passthrough_paths; /* /v1 paths without a reader that accounted keys may call */
    int unpriced_models;   /* 1 = allow: a budgeted key may call a model without a price */
    struct cfg_models admin_hosts; /* Host names the operator endpoints answer (IP literals always) */
};

/* [telemetry]: traces over OTLP/HTTP (telemetry.h). */
struct cfg_telemetry {
    bool enabled;          /* the section is there */
    char *otlp_endpoint;   /* the collector's base URL; /v1/traces is appended */
    int64_t sample_ppm;    /* traces started here that are sampled, per million */
    char *service_name;
    int64_t max_queue;     /* spans waiting per worker; past it they are dropped */
    int64_t flush_ms;
};

/* [auth]: JWT bearer tokens from an identity provider (jwks.h, docs/auth.md). */
struct cfg_auth {
    bool enabled;         /* the section is there */
    char *jwks;           /* a file's path, or an https:// URL */
    char *ca_file;        /* trust for an https JWKS; NULL: the system's */
    int64_t jwks_refresh_ms;
    char *issuer, *audience; /* NULL: not checked */
    struct cfg_models algorithms;
    int algs;             /* the same as jwt.h bits */
    int64_t leeway_ms;
    char *user_claim, *team_claim;
    char *key_profile;
    const struct cfg_key *profile; /* the [key] it names */
};

struct cfg_redis {
    bool enabled; /* false: no [redis] section, limits kept in-process */
    char *url;
    int64_t timeout_ms;
    enum redis_on_error on_error;
    char *ca_file, *client_cert, *client_key; /* rediss:// (redis_client.h) */
    bool tls_verify;
};

struct cfg_backend {
    char *name;
    int line;
    char *url; /* without trailing slash */
    enum backend_type type;
    char *api_key; /* secret: never logged */
    char *api_version;
    char *deployment;
    struct cfg_models models;
    int64_t priority;
    int64_t weight;
    int64_t connect_timeout_ms;
    int64_t timeout_ms;
    int64_t first_byte_timeout_ms; /* request sent -> response head; past it, fail over */
    int64_t first_token_timeout_ms; /* streams: head -> first output event; 0 = off */
    int64_t max_retry_wait_ms;     /* a Retry-After up to this is waited out on the same backend */
    int64_t breaker_failures;
    int64_t breaker_window_ms;
    int64_t breaker_trip_ms;
    struct cfg_statuses breaker_status;
    bool breaker_retry_after;
    int64_t stream_idle_timeout_ms; /* a relayed stream silent this long is ended */
    int64_t keepalive_timeout_ms;   /* idle upstream connections are not reused after this */
    struct cfg_models forward_headers; /* client headers forwarded beyond the allow-list */
    char *organization, *project;      /* OpenAI-Organization / OpenAI-Project sent upstream */
    bool stateful;                     /* stored resources and model-less calls go here */
    int64_t models_cache_ms;           /* models = *: how long the upstream's list is kept */
    int resend_unanswered;        /* enum resend: may a request sent but not answered go again */
    bool prefill;                 /* continues a given assistant message (a cut stream's rescue) */
    int64_t rpm, tpm;     /* the deployment's own windows; 0 = unknown (docs/pool.md, "Capacity") */
    int64_t max_inflight; /* requests this node has open at it at once; 0 = no cap */
    char *ca_file;        /* https: the CAs to trust instead of the system's (PEM path) */
    char *client_cert, *client_key; /* https: upstream mTLS (PEM paths) */
    bool tls_verify;      /* no: the upstream's certificate is not checked (warned) */
};

/* [model NAME]: a name clients may call, what it is called upstream, where
 * to fall back, and what it costs. Prices are micro-dollars per 1M tokens
 * (so $2.50 is 2500000); -1 where the file gives none. */
struct cfg_model {
    char *name; /* first, as in every named section */
    int line;
    char *upstream;                    /* sent upstream instead of NAME; NULL = NAME */
    struct cfg_models fallbacks;         /* tried in order when NAME's backends are exhausted */
    struct cfg_models context_fallbacks; /* tried on context_length_exceeded */
    int64_t input_price;
    int64_t cached_input_price; /* unset: the input price */
    int64_t cache_write_price;  /* prompt tokens written to the cache; unset: the input price */
    int64_t output_price;
    int64_t request_price; /* per unit of an endpoint without token usage; unset: -1 */
};

/* user_* of a key or a team: each end user's own limits (docs/users.md). */
struct cfg_user_limits {
    int64_t rpm, input_tpm, output_tpm; /* 0 = unlimited */
    int64_t budget;                     /* micro-dollars per budget_period; 0 = none */
    enum quota_period budget_period;
    int64_t max_inflight; /* 0 = no cap */
};

/* [team NAME]: limits shared by the keys that name the team. */
struct cfg_team {
    char *name;
    int line;
    int64_t rpm, input_tpm, output_tpm; /* 0 = unlimited */
    int64_t budget;                     /* micro-dollars per budget_period; 0 = none */
    enum quota_period budget_period;
    int64_t max_inflight;               /* requests open at once, all keys; 0 = no cap */
    int64_t spike_per_min, spike_burst; /* spike_arrest (requests per minute; 0 = none) */
    bool share_resources;               /* its keys' stored resources are the team's */
    struct cfg_user_limits users;       /* per end user, all keys together */
    bool admin_enabled;                 /* admin_key is set: */
    uint8_t admin_digest[32];           /* the key that manages the team's runtime keys */
};

struct cfg_key {
    char *name;
    int line;
    uint8_t digest[32]; /* SHA-256 of the client key */
    int64_t rpm;        /* 0 = unlimited */
    int64_t input_tpm;
    int64_t output_tpm;
    struct cfg_models models;
    int64_t quota; /* 0 = none */
    enum quota_period quota_period;
    int64_t max_prompt_tokens; /* 0 = none */
    int mode;                  /* enum key_mode */
    char *team_name;             /* as written; NULL = none */
    const struct cfg_team *team; /* the [team] it names */
    int64_t budget;              /* micro-dollars per budget_period; 0 = none */
    enum quota_period budget_period;
    int64_t reserve_output_tokens; /* reserved when the request sets no max tokens */
    int64_t max_inflight;          /* requests open at once, across nodes; 0 = no cap */
    int64_t spike_per_min, spike_burst; /* spike_arrest (requests per minute; 0 = none) */
    int64_t queue_timeout_ms;      /* how long a refused request may wait for room; 0 = never */
    int64_t expires_at;            /* seconds since the epoch; 0 = never */
    int trust_user;                /* enum trust_user: where the end user comes from */
    bool require_user;             /* a request without an end user is refused */
    struct cfg_user_limits users;  /* per end user of this key */
    bool runtime;                  /* made through the admin API (keys.h), not the file */
};

struct config {
    char *path;
    struct cfg_server server;
    struct cfg_redis redis;
    struct cfg_telemetry telemetry;
    struct cfg_auth auth;
    struct cfg_backend *backends;
    int nbackends;
    struct cfg_key *keys;
    int nkeys;
    struct cfg_model *models;
    int nmodels;
    int *prefix_models; /* the indexes of the [model NAME*] sections */
    int nprefix_models;
    struct cfg_team *teams;
    int nteams;
    /* each array's names -> index, so finding one is O(1) with 100,000 keys */
    struct sl_names backend_names, key_names, model_names, team_names;
    /* the model names it names (cfg_model_label), each once */
    struct sl_names label_names;
    const char **labels;
    int nlabels;
    int stateful_backend; /* index: the one marked stateful, else the first by priority */
    bool any_prefill;     /* a backend has prefill = yes (cut streams may continue) */
    bool any_anthropic;   /* a backend has type = anthropic (the Messages API's dialect) */
    bool any_openai;      /* a backend has another type (OpenAI's dialect) */
    struct ssl_ctx_st *tls; /* for the listeners marked tls (tls.h); NULL without one */
    atomic_int refs;
};

/* Collected problems, each "file:line: message". */
struct cfg_errors {
    char **lines;
    int n;
};

/* Loads and validates path. Returns NULL and fills errs on failure; warnings
 * (plain keys) go to the log. The result starts with one reference. */
struct config *cfg_load(const char *path, struct cfg_errors *errs);
void cfg_errors_free(struct cfg_errors *errs);

struct config *cfg_ref(struct config *c);
void cfg_unref(struct config *c);

bool cfg_models_match(const struct cfg_models *m, const char *model, size_t len);
bool cfg_status_in(const struct cfg_statuses *s, int status);
const struct cfg_key *cfg_find_key(const struct config *c, const char *name);
const struct cfg_team *cfg_find_team(const struct config *c, const char *name);
/* Whether a request of k, counted in team t (its own, or a JWT's: NULL none),
 * spends from a budget: the key's, the team's, or an end user's. */
bool cfg_key_has_budget(const struct cfg_key *k, const struct cfg_team *t);
/* The [model NAME] section of a model, or NULL. */
const struct cfg_model *cfg_find_model(const struct config *c, const char *name);
/* The name a model goes upstream as: its [model] upstream, else itself. */
const char *cfg_upstream_name(const struct config *c, const char *name);
/* The [model] section whose prices apply to a model that answered as
 * `name`: a [model] name with prices, else the one of its upstream name,
 * else the [model NAME*] with the longest NAME it starts with; or NULL. */
const struct cfg_model *cfg_priced_model(const struct config *c, const char *name);
/* A [model NAME*] section: prices for every model that starts with NAME. */
bool cfg_model_is_prefix(const struct cfg_model *m);
/* Whether the model has both token prices (input_price and output_price). */
bool cfg_prices_tokens(const struct cfg_model *m);
/* The model as a metric label: its name if the config lists it anywhere,
 * else "other" (client input never becomes a label of its own). */
const char *cfg_model_label(const struct config *c, const char *model);

/* Where cred:NAME values are read when $CREDENTIALS_DIRECTORY is not set
 * (outside systemd): "ID:DIR" as in the unit's LoadCredential=ID:DIR (cred:ID_X
 * is DIR/X), or "DIR" (cred:X is DIR/X). Set once, from the command line,
 * before the first cfg_load; the string must outlive every load. */
void cfg_set_credentials(const char *spec);

/* Forgets the env: secrets kept for reloads (at exit, for leak checkers). */
void cfg_forget_environment(void);

/* Prints the option reference (markdown) generated from the option table. */
void cfg_print_reference(void);

/* Keys made at run time (keys.h), checked as a [key NAME] section with
 * these option lines would be: the defaults, each value by the file's own
 * rules (no secret: "key" is refused), the team looked up in c. False with
 * the first problem in err ("rpm: ..."). */
bool cfg_key_build(const struct config *c, const char *name, const char *const *opts,
                   const char *const *vals, int n, struct cfg_key *out, char *err, size_t errlen);
/* Frees what a key holds (its name, team name, models) and zeroes it. */
void cfg_key_clear(struct cfg_key *k);
/* Whether a name follows the rules of [key NAME] and [team NAME]. */
bool cfg_name_valid(const char *name);
/* The [key] option of that name if it may be set at run time (all but the
 * secret), else NULL. */
const struct option *cfg_key_option(const char *option);

#endif
