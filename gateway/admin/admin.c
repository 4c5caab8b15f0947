/* The admin HTTP server: owns the libmicrohttpd daemon and the two uv handles that drive it from
 * the gateway's loop (a poll on MHD's epoll fd, a timer from MHD_get_timeout()). It hands what MHD
 * read of each request to admin_proto.c, which decides the route or the refusal, and answers as
 * told; bodies come from render.c. A POST route's body is read into a bounded buffer, then the
 * request waits suspended (MHD_suspend_connection) for the hub's answer or the prebind's login and
 * is resumed when it comes; a connection that MHD ends meanwhile cancels what it waited for. Owns:
 * struct gw_admin, struct post_req. Calls: admin_proto.c, render.c, session/hub, web/bosh
 * (prebind), config, core; libmicrohttpd, libuv.
 *
 * MHD runs with no thread of its own: every request handler below runs inside MHD_run(), called
 * from a loop callback, so it may read the gateway's state directly. */
#include "admin/admin.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include "admin/admin_proto.h"
#include "config/config.h"
#include "session/hub.h"
#include "session/session.h"
#include "web/bosh.h"

#define ADMIN_TIMEOUT_S 30u             /* idle admin connections are closed after this */
#define ADMIN_MAX_CONNECTIONS 256u      /* concurrent admin connections */
#define ADMIN_CONN_MEMORY (32u * 1024u) /* per-connection memory for request line and headers */
#define DRAIN_FACTOR 4u /* a body past its bound is read and dropped up to this many times it */

#define LAG_PERIOD_MS 250u /* the lag timer's period */

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define JSON_TYPE "application/json"

struct gw_admin {
    struct gw_ctx *ctx;           /* the gateway; cfg is read per request (reload replaces it) */
    struct gw_admin_services svc; /* what the POST routes call (either may be NULL) */
    struct MHD_Daemon *mhd;       /* the daemon, external polling, epoll */
    uv_poll_t poll;               /* readable when MHD's epoll fd has events */
    uv_timer_t timer;             /* fires when MHD_get_timeout() says MHD must run */
    uv_timer_t lag;               /* every LAG_PERIOD_MS: how late it fires is the loop's lag */
    uint64_t lag_due_ns;          /* uv_hrtime() when it should fire next */
    unsigned open_handles;        /* uv handles not closed yet; the struct goes with the last */
    uint16_t port;                /* the port bound */
    bool starting;                /* MHD messages go to start_err rather than the log */
    char start_err[256];          /* MHD's last message while starting, for err */
};

/* ---- loop glue ---- */

static void run_mhd(struct gw_admin *a);

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct gw_admin *a = p->data;
    if (status < 0)
        GW_WARN(&a->ctx->log, NULL, NULL, "admin: poll: %s", uv_strerror(status));
    run_mhd(a);
}

/* MHD's epoll set is edge-triggered inside and may leave work for the next round; it says so
 * through MHD_get_timeout() (0 = at once), which is why the timer is re-armed after every run. */
static void run_mhd(struct gw_admin *a)
{
    MHD_run(a->mhd);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(a->mhd, &ms) == MHD_YES)
        uv_timer_start(&a->timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&a->timer);
}

/* A one-shot timer re-armed each time: its lateness is time the loop spent elsewhere (a long
 * callback, a blocked write). The loop's clock is read at the start of each turn and may be a
 * little behind uv_hrtime(), so the timer can fire before lag_due_ns: that counts as no lag. */
static void on_lag(uv_timer_t *t)
{
    struct gw_admin *a = t->data;
    uint64_t now = uv_hrtime();
    gw_metrics_observe_lag(&a->ctx->metrics,
                           now > a->lag_due_ns ? (now - a->lag_due_ns) / 1000 : 0);
    a->lag_due_ns = now + (uint64_t)LAG_PERIOD_MS * 1000000u;
    uv_timer_start(&a->lag, on_lag, LAG_PERIOD_MS, 0);
}

static void on_closed(uv_handle_t *h)
{
    struct gw_admin *a = h->data;
    if (--a->open_handles == 0)
        free(a);
}

/* The poll handle goes first: libuv must stop watching the epoll fd before MHD closes it. */
static void close_handles(struct gw_admin *a)
{
    uv_close((uv_handle_t *)&a->poll, on_closed);
    uv_close((uv_handle_t *)&a->timer, on_closed);
    uv_close((uv_handle_t *)&a->lag, on_closed);
    MHD_stop_daemon(a->mhd);
    a->mhd = NULL;
}

/* MHD's own messages: kept for the start error, logged afterwards. */
static void log_mhd(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    struct gw_admin *a = cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == '.'))
        msg[--n] = '\0';
    if (a->starting)
        snprintf(a->start_err, sizeof(a->start_err), "%s", msg);
    else
        GW_INFO(&a->ctx->log, NULL, NULL, "admin: %s", msg);
}

/* A resumed connection is served by the next MHD_run(): make it come on the next loop turn. */
static void run_soon(struct gw_admin *a)
{
    uv_timer_start(&a->timer, on_timer, 0, 0);
}

/* ---- responses ---- */

/* Every answer says no-store; MHD adds Content-Length itself for buffer bodies (also for HEAD).
 * Takes resp. */
static enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status,
                                      struct MHD_Response *resp, const char *type, const char *name,
                                      const char *value)
{
    if (!resp)
        return MHD_NO;
    enum MHD_Result ok = MHD_YES;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES ||
        (name && MHD_add_response_header(resp, name, value) != MHD_YES))
        ok = MHD_NO;
    if (ok == MHD_YES)
        ok = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* A constant plain-text body (the health probes). */
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    return queue_response(conn, status, resp, TEXT_PLAIN, NULL, NULL);
}

/* A rendered body: its memory passes to MHD (freed when the response is), and b is left empty. */
static enum MHD_Result reply_buf(struct MHD_Connection *conn, unsigned status, const char *type,
                                 struct gw_buf *b)
{
    struct MHD_Response *resp;
    if (b->data && b->head == 0) {
        resp = MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_MUST_FREE);
        if (resp)
            b->data = NULL;
    } else {
        resp = MHD_create_response_from_buffer(gw_buf_size(b), (void *)gw_buf_ptr(b),
                                               MHD_RESPMEM_MUST_COPY);
    }
    gw_buf_cleanup(b);
    return queue_response(conn, status, resp, type, NULL, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *conn, enum gw_admin_refusal e)
{
    const struct gw_admin_error *r = gw_admin_error(e);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(r->body), (void *)r->body, MHD_RESPMEM_PERSISTENT);
    return queue_response(conn, r->status, resp, JSON_TYPE, r->header, r->value);
}

static enum MHD_Result reply_render_error(struct gw_admin *a, struct MHD_Connection *conn,
                                          const char *what, int rc)
{
    GW_ERROR(&a->ctx->log, NULL, NULL, "admin: %s: %s", what, gw_strerror(rc));
    return reply_error(conn, GW_ADMIN_ERR_INTERNAL);
}

/* ---- endpoints ---- */

static enum MHD_Result serve_healthz(struct gw_admin *a, struct MHD_Connection *conn,
                                     const struct gw_admin_decision *d)
{
    /* Answering at all proves the loop turns: this handler runs inside it. */
    return reply_text(conn, MHD_HTTP_OK, "ok\n");
}

static enum MHD_Result serve_readyz(struct gw_admin *a, struct MHD_Connection *conn,
                                    const struct gw_admin_decision *d)
{
    if (a->ctx->draining)
        return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "draining\n");
    return reply_text(conn, MHD_HTTP_OK, "ready\n");
}

static enum MHD_Result serve_metrics(struct gw_admin *a, struct MHD_Connection *conn,
                                     const struct gw_admin_decision *d)
{
    struct gw_buf b;
    gw_buf_init(&b, GW_ADMIN_METRICS_MAX);
    int rc = gw_admin_render_metrics(a->ctx, a->svc.hub, &b);
    if (rc) {
        gw_buf_cleanup(&b);
        return reply_render_error(a, conn, "metrics", rc);
    }
    return reply_buf(conn, MHD_HTTP_OK, PROMETHEUS_TEXT, &b);
}

static enum MHD_Result serve_status(struct gw_admin *a, struct MHD_Connection *conn,
                                    const struct gw_admin_decision *d)
{
    struct gw_buf b;
    gw_buf_init(&b, GW_ADMIN_STATUS_MAX);
    int rc = gw_admin_render_status(a->ctx, &b);
    if (rc) {
        gw_buf_cleanup(&b);
        return reply_render_error(a, conn, "status", rc);
    }
    return reply_buf(conn, MHD_HTTP_OK, JSON_TYPE, &b);
}

static enum MHD_Result serve_sessions(struct gw_admin *a, struct MHD_Connection *conn,
                                      const struct gw_admin_decision *d)
{
    struct gw_buf b;
    gw_buf_init(&b, GW_ADMIN_SESSIONS_MAX);
    const struct gw_admin_sessions_query q = {d->limit, d->offset, d->jid, d->address};
    int rc = gw_admin_render_sessions(a->ctx, &q, &b);
    if (rc) {
        gw_buf_cleanup(&b);
        return reply_render_error(a, conn, "sessions", rc);
    }
    return reply_buf(conn, MHD_HTTP_OK, JSON_TYPE, &b);
}

/* Looking for the session whose id is wanted: its sid, copied out of the walk. */
struct find_id {
    const char *id;
    char sid[GW_SID_MAX + 1];
    const char *transport;
    bool found;
};

static void match_id(void *ud, const struct gw_session_info *info)
{
    struct find_id *f = ud;
    char id[GW_ADMIN_SID_HASH_LEN + 1];
    if (f->found || !info->sid || strlen(info->sid) > GW_SID_MAX ||
        gw_admin_sid_hash(info->sid, id) != 0 || strcmp(id, f->id) != 0)
        return;
    memcpy(f->sid, info->sid, strlen(info->sid) + 1);
    f->transport = gw_transport_name(info->transport);
    f->found = true;
}

/* DELETE /api/sessions/<id>: the session is told the condition (a WebSocket client gets the
 * stream error and the close, a BOSH client the terminate) and its upstream is closed. */
static enum MHD_Result serve_session_end(struct gw_admin *a, struct MHD_Connection *conn,
                                         const struct gw_admin_decision *d)
{
    struct find_id f = {.id = d->id};
    if (a->ctx->sessions)
        gw_sessions_foreach(a->ctx->sessions, match_id, &f);
    if (!f.found)
        return reply_error(conn, GW_ADMIN_ERR_NO_SESSION);
    enum gw_condition cond = (enum gw_condition)d->condition;
    if (gw_sessions_end_sid(a->ctx->sessions, f.sid, cond, "ended by the operator") != 0)
        return reply_error(conn, GW_ADMIN_ERR_NO_SESSION);
    OPENSSL_cleanse(f.sid, sizeof(f.sid));
    struct gw_buf b;
    gw_buf_init(&b, 256);
    if (gw_buf_printf(&b,
                      "{\"id\":\"%s\",\"transport\":\"%s\",\"ended\":true,\"condition\":\"%s\"}\n",
                      d->id, f.transport, gw_condition_name(cond)) != 0) {
        gw_buf_cleanup(&b);
        return reply_error(conn, GW_ADMIN_ERR_INTERNAL);
    }
    return reply_buf(conn, MHD_HTTP_OK, JSON_TYPE, &b);
}

typedef enum MHD_Result (*serve_fn)(struct gw_admin *a, struct MHD_Connection *conn,
                                    const struct gw_admin_decision *d);

/* clang-format off */
static const serve_fn serve[GW_ADMIN_ROUTE_COUNT] = {
    [GW_ADMIN_ROUTE_HEALTHZ] = serve_healthz,
    [GW_ADMIN_ROUTE_READYZ] = serve_readyz,
    [GW_ADMIN_ROUTE_METRICS] = serve_metrics,
    [GW_ADMIN_ROUTE_STATUS] = serve_status,
    [GW_ADMIN_ROUTE_SESSIONS] = serve_sessions,
    [GW_ADMIN_ROUTE_SESSION_END] = serve_session_end,
};
/* clang-format on */

/* ---- the request, as admin_proto reads it ---- */

struct host_list {
    const char *values[2]; /* the first two Host values: one is accepted, two is enough to refuse */
    size_t n;              /* how many were kept */
};

static enum MHD_Result collect_host(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    struct host_list *hl = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0 && hl->n < 2)
        hl->values[hl->n++] = value;
    return MHD_YES;
}

static bool has_body(struct MHD_Connection *conn)
{
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return te || (cl && strspn(cl, "0") != strlen(cl));
}

/* MHD gives the path percent-decoded and without the query, and the query as arguments. */
static void decide(struct gw_admin *a, struct MHD_Connection *conn, const char *url,
                   const char *method, struct gw_admin_decision *d)
{
    struct host_list hl = {{NULL, NULL}, 0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_host, &hl);
    struct gw_admin_request req = {
        .method = method,
        .path = url,
        .limit = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit"),
        .offset = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "offset"),
        .jid = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "jid"),
        .address = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "address"),
        .condition = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "condition"),
        .hosts = hl.values,
        .n_hosts = hl.n,
        .authorization =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        .has_body = has_body(conn),
        .content_type =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
        .content_length =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH),
    };
    gw_admin_decide(a->ctx->cfg, &req, d);
}

static void log_refusal(struct gw_admin *a, const char *method, const char *url,
                        enum gw_admin_refusal e)
{
    if (e == GW_ADMIN_ERR_HOST || e == GW_ADMIN_ERR_HOST_FIELD)
        GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s: Host %s", method, url,
                 e == GW_ADMIN_ERR_HOST ? "not allowed" : "missing, doubled or malformed");
    else if (e == GW_ADMIN_ERR_NO_TOKEN || e == GW_ADMIN_ERR_BAD_TOKEN)
        GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s: %s token", method, url,
                 e == GW_ADMIN_ERR_NO_TOKEN ? "no" : "wrong");
}

/* ---- POST routes: a body, then an answer that comes later ---- */

/* One request to a POST route, from its headers until MHD is done with it (on_completed). */
struct post_req {
    struct gw_admin *a;          /* the server */
    struct MHD_Connection *conn; /* its connection */
    enum gw_admin_route route;   /* what it asks */
    struct gw_buf body;          /* the body, up to the route's body_max */
    size_t dropped;              /* bytes past body_max, read and dropped */
    struct gw_hub_publish *pub;  /* a publish in flight: cancelled if the request ends first */
    struct gw_prebind *pre;      /* a prebind in flight: cancelled likewise */
    char peer[64];               /* the client's address */
    bool suspended;              /* waiting, MHD does not run it */
    unsigned status;             /* the answer, once known (0: none yet) */
    struct MHD_Response *resp;   /* its response, owned until queued */
};

static struct post_req *post_req_new(struct gw_admin *a, struct MHD_Connection *conn,
                                     const struct gw_admin_decision *d)
{
    struct post_req *pr = calloc(1, sizeof(*pr));
    if (!pr)
        return NULL;
    pr->a = a;
    pr->conn = conn;
    pr->route = d->route;
    gw_buf_init(&pr->body, d->body_max);
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, pr->peer, sizeof(pr->peer));
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, pr->peer,
                  sizeof(pr->peer));
    return pr;
}

/* The request is over (answered, or the connection gone): what it waits for is cancelled. */
static void post_req_free(struct post_req *pr)
{
    gw_hub_publish_cancel(pr->pub);
    if (pr->pre)
        gw_prebind_cancel(pr->pre);
    if (pr->body.data)
        OPENSSL_cleanse(pr->body.data, pr->body.cap); /* a prebind body holds a password */
    if (pr->resp)
        MHD_destroy_response(pr->resp);
    gw_buf_cleanup(&pr->body);
    free(pr);
}

/* Bytes past the bound are read and dropped, up to DRAIN_FACTOR times it, so that the client
 * reads the 413 rather than a reset; past that the connection is closed as it is. */
static enum MHD_Result post_body(struct post_req *pr, const char *data, size_t *size)
{
    size_t n = *size;
    *size = 0;
    if (!pr->dropped && gw_buf_append(&pr->body, data, n) == 0)
        return MHD_YES;
    pr->dropped += n;
    return pr->dropped / DRAIN_FACTOR <= pr->body.max ? MHD_YES : MHD_NO;
}

/* The answer is known: keep it, and if the request waits, wake it. */
static void post_answer(struct post_req *pr, unsigned status, const char *body, size_t len,
                        const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp && allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) {
        MHD_destroy_response(resp);
        resp = NULL;
    }
    pr->resp = resp;
    pr->status = status;
    if (pr->suspended) {
        pr->suspended = false;
        MHD_resume_connection(pr->conn);
        run_soon(pr->a);
    }
}

static void on_published(void *ud, const struct gw_hub_pub_result *res)
{
    struct post_req *pr = ud;
    struct gw_hub_answer ans;
    pr->pub = NULL;
    gw_hub_pub_answer(pr->a->svc.hub, res, &ans);
    post_answer(pr, ans.status, ans.body, ans.len, ans.allow);
}

/* POST /api/publish: read the item, hand it to the hub; the answer comes in on_published unless
 * it is known at once. */
static void start_publish(struct post_req *pr)
{
    const struct gw_config *cfg = pr->a->ctx->cfg;
    const struct gw_xml_limits lim = {cfg->max_stanza, cfg->max_depth, cfg->max_attrs};
    struct gw_hub *hub = pr->a->svc.hub;
    struct gw_hub_item it;
    char why[256], now[32];
    gw_hub_now(now, sizeof(now));
    int rc = gw_hub_item_parse(&it, GW_HUB_BODY_API, gw_buf_ptr(&pr->body), gw_buf_size(&pr->body),
                               &lim, now, why, sizeof(why));
    struct gw_hub_pub_result res = {.outcome = GW_HUB_PUB_INVALID, .text = why};
    if (rc == 0)
        rc = gw_hub_publish(hub, &it, on_published, pr, &pr->pub);
    if (rc == GW_ECLOSED)
        res.outcome = GW_HUB_PUB_DOWN;
    gw_hub_item_cleanup(&it);
    if (rc == 0)
        return;
    if (rc != GW_EINVAL && rc != GW_ECLOSED) {
        GW_ERROR(&pr->a->ctx->log, NULL, NULL, "admin: publish: %s", gw_strerror(rc));
        post_answer(pr, 500, gw_admin_error(GW_ADMIN_ERR_INTERNAL)->body,
                    strlen(gw_admin_error(GW_ADMIN_ERR_INTERNAL)->body), NULL);
        return;
    }
    struct gw_hub_answer ans;
    gw_hub_pub_answer(hub, &res, &ans);
    post_answer(pr, ans.status, ans.body, ans.len, ans.allow);
}

/* ---- POST /api/prebind ---- */

/* A JSON answer {"error","condition"} or the one given, copied into the request. */
static void prebind_error(struct post_req *pr, unsigned status, const char *text, const char *cond)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"condition\":\"%s\"}\n", text, cond);
    post_answer(pr, status, body, (size_t)n, NULL);
}

/* The login's outcome as the contract of /api/prebind says: 403 not-authorized for bad
 * credentials, 503 remote-connection-failed when upstream is unreachable (and while draining),
 * 429 for a limit, 500 otherwise. */
static void on_prebound(void *ud, const struct gw_prebind_result *res)
{
    struct post_req *pr = ud;
    pr->pre = NULL;
    if (res->status != 0) {
        const char *cond = gw_condition_name(res->cond);
        GW_INFO(&pr->a->ctx->log, NULL, NULL, "admin: prebind refused: %s", cond);
        if (res->cond == GW_COND_not_authorized)
            prebind_error(pr, 403, "the credentials were refused", "not-authorized");
        else if (res->cond == GW_COND_remote_connection_failed ||
                 res->cond == GW_COND_system_shutdown)
            prebind_error(pr, 503, "the XMPP server cannot be reached", "remote-connection-failed");
        else if (res->cond == GW_COND_policy_violation)
            prebind_error(pr, 429, "a limit was reached", "policy-violation");
        else
            prebind_error(pr, 500, "the session could not be made", "internal-server-error");
        return;
    }
    json_t *o =
        json_pack("{s:s,s:s,s:I}", "jid", res->jid, "sid", res->sid, "rid", (json_int_t)res->rid);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) {
        prebind_error(pr, 500, "internal error", "internal-error");
        return;
    }
    GW_INFO(&pr->a->ctx->log, res->sid, res->jid, "admin: prebound");
    post_answer(pr, 200, text, strlen(text), NULL);
    free(text);
}

/* The body: {"jid", "password"} or {"visitor": true}; the password is wiped where it was. */
static int prebind_body(struct post_req *pr, json_t *o, struct gw_prebind_req *req)
{
    json_t *visitor = json_object_get(o, "visitor");
    json_t *jid = json_object_get(o, "jid"), *pw = json_object_get(o, "password");
    if (!json_is_object(o) || (visitor && !json_is_boolean(visitor)))
        return GW_EINVAL;
    if (json_is_true(visitor))
        return jid || pw || json_object_size(o) != 1 ? GW_EINVAL : 0;
    if (!json_is_string(jid) || !json_is_string(pw) || !json_string_length(jid) ||
        !json_string_length(pw) || json_object_size(o) != 2 + (visitor ? 1u : 0u))
        return GW_EINVAL;
    req->jid = json_string_value(jid);
    req->password = json_string_value(pw);
    return 0;
}

static void start_prebind(struct post_req *pr)
{
    struct gw_prebind_req req = {.peer = pr->peer};
    json_t *o =
        json_loadb(gw_buf_ptr(&pr->body), gw_buf_size(&pr->body), JSON_REJECT_DUPLICATES, NULL);
    OPENSSL_cleanse(pr->body.data, pr->body.cap);
    int rc = prebind_body(pr, o, &req);
    req.visitor = rc == 0 && !req.jid;
    if (rc == 0)
        rc = pr->a->svc.bosh ? gw_bosh_prebind(pr->a->svc.bosh, &req, on_prebound, pr, &pr->pre)
                             : GW_ECLOSED;
    if (req.password) /* jansson's copy: its length is known, the memory is ours to wipe */
        OPENSSL_cleanse((char *)req.password, strlen(req.password));
    json_decref(o);
    if (rc == 0)
        return;
    if (rc == GW_EINVAL && !req.jid && !req.visitor)
        prebind_error(pr, 400,
                      "expected {\\\"jid\\\", \\\"password\\\"} or {\\\"visitor\\\": true}",
                      "bad-request");
    else if (rc == GW_EINVAL)
        prebind_error(pr, 400, "the JID is not valid, no upstream serves it, or visitors are off",
                      "bad-request");
    else if (rc == GW_ECLOSED)
        prebind_error(pr, 503, "prebind is not available now", "remote-connection-failed");
    else if (rc == GW_ELIMIT)
        prebind_error(pr, 429, "a limit was reached", "policy-violation");
    else
        prebind_error(pr, 500, "internal error", "internal-error");
}

/* ---- POST /api/drain ---- */

/* Start the drain (a second request changes nothing) and answer 202 at once. The body is empty
 * or a JSON object; no member is read. */
static void start_drain(struct post_req *pr)
{
    const struct gw_admin_services *svc = &pr->a->svc;
    json_t *o = gw_buf_size(&pr->body) ? json_loadb(gw_buf_ptr(&pr->body), gw_buf_size(&pr->body),
                                                    JSON_REJECT_DUPLICATES, NULL)
                                       : json_object();
    bool ok = json_is_object(o);
    json_decref(o);
    if (!ok) {
        prebind_error(pr, 400, "expected an empty body or a JSON object", "bad-request");
        return;
    }
    if (!svc->drain) {
        prebind_error(pr, 503, "drain is not available", "service-unavailable");
        return;
    }
    struct gw_admin_drain d = {0};
    svc->drain(svc->drain_ud, &d);
    GW_INFO(&pr->a->ctx->log, NULL, NULL, "admin: drain requested from %s", pr->peer);
    char body[128];
    int n =
        snprintf(body, sizeof(body), "{\"draining\":true,\"grace_seconds\":%u,\"sessions\":%zu}\n",
                 d.grace_s, d.sessions);
    post_answer(pr, 202, body, (size_t)n, NULL);
}

/* The body is in: answer now, or wait suspended for what the route started. */
static enum MHD_Result post_complete(struct gw_admin *a, struct MHD_Connection *conn,
                                     struct post_req *pr)
{
    if (pr->dropped)
        return reply_error(conn, GW_ADMIN_ERR_TOO_LARGE);
    if (!pr->status && !pr->pub && !pr->pre) {
        if (pr->route == GW_ADMIN_ROUTE_PREBIND)
            start_prebind(pr);
        else if (pr->route == GW_ADMIN_ROUTE_DRAIN)
            start_drain(pr);
        else
            start_publish(pr);
    }
    if (!pr->status) {
        pr->suspended = true;
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    if (!pr->resp)
        return reply_error(conn, GW_ADMIN_ERR_INTERNAL);
    struct MHD_Response *resp = pr->resp;
    pr->resp = NULL;
    return queue_response(conn, pr->status, resp, JSON_TYPE, NULL, NULL);
}

/* MHD is done with a request (answered, or its connection gone). A POST request still waiting
 * for the hub is cancelled here, so that no answer reaches a connection that is no more. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_state,
                         enum MHD_RequestTerminationCode toe)
{
    struct gw_admin *a = cls;
    if (!*req_state || *req_state == a)
        return;
    struct post_req *pr = *req_state;
    *req_state = NULL;
    if (pr->pub || pr->pre)
        GW_INFO(&a->ctx->log, NULL, NULL, "admin: %s: client gone before the answer (%d)",
                gw_admin_route_path(pr->route), (int)toe);
    post_req_free(pr);
}

/* ---- dispatch ---- */

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_state)
{
    struct gw_admin *a = cls;
    if (*req_state && *req_state != a) {
        struct post_req *pr = *req_state;
        if (*upload_data_size != 0)
            return post_body(pr, upload_data, upload_data_size);
        return post_complete(a, conn, pr);
    }
    struct gw_admin_decision d;
    decide(a, conn, url, method, &d);
    if (!*req_state) {
        /* First call, headers only. Refusals on the headers go out now: MHD then closes the
         * connection instead of reading a body nobody asked for. */
        if (d.refusal != GW_ADMIN_OK && d.at_once) {
            log_refusal(a, method, url, d.refusal);
            return reply_error(conn, d.refusal);
        }
        if (d.refusal == GW_ADMIN_OK && gw_admin_route_is_post(d.route)) {
            GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s", method, url);
            struct post_req *pr = post_req_new(a, conn, &d);
            if (!pr)
                return reply_error(conn, GW_ADMIN_ERR_INTERNAL);
            *req_state = pr;
            return MHD_YES;
        }
        /* Answers wait for the end of the request: MHD keeps the connection alive only for a
         * response queued after that. The mark needs no cleanup. */
        *req_state = a;
        return MHD_YES;
    }
    if (*upload_data_size != 0)
        return MHD_NO; /* a body after all: close the connection */
    GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s", method, url);
    if (d.refusal != GW_ADMIN_OK)
        return reply_error(conn, d.refusal);
    return serve[d.route](a, conn, &d);
}

/* ---- start / stop ---- */

static void format_addr(const struct gw_addr *addr, char *out, size_t outlen)
{
    if (strchr(addr->host, ':'))
        snprintf(out, outlen, "[%s]:%u", addr->host, (unsigned)addr->port);
    else
        snprintf(out, outlen, "%s:%u", addr->host, (unsigned)addr->port);
}

/* A literal is taken as is; a name is resolved here (once, before the loop runs). */
static int resolve_listen(const struct gw_addr *addr, struct sockaddr_storage *ss, bool *v6,
                          const char **why)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST;
    const char *node = addr->host[0] ? addr->host : NULL;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(node, NULL, &hints, &res);
    if (rc == EAI_NONAME) {
        hints.ai_flags = AI_PASSIVE;
        rc = getaddrinfo(node, NULL, &hints, &res);
    }
    if (rc != 0) {
        *why = gai_strerror(rc);
        return GW_EINVAL;
    }
    int out = GW_EINVAL;
    *why = "no IPv4 or IPv6 address";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET && ai->ai_addrlen <= sizeof(*ss)) {
            memset(ss, 0, sizeof(*ss));
            memcpy(ss, ai->ai_addr, ai->ai_addrlen);
            ((struct sockaddr_in *)ss)->sin_port = htons(addr->port);
            *v6 = false;
            out = 0;
            break;
        }
        if (ai->ai_family == AF_INET6 && ai->ai_addrlen <= sizeof(*ss)) {
            memset(ss, 0, sizeof(*ss));
            memcpy(ss, ai->ai_addr, ai->ai_addrlen);
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(addr->port);
            *v6 = true;
            out = 0;
            break;
        }
    }
    freeaddrinfo(res);
    return out;
}

/* The daemon, on ss (its port is the configured one). errno as start left it: 0, or why not. */
static int start_daemon(struct gw_admin *a, const struct sockaddr_storage *ss, bool v6)
{
    /* No MHD thread: the daemon is polled from the gateway's loop. Dual stack on an IPv6
     * address so that "::" also takes IPv4 clients. */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_DUAL_STACK;
    a->starting = true;
    errno = 0;
    /* clang-format off */
    a->mhd = MHD_start_daemon(flags, a->ctx->cfg->admin_listen.port, NULL, NULL, handle_request, a,
                              MHD_OPTION_EXTERNAL_LOGGER, log_mhd, a,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
                              MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)ss,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)ADMIN_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)ADMIN_MAX_CONNECTIONS,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_CONN_MEMORY,
                              MHD_OPTION_END);
    /* clang-format on */
    int saved = errno;
    a->starting = false;
    return saved;
}

struct gw_admin *gw_admin_start(struct gw_ctx *ctx, const struct gw_admin_services *svc, char *err,
                                size_t errlen)
{
    const struct gw_addr *la = &ctx->cfg->admin_listen;
    char where[300];
    format_addr(la, where, sizeof(where));

    struct sockaddr_storage ss;
    bool v6 = false;
    const char *why = NULL;
    if (resolve_listen(la, &ss, &v6, &why) != 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", where, why);
        return NULL;
    }
    struct gw_admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "admin: cannot listen on %s: out of memory", where);
        return NULL;
    }
    a->ctx = ctx;
    if (svc)
        a->svc = *svc;

    int saved = start_daemon(a, &ss, v6);
    if (!a->mhd) {
        /* MHD returns only NULL. In 0.9.75 errno then still holds what socket(), bind() or
         * listen() said; when it does not, MHD's own last message is the next best reason. */
        const char *reason = a->start_err[0] ? a->start_err : "cannot start";
        snprintf(err, errlen, "admin: cannot listen on %s: %s", where,
                 saved ? strerror(saved) : reason);
        free(a);
        return NULL;
    }

    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : la->port;
    info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int rc = info ? uv_poll_init(ctx->loop, &a->poll, info->epoll_fd) : UV_EINVAL;
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: cannot watch the server: %s", where,
                 uv_strerror(rc));
        MHD_stop_daemon(a->mhd);
        free(a);
        return NULL;
    }
    uv_timer_init(ctx->loop, &a->timer);
    uv_timer_init(ctx->loop, &a->lag);
    a->poll.data = a;
    a->timer.data = a;
    a->lag.data = a;
    a->open_handles = 3;
    rc = uv_poll_start(&a->poll, UV_READABLE, on_poll);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: cannot watch the server: %s", where,
                 uv_strerror(rc));
        close_handles(a); /* the memory goes with the handles, when the caller runs the loop */
        return NULL;
    }
    /* One run as soon as the loop turns, in case MHD already has something to do. */
    uv_timer_start(&a->timer, on_timer, 0, 0);
    a->lag_due_ns = uv_hrtime() + (uint64_t)LAG_PERIOD_MS * 1000000u;
    uv_timer_start(&a->lag, on_lag, LAG_PERIOD_MS, 0);
    struct gw_addr bound = *la;
    bound.port = a->port;
    format_addr(&bound, where, sizeof(where));
    GW_INFO(&ctx->log, NULL, NULL, "admin: listening on %s", where);
    return a;
}

void gw_admin_free(struct gw_admin *a)
{
    if (!a)
        return;
    close_handles(a);
}

uint16_t gw_admin_port(const struct gw_admin *a)
{
    return a->port;
}
