/* Usage extraction from the response shapes of each endpoint. */
#include <string.h>

#include "check.h"
#include <cjson/cJSON.h>

#include "sluice/server.h"
#include "sluice/tokens.h"

static void test_bodies(void)
{
    struct tok_usage u = { 0 };
    const char *chat = "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17}}";
    CHECK(tok_usage_from_body(chat, strlen(chat), &u));
    CHECK(u.seen && u.prompt == 12 && u.completion == 5);

    struct tok_usage e = { 0 };
    const char *emb = "{\"data\":[],\"usage\":{\"prompt_tokens\":7,\"total_tokens\":7}}";
    CHECK(tok_usage_from_body(emb, strlen(emb), &e));
    CHECK(e.prompt == 7 && e.completion == 0);

    struct tok_usage r = { 0 };
    const char *resp = "{\"object\":\"response\",\"usage\":{\"input_tokens\":3,\"output_tokens\":9}}";
    CHECK(tok_usage_from_body(resp, strlen(resp), &r));
    CHECK(r.prompt == 3 && r.completion == 9);

    struct tok_usage n = { 0 };
    CHECK(!tok_usage_from_body("{\"usage\":null}", 14, &n));
    CHECK(!tok_usage_from_body("not json", 8, &n));
    CHECK(!n.seen);
}

static void test_stream_events(void)
{
    struct tok_usage u = { 0 };
    const char *chunk = "{\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"usage\":null}";
    CHECK(!tok_usage_from_sse_data(chunk, strlen(chunk), &u));
    const char *last = "{\"choices\":[],\"usage\" : {\"prompt_tokens\":4,\"completion_tokens\":6}}";
    CHECK(tok_usage_from_sse_data(last, strlen(last), &u));
    CHECK(u.prompt == 4 && u.completion == 6);
    struct tok_usage r = { 0 };
    const char *done = "{\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":2,\"output_tokens\":8}}}";
    CHECK(tok_usage_from_sse_data(done, strlen(done), &r));
    CHECK(r.prompt == 2 && r.completion == 8);
    CHECK(!tok_usage_from_sse_data("[DONE]", 6, &r) && r.prompt == 2);
}

/* Generated text that looks like usage, with escaped quotes and backslashes,
 * is skipped; the real object after it is found. */
static void test_usage_inside_strings(void)
{
    struct tok_usage u = { 0 };
    const char *body = "{\"content\":\"say \\\"usage\\\": {\\\"prompt_tokens\\\":99} \\\\\","
                       "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";
    CHECK(tok_usage_from_body(body, strlen(body), &u));
    CHECK(u.prompt == 3 && u.completion == 4);
    struct tok_usage n = { 0 };
    const char *open = "{\"content\":\"unterminated \\\" \"usage\":{\"prompt_tokens\":5}}";
    CHECK(!tok_usage_from_body(open, strlen(open), &n)); /* "usage" outside quotes is no key */
}

static int64_t estimate(const char *path, const char *body)
{
    struct api_call call;
    char msg[256];
    const char *param;
    int rc = srv_validate(path, strlen(path), body, strlen(body), &call, msg, sizeof(msg), &param);
    if (rc) {
        fprintf(stderr, "invalid: %s\n", msg);
        return -1;
    }
    int64_t n = tok_estimate_prompt(&call, strlen(body));
    cJSON_Delete(call.root);
    return n;
}

static void test_estimates(void)
{
    CHECK(tok_estimate_text("", 0) == 0);
    CHECK(tok_estimate_text("abcd", 4) == 1);
    CHECK(tok_estimate_text("abcde", 5) == 2);
    CHECK(tok_estimate_text("\xe6\x97\xa5\xe6\x9c\xac", 6) == 2); /* two CJK code points */
    CHECK(tok_estimate_text("caf\xc3\xa9", 5) == 2);               /* "caf" + e-acute */
    /* 3 per message + content + 1+name + 3 priming */
    CHECK(estimate("/v1/chat/completions",
                   "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"12345678\"}]}") == 3 + 2 + 3);
    CHECK(estimate("/v1/chat/completions",
                   "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"abcd\"},"
                   "{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":\"abcdefgh\"},"
                   "{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\",\"detail\":\"low\"}}]}]}") ==
          3 + 1 + 3 + 2 + 85 + 1 + 1 + 3);
    int64_t with_tools = estimate("/v1/chat/completions",
                                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}],"
                                  "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}");
    CHECK(with_tools == 6 + (int64_t)(strlen("[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]") + 3) / 4);
    CHECK(estimate("/v1/completions", "{\"model\":\"m\",\"prompt\":[1,2,3,4,5]}") == 5);
    CHECK(estimate("/v1/completions", "{\"model\":\"m\",\"prompt\":[\"abcd\",\"abcd\"]}") == 2);
    CHECK(estimate("/v1/embeddings", "{\"model\":\"m\",\"input\":[[1,2],[3]]}") == 3);
    CHECK(estimate("/v1/responses", "{\"model\":\"m\",\"input\":\"abcdefgh\",\"instructions\":\"abcd\"}") == 2 + 3 + 1);
    CHECK(estimate("/v1/responses", "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":"
                                    "[{\"type\":\"input_text\",\"text\":\"abcd\"},{\"type\":\"input_image\",\"image_url\":\"u\"}]}]}") ==
          3 + 1 + 765);
    /* Deterministic: the same body always gives the same number. */
    const char *b = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello world, again\"}]}";
    CHECK(estimate("/v1/chat/completions", b) == estimate("/v1/chat/completions", b));
}

int main(void)
{
    test_bodies();
    test_stream_events();
    test_usage_inside_strings();
    test_estimates();
    return check_done();
}
