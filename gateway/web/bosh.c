/* BOSH on libwebsockets: the HTTP side of the "xmppgw-bosh" protocol. A request comes in
 * (LWS_CALLBACK_HTTP: method, Origin and CORS preflight, Content-Length, body size: 405, 403,
 * 411, 413, 400 at once), its body is read (HTTP_BODY), handed whole to the BOSH sessions
 * (HTTP_BODY_COMPLETION), and answered in HTTP_WRITEABLE once the sessions say the answer is
 * ready; CLOSED_HTTP / HTTP_DROP_PROTOCOL tell them that a browser gave up a request. No BOSH rule
 * lives here: that is bosh_session.c and bosh_proto.c.
 * Owns: one struct http_req per request in progress. Calls: bosh_session, bosh_proto (numbers),
 * web helpers (http.c), config, core, lws. */
#include "web/bosh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "web/bosh_proto.h"
#include "web/bosh_session.h"
#include "web/web.h"

#define CT_XML "text/xml; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"
#define CORS_MAX 768   /* CORS header lines kept per request */
#define DRAIN_FACTOR 4 /* bodies up to 4x bosh.max_body are read and dropped (413) */

struct pss;

/* One HTTP request on the BOSH path, from its headers to its answer. */
struct http_req {
    struct lws *wsi;          /* its connection */
    struct pss *pss;          /* the connection's user data that points here; NULL once off it */
    bool reading;             /* the body is arriving */
    bool discard;             /* over bosh.max_body: read and drop, then 413 */
    bool nomem;               /* the body could not be kept: 503 */
    struct gw_buf raw;        /* the body as read */
    unsigned status;          /* an answer of our own (413, 503), without the sessions; 0: none */
    struct gw_bosh_req *breq; /* with the BOSH sessions; NULL before, or once they killed it */
    char cors[CORS_MAX];      /* CORS header lines for the answer */
    char peer[64];            /* client address */
};

/* lws's per-connection user data. */
struct pss {
    struct http_req *h; /* the request in progress on this connection, NULL between requests */
};

struct gw_bosh {
    struct gw_ctx *ctx;                /* the gateway */
    struct gw_bosh_sessions *sessions; /* the BOSH sessions and their requests */
};

/* ---- what the sessions ask of a connection ---- */

static void conn_ready(void *conn)
{
    struct http_req *h = conn;
    lws_callback_on_writable(h->wsi);
}

static void conn_kill(void *conn)
{
    struct http_req *h = conn;
    h->breq = NULL; /* the sessions free it */
    lws_set_timeout(h->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
}

static const struct gw_bosh_conn_ops conn_ops = {.ready = conn_ready, .kill = conn_kill};

/* ---- requests ---- */

/* Done with h: off its connection; the sessions let go of their part. */
static void http_req_free(struct http_req *h)
{
    if (h->pss)
        h->pss->h = NULL;
    if (h->breq)
        gw_bosh_req_close(h->breq);
    gw_buf_cleanup(&h->raw);
    free(h);
}

/* An answer of the adapter's own, written when the connection can take it. */
static void answer_own(struct http_req *h, unsigned status)
{
    h->status = status;
    lws_callback_on_writable(h->wsi);
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

static const char bad_request_body[] =
    "<body type='terminate' condition='bad-request' xmlns='" GW_NS_HTTPBIND "'/>";

static bool has_header(struct lws *wsi, enum lws_token_indexes tok)
{
    return lws_hdr_total_length(wsi, tok) > 0;
}

/* The browser closed the connection (or lws is done with this protocol on it). */
static void on_gone(struct pss *pss)
{
    struct http_req *h = pss->h;
    if (h)
        http_req_free(h);
}

/* A POST from an allowed origin: check its length and get ready for the body. */
static int on_post(struct lws *wsi, struct pss *pss, const char *cors, const char *peer)
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
        gw_metrics_count_condition(&ctx->metrics, GW_COND_bad_request);
        return early(wsi, 400, cors, NULL, bad_request_body, false);
    }
    size_t max_body = ctx->cfg->bosh_max_body;
    if (cl > max_body && cl > (uint64_t)max_body * DRAIN_FACTOR) {
        GW_INFO(&ctx->log, NULL, NULL, "BOSH request from %s: body of %llu bytes refused", peer,
                (unsigned long long)cl);
        return early(wsi, 413, cors, NULL, NULL, true);
    }
    struct http_req *h = calloc(1, sizeof(*h));
    if (!h)
        return early(wsi, 503, cors, NULL, NULL, true);
    h->wsi = wsi;
    h->pss = pss;
    h->reading = true;
    h->discard = cl > max_body;
    gw_buf_init(&h->raw, max_body);
    snprintf(h->cors, sizeof(h->cors), "%s", cors);
    snprintf(h->peer, sizeof(h->peer), "%s", peer);
    pss->h = h;
    return 0;
}

static int on_http(struct lws *wsi, struct pss *pss)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    ctx->metrics.http_requests++;
    if (!gw_web_transport(wsi))
        return early(wsi, 503, NULL, NULL, NULL, true);
    on_gone(pss); /* a new request while the last one is unanswered (pipelining) */
    bool post = has_header(wsi, WSI_TOKEN_POST_URI);
    bool options = has_header(wsi, WSI_TOKEN_OPTIONS_URI);
    bool body_follows = has_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) ||
                        has_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    if (!post && !options)
        return early(wsi, 405, NULL, "Allow: POST, OPTIONS\r\n", NULL, body_follows);

    char origin[512], cors[CORS_MAX - 200], peer[64];
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
    return on_post(wsi, pss, cors, peer);
}

static int on_body(struct pss *pss, const void *in, size_t len)
{
    struct http_req *h = pss->h;
    if (!h || !h->reading || h->discard || h->nomem)
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

static int on_body_done(struct lws *wsi, struct pss *pss)
{
    struct http_req *h = pss->h;
    struct gw_bosh *b = gw_web_transport(wsi);
    if (!h || !h->reading || !b)
        return 0;
    h->reading = false;
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

static int on_writeable(struct lws *wsi, struct pss *pss)
{
    struct http_req *h = pss->h;
    struct gw_bosh_answer a = {.status = h ? h->status : 0};
    if (!h || h->reading)
        return 0;
    if (!h->status && (!h->breq || gw_bosh_req_answer(h->breq, &a) != 0))
        return 0;
    /* Off the connection first: completing the transaction may start its next request. */
    pss->h = NULL;
    h->pss = NULL;
    int rc = respond(wsi, a.status, a.xml ? CT_XML : CT_TEXT, h->cors, NULL, a.body, a.len, false);
    http_req_free(h);
    return rc;
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
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && have_bosh)
            on_gone(pss);
        return 0;
    default:
        return 0;
    }
}

size_t gw_bosh_pss_size(void)
{
    return sizeof(struct pss);
}

/* ---- the module ---- */

struct gw_bosh *gw_bosh_new(struct gw_ctx *ctx)
{
    struct gw_bosh *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->ctx = ctx;
    b->sessions = gw_bosh_sessions_new(ctx, &conn_ops);
    if (!b->sessions) {
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
    free(b);
}
