/* Clocks, allocation, buffers and the value syntaxes shared by all modules. */
#include "sluice/util.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool sl_str_eq(struct sl_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.p, lit, n) == 0;
}

bool sl_streq0(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool sl_str_caseeq(struct sl_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.p, lit, n) == 0;
}

bool sl_str_after(struct sl_str a, const char *prefix, struct sl_str *rest)
{
    size_t n = strlen(prefix);
    if (a.len <= n || memcmp(a.p, prefix, n) != 0)
        return false;
    *rest = (struct sl_str){ a.p + n, a.len - n };
    return true;
}

bool sl_str_casestarts(struct sl_str a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.len >= n && strncasecmp(a.p, prefix, n) == 0;
}

int64_t sl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sl_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t sl_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void *oom(size_t n)
{
    fprintf(stderr, "sluice: out of memory allocating %zu bytes\n", n);
    abort();
}

void *sl_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    return p ? p : oom(n);
}

void *sl_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    return p ? p : oom(n * size);
}

void *sl_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    return q ? q : oom(n);
}

char *sl_strdup(const char *s)
{
    return sl_strndup(s, strlen(s));
}

char *sl_strndup(const char *s, size_t n)
{
    char *p = sl_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void sl_buf_reserve(struct sl_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = sl_realloc(b->data, cap);
    b->cap = cap;
}

void sl_buf_append(struct sl_buf *b, const void *data, size_t len)
{
    sl_buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void sl_buf_appends(struct sl_buf *b, const char *s)
{
    sl_buf_append(b, s, strlen(s));
}

void sl_buf_printf(struct sl_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sl_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sl_buf_free(struct sl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Digits only, optional leading '-'; no overflow. */
bool sl_parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!isdigit((unsigned char)*p))
        return false;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        if (v > (uint64_t)INT64_MAX / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > (uint64_t)INT64_MAX)
            return false;
    }
    if (*p)
        return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

/* A number followed by a unit from units[] (multipliers in mult[]). */
static bool parse_with_unit(const char *s, const char *const *units, const int64_t *mult,
                            int64_t bare, int64_t *out)
{
    const char *p = s;
    while (isdigit((unsigned char)*p))
        p++;
    if (p == s || p - s > 15)
        return false;
    char num[16];
    memcpy(num, s, (size_t)(p - s));
    num[p - s] = '\0';
    int64_t v;
    if (!sl_parse_int(num, &v))
        return false;
    int64_t m = bare;
    if (*p) {
        m = 0;
        for (int i = 0; units[i]; i++)
            if (strcasecmp(p, units[i]) == 0)
                m = mult[i];
        if (!m)
            return false;
    }
    if (v > INT64_MAX / m)
        return false;
    *out = v * m;
    return true;
}

bool sl_parse_duration_ms(const char *s, int64_t *out)
{
    static const char *const units[] = { "ms", "s", "m", "h", NULL };
    static const int64_t mult[] = { 1, 1000, 60000, 3600000 };
    return parse_with_unit(s, units, mult, 1000, out);
}

bool sl_parse_reset_ms(struct sl_str v, int64_t *out)
{
    const char *p = v.p, *end = v.p + v.len;
    double total = 0;
    if (p == end)
        return false;
    while (p < end) {
        double n = 0, scale = 1;
        const char *digits = p;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (*p - '0');
        if (p < end && *p == '.')
            for (p++; p < end && *p >= '0' && *p <= '9'; p++)
                n += (*p - '0') * (scale /= 10);
        if (p == digits || n > 1e9)
            return false;
        double mult = 1000; /* a bare number: seconds */
        if (end - p >= 2 && p[0] == 'm' && p[1] == 's') {
            mult = 1;
            p += 2;
        } else if (p < end && (*p == 'h' || *p == 'm' || *p == 's')) {
            mult = *p == 'h' ? 3600000 : *p == 'm' ? 60000 : 1000;
            p++;
        } else if (p < end || digits != v.p) {
            return false; /* a unit is missing or unknown */
        }
        total += n * mult;
        if (total > 1e15) /* 30,000 years: not a reset time (and an int64 holds it) */
            return false;
    }
    int64_t ms = (int64_t)total;
    *out = (double)ms < total ? ms + 1 : ms;
    return true;
}

bool sl_parse_size(const char *s, int64_t *out)
{
    static const char *const units[] = { "k", "m", "kb", "mb", NULL };
    static const int64_t mult[] = { 1024, 1024 * 1024, 1024, 1024 * 1024 };
    return parse_with_unit(s, units, mult, 1, out);
}

bool sl_parse_money(const char *s, int64_t *out)
{
    int64_t whole = 0, frac = 0;
    int decimals = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (whole > (INT64_MAX / 1000000 - 9) / 10)
            return false;
        whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (++decimals > 6)
                return false;
            frac = frac * 10 + (*p - '0');
        }
        if (decimals == 0)
            return false;
    }
    if (*p)
        return false;
    for (; decimals < 6; decimals++)
        frac *= 10;
    *out = whole * 1000000 + frac;
    return true;
}

size_t sl_fmt_money(int64_t micro, char *out)
{
    char *p = out;
    uint64_t m = micro < 0 ? -(uint64_t)micro : (uint64_t)micro;
    if (micro < 0)
        *p++ = '-';
    p += sl_fmt_int((int64_t)(m / 1000000), p);
    *p++ = '.';
    uint64_t frac = m % 1000000;
    for (int i = 5; i >= 0; i--, frac /= 10)
        p[i] = (char)('0' + frac % 10);
    p += 6;
    *p = '\0';
    return (size_t)(p - out);
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* n digits at s as a number, or -1. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool sl_parse_time(const char *s, int64_t *out)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
        s[13] != ':' || s[16] != ':')
        return false;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h < 0 || h > 23 ||
        mi < 0 || mi > 59 || sec < 0 || sec > 59)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int64_t offset = 0;
    if ((*p == 'Z' || *p == 'z') && !p[1]) {
        offset = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return false;
        offset = (*p == '+' ? 1 : -1) * (int64_t)(oh * 3600 + om * 60);
    } else {
        return false;
    }
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    if (t < 0)
        return false;
    *out = t;
    return true;
}

void sl_fmt_time(int64_t secs, char out[21])
{
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

bool sl_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "yes", "on", "true", "1" };
    static const char *const no[] = { "no", "off", "false", "0" };
    for (size_t i = 0; i < SL_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

void sl_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

bool sl_unhex(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hi < 0 ? -1 : hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static EVP_MD *sha256_md;

static void fetch_sha256(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* OpenSSL 3 looks the algorithm up on every one-shot SHA256() call; fetched
 * once here, a digest is just the hashing. */
void sl_sha256(const void *data, size_t len, uint8_t out[32])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fetch_sha256);
    unsigned int n = 0;
    if (!sha256_md || !EVP_Digest(data, len, out, &n, sha256_md, NULL))
        SHA256(data, len, out);
}

/* Eight bytes per step (metric label texts are ~100 bytes, hashed several
 * times per request), then a final mix so the low bits, which pick a table
 * slot, depend on every input bit. */
uint64_t sl_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ len, w;
    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p, len);
    h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
    h ^= h >> 29;
    h *= 0xC4CEB9FE1A85EC53ULL;
    return h ^ (h >> 32);
}

void *sl_grow(void *array, size_t size, int count)
{
    if (count & (count - 1))
        return array;
    return sl_realloc(array, size * (size_t)(count ? count * 2 : 1));
}

static struct sl_name_slot *names_slot(struct sl_name_slot *slots, size_t cap, const void *name,
                                       size_t len)
{
    size_t i = (size_t)sl_hash(name, len) & (cap - 1);
    while (slots[i].name && !(slots[i].len == len && memcmp(slots[i].name, name, len) == 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

bool sl_names_add(struct sl_names *m, const void *name, size_t len, int value, int *had)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        struct sl_name_slot *slots = sl_calloc(cap, sizeof(*slots));
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i].name)
                *names_slot(slots, cap, m->slots[i].name, m->slots[i].len) = m->slots[i];
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    struct sl_name_slot *s = names_slot(m->slots, m->cap, name, len);
    if (s->name) {
        if (had)
            *had = s->value;
        return false;
    }
    *s = (struct sl_name_slot){ name, len, value };
    m->count++;
    return true;
}

int sl_names_find(const struct sl_names *m, const void *name, size_t len)
{
    if (!m->cap)
        return -1;
    const struct sl_name_slot *s = names_slot(m->slots, m->cap, name, len);
    return s->name ? s->value : -1;
}

void sl_names_free(struct sl_names *m)
{
    free(m->slots);
    *m = (struct sl_names){ 0 };
}

size_t sl_fmt_int(int64_t v, char out[24])
{
    char tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(out, p, n);
    return n;
}

void sl_buf_int(struct sl_buf *b, int64_t v)
{
    char d[24];
    sl_buf_append(b, d, sl_fmt_int(v, d));
}

void sl_buf_json_string(struct sl_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    sl_buf_reserve(b, len + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            sl_buf_append(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            sl_buf_append(b, esc, 6);
        } else {
            sl_buf_append(b, &s[i], 1);
        }
    }
    sl_buf_append(b, "\"", 1);
}

bool sl_utf8_valid(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    while (p < end) {
        if (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            if (!(v & 0x8080808080808080ULL)) {
                p += 8;
                continue;
            }
        }
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t n;
        unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
        if (c >= 0xc2 && c <= 0xdf)
            n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            else if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            else if (c == 0xf4)
                hi = 0x8f; /* past U+10FFFF */
        } else {
            return false;
        }
        if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
            return false;
        for (size_t i = 2; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += n;
    }
    return true;
}
