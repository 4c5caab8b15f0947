/* Session core: the session table (by sid and by bound JID), each session's upstream stream and the
 * glue between a transport's sink and the upstream's callbacks. Sessions are freed only from a
 * uv_prepare callback, never inside another callback. Calls: xmpp/upstream, xmpp/jid, config,
 * core. */
#include "session/session.h"

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

struct gw_session {
    struct gw_ctx *ctx;
    char sid[GW_SID_LEN + 1];
    enum gw_transport tr;
    const struct gw_sink_ops *ops; /* NULL once detached from the transport */
    void *t;                       /* the transport's own state */
    char peer[64];                 /* client address, for logs and /api/sessions */
    char domain[256];              /* XMPP domain asked for */
    char *jid;                     /* bound full JID, NULL before bind */
    struct gw_upstream *up;        /* NULL once upstream closed or was closed */
    struct gw_buf pending_up;      /* client stanzas that arrived before the stream was ready */
    bool ready;                    /* upstream stream ready for stanzas */
    bool dead;                     /* on the graveyard list, unreachable by lookups */
    uint64_t created_ms;
    uint64_t stanzas_in;           /* from the client */
    uint64_t stanzas_out;          /* to the client */
    struct gw_strmap_node by_sid;  /* in the table by sid */
    struct gw_strmap_node by_jid;  /* in the table by JID, once bound */
    struct gw_session *next_dead;  /* graveyard list */
};

struct gw_sessions {
    struct gw_ctx *ctx;
    struct gw_strmap by_sid;
    struct gw_strmap by_jid;
    struct gw_session *graveyard; /* marked dead, freed before the loop sleeps */
    uv_prepare_t sweeper;
    bool sweeper_open;
};

static struct gw_session *of_sid(struct gw_strmap_node *n)
{
    return n ? GW_CONTAINER_OF(n, struct gw_session, by_sid) : NULL;
}

/* ---- lifetime ---- */

static void session_free(struct gw_session *s)
{
    gw_buf_cleanup(&s->pending_up);
    free(s->jid);
    free(s);
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

/* Unreachable at once, freed before the loop sleeps. */
static void mark_dead(struct gw_session *s)
{
    if (s->dead)
        return;
    struct gw_sessions *tbl = s->ctx->sessions;
    s->dead = true;
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
        uv_prepare_init(ctx->loop, &tbl->sweeper) != 0) {
        gw_strmap_cleanup(&tbl->by_sid);
        gw_strmap_cleanup(&tbl->by_jid);
        free(tbl);
        return NULL;
    }
    tbl->sweeper.data = tbl;
    tbl->sweeper_open = true;
    return tbl;
}

static void on_sweeper_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Ends every session without telling transports (they are being freed too), then frees. The loop
 * must run once more for the sweeper handle to close. */
void gw_sessions_free(struct gw_sessions *tbl)
{
    if (!tbl)
        return;
    struct gw_session *s;
    while ((s = of_sid(gw_strmap_first(&tbl->by_sid))) != NULL) {
        s->ops = NULL;
        gw_session_end(s, "system-shutdown");
    }
    while (tbl->graveyard) {
        s = tbl->graveyard;
        tbl->graveyard = s->next_dead;
        session_free(s);
    }
    gw_strmap_cleanup(&tbl->by_sid);
    gw_strmap_cleanup(&tbl->by_jid);
    tbl->sweeper_open = false;
    uv_prepare_stop(&tbl->sweeper);
    uv_close((uv_handle_t *)&tbl->sweeper, on_sweeper_closed);
}

size_t gw_sessions_count(const struct gw_sessions *tbl)
{
    return tbl->by_sid.n;
}

struct gw_session *gw_session_new(struct gw_ctx *ctx, enum gw_transport tr,
                                  const struct gw_sink_ops *ops, void *t, const char *peer,
                                  int *err)
{
    struct gw_sessions *tbl = ctx->sessions;
    int e = 0;
    struct gw_session *s = NULL;
    if (ctx->draining) {
        e = GW_ECLOSED;
    } else if (tbl->by_sid.n >= ctx->cfg->max_sessions) {
        e = GW_ELIMIT;
    } else if (!(s = calloc(1, sizeof(*s)))) {
        e = GW_ENOMEM;
    } else if (gw_rand_hex(s->sid, GW_SID_LEN / 2) != 0) {
        e = GW_EIO;
    } else if (gw_strmap_find(&tbl->by_sid, s->sid)) {
        e = GW_EIO; /* 128 random bits collided: the generator is broken */
    }
    if (e) {
        free(s);
        if (err)
            *err = e;
        return NULL;
    }
    gw_strmap_add(&tbl->by_sid, &s->by_sid, s->sid);
    s->ctx = ctx;
    s->tr = tr;
    s->ops = ops;
    s->t = t;
    snprintf(s->peer, sizeof(s->peer), "%s", peer ? peer : "");
    gw_buf_init(&s->pending_up, ctx->cfg->send_queue);
    s->created_ms = uv_now(ctx->loop);
    ctx->metrics.sessions_open[tr]++;
    ctx->metrics.sessions_total[tr]++;
    GW_INFO(&ctx->log, s->sid, NULL, "session created: transport=%s peer=%s",
            gw_transport_name(tr), s->peer);
    if (err)
        *err = 0;
    return s;
}

/* ---- upstream callbacks ---- */

static void up_ready(void *ud, const struct gw_upstream_stream *hdr, const char *features,
                     size_t len)
{
    struct gw_session *s = ud;
    s->ready = true;
    if (gw_buf_size(&s->pending_up)) {
        int rc = gw_upstream_send(s->up, gw_buf_ptr(&s->pending_up), gw_buf_size(&s->pending_up));
        gw_buf_reset(&s->pending_up);
        if (rc)
            GW_WARN(&s->ctx->log, s->sid, s->jid, "held stanzas not sent upstream: %s",
                    gw_strerror(rc));
    }
    struct gw_stream_info info = {
        .id = hdr->id, .from = hdr->from, .version = hdr->version, .lang = hdr->lang};
    if (s->ops)
        s->ops->stream_ready(s->t, &info, features, len);
}

static void up_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_session *s = ud;
    if (!s->ops)
        return;
    s->stanzas_out++;
    s->ctx->metrics.stanzas_to_client++;
    s->ctx->metrics.bytes_to_client += st->len;
    if (s->ops->deliver(s->t, st->bytes, st->len) == GW_EAGAIN && s->up)
        gw_upstream_pause_reading(s->up, true);
}

static void up_bound(void *ud, const char *jid)
{
    struct gw_session *s = ud;
    struct gw_sessions *tbl = s->ctx->sessions;
    if (s->jid)
        gw_strmap_del(&tbl->by_jid, &s->by_jid);
    free(s->jid);
    s->jid = strdup(jid);
    if (s->jid)
        gw_strmap_add(&tbl->by_jid, &s->by_jid, s->jid);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "bound");
}

static void up_closed(void *ud, const char *cond, const char *text, const char *err_xml,
                      size_t err_len)
{
    struct gw_session *s = ud;
    s->up = NULL; /* it frees itself */
    s->ready = false;
    GW_INFO(&s->ctx->log, s->sid, s->jid, "upstream stream ended: %s%s%s", cond ? cond : "closed",
            text ? ": " : "", text ? text : "");
    const struct gw_sink_ops *ops = s->ops;
    s->ops = NULL;
    if (ops)
        ops->closed(s->t, cond, text, err_xml, err_len);
    mark_dead(s);
}

static const struct gw_upstream_ops up_ops = {
    .on_ready = up_ready,
    .on_stanza = up_stanza,
    .on_bound = up_bound,
    .on_closed = up_closed,
};

/* ---- transport -> session ---- */

int gw_session_start(struct gw_session *s, const char *to, const char *lang)
{
    if (s->up || s->dead)
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
    GW_DEBUG(&s->ctx->log, s->sid, NULL, "upstream for %s: %s:%u tls=%s", to, uc->addr.host,
             uc->addr.port, gw_config_tls_name(uc->tls));
    return 0;
}

int gw_session_send(struct gw_session *s, const char *bytes, size_t len)
{
    if (!s->up || s->dead)
        return GW_ECLOSED;
    s->stanzas_in++;
    s->ctx->metrics.stanzas_to_upstream++;
    s->ctx->metrics.bytes_to_upstream += len;
    if (!s->ready)
        return gw_buf_append(&s->pending_up, bytes, len);
    return gw_upstream_send(s->up, bytes, len);
}

int gw_session_restart(struct gw_session *s)
{
    if (!s->up || s->dead || !gw_upstream_sasl_done(s->up))
        return GW_EPROTO;
    s->ready = false;
    return gw_upstream_restart(s->up);
}

void gw_session_end(struct gw_session *s, const char *cond)
{
    if (s->dead)
        return;
    if (cond)
        GW_INFO(&s->ctx->log, s->sid, s->jid, "session ended: %s", cond);
    else
        GW_INFO(&s->ctx->log, s->sid, s->jid, "session closed by client");
    s->ops = NULL;
    if (s->up) {
        gw_upstream_close(s->up);
        s->up = NULL;
    }
    mark_dead(s);
}

void gw_session_resume(struct gw_session *s)
{
    if (s->up)
        gw_upstream_pause_reading(s->up, false);
}

const char *gw_session_id(const struct gw_session *s)
{
    return s->sid;
}

const char *gw_session_jid(const struct gw_session *s)
{
    return s->jid ? s->jid : "";
}

const char *gw_session_domain(const struct gw_session *s)
{
    return s->domain;
}

enum gw_transport gw_session_transport_type(const struct gw_session *s)
{
    return s->tr;
}

void *gw_session_transport(const struct gw_session *s)
{
    return s->t;
}

bool gw_session_ready(const struct gw_session *s)
{
    return s->ready;
}

struct gw_session *gw_sessions_find(struct gw_sessions *tbl, const char *sid)
{
    return of_sid(gw_strmap_find(&tbl->by_sid, sid));
}

struct gw_session *gw_sessions_find_jid(struct gw_sessions *tbl, const char *full_jid)
{
    struct gw_strmap_node *n = gw_strmap_find(&tbl->by_jid, full_jid);
    return n ? GW_CONTAINER_OF(n, struct gw_session, by_jid) : NULL;
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
            .state = s->up ? gw_upstream_state_name(s->up) : "closing",
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
    /* Telling a transport may make it end other sessions: take one at a time from the table. */
    struct gw_session *s;
    while ((s = of_sid(gw_strmap_first(&tbl->by_sid))) != NULL) {
        const struct gw_sink_ops *ops = s->ops;
        s->ops = NULL;
        if (ops)
            ops->closed(s->t, "system-shutdown", "the gateway is shutting down", NULL, 0);
        gw_session_end(s, "system-shutdown");
    }
}
