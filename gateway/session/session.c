/* Session core: the session table (by sid and by bound JID), each session's state machine and
 * upstream stream, and the glue between the owner's sink and the upstream's events. Every change
 * of state goes through session_transition(). Sessions are freed only from a uv_prepare callback,
 * never inside another callback. Calls: xmpp/upstream, xmpp/jid, config, core. */
#include "session/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/strmap.h"
#include "session/internal.h"
#include "xmpp/jid.h"
#include "xmpp/upstream.h"

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

static void session_free(struct gw_session *s)
{
    gw_buf_cleanup(&s->held);
    login_free(s->login);
    visitor_free(s->visitor);
    free(s->jid);
    free(s->sm_id);
    free(s->auth_jid);
    free(s);
}

/* Before the loop sleeps: what options queued for their clients (answers given by the gateway
 * itself: never inside the owner's call), then the memory of closed sessions. Answers queued
 * while this runs wait for the next turn. */
void session_sweep(uv_prepare_t *h)
{
    struct gw_sessions *tbl = h->data;
    struct gw_session *list = tbl->pending;
    tbl->pending = NULL;
    while (list) {
        struct gw_session *s = list;
        list = visitor_next_pending(s);
        if (s->state != GW_SESSION_CLOSED)
            visitor_flush(s);
        else
            visitor_flush_cancel(s);
    }
    while (tbl->graveyard) {
        struct gw_session *s = tbl->graveyard;
        tbl->graveyard = s->next_dead;
        session_free(s);
    }
    if (!tbl->pending)
        uv_prepare_stop(&tbl->sweeper);
}

/* ---- client addresses: per-address limits and the authentication deadline ---- */

void session_fail(struct gw_session *s, enum gw_condition cond, const char *text);

/* The one place a session changes state. CLOSED takes it out of the table at once; its memory
 * goes before the loop sleeps. */
void session_transition(struct gw_session *s, enum gw_session_state to)
{
    if (s->state == to || s->state == GW_SESSION_CLOSED)
        return;
    GW_DEBUG(&s->ctx->log, s->sid, s->jid, "state %s -> %s", state_names[s->state],
             state_names[to]);
    s->state = to;
    if (to == GW_SESSION_BOUND || to == GW_SESSION_CLOSED)
        peers_unbound_remove(s);
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
        uv_prepare_start(&tbl->sweeper, session_sweep);
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
    tbl->pending = NULL; /* closed now: nothing is delivered */
    while (tbl->graveyard) {
        s = tbl->graveyard;
        tbl->graveyard = s->next_dead;
        session_free(s);
    }
    resume_free_all(tbl);
    peers_free_all(tbl);
    gw_strmap_cleanup(&tbl->by_sid);
    gw_strmap_cleanup(&tbl->by_jid);
    gw_strmap_cleanup(&tbl->resumable);
    gw_strmap_cleanup(&tbl->peers);
    if (tbl->vparser)
        gw_xml_free(tbl->vparser);
    visitor_password_forget(tbl);
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

/* node_id (if any) and the separator, then 128 random bits in hex. */
static int make_sid(const struct gw_config *cfg, char out[GW_SID_MAX + 1])
{
    size_t n = strlen(cfg->node_id);
    if (n) {
        memcpy(out, cfg->node_id, n);
        out[n++] = GW_SID_SEP;
    }
    return gw_rand_hex(out + n, GW_SID_LEN / 2);
}

struct gw_session *gw_session_new(struct gw_ctx *ctx, const struct gw_session_opts *o, int *err)
{
    struct gw_sessions *tbl = ctx->sessions;
    struct gw_session *s = NULL;
    struct peer *from;
    int e = peers_admit(ctx, o, &from);
    if (!e && !(s = calloc(1, sizeof(*s))))
        e = GW_ENOMEM;
    if (!e && make_sid(ctx->cfg, s->sid) != 0)
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
    s->visitor_login = o->auth == GW_SESSION_AUTH_VISITOR;
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
    peers_unbound_add(s);
    peers_ticker_want(tbl);
    ctx->metrics.sessions_open[s->tr]++;
    ctx->metrics.sessions_total[s->tr]++;
    GW_INFO(&ctx->log, s->sid, NULL, "session created: transport=%s peer=%s auth=%s",
            gw_transport_name(s->tr), s->peer,
            s->visitor_login ? "visitor"
            : s->login       ? "gateway"
                             : "client");
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
    if (s->visitor)
        visitor_end(s);
    if (s->up) {
        gw_upstream_close(s->up);
        s->up = NULL;
    }
    session_transition(s, GW_SESSION_CLOSED);
    if (ops)
        ops->closed(s->t, why);
}

void session_fail(struct gw_session *s, enum gw_condition cond, const char *text)
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
    if (s->visitor)
        visitor_end(s);
    if (s->up) {
        gw_upstream_close(s->up);
        s->up = NULL;
    }
    session_transition(s, GW_SESSION_CLOSED);
}

void gw_session_end(struct gw_session *s, enum gw_condition cond)
{
    end_by_owner(s, cond == GW_COND_NONE ? "closed by the client" : gw_condition_name(cond));
}

/* XEP-0198: a bound stream that enabled resumption can be left to the server. */
static bool can_leave_resumable(const struct gw_session *s)
{
    return s->state == GW_SESSION_BOUND && s->sm_id && s->jid && s->up;
}

/* Close the upstream without </stream:stream>: to the server the client vanished, so it keeps the
 * stream for resumption, and a session that resumes it (here: resume_keep() gives it this JID;
 * or on another node) takes it. The owner is detached first and told nothing. */
static void leave_resumable(struct gw_session *s, const char *why)
{
    GW_INFO(&s->ctx->log, s->sid, s->jid, "session ended: %s; upstream left resumable for %u s",
            why, s->sm_window);
    s->ctx->metrics.resumable_drops++;
    resume_keep(s);
    s->ops = NULL;
    gw_upstream_abort(s->up);
    s->up = NULL;
    session_transition(s, GW_SESSION_CLOSED);
}

void gw_session_lost(struct gw_session *s)
{
    if (can_leave_resumable(s))
        leave_resumable(s, "the client side is gone");
    else
        end_by_owner(s, "the client side is gone");
}

/* ---- client elements for upstream ---- */

/* Is the stream open for the client's elements? */
static bool open_for_client(const struct gw_session *s)
{
    if (s->login || s->visitor)
        return s->state == GW_SESSION_BOUND;
    return s->state == GW_SESSION_AUTHENTICATING || s->state == GW_SESSION_BINDING ||
           s->state == GW_SESSION_BOUND;
}

/* Send what was held, in order, once the stream is open for it. */
int session_flush_held(struct gw_session *s)
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
    if (s->visitor)
        return visitor_send(s, bytes, len);
    if (!s->login && s->state == GW_SESSION_AUTHENTICATING)
        resume_client_element(s, bytes, len);
    return session_forward(s, bytes, len);
}

int session_forward(struct gw_session *s, const char *bytes, size_t len)
{
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
    if (s->visitor)
        return visitor_restart(s);
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

/* ---- upstream events ---- */

static void up_progress(void *ud, enum gw_upstream_progress p)
{
    struct gw_session *s = ud;
    if (p == GW_UPSTREAM_CONNECTED && s->state == GW_SESSION_CONNECTING)
        session_transition(s, GW_SESSION_SECURING);
    else if (p == GW_UPSTREAM_STREAM &&
             (s->state == GW_SESSION_CONNECTING || s->state == GW_SESSION_SECURING))
        session_transition(s, GW_SESSION_FEATURES);
}

static void up_features(void *ud, const struct gw_stream_info *hdr, const char *features,
                        size_t len, const struct gw_xml_node *tree)
{
    struct gw_session *s = ud;
    if (s->state != GW_SESSION_FEATURES && s->state != GW_SESSION_RESTARTING) {
        session_fail(s, GW_COND_undefined_condition, "upstream sent stream features out of turn");
        return;
    }
    if (s->login) { /* before visitor: a visitor that logs in by itself is a login */
        login_features(s, hdr, features, len, tree);
        return;
    }
    if (s->visitor) {
        visitor_features(s, hdr, tree);
        return;
    }
    session_transition(s, s->state == GW_SESSION_FEATURES ? GW_SESSION_AUTHENTICATING
                                                          : GW_SESSION_BINDING);
    int rc = session_flush_held(s);
    if (rc) {
        session_fail(s, rc == GW_ELIMIT ? GW_COND_policy_violation : GW_COND_internal_server_error,
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
        session_fail(s, GW_COND_undefined_condition,
                     "upstream bound a JID that is not a full JID of "
                     "the session's domain");
        return true;
    }
    char *copy = strdup(norm);
    if (!copy) {
        session_fail(s, GW_COND_internal_server_error, "out of memory");
        return true;
    }
    struct gw_sessions *tbl = s->ctx->sessions;
    s->jid = copy;
    gw_strmap_add(&tbl->by_jid, &s->by_jid, s->jid);
    gw_upstream_set_jid(s->up, s->jid);
    session_transition(s, GW_SESSION_BOUND);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "bound");
    return false;
}

static bool is_sasl_success(const struct gw_xml_stanza *st)
{
    return strcmp(st->ns, GW_NS_SASL) == 0 && strcmp(st->name, "success") == 0;
}

static void up_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_session *s = ud;
    bool was_bound = s->state == GW_SESSION_BOUND;
    if (bind_result(s, st) || s->state == GW_SESSION_CLOSED)
        return;
    if (s->visitor && visitor_upstream(s, st))
        return;
    if (st->tree && strcmp(st->ns, GW_NS_SM) == 0)
        resume_stanza(s, st);
    else if (s->jid_bare)
        resume_learn_jid(s, st);
    if (s->login && !was_bound) {
        if (s->state == GW_SESSION_BOUND)
            login_bound(s);
        else
            login_stanza(s, st);
        return;
    }
    if (s->state == GW_SESSION_AUTHENTICATING && is_sasl_success(st)) {
        /* RFC 6120 6.4.6: the stream restarts; the client's restart sends our new header. */
        session_transition(s, GW_SESSION_RESTARTING);
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

const struct gw_upstream_ops *session_upstream_ops(void)
{
    return &up_ops;
}

int gw_session_start(struct gw_session *s, const char *to, const char *lang)
{
    if (s->state != GW_SESSION_NEW)
        return GW_EPROTO;
    if (!to || !gw_jid_domain_valid(to))
        return GW_EINVAL;
    bool visitor = visitor_selected(s->ctx->cfg, to);
    if ((s->visitor_login && !visitor) || (visitor && s->login))
        return GW_EINVAL; /* a login of the gateway's is never the visitors' domain */
    if (visitor)
        return visitor_start(s, to, lang);
    const struct gw_upstream_cfg *uc = gw_config_upstream_for(s->ctx->cfg, to);
    if (!uc)
        return GW_EINVAL;
    snprintf(s->domain, sizeof(s->domain), "%s", to);
    s->up = gw_upstream_open(s->ctx, uc, to, lang, &up_ops, s, s->sid);
    if (!s->up)
        return GW_ENOMEM;
    session_transition(s, GW_SESSION_CONNECTING);
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

/* A drain's end for one session: one that enabled XEP-0198 resumption has its upstream closed
 * without </stream:stream> (the server keeps the stream resumable) and its owner told so, so
 * that the client resumes it through another node; any other is told system-shutdown. true:
 * left resumable. */
static bool end_draining(struct gw_session *s)
{
    if (!can_leave_resumable(s) || s->visitor || s->login) {
        session_fail(s, GW_COND_system_shutdown, "the gateway is shutting down");
        return false;
    }
    const struct gw_sink_ops *ops = s->ops;
    leave_resumable(s, "drained");
    struct gw_close_reason why = {
        .cond = GW_COND_system_shutdown, .text = "the gateway is shutting down", .resumable = true};
    if (ops)
        ops->closed(s->t, &why);
    return true;
}

size_t gw_sessions_end_drained(struct gw_sessions *tbl)
{
    size_t resumable = 0;
    struct gw_session *s;
    while ((s = of_sid(gw_strmap_first(&tbl->by_sid))) != NULL)
        resumable += end_draining(s);
    return resumable;
}

/* Sessions closed in this loop turn wait in the graveyard, the latest first: a transport's last
 * line about one (from its sink's closed()) still finds it there. Only the first few are looked
 * at, so that a mass shutdown does not make every line walk a long list. */
#define PEER_GRAVE_LOOKS 8

const char *gw_sessions_peer_of(const void *ud, const char *sid)
{
    const struct gw_sessions *tbl = ud;
    const struct gw_session *s = of_sid(gw_strmap_find(&tbl->by_sid, sid));
    unsigned looks = 0;
    for (const struct gw_session *d = tbl->graveyard; !s && d && looks < PEER_GRAVE_LOOKS;
         d = d->next_dead, looks++)
        if (strcmp(d->sid, sid) == 0)
            s = d;
    return s && s->peer[0] ? s->peer : NULL;
}

int gw_sessions_end_sid(struct gw_sessions *tbl, const char *sid, enum gw_condition cond,
                        const char *text)
{
    struct gw_session *s = of_sid(gw_strmap_find(&tbl->by_sid, sid));
    if (!s)
        return GW_EINVAL;
    GW_INFO(&s->ctx->log, s->sid, s->jid, "session ended by the admin port: %s",
            gw_condition_name(cond));
    session_fail(s, cond, text);
    return 0;
}

void gw_sessions_shutdown(struct gw_sessions *tbl)
{
    /* Telling an owner may make it end other sessions: take one at a time from the table. */
    struct gw_session *s;
    while ((s = of_sid(gw_strmap_first(&tbl->by_sid))) != NULL)
        session_fail(s, GW_COND_system_shutdown, "the gateway is shutting down");
}
