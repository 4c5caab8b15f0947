/* TLS as a filter stacked on a byte stream (curl's connection filters): a client-side OpenSSL SSL
 * between two memory BIOs, with SNI and the certificate checked (chain and host name) for the
 * name it was created for. Ciphertext from the peer goes in through gw_tls_feed() and plaintext
 * comes out through on_plain(); plaintext goes in through gw_tls_write() and the ciphertext it
 * makes leaves through send(), as does every handshake message and alert. Knows no sockets, no
 * loop and no XMPP. Owns: the SSL object and its two BIOs. Calls: OpenSSL. */
#ifndef GW_XMPP_TLS_H
#define GW_XMPP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

struct gw_tls;
struct ssl_ctx_st;

/* Filled in by the layer that owns the filter. on_up() and on_plain() may call gw_tls_write() and
 * gw_tls_close_notify(); send() calls nothing back; none may call gw_tls_free(). */
struct gw_tls_ops {
    /* Ciphertext for the peer, to be sent whole and in order: 0, or a negative gw_err (the
     * gw_tls_* call that produced the bytes then returns GW_EIO). */
    int (*send)(void *ud, const char *cipher, size_t len);
    /* The handshake completed and the certificate is verified; called once. Return false to stop
     * the gw_tls_feed() in progress (it returns 0). */
    bool (*on_up)(void *ud);
    /* Plaintext from the peer. Return false to stop the gw_tls_feed() in progress (it returns 0);
     * the next gw_tls_feed(), even of nothing, goes on from there. */
    bool (*on_plain)(void *ud, const char *plain, size_t len);
};

/* Create the SSL_CTX shared by every connection: TLS 1.2 or later, peer verification on, the
 * system store plus ca_file (may be "" or NULL). NULL with a reason in err. */
struct ssl_ctx_st *gw_tls_ctx_new(const char *ca_file, char *err, size_t errlen);

/* A client for host (SNI, and the name the certificate must carry) on ctx, which must outlive it.
 * Nothing is sent until the first gw_tls_feed(). NULL with a reason in err. */
struct gw_tls *gw_tls_new(struct ssl_ctx_st *ctx, const char *host, const struct gw_tls_ops *ops,
                          void *ud, char *err, size_t errlen);

void gw_tls_free(struct gw_tls *t);

/* Ciphertext from the peer; len 0 starts the handshake (the client speaks first). Drives the
 * handshake (on_up() once it is done), then decrypts into buf (cap bytes of the caller's scratch)
 * and hands each piece to on_plain(). 0; GW_EPROTO: the handshake, the certificate or a record
 * failed (gw_tls_error() says which; the alert has been sent); GW_ECLOSED: the peer ended TLS
 * (close_notify); GW_EIO: send() failed; GW_ENOMEM. After an error the filter is dead: every
 * later feed or write returns GW_ECLOSED. */
int gw_tls_feed(struct gw_tls *t, const char *cipher, size_t len, char *buf,
                size_t cap) GW_MUST_CHECK;

/* Encrypt plain for the peer and send() it. GW_EAGAIN: the handshake is not done yet; GW_EIO:
 * send() failed; GW_EPROTO: OpenSSL refused (gw_tls_error()); GW_ECLOSED: close_notify was sent,
 * or the filter is dead. */
int gw_tls_write(struct gw_tls *t, const char *plain, size_t len) GW_MUST_CHECK;

/* Send close_notify (once the handshake is done; nothing before), as a socket closes: best effort,
 * so its result may go unchecked. GW_EIO: send() failed. */
int gw_tls_close_notify(struct gw_tls *t);

/* The handshake is done and the filter has not failed. */
bool gw_tls_is_up(const struct gw_tls *t);

/* Protocol version and cipher suite names ("TLSv1.3", "TLS_AES_256_GCM_SHA384"). */
const char *gw_tls_version(const struct gw_tls *t);
const char *gw_tls_cipher(const struct gw_tls *t);

/* Why the filter failed: "certificate verification failed: <X509 reason>", "TLS handshake
 * failed: <OpenSSL error>", "peer ended TLS", ...; "" while it has not failed. */
const char *gw_tls_error(const struct gw_tls *t);

#endif
