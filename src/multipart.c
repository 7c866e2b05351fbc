/* Just enough of multipart/form-data to find one field: parts are delimited
 * by CRLF "--" boundary; each has header lines, a blank line, then its
 * content up to the next delimiter. */
#include "sluice/multipart.h"

#include <string.h>
#include <strings.h>

bool mp_is_form(struct sl_str ct)
{
    return sl_str_casestarts(ct, "multipart/form-data") &&
           (ct.len == 19 || ct.p[19] == ';' || ct.p[19] == ' ' || ct.p[19] == '\t');
}

bool mp_boundary(struct sl_str ct, char *out, size_t *len)
{
    const char *p = ct.p, *end = ct.p + ct.len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        if (!semi)
            return false;
        p = semi + 1;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if ((size_t)(end - p) < 9 || strncasecmp(p, "boundary=", 9) != 0)
            continue;
        p += 9;
        const char *v = p, *ve;
        if (p < end && *p == '"') {
            v = ++p;
            ve = memchr(p, '"', (size_t)(end - p));
            if (!ve)
                return false;
        } else {
            ve = v;
            while (ve < end && *ve != ';' && *ve != ' ' && *ve != '\t')
                ve++;
        }
        size_t n = (size_t)(ve - v);
        if (n == 0 || n > MP_BOUNDARY_MAX)
            return false;
        memcpy(out, v, n);
        out[n] = '\0';
        *len = n;
        return true;
    }
    return false;
}

/* The value of a Content-Disposition parameter (name="..."), or false. */
static bool disposition_param(const char *line, size_t len, const char *param, struct sl_str *out)
{
    size_t plen = strlen(param);
    for (size_t i = 0; i + plen + 2 <= len; i++) {
        if ((i == 0 || line[i - 1] == ';' || line[i - 1] == ' ') &&
            strncasecmp(line + i, param, plen) == 0 && line[i + plen] == '=') {
            const char *v = line + i + plen + 1, *end = line + len;
            if (v < end && *v == '"') {
                const char *q = memchr(v + 1, '"', (size_t)(end - v - 1));
                if (!q)
                    return false;
                *out = (struct sl_str){ v + 1, (size_t)(q - v - 1) };
            } else {
                const char *e = v;
                while (e < end && *e != ';' && *e != ' ')
                    e++;
                *out = (struct sl_str){ v, (size_t)(e - v) };
            }
            return true;
        }
    }
    return false;
}

enum mp_found mp_each(const char *body, size_t len, const char *boundary, size_t blen,
                      bool (*each)(const struct mp_part *part, void *arg), void *arg)
{
    char delim[MP_BOUNDARY_MAX + 5]; /* "\r\n--" boundary */
    if (blen == 0 || blen > MP_BOUNDARY_MAX)
        return MP_MALFORMED;
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;
    /* The first delimiter may start the body, without its CRLF. */
    const char *p = body, *end = body + len;
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        p = body + dlen - 2;
    } else {
        const char *first = memmem(body, len, delim, dlen);
        if (!first)
            return MP_MALFORMED;
        p = first + dlen;
    }
    for (;;) {
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return MP_ABSENT; /* the closing delimiter: every part seen */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return MP_MALFORMED;
        p += 2;
        const char *head_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!head_end)
            return MP_MALFORMED;
        const char *content = head_end + 4;
        const char *next = memmem(content, (size_t)(end - content), delim, dlen);
        if (!next)
            return MP_MALFORMED;
        struct mp_part part = { { NULL, 0 }, { NULL, 0 }, { content, (size_t)(next - content) }, false };
        for (const char *line = p; line < head_end;) {
            const char *eol = memmem(line, (size_t)(head_end + 2 - line), "\r\n", 2);
            size_t llen = (size_t)(eol - line);
            if (llen > 20 && strncasecmp(line, "content-disposition:", 20) == 0) {
                disposition_param(line + 20, llen - 20, "name", &part.name);
                part.has_filename = disposition_param(line + 20, llen - 20, "filename", &part.filename);
            }
            line = eol + 2;
        }
        if (!each(&part, arg))
            return MP_FOUND;
        p = next + dlen;
    }
}

struct field_search {
    const char *name;
    struct sl_str *value;
    int parts; /* named so, file parts included */
    bool file;  /* the first was a file */
};

static bool is_field(const struct mp_part *part, void *arg)
{
    struct field_search *f = arg;
    if (!part->name.p || part->name.len != strlen(f->name) ||
        memcmp(part->name.p, f->name, part->name.len) != 0)
        return true; /* go on */
    if (f->parts++ == 0) {
        *f->value = part->content;
        f->file = part->has_filename;
    }
    return f->parts < 2; /* a second one: enough to know */
}

enum mp_found mp_field(const char *body, size_t len, const char *boundary, size_t blen,
                       const char *name, struct sl_str *value)
{
    struct field_search f = { name, value, 0, false };
    enum mp_found r = mp_each(body, len, boundary, blen, is_field, &f);
    if (r == MP_MALFORMED)
        return r;
    if (f.parts > 1)
        return MP_REPEATED;
    return f.parts == 1 && !f.file ? MP_FOUND : MP_ABSENT;
}
