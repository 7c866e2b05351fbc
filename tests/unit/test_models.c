/* GET /v1/models, in process: the models the key may call from the
 * configuration ([model] names and backends' lists), one model by id, and
 * nothing beyond the key's allow-list. */
#include "serve.h"

#define WIDE "Authorization: Bearer sk-models-unit-key-01\r\n"
#define NARROW "Authorization: Bearer sk-models-unit-key-02\r\n"

int main(void)
{
    struct served *s = serve("[backend a]\nurl = http://127.0.0.1:9/v1\nmodels = gpt-4o, o1\n"
                             "[model fast]\nupstream = gpt-4o\n"
                             "[key w]\nkey = sk-models-unit-key-01\n"
                             "[key n]\nkey = sk-models-unit-key-02\nmodels = o1\n");
    CHECK(s != NULL);
    CHECK(ask(s, "GET", "/v1/models", WIDE, NULL) == 200);
    CHECK(strstr(s->body, "\"object\":\"list\"") != NULL);
    CHECK(strstr(s->body, "\"id\":\"gpt-4o\"") && strstr(s->body, "\"id\":\"o1\""));
    CHECK(strstr(s->body, "\"id\":\"fast\"") != NULL);
    CHECK(ask(s, "GET", "/v1/models", NARROW, NULL) == 200);
    CHECK(strstr(s->body, "\"id\":\"o1\"") && !strstr(s->body, "gpt-4o"));
    CHECK(ask(s, "GET", "/v1/models/o1", NARROW, NULL) == 200 && strstr(s->body, "\"id\":\"o1\""));
    CHECK(ask(s, "GET", "/v1/models/gpt-4o", NARROW, NULL) == 404);
    CHECK(ask(s, "GET", "/v1/models", NULL, NULL) == 401);
    serve_end(s);
    return check_done();
}
