/* Helpers the transports share on the public port: the context of a connection, headers, the
 * Origin policy, whole responses, CORS headers. Calls: lws, config, core. */
#include "web/web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"

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

/* "scheme://host[:port]" -> host (brackets kept for IPv6) and host[:port]. */
static bool split_origin(const char *origin, char *host, size_t hostlen, char *hostport,
                         size_t hplen)
{
    const char *p = strstr(origin, "://");
    if (!p)
        return false;
    p += 3;
    size_t n = strcspn(p, "/?#");
    if (n == 0 || n >= hplen)
        return false;
    memcpy(hostport, p, n);
    hostport[n] = '\0';
    size_t hl;
    if (hostport[0] == '[') {
        const char *e = strchr(hostport, ']');
        if (!e)
            return false;
        hl = (size_t)(e - hostport) + 1;
    } else {
        const char *c = strchr(hostport, ':');
        hl = c ? (size_t)(c - hostport) : n;
    }
    if (hl >= hostlen)
        return false;
    memcpy(host, hostport, hl);
    host[hl] = '\0';
    return true;
}

static bool is_loopback_host(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strcmp(host, "127.0.0.1") == 0 ||
           strcmp(host, "[::1]") == 0;
}

bool gw_web_origin_allowed(struct lws *wsi, char *origin, size_t originlen)
{
    const struct gw_config *cfg = gw_web_ctx(wsi)->cfg;
    if (gw_web_header(wsi, WSI_TOKEN_ORIGIN, origin, originlen) < 0) {
        /* Absent (non-browser client) is allowed; present but over-long is not. */
        return lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0;
    }
    char host[300], hostport[300], reqhost[300];
    bool parsed = split_origin(origin, host, sizeof(host), hostport, sizeof(hostport));
    for (unsigned i = 0; i < cfg->n_origins; i++) {
        const char *o = cfg->origins[i];
        if (strcmp(o, "*") == 0)
            return true;
        if (strcmp(o, "same-host") == 0) {
            if (parsed && gw_web_header(wsi, WSI_TOKEN_HOST, reqhost, sizeof(reqhost)) > 0 &&
                strcasecmp(reqhost, hostport) == 0)
                return true;
        } else if (strcmp(o, "localhost") == 0) {
            if (parsed && is_loopback_host(host))
                return true;
        } else if (strcasecmp(o, origin) == 0) {
            return true;
        }
    }
    return false;
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
