/* sluice's own errors: every one has a status and a type, and renders in
 * OpenAI's shape with the message and param escaped as JSON. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sluice/errors.h"

int main(void)
{
    for (int e = 1; e < ERR__COUNT; e++) {
        const struct sl_error_info *i = err_info((enum sl_error)e);
        CHECK(i->status >= 400 && i->status <= 599 && i->type && *i->type);
    }
    CHECK(err_info(ERR_INVALID_API_KEY)->status == 401);
    CHECK_STR(err_info(ERR_QUOTA_EXHAUSTED)->code, "insufficient_quota");
    CHECK(err_info(ERR_QUOTA_EXHAUSTED)->status == 429);
    CHECK(err_info(ERR_OVERLOADED)->status == 503 && err_info(ERR_UPSTREAM_TIMEOUT)->status == 504);
    size_t len;
    char *json = err_json(ERR_BAD_REQUEST, "bad \"x\"\n\x01", "model", &len);
    CHECK(strlen(json) == len);
    cJSON *j = cJSON_ParseWithLength(json, len), *e = cJSON_GetObjectItem(j, "error");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")), "bad \"x\"\n\x01");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "type")), "invalid_request_error");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(e, "param")), "model");
    cJSON_Delete(j);
    free(json);
    json = err_json(ERR_NOT_FOUND, "no", NULL, &len);
    j = cJSON_ParseWithLength(json, len);
    e = cJSON_GetObjectItem(j, "error");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(e, "param")));
    CHECK(cJSON_GetObjectItem(e, "code") != NULL); /* always present, null when none */
    cJSON_Delete(j);
    free(json);
    /* Anthropic's callers: its shape, its types, 529 for what is 503 */
    json = err_json_in(DIALECT_ANTHROPIC, ERR_RATE_LIMITED, "slow \"down\"", "model", &len);
    CHECK_STR(json, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":"
                    "\"slow \\\"down\\\"\"}}\n");
    free(json);
    json = err_json_in(DIALECT_OPENAI, ERR_RATE_LIMITED, "x", NULL, &len);
    CHECK(strstr(json, "\"code\":\"rate_limit_exceeded\"") != NULL);
    free(json);
    static const struct {
        enum sl_error e;
        int status;
        const char *type;
    } anthropic[] = {
        { ERR_BAD_REQUEST, 400, "invalid_request_error" },
        { ERR_INVALID_API_KEY, 401, "authentication_error" },
        { ERR_MODEL_NOT_ALLOWED, 403, "permission_error" },
        { ERR_MODEL_NOT_FOUND, 404, "not_found_error" },
        { ERR_BODY_TOO_LARGE, 413, "request_too_large" },
        { ERR_PROMPT_TOO_LARGE, 413, "request_too_large" },
        { ERR_QUOTA_EXHAUSTED, 429, "rate_limit_error" },
        { ERR_RATE_LIMITED_TOKENS, 429, "rate_limit_error" },
        { ERR_INTERNAL, 500, "api_error" },
        { ERR_UPSTREAM_FAILED, 502, "api_error" },
        { ERR_NO_BACKEND, 529, "overloaded_error" },
        { ERR_OVERLOADED, 529, "overloaded_error" },
        { ERR_LIMITER_DOWN, 529, "overloaded_error" },
        { ERR_UPSTREAM_TIMEOUT, 504, "timeout_error" },
    };
    for (size_t i = 0; i < sizeof(anthropic) / sizeof(anthropic[0]); i++) {
        CHECK(err_status(anthropic[i].e, DIALECT_ANTHROPIC) == anthropic[i].status);
        CHECK_STR(err_anthropic_type(anthropic[i].e), anthropic[i].type);
    }
    CHECK(err_status(ERR_NO_BACKEND, DIALECT_OPENAI) == 503);
    return check_done();
}
