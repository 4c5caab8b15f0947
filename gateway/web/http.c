/* Helpers the transports share on the public port: the context of a connection, headers, the
 * Origin policy, the client's address and public scheme and host (past a trusted proxy), whole
 * responses, CORS headers. Calls: lws, config, core, web/forwarded. */
#include "web/web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/err.h"
#include "core/host.h"
#include "core/log.h"
#include "web/forwarded.h"

struct gw_ctx *gw_web_ctx(struct lws *wsi)
{
    return lws_context_user(lws_get_context(wsi));
}

void *gw_web_transport(struct lws *wsi)
{
    const struct lws_protocols *p = lws_get_protocol(wsi);
    return p ? p->user : NULL;
}

int gw_web_header(struct lws *wsi, enum lws_token_indexes tok, char *out, size_t outlen)
{
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0 || (size_t)n + 1 > outlen) {
        if (outlen)
            out[0] = '\0';
        return -1;
    }
    if (lws_hdr_copy(wsi, out, (int)outlen, tok) < 0) {
        out[0] = '\0';
        return -1;
    }
    return n;
}

bool gw_web_host_one(struct lws *wsi)
{
    char host[300];
    int n = lws_hdr_copy_fragment(wsi, host, (int)sizeof(host), WSI_TOKEN_HOST, 0);
    if (n <= 0 || lws_hdr_fragment_length(wsi, WSI_TOKEN_HOST, 1) > 0)
        return false;
    for (int i = 0; i < n; i++)
        if ((unsigned char)host[i] <= ' ' || (unsigned char)host[i] >= 0x7f)
            return false;
    return true;
}

int gw_web_origin_parse(const char *s, struct gw_web_origin *out)
{
    if (!s || !out)
        return GW_EINVAL;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c <= ' ' || *c > '~')
            return GW_EINVAL; /* controls, spaces, DEL, anything not ASCII */
    bool https = strncasecmp(s, "https://", 8) == 0;
    if (!https && strncasecmp(s, "http://", 7) != 0)
        return GW_EINVAL;
    const char *host = s + (https ? 8 : 7), *end;
    if (*host == '[') {
        end = strchr(host, ']');
        if (!end)
            return GW_EINVAL;
        end++;
    } else {
        end = host + strcspn(host, ":");
    }
    size_t hl = (size_t)(end - host);
    if (hl == 0 || hl > GW_HOST_MAX || !gw_host_domain_valid(host, hl))
        return GW_EINVAL; /* also a path, a query, userinfo: no host holds '/', '?' or '@' */
    uint16_t port = https ? 443 : 80;
    if (*end == ':') {
        if (gw_host_parse_port(end + 1, strlen(end + 1), &port) != 0)
            return GW_EINVAL;
    } else if (*end) {
        return GW_EINVAL;
    }
    out->https = https;
    memcpy(out->host, host, hl);
    out->host[hl] = '\0';
    out->port = port;
    out->authority = host;
    return 0;
}

static bool is_loopback_host(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
           strcmp(host, "[::1]") == 0;
}

/* Same scheme, host (ASCII case aside) and port, the scheme's default filled in (RFC 6454 5). */
static bool origin_equal(const struct gw_web_origin *a, const struct gw_web_origin *b)
{
    return a->https == b->https && a->port == b->port && strcasecmp(a->host, b->host) == 0;
}

bool gw_web_origin_check(const struct gw_config *cfg, const char *origin, const char *reqhost)
{
    if (!origin || !*origin)
        return true;
    struct gw_web_origin o, entry;
    bool opaque = strcmp(origin, "null") == 0; /* RFC 6454 7.3: sandboxed pages, file: URLs */
    if (!opaque && gw_web_origin_parse(origin, &o) != 0)
        return false;
    for (unsigned i = 0; i < cfg->n_origins; i++) {
        const char *rule = cfg->origins[i];
        if (strcmp(rule, "*") == 0)
            return true;
        if (opaque)
            continue;
        if (strcmp(rule, "same-host") == 0) {
            if (reqhost && strcasecmp(reqhost, o.authority) == 0)
                return true;
        } else if (strcmp(rule, "localhost") == 0) {
            if (is_loopback_host(o.host))
                return true;
        } else if (gw_web_origin_parse(rule, &entry) == 0 && origin_equal(&o, &entry)) {
            return true;
        }
    }
    return false;
}

bool gw_web_origin_allowed(struct lws *wsi, char *origin, size_t originlen)
{
    int n = gw_web_header(wsi, WSI_TOKEN_ORIGIN, origin, originlen);
    if (n < 0) {
        /* Absent (non-browser client) is allowed; present but over-long is not. */
        return lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0;
    }
    if (strlen(origin) != (size_t)n)
        return false; /* a NUL inside: the C string would be only the part before it */
    /* "same-host": the host the client asked for, past any proxy. */
    struct gw_web_public pub;
    gw_web_public_base(wsi, &pub);
    return gw_web_origin_check(gw_web_ctx(wsi)->cfg, origin, pub.host[0] ? pub.host : NULL);
}

/* ---- behind a proxy ---- */

#define FWD_BUF (GW_FWD_HEADER_MAX + 1)

/* The TCP peer's address as text, IPv4-mapped IPv6 as IPv4. */
static void tcp_peer(struct lws *wsi, char *out, size_t outlen)
{
    char buf[64]; /* an IPv6 address as text is at most 45 bytes */
    buf[0] = '\0';
    lws_get_peer_simple(wsi, buf, sizeof(buf));
    const char *p = buf;
    if (strncmp(p, "::ffff:", 7) == 0 && strchr(p + 7, '.'))
        p += 7;
    snprintf(out, outlen, "%s", p);
}

/* One forwarding header into out[FWD_BUF]: X-Forwarded-For (lws joins repeated lines with ',')
 * when name is NULL, else a header lws has no token for (lws hands over the first of repeated
 * ones: the recipes make the proxy replace these). 1 present, 0 absent, -1 too long or holding a
 * NUL. */
static int fwd_header(struct lws *wsi, const char *name, char *out)
{
    int nl = name ? (int)strlen(name) : 0;
    int len = name ? lws_hdr_custom_length(wsi, name, nl)
                   : lws_hdr_total_length(wsi, WSI_TOKEN_X_FORWARDED_FOR);
    if (len < 0 || (!name && len == 0))
        return 0;
    if (len > GW_FWD_HEADER_MAX)
        return -1;
    int n = name ? lws_hdr_custom_copy(wsi, out, FWD_BUF, name, nl)
                 : lws_hdr_copy(wsi, out, FWD_BUF, WSI_TOKEN_X_FORWARDED_FOR);
    return n < 0 || strlen(out) != (size_t)n ? -1 : 1;
}

/* What a trusted proxy's forwarding headers say about this request. false when there is nothing
 * to believe: no such headers, a peer not in trusted_proxies, or headers malformed (debug line). */
static bool forwarded(struct lws *wsi, struct gw_fwd *out)
{
    static const char *const names[] = {"forwarded:", NULL /* X-Forwarded-For */,
                                        "x-forwarded-proto:", "x-forwarded-host:"};
    char buf[4][FWD_BUF];
    const char *v[4] = {NULL, NULL, NULL, NULL};
    bool any = false, unreadable = false;
    for (int i = 0; i < 4; i++) {
        buf[i][0] = '\0';
        int r = fwd_header(wsi, names[i], buf[i]);
        any |= r != 0;
        unreadable |= r < 0;
        v[i] = r > 0 ? buf[i] : NULL;
    }
    if (!any)
        return false;
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    char peer[64], why[160];
    tcp_peer(wsi, peer, sizeof(peer));
    struct gw_cidr ranges[GW_CFG_MAX_LIST];
    unsigned n = gw_fwd_ranges(ctx->cfg, ranges);
    if (!gw_fwd_trusted(ranges, n, peer)) {
        GW_DEBUG(&ctx->log, NULL, NULL, "forwarding headers from %s ignored: not a trusted proxy",
                 peer);
        return false;
    }
    struct gw_fwd_headers h = {v[0], v[1], v[2], v[3], unreadable};
    if (gw_fwd_parse(&h, ranges, n, out, why, sizeof(why)) != 0) {
        GW_DEBUG(&ctx->log, NULL, NULL, "forwarding headers from %s ignored: %s", peer, why);
        return false;
    }
    return true;
}

void gw_web_peer(struct lws *wsi, char *out, size_t outlen)
{
    struct gw_fwd f;
    if (forwarded(wsi, &f) && f.addr[0])
        snprintf(out, outlen, "%s", f.addr);
    else
        tcp_peer(wsi, out, outlen);
}

void gw_web_public_base(struct lws *wsi, struct gw_web_public *out)
{
    const struct gw_config *cfg = gw_web_ctx(wsi)->cfg;
    struct gw_public_url u;
    memset(out, 0, sizeof(*out));
    if (cfg->public_url[0] && gw_config_parse_public_url(cfg->public_url, &u) == 0) {
        out->https = u.https;
        snprintf(out->host, sizeof(out->host), "%s", u.authority);
        snprintf(out->prefix, sizeof(out->prefix), "%s", u.prefix);
    } else {
        out->https = lws_is_ssl(wsi);
        if (gw_web_header(wsi, WSI_TOKEN_HOST, out->host, sizeof(out->host)) < 0)
            out->host[0] = '\0';
    }
    struct gw_fwd f;
    if (!forwarded(wsi, &f))
        return;
    if (f.scheme != GW_FWD_SCHEME_NONE)
        out->https = f.scheme == GW_FWD_SCHEME_HTTPS;
    if (f.host[0])
        snprintf(out->host, sizeof(out->host), "%s", f.host);
}

const char *gw_web_unprefixed(const struct gw_config *cfg, const char *uri)
{
    struct gw_public_url u;
    if (!cfg->public_url[0] || gw_config_parse_public_url(cfg->public_url, &u) != 0 || !u.prefix[0])
        return uri;
    size_t n = strlen(u.prefix);
    return strncmp(uri, u.prefix, n) == 0 && uri[n] == '/' ? uri + n : uri;
}

int gw_web_respond(struct lws *wsi, unsigned status, const char *content_type,
                   const char *extra_headers, const char *body, size_t body_len)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    if (status >= 400)
        ctx->metrics.http_errors++;
    unsigned char hdr[LWS_PRE + 4096];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (lws_add_http_common_headers(wsi, status, content_type, body_len, &p, end))
        return -1;
    if (lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end))
        return -1;
    /* Extra lines "Name: value\r\n": lws wants each name lowercase with its colon. */
    for (const char *l = extra_headers; l && *l;) {
        const char *eol = strstr(l, "\r\n");
        size_t linelen = eol ? (size_t)(eol - l) : strlen(l);
        const char *colon = memchr(l, ':', linelen);
        if (colon) {
            char name[128];
            size_t nl = (size_t)(colon - l) + 1;
            if (nl < sizeof(name)) {
                for (size_t i = 0; i < nl; i++)
                    name[i] = (char)((l[i] >= 'A' && l[i] <= 'Z') ? l[i] + 32 : l[i]);
                name[nl] = '\0';
                const char *v = colon + 1;
                while (*v == ' ')
                    v++;
                if (lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                                (const unsigned char *)v, (int)(l + linelen - v),
                                                &p, end))
                    return -1;
            }
        }
        l += linelen + (eol ? 2 : 0);
    }
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (body_len) {
        unsigned char *b = malloc(LWS_PRE + body_len);
        if (!b)
            return -1;
        memcpy(b + LWS_PRE, body, body_len);
        int n = lws_write(wsi, b + LWS_PRE, body_len, LWS_WRITE_HTTP_FINAL);
        free(b);
        if (n < 0)
            return -1;
    }
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void gw_web_cors_headers(const char *origin, char *out, size_t outlen)
{
    if (!origin || !*origin) {
        if (outlen)
            out[0] = '\0';
        return;
    }
    snprintf(out, outlen, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
}

/* ---- a JSON request whose answer comes later ---- */

void gw_web_call_init(struct gw_web_call *c, struct lws *wsi, struct gw_web_call **slot, char *body,
                      size_t body_max)
{
    c->wsi = wsi;
    c->slot = slot;
    c->body = body;
    c->body_max = body_max;
    *slot = c;
}

void gw_web_call_ready(struct gw_web_call *c, unsigned status, const char *answer, size_t len)
{
    c->status = status;
    c->answer = answer;
    c->answer_len = len;
    lws_callback_on_writable(c->wsi);
}

static void call_body(struct gw_web_call *c, const void *in, size_t len)
{
    if (!len || c->drop_body)
        return;
    if (c->too_big || len > c->body_max - c->got) {
        c->too_big = true;
        return;
    }
    memcpy(c->body + c->got, in, len);
    c->got += len;
}

static int call_writeable(struct lws *wsi, struct gw_web_call **slot)
{
    struct gw_web_call *c = *slot;
    if (!c || !c->status)
        return 0;
    *slot = NULL; /* completing the transaction may start the next request */
    int rc = gw_web_respond(wsi, c->status, "application/json", c->extra, c->answer, c->answer_len);
    free(c);
    return rc;
}

int gw_web_call_callback(const struct gw_web_call_ops *ops, struct lws *wsi,
                         enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct gw_web_call **slot = user, *c = slot ? *slot : NULL;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return slot ? ops->on_http(wsi, slot) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        if (c)
            call_body(c, in, len);
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!c || c->submitted)
            return 0;
        c->submitted = true;
        return ops->submit(wsi, c);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return slot ? call_writeable(wsi, slot) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (c) { /* the client went away: what is under way is cancelled */
            *slot = NULL;
            ops->cancel(c);
            free(c);
        }
        return 0;
    default:
        return 0;
    }
}
