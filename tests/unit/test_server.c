/* The router, in process: what each path and method gets before any proxying
 * (health, readiness, metrics, 404, 405, an API path that is not plain). */
#include "serve.h"

#define KEY "Authorization: Bearer sk-router-test-key-01\r\n"

int main(void)
{
    struct served *s = serve("[backend a]\nurl = http://127.0.0.1:9/v1\nmodels = gpt-4o\n"
                             "[key k]\nkey = sk-router-test-key-01\n");
    CHECK(s != NULL);
    CHECK(ask(s, "GET", "/healthz", NULL, NULL) == 200 && strstr(s->body, "\"ok\""));
    CHECK(ask(s, "GET", "/readyz", NULL, NULL) == 200);
    CHECK(strstr(s->body, "\"redis\":\"not configured\"") && strstr(s->body, "\"ready\""));
    CHECK(ask(s, "GET", "/metrics", NULL, NULL) == 200);
    CHECK(strstr(s->body, "# TYPE sluice_requests_total counter") != NULL);
    CHECK(strstr(s->body, "sluice_backend_state{backend=\"a\"} 0") != NULL);
    CHECK(ask(s, "POST", "/healthz", NULL, "x") == 405 && strstr(s->answer, "Allow: GET, HEAD"));
    CHECK(ask(s, "GET", "/nowhere", NULL, NULL) == 404);
    CHECK(strstr(s->body, "Unknown request URL: GET /nowhere") != NULL);
    CHECK(ask(s, "GET", "/v1/files/%2e%2e/admin", KEY, NULL) == 400);
    CHECK(ask(s, "PUT", "/v1/files/x", KEY, NULL) == 405);
    /* an API request without a key is refused before its body is read */
    CHECK(ask(s, "POST", "/v1/chat/completions", NULL, "{}") == 401);
    CHECK(strstr(s->body, "\"invalid_api_key\"") != NULL);
    CHECK(ask(s, "GET", "/v1/models", KEY, NULL) == 200); /* routed to models.c */
    serve_end(s);
    return check_done();
}
