/* Costs, reservations and the budget gauges (spend.h). */
#include "sluice/generation.h"
#include "sluice/spend.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/metrics.h"
#include "sluice/api_call.h"
#include "sluice/util.h"
#include "sluice/worker-t.h"

/* Tokens times a price per 1M tokens: 128-bit, as 10^7 tokens at $10^5 per
 * 1M is already past 2^63 micro-dollars-per-million. */
static __int128 at_price(int64_t tokens, int64_t price)
{
    return tokens > 0 && price > 0 ? (__int128)tokens * price : 0;
}

int64_t spend_cost(const struct cfg_model *m, const struct spend_tokens *t)
{
    if (!m)
        return 0;
    int64_t prompt = t->prompt;
    int64_t cached = SL_MAX(SL_MIN(t->cached, prompt), 0);
    int64_t written = SL_MAX(SL_MIN(t->cache_write, prompt - cached), 0);
    __int128 sum = at_price(prompt - cached - written, m->input_price) +
                   at_price(cached, m->cached_input_price) +
                   at_price(written, m->cache_write_price) + at_price(t->completion, m->output_price);
    __int128 micro = (sum + 999999) / 1000000; /* rounded up: never charge less than used */
    return micro > INT64_MAX ? INT64_MAX : (int64_t)micro;
}

bool spend_budgeted(const struct cfg_key *k, const struct cfg_team *t)
{
    return cfg_key_has_budget(k, t);
}

bool spend_accounted(const struct cfg_key *k, const struct cfg_team *t)
{
    const struct cfg_user_limits *u = &k->users, *tu = t ? &t->users : NULL;
    return k->input_tpm || k->output_tpm || k->quota || cfg_key_has_budget(k, t) ||
           k->max_prompt_tokens || u->input_tpm || u->output_tpm ||
           (t && (t->input_tpm || t->output_tpm || tu->input_tpm || tu->output_tpm));
}

int64_t spend_per_request(const struct cfg_model *m, const struct api_call *call)
{
    if (!m || call->kind != API_KIND_PER_REQUEST)
        return 0;
    if (call->unit == API_UNIT_CHARACTER)
        return spend_cost(m, &(struct spend_tokens){ .prompt = call->units });
    __int128 micro = at_price(call->units, m->request_price);
    return micro > INT64_MAX ? INT64_MAX : (int64_t)micro;
}

const char *spend_missing_price(const struct cfg_model *m, const struct api_call *call)
{
    switch (call->kind) {
    case API_KIND_USAGE:
        if (call->endpoint == API_EMBEDDINGS)
            return m && m->input_price >= 0 ? NULL : "input_price";
        return m && m->input_price >= 0 && m->output_price >= 0 ? NULL
                                                                 : "input_price and output_price";
    case API_KIND_PER_REQUEST:
        if (call->unit == API_UNIT_CHARACTER)
            return m && m->input_price >= 0 ? NULL : "input_price";
        return m && m->request_price >= 0 ? NULL : "request_price";
    case API_KIND_FREE:
    case API_KIND_UNKNOWN:
        break;
    }
    return NULL;
}

int64_t spend_output_reserve(const struct cfg_key *k, const struct api_call *call)
{
    if (call->endpoint == API_EMBEDDINGS || call->endpoint == API_COUNT_TOKENS)
        return 0; /* the endpoints that never generate */
    return (call->max_tokens ? call->max_tokens : k->reserve_output_tokens) *
           SL_MAX(call->choices, 1);
}

int64_t spend_reserve(const struct cfg_model *m, const struct cfg_key *k,
                      const struct cfg_team *t, const struct api_call *call)
{
    if (!m || !spend_budgeted(k, t))
        return 0;
    if (call->kind == API_KIND_PER_REQUEST)
        return spend_per_request(m, call);
    return spend_cost(m, &(struct spend_tokens){ .prompt = call->estimate,
                                                 .completion = spend_output_reserve(k, call) });
}

/* ---- gauges ---- */

struct reading {
    struct generation *gen; /* keeps the names alive */
    const char *scope, *name;
    int64_t budget;
    enum lim_counter which;
};

static void read_done(const struct lim_decision *d, void *arg)
{
    struct reading *r = arg;
    if (!d->unavailable) {
        struct lim_count c = lim_count_of(d, r->which);
        mx_budget_remaining(r->scope, r->name, SL_MAX(r->budget - c.used, 0));
    }
    gen_unref(r->gen);
    free(r);
}

static void read_one(struct worker *w, const char *scope, const char *name,
                     const struct lim_limits *lim, enum lim_counter which, int64_t budget)
{
    struct reading *r = sl_calloc(1, sizeof(*r));
    *r = (struct reading){ gen_ref(w->gen), scope, name, budget, which };
    lim_count(&w->limiter, which == LIM_BUDGET ? name : "", lim, which, LIM_QUOTA_READ, 0,
              read_done, r);
}

void spend_refresh(struct worker *w)
{
    const struct config *c = w->gen->cfg;
    for (int i = 0; i < c->nkeys; i++) {
        const struct cfg_key *k = &c->keys[i];
        if (!k->budget)
            continue;
        struct lim_limits lim = lim_limits_of(k);
        read_one(w, "key", k->name, &lim, LIM_BUDGET, k->budget);
    }
    for (int i = 0; i < c->nteams; i++) {
        const struct cfg_team *t = &c->teams[i];
        if (!t->budget)
            continue;
        struct lim_limits lim = lim_team_limits_of(t);
        read_one(w, "team", t->name, &lim, LIM_TEAM_BUDGET, t->budget);
    }
}
