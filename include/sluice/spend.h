/* Money (docs/budgets.md): what a request costs at its model's [model]
 * prices, what its admission reserves in the budgets, and the
 * sluice_budget_remaining_usd gauges. Amounts are whole micro-dollars. */
#ifndef SLUICE_SPEND_H
#define SLUICE_SPEND_H

#include <stdbool.h>
#include <stdint.h>

struct cfg_model;
struct cfg_key;
struct cfg_team;
struct api_call;
struct worker;

/* A call's tokens as priced: cached and cache_write are parts of prompt. */
struct spend_tokens {
    int64_t prompt;
    int64_t cached;      /* read from the prompt cache: cached_input_price */
    int64_t cache_write; /* written to it: cache_write_price */
    int64_t completion;
};
/* The tokens at the model's prices (the prompt's cached and written parts at
 * theirs, the rest at input_price), rounded up to a micro-dollar; a price
 * the model lacks (or no model) counts 0. */
int64_t spend_cost(const struct cfg_model *m, const struct spend_tokens *t);

/* Whether the key's requests, counted in team t (the key's own, or the one
 * a JWT names; NULL none), are held to a budget (the key's, the team's or an
 * end user's). */
bool spend_budgeted(const struct cfg_key *k, const struct cfg_team *t);
/* Whether they are counted in tokens or money at all (token limits, a quota,
 * a budget, of the key, its team or their users): such keys call only
 * endpoints sluice can account for (api_call.h). */
bool spend_accounted(const struct cfg_key *k, const struct cfg_team *t);

/* What a call priced per request costs (API_KIND_PER_REQUEST): its units at
 * the model's request_price, or speech's characters at its input_price per
 * 1M; 0 for any other call or a price the model lacks. */
int64_t spend_per_request(const struct cfg_model *m, const struct api_call *call);

/* The output tokens a request may generate, as reserved: what it allows
 * (max_tokens or the like, times n) or else the key's reserve_output_tokens;
 * 0 for embeddings. */
int64_t spend_output_reserve(const struct cfg_key *k, const struct api_call *call);

/* The price a call lacks at the model's prices (m may be NULL): "input_price
 * and output_price" for a call whose usage is read (input_price for
 * embeddings), "request_price" or speech's "input_price" for one priced per
 * request; NULL when it has its price or costs nothing anyway. */
const char *spend_missing_price(const struct cfg_model *m, const struct api_call *call);

/* What an admission reserves: the estimated prompt at the input price plus
 * spend_output_reserve() at the output price, or spend_per_request(); 0 for
 * a key without a budget. */
int64_t spend_reserve(const struct cfg_model *m, const struct cfg_key *k,
                      const struct cfg_team *t, const struct api_call *call);

/* Reads every budget of the worker's config from the limiter into the
 * gauges (worker 0, every SPEND_REFRESH_MS). */
#define SPEND_REFRESH_MS 5000
void spend_refresh(struct worker *w);

#endif
