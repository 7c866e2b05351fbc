/* Money: a request's cost at its model's prices (cached prompt tokens at
 * theirs, rounded up to a micro-dollar, never overflowing) and what an
 * admission reserves. */
#include <stdint.h>

#include "check.h"
#include "sluice/api_call.h"
#include "sluice/config.h"
#include "sluice/spend.h"

static int64_t cost(const struct cfg_model *m, int64_t prompt, int64_t cached, int64_t written,
                    int64_t completion)
{
    return spend_cost(m, &(struct spend_tokens){ prompt, cached, written, completion });
}

int main(void)
{
    /* $2.50, $1.25 cached, $10.00 per 1M tokens, in micro-dollars per 1M */
    struct cfg_model m = { .input_price = 2500000, .cached_input_price = 1250000,
                           .output_price = 10000000 };
    CHECK(cost(&m, 1000000, 0, 0, 0) == 2500000);
    CHECK(cost(&m, 1000, 0, 0, 100) == 2500 + 1000);
    CHECK(cost(&m, 1000, 400, 0, 0) == 1500 + 500); /* the cached part at its price */
    CHECK(cost(&m, 1000, 5000, 0, 0) == 1250);      /* cached is at most the prompt */
    CHECK(cost(&m, 1, 0, 0, 0) == 3);                /* 2.5 micro-dollars, rounded up */
    CHECK(cost(&m, 0, 0, 0, 0) == 0 && cost(NULL, 100, 0, 0, 100) == 0);
    CHECK(cost(&m, -5, 0, 0, -5) == 0);              /* nothing negative is charged */
    /* Anthropic's prompt cache: written at cache_write_price, read at cached_input_price */
    struct cfg_model claude = { .input_price = 3000000, .cached_input_price = 300000,
                                .cache_write_price = 3750000, .output_price = 15000000 };
    CHECK(cost(&claude, 1000, 200, 300, 10) == 1500 + 60 + 1125 + 150);
    CHECK(cost(&claude, 1000, 800, 900, 0) == 240 + 750); /* written is at most what is not read */
    struct cfg_model dear = { .input_price = INT64_MAX, .output_price = INT64_MAX };
    CHECK(cost(&dear, INT64_MAX, 0, 0, INT64_MAX) == INT64_MAX); /* saturates */

    struct cfg_team team = { .budget = 5000000 };
    struct cfg_key k = { .reserve_output_tokens = 1000 }, tk = { .team = &team };
    CHECK(!spend_budgeted(&k, k.team) && spend_budgeted(&tk, tk.team));
    k.budget = 1000000;
    CHECK(spend_budgeted(&k, k.team));
    struct api_call call = { .endpoint = API_CHAT, .estimate = 2000 };
    CHECK(spend_output_reserve(&k, &call) == 1000); /* no max tokens: the key's reserve */
    call.max_tokens = 300;
    call.choices = 2;
    CHECK(spend_output_reserve(&k, &call) == 600); /* max tokens times n */
    CHECK(spend_reserve(&m, &k, k.team, &call) == 5000 + 6000);
    CHECK(spend_reserve(NULL, &k, k.team, &call) == 0);
    struct cfg_key unbudgeted = { 0 };
    CHECK(spend_reserve(&m, &unbudgeted, unbudgeted.team, &call) == 0);
    call.endpoint = API_EMBEDDINGS;
    CHECK(spend_output_reserve(&k, &call) == 0);
    return check_done();
}
