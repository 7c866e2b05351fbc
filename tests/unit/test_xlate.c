/* Translation of requests, answers and errors between the Messages API and
 * chat completions: each member taken, translated, or refused by name. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sluice/errors.h"
#include "sluice/xlate.h"

/* The translation of body (JSON text), parsed back; NULL when refused
 * (then *param names the field). */
static cJSON *xlate(enum xl_dir d, const char *body, const char **param)
{
    cJSON *root = cJSON_Parse(body);
    struct sl_buf out = { 0 };
    char msg[256];
    int e = xl_request(d, root, &out, msg, sizeof(msg), param);
    cJSON_Delete(root);
    cJSON *got = e ? NULL : cJSON_ParseWithLength(out.data, out.len);
    CHECK(e || got);
    sl_buf_free(&out);
    return got;
}

static bool same_json(const cJSON *got, const char *want)
{
    cJSON *w = cJSON_Parse(want);
    bool same = cJSON_Compare(got, w, true);
    if (!same) {
        char *g = cJSON_PrintUnformatted(got);
        fprintf(stderr, "got  %s\nwant %s\n", g, want);
        free(g);
    }
    cJSON_Delete(w);
    return same;
}

static void test_messages_to_chat(void)
{
    const char *param;
    cJSON *c = xlate(XL_MESSAGES_TO_CHAT,
                     "{\"model\":\"m\",\"max_tokens\":9,\"system\":[{\"type\":\"text\",\"text\":\"a\"},"
                     "{\"type\":\"text\",\"text\":\"b\",\"cache_control\":{\"type\":\"ephemeral\"}}],"
                     "\"stop_sequences\":[\"X\"],\"top_k\":5,\"stream\":true,"
                     "\"metadata\":{\"user_id\":\"u\"},\"thinking\":{\"type\":\"disabled\"},"
                     "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}],"
                     "\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\",\"disable_parallel_tool_use\":true},"
                     "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
                     "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"QQ\"}}]},"
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"t\",\"signature\":\"s\"},"
                     "{\"type\":\"text\",\"text\":\"ok\"},{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{\"a\":1}}]},"
                     "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":"
                     "[{\"type\":\"text\",\"text\":\"r1\"},{\"type\":\"text\",\"text\":\"r2\"}]},{\"type\":\"text\",\"text\":\"next\"}]}]}",
                     &param);
    CHECK(same_json(c, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"a\\n\\nb\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"image_url\","
                       "\"image_url\":{\"url\":\"data:image/png;base64,QQ\"}}]},"
                       "{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":[{\"id\":\"t1\",\"type\":\"function\","
                       "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"r1\\nr2\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"next\"}]}],"
                       "\"max_tokens\":9,\"stop\":[\"X\"],\"top_k\":5,\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true},\"user\":\"u\","
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
                       "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                       "\"parallel_tool_calls\":false}"));
    cJSON_Delete(c);
    static const struct {
        const char *body, *param;
    } refused[] = {
        { "{\"model\":\"m\",\"messages\":[],\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":9}}", "thinking" },
        { "{\"model\":\"m\",\"messages\":[],\"mcp_servers\":[]}", "mcp_servers" },
        { "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":\"bash_20250124\",\"name\":\"bash\"}]}", "tools" },
        { "{\"model\":\"m\",\"messages\":[],\"stop_sequences\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "stop_sequences" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\"}]}]}", "messages" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
          "\"tool_use_id\":\"t\",\"content\":[{\"type\":\"image\"}]}]}]}", "messages" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages" },
        { "{\"model\":\"m\",\"messages\":{}}", "messages" },
        { "{\"model\":\"m\",\"messages\":[],\"system\":[{\"type\":\"image\"}]}", "system" },
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(refused); i++) {
        param = NULL;
        CHECK(!xlate(XL_MESSAGES_TO_CHAT, refused[i].body, &param));
        CHECK(param && strcmp(param, refused[i].param) == 0);
    }
}

static void test_chat_to_messages(void)
{
    const char *param;
    cJSON *m = xlate(XL_CHAT_TO_MESSAGES,
                     "{\"model\":\"c\",\"max_completion_tokens\":7,\"stop\":\"S\",\"temperature\":0.5,"
                     "\"n\":1,\"store\":false,\"user\":\"u\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                     "\"parallel_tool_calls\":false,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                     "\"messages\":[{\"role\":\"system\",\"content\":\"s1\"},{\"role\":\"developer\",\"content\":"
                     "[{\"type\":\"text\",\"text\":\"s2\"}]},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},"
                     "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]},{\"role\":\"assistant\","
                     "\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                     "\"arguments\":\"{\\\"a\\\":1}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"},"
                     "{\"role\":\"user\",\"content\":\"more\"}]}",
                     &param);
    CHECK(same_json(m, "{\"model\":\"c\",\"max_tokens\":7,\"system\":\"s1\\n\\ns2\",\"messages\":["
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"image\","
                       "\"source\":{\"type\":\"url\",\"url\":\"https://x/y.png\"}}]},"
                       "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"c1\",\"name\":\"f\","
                       "\"input\":{\"a\":1}}]},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"c1\",\"content\":\"r\"},"
                       "{\"type\":\"text\",\"text\":\"more\"}]}],"
                       "\"stop_sequences\":[\"S\"],\"temperature\":0.5,\"stream\":true,\"metadata\":{\"user_id\":\"u\"},"
                       "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}],"
                       "\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true}}"));
    cJSON_Delete(m);
    m = xlate(XL_CHAT_TO_MESSAGES, "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &param);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(m, "max_tokens")) == XL_DEFAULT_MAX_TOKENS);
    cJSON_Delete(m);
    static const struct {
        const char *body, *param;
    } refused[] = {
        { "{\"model\":\"c\",\"messages\":[],\"n\":3}", "n" },
        { "{\"model\":\"c\",\"messages\":[],\"store\":true}", "store" },
        { "{\"model\":\"c\",\"messages\":[],\"logprobs\":true}", "logprobs" },
        { "{\"model\":\"c\",\"messages\":[],\"frequency_penalty\":0.5}", "frequency_penalty" },
        { "{\"model\":\"c\",\"messages\":[],\"response_format\":{\"type\":\"json_schema\"}}", "response_format" },
        { "{\"model\":\"c\",\"messages\":[],\"temperature\":2}", "temperature" },
        { "{\"model\":\"c\",\"messages\":[],\"reasoning_effort\":\"low\"}", "reasoning_effort" },
        { "{\"model\":\"c\",\"messages\":[],\"tools\":[{\"type\":\"custom\",\"custom\":{}}]}", "tools" },
        { "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}", "messages" },
        { "{\"model\":\"c\",\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\","
          "\"function\":{\"name\":\"f\",\"arguments\":\"not json\"}}]}]}", "messages" },
        { "{\"model\":\"c\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}", "messages" },
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(refused); i++) {
        param = NULL;
        CHECK(!xlate(XL_CHAT_TO_MESSAGES, refused[i].body, &param));
        CHECK(param && strcmp(param, refused[i].param) == 0);
    }
}

static cJSON *answer(enum xl_dir d, const char *body)
{
    struct sl_buf out = { 0 };
    cJSON *got = xl_response(d, body, strlen(body), &out) ? cJSON_ParseWithLength(out.data, out.len)
                                                          : NULL;
    sl_buf_free(&out);
    return got;
}

static void test_answers(void)
{
    cJSON *m = answer(XL_MESSAGES_TO_CHAT,
                      "{\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"message\":{\"role\":\"assistant\","
                      "\"content\":\"hi\",\"reasoning_content\":\"hm\",\"tool_calls\":[{\"id\":\"k\",\"function\":"
                      "{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":2}\"}}]},\"finish_reason\":\"tool_calls\"}],"
                      "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":4}}}");
    CHECK(same_json(m, "{\"id\":\"msg_c1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"g\","
                       "\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\",\"signature\":\"\"},"
                       "{\"type\":\"text\",\"text\":\"hi\"},{\"type\":\"tool_use\",\"id\":\"k\",\"name\":\"f\","
                       "\"input\":{\"a\":2}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
                       "\"usage\":{\"input_tokens\":6,\"cache_creation_input_tokens\":0,"
                       "\"cache_read_input_tokens\":4,\"output_tokens\":3}}"));
    cJSON_Delete(m);
    cJSON *c = answer(XL_CHAT_TO_MESSAGES,
                      "{\"id\":\"msg_1\",\"type\":\"message\",\"model\":\"cl\",\"content\":[{\"type\":\"text\","
                      "\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"},{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
                      "\"f\",\"input\":{}}],\"stop_reason\":\"max_tokens\",\"usage\":{\"input_tokens\":1,"
                      "\"cache_creation_input_tokens\":2,\"cache_read_input_tokens\":3,\"output_tokens\":4}}");
    cJSON *created = cJSON_DetachItemFromObject(c, "created");
    CHECK(cJSON_IsNumber(created) && created->valuedouble > 1.7e9);
    cJSON_Delete(created);
    CHECK(same_json(c, "{\"id\":\"chatcmpl-msg_1\",\"object\":\"chat.completion\",\"model\":\"cl\","
                       "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"ab\","
                       "\"tool_calls\":[{\"id\":\"t\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                       "\"arguments\":\"{}\"}}],\"refusal\":null},\"finish_reason\":\"length\"}],"
                       "\"usage\":{\"prompt_tokens\":6,\"completion_tokens\":4,\"total_tokens\":10,"
                       "\"prompt_tokens_details\":{\"cached_tokens\":3}}}"));
    cJSON_Delete(c);
    CHECK(!answer(XL_MESSAGES_TO_CHAT, "{\"object\":\"list\"}"));
    CHECK(!answer(XL_CHAT_TO_MESSAGES, "not json"));
    CHECK(strcmp(xl_stop_reason("stop"), "end_turn") == 0 && strcmp(xl_stop_reason(NULL), "end_turn") == 0);
    CHECK(strcmp(xl_stop_reason("content_filter"), "refusal") == 0);
    CHECK(strcmp(xl_finish_reason("stop_sequence"), "stop") == 0 &&
          strcmp(xl_finish_reason("tool_use"), "tool_calls") == 0);
}

static void test_errors(void)
{
    struct sl_buf out = { 0 };
    const char *oai = "{\"error\":{\"message\":\"slow down\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}";
    xl_error(XL_MESSAGES_TO_CHAT, 429, oai, strlen(oai), &out);
    CHECK_STR(out.data, "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n");
    out.len = 0;
    const char *ant = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}";
    xl_error(XL_CHAT_TO_MESSAGES, 529, ant, strlen(ant), &out);
    CHECK_STR(out.data, "{\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\",\"param\":null,"
                        "\"code\":\"overloaded_error\"}}\n");
    out.len = 0;
    xl_error(XL_MESSAGES_TO_CHAT, 502, "<html>bad gateway</html>", 24, &out);
    CHECK(strstr(out.data, "\"api_error\"") && strstr(out.data, "The upstream answered 502."));
    CHECK(xl_error_status(XL_CHAT_TO_MESSAGES, 529) == 503 && xl_error_status(XL_MESSAGES_TO_CHAT, 503) == 529);
    CHECK(xl_error_status(XL_MESSAGES_TO_CHAT, 429) == 429);
    sl_buf_free(&out);
}

int main(void)
{
    test_messages_to_chat();
    test_chat_to_messages();
    test_answers();
    test_errors();
    return check_done();
}
