/* sluice-mock: an OpenAI-compatible upstream for the quick start, the tests
 * and the benchmarks. It answers chat completions, completions, embeddings
 * and responses (plain and Azure deployment paths), streams with an optional
 * usage chunk, reports deterministic usage, and injects faults on request.
 *
 *   sluice-mock --port N [--host ADDR] [--api-key KEY] [--models a,b,c]
 *
 * Answers as OpenAI's parsers expect: embeddings in floats or base64
 * (encoding_format), complete Responses API objects and their full stream of
 * events, a tool call for a chat or Responses request with tools (unless it
 * answers a tool), usage chunks when asked.
 * Besides the generating endpoints: GET /v1/models (the --models list),
 * files (upload, list, retrieve, content, delete, kept in memory), audio
 * transcriptions and translations (multipart), and any other path answered
 * with what arrived ({"id":"echo-N","object":"mock.echo","method":...,"path":...}).
 *
 * Anthropic's Messages API too (POST /v1/messages, plain and streamed with
 * its event sequence, tools as tool_use blocks, cache usage, errors in its
 * shape; /v1/messages/count_tokens), authenticated by x-api-key as well.
 *
 * A chat request whose last message is the assistant's (a prefill, as
 * sluice sends to continue a cut stream) is continued: the words it already
 * has are not generated again (tok0 tok1 -> " tok2" ... up to the length).
 *
 * Faults per request (request headers) or for every request (POST
 * /_mock/config with the same names as JSON keys, without "x-mock-"):
 *   x-mock-status: 429            answer with this status (OpenAI-style error)
 *   x-mock-retry-after: 5         Retry-After on that answer
 *   x-mock-retry-after-ms: 1500   retry-after-ms on that answer
 *   x-mock-error-message: X       the error's message (then the status), instead of the mock's
 *   x-mock-error-code: X          the error's code (default rate_limit_exceeded for 429, else
 *                                 mock_error), e.g. context_length_exceeded
 *   x-mock-fail-count: N          (config only) only the next N requests fail
 *   x-mock-fail-model: NAME       the faults (status, close, hang, delay) hit only requests for
 *                                 this model; others are answered
 *   x-mock-delay-ms: 200          wait before the response head
 *   x-mock-chunk-delay-ms: 10     wait between streamed chunks
 *   x-mock-first-token-delay-ms: N  streams: the head (and, for chat, a chunk with the role and
 *                                 empty content) at once, then N ms before the first token
 *   x-mock-hang: 1                never answer
 *   x-mock-drop-after: 3          close the connection after 3 streamed chunks
 *   x-mock-stall-after: 3         send nothing more after 3 streamed chunks, connection open
 *   x-mock-malformed-after: 3     after 3 streamed chunks, one whose data is not JSON
 *   x-mock-no-done: 1             a stream that ends cleanly without its data: [DONE]
 *   x-mock-close: 1               read the request, then close the connection without answering
 *   x-mock-echo: 1                repeat the request's credential in a response header and in
 *                                 the error message (or a first stream event), as careless
 *                                 upstreams do
 *   x-mock-completion-tokens: 8   completion length (default 8, capped by max_tokens)
 *   x-mock-prompt-tokens: 20      reported prompt_tokens (default: words in the prompt)
 *   x-mock-no-usage: 1            never report usage (no usage object, no usage chunk)
 *   x-mock-cached-tokens: 6       of the prompt, reported as cached (prompt_tokens_details)
 *   x-mock-cache-write-tokens: 5  Messages API: of the prompt, written to the prompt cache
 *   x-mock-cache-read-tokens: 7   Messages API: of the prompt, read from it
 *   x-mock-reasoning-tokens: 4    of the completion, reported as reasoning
 *   x-mock-header: N: V           (config "header") one more header line on a 200 answer
 *   x-mock-usage: {...}           the usage object's text exactly as given (invalid numbers too)
 *                                 (completion_tokens_details; included in completion_tokens)
 * Control: GET /_mock/stats, GET /_mock/last, POST /_mock/config, POST /_mock/reset. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sluice/http.h"
#include "sluice/multipart.h"
#include "sluice/tls.h"
#include "sluice/util.h"

struct faults {
    int status;
    char retry_after[32];
    char retry_after_ms[32];
    char error_code[64];
    char error_message[128]; /* the error's message instead of the mock's own */
    int fail_count; /* -1 = every request */
    int delay_ms;
    int chunk_delay_ms;
    int first_token_delay_ms;
    bool hang;
    int drop_after; /* -1 = never */
    int malformed_after; /* -1 = never */
    bool no_done;
    int stall_after; /* -1 = never */
    bool close;
    bool echo;
    int completion_tokens;
    int prompt_tokens; /* -1 = count words */
    bool no_usage;
    int cached_tokens, reasoning_tokens;
    int cache_write_tokens, cache_read_tokens; /* Anthropic's prompt cache, out of the prompt */
    char header[160]; /* "Name: value" added to a 200 answer's head, or "" */
    char fail_model[128]; /* the faults are for this model's requests only, or "" */
    char usage[160];  /* the usage object's text as given (any JSON), or "" */
};

static struct {
    struct event_base *base;
    const char *api_key;
    const char *models; /* what GET /v1/models lists */
    struct faults config;
    long requests;
    long stream_requests;
    long aborted;
    long inflight;
    long max_inflight; /* the most requests open at once since start or reset */
    char *last; /* JSON of the last API request */
    struct http_server *srv;
} mock;

static void faults_default(struct faults *f)
{
    memset(f, 0, sizeof(*f));
    f->fail_count = -1;
    f->drop_after = -1;
    f->malformed_after = -1;
    f->stall_after = -1;
    f->completion_tokens = 8;
    f->prompt_tokens = -1;
}

enum kind { K_CHAT, K_COMPLETION, K_EMBEDDING, K_RESPONSE, K_MESSAGES };

struct mock_req {
    struct http_req *req;
    struct event *timer;
    struct faults f;
    enum kind kind;
    char model[128];
    bool stream, include_usage;
    int prompt_tokens, completion_tokens, n_inputs;
    int sent; /* streamed content chunks so far */
    int offset; /* a continued assistant message: the tokens it already has */
    bool head_sent;
    bool first_token_waited;
    bool malformed_sent;
    bool base64;        /* embeddings: encoding_format "base64" */
    bool done_sent;     /* a tool stream's [DONE] went out */
    bool capped;        /* the completion was cut at the request's max tokens */
    char tool[64];      /* chat with tools: answer with a call to this one */
    char credential[256]; /* the request's Authorization or api-key, for echo */
};

/* ---- helpers ------------------------------------------------------------------ */

static const char json_ct[] = "Content-Type: application/json\r\n";

static void reply_json(struct http_req *req, int status, const char *json)
{
    http_respond(req, status, json_ct, sizeof(json_ct) - 1, json, strlen(json));
}

static int header_int(const struct http_req *req, const char *name, int def)
{
    const struct sl_str *v = http_header(req, name);
    if (!v)
        return def;
    char buf[32];
    snprintf(buf, sizeof(buf), "%.*s", (int)SL_MIN(v->len, 31), v->p);
    return atoi(buf);
}

static void header_str(const struct http_req *req, const char *name, char *out, size_t n)
{
    const struct sl_str *v = http_header(req, name);
    if (v)
        snprintf(out, n, "%.*s", (int)v->len, v->p);
}

static int count_words(const char *s)
{
    int n = 0;
    bool in = false;
    for (; *s; s++) {
        bool space = *s == ' ' || *s == '\n' || *s == '\t';
        if (!space && !in)
            n++;
        in = !space;
    }
    return n;
}

/* Words in every string under v (message contents, prompts, inputs). */
static int words_in(const cJSON *v)
{
    if (cJSON_IsString(v))
        return count_words(v->valuestring);
    int n = 0;
    const cJSON *c;
    if (cJSON_IsArray(v) || cJSON_IsObject(v))
        cJSON_ArrayForEach(c, v) {
            if (!c->string || strcmp(c->string, "role") != 0)
                n += words_in(c);
        }
    return n;
}

static void record_last(const struct http_req *req)
{
    cJSON *o = cJSON_CreateObject();
    char *method = sl_strndup(req->method.p, req->method.len);
    cJSON_AddStringToObject(o, "method", method);
    free(method);
    char *target = sl_strndup(req->target.p, req->target.len);
    cJSON_AddStringToObject(o, "target", target);
    free(target);
    cJSON *h = cJSON_AddObjectToObject(o, "headers");
    for (int i = 0; i < req->nheaders; i++) {
        char *name = sl_strndup(req->headers[i].name.p, req->headers[i].name.len);
        for (char *p = name; *p; p++)
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        char *value = sl_strndup(req->headers[i].value.p, req->headers[i].value.len);
        if (!cJSON_GetObjectItemCaseSensitive(h, name))
            cJSON_AddStringToObject(h, name, value);
        free(name);
        free(value);
    }
    cJSON_AddStringToObject(o, "body", req->body.data ? req->body.data : "");
    cJSON_AddNumberToObject(o, "body_length", (double)req->body.len);
    free(mock.last);
    mock.last = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
}

/* ---- responses ------------------------------------------------------------------- */

static void usage_json(struct sl_buf *b, const struct mock_req *m)
{
    if (m->f.usage[0])
        sl_buf_appends(b, m->f.usage);
    else if (m->f.no_usage)
        sl_buf_appends(b, "null");
    else if (m->kind == K_EMBEDDING)
        sl_buf_printf(b, "{\"prompt_tokens\":%d,\"total_tokens\":%d}", m->prompt_tokens,
                      m->prompt_tokens);
    else
        sl_buf_printf(b, "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                         "\"prompt_tokens_details\":{\"cached_tokens\":%d},"
                         "\"completion_tokens_details\":{\"reasoning_tokens\":%d}}",
                      m->prompt_tokens, m->completion_tokens,
                      m->prompt_tokens + m->completion_tokens,
                      SL_MIN(m->f.cached_tokens, m->prompt_tokens),
                      SL_MIN(m->f.reasoning_tokens, m->completion_tokens));
}

static void text_of(struct sl_buf *b, int tokens);

/* A whole JSON answer (200) with the configured header line (first: it
 * wins over the mock's own of the same name) and these. */
static void respond_whole(struct mock_req *m, const char *lines, const struct sl_buf *b)
{
    char h[384];
    int hlen = snprintf(h, sizeof(h), "Content-Type: application/json\r\n%s%s%s", m->f.header,
                        m->f.header[0] ? "\r\n" : "", lines);
    http_respond(m->req, 200, h, (size_t)hlen, b->data, b->len);
}

/* ---- Anthropic's Messages API ------------------------------------------------------- */

/* Its usage: the prompt's cached parts reported apart from input_tokens. */
static void message_usage(struct sl_buf *b, const struct mock_req *m, int output)
{
    int written = SL_MIN(m->f.cache_write_tokens, m->prompt_tokens);
    int read = SL_MIN(m->f.cache_read_tokens, m->prompt_tokens - written);
    if (m->f.usage[0])
        sl_buf_appends(b, m->f.usage);
    else
        sl_buf_printf(b, "{\"input_tokens\":%d,\"cache_creation_input_tokens\":%d,"
                         "\"cache_read_input_tokens\":%d,\"output_tokens\":%d,"
                         "\"service_tier\":\"standard\"}",
                      m->prompt_tokens - written - read, written, read, output);
}

static const char *stop_reason(const struct mock_req *m)
{
    return m->tool[0] ? "tool_use" : m->capped ? "max_tokens" : "end_turn";
}

static void whole_message(struct mock_req *m)
{
    struct sl_buf b = { 0 }, text = { 0 };
    text_of(&text, m->completion_tokens);
    sl_buf_printf(&b, "{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":\"assistant\","
                      "\"model\":\"%s\",\"content\":[", m->model);
    if (m->tool[0])
        sl_buf_printf(&b, "{\"type\":\"tool_use\",\"id\":\"toolu_mock\",\"name\":\"%s\","
                          "\"input\":{\"city\":\"Paris\"}}", m->tool);
    else
        sl_buf_printf(&b, "{\"type\":\"text\",\"text\":\"%s\"}", text.data ? text.data : "");
    sl_buf_printf(&b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null", stop_reason(m));
    if (!m->f.no_usage) {
        sl_buf_appends(&b, ",\"usage\":");
        message_usage(&b, m, m->tool[0] ? 12 : m->completion_tokens);
    }
    sl_buf_appends(&b, "}\n");
    respond_whole(m, "request-id: req_mock\r\nanthropic-ratelimit-requests-remaining: 4999\r\n", &b);
    sl_buf_free(&b);
    sl_buf_free(&text);
}

/* A stream's event i: message_start, content_block_start, ping, the deltas
 * (text: one per token; a tool's input: one), content_block_stop,
 * message_delta (stop reason, output tokens), message_stop. */
static bool next_message_event(struct mock_req *m, struct sl_buf *b, int i)
{
    int deltas = m->tool[0] ? 1 : m->completion_tokens;
#define EVENT(name) sl_buf_appends(b, "event: " name "\ndata: {\"type\":\"" name "\"")
    if (i == 0) {
        EVENT("message_start");
        sl_buf_printf(b, ",\"message\":{\"id\":\"msg_mock\",\"type\":\"message\",\"role\":"
                         "\"assistant\",\"model\":\"%s\",\"content\":[],\"stop_reason\":null,"
                         "\"stop_sequence\":null",
                      m->model);
        if (!m->f.no_usage) {
            sl_buf_appends(b, ",\"usage\":");
            message_usage(b, m, 1);
        }
        sl_buf_appends(b, "}}\n\n");
    } else if (i == 1) {
        EVENT("content_block_start");
        if (m->tool[0])
            sl_buf_printf(b, ",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":"
                             "\"toolu_mock\",\"name\":\"%s\",\"input\":{}}}\n\n", m->tool);
        else
            sl_buf_appends(b, ",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    } else if (i == 2) {
        EVENT("ping");
        sl_buf_appends(b, "}\n\n");
    } else if (i < 3 + deltas) {
        EVENT("content_block_delta");
        if (m->tool[0])
            sl_buf_appends(b, ",\"index\":0,\"delta\":{\"type\":\"input_json_delta\","
                              "\"partial_json\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}\n\n");
        else
            sl_buf_printf(b, ",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":"
                             "\"%stok%d\"}}\n\n", i > 3 ? " " : "", i - 3);
    } else if (i == 3 + deltas) {
        EVENT("content_block_stop");
        sl_buf_appends(b, ",\"index\":0}\n\n");
    } else if (i == 4 + deltas) {
        EVENT("message_delta");
        sl_buf_printf(b, ",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":null}", stop_reason(m));
        if (!m->f.no_usage)
            sl_buf_printf(b, ",\"usage\":{\"output_tokens\":%d}", m->tool[0] ? 12 : m->completion_tokens);
        sl_buf_appends(b, "}\n\n");
    } else if (i == 5 + deltas) {
        EVENT("message_stop");
        sl_buf_appends(b, "}\n\n");
    } else {
        return false;
    }
#undef EVENT
    return true;
}

/* An error's body in Anthropic's shape, its type by status. */
static void message_error_body(struct sl_buf *b, const struct mock_req *m)
{
    int st = m->f.status;
    const char *type = st == 400   ? "invalid_request_error"
                       : st == 401 ? "authentication_error"
                       : st == 403 ? "permission_error"
                       : st == 404 ? "not_found_error"
                       : st == 413 ? "request_too_large"
                       : st == 429 ? "rate_limit_error"
                       : st == 529 ? "overloaded_error"
                                   : "api_error";
    sl_buf_printf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s%d%s%s\"}}\n",
                  type, m->f.error_message[0] ? m->f.error_message : "mock upstream error ", st,
                  m->f.echo ? " for a request with credential " : "", m->f.echo ? m->credential : "");
}

/* POST /v1/messages/count_tokens: the words of the system prompt and messages. */
static void count_tokens(struct http_req *req)
{
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    char body[64];
    snprintf(body, sizeof(body), "{\"input_tokens\":%d}\n",
             words_in(cJSON_GetObjectItemCaseSensitive(root, "messages")) +
                 words_in(cJSON_GetObjectItemCaseSensitive(root, "system")));
    cJSON_Delete(root);
    reply_json(req, 200, body);
}

/* A Messages request with tools whose last message does not answer one with
 * a tool_result gets a tool_use of the first tool. */
static void tool_to_use(struct mock_req *m, const cJSON *root, const cJSON *tools)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content"), *block;
    if (!cJSON_IsArray(content))
        content = NULL;
    cJSON_ArrayForEach(block, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(block, "type");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "tool_result") == 0)
            return;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tools, 0), "name");
    if (cJSON_IsString(name))
        snprintf(m->tool, sizeof(m->tool), "%s", name->valuestring);
}

/* A chat or Responses request with tools whose last message (input item) is
 * not a tool's answer gets a call to the first function: what a model does on
 * a tool loop's first turn. */
static void tool_to_call(struct mock_req *m, const cJSON *root)
{
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if ((m->kind != K_CHAT && m->kind != K_RESPONSE && m->kind != K_MESSAGES) ||
        !cJSON_IsArray(tools) || cJSON_GetArraySize(tools) == 0)
        return;
    if (m->kind == K_MESSAGES)
        return tool_to_use(m, root, tools);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, m->kind == K_CHAT ? "messages" : "input");
    const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(last, "type");
    if ((cJSON_IsString(role) && strcmp(role->valuestring, "tool") == 0) ||
        (cJSON_IsString(type) && strcmp(type->valuestring, "function_call_output") == 0))
        return;
    const cJSON *tool = cJSON_GetArrayItem(tools, 0);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tool, "function"); /* chat's shape */
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn ? fn : tool, "name"); /* or flat */
    if (cJSON_IsString(name))
        snprintf(m->tool, sizeof(m->tool), "%s", name->valuestring);
}

/* The Responses API's function call item the mock makes. */
static void function_call_item(struct sl_buf *b, const struct mock_req *m, const char *status,
                               const char *arguments)
{
    sl_buf_printf(b, "{\"type\":\"function_call\",\"id\":\"fc_mock\",\"call_id\":\"call_mock\","
                     "\"name\":\"%s\",\"arguments\":\"%s\",\"status\":\"%s\"}",
                  m->tool, arguments, status);
}

#define MOCK_ARGUMENTS "{\\\"city\\\":\\\"Paris\\\"}"

/* The float32 little-endian bytes of 0.1, 0.2, 0.3, in base64: an embedding
 * as OpenAI sends it for encoding_format "base64". */
static void base64_embedding(struct sl_buf *b)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const float v[3] = { 0.1f, 0.2f, 0.3f };
    unsigned char raw[12];
    memcpy(raw, v, sizeof(raw)); /* x86 and arm are little-endian */
    sl_buf_appends(b, "\"");
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        unsigned w = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        char q[4] = { abc[w >> 18], abc[(w >> 12) & 63], abc[(w >> 6) & 63], abc[w & 63] };
        sl_buf_append(b, q, 4);
    }
    sl_buf_appends(b, "\"");
}

/* A complete Responses API object, as the SDK's parsers expect it. */
static void response_object(struct sl_buf *b, const struct mock_req *m, const char *status,
                            bool with_output)
{
    struct sl_buf text = { 0 };
    text_of(&text, m->completion_tokens);
    sl_buf_printf(b, "{\"id\":\"resp_mock\",\"object\":\"response\",\"created_at\":%ld,"
                     "\"status\":\"%s\",\"error\":null,\"incomplete_details\":null,"
                     "\"instructions\":null,\"model\":\"%s\",\"output\":[",
                  (long)time(NULL), status, m->model);
    if (with_output && m->tool[0])
        function_call_item(b, m, "completed", MOCK_ARGUMENTS);
    else if (with_output)
        sl_buf_printf(b, "{\"type\":\"message\",\"id\":\"msg_mock\",\"status\":\"completed\","
                         "\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":"
                         "\"%s\",\"annotations\":[]}]}",
                      text.data ? text.data : "");
    sl_buf_appends(b, "],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],"
                      "\"usage\":");
    if (with_output && !m->f.no_usage)
        sl_buf_printf(b, "{\"input_tokens\":%d,\"input_tokens_details\":{\"cached_tokens\":%d},"
                         "\"output_tokens\":%d,\"output_tokens_details\":{\"reasoning_tokens\":%d},"
                         "\"total_tokens\":%d}",
                      m->prompt_tokens, SL_MIN(m->f.cached_tokens, m->prompt_tokens),
                      m->completion_tokens, SL_MIN(m->f.reasoning_tokens, m->completion_tokens),
                      m->prompt_tokens + m->completion_tokens);
    else
        sl_buf_appends(b, "null");
    sl_buf_appends(b, "}");
    sl_buf_free(&text);
}

static void text_of(struct sl_buf *b, int tokens)
{
    for (int i = 0; i < tokens; i++)
        sl_buf_printf(b, "%stok%d", i ? " " : "", i);
}

static void whole_response(struct mock_req *m)
{
    if (m->kind == K_MESSAGES)
        return whole_message(m);
    struct sl_buf b = { 0 }, text = { 0 };
    text_of(&text, m->completion_tokens);
    long now = (long)time(NULL);
    switch (m->kind) {
    case K_CHAT:
        if (m->tool[0])
            sl_buf_printf(&b, "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":%ld,"
                              "\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                              "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_mock\","
                              "\"type\":\"function\",\"function\":{\"name\":\"%s\",\"arguments\":"
                              "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}],"
                              "\"usage\":",
                          now, m->model, m->tool);
        else
            sl_buf_printf(&b, "{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"created\":%ld,"
                              "\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                              "\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}],\"usage\":",
                          now, m->model, text.data ? text.data : "");
        break;
    case K_COMPLETION:
        sl_buf_printf(&b, "{\"id\":\"cmpl-mock\",\"object\":\"text_completion\",\"created\":%ld,"
                          "\"model\":\"%s\",\"choices\":[{\"index\":0,\"text\":\"%s\","
                          "\"finish_reason\":\"stop\"}],\"usage\":",
                      now, m->model, text.data ? text.data : "");
        break;
    case K_EMBEDDING:
        sl_buf_appends(&b, "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < m->n_inputs; i++) {
            sl_buf_printf(&b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
            if (m->base64)
                base64_embedding(&b);
            else
                sl_buf_appends(&b, "[0.1,0.2,0.3]");
            sl_buf_appends(&b, "}");
        }
        sl_buf_printf(&b, "],\"model\":\"%s\",\"usage\":", m->model);
        break;
    case K_RESPONSE:
        response_object(&b, m, "completed", true);
        break;
    case K_MESSAGES: /* whole_message */
        break;
    }
    if (m->kind != K_RESPONSE) {
        usage_json(&b, m);
        sl_buf_appends(&b, "}");
    }
    sl_buf_appends(&b, "\n");
    /* A cookie for the caller's session, as OpenAI's edge sets one. */
    respond_whole(m, "Set-Cookie: __cf_bm=mock-session; path=/; HttpOnly\r\nx-request-id: req-mock\r\n",
                  &b);
    sl_buf_free(&b);
    sl_buf_free(&text);
}

/* The head of one Responses stream event: its name, type and sequence number. */
static void response_event(struct sl_buf *b, const char *name, int i)
{
    sl_buf_printf(b, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%d,", name, name, i);
}

/* Every Responses stream's first event. */
static void response_created(struct sl_buf *b, const struct mock_req *m)
{
    response_event(b, "response.created", 0);
    sl_buf_appends(b, "\"response\":");
    response_object(b, m, "in_progress", false);
}

/* The Responses API's stream: created, the item and its part added, a
 * delta per token, text and part and item done, completed with usage. */
static bool next_response_event(struct mock_req *m, struct sl_buf *b, int i)
{
    int n = m->completion_tokens;
    static const char item[] = "\"item_id\":\"msg_mock\",\"output_index\":0";
    struct sl_buf text = { 0 };
    text_of(&text, n);
    const char *t = text.data ? text.data : "";
#define EV(name) response_event(b, name, i)
    if (i == 0) {
        response_created(b, m);
    } else if (i == 1) {
        EV("response.output_item.added");
        sl_buf_appends(b, "\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_mock\","
                          "\"status\":\"in_progress\",\"role\":\"assistant\",\"content\":[]}");
    } else if (i == 2) {
        EV("response.content_part.added");
        sl_buf_printf(b, "%s,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\","
                         "\"annotations\":[]}", item);
    } else if (i < 3 + n) {
        EV("response.output_text.delta");
        sl_buf_printf(b, "%s,\"content_index\":0,\"delta\":\"%stok%d\"", item, i > 3 ? " " : "", i - 3);
    } else if (i == 3 + n) {
        EV("response.output_text.done");
        sl_buf_printf(b, "%s,\"content_index\":0,\"text\":\"%s\"", item, t);
    } else if (i == 4 + n) {
        EV("response.content_part.done");
        sl_buf_printf(b, "%s,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"%s\","
                         "\"annotations\":[]}", item, t);
    } else if (i == 5 + n) {
        EV("response.output_item.done");
        sl_buf_printf(b, "\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"msg_mock\","
                         "\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":"
                         "\"output_text\",\"text\":\"%s\",\"annotations\":[]}]}", t);
    } else if (i == 6 + n) {
        EV("response.completed");
        sl_buf_appends(b, "\"response\":");
        response_object(b, m, "completed", true);
    } else {
        sl_buf_free(&text);
        return false;
    }
#undef EV
    sl_buf_appends(b, "}\n\n");
    sl_buf_free(&text);
    return true;
}

/* The Responses API's stream of a function call: created, the call item
 * added, its arguments' delta and done, the item done, completed. */
static bool next_response_tool_event(struct mock_req *m, struct sl_buf *b, int i)
{
    static const char item[] = "\"item_id\":\"fc_mock\",\"output_index\":0";
#define EV(name) response_event(b, name, i)
    if (i == 0) {
        response_created(b, m);
    } else if (i == 1) {
        EV("response.output_item.added");
        sl_buf_appends(b, "\"output_index\":0,\"item\":");
        function_call_item(b, m, "in_progress", "");
    } else if (i == 2) {
        EV("response.function_call_arguments.delta");
        sl_buf_printf(b, "%s,\"delta\":\"%s\"", item, MOCK_ARGUMENTS);
    } else if (i == 3) {
        EV("response.function_call_arguments.done");
        sl_buf_printf(b, "%s,\"arguments\":\"%s\"", item, MOCK_ARGUMENTS);
    } else if (i == 4) {
        EV("response.output_item.done");
        sl_buf_appends(b, "\"output_index\":0,\"item\":");
        function_call_item(b, m, "completed", MOCK_ARGUMENTS);
    } else if (i == 5) {
        EV("response.completed");
        sl_buf_appends(b, "\"response\":");
        response_object(b, m, "completed", true);
    } else {
        return false;
    }
#undef EV
    sl_buf_appends(b, "}\n\n");
    return true;
}

/* A chat stream that calls a tool: the call's head, its arguments, usage if
 * asked, [DONE]. */
static bool next_tool_event(struct mock_req *m, struct sl_buf *b, int i)
{
    if (i == 0) {
        sl_buf_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"model\":"
                         "\"%s\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":"
                         "null,\"tool_calls\":[{\"index\":0,\"id\":\"call_mock\",\"type\":\"function\","
                         "\"function\":{\"name\":\"%s\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
                      m->model, m->tool);
        return true;
    }
    if (i == 1) {
        sl_buf_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"model\":"
                         "\"%s\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                         "\"function\":{\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                         "\"finish_reason\":\"tool_calls\"}]}\n\n",
                      m->model);
        return true;
    }
    if (i == 2 && m->include_usage && !m->f.no_usage) {
        sl_buf_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"model\":"
                         "\"%s\",\"choices\":[],\"usage\":", m->model);
        usage_json(b, m);
        sl_buf_appends(b, "}\n\n");
        return true;
    }
    if (i <= 3 && !m->done_sent) {
        m->done_sent = true;
        sl_buf_appends(b, "data: [DONE]\n\n");
        return true;
    }
    return false;
}

/* The next SSE event of a stream into b; false after the last one. */
static bool next_event(struct mock_req *m, struct sl_buf *b)
{
    if (m->kind == K_MESSAGES)
        return next_message_event(m, b, m->sent++);
    if (m->kind == K_RESPONSE)
        return m->tool[0] ? next_response_tool_event(m, b, m->sent++)
                          : next_response_event(m, b, m->sent++);
    if (m->tool[0])
        return next_tool_event(m, b, m->sent++);
    int i = m->sent++;
    int n = m->completion_tokens;
    const char *usage_null = m->include_usage ? ",\"usage\":null" : "";
    if (i < n) {
        if (m->kind == K_COMPLETION)
            sl_buf_printf(b, "data: {\"id\":\"cmpl-mock\",\"object\":\"text_completion\",\"model\":"
                             "\"%s\",\"choices\":[{\"index\":0,\"text\":\"%stok%d\",\"finish_reason\":"
                             "%s}]%s}\n\n",
                          m->model, i ? " " : "", i, i == n - 1 ? "\"stop\"" : "null", usage_null);
        else
            sl_buf_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
                             "\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{%s\"content\":"
                             "\"%stok%d\"},\"finish_reason\":%s}]%s}\n\n",
                          m->model, i == 0 ? "\"role\":\"assistant\"," : "", i + m->offset ? " " : "",
                          i + m->offset, i == n - 1 ? "\"stop\"" : "null", usage_null);
        return true;
    }
    if (i == n) {
        if (m->include_usage && !m->f.no_usage) {
            sl_buf_printf(b, "data: {\"id\":\"chatcmpl-mock\",\"object\":\"%s\",\"model\":\"%s\","
                             "\"choices\":[],\"usage\":",
                          m->kind == K_CHAT ? "chat.completion.chunk" : "text_completion", m->model);
            usage_json(b, m);
            sl_buf_appends(b, "}\n\n");
            return true;
        }
        m->sent++;
        i++;
    }
    if (i == n + 1) {
        sl_buf_appends(b, "data: [DONE]\n\n");
        return true;
    }
    return false;
}

static void mock_req_free(struct mock_req *m)
{
    if (m->timer)
        event_free(m->timer);
    mock.inflight--;
    free(m);
}

static void on_abort(struct http_req *req)
{
    mock.aborted++;
    mock_req_free(req->owner);
}

static void arm(struct mock_req *m, int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(m->timer, &tv);
}

/* Sends stream events until a delay or the end. */
static void pump(struct mock_req *m)
{
    struct sl_buf b = { 0 };
    for (;;) {
        if (m->f.drop_after >= 0 && m->sent >= m->f.drop_after) {
            http_stream_abort(m->req); /* no terminating chunk: a broken stream */
            break;
        }
        if (m->f.stall_after >= 0 && m->sent >= m->f.stall_after) {
            sl_buf_free(&b); /* silent until the client gives up */
            return;
        }
        b.len = 0;
        if (m->f.malformed_after >= 0 && m->sent == m->f.malformed_after && !m->malformed_sent) {
            m->malformed_sent = true;
            sl_buf_appends(&b, "data: {\"choices\":[{\"delta\":{\"content\":\"x\"\n\n"); /* cut JSON */
        } else if (!next_event(m, &b) || (m->f.no_done && strcmp(b.data, "data: [DONE]\n\n") == 0)) {
            http_stream_end(m->req);
            break;
        }
        http_stream_write(m->req, b.data, b.len);
        if (m->f.chunk_delay_ms > 0) {
            arm(m, m->f.chunk_delay_ms);
            sl_buf_free(&b);
            return;
        }
    }
    sl_buf_free(&b);
    mock_req_free(m);
}

static void error_response(struct mock_req *m)
{
    struct sl_buf h = { 0 }, b = { 0 };
    sl_buf_appends(&h, json_ct);
    if (m->f.echo)
        sl_buf_printf(&h, "X-Echo-Credential: %s\r\n", m->credential);
    if (m->f.retry_after[0])
        sl_buf_printf(&h, "Retry-After: %s\r\n", m->f.retry_after);
    if (m->f.retry_after_ms[0])
        sl_buf_printf(&h, "retry-after-ms: %s\r\n", m->f.retry_after_ms);
    if (m->kind == K_MESSAGES)
        message_error_body(&b, m);
    else
        sl_buf_printf(&b, "{\"error\":{\"message\":\"%s%d%s%s\",\"type\":\"%s\","
                          "\"param\":null,\"code\":\"%s\"}}\n",
                      m->f.error_message[0] ? m->f.error_message : "mock upstream error ",
                      m->f.status, m->f.echo ? " for a request with credential " : "",
                      m->f.echo ? m->credential : "",
                      m->f.status == 429 ? "requests" : "server_error",
                      m->f.error_code[0]     ? m->f.error_code
                      : m->f.status == 429 ? "rate_limit_exceeded"
                                           : "mock_error");
    http_respond(m->req, m->f.status, h.data, h.len, b.data, b.len);
    sl_buf_free(&h);
    sl_buf_free(&b);
}

static void respond_now(struct mock_req *m)
{
    if (m->f.status && m->f.status != 200) {
        error_response(m);
        mock_req_free(m);
        return;
    }
    if (!m->stream) {
        whole_response(m);
        mock_req_free(m);
        return;
    }
    if (!m->head_sent) {
        char h[320];
        int hlen = snprintf(h, sizeof(h),
                            "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                            "x-request-id: req-mock\r\n%s%s",
                            m->f.header, m->f.header[0] ? "\r\n" : "");
        http_stream_begin(m->req, 200, h, (size_t)hlen);
        m->head_sent = true;
        if (m->f.echo) {
            char ev[320];
            int n = snprintf(ev, sizeof(ev), "data: {\"echo\":\"%s\"}\n\n", m->credential);
            http_stream_write(m->req, ev, (size_t)n);
        }
    }
    if (m->f.first_token_delay_ms > 0 && !m->first_token_waited) { /* a slow first token */
        m->first_token_waited = true;
        if (m->kind == K_MESSAGES) { /* message_start and the first block's start */
            struct sl_buf ev = { 0 };
            next_message_event(m, &ev, m->sent++);
            next_message_event(m, &ev, m->sent++);
            http_stream_write(m->req, ev.data, ev.len);
            sl_buf_free(&ev);
        } else if (m->kind == K_CHAT && !m->tool[0]) {
            char ev[256];
            int n = snprintf(ev, sizeof(ev),
                             "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\","
                             "\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{\"role\":"
                             "\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
                             m->model);
            http_stream_write(m->req, ev, (size_t)n);
        }
        return arm(m, m->f.first_token_delay_ms);
    }
    pump(m);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    respond_now(arg);
}

/* ---- request handling ------------------------------------------------------------- */

static bool take_failure(void)
{
    if ((!mock.config.status || mock.config.status == 200) && !mock.config.close)
        return false;
    if (mock.config.fail_count < 0)
        return true;
    if (mock.config.fail_count == 0)
        return false;
    mock.config.fail_count--;
    return true;
}

static void apply_header_faults(const struct http_req *req, struct faults *f)
{
    f->status = header_int(req, "x-mock-status", f->status);
    header_str(req, "x-mock-retry-after", f->retry_after, sizeof(f->retry_after));
    header_str(req, "x-mock-retry-after-ms", f->retry_after_ms, sizeof(f->retry_after_ms));
    header_str(req, "x-mock-error-code", f->error_code, sizeof(f->error_code));
    header_str(req, "x-mock-error-message", f->error_message, sizeof(f->error_message));
    f->delay_ms = header_int(req, "x-mock-delay-ms", f->delay_ms);
    f->chunk_delay_ms = header_int(req, "x-mock-chunk-delay-ms", f->chunk_delay_ms);
    f->first_token_delay_ms = header_int(req, "x-mock-first-token-delay-ms", f->first_token_delay_ms);
    f->hang = header_int(req, "x-mock-hang", f->hang) != 0;
    f->drop_after = header_int(req, "x-mock-drop-after", f->drop_after);
    f->malformed_after = header_int(req, "x-mock-malformed-after", f->malformed_after);
    f->no_done = header_int(req, "x-mock-no-done", f->no_done) != 0;
    f->stall_after = header_int(req, "x-mock-stall-after", f->stall_after);
    f->close = header_int(req, "x-mock-close", f->close) != 0;
    f->echo = header_int(req, "x-mock-echo", f->echo) != 0;
    f->completion_tokens = header_int(req, "x-mock-completion-tokens", f->completion_tokens);
    f->prompt_tokens = header_int(req, "x-mock-prompt-tokens", f->prompt_tokens);
    f->no_usage = header_int(req, "x-mock-no-usage", f->no_usage) != 0;
    f->cached_tokens = header_int(req, "x-mock-cached-tokens", f->cached_tokens);
    f->reasoning_tokens = header_int(req, "x-mock-reasoning-tokens", f->reasoning_tokens);
    f->cache_write_tokens = header_int(req, "x-mock-cache-write-tokens", f->cache_write_tokens);
    f->cache_read_tokens = header_int(req, "x-mock-cache-read-tokens", f->cache_read_tokens);
    header_str(req, "x-mock-header", f->header, sizeof(f->header));
    header_str(req, "x-mock-fail-model", f->fail_model, sizeof(f->fail_model));
    header_str(req, "x-mock-usage", f->usage, sizeof(f->usage));
}

static bool authorized(const struct http_req *req)
{
    if (!mock.api_key)
        return true;
    const struct sl_str *v = http_header(req, "authorization");
    size_t n = strlen(mock.api_key);
    if (v && v->len == n + 7 && memcmp(v->p, "Bearer ", 7) == 0 && memcmp(v->p + 7, mock.api_key, n) == 0)
        return true;
    v = http_header(req, "api-key");
    if (!v)
        v = http_header(req, "x-api-key");
    return v && v->len == n && memcmp(v->p, mock.api_key, n) == 0;
}

static void echo_request(struct http_req *req);
static void error_response(struct mock_req *m);

/* A chat whose last message is the assistant's is a continuation: its words
 * are the tokens already said. */
static void continued_from(struct mock_req *m, const cJSON *msgs)
{
    const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(last, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(last, "content");
    if (m->kind != K_CHAT || !cJSON_IsString(role) || strcmp(role->valuestring, "assistant") != 0 ||
        !cJSON_IsString(content))
        return;
    int words = 0;
    for (const char *p = content->valuestring; *p; p++)
        if (*p != ' ' && (p == content->valuestring || p[-1] == ' '))
            words++;
    m->offset = SL_MIN(words, m->completion_tokens);
    m->completion_tokens -= m->offset;
}

/* Whether the request's body names this model. */
static bool for_model(const struct http_req *req, const char *name)
{
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    bool is = cJSON_IsString(model) && strcmp(model->valuestring, name) == 0;
    cJSON_Delete(root);
    return is;
}

static void api_request(struct http_req *req, struct sl_str path)
{
    /* Azure: /openai/deployments/{deployment}/... */
    if (path.len > 20 && memcmp(path.p, "/openai/deployments/", 20) == 0) {
        const char *slash = memchr(path.p + 20, '/', path.len - 20);
        if (!slash || !memmem(req->query.p, req->query.len, "api-version=", 12))
            return reply_json(req, 404, "{\"error\":{\"message\":\"mock: bad azure path\"}}\n");
        path = (struct sl_str){ slash, path.len - (size_t)(slash - path.p) };
    } else if (path.len > 3 && memcmp(path.p, "/v1", 3) == 0) {
        path = (struct sl_str){ path.p + 3, path.len - 3 };
    }
    struct mock_req *m = sl_calloc(1, sizeof(*m));
    if (++mock.inflight > mock.max_inflight)
        mock.max_inflight = mock.inflight;
    m->req = req;
    req->owner = m;
    req->on_abort = on_abort;
    m->f = mock.config;
    if (!take_failure()) {
        m->f.status = 0;
        m->f.close = false;
    }
    apply_header_faults(req, &m->f);
    if (m->f.fail_model[0] && !for_model(req, m->f.fail_model)) { /* another model's request */
        m->f.status = 0;
        m->f.close = m->f.hang = false;
        m->f.delay_ms = m->f.first_token_delay_ms = 0;
    }
    const struct sl_str *cred = http_header(req, "authorization");
    if (!cred)
        cred = http_header(req, "api-key");
    if (!cred)
        cred = http_header(req, "x-api-key");
    if (cred)
        snprintf(m->credential, sizeof(m->credential), "%.*s", (int)cred->len, cred->p);
    if (m->f.close) { /* read, then gone: no status line, no byte */
        mock_req_free(m);
        req->owner = NULL;
        req->on_abort = NULL;
        return http_stream_abort(req);
    }

    if (sl_str_eq(path, "/chat/completions"))
        m->kind = K_CHAT;
    else if (sl_str_eq(path, "/completions"))
        m->kind = K_COMPLETION;
    else if (sl_str_eq(path, "/embeddings"))
        m->kind = K_EMBEDDING;
    else if (sl_str_eq(path, "/responses"))
        m->kind = K_RESPONSE;
    else if (sl_str_eq(path, "/messages"))
        m->kind = K_MESSAGES;
    else if (sl_str_eq(path, "/messages/count_tokens") && !(m->f.status && m->f.status != 200)) {
        count_tokens(req);
        return mock_req_free(m);
    } else {
        if (m->f.status && m->f.status != 200)
            error_response(m);
        else
            echo_request(req);
        return mock_req_free(m);
    }
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    snprintf(m->model, sizeof(m->model), "%s", cJSON_IsString(model) ? model->valuestring : "unknown");
    m->stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    const cJSON *opts = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    m->include_usage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(opts, "include_usage"));
    const char *field = m->kind == K_CHAT || m->kind == K_MESSAGES ? "messages"
                        : m->kind == K_COMPLETION                 ? "prompt"
                                                                  : "input";
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(root, field);
    m->prompt_tokens = m->f.prompt_tokens >= 0
                           ? m->f.prompt_tokens
                           : words_in(input) + words_in(cJSON_GetObjectItemCaseSensitive(root, "system"));
    m->n_inputs = cJSON_IsArray(input) ? SL_MAX(cJSON_GetArraySize(input), 1) : 1;
    int max = -1;
    static const char *const caps[] = { "max_tokens", "max_completion_tokens", "max_output_tokens" };
    for (size_t i = 0; i < SL_ARRAY_LEN(caps); i++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(root, caps[i]);
        if (cJSON_IsNumber(c))
            max = (int)c->valuedouble;
    }
    m->completion_tokens = m->kind == K_EMBEDDING ? 0 : m->f.completion_tokens;
    if (max >= 0 && m->completion_tokens > max) {
        m->completion_tokens = max;
        m->capped = true;
    }
    continued_from(m, input);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    m->base64 = cJSON_IsString(fmt) && strcmp(fmt->valuestring, "base64") == 0;
    tool_to_call(m, root);
    cJSON_Delete(root);
    if (m->stream)
        mock.stream_requests++;

    m->timer = evtimer_new(mock.base, timer_cb, m);
    if (m->f.hang)
        return; /* until the client gives up */
    if (m->f.delay_ms > 0)
        return arm(m, m->f.delay_ms);
    respond_now(m);
}

/* ---- models, files, audio and everything else ------------------------------------- */

/* The models this upstream lists (--models), comma-separated. */
static void models_list(struct http_req *req)
{
    struct sl_buf b = { 0 };
    sl_buf_appends(&b, "{\"object\":\"list\",\"data\":[");
    char *copy = sl_strdup(mock.models), *save = NULL;
    bool first = true;
    for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
        sl_buf_printf(&b, "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":1700000000,"
                          "\"owned_by\":\"mock\"}",
                      first ? "" : ",", m);
        first = false;
    }
    free(copy);
    sl_buf_appends(&b, "]}\n");
    reply_json(req, 200, b.data);
    sl_buf_free(&b);
}

static void model_one(struct http_req *req, struct sl_str id)
{
    char *copy = sl_strdup(mock.models), *save = NULL;
    bool found = false;
    for (char *m = strtok_r(copy, ",", &save); m && !found; m = strtok_r(NULL, ",", &save))
        found = sl_str_eq(id, m);
    free(copy);
    char buf[512];
    if (!found)
        return reply_json(req, 404, "{\"error\":{\"message\":\"mock: no such model\",\"type\":"
                                    "\"invalid_request_error\",\"param\":\"model\",\"code\":"
                                    "\"model_not_found\"}}\n");
    snprintf(buf, sizeof(buf), "{\"id\":\"%.*s\",\"object\":\"model\",\"created\":1700000000,"
                               "\"owned_by\":\"mock\"}\n", (int)SL_MIN(id.len, 200), id.p);
    reply_json(req, 200, buf);
}

/* Files, kept in memory: enough for the SDK's files.* calls. */
struct mock_file {
    char id[32], name[128], purpose[64];
    struct sl_buf data;
    struct mock_file *next;
};
static struct mock_file *files;
static int files_made;

static void file_json(struct sl_buf *b, const struct mock_file *f)
{
    sl_buf_printf(b, "{\"id\":\"%s\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":1700000000,"
                     "\"filename\":\"%s\",\"purpose\":\"%s\",\"status\":\"processed\"}",
                  f->id, f->data.len, f->name, f->purpose);
}

struct upload {
    struct sl_str purpose, name, data;
    bool has_file;
};

static bool upload_part(const struct mp_part *part, void *arg)
{
    struct upload *u = arg;
    if (part->name.p && sl_str_eq(part->name, "purpose"))
        u->purpose = part->content;
    if (part->name.p && sl_str_eq(part->name, "file") && part->has_filename) {
        u->name = part->filename;
        u->data = part->content;
        u->has_file = true;
    }
    return true;
}

/* The parts of a multipart request, or a 400 answered. */
static bool read_form(struct http_req *req, bool (*each)(const struct mp_part *, void *), void *arg)
{
    const struct sl_str *ct = http_header(req, "content-type");
    char boundary[MP_BOUNDARY_MAX + 1];
    size_t blen;
    if (!ct || !mp_is_form(*ct) || !mp_boundary(*ct, boundary, &blen) ||
        mp_each(req->body.data, req->body.len, boundary, blen, each, arg) == MP_MALFORMED) {
        reply_json(req, 400, "{\"error\":{\"message\":\"mock: a multipart/form-data body was "
                             "expected\",\"type\":\"invalid_request_error\"}}\n");
        return false;
    }
    return true;
}

static void files_request(struct http_req *req, struct sl_str rest)
{
    struct sl_buf b = { 0 };
    if (rest.len == 0 && sl_str_eq(req->method, "POST")) {
        struct upload u = { { 0 }, { 0 }, { 0 }, false };
        if (!read_form(req, upload_part, &u))
            return;
        if (!u.has_file || !u.purpose.len)
            return reply_json(req, 400, "{\"error\":{\"message\":\"mock: file and purpose are "
                                        "required\",\"type\":\"invalid_request_error\"}}\n");
        struct mock_file *f = sl_calloc(1, sizeof(*f));
        snprintf(f->id, sizeof(f->id), "file-mock%d", ++files_made);
        snprintf(f->name, sizeof(f->name), "%.*s", (int)SL_MIN(u.name.len, 100), u.name.p);
        snprintf(f->purpose, sizeof(f->purpose), "%.*s", (int)SL_MIN(u.purpose.len, 60), u.purpose.p);
        sl_buf_append(&f->data, u.data.p, u.data.len);
        f->next = files;
        files = f;
        file_json(&b, f);
    } else if (rest.len == 0 && sl_str_eq(req->method, "GET")) {
        sl_buf_appends(&b, "{\"object\":\"list\",\"has_more\":false,\"data\":[");
        for (struct mock_file *f = files; f; f = f->next) {
            file_json(&b, f);
            if (f->next)
                sl_buf_appends(&b, ",");
        }
        sl_buf_appends(&b, "]}");
    } else {
        struct sl_str id = { rest.p + 1, rest.len - 1 };
        const char *slash = memchr(id.p, '/', id.len);
        bool content = slash && sl_str_eq((struct sl_str){ slash, id.len - (size_t)(slash - id.p) }, "/content");
        if (slash)
            id.len = (size_t)(slash - id.p);
        struct mock_file **at = &files;
        while (*at && !sl_str_eq(id, (*at)->id))
            at = &(*at)->next;
        if (!*at)
            return reply_json(req, 404, "{\"error\":{\"message\":\"mock: no such file\",\"type\":"
                                        "\"invalid_request_error\"}}\n");
        struct mock_file *f = *at;
        if (content) {
            static const char h[] = "Content-Type: application/octet-stream\r\n";
            return http_respond(req, 200, h, sizeof(h) - 1, f->data.data, f->data.len);
        }
        if (sl_str_eq(req->method, "DELETE")) {
            sl_buf_printf(&b, "{\"id\":\"%s\",\"object\":\"file\",\"deleted\":true}", f->id);
            *at = f->next;
            sl_buf_free(&f->data);
            free(f);
        } else {
            file_json(&b, f);
        }
    }
    sl_buf_appends(&b, "\n");
    reply_json(req, 200, b.data);
    sl_buf_free(&b);
}

struct transcription {
    struct sl_str model, format;
    size_t audio_bytes;
    bool has_file;
};

static bool transcription_part(const struct mp_part *part, void *arg)
{
    struct transcription *t = arg;
    if (!part->name.p)
        return true;
    if (sl_str_eq(part->name, "model"))
        t->model = part->content;
    else if (sl_str_eq(part->name, "response_format"))
        t->format = part->content;
    else if (sl_str_eq(part->name, "file") && part->has_filename) {
        t->audio_bytes = part->content.len;
        t->has_file = true;
    }
    return true;
}

/* audio.transcriptions/translations: {"text": ...}, or plain text. */
static void transcription_request(struct http_req *req)
{
    struct transcription t = { { 0 }, { 0 }, 0, false };
    if (!read_form(req, transcription_part, &t))
        return;
    if (!t.has_file || !t.model.len)
        return reply_json(req, 400, "{\"error\":{\"message\":\"mock: file and model are required\","
                                    "\"type\":\"invalid_request_error\"}}\n");
    char text[160];
    snprintf(text, sizeof(text), "mock transcription of %zu bytes by %.*s", t.audio_bytes,
             (int)SL_MIN(t.model.len, 64), t.model.p);
    if (sl_str_eq(t.format, "text")) {
        static const char h[] = "Content-Type: text/plain; charset=utf-8\r\n";
        return http_respond(req, 200, h, sizeof(h) - 1, text, strlen(text));
    }
    char body[256];
    snprintf(body, sizeof(body), "{\"text\":\"%s\",\"usage\":{\"type\":\"duration\",\"seconds\":1}}\n",
             text);
    reply_json(req, 200, body);
}

/* Any other path: what arrived, so tests can see where a call went, with an
 * id of its own (what a creation answers with: echo-1, echo-2...). */
static void echo_request(struct http_req *req)
{
    static int echoes;
    struct sl_buf b = { 0 };
    sl_buf_printf(&b, "{\"id\":\"echo-%d\",\"object\":\"mock.echo\",\"method\":", ++echoes);
    sl_buf_json_string(&b, req->method.p, req->method.len);
    sl_buf_appends(&b, ",\"path\":");
    sl_buf_json_string(&b, req->path.p, req->path.len);
    sl_buf_printf(&b, ",\"body_length\":%zu}\n", req->body.len);
    reply_json(req, 200, b.data);
    sl_buf_free(&b);
}

static void set_config(struct http_req *req)
{
    cJSON *root = cJSON_ParseWithLength(req->body.data, req->body.len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return reply_json(req, 400, "{\"error\":{\"message\":\"mock: config must be a JSON object\"}}\n");
    }
    struct faults *f = &mock.config;
    faults_default(f);
    const cJSON *v;
    cJSON_ArrayForEach(v, root) {
        const char *k = v->string;
        int n = cJSON_IsNumber(v) ? (int)v->valuedouble : cJSON_IsTrue(v) ? 1 : 0;
        if (strcmp(k, "status") == 0) f->status = n;
        else if (strcmp(k, "retry-after") == 0 && cJSON_IsString(v)) snprintf(f->retry_after, sizeof(f->retry_after), "%s", v->valuestring);
        else if (strcmp(k, "retry-after-ms") == 0 && cJSON_IsString(v)) snprintf(f->retry_after_ms, sizeof(f->retry_after_ms), "%s", v->valuestring);
        else if (strcmp(k, "error-code") == 0 && cJSON_IsString(v)) snprintf(f->error_code, sizeof(f->error_code), "%s", v->valuestring);
        else if (strcmp(k, "fail-count") == 0) f->fail_count = n;
        else if (strcmp(k, "delay-ms") == 0) f->delay_ms = n;
        else if (strcmp(k, "chunk-delay-ms") == 0) f->chunk_delay_ms = n;
        else if (strcmp(k, "first-token-delay-ms") == 0) f->first_token_delay_ms = n;
        else if (strcmp(k, "hang") == 0) f->hang = n != 0;
        else if (strcmp(k, "drop-after") == 0) f->drop_after = n;
        else if (strcmp(k, "malformed-after") == 0) f->malformed_after = n;
        else if (strcmp(k, "no-done") == 0) f->no_done = n != 0;
        else if (strcmp(k, "stall-after") == 0) f->stall_after = n;
        else if (strcmp(k, "close") == 0) f->close = n != 0;
        else if (strcmp(k, "completion-tokens") == 0) f->completion_tokens = n;
        else if (strcmp(k, "prompt-tokens") == 0) f->prompt_tokens = n;
        else if (strcmp(k, "no-usage") == 0) f->no_usage = n != 0;
        else if (strcmp(k, "cached-tokens") == 0) f->cached_tokens = n;
        else if (strcmp(k, "reasoning-tokens") == 0) f->reasoning_tokens = n;
        else if (strcmp(k, "cache-write-tokens") == 0) f->cache_write_tokens = n;
        else if (strcmp(k, "cache-read-tokens") == 0) f->cache_read_tokens = n;
        else if (strcmp(k, "header") == 0 && cJSON_IsString(v)) snprintf(f->header, sizeof(f->header), "%s", v->valuestring);
        else if (strcmp(k, "fail-model") == 0 && cJSON_IsString(v)) snprintf(f->fail_model, sizeof(f->fail_model), "%s", v->valuestring);
    }
    cJSON_Delete(root);
    reply_json(req, 200, "{\"ok\":true}\n");
}

static void handle(struct http_req *req, void *arg)
{
    (void)arg;
    struct sl_str path = req->path;
    if (sl_str_eq(path, "/_mock/stats")) {
        char buf[256];
        snprintf(buf, sizeof(buf),
                 "{\"requests\":%ld,\"stream_requests\":%ld,\"aborted\":%ld,\"inflight\":%ld,"
                 "\"max_inflight\":%ld,\"connections\":%llu}\n",
                 mock.requests, mock.stream_requests, mock.aborted, mock.inflight, mock.max_inflight,
                 (unsigned long long)http_server_accepted(mock.srv));
        return reply_json(req, 200, buf);
    }
    if (sl_str_eq(path, "/_mock/last"))
        return reply_json(req, 200, mock.last ? mock.last : "null");
    if (sl_str_eq(path, "/_mock/config"))
        return set_config(req);
    if (sl_str_eq(path, "/_mock/reset")) {
        faults_default(&mock.config);
        mock.requests = mock.stream_requests = mock.aborted = 0;
        mock.max_inflight = mock.inflight;
        return reply_json(req, 200, "{\"ok\":true}\n");
    }
    mock.requests++;
    record_last(req);
    if (!authorized(req))
        return reply_json(req, 401, "{\"error\":{\"message\":\"mock: bad upstream credential\","
                                    "\"type\":\"invalid_request_error\",\"param\":null,"
                                    "\"code\":\"invalid_api_key\"}}\n");
    struct sl_str v1 = path.len >= 3 && memcmp(path.p, "/v1", 3) == 0
                           ? (struct sl_str){ path.p + 3, path.len - 3 }
                           : path;
    if (sl_str_eq(v1, "/models") && sl_str_eq(req->method, "GET"))
        return models_list(req);
    if (v1.len > 8 && memcmp(v1.p, "/models/", 8) == 0 && sl_str_eq(req->method, "GET"))
        return model_one(req, (struct sl_str){ v1.p + 8, v1.len - 8 });
    if (sl_str_eq(v1, "/files") || (v1.len > 7 && memcmp(v1.p, "/files/", 7) == 0))
        return files_request(req, (struct sl_str){ v1.p + 6, v1.len - 6 });
    if (sl_str_eq(req->method, "POST") &&
        (sl_str_eq(v1, "/audio/transcriptions") || sl_str_eq(v1, "/audio/translations")))
        return transcription_request(req);
    if (!sl_str_eq(req->method, "POST"))
        return echo_request(req);
    api_request(req, path);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopexit(arg, NULL);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, opt;
    static const struct option longopts[] = { { "port", required_argument, NULL, 'p' },
                                              { "host", required_argument, NULL, 'H' },
                                              { "api-key", required_argument, NULL, 'k' },
                                              { "models", required_argument, NULL, 'm' },
                                              { "tls-cert", required_argument, NULL, 'c' },
                                              { "tls-key", required_argument, NULL, 'K' },
                                              { "tls-client-ca", required_argument, NULL, 'C' },
                                              { NULL, 0, NULL, 0 } };
    mock.models = "gpt-4o,gpt-4o-mini,text-embedding-3-small,whisper-1";
    const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
    while ((opt = getopt_long(argc, argv, "p:H:k:m:c:K:C:", longopts, NULL)) != -1) {
        if (opt == 'p')
            port = atoi(optarg);
        else if (opt == 'H')
            host = optarg;
        else if (opt == 'k')
            mock.api_key = optarg;
        else if (opt == 'm')
            mock.models = optarg;
        else if (opt == 'c')
            tls_cert = optarg;
        else if (opt == 'K')
            tls_key = optarg;
        else if (opt == 'C')
            tls_ca = optarg;
        else
            return 2;
    }
    if (port <= 0) {
        fprintf(stderr, "usage: sluice-mock --port N [--host ADDR] [--api-key KEY] "
                        "[--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    faults_default(&mock.config);
    mock.base = event_base_new();
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
    struct addrinfo *res;
    char portstr[16];
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (getaddrinfo(host, portstr, &hints, &res) != 0)
        return 1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "sluice-mock: cannot listen on %s:%d: %s\n", host, port, strerror(errno));
        return 1;
    }
    freeaddrinfo(res);
    struct http_limits limits = { .max_header_size = 65536, .max_body_size = 64 << 20,
                                  .header_timeout_ms = 30000, .body_timeout_ms = 60000,
                                  .keepalive_timeout_ms = 300000, .send_timeout_ms = 60000 };
    struct http_server *srv = http_server_new(mock.base, &limits, handle, NULL);
    mock.srv = srv;
    struct ssl_ctx_st *tls = NULL;
    if (tls_cert) { /* an https upstream, for the backends' ca_file and client_cert */
        char err[512];
        tls = tls_server_new(tls_cert, tls_key ? tls_key : tls_cert, tls_ca, err, sizeof(err));
        if (!tls) {
            fprintf(stderr, "sluice-mock: %s\n", err);
            return 1;
        }
        http_server_set_tls(srv, tls);
    }
    http_server_listen(srv, fd, HTTP_LISTENER_API, tls != NULL);
    struct event *sigterm = evsignal_new(mock.base, SIGTERM, on_signal, mock.base);
    struct event *sigint = evsignal_new(mock.base, SIGINT, on_signal, mock.base);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    fprintf(stderr, "sluice-mock listening on %s:%d\n", host, port);
    event_base_dispatch(mock.base);
    http_server_free(srv);
    tls_ctx_free(tls);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(mock.base);
    free(mock.last);
    return 0;
}
