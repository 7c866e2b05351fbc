/* Usage extraction from upstream responses. Parsing JSON costs, so an SSE
 * event is parsed only when its text holds a "usage" object. */
#include "sluice/tokens.h"

#include <cjson/cJSON.h>
#include <string.h>

static bool read_count(const cJSON *obj, const char *a, const char *b, int64_t *out)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (!cJSON_IsNumber(n))
        n = cJSON_GetObjectItemCaseSensitive(obj, b);
    if (!cJSON_IsNumber(n) || n->valuedouble < 0)
        return false;
    *out = (int64_t)n->valuedouble;
    return true;
}

static bool usage_from_root(const cJSON *root, struct tok_usage *u)
{
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (!cJSON_IsObject(usage)) {
        const cJSON *resp = cJSON_GetObjectItemCaseSensitive(root, "response");
        usage = cJSON_IsObject(resp) ? cJSON_GetObjectItemCaseSensitive(resp, "usage") : NULL;
    }
    if (!cJSON_IsObject(usage))
        return false;
    int64_t prompt = 0, completion = 0;
    bool has_prompt = read_count(usage, "prompt_tokens", "input_tokens", &prompt);
    bool has_completion = read_count(usage, "completion_tokens", "output_tokens", &completion);
    if (!has_prompt && !has_completion)
        return false;
    u->seen = true;
    u->prompt = prompt;
    u->completion = completion;
    return true;
}

bool tok_usage_from_body(const char *body, size_t len, struct tok_usage *u)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root)
        return false;
    bool ok = usage_from_root(root, u);
    cJSON_Delete(root);
    return ok;
}

/* True when the text has "usage" followed by ':' and '{' (not null). */
static bool mentions_usage_object(const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    while ((p = memmem(p, (size_t)(end - p), "\"usage\"", 7)) != NULL) {
        p += 7;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p < end && *p == ':') {
            p++;
            while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
            if (p < end && *p == '{')
                return true;
        }
    }
    return false;
}

bool tok_usage_from_sse_data(const char *data, size_t len, struct tok_usage *u)
{
    if (!mentions_usage_object(data, len))
        return false;
    return tok_usage_from_body(data, len, u);
}
