/* libFuzzer target: what owners.c reads of upstream answers and client
 * paths. The first byte picks the reading: a stored response's answer (its
 * top-level id, read in one pass without a tree), a creation's answer (id,
 * file.id, thread_id, a job's fine_tuned_model), a stream's first event, a
 * list answer cut to one owner, or a path's stored resource. What must hold:
 * the id recorded for a stored response is the one cJSON reads whenever the
 * body is a JSON object whose first "id" is a plain string; every record
 * made is at most API_RES_ID_MAX bytes; a cut list is JSON whose items all
 * belong to the caller; a path's id is a non-empty prefix of a segment of
 * the path, never longer than API_RES_ID_MAX. */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/limit.h"
#include "sluice/limit_local.h"
#include "sluice/log.h"
#include "sluice/owners.h"

static struct limiter lim;
static char got[64][API_RES_ID_MAX + 8];
static int ngot;

static void read_owners(bool ok, const char *const *owners, void *arg)
{
    (void)arg;
    for (int i = 0; i < ngot; i++)
        snprintf(got[i], sizeof(got[i]), "%s", ok && owners[i] ? owners[i] : "");
}

static const char *owner_of(const char *id)
{
    ngot = 1;
    lim_owners(&lim, &id, 1, read_owners, NULL);
    return got[0];
}

/* The first top-level "id" as cJSON reads it, if a plain string (no escapes in the text). */
static const char *cjson_id(const cJSON *root, const char *body, size_t len)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (!cJSON_IsString(id) || !id->valuestring[0] || strlen(id->valuestring) > API_RES_ID_MAX)
        return NULL;
    return memchr(body, '\\', len) ? NULL : id->valuestring;
}

static void stored_response(const char *body, size_t len)
{
    struct api_call call = { .kind = API_KIND_USAGE, .endpoint = API_RESPONSES, .store = -1 };
    struct api_resource res = { 0 };
    cJSON *root = cJSON_ParseWithLength(body, len);
    const char *want = cJSON_IsObject(root) ? cjson_id(root, body, len) : NULL;
    /* a key of this very run: what was recorded before does not count */
    static unsigned run;
    char me[32];
    snprintf(me, sizeof(me), "k:run%u", ++run);
    owners_after(&lim, &call, &res, me, body, len, NULL, NULL);
    if (want) /* a valid object with a plain first id: recorded, for this caller */
        FUZZ_ASSERT(strcmp(owner_of(want), me) == 0);
    cJSON_Delete(root);
}

static void creation(const char *body, size_t len, bool one)
{
    struct api_call call = { .kind = API_KIND_FREE, .endpoint = API_OTHER, .store = -1 };
    struct api_resource res = { .what = one ? API_RES_ONE : API_RES_CREATE };
    strcpy(res.id, "x");
    owners_after(&lim, &call, &res, "k:c", body, len, NULL, NULL);
    struct api_call stream = { .kind = API_KIND_USAGE, .endpoint = API_CHAT, .store = 1 };
    owners_stream_event(&lim, &stream, "k:s", body, len);
}

static void list(const char *body, size_t len)
{
    cJSON *root = NULL;
    static const char *ids[LIM_OWNERS_MAX];
    int n = owners_list_ids(body, len, &root, ids);
    if (n > 0) {
        for (int i = 0; i < n; i += 2) /* every other item is the caller's */
            if (ids[i][0] && strlen(ids[i]) <= API_RES_ID_MAX)
                lim_own(&lim, ids[i], "k:list", 0);
        const char *owners[64];
        ngot = SL_MIN(n, 64);
        lim_owners(&lim, ids, ngot, read_owners, NULL);
        for (int i = 0; i < ngot; i++)
            owners[i] = got[i];
        struct evbuffer *out = evbuffer_new();
        owners_cut_list(root, owners, ngot, "k:list", out);
        size_t olen = evbuffer_get_length(out);
        cJSON *cut = cJSON_ParseWithLength((const char *)evbuffer_pullup(out, -1), olen);
        FUZZ_ASSERT(cut != NULL);
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(cut, "data")) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
            FUZZ_ASSERT(cJSON_IsString(id) && strcmp(owner_of(id->valuestring), "k:list") == 0);
        }
        cJSON_Delete(cut);
        evbuffer_free(out);
    }
    cJSON_Delete(root);
}

static void path(const char *p, size_t len)
{
    struct api_resource res;
    api_resource_of((struct sl_str){ "GET", 3 }, (struct sl_str){ p, len }, &res);
    if (res.what != API_RES_ONE)
        return;
    size_t n = strlen(res.id);
    FUZZ_ASSERT(n > 0 && n <= API_RES_ID_MAX && memmem(p, len, res.id, n));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct lim_local *local;
    static unsigned runs;
    if (local && ++runs % 4096 == 0) { /* the records of earlier runs would only grow */
        lim_local_free(local);
        local = NULL;
    }
    if (!local) {
        log_set_level(LOG_OFF);
        local = lim_local_new(60000);
        lim.local = (struct lim_backend){ &lim_local_ops, local };
    }
    if (size < 1)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 5) {
    case 0:
        stored_response(body, len);
        break;
    case 1:
        creation(body, len, false);
        break;
    case 2:
        creation(body, len, true);
        break;
    case 3:
        list(body, len);
        break;
    default:
        path(body, len);
    }
    return 0;
}
