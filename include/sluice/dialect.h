/* Which backends can serve a call, by the API dialect each speaks: an
 * anthropic backend speaks the Messages API, the others OpenAI's; chat
 * completions and the Messages API reach the other kind through
 * translation (xlate.h), every other endpoint only its own. A call that
 * may need translation is translated once, before admission, so that a
 * part that cannot be is refused by name up front. */
#ifndef SLUICE_DIALECT_H
#define SLUICE_DIALECT_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/api_call.h"
#include "sluice/util.h"
#include "sluice/xlate.h"

struct cfg_backend;
struct config;

/* How a call reaches this backend: as it is (XL_NONE), translated (the
 * direction), or not at all (-1). */
int dl_route(const struct cfg_backend *be, enum api_endpoint e);
/* Whether some backend serving the (upstream) model takes the call:
 * natively, or (translated) through translation. */
bool dl_serves(const struct config *cfg, enum api_endpoint e, const char *model, size_t len,
               bool translated);
/* The call in the other dialect into out, when a backend of that dialect
 * serves its model or a fallback of it; nothing when none does or the call
 * is not one that translates. 0; or ERR_BAD_REQUEST (msg, *param) when it
 * cannot be translated and no backend of its own dialect serves it (if one
 * does, out stays empty and the call goes only there). */
int dl_prepare(const struct config *cfg, const struct api_call *call, struct sl_str body,
               struct sl_buf *out, char *msg, size_t msglen, const char **param);

#endif
