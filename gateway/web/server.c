/* The public port: one libwebsockets context on the gateway's libuv loop (a foreign loop), its
 * protocols (default HTTP, "xmpp" WebSocket, BOSH), mounts (BOSH path, /.well-known/, static files,
 * the browser libraries from node_modules), the WebSocket upgrade policy and XEP-0156 host-meta.
 * Owns the lws context; the transports are main.c's. Calls: web transports, config, core. */
#include "web/web.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/host.h"
#include "core/log.h"
#include "web/bosh.h"
#include "web/demo.h"
#include "web/prebind.h"
#include "web/sse.h"
#include "web/websocket.h"

#define HTTP_PROTOCOL "xmppgw-http"
#define N_MOUNTS 7 /* BOSH, /.well-known, /lib/strophe, / (static), /events, /prebind, demo */

struct gw_web {
    struct gw_ctx *ctx;
    struct lws_context *lws;
    void *foreign_loops[1];
    struct lws_protocols protocols[7];
    struct lws_http_mount mounts[N_MOUNTS * 2]; /* each also under public_url's path prefix */
    char prefixed[N_MOUNTS][256];               /* those mount points (lws: at most 255 bytes) */
    struct lws_protocol_vhost_options mime_mjs; /* .mjs is JavaScript */
    lws_retry_bo_t retry;                       /* WebSocket ping / hang-up policy */
    struct lws_extension exts[2];
    char strophe_dir[1100]; /* node_modules/strophe.js/dist */
    /* Copies of what lws keeps pointers to: a reload frees the snapshot they came from. */
    char bosh_path[sizeof(((struct gw_config *)0)->bosh_path)];
    char static_root[sizeof(((struct gw_config *)0)->static_root)];
    char iface[sizeof(((struct gw_config *)0)->listen.host)];
    char tls_cert[sizeof(((struct gw_config *)0)->tls_cert)];
    char tls_key[sizeof(((struct gw_config *)0)->tls_key)];
};

/* ---- the default HTTP protocol ---- */

/* Would lws bind this connection to the "xmpp" protocol? lws takes the first name in the
 * client's comma-separated Sec-WebSocket-Protocol list that is one of its protocols (compared as
 * written), so "xmpp" must come before any other name the server knows, spelt exactly. */
static bool selects_xmpp(const struct lws_protocols *protocols, const char *list)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        for (const struct lws_protocols *k = protocols; n && k->name; k++)
            if (strlen(k->name) == n && strncmp(p, k->name, n) == 0)
                return strcmp(k->name, GW_WS_PROTOCOL) == 0;
        p += n;
    }
    return false;
}

static int refuse_with(struct lws *wsi, unsigned status, const char *why, const char *extra)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    char peer[64], hdrs[128];
    gw_web_peer(wsi, peer, sizeof(peer));
    GW_INFO(&ctx->log, NULL, NULL, "websocket upgrade from %s refused (%u): %s", peer, status, why);
    char body[256];
    int n = snprintf(body, sizeof(body), "%s\n", why);
    snprintf(hdrs, sizeof(hdrs), "Connection: close\r\n%s", extra);
    gw_web_respond(wsi, status, "text/plain; charset=utf-8", hdrs, body, (size_t)n);
    return 1;
}

static int refuse(struct lws *wsi, unsigned status, const char *why)
{
    return refuse_with(wsi, status, why, "");
}

/* RFC 6455 4.2.1 and 4.2.2, which lws 4.1.6 lets through to this callback: a Host, a
 * Sec-WebSocket-Key of 16 bytes in base64, Sec-WebSocket-Version 13 (426 naming it otherwise). */
static int check_handshake(struct lws *wsi)
{
    char key[64], version[16];
    if (!gw_web_host_one(wsi))
        return refuse(wsi, 400, "a WebSocket handshake needs one Host (RFC 6455 4.2.1)");
    if (gw_web_header(wsi, WSI_TOKEN_KEY, key, sizeof(key)) != 24 || key[22] != '=' ||
        key[23] != '=')
        return refuse(wsi, 400, "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455 4.2.1)");
    if (gw_web_header(wsi, WSI_TOKEN_VERSION, version, sizeof(version)) <= 0)
        return refuse(wsi, 400, "Sec-WebSocket-Version is required (RFC 6455 4.2.1)");
    if (strcmp(version, "13") != 0)
        return refuse_with(wsi, 426, "only Sec-WebSocket-Version 13 is spoken (RFC 6455 4.2.2)",
                           "Sec-WebSocket-Version: 13\r\n");
    return 0;
}

static int confirm_upgrade(struct lws *wsi, const char *to)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    char uri[512], proto[256], origin[512];
    if (strcasecmp(to, "websocket") != 0)
        return refuse(wsi, 400, "only WebSocket upgrades are accepted");
    if (gw_web_header(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)) < 0)
        return refuse(wsi, 400, "WebSocket upgrade needs GET");
    if (check_handshake(wsi))
        return 1;
    char *q = strchr(uri, '?');
    if (q)
        *q = '\0';
    if (strcmp(gw_web_unprefixed(ctx->cfg, uri), ctx->cfg->ws_path) != 0)
        return refuse(wsi, 404, "no WebSocket endpoint here");
    if (gw_web_header(wsi, WSI_TOKEN_PROTOCOL, proto, sizeof(proto)) < 0 ||
        !selects_xmpp(((struct gw_web *)gw_web_transport(wsi))->protocols, proto))
        return refuse(wsi, 400, "the 'xmpp' WebSocket subprotocol is required (RFC 7395)");
    if (!gw_web_origin_allowed(wsi, origin, sizeof(origin)))
        return refuse(wsi, 403, "origin not allowed");
    return 0;
}

/* XEP-0156: where the BOSH and WebSocket endpoints are, as the client sees them: scheme, host and
 * path prefix past any trusted proxy (gw_web_public_base). */
static int host_meta(struct lws *wsi, bool json)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    struct gw_web_public pub;
    gw_web_public_base(wsi, &pub);
    char host[sizeof(pub.host) + sizeof(pub.prefix)];
    if (pub.host[0])
        snprintf(host, sizeof(host), "%s%s", pub.host, pub.prefix);
    else
        snprintf(host, sizeof(host), "%s:%u%s", ctx->cfg->listen.host, ctx->cfg->listen.port,
                 pub.prefix);
    /* The Host header is the client's: keep only what a host[:port] and a path may hold. */
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(".-:[]/_~", *p)))
            *p = '_';
    bool tls = pub.https;
    struct gw_buf b;
    gw_buf_init(&b, 4096);
    int rc;
    if (json)
        rc = gw_buf_printf(&b,
                           "{\"links\":[{\"rel\":\"urn:xmpp:alt-connections:xbosh\",\"href\":"
                           "\"%s://%s%s\"},{\"rel\":\"urn:xmpp:alt-connections:websocket\","
                           "\"href\":\"%s://%s%s\"}]}\n",
                           tls ? "https" : "http", host, ctx->cfg->bosh_path, tls ? "wss" : "ws",
                           host, ctx->cfg->ws_path);
    else
        rc = gw_buf_printf(&b,
                           "<?xml version='1.0' encoding='utf-8'?>\n"
                           "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
                           "  <Link rel='urn:xmpp:alt-connections:xbosh' href='%s://%s%s'/>\n"
                           "  <Link rel='urn:xmpp:alt-connections:websocket' href='%s://%s%s'/>\n"
                           "</XRD>\n",
                           tls ? "https" : "http", host, ctx->cfg->bosh_path, tls ? "wss" : "ws",
                           host, ctx->cfg->ws_path);
    int r;
    if (rc)
        r = gw_web_respond(wsi, 500, "text/plain", NULL, "error\n", 6);
    else
        r = gw_web_respond(wsi, 200, json ? "application/json" : "application/xrd+xml",
                           "Access-Control-Allow-Origin: *\r\n", gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    return r;
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(wsi, in ? (const char *)in : "");
    case LWS_CALLBACK_HTTP: {
        struct gw_ctx *ctx = gw_web_ctx(wsi);
        ctx->metrics.http_requests++;
        char uri[256];
        if (gw_web_header(wsi, WSI_TOKEN_GET_URI, uri, sizeof(uri)) < 0)
            return gw_web_respond(wsi, 405, "text/plain", "Allow: GET\r\n", "method not allowed\n",
                                  19);
        char *q = strchr(uri, '?');
        if (q)
            *q = '\0';
        const char *path = gw_web_unprefixed(ctx->cfg, uri);
        if (strcmp(path, "/.well-known/host-meta") == 0)
            return host_meta(wsi, false);
        if (strcmp(path, "/.well-known/host-meta.json") == 0)
            return host_meta(wsi, true);
        return gw_web_respond(wsi, 404, "text/plain", NULL, "not found\n", 10);
    }
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ---- start and stop ---- */

static void lws_log_line(int level, const char *line)
{
    /* lws lines end with a newline, which the logger would escape: leave it out. */
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    gw_log(NULL, level == LLL_ERR ? GW_LOG_ERROR : GW_LOG_WARN, NULL, NULL, "lws: %.*s", (int)n,
           line);
}

/* lws gives no reason when it cannot listen: try the address first to say why. */
static int probe_listen(const struct gw_addr *a, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (gw_host_sockaddr(a->host, a->port, &ss, &sl) != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: the address must be an IP literal", a->host,
                 a->port);
        return GW_EIO;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", a->host, a->port, strerror(errno));
        return GW_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, (struct sockaddr *)&ss, sl);
    int e = errno;
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", a->host, a->port, strerror(e));
        return GW_EIO;
    }
    return 0;
}

/* The protocols: default HTTP (host-meta, upgrade policy), "xmpp" WebSocket, BOSH. Each
 * transport finds its own state in its protocol's user pointer (gw_web_transport()). */
static void set_protocols(struct gw_web *web, const struct gw_web_transports *tr)
{
    web->protocols[0] = (struct lws_protocols){HTTP_PROTOCOL, http_callback, 0, 0, 0, web, 0};
    web->protocols[1] = (struct lws_protocols){
        GW_WS_PROTOCOL, gw_ws_callback, gw_ws_pss_size(), GW_WS_RX_BUFFER, 0, tr->ws, 0};
    web->protocols[2] = (struct lws_protocols){
        GW_BOSH_PROTOCOL, gw_bosh_callback, gw_bosh_pss_size(), 0, 0, tr->bosh, 0};
    web->protocols[3] = (struct lws_protocols){
        GW_SSE_PROTOCOL, gw_sse_callback, gw_sse_pss_size(), 0, 0, tr->sse, 0};
    /* The public prebind makes BOSH sessions: its state is the BOSH transport's. */
    web->protocols[4] = (struct lws_protocols){
        GW_PREBIND_PROTOCOL, gw_prebind_callback, gw_prebind_pss_size(), 0, 0, tr->bosh, 0};
    web->protocols[5] = (struct lws_protocols){
        GW_DEMO_PROTOCOL, gw_demo_callback, gw_demo_pss_size(), 0, 0, tr->demo, 0};
}

/* public_url "https://example.org/chat/": every mount again under "/chat", so that a proxy may
 * pass the path as it is or strip the prefix. Returns how many were added (0 without a prefix). */
static int prefix_mounts(struct gw_web *web, const struct gw_config *cfg)
{
    struct gw_public_url u;
    if (!cfg->public_url[0] || gw_config_parse_public_url(cfg->public_url, &u) != 0 || !u.prefix[0])
        return 0;
    for (int i = 0; i < N_MOUNTS; i++) {
        struct lws_http_mount *m = &web->mounts[N_MOUNTS + i];
        *m = web->mounts[i];
        const char *mp = web->mounts[i].mountpoint;
        /* "/" becomes "/chat": lws matches a mount point followed by '/' or the end. */
        snprintf(web->prefixed[i], sizeof(web->prefixed[i]), "%s%s", u.prefix,
                 strcmp(mp, "/") == 0 ? "" : mp);
        m->mountpoint = web->prefixed[i];
    }
    return N_MOUNTS;
}

/* Mounts: lws picks the longest matching mountpoint. */
static void set_mounts(struct gw_web *web, const struct gw_config *cfg)
{
    snprintf(web->strophe_dir, sizeof(web->strophe_dir), "%s/strophe.js/dist", cfg->node_modules);
    snprintf(web->bosh_path, sizeof(web->bosh_path), "%s", cfg->bosh_path);
    snprintf(web->static_root, sizeof(web->static_root), "%s", cfg->static_root);
    web->mime_mjs = (struct lws_protocol_vhost_options){NULL, NULL, ".mjs", "text/javascript"};
    struct lws_http_mount *m = web->mounts;
    m[0].mountpoint = web->bosh_path;
    m[0].origin = GW_BOSH_PROTOCOL;
    m[0].origin_protocol = LWSMPRO_CALLBACK;
    m[1].mountpoint = "/.well-known";
    m[1].origin = HTTP_PROTOCOL;
    m[1].origin_protocol = LWSMPRO_CALLBACK;
    m[2].mountpoint = "/lib/strophe";
    m[2].origin = web->strophe_dir;
    m[2].origin_protocol = LWSMPRO_FILE;
    m[2].extra_mimetypes = &web->mime_mjs;
    m[3].mountpoint = "/";
    m[3].origin = web->static_root;
    m[3].def = "index.html";
    m[3].origin_protocol = LWSMPRO_FILE;
    m[3].extra_mimetypes = &web->mime_mjs;
    m[4].mountpoint = GW_SSE_PATH;
    m[4].origin = GW_SSE_PROTOCOL;
    m[4].origin_protocol = LWSMPRO_CALLBACK;
    m[5].mountpoint = GW_PREBIND_PATH;
    m[5].origin = GW_PREBIND_PROTOCOL;
    m[5].origin_protocol = LWSMPRO_CALLBACK;
    m[6].mountpoint = GW_DEMO_PATH;
    m[6].origin = GW_DEMO_PROTOCOL;
    m[6].origin_protocol = LWSMPRO_CALLBACK;
    int n = N_MOUNTS + prefix_mounts(web, cfg);
    for (int i = 0; i < n; i++) {
        m[i].mountpoint_len = (unsigned char)strlen(m[i].mountpoint);
        m[i].mount_next = i < n - 1 ? &m[i + 1] : NULL;
    }
}

/* WebSocket options: pings and hang-up, permessage-deflate when configured. */
static void set_ws_options(struct gw_web *web, struct lws_context_creation_info *info)
{
    const struct gw_config *cfg = web->ctx->cfg;
    web->exts[0] = (struct lws_extension){"permessage-deflate", lws_extension_callback_pm_deflate,
                                          "permessage-deflate; client_no_context_takeover; "
                                          "client_max_window_bits"};
    if (cfg->ws_deflate) {
        info->extensions = web->exts;
        GW_WARN(&web->ctx->log, NULL, NULL,
                "websocket.deflate is on: libwebsockets 4.1.6's permessage-deflate can stall or "
                "abort on client input (see config/README.md)");
    }
    if (cfg->ws_ping_interval) {
        web->retry.secs_since_valid_ping = (uint16_t)cfg->ws_ping_interval;
        web->retry.secs_since_valid_hangup = (uint16_t)(cfg->ws_ping_interval * 2 + 10);
        info->retry_and_idle_policy = &web->retry;
    }
}

static void set_context_info(struct gw_web *web, struct lws_context_creation_info *info)
{
    struct gw_ctx *ctx = web->ctx;
    const struct gw_config *cfg = ctx->cfg;
    web->foreign_loops[0] = ctx->loop;
    memset(info, 0, sizeof(*info));
    info->options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_UV_NO_SIGSEGV_SIGFPE_SPIN;
    info->foreign_loops = web->foreign_loops;
    info->port = cfg->listen.port;
    snprintf(web->iface, sizeof(web->iface), "%s", cfg->listen.host);
    info->iface = web->iface;
    if (gw_host_ip_literal(cfg->listen.host, strlen(cfg->listen.host)) != GW_HOST_IP_V6)
        info->options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    info->protocols = web->protocols;
    info->mounts = web->mounts;
    info->user = ctx;
    info->pcontext = &web->lws; /* lws clears it when its destruction has completed */
    info->alpn = "http/1.1";
    info->server_string = "xmppgw";
    info->keepalive_timeout = 60;
    info->timeout_secs = 30;
    /* lws cuts headers this long after the first byte, whatever arrives meanwhile. */
    info->timeout_secs_ah_idle = cfg->http_header_timeout;
    if (cfg->tls_cert[0]) {
        info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        snprintf(web->tls_cert, sizeof(web->tls_cert), "%s", cfg->tls_cert);
        snprintf(web->tls_key, sizeof(web->tls_key), "%s", cfg->tls_key);
        info->ssl_cert_filepath = web->tls_cert;
        info->ssl_private_key_filepath = web->tls_key;
    }
    set_ws_options(web, info);
}

struct gw_web *gw_web_start(struct gw_ctx *ctx, const struct gw_web_transports *tr, char *err,
                            size_t errlen)
{
    const struct gw_config *cfg = ctx->cfg;
    if (probe_listen(&cfg->listen, err, errlen) != 0)
        return NULL;
    struct gw_web *web = calloc(1, sizeof(*web));
    if (!web) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    web->ctx = ctx;
    set_protocols(web, tr);
    set_mounts(web, cfg);
    struct lws_context_creation_info info;
    set_context_info(web, &info);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);
    web->lws = lws_create_context(&info);
    if (!web->lws) {
        snprintf(err, errlen, "cannot listen on %s:%u (see the lws lines above)", cfg->listen.host,
                 cfg->listen.port);
        gw_web_free(web);
        return NULL;
    }
    GW_INFO(&ctx->log, NULL, NULL, "public port %s %s:%u: WebSocket %s, BOSH %s",
            cfg->tls_cert[0] ? "https" : "http", cfg->listen.host, cfg->listen.port, cfg->ws_path,
            cfg->bosh_path);
    return web;
}

void gw_web_stop_listening(struct gw_web *web)
{
    /* lws closes the listening sockets (asynchronously on libuv); connections already accepted
     * go on. Once none is left it raises SIGINT on the process (lws's way to end a deprecated
     * context): main.c ignores that after the grace. */
    if (web && web->lws && !lws_context_is_deprecated(web->lws))
        lws_context_deprecate(web->lws, NULL);
}

void gw_web_free(struct gw_web *web)
{
    if (!web)
        return;
    struct gw_ctx *ctx = web->ctx;
    if (web->lws) {
        /* On a foreign loop lws closes its handles asynchronously: let the loop run until it says
         * it is done (pcontext cleared), then a second call frees what is left. */
        lws_context_destroy(web->lws);
        for (int i = 0; web->lws && i < 1000 && uv_run(ctx->loop, UV_RUN_NOWAIT); i++)
            ;
        if (web->lws)
            lws_context_destroy(web->lws);
        web->lws = NULL;
    }
    free(web);
}
