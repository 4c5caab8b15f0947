/* The demo's publish endpoint: the "xmppgw-demo" lws protocol that server.c mounts at
 * GW_DEMO_PATH, with the struct gw_demo as its user pointer. When live.demo_publish is on, a POST
 * of Content-Type application/json with a body of at most GW_DEMO_BODY_MAX bytes,
 * {"node": "<service>/<node>", "title", "summary"?, "link"?} (read by gw_hub_item_parse), for a
 * node live.nodes allows, is published through the hub's account and answered as the admin port's
 * /api/publish answers (gw_hub_pub_answer: 200 {"id"}, else {"error","condition"}). Origins as
 * `origins` says (CORS, preflight); each client address spends one token of a bucket filled at
 * limits.per_address_rate up to limits.per_address_burst per request (429 past it). JSON errors,
 * Cache-Control: no-store (gw_web_respond). The request waits for the service's answer; a browser
 * that goes away cancels the publish.
 * Owns: struct dreq (one request), struct bucket (one client address's tokens). Calls: session/hub,
 * web helpers (http.c), config, core, jansson, lws. */
#include "web/demo.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/log.h"
#include "core/strmap.h"
#include "session/hub.h"
#include "web/web.h"

#define CT_JSON "application/json"
#define CORS_MAX 768    /* CORS header lines */
#define WAIT_S 30       /* beyond GW_HUB_PUBLISH_TIMEOUT_MS before lws gives up the request */
#define DRAIN_MAX 65536 /* a refused body up to this is read and dropped before the answer */

/* One client address's tokens: one per request. Freed once full again. */
struct bucket {
    struct gw_strmap_node by_addr; /* in gw_demo.by_addr */
    struct bucket *prev, *next;    /* gw_demo's buckets, least recently used first */
    double tokens;                 /* requests it may make now */
    uint64_t refill_ms;            /* when tokens was last brought up to date */
    char addr[64];                 /* the client address (gw_web_peer) */
};

struct gw_demo {
    struct gw_ctx *ctx;          /* the gateway */
    struct gw_hub *hub;          /* the hub; NULL when live is not configured */
    struct gw_strmap by_addr;    /* struct bucket by client address */
    struct bucket *lru, *recent; /* least and most recently used bucket */
};

/* One request, from its headers to its answer. */
struct dreq {
    struct gw_web_call call;         /* first: the request as web/http.c reads and answers it */
    struct gw_hub_publish *pub;      /* the publish under way; NULL before and once told */
    char body[GW_DEMO_BODY_MAX + 1]; /* the body */
    struct gw_hub_answer ans;        /* the answer; status 0: none yet */
    char cors[CORS_MAX];             /* CORS header lines for an allowed origin */
    char peer[64];                   /* client address */
};

_Static_assert(CORS_MAX + 64 <= GW_WEB_CALL_EXTRA, "CORS, Allow and Retry-After fit");

/* ---- per-address tokens ---- */

static void bucket_unlink(struct gw_demo *d, struct bucket *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        d->lru = b->next;
    if (b->next)
        b->next->prev = b->prev;
    else
        d->recent = b->prev;
    b->prev = b->next = NULL;
}

static void bucket_append(struct gw_demo *d, struct bucket *b)
{
    b->prev = d->recent;
    b->next = NULL;
    if (d->recent)
        d->recent->next = b;
    else
        d->lru = b;
    d->recent = b;
}

static void bucket_refill(const struct gw_config *cfg, struct bucket *b, uint64_t now)
{
    double t = b->tokens + (double)(now - b->refill_ms) / 1000.0 * cfg->per_address_rate;
    b->tokens = t > cfg->per_address_burst ? cfg->per_address_burst : t;
    b->refill_ms = now;
}

/* Buckets full again are forgotten, least recently used first (a full one is a new one). */
static void forget_full(struct gw_demo *d, uint64_t now)
{
    const struct gw_config *cfg = d->ctx->cfg;
    while (d->lru) {
        struct bucket *b = d->lru;
        bucket_refill(cfg, b, now);
        if (b->tokens < cfg->per_address_burst)
            return;
        bucket_unlink(d, b);
        gw_strmap_del(&d->by_addr, &b->by_addr);
        free(b);
    }
}

/* May addr make one more request now? GW_ELIMIT (counted), GW_ENOMEM, or 0 (a token spent). */
static int take_token(struct gw_demo *d, const char *addr)
{
    uint64_t now = uv_now(d->ctx->loop);
    forget_full(d, now);
    struct gw_strmap_node *n = gw_strmap_find(&d->by_addr, addr);
    struct bucket *b = n ? GW_CONTAINER_OF(n, struct bucket, by_addr) : NULL;
    if (b) {
        bucket_unlink(d, b);
        bucket_refill(d->ctx->cfg, b, now);
    } else {
        if (!(b = calloc(1, sizeof(*b))))
            return GW_ENOMEM;
        snprintf(b->addr, sizeof(b->addr), "%s", addr);
        b->tokens = d->ctx->cfg->per_address_burst;
        b->refill_ms = now;
        gw_strmap_add(&d->by_addr, &b->by_addr, b->addr);
    }
    bucket_append(d, b);
    if (b->tokens < 1.0) {
        d->ctx->metrics.refused[GW_LIMIT_ADDR_RATE]++;
        return GW_ELIMIT;
    }
    b->tokens -= 1.0;
    return 0;
}

/* ---- answers ---- */

static void set_error(struct gw_hub_answer *ans, unsigned status, const char *condition,
                      const char *text)
{
    json_t *o = json_pack("{s:s, s:s}", "error", text, "condition", condition);
    size_t n = o ? json_dumpb(o, ans->body, sizeof(ans->body) - 1, JSON_COMPACT) : 0;
    json_decref(o);
    if (n == 0 || n >= sizeof(ans->body) - 1)
        n = (size_t)snprintf(
            ans->body, sizeof(ans->body),
            "{\"error\":\"out of memory\",\"condition\":\"internal-server-error\"}");
    ans->body[n] = '\n';
    ans->len = n + 1;
    ans->status = status;
    ans->allow = NULL;
}

/* A refusal in the callback, before any body is read: with close, the connection goes after it
 * (the body that follows is never read). */
static int refuse(struct lws *wsi, unsigned status, const char *extra, const char *condition,
                  const char *text, bool close)
{
    struct gw_hub_answer ans;
    char hdrs[CORS_MAX + 96];
    set_error(&ans, status, condition, text);
    snprintf(hdrs, sizeof(hdrs), "%s%s", extra ? extra : "", close ? "Connection: close\r\n" : "");
    int rc = gw_web_respond(wsi, status, CT_JSON, hdrs, ans.body, ans.len);
    return close ? -1 : rc;
}

/* The answer is ready: written when the connection can take it. */
static void ready(struct dreq *q)
{
    if (q->call.status) /* answered already */
        return;
    char *extra = q->call.extra;
    size_t used = strlen(extra);
    if (q->ans.allow)
        snprintf(extra + used, sizeof(q->call.extra) - used, "Allow: %s\r\n", q->ans.allow);
    gw_web_call_ready(&q->call, q->ans.status, q->ans.body, q->ans.len);
}

static void on_published(void *ud, const struct gw_hub_pub_result *res)
{
    struct dreq *q = ud;
    struct gw_demo *d = gw_web_transport(q->call.wsi);
    q->pub = NULL;
    gw_hub_pub_answer(d->hub, res, &q->ans);
    GW_INFO(&d->ctx->log, NULL, NULL, "demo: publish from %s: %u %s", q->peer, q->ans.status,
            gw_hub_pub_outcome_name(res->outcome));
    ready(q);
}

/* ---- requests ---- */

/* Read the item and hand it to the hub; q->ans is set unless the hub's answer is awaited. */
static void start_publish(struct gw_demo *d, struct dreq *q)
{
    const struct gw_config *cfg = d->ctx->cfg;
    const struct gw_xml_limits lim = {cfg->max_stanza, cfg->max_depth, cfg->max_attrs};
    struct gw_hub_item it;
    char why[256], now[32];
    gw_hub_now(now, sizeof(now));
    int rc =
        gw_hub_item_parse(&it, GW_HUB_BODY_DEMO, q->body, q->call.got, &lim, now, why, sizeof(why));
    struct gw_hub_pub_result res = {.outcome = GW_HUB_PUB_INVALID, .text = why};
    if (rc == 0 && !gw_hub_allowed(cfg, it.service, it.node)) {
        set_error(&q->ans, 404, "item-not-found", "live.nodes does not allow this node");
        rc = 1;
    } else if (rc == 0) {
        rc = gw_hub_publish(d->hub, &it, on_published, q, &q->pub);
    }
    gw_hub_item_cleanup(&it);
    if (rc == 0)
        return;
    q->pub = NULL;
    if (rc == GW_EINVAL || rc == GW_ECLOSED) {
        res.outcome = rc == GW_ECLOSED ? GW_HUB_PUB_DOWN : GW_HUB_PUB_INVALID;
        gw_hub_pub_answer(d->hub, &res, &q->ans);
    } else if (rc < 0) {
        set_error(&q->ans, 500, "internal-server-error", gw_strerror(rc));
    }
    GW_INFO(&d->ctx->log, NULL, NULL, "demo: publish from %s refused (%u): %s", q->peer,
            q->ans.status,
            rc == GW_EINVAL ? why
            : rc > 0        ? "not in live.nodes"
                            : gw_strerror(rc));
}

/* The body is in: on to the hub, or an answer at once. */
static int submit(struct lws *wsi, struct gw_web_call *c)
{
    struct gw_demo *d = gw_web_transport(wsi);
    struct dreq *q = (struct dreq *)c;
    c->submitted = true;
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)(GW_HUB_PUBLISH_TIMEOUT_MS / 1000 + WAIT_S));
    int rc = c->too_big || q->ans.status ? 0 : take_token(d, q->peer);
    if (q->ans.status) {
        /* refused from the headers (decline): the body was dropped */
    } else if (c->too_big) {
        set_error(&q->ans, 413, "payload-too-large", "the body is too large");
    } else if (rc == GW_ELIMIT) {
        snprintf(c->extra + strlen(c->extra), sizeof(c->extra) - strlen(c->extra),
                 "Retry-After: 1\r\n");
        set_error(&q->ans, 429, "policy-violation", "too many requests from this address");
        GW_INFO(&d->ctx->log, NULL, NULL, "demo: publish from %s refused: limit %s", q->peer,
                gw_limit_name(GW_LIMIT_ADDR_RATE));
    } else if (rc) {
        set_error(&q->ans, 503, "resource-constraint", "out of memory");
    } else {
        start_publish(d, q);
    }
    if (q->ans.status)
        ready(q);
    return 0;
}

static int preflight(struct lws *wsi, const char *cors)
{
    char hdrs[CORS_MAX + 256];
    snprintf(hdrs, sizeof(hdrs),
             "%sAccess-Control-Allow-Methods: POST, OPTIONS\r\n"
             "Access-Control-Allow-Headers: Content-Type, Accept\r\n"
             "Access-Control-Max-Age: 86400\r\n",
             cors);
    return gw_web_respond(wsi, 204, CT_JSON, hdrs, NULL, 0);
}

/* Content-Type: application/json, with parameters (charset) or without. */
static bool is_json(struct lws *wsi)
{
    char ct[128];
    if (gw_web_header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, ct, sizeof(ct)) <= 0)
        return false;
    size_t n = strcspn(ct, "; \t");
    return n == strlen(CT_JSON) && strncasecmp(ct, CT_JSON, n) == 0;
}

/* What the request line and headers say about the body. */
struct head {
    bool follows;  /* a body follows (Content-Length above 0, or chunked) */
    bool chunked;  /* Transfer-Encoding: lws never completes such a body */
    long long len; /* Content-Length; -1 when absent or not digits */
};

static struct dreq *dreq_new(struct lws *wsi, struct gw_web_call **slot, const char *cors)
{
    struct dreq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    gw_web_call_init(&q->call, wsi, slot, q->body, GW_DEMO_BODY_MAX);
    snprintf(q->cors, sizeof(q->cors), "%s", cors ? cors : "");
    snprintf(q->call.extra, sizeof(q->call.extra), "%s", q->cors);
    gw_web_peer(wsi, q->peer, sizeof(q->peer));
    return q;
}

/* A refusal decided from the headers. A body up to DRAIN_MAX is read and dropped first, so that
 * the client reads the answer rather than a reset; a longer one (or chunked) closes the
 * connection after the answer. */
static int decline(struct lws *wsi, struct gw_web_call **slot, const struct head *h,
                   unsigned status, const char *cors, const char *condition, const char *text)
{
    if (!h->follows)
        return refuse(wsi, status, cors, condition, text, false);
    struct dreq *q =
        h->chunked || h->len < 0 || h->len > DRAIN_MAX ? NULL : dreq_new(wsi, slot, cors);
    if (!q)
        return refuse(wsi, status, cors, condition, text, true);
    set_error(&q->ans, status, condition, text);
    q->call.drop_body = true;
    return 0;
}

/* After the method and the path: the origin, the preflight, the body's type and size. A request
 * that passes gets its struct dreq; the body follows, or the request is submitted at once. */
static int accept_post(struct lws *wsi, struct gw_web_call **slot, bool options,
                       const struct head *h)
{
    char origin[512], cors[CORS_MAX - 64];
    if (!gw_web_origin_allowed(wsi, origin, sizeof(origin)))
        return decline(wsi, slot, h, 403, NULL, "forbidden", "origin not allowed");
    gw_web_cors_headers(origin, cors, sizeof(cors));
    if (options)
        return h->follows ? refuse(wsi, 400, cors, "bad-request", "a preflight has no body", true)
                          : preflight(wsi, cors);
    if (h->chunked)
        return refuse(wsi, 411, cors, "bad-request", "a body needs Content-Length", true);
    if (!is_json(wsi))
        return decline(wsi, slot, h, 415, cors, "unsupported-media-type",
                       "the body must be application/json");
    if (h->follows && (h->len < 0 || h->len > (long long)GW_DEMO_BODY_MAX))
        return decline(wsi, slot, h, 413, cors, "payload-too-large", "the body is too large");
    struct dreq *q = dreq_new(wsi, slot, cors);
    if (!q)
        return refuse(wsi, 503, cors, "resource-constraint", "out of memory", h->follows);
    return h->follows ? 0 : submit(wsi, &q->call);
}

static void read_head(struct lws *wsi, struct head *h)
{
    char clen[32];
    int cl = gw_web_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clen, sizeof(clen));
    h->chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    h->len = cl > 0 && cl <= 9 && strspn(clen, "0123456789") == (size_t)cl ? atoll(clen) : -1;
    h->follows = h->chunked || (cl > 0 && h->len != 0);
}

/* The method, the path and the configuration decide before anything is made: off, the endpoint
 * is not there (404, as any unknown path). */
static int on_http(struct lws *wsi, struct gw_web_call **slot)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    char uri[256];
    struct head h;
    ctx->metrics.http_requests++;
    read_head(wsi, &h);
    bool post = gw_web_header(wsi, WSI_TOKEN_POST_URI, uri, sizeof(uri)) >= 0;
    bool options = !post && gw_web_header(wsi, WSI_TOKEN_OPTIONS_URI, uri, sizeof(uri)) >= 0;
    if (!post && !options && gw_web_header(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)) < 0)
        snprintf(uri, sizeof(uri), "%s", GW_DEMO_PATH); /* another method: decided below */
    char *qs = strchr(uri, '?');
    if (qs)
        *qs = '\0';
    if (!ctx->cfg->live_demo_publish || !gw_web_transport(wsi) ||
        strcmp(gw_web_unprefixed(ctx->cfg, uri), GW_DEMO_PATH) != 0)
        return decline(wsi, slot, &h, 404, NULL, "item-not-found", "no such endpoint");
    if (!post && !options)
        return refuse(wsi, 405, "Allow: POST, OPTIONS\r\n", "bad-request", "POST or OPTIONS",
                      h.follows);
    return accept_post(wsi, slot, options, &h);
}

/* The browser went away: a publish still under way is cancelled (the item may still appear). */
static void cancel(struct gw_web_call *c)
{
    struct dreq *q = (struct dreq *)c;
    if (q->pub)
        gw_hub_publish_cancel(q->pub);
}

static const struct gw_web_call_ops demo_ops = {on_http, submit, cancel};

int gw_demo_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    return gw_web_call_callback(&demo_ops, wsi, reason, user, in, len);
}

size_t gw_demo_pss_size(void)
{
    return GW_WEB_CALL_PSS_SIZE;
}

/* ---- the module ---- */

struct gw_demo *gw_demo_new(struct gw_ctx *ctx, struct gw_hub *hub)
{
    struct gw_demo *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->ctx = ctx;
    d->hub = hub;
    if (gw_strmap_init(&d->by_addr) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

void gw_demo_free(struct gw_demo *d)
{
    if (!d)
        return;
    while (d->lru) {
        struct bucket *b = d->lru;
        bucket_unlink(d, b);
        gw_strmap_del(&d->by_addr, &b->by_addr);
        free(b);
    }
    gw_strmap_cleanup(&d->by_addr);
    free(d);
}
