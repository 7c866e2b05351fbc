/* Usage extraction from the response shapes of each endpoint. */
#include <string.h>

#include "check.h"
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

int main(void)
{
    test_bodies();
    test_stream_events();
    return check_done();
}
