/* Session core: one browser session, whatever its transport, mapped to one upstream c2s stream.
 * Owns the session table (sid -> session, JID -> session), each session's upstream and its state
 * machine. Transports (web/websocket.c, web/bosh.c) drive a session through the calls below and
 * receive from it through a struct gw_sink_ops they fill in. Calls: xmpp/upstream, config, core.
 *
 * Rules that keep it simple:
 * - The session never calls its sink synchronously from inside a transport -> session call; what is
 *   known at once is a return code. Sink calls come from loop callbacks only.
 * - After closed() (session -> transport) or gw_session_end() (transport -> session) the two are
 *   detached: neither calls the other again. Memory is freed outside callbacks. */
#ifndef GW_SESSION_SESSION_H
#define GW_SESSION_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include "core/ctx.h"
#include "core/err.h"
#include "core/metrics.h"

#define GW_SID_LEN 32 /* hex characters: 128 bits from OpenSSL RAND */

struct gw_session;
struct gw_sessions;

/* Attributes of the upstream stream header, as the client should see them. */
struct gw_stream_info {
    const char *id;      /* upstream stream id */
    const char *from;    /* the XMPP domain */
    const char *version; /* "1.0" */
    const char *lang;    /* xml:lang, "en" if upstream gave none */
};

struct gw_sink_ops {
    /* A (re)started upstream stream is ready: the features element (framed: it declares
     * xmlns:stream and its own namespace; <starttls/> removed). */
    void (*stream_ready)(void *t, const struct gw_stream_info *info, const char *features,
                         size_t len);
    /* One stanza for the client, framed (jabber:client declared on its root). Returns 0, or
     * GW_EAGAIN when the transport's queue is now past its bound: the session stops reading
     * upstream until gw_session_resume(). The stanza is taken either way. */
    int (*deliver)(void *t, const char *bytes, size_t len);
    /* The session is ending. cond NULL: upstream closed its stream cleanly. Otherwise the
     * condition ("remote-connection-failed", "host-unknown", "system-shutdown", ...) and a short
     * reason (may be NULL). When upstream itself sent a stream error, cond is that error's
     * condition and err_xml/err_len hold its <stream:error/> element, framed (NULL otherwise).
     * The strings are valid only during the call. The transport must not call the session
     * afterwards. */
    void (*closed)(void *t, const char *cond, const char *text, const char *err_xml,
                   size_t err_len);
};

/* Create the session table. */
struct gw_sessions *gw_sessions_new(struct gw_ctx *ctx);
void gw_sessions_free(struct gw_sessions *tbl);
size_t gw_sessions_count(const struct gw_sessions *tbl);

/* A new session with a fresh random sid. NULL when out of memory, over limits.max_sessions or
 * draining (*err says which: GW_ELIMIT, GW_ENOMEM, GW_ECLOSED). */
struct gw_session *gw_session_new(struct gw_ctx *ctx, enum gw_transport tr,
                                  const struct gw_sink_ops *ops, void *t, const char *peer,
                                  int *err);

/* Open the upstream stream for XMPP domain `to` (lang may be NULL: "en"). GW_EINVAL: the domain
 * is not served (answer host-unknown). Otherwise stream_ready() or closed() follows later. */
int gw_session_start(struct gw_session *s, const char *to, const char *lang) GW_MUST_CHECK;

/* A client stanza (complete element bytes) for upstream. Before the stream is ready (after
 * <open/> or a restart) it is held and sent once it is. GW_ELIMIT: the held bytes or the upstream
 * send queue passed limits.send_queue; GW_ECLOSED: the upstream is gone. */
int gw_session_send(struct gw_session *s, const char *bytes, size_t len) GW_MUST_CHECK;

/* The client restarts the stream (after SASL success). GW_EPROTO if no SASL success was seen. */
int gw_session_restart(struct gw_session *s) GW_MUST_CHECK;

/* The transport is done with the session. cond NULL: the client closed cleanly (</stream:stream>
 * goes upstream). Otherwise the transport is gone or the client broke a rule (the condition is
 * logged and counted; upstream is closed). No sink call follows. */
void gw_session_end(struct gw_session *s, const char *cond);

/* The transport's queue drained below its bound: read upstream again. */
void gw_session_resume(struct gw_session *s);

const char *gw_session_id(const struct gw_session *s);
const char *gw_session_jid(const struct gw_session *s);    /* full JID after bind, else "" */
const char *gw_session_domain(const struct gw_session *s); /* "" before start */
enum gw_transport gw_session_transport_type(const struct gw_session *s);
void *gw_session_transport(const struct gw_session *s); /* the t given to gw_session_new */
bool gw_session_ready(const struct gw_session *s);      /* upstream stream ready for stanzas */

struct gw_session *gw_sessions_find(struct gw_sessions *tbl, const char *sid);
struct gw_session *gw_sessions_find_jid(struct gw_sessions *tbl, const char *full_jid);

/* A read-only view for the admin port. */
struct gw_session_info {
    const char *sid;
    const char *jid;
    const char *domain;
    const char *peer;
    enum gw_transport transport;
    const char *state;       /* "connecting", "tls", "open", "closing" */
    uint64_t created_ms;     /* uv_now() at creation */
    uint64_t stanzas_in;     /* from the client */
    uint64_t stanzas_out;    /* to the client */
    bool upstream_tls;       /* upstream stream is encrypted */
};
void gw_sessions_foreach(struct gw_sessions *tbl,
                         void (*fn)(void *ud, const struct gw_session_info *info), void *ud);

/* SIGTERM: every session is told system-shutdown (its sink's closed()) and its upstream closed. */
void gw_sessions_shutdown(struct gw_sessions *tbl);

#endif
