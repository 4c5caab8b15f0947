/* Server-Sent Events on libwebsockets: the "xmppgw-sse" protocol at /events/. A GET for a node in
 * live.nodes becomes a viewer: the stream's headers at once, then the hub's replay and live events,
 * a ": hb" comment every live.heartbeat seconds. A viewer is its socket, a watch on the hub's node
 * (the cursor into its ring is the replay the hub hands over) and a bounded queue of shared event
 * references: events are serialized once by the hub, never per viewer. A viewer whose queue
 * passes limits.send_queue bytes is disconnected (it reconnects with its last id). Writes happen
 * at once while lws holds nothing back for the socket, else in HTTP_WRITEABLE (flush_now). One
 * client address may hold at most limits.per_address_sessions streams at once (counted apart from
 * its XMPP sessions); past it, 429 with a JSON error. Owns: struct viewer, struct addr_viewers.
 * Calls: session/hub, web helpers (http.c), config, core, lws. */
#include "web/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/log.h"
#include "core/strmap.h"
#include "session/hub.h"
#include "session/session.h"
#include "web/web.h"

#define WRITE_MAX 16384        /* bytes written per WRITEABLE callback */
#define QUEUE_MIN 16           /* first queue allocation, in events */
#define QUEUE_MAX_EVENTS 65536 /* a queue never holds more events than this */
#define REPLAY_MAX 1000        /* live.replay's bound */
#define ID_MAX 256             /* a Last-Event-ID kept */
#define URI_MAX 1024           /* the request path */
#define HEARTBEAT ": hb\n\n"   /* an SSE comment */
#define CT_JSON "application/json"

/* The streams open from one client address. */
struct addr_viewers {
    struct gw_strmap_node by_addr; /* in gw_sse.by_addr */
    char addr[64];                 /* the client address (gw_web_peer) */
    unsigned n;                    /* its streams open; the entry goes with the last */
};

/* One event stream. */
struct viewer {
    struct gw_sse *sse;           /* the transport */
    struct lws *wsi;              /* its connection */
    struct pss *pss;              /* the connection's user data pointing here */
    struct viewer *prev, *next;   /* the transport's viewers */
    struct gw_hub_watch watch;    /* on the hub's node */
    char last_id[ID_MAX];         /* Last-Event-ID or ?last_event_id= */
    bool has_last;                /* last_id was given */
    bool cache;                   /* replay the cache without an id (not ?replay=0) */
    struct gw_hub_event **q;      /* queued events, circular */
    unsigned qcap, qhead, qn;     /* slots, oldest slot, events queued */
    size_t qbytes;                /* bytes queued (all of the head event counted) */
    size_t qoff;                  /* bytes of the head event already written */
    bool hb_due;                  /* a heartbeat is due if nothing else goes */
    bool asked;                   /* a WRITEABLE callback is asked for */
    struct viewer *dprev, *dnext; /* in gw_sse.dirty while it has events not yet written */
    bool dirty;                   /* on that list */
    bool ended;                   /* the final event went: close when lws has flushed it */
    bool slow;                    /* disconnected for its queue */
    char peer[64];                /* client address */
    struct addr_viewers *from;    /* that address's count */
};

/* lws's per-connection user data. */
struct pss {
    struct viewer *v; /* the stream on this connection, NULL before and after */
};

struct gw_sse {
    struct gw_ctx *ctx;                         /* the gateway */
    struct gw_hub *hub;                         /* the hub; NULL when live is not configured */
    struct viewer *viewers;                     /* every open stream */
    unsigned n_viewers;                         /* their number (live.max_viewers) */
    struct gw_strmap by_addr;                   /* struct addr_viewers by client address */
    uv_timer_t hb;                              /* the heartbeat */
    bool hb_open;                               /* hb is initialised */
    struct viewer *dirty;                       /* viewers with new events, written in flush */
    uv_check_t flush;                           /* after this loop turn's I/O: write them */
    bool flush_open;                            /* flush is initialised */
    unsigned char scratch[LWS_PRE + WRITE_MAX]; /* what one WRITEABLE writes */
};

/* ---- the queue ---- */

static void queue_clear(struct viewer *v)
{
    for (unsigned i = 0; i < v->qn; i++)
        gw_hub_event_unref(v->q[(v->qhead + i) % v->qcap]);
    free(v->q);
    v->q = NULL;
    v->qcap = v->qhead = v->qn = 0;
    v->qbytes = v->qoff = 0;
}

static bool queue_grow(struct viewer *v)
{
    unsigned cap = v->qcap ? v->qcap * 2 : QUEUE_MIN;
    if (cap > QUEUE_MAX_EVENTS)
        return false;
    struct gw_hub_event **q = malloc(cap * sizeof(*q));
    if (!q)
        return false;
    for (unsigned i = 0; i < v->qn; i++)
        q[i] = v->q[(v->qhead + i) % v->qcap];
    free(v->q);
    v->q = q;
    v->qcap = cap;
    v->qhead = 0;
    return true;
}

static void queue_pop(struct viewer *v)
{
    struct gw_hub_event *ev = v->q[v->qhead];
    v->qbytes -= ev->len;
    v->qhead = (v->qhead + 1) % v->qcap;
    v->qn--;
    v->qoff = 0;
    gw_hub_event_unref(ev);
}

/* Too slow for the stream: off the hub at once, the connection closed by lws. */
static void disconnect_slow(struct viewer *v)
{
    if (v->slow)
        return;
    v->slow = true;
    gw_hub_unwatch(&v->watch);
    GW_INFO(&v->sse->ctx->log, NULL, NULL,
            "events: viewer %s disconnected: %zu bytes queued (limits.send_queue)", v->peer,
            v->qbytes);
    lws_set_timeout(v->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}

static void queue_push(struct viewer *v, struct gw_hub_event *ev)
{
    if (v->slow || v->ended)
        return;
    if (v->qn == v->qcap && !queue_grow(v)) {
        disconnect_slow(v);
        return;
    }
    v->q[(v->qhead + v->qn) % v->qcap] = gw_hub_event_ref(ev);
    v->qn++;
    v->qbytes += ev->len;
    if (gw_queue_over(v->qbytes, v->sse->ctx->cfg->send_queue))
        disconnect_slow(v);
}

/* ---- what the hub tells a viewer ---- */

static void flush_now(struct viewer *v);
static void on_flush(uv_check_t *h);

static void replay(struct viewer *v)
{
    struct gw_hub_event *ev[REPLAY_MAX];
    unsigned n =
        gw_hub_replay(&v->watch, v->has_last ? v->last_id : NULL, v->cache, ev, REPLAY_MAX);
    for (unsigned i = 0; i < n; i++)
        queue_push(v, ev[i]);
    flush_now(v);
}

static void on_ready(void *ud)
{
    replay(ud);
}

/* Events of one loop turn (several items in one upstream read) leave in one write per viewer:
 * the viewer is written after the turn's I/O callbacks (on_flush). */
static void mark_dirty(struct viewer *v)
{
    struct gw_sse *sse = v->sse;
    if (v->dirty || !sse->flush_open)
        return;
    if (!sse->dirty)
        uv_check_start(&sse->flush, on_flush);
    v->dirty = true;
    v->dprev = NULL;
    v->dnext = sse->dirty;
    if (sse->dirty)
        sse->dirty->dprev = v;
    sse->dirty = v;
}

static void unmark_dirty(struct viewer *v)
{
    if (!v->dirty)
        return;
    v->dirty = false;
    if (v->dprev)
        v->dprev->dnext = v->dnext;
    else
        v->sse->dirty = v->dnext;
    if (v->dnext)
        v->dnext->dprev = v->dprev;
    v->dprev = v->dnext = NULL;
}

static void on_flush(uv_check_t *h)
{
    struct gw_sse *sse = h->data;
    while (sse->dirty) {
        struct viewer *v = sse->dirty;
        unmark_dirty(v);
        flush_now(v);
    }
    uv_check_stop(h);
}

static void on_event(void *ud, struct gw_hub_event *ev)
{
    struct viewer *v = ud;
    queue_push(v, ev);
    if (v->sse->flush_open)
        mark_dirty(v);
    else
        flush_now(v);
}

static const struct gw_hub_watch_ops watch_ops = {.ready = on_ready, .event = on_event};

/* ---- streams per client address ---- */

static struct addr_viewers *addr_get(struct gw_sse *sse, const char *addr)
{
    struct gw_strmap_node *n = gw_strmap_find(&sse->by_addr, addr);
    if (n)
        return GW_CONTAINER_OF(n, struct addr_viewers, by_addr);
    struct addr_viewers *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    snprintf(a->addr, sizeof(a->addr), "%s", addr);
    gw_strmap_add(&sse->by_addr, &a->by_addr, a->addr);
    return a;
}

/* An entry with no stream open is forgotten. */
static void addr_release(struct gw_sse *sse, struct addr_viewers *a)
{
    if (a && a->n == 0) {
        gw_strmap_del(&sse->by_addr, &a->by_addr);
        free(a);
    }
}

/* ---- requests ---- */

static int error_json(struct lws *wsi, unsigned status, const char *cors, const char *condition,
                      const char *text)
{
    char body[512];
    int n =
        snprintf(body, sizeof(body), "{\"error\":\"%s\",\"condition\":\"%s\"}\n", text, condition);
    return gw_web_respond(wsi, status, CT_JSON, cors, body, (size_t)n);
}

/* "/events/<service>/<node>" into service and node; false when it is not that shape. */
static bool split_path(const char *uri, char *service, size_t slen, char *node, size_t nlen)
{
    size_t pl = strlen(GW_SSE_PATH);
    if (strncmp(uri, GW_SSE_PATH "/", pl + 1) != 0)
        return false;
    const char *s = uri + pl + 1, *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || (size_t)(slash - s) >= slen ||
        strlen(slash + 1) >= nlen)
        return false;
    snprintf(service, slen, "%.*s", (int)(slash - s), s);
    snprintf(node, nlen, "%s", slash + 1);
    return true;
}

/* The stream's headers: 200, text/event-stream, no length (the stream ends with the connection). */
static int stream_headers(struct lws *wsi, const char *origin)
{
    unsigned char hdr[LWS_PRE + 2048];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/event-stream",
                                    LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-accel-buffering:",
                                    (const unsigned char *)"no", 2, &p, end))
        return -1;
    if (origin[0] &&
        (lws_add_http_header_by_name(wsi, (const unsigned char *)"access-control-allow-origin:",
                                     (const unsigned char *)origin, (int)strlen(origin), &p, end) ||
         lws_add_http_header_by_name(
             wsi, (const unsigned char *)"vary:", (const unsigned char *)"Origin", 6, &p, end)))
        return -1;
    return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

/* Where the viewer's replay starts: Last-Event-ID, else ?last_event_id=; ?replay=0. */
static void read_cursor(struct lws *wsi, struct viewer *v)
{
    char arg[ID_MAX + 32];
    int n = lws_hdr_custom_copy(wsi, v->last_id, sizeof(v->last_id), "last-event-id:", 14);
    v->has_last = n > 0;
    const char *q = lws_get_urlarg_by_name(wsi, "last_event_id=", arg, sizeof(arg));
    if (!v->has_last && q && *q) {
        snprintf(v->last_id, sizeof(v->last_id), "%s", q);
        v->has_last = true;
    }
    q = lws_get_urlarg_by_name(wsi, "replay=", arg, sizeof(arg));
    v->cache = !(q && strcmp(q, "0") == 0);
}

static int open_viewer(struct lws *wsi, struct pss *pss, struct addr_viewers *from,
                       const char *service, const char *node, const char *origin)
{
    struct gw_sse *sse = gw_web_transport(wsi);
    struct viewer *v = calloc(1, sizeof(*v));
    if (!v) {
        addr_release(sse, from);
        return error_json(wsi, 503, NULL, "resource-constraint", "out of memory");
    }
    v->sse = sse;
    v->wsi = wsi;
    v->pss = pss;
    v->watch.ops = &watch_ops;
    v->watch.ud = v;
    snprintf(v->peer, sizeof(v->peer), "%s", from->addr);
    read_cursor(wsi, v);
    int rc = gw_hub_watch(sse->hub, service, node, &v->watch);
    if (rc < 0 || stream_headers(wsi, origin) != 0) {
        gw_hub_unwatch(&v->watch);
        free(v);
        addr_release(sse, from);
        return rc < 0 ? error_json(wsi, 503, NULL, "resource-constraint", "out of memory") : -1;
    }
    v->from = from;
    from->n++;
    pss->v = v;
    v->next = sse->viewers;
    if (sse->viewers)
        sse->viewers->prev = v;
    sse->viewers = v;
    sse->n_viewers++;
    sse->ctx->metrics.sse_viewers++;
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0); /* a stream has no end of its own */
    /* Everything the stream needs from the request is copied: its header table (about 4 KiB)
     * goes back to lws for the life of the stream. */
    lws_http_headers_detach(wsi);
    GW_DEBUG(&sse->ctx->log, NULL, NULL, "events: viewer %s of %s/%s (%u open)", v->peer, service,
             node, sse->n_viewers);
    if (rc == 1)
        replay(v);
    return 0;
}

/* limits.per_address_sessions holds each client address's streams: 429 past it. */
static int admit_viewer(struct lws *wsi, struct pss *pss, const char *service, const char *node,
                        const char *origin, const char *cors)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    struct gw_sse *sse = gw_web_transport(wsi);
    char peer[64], hdrs[800];
    gw_web_peer(wsi, peer, sizeof(peer));
    struct addr_viewers *a = addr_get(sse, peer);
    if (!a)
        return error_json(wsi, 503, cors, "resource-constraint", "out of memory");
    if (a->n >= ctx->cfg->per_address_sessions) {
        ctx->metrics.refused[GW_LIMIT_ADDR_VIEWERS]++;
        GW_INFO(&ctx->log, NULL, NULL,
                "events: viewer from %s refused: limit address_viewers (%u streams open, "
                "limits.per_address_sessions)",
                peer, a->n);
        snprintf(hdrs, sizeof(hdrs), "%sRetry-After: 1\r\n", cors);
        return error_json(wsi, 429, hdrs, "policy-violation",
                          "too many event streams from this address");
    }
    return open_viewer(wsi, pss, a, service, node, origin);
}

static int on_http(struct lws *wsi, struct pss *pss)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    struct gw_sse *sse = gw_web_transport(wsi);
    char uri[URI_MAX], origin[512], cors[768], service[256], node[512];
    ctx->metrics.http_requests++;
    if (gw_web_header(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)) < 0) {
        gw_web_respond(wsi, 405, "text/plain", "Allow: GET\r\nConnection: close\r\n", "GET only\n",
                       9);
        return -1;
    }
    if (!gw_web_origin_allowed(wsi, origin, sizeof(origin)))
        return error_json(wsi, 403, NULL, "forbidden", "origin not allowed");
    gw_web_cors_headers(origin, cors, sizeof(cors));
    if (!sse || !sse->hub)
        return error_json(wsi, 503, cors, "service-unavailable", "live updates are not configured");
    if (!split_path(gw_web_unprefixed(ctx->cfg, uri), service, sizeof(service), node,
                    sizeof(node)) ||
        !gw_hub_allowed(ctx->cfg, service, node))
        return error_json(wsi, 404, cors, "item-not-found", "no such node");
    if (sse->n_viewers >= ctx->cfg->live_max_viewers) {
        GW_INFO(&ctx->log, NULL, NULL, "events: viewer refused: live.max_viewers (%u) reached",
                ctx->cfg->live_max_viewers);
        return error_json(wsi, 503, cors, "resource-constraint", "too many viewers");
    }
    return admit_viewer(wsi, pss, service, node, origin, cors);
}

/* Up to WRITE_MAX bytes of the queue (or a due heartbeat) in one lws_write. -1: the write failed;
 * else the bytes written. */
static int write_queued(struct viewer *v)
{
    unsigned char *start = v->sse->scratch + LWS_PRE;
    size_t n = 0;
    while (v->qn && n < WRITE_MAX && !v->ended) {
        struct gw_hub_event *ev = v->q[v->qhead];
        size_t take = ev->len - v->qoff < WRITE_MAX - n ? ev->len - v->qoff : WRITE_MAX - n;
        memcpy(start + n, ev->bytes + v->qoff, take);
        n += take;
        v->qoff += take;
        if (v->qoff == ev->len) {
            v->ended = ev->final;
            queue_pop(v);
        }
    }
    if (!n && v->hb_due) {
        memcpy(start, HEARTBEAT, sizeof(HEARTBEAT) - 1);
        n = sizeof(HEARTBEAT) - 1;
    }
    v->hb_due = false;
    if (n && lws_write(v->wsi, start, n, LWS_WRITE_HTTP) < (int)n)
        return -1;
    return (int)n;
}

static void ask_writeable(struct viewer *v)
{
    if (!v->asked) {
        v->asked = true;
        lws_callback_on_writable(v->wsi);
    }
}

/* Something to send: write it now unless lws still holds part of an earlier write (then the socket
 * is full, and WRITEABLE comes when it drains). On lws's libuv loop every WRITEABLE round costs
 * four epoll_ctl calls (POLLOUT on, then off); a write now costs one send(). lws keeps what the
 * socket did not take and asks for POLLOUT itself. The final event closes in a callback. */
static void flush_now(struct viewer *v)
{
    if (v->asked || v->slow)
        return;
    if (lws_partial_buffered(v->wsi)) {
        ask_writeable(v);
        return;
    }
    if (write_queued(v) < 0) {
        lws_set_timeout(v->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return;
    }
    if (v->qn || v->ended)
        ask_writeable(v);
}

static int on_writeable(struct lws *wsi, struct viewer *v)
{
    (void)wsi;
    v->asked = false;
    if (v->slow)
        return -1;
    int n = write_queued(v);
    if (n < 0)
        return -1;
    if (!n)
        return v->ended ? -1 : 0;
    if (v->qn || v->ended)
        ask_writeable(v);
    return 0;
}

/* The connection is gone: the viewer goes at once. */
static void on_gone(struct gw_sse *sse, struct pss *pss)
{
    struct viewer *v = pss->v;
    if (!v)
        return;
    pss->v = NULL;
    unmark_dirty(v);
    gw_hub_unwatch(&v->watch);
    queue_clear(v);
    if (v->prev)
        v->prev->next = v->next;
    else
        sse->viewers = v->next;
    if (v->next)
        v->next->prev = v->prev;
    sse->n_viewers--;
    sse->ctx->metrics.sse_viewers--;
    v->from->n--;
    addr_release(sse, v->from);
    GW_DEBUG(&sse->ctx->log, NULL, NULL, "events: viewer %s gone (%u open)", v->peer,
             sse->n_viewers);
    free(v);
}

int gw_sse_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *pss = user;
    struct gw_sse *sse = gw_web_transport(wsi);
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return pss ? on_http(wsi, pss) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss && pss->v ? on_writeable(wsi, pss->v) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && sse)
            on_gone(sse, pss);
        return 0;
    default:
        return 0;
    }
}

size_t gw_sse_pss_size(void)
{
    return sizeof(struct pss);
}

/* ---- the module ---- */

static void on_heartbeat(uv_timer_t *t)
{
    struct gw_sse *sse = t->data;
    for (struct viewer *v = sse->viewers; v; v = v->next) {
        v->hb_due = true;
        flush_now(v);
    }
}

struct gw_sse *gw_sse_new(struct gw_ctx *ctx, struct gw_hub *hub)
{
    struct gw_sse *sse = calloc(1, sizeof(*sse));
    if (!sse)
        return NULL;
    sse->ctx = ctx;
    sse->hub = hub;
    if (gw_strmap_init(&sse->by_addr) != 0) {
        free(sse);
        return NULL;
    }
    if (hub) {
        uint64_t every = (uint64_t)ctx->cfg->live_heartbeat * 1000;
        uv_timer_init(ctx->loop, &sse->hb);
        sse->hb.data = sse;
        uv_timer_start(&sse->hb, on_heartbeat, every, every);
        sse->hb_open = true;
        uv_check_init(ctx->loop, &sse->flush);
        sse->flush.data = sse;
        sse->flush_open = true;
    }
    return sse;
}

/* The two handles close apart: the last one frees the transport. */
static void free_after_close(uv_handle_t *h)
{
    struct gw_sse *sse = h->data;
    if (h == (uv_handle_t *)&sse->hb)
        sse->hb_open = false;
    else
        sse->flush_open = false;
    if (!sse->hb_open && !sse->flush_open)
        free(sse);
}

void gw_sse_free(struct gw_sse *sse)
{
    if (!sse)
        return;
    while (sse->viewers) {
        struct pss pss = {.v = sse->viewers};
        on_gone(sse, &pss);
    }
    gw_strmap_cleanup(&sse->by_addr);
    if (!sse->hb_open) {
        free(sse);
        return;
    }
    uv_timer_stop(&sse->hb);
    uv_close((uv_handle_t *)&sse->hb, free_after_close);
    uv_check_stop(&sse->flush);
    uv_close((uv_handle_t *)&sse->flush, free_after_close);
}
