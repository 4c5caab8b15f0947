/* Unit tests for gateway/web/ws_proto.c: what a message is (<open/> with to, version and
 * xml:lang, <close/>, a stanza and its bytes, whitespace keepalives), every error as its stream
 * condition (the parser's, unknown framing elements, stream-namespace elements, the order rules,
 * host-unknown, unsupported-version), the order of a connection's stream (nothing before
 * <open/>, one <open/> at a time, restarts for the same domain, nothing after the end) and the
 * frames the gateway writes; the count per client address of connections without <open/> (up to
 * the limit and no further, each address apart, released once, entries freed). No sockets:
 * websocket.c's lws side is covered by tests/integration/websocket_*.test.mjs. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/buf.h"
#include "web/ws_proto.h"

#define FRAMING "urn:ietf:params:xml:ns:xmpp-framing"
#define OPEN_TO(to) "<open xmlns='" FRAMING "' to='" to "' version='1.0'/>"

static const struct gw_xml_limits limits = {.max_stanza = 4096, .max_depth = 16, .max_attrs = 32};

static struct gw_ws_parser *parser;

static enum gw_ws_kind parse(struct gw_ws_state *st, struct gw_ws_msg *m, const char *s)
{
    return gw_ws_parse(parser, st, s, strlen(s), m);
}

/* s is an error with cond; the stream is then over. */
static void check_error(struct gw_ws_state *st, const char *s, enum gw_condition cond)
{
    struct gw_ws_msg m;
    enum gw_ws_kind k = parse(st, &m, s);
    if (k != GW_WS_ERROR || m.cond != cond)
        fprintf(stderr, "for %s: kind %d, condition %s\n", s, k, gw_condition_name(m.cond));
    CHECK(k == GW_WS_ERROR && m.kind == GW_WS_ERROR);
    CHECK(m.cond == cond);
    CHECK(gw_condition_is_stream(m.cond));
    CHECK(m.text && *m.text);
    CHECK(st->closing);
    CHECK(parse(st, &m, OPEN_TO("localhost")) == GW_WS_IGNORE);
}

/* A fresh connection that sent <open to='localhost'/> and got its answer. */
static void opened(struct gw_ws_state *st)
{
    struct gw_ws_msg m;
    memset(st, 0, sizeof(*st));
    CHECK(parse(st, &m, OPEN_TO("localhost")) == GW_WS_OPEN);
    gw_ws_state_ready(st);
}

static void test_open(void)
{
    struct gw_ws_state st = {0};
    struct gw_ws_msg m;
    CHECK(parse(&st, &m,
                "<open xmlns='" FRAMING
                "' to='example.com' version='1.0' xml:lang='de'/>") == GW_WS_OPEN);
    CHECK(m.kind == GW_WS_OPEN && m.cond == GW_COND_NONE && !m.text);
    CHECK_STR(m.to, "example.com");
    CHECK_STR(m.lang, "de");
    CHECK(st.awaiting_ready && !st.opened && !st.closing);
    CHECK_STR(st.domain, "example.com");
    CHECK_STR(gw_ws_state_from(&st), "example.com");
    gw_ws_state_ready(&st);
    CHECK(st.opened && !st.awaiting_ready);

    /* A prefixed framing element, content inside, an XML declaration: still <open/>. */
    memset(&st, 0, sizeof(st));
    CHECK(parse(&st, &m,
                "<?xml version='1.0'?>\n<f:open xmlns:f='" FRAMING
                "' to='localhost' version='1.0'> </f:open>\n") == GW_WS_OPEN);
    CHECK_STR(m.to, "localhost");
    CHECK_STR(m.lang, "");

    /* xml:lang kept to GW_WS_LANG_MAX bytes; a plain 'lang' attribute is not xml:lang. */
    char big[512];
    memset(&st, 0, sizeof(st));
    snprintf(big, sizeof(big),
             "<open xmlns='" FRAMING "' to='a.b' version='1.0' xml:lang='%0200d'/>", 0);
    CHECK(parse(&st, &m, big) == GW_WS_OPEN);
    CHECK(strlen(m.lang) == GW_WS_LANG_MAX);
    /* ... and cut before a character that would not fit whole, never inside it. */
    memset(&st, 0, sizeof(st));
    snprintf(big, sizeof(big),
             "<open xmlns='" FRAMING "' to='a.b' version='1.0' xml:lang='%062d\xc3\xa9x'/>", 0);
    CHECK(parse(&st, &m, big) == GW_WS_OPEN);
    CHECK(strlen(m.lang) == 62 && m.lang[61] == '0');
    memset(&st, 0, sizeof(st));
    snprintf(big, sizeof(big),
             "<open xmlns='" FRAMING "' to='a.b' version='1.0' xml:lang='%061d\xc3\xa9x'/>", 0);
    CHECK(parse(&st, &m, big) == GW_WS_OPEN);
    CHECK(strlen(m.lang) == 63 && strcmp(m.lang + 61, "\xc3\xa9") == 0);
    memset(&st, 0, sizeof(st));
    CHECK(parse(&st, &m, "<open xmlns='" FRAMING "' to='a.b' version='1.0' lang='fr'/>") ==
          GW_WS_OPEN);
    CHECK_STR(m.lang, "");

    /* A domain of exactly GW_HOST_MAX bytes passes through whole. */
    char to[GW_HOST_MAX + 1];
    memset(to, 'a', GW_HOST_MAX);
    to[GW_HOST_MAX] = '\0';
    snprintf(big, sizeof(big), "<open xmlns='" FRAMING "' to='%s' version='1.0'/>", to);
    memset(&st, 0, sizeof(st));
    CHECK(parse(&st, &m, big) == GW_WS_OPEN);
    CHECK_STR(m.to, to);
}

static void test_open_errors(void)
{
    struct gw_ws_state st = {0};
    check_error(&st, "<open xmlns='" FRAMING "' version='1.0'/>", GW_COND_host_unknown);
    CHECK_STR(gw_ws_state_from(&st), "localhost");
    CHECK(!st.awaiting_ready);

    memset(&st, 0, sizeof(st));
    check_error(&st, "<open xmlns='" FRAMING "' to='' version='1.0'/>", GW_COND_host_unknown);

    /* The domain asked for names the answer before the error. */
    memset(&st, 0, sizeof(st));
    check_error(&st, "<open xmlns='" FRAMING "' to='localhost'/>", GW_COND_unsupported_version);
    CHECK_STR(gw_ws_state_from(&st), "localhost");
    memset(&st, 0, sizeof(st));
    check_error(&st, "<open xmlns='" FRAMING "' to='example.org' version='0.9'/>",
                GW_COND_unsupported_version);
    CHECK_STR(gw_ws_state_from(&st), "example.org");
    const char *bad_versions[] = {"1", "1.", ".0", "x.0", "1.0a", "-1.0", ""};
    for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++) {
        char open[200];
        snprintf(open, sizeof(open), "<open xmlns='" FRAMING "' to='a.b' version='%s'/>",
                 bad_versions[i]);
        memset(&st, 0, sizeof(st));
        check_error(&st, open, GW_COND_unsupported_version);
    }
    /* RFC 6120 4.7.5: a higher version is answered with 1.0 (the client may then close); leading
     * zeros are ignored. */
    const char *good_versions[] = {"1.1", "1.00", "2.0", "1.10"};
    for (size_t i = 0; i < sizeof(good_versions) / sizeof(good_versions[0]); i++) {
        char open[200];
        snprintf(open, sizeof(open), "<open xmlns='" FRAMING "' to='a.b' version='%s'/>",
                 good_versions[i]);
        struct gw_ws_msg ok;
        memset(&st, 0, sizeof(st));
        CHECK(parse(&st, &ok, open) == GW_WS_OPEN);
    }

    /* A 'to' longer than any domain is refused whole, never cut into one that might be served. */
    char to[GW_HOST_MAX + 20], big[600];
    memset(to, 'a', sizeof(to) - 1);
    to[sizeof(to) - 1] = '\0';
    memcpy(to + GW_HOST_MAX - 4, ".com", 4);
    snprintf(big, sizeof(big), "<open xmlns='" FRAMING "' to='%s' version='1.0'/>", to);
    memset(&st, 0, sizeof(st));
    check_error(&st, big, GW_COND_host_unknown);
    CHECK_STR(gw_ws_state_from(&st), "localhost");
}

static void test_order(void)
{
    struct gw_ws_state st = {0};
    struct gw_ws_msg m;

    /* Nothing before <open/>. */
    check_error(&st, "<message xmlns='jabber:client'/>", GW_COND_bad_format);
    memset(&st, 0, sizeof(st));
    check_error(&st, "<presence/>", GW_COND_bad_format);

    /* Stanzas between <open/> and its answer are taken (the session holds them). */
    memset(&st, 0, sizeof(st));
    CHECK(parse(&st, &m, OPEN_TO("localhost")) == GW_WS_OPEN);
    CHECK(parse(&st, &m, "<presence xmlns='jabber:client'/>") == GW_WS_STANZA);
    /* A second <open/> before the first was answered. */
    check_error(&st, OPEN_TO("localhost"), GW_COND_bad_format);

    /* Restarts: the same domain in any case, or no 'to'; each needs its answer first. */
    opened(&st);
    CHECK(parse(&st, &m, OPEN_TO("LocalHost")) == GW_WS_RESTART);
    CHECK(st.awaiting_ready);
    CHECK(parse(&st, &m, "<iq xmlns='jabber:client' type='get' id='1'/>") == GW_WS_STANZA);
    check_error(&st, "<open xmlns='" FRAMING "' version='1.0'/>", GW_COND_bad_format);
    opened(&st);
    CHECK(parse(&st, &m, "<open xmlns='" FRAMING "'/>") == GW_WS_RESTART);
    gw_ws_state_ready(&st);
    CHECK(parse(&st, &m, OPEN_TO("localhost")) == GW_WS_RESTART);
    CHECK_STR(st.domain, "localhost");

    /* A restart to another domain. */
    opened(&st);
    check_error(&st, OPEN_TO("example.com"), GW_COND_bad_format);
    opened(&st);
    check_error(&st, "<open xmlns='" FRAMING "' to='' version='1.0'/>", GW_COND_bad_format);
    char to[GW_HOST_MAX + 20], big[600];
    memset(to, 'l', sizeof(to) - 1);
    to[sizeof(to) - 1] = '\0';
    snprintf(big, sizeof(big), "<open xmlns='" FRAMING "' to='%s' version='1.0'/>", to);
    opened(&st);
    check_error(&st, big, GW_COND_bad_format);

    /* <close/> ends the stream, before or after <open/>; nothing is accepted afterwards. */
    opened(&st);
    CHECK(parse(&st, &m, "<close xmlns='" FRAMING "'/>") == GW_WS_CLOSE);
    CHECK(st.closing);
    CHECK(parse(&st, &m, "<message xmlns='jabber:client'/>") == GW_WS_IGNORE);
    CHECK(parse(&st, &m, "<close xmlns='" FRAMING "'/>") == GW_WS_IGNORE);
    CHECK(parse(&st, &m, "not xml") == GW_WS_IGNORE);
    memset(&st, 0, sizeof(st));
    CHECK(parse(&st, &m, "<close xmlns='" FRAMING "'/>") == GW_WS_CLOSE);
    CHECK(parse(&st, &m, OPEN_TO("localhost")) == GW_WS_IGNORE);

    /* The gateway ending the stream does the same. */
    opened(&st);
    gw_ws_state_closing(&st);
    CHECK(parse(&st, &m, "<message xmlns='jabber:client'/>") == GW_WS_IGNORE);
    CHECK(m.kind == GW_WS_IGNORE && m.cond == GW_COND_NONE);
}

static void test_stanzas(void)
{
    struct gw_ws_state st;
    struct gw_ws_msg m;
    opened(&st);
    const char *s = "<message xmlns='jabber:client' to='bob@localhost'><body>a &amp; b</body>"
                    "</message>";
    CHECK(parse(&st, &m, s) == GW_WS_STANZA);
    CHECK(m.len == strlen(s) && m.bytes && memcmp(m.bytes, s, m.len) == 0);

    /* Surrounding whitespace and the XML declaration are not part of the stanza. */
    const char *d = "<?xml version='1.0' encoding='UTF-8'?> <presence xmlns='jabber:client'/>\n";
    CHECK(parse(&st, &m, d) == GW_WS_STANZA);
    CHECK(m.len == strlen("<presence xmlns='jabber:client'/>"));
    CHECK(m.bytes && memcmp(m.bytes, "<presence", 9) == 0);

    /* Any namespace but the stream's and the framing one passes (SASL, SM, none). */
    CHECK(parse(&st, &m,
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth>") ==
          GW_WS_STANZA);
    CHECK(parse(&st, &m, "<r xmlns='urn:xmpp:sm:3'/>") == GW_WS_STANZA);
    CHECK(parse(&st, &m, "<message><body>x</body></message>") == GW_WS_STANZA);
    /* A stream prefix declared below the root is fine. */
    CHECK(parse(&st, &m,
                "<message xmlns='jabber:client'><x xmlns:stream='http://etherx.jabber.org/"
                "streams'/></message>") == GW_WS_STANZA);

    /* Whitespace keepalives: nothing, and no state change. */
    struct gw_ws_state before = st;
    CHECK(parse(&st, &m, " ") == GW_WS_IGNORE);
    CHECK(parse(&st, &m, "\r\n\t ") == GW_WS_IGNORE);
    CHECK(gw_ws_parse(parser, &st, "", 0, &m) == GW_WS_IGNORE);
    CHECK(memcmp(&before, &st, sizeof(st)) == 0);
    memset(&st, 0, sizeof(st));
    CHECK(parse(&st, &m, "  ") == GW_WS_IGNORE);
    CHECK(!st.opened && !st.awaiting_ready && !st.closing);
}

static void test_element_errors(void)
{
    struct gw_ws_state st;
    opened(&st);
    check_error(&st, "<foo xmlns='" FRAMING "'/>", GW_COND_unsupported_stanza_type);
    memset(&st, 0, sizeof(st));
    check_error(&st, "<foo xmlns='" FRAMING "'/>", GW_COND_unsupported_stanza_type);
    opened(&st);
    check_error(&st,
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
                "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
                GW_COND_unsupported_stanza_type);
    opened(&st);
    check_error(&st, "<stream xmlns='http://etherx.jabber.org/streams'/>",
                GW_COND_unsupported_stanza_type);
    opened(&st);
    check_error(&st,
                "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict "
                "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                GW_COND_unsupported_stanza_type);
}

static void test_parser_errors(void)
{
    static const struct {
        const char *frame;
        enum gw_condition cond;
    } cases[] = {
        {"<message xmlns='jabber:client'><body>x</message>", GW_COND_not_well_formed},
        {"<message xmlns='jabber:client'/><presence/>", GW_COND_not_well_formed},
        {"<message xmlns='jabber:client'/>junk", GW_COND_not_well_formed},
        {"junk", GW_COND_not_well_formed},
        {"<message to='a' to='b'/>", GW_COND_not_well_formed},
        {"<message><body>\xc3\x28</body></message>", GW_COND_not_well_formed},
        {"<a:message/>", GW_COND_not_well_formed},
        {"<!DOCTYPE message><message/>", GW_COND_restricted_xml},
        {"<?evil data?><message/>", GW_COND_restricted_xml},
        {"<message><!-- hidden --></message>", GW_COND_restricted_xml},
        {"<message><body>&ent;</body></message>", GW_COND_restricted_xml},
        {"<?xml version='1.0' encoding='ISO-8859-1'?><message/>", GW_COND_unsupported_encoding},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_ws_state st;
        opened(&st);
        check_error(&st, cases[i].frame, cases[i].cond);
        /* The parser's errors come before the order rules. */
        memset(&st, 0, sizeof(st));
        check_error(&st, cases[i].frame, cases[i].cond);
    }

    /* Limits: stanza bytes, depth, attributes. */
    struct gw_ws_state st;
    char *big = malloc(8192);
    CHECK(big != NULL);
    if (!big)
        return;
    snprintf(big, 8192, "<message><body>%06000d</body></message>", 0);
    opened(&st);
    check_error(&st, big, GW_COND_policy_violation);
    size_t n = 0;
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(big + n, 8192 - n, "<a>");
    for (int i = 0; i < 20; i++)
        n += (size_t)snprintf(big + n, 8192 - n, "</a>");
    opened(&st);
    check_error(&st, big, GW_COND_policy_violation);
    n = (size_t)snprintf(big, 8192, "<message");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(big + n, 8192 - n, " a%d='x'", i);
    snprintf(big + n, 8192 - n, "/>");
    opened(&st);
    check_error(&st, big, GW_COND_policy_violation);
    free(big);

    /* One parser serves many connections: an error on one leaves the next message of another
     * untouched. */
    struct gw_ws_state a, b;
    struct gw_ws_msg m;
    opened(&a);
    opened(&b);
    check_error(&a, "<broken", GW_COND_not_well_formed);
    CHECK(parse(&b, &m, "<presence xmlns='jabber:client'/>") == GW_WS_STANZA);
}

static void test_frames(void)
{
    struct gw_buf b;
    gw_buf_init(&b, 4096);
    CHECK(gw_ws_build_open(&b, "example.com", "abc", "en") == 0);
    CHECK_STR(gw_buf_ptr(&b),
              "<open xmlns=\"" FRAMING
              "\" from=\"example.com\" id=\"abc\" version=\"1.0\" xml:lang=\"en\"/>");
    gw_buf_reset(&b);
    CHECK(gw_ws_build_open(&b, "a\"<b>", "i&d", "'") == 0);
    CHECK_STR(gw_buf_ptr(&b),
              "<open xmlns=\"" FRAMING "\" from=\"a&quot;&lt;b&gt;\" id=\"i&amp;d\" "
              "version=\"1.0\" xml:lang=\"&apos;\"/>");

    gw_buf_reset(&b);
    CHECK(gw_ws_build_error(&b, GW_COND_connection_timeout, "no <open/>") == 0);
    CHECK_STR(gw_buf_ptr(&b),
              "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\"><connection-timeout "
              "xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/><text "
              "xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">no &lt;open/&gt;</text>"
              "</stream:error>");
    gw_buf_reset(&b);
    CHECK(gw_ws_build_error(&b, GW_COND_host_unknown, NULL) == 0);
    CHECK_STR(gw_buf_ptr(&b), "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\">"
                              "<host-unknown xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>"
                              "</stream:error>");
    /* A BOSH-only condition, none, or out of range: never an empty or foreign element. */
    const enum gw_condition odd[] = {GW_COND_bad_request, GW_COND_NONE, GW_COND_COUNT};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        gw_buf_reset(&b);
        CHECK(gw_ws_build_error(&b, odd[i], NULL) == 0);
        CHECK(strstr(gw_buf_ptr(&b), "<undefined-condition ") != NULL);
    }

    gw_buf_reset(&b);
    CHECK(gw_ws_build_close(&b) == 0);
    CHECK_STR(gw_buf_ptr(&b), "<close xmlns=\"" FRAMING "\"/>");
    /* Builders append. */
    CHECK(gw_ws_build_close(&b) == 0);
    CHECK(gw_buf_size(&b) == 2 * strlen("<close xmlns=\"" FRAMING "\"/>"));
    gw_buf_cleanup(&b);

    /* Past the buffer's maximum: GW_ELIMIT. */
    gw_buf_init(&b, 16);
    CHECK(gw_ws_build_close(&b) == GW_ELIMIT);
    CHECK(gw_ws_build_open(&b, "x", "y", "z") == GW_ELIMIT);
    CHECK(gw_ws_build_error(&b, GW_COND_reset, "t") == GW_ELIMIT);
    gw_buf_cleanup(&b);
}

/* limits.per_address_pending's table: n connections of an address, the next refused; another
 * address apart; room again after one is released; a second release changes nothing; an entry is
 * gone with its last connection; a reload's lower limit refuses without releasing anything. */
static void test_pending(void)
{
    struct gw_ws_pending t;
    struct gw_ws_pending_addr *a[4] = {0}, *x = NULL, *other = NULL;
    CHECK(gw_ws_pending_init(&t) == 0);
    for (int i = 0; i < 3; i++)
        CHECK(gw_ws_pending_take(&t, "127.0.0.2", 3, &a[i]) == 0 && a[i]);
    CHECK(a[0] == a[1] && a[1] == a[2]);
    CHECK(gw_ws_pending_count(&t, "127.0.0.2") == 3);
    x = a[0];
    CHECK(gw_ws_pending_take(&t, "127.0.0.2", 3, &x) == GW_ELIMIT && x == NULL);
    CHECK(gw_ws_pending_count(&t, "127.0.0.2") == 3);
    CHECK(gw_ws_pending_take(&t, "127.0.0.3", 3, &other) == 0 && other && other != a[0]);
    CHECK(gw_ws_pending_count(&t, "127.0.0.3") == 1);
    gw_ws_pending_release(&t, &a[1]);
    CHECK(a[1] == NULL);
    gw_ws_pending_release(&t, &a[1]); /* a second time: nothing */
    CHECK(gw_ws_pending_count(&t, "127.0.0.2") == 2);
    CHECK(gw_ws_pending_take(&t, "127.0.0.2", 3, &a[3]) == 0 && a[3]);
    CHECK(gw_ws_pending_take(&t, "127.0.0.2", 2, &x) == GW_ELIMIT); /* limit lowered by a reload */
    CHECK(gw_ws_pending_count(&t, "127.0.0.2") == 3);
    gw_ws_pending_release(&t, &a[0]);
    gw_ws_pending_release(&t, &a[2]);
    gw_ws_pending_release(&t, &a[3]);
    CHECK(gw_ws_pending_count(&t, "127.0.0.2") == 0);
    CHECK(t.map.n == 1); /* only 127.0.0.3's entry is left */
    CHECK(gw_ws_pending_take(&t, "::1", 0, &x) == GW_ELIMIT && x == NULL && t.map.n == 1);
    /* An address longer than any kept counts as its first GW_WS_ADDR_MAX - 1 bytes. */
    char longer[GW_WS_ADDR_MAX + 10];
    memset(longer, 'a', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    CHECK(gw_ws_pending_take(&t, longer, 1, &x) == 0 && x);
    struct gw_ws_pending_addr *y = NULL;
    CHECK(gw_ws_pending_take(&t, longer, 1, &y) == GW_ELIMIT && y == NULL);
    CHECK(gw_ws_pending_count(&t, longer) == 1);
    gw_ws_pending_cleanup(&t); /* frees what is left (ASan: no leak) */
}

int main(void)
{
    parser = gw_ws_parser_new(&limits);
    CHECK(parser != NULL);
    if (parser) {
        test_open();
        test_open_errors();
        test_order();
        test_stanzas();
        test_element_errors();
        test_parser_errors();
        gw_ws_parser_free(parser);
    }
    test_frames();
    test_pending();
    return CHECK_SUMMARY();
}
