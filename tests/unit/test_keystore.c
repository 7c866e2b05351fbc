/* The runtime key store in state_dir (keystore.c): create, read, look up by
 * digest (and by the previous secret within its grace), replace, delete,
 * names in order, unknown digests cached, reads bounded per second, a
 * reopened store finding what was written, a file key never shadowed. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/keys.h"
#include "sluice/keystore.h"
#include "sluice/util.h"

static const char conf[] = "[backend a]\nurl = http://127.0.0.1:1/v1/\n"
                           "[team t]\n[key filekey]\nkey = sk-file-key-0001\n";

static struct rt_key *new_key(const struct config *c, const char *name, uint8_t digest[32])
{
    char body[128], msg[256];
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"team\":\"t\",\"rpm\":7}", name);
    struct keys_change ch;
    const char *param;
    CHECK(keys_change_parse(body, strlen(body), &ch, msg, sizeof(msg), &param));
    struct rt_key *k = keys_apply(c, NULL, &ch, msg, sizeof(msg));
    keys_change_free(&ch);
    char secret[KEYS_SECRET_LEN + 1];
    CHECK(k && keys_new_secret(secret, k->k.digest));
    memcpy(digest, k->k.digest, 32);
    k->created_at = k->updated_at = sl_wall_us() / 1000000;
    return k;
}

static enum ks_result last_result;
static struct rt_key *last_key;
static int64_t last_used;

static void done(enum ks_result r, void *arg)
{
    (void)arg;
    last_result = r;
}

static void got(enum ks_result r, struct rt_key *k, int64_t used, void *arg)
{
    (void)arg;
    last_result = r;
    keys_unref(last_key);
    last_key = k;
    last_used = used;
}

static struct rt_key **page;
static int npage;

static void paged(int n, struct rt_key **keys, void *arg)
{
    (void)arg;
    npage = n;
    page = keys;
}

static void free_page(void)
{
    for (int i = 0; i < npage; i++)
        keys_unref(page[i]);
    free(page);
    page = NULL;
}

/* The store's calls without Redis answer before they return. */
static enum ks_result create(struct keystore *ks, struct rt_key *k)
{
    last_result = -1;
    keystore_create(ks, NULL, k, done, NULL);
    return last_result;
}

static enum ks_result replace(struct keystore *ks, struct rt_key *k)
{
    last_result = -1;
    keystore_replace(ks, NULL, k, done, NULL);
    return last_result;
}

static enum ks_result delete(struct keystore *ks, const struct rt_key *k)
{
    last_result = -1;
    keystore_delete(ks, NULL, k, done, NULL);
    return last_result;
}

static struct rt_key *get(struct keystore *ks, const struct config *c, const char *name)
{
    last_result = -1;
    keystore_get(ks, NULL, c, name, got, NULL);
    CHECK(last_result == KS_OK);
    struct rt_key *k = last_key;
    last_key = NULL;
    return k;
}

static enum ks_found find(struct keystore *ks, const struct config *c, const uint8_t d[32],
                          const char *name)
{
    struct rt_key *k = NULL;
    enum ks_found f = keystore_find(ks, NULL, c, d, &k);
    if (f == KS_FOUND) {
        CHECK(strcmp(k->k.name, name ? name : "") == 0);
        keys_unref(k);
    }
    return f;
}

static void unknown_digest(uint8_t d[32], int i)
{
    memset(d, 0, 32);
    memcpy(d, &i, sizeof(i));
    d[31] = 0x5a;
}

/* The store's count once its start-up count is in (a thread of its own). */
static long counted(struct keystore *ks)
{
    for (int i = 0; i < 400 && !keystore_counted(ks); i++)
        usleep(5000);
    return keystore_count(ks);
}

static void rm_tree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

int main(void)
{
    struct config *c = check_load_config(conf, NULL);
    char dir[] = "/tmp/sluice-keystore-XXXXXX";
    CHECK(c && mkdtemp(dir));
    char err[256];
    struct keystore *ks = keystore_open(dir, err, sizeof(err));
    CHECK(ks && keystore_on(ks, NULL) && counted(ks) == 0);

    uint8_t da[32], db[32], dz[32];
    struct rt_key *a = new_key(c, "alice", da), *b = new_key(c, "bob", db);
    unknown_digest(dz, 1);
    CHECK(find(ks, c, da, NULL) == KS_UNKNOWN); /* cached as unknown now */
    CHECK(create(ks, a) == KS_OK && create(ks, b) == KS_OK);
    CHECK(create(ks, a) == KS_EXISTS);
    CHECK(keystore_count(ks) == 2);
    CHECK(find(ks, c, da, "alice") == KS_FOUND); /* a create clears what was cached */
    CHECK(find(ks, c, db, "bob") == KS_FOUND);
    CHECK(find(ks, c, dz, NULL) == KS_UNKNOWN);

    /* on disk: mode 0600 files in 0700 folders */
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/keys/alice.json", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s/keys", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);

    /* a rotation: the new secret, and the old one until its grace ends */
    struct keys_change none = { .disabled = -1 };
    char msg[256];
    struct rt_key *a2 = keys_apply(c, a, &none, msg, sizeof(msg));
    uint8_t dnew[32];
    char secret[KEYS_SECRET_LEN + 1];
    CHECK(a2 && keys_new_secret(secret, dnew));
    memcpy(a2->k.digest, dnew, 32);
    memcpy(a2->old_digest, da, 32);
    a2->old_until = sl_wall_us() / 1000000 + 3600;
    CHECK(replace(ks, a2) == KS_OK);
    CHECK(find(ks, c, dnew, "alice") == KS_FOUND && find(ks, c, da, "alice") == KS_FOUND);
    /* the grace over (written so): the old secret opens nothing */
    struct rt_key *a3 = keys_apply(c, a2, &none, msg, sizeof(msg));
    a3->old_until = 1;
    CHECK(replace(ks, a3) == KS_OK);
    CHECK(find(ks, c, da, NULL) == KS_UNKNOWN && find(ks, c, dnew, "alice") == KS_FOUND);

    /* a page in name order, after a cursor */
    keystore_page(ks, NULL, c, "", 10, paged, NULL);
    CHECK(npage == 2 && strcmp(page[0]->k.name, "alice") == 0 && strcmp(page[1]->k.name, "bob") == 0);
    free_page();
    keystore_page(ks, NULL, c, "alice", 10, paged, NULL);
    CHECK(npage == 1 && strcmp(page[0]->k.name, "bob") == 0);
    free_page();
    keystore_page(ks, NULL, c, "", 1, paged, NULL);
    CHECK(npage == 1 && strcmp(page[0]->k.name, "alice") == 0);
    free_page();

    /* another process (a restart) reads what was written */
    struct keystore *again = keystore_open(dir, err, sizeof(err));
    CHECK(again && counted(again) == 2);
    CHECK(find(again, c, dnew, "alice") == KS_FOUND && find(again, c, db, "bob") == KS_FOUND);
    struct rt_key *got_k = get(again, c, "bob");
    CHECK(got_k && got_k->k.rpm == 7);
    keys_unref(got_k);
    CHECK(get(again, c, "../etc") == NULL && get(again, c, "nobody") == NULL);

    /* delete: gone by both names and secrets, everywhere it was written */
    CHECK(delete(ks, b) == KS_OK && delete(ks, b) == KS_MISSING);
    CHECK(find(ks, c, db, NULL) == KS_UNKNOWN && keystore_count(ks) == 1);
    CHECK(get(ks, c, "bob") == NULL);

    /* reads of unknown digests are bounded per second; cached ones are free */
    int busy = 0, unknown = 0;
    for (int i = 2; i < KEYSTORE_LOOKUPS_PER_S + 500; i++) {
        uint8_t d[32];
        unknown_digest(d, i);
        enum ks_found f = find(again, c, d, NULL);
        busy += f == KS_BUSY;
        unknown += f == KS_UNKNOWN;
    }
    CHECK(busy >= 1 && unknown <= KEYSTORE_LOOKUPS_PER_S);
    CHECK(find(again, c, dnew, "alice") == KS_FOUND); /* cached: served whatever the flood */

    /* a key a change touched is read again ahead of unknown secrets: a
     * flood that uses up the second's reads does not lock it out */
    CHECK(find(ks, c, dnew, "alice") == KS_FOUND);
    struct rt_key *a4 = keys_apply(c, a3, &none, msg, sizeof(msg));
    CHECK(a4 && replace(ks, a4) == KS_OK);
    bool used_up = false;
    for (int i = 5000; i < 5000 + 3 * KEYSTORE_LOOKUPS_PER_S && !used_up; i++) {
        uint8_t d[32];
        unknown_digest(d, i);
        used_up = find(ks, c, d, NULL) == KS_BUSY;
    }
    CHECK(used_up);
    CHECK(find(ks, c, dnew, "alice") == KS_FOUND);
    keys_unref(a4);

    /* last used: kept on disk, read with the key */
    keystore_used(ks, NULL, "alice", 1000);
    keys_unref(get(ks, c, "alice"));
    CHECK(last_used == 1000);
    keystore_used(ks, NULL, "alice", 1061);
    keys_unref(get(again, c, "alice"));
    CHECK(last_used == 1061);

    /* a runtime key named as a file key is never used */
    uint8_t df[32];
    struct rt_key *shadow = new_key(c, "filekey", df);
    CHECK(create(ks, shadow) == KS_OK);
    struct keystore *third = keystore_open(dir, err, sizeof(err));
    CHECK(find(third, c, df, NULL) == KS_UNKNOWN);

    /* off: no state_dir */
    struct keystore *off = keystore_open(NULL, err, sizeof(err));
    CHECK(off && !keystore_on(off, NULL) && find(off, c, dnew, NULL) == KS_UNKNOWN);
    CHECK(create(off, a) == KS_IO);
    CHECK(keystore_open("/proc/sluice-cannot-make-this", err, sizeof(err)) == NULL && err[0]);

    keys_unref(shadow);
    keys_unref(a);
    keys_unref(a2);
    keys_unref(a3);
    keys_unref(b);
    keystore_close(off);
    keystore_close(third);
    keystore_close(again);
    keystore_close(ks);
    rm_tree(dir);
    cfg_unref(c);
    return check_done();
}
