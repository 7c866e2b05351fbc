/* Server-Sent Events framing: splits an upstream byte stream into whole
 * events (lines up to a blank line; LF, CRLF or CR line ends), however the
 * bytes were cut into reads, so each event can be inspected, counted or
 * dropped before it is relayed. */
#ifndef SLUICE_SSE_H
#define SLUICE_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/util.h"

/* Called with each complete event, terminating blank line included. */
typedef void (*sse_event_cb)(const char *event, size_t len, void *arg);

struct sse_parser {
    struct sl_buf pending; /* an incomplete event carried to the next feed */
    size_t max_event;      /* an event longer than this is passed on in pieces */
};

void sse_init(struct sse_parser *p, size_t max_event);
void sse_free(struct sse_parser *p);
/* Feeds bytes; calls cb for each event completed by them. */
void sse_feed(struct sse_parser *p, const char *data, size_t len, sse_event_cb cb, void *arg);
/* Hands over what is left at the end of the stream (an unterminated event). */
void sse_flush(struct sse_parser *p, sse_event_cb cb, void *arg);

/* The event's data: its "data:" lines' values joined by LF. Returns false if
 * the event has no data field. A single data line comes back without
 * copying (out points into event); several are joined into scratch. */
bool sse_event_data(const char *event, size_t len, struct sl_str *out, struct sl_buf *scratch);

#endif
