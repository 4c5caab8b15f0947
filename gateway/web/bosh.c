/* BOSH on libwebsockets: the HTTP side of the "xmppgw-bosh" protocol. A request comes in
 * (LWS_CALLBACK_HTTP: method, Origin and CORS preflight, Content-Length, body size, the
 * per-address limits: 405, 403, 411, 413, 429, 400 at once), its body is read (HTTP_BODY) within
 * its deadlines, handed whole to the BOSH sessions (HTTP_BODY_COMPLETION), and answered in
 * HTTP_WRITEABLE once the sessions say the answer is ready; CLOSED_HTTP / HTTP_DROP_PROTOCOL tell
 * them that a browser gave up a request. No BOSH rule lives here: that is bosh_session.c and
 * bosh_proto.c.
 *
 * Each request has the deadlines of its phase on one lws timer of its connection
 * (lws_set_timer_usecs(), LWS_CALLBACK_TIMER): the body within http.body_timeout of the headers
 * and at http.min_body_rate after the first second; an answer that is ready written and read
 * within http.write_timeout (the timer outlives the request until lws has flushed the answer and
 * unbinds the protocol); the rest of a body refused with an early 413 read and dropped for at
 * most LINGER_S and LINGER_BYTES. The headers' deadline is lws's own: its header timeout (vhost
 * timeout_secs_ah_idle, 10 s by default) runs from the first byte and no byte extends it.
 * Nothing the client sends extends a deadline.
 *
 * Owns: one struct http_req per request in progress, and the per-address counts of requests whose
 * bodies are being read (a map keyed by the client address; an entry lives while its counts are
 * not zero). Calls: bosh_session, bosh_proto (numbers), web helpers (http.c), config, core, lws. */
#include "web/bosh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/strmap.h"
#include "web/bosh_proto.h"
#include "web/bosh_session.h"
#include "web/web.h"

#define CT_XML "text/xml; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"
#define CORS_MAX 768   /* CORS header lines kept per request */
#define ORIGIN_MAX 512 /* an Origin header we look at */
#define DRAIN_FACTOR 4 /* a refused body up to 4x bosh.max_body is read before the 413 */
#define LINGER_S 5     /* after an early 413, the body is read and dropped this long at most */
#define LINGER_BYTES ((uint64_t)64 << 20) /* and this much at most (bosh.max_body's top) */
#define RATE_GRACE_MS 1000 /* http.min_body_rate holds after the body's first second */

struct pss;

/* Where a request is; each phase has its own deadline on the connection's timer. */
enum phase {
    PH_BODY,    /* the body is arriving: http.body_timeout, http.min_body_rate */
    PH_SESSION, /* with the BOSH sessions, no answer ready: their deadlines (wait, ...) */
    PH_WRITE,   /* an answer is ready: written and read within http.write_timeout */
    PH_LINGER,  /* an early 413 went out: the body is read and dropped, LINGER_S at most */
};

/* What one client address has in progress: requests whose bodies are not all here. */
struct addr_use {
    struct gw_strmap_node node; /* in gw_bosh.addrs, keyed by addr */
    char addr[64];              /* the client address (gw_web_peer) */
    unsigned pending;           /* its requests in PH_BODY or PH_LINGER */
    size_t bytes;               /* the body bytes those may keep (bounded by bosh.max_body) */
};

/* One HTTP request on the BOSH path, from its headers to its answer. */
struct http_req {
    struct gw_bosh *b;        /* the module */
    struct lws *wsi;          /* its connection */
    struct pss *pss;          /* the connection's user data that points here; NULL once off it */
    enum phase phase;         /* see enum phase */
    bool discard;             /* over bosh.max_body: read and drop, then 413 */
    bool nomem;               /* the body could not be kept: 503 */
    struct gw_buf raw;        /* the body as read */
    uint64_t headers_ms;      /* when the headers were complete (uv_now) */
    uint64_t length;          /* Content-Length */
    uint64_t got;             /* body bytes read so far */
    uint64_t linger_left;     /* PH_LINGER: bytes still to read and drop before closing */
    struct addr_use *addr;    /* counted against its address while the body is read; or NULL */
    size_t reserved;          /* the bytes it counts in addr->bytes */
    unsigned status;          /* an answer of our own (413, 503), without the sessions; 0: none */
    struct gw_bosh_req *breq; /* with the BOSH sessions; NULL before, or once they killed it */
    char cors[CORS_MAX];      /* CORS header lines for the answer */
    char peer[64];            /* client address */
    bool https;               /* node_id set: the client came by https (the cookie's Secure) */
};

/* lws's per-connection user data (allocated each time lws binds the protocol). */
struct pss {
    struct http_req *h; /* the request in progress on this connection, NULL between requests */
    bool flushing;      /* an answer was handed to lws and is not all out: the write deadline
                           holds until lws unbinds us (lws may call the timer once more after
                           that: without this the call means nothing) */
};

struct gw_bosh {
    struct gw_ctx *ctx;                /* the gateway */
    struct gw_bosh_sessions *sessions; /* the BOSH sessions and their requests */
    struct gw_strmap addrs;            /* client address -> struct addr_use */
};

static uint64_t now_of(struct lws *wsi)
{
    return uv_now(gw_web_ctx(wsi)->loop);
}

/* The connection's timer fires at at_ms (uv_now time). */
static void timer_at(struct lws *wsi, uint64_t at_ms)
{
    uint64_t now = now_of(wsi);
    uint64_t ms = at_ms > now ? at_ms - now : 1;
    lws_set_timer_usecs(wsi, (lws_usec_t)ms * 1000);
}

static void timer_off(struct lws *wsi)
{
    lws_set_timer_usecs(wsi, LWS_SET_TIMER_USEC_CANCEL);
}

/* ---- per-address counts ---- */

static struct addr_use *addr_find(struct gw_bosh *b, const char *peer)
{
    struct gw_strmap_node *n = gw_strmap_find(&b->addrs, peer);
    return n ? GW_CONTAINER_OF(n, struct addr_use, node) : NULL;
}

/* Would one more request from peer, keeping up to reserve body bytes, pass a per-address limit?
 * The first request of an address always fits the byte limit (bosh.max_body bounds it). */
static bool over_limits(struct gw_bosh *b, const char *peer, size_t reserve, enum gw_limit *which)
{
    const struct gw_config *cfg = b->ctx->cfg;
    const struct addr_use *a = addr_find(b, peer);
    if (a && a->pending + 1 > cfg->per_address_pending) {
        *which = GW_LIMIT_ADDR_PENDING;
        return true;
    }
    if (a && a->pending && a->bytes + reserve > cfg->per_address_body_bytes) {
        *which = GW_LIMIT_ADDR_BODY_BYTES;
        return true;
    }
    return false;
}

/* Count h against its address. GW_ENOMEM: no entry could be made. */
static int addr_take(struct http_req *h, size_t reserve)
{
    struct addr_use *a = addr_find(h->b, h->peer);
    if (!a) {
        a = calloc(1, sizeof(*a));
        if (!a)
            return GW_ENOMEM;
        snprintf(a->addr, sizeof(a->addr), "%s", h->peer);
        gw_strmap_add(&h->b->addrs, &a->node, a->addr);
    }
    a->pending++;
    a->bytes += reserve;
    h->addr = a;
    h->reserved = reserve;
    return 0;
}

/* h's body is all here (or h is gone): it no longer counts against its address. */
static void addr_release(struct http_req *h)
{
    struct addr_use *a = h->addr;
    if (!a)
        return;
    h->addr = NULL;
    a->pending--;
    a->bytes -= h->reserved;
    if (a->pending == 0) {
        gw_strmap_del(&h->b->addrs, &a->node);
        free(a);
    }
}

/* ---- what the sessions ask of a connection ---- */

/* An answer is ready (the sessions', or our own): it must be out within http.write_timeout. */
static void want_write(struct http_req *h)
{
    if (h->phase != PH_WRITE) {
        h->phase = PH_WRITE;
        timer_at(h->wsi, now_of(h->wsi) + (uint64_t)h->b->ctx->cfg->http_write_timeout * 1000);
    }
    lws_callback_on_writable(h->wsi);
}

static void conn_ready(void *conn)
{
    want_write(conn);
}

static void conn_kill(void *conn)
{
    struct http_req *h = conn;
    h->breq = NULL; /* the sessions free it */
    timer_off(h->wsi);
    lws_set_timeout(h->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}

static const struct gw_bosh_conn_ops conn_ops = {.ready = conn_ready, .kill = conn_kill};

/* ---- requests ---- */

/* Done with h: off its connection and its address; the sessions let go of their part. The
 * connection's timer stays: after an answer it is the write deadline until lws unbinds us. */
static void http_req_free(struct http_req *h)
{
    if (h->pss)
        h->pss->h = NULL;
    addr_release(h);
    if (h->breq)
        gw_bosh_req_close(h->breq);
    gw_buf_cleanup(&h->raw);
    free(h);
}

/* An answer of the adapter's own, written when the connection can take it. */
static void answer_own(struct http_req *h, unsigned status)
{
    h->status = status;
    want_write(h);
}

static int respond(struct lws *wsi, unsigned status, const char *ctype, const char *cors,
                   const char *extra, const char *body, size_t len, bool close)
{
    char hdr[CORS_MAX + 256];
    snprintf(hdr, sizeof(hdr), "%s%s%s", cors ? cors : "", extra ? extra : "",
             close ? "Connection: close\r\n" : "");
    int rc = gw_web_respond(wsi, status, ctype, hdr, body, len);
    return close ? -1 : rc;
}

/* Answer at once, before the body is read. */
static int early(struct lws *wsi, unsigned status, const char *cors, const char *extra,
                 const char *body, bool close)
{
    return respond(wsi, status, body ? CT_XML : CT_TEXT, cors, extra, body, body ? strlen(body) : 0,
                   close);
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

/* The head of an answer with no body and Connection: close, without ending the transaction: the
 * request's body may still be read afterwards (gw_web_respond() would start the next request). */
static int head_close(struct lws *wsi, unsigned status, const char *origin)
{
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    gw_web_ctx(wsi)->metrics.http_errors++;
    if (lws_add_http_common_headers(wsi, status, CT_TEXT, 0, &p, end) ||
        add_header(wsi, "cache-control:", "no-store", &p, end) ||
        add_header(wsi, "connection:", "close", &p, end))
        return -1;
    if (*origin && (add_header(wsi, "access-control-allow-origin:", origin, &p, end) ||
                    add_header(wsi, "vary:", "Origin", &p, end)))
        return -1;
    return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

static const char bad_request_body[] =
    "<body type='terminate' condition='bad-request' xmlns='" GW_NS_HTTPBIND "'/>";

static bool has_header(struct lws *wsi, enum lws_token_indexes tok)
{
    return lws_hdr_total_length(wsi, tok) > 0;
}

/* The browser closed the connection, or lws is done with this protocol on it (the answer went
 * out and the connection goes back to keep-alive): no deadline of ours is left on it. */
static void on_gone(struct lws *wsi, struct pss *pss)
{
    timer_off(wsi);
    pss->flushing = false;
    struct http_req *h = pss->h;
    if (h)
        http_req_free(h);
}

/* Past a per-address limit: 429 (the client address is over its share; the gateway is not
 * overloaded, which 503 would say), and the client may try again in a second. */
static int refuse_addr(struct lws *wsi, const char *cors, const char *peer, enum gw_limit l)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    const struct gw_config *cfg = ctx->cfg;
    ctx->metrics.refused[l]++;
    if (l == GW_LIMIT_ADDR_PENDING)
        GW_INFO(&ctx->log, NULL, NULL,
                "BOSH request from %s refused (429): %u requests of this address are still "
                "sending their bodies (limits.per_address_pending)",
                peer, cfg->per_address_pending);
    else
        GW_INFO(&ctx->log, NULL, NULL,
                "BOSH request from %s refused (429): over %zu bytes of bodies being read from this "
                "address (limits.per_address_body_bytes)",
                peer, cfg->per_address_body_bytes);
    return early(wsi, 429, cors, "Retry-After: 1\r\n", NULL, true);
}

/* The body's deadlines: complete within http.body_timeout of the headers, and after the first
 * second at least http.min_body_rate bytes/s on average (rate_at: when the bytes read so far stop
 * being enough). */
static uint64_t body_deadline(const struct http_req *h, uint64_t *rate_at)
{
    const struct gw_config *cfg = h->b->ctx->cfg;
    uint64_t whole = h->headers_ms + (uint64_t)cfg->http_body_timeout * 1000;
    *rate_at = UINT64_MAX;
    if (cfg->http_min_body_rate)
        *rate_at = h->headers_ms + RATE_GRACE_MS + h->got * 1000 / cfg->http_min_body_rate;
    return whole;
}

static void arm_body(struct http_req *h)
{
    uint64_t rate_at, whole = body_deadline(h, &rate_at);
    timer_at(h->wsi, rate_at < whole ? rate_at : whole);
}

/* A body that announced more than DRAIN_FACTOR x bosh.max_body: the 413 goes out first, then the
 * body is read and dropped (LINGER_S and LINGER_BYTES at most) so that a client still writing
 * reads the answer instead of a reset (nginx's lingering close). A body that ends within both
 * closes cleanly once all of it is read; past either bound the connection is closed as it is. */
static int linger_413(struct http_req *h, const char *origin)
{
    struct gw_ctx *ctx = h->b->ctx;
    GW_INFO(&ctx->log, NULL, NULL,
            "BOSH request from %s: body of %llu bytes refused (413), the rest is dropped", h->peer,
            (unsigned long long)h->length);
    h->phase = PH_LINGER;
    h->linger_left = LINGER_BYTES;
    timer_at(h->wsi, now_of(h->wsi) + LINGER_S * 1000);
    return head_close(h->wsi, 413, origin);
}

/* A request whose body comes now, counted against its address. */
static int start_body(struct lws *wsi, struct pss *pss, uint64_t cl, const char *cors,
                      const char *origin, const char *peer)
{
    struct gw_bosh *b = gw_web_transport(wsi);
    size_t max_body = b->ctx->cfg->bosh_max_body;
    size_t reserve = cl > max_body ? 0 : (size_t)cl;
    enum gw_limit which;
    if (over_limits(b, peer, reserve, &which))
        return refuse_addr(wsi, cors, peer, which);
    struct http_req *h = calloc(1, sizeof(*h));
    if (!h)
        return early(wsi, 503, cors, NULL, NULL, true);
    h->b = b;
    h->wsi = wsi;
    h->phase = PH_BODY;
    h->headers_ms = now_of(wsi);
    h->length = cl;
    h->discard = cl > max_body;
    gw_buf_init(&h->raw, max_body);
    snprintf(h->cors, sizeof(h->cors), "%s", cors);
    snprintf(h->peer, sizeof(h->peer), "%s", peer);
    if (b->ctx->cfg->node_id[0]) { /* the headers go before a held request is answered */
        struct gw_web_public pub;
        gw_web_public_base(wsi, &pub);
        h->https = pub.https;
    }
    if (addr_take(h, reserve) != 0) {
        free(h);
        return early(wsi, 503, cors, NULL, NULL, true);
    }
    h->pss = pss;
    pss->h = h;
    if (cl > (uint64_t)max_body * DRAIN_FACTOR)
        return linger_413(h, origin);
    arm_body(h);
    return 0;
}

/* A POST from an allowed origin: check its length and get ready for the body. */
static int on_post(struct lws *wsi, struct pss *pss, const char *cors, const char *origin,
                   const char *peer)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    if (has_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING))
        return early(wsi, 411, cors, NULL, NULL, true);
    char clen[32];
    uint64_t cl;
    if (gw_web_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clen, sizeof(clen)) < 0)
        return early(wsi, has_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) ? 400 : 411, cors, NULL,
                     NULL, true);
    if (!gw_bosh_parse_uint(clen, &cl))
        return early(wsi, 400, cors, NULL, NULL, true);
    if (cl == 0) {
        gw_metrics_count_terminate(&ctx->metrics, GW_COND_bad_request);
        return early(wsi, 400, cors, NULL, bad_request_body, false);
    }
    return start_body(wsi, pss, cl, cors, origin, peer);
}

static int on_http(struct lws *wsi, struct pss *pss)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    ctx->metrics.http_requests++;
    if (!gw_web_transport(wsi))
        return early(wsi, 503, NULL, NULL, NULL, true);
    on_gone(wsi, pss); /* defensive: a request left on this binding is done with */
    bool post = has_header(wsi, WSI_TOKEN_POST_URI);
    bool options = has_header(wsi, WSI_TOKEN_OPTIONS_URI);
    bool body_follows = has_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) ||
                        has_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    if (!gw_web_host_one(wsi))
        return early(wsi, 400, NULL, NULL, NULL, body_follows); /* RFC 9112 3.2 */
    if (!post && !options)
        return early(wsi, 405, NULL, "Allow: POST, OPTIONS\r\n", NULL, body_follows);

    char origin[ORIGIN_MAX], cors[CORS_MAX - 200], peer[64];
    gw_web_peer(wsi, peer, sizeof(peer));
    if (!gw_web_origin_allowed(wsi, origin, sizeof(origin))) {
        GW_INFO(&ctx->log, NULL, NULL, "BOSH request from %s refused: origin '%s' not allowed",
                peer, origin);
        return early(wsi, 403, NULL, NULL, NULL, body_follows);
    }
    gw_web_cors_headers(origin, cors, sizeof(cors));
    if (options) {
        char hdrs[CORS_MAX];
        snprintf(hdrs, sizeof(hdrs),
                 "%sAccess-Control-Allow-Methods: POST, OPTIONS\r\n"
                 "Access-Control-Allow-Headers: Content-Type\r\n"
                 "Access-Control-Max-Age: 86400\r\n",
                 cors);
        return early(wsi, 200, hdrs, NULL, NULL, body_follows);
    }
    return on_post(wsi, pss, cors, origin, peer);
}

static int on_body(struct pss *pss, const void *in, size_t len)
{
    struct http_req *h = pss->h;
    if (h && h->phase == PH_LINGER) {
        if (len >= h->linger_left)
            return -1; /* dropped as much as we drop: close */
        h->linger_left -= len;
        return 0;
    }
    if (!h || h->phase != PH_BODY)
        return 0;
    h->got += len;
    if (h->discard || h->nomem)
        return 0;
    int rc = gw_buf_append(&h->raw, in, len);
    if (rc == GW_ELIMIT) {
        h->discard = true;
        gw_buf_cleanup(&h->raw);
    } else if (rc) {
        h->nomem = true;
        gw_buf_cleanup(&h->raw);
    }
    return 0;
}

/* lws reports the body complete again when bytes follow a body whose answer has not gone out:
 * the client sent its next request before reading this one's answer (HTTP pipelining). lws
 * would keep reporting it (it holds those bytes until the transaction completes, and the answer
 * never gets its WRITEABLE), so the connection is refused: 400, closed. The sessions see this
 * request abandoned, as when a browser gives up (a repeat of its rid is held again); the next
 * request was never read. BOSH clients open a connection per request instead (XEP-0124 allows
 * a connection manager to refuse pipelining: the client falls back to several connections). */
static int refuse_pipelined(struct lws *wsi, struct http_req *h)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    GW_INFO(&ctx->log, NULL, NULL,
            "BOSH request from %s: the next request came before this one's answer (HTTP "
            "pipelining): 400, connection closed",
            h->peer);
    timer_off(wsi);
    return respond(wsi, 400, CT_TEXT, h->cors, NULL, NULL, 0, true);
}

static int on_body_done(struct lws *wsi, struct pss *pss)
{
    struct http_req *h = pss->h;
    struct gw_bosh *b = gw_web_transport(wsi);
    if (!b)
        return 0;
    if (!h)
        return -1; /* bytes after a body whose answer lws is still writing: pipelining too */
    if (h->phase == PH_LINGER)
        return -1; /* all of it read and dropped: the client has its 413 */
    if (h->phase != PH_BODY)
        return refuse_pipelined(wsi, h);
    h->phase = PH_SESSION;
    timer_off(wsi);
    addr_release(h);
    /* lws gives a parked request no timeout; the sessions keep its deadline. The header table is
     * not needed any more (everything used was copied): give it back. */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    lws_http_headers_detach(wsi);
    if (h->discard) {
        GW_INFO(&b->ctx->log, NULL, NULL, "BOSH request from %s: body over %zu bytes", h->peer,
                b->ctx->cfg->bosh_max_body);
        answer_own(h, 413);
        return 0;
    }
    if (!h->nomem)
        h->breq = gw_bosh_req_new(b->sessions, h, (int)lws_get_socket_fd(wsi), h->peer);
    if (!h->breq) {
        answer_own(h, 503);
        return 0;
    }
    gw_bosh_req_submit(h->breq, gw_buf_ptr(&h->raw), gw_buf_size(&h->raw));
    gw_buf_cleanup(&h->raw);
    return 0;
}

#define NODE_COOKIE "xmppgw_node" /* the cookie naming node_id (docs/deploy/ route on it) */
#define NODE_COOKIE_MAX 128       /* its Set-Cookie line (node_id is at most 32 bytes) */

/* With node_id set, the session creation answer names the node in a cookie, for a proxy that
 * cannot read the sid in the body (nginx); "" otherwise. No Max-Age: it lasts as long as the
 * browser runs, and the next session's creation answer replaces it. */
static void node_cookie(const struct http_req *h, bool created, char *out, size_t outlen)
{
    const char *id = h->b->ctx->cfg->node_id;
    out[0] = '\0';
    if (created && id[0])
        snprintf(out, outlen,
                 "Set-Cookie: " NODE_COOKIE "=%s; Path=/; HttpOnly; SameSite=Lax%s\r\n", id,
                 h->https ? "; Secure" : "");
}

static int on_writeable(struct lws *wsi, struct pss *pss)
{
    struct http_req *h = pss->h;
    struct gw_bosh_answer a = {.status = h ? h->status : 0};
    if (!h || h->phase == PH_BODY || h->phase == PH_LINGER)
        return 0;
    if (!h->status && (!h->breq || gw_bosh_req_answer(h->breq, &a) != 0))
        return 0;
    /* Off the connection first: completing the transaction may start its next request. The
     * timer stays set: the answer must still be read (lws unbinds us once it is all out). */
    pss->h = NULL;
    pss->flushing = true; /* until lws unbinds us (on_gone), maybe inside respond() */
    h->pss = NULL;
    char cookie[NODE_COOKIE_MAX];
    node_cookie(h, a.created, cookie, sizeof(cookie));
    int rc =
        respond(wsi, a.status, a.xml ? CT_XML : CT_TEXT, h->cors, cookie, a.body, a.len, false);
    http_req_free(h);
    return rc;
}

/* A deadline of the connection's request passed (see enum phase). */
static int on_timer(struct lws *wsi, struct pss *pss)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    const struct gw_config *cfg = ctx->cfg;
    struct http_req *h = pss->h;
    uint64_t now = now_of(wsi), rate_at;
    if (h && h->phase == PH_LINGER)
        return -1;
    if ((h && h->phase == PH_SESSION) || (!h && !pss->flushing))
        return 0;
    if (h && h->phase == PH_BODY) {
        uint64_t whole = body_deadline(h, &rate_at);
        if (now < whole && now < rate_at) {
            arm_body(h); /* bytes came meanwhile: the rate holds for now */
            return 0;
        }
        ctx->metrics.refused[GW_LIMIT_HTTP_DEADLINE]++;
        GW_INFO(&ctx->log, NULL, NULL,
                "BOSH request from %s: %llu of %llu body bytes in %llu ms, %s: 408, connection "
                "closed",
                h->peer, (unsigned long long)h->got, (unsigned long long)h->length,
                (unsigned long long)(now - h->headers_ms),
                now >= whole ? "past http.body_timeout" : "slower than http.min_body_rate");
        return respond(wsi, 408, CT_TEXT, h->cors, NULL, NULL, 0, true);
    }
    /* PH_WRITE, or the answer already handed to lws (no request left) and not yet all read. The
     * connection is killed as lws kills on its own timeouts: no flushing first (a close would
     * wait for the unread answer to go out, up to lws's shutdown timeout). */
    char peer[64];
    if (h) /* its headers may be gone by now: the address read with them (behind a proxy too) */
        snprintf(peer, sizeof(peer), "%s", h->peer);
    else
        gw_web_peer(wsi, peer, sizeof(peer));
    ctx->metrics.refused[GW_LIMIT_HTTP_DEADLINE]++;
    GW_INFO(&ctx->log, NULL, NULL,
            "BOSH answer to %s not %s within http.write_timeout (%u s): connection closed", peer,
            h ? "written" : "read", cfg->http_write_timeout);
    pss->flushing = false;
    lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    return 0;
}

int gw_bosh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    struct pss *pss = user;
    bool have_bosh = gw_web_transport(wsi) != NULL; /* our state, as server.c gave it */
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return pss ? on_http(wsi, pss) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return pss ? on_body(pss, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return pss ? on_body_done(wsi, pss) : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss && have_bosh ? on_writeable(wsi, pss) : 0;
    case LWS_CALLBACK_TIMER:
        return pss && have_bosh ? on_timer(wsi, pss) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && have_bosh)
            on_gone(wsi, pss);
        return 0;
    default:
        return 0;
    }
}

size_t gw_bosh_pss_size(void)
{
    return sizeof(struct pss);
}

int gw_bosh_prebind(struct gw_bosh *b, const struct gw_prebind_req *req, gw_prebind_fn fn, void *ud,
                    struct gw_prebind **out)
{
    return gw_bosh_sessions_prebind(b->sessions, req, fn, ud, out);
}

/* ---- the module ---- */

struct gw_bosh *gw_bosh_new(struct gw_ctx *ctx)
{
    struct gw_bosh *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->ctx = ctx;
    if (gw_strmap_init(&b->addrs) != 0) {
        free(b);
        return NULL;
    }
    b->sessions = gw_bosh_sessions_new(ctx, &conn_ops);
    if (!b->sessions) {
        gw_strmap_cleanup(&b->addrs);
        free(b);
        return NULL;
    }
    return b;
}

void gw_bosh_free(struct gw_bosh *b)
{
    if (!b)
        return;
    gw_bosh_sessions_free(b->sessions);
    /* Every connection is gone by now, and with it every count. */
    struct gw_strmap_node *n;
    while ((n = gw_strmap_first(&b->addrs)) != NULL) {
        gw_strmap_del(&b->addrs, n);
        free(GW_CONTAINER_OF(n, struct addr_use, node));
    }
    gw_strmap_cleanup(&b->addrs);
    free(b);
}
