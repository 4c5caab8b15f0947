/* The live-updates hub's socket-free parts (gateway/session/hub_event.c): an item becomes the exact
 * SSE event bytes for Atom and other payloads, retractions and deletions from notifications, the
 * ring and its replay rule, the live.nodes allowlist with '*'; the publish API's bodies (the Atom
 * entry built, payloads checked by the stream parser's rules, every refusal) and answers (HTTP
 * status by outcome and condition). */
#include "session/hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "check.h"
#include "config/config.h"

#define NOW "2024-05-01T12:00:00Z"

/* ---- one upstream message, parsed the way the hub parses it ---- */

struct collected {
    struct gw_hub_event *ev[16]; /* what the callback got */
    char node[16][64];           /* for which node */
    unsigned n;                  /* how many */
};

static void collect(void *ud, const char *service, const char *node, struct gw_hub_event *ev)
{
    struct collected *c = ud;
    CHECK_STR(service, "pubsub.shakespeare.lit");
    if (c->n < 16) {
        snprintf(c->node[c->n], sizeof(c->node[0]), "%s", node);
        c->ev[c->n++] = ev;
    } else {
        gw_hub_event_unref(ev);
    }
}

struct parse_ud {
    struct collected *c; /* where events go */
    unsigned found;      /* gw_hub_message_events' count */
};

static bool want_all(void *ud, const char *ns, const char *name)
{
    (void)ud;
    (void)ns;
    (void)name;
    return true;
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct parse_ud *p = ud;
    p->found += gw_hub_message_events(st, NOW, collect, p->c);
}

static unsigned events_of(const char *xml, struct collected *c)
{
    struct gw_xml_opts o = {
        .mode = GW_XML_DOCUMENT, .limits = {65536, 64, 64}, .root_is_stanza = true};
    struct gw_xml_callbacks cb = {.want_tree = want_all, .on_stanza = on_stanza};
    struct parse_ud p = {.c = c};
    memset(c, 0, sizeof(*c));
    struct gw_xml_parser *x = gw_xml_new(&o, &cb, &p);
    CHECK(x != NULL);
    CHECK(gw_xml_parse_document(x, xml, strlen(xml)) == 0);
    gw_xml_free(x);
    return p.found;
}

static void release(struct collected *c)
{
    for (unsigned i = 0; i < c->n; i++)
        gw_hub_event_unref(c->ev[i]);
    c->n = 0;
}

#define MSG_HEAD                                                                                   \
    "<message xmlns='jabber:client' from='pubsub.shakespeare.lit' to='hub@denmark.lit' "           \
    "type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'>"

static void test_atom_item(void)
{
    struct collected c;
    const char *xml =
        MSG_HEAD "<items node='princely_musings'><item id='ae890ac52d0df67ed7cfdf51b644e901'>"
                 "<entry xmlns='http://www.w3.org/2005/Atom'><title>Soliloquy</title>"
                 "<summary>To be, or not to be: that is the question</summary>"
                 "<link rel='self' href='http://denmark.lit/self'/>"
                 "<link rel='alternate' type='text/html' "
                 "href='http://denmark.lit/2003/12/13/atom03'/>"
                 "<id>tag:denmark.lit,2003:entry-32397</id>"
                 "<published>2003-12-13T18:30:02Z</published>"
                 "<updated>2003-12-13T18:30:02Z</updated></entry></item></items></event></message>";
    CHECK(events_of(xml, &c) == 1);
    CHECK(c.n == 1);
    if (c.n != 1)
        return;
    CHECK_STR(c.node[0], "princely_musings");
    CHECK(c.ev[0]->kind == GW_HUB_ITEM && !c.ev[0]->final);
    CHECK_STR(c.ev[0]->id, "ae890ac52d0df67ed7cfdf51b644e901");
    CHECK_STR(c.ev[0]->bytes,
              "id: ae890ac52d0df67ed7cfdf51b644e901\nevent: item\ndata: "
              "{\"id\":\"ae890ac52d0df67ed7cfdf51b644e901\",\"node\":\"princely_musings\","
              "\"service\":\"pubsub.shakespeare.lit\",\"published\":\"2003-12-13T18:30:02Z\","
              "\"title\":\"Soliloquy\",\"summary\":\"To be, or not to be: that is the question\","
              "\"link\":\"http://denmark.lit/2003/12/13/atom03\","
              "\"entry_id\":\"tag:denmark.lit,2003:entry-32397\","
              "\"updated\":\"2003-12-13T18:30:02Z\"}\n\n");
    CHECK(c.ev[0]->len == strlen(c.ev[0]->bytes));
    release(&c);

    /* No alternate link: the first; no published: now; what is missing is null. */
    CHECK(events_of(MSG_HEAD "<items node='n'><item id='x'><entry xmlns='" GW_NS_ATOM
                             "'><link rel='self' href='a'/><link rel='enclosure' href='b'/>"
                             "<title>T &amp; \"q\"\nline</title></entry></item></items></event>"
                             "</message>",
                    &c) == 1);
    CHECK_STR(c.ev[0]->bytes, "id: x\nevent: item\ndata: {\"id\":\"x\",\"node\":\"n\",\"service\":"
                              "\"pubsub.shakespeare.lit\",\"published\":\"" NOW "\",\"title\":"
                              "\"T & \\\"q\\\"\\nline\",\"summary\":null,\"link\":\"a\","
                              "\"entry_id\":null,\"updated\":null}\n\n");
    release(&c);
}

static void test_other_items(void)
{
    struct collected c;
    /* Another payload travels as its XML, as received; two items, in order. */
    CHECK(events_of(MSG_HEAD "<items node='n'><item id='1'><note xmlns='urn:x'>a &lt; b</note>"
                             "</item><item id='2'/><item/></items></event></message>",
                    &c) == 2);
    CHECK(c.n == 2);
    if (c.n == 2) {
        CHECK_STR(c.ev[0]->bytes,
                  "id: 1\nevent: item\ndata: {\"id\":\"1\",\"node\":\"n\",\"service\":"
                  "\"pubsub.shakespeare.lit\",\"published\":\"" NOW "\",\"xml\":"
                  "\"<note xmlns='urn:x'>a &lt; b</note>\"}\n\n");
        CHECK_STR(c.ev[1]->bytes,
                  "id: 2\nevent: item\ndata: {\"id\":\"2\",\"node\":\"n\",\"service\":"
                  "\"pubsub.shakespeare.lit\",\"published\":\"" NOW "\",\"xml\":"
                  "null}\n\n");
    }
    release(&c);

    /* An id with a line break gets no id line (it could not be resumed from). */
    CHECK(events_of(MSG_HEAD "<items node='n'><item id='a&#10;b'><p xmlns='urn:x'/></item></items>"
                             "</event></message>",
                    &c) == 1);
    CHECK(strncmp(c.ev[0]->bytes, "event: item\n", 12) == 0);
    release(&c);
}

static void test_retract_delete(void)
{
    struct collected c;
    CHECK(events_of(MSG_HEAD "<items node='n'><retract id='r1'/></items><delete node='n'/>"
                             "<purge node='n'/></event></message>",
                    &c) == 2);
    CHECK(c.n == 2);
    if (c.n == 2) {
        CHECK(c.ev[0]->kind == GW_HUB_RETRACT && !c.ev[0]->final);
        CHECK_STR(c.ev[0]->id, "r1");
        CHECK_STR(c.ev[0]->bytes, "event: retract\ndata: {\"id\":\"r1\"}\n\n");
        CHECK(c.ev[1]->kind == GW_HUB_DELETE && c.ev[1]->final);
        CHECK_STR(c.ev[1]->bytes, "event: delete\ndata: {\"service\":\"pubsub.shakespeare.lit\","
                                  "\"node\":\"n\"}\n\n");
    }
    release(&c);
    /* Not a notification. */
    CHECK(events_of("<message xmlns='jabber:client' from='pubsub.shakespeare.lit'><body>hi</body>"
                    "</message>",
                    &c) == 0);
    CHECK(events_of("<iq xmlns='jabber:client' from='pubsub.shakespeare.lit' type='result'/>",
                    &c) == 0);
    struct gw_hub_event *e = gw_hub_event_error("remote-server-not-found", "lost");
    CHECK(e && e->final && e->kind == GW_HUB_ERROR);
    CHECK_STR(e->bytes, "event: error\ndata: {\"error\":\"lost\",\"condition\":"
                        "\"remote-server-not-found\"}\n\n");
    gw_hub_event_unref(e);
}

/* ---- the ring ---- */

static struct gw_hub_event *item(const char *id)
{
    struct collected c;
    char xml[512];
    snprintf(xml, sizeof(xml), MSG_HEAD "<items node='n'><item id='%s'/></items></event></message>",
             id);
    CHECK(events_of(xml, &c) == 1);
    return c.ev[0];
}

static void check_after(const struct gw_hub_ring *r, const char *last, const char *want)
{
    struct gw_hub_event *out[16];
    unsigned n = gw_hub_ring_after(r, last, out, 16);
    char got[256] = "";
    for (unsigned i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", i ? "," : "", out[i]->id);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "after %s: got \"%s\", want \"%s\"\n", last ? last : "(none)", got, want);
    CHECK_STR(got, want);
}

static void push(struct gw_hub_ring *r, const char *id)
{
    struct gw_hub_event *ev = item(id);
    gw_hub_ring_push(r, ev);
    gw_hub_event_unref(ev);
}

static void test_ring(void)
{
    struct gw_hub_ring r;
    CHECK(gw_hub_ring_init(&r, 3) == 0);
    check_after(&r, NULL, "");
    check_after(&r, "a", "");
    push(&r, "a");
    push(&r, "b");
    check_after(&r, NULL, "a,b");
    check_after(&r, "a", "b");
    check_after(&r, "b", "");
    push(&r, "c");
    push(&r, "d"); /* a falls out */
    check_after(&r, NULL, "b,c,d");
    check_after(&r, "a", "b,c,d"); /* unknown (gone): the whole cache */
    check_after(&r, "c", "d");
    push(&r, "b"); /* republished: moves to the end, once */
    check_after(&r, NULL, "c,d,b");
    gw_hub_ring_remove(&r, "d");
    check_after(&r, NULL, "c,b");
    CHECK(!gw_hub_ring_has(&r, "d") && gw_hub_ring_has(&r, "c"));
    gw_hub_ring_remove(&r, "nope");
    push(&r, "e");
    push(&r, "f");
    check_after(&r, NULL, "b,e,f");
    check_after(&r, "e", "f");
    /* The ring holds a reference of its own. */
    struct gw_hub_event *g = item("g");
    gw_hub_ring_push(&r, g);
    CHECK(g->refs == 2);
    gw_hub_event_unref(g);
    gw_hub_ring_cleanup(&r);

    /* live.replay 0 keeps nothing. */
    CHECK(gw_hub_ring_init(&r, 0) == 0);
    push(&r, "a");
    check_after(&r, NULL, "");
    gw_hub_ring_cleanup(&r);
}

/* ---- the allowlist ---- */

static void test_allowlist(void)
{
    struct gw_config *cfg = calloc(1, sizeof(*cfg));
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    gw_config_defaults(cfg);
    snprintf(cfg->live_nodes[0], sizeof(cfg->live_nodes[0]), "pubsub.example.org/princely_musings");
    snprintf(cfg->live_nodes[1], sizeof(cfg->live_nodes[1]), "pubsub.example.org/news-*");
    snprintf(cfg->live_nodes[2], sizeof(cfg->live_nodes[2]), "all.example.org/*");
    cfg->n_live_nodes = 3;
    CHECK(gw_hub_allowed(cfg, "pubsub.example.org", "princely_musings"));
    CHECK(gw_hub_allowed(cfg, "PubSub.Example.org", "princely_musings"));
    CHECK(!gw_hub_allowed(cfg, "pubsub.example.org", "Princely_musings"));
    CHECK(!gw_hub_allowed(cfg, "pubsub.example.org", "princely_musings2"));
    CHECK(!gw_hub_allowed(cfg, "pubsub.example.org", "princely"));
    CHECK(gw_hub_allowed(cfg, "pubsub.example.org", "news-"));
    CHECK(gw_hub_allowed(cfg, "pubsub.example.org", "news-sports/today"));
    CHECK(!gw_hub_allowed(cfg, "pubsub.example.org", "news"));
    CHECK(!gw_hub_allowed(cfg, "pubsub.example.org.evil", "princely_musings"));
    CHECK(!gw_hub_allowed(cfg, "example.org", "princely_musings"));
    CHECK(gw_hub_allowed(cfg, "all.example.org", "anything"));
    CHECK(!gw_hub_allowed(cfg, "all.example.org", ""));
    cfg->n_live_nodes = 0;
    CHECK(!gw_hub_allowed(cfg, "pubsub.example.org", "princely_musings"));
    free(cfg);
}

/* ---- publishing ---- */

static const struct gw_xml_limits pub_limits = {8192, 16, 16};

/* Parse body as kind; 0 or the error, the reason in why. */
static int parse_pub(struct gw_hub_item *it, enum gw_hub_body kind, const char *body, char *why)
{
    return gw_hub_item_parse(it, kind, body, strlen(body), &pub_limits, NOW, why, 256);
}

static void test_publish_atom(void)
{
    struct gw_hub_item it;
    char why[256];
    CHECK(parse_pub(&it, GW_HUB_BODY_API,
                    "{\"service\":\"pubsub.shakespeare.lit\",\"node\":\"princely musings\","
                    "\"title\":\"Soliloquy <1> & 'q'\",\"summary\":\"To be\\nor not\","
                    "\"link\":\"http://denmark.lit/2003/12/13/atom03?a=1&b=2\",\"id\":\"a/b c\"}",
                    why) == 0);
    CHECK_STR(it.service, "pubsub.shakespeare.lit");
    CHECK_STR(it.node, "princely musings");
    CHECK_STR(it.id, "a/b c");
    CHECK_STR(gw_buf_ptr(&it.payload),
              "<entry xmlns='http://www.w3.org/2005/Atom'><title>Soliloquy &lt;1&gt; &amp; "
              "&apos;q&apos;</title><summary>To be\nor not</summary><link rel='alternate' "
              "href='http://denmark.lit/2003/12/13/atom03?a=1&amp;b=2'/>"
              "<id>xmpp:pubsub.shakespeare.lit?;node=princely%20musings;item=a%2Fb%20c</id>"
              "<published>" NOW "</published><updated>" NOW "</updated></entry>");
    gw_hub_item_cleanup(&it);

    /* Only a title: no summary or link elements, and an id of 32 random hex characters. */
    CHECK(parse_pub(&it, GW_HUB_BODY_API,
                    "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"Hello\","
                    "\"summary\":\"\",\"link\":\"\"}",
                    why) == 0);
    CHECK(strlen(it.id) == 32 && strspn(it.id, "0123456789abcdef") == 32);
    CHECK(strstr(gw_buf_ptr(&it.payload), "<summary") == NULL);
    CHECK(strstr(gw_buf_ptr(&it.payload), "<link") == NULL);
    CHECK(strstr(gw_buf_ptr(&it.payload), it.id) != NULL);
    char first[40];
    snprintf(first, sizeof(first), "%s", it.id);
    gw_hub_item_cleanup(&it);
    CHECK(parse_pub(&it, GW_HUB_BODY_API,
                    "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"Hello\"}",
                    why) == 0);
    CHECK(strcmp(it.id, first) != 0);
    gw_hub_item_cleanup(&it);

    /* The demo's body: "<service>/<node>", the node may hold slashes. */
    CHECK(parse_pub(&it, GW_HUB_BODY_DEMO,
                    "{\"node\":\"pubsub.localhost/news/today\",\"title\":\"T\",\"summary\":\"S\","
                    "\"link\":\"https://example.org/\"}",
                    why) == 0);
    CHECK_STR(it.service, "pubsub.localhost");
    CHECK_STR(it.node, "news/today");
    gw_hub_item_cleanup(&it);
}

static void test_publish_payload(void)
{
    struct gw_hub_item it;
    char why[256];
    CHECK(parse_pub(&it, GW_HUB_BODY_API,
                    "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"payload\":"
                    "\" \\n<x xmlns='urn:x' a='1'><y>t&amp;</y></x>\\n\"}",
                    why) == 0);
    CHECK_STR(gw_buf_ptr(&it.payload), "<x xmlns='urn:x' a='1'><y>t&amp;</y></x>");
    CHECK_STR(it.id, ""); /* the service chooses */
    gw_hub_item_cleanup(&it);

    const char *bad[] = {
        "\"<x>\"",
        "\"<x/><y/>\"",
        "\"text\"",
        "\"\"",
        "\"<x>&ent;</x>\"",
        "\"<!DOCTYPE x [<!ENTITY e 'a'>]><x>&e;</x>\"",
        "\"<?xml version='1.0' encoding='ISO-8859-1'?><x/>\"",
        "\"<?pi x?><x/>\"",
        "\"<x><?pi x?></x>\"",
        "\"<x><!-- c --></x>\"",
        "\"<p:x/>\"",
        "\"<x a='1' a='2'/>\"",
        "\"</iq><iq type='set'>\"",
        "\"<x>\\u0001</x>\"",
        ("\"<a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a><a></a></a></a></a></a></a></a>"
         "</a></a></a></a></a></a></a></a></a></a></a>\""),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body),
                 "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"payload\":%s}", bad[i]);
        int rc = parse_pub(&it, GW_HUB_BODY_API, body, why);
        if (rc != GW_EINVAL)
            fprintf(stderr, "payload %s: %d\n", bad[i], rc);
        CHECK(rc == GW_EINVAL && why[0]);
        gw_hub_item_cleanup(&it);
    }
    /* Past the byte limit. */
    char big[9000 + 128];
    int n =
        snprintf(big, sizeof(big), "{\"service\":\"s.example\",\"node\":\"n\",\"payload\":\"<x>");
    memset(big + n, 'a', 9000);
    snprintf(big + n + 9000, sizeof(big) - (size_t)n - 9000, "</x>\"}");
    CHECK(parse_pub(&it, GW_HUB_BODY_API, big, why) == GW_EINVAL);
    gw_hub_item_cleanup(&it);
}

static void test_publish_refused(void)
{
    const char *bad[] = {
        "",
        "[]",
        "\"x\"",
        "{",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"title\":\"U\"}",
        "{\"node\":\"n\",\"title\":\"T\"}",
        "{\"service\":\"pubsub.localhost\",\"title\":\"T\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"\",\"title\":\"T\"}",
        "{\"service\":\"\",\"node\":\"n\",\"title\":\"T\"}",
        "{\"service\":\"bad host!\",\"node\":\"n\",\"title\":\"T\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\\u0001\",\"title\":\"T\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":1,\"title\":\"T\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":7}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"id\":\"\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"id\":\"a\\nb\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"id\":5}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\\u0007\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\\uffff\"}",
        ("{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"link\":"
         "\"javascript:x\"}"),
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"link\":\"http://\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"link\":\"http://a b\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"payload\":\"<x/>\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\",\"extra\":1}",
    };
    struct gw_hub_item it;
    char why[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse_pub(&it, GW_HUB_BODY_API, bad[i], why);
        if (rc != GW_EINVAL)
            fprintf(stderr, "body %s: %d\n", bad[i], rc);
        CHECK(rc == GW_EINVAL && why[0]);
        gw_hub_item_cleanup(&it);
    }
    const char *bad_demo[] = {
        "{\"node\":\"princely_musings\",\"title\":\"T\"}",
        "{\"node\":\"pubsub.localhost/\",\"title\":\"T\"}",
        "{\"node\":\"/n\",\"title\":\"T\"}",
        "{\"service\":\"pubsub.localhost\",\"node\":\"pubsub.localhost/n\",\"title\":\"T\"}",
        "{\"node\":\"pubsub.localhost/n\",\"payload\":\"<x/>\"}",
        "{\"node\":\"pubsub.localhost/n\",\"title\":\"T\",\"id\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(bad_demo) / sizeof(bad_demo[0]); i++) {
        CHECK(parse_pub(&it, GW_HUB_BODY_DEMO, bad_demo[i], why) == GW_EINVAL && why[0]);
        gw_hub_item_cleanup(&it);
    }
    /* A reason names what is wrong. */
    CHECK(parse_pub(&it, GW_HUB_BODY_API, "{\"service\":\"s.example\",\"node\":\"n\",\"x\":1}",
                    why) == GW_EINVAL);
    CHECK_STR(why, "unknown field: x");
    gw_hub_item_cleanup(&it);
}

/* Status, Allow and the body's fields of one answer. */
static void check_answer(const struct gw_hub_pub_result *res, unsigned status, const char *cond)
{
    struct gw_hub_answer a;
    gw_hub_pub_answer_of(res, &a);
    CHECK(a.status == status);
    CHECK((a.allow != NULL) == (status == 405));
    CHECK(a.len > 0 && a.body[a.len - 1] == '\n' && strlen(a.body) == a.len);
    json_t *j = json_loadb(a.body, a.len, 0, NULL);
    CHECK(json_is_object(j));
    if (status == 200) {
        CHECK_STR(json_string_value(json_object_get(j, "id")), res->id);
    } else {
        CHECK_STR(json_string_value(json_object_get(j, "condition")), cond);
        CHECK(json_string_value(json_object_get(j, "error")) != NULL);
    }
    json_decref(j);
}

static void test_publish_answers(void)
{
    check_answer(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_OK, .id = "x\"y"}, 200, NULL);
    const struct {
        const char *cond;
        unsigned status;
    } refused[] = {{"forbidden", 403},           {"not-authorized", 403},
                   {"item-not-found", 404},      {"remote-server-not-found", 404},
                   {"not-allowed", 405},         {"conflict", 409},
                   {"bad-request", 400},         {"not-acceptable", 400},
                   {"jid-malformed", 400},       {"internal-server-error", 502},
                   {"undefined-condition", 502}, {"service-unavailable", 502}};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
        check_answer(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_REFUSED,
                                                 .condition = refused[i].cond},
                     refused[i].status, refused[i].cond);
    check_answer(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_TIMEOUT}, 504,
                 "remote-server-timeout");
    check_answer(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_LOST}, 502,
                 "remote-connection-failed");
    check_answer(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_DOWN}, 503,
                 "service-unavailable");
    check_answer(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_INVALID, .text = "why"}, 400,
                 "bad-request");
    /* The service's text joins a refusal when it is short. */
    struct gw_hub_answer a;
    gw_hub_pub_answer_of(&(struct gw_hub_pub_result){.outcome = GW_HUB_PUB_REFUSED,
                                                     .condition = "forbidden",
                                                     .text = "not a publisher"},
                         &a);
    CHECK(strstr(a.body, "\"text\":\"not a publisher\"") != NULL);
    CHECK_STR(gw_hub_pub_outcome_name(GW_HUB_PUB_TIMEOUT), "timeout");
    CHECK(gw_hub_pub_count(NULL, GW_HUB_PUB_OK) == 0);
}

int main(void)
{
    test_publish_atom();
    test_publish_payload();
    test_publish_refused();
    test_publish_answers();
    test_atom_item();
    test_other_items();
    test_retract_delete();
    test_ring();
    test_allowlist();
    return CHECK_SUMMARY();
}
