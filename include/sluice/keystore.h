/* Where runtime keys (keys.h) live and how a node finds them.
 *
 * With [redis], in Redis, so every node sees a change: a record per key
 * (sluice:{rk}:n:NAME), a copy under each of its secrets' digests
 * (sluice:{rk}:d:HEX; the previous secret's expires with its rotation
 * grace), a sorted set of names, and a change log (a stream). Every change
 * is one script call, all of it or nothing, and is published on a channel:
 * each node forgets the digests a message names at once, and reads the
 * change log every KEYSTORE_POLL_MS for anything a message it missed said. Without [redis], in
 * state_dir: one file per key (keys/NAME.json) and an index of digests
 * (keys/.sha256/HEX), each written to a new file, fsync'd and renamed.
 *
 * A node reads a key on first use, not at start, and caches it by digest; a
 * digest that names no key is cached as unknown, and reads for digests the
 * cache does not know are bounded per second, so a flood of made-up keys
 * costs the store a bounded amount of work and leaves the keys in use
 * served. One store per process, shared by the workers (a mutex); the Redis
 * calls go through the calling worker's limiter connection (limit.h). */
#ifndef SLUICE_KEYSTORE_H
#define SLUICE_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct rt_key;
struct keystore;
struct limiter;
struct event_base;

#define KEYSTORE_LOOKUPS_PER_S 1000 /* reads of digests the cache does not know, per node */
#define KEYSTORE_UNKNOWN_MAX 100000 /* unknown digests remembered */
#define KEYSTORE_POLL_MS 250        /* how often a node reads the change log (Redis) */

/* Opens (making them, mode 0700) state_dir and its keys folder; NULL with
 * the reason in err. dir NULL: no state_dir (runtime keys only with Redis). */
struct keystore *keystore_open(const char *dir, char *err, size_t errlen);
void keystore_close(struct keystore *ks);
/* Whether runtime keys can be kept: in Redis (l has a shared limiter), or in
 * state_dir. l may be NULL. */
bool keystore_on(const struct keystore *ks, const struct limiter *l);
const char *keystore_dir(const struct keystore *ks);
/* On this loop (one worker's): subscribes to Redis's change channel
 * through l (a connection of its own), forgetting what each message names
 * at once, and reads the change log every KEYSTORE_POLL_MS through l, so a
 * message lost (a reconnect) is made up for within that. */
void keystore_watch(struct keystore *ks, struct event_base *base, struct limiter *l);
/* l's Redis was made again (a reload changed [redis]): subscribes anew,
 * if l is the limiter ks watches through. */
void keystore_rewatch(struct keystore *ks, struct limiter *l);
void keystore_unwatch(struct keystore *ks);

enum ks_found {
    KS_FOUND,   /* the key, referenced */
    KS_UNKNOWN, /* no runtime key has this secret (or its rotation grace is over) */
    KS_BUSY,    /* not in the cache, and this second's reads are used up */
    KS_DOWN,    /* not in the cache, and the store cannot be read (Redis down) */
    KS_PENDING, /* only Redis can tell: keystore_fetch */
};
/* The runtime key whose secret (or previous secret, within its grace) has
 * this digest, built against cfg: from the cache or state_dir (*out
 * referenced for KS_FOUND), or KS_PENDING: ask Redis with keystore_fetch
 * (the read is counted already). */
enum ks_found keystore_find(struct keystore *ks, struct limiter *l, const struct config *cfg,
                            const uint8_t digest[32], struct rt_key **out);
typedef void (*ks_found_cb)(enum ks_found f, struct rt_key *k, void *arg);
/* Asks Redis, after KS_PENDING: cb gets KS_FOUND (k referenced), KS_UNKNOWN
 * or KS_DOWN, and the cache learns the answer. */
void keystore_fetch(struct keystore *ks, struct limiter *l, const struct config *cfg,
                    const uint8_t digest[32], ks_found_cb cb, void *arg);

/* keystore_fetch for a request that waits meanwhile (its owner and
 * on_abort are taken): cb runs with it if the client is still there (owner
 * and on_abort cleared again), else the key is let go. False when the
 * answer came before this returned (Redis down): cb has run. */
struct http_req;
typedef void (*ks_req_cb)(enum ks_found f, struct rt_key *k, struct http_req *req, void *arg);
bool keystore_fetch_for(struct keystore *ks, struct limiter *l, const struct config *cfg,
                        const uint8_t digest[32], struct http_req *req, ks_req_cb cb, void *arg);

enum ks_result { KS_OK, KS_EXISTS, KS_MISSING, KS_IO };
typedef void (*ks_done_cb)(enum ks_result r, void *arg);
/* Writes k as a new key (KS_EXISTS if the name is taken); over the record
 * named k's name (KS_MISSING if gone); or removes it. done runs once it is
 * written everywhere (at once for state_dir); KS_IO: nothing was written. */
void keystore_create(struct keystore *ks, struct limiter *l, struct rt_key *k, ks_done_cb done,
                     void *arg);
void keystore_replace(struct keystore *ks, struct limiter *l, struct rt_key *k, ks_done_cb done,
                      void *arg);
void keystore_delete(struct keystore *ks, struct limiter *l, const struct rt_key *k,
                     ks_done_cb done, void *arg);

/* A key by name: its record (NULL if there is no runtime key of that name;
 * referenced) and when the name was last used (0: unknown), or r = KS_IO. */
typedef void (*ks_get_cb)(enum ks_result r, struct rt_key *k, int64_t last_used, void *arg);
void keystore_get(struct keystore *ks, struct limiter *l, const struct config *cfg,
                  const char *name, ks_get_cb cb, void *arg);
/* Up to max runtime keys named after `after` ("" = from the start), in
 * strcmp order: n records (each referenced, the array freed by the
 * caller), or n = -1 when the store cannot be read. */
typedef void (*ks_page_cb)(int n, struct rt_key **keys, void *arg);
void keystore_page(struct keystore *ks, struct limiter *l, const struct config *cfg,
                   const char *after, int max, ks_page_cb cb, void *arg);
/* How many runtime keys there are (state_dir: counted; Redis: as the last
 * change-log read saw it). */
long keystore_count(struct keystore *ks);
/* Whether state_dir's records have been counted since the start (a thread
 * of its own does it, so a million keys do not hold up the start). */
bool keystore_counted(struct keystore *ks);
/* Reads of the store for digests a cache did not know, since start, by
 * what they found: out[KS_FOUND], out[KS_UNKNOWN], out[KS_BUSY] (not read),
 * out[KS_DOWN] (could not be read). */
void keystore_reads(unsigned long long out[4]);

/* A key (runtime or from the file) was used at now_s: written at most once
 * a minute per name (the caller's own check, proxy.c). */
void keystore_used(struct keystore *ks, struct limiter *l, const char *name, int64_t now_s);

#endif
