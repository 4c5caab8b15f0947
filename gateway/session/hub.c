/* The live-updates hub's life: its own session (a sink that is no browser transport), logged in
 * as live.jid, reconnected with a backoff when its upstream is lost; the nodes that have watchers
 * (subscribe, fetch the last live.replay items, hear notifications, linger, unsubscribe); the
 * publishes in flight (the iq out, its answer, timeout or loss back to the asker). What an
 * element means is hub_event.c's; this file decides what happens with it.
 * Owns: struct gw_hub, struct hub_node, struct gw_hub_publish. Calls: session, xml, config,
 * core. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "session/hub.h"
#include "session/session.h"

#define TICK_MS 1000         /* linger and reconnect checks */
#define BACKOFF_MIN_MS 1000  /* first reconnect after a loss */
#define BACKOFF_MAX_MS 60000 /* reconnects back off to this */
#define IQ_ID_MAX 32         /* "hub-<n>" */
#define EXTRA_MAX 8192       /* attributes added to an iq's pubsub element */

enum node_state {
    NODE_WAITING,     /* the hub is not bound: subscribe once it is */
    NODE_SUBSCRIBING, /* subscribe iq sent */
    NODE_FETCHING,    /* subscribed; items iq sent */
    NODE_READY,       /* subscribed, cache loaded: watchers hear live events */
};

/* One viewed (or lingering) node. */
struct hub_node {
    struct gw_hub *hub;            /* its hub */
    struct hub_node *prev, *next;  /* the hub's nodes */
    char service[256];             /* pubsub service (JID domain) */
    char name[512];                /* node name */
    enum node_state state;         /* see above */
    char iq_id[IQ_ID_MAX];         /* id of the subscribe or items iq in flight */
    struct gw_hub_ring ring;       /* the last live.replay items */
    struct gw_hub_watch *watchers; /* who watches it */
    uint64_t idle_since;           /* uv_now() when the last watcher left; 0 while watched */
};

struct gw_hub {
    struct gw_ctx *ctx;                    /* the gateway */
    struct gw_session *s;                  /* the hub's session; NULL while down */
    bool up;                               /* s is bound */
    char user[1024];                       /* localpart of live.jid */
    char domain[256];                      /* domain of live.jid */
    char bare[1300];                       /* bare JID as bound */
    char password[1024];                   /* for reconnects; cleansed when the hub goes */
    unsigned replay;                       /* live.replay */
    unsigned linger_ms;                    /* live.linger */
    struct hub_node *nodes;                /* nodes with watchers, or lingering */
    uv_timer_t tick;                       /* linger expiry and reconnects */
    uint64_t reconnect_at;                 /* uv_now() of the next login attempt; 0: none due */
    unsigned backoff_ms;                   /* next delay after a loss */
    unsigned long iq_seq;                  /* iq ids */
    struct gw_xml_parser *parser;          /* upstream elements (one document each) */
    struct gw_hub_publish *pubs;           /* publishes waiting for their answer, newest first */
    uint64_t pub_counts[GW_HUB_PUB_COUNT]; /* publishes answered, by outcome */
};

/* One publish iq in flight. */
struct gw_hub_publish {
    struct gw_hub *hub;                   /* its hub */
    struct gw_hub_publish *prev, *next;   /* the hub's publishes */
    char iq_id[IQ_ID_MAX];                /* the iq's id */
    char service[256];                    /* whom it went to: only it may answer */
    char node[512];                       /* the node, for the log */
    char item_id[GW_HUB_ITEM_ID_MAX + 1]; /* the id sent ("" none) */
    uint64_t deadline;                    /* uv_now() past which it is answered TIMEOUT */
    gw_hub_publish_fn fn;                 /* the asker */
    void *ud;                             /* its data */
};

static void connect_hub(struct gw_hub *hub);

static uint64_t now_ms(const struct gw_hub *hub)
{
    return uv_now(hub->ctx->loop);
}

/* ---- nodes ---- */

static struct hub_node *node_find(struct gw_hub *hub, const char *service, const char *name)
{
    for (struct hub_node *n = hub->nodes; n; n = n->next)
        if (strcasecmp(n->service, service) == 0 && strcmp(n->name, name) == 0)
            return n;
    return NULL;
}

static void node_free(struct hub_node *n)
{
    struct gw_hub *hub = n->hub;
    if (n->prev)
        n->prev->next = n->next;
    else
        hub->nodes = n->next;
    if (n->next)
        n->next->prev = n->prev;
    for (struct gw_hub_watch *w = n->watchers; w; w = w->next)
        w->node = NULL;
    gw_hub_ring_cleanup(&n->ring);
    free(n);
}

/* A final event to every watcher (detached first), then the node goes. */
static void node_end(struct hub_node *n, struct gw_hub_event *ev)
{
    struct gw_hub_watch *w = n->watchers;
    n->watchers = NULL;
    while (w) {
        struct gw_hub_watch *next = w->next;
        w->node = NULL;
        w->prev = w->next = NULL;
        if (ev)
            w->ops->event(w->ud, ev);
        w = next;
    }
    gw_hub_event_unref(ev);
    node_free(n);
}

static int send_iq(struct gw_hub *hub, struct hub_node *n, const char *type, const char *op,
                   const char *extra)
{
    char id[IQ_ID_MAX];
    snprintf(id, sizeof(id), "hub-%lu", ++hub->iq_seq);
    struct gw_buf b;
    gw_buf_init(&b, 4096);
    int rc = gw_buf_printf(&b, "<iq type='%s' id='%s' to='", type, id);
    rc = rc ? rc : gw_buf_append_xml_escaped(&b, n->service, strlen(n->service));
    rc = rc ? rc : gw_buf_printf(&b, "'><pubsub xmlns='" GW_NS_PUBSUB "'><%s node='", op);
    rc = rc ? rc : gw_buf_append_xml_escaped(&b, n->name, strlen(n->name));
    rc = rc ? rc : gw_buf_printf(&b, "'%s/></pubsub></iq>", extra);
    rc = rc ? rc : gw_session_send(hub->s, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    if (!rc)
        snprintf(n->iq_id, sizeof(n->iq_id), "%s", id);
    else
        GW_WARN(&hub->ctx->log, gw_session_id(hub->s), hub->bare, "hub: %s of %s/%s not sent: %s",
                op, n->service, n->name, gw_strerror(rc));
    return rc;
}

/* " jid='<bare JID>'": subscriptions are the bare JID's, so that every resource of the hub
 * account hears the node. */
static void jid_attr(const struct gw_hub *hub, char *out, size_t outlen)
{
    struct gw_buf b;
    gw_buf_init(&b, outlen - 1);
    int rc = gw_buf_append_str(&b, " jid='");
    rc = rc ? rc : gw_buf_append_xml_escaped(&b, hub->bare, strlen(hub->bare));
    rc = rc ? rc : gw_buf_append_str(&b, "'");
    snprintf(out, outlen, "%s", rc ? "" : gw_buf_ptr(&b));
    gw_buf_cleanup(&b);
}

static void node_subscribe(struct hub_node *n)
{
    struct gw_hub *hub = n->hub;
    char extra[EXTRA_MAX];
    jid_attr(hub, extra, sizeof(extra));
    n->state = NODE_SUBSCRIBING;
    if (send_iq(hub, n, "set", "subscribe", extra) == 0)
        GW_INFO(&hub->ctx->log, gw_session_id(hub->s), hub->bare, "hub: subscribing to %s/%s",
                n->service, n->name);
}

static void node_unsubscribe(struct hub_node *n)
{
    struct gw_hub *hub = n->hub;
    if (hub->up && n->state != NODE_WAITING && n->state != NODE_SUBSCRIBING) {
        char extra[EXTRA_MAX];
        jid_attr(hub, extra, sizeof(extra));
        if (send_iq(hub, n, "set", "unsubscribe", extra) == 0)
            GW_INFO(&hub->ctx->log, gw_session_id(hub->s), hub->bare,
                    "hub: unsubscribed from %s/%s (no viewer for %u s)", n->service, n->name,
                    hub->linger_ms / 1000);
    }
    node_free(n);
}

/* The cache is there: every watcher that has not replayed yet is told. A watcher may only
 * replay (or leave) inside ready(). */
static void node_ready(struct hub_node *n)
{
    n->state = NODE_READY;
    n->iq_id[0] = '\0';
    for (struct gw_hub_watch *w = n->watchers, *next; w; w = next) {
        next = w->next;
        if (!w->started)
            w->ops->ready(w->ud);
    }
}

static void node_publish(struct hub_node *n, struct gw_hub_event *ev)
{
    if (ev->kind == GW_HUB_DELETE) {
        GW_INFO(&n->hub->ctx->log, NULL, n->hub->bare, "hub: node %s/%s deleted", n->service,
                n->name);
        node_end(n, ev);
        return;
    }
    if (ev->kind == GW_HUB_ITEM)
        gw_hub_ring_push(&n->ring, ev);
    else
        gw_hub_ring_remove(&n->ring, ev->id);
    for (struct gw_hub_watch *w = n->watchers, *next; w; w = next) {
        next = w->next;
        if (w->started)
            w->ops->event(w->ud, ev);
    }
    gw_hub_event_unref(ev);
}

/* ---- publishes ---- */

/* The condition of an iq error ("item-not-found"), or "undefined-condition". */
static const char *iq_condition(const struct gw_xml_node *iq)
{
    const struct gw_xml_node *e = gw_xml_child(iq, GW_NS_CLIENT, "error");
    for (const struct gw_xml_node *c = e ? e->children : NULL; c; c = c->next)
        if (strcmp(c->ns, GW_NS_STANZAS) == 0 && strcmp(c->name, "text") != 0)
            return c->name;
    return "undefined-condition";
}

static void pub_unlink(struct gw_hub_publish *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        p->hub->pubs = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* Off the list before the asker hears: it may publish again from inside fn. res may point into p,
 * which goes after fn. */
static void pub_finish(struct gw_hub_publish *p, const struct gw_hub_pub_result *res)
{
    struct gw_hub *hub = p->hub;
    const char *sid = hub->s ? gw_session_id(hub->s) : NULL; /* none once the upstream is lost */
    pub_unlink(p);
    if (res->outcome == GW_HUB_PUB_OK)
        GW_INFO(&hub->ctx->log, sid, hub->bare, "hub: published %s to %s/%s", res->id, p->service,
                p->node);
    else
        GW_WARN(&hub->ctx->log, sid, hub->bare, "hub: publish to %s/%s: %s%s%s", p->service,
                p->node, gw_hub_pub_outcome_name(res->outcome), res->condition ? " " : "",
                res->condition ? res->condition : "");
    p->fn(p->ud, res);
    free(p);
}

/* The text of an iq error's <text/>, into out ("" when none). */
static void iq_error_text(const struct gw_xml_node *iq, char *out, size_t outlen)
{
    const struct gw_xml_node *e = gw_xml_child(iq, GW_NS_CLIENT, "error");
    const struct gw_xml_node *t = e ? gw_xml_child(e, GW_NS_STANZAS, "text") : NULL;
    size_t n = t ? t->text_len : 0;
    if (n >= outlen)
        n = 0; /* cut, it could end inside a character: none rather */
    if (n)
        memcpy(out, t->text, n);
    out[n] = '\0';
}

/* The answer to a publish iq (true), or not one (false). An answer from anyone but the service
 * the iq went to is dropped: iq ids are not secrets. */
static bool publish_answered(struct gw_hub *hub, const struct gw_xml_node *iq, const char *id,
                             const char *type)
{
    struct gw_hub_publish *p = hub->pubs;
    while (p && strcmp(p->iq_id, id) != 0)
        p = p->next;
    if (!p)
        return false;
    const char *from = gw_xml_attr(iq->attrs, iq->n_attrs, "from");
    if (!from || strcasecmp(from, p->service) != 0)
        return true;
    struct gw_hub_pub_result res = {.outcome = GW_HUB_PUB_OK, .id = p->item_id};
    char text[512];
    if (strcmp(type, "result") == 0) {
        const struct gw_xml_node *ps = gw_xml_child(iq, GW_NS_PUBSUB, "pubsub");
        const struct gw_xml_node *pub = ps ? gw_xml_child(ps, GW_NS_PUBSUB, "publish") : NULL;
        const struct gw_xml_node *item = pub ? gw_xml_child(pub, GW_NS_PUBSUB, "item") : NULL;
        const char *got = item ? gw_xml_attr(item->attrs, item->n_attrs, "id") : NULL;
        if (got && got[0] && strlen(got) <= GW_HUB_ITEM_ID_MAX)
            res.id = got;
    } else if (strcmp(type, "error") == 0) {
        iq_error_text(iq, text, sizeof(text));
        res = (struct gw_hub_pub_result){.outcome = GW_HUB_PUB_REFUSED,
                                         .condition = iq_condition(iq),
                                         .text = text[0] ? text : NULL};
    } else {
        return true;
    }
    pub_finish(p, &res);
    return true;
}

static void publishes_expire(struct gw_hub *hub, uint64_t now)
{
    const struct gw_hub_pub_result res = {.outcome = GW_HUB_PUB_TIMEOUT};
    for (struct gw_hub_publish *p = hub->pubs; p;) {
        if (now < p->deadline) {
            p = p->next;
            continue;
        }
        pub_finish(p, &res);
        p = hub->pubs; /* fn may have changed the list */
    }
}

/* ---- what the upstream sends ---- */

static void on_notification(void *ud, const char *service, const char *name,
                            struct gw_hub_event *ev)
{
    struct hub_node *n = node_find(ud, service, name);
    if (n && n->state != NODE_WAITING && n->state != NODE_SUBSCRIBING)
        node_publish(n, ev);
    else
        gw_hub_event_unref(ev);
}

/* The items result: the fetched items, then what arrived live meanwhile and is not among them. */
static void fetched(struct hub_node *n, const struct gw_xml_stanza *st)
{
    struct gw_hub *hub = n->hub;
    const struct gw_xml_node *ps = gw_xml_child(st->tree, GW_NS_PUBSUB, "pubsub");
    const struct gw_xml_node *items = ps ? gw_xml_child(ps, GW_NS_PUBSUB, "items") : NULL;
    struct gw_hub_ring ring;
    if (gw_hub_ring_init(&ring, hub->replay) != 0) {
        node_ready(n);
        return;
    }
    char now[32];
    gw_hub_now(now, sizeof(now));
    for (const struct gw_xml_node *c = items ? items->children : NULL; c; c = c->next) {
        struct gw_hub_event *ev = strcmp(c->name, "item") == 0
                                      ? gw_hub_event_item(n->service, n->name, c, st->bytes, now)
                                      : NULL;
        if (ev) {
            gw_hub_ring_push(&ring, ev);
            gw_hub_event_unref(ev);
        }
    }
    struct gw_hub_event *live[1000];
    unsigned k = gw_hub_ring_after(&n->ring, NULL, live, 1000);
    for (unsigned i = 0; i < k; i++)
        if (!gw_hub_ring_has(&ring, live[i]->id))
            gw_hub_ring_push(&ring, live[i]);
    gw_hub_ring_cleanup(&n->ring);
    n->ring = ring;
    GW_DEBUG(&hub->ctx->log, NULL, hub->bare, "hub: %s/%s: %u items cached", n->service, n->name,
             n->ring.n);
    node_ready(n);
}

static void on_iq(struct gw_hub *hub, const struct gw_xml_stanza *st)
{
    const struct gw_xml_node *iq = st->tree;
    const char *id = gw_xml_attr(iq->attrs, iq->n_attrs, "id");
    const char *type = gw_xml_attr(iq->attrs, iq->n_attrs, "type");
    struct hub_node *n = hub->nodes;
    while (n && (!id || !n->iq_id[0] || strcmp(n->iq_id, id) != 0))
        n = n->next;
    if (id && type && publish_answered(hub, iq, id, type))
        return;
    if (!n || !type)
        return;
    bool ok = strcmp(type, "result") == 0;
    if (n->state == NODE_SUBSCRIBING && !ok) {
        const char *cond = iq_condition(iq);
        GW_WARN(&hub->ctx->log, gw_session_id(hub->s), hub->bare,
                "hub: subscription to %s/%s refused: %s", n->service, n->name, cond);
        node_end(n, gw_hub_event_error(cond, "the node cannot be subscribed to"));
    } else if (n->state == NODE_SUBSCRIBING && hub->replay) {
        char extra[32];
        snprintf(extra, sizeof(extra), " max_items='%u'", hub->replay);
        n->state = NODE_FETCHING;
        if (send_iq(hub, n, "get", "items", extra) != 0)
            node_ready(n);
    } else if (n->state == NODE_SUBSCRIBING || (n->state == NODE_FETCHING && !ok)) {
        node_ready(n);
    } else if (n->state == NODE_FETCHING) {
        fetched(n, st);
    }
}

static bool want_tree(void *ud, const char *ns, const char *name)
{
    (void)ud;
    (void)ns;
    return strcmp(name, "message") == 0 || strcmp(name, "iq") == 0;
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_hub *hub = ud;
    char now[32];
    if (!st->tree)
        return;
    if (strcmp(st->name, "iq") == 0) {
        on_iq(hub, st);
    } else {
        gw_hub_now(now, sizeof(now));
        gw_hub_message_events(st, now, on_notification, hub);
    }
}

/* ---- the sink: the hub's side of its session ---- */

static void sink_ready(void *t, const struct gw_stream_info *info, const char *features, size_t len)
{
    struct gw_hub *hub = t;
    (void)info;
    (void)features;
    (void)len;
    hub->up = true;
    hub->backoff_ms = BACKOFF_MIN_MS;
    snprintf(hub->bare, sizeof(hub->bare), "%s", gw_session_jid(hub->s));
    hub->bare[strcspn(hub->bare, "/")] = '\0';
    GW_INFO(&hub->ctx->log, gw_session_id(hub->s), gw_session_jid(hub->s), "hub: online");
    /* Available, so that notifications to the bare JID reach this resource. */
    static const char presence[] = "<presence><priority>0</priority></presence>";
    if (gw_session_send(hub->s, presence, sizeof(presence) - 1) != 0)
        GW_WARN(&hub->ctx->log, gw_session_id(hub->s), hub->bare, "hub: presence not sent");
    for (struct hub_node *n = hub->nodes; n; n = n->next)
        if (n->state == NODE_WAITING)
            node_subscribe(n);
}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    struct gw_hub *hub = t;
    if (gw_xml_parse_document(hub->parser, bytes, len) != 0)
        GW_DEBUG(&hub->ctx->log, NULL, hub->bare, "hub: element not parsed: %s",
                 gw_xml_error_text(hub->parser));
    return 0;
}

static void sink_closed(void *t, const struct gw_close_reason *why)
{
    struct gw_hub *hub = t;
    (void)why;
    bool was_up = hub->up;
    hub->s = NULL;
    hub->up = false;
    const struct gw_hub_pub_result lost = {.outcome = GW_HUB_PUB_LOST};
    while (hub->pubs)
        pub_finish(hub->pubs, &lost);
    while (hub->nodes)
        node_end(hub->nodes, gw_hub_event_error("remote-server-not-found",
                                                "the live-updates hub lost its upstream"));
    if (hub->ctx->draining)
        return;
    hub->reconnect_at = now_ms(hub) + hub->backoff_ms;
    GW_WARN(&hub->ctx->log, NULL, hub->bare[0] ? hub->bare : NULL,
            "hub: upstream %s; logging in again in %u ms", was_up ? "lost" : "login failed",
            hub->backoff_ms);
    hub->backoff_ms = hub->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : hub->backoff_ms * 2;
}

static const struct gw_sink_ops sink_ops = {
    .stream_ready = sink_ready, .deliver = sink_deliver, .closed = sink_closed};

static void connect_hub(struct gw_hub *hub)
{
    struct gw_session_opts o = {.transport = GW_TRANSPORT_INTERNAL,
                                .sink = &sink_ops,
                                .t = hub,
                                .peer = "live-updates hub",
                                .auth = GW_SESSION_AUTH_GATEWAY,
                                .user = hub->user,
                                .password = hub->password};
    int err = 0;
    hub->reconnect_at = 0;
    hub->s = gw_session_new(hub->ctx, &o, &err);
    if (hub->s && (err = gw_session_start(hub->s, hub->domain, NULL)) != 0) {
        gw_session_end(hub->s, GW_COND_internal_server_error);
        hub->s = NULL;
    }
    if (!hub->s) {
        GW_WARN(&hub->ctx->log, NULL, NULL, "hub: cannot log in as %s@%s: %s", hub->user,
                hub->domain, gw_strerror(err));
        if (!hub->ctx->draining)
            hub->reconnect_at = now_ms(hub) + BACKOFF_MAX_MS;
    }
}

static void on_tick(uv_timer_t *t)
{
    struct gw_hub *hub = t->data;
    uint64_t now = now_ms(hub);
    for (struct hub_node *n = hub->nodes, *next; n; n = next) {
        next = n->next;
        if (!n->watchers && n->idle_since && now - n->idle_since >= hub->linger_ms)
            node_unsubscribe(n);
    }
    publishes_expire(hub, now);
    if (!hub->s && hub->reconnect_at && now >= hub->reconnect_at && !hub->ctx->draining)
        connect_hub(hub);
}

/* ---- the module ---- */

struct gw_hub *gw_hub_new(struct gw_ctx *ctx, char *err, size_t errlen)
{
    const struct gw_config *cfg = ctx->cfg;
    struct gw_hub *hub = calloc(1, sizeof(*hub));
    if (!hub) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    hub->ctx = ctx;
    const char *at = strchr(cfg->live_jid, '@');
    snprintf(hub->user, sizeof(hub->user), "%.*s", at ? (int)(at - cfg->live_jid) : 0,
             cfg->live_jid);
    snprintf(hub->domain, sizeof(hub->domain), "%s", at ? at + 1 : "");
    hub->replay = cfg->live_replay;
    hub->linger_ms = cfg->live_linger * 1000;
    hub->backoff_ms = BACKOFF_MIN_MS;
    struct gw_xml_opts xo = {.mode = GW_XML_DOCUMENT,
                             .limits = {cfg->max_stanza, cfg->max_depth, cfg->max_attrs},
                             .root_is_stanza = true};
    struct gw_xml_callbacks cb = {.want_tree = want_tree, .on_stanza = on_stanza};
    if (gw_config_live_password(cfg, hub->password, sizeof(hub->password), err, errlen) != 0 ||
        !(hub->parser = gw_xml_new(&xo, &cb, hub))) {
        if (!hub->parser && !err[0])
            snprintf(err, errlen, "out of memory");
        OPENSSL_cleanse(hub->password, sizeof(hub->password));
        gw_xml_free(hub->parser);
        free(hub);
        return NULL;
    }
    uv_timer_init(ctx->loop, &hub->tick);
    hub->tick.data = hub;
    uv_timer_start(&hub->tick, on_tick, TICK_MS, TICK_MS);
    GW_INFO(&ctx->log, NULL, NULL, "hub: live updates as %s for %u node pattern%s", cfg->live_jid,
            cfg->n_live_nodes, cfg->n_live_nodes == 1 ? "" : "s");
    connect_hub(hub);
    return hub;
}

static void free_after_close(uv_handle_t *h)
{
    free(h->data);
}

void gw_hub_free(struct gw_hub *hub)
{
    if (!hub)
        return;
    if (hub->s)
        gw_session_end(hub->s, GW_COND_NONE);
    hub->s = NULL;
    while (hub->nodes)
        node_free(hub->nodes);
    while (hub->pubs) {
        struct gw_hub_publish *p = hub->pubs; /* its asker is gone already */
        pub_unlink(p);
        free(p);
    }
    gw_xml_free(hub->parser);
    OPENSSL_cleanse(hub->password, sizeof(hub->password));
    uv_timer_stop(&hub->tick);
    uv_close((uv_handle_t *)&hub->tick, free_after_close);
}

int gw_hub_watch(struct gw_hub *hub, const char *service, const char *node, struct gw_hub_watch *w)
{
    if (!gw_hub_allowed(hub->ctx->cfg, service, node) || strlen(service) >= 256 ||
        strlen(node) >= 512)
        return GW_EINVAL;
    struct hub_node *n = node_find(hub, service, node);
    if (!n) {
        n = calloc(1, sizeof(*n));
        if (!n || gw_hub_ring_init(&n->ring, hub->replay) != 0) {
            free(n);
            return GW_ENOMEM;
        }
        n->hub = hub;
        snprintf(n->service, sizeof(n->service), "%s", service);
        snprintf(n->name, sizeof(n->name), "%s", node);
        n->next = hub->nodes;
        if (hub->nodes)
            hub->nodes->prev = n;
        hub->nodes = n;
        if (hub->up)
            node_subscribe(n);
    }
    w->node = n;
    w->started = false;
    w->prev = NULL;
    w->next = n->watchers;
    if (n->watchers)
        n->watchers->prev = w;
    n->watchers = w;
    n->idle_since = 0;
    return n->state == NODE_READY ? 1 : 0;
}

unsigned gw_hub_replay(struct gw_hub_watch *w, const char *last_id, bool cache,
                       struct gw_hub_event **out, unsigned max)
{
    struct hub_node *n = w->node;
    if (!n)
        return 0;
    w->started = true;
    if (!cache && !last_id)
        return 0;
    return gw_hub_ring_after(&n->ring, last_id, out, max);
}

void gw_hub_unwatch(struct gw_hub_watch *w)
{
    struct hub_node *n = w->node;
    if (!n)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        n->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->node = NULL;
    w->prev = w->next = NULL;
    if (!n->watchers)
        n->idle_since = now_ms(n->hub) ? now_ms(n->hub) : 1;
}

bool gw_hub_up(const struct gw_hub *hub)
{
    return hub && hub->up;
}

/* ---- publishing ---- */

/* <iq type='set' id to><pubsub><publish node><item id?>payload</item></publish></pubsub></iq> */
static int publish_iq(const struct gw_hub_item *it, const char *iq_id, struct gw_buf *b)
{
    int rc = gw_buf_printf(b, "<iq type='set' id='%s' to='", iq_id);
    rc = rc ? rc : gw_buf_append_xml_escaped(b, it->service, strlen(it->service));
    rc = rc ? rc : gw_buf_append_str(b, "'><pubsub xmlns='" GW_NS_PUBSUB "'><publish node='");
    rc = rc ? rc : gw_buf_append_xml_escaped(b, it->node, strlen(it->node));
    rc = rc ? rc : gw_buf_append_str(b, it->id[0] ? "'><item id='" : "'><item");
    rc = rc ? rc : gw_buf_append_xml_escaped(b, it->id, strlen(it->id));
    rc = rc ? rc : gw_buf_append_str(b, it->id[0] ? "'>" : ">");
    rc = rc ? rc : gw_buf_append(b, gw_buf_ptr(&it->payload), gw_buf_size(&it->payload));
    return rc ? rc : gw_buf_append_str(b, "</item></publish></pubsub></iq>");
}

int gw_hub_publish(struct gw_hub *hub, const struct gw_hub_item *it, gw_hub_publish_fn fn, void *ud,
                   struct gw_hub_publish **out)
{
    if (!hub || !hub->up || !hub->s)
        return GW_ECLOSED;
    struct gw_hub_publish *p = calloc(1, sizeof(*p));
    if (!p)
        return GW_ENOMEM;
    p->hub = hub;
    p->fn = fn;
    p->ud = ud;
    snprintf(p->iq_id, sizeof(p->iq_id), "hub-%lu", ++hub->iq_seq);
    snprintf(p->service, sizeof(p->service), "%s", it->service);
    snprintf(p->node, sizeof(p->node), "%s", it->node);
    snprintf(p->item_id, sizeof(p->item_id), "%s", it->id);
    /* Every escaped character takes at most six bytes ("&quot;"). */
    size_t max = gw_buf_size(&it->payload) +
                 6 * (strlen(it->service) + strlen(it->node) + strlen(it->id)) + 256;
    struct gw_buf b;
    gw_buf_init(&b, max);
    int rc = publish_iq(it, p->iq_id, &b);
    rc = rc ? rc : gw_session_send(hub->s, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    if (rc) {
        GW_WARN(&hub->ctx->log, gw_session_id(hub->s), hub->bare, "hub: publish to %s/%s: %s",
                it->service, it->node, gw_strerror(rc));
        free(p);
        return rc == GW_ELIMIT ? GW_ENOMEM : rc;
    }
    p->deadline = now_ms(hub) + GW_HUB_PUBLISH_TIMEOUT_MS;
    p->next = hub->pubs;
    if (hub->pubs)
        hub->pubs->prev = p;
    hub->pubs = p;
    GW_DEBUG(&hub->ctx->log, gw_session_id(hub->s), hub->bare, "hub: publishing %s to %s/%s",
             it->id[0] ? it->id : "(id from the service)", it->service, it->node);
    *out = p;
    return 0;
}

void gw_hub_publish_cancel(struct gw_hub_publish *p)
{
    if (!p)
        return;
    pub_unlink(p);
    free(p);
}

void gw_hub_pub_answer(struct gw_hub *hub, const struct gw_hub_pub_result *res,
                       struct gw_hub_answer *out)
{
    gw_hub_pub_answer_of(res, out);
    if (hub && res->outcome >= 0 && res->outcome < GW_HUB_PUB_COUNT)
        hub->pub_counts[res->outcome]++;
}

uint64_t gw_hub_pub_count(const struct gw_hub *hub, enum gw_hub_pub_outcome o)
{
    return hub && o >= 0 && o < GW_HUB_PUB_COUNT ? hub->pub_counts[o] : 0;
}
