/* libFuzzer target for gateway/core/host.c. The input is used as a byte slice (for the calls
 * that take one) and, cut at its first NUL, as a C string (for those that take one):
 * - gw_host_utf8_next() consumes 1..4 bytes and never more than it was given, decodes only
 *   scalar values in their shortest form (re-encoding gives the same bytes), and refuses exactly
 *   what a strict decoder refuses; gw_host_utf8_valid() agrees with that decoder on the slice;
 * - gw_host_ip_literal() agrees with inet_pton() on the slice; an IPv4 literal is a valid domain;
 * - a valid domain is 1..255 bytes of UTF-8 and its ASCII case does not matter; a bracketed one
 *   holds an IPv6 literal;
 * - neither names a slice holding a NUL;
 * - a valid host name is 1..255 bytes;
 * - a parsed port is 1..65535 and prints back to the same digits without leading zeros;
 * - a parsed "host:port" printed again (brackets around IPv6) parses to the same host and port,
 *   needs exactly its host's length plus one byte of room (GW_ELIMIT one byte short), and a
 *   host that is an IP literal gives a socket address with that port.
 * Calls: core/host, libc. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/host.h"

#define INPUT_MAX 1024

/* Found by this target and fixed in core/host.c's pton(): a slice holding a NUL was handed to
 * inet_pton(), which stops at the NUL, so "::\0...x" was taken for an IPv6 address. Kept as a
 * switch so the check can be turned off to look at other findings alone. */
#define CHECK_NUL_SLICES 1

/* cp in UTF-8; its length. */
static size_t encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A strict decoder written apart from host.c's: the length of the character at s, or 0. */
static size_t reference_utf8(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80   ? 1
                 : s[0] < 0xC2 ? 0
                 : s[0] < 0xE0 ? 2
                 : s[0] < 0xF0 ? 3
                 : s[0] < 0xF5 ? 4
                               : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    /* The second byte's range decides overlong forms, surrogates and values past U+10FFFF. */
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

/* The whole slice by the reference decoder. */
static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t len = reference_utf8((const unsigned char *)s + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

static void check_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0xFFFFFFFFu;
        size_t len = gw_host_utf8_next(s + i, n - i, &cp);
        if (len != reference_utf8((const unsigned char *)s + i, n - i) || len > n - i)
            abort();
        if (len == 0) {
            i++;
            continue;
        }
        unsigned char again[4];
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || encode(cp, again) != len ||
            memcmp(again, s + i, len) != 0)
            abort();
        if (gw_host_cp_control(cp) != (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)))
            abort();
        if (gw_host_cp_space(cp) && gw_host_cp_control(cp))
            abort();
        i += len;
    }
    if (gw_host_utf8_valid(s, n) != utf8_valid(s, n))
        abort();
}

static void check_ip(const char *s, size_t n)
{
    enum gw_host_ip ip = gw_host_ip_literal(s, n);
    if (ip == GW_HOST_IP_NONE)
        return;
    char buf[INPUT_MAX + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    if (memchr(s, '\0', n)) {
        if (CHECK_NUL_SLICES)
            abort(); /* a slice with a NUL in it is no address, whatever precedes the NUL */
        return;
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(ip == GW_HOST_IP_V4 ? AF_INET : AF_INET6, buf, addr) != 1)
        abort();
    if (ip == GW_HOST_IP_V4 && !gw_host_domain_valid(s, n))
        abort();
}

static void check_domain(const char *s, size_t n)
{
    if (!gw_host_domain_valid(s, n))
        return;
    if (memchr(s, '\0', n)) {
        if (CHECK_NUL_SLICES)
            abort();
        return;
    }
    if (n == 0 || n > GW_HOST_MAX || !utf8_valid(s, n))
        abort();
    if (s[0] == '[' && (s[n - 1] != ']' || gw_host_ip_literal(s + 1, n - 2) != GW_HOST_IP_V6))
        abort();
    char flipped[GW_HOST_MAX];
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        flipped[i] = c >= 'a' && c <= 'z'   ? (char)(c - 32)
                     : c >= 'A' && c <= 'Z' ? (char)(c + 32)
                                            : c;
    }
    if (!gw_host_domain_valid(flipped, n))
        abort();
}

static void check_port(const char *s, size_t n)
{
    uint16_t port = 0;
    if (gw_host_parse_port(s, n, &port) != 0)
        return;
    if (port == 0)
        abort();
    char buf[8];
    int k = snprintf(buf, sizeof(buf), "%u", (unsigned)port);
    size_t zeros = 0;
    while (zeros < n && s[zeros] == '0')
        zeros++;
    if ((size_t)k != n - zeros || memcmp(buf, s + zeros, (size_t)k) != 0)
        abort();
}

static void check_addr(const char *s)
{
    char host[GW_HOST_MAX + 1], again[GW_HOST_MAX + 1];
    uint16_t port = 0, port2 = 0;
    if (gw_host_parse_addr(s, host, sizeof(host), &port) != 0)
        return;
    size_t hl = strlen(host);
    if (port == 0 || hl == 0 || !gw_host_name_valid(host, hl))
        abort();
    char text[GW_HOST_MAX + 16];
    bool v6 = strchr(host, ':') != NULL;
    if (v6 && gw_host_ip_literal(host, hl) != GW_HOST_IP_V6)
        abort();
    snprintf(text, sizeof(text), v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
    if (gw_host_parse_addr(text, again, sizeof(again), &port2) != 0 || port2 != port ||
        strcmp(again, host) != 0)
        abort();
    if (gw_host_parse_addr(text, again, hl + 1, &port2) != 0 ||
        gw_host_parse_addr(text, again, hl, &port2) != GW_ELIMIT)
        abort();
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    int rc = gw_host_sockaddr(host, port, &ss, &sl);
    if ((rc == 0) != (gw_host_ip_literal(host, hl) != GW_HOST_IP_NONE))
        abort();
    if (rc == 0) {
        in_port_t p = ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port;
        if (ntohs(p) != port)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    const char *s = (const char *)data;
    check_utf8(s, size);
    check_ip(s, size);
    check_domain(s, size);
    if (gw_host_name_valid(s, size) && (size == 0 || size > GW_HOST_MAX))
        abort();
    check_port(s, size);

    char str[INPUT_MAX + 1];
    memcpy(str, s, size);
    str[size] = '\0';
    check_addr(str);
    return 0;
}
