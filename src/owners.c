/* Owners of stored resources (owners.h). */
#include "sluice/owners.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/json_scan.h"
#include "sluice/limit.h"
#include "sluice/log.h"
#include "sluice/util.h"

/* Stored responses and chat completions are kept 30 days upstream: so are their records. */
#define STORED_TTL_S (30 * 24 * 3600)

void owners_identity(const struct cfg_key *k, char out[OWNER_MAX])
{
    if (k->team && k->team->share_resources)
        snprintf(out, OWNER_MAX, "t:%s", k->team->name);
    else
        snprintf(out, OWNER_MAX, "k:%s", k->name);
}

/* A reference a body may make to another stored resource (top level only). */
static const char *const ref_names[] = { "previous_response_id", "conversation", "input_file_id",
                                         "file_id", "training_file", "validation_file",
                                         "assistant_id" };

int owners_refs(const struct api_call *call, const struct api_resource *res,
                const char *ids[OWNERS_REFS])
{
    int n = 0;
    if (res->what == API_RES_ONE)
        ids[n++] = res->id;
    for (size_t i = 0; call->root && i < SL_ARRAY_LEN(ref_names) && n < OWNERS_REFS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(call->root, ref_names[i]);
        if (cJSON_IsString(v) && v->valuestring[0])
            ids[n++] = v->valuestring;
    }
    return n;
}

/* The string value of the top-level member `name`, as written (an id has no
 * escapes; one that has some is not taken). One pass, no tree: a stored
 * response's answer may be long. */
static bool top_string(const char *body, size_t len, const char *name, char *out, size_t n)
{
    struct json_scan js = { body, body + len };
    if (!js_take(&js, '{'))
        return false;
    do {
        struct sl_str key, value;
        bool escaped;
        if (!js_string(&js, &key, &escaped) || !js_take(&js, ':'))
            return false;
        if (!escaped && sl_str_eq(key, name)) {
            if (js_peek(&js) != '"' || !js_string(&js, &value, &escaped) || escaped ||
                !value.len || value.len >= n)
                return false;
            memcpy(out, value.p, value.len);
            out[value.len] = '\0';
            return true;
        }
        if (!js_skip_value(&js, 1))
            return false;
    } while (js_take(&js, ','));
    return false;
}

/* The records one answer makes: done runs once all are written. */
struct batch {
    struct limiter *l;
    int left; /* records not written yet, and one for owners_after itself */
    void (*done)(void *arg);
    void *arg;
};

static void batch_one(bool ok, void *arg)
{
    (void)ok; /* one not written is logged by the limiter; the answer goes out anyway */
    struct batch *b = arg;
    if (--b->left)
        return;
    if (b->done)
        b->done(b->arg);
    free(b);
}

static void own_id(struct batch *b, const char *id, const char *owner, int64_t ttl_s)
{
    b->left++;
    lim_own_then(b->l, id, owner, ttl_s, batch_one, b);
}

static void own_string(struct batch *b, const cJSON *v, const char *me, int64_t ttl_s)
{
    if (cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) <= API_RES_ID_MAX)
        own_id(b, v->valuestring, me, ttl_s);
}

/* Whether the call's answer is stored upstream: a response (store defaults to
 * true) or a chat completion with store: true. */
static bool stored_answer(const struct api_call *call)
{
    return call->kind == API_KIND_USAGE &&
           ((call->endpoint == API_RESPONSES && call->store != 0) ||
            (call->endpoint == API_CHAT && call->store == 1));
}

bool owners_stream_event(struct limiter *l, const struct api_call *call, const char *me,
                         const char *data, size_t len)
{
    if (!stored_answer(call))
        return true;
    if (len == 0 || data[0] != '{')
        return false;
    cJSON *root = cJSON_ParseWithLength(data, len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id"); /* a chat chunk's */
    if (!id) /* a Responses event: response.created carries the response */
        id = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "response"), "id");
    struct batch *b = sl_calloc(1, sizeof(*b));
    *b = (struct batch){ l, 1, NULL, NULL };
    own_string(b, id, me, STORED_TTL_S); /* not waited for: the stream goes on */
    batch_one(true, b);
    cJSON_Delete(root);
    return true;
}

/* What a successful answer makes or removes, into b. */
static void records_of(struct batch *b, const struct api_call *call, const struct api_resource *res,
                       const char *me, const char *body, size_t len)
{
    if (res->deletes) {
        own_id(b, res->id, NULL, 0);
        return;
    }
    if (stored_answer(call)) {
        char id[API_RES_ID_MAX + 1];
        if (top_string(body, len, "id", id, sizeof(id))) {
            own_id(b, id, me, STORED_TTL_S);
            return;
        }
        cJSON *root = cJSON_ParseWithLength(body, len); /* past what the one pass reads */
        own_string(b, cJSON_GetObjectItemCaseSensitive(root, "id"), me, STORED_TTL_S);
        cJSON_Delete(root);
        return;
    }
    if (res->what != API_RES_CREATE && res->what != API_RES_ONE)
        return;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return;
    }
    if (res->what == API_RES_CREATE)
        own_string(b, cJSON_GetObjectItemCaseSensitive(root, "id"), me, 0);
    /* what an answer brings into being: an upload's file, a run's thread, a job's model */
    own_string(b, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "file"), "id"),
               me, 0);
    if (res->what == API_RES_CREATE)
        own_string(b, cJSON_GetObjectItemCaseSensitive(root, "thread_id"), me, 0);
    const cJSON *object = cJSON_GetObjectItemCaseSensitive(root, "object");
    if (cJSON_IsString(object) && strcmp(object->valuestring, "fine_tuning.job") == 0)
        own_string(b, cJSON_GetObjectItemCaseSensitive(root, "fine_tuned_model"), me, 0);
    cJSON_Delete(root);
}

bool owners_after(struct limiter *l, const struct api_call *call, const struct api_resource *res,
                  const char *me, const char *body, size_t len, void (*done)(void *arg), void *arg)
{
    struct batch *b = sl_calloc(1, sizeof(*b));
    *b = (struct batch){ l, 1, done, arg };
    records_of(b, call, res, me, body, len);
    bool any = b->left > 1;
    if (!any)
        b->done = NULL; /* nothing to wait for: the caller goes on by itself */
    batch_one(true, b);
    return any;
}

bool owners_is_list(const struct api_resource *res)
{
    return res->what == API_RES_LIST;
}

int owners_list_ids(const char *body, size_t len, cJSON **root, const char **ids)
{
    *root = cJSON_ParseWithLength(body, len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(*root, "data");
    int n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, data) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
        ids[n++] = cJSON_IsString(id) ? id->valuestring : "";
        if (n == LIM_OWNERS_MAX)
            break;
    }
    return cJSON_IsArray(data) ? n : -1;
}

void owners_cut_list(cJSON *root, const char *const *owners, int n, const char *me,
                     struct evbuffer *body)
{
    cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    cJSON *item = data ? data->child : NULL;
    for (int i = 0; i < n && item; i++) {
        cJSON *next = item->next;
        if (!owners || !owners[i] || strcmp(owners[i], me) != 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(data, item));
        item = next;
    }
    while (item) { /* past what one lookup takes: not shown */
        cJSON *next = item->next;
        cJSON_Delete(cJSON_DetachItemViaPointer(data, item));
        item = next;
    }
    /* the page's cursors name what it shows (null when it shows nothing) */
    const cJSON *head = data ? data->child : NULL, *tail = head;
    while (tail && tail->next)
        tail = tail->next;
    const cJSON *ends[2] = { cJSON_GetObjectItemCaseSensitive(head, "id"),
                             cJSON_GetObjectItemCaseSensitive(tail, "id") };
    const char *names[2] = { "first_id", "last_id" };
    for (int i = 0; i < 2; i++)
        if (cJSON_GetObjectItemCaseSensitive(root, names[i]))
            cJSON_ReplaceItemInObjectCaseSensitive(
                root, names[i],
                cJSON_IsString(ends[i]) ? cJSON_CreateString(ends[i]->valuestring) : cJSON_CreateNull());
    char *text = cJSON_PrintUnformatted(root);
    evbuffer_drain(body, evbuffer_get_length(body));
    if (text)
        evbuffer_add(body, text, strlen(text));
    free(text);
}
