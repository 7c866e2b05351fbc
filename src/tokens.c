/* Usage extraction from upstream responses. Parsing JSON costs, so an SSE
 * event is parsed only when its text holds a "usage" object, and that object
 * is read without cJSON when it has the usual shape. */
#include "sluice/tokens.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "sluice/json_edit.h"
#include "sluice/json_scan.h"
#include "sluice/util.h"

enum count { C_ABSENT, C_VALID, C_INVALID };

/* A count: the first name unless it is absent or null, else the second. */
static enum count read_count(const cJSON *obj, const char *a, const char *b, int64_t *out)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (!n || cJSON_IsNull(n))
        n = cJSON_GetObjectItemCaseSensitive(obj, b);
    if (!n || cJSON_IsNull(n))
        return C_ABSENT;
    double v = cJSON_IsNumber(n) ? n->valuedouble : -1;
    if (!(v >= 0 && v < (double)TOK_COUNT_LIMIT && v == (double)(int64_t)v))
        return C_INVALID;
    *out = (int64_t)v;
    return C_VALID;
}

/* One usage object's counts, as read (by cJSON or the scanner). */
struct counts {
    enum count prompt, completion, cached, cache_write, cache_read;
    int64_t v_prompt, v_completion, v_cached, v_cache_write, v_cache_read;
    bool from_input; /* the prompt is input_tokens (prompt_tokens absent) */
};

/* The counts into u: true when the object had usage (then seen, or
 * invalid). Anthropic's input_tokens leave out what the prompt cache wrote
 * and read (cache_creation_input_tokens, cache_read_input_tokens): the
 * prompt is their sum. A later object without a prompt count (a Messages
 * stream's message_delta) keeps the prompt an earlier one gave. */
static bool take_counts(const struct counts *n, struct tok_usage *u)
{
    if (n->prompt == C_INVALID || n->completion == C_INVALID || n->cached == C_INVALID ||
        n->cache_write == C_INVALID || n->cache_read == C_INVALID) {
        u->seen = false;
        u->invalid = true;
        return true;
    }
    if (n->prompt != C_VALID && n->completion != C_VALID)
        return false;
    if (n->prompt != C_VALID && u->seen) { /* the output's count alone */
        u->completion = n->v_completion;
        return true;
    }
    int64_t prompt = n->prompt == C_VALID ? n->v_prompt : 0;
    int64_t written = n->cache_write == C_VALID ? n->v_cache_write : 0;
    int64_t read = n->cache_read == C_VALID ? n->v_cache_read : 0;
    int64_t cached = n->cached == C_VALID ? n->v_cached : 0;
    if (n->from_input && (n->cache_write == C_VALID || n->cache_read == C_VALID)) {
        prompt += written + read; /* each below 2^53: the sum fits */
        cached = read;
        if (prompt >= TOK_COUNT_LIMIT) {
            u->seen = false;
            u->invalid = true;
            return true;
        }
    }
    u->seen = true;
    u->invalid = false; /* a later usage object, this time usable */
    u->prompt = prompt;
    u->completion = n->completion == C_VALID ? n->v_completion : 0;
    u->cached = SL_MIN(cached, prompt);
    u->cache_write = SL_MIN(written, prompt - u->cached);
    return true;
}

/* The general case, through cJSON. */
static bool parse_usage_object_json(const char *text, size_t len, struct tok_usage *u)
{
    cJSON *usage = cJSON_ParseWithLength(text, len);
    bool ok = false;
    if (cJSON_IsObject(usage)) {
        struct counts n = { 0 };
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        n.from_input = !pt || cJSON_IsNull(pt);
        n.prompt = read_count(usage, "prompt_tokens", "input_tokens", &n.v_prompt);
        n.completion = read_count(usage, "completion_tokens", "output_tokens", &n.v_completion);
        const cJSON *details = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
        if (!cJSON_IsObject(details))
            details = cJSON_GetObjectItemCaseSensitive(usage, "input_tokens_details");
        n.cached = cJSON_IsObject(details)
                       ? read_count(details, "cached_tokens", "cached_tokens", &n.v_cached)
                       : C_ABSENT;
        n.cache_write = read_count(usage, "cache_creation_input_tokens",
                                   "cache_creation_input_tokens", &n.v_cache_write);
        n.cache_read = read_count(usage, "cache_read_input_tokens", "cache_read_input_tokens",
                                  &n.v_cache_read);
        ok = take_counts(&n, u);
    }
    cJSON_Delete(usage);
    return ok;
}

/* ---- the common case without cJSON ---------------------------------------------
 * Upstreams send usage as an object of small integers, escape-free strings and
 * such objects nested (prompt_tokens_details). That shape is read here without
 * allocating; anything else (fractions, escapes, arrays, literals, bad JSON)
 * makes the reader give up and the cJSON path decide, so both always agree. */

enum { U_PROMPT, U_INPUT, U_COMPLETION, U_OUTPUT, U_CACHE_WRITE, U_CACHE_READ, U_NAMES };
enum { U_ABSENT, U_NUMBER, U_OTHER, U_OBJECT };
enum { D_PROMPT, D_INPUT, D_NAMES }; /* prompt_tokens_details, input_tokens_details */

struct usage_scan {
    struct json_scan js;
    int kind[U_NAMES];
    int64_t value[U_NAMES];
    int details_kind[D_NAMES];   /* of the first occurrence of each details member */
    int cached_kind[D_NAMES];    /* its cached_tokens: the first occurrence in it */
    int64_t cached[D_NAMES];
    int in_details;              /* while inside the first occurrence of one: its index, else -1 */
};

/* An escape-free string (keys are compared as written). */
static bool scan_plain_string(struct json_scan *js, struct sl_str *out)
{
    bool escaped;
    return js_string(js, out, &escaped) && !escaped;
}

static int usage_name(struct sl_str k)
{
    static const char *const names[U_NAMES] = {
        "prompt_tokens", "input_tokens", "completion_tokens", "output_tokens",
        "cache_creation_input_tokens", "cache_read_input_tokens",
    };
    for (int i = 0; i < U_NAMES; i++)
        if (sl_str_eq(k, names[i]))
            return i;
    return -1;
}

static int details_name(struct sl_str k)
{
    return sl_str_eq(k, "prompt_tokens_details") ? D_PROMPT
           : sl_str_eq(k, "input_tokens_details") ? D_INPUT
                                                  : -1;
}

/* An object of integers, strings and (up to depth 3) such objects. At depth 0
 * the four counts are noted, the first occurrence of each as cJSON finds it,
 * and in the first details object of each kind its first cached_tokens. */
static bool scan_object(struct usage_scan *s, int depth)
{
    struct json_scan *js = &s->js;
    if (depth > 3 || !js_take(js, '{'))
        return false;
    if (js_take(js, '}'))
        return true;
    do {
        struct sl_str key, str;
        if (!scan_plain_string(js, &key) || !js_take(js, ':'))
            return false;
        int name = depth == 0 ? usage_name(key) : -1;
        bool first = name >= 0 && s->kind[name] == U_ABSENT;
        int dn = depth == 0 ? details_name(key) : -1;
        bool first_details = dn >= 0 && s->details_kind[dn] == U_ABSENT;
        int in = depth == 1 && s->in_details >= 0 && sl_str_eq(key, "cached_tokens") ? s->in_details : -1;
        bool first_cached = in >= 0 && s->cached_kind[in] == U_ABSENT;
        int64_t v;
        char next = js_peek(js);
        if (next == '"' || next == '{') {
            if (next == '{' && first_details)
                s->in_details = dn;
            bool ok = next == '"' ? scan_plain_string(js, &str) : scan_object(s, depth + 1);
            if (depth == 0)
                s->in_details = -1;
            if (!ok)
                return false;
            if (first)
                s->kind[name] = U_OTHER;
            if (first_details)
                s->details_kind[dn] = next == '{' ? U_OBJECT : U_OTHER;
            if (first_cached)
                s->cached_kind[in] = U_OTHER;
        } else if (js_integer(js, &v)) {
            if (first) {
                s->kind[name] = U_NUMBER;
                s->value[name] = v;
            }
            if (first_details)
                s->details_kind[dn] = U_OTHER;
            if (first_cached) {
                s->cached_kind[in] = U_NUMBER;
                s->cached[in] = v;
            }
        } else {
            return false;
        }
    } while (js_take(js, ','));
    return js_take(js, '}');
}

/* As read_count: the first name unless absent, else the second (null is
 * not in the scanner's subset: cJSON decides those). */
static enum count pick_count(const struct usage_scan *s, int a, int b, int64_t *out)
{
    int i = s->kind[a] != U_ABSENT ? a : b;
    if (s->kind[i] == U_ABSENT)
        return C_ABSENT;
    if (s->kind[i] != U_NUMBER || s->value[i] < 0) /* at most 15 digits: below 2^53 */
        return C_INVALID;
    *out = s->value[i];
    return C_VALID;
}

/* The usage object at the start of text by the scanner, the counts taken
 * as cJSON would: false if it is outside the scanner's subset (cJSON
 * decides then). *end is where the object ends. */
static bool scan_usage(const char *text, size_t len, struct usage_scan *s, const char **end)
{
    *s = (struct usage_scan){ .js = { text, text + len }, .in_details = -1 };
    if (!scan_object(s, 0))
        return false;
    *end = s->js.p;
    return true;
}

static bool usage_counts(const struct usage_scan *s, struct tok_usage *u)
{
    struct counts n = { 0 };
    n.from_input = s->kind[U_PROMPT] == U_ABSENT;
    n.prompt = pick_count(s, U_PROMPT, U_INPUT, &n.v_prompt);
    n.completion = pick_count(s, U_COMPLETION, U_OUTPUT, &n.v_completion);
    n.cache_write = pick_count(s, U_CACHE_WRITE, U_CACHE_WRITE, &n.v_cache_write);
    n.cache_read = pick_count(s, U_CACHE_READ, U_CACHE_READ, &n.v_cache_read);
    /* as cJSON: the prompt details if they are an object, else the input details */
    int d = s->details_kind[D_PROMPT] == U_OBJECT ? D_PROMPT : D_INPUT;
    n.cached = C_ABSENT;
    if (s->details_kind[d] == U_OBJECT && s->cached_kind[d] != U_ABSENT) {
        n.cached = s->cached_kind[d] == U_NUMBER && s->cached[d] >= 0 ? C_VALID : C_INVALID;
        n.v_cached = s->cached[d];
    }
    return take_counts(&n, u);
}

bool tok_usage_from_object(const char *text, size_t len, struct tok_usage *u)
{
    struct usage_scan s;
    const char *end;
    if (!scan_usage(text, len, &s, &end))
        return parse_usage_object_json(text, len, u);
    struct json_scan rest = { end, text + len };
    return js_at_end(&rest) ? usage_counts(&s, u) : parse_usage_object_json(text, len, u);
}

/* Where the value of the first "usage" key in the text starts, if it is an
 * object ('{' at *obj), found without parsing the rest (a response can be
 * megabytes; its usage is a few bytes). Strings are skipped so a "usage"
 * inside generated text does not count. */
static bool find_usage_object(const char *data, size_t len, size_t *obj)
{
    size_t i = 0;
    while (i < len) {
        const char *q = memchr(data + i, '"', len - i);
        if (!q)
            return false;
        size_t start = (size_t)(q - data) + 1;
        i = start;
        for (;;) { /* to the closing quote: one not escaped by an odd run of backslashes */
            q = i < len ? memchr(data + i, '"', len - i) : NULL;
            if (!q) {
                i = len;
                break;
            }
            size_t at = (size_t)(q - data), bs = 0;
            while (at - bs > start && data[at - bs - 1] == '\\')
                bs++;
            i = at;
            if (bs % 2 == 0)
                break;
            i++;
        }
        if (i >= len)
            return false;
        size_t end = i++;
        if (end - start != 5 || memcmp(data + start, "usage", 5) != 0)
            continue;
        size_t j = json_skip_ws(data, i, len);
        if (j >= len || data[j] != ':')
            continue; /* "usage" as a value, not a key */
        j = json_skip_ws(data, j + 1, len);
        if (j >= len || data[j] != '{')
            continue;
        *obj = j;
        return true;
    }
    return false;
}

/* The length of the object at data[0] == '{' by its braces (strings
 * skipped), for cJSON when the scanner declined it. */
static bool object_len(const char *data, size_t len, size_t *n)
{
    int depth = 0;
    for (size_t k = 0; k < len; k++) {
        if (data[k] == '"') {
            for (k++; k < len && data[k] != '"'; k++)
                if (data[k] == '\\')
                    k++;
        } else if (data[k] == '{') {
            depth++;
        } else if (data[k] == '}' && --depth == 0) {
            *n = k + 1;
            return true;
        }
    }
    return false;
}

bool tok_usage_from_body(const char *body, size_t len, struct tok_usage *u)
{
    size_t at, n;
    struct usage_scan s;
    const char *end;
    if (!find_usage_object(body, len, &at))
        return false;
    if (scan_usage(body + at, len - at, &s, &end)) /* where the scanner ends is where the braces do */
        return usage_counts(&s, u);
    return object_len(body + at, len - at, &n) && parse_usage_object_json(body + at, n, u);
}

bool tok_usage_from_sse_data(const char *data, size_t len, struct tok_usage *u)
{
    return tok_usage_from_body(data, len, u);
}

/* ---- relayed output text ---------------------------------------------------------- */

/* The members whose string value is output text, in the order they are looked for. */
static const struct {
    const char *key;
    size_t len;
} output_keys[] = {
#define KEY(k) { "\"" k "\":\"", sizeof(k) + 3 } /* the quotes, the colon, the quote */
    KEY("content"), KEY("arguments"), KEY("refusal"), KEY("reasoning_content"),
    KEY("reasoning"), KEY("delta"), KEY("text"), KEY("partial_json"), KEY("thinking"),
#undef KEY
};

bool tok_output_text(const char *data, size_t len, struct tok_text *t)
{
    for (size_t k = 0; k < SL_ARRAY_LEN(output_keys); k++) {
        const char *p = memmem(data, len, output_keys[k].key, output_keys[k].len);
        if (!p)
            continue;
        const char *end = data + len;
        for (p += output_keys[k].len; p < end && *p != '"'; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '\\' && p + 1 < end)
                p++; /* an escape: one character */
            if (c < 0x80)
                t->ascii++;
            else if ((c & 0xC0) != 0x80)
                t->other++;
        }
        return true;
    }
    return false;
}

bool tok_chat_content(const char *data, size_t len, struct sl_str *raw)
{
    const char *p = memmem(data, len, output_keys[0].key, output_keys[0].len);
    if (!p)
        return false;
    const char *start = p + output_keys[0].len, *end = data + len;
    for (p = start; p < end && *p != '"'; p++)
        if (*p == '\\' && p + 1 < end)
            p++;
    if (p >= end)
        return false; /* not closed: not a whole string */
    *raw = (struct sl_str){ start, (size_t)(p - start) };
    return true;
}

int64_t tok_text_tokens(const struct tok_text *t)
{
    return (t->ascii + 3) / 4 + t->other;
}

/* ---- prompt estimate ---------------------------------------------------------- */

#include <stdlib.h>

#include "sluice/api_call.h"

#define IMAGE_HIGH 765
#define IMAGE_LOW 85

int64_t tok_estimate_text(const char *s, size_t len)
{
    int64_t ascii = 0, other = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80)
            ascii++;
        else if ((c & 0xC0) != 0x80) /* the first byte of a code point */
            other++;
    }
    return (ascii + 3) / 4 + other;
}

static int64_t estimate_string(const cJSON *v)
{
    return cJSON_IsString(v) ? tok_estimate_text(v->valuestring, strlen(v->valuestring)) : 0;
}

/* Structured values (tools, tool calls, schemas) count as their JSON text. */
static int64_t estimate_json(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return 0;
    char *text = cJSON_PrintUnformatted(v);
    int64_t n = text ? tok_estimate_text(text, strlen(text)) : 0;
    free(text);
    return n;
}

static bool is_image_part(const char *type)
{
    return strcmp(type, "image_url") == 0 || strcmp(type, "input_image") == 0;
}

static int64_t estimate_image(const cJSON *part)
{
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(part, "detail");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(part, "image_url");
    if (!cJSON_IsString(detail) && cJSON_IsObject(url))
        detail = cJSON_GetObjectItemCaseSensitive(url, "detail");
    return cJSON_IsString(detail) && strcmp(detail->valuestring, "low") == 0 ? IMAGE_LOW : IMAGE_HIGH;
}

/* Message content: a string, or an array of parts (text, images, ...). */
static int64_t estimate_content(const cJSON *content)
{
    if (cJSON_IsString(content))
        return estimate_string(content);
    int64_t n = 0;
    const cJSON *part;
    if (!cJSON_IsArray(content))
        return 0;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        if (cJSON_IsString(part))
            n += estimate_string(part);
        else if (cJSON_IsString(type) && is_image_part(type->valuestring))
            n += estimate_image(part);
        else
            n += estimate_string(cJSON_GetObjectItemCaseSensitive(part, "text"));
    }
    return n;
}

static int64_t estimate_messages(const cJSON *messages)
{
    int64_t n = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        n += TOK_PER_MESSAGE;
        n += estimate_content(cJSON_GetObjectItemCaseSensitive(m, "content"));
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(m, "name");
        if (cJSON_IsString(name))
            n += TOK_PER_NAME + estimate_string(name);
        n += estimate_json(cJSON_GetObjectItemCaseSensitive(m, "tool_calls"));
        n += estimate_json(cJSON_GetObjectItemCaseSensitive(m, "function_call"));
    }
    return n + TOK_REPLY_PRIMING;
}

/* prompt / input of completions and embeddings: a string, strings, token ids,
 * or arrays of token ids. */
static int64_t estimate_prompt_value(const cJSON *v)
{
    if (cJSON_IsString(v))
        return estimate_string(v);
    if (cJSON_IsNumber(v))
        return 1;
    int64_t n = 0;
    const cJSON *item;
    if (cJSON_IsArray(v))
        cJSON_ArrayForEach(item, v) n += estimate_prompt_value(item);
    return n;
}

/* Responses API input: a string, or items (messages with content parts,
 * function call outputs, ...). */
static int64_t estimate_response_input(const cJSON *input)
{
    if (cJSON_IsString(input))
        return estimate_string(input) + TOK_PER_MESSAGE;
    int64_t n = 0;
    const cJSON *item;
    if (!cJSON_IsArray(input))
        return 0;
    cJSON_ArrayForEach(item, input) {
        n += TOK_PER_MESSAGE;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
        if (content)
            n += estimate_content(content);
        else
            n += estimate_string(cJSON_GetObjectItemCaseSensitive(item, "output")) +
                 estimate_string(cJSON_GetObjectItemCaseSensitive(item, "arguments"));
    }
    return n;
}

/* Anthropic's content: text, or blocks (text, image, tool_use with its
 * input, tool_result with its own content, thinking, documents as their
 * JSON text). */
static int64_t estimate_blocks(const cJSON *content, int depth)
{
    if (cJSON_IsString(content))
        return estimate_string(content);
    int64_t n = 0;
    const cJSON *b;
    if (!cJSON_IsArray(content) || depth > 2)
        return 0;
    cJSON_ArrayForEach(b, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(b, "type");
        const char *t = cJSON_IsString(type) ? type->valuestring : "";
        if (strcmp(t, "text") == 0)
            n += estimate_string(cJSON_GetObjectItemCaseSensitive(b, "text"));
        else if (strcmp(t, "image") == 0)
            n += IMAGE_HIGH;
        else if (strcmp(t, "tool_use") == 0)
            n += estimate_string(cJSON_GetObjectItemCaseSensitive(b, "name")) +
                 estimate_json(cJSON_GetObjectItemCaseSensitive(b, "input"));
        else if (strcmp(t, "tool_result") == 0)
            n += estimate_blocks(cJSON_GetObjectItemCaseSensitive(b, "content"), depth + 1);
        else if (strcmp(t, "thinking") == 0)
            n += estimate_string(cJSON_GetObjectItemCaseSensitive(b, "thinking"));
        else
            n += estimate_json(b);
    }
    return n;
}

static int64_t estimate_anthropic(const cJSON *root)
{
    int64_t n = estimate_blocks(cJSON_GetObjectItemCaseSensitive(root, "system"), 0);
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(root, "messages")) {
        n += TOK_PER_MESSAGE + estimate_blocks(cJSON_GetObjectItemCaseSensitive(m, "content"), 0);
    }
    return n + TOK_REPLY_PRIMING + estimate_json(cJSON_GetObjectItemCaseSensitive(root, "tools"));
}

int64_t tok_estimate_prompt(const struct api_call *call, size_t body_len)
{
    const cJSON *root = call->root;
    int64_t n = 0;
    switch (call->endpoint) {
    case API_CHAT:
        n = estimate_messages(cJSON_GetObjectItemCaseSensitive(root, "messages"));
        n += estimate_json(cJSON_GetObjectItemCaseSensitive(root, "tools"));
        n += estimate_json(cJSON_GetObjectItemCaseSensitive(root, "functions"));
        n += estimate_json(cJSON_GetObjectItemCaseSensitive(root, "response_format"));
        break;
    case API_COMPLETIONS:
        n = estimate_prompt_value(cJSON_GetObjectItemCaseSensitive(root, "prompt"));
        break;
    case API_EMBEDDINGS:
        n = estimate_prompt_value(cJSON_GetObjectItemCaseSensitive(root, "input"));
        break;
    case API_RESPONSES:
        n = estimate_response_input(cJSON_GetObjectItemCaseSensitive(root, "input"));
        n += estimate_string(cJSON_GetObjectItemCaseSensitive(root, "instructions"));
        n += estimate_json(cJSON_GetObjectItemCaseSensitive(root, "tools"));
        break;
    case API_MESSAGES:
        n = estimate_anthropic(root);
        break;
    case API_COUNT_TOKENS: /* counts, generates nothing: no tokens are reserved */
        break;
    case API_OTHER:
        n = (int64_t)(body_len + 3) / 4;
        break;
    }
    return n;
}
