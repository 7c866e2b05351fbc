/* The end user a request names (enduser.h). */
#include "sluice/enduser.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "sluice/api_call.h"
#include "sluice/config.h"
#include "sluice/errors.h"
#include "sluice/http.h"

static bool id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("._-@:+|=/", c));
}

bool eu_valid(const char *p, size_t len)
{
    bool ok = p && len && len <= EU_MAX;
    for (size_t i = 0; ok && i < len; i++)
        ok = id_char((unsigned char)p[i]);
    return ok;
}

/* The body's user: safety_identifier, else user, else metadata.user_id
 * (a string each; the body read again with cJSON when the one-pass reader
 * took it, which only keys trusting the body pay for). */
static const char *body_user(const struct http_req *req, const struct api_call *call,
                             cJSON **parsed, const char **field)
{
    const cJSON *root = call->root;
    if (!root && call->body == API_BODY_JSON)
        root = *parsed = cJSON_ParseWithLength(req->body.data, req->body.len);
    static const char *const names[] = { "safety_identifier", "user" };
    for (size_t i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, names[i]);
        if (cJSON_IsString(v)) {
            *field = names[i];
            return v->valuestring;
        }
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "metadata"), "user_id");
    *field = "metadata.user_id";
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int eu_find(const struct cfg_key *key, const struct http_req *req, const struct api_call *call,
            char out[EU_MAX + 1], char *msg, size_t msglen, const char **param)
{
    out[0] = '\0';
    if (key->trust_user == TRUST_USER_NO)
        return 0;
    cJSON *parsed = NULL;
    const char *field = "x-sluice-user", *v = NULL;
    size_t len = 0;
    if (key->trust_user == TRUST_USER_HEADER) {
        const struct sl_str *h = http_header(req, "x-sluice-user");
        if (h) {
            v = h->p;
            len = h->len;
        }
    } else if ((v = body_user(req, call, &parsed, &field))) {
        len = strlen(v);
    }
    int e = 0;
    if (eu_valid(v, len)) {
        memcpy(out, v, len);
        out[len] = '\0';
    } else if (v) {
        snprintf(msg, msglen, "'%s' names the end user in 1 to %d letters, digits or . _ - @ : + | "
                              "= /.", field, EU_MAX);
        *param = key->trust_user == TRUST_USER_HEADER ? NULL : "user";
        e = ERR_BAD_REQUEST;
    } else if (key->require_user) {
        snprintf(msg, msglen, "This key requires an end user: %s.",
                 key->trust_user == TRUST_USER_HEADER
                     ? "send it in the x-sluice-user header"
                     : "name it in the body's safety_identifier or user (metadata.user_id for the "
                       "Messages API)");
        *param = "user";
        e = ERR_BAD_REQUEST;
    }
    cJSON_Delete(parsed);
    return e;
}
