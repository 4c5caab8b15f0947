/* Session core: one client session, whatever is on its client side, mapped to one upstream c2s
 * stream. Owns the session table (sid -> session, JID -> session), each session's state machine
 * and its upstream. The state machine decides everything about a session's life: the upstream
 * reports events, transports report what the client did, and one transition function moves the
 * session from state to state (logged at debug level with sid and JID).
 *
 * What is on the client side is a sink (struct gw_sink_ops) the owner fills in: a browser
 * transport (web/websocket.c, web/bosh_session.c) or a part of the gateway itself (a hub: no
 * browser). Who authenticates is an option of the session (enum gw_session_auth): the client's
 * SASL passes through, or the session logs in with credentials it was given and binds a resource
 * itself. Calls: xmpp/upstream, xmpp/jid, config, core.
 *
 * Rules that keep it simple:
 * - The session never calls its sink synchronously from inside a call the owner made; what is
 *   known at once is a return code. Sink calls come from loop callbacks only.
 * - After the sink's closed() or gw_session_end() the two are detached: neither calls the other
 *   again. Memory is freed before the loop next sleeps, never inside a callback. */
#ifndef GW_SESSION_SESSION_H
#define GW_SESSION_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/cond.h"
#include "core/ctx.h"
#include "core/err.h"
#include "config/config.h"
#include "core/metrics.h"
#include "xmpp/stream.h"

#define GW_SID_LEN 32 /* hex characters: 128 bits from OpenSSL RAND */
/* A session id: with node_id set, that id and GW_SID_SEP before the random part ("n1.3f9a..."),
 * so that a proxy can route on it and another node can tell it is not its own; else the random
 * part alone. node_id's characters (letters, digits, '-', '_') never include the separator. */
#define GW_SID_SEP '.'
#define GW_SID_MAX (GW_CFG_NODE_ID_MAX + 1 + GW_SID_LEN)

struct gw_session;
struct gw_sessions;

/* The life of a session. Client elements that arrive while the stream is not open for them (NEW
 * to FEATURES and RESTARTING; with GW_SESSION_AUTH_GATEWAY every state before BOUND) are held by
 * the session (bounded by limits.send_queue) and sent in order once it is. See
 * docs/design-notes.md for the diagram. */
enum gw_session_state {
    GW_SESSION_NEW,            /* created, gw_session_start() not yet called */
    GW_SESSION_CONNECTING,     /* resolving and connecting upstream */
    GW_SESSION_SECURING,       /* TCP up; STARTTLS or the TLS handshake under way */
    GW_SESSION_FEATURES,       /* stream header sent, waiting for upstream's features */
    GW_SESSION_AUTHENTICATING, /* features are with the client (or the session): SASL under way */
    GW_SESSION_RESTARTING,     /* SASL succeeded: the stream restarts, waiting for new features */
    GW_SESSION_BINDING,        /* authenticated stream open; no full JID bound yet */
    GW_SESSION_BOUND,          /* a full JID is bound */
    GW_SESSION_CLOSED,         /* ended; unreachable, freed before the loop sleeps */
    GW_SESSION_STATE_COUNT
};

/* The client side of a session. t is the owner's own state. */
struct gw_sink_ops {
    /* A (re)started upstream stream is ready: the features element (framed: it declares
     * xmlns:stream and its own namespace; <starttls/> removed). With GW_SESSION_AUTH_GATEWAY it
     * comes once, when the session is bound, with the features of the bound stream. */
    void (*stream_ready)(void *t, const struct gw_stream_info *info, const char *features,
                         size_t len);
    /* One element for the client, framed (jabber:client declared on its root). Returns 0, or
     * GW_EAGAIN when the owner's queue is now past its bound: the session stops reading upstream
     * until gw_session_resume(). The element is taken either way. */
    int (*deliver)(void *t, const char *bytes, size_t len);
    /* The session ended (upstream closed or failed, or the gateway ended it): why->cond is
     * GW_COND_NONE for a clean close by upstream; err_xml is upstream's own <stream:error/>
     * when it sent one. Valid only during the call. The owner must not call the session
     * afterwards. */
    void (*closed)(void *t, const struct gw_close_reason *why);
};

enum gw_session_auth {
    GW_SESSION_AUTH_CLIENT,  /* the client's SASL and bind pass through */
    GW_SESSION_AUTH_GATEWAY, /* the session logs in (SASL PLAIN) and binds a resource itself */
    GW_SESSION_AUTH_VISITOR, /* as GATEWAY, as a visitor (visitors.*): the shared account, its
                                generated resource and the visitor policy; start it with `to`
                                = visitors.domain (a prebound visitor) */
};

struct gw_session_opts {
    enum gw_transport transport; /* what is on the client side (metrics, admin view) */
    const struct gw_sink_ops *sink;
    void *t;          /* passed to every sink call */
    const char *peer; /* client address for logs and the admin view; may be NULL */
    enum gw_session_auth auth;
    /* GW_SESSION_AUTH_GATEWAY only (copied; the password is never logged): */
    const char *user; /* localpart to log in as */
    const char *password;
    const char *resource; /* resource to bind; NULL: the server chooses */
};

/* Create the session table. */
struct gw_sessions *gw_sessions_new(struct gw_ctx *ctx);
/* Ends every session without telling its sink; the loop must run once more afterwards. */
void gw_sessions_free(struct gw_sessions *tbl);
size_t gw_sessions_count(const struct gw_sessions *tbl);

/* A new session with a fresh random sid, in state NEW. NULL with *err: GW_ECLOSED (draining),
 * GW_ELIMIT (limits.max_sessions, a per-address limit), GW_EINVAL (gateway auth without user or
 * password, visitor auth without visitors.domain), GW_ENOMEM, GW_EIO (no randomness). */
struct gw_session *gw_session_new(struct gw_ctx *ctx, const struct gw_session_opts *opts, int *err);

/* Open the upstream stream for XMPP domain `to` (lang may be NULL: "en"). 0: the sink's
 * stream_ready() or closed() follows later. GW_EINVAL: the domain is not valid or not served
 * (answer host-unknown); GW_EPROTO: already started or ended; GW_ENOMEM. */
int gw_session_start(struct gw_session *s, const char *to, const char *lang) GW_MUST_CHECK;

/* A client element (complete element bytes) for upstream. 0: sent, or held in order until the
 * stream is open for it. GW_ELIMIT: the held bytes or the upstream write queue would pass
 * limits.send_queue (nothing was taken); GW_ECLOSED: the session ended (closed() came or
 * comes); GW_ENOMEM, GW_EIO. */
int gw_session_send(struct gw_session *s, const char *bytes, size_t len) GW_MUST_CHECK;

/* The client restarts the stream (after SASL success). 0, or GW_EPROTO: no SASL success was
 * seen since the last restart (answer bad-format / bad-request); GW_ECLOSED; GW_ENOMEM, GW_EIO. */
int gw_session_restart(struct gw_session *s) GW_MUST_CHECK;

/* The owner is done with the session. cond GW_COND_NONE: the client closed cleanly
 * (</stream:stream> goes upstream). Otherwise the client side is gone or broke a rule (the
 * condition is logged; upstream is closed). No sink call follows. */
void gw_session_end(struct gw_session *s, enum gw_condition cond);

/* The client side vanished without a word (socket dropped, BOSH inactivity): logged as such;
 * upstream is closed. No sink call follows. */
void gw_session_lost(struct gw_session *s);

/* The owner's queue drained below its bound: read upstream again. */
void gw_session_resume(struct gw_session *s);

const char *gw_session_id(const struct gw_session *s);
const char *gw_session_jid(const struct gw_session *s); /* full JID after bind, else "" */
enum gw_session_state gw_session_state(const struct gw_session *s);
const char *gw_session_state_name(enum gw_session_state st);

/* A read-only view for the admin port. */
struct gw_session_info {
    const char *sid;
    const char *jid;
    const char *domain;
    const char *peer;
    enum gw_transport transport;
    enum gw_session_state state;
    uint64_t created_ms;  /* uv_now() at creation */
    uint64_t stanzas_in;  /* from the client */
    uint64_t stanzas_out; /* to the client */
    bool upstream_tls;    /* upstream stream is encrypted */
};
void gw_sessions_foreach(struct gw_sessions *tbl,
                         void (*fn)(void *ud, const struct gw_session_info *info), void *ud);

/* The gateway ends the session with this sid (the admin port's DELETE): its sink is told cond (a
 * stream error, a BOSH terminate) with text, and its upstream is closed with </stream:stream>.
 * 0, or GW_EINVAL when no session has that sid. */
int gw_sessions_end_sid(struct gw_sessions *tbl, const char *sid, enum gw_condition cond,
                        const char *text);

/* The client address of the session with this sid, NULL when there is none (or it has no
 * address): the log's lookup (struct gw_log's peer_of, with the table as ud). */
const char *gw_sessions_peer_of(const void *tbl, const char *sid);

/* Stop at once: every session's sink is told system-shutdown and its upstream closed. */
void gw_sessions_shutdown(struct gw_sessions *tbl);

/* The end of a drain's grace: every session ends. One bound with XEP-0198 resumption enabled
 * has its upstream closed without </stream:stream> (the server keeps the stream resumable) and
 * its sink's closed() says system-shutdown with why->resumable set, so that the transport lets
 * the client resume through another node; the others are told system-shutdown and their
 * streams closed. Returns how many were left resumable. */
size_t gw_sessions_end_drained(struct gw_sessions *tbl);

/* ---- back-pressure: one rule for every queue between a session and its client ---- */

/* Past the bound: stop reading upstream. */
static inline bool gw_queue_over(size_t queued, size_t bound)
{
    return queued > bound;
}
/* Drained to half: read again. */
static inline bool gw_queue_drained(size_t queued, size_t bound)
{
    return queued <= bound / 2;
}

#endif
