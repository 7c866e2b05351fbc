/* multipart/form-data bodies (RFC 7578), read only as far as routing needs:
 * the boundary from the Content-Type, and the value of one small field (the
 * `model` of an audio or image upload). The body itself is forwarded byte
 * for byte. */
#ifndef SLUICE_MULTIPART_H
#define SLUICE_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/util.h"

#define MP_BOUNDARY_MAX 70 /* RFC 2046 */

/* Whether a Content-Type is multipart/form-data. */
bool mp_is_form(struct sl_str content_type);
/* The boundary parameter (quoted or not) into out (MP_BOUNDARY_MAX + 1). */
bool mp_boundary(struct sl_str content_type, char *out, size_t *len);

enum mp_found { MP_MALFORMED = -1, MP_ABSENT = 0, MP_FOUND = 1, MP_REPEATED = 2 };

struct mp_part {
    struct sl_str name;     /* Content-Disposition's name (p NULL if none) */
    struct sl_str filename; /* and its filename, if has_filename */
    struct sl_str content;
    bool has_filename;
};
/* Calls each() for every part in order until it returns false (MP_FOUND);
 * MP_ABSENT after the last part, MP_MALFORMED if the body is not multipart
 * with that boundary. Parts point into body. */
enum mp_found mp_each(const char *body, size_t len, const char *boundary, size_t blen,
                      bool (*each)(const struct mp_part *part, void *arg), void *arg);
/* The value of the one field named `name` (a part without a filename),
 * pointing into body. MP_REPEATED when two or more parts have that name
 * (parsers differ on which one they keep), MP_MALFORMED when the body is not
 * multipart with that boundary. */
enum mp_found mp_field(const char *body, size_t len, const char *boundary, size_t blen,
                       const char *name, struct sl_str *value);

#endif
