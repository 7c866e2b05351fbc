/* Config generations: each has a unique id, finds its keys by secret, counts
 * its references, and carries the breaker states of the generation it
 * replaces (a reload keeps an open breaker open). */
#define CHECK_WITH_CONFIG
#include "check.h"
#include "sluice/auth.h"
#include "sluice/generation.h"
#include "sluice/outcome.h"
#include "sluice/pool.h"

static const char conf[] = "[backend a]\nurl = http://127.0.0.1:9/v1\nbreaker_failures = 2\n"
                           "breaker_trip = 30s\n[key k]\nkey = sk-generation-test-1\n";

int main(void)
{
    struct config *c1 = check_load_config(conf, NULL);
    struct generation *g1 = gen_new(c1, NULL);
    CHECK(g1->cfg == c1 && atomic_load(&g1->refs) == 1);
    const struct cfg_key *k = auth_lookup(g1->auth, "sk-generation-test-1", 20);
    CHECK(k && strcmp(k->name, "k") == 0);
    CHECK(!auth_lookup(g1->auth, "sk-generation-test-2", 20));
    /* two failures open the breaker of backend a for model m */
    for (int i = 0; i < 2; i++) {
        struct pool_tried tried = { 0 };
        struct pool_pick pk = pool_pick(g1->pool, "m", 1, 0, &tried);
        CHECK(pk.backend == 0);
        pool_report(g1->pool, &pk, UP_OUTCOME_ERROR_STATUS, -1);
    }
    CHECK(pool_pair_state(g1->pool, 0, "m", 1) == BREAKER_OPEN);
    struct pool_tried none = { 0 }; /* and a connection failure (with a Retry-After) the backend's */
    struct pool_pick conn = pool_pick_backend(g1->pool, 0, 0, &none);
    CHECK(conn.backend == 0);
    pool_report(g1->pool, &conn, UP_OUTCOME_CONNECT_FAILED, 60000);
    CHECK(pool_state(g1->pool, 0) == BREAKER_OPEN);

    struct generation *g2 = gen_new(check_load_config(conf, NULL), g1); /* a reload */
    CHECK(g2->id > g1->id);
    CHECK(pool_state(g2->pool, 0) == BREAKER_OPEN); /* carried over, */
    CHECK(pool_pair_state(g2->pool, 0, "m", 1) == BREAKER_OPEN); /* the model's too */
    struct generation *fresh = gen_new(check_load_config(conf, NULL), NULL);
    CHECK(pool_state(fresh->pool, 0) == BREAKER_CLOSED && fresh->id > g2->id);
    CHECK(pool_pair_state(fresh->pool, 0, "m", 1) == BREAKER_CLOSED);

    CHECK(gen_ref(g1) == g1 && atomic_load(&g1->refs) == 2);
    gen_unref(g1);
    CHECK(atomic_load(&g1->refs) == 1);
    gen_unref(g1); /* the last reference: freed (the sanitizer build checks nothing leaks) */
    gen_unref(g2);
    gen_unref(fresh);
    gen_unref(NULL);
    return check_done();
}
