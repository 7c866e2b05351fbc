/* The end user behind a request of an API key (trust_user): from the
 * x-sluice-user header, or from the body (safety_identifier, user, or the
 * Messages API's metadata.user_id), bounded in length and characters so it
 * can go into logs and limiter key names as it is. */
#ifndef SLUICE_ENDUSER_H
#define SLUICE_ENDUSER_H

#include <stdbool.h>
#include <stddef.h>

struct api_call;
struct cfg_key;
struct http_req;

#define EU_MAX 128 /* bytes of a user id */

/* Whether p[0..len) is a user id: 1 to EU_MAX of letters, digits and . _ - @ : + | = / */
bool eu_valid(const char *p, size_t len);

/* The request's end user into out ("" when none). 0; or ERR_BAD_REQUEST
 * (msg, *param) for an id that is too long or has other characters than
 * letters, digits and . _ - @ : + | = /, or for none when the key has
 * require_user. */
int eu_find(const struct cfg_key *key, const struct http_req *req, const struct api_call *call,
            char out[EU_MAX + 1], char *msg, size_t msglen, const char **param);

#endif
