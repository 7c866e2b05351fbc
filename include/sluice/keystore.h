/* Where runtime keys (keys.h) live and how a node finds them: without
 * [redis], one file per key in state_dir/keys (NAME.json), each written to a
 * new file, fsync'd and renamed into place, and an index of secrets' digests
 * (keys/.sha256/HEX names the key). A node reads a key on first use, not at
 * start, and caches it by digest; a digest that names no key is cached as
 * unknown, and reads for digests the cache does not know are bounded per
 * second, so a flood of made-up keys costs the store a bounded amount of
 * work and leaves the keys in use served. Every change made through this
 * process updates its cache at once. One store per process, shared by the
 * workers (a mutex). */
#ifndef SLUICE_KEYSTORE_H
#define SLUICE_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct rt_key;
struct keystore;

#define KEYSTORE_LOOKUPS_PER_S 1000 /* reads of digests the cache does not know, per node */
#define KEYSTORE_UNKNOWN_MAX 100000 /* unknown digests remembered */

/* Opens (making them, mode 0700) state_dir and its keys folder; NULL with
 * the reason in err. dir NULL: a store that keeps nothing (runtime keys are
 * off; keystore_on says so). */
struct keystore *keystore_open(const char *dir, char *err, size_t errlen);
void keystore_close(struct keystore *ks);
bool keystore_on(const struct keystore *ks);
const char *keystore_dir(const struct keystore *ks);

enum ks_found {
    KS_FOUND,   /* *out is the key, referenced */
    KS_UNKNOWN, /* no runtime key has this secret (or its rotation grace is over) */
    KS_BUSY,    /* not in the cache, and this second's reads are used up */
};
/* The runtime key whose secret (or previous secret, within its grace) has
 * this digest, built against cfg. */
enum ks_found keystore_lookup(struct keystore *ks, const struct config *cfg,
                              const uint8_t digest[32], struct rt_key **out);

/* Reads of the store for digests a cache did not know, since start, by
 * what they found: out[KS_FOUND], out[KS_UNKNOWN], out[KS_BUSY] (not read). */
void keystore_reads(unsigned long long out[3]);

enum ks_result { KS_OK, KS_EXISTS, KS_MISSING, KS_IO };
/* By name, referenced into *out. */
enum ks_result keystore_get(struct keystore *ks, const struct config *cfg, const char *name,
                            struct rt_key **out);
/* Writes k as a new key (KS_EXISTS if the name is taken). */
enum ks_result keystore_create(struct keystore *ks, struct rt_key *k);
/* Writes k over prev (the record it was made from; KS_MISSING if gone). */
enum ks_result keystore_replace(struct keystore *ks, const struct rt_key *prev, struct rt_key *k);
enum ks_result keystore_delete(struct keystore *ks, const struct rt_key *k);
/* Up to max runtime key names after `after` ("" = from the start), in
 * strcmp order, into names (each freed by the caller); the count, or -1. */
int keystore_names(struct keystore *ks, const char *after, int max, char ***names);
/* How many runtime keys there are. */
long keystore_count(struct keystore *ks);

/* A key (runtime or from the file) was used now: remembered at most once a
 * minute per name, and kept in state_dir. */
void keystore_used(struct keystore *ks, const char *name, int64_t now_s);
/* When it was last used (seconds), or 0. */
int64_t keystore_last_used(struct keystore *ks, const char *name);

#endif
