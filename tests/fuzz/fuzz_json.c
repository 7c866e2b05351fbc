/* libFuzzer target: a /v1 JSON body as api_validate reads it — the JSON
 * scanner and the one-pass chat reader, or the cJSON path. The first byte
 * picks the endpoint. What must hold: when the one-pass reader takes a chat
 * body, the cJSON path takes it too and reads the same model, stream flag,
 * counts and prompt estimate (one reading, whichever path); and a body
 * accepted at all has no member twice in any object, escapes no NUL, and
 * names as its model exactly what a standard parser reads. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/log.h"

static const char *const paths[] = { "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                                     "/v1/responses", "/v1/images/generations", "/v1/messages",
                                     "/v1/messages/count_tokens" };

/* Whether some object in the tree has two members of one name (after
 * unescaping, as every parser compares them). */
static bool repeats(const cJSON *node)
{
    for (const cJSON *a = node ? node->child : NULL; a; a = a->next) {
        if (cJSON_IsObject(node))
            for (const cJSON *b = a->next; b; b = b->next)
                if (a->string && b->string && strcmp(a->string, b->string) == 0)
                    return true;
        if (repeats(a))
            return true;
    }
    return false;
}

static bool same_reading(const struct api_call *a, const struct api_call *b)
{
    return a->model_len == b->model_len && memcmp(a->model, b->model, a->model_len) == 0 &&
           a->stream == b->stream && a->store == b->store &&
           a->client_include_usage == b->client_include_usage &&
           a->estimate == b->estimate && a->max_tokens == b->max_tokens &&
           a->choices == b->choices && a->endpoint == b->endpoint;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    log_set_level(LOG_OFF);
    const char *path = paths[data[0] % (sizeof(paths) / sizeof(paths[0]))];
    size_t len = size - 1;
    char *body = malloc(len + 1); /* the server's bodies end in a NUL past their length */
    memcpy(body, data + 1, len);
    body[len] = '\0';

    struct api_call call, tree;
    char msg[256], msg2[256];
    const char *param = NULL, *param2 = NULL;
    int rc = api_validate(path, strlen(path), body, len, &call, msg, sizeof(msg), &param);
    int rc2 = api_validate_tree(path, strlen(path), body, len, &tree, msg2, sizeof(msg2), &param2);
    if (rc == 0 && !call.root) { /* the one-pass reader took it */
        FUZZ_ASSERT(rc2 == 0);
        FUZZ_ASSERT(same_reading(&call, &tree));
    }
    if (rc == 0) {
        cJSON *root = cJSON_ParseWithLength(body, len);
        FUZZ_ASSERT(root && cJSON_IsObject(root));
        FUZZ_ASSERT(!repeats(root));
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
        if (cJSON_IsString(model)) { /* cJSON stops a string at an escaped NUL: none may be */
            FUZZ_ASSERT(strlen(model->valuestring) == call.model_len);
            FUZZ_ASSERT(memcmp(model->valuestring, call.model, call.model_len) == 0);
        }
        for (size_t i = 0; i < call.model_len; i++)
            FUZZ_ASSERT((unsigned char)call.model[i] >= 0x20);
        cJSON_Delete(root);
    }
    cJSON_Delete(call.root);
    cJSON_Delete(tree.root);
    free(body);
    return 0;
}
