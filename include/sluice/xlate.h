/* Translation between the two API dialects sluice speaks: a call of
 * Anthropic's Messages API served by an OpenAI-compatible backend (chat
 * completions), and a chat completion served by an anthropic backend.
 * Requests, whole answers and error bodies here; streams in
 * xlate_stream.h. What has no counterpart in the other dialect is refused
 * by name (docs/api.md, "Translation"), never dropped unsaid. */
#ifndef SLUICE_XLATE_H
#define SLUICE_XLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/util.h"

struct cJSON;

enum xl_dir {
    XL_NONE,
    XL_MESSAGES_TO_CHAT, /* a Messages call sent to an OpenAI-compatible backend */
    XL_CHAT_TO_MESSAGES, /* a chat completion sent to an anthropic backend */
};

/* What a chat completion sent to an anthropic backend asks for when it sets
 * no max tokens (Anthropic requires them). */
#define XL_DEFAULT_MAX_TOKENS 4096
/* The most stop sequences OpenAI's chat completions take. */
#define XL_MAX_STOP 4

/* The body of root (the client's parsed call) in the other dialect, into
 * out (appended; the model as the client named it). 0, or ERR_BAD_REQUEST
 * with msg and *param naming the field that cannot be translated (a
 * member's name is kept per thread until the next call). */
int xl_request(enum xl_dir d, const struct cJSON *root, struct sl_buf *out, char *msg,
               size_t msglen, const char **param);

/* A 2xx answer of the upstream (the other dialect) as the client's: false
 * when it is not an answer of the kind expected (then it goes as it came). */
bool xl_response(enum xl_dir d, const char *body, size_t len, struct sl_buf *out);

/* An upstream's error body in the client's dialect (its message kept where
 * it has one), and the status the client gets: Anthropic's 529 is 503 for
 * an OpenAI client, a 503 is 529 for an Anthropic one. */
void xl_error(enum xl_dir d, int status, const char *body, size_t len, struct sl_buf *out);
int xl_error_status(enum xl_dir d, int status);

/* A member of o (NULL if o is not an object or lacks it), and its string
 * (NULL unless it is one): what both translation files read with. */
const struct cJSON *xl_get(const struct cJSON *o, const char *name);
const char *xl_str(const struct cJSON *o, const char *name);

/* The stop reasons of each dialect in the other's words. */
const char *xl_stop_reason(const char *finish_reason);   /* chat -> Messages */
const char *xl_finish_reason(const char *stop_reason);   /* Messages -> chat */

#endif
