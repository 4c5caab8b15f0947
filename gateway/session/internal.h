/* What the session core's files share (session.c, login.c, peers.c, resume.c, visitor.c): the
 * session and table structs and the calls between those files. Not for any other module: session.h
 * is the contract. Calls: core. */
#ifndef GW_SESSION_INTERNAL_H
#define GW_SESSION_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/strmap.h"
#include "session/scram.h"
#include "session/session.h"
#include "xml/xml.h"

struct gw_upstream;
struct gw_upstream_ops;
struct visitor; /* visitor.c */

/* What a session that logs in by itself needs until it is bound. */
struct login {
    char *user;
    char *password;         /* cleared and freed once SASL is done */
    struct gw_scram *scram; /* the SCRAM exchange under way (scram.h); NULL for PLAIN */
    char *resource;         /* NULL: the server chooses */
    struct gw_buf features; /* features of the bound stream, for the sink */
    char stream_id[256];    /* header of the bound stream, for the sink */
    char stream_from[256];
    char stream_lang[64];
};

struct gw_session {
    struct gw_ctx *ctx;
    char sid[GW_SID_MAX + 1];
    enum gw_session_state state;
    enum gw_transport tr;
    const struct gw_sink_ops *ops; /* NULL once detached from the owner */
    void *t;                       /* the owner's own state */
    struct login *login;           /* GW_SESSION_AUTH_GATEWAY only */
    struct visitor *visitor;       /* visitor mode only (the stream 'to' was visitors.domain) */
    bool visitor_login;            /* GW_SESSION_AUTH_VISITOR: the visitor logs in by itself */
    bool restart_due;              /* SASL success seen; the stream restarts (RESTARTING only) */
    char peer[64];                 /* client address, for logs and /api/sessions */
    char domain[256];              /* XMPP domain asked for */
    char *jid;                     /* bound full JID, NULL before bind */
    char *sm_id;                   /* XEP-0198 stream id when resumption is enabled, else NULL */
    unsigned sm_window;            /* s: how long the server keeps that stream resumable */
    char *auth_jid;                /* bare JID the client's SASL named (client auth), or NULL */
    bool jid_bare;                 /* jid is auth_jid's bare JID: a stream resumed here that
                                      another node held; the full JID is not known yet */
    struct gw_upstream *up;        /* NULL once upstream closed or was closed */
    struct gw_buf held;            /* client elements waiting for the stream to open for them */
    uint64_t created_ms;
    uint64_t stanzas_in;          /* from the client */
    uint64_t stanzas_out;         /* to the client */
    struct gw_strmap_node by_sid; /* in the table by sid */
    struct gw_strmap_node by_jid; /* in the table by JID, once bound */
    struct gw_session *next_dead; /* graveyard list */
    struct peer *from;            /* its client address's counters; NULL for internal sessions */
    uint64_t auth_deadline_ms;    /* uv_now() by which a JID must be bound */
    struct gw_session *unb_prev, *unb_next; /* in gw_sessions' unbound list until BOUND */
    bool unbound;                           /* on that list */
};

/* What one client address holds: its sessions, those not bound yet, and its token bucket for new
 * sessions. Kept while it has sessions or its bucket is not full again, so that closing sessions
 * quickly does not refill it. */
struct peer {
    struct gw_strmap_node by_addr; /* in gw_sessions.peers */
    unsigned sessions;             /* open sessions from this address */
    unsigned unbound;              /* of which not yet bound */
    double tokens;                 /* new sessions it may start now */
    struct peer *next_idle;        /* while the ticker collects idle peers */
    uint64_t refill_ms;            /* when tokens was last brought up to date */
    char addr[64];                 /* the address as text */
};

/* A stream the client side dropped with XEP-0198 resumption enabled: its id and JID, until the
 * server's resumption window has passed, so that the session that resumes it knows its JID. */
struct resumable {
    struct gw_strmap_node by_id; /* in gw_sessions.resumable, by XEP-0198 id */
    struct resumable *next;      /* in drop order (gw_sessions.res_head) */
    uint64_t expires_ms;         /* uv_now() when the server forgets it */
    unsigned window;             /* s: the server's resumption window for it */
    char *jid;                   /* the full JID of the dropped session */
    char id[];                   /* the XEP-0198 id */
};

struct gw_sessions {
    struct gw_ctx *ctx;
    struct gw_strmap by_sid;
    struct gw_strmap by_jid;
    struct gw_strmap resumable;             /* struct resumable by id */
    struct resumable *res_head, *res_tail;  /* oldest drop first */
    size_t n_resumable;                     /* entries, at most limits.max_sessions */
    struct gw_strmap peers;                 /* struct peer by client address */
    struct gw_session *unb_head, *unb_tail; /* not bound yet, oldest first (auth deadlines) */
    uv_timer_t ticker;                      /* 1 s: auth deadlines, idle peers */
    unsigned handles_open;                  /* sweeper and ticker: freed when both closed */
    struct gw_session *graveyard;           /* closed, freed before the loop sleeps */
    uv_prepare_t sweeper;
    bool sweeper_open;
    struct gw_session *pending;    /* visitors with answers for their clients (visitor.c) */
    struct gw_xml_parser *vparser; /* judges visitors' elements, one at a time */
    struct judged *vjudge;         /* the element vparser is judging */
    bool vjudge_upstream;          /* it comes from upstream (a subscription's result) */
    char *vpw;                     /* the visitors' shared password, once read */
    char vpw_src[1026];            /* where it was read from */
};

/* ---- session.c ---- */

/* The one place a session changes state (logged at debug level). */
void session_transition(struct gw_session *s, enum gw_session_state to);
/* End the session: the owner is told why (once) and upstream is closed. */
void session_fail(struct gw_session *s, enum gw_condition cond, const char *text);
/* Send what the client sent while the stream was not open for it, in order. */
int session_flush_held(struct gw_session *s) GW_MUST_CHECK;
/* A client element for upstream, past any option's checks (held until the stream is open). */
int session_forward(struct gw_session *s, const char *bytes, size_t len) GW_MUST_CHECK;
/* The table's uv_prepare callback: answers for clients, then the graveyard. */
void session_sweep(uv_prepare_t *h);
/* The session's upstream callbacks (for an option that opens the upstream itself). */
const struct gw_upstream_ops *session_upstream_ops(void);

/* ---- login.c: the gateway's own login (GW_SESSION_AUTH_GATEWAY) ---- */

struct login *login_new(const struct gw_session_opts *o, size_t max_stanza);
void login_free(struct login *l);
/* Stream features while logging in: authenticate (SASL SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN, the
 * first the server offers), then bind. */
void login_features(struct gw_session *s, const struct gw_stream_info *hdr, const char *features,
                    size_t len, const struct gw_xml_node *tree);
/* An element of the login (nothing before the bind goes to the owner). */
void login_stanza(struct gw_session *s, const struct gw_xml_stanza *st);
/* Bound: the owner learns of the stream now, and what it held goes upstream. */
void login_bound(struct gw_session *s);
/* Does a features element offer this SASL mechanism? */
bool login_offers(const struct gw_xml_node *features, const char *mech);
/* SASL PLAIN <auth/> for user and password upstream (the bytes are cleared after). */
int login_send_plain(struct gw_upstream *up, const char *user, const char *password) GW_MUST_CHECK;
/* The strongest mechanism offered: "SCRAM-SHA-256", "SCRAM-SHA-1" (with *h) or "PLAIN"; NULL for
 * none. The -PLUS ones (channel binding) are not used. */
const char *login_pick_mech(const struct gw_xml_node *features, enum gw_scram_hash *h);
/* SCRAM's client-first message in <auth/>; *out gets the exchange (also on failure: free it with
 * login_scram_free). GW_EINVAL: a user name or password that is not printable ASCII. */
int login_scram_first(struct gw_upstream *up, struct gw_scram **out, enum gw_scram_hash h,
                      const char *user, const char *password) GW_MUST_CHECK;
/* A <challenge/> answered with <response/>, or a <success/> whose server signature is checked.
 * A refusal sets *why (never a secret); an error without *why is the gateway's own. */
int login_scram_answer(struct gw_upstream *up, struct gw_scram *sc, const struct gw_xml_stanza *st,
                       const char **why) GW_MUST_CHECK;
void login_scram_free(struct gw_scram **sc); /* NULL and *sc NULL are fine */

/* ---- peers.c: per-address limits and the authentication deadline ---- */

/* May a session be created? Counts and logs a refusal; *from: the address's counters (NULL for a
 * session without a client address). 0, GW_ELIMIT, GW_ECLOSED (draining), GW_EINVAL, GW_ENOMEM. */
int peers_admit(struct gw_ctx *ctx, const struct gw_session_opts *o, struct peer **from);
void peers_unbound_add(struct gw_session *s);    /* the auth deadline starts */
void peers_unbound_remove(struct gw_session *s); /* bound or closed */
void peers_ticker_want(struct gw_sessions *tbl); /* start the 1 s ticker if it is not running */
void peers_free_all(struct gw_sessions *tbl);

/* ---- resume.c: streams left resumable (XEP-0198) ---- */

/* The client side of s vanished with resumption enabled: remember its id and JID. */
void resume_keep(struct gw_session *s);
/* An XEP-0198 element from upstream (<enabled/>, <resumed/>) as it goes by. */
void resume_stanza(struct gw_session *s, const struct gw_xml_stanza *st);
void resume_free_all(struct gw_sessions *tbl);
/* A client element on its way upstream while authenticating (client SASL): from an <auth/>,
 * who the client authenticates as (never the password), kept as s->auth_jid. */
void resume_client_element(struct gw_session *s, const char *bytes, size_t len);
/* An upstream stanza of a session whose full JID is not known yet (s->jid_bare): the first one
 * addressed to a full JID of that bare JID gives it. */
void resume_learn_jid(struct gw_session *s, const struct gw_xml_stanza *st);

/* ---- visitor.c: visitor mode (shared account, generated resource, the visitor policy) ---- */

struct gw_config;
/* Does this stream 'to' select visitor mode? */
bool visitor_selected(const struct gw_config *cfg, const char *to);
/* gw_session_start() for a visitor: the upstream of the shared account. */
int visitor_start(struct gw_session *s, const char *to, const char *lang) GW_MUST_CHECK;
void visitor_free(struct visitor *v);
/* Upstream features: offer ANONYMOUS, later <bind/>. */
void visitor_features(struct gw_session *s, const struct gw_stream_info *hdr,
                      const struct gw_xml_node *tree);
/* An upstream element; true when it was the session's own business (not for the client). */
bool visitor_upstream(struct gw_session *s, const struct gw_xml_stanza *st);
/* The client's elements and restart (gw_session_send / gw_session_restart for a visitor). */
int visitor_send(struct gw_session *s, const char *bytes, size_t len) GW_MUST_CHECK;
int visitor_restart(struct gw_session *s) GW_MUST_CHECK;
/* From the sweeper: deliver what was queued for the client. */
void visitor_flush(struct gw_session *s);
/* The next session on the table's pending list; visitor_flush_cancel: s closed, nothing goes. */
struct gw_session *visitor_next_pending(const struct gw_session *s);
void visitor_flush_cancel(struct gw_session *s);
/* The session ends with its upstream still open: undo the visitor's subscriptions. */
void visitor_end(struct gw_session *s);
/* The shared password (cached in the table; read again when its source changes). */
int visitor_password(struct gw_sessions *tbl, const struct gw_config *cfg, char *out, size_t outlen,
                     char *err, size_t errlen) GW_MUST_CHECK;
void visitor_password_forget(struct gw_sessions *tbl);
extern const struct gw_xml_callbacks visitor_parse_cb;

#endif
