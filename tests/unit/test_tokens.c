/* Usage extraction from the response shapes of each endpoint. */
#include <string.h>

#include "check.h"
#include <cjson/cJSON.h>

#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/tokens.h"
#include "sluice/util.h"

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

/* The estimate api_validate makes (the one-pass reader for a chat body of the
 * common shape), checked against the cJSON path's. */
static int64_t estimate(const char *path, const char *body)
{
    struct api_call call, tree;
    char msg[256], tree_msg[256];
    const char *param, *tree_param;
    int rc = api_validate(path, strlen(path), body, strlen(body), &call, msg, sizeof(msg), &param);
    int tree_rc = api_validate_tree(path, strlen(path), body, strlen(body), &tree, tree_msg,
                                    sizeof(tree_msg), &tree_param);
    CHECK(rc == tree_rc);
    if (rc) {
        fprintf(stderr, "invalid: %s\n", msg);
        cJSON_Delete(call.root);
        cJSON_Delete(tree.root);
        return -1;
    }
    CHECK(call.estimate == tree.estimate);
    cJSON_Delete(call.root);
    cJSON_Delete(tree.root);
    return call.estimate;
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

/* The usage rules written plainly on cJSON: the oracle. A count is the first
 * name unless absent or null, else the second; whole and below 2^53, or the
 * usage is invalid (seen false); the cached count likewise, in the prompt
 * details if they are an object, else the input details. */
static int oracle_count(const cJSON *o, const char *a, const char *b, int64_t *v)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, a);
    if (!n || cJSON_IsNull(n))
        n = cJSON_GetObjectItemCaseSensitive(o, b);
    if (!n || cJSON_IsNull(n))
        return 0; /* absent */
    if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble >= 9007199254740992.0 ||
        n->valuedouble != (double)(int64_t)n->valuedouble)
        return -1; /* invalid */
    *v = (int64_t)n->valuedouble;
    return 1;
}

static bool reference_usage(const char *obj, size_t len, struct tok_usage *u)
{
    cJSON *root = cJSON_ParseWithLength(obj, len);
    bool ok = false;
    if (cJSON_IsObject(root)) {
        int64_t prompt = 0, completion = 0, cached = 0;
        int p = oracle_count(root, "prompt_tokens", "input_tokens", &prompt);
        int c = oracle_count(root, "completion_tokens", "output_tokens", &completion);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "prompt_tokens_details");
        if (!cJSON_IsObject(d))
            d = cJSON_GetObjectItemCaseSensitive(root, "input_tokens_details");
        int k = cJSON_IsObject(d) ? oracle_count(d, "cached_tokens", "cached_tokens", &cached) : 0;
        /* Anthropic's: the cache's parts of the prompt, apart from input_tokens */
        int64_t written = 0, read = 0;
        int cw = oracle_count(root, "cache_creation_input_tokens", "cache_creation_input_tokens", &written);
        int cr = oracle_count(root, "cache_read_input_tokens", "cache_read_input_tokens", &read);
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "prompt_tokens");
        bool from_input = !pt || cJSON_IsNull(pt);
        if (from_input && (cw > 0 || cr > 0) && k >= 0) {
            prompt += (cw > 0 ? written : 0) + (cr > 0 ? read : 0);
            cached = cr > 0 ? read : 0;
            k = 1;
        }
        if (p < 0 || c < 0 || k < 0 || cw < 0 || cr < 0 ||
            ((p > 0 || c > 0) && prompt >= (1LL << 53))) {
            ok = true;
            u->invalid = true;
        } else if (p > 0 || c > 0) {
            ok = true;
            u->seen = true;
            u->prompt = prompt;
            u->completion = completion;
            u->cached = k > 0 ? (cached < prompt ? cached : prompt) : 0;
            written = cw > 0 ? written : 0;
            u->cache_write = written < prompt - u->cached ? written : prompt - u->cached;
        }
    }
    cJSON_Delete(root);
    return ok;
}


/* The span of the object at p[0] == '{' by its braces, strings skipped: how
 * a response body's usage object was cut out before the scanner read it in
 * place. 0 if the braces do not close. */
static size_t braces_span(const char *p, size_t len)
{
    int depth = 0;
    for (size_t k = 0; k < len; k++) {
        if (p[k] == '"') {
            for (k++; k < len && p[k] != '"'; k++)
                k += p[k] == '\\';
        } else if (p[k] == '{') {
            depth++;
        } else if (p[k] == '}' && --depth == 0) {
            return k + 1;
        }
    }
    return 0;
}

static bool same_usage(bool g, const struct tok_usage *got, bool w, const struct tok_usage *want)
{
    return g == w && got->seen == want->seen && got->invalid == want->invalid &&
           got->prompt == want->prompt && got->completion == want->completion &&
           got->cached == want->cached && got->cache_write == want->cache_write;
}

/* Random usage objects, well formed and then mutated a byte or two: the fast
 * reader and cJSON must agree on every one (the fast reader hands what it does
 * not know to cJSON, so a disagreement is a bug in what it accepts). Each is
 * also read inside a response body, where the reader scans it in place: the
 * same answer as cJSON on the object cut out by its braces. */
static void test_usage_reader_agrees_with_cjson(void)
{
    static const char *const parts[] = {
        "\"prompt_tokens\":12", "\"completion_tokens\":5", "\"total_tokens\":17",
        "\"input_tokens\":3", "\"output_tokens\":9", "\"prompt_tokens\":-4",
        "\"completion_tokens\":\"7\"", "\"prompt_tokens\":1.5", "\"output_tokens\":2e3",
        "\"prompt_tokens\":007", "\"completion_tokens\":null", "\"input_tokens\":123456789012345",
        "\"prompt_tokens\":1234567890123456", "\"prompt_tokens_details\":{\"cached_tokens\":0}",
        "\"completion_tokens_details\":{\"reasoning_tokens\":2,\"x\":{\"y\":{}}}",
        "\"prompt\\u005ftokens\":8", "\"note\":\"a \\\"q\\\" b\"", "\"list\":[1,2]",
        "\"output_tokens\":true", "\"completion_tokens\":0", "\"prompt_tokens\":-0",
        "\"note\":\"\t{}", /* unclosed: a reader must not read an object inside the string */
        "\"prompt_tokens_details\":{\"cached_tokens\":6,\"audio_tokens\":0}",
        "\"input_tokens_details\":{\"cached_tokens\":2}", "\"prompt_tokens_details\":null",
        "\"prompt_tokens_details\":{\"cached_tokens\":-1}", "\"prompt_tokens_details\":7",
        "\"input_tokens_details\":{\"x\":{\"cached_tokens\":9},\"cached_tokens\":\"3\"}",
        "\"prompt_tokens_details\":{\"cached_tokens\":4,\"cached_tokens\":5}",
        "\"cached_tokens\":11", "\"output_tokens_details\":{\"reasoning_tokens\":4}",
        "\"cache_creation_input_tokens\":5", "\"cache_read_input_tokens\":7",
        "\"cache_read_input_tokens\":-2", "\"cache_creation_input_tokens\":null",
        "\"cache_creation\":{\"ephemeral_5m_input_tokens\":5}", "\"service_tier\":\"standard\"",
        "\"cache_creation_input_tokens\":9007199254740990",
    };
    static const char mutations[] = " \t\n{}[]\",:-.0123456789eE\\u";
    int agreed = 0, bodies = 0;
    for (int round = 0; round < 20000; round++) {
        char obj[512];
        size_t n = 0;
        obj[n++] = '{';
        int members = (int)check_below(6);
        for (int i = 0; i < members; i++) {
            const char *p = parts[check_below(SL_ARRAY_LEN(parts))];
            if (i)
                n += (size_t)snprintf(obj + n, sizeof(obj) - n, "%s", check_below(4) ? "," : " , ");
            n += (size_t)snprintf(obj + n, sizeof(obj) - n, "%s", p);
        }
        obj[n++] = '}';
        for (int m = (int)check_below(3); m > 0 && n > 1; m--) {
            size_t at = check_below((unsigned)n);
            switch (check_below(3)) {
            case 0: obj[at] = mutations[check_below(sizeof(mutations) - 1)]; break;
            case 1: memmove(obj + at, obj + at + 1, n - at - 1); n--; break;
            default:
                memmove(obj + at + 1, obj + at, n - at);
                obj[at] = mutations[check_below(sizeof(mutations) - 1)];
                n++;
            }
        }
        struct tok_usage got = { 0 }, want = { 0 };
        bool g = tok_usage_from_object(obj, n, &got);
        bool w = reference_usage(obj, n, &want);
        char body[640];
        static const char head[] = "{\"id\":\"c\\\"1\",\"usage\":";
        int bn = snprintf(body, sizeof(body), "%s%.*s,\"z\":\"}{\"}", head, (int)n, obj);
        struct tok_usage in_body = { 0 }, body_want = { 0 };
        bool b = tok_usage_from_body(body, (size_t)bn, &in_body);
        size_t span = obj[0] == '{' ? braces_span(body + strlen(head), (size_t)bn - strlen(head)) : 0;
        bool bw = span && reference_usage(body + strlen(head), span, &body_want);
        if (obj[0] == '{')
            bodies += same_usage(b, &in_body, bw, &body_want);
        else
            bodies++; /* the next "usage" is not this object: nothing to compare */
        if (same_usage(g, &got, w, &want))
            agreed++;
        else
            fprintf(stderr, "disagree on %.*s: got %d %lld %lld %lld, cJSON %d %lld %lld %lld\n",
                    (int)n, obj, g, (long long)got.prompt, (long long)got.completion,
                    (long long)got.cached, w, (long long)want.prompt, (long long)want.completion,
                    (long long)want.cached);
    }
    CHECK(agreed == 20000);
    CHECK(bodies == 20000);
}

/* Numbers sluice cannot use make the usage invalid: nothing is taken from it. */
static void test_invalid_numbers(void)
{
    const char *bad[] = { "{\"usage\":{\"prompt_tokens\":1e30,\"completion_tokens\":2}}",
                          "{\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":2}}",
                          "{\"usage\":{\"prompt_tokens\":1.5,\"completion_tokens\":2}}",
                          "{\"usage\":{\"prompt_tokens\":\"12\",\"completion_tokens\":2}}",
                          "{\"usage\":{\"prompt_tokens\":9007199254740993,\"completion_tokens\":2}}",
                          "{\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
                          "\"prompt_tokens_details\":{\"cached_tokens\":-1}}}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tok_usage u = { 0 };
        CHECK(tok_usage_from_body(bad[i], strlen(bad[i]), &u) && u.invalid && !u.seen);
    }
    struct tok_usage u = { 0 };
    const char *edge = "{\"usage\":{\"prompt_tokens\":9007199254740991,\"completion_tokens\":0}}";
    CHECK(tok_usage_from_body(edge, strlen(edge), &u) && u.seen && u.prompt == 9007199254740991LL);
    const char *over = "{\"usage\":{\"prompt_tokens\":9007199254740992,\"completion_tokens\":0}}";
    CHECK(tok_usage_from_body(over, strlen(over), &u) && u.invalid && !u.seen);
    const char *nulls = "{\"usage\":{\"prompt_tokens\":null,\"input_tokens\":4}}";
    CHECK(tok_usage_from_body(nulls, strlen(nulls), &u) && u.seen && u.prompt == 4);
}

/* The text a stream relayed, for a stream without usage. */
static void test_output_text(void)
{
    struct tok_text t = { 0 };
    const char *chat = "{\"choices\":[{\"delta\":{\"content\":\"Hello, w\\\"orld\"}}]}";
    CHECK(tok_output_text(chat, strlen(chat), &t));
    CHECK(t.ascii == 13 && t.other == 0); /* Hello, w"orld: the escape is one character */
    const char *role = "{\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}";
    CHECK(!tok_output_text(role, strlen(role), &t) && t.ascii == 13);
    const char *tool = "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]}}]}";
    CHECK(tok_output_text(tool, strlen(tool), &t) && t.ascii == 13 + 7); /* {"a":1} */
    const char *resp = "{\"type\":\"response.output_text.delta\",\"delta\":\"\xc3\xa9t\xc3\xa9\"}";
    CHECK(tok_output_text(resp, strlen(resp), &t) && t.other == 2 && t.ascii == 21);
    CHECK(tok_text_tokens(&t) == (21 + 3) / 4 + 2);
    const char *cut = "{\"choices\":[{\"delta\":{\"content\":\"ab";
    struct tok_text c = { 0 };
    CHECK(tok_output_text(cut, strlen(cut), &c) && c.ascii == 2); /* to the end, no further */
    struct tok_text none = { 0 };
    CHECK(tok_text_tokens(&none) == 0);
}

/* Anthropic's Messages API: input_tokens leave out the prompt cache's parts;
 * a stream's message_start gives the prompt, its message_delta the output. */
static void test_anthropic_usage(void)
{
    struct tok_usage u = { 0 };
    const char *msg = "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"usage\"}],"
                      "\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":20,"
                      "\"cache_read_input_tokens\":30,\"cache_creation\":{\"ephemeral_5m_input_tokens\":20,"
                      "\"ephemeral_1h_input_tokens\":0},\"output_tokens\":7,\"service_tier\":\"standard\"}}";
    CHECK(tok_usage_from_body(msg, strlen(msg), &u));
    CHECK(u.seen && u.prompt == 60 && u.cached == 30 && u.cache_write == 20 && u.completion == 7);
    struct tok_usage s = { 0 };
    const char *start = "{\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],"
                        "\"usage\":{\"input_tokens\":4,\"cache_read_input_tokens\":96,\"output_tokens\":1}}}";
    const char *delta = "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                        "\"text_delta\",\"text\":\"hi\"}}";
    const char *end = "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
                      "\"usage\":{\"output_tokens\":42}}";
    CHECK(tok_usage_from_sse_data(start, strlen(start), &s) && s.prompt == 100 && s.cached == 96);
    CHECK(!tok_usage_from_sse_data(delta, strlen(delta), &s));
    CHECK(tok_usage_from_sse_data(end, strlen(end), &s));
    CHECK(s.seen && s.prompt == 100 && s.cached == 96 && s.cache_write == 0 && s.completion == 42);
    /* a message_delta that repeats every count (newer API versions) replaces them */
    const char *full = "{\"type\":\"message_delta\",\"usage\":{\"input_tokens\":5,"
                       "\"cache_creation_input_tokens\":1,\"cache_read_input_tokens\":96,\"output_tokens\":43}}";
    CHECK(tok_usage_from_sse_data(full, strlen(full), &s) && s.prompt == 102 && s.cache_write == 1 &&
          s.completion == 43);
    /* an OpenAI-shaped usage that names the cache (LiteLLM's): prompt_tokens has it all */
    struct tok_usage l = { 0 };
    const char *lite = "{\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":2,"
                       "\"cache_creation_input_tokens\":8,\"prompt_tokens_details\":{\"cached_tokens\":30}}}";
    CHECK(tok_usage_from_body(lite, strlen(lite), &l) && l.prompt == 50 && l.cached == 30 &&
          l.cache_write == 8);
    /* the sum past 2^53 is not a count */
    struct tok_usage o = { 0 };
    const char *over = "{\"usage\":{\"input_tokens\":9007199254740000,"
                       "\"cache_read_input_tokens\":9007199254740000,\"output_tokens\":1}}";
    CHECK(tok_usage_from_body(over, strlen(over), &o) && o.invalid && !o.seen);
    /* the text a stream relayed: text, a tool's input JSON, thinking */
    struct tok_text t = { 0 };
    CHECK(tok_output_text(delta, strlen(delta), &t) && t.ascii == 2);
    const char *json = "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\","
                       "\"partial_json\":\"{\\\"a\\\":1}\"}}";
    CHECK(tok_output_text(json, strlen(json), &t) && t.ascii == 2 + 7);
    const char *think = "{\"type\":\"content_block_delta\",\"delta\":{\"type\":\"thinking_delta\","
                        "\"thinking\":\"hmm\"}}";
    CHECK(tok_output_text(think, strlen(think), &t) && t.ascii == 2 + 7 + 3);
}

int main(void)
{
    test_anthropic_usage();
    test_invalid_numbers();
    test_output_text();
    test_bodies();
    test_stream_events();
    test_usage_inside_strings();
    test_estimates();
    test_usage_reader_agrees_with_cjson();
    return check_done();
}
