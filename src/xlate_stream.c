/* Streams translated between the dialects, event by event (xlate_stream.h).
 * Chat chunks carry no block structure, so the Messages side opens and
 * closes blocks as the chunks change kind (text, reasoning, a new tool
 * call); its closing events wait for the usage chunk (or [DONE]) so that
 * message_delta carries the whole usage. */
#include "sluice/xlate_stream.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define get xl_get
#define str xl_str

static int64_t count(const cJSON *o, const char *name)
{
    const cJSON *v = get(o, name);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9e15 ? (int64_t)v->valuedouble
                                                                             : 0;
}

/* One SSE event: "event: NAME" (if any) and the JSON as its data; frees it. */
static void emit(struct sl_buf *out, const char *name, cJSON *data)
{
    char *text = cJSON_PrintUnformatted(data);
    if (name)
        sl_buf_printf(out, "event: %s\n", name);
    sl_buf_appends(out, "data: ");
    sl_buf_appends(out, text ? text : "{}");
    sl_buf_appends(out, "\n\n");
    free(text);
    cJSON_Delete(data);
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

void xl_stream_init(struct xl_stream *s, enum xl_dir dir, bool include_usage)
{
    memset(s, 0, sizeof(*s));
    s->dir = dir;
    s->include_usage = include_usage;
    s->created = (int64_t)time(NULL);
}

static void upstream_error(struct xl_stream *s, const cJSON *e, struct sl_buf *out)
{
    const char *message = str(e, "message") ? str(e, "message") : "The upstream stream failed.";
    if (s->dir == XL_MESSAGES_TO_CHAT) {
        cJSON *ev = typed("error");
        cJSON *err = cJSON_AddObjectToObject(ev, "error");
        cJSON_AddStringToObject(err, "type", "api_error");
        cJSON_AddStringToObject(err, "message", message);
        emit(out, "error", ev);
    } else {
        cJSON *ev = cJSON_CreateObject();
        cJSON *err = cJSON_AddObjectToObject(ev, "error");
        cJSON_AddStringToObject(err, "message", message);
        cJSON_AddStringToObject(err, "type", str(e, "type") ? str(e, "type") : "api_error");
        cJSON_AddNullToObject(err, "param");
        cJSON_AddNullToObject(err, "code");
        emit(out, NULL, ev);
    }
    s->finished = true;
}

/* ==== chat chunks -> Messages events ============================================== */

static void message_start(struct xl_stream *s, struct sl_buf *out)
{
    cJSON *ev = typed("message_start");
    cJSON *m = cJSON_AddObjectToObject(ev, "message");
    char id[128];
    snprintf(id, sizeof(id), "msg_%s", s->id[0] ? s->id : "sluice");
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "type", "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "model", s->model);
    cJSON_AddArrayToObject(m, "content");
    cJSON_AddNullToObject(m, "stop_reason");
    cJSON_AddNullToObject(m, "stop_sequence");
    cJSON *u = cJSON_AddObjectToObject(m, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", 0);
    cJSON_AddNumberToObject(u, "output_tokens", 0);
    emit(out, "message_start", ev);
    s->started = true;
}

static void block_stop(struct xl_stream *s, struct sl_buf *out)
{
    if (s->block == XL_BLOCK_NONE)
        return;
    cJSON *ev = typed("content_block_stop");
    cJSON_AddNumberToObject(ev, "index", s->blocks - 1);
    emit(out, "content_block_stop", ev);
    s->block = XL_BLOCK_NONE;
}

/* Opens a block of this kind (block: its content_block, taken). */
static void block_start(struct xl_stream *s, enum xl_block kind, cJSON *block, struct sl_buf *out)
{
    block_stop(s, out);
    cJSON *ev = typed("content_block_start");
    cJSON_AddNumberToObject(ev, "index", s->blocks++);
    cJSON_AddItemToObject(ev, "content_block", block);
    emit(out, "content_block_start", ev);
    s->block = kind;
}

static void block_delta(struct xl_stream *s, const char *type, const char *field, const char *text,
                        struct sl_buf *out)
{
    cJSON *ev = typed("content_block_delta");
    cJSON_AddNumberToObject(ev, "index", s->blocks - 1);
    cJSON *d = cJSON_AddObjectToObject(ev, "delta");
    cJSON_AddStringToObject(d, "type", type);
    cJSON_AddStringToObject(d, field, text);
    emit(out, "content_block_delta", ev);
}

static void text_delta(struct xl_stream *s, enum xl_block kind, const char *text, struct sl_buf *out)
{
    if (s->block != kind) {
        cJSON *b = typed(kind == XL_BLOCK_TEXT ? "text" : "thinking");
        cJSON_AddStringToObject(b, kind == XL_BLOCK_TEXT ? "text" : "thinking", "");
        if (kind == XL_BLOCK_THINKING)
            cJSON_AddStringToObject(b, "signature", "");
        block_start(s, kind, b, out);
    }
    if (kind == XL_BLOCK_TEXT)
        block_delta(s, "text_delta", "text", text, out);
    else
        block_delta(s, "thinking_delta", "thinking", text, out);
}

static void tool_deltas(struct xl_stream *s, const cJSON *calls, struct sl_buf *out)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *fn = get(c, "function");
        if (str(c, "id")) { /* a new call: a tool_use block */
            cJSON *b = typed("tool_use");
            cJSON_AddStringToObject(b, "id", str(c, "id"));
            cJSON_AddStringToObject(b, "name", str(fn, "name") ? str(fn, "name") : "");
            cJSON_AddObjectToObject(b, "input");
            block_start(s, XL_BLOCK_TOOL, b, out);
        }
        const char *args = str(fn, "arguments");
        if (args && args[0] && s->block == XL_BLOCK_TOOL)
            block_delta(s, "input_json_delta", "partial_json", args, out);
    }
}

static void message_end(struct xl_stream *s, struct sl_buf *out)
{
    block_stop(s, out);
    cJSON *ev = typed("message_delta");
    cJSON *d = cJSON_AddObjectToObject(ev, "delta");
    cJSON_AddStringToObject(d, "stop_reason", xl_stop_reason(s->stop[0] ? s->stop : NULL));
    cJSON_AddNullToObject(d, "stop_sequence");
    cJSON *u = cJSON_AddObjectToObject(ev, "usage");
    cJSON_AddNumberToObject(u, "input_tokens", (double)(s->input - s->cached));
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", (double)s->cached);
    cJSON_AddNumberToObject(u, "output_tokens", (double)s->output);
    emit(out, "message_delta", ev);
    emit(out, "message_stop", typed("message_stop"));
    s->finished = true;
}

static void chat_chunk(struct xl_stream *s, const cJSON *chunk, struct sl_buf *out)
{
    if (!s->started) {
        snprintf(s->id, sizeof(s->id), "%s", str(chunk, "id") ? str(chunk, "id") : "");
        snprintf(s->model, sizeof(s->model), "%s", str(chunk, "model") ? str(chunk, "model") : "");
        message_start(s, out);
    }
    const cJSON *choice = cJSON_GetArrayItem(get(chunk, "choices"), 0);
    const cJSON *delta = get(choice, "delta");
    const char *reasoning = str(delta, "reasoning_content");
    if (!reasoning)
        reasoning = str(delta, "reasoning");
    if (reasoning && reasoning[0])
        text_delta(s, XL_BLOCK_THINKING, reasoning, out);
    if (str(delta, "content") && str(delta, "content")[0])
        text_delta(s, XL_BLOCK_TEXT, str(delta, "content"), out);
    tool_deltas(s, get(delta, "tool_calls"), out);
    if (str(choice, "finish_reason")) {
        snprintf(s->stop, sizeof(s->stop), "%s", str(choice, "finish_reason"));
        block_stop(s, out);
    }
    const cJSON *u = get(chunk, "usage");
    if (cJSON_IsObject(u)) {
        s->input = count(u, "prompt_tokens");
        s->cached = count(get(u, "prompt_tokens_details"), "cached_tokens");
        s->output = count(u, "completion_tokens");
        s->usage_seen = true;
    }
    if (s->usage_seen && s->stop[0]) /* the usage chunk follows the last choice */
        message_end(s, out);
}

/* ==== Messages events -> chat chunks ============================================== */

/* A chunk of the stream: its delta (taken), finish_reason, or usage. */
static void chunk(struct xl_stream *s, cJSON *delta, const char *finish, bool usage,
                  struct sl_buf *out)
{
    cJSON *c = cJSON_CreateObject();
    char id[128];
    snprintf(id, sizeof(id), "chatcmpl-%s", s->id[0] ? s->id : "sluice");
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "object", "chat.completion.chunk");
    cJSON_AddNumberToObject(c, "created", (double)s->created);
    cJSON_AddStringToObject(c, "model", s->model);
    cJSON *choices = cJSON_AddArrayToObject(c, "choices");
    if (delta) {
        cJSON *choice = cJSON_CreateObject();
        cJSON_AddNumberToObject(choice, "index", 0);
        cJSON_AddItemToObject(choice, "delta", delta);
        if (finish)
            cJSON_AddStringToObject(choice, "finish_reason", finish);
        else
            cJSON_AddNullToObject(choice, "finish_reason");
        cJSON_AddItemToArray(choices, choice);
    }
    if (usage) {
        int64_t prompt = s->input + s->written + s->cached;
        cJSON *u = cJSON_AddObjectToObject(c, "usage");
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
        cJSON_AddNumberToObject(u, "completion_tokens", (double)s->output);
        cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + s->output));
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"),
                                "cached_tokens", (double)s->cached);
    }
    emit(out, NULL, c);
}

static void take_usage(struct xl_stream *s, const cJSON *u)
{
    if (!cJSON_IsObject(u))
        return;
    if (get(u, "input_tokens")) /* message_delta may repeat them (newer API versions) */
        s->input = count(u, "input_tokens");
    if (get(u, "cache_creation_input_tokens"))
        s->written = count(u, "cache_creation_input_tokens");
    if (get(u, "cache_read_input_tokens"))
        s->cached = count(u, "cache_read_input_tokens");
    if (get(u, "output_tokens"))
        s->output = count(u, "output_tokens");
}

static void block_begins(struct xl_stream *s, const cJSON *block, struct sl_buf *out)
{
    const char *type = str(block, "type");
    if (!type || strcmp(type, "tool_use") != 0)
        return;
    cJSON *delta = cJSON_CreateObject();
    cJSON *call = cJSON_CreateObject();
    cJSON_AddNumberToObject(call, "index", s->tools++);
    cJSON_AddStringToObject(call, "id", str(block, "id") ? str(block, "id") : "");
    cJSON_AddStringToObject(call, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(call, "function");
    cJSON_AddStringToObject(fn, "name", str(block, "name") ? str(block, "name") : "");
    cJSON_AddStringToObject(fn, "arguments", "");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(delta, "tool_calls"), call);
    chunk(s, delta, NULL, false, out);
}

static void block_continues(struct xl_stream *s, const cJSON *d, struct sl_buf *out)
{
    const char *type = str(d, "type");
    cJSON *delta = cJSON_CreateObject();
    if (type && strcmp(type, "text_delta") == 0 && str(d, "text")) {
        cJSON_AddStringToObject(delta, "content", str(d, "text"));
    } else if (type && strcmp(type, "thinking_delta") == 0 && str(d, "thinking")) {
        cJSON_AddStringToObject(delta, "reasoning_content", str(d, "thinking"));
    } else if (type && strcmp(type, "input_json_delta") == 0 && str(d, "partial_json") && s->tools) {
        cJSON *call = cJSON_CreateObject();
        cJSON_AddNumberToObject(call, "index", s->tools - 1);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(call, "function"), "arguments",
                                str(d, "partial_json"));
        cJSON_AddItemToArray(cJSON_AddArrayToObject(delta, "tool_calls"), call);
    } else {
        cJSON_Delete(delta); /* a signature, or a kind chat has no word for */
        return;
    }
    chunk(s, delta, NULL, false, out);
}

static void messages_event(struct xl_stream *s, const cJSON *ev, struct sl_buf *out)
{
    const char *type = str(ev, "type");
    if (!type)
        return;
    if (strcmp(type, "message_start") == 0) {
        const cJSON *m = get(ev, "message");
        snprintf(s->id, sizeof(s->id), "%s", str(m, "id") ? str(m, "id") : "");
        snprintf(s->model, sizeof(s->model), "%s", str(m, "model") ? str(m, "model") : "");
        take_usage(s, get(m, "usage"));
        cJSON *delta = cJSON_CreateObject();
        cJSON_AddStringToObject(delta, "role", "assistant");
        cJSON_AddStringToObject(delta, "content", "");
        chunk(s, delta, NULL, false, out);
        s->started = true;
    } else if (strcmp(type, "content_block_start") == 0) {
        block_begins(s, get(ev, "content_block"), out);
    } else if (strcmp(type, "content_block_delta") == 0) {
        block_continues(s, get(ev, "delta"), out);
    } else if (strcmp(type, "message_delta") == 0) {
        take_usage(s, get(ev, "usage"));
        const char *stop = str(get(ev, "delta"), "stop_reason");
        snprintf(s->stop, sizeof(s->stop), "%s", stop ? stop : "end_turn");
        chunk(s, cJSON_CreateObject(), xl_finish_reason(s->stop), false, out);
    } else if (strcmp(type, "message_stop") == 0) {
        if (s->include_usage)
            chunk(s, NULL, NULL, true, out);
        sl_buf_appends(out, "data: [DONE]\n\n");
        s->finished = true;
    } else if (strcmp(type, "error") == 0) {
        upstream_error(s, get(ev, "error"), out);
    }
}

void xl_stream_event(struct xl_stream *s, const char *data, size_t len, struct sl_buf *out)
{
    if (s->finished)
        return;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        if (s->dir == XL_MESSAGES_TO_CHAT && s->started)
            message_end(s, out); /* no usage chunk came */
        return;
    }
    cJSON *ev = cJSON_ParseWithLength(data, len);
    if (!cJSON_IsObject(ev)) {
        cJSON_Delete(ev);
        return;
    }
    if (s->dir == XL_MESSAGES_TO_CHAT && get(ev, "error"))
        upstream_error(s, get(ev, "error"), out);
    else if (s->dir == XL_MESSAGES_TO_CHAT)
        chat_chunk(s, ev, out);
    else
        messages_event(s, ev, out);
    cJSON_Delete(ev);
}
