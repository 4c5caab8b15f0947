/* Forwarding headers (RFC 7239 Forwarded, X-Forwarded-For/-Proto/-Host) into a client address,
 * scheme and host, with no lws: see forwarded.h. Owns nothing past a call. Calls: config (ranges),
 * core/host (host and port rules), libc (inet_pton, inet_ntop). */
#include "web/forwarded.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* One hop as a header names it: an address, or "unknown" / an obfuscated name (no address). */
struct node {
    bool is_ip;                 /* addr holds an address */
    char addr[GW_FWD_ADDR_MAX]; /* normalised text of the address */
};

/* One Forwarded element, or one position of the X-Forwarded-* lists. */
struct element {
    bool has_for;                   /* a for= (an X-Forwarded-For entry) */
    struct node node;               /* what it says */
    enum gw_fwd_scheme proto;       /* proto=, or NONE */
    char host[GW_FWD_HOST_MAX + 1]; /* host=, or "" */
};

/* Where a header is being read. */
struct cursor {
    const char *p;   /* next byte */
    const char *end; /* past the last byte */
};

static void say(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || !whylen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* ---- addresses ---- */

/* s[0..n) as an address: 4 bytes (IPv4, also from IPv4-mapped IPv6) or 16. 0 = not one. */
static unsigned ip_bytes(const char *s, size_t n, uint8_t out[16])
{
    char buf[GW_FWD_ADDR_MAX];
    if (n == 0 || n >= sizeof(buf))
        return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (memchr(buf, '%', n))
        return 0; /* a zone index names an interface of the proxy, not a client */
    if (inet_pton(AF_INET, buf, out) == 1)
        return 4;
    if (inet_pton(AF_INET6, buf, out) != 1)
        return 0;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(out, mapped, sizeof(mapped)) == 0) {
        memmove(out, out + 12, 4);
        return 4;
    }
    return 16;
}

static bool ip_normalise(const char *s, size_t n, char *out, size_t outlen)
{
    uint8_t b[16];
    unsigned len = ip_bytes(s, n, b);
    return len && inet_ntop(len == 4 ? AF_INET : AF_INET6, b, out, (socklen_t)outlen) != NULL;
}

static bool in_range(const struct gw_cidr *r, const uint8_t *b, unsigned len)
{
    if (r->v6 != (len == 16))
        return false;
    unsigned full = r->prefix / 8, rest = r->prefix % 8;
    if (memcmp(r->bytes, b, full) != 0)
        return false;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return rest == 0 || (r->bytes[full] & mask) == (b[full] & mask);
}

bool gw_fwd_trusted(const struct gw_cidr *ranges, unsigned n, const char *addr)
{
    uint8_t b[16];
    unsigned len = addr ? ip_bytes(addr, strlen(addr), b) : 0;
    for (unsigned i = 0; len && i < n; i++)
        if (in_range(&ranges[i], b, len))
            return true;
    return false;
}

unsigned gw_fwd_ranges(const struct gw_config *cfg, struct gw_cidr *out)
{
    unsigned n = 0;
    for (unsigned i = 0; i < cfg->n_trusted_proxies && i < GW_CFG_MAX_LIST; i++)
        if (gw_config_parse_cidr(cfg->trusted_proxies[i], &out[n]) == 0)
            n++;
    return n;
}

/* ---- nodes, hosts, schemes ---- */

static bool obf_chars(const char *s, size_t n)
{
    if (n < 2 || s[0] != '_')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool port_ok(const char *s, size_t n)
{
    uint16_t port;
    return obf_chars(s, n) || gw_host_parse_port(s, n, &port) == 0;
}

static unsigned colons(const char *s, size_t n)
{
    unsigned k = 0;
    for (size_t i = 0; i < n; i++)
        k += s[i] == ':';
    return k;
}

/* RFC 7239 6: "unknown", "_obfuscated", IPv4 or "[IPv6]", each with an optional ":port".
 * X-Forwarded-For also carries bare IPv6 addresses (bare_v6). */
static bool parse_node(const char *s, size_t n, bool bare_v6, struct node *out)
{
    memset(out, 0, sizeof(*out));
    const char *ip = s, *colon;
    size_t iplen;
    if (n == 7 && strncasecmp(s, "unknown", 7) == 0)
        return true;
    if (n && s[0] == '_') {
        colon = memchr(s, ':', n);
        iplen = colon ? (size_t)(colon - s) : n;
        return obf_chars(s, iplen) && (!colon || port_ok(colon + 1, (size_t)(s + n - colon - 1)));
    }
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return false;
        ip = s + 1;
        iplen = (size_t)(close - ip);
        colon = close + 1 < s + n ? close + 1 : NULL;
        if ((colon && *colon != ':') || !memchr(ip, ':', iplen))
            return false; /* "[1.2.3.4]" is no IPv6 address */
    } else if (bare_v6 && colons(s, n) > 1) {
        iplen = n;
        colon = NULL;
    } else {
        colon = memchr(s, ':', n);
        iplen = colon ? (size_t)(colon - s) : n;
        if (memchr(s, ':', iplen) || !memchr(s, '.', iplen))
            return false; /* a bare IPv6 address is not allowed here */
    }
    if (colon && !port_ok(colon + 1, (size_t)(s + n - colon - 1)))
        return false;
    out->is_ip = ip_normalise(ip, iplen, out->addr, sizeof(out->addr));
    return out->is_ip;
}

/* host [":" port] as a Host header holds it (RFC 7230 5.4), by core/host.c's domain rules, in
 * ASCII (an IDN travels as its A-labels). */
static bool parse_host(const char *s, size_t n, char *out, size_t outlen)
{
    const char *colon;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        colon = close && close + 1 < s + n ? close + 1 : NULL;
        if (!close || (colon && *colon != ':'))
            return false;
    } else {
        colon = memchr(s, ':', n);
    }
    size_t hl = colon ? (size_t)(colon - s) : n;
    uint16_t port;
    if (hl == 0 || hl > GW_HOST_MAX || n >= outlen || !gw_host_domain_valid(s, hl) ||
        (colon && gw_host_parse_port(colon + 1, (size_t)(s + n - colon - 1), &port) != 0))
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

static enum gw_fwd_scheme parse_scheme(const char *s, size_t n)
{
    if (n == 5 && strncasecmp(s, "https", 5) == 0)
        return GW_FWD_SCHEME_HTTPS;
    if (n == 4 && strncasecmp(s, "http", 4) == 0)
        return GW_FWD_SCHEME_HTTP;
    return GW_FWD_SCHEME_NONE;
}

/* ---- RFC 7239 tokens and values ---- */

static bool tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void skip_ows(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static size_t read_token(struct cursor *c)
{
    const char *start = c->p;
    while (c->p < c->end && tchar(*c->p))
        c->p++;
    return (size_t)(c->p - start);
}

/* token / quoted-string (RFC 7230 3.2.6), unquoted into buf. false when malformed. */
static bool read_value(struct cursor *c, char *buf, size_t buflen, size_t *len)
{
    size_t n = 0;
    if (c->p < c->end && *c->p == '"') {
        for (c->p++; c->p < c->end && *c->p != '"'; c->p++) {
            unsigned char ch = (unsigned char)*c->p;
            if (ch == '\\') {
                if (++c->p == c->end)
                    return false;
                ch = (unsigned char)*c->p;
            }
            if ((ch < ' ' && ch != '\t') || ch == 0x7f || ch > 0x7e || n + 1 >= buflen)
                return false; /* no controls, no bytes outside ASCII: nothing here needs them */
            buf[n++] = (char)ch;
        }
        if (c->p == c->end)
            return false;
        c->p++;
    } else {
        const char *start = c->p;
        n = read_token(c);
        if (n == 0 || n >= buflen)
            return false;
        memcpy(buf, start, n);
    }
    buf[n] = '\0';
    *len = n;
    return true;
}

/* One forwarded-pair's value into e. "by" and extensions are read and let be. */
static bool apply_pair(const char *name, size_t nl, const char *v, size_t vl, struct element *e,
                       unsigned *seen, char *why, size_t whylen)
{
    static const char *const names[] = {"for", "proto", "host", "by"};
    unsigned which = 4;
    for (unsigned i = 0; i < 4; i++)
        if (strlen(names[i]) == nl && strncasecmp(name, names[i], nl) == 0)
            which = i;
    if (which < 4 && (*seen & (1u << which))) {
        say(why, whylen, "Forwarded: '%s' twice in one element", names[which]);
        return false;
    }
    if (which < 4)
        *seen |= 1u << which;
    bool ok = true;
    if (which == 0)
        ok = e->has_for = parse_node(v, vl, false, &e->node);
    else if (which == 1)
        ok = (e->proto = parse_scheme(v, vl)) != GW_FWD_SCHEME_NONE;
    else if (which == 2)
        ok = parse_host(v, vl, e->host, sizeof(e->host));
    if (!ok)
        say(why, whylen, "Forwarded: bad %s= value", names[which]);
    return ok;
}

/* forwarded-element: pairs separated by ';', up to the next ',' or the end. */
static bool read_element(struct cursor *c, struct element *e, char *why, size_t whylen)
{
    unsigned seen = 0, pairs = 0;
    memset(e, 0, sizeof(*e));
    for (;;) {
        skip_ows(c);
        if (c->p < c->end && *c->p == ';') {
            c->p++;
            continue;
        }
        if (c->p == c->end || *c->p == ',')
            return true;
        const char *name = c->p;
        size_t nl = read_token(c), vl;
        char value[GW_FWD_HEADER_MAX];
        if (nl == 0 || c->p == c->end || *c->p != '=') {
            say(why, whylen, "Forwarded: a pair is not token=value");
            return false;
        }
        c->p++;
        if (!read_value(c, value, sizeof(value), &vl)) {
            say(why, whylen, "Forwarded: a value is neither a token nor a quoted string");
            return false;
        }
        if (++pairs > GW_FWD_PAIRS_MAX) {
            say(why, whylen, "Forwarded: more than %u pairs in one element", GW_FWD_PAIRS_MAX);
            return false;
        }
        if (!apply_pair(name, nl, value, vl, e, &seen, why, whylen))
            return false;
        skip_ows(c);
        if (c->p < c->end && *c->p != ';' && *c->p != ',') {
            say(why, whylen, "Forwarded: junk after a value");
            return false;
        }
    }
}

static int parse_forwarded(const char *s, struct element *els, unsigned *n, char *why,
                           size_t whylen)
{
    struct cursor c = {s, s + strlen(s)};
    *n = 0;
    while (c.p < c.end) {
        skip_ows(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++; /* an empty list element (RFC 7230 7) */
            continue;
        }
        if (c.p == c.end)
            break;
        if (*n == GW_FWD_ELEMENTS_MAX) {
            say(why, whylen, "Forwarded: more than %u elements", GW_FWD_ELEMENTS_MAX);
            return GW_EINVAL;
        }
        if (!read_element(&c, &els[*n], why, whylen))
            return GW_EINVAL;
        (*n)++;
    }
    return 0;
}

/* ---- X-Forwarded-* ---- */

/* A comma-separated list: each entry (trimmed, empty ones skipped) to fn(i). At most
 * GW_FWD_ELEMENTS_MAX entries. Returns the count, or -1 when fn refused one or there are more. */
static int split_list(const char *s, bool (*fn)(const char *, size_t, unsigned, void *), void *ud)
{
    unsigned n = 0;
    for (const char *p = s; *p;) {
        size_t len = strcspn(p, ",");
        const char *a = p, *b = p + len;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (a < b && (n == GW_FWD_ELEMENTS_MAX || !fn(a, (size_t)(b - a), n++, ud)))
            return -1;
        p += len + (p[len] == ',');
    }
    return (int)n;
}

static bool xff_entry(const char *s, size_t n, unsigned i, void *ud)
{
    struct element *e = &((struct element *)ud)[i];
    memset(e, 0, sizeof(*e));
    e->has_for = true;
    return parse_node(s, n, true, &e->node);
}

static bool xfp_entry(const char *s, size_t n, unsigned i, void *ud)
{
    (void)i;
    return (*(enum gw_fwd_scheme *)ud = parse_scheme(s, n)) != GW_FWD_SCHEME_NONE;
}

static bool xfh_entry(const char *s, size_t n, unsigned i, void *ud)
{
    (void)i;
    return parse_host(s, n, ud, GW_FWD_HOST_MAX + 1);
}

static int parse_x_forwarded(const struct gw_fwd_headers *h, struct element *els, unsigned *n,
                             struct gw_fwd *out, char *why, size_t whylen)
{
    int count = h->xff ? split_list(h->xff, xff_entry, els) : 0;
    if (count < 0) {
        say(why, whylen, "X-Forwarded-For: not a list of up to %u addresses", GW_FWD_ELEMENTS_MAX);
        return GW_EINVAL;
    }
    *n = (unsigned)count;
    if (h->xfp && split_list(h->xfp, xfp_entry, &out->scheme) < 0) {
        say(why, whylen, "X-Forwarded-Proto: not http or https");
        return GW_EINVAL;
    }
    if (h->xfh && split_list(h->xfh, xfh_entry, out->host) < 0) {
        say(why, whylen, "X-Forwarded-Host: not a host[:port]");
        return GW_EINVAL;
    }
    return 0;
}

/* ---- the whole ---- */

/* The client: the rightmost hop that is no trusted proxy, else the leftmost. */
static const struct element *client_hop(const struct element *els, unsigned n,
                                        const struct gw_cidr *ranges, unsigned nr)
{
    if (n == 0)
        return NULL;
    for (unsigned i = n; i-- > 0;) {
        const struct element *e = &els[i];
        if (!e->has_for || !e->node.is_ip || !gw_fwd_trusted(ranges, nr, e->node.addr))
            return e;
    }
    return &els[0];
}

int gw_fwd_parse(const struct gw_fwd_headers *h, const struct gw_cidr *ranges, unsigned nr,
                 struct gw_fwd *out, char *why, size_t whylen)
{
    struct element els[GW_FWD_ELEMENTS_MAX];
    unsigned n = 0;
    memset(out, 0, sizeof(*out));
    say(why, whylen, "%s", "");
    if (h->unreadable) {
        say(why, whylen, "a forwarding header is longer than %u bytes or holds a NUL",
            GW_FWD_HEADER_MAX);
        return GW_EINVAL;
    }
    int rc;
    if (h->forwarded)
        rc = parse_forwarded(h->forwarded, els, &n, why, whylen);
    else
        rc = parse_x_forwarded(h, els, &n, out, why, whylen);
    if (rc != 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    const struct element *e = client_hop(els, n, ranges, nr);
    if (e && e->has_for && e->node.is_ip)
        snprintf(out->addr, sizeof(out->addr), "%s", e->node.addr);
    if (h->forwarded && e) {
        out->scheme = e->proto;
        snprintf(out->host, sizeof(out->host), "%s", e->host);
    }
    return 0;
}
