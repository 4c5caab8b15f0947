/* Host names, domain names, IP literals and "host:port" as text: the one set of rules that the
 * configuration (listen addresses, upstream hosts, served domains) and JIDs (xmpp/jid.c) share,
 * written once so that the two cannot drift apart. Also the strict UTF-8 decoding and character
 * classes that domain labels need, which JID local parts and resources reuse. No XMPP, no name
 * resolution, no state. */
#ifndef GW_CORE_HOST_H
#define GW_CORE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "core/err.h"

#define GW_HOST_MAX 255 /* bytes in a host or domain name (RFC 1035 section 2.3.4) */

enum gw_host_ip {
    GW_HOST_IP_NONE, /* not an IP address */
    GW_HOST_IP_V4,   /* dotted quad, "192.0.2.1" */
    GW_HOST_IP_V6,   /* without brackets, "2001:db8::1" */
};

/* What s[0..len) is as an IP address (no brackets, no port). */
enum gw_host_ip gw_host_ip_literal(const char *s, size_t len);

/* A host to connect to or listen on: a name of ASCII letters, digits, '-', '_' and '.' (the
 * resolver judges the rest; '_' because container names use it), an IPv4 address, or an IPv6
 * address without brackets. 1..GW_HOST_MAX bytes. */
bool gw_host_name_valid(const char *s, size_t len);

/* A domain as RFC 7622 section 3.2 allows it in a JID, without a trailing dot: labels of ASCII
 * letters, digits and inner '-' (at most 63 bytes each), or UTF-8 labels (IDNs: no controls or
 * spaces; only the upstream can work out their A-label length); a name of digits and dots only
 * must be an IPv4 address; or an IPv6 address in brackets ("[::1]"). 1..GW_HOST_MAX bytes. */
bool gw_host_domain_valid(const char *s, size_t len);

/* Decimal 1..65535 making up all of s[0..len) (leading zeros allowed). */
int gw_host_parse_port(const char *s, size_t len, uint16_t *port) GW_MUST_CHECK;

/* "host:port" (host as gw_host_name_valid, without ':') or "[v6]:port" (a bare IPv6 address would
 * make the port ambiguous). Writes host (NUL-terminated, brackets removed) and port only on
 * success. GW_EINVAL for anything else; GW_ELIMIT when the host does not fit hostlen. */
int gw_host_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port) GW_MUST_CHECK;

/* An IP address (as gw_host_ip_literal) and a port as a socket address, for bind() or connect()
 * without a resolver. GW_EINVAL when host is no IP address. */
int gw_host_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss,
                     socklen_t *sslen) GW_MUST_CHECK;

/* One UTF-8 character at s (n > 0 bytes left), decoded strictly: no overlong forms, no
 * surrogates, nothing past U+10FFFF. Its length in bytes, or 0 when the bytes are not UTF-8. */
size_t gw_host_utf8_next(const char *s, size_t n, uint32_t *cp);

/* Are the n bytes at s strict UTF-8 (as gw_host_utf8_next decodes it)? */
bool gw_host_utf8_valid(const char *s, size_t n);

/* C0 and C1 controls and DEL: disallowed by every PRECIS class (RFC 8264 "Controls"). */
bool gw_host_cp_control(uint32_t cp);

/* Space and line separators (Unicode Zs, Zl, Zp), which PRECIS IdentifierClass disallows. */
bool gw_host_cp_space(uint32_t cp);

#endif
