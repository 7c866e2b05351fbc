/* /admin/keys: runtime keys (keys.h) made, listed, changed, rotated and
 * revoked through the admin API, and who may do it: the operator's
 * [server] admin_key any key, a [team] admin_key only its team's runtime
 * keys and never beyond the team's own limits. Each change is one record in
 * [server] audit_log and one log line, and never shows a secret but the one
 * a create or rotate answers with, once. */
#ifndef SLUICE_ADMIN_KEYS_H
#define SLUICE_ADMIN_KEYS_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/util.h"

struct worker;
struct http_req;
struct sl_buf;
struct config;
struct cfg_key;
struct cfg_team;
struct rt_key;

/* Who an admin request comes from. */
struct admin_who {
    const struct cfg_team *team; /* a team's admin_key; NULL: the operator's */
    char id[80];                 /* "admin" or "team:NAME", for the log and the audit */
};

/* The admin key presented: false if it is neither [server] admin_key nor a
 * [team] admin_key (compared in constant time). */
bool admin_identify(const struct config *cfg, const struct http_req *req, struct admin_who *who);

/* POST /admin/keys (make one) and GET /admin/keys (a page of them). */
void admin_keys_collection(struct worker *w, struct http_req *req, const struct admin_who *who);
/* PATCH and DELETE /admin/keys/NAME, POST /admin/keys/NAME/rotate. */
void admin_keys_change(struct worker *w, struct http_req *req, const struct admin_who *who,
                       struct sl_str name, struct sl_str action);

struct generation;
/* Where GET /admin/keys/NAME's key goes once found (admin.c): the key (the
 * file's, or a runtime key's record rt), when it was last used, and the
 * request to answer; gen holds k for the call. */
typedef void (*admin_key_view_fn)(struct worker *w, struct http_req *req, struct generation *gen,
                                  const struct cfg_key *k, struct rt_key *rt, int64_t last_used);
/* GET /admin/keys/NAME: the key found as `who` may see it (404 if there is
 * none, or it is another team's; 503 if the store cannot be read), then view. */
void admin_keys_get(struct worker *w, struct http_req *req, const struct admin_who *who,
                    struct sl_str name, admin_key_view_fn view);
/* A key's admin view, members each followed by a comma: "name", "source"
 * (config or runtime), its settings, what a runtime key has more, and
 * "last_used_at". */
void admin_keys_view(const struct cfg_key *k, const struct rt_key *rt, int64_t last_used,
                     struct sl_buf *out);

#endif
