/* /admin/keys in process (admin_keys.c), on a state_dir store: a key made,
 * read, listed, changed, rotated and revoked; a team's admin kept to its
 * team and limits; bad bodies and queries refused; no store = 501. */
#include "serve.h"
#include "sluice/keystore.h"

#define ADMIN "Authorization: Bearer sk-admin-unit-key-0001\r\n"
#define TEAM "Authorization: Bearer sk-team-unit-admin-01\r\n"

static const char conf[] = "[server]\nadmin_key = sk-admin-unit-key-0001\n"
                           "[backend a]\nurl = http://127.0.0.1:9/v1\n"
                           "[team t]\nrpm = 100\nadmin_key = sk-team-unit-admin-01\n[team u]\n"
                           "[key filekey]\nkey = sk-admin-unit-client-1\nteam = t\n";

int main(void)
{
    struct served *s = serve(conf);
    char dir[] = "/tmp/sluice-admin-keys-XXXXXX", err[256];
    CHECK(s && mkdtemp(dir));
    CHECK(ask(s, "POST", "/admin/keys", ADMIN, "{\"name\":\"a\"}") == 501); /* no store yet */
    s->w.keys = keystore_open(dir, err, sizeof(err));

    CHECK(ask(s, "POST", "/admin/keys", ADMIN, "{\"name\":\"a\",\"rpm\":5,\"team\":\"t\"}") == 201);
    CHECK(strstr(s->body, "\"key\":\"sk-sluice-") && strstr(s->body, "\"source\":\"runtime\""));
    CHECK(ask(s, "POST", "/admin/keys", ADMIN, "{\"name\":\"a\"}") == 409);
    CHECK(ask(s, "POST", "/admin/keys", ADMIN, "{\"name\":\"filekey\"}") == 409);
    CHECK(ask(s, "GET", "/admin/keys/a", ADMIN, NULL) == 200);
    CHECK(strstr(s->body, "\"rpm\":5") && !strstr(s->body, "sk-sluice-"));
    CHECK(ask(s, "GET", "/admin/keys?limit=1", ADMIN, NULL) == 200);
    CHECK(strstr(s->body, "\"name\":\"a\"") && strstr(s->body, "\"next_cursor\":\"a\""));
    CHECK(ask(s, "GET", "/admin/keys?limit=0", ADMIN, NULL) == 400);
    CHECK(ask(s, "PATCH", "/admin/keys/a", ADMIN, "{\"rpm\":7}") == 200 && strstr(s->body, "\"rpm\":7"));
    CHECK(ask(s, "PATCH", "/admin/keys/a", ADMIN, "{\"rpm\":-1}") == 400);
    CHECK(strstr(s->body, "\"param\":\"rpm\"") != NULL);
    CHECK(ask(s, "PATCH", "/admin/keys/filekey", ADMIN, "{\"rpm\":1}") == 409);
    CHECK(ask(s, "POST", "/admin/keys/a/rotate", ADMIN, "{\"grace\":\"1h\"}") == 200);
    CHECK(strstr(s->body, "\"previous_secret_until\"") != NULL);
    CHECK(ask(s, "POST", "/admin/keys/a/rotate", ADMIN, "{\"grace\":\"40d\"}") == 400);

    /* a team's admin: its team only, within its limits */
    CHECK(ask(s, "POST", "/admin/keys", TEAM, "{\"name\":\"b\"}") == 201);
    CHECK(strstr(s->body, "\"team\":\"t\"") && strstr(s->body, "\"created_by\":\"team:t\""));
    CHECK(ask(s, "POST", "/admin/keys", TEAM, "{\"name\":\"c\",\"team\":\"u\"}") == 403);
    CHECK(ask(s, "POST", "/admin/keys", TEAM, "{\"name\":\"c\",\"rpm\":101}") == 403);
    CHECK(ask(s, "POST", "/admin/keys", ADMIN, "{\"name\":\"d\",\"team\":\"u\"}") == 201);
    CHECK(ask(s, "GET", "/admin/keys/d", TEAM, NULL) == 404);
    CHECK(ask(s, "DELETE", "/admin/keys/d", TEAM, NULL) == 404);
    CHECK(ask(s, "GET", "/admin/quota/filekey", TEAM, NULL) == 403);

    CHECK(ask(s, "DELETE", "/admin/keys/a", ADMIN, NULL) == 200);
    CHECK(ask(s, "GET", "/admin/keys/a", ADMIN, NULL) == 404);
    CHECK(ask(s, "DELETE", "/admin/keys/a", ADMIN, NULL) == 404);
    CHECK(ask(s, "PUT", "/admin/keys/b", ADMIN, "{}") == 405);
    keystore_close(s->w.keys);
    s->w.keys = NULL;
    serve_end(s);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return check_done();
}
