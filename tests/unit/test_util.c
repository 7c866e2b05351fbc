/* util: the UTF-8 check against a plain decoder, on valid and broken text;
 * the name map against a linear search of the same names. */
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

int main(void)
{
    test_known();
    test_random();
    test_names();
    return check_done();
}
