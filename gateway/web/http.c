/* Helpers the transports share on the public port: the context of a connection, headers, the
 * Origin policy, whole responses, CORS headers. Calls: lws, config, core. */
#include "web/web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/err.h"
#include "core/host.h"

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
    char reqhost[300];
    bool has_host = gw_web_header(wsi, WSI_TOKEN_HOST, reqhost, sizeof(reqhost)) > 0;
    return gw_web_origin_check(gw_web_ctx(wsi)->cfg, origin, has_host ? reqhost : NULL);
}

void gw_web_peer(struct lws *wsi, char *out, size_t outlen)
{
    char buf[128];
    buf[0] = '\0';
    lws_get_peer_simple(wsi, buf, sizeof(buf));
    const char *p = buf;
    if (strncmp(p, "::ffff:", 7) == 0 && strchr(p + 7, '.'))
        p += 7;
    snprintf(out, outlen, "%s", p);
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
