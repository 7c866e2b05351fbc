/* The contract between sluice and lua/limits.lua, declared once: the key
 * names, arguments and operations each call sends, and the slots of each
 * reply, in their order. limit_redis.c writes calls and reads replies by
 * these names; lua/limits.lua lists the same in its "--:" comment lines (its
 * code reads them by position: a table of names built on every call costs
 * Redis CPU on every request); tests/unit/test_limit_script.c fails when the
 * two lists disagree, and the script's own tests (test_limits_script.py)
 * drive it by the positions of the names here. */
#ifndef SLUICE_LIMIT_SCRIPT_H
#define SLUICE_LIMIT_SCRIPT_H

/* The Redis keys of a batch (KEYS), in order: (name, letter, whose: 0 the
 * key's, 1 the team's, 2 the end user's per key, 3 per team). A key's names
 * end in its letter (limit_redis.c, names_of). The user's scopes follow the
 * key's or the team's list, each only when the call has it (scopes). A
 * scope's three windows (requests, input and output tokens) are one string
 * (`windows`), read and written once per call. */
#define LS_KEYS_OWN(X)                                                                             \
    X(windows, 'w', 0)                                                                             \
    X(quota, 'q', 0)                                                                               \
    X(budget, 'b', 0)
#define LS_KEYS_SOLO(X) LS_KEYS_OWN(X) X(slots, 'f', 0)
#define LS_KEYS_TEAM(X)                                                                            \
    LS_KEYS_OWN(X)                                                                                 \
    X(team_windows, 'w', 1)                                                                        \
    X(team_budget, 'b', 1)                                                                         \
    X(slots, 'f', 0)                                                                               \
    X(team_slots, 'f', 1)
#define LS_KEYS_USER(X)                                                                            \
    X(user_windows, 'w', 2)                                                                        \
    X(user_budget, 'b', 2)                                                                         \
    X(user_slots, 'f', 2)
#define LS_KEYS_TEAM_USER(X)                                                                       \
    X(team_user_windows, 'w', 3)                                                                   \
    X(team_user_budget, 'b', 3)                                                                    \
    X(team_user_slots, 'f', 3)
/* spike_arrest's state (the theoretical arrival time), the key's and the
 * team's, each only when the call has it (scopes 8 and 16). */
#define LS_KEYS_SPIKE(X) X(spike, 's', 0)
#define LS_KEYS_TEAM_SPIKE(X) X(team_spike, 's', 1)

/* A batch's arguments (ARGV), in order; the team's follow only with a team,
 * the user's per key and per team only with those scopes, the key's and the
 * team's spike arrest only with theirs (scopes: their sum, 1 team, 2 and 4
 * the user's, enum lim_scope, 8 and 16 the spike arrests), then the number
 * of operations and the operations. */
#define LS_BATCH_ARGS(X)                                                                           \
    X(BUCKET_MS, bucket_ms)                                                                        \
    X(WINDOW_MS, window_ms)                                                                        \
    X(MODE, mode)                                                                                  \
    X(RPM, rpm)                                                                                    \
    X(INPUT_TPM, input_tpm)                                                                        \
    X(OUTPUT_TPM, output_tpm)                                                                      \
    X(QUOTA, quota)                                                                                \
    X(QUOTA_PERIOD, quota_period)                                                                  \
    X(CLOCK_OFFSET, clock_offset)                                                                  \
    X(BUDGET, budget)                                                                              \
    X(BUDGET_PERIOD, budget_period)                                                                \
    X(MAX_INFLIGHT, max_inflight)                                                                  \
    X(LEASE_MS, lease_ms)                                                                          \
    X(SCOPES, scopes)
#define LS_TEAM_ARGS(X)                                                                            \
    X(TEAM_RPM, team_rpm)                                                                          \
    X(TEAM_INPUT_TPM, team_input_tpm)                                                              \
    X(TEAM_OUTPUT_TPM, team_output_tpm)                                                            \
    X(TEAM_BUDGET, team_budget)                                                                    \
    X(TEAM_BUDGET_PERIOD, team_budget_period)                                                      \
    X(TEAM_MAX_INFLIGHT, team_max_inflight)
#define LS_USER_ARGS(X)                                                                            \
    X(USER_RPM, user_rpm)                                                                          \
    X(USER_INPUT_TPM, user_input_tpm)                                                              \
    X(USER_OUTPUT_TPM, user_output_tpm)                                                            \
    X(USER_BUDGET, user_budget)                                                                    \
    X(USER_BUDGET_PERIOD, user_budget_period)                                                      \
    X(USER_MAX_INFLIGHT, user_max_inflight)
#define LS_TEAM_USER_ARGS(X)                                                                       \
    X(TEAM_USER_RPM, team_user_rpm)                                                                \
    X(TEAM_USER_INPUT_TPM, team_user_input_tpm)                                                    \
    X(TEAM_USER_OUTPUT_TPM, team_user_output_tpm)                                                  \
    X(TEAM_USER_BUDGET, team_user_budget)                                                          \
    X(TEAM_USER_BUDGET_PERIOD, team_user_budget_period)                                            \
    X(TEAM_USER_MAX_INFLIGHT, team_user_max_inflight)
#define LS_SPIKE_ARGS(X) X(SPIKE_US, spike_us) X(SPIKE_BURST, spike_burst)
#define LS_TEAM_SPIKE_ARGS(X) X(TEAM_SPIKE_US, team_spike_us) X(TEAM_SPIKE_BURST, team_spike_burst)

/* One counter alone (the admin API): one key, the counter's prefix. */
#define LS_COUNT_ARGS(X)                                                                           \
    X(BUCKET_MS, bucket_ms)                                                                        \
    X(WINDOW_MS, window_ms)                                                                        \
    X(MODE, mode)                                                                                  \
    X(PERIOD, period)                                                                              \
    X(CLOCK_OFFSET, clock_offset)                                                                  \
    X(AMOUNT, amount)

/* The operations of a batch: the letter, then its arguments in order. An
 * admission's deadline is when sluice stops waiting for the answer, in
 * Redis's clock (ms; 0: none): one that runs later records nothing, and the
 * call answers the error LATE (after its settlements are done). */
#define LS_ADMIT_ARGS(X) X(COST, cost) X(FORCE, force) X(SPEND, spend) X(LEASE, lease) X(DEADLINE, deadline)
#define LS_SETTLE_ARGS(X)                                                                          \
    X(BUCKET, bucket)                                                                              \
    X(INPUT_DELTA, input_delta)                                                                    \
    X(OUTPUT, output)                                                                              \
    X(RELEASE, release)                                                                            \
    X(QUOTA_DELTA, quota_delta)                                                                    \
    X(QUOTA_PERIOD, quota_period)                                                                  \
    X(SPEND_DELTA, spend_delta)                                                                    \
    X(BUDGET_PERIOD, budget_period)                                                                \
    X(TEAM_BUDGET_PERIOD, team_budget_period)                                                      \
    X(USER_BUDGET_PERIOD, user_budget_period)                                                      \
    X(TEAM_USER_BUDGET_PERIOD, team_user_budget_period)                                            \
    X(LEASE, lease)
#define LS_RENEW_ARGS(X) X(LEASE, lease)
#define LS_OP_ADMIT 'a'
#define LS_OP_PEEK 'p'
#define LS_OP_SETTLE 's'
#define LS_OP_RENEW 'r'

/* The reply to an admission or a peek: (NAME, name, a period id rather than
 * a number, in the compact reply). The compact reply (a key without budget
 * or team) has only the slots marked so, in the same order. */
#define LS_REPLY(X)                                                                                \
    X(ADMITTED, admitted, 0, 1)                                                                    \
    X(DIMENSION, dimension, 0, 1)                                                                  \
    X(LIMIT, limit, 0, 1)                                                                          \
    X(USED, used, 0, 1)                                                                            \
    X(REQUESTED, requested, 0, 1)                                                                  \
    X(RETRY_MS, retry_ms, 0, 1)                                                                    \
    X(BUCKET, bucket, 0, 1)                                                                        \
    X(USED_REQUESTS, used_requests, 0, 1)                                                          \
    X(RESET_REQUESTS_MS, reset_requests_ms, 0, 1)                                                  \
    X(USED_INPUT, used_input, 0, 1)                                                                \
    X(RESET_INPUT_MS, reset_input_ms, 0, 1)                                                        \
    X(USED_OUTPUT, used_output, 0, 1)                                                              \
    X(RESET_OUTPUT_MS, reset_output_ms, 0, 1)                                                      \
    X(USED_QUOTA, used_quota, 0, 1)                                                                \
    X(QUOTA_RESET_MS, quota_reset_ms, 0, 1)                                                        \
    X(SPENT, spent, 0, 0)                                                                          \
    X(BUDGET_RESET_MS, budget_reset_ms, 0, 0)                                                      \
    X(TEAM_REQUESTS, team_requests, 0, 0)                                                          \
    X(TEAM_INPUT, team_input, 0, 0)                                                                \
    X(TEAM_OUTPUT, team_output, 0, 0)                                                              \
    X(TEAM_SPENT, team_spent, 0, 0)                                                                \
    X(TEAM_BUDGET_RESET_MS, team_budget_reset_ms, 0, 0)                                            \
    X(SLOTS, slots, 0, 1)                                                                          \
    X(TEAM_SLOTS, team_slots, 0, 0)                                                                \
    X(QUOTA_PERIOD, quota_period, 1, 1)                                                            \
    X(BUDGET_PERIOD, budget_period, 1, 0)                                                          \
    X(TEAM_BUDGET_PERIOD, team_budget_period, 1, 0)                                                \
    X(USER_REQUESTS, user_requests, 0, 0)                                                          \
    X(USER_INPUT, user_input, 0, 0)                                                                \
    X(USER_OUTPUT, user_output, 0, 0)                                                              \
    X(USER_SPENT, user_spent, 0, 0)                                                                \
    X(USER_BUDGET_RESET_MS, user_budget_reset_ms, 0, 0)                                            \
    X(USER_SLOTS, user_slots, 0, 0)                                                                \
    X(TEAM_USER_REQUESTS, team_user_requests, 0, 0)                                                \
    X(TEAM_USER_INPUT, team_user_input, 0, 0)                                                      \
    X(TEAM_USER_OUTPUT, team_user_output, 0, 0)                                                    \
    X(TEAM_USER_SPENT, team_user_spent, 0, 0)                                                      \
    X(TEAM_USER_BUDGET_RESET_MS, team_user_budget_reset_ms, 0, 0)                                  \
    X(TEAM_USER_SLOTS, team_user_slots, 0, 0)                                                      \
    X(USER_BUDGET_PERIOD, user_budget_period, 1, 0)                                                \
    X(TEAM_USER_BUDGET_PERIOD, team_user_budget_period, 1, 0)

/* The reply to one counter alone. */
#define LS_COUNT_REPLY(X) X(USED, used, 0, 1) X(RESET_MS, reset_ms, 0, 1) X(PERIOD, period, 1, 1)

#define LS_ENUM_ARG(NAME, name) LS_ARG_##NAME,
enum ls_batch_arg {
    LS_BATCH_ARGS(LS_ENUM_ARG) LS_TEAM_ARGS(LS_ENUM_ARG) LS_USER_ARGS(LS_ENUM_ARG)
        LS_TEAM_USER_ARGS(LS_ENUM_ARG) LS_SPIKE_ARGS(LS_ENUM_ARG) LS_TEAM_SPIKE_ARGS(LS_ENUM_ARG)
            LS_NARGS_ALL
};
#undef LS_ENUM_ARG
#define LS_ENUM_ARG(NAME, name) LS_CARG_##NAME,
enum ls_count_arg { LS_COUNT_ARGS(LS_ENUM_ARG) LS_NCOUNT_ARGS };
#undef LS_ENUM_ARG
#define LS_ENUM_ARG(NAME, name) LS_A_##NAME,
enum ls_admit_arg { LS_ADMIT_ARGS(LS_ENUM_ARG) LS_NADMIT_ARGS };
#undef LS_ENUM_ARG
#define LS_ENUM_ARG(NAME, name) LS_S_##NAME,
enum ls_settle_arg { LS_SETTLE_ARGS(LS_ENUM_ARG) LS_NSETTLE_ARGS };
#undef LS_ENUM_ARG
#define LS_ENUM_ARG(NAME, name) LS_W_##NAME,
enum ls_renew_arg { LS_RENEW_ARGS(LS_ENUM_ARG) LS_NRENEW_ARGS };
#undef LS_ENUM_ARG
#define LS_ENUM_REPLY(NAME, name, text, compact) LS_R_##NAME,
enum ls_reply { LS_REPLY(LS_ENUM_REPLY) LS_NREPLY };
#undef LS_ENUM_REPLY
#define LS_ENUM_COUNT_REPLY(NAME, name, text, compact) LS_C_##NAME,
enum ls_count_reply { LS_COUNT_REPLY(LS_ENUM_COUNT_REPLY) LS_NCOUNT_REPLY };
#undef LS_ENUM_COUNT_REPLY

#endif
