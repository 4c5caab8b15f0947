/* Host names, domain names, IP literals and "host:port" parsing, and the UTF-8 rules domain labels
 * need. No state. Calls only libc (inet_pton for IP literals). */
#include "core/host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define LABEL_MAX 63 /* bytes in an ASCII DNS label (RFC 1035 section 2.3.4) */

static bool ascii_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* inet_pton wants a NUL-terminated string; s is a slice of a longer one. */
static bool pton(int family, const char *s, size_t len, void *addr)
{
    char buf[INET6_ADDRSTRLEN + 1];
    /* inet_pton stops at a NUL: a slice with one inside is no address. */
    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(family, buf, addr) == 1;
}

enum gw_host_ip gw_host_ip_literal(const char *s, size_t len)
{
    unsigned char addr[sizeof(struct in6_addr)];
    if (!s)
        return GW_HOST_IP_NONE;
    if (pton(AF_INET, s, len, addr))
        return GW_HOST_IP_V4;
    if (pton(AF_INET6, s, len, addr))
        return GW_HOST_IP_V6;
    return GW_HOST_IP_NONE;
}

bool gw_host_name_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > GW_HOST_MAX)
        return false;
    if (memchr(s, ':', len))
        return gw_host_ip_literal(s, len) == GW_HOST_IP_V6;
    for (size_t i = 0; i < len; i++)
        if (!ascii_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

size_t gw_host_utf8_next(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c = p[0], min;
    size_t len;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        c &= 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        c &= 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

bool gw_host_cp_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

bool gw_host_cp_space(uint32_t cp)
{
    return cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* One label: not empty; ASCII only as letters, digits and inner '-'; an ASCII label at most 63
 * bytes. A label with other characters is an IDN whose A-label length only the upstream can work
 * out; it must still be UTF-8 and hold no controls or spaces. Clears *numeric on a non-digit. */
static bool label_valid(const char *s, size_t n, bool *numeric)
{
    bool ascii = true;
    if (n == 0 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = gw_host_utf8_next(s + i, n - i, &cp);
        if (len == 0)
            return false;
        if (cp < 0x80) {
            if (!ascii_alnum((char)cp) && cp != '-')
                return false;
            if (cp < '0' || cp > '9')
                *numeric = false;
        } else {
            ascii = false;
            *numeric = false;
            if (gw_host_cp_control(cp) || gw_host_cp_space(cp))
                return false;
        }
        i += len;
    }
    return !ascii || n <= LABEL_MAX;
}

bool gw_host_domain_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > GW_HOST_MAX)
        return false;
    if (s[0] == '[')
        return len > 2 && s[len - 1] == ']' && gw_host_ip_literal(s + 1, len - 2) == GW_HOST_IP_V6;
    bool numeric = true;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!label_valid(s + start, i - start, &numeric))
                return false;
            start = i + 1;
        }
    }
    /* Digits and dots only: a DNS name never ends in an all-digit label, so it must be IPv4. */
    return !numeric || gw_host_ip_literal(s, len) == GW_HOST_IP_V4;
}

int gw_host_parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;
    if (!s || !port || len == 0)
        return GW_EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return GW_EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
        if (v > 65535)
            return GW_EINVAL;
    }
    if (v == 0)
        return GW_EINVAL;
    *port = (uint16_t)v;
    return 0;
}

int gw_host_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    if (!s || !host || !port)
        return GW_EINVAL;
    const char *h, *p;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return GW_EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        p = close + 2;
        if (gw_host_ip_literal(h, hlen) != GW_HOST_IP_V6)
            return GW_EINVAL;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return GW_EINVAL;
        h = s;
        hlen = (size_t)(colon - s);
        p = colon + 1;
        if (memchr(h, ':', hlen) || !gw_host_name_valid(h, hlen))
            return GW_EINVAL;
    }
    uint16_t v;
    if (gw_host_parse_port(p, strlen(p), &v) != 0)
        return GW_EINVAL;
    if (hlen >= hostlen)
        return GW_ELIMIT;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = v;
    return 0;
}

int gw_host_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *sslen)
{
    if (!host || !ss || !sslen)
        return GW_EINVAL;
    size_t len = strlen(host);
    struct sockaddr_storage a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a;
    if (pton(AF_INET, host, len, &s4->sin_addr)) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *sslen = sizeof(*s4);
    } else if (pton(AF_INET6, host, len, &s6->sin6_addr)) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *sslen = sizeof(*s6);
    } else {
        return GW_EINVAL;
    }
    *ss = a;
    return 0;
}

bool gw_host_utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = gw_host_utf8_next(s + i, n - i, &cp);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}
