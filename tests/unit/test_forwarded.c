/* Tests for gateway/web/forwarded.c: address ranges (IPv4, IPv6, IPv4-mapped, prefixes), RFC 7239
 * Forwarded (tokens, quoted strings, IPv6 in brackets, ports, unknown and obfuscated nodes, the
 * chain of proxies walked from the right, scheme and host of the chosen element) and
 * X-Forwarded-For/-Proto/-Host, and everything malformed or oversized refused whole with a
 * reason and nothing left in the output; and web/http.c's public_url prefix helper. */
#include "web/forwarded.h"
#include "check.h"
#include "web/web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct gw_cidr ranges[8];
static unsigned n_ranges;

static void set_ranges(const char *const *list)
{
    n_ranges = 0;
    for (; *list; list++) {
        CHECK(gw_config_parse_cidr(*list, &ranges[n_ranges]) == 0);
        n_ranges++;
    }
}

static int parse(const char *fwd, const char *xff, const char *xfp, const char *xfh,
                 struct gw_fwd *out, char *why)
{
    struct gw_fwd_headers h = {.forwarded = fwd, .xff = xff, .xfp = xfp, .xfh = xfh};
    return gw_fwd_parse(&h, ranges, n_ranges, out, why, 200);
}

static void test_trusted(void)
{
    static const char *const list[] = {"127.0.0.0/8", "::1/128",   "10.1.0.0/17",
                                       "fd00::/8",    "192.0.2.9", NULL};
    set_ranges(list);
    CHECK(gw_fwd_trusted(ranges, n_ranges, "127.0.0.1"));
    CHECK(gw_fwd_trusted(ranges, n_ranges, "127.255.255.254"));
    CHECK(gw_fwd_trusted(ranges, n_ranges, "::1"));
    CHECK(gw_fwd_trusted(ranges, n_ranges, "::ffff:127.0.0.5")); /* mapped counts as IPv4 */
    CHECK(gw_fwd_trusted(ranges, n_ranges, "10.1.127.255"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "10.1.128.0")); /* /17 ends at .127.255 */
    CHECK(gw_fwd_trusted(ranges, n_ranges, "fdff:1::2"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "fe00::1"));
    CHECK(gw_fwd_trusted(ranges, n_ranges, "192.0.2.9"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "192.0.2.8"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "::2"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "128.0.0.1"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "::127.0.0.1")); /* IPv4-compatible is not mapped */
    CHECK(!gw_fwd_trusted(ranges, n_ranges, ""));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, NULL));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "localhost"));
    CHECK(!gw_fwd_trusted(ranges, 0, "127.0.0.1"));
    static const char *const all[] = {"0.0.0.0/0", NULL};
    set_ranges(all);
    CHECK(gw_fwd_trusted(ranges, n_ranges, "203.0.113.1"));
    CHECK(!gw_fwd_trusted(ranges, n_ranges, "2001:db8::1")); /* v4 ranges hold no v6 */

    struct gw_config *cfg = calloc(1, sizeof(*cfg));
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    gw_config_defaults(cfg);
    struct gw_cidr out[GW_CFG_MAX_LIST];
    CHECK(gw_fwd_ranges(cfg, out) == 2);
    CHECK(gw_fwd_trusted(out, 2, "127.0.0.1") && gw_fwd_trusted(out, 2, "::1"));
    free(cfg);
}

static void test_forwarded(void)
{
    static const char *const loop[] = {"127.0.0.0/8", "::1/128", "10.0.0.0/8", NULL};
    set_ranges(loop);
    struct gw_fwd f;
    char why[200];
    CHECK(parse("for=192.0.2.60;proto=https;host=example.org", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.60");
    CHECK(f.scheme == GW_FWD_SCHEME_HTTPS);
    CHECK_STR(f.host, "example.org");
    /* Quoted IPv6 with a port, names in any case, spaces around ';' and ','. */
    CHECK(parse("For=\"[2001:DB8:cafe::17]:4711\" ; Proto=http ; Host=\"chat.example:8443\"", NULL,
                NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "2001:db8:cafe::17");
    CHECK(f.scheme == GW_FWD_SCHEME_HTTP);
    CHECK_STR(f.host, "chat.example:8443");
    CHECK(parse("for=\"192.0.2.43:47011\"", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.43");
    CHECK(f.scheme == GW_FWD_SCHEME_NONE && f.host[0] == '\0');
    CHECK(parse("for=\"[::ffff:198.51.100.1]\"", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "198.51.100.1");
    /* The chain: the rightmost hop that is no trusted proxy; its element's proto and host. */
    CHECK(parse("for=198.51.100.17;proto=https;host=a.example, for=10.2.3.4;proto=http;host=inner",
                NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "198.51.100.17");
    CHECK(f.scheme == GW_FWD_SCHEME_HTTPS);
    CHECK_STR(f.host, "a.example");
    /* A forged leftmost entry stays forged: the client is the one the proxy saw. */
    CHECK(parse("for=203.0.113.9, for=198.51.100.17, for=10.0.0.1", NULL, NULL, NULL, &f, why) ==
          0);
    CHECK_STR(f.addr, "198.51.100.17");
    /* All trusted: the leftmost. */
    CHECK(parse("for=10.0.0.2, for=127.0.0.1", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "10.0.0.2");
    /* unknown and obfuscated nodes stop the walk and give no address. */
    CHECK(parse("for=198.51.100.1, for=unknown", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "");
    CHECK(parse("for=\"_hidden:_port\";proto=https", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "");
    CHECK(f.scheme == GW_FWD_SCHEME_HTTPS);
    /* Extensions and by= are read and let be; empty elements and pairs are allowed. */
    CHECK(parse(",, for=192.0.2.1;by=10.0.0.1;;ext=\"a\\\"b\" ,", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.1");
    /* An element with no for=: nothing known about the client. */
    CHECK(parse("proto=https;host=x.example", NULL, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "");
    CHECK(f.scheme == GW_FWD_SCHEME_HTTPS);
    /* Forwarded wins over X-Forwarded-*. */
    CHECK(parse("for=192.0.2.1", "198.51.100.2", "https", "y.example", &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.1");
    CHECK(f.scheme == GW_FWD_SCHEME_NONE && f.host[0] == '\0');
}

static void test_x_forwarded(void)
{
    static const char *const loop[] = {"127.0.0.0/8", "::1/128", NULL};
    set_ranges(loop);
    struct gw_fwd f;
    char why[200];
    CHECK(parse(NULL, "192.0.2.1", "https", "example.org", &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.1");
    CHECK(f.scheme == GW_FWD_SCHEME_HTTPS);
    CHECK_STR(f.host, "example.org");
    CHECK(parse(NULL, "203.0.113.5, 2001:db8::1 ,127.0.0.1", NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "2001:db8::1");
    CHECK(f.scheme == GW_FWD_SCHEME_NONE && f.host[0] == '\0');
    CHECK(parse(NULL, "[2001:db8::2]:555", NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "2001:db8::2");
    CHECK(parse(NULL, "192.0.2.7:1234", NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.7");
    CHECK(parse(NULL, "::ffff:192.0.2.8", NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.8");
    CHECK(parse(NULL, "unknown", NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "");
    /* Proto and host alone; lists: the last entry (the nearest proxy's). */
    CHECK(parse(NULL, NULL, "http, HTTPS", "a.example, [::1]:8443", &f, why) == 0);
    CHECK(f.addr[0] == '\0');
    CHECK(f.scheme == GW_FWD_SCHEME_HTTPS);
    CHECK_STR(f.host, "[::1]:8443");
    /* Nothing at all. */
    CHECK(parse(NULL, NULL, NULL, NULL, &f, why) == 0);
    CHECK(f.addr[0] == '\0' && f.scheme == GW_FWD_SCHEME_NONE && f.host[0] == '\0');
    CHECK(parse(NULL, "", NULL, NULL, &f, why) == 0);
    CHECK(f.addr[0] == '\0');
}

/* Each refused whole: GW_EINVAL, a reason, and nothing of any header kept. */
static void refused(const char *fwd, const char *xff, const char *xfp, const char *xfh)
{
    struct gw_fwd f;
    memset(&f, 'x', sizeof(f));
    char why[200] = "";
    int rc = parse(fwd, xff, xfp, xfh, &f, why);
    if (rc != GW_EINVAL)
        fprintf(stderr, "accepted: Forwarded=%s XFF=%s XFP=%s XFH=%s\n", fwd ? fwd : "-",
                xff ? xff : "-", xfp ? xfp : "-", xfh ? xfh : "-");
    CHECK(rc == GW_EINVAL);
    CHECK(why[0] != '\0');
    CHECK(f.addr[0] == '\0' && f.scheme == GW_FWD_SCHEME_NONE && f.host[0] == '\0');
}

static void test_malformed(void)
{
    static const char *const loop[] = {"127.0.0.0/8", NULL};
    set_ranges(loop);
    /* clang-format off */
    static const char *const bad_forwarded[] = {
        "for", "for=", "=1.2.3.4", "for=1.2.3.4;for=5.6.7.8", "for=1.2.3.4;proto=ftp",
        "for=1.2.3.4;proto=https;PROTO=http", "for=[::1]", "for=\"[::1\"", "for=\"::1\"",
        "for=\"1.2.3.4", "for=1.2.3.4 junk", "for=1.2.3.4;host=\"a b\"", "for=1.2.3.4;host=a/b",
        "for=\"1.2.3.4:0\"", "for=\"1.2.3.4:99999\"", "for=300.1.1.1", "for=\"[1.2.3.4]\"",
        "for=\"[fe80::1%25eth0]\"", "for=\"1.2.3.4\\", "for=\"1.2.3.4\x01\"", "for=\"\xc3\xa9\"",
        "for=_", "for=_a$b", "for=1.2.3.4:80", "for=localhost", "host=example.org:0",
        "for=1.2.3.4,for=", "for=1.2.3.4;proto=\"\"", "for=\"\"", "for=1.2.3.4;host=",
    };
    static const char *const bad_xff[] = {
        "1.2.3.4 5.6.7.8", "1.2.3.4;5.6.7.8", "[::1", "[::1]x", "::1]:80", "1.2.3.4:0",
        "example.org", "1.2.3", "_", "1.2.3.4/8", "\"1.2.3.4\"", "fe80::1%eth0",
    };
    static const char *const bad_xfp[] = {"ftp", "https ;", "http/1.1", "https, wss", "\"https\""};
    static const char *const bad_xfh[] = {"a b", "a.example:0", "a.example:", "[::1", "a/b",
                                          "user@a.example", "a.example, b c", "\xc3\xa9.example"};
    /* clang-format on */
    for (size_t i = 0; i < sizeof(bad_forwarded) / sizeof(bad_forwarded[0]); i++)
        refused(bad_forwarded[i], NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof(bad_xff) / sizeof(bad_xff[0]); i++)
        refused(NULL, bad_xff[i], "https", "ok.example");
    for (size_t i = 0; i < sizeof(bad_xfp) / sizeof(bad_xfp[0]); i++)
        refused(NULL, "192.0.2.1", bad_xfp[i], "ok.example");
    for (size_t i = 0; i < sizeof(bad_xfh) / sizeof(bad_xfh[0]); i++)
        refused(NULL, "192.0.2.1", "https", bad_xfh[i]);

    /* Oversized, as the caller reports it. */
    struct gw_fwd_headers h = {.xff = "192.0.2.1", .unreadable = true};
    struct gw_fwd f;
    char why[200];
    CHECK(gw_fwd_parse(&h, ranges, n_ranges, &f, why, sizeof(why)) == GW_EINVAL);
    CHECK(strstr(why, "longer than 1024") != NULL);
    CHECK(f.addr[0] == '\0');

    /* Bounds on hops and pairs: 16 hops and 8 pairs pass, one more does not. */
    char list[1024] = "", one[64];
    for (int i = 0; i < GW_FWD_ELEMENTS_MAX; i++) {
        snprintf(one, sizeof(one), "%s192.0.2.%d", i ? ", " : "", i + 1);
        strcat(list, one);
    }
    CHECK(parse(NULL, list, NULL, NULL, &f, why) == 0);
    CHECK_STR(f.addr, "192.0.2.16");
    strcat(list, ", 192.0.2.99");
    refused(NULL, list, NULL, NULL);
    char fw[1024] = "";
    for (int i = 0; i < GW_FWD_ELEMENTS_MAX; i++)
        strcat(fw, i ? ",for=1.1.1.1" : "for=1.1.1.1");
    CHECK(parse(fw, NULL, NULL, NULL, &f, why) == 0);
    strcat(fw, ",for=1.1.1.1");
    refused(fw, NULL, NULL, NULL);
    CHECK(parse("for=1.1.1.1;a=1;b=2;c=3;d=4;e=5;f=6;g=7", NULL, NULL, NULL, &f, why) == 0);
    refused("for=1.1.1.1;a=1;b=2;c=3;d=4;e=5;f=6;g=7;h=8", NULL, NULL, NULL);
    /* One bad header spoils the others: never trusted in part. */
    refused(NULL, "192.0.2.1", "https", "bad host");
    refused(NULL, "not-an-address", "https", "ok.example");
}

/* web/http.c's prefix helper: public_url's path taken off a request path, and only that. */
static void test_unprefixed(void)
{
    struct gw_config *cfg = calloc(1, sizeof(*cfg));
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    gw_config_defaults(cfg);
    CHECK_STR(gw_web_unprefixed(cfg, "/chat/events/a/b"), "/chat/events/a/b"); /* no public_url */
    snprintf(cfg->public_url, sizeof(cfg->public_url), "https://example.org/chat/");
    CHECK_STR(gw_web_unprefixed(cfg, "/chat/events/a/b"), "/events/a/b");
    CHECK_STR(gw_web_unprefixed(cfg, "/chat/xmpp-websocket"), "/xmpp-websocket");
    CHECK_STR(gw_web_unprefixed(cfg, "/chat/"), "/");
    CHECK_STR(gw_web_unprefixed(cfg, "/chat"), "/chat"); /* the prefix alone is no route */
    CHECK_STR(gw_web_unprefixed(cfg, "/chatty/x"), "/chatty/x");
    CHECK_STR(gw_web_unprefixed(cfg, "/events/a/b"), "/events/a/b"); /* a stripping proxy */
    snprintf(cfg->public_url, sizeof(cfg->public_url), "https://example.org/a/b");
    CHECK_STR(gw_web_unprefixed(cfg, "/a/b/http-bind"), "/http-bind");
    CHECK_STR(gw_web_unprefixed(cfg, "/a/http-bind"), "/a/http-bind");
    snprintf(cfg->public_url, sizeof(cfg->public_url), "https://example.org/");
    CHECK_STR(gw_web_unprefixed(cfg, "/http-bind"), "/http-bind");
    free(cfg);
}

int main(void)
{
    test_trusted();
    test_forwarded();
    test_x_forwarded();
    test_malformed();
    test_unprefixed();
    return CHECK_SUMMARY();
}
