/* A stream translated event by event between the dialects (xlate.h): an
 * upstream's chat completion chunks as the Messages API's event sequence
 * (message_start, content blocks and their deltas, message_delta,
 * message_stop), or an anthropic upstream's events as chat chunks ending in
 * data: [DONE]. One struct per stream; each upstream event's data in,
 * zero or more whole SSE events out. */
#ifndef SLUICE_XLATE_STREAM_H
#define SLUICE_XLATE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/util.h"
#include "sluice/xlate.h"

enum xl_block { XL_BLOCK_NONE, XL_BLOCK_TEXT, XL_BLOCK_THINKING, XL_BLOCK_TOOL };

struct xl_stream {
    enum xl_dir dir;
    bool include_usage; /* chat clients: the usage chunk asked for */
    bool started;       /* the opening event went out */
    bool finished;      /* the closing events went out */
    enum xl_block block; /* XL_MESSAGES_TO_CHAT: the content block open, if any */
    int blocks;          /* blocks opened so far (the next one's index) */
    int tools;           /* XL_CHAT_TO_MESSAGES: tool calls begun (the next one's index) */
    char stop[24];       /* the stop (or finish) reason, once known */
    char id[96];
    char model[128];
    int64_t created;
    int64_t input, cached, written, output; /* usage as the upstream reported it */
    bool usage_seen;
};

void xl_stream_init(struct xl_stream *s, enum xl_dir dir, bool include_usage);
/* One upstream event's data: its translation appended to out (whole SSE
 * events, possibly none). */
void xl_stream_event(struct xl_stream *s, const char *data, size_t len, struct sl_buf *out);

#endif
