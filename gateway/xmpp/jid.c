/* JIDs (RFC 7622): split into local, domain and resource parts; check lengths, UTF-8 and the
 * characters no PRECIS profile can allow; lowercase ASCII in domains. No state. Calls only libc
 * (inet_pton for IP literals). */
#include "xmpp/jid.h"

#include <arpa/inet.h>
#include <string.h>

/* local@domain./resource: the longest string that can still be a JID. */
#define JID_TEXT_MAX (3 * GW_JID_PART_MAX + 3)
#define LABEL_MAX 63 /* octets in an ASCII DNS label (RFC 1035) */

enum part { PART_LOCAL, PART_RESOURCE };

/* Decodes one UTF-8 sequence at s (n bytes left) strictly: no overlong forms, no surrogates,
 * nothing past U+10FFFF. Returns its length, or 0 when the bytes are not UTF-8. */
static size_t utf8_next(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0], min;
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
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_next(p + i, n - i, &cp);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* C0 and C1 controls and DEL: disallowed by every PRECIS class (RFC 8264 "Controls"). */
static bool is_control(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* Space and line separators (Unicode Zs, Zl, Zp), which IdentifierClass disallows. */
static bool is_space(unsigned cp)
{
    return cp == 0x20 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* RFC 7622 section 3.3.1: characters the local part may never hold (XEP-0106 escapes them). */
static bool local_forbidden(unsigned cp)
{
    return cp == '"' || cp == '&' || cp == '\'' || cp == '/' || cp == ':' || cp == '<' ||
           cp == '>' || cp == '@';
}

/* A local part or resource (already known to be UTF-8). */
static bool part_valid(const char *s, size_t n, enum part which)
{
    const unsigned char *p = (const unsigned char *)s;
    if (n == 0 || n > GW_JID_PART_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_next(p + i, n - i, &cp);
        if (len == 0 || is_control(cp))
            return false;
        if (which == PART_LOCAL && (is_space(cp) || local_forbidden(cp)))
            return false;
        i += len;
    }
    return true;
}

static bool ip_literal(int family, const char *s, size_t n)
{
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    if (n == 0 || n >= sizeof(buf))
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return inet_pton(family, buf, addr) == 1;
}

static bool ascii_letter_digit(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* One label of a domain name: not empty; ASCII only as letters, digits and inner '-'; an ASCII
 * label at most 63 octets. Labels with other characters are IDNs whose A-label length only the
 * upstream can work out; they must still hold no controls or spaces. */
static bool label_valid(const char *s, size_t n, bool *numeric)
{
    const unsigned char *p = (const unsigned char *)s;
    bool ascii = true;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n;) {
        unsigned cp;
        size_t len = utf8_next(p + i, n - i, &cp);
        if (len == 0)
            return false;
        if (cp < 0x80) {
            if (!ascii_letter_digit((char)cp) && cp != '-')
                return false;
            if (cp < '0' || cp > '9')
                *numeric = false;
        } else {
            ascii = false;
            *numeric = false;
            if (is_control(cp) || is_space(cp))
                return false;
        }
        i += len;
    }
    if (s[0] == '-' || s[n - 1] == '-')
        return false;
    return !ascii || n <= LABEL_MAX;
}

/* A domain part without its trailing dot. */
static bool domain_valid(const char *s, size_t n)
{
    if (n == 0 || n > GW_JID_PART_MAX)
        return false;
    if (s[0] == '[')
        return n > 2 && s[n - 1] == ']' && ip_literal(AF_INET6, s + 1, n - 2);
    bool numeric = true;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (!label_valid(s + start, i - start, &numeric))
                return false;
            start = i + 1;
        }
    }
    /* Digits and dots only: a DNS name never ends in an all-digit label, so it must be IPv4. */
    return !numeric || ip_literal(AF_INET, s, n);
}

/* RFC 7622 section 3.2: one trailing dot is not part of the domain. */
static size_t strip_trailing_dot(const char *s, size_t n)
{
    return n > 0 && s[n - 1] == '.' ? n - 1 : n;
}

static void copy_part(char *dst, const char *src, size_t n, bool lower)
{
    for (size_t i = 0; i < n; i++) {
        char c = src[i];
        dst[i] = lower && c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    }
    dst[n] = '\0';
}

int gw_jid_parse(const char *s, struct gw_jid *out)
{
    if (!s || !out)
        return GW_EINVAL;
    size_t len = strnlen(s, JID_TEXT_MAX + 1);
    if (len == 0 || len > JID_TEXT_MAX || !utf8_valid(s, len))
        return GW_EINVAL;

    /* The first '/' starts the resource, which may hold '@' and '/'; the first '@' before it ends
     * the local part (RFC 7622 section 3.1). */
    const char *slash = memchr(s, '/', len);
    size_t head = slash ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', head);
    const char *local = s, *domain = at ? at + 1 : s, *resource = slash ? slash + 1 : NULL;
    size_t local_len = at ? (size_t)(at - s) : 0;
    size_t domain_len = strip_trailing_dot(domain, (size_t)(s + head - domain));
    size_t resource_len = slash ? len - head - 1 : 0;

    if (at && !part_valid(local, local_len, PART_LOCAL))
        return GW_EINVAL;
    if (slash && !part_valid(resource, resource_len, PART_RESOURCE))
        return GW_EINVAL;
    if (!domain_valid(domain, domain_len))
        return GW_EINVAL;

    copy_part(out->local, local, local_len, false);
    copy_part(out->domain, domain, domain_len, true);
    copy_part(out->resource, resource ? resource : "", resource_len, false);
    return 0;
}

int gw_jid_format(const struct gw_jid *j, char *out, size_t outlen)
{
    if (!out || outlen == 0)
        return GW_ELIMIT;
    out[0] = '\0';
    if (!j)
        return GW_EINVAL;
    size_t l = strnlen(j->local, sizeof(j->local));
    size_t d = strnlen(j->domain, sizeof(j->domain));
    size_t r = strnlen(j->resource, sizeof(j->resource));
    if (l == sizeof(j->local) || d == sizeof(j->domain) || r == sizeof(j->resource) || d == 0)
        return GW_EINVAL;
    size_t need = (l ? l + 1 : 0) + d + (r ? r + 1 : 0) + 1;
    if (need > outlen)
        return GW_ELIMIT;
    char *p = out;
    if (l) {
        memcpy(p, j->local, l);
        p += l;
        *p++ = '@';
    }
    memcpy(p, j->domain, d);
    p += d;
    if (r) {
        *p++ = '/';
        memcpy(p, j->resource, r);
        p += r;
    }
    *p = '\0';
    return 0;
}

bool gw_jid_domain_valid(const char *domain)
{
    if (!domain)
        return false;
    size_t len = strnlen(domain, GW_JID_PART_MAX + 2);
    if (len > GW_JID_PART_MAX + 1 || !utf8_valid(domain, len))
        return false;
    return domain_valid(domain, strip_trailing_dot(domain, len));
}

bool gw_jid_domain_equal(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    for (; *a && *b; a++, b++) {
        char x = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        char y = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}
