/* Per-key FIFO lines of waiting requests, node-wide (waitq.h). One mutex:
 * a line is touched only when a request joins, leaves or is poked, never on
 * the path of a request that does not wait. */
#include "sluice/waitq.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/util.h"

struct waitq_line {
    char *key;
    struct waiter *head, *tail;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_names index_; /* key -> position in lines */
static struct waitq_line **lines;
static int nlines;
static long waiting;

static struct waitq_line *line_of(const char *key, bool make)
{
    size_t len = strlen(key);
    int i = sl_names_find(&index_, key, len);
    if (i >= 0)
        return lines[i];
    if (!make)
        return NULL;
    struct waitq_line *l = sl_calloc(1, sizeof(*l));
    l->key = sl_strdup(key);
    lines = sl_grow(lines, sizeof(*lines), nlines);
    lines[nlines] = l;
    sl_names_add(&index_, l->key, len, nlines++, NULL);
    return l;
}

bool waitq_join(struct waiter *w, const char *key, struct event *wake)
{
    pthread_mutex_lock(&lock);
    struct waitq_line *l = line_of(key, true);
    *w = (struct waiter){ .prev = l->tail, .line = l, .wake = wake };
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    waiting++;
    bool head = l->head == w;
    pthread_mutex_unlock(&lock);
    return head;
}

bool waitq_is_head(const struct waiter *w)
{
    pthread_mutex_lock(&lock);
    bool head = w->line && w->line->head == w;
    pthread_mutex_unlock(&lock);
    return head;
}

void waitq_leave(struct waiter *w)
{
    pthread_mutex_lock(&lock);
    struct waitq_line *l = w->line;
    if (l) {
        bool was_head = l->head == w;
        if (w->prev)
            w->prev->next = w->next;
        else
            l->head = w->next;
        if (w->next)
            w->next->prev = w->prev;
        else
            l->tail = w->prev;
        w->line = NULL;
        w->prev = w->next = NULL;
        waiting--;
        if (was_head && l->head)
            event_active(l->head->wake, EV_READ, 0);
    }
    pthread_mutex_unlock(&lock);
}

bool waitq_busy(const char *key)
{
    pthread_mutex_lock(&lock);
    struct waitq_line *l = nlines ? line_of(key, false) : NULL;
    bool busy = l && l->head;
    pthread_mutex_unlock(&lock);
    return busy;
}

void waitq_poke(const char *key)
{
    pthread_mutex_lock(&lock);
    struct waitq_line *l = nlines ? line_of(key, false) : NULL;
    if (l && l->head)
        event_active(l->head->wake, EV_READ, 0);
    pthread_mutex_unlock(&lock);
}

long waitq_count(void)
{
    pthread_mutex_lock(&lock);
    long n = waiting;
    pthread_mutex_unlock(&lock);
    return n;
}

void waitq_shutdown(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nlines; i++) {
        free(lines[i]->key);
        free(lines[i]);
    }
    free(lines);
    lines = NULL;
    nlines = 0;
    sl_names_free(&index_);
    pthread_mutex_unlock(&lock);
}
