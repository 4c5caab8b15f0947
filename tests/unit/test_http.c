/* Unit tests for gateway/web/http.c's Origin policy without a connection: the strict parse of an
 * Origin (scheme, host by core/host.c's rules, port, nothing else; controls, spaces, bytes outside
 * ASCII, paths, userinfo and bad ports refused) and the rules of `origins` ("*", "same-host",
 * "localhost", an origin with the scheme's default port) on what parsed. The lws side
 * (gw_web_origin_allowed) is covered by tests/integration/ (bad_input, websocket_rfc7395). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config/config.h"
#include "web/web.h"

static bool parses(const char *s)
{
    struct gw_web_origin o;
    return gw_web_origin_parse(s, &o) == 0;
}

static void check_parsed(const char *s, bool https, const char *host, unsigned port,
                         const char *authority)
{
    struct gw_web_origin o;
    memset(&o, 0, sizeof(o));
    int rc = gw_web_origin_parse(s, &o);
    if (rc != 0)
        fprintf(stderr, "not parsed: %s\n", s);
    CHECK(rc == 0);
    CHECK(o.https == https);
    CHECK_STR(o.host, host);
    CHECK(o.port == port);
    CHECK_STR(o.authority, authority);
}

static void test_parse_good(void)
{
    check_parsed("http://localhost", false, "localhost", 80, "localhost");
    check_parsed("https://chat.example", true, "chat.example", 443, "chat.example");
    check_parsed("http://localhost:5280", false, "localhost", 5280, "localhost:5280");
    check_parsed("HTTPS://Chat.Example:8443", true, "Chat.Example", 8443, "Chat.Example:8443");
    check_parsed("http://127.0.0.1:1", false, "127.0.0.1", 1, "127.0.0.1:1");
    check_parsed("http://[::1]:65535", false, "[::1]", 65535, "[::1]:65535");
    check_parsed("https://[2001:db8::1]", true, "[2001:db8::1]", 443, "[2001:db8::1]");
    check_parsed("http://a-b.c-d.example:080", false, "a-b.c-d.example", 80, "a-b.c-d.example:080");
    /* 255 bytes of host: the most a name may have. */
    char host[256], origin[300];
    for (int i = 0; i < 255; i++)
        host[i] = (i % 64 == 63) ? '.' : 'a';
    host[255] = '\0';
    snprintf(origin, sizeof(origin), "http://%s", host);
    check_parsed(origin, false, host, 80, host);
}

static void test_parse_bad(void)
{
    /* The catalogue's case: a control character after a port that looks local. */
    CHECK(!parses("http://localhost:1\x01"));
    CHECK(!parses("http://localhost\x01"));
    CHECK(!parses("http://local\x1b[31mhost"));
    CHECK(!parses("http://localhost\x7f"));
    CHECK(!parses("http://localhost:1 "));
    CHECK(!parses(" http://localhost"));
    CHECK(!parses("http://local host"));
    CHECK(!parses("http://localhost\t"));
    /* UTF-8 (browsers send the A-label), a C1 control in UTF-8. */
    CHECK(!parses("http://b\xc3\xbc"
                  "cher.example"));
    CHECK(!parses("http://localhost\xc2\x9b"));
    /* Schemes. */
    CHECK(!parses("ftp://localhost"));
    CHECK(!parses("ws://localhost"));
    CHECK(!parses("httpx://localhost"));
    CHECK(!parses("http:/localhost"));
    CHECK(!parses("http:localhost"));
    CHECK(!parses("//localhost"));
    CHECK(!parses("localhost"));
    CHECK(!parses("null"));
    CHECK(!parses(""));
    CHECK(!parses(NULL));
    /* Ports: digits only, 1..65535, present when the colon is. */
    CHECK(!parses("http://localhost:"));
    CHECK(!parses("http://localhost:0"));
    CHECK(!parses("http://localhost:65536"));
    CHECK(!parses("http://localhost:99999999999999999999"));
    CHECK(!parses("http://localhost:+80"));
    CHECK(!parses("http://localhost:-1"));
    CHECK(!parses("http://localhost:8o"));
    CHECK(!parses("http://localhost:80:80"));
    CHECK(!parses("http://[::1]:"));
    /* Hosts: by the domain rules. */
    CHECK(!parses("http://"));
    CHECK(!parses("http://:80"));
    CHECK(!parses("http://localhost."));
    CHECK(!parses("http://.localhost"));
    CHECK(!parses("http://a..b"));
    CHECK(!parses("http://-a.example"));
    CHECK(!parses("http://a_b.example"));
    CHECK(!parses("http://999.0.0.1"));
    CHECK(!parses("http://[::1"));
    CHECK(!parses("http://[localhost]"));
    CHECK(!parses("http://[::1]x"));
    CHECK(!parses("http://::1"));
    CHECK(!parses("http://user@localhost"));
    CHECK(!parses("http://localhost@evil.example"));
    /* Nothing after the authority: no path, query, fragment, trailing slash. */
    CHECK(!parses("http://localhost/"));
    CHECK(!parses("http://localhost/path"));
    CHECK(!parses("http://localhost:80/"));
    CHECK(!parses("http://localhost?x"));
    CHECK(!parses("http://localhost#x"));
    CHECK(!parses("http://localhost\\"));
    /* 256 bytes of host: one too many. */
    char origin[300] = "http://";
    for (int i = 0; i < 256; i++)
        origin[7 + i] = (i % 64 == 63) ? '.' : 'a';
    origin[7 + 256] = '\0';
    CHECK(!parses(origin));

    /* out stays as it was on failure. */
    struct gw_web_origin o = {.https = true, .port = 7};
    strcpy(o.host, "kept");
    CHECK(gw_web_origin_parse("http://localhost:1\x01", &o) == GW_EINVAL);
    CHECK(o.https && o.port == 7);
    CHECK_STR(o.host, "kept");
}

static struct gw_config *cfg_with(const char *const *rules)
{
    struct gw_config *c = malloc(sizeof(*c));
    if (!c)
        abort();
    gw_config_defaults(c);
    c->n_origins = 0;
    for (; *rules; rules++)
        snprintf(c->origins[c->n_origins++], sizeof(c->origins[0]), "%s", *rules);
    return c;
}

static void test_policy(void)
{
    struct gw_config *c = cfg_with((const char *const[]){"same-host", "localhost", NULL});
    /* No Origin: a client that is no browser. */
    CHECK(gw_web_origin_check(c, NULL, "gw.example"));
    CHECK(gw_web_origin_check(c, "", NULL));
    /* localhost: the three loopback names, any scheme and port. */
    CHECK(gw_web_origin_check(c, "http://localhost", NULL));
    CHECK(gw_web_origin_check(c, "https://LOCALHOST:8443", NULL));
    CHECK(gw_web_origin_check(c, "http://127.0.0.1:5280", NULL));
    CHECK(gw_web_origin_check(c, "http://[::1]:5280", NULL));
    CHECK(!gw_web_origin_check(c, "http://127.0.0.2", NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost.evil.example", NULL));
    CHECK(!gw_web_origin_check(c, "http://127.0.0.1.evil.example", NULL));
    /* ... but only when the whole origin is well-formed. */
    CHECK(!gw_web_origin_check(c, "http://localhost:1\x01", NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost:1\x01", "localhost:1\x01"));
    CHECK(!gw_web_origin_check(c, "http://localhost/", NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost:0", NULL));
    CHECK(!gw_web_origin_check(c, "file://localhost", NULL));
    /* same-host: the origin's host[:port] is the request's Host. */
    CHECK(gw_web_origin_check(c, "https://gw.example", "gw.example"));
    CHECK(gw_web_origin_check(c, "http://gw.example:5280", "GW.example:5280"));
    CHECK(!gw_web_origin_check(c, "http://gw.example:5280", "gw.example"));
    CHECK(!gw_web_origin_check(c, "http://gw.example", "gw.example:5280"));
    CHECK(!gw_web_origin_check(c, "http://gw.example", NULL));
    CHECK(!gw_web_origin_check(c, "http://evil.example", "gw.example"));
    /* "null" is an opaque origin: only "*" lets it through. */
    CHECK(!gw_web_origin_check(c, "null", "null"));
    free(c);

    /* Listed origins: scheme, host (any case) and port, the default port filled in. */
    c = cfg_with((const char *const[]){"https://chat.example", "http://localhost:8080", NULL});
    CHECK(gw_web_origin_check(c, "https://chat.example", NULL));
    CHECK(gw_web_origin_check(c, "HTTPS://Chat.Example", NULL));
    CHECK(gw_web_origin_check(c, "https://chat.example:443", NULL));
    CHECK(gw_web_origin_check(c, "http://localhost:8080", NULL));
    CHECK(!gw_web_origin_check(c, "http://chat.example", NULL));
    CHECK(!gw_web_origin_check(c, "https://chat.example:8443", NULL));
    CHECK(!gw_web_origin_check(c, "https://chat.example.evil", NULL));
    CHECK(!gw_web_origin_check(c, "https://evil.chat.example", NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost", NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost:8081", NULL));
    CHECK(!gw_web_origin_check(c, "https://chat.example/", NULL));
    CHECK(!gw_web_origin_check(c, "https://chat.example\x01", NULL));
    free(c);

    /* "*": any well-formed origin and "null"; still nothing malformed. */
    c = cfg_with((const char *const[]){"*", NULL});
    CHECK(gw_web_origin_check(c, "https://anything.example:1", NULL));
    CHECK(gw_web_origin_check(c, "null", NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost:1\x01", NULL));
    CHECK(!gw_web_origin_check(c, "javascript:alert(1)", NULL));
    free(c);

    /* No rules: only requests without Origin. */
    c = cfg_with((const char *const[]){NULL});
    CHECK(gw_web_origin_check(c, NULL, NULL));
    CHECK(!gw_web_origin_check(c, "http://localhost", "localhost"));
    free(c);
}

int main(void)
{
    test_parse_good();
    test_parse_bad();
    test_policy();
    return CHECK_SUMMARY();
}
