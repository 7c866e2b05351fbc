/* Runtime keys in Redis or state_dir, and the node's cache of them by digest. */
#include "sluice/keystore.h"

#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/http.h"
#include "sluice/keys.h"
#include "sluice/limit.h"
#include "sluice/log.h"
#include "sluice/util.h"

#define MAX_RECORD (64 * 1024)
#define PREFIX "sluice:{rk}:" /* one hash tag: every runtime-key record in one Cluster slot */
#define CHANNEL PREFIX "changes" /* each change published: the digests it touched */

struct entry {
    uint8_t digest[32];
    struct rt_key *key; /* NULL: no key has this digest (or stale) */
    bool stale;         /* a key had it until a change: read again, ahead of unknown secrets */
    struct entry *next;
};

struct keystore {
    char *dir;
    int keys_fd, index_fd, used_fd; /* state_dir/keys, keys/.sha256, keys/.used */
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets, nentries, nunknown;
    int64_t second; /* the second reads were last counted in */
    int reads;      /* reads of unknown digests in it */
    unsigned tmp_seq;
    atomic_long count;  /* runtime keys (keystore_count) */
    atomic_bool counted; /* state_dir: the start-up count is in (changes adjust it after) */
    pthread_t counter; /* counts state_dir's records at start */
    bool counting;
    /* the change log's reader (Redis) */
    struct event *poll_ev;
    struct limiter *poll_l;
    char last_id[48]; /* "" until the first read */
    char epoch[48];   /* Redis's runtime-key epoch: new when its data is */
    char my_epoch[33]; /* what this read proposes if Redis has none */
    bool closing;
    bool polling;
};

static atomic_ullong reads_total[4]; /* by enum ks_found */

void keystore_reads(unsigned long long out[4])
{
    for (int i = 0; i < 4; i++)
        out[i] = atomic_load(&reads_total[i]);
}

bool keystore_counted(struct keystore *ks)
{
    return ks && atomic_load(&ks->counted);
}

long keystore_count(struct keystore *ks)
{
    return ks ? atomic_load(&ks->count) : 0;
}

static bool redis_store(const struct limiter *l)
{
    return l && lim_shared_configured(l);
}

/* ---- state_dir ---------------------------------------------------------------- */

static int open_dir(int at, const char *name, char *err, size_t errlen)
{
    if (mkdirat(at, name, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot make %s: %s", name, strerror(errno));
        return -1;
    }
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        snprintf(err, errlen, "cannot open %s: %s", name, strerror(errno));
    return fd;
}

static bool is_record(const char *f, size_t *namelen)
{
    size_t n = strlen(f);
    if (n <= 5 || f[0] == '.' || strcmp(f + n - 5, ".json") != 0)
        return false;
    *namelen = n - 5;
    return true;
}

/* The record names in state_dir after `after`, sorted; their count (names freed by the caller). */
static int dir_names(struct keystore *ks, const char *after, char ***out)
{
    *out = NULL;
    int dup_fd = dup(ks->keys_fd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        if (dup_fd >= 0)
            close(dup_fd);
        return -1;
    }
    rewinddir(d);
    char **all = NULL;
    int n = 0, cap = 0;
    size_t len;
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_record(e->d_name, &len) || len > CFG_NAME_MAX)
            continue;
        char *name = sl_strndup(e->d_name, len);
        if (strcmp(name, after) <= 0) {
            free(name);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            all = sl_realloc(all, sizeof(*all) * (size_t)cap);
        }
        all[n++] = name;
    }
    closedir(d);
    *out = all;
    return n;
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* How many records state_dir holds, added to the count (a thread of its own). */
static void *count_records(void *arg)
{
    struct keystore *ks = arg;
    int fd = openat(ks->keys_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    long n = 0;
    size_t len;
    for (struct dirent *e; d && (e = readdir(d));)
        n += is_record(e->d_name, &len);
    if (d)
        closedir(d);
    else if (fd >= 0)
        close(fd);
    atomic_store(&ks->count, n); /* changes made meanwhile are in n or not: a gauge */
    atomic_store(&ks->counted, true);
    return NULL;
}

struct keystore *keystore_open(const char *dir, char *err, size_t errlen)
{
    struct keystore *ks = sl_calloc(1, sizeof(*ks));
    ks->keys_fd = ks->index_fd = ks->used_fd = -1;
    pthread_mutex_init(&ks->lock, NULL);
    ks->nbuckets = 1024;
    ks->buckets = sl_calloc(ks->nbuckets, sizeof(*ks->buckets));
    if (!dir)
        return ks;
    ks->dir = sl_strdup(dir);
    char sub[600];
    int root = open_dir(AT_FDCWD, dir, err, errlen);
    if (root >= 0) {
        ks->keys_fd = open_dir(root, "keys", sub, sizeof(sub));
        close(root);
    }
    if (ks->keys_fd >= 0)
        ks->index_fd = open_dir(ks->keys_fd, ".sha256", sub, sizeof(sub));
    if (ks->index_fd >= 0)
        ks->used_fd = open_dir(ks->keys_fd, ".used", sub, sizeof(sub));
    if (root >= 0 && ks->used_fd < 0)
        snprintf(err, errlen, "%s/keys: %s", dir, sub);
    if (ks->used_fd < 0) {
        keystore_close(ks);
        return NULL;
    }
    /* counted aside: a million keys' folder does not hold up the start */
    ks->counting = pthread_create(&ks->counter, NULL, count_records, ks) == 0;
    return ks;
}

static void drop_entries(struct keystore *ks)
{
    for (size_t b = 0; b < ks->nbuckets; b++) {
        for (struct entry *e = ks->buckets[b], *next; e; e = next) {
            next = e->next;
            keys_unref(e->key);
            free(e);
        }
        ks->buckets[b] = NULL;
    }
    ks->nentries = ks->nunknown = 0;
}

void keystore_close(struct keystore *ks)
{
    if (!ks)
        return;
    if (ks->counting)
        pthread_join(ks->counter, NULL);
    keystore_unwatch(ks);
    drop_entries(ks);
    free(ks->buckets);
    for (int *fd = &ks->keys_fd; fd <= &ks->used_fd; fd++)
        if (*fd >= 0)
            close(*fd);
    pthread_mutex_destroy(&ks->lock);
    free(ks->dir);
    free(ks);
}

bool keystore_on(const struct keystore *ks, const struct limiter *l)
{
    return redis_store(l) || (ks && ks->keys_fd >= 0);
}

const char *keystore_dir(const struct keystore *ks)
{
    return ks ? ks->dir : NULL;
}

/* Writes data to dir/name through a new file: written, fsync'd (when sync),
 * renamed over name, and the folder fsync'd. */
static bool write_atomic(struct keystore *ks, int dir, const char *name, const char *data,
                         size_t len, bool sync)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ".tmp.%ld.%u", (long)getpid(), ks->tmp_seq++);
    int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return false;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    bool ok = off == len && (!sync || fsync(fd) == 0);
    ok = close(fd) == 0 && ok;
    if (ok && renameat(dir, tmp, dir, name) != 0)
        ok = false;
    if (!ok) {
        unlinkat(dir, tmp, 0);
        return false;
    }
    return !sync || fsync(dir) == 0;
}

/* dir/name's bytes (at most max - 1, NUL-terminated) into buf; its length, or -1. */
static ssize_t read_file(int dir, const char *name, char *buf, size_t max)
{
    int fd = openat(dir, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    size_t off = 0;
    for (ssize_t n; off < max - 1; off += (size_t)n) {
        n = read(fd, buf + off, max - 1 - off);
        if (n < 0 && errno == EINTR) {
            n = 0;
            continue;
        }
        if (n <= 0)
            break;
    }
    close(fd);
    buf[off] = '\0';
    return (ssize_t)off;
}

static void record_file(const char *name, char out[CFG_NAME_MAX + 8])
{
    snprintf(out, CFG_NAME_MAX + 8, "%s.json", name);
}

/* A record's text read back into a key against cfg; NULL (logged) if it no
 * longer holds, or names another key than `name` (NULL: any). */
static struct rt_key *parse_record(const struct config *cfg, const char *text, size_t len,
                                   const char *name, const char *where)
{
    char msg[256];
    struct rt_key *k = keys_record_parse(cfg, text, len, msg, sizeof(msg));
    if (!k) {
        log_warn("a runtime key in %s cannot be used: %s", where, msg);
        return NULL;
    }
    if (name && strcmp(k->k.name, name) != 0) {
        log_warn("the runtime key record of %s in %s names key %s: not used", name, where,
                 k->k.name);
        keys_unref(k);
        return NULL;
    }
    return k;
}

/* The record of name from disk, built against cfg; NULL if none. */
static struct rt_key *read_record(struct keystore *ks, const struct config *cfg, const char *name)
{
    char file[CFG_NAME_MAX + 8];
    char *buf = sl_malloc(MAX_RECORD);
    record_file(name, file);
    ssize_t n = read_file(ks->keys_fd, file, buf, MAX_RECORD);
    struct rt_key *k = n > 0 ? parse_record(cfg, buf, (size_t)n, name, ks->dir) : NULL;
    free(buf);
    return k;
}

/* ---- the cache ----------------------------------------------------------------- */

static struct entry **slot(struct keystore *ks, const uint8_t digest[32])
{
    uint64_t h;
    memcpy(&h, digest, sizeof(h));
    struct entry **at = &ks->buckets[h % ks->nbuckets];
    while (*at && CRYPTO_memcmp((*at)->digest, digest, 32) != 0)
        at = &(*at)->next;
    return at;
}

static void grow(struct keystore *ks)
{
    size_t n = ks->nbuckets * 2;
    struct entry **b = sl_calloc(n, sizeof(*b));
    for (size_t i = 0; i < ks->nbuckets; i++) {
        for (struct entry *e = ks->buckets[i], *next; e; e = next) {
            next = e->next;
            uint64_t h;
            memcpy(&h, e->digest, sizeof(h));
            e->next = b[h % n];
            b[h % n] = e;
        }
    }
    free(ks->buckets);
    ks->buckets = b;
    ks->nbuckets = n;
}

static bool unknown(const struct entry *e)
{
    return !e->key && !e->stale;
}

static void forget_unknown(struct keystore *ks)
{
    for (size_t b = 0; b < ks->nbuckets; b++) {
        for (struct entry **at = &ks->buckets[b]; *at;) {
            struct entry *e = *at;
            if (!unknown(e)) {
                at = &e->next;
                continue;
            }
            *at = e->next;
            free(e);
            ks->nentries--;
        }
    }
    ks->nunknown = 0;
}

/* Caches digest -> key (a reference taken; NULL: unknown). Under the lock. */
static void remember(struct keystore *ks, const uint8_t digest[32], struct rt_key *key)
{
    if (!key && ks->nunknown >= KEYSTORE_UNKNOWN_MAX)
        forget_unknown(ks);
    if (ks->nentries >= ks->nbuckets * 2)
        grow(ks);
    struct entry **at = slot(ks, digest);
    if (*at) {
        ks->nunknown -= unknown(*at);
        keys_unref((*at)->key);
        (*at)->stale = false;
    } else {
        *at = sl_calloc(1, sizeof(**at));
        memcpy((*at)->digest, digest, 32);
        ks->nentries++;
    }
    (*at)->key = key ? keys_ref(key) : NULL;
    ks->nunknown += !key;
}

/* A change touched digest: read it again at its next use. A key it opened
 * stays known as one (stale), so its next read does not wait behind a
 * flood of unknown secrets; a digest cached as unknown is just dropped. */
static void forget(struct keystore *ks, const uint8_t digest[32])
{
    struct entry **at = slot(ks, digest);
    struct entry *e = *at;
    if (!e)
        return;
    if (e->key) {
        keys_unref(e->key);
        e->key = NULL;
        e->stale = true;
        return;
    }
    if (e->stale)
        return;
    *at = e->next;
    ks->nunknown--;
    free(e);
    ks->nentries--;
}

static void forget_key(struct keystore *ks, const struct rt_key *k)
{
    forget(ks, k->k.digest);
    if (k->old_until)
        forget(ks, k->old_digest);
}

/* Whether digest opens k now: its secret, or its previous one in the grace. */
static bool opens(const struct rt_key *k, const uint8_t digest[32], int64_t now_s)
{
    if (CRYPTO_memcmp(k->k.digest, digest, 32) == 0)
        return true;
    return k->old_until > now_s && CRYPTO_memcmp(k->old_digest, digest, 32) == 0;
}

/* A read of a digest the cache does not know, if this second has one left. */
static bool may_read(struct keystore *ks)
{
    int64_t now = sl_now_ms() / 1000;
    if (now != ks->second) {
        ks->second = now;
        ks->reads = 0;
    }
    return ks->reads++ < KEYSTORE_LOOKUPS_PER_S;
}

/* k if it may serve under cfg (a runtime key never shadows a file key), else NULL (k released). */
static struct rt_key *usable(const struct config *cfg, struct rt_key *k)
{
    if (k && cfg_find_key(cfg, k->k.name)) {
        log_warn("runtime key %s has the name of a key in the file: not used", k->k.name);
        keys_unref(k);
        return NULL;
    }
    return k;
}

/* What the cache (or state_dir) says of digest, under the lock: KS_FOUND
 * with *out referenced, KS_UNKNOWN, or KS_PENDING when only Redis can tell
 * (or KS_BUSY when it may not be asked this second). */
static enum ks_found from_cache(struct keystore *ks, bool redis, const struct config *cfg,
                                const uint8_t digest[32], int64_t now_s, struct rt_key **out)
{
    struct entry *e = *slot(ks, digest);
    struct rt_key *k = e ? e->key : NULL;
    if (!e || e->stale) {
        if (!e && !may_read(ks)) {
            atomic_fetch_add(&reads_total[KS_BUSY], 1);
            return KS_BUSY;
        }
        if (redis)
            return KS_PENDING;
        char file[65], name[CFG_NAME_MAX + 2];
        sl_hex(digest, 32, file);
        k = read_file(ks->index_fd, file, name, sizeof(name)) > 0 && cfg_name_valid(name)
                ? usable(cfg, read_record(ks, cfg, name))
                : NULL;
        atomic_fetch_add(&reads_total[k ? KS_FOUND : KS_UNKNOWN], 1);
        remember(ks, digest, k);
        keys_unref(k); /* the cache holds it */
    } else if (k && k->cfg != cfg) { /* reloaded: its team is looked up again */
        char msg[256];
        struct rt_key *again = keys_rebind(cfg, k, msg, sizeof(msg));
        if (!again)
            log_warn("runtime key %s cannot be used with this configuration: %s", k->k.name, msg);
        k = usable(cfg, again);
        remember(ks, digest, k);
        keys_unref(k);
    }
    if (!k || !opens(k, digest, now_s))
        return KS_UNKNOWN;
    *out = keys_ref(k);
    return KS_FOUND;
}

/* ---- Redis ------------------------------------------------------------------ */

struct find_call {
    struct keystore *ks;
    struct config *cfg; /* referenced */
    uint8_t digest[32];
    ks_found_cb cb;
    void *arg;
};

static void found_in_redis(bool ok, const struct redisReply *rep, void *arg)
{
    struct find_call *f = arg;
    struct keystore *ks = f->ks;
    enum ks_found result = KS_DOWN;
    struct rt_key *k = NULL;
    if (ok && (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_NIL)) {
        if (rep->type == REDIS_REPLY_STRING)
            k = usable(f->cfg, parse_record(f->cfg, rep->str, rep->len, NULL, "redis"));
        pthread_mutex_lock(&ks->lock);
        remember(ks, f->digest, k);
        pthread_mutex_unlock(&ks->lock);
        result = k && opens(k, f->digest, sl_wall_us() / 1000000) ? KS_FOUND : KS_UNKNOWN;
        atomic_fetch_add(&reads_total[k ? KS_FOUND : KS_UNKNOWN], 1);
    } else {
        atomic_fetch_add(&reads_total[KS_DOWN], 1);
    }
    if (result != KS_FOUND) {
        keys_unref(k);
        k = NULL;
    }
    f->cb(result, k, f->arg);
    cfg_unref(f->cfg);
    free(f);
}

static void digest_key(const uint8_t digest[32], char out[sizeof(PREFIX) + 2 + 64])
{
    char hex[65];
    sl_hex(digest, 32, hex);
    snprintf(out, sizeof(PREFIX) + 2 + 64, PREFIX "d:%s", hex);
}

enum ks_found keystore_find(struct keystore *ks, struct limiter *l, const struct config *cfg,
                            const uint8_t digest[32], struct rt_key **out)
{
    if (!keystore_on(ks, l))
        return KS_UNKNOWN;
    pthread_mutex_lock(&ks->lock);
    enum ks_found f = from_cache(ks, redis_store(l), cfg, digest, sl_wall_us() / 1000000, out);
    pthread_mutex_unlock(&ks->lock);
    return f;
}

void keystore_fetch(struct keystore *ks, struct limiter *l, const struct config *cfg,
                    const uint8_t digest[32], ks_found_cb cb, void *arg)
{
    struct find_call *c = sl_calloc(1, sizeof(*c));
    *c = (struct find_call){ ks, cfg_ref((struct config *)cfg), { 0 }, cb, arg };
    memcpy(c->digest, digest, 32);
    char key[sizeof(PREFIX) + 2 + 64];
    digest_key(digest, key);
    const char *argv[] = { "GET", key };
    lim_command(l, 2, argv, NULL, found_in_redis, c);
}

struct waiting {
    struct http_req *req; /* NULL once the client left */
    ks_req_cb cb;
    void *arg;
    bool in_call, answered;
};

static void waiting_abort(struct http_req *req)
{
    struct waiting *wt = req->owner;
    wt->req = NULL; /* the answer frees wt */
}

static void waited(enum ks_found f, struct rt_key *k, void *arg)
{
    struct waiting *wt = arg;
    struct http_req *req = wt->req;
    wt->answered = true;
    bool keep = wt->in_call; /* keystore_fetch_for frees it */
    if (req) {
        req->owner = NULL;
        req->on_abort = NULL;
        wt->cb(f, k, req, wt->arg);
    } else {
        keys_unref(k);
    }
    if (!keep)
        free(wt);
}

bool keystore_fetch_for(struct keystore *ks, struct limiter *l, const struct config *cfg,
                        const uint8_t digest[32], struct http_req *req, ks_req_cb cb, void *arg)
{
    struct waiting *wt = sl_malloc(sizeof(*wt));
    *wt = (struct waiting){ req, cb, arg, true, false };
    req->owner = wt;
    req->on_abort = waiting_abort;
    keystore_fetch(ks, l, cfg, digest, waited, wt);
    wt->in_call = false;
    bool later = !wt->answered;
    if (!later)
        free(wt);
    return later;
}

/* One script for every change: the record, a copy under each secret's
 * digest (the previous one expiring with its grace), the names, and a line
 * in the change log naming every digest touched, old and new: all of it in
 * one atomic call, or nothing. Returns 1, 0 (create: the name is taken) or
 * -1 (replace, delete: there is no such key). */
static const char write_script[] =
    "local p, op, name = ARGV[1], ARGV[2], ARGV[3]\n"
    "local nkey = p .. 'n:' .. name\n"
    "local old = redis.call('GET', nkey)\n"
    "if op == 'create' and old then return 0 end\n"
    "if op ~= 'create' and not old then return -1 end\n"
    "local touched = {}\n"
    "if old then\n"
    "  local ok, r = pcall(cjson.decode, old)\n"
    "  if ok and type(r) == 'table' then\n"
    "    for _, f in ipairs({'sha256', 'old_sha256'}) do\n"
    "      if type(r[f]) == 'string' then\n"
    "        redis.call('DEL', p .. 'd:' .. r[f])\n"
    "        touched[#touched + 1] = r[f]\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if op == 'delete' then\n"
    "  redis.call('DEL', nkey, p .. 'used:' .. name)\n"
    "  redis.call('ZREM', p .. 'names', name)\n"
    "else\n"
    "  local rec = ARGV[4]\n"
    "  redis.call('SET', nkey, rec)\n"
    "  redis.call('SET', p .. 'd:' .. ARGV[5], rec)\n"
    "  touched[#touched + 1] = ARGV[5]\n"
    "  if ARGV[6] ~= '' then\n"
    "    redis.call('SET', p .. 'd:' .. ARGV[6], rec, 'PX', ARGV[7])\n"
    "    touched[#touched + 1] = ARGV[6]\n"
    "  end\n"
    "  redis.call('ZADD', p .. 'names', 0, name)\n"
    "end\n"
    "local list = table.concat(touched, ' ')\n"
    "redis.call('XADD', p .. 'log', 'MAXLEN', '~', 100000, '*', 'd', list)\n"
    "redis.call('PUBLISH', p .. 'changes', list)\n"
    "return 1\n";

struct write_call {
    struct keystore *ks;
    ks_done_cb done;
    void *arg;
    enum ks_result on_zero, on_minus; /* what 0 and -1 mean for this op */
};

static void written(bool ok, const struct redisReply *rep, void *arg)
{
    struct write_call *w = arg;
    enum ks_result r = KS_IO;
    if (ok && rep->type == REDIS_REPLY_INTEGER)
        r = rep->integer == 1 ? KS_OK : rep->integer == 0 ? w->on_zero : w->on_minus;
    w->done(r, w->arg);
    free(w);
}

/* The change as the write script's call. */
static void redis_write(struct keystore *ks, struct limiter *l, const char *op,
                        const struct rt_key *k, ks_done_cb done, void *arg)
{
    struct sl_buf rec = { 0 };
    char hex[65], old_hex[65] = "", ttl[24] = "0";
    sl_hex(k->k.digest, 32, hex);
    int64_t left_ms = k->old_until * 1000 - sl_wall_us() / 1000;
    if (k->old_until && left_ms > 0) {
        sl_hex(k->old_digest, 32, old_hex);
        snprintf(ttl, sizeof(ttl), "%lld", (long long)left_ms);
    }
    if (strcmp(op, "delete") != 0)
        keys_record_json(k, &rec);
    const char *argv[] = { "EVAL", write_script, "0", PREFIX, op, k->k.name,
                           rec.data ? rec.data : "", hex, old_hex, ttl };
    struct write_call *w = sl_calloc(1, sizeof(*w));
    *w = (struct write_call){ ks, done, arg, KS_EXISTS, KS_MISSING };
    lim_command(l, (int)SL_ARRAY_LEN(argv), argv, NULL, written, w);
    sl_buf_free(&rec);
}

/* The change log since the last read: the digests it names are forgotten;
 * with no last read (start, or after Redis was unreachable), or when the
 * last entry read is gone (trimmed, or Redis restarted without its data),
 * the whole cache is, and reading starts from the log's end. Also the count
 * of keys. */
static const char poll_script[] =
    "local p, last = ARGV[1], ARGV[2]\n"
    "local n = redis.call('ZCARD', p .. 'names')\n"
    "local epoch = redis.call('GET', p .. 'epoch')\n"
    "if not epoch then\n"
    "  epoch = ARGV[3]\n"
    "  redis.call('SET', p .. 'epoch', epoch)\n"
    "end\n"
    "if last == '' then\n"
    "  local top = redis.call('XREVRANGE', p .. 'log', '+', '-', 'COUNT', 1)\n"
    "  return {top[1] and top[1][1] or '0-0', {}, n, 1, epoch}\n"
    "end\n"
    "local function gt(a, b)\n"
    "  local am, as = a:match('(%d+)-(%d+)')\n"
    "  local bm, bs = b:match('(%d+)-(%d+)')\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am > bm or (am == bm and as > bs)\n"
    "end\n"
    "local first = redis.call('XRANGE', p .. 'log', '-', '+', 'COUNT', 1)\n"
    "local lost = (last ~= '0-0' and (not first[1] or gt(first[1][1], last))) and 1 or 0\n"
    "local entries = redis.call('XRANGE', p .. 'log', '(' .. last, '+', 'COUNT', 1000)\n"
    "local ds = {}\n"
    "for i, e in ipairs(entries) do ds[i] = e[2][2] end\n"
    "if #entries > 0 then last = entries[#entries][1] end\n"
    "return {last, ds, n, lost, epoch}\n";

static void forget_listed(struct keystore *ks, const char *list)
{
    for (const char *p = list; *p;) {
        while (*p == ' ')
            p++;
        uint8_t d[32];
        if (strlen(p) >= 64 && (p[64] == ' ' || !p[64])) {
            char hex[65];
            memcpy(hex, p, 64);
            hex[64] = '\0';
            if (sl_unhex(hex, d, 32))
                forget(ks, d);
            p += 64;
        } else {
            break;
        }
    }
}

static void poll_later(struct keystore *ks, int64_t ms)
{
    if (!ks->poll_ev)
        return; /* unwatched meanwhile */
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(ks->poll_ev, &tv);
}

static void polled(bool ok, const struct redisReply *rep, void *arg)
{
    struct keystore *ks = arg;
    ks->polling = false;
    bool shaped = ok && rep->type == REDIS_REPLY_ARRAY && rep->elements == 5 &&
                  rep->element[4]->type == REDIS_REPLY_STRING &&
                  rep->element[0]->type == REDIS_REPLY_STRING &&
                  rep->element[1]->type == REDIS_REPLY_ARRAY &&
                  rep->element[2]->type == REDIS_REPLY_INTEGER &&
                  rep->element[3]->type == REDIS_REPLY_INTEGER;
    if (!shaped) { /* unreachable: read again from the end once it answers, cache forgotten */
        if (ks->last_id[0])
            log_warn("runtime keys: Redis's change log cannot be read; keys in this node's cache "
                     "stay in use until it can");
        ks->last_id[0] = '\0';
        return poll_later(ks, KEYSTORE_POLL_MS);
    }
    const redisReply *list = rep->element[1];
    pthread_mutex_lock(&ks->lock);
    const char *epoch = rep->element[4]->str;
    /* first read, entries lost to trimming, or another Redis (or one that
     * lost its data: the epoch it keeps is new) */
    if (rep->element[3]->integer || strcmp(epoch, ks->epoch) != 0)
        drop_entries(ks);
    snprintf(ks->epoch, sizeof(ks->epoch), "%s", epoch);
    for (size_t i = 0; i < list->elements; i++)
        if (list->element[i]->type == REDIS_REPLY_STRING)
            forget_listed(ks, list->element[i]->str);
    snprintf(ks->last_id, sizeof(ks->last_id), "%s", rep->element[0]->str);
    pthread_mutex_unlock(&ks->lock);
    atomic_store(&ks->count, (long)rep->element[2]->integer);
    poll_later(ks, list->elements >= 1000 ? 0 : KEYSTORE_POLL_MS);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct keystore *ks = arg;
    if (!redis_store(ks->poll_l))
        return;
    ks->polling = true;
    /* a new value each time: what Redis keeps if it has none (start, or lost data) */
    uint8_t r[16] = { 0 };
    if (RAND_bytes(r, sizeof(r)) != 1) {
        int64_t now = sl_wall_us();
        memcpy(r, &now, sizeof(now));
    }
    sl_hex(r, 16, ks->my_epoch);
    const char *argv[] = { "EVAL", poll_script, "0", PREFIX, ks->last_id, ks->my_epoch };
    lim_command(ks->poll_l, 6, argv, NULL, polled, ks);
}

/* A message on the change channel: the digests to forget, at once. */
static void sub_message(bool ok, const redisReply *r, void *arg)
{
    struct keystore *ks = arg;
    if (!ok || !r || ks->closing || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return;
    pthread_mutex_lock(&ks->lock);
    forget_listed(ks, r->element[2]->str);
    pthread_mutex_unlock(&ks->lock);
}

void keystore_watch(struct keystore *ks, struct event_base *base, struct limiter *l)
{
    if (!ks || ks->poll_ev || !redis_store(l))
        return;
    ks->poll_l = l;
    ks->poll_ev = evtimer_new(base, poll_cb, ks);
    poll_later(ks, 0);
    /* the change log's reads cover what a lost connection missed */
    lim_subscribe(l, CHANNEL, sub_message, ks);
}

void keystore_rewatch(struct keystore *ks, struct limiter *l)
{
    if (ks && ks->poll_ev && ks->poll_l == l && redis_store(l))
        lim_subscribe(l, CHANNEL, sub_message, ks);
}

void keystore_unwatch(struct keystore *ks)
{
    if (!ks || !ks->poll_ev)
        return;
    ks->closing = true;
    event_free(ks->poll_ev);
    ks->poll_ev = NULL;
}

/* ---- changes --------------------------------------------------------------- */

static bool write_index(struct keystore *ks, const uint8_t digest[32], const char *name)
{
    char file[65];
    sl_hex(digest, 32, file);
    return write_atomic(ks, ks->index_fd, file, name, strlen(name), true);
}

static void remove_index(struct keystore *ks, const uint8_t digest[32])
{
    char file[65];
    sl_hex(digest, 32, file);
    unlinkat(ks->index_fd, file, 0);
}

/* The record and its index entries: the index first, so a record on disk
 * is always reachable by its secrets; an index entry left without its
 * record names no key. */
static enum ks_result write_key(struct keystore *ks, struct rt_key *k)
{
    struct sl_buf b = { 0 };
    keys_record_json(k, &b);
    sl_buf_appends(&b, "\n");
    char file[CFG_NAME_MAX + 8];
    record_file(k->k.name, file);
    bool ok = write_index(ks, k->k.digest, k->k.name) &&
              (!k->old_until || write_index(ks, k->old_digest, k->k.name)) &&
              write_atomic(ks, ks->keys_fd, file, b.data, b.len, true);
    sl_buf_free(&b);
    if (!ok)
        log_error("runtime key %s: cannot write %s/keys: %s", k->k.name, ks->dir, strerror(errno));
    return ok ? KS_OK : KS_IO;
}

static bool exists(struct keystore *ks, const char *name)
{
    char file[CFG_NAME_MAX + 8];
    struct stat st;
    record_file(name, file);
    return fstatat(ks->keys_fd, file, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* The record on disk now (what a replace or delete undoes), or NULL. */
static struct rt_key *on_disk(struct keystore *ks, const struct rt_key *k)
{
    return read_record(ks, k->cfg, k->k.name);
}

void keystore_create(struct keystore *ks, struct limiter *l, struct rt_key *k, ks_done_cb done,
                     void *arg)
{
    if (redis_store(l))
        return redis_write(ks, l, "create", k, done, arg);
    if (!keystore_on(ks, l))
        return done(KS_IO, arg);
    pthread_mutex_lock(&ks->lock);
    enum ks_result r = exists(ks, k->k.name) ? KS_EXISTS : write_key(ks, k);
    if (r == KS_OK) {
        if (atomic_load(&ks->counted))
            atomic_fetch_add(&ks->count, 1);
        forget_key(ks, k); /* it may have been cached as unknown */
    }
    pthread_mutex_unlock(&ks->lock);
    done(r, arg);
}

/* Removes from the index what prev had and k has not. */
static void drop_old_index(struct keystore *ks, const struct rt_key *prev, const struct rt_key *k)
{
    const uint8_t *had[2] = { prev->k.digest, prev->old_until ? prev->old_digest : NULL };
    for (int i = 0; i < 2; i++) {
        if (!had[i] || CRYPTO_memcmp(had[i], k->k.digest, 32) == 0 ||
            (k->old_until && CRYPTO_memcmp(had[i], k->old_digest, 32) == 0))
            continue;
        remove_index(ks, had[i]);
    }
}

void keystore_replace(struct keystore *ks, struct limiter *l, struct rt_key *k, ks_done_cb done,
                      void *arg)
{
    if (redis_store(l))
        return redis_write(ks, l, "replace", k, done, arg);
    if (!keystore_on(ks, l))
        return done(KS_IO, arg);
    pthread_mutex_lock(&ks->lock);
    struct rt_key *prev = on_disk(ks, k);
    enum ks_result r = !prev ? KS_MISSING : write_key(ks, k);
    if (r == KS_OK) {
        forget_key(ks, prev);
        forget_key(ks, k);
        drop_old_index(ks, prev, k);
    }
    pthread_mutex_unlock(&ks->lock);
    keys_unref(prev);
    done(r, arg);
}

void keystore_delete(struct keystore *ks, struct limiter *l, const struct rt_key *k,
                     ks_done_cb done, void *arg)
{
    if (redis_store(l))
        return redis_write(ks, l, "delete", k, done, arg);
    if (!keystore_on(ks, l))
        return done(KS_IO, arg);
    char file[CFG_NAME_MAX + 8];
    record_file(k->k.name, file);
    pthread_mutex_lock(&ks->lock);
    struct rt_key *prev = on_disk(ks, k);
    enum ks_result r = KS_OK;
    if (unlinkat(ks->keys_fd, file, 0) != 0)
        r = errno == ENOENT ? KS_MISSING : KS_IO;
    else if (fsync(ks->keys_fd) != 0)
        r = KS_IO;
    if (r != KS_IO) { /* the record is gone: what pointed at it goes too */
        if (r == KS_OK)
            if (atomic_load(&ks->counted))
                atomic_fetch_sub(&ks->count, 1);
        const struct rt_key *gone[2] = { k, prev };
        for (int i = 0; i < 2 && gone[i]; i++) {
            forget_key(ks, gone[i]);
            remove_index(ks, gone[i]->k.digest);
            if (gone[i]->old_until)
                remove_index(ks, gone[i]->old_digest);
        }
        unlinkat(ks->used_fd, k->k.name, 0);
    }
    pthread_mutex_unlock(&ks->lock);
    keys_unref(prev);
    done(r, arg);
}

/* ---- reading by name --------------------------------------------------------- */

struct get_call {
    struct config *cfg;
    char name[CFG_NAME_MAX + 1];
    ks_get_cb cb;
    void *arg;
};

static void got(bool ok, const struct redisReply *rep, void *arg)
{
    struct get_call *g = arg;
    if (!ok || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
        g->cb(KS_IO, NULL, 0, g->arg);
    } else {
        const redisReply *rec = rep->element[0], *used = rep->element[1];
        struct rt_key *k = rec->type == REDIS_REPLY_STRING && rec->len
                               ? parse_record(g->cfg, rec->str, rec->len, g->name, "redis")
                               : NULL;
        int64_t t = 0;
        if (used->type == REDIS_REPLY_STRING && !sl_parse_int(used->str, &t))
            t = 0;
        g->cb(KS_OK, k, t, g->arg);
    }
    cfg_unref(g->cfg);
    free(g);
}

static const char get_script[] = "local p, name = ARGV[1], ARGV[2]\n"
                                 "return {redis.call('GET', p .. 'n:' .. name) or '',\n"
                                 "        redis.call('GET', p .. 'used:' .. name) or ''}\n";

void keystore_get(struct keystore *ks, struct limiter *l, const struct config *cfg,
                  const char *name, ks_get_cb cb, void *arg)
{
    if (!cfg_name_valid(name))
        return cb(KS_OK, NULL, 0, arg);
    if (redis_store(l)) {
        struct get_call *g = sl_calloc(1, sizeof(*g));
        g->cfg = cfg_ref((struct config *)cfg);
        snprintf(g->name, sizeof(g->name), "%s", name);
        g->cb = cb;
        g->arg = arg;
        const char *argv[] = { "EVAL", get_script, "0", PREFIX, name };
        return lim_command(l, 5, argv, NULL, got, g);
    }
    if (!keystore_on(ks, l))
        return cb(KS_OK, NULL, 0, arg);
    pthread_mutex_lock(&ks->lock);
    struct rt_key *k = read_record(ks, cfg, name);
    char text[24];
    int64_t t = 0;
    if (read_file(ks->used_fd, name, text, sizeof(text)) <= 0 || !sl_parse_int(text, &t))
        t = 0;
    pthread_mutex_unlock(&ks->lock);
    cb(KS_OK, k, t, arg);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct page_call {
    struct config *cfg;
    ks_page_cb cb;
    void *arg;
};

static const char page_script[] =
    "local p, after, max = ARGV[1], ARGV[2], tonumber(ARGV[3])\n"
    "local from = after == '' and '-' or '(' .. after\n"
    "local names = redis.call('ZRANGEBYLEX', p .. 'names', from, '+', 'LIMIT', 0, max)\n"
    "local out = {}\n"
    "for i, n in ipairs(names) do out[i] = redis.call('GET', p .. 'n:' .. n) or '' end\n"
    "return out\n";

static void paged(bool ok, const struct redisReply *rep, void *arg)
{
    struct page_call *pc = arg;
    if (!ok || rep->type != REDIS_REPLY_ARRAY) {
        pc->cb(-1, NULL, pc->arg);
    } else {
        struct rt_key **keys = sl_calloc(rep->elements + 1, sizeof(*keys));
        int n = 0;
        for (size_t i = 0; i < rep->elements; i++) {
            const redisReply *e = rep->element[i];
            if (e->type == REDIS_REPLY_STRING && e->len)
                keys[n] = parse_record(pc->cfg, e->str, e->len, NULL, "redis");
            n += keys[n] != NULL;
        }
        pc->cb(n, keys, pc->arg);
    }
    cfg_unref(pc->cfg);
    free(pc);
}

void keystore_page(struct keystore *ks, struct limiter *l, const struct config *cfg,
                   const char *after, int max, ks_page_cb cb, void *arg)
{
    if (redis_store(l)) {
        struct page_call *pc = sl_calloc(1, sizeof(*pc));
        *pc = (struct page_call){ cfg_ref((struct config *)cfg), cb, arg };
        char n[24];
        snprintf(n, sizeof(n), "%d", max);
        const char *argv[] = { "EVAL", page_script, "0", PREFIX, after, n };
        return lim_command(l, 6, argv, NULL, paged, pc);
    }
    if (!keystore_on(ks, l))
        return cb(0, sl_calloc(1, sizeof(struct rt_key *)), arg);
    pthread_mutex_lock(&ks->lock);
    char **names;
    int n = dir_names(ks, after, &names);
    if (n < 0) {
        pthread_mutex_unlock(&ks->lock);
        return cb(-1, NULL, arg);
    }
    qsort(names, (size_t)n, sizeof(*names), by_name);
    struct rt_key **keys = sl_calloc((size_t)SL_MIN(n, max) + 1, sizeof(*keys));
    int got_n = 0;
    for (int i = 0; i < n && got_n < max; i++) {
        keys[got_n] = read_record(ks, cfg, names[i]);
        got_n += keys[got_n] != NULL;
    }
    pthread_mutex_unlock(&ks->lock);
    free_names(names, n);
    cb(got_n, keys, arg);
}

/* ---- last used --------------------------------------------------------------- */

static void ignore_reply(bool ok, const struct redisReply *rep, void *arg)
{
    (void)ok;
    (void)rep;
    (void)arg;
}

void keystore_used(struct keystore *ks, struct limiter *l, const char *name, int64_t now_s)
{
    char text[24];
    size_t n = sl_fmt_int(now_s, text);
    text[n] = '\0';
    if (redis_store(l)) {
        char key[sizeof(PREFIX) + 8 + CFG_NAME_MAX];
        snprintf(key, sizeof(key), PREFIX "used:%s", name);
        const char *argv[] = { "SET", key, text };
        return lim_command(l, 3, argv, NULL, ignore_reply, NULL);
    }
    if (!keystore_on(ks, l))
        return;
    pthread_mutex_lock(&ks->lock); /* not fsync'd: a crash loses at most that minute */
    write_atomic(ks, ks->used_fd, name, text, n, false);
    pthread_mutex_unlock(&ks->lock);
}
