/* The strict JSON cursor of json_scan.h. */
#include "sluice/json_scan.h"

#include <string.h>

#include "sluice/json_edit.h"

#define NUMBER_MAX 63 /* cJSON reads a number through a buffer of 64 bytes */

static void skip_ws(struct json_scan *s)
{
    s->p += json_skip_ws(s->p, 0, (size_t)(s->end - s->p));
}

char js_peek(struct json_scan *s)
{
    skip_ws(s);
    return s->p < s->end ? *s->p : 0;
}

bool js_take(struct json_scan *s, char c)
{
    skip_ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

bool js_at_end(struct json_scan *s)
{
    skip_ws(s);
    return s->p == s->end;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The four hex digits after "\u" at p (p + 6 <= end checked by the caller). */
static int hex4(const char *p)
{
    int v = 0;
    for (int i = 2; i < 6; i++) {
        int d = hex_digit(p[i]);
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The escape at p ('\\'): its length in the text, or 0 if outside the subset. */
static size_t escape_len(const char *p, const char *end)
{
    if (end - p < 2)
        return 0;
    switch (p[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return 2;
    case 'u':
        break;
    default:
        return 0;
    }
    int u = end - p >= 6 ? hex4(p) : -1;
    if (u <= 0 || (u >= 0xDC00 && u <= 0xDFFF))
        return 0; /* \u0000 would cut cJSON's string short; a lone low surrogate fails there */
    if (u < 0xD800 || u > 0xDBFF)
        return 6;
    int low = end - p >= 12 && p[6] == '\\' && p[7] == 'u' ? hex4(p + 6) : -1;
    return low >= 0xDC00 && low <= 0xDFFF ? 12 : 0;
}

/* The bytes a string's plain run stops at: its end, an escape, a control. */
static const bool string_stop[256] = { [0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1 };

bool js_string(struct json_scan *s, struct sl_str *raw, bool *escaped)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != '"')
        return false;
    const char *start = ++s->p;
    *escaped = false;
    for (;;) {
        while (s->p < s->end && !string_stop[(unsigned char)*s->p]) /* the plain run */
            s->p++;
        if (s->p == s->end || (unsigned char)*s->p < 0x20)
            return false;
        if (*s->p == '"') {
            *raw = (struct sl_str){ start, (size_t)(s->p++ - start) };
            return true;
        }
        size_t n = escape_len(s->p, s->end); /* at a backslash */
        if (!n)
            return false;
        *escaped = true;
        s->p += n;
    }
}

bool js_integer(struct json_scan *s, int64_t *out)
{
    skip_ws(s);
    bool neg = s->p < s->end && *s->p == '-';
    const char *d = s->p + neg, *q = d;
    int64_t v = 0;
    while (q < s->end && *q >= '0' && *q <= '9' && q - d < 16)
        v = v * 10 + (*q++ - '0');
    if (q == d || q - d > 15 || (*d == '0' && q - d > 1))
        return false;
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9')))
        return false;
    s->p = q;
    *out = neg ? -v : v;
    return true;
}

bool js_literal(struct json_scan *s, char *lit)
{
    static const char *const words[] = { "true", "false", "null" };
    skip_ws(s);
    for (size_t i = 0; i < SL_ARRAY_LEN(words); i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, words[i], n) == 0) {
            s->p += n;
            *lit = words[i][0];
            return true;
        }
    }
    return false;
}

static bool is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* The characters cJSON reads into a number. */
static bool number_char(char c)
{
    return c && strchr("0123456789.+-eE", c);
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool skip_number(struct json_scan *s)
{
    const char *p = s->p, *end = s->end;
    if (p < end && *p == '-')
        p++;
    if (!is_digit(p, end))
        return false;
    if (*p++ != '0')
        while (is_digit(p, end))
            p++;
    if (p < end && *p == '.') {
        if (!is_digit(++p, end))
            return false;
        while (is_digit(p, end))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            return false;
        while (is_digit(p, end))
            p++;
    }
    if (p - s->p > NUMBER_MAX || (p < end && number_char(*p)))
        return false; /* cJSON would read on where the grammar stopped */
    s->p = p;
    return true;
}

bool js_key_new(struct js_keys *k, struct sl_str raw)
{
    if (k->n == JS_KEYS_MAX)
        return false;
    for (int i = 0; i < k->n; i++)
        if (k->v[i].len == raw.len && memcmp(k->v[i].p, raw.p, raw.len) == 0)
            return false;
    k->v[k->n++] = raw;
    return true;
}

bool js_skip_value(struct json_scan *s, int depth)
{
    skip_ws(s);
    if (s->p >= s->end || depth > JS_DEPTH_MAX)
        return false;
    struct sl_str raw;
    bool escaped;
    char lit;
    switch (*s->p) {
    case '"':
        return js_string(s, &raw, &escaped);
    case '{': {
        struct js_keys keys;
        keys.n = 0;
        s->p++;
        if (js_take(s, '}'))
            return true;
        do {
            if (!js_string(s, &raw, &escaped) || escaped || !js_key_new(&keys, raw) ||
                !js_take(s, ':') || !js_skip_value(s, depth + 1))
                return false;
        } while (js_take(s, ','));
        return js_take(s, '}');
    }
    case '[':
        s->p++;
        if (js_take(s, ']'))
            return true;
        do {
            if (!js_skip_value(s, depth + 1))
                return false;
        } while (js_take(s, ','));
        return js_take(s, ']');
    case 't': case 'f': case 'n':
        return js_literal(s, &lit);
    default:
        return skip_number(s);
    }
}

static size_t put_utf8(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* The byte a one-letter escape stands for (", \\ and / stand for themselves). */
static char simple_escape(char letter)
{
    switch (letter) {
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return letter;
    }
}

size_t js_unescape(struct sl_str raw, char *out)
{
    const char *p = raw.p, *end = raw.p + raw.len;
    size_t n = 0;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        size_t run = (size_t)((bs ? bs : end) - p);
        memcpy(out + n, p, run);
        n += run;
        p += run;
        if (!bs)
            break;
        if (p[1] != 'u') {
            out[n++] = simple_escape(p[1]);
            p += 2;
            continue;
        }
        uint32_t c = (uint32_t)hex4(p); /* js_string let only whole escapes through */
        p += 6;
        if (c >= 0xD800 && c <= 0xDBFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + ((uint32_t)hex4(p) - 0xDC00);
            p += 6;
        }
        n += put_utf8(c, out + n);
    }
    return n;
}
