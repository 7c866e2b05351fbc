/* The end user of an API key's request: from x-sluice-user or the body,
 * bounded; required where the key says so. */
#include <cjson/cJSON.h>

#define CHECK_WITH_REQUEST
#include "check.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/config.h"
#include "sluice/enduser.h"
#include "sluice/errors.h"

static int find(const struct cfg_key *k, const char *header, const char *body, char *user,
                const char **param)
{
    char line[300], msg[256];
    snprintf(line, sizeof(line), "x-sluice-user: %s", header ? header : "");
    const char *headers[] = { "Content-Type: application/json", header ? line : NULL, NULL };
    struct http_req req;
    const char *path = strstr(body, "max_tokens") ? "/v1/messages" : "/v1/chat/completions";
    check_request(&req, "POST", path, NULL, headers, body);
    struct api_call call;
    const char *p2;
    CHECK(api_read_call(&req, &call, msg, sizeof(msg), &p2) == 0);
    *param = NULL;
    int e = eu_find(k, &req, &call, user, msg, sizeof(msg), param);
    cJSON_Delete(call.root);
    sl_buf_free(&req.body);
    return e;
}

int main(void)
{
    const char *chat = "{\"model\":\"m\",\"user\":\"bob\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *safety = "{\"model\":\"m\",\"user\":\"bob\",\"safety_identifier\":\"ann@x.io\","
                         "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *claude = "{\"model\":\"m\",\"max_tokens\":5,\"metadata\":{\"user_id\":\"auth0|42\"},"
                         "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *nobody = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    char user[EU_MAX + 1];
    const char *param;
    struct cfg_key k = { .trust_user = TRUST_USER_NO };
    CHECK(find(&k, "carol", chat, user, &param) == 0 && user[0] == '\0'); /* not trusted: none */
    k.trust_user = TRUST_USER_HEADER;
    CHECK(find(&k, "carol", chat, user, &param) == 0 && strcmp(user, "carol") == 0);
    CHECK(find(&k, NULL, chat, user, &param) == 0 && user[0] == '\0'); /* the body is not asked */
    CHECK(find(&k, "two words", chat, user, &param) == ERR_BAD_REQUEST);
    char big[EU_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK(find(&k, big, chat, user, &param) == ERR_BAD_REQUEST);
    big[EU_MAX] = '\0';
    CHECK(find(&k, big, chat, user, &param) == 0 && strlen(user) == EU_MAX);
    k.trust_user = TRUST_USER_BODY;
    CHECK(find(&k, "carol", chat, user, &param) == 0 && strcmp(user, "bob") == 0);
    CHECK(find(&k, NULL, safety, user, &param) == 0 && strcmp(user, "ann@x.io") == 0);
    CHECK(find(&k, NULL, claude, user, &param) == 0 && strcmp(user, "auth0|42") == 0);
    CHECK(find(&k, NULL, "{\"model\":\"m\",\"user\":\"a{b}\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
               user, &param) == ERR_BAD_REQUEST && strcmp(param, "user") == 0);
    CHECK(find(&k, NULL, nobody, user, &param) == 0 && user[0] == '\0');
    k.require_user = true;
    CHECK(find(&k, NULL, nobody, user, &param) == ERR_BAD_REQUEST && strcmp(param, "user") == 0);
    k.trust_user = TRUST_USER_HEADER;
    CHECK(find(&k, NULL, chat, user, &param) == ERR_BAD_REQUEST);
    return check_done();
}
