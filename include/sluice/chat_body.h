/* Chat completion bodies of the common shape, checked and their prompt
 * estimated in one pass over the text, without building a cJSON tree: a
 * model, messages whose content is a string (or null), stream, the count
 * fields, and members sluice does not read (skipped). Anything else (content
 * parts, tools, tool calls, stream_options, escaped keys, duplicate members,
 * errors of any kind) is left to the cJSON path, which gives the same answer
 * and every error message. */
#ifndef SLUICE_CHAT_BODY_H
#define SLUICE_CHAT_BODY_H

#include <stdbool.h>
#include <stddef.h>

struct api_call;

/* True if the body is of that shape and valid: call's model, stream and
 * estimate are set (root stays NULL). False: nothing is decided. */
bool chat_body_scan(const char *body, size_t len, struct api_call *call);
/* The same for a Messages API body (/v1/messages) of the common shape: a
 * model, max_tokens, messages of role user or assistant whose content is a
 * string, a system prompt as a string, stream, members it does not read;
 * content blocks, system blocks and tools are the cJSON path's. */
bool messages_body_scan(const char *body, size_t len, struct api_call *call);

#endif
