/* libFuzzer target: an upstream's usage numbers, from a whole JSON response,
 * a usage object, or one SSE event's data (tokens.h), and the output text an
 * event carries. What must hold: usage that is seen is whole numbers from 0
 * up to 2^53 (what a limit, a quota or a price may add), and invalid usage is
 * never also seen; the text counted is never more than the event's bytes; a
 * chat chunk's content slice ends at its closing quote and holds no other. */
#include <string.h>

#include "fuzz.h"
#include "sluice/log.h"
#include "sluice/tokens.h"
#include "sluice/util.h"

#define MAX_USAGE (INT64_C(1) << 53)

static void check(bool found, const struct tok_usage *u)
{
    if (!found)
        return;
    FUZZ_ASSERT(!(u->seen && u->invalid));
    if (u->seen) {
        FUZZ_ASSERT(u->prompt >= 0 && u->prompt < MAX_USAGE);
        FUZZ_ASSERT(u->completion >= 0 && u->completion < MAX_USAGE);
        FUZZ_ASSERT(u->cached >= 0 && u->cached < MAX_USAGE);
        /* the prompt cache's parts are parts of the prompt (what is priced apart) */
        FUZZ_ASSERT(u->cache_write >= 0 && u->cached + u->cache_write <= u->prompt);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_OFF);
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    struct tok_usage u = { 0 };
    check(tok_usage_from_body(text, size, &u), &u);
    struct tok_usage o = { 0 };
    check(tok_usage_from_object(text, size, &o), &o);
    struct tok_usage s = { 0 };
    check(tok_usage_from_sse_data(text, size, &s), &s);
    /* a Messages stream: a later event's usage on top of an earlier one's */
    size_t half = size / 2;
    check(tok_usage_from_sse_data(text, half, &s), &s);
    check(tok_usage_from_sse_data(text + half, size - half, &s), &s);
    struct tok_text t = { 0 };
    bool has = tok_output_text(text, size, &t);
    FUZZ_ASSERT(t.ascii >= 0 && t.other >= 0 && (size_t)(t.ascii + t.other) <= size);
    FUZZ_ASSERT(has || (t.ascii == 0 && t.other == 0));
    struct sl_str raw; /* a chat chunk's content, sent back in a continuation: it cannot end its string */
    if (tok_chat_content(text, size, &raw)) {
        FUZZ_ASSERT(raw.p >= text && raw.p + raw.len < text + size && raw.p[raw.len] == '"');
        for (size_t i = 0; i < raw.len; i++) {
            if (raw.p[i] == '\\')
                i++;
            else
                FUZZ_ASSERT(raw.p[i] != '"');
        }
    }
    free(text);
    return 0;
}
