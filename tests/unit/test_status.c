/* /admin/status.json and /admin/status, in process: who may see them, and
 * what they say of the node and its backends. */
#include "serve.h"

#define ADMIN "Authorization: Bearer sk-admin-status-unit-1\r\n"

int main(void)
{
    struct served *s = serve("[server]\nadmin_key = sk-admin-status-unit-1\n"
                             "[backend a]\nurl = http://127.0.0.1:9/v1\n"
                             "[key k]\nkey = sk-status-unit-key-01\nrpm = 10\n");
    CHECK(s != NULL);
    CHECK(ask(s, "GET", "/admin/status.json", NULL, NULL) == 401);
    CHECK(ask(s, "GET", "/admin/status.json", "Authorization: Bearer sk-status-unit-key-01\r\n",
              NULL) == 401);
    CHECK(ask(s, "GET", "/admin/status.json", ADMIN, NULL) == 200);
    CHECK(strstr(s->body, "\"limiter\":\"in-process\"") != NULL);
    CHECK(strstr(s->body, "\"redis\":\"not configured\"") != NULL);
    CHECK(strstr(s->body, "\"name\":\"a\"") && strstr(s->body, "\"state\":\"closed\""));
    CHECK(strstr(s->body, "\"attempts\":0,\"failures\":0") != NULL);
    CHECK(ask(s, "GET", "/admin/status", ADMIN, NULL) == 200 && strstr(s->body, "<html"));
    serve_end(s);
    return check_done();
}
