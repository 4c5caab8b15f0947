/* One client-to-server XMPP stream to the upstream server, on the gateway's libuv loop: name
 * resolution (uv_getaddrinfo), TCP connect, STARTTLS or direct TLS (tls.c: OpenSSL memory BIOs,
 * chain and host name verified), stream headers and restarts, and the expat stream parser. It
 * reports events to its owner (the session) and does what it is told; it decides nothing about
 * the session's life. SASL and stanzas pass through as bytes. Owns: the socket, the TLS layer,
 * the parser, the write requests. Calls: xml, config, core. Never calls up by name. */
#ifndef GW_XMPP_UPSTREAM_H
#define GW_XMPP_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include "config/config.h"
#include "core/cond.h"
#include "core/ctx.h"
#include "core/err.h"
#include "xml/xml.h"
#include "xmpp/stream.h"

struct gw_upstream;

/* How far the connection has come, reported through on_progress(). */
enum gw_upstream_progress {
    GW_UPSTREAM_CONNECTED, /* TCP is up and TLS (STARTTLS or direct) starts; not for tls=off */
    GW_UPSTREAM_STREAM,    /* the stream header went out on the final (secured) connection */
};

struct gw_upstream_ops {
    void (*on_progress)(void *ud, enum gw_upstream_progress p);
    /* A stream (the first after TLS, or one after a restart) has sent its features: the features
     * element, framed, with <starttls/> removed; tree is the element as parsed (for reading its
     * children: its byte offsets are those of the element before the cut). */
    void (*on_features)(void *ud, const struct gw_stream_info *hdr, const char *features,
                        size_t len, const struct gw_xml_node *tree);
    /* Any other depth-1 element: a stanza, SASL, stream management (framed bytes; st->tree is
     * built for iq stanzas while gw_upstream_set_jid() has not been called). From inside this
     * callback the owner may call gw_upstream_restart_after(). */
    void (*on_stanza)(void *ud, const struct gw_xml_stanza *st);
    /* The stream ended: upstream closed it (cond GW_COND_NONE), sent a stream error (cond and
     * err_xml), or the connection failed (cond and text). No callback follows; the upstream
     * frees itself. */
    void (*on_closed)(void *ud, const struct gw_close_reason *why);
};

/* Upstream writes gathered per loop turn (see upstream.c): set ctx->up_batch to the result once
 * the loop exists (NULL: out of memory; writes then leave at once, as without a batch). Free it
 * before the loop's last run: what it holds leaves first, and its handles close. */
struct gw_upstream_batch *gw_upstream_batch_new(struct gw_ctx *ctx);
void gw_upstream_batch_free(struct gw_ctx *ctx);

/* Create the SSL_CTX shared by every upstream connection (tls.c's gw_tls_ctx_new()): verification
 * on, system store plus ca_file (may be "" or NULL). NULL with a reason in err. */
struct ssl_ctx_st *gw_upstream_tls_ctx_new(const char *ca_file, char *err, size_t errlen);

/* Connects at once; callbacks follow from the loop, never from inside this call. log_sid is the
 * session id for log lines (copied). NULL on ENOMEM or when the resolver cannot be asked. */
struct gw_upstream *gw_upstream_open(struct gw_ctx *ctx, const struct gw_upstream_cfg *cfg,
                                     const char *domain, const char *lang,
                                     const struct gw_upstream_ops *ops, void *ud,
                                     const char *log_sid);

/* Bytes (one or more complete elements) for upstream. 0, or GW_EAGAIN: no stream is open for
 * stanzas (before features, or between restart_after() and the next features); GW_ELIMIT: the
 * write queue would pass limits.send_queue; GW_ECLOSED: closed; GW_ENOMEM, GW_EIO. */
int gw_upstream_send(struct gw_upstream *u, const char *bytes, size_t len) GW_MUST_CHECK;

/* Called from on_stanza: the element just reported ends this stream (SASL success, RFC 6120
 * 6.4.6). The parser is reset once the current read is parsed; upstream's next bytes are a new
 * stream header, which follows the header gw_upstream_restart() sends. */
void gw_upstream_restart_after(struct gw_upstream *u);

/* Send a new stream header after restart_after(). GW_EPROTO: no restart is due. */
int gw_upstream_restart(struct gw_upstream *u) GW_MUST_CHECK;

/* The session has a full JID: it goes into log lines, and iq trees are no longer built. */
void gw_upstream_set_jid(struct gw_upstream *u, const char *jid);

bool gw_upstream_is_tls(const struct gw_upstream *u);

/* Flow control from the client side: stop (true) or start again reading the socket. */
void gw_upstream_pause_reading(struct gw_upstream *u, bool pause);

/* Close: send </stream:stream> (when a stream is open), flush, and close the socket. No callback
 * follows; memory is freed once the handles are closed. */
void gw_upstream_close(struct gw_upstream *u);

/* Close the connection without ending the stream (no </stream:stream>): to the server the client
 * vanished, so a stream with XEP-0198 resumption enabled stays resumable. No callback follows. */
void gw_upstream_abort(struct gw_upstream *u);

#endif
