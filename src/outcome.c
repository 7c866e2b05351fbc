/* The tables behind outcome.h's two lists, and the one classification of an
 * upstream attempt. */
#include "sluice/outcome.h"

#include <string.h>

#include "sluice/config.h"

static const struct up_outcome_info outcomes[UP_OUTCOME__COUNT] = {
#define X(id, label, verdict, retry, error, end, message, doc)                                    \
    [UP_OUTCOME_##id] = { label, verdict, retry, error, END_##end, message, doc },
    UP_OUTCOMES(X)
#undef X
};

static const char *const end_tokens[END__COUNT] = {
#define X(id, token, doc) [END_##id] = token,
    END_CAUSES(X)
#undef X
};

static const char *const end_docs[END__COUNT] = {
#define X(id, token, doc) [END_##id] = doc,
    END_CAUSES(X)
#undef X
};

const struct up_outcome_info *up_outcome_info(enum up_outcome o)
{
    return &outcomes[o];
}

bool up_outcome_of_label(const char *label, size_t len, enum up_outcome *out)
{
    for (int o = 0; o < UP_OUTCOME__COUNT; o++) {
        if (strlen(outcomes[o].label) == len && memcmp(outcomes[o].label, label, len) == 0) {
            *out = (enum up_outcome)o;
            return true;
        }
    }
    return false;
}

const char *end_cause_token(enum end_cause c)
{
    return end_tokens[c];
}

const char *end_cause_doc(enum end_cause c)
{
    return end_docs[c];
}

enum up_outcome up_classify(enum up_end how, int status, bool relaying,
                            const struct cfg_statuses *breaker_status)
{
    switch (how) {
    case UP_ANSWERED:
        if (!cfg_status_in(breaker_status, status))
            return status >= 400 ? UP_OUTCOME_PASSED : UP_OUTCOME_SUCCESS;
        if (status == 401 || status == 403)
            return UP_OUTCOME_AUTH_REJECTED; /* our credential, not the client's key */
        return status == 429 ? UP_OUTCOME_RATE_LIMITED : UP_OUTCOME_ERROR_STATUS;
    case UP_CONNECT_FAILED:
        return UP_OUTCOME_CONNECT_FAILED;
    case UP_CONNECT_TIMEOUT:
        return UP_OUTCOME_CONNECT_TIMEOUT;
    case UP_TLS_FAILED:
        return UP_OUTCOME_TLS_FAILED;
    case UP_NO_ANSWER:
        return UP_OUTCOME_NO_ANSWER;
    case UP_TIMEOUT:
        return UP_OUTCOME_TIMEOUT;
    case UP_FIRST_BYTE_TIMEOUT:
        return UP_OUTCOME_FIRST_BYTE_TIMEOUT;
    case UP_REFUSED:
        return UP_OUTCOME_TOO_LARGE;
    case UP_BROKEN:
        break;
    }
    return relaying ? UP_OUTCOME_STREAM_BROKEN : UP_OUTCOME_BROKEN;
}
