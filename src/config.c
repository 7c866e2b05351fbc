/* INI file -> struct config. Options are declared once in the table of
 * config_options.c; the parser, the defaults, validation, `sluice -t` and the
 * reference printed by `sluice -D` are all driven by it. inih splits names
 * and values; our own line reader feeds it so every message can name
 * file:line exactly. */
#include "sluice/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include "sluice/config_options-t.h"
#include "sluice/headers.h"
#include "sluice/jwt.h"
#include "sluice/redis_url.h"
#include "sluice/log.h"
#include "sluice/tls.h"
#include "sluice/util.h"



/* ---- errors ---------------------------------------------------------------- */

static void add_error(struct cfg_errors *errs, const char *path, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add_error(struct cfg_errors *errs, const char *path, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct sl_buf b = { 0 };
    if (line > 0)
        sl_buf_printf(&b, "%s:%d: %s", path, line, msg);
    else
        sl_buf_printf(&b, "%s: %s", path, msg);
    errs->lines = sl_realloc(errs->lines, sizeof(char *) * (size_t)(errs->n + 1));
    errs->lines[errs->n++] = b.data;
}

void cfg_errors_free(struct cfg_errors *errs)
{
    for (int i = 0; i < errs->n; i++)
        free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->n = 0;
}

/* ---- parse state ---------------------------------------------------------- */

struct section {
    enum scope scope;
    void *single; /* [server], [redis], [telemetry]: the struct the option offsets point into */
    int index;    /* a named section: its element's index (the arrays grow, so not a pointer) */
    int line;     /* line of the [header] */
    int set_at[CFG_MAX_OPTIONS]; /* line each option was set on, 0 = not set */
};

struct parser {
    const char *path;
    FILE *fp;
    int lineno;
    int maxline; /* what inih's buffer holds */
    struct config *cfg;
    struct cfg_errors *errs;
    struct section *sections;
    int nsections;
    struct section *cur; /* NULL before the first section or inside a bad one */
    bool bad_section;
    char *linebuf;
    size_t linecap;
    struct cfg_errors perms; /* permission problems: warnings, or errors when strict */
    bool readable_by_others;
    unsigned mode;
};

/* Backend and key arrays grow while parsing, so sections hold indexes for
 * them; this turns a section into the address of its struct. */
/* The named sections ([backend NAME], [key NAME], ...): the array of
 * struct config each fills. Their structs start with char *name, int line. */
struct named_scope {
    enum scope scope;
    const char *title;
    size_t array, count; /* offsets in struct config: the array pointer and its length */
    size_t names;        /* and the index of its names */
    size_t size;         /* of one element */
};

#define NAMED(sc, t, arr, cnt, idx, type)                                                          \
    { sc, t, offsetof(struct config, arr), offsetof(struct config, cnt),                            \
      offsetof(struct config, idx), sizeof(type) }
static const struct named_scope named_scopes[] = {
    NAMED(SCOPE_BACKEND, "backend", backends, nbackends, backend_names, struct cfg_backend),
    NAMED(SCOPE_KEY, "key", keys, nkeys, key_names, struct cfg_key),
    NAMED(SCOPE_TEAM, "team", teams, nteams, team_names, struct cfg_team),
    NAMED(SCOPE_MODEL, "model", models, nmodels, model_names, struct cfg_model),
};
#undef NAMED

struct named_head {
    char *name;
    int line;
};

static const struct named_scope *named_scope_of(enum scope scope)
{
    for (size_t i = 0; i < SL_ARRAY_LEN(named_scopes); i++)
        if (named_scopes[i].scope == scope)
            return &named_scopes[i];
    return NULL;
}

static void *named_element(const struct config *c, const struct named_scope *ns, int i)
{
    char *array = *(char *const *)((const char *)c + ns->array);
    return array + (size_t)i * ns->size;
}

static struct sl_names *names_of(const struct config *c, const struct named_scope *ns)
{
    return (struct sl_names *)((const char *)c + ns->names);
}

static void *section_obj(struct parser *p, struct section *sec)
{
    const struct named_scope *ns = named_scope_of(sec->scope);
    return ns ? named_element(p->cfg, ns, sec->index) : sec->single;
}

#define PERR(p, ...) add_error((p)->errs, (p)->path, (p)->lineno, __VA_ARGS__)

/* A value as an error message may show it: as it is, unless it looks like a
 * secret put in the wrong option (a key: "sk-..." or a long run of letters,
 * digits, '-' and '_'), which is described instead of echoed. */
static const char *shown(const char *v, char *buf, size_t n)
{
    size_t len = strlen(v), plain = strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                               "0123456789-_");
    if (strncmp(v, "sk-", 3) != 0 && !(len >= 16 && plain == len))
        return v;
    snprintf(buf, n, "<a %zu-character value, not shown: it may be a secret>", len);
    return buf;
}
#define SHOWN(v) shown((v), (char[80]){ 0 }, 80)

/* ---- value parsers ---------------------------------------------------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static bool parse_models(const char *v, struct cfg_models *m)
{
    struct cfg_models out = { 0 };
    char *copy = sl_strdup(v), *save = NULL;
    bool ok = true;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *name = trim(tok);
        if (!*name || strchr(name, ' ') || strchr(name, '\t')) {
            ok = false;
            break;
        }
        if (strcmp(name, "*") == 0) {
            out.any = true;
            continue;
        }
        out.names = sl_realloc(out.names, sizeof(char *) * (size_t)(out.n + 1));
        out.names[out.n++] = sl_strdup(name);
    }
    free(copy);
    if (!ok || (!out.any && out.n == 0)) {
        for (int i = 0; i < out.n; i++)
            free(out.names[i]);
        free(out.names);
        return false;
    }
    for (int i = 0; i < m->n; i++)
        free(m->names[i]);
    free(m->names);
    *m = out;
    return true;
}

static bool is_token(const char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'+-.^_`|~", *s))
            return false;
    return true;
}

/* forward_headers: header names, each a token with an optional trailing *. */
static bool parse_headers(struct parser *p, const struct option *o, const char *v,
                          struct cfg_models *h)
{
    if (!parse_models(v, h) || h->any) {
        PERR(p, "%s: '%s' is not a comma-separated list of header names", o->name, SHOWN(v));
        return false;
    }
    for (int i = 0; i < h->n; i++) {
        char name[CFG_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%s", h->names[i]);
        size_t len = strlen(name);
        if (len && name[len - 1] == '*')
            name[--len] = '\0';
        if (!len || !is_token(name)) {
            PERR(p, "%s: '%s' is not a header name", o->name, h->names[i]);
            return false;
        }
        if (hdr_never_forwarded((struct sl_str){ name, len })) { /* a prefix never opens them */
            PERR(p, "%s: %s is never forwarded (docs/http.md)", o->name, h->names[i]);
            return false;
        }
    }
    return true;
}

static bool parse_statuses(const char *v, struct cfg_statuses *st)
{
    struct cfg_statuses out = { { 0 } };
    char *copy = sl_strdup(v), *save = NULL;
    bool ok = true, any = false;
    for (char *tok = strtok_r(copy, ",", &save); tok && ok; tok = strtok_r(NULL, ",", &save)) {
        char *item = trim(tok), *dash = strchr(item, '-');
        int64_t lo, hi;
        if (dash) {
            *dash = '\0';
            ok = sl_parse_int(trim(item), &lo) && sl_parse_int(trim(dash + 1), &hi);
        } else {
            ok = sl_parse_int(item, &lo);
            hi = lo;
        }
        if (!ok || lo < 100 || hi > 599 || lo > hi) {
            ok = false;
            break;
        }
        for (int64_t s = lo; s <= hi; s++)
            out.bits[(s - 100) / 64] |= 1ULL << ((s - 100) % 64);
        any = true;
    }
    free(copy);
    if (!ok || !any)
        return false;
    *st = out;
    return true;
}

/* host:port, optionally followed by `tls`. */
static bool parse_listen(const char *value, struct cfg_listen *l)
{
    char v[128];
    const char *sp = strpbrk(value, " \t");
    size_t vlen = sp ? (size_t)(sp - value) : strlen(value);
    if (vlen >= sizeof(v))
        return false;
    memcpy(v, value, vlen);
    v[vlen] = '\0';
    l->tls = false;
    if (sp) {
        sp += strspn(sp, " \t");
        if (strcmp(sp, "tls") != 0)
            return false;
        l->tls = true;
    }
    const char *colon = strrchr(v, ':');
    if (!colon)
        return false;
    size_t hlen = (size_t)(colon - v);
    const char *host = v;
    if (hlen >= 2 && v[0] == '[' && v[hlen - 1] == ']') { /* [::1]:8080 */
        host++;
        hlen -= 2;
    }
    int64_t port;
    if (hlen >= sizeof(l->host) || !sl_parse_int(colon + 1, &port) || port < 1 || port > 65535)
        return false;
    if (hlen == 0 || (hlen == 1 && host[0] == '*')) {
        strcpy(l->host, "0.0.0.0");
    } else {
        memcpy(l->host, host, hlen);
        l->host[hlen] = '\0';
    }
    l->port = (int)port;
    return true;
}

static bool parse_digest(struct parser *p, const char *v, uint8_t out[32], const char *what)
{
    if (strncmp(v, "sha256:", 7) == 0) {
        if (strlen(v + 7) != 64 || !sl_unhex(v + 7, out, 32)) {
            PERR(p, "%s: sha256: must be followed by 64 hex digits", what);
            return false;
        }
        return true;
    }
    if (strlen(v) < 8) {
        PERR(p, "%s: a plain key must be at least 8 characters", what);
        return false;
    }
    sl_sha256(v, strlen(v), out);
    log_warn("%s:%d: %s is given in plain text; write sha256:<hex> instead "
             "(printf %%s KEY | sha256sum)",
             p->path, p->lineno, what);
    return true;
}

/* env: secrets are read once and kept here, and taken out of the process's
 * environment, the copy /proc/PID/environ shows included: a reload finds
 * them here, nothing else finds them at all. */
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept_env {
    char *name, *value;
} *env_kept;
static int nenv_kept;

static char *env_secret(const char *name)
{
    char *out = NULL;
    pthread_mutex_lock(&env_lock);
    for (int i = 0; i < nenv_kept && !out; i++)
        if (strcmp(env_kept[i].name, name) == 0)
            out = sl_strdup(env_kept[i].value);
    const char *e = out ? NULL : getenv(name);
    if (e && *e) {
        out = sl_strdup(e);
        env_kept = sl_realloc(env_kept, sizeof(*env_kept) * (size_t)(nenv_kept + 1));
        env_kept[nenv_kept++] = (struct kept_env){ sl_strdup(name), sl_strdup(e) };
        size_t n = strlen(name);
        for (char **ev = environ; *ev; ev++)
            if (strncmp(*ev, name, n) == 0 && (*ev)[n] == '=')
                explicit_bzero(*ev + n + 1, strlen(*ev + n + 1));
        unsetenv(name);
    }
    pthread_mutex_unlock(&env_lock);
    return out;
}

void cfg_forget_environment(void)
{
    pthread_mutex_lock(&env_lock);
    for (int i = 0; i < nenv_kept; i++) {
        explicit_bzero(env_kept[i].value, strlen(env_kept[i].value));
        free(env_kept[i].name);
        free(env_kept[i].value);
    }
    free(env_kept);
    env_kept = NULL;
    nenv_kept = 0;
    pthread_mutex_unlock(&env_lock);
}

/* Where a value came from: the file itself, the environment, or a file. */
enum source { SRC_INLINE, SRC_ENV, SRC_FILE };

/* A permission problem: a warning, or an error with strict_permissions. */
static void perm_issue(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void perm_issue(struct parser *p, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    add_error(&p->perms, p->path, line, "%s", msg);
}

/* A file a value is read from: nobody else may write it, and nobody else
 * may read it when it holds a plain secret. */
static void check_value_file(struct parser *p, const char *path, bool plain_secret)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return;
    unsigned mode = (unsigned)(st.st_mode & 07777);
    if (st.st_mode & S_IWOTH)
        perm_issue(p, p->lineno, "%s is writable by other users (mode %04o)", path, mode);
    else if (plain_secret && (st.st_mode & S_IROTH))
        perm_issue(p, p->lineno, "%s holds a secret and is readable by other users (mode %04o)",
                   path, mode);
}

/* -C: where cred: values are read outside systemd (cfg_set_credentials). */
static const char *credentials_spec;

void cfg_set_credentials(const char *spec)
{
    credentials_spec = spec;
}

/* cred:NAME as a path in $CREDENTIALS_DIRECTORY (systemd's LoadCredential=),
 * or outside systemd in the folder -C names, after prefix; reported when it
 * cannot be one. */
static bool cred_path(struct parser *p, const char *v, const char *prefix, char *out, size_t n)
{
    const char *name = v + 5, *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!*name || strchr(name, '/')) {
        PERR(p, "%s: a credential name, not a path", v);
        return false;
    }
    if (dir && *dir) {
        snprintf(out, n, "%s%s/%s", prefix, dir, name);
        return true;
    }
    if (!credentials_spec) {
        PERR(p, "%s: CREDENTIALS_DIRECTORY is not set (systemd's LoadCredential= sets it); "
                "outside systemd, name the folder as the unit does: sluice -C "
                "sluice:/etc/sluice/credentials",
             v);
        return false;
    }
    const char *colon = credentials_spec[0] == '/' ? NULL : strchr(credentials_spec, ':');
    if (!colon) { /* -C DIR: the names are the file names */
        snprintf(out, n, "%s%s/%s", prefix, credentials_spec, name);
        return true;
    }
    size_t idlen = (size_t)(colon - credentials_spec);
    if (strncmp(name, credentials_spec, idlen) != 0 || name[idlen] != '_' || !name[idlen + 1]) {
        PERR(p, "%s: -C %s loads credentials named %.*s_FILE", v, credentials_spec, (int)idlen,
             credentials_spec);
        return false;
    }
    snprintf(out, n, "%s%s/%s", prefix, colon + 1, name + idlen + 1);
    return true;
}

/* Whether path is a regular file (or a link to one); reported if not: a
 * device, FIFO or socket would block or never end. */
static bool regular_file(struct parser *p, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        PERR(p, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        PERR(p, "%s is not a regular file", path);
        return false;
    }
    return true;
}

#define VALUE_LINE_MAX 65536 /* a secret or a value is far shorter */

/* The first line of a regular file, without its line end (a file: value). */
static char *first_line(struct parser *p, const char *path)
{
    if (!regular_file(p, path))
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        PERR(p, "cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    char *line = sl_malloc(VALUE_LINE_MAX + 2);
    size_t n = fgets(line, VALUE_LINE_MAX + 2, f) ? strlen(line) : 0;
    fclose(f);
    if (n > VALUE_LINE_MAX) {
        free(line);
        PERR(p, "%s: its first line is longer than %d bytes", path, VALUE_LINE_MAX);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (n == 0) {
        free(line);
        PERR(p, "%s is empty", path);
        return NULL;
    }
    return line;
}

/* A PEM file's path: /path, file:/path or cred:NAME. OpenSSL reads the
 * whole file, so it is not resolved as a value (its first line). */
static char *pem_path(struct parser *p, const struct option *o, const char *v)
{
    char path[4096];
    if (strncmp(v, "cred:", 5) == 0) {
        if (!cred_path(p, v, "", path, sizeof(path)))
            return NULL;
    } else {
        snprintf(path, sizeof(path), "%s", strncmp(v, "file:", 5) == 0 ? v + 5 : v);
    }
    if (access(path, R_OK) != 0) {
        PERR(p, "%s: cannot read %s: %s", o->name, path, strerror(errno));
        return NULL;
    }
    if (!regular_file(p, path))
        return NULL;
    check_value_file(p, path, o->flags & F_SECRET);
    return sl_strdup(path);
}

/* env:NAME, file:/path and cred:NAME (systemd's LoadCredential=, read from
 * $CREDENTIALS_DIRECTORY) indirections, for any value. Returns a malloc'd
 * string or NULL after reporting the error; *src says where it came from.
 * secret: the option holds one, so an env: one is taken out of the
 * environment and a file: one has its modes checked. */
static char *resolve_value(struct parser *p, const char *v, bool secret, enum source *src)
{
    *src = SRC_INLINE;
    if (strncmp(v, "cred:", 5) == 0) {
        char path[4096];
        if (!cred_path(p, v, "file:", path, sizeof(path)))
            return NULL;
        return resolve_value(p, path, secret, src);
    }
    if (strncmp(v, "env:", 4) == 0) {
        *src = SRC_ENV;
        const char *plain = secret ? NULL : getenv(v + 4);
        char *e = secret ? env_secret(v + 4) : plain && *plain ? sl_strdup(plain) : NULL;
        if (!e)
            PERR(p, "environment variable %s is not set", v + 4);
        return e;
    }
    if (strncmp(v, "file:", 5) == 0) {
        *src = SRC_FILE;
        char *line = first_line(p, v + 5);
        if (line)
            check_value_file(p, v + 5, secret && strncmp(line, "sha256:", 7) != 0);
        return line;
    }
    return sl_strdup(v);
}

static int find_option(enum scope scope, const char *name)
{
    for (int i = 0; i < cfg_noptions; i++)
        if (cfg_options[i].scope == scope && strcmp(cfg_options[i].name, name) == 0)
            return i;
    return -1;
}

/* Stores value v for option o into obj. Reports and returns false on error. */
/* One setter per option type: parses v into the option's field, or reports
 * why it cannot (file:line) and returns false. */
typedef bool setter(struct parser *p, const struct option *o, void *field, const char *v);

/* T_INT, T_DURATION, T_SIZE: a number within the option's bounds. */
static bool set_number(struct parser *p, const struct option *o, void *field, const char *v)
{
    int64_t n = 0;
    bool ok = o->type == T_INT        ? sl_parse_int(v, &n)
              : o->type == T_DURATION ? sl_parse_duration_ms(v, &n)
                                      : sl_parse_size(v, &n);
    if (!ok) {
        PERR(p, "%s: '%s' is not a %s", o->name, SHOWN(v), cfg_type_names[o->type]);
        return false;
    }
    if (n < o->min || n > o->max) {
        PERR(p, "%s: %s is out of range [%lld, %lld]", o->name, v, (long long)o->min,
             (long long)o->max);
        return false;
    }
    *(int64_t *)field = n;
    return true;
}

/* N/s or N/m, as requests per minute (0: none). */
static bool set_rate(struct parser *p, const struct option *o, void *field, const char *v)
{
    int64_t n = 0;
    const char *slash = strchr(v, '/');
    char num[24];
    size_t len = slash ? (size_t)(slash - v) : strlen(v);
    bool ok = len > 0 && len < sizeof(num);
    if (ok) {
        memcpy(num, v, len);
        num[len] = '\0';
        ok = sl_parse_int(num, &n) && n >= 0 && n <= 1000000 &&
             (slash ? strcmp(slash, "/s") == 0 || strcmp(slash, "/m") == 0 : n == 0);
    }
    if (!ok) {
        PERR(p, "%s: '%s' is not a rate such as 10/s or 300/m (at most 1000000; 0 = none)",
             o->name, SHOWN(v));
        return false;
    }
    *(int64_t *)field = slash && slash[1] == 's' ? n * 60 : n;
    return true;
}

static bool set_bool(struct parser *p, const struct option *o, void *field, const char *v)
{
    if (!sl_parse_bool(v, (bool *)field)) {
        PERR(p, "%s: '%s' is not yes/no, on/off or true/false", o->name, SHOWN(v));
        return false;
    }
    return true;
}

/* T_STRING, T_URL (http or https, without trailing slashes). */
static bool set_string(struct parser *p, const struct option *o, void *field, const char *v)
{
    if (o->type == T_URL && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
        PERR(p, "%s: '%s' must start with http:// or https://", o->name, SHOWN(v));
        return false;
    }
    if (!*v) {
        PERR(p, "%s: empty value", o->name);
        return false;
    }
    char *s = sl_strdup(v);
    if (o->type == T_URL)
        for (size_t len = strlen(s); len > 0 && s[len - 1] == '/'; len--)
            s[len - 1] = '\0';
    free(*(char **)field);
    *(char **)field = s;
    return true;
}

static bool set_enum(struct parser *p, const struct option *o, void *field, const char *v)
{
    for (int i = 0; o->choices[i]; i++) {
        if (strcasecmp(o->choices[i], v) == 0) {
            *(int *)field = i;
            return true;
        }
    }
    struct sl_buf list = { 0 };
    for (int i = 0; o->choices[i]; i++)
        sl_buf_printf(&list, "%s%s", i ? ", " : "", o->choices[i]);
    PERR(p, "%s: '%s' is not one of %s", o->name, SHOWN(v), list.data);
    sl_buf_free(&list);
    return false;
}

static bool set_models(struct parser *p, const struct option *o, void *field, const char *v)
{
    if (!parse_models(v, field)) {
        PERR(p, "%s: '%s' is not a comma-separated list of model names or *", o->name, SHOWN(v));
        return false;
    }
    return true;
}

static bool set_headers(struct parser *p, const struct option *o, void *field, const char *v)
{
    return parse_headers(p, o, v, field);
}

/* T_MONEY (micro-dollars) and T_RATIO (millionths, as money is). */
static bool set_money(struct parser *p, const struct option *o, void *field, const char *v)
{
    int64_t n;
    if (!sl_parse_money(v, &n) || n > o->max) {
        PERR(p, "%s: '%s' is not %s (digits, at most 6 decimals)", o->name, SHOWN(v),
             o->type == T_RATIO ? "a ratio from 0 to 1" : "an amount of USD");
        return false;
    }
    *(int64_t *)field = n;
    return true;
}

static bool set_statuses(struct parser *p, const struct option *o, void *field, const char *v)
{
    if (!parse_statuses(v, field)) {
        PERR(p, "%s: '%s' is not a list of statuses or ranges (100-599)", o->name, SHOWN(v));
        return false;
    }
    return true;
}

static bool set_listen(struct parser *p, const struct option *o, void *field, const char *v)
{
    struct cfg_listens *ls = field;
    struct cfg_listen l;
    if (!parse_listen(v, &l)) {
        PERR(p, "%s: '%s' is not host:port or host:port tls", o->name, SHOWN(v));
        return false;
    }
    ls->v = sl_realloc(ls->v, sizeof(l) * (size_t)(ls->n + 1));
    ls->v[ls->n++] = l;
    return true;
}

static bool set_digest(struct parser *p, const struct option *o, void *field, const char *v)
{
    return parse_digest(p, v, field, o->name);
}

static bool set_pem(struct parser *p, const struct option *o, void *field, const char *v)
{
    char *path = pem_path(p, o, v);
    if (!path)
        return false;
    free(*(char **)field);
    *(char **)field = path;
    return true;
}

static bool set_time(struct parser *p, const struct option *o, void *field, const char *v)
{
    if (!sl_parse_time(v, field)) {
        PERR(p, "%s: '%s' is not an RFC 3339 time such as 2027-01-01T00:00:00Z", o->name,
             SHOWN(v));
        return false;
    }
    return true;
}

static setter *const setters[] = {
    [T_INT] = set_number,     [T_DURATION] = set_number, [T_SIZE] = set_number,
    [T_BOOL] = set_bool,      [T_STRING] = set_string,   [T_URL] = set_string,
    [T_LISTEN] = set_listen,  [T_ENUM] = set_enum,       [T_MODELS] = set_models,
    [T_STATUS] = set_statuses, [T_HEADERS] = set_headers, [T_DIGEST] = set_digest,
    [T_MONEY] = set_money,    [T_PEM] = set_pem,         [T_RATIO] = set_money,
    [T_TIME] = set_time,      [T_RATE] = set_rate,
};

static bool set_option(struct parser *p, const struct option *o, void *obj, const char *v)
{
    return setters[o->type](p, o, (char *)obj + o->offset, v);
}

/* ---- sections ------------------------------------------------------------- */

/* Section names become metric labels and log fields. Model names may also
 * hold ':' '/' '@' '+' (ft:gpt-4o:org:x, meta-llama/Llama-3-8B). */
static bool valid_name(const char *s, enum scope scope)
{
    if (!*s || strlen(s) > CFG_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.' &&
            !(scope == SCOPE_MODEL && strchr(":/@+", *s)))
            return false;
    return true;
}

static void apply_defaults(struct parser *p, enum scope scope, void *obj)
{
    for (int i = 0; i < cfg_noptions; i++) {
        const struct option *o = &cfg_options[i];
        if (o->scope == scope && o->def && !set_option(p, o, obj, o->def))
            log_error("internal: bad default for %s", o->name);
    }
}

static struct section *find_scope(struct parser *p, enum scope scope)
{
    for (int i = 0; i < p->nsections; i++)
        if (p->sections[i].scope == scope)
            return &p->sections[i];
    return NULL;
}

/* "[title name]  ; comment" -> title and name, trimmed in place; false
 * (reported) for anything else. */
static bool read_header(struct parser *p, char *header, char **title, char **name)
{
    char *end = strchr(header, ']');
    if (!end) {
        PERR(p, "section header without ']'");
        return false;
    }
    *end = '\0';
    char *rest = trim(end + 1);
    if (*rest && *rest != ';' && *rest != '#') {
        PERR(p, "unexpected text after section header");
        return false;
    }
    char *t = trim(header + 1), *n = t;
    while (*n && !isspace((unsigned char)*n))
        n++;
    if (*n)
        *n++ = '\0';
    *title = t;
    *name = trim(n);
    return true;
}

/* The scope a section's title names; false (reported) for none. */
static bool scope_of_title(struct parser *p, const char *title, enum scope *scope)
{
    static const struct {
        const char *title;
        enum scope scope;
    } singles[] = { { "server", SCOPE_SERVER }, { "redis", SCOPE_REDIS },
                    { "telemetry", SCOPE_TELEMETRY }, { "auth", SCOPE_AUTH } };
    for (size_t i = 0; i < SL_ARRAY_LEN(singles); i++) {
        if (strcmp(title, singles[i].title) == 0) {
            *scope = singles[i].scope;
            return true;
        }
    }
    for (size_t i = 0; i < SL_ARRAY_LEN(named_scopes); i++) {
        if (strcmp(title, named_scopes[i].title) == 0) {
            *scope = named_scopes[i].scope;
            return true;
        }
    }
    PERR(p, "unknown section [%s]", title);
    return false;
}

/* The section's name is right for its scope and not taken; false (reported) if not. */
static bool new_section_name(struct parser *p, enum scope scope, const char *title,
                             const char *name)
{
    const struct named_scope *ns = named_scope_of(scope);
    char plain[CFG_NAME_MAX + 2];
    const char *checked = name;
    size_t len = strlen(name);
    if (scope == SCOPE_MODEL && len > 1 && len <= CFG_NAME_MAX && name[len - 1] == '*') {
        memcpy(plain, name, len - 1); /* [model NAME*]: the prices of every model NAME starts */
        plain[len - 1] = '\0';
        checked = plain;
    }
    if (ns && !valid_name(checked, scope)) {
        PERR(p, "[%s NAME] needs a name of letters, digits, '-', '_' or '.' (at most 64)", title);
        return false;
    }
    if (!ns && *name) {
        PERR(p, "[%s] takes no name", title);
        return false;
    }
    const struct section *prev = ns ? NULL : find_scope(p, scope);
    int had = ns ? sl_names_find(names_of(p->cfg, ns), name, strlen(name)) : -1;
    if (prev || had >= 0) {
        PERR(p, "section [%s%s%s] already defined at line %d", title, ns ? " " : "", name,
             prev ? prev->line : ((struct named_head *)named_element(p->cfg, ns, had))->line);
        return false;
    }
    return true;
}

/* A new element of a named scope's array, found by its name; its index. */
static int add_named(struct parser *p, const struct named_scope *ns, const char *name)
{
    struct config *c = p->cfg;
    char **array = (char **)((char *)c + ns->array);
    int *count = (int *)((char *)c + ns->count);
    *array = sl_grow(*array, ns->size, *count);
    struct named_head *h = named_element(c, ns, *count);
    memset(h, 0, ns->size);
    h->name = sl_strdup(name);
    h->line = p->lineno;
    sl_names_add(names_of(c, ns), h->name, strlen(h->name), *count, NULL);
    return (*count)++;
}

/* The struct of [server], [redis] or [telemetry] (the last two: now enabled). */
static void *single_section(struct config *c, enum scope scope)
{
    if (scope == SCOPE_REDIS) {
        c->redis.enabled = true;
        return &c->redis;
    }
    if (scope == SCOPE_TELEMETRY) {
        c->telemetry.enabled = true;
        return &c->telemetry;
    }
    if (scope == SCOPE_AUTH) {
        c->auth.enabled = true;
        return &c->auth;
    }
    return &c->server;
}

/* Called by the line reader for every [header]. */
static void open_section(struct parser *p, char *header)
{
    p->cur = NULL;
    p->bad_section = true;
    char *title, *name;
    enum scope scope;
    if (!read_header(p, header, &title, &name) || !scope_of_title(p, title, &scope) ||
        !new_section_name(p, scope, title, name))
        return;
    const struct named_scope *ns = named_scope_of(scope);
    p->sections = sl_grow(p->sections, sizeof(*p->sections), p->nsections);
    struct section *sec = &p->sections[p->nsections++];
    memset(sec, 0, sizeof(*sec));
    sec->scope = scope;
    if (ns)
        sec->index = add_named(p, ns, name);
    else
        sec->single = single_section(p->cfg, scope);
    sec->line = p->lineno;
    p->cur = sec;
    p->bad_section = false;
    if (ns)
        apply_defaults(p, scope, section_obj(p, sec));
}

/* ---- inih glue ------------------------------------------------------------- */

/* inih's reader: hands over one physical line at a time, counting lines and
 * catching what inih would report poorly (section headers, overlong lines,
 * lines that are neither section nor name = value). */
static char *read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    p->maxline = num;
    ssize_t n = getline(&p->linebuf, &p->linecap, p->fp);
    if (n < 0)
        return NULL;
    p->lineno++;
    char *line = p->linebuf;
    if (p->lineno == 1 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
        (unsigned char)line[2] == 0xBF)
        line += 3;
    char *t = trim(line);
    str[0] = '\n';
    str[1] = '\0';
    if (!*t || *t == ';' || *t == '#')
        return str;
    if ((size_t)n + 1 >= (size_t)num) {
        PERR(p, "line too long (at most %d characters)", num - 2);
        return str;
    }
    if (*t == '[') {
        /* Scan a copy: open_section modifies the text. */
        char *copy = sl_strdup(t);
        open_section(p, copy);
        free(copy);
        return str; /* inih never sees sections; the handler uses p->cur */
    }
    if (!strchr(t, '=')) {
        PERR(p, "expected 'name = value'");
        return str;
    }
    if (isspace((unsigned char)line[0])) {
        PERR(p, "continuation lines are not supported; put the value on one line");
        return str;
    }
    memcpy(str, line, (size_t)n + 1);
    return str;
}

static int on_value(void *user, const char *section, const char *name, const char *value)
{
    (void)section;
    struct parser *p = user;
    if (p->bad_section)
        return 1; /* already reported at the header */
    if (!p->cur) {
        PERR(p, "'%s' is outside any section", name);
        return 1;
    }
    struct section *sec = p->cur;
    int idx = find_option(sec->scope, name);
    if (idx < 0) {
        PERR(p, "unknown key '%s' in [%s]", name, cfg_scope_names[sec->scope]);
        return 1;
    }
    const struct option *o = &cfg_options[idx];
    if (sec->set_at[idx] && !(o->flags & F_REPEAT)) {
        PERR(p, "'%s' already set at line %d", name, sec->set_at[idx]);
        return 1;
    }
    bool secret = o->flags & F_SECRET;
    enum source src = SRC_FILE;
    char *v = o->type == T_PEM ? sl_strdup(value) : resolve_value(p, value, secret, &src);
    if (!v)
        return 1;
    bool plain = secret && strncmp(v, "sha256:", 7) != 0 &&
                 (sec->scope != SCOPE_REDIS || strchr(v, '@')); /* a Redis URL: its password */
    if (src == SRC_INLINE && plain && p->readable_by_others)
        perm_issue(p, p->lineno, "%s holds a plain secret and the file is readable by other users "
                   "(mode %04o); use env:, file: or cred:, or chmod o-r", name, p->mode);
    if (o->type == T_LISTEN && !sec->set_at[idx]) /* the first one replaces the default */
        ((struct cfg_listens *)((char *)section_obj(p, sec) + o->offset))->n = 0;
    if (set_option(p, o, section_obj(p, sec), v))
        sec->set_at[idx] = p->lineno;
    free(v);
    return 1;
}

/* ---- whole-file checks -------------------------------------------------------- */

static void check_required(struct parser *p)
{
    for (int s = 0; s < p->nsections; s++) {
        struct section *sec = &p->sections[s];
        for (int i = 0; i < cfg_noptions; i++) {
            if (cfg_options[i].scope == sec->scope && (cfg_options[i].flags & F_REQUIRED) &&
                !sec->set_at[i])
                add_error(p->errs, p->path, sec->line, "[%s] needs '%s'",
                          cfg_scope_names[sec->scope], cfg_options[i].name);
        }
    }
}

/* [model] prices left unset are -1 (cached: the input price). A model a
 * backend lists without both prices costs nothing: said once, or an error
 * with require_prices. */
static void check_prices(struct parser *p)
{
    struct config *c = p->cfg;
    for (int i = 0; i < p->nsections; i++) {
        struct section *sec = &p->sections[i];
        if (sec->scope != SCOPE_MODEL)
            continue;
        struct cfg_model *m = section_obj(p, sec);
        if (!sec->set_at[find_option(SCOPE_MODEL, "input_price")])
            m->input_price = -1;
        if (!sec->set_at[find_option(SCOPE_MODEL, "output_price")])
            m->output_price = -1;
        if (!sec->set_at[find_option(SCOPE_MODEL, "request_price")])
            m->request_price = -1;
        if (!sec->set_at[find_option(SCOPE_MODEL, "cached_input_price")])
            m->cached_input_price = m->input_price;
        if (!sec->set_at[find_option(SCOPE_MODEL, "cache_write_price")])
            m->cache_write_price = m->input_price;
    }
    for (int i = 0; i < c->nmodels; i++) {
        if (!cfg_model_is_prefix(&c->models[i]))
            continue;
        c->prefix_models = sl_grow(c->prefix_models, sizeof(int), c->nprefix_models);
        c->prefix_models[c->nprefix_models++] = i;
    }
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_models *ms = &c->backends[i].models;
        for (int j = 0; j < ms->n; j++) {
            const char *name = ms->names[j];
            bool listed_before = false;
            for (int k = 0; k <= i && !listed_before; k++)
                for (int l = 0; l < (k == i ? j : c->backends[k].models.n) && !listed_before; l++)
                    listed_before = strcmp(c->backends[k].models.names[l], name) == 0;
            const struct cfg_model *pm = cfg_priced_model(c, name);
            if (listed_before || cfg_prices_tokens(pm) || (pm && pm->request_price >= 0))
                continue;
            if (c->server.require_prices)
                add_error(p->errs, p->path, c->backends[i].line,
                          "[backend %s] lists %s, which has no [model %s] with input_price and "
                          "output_price (require_prices = on)",
                          c->backends[i].name, name, name);
            else
                log_info("%s: model %s has no price for its input or output ([model %s] "
                         "input_price, output_price): those tokens cost 0",
                         p->path, name, name);
        }
    }
}

/* Whether some backend lists the model (or serves any). */
static bool served(const struct config *c, const char *name)
{
    for (int i = 0; i < c->nbackends; i++)
        if (cfg_models_match(&c->backends[i].models, name, strlen(name)))
            return true;
    return false;
}

/* [model] routing: the upstream name is served; fallbacks name models that
 * are (after their own upstream name), never `*` or the model itself. */
static void check_model_routes(struct parser *p)
{
    struct config *c = p->cfg;
    for (int i = 0; i < c->nmodels; i++) {
        const struct cfg_model *m = &c->models[i];
        if (cfg_model_is_prefix(m)) {
            if (m->upstream || m->fallbacks.n || m->context_fallbacks.n)
                add_error(p->errs, p->path, m->line,
                          "[model %s] holds prices only (no upstream or fallbacks)", m->name);
            continue;
        }
        if (m->upstream && (!valid_name(m->upstream, SCOPE_MODEL) || !served(c, m->upstream)))
            add_error(p->errs, p->path, m->line,
                      "[model %s]: upstream %s must be a model name a backend lists", m->name,
                      m->upstream);
        const struct cfg_models *lists[2] = { &m->fallbacks, &m->context_fallbacks };
        for (int l = 0; l < 2; l++) {
            if (lists[l]->any)
                add_error(p->errs, p->path, m->line, "[model %s]: %s cannot be *", m->name,
                          l ? "context_fallbacks" : "fallbacks");
            for (int j = 0; j < lists[l]->n; j++) {
                const char *f = lists[l]->names[j];
                if (strcmp(f, m->name) == 0 || !served(c, cfg_upstream_name(c, f)))
                    add_error(p->errs, p->path, m->line,
                              "[model %s]: %s names %s, which no backend serves%s", m->name,
                              l ? "context_fallbacks" : "fallbacks", f,
                              strcmp(f, m->name) == 0 ? " but this model itself" : "");
            }
        }
    }
}

/* Periods, and each key's team. */
static void check_budgets(struct parser *p)
{
    struct config *c = p->cfg;
    for (int i = 0; i < c->nkeys; i++) {
        struct cfg_key *k = &c->keys[i];
        if (k->quota && k->quota_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, k->line,
                      "[key %s]: quota needs quota_period = day, week, month or total", k->name);
        if (k->budget && k->budget_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, k->line,
                      "[key %s]: budget needs budget_period = day, week, month or total", k->name);
        if (k->users.budget && k->users.budget_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, k->line,
                      "[key %s]: user_budget needs user_budget_period = day, week, month or total",
                      k->name);
        if (k->team_name && !(k->team = cfg_find_team(c, k->team_name)))
            add_error(p->errs, p->path, k->line, "[key %s]: team %s has no [team %s] section",
                      k->name, k->team_name, k->team_name);
        if (k->require_user && k->trust_user == TRUST_USER_NO)
            add_error(p->errs, p->path, k->line,
                      "[key %s]: require_user needs trust_user = header or body", k->name);
    }
    static const uint8_t unset[32];
    for (int i = 0; i < c->nteams; i++) {
        if (c->teams[i].budget && c->teams[i].budget_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, c->teams[i].line,
                      "[team %s]: budget needs budget_period = day, week, month or total",
                      c->teams[i].name);
        if (c->teams[i].users.budget && c->teams[i].users.budget_period == QUOTA_PERIOD_NONE)
            add_error(p->errs, p->path, c->teams[i].line,
                      "[team %s]: user_budget needs user_budget_period = day, week, month or total",
                      c->teams[i].name);
        c->teams[i].admin_enabled = memcmp(c->teams[i].admin_digest, unset, 32) != 0;
    }
}

/* A budget that reaches models without a price: said at load (and by
 * sluice -t), as such calls are refused (unpriced_models = deny) or free.
 * One line for the keys that may call any model of a models = * backend, one
 * per unpriced model: 100,000 keys do not make 100,000 lines. */
struct reach {
    const char *model; /* NULL: any model of a models = * backend */
    const char *first; /* the first key that reaches it */
    int keys;
};

static void add_reach(struct reach **r, int *n, const char *model, const char *key)
{
    for (int i = 0; i < *n; i++)
        if ((*r)[i].model == model || ((*r)[i].model && model && strcmp((*r)[i].model, model) == 0)) {
            (*r)[i].keys++;
            return;
        }
    *r = sl_grow(*r, sizeof(**r), *n);
    (*r)[(*n)++] = (struct reach){ model, key, 1 };
}

/* Whether a name the key may call lacks every price (said once per key). */
static bool unpriced_name(const struct config *c, const struct cfg_models *ms, int j, int b)
{
    const char *name = ms->names[j];
    for (int e = 0; e < b; e++) /* listed by an earlier backend: already seen */
        for (int l = 0; l < c->backends[e].models.n; l++)
            if (strcmp(c->backends[e].models.names[l], name) == 0)
                return false;
    for (int l = 0; l < j; l++)
        if (strcmp(ms->names[l], name) == 0)
            return false;
    const struct cfg_model *pm = cfg_priced_model(c, name);
    return !cfg_prices_tokens(pm) && !(pm && pm->request_price >= 0);
}

static void check_budget_reach(struct parser *p)
{
    const struct config *c = p->cfg;
    struct reach *r = NULL;
    int n = 0;
    for (int i = 0; i < c->nkeys; i++) {
        const struct cfg_key *k = &c->keys[i];
        if (!cfg_key_has_budget(k, k->team))
            continue;
        for (int b = 0; b < c->nbackends && k->models.any; b++)
            if (c->backends[b].models.any) {
                add_reach(&r, &n, NULL, k->name);
                break;
            }
        /* the models it may name: its own list, or every one a backend lists */
        for (int b = k->models.any ? 0 : -1; b < (k->models.any ? c->nbackends : 0); b++) {
            const struct cfg_models *ms = b < 0 ? &k->models : &c->backends[b].models;
            for (int j = 0; j < ms->n; j++)
                if (unpriced_name(c, ms, j, b))
                    add_reach(&r, &n, ms->names[j], k->name);
        }
    }
    const char *fate = c->server.unpriced_models ? "cost nothing (unpriced_models = allow)"
                                                 : "are refused (unpriced_models = deny)";
    for (int i = 0; i < n; i++) {
        char who[CFG_NAME_MAX + 80];
        if (r[i].keys > 1)
            snprintf(who, sizeof(who), "[key %s] and %d other key%s with a budget may", r[i].first,
                     r[i].keys - 1, r[i].keys > 2 ? "s" : "");
        else
            snprintf(who, sizeof(who), "[key %s] has a budget and may", r[i].first);
        if (!r[i].model)
            log_warn("%s: %s call any model of a models = * backend: those without a price "
                     "([model NAME] or [model NAME*]) %s",
                     p->path, who, fate);
        else
            log_warn("%s: %s call %s, which has no price: its calls %s", p->path, who, r[i].model,
                     fate);
    }
    free(r);
}

/* The model names the config names (backends' and keys' lists, [model]
 * sections), each once, for cfg_model_label: O(1) per request. */
static void add_label(struct config *c, const char *name)
{
    if (sl_names_find(&c->label_names, name, strlen(name)) >= 0)
        return;
    c->labels = sl_grow(c->labels, sizeof(*c->labels), c->nlabels);
    c->labels[c->nlabels] = name;
    sl_names_add(&c->label_names, name, strlen(name), c->nlabels++, NULL);
}

static void index_labels(struct config *c)
{
    for (int i = 0; i < c->nbackends; i++)
        for (int j = 0; j < c->backends[i].models.n; j++)
            add_label(c, c->backends[i].models.names[j]);
    for (int i = 0; i < c->nkeys; i++)
        for (int j = 0; j < c->keys[i].models.n; j++)
            add_label(c, c->keys[i].models.names[j]);
    for (int i = 0; i < c->nmodels; i++)
        if (!cfg_model_is_prefix(&c->models[i]))
            add_label(c, c->models[i].name);
}

/* With a listener marked tls: the context, made now so `sluice -t` and a
 * reload report a bad certificate or key (a failed reload keeps the old). */
static void check_tls(struct parser *p)
{
    struct config *c = p->cfg;
    const struct cfg_server *s = &c->server;
    bool any = false;
    for (int i = 0; i < s->listen.n; i++)
        any |= s->listen.v[i].tls;
    for (int i = 0; i < s->admin_listen.n; i++)
        any |= s->admin_listen.v[i].tls;
    if (!any)
        return;
    if (!s->tls_cert || !s->tls_key) {
        add_error(p->errs, p->path, 0, "a listener marked tls needs tls_cert and tls_key in [server]");
        return;
    }
    char err[512];
    c->tls = tls_server_new(s->tls_cert, s->tls_key, s->tls_client_ca, err, sizeof(err));
    if (!c->tls) {
        add_error(p->errs, p->path, 0, "%s", err);
        return;
    }
    int days;
    if (!tls_cert_days_left(s->tls_cert, &days))
        return;
    if (days < 0)
        log_warn("%s: tls_cert %s expired %d day%s ago", p->path, s->tls_cert, -days,
                 days == -1 ? "" : "s");
    else if (days < 14)
        log_warn("%s: tls_cert %s expires in %d day%s", p->path, s->tls_cert, days,
                 days == 1 ? "" : "s");
}

/* rediss: the files make a TLS context now, so that a bad one stops the
 * start (and `sluice -t`) rather than every connection. */
static void check_redis_tls(struct parser *p, struct section *rds, const struct redis_url *url)
{
    const struct cfg_redis *r = &p->cfg->redis;
    int line = rds->line;
    if (!r->client_cert != !r->client_key) {
        add_error(p->errs, p->path, line, "client_cert and client_key go together");
        return;
    }
    bool tls_opts = r->ca_file || r->client_cert || !r->tls_verify;
    if (!url->tls) {
        if (tls_opts)
            add_error(p->errs, p->path, line,
                      "ca_file, client_cert, client_key and tls_verify are for rediss:// urls");
        return;
    }
    if (url->path[0])
        return;
    char err[512];
    struct ssl_ctx_st *ctx =
        tls_client_new(r->ca_file, r->client_cert, r->client_key, r->tls_verify, err, sizeof(err));
    if (!ctx)
        add_error(p->errs, p->path, line, "%s", err);
    tls_ctx_free(ctx);
}

/* [redis] url, and whether admin_key and metrics_key were set. */
static void check_server_and_redis(struct parser *p)
{
    struct config *c = p->cfg;
    struct section *rds = find_scope(p, SCOPE_REDIS);
    const char *why;
    struct redis_url url;
    if (rds && !redis_url_parse(c->redis.url, &url, &why)) {
        int url_line = rds->set_at[find_option(SCOPE_REDIS, "url")];
        add_error(p->errs, p->path, url_line ? url_line : rds->line, "url: %s", why);
    } else if (rds) {
        check_redis_tls(p, rds, &url);
    }
    struct section *srv = find_scope(p, SCOPE_SERVER);
    c->server.admin_enabled = srv && srv->set_at[find_option(SCOPE_SERVER, "admin_key")];
    c->server.metrics_protected = srv && srv->set_at[find_option(SCOPE_SERVER, "metrics_key")];
    if (c->server.listen.n == 0)
        add_error(p->errs, p->path, 0, "no listen address");
    const struct cfg_models *pass = &c->server.passthrough_paths;
    for (int i = 0; i < pass->n; i++) {
        const char *path = pass->names[i];
        size_t n = strlen(path);
        if (n < 5 || strncmp(path, "/v1/", 4) != 0 || path[n - 1] == '/' || strstr(path, "//"))
            add_error(p->errs, p->path, srv->set_at[find_option(SCOPE_SERVER, "passthrough_paths")],
                      "passthrough_paths: '%s' is not a /v1 path such as /v1/foo", path);
    }
    if (pass->any)
        add_error(p->errs, p->path, srv->set_at[find_option(SCOPE_SERVER, "passthrough_paths")],
                  "passthrough_paths: name the /v1 paths; * would let any endpoint go unaccounted");
}

/* The backend stateful calls go to: the one marked stateful = yes (one at
 * most), else the first by priority. */
static void pick_stateful_backend(struct parser *p)
{
    struct config *c = p->cfg;
    c->stateful_backend = -1;
    for (int i = 0; i < c->nbackends; i++) {
        if (!c->backends[i].stateful)
            continue;
        if (c->stateful_backend >= 0)
            add_error(p->errs, p->path, c->backends[i].line,
                      "[backend %s]: stateful = yes, but [backend %s] already is; one at most",
                      c->backends[i].name, c->backends[c->stateful_backend].name);
        else
            c->stateful_backend = i;
    }
    if (c->stateful_backend >= 0 || c->nbackends == 0)
        return;
    int best = 0; /* the resources are OpenAI's: an anthropic backend only if all are */
    for (int i = 1; i < c->nbackends; i++) {
        bool a = c->backends[i].type == BACKEND_ANTHROPIC;
        bool best_a = c->backends[best].type == BACKEND_ANTHROPIC;
        if (a < best_a || (a == best_a && c->backends[i].priority < c->backends[best].priority))
            best = i;
    }
    c->stateful_backend = best;
}

/* Whether any backend can continue a cut stream (prefill = yes): the proxy
 * keeps a stream's text only then. Whether any speaks Anthropic's dialect. */
static void note_prefill(struct config *c)
{
    for (int i = 0; i < c->nbackends; i++) {
        c->any_prefill |= c->backends[i].prefill;
        c->any_anthropic |= c->backends[i].type == BACKEND_ANTHROPIC;
        c->any_openai |= c->backends[i].type != BACKEND_ANTHROPIC;
    }
}

/* What a backend's type and URL allow. */
static void check_backend(struct parser *p, const struct cfg_backend *be)
{
    if (be->type == BACKEND_AZURE && !be->api_version)
        add_error(p->errs, p->path, be->line, "[backend %s] of type azure needs api_version",
                  be->name);
    if (be->type != BACKEND_AZURE && (be->api_version || be->deployment))
        add_error(p->errs, p->path, be->line,
                  "[backend %s]: api_version and deployment are for type = azure", be->name);
    if (be->type == BACKEND_ANTHROPIC && (be->stateful || be->prefill || be->organization ||
                                          be->project))
        add_error(p->errs, p->path, be->line,
                  "[backend %s]: stateful, prefill, organization and project are not for type = "
                  "anthropic", be->name);
    bool https = be->url && strncmp(be->url, "https://", 8) == 0;
    if (!https && (be->ca_file || be->client_cert || be->client_key || !be->tls_verify))
        add_error(p->errs, p->path, be->line,
                  "[backend %s]: ca_file, client_cert, client_key and tls_verify are for "
                  "https:// URLs",
                  be->name);
    if (!be->client_cert != !be->client_key)
        add_error(p->errs, p->path, be->line,
                  "[backend %s]: client_cert and client_key go together", be->name);
    if (https && !be->tls_verify)
        log_warn("%s:%d: [backend %s] tls_verify = no: its certificate is not checked, "
                 "anyone on the path can read the API key",
                 p->path, be->line, be->name);
}

/* No two keys with one secret; at least one backend, at most 256. */
static void check_counts_and_keys(struct parser *p)
{
    struct config *c = p->cfg;
    struct sl_names digests = { 0 };
    for (int i = 0, j; i < c->nkeys; i++)
        if (!sl_names_add(&digests, c->keys[i].digest, 32, i, &j))
            add_error(p->errs, p->path, c->keys[i].line,
                      "[key %s] has the same key as [key %s]", c->keys[i].name, c->keys[j].name);
    /* an operator's key that is also a client's would give that client the operator's view */
    struct section *srv = find_scope(p, SCOPE_SERVER);
    const struct {
        bool set;
        const uint8_t *digest;
        const char *name;
    } operator_keys[] = { { c->server.admin_enabled, c->server.admin_digest, "admin_key" },
                          { c->server.metrics_protected, c->server.metrics_digest, "metrics_key" } };
    for (size_t k = 0; k < SL_ARRAY_LEN(operator_keys); k++) {
        int i = operator_keys[k].set ? sl_names_find(&digests, operator_keys[k].digest, 32) : -1;
        if (i >= 0)
            add_error(p->errs, p->path,
                      srv ? srv->set_at[find_option(SCOPE_SERVER, operator_keys[k].name)] : 0,
                      "%s is the key of [key %s]; an operator's key must be its own",
                      operator_keys[k].name, c->keys[i].name);
    }
    for (int t = 0; t < c->nteams; t++) {
        const struct cfg_team *team = &c->teams[t];
        int i = team->admin_enabled ? sl_names_find(&digests, team->admin_digest, 32) : -1;
        if (i >= 0)
            add_error(p->errs, p->path, team->line,
                      "[team %s] admin_key is the key of [key %s]; an operator's key must be its own",
                      team->name, c->keys[i].name);
        if (team->admin_enabled && c->server.admin_enabled &&
            memcmp(team->admin_digest, c->server.admin_digest, 32) == 0)
            add_error(p->errs, p->path, team->line,
                      "[team %s] admin_key is [server] admin_key; a team's must be its own",
                      team->name);
    }
    sl_names_free(&digests);
    if (c->nbackends > 256)
        add_error(p->errs, p->path, 0, "at most 256 [backend] sections are supported");
    if (c->nbackends == 0)
        add_error(p->errs, p->path, 0, "no [backend NAME] section: nowhere to send requests");
    if (c->nkeys == 0)
        log_warn("%s: no [key NAME] section: every API request will be refused", p->path);
}

/* Everything that spans options or sections, once the whole file is read. */
/* [auth]: its key profile, its algorithms, where its keys come from. */
static void check_auth(struct parser *p)
{
    struct cfg_auth *a = &p->cfg->auth;
    if (!a->enabled)
        return;
    int line = find_scope(p, SCOPE_AUTH) ? find_scope(p, SCOPE_AUTH)->line : 0;
    if (a->key_profile && !(a->profile = cfg_find_key(p->cfg, a->key_profile)))
        add_error(p->errs, p->path, line, "[auth]: key_profile names no [key %s]", a->key_profile);
    a->algs = 0;
    for (int i = 0; i < a->algorithms.n; i++) {
        int bit = jwt_alg_of(a->algorithms.names[i]);
        if (!bit)
            add_error(p->errs, p->path, line,
                      "[auth]: algorithm %s is not accepted (RS256, ES256 or EdDSA; none and HMAC "
                      "never are)", a->algorithms.names[i]);
        a->algs |= bit;
    }
    if (a->jwks && strncmp(a->jwks, "http://", 7) == 0)
        add_error(p->errs, p->path, line, "[auth]: jwks must be a file or an https:// URL");
}

static void check_config(struct parser *p)
{
    check_required(p);
    check_server_and_redis(p);
    pick_stateful_backend(p);
    note_prefill(p->cfg);
    for (int i = 0; i < p->cfg->nbackends; i++)
        check_backend(p, &p->cfg->backends[i]);
    check_prices(p);
    check_model_routes(p);
    check_budgets(p);
    check_budget_reach(p);
    check_counts_and_keys(p);
    check_auth(p);
    index_labels(p->cfg);
    check_tls(p);
}

/* ---- load / free --------------------------------------------------------------- */

static void models_free(struct cfg_models *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->names[i]);
    free(m->names);
}

static void config_free(struct config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->server.listen.v);
    free(c->server.admin_listen.v);
    free(c->server.usage_log);
    free(c->server.state_dir);
    free(c->server.audit_log);
    free(c->server.pid_file);
    models_free(&c->server.admin_hosts);
    models_free(&c->server.passthrough_paths);
    free(c->prefix_models);
    free(c->server.tls_cert);
    free(c->server.tls_key);
    free(c->server.tls_client_ca);
    tls_ctx_free(c->tls);
    free(c->redis.url);
    free(c->redis.ca_file);
    free(c->redis.client_cert);
    free(c->redis.client_key);
    free(c->telemetry.otlp_endpoint);
    free(c->telemetry.service_name);
    free(c->auth.jwks);
    free(c->auth.ca_file);
    free(c->auth.issuer);
    free(c->auth.audience);
    models_free(&c->auth.algorithms);
    free(c->auth.user_claim);
    free(c->auth.team_claim);
    free(c->auth.key_profile);
    for (int i = 0; i < c->nbackends; i++) {
        struct cfg_backend *be = &c->backends[i];
        free(be->name);
        free(be->url);
        if (be->api_key)
            memset(be->api_key, 0, strlen(be->api_key));
        free(be->api_key);
        free(be->api_version);
        free(be->deployment);
        models_free(&be->models);
        models_free(&be->forward_headers);
        free(be->organization);
        free(be->project);
        free(be->ca_file);
        free(be->client_cert);
        free(be->client_key);
    }
    free(c->backends);
    for (int i = 0; i < c->nkeys; i++)
        cfg_key_clear(&c->keys[i]);
    free(c->keys);
    for (int i = 0; i < c->nteams; i++)
        free(c->teams[i].name);
    free(c->teams);
    for (int i = 0; i < c->nmodels; i++) {
        free(c->models[i].name);
        free(c->models[i].upstream);
        models_free(&c->models[i].fallbacks);
        models_free(&c->models[i].context_fallbacks);
    }
    free(c->models);
    for (size_t i = 0; i < SL_ARRAY_LEN(named_scopes); i++)
        sl_names_free(names_of(c, &named_scopes[i]));
    sl_names_free(&c->label_names);
    free(c->labels);
    free(c);
}

struct config *cfg_load(const char *path, struct cfg_errors *errs)
{
    struct config *c = sl_calloc(1, sizeof(*c));
    c->path = sl_strdup(path);
    atomic_init(&c->refs, 1);
    struct parser p = { .path = path, .cfg = c, .errs = errs };
    int before = errs->n;

    p.fp = fopen(path, "r");
    if (!p.fp) {
        add_error(errs, path, 0, "cannot open: %s", strerror(errno));
        config_free(c);
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(p.fp), &st) == 0) {
        p.mode = (unsigned)(st.st_mode & 07777);
        p.readable_by_others = st.st_mode & S_IROTH;
        if (st.st_mode & S_IWOTH)
            perm_issue(&p, 0, "the configuration file is writable by other users (mode %04o)",
                       p.mode);
    }
    /* [server] and [redis] defaults apply even when the section is absent;
     * named sections get theirs the moment they open. */
    apply_defaults(&p, SCOPE_SERVER, &c->server);
    apply_defaults(&p, SCOPE_REDIS, &c->redis);
    apply_defaults(&p, SCOPE_TELEMETRY, &c->telemetry);
    apply_defaults(&p, SCOPE_AUTH, &c->auth);
    ini_parse_stream(read_line, &p, on_value, &p);
    fclose(p.fp);
    free(p.linebuf);

    check_config(&p);
    free(p.sections);
    for (int i = 0; i < p.perms.n; i++) { /* errors with strict_permissions, else warnings */
        if (c->server.strict_permissions)
            add_error(errs, path, 0, "%s (strict_permissions)", p.perms.lines[i]);
        else
            log_warn("%s", p.perms.lines[i]);
    }
    cfg_errors_free(&p.perms);
    if (errs->n > before) {
        config_free(c);
        return NULL;
    }
    return c;
}

struct config *cfg_ref(struct config *c)
{
    atomic_fetch_add(&c->refs, 1);
    return c;
}

void cfg_unref(struct config *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1)
        config_free(c);
}

bool cfg_models_match(const struct cfg_models *m, const char *model, size_t len)
{
    if (m->any)
        return true;
    for (int i = 0; i < m->n; i++)
        if (strlen(m->names[i]) == len && memcmp(m->names[i], model, len) == 0)
            return true;
    return false;
}

bool cfg_status_in(const struct cfg_statuses *s, int status)
{
    if (status < 100 || status > 599)
        return false;
    return (s->bits[(status - 100) / 64] >> ((status - 100) % 64)) & 1;
}

/* The named section (struct named_head first) of that scope and name, or NULL. */
static const void *find_by_name(const struct config *c, enum scope scope, const char *name)
{
    const struct named_scope *ns = named_scope_of(scope);
    int i = sl_names_find(names_of(c, ns), name, strlen(name));
    return i < 0 ? NULL : named_element(c, ns, i);
}

const struct cfg_key *cfg_find_key(const struct config *c, const char *name)
{
    return find_by_name(c, SCOPE_KEY, name);
}

bool cfg_key_has_budget(const struct cfg_key *k, const struct cfg_team *t)
{
    return k->budget || k->users.budget || (t && (t->budget || t->users.budget));
}

const struct cfg_team *cfg_find_team(const struct config *c, const char *name)
{
    return find_by_name(c, SCOPE_TEAM, name);
}

const struct cfg_model *cfg_find_model(const struct config *c, const char *name)
{
    return find_by_name(c, SCOPE_MODEL, name);
}

const char *cfg_upstream_name(const struct config *c, const char *name)
{
    const struct cfg_model *m = c->nmodels ? cfg_find_model(c, name) : NULL;
    return m && m->upstream ? m->upstream : name;
}

static bool priced(const struct cfg_model *m)
{
    return m && (m->input_price >= 0 || m->output_price >= 0 || m->request_price >= 0);
}

bool cfg_model_is_prefix(const struct cfg_model *m)
{
    size_t n = strlen(m->name);
    return n > 1 && m->name[n - 1] == '*';
}

/* The [model NAME*] with the longest NAME that name starts with, or NULL. */
static const struct cfg_model *priced_prefix(const struct config *c, const char *name)
{
    const struct cfg_model *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < c->nprefix_models; i++) {
        const struct cfg_model *m = &c->models[c->prefix_models[i]];
        size_t n = strlen(m->name) - 1;
        if (n > best_len && strncmp(name, m->name, n) == 0) {
            best = m;
            best_len = n;
        }
    }
    return best;
}

const struct cfg_model *cfg_priced_model(const struct config *c, const char *name)
{
    if (!c->nmodels)
        return NULL;
    const struct cfg_model *m = cfg_find_model(c, name);
    if (priced(m))
        return m;
    const struct cfg_model *up = m && m->upstream ? cfg_find_model(c, m->upstream) : NULL;
    if (priced(up))
        return up;
    const struct cfg_model *pre = priced_prefix(c, name);
    if (!pre && m && m->upstream)
        pre = priced_prefix(c, m->upstream);
    return pre;
}

bool cfg_prices_tokens(const struct cfg_model *m)
{
    return m && m->input_price >= 0 && m->output_price >= 0;
}

const char *cfg_model_label(const struct config *c, const char *model)
{
    int i = sl_names_find(&c->label_names, model, strlen(model));
    return i < 0 ? "other" : c->labels[i];
}

/* ---- keys made at run time --------------------------------------------------- */

void cfg_key_clear(struct cfg_key *k)
{
    free(k->name);
    free(k->team_name);
    models_free(&k->models);
    memset(k, 0, sizeof(*k));
}

bool cfg_name_valid(const char *name)
{
    return valid_name(name, SCOPE_KEY);
}

const struct option *cfg_key_option(const char *option)
{
    int i = find_option(SCOPE_KEY, option);
    return i >= 0 && cfg_options[i].type != T_DIGEST ? &cfg_options[i] : NULL;
}

bool cfg_key_build(const struct config *c, const char *name, const char *const *opts,
                   const char *const *vals, int n, struct cfg_key *out, char *err, size_t errlen)
{
    struct cfg_errors errs = { 0 };
    struct parser p = { .path = "", .cfg = (struct config *)c, .errs = &errs };
    memset(out, 0, sizeof(*out));
    apply_defaults(&p, SCOPE_KEY, out);
    out->name = sl_strdup(name);
    out->runtime = true;
    for (int i = 0; i < n && !errs.n; i++) {
        int o = find_option(SCOPE_KEY, opts[i]);
        if (o < 0 || cfg_options[o].type == T_DIGEST)
            add_error(&errs, "", 0, "%s: not a key setting", opts[i]);
        else
            set_option(&p, &cfg_options[o], out, vals[i]);
    }
    if (!errs.n && out->quota && out->quota_period == QUOTA_PERIOD_NONE)
        add_error(&errs, "", 0, "quota needs quota_period day, week, month or total");
    if (!errs.n && out->budget && out->budget_period == QUOTA_PERIOD_NONE)
        add_error(&errs, "", 0, "budget needs budget_period day, week, month or total");
    if (!errs.n && out->users.budget && out->users.budget_period == QUOTA_PERIOD_NONE)
        add_error(&errs, "", 0, "user_budget needs user_budget_period day, week, month or total");
    if (!errs.n && out->team_name && !(out->team = cfg_find_team(c, out->team_name)))
        add_error(&errs, "", 0, "team: no team %.64s is configured", out->team_name);
    if (!errs.n && out->require_user && out->trust_user == TRUST_USER_NO)
        add_error(&errs, "", 0, "require_user needs trust_user header or body");
    bool ok = errs.n == 0;
    if (!ok) {
        const char *m = errs.lines[0];
        m += strncmp(m, ": ", 2) == 0 ? 2 : 0; /* no file, no line */
        snprintf(err, errlen, "%s", m);
        cfg_key_clear(out);
    }
    cfg_errors_free(&errs);
    return ok;
}
