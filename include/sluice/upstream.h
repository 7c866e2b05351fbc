/* Upstream HTTP on libcurl's multi interface, driven by the worker's libevent
 * loop through curl_multi_socket_action (as curl's hiper.c does): one
 * transfer per attempt, connections kept alive and reused per worker, the
 * response delivered as it arrives. Nothing here blocks. */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/outcome.h"
#include "sluice/util.h"

struct event_base;
struct up_multi;
struct up_transfer;

/* Returned by on_data to stop the flow until up_resume(). The same bytes are
 * offered again then. */
#define UP_PAUSE CURL_WRITEFUNC_PAUSE

struct up_callbacks {
    /* The final response's status and headers are in. */
    void (*on_headers)(struct up_transfer *t, void *arg);
    /* Body bytes. Return len to take them, UP_PAUSE, or 0 to refuse the
     * response (the transfer ends with UP_REFUSED). */
    size_t (*on_data)(struct up_transfer *t, const char *data, size_t len, void *arg);
    /* The transfer ended, how is said in curl's terms by upstream.c alone; t
     * is freed right after. */
    void (*on_done)(struct up_transfer *t, enum up_end how, void *arg);
    /* curl is about to send the request again, on a fresh connection, after
     * the kept-alive one it was sent on closed without answering. Return
     * true to let it; false ends the transfer with UP_NO_ANSWER. Called from
     * inside curl: count, decide, nothing more. */
    bool (*on_resend)(struct up_transfer *t, void *arg);
};

/* Callbacks for transfers that need no more: a response head not looked
 * at (on_headers), and a request safe to send twice (on_resend). */
void up_ignore_headers(struct up_transfer *t, void *arg);
bool up_resend_always(struct up_transfer *t, void *arg);

enum up_method { UP_POST, UP_GET, UP_DELETE };

struct up_request {
    enum up_method method;
    const char *url;
    struct curl_slist *headers; /* borrowed until on_done or up_cancel */
    const char *body;           /* borrowed likewise */
    size_t body_len;
    long connect_timeout_ms;
    long timeout_ms;
    long first_byte_timeout_ms; /* transmission -> response head; 0 = none (timeout only) */
    long keepalive_s; /* an idle connection is reused only if idle for less than this */
    /* https only: trust (NULL: the system's CAs), a client certificate, and
     * insecure to skip checking the upstream's certificate */
    const char *ca_file, *client_cert, *client_key;
    bool insecure;
};

struct up_multi *up_multi_new(struct event_base *base);
void up_multi_free(struct up_multi *m);

struct up_transfer *up_start(struct up_multi *m, const struct up_request *r,
                             const struct up_callbacks *cb, void *arg);
/* Stops a transfer without calling on_done and frees it. Never call from
 * inside this transfer's own callbacks. */
void up_cancel(struct up_transfer *t);
void up_resume(struct up_transfer *t);

int up_status(const struct up_transfer *t);
/* The final response's header lines, "Name: value\r\n" each. */
struct sl_str up_header_block(const struct up_transfer *t);
/* A header's value (case-insensitive name), or false. */
bool up_header(const struct up_transfer *t, const char *name, struct sl_str *value);
/* How long the upstream asks us to wait: retry-after-ms, else Retry-After
 * (delta-seconds or an HTTP-date), in ms; -1 if absent or unreadable. */
int64_t up_retry_after_ms(const struct up_transfer *t);
/* curl's own description of a failed transfer ("" if none). */
const char *up_error(const struct up_transfer *t);
/* Seconds from start to the first response byte; 0 before it. */
double up_ttfb(const struct up_transfer *t);

#endif
