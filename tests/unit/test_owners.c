/* Owners of stored resources: the identity (key, or team with
 * share_resources), the ids a call names, the records answers make and
 * remove (in the in-process limiter), stored responses' ids from a stream,
 * and a list cut to the caller's own with its cursors. */
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "sluice/api_call.h"
#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/limit_local.h"
#include "sluice/owners.h"

static struct limiter lim;
static char got[8][64];

static void read_owners(bool ok, const char *const *owners, void *arg)
{
    int n = *(int *)arg;
    for (int i = 0; i < n; i++)
        snprintf(got[i], sizeof(got[i]), "%s", ok && owners[i] ? owners[i] : "-");
}

static const char *owner_of(const char *id)
{
    int n = 1;
    lim_owners(&lim, &id, 1, read_owners, &n);
    return got[0];
}

static struct api_resource res_of(const char *method, const char *path)
{
    struct api_resource res;
    api_resource_of((struct sl_str){ method, strlen(method) }, (struct sl_str){ path, strlen(path) },
                    &res);
    return res;
}

static void test_identity_and_paths(void)
{
    struct cfg_team shared = { .name = "t", .share_resources = true }, own = { .name = "u" };
    struct cfg_key k = { .name = "a" };
    char me[OWNER_MAX];
    owners_identity(&k, me);
    CHECK(strcmp(me, "k:a") == 0);
    k.team = &own;
    owners_identity(&k, me);
    CHECK(strcmp(me, "k:a") == 0);
    k.team = &shared;
    owners_identity(&k, me);
    CHECK(strcmp(me, "t:t") == 0);

    struct api_resource r = res_of("GET", "/v1/files/file-1/content");
    CHECK(r.what == API_RES_ONE && strcmp(r.id, "file-1") == 0 && !r.deletes);
    r = res_of("DELETE", "/v1/files/file-1");
    CHECK(r.what == API_RES_ONE && r.deletes);
    CHECK(res_of("GET", "/v1/files").what == API_RES_LIST);
    CHECK(res_of("POST", "/v1/files").what == API_RES_CREATE);
    r = res_of("POST", "/v1/fine_tuning/jobs/ftjob-1/cancel");
    CHECK(r.what == API_RES_ONE && strcmp(r.id, "ftjob-1") == 0);
    CHECK(res_of("GET", "/v1/fine_tuning/jobs").what == API_RES_LIST);
    CHECK(res_of("POST", "/v1/threads/runs").what == API_RES_CREATE);
    r = res_of("GET", "/v1/threads/thread_1/runs/run_1");
    CHECK(r.what == API_RES_ONE && strcmp(r.id, "thread_1") == 0);
    r = res_of("DELETE", "/v1/models/ft:gpt-4o:org:x");
    CHECK(r.what == API_RES_ONE && strcmp(r.id, "ft:gpt-4o:org:x") == 0);
    CHECK(res_of("GET", "/v1/models/gpt-4o").what == API_RES_NONE); /* a base model is nobody's */
    CHECK(res_of("POST", "/v1/chat/completions").what == API_RES_NONE);
    CHECK(res_of("GET", "/v1/chat/completions").what == API_RES_LIST);
    CHECK(res_of("POST", "/v1/responses").what == API_RES_NONE);
    CHECK(res_of("POST", "/v1/embeddings").what == API_RES_NONE);
    char longpath[300] = "/v1/files/";
    memset(longpath + 10, 'x', 200);
    r = res_of("GET", longpath);
    CHECK(r.what == API_RES_ONE && strlen(r.id) == API_RES_ID_MAX); /* cut: matches no record */
}

static void test_references(void)
{
    struct api_call call = { 0 };
    call.root = cJSON_Parse("{\"input_file_id\":\"file-9\",\"previous_response_id\":\"resp_1\","
                            "\"file_id\":\"\",\"assistant_id\":7}");
    struct api_resource r = res_of("POST", "/v1/vector_stores/vs_1/files");
    const char *ids[OWNERS_REFS];
    int n = owners_refs(&call, &r, ids);
    CHECK(n == 3 && strcmp(ids[0], "vs_1") == 0 && strcmp(ids[1], "resp_1") == 0 &&
          strcmp(ids[2], "file-9") == 0); /* empty and non-string ones are no reference */
    cJSON_Delete(call.root);
}

static void test_records(void)
{
    struct api_call call = { .kind = API_KIND_FREE, .endpoint = API_OTHER, .store = -1 };
    struct api_resource r = res_of("POST", "/v1/files");
    const char made[] = "{\"id\":\"file-7\",\"object\":\"file\"}";
    owners_after(&lim, &call, &r, "k:a", made, sizeof(made) - 1, NULL, NULL);
    CHECK(strcmp(owner_of("file-7"), "k:a") == 0);
    r = res_of("POST", "/v1/uploads/upload_1/complete");
    const char done[] = "{\"id\":\"upload_1\",\"file\":{\"id\":\"file-8\"}}";
    owners_after(&lim, &call, &r, "k:a", done, sizeof(done) - 1, NULL, NULL);
    CHECK(strcmp(owner_of("file-8"), "k:a") == 0);
    CHECK(strcmp(owner_of("upload_1"), "-") == 0); /* made by the POST that created it */
    r = res_of("GET", "/v1/fine_tuning/jobs/ftjob-1");
    const char job[] = "{\"object\":\"fine_tuning.job\",\"id\":\"ftjob-1\",\"fine_tuned_model\":\"ft:m:o:x\"}";
    owners_after(&lim, &call, &r, "t:t", job, sizeof(job) - 1, NULL, NULL);
    CHECK(strcmp(owner_of("ft:m:o:x"), "t:t") == 0);
    r = res_of("DELETE", "/v1/files/file-7");
    owners_after(&lim, &call, &r, "k:a", "{}", 2, NULL, NULL);
    CHECK(strcmp(owner_of("file-7"), "-") == 0);
    /* a stored response: by its first member id, read without a tree */
    struct api_call resp = { .kind = API_KIND_USAGE, .endpoint = API_RESPONSES, .store = -1 };
    r = res_of("POST", "/v1/responses");
    const char answer[] = "{ \"id\" : \"resp_5\", \"output\":[{\"id\":\"msg_1\"}]}";
    owners_after(&lim, &resp, &r, "k:b", answer, sizeof(answer) - 1, NULL, NULL);
    CHECK(strcmp(owner_of("resp_5"), "k:b") == 0);
    resp.store = 0; /* store: false keeps nothing upstream */
    const char unstored[] = "{\"id\":\"resp_6\"}";
    owners_after(&lim, &resp, &r, "k:b", unstored, sizeof(unstored) - 1, NULL, NULL);
    CHECK(strcmp(owner_of("resp_6"), "-") == 0);
    struct api_call chat = { .kind = API_KIND_USAGE, .endpoint = API_CHAT, .store = -1 };
    const char completion[] = "{\"id\":\"chatcmpl-1\"}";
    owners_after(&lim, &chat, &r, "k:b", completion, sizeof(completion) - 1, NULL, NULL);
    CHECK(strcmp(owner_of("chatcmpl-1"), "-") == 0); /* not stored unless asked */
    chat.store = 1;
    const char chunk[] = "{\"id\":\"chatcmpl-2\",\"choices\":[]}";
    CHECK(owners_stream_event(&lim, &chat, "k:b", chunk, sizeof(chunk) - 1));
    CHECK(strcmp(owner_of("chatcmpl-2"), "k:b") == 0);
    resp.store = -1;
    const char created[] = "{\"type\":\"response.created\",\"response\":{\"id\":\"resp_9\"}}";
    CHECK(owners_stream_event(&lim, &resp, "k:b", created, sizeof(created) - 1));
    CHECK(strcmp(owner_of("resp_9"), "k:b") == 0);
    CHECK(!owners_stream_event(&lim, &resp, "k:b", "[DONE]", 6)); /* not an event to read */
}

static void test_cut_list(void)
{
    lim_own(&lim, "f1", "k:a", 0);
    lim_own(&lim, "f3", "k:a", 0);
    lim_own(&lim, "f2", "k:b", 0);
    const char list[] = "{\"object\":\"list\",\"data\":[{\"id\":\"f1\"},{\"id\":\"f2\"},{\"id\":\"f3\"},"
                        "{\"id\":\"f4\"}],\"first_id\":\"f1\",\"last_id\":\"f4\",\"has_more\":false}";
    cJSON *root;
    static const char *ids[LIM_OWNERS_MAX];
    int n = owners_list_ids(list, sizeof(list) - 1, &root, ids);
    CHECK(n == 4);
    int k = n;
    lim_owners(&lim, ids, n, read_owners, &k);
    const char *owners[4] = { got[0], got[1], got[2], got[3] };
    struct evbuffer *out = evbuffer_new();
    owners_cut_list(root, owners, n, "k:a", out);
    size_t len = evbuffer_get_length(out);
    char *text = (char *)evbuffer_pullup(out, -1);
    CHECK(len == strlen("{\"object\":\"list\",\"data\":[{\"id\":\"f1\"},{\"id\":\"f3\"}],"
                        "\"first_id\":\"f1\",\"last_id\":\"f3\",\"has_more\":false}") &&
          memcmp(text, "{\"object\":\"list\",\"data\":[{\"id\":\"f1\"},{\"id\":\"f3\"}],\"first_id\":\"f1\","
                       "\"last_id\":\"f3\",\"has_more\":false}", len) == 0);
    cJSON_Delete(root);
    root = NULL;
    CHECK(owners_list_ids("{\"object\":\"file\"}", 17, &root, ids) == -1); /* not a list */
    cJSON_Delete(root);
    evbuffer_free(out);
}

/* The in-process table does not grow without end: past its cap the
 * expired records are swept, then new ones are dropped. */
static void test_cap(struct lim_local *local)
{
    struct lim_local *small = lim_local_new(60000);
    struct limiter keep = lim;
    lim.local = (struct lim_backend){ &lim_local_ops, small };
    lim_local_owners_max(small, 2);
    lim_own(&lim, "old", "k:a", 1); /* kept a second */
    lim_own(&lim, "b", "k:a", 0);
    struct timespec ts = { 1, 100 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    lim_own(&lim, "c", "k:a", 0); /* full: "old" has expired and makes room */
    lim_own(&lim, "d", "k:a", 0); /* full still: dropped */
    CHECK(strcmp(owner_of("old"), "-") == 0 && strcmp(owner_of("b"), "k:a") == 0);
    CHECK(strcmp(owner_of("c"), "k:a") == 0 && strcmp(owner_of("d"), "-") == 0);
    lim_own(&lim, "b", NULL, 0); /* removing always works, and makes room */
    lim_own(&lim, "d", "k:a", 0);
    CHECK(strcmp(owner_of("d"), "k:a") == 0);
    lim = keep;
    lim_local_free(small);
    (void)local;
}

int main(void)
{
    struct lim_local *local = lim_local_new(60000);
    lim.local = (struct lim_backend){ &lim_local_ops, local };
    test_identity_and_paths();
    test_references();
    test_records();
    test_cut_list();
    test_cap(local);
    lim_local_free(local);
    return check_done();
}
