/* Which backends take a call by dialect, and the one translation of a call
 * made before admission (or refused when nothing else serves it). */
#include <cjson/cJSON.h>
#include <string.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/api_read.h"
#include "sluice/config.h"
#include "sluice/dialect.h"
#include "sluice/errors.h"

static const char *conf_text =
    "[server]\nlisten = 127.0.0.1:9\n"
    "[backend claude]\ntype = anthropic\nurl = http://127.0.0.1:9/v1\nmodels = claude, both\n"
    "[backend gpt]\nurl = http://127.0.0.1:9/v1\nmodels = gpt, both\n"
    "[model fallback]\nfallbacks = claude\n"
    "[key k]\nkey = sk-test-dialect-0000001\n";

static int prepare(const struct config *c, const char *path, const char *body, struct sl_buf *out,
                   const char **param)
{
    struct api_call call;
    char msg[256];
    CHECK(api_validate_tree(path, strlen(path), body, strlen(body), &call, msg, sizeof(msg), param) == 0);
    call.body = API_BODY_JSON;
    int e = dl_prepare(c, &call, (struct sl_str){ body, strlen(body) }, out, msg, sizeof(msg), param);
    cJSON_Delete(call.root);
    return e;
}

int main(void)
{
    struct config *c = check_load_config(conf_text, NULL);
    CHECK(c && c->any_anthropic && c->any_openai);
    const struct cfg_backend *claude = &c->backends[0], *gpt = &c->backends[1];
    CHECK(dl_route(claude, API_MESSAGES) == XL_NONE && dl_route(claude, API_COUNT_TOKENS) == XL_NONE);
    CHECK(dl_route(claude, API_CHAT) == XL_CHAT_TO_MESSAGES && dl_route(claude, API_EMBEDDINGS) == -1);
    CHECK(dl_route(gpt, API_MESSAGES) == XL_MESSAGES_TO_CHAT && dl_route(gpt, API_COUNT_TOKENS) == -1);
    CHECK(dl_route(gpt, API_RESPONSES) == XL_NONE);
    CHECK(dl_serves(c, API_MESSAGES, "gpt", 3, true) && !dl_serves(c, API_MESSAGES, "gpt", 3, false));
    CHECK(!dl_serves(c, API_COUNT_TOKENS, "gpt", 3, true) && dl_serves(c, API_EMBEDDINGS, "both", 4, false));

    struct sl_buf out = { 0 };
    const char *param = NULL;
    const char *msgs = "{\"model\":\"gpt\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    CHECK(prepare(c, "/v1/messages", msgs, &out, &param) == 0 && out.len &&
          strstr(out.data, "\"role\":\"user\""));
    out.len = 0;
    /* its own dialect serves it: nothing to translate */
    const char *own = "{\"model\":\"claude\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    CHECK(prepare(c, "/v1/messages", own, &out, &param) == 0 && out.len == 0);
    /* a chat call whose fallback only an anthropic backend serves: translated for it */
    CHECK(prepare(c, "/v1/chat/completions",
                  "{\"model\":\"fallback\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &out,
                  &param) == 0 && out.len && strstr(out.data, "\"max_tokens\":4096"));
    out.len = 0;
    /* untranslatable: refused when only the other dialect serves it ... */
    CHECK(prepare(c, "/v1/messages",
                  "{\"model\":\"gpt\",\"max_tokens\":5,\"thinking\":{\"type\":\"enabled\"},\"messages\":[]}",
                  &out, &param) == ERR_BAD_REQUEST && strcmp(param, "thinking") == 0 && out.len == 0);
    /* ... and sent only to its own dialect when both do */
    param = NULL;
    CHECK(prepare(c, "/v1/messages",
                  "{\"model\":\"both\",\"max_tokens\":5,\"thinking\":{\"type\":\"enabled\"},\"messages\":[]}",
                  &out, &param) == 0 && out.len == 0);
    sl_buf_free(&out);
    cfg_unref(c);
    return check_done();
}
