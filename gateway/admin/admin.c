/* The admin HTTP server: owns the libmicrohttpd daemon, the two uv handles that drive it from the
 * gateway's loop (a poll on MHD's epoll fd, a timer from MHD_get_timeout()), the routing table and
 * the checks every request passes first (Host header, bearer token). Bodies come from render.c.
 * Calls: render.c, config, core (host rules); libmicrohttpd, libuv, OpenSSL (digest and
 * constant-time compare only).
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
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "config/config.h"
#include "core/host.h"

#define ADMIN_TIMEOUT_S 30u             /* idle admin connections are closed after this */
#define ADMIN_MAX_CONNECTIONS 256u      /* concurrent admin connections */
#define ADMIN_CONN_MEMORY (32u * 1024u) /* per-connection memory for request line and headers */

#define TEXT_PLAIN "text/plain; charset=utf-8"
#define PROMETHEUS_TEXT "text/plain; version=0.0.4; charset=utf-8"
#define JSON_TYPE "application/json"

struct gw_admin {
    struct gw_ctx *ctx;     /* the gateway; cfg is read per request (reload replaces it) */
    struct MHD_Daemon *mhd; /* the daemon, external polling, epoll */
    uv_poll_t poll;         /* readable when MHD's epoll fd has events */
    uv_timer_t timer;       /* fires when MHD_get_timeout() says MHD must run */
    unsigned open_handles;  /* uv handles not closed yet; the struct goes with the last */
    uint16_t port;          /* the port bound */
    bool starting;          /* MHD messages go to start_err rather than the log */
    char start_err[256];    /* MHD's last message while starting, for err */
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

/* Every refusal, as a value until it goes out. The body is one JSON object, {"error": what a
 * person reads, "condition": what a program tests}, the same for every endpoint. */
enum admin_error {
    ERR_HOST,      /* Host header missing, doubled, or naming no address or name of ours */
    ERR_NO_TOKEN,  /* /api/ without a bearer token */
    ERR_BAD_TOKEN, /* /api/ with the wrong one */
    ERR_NOT_FOUND, /* no such path */
    ERR_METHOD,    /* not GET or HEAD */
    ERR_BODY,      /* a request body */
    ERR_LIMIT,     /* /api/sessions?limit= out of range */
    ERR_INTERNAL,  /* a body could not be rendered */
};

struct error_reply {
    unsigned status;    /* HTTP status */
    const char *body;   /* the JSON body, constant */
    const char *header; /* one extra header, or NULL */
    const char *value;  /* its value */
};

#define ERROR_BODY(text, cond) "{\"error\":\"" text "\",\"condition\":\"" cond "\"}\n"

/* 421 Misdirected Request rather than 403 for a Host we do not serve (RFC 9110 section
 * 15.5.20): the request reached a server that will not answer for that host, which is exactly the
 * case of a DNS-rebinding page or a wrong name; 403 would say the client lacks a permission that
 * a token could give. */
/* clang-format off */
static const struct error_reply error_replies[] = {
    [ERR_HOST] = {MHD_HTTP_MISDIRECTED_REQUEST,
                  ERROR_BODY("the Host header names no address or name of this admin port "
                             "(IP address, localhost, or admin.hosts)", "host-not-allowed"),
                  NULL, NULL},
    [ERR_NO_TOKEN] = {MHD_HTTP_UNAUTHORIZED,
                      ERROR_BODY("a bearer token is required", "not-authorized"),
                      MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"xmppgw\""},
    [ERR_BAD_TOKEN] = {MHD_HTTP_UNAUTHORIZED,
                       ERROR_BODY("the bearer token is not valid", "invalid-token"),
                       MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                       "Bearer realm=\"xmppgw\", error=\"invalid_token\""},
    [ERR_NOT_FOUND] = {MHD_HTTP_NOT_FOUND, ERROR_BODY("not found", "not-found"), NULL, NULL},
    [ERR_METHOD] = {MHD_HTTP_METHOD_NOT_ALLOWED,
                    ERROR_BODY("only GET and HEAD are allowed", "method-not-allowed"),
                    MHD_HTTP_HEADER_ALLOW, "GET, HEAD"},
    [ERR_BODY] = {MHD_HTTP_BAD_REQUEST,
                  ERROR_BODY("no request body expected", "bad-request"), NULL, NULL},
    [ERR_LIMIT] = {MHD_HTTP_BAD_REQUEST,
                   ERROR_BODY("limit must be between 1 and 10000", "bad-request"), NULL, NULL},
    [ERR_INTERNAL] = {MHD_HTTP_INTERNAL_SERVER_ERROR,
                      ERROR_BODY("internal error", "internal-error"), NULL, NULL},
};
/* clang-format on */

static enum MHD_Result reply_error(struct MHD_Connection *conn, enum admin_error e)
{
    const struct error_reply *r = &error_replies[e];
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(r->body), (void *)r->body, MHD_RESPMEM_PERSISTENT);
    return queue_response(conn, r->status, resp, JSON_TYPE, r->header, r->value);
}

static enum MHD_Result reply_render_error(struct gw_admin *a, struct MHD_Connection *conn,
                                          const char *what, int rc)
{
    GW_ERROR(&a->ctx->log, NULL, NULL, "admin: %s: %s", what, gw_strerror(rc));
    return reply_error(conn, ERR_INTERNAL);
}

/* ---- endpoints ---- */

static enum MHD_Result serve_healthz(struct gw_admin *a, struct MHD_Connection *conn)
{
    /* Answering at all proves the loop turns: this handler runs inside it. */
    return reply_text(conn, MHD_HTTP_OK, "ok\n");
}

static enum MHD_Result serve_readyz(struct gw_admin *a, struct MHD_Connection *conn)
{
    if (a->ctx->draining)
        return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "draining\n");
    return reply_text(conn, MHD_HTTP_OK, "ready\n");
}

static enum MHD_Result serve_metrics(struct gw_admin *a, struct MHD_Connection *conn)
{
    struct gw_buf b;
    gw_buf_init(&b, GW_ADMIN_METRICS_MAX);
    int rc = gw_admin_render_metrics(a->ctx, &b);
    if (rc) {
        gw_buf_cleanup(&b);
        return reply_render_error(a, conn, "metrics", rc);
    }
    return reply_buf(conn, MHD_HTTP_OK, PROMETHEUS_TEXT, &b);
}

static enum MHD_Result serve_status(struct gw_admin *a, struct MHD_Connection *conn)
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

/* "limit" query argument: absent = default; digits only, 1..GW_ADMIN_SESSIONS_LIMIT_MAX. */
static bool parse_limit(const char *s, size_t *out)
{
    if (!s) {
        *out = GW_ADMIN_SESSIONS_LIMIT_DEFAULT;
        return true;
    }
    size_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (size_t)(*s - '0');
        if (v > GW_ADMIN_SESSIONS_LIMIT_MAX)
            return false;
    }
    if (v == 0)
        return false;
    *out = v;
    return true;
}

static enum MHD_Result serve_sessions(struct gw_admin *a, struct MHD_Connection *conn)
{
    size_t limit;
    const char *arg = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "limit");
    if (!parse_limit(arg, &limit))
        return reply_error(conn, ERR_LIMIT);
    struct gw_buf b;
    gw_buf_init(&b, GW_ADMIN_SESSIONS_MAX);
    int rc = gw_admin_render_sessions(a->ctx, limit, &b);
    if (rc) {
        gw_buf_cleanup(&b);
        return reply_render_error(a, conn, "sessions", rc);
    }
    return reply_buf(conn, MHD_HTTP_OK, JSON_TYPE, &b);
}

struct route {
    const char *path;
    enum MHD_Result (*serve)(struct gw_admin *a, struct MHD_Connection *conn);
};

/* clang-format off */
static const struct route routes[] = {
    {"/healthz", serve_healthz},
    {"/readyz", serve_readyz},
    {"/metrics", serve_metrics},
    {"/status", serve_status},
    {"/api/sessions", serve_sessions},
};
/* clang-format on */

static const struct route *find_route(const char *path)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(routes[i].path, path) == 0)
            return &routes[i];
    return NULL;
}

/* ---- Host header ---- */

/* A page on any site can point its own name at 127.0.0.1 (DNS rebinding) and then read this
 * port from the operator's browser as same-origin; its requests still carry its own name in
 * Host. So the Host must be an address (which such a page cannot make its origin), "localhost",
 * or a name the operator listed in admin.hosts. h is the header's value, port optional:
 * "127.0.0.1:5281", "[::1]", "admin.example". */
static bool host_allowed(const struct gw_config *cfg, const char *h)
{
    char name[GW_HOST_MAX + 1];
    uint16_t port;
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        if (close && close[1] == '\0')
            return gw_host_ip_literal(h + 1, (size_t)(close - h - 1)) == GW_HOST_IP_V6;
        return gw_host_parse_addr(h, name, sizeof(name), &port) == 0; /* checks the IPv6 */
    }
    if (strchr(h, ':')) {
        if (gw_host_parse_addr(h, name, sizeof(name), &port) != 0)
            return false;
    } else {
        size_t n = strlen(h);
        if (!gw_host_name_valid(h, n)) /* also bounds n to GW_HOST_MAX */
            return false;
        memcpy(name, h, n + 1);
    }
    if (gw_host_ip_literal(name, strlen(name)) == GW_HOST_IP_V4 ||
        strcasecmp(name, "localhost") == 0)
        return true;
    unsigned n = cfg->n_admin_hosts < GW_CFG_MAX_LIST ? cfg->n_admin_hosts : GW_CFG_MAX_LIST;
    for (unsigned i = 0; i < n; i++)
        if (strcasecmp(name, cfg->admin_hosts[i]) == 0)
            return true;
    return false;
}

struct host_count {
    unsigned n;        /* Host headers seen */
    const char *value; /* the first one's value */
};

static enum MHD_Result count_host(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    struct host_count *hc = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0 && hc->n++ == 0)
        hc->value = value;
    return MHD_YES;
}

/* Exactly one Host header (RFC 9112 section 3.2), and one host_allowed() takes. */
static bool check_host(struct gw_admin *a, struct MHD_Connection *conn)
{
    struct host_count hc = {0, NULL};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_host, &hc);
    return hc.n == 1 && hc.value && host_allowed(a->ctx->cfg, hc.value);
}

/* ---- bearer token ---- */

/* Compare digests, not the strings: the time taken then tells nothing about the token, not even
 * its length. */
static bool token_matches(const char *want, const char *got, size_t got_len)
{
    unsigned char dw[SHA256_DIGEST_LENGTH], dg[SHA256_DIGEST_LENGTH];
    if (!SHA256((const unsigned char *)want, strlen(want), dw) ||
        !SHA256((const unsigned char *)got, got_len, dg))
        return false;
    return CRYPTO_memcmp(dw, dg, sizeof(dw)) == 0;
}

enum auth { AUTH_OK, AUTH_MISSING, AUTH_WRONG };

static enum auth check_token(struct gw_admin *a, struct MHD_Connection *conn)
{
    const char *want = a->ctx->cfg->admin_token;
    if (!want[0])
        return AUTH_OK;
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    /* RFC 6750: scheme case-insensitive, one or more spaces, then the token. */
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return AUTH_MISSING;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    return token_matches(want, tok, len) ? AUTH_OK : AUTH_WRONG;
}

/* ---- dispatch ---- */

static bool has_body(struct MHD_Connection *conn)
{
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return te || (cl && strspn(cl, "0") != strlen(cl));
}

/* The refusals decided on the headers alone, in order: Host first (a page that may not ask must
 * not learn even whether a token is set), then the token, then path, method and body. Returns
 * true and sets *e when the request is refused. */
static bool refuse_early(struct gw_admin *a, struct MHD_Connection *conn, const char *url,
                         const char *method, const struct route *r, enum admin_error *e)
{
    if (!check_host(a, conn)) {
        GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s: Host not allowed", method, url);
        *e = ERR_HOST;
        return true;
    }
    /* The token guards the whole /api/ tree, known paths or not, so that a new endpoint there
     * cannot be left open by mistake. */
    enum auth au = strncmp(url, "/api/", 5) == 0 ? check_token(a, conn) : AUTH_OK;
    if (au != AUTH_OK) {
        GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s: %s token", method, url,
                 au == AUTH_MISSING ? "no" : "wrong");
        *e = au == AUTH_MISSING ? ERR_NO_TOKEN : ERR_BAD_TOKEN;
        return true;
    }
    if (!r)
        *e = ERR_NOT_FOUND;
    else if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        *e = ERR_METHOD;
    else if (has_body(conn)) /* MHD cannot answer in the middle of a body: refuse before it */
        *e = ERR_BODY;
    else
        return false;
    return true;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_state)
{
    struct gw_admin *a = cls;
    const struct route *r = find_route(url);
    if (!*req_state) {
        /* First call, headers only. Refusals go out now: MHD then closes the connection instead
         * of reading a body nobody asked for. */
        enum admin_error e;
        if (refuse_early(a, conn, url, method, r, &e))
            return reply_error(conn, e);
        /* Answers wait for the end of the request: MHD keeps the connection alive only for a
         * response queued after that. The mark needs no cleanup. */
        *req_state = a;
        return MHD_YES;
    }
    if (*upload_data_size != 0)
        return MHD_NO; /* a body after all: close the connection */
    GW_DEBUG(&a->ctx->log, NULL, NULL, "admin: %s %s", method, url);
    return r->serve(a, conn);
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

struct gw_admin *gw_admin_start(struct gw_ctx *ctx, char *err, size_t errlen)
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

    /* No MHD thread: the daemon is polled from the gateway's loop. Dual stack on an IPv6
     * address so that "::" also takes IPv4 clients. */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_DUAL_STACK;
    a->starting = true;
    errno = 0;
    /* clang-format off */
    a->mhd = MHD_start_daemon(flags, la->port, NULL, NULL, handle_request, a,
                              MHD_OPTION_EXTERNAL_LOGGER, log_mhd, a,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)ADMIN_TIMEOUT_S,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)ADMIN_MAX_CONNECTIONS,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_CONN_MEMORY,
                              MHD_OPTION_END);
    /* clang-format on */
    int saved = errno;
    a->starting = false;
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
    a->poll.data = a;
    a->timer.data = a;
    a->open_handles = 2;
    rc = uv_poll_start(&a->poll, UV_READABLE, on_poll);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: cannot watch the server: %s", where,
                 uv_strerror(rc));
        close_handles(a); /* the memory goes with the handles, when the caller runs the loop */
        return NULL;
    }
    /* One run as soon as the loop turns, in case MHD already has something to do. */
    uv_timer_start(&a->timer, on_timer, 0, 0);
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
