/* libFuzzer target: what sluice reads of runtime keys (keys.c). The first
 * byte picks the reading: an admin request's body (keys_change_parse, then
 * the change applied by the file's own rules) or a stored record
 * (keys_record_parse), against one fixed configuration. What must hold:
 * neither crashes or leaks on any bytes; a body that is read names only
 * known settings, each value free of control characters; a key made from it
 * has a valid name, and its stored form reads back to the same record, byte
 * for byte; a record that is read is stored again the same way. */
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "sluice/config.h"
#include "sluice/keys.h"
#include "sluice/log.h"
#include "sluice/util.h"

static struct config *cfg;

static struct config *load_config(void)
{
    static const char text[] = "[backend a]\nurl = http://127.0.0.1:1/v1\n"
                               "[team platform]\nrpm = 100\nbudget = 10\n"
                               "[key filekey]\nkey = sha256:"
                               "0000000000000000000000000000000000000000000000000000000000000001\n";
    char path[] = "/tmp/sluice-fuzz-keys-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1))
        abort();
    close(fd);
    struct cfg_errors errs = { 0 };
    struct config *c = cfg_load(path, &errs);
    unlink(path);
    cfg_errors_free(&errs);
    if (!c)
        abort();
    return c;
}

/* The stored form reads back to itself. */
static void round_trip(const struct rt_key *k)
{
    char msg[256];
    struct sl_buf a = { 0 }, b = { 0 };
    keys_record_json(k, &a);
    struct rt_key *back = keys_record_parse(cfg, a.data, a.len, msg, sizeof(msg));
    if (!back)
        fprintf(stderr, "%s\n%s\n", a.data, msg);
    FUZZ_ASSERT(back != NULL);
    keys_record_json(back, &b);
    FUZZ_ASSERT(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    FUZZ_ASSERT(memcmp(back->k.digest, k->k.digest, 32) == 0);
    keys_unref(back);
    sl_buf_free(&a);
    sl_buf_free(&b);
}

static void admin_body(const char *data, size_t size)
{
    struct keys_change c;
    char msg[256];
    const char *param;
    if (!keys_change_parse(data, size, &c, msg, sizeof(msg), &param)) {
        FUZZ_ASSERT(msg[0]);
        return;
    }
    for (int i = 0; i < c.nset; i++) {
        FUZZ_ASSERT(cfg_key_option(c.opts[i]) != NULL);
        for (const char *p = c.vals[i]; p && *p; p++)
            FUZZ_ASSERT((unsigned char)*p >= ' ' && *p != 0x7f);
    }
    if (!c.has_name)
        snprintf(c.name, sizeof(c.name), "fuzzed");
    struct rt_key *k = keys_apply(cfg, NULL, &c, msg, sizeof(msg));
    if (k) {
        FUZZ_ASSERT(cfg_name_valid(k->k.name));
        memset(k->k.digest, 0x42, 32);
        round_trip(k);
        char why[256];
        (void)keys_within_team(&k->k, why, sizeof(why));
        keys_unref(k);
    } else {
        FUZZ_ASSERT(msg[0]);
    }
    keys_change_free(&c);
}

static void record(const char *data, size_t size)
{
    char msg[256];
    struct rt_key *k = keys_record_parse(cfg, data, size, msg, sizeof(msg));
    if (!k)
        return;
    FUZZ_ASSERT(cfg_name_valid(k->k.name));
    round_trip(k);
    keys_unref(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        log_set_level(LOG_OFF);
        cfg = load_config();
    }
    if (size < 1 || size > 65536)
        return 0;
    if (data[0] & 1)
        admin_body((const char *)data + 1, size - 1);
    else
        record((const char *)data + 1, size - 1);
    return 0;
}
