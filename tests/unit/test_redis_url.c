/* [redis] url: the forms sluice connects to, and a reason for any other. */
#include "check.h"
#include "sluice/redis_url.h"

int main(void)
{
    struct redis_url u;
    const char *why = NULL;
    CHECK(redis_url_parse("redis://127.0.0.1:6380/3", &u, &why));
    CHECK_STR(u.hosts[0].name, "127.0.0.1");
    CHECK(u.nhosts == 1 && u.form == REDIS_SINGLE && !u.tls && u.hosts[0].port == 6380 && u.db == 3 && !u.user[0] && !u.password[0] && !u.path[0]);
    CHECK(redis_url_parse("redis://cache.internal", &u, &why) && u.hosts[0].port == 6379 && u.db == 0);
    CHECK(redis_url_parse("redis://sluice:p%40ss:w@h:1/0", &u, &why));
    CHECK_STR(u.user, "sluice");
    CHECK_STR(u.password, "p%40ss:w"); /* up to the last '@'; the first ':' splits */
    CHECK_STR(u.hosts[0].name, "h");
    CHECK(redis_url_parse("redis://:secret@h", &u, &why) && !u.user[0]);
    CHECK_STR(u.password, "secret");
    CHECK(redis_url_parse("unix:///run/redis.sock?db=2", &u, &why) && u.db == 2);
    CHECK_STR(u.path, "/run/redis.sock");
    /* TLS, Sentinel and Cluster */
    CHECK(redis_url_parse("rediss://app:pw@cache.example:6380/2", &u, &why) && u.tls &&
          u.form == REDIS_SINGLE && u.db == 2 && u.hosts[0].port == 6380);
    CHECK_STR(u.user, "app");
    CHECK(redis_url_parse("redis+sentinel://:pw@s1,s2:26380/mymaster/3", &u, &why) &&
          u.form == REDIS_SENTINEL && !u.tls && u.nhosts == 2 && u.db == 3);
    CHECK(u.hosts[0].port == 26379 && u.hosts[1].port == 26380);
    CHECK_STR(u.hosts[1].name, "s2");
    CHECK_STR(u.master, "mymaster");
    CHECK_STR(u.password, "pw");
    CHECK(redis_url_parse("rediss+sentinel://s1/m", &u, &why) && u.tls && u.db == 0);
    CHECK(redis_url_parse("redis+cluster://n1:7000,n2:7001,n3", &u, &why) &&
          u.form == REDIS_CLUSTER && u.nhosts == 3 && u.hosts[2].port == 6379);
    CHECK(redis_url_parse("rediss+cluster://u:p@n1:7000", &u, &why) && u.tls && u.nhosts == 1);
    const char *bad[] = { "redis://a,b", "redis+sentinel://s1", "redis+sentinel://s1/",
                          "redis+cluster://n1/0", "redis+cluster://n1,", "redis+cluster://,n1",
                          "redis+sentinel://s1,,s2/m", "rediss:/h", "http://h", "redis://", "redis://:6379", "redis://h:0", "redis://h:99999",
                          "redis://h:12x", "redis://h/1001", "redis://h/-1", "unix://", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        CHECK(!redis_url_parse(bad[i], &u, &why) && why && *why);
    }
    char long_host[400] = "redis://";
    memset(long_host + 8, 'h', 300);
    CHECK(!redis_url_parse(long_host, &u, &why));
    return check_done();
}
