/* libFuzzer target: a configuration file as `sluice -t` and a reload read
 * it (cfg_load: the INI reader, every option's value syntax, the checks
 * across sections). What must hold: it is loaded or refused with errors,
 * never a crash or a leak; a loaded one is freed whole. Inputs that name
 * devices or /proc are skipped: the operator's file may point at any path,
 * and reading /dev/zero as a certificate is the operator's business. */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "sluice/config.h"
#include "sluice/log.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const skipped[] = { "dev/", "proc/", "sys/", "run/", "fd/" };
    for (size_t i = 0; i < sizeof(skipped) / sizeof(skipped[0]); i++)
        if (memmem(data, size, skipped[i], strlen(skipped[i])))
            return 0;
    log_set_level(LOG_OFF);
    if (!path[0]) /* in the working folder, which scripts/fuzz.sh makes and removes */
        snprintf(path, sizeof(path), "fuzz-config-%d.conf", (int)getpid());
    FILE *f = fopen(path, "w");
    FUZZ_ASSERT(f && fwrite(data, 1, size, f) == size && fclose(f) == 0);
    struct cfg_errors errs = { 0 };
    struct config *c = cfg_load(path, &errs);
    FUZZ_ASSERT(c || errs.n > 0);
    cfg_unref(c);
    cfg_errors_free(&errs);
    return 0;
}
