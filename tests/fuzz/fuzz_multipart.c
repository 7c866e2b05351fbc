/* libFuzzer target: a multipart/form-data upload as sluice reads it: the
 * Content-Type's boundary, then the body (multipart.h). The input is the
 * Content-Type, a newline, and the body. What must hold: a field found lies
 * inside the body; mp_field and mp_each agree on the parts that name it (a
 * name given twice, file or not, is MP_REPEATED: parsers differ on which one
 * they keep). */
#include <string.h>

#include "fuzz.h"
#include "sluice/log.h"
#include "sluice/multipart.h"

struct count {
    int named;       /* parts named model, files included */
    bool first_file; /* the first of them is a file */
};

static bool each(const struct mp_part *part, void *arg)
{
    struct count *c = arg;
    if (part->name.p && sl_str_eq(part->name, "model") && c->named++ == 0)
        c->first_file = part->has_filename;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_OFF);
    const char *nl = memchr(data, '\n', size);
    if (!nl)
        return 0;
    struct sl_str ct = { (const char *)data, (size_t)(nl - (const char *)data) };
    size_t len = size - ct.len - 1;
    char *body = malloc(len + 1);
    memcpy(body, nl + 1, len);
    body[len] = '\0';
    char boundary[MP_BOUNDARY_MAX + 1];
    size_t blen = 0;
    (void)mp_is_form(ct);
    if (mp_boundary(ct, boundary, &blen)) {
        FUZZ_ASSERT(blen >= 1 && blen <= MP_BOUNDARY_MAX);
        struct sl_str v = { NULL, 0 };
        enum mp_found f = mp_field(body, len, boundary, blen, "model", &v);
        if (f == MP_FOUND)
            FUZZ_ASSERT(v.p >= body && v.p + v.len <= body + len);
        struct count c = { 0 };
        enum mp_found all = mp_each(body, len, boundary, blen, each, &c);
        if (all != MP_MALFORMED && f != MP_MALFORMED)
            FUZZ_ASSERT(f == (c.named > 1                     ? MP_REPEATED
                              : c.named == 1 && !c.first_file ? MP_FOUND
                                                              : MP_ABSENT));
    }
    free(body);
    return 0;
}
