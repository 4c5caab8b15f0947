/* The TLS filter (tls.h): a client SSL between two memory BIOs. After every SSL call whatever it
 * wrote to the write BIO leaves through send() at once, so the owner never polls for ciphertext
 * and the write BIO never holds more than one call's output. Plaintext is encrypted a record at a
 * time for the same reason. Owns: the SSL object (which owns both BIOs). Calls: OpenSSL. */
#include "xmpp/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>

#define RECORD 16384 /* plaintext per SSL_write: one full TLS record */

enum tls_state {
    TLS_HANDSHAKE, /* handshake running */
    TLS_UP,        /* verified; data flows both ways */
    TLS_SHUT,      /* close_notify sent: still reads, writes no more */
    TLS_DEAD,      /* failed or ended by the peer: error[] says why */
};

struct gw_tls {
    SSL *ssl;                     /* the connection; owns rbio and wbio */
    BIO *rbio;                    /* ciphertext from the peer, waiting for SSL_read */
    BIO *wbio;                    /* ciphertext for the peer, emptied into send() */
    const struct gw_tls_ops *ops; /* the layer that owns this filter */
    void *ud;                     /* its argument to ops */
    enum tls_state state;
    int fail_rc;     /* what the call that killed the filter returned */
    char error[320]; /* why the filter died; "" before */
};

/* ---- errors ---- */

static int die(struct gw_tls *t, int rc, const char *why)
{
    t->state = TLS_DEAD;
    t->fail_rc = rc;
    snprintf(t->error, sizeof(t->error), "%s", why);
    return rc;
}

/* A failed SSL call: a verification result says more than the error queue's "certificate verify
 * failed". */
static int die_ssl(struct gw_tls *t)
{
    long vr = SSL_get_verify_result(t->ssl);
    unsigned long e = ERR_get_error();
    char buf[256];
    if (vr != X509_V_OK) {
        snprintf(t->error, sizeof(t->error), "certificate verification failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (e) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(t->error, sizeof(t->error), "TLS handshake failed: %s", buf);
    } else {
        snprintf(t->error, sizeof(t->error), "TLS handshake failed");
    }
    ERR_clear_error();
    t->state = TLS_DEAD;
    t->fail_rc = GW_EPROTO;
    return GW_EPROTO;
}

/* ---- moving bytes ---- */

/* Empty the write BIO into send(), a record-sized piece at a time. */
static int flush_out(struct gw_tls *t)
{
    char chunk[RECORD];
    size_t n;
    while (BIO_ctrl_pending(t->wbio) > 0) {
        if (BIO_read_ex(t->wbio, chunk, sizeof(chunk), &n) != 1 || n == 0)
            return GW_EIO;
        if (t->ops->send(t->ud, chunk, n) != 0)
            return GW_EIO;
    }
    return 0;
}

/* After each SSL call: send what it wrote, then turn its result into 0 (done), GW_EAGAIN (it
 * needs more from the peer) or an error, which kills the filter. */
static int settle(struct gw_tls *t, int r)
{
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
    int rc = 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        rc = GW_EAGAIN;
    else if (e == SSL_ERROR_ZERO_RETURN)
        rc = die(t, GW_ECLOSED, "peer ended TLS");
    else if (e != SSL_ERROR_NONE)
        rc = die_ssl(t); /* before the flush: it reads the error queue */
    /* On failure this sends our alert; a send failure then changes nothing. */
    if (flush_out(t) != 0 && (rc == 0 || rc == GW_EAGAIN))
        rc = die(t, GW_EIO, "cannot send TLS data");
    return rc;
}

static int handshake(struct gw_tls *t)
{
    ERR_clear_error();
    int rc = settle(t, SSL_do_handshake(t->ssl));
    if (rc == GW_EAGAIN)
        return 0;
    if (rc == 0)
        t->state = TLS_UP;
    return rc;
}

static int read_plain(struct gw_tls *t, char *buf, size_t cap)
{
    while (t->state == TLS_UP || t->state == TLS_SHUT) {
        size_t n = 0;
        ERR_clear_error();
        int rc = settle(t, SSL_read_ex(t->ssl, buf, cap, &n));
        if (rc == GW_EAGAIN)
            return 0;
        if (rc)
            return rc;
        if (!t->ops->on_plain(t->ud, buf, n))
            return 0;
    }
    return t->fail_rc; /* a write from on_plain() killed the filter */
}

int gw_tls_feed(struct gw_tls *t, const char *cipher, size_t len, char *buf, size_t cap)
{
    if (t->state == TLS_DEAD)
        return GW_ECLOSED;
    size_t put = 0;
    if (len && (BIO_write_ex(t->rbio, cipher, len, &put) != 1 || put != len))
        return die(t, GW_ENOMEM, "cannot buffer TLS data");
    if (t->state == TLS_HANDSHAKE) {
        int rc = handshake(t);
        if (rc || t->state == TLS_HANDSHAKE)
            return rc;
        if (!t->ops->on_up(t->ud))
            return 0;
    }
    return read_plain(t, buf, cap);
}

int gw_tls_write(struct gw_tls *t, const char *plain, size_t len)
{
    if (t->state == TLS_HANDSHAKE)
        return GW_EAGAIN;
    if (t->state != TLS_UP)
        return GW_ECLOSED;
    while (len > 0) {
        size_t n = len < RECORD ? len : RECORD, done = 0;
        ERR_clear_error();
        int rc = settle(t, SSL_write_ex(t->ssl, plain, n, &done));
        /* Renegotiation is off (gw_tls_ctx_new), so a write never waits for the peer. */
        if (rc == GW_EAGAIN)
            rc = die(t, GW_EPROTO, "TLS write did not complete");
        if (rc)
            return rc;
        plain += done;
        len -= done;
    }
    return 0;
}

int gw_tls_close_notify(struct gw_tls *t)
{
    if (t->state != TLS_UP)
        return 0;
    t->state = TLS_SHUT;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* 0: ours sent, the peer's not yet seen; we do not wait */
    ERR_clear_error();
    return flush_out(t) != 0 ? die(t, GW_EIO, "cannot send TLS data") : 0;
}

/* ---- lifetime and state ---- */

struct gw_tls *gw_tls_new(struct ssl_ctx_st *ctx, const char *host, const struct gw_tls_ops *ops,
                          void *ud, char *err, size_t errlen)
{
    struct gw_tls *t = calloc(1, sizeof(*t));
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    SSL *ssl = SSL_new(ctx);
    if (!t || !rbio || !wbio || !ssl) {
        BIO_free(rbio);
        BIO_free(wbio);
        SSL_free(ssl);
        free(t);
        ERR_clear_error();
        snprintf(err, errlen, "cannot create TLS state");
        return NULL;
    }
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_connect_state(ssl);
    *t = (struct gw_tls){.ssl = ssl, .rbio = rbio, .wbio = wbio, .ops = ops, .ud = ud};
    if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "cannot set TLS host name '%s'", host);
        gw_tls_free(t);
        return NULL;
    }
    return t;
}

void gw_tls_free(struct gw_tls *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

bool gw_tls_is_up(const struct gw_tls *t)
{
    return t->state == TLS_UP || t->state == TLS_SHUT;
}

const char *gw_tls_version(const struct gw_tls *t)
{
    return SSL_get_version(t->ssl);
}

const char *gw_tls_cipher(const struct gw_tls *t)
{
    return SSL_get_cipher_name(t->ssl);
}

const char *gw_tls_error(const struct gw_tls *t)
{
    return t->error;
}

struct ssl_ctx_st *gw_tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (!c) {
        snprintf(err, errlen, "cannot create TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
    /* A TLS 1.2 server's HelloRequest is refused, so that no SSL_write has to wait for a read. */
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_default_verify_paths(c) != 1) {
        snprintf(err, errlen, "cannot load the system certificate store");
        SSL_CTX_free(c);
        return NULL;
    }
    if (ca_file && *ca_file && SSL_CTX_load_verify_locations(c, ca_file, NULL) != 1) {
        unsigned long e = ERR_get_error();
        char buf[256];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "cannot load upstream CA file '%s': %s", ca_file, buf);
        ERR_clear_error();
        SSL_CTX_free(c);
        return NULL;
    }
    return c;
}
