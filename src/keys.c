/* Runtime keys' records: the admin body read into a change, a change applied
 * to a record, the stored JSON form and back, the admin view. */
#include "sluice/keys.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/api_read.h"
#include "sluice/config_options-t.h"
#include "sluice/http.h"
#include "sluice/util.h"

#define MAX_VALUE 2048 /* bytes of one setting's value as option text */

struct rt_key *keys_ref(struct rt_key *k)
{
    atomic_fetch_add(&k->refs, 1);
    return k;
}

static void settings_free(int n, char **opts, char **vals)
{
    for (int i = 0; i < n; i++) {
        free(opts[i]);
        free(vals[i]);
    }
}

void keys_unref(struct rt_key *k)
{
    if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
        return;
    cfg_key_clear(&k->k);
    if (k->cfg)
        cfg_unref(k->cfg);
    settings_free(k->nset, k->opts, k->vals);
    free(k->metadata);
    OPENSSL_cleanse(k->old_digest, sizeof(k->old_digest));
    free(k);
}

/* ---- secrets ----------------------------------------------------------------- */

bool keys_new_secret(char out[KEYS_SECRET_LEN + 1], uint8_t digest[32])
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint8_t raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return false;
    /* base62 of the 256-bit number, most significant digit first, 43 digits */
    uint8_t n[32];
    memcpy(n, raw, sizeof(n));
    size_t plen = strlen(KEYS_SECRET_PREFIX);
    memcpy(out, KEYS_SECRET_PREFIX, plen);
    for (int d = KEYS_SECRET_LEN - 1; d >= (int)plen; d--) {
        unsigned rem = 0;
        for (int i = 0; i < 32; i++) { /* n /= 62, rem = n % 62 */
            unsigned cur = (rem << 8) | n[i];
            n[i] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[d] = digits[rem];
    }
    out[KEYS_SECRET_LEN] = '\0';
    sl_sha256(out, KEYS_SECRET_LEN, digest);
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(n, sizeof(n));
    return true;
}

/* ---- the admin body ---------------------------------------------------------- */

void keys_change_free(struct keys_change *c)
{
    settings_free(c->nset, c->opts, c->vals);
    free(c->metadata);
    memset(c, 0, sizeof(*c));
}

/* A model name as a list element: what parse_models would read back as one. */
static bool plain_model(const char *s)
{
    if (!*s || strlen(s) > 256)
        return false;
    for (; *s; s++)
        if (*s == ',' || (unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

/* No control characters in a string value (the record and the log are
 * line-based), at most MAX_VALUE bytes. */
static bool plain_text(const char *s)
{
    if (strlen(s) > MAX_VALUE)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < ' ' || *s == 0x7f)
            return false;
    return true;
}

/* One setting's JSON value as option text (NULL for null); false if its
 * kind does not fit the option. */
static bool value_text(const struct option *o, const cJSON *v, char **out)
{
    char buf[64];
    if (cJSON_IsNull(v)) {
        *out = NULL;
        return true;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d) || o->type == T_MODELS || o->type == T_ENUM || o->type == T_STRING ||
            o->type == T_TIME || o->type == T_BOOL)
            return false;
        if (o->type == T_MONEY) {
            if (d < 0 || d > 1e12)
                return false;
            snprintf(buf, sizeof(buf), "%.6f", d);
        } else {
            if (d != floor(d) || d < -9.2e18 || d > 9.2e18)
                return false;
            snprintf(buf, sizeof(buf), "%lld", (long long)d);
        }
        *out = sl_strdup(buf);
        return true;
    }
    if (cJSON_IsBool(v)) {
        if (o->type != T_BOOL)
            return false;
        *out = sl_strdup(cJSON_IsTrue(v) ? "yes" : "no");
        return true;
    }
    if (cJSON_IsString(v)) {
        if (o->type == T_MODELS || !plain_text(v->valuestring))
            return false;
        *out = sl_strdup(v->valuestring);
        return true;
    }
    if (cJSON_IsArray(v) && o->type == T_MODELS) {
        struct sl_buf b = { 0 };
        int n = 0;
        for (const cJSON *e = v->child; e; e = e->next, n++) {
            if (!cJSON_IsString(e) || !plain_model(e->valuestring) || b.len > MAX_VALUE) {
                sl_buf_free(&b);
                return false;
            }
            sl_buf_printf(&b, "%s%s", n ? ", " : "", e->valuestring);
        }
        if (!n || b.len > MAX_VALUE) {
            sl_buf_free(&b);
            return false;
        }
        *out = b.data;
        return true;
    }
    return false;
}

#define BAD(p, ...)                                                                                \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        *param = (p);                                                                              \
        goto fail;                                                                                 \
    } while (0)

static bool read_member(const cJSON *m, struct keys_change *out, char *msg, size_t msglen,
                        const char **param)
{
    const char *name = m->string;
    if (strcmp(name, "name") == 0) {
        if (!cJSON_IsString(m) || !cfg_name_valid(m->valuestring))
            BAD("name", "'name' must be 1 to %d letters, digits, '-', '_' or '.'", CFG_NAME_MAX);
        snprintf(out->name, sizeof(out->name), "%s", m->valuestring);
        out->has_name = true;
    } else if (strcmp(name, "disabled") == 0) {
        if (!cJSON_IsBool(m))
            BAD("disabled", "'disabled' must be true or false.");
        out->disabled = cJSON_IsTrue(m);
    } else if (strcmp(name, "metadata") == 0) {
        char *text = cJSON_IsObject(m) ? cJSON_PrintUnformatted(m) : NULL;
        if (!text || strlen(text) > KEYS_MAX_METADATA) {
            free(text);
            BAD("metadata", "'metadata' must be a JSON object of at most %d bytes.",
                KEYS_MAX_METADATA);
        }
        out->metadata = text;
    } else if (strcmp(name, "key") == 0) {
        BAD("key", "sluice makes the secret itself and shows it once; 'key' cannot be given.");
    } else {
        const struct option *o = cfg_key_option(name);
        if (!o)
            BAD(NULL, "Unknown member '%.64s' (see GET /admin/keys/NAME for a key's fields).",
                name);
        char *text;
        if (!value_text(o, m, &text))
            BAD(o->name, "'%s' must be %s.", o->name,
                o->type == T_MODELS  ? "a list of model names"
                : o->type == T_MONEY ? "an amount of USD"
                : o->type == T_INT   ? "a whole number"
                : o->type == T_TIME  ? "an RFC 3339 time or null"
                : o->type == T_RATE  ? "a rate such as \"10/s\" or \"300/m\""
                                     : "a string");
        out->opts[out->nset] = sl_strdup(o->name);
        out->vals[out->nset++] = text;
    }
    return true;
fail:
    return false;
}

bool keys_change_parse(const char *body, size_t len, struct keys_change *out, char *msg,
                       size_t msglen, const char **param)
{
    memset(out, 0, sizeof(*out));
    out->disabled = -1;
    *param = NULL;
    cJSON *root = len && sl_utf8_valid(body, len) ? cJSON_ParseWithLength(body, len) : NULL;
    const char *dup;
    if (!cJSON_IsObject(root))
        BAD(NULL, "The body must be a JSON object in UTF-8.");
    if ((dup = api_repeated_member(root)) != NULL)
        BAD(NULL, "The body gives '%.64s' twice; send each member once.", dup);
    for (const cJSON *m = root->child; m; m = m->next) {
        if (out->nset == KEYS_MAX_SETTINGS)
            BAD(NULL, "Too many members.");
        if (!read_member(m, out, msg, msglen, param))
            goto fail;
    }
    cJSON_Delete(root);
    return true;
fail:
    cJSON_Delete(root);
    keys_change_free(out);
    return false;
}

/* ---- records ------------------------------------------------------------------- */

static int setting_index(int n, char *const *opts, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i], name) == 0)
            return i;
    return -1;
}

/* Builds k->k from k's settings against cfg; false with msg. */
static bool build(const struct config *cfg, struct rt_key *k, const char *name, char *msg,
                  size_t msglen)
{
    uint8_t digest[32];
    memcpy(digest, k->k.digest, 32);
    if (!cfg_key_build(cfg, name, (const char *const *)k->opts, (const char *const *)k->vals,
                       k->nset, &k->k, msg, msglen))
        return false;
    memcpy(k->k.digest, digest, 32);
    k->cfg = cfg_ref((struct config *)cfg);
    k->share = http_share_named(name);
    return true;
}

static struct rt_key *rt_new(void)
{
    struct rt_key *k = sl_calloc(1, sizeof(*k));
    atomic_init(&k->refs, 1);
    return k;
}

/* A copy of k's record (settings, times, digests) not yet built. */
static struct rt_key *copy_record(const struct rt_key *k)
{
    struct rt_key *c = rt_new();
    memcpy(c->k.digest, k->k.digest, 32);
    c->created_at = k->created_at;
    c->updated_at = k->updated_at;
    c->disabled = k->disabled;
    memcpy(c->old_digest, k->old_digest, 32);
    c->old_until = k->old_until;
    memcpy(c->created_by, k->created_by, sizeof(c->created_by));
    c->metadata = k->metadata ? sl_strdup(k->metadata) : NULL;
    for (int i = 0; i < k->nset; i++) {
        c->opts[i] = sl_strdup(k->opts[i]);
        c->vals[i] = sl_strdup(k->vals[i]);
    }
    c->nset = k->nset;
    return c;
}

struct rt_key *keys_apply(const struct config *cfg, const struct rt_key *base,
                          const struct keys_change *c, char *msg, size_t msglen)
{
    struct rt_key *k = base ? copy_record(base) : rt_new();
    for (int i = 0; i < c->nset; i++) {
        int at = setting_index(k->nset, k->opts, c->opts[i]);
        if (at < 0 && c->vals[i]) {
            k->opts[k->nset] = sl_strdup(c->opts[i]);
            k->vals[k->nset++] = sl_strdup(c->vals[i]);
        } else if (at >= 0 && c->vals[i]) {
            free(k->vals[at]);
            k->vals[at] = sl_strdup(c->vals[i]);
        } else if (at >= 0) { /* null: back to the default */
            free(k->opts[at]);
            free(k->vals[at]);
            k->opts[at] = k->opts[k->nset - 1];
            k->vals[at] = k->vals[k->nset - 1];
            k->nset--;
        }
    }
    if (c->disabled >= 0)
        k->disabled = c->disabled;
    if (c->metadata) {
        free(k->metadata);
        k->metadata = sl_strdup(c->metadata);
    }
    if (!build(cfg, k, base ? base->k.name : c->name, msg, msglen)) {
        keys_unref(k);
        return NULL;
    }
    return k;
}

struct rt_key *keys_rebind(const struct config *cfg, const struct rt_key *k, char *msg,
                           size_t msglen)
{
    struct rt_key *c = copy_record(k);
    if (!build(cfg, c, k->k.name, msg, msglen)) {
        keys_unref(c);
        return NULL;
    }
    return c;
}

void keys_record_json(const struct rt_key *k, struct sl_buf *out)
{
    char hex[65];
    sl_buf_appends(out, "{\"name\":");
    sl_buf_json_string(out, k->k.name, strlen(k->k.name));
    sl_hex(k->k.digest, 32, hex);
    sl_buf_printf(out, ",\"sha256\":\"%s\"", hex);
    if (k->old_until) {
        sl_hex(k->old_digest, 32, hex);
        sl_buf_printf(out, ",\"old_sha256\":\"%s\",\"old_until\":%lld", hex,
                      (long long)k->old_until);
    }
    sl_buf_printf(out, ",\"created_at\":%lld,\"updated_at\":%lld,\"disabled\":%s,\"created_by\":",
                  (long long)k->created_at, (long long)k->updated_at,
                  k->disabled ? "true" : "false");
    sl_buf_json_string(out, k->created_by, strlen(k->created_by));
    sl_buf_appends(out, ",\"settings\":{");
    for (int i = 0; i < k->nset; i++) {
        if (i)
            sl_buf_appends(out, ",");
        sl_buf_json_string(out, k->opts[i], strlen(k->opts[i]));
        sl_buf_appends(out, ":");
        sl_buf_json_string(out, k->vals[i], strlen(k->vals[i]));
    }
    sl_buf_printf(out, "},\"metadata\":%s}", k->metadata ? k->metadata : "{}");
}

static bool hex_member(const cJSON *root, const char *name, uint8_t out[32])
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return cJSON_IsString(v) && strlen(v->valuestring) == 64 && sl_unhex(v->valuestring, out, 32);
}

static int64_t int_member(const cJSON *root, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e15
               ? (int64_t)v->valuedouble
               : -1;
}

#undef BAD
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                        \
        goto fail;                                                                                 \
    } while (0)

struct rt_key *keys_record_parse(const struct config *cfg, const char *json, size_t len,
                                 char *msg, size_t msglen)
{
    struct rt_key *k = rt_new();
    cJSON *root = sl_utf8_valid(json, len) ? cJSON_ParseWithLength(json, len) : NULL;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(root, "settings");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(root, "created_by");
    if (!cJSON_IsObject(root) || api_repeated_member(root))
        BAD("not a key record");
    if (!cJSON_IsString(name) || !cfg_name_valid(name->valuestring))
        BAD("a record without a valid name");
    if (!hex_member(root, "sha256", k->k.digest))
        BAD("%s: no sha256", name->valuestring);
    k->old_until = int_member(root, "old_until");
    if (k->old_until > 0 && !hex_member(root, "old_sha256", k->old_digest))
        BAD("%s: old_until without old_sha256", name->valuestring);
    k->old_until = SL_MAX(k->old_until, 0);
    k->created_at = int_member(root, "created_at");
    k->updated_at = int_member(root, "updated_at");
    if (k->created_at < 0 || k->updated_at < 0)
        BAD("%s: no created_at or updated_at", name->valuestring);
    k->disabled = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "disabled"));
    if (cJSON_IsString(by))
        snprintf(k->created_by, sizeof(k->created_by), "%s", by->valuestring);
    if (!cJSON_IsObject(settings))
        BAD("%s: no settings", name->valuestring);
    for (const cJSON *s = settings->child; s; s = s->next) {
        if (k->nset == KEYS_MAX_SETTINGS || !cJSON_IsString(s) || !cfg_key_option(s->string) ||
            !plain_text(s->valuestring))
            BAD("%s: bad setting %.64s", name->valuestring, s->string);
        k->opts[k->nset] = sl_strdup(s->string);
        k->vals[k->nset++] = sl_strdup(s->valuestring);
    }
    if (cJSON_IsObject(meta))
        k->metadata = cJSON_PrintUnformatted(meta);
    if (!build(cfg, k, name->valuestring, msg, msglen))
        goto fail;
    cJSON_Delete(root);
    return k;
fail:
    cJSON_Delete(root);
    keys_unref(k);
    return NULL;
}

/* ---- the admin view ------------------------------------------------------------ */

/* One option's value in k as JSON. */
static void option_json(const struct option *o, const struct cfg_key *k, struct sl_buf *out)
{
    const void *f = (const char *)k + o->offset;
    char text[32];
    switch (o->type) {
    case T_INT:
    case T_SIZE:
        sl_buf_int(out, *(const int64_t *)f);
        break;
    case T_RATE: { /* as the file writes it: "10/s", "7/m" */
        int64_t per_min = *(const int64_t *)f;
        sl_buf_printf(out, per_min % 60 || !per_min ? "\"%lld/m\"" : "\"%lld/s\"",
                      (long long)(per_min % 60 || !per_min ? per_min : per_min / 60));
        break;
    }
    case T_DURATION: { /* as the file writes it: "30s", "2500ms" */
        int64_t ms = *(const int64_t *)f;
        sl_buf_printf(out, ms % 1000 ? "\"%lldms\"" : "\"%llds\"",
                      (long long)(ms % 1000 ? ms : ms / 1000));
        break;
    }
    case T_MONEY:
        sl_fmt_money(*(const int64_t *)f, text);
        sl_buf_appends(out, text);
        break;
    case T_BOOL:
        sl_buf_appends(out, *(const bool *)f ? "true" : "false");
        break;
    case T_ENUM:
        sl_buf_printf(out, "\"%s\"", o->choices[*(const int *)f]);
        break;
    case T_TIME:
        if (*(const int64_t *)f) {
            char when[21];
            sl_fmt_time(*(const int64_t *)f, when);
            sl_buf_printf(out, "\"%s\"", when);
        } else {
            sl_buf_appends(out, "null");
        }
        break;
    case T_MODELS: {
        const struct cfg_models *m = f;
        sl_buf_appends(out, "[");
        if (m->any)
            sl_buf_appends(out, "\"*\"");
        for (int i = 0; i < m->n; i++) {
            if (i || m->any)
                sl_buf_appends(out, ",");
            sl_buf_json_string(out, m->names[i], strlen(m->names[i]));
        }
        sl_buf_appends(out, "]");
        break;
    }
    case T_STRING: {
        const char *s = *(char *const *)f;
        if (s)
            sl_buf_json_string(out, s, strlen(s));
        else
            sl_buf_appends(out, "null");
        break;
    }
    default:
        sl_buf_appends(out, "null");
        break;
    }
}

void keys_settings_json(const struct cfg_key *k, struct sl_buf *out)
{
    for (int i = 0; i < cfg_noptions; i++) {
        const struct option *o = &cfg_options[i];
        if (o->scope != SCOPE_KEY || o->type == T_DIGEST)
            continue;
        sl_buf_printf(out, "\"%s\":", o->name);
        option_json(o, k, out);
        sl_buf_appends(out, ",");
    }
}

void keys_runtime_json(const struct rt_key *k, struct sl_buf *out)
{
    char when[21];
    sl_fmt_time(k->created_at, when);
    sl_buf_printf(out, "\"created_at\":\"%s\",", when);
    sl_fmt_time(k->updated_at, when);
    sl_buf_printf(out, "\"updated_at\":\"%s\",\"created_by\":", when);
    sl_buf_json_string(out, k->created_by, strlen(k->created_by));
    sl_buf_printf(out, ",\"disabled\":%s,", k->disabled ? "true" : "false");
    if (k->old_until) {
        sl_fmt_time(k->old_until, when);
        sl_buf_printf(out, "\"previous_secret_until\":\"%s\",", when);
    }
    sl_buf_printf(out, "\"metadata\":%s,", k->metadata ? k->metadata : "{}");
}

bool keys_within_team(const struct cfg_key *k, char *msg, size_t msglen)
{
    const struct cfg_team *t = k->team;
    if (!t)
        return true;
    const struct {
        const char *name;
        int64_t key, team;
    } dims[] = { { "rpm", k->rpm, t->rpm },
                 { "input_tpm", k->input_tpm, t->input_tpm },
                 { "output_tpm", k->output_tpm, t->output_tpm },
                 { "max_inflight", k->max_inflight, t->max_inflight },
                 { "budget", k->budget, t->budget } };
    for (size_t i = 0; i < SL_ARRAY_LEN(dims); i++) {
        if (dims[i].team && dims[i].key > dims[i].team) {
            char text[32];
            if (i == SL_ARRAY_LEN(dims) - 1)
                sl_fmt_money(dims[i].team, text);
            else
                text[sl_fmt_int(dims[i].team, text)] = '\0';
            snprintf(msg, msglen, "%s: more than team %s has (%s).", dims[i].name, t->name, text);
            return false;
        }
    }
    if (t->budget && k->budget && k->budget_period != t->budget_period) {
        snprintf(msg, msglen, "budget_period: must be the team's (%s) for a key with a budget.",
                 cfg_key_option("budget_period")->choices[t->budget_period]);
        return false;
    }
    return true;
}
