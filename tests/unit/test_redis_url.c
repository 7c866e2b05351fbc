/* [redis] url: the forms sluice connects to, and a reason for any other. */
#include "check.h"
#include "sluice/redis_url.h"

int main(void)
{
    struct redis_url u;
    const char *why = NULL;
    CHECK(redis_url_parse("redis://127.0.0.1:6380/3", &u, &why));
    CHECK_STR(u.host, "127.0.0.1");
    CHECK(u.port == 6380 && u.db == 3 && !u.user[0] && !u.password[0] && !u.path[0]);
    CHECK(redis_url_parse("redis://cache.internal", &u, &why) && u.port == 6379 && u.db == 0);
    CHECK(redis_url_parse("redis://sluice:p%40ss:w@h:1/0", &u, &why));
    CHECK_STR(u.user, "sluice");
    CHECK_STR(u.password, "p%40ss:w"); /* up to the last '@'; the first ':' splits */
    CHECK_STR(u.host, "h");
    CHECK(redis_url_parse("redis://:secret@h", &u, &why) && !u.user[0]);
    CHECK_STR(u.password, "secret");
    CHECK(redis_url_parse("unix:///run/redis.sock?db=2", &u, &why) && u.db == 2);
    CHECK_STR(u.path, "/run/redis.sock");
    const char *bad[] = { "http://h", "redis://", "redis://:6379", "redis://h:0", "redis://h:99999",
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
