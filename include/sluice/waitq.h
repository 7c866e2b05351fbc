/* Requests waiting for room instead of a 429 ([key] queue_timeout,
 * docs/limits.md "Waiting instead of 429"): one FIFO per key across the node,
 * whichever worker holds each request. Only the head of a key's line asks
 * the limiter again; when it leaves (admitted, given up, gone) the next one
 * is woken at once. Thread-safe: a wake is event_active() on the waiter's
 * own event, from any thread. */
#ifndef SLUICE_WAITQ_H
#define SLUICE_WAITQ_H

#include <stdbool.h>

struct event;
struct waitq_line;

struct waiter {
    struct waiter *prev, *next;
    struct waitq_line *line; /* NULL: not waiting */
    struct event *wake;      /* made active when this waiter becomes the head */
};

/* Joins the key's line at its tail; true if it is the head. */
bool waitq_join(struct waiter *w, const char *key, struct event *wake);
bool waitq_is_head(const struct waiter *w);
/* Leaves the line (if in one); the next waiter, now the head, is woken. */
void waitq_leave(struct waiter *w);
/* Whether the key has anyone waiting on this node (a newcomer lines up behind). */
bool waitq_busy(const char *key);
/* Room may have come (a slot of the key freed on this node): wakes the head. */
void waitq_poke(const char *key);
/* Requests waiting now, all keys (sluice_queued_requests). */
long waitq_count(void);
/* At exit: frees the lines (none may have waiters). */
void waitq_shutdown(void);

#endif
