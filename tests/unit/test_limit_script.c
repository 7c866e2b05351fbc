/* lua/limits.lua against limit_script.h: every list of the contract (key
 * names, arguments, operations, reply slots), as the script declares it in
 * its "--:" lines and as the header does, names the same things in the same
 * order, so a list changed on one side only fails here, not in production.
 * (That the script's code reads and writes those positions is what
 * test_limits_script.py checks, driving it by the header's names.) */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sluice/limit_script.h"

#define MAX_NAMES 64

struct list {
    const char *v[MAX_NAMES];
    int n;
};

/* The names of one list of the contract in lua/limits.lua: the words after
 * "--: NAME", continued on the lines that start "--:   ", copied into
 * store; n = -1 if there is no such list. */
static struct list lua_list(const char *text, const char *name, char *store)
{
    struct list l = { .n = -1 };
    char head[64];
    snprintf(head, sizeof(head), "\n--: %s ", name);
    const char *p = strstr(text, head);
    if (!p)
        return l;
    l.n = 0;
    p += strlen(head);
    for (;;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            return l;
        while (p < eol && l.n < MAX_NAMES) {
            while (p < eol && *p == ' ')
                p++;
            const char *w = p;
            while (p < eol && *p != ' ')
                p++;
            if (p > w) {
                memcpy(store, w, (size_t)(p - w));
                store[p - w] = '\0';
                l.v[l.n++] = store;
                store += p - w + 1;
            }
        }
        if (strncmp(eol + 1, "--:   ", 6) != 0) /* the list goes on on the next line */
            return l;
        p = eol + 1 + 6;
    }
}

/* Whether the two lists name the same things in the same order; says where not. */
static bool same(const char *what, struct list lua, const char *const *c, int n)
{
    if (lua.n != n) {
        fprintf(stderr, "%s: lua/limits.lua has %d names, limit_script.h %d\n", what, lua.n, n);
        return false;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(lua.v[i], c[i]) != 0) {
            fprintf(stderr, "%s[%d]: lua/limits.lua says %s, limit_script.h %s\n", what, i + 1,
                    lua.v[i], c[i]);
            return false;
        }
    }
    return true;
}

#define KEY_NAME(name, letter, team) #name,
#define ARG_NAME(NAME, name) #name,
#define SLOT_NAME(NAME, name, text, compact) #name,
#define COMPACT_NAME(NAME, name, text, compact) compact ? #name : NULL,

static const char *const solo_keys[] = { LS_KEYS_SOLO(KEY_NAME) };
static const char *const team_keys[] = { LS_KEYS_TEAM(KEY_NAME) };
static const char *const batch_args[] = { LS_BATCH_ARGS(ARG_NAME) };
static const char *const team_args[] = { LS_TEAM_ARGS(ARG_NAME) };
static const char *const user_keys[] = { LS_KEYS_USER(KEY_NAME) };
static const char *const team_user_keys[] = { LS_KEYS_TEAM_USER(KEY_NAME) };
static const char *const user_args[] = { LS_USER_ARGS(ARG_NAME) };
static const char *const team_user_args[] = { LS_TEAM_USER_ARGS(ARG_NAME) };
static const char *const spike_keys[] = { LS_KEYS_SPIKE(KEY_NAME) };
static const char *const team_spike_keys[] = { LS_KEYS_TEAM_SPIKE(KEY_NAME) };
static const char *const spike_args[] = { LS_SPIKE_ARGS(ARG_NAME) };
static const char *const team_spike_args[] = { LS_TEAM_SPIKE_ARGS(ARG_NAME) };
static const char *const count_args[] = { LS_COUNT_ARGS(ARG_NAME) };
static const char *const admit_args[] = { LS_ADMIT_ARGS(ARG_NAME) };
static const char *const settle_args[] = { LS_SETTLE_ARGS(ARG_NAME) };
static const char *const renew_args[] = { LS_RENEW_ARGS(ARG_NAME) };
static const char *const reply[] = { LS_REPLY(SLOT_NAME) };
static const char *const reply_or_null[] = { LS_REPLY(COMPACT_NAME) };
static const char *const count_reply[] = { LS_COUNT_REPLY(SLOT_NAME) };

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Every list of the contract; false at the first that differs. */
static bool contract_holds(const char *lua)
{
    static char store[8192];
    const char *compact[LS_NREPLY];
    int ncompact = 0;
    for (int i = 0; i < LS_NREPLY; i++)
        if (reply_or_null[i])
            compact[ncompact++] = reply_or_null[i];
    bool ok = true;
#define SAME(name, c) ok = ok && same(name, lua_list(lua, name, store), c, (int)(sizeof(c) / sizeof(c[0])))
    SAME("BATCH_KEYS", solo_keys);
    SAME("TEAM_KEYS", team_keys);
    SAME("BATCH_ARGS", batch_args);
    SAME("TEAM_ARGS", team_args);
    SAME("USER_KEYS", user_keys);
    SAME("TEAM_USER_KEYS", team_user_keys);
    SAME("USER_ARGS", user_args);
    SAME("TEAM_USER_ARGS", team_user_args);
    SAME("SPIKE_KEYS", spike_keys);
    SAME("TEAM_SPIKE_KEYS", team_spike_keys);
    SAME("SPIKE_ARGS", spike_args);
    SAME("TEAM_SPIKE_ARGS", team_spike_args);
    SAME("COUNT_ARGS", count_args);
    SAME("OP_ARGS.a", admit_args);
    SAME("OP_ARGS.s", settle_args);
    SAME("OP_ARGS.r", renew_args);
    SAME("REPLY", reply);
    SAME("COUNT_REPLY", count_reply);
#undef SAME
    return ok && same("COMPACT_REPLY", lua_list(lua, "COMPACT_REPLY", store), compact, ncompact);
}

int main(void)
{
    char *lua = read_all("lua/limits.lua");
    CHECK(lua != NULL);
    if (!lua)
        return check_done();
    CHECK(contract_holds(lua));

    /* The check itself: a script with two reply slots swapped, or one
     * argument missing, disagrees. */
    static char changed[1 << 16];
    strcpy(changed, lua);
    char *slot = strstr(strstr(changed, "\n--: REPLY "), "used_requests\n--:   reset_requests_ms");
    CHECK(slot != NULL);
    if (slot) {
        memcpy(slot, "reset_requests_ms\n--:   used_requests", 37); /* same length, swapped */
        fprintf(stderr, "(a disagreement, on purpose:)\n");
        CHECK(!contract_holds(changed));
    }
    strcpy(changed, lua);
    char *arg = strstr(strstr(changed, "\n--: BATCH_ARGS "), " lease_ms");
    CHECK(arg != NULL);
    if (arg) {
        memset(arg, ' ', 9);
        fprintf(stderr, "(a disagreement, on purpose:)\n");
        CHECK(!contract_holds(changed));
    }
    return check_done();
}
