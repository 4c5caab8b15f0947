/* JIDs (RFC 7622): split into local, domain and resource parts; check lengths, UTF-8 and the
 * characters no PRECIS profile can allow; lowercase ASCII in domains. No state. Calls core/host
 * (the domain rules and UTF-8 decoding it shares with the configuration) and libc. */
#include "xmpp/jid.h"

#include <stdint.h>
#include <string.h>
#include "core/host.h"

/* local@domain./resource: the longest string that can still be a JID. */
#define JID_TEXT_MAX (2 * GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 3)

enum part { PART_LOCAL, PART_RESOURCE };

/* RFC 7622 section 3.3.1: characters the local part may never hold (XEP-0106 escapes them). */
static bool local_forbidden(uint32_t cp)
{
    return cp == '"' || cp == '&' || cp == '\'' || cp == '/' || cp == ':' || cp == '<' ||
           cp == '>' || cp == '@';
}

/* A local part or resource (already known to be UTF-8). */
static bool part_valid(const char *s, size_t n, enum part which)
{
    if (n == 0 || n > GW_JID_PART_MAX)
        return false;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = gw_host_utf8_next(s + i, n - i, &cp);
        if (len == 0 || gw_host_cp_control(cp))
            return false;
        if (which == PART_LOCAL && (gw_host_cp_space(cp) || local_forbidden(cp)))
            return false;
        i += len;
    }
    return true;
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
    if (len == 0 || len > JID_TEXT_MAX || !gw_host_utf8_valid(s, len))
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
    if (!gw_host_domain_valid(domain, domain_len))
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
    size_t len = strnlen(domain, GW_JID_DOMAIN_MAX + 2);
    if (len > GW_JID_DOMAIN_MAX + 1)
        return false;
    return gw_host_domain_valid(domain, strip_trailing_dot(domain, len));
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
