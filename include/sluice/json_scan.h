/* A cursor over JSON text for the readers of a common shape (usage objects,
 * chat request bodies) that skip building a cJSON tree. Each function takes
 * one value of a strict subset of JSON or returns false; a reader that gets
 * false leaves the whole text to cJSON, which decides, so both agree on
 * everything the subset accepts. The subset: whitespace is space, tab, CR,
 * LF; strings hold no control bytes, no \u0000 and no broken surrogate
 * pairs; numbers follow JSON's grammar in at most 63 characters; nesting
 * stops at JS_DEPTH_MAX. */
#ifndef SLUICE_JSON_SCAN_H
#define SLUICE_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/util.h"

#define JS_DEPTH_MAX 32

struct json_scan {
    const char *p, *end;
};

/* Skips whitespace; the next byte, or 0 at the end. A reader picks the kind
 * of value by it: after a false the cursor may stand inside the value. */
char js_peek(struct json_scan *s);
/* Skips whitespace; true if the next byte is c (then taken). */
bool js_take(struct json_scan *s, char c);
/* True at the end of the text, whitespace aside. */
bool js_at_end(struct json_scan *s);
/* A string; raw is its text between the quotes, escapes as written;
 * *escaped says whether it has any. */
bool js_string(struct json_scan *s, struct sl_str *raw, bool *escaped);
/* An integer of at most 15 digits, no fraction or exponent (exact as the
 * double cJSON reads). */
bool js_integer(struct json_scan *s, int64_t *out);
/* true, false or null; which one in *lit ('t', 'f', 'n'). */
bool js_literal(struct json_scan *s, char *lit);
/* Any value, skipped. depth counts the containers around it. An object
 * whose member names repeat (or are escaped, or more than JS_KEYS_MAX) is
 * not taken: the cJSON path decides about it (a repeated name is refused). */
bool js_skip_value(struct json_scan *s, int depth);

#define JS_KEYS_MAX 32
/* The member names of one object read so far (raw, not escaped). */
struct js_keys {
    struct sl_str v[JS_KEYS_MAX];
    int n;
};
/* Takes one more member name: false if it repeats one of the object's, or
 * past JS_KEYS_MAX names (then the cJSON path decides). */
bool js_key_new(struct js_keys *k, struct sl_str raw);
/* The text of a string taken by js_string, unescaped into out (room for
 * raw.len bytes; the result is never longer). Returns its length. */
size_t js_unescape(struct sl_str raw, char *out);

#endif
