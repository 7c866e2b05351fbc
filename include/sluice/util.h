/* Small helpers every module uses: clocks, string views, growable buffers,
 * and the parsers for the value syntaxes of the config file. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Letters and digits, as designators of a 256-entry character table (GNU C
 * ranges): static const bool t[256] = { SL_ALNUM_CHARS, ['-'] = 1 }. */
#define SL_ALNUM_CHARS ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1
#define SL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* A struct kept on a spare list for reuse is poisoned there under
 * AddressSanitizer, so a use after "free" is still caught. */
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/asan_interface.h>
#define SL_SPARE_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SL_SPARE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SL_SPARE_POISON(p, n) ((void)(p), (void)(n))
#define SL_SPARE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* A borrowed slice of bytes; never owns memory. */
struct sl_str {
    const char *p;
    size_t len;
};
#define SL_STR(lit) ((struct sl_str){ (lit), sizeof(lit) - 1 })

bool sl_str_eq(struct sl_str a, const char *lit);
/* Both NULL, or both the same string. */
bool sl_streq0(const char *a, const char *b);
bool sl_str_caseeq(struct sl_str a, const char *lit);
bool sl_str_casestarts(struct sl_str a, const char *prefix);
/* Whether a is prefix and more; *rest is the more. */
bool sl_str_after(struct sl_str a, const char *prefix, struct sl_str *rest);

/* Monotonic milliseconds / microseconds, for deadlines and latencies. */
int64_t sl_now_ms(void);
int64_t sl_now_us(void);
/* Wall-clock microseconds since the epoch, for records and traces. */
int64_t sl_wall_us(void);

/* Exit on allocation failure: a gateway that cannot allocate a few bytes cannot serve. */
void *sl_malloc(size_t n);
void *sl_calloc(size_t n, size_t size);
void *sl_realloc(void *p, size_t n);
char *sl_strdup(const char *s);
char *sl_strndup(const char *s, size_t n);

/* Growable byte buffer. */
struct sl_buf {
    char *data;
    size_t len, cap;
};
void sl_buf_reserve(struct sl_buf *b, size_t extra);
void sl_buf_append(struct sl_buf *b, const void *data, size_t len);
void sl_buf_appends(struct sl_buf *b, const char *s);
void sl_buf_printf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sl_buf_free(struct sl_buf *b);
/* Appends v in decimal (no printf: this is on every response's path). */
void sl_buf_int(struct sl_buf *b, int64_t v);
/* A fast 64-bit hash of the bytes (eight at a time, then mixed): for hash
 * tables, not for anything an attacker picks the collisions of beyond a
 * slower lookup. */
uint64_t sl_hash(const void *data, size_t len);
/* Room for one more element in an array of count elements of size bytes,
 * grown only by this: its capacity is the power of two at or above count, so
 * it doubles when count reaches one (amortized O(1) appends). */
void *sl_grow(void *array, size_t size, int count);
/* A map from names (any bytes; not copied: they must outlive the map) to
 * ints, by open addressing; it grows to stay at most half full, so adding and
 * finding are O(1). For config names (100,000 keys) and digests. */
struct sl_names {
    struct sl_name_slot {
        const char *name; /* NULL: empty */
        size_t len;
        int value;
    } *slots;
    size_t cap, count;
};
/* Adds name -> value; when the name is there already, returns false and sets
 * *had (may be NULL) to the value it has. */
bool sl_names_add(struct sl_names *m, const void *name, size_t len, int value, int *had);
/* The value of name, or -1. */
int sl_names_find(const struct sl_names *m, const void *name, size_t len);
void sl_names_free(struct sl_names *m);
/* v in decimal into out; returns the length (at most 20), no terminator. */
size_t sl_fmt_int(int64_t v, char out[24]);
/* Appends s as a quoted, escaped JSON string. */
void sl_buf_json_string(struct sl_buf *b, const char *s, size_t len);

/* Value syntaxes. Each returns false on bad input and leaves *out alone. */
bool sl_parse_int(const char *s, int64_t *out);
bool sl_parse_duration_ms(const char *s, int64_t *out); /* 100ms 2s 10m 1h; bare number = seconds */
bool sl_parse_size(const char *s, int64_t *out);        /* 512 4k 4m */
bool sl_parse_bool(const char *s, bool *out);           /* yes/no on/off true/false 1/0 */
bool sl_parse_money(const char *s, int64_t *out);       /* USD "2.50" -> micro-dollars 2500000 */
/* A duration as OpenAI's x-ratelimit-reset-* headers write it: parts of
 * digits (a fraction allowed) and a unit h, m, s or ms, as "6m0s", "1.5s",
 * "20ms"; a bare number is seconds. Milliseconds, rounded up. */
bool sl_parse_reset_ms(struct sl_str v, int64_t *out);
/* Micro-dollars as USD with 6 decimals ("0.000123"): at most 28 bytes and a
 * NUL; returns the length. */
size_t sl_fmt_money(int64_t micro, char *out);
/* An RFC 3339 time, "2027-01-01T00:00:00Z" (or with a +hh:mm / -hh:mm
 * offset; a fraction of a second is dropped): seconds since the epoch,
 * from 1970 to 9999. */
bool sl_parse_time(const char *s, int64_t *out);
/* Seconds since the epoch as "2027-01-01T00:00:00Z" (20 bytes and a NUL). */
void sl_fmt_time(int64_t secs, char out[21]);

/* Whether the bytes are well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). ASCII runs go 8 bytes at a time. */
bool sl_utf8_valid(const char *p, size_t len);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void sl_hex(const uint8_t *in, size_t n, char *out);
bool sl_unhex(const char *hex, uint8_t *out, size_t n);

/* SHA-256 of data into out[32]. */
void sl_sha256(const void *data, size_t len, uint8_t out[32]);

#endif
