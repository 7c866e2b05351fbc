/* A finished request as one record: the access log's key=value line and its
 * JSON form, with client-supplied text made safe for each. */
#include <cjson/cJSON.h>

#include "check.h"
#include "sluice/usage.h"
#include "sluice/util.h"

static struct usage_record record(const char *model)
{
    return (struct usage_record){ .end_us = 1796558400123456LL, .key = "team-a", .team = "-",
                                  .model = model, .served_model = "gpt-4o-2024-08-06",
                                  .backend = "main", .path = "/v1/chat/completions",
                                  .end = "responded", .outcome = "success", .status = 200,
                                  .attempts = 1, .stream = true, .input_tokens = 12,
                                  .cached_tokens = 4, .output_tokens = 8, .cost = 110,
                                  .ttfb_ms = 0.4, .duration_ms = 1.25, .queued_ms = 0 };
}

int main(void)
{
    struct usage_record u = record("gpt-4o");
    struct sl_buf line = { 0 };
    usage_access_line(&u, ACCESS_TEXT, &line);
    sl_buf_append(&line, "", 1);
    CHECK(strstr(line.data, " info access key=team-a team=- user=- model=gpt-4o ") != NULL);
    struct usage_record who = record("gpt-4o");
    who.user = "ann@example.com";
    line.len = 0;
    usage_access_line(&who, ACCESS_TEXT, &line);
    sl_buf_append(&line, "", 1);
    CHECK(strstr(line.data, " team=- user=ann@example.com model=gpt-4o ") != NULL);
    line.len = 0;
    usage_access_line(&u, ACCESS_TEXT, &line);
    sl_buf_append(&line, "", 1);
    CHECK(strncmp(line.data, "2026-12-06T12:00:00.123Z ", 25) == 0); /* the end's wall time */
    CHECK(strstr(line.data, " status=200 end=responded attempts=1 outcome=success stream=1 ") != NULL);
    CHECK(strstr(line.data, " prompt_tokens=12 completion_tokens=8 cost_usd=0.000110 ") != NULL);
    CHECK(strstr(line.data, " path=/v1/chat/completions") != NULL);

    /* a model name a client chose: one token in the text line, never a new field or line */
    struct usage_record evil = record("x y=1\nkey=admin");
    line.len = 0;
    usage_access_line(&evil, ACCESS_TEXT, &line);
    sl_buf_append(&line, "", 1);
    CHECK(strchr(line.data, '\n') == NULL && strstr(line.data, " key=admin") == NULL);
    CHECK(strstr(line.data, " y=1") == NULL);

    /* JSON: parses back to the same values, the model as sent */
    line.len = 0;
    usage_json(&evil, &line);
    cJSON *j = cJSON_ParseWithLength(line.data, line.len);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "model")), "x y=1\nkey=admin");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "input_tokens")) == 12);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "output_tokens")) == 8);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "cached_tokens")) == 4);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    cJSON_Delete(j);
    line.len = 0;
    usage_access_line(&u, ACCESS_JSON, &line);
    j = cJSON_ParseWithLength(line.data, line.len);
    CHECK(j != NULL && cJSON_GetNumberValue(cJSON_GetObjectItem(j, "status")) == 200);
    cJSON_Delete(j);
    sl_buf_free(&line);
    return check_done();
}
