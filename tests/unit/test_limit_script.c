/* lua/limits.lua against limit_script.h: every list of the contract (key
 * names, arguments, operations, reply slots) names the same things in the
 * same order on both sides, so one slot off fails here, not in production. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sluice/limit_script.h"

#define MAX_NAMES 40

struct list {
    const char *v[MAX_NAMES];
    int n;
};

/* The quoted names of the Lua table that follows `after` (up to its '}'),
 * copied into store; n = -1 if there is no such table. */
static struct list lua_list(const char *text, const char *after, char *store)
{
    struct list l = { .n = -1 };
    const char *p = strstr(text, after);
    if (!p || !(p = strchr(p, '{')))
        return l;
    const char *end = strchr(p, '}');
    l.n = 0;
    for (const char *q = p; q && q < end && l.n < MAX_NAMES; q++) {
        if (*q != '\'')
            continue;
        const char *close = strchr(q + 1, '\'');
        size_t len = (size_t)(close - q - 1);
        memcpy(store, q + 1, len);
        store[len] = '\0';
        l.v[l.n++] = store;
        store += len + 1;
        q = close;
    }
    return l;
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
    char letter[2][8] = { { LS_OP_ADMIT, ' ', '=', ' ', '{', 0 }, { LS_OP_SETTLE, ' ', '=', ' ', '{', 0 } };
    char renew[8] = { LS_OP_RENEW, ' ', '=', ' ', '{', 0 };
    const char *ops = strstr(lua, "local OP_ARGS = {");
    bool ok = ops != NULL;
#define SAME(what, lua_list_, c) ok = ok && same(what, lua_list_, c, (int)(sizeof(c) / sizeof(c[0])))
    SAME("BATCH_KEYS", lua_list(lua, "local BATCH_KEYS =", store), solo_keys);
    SAME("TEAM_KEYS", lua_list(lua, "local TEAM_KEYS =", store), team_keys);
    SAME("BATCH_ARGS", lua_list(lua, "local BATCH_ARGS =", store), batch_args);
    SAME("TEAM_ARGS", lua_list(lua, "local TEAM_ARGS =", store), team_args);
    SAME("COUNT_ARGS", lua_list(lua, "local COUNT_ARGS =", store), count_args);
    SAME("OP_ARGS.a", lua_list(ops ? ops : "", letter[0], store), admit_args);
    SAME("OP_ARGS.s", lua_list(ops ? ops : "", letter[1], store), settle_args);
    SAME("OP_ARGS.r", lua_list(ops ? ops : "", renew, store), renew_args);
    SAME("REPLY", lua_list(lua, "local REPLY =", store), reply);
    SAME("COUNT_REPLY", lua_list(lua, "local COUNT_REPLY =", store), count_reply);
#undef SAME
    return ok && same("COMPACT_REPLY", lua_list(lua, "local COMPACT_REPLY =", store), compact,
                      ncompact);
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
    static char swapped[1 << 16];
    strcpy(swapped, lua);
    char *slot = strstr(strstr(swapped, "local REPLY ="), "'used_requests'");
    CHECK(slot && memcmp(slot + 16, " 'reset_requests_ms'", 20) == 0);
    if (slot) {
        memcpy(slot + 1, "reset_requests_ms', 'used_requests", 34); /* same length, swapped */
        fprintf(stderr, "(a disagreement, on purpose:)\n");
        CHECK(!contract_holds(swapped));
    }
    strcpy(swapped, lua);
    char *arg = strstr(strstr(swapped, "local BATCH_ARGS ="), "'lease_ms'");
    CHECK(arg != NULL);
    if (arg) {
        memset(arg, ' ', 10);
        fprintf(stderr, "(a disagreement, on purpose:)\n");
        CHECK(!contract_holds(swapped));
    }
    return check_done();
}
