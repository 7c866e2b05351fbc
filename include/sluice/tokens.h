/* Token accounting inputs: the usage numbers an upstream reports, from a
 * whole JSON response or from the data of one SSE event (chat completions,
 * completions, embeddings and the Responses API all put them in "usage",
 * the Responses API's stream inside "response"; Anthropic's Messages API in
 * "usage", its stream's in message_start's message and in message_delta). */
#ifndef SLUICE_TOKENS_H
#define SLUICE_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Usage numbers must be whole, 0 up to (not including) 2^53, where a
 * double stops telling integers apart: anything else (negative, fractional,
 * not a number, larger) makes the usage invalid — seen stays false, so the
 * estimate stays charged and no counter moves by them. */
#define TOK_COUNT_LIMIT (1LL << 53)

struct tok_usage {
    bool seen;
    bool invalid; /* a usage object came, with a number sluice cannot use */
    int64_t prompt;     /* prompt_tokens / input_tokens */
    int64_t completion; /* completion_tokens / output_tokens (reasoning tokens included) */
    int64_t cached;     /* of the prompt: {prompt,input}_tokens_details.cached_tokens, or
                           Anthropic's cache_read_input_tokens */
    int64_t cache_write; /* of the prompt: Anthropic's cache_creation_input_tokens */
};

struct api_call;
struct sl_str;

/* Deterministic estimate of a request's prompt tokens (docs/limits.md):
 * text counts ceil(ASCII bytes / 4) + 1 per non-ASCII code point; each chat
 * message or Responses input item adds 3, a name 1, the reply priming 3; an
 * image part 765 (85 with detail "low"); token-id arrays count exactly; tools,
 * functions, tool calls and response formats count their JSON text. */
int64_t tok_estimate_prompt(const struct api_call *call, size_t body_len);
enum { TOK_PER_MESSAGE = 3, TOK_PER_NAME = 1, TOK_REPLY_PRIMING = 3 };
int64_t tok_estimate_text(const char *s, size_t len);

/* Each returns true when it found a usage object: with seen and the counts,
 * or invalid. */
/* From a complete JSON response body. */
bool tok_usage_from_body(const char *body, size_t len, struct tok_usage *u);
/* From the text of a usage object itself ({"prompt_tokens": ...}). */
bool tok_usage_from_object(const char *obj, size_t len, struct tok_usage *u);
/* From one SSE event's data; cheap for the common event without usage. */
bool tok_usage_from_sse_data(const char *data, size_t len, struct tok_usage *u);

/* The output text a stream relayed, for a stream that ends without usage
 * (cut, or an upstream that never reports it): counted as the prompt is. */
struct tok_text {
    int64_t ascii, other; /* ASCII bytes, and other code points */
};
/* Adds the text one SSE event's data carries: a chat delta's content,
 * refusal, reasoning or tool-call arguments, a Responses delta, a
 * completion's text (escapes counted as they come). False if it carries none. */
bool tok_output_text(const char *data, size_t len, struct tok_text *t);
int64_t tok_text_tokens(const struct tok_text *t);
/* A chat chunk's delta content as it is in the JSON, escapes and all (what
 * a continuation sends back as the assistant's text); false if none. */
bool tok_chat_content(const char *data, size_t len, struct sl_str *raw);

#endif
