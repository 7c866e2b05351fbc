/* A minimal scanner over a validated JSON object: finds the spans of
 * top-level members and splices new values into the text. */
#include "sluice/json_edit.h"

#include <string.h>

size_t json_skip_ws(const char *s, size_t i, size_t len)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"'; returns the index after the closing quote. */
static size_t skip_string(const char *s, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return len;
}

/* Returns the index after the value starting at s[i]. */
static size_t skip_value(const char *s, size_t i, size_t len)
{
    if (s[i] == '"')
        return skip_string(s, i, len);
    if (s[i] == '{' || s[i] == '[') {
        int depth = 0;
        while (i < len) {
            char c = s[i];
            if (c == '"') {
                i = skip_string(s, i, len);
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if (c == '}' || c == ']')
                depth--;
            i++;
            if (depth == 0)
                return i;
        }
        return len;
    }
    while (i < len && s[i] != ',' && s[i] != '}' && s[i] != ']' && s[i] != ' ' && s[i] != '\t' &&
           s[i] != '\n' && s[i] != '\r')
        i++;
    return i;
}

bool json_set_member(const char *json, size_t len, const char *name, const char *value,
                     struct sl_buf *out)
{
    size_t nlen = strlen(name);
    size_t i = json_skip_ws(json, 0, len);
    if (i >= len || json[i] != '{')
        return false;
    size_t open = i++;
    size_t copied = 0; /* json[0..copied) is already in out */
    bool found = false;
    out->len = 0;
    for (;;) {
        i = json_skip_ws(json, i, len);
        if (i >= len || json[i] == '}')
            break;
        if (json[i] != '"')
            return false;
        size_t key_start = i + 1, key_end = skip_string(json, i, len) - 1;
        i = json_skip_ws(json, key_end + 1, len);
        if (i >= len || json[i] != ':')
            return false;
        i = json_skip_ws(json, i + 1, len);
        size_t vstart = i, vend = skip_value(json, i, len);
        if (key_end - key_start == nlen && memcmp(json + key_start, name, nlen) == 0) {
            sl_buf_append(out, json + copied, vstart - copied);
            sl_buf_appends(out, value);
            copied = vend;
            found = true;
        }
        i = json_skip_ws(json, vend, len);
        if (i < len && json[i] == ',')
            i++;
    }
    if (found) {
        sl_buf_append(out, json + copied, len - copied);
        return true;
    }
    /* Insert as the first member. */
    size_t after = json_skip_ws(json, open + 1, len);
    bool empty = after < len && json[after] == '}';
    sl_buf_append(out, json, open + 1);
    sl_buf_printf(out, "\"%s\":%s%s", name, value, empty ? "" : ",");
    sl_buf_append(out, json + open + 1, len - open - 1);
    return true;
}
