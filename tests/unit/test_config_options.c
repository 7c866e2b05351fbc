/* The option table itself: every option documented, no name twice in a
 * section, enum defaults among their choices, bounds that hold their
 * defaults, and every default accepted by the parser (a config that sets
 * nothing loads). */
#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/config.h"
#include "sluice/config_options-t.h"

int main(void)
{
    CHECK(cfg_noptions > 50 && cfg_noptions <= CFG_MAX_OPTIONS);
    for (int i = 0; i < cfg_noptions; i++) {
        const struct option *o = &cfg_options[i];
        CHECK(o->name && *o->name && o->doc && strlen(o->doc) > 10);
        CHECK(o->scope < SCOPE__COUNT);
        for (int j = 0; j < i; j++)
            if (cfg_options[j].scope == o->scope && strcmp(cfg_options[j].name, o->name) == 0) {
                fprintf(stderr, "[%s] %s twice\n", cfg_scope_names[o->scope], o->name);
                CHECK(false);
            }
        if (o->type == T_ENUM) {
            CHECK(o->choices && o->choices[0]);
            bool found = !o->def;
            for (int k = 0; o->def && o->choices[k]; k++)
                found = found || strcmp(o->choices[k], o->def) == 0;
            CHECK(found);
        }
        if (o->type == T_INT && o->def)
            CHECK(atoll(o->def) >= o->min && atoll(o->def) <= o->max);
        CHECK(!((o->flags & F_REQUIRED) && o->def)); /* a required option has no default */
    }
    /* every section with only what it requires: all defaults go through the parser */
    struct cfg_errors errs = { 0 };
    struct config *c = check_load_config("[server]\n[redis]\nurl = redis://h\n[telemetry]\n"
                                         "otlp_endpoint = http://127.0.0.1:4318\n"
                                         "[backend b]\nurl = http://b/v1\n[team t]\n"
                                         "[key k]\nkey = sha256:"
                                         "0000000000000000000000000000000000000000000000000000000000000000\n"
                                         "[model m]\n",
                                         &errs);
    for (int i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.lines[i]);
    CHECK(c != NULL && errs.n == 0);
    cfg_errors_free(&errs);
    cfg_unref(c);
    return check_done();
}
