/* The admin API, in process: the admin key and nothing else opens it; a
 * key's view of its live windows, and its quota read, added to and reset on
 * the in-process limiter; bad amounts refused. */
#include "serve.h"

#define ADMIN "Authorization: Bearer sk-admin-unit-key-0001\r\n"

int main(void)
{
    struct served *s = serve("[server]\nadmin_key = sk-admin-unit-key-0001\n"
                             "[backend a]\nurl = http://127.0.0.1:9/v1\n[team t]\nrpm = 100\n"
                             "[key k]\nkey = sk-admin-unit-client-1\nrpm = 10\nteam = t\n"
                             "quota = 1000\nquota_period = day\n");
    CHECK(s != NULL);
    CHECK(ask(s, "GET", "/admin/keys/k", NULL, NULL) == 401);
    CHECK(ask(s, "GET", "/admin/keys/k", "Authorization: Bearer sk-admin-unit-client-1\r\n",
              NULL) == 401); /* a client key is not the admin key */
    CHECK(ask(s, "GET", "/admin/keys/k", ADMIN, NULL) == 200);
    CHECK(strstr(s->body, "\"key\":\"k\"") && strstr(s->body, "\"team\":\"t\""));
    CHECK(strstr(s->body, "\"requests\":{\"limit\":10,\"used\":0") != NULL);
    CHECK(ask(s, "GET", "/admin/keys/nobody", ADMIN, NULL) == 404);
    CHECK(ask(s, "POST", "/admin/quota/k/delta", ADMIN, "{\"tokens\":250}") == 200);
    CHECK(ask(s, "GET", "/admin/quota/k", ADMIN, NULL) == 200 && strstr(s->body, "\"used\":250"));
    CHECK(strstr(s->body, "\"remaining\":750") != NULL);
    CHECK(ask(s, "POST", "/admin/quota/k/reset", ADMIN, "{}") == 200);
    CHECK(ask(s, "GET", "/admin/quota/k", ADMIN, NULL) == 200 && strstr(s->body, "\"used\":0"));
    CHECK(ask(s, "POST", "/admin/quota/k/delta", ADMIN, "{\"tokens\":1.5}") == 400);
    CHECK(ask(s, "POST", "/admin/quota/nobody/delta", ADMIN, "{\"tokens\":1}") == 404);
    serve_end(s);
    return check_done();
}
