/* What an attempt sends upstream: the URL for its backend, the header list,
 * and the body as forwarded. One request's body forms are made at most once
 * each and kept with it (struct fwd_body). */
#ifndef SLUICE_FORWARD_H
#define SLUICE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/api_call.h"
#include "sluice/util.h"
#include "sluice/xlate.h"

struct curl_slist;
struct cfg_backend;
struct http_req;

/* The request body's forms. */
struct fwd_body {
    struct sl_str client; /* as it came (borrowed: the client's request owns it) */
    struct sl_buf usage;  /* with stream_options.include_usage, when sluice asked for usage */
    struct sl_buf model;  /* with the model renamed to its upstream name */
    struct sl_buf cont;   /* a broken stream's continuation (fwd_continuation) */
    struct sl_buf xlate;  /* in the other dialect (dialect.h), for backends that speak it */
    struct sl_buf xlate_model; /* that, with the model renamed */
};

/* For a client that streams without asking for usage, sluice asks for the
 * usage chunk itself (and drops it again on the way back): true when the
 * body now asks on sluice's behalf. */
bool fwd_ask_for_usage(struct fwd_body *b, const struct api_call *call);
/* The body names `upstream` instead of the client's model (its translation
 * too, if it has one); nothing when they are the same or the body is not
 * JSON. */
void fwd_rename_model(struct fwd_body *b, const struct api_call *call, const char *upstream,
                      size_t len);
/* What an attempt sends: renamed, changed by sluice, or as it came; its
 * translation (renamed) for a backend of the other dialect. */
struct sl_str fwd_body_sent(const struct fwd_body *b, bool translated);
/* The body that continues a chat stream cut after `said` (the assistant's
 * text relayed so far, as JSON string content: escaped as it came): the body
 * sent, with `said` as a last assistant message to continue (prefill) and
 * continue_final_message: true, add_generation_prompt: false for vLLM-style
 * servers. fwd_body_sent returns it from then on. False if the body cannot
 * take it (not a JSON object with a messages array). */
bool fwd_continuation(struct fwd_body *b, const char *said, size_t len);
void fwd_body_free(struct fwd_body *b);

/* The attempt's headers for curl as one allocation (the list nodes, then
 * their text): the client's by the allow-list and the backend's
 * forward_headers, the body's Content-Type (kind), the backend's credential,
 * organization and project, and traceparent (a whole header line; NULL when
 * tracing is off: the client's own then passes). Freed with fwd_headers_free,
 * which wipes the credential. */
struct curl_slist *fwd_headers(const struct http_req *req, const struct cfg_backend *be,
                               enum api_body kind, size_t body_len, const char *traceparent);
void fwd_headers_free(struct curl_slist *list);
/* The header line's start that carries a backend's credential: "Authorization:
 * Bearer " (openai), "api-key: " (azure), "x-api-key: " (anthropic). */
const char *fwd_credential_header(const struct cfg_backend *be);
/* What an anthropic backend is sent when the client names no version. */
#define FWD_ANTHROPIC_VERSION "anthropic-version: 2023-06-01"

/* openai: base + path after /v1 (+ query). azure: base +
 * /openai/deployments/{deployment or upstream_model}/... ?api-version=...
 * (+ the client's query); stateful calls go to the account's /openai/...
 * A translated call (xl, xlate.h) goes to the other dialect's path
 * (/chat/completions or /messages), without the client's query.
 * Returns malloc'd text. */
char *fwd_url(const struct http_req *req, const struct cfg_backend *be, bool stateful,
              const char *upstream_model, int xl);

#endif
