/* The parsed API call's rules: endpoints by path, output counts, plain API
 * paths (percent-decoded in place) and the segments an upstream cannot
 * resolve elsewhere. */
#define CHECK_WITH_REQUEST
#include "check.h"
#include "sluice/api_call.h"

static bool plain(const char *path, char *decoded, size_t n)
{
    static char copy[512];
    snprintf(copy, sizeof(copy), "%s", path); /* decoded in place: the request's own copy */
    struct http_req req;
    check_request(&req, "POST", copy, NULL, NULL, NULL);
    bool ok = api_plain_path(&req);
    snprintf(decoded, n, "%.*s", (int)req.path.len, req.path.p);
    return ok;
}

static void test_paths(void)
{
    char out[512];
    CHECK(plain("/v1/chat/completions", out, sizeof(out)) && strcmp(out, "/v1/chat/completions") == 0);
    CHECK(plain("/v1/files/file-abc_1.2~x:y", out, sizeof(out)));
    CHECK(plain("/v1/chat%2Fcompletions", out, sizeof(out)) && strcmp(out, "/v1/chat/completions") == 0);
    CHECK(!plain("/v1/files/..", out, sizeof(out)));
    CHECK(!plain("/v1/files/%2e%2e/x", out, sizeof(out)));   /* ".." after decoding */
    CHECK(!plain("/v1/files/%2E%2E%2Fadmin", out, sizeof(out)));
    CHECK(!plain("/v1//files", out, sizeof(out)));          /* an empty segment */
    CHECK(!plain("/v1/files/", out, sizeof(out)));
    CHECK(!plain("/v1/a%2", out, sizeof(out)));             /* a cut escape */
    CHECK(!plain("/v1/a%zz", out, sizeof(out)));
    CHECK(!plain("/v1/a b", out, sizeof(out)));
    CHECK(!plain("/v1/a%00b", out, sizeof(out)));
    CHECK(!plain("/v2/chat", out, sizeof(out)));
    CHECK(!plain("/v1/", out, sizeof(out)));
    char longest[API_MAX_PATH + 2];
    memset(longest, 'a', sizeof(longest) - 1);
    memcpy(longest, "/v1/", 4);
    longest[API_MAX_PATH] = '\0';
    CHECK(plain(longest, out, sizeof(out)));
    longest[API_MAX_PATH] = 'a';
    longest[API_MAX_PATH + 1] = '\0';
    CHECK(!plain(longest, out, sizeof(out)));
    CHECK(api_safe_segment("gpt-4o", 6) && api_safe_segment("ft:gpt-4o:org:x", 15));
    CHECK(!api_safe_segment(".", 1) && !api_safe_segment("..", 2) && !api_safe_segment("", 0));
    CHECK(!api_safe_segment("a/b", 3) && !api_safe_segment("a?b", 3) && !api_safe_segment("a#", 2));
}

static void test_endpoints_and_counts(void)
{
    CHECK(api_endpoint_of("/v1/chat/completions", 20) == API_CHAT);
    CHECK(api_endpoint_of("/v1/completions", 15) == API_COMPLETIONS);
    CHECK(api_endpoint_of("/v1/embeddings", 14) == API_EMBEDDINGS);
    CHECK(api_endpoint_of("/v1/responses", 13) == API_RESPONSES);
    CHECK(api_endpoint_of("/v1/responses/resp_1", 20) == API_OTHER); /* a stored one */
    CHECK(api_endpoint_of("/v1/chat/completions/x", 22) == API_OTHER);
    CHECK(api_endpoint_of("/v1/messages", 12) == API_MESSAGES &&
          api_endpoint_dialect(API_MESSAGES) && api_endpoint_dialect(API_COUNT_TOKENS));
    CHECK(api_endpoint_of("/v1/messages/count_tokens", 25) == API_COUNT_TOKENS);
    CHECK(api_endpoint_of("/v1/messages/batches", 20) == API_OTHER && !api_endpoint_dialect(API_CHAT));
    struct api_call call = { 0 };
    api_count_output(&call, false, 100);
    api_count_output(&call, false, 40); /* the largest of the max-token fields */
    api_count_output(&call, true, 3);
    CHECK(call.max_tokens == 100 && call.choices == 3);
    api_count_output(&call, false, (int64_t)1e15); /* capped: products stay in range */
    CHECK(call.max_tokens == 1000000000);
}

static enum api_kind kind(const char *method, const char *path, enum api_unit *unit)
{
    return api_kind_of((struct sl_str){ method, strlen(method) }, (struct sl_str){ path, strlen(path) },
                       unit);
}

/* The one table of /v1 endpoints: usage read, priced per request, free, or unknown. */
static void test_endpoint_table(void)
{
    enum api_unit u;
    CHECK(kind("POST", "/v1/chat/completions", &u) == API_KIND_USAGE);
    CHECK(kind("POST", "/v1/responses", &u) == API_KIND_USAGE);
    CHECK(kind("POST", "/v1/images/generations", &u) == API_KIND_PER_REQUEST && u == API_UNIT_IMAGE);
    CHECK(kind("POST", "/v1/images/edits", &u) == API_KIND_PER_REQUEST && u == API_UNIT_IMAGE);
    CHECK(kind("POST", "/v1/audio/speech", &u) == API_KIND_PER_REQUEST && u == API_UNIT_CHARACTER);
    CHECK(kind("POST", "/v1/audio/transcriptions", &u) == API_KIND_PER_REQUEST && u == API_UNIT_REQUEST);
    CHECK(kind("POST", "/v1/moderations", &u) == API_KIND_PER_REQUEST);
    /* Anthropic's Messages API: its usage read; counting tokens costs nothing */
    CHECK(kind("POST", "/v1/messages", &u) == API_KIND_USAGE);
    CHECK(kind("POST", "/v1/messages/count_tokens", &u) == API_KIND_FREE);
    CHECK(kind("POST", "/v1/files", &u) == API_KIND_FREE);
    CHECK(kind("POST", "/v1/uploads/upload_1/parts", &u) == API_KIND_FREE);
    CHECK(kind("POST", "/v1/batches/batch_1/cancel", &u) == API_KIND_FREE);
    CHECK(kind("GET", "/v1/models", &u) == API_KIND_FREE);
    CHECK(kind("GET", "/v1/responses/resp_1", &u) == API_KIND_FREE);
    CHECK(kind("DELETE", "/v1/chat/completions/c_1", &u) == API_KIND_FREE);
    CHECK(kind("GET", "/v1/vector_stores/vs_1/files", &u) == API_KIND_FREE);
    /* what costs money sluice cannot see, and anything else */
    CHECK(kind("POST", "/v1/batches", &u) == API_KIND_UNKNOWN);
    CHECK(kind("POST", "/v1/threads/t/runs", &u) == API_KIND_UNKNOWN);
    CHECK(kind("POST", "/v1/messages/batches", &u) == API_KIND_UNKNOWN);
    CHECK(kind("POST", "/v1/responses/resp_1", &u) == API_KIND_UNKNOWN);
    CHECK(kind("GET", "/v1/realtime/sessions", &u) == API_KIND_UNKNOWN);
    CHECK(kind("POST", "/v1/filesx", &u) == API_KIND_UNKNOWN); /* a family is a whole segment */
    CHECK(kind("GET", "/v1/modelsx", &u) == API_KIND_UNKNOWN);
    CHECK(kind("POST", "/v1/cancel", &u) == API_KIND_UNKNOWN);
}

int main(void)
{
    test_paths();
    test_endpoints_and_counts();
    test_endpoint_table();
    return check_done();
}
