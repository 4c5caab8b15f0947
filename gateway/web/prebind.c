/* The public prebind endpoint: the "xmppgw-prebind" lws protocol that server.c mounts at
 * GW_PREBIND_PATH, with the struct gw_bosh as its user pointer. When visitors.domain is set, GET
 * (what Converse.js's prebind_url fetches) and POST make a prebound visitor session
 * (gw_bosh_prebind()) and answer {"jid","sid","rid"}; there is no token and never a password
 * login: a POST body may be empty or {"visitor": true}, anything else is 400. Origins as
 * `origins` says (CORS, preflight), the per-address limits of the session core (429, or 503 at
 * limits.max_sessions), JSON errors {"error","condition"}, Cache-Control: no-store on every
 * answer. The request waits for the prebind; a browser that goes away cancels it.
 * Owns: struct preq (one request). Calls: web/bosh (prebind), web helpers (http.c), config, core,
 * jansson, lws. */
#include "web/prebind.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/log.h"
#include "session/session.h"
#include "web/bosh.h"
#include "web/web.h"

#define CT_JSON "application/json"
#define BODY_MAX 1024 /* a POST body: {"visitor": true} and some room */
#define CORS_MAX 768  /* CORS header lines */
#define ANSWER_MAX 2048
#define WAIT_SLACK_S 20 /* beyond twice connect_timeout before lws gives up the request */

/* One request, from its headers to its answer. */
struct preq {
    struct gw_web_call call; /* first: the request as web/http.c reads and answers it */
    struct gw_prebind *p;    /* the prebind under way; NULL before and once told */
    char body[BODY_MAX + 1]; /* the body */
    unsigned status;         /* the answer's status; 0: none yet */
    char answer[ANSWER_MAX]; /* its JSON body */
    char cors[CORS_MAX];     /* CORS header lines for an allowed origin */
    char peer[64];           /* client address */
};

_Static_assert(CORS_MAX + 64 <= GW_WEB_CALL_EXTRA, "CORS and Retry-After fit the header lines");

/* ---- answers ---- */

static void set_error(struct preq *q, unsigned status, const char *condition, const char *text)
{
    json_t *o = json_pack("{s:s, s:s}", "error", text, "condition", condition);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(q->answer, sizeof(q->answer), "%s\n",
             s ? s : "{\"error\":\"out of memory\",\"condition\":\"internal-server-error\"}");
    free(s);
    json_decref(o);
    q->status = status;
}

/* An answer at once, in the callback (a request that never reached the sessions). */
static int respond_now(struct lws *wsi, unsigned status, const char *extra, const char *condition,
                       const char *text)
{
    struct preq q = {.status = 0};
    set_error(&q, status, condition, text);
    return gw_web_respond(wsi, status, CT_JSON, extra, q.answer, strlen(q.answer));
}

/* A refusal before any body is read: with close, the connection goes after it (the body that
 * follows is never read). */
static int refuse(struct lws *wsi, unsigned status, const char *cors, const char *condition,
                  const char *text, bool close)
{
    char extra[CORS_MAX + 32];
    snprintf(extra, sizeof(extra), "%s%s", cors ? cors : "", close ? "Connection: close\r\n" : "");
    int rc = respond_now(wsi, status, extra, condition, text);
    return close ? -1 : rc;
}

/* The answer is ready: written when the connection can take it. */
static void ready(struct preq *q)
{
    gw_web_call_ready(&q->call, q->status, q->answer, strlen(q->answer));
}

static void set_result(struct preq *q, const struct gw_prebind_result *res)
{
    json_t *o =
        json_pack("{s:s, s:s, s:I}", "jid", res->jid, "sid", res->sid, "rid", (json_int_t)res->rid);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (s && strlen(s) + 2 <= sizeof(q->answer)) {
        snprintf(q->answer, sizeof(q->answer), "%s\n", s);
        q->status = 200;
    } else {
        set_error(q, 500, "internal-server-error", "the answer could not be built");
    }
    free(s);
    json_decref(o);
}

/* What the BOSH sessions tell: the session is bound (or why not). */
static void on_prebound(void *ud, const struct gw_prebind_result *res)
{
    struct preq *q = ud;
    q->p = NULL;
    if (res->status == 0) {
        set_result(q, res);
    } else {
        const char *cond = gw_condition_name(res->cond);
        set_error(q, res->cond == GW_COND_internal_server_error ? 500 : 503, cond,
                  res->cond == GW_COND_remote_connection_failed ? "the XMPP server is unreachable"
                  : res->cond == GW_COND_system_shutdown        ? "the gateway is shutting down"
                                                                : "the session could not be made");
    }
    ready(q);
}

/* ---- requests ---- */

/* A POST body: empty, or {"visitor": true} and nothing else (never a password login here). */
static bool body_ok(struct preq *q)
{
    if (q->call.got == 0)
        return true;
    json_error_t e;
    json_t *o = json_loadb(q->body, q->call.got, 0, &e);
    bool ok = json_is_object(o);
    for (void *it = ok ? json_object_iter(o) : NULL; it; it = json_object_iter_next(o, it))
        ok = ok && strcmp(json_object_iter_key(it), "visitor") == 0 &&
             json_is_true(json_object_iter_value(it));
    json_decref(o);
    return ok;
}

/* Start the visitor prebind for q; a refusal is q's answer at once. */
static void start(struct gw_bosh *b, struct gw_ctx *ctx, struct preq *q)
{
    struct gw_prebind_req req = {.visitor = true, .peer = q->peer};
    int rc = gw_bosh_prebind(b, &req, on_prebound, q, &q->p);
    if (rc == 0)
        return;
    q->p = NULL;
    if (rc == GW_ELIMIT && gw_sessions_count(ctx->sessions) < ctx->cfg->max_sessions) {
        /* the address is over its share; the gateway is not overloaded */
        snprintf(q->call.extra, sizeof(q->call.extra), "%sRetry-After: 1\r\n", q->cors);
        set_error(q, 429, "policy-violation", "too many sessions from this address");
    } else if (rc == GW_ELIMIT) {
        set_error(q, 503, "resource-constraint", "too many sessions");
    } else if (rc == GW_ECLOSED) {
        set_error(q, 503, "system-shutdown", "the gateway is shutting down");
    } else {
        set_error(q, 500, "internal-server-error", gw_strerror(rc));
    }
    GW_INFO(&ctx->log, NULL, NULL, "prebind from %s refused (%u): %s", q->peer, q->status,
            gw_strerror(rc));
    ready(q);
}

/* The request is complete (a GET, or a POST and its body): on to the sessions. */
static int submit(struct lws *wsi, struct gw_web_call *c)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    struct preq *q = (struct preq *)c;
    c->submitted = true;
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT,
                    (int)(ctx->cfg->connect_timeout * 2 + WAIT_SLACK_S));
    /* Everything used from the headers was copied: while the prebind runs (up to that long) the
     * connection holds none of lws's few header tables. */
    lws_http_headers_detach(wsi);
    if (c->too_big)
        set_error(q, 413, "policy-violation", "the body is too large");
    else if (!body_ok(q))
        set_error(q, 400, "bad-request",
                  "the public prebind makes visitor sessions only: send no body or "
                  "{\"visitor\": true} (a password login is the admin port's /api/prebind)");
    if (q->status) {
        ready(q);
        return 0;
    }
    start(gw_web_transport(wsi), ctx, q);
    return 0;
}

static int preflight(struct lws *wsi, const char *cors)
{
    char hdrs[CORS_MAX + 256];
    snprintf(hdrs, sizeof(hdrs),
             "%sAccess-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
             "Access-Control-Allow-Headers: Content-Type, Accept\r\n"
             "Access-Control-Max-Age: 86400\r\n",
             cors);
    return gw_web_respond(wsi, 204, CT_JSON, hdrs, NULL, 0);
}

/* The method, the path, the origin and the configuration decide before anything is made. */
static int on_http(struct lws *wsi, struct gw_web_call **slot)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    char uri[256], origin[512], cors[CORS_MAX - 64];
    ctx->metrics.http_requests++;
    bool get = gw_web_header(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)) >= 0;
    bool post = !get && gw_web_header(wsi, WSI_TOKEN_POST_URI, uri, sizeof(uri)) >= 0;
    bool options =
        !get && !post && gw_web_header(wsi, WSI_TOKEN_OPTIONS_URI, uri, sizeof(uri)) >= 0;
    if (!get && !post && !options) {
        (void)respond_now(wsi, 405, "Allow: GET, POST, OPTIONS\r\nConnection: close\r\n",
                          "bad-request", "GET, POST or OPTIONS");
        return -1;
    }
    char *qs = strchr(uri, '?'), clen[32];
    if (qs)
        *qs = '\0';
    bool chunked = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    int cl = gw_web_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clen, sizeof(clen));
    bool body_follows = chunked || (cl > 0 && strcmp(clen, "0") != 0);
    if (!gw_web_origin_allowed(wsi, origin, sizeof(origin)))
        return refuse(wsi, 403, NULL, "forbidden", "origin not allowed", body_follows);
    gw_web_cors_headers(origin, cors, sizeof(cors));
    if (strcmp(uri, GW_PREBIND_PATH) != 0 || !ctx->cfg->visitors_domain[0] ||
        !gw_web_transport(wsi))
        return refuse(wsi, 404, cors, "item-not-found", "no prebind here", body_follows);
    if (options)
        return body_follows ? refuse(wsi, 400, cors, "bad-request", "a preflight has no body", true)
                            : preflight(wsi, cors);
    if (chunked) /* lws never completes a chunked body: the client must say how long it is */
        return refuse(wsi, 411, cors, "bad-request", "a body needs Content-Length", true);
    if (body_follows && (strspn(clen, "0123456789") != strlen(clen) || strlen(clen) > 6 ||
                         strtoul(clen, NULL, 10) > BODY_MAX))
        return refuse(wsi, 413, cors, "policy-violation", "the body is too large", true);
    struct preq *q = calloc(1, sizeof(*q));
    if (!q)
        return respond_now(wsi, 503, cors, "resource-constraint", "out of memory");
    gw_web_call_init(&q->call, wsi, slot, q->body, BODY_MAX);
    snprintf(q->cors, sizeof(q->cors), "%s", cors);
    snprintf(q->call.extra, sizeof(q->call.extra), "%s", cors);
    gw_web_peer(wsi, q->peer, sizeof(q->peer));
    return body_follows ? 0 : submit(wsi, &q->call);
}

/* The browser went away: a prebind still under way is cancelled (its session ends). */
static void cancel(struct gw_web_call *c)
{
    struct preq *q = (struct preq *)c;
    if (q->p)
        gw_prebind_cancel(q->p);
}

static const struct gw_web_call_ops prebind_ops = {on_http, submit, cancel};

int gw_prebind_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    return gw_web_call_callback(&prebind_ops, wsi, reason, user, in, len);
}

size_t gw_prebind_pss_size(void)
{
    return GW_WEB_CALL_PSS_SIZE;
}
