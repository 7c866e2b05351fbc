/* libFuzzer target: translation between the Messages API and chat
 * completions (xlate.h, xlate_stream.h). The first byte picks the direction
 * and what is read: a request, a whole answer, an error body, or a stream
 * (the rest split at newlines into events' data). What must hold: a
 * request translated is one JSON object, and one refused names a field; an
 * answer or error translated is one JSON object; a stream's output is whole
 * SSE events whose data is JSON (or [DONE]), and nothing follows its end. */
#include <cjson/cJSON.h>
#include <string.h>

#include "fuzz.h"
#include "sluice/errors.h"
#include "sluice/log.h"
#include "sluice/xlate_stream.h"

static void is_object(const struct sl_buf *b)
{
    cJSON *j = cJSON_ParseWithLength(b->data, b->len);
    FUZZ_ASSERT(cJSON_IsObject(j));
    cJSON_Delete(j);
}

/* Every event: optional "event: NAME\n", then "data: JSON\n\n". */
static void whole_events(const struct sl_buf *b)
{
    if (!b->len)
        return;
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *stop = memmem(p, (size_t)(end - p), "\n\n", 2);
        FUZZ_ASSERT(stop);
        if (strncmp(p, "event: ", 7) == 0)
            p = memchr(p, '\n', (size_t)(stop - p)) + 1;
        FUZZ_ASSERT(strncmp(p, "data: ", 6) == 0);
        p += 6;
        if (!(stop - p == 6 && memcmp(p, "[DONE]", 6) == 0)) {
            cJSON *j = cJSON_ParseWithLength(p, (size_t)(stop - p));
            FUZZ_ASSERT(cJSON_IsObject(j));
            cJSON_Delete(j);
        }
        p = stop + 2;
    }
}

static void stream(enum xl_dir d, bool usage, const char *text, size_t len)
{
    struct xl_stream s;
    xl_stream_init(&s, d, usage);
    struct sl_buf out = { 0 };
    const char *p = text, *end = text + len;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        bool was_finished = s.finished;
        size_t before = out.len;
        xl_stream_event(&s, p, (size_t)(stop - p), &out);
        FUZZ_ASSERT(!was_finished || out.len == before);
        p = stop + 1;
    }
    whole_events(&out);
    sl_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    log_set_level(LOG_OFF);
    enum xl_dir d = data[0] & 1 ? XL_CHAT_TO_MESSAGES : XL_MESSAGES_TO_CHAT;
    int what = (data[0] >> 1) % 4;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    struct sl_buf out = { 0 };
    if (what == 0) {
        cJSON *root = cJSON_ParseWithLength(text, len);
        if (cJSON_IsObject(root)) {
            char msg[256];
            const char *param = NULL;
            int e = xl_request(d, root, &out, msg, sizeof(msg), &param);
            if (e) {
                FUZZ_ASSERT(e == ERR_BAD_REQUEST && param && out.len == 0);
            } else {
                is_object(&out);
            }
        }
        cJSON_Delete(root);
    } else if (what == 1) {
        if (xl_response(d, text, len, &out))
            is_object(&out);
    } else if (what == 2) {
        xl_error(d, 400 + (int)(len % 200), text, len, &out);
        is_object(&out);
    } else {
        stream(d, data[0] & 0x80, text, len);
    }
    sl_buf_free(&out);
    return 0;
}
