/* The Redis client's own parts: Redis Cluster's key slots (the CRC16 and
 * hash tag rules of the cluster specification), and one server's client
 * against a redis-server this test starts: up, the connection for any key,
 * a dropped connection made again, redirections ignored outside a cluster,
 * and a subscription that hears what is published. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <string.h>
#include <unistd.h>

#define CHECK_WITH_REDIS
#include "check.h"
#include "sluice/redis_client.h"
#include "sluice/redis_url.h"

static struct event_base *base;

static void spin(bool (*done)(void *), void *arg)
{
    for (int i = 0; i < 3000 && !done(arg); i++) {
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static bool is_up(void *arg)
{
    return rcli_up(arg) && rcli_conn(arg, "k", 1);
}

static int prepared, messages;
static char message[64];

static void prepare(struct rconn *c, void *arg)
{
    (void)c;
    (void)arg;
    prepared++;
}

static void on_message(struct rconn *c, struct redisReply *rep, void *arg)
{
    (void)c;
    (void)arg;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        strcmp(rep->element[0]->str, "message") == 0) {
        messages++;
        snprintf(message, sizeof(message), "%s", rep->element[2]->str);
    }
}

static bool got_message(void *arg)
{
    (void)arg;
    return messages > 0;
}

static int pongs;
static void pong(struct rconn *c, struct redisReply *rep, void *arg)
{
    (void)c;
    (void)arg;
    if (rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0)
        pongs++;
}

static bool ponged(void *arg)
{
    (void)arg;
    return pongs > 0;
}

int main(void)
{
    /* the specification's example, and its hash tag rules */
    CHECK(rcli_slot("123456789", 9) == 12739); /* CRC16 0x31C3 */
    CHECK(rcli_slot("{user1000}.following", 20) == rcli_slot("{user1000}.followers", 20));
    CHECK(rcli_slot("{user1000}.following", 20) == rcli_slot("user1000", 8));
    CHECK(rcli_slot("foo{}{bar}", 10) != rcli_slot("bar", 3)); /* an empty tag: the whole key */
    CHECK(rcli_slot("foo{{bar}}zap", 13) == rcli_slot("{bar", 4));
    CHECK(rcli_slot("foo{bar}{zap}", 13) == rcli_slot("bar", 3));
    CHECK(rcli_slot("sluice:{platform}:k:team-a:r", 28) == rcli_slot("platform", 8));
    CHECK(rcli_slot("", 0) == 0);

    /* what the servers say, read */
    unsigned slot = 0;
    struct redis_host h;
    CHECK(rcli_parse_redirect("MOVED 3999 127.0.0.1:6381", &slot, &h) && slot == 3999 &&
          h.port == 6381 && strcmp(h.name, "127.0.0.1") == 0);
    CHECK(rcli_parse_redirect("ASK 12182 [::1]:7002", &slot, &h) && slot == 12182 &&
          strcmp(h.name, "::1") == 0 && h.port == 7002);
    CHECK(!rcli_parse_redirect("MOVED 16384 127.0.0.1:6381", &slot, &h));
    CHECK(!rcli_parse_redirect("MOVED 1 127.0.0.1:0", &slot, &h));
    CHECK(!rcli_parse_redirect("MOVED 1 :6381", &slot, &h));
    CHECK(!rcli_parse_redirect("MOVED 1", &slot, &h));
    CHECK(rcli_parse_switch("mymaster 127.0.0.1 6379 127.0.0.2 6380", "mymaster", &h) &&
          h.port == 6380 && strcmp(h.name, "127.0.0.2") == 0);
    CHECK(!rcli_parse_switch("other 127.0.0.1 6379 127.0.0.2 6380", "mymaster", &h));
    CHECK(!rcli_parse_switch("mymaster 127.0.0.1 6379 127.0.0.2 70000", "mymaster", &h));

    int port = check_free_port();
    char portstr[16], url[64];
    snprintf(portstr, sizeof(portstr), "%d", port);
    pid_t redis = check_start_redis(port, NULL);
    usleep(300000);
    base = event_base_new();
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    struct redis_url u;
    const char *why;
    CHECK(redis_url_parse(url, &u, &why));
    struct rcli_opts o = { .url = &u, .timeout_ms = 200, .prepare = prepare };
    struct rcli *cli = rcli_new(base, &o);
    spin(is_up, cli);
    CHECK(rcli_up(cli) && prepared == 1);
    struct rconn *c = rcli_conn(cli, "any", 3);
    CHECK(c && rcli_conn(cli, "other", 5) == c); /* one server: every key */
    struct rconn *to = NULL;
    CHECK(rcli_redirected(cli, c, "MOVED 12 127.0.0.1:1", &to) == RCLI_NONE && !to);
    CHECK(rcli_redirected(cli, c, "READONLY You can't write", &to) == RCLI_NONE);

    /* a subscription hears what a command on the data connection publishes */
    rcli_subscribe(cli, "sluice:test", on_message, NULL);
    for (int i = 0; i < 200 && !messages; i++) {
        const char *argv[] = { "PUBLISH", "sluice:test", "hello" };
        rconn_sendv(rcli_conn(cli, "k", 1), 3, argv, NULL, NULL, NULL);
        for (int j = 0; j < 20 && !got_message(NULL); j++) {
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            usleep(1000);
        }
    }
    CHECK(messages >= 1 && strcmp(message, "hello") == 0);

    /* a call given up: the connection goes, a new one is made and prepared */
    rcli_drop(cli, c);
    CHECK(!rcli_up(cli) && rcli_conn(cli, "k", 1) == NULL);
    spin(is_up, cli);
    CHECK(rcli_up(cli) && prepared == 2 && rcli_conn(cli, "k", 1) != NULL);
    const char *ping[] = { "PING" };
    CHECK(rconn_sendv(rcli_conn(cli, "k", 1), 1, ping, NULL, pong, NULL));
    spin(ponged, NULL);
    CHECK(pongs == 1);

    rcli_free(cli);
    kill(redis, SIGKILL);
    event_base_free(base);
    return check_done();
}
