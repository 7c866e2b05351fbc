/* The one-pass chat body reader against the cJSON path: whenever it takes a
 * body, the cJSON path accepts it too with the same model, stream flag and
 * prompt estimate; it takes the common shapes; and it leaves everything else
 * (errors, content parts, tools, escapes it does not read, duplicates) alone. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "sluice/chat_body.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/errors.h"
#include "sluice/util.h"

static const char *pick(const char *const *list, size_t n)
{
    return list[check_below(n)];
}

#define PICK(list) pick(list, SL_ARRAY_LEN(list))

/* Members every valid body may have, then members that make cJSON or the reader say no. */
static const char *const top_common[] = {
    "\"stream\":true", "\"stream\":false", "\"stream\":null", "\"stream_options\":null",
    "\"max_tokens\":100", "\"n\":null", "\"n\":-0", "\"max_output_tokens\":123456789012345",
    "\"tools\":null", "\"functions\":null", "\"temperature\":0.7", "\"top_p\":-1.5E-3",
    "\"user\":\"u\\/1\"", "\"metadata\":{\"k\":\"v\",\"n\":[]}", "\"logit_bias\":{\"50256\":-100}",
    "\"stop\":[\"\\n\",\"END\"]", "\"prompt\":7", "\"system\":\"be brief\"",
};

static const char *const top_members[] = {
    "\"system\":[{\"type\":\"text\",\"text\":\"x\"}]", "\"system\":null", "\"system\":7",
    "\"max_tokens\":null", "\"system\":\"caf\\u00e9\"", "\"tools\":[]",
    "\"model\":\"gpt-4o\"", "\"model\":\"gpt-\\u0034o-\\u00e9\"", "\"model\":\"\"", "\"model\":5",
    "\"stream\":true", "\"stream\":false", "\"stream\":null", "\"stream\":\"yes\"",
    "\"stream_options\":null", "\"stream_options\":{\"include_usage\":true}",
    "\"max_tokens\":100", "\"max_tokens\":-1", "\"max_tokens\":1.5", "\"n\":null", "\"n\":-0",
    "\"max_completion_tokens\":1e2", "\"n\":0012", "\"max_output_tokens\":123456789012345",
    "\"tools\":null", "\"tools\":[{\"type\":\"function\"}]", "\"functions\":null",
    "\"response_format\":{\"type\":\"json_object\"}", "\"temperature\":0.7", "\"top_p\":-1.5E-3",
    "\"user\":\"u\\/1\"", "\"metadata\":{\"k\":\"v\",\"n\":[]}", "\"logit_bias\":{\"50256\":-100}",
    "\"seed\":1234567890123456789012345678901234567890123456789012345678901234567890",
    "\"mod\\u0065l\":\"x\"", "\"stop\":[\"\\n\",\"END\"]", "\"prompt\":7",
};

static const char *const message_common[] = {
    "\"content\":\"hello world\"",
    "\"content\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ end\\n\\t\\b\\f\\r\"",
    "\"content\":\"h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xff\"", "\"content\":null",
    "\"content\":\"\"", "\"content\":\"\\u00E9\\u20AC\\u0041\"", "\"name\":\"bob\"",
    "\"name\":\"b\\u00f6b\"", "\"tool_call_id\":\"abc\"",
    "\"extra\":{\"a\":[1,2.5e3,-0.1,true,false,null,{}]}",
};

static const char *const message_members[] = {
    "\"role\":\"user\"", "\"role\":\"assistant\"", "\"role\":\"system\"", "\"role\":\"\\u0075ser\"", "\"role\":\"sys\\ntem\"", "\"role\":1", "\"role\":null",
    "\"content\":\"hello world\"",
    "\"content\":\"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\\\ \\/ end\\n\\t\\b\\f\\r\"",
    "\"content\":\"h\xc3\xa9llo w\xc3\xb6rld \xe6\x97\xa5\xe6\x9c\xac \xff\"", "\"content\":null",
    "\"content\":\"\"", "\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]", "\"content\":7",
    "\"content\":\"lone \\udc00 low\"", "\"content\":\"high \\ud800 alone\"",
    "\"content\":\"nul \\u0000 inside\"", "\"content\":\"\\u00E9\\u20AC\\u0041\"",
    "\"name\":\"bob\"", "\"name\":\"b\\u00f6b\"", "\"name\":3", "\"tool_call_id\":\"abc\"",
    "\"tool_calls\":[{\"id\":\"x\"}]", "\"function_call\":null",
    "\"extra\":{\"a\":[1,2.5e3,-0.1,true,false,null,{}]}",
};

static void ws(struct sl_buf *b)
{
    static const char *const spaces[] = { "", "", "", " ", "\n  ", "\t", "\r\n" };
    sl_buf_appends(b, PICK(spaces));
}

/* A member's name as written ("\"name\"" up to its colon). */
static size_t name_len(const char *member)
{
    const char *colon = strchr(member + 1, ':');
    return colon ? (size_t)(colon - member) : strlen(member);
}

/* Whether an object's members so far (used[0..n)) have this one's name. */
static bool repeats(const char *const *used, size_t n, const char *member)
{
    for (size_t i = 0; i < n; i++)
        if (name_len(used[i]) == name_len(member) && memcmp(used[i], member, name_len(member)) == 0)
            return true;
    return false;
}

/* A member for an object that has used[0..*n): mostly one with a name of
 * its own (a repeated name is refused: now and then one is kept). */
static const char *fresh_member(const char *const *used, size_t *n, const char *const *list,
                                size_t len, const char *const *other, size_t olen, int bias)
{
    const char *m = NULL;
    for (int tries = 0; tries < 8; tries++) {
        m = check_below((size_t)bias) ? pick(list, len) : pick(other, olen);
        if (!repeats(used, *n, m) || check_below(16) == 0)
            break;
    }
    return m;
}

static void gen_message(struct sl_buf *b)
{
    sl_buf_appends(b, "{");
    size_t n = check_below(4), nused = 0;
    const char *used[8];
    bool role_first = check_below(4) != 0;
    for (size_t i = 0; i < n + role_first; i++) {
        if (i)
            sl_buf_appends(b, ",");
        ws(b);
        const char *m = i == 0 && role_first
                            ? "\"role\":\"user\""
                            : fresh_member(used, &nused, message_common,
                                           SL_ARRAY_LEN(message_common), message_members,
                                           SL_ARRAY_LEN(message_members), 5);
        used[nused++] = m;
        sl_buf_appends(b, m);
        ws(b);
    }
    sl_buf_appends(b, "}");
}

static bool anthropic; /* Messages API bodies (messages_body_scan), else chat's */

static void gen_body(struct sl_buf *b)
{
    ws(b);
    sl_buf_appends(b, "{");
    bool max_first = anthropic && check_below(8) != 0; /* required there */
    if (max_first)
        sl_buf_appends(b, "\"max_tokens\":64");
    size_t n = check_below(5);
    size_t messages_at = check_below(n + 1), model_at = check_below(n + 1), nused = 0;
    const char *used[24];
    bool first = !max_first;
    if (max_first)
        used[nused++] = "\"max_tokens\":";
    for (size_t i = 0; i <= n; i++) {
        for (int part = 0; part < 3; part++) {
            bool add = part == 0 ? i == model_at && check_below(8) != 0
                     : part == 1 ? i == messages_at && check_below(8) != 0
                                 : i < n;
            if (!add)
                continue;
            if (!first)
                sl_buf_appends(b, ",");
            first = false;
            ws(b);
            if (part == 0) {
                const char *m = check_below(6) ? "\"model\":\"gpt-4o-mini\"" : PICK(top_members);
                used[nused++] = m;
                sl_buf_appends(b, m);
            } else if (part == 1) {
                used[nused++] = "\"messages\":";
                sl_buf_appends(b, "\"messages\":[");
                size_t m = check_below(8) ? 1 + check_below(3) : 0;
                for (size_t j = 0; j < m; j++) {
                    if (j)
                        sl_buf_appends(b, ",");
                    ws(b);
                    gen_message(b);
                }
                sl_buf_appends(b, "]");
            } else {
                const char *m = fresh_member(used, &nused, top_common, SL_ARRAY_LEN(top_common),
                                             top_members, SL_ARRAY_LEN(top_members), 5);
                used[nused++] = m;
                sl_buf_appends(b, m);
            }
            ws(b);
        }
    }
    sl_buf_appends(b, "}");
    ws(b);
}

static void mutate(struct sl_buf *b)
{
    static const char bytes[] = " \t\n{}[]\",:-.0123456789eE\\u\x01";
    for (size_t m = check_below(3); m > 0 && b->len > 1; m--) {
        size_t at = check_below(b->len);
        char c = bytes[check_below(sizeof(bytes) - 1)];
        switch (check_below(3)) {
        case 0:
            b->data[at] = c;
            break;
        case 1:
            memmove(b->data + at, b->data + at + 1, b->len - at - 1);
            b->len--;
            break;
        default:
            sl_buf_reserve(b, 1);
            memmove(b->data + at + 1, b->data + at, b->len - at);
            b->data[at] = c;
            b->len++;
        }
    }
}

static const char *path = "/v1/chat/completions";

/* 0: the reader left the body alone; 1: it took it and agrees; -1: it disagrees. */
static int compare(const char *body, size_t len)
{
    struct api_call fast, tree;
    char msg[256];
    const char *param;
    memset(&fast, 0xA5, sizeof(fast));
    bool took = anthropic ? messages_body_scan(body, len, &fast) : chat_body_scan(body, len, &fast);
    int rc = api_validate_tree(path, strlen(path), body, len, &tree, msg, sizeof(msg), &param);
    int verdict = 0;
    if (took) {
        verdict = rc == 0 && fast.root == NULL &&
                          fast.endpoint == (anthropic ? API_MESSAGES : API_CHAT) &&
                          fast.model_len == tree.model_len &&
                          memcmp(fast.model, tree.model, tree.model_len) == 0 &&
                          fast.model[fast.model_len] == '\0' && fast.stream == tree.stream &&
                          !fast.client_include_usage && !tree.client_include_usage &&
                          fast.estimate == tree.estimate
                      ? 1
                      : -1;
        if (verdict < 0)
            fprintf(stderr, "disagree (rc %d, estimate %lld vs %lld): %.*s\n", rc,
                    (long long)fast.estimate, (long long)tree.estimate, (int)len, body);
    }
    cJSON_Delete(tree.root);
    return verdict;
}

static void test_agrees_with_cjson(void)
{
    int taken = 0, valid = 0, disagreed = 0, rounds = 30000;
    for (int round = 0; round < rounds; round++) {
        struct sl_buf b = { 0 };
        gen_body(&b);
        if (round % 2)
            mutate(&b);
        int v = compare(b.data, b.len);
        struct api_call tree;
        char msg[256];
        const char *param;
        if (api_validate_tree(path, strlen(path), b.data, b.len, &tree, msg, sizeof(msg),
                              &param) == 0)
            valid++;
        cJSON_Delete(tree.root);
        taken += v == 1;
        disagreed += v < 0;
        sl_buf_free(&b);
    }
    fprintf(stderr, "%s bodies: %d valid, %d read in one pass, of %d\n",
            anthropic ? "Messages" : "chat", valid, taken, rounds);
    CHECK(disagreed == 0);
    /* a repeated member name, kept now and then, is refused; Messages bodies are
     * stricter (roles, content, max_tokens): fewer of them are valid */
    CHECK(valid > rounds / (anthropic ? 20 : 6));
    CHECK(taken * 4 > valid); /* the common shapes do go the one-pass way */
}

static bool takes(const char *body)
{
    return compare(body, strlen(body)) == 1;
}

/* The tree path's answer to a body: 0, or the error (and its message in msg). */
static int tree_says(const char *body, char *msg, size_t n)
{
    struct api_call call;
    const char *param;
    int rc = api_validate_tree(path, strlen(path), body, strlen(body), &call, msg, n, &param);
    cJSON_Delete(call.root);
    return rc;
}

/* One reading decides (issue #28): a member given twice at any depth, after
 * unescaping, is refused; so is a NUL escape anywhere and a model name with
 * a control character. The one-pass reader never takes such a body. */
static void test_repeated_members_and_nul(void)
{
    const char *refused[] = {
        "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"model\":\"gpt-4o\"}",
        "{\"model\":\"gpt-4o-mini\",\"mod\\u0065l\":\"gpt-4o\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"max_tokens\":100000}",
        "{\"model\":\"m\",\"temperature\":1,\"temperature\":2,\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"x\":1,\"x\":2}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata\":"
        "{\"a\":{\"b\":1,\"b\":2}}}",
        "{\"model\":\"gpt-4o-mini\\u0000x\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}",
        "{\"model\":\"gpt\\n4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
    };
    char msg[256];
    for (size_t i = 0; i < SL_ARRAY_LEN(refused); i++) {
        CHECK(!takes(refused[i]));
        CHECK(tree_says(refused[i], msg, sizeof(msg)) == ERR_BAD_REQUEST);
    }
    CHECK(tree_says(refused[0], msg, sizeof(msg)) && strstr(msg, "'model' twice") != NULL);
    CHECK(tree_says(refused[1], msg, sizeof(msg)) && strstr(msg, "'model' twice") != NULL);
    /* an escaped backslash before u0000 is text, not a NUL */
    CHECK(tree_says("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                    "\"a\\\\u0000b\"}]}", msg, sizeof(msg)) == 0);
    /* the same name in different objects is fine; so are many names (past the reader's 32) */
    CHECK(takes("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
                "{\"role\":\"assistant\",\"content\":\"y\"}],\"metadata\":{\"role\":1}}"));
    struct sl_buf many = { 0 };
    sl_buf_appends(&many, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                          "\"metadata\":{");
    for (int i = 0; i < 40; i++)
        sl_buf_printf(&many, "%s\"k%d\":%d", i ? "," : "", i, i);
    sl_buf_appends(&many, "}}");
    CHECK(tree_says(many.data, msg, sizeof(msg)) == 0);
    sl_buf_free(&many);
}

static bool leaves(const char *body)
{
    return compare(body, strlen(body)) == 0;
}

static void test_shapes(void)
{
    CHECK(takes("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"));
    CHECK(takes(" {\"messages\":[{\"role\":\"system\",\"content\":\"be brief\\nplease\"},"
                "{\"role\":\"user\",\"name\":\"ann\",\"content\":\"caf\\u00e9 \\ud83d\\ude00\"}],"
                "\"model\":\"m\",\"stream\":true,\"max_tokens\":50,\"temperature\":0.2,"
                "\"tools\":null,\"metadata\":{\"a\":[1,{\"b\":null}]}}\n"));
    CHECK(takes("{\"model\":\"gpt-\\u0034o\",\"messages\":[{\"role\":\"user\",\"content\":null}]}"));
    /* left to cJSON: errors and what the reader does not read */
    CHECK(leaves("{\"model\":\"gpt-4o\",\"messages\":[]}"));
    CHECK(leaves("{\"model\":\"gpt-4o\"}"));
    CHECK(leaves("{\"model\":\"\",\"messages\":[{\"role\":\"user\"}]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"content\":\"no role\"}]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"tools\":[]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream_options\":{}}"));
    CHECK(leaves("{\"model\":\"m\",\"model\":\"n\",\"messages\":[{\"role\":\"user\"}]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]} trailing"));
    CHECK(leaves("\xef\xbb\xbf{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":1e3}"));
    CHECK(leaves("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"x\":1,}"));
}

int main(void)
{
    test_repeated_members_and_nul();
    test_shapes();
    test_agrees_with_cjson();
    anthropic = true; /* the same for Messages API bodies */
    path = "/v1/messages";
    test_agrees_with_cjson();
    CHECK(takes("{\"model\":\"c\",\"max_tokens\":5,\"system\":\"s\",\"messages\":[{\"role\":\"user\","
                "\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\",\"name\":\"n\"}]}"));
    CHECK(!takes("{\"model\":\"c\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"));
    CHECK(!takes("{\"model\":\"c\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":\"hi\"}]}"));
    CHECK(!takes("{\"model\":\"c\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[]}]}"));
    return check_done();
}
