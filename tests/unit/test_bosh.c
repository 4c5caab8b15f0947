/* Unit tests for gateway/web/bosh_proto.c: request bodies (each child a slice that stands alone,
 * stream-namespace children refused), negotiation caps, buffer caps, the rid window and log,
 * acknowledgements, key sequencing, overactivity, response and terminate bodies, terminate
 * conditions. No sockets: bosh_session.c has test_bosh_session.c, bosh.c's lws side is
 * covered by tests/integration/bosh_*.test.mjs. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/buf.h"
#include "web/bosh_proto.h"

static const struct gw_xml_limits limits = {.max_stanza = 4096, .max_depth = 16, .max_attrs = 32};

static enum gw_bosh_parse_err parse(struct gw_bosh_parser *p, struct gw_bosh_body *b, const char *s)
{
    return gw_bosh_parse(p, s, strlen(s), b);
}

static void test_parse_creation(struct gw_bosh_parser *p)
{
    struct gw_bosh_body b;
    gw_bosh_body_init(&b, 65536);
    CHECK(parse(p, &b,
                "<body content='text/xml; charset=utf-8' hold='1' rid='1573741820' "
                "to='example.com' route='xmpp:example.com:9999' secure='true' ver='1.6' "
                "wait='60' ack='1' xml:lang='en' newkey='ca393b51b682f61f98e7877d61146407f3d0a770' "
                "xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh' "
                "xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_OK);
    CHECK(b.has_rid && b.rid == 1573741820ull);
    CHECK_STR(b.sid, "");
    CHECK_STR(b.to, "example.com");
    CHECK_STR(b.route, "xmpp:example.com:9999");
    CHECK_STR(b.lang, "en");
    CHECK_STR(b.ver, "1.6");
    CHECK_STR(b.xmpp_version, "1.0");
    CHECK(b.has_wait && b.wait == 60);
    CHECK(b.has_hold && b.hold == 1);
    CHECK(b.has_ack && b.ack == 1);
    CHECK(!b.has_pause);
    CHECK_STR(b.newkey, "ca393b51b682f61f98e7877d61146407f3d0a770");
    CHECK_STR(b.key, "");
    CHECK(!b.terminate && !b.restart);
    CHECK(b.n_stanzas == 0);
    CHECK(gw_bosh_body_is_empty(&b));
    gw_bosh_body_cleanup(&b);
}

static void test_parse_payload(struct gw_bosh_parser *p)
{
    struct gw_bosh_body b;
    gw_bosh_body_init(&b, 65536);
    const char *doc = "<?xml version='1.0'?>\n"
                      "<body rid='42' sid='abc' xmlns='http://jabber.org/protocol/httpbind'>"
                      "<message to='a@b' xmlns='jabber:client'><body>hi &amp; bye</body></message>"
                      " <presence xmlns='jabber:client'/>"
                      "<iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq>"
                      "</body>";
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_OK);
    CHECK(b.rid == 42);
    CHECK_STR(b.sid, "abc");
    CHECK(b.n_stanzas == 3);
    CHECK(!gw_bosh_body_is_empty(&b));
    size_t len;
    const char *st = gw_bosh_body_stanza(&b, 0, &len);
    CHECK(st && len == strlen("<message to='a@b' xmlns='jabber:client'><body>hi &amp; bye</body>"
                              "</message>"));
    CHECK(st && memcmp(st, "<message to='a@b'", 17) == 0);
    st = gw_bosh_body_stanza(&b, 1, &len);
    CHECK(st && len == strlen("<presence xmlns='jabber:client'/>"));
    /* A stanza without its own xmlns must not get the httpbind namespace injected. */
    st = gw_bosh_body_stanza(&b, 2, &len);
    CHECK(st && len > 0 && memmem(st, len, "httpbind", 8) == NULL);
    CHECK(gw_bosh_body_stanza(&b, 3, &len) == NULL && len == 0);

    /* Reuse: the previous body's values are gone. */
    CHECK(parse(p, &b,
                "<body rid='43' sid='abc' type='terminate' "
                "xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_OK);
    CHECK(b.rid == 43 && b.terminate && b.n_stanzas == 0 && !gw_bosh_body_is_empty(&b));
    CHECK(parse(p, &b,
                "<body rid='44' sid='abc' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh' "
                "xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_OK);
    CHECK(b.restart && !b.terminate);
    CHECK(parse(p, &b,
                "<body rid='45' sid='abc' pause='30' key='k' "
                "xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_OK);
    CHECK(b.has_pause && b.pause == 30);
    CHECK_STR(b.key, "k");
    /* xml:lang is the one in the XML namespace, not an unqualified lang. */
    CHECK(parse(p, &b, "<body rid='46' lang='de' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_OK);
    CHECK_STR(b.lang, "");
    CHECK(parse(p, &b,
                "<body rid='47' xml:lang='fr-CA' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_OK);
    CHECK_STR(b.lang, "fr-CA");
    gw_bosh_body_cleanup(&b);
}

static void test_parse_errors(struct gw_bosh_parser *p)
{
    struct gw_bosh_body b;
    gw_bosh_body_init(&b, 65536);
    CHECK(parse(p, &b, "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>") ==
          GW_BOSH_PARSE_XML);
    CHECK(parse(p, &b, "not xml at all") == GW_BOSH_PARSE_XML);
    CHECK(parse(p, &b, "") == GW_BOSH_PARSE_XML);
    CHECK(parse(p, &b,
                "<!DOCTYPE body [<!ENTITY x 'y'>]>"
                "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_XML);
    CHECK(parse(p, &b, "<body rid='1' xmlns='urn:other'/>") == GW_BOSH_PARSE_ROOT);
    CHECK(parse(p, &b, "<foo rid='1' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_ROOT);
    CHECK(parse(p, &b, "<body rid='1'/>") == GW_BOSH_PARSE_ROOT);
    CHECK(parse(p, &b, "<body rid='x1' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_ATTR);
    CHECK(parse(p, &b,
                "<body rid='9007199254740992' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_ATTR);
    CHECK(parse(p, &b, "<body rid='-1' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_ATTR);
    /* A broken body still names its session (so that the session can be ended). */
    CHECK(parse(p, &b,
                "<body rid='7' sid='s1' xmlns='http://jabber.org/protocol/httpbind'><message>") ==
          GW_BOSH_PARSE_XML);
    CHECK_STR(b.sid, "s1");
    /* Over-long attribute values. */
    char doc[1024];
    char longv[400];
    memset(longv, 'a', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    snprintf(doc, sizeof(doc),
             "<body rid='1' to='%s' xmlns='http://jabber.org/protocol/httpbind'/>", longv);
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_ATTR);
    snprintf(doc, sizeof(doc),
             "<body rid='1' xml:lang='%.100s' xmlns='http://jabber.org/protocol/httpbind'/>",
             longv);
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_ATTR);
    /* Huge wait/hold values saturate instead of failing. */
    CHECK(parse(p, &b,
                "<body rid='1' wait='99999999999999999999' hold='123456789012345678' "
                "xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_OK);
    CHECK(b.has_wait && b.wait == GW_BOSH_RID_MAX);
    CHECK(b.has_hold && b.hold == GW_BOSH_RID_MAX);
    /* A missing rid is not a parse error (the caller refuses it). */
    CHECK(parse(p, &b, "<body xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_OK);
    CHECK(!b.has_rid);
    /* Unbound prefix. */
    CHECK(parse(p, &b,
                "<body rid='1' xmpp:version='1.0' "
                "xmlns='http://jabber.org/protocol/httpbind'/>") == GW_BOSH_PARSE_XML);
    gw_bosh_body_cleanup(&b);

    /* The payload is bounded. */
    gw_bosh_body_init(&b, 16);
    CHECK(parse(p, &b,
                "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>"
                "<message xmlns='jabber:client'><body>longer than sixteen</body></message>"
                "</body>") != GW_BOSH_PARSE_OK);
    gw_bosh_body_cleanup(&b);
}

static bool stanza_is(const struct gw_bosh_body *b, unsigned i, const char *want)
{
    size_t len;
    const char *st = gw_bosh_body_stanza(b, i, &len);
    bool ok = st && len == strlen(want) && memcmp(st, want, len) == 0;
    if (!ok)
        fprintf(stderr, "stanza %u is '%.*s', expected '%s'\n", i, st ? (int)len : 0, st ? st : "",
                want);
    return ok;
}

/* Each child is a slice that stands alone: the prefixes declared on <body/> that it uses go with
 * it; the default namespace of <body/> does not (a stanza without xmlns takes jabber:client from
 * the upstream stream); a child in the stream namespace is refused. */
static void test_parse_namespaces(struct gw_bosh_parser *p)
{
    struct gw_bosh_body b;
    const char *doc =
        "<body rid='1' sid='s' xmlns:foo='urn:example:foo' xmlns:xmpp='urn:xmpp:xbosh' "
        "xmlns:stream='urn:example:not-the-stream' "
        "xmlns='http://jabber.org/protocol/httpbind'>"
        "<message to='a@b' xmlns='jabber:client'><body>hi</body><foo:x/></message>"
        "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"
        "<presence foo:a='1'/>"
        "<message><stream:x/></message>"
        "<foo:y xmlns:foo='urn:example:own'/>"
        "</body>";
    gw_bosh_body_init(&b, gw_bosh_payload_max(strlen(doc)));
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_OK);
    CHECK(b.n_stanzas == 5);
    CHECK(stanza_is(&b, 0,
                    "<message xmlns:foo='urn:example:foo' to='a@b' xmlns='jabber:client'>"
                    "<body>hi</body><foo:x/></message>"));
    CHECK(stanza_is(&b, 1, "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>"));
    CHECK(stanza_is(&b, 2, "<presence xmlns:foo='urn:example:foo' foo:a='1'/>"));
    /* Not upstream's stream prefix: the one <body/> declared. */
    CHECK(stanza_is(&b, 3,
                    "<message xmlns:stream='urn:example:not-the-stream'><stream:x/></message>"));
    CHECK(stanza_is(&b, 4, "<foo:y xmlns:foo='urn:example:own'/>"));
    /* Children in the stream namespace are refused, whatever the prefix. */
    CHECK(parse(p, &b,
                "<body rid='1' xmlns:stream='http://etherx.jabber.org/streams' "
                "xmlns='http://jabber.org/protocol/httpbind'><stream:features/></body>") ==
          GW_BOSH_PARSE_CHILD);
    CHECK(parse(p, &b,
                "<body rid='1' sid='s2' xmlns='http://jabber.org/protocol/httpbind'><presence/>"
                "<s:error xmlns:s='http://etherx.jabber.org/streams'/></body>") ==
          GW_BOSH_PARSE_CHILD);
    CHECK_STR(b.sid, "s2");
    gw_bosh_body_cleanup(&b);

    /* What injection adds is bounded: twice the body, then the parse fails as a limit would. */
    CHECK(gw_bosh_payload_max(10) == 21);
    char big[4096];
    int n = snprintf(big, sizeof(big),
                     "<body rid='1' xmlns:p='urn:%0200d' "
                     "xmlns='http://jabber.org/protocol/httpbind'>",
                     0);
    for (int i = 0; i < 40; i++)
        n += snprintf(big + n, sizeof(big) - (size_t)n, "<p:a/>");
    snprintf(big + n, sizeof(big) - (size_t)n, "</body>");
    gw_bosh_body_init(&b, gw_bosh_payload_max(strlen(big)));
    CHECK(parse(p, &b, big) == GW_BOSH_PARSE_XML);
    gw_bosh_body_cleanup(&b);
}

/* A child past a limit is GW_BOSH_PARSE_LIMIT (policy-violation for the session it names); the
 * limits of <body/> itself stay a format error. */
static void test_parse_limits(struct gw_bosh_parser *p)
{
    struct gw_bosh_body b;
    gw_bosh_body_init(&b, 65536);
    static char doc[16384], big[8192];
    const char *hdr = "<body rid='5' sid='s9' xmlns='http://jabber.org/protocol/httpbind'>";
    /* A stanza of more than max_stanza bytes: in its text, an attribute value, an attribute name.
     */
    memset(big, 'z', 5000);
    big[5000] = '\0';
    snprintf(doc, sizeof(doc), "%s<message xmlns='jabber:client'><body>%s</body></message></body>",
             hdr, big);
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_LIMIT);
    CHECK_STR(b.sid, "s9");
    CHECK(b.has_rid && b.rid == 5);
    snprintf(doc, sizeof(doc), "%s<message xmlns='jabber:client' x='%s'/></body>", hdr, big);
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_LIMIT);
    snprintf(doc, sizeof(doc), "%s<message xmlns='jabber:client' %s='x'/></body>", hdr, big);
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_LIMIT);
    /* Deeper than max_depth (16), in the second stanza. */
    int n = snprintf(doc, sizeof(doc),
                     "%s<presence xmlns='jabber:client'/><message xmlns='jabber:client'>", hdr);
    for (int i = 0; i < 20; i++)
        n += snprintf(doc + n, sizeof(doc) - (size_t)n, "<x>");
    for (int i = 0; i < 20; i++)
        n += snprintf(doc + n, sizeof(doc) - (size_t)n, "</x>");
    snprintf(doc + n, sizeof(doc) - (size_t)n, "</message></body>");
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_LIMIT);
    CHECK_STR(b.sid, "s9");
    /* More than max_attrs (32) on a stanza. */
    n = snprintf(doc, sizeof(doc), "%s<message xmlns='jabber:client'", hdr);
    for (int i = 0; i < 33; i++)
        n += snprintf(doc + n, sizeof(doc) - (size_t)n, " a%d='%d'", i, i);
    snprintf(doc + n, sizeof(doc) - (size_t)n, "/></body>");
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_LIMIT);
    /* Exactly at the limits: fine. */
    n = snprintf(doc, sizeof(doc), "%s<message xmlns='jabber:client'", hdr);
    for (int i = 0; i < 31; i++)
        n += snprintf(doc + n, sizeof(doc) - (size_t)n, " a%d='%d'", i, i);
    snprintf(doc + n, sizeof(doc) - (size_t)n, "/></body>");
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_OK);
    /* <body/> itself past a limit: a format error, as is broken XML after a stanza past one. */
    n = snprintf(doc, sizeof(doc), "<body rid='5' sid='s9'");
    for (int i = 0; i < 33; i++)
        n += snprintf(doc + n, sizeof(doc) - (size_t)n, " a%d='%d'", i, i);
    snprintf(doc + n, sizeof(doc) - (size_t)n, " xmlns='http://jabber.org/protocol/httpbind'/>");
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_XML);
    snprintf(doc, sizeof(doc),
             "<body rid='5' sid='s9' x='%s' xmlns='http://jabber.org/protocol/httpbind'/>", big);
    CHECK(parse(p, &b, doc) == GW_BOSH_PARSE_XML);
    /* The parser is reusable after each. */
    CHECK(parse(p, &b, "<body rid='6' sid='s9' xmlns='http://jabber.org/protocol/httpbind'/>") ==
          GW_BOSH_PARSE_OK);
    gw_bosh_body_cleanup(&b);
}

static void test_numbers(void)
{
    uint64_t v;
    CHECK(gw_bosh_parse_uint("0", &v) && v == 0);
    CHECK(gw_bosh_parse_uint("9007199254740991", &v) && v == GW_BOSH_RID_MAX);
    CHECK(!gw_bosh_parse_uint("9007199254740992", &v));
    CHECK(!gw_bosh_parse_uint("", &v));
    CHECK(!gw_bosh_parse_uint("+1", &v));
    CHECK(!gw_bosh_parse_uint(" 1", &v));
    CHECK(!gw_bosh_parse_uint("1e3", &v));
    CHECK(!gw_bosh_parse_uint("12345678901234567", &v));
    CHECK(gw_bosh_parse_ver("1.6") == 1006);
    CHECK(gw_bosh_parse_ver("1.11") == 1011);
    CHECK(gw_bosh_parse_ver("2.0") == 2000);
    CHECK(gw_bosh_parse_ver("") == 0);
    CHECK(gw_bosh_parse_ver("1") == 0);
    CHECK(gw_bosh_parse_ver("1.") == 0);
    CHECK(gw_bosh_parse_ver("1.6x") == 0);
    CHECK(gw_bosh_parse_ver("x1.6") == 0);
}

static void test_negotiate(void)
{
    struct gw_bosh_limits lim = {.max_wait = 50,
                                 .max_hold = 1,
                                 .max_requests = 2,
                                 .inactivity = 60,
                                 .max_pause = 120,
                                 .polling = 2};
    struct gw_bosh_body b;
    gw_bosh_body_init(&b, 16);
    struct gw_bosh_params p;

    /* Caps. */
    b.has_wait = true;
    b.wait = 300;
    b.has_hold = true;
    b.hold = 5;
    snprintf(b.ver, sizeof(b.ver), "1.6");
    gw_bosh_negotiate(&b, &lim, &p);
    CHECK(p.wait == 50);
    CHECK(p.hold == 1);
    CHECK(p.requests == 2);
    CHECK(p.inactivity == 60 && p.polling == 2 && p.maxpause == 120);
    CHECK_STR(p.ver, "1.6");
    CHECK(!p.legacy && !p.ack);

    /* Below the caps: the client's values. */
    b.wait = 10;
    b.hold = 0;
    snprintf(b.ver, sizeof(b.ver), "1.11");
    b.has_ack = true;
    b.ack = 1;
    gw_bosh_negotiate(&b, &lim, &p);
    CHECK(p.wait == 10 && p.hold == 0 && p.requests == 2);
    CHECK_STR(p.ver, "1.11");
    CHECK(p.ack);

    /* wait 0 becomes 1; higher versions are answered with ours. */
    b.wait = 0;
    snprintf(b.ver, sizeof(b.ver), "1.20");
    gw_bosh_negotiate(&b, &lim, &p);
    CHECK(p.wait == 1);
    CHECK_STR(p.ver, GW_BOSH_VER);

    /* Defaults when the client names nothing; legacy versions. */
    struct gw_bosh_body d;
    gw_bosh_body_init(&d, 16);
    gw_bosh_negotiate(&d, &lim, &p);
    CHECK(p.wait == 50 && p.hold == 1 && p.requests == 2 && !p.legacy);
    CHECK_STR(p.ver, GW_BOSH_VER);
    snprintf(d.ver, sizeof(d.ver), "1.5");
    gw_bosh_negotiate(&d, &lim, &p);
    CHECK(p.legacy);
    CHECK_STR(p.ver, "1.5");

    /* Bigger limits: requests is hold + 1 within max_requests. */
    struct gw_bosh_limits big = {.max_wait = 600,
                                 .max_hold = 10,
                                 .max_requests = 16,
                                 .inactivity = 30,
                                 .max_pause = 0,
                                 .polling = 0};
    d.has_hold = true;
    d.hold = 4;
    gw_bosh_negotiate(&d, &big, &p);
    CHECK(p.hold == 4 && p.requests == 5 && p.maxpause == 0);
    struct gw_bosh_limits tight = {.max_wait = 600,
                                   .max_hold = 10,
                                   .max_requests = 3,
                                   .inactivity = 30,
                                   .max_pause = 0,
                                   .polling = 0};
    gw_bosh_negotiate(&d, &tight, &p);
    CHECK(p.hold == 2 && p.requests == 3);
    gw_bosh_body_cleanup(&b);
    gw_bosh_body_cleanup(&d);
}

static void test_rid_window(void)
{
    CHECK(gw_bosh_rid_classify(100, 2, 100) == GW_BOSH_RID_SEEN);
    CHECK(gw_bosh_rid_classify(100, 2, 1) == GW_BOSH_RID_SEEN);
    CHECK(gw_bosh_rid_classify(100, 2, 101) == GW_BOSH_RID_NEXT);
    CHECK(gw_bosh_rid_classify(100, 2, 102) == GW_BOSH_RID_AHEAD);
    CHECK(gw_bosh_rid_classify(100, 2, 103) == GW_BOSH_RID_OUTSIDE);
    CHECK(gw_bosh_rid_classify(100, 5, 105) == GW_BOSH_RID_AHEAD);
    CHECK(gw_bosh_rid_classify(100, 5, 106) == GW_BOSH_RID_OUTSIDE);
    CHECK(gw_bosh_rid_classify(GW_BOSH_RID_MAX - 1, 2, GW_BOSH_RID_MAX) == GW_BOSH_RID_NEXT);

    struct gw_bosh_ridlog l;
    CHECK(gw_bosh_ridlog_init(&l, 2, 1024) == 0);
    CHECK(gw_bosh_ridlog_find(&l, 10) == NULL);
    struct gw_bosh_rid_entry *e = gw_bosh_ridlog_add(&l, 10, "k10");
    CHECK(e && e->state == GW_BOSH_RID_HELD && e->rid == 10);
    CHECK_STR(e->key, "k10");
    CHECK(gw_bosh_ridlog_find(&l, 10) == e);
    CHECK(gw_bosh_ridlog_answered(&l, 10, "<body/>", 7, 5000) == 0);
    CHECK(e->state == GW_BOSH_RID_ANSWERED && e->sent_ms == 5000);
    CHECK(gw_buf_size(&e->body) == 7 && memcmp(gw_buf_ptr(&e->body), "<body/>", 7) == 0);
    CHECK(gw_bosh_ridlog_add(&l, 11, NULL) != NULL);
    CHECK(gw_bosh_ridlog_find(&l, 10) == e && gw_bosh_ridlog_find(&l, 11) != NULL);
    /* rid 12 takes 10's slot: 10 is no longer replayable. */
    CHECK(gw_bosh_ridlog_add(&l, 12, "") != NULL);
    CHECK(gw_bosh_ridlog_find(&l, 10) == NULL);
    CHECK(gw_bosh_ridlog_find(&l, 12) != NULL && gw_bosh_ridlog_find(&l, 11) != NULL);
    CHECK(gw_bosh_ridlog_answered(&l, 10, "x", 1, 1) == GW_EINVAL);
    /* An answer too big to keep: answered, no body. */
    char big[2048];
    memset(big, 'x', sizeof(big));
    CHECK(gw_bosh_ridlog_answered(&l, 12, big, sizeof(big), 1) == GW_ELIMIT);
    e = gw_bosh_ridlog_find(&l, 12);
    CHECK(e && e->state == GW_BOSH_RID_ANSWERED && gw_buf_size(&e->body) == 0);
    gw_bosh_ridlog_cleanup(&l);
}

static void test_keys(void)
{
    char h[41];
    CHECK(gw_bosh_sha1_hex("abc", 3, h) == 0);
    CHECK_STR(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    /* A chain K(n) = hex(SHA-1(K(n-1))): the client sends K(n) first, then K(n-1)... */
    char k[5][41];
    snprintf(k[0], sizeof(k[0]), "%s", "seed-of-the-chain");
    for (int i = 1; i < 5; i++)
        CHECK(gw_bosh_sha1_hex(k[i - 1], strlen(k[i - 1]), k[i]) == 0);
    CHECK(gw_bosh_key_ok(k[4], k[3]));
    CHECK(gw_bosh_key_ok(k[3], k[2]));
    CHECK(gw_bosh_key_ok(k[2], k[1]));
    CHECK(!gw_bosh_key_ok(k[4], k[2]));
    CHECK(!gw_bosh_key_ok(k[3], k[4]));
    CHECK(!gw_bosh_key_ok(k[4], ""));
    CHECK(!gw_bosh_key_ok(k[4], NULL));
    /* Upper-case hex from a client still matches. */
    char upper[41];
    for (int i = 0; i < 41; i++)
        upper[i] = (char)((k[4][i] >= 'a' && k[4][i] <= 'f') ? k[4][i] - 32 : k[4][i]);
    CHECK(gw_bosh_key_ok(upper, k[3]));
}

static void test_overactivity(void)
{
    struct gw_bosh_activity a = {0};
    /* Nothing seen yet. */
    CHECK(!gw_bosh_overactive(&a, 1000, 2, 0, true));
    gw_bosh_activity_request(&a, 1000, true);
    gw_bosh_activity_answer(&a, true);
    /* Empty after empty answered empty, nothing held, within polling: violation. */
    CHECK(gw_bosh_overactive(&a, 1500, 2, 0, true));
    /* Not when something is held, when this one carries data, or after polling seconds. */
    CHECK(!gw_bosh_overactive(&a, 1500, 2, 1, true));
    CHECK(!gw_bosh_overactive(&a, 1500, 2, 0, false));
    CHECK(!gw_bosh_overactive(&a, 3000, 2, 0, true));
    CHECK(!gw_bosh_overactive(&a, 1500, 0, 0, true));
    /* Not when the previous answer had data. */
    gw_bosh_activity_answer(&a, false);
    CHECK(!gw_bosh_overactive(&a, 1500, 2, 0, true));
    /* Not when the previous request had data. */
    gw_bosh_activity_request(&a, 2000, false);
    gw_bosh_activity_answer(&a, true);
    CHECK(!gw_bosh_overactive(&a, 2100, 2, 0, true));
}

static void test_order(void)
{
    struct gw_bosh_order o;
    gw_bosh_order_init(&o);
    CHECK(gw_bosh_order_allowed(&o)); /* nothing sent yet */

    /* Creation answer (rid 10) with features on fd 7; the next request comes on fd 7. */
    gw_bosh_order_sent(&o, 10, 7);
    CHECK(!gw_bosh_order_allowed(&o));
    gw_bosh_order_arrival(&o, 11, 2, 7);
    CHECK(gw_bosh_order_allowed(&o));

    /* 11 answered with stanzas on fd 7; 12 held on fd 8 (sent before 11's answer came):
     * 12 may not carry stanzas while 11's answer may be on its way. */
    gw_bosh_order_sent(&o, 11, 7);
    gw_bosh_order_arrival(&o, 12, 2, 8);
    CHECK(!gw_bosh_order_allowed(&o));
    /* 13 arrives: the client has every answer up to 13 - 2 = 11. */
    gw_bosh_order_arrival(&o, 13, 2, 8);
    CHECK(gw_bosh_order_allowed(&o));

    /* The same connection tells it too, but only for a later rid. */
    gw_bosh_order_sent(&o, 13, 9);
    gw_bosh_order_arrival(&o, 13, 2, 9);
    CHECK(!gw_bosh_order_allowed(&o));
    gw_bosh_order_arrival(&o, 14, 2, 5);
    CHECK(!gw_bosh_order_allowed(&o));
    gw_bosh_order_arrival(&o, 14, 2, 9);
    CHECK(gw_bosh_order_allowed(&o));
    CHECK(o.confirmed_rid == 13);

    /* Confirmation never goes back. */
    gw_bosh_order_arrival(&o, 3, 2, -1);
    CHECK(o.confirmed_rid == 13);
    /* Small rids do not wrap. */
    gw_bosh_order_init(&o);
    gw_bosh_order_arrival(&o, 1, 2, -1);
    CHECK(o.confirmed_rid == 0);

    /* SASL success (rid 21) went out on fd 7; the restart (22) came on fd 8, through a proxy
     * that took another connection: by rids alone 22 - 2 = 20 is confirmed, but a restart is
     * sent only after the success was read. */
    gw_bosh_order_init(&o);
    gw_bosh_order_sent(&o, 21, 7);
    gw_bosh_order_arrival(&o, 22, 2, 8);
    CHECK(!gw_bosh_order_allowed(&o));
    gw_bosh_order_confirm_all(&o);
    CHECK(gw_bosh_order_allowed(&o) && o.confirmed_rid == 21);
    gw_bosh_order_confirm_all(&o); /* harmless twice, and never goes back */
    CHECK(o.confirmed_rid == 21);
}

static void test_bodies(void)
{
    struct gw_buf out;
    gw_buf_init(&out, 65536);
    struct gw_bosh_reply r = {.cond = GW_COND_NONE};
    CHECK(gw_bosh_build_reply(&out, &r, NULL, 0) == 0);
    CHECK_STR(gw_buf_ptr(&out), "<body xmlns='http://jabber.org/protocol/httpbind'/>");

    gw_buf_reset(&out);
    CHECK(gw_bosh_build_reply(&out, &r, "<message/>", 10) == 0);
    CHECK_STR(gw_buf_ptr(&out),
              "<body xmlns='http://jabber.org/protocol/httpbind' "
              "xmlns:stream='http://etherx.jabber.org/streams'><message/></body>");

    gw_buf_reset(&out);
    r.terminate = true;
    r.cond = GW_COND_item_not_found;
    CHECK(gw_bosh_build_reply(&out, &r, NULL, 0) == 0);
    CHECK_STR(gw_buf_ptr(&out), "<body xmlns='http://jabber.org/protocol/httpbind' "
                                "type='terminate' condition='item-not-found'/>");

    gw_buf_reset(&out);
    struct gw_bosh_reply r2 = {
        .has_ack = true, .ack = 7, .has_report = true, .report = 5, .time_ms = 1200};
    CHECK(gw_bosh_build_reply(&out, &r2, NULL, 0) == 0);
    CHECK_STR(gw_buf_ptr(&out), "<body xmlns='http://jabber.org/protocol/httpbind' ack='7' "
                                "report='5' time='1200'/>");

    struct gw_bosh_params p = {
        .wait = 30, .hold = 1, .requests = 2, .inactivity = 60, .polling = 2, .maxpause = 120};
    snprintf(p.ver, sizeof(p.ver), "1.11");
    struct gw_bosh_creation c = {.params = &p,
                                 .sid = "0123abcd",
                                 .from = "example.com",
                                 .authid = "id'<1>",
                                 .has_ack = true,
                                 .ack = 99};
    gw_buf_reset(&out);
    CHECK(gw_bosh_build_creation(&out, &c, "<stream:features/>", 18) == 0);
    CHECK_STR(gw_buf_ptr(&out),
              "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' "
              "xmlns:stream='http://etherx.jabber.org/streams' sid='0123abcd' wait='30' "
              "requests='2' hold='1' inactivity='60' polling='2' maxpause='120' ver='1.11' "
              "from='example.com' authid='id&apos;&lt;1&gt;' ack='99' xmpp:version='1.0' "
              "xmpp:restartlogic='true'><stream:features/></body>");
    p.maxpause = 0;
    c.has_ack = false;
    gw_buf_reset(&out);
    CHECK(gw_bosh_build_creation(&out, &c, NULL, 0) == 0);
    CHECK(strstr(gw_buf_ptr(&out), "maxpause") == NULL);
    CHECK(strstr(gw_buf_ptr(&out), " ack=") == NULL);

    /* A condition XEP-0124 does not have never reaches the wire. */
    gw_buf_reset(&out);
    r.cond = GW_COND_conflict;
    CHECK(gw_bosh_build_reply(&out, &r, NULL, 0) == GW_EINVAL);
    r.cond = GW_COND_item_not_found;

    /* Bounded output. */
    struct gw_buf small;
    gw_buf_init(&small, 20);
    CHECK(gw_bosh_build_reply(&small, &r, NULL, 0) == GW_ELIMIT);
    gw_buf_cleanup(&small);
    gw_buf_cleanup(&out);
}

static void test_terminate_bodies(void)
{
    struct gw_buf out;
    gw_buf_init(&out, 65536);
    CHECK(gw_bosh_build_terminate(&out, GW_COND_NONE, NULL, 0, NULL, 0) == 0);
    CHECK_STR(gw_buf_ptr(&out), "<body xmlns='http://jabber.org/protocol/httpbind' "
                                "type='terminate'/>");
    gw_buf_reset(&out);
    CHECK(gw_bosh_build_terminate(&out, GW_COND_system_shutdown, "<message/>", 10, NULL, 0) == 0);
    CHECK_STR(gw_buf_ptr(&out), "<body xmlns='http://jabber.org/protocol/httpbind' "
                                "xmlns:stream='http://etherx.jabber.org/streams' type='terminate' "
                                "condition='system-shutdown'><message/></body>");
    /* The stanzas still waiting, then upstream's error element, in one body. */
    const char *err = "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict "
                      "xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>";
    gw_buf_reset(&out);
    CHECK(gw_bosh_build_terminate(&out, GW_COND_remote_stream_error, "<iq/>", 5, err,
                                  strlen(err)) == 0);
    const char *b = gw_buf_ptr(&out);
    CHECK(strstr(b, "condition='remote-stream-error'><iq/><stream:error") != NULL);
    CHECK(strstr(b, "</stream:error></body>") != NULL);
    /* The error element alone. */
    gw_buf_reset(&out);
    CHECK(gw_bosh_build_terminate(&out, GW_COND_remote_stream_error, NULL, 0, err, strlen(err)) ==
          0);
    CHECK(strstr(gw_buf_ptr(&out), "'><stream:error") != NULL);
    CHECK(gw_bosh_build_terminate(&out, GW_COND_not_authorized, NULL, 0, NULL, 0) == GW_EINVAL);
    /* Bounded. */
    struct gw_buf small;
    gw_buf_init(&small, 60);
    CHECK(gw_bosh_build_terminate(&small, GW_COND_NONE, "<message>longer than that</message>", 35,
                                  NULL, 0) == GW_ELIMIT);
    gw_buf_cleanup(&small);
    gw_buf_cleanup(&out);
}

static void test_caps(void)
{
    /* What upstream already read still comes after the sink said GW_EAGAIN. */
    CHECK(gw_bosh_out_max(1000, 100) == 2100);
    /* One answer holds every stanza waiting plus features or an error element and the tags. */
    CHECK(gw_bosh_resp_max(1000, 100) == 2100 + 100 + 65536);
    CHECK(gw_bosh_resp_max(1 << 20, 1 << 18) > gw_bosh_out_max(1 << 20, 1 << 18));
}

static void test_acks(void)
{
    struct gw_bosh_ridlog l;
    CHECK(gw_bosh_ridlog_init(&l, 4, 1024) == 0);
    for (uint64_t rid = 10; rid <= 12; rid++) {
        CHECK(gw_bosh_ridlog_add(&l, rid, "") != NULL);
        CHECK(gw_bosh_ridlog_answered(&l, rid, "<body/>", 7, 1000 * rid) == 0);
    }
    struct gw_bosh_report rep;
    /* The client has everything up to 12: nothing lost; every body acknowledged goes. */
    gw_bosh_ridlog_ack(&l, 12, 12, 20000, &rep);
    CHECK(!rep.lost);
    CHECK(gw_buf_size(&gw_bosh_ridlog_find(&l, 10)->body) == 0);
    CHECK(gw_buf_size(&gw_bosh_ridlog_find(&l, 12)->body) == 0);
    CHECK(gw_bosh_ridlog_find(&l, 12)->state == GW_BOSH_RID_ANSWERED);

    /* It says 10 while 11 and 12 went out: 11 is reported with its age; 10 goes, 11 stays. */
    for (uint64_t rid = 10; rid <= 12; rid++)
        CHECK(gw_bosh_ridlog_answered(&l, rid, "<body/>", 7, 1000 * rid) == 0);
    gw_bosh_ridlog_ack(&l, 10, 12, 15000, &rep);
    CHECK(rep.lost && rep.rid == 11 && rep.time_ms == 4000);
    CHECK(gw_buf_size(&gw_bosh_ridlog_find(&l, 10)->body) == 0);
    CHECK(gw_buf_size(&gw_bosh_ridlog_find(&l, 11)->body) == 7);
    /* An ack+1 that is not answered yet (still held) is no loss. */
    CHECK(gw_bosh_ridlog_add(&l, 13, "") != NULL);
    gw_bosh_ridlog_ack(&l, 12, 13, 15000, &rep);
    CHECK(!rep.lost);
    /* Nor one that fell out of the log. */
    gw_bosh_ridlog_ack(&l, 1, 13, 15000, &rep);
    CHECK(!rep.lost);
    gw_bosh_ridlog_cleanup(&l);
}

static void test_conditions(void)
{
    CHECK(gw_bosh_terminate_condition(GW_COND_NONE, false) == GW_COND_NONE);
    CHECK(gw_bosh_terminate_condition(GW_COND_conflict, true) == GW_COND_remote_stream_error);
    CHECK(gw_bosh_terminate_condition(GW_COND_see_other_host, true) == GW_COND_remote_stream_error);
    CHECK(gw_bosh_terminate_condition(GW_COND_improper_addressing, true) ==
          GW_COND_remote_stream_error);
    /* A stream error whose condition XEP-0124 has with the same meaning keeps it (the body
     * still carries the element). */
    const enum gw_condition same[] = {GW_COND_host_unknown,
                                      GW_COND_host_gone,
                                      GW_COND_system_shutdown,
                                      GW_COND_policy_violation,
                                      GW_COND_undefined_condition,
                                      GW_COND_internal_server_error,
                                      GW_COND_remote_connection_failed};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        CHECK(gw_bosh_terminate_condition(same[i], true) == same[i]);
        CHECK(gw_bosh_terminate_condition(same[i], false) == same[i]);
    }
    CHECK(gw_bosh_terminate_condition(GW_COND_remote_connection_failed, false) ==
          GW_COND_remote_connection_failed);
    CHECK(gw_bosh_terminate_condition(GW_COND_host_unknown, false) == GW_COND_host_unknown);
    CHECK(gw_bosh_terminate_condition(GW_COND_system_shutdown, false) == GW_COND_system_shutdown);
    CHECK(gw_bosh_terminate_condition(GW_COND_internal_server_error, false) ==
          GW_COND_internal_server_error);
    CHECK(gw_bosh_terminate_condition(GW_COND_connection_timeout, false) ==
          GW_COND_remote_connection_failed);
    CHECK(gw_bosh_terminate_condition(GW_COND_resource_constraint, false) ==
          GW_COND_internal_server_error);
    CHECK(gw_bosh_terminate_condition(GW_COND_not_authorized, false) ==
          GW_COND_undefined_condition);
    CHECK(gw_bosh_terminate_condition(GW_COND_COUNT, false) == GW_COND_undefined_condition);
    /* Whatever comes in, what goes out is NONE or a BOSH condition. */
    for (int c = GW_COND_NONE; c <= GW_COND_COUNT; c++) {
        enum gw_condition t = gw_bosh_terminate_condition((enum gw_condition)c, false);
        CHECK(t == GW_COND_NONE ? c == GW_COND_NONE : gw_bosh_is_condition(t));
    }
    /* The XEP-0124 section 17 list, from the one condition table. */
    const char *all[] = {"bad-request",
                         "host-gone",
                         "host-unknown",
                         "improper-addressing",
                         "internal-server-error",
                         "item-not-found",
                         "other-request",
                         "policy-violation",
                         "remote-connection-failed",
                         "remote-stream-error",
                         "see-other-uri",
                         "system-shutdown",
                         "undefined-condition"};
    unsigned n_bosh = 0;
    for (int c = 0; c < GW_COND_COUNT; c++)
        n_bosh += gw_bosh_is_condition((enum gw_condition)c);
    CHECK(n_bosh == sizeof(all) / sizeof(all[0]));
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        CHECK(gw_bosh_is_condition(gw_condition_from_name(all[i])));
    CHECK(!gw_bosh_is_condition(GW_COND_conflict));
    CHECK(!gw_bosh_is_condition(GW_COND_NONE));
    CHECK(!gw_bosh_is_condition(GW_COND_COUNT));
    CHECK(gw_bosh_error_status(GW_COND_item_not_found, false) == 200);
    CHECK(gw_bosh_error_status(GW_COND_item_not_found, true) == 404);
    CHECK(gw_bosh_error_status(GW_COND_bad_request, true) == 400);
    CHECK(gw_bosh_error_status(GW_COND_policy_violation, true) == 403);
    CHECK(gw_bosh_error_status(GW_COND_host_unknown, true) == 200);
    CHECK(gw_bosh_error_status(GW_COND_NONE, true) == 200);
    CHECK(gw_bosh_legacy("1.5") && gw_bosh_legacy("0.9"));
    CHECK(!gw_bosh_legacy("1.6") && !gw_bosh_legacy("") && !gw_bosh_legacy("x"));
}

int main(void)
{
    struct gw_bosh_parser *p = gw_bosh_parser_new(&limits);
    CHECK(p != NULL);
    if (p) {
        test_parse_creation(p);
        test_parse_payload(p);
        test_parse_errors(p);
        test_parse_limits(p);
        test_parse_namespaces(p);
        gw_bosh_parser_free(p);
    }
    test_numbers();
    test_negotiate();
    test_rid_window();
    test_keys();
    test_overactivity();
    test_order();
    test_bodies();
    test_terminate_bodies();
    test_caps();
    test_acks();
    test_conditions();
    return CHECK_SUMMARY();
}
