/* libFuzzer target for gateway/web/forwarded.c. The input is up to four header values cut at
 * 0xFF bytes (Forwarded, X-Forwarded-For, -Proto, -Host; an empty part is an absent header, a
 * part cut at its first NUL as lws would hand it over); one longer than GW_FWD_HEADER_MAX is
 * passed as oversized, as web/http.c does. Checked:
 * - the answer is 0 or GW_EINVAL, the same twice; GW_EINVAL always with a reason and an output
 *   all empty (nothing of any header kept), and always for an oversized header;
 * - on 0: the address is "" or an address inet_ntop prints back the same (normalised, never
 *   IPv4-mapped IPv6); the scheme one of the three; the host "" or a valid host[:port] of
 *   visible ASCII;
 * - an address that is a trusted proxy comes only from a chain of trusted proxies (the client
 *   is the rightmost untrusted hop, so the answer is trusted only if every hop was);
 * - with Forwarded present, the X-Forwarded-* values change nothing.
 * Calls: web/forwarded, config (ranges), libc. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "web/forwarded.h"

#define INPUT_MAX 4096

static struct gw_cidr ranges[4];
static unsigned n_ranges;

static void setup(void)
{
    static const char *const list[] = {"127.0.0.0/8", "::1/128", "10.0.0.0/8", "fd00::/8"};
    for (unsigned i = 0; i < 4; i++)
        if (gw_config_parse_cidr(list[i], &ranges[n_ranges]) == 0)
            n_ranges++;
    if (n_ranges != 4)
        abort();
}

static void check_addr(const char *a)
{
    if (!*a)
        return;
    unsigned char b[16];
    char back[64];
    int v4 = inet_pton(AF_INET, a, b) == 1;
    if (!v4 && inet_pton(AF_INET6, a, b) != 1)
        abort();
    if (!inet_ntop(v4 ? AF_INET : AF_INET6, b, back, sizeof(back)) || strcmp(back, a) != 0)
        abort();
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!v4 && memcmp(b, mapped, 12) == 0)
        abort();
}

static void check_host(const char *h)
{
    for (const unsigned char *c = (const unsigned char *)h; *c; c++)
        if (*c <= ' ' || *c >= 0x7f || *c == '/' || *c == '@' || *c == ',' || *c == ';')
            abort();
    if (*h && strlen(h) > GW_FWD_HOST_MAX)
        abort();
}

static void check_result(const struct gw_fwd_headers *h, int rc, const struct gw_fwd *f,
                         const char *why)
{
    if (rc != 0 && rc != GW_EINVAL)
        abort();
    if ((rc != 0 || h->unreadable) &&
        (rc != GW_EINVAL || !why[0] || f->addr[0] || f->host[0] || f->scheme != GW_FWD_SCHEME_NONE))
        abort();
    if (f->scheme != GW_FWD_SCHEME_NONE && f->scheme != GW_FWD_SCHEME_HTTP &&
        f->scheme != GW_FWD_SCHEME_HTTPS)
        abort();
    check_addr(f->addr);
    check_host(f->host);
}

/* The walk returns a trusted address only as the leftmost hop of a chain trusted throughout; then
 * the rightmost hop (what the walk returns when nothing is trusted) is a trusted address too. */
static void check_chain(const struct gw_fwd_headers *h, const struct gw_fwd *f)
{
    if (!f->addr[0] || !gw_fwd_trusted(ranges, n_ranges, f->addr))
        return;
    struct gw_fwd last;
    char why[128];
    if (gw_fwd_parse(h, ranges, 0, &last, why, sizeof(why)) != 0 || !last.addr[0] ||
        !gw_fwd_trusted(ranges, n_ranges, last.addr))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char buf[INPUT_MAX + 1];
    if (n_ranges == 0)
        setup();
    if (size > INPUT_MAX)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    const char *part[4] = {NULL, NULL, NULL, NULL};
    bool oversized = false;
    char *p = buf;
    for (unsigned i = 0; i < 4 && p <= buf + size; i++) {
        char *cut = memchr(p, 0xff, (size_t)(buf + size - p));
        if (cut)
            *cut = '\0';
        size_t len = strlen(p);
        if (len > GW_FWD_HEADER_MAX)
            oversized = true;
        part[i] = len ? p : NULL;
        if (!cut)
            break;
        p = cut + 1;
    }
    struct gw_fwd_headers h = {part[0], part[1], part[2], part[3], oversized};
    struct gw_fwd f, again;
    char why[128], why2[128];
    int rc = gw_fwd_parse(&h, ranges, n_ranges, &f, why, sizeof(why));
    check_result(&h, rc, &f, why);
    if (gw_fwd_parse(&h, ranges, n_ranges, &again, why2, sizeof(why2)) != rc ||
        memcmp(&f, &again, sizeof(f)) != 0)
        abort();
    if (rc == 0)
        check_chain(&h, &f);
    if (h.forwarded) {
        struct gw_fwd_headers only = {h.forwarded, NULL, NULL, NULL, oversized};
        if (gw_fwd_parse(&only, ranges, n_ranges, &again, why2, sizeof(why2)) != rc ||
            memcmp(&f, &again, sizeof(f)) != 0)
            abort();
    }
    return 0;
}
