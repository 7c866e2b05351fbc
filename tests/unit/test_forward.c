/* What an attempt sends upstream: the URL for each backend type, the header
 * list (the allow-list, the backend's credential, traceparent, Expect), and
 * the body's forms (as it came, with include_usage, with the model renamed). */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdlib.h>

#define CHECK_WITH_REQUEST
#include "check.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/config.h"
#include "sluice/forward.h"

static struct cfg_backend backend(enum backend_type type, const char *url)
{
    static char *forward[] = { "x-team" };
    return (struct cfg_backend){ .name = "b", .url = (char *)url, .type = type,
                                 .api_key = "upstream-secret", .api_version = "2024-06-01",
                                 .forward_headers = { .n = 1, .names = forward } };
}

/* The list's lines, in order, joined by '|'. */
static void lines(const struct curl_slist *l, char *out, size_t n)
{
    out[0] = '\0';
    for (; l; l = l->next) {
        strncat(out, l->data, n - strlen(out) - 2);
        strcat(out, "|");
    }
}

static void test_url(void)
{
    struct http_req req;
    check_request(&req, "POST", "/v1/chat/completions", "a=1", NULL, NULL);
    struct cfg_backend oa = backend(BACKEND_OPENAI, "http://up/v1");
    char *u = fwd_url(&req, &oa, false, "gpt-4o", XL_NONE);
    CHECK_STR(u, "http://up/v1/chat/completions?a=1");
    free(u);
    struct cfg_backend az = backend(BACKEND_AZURE, "https://res.openai.azure.com");
    u = fwd_url(&req, &az, false, "gpt 4o/x", XL_NONE);
    CHECK_STR(u, "https://res.openai.azure.com/openai/deployments/gpt%204o%2Fx/chat/completions"
                 "?api-version=2024-06-01&a=1");
    free(u);
    /* the client's query cannot set api-version or add api-key (issue #28, finding 10) */
    struct http_req q;
    check_request(&q, "POST", "/v1/chat/completions",
                  "x=1&api-version=2099-01-01&API%2Dkey=stolen&Api-Key&y=2&&", NULL, NULL);
    u = fwd_url(&q, &az, false, "gpt-4o", XL_NONE);
    CHECK_STR(u, "https://res.openai.azure.com/openai/deployments/gpt-4o/chat/completions"
                 "?api-version=2024-06-01&x=1&y=2");
    free(u);
    az.deployment = "dep";
    u = fwd_url(&req, &az, false, "gpt-4o", XL_NONE);
    CHECK(strstr(u, "/openai/deployments/dep/chat/completions?") != NULL);
    free(u);
    sl_buf_free(&req.body);
    check_request(&req, "GET", "/v1/files/file-1", NULL, NULL, NULL);
    u = fwd_url(&req, &az, true, NULL, XL_NONE); /* the account's own, not a deployment's */
    CHECK_STR(u, "https://res.openai.azure.com/openai/files/file-1?api-version=2024-06-01");
    free(u);
    sl_buf_free(&req.body);
}

static void test_headers(void)
{
    static const char *const in[] = { "Authorization: Bearer sk-client", "Accept: application/json",
                                      "X-Team: blue", "X-Other: no", "Cookie: c=1",
                                      "traceparent: 00-client", "Connection: close, X-Team",
                                      NULL };
    struct http_req req;
    check_request(&req, "POST", "/v1/chat/completions", NULL, in, "{}");
    struct cfg_backend oa = backend(BACKEND_OPENAI, "http://up/v1");
    char text[2048];
    struct curl_slist *l = fwd_headers(&req, &oa, API_BODY_JSON, 2, NULL);
    lines(l, text, sizeof(text));
    /* the client's credential, cookies and what Connection names stay; its traceparent passes */
    CHECK_STR(text, "Accept: application/json|traceparent: 00-client|"
                    "Content-Type: application/json|Authorization: Bearer upstream-secret|");
    fwd_headers_free(l);
    /* X-Request-Id goes up only as the client's valid id (http_request_id) */
    static const char *const bad_id[] = { "X-Request-Id: <script>", NULL };
    static const char *const good_id[] = { "X-Request-Id: req-7", NULL };
    struct http_req idreq;
    check_request(&idreq, "POST", "/v1/chat/completions", NULL, bad_id, "{}");
    CHECK(strlen(http_request_id(&idreq)) == 32);
    l = fwd_headers(&idreq, &oa, API_BODY_JSON, 2, NULL);
    lines(l, text, sizeof(text));
    CHECK(strstr(text, "<script>") == NULL && strstr(text, "X-Request-Id") == NULL);
    fwd_headers_free(l);
    sl_buf_free(&idreq.body);
    check_request(&idreq, "POST", "/v1/chat/completions", NULL, good_id, "{}");
    CHECK_STR(http_request_id(&idreq), "req-7");
    l = fwd_headers(&idreq, &oa, API_BODY_JSON, 2, NULL);
    lines(l, text, sizeof(text));
    CHECK(strstr(text, "|X-Request-Id: req-7|") != NULL);
    fwd_headers_free(l);
    sl_buf_free(&idreq.body);
    /* tracing: sluice's traceparent instead of the client's; a large body: no 100-continue */
    l = fwd_headers(&req, &oa, API_BODY_JSON, 2 << 20, "traceparent: 00-sluice");
    lines(l, text, sizeof(text));
    CHECK(strstr(text, "00-client") == NULL && strstr(text, "traceparent: 00-sluice|") != NULL);
    CHECK(strstr(text, "Expect:|") != NULL);
    fwd_headers_free(l);
    struct cfg_backend az = backend(BACKEND_AZURE, "https://res");
    az.organization = "org-1";
    l = fwd_headers(&req, &az, API_BODY_NONE, 0, NULL);
    lines(l, text, sizeof(text));
    CHECK(strstr(text, "api-key: upstream-secret|") != NULL);
    CHECK(strstr(text, "Authorization") == NULL && strstr(text, "Content-Type") == NULL);
    CHECK(strstr(text, "OpenAI-Organization: org-1|") != NULL);
    fwd_headers_free(l);
    /* no Accept from the client: an empty one, not curl's default */
    sl_buf_free(&req.body);
    static const char *const bare[] = { "X-Team: red", NULL };
    check_request(&req, "GET", "/v1/models", NULL, bare, NULL);
    l = fwd_headers(&req, &oa, API_BODY_NONE, 0, NULL);
    lines(l, text, sizeof(text));
    CHECK_STR(text, "X-Team: red|Accept:|Authorization: Bearer upstream-secret|");
    fwd_headers_free(l);
    sl_buf_free(&req.body);
}

static void test_body(void)
{
    const char *text = "{\"model\":\"gpt-4o\",\"stream\":true,"
                       "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct api_call call;
    char msg[256];
    const char *param;
    CHECK(api_validate_tree("/v1/chat/completions", 20, text, strlen(text), &call, msg,
                            sizeof(msg), &param) == 0);
    struct fwd_body b = { .client = { text, strlen(text) } };
    CHECK(fwd_body_sent(&b, false).p == text); /* as it came, not copied */
    CHECK(fwd_ask_for_usage(&b, &call));
    struct sl_str sent = fwd_body_sent(&b, false);
    cJSON *j = cJSON_ParseWithLength(sent.p, sent.len);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"),
                                           "include_usage")));
    cJSON_Delete(j);
    fwd_rename_model(&b, &call, "gpt-4o-2024-08-06", 17);
    sent = fwd_body_sent(&b, false);
    j = cJSON_ParseWithLength(sent.p, sent.len);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "gpt-4o-2024-08-06");
    CHECK(cJSON_GetObjectItem(j, "stream_options") != NULL); /* renamed from sluice's copy */
    cJSON_Delete(j);
    fwd_rename_model(&b, &call, "gpt-4o", 6); /* back to the client's own name: its body */
    CHECK(b.model.len == 0);
    fwd_body_free(&b);
    cJSON_Delete(call.root);
    /* a client that asked for usage itself: the body goes as it came */
    text = "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    CHECK(api_validate_tree("/v1/chat/completions", 20, text, strlen(text), &call, msg,
                            sizeof(msg), &param) == 0);
    struct fwd_body c = { .client = { text, strlen(text) } };
    CHECK(!fwd_ask_for_usage(&c, &call) && fwd_body_sent(&c, false).p == text);
    fwd_body_free(&c);
    cJSON_Delete(call.root);
}

int main(void)
{
    test_url();
    test_headers();
    test_body();
    return check_done();
}
