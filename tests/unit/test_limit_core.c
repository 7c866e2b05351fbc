/* The limiter's shared words: calendar periods (UTC; ISO weeks from Monday),
 * leases unique across the process, the dimensions' one list. */
#include <stdlib.h>

#include "check.h"
#include "sluice/config.h"
#include "sluice/limit_core.h"

static void test_periods(void)
{
    char id[LIM_PERIOD_ID];
    int64_t reset;
    /* 2026-12-06 (a Sunday) 12:00:00 UTC */
    int64_t now = 1796558400000LL;
    lim_period(QUOTA_PERIOD_DAY, now, id, &reset);
    CHECK_STR(id, "d20793");
    CHECK(reset == 12 * 3600 * 1000LL);
    lim_period(QUOTA_PERIOD_WEEK, now, id, &reset); /* from Monday 2026-11-30 */
    CHECK_STR(id, "w20787");
    CHECK(reset == 12 * 3600 * 1000LL); /* the week ends at midnight */
    lim_period(QUOTA_PERIOD_MONTH, now, id, &reset);
    CHECK_STR(id, "m202612");
    CHECK(reset == (25 * 24 + 12) * 3600 * 1000LL); /* 2027-01-01 */
    lim_period(QUOTA_PERIOD_TOTAL, now, id, &reset);
    CHECK_STR(id, "total");
    CHECK(reset == -1);
    /* the last millisecond of a day is still that day */
    lim_period(QUOTA_PERIOD_DAY, 1796601599999LL, id, &reset);
    CHECK_STR(id, "d20793");
    CHECK(reset == 1);
    CHECK(lim_period_end_s(reset, 1796601599999LL) == 1796601600LL);
    CHECK_STR(lim_period_text(QUOTA_PERIOD_WEEK), "this week (UTC, from Monday)");
}

static void test_leases_and_dims(void)
{
    int64_t a = lim_lease_new(), b = lim_lease_new();
    CHECK(a > 0 && b > a);
    char na[LIM_LEASE_NAME], nb[LIM_LEASE_NAME];
    lim_lease_name(a, na);
    lim_lease_name(b, nb);
    CHECK(strcmp(na, nb) != 0);
    CHECK(strncmp(na, nb, 17) == 0); /* one node id, then the number */
    CHECK(lim_lease_ms() == 30000 && lim_window_ms() == 60000);
    CHECK_STR(lim_dim_info(LIM_DIM_TEAM_INPUT)->label, "team_input_tokens");
    CHECK(lim_dim_info(LIM_DIM_TEAM_INPUT)->team && lim_dim_info(LIM_DIM_TEAM_INPUT)->waitable);
    CHECK(!lim_dim_info(LIM_DIM_BUDGET)->waitable && !lim_dim_info(LIM_DIM_QUOTA)->waitable);
    CHECK_STR(lim_dim_info((enum lim_dim)99)->label, ""); /* out of the list: none */
    struct lim_limits none = { 0 }, team = { .team = { .name = "t" } };
    CHECK(lim_unlimited(&none) && !lim_unlimited(&team));
}

int main(void)
{
    unsetenv("SLUICE_CLOCK_OFFSET_S");
    unsetenv("SLUICE_LEASE_MS");
    unsetenv("SLUICE_WINDOW_MS");
    test_periods();
    test_leases_and_dims();
    return check_done();
}
