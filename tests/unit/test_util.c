/* util: the UTF-8 check against a plain decoder, on valid and broken text;
 * the name map against a linear search of the same names; the hash's spread
 * over table slots. */
#include <stdlib.h>

#include "check.h"
#include "sluice/util.h"

/* The reference: decode each sequence to its code point, then judge it. */
static bool reference_utf8(const unsigned char *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!n || i + n > len)
            return false;
        unsigned cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        static const unsigned min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

static size_t encode(unsigned cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xc0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xe0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (unsigned char)(0xf0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

static void test_known(void)
{
    CHECK(sl_utf8_valid("", 0));
    CHECK(sl_utf8_valid("plain ascii, longer than eight bytes", 36));
    CHECK(sl_utf8_valid("h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80", 15));
    CHECK(!sl_utf8_valid("\xff", 1));
    CHECK(!sl_utf8_valid("\xc0\xaf", 2));             /* overlong '/' */
    CHECK(!sl_utf8_valid("\xe0\x80\xaf", 3));         /* overlong '/' */
    CHECK(!sl_utf8_valid("\xed\xa0\x80", 3));         /* a surrogate */
    CHECK(!sl_utf8_valid("\xf4\x90\x80\x80", 4));     /* past U+10FFFF */
    CHECK(!sl_utf8_valid("abcdefgh\xc3", 9));         /* cut short after an ASCII run */
    CHECK(!sl_utf8_valid("\xe2\x98", 2));
    CHECK(sl_utf8_valid("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7)); /* U+FFFF, U+10FFFF */
}

static void test_random(void)
{
    unsigned char buf[64];
    int agreed = 0, valid = 0;
    for (int round = 0; round < 200000; round++) {
        size_t n = 0;
        while (n < sizeof(buf) - 4) { /* mostly well-formed text with code points of every length */
            unsigned pick = (unsigned)check_below(4);
            unsigned cp = pick == 0   ? (unsigned)check_below(0x80)
                          : pick == 1 ? 0x80 + (unsigned)check_below(0x780)
                          : pick == 2 ? 0x800 + (unsigned)check_below(0xf800)
                                      : 0x10000 + (unsigned)check_below(0x100000);
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp = 'x';
            n += encode(cp, buf + n);
            if (check_below(4) == 0)
                break;
        }
        for (int k = (int)check_below(3); k > 0; k--) /* then broken at random */
            buf[check_below(n)] = (unsigned char)check_rand();
        if (check_below(8) == 0)
            n -= check_below(n); /* or cut */
        bool want = reference_utf8(buf, n);
        valid += want;
        agreed += sl_utf8_valid((const char *)buf, n) == want;
    }
    CHECK(agreed == 200000);
    CHECK(valid > 20000 && valid < 180000); /* both kinds were seen */
}

/* 20,000 names (some of them prefixes of others, some with NUL bytes inside)
 * added in random order with duplicates: the map agrees with a linear search
 * on every name added and on names never added, through every growth. */
static void test_names(void)
{
    enum { N = 20000 };
    static char names[N][16];
    static size_t lens[N];
    static int first[N]; /* the value the first add of a name gave it */
    for (int i = 0; i < N; i++) {
        lens[i] = (size_t)snprintf(names[i], sizeof(names[i]), "k%d", i / 2);
        if (i % 2) /* "k7" and "k7\0x": equal up to the shorter length */
            names[i][lens[i]++] = '\0', names[i][lens[i]++] = 'x';
    }
    struct sl_names m = { 0 };
    int *order = NULL;
    for (int i = 0; i < N + N / 4; i++) {
        order = sl_grow(order, sizeof(*order), i);
        order[i] = i < N ? i : (int)check_below(N); /* the last quarter: names again */
    }
    int agreed = 0, refused_again = 0;
    for (int k = 0; k < N + N / 4; k++) {
        int i = order[k], had = -1;
        bool added = sl_names_add(&m, names[i], lens[i], k, &had);
        if (k < N) {
            agreed += added;
            first[i] = k;
        } else {
            refused_again += !added && had == first[i];
        }
    }
    CHECK(agreed == N);
    CHECK(refused_again == N / 4);
    CHECK(m.count == N && m.cap >= 2 * m.count);
    int found = 0;
    for (int i = 0; i < N; i++)
        found += sl_names_find(&m, names[i], lens[i]) == first[i];
    CHECK(found == N);
    CHECK(sl_names_find(&m, "k10000", 6) == -1);
    CHECK(sl_names_find(&m, "k1", 1) == -1); /* "k", a prefix of names */
    CHECK(sl_names_find(&m, "", 0) == -1);
    free(order);
    sl_names_free(&m);
    CHECK(m.cap == 0 && sl_names_find(&m, "k1", 2) == -1);
}

/* Metric label texts that differ in one place (a key number, a status
 * code) spread over a table's low bits as random values would: 4,096 texts
 * in 1,024 slots fill about 1,005 (1,024 * (1 - e^-4)). Every byte and the
 * length count: one flipped bit anywhere, or one byte more, changes it. */
static void test_hash(void)
{
    enum { N = 4096, SLOTS = 1024 };
    static bool used[SLOTS];
    int filled = 0;
    char text[128];
    for (int i = 0; i < N; i++) {
        int n = snprintf(text, sizeof(text), "key=\"team-%d\",model=\"gpt-4o\",backend=\"b\",code=\"%d\"",
                         i / 8, 200 + i % 8);
        size_t slot = (size_t)sl_hash(text, (size_t)n) & (SLOTS - 1);
        filled += !used[slot];
        used[slot] = true;
    }
    CHECK(filled > 960);
    unsigned char buf[40] = "a label text of some forty bytes, more";
    uint64_t h = sl_hash(buf, sizeof(buf));
    CHECK(h == sl_hash(buf, sizeof(buf)));
    int changed = 0;
    for (size_t i = 0; i < sizeof(buf); i++)
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (unsigned char)(1u << b);
            changed += sl_hash(buf, sizeof(buf)) != h;
            buf[i] ^= (unsigned char)(1u << b);
        }
    CHECK(changed == (int)sizeof(buf) * 8);
    unsigned char zeros[16] = { 0 };
    int lengths_differ = 0;
    for (size_t n = 0; n < sizeof(zeros); n++)
        lengths_differ += sl_hash(zeros, n) != sl_hash(zeros, n + 1);
    CHECK(lengths_differ == (int)sizeof(zeros));
}

int main(void)
{
    test_known();
    test_random();
    test_names();
    test_hash();
    return check_done();
}
