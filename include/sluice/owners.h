/* Stored resources belong to the key that created them through sluice, or to
 * its team with share_resources (docs/http.md "Stored resources"): who asks,
 * which ids a call names (its path and the body's references), the records
 * an answer makes or removes, and a list answer cut to the caller's own. The
 * records live where the limits live (limit.h: lim_owners, lim_own). */
#ifndef SLUICE_OWNERS_H
#define SLUICE_OWNERS_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/api_call.h"
#include "sluice/config.h"

struct limiter;
struct evbuffer;

#define OWNER_MAX (CFG_NAME_MAX + 3) /* "k:NAME" or "t:NAME" */
#define OWNERS_REFS 8                /* ids one call may name */

/* The owner a call's creations get and its lookups must find: "t:TEAM" for a
 * key of a team with share_resources, else "k:KEY". */
void owners_identity(const struct cfg_key *k, char out[OWNER_MAX]);

/* The ids a call names: the resource of its path, and the references of a
 * JSON body's top level (previous_response_id, conversation, input_file_id,
 * file_id, training_file, validation_file, assistant_id). Point into res or
 * the call's tree. */
int owners_refs(const struct api_call *call, const struct api_resource *res,
                const char *ids[OWNERS_REFS]);

/* After a successful (2xx) answer of JSON body: the ids it created become
 * the caller's (a creation's `id`, an upload's `file.id`, a fine-tuning
 * job's `fine_tuned_model`, a run's `thread_id`, a stored response or chat
 * completion's `id`, kept 30 days as upstream keeps them); a DELETE's id
 * loses its record. True if it writes records: done(arg) then runs once
 * they are written (or failed, logged), so the client learns an id only
 * when every node can find its owner. False: nothing to write, done is not
 * called. */
bool owners_after(struct limiter *l, const struct api_call *call, const struct api_resource *res,
                  const char *me, const char *body, size_t len, void (*done)(void *arg), void *arg);

/* A streamed answer's event: a stored response's (or chat completion's) id
 * in its first event becomes the caller's. True once nothing more is to be
 * looked for in the stream. */
bool owners_stream_event(struct limiter *l, const struct api_call *call, const char *me,
                         const char *data, size_t len);

/* Whether the call's answer is a list to cut to the caller's own. */
bool owners_is_list(const struct api_resource *res);
/* A list answer's item ids (at most LIM_OWNERS_MAX); *root keeps them (cJSON_Delete it). */
int owners_list_ids(const char *body, size_t len, struct cJSON **root, const char **ids);
/* The list without the items whose owner is not me, written over body. */
void owners_cut_list(struct cJSON *root, const char *const *owners, int n, const char *me,
                     struct evbuffer *body);

#endif
