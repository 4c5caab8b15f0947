/* Session core: the session table (by sid and by bound JID), each session's state machine and
 * upstream stream, and the glue between the owner's sink and the upstream's events. Every change
 * of state goes through transition(). Sessions are freed only from a uv_prepare callback, never
 * inside another callback. Calls: xmpp/upstream, xmpp/jid, config, core. */
#include "session/session.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/strmap.h"
#include "xmpp/jid.h"
#include "xmpp/upstream.h"

#define BIND_ID "gw-bind-1"
#define SM_WINDOW_DEFAULT                                                                          \
    600                     /* s: how long a dropped stream stays resumable when the server names  \
                               no 'max' (Prosody's smacks_hibernation_time) */
#define SM_WINDOW_MAX 86400 /* s: a server's 'max' is believed up to this */

/* What a session that logs in by itself needs until it is bound. */
struct login {
    char *user;
    char *password;         /* cleared and freed once SASL is done */
    char *resource;         /* NULL: the server chooses */
    struct gw_buf features; /* features of the bound stream, for the sink */
    char stream_id[256];    /* header of the bound stream, for the sink */
    char stream_from[256];
    char stream_lang[64];
};

struct gw_session {
    struct gw_ctx *ctx;
    char sid[GW_SID_LEN + 1];
    enum gw_session_state state;
    enum gw_transport tr;
    const struct gw_sink_ops *ops; /* NULL once detached from the owner */
    void *t;                       /* the owner's own state */
    struct login *login;           /* GW_SESSION_AUTH_GATEWAY only */
    bool restart_due;              /* SASL success seen; the stream restarts (RESTARTING only) */
    char peer[64];                 /* client address, for logs and /api/sessions */
    char domain[256];              /* XMPP domain asked for */
    char *jid;                     /* bound full JID, NULL before bind */
    char *sm_id;                   /* XEP-0198 stream id when resumption is enabled, else NULL */
    unsigned sm_window;            /* s: how long the server keeps that stream resumable */
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
};

static const char *const state_names[GW_SESSION_STATE_COUNT] = {
    [GW_SESSION_NEW] = "new",
    [GW_SESSION_CONNECTING] = "connecting",
    [GW_SESSION_SECURING] = "securing",
    [GW_SESSION_FEATURES] = "features",
    [GW_SESSION_AUTHENTICATING] = "authenticating",
    [GW_SESSION_RESTARTING] = "restarting",
    [GW_SESSION_BINDING] = "binding",
    [GW_SESSION_BOUND] = "bound",
    [GW_SESSION_CLOSED] = "closed",
};

const char *gw_session_state_name(enum gw_session_state st)
{
    return (unsigned)st < GW_SESSION_STATE_COUNT ? state_names[st] : "?";
}

static struct gw_session *of_sid(struct gw_strmap_node *n)
{
    return n ? GW_CONTAINER_OF(n, struct gw_session, by_sid) : NULL;
}

/* ---- lifetime ---- */

static void login_free(struct login *l)
{
    if (!l)
        return;
    if (l->password) {
        OPENSSL_cleanse(l->password, strlen(l->password));
        free(l->password);
    }
    free(l->user);
    free(l->resource);
    gw_buf_cleanup(&l->features);
    free(l);
}

static void session_free(struct gw_session *s)
{
    gw_buf_cleanup(&s->held);
    login_free(s->login);
    free(s->jid);
    free(s->sm_id);
    free(s);
}

/* ---- streams left resumable (XEP-0198) ---- */

static void resumable_drop_oldest(struct gw_sessions *tbl)
{
    struct resumable *r = tbl->res_head;
    tbl->res_head = r->next;
    if (!tbl->res_head)
        tbl->res_tail = NULL;
    gw_strmap_del(&tbl->resumable, &r->by_id);
    tbl->n_resumable--;
    free(r->jid);
    free(r);
}

/* Forget what the server has forgotten (and the oldest, past limits.max_sessions). Entries are
 * kept in drop order; one with a longer window waits behind an older one, which is harmless. */
static void resumable_expire(struct gw_sessions *tbl)
{
    uint64_t now = uv_now(tbl->ctx->loop);
    while (tbl->res_head &&
           (tbl->res_head->expires_ms <= now || tbl->n_resumable > tbl->ctx->cfg->max_sessions))
        resumable_drop_oldest(tbl);
}

/* The client side of s vanished with resumption enabled: remember its id and JID. */
static void resumable_keep(struct gw_session *s)
{
    struct gw_sessions *tbl = s->ctx->sessions;
    resumable_expire(tbl);
    size_t n = strlen(s->sm_id);
    struct resumable *r = calloc(1, sizeof(*r) + n + 1);
    if (!r || !(r->jid = strdup(s->jid))) {
        free(r);
        return; /* the stream stays resumable; the session that resumes it will lack its JID */
    }
    memcpy(r->id, s->sm_id, n + 1);
    struct gw_strmap_node *old = gw_strmap_find(&tbl->resumable, r->id);
    if (old)
        gw_strmap_del(&tbl->resumable, old); /* the older entry expires in its turn */
    r->window = s->sm_window;
    r->expires_ms = uv_now(s->ctx->loop) + (uint64_t)s->sm_window * 1000;
    gw_strmap_add(&tbl->resumable, &r->by_id, r->id);
    if (tbl->res_tail)
        tbl->res_tail->next = r;
    else
        tbl->res_head = r;
    tbl->res_tail = r;
    tbl->n_resumable++;
}

/* The JID of a resumable stream (NULL: not known here) and its window, taken out of the table.
 * The caller frees the JID. */
static char *resumable_take(struct gw_sessions *tbl, const char *id, unsigned *window)
{
    *window = SM_WINDOW_DEFAULT;
    resumable_expire(tbl);
    struct gw_strmap_node *n = gw_strmap_find(&tbl->resumable, id);
    if (!n)
        return NULL;
    struct resumable *r = GW_CONTAINER_OF(n, struct resumable, by_id);
    gw_strmap_del(&tbl->resumable, n);
    char *jid = r->jid;
    r->jid = NULL;
    *window = r->window;
    r->expires_ms = 0; /* the list entry goes at the next expiry */
    return jid;
}

static void sweep(uv_prepare_t *h)
{
    struct gw_sessions *tbl = h->data;
    while (tbl->graveyard) {
        struct gw_session *s = tbl->graveyard;
        tbl->graveyard = s->next_dead;
        session_free(s);
    }
    uv_prepare_stop(&tbl->sweeper);
}

/* ---- client addresses: per-address limits and the authentication deadline ---- */

static void peer_refill(const struct gw_config *cfg, struct peer *p, uint64_t now)
{
    double t = p->tokens + (double)(now - p->refill_ms) / 1000.0 * cfg->per_address_rate;
    p->tokens = t > cfg->per_address_burst ? cfg->per_address_burst : t;
    p->refill_ms = now;
}

static struct peer *peer_get(struct gw_sessions *tbl, const char *addr)
{
    struct gw_strmap_node *n = gw_strmap_find(&tbl->peers, addr);
    if (n)
        return GW_CONTAINER_OF(n, struct peer, by_addr);
    struct peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->tokens = tbl->ctx->cfg->per_address_burst;
    p->refill_ms = uv_now(tbl->ctx->loop);
    gw_strmap_add(&tbl->peers, &p->by_addr, p->addr);
    return p;
}

/* Which limit a new session from p would pass, or GW_LIMIT_COUNT for none. */
static enum gw_limit peer_limit(const struct gw_config *cfg, struct peer *p, uint64_t now)
{
    peer_refill(cfg, p, now);
    if (p->sessions >= cfg->per_address_sessions)
        return GW_LIMIT_ADDR_SESSIONS;
    if (p->unbound >= cfg->per_address_unauth)
        return GW_LIMIT_ADDR_UNAUTH;
    if (p->tokens < 1.0)
        return GW_LIMIT_ADDR_RATE;
    return GW_LIMIT_COUNT;
}

static void unbound_remove(struct gw_session *s)
{
    if (!s->unbound)
        return;
    struct gw_sessions *tbl = s->ctx->sessions;
    if (s->unb_prev)
        s->unb_prev->unb_next = s->unb_next;
    else
        tbl->unb_head = s->unb_next;
    if (s->unb_next)
        s->unb_next->unb_prev = s->unb_prev;
    else
        tbl->unb_tail = s->unb_prev;
    s->unb_prev = s->unb_next = NULL;
    s->unbound = false;
    if (s->from)
        s->from->unbound--;
}

static void unbound_add(struct gw_session *s)
{
    struct gw_sessions *tbl = s->ctx->sessions;
    s->auth_deadline_ms = uv_now(s->ctx->loop) + (uint64_t)s->ctx->cfg->auth_timeout * 1000;
    s->unb_prev = tbl->unb_tail;
    if (tbl->unb_tail)
        tbl->unb_tail->unb_next = s;
    else
        tbl->unb_head = s;
    tbl->unb_tail = s;
    s->unbound = true;
    if (s->from)
        s->from->unbound++;
}

static void fail(struct gw_session *s, enum gw_condition cond, const char *text);

/* Peers with no session and a full bucket are forgotten. */
static void forget_idle_peers(struct gw_sessions *tbl, uint64_t now)
{
    struct peer *idle = NULL;
    for (struct gw_strmap_node *n = gw_strmap_first(&tbl->peers); n;
         n = gw_strmap_next(&tbl->peers, n)) {
        struct peer *p = GW_CONTAINER_OF(n, struct peer, by_addr);
        peer_refill(tbl->ctx->cfg, p, now);
        if (p->sessions == 0 && p->tokens >= tbl->ctx->cfg->per_address_burst) {
            p->next_idle = idle;
            idle = p;
        }
    }
    while (idle) {
        struct peer *p = idle;
        idle = p->next_idle;
        gw_strmap_del(&tbl->peers, &p->by_addr);
        free(p);
    }
}

/* Every second while there is something to watch: sessions past their authentication deadline
 * end with policy-violation (the list is in creation order, so the expired ones are at its
 * head; a reload that shortens limits.auth_timeout applies to sessions created after it). */
static void on_tick(uv_timer_t *h)
{
    struct gw_sessions *tbl = h->data;
    uint64_t now = uv_now(tbl->ctx->loop);
    while (tbl->unb_head && tbl->unb_head->auth_deadline_ms <= now) {
        struct gw_session *s = tbl->unb_head;
        unbound_remove(s);
        tbl->ctx->metrics.refused[GW_LIMIT_AUTH_TIMEOUT]++;
        fail(s, GW_COND_policy_violation, "no JID bound within limits.auth_timeout");
    }
    forget_idle_peers(tbl, now);
    if (!tbl->unb_head && tbl->peers.n == 0)
        uv_timer_stop(&tbl->ticker);
}

static void ticker_want(struct gw_sessions *tbl)
{
    if (tbl->handles_open == 2 && !uv_is_active((uv_handle_t *)&tbl->ticker))
        uv_timer_start(&tbl->ticker, on_tick, 1000, 1000);
}

/* The one place a session changes state. CLOSED takes it out of the table at once; its memory
 * goes before the loop sleeps. */
static void transition(struct gw_session *s, enum gw_session_state to)
{
    if (s->state == to || s->state == GW_SESSION_CLOSED)
        return;
    GW_DEBUG(&s->ctx->log, s->sid, s->jid, "state %s -> %s", state_names[s->state],
             state_names[to]);
    s->state = to;
    if (to == GW_SESSION_BOUND || to == GW_SESSION_CLOSED)
        unbound_remove(s);
    if (to != GW_SESSION_CLOSED)
        return;
    struct gw_sessions *tbl = s->ctx->sessions;
    if (s->from)
        s->from->sessions--;
    s->ops = NULL;
    gw_strmap_del(&tbl->by_sid, &s->by_sid);
    if (s->jid)
        gw_strmap_del(&tbl->by_jid, &s->by_jid);
    s->ctx->metrics.sessions_open[s->tr]--;
    s->next_dead = tbl->graveyard;
    tbl->graveyard = s;
    if (tbl->sweeper_open)
        uv_prepare_start(&tbl->sweeper, sweep);
}

struct gw_sessions *gw_sessions_new(struct gw_ctx *ctx)
{
    struct gw_sessions *tbl = calloc(1, sizeof(*tbl));
    if (!tbl)
        return NULL;
    tbl->ctx = ctx;
    if (gw_strmap_init(&tbl->by_sid) || gw_strmap_init(&tbl->by_jid) ||
        gw_strmap_init(&tbl->resumable) || gw_strmap_init(&tbl->peers) ||
        uv_prepare_init(ctx->loop, &tbl->sweeper) != 0) {
        gw_strmap_cleanup(&tbl->by_sid);
        gw_strmap_cleanup(&tbl->by_jid);
        gw_strmap_cleanup(&tbl->resumable);
        gw_strmap_cleanup(&tbl->peers);
        free(tbl);
        return NULL;
    }
    uv_timer_init(ctx->loop, &tbl->ticker);
    tbl->sweeper.data = tbl->ticker.data = tbl;
    tbl->sweeper_open = true;
    tbl->handles_open = 2;
    return tbl;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct gw_sessions *tbl = h->data;
    if (--tbl->handles_open == 0)
        free(tbl);
}

void gw_sessions_free(struct gw_sessions *tbl)
{
    if (!tbl)
        return;
    struct gw_session *s;
    while ((s = of_sid(gw_strmap_first(&tbl->by_sid))) != NULL) {
        s->ops = NULL;
        gw_session_end(s, GW_COND_system_shutdown);
    }
    while (tbl->graveyard) {
        s = tbl->graveyard;
        tbl->graveyard = s->next_dead;
        session_free(s);
    }
    while (tbl->res_head)
        resumable_drop_oldest(tbl);
    struct gw_strmap_node *n;
    while ((n = gw_strmap_first(&tbl->peers)) != NULL) {
        gw_strmap_del(&tbl->peers, n);
        free(GW_CONTAINER_OF(n, struct peer, by_addr));
    }
    gw_strmap_cleanup(&tbl->by_sid);
    gw_strmap_cleanup(&tbl->by_jid);
    gw_strmap_cleanup(&tbl->resumable);
    gw_strmap_cleanup(&tbl->peers);
    tbl->sweeper_open = false;
    uv_prepare_stop(&tbl->sweeper);
    uv_timer_stop(&tbl->ticker);
    uv_close((uv_handle_t *)&tbl->sweeper, on_handle_closed);
    uv_close((uv_handle_t *)&tbl->ticker, on_handle_closed);
}

size_t gw_sessions_count(const struct gw_sessions *tbl)
{
    return tbl->by_sid.n;
}

static struct login *login_new(const struct gw_session_opts *o, size_t max_stanza)
{
    struct login *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->user = strdup(o->user);
    l->password = strdup(o->password);
    l->resource = o->resource ? strdup(o->resource) : NULL;
    gw_buf_init(&l->features, max_stanza);
    if (!l->user || !l->password || (o->resource && !l->resource)) {
        login_free(l);
        return NULL;
    }
    return l;
}

static int refuse(struct gw_ctx *ctx, const char *peer, enum gw_limit l)
{
    ctx->metrics.refused[l]++;
    GW_INFO(&ctx->log, NULL, NULL, "new session from %s refused: limit %s", peer ? peer : "-",
            gw_limit_name(l));
    return GW_ELIMIT;
}

/* May this session be created? Counts and logs a refusal; *from is the client address's
 * counters (NULL for a session with no client address). */
static int admit(struct gw_ctx *ctx, const struct gw_session_opts *o, struct peer **from)
{
    *from = NULL;
    if (ctx->draining)
        return GW_ECLOSED;
    if (!o->sink || (unsigned)o->transport >= GW_TRANSPORT_COUNT)
        return GW_EINVAL;
    if (o->auth == GW_SESSION_AUTH_GATEWAY && (!o->user || !*o->user || !o->password))
        return GW_EINVAL;
    if (ctx->sessions->by_sid.n >= ctx->cfg->max_sessions)
        return refuse(ctx, o->peer, GW_LIMIT_SESSIONS);
    if (!o->peer || !*o->peer)
        return 0;
    struct peer *p = peer_get(ctx->sessions, o->peer);
    if (!p)
        return GW_ENOMEM;
    ticker_want(ctx->sessions); /* forgets the peer again if nothing comes of it */
    enum gw_limit l = peer_limit(ctx->cfg, p, uv_now(ctx->loop));
    if (l != GW_LIMIT_COUNT)
        return refuse(ctx, o->peer, l);
    *from = p;
    return 0;
}

struct gw_session *gw_session_new(struct gw_ctx *ctx, const struct gw_session_opts *o, int *err)
{
    struct gw_sessions *tbl = ctx->sessions;
    struct gw_session *s = NULL;
    struct peer *from;
    int e = admit(ctx, o, &from);
    if (!e && !(s = calloc(1, sizeof(*s))))
        e = GW_ENOMEM;
    if (!e && gw_rand_hex(s->sid, GW_SID_LEN / 2) != 0)
        e = GW_EIO;
    if (!e && gw_strmap_find(&tbl->by_sid, s->sid))
        e = GW_EIO; /* 128 random bits collided: the generator is broken */
    if (!e && o->auth == GW_SESSION_AUTH_GATEWAY &&
        !(s->login = login_new(o, ctx->cfg->max_stanza)))
        e = GW_ENOMEM;
    if (err)
        *err = e;
    if (e) {
        if (s)
            login_free(s->login);
        free(s);
        return NULL;
    }
    gw_strmap_add(&tbl->by_sid, &s->by_sid, s->sid);
    s->ctx = ctx;
    s->state = GW_SESSION_NEW;
    s->tr = o->transport;
    s->ops = o->sink;
    s->t = o->t;
    snprintf(s->peer, sizeof(s->peer), "%s", o->peer ? o->peer : "");
    gw_buf_init(&s->held, ctx->cfg->send_queue);
    s->created_ms = uv_now(ctx->loop);
    if (from) {
        s->from = from;
        from->sessions++;
        from->tokens -= 1.0;
    }
    unbound_add(s);
    ticker_want(tbl);
    ctx->metrics.sessions_open[s->tr]++;
    ctx->metrics.sessions_total[s->tr]++;
    GW_INFO(&ctx->log, s->sid, NULL, "session created: transport=%s peer=%s auth=%s",
            gw_transport_name(s->tr), s->peer, s->login ? "gateway" : "client");
    return s;
}

/* ---- ending ---- */

/* Tell the owner (once) and close. */
static void close_with(struct gw_session *s, const struct gw_close_reason *why)
{
    if (s->state == GW_SESSION_CLOSED)
        return;
    GW_INFO(&s->ctx->log, s->sid, s->jid, "session ended: %s%s%s",
            why->cond == GW_COND_NONE ? "closed" : gw_condition_name(why->cond),
            why->text ? ": " : "", why->text ? why->text : "");
    const struct gw_sink_ops *ops = s->ops;
    s->ops = NULL;
    if (s->up) {
        gw_upstream_close(s->up);
        s->up = NULL;
    }
    transition(s, GW_SESSION_CLOSED);
    if (ops)
        ops->closed(s->t, why);
}

static void fail(struct gw_session *s, enum gw_condition cond, const char *text)
{
    struct gw_close_reason why = {.cond = cond, .text = text};
    close_with(s, &why);
}

/* The owner ends the session: no sink call follows. */
static void end_by_owner(struct gw_session *s, const char *why)
{
    if (s->state == GW_SESSION_CLOSED)
        return;
    s->ops = NULL;
    GW_INFO(&s->ctx->log, s->sid, s->jid, "session ended: %s", why);
    if (s->up) {
        gw_upstream_close(s->up);
        s->up = NULL;
    }
    transition(s, GW_SESSION_CLOSED);
}

void gw_session_end(struct gw_session *s, enum gw_condition cond)
{
    end_by_owner(s, cond == GW_COND_NONE ? "closed by the client" : gw_condition_name(cond));
}

void gw_session_lost(struct gw_session *s)
{
    if (s->state != GW_SESSION_BOUND || !s->sm_id || !s->jid || !s->up) {
        end_by_owner(s, "the client side is gone");
        return;
    }
    /* XEP-0198: to the server the client vanished, so it keeps the stream for resumption; a new
     * session that resumes it takes this JID. */
    GW_INFO(&s->ctx->log, s->sid, s->jid,
            "session ended: the client side is gone; upstream left resumable for %u s",
            s->sm_window);
    s->ctx->metrics.resumable_drops++;
    resumable_keep(s);
    s->ops = NULL;
    gw_upstream_abort(s->up);
    s->up = NULL;
    transition(s, GW_SESSION_CLOSED);
}

/* ---- client elements for upstream ---- */

/* Is the stream open for the client's elements? */
static bool open_for_client(const struct gw_session *s)
{
    if (s->login)
        return s->state == GW_SESSION_BOUND;
    return s->state == GW_SESSION_AUTHENTICATING || s->state == GW_SESSION_BINDING ||
           s->state == GW_SESSION_BOUND;
}

/* Send what was held, in order, once the stream is open for it. */
static int flush_held(struct gw_session *s)
{
    if (!gw_buf_size(&s->held) || !open_for_client(s))
        return 0;
    int rc = gw_upstream_send(s->up, gw_buf_ptr(&s->held), gw_buf_size(&s->held));
    if (rc == GW_EAGAIN)
        return 0;
    gw_buf_reset(&s->held);
    if (s->held.cap > 65536)
        gw_buf_cleanup(&s->held);
    return rc;
}

int gw_session_send(struct gw_session *s, const char *bytes, size_t len)
{
    if (s->state == GW_SESSION_CLOSED || (s->state != GW_SESSION_NEW && !s->up))
        return GW_ECLOSED;
    int rc = GW_EAGAIN;
    if (open_for_client(s) && !gw_buf_size(&s->held))
        rc = gw_upstream_send(s->up, bytes, len);
    if (rc == GW_EAGAIN)
        rc = gw_buf_append(&s->held, bytes, len);
    if (rc)
        return rc;
    s->stanzas_in++;
    s->ctx->metrics.stanzas_to_upstream++;
    s->ctx->metrics.bytes_to_upstream += len;
    return 0;
}

int gw_session_restart(struct gw_session *s)
{
    if (s->state == GW_SESSION_CLOSED)
        return GW_ECLOSED;
    if (s->login || s->state != GW_SESSION_RESTARTING || !s->restart_due || !s->up)
        return GW_EPROTO;
    s->restart_due = false;
    return gw_upstream_restart(s->up);
}

void gw_session_resume(struct gw_session *s)
{
    if (s->up)
        gw_upstream_pause_reading(s->up, false);
}

/* ---- the gateway's own login (GW_SESSION_AUTH_GATEWAY) ---- */

static bool offers_mechanism(const struct gw_xml_node *features, const char *mech)
{
    const struct gw_xml_node *m = gw_xml_child(features, GW_NS_SASL, "mechanisms");
    for (const struct gw_xml_node *c = m ? m->children : NULL; c; c = c->next)
        if (strcmp(c->name, "mechanism") == 0 && c->text && strcmp(c->text, mech) == 0)
            return true;
    return false;
}

/* SASL PLAIN (RFC 4616): base64 of "\0user\0password". */
static int send_plain_auth(struct gw_session *s)
{
    struct login *l = s->login;
    size_t ul = strlen(l->user), pl = strlen(l->password), n = ul + pl + 2;
    unsigned char *raw = malloc(n);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    struct gw_buf b;
    gw_buf_init(&b, 4 * n + 256);
    int rc = raw && b64 ? 0 : GW_ENOMEM;
    if (!rc) {
        raw[0] = '\0';
        memcpy(raw + 1, l->user, ul);
        raw[ul + 1] = '\0';
        memcpy(raw + ul + 2, l->password, pl);
        EVP_EncodeBlock((unsigned char *)b64, raw, (int)n);
        rc = gw_buf_printf(&b, "<auth xmlns='" GW_NS_SASL "' mechanism='PLAIN'>%s</auth>", b64);
    }
    if (!rc)
        rc = gw_upstream_send(s->up, gw_buf_ptr(&b), gw_buf_size(&b));
    if (raw)
        OPENSSL_cleanse(raw, n);
    if (b64)
        OPENSSL_cleanse(b64, strlen(b64));
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    gw_buf_cleanup(&b);
    free(raw);
    free(b64);
    return rc;
}

static int send_bind(struct gw_session *s)
{
    struct gw_buf b;
    gw_buf_init(&b, 2048);
    int rc = gw_buf_append_str(&b, "<iq type='set' id='" BIND_ID "'><bind xmlns='" GW_NS_BIND "'");
    if (!rc && s->login->resource) {
        rc = gw_buf_append_str(&b, "><resource>");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, s->login->resource, strlen(s->login->resource));
        if (!rc)
            rc = gw_buf_append_str(&b, "</resource></bind></iq>");
    } else if (!rc) {
        rc = gw_buf_append_str(&b, "/></iq>");
    }
    if (!rc)
        rc = gw_upstream_send(s->up, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    return rc;
}

/* Features of the gateway's own login: authenticate, then bind. */
static void login_features(struct gw_session *s, const struct gw_stream_info *hdr,
                           const char *features, size_t len, const struct gw_xml_node *tree)
{
    struct login *l = s->login;
    int rc;
    if (s->state == GW_SESSION_FEATURES) {
        if (!offers_mechanism(tree, "PLAIN")) {
            fail(s, GW_COND_not_authorized, "upstream offers no SASL PLAIN");
            return;
        }
        transition(s, GW_SESSION_AUTHENTICATING);
        rc = send_plain_auth(s);
    } else {
        transition(s, GW_SESSION_BINDING);
        snprintf(l->stream_id, sizeof(l->stream_id), "%s", hdr->id);
        snprintf(l->stream_from, sizeof(l->stream_from), "%s", hdr->from);
        snprintf(l->stream_lang, sizeof(l->stream_lang), "%s", hdr->lang);
        gw_buf_reset(&l->features);
        rc = gw_buf_append(&l->features, features, len);
        if (!rc)
            rc = send_bind(s);
    }
    if (rc)
        fail(s, GW_COND_internal_server_error, gw_strerror(rc));
}

/* An element of the gateway's own login (nothing before the bind goes to the owner). */
static void login_stanza(struct gw_session *s, const struct gw_xml_stanza *st)
{
    if (s->state == GW_SESSION_AUTHENTICATING && strcmp(st->ns, GW_NS_SASL) == 0) {
        if (strcmp(st->name, "success") != 0) {
            fail(s, GW_COND_not_authorized, "upstream refused the gateway's login");
            return;
        }
        OPENSSL_cleanse(s->login->password, strlen(s->login->password));
        transition(s, GW_SESSION_RESTARTING);
        gw_upstream_restart_after(s->up);
        int rc = gw_upstream_restart(s->up);
        if (rc)
            fail(s, GW_COND_internal_server_error, gw_strerror(rc));
        return;
    }
    if (s->state == GW_SESSION_BINDING && strcmp(st->name, "iq") == 0 && st->tree) {
        /* A result was read by bind_result(); anything else answering our bind is a refusal. */
        const char *id = gw_xml_attr(st->tree->attrs, st->tree->n_attrs, "id");
        if (id && strcmp(id, BIND_ID) == 0)
            fail(s, GW_COND_not_authorized, "upstream refused the resource binding");
    }
}

/* ---- upstream events ---- */

static void up_progress(void *ud, enum gw_upstream_progress p)
{
    struct gw_session *s = ud;
    if (p == GW_UPSTREAM_CONNECTED && s->state == GW_SESSION_CONNECTING)
        transition(s, GW_SESSION_SECURING);
    else if (p == GW_UPSTREAM_STREAM &&
             (s->state == GW_SESSION_CONNECTING || s->state == GW_SESSION_SECURING))
        transition(s, GW_SESSION_FEATURES);
}

static void up_features(void *ud, const struct gw_stream_info *hdr, const char *features,
                        size_t len, const struct gw_xml_node *tree)
{
    struct gw_session *s = ud;
    if (s->state != GW_SESSION_FEATURES && s->state != GW_SESSION_RESTARTING) {
        fail(s, GW_COND_undefined_condition, "upstream sent stream features out of turn");
        return;
    }
    if (s->login) {
        login_features(s, hdr, features, len, tree);
        return;
    }
    transition(s, s->state == GW_SESSION_FEATURES ? GW_SESSION_AUTHENTICATING : GW_SESSION_BINDING);
    int rc = flush_held(s);
    if (rc) {
        fail(s, rc == GW_ELIMIT ? GW_COND_policy_violation : GW_COND_internal_server_error,
             "the client's held elements could not be sent upstream");
        return;
    }
    if (s->ops)
        s->ops->stream_ready(s->t, hdr, features, len);
}

/* The bound JID, normalised (domain lowercased), into out: it must be a full JID of the
 * session's own domain. */
static int check_bound_jid(const struct gw_session *s, const char *text, char *out, size_t outlen)
{
    struct gw_jid j;
    if (gw_jid_parse(text, &j) != 0 || !j.resource[0] || !gw_jid_domain_equal(j.domain, s->domain))
        return GW_EPROTO;
    return gw_jid_format(&j, out, outlen);
}

/* A bind result names the session's full JID. true: the session ended over it. */
static bool bind_result(struct gw_session *s, const struct gw_xml_stanza *st)
{
    if (s->state != GW_SESSION_BINDING || !st->tree || strcmp(st->name, "iq") != 0)
        return false;
    const char *type = gw_xml_attr(st->tree->attrs, st->tree->n_attrs, "type");
    const struct gw_xml_node *bind = gw_xml_child(st->tree, GW_NS_BIND, "bind");
    const struct gw_xml_node *jid = bind ? gw_xml_child(bind, GW_NS_BIND, "jid") : NULL;
    if (!type || strcmp(type, "result") != 0 || !jid || !jid->text_len)
        return false;
    char norm[2 * GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 3];
    if (check_bound_jid(s, jid->text, norm, sizeof(norm)) != 0) {
        fail(s, GW_COND_undefined_condition,
             "upstream bound a JID that is not a full JID of "
             "the session's domain");
        return true;
    }
    char *copy = strdup(norm);
    if (!copy) {
        fail(s, GW_COND_internal_server_error, "out of memory");
        return true;
    }
    struct gw_sessions *tbl = s->ctx->sessions;
    s->jid = copy;
    gw_strmap_add(&tbl->by_jid, &s->by_jid, s->jid);
    gw_upstream_set_jid(s->up, s->jid);
    transition(s, GW_SESSION_BOUND);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "bound");
    return false;
}

/* A gateway login is bound: the owner learns of the stream now, and what it held goes. */
static void login_bound(struct gw_session *s)
{
    struct login *l = s->login;
    struct gw_stream_info info = {
        .id = l->stream_id, .from = l->stream_from, .version = "1.0", .lang = l->stream_lang};
    int rc = flush_held(s);
    if (rc) {
        fail(s, rc == GW_ELIMIT ? GW_COND_policy_violation : GW_COND_internal_server_error,
             "the held elements could not be sent upstream");
        return;
    }
    if (s->ops)
        s->ops->stream_ready(s->t, &info, gw_buf_ptr(&l->features), gw_buf_size(&l->features));
    gw_buf_cleanup(&l->features);
}

static bool is_sasl_success(const struct gw_xml_stanza *st)
{
    return strcmp(st->ns, GW_NS_SASL) == 0 && strcmp(st->name, "success") == 0;
}

/* XEP-0198 answers the session reads as they go by to the client: <enabled resume='true'/>
 * makes the stream resumable; <resumed previd=''/> in place of a bind result gives the session
 * the JID of the stream it resumed. */
static void stream_management(struct gw_session *s, const struct gw_xml_stanza *st)
{
    const struct gw_xml_node *n = st->tree;
    const char *resume = gw_xml_attr(n->attrs, n->n_attrs, "resume");
    const char *id = gw_xml_attr(n->attrs, n->n_attrs, "id");
    if (strcmp(st->name, "enabled") == 0 && s->state == GW_SESSION_BOUND && id && resume &&
        (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0)) {
        const char *max = gw_xml_attr(n->attrs, n->n_attrs, "max");
        unsigned long w = max ? strtoul(max, NULL, 10) : 0;
        free(s->sm_id);
        s->sm_id = strdup(id);
        s->sm_window = w && w <= SM_WINDOW_MAX ? (unsigned)w : SM_WINDOW_DEFAULT;
        GW_DEBUG(&s->ctx->log, s->sid, s->jid, "stream management: resumable for %u s",
                 s->sm_window);
        return;
    }
    const char *previd = gw_xml_attr(n->attrs, n->n_attrs, "previd");
    if (strcmp(st->name, "resumed") != 0 || s->state != GW_SESSION_BINDING || !previd)
        return;
    char *jid = resumable_take(s->ctx->sessions, previd, &s->sm_window);
    free(s->sm_id);
    s->sm_id = strdup(previd);
    if (jid) {
        s->jid = jid;
        gw_strmap_add(&s->ctx->sessions->by_jid, &s->by_jid, s->jid);
        gw_upstream_set_jid(s->up, s->jid);
    }
    s->ctx->metrics.resumed++;
    transition(s, GW_SESSION_BOUND);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "resumed a stream (XEP-0198)%s",
            jid ? "" : ": its JID is not known on this node");
}

static void up_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_session *s = ud;
    bool was_bound = s->state == GW_SESSION_BOUND;
    if (bind_result(s, st) || s->state == GW_SESSION_CLOSED)
        return;
    if (st->tree && strcmp(st->ns, GW_NS_SM) == 0)
        stream_management(s, st);
    if (s->login && !was_bound) {
        if (s->state == GW_SESSION_BOUND)
            login_bound(s);
        else
            login_stanza(s, st);
        return;
    }
    if (s->state == GW_SESSION_AUTHENTICATING && is_sasl_success(st)) {
        /* RFC 6120 6.4.6: the stream restarts; the client's restart sends our new header. */
        transition(s, GW_SESSION_RESTARTING);
        s->restart_due = true;
        gw_upstream_restart_after(s->up);
    }
    if (!s->ops)
        return;
    s->stanzas_out++;
    s->ctx->metrics.stanzas_to_client++;
    s->ctx->metrics.bytes_to_client += st->len;
    if (s->ops->deliver(s->t, st->bytes, st->len) == GW_EAGAIN && s->up)
        gw_upstream_pause_reading(s->up, true);
}

static void up_closed(void *ud, const struct gw_close_reason *why)
{
    struct gw_session *s = ud;
    s->up = NULL; /* it frees itself */
    close_with(s, why);
}

static const struct gw_upstream_ops up_ops = {
    .on_progress = up_progress,
    .on_features = up_features,
    .on_stanza = up_stanza,
    .on_closed = up_closed,
};

int gw_session_start(struct gw_session *s, const char *to, const char *lang)
{
    if (s->state != GW_SESSION_NEW)
        return GW_EPROTO;
    if (!to || !gw_jid_domain_valid(to))
        return GW_EINVAL;
    const struct gw_upstream_cfg *uc = gw_config_upstream_for(s->ctx->cfg, to);
    if (!uc)
        return GW_EINVAL;
    snprintf(s->domain, sizeof(s->domain), "%s", to);
    s->up = gw_upstream_open(s->ctx, uc, to, lang, &up_ops, s, s->sid);
    if (!s->up)
        return GW_ENOMEM;
    transition(s, GW_SESSION_CONNECTING);
    GW_DEBUG(&s->ctx->log, s->sid, NULL, "upstream for %s: %s:%u tls=%s", to, uc->addr.host,
             uc->addr.port, gw_config_tls_name(uc->tls));
    return 0;
}

/* ---- views ---- */

const char *gw_session_id(const struct gw_session *s)
{
    return s->sid;
}

const char *gw_session_jid(const struct gw_session *s)
{
    return s->jid ? s->jid : "";
}

enum gw_session_state gw_session_state(const struct gw_session *s)
{
    return s->state;
}

void gw_sessions_foreach(struct gw_sessions *tbl,
                         void (*fn)(void *ud, const struct gw_session_info *info), void *ud)
{
    for (struct gw_strmap_node *n = gw_strmap_first(&tbl->by_sid); n;
         n = gw_strmap_next(&tbl->by_sid, n)) {
        const struct gw_session *s = of_sid(n);
        struct gw_session_info info = {
            .sid = s->sid,
            .jid = gw_session_jid(s),
            .domain = s->domain,
            .peer = s->peer,
            .transport = s->tr,
            .state = s->state,
            .created_ms = s->created_ms,
            .stanzas_in = s->stanzas_in,
            .stanzas_out = s->stanzas_out,
            .upstream_tls = s->up && gw_upstream_is_tls(s->up),
        };
        fn(ud, &info);
    }
}

void gw_sessions_shutdown(struct gw_sessions *tbl)
{
    /* Telling an owner may make it end other sessions: take one at a time from the table. */
    struct gw_session *s;
    while ((s = of_sid(gw_strmap_first(&tbl->by_sid))) != NULL)
        fail(s, GW_COND_system_shutdown, "the gateway is shutting down");
}
