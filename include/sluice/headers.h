/* Which headers cross the gateway: the client's that go upstream (an
 * allow-list, extendable per backend, with a list no configuration can
 * open), the upstream's that reach the client, and the scrubbing of a
 * backend's credential from whatever an upstream sends back. */
#ifndef SLUICE_HEADERS_H
#define SLUICE_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/util.h"

/* Whether a client header goes upstream: on sluice's allow-list or the
 * backend's forward_headers (extra[0..nextra), may be empty), and not
 * never-forwarded. Names match case-insensitively; a trailing '*' in a list
 * matches a prefix. */
bool hdr_forwarded(struct sl_str name, char *const *extra, int nextra);
/* Client headers no configuration forwards: credentials, the upstream account
 * (OpenAI-Organization, OpenAI-Project), cookies, proxy trails (Forwarded,
 * X-Forwarded-*), and what sluice sets itself (framing, encodings, hop-by-hop). */
bool hdr_never_forwarded(struct sl_str name);
/* Upstream response headers that do not reach the client as they are. */
bool hdr_not_relayed(struct sl_str name);

/* The allow-list's names (prefixes without their '*'), for tests. */
void hdr_allow_list(const char *const **names, size_t *n);

/* Credentials shorter than this are not scrubbed (they would match ordinary text). */
#define HDR_MIN_SECRET 8
/* Overwrites every occurrence of secret in p[0..len) with '*'; true if any. */
bool hdr_scrub(char *p, size_t len, const char *secret, size_t secret_len);

#endif
