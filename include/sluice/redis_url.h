/* Where the Redis of the limits is: [redis] url, parsed once for the
 * configuration check and the connection alike. */
#ifndef SLUICE_REDIS_URL_H
#define SLUICE_REDIS_URL_H

#include <stdbool.h>

enum redis_form {
    REDIS_SINGLE,   /* redis://, rediss://, unix:// */
    REDIS_SENTINEL, /* redis+sentinel://: the master a Sentinel names */
    REDIS_CLUSTER,  /* redis+cluster://: the slots' owners */
};

#define REDIS_URL_HOSTS 16

struct redis_host {
    char name[256];
    int port;
};

struct redis_url {
    enum redis_form form;
    bool tls;   /* rediss:// (and rediss+sentinel://, rediss+cluster://) */
    int nhosts; /* the server, the sentinels, or the cluster's seed nodes */
    struct redis_host hosts[REDIS_URL_HOSTS];
    char path[256]; /* unix socket */
    char user[128];
    char password[256];
    char master[128]; /* the Sentinel's name of the master */
    int db;
};

/* redis://[user:password@]host[:port][/db], rediss://… (TLS),
 * redis+sentinel://[user:password@]host[:port],host[:port]/MASTER[/db],
 * redis+cluster://[user:password@]host[:port],host[:port] or
 * unix:///path[?db=N]. False, with *why saying what is wrong, for anything
 * else. The user and password are the data nodes', not the sentinels'. */
bool redis_url_parse(const char *url, struct redis_url *u, const char **why);

#endif
