/* Tests for gateway/core/host.c: IP literals, host names, domain rules (labels, IDNs, all-digit
 * names, bracketed IPv6, the 255-byte limit), ports, "host:port" parsing, socket addresses, and
 * the strict UTF-8 decoder and character classes. */
#include "core/host.h"
#include "check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define S(lit) (lit), (sizeof(lit) - 1) /* a string literal as pointer and length */

/* A domain of exactly len bytes: labels of 62 letters, then the rest. */
static void make_domain(char *out, size_t len)
{
    size_t k = 0;
    while (len - k > 63) {
        memset(out + k, 'a', 62);
        out[k + 62] = '.';
        k += 63;
    }
    memset(out + k, 'b', len - k);
    out[len] = '\0';
}

static void test_ip_literal(void)
{
    CHECK(gw_host_ip_literal(S("127.0.0.1")) == GW_HOST_IP_V4);
    CHECK(gw_host_ip_literal(S("0.0.0.0")) == GW_HOST_IP_V4);
    CHECK(gw_host_ip_literal(S("::1")) == GW_HOST_IP_V6);
    CHECK(gw_host_ip_literal(S("::")) == GW_HOST_IP_V6);
    CHECK(gw_host_ip_literal(S("2001:db8::1")) == GW_HOST_IP_V6);
    CHECK(gw_host_ip_literal(S("::ffff:192.0.2.1")) == GW_HOST_IP_V6);
    CHECK(gw_host_ip_literal(S("[::1]")) == GW_HOST_IP_NONE); /* brackets are the caller's */
    CHECK(gw_host_ip_literal(S("999.0.0.1")) == GW_HOST_IP_NONE);
    CHECK(gw_host_ip_literal(S("1.2.3")) == GW_HOST_IP_NONE);
    CHECK(gw_host_ip_literal(S("localhost")) == GW_HOST_IP_NONE);
    CHECK(gw_host_ip_literal(S("")) == GW_HOST_IP_NONE);
    CHECK(gw_host_ip_literal(NULL, 3) == GW_HOST_IP_NONE);
    /* A slice of a longer string: only len bytes count. */
    CHECK(gw_host_ip_literal("10.0.0.1:80", 8) == GW_HOST_IP_V4);
    CHECK(gw_host_ip_literal("::1]:80", 3) == GW_HOST_IP_V6);
    /* Longer than any address text. */
    char longest[128];
    memset(longest, '1', sizeof(longest));
    CHECK(gw_host_ip_literal(longest, sizeof(longest)) == GW_HOST_IP_NONE);
}

static void test_name_valid(void)
{
    CHECK(gw_host_name_valid(S("localhost")));
    CHECK(gw_host_name_valid(S("xmpp.example.com")));
    CHECK(gw_host_name_valid(S("prosody_1"))); /* container names */
    CHECK(gw_host_name_valid(S("10.0.0.7")));
    CHECK(gw_host_name_valid(S("2001:db8::5")));
    CHECK(!gw_host_name_valid(S("[2001:db8::5]")));
    CHECK(!gw_host_name_valid(S("2001:db8::zz")));
    CHECK(!gw_host_name_valid(S("a b")));
    CHECK(!gw_host_name_valid(S("a/b")));
    CHECK(!gw_host_name_valid(S("h\xc3\xa4st"))); /* resolvers take A-labels only */
    CHECK(!gw_host_name_valid(S("")));
    CHECK(!gw_host_name_valid(NULL, 1));

    char name[300];
    memset(name, 'h', sizeof(name));
    CHECK(gw_host_name_valid(name, GW_HOST_MAX));
    CHECK(!gw_host_name_valid(name, GW_HOST_MAX + 1));
}

static void test_domain_valid(void)
{
    CHECK(gw_host_domain_valid(S("example.com")));
    CHECK(gw_host_domain_valid(S("EXAMPLE.com")));
    CHECK(gw_host_domain_valid(S("localhost")));
    CHECK(gw_host_domain_valid(S("a-b.example")));
    CHECK(gw_host_domain_valid(S("xn--bcher-kva.example")));
    CHECK(gw_host_domain_valid(S("\xc3\xa4.example"))); /* an IDN as UTF-8 */
    CHECK(gw_host_domain_valid(S("192.0.2.1")));
    CHECK(gw_host_domain_valid(S("1a.example"))); /* a digit-led label is fine */
    CHECK(gw_host_domain_valid(S("[::1]")));
    CHECK(gw_host_domain_valid(S("[2001:db8::1]")));

    CHECK(!gw_host_domain_valid(S("")));
    CHECK(!gw_host_domain_valid(NULL, 1));
    CHECK(!gw_host_domain_valid(S(".")));
    CHECK(!gw_host_domain_valid(S("example.com."))); /* the caller strips a trailing dot */
    CHECK(!gw_host_domain_valid(S(".example.com")));
    CHECK(!gw_host_domain_valid(S("a..example")));
    CHECK(!gw_host_domain_valid(S("-a.example")));
    CHECK(!gw_host_domain_valid(S("a-.example")));
    CHECK(!gw_host_domain_valid(S("a_b.example"))); /* '_' is for host names, not domains */
    CHECK(!gw_host_domain_valid(S("a b")));
    CHECK(!gw_host_domain_valid(S("a@b")));
    CHECK(!gw_host_domain_valid(S("a/b")));
    CHECK(!gw_host_domain_valid(S("a:b")));
    CHECK(!gw_host_domain_valid(S("999.0.0.1"))); /* all digits: must be IPv4 */
    CHECK(!gw_host_domain_valid(S("1.2.3")));
    CHECK(!gw_host_domain_valid(S("[::1")));
    CHECK(!gw_host_domain_valid(S("[]")));
    CHECK(!gw_host_domain_valid(S("[127.0.0.1]"))); /* brackets hold IPv6 only */
    CHECK(!gw_host_domain_valid(S("::1")));
    CHECK(!gw_host_domain_valid(S("a\xff")));          /* not UTF-8 */
    CHECK(!gw_host_domain_valid(S("a\xc3")));          /* cut short */
    CHECK(!gw_host_domain_valid(S("\xc0\xae.x")));     /* overlong '.' */
    CHECK(!gw_host_domain_valid(S("a\xc2\x85.x")));    /* U+0085, a C1 control */
    CHECK(!gw_host_domain_valid(S("a\xe3\x80\x80x"))); /* U+3000, a space */
    CHECK(!gw_host_domain_valid(S("a\x01")));

    /* ASCII labels: 63 bytes fit, 64 do not; IDN labels are not counted here. */
    char dom[1100];
    memset(dom, 'a', 63);
    snprintf(dom + 63, 16, ".example");
    CHECK(gw_host_domain_valid(dom, strlen(dom)));
    memset(dom, 'a', 64);
    snprintf(dom + 64, 16, ".example");
    CHECK(!gw_host_domain_valid(dom, strlen(dom)));
    size_t n = 0;
    for (unsigned i = 0; i < 40; i++, n += 2)
        memcpy(dom + n, "\xc3\xa4", 2);
    snprintf(dom + n, 16, ".example");
    CHECK(gw_host_domain_valid(dom, strlen(dom)));

    /* The whole name: 255 bytes fit, 256 do not. */
    make_domain(dom, 255);
    CHECK(gw_host_domain_valid(dom, 255));
    make_domain(dom, 256);
    CHECK(!gw_host_domain_valid(dom, 256));
    make_domain(dom, 1023);
    CHECK(!gw_host_domain_valid(dom, 1023));
}

static void test_parse_port(void)
{
    uint16_t p = 7;
    CHECK(gw_host_parse_port(S("1"), &p) == 0 && p == 1);
    CHECK(gw_host_parse_port(S("65535"), &p) == 0 && p == 65535);
    CHECK(gw_host_parse_port(S("00080"), &p) == 0 && p == 80);
    CHECK(gw_host_parse_port("5222/x", 4, &p) == 0 && p == 5222);
    p = 7;
    CHECK(gw_host_parse_port(S("0"), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("65536"), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("99999999999999999999"), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S(""), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("-1"), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("+1"), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("80 "), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("0x50"), &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(NULL, 2, &p) == GW_EINVAL);
    CHECK(gw_host_parse_port(S("80"), NULL) == GW_EINVAL);
    CHECK(p == 7); /* untouched on failure */
}

#define CHECK_ADDR(s, h, p)                                                                        \
    do {                                                                                           \
        char host_[GW_HOST_MAX + 1];                                                               \
        uint16_t port_ = 0;                                                                        \
        CHECK(gw_host_parse_addr((s), host_, sizeof(host_), &port_) == 0);                         \
        CHECK_STR(host_, (h));                                                                     \
        CHECK(port_ == (p));                                                                       \
    } while (0)

static void test_parse_addr(void)
{
    CHECK_ADDR("127.0.0.1:5280", "127.0.0.1", 5280);
    CHECK_ADDR("localhost:1", "localhost", 1);
    CHECK_ADDR("prosody_1:5222", "prosody_1", 5222);
    CHECK_ADDR("[::1]:5280", "::1", 5280);
    CHECK_ADDR("[::]:80", "::", 80);
    CHECK_ADDR("[::ffff:192.0.2.1]:443", "::ffff:192.0.2.1", 443);
    CHECK_ADDR("0.0.0.0:00080", "0.0.0.0", 80);

    static const char *const bad[] = {
        "",        "localhost",     ":5280",     "localhost:",  "localhost:0", "h:65536",
        "h:80x",   "::1:5280",      "[::1]5280", "[::1]",       "[::1:5280",   "[zz::1]:5280",
        "[]:5280", "[h.example]:1", "a b:1",     "h\xc3\xa4:1", "h:-1",        "[::1]:5280:1",
        "h:1:2",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[GW_HOST_MAX + 1] = "keep";
        uint16_t port = 9;
        int rc = gw_host_parse_addr(bad[i], host, sizeof(host), &port);
        if (rc != GW_EINVAL)
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        CHECK(rc == GW_EINVAL);
        CHECK_STR(host, "keep");
        CHECK(port == 9);
    }

    /* The longest host name fits a GW_HOST_MAX + 1 buffer; a longer one is no host. */
    char s[GW_HOST_MAX + 16], host[GW_HOST_MAX + 1];
    uint16_t port;
    memset(s, 'h', GW_HOST_MAX);
    snprintf(s + GW_HOST_MAX, 16, ":5222");
    CHECK(gw_host_parse_addr(s, host, sizeof(host), &port) == 0);
    CHECK(strlen(host) == GW_HOST_MAX && port == 5222);
    memset(s, 'h', GW_HOST_MAX + 1);
    snprintf(s + GW_HOST_MAX + 1, 14, ":5222");
    CHECK(gw_host_parse_addr(s, host, sizeof(host), &port) == GW_EINVAL);

    /* A valid host that does not fit the caller's buffer. */
    char small[4];
    CHECK(gw_host_parse_addr("localhost:1", small, sizeof(small), &port) == GW_ELIMIT);
    CHECK(gw_host_parse_addr("abc:1", small, sizeof(small), &port) == 0);
    CHECK_STR(small, "abc");

    CHECK(gw_host_parse_addr(NULL, host, sizeof(host), &port) == GW_EINVAL);
    CHECK(gw_host_parse_addr("h:1", NULL, sizeof(host), &port) == GW_EINVAL);
    CHECK(gw_host_parse_addr("h:1", host, sizeof(host), NULL) == GW_EINVAL);
}

static void test_sockaddr(void)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    CHECK(gw_host_sockaddr("127.0.0.1", 5280, &ss, &len) == 0);
    CHECK(ss.ss_family == AF_INET && len == sizeof(struct sockaddr_in));
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    CHECK(ntohs(s4->sin_port) == 5280 && ntohl(s4->sin_addr.s_addr) == 0x7f000001);

    CHECK(gw_host_sockaddr("::1", 443, &ss, &len) == 0);
    CHECK(ss.ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    CHECK(ntohs(s6->sin6_port) == 443 && IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));

    len = 3;
    ss.ss_family = AF_UNIX;
    CHECK(gw_host_sockaddr("localhost", 1, &ss, &len) == GW_EINVAL);
    CHECK(gw_host_sockaddr("[::1]", 1, &ss, &len) == GW_EINVAL);
    CHECK(len == 3 && ss.ss_family == AF_UNIX); /* untouched on failure */
    CHECK(gw_host_sockaddr(NULL, 1, &ss, &len) == GW_EINVAL);
    CHECK(gw_host_sockaddr("::1", 1, NULL, &len) == GW_EINVAL);
    CHECK(gw_host_sockaddr("::1", 1, &ss, NULL) == GW_EINVAL);
}

static void test_utf8(void)
{
    uint32_t cp = 0;
    CHECK(gw_host_utf8_next(S("a"), &cp) == 1 && cp == 'a');
    CHECK(gw_host_utf8_next(S("\xc3\xa4"), &cp) == 2 && cp == 0xE4);
    CHECK(gw_host_utf8_next(S("\xe2\x82\xac"), &cp) == 3 && cp == 0x20AC);
    CHECK(gw_host_utf8_next(S("\xf4\x8f\xbf\xbf"), &cp) == 4 && cp == 0x10FFFF);
    CHECK(gw_host_utf8_next(S("\xc2\x80"), &cp) == 2 && cp == 0x80); /* smallest 2-byte */
    cp = 1;
    CHECK(gw_host_utf8_next(S("\xc0\x80"), &cp) == 0);         /* overlong NUL */
    CHECK(gw_host_utf8_next(S("\xe0\x80\xaf"), &cp) == 0);     /* overlong '/' */
    CHECK(gw_host_utf8_next(S("\xed\xa0\x80"), &cp) == 0);     /* U+D800 surrogate */
    CHECK(gw_host_utf8_next(S("\xf4\x90\x80\x80"), &cp) == 0); /* past U+10FFFF */
    CHECK(gw_host_utf8_next(S("\xf5\x80\x80\x80"), &cp) == 0);
    CHECK(gw_host_utf8_next(S("\x80"), &cp) == 0); /* a lone continuation byte */
    CHECK(gw_host_utf8_next(S("\xc3"), &cp) == 0); /* cut short */
    CHECK(gw_host_utf8_next("\xe2\x82\xac", 2, &cp) == 0);
    CHECK(gw_host_utf8_next(S("\xc3\x28"), &cp) == 0); /* bad continuation */
    CHECK(cp == 1);                                    /* untouched on failure */

    CHECK(gw_host_cp_control(0x00) && gw_host_cp_control(0x1F) && gw_host_cp_control(0x7F));
    CHECK(gw_host_cp_control(0x80) && gw_host_cp_control(0x9F));
    CHECK(!gw_host_cp_control(' ') && !gw_host_cp_control(0xA0) && !gw_host_cp_control('a'));
    CHECK(gw_host_cp_space(' ') && gw_host_cp_space(0xA0) && gw_host_cp_space(0x2000));
    CHECK(gw_host_cp_space(0x200A) && gw_host_cp_space(0x2028) && gw_host_cp_space(0x3000));
    CHECK(!gw_host_cp_space('a') && !gw_host_cp_space(0x200B) && !gw_host_cp_space('\t'));
}

static void test_nul_inside(void)
{
    /* Found by fuzz_host: inet_pton stops at a NUL, so a slice holding one is no address. */
    CHECK(gw_host_ip_literal("::\0\0\0\0\0\0\0001", 10) == GW_HOST_IP_NONE);
    CHECK(gw_host_ip_literal("127.0.0.1\0x", 11) == GW_HOST_IP_NONE);
    CHECK(!gw_host_domain_valid("[::1\0x]", 8));
    CHECK(!gw_host_name_valid("::1\0x", 6));
}

static void test_utf8_valid(void)
{
    CHECK(gw_host_utf8_valid(S("")));
    CHECK(gw_host_utf8_valid(S("plain ascii")));
    CHECK(gw_host_utf8_valid(S("Gr\xc3\xbc\xc3\x9f"
                               "e \xe6\x97\xa5 \xf0\x9f\x98\x80")));
    CHECK(!gw_host_utf8_valid(S("\x80")));             /* lone continuation */
    CHECK(!gw_host_utf8_valid(S("ok\xc3")));           /* truncated at the end */
    CHECK(!gw_host_utf8_valid(S("\xc0\x80")));         /* overlong */
    CHECK(!gw_host_utf8_valid(S("\xed\xa0\x80")));     /* surrogate */
    CHECK(!gw_host_utf8_valid(S("\xf4\x90\x80\x80"))); /* past U+10FFFF */
}

int main(void)
{
    test_nul_inside();
    test_utf8_valid();
    test_ip_literal();
    test_name_valid();
    test_domain_valid();
    test_parse_port();
    test_parse_addr();
    test_sockaddr();
    test_utf8();
    return CHECK_SUMMARY();
}
