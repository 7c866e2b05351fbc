/* What a finished request was, as one record: the access log line (text or
 * JSON) and the usage log (one JSON object per line, for billing and
 * shipping), written by a thread of its own so no event loop waits on disk. */
#ifndef SLUICE_USAGE_H
#define SLUICE_USAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/util.h"

struct usage_record {
    int64_t end_us;  /* wall clock, microseconds since the epoch */
    const char *key, *team, *model, *served_model, *backend; /* "-" when none */
    const char *user; /* the end user (enduser.h), "-" when none; NULL reads as "-" */
    const char *path;
    const char *request_id; /* X-Request-Id: [A-Za-z0-9._:-], 1-128 (http.h) */
    const char *end;     /* the end cause's token */
    const char *outcome; /* the last attempt's outcome, "-" when none */
    int status, attempts;
    bool stream;
    int64_t input_tokens, cached_tokens, cache_write_tokens, output_tokens;
    int64_t cost; /* micro-dollars */
    double ttfb_ms, duration_ms, queued_ms;
};

enum access_format { ACCESS_TEXT, ACCESS_JSON };

/* The access log line: `access key=... ` (text) or a JSON object. */
void usage_access_line(const struct usage_record *u, enum access_format f, struct sl_buf *out);
/* The record as one JSON object, no newline. */
void usage_json(const struct usage_record *u, struct sl_buf *out);

/* The usage log. usage_log_set opens path (NULL: none) from the main thread
 * at start and on SIGHUP, and reopens it when the path is the same (as for
 * SIGUSR1: logrotate has moved the file). Returns false, logged, when it
 * cannot be opened; records then wait in memory until it can. */
bool usage_log_set(const char *path);
/* Queues a record; never blocks. Past USAGE_QUEUE_MAX bytes waiting it is
 * dropped and counted. */
void usage_log_write(const struct usage_record *u);
uint64_t usage_log_dropped(void);
/* Writes what is queued and stops the writer thread. */
void usage_log_close(void);

#endif
