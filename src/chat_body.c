/* The one-pass reader of chat completion bodies (chat_body.h). Every check
 * of api_read.c's cJSON path that the common shape can fail makes this reader
 * give up instead, so the messages and the estimate stay exactly theirs. */
#include "sluice/chat_body.h"

#include <string.h>

#include "sluice/json_scan.h"
#include "sluice/api_call.h"
#include "sluice/tokens.h"
#include "sluice/util.h"

#define MODEL_MAX 256

struct chat_scan {
    struct json_scan js;
    struct sl_buf scratch; /* a string with escapes, unescaped */
    int64_t estimate;
    bool anthropic; /* a Messages API body: its rules, as api_read.c's check_anthropic */
};

/* A member's name: escape-free (cJSON compares names unescaped), then ':'. */
/* A member name, not escaped and not one the object already has (a
 * repeated one is refused on the cJSON path). */
static bool scan_name(struct json_scan *js, struct js_keys *keys, struct sl_str *name)
{
    bool escaped;
    return js_string(js, name, &escaped) && !escaped && js_key_new(keys, *name) &&
           js_take(js, ':');
}

/* A string value; false if the value is not a string. */
static bool scan_string_value(struct json_scan *js, struct sl_str *raw, bool *escaped)
{
    return js_peek(js) == '"' && js_string(js, raw, escaped);
}

static bool scan_null(struct json_scan *js)
{
    char lit;
    return js_peek(js) == 'n' && js_literal(js, &lit);
}

static int64_t text_estimate(struct chat_scan *c, struct sl_str raw, bool escaped)
{
    if (!escaped)
        return tok_estimate_text(raw.p, raw.len);
    c->scratch.len = 0;
    sl_buf_reserve(&c->scratch, raw.len);
    return tok_estimate_text(c->scratch.data, js_unescape(raw, c->scratch.data));
}

/* A Messages API role: user or assistant, as written. */
static bool anthropic_role(struct sl_str raw, bool escaped)
{
    return !escaped && (sl_str_eq(raw, "user") || sl_str_eq(raw, "assistant"));
}

/* {"role": "...", "content": "..." | null, "name": "...", ...}; in a
 * Messages body the role is user or assistant, the content a string, and
 * nothing else counts. */
static bool scan_message(struct chat_scan *c)
{
    struct json_scan *js = &c->js;
    bool role = false, content = false, name = false;
    int64_t n = TOK_PER_MESSAGE;
    struct js_keys keys;
    keys.n = 0;
    if (!js_take(js, '{'))
        return false;
    do {
        struct sl_str key, raw;
        bool escaped;
        if (!scan_name(js, &keys, &key))
            return false;
        if (sl_str_eq(key, "role")) {
            if (role || !scan_string_value(js, &raw, &escaped) ||
                (c->anthropic && !anthropic_role(raw, escaped)))
                return false;
            role = true;
        } else if (sl_str_eq(key, "content")) {
            if (content)
                return false;
            content = true;
            if (scan_string_value(js, &raw, &escaped))
                n += text_estimate(c, raw, escaped);
            else if (c->anthropic || !scan_null(js))
                return false; /* content parts or blocks: cJSON */
        } else if (c->anthropic) {
            if (!js_skip_value(js, 2))
                return false;
        } else if (sl_str_eq(key, "name")) {
            if (name || !scan_string_value(js, &raw, &escaped))
                return false;
            name = true;
            n += TOK_PER_NAME + text_estimate(c, raw, escaped);
        } else if (sl_str_eq(key, "tool_calls") || sl_str_eq(key, "function_call")) {
            return false; /* counted as their JSON text: cJSON */
        } else if (!js_skip_value(js, 2)) {
            return false;
        }
    } while (js_take(js, ','));
    if (!js_take(js, '}') || !role || (c->anthropic && !content))
        return false;
    c->estimate += n;
    return true;
}

static bool scan_messages(struct chat_scan *c)
{
    if (!js_take(&c->js, '['))
        return false;
    do {
        if (!scan_message(c))
            return false; /* an empty array too: that is an error */
    } while (js_take(&c->js, ','));
    return js_take(&c->js, ']');
}

static bool scan_model(struct json_scan *js, struct api_call *call)
{
    struct sl_str raw;
    bool escaped;
    if (!scan_string_value(js, &raw, &escaped) || raw.len == 0 || raw.len > MODEL_MAX)
        return false;
    call->model_len = escaped ? js_unescape(raw, call->model_text) : raw.len;
    if (!escaped)
        memcpy(call->model_text, raw.p, raw.len);
    call->model_text[call->model_len] = '\0';
    call->model = call->model_text;
    for (size_t i = 0; i < call->model_len; i++)
        if ((unsigned char)call->model_text[i] < 0x20 || call->model_text[i] == 0x7f)
            return false; /* refused on the cJSON path, with its message */
    return true;
}

static bool scan_stream(struct json_scan *js, struct api_call *call)
{
    char lit;
    if (!js_literal(js, &lit))
        return false;
    call->stream = lit == 't';
    return true;
}

/* max_tokens and the other counts: null or a non-negative integer. */
static bool scan_count(struct json_scan *js, struct api_call *call, bool is_n)
{
    int64_t v;
    if (scan_null(js))
        return true;
    if (!js_integer(js, &v) || v < 0)
        return false;
    api_count_output(call, is_n, v);
    return true;
}

enum member { M_MODEL, M_MESSAGES, M_STREAM, M_STREAM_OPTIONS, M_MAX_TOKENS,
              M_MAX_COMPLETION_TOKENS, M_MAX_OUTPUT_TOKENS, M_N, M_TOOLS, M_FUNCTIONS,
              M_RESPONSE_FORMAT, M_STORE, M_SYSTEM, M_OTHER };

static enum member member_of(struct sl_str name)
{
    static const char *const names[] = { "model", "messages", "stream", "stream_options",
                                         "max_tokens", "max_completion_tokens",
                                         "max_output_tokens", "n", "tools", "functions",
                                         "response_format", "store", "system" };
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++)
        if (sl_str_eq(name, names[i]))
            return (enum member)i;
    return M_OTHER;
}

/* What a Messages body has apart: its system prompt as text (counted), its
 * max_tokens never null, tools (counted as JSON text: cJSON); what chat
 * reads and the Messages API does not is skipped. */
static bool scan_anthropic_member(struct chat_scan *c, enum member m, struct api_call *call,
                                  bool *handled)
{
    struct json_scan *js = &c->js;
    struct sl_str raw;
    bool escaped;
    *handled = true;
    switch (m) {
    case M_SYSTEM:
        if (!scan_string_value(js, &raw, &escaped))
            return false; /* blocks: cJSON */
        c->estimate += text_estimate(c, raw, escaped);
        return true;
    case M_MAX_TOKENS:
        return !scan_null(js) && scan_count(js, call, false);
    case M_TOOLS:
        return false;
    case M_FUNCTIONS:
    case M_RESPONSE_FORMAT:
        return js_skip_value(js, 1);
    default:
        *handled = false;
        return true;
    }
}

static bool scan_member(struct chat_scan *c, enum member m, struct api_call *call)
{
    struct json_scan *js = &c->js;
    bool handled;
    if (c->anthropic) {
        bool ok = scan_anthropic_member(c, m, call, &handled);
        if (handled)
            return ok;
    }
    switch (m) {
    case M_MODEL:
        return scan_model(js, call);
    case M_MESSAGES:
        return scan_messages(c);
    case M_STREAM:
        return scan_stream(js, call);
    case M_STORE: {
        char lit;
        if (!js_literal(js, &lit))
            return false;
        call->store = lit == 't' ? 1 : lit == 'f' ? 0 : -1;
        return true;
    }
    case M_MAX_TOKENS:
    case M_MAX_COMPLETION_TOKENS:
    case M_MAX_OUTPUT_TOKENS:
    case M_N:
        return scan_count(js, call, m == M_N);
    case M_STREAM_OPTIONS: /* kept for the usage request: cJSON */
    case M_TOOLS:          /* counted as their JSON text: cJSON */
    case M_FUNCTIONS:
    case M_RESPONSE_FORMAT:
        return scan_null(js);
    case M_SYSTEM:
    case M_OTHER:
        return js_skip_value(js, 1);
    }
    return false;
}

static bool scan_body(struct chat_scan *c, struct api_call *call)
{
    struct json_scan *js = &c->js;
    unsigned seen = 0;
    struct js_keys keys;
    keys.n = 0;
    if (!js_take(js, '{'))
        return false;
    do {
        struct sl_str name;
        if (!scan_name(js, &keys, &name)) /* a repeated member: refused on the cJSON path */
            return false;
        enum member m = member_of(name);
        seen |= 1u << m;
        if (!scan_member(c, m, call))
            return false;
    } while (js_take(js, ','));
    unsigned required = (1u << M_MODEL) | (1u << M_MESSAGES) |
                        (c->anthropic ? 1u << M_MAX_TOKENS : 0);
    return js_take(js, '}') && js_at_end(js) && (seen & required) == required;
}

static bool body_scan(const char *body, size_t len, struct api_call *call, bool anthropic)
{
    struct chat_scan c = { .js = { body, body + len }, .anthropic = anthropic };
    struct api_call out = { .endpoint = anthropic ? API_MESSAGES : API_CHAT, .store = -1 };
    bool ok = scan_body(&c, &out);
    sl_buf_free(&c.scratch);
    if (!ok)
        return false;
    out.estimate = c.estimate + TOK_REPLY_PRIMING;
    *call = out;
    call->model = call->model_text; /* out's copy moved */
    return true;
}

bool chat_body_scan(const char *body, size_t len, struct api_call *call)
{
    return body_scan(body, len, call, false);
}

bool messages_body_scan(const char *body, size_t len, struct api_call *call)
{
    return body_scan(body, len, call, true);
}
