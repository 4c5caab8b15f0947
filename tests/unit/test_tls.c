/* Tests for gateway/xmpp/tls.c: a client gw_tls against a server SSL over memory BIOs, with a
 * throw-away CA and server certificates made here (EC P-256): the handshake (TLS 1.3 and 1.2, fed
 * a byte at a time), data both ways (1 MiB in pieces), a certificate for another name, an
 * untrusted CA, garbage before and after the handshake, close_notify both ways, a send() that
 * fails, a callback that stops the feed, context and host name errors. */
#include "xmpp/tls.h"
#include "core/buf.h"
#include "check.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024 * 1024)

static char scratch[16384]; /* the caller's plaintext buffer, as the loop's tls_buf */

/* ---- certificates ---- */

struct pki {
    EVP_PKEY *ca_key, *key; /* the CA's key; the server's key (both certificates) */
    X509 *ca;               /* self-signed CA */
    X509 *good;             /* DNS:localhost, signed by ca */
    X509 *other;            /* DNS:elsewhere.example, signed by ca */
};

static void add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    CHECK(e != NULL);
    if (e)
        CHECK(X509_add_ext(x, e, -1) == 1);
    X509_EXTENSION_free(e);
}

/* A CA certificate when issuer is NULL (self-signed with key), else a server certificate for
 * the DNS name san. */
static X509 *make_cert(const char *cn, const char *san, EVP_PKEY *key, X509 *issuer,
                       EVP_PKEY *issuer_key)
{
    static long serial = 1;
    X509 *x = X509_new();
    CHECK(x != NULL);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    add_ext(x, &v3, NID_subject_key_identifier, "hash");
    if (issuer) {
        add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, &v3, NID_key_usage, "critical,digitalSignature");
        add_ext(x, &v3, NID_ext_key_usage, "serverAuth");
        add_ext(x, &v3, NID_authority_key_identifier, "keyid:always");
        add_ext(x, &v3, NID_subject_alt_name, san);
    } else {
        add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
    }
    CHECK(X509_sign(x, issuer ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static void pki_init(struct pki *p)
{
    p->ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    p->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    CHECK(p->ca_key && p->key);
    p->ca = make_cert("xmppgw test CA", NULL, p->ca_key, NULL, NULL);
    p->good = make_cert("localhost", "DNS:localhost", p->key, p->ca, p->ca_key);
    p->other = make_cert("elsewhere.example", "DNS:elsewhere.example", p->key, p->ca, p->ca_key);
}

static void pki_cleanup(struct pki *p)
{
    X509_free(p->ca);
    X509_free(p->good);
    X509_free(p->other);
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->key);
}

/* The client context as the gateway makes it, trusting ca (NULL: the system store only). */
static SSL_CTX *client_ctx(X509 *ca)
{
    char err[256] = "";
    SSL_CTX *c = gw_tls_ctx_new(NULL, err, sizeof(err));
    CHECK(c != NULL);
    if (c && ca)
        CHECK(X509_STORE_add_cert(SSL_CTX_get_cert_store(c), ca) == 1);
    return c;
}

/* ---- the server: a plain OpenSSL SSL over memory BIOs ---- */

struct server {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *in, *out;     /* ciphertext from the client / for the client (owned by ssl) */
    struct gw_buf got; /* plaintext from the client */
    int last;          /* SSL_get_error() of its last call */
};

static void server_init(struct server *s, X509 *cert, EVP_PKEY *key, int max_version)
{
    s->ctx = SSL_CTX_new(TLS_server_method());
    CHECK(SSL_CTX_use_certificate(s->ctx, cert) == 1);
    CHECK(SSL_CTX_use_PrivateKey(s->ctx, key) == 1);
    if (max_version)
        SSL_CTX_set_max_proto_version(s->ctx, max_version);
    s->ssl = SSL_new(s->ctx);
    s->in = BIO_new(BIO_s_mem());
    s->out = BIO_new(BIO_s_mem());
    SSL_set_bio(s->ssl, s->in, s->out);
    SSL_set_accept_state(s->ssl);
    gw_buf_init(&s->got, 4 * MIB);
    s->last = SSL_ERROR_NONE;
}

static void server_cleanup(struct server *s)
{
    SSL_free(s->ssl);
    SSL_CTX_free(s->ctx);
    gw_buf_cleanup(&s->got);
}

/* Handshake, then read everything the client sent. */
static void server_step(struct server *s)
{
    if (!SSL_is_init_finished(s->ssl)) {
        int r = SSL_do_handshake(s->ssl);
        s->last = r == 1 ? SSL_ERROR_NONE : SSL_get_error(s->ssl, r);
        if (r != 1)
            return;
    }
    char buf[16384];
    size_t n;
    while (SSL_read_ex(s->ssl, buf, sizeof(buf), &n) == 1)
        CHECK(gw_buf_append(&s->got, buf, n) == 0);
    s->last = SSL_get_error(s->ssl, 0);
}

static void server_write(struct server *s, const char *data, size_t len)
{
    size_t done = 0;
    CHECK(SSL_write_ex(s->ssl, data, len, &done) == 1 && done == len);
}

/* Take what the server wrote for the client. */
static void server_out(struct server *s, struct gw_buf *out)
{
    char buf[16384];
    size_t n;
    gw_buf_reset(out);
    while (BIO_read_ex(s->out, buf, sizeof(buf), &n) == 1)
        CHECK(gw_buf_append(out, buf, n) == 0);
}

/* ---- the client: a gw_tls wired to the server ---- */

struct client {
    struct gw_tls *tls;
    struct server *srv;
    unsigned ups;      /* on_up() calls */
    struct gw_buf got; /* plaintext from on_plain() */
    int send_rc;       /* what send() returns */
    bool stop;         /* on_plain() returns false */
};

static int cli_send(void *ud, const char *cipher, size_t len)
{
    struct client *c = ud;
    if (c->send_rc)
        return c->send_rc;
    size_t put = 0;
    CHECK(BIO_write_ex(c->srv->in, cipher, len, &put) == 1 && put == len);
    return 0;
}

static bool cli_up(void *ud)
{
    struct client *c = ud;
    c->ups++;
    return true;
}

static bool cli_plain(void *ud, const char *plain, size_t len)
{
    struct client *c = ud;
    CHECK(gw_buf_append(&c->got, plain, len) == 0);
    return !c->stop;
}

static const struct gw_tls_ops cli_ops = {.send = cli_send, .on_up = cli_up, .on_plain = cli_plain};

static void client_init(struct client *c, struct server *s, SSL_CTX *ctx, const char *host)
{
    char err[256] = "";
    *c = (struct client){.srv = s};
    gw_buf_init(&c->got, 4 * MIB);
    c->tls = gw_tls_new(ctx, host, &cli_ops, c, err, sizeof(err));
    CHECK(c->tls != NULL);
    CHECK_STR(err, "");
}

static void client_cleanup(struct client *c)
{
    gw_tls_free(c->tls);
    gw_buf_cleanup(&c->got);
}

/* Let the server answer, feed its answer to the client in pieces of piece bytes, and go on until
 * the server has nothing more to say. The first non-zero gw_tls_feed() result, or 0. */
static int pump(struct client *c, size_t piece, size_t cap)
{
    struct gw_buf out;
    gw_buf_init(&out, 8 * MIB);
    int rc = 0;
    for (int round = 0; round < 1000 && rc == 0; round++) {
        server_step(c->srv);
        server_out(c->srv, &out);
        if (gw_buf_size(&out) == 0)
            break;
        for (size_t off = 0; off < gw_buf_size(&out) && rc == 0; off += piece) {
            size_t n = gw_buf_size(&out) - off < piece ? gw_buf_size(&out) - off : piece;
            rc = gw_tls_feed(c->tls, gw_buf_ptr(&out) + off, n, scratch, cap);
        }
    }
    gw_buf_cleanup(&out);
    return rc;
}

/* Client and server up to a finished handshake, the server flight fed a byte at a time. */
static void connect_pair(struct client *c, struct server *s, SSL_CTX *ctx)
{
    client_init(c, s, ctx, "localhost");
    CHECK(!gw_tls_is_up(c->tls));
    CHECK(gw_tls_write(c->tls, "x", 1) == GW_EAGAIN);
    CHECK(BIO_ctrl_pending(s->in) == 0);
    CHECK(gw_tls_feed(c->tls, NULL, 0, scratch, sizeof(scratch)) == 0);
    CHECK(BIO_ctrl_pending(s->in) > 0); /* the ClientHello */
    CHECK(pump(c, 1, sizeof(scratch)) == 0);
    CHECK(c->ups == 1);
    CHECK(gw_tls_is_up(c->tls));
    CHECK(SSL_is_init_finished(s->ssl));
    CHECK_STR(gw_tls_error(c->tls), "");
    CHECK_STR(SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name), "localhost");
}

static void fill_pattern(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((i * 31 + seed) & 0xff);
}

/* ---- tests ---- */

static void test_data_both_ways(const struct pki *p)
{
    SSL_CTX *ctx = client_ctx(p->ca);
    struct server s;
    struct client c;
    server_init(&s, p->good, p->key, 0);
    connect_pair(&c, &s, ctx);
    CHECK_STR(gw_tls_version(c.tls), "TLSv1.3");
    CHECK(strlen(gw_tls_cipher(c.tls)) > 0);

    CHECK(gw_tls_write(c.tls, "hello", 5) == 0);
    CHECK(pump(&c, 4096, sizeof(scratch)) == 0);
    CHECK(gw_buf_size(&s.got) == 5 && memcmp(gw_buf_ptr(&s.got), "hello", 5) == 0);
    gw_buf_reset(&s.got);

    char *big = malloc(MIB);
    fill_pattern(big, MIB, 7);
    for (size_t off = 0; off < MIB; off += 10007) {
        size_t n = MIB - off < 10007 ? MIB - off : 10007;
        CHECK(gw_tls_write(c.tls, big + off, n) == 0);
        CHECK(pump(&c, 4096, sizeof(scratch)) == 0);
    }
    CHECK(gw_buf_size(&s.got) == MIB && memcmp(gw_buf_ptr(&s.got), big, MIB) == 0);

    fill_pattern(big, MIB, 11);
    for (size_t off = 0; off < MIB; off += 9001) {
        size_t n = MIB - off < 9001 ? MIB - off : 9001;
        server_write(&s, big + off, n);
    }
    /* Odd pieces split records; a small scratch buffer splits their plaintext. */
    CHECK(pump(&c, 3001, 1000) == 0);
    CHECK(gw_buf_size(&c.got) == MIB && memcmp(gw_buf_ptr(&c.got), big, MIB) == 0);
    CHECK(c.ups == 1);
    free(big);

    /* Our close_notify reaches the server, and then we write no more. */
    CHECK(gw_tls_close_notify(c.tls) == 0);
    server_step(&s);
    CHECK(s.last == SSL_ERROR_ZERO_RETURN);
    CHECK(gw_tls_write(c.tls, "late", 4) == GW_ECLOSED);
    CHECK(gw_tls_is_up(c.tls));

    /* The server's close_notify ends the filter. */
    CHECK(SSL_shutdown(s.ssl) >= 0);
    CHECK(pump(&c, 4096, sizeof(scratch)) == GW_ECLOSED);
    CHECK_STR(gw_tls_error(c.tls), "peer ended TLS");
    CHECK(!gw_tls_is_up(c.tls));
    CHECK(gw_tls_feed(c.tls, NULL, 0, scratch, sizeof(scratch)) == GW_ECLOSED);

    client_cleanup(&c);
    server_cleanup(&s);
    SSL_CTX_free(ctx);
}

static void test_tls12(const struct pki *p)
{
    SSL_CTX *ctx = client_ctx(p->ca);
    struct server s;
    struct client c;
    server_init(&s, p->good, p->key, TLS1_2_VERSION);
    connect_pair(&c, &s, ctx);
    CHECK_STR(gw_tls_version(c.tls), "TLSv1.2");
    server_write(&s, "<features/>", 11);
    CHECK(gw_tls_write(c.tls, "<stream>", 8) == 0);
    CHECK(pump(&c, 7, sizeof(scratch)) == 0);
    CHECK(gw_buf_size(&c.got) == 11 && memcmp(gw_buf_ptr(&c.got), "<features/>", 11) == 0);
    CHECK(gw_buf_size(&s.got) == 8 && memcmp(gw_buf_ptr(&s.got), "<stream>", 8) == 0);
    client_cleanup(&c);
    server_cleanup(&s);
    SSL_CTX_free(ctx);
}

/* A handshake that must fail with reason (a prefix, then a part anywhere), the alert sent. */
static void check_refused(SSL_CTX *ctx, X509 *cert, EVP_PKEY *key, const char *prefix,
                          const char *part)
{
    struct server s;
    struct client c;
    server_init(&s, cert, key, 0);
    client_init(&c, &s, ctx, "localhost");
    CHECK(gw_tls_feed(c.tls, NULL, 0, scratch, sizeof(scratch)) == 0);
    CHECK(pump(&c, 512, sizeof(scratch)) == GW_EPROTO);
    const char *why = gw_tls_error(c.tls);
    if (strncmp(why, prefix, strlen(prefix)) != 0 || !strstr(why, part))
        fprintf(stderr, "reason: \"%s\"\n", why);
    CHECK(strncmp(why, prefix, strlen(prefix)) == 0);
    CHECK(strstr(why, part) != NULL);
    CHECK(c.ups == 0);
    CHECK(!gw_tls_is_up(c.tls));
    CHECK(gw_tls_write(c.tls, "x", 1) == GW_ECLOSED);
    CHECK(BIO_ctrl_pending(s.in) > 0); /* our alert */
    server_step(&s);
    CHECK(!SSL_is_init_finished(s.ssl));
    CHECK(s.last == SSL_ERROR_SSL);
    client_cleanup(&c);
    server_cleanup(&s);
}

static void test_refused(const struct pki *p)
{
    SSL_CTX *trusting = client_ctx(p->ca);
    SSL_CTX *stranger = client_ctx(NULL);
    check_refused(trusting, p->other, p->key,
                  "certificate verification failed: ", "hostname mismatch");
    check_refused(stranger, p->good, p->key, "certificate verification failed: ", "issuer");
    SSL_CTX_free(trusting);
    SSL_CTX_free(stranger);
}

static void test_garbage(const struct pki *p)
{
    SSL_CTX *ctx = client_ctx(p->ca);
    struct server s;
    struct client c;
    server_init(&s, p->good, p->key, 0);

    /* Before the handshake: a server that speaks something else. */
    client_init(&c, &s, ctx, "localhost");
    CHECK(gw_tls_feed(c.tls, NULL, 0, scratch, sizeof(scratch)) == 0);
    static const char http[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    CHECK(gw_tls_feed(c.tls, http, sizeof(http) - 1, scratch, sizeof(scratch)) == GW_EPROTO);
    CHECK(strncmp(gw_tls_error(c.tls), "TLS handshake failed: ", 22) == 0);
    CHECK(gw_tls_feed(c.tls, http, sizeof(http) - 1, scratch, sizeof(scratch)) == GW_ECLOSED);
    CHECK(c.ups == 0 && gw_buf_size(&c.got) == 0);
    client_cleanup(&c);
    server_cleanup(&s);

    /* After it: an application data record that does not decrypt. */
    server_init(&s, p->good, p->key, 0);
    connect_pair(&c, &s, ctx);
    char rec[5 + 64];
    memcpy(rec, "\x17\x03\x03\x00\x40", 5);
    fill_pattern(rec + 5, 64, 3);
    CHECK(gw_tls_feed(c.tls, rec, sizeof(rec), scratch, sizeof(scratch)) == GW_EPROTO);
    CHECK(strlen(gw_tls_error(c.tls)) > 0);
    CHECK(!gw_tls_is_up(c.tls));
    CHECK(gw_buf_size(&c.got) == 0);
    client_cleanup(&c);
    server_cleanup(&s);
    SSL_CTX_free(ctx);
}

static void test_send_fails(const struct pki *p)
{
    SSL_CTX *ctx = client_ctx(p->ca);
    struct server s;
    struct client c;
    server_init(&s, p->good, p->key, 0);
    client_init(&c, &s, ctx, "localhost");
    c.send_rc = GW_ENOMEM;
    CHECK(gw_tls_feed(c.tls, NULL, 0, scratch, sizeof(scratch)) == GW_EIO);
    CHECK_STR(gw_tls_error(c.tls), "cannot send TLS data");
    CHECK(gw_tls_feed(c.tls, NULL, 0, scratch, sizeof(scratch)) == GW_ECLOSED);
    client_cleanup(&c);
    server_cleanup(&s);

    /* After the handshake: the write says so. */
    server_init(&s, p->good, p->key, 0);
    connect_pair(&c, &s, ctx);
    c.send_rc = GW_ECLOSED;
    CHECK(gw_tls_write(c.tls, "x", 1) == GW_EIO);
    CHECK(!gw_tls_is_up(c.tls));
    client_cleanup(&c);
    server_cleanup(&s);
    SSL_CTX_free(ctx);
}

/* on_plain() returning false stops the feed; what is left comes with the next one. */
static void test_stop(const struct pki *p)
{
    SSL_CTX *ctx = client_ctx(p->ca);
    struct server s;
    struct client c;
    server_init(&s, p->good, p->key, 0);
    connect_pair(&c, &s, ctx);
    server_write(&s, "abc", 3);
    server_write(&s, "def", 3);
    struct gw_buf out;
    gw_buf_init(&out, MIB);
    server_out(&s, &out);
    c.stop = true;
    CHECK(gw_tls_feed(c.tls, gw_buf_ptr(&out), gw_buf_size(&out), scratch, sizeof(scratch)) == 0);
    CHECK(gw_buf_size(&c.got) == 3 && memcmp(gw_buf_ptr(&c.got), "abc", 3) == 0);
    c.stop = false;
    CHECK(gw_tls_feed(c.tls, NULL, 0, scratch, sizeof(scratch)) == 0);
    CHECK(gw_buf_size(&c.got) == 6 && memcmp(gw_buf_ptr(&c.got), "abcdef", 6) == 0);
    gw_buf_cleanup(&out);
    client_cleanup(&c);
    server_cleanup(&s);
    SSL_CTX_free(ctx);
}

static void test_setup_errors(void)
{
    char err[256] = "";
    CHECK(gw_tls_ctx_new("/nonexistent/ca.pem", err, sizeof(err)) == NULL);
    CHECK(strncmp(err, "cannot load upstream CA file '/nonexistent/ca.pem': ", 52) == 0);

    SSL_CTX *ctx = client_ctx(NULL);
    struct client c = {0};
    CHECK(gw_tls_new(ctx, "", &cli_ops, &c, err, sizeof(err)) == NULL);
    CHECK_STR(err, "cannot set TLS host name ''");
    SSL_CTX_free(ctx);
    CHECK(ERR_peek_error() == 0); /* nothing left behind for the next SSL call */
}

int main(void)
{
    struct pki p;
    pki_init(&p);
    test_data_both_ways(&p);
    test_tls12(&p);
    test_refused(&p);
    test_garbage(&p);
    test_send_fails(&p);
    test_stop(&p);
    test_setup_errors();
    pki_cleanup(&p);
    return CHECK_SUMMARY();
}
