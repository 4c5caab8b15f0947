/* Forwarding headers read apart from lws: RFC 7239 `Forwarded` and the de-facto
 * `X-Forwarded-For`, `-Proto`, `-Host`, turned into the client's address and the scheme and host
 * it asked for. Pure: no sockets, no state, no allocation. The caller (web/http.c) decides whether
 * the TCP peer is a trusted proxy at all; this file walks the chain of proxies the headers name,
 * skipping those that are trusted too. Every header is bounded in bytes and entries; anything
 * malformed makes the whole set untrusted, with a reason for one debug line. Calls: config (the
 * address ranges), core/host (host and port rules), libc. */
#ifndef GW_WEB_FORWARDED_H
#define GW_WEB_FORWARDED_H

#include <stdbool.h>
#include <stddef.h>
#include "config/config.h"
#include "core/err.h"
#include "core/host.h"

#define GW_FWD_HEADER_MAX 1024 /* bytes of one forwarding header (all its lines joined) */
#define GW_FWD_ELEMENTS_MAX 16 /* entries in Forwarded or X-Forwarded-For: hops of proxies */
#define GW_FWD_PAIRS_MAX 8     /* parameters in one Forwarded element */
#define GW_FWD_ADDR_MAX 46     /* an address as text (INET6_ADDRSTRLEN) */
#define GW_FWD_HOST_MAX (GW_HOST_MAX + 6) /* host ":" port */

/* The headers of one request, NULL where absent. A header present but longer than
 * GW_FWD_HEADER_MAX, or holding a NUL, is passed as `unreadable` (it is refused, and so is the
 * rest). */
struct gw_fwd_headers {
    const char *forwarded; /* Forwarded (RFC 7239) */
    const char *xff;       /* X-Forwarded-For */
    const char *xfp;       /* X-Forwarded-Proto */
    const char *xfh;       /* X-Forwarded-Host */
    bool unreadable;       /* one of them was too long, or held a NUL */
};

enum gw_fwd_scheme { GW_FWD_SCHEME_NONE, GW_FWD_SCHEME_HTTP, GW_FWD_SCHEME_HTTPS };

/* What the headers say, each part empty when they do not say it. */
struct gw_fwd {
    char addr[GW_FWD_ADDR_MAX];     /* the client's address, normalised ("192.0.2.1", "2001:db8::1";
                                       IPv4-mapped IPv6 as IPv4); "" when unknown or obfuscated */
    enum gw_fwd_scheme scheme;      /* the scheme the client used */
    char host[GW_FWD_HOST_MAX + 1]; /* the Host the client sent: "example.org", "[::1]:8443" */
};

/* Is addr (text, as inet_pton reads it; IPv4-mapped IPv6 counts as IPv4) in one of the ranges? */
bool gw_fwd_trusted(const struct gw_cidr *ranges, unsigned n, const char *addr);

/* The ranges of a configuration's trusted_proxies (checked when it loaded) into
 * out[GW_CFG_MAX_LIST]. Returns how many. */
unsigned gw_fwd_ranges(const struct gw_config *cfg, struct gw_cidr *out);

/* Read the headers a trusted proxy passed. Forwarded wins when present; else X-Forwarded-*. The
 * client is the rightmost address that is not itself in `ranges` (each proxy appends the peer it
 * saw), or the leftmost when all are; scheme and host come from the same Forwarded element, or
 * from the last X-Forwarded-Proto / X-Forwarded-Host entry. 0 with out filled (all empty when no
 * header is present), or GW_EINVAL with out all empty and why (NUL-terminated) saying what was
 * wrong: then nothing of any header may be used. */
int gw_fwd_parse(const struct gw_fwd_headers *h, const struct gw_cidr *ranges, unsigned n,
                 struct gw_fwd *out, char *why, size_t whylen) GW_MUST_CHECK;

#endif
