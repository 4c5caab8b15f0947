/* One client-to-server XMPP stream to the upstream server, on the gateway's libuv loop: name
 * resolution (uv_getaddrinfo), TCP connect, STARTTLS or direct TLS through OpenSSL memory BIOs with
 * the certificate chain and host name verified, stream (re)starts, and the expat stream parser.
 * SASL and stanzas pass through as bytes. Owns: the socket, the SSL object, the parser, the write
 * queue. Calls: xml, config, core. Never calls up by name: the session fills in the ops. */
#ifndef GW_XMPP_UPSTREAM_H
#define GW_XMPP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include "config/config.h"
#include "core/ctx.h"
#include "core/err.h"
#include "xml/xml.h"

struct gw_upstream;

/* Attributes of the upstream's stream header. */
struct gw_upstream_stream {
    const char *id;
    const char *from;
    const char *version;
    const char *lang;
};

struct gw_upstream_ops {
    /* The stream (after TLS, or after a restart) has sent its features: the features element,
     * framed, with <starttls/> removed. */
    void (*on_ready)(void *ud, const struct gw_upstream_stream *hdr, const char *features,
                     size_t len);
    /* Any other depth-1 element: a stanza, SASL, stream management... (framed bytes). */
    void (*on_stanza)(void *ud, const struct gw_xml_stanza *st);
    /* A full JID was bound (seen in a bind result). */
    void (*on_bound)(void *ud, const char *jid);
    /* The stream ended. cond NULL: clean close by upstream. Else a condition and reason; err_xml is
     * the upstream's own <stream:error/> element when it sent one. No callback follows. */
    void (*on_closed)(void *ud, const char *cond, const char *text, const char *err_xml,
                      size_t err_len);
};

/* Create the SSL_CTX shared by every upstream connection: verification on, system store plus
 * ca_file (may be "" or NULL). NULL with a reason in err. */
struct ssl_ctx_st *gw_upstream_tls_ctx_new(const char *ca_file, char *err, size_t errlen);

/* log_sid is the session id used in log lines (copied). Connects at once; callbacks follow. NULL on
 * ENOMEM. */
struct gw_upstream *gw_upstream_open(struct gw_ctx *ctx, const struct gw_upstream_cfg *cfg,
                                     const char *domain, const char *lang,
                                     const struct gw_upstream_ops *ops, void *ud,
                                     const char *log_sid);

/* Bytes (a complete element) for upstream. GW_ELIMIT: write queue past limits.send_queue. */
int gw_upstream_send(struct gw_upstream *u, const char *bytes, size_t len) GW_MUST_CHECK;

/* Send a new stream header (client restart after SASL success). */
int gw_upstream_restart(struct gw_upstream *u) GW_MUST_CHECK;

/* Was SASL success seen since the last stream start? */
bool gw_upstream_sasl_done(const struct gw_upstream *u);
bool gw_upstream_is_tls(const struct gw_upstream *u);
const char *gw_upstream_state_name(const struct gw_upstream *u);

/* Flow control from the client side. */
void gw_upstream_pause_reading(struct gw_upstream *u, bool pause);

/* Close: send </stream:stream> (when a stream is open), flush, and close the socket. No callback
 * follows; memory is freed once the handles are closed. */
void gw_upstream_close(struct gw_upstream *u);

/* For the JID log field. */
void gw_upstream_set_log_jid(struct gw_upstream *u, const char *jid);

#endif
