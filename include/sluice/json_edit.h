/* Textual edits of a JSON object, so a forwarded body keeps every byte the
 * client sent except the member sluice must change (no re-serialisation). */
#ifndef SLUICE_JSON_EDIT_H
#define SLUICE_JSON_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/util.h"

/* The index of the first byte at or after i that is not JSON whitespace. */
size_t json_skip_ws(const char *s, size_t i, size_t len);

/* Writes into out the object text with top-level member `name` set to the
 * JSON text `value`: every occurrence of the member is replaced, or the
 * member is inserted first if absent. The input must be a valid JSON object
 * (already parsed once). False if it is not an object. */
bool json_set_member(const char *json, size_t len, const char *name, const char *value,
                     struct sl_buf *out);

#endif
