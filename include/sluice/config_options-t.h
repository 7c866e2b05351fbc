/* The configuration's options as data: each one's section, name, type,
 * field, default, bounds, choices and meaning, declared once in the table of
 * config_options.c. config.c parses, defaults, validates and checks by it;
 * `sluice -D` prints the reference from it. Types only, apart from the
 * module that uses them (as HAProxy keeps *-t.h). */
#ifndef SLUICE_CONFIG_OPTIONS_T_H
#define SLUICE_CONFIG_OPTIONS_T_H

#include <stddef.h>
#include <stdint.h>

enum scope {
    SCOPE_SERVER,
    SCOPE_REDIS,
    SCOPE_BACKEND,
    SCOPE_KEY,
    SCOPE_TEAM,
    SCOPE_MODEL,
    SCOPE_TELEMETRY,
    SCOPE_AUTH,
    SCOPE__COUNT
};

enum opt_type {
    T_INT,      /* int64_t within [min, max] */
    T_DURATION, /* int64_t milliseconds */
    T_SIZE,     /* int64_t bytes */
    T_BOOL,
    T_STRING,  /* char* */
    T_URL,     /* char*, http:// or https://, trailing slash removed */
    T_LISTEN,  /* repeatable host:port */
    T_ENUM,    /* int, index into choices */
    T_MODELS,  /* struct cfg_models */
    T_STATUS,  /* struct cfg_statuses */
    T_HEADERS, /* struct cfg_models: header names, a trailing * for a prefix */
    T_DIGEST,  /* uint8_t[32]: sha256:<hex> or a plain secret */
    T_MONEY,   /* int64_t micro-dollars, from a decimal number of USD */
    T_PEM,     /* char*: the path of a PEM file; /path, file:/path or cred:NAME */
    T_RATIO,   /* int64_t parts per million, from a decimal number 0 to 1 */
    T_TIME,    /* int64_t seconds since the epoch, from an RFC 3339 time */
    T_RATE,    /* int64_t requests per minute, from N/s or N/m; 0 = none */
};

#define F_REQUIRED 1u /* must be set in its section */
#define F_REPEAT 2u   /* may appear several times */
#define F_SECRET 4u   /* holds a secret (a sha256: digest of one is not one) */

struct option {
    enum scope scope;
    const char *name;
    enum opt_type type;
    size_t offset;
    const char *def; /* default, in config syntax; NULL = unset */
    int64_t min, max;
    const char *const *choices;
    unsigned flags;
    const char *doc;
};

#define CFG_MAX_OPTIONS 160 /* the table's room; config_options.c checks it */

extern const char *const cfg_scope_names[SCOPE__COUNT];
extern const char *const cfg_type_names[];
extern const struct option cfg_options[];
extern const int cfg_noptions;

#endif
