/* The life of one API request, top to bottom. A request has one phase at a
 * time, changed only by set_phase(); each upstream attempt ends in
 * attempt_end() with one classified outcome, and the request ends in
 * request_end() with one named cause (outcome.h).
 *
 *   proxy_handle     auth -> validate -> request_new
 *        |
 *   ADMITTING        lim_admit ....................> on_admitted
 *        |                                             | refused: request_end(rate_limited ...)
 *   QUEUED             refused but may wait (queue_timeout): wait_for_room, in the key's
 *        |             line (waitq.h); on_wait: the head asks again -> ADMITTING
 *   FORWARDING       attempt_next: pool_pick -> up_start          (none left: end_attempts)
 *        |           none of the model's left: second_chance (at once, or on_retry_wait after
 *        |           a short Retry-After), then fall_back to the next model
 *        |           a backend with rpm/tpm: its windows first (forward.c builds what is sent)
 *   CAPACITY           lim_admit .....................> on_capacity: FORWARDING; full -> attempt_next
 *        |             up_on_headers   a 2xx event stream -> relay_begin: RELAYING (with
 *        |                             first_token_timeout: hold_begin, the head held back
 *        |                             until the first output; on_first_token: next attempt)
 *        |             up_on_data      buffered whole, or relay_event per SSE event
 *        |             up_on_resend    curl would send it again: resend_unanswered decides
 *        |             up_on_done      up_classify -> attempt_end -> may retry: attempt_next
 *   RELAYING                                                       -> else end_attempts
 *        |             cut after output: continue_stream on a prefill backend, else end_cut
 *        |             on_stream_idle  silent for stream_idle_timeout: stream_stalled
 *        |
 *   SETTLING         request_end: answer -> settle -> access log -> trace -> metrics
 *   DONE             request_free
 *
 * Out of band: on_client_abort (client_closed) and on_deadline
 * (request_timeout) stop the running attempt and end the request. If that
 * happens while the limiter still holds the request (ADMITTING), it is
 * answered at once and waits, ABANDONED, for on_admitted to settle and free
 * it; if it happens while the limiter holds a backend's capacity check
 * (CAPACITY), the request is settled at once and waits, DETACHED, for
 * on_capacity to free it. struct sl_request owns everything the request
 * allocated; struct attempt is the current (or last) upstream attempt. */
#include "sluice/generation.h"
#include "sluice/proxy.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/auth.h"
#include "sluice/config.h"
#include "sluice/dialect.h"
#include "sluice/enduser.h"
#include "sluice/jwks.h"
#include "sluice/jwt.h"
#include "sluice/forward.h"
#include "sluice/headers.h"
#include "sluice/http.h"
#include "sluice/keys.h"
#include "sluice/keystore.h"
#include "sluice/limit.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/outcome.h"
#include "sluice/owners.h"
#include "sluice/pool.h"
#include "sluice/api_call.h"
#include "sluice/api_read.h"
#include "sluice/spans.h"
#include "sluice/spend.h"
#include "sluice/sse.h"
#include "sluice/telemetry.h"
#include "sluice/tokens.h"
#include "sluice/upstream.h"
#include "sluice/usage.h"
#include "sluice/waitq.h"
#include "sluice/worker-t.h"
#include "sluice/xlate_stream.h"

#define STREAM_HIGH_MARK (256 * 1024)     /* pause the upstream above this much unsent output */
#define MAX_RESPONSE_SIZE (256LL << 20)   /* a buffered upstream response larger than this fails */
#define MAX_SSE_EVENT (1 << 20)

#define PHASES(X)                                                                                   \
    X(ADMITTING)  /* the limiter holds the request; on_admitted comes next */                     \
    X(QUEUED)     /* refused for now, waits in its key's line for room (queue_timeout) */         \
    X(FORWARDING) /* attempts run one after another; nothing sent to the client yet */            \
    X(CAPACITY)   /* the limiter holds the picked backend's rpm/tpm check; on_capacity next */    \
    X(RELAYING)   /* a stream is being relayed: the client has its head */                        \
    X(FILTERING)  /* owners.h: a list answer waits for its items' owners, a creation for its     \
                     records to be written; on_list_owners or on_recorded next */                \
    X(ABANDONED)  /* ended while ADMITTING or FILTERING: answered, waits for the limiter */      \
    X(SETTLING)   /* answered: usage settled, logged, counted */                                  \
    X(DETACHED)   /* settled while CAPACITY: waits for on_capacity to free it */                  \
    X(DONE)

enum phase {
#define X(p) PHASE_##p,
    PHASES(X)
#undef X
};

static const char *const phase_names[] = {
#define X(p) #p,
    PHASES(X)
#undef X
};

/* The transitions set_phase() allows: to -> the phases it may come from. */
#define FROM(p) (1u << PHASE_##p)
static const unsigned phase_from[] = {
    [PHASE_ADMITTING] = FROM(QUEUED),
    [PHASE_QUEUED] = FROM(ADMITTING),
    [PHASE_FORWARDING] = FROM(ADMITTING) | FROM(CAPACITY),
    [PHASE_CAPACITY] = FROM(FORWARDING),
    [PHASE_RELAYING] = FROM(FORWARDING),
    [PHASE_FILTERING] = FROM(FORWARDING),
    [PHASE_ABANDONED] = FROM(ADMITTING) | FROM(FILTERING),
    [PHASE_SETTLING] = FROM(ADMITTING) | FROM(QUEUED) | FROM(FORWARDING) | FROM(CAPACITY) |
                       FROM(RELAYING) | FROM(FILTERING) | FROM(ABANDONED),
    [PHASE_DETACHED] = FROM(SETTLING),
    [PHASE_DONE] = FROM(SETTLING) | FROM(DETACHED),
};
#undef FROM

/* One upstream attempt, from the pick of its backend (and the check of that
 * backend's own rpm/tpm) to its outcome: the state nginx keeps in
 * ngx_http_upstream_state_t. The request keeps the current or last one. */
struct attempt {
    struct pool_pick pick;      /* its backend, for the breaker's verdict */
    int capacity_backend;       /* whose rpm/tpm windows `capacity` holds; -1 none */
    struct lim_decision capacity; /* the deployment windows' ticket */
    struct up_transfer *xfer;   /* while it runs (upstream.c frees it) */
    struct curl_slist *headers; /* what it sent (forward.h): the header list and the URL */
    char *url;
    bool paused;                /* RELAYING: the upstream waits for the client to read */
    bool holding;               /* a stream's head and events held back until its first output */
    bool refused;               /* a continuation the backend would not stream: dropped */
    bool output_seen;           /* its stream has sent an event with output */
    int xl;                     /* enum xl_dir: sent in the other dialect, answered in it */
    int64_t sent_us;            /* when it started, for the time to first token */
    int64_t last_data_ms;       /* RELAYING: when the upstream last sent a byte */
    enum up_outcome outcome;    /* once it ended */
    const char *target;         /* the model it was for (struct sl_request's target) */
};

struct sl_request {
    /* Kept while the struct waits on its worker's spare list for the next
     * request: the deadline's timer and the answer's buffers, emptied. */
    struct event *deadline;
    struct evbuffer *body;      /* the running attempt's buffered response */
    struct evbuffer *kept_body; /* the last complete upstream answer's body (kept_status) */
    struct sl_buf kept_headers; /* and its headers as the client gets them */
    struct sl_request *next_spare;

    /* ---- zeroed for each request from here ---- */
    struct worker *w;
    enum phase phase;
    struct http_req *req; /* the client's; NULL once answered or after the client left */
    struct generation *gen;
    const struct cfg_key *key;
    const struct cfg_team *team; /* the key's, or the one a JWT names */
    struct rt_key *rt; /* a runtime key's record (key is &rt->k), referenced; NULL for the file's */
    struct api_call call;
    const char *model; /* the call's (in its cJSON tree or its model_text), NUL-terminated */
    const char *model_label; /* for the metrics: lives as long as the generation r holds */
    char path[API_MAX_PATH + 1]; /* plain: api_plain_path() checked it */
    char method[8];                  /* GET, POST or DELETE (server.c allows no other) */
    char request_id[HTTP_REQUEST_ID_MAX + 1]; /* http_request_id's, for the logs */
    char user[EU_MAX + 1];                    /* the end user (enduser.h); "" none */
    struct fwd_body fwd;    /* the body's forms: as it came, or sluice's copies (forward.h) */
    struct api_resource res;   /* the stored resource it is about (owners.h) */
    char owner[OWNER_MAX];     /* whose its creations are, and whose it may use */
    struct cJSON *list;        /* FILTERING: the list answer being cut, */
    int nlist;                 /* and how many of its items were looked up */
    bool stream_owned;         /* RELAYING: the stored answer's id was recorded */
    bool strip_usage;       /* the usage chunk was asked for by sluice, not the client */

    /* The model tried (docs/pool.md, "Models and fallbacks"); NULL for calls without one. */
    const char *target;       /* its name for clients: the one sent, or a fallback */
    const char *upstream;     /* its name upstream */
    size_t upstream_len;
    int next_fallback;        /* in the chain: fallbacks, or context_fallbacks once switched */
    bool context_chain;
    const char *served;        /* the target whose answer the client gets, and */
    const char *served_upstream; /* its upstream name */

    struct lim_limits limits;
    int64_t estimate;           /* prompt tokens reserved at admission */
    int64_t spend_reserve;         /* micro-dollars the admission reserves (spend.h) */
    int64_t cost;                  /* micro-dollars: what the request cost, at settlement */
    struct lim_decision ticket; /* the limiter's answer */
    int upstream_status;        /* the last response head's status; 0 before any */
    struct tok_text relayed;    /* the output text streamed (usage fallback) */
    int64_t events;             /* data events relayed (a Responses error event's sequence) */
    int64_t charged_input, charged_output; /* what the key was charged, for metrics */

    /* Attempts, all told. */
    int64_t capacity_tokens;   /* what a deployment's tpm is charged: prompt and output reserve */
    int64_t full_ms;           /* the earliest a backend passed over as full frees; -1 none */
    int backend;               /* of the current or last attempt, -1 before */
    int attempts;
    struct pool_tried tried;
    bool all_429;              /* every attempt so far was answered 429 */
    int resent;                /* times an unanswered request was sent again */
    bool retried_same;         /* the target's backend was given its second chance */
    int64_t retry_after_ms;    /* the last attempt's Retry-After; -1 none */
    struct event *retry_ev;    /* waiting out that Retry-After before the same backend again */
    struct pool_pick last_pick; /* the last attempt's, reported */
    bool retry_rearmed;         /* the wait was extended once to its breaker's time */
    int64_t min_retry_after_ms; /* smallest Retry-After among them, -1 none */
    struct attempt at;         /* the current attempt, or the last */

    /* The answer. */
    int kept_status;          /* the last complete upstream answer (0: none yet) */
    struct sse_parser sse;
    struct sl_buf scratch;
    struct tok_usage usage;

    int status; /* what the client got; 499 if it left first */
    enum end_cause end;
    int64_t start_us;
    double ttfb;
    struct event *stream_idle; /* RELAYING: stream_idle_timeout, checked lazily */
    struct event *first_token; /* holding: first_token_timeout */
    struct sl_buf held;        /* holding: the events held back, as they will be relayed */
    struct xl_stream xs;       /* RELAYING a translated attempt: its events in the client's dialect */
    struct sl_buf xl_out;      /* and the events one upstream event became */

    /* A cut stream's continuation (prefill backends; docs/pool.md). */
    bool continuable;          /* a chat stream of one choice, with a prefill backend in the config */
    bool continued;            /* the current attempt continues a cut one */
    struct sl_buf said;        /* the assistant's text relayed so far, as JSON string content */
    enum up_outcome cut;       /* how the cut attempt ended: the answer if nothing continues */
    int64_t carried_input, carried_output; /* what the cut attempt used */
    struct event *lease_renew; /* a max_inflight slot in Redis: renewed while the request runs */

    /* Waiting for room (QUEUED; queue_timeout). */
    struct waiter waiter;  /* its place in the key's line, while in one */
    struct event *wait_ev; /* the head's time to ask again, a wake, or the end of its patience */
    int64_t wait_until_ms; /* patience ends (0: not worked out yet) */
    int64_t queued_since_us;
    int64_t queued_us;     /* in the line, all told */

    /* Tracing ([telemetry]; trace_request). Times are monotonic. */
    struct tel_ctx trace;
    int64_t admit_start_us, admit_end_us; /* the first admission's call to the limiter */
    struct span_attempt *traced; /* [SPANS_MAX_ATTEMPTS], made by the first attempt traced */
    int ntraced;
};

/* sluice's own answer, instead of an upstream's. */
struct own_answer {
    enum sl_error error;
    const char *message;
    const char *headers; /* extra "Name: value\r\n" lines, or NULL */
};

static void attempt_next(struct sl_request *r);
static void request_end(struct sl_request *r, enum end_cause cause, const struct own_answer *own);
static void on_admitted(const struct lim_decision *d, void *arg);
static void filter_list(struct sl_request *r);
static void owners_unknown(struct sl_request *r);
static void on_owners(bool ok, const char *const *owners, void *arg);
static void admit(struct sl_request *r);
static void wait_for_room(struct sl_request *r, int64_t retry_ms, bool user);
static void set_target(struct sl_request *r, const char *name);
static void on_stream_idle(evutil_socket_t fd, short what, void *arg);
static void on_capacity(const struct lim_decision *d, void *arg);
static void request_free(struct sl_request *r);

static const struct up_callbacks up_cb;

/* "Always use this function to change state" (curl's mstate()). */
static void set_phase(struct sl_request *r, enum phase to)
{
    if (!(phase_from[to] & (1u << r->phase))) {
        log_error("bug: request phase %s -> %s", phase_names[r->phase], phase_names[to]);
#ifndef NDEBUG
        abort();
#endif
    }
    r->phase = to;
}

static void arm_ms(struct event *ev, int64_t ms)
{
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(ev, &tv);
}

/* ---- answering the client ------------------------------------------------- */

/* The one place the client's request is handed over for its last answer. */
static struct http_req *take_client(struct sl_request *r)
{
    struct http_req *req = r->req;
    r->req = NULL;
    return req;
}

/* The dialect the caller speaks (errors.h). */
static enum sl_dialect dialect(const struct sl_request *r)
{
    return api_endpoint_dialect(r->call.endpoint) ? DIALECT_ANTHROPIC : DIALECT_OPENAI;
}

/* A stream that cannot continue ends with one SSE error event, so SDKs raise
 * an error instead of seeing a silently short answer: in the Responses API's
 * own shape (event: error, the next sequence_number) for /v1/responses,
 * Anthropic's (event: error, {"type":"error","error":...}) for the Messages
 * API, else chat's data: {"error":...}. */
static void stream_error_event(struct sl_request *r, const struct own_answer *own)
{
    size_t len;
    bool responses = r->call.endpoint == API_RESPONSES;
    char *json = responses ? err_response_event_json(own->error, own->message, r->events, &len)
                           : err_json_in(dialect(r), own->error, own->message, NULL, &len);
    while (len && json[len - 1] == '\n')
        len--;
    struct sl_buf ev = { 0 };
    sl_buf_appends(&ev, responses || dialect(r) == DIALECT_ANTHROPIC ? "event: error\ndata: "
                                                                      : "data: ");
    sl_buf_append(&ev, json, len);
    sl_buf_appends(&ev, "\n\n");
    http_stream_write(r->req, ev.data, ev.len);
    sl_buf_free(&ev);
    free(json);
}

/* The request's last answer, if the client is still there: in a stream its
 * end (after an error event when own is set); else sluice's own error, or
 * the kept upstream answer as it was. Sets what the client got. */
static void answer(struct sl_request *r, const struct own_answer *own)
{
    if (!r->req)
        return;
    if (own)
        r->status = err_status(own->error, dialect(r));
    if (r->phase == PHASE_RELAYING) {
        if (own)
            stream_error_event(r, own);
        http_stream_end(take_client(r));
    } else if (own) {
        struct sl_buf h = { 0 };
        if (own->headers)
            sl_buf_appends(&h, own->headers);
        lim_headers(&r->ticket, &r->limits, dialect(r) == DIALECT_ANTHROPIC, &h);
        http_send_error(take_client(r), own->error, own->message, NULL, h.data);
        sl_buf_free(&h);
    } else {
        r->status = r->kept_status;
        http_respond_evbuffer(take_client(r), r->kept_status, r->kept_headers.data,
                              r->kept_headers.len, r->kept_body);
    }
}

/* The running attempt's backend credential, to be scrubbed from what its
 * upstream sends back (an upstream error may echo the request's headers). */
static const char *backend_secret(const struct sl_request *r, size_t *len)
{
    const char *key = r->gen->cfg->backends[r->at.pick.backend].api_key;
    *len = key ? strlen(key) : 0;
    return key;
}

static void scrub(const struct sl_request *r, char *p, size_t len)
{
    size_t slen;
    const char *secret = backend_secret(r, &slen);
    if (hdr_scrub(p, len, secret, slen))
        log_warn("backend %s: its credential came back in an answer and was removed",
                 r->gen->cfg->backends[r->at.pick.backend].name);
}

/* The upstream's response headers, filtered and scrubbed, as "Name: value\r\n" lines. */
static void client_headers(struct sl_request *r, struct up_transfer *t, struct sl_buf *out)
{
    struct sl_str block = up_header_block(t);
    size_t from = out->len;
    sl_buf_reserve(out, block.len + 768); /* the x-ratelimit lines included: one allocation */
    const char *p = block.p, *end = block.p + block.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *line_end = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        struct sl_str name = { p, colon ? (size_t)(colon - p) : 0 };
        if (name.len && !hdr_not_relayed(name)) {
            sl_buf_append(out, p, (size_t)(line_end - p));
            sl_buf_append(out, "\r\n", 2);
        } else if (sl_str_caseeq(name, "x-request-id")) { /* the client gets sluice's */
            sl_buf_appends(out, "x-upstream-request-id");
            sl_buf_append(out, colon, (size_t)(line_end - colon));
            sl_buf_append(out, "\r\n", 2);
        }
        p = eol + 1;
    }
    scrub(r, out->data + from, out->len - from);
    if (r->upstream) { /* what answered: a config name, or the client's own (checked) */
        sl_buf_appends(out, "x-sluice-model: ");
        sl_buf_append(out, r->upstream, r->upstream_len);
        sl_buf_append(out, "\r\n", 2);
    }
    lim_headers(&r->ticket, &r->limits, dialect(r) == DIALECT_ANTHROPIC, out);
}

/* ---- the request's life ------------------------------------------------------ */

static void on_client_abort(struct http_req *req);
static void on_client_drain(struct http_req *req);
static void on_deadline(evutil_socket_t fd, short what, void *arg);

#define SPARE_REQUESTS_MAX 256 /* per worker */

/* A request struct zeroed but for what it keeps (above): from the worker's
 * spare list, else a new one with its timer and buffer. */
static struct sl_request *request_new(struct worker *w, struct http_req *req,
                                      const struct cfg_key *key, const struct cfg_team *team, struct api_call *call)
{
    struct sl_request *r = w->spare_requests;
    if (r) {
        SL_SPARE_UNPOISON(r, sizeof(*r));
        w->spare_requests = r->next_spare;
        w->nspare_requests--;
        memset(&r->w, 0, sizeof(*r) - offsetof(struct sl_request, w));
    } else {
        r = sl_calloc(1, sizeof(*r));
        r->deadline = evtimer_new(w->base, on_deadline, r);
    }
    if (!r->body)
        r->body = evbuffer_new();
    r->w = w;
    r->phase = PHASE_ADMITTING;
    r->req = req;
    r->fwd.client = (struct sl_str){ req->body.data, req->body.len };
    r->gen = gen_ref(w->gen);
    r->key = key;
    r->call = *call; /* takes the parsed JSON */
    if (!call->root && call->model) /* read in one pass, or a form field: the name is in the call */
        r->call.model = r->call.model_text;
    r->model = r->call.model;
    size_t plen = SL_MIN(req->path.len, sizeof(r->path) - 1);
    memcpy(r->path, req->path.p, plen);
    r->path[plen] = '\0';
    memcpy(r->method, req->method.p, SL_MIN(req->method.len, sizeof(r->method) - 1));
    const char *rid = http_request_id(req); /* made now: the forwarding reads it */
    memcpy(r->request_id, rid, strlen(rid) + 1);
    r->backend = -1;
    r->at.capacity_backend = -1;
    r->full_ms = -1;
    r->capacity_tokens = call->estimate + spend_output_reserve(key, call);
    r->start_us = req->start_us;
    r->team = team;
    r->limits = lim_limits_for(key, team);
    r->all_429 = true;
    r->min_retry_after_ms = -1;
    r->retry_after_ms = -1;
    sse_init(&r->sse, MAX_SSE_EVENT);
    req->owner = r;
    req->on_abort = on_client_abort;
    req->on_drain = on_client_drain;
    mx_inflight(1);
    arm_ms(r->deadline, r->gen->cfg->server.request_timeout_ms);
    if (r->gen->cfg->telemetry.enabled)
        tel_context(req, r->gen->cfg->telemetry.sample_ppm, &r->trace);
    return r;
}

/* An API request answered before it became a struct sl_request. */
static void write_record(const struct cfg_server *srv, const struct usage_record *u);

/* A request refused before admission: counted, logged with end=refused, answered. */
static void refuse_early_with(struct worker *w, struct http_req *req, const struct cfg_key *key,
                              const char *model, enum sl_error e, const char *msg,
                              const char *param, const char *headers)
{
    int status = err_status(e, req->dialect);
    double secs = (double)(sl_now_us() - req->start_us) / 1e6;
    struct mx_request m = { key ? key->name : "-", model ? model : "-", "-", "-", status, secs,
                            0, 0, "", 0, NULL };
    mx_request_done(&m);
    char path[API_MAX_PATH + 1];
    snprintf(path, sizeof(path), "%.*s", (int)SL_MIN(req->path.len, API_MAX_PATH), req->path.p);
    struct usage_record u = {
        .end_us = sl_wall_us(),
        .key = key ? key->name : "-",
        .team = key && key->team ? key->team->name : "-",
        .model = model ? model : "-",
        .served_model = "-",
        .backend = "-",
        .path = path,
        .request_id = http_request_id(req),
        .end = end_cause_token(END_REFUSED),
        .outcome = "-",
        .status = status,
        .duration_ms = secs * 1000.0,
    };
    write_record(&w->gen->cfg->server, &u);
    http_send_error(req, e, msg, param, headers);
}

static void refuse_early(struct worker *w, struct http_req *req, const struct cfg_key *key,
                         const char *model, enum sl_error e, const char *msg, const char *param)
{
    refuse_early_with(w, req, key, model, e, msg, param, NULL);
}

/* Whether a backend that may serve the model puts its name into the URL
 * (azure without a fixed deployment). */
static bool model_in_url(const struct config *c, const char *model, size_t len)
{
    for (int i = 0; i < c->nbackends; i++) {
        const struct cfg_backend *be = &c->backends[i];
        if (be->type == BACKEND_AZURE && !be->deployment && cfg_models_match(&be->models, model, len))
            return true;
    }
    return false;
}

static void unref_key(void *rt)
{
    keys_unref(rt);
}

/* When a key was last used, noted at most once a minute (keystore.h):
 * between those, one relaxed load. */
static void key_used(struct worker *w, const struct cfg_key *key, struct rt_key *rt, int64_t now_s)
{
    atomic_llong *at = rt ? &rt->used_at : &w->gen->key_used[key - w->gen->cfg->keys];
    long long was = atomic_load_explicit(at, memory_order_relaxed);
    if (now_s - was >= 60 && atomic_compare_exchange_strong(at, &was, now_s))
        keystore_used(w->keys, &w->limiter, key->name, now_s);
}

/* The key found for the request (rt: a runtime key's record, referenced):
 * refused if it expired or is disabled, else the request goes on with it. */
static bool key_checked(struct worker *w, struct http_req *req, const struct cfg_key *key,
                        struct rt_key *rt)
{
    int64_t now_s = sl_wall_us() / 1000000;
    const char *why = auth_refusal(key, rt, now_s);
    if (why) {
        refuse_early(w, req, key, NULL, ERR_INVALID_API_KEY, why, NULL);
        keys_unref(rt);
        return false;
    }
    key_used(w, key, rt, now_s);
    if (req->checked_ref) /* checked again after a reload */
        req->checked_unref(req->checked_ref);
    req->checked_key = key;
    req->checked_ref = rt;
    req->checked_unref = rt ? unref_key : NULL;
    req->checked_generation = w->gen->id;
    http_req_share(req, rt ? rt->share : w->gen->key_shares[key - w->gen->cfg->keys]);
    return true;
}

/* No key has the secret (found says why): answered. */
static void key_refused(struct worker *w, struct http_req *req, enum ks_found found)
{
    if (found == KS_BUSY)
        refuse_early_with(w, req, NULL, NULL, ERR_KEYS_BUSY,
                          "Too many unknown API keys are being tried; try again in a second.",
                          NULL, "Retry-After: 1\r\n");
    else if (found == KS_DOWN || found == KS_PENDING)
        refuse_early_with(w, req, NULL, NULL, ERR_KEY_STORE,
                          "The API key cannot be checked right now; try again shortly.", NULL,
                          "Retry-After: 1\r\n");
    else
        refuse_early(w, req, NULL, NULL, ERR_INVALID_API_KEY, "Incorrect API key provided.", NULL);
}

/* Redis said whose the held request's key is. */
static void key_fetched(enum ks_found found, struct rt_key *rt, struct http_req *req, void *arg)
{
    struct worker *w = arg;
    if (found != KS_FOUND)
        return key_refused(w, req, found);
    if (key_checked(w, req, &rt->k, rt) && req->held)
        http_req_release(req);
}

/* A request held while the key set is fetched again (its token names a kid
 * the set lacks), in the worker's list. */
struct jwt_wait {
    struct jwt_wait *prev, *next;
    struct http_req *req;
    struct worker *w;
};

static void jwt_unlink(struct worker *w, struct jwt_wait *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        w->jwt_waiting = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->req->owner = NULL;
    j->req->on_abort = NULL;
    free(j);
}

static void jwt_wait_abort(struct http_req *req)
{
    struct jwt_wait *j = req->owner;
    jwt_unlink(j->w, j);
}

static bool check_jwt(struct worker *w, struct http_req *req, struct sl_str token, bool may_hold);

/* A fetch of the key set ended: each held request is checked again, and goes
 * on or is answered (an unknown kid now is 401). */
static void jwt_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    while (w->jwt_waiting) {
        struct http_req *req = w->jwt_waiting->req;
        jwt_unlink(w, w->jwt_waiting);
        struct sl_str token;
        if (auth_presented_key(req, &token) == AUTH_ONE && check_jwt(w, req, token, false))
            http_req_release(req);
    }
}

/* Holds the request until the key store's fetch ends. */
static void jwt_hold(struct worker *w, struct http_req *req)
{
    if (!w->jwt_wake) {
        w->jwt_wake = event_new(w->base, -1, 0, jwt_wake_cb, w);
        jwks_store_watch(w->jwks, w->jwt_wake);
    }
    struct jwt_wait *j = sl_calloc(1, sizeof(*j));
    j->req = req;
    j->w = w;
    j->next = w->jwt_waiting;
    if (j->next)
        j->next->prev = j;
    w->jwt_waiting = j;
    req->owner = j;
    req->on_abort = jwt_wait_abort;
    http_req_hold(req);
}

/* A JWT bearer token ([auth], jwks.h): checked (from the worker's cache when
 * seen before), and the request goes on as [auth] key_profile's, with the
 * end user and team the token names. A token whose kid the set lacks waits
 * (may_hold: from the head handler) while the set is fetched again. */
static bool check_jwt(struct worker *w, struct http_req *req, struct sl_str token, bool may_hold)
{
    const struct config *cfg = w->gen->cfg;
    struct jwt_user who;
    char why[300], msg[360];
    switch (jwks_check(w->jwks, w->jwt_cache, cfg, w->gen->id, token.p, token.len,
                       sl_wall_us() / 1000000, &who, why, sizeof(why))) {
    case JV_UNAVAILABLE:
        snprintf(msg, sizeof(msg), "The token cannot be checked right now: %s.", why);
        refuse_early_with(w, req, NULL, NULL, ERR_KEY_STORE, msg, NULL, "Retry-After: 1\r\n");
        return false;
    case JV_REFETCHING:
        if (may_hold) {
            jwt_hold(w, req);
            return true;
        }
        /* it waited for a fetch once already */
        __attribute__((fallthrough));
    case JV_REFUSED:
        snprintf(msg, sizeof(msg), "Invalid token: %s.", why);
        refuse_early(w, req, NULL, NULL, ERR_INVALID_API_KEY, msg, NULL);
        return false;
    case JV_OK:
        break;
    }
    if (!key_checked(w, req, cfg->auth.profile, NULL))
        return false;
    req->checked_jwt = true;
    memcpy(req->checked_user, who.user, strlen(who.user) + 1);
    memcpy(req->checked_team, who.team, strlen(who.team) + 1);
    return true;
}

/* The client's key, looked up as soon as its head is in: a request without
 * a valid one (unknown, expired, disabled) is answered before its body is
 * read. A key not in the file may be a runtime key (keystore.h): from the
 * cache or state_dir at once, or from Redis while the request is held
 * (may_hold: from the head handler). */
static bool check_key(struct worker *w, struct http_req *req, bool may_hold)
{
    struct sl_str secret;
    switch (auth_presented_key(req, &secret)) {
    case AUTH_NONE:
        refuse_early(w, req, NULL, NULL, ERR_INVALID_API_KEY,
                     "You didn't provide an API key. Provide it in the Authorization header "
                     "(Authorization: Bearer KEY), api-key or x-api-key.",
                     NULL);
        return false;
    case AUTH_SEVERAL:
        refuse_early(w, req, NULL, NULL, ERR_BAD_REQUEST,
                     "Send exactly one API key: in Authorization (Bearer), api-key or x-api-key, "
                     "not several.",
                     NULL);
        return false;
    case AUTH_ONE:
        break;
    }
    if (w->gen->cfg->auth.enabled && jwt_shaped(secret.p, secret.len))
        return check_jwt(w, req, secret, may_hold);
    uint8_t digest[32];
    sl_sha256(secret.p, secret.len, digest);
    const struct cfg_key *key = auth_lookup_digest(w->gen->auth, digest);
    if (key)
        return key_checked(w, req, key, NULL);
    struct rt_key *rt = NULL;
    enum ks_found found = keystore_find(w->keys, &w->limiter, w->gen->cfg, digest, &rt);
    if (found == KS_FOUND)
        return key_checked(w, req, &rt->k, rt);
    if (found != KS_PENDING || !may_hold) {
        key_refused(w, req, found);
        return false;
    }
    http_req_hold(req);
    /* answered at once (Redis down): answered now, in the head handler */
    return keystore_fetch_for(w->keys, &w->limiter, w->gen->cfg, digest, req, key_fetched, w);
}

bool proxy_head(struct worker *w, struct http_req *req)
{
    return check_key(w, req, true);
}

/* Whether the path is one of passthrough_paths, or below one. */
static bool passthrough(const struct config *cfg, struct sl_str path)
{
    const struct cfg_models *pass = &cfg->server.passthrough_paths;
    for (int i = 0; i < pass->n; i++) {
        size_t n = strlen(pass->names[i]);
        if (path.len >= n && memcmp(path.p, pass->names[i], n) == 0 &&
            (path.len == n || path.p[n] == '/'))
            return true;
    }
    return false;
}

/* An endpoint outside sluice's table (api_call.h) is refused for a key
 * counted in tokens or money, unless the operator lists it: then it is
 * charged as one request. ERR_NONE, or the refusal with msg. */
static enum sl_error check_endpoint(const struct generation *gen, const struct cfg_key *key,
                                    const struct cfg_team *team, const struct http_req *req, struct api_call *call, char *msg,
                                    size_t n)
{
    if (call->kind != API_KIND_UNKNOWN)
        return ERR_NONE;
    if (passthrough(gen->cfg, req->path)) {
        call->kind = API_KIND_PER_REQUEST;
        call->unit = API_UNIT_REQUEST;
        call->units = 1;
        return ERR_NONE;
    }
    if (!spend_accounted(key, team))
        return ERR_NONE;
    snprintf(msg, n,
             "sluice cannot count the tokens or cost of %.*s %.*s, and this key has token limits, "
             "a quota or a budget; the operator may allow it in passthrough_paths.",
             (int)SL_MIN(req->method.len, 16), req->method.p, (int)SL_MIN(req->path.len, 128),
             req->path.p);
    return ERR_NOT_FOUND;
}

/* A key or team with a budget calls only what has a price for the call
 * (unpriced_models = deny): no model, or one without it, is refused. */
static enum sl_error check_price(const struct config *cfg, const struct cfg_key *key,
                                 const struct cfg_team *team, const struct api_call *call, char *msg, size_t n,
                                 const char **param)
{
    if (cfg->server.unpriced_models || !spend_budgeted(key, team))
        return ERR_NONE;
    const struct cfg_model *m = call->model ? cfg_priced_model(cfg, call->model) : NULL;
    const char *missing = spend_missing_price(m, call);
    if (!missing)
        return ERR_NONE;
    *param = "model";
    if (!call->model)
        snprintf(msg, n, "This key has a budget and the call names no model, so it has no price "
                         "(%s); name a priced model.", missing);
    else
        snprintf(msg, n, "This key has a budget and the model '%.*s' has no %s ([model] section); "
                         "it may call only priced models.",
                 (int)SL_MIN(call->model_len, 128), call->model, missing);
    return ERR_MODEL_NOT_ALLOWED;
}

/* What the call's model allows: the key's allow-list, a name that can go
 * into an upstream URL, a backend that serves it (model-routed calls only).
 * ERR_NONE, or the refusal with msg and *param. */
static enum sl_error check_model(const struct generation *gen, const struct cfg_key *key,
                                 const struct api_call *call, char *msg, size_t n,
                                 const char **param)
{
    if (!call->model)
        return ERR_NONE; /* the stateful backend's, whatever the key's models */
    *param = "model";
    if (!cfg_models_match(&key->models, call->model, call->model_len)) {
        snprintf(msg, n, "This key may not use the model '%.*s'.",
                 (int)SL_MIN(call->model_len, 128), call->model);
        return ERR_MODEL_NOT_ALLOWED;
    }
    if (call->stateful)
        return ERR_NONE;
    const struct config *cfg = gen->cfg;
    const struct cfg_model *m = cfg->nmodels ? cfg_find_model(cfg, call->model) : NULL;
    const char *up = m && m->upstream ? m->upstream : call->model; /* what goes upstream */
    size_t up_len = m && m->upstream ? strlen(up) : call->model_len;
    if (model_in_url(cfg, up, up_len) && !api_safe_segment(up, up_len)) {
        snprintf(msg, n, "This model name cannot be used in the upstream's URL: it must be "
                         "letters, digits, '-', '_', '.', '~' or ':', and not '.' or '..'.");
        return ERR_BAD_REQUEST;
    }
    if (!pool_serves(gen->pool, up, up_len) && !(m && m->fallbacks.n)) {
        snprintf(msg, n, "The model '%.*s' does not exist or you do not have access to it.",
                 (int)SL_MIN(call->model_len, 128), call->model);
        return ERR_MODEL_NOT_FOUND;
    }
    if ((cfg->any_anthropic || api_endpoint_dialect(call->endpoint)) &&
        !dl_serves(cfg, call->endpoint, up, up_len, true) && !(m && m->fallbacks.n)) {
        snprintf(msg, n, "The model '%.*s' is not served for this endpoint here (%s).",
                 (int)SL_MIN(call->model_len, 128), call->model,
                 api_endpoint_dialect(call->endpoint)
                     ? "its backends speak OpenAI's API, and only /v1/messages translates to it"
                     : "its backends are of type anthropic, and only /v1/chat/completions "
                       "translates to theirs");
        return ERR_MODEL_NOT_FOUND;
    }
    *param = NULL;
    return ERR_NONE;
}

/* Who the request is for: the end user (a JWT's, or the key's trust_user's)
 * and the team its limits count in (a JWT's team claim, else the key's). */
static int find_who(const struct generation *gen, const struct cfg_key *key,
                    const struct http_req *req, const struct api_call *call,
                    char user[EU_MAX + 1], const struct cfg_team **team, char *msg, size_t n,
                    const char **param)
{
    if (!req->checked_jwt)
        return eu_find(key, req, call, user, msg, n, param);
    memcpy(user, req->checked_user, strlen(req->checked_user) + 1);
    if (req->checked_team[0])
        *team = cfg_find_team(gen->cfg, req->checked_team);
    return 0;
}

void proxy_handle(struct worker *w, struct http_req *req)
{
    struct generation *gen = w->gen;
    if (req->checked_generation != gen->id && !check_key(w, req, false))
        return; /* a reload came while the body was read: checked again, and refused */
    const struct cfg_key *key = req->checked_key;
    struct rt_key *rt = req->checked_ref; /* the request takes it over below */

    struct api_call call;
    char msg[256];
    const char *param = NULL, *headers = NULL;
    int e = api_read_call(req, &call, msg, sizeof(msg), &param);
    char user[EU_MAX + 1] = "";
    const struct cfg_team *team = key->team;
    if (!e)
        e = find_who(gen, key, req, &call, user, &team, msg, sizeof(msg), &param);
    const char *model_label = "-";
    if (!e)
        e = check_endpoint(gen, key, team, req, &call, msg, sizeof(msg));
    if (!e) {
        e = check_model(gen, key, &call, msg, sizeof(msg), &param);
        if (!e)
            e = check_price(gen->cfg, key, team, &call, msg, sizeof(msg), &param);
        /* a name of its own only for a model the key may call and a backend serves */
        model_label = e ? (call.model ? cfg_model_label(gen->cfg, call.model) : "-")
                        : mx_model_label(gen->cfg, call.model);
    }
    if (!e && key->max_prompt_tokens && call.estimate > key->max_prompt_tokens) {
        mx_rate_limited(key->name, "prompt_tokens");
        snprintf(msg, sizeof(msg),
                 "The prompt is about %lld tokens; this key allows at most %lld per request.",
                 (long long)call.estimate, (long long)key->max_prompt_tokens);
        if (key->mode != KEY_MODE_SHADOW) {
            e = ERR_PROMPT_TOO_LARGE;
            headers = "x-should-retry: false\r\n";
        } else {
            log_info("shadow: key %s would be refused: %s", key->name, msg);
        }
    }
    struct sl_buf translated = { 0 };
    if (!e)
        e = dl_prepare(gen->cfg, &call, (struct sl_str){ req->body.data, req->body.len },
                       &translated, msg, sizeof(msg), &param);
    if (e) {
        cJSON_Delete(call.root);
        sl_buf_free(&translated);
        return refuse_early_with(w, req, key, model_label, e, msg, param, headers);
    }
    struct sl_request *r = request_new(w, req, key, team, &call);
    r->fwd.xlate = translated; /* taken */
    memcpy(r->user, user, strlen(user) + 1);
    memcpy(r->limits.user, user, strlen(user) + 1); /* the user's own limits (user_*) */
    r->rt = rt;
    req->checked_ref = NULL;
    r->estimate = call.estimate;
    r->model_label = model_label;
    r->spend_reserve = r->model ? spend_reserve(cfg_priced_model(gen->cfg, r->model), key, team,
                                                &r->call)
                                : 0;
    if (r->call.kind != API_KIND_USAGE) /* the generating endpoints name no stored resource */
        api_resource_of(req->method, req->path, &r->res);
    if (r->res.what != API_RES_NONE || r->call.endpoint == API_RESPONSES || r->call.store == 1)
        owners_identity(key, r->owner); /* only where records are read or made */
    const char *ids[OWNERS_REFS];
    int n = owners_refs(&r->call, &r->res, ids);
    if (n) /* the stored resources it names must be the caller's */
        return lim_owners(&w->limiter, ids, n, on_owners, r);
    admit(r);
}

/* ---- admission -------------------------------------------------------------- */

/* The line a request waits in: its key's, or for a refusal on the end
 * user's own limits the user's (key, \1, id), so that one user's waiting
 * does not hold up the key's other users. */
static void line_name(const struct sl_request *r, bool user, char out[CFG_NAME_MAX + EU_MAX + 3])
{
    snprintf(out, CFG_NAME_MAX + EU_MAX + 3, user ? "%s\1%s" : "%s%.0s", r->key->name, r->user);
}

static bool line_busy(const struct sl_request *r)
{
    char line[CFG_NAME_MAX + EU_MAX + 3];
    if (waitq_busy(r->key->name))
        return true;
    if (!r->user[0])
        return false;
    line_name(r, true, line);
    return waitq_busy(line);
}

static void admit(struct sl_request *r)
{
    r->admit_start_us = sl_now_us();
    if (r->key->queue_timeout_ms && line_busy(r)) {
        wait_for_room(r, -1, !waitq_busy(r->key->name)); /* FIFO: behind those already waiting */
        return;
    }
    lim_admit(&r->w->limiter, r->key->name, &r->limits, r->estimate, r->spend_reserve,
              on_admitted, r);
    /* r may be gone here: on_admitted can run before lim_admit returns */
}

/* Redis is configured but did not answer: ownership is never guessed. */
static void owners_unknown(struct sl_request *r)
{
    request_end(r, END_LIMITER_UNAVAILABLE,
                &(struct own_answer){ ERR_LIMITER_DOWN,
                                      "Who owns stored resources cannot be read right now; try "
                                      "again shortly.",
                                      "Retry-After: 1\r\n" });
}

/* The owners of the ids the call names: all the caller's, or 404 naming the
 * first that is not (one that does not exist reads the same). */
static void on_owners(bool ok, const char *const *owners, void *arg)
{
    struct sl_request *r = arg;
    if (r->phase == PHASE_ABANDONED) /* the client left, or the deadline passed, while we waited */
        return request_end(r, r->end, NULL);
    if (!ok)
        return owners_unknown(r);
    const char *ids[OWNERS_REFS];
    int n = owners_refs(&r->call, &r->res, ids);
    for (int i = 0; i < n; i++) {
        if (owners[i] && strcmp(owners[i], r->owner) == 0)
            continue;
        char msg[API_RES_ID_MAX + 64];
        snprintf(msg, sizeof(msg), "No such stored resource: '%s'.", ids[i]);
        return request_end(r, END_REFUSED, &(struct own_answer){ ERR_RESOURCE_NOT_FOUND, msg, NULL });
    }
    admit(r);
}

/* "key NAME", "team NAME (of key NAME)", "user ID of key NAME" or "user ID
 * of team NAME (key NAME)": whose limit refused. */
static void whose(const struct sl_request *r, enum lim_dim dim, char *out, size_t n)
{
    bool team = lim_dim_info(dim)->team;
    if (lim_dim_user(dim))
        snprintf(out, n, team ? "user %s of team %s (key %s)" : "user %s of key %s%.0s", r->user,
                 team ? r->limits.team.name : r->key->name, r->key->name);
    else if (team)
        snprintf(out, n, "team %s (of key %s)", r->limits.team.name, r->key->name);
    else
        snprintf(out, n, "key %s", r->key->name);
}

/* The period of the budget that refused. */
static int budget_period_of(const struct lim_limits *lim, enum lim_dim dim)
{
    switch (dim) {
    case LIM_DIM_TEAM_BUDGET:
        return lim->team.budget_period;
    case LIM_DIM_USER_BUDGET:
        return lim->key_user.budget_period;
    case LIM_DIM_TEAM_USER_BUDGET:
        return lim->team_user.budget_period;
    default:
        return lim->budget_period;
    }
}

/* 429 insufficient_quota for a spent budget of the key or its team. */
static void refuse_budget(struct sl_request *r, const struct lim_decision *d)
{
    char msg[600], who[400], spent[32], budget[32], wants[32];
    whose(r, d->dim, who, sizeof(who));
    sl_fmt_money(d->used, spent);
    sl_fmt_money(d->limit, budget);
    sl_fmt_money(d->requested, wants);
    int period = budget_period_of(&r->limits, d->dim);
    snprintf(msg, sizeof(msg),
             "You exceeded your current budget: %s has spent $%s of its $%s %s, and this request "
             "may cost up to $%s.",
             who, spent, budget, lim_period_text(period), wants);
    request_end(r, END_BUDGET_EXHAUSTED,
                &(struct own_answer){ ERR_QUOTA_EXHAUSTED, msg, "x-should-retry: false\r\n" });
}

/* 429 (or 503 with on_error = deny) for a request the limiter refused. */
static void refuse(struct sl_request *r, const struct lim_decision *d)
{
    char msg[600], who[400];
    char headers[96];
    if (d->unavailable)
        return request_end(r, END_LIMITER_UNAVAILABLE,
                           &(struct own_answer){ ERR_LIMITER_DOWN,
                                                 "The rate limiter is unavailable; the request "
                                                 "was not forwarded.",
                                                 "Retry-After: 1\r\n" });
    mx_rate_limited(r->key->name, lim_dim_info(d->dim)->label);
    if (d->dim == LIM_DIM_QUOTA) {
        snprintf(msg, sizeof(msg),
                 "You exceeded your current quota: key %s has used %lld of %lld tokens %s and "
                 "this request needs about %lld more.",
                 r->key->name, (long long)d->used, (long long)d->limit,
                 lim_period_text(r->limits.quota_period), (long long)d->requested);
        return request_end(r, END_QUOTA_EXHAUSTED,
                           &(struct own_answer){ ERR_QUOTA_EXHAUSTED, msg,
                                                 "x-should-retry: false\r\n" });
    }
    if (lim_dim_budget(d->dim))
        return refuse_budget(r, d);
    whose(r, d->dim, who, sizeof(who));
    if (d->dim == LIM_DIM_INFLIGHT || d->dim == LIM_DIM_TEAM_INFLIGHT ||
        d->dim == LIM_DIM_USER_INFLIGHT || d->dim == LIM_DIM_TEAM_USER_INFLIGHT) {
        snprintf(msg, sizeof(msg),
                 "Too many concurrent requests for %s: Limit %lld, Open %lld. Please try again "
                 "in 1s.",
                 who, (long long)d->limit, (long long)d->used);
        return request_end(r, END_RATE_LIMITED,
                           &(struct own_answer){ ERR_RATE_LIMITED_CONCURRENCY, msg,
                                                 "Retry-After: 1\r\nretry-after-ms: 1000\r\n" });
    }
    if (d->retry_ms < 0) {
        snprintf(msg, sizeof(msg),
                 "Request too large for %s on %s: Limit %lld, Requested %lld. The input must "
                 "be reduced in order to run successfully.",
                 who, lim_dim_info(d->dim)->text, (long long)d->limit, (long long)d->requested);
        snprintf(headers, sizeof(headers), "x-should-retry: false\r\n");
    } else {
        int64_t secs = (d->retry_ms + 999) / 1000;
        snprintf(msg, sizeof(msg),
                 "Rate limit reached for %s on %s: Limit %lld, Used %lld, Requested %lld. "
                 "Please try again in %.3fs.",
                 who, lim_dim_info(d->dim)->text, (long long)d->limit, (long long)d->used,
                 (long long)d->requested, (double)d->retry_ms / 1000.0);
        snprintf(headers, sizeof(headers), "Retry-After: %lld\r\nretry-after-ms: %lld\r\n",
                 (long long)SL_MAX(secs, 1), (long long)SL_MAX(d->retry_ms, 1));
    }
    enum sl_error e = d->dim == LIM_DIM_REQUESTS || d->dim == LIM_DIM_TEAM_REQUESTS ||
                              d->dim == LIM_DIM_USER_REQUESTS ||
                              d->dim == LIM_DIM_TEAM_USER_REQUESTS || d->dim == LIM_DIM_SPIKE ||
                              d->dim == LIM_DIM_TEAM_SPIKE
                          ? ERR_RATE_LIMITED
                          : ERR_RATE_LIMITED_TOKENS;
    request_end(r, END_RATE_LIMITED, &(struct own_answer){ e, msg, headers });
}

static void renew_lease(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_request *r = arg;
    lim_renew(&r->w->limiter, &r->ticket, r->key->name, &r->limits);
}

/* A max_inflight slot taken: counted in sluice_inflight{key}, and in Redis
 * renewed every third of its lease until settlement frees it. */
static void hold_slot(struct sl_request *r)
{
    if (r->limits.max_inflight)
        mx_key_inflight(r->key->name, 1);
    if (r->ticket.where != LIM_REDIS)
        return;
    r->lease_renew = event_new(r->w->base, -1, EV_PERSIST, renew_lease, r);
    int64_t every = lim_lease_ms() / 3;
    event_add(r->lease_renew, &(struct timeval){ (time_t)(every / 1000),
                                                 (suseconds_t)(every % 1000) * 1000 });
}

/* ---- waiting for room ---------------------------------------------------------- */

/* How long before the client's own timer the request gives up waiting, so
 * the client still gets the answer (the SDK's timer started before sluice's). */
#define CLIENT_MARGIN_MS 250

/* The latest the request may still be waiting (queued, or for a backend's
 * Retry-After): request_timeout after it came, and a margin before the
 * client's own timeout when it sends one (x-stainless-timeout, seconds,
 * from the OpenAI SDKs). */
static int64_t client_deadline(struct sl_request *r)
{
    int64_t start = r->start_us / 1000, until = start + r->gen->cfg->server.request_timeout_ms;
    const struct sl_str *t = r->req ? http_header(r->req, "x-stainless-timeout") : NULL;
    char text[32];
    if (t && t->len && t->len < sizeof(text)) {
        memcpy(text, t->p, t->len);
        text[t->len] = '\0';
        char *end;
        double secs = strtod(text, &end);
        if (*end == '\0' && secs >= 0 && secs < 1e9) {
            int64_t ms = (int64_t)(secs * 1000.0);
            until = SL_MIN(until, start + ms - SL_MIN(CLIENT_MARGIN_MS, ms / 10));
        }
    }
    return until;
}

/* When the request stops waiting in its key's line: queue_timeout after it
 * came, and before the client's deadline. */
static int64_t wait_until(struct sl_request *r)
{
    if (!r->wait_until_ms)
        r->wait_until_ms = SL_MIN(r->start_us / 1000 + r->key->queue_timeout_ms, client_deadline(r));
    return r->wait_until_ms;
}

/* A refusal a wait can fix: a window or the slots, with room coming (by the
 * limiter's retry time) before the request's patience ends. */
static bool may_wait(struct sl_request *r, const struct lim_decision *d)
{
    if (!r->key->queue_timeout_ms || d->unavailable || d->retry_ms < 0 || !r->req)
        return false;
    return lim_dim_info(d->dim)->waitable && sl_now_ms() + d->retry_ms <= wait_until(r);
}

static void on_wait(evutil_socket_t fd, short what, void *arg);

/* Into the key's line (or on in it): the head asks again after retry_ms
 * (< 0: now), the others when they become the head, or give up when their
 * patience ends. No worker is held: the request is a timer. */
static void wait_for_room(struct sl_request *r, int64_t retry_ms, bool user)
{
    if (!r->wait_ev)
        r->wait_ev = event_new(r->w->base, -1, 0, on_wait, r);
    bool head;
    if (!r->waiter.line) {
        char line[CFG_NAME_MAX + EU_MAX + 3];
        line_name(r, user, line);
        head = waitq_join(&r->waiter, line, r->wait_ev);
        r->queued_since_us = sl_now_us();
    } else {
        head = waitq_is_head(&r->waiter);
    }
    set_phase(r, PHASE_QUEUED);
    int64_t now = sl_now_ms(), until = wait_until(r);
    int64_t at = head ? (retry_ms < 0 ? now : now + SL_MAX(retry_ms, 1)) : until;
    arm_ms(r->wait_ev, SL_MAX(SL_MIN(at, until) - now, 0));
}

/* Out of the line, whichever way the wait ended; the next one is woken. */
static void stop_waiting(struct sl_request *r)
{
    if (!r->waiter.line)
        return;
    waitq_leave(&r->waiter);
    int64_t waited = sl_now_us() - r->queued_since_us;
    r->queued_us += waited;
    mx_queue_wait((double)waited / 1e6);
}

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_request *r = arg;
    if (r->phase != PHASE_QUEUED)
        return; /* a wake that came as it left */
    int64_t now = sl_now_ms();
    if (!waitq_is_head(&r->waiter) && now < wait_until(r))
        return arm_ms(r->wait_ev, wait_until(r) - now); /* woken, but someone is ahead */
    /* the head, or out of patience: asks the limiter (once more: a 429 now if no room) */
    set_phase(r, PHASE_ADMITTING);
    lim_admit(&r->w->limiter, r->key->name, &r->limits, r->estimate, r->spend_reserve,
              on_admitted, r);
    /* r may be gone here */
}

static void on_admitted(const struct lim_decision *d, void *arg)
{
    struct sl_request *r = arg;
    r->ticket = *d;
    r->admit_end_us = sl_now_us();
    if (d->admitted && d->lease)
        hold_slot(r);
    if (r->phase == PHASE_ABANDONED) /* the client left, or the deadline passed, while we waited */
        return request_end(r, r->end, NULL);
    if (!d->admitted)
        return may_wait(r, d) ? wait_for_room(r, d->retry_ms, lim_dim_user(d->dim)) : refuse(r, d);
    stop_waiting(r);
    if (d->dim) { /* shadow mode: what enforcement would have refused, counted and let through */
        mx_rate_limited(r->key->name, lim_dim_info(d->dim)->label);
        char who[400], amounts[3][32];
        whose(r, d->dim, who, sizeof(who));
        const int64_t v[3] = { d->limit, d->used, d->requested };
        bool money = lim_dim_budget(d->dim);
        for (int i = 0; i < 3; i++)
            if (money)
                sl_fmt_money(v[i], amounts[i]);
            else
                amounts[i][sl_fmt_int(v[i], amounts[i])] = '\0';
        log_info("shadow: %s would be refused on %s (limit %s, used %s, requested %s%s)", who,
                 lim_dim_info(d->dim)->text, amounts[0], amounts[1], amounts[2], money ? " USD" : "");
    }
    set_phase(r, PHASE_FORWARDING);
    r->strip_usage = fwd_ask_for_usage(&r->fwd, &r->call);
    if (r->model && !r->call.stateful)
        set_target(r, r->model);
    attempt_next(r);
}

/* ---- attempts ------------------------------------------------------------- */

/* A backend's own rpm and tpm as limiter windows, under a name no key can
 * have ('@' + the backend's name): docs/pool.md, "Capacity". */
static struct lim_limits deployment_limits(const struct cfg_backend *be, char name[CFG_NAME_MAX + 2])
{
    name[0] = '@';
    snprintf(name + 1, CFG_NAME_MAX + 1, "%s", be->name);
    return (struct lim_limits){ .rpm = be->rpm, .input_tpm = be->tpm };
}

static bool never_sent(enum up_outcome o)
{
    return o == UP_OUTCOME_CONNECT_FAILED || o == UP_OUTCOME_CONNECT_TIMEOUT ||
           o == UP_OUTCOME_TLS_FAILED || o == UP_OUTCOME_NOT_STARTED;
}

/* Corrects the open deployment-window reservation to what the attempt used:
 * `tokens` (prompt and completion) instead of the reservation, and with
 * release the request itself undone. */
static void capacity_settle(struct sl_request *r, int64_t tokens, bool release)
{
    if (r->at.capacity_backend < 0)
        return;
    char name[CFG_NAME_MAX + 2];
    const struct cfg_backend *be = &r->gen->cfg->backends[r->at.capacity_backend];
    struct lim_limits lim = deployment_limits(be, name);
    const struct lim_decision *t = &r->at.capacity;
    struct lim_usage u = { .input_delta = (release ? 0 : tokens) - t->input_reserved,
                           .release = release };
    lim_settle(&r->w->limiter, t, name, &lim, &u);
    r->at.capacity_backend = -1;
}

static void note_full(struct sl_request *r, int64_t ms)
{
    if (ms >= 0 && (r->full_ms < 0 || ms < r->full_ms))
        r->full_ms = ms;
}

/* The attempt is over, classified once: the breaker's verdict, the metrics,
 * and what the request's answer will be made of if none follows. */
static void attempt_end(struct sl_request *r, enum up_outcome o, int64_t retry_after_ms,
                        double ttfb)
{
    const struct up_outcome_info *oi = up_outcome_info(o);
    r->at.xfer = NULL; /* freed by the upstream module, or already cancelled */
    r->at.outcome = o;
    if (r->ntraced && r->ntraced <= SPANS_MAX_ATTEMPTS && r->attempts == r->ntraced) {
        struct span_attempt *ta = &r->traced[r->ntraced - 1];
        ta->end_us = sl_now_us();
        ta->outcome = o;
    }
    r->retry_after_ms = retry_after_ms;
    r->last_pick = r->at.pick;
    pool_report(r->gen->pool, &r->at.pick, o, retry_after_ms);
    if (o != UP_OUTCOME_SUCCESS && o != UP_OUTCOME_PASSED && o != UP_OUTCOME_ABORTED)
        capacity_settle(r, 0, never_sent(o)); /* the deployment generated nothing for it */
    mx_attempt(r->gen->cfg->backends[r->at.pick.backend].name, oi->label, ttfb);
    if (o != UP_OUTCOME_RATE_LIMITED)
        r->all_429 = false;
    else if (retry_after_ms >= 0 &&
             (r->min_retry_after_ms < 0 || retry_after_ms < r->min_retry_after_ms))
        r->min_retry_after_ms = retry_after_ms;
}

/* Stops the running attempt from outside curl's callbacks (client gone,
 * deadline). */
static void attempt_stop(struct sl_request *r, enum up_outcome o)
{
    if (!r->at.xfer)
        return;
    up_cancel(r->at.xfer);
    attempt_end(r, o, -1, 0);
}

static void on_list_owners(bool ok, const char *const *owners, void *arg)
{
    struct sl_request *r = arg;
    if (r->phase == PHASE_ABANDONED) /* the client left, or the deadline passed, meanwhile */
        return request_end(r, r->end, NULL);
    if (!ok)
        return owners_unknown(r);
    owners_cut_list(r->list, owners, r->nlist, r->owner, r->kept_body);
    request_end(r, END_RESPONDED, NULL);
}

/* The records an answer made are written: the client may learn their ids now. */
static void on_recorded(void *arg)
{
    struct sl_request *r = arg;
    request_end(r, r->phase == PHASE_ABANDONED ? r->end : END_RESPONDED, NULL);
}

/* A list answer: its items' owners are looked up, then it is cut to the caller's. */
static void filter_list(struct sl_request *r)
{
    const char **ids = sl_malloc(LIM_OWNERS_MAX * sizeof(*ids));
    size_t len = evbuffer_get_length(r->kept_body);
    r->nlist = owners_list_ids((const char *)evbuffer_pullup(r->kept_body, -1), len, &r->list, ids);
    if (r->nlist <= 0) { /* not a list after all, or an empty one: nothing to show or hide */
        free(ids);
        return request_end(r, END_RESPONDED, NULL);
    }
    set_phase(r, PHASE_FILTERING);
    lim_owners(&r->w->limiter, ids, r->nlist, on_list_owners, r);
    free(ids); /* the limiter copied what it needs: MGET's text, or its answer already */
}

/* No further attempt: nothing was available at all (503 with the time until
 * the first breaker half-opens), every backend tried answered 429 (one 429
 * with the smallest Retry-After), or what the last attempt came to. */
static void end_attempts(struct sl_request *r)
{
    char headers[96];
    if (r->attempts == 0 && r->full_ms >= 0) {
        snprintf(headers, sizeof(headers), "Retry-After: %lld\r\nretry-after-ms: %lld\r\n",
                 (long long)SL_MAX((r->full_ms + 999) / 1000, 1), (long long)SL_MAX(r->full_ms, 1));
        return request_end(r, END_UPSTREAM_CAPACITY,
                           &(struct own_answer){ ERR_UPSTREAM_CAPACITY,
                                                 "Every upstream deployment for this model is at "
                                                 "its capacity right now; try again after "
                                                 "Retry-After.",
                                                 headers });
    }
    if (r->attempts == 0) {
        int64_t ms = r->call.stateful
                         ? pool_backend_available_ms(r->gen->pool, r->gen->cfg->stateful_backend)
                         : pool_next_available_ms(r->gen->pool, r->upstream, r->upstream_len);
        snprintf(headers, sizeof(headers), "Retry-After: %lld\r\n",
                 (long long)SL_MAX((ms + 999) / 1000, 1));
        return request_end(r, END_NO_BACKEND,
                           &(struct own_answer){ ERR_NO_BACKEND,
                                                 "No backend is available for this model right "
                                                 "now; try again later.",
                                                 headers });
    }
    if (r->attempts >= 2 && r->all_429) {
        headers[0] = '\0';
        if (r->min_retry_after_ms >= 0)
            snprintf(headers, sizeof(headers), "Retry-After: %lld\r\nretry-after-ms: %lld\r\n",
                     (long long)SL_MAX((r->min_retry_after_ms + 999) / 1000, 1),
                     (long long)r->min_retry_after_ms);
        return request_end(r, END_UPSTREAM_RATE_LIMITED,
                           &(struct own_answer){ ERR_UPSTREAM_RATE_LIMITED,
                                                 "Every upstream deployment for this model is "
                                                 "rate limited (their 429, not this key's limit); "
                                                 "try again after Retry-After.",
                                                 headers });
    }
    const struct up_outcome_info *oi = up_outcome_info(r->at.outcome);
    if (oi->error == ERR_NONE && oi->end == END_RESPONDED && r->kept_status >= 200 &&
        r->kept_status <= 299 && r->kept_body) {
        if (owners_is_list(&r->res) && r->kept_status == 200)
            return filter_list(r); /* only the caller's own are shown */
        set_phase(r, PHASE_FILTERING); /* what it created is the caller's before it is told */
        if (owners_after(&r->w->limiter, &r->call, &r->res, r->owner,
                         (const char *)evbuffer_pullup(r->kept_body, -1),
                         evbuffer_get_length(r->kept_body), on_recorded, r))
            return; /* on_recorded answers */
        return request_end(r, END_RESPONDED, NULL);
    }
    if (oi->error == ERR_NONE)
        return request_end(r, oi->end, NULL); /* the upstream's answer as it was */
    request_end(r, oi->end, &(struct own_answer){ oi->error, oi->message, NULL });
}

static enum up_method upstream_method(const struct http_req *req)
{
    return sl_str_eq(req->method, "GET")      ? UP_GET
           : sl_str_eq(req->method, "DELETE") ? UP_DELETE
                                              : UP_POST;
}

/* The backends the call cannot reach count as tried: never picked (those
 * of the other dialect, unless the call was translated for them). */
static void pass_over_other_dialect(struct sl_request *r)
{
    const struct config *cfg = r->gen->cfg;
    if (!cfg->any_anthropic && !api_endpoint_dialect(r->call.endpoint))
        return;
    for (int i = 0; i < cfg->nbackends; i++) {
        int route = dl_route(&cfg->backends[i], r->call.endpoint);
        if (route < 0 || (route > XL_NONE && !r->fwd.xlate.len))
            r->tried.bits[i / 64] |= 1ULL << (i % 64);
    }
}

/* Makes `name` the model tried from now on: its upstream name, the body that
 * names it, and all of its backends (of the call's dialect) untried. */
static void set_target(struct sl_request *r, const char *name)
{
    r->target = name;
    r->upstream = cfg_upstream_name(r->gen->cfg, name);
    r->upstream_len = strlen(r->upstream);
    memset(&r->tried, 0, sizeof(r->tried));
    pass_over_other_dialect(r);
    r->retried_same = false;
    fwd_rename_model(&r->fwd, &r->call, r->upstream, r->upstream_len);
}

/* The next model of the request's chain (fallbacks, or context_fallbacks
 * after context_length_exceeded) that the key may call; NULL at its end. */
static const char *next_fallback(struct sl_request *r)
{
    const struct cfg_model *m = cfg_find_model(r->gen->cfg, r->model);
    const struct cfg_models *chain = !m ? NULL : r->context_chain ? &m->context_fallbacks
                                                                  : &m->fallbacks;
    while (chain && r->next_fallback < chain->n) {
        const char *f = chain->names[r->next_fallback++];
        if (cfg_models_match(&r->key->models, f, strlen(f)))
            return f;
    }
    return NULL;
}

/* Moves on to the next model of the chain; false when none is left. */
static bool fall_back(struct sl_request *r, const char *why)
{
    const char *f = r->gen->cfg->nmodels ? next_fallback(r) : NULL;
    if (!f)
        return false;
    log_info("fallback key=%s from=%s to=%s reason=%s", r->key->name, r->target, f, why);
    set_target(r, f);
    return true;
}

/* The second chance of the backend that just failed, when no other backend
 * of the model is left (docs/pool.md, "The order of rescue"): after its
 * Retry-After when that is at most max_retry_wait, or at once after a
 * 500/502/503 without one or a request unanswered that may go again. Once
 * per model, within the client's deadline. The ms to wait first, or -1. */
static int64_t second_chance(struct sl_request *r)
{
    if (r->retried_same || r->attempts == 0 || r->at.target != r->target || r->call.stateful)
        return -1;
    const struct cfg_backend *be = &r->gen->cfg->backends[r->last_pick.backend];
    enum up_outcome o = r->at.outcome;
    int st = r->upstream_status;
    int64_t wait;
    if ((o == UP_OUTCOME_RATE_LIMITED || o == UP_OUTCOME_ERROR_STATUS) && r->retry_after_ms >= 0)
        wait = r->retry_after_ms <= be->max_retry_wait_ms ? r->retry_after_ms : -1;
    else if (o == UP_OUTCOME_ERROR_STATUS && (st == 500 || st == 502 || st == 503))
        wait = 0;
    else if (o == UP_OUTCOME_NO_ANSWER) /* up_on_done let it go again (may_resend) */
        wait = 0;
    else
        wait = -1;
    if (wait < 0 || sl_now_ms() + wait > client_deadline(r))
        return -1;
    return wait;
}

/* The backend that just failed, once more. */
static struct pool_pick pick_same(struct sl_request *r)
{
    r->retried_same = true;
    struct pool_pick pick = pool_pick_again(r->gen->pool, &r->last_pick, r->capacity_tokens,
                                            &r->tried);
    note_full(r, pick.full_ms);
    return pick;
}

/* A backend of the model; when every one is tried, unavailable or full, the
 * one that failed last gets its second chance (at once, or *wait_ms later),
 * else the next model of the chain; {-1} when none is left. */
static struct pool_pick pick_backend(struct sl_request *r, int64_t *wait_ms)
{
    const struct config *cfg = r->gen->cfg;
    struct pool_pick pick = { .backend = -1, .full_ms = -1 };
    if (r->attempts >= cfg->server.max_attempts)
        return pick;
    if (r->call.stateful) {
        pick = pool_pick_backend(r->gen->pool, cfg->stateful_backend, r->capacity_tokens,
                                 &r->tried);
        note_full(r, pick.full_ms);
        return pick;
    }
    do {
        pick = pool_pick(r->gen->pool, r->upstream, r->upstream_len, r->capacity_tokens,
                         &r->tried);
        note_full(r, pick.full_ms);
        if (pick.backend >= 0)
            return pick;
        int64_t wait = second_chance(r);
        if (wait > 0) {
            *wait_ms = wait;
            return pick;
        }
        if (wait == 0 && (pick = pick_same(r)).backend >= 0)
            return pick;
    } while (fall_back(r, "exhausted"));
    return pick;
}

static void attempt_start(struct sl_request *r);
static void attempt_go(struct sl_request *r);

/* The Retry-After of the backend's answer is over: the same backend again
 * (its breaker, opened for that long, lets one through), else on. */
static void on_retry_wait(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_request *r = arg;
    r->at.pick = pick_same(r);
    if (r->at.pick.backend < 0) {
        /* its breaker, opened for the Retry-After, may have a few ms left
         * (the wait was timed from the loop's clock): wait those out, once */
        int64_t left = pool_next_available_ms(r->gen->pool, r->upstream, r->upstream_len);
        if (!r->retry_rearmed && left > 0 && left <= 100) {
            r->retry_rearmed = true;
            r->at.pick = r->last_pick;
            return arm_ms(r->retry_ev, left + 2);
        }
        return attempt_next(r);
    }
    attempt_go(r);
}

/* The next backend: picked, then, if it has rpm or tpm of its own, admitted
 * by its windows (on the limiter, shared by all nodes with Redis). */
static void attempt_next(struct sl_request *r)
{
    int64_t wait = 0;
    r->at.pick = pick_backend(r, &wait);
    if (wait > 0) {
        log_info("retry key=%s backend=%s model=%s after_ms=%lld", r->key->name,
                 r->gen->cfg->backends[r->last_pick.backend].name, r->target, (long long)wait);
        r->retried_same = true;
        r->at.pick = r->last_pick; /* reported already: kept for the logs' backend */
        if (!r->retry_ev)
            r->retry_ev = evtimer_new(r->w->base, on_retry_wait, r);
        event_base_update_cache_time(r->w->base); /* timed from now, as the breaker's time is */
        return arm_ms(r->retry_ev, wait + 2);     /* whose open time is over by then */
    }
    if (r->at.pick.backend < 0)
        return end_attempts(r);
    attempt_go(r);
}

/* The picked backend: its own rpm/tpm first, if it has them, then the attempt. */
static void attempt_go(struct sl_request *r)
{
    const struct cfg_backend *be = &r->gen->cfg->backends[r->at.pick.backend];
    if (!be->rpm && !be->tpm)
        return attempt_start(r);
    char name[CFG_NAME_MAX + 2];
    struct lim_limits lim = deployment_limits(be, name);
    set_phase(r, PHASE_CAPACITY);
    lim_admit(&r->w->limiter, name, &lim, r->capacity_tokens, 0, on_capacity, r);
}

/* The backend's windows answered: go, or pass it over as full and pick again. */
static void on_capacity(const struct lim_decision *d, void *arg)
{
    struct sl_request *r = arg;
    if (r->phase == PHASE_DETACHED) { /* the request ended while the limiter held it */
        if (d->admitted) {
            r->at.capacity = *d;
            r->at.capacity_backend = r->at.pick.backend;
            capacity_settle(r, 0, true);
        }
        pool_unpick(r->gen->pool, &r->at.pick);
        set_phase(r, PHASE_DONE);
        return request_free(r);
    }
    set_phase(r, PHASE_FORWARDING);
    if (d->admitted) {
        r->at.capacity = *d;
        r->at.capacity_backend = r->at.pick.backend;
        return attempt_start(r);
    }
    if (d->unavailable) /* Redis down, on_error = deny: the key's limits decided already */
        return attempt_start(r);
    pool_unpick(r->gen->pool, &r->at.pick);
    note_full(r, d->retry_ms >= 0 ? d->retry_ms : lim_window_ms());
    log_debug("backend %s full on %s (limit %lld, used %lld)",
              r->gen->cfg->backends[r->at.pick.backend].name,
              d->dim == LIM_DIM_REQUESTS ? "rpm" : "tpm", (long long)d->limit, (long long)d->used);
    attempt_next(r);
}

/* Sends the request to the picked backend. */
static void attempt_start(struct sl_request *r)
{
    const struct config *cfg = r->gen->cfg;
    const struct cfg_backend *be = &cfg->backends[r->at.pick.backend];
    if (r->attempts) /* a retry after the last backend failed */
        mx_retry(cfg->backends[r->backend].name);
    r->backend = r->at.pick.backend;
    r->at.target = r->target;
    r->at.holding = r->at.output_seen = false;
    r->at.sent_us = sl_now_us();
    r->attempts++;
    if (cfg->telemetry.enabled && r->ntraced < SPANS_MAX_ATTEMPTS) {
        if (!r->traced)
            r->traced = sl_calloc(SPANS_MAX_ATTEMPTS, sizeof(*r->traced));
        struct span_attempt *ta = &r->traced[r->ntraced++];
        *ta = (struct span_attempt){ .backend = r->backend, .start_us = sl_now_us() };
        tel_new_span_id(ta->span_id);
    }
    fwd_headers_free(r->at.headers);
    free(r->at.url);
    int route = dl_route(be, r->call.endpoint);
    r->at.xl = route > XL_NONE && r->fwd.xlate.len ? route : XL_NONE;
    struct sl_str body = fwd_body_sent(&r->fwd, r->at.xl != XL_NONE);
    char traceparent[80];
    if (cfg->telemetry.enabled) { /* the attempt's span is the upstream's parent */
        bool own = r->ntraced && r->attempts == r->ntraced;
        tel_traceparent_header(&r->trace,
                               own ? r->traced[r->ntraced - 1].span_id : r->trace.span_id,
                               traceparent);
    }
    r->at.headers = fwd_headers(r->req, be, r->call.body, body.len,
                                cfg->telemetry.enabled ? traceparent : NULL);
    r->at.url = fwd_url(r->req, be, r->call.stateful, r->upstream, r->at.xl);
    struct up_request ur = {
        .method = upstream_method(r->req),
        .url = r->at.url,
        .headers = r->at.headers,
        .body = body.p,
        .body_len = body.len,
        .connect_timeout_ms = (long)be->connect_timeout_ms,
        .timeout_ms = (long)be->timeout_ms,
        .first_byte_timeout_ms = (long)be->first_byte_timeout_ms,
        .keepalive_s = (long)(be->keepalive_timeout_ms / 1000),
        .ca_file = be->ca_file,
        .client_cert = be->client_cert,
        .client_key = be->client_key,
        .insecure = !be->tls_verify,
    };
    r->at.xfer = up_start(r->w->up, &ur, &up_cb, r);
    if (!r->at.xfer) {
        attempt_end(r, UP_OUTCOME_NOT_STARTED, -1, 0);
        end_attempts(r);
    }
}

/* ---- upstream callbacks ---------------------------------------------------- */

static bool is_event_stream(struct up_transfer *t)
{
    struct sl_str ct;
    return up_header(t, "content-type", &ct) && sl_str_casestarts(ct, "text/event-stream");
}

/* A 2xx event stream: the client gets its head now and its events as they
 * come, as long as the upstream keeps sending. */
static void relay_begin(struct sl_request *r, struct up_transfer *t, int status)
{
    struct sl_buf h = { 0 };
    client_headers(r, t, &h);
    r->served = r->target;
    r->served_upstream = r->upstream;
    set_phase(r, PHASE_RELAYING);
    r->status = status;
    http_stream_begin(r->req, status, h.data, h.len);
    sl_buf_free(&h);
    r->at.last_data_ms = sl_now_ms();
    r->stream_idle = evtimer_new(r->w->base, on_stream_idle, r);
    arm_ms(r->stream_idle, r->gen->cfg->backends[r->at.pick.backend].stream_idle_timeout_ms);
}

/* An anthropic-ratelimit-*-reset: the RFC 3339 time the window refills, as
 * milliseconds from now. */
static bool reset_at_ms(struct sl_str v, int64_t *ms)
{
    char text[40];
    int64_t at;
    if (v.len == 0 || v.len >= sizeof(text))
        return false;
    memcpy(text, v.p, v.len);
    text[v.len] = '\0';
    if (!sl_parse_time(text, &at))
        return false;
    *ms = SL_MAX(at * 1000 - sl_wall_us() / 1000, 0);
    return true;
}

/* The upstream's own count of what is left, x-ratelimit-remaining-* with
 * its x-ratelimit-reset-* (an anthropic backend's anthropic-ratelimit-*,
 * its reset a time): at zero the backend is full until the reset. */
static void read_upstream_limits(struct sl_request *r, struct up_transfer *t)
{
    struct sl_str v;
    struct pool_upstream_limits u = { -1, -1, -1, -1 };
    bool anthropic = r->gen->cfg->backends[r->at.pick.backend].type == BACKEND_ANTHROPIC;
    static const char *const openai[2][2] = {
        { "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests" },
        { "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens" },
    };
    static const char *const claude[2][2] = {
        { "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset" },
        { "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset" },
    };
    const char *const(*names)[2] = anthropic ? claude : openai;
    int64_t *out[2][2] = { { &u.remaining_requests, &u.requests_reset_ms },
                           { &u.remaining_tokens, &u.tokens_reset_ms } };
    bool any = false;
    for (int i = 0; i < 2; i++) {
        char num[24];
        if (!up_header(t, names[i][0], &v) || v.len == 0 || v.len >= sizeof(num))
            continue;
        memcpy(num, v.p, v.len);
        num[v.len] = '\0';
        int64_t n, reset;
        if (!sl_parse_int(num, &n) || n < 0 || !up_header(t, names[i][1], &v) ||
            !(anthropic ? reset_at_ms(v, &reset) : sl_parse_reset_ms(v, &reset)))
            continue;
        *out[i][0] = n;
        *out[i][1] = SL_MIN(reset, POOL_MAX_OPEN_MS);
        any = true;
    }
    if (any)
        pool_upstream_said(r->gen->pool, r->at.pick.backend, &u);
}

static void on_first_token(evutil_socket_t fd, short what, void *arg);

/* first_token_timeout: the stream's head and events wait, unseen, for its
 * first output, so a slow first token can still fail over. */
static void hold_begin(struct sl_request *r, int64_t ms)
{
    r->at.holding = true;
    r->held.len = 0;
    if (!r->first_token)
        r->first_token = evtimer_new(r->w->base, on_first_token, r);
    arm_ms(r->first_token, ms);
}

/* The first output came (or the stream ended, or too much was held): the
 * client gets the head and what was held, and the stream from now on. */
static void hold_release(struct sl_request *r, struct up_transfer *t)
{
    r->at.holding = false;
    event_del(r->first_token);
    relay_begin(r, t, r->upstream_status);
    if (r->held.len)
        http_stream_queue(r->req, r->held.data, r->held.len);
    r->held.len = 0;
}

/* A new attempt's stream starts afresh: no text, no usage, no partial event. */
static void forget_relayed(struct sl_request *r)
{
    r->relayed = (struct tok_text){ 0, 0 };
    r->usage = (struct tok_usage){ 0 };
    sse_free(&r->sse);
    sse_init(&r->sse, MAX_SSE_EVENT);
}

/* What the held attempt relayed counts for nothing: it is dropped. */
static void hold_drop(struct sl_request *r)
{
    r->at.holding = false;
    event_del(r->first_token);
    r->held.len = 0;
    forget_relayed(r);
    r->events = 0;
}

static void up_on_headers(struct up_transfer *t, void *arg)
{
    struct sl_request *r = arg;
    r->ttfb = up_ttfb(t);
    pool_observe(r->gen->pool, r->at.pick.backend, (int64_t)(r->ttfb * 1e6));
    read_upstream_limits(r, t);
    int status = up_status(t);
    if (r->ntraced && r->attempts == r->ntraced)
        r->traced[r->ntraced - 1].status = status;
    if (r->phase == PHASE_RELAYING) { /* a continuation: the client has its head already */
        r->at.refused = !(status >= 200 && status <= 299 && is_event_stream(t));
        r->at.last_data_ms = sl_now_ms();
        return;
    }
    r->upstream_status = status;
    if (r->req && status >= 200 && status <= 299 && is_event_stream(t)) {
        const struct cfg_backend *be = &r->gen->cfg->backends[r->at.pick.backend];
        r->continuable = r->call.endpoint == API_CHAT && r->call.choices <= 1 && !r->at.xl &&
                         r->gen->cfg->any_prefill; /* its text is kept for a continuation */
        if (r->at.xl)
            xl_stream_init(&r->xs, r->at.xl, r->call.client_include_usage);
        r->said.len = 0;
        if (be->first_token_timeout_ms > 0 && r->call.stream)
            hold_begin(r, be->first_token_timeout_ms);
        else
            relay_begin(r, t, status);
    }
    /* anything else is buffered and answered whole */
}

#define MAX_HELD (1 << 20) /* held back beyond this, a stream is relayed whatever it holds */

/* Whether an event's data is the stream's output: text (tok_output_text
 * counted some), or a tool or function call. */
static bool is_output(const char *data, size_t len, int64_t text_before, const struct tok_text *t)
{
    return t->ascii + t->other > text_before || memmem(data, len, "\"tool_calls\"", 12) ||
           memmem(data, len, "\"function_call\"", 15) || memmem(data, len, "\"tool_use\"", 10);
}

/* A continuable stream keeps the assistant's text it relayed; a tool call
 * cannot be continued that way. */
static void keep_said(struct sl_request *r, struct sl_str data)
{
    struct sl_str raw;
    if (memmem(data.p, data.len, "\"tool_calls\"", 12))
        r->continuable = false;
    else if (tok_chat_content(data.p, data.len, &raw))
        sl_buf_append(&r->said, raw.p, raw.len);
}

/* The stream's first output: its time to first token, and the held head goes. */
static void first_output(struct sl_request *r)
{
    r->at.output_seen = true;
    mx_ttft(r->gen->cfg->backends[r->at.pick.backend].name,
            (double)(sl_now_us() - r->at.sent_us) / 1e6);
}

/* One complete SSE event from the upstream: count it, scrub it, pass it on
 * (or hold it back, while first_token_timeout runs). */
static void relay_event(const char *event, size_t len, void *arg)
{
    struct sl_request *r = arg;
    struct sl_buf copy = { 0 };
    size_t slen;
    const char *secret = backend_secret(r, &slen);
    if (slen >= HDR_MIN_SECRET && memmem(event, len, secret, slen)) { /* rare: scrub a copy */
        sl_buf_append(&copy, event, len);
        scrub(r, copy.data, len);
        event = copy.data;
    }
    bool drop = false, output = false;
    struct sl_str data;
    bool has_data = sse_event_data(event, len, &data, &r->scratch);
    if (has_data) {
        r->events++;
        if (!r->stream_owned) /* a stored response's id comes in its first event */
            r->stream_owned = owners_stream_event(&r->w->limiter, &r->call, r->owner, data.p, data.len);
        if (tok_usage_from_sse_data(data.p, data.len, &r->usage)) {
            drop = r->strip_usage && !r->at.xl; /* sluice asked for this chunk, the client did not */
        } else {
            int64_t before = r->relayed.ascii + r->relayed.other;
            tok_output_text(data.p, data.len, &r->relayed);
            output = !r->at.output_seen && is_output(data.p, data.len, before, &r->relayed);
            if (r->continuable)
                keep_said(r, data);
            if (r->continued && !r->at.output_seen && !output && memmem(data.p, data.len, "\"role\"", 6))
                drop = true; /* the continuation's opening chunk: the client had one */
        }
    }
    if (output)
        first_output(r);
    if (r->at.xl) { /* the client gets what the event is in its dialect */
        r->xl_out.len = 0;
        if (has_data)
            xl_stream_event(&r->xs, data.p, data.len, &r->xl_out);
        event = r->xl_out.data;
        len = r->xl_out.len;
        drop = drop || !len;
    }
    if (!drop && r->at.holding)
        sl_buf_append(&r->held, event, len);
    else if (!drop)
        http_stream_queue(r->req, event, len);
    if (r->at.holding && (output || r->held.len > MAX_HELD))
        hold_release(r, r->at.xfer);
    sl_buf_free(&copy);
}

static size_t up_on_data(struct up_transfer *t, const char *data, size_t len, void *arg)
{
    (void)t;
    struct sl_request *r = arg;
    if (r->at.holding) {
        sse_feed(&r->sse, data, len, relay_event, r);
        return len;
    }
    if (r->phase == PHASE_RELAYING) {
        r->at.last_data_ms = sl_now_ms();
        if (r->at.refused)
            return len; /* a continuation refused: its error is not the client's */
        if (http_pending_output(r->req) > STREAM_HIGH_MARK) {
            r->at.paused = true; /* resumed by on_client_drain */
            return UP_PAUSE;
        }
        sse_feed(&r->sse, data, len, relay_event, r);
        return len;
    }
    if ((int64_t)(evbuffer_get_length(r->body) + len) > MAX_RESPONSE_SIZE)
        return 0; /* UP_REFUSED: too large */
    evbuffer_add(r->body, data, len);
    return len;
}

/* A translated attempt's whole answer in the client's dialect (the body
 * replaced): an answer, or an error with the status the client gets. */
static int translate_answer(struct sl_request *r, const char *body, size_t len, int status)
{
    struct sl_buf out = { 0 };
    bool ok = status >= 200 && status <= 299;
    if (ok && !xl_response(r->at.xl, body, len, &out)) {
        sl_buf_free(&out); /* not the answer expected: as it came */
        return status;
    }
    if (!ok) {
        xl_error(r->at.xl, status, body, len, &out);
        status = xl_error_status(r->at.xl, status);
    }
    evbuffer_drain(r->body, len);
    evbuffer_add(r->body, out.data, out.len);
    sl_buf_free(&out);
    return status;
}

/* A complete answer, kept as the client would get it: the request's answer
 * if no other attempt follows. */
static void keep_answer(struct sl_request *r, struct up_transfer *t, int status)
{
    char *body = (char *)evbuffer_pullup(r->body, -1);
    size_t len = evbuffer_get_length(r->body);
    scrub(r, body, len);
    if (status >= 200 && status <= 299)
        tok_usage_from_body(body, len, &r->usage);
    if (r->at.xl)
        status = translate_answer(r, body, len, status);
    r->kept_status = status;
    r->kept_headers.len = 0;
    client_headers(r, t, &r->kept_headers);
    r->served = r->target;
    r->served_upstream = r->upstream;
    struct evbuffer *spare = r->kept_body; /* the next attempt's buffer, if one follows */
    r->kept_body = r->body;
    r->body = spare;
    if (r->body)
        evbuffer_drain(r->body, evbuffer_get_length(r->body));
}

/* A failed attempt in the words that explain it: the outcome, and the status
 * or curl's own description (printable, quoted, bounded). */
static void log_failed_attempt(const struct sl_request *r, const char *backend, enum up_outcome o,
                               int status, const char *why)
{
    char text[CURL_ERROR_SIZE];
    size_t i = 0;
    for (; why[i] && i + 1 < sizeof(text); i++)
        text[i] = why[i] >= 0x20 && why[i] < 0x7f && why[i] != '"' ? why[i] : '\'';
    text[i] = '\0';
    log_warn("attempt backend=%s outcome=%s attempt=%d key=%s status=%d error=\"%s\"", backend,
             up_outcome_info(o)->label, r->attempts, r->key->name, status, text);
}

/* An upstream's 400 context_length_exceeded, with an attempt left for another model. */
/* A 400 whose error's code (not its message) is context_length_exceeded. */
static bool context_exceeded(const struct sl_request *r, enum up_outcome o, int status)
{
    if (o != UP_OUTCOME_PASSED || status != 400 || !r->target || !r->kept_body ||
        r->attempts >= r->gen->cfg->server.max_attempts)
        return false;
    size_t len = evbuffer_get_length(r->kept_body);
    if (len > 65536) /* an error answer is small; this one is not one to read */
        return false;
    cJSON *root = cJSON_ParseWithLength((const char *)evbuffer_pullup(r->kept_body, -1), len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "error"), "code");
    bool exceeded = cJSON_IsString(code) && strcmp(code->valuestring, "context_length_exceeded") == 0;
    cJSON_Delete(root);
    return exceeded;
}

/* ---- a cut stream's continuation ---------------------------------------------- */

/* A backend that can continue the cut stream: the one that cut it, if it
 * can, else another of the model's (or its fallbacks') with prefill = yes. */
static struct pool_pick pick_prefill(struct sl_request *r)
{
    const struct config *cfg = r->gen->cfg;
    struct pool_pick pick = { .backend = -1, .full_ms = -1 };
    if (r->attempts >= cfg->server.max_attempts)
        return pick;
    if (cfg->backends[r->last_pick.backend].prefill)
        pick = pool_pick_again(r->gen->pool, &r->last_pick, r->capacity_tokens, &r->tried);
    while (pick.backend < 0) {
        for (int i = 0; i < cfg->nbackends; i++) /* the others cannot: passed over */
            if (!cfg->backends[i].prefill)
                r->tried.bits[i / 64] |= 1ULL << (i % 64);
        pick = pool_pick(r->gen->pool, r->upstream, r->upstream_len, r->capacity_tokens, &r->tried);
        if (pick.backend < 0 && !fall_back(r, "continue"))
            break;
    }
    return pick;
}

/* The stream was cut after output reached the client: a backend that can
 * continue an assistant message is sent the request with the text relayed
 * so far, and only its continuation is relayed, so the client receives one
 * whole answer. False when none can (the caller ends the stream as cut). */
static bool continue_stream(struct sl_request *r, enum up_outcome o)
{
    if (!r->continuable || !r->said.len || !r->req)
        return false;
    r->cut = o;
    struct pool_pick pick = pick_prefill(r);
    if (pick.backend < 0)
        return false;
    if (!fwd_continuation(&r->fwd, r->said.data, r->said.len)) {
        pool_unpick(r->gen->pool, &pick);
        return false;
    }
    r->continued = true;
    r->carried_input = r->usage.seen ? r->usage.prompt : r->estimate;
    r->carried_output = r->usage.seen ? r->usage.completion : tok_text_tokens(&r->relayed);
    forget_relayed(r);
    log_info("continue key=%s backend=%s model=%s after_tokens=%lld reason=%s", r->key->name,
             r->gen->cfg->backends[pick.backend].name, r->target, (long long)r->carried_output,
             up_outcome_info(o)->label);
    r->at.pick = pick;
    r->at.refused = false;
    attempt_start(r);
    return true;
}

/* The stream ends as cut: its error event (the cut attempt's, never a failed
 * continuation's) and a clean end. */
static void end_cut(struct sl_request *r, enum up_outcome o)
{
    const struct up_outcome_info *oi = up_outcome_info(r->continued ? r->cut : o);
    request_end(r, oi->end, &(struct own_answer){ oi->error, oi->message, NULL });
}

/* A request sent and not answered (the connection broke before any response
 * byte) may go again: always with resend_unanswered = yes, once for a
 * stateless inference call with stateless; within max_attempts. */
static bool may_resend(const struct sl_request *r, const struct cfg_backend *be)
{
    if (r->attempts >= r->gen->cfg->server.max_attempts)
        return false;
    if (be->resend_unanswered == RESEND_YES)
        return true;
    return be->resend_unanswered == RESEND_STATELESS && r->resent == 0 && r->req &&
           api_stateless(&r->call, r->req->method, r->req->path);
}

/* The attempt ended: classify it, then retry elsewhere or end the request. */
static void up_on_done(struct up_transfer *t, enum up_end how, void *arg)
{
    struct sl_request *r = arg;
    const struct cfg_backend *be = &r->gen->cfg->backends[r->at.pick.backend];
    if (r->at.holding && how == UP_ANSWERED)
        hold_release(r, t); /* a whole stream without output: relayed as it was */
    else if (r->at.holding)
        hold_drop(r); /* broken before any output: the client has nothing yet */
    bool relaying = r->phase == PHASE_RELAYING;
    int status = how == UP_ANSWERED ? up_status(t) : 0;
    enum up_outcome o = up_classify(how, status, relaying, &be->breaker_status);
    const struct up_outcome_info *oi = up_outcome_info(o);
    int64_t retry_after = status && oi->verdict == VERDICT_FAILURE ? up_retry_after_ms(t) : -1;
    if (status && !relaying)
        keep_answer(r, t, status);
    if (oi->verdict == VERDICT_FAILURE)
        log_failed_attempt(r, be->name, o, status, up_error(t));
    attempt_end(r, o, retry_after, up_ttfb(t));
    if (relaying) {
        if (o == UP_OUTCOME_SUCCESS && !r->at.refused) {
            sse_flush(&r->sse, relay_event, r);
            return request_end(r, END_RESPONDED, NULL);
        }
        if (!r->continued && continue_stream(r, o))
            return;
        return end_cut(r, o);
    }
    bool resend = oi->retry == RETRY_UNANSWERED && may_resend(r, be);
    if (resend)
        r->resent++;
    bool again = oi->retry == RETRY_YES || resend;
    if (!again && context_exceeded(r, o, status)) { /* a model with a larger context may answer */
        if (!r->context_chain) { /* from now on the context_fallbacks, from their first */
            r->context_chain = true;
            r->next_fallback = 0;
        }
        again = fall_back(r, "context_length_exceeded");
    }
    if (again) {
        if (!r->body)
            r->body = evbuffer_new();
        return attempt_next(r);
    }
    end_attempts(r);
}

/* curl wants to send the request again on a fresh connection: the kept-alive
 * one it went out on closed without answering, so the upstream may have read
 * it. Only with resend_unanswered and an attempt left; that transmission is
 * an attempt like any other. Its breaker verdict is the transfer's, at its end. */
static bool up_on_resend(struct up_transfer *t, void *arg)
{
    (void)t;
    struct sl_request *r = arg;
    const struct cfg_backend *be = &r->gen->cfg->backends[r->at.pick.backend];
    if (!may_resend(r, be))
        return false;
    r->resent++;
    log_failed_attempt(r, be->name, UP_OUTCOME_NO_ANSWER, 0,
                       "kept-alive connection closed without answering; sent again");
    mx_attempt(be->name, up_outcome_info(UP_OUTCOME_NO_ANSWER)->label, 0);
    mx_retry(be->name);
    r->attempts++;
    return true;
}

static const struct up_callbacks up_cb = { up_on_headers, up_on_data, up_on_done, up_on_resend };

/* ---- client events --------------------------------------------------------- */

/* The client left, or the deadline passed, while the limiter holds the
 * request: it is answered now and settled when the limiter's answer comes. */
static void abandon(struct sl_request *r, enum end_cause cause, const struct own_answer *own)
{
    r->end = cause;
    stop_waiting(r);
    answer(r, own);
    event_del(r->deadline);
    set_phase(r, PHASE_ABANDONED);
}

static void on_client_abort(struct http_req *req)
{
    struct sl_request *r = req->owner;
    r->req = NULL; /* http.c frees it right after this */
    r->status = 499; /* nginx's "client closed request" */
    if (r->phase == PHASE_ADMITTING || r->phase == PHASE_FILTERING)
        return abandon(r, END_CLIENT_CLOSED, NULL);
    attempt_stop(r, UP_OUTCOME_ABORTED);
    request_end(r, END_CLIENT_CLOSED, NULL);
}

static void on_client_drain(struct http_req *req)
{
    struct sl_request *r = req->owner;
    if (r->at.paused && r->at.xfer) {
        r->at.paused = false;
        r->at.last_data_ms = sl_now_ms(); /* silence while paused was sluice's doing */
        up_resume(r->at.xfer);
    }
}

/* The timer is not moved for every chunk: when it fires it looks at when the
 * last byte came, and sleeps again for the rest (nginx's lazy timers). */
static void on_stream_idle(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_request *r = arg;
    int64_t limit = r->gen->cfg->backends[r->at.pick.backend].stream_idle_timeout_ms;
    int64_t idle = r->at.paused ? 0 : sl_now_ms() - r->at.last_data_ms;
    if (r->at.paused)
        r->at.last_data_ms = sl_now_ms();
    if (idle < limit)
        return arm_ms(r->stream_idle, limit - idle);
    const struct up_outcome_info *oi = up_outcome_info(UP_OUTCOME_STREAM_STALLED);
    log_failed_attempt(r, r->gen->cfg->backends[r->at.pick.backend].name, UP_OUTCOME_STREAM_STALLED,
                       r->upstream_status, "the stream sent nothing for stream_idle_timeout");
    attempt_stop(r, UP_OUTCOME_STREAM_STALLED);
    if (!r->continued && continue_stream(r, UP_OUTCOME_STREAM_STALLED))
        return;
    (void)oi;
    end_cut(r, UP_OUTCOME_STREAM_STALLED);
}

/* No output within first_token_timeout: the client has seen nothing, so the
 * attempt ends and the next backend (or fallback) gets the request. */
static void on_first_token(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_request *r = arg;
    if (!r->at.holding)
        return;
    log_failed_attempt(r, r->gen->cfg->backends[r->at.pick.backend].name,
                       UP_OUTCOME_FIRST_TOKEN_TIMEOUT, r->upstream_status,
                       "the stream sent no output within first_token_timeout");
    hold_drop(r);
    attempt_stop(r, UP_OUTCOME_FIRST_TOKEN_TIMEOUT);
    if (!r->body)
        r->body = evbuffer_new();
    attempt_next(r);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_request *r = arg;
    if (r->phase == PHASE_ADMITTING || r->phase == PHASE_FILTERING)
        return abandon(r, END_REQUEST_TIMEOUT,
                       &(struct own_answer){ ERR_UPSTREAM_TIMEOUT,
                                             "The rate limiter did not answer in time.", NULL });
    attempt_stop(r, UP_OUTCOME_TIMEOUT);
    request_end(r, END_REQUEST_TIMEOUT,
                &(struct own_answer){ ERR_UPSTREAM_TIMEOUT,
                                      "The request took longer than the gateway's "
                                      "request_timeout.",
                                      NULL });
}

/* ---- the end ---------------------------------------------------------------- */

/* The finished request as the access and usage logs record it (usage.c
 * makes client-supplied text safe for each). */
static void record_of(const struct sl_request *r, struct usage_record *u)
{
    const struct config *cfg = r->gen->cfg;
    int64_t now = sl_now_us();
    *u = (struct usage_record){
        .end_us = sl_wall_us(),
        .key = r->key->name,
        .team = r->team ? r->team->name : "-",
        .user = r->user[0] ? r->user : "-",
        .model = r->model ? r->model : "-",
        .served_model = r->served_upstream ? r->served_upstream : "-",
        .backend = r->backend >= 0 ? cfg->backends[r->backend].name : "-",
        .path = r->path,
        .request_id = r->request_id,
        .end = end_cause_token(r->end),
        .outcome = r->attempts ? up_outcome_info(r->at.outcome)->label : "-",
        .status = r->status,
        .attempts = r->attempts,
        .stream = r->call.stream,
        .input_tokens = r->charged_input, /* what the limiter was told: settle() ran */
        .cached_tokens = r->usage.seen ? r->usage.cached : 0,
        .cache_write_tokens = r->usage.seen ? r->usage.cache_write : 0,
        .output_tokens = r->charged_output,
        .cost = r->cost,
        .ttfb_ms = r->ttfb * 1000.0,
        .duration_ms = (double)(now - r->start_us) / 1000.0,
        .queued_ms = (double)(r->queued_us / 1000),
    };
}

/* The access log line and the usage log record. */
static void write_record(const struct cfg_server *srv, const struct usage_record *u)
{
    if (srv->access_log && log_enabled(LOG_INFO)) { /* its lines are info, as always */
        struct sl_buf line = { 0 };
        usage_access_line(u, (enum access_format)srv->access_log_format, &line);
        log_line(line.data, line.len);
        sl_buf_free(&line);
    }
    if (srv->usage_log)
        usage_log_write(u);
}

static void log_request(const struct sl_request *r)
{
    const struct cfg_server *srv = &r->gen->cfg->server;
    if (!(srv->access_log && log_enabled(LOG_INFO)) && !srv->usage_log)
        return;
    struct usage_record u;
    record_of(r, &u);
    write_record(srv, &u);
}

/* The request's trace ([telemetry], sampled): spans.c makes its spans. */
static void trace_request(const struct sl_request *r)
{
    const struct config *cfg = r->gen->cfg;
    if (!cfg->telemetry.enabled || !r->trace.sampled)
        return;
    struct span_request sr = {
        .cfg = cfg,
        .trace = &r->trace,
        .method = r->method,
        .path = r->path,
        .model = r->model,
        .served_model = r->served_upstream,
        .key = r->key->name,
        .team = r->team ? r->team->name : NULL,
        .user = r->user[0] ? r->user : NULL,
        .backend = r->backend >= 0 ? cfg->backends[r->backend].name : NULL,
        .end = end_cause_token(r->end),
        .status = r->status,
        .attempts = r->attempts,
        .stream = r->call.stream,
        .usage_seen = r->usage.seen,
        .input_tokens = r->charged_input,
        .output_tokens = r->charged_output,
        .cost = r->cost,
        .start_us = r->start_us,
        .admit_start_us = r->admit_start_us,
        .admit_end_us = r->admit_end_us,
        .ticket = &r->ticket,
        .queued_ms = r->queued_us / 1000,
        .traced = r->traced,
        .ntraced = r->ntraced,
    };
    spans_export(r->w->tel, &sr);
}

/* Works out what the request used (docs/limits.md, "Settlement"), for the
 * metrics, and corrects the limiter's reservation to it. */
static void settle(struct sl_request *r)
{
    const struct lim_decision *t = &r->ticket;
    if (r->usage.invalid) /* tokens.h: negative, fractional, not a number, or 2^53 and more */
        log_warn("upstream usage not used: key=%s backend=%s sent a count sluice cannot take; "
                 "the estimate stays charged",
                 r->key->name, r->backend >= 0 ? r->gen->cfg->backends[r->backend].name : "-");
    int64_t input = r->estimate, output = 0;
    bool release = false;
    int up = r->upstream_status;
    if (r->usage.seen) {
        input = r->usage.prompt;
        output = r->usage.completion;
    } else if (up >= 200 && up <= 299) {
        output = tok_text_tokens(&r->relayed); /* no usage: the text relayed (0 if not a stream) */
    } else if (up) {
        input = 0; /* an error answer: nothing was processed */
    } else if (r->attempts == 0 || r->status != 499) {
        input = 0; /* never forwarded, or no upstream ever answered: undo it all */
        release = true;
    } /* else the client left before the upstream answered: the estimate stands */
    if (r->continued) { /* the cut attempt's, and its continuation's if it streamed */
        bool streamed = up >= 200 && up <= 299 && !r->at.refused && r->at.output_seen;
        input = r->carried_input + (r->usage.seen ? r->usage.prompt
                                    : streamed    ? r->estimate + r->carried_output
                                                  : 0);
        output = r->carried_output + output;
        release = false;
    }
    r->charged_input = input;
    r->charged_output = output;
    /* at the prices of the model that answered, else of the one tried last */
    const char *priced = r->served ? r->served : r->target;
    const struct cfg_model *prices = priced ? cfg_priced_model(r->gen->cfg, priced) : NULL;
    if (r->call.kind == API_KIND_PER_REQUEST) /* served, or the client left while it was */
        r->cost = (up >= 200 && up <= 299) || (!up && !release) ? spend_per_request(prices, &r->call)
                                                                : 0;
    else
        r->cost = spend_cost(prices, &(struct spend_tokens){
                                         .prompt = input,
                                         .cached = r->usage.seen ? r->usage.cached : 0,
                                         .cache_write = r->usage.seen ? r->usage.cache_write : 0,
                                         .completion = output });
    struct lim_usage u = { .input_delta = input - t->input_reserved,
                           .output = output,
                           .release = release,
                           .quota_delta = input + output - t->input_reserved,
                           .spend_delta = r->cost - t->spend_reserved };
    if (t->admitted && t->where != LIM_NOWHERE)
        lim_settle(&r->w->limiter, t, r->key->name, &r->limits, &u);
    if (t->admitted && t->lease && r->limits.max_inflight)
        mx_key_inflight(r->key->name, -1);
    if (t->admitted && t->lease && r->key->queue_timeout_ms) {
        waitq_poke(r->key->name); /* a slot freed here: the key's first waiter asks now */
        if (r->user[0]) {
            char line[CFG_NAME_MAX + EU_MAX + 3];
            line_name(r, true, line);
            waitq_poke(line);
        }
    }
    capacity_settle(r, input + output, release);
}

/* What a request struct keeps, freed with it. */
static void request_struct_free(struct sl_request *r)
{
    event_free(r->deadline);
    if (r->body)
        evbuffer_free(r->body);
    if (r->kept_body)
        evbuffer_free(r->kept_body);
    sl_buf_free(&r->kept_headers);
    free(r);
}

/* A finished request's struct goes on its worker's spare list, emptied. */
static void spare_request(struct sl_request *r)
{
    struct worker *w = r->w;
    if (w->nspare_requests >= SPARE_REQUESTS_MAX || r->kept_headers.cap > 16384)
        return request_struct_free(r);
    if (r->body)
        evbuffer_drain(r->body, evbuffer_get_length(r->body));
    if (r->kept_body)
        evbuffer_drain(r->kept_body, evbuffer_get_length(r->kept_body));
    r->kept_headers.len = 0;
    r->next_spare = w->spare_requests;
    w->spare_requests = r;
    w->nspare_requests++;
    SL_SPARE_POISON(r, sizeof(*r));
}

void proxy_worker_free(struct worker *w)
{
    while (w->jwt_waiting) /* the connections are gone: their requests with them */
        jwt_unlink(w, w->jwt_waiting);
    if (w->jwt_wake) {
        jwks_store_unwatch(w->jwks, w->jwt_wake);
        event_free(w->jwt_wake);
    }
    while (w->spare_requests) {
        struct sl_request *r = w->spare_requests;
        SL_SPARE_UNPOISON(r, sizeof(*r));
        w->spare_requests = r->next_spare;
        request_struct_free(r);
    }
    w->nspare_requests = 0;
}

static void request_free(struct sl_request *r)
{
    if (r->req) { /* not answered: only on internal paths that forgot to */
        r->req->owner = NULL;
        r->req->on_abort = NULL;
        r->req->on_drain = NULL;
    }
    if (r->at.xfer)
        up_cancel(r->at.xfer);
    event_del(r->deadline);
    if (r->stream_idle)
        event_free(r->stream_idle);
    if (r->first_token)
        event_free(r->first_token);
    sl_buf_free(&r->held);
    sl_buf_free(&r->xl_out);
    sl_buf_free(&r->said);
    if (r->lease_renew)
        event_free(r->lease_renew);
    stop_waiting(r); /* already out, but for paths that end without request_end */
    if (r->wait_ev)
        event_free(r->wait_ev);
    if (r->retry_ev)
        event_free(r->retry_ev);
    sse_free(&r->sse);
    sl_buf_free(&r->scratch);
    fwd_body_free(&r->fwd);
    free(r->traced);
    fwd_headers_free(r->at.headers);
    free(r->at.url);
    cJSON_Delete(r->call.root);
    keys_unref(r->rt);
    gen_unref(r->gen);
    spare_request(r);
}

/* Every request ends here, once, with its cause: the last answer, the
 * limiter's settlement, the access log line, the metrics. */
static void request_end(struct sl_request *r, enum end_cause cause, const struct own_answer *own)
{
    bool held = r->phase == PHASE_CAPACITY; /* the limiter still holds a backend's check */
    r->end = cause;
    stop_waiting(r); /* refused after waiting, or left while waiting: the wait is logged */
    cJSON_Delete(r->list);
    r->list = NULL;
    answer(r, own);
    set_phase(r, PHASE_SETTLING);
    settle(r);
    log_request(r);
    trace_request(r);
    const struct config *cfg = r->gen->cfg;
    const char *served = !r->served_upstream             ? "-"
                         : r->served_upstream == r->model ? r->model_label /* as it came */
                                                          : mx_model_label(cfg, r->served_upstream);
    struct mx_request m = { r->key->name, r->model_label, served,
                            r->backend >= 0 ? cfg->backends[r->backend].name : "-", r->status,
                            (double)(sl_now_us() - r->start_us) / 1e6, r->charged_input,
                            r->charged_output, r->team ? r->team->name : "",
                            r->cost, mx_user_label(cfg, r->user) };
    mx_request_done(&m);
    mx_inflight(-1);
    if (held) /* on_capacity comes, and frees it */
        return set_phase(r, PHASE_DETACHED);
    set_phase(r, PHASE_DONE);
    request_free(r);
}
