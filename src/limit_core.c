/* The limiter's shared words: the window's clock, periods, leases. */
#include "sluice/limit_core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/util.h"

int64_t lim_window_ms(void)
{
    const char *v = getenv("SLUICE_WINDOW_MS");
    int64_t ms;
    if (v && sl_parse_int(v, &ms) && ms >= LIM_BUCKETS && ms <= 3600000)
        return ms;
    return 60000;
}

static int64_t lease_ms;

static void read_lease_ms(void)
{
    const char *v = getenv("SLUICE_LEASE_MS");
    int64_t ms;
    lease_ms = v && sl_parse_int(v, &ms) && ms >= 300 && ms <= 3600000 ? ms : 30000;
}

int64_t lim_lease_ms(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_lease_ms); /* read once: every leased request asks */
    return lease_ms;
}

static atomic_llong last_lease;
static uint64_t node_id;

static void make_node_id(void)
{
    if (getrandom(&node_id, sizeof(node_id), 0) != (ssize_t)sizeof(node_id))
        node_id = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

int64_t lim_lease_new(void)
{
    return atomic_fetch_add(&last_lease, 1) + 1;
}

void lim_lease_name(int64_t lease, char out[LIM_LEASE_NAME])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_node_id);
    snprintf(out, LIM_LEASE_NAME, "%016llx-%lld", (unsigned long long)node_id, (long long)lease);
}

static int64_t clock_offset_s;

static void read_clock_offset(void)
{
    const char *v = getenv("SLUICE_CLOCK_OFFSET_S");
    int64_t s;
    clock_offset_s = v && sl_parse_int(v, &s) ? s : 0;
}

int64_t lim_clock_offset_s(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, read_clock_offset); /* the environment is read once */
    return clock_offset_s;
}

void lim_period(int kind, int64_t now_ms, char id[LIM_PERIOD_ID], int64_t *reset_ms)
{
    int64_t off = lim_clock_offset_s();
    time_t secs = (time_t)(now_ms / 1000 + off);
    int64_t day = (int64_t)(secs >= 0 ? secs / 86400 : (secs - 86399) / 86400);
    if (kind == QUOTA_PERIOD_DAY) {
        snprintf(id, LIM_PERIOD_ID, "d%lld", (long long)day);
        *reset_ms = ((day + 1) * 86400 - off) * 1000 - now_ms;
    } else if (kind == QUOTA_PERIOD_WEEK) { /* ISO: from Monday; day 0 was a Thursday */
        int64_t monday = day - ((day + 3) % 7 + 7) % 7;
        snprintf(id, LIM_PERIOD_ID, "w%lld", (long long)monday);
        *reset_ms = ((monday + 7) * 86400 - off) * 1000 - now_ms;
    } else if (kind == QUOTA_PERIOD_MONTH) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        snprintf(id, LIM_PERIOD_ID, "m%d", (tm.tm_year + 1900) * 100 + tm.tm_mon + 1);
        struct tm next = { .tm_year = tm.tm_mon == 11 ? tm.tm_year + 1 : tm.tm_year,
                           .tm_mon = (tm.tm_mon + 1) % 12, .tm_mday = 1 };
        *reset_ms = ((int64_t)timegm(&next) - off) * 1000 - now_ms;
    } else {
        snprintf(id, LIM_PERIOD_ID, "total");
        *reset_ms = -1;
    }
}

int64_t lim_period_end_s(int64_t reset_ms, int64_t wall_now_ms)
{
    return (wall_now_ms + reset_ms + 500) / 1000;
}

static bool user_limited(const struct lim_user *u)
{
    return u->rpm || u->input_tpm || u->output_tpm || u->budget || u->max_inflight;
}

bool lim_user_scope(const struct lim_limits *lim, enum lim_scope s)
{
    if (!lim->user[0])
        return false;
    if (s == LIM_SCOPE_USER)
        return user_limited(&lim->key_user);
    return lim->team.name[0] && user_limited(&lim->team_user);
}

bool lim_takes_slot(const struct lim_limits *lim)
{
    return lim->max_inflight || (lim->team.name[0] && lim->team.max_inflight) ||
           (lim_user_scope(lim, LIM_SCOPE_USER) && lim->key_user.max_inflight) ||
           (lim_user_scope(lim, LIM_SCOPE_TEAM_USER) && lim->team_user.max_inflight);
}

bool lim_unlimited(const struct lim_limits *lim)
{
    return !lim->rpm && !lim->input_tpm && !lim->output_tpm && !lim->quota && !lim->budget &&
           !lim->max_inflight && !lim->spike_us && !lim->team.name[0] &&
           !lim_user_scope(lim, LIM_SCOPE_USER);
}

struct lim_count lim_count_of(const struct lim_decision *d, enum lim_counter which)
{
    if (which == LIM_BUDGET)
        return d->budget;
    if (which == LIM_TEAM_BUDGET)
        return d->team_budget;
    if (which == LIM_USER_BUDGET)
        return d->user.budget;
    if (which == LIM_TEAM_USER_BUDGET)
        return d->team_user.budget;
    struct lim_count c = { d->used_quota, d->quota_reset_ms, { 0 } };
    memcpy(c.period, d->period, sizeof(c.period));
    return c;
}

static const struct lim_dim_info dims[] = {
#define LIM_DIM_ROW(name, code, label, text, team, waitable) [code] = { label, text, team, waitable },
    LIM_DIMS(LIM_DIM_ROW)
#undef LIM_DIM_ROW
};

const struct lim_dim_info *lim_dim_info(enum lim_dim d)
{
    return &dims[(unsigned)d < SL_ARRAY_LEN(dims) ? d : LIM_DIM_NONE];
}

bool lim_dim_user(enum lim_dim d)
{
    return d >= LIM_DIM_USER_REQUESTS && d <= LIM_DIM_TEAM_USER_INFLIGHT;
}

bool lim_dim_budget(enum lim_dim d)
{
    return d == LIM_DIM_BUDGET || d == LIM_DIM_TEAM_BUDGET || d == LIM_DIM_USER_BUDGET ||
           d == LIM_DIM_TEAM_USER_BUDGET;
}

const char *lim_period_text(int kind)
{
    switch (kind) {
    case QUOTA_PERIOD_DAY:
        return "today (UTC)";
    case QUOTA_PERIOD_MONTH:
        return "this month (UTC)";
    case QUOTA_PERIOD_TOTAL:
        return "in total";
    case QUOTA_PERIOD_WEEK:
        return "this week (UTC, from Monday)";
    default:
        return "";
    }
}
