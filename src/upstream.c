/* libcurl multi on libevent. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to time out (CURLMOPT_TIMERFUNCTION);
 * we tell curl when they are ready; finished transfers are collected after
 * every call into curl, outside curl's own callbacks. */
#include "sluice/upstream.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "sluice/log.h"

#define EASY_POOL_MAX 64
#define URL_SLOTS 64 /* parsed upstream URLs kept per worker */

/* The event of one socket curl uses. When curl stops watching a socket (an
 * upstream connection going idle in its cache) the event stays registered,
 * parked, so reusing the connection costs no epoll_ctl; it is freed when curl
 * closes the socket (CURLOPT_CLOSESOCKETFUNCTION), before the fd can be reused. */
struct sock {
    struct up_multi *m;
    struct event *ev;
    curl_socket_t fd;
    bool parked;
};

/* A parsed URL (CURLOPT_CURLU) kept for the next transfer to the same URL:
 * curl then copies it instead of parsing and re-assembling the text, about a
 * tenth of a transfer's instructions. A slot in use by a running transfer is
 * not replaced; a URL that finds its slot busy gets a handle of its own. */
struct url_slot {
    char *url;
    CURLU *parsed;
    int users; /* running transfers */
};

struct up_multi {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct event *kick; /* curl's "timeout 0": later in this loop pass, not after a poll */
    struct sock **socks; /* by fd */
    int nsocks;
    struct up_transfer *easy_pool[EASY_POOL_MAX]; /* handles ready for reuse, with their structs */
    int neasy;
    struct up_transfer *transfers;  /* running, for cleanup */
    bool proxy_env; /* a proxy variable is set: curl reads them for each transfer */
    struct url_slot urls[URL_SLOTS];
    char *system_ca, *system_capath; /* curl's built-in trust, for backends without ca_file */
    /* libevent's common timeouts for the first-byte deadlines: the same few
     * durations for every transfer, queued in O(1) instead of a heap. */
    struct { long ms; const struct timeval *tv; } first_byte_tv[8];
    int nfirst_byte_tv;
};

/* A transfer and its easy handle live and are pooled together: the options
 * that point at the struct are set once, when the handle is made. */
struct up_transfer {
    struct up_multi *m;
    CURL *easy;
    long connect_timeout_ms, timeout_ms, maxage_s; /* as last set on the handle */
    struct event *first_byte; /* request sent -> response head (first_byte_timeout) */
    struct sl_buf headers; /* the final response's header lines (memory kept) */
    char error[CURL_ERROR_SIZE]; /* curl's words for a failure */
    /* ---- zeroed for each transfer from here ---- */
    const struct up_callbacks *cb;
    void *arg;
    struct url_slot *slot; /* the parsed URL, shared */
    CURLU *own_url;        /* or one of its own */
    int status;
    bool headers_done;
    bool not_post; /* the handle's method was changed: back to POST when it is kept */
    int sends; /* times curl was about to send the request (CURLOPT_PREREQFUNCTION) */
    long first_byte_ms; /* 0: no deadline for the response head */
    struct up_transfer *prev, *next;
};

static void check_done(struct up_multi *m);

/* ---- curl <-> libevent ----------------------------------------------------- */

static void socket_event_cb(evutil_socket_t fd, short kind, void *arg)
{
    struct sock *k = arg;
    struct up_multi *m = k->m;
    if (k->parked) { /* an idle connection closed or sent something: curl finds out on reuse */
        event_del(k->ev);
        return;
    }
    int action = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(m->multi, fd, action, &running);
    check_done(m);
}

static void timer_event_cb(evutil_socket_t fd, short kind, void *arg)
{
    (void)fd;
    (void)kind;
    struct up_multi *m = arg;
    int running;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(m);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct up_multi *m = userp;
    struct sock *k = socketp;
    if (!k && s < m->nsocks)
        k = m->socks[s]; /* parked */
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            k->parked = true;
            curl_multi_assign(m->multi, s, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (!k) {
        if (s >= m->nsocks) {
            int n = SL_MAX(s + 1, m->nsocks * 2);
            m->socks = sl_realloc(m->socks, (size_t)n * sizeof(*m->socks));
            memset(m->socks + m->nsocks, 0, (size_t)(n - m->nsocks) * sizeof(*m->socks));
            m->nsocks = n;
        }
        k = sl_calloc(1, sizeof(*k));
        k->m = m;
        k->fd = s;
        k->ev = event_new(m->base, s, kind, socket_event_cb, k);
        m->socks[s] = k;
        event_add(k->ev, NULL);
    } else if (event_get_events(k->ev) != kind || !event_pending(k->ev, EV_READ | EV_WRITE, NULL)) {
        event_del(k->ev);
        event_assign(k->ev, m->base, s, kind, socket_event_cb, k);
        event_add(k->ev, NULL);
    }
    k->parked = false;
    curl_multi_assign(m->multi, s, k);
    return 0;
}

static void sock_free(struct up_multi *m, curl_socket_t s)
{
    if (s >= 0 && s < m->nsocks && m->socks[s]) {
        event_free(m->socks[s]->ev);
        free(m->socks[s]);
        m->socks[s] = NULL;
    }
}

/* curl is done with a socket: its event goes first, then the fd. */
static int close_cb(void *userp, curl_socket_t s)
{
    sock_free(userp, s);
    return close(s);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct up_multi *m = userp;
    if (timeout_ms <= 0) {
        evtimer_del(m->timer);
        if (timeout_ms == 0) /* an active event runs in this pass; a 0 ms timer needs another epoll_wait */
            event_active(m->kick, EV_TIMEOUT, 0);
        return 0;
    }
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    evtimer_add(m->timer, &tv);
    return 0;
}

/* ---- transfers ------------------------------------------------------------- */

static void transfer_free(struct up_transfer *t)
{
    event_free(t->first_byte);
    curl_easy_cleanup(t->easy);
    sl_buf_free(&t->headers);
    free(t);
}

static void unlink_transfer(struct up_transfer *t)
{
    struct up_multi *m = t->m;
    if (t->prev)
        t->prev->next = t->next;
    else
        m->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

/* The transfer is done with its URL handle. */
static void put_url(struct up_transfer *t)
{
    if (t->slot)
        t->slot->users--;
    curl_url_cleanup(t->own_url);
}

static void release(struct up_transfer *t)
{
    struct up_multi *m = t->m;
    evtimer_del(t->first_byte);
    curl_multi_remove_handle(m->multi, t->easy);
    unlink_transfer(t);
    put_url(t);
    if (m->neasy < EASY_POOL_MAX) {
        /* Kept as it is: every option up_start uses is either constant
         * (set when the handle was made), set again for each transfer, or
         * set when it differs from the last; the URL handle, which may be
         * freed while this one waits, goes. */
        curl_easy_setopt(t->easy, CURLOPT_CURLU, NULL);
        if (t->not_post) {
            curl_easy_setopt(t->easy, CURLOPT_CUSTOMREQUEST, NULL);
            curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
        }
        m->easy_pool[m->neasy++] = t;
    } else {
        transfer_free(t);
    }
}

static bool tls_failure(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        return true;
    default:
        return false;
    }
}

/* A transfer's result in the terms the rest of sluice uses. Whether the
 * request left at all is known for certain: curl calls the pre-request
 * callback once a connection is ready, right before it sends. */
static enum up_end transfer_end(const struct up_transfer *t, CURLcode rc)
{
    if (rc == CURLE_OK)
        return UP_ANSWERED;
    if (rc == CURLE_WRITE_ERROR)
        return UP_REFUSED;
    if (t->sends == 0) { /* name lookup, connect or TLS handshake: nothing was sent */
        if (rc == CURLE_OPERATION_TIMEDOUT)
            return UP_CONNECT_TIMEOUT;
        return tls_failure(rc) ? UP_TLS_FAILED : UP_CONNECT_FAILED;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return UP_TIMEOUT;
    return t->status ? UP_BROKEN : UP_NO_ANSWER;
}

static void check_done(struct up_multi *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct up_transfer *t = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (!t->headers_done && rc == CURLE_OK) {
            t->headers_done = true;
            t->cb->on_headers(t, t->arg);
        }
        t->cb->on_done(t, transfer_end(t, rc), t->arg);
        release(t);
    }
}

static size_t header_cb(char *line, size_t size, size_t n, void *arg)
{
    struct up_transfer *t = arg;
    size_t len = size * n;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        /* A new response head: an interim 1xx or the final one. */
        const char *sp = memchr(line, ' ', len);
        t->status = sp && sp + 4 <= line + len ? atoi(sp + 1) : 0;
        t->headers.len = 0;
        return len;
    }
    if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        if (t->status >= 200 && !t->headers_done) {
            t->headers_done = true;
            evtimer_del(t->first_byte);
            t->cb->on_headers(t, t->arg);
        }
        return len;
    }
    sl_buf_append(&t->headers, line, len);
    return len;
}

/* The timeval for a first-byte deadline of ms: a common timeout of the base
 * for the first few durations seen, else a plain one (kept in the slot 0 of
 * nothing: a static, as evtimer_add copies it). */
static const struct timeval *first_byte_tv(struct up_multi *m, long ms)
{
    for (int i = 0; i < m->nfirst_byte_tv; i++)
        if (m->first_byte_tv[i].ms == ms)
            return m->first_byte_tv[i].tv;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    if (m->nfirst_byte_tv < (int)SL_ARRAY_LEN(m->first_byte_tv)) {
        const struct timeval *common = event_base_init_common_timeout(m->base, &tv);
        if (common) {
            m->first_byte_tv[m->nfirst_byte_tv].ms = ms;
            m->first_byte_tv[m->nfirst_byte_tv++].tv = common;
            return common;
        }
    }
    static _Thread_local struct timeval plain;
    plain = tv;
    return &plain;
}

static int prereq_cb(void *arg, char *remote_ip, char *local_ip, int remote_port, int local_port)
{
    (void)remote_ip;
    (void)local_ip;
    (void)remote_port;
    (void)local_port;
    struct up_transfer *t = arg;
    if (t->sends++ == 0 || t->cb->on_resend(t, t->arg)) {
        if (t->first_byte_ms > 0) /* from this transmission to the response head */
            evtimer_add(t->first_byte, first_byte_tv(t->m, t->first_byte_ms));
        return CURL_PREREQFUNC_OK;
    }
    return CURL_PREREQFUNC_ABORT; /* sent, unanswered, not sent again: UP_NO_ANSWER */
}

/* The request went out first_byte_timeout ago and no response head came:
 * the transfer ends here, outside curl's callbacks, as curl's own would. */
static void first_byte_cb(evutil_socket_t fd, short kind, void *arg)
{
    (void)fd;
    (void)kind;
    struct up_transfer *t = arg;
    snprintf(t->error, sizeof(t->error), "no response head within first_byte_timeout (%ld ms)",
             t->first_byte_ms);
    t->cb->on_done(t, UP_FIRST_BYTE_TIMEOUT, t->arg);
    release(t);
}

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    struct up_transfer *t = arg;
    return t->cb->on_data(t, data, size * n, t->arg);
}

void up_ignore_headers(struct up_transfer *t, void *arg)
{
    (void)t;
    (void)arg;
}

bool up_resend_always(struct up_transfer *t, void *arg)
{
    (void)t;
    (void)arg;
    return true;
}

/* A transfer struct and its handle, with the options that never change
 * between transfers. */
static struct up_transfer *new_transfer(struct up_multi *m)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    struct up_transfer *t = sl_calloc(1, sizeof(*t));
    t->m = m;
    t->easy = e;
    t->connect_timeout_ms = t->timeout_ms = t->maxage_s = -1; /* set at the first transfer */
    t->first_byte = evtimer_new(m->base, first_byte_cb, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, m);
    if (!m->proxy_env) { /* nothing to find: spare curl five getenv() per transfer */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
        curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    return t;
}

/* Sets a numeric option only when it differs from what the handle has. */
static void set_long(CURL *e, CURLoption opt, long *have, long want)
{
    if (*have != want) {
        *have = want;
        curl_easy_setopt(e, opt, want);
    }
}

static CURLU *parse_url(const char *url)
{
    CURLU *u = curl_url();
    if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_PATH_AS_IS) != CURLUE_OK) {
        curl_url_cleanup(u);
        u = NULL;
    }
    return u;
}

/* Points the handle at the URL: a kept parse when there is one. */
static void set_url(struct up_multi *m, struct up_transfer *t, const char *url)
{
    struct url_slot *s = &m->urls[sl_hash(url, strlen(url)) % URL_SLOTS];
    if (!s->url || strcmp(s->url, url) != 0) {
        if (s->users == 0) {
            free(s->url);
            curl_url_cleanup(s->parsed);
            s->url = sl_strdup(url);
            s->parsed = parse_url(url);
        } else {
            s = NULL;
        }
    }
    CURLU *u = s ? s->parsed : (t->own_url = parse_url(url));
    if (!u) { /* curl will say what is wrong with it */
        curl_easy_setopt(t->easy, CURLOPT_CURLU, NULL);
        curl_easy_setopt(t->easy, CURLOPT_URL, url);
        return;
    }
    if (s) {
        s->users++;
        t->slot = s;
    }
    curl_easy_setopt(t->easy, CURLOPT_CURLU, u);
}

struct up_transfer *up_start(struct up_multi *m, const struct up_request *r,
                             const struct up_callbacks *cb, void *arg)
{
    struct up_transfer *t = m->neasy ? m->easy_pool[--m->neasy] : new_transfer(m);
    if (!t)
        return NULL;
    memset(&t->cb, 0, sizeof(*t) - offsetof(struct up_transfer, cb));
    t->headers.len = 0;
    t->error[0] = '\0';
    t->cb = cb;
    t->arg = arg;
    t->first_byte_ms = r->first_byte_timeout_ms;
    CURL *e = t->easy;
    set_url(m, t, r->url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
    if (r->method != UP_POST) {
        t->not_post = true;
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        if (r->method == UP_DELETE)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
    set_long(e, CURLOPT_CONNECTTIMEOUT_MS, &t->connect_timeout_ms, r->connect_timeout_ms);
    set_long(e, CURLOPT_TIMEOUT_MS, &t->timeout_ms, r->timeout_ms);
    /* curl reuses a connection idle for less than keepalive_s (it counts whole seconds). */
    set_long(e, CURLOPT_MAXAGE_CONN, &t->maxage_s, SL_MAX(r->keepalive_s - 1, 0L));
    if (strncmp(r->url, "https:", 6) == 0) { /* set each time: a pooled handle keeps the last ones */
        curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_file ? r->ca_file : m->system_ca);
        curl_easy_setopt(e, CURLOPT_CAPATH, r->ca_file ? NULL : m->system_capath);
        curl_easy_setopt(e, CURLOPT_SSLCERT, r->client_cert);
        curl_easy_setopt(e, CURLOPT_SSLKEY, r->client_key);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r->insecure ? 0L : 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r->insecure ? 0L : 2L);
    }
    t->next = m->transfers;
    if (m->transfers)
        m->transfers->prev = t;
    m->transfers = t;
    if (curl_multi_add_handle(m->multi, e) != CURLM_OK) {
        unlink_transfer(t);
        put_url(t);
        transfer_free(t);
        return NULL;
    }
    return t;
}

void up_cancel(struct up_transfer *t)
{
    release(t);
}

void up_resume(struct up_transfer *t)
{
    curl_easy_pause(t->easy, CURLPAUSE_CONT);
}

int up_status(const struct up_transfer *t)
{
    return t->status;
}

struct sl_str up_header_block(const struct up_transfer *t)
{
    return (struct sl_str){ t->headers.data ? t->headers.data : "", t->headers.len };
}

bool up_header(const struct up_transfer *t, const char *name, struct sl_str *value)
{
    size_t nlen = strlen(name);
    const char *p = t->headers.data, *end = p + t->headers.len;
    while (p && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *value = (struct sl_str){ v, (size_t)(ve - v) };
            return true;
        }
        p = eol + 1;
    }
    return false;
}

/* A non-negative decimal number (digits, optional fraction) in v. */
static bool parse_decimal(struct sl_str v, double *out)
{
    char buf[32];
    if (v.len == 0 || v.len >= sizeof(buf))
        return false;
    memcpy(buf, v.p, v.len);
    buf[v.len] = '\0';
    char *end;
    if (buf[0] < '0' || buf[0] > '9')
        return false;
    double d = strtod(buf, &end);
    if (*end || d < 0 || d > 1e12)
        return false;
    *out = d;
    return true;
}

int64_t up_retry_after_ms(const struct up_transfer *t)
{
    struct sl_str v;
    double d;
    if (up_header(t, "retry-after-ms", &v) && parse_decimal(v, &d))
        return (int64_t)d;
    if (!up_header(t, "retry-after", &v))
        return -1;
    if (parse_decimal(v, &d))
        return (int64_t)(d * 1000.0);
    char date[64];
    if (v.len >= sizeof(date))
        return -1;
    memcpy(date, v.p, v.len);
    date[v.len] = '\0';
    time_t when = curl_getdate(date, NULL);
    if (when < 0)
        return -1;
    time_t now = time(NULL);
    return when > now ? (int64_t)(when - now) * 1000 : 0;
}

const char *up_error(const struct up_transfer *t)
{
    return t->error;
}

double up_ttfb(const struct up_transfer *t)
{
    curl_off_t us = 0;
    curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &us);
    return (double)us / 1e6;
}

/* ---- multi ------------------------------------------------------------------ */

/* The variables libcurl honours for choosing a proxy. */
static bool proxy_in_environment(void)
{
    static const char *const names[] = { "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                          "ALL_PROXY", "no_proxy", "NO_PROXY" };
    for (size_t i = 0; i < SL_ARRAY_LEN(names); i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return true;
    }
    return false;
}

struct up_multi *up_multi_new(struct event_base *base)
{
    struct up_multi *m = sl_calloc(1, sizeof(*m));
    m->base = base;
    m->proxy_env = proxy_in_environment();
    m->multi = curl_multi_init();
    m->timer = evtimer_new(base, timer_event_cb, m);
    m->kick = event_new(base, -1, 0, timer_event_cb, m);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    /* Idle upstream connections kept for reuse. */
    curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 1024L);
    CURL *probe = curl_easy_init();
    char *ca = NULL, *capath = NULL;
    curl_easy_getinfo(probe, CURLINFO_CAINFO, &ca);
    curl_easy_getinfo(probe, CURLINFO_CAPATH, &capath);
    m->system_ca = ca ? sl_strdup(ca) : NULL;
    m->system_capath = capath ? sl_strdup(capath) : NULL;
    curl_easy_cleanup(probe);
    return m;
}

void up_multi_free(struct up_multi *m)
{
    if (!m)
        return;
    while (m->transfers)
        release(m->transfers);
    for (int i = 0; i < m->neasy; i++)
        transfer_free(m->easy_pool[i]);
    curl_multi_cleanup(m->multi); /* closes the connections: close_cb frees their events */
    for (int i = 0; i < m->nsocks; i++)
        sock_free(m, i);
    for (int i = 0; i < URL_SLOTS; i++) {
        free(m->urls[i].url);
        curl_url_cleanup(m->urls[i].parsed);
    }
    free(m->socks);
    free(m->system_ca);
    free(m->system_capath);
    event_free(m->timer);
    event_free(m->kick);
    free(m);
}
