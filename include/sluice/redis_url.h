/* Where the Redis of the limits is: [redis] url, parsed once for the
 * configuration check and the connection alike. */
#ifndef SLUICE_REDIS_URL_H
#define SLUICE_REDIS_URL_H

#include <stdbool.h>

struct redis_url {
    char host[256];
    int port;
    char path[256]; /* unix socket */
    char user[128];
    char password[256];
    int db;
};

/* redis://[user:password@]host[:port][/db] or unix:///path[?db=N]. False,
 * with *why saying what is wrong, for anything else. */
bool redis_url_parse(const char *url, struct redis_url *u, const char **why);

#endif
