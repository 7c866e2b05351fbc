/* The listeners' TLS context: a certificate and its key load; a key of
 * another certificate, a missing file or a file that is not PEM is refused
 * with a reason; the days a certificate has left are read. Certificates are
 * made here with the openssl command. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "sluice/tls.h"

static char dir[] = "/tmp/sluice-tls-XXXXXX";

static void make(const char *name, int days)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-keyout %s.key -out %s.pem -days %d -subj /CN=localhost >/dev/null 2>&1",
             dir, name, name, days);
    CHECK(system(cmd) == 0);
}

static const char *path(const char *file)
{
    static char p[4][128];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, file);
    return p[i];
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    make("a", 30);
    make("b", 400);
    char err[256] = "";
    struct ssl_ctx_st *ctx = tls_server_new(path("a.pem"), path("a.key"), NULL, err, sizeof(err));
    CHECK(ctx != NULL);
    tls_ctx_free(ctx);
    ctx = tls_server_new(path("a.pem"), path("a.key"), path("b.pem"), err, sizeof(err)); /* mTLS */
    CHECK(ctx != NULL);
    tls_ctx_free(ctx);
    err[0] = '\0';
    CHECK(tls_server_new(path("a.pem"), path("b.key"), NULL, err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0'); /* the key is not the certificate's */
    err[0] = '\0';
    CHECK(tls_server_new(path("missing.pem"), path("a.key"), NULL, err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
    FILE *f = fopen(path("junk.pem"), "w");
    fputs("not a certificate\n", f);
    fclose(f);
    CHECK(tls_server_new(path("junk.pem"), path("a.key"), NULL, err, sizeof(err)) == NULL);
    int days = -1000;
    CHECK(tls_cert_days_left(path("a.pem"), &days) && days >= 29 && days <= 30);
    CHECK(tls_cert_days_left(path("b.pem"), &days) && days >= 399 && days <= 400);
    CHECK(!tls_cert_days_left(path("junk.pem"), &days));
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_done();
}
