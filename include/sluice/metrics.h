/* Prometheus metrics (names are part of SPEC.md). One registry per process,
 * shared by all workers under a mutex; a request's numbers are recorded in
 * one locked call when it ends. Label values are names from the config
 * (keys, backends, listed models) or fixed words, never raw client input. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

struct sl_buf;
struct generation;
struct config;

/* Everything one finished request contributes. */
struct mx_request {
    const char *key;     /* key name, or "-" before authentication */
    const char *model;   /* a configured model name, or "other" */
    const char *served_model; /* the model that answered, as the upstream knows it, or "-" */
    const char *backend; /* the last backend tried, or "-" */
    int code;            /* what the client got */
    double duration_s;
    int64_t prompt_tokens, completion_tokens;
    const char *team; /* the key's team, or "" */
    int64_t cost;     /* micro-dollars */
    const char *user; /* the end user's label (mx_user_label), or NULL: no per-user series */
};

void mx_request_done(const struct mx_request *m);
/* The model as a label: its name if the config names it; else, for the first
 * [server] max_model_labels distinct names clients sent (plain characters,
 * 64 at most), that name; else "other". "-" for no model. */
const char *mx_model_label(const struct config *c, const char *model);
void mx_rate_limited(const char *key, const char *dimension);
/* The end user as a label: NULL without one or with [server] max_user_labels
 * = 0; the id itself for the first max_user_labels distinct ids; else "other". */
const char *mx_user_label(const struct config *c, const char *user);
/* sluice_budget_remaining_usd{scope="key|team",name}: micro-dollars left. */
void mx_budget_remaining(const char *scope, const char *name, int64_t micro);
/* outcome: success, client_error, error_status, connect_error, timeout, broken, aborted */
void mx_attempt(const char *backend, const char *outcome, double ttfb_s);
/* A stream's first event with output came ttft_s after its attempt was sent. */
void mx_ttft(const char *backend, double ttft_s);
void mx_retry(const char *backend);
/* A change to a runtime key through the admin API (create, update, rotate, delete). */
void mx_admin_change(const char *action);

void mx_inflight(int delta);
/* A SIGHUP reload's result (sluice_config_reloads_total; a good one also sets
 * the time the configuration in force was loaded), and the first load. */
void mx_reload(bool ok);
void mx_config_loaded(void);
/* Requests of a key with max_inflight open on this node: sluice_inflight{key}. */
void mx_key_inflight(const char *key, int delta);
/* One request's wait for room (queue_timeout): sluice_queue_wait_seconds. */
void mx_queue_wait(double seconds);

/* For the status page (status.c): a backend's attempts, those whose
 * outcome was not success, and its time to first byte's p50 and p99 in
 * seconds (estimated from the histogram as Prometheus' histogram_quantile
 * does; 0 without samples). */
struct mx_backend_stats {
    uint64_t attempts, failures;
    double ttfb_p50, ttfb_p99;
};
void mx_backend_stats(const char *backend, struct mx_backend_stats *out);
/* The config's keys with the most requests answered (at most max, busiest
 * first): their indexes in c->keys and counts. Returns how many. */
int mx_busiest_keys(const struct config *c, int max, int *keys, uint64_t *requests);
/* API requests being handled on this node (sluice_inflight_requests). */
long mx_inflight_now(void);

/* The exposition text for GET /metrics. */
void mx_render(struct sl_buf *out, struct generation *gen, long runtime_keys);
/* Frees the registry (at exit, for leak checkers). */
void mx_shutdown(void);

#endif
