/* Translation of requests, whole answers and error bodies between
 * Anthropic's Messages API and OpenAI's chat completions (xlate.h). Each
 * member of a request is taken, translated, or refused by name: the table
 * of docs/api.md, "Translation", is this file's. */
#include "sluice/xlate.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/errors.h"

#define FAIL(field, ...)                                                                           \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        *param = (field);                                                                          \
        return ERR_BAD_REQUEST;                                                                    \
    } while (0)

const cJSON *xl_get(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(o, name);
}

const char *xl_str(const cJSON *o, const char *name)
{
    const cJSON *v = xl_get(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

#define get xl_get
#define str xl_str

static bool given(const cJSON *v)
{
    return v && !cJSON_IsNull(v);
}

static bool one_of(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

/* The first member of root not among names, copied (at most 64 bytes)
 * where it outlives the tree (the caller's param), or NULL. */
static const char *unknown_member(const cJSON *root, const char *const *names, size_t n)
{
    static _Thread_local char name[65];
    for (const cJSON *m = root->child; m; m = m->next)
        if (!one_of(m->string, names, n)) {
            size_t len = strlen(m->string);
            if (len >= sizeof(name)) { /* cut at a code point's start: the message stays UTF-8 */
                len = sizeof(name) - 1;
                while (len && ((unsigned char)m->string[len] & 0xC0) == 0x80)
                    len--;
            }
            memcpy(name, m->string, len);
            name[len] = '\0';
            return name;
        }
    return NULL;
}

/* Copies member `from` of src into dst as `to`, if given. */
static void copy(cJSON *dst, const char *to, const cJSON *src, const char *from)
{
    const cJSON *v = get(src, from);
    if (given(v))
        cJSON_AddItemToObject(dst, to, cJSON_Duplicate(v, 1));
}

static void print_into(cJSON *root, struct sl_buf *out)
{
    char *text = cJSON_PrintUnformatted(root);
    if (text)
        sl_buf_appends(out, text);
    free(text);
}

/* Text, or text blocks joined by sep; false if a block is not text. */
static bool text_of(const cJSON *content, const char *sep, struct sl_buf *out)
{
    if (cJSON_IsString(content)) {
        sl_buf_appends(out, content->valuestring);
        return true;
    }
    const cJSON *b;
    bool first = true;
    cJSON_ArrayForEach(b, content) {
        const char *type = str(b, "type"), *text = str(b, "text");
        if (!type || (strcmp(type, "text") != 0 && strcmp(type, "input_text") != 0) || !text)
            return false;
        if (!first)
            sl_buf_appends(out, sep);
        sl_buf_appends(out, text);
        first = false;
    }
    return cJSON_IsArray(content);
}

static cJSON *text_string(const cJSON *content, const char *sep, bool *ok)
{
    struct sl_buf t = { 0 };
    *ok = text_of(content, sep, &t);
    cJSON *s = cJSON_CreateString(t.data ? t.data : "");
    sl_buf_free(&t);
    return s;
}

/* ==== Messages -> chat completions ================================================ */

/* An image block as a chat image_url part (a data: URL for base64). */
static cJSON *image_part(const cJSON *block)
{
    const cJSON *src = get(block, "source");
    const char *type = str(src, "type");
    struct sl_buf url = { 0 };
    if (type && strcmp(type, "base64") == 0 && str(src, "media_type") && str(src, "data"))
        sl_buf_printf(&url, "data:%s;base64,%s", str(src, "media_type"), str(src, "data"));
    else if (type && strcmp(type, "url") == 0 && str(src, "url"))
        sl_buf_appends(&url, str(src, "url"));
    else
        return NULL;
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", "image_url");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(part, "image_url"), "url", url.data);
    sl_buf_free(&url);
    return part;
}

/* A user turn: its tool results first (each a tool message, in order),
 * then its text and images as one user message. */
static int user_turn(const cJSON *m, int i, cJSON *out, char *msg, size_t msglen,
                     const char **param)
{
    const cJSON *content = get(m, "content"), *b;
    if (cJSON_IsString(content)) {
        cJSON *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", content->valuestring);
        cJSON_AddItemToArray(out, u);
        return 0;
    }
    if (!cJSON_IsArray(content))
        FAIL("messages", "messages.%d.content: text or a list of blocks", i);
    cJSON *parts = cJSON_CreateArray();
    int k = 0;
    cJSON_ArrayForEach(b, content) {
        const char *type = str(b, "type") ? str(b, "type") : "";
        cJSON *part = NULL;
        if (strcmp(type, "tool_result") == 0) {
            bool ok;
            cJSON *text = text_string(get(b, "content"), "\n", &ok);
            if (!ok || !str(b, "tool_use_id")) {
                cJSON_Delete(text);
                cJSON_Delete(parts);
                FAIL("messages", "messages.%d.content.%d: a tool_result for an OpenAI-compatible "
                                 "backend must have a tool_use_id and text content only", i, k);
            }
            cJSON *t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "role", "tool");
            cJSON_AddStringToObject(t, "tool_call_id", str(b, "tool_use_id"));
            cJSON_AddItemToObject(t, "content", text);
            cJSON_AddItemToArray(out, t);
        } else if (strcmp(type, "text") == 0 && str(b, "text")) {
            part = cJSON_CreateObject();
            cJSON_AddStringToObject(part, "type", "text");
            cJSON_AddStringToObject(part, "text", str(b, "text"));
        } else if (strcmp(type, "image") != 0 || !(part = image_part(b))) {
            cJSON_Delete(parts);
            FAIL("messages", "messages.%d.content.%d: a '%.32s' block cannot be translated for an "
                             "OpenAI-compatible backend (text, image and tool_result can)", i, k, type);
        }
        if (part)
            cJSON_AddItemToArray(parts, part);
        k++;
    }
    if (cJSON_GetArraySize(parts) == 0) {
        cJSON_Delete(parts);
        return 0;
    }
    cJSON *u = cJSON_CreateObject();
    cJSON_AddStringToObject(u, "role", "user");
    cJSON_AddItemToObject(u, "content", parts);
    cJSON_AddItemToArray(out, u);
    return 0;
}

/* An assistant turn: its text as content, its tool_use blocks as
 * tool_calls; its thinking is the model's own and stays behind. */
static int assistant_turn(const cJSON *m, int i, cJSON *out, char *msg, size_t msglen,
                          const char **param)
{
    const cJSON *content = get(m, "content"), *b;
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "role", "assistant");
    if (cJSON_IsString(content)) {
        cJSON_AddStringToObject(a, "content", content->valuestring);
        cJSON_AddItemToArray(out, a);
        return 0;
    }
    if (!cJSON_IsArray(content)) {
        cJSON_Delete(a);
        FAIL("messages", "messages.%d.content: text or a list of blocks", i);
    }
    struct sl_buf text = { 0 };
    cJSON *calls = cJSON_CreateArray();
    int k = 0;
    cJSON_ArrayForEach(b, content) {
        const char *type = str(b, "type") ? str(b, "type") : "";
        if (strcmp(type, "text") == 0 && str(b, "text")) {
            sl_buf_appends(&text, str(b, "text"));
        } else if (strcmp(type, "tool_use") == 0 && str(b, "id") && str(b, "name")) {
            cJSON *call = cJSON_CreateObject();
            cJSON_AddStringToObject(call, "id", str(b, "id"));
            cJSON_AddStringToObject(call, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(call, "function");
            cJSON_AddStringToObject(fn, "name", str(b, "name"));
            char *args = given(get(b, "input")) ? cJSON_PrintUnformatted(get(b, "input")) : NULL;
            cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");
            free(args);
            cJSON_AddItemToArray(calls, call);
        } else if (strcmp(type, "thinking") != 0 && strcmp(type, "redacted_thinking") != 0) {
            sl_buf_free(&text);
            cJSON_Delete(calls);
            cJSON_Delete(a);
            FAIL("messages", "messages.%d.content.%d: a '%.32s' block cannot be translated for an "
                             "OpenAI-compatible backend (text, tool_use and thinking can)", i, k, type);
        }
        k++;
    }
    if (text.len)
        cJSON_AddStringToObject(a, "content", text.data);
    else
        cJSON_AddNullToObject(a, "content");
    if (cJSON_GetArraySize(calls))
        cJSON_AddItemToObject(a, "tool_calls", calls);
    else
        cJSON_Delete(calls);
    sl_buf_free(&text);
    cJSON_AddItemToArray(out, a);
    return 0;
}

static int chat_tools(const cJSON *root, cJSON *chat, char *msg, size_t msglen, const char **param)
{
    const cJSON *t;
    int i = 0;
    cJSON *tools = NULL;
    cJSON_ArrayForEach(t, get(root, "tools")) {
        const char *type = str(t, "type");
        if ((type && strcmp(type, "custom") != 0) || !str(t, "name"))
            FAIL("tools", "tools.%d: Anthropic's server tool '%.40s' cannot be translated for an "
                          "OpenAI-compatible backend (tools with a name and input_schema can)",
                 i, type ? type : "(no name)");
        if (!tools)
            tools = cJSON_AddArrayToObject(chat, "tools");
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "type", "function");
        cJSON *fn = cJSON_AddObjectToObject(f, "function");
        cJSON_AddStringToObject(fn, "name", str(t, "name"));
        copy(fn, "description", t, "description");
        copy(fn, "parameters", t, "input_schema");
        cJSON_AddItemToArray(tools, f);
        i++;
    }
    const cJSON *choice = get(root, "tool_choice");
    if (!given(choice))
        return 0;
    const char *type = str(choice, "type");
    if (!type)
        FAIL("tool_choice", "tool_choice: an object with a type");
    if (strcmp(type, "auto") == 0)
        cJSON_AddStringToObject(chat, "tool_choice", "auto");
    else if (strcmp(type, "any") == 0)
        cJSON_AddStringToObject(chat, "tool_choice", "required");
    else if (strcmp(type, "none") == 0)
        cJSON_AddStringToObject(chat, "tool_choice", "none");
    else if (strcmp(type, "tool") == 0 && str(choice, "name")) {
        cJSON *c = cJSON_AddObjectToObject(chat, "tool_choice");
        cJSON_AddStringToObject(c, "type", "function");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(c, "function"), "name", str(choice, "name"));
    } else
        FAIL("tool_choice", "tool_choice: type '%.32s' cannot be translated", type);
    if (cJSON_IsTrue(get(choice, "disable_parallel_tool_use")))
        cJSON_AddFalseToObject(chat, "parallel_tool_calls");
    return 0;
}

static int messages_to_chat(const cJSON *root, cJSON *chat, char *msg, size_t msglen,
                            const char **param)
{
    static const char *const known[] = { "model",  "max_tokens",  "messages", "system",
                                         "stream", "stop_sequences", "temperature", "top_p",
                                         "top_k",  "tools",       "tool_choice", "metadata",
                                         "thinking" };
    const char *unknown = unknown_member(root, known, SL_ARRAY_LEN(known));
    if (unknown)
        FAIL(unknown, "'%s' has no counterpart in OpenAI's chat completions, so it cannot go to "
                      "this model's OpenAI-compatible backend", unknown);
    const char *thinking = str(get(root, "thinking"), "type");
    if (thinking && strcmp(thinking, "disabled") != 0)
        FAIL("thinking", "thinking cannot be translated for an OpenAI-compatible backend");
    copy(chat, "model", root, "model");
    cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
    const cJSON *system = get(root, "system"), *m;
    if (given(system)) {
        bool ok;
        cJSON *text = text_string(system, "\n\n", &ok);
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "role", "system");
        cJSON_AddItemToObject(s, "content", text);
        cJSON_AddItemToArray(msgs, s);
        if (!ok)
            FAIL("system", "system: only text blocks can be translated");
    }
    if (!cJSON_IsArray(get(root, "messages")))
        FAIL("messages", "messages: Input should be a valid list");
    int i = 0;
    cJSON_ArrayForEach(m, get(root, "messages")) {
        const char *role = str(m, "role") ? str(m, "role") : "";
        int e = strcmp(role, "user") == 0        ? user_turn(m, i, msgs, msg, msglen, param)
                : strcmp(role, "assistant") == 0 ? assistant_turn(m, i, msgs, msg, msglen, param)
                                                 : ERR_BAD_REQUEST;
        if (e == ERR_BAD_REQUEST && !*param)
            FAIL("messages", "messages.%d: the role is user or assistant", i);
        if (e)
            return e;
        i++;
    }
    copy(chat, "max_tokens", root, "max_tokens");
    const cJSON *stop = get(root, "stop_sequences");
    if (given(stop) && (!cJSON_IsArray(stop) || cJSON_GetArraySize(stop) > XL_MAX_STOP))
        FAIL("stop_sequences", "stop_sequences: at most %d for an OpenAI-compatible backend",
             XL_MAX_STOP);
    copy(chat, "stop", root, "stop_sequences");
    copy(chat, "temperature", root, "temperature");
    copy(chat, "top_p", root, "top_p");
    copy(chat, "top_k", root, "top_k"); /* vLLM and other servers take it; OpenAI refuses it */
    if (cJSON_IsTrue(get(root, "stream"))) {
        cJSON_AddTrueToObject(chat, "stream");
        cJSON_AddTrueToObject(cJSON_AddObjectToObject(chat, "stream_options"), "include_usage");
    }
    if (str(get(root, "metadata"), "user_id"))
        cJSON_AddStringToObject(chat, "user", str(get(root, "metadata"), "user_id"));
    return chat_tools(root, chat, msg, msglen, param);
}

/* ==== chat completions -> Messages ================================================ */

/* A chat image_url part as an image block: a data: URL's bytes, else the URL. */
static cJSON *image_block(const cJSON *part)
{
    const cJSON *iu = get(part, "image_url");
    const char *url = cJSON_IsString(iu) ? iu->valuestring : str(iu, "url");
    if (!url)
        return NULL;
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "image");
    cJSON *src = cJSON_AddObjectToObject(b, "source");
    const char *semi = strstr(url, ";base64,");
    if (strncmp(url, "data:", 5) == 0 && semi) {
        char media[64];
        snprintf(media, sizeof(media), "%.*s", (int)SL_MIN((size_t)(semi - url - 5), 63), url + 5);
        cJSON_AddStringToObject(src, "type", "base64");
        cJSON_AddStringToObject(src, "media_type", media);
        cJSON_AddStringToObject(src, "data", semi + 8);
    } else {
        cJSON_AddStringToObject(src, "type", "url");
        cJSON_AddStringToObject(src, "url", url);
    }
    return b;
}

static cJSON *text_block(const char *text)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "type", "text");
    cJSON_AddStringToObject(b, "text", text);
    return b;
}

/* Blocks of a chat message's content (a string, or parts) into blocks. */
static int content_blocks(const cJSON *content, int i, cJSON *blocks, char *msg, size_t msglen,
                          const char **param)
{
    if (cJSON_IsString(content)) {
        if (content->valuestring[0]) /* Anthropic refuses an empty text block */
            cJSON_AddItemToArray(blocks, text_block(content->valuestring));
        return 0;
    }
    const cJSON *p;
    int k = 0;
    cJSON_ArrayForEach(p, content) {
        const char *type = str(p, "type");
        const char *text = type && strcmp(type, "refusal") == 0 ? str(p, "refusal") : str(p, "text");
        cJSON *b = NULL;
        if (type && (strcmp(type, "text") == 0 || strcmp(type, "refusal") == 0) && text)
            b = text[0] ? text_block(text) : NULL;
        else if (!type || strcmp(type, "image_url") != 0 || !(b = image_block(p)))
            FAIL("messages", "messages[%d].content[%d]: a '%.32s' part cannot be translated for an "
                             "anthropic backend (text and image_url can)", i, k, type ? type : "?");
        if (b)
            cJSON_AddItemToArray(blocks, b);
        k++;
    }
    return 0;
}

static int tool_use_blocks(const cJSON *m, int i, cJSON *blocks, char *msg, size_t msglen,
                           const char **param)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, get(m, "tool_calls")) {
        const cJSON *fn = get(c, "function");
        const char *args = str(fn, "arguments");
        cJSON *input = args ? cJSON_Parse(args) : NULL;
        if (!str(c, "id") || !str(fn, "name") || !cJSON_IsObject(input)) {
            cJSON_Delete(input);
            FAIL("messages", "messages[%d].tool_calls: each needs an id, a function name and "
                             "arguments that are a JSON object", i);
        }
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", str(c, "id"));
        cJSON_AddStringToObject(b, "name", str(fn, "name"));
        cJSON_AddItemToObject(b, "input", input);
        cJSON_AddItemToArray(blocks, b);
    }
    return 0;
}

/* The turn a chat message becomes part of: consecutive messages of one role
 * (tool answers are the user's) make one turn. */
static cJSON *turn_for(cJSON *msgs, const char *role)
{
    cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
    if (last && str(last, "role") && strcmp(str(last, "role"), role) == 0)
        return cJSON_GetObjectItemCaseSensitive(last, "content");
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "role", role);
    cJSON *blocks = cJSON_AddArrayToObject(t, "content");
    cJSON_AddItemToArray(msgs, t);
    return blocks;
}

static int chat_turn(const cJSON *m, int i, cJSON *msgs, char *msg, size_t msglen,
                     const char **param)
{
    const char *role = str(m, "role") ? str(m, "role") : "";
    const cJSON *content = get(m, "content");
    if (strcmp(role, "tool") == 0) {
        bool ok;
        cJSON *text = text_string(content, "\n", &ok);
        if (!ok || !str(m, "tool_call_id")) {
            cJSON_Delete(text);
            FAIL("messages", "messages[%d]: a tool message needs a tool_call_id and text content", i);
        }
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_result");
        cJSON_AddStringToObject(b, "tool_use_id", str(m, "tool_call_id"));
        cJSON_AddItemToObject(b, "content", text);
        cJSON_AddItemToArray(turn_for(msgs, "user"), b);
        return 0;
    }
    if (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
        FAIL("messages", "messages[%d]: a '%.32s' message cannot be translated for an anthropic "
                         "backend here (system and developer messages only before the conversation)",
             i, role);
    if (given(get(m, "function_call")))
        FAIL("messages", "messages[%d].function_call: use tool_calls", i);
    cJSON *blocks = turn_for(msgs, role);
    if (given(content) && !cJSON_IsString(content) && !cJSON_IsArray(content))
        FAIL("messages", "messages[%d].content: a string or a list of parts", i);
    if (given(content)) {
        int e = content_blocks(content, i, blocks, msg, msglen, param);
        if (e)
            return e;
    }
    if (str(m, "refusal") && str(m, "refusal")[0])
        cJSON_AddItemToArray(blocks, text_block(str(m, "refusal")));
    return tool_use_blocks(m, i, blocks, msg, msglen, param);
}

static int messages_tools(const cJSON *root, cJSON *out, char *msg, size_t msglen,
                          const char **param)
{
    const cJSON *t;
    int i = 0;
    cJSON *tools = NULL;
    cJSON_ArrayForEach(t, get(root, "tools")) {
        const cJSON *fn = get(t, "function");
        if (!str(t, "type") || strcmp(str(t, "type"), "function") != 0 || !str(fn, "name"))
            FAIL("tools", "tools[%d]: only function tools can be translated for an anthropic backend",
                 i);
        if (!tools)
            tools = cJSON_AddArrayToObject(out, "tools");
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "name", str(fn, "name"));
        copy(a, "description", fn, "description");
        if (given(get(fn, "parameters")))
            copy(a, "input_schema", fn, "parameters");
        else
            cJSON_AddStringToObject(cJSON_AddObjectToObject(a, "input_schema"), "type", "object");
        cJSON_AddItemToArray(tools, a);
        i++;
    }
    const cJSON *choice = get(root, "tool_choice");
    const char *how = cJSON_IsString(choice) ? choice->valuestring : NULL;
    const char *name = str(get(choice, "function"), "name");
    bool serial = cJSON_IsFalse(get(root, "parallel_tool_calls"));
    if (!given(choice) && !serial)
        return 0;
    cJSON *c = cJSON_AddObjectToObject(out, "tool_choice");
    if (!given(choice) || (how && strcmp(how, "auto") == 0))
        cJSON_AddStringToObject(c, "type", "auto");
    else if (how && strcmp(how, "required") == 0)
        cJSON_AddStringToObject(c, "type", "any");
    else if (how && strcmp(how, "none") == 0)
        cJSON_AddStringToObject(c, "type", "none");
    else if (name) {
        cJSON_AddStringToObject(c, "type", "tool");
        cJSON_AddStringToObject(c, "name", name);
    } else
        FAIL("tool_choice", "tool_choice: auto, required, none or a function by name");
    if (serial)
        cJSON_AddTrueToObject(c, "disable_parallel_tool_use");
    return 0;
}

/* Members chat completions may carry only at a value that changes nothing. */
static int inert_members(const cJSON *root, char *msg, size_t msglen, const char **param)
{
    const cJSON *v;
    if (given(v = get(root, "n")) && !(cJSON_IsNumber(v) && v->valuedouble == 1))
        FAIL("n", "n: an anthropic backend gives one choice");
    if (cJSON_IsTrue(get(root, "store")))
        FAIL("store", "store: an anthropic backend stores no completions");
    if (cJSON_IsTrue(get(root, "logprobs")) || given(get(root, "top_logprobs")))
        FAIL("logprobs", "logprobs: an anthropic backend gives none");
    static const char *const zero[] = { "presence_penalty", "frequency_penalty" };
    for (size_t i = 0; i < SL_ARRAY_LEN(zero); i++)
        if (given(v = get(root, zero[i])) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
            FAIL(zero[i], "%s: an anthropic backend has no counterpart", zero[i]);
    const char *fmt = str(get(root, "response_format"), "type");
    if (given(get(root, "response_format")) && (!fmt || strcmp(fmt, "text") != 0))
        FAIL("response_format", "response_format: only text can be translated for an anthropic "
                                "backend");
    if ((v = get(root, "temperature")) && cJSON_IsNumber(v) && v->valuedouble > 1)
        FAIL("temperature", "temperature: at most 1 for an anthropic backend");
    return 0;
}

/* A system or developer message before the conversation: Anthropic's system prompt. */
static int system_text(const cJSON *m, int i, struct sl_buf *system, char *msg, size_t msglen,
                       const char **param)
{
    if (system->len)
        sl_buf_appends(system, "\n\n");
    if (!text_of(get(m, "content"), "\n", system))
        FAIL("messages", "messages[%d]: a system message of text only can be translated", i);
    return 0;
}

static int chat_to_messages(const cJSON *root, cJSON *out, char *msg, size_t msglen,
                            const char **param)
{
    static const char *const known[] = {
        "model",       "messages", "max_tokens",       "max_completion_tokens", "stream",
        "stream_options", "temperature", "top_p",      "stop",   "tools", "tool_choice",
        "parallel_tool_calls", "user", "n", "store", "logprobs", "top_logprobs",
        "presence_penalty", "frequency_penalty", "response_format",
    };
    const char *unknown = unknown_member(root, known, SL_ARRAY_LEN(known));
    if (unknown)
        FAIL(unknown, "'%s' has no counterpart in Anthropic's Messages API, so it cannot go to "
                      "this model's anthropic backend", unknown);
    int e = inert_members(root, msg, msglen, param);
    if (e)
        return e;
    copy(out, "model", root, "model");
    const cJSON *max = get(root, "max_completion_tokens");
    if (!given(max))
        max = get(root, "max_tokens");
    cJSON_AddNumberToObject(out, "max_tokens", given(max) ? max->valuedouble : XL_DEFAULT_MAX_TOKENS);
    if (!cJSON_IsArray(get(root, "messages")))
        FAIL("messages", "'messages' must be an array.");
    struct sl_buf system = { 0 };
    cJSON *msgs = cJSON_CreateArray();
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, get(root, "messages")) {
        const char *role = str(m, "role") ? str(m, "role") : "";
        bool sys = strcmp(role, "system") == 0 || strcmp(role, "developer") == 0;
        if (sys && cJSON_GetArraySize(msgs) == 0)
            e = system_text(m, i, &system, msg, msglen, param);
        else
            e = chat_turn(m, i, msgs, msg, msglen, param);
        if (e) {
            sl_buf_free(&system);
            cJSON_Delete(msgs);
            return e;
        }
        i++;
    }
    if (system.len)
        cJSON_AddStringToObject(out, "system", system.data);
    sl_buf_free(&system);
    cJSON_AddItemToObject(out, "messages", msgs);
    const cJSON *stop = get(root, "stop");
    if (cJSON_IsString(stop))
        cJSON_AddItemToArray(cJSON_AddArrayToObject(out, "stop_sequences"), cJSON_CreateString(stop->valuestring));
    else
        copy(out, "stop_sequences", root, "stop");
    copy(out, "temperature", root, "temperature");
    copy(out, "top_p", root, "top_p");
    if (cJSON_IsTrue(get(root, "stream")))
        cJSON_AddTrueToObject(out, "stream");
    if (str(root, "user"))
        cJSON_AddStringToObject(cJSON_AddObjectToObject(out, "metadata"), "user_id", str(root, "user"));
    return messages_tools(root, out, msg, msglen, param);
}

int xl_request(enum xl_dir d, const cJSON *root, struct sl_buf *out, char *msg, size_t msglen,
               const char **param)
{
    cJSON *to = cJSON_CreateObject();
    *param = NULL;
    int e = d == XL_MESSAGES_TO_CHAT ? messages_to_chat(root, to, msg, msglen, param)
                                     : chat_to_messages(root, to, msg, msglen, param);
    if (!e)
        print_into(to, out);
    cJSON_Delete(to);
    return e;
}

/* ==== answers ===================================================================== */

const char *xl_stop_reason(const char *finish_reason)
{
    if (!finish_reason)
        return "end_turn";
    if (strcmp(finish_reason, "length") == 0)
        return "max_tokens";
    if (strcmp(finish_reason, "tool_calls") == 0 || strcmp(finish_reason, "function_call") == 0)
        return "tool_use";
    if (strcmp(finish_reason, "content_filter") == 0)
        return "refusal";
    return "end_turn";
}

const char *xl_finish_reason(const char *stop_reason)
{
    if (!stop_reason)
        return "stop";
    if (strcmp(stop_reason, "max_tokens") == 0 || strcmp(stop_reason, "model_context_window_exceeded") == 0)
        return "length";
    if (strcmp(stop_reason, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(stop_reason, "refusal") == 0)
        return "content_filter";
    return "stop";
}

/* A number member as an integer, 0 if absent. */
static double num(const cJSON *o, const char *name)
{
    const cJSON *v = get(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* A chat completion as a Message. */
static bool chat_to_message(const cJSON *root, cJSON *out)
{
    const cJSON *choice = cJSON_GetArrayItem(get(root, "choices"), 0);
    const cJSON *m = get(choice, "message"), *c;
    if (!cJSON_IsObject(m))
        return false;
    char id[160];
    snprintf(id, sizeof(id), "msg_%s", str(root, "id") ? str(root, "id") : "sluice");
    cJSON_AddStringToObject(out, "id", id);
    cJSON_AddStringToObject(out, "type", "message");
    cJSON_AddStringToObject(out, "role", "assistant");
    copy(out, "model", root, "model");
    cJSON *content = cJSON_AddArrayToObject(out, "content");
    const char *reasoning = str(m, "reasoning_content");
    if (reasoning && reasoning[0]) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "type", "thinking");
        cJSON_AddStringToObject(t, "thinking", reasoning);
        cJSON_AddStringToObject(t, "signature", "");
        cJSON_AddItemToArray(content, t);
    }
    if (str(m, "content") && str(m, "content")[0])
        cJSON_AddItemToArray(content, text_block(str(m, "content")));
    cJSON_ArrayForEach(c, get(m, "tool_calls")) {
        const cJSON *fn = get(c, "function");
        cJSON *input = str(fn, "arguments") ? cJSON_Parse(str(fn, "arguments")) : NULL;
        if (!cJSON_IsObject(input)) { /* what the model wrote, kept where a reader finds it */
            cJSON_Delete(input);
            input = cJSON_CreateObject();
        }
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "type", "tool_use");
        cJSON_AddStringToObject(b, "id", str(c, "id") ? str(c, "id") : "toolu_sluice");
        cJSON_AddStringToObject(b, "name", str(fn, "name") ? str(fn, "name") : "");
        cJSON_AddItemToObject(b, "input", input);
        cJSON_AddItemToArray(content, b);
    }
    cJSON_AddStringToObject(out, "stop_reason", xl_stop_reason(str(choice, "finish_reason")));
    cJSON_AddNullToObject(out, "stop_sequence");
    const cJSON *u = get(root, "usage");
    double cached = num(get(u, "prompt_tokens_details"), "cached_tokens");
    cJSON *usage = cJSON_AddObjectToObject(out, "usage");
    cJSON_AddNumberToObject(usage, "input_tokens", num(u, "prompt_tokens") - cached);
    cJSON_AddNumberToObject(usage, "cache_creation_input_tokens", 0);
    cJSON_AddNumberToObject(usage, "cache_read_input_tokens", cached);
    cJSON_AddNumberToObject(usage, "output_tokens", num(u, "completion_tokens"));
    return true;
}

/* A Message as a chat completion. */
static bool message_to_chat(const cJSON *root, cJSON *out)
{
    const cJSON *b;
    if (!cJSON_IsArray(get(root, "content")))
        return false;
    char id[160];
    snprintf(id, sizeof(id), "chatcmpl-%s", str(root, "id") ? str(root, "id") : "sluice");
    cJSON_AddStringToObject(out, "id", id);
    cJSON_AddStringToObject(out, "object", "chat.completion");
    cJSON_AddNumberToObject(out, "created", (double)time(NULL));
    copy(out, "model", root, "model");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_AddArrayToObject(out, "choices"), choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON *m = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddStringToObject(m, "role", "assistant");
    struct sl_buf text = { 0 }, thinking = { 0 };
    cJSON *calls = cJSON_CreateArray();
    cJSON_ArrayForEach(b, get(root, "content")) {
        const char *type = str(b, "type");
        if (type && strcmp(type, "text") == 0 && str(b, "text"))
            sl_buf_appends(&text, str(b, "text"));
        else if (type && strcmp(type, "thinking") == 0 && str(b, "thinking"))
            sl_buf_appends(&thinking, str(b, "thinking"));
        else if (type && strcmp(type, "tool_use") == 0) {
            cJSON *call = cJSON_CreateObject();
            cJSON_AddStringToObject(call, "id", str(b, "id") ? str(b, "id") : "");
            cJSON_AddStringToObject(call, "type", "function");
            cJSON *fn = cJSON_AddObjectToObject(call, "function");
            cJSON_AddStringToObject(fn, "name", str(b, "name") ? str(b, "name") : "");
            char *args = given(get(b, "input")) ? cJSON_PrintUnformatted(get(b, "input")) : NULL;
            cJSON_AddStringToObject(fn, "arguments", args ? args : "{}");
            free(args);
            cJSON_AddItemToArray(calls, call);
        }
    }
    if (text.len || !cJSON_GetArraySize(calls))
        cJSON_AddStringToObject(m, "content", text.data ? text.data : "");
    else
        cJSON_AddNullToObject(m, "content");
    if (thinking.len)
        cJSON_AddStringToObject(m, "reasoning_content", thinking.data);
    if (cJSON_GetArraySize(calls))
        cJSON_AddItemToObject(m, "tool_calls", calls);
    else
        cJSON_Delete(calls);
    cJSON_AddNullToObject(m, "refusal");
    sl_buf_free(&text);
    sl_buf_free(&thinking);
    cJSON_AddStringToObject(choice, "finish_reason", xl_finish_reason(str(root, "stop_reason")));
    const cJSON *u = get(root, "usage");
    double read = num(u, "cache_read_input_tokens");
    double prompt = num(u, "input_tokens") + num(u, "cache_creation_input_tokens") + read;
    cJSON *usage = cJSON_AddObjectToObject(out, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", prompt);
    cJSON_AddNumberToObject(usage, "completion_tokens", num(u, "output_tokens"));
    cJSON_AddNumberToObject(usage, "total_tokens", prompt + num(u, "output_tokens"));
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(usage, "prompt_tokens_details"), "cached_tokens",
                            read);
    return true;
}

bool xl_response(enum xl_dir d, const char *body, size_t len, struct sl_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *to = cJSON_CreateObject();
    bool ok = cJSON_IsObject(root) && (d == XL_MESSAGES_TO_CHAT ? chat_to_message(root, to)
                                                                : message_to_chat(root, to));
    if (ok)
        print_into(to, out);
    cJSON_Delete(to);
    cJSON_Delete(root);
    return ok;
}

/* ==== errors ====================================================================== */

int xl_error_status(enum xl_dir d, int status)
{
    if (d == XL_MESSAGES_TO_CHAT && status == 503)
        return 529;
    if (d == XL_CHAT_TO_MESSAGES && status == 529)
        return 503;
    return status;
}

void xl_error(enum xl_dir d, int status, const char *body, size_t len, struct sl_buf *out)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *e = get(root, "error");
    const char *message = str(e, "message");
    char fallback[160];
    if (!message) { /* not the dialect's shape: say what came, briefly */
        snprintf(fallback, sizeof(fallback), "The upstream answered %d.", status);
        message = fallback;
    }
    cJSON *to = cJSON_CreateObject();
    if (d == XL_MESSAGES_TO_CHAT) {
        cJSON_AddStringToObject(to, "type", "error");
        cJSON *err = cJSON_AddObjectToObject(to, "error");
        cJSON_AddStringToObject(err, "type", err_anthropic_type_of(xl_error_status(d, status)));
        cJSON_AddStringToObject(err, "message", message);
    } else {
        const char *type = str(e, "type") ? str(e, "type") : "api_error";
        cJSON *err = cJSON_AddObjectToObject(to, "error");
        cJSON_AddStringToObject(err, "message", message);
        cJSON_AddStringToObject(err, "type", type);
        cJSON_AddNullToObject(err, "param");
        cJSON_AddStringToObject(err, "code", status == 429 ? "rate_limit_exceeded" : type);
    }
    print_into(to, out);
    sl_buf_appends(out, "\n");
    cJSON_Delete(to);
    cJSON_Delete(root);
}
