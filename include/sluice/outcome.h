/* Two small vocabularies, each declared once in a list below: what one
 * upstream attempt came to (its outcome), and how a request ended (its end
 * cause). An attempt is classified once, by up_classify(), and that one value
 * decides whether another attempt may follow, the breaker's verdict, the
 * metric label and what the client gets, as nginx's NGX_HTTP_UPSTREAM_FT_*
 * do. The end cause is the access log's `end=` token. docs/pool.md and
 * docs/operations.md list both; tests/unit/test_outcome.c keeps them in step. */
#ifndef SLUICE_OUTCOME_H
#define SLUICE_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/errors.h"

struct cfg_statuses;

/* How an upstream transfer ended, as far as the connection goes (upstream.c). */
enum up_end {
    UP_ANSWERED,        /* a complete response, whatever its status */
    UP_CONNECT_FAILED,  /* refused, unreachable, name not resolved: nothing was sent */
    UP_CONNECT_TIMEOUT, /* no connection within connect_timeout: nothing was sent */
    UP_TLS_FAILED,      /* TLS handshake or certificate check failed: nothing was sent */
    UP_NO_ANSWER,       /* sent; closed or reset before a response head */
    UP_TIMEOUT,         /* sent; no complete response within the backend's timeout */
    UP_FIRST_BYTE_TIMEOUT, /* sent; no response head within first_byte_timeout */
    UP_BROKEN,          /* the response broke off after its head */
    UP_REFUSED,         /* sluice's data callback refused the response (larger than sluice keeps) */
};

/* ---- end causes: the access log's end= token --------------------------------
 * X(id, token, what it means) */
#define END_CAUSES(X)                                                                               \
    X(RESPONDED, "responded", "the upstream's answer reached the client (any status it chose, a " \
                              "whole stream included)")                                           \
    X(CLIENT_CLOSED, "client_closed", "the client closed the connection first (status 499)")      \
    X(REQUEST_TIMEOUT, "request_timeout",                                                          \
      "`request_timeout` passed: 504, or an error event in a stream")                              \
    X(REFUSED, "refused",                                                                          \
      "refused before admission: no valid key, a bad request, or a model, price or endpoint the "   \
      "key may not use (the 4xx's error code says which)")                                         \
    X(RATE_LIMITED, "rate_limited",                                                                \
      "the rpm, input_tpm or output_tpm of the key or its team refused it (429)")                  \
    X(QUOTA_EXHAUSTED, "quota_exhausted", "the key's quota refused it")                            \
    X(BUDGET_EXHAUSTED, "budget_exhausted", "the budget of the key or its team refused it (429)")  \
    X(LIMITER_UNAVAILABLE, "limiter_unavailable",                                                  \
      "Redis was unreachable and `on_error = deny` (503)")                                         \
    X(NO_BACKEND, "no_backend", "no backend for the model was available: breakers open (503)")    \
    X(UPSTREAM_ERROR, "upstream_error",                                                            \
      "the last attempt's error answer (a `breaker_status`) was passed through")                   \
    X(UPSTREAM_AUTH_ERROR, "upstream_auth_error",                                                  \
      "the last backend tried rejected its credential (401/403): sluice's own 502, the upstream's " \
      "answer withheld")                                                                           \
    X(UPSTREAM_RATE_LIMITED, "upstream_rate_limited",                                              \
      "every upstream tried answered 429 (one 429 `upstream_rate_limited`), or the only one did") \
    X(UPSTREAM_CAPACITY, "upstream_capacity",                                                      \
      "every backend for the model was full: its rpm, tpm or max_inflight, or its upstream's "    \
      "own remaining count (429 with the earliest Retry-After)")                                  \
    X(UPSTREAM_CONNECT_FAILED, "upstream_connect_failed",                                          \
      "the last backend tried could not be connected to (502)")                                   \
    X(UPSTREAM_CONNECT_TIMEOUT, "upstream_connect_timeout",                                        \
      "the last backend tried did not accept a connection within `connect_timeout` (504)")        \
    X(UPSTREAM_TLS_FAILED, "upstream_tls_failed",                                                  \
      "the last backend's TLS handshake or certificate check failed (502)")                       \
    X(UPSTREAM_NO_ANSWER, "upstream_no_answer",                                                    \
      "the upstream closed the connection without answering, and the request was not sent again (502)") \
    X(UPSTREAM_TIMEOUT, "upstream_timeout", "the upstream did not answer within `timeout` (504)") \
    X(UPSTREAM_FIRST_BYTE_TIMEOUT, "upstream_first_byte_timeout",                                  \
      "the last backend tried sent no response head within `first_byte_timeout` (504)")           \
    X(UPSTREAM_FIRST_TOKEN_TIMEOUT, "upstream_first_token_timeout",                                \
      "the last backend's stream sent no output within `first_token_timeout`; the client had "    \
      "nothing yet (504)")                                                                         \
    X(UPSTREAM_BROKEN, "upstream_broken", "the upstream's answer broke off after its head (502)") \
    X(UPSTREAM_TOO_LARGE, "upstream_too_large", "the upstream's answer was larger than 256 MB (502)") \
    X(STREAM_BROKEN, "stream_broken",                                                              \
      "a relayed stream broke: the client got one error event and a clean end")                   \
    X(STREAM_STALLED, "stream_stalled",                                                            \
      "a relayed stream sent nothing for `stream_idle_timeout`: one error event, a clean end")    \
    X(INTERNAL_ERROR, "internal_error", "sluice could not start the upstream transfer (502)")

enum end_cause {
#define X(id, token, doc) END_##id,
    END_CAUSES(X)
#undef X
        END__COUNT
};

/* ---- attempt outcomes: the sluice_upstream_attempts_total outcome label ------ */

/* The breaker's verdict on an attempt. */
enum up_verdict {
    VERDICT_SUCCESS, /* an answer that is not a failure: closes a half-open breaker */
    VERDICT_FAILURE, /* counts towards opening the breaker; a failed probe reopens it */
    VERDICT_NEUTRAL, /* no verdict (the client left first): frees a probe slot */
};

/* May another attempt follow this one (on the next backend, within max_attempts)? */
enum up_retry {
    RETRY_NO,         /* the upstream may be working on it, or it answered for good */
    RETRY_YES,        /* nothing reached the upstream, or it answered with a breaker_status */
    RETRY_UNANSWERED, /* it may have read it: only with the backend's resend_unanswered */
};

/* X(id, label, breaker verdict, retry, error sluice answers with when this was
 * the last attempt (ERR_NONE: the upstream's answer as it was), end cause,
 * message of that error, what it means) */
#define UP_OUTCOMES(X)                                                                              \
    X(SUCCESS, "success", VERDICT_SUCCESS, RETRY_NO, ERR_NONE, RESPONDED, NULL,                       \
      "answered with a status that is not a failure (2xx, 1xx, 3xx)")                              \
    X(PASSED, "client_error", VERDICT_SUCCESS, RETRY_NO, ERR_NONE, RESPONDED, NULL,                   \
      "answered 4xx or 5xx outside `breaker_status`: passed through")                              \
    X(ERROR_STATUS, "error_status", VERDICT_FAILURE, RETRY_YES, ERR_NONE, UPSTREAM_ERROR, NULL,       \
      "answered a status in `breaker_status` (5xx by default)")                                    \
    X(AUTH_REJECTED, "auth_rejected", VERDICT_FAILURE, RETRY_YES, ERR_UPSTREAM_AUTH,                 \
      UPSTREAM_AUTH_ERROR,                                                                         \
      "The upstream deployment rejected the gateway's own credential; this is not about your "   \
      "API key.",                                                                                  \
      "answered 401 or 403 (in `breaker_status`): the backend's credential was refused")         \
    X(RATE_LIMITED, "rate_limited", VERDICT_FAILURE, RETRY_YES, ERR_NONE, UPSTREAM_RATE_LIMITED, NULL, \
      "answered 429 (in `breaker_status`)")                                                        \
    X(CONNECT_FAILED, "connect_failed", VERDICT_FAILURE, RETRY_YES, ERR_UPSTREAM_FAILED,             \
      UPSTREAM_CONNECT_FAILED, "Could not connect to any upstream.",                              \
      "connection refused, host unreachable or name not resolved: nothing was sent")              \
    X(CONNECT_TIMEOUT, "connect_timeout", VERDICT_FAILURE, RETRY_YES, ERR_UPSTREAM_TIMEOUT,          \
      UPSTREAM_CONNECT_TIMEOUT, "Could not connect to the upstream in time.",                     \
      "no connection within `connect_timeout`: nothing was sent")                                 \
    X(TLS_FAILED, "tls_failed", VERDICT_FAILURE, RETRY_YES, ERR_UPSTREAM_FAILED, UPSTREAM_TLS_FAILED, \
      "Could not connect securely to the upstream (TLS).",                                        \
      "the TLS handshake or the certificate check failed: nothing was sent")                      \
    X(NO_ANSWER, "no_answer", VERDICT_FAILURE, RETRY_UNANSWERED, ERR_UPSTREAM_FAILED,                \
      UPSTREAM_NO_ANSWER,                                                                          \
      "The upstream closed the connection without answering.",                                    \
      "sent, then the connection closed or reset before a response: the upstream may have "      \
      "read it")                                                                                   \
    X(TIMEOUT, "timeout", VERDICT_FAILURE, RETRY_NO, ERR_UPSTREAM_TIMEOUT, UPSTREAM_TIMEOUT,        \
      "The upstream did not answer in time.", "sent; no complete answer within `timeout`")        \
    X(FIRST_BYTE_TIMEOUT, "first_byte_timeout", VERDICT_FAILURE, RETRY_YES, ERR_UPSTREAM_TIMEOUT,   \
      UPSTREAM_FIRST_BYTE_TIMEOUT, "The upstream did not start answering in time.",               \
      "sent; no response head within `first_byte_timeout`: the next backend gets it")             \
    X(FIRST_TOKEN_TIMEOUT, "first_token_timeout", VERDICT_FAILURE, RETRY_YES, ERR_UPSTREAM_TIMEOUT, \
      UPSTREAM_FIRST_TOKEN_TIMEOUT, "The upstream's stream did not start answering in time.",      \
      "a stream sent no event with output within `first_token_timeout` (its head held back): "    \
      "the next backend gets it")                                                                  \
    X(BROKEN, "broken", VERDICT_FAILURE, RETRY_NO, ERR_UPSTREAM_FAILED, UPSTREAM_BROKEN,             \
      "The upstream request failed.", "the answer broke off after its head")                     \
    X(TOO_LARGE, "too_large", VERDICT_FAILURE, RETRY_NO, ERR_UPSTREAM_FAILED, UPSTREAM_TOO_LARGE,       \
      "The upstream request failed.", "the answer was larger than sluice buffers (256 MB)")       \
    X(STREAM_BROKEN, "stream_broken", VERDICT_FAILURE, RETRY_NO, ERR_UPSTREAM_FAILED, STREAM_BROKEN,       \
      "The upstream request failed.", "a stream broke after its first byte reached the client")  \
    X(STREAM_STALLED, "stream_stalled", VERDICT_FAILURE, RETRY_NO, ERR_UPSTREAM_TIMEOUT,             \
      STREAM_STALLED,                                                                              \
      "The upstream sent nothing for the backend's stream_idle_timeout; the stream was ended.",   \
      "a stream sent no byte for `stream_idle_timeout`: the connection is closed")                \
    X(ABORTED, "aborted", VERDICT_NEUTRAL, RETRY_NO, ERR_NONE, CLIENT_CLOSED, NULL,                   \
      "the client left first: the transfer was dropped")                                           \
    X(NOT_STARTED, "not_started", VERDICT_NEUTRAL, RETRY_NO, ERR_UPSTREAM_FAILED, INTERNAL_ERROR,    \
      "Could not start the upstream request.", "sluice could not start the transfer")

enum up_outcome {
#define X(id, label, verdict, retry, error, end, message, doc) UP_OUTCOME_##id,
    UP_OUTCOMES(X)
#undef X
        UP_OUTCOME__COUNT
};

struct up_outcome_info {
    const char *label;
    enum up_verdict verdict;
    enum up_retry retry;
    enum sl_error error;
    enum end_cause end;
    const char *message;
    const char *doc;
};

const struct up_outcome_info *up_outcome_info(enum up_outcome o);
/* The outcome whose label (the metric's outcome label) this is; false if none. */
bool up_outcome_of_label(const char *label, size_t len, enum up_outcome *out);
const char *end_cause_token(enum end_cause c);
const char *end_cause_doc(enum end_cause c);

/* The one classification of an attempt: how the transfer ended, the status of
 * a complete answer, whether its stream was being relayed, and the backend's
 * breaker_status. */
enum up_outcome up_classify(enum up_end how, int status, bool relaying,
                            const struct cfg_statuses *breaker_status);

#endif
