/* A worker is one event-loop thread: its own event_base, client listener,
 * curl multi, limiter connection, and the generation (generation.h) its new
 * requests start on. */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <stdbool.h>

#include "sluice/worker-t.h"

struct generation;
struct lim_local;

/* Creates a worker listening on the given sockets (their ownership passes;
 * tls[i]: socket i is a tls listener);
 * local is the node's in-process limiter, shared by all workers. */
struct worker *worker_new(int id, struct generation *gen, struct lim_local *local, const int *fds,
                          const int *kinds, const bool *tls, int nfds);
int worker_start(struct worker *w);
/* Asks the worker to stop accepting and finish in-flight requests within
 * shutdown_timeout; safe from any thread. */
void worker_request_stop(struct worker *w);
/* Hands the worker a new generation (a reference is taken); safe from any thread. */
void worker_set_generation(struct worker *w, struct generation *g);
void worker_join(struct worker *w);
void worker_free(struct worker *w);

#endif
