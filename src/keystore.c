/* Runtime keys in state_dir, and the node's cache of them by digest. */
#include "sluice/keystore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sluice/keys.h"
#include "sluice/log.h"
#include "sluice/util.h"

#define MAX_RECORD (64 * 1024)
#define USED_EVERY_S 60

struct entry {
    uint8_t digest[32];
    struct rt_key *key; /* NULL: no key has this digest */
    struct entry *next;
};

struct used {
    int64_t at;
    struct used *next;
    char name[];
};

struct keystore {
    char *dir;
    int keys_fd, index_fd, used_fd; /* state_dir/keys, keys/.sha256, keys/.used */
    pthread_mutex_t lock;
    struct entry **buckets;
    size_t nbuckets, nentries, nunknown;
    int64_t second;  /* the second reads were last counted in */
    int reads;       /* reads of unknown digests in it */
    long count;      /* runtime keys */
    struct used **used;
    unsigned tmp_seq;
};

#define USED_BUCKETS 4096

static atomic_ullong reads_total[3]; /* by enum ks_found */

void keystore_reads(unsigned long long out[3])
{
    for (int i = 0; i < 3; i++)
        out[i] = atomic_load(&reads_total[i]);
}

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

static long count_records(int fd)
{
    int dup_fd = dup(fd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    long n = 0;
    if (!d)
        return 0;
    size_t len;
    for (struct dirent *e; (e = readdir(d));)
        n += is_record(e->d_name, &len);
    closedir(d);
    return n;
}

struct keystore *keystore_open(const char *dir, char *err, size_t errlen)
{
    struct keystore *ks = sl_calloc(1, sizeof(*ks));
    ks->keys_fd = ks->index_fd = ks->used_fd = -1;
    pthread_mutex_init(&ks->lock, NULL);
    ks->nbuckets = 1024;
    ks->buckets = sl_calloc(ks->nbuckets, sizeof(*ks->buckets));
    ks->used = sl_calloc(USED_BUCKETS, sizeof(*ks->used));
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
    ks->count = count_records(ks->keys_fd);
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
    drop_entries(ks);
    free(ks->buckets);
    for (size_t b = 0; b < USED_BUCKETS; b++)
        for (struct used *u = ks->used[b], *next; u; u = next) {
            next = u->next;
            free(u);
        }
    free(ks->used);
    for (int *fd = &ks->keys_fd; fd <= &ks->used_fd; fd++)
        if (*fd >= 0)
            close(*fd);
    pthread_mutex_destroy(&ks->lock);
    free(ks->dir);
    free(ks);
}

bool keystore_on(const struct keystore *ks)
{
    return ks && ks->keys_fd >= 0;
}

const char *keystore_dir(const struct keystore *ks)
{
    return ks ? ks->dir : NULL;
}

/* ---- files ------------------------------------------------------------------- */

/* Writes data to dir/name through a new file: written, fsync'd, renamed
 * over name, and the folder fsync'd (when sync). */
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

static void index_file(const uint8_t digest[32], char out[65])
{
    sl_hex(digest, 32, out);
}

/* The record of name from disk, built against cfg; NULL if none (or bad: logged). */
static struct rt_key *read_record(struct keystore *ks, const struct config *cfg, const char *name)
{
    char file[CFG_NAME_MAX + 8], msg[256];
    char *buf = sl_malloc(MAX_RECORD);
    record_file(name, file);
    ssize_t n = read_file(ks->keys_fd, file, buf, MAX_RECORD);
    struct rt_key *k = n > 0 ? keys_record_parse(cfg, buf, (size_t)n, msg, sizeof(msg)) : NULL;
    if (n > 0 && !k)
        log_warn("runtime key %s in %s/keys cannot be used: %s", name, ks->dir, msg);
    else if (k && strcmp(k->k.name, name) != 0) {
        log_warn("runtime key file %s names key %s: not used", file, k->k.name);
        keys_unref(k);
        k = NULL;
    }
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

static void forget_unknown(struct keystore *ks)
{
    for (size_t b = 0; b < ks->nbuckets; b++) {
        for (struct entry **at = &ks->buckets[b]; *at;) {
            struct entry *e = *at;
            if (e->key) {
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

/* Caches digest -> key (a reference taken; NULL: unknown). */
static void remember(struct keystore *ks, const uint8_t digest[32], struct rt_key *key)
{
    if (!key && ks->nunknown >= KEYSTORE_UNKNOWN_MAX)
        forget_unknown(ks);
    if (ks->nentries >= ks->nbuckets * 2)
        grow(ks);
    struct entry **at = slot(ks, digest);
    if (*at) {
        ks->nunknown -= !(*at)->key;
        keys_unref((*at)->key);
    } else {
        *at = sl_calloc(1, sizeof(**at));
        memcpy((*at)->digest, digest, 32);
        ks->nentries++;
    }
    (*at)->key = key ? keys_ref(key) : NULL;
    ks->nunknown += !key;
}

static void forget(struct keystore *ks, const uint8_t digest[32])
{
    struct entry **at = slot(ks, digest);
    struct entry *e = *at;
    if (!e)
        return;
    *at = e->next;
    ks->nunknown -= !e->key;
    keys_unref(e->key);
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

/* The key a digest names on disk, or NULL. */
static struct rt_key *load(struct keystore *ks, const struct config *cfg, const uint8_t digest[32])
{
    char file[65], name[CFG_NAME_MAX + 2];
    index_file(digest, file);
    ssize_t n = read_file(ks->index_fd, file, name, sizeof(name));
    if (n <= 0 || !cfg_name_valid(name))
        return NULL;
    return read_record(ks, cfg, name);
}

enum ks_found keystore_lookup(struct keystore *ks, const struct config *cfg,
                              const uint8_t digest[32], struct rt_key **out)
{
    if (!keystore_on(ks))
        return KS_UNKNOWN;
    int64_t now_s = sl_wall_us() / 1000000;
    enum ks_found found = KS_UNKNOWN;
    pthread_mutex_lock(&ks->lock);
    struct entry *e = *slot(ks, digest);
    struct rt_key *k = e ? e->key : NULL;
    if (!e) {
        if (!may_read(ks)) {
            pthread_mutex_unlock(&ks->lock);
            atomic_fetch_add(&reads_total[KS_BUSY], 1);
            return KS_BUSY;
        }
        k = load(ks, cfg, digest);
        atomic_fetch_add(&reads_total[k ? KS_FOUND : KS_UNKNOWN], 1);
        /* a runtime key never shadows a file key of its name */
        if (k && cfg_find_key(cfg, k->k.name)) {
            log_warn("runtime key %s has the name of a key in the file: not used", k->k.name);
            keys_unref(k);
            k = NULL;
        }
        remember(ks, digest, k);
        if (k)
            keys_unref(k); /* the cache holds it */
    } else if (k && k->cfg != cfg) { /* reloaded: its team is looked up again */
        char msg[256];
        struct rt_key *again = keys_rebind(cfg, k, msg, sizeof(msg));
        if (!again || cfg_find_key(cfg, k->k.name))
            log_warn("runtime key %s cannot be used with this configuration: %s", k->k.name,
                     again ? "a key in the file has its name" : msg);
        if (again && cfg_find_key(cfg, k->k.name)) {
            keys_unref(again);
            again = NULL;
        }
        remember(ks, digest, again);
        keys_unref(again);
        k = again;
    }
    if (k && opens(k, digest, now_s)) {
        *out = keys_ref(k);
        found = KS_FOUND;
    }
    pthread_mutex_unlock(&ks->lock);
    return found;
}

static struct used **used_slot(struct keystore *ks, const char *name);

/* ---- changes --------------------------------------------------------------- */

enum ks_result keystore_get(struct keystore *ks, const struct config *cfg, const char *name,
                            struct rt_key **out)
{
    if (!keystore_on(ks) || !cfg_name_valid(name))
        return KS_MISSING;
    pthread_mutex_lock(&ks->lock);
    struct rt_key *k = read_record(ks, cfg, name);
    pthread_mutex_unlock(&ks->lock);
    if (!k)
        return KS_MISSING;
    *out = k;
    return KS_OK;
}

static bool write_index(struct keystore *ks, const uint8_t digest[32], const char *name)
{
    char file[65];
    index_file(digest, file);
    return write_atomic(ks, ks->index_fd, file, name, strlen(name), true);
}

static void remove_index(struct keystore *ks, const uint8_t digest[32])
{
    char file[65];
    index_file(digest, file);
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

enum ks_result keystore_create(struct keystore *ks, struct rt_key *k)
{
    if (!keystore_on(ks))
        return KS_IO;
    pthread_mutex_lock(&ks->lock);
    enum ks_result r = exists(ks, k->k.name) ? KS_EXISTS : write_key(ks, k);
    if (r == KS_OK) {
        ks->count++;
        forget_key(ks, k); /* it may have been cached as unknown */
    }
    pthread_mutex_unlock(&ks->lock);
    return r;
}

enum ks_result keystore_replace(struct keystore *ks, const struct rt_key *prev, struct rt_key *k)
{
    if (!keystore_on(ks))
        return KS_IO;
    pthread_mutex_lock(&ks->lock);
    enum ks_result r = !exists(ks, k->k.name) ? KS_MISSING : write_key(ks, k);
    if (r == KS_OK) {
        forget_key(ks, prev);
        forget_key(ks, k);
        if (CRYPTO_memcmp(prev->k.digest, k->k.digest, 32) != 0 &&
            !(k->old_until && CRYPTO_memcmp(prev->k.digest, k->old_digest, 32) == 0))
            remove_index(ks, prev->k.digest);
        if (prev->old_until && !(k->old_until && CRYPTO_memcmp(prev->old_digest, k->old_digest, 32) == 0))
            remove_index(ks, prev->old_digest);
    }
    pthread_mutex_unlock(&ks->lock);
    return r;
}

enum ks_result keystore_delete(struct keystore *ks, const struct rt_key *k)
{
    if (!keystore_on(ks))
        return KS_IO;
    char file[CFG_NAME_MAX + 8];
    record_file(k->k.name, file);
    pthread_mutex_lock(&ks->lock);
    enum ks_result r = KS_OK;
    if (unlinkat(ks->keys_fd, file, 0) != 0)
        r = errno == ENOENT ? KS_MISSING : KS_IO;
    else if (fsync(ks->keys_fd) != 0)
        r = KS_IO;
    if (r != KS_IO) { /* the record is gone: what pointed at it goes too */
        ks->count -= r == KS_OK;
        forget_key(ks, k);
        remove_index(ks, k->k.digest);
        if (k->old_until)
            remove_index(ks, k->old_digest);
        unlinkat(ks->used_fd, k->k.name, 0);
        struct used **u = used_slot(ks, k->k.name);
        if (*u)
            (*u)->at = 0;
    }
    pthread_mutex_unlock(&ks->lock);
    return r;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int keystore_names(struct keystore *ks, const char *after, int max, char ***names)
{
    *names = NULL;
    if (!keystore_on(ks))
        return 0;
    pthread_mutex_lock(&ks->lock);
    int dup_fd = dup(ks->keys_fd);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        pthread_mutex_unlock(&ks->lock);
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
    pthread_mutex_unlock(&ks->lock);
    qsort(all, (size_t)n, sizeof(*all), by_name);
    for (int i = max; i < n; i++)
        free(all[i]);
    *names = all;
    return SL_MIN(n, max);
}

long keystore_count(struct keystore *ks)
{
    if (!keystore_on(ks))
        return 0;
    pthread_mutex_lock(&ks->lock);
    long n = ks->count;
    pthread_mutex_unlock(&ks->lock);
    return n;
}

/* ---- last used --------------------------------------------------------------- */

static struct used **used_slot(struct keystore *ks, const char *name)
{
    struct used **at = &ks->used[sl_hash(name, strlen(name)) % USED_BUCKETS];
    while (*at && strcmp((*at)->name, name) != 0)
        at = &(*at)->next;
    return at;
}

void keystore_used(struct keystore *ks, const char *name, int64_t now_s)
{
    if (!ks)
        return;
    pthread_mutex_lock(&ks->lock);
    struct used **at = used_slot(ks, name);
    if (!*at) {
        size_t len = strlen(name);
        *at = sl_calloc(1, sizeof(**at) + len + 1);
        memcpy((*at)->name, name, len + 1);
    }
    bool write = now_s - (*at)->at >= USED_EVERY_S;
    if (write)
        (*at)->at = now_s;
    pthread_mutex_unlock(&ks->lock);
    if (write && keystore_on(ks)) { /* not fsync'd: a crash loses at most that minute */
        char text[24];
        size_t n = sl_fmt_int(now_s, text);
        pthread_mutex_lock(&ks->lock);
        write_atomic(ks, ks->used_fd, name, text, n, false);
        pthread_mutex_unlock(&ks->lock);
    }
}

int64_t keystore_last_used(struct keystore *ks, const char *name)
{
    if (!ks)
        return 0;
    pthread_mutex_lock(&ks->lock);
    struct used **at = used_slot(ks, name);
    int64_t t = *at ? (*at)->at : 0;
    if (!t && keystore_on(ks) && cfg_name_valid(name)) {
        char text[24];
        int64_t v;
        if (read_file(ks->used_fd, name, text, sizeof(text)) > 0 && sl_parse_int(text, &v))
            t = v;
    }
    pthread_mutex_unlock(&ks->lock);
    return t;
}
