/* Streams translated event by event: chat chunks as the Messages API's
 * event sequence, and Messages events as chat chunks ending in [DONE]. */
#include <cjson/cJSON.h>
#include <string.h>

#include "check.h"
#include "sluice/xlate_stream.h"

static void feed(struct xl_stream *s, const char *data, struct sl_buf *out)
{
    xl_stream_event(s, data, strlen(data), out);
}

/* The events of an SSE text by name, space-separated ("data" for an
 * unnamed one, "DONE" for [DONE]). */
static void names(const struct sl_buf *text, char *out, size_t n)
{
    size_t k = 0;
    out[0] = '\0';
    const char *p = text->data, *end = text->data + strlen(text->data);
    while (p < end) {
        const char *stop = strstr(p, "\n\n");
        const char *next = stop ? stop + 2 : end;
        if (strncmp(p, "event: ", 7) == 0)
            k += (size_t)snprintf(out + k, n - k, "%.*s ", (int)(strchr(p, '\n') - p - 7), p + 7);
        else
            k += (size_t)snprintf(out + k, n - k, "%s ", strncmp(p, "data: [DONE]", 12) == 0 ? "DONE" : "data");
        p = next;
    }
}

static void test_chat_to_messages_events(void)
{
    struct xl_stream s;
    struct sl_buf out = { 0 };
    xl_stream_init(&s, XL_MESSAGES_TO_CHAT, false);
    feed(&s, "{\"id\":\"c1\",\"model\":\"g\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{\"reasoning_content\":\"hm\"}}]}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"k\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}", &out);
    CHECK(!s.finished && !strstr(out.data, "message_delta")); /* waits for the usage */
    feed(&s, "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,"
             "\"prompt_tokens_details\":{\"cached_tokens\":5}}}", &out);
    feed(&s, "[DONE]", &out);
    sl_buf_append(&out, "", 1);
    char got[512];
    names(&out, got, sizeof(got));
    CHECK_STR(got, "message_start content_block_start content_block_delta content_block_stop "
                   "content_block_start content_block_delta content_block_delta content_block_stop "
                   "content_block_start content_block_delta content_block_stop message_delta message_stop ");
    CHECK(strstr(out.data, "\"message\":{\"id\":\"msg_c1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"g\""));
    CHECK(strstr(out.data, "{\"type\":\"thinking_delta\",\"thinking\":\"hm\"}"));
    CHECK(strstr(out.data, "{\"type\":\"text_delta\",\"text\":\"lo\"}"));
    CHECK(strstr(out.data, "\"content_block\":{\"type\":\"tool_use\",\"id\":\"k\",\"name\":\"f\",\"input\":{}}"));
    CHECK(strstr(out.data, "{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}"));
    CHECK(strstr(out.data, "\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":"
                           "{\"input_tokens\":4,\"cache_read_input_tokens\":5,\"output_tokens\":4}"));
    /* an upstream error in the stream: Anthropic's error event, and nothing after it */
    xl_stream_init(&s, XL_MESSAGES_TO_CHAT, false);
    out.len = 0;
    feed(&s, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", &out);
    feed(&s, "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}", &out);
    sl_buf_append(&out, "", 1);
    CHECK_STR(out.data, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"boom\"}}\n\n");
    /* no usage chunk: [DONE] closes the message all the same */
    xl_stream_init(&s, XL_MESSAGES_TO_CHAT, false);
    out.len = 0;
    feed(&s, "{\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"length\"}]}", &out);
    feed(&s, "[DONE]", &out);
    sl_buf_append(&out, "", 1);
    CHECK(strstr(out.data, "\"stop_reason\":\"max_tokens\"") && strstr(out.data, "event: message_stop"));
    sl_buf_free(&out);
}

static void test_messages_to_chat_chunks(void)
{
    struct xl_stream s;
    struct sl_buf out = { 0 };
    for (int usage = 0; usage < 2; usage++) {
        xl_stream_init(&s, XL_CHAT_TO_MESSAGES, usage);
        out.len = 0;
        feed(&s, "{\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"cl\",\"usage\":"
                 "{\"input_tokens\":3,\"cache_read_input_tokens\":4,\"output_tokens\":1}}}", &out);
        feed(&s, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}", &out);
        feed(&s, "{\"type\":\"ping\"}", &out);
        feed(&s, "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}", &out);
        feed(&s, "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}", &out);
        feed(&s, "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\"\"}}", &out);
        feed(&s, "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"x\"}}", &out);
        feed(&s, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":7}}", &out);
        feed(&s, "{\"type\":\"message_stop\"}", &out);
        sl_buf_append(&out, "", 1);
        char got[256];
        names(&out, got, sizeof(got));
        CHECK_STR(got, usage ? "data data data data data data DONE " : "data data data data data DONE ");
        CHECK(strstr(out.data, "\"id\":\"chatcmpl-m1\",\"object\":\"chat.completion.chunk\""));
        CHECK(strstr(out.data, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
        CHECK(strstr(out.data, "\"delta\":{\"content\":\"Hi\"}"));
        CHECK(strstr(out.data, "\"tool_calls\":[{\"index\":0,\"id\":\"t\",\"type\":\"function\",\"function\":"
                               "{\"name\":\"f\",\"arguments\":\"\"}}]"));
        CHECK(strstr(out.data, "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]"));
        CHECK(strstr(out.data, "\"finish_reason\":\"tool_calls\""));
        CHECK(!usage == !strstr(out.data, "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":7,"
                                          "\"total_tokens\":14,\"prompt_tokens_details\":{\"cached_tokens\":4}}"));
        CHECK(s.finished);
    }
    xl_stream_init(&s, XL_CHAT_TO_MESSAGES, false);
    out.len = 0;
    feed(&s, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}", &out);
    feed(&s, "not json", &out);
    sl_buf_append(&out, "", 1);
    CHECK_STR(out.data, "data: {\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\",\"param\":null,"
                        "\"code\":null}}\n\n");
    sl_buf_free(&out);
}

int main(void)
{
    test_chat_to_messages_events();
    test_messages_to_chat_chunks();
    return check_done();
}
