/* Reading the API call a request makes: the body's kind and the model it
 * names (JSON, a form's field, none), what goes to the stateful backend,
 * and the refusals (415, bad JSON, invalid UTF-8, a form without boundary). */
#include <cjson/cJSON.h>

#define CHECK_WITH_REQUEST
#include "check.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/errors.h"

static int read_call(const char *method, const char *path, const char *ct, const char *body,
                     struct api_call *call, const char **param)
{
    char line[200], msg[256];
    snprintf(line, sizeof(line), "Content-Type: %s", ct ? ct : "");
    const char *headers[] = { line, NULL };
    struct http_req req;
    check_request(&req, method, path, NULL, ct ? headers : NULL, body);
    int e = api_read_call(&req, call, msg, sizeof(msg), param);
    sl_buf_free(&req.body);
    return e;
}

/* Anthropic's Messages API: its shape checked, its prompt estimated from
 * the system prompt, the messages' blocks and the tools; count_tokens
 * reserves nothing. */
static void test_messages(void)
{
    struct api_call c;
    const char *param;
    const char *ok = "{\"model\":\"claude\",\"max_tokens\":64,\"stream\":true,"
                     "\"system\":[{\"type\":\"text\",\"text\":\"be brief please\"}],"
                     "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                     "\"abcdefgh\"},{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"u\"}}]},"
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
                     "\"f\",\"input\":{}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                     "\"tool_use_id\":\"t\",\"content\":\"1234\"}]}]}";
    CHECK(read_call("POST", "/v1/messages", "application/json", ok, &c, &param) == 0);
    CHECK(c.endpoint == API_MESSAGES && c.kind == API_KIND_USAGE && c.stream && c.max_tokens == 64);
    /* system 4, text 2 + image 765, tool_use 1 + 1 ({}), tool_result 1, 3 per message, priming 3 */
    CHECK(c.estimate == 4 + 2 + 765 + 2 + 1 + 3 * 3 + 3);
    cJSON_Delete(c.root);
    CHECK(read_call("POST", "/v1/messages/count_tokens", "application/json",
                    "{\"model\":\"claude\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                    &c, &param) == 0);
    CHECK(c.endpoint == API_COUNT_TOKENS && c.kind == API_KIND_FREE && c.estimate == 0);
    cJSON_Delete(c.root);
    static const struct {
        const char *body, *param;
    } bad[] = {
        { "{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "max_tokens" },
        { "{\"model\":\"c\",\"max_tokens\":1}", "messages" },
        { "{\"model\":\"c\",\"max_tokens\":1,\"messages\":{}}", "messages" },
        { "{\"model\":\"c\",\"max_tokens\":1,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
          "messages" },
        { "{\"model\":\"c\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[1]}]}",
          "messages" },
        { "{\"model\":\"c\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\"}]}", "messages" },
        { "{\"model\":\"c\",\"max_tokens\":1,\"system\":7,\"messages\":[]}", "system" },
        { "{\"model\":\"c\",\"max_tokens\":1,\"tools\":{},\"messages\":[]}", "tools" },
        { "{\"model\":\"c\",\"max_tokens\":-1,\"messages\":[]}", "max_tokens" },
        { "{\"max_tokens\":1,\"messages\":[]}", "model" },
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(bad); i++) {
        param = NULL;
        CHECK(read_call("POST", "/v1/messages", "application/json", bad[i].body, &c, &param) ==
              ERR_BAD_REQUEST);
        CHECK(param && strcmp(param, bad[i].param) == 0);
        cJSON_Delete(c.root);
    }
}

int main(void)
{
    test_messages();
    struct api_call c;
    const char *param;
    CHECK(read_call("POST", "/v1/chat/completions", "application/json",
                    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                    &c, &param) == 0);
    CHECK(c.body == API_BODY_JSON && !c.stateful && c.estimate > 0);
    CHECK(c.model_len == 6 && memcmp(c.model, "gpt-4o", 6) == 0);
    cJSON_Delete(c.root);
    /* a stored resource: the stateful backend, whatever model it names */
    CHECK(read_call("POST", "/v1/files", "application/json", "{\"model\":\"x\"}", &c, &param) == 0);
    CHECK(c.stateful && c.estimate == 0);
    cJSON_Delete(c.root);
    CHECK(read_call("GET", "/v1/files/file-1", NULL, NULL, &c, &param) == 0);
    CHECK(c.stateful && c.body == API_BODY_NONE && !c.model);
    CHECK(read_call("POST", "/v1/batches/b1/cancel", NULL, "", &c, &param) == 0);
    CHECK(c.body == API_BODY_NONE && c.stateful);
    /* a form: its model field routes it, the body goes as it came */
    const char *form = "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
                       "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
                       "Content-Type: audio/wav\r\n\r\nRIFF\r\n--XyZ--\r\n";
    CHECK(read_call("POST", "/v1/audio/transcriptions", "multipart/form-data; boundary=XyZ", form,
                    &c, &param) == 0);
    CHECK(c.body == API_BODY_MULTIPART && !c.stateful && strcmp(c.model, "whisper-1") == 0);
    CHECK(read_call("POST", "/v1/audio/transcriptions", "multipart/form-data", form, &c,
                    &param) == ERR_BAD_REQUEST); /* no boundary */
    /* counts beyond any integer type (found by tests/fuzz/fuzz_json: casting
     * 1e92 to an integer is undefined): not integers, refused by name */
    static const char *const huge[] = {
        "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":1e92}",
        "{\"model\":\"m\",\"prompt\":\"p\",\"n\":9223372036854775808}",
        "{\"model\":\"m\",\"prompt\":\"p\",\"max_completion_tokens\":-1e300}",
    };
    for (size_t i = 0; i < SL_ARRAY_LEN(huge); i++) {
        param = NULL;
        CHECK(read_call("POST", "/v1/completions", "application/json", huge[i], &c, &param) ==
              ERR_BAD_REQUEST);
        CHECK(param && (strcmp(param, "max_tokens") == 0 || strcmp(param, "n") == 0 ||
                        strcmp(param, "max_completion_tokens") == 0));
        cJSON_Delete(c.root);
    }
    CHECK(read_call("POST", "/v1/completions", "application/json",
                    "{\"model\":\"m\",\"prompt\":\"p\",\"max_tokens\":4e15}", &c, &param) == 0);
    CHECK(c.max_tokens == 1000000000); /* large but whole: taken, capped (api_count_output) */
    cJSON_Delete(c.root);
    /* refusals */
    CHECK(read_call("POST", "/v1/chat/completions", "text/plain", "hi", &c, &param) ==
          ERR_UNSUPPORTED_MEDIA);
    CHECK(read_call("POST", "/v1/chat/completions", "application/json", "{\"model\":", &c,
                    &param) == ERR_BAD_REQUEST);
    CHECK(read_call("POST", "/v1/chat/completions", "application/json",
                    "{\"model\":\"\xff\",\"messages\":[]}", &c, &param) == ERR_BAD_REQUEST);
    CHECK(read_call("POST", "/v1/chat/completions", "application/json",
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &c, &param) ==
          ERR_BAD_REQUEST);
    CHECK(param && strcmp(param, "model") == 0);
    cJSON_Delete(c.root);
    CHECK(read_call("POST", "/v1/embeddings", "application/vnd.api+json",
                    "{\"model\":\"e\",\"input\":\"x\"}", &c, &param) == 0); /* +json is JSON */
    cJSON_Delete(c.root);
    return check_done();
}
