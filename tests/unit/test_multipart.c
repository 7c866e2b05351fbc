/* multipart/form-data: the boundary from a Content-Type, one field's value,
 * and no reading past the body on anything a client may send. */
#include <stdlib.h>

#include "check.h"
#include "sluice/multipart.h"

static struct sl_str s(const char *p)
{
    return (struct sl_str){ p, strlen(p) };
}

static void test_boundary(void)
{
    char b[MP_BOUNDARY_MAX + 1];
    size_t n;
    CHECK(mp_is_form(s("multipart/form-data; boundary=abc")));
    CHECK(mp_is_form(s("Multipart/Form-Data;boundary=abc")));
    CHECK(!mp_is_form(s("multipart/form-datax; boundary=abc")));
    CHECK(!mp_is_form(s("application/json")));
    CHECK(mp_boundary(s("multipart/form-data; boundary=----formdata-undici-012345"), b, &n));
    CHECK_STR(b, "----formdata-undici-012345");
    CHECK(mp_boundary(s("multipart/form-data; charset=utf-8; boundary=\"a b;c\""), b, &n));
    CHECK_STR(b, "a b;c");
    CHECK(!mp_boundary(s("multipart/form-data"), b, &n));
    CHECK(!mp_boundary(s("multipart/form-data; boundary="), b, &n));
    CHECK(!mp_boundary(s("multipart/form-data; boundary=\"open"), b, &n));
    char longer[200];
    snprintf(longer, sizeof(longer), "multipart/form-data; boundary=%0*d", 71, 0);
    CHECK(!mp_boundary(s(longer), b, &n)); /* RFC 2046: at most 70 */
}

static const char FORM[] =
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"model\"\r\n"
    "Content-Type: audio/wav\r\n\r\n"
    "RIFF\0\0\0\0WAVE --Xy not a delimiter\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"model\"\r\n\r\n"
    "whisper-1\r\n"
    "--XyZ\r\n"
    "Content-Disposition: form-data; name=\"language\"\r\n\r\n"
    "en\r\n"
    "--XyZ--\r\n";

static void test_field(void)
{
    struct sl_str v;
    size_t len = sizeof(FORM) - 1;
    CHECK(mp_field(FORM, len, "XyZ", 3, "model", &v) == MP_FOUND);
    CHECK(v.len == 9 && memcmp(v.p, "whisper-1", 9) == 0);
    CHECK(mp_field(FORM, len, "XyZ", 3, "language", &v) == MP_FOUND && v.len == 2);
    CHECK(mp_field(FORM, len, "XyZ", 3, "prompt", &v) == MP_ABSENT);
    /* the file part is named "file"; one named "model" with a filename is not the field */
    const char file_named_model[] = "--b\r\nContent-Disposition: form-data; name=\"model\"; "
                                    "filename=\"x.wav\"\r\n\r\nRIFF\r\n--b--\r\n";
    CHECK(mp_field(file_named_model, sizeof(file_named_model) - 1, "b", 1, "model", &v) == MP_ABSENT);
    CHECK(mp_field(FORM, len, "other", 5, "model", &v) == MP_MALFORMED);
    CHECK(mp_field(FORM, len - 12, "XyZ", 3, "language", &v) == MP_MALFORMED); /* cut short */
    const char preamble[] = "ignored\r\n--b\r\nContent-Disposition: form-data; name=model\r\n\r\nm\r\n--b--";
    CHECK(mp_field(preamble, sizeof(preamble) - 1, "b", 1, "model", &v) == MP_FOUND);
    CHECK(v.len == 1 && v.p[0] == 'm');
    /* a field given twice: parsers differ on which one they keep (Starlette the
     * last, sluice read the first): neither is taken */
    const char twice[] = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
                         "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n"
                         "gpt-4o-transcribe\r\n--b--\r\n";
    CHECK(mp_field(twice, sizeof(twice) - 1, "b", 1, "model", &v) == MP_REPEATED);
    const char field_and_file[] = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n"
                                  "--b\r\nContent-Disposition: form-data; name=\"model\"; "
                                  "filename=\"x\"\r\n\r\nRIFF\r\n--b--\r\n";
    CHECK(mp_field(field_and_file, sizeof(field_and_file) - 1, "b", 1, "model", &v) == MP_REPEATED);
}

/* Random and damaged bodies: any answer, but never a read past the end (ASan). */
static void test_damaged(void)
{
    for (int round = 0; round < 20000; round++) {
        size_t len = check_below(sizeof(FORM));
        char *body = malloc(len ? len : 1);
        memcpy(body, FORM, len);
        for (int k = (int)check_below(4); k > 0 && len; k--)
            body[check_below(len)] = "\r\n-XyZ\"=;"[check_below(9)];
        struct sl_str v;
        enum mp_found f = mp_field(body, len, "XyZ", 3, "model", &v);
        CHECK(f >= MP_MALFORMED && f <= MP_REPEATED);
        if (f == MP_FOUND)
            CHECK(v.p >= body && v.p + v.len <= body + len);
        free(body);
    }
}

int main(void)
{
    test_boundary();
    test_field();
    test_damaged();
    return check_done();
}
