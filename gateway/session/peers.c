/* Per-address limits and the authentication deadline: one table of client addresses (sessions,
 * sessions not bound yet, a token bucket for new sessions), kept until an address's bucket is full
 * again so that closing sessions quickly does not refill it; and one 1 s ticker over the
 * creation-ordered list of unbound sessions, which ends those past limits.auth_timeout (no timer
 * per session). Calls: session.c (internal.h), config, core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/log.h"
#include "session/internal.h"

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

void peers_unbound_remove(struct gw_session *s)
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

void peers_unbound_add(struct gw_session *s)
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
        peers_unbound_remove(s);
        tbl->ctx->metrics.refused[GW_LIMIT_AUTH_TIMEOUT]++;
        session_fail(s, GW_COND_policy_violation, "no JID bound within limits.auth_timeout");
    }
    forget_idle_peers(tbl, now);
    if (!tbl->unb_head && tbl->peers.n == 0)
        uv_timer_stop(&tbl->ticker);
}

void peers_ticker_want(struct gw_sessions *tbl)
{
    if (tbl->handles_open == 2 && !uv_is_active((uv_handle_t *)&tbl->ticker))
        uv_timer_start(&tbl->ticker, on_tick, 1000, 1000);
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
int peers_admit(struct gw_ctx *ctx, const struct gw_session_opts *o, struct peer **from)
{
    *from = NULL;
    if (ctx->draining)
        return GW_ECLOSED;
    if (!o->sink || (unsigned)o->transport >= GW_TRANSPORT_COUNT)
        return GW_EINVAL;
    if (o->auth == GW_SESSION_AUTH_GATEWAY && (!o->user || !*o->user || !o->password))
        return GW_EINVAL;
    if (o->auth == GW_SESSION_AUTH_VISITOR && !ctx->cfg->visitors_domain[0])
        return GW_EINVAL;
    if (ctx->sessions->by_sid.n >= ctx->cfg->max_sessions)
        return refuse(ctx, o->peer, GW_LIMIT_SESSIONS);
    if (!o->peer || !*o->peer)
        return 0;
    struct peer *p = peer_get(ctx->sessions, o->peer);
    if (!p)
        return GW_ENOMEM;
    peers_ticker_want(ctx->sessions); /* forgets the peer again if nothing comes of it */
    enum gw_limit l = peer_limit(ctx->cfg, p, uv_now(ctx->loop));
    if (l != GW_LIMIT_COUNT)
        return refuse(ctx, o->peer, l);
    *from = p;
    return 0;
}

void peers_free_all(struct gw_sessions *tbl)
{
    struct gw_strmap_node *n;
    while ((n = gw_strmap_first(&tbl->peers)) != NULL) {
        gw_strmap_del(&tbl->peers, n);
        free(GW_CONTAINER_OF(n, struct peer, by_addr));
    }
}
