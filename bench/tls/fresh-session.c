/*
 * bench/tls/fresh-session.c: an LD_PRELOAD shim that makes an OpenSSL client (wrk) do a full TLS handshake on
 * every connection, for bench/tls.sh's handshakes/s.
 *
 * wrk reuses one SSL object per connection slot: it calls SSL_shutdown and SSL_clear when a connection closes and
 * SSL_connect on the next one. SSL_clear keeps the last session (or, with TLS 1.3, the last ticket the server sent),
 * so the next handshake offers it and the server resumes: an abbreviated handshake with no certificate and no
 * signature. This shim wraps SSL_connect and forgets that session before a handshake starts, so the client offers
 * nothing to resume (no session ID, no ticket, no PSK) whatever the server supports. Nothing else changes.
 *
 * Built by bench/tls.sh: cc -shared -fPIC -O2 -o fresh-session.so fresh-session.c -ldl
 * Needs no OpenSSL headers: the three functions it calls are declared here with OpenSSL 3's signatures.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_in_before(const SSL *s);
SSL_SESSION *SSL_get_session(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);

static atomic_long forgotten;

static void report(void) {
    const char *path = getenv("FRESH_SESSION_REPORT");
    if (path == NULL) return;
    FILE *f = fopen(path, "a");
    if (f == NULL) return;
    fprintf(f, "sessions forgotten before a handshake: %ld\n", atomic_load(&forgotten));
    fclose(f);
}

__attribute__((constructor)) static void init(void) { atexit(report); }

int SSL_connect(SSL *s) {
    static int (*real)(SSL *) = NULL;
    if (real == NULL) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    /* Only before the handshake has begun: wrk calls SSL_connect again while a non-blocking handshake is under way. */
    if (SSL_in_before(s) && SSL_get_session(s) != NULL) {
        SSL_set_session(s, NULL);
        atomic_fetch_add(&forgotten, 1);
    }
    return real(s);
}
