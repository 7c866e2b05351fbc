/* Every error sluice itself produces, in one place: HTTP status, OpenAI error
 * type and code. errors.c renders them in OpenAI's JSON shape. */
#ifndef SLUICE_ERRORS_H
#define SLUICE_ERRORS_H

#include <stddef.h>
#include <stdint.h>

enum sl_error {
    ERR_NONE = 0,          /* not an error: functions return it for success */
    ERR_BAD_REQUEST,       /* 400 invalid_request_error: bad JSON, missing model, wrong types */
    ERR_BAD_HTTP,          /* 400 malformed HTTP framing; connection is closed */
    ERR_INVALID_API_KEY,   /* 401 */
    ERR_MODEL_NOT_ALLOWED, /* 403 */
    ERR_PERMISSION,        /* 403 an admin key that may not do this (a team's, outside its team) */
    ERR_QUOTA_EXHAUSTED,   /* 429 insufficient_quota (as OpenAI), x-should-retry: false */
    ERR_NOT_FOUND,         /* 404 unknown path */
    ERR_MODEL_NOT_FOUND,   /* 404 no backend serves the model */
    ERR_RESOURCE_NOT_FOUND, /* 404 a stored resource that is not the caller's (or does not exist) */
    ERR_METHOD,            /* 405 */
    ERR_REQUEST_TIMEOUT,   /* 408 client too slow to send its request */
    ERR_BODY_TOO_LARGE,    /* 413 */
    ERR_HEAD_TOO_LARGE,    /* 413 header section too large */
    ERR_PROMPT_TOO_LARGE,  /* 413 */
    ERR_UNSUPPORTED_MEDIA, /* 415 a body neither JSON nor multipart/form-data */
    ERR_EXPECTATION,       /* 417 */
    ERR_CONFLICT,          /* 409 a runtime key's name is taken (by the file's or another) */
    ERR_MISDIRECTED,       /* 421 an operator endpoint asked for under a Host not in admin_hosts */
    ERR_RATE_LIMITED,      /* 429 rate_limit_exceeded, type "requests" */
    ERR_RATE_LIMITED_TOKENS, /* 429 rate_limit_exceeded, type "tokens" */
    ERR_RATE_LIMITED_CONCURRENCY, /* 429 rate_limit_exceeded, type "concurrency": max_inflight */
    ERR_UPSTREAM_RATE_LIMITED, /* 429 every upstream tried answered 429 */
    ERR_UPSTREAM_CAPACITY, /* 429 every backend of the model is at its capacity */
    ERR_INTERNAL,          /* 500 */
    ERR_NOT_IMPLEMENTED,   /* 501 */
    ERR_UPSTREAM_FAILED,   /* 502 */
    ERR_UPSTREAM_AUTH,     /* 502 the upstream rejected the backend's credential */
    ERR_NO_BACKEND,        /* 503 */
    ERR_SHUTTING_DOWN,     /* 503 */
    ERR_LIMITER_DOWN,      /* 503 Redis unreachable and on_error = deny */
    ERR_OVERLOADED,        /* 503 max_buffered reached */
    ERR_KEYS_BUSY,         /* 503 this second's lookups of unknown keys are used up */
    ERR_KEY_STORE,         /* 503 runtime keys cannot be read or written (state_dir, Redis) */
    ERR_UPSTREAM_TIMEOUT,  /* 504 */
    ERR_HTTP_VERSION,      /* 505 */
    ERR__COUNT
};

struct sl_error_info {
    int status;
    const char *type;
    const char *code; /* NULL renders as JSON null */
};

const struct sl_error_info *err_info(enum sl_error e);

/* The API dialect a caller speaks, which decides the shape (and for a few
 * errors the status) of sluice's own answers: OpenAI's, or Anthropic's for
 * the Messages API (/v1/messages). */
enum sl_dialect { DIALECT_OPENAI = 0, DIALECT_ANTHROPIC = 1 };

/* The status the caller gets: err_info's, except that Anthropic's callers
 * get 529 overloaded_error where OpenAI's get 503. */
int err_status(enum sl_error e, enum sl_dialect d);
/* Anthropic's error type for the error: invalid_request_error,
 * authentication_error, permission_error, not_found_error,
 * request_too_large, rate_limit_error, api_error, timeout_error,
 * overloaded_error. */
const char *err_anthropic_type(enum sl_error e);
/* The same for any HTTP status (an upstream's). */
const char *err_anthropic_type_of(int status);
/* The error in the dialect's shape (err_json for OpenAI; Anthropic's
 * {"type":"error","error":{"type":...,"message":...}}), malloc'd. */
char *err_json_in(enum sl_dialect d, enum sl_error e, const char *message, const char *param,
                  size_t *len_out);

/* Renders {"error":{"message":...,"type":...,"param":...,"code":...}} into a
 * malloc'd string (caller frees). param may be NULL. */
char *err_json(enum sl_error e, const char *message, const char *param, size_t *len_out);
/* The Responses API's stream error event's data, {"type":"error","code":...,
 * "message":...,"param":null,"sequence_number":N,"error":{"type":...,"code":
 * ...,"message":...,"param":null}} (the documented members and the object
 * OpenAI's streams carry), malloc'd (caller frees). */
char *err_response_event_json(enum sl_error e, const char *message, int64_t sequence,
                              size_t *len_out);

#endif
