/* sluice's own errors: every one has a status and a type, and renders in
 * OpenAI's shape with the message and param escaped as JSON. */
#include <cjson/cJSON.h>
#include <stdlib.h>

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
    return check_done();
}
