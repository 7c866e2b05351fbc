#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>

/* OpenSSL's SSL_CTX, without its headers. */
struct ssl_ctx_st;

/* The TLS context of the client listeners marked `tls`: the certificate
 * chain and key (PEM files), TLS 1.2 and 1.3, ALPN http/1.1, a session cache
 * and tickets for resumption, and with client_ca (may be NULL) client
 * certificates required and verified against it. NULL with the reason in
 * err when a file cannot be used. One context per loaded config, shared by
 * every worker; a connection holds its own reference. */
struct ssl_ctx_st *tls_server_new(const char *cert, const char *key, const char *client_ca,
                                  char *err, size_t errlen);
void tls_ctx_free(struct ssl_ctx_st *ctx);

/* The context of sluice's own TLS client connections (Redis's rediss://):
 * TLS 1.2 and 1.3, peers verified against ca_file (NULL: the system's
 * trust store) unless verify is false, and with cert and key (both or
 * neither) a client certificate for mutual TLS. NULL with the reason in err
 * when a file cannot be used. */
struct ssl_ctx_st *tls_client_new(const char *ca_file, const char *cert, const char *key,
                                  bool verify, char *err, size_t errlen);

/* Days until the certificate expires (negative: expired); false if unreadable. */
bool tls_cert_days_left(const char *cert, int *days);

#endif
