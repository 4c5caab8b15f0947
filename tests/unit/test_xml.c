/* Tests for gateway/xml/xml.c: stream headers, stanza slices with the namespace context inserted,
 * every split of the input, document mode (BOSH bodies, WebSocket frames), restricted XML, limits,
 * pause and reset, trees. */
#include "xml/xml.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/buf.h"

#define NS_XML "http://www.w3.org/XML/1998/namespace"
#define STREAM_OPEN                                                                                \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s1' version='1.0' "    \
    "xml:lang='en'>"
/* What a stanza of STREAM_OPEN gets: the default namespace always, a prefix only when used. */
#define CTX " xmlns='jabber:client'"
#define CTX_STREAM " xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"

/* For checks run on every callback: count only the failures, not thousands of passes. */
#define CHECK_QUIET(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

/* Everything the callbacks saw, as text, so that whole runs compare with one strcmp. */
struct rec {
    struct gw_buf log;
    unsigned opens, stanzas, closes;
    bool trees;           /* ask for a tree for every stanza */
    const char *pause_at; /* pause after the stanza with this name */
    char last[4096];      /* bytes of the last stanza */
    char last_name[64];
    char last_ns[128];
    struct gw_xml_parser *p; /* for pausing */
    /* open attributes, copied */
    unsigned n_open_attrs;
    char open_from[64], open_lang[16], open_lang_ns[64], open_name[32], open_ns[64];
};

static void rec_init(struct rec *r, bool trees)
{
    memset(r, 0, sizeof(*r));
    gw_buf_init(&r->log, (size_t)64 << 20);
    r->trees = trees;
}

static void log_str(struct rec *r, const char *s, size_t n)
{
    if (gw_buf_append(&r->log, s, n))
        abort();
}

static void log_tree(struct rec *r, const struct gw_xml_node *n, const struct gw_xml_stanza *st)
{
    char tmp[128];
    log_str(r, "{", 1);
    log_str(r, n->ns, strlen(n->ns));
    log_str(r, "}", 1);
    log_str(r, n->name, strlen(n->name));
    for (unsigned i = 0; i < n->n_attrs; i++) {
        log_str(r, " ", 1);
        log_str(r, n->attrs[i].ns, strlen(n->attrs[i].ns));
        log_str(r, "|", 1);
        log_str(r, n->attrs[i].name, strlen(n->attrs[i].name));
        log_str(r, "=", 1);
        log_str(r, n->attrs[i].value, strlen(n->attrs[i].value));
    }
    CHECK_QUIET(n->attrs[n->n_attrs].name == NULL);
    int k = snprintf(tmp, sizeof(tmp), " @%zu-%zu \"", n->start, n->end);
    log_str(r, tmp, (size_t)k);
    log_str(r, n->text, n->text_len);
    log_str(r, "\"", 1);
    /* Offsets must frame this very element in the delivered bytes. */
    CHECK_QUIET(n->start < n->end && n->end <= st->len);
    CHECK_QUIET(st->bytes[n->start] == '<' && st->bytes[n->end - 1] == '>');
    CHECK_QUIET(strncmp(st->bytes + n->start + 1, n->name, strlen(n->name)) == 0 ||
                memchr(st->bytes + n->start, ':', n->end - n->start) != NULL);
    for (const struct gw_xml_node *c = n->children; c; c = c->next) {
        CHECK_QUIET(c->start > n->start && c->end < n->end);
        log_str(r, "(", 1);
        log_tree(r, c, st);
        log_str(r, ")", 1);
    }
}

static void on_open(void *ud, const char *ns, const char *name, const struct gw_xml_attr *attrs,
                    unsigned n)
{
    struct rec *r = ud;
    r->opens++;
    r->n_open_attrs = n;
    snprintf(r->open_ns, sizeof(r->open_ns), "%s", ns);
    snprintf(r->open_name, sizeof(r->open_name), "%s", name);
    const char *from = gw_xml_attr(attrs, n, "from");
    snprintf(r->open_from, sizeof(r->open_from), "%s", from ? from : "");
    r->open_lang[0] = r->open_lang_ns[0] = '\0';
    for (unsigned i = 0; i < n; i++)
        if (strcmp(attrs[i].name, "lang") == 0) {
            snprintf(r->open_lang, sizeof(r->open_lang), "%s", attrs[i].value);
            snprintf(r->open_lang_ns, sizeof(r->open_lang_ns), "%s", attrs[i].ns);
        }
    CHECK_QUIET(attrs[n].name == NULL);
    log_str(r, "OPEN {", 6);
    log_str(r, ns, strlen(ns));
    log_str(r, "}", 1);
    log_str(r, name, strlen(name));
    for (unsigned i = 0; i < n; i++) {
        log_str(r, " ", 1);
        log_str(r, attrs[i].name, strlen(attrs[i].name));
        log_str(r, "=", 1);
        log_str(r, attrs[i].value, strlen(attrs[i].value));
    }
    log_str(r, "\n", 1);
}

static bool want_tree(void *ud, const char *ns, const char *name)
{
    struct rec *r = ud;
    return r->trees;
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct rec *r = ud;
    r->stanzas++;
    snprintf(r->last, sizeof(r->last), "%.*s", (int)st->len, st->bytes);
    snprintf(r->last_name, sizeof(r->last_name), "%s", st->name);
    snprintf(r->last_ns, sizeof(r->last_ns), "%s", st->ns);
    log_str(r, "STANZA ", 7);
    log_str(r, st->bytes, st->len);
    if (st->tree) {
        CHECK_QUIET(st->tree->start == 0 && st->tree->end == st->len);
        CHECK_QUIET(strcmp(st->tree->name, st->name) == 0);
        CHECK_QUIET(strcmp(st->tree->ns, st->ns) == 0);
        log_str(r, " TREE ", 6);
        log_tree(r, st->tree, st);
    } else {
        CHECK_QUIET(!r->trees);
    }
    log_str(r, "\n", 1);
    if (r->pause_at && strcmp(st->name, r->pause_at) == 0)
        gw_xml_pause(r->p);
}

static void on_close(void *ud)
{
    struct rec *r = ud;
    r->closes++;
    log_str(r, "CLOSE\n", 6);
}

static const struct gw_xml_callbacks cbs = {on_open, want_tree, on_stanza, on_close};

/* The stream tests run twice: with the parser kept, and released between stanzas. */
static bool release_idle;

static struct gw_xml_opts stream_opts(void)
{
    struct gw_xml_opts o = {.mode = GW_XML_STREAM,
                            .limits = {.max_stanza = 256 * 1024, .max_depth = 32, .max_attrs = 32},
                            .inject_context = true,
                            .release_idle = release_idle};
    return o;
}

static struct gw_xml_opts doc_opts(bool root_is_stanza)
{
    struct gw_xml_opts o = stream_opts();
    o.mode = GW_XML_DOCUMENT;
    o.inject_context = false;
    o.root_is_stanza = root_is_stanza;
    return o;
}

/* Feed s in chunks cut at the given offsets (sorted, within s), recording into r. */
static int feed_cuts(const struct gw_xml_opts *o, struct rec *r, const char *s, size_t n,
                     const size_t *cuts, unsigned n_cuts)
{
    struct gw_xml_parser *p = gw_xml_new(o, &cbs, r);
    if (!p)
        abort();
    r->p = p;
    size_t at = 0;
    int rc = 0;
    for (unsigned i = 0; i <= n_cuts && !rc; i++) {
        size_t to = i < n_cuts ? cuts[i] : n;
        size_t used = 0;
        rc = gw_xml_feed(p, s + at, to - at, &used);
        if (!rc)
            CHECK_QUIET(used == to - at);
        at = to;
    }
    gw_xml_free(p);
    return rc;
}

static int feed_one(const struct gw_xml_opts *o, struct rec *r, const char *s)
{
    return feed_cuts(o, r, s, strlen(s), NULL, 0);
}

static struct gw_xml_parser *expect_error(const struct gw_xml_opts *o, const char *s, size_t n,
                                          int want_rc, const char *want_cond, struct rec *r)
{
    struct gw_xml_parser *p = gw_xml_new(o, &cbs, r);
    if (!p)
        abort();
    int rc = o->mode == GW_XML_STREAM ? gw_xml_feed(p, s, n, NULL) : gw_xml_parse_document(p, s, n);
    CHECK(rc == want_rc);
    CHECK_STR(gw_xml_error_condition(p), want_cond);
    if (rc != want_rc || strcmp(gw_xml_error_condition(p), want_cond) != 0)
        fprintf(stderr, "  input: %.80s\n  got %d %s: %s\n", s, rc, gw_xml_error_condition(p),
                gw_xml_error_text(p));
    return p;
}

static void check_error(const struct gw_xml_opts *o, const char *s, int want_rc,
                        const char *want_cond)
{
    struct rec r;
    rec_init(&r, true);
    gw_xml_free(expect_error(o, s, strlen(s), want_rc, want_cond, &r));
    gw_buf_cleanup(&r.log);
}

static void test_stream_header(void)
{
    struct gw_xml_opts o = stream_opts();
    struct rec r;
    rec_init(&r, false);
    CHECK(feed_one(&o, &r, STREAM_OPEN) == 0);
    CHECK(r.opens == 1);
    CHECK_STR(r.open_ns, GW_NS_STREAM);
    CHECK_STR(r.open_name, "stream");
    CHECK(r.n_open_attrs == 4); /* namespace declarations are not attributes */
    CHECK_STR(r.open_from, "example.com");
    CHECK_STR(r.open_lang, "en");
    CHECK_STR(r.open_lang_ns, NS_XML);
    CHECK(r.stanzas == 0 && r.closes == 0);
    gw_buf_cleanup(&r.log);
}

static void test_injection(void)
{
    struct gw_xml_opts o = stream_opts();
    struct rec r;
    rec_init(&r, false);
    CHECK(feed_one(&o, &r, STREAM_OPEN "<message to='a'><body>x</body></message>") == 0);
    CHECK_STR(r.last, "<message" CTX " to='a'><body>x</body></message>");
    CHECK_STR(r.last_ns, GW_NS_CLIENT);
    CHECK_STR(r.last_name, "message");
    gw_buf_cleanup(&r.log);

    /* features: xmlns:stream comes along; a stanza's own declaration is not repeated */
    rec_init(&r, false);
    CHECK(feed_one(&o, &r,
                   STREAM_OPEN "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                               "</stream:features>\n<iq xmlns='jabber:client' type='get'/>"
                               "<presence/></stream:stream>") == 0);
    CHECK(r.stanzas == 3 && r.closes == 1);
    CHECK(strstr((const char *)r.log.data, "STANZA <stream:features" CTX_STREAM
                                           "><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                                           "</stream:features>\n") != NULL);
    CHECK(strstr((const char *)r.log.data, "STANZA <iq xmlns='jabber:client' type='get'/>\n") !=
          NULL);
    CHECK_STR(r.last, "<presence" CTX "/>");
    gw_buf_cleanup(&r.log);

    /* entity references stay as received; context values are escaped on the way in */
    rec_init(&r, false);
    CHECK(feed_one(&o, &r,
                   "<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='a&amp;b&apos;c'>"
                   "<message to='x&amp;y'>&lt;&#65;</message>") == 0);
    CHECK_STR(r.last, "<message xmlns='a&amp;b&apos;c' to='x&amp;y'>&lt;&#65;</message>");
    CHECK_STR(r.last_ns, "a&b'c");
    gw_buf_cleanup(&r.log);

    /* without inject_context the bytes are exactly as received */
    o.inject_context = false;
    rec_init(&r, false);
    CHECK(feed_one(&o, &r, STREAM_OPEN "<message to='a'><body>x</body></message>") == 0);
    CHECK_STR(r.last, "<message to='a'><body>x</body></message>");
    gw_buf_cleanup(&r.log);

    /* xmlns='' on the stream: nothing to carry for the default namespace */
    o.inject_context = true;
    rec_init(&r, false);
    CHECK(feed_one(&o, &r,
                   "<stream:stream xmlns='' xmlns:stream='http://etherx.jabber.org/streams'>"
                   "<a/>") == 0);
    CHECK_STR(r.last, "<a/>");
    gw_buf_cleanup(&r.log);

    /* a context prefix used only by a descendant (or an attribute) is still declared, and the
     * tree's offsets account for it */
    rec_init(&r, true);
    CHECK(feed_one(&o, &r,
                   STREAM_OPEN "<message to='a'><x><stream:y stream:z='1'/></x></message>") == 0);
    const char *want = "<message" CTX_STREAM " to='a'><x><stream:y stream:z='1'/></x></message>";
    CHECK_STR(r.last, want);
    char want_tree[512];
    size_t x_at = (size_t)(strstr(want, "<x>") - want);
    size_t y_at = (size_t)(strstr(want, "<stream:y") - want);
    snprintf(want_tree, sizeof(want_tree),
             "{jabber:client}message |to=a @0-%zu \"\"({jabber:client}x @%zu-%zu \"\"("
             "{http://etherx.jabber.org/streams}y http://etherx.jabber.org/streams|z=1 @%zu-%zu "
             "\"\"))\n",
             strlen(want), x_at, (size_t)(strstr(want, "</message>") - want), y_at,
             (size_t)(strstr(want, "</x>") - want));
    const char *t = strstr((const char *)r.log.data, " TREE ");
    CHECK(t != NULL);
    if (t)
        CHECK_STR(t + 6, want_tree);
    gw_buf_cleanup(&r.log);
    rec_init(&r, false);
    CHECK(feed_one(&o, &r, STREAM_OPEN "<message to='a' stream:z='1'/>") == 0);
    CHECK_STR(r.last, "<message" CTX_STREAM " to='a' stream:z='1'/>");
    gw_buf_cleanup(&r.log);
}

static const char split_stream[] =
    "\xef\xbb\xbf<?xml version='1.0' encoding='UTF-8'?>\r\n <stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' from='example.com' id='s1' version='1.0' "
    "xml:lang='en'>"
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    "<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features> \n\t "
    "<message from='a@b/c' to='d@e' type='chat' id='m&amp;1'><body>h\xc3\xa9llo &lt;world&gt; "
    "<![CDATA[<not a tag>]]>\r\nline2</body><x xmlns='jabber:x:oob'/><thread>t1</thread>"
    "</message>"
    "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>u@h/r</jid>"
    "</bind></iq>   <presence xml:lang='de'/><p:q xmlns:p='urn:x'><p:r p:a='1' b='2'>z</p:r></p:q>"
    "<stream:error><x xmlns='urn:ietf:params:xml:ns:xmpp-streams' a='&#x10000;\xf0\x9f\x98\x80'>"
    "\xf0\x9f\x98\x80&#65;&#x42;&quot;&apos;</x></stream:error>\r\r\n"
    "</stream:stream>";

static bool same_log(const struct rec *a, const struct rec *b)
{
    return a->log.len == b->log.len &&
           (a->log.len == 0 || memcmp(a->log.data, b->log.data, a->log.len) == 0);
}

static void test_every_split(void)
{
    struct gw_xml_opts o = stream_opts();
    size_t n = strlen(split_stream);
    for (int mode = 0; mode < 3; mode++) {
        bool trees = mode != 1;
        o.inject_context = mode != 2;
        struct rec ref;
        rec_init(&ref, trees);
        CHECK(feed_cuts(&o, &ref, split_stream, n, NULL, 0) == 0);
        CHECK(ref.opens == 1 && ref.stanzas == 6 && ref.closes == 1);
        CHECK(strstr((const char *)ref.log.data, "STANZA <iq type='result' id='b1'>") != NULL ||
              o.inject_context);
        unsigned bad = 0;
        for (size_t k = 1; k < n; k++) {
            struct rec r;
            rec_init(&r, trees);
            if (feed_cuts(&o, &r, split_stream, n, &k, 1) != 0 || !same_log(&r, &ref))
                bad++;
            gw_buf_cleanup(&r.log);
        }
        CHECK(bad == 0);
        /* byte by byte */
        size_t *cuts = malloc(sizeof(*cuts) * n);
        if (!cuts)
            abort();
        for (size_t k = 0; k + 1 < n; k++)
            cuts[k] = k + 1;
        struct rec r;
        rec_init(&r, trees);
        CHECK(feed_cuts(&o, &r, split_stream, n, cuts, (unsigned)(n - 1)) == 0);
        CHECK(same_log(&r, &ref));
        /* three chunks, a sample of cut pairs */
        bad = 0;
        for (size_t a = 1; a < n; a += 11)
            for (size_t b = a; b < n; b += 17) {
                size_t c2[2] = {a, b};
                struct rec r3;
                rec_init(&r3, trees);
                if (feed_cuts(&o, &r3, split_stream, n, c2, 2) != 0 || !same_log(&r3, &ref))
                    bad++;
                gw_buf_cleanup(&r3.log);
            }
        CHECK(bad == 0);
        free(cuts);
        gw_buf_cleanup(&r.log);
        gw_buf_cleanup(&ref.log);
    }
}

static void test_trees(void)
{
    struct gw_xml_opts o = stream_opts();
    struct rec r;
    /* The tree walk in log_tree already checks offsets; here, the values. */
    rec_init(&r, true);
    CHECK(feed_one(&o, &r,
                   STREAM_OPEN "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:"
                               "xmpp-bind'><jid>u@h/r</jid></bind></iq>") == 0);
    const char *want_bytes =
        "<iq" CTX " type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<jid>u@h/r</jid></bind></iq>";
    CHECK_STR(r.last, want_bytes);
    size_t jid_at = (size_t)(strstr(want_bytes, "<jid>") - want_bytes);
    size_t bind_at = (size_t)(strstr(want_bytes, "<bind") - want_bytes);
    char want_log[1024];
    snprintf(want_log, sizeof(want_log),
             "{jabber:client}iq |type=result |id=b1 @0-%zu \"\"({urn:ietf:params:xml:ns:xmpp-bind}"
             "bind @%zu-%zu \"\"({urn:ietf:params:xml:ns:xmpp-bind}jid @%zu-%zu \"u@h/r\"))\n",
             strlen(want_bytes), bind_at, strlen(want_bytes) - strlen("</iq>"), jid_at,
             jid_at + strlen("<jid>u@h/r</jid>"));
    const char *tree = strstr((const char *)r.log.data, " TREE ");
    CHECK(tree != NULL);
    if (tree)
        CHECK_STR(tree + 6, want_log);
    gw_buf_cleanup(&r.log);

    /* text around children is concatenated; prefixed attributes keep their namespace */
    rec_init(&r, true);
    CHECK(feed_one(&o, &r,
                   STREAM_OPEN
                   "<message xmlns:e='urn:e'>a<b>in</b>c&amp;<e:x e:k='v'/>d</message>") == 0);
    tree = strstr((const char *)r.log.data, " TREE ");
    CHECK(tree != NULL);
    if (tree)
        CHECK(strstr(tree, "{jabber:client}message @0-") == tree + 6 &&
              strstr(tree, "\"ac&d\"({jabber:client}b @") != NULL &&
              strstr(tree, "\"in\")({urn:e}x urn:e|k=v @") != NULL);
    gw_buf_cleanup(&r.log);
}

/* gw_xml_child / gw_xml_attr are used from a callback. */
static int child_ok;
static void check_children(void *ud, const struct gw_xml_stanza *st)
{
    const struct gw_xml_node *t = st->tree;
    const struct gw_xml_node *m = gw_xml_child(t, GW_NS_SASL, "mechanisms");
    const struct gw_xml_node *s = gw_xml_child(t, GW_NS_TLS, "starttls");
    const struct gw_xml_node *none = gw_xml_child(t, GW_NS_TLS, "mechanisms");
    const struct gw_xml_node *any = gw_xml_child(t, NULL, "mechanisms");
    const struct gw_xml_node *mech = gw_xml_child(m, GW_NS_SASL, "mechanism");
    static const char mech_bytes[] = "<mechanism>PLAIN</mechanism>";
    child_ok = m && s && !none && any == m && mech && mech->next;
    if (!child_ok)
        return;
    child_ok = strcmp(mech->text, "PLAIN") == 0 && strcmp(mech->next->text, "SCRAM-SHA-1") == 0 &&
               gw_xml_child(s, NULL, "required") != NULL &&
               mech->end - mech->start == strlen(mech_bytes) &&
               strncmp(st->bytes + mech->start, mech_bytes, strlen(mech_bytes)) == 0 &&
               gw_xml_attr(mech->attrs, mech->n_attrs, "x") == NULL;
}

static bool always(void *ud, const char *ns, const char *name)
{
    return true;
}

static void test_child_lookup(void)
{
    struct gw_xml_opts o = stream_opts();
    struct gw_xml_callbacks cb = {NULL, always, check_children, NULL};
    struct gw_xml_parser *p = gw_xml_new(&o, &cb, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    const char *s = STREAM_OPEN
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
        "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
        "<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>";
    child_ok = 0;
    CHECK(gw_xml_feed(p, s, strlen(s), NULL) == 0);
    CHECK(child_ok);
    gw_xml_free(p);

    struct gw_xml_attr a[] = {
        {"", "to", "x"}, {NS_XML, "lang", "en"}, {"urn:o", "to", "y"}, {NULL, NULL, NULL}};
    CHECK_STR(gw_xml_attr(a, 3, "to"), "x");
    CHECK_STR(gw_xml_attr(a, 3, "xml:lang"), "en");
    CHECK(gw_xml_attr(a, 3, "lang") == NULL);
    CHECK(gw_xml_attr(NULL, 0, "to") == NULL);
    CHECK(gw_xml_child(NULL, NULL, "x") == NULL);
}

static void test_bosh_body(void)
{
    struct gw_xml_opts o = doc_opts(false);
    struct rec r;
    rec_init(&r, true);
    struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
    CHECK(p != NULL);
    if (!p)
        return;
    const char *body = "<?xml version='1.0' encoding='utf-8'?>\r\n"
                       "<body xmlns='http://jabber.org/protocol/httpbind' rid='1' sid='x' "
                       "xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'>"
                       "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>"
                       "<presence xmlns='jabber:client'/></body>\n ";
    CHECK(gw_xml_parse_document(p, body, strlen(body)) == 0);
    CHECK(r.opens == 1 && r.stanzas == 2 && r.closes == 1);
    CHECK_STR(r.open_ns, GW_NS_HTTPBIND);
    CHECK_STR(r.open_name, "body");
    CHECK(strstr((const char *)r.log.data, " rid=1 sid=x version=1.0\n") != NULL);
    CHECK(strstr((const char *)r.log.data,
                 "STANZA <message xmlns='jabber:client' to='a@b'><body>hi</body></message> TREE "
                 "{jabber:client}message |to=a@b @0-") != NULL);
    CHECK_STR(r.last, "<presence xmlns='jabber:client'/>");

    /* the same parser again, an empty body */
    r.opens = r.stanzas = r.closes = 0;
    const char *empty = "<body rid='2' sid='x' xmlns='http://jabber.org/protocol/httpbind'/>";
    CHECK(gw_xml_parse_document(p, empty, strlen(empty)) == 0);
    CHECK(r.opens == 1 && r.stanzas == 0 && r.closes == 1);

    /* not one document */
    const char *bad[] = {"",       "   ",      "<body/><body/>", "<body/>x",
                         "<body>", "x<body/>", "<body/><",       "<?xml version='1.0'?>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(gw_xml_parse_document(p, bad[i], strlen(bad[i])) == GW_EPROTO);
        CHECK_STR(gw_xml_error_condition(p), "not-well-formed");
    }
    /* and usable after an error */
    CHECK(gw_xml_parse_document(p, empty, strlen(empty)) == 0);
    CHECK_STR(gw_xml_error_condition(p), "");
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);

    /* inject_context on a body gives the body's own declarations to stanzas that lack them */
    o.inject_context = true;
    rec_init(&r, false);
    p = gw_xml_new(&o, &cbs, &r);
    const char *b2 = "<body xmlns='http://jabber.org/protocol/httpbind'><iq xmlns='jabber:client'/>"
                     "<x/></body>";
    CHECK(p && gw_xml_parse_document(p, b2, strlen(b2)) == 0);
    CHECK(strstr((const char *)r.log.data, "STANZA <iq xmlns='jabber:client'/>\n") != NULL);
    CHECK_STR(r.last, "<x xmlns='http://jabber.org/protocol/httpbind'/>");
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);
}

static void test_ws_frames(void)
{
    struct gw_xml_opts o = doc_opts(true);
    struct rec r;
    rec_init(&r, true);
    struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
    CHECK(p != NULL);
    if (!p)
        return;
    const char *open = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' version='1.0'/>";
    CHECK(gw_xml_parse_document(p, open, strlen(open)) == 0);
    CHECK(r.opens == 0 && r.stanzas == 1 && r.closes == 0);
    CHECK_STR(r.last, open);
    CHECK_STR(r.last_ns, GW_NS_FRAMING);
    CHECK_STR(r.last_name, "open");
    CHECK(strstr((const char *)r.log.data, "|to=x |version=1.0 @0-") != NULL);

    const char *msg = "\n <message xmlns='jabber:client' to='x'><body>hi</body></message> \n";
    CHECK(gw_xml_parse_document(p, msg, strlen(msg)) == 0);
    CHECK(r.stanzas == 2);
    CHECK_STR(r.last, "<message xmlns='jabber:client' to='x'><body>hi</body></message>");
    CHECK(strstr((const char *)r.log.data, "({jabber:client}body @38-53 \"hi\")") != NULL);

    const char *close = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";
    CHECK(gw_xml_parse_document(p, close, strlen(close)) == 0);
    CHECK_STR(r.last_name, "close");

    const char *two = "<a xmlns='jabber:client'/><b xmlns='jabber:client'/>";
    unsigned before = r.stanzas;
    CHECK(gw_xml_parse_document(p, two, strlen(two)) == GW_EPROTO);
    CHECK_STR(gw_xml_error_condition(p), "not-well-formed");
    CHECK(r.stanzas == before + 1); /* the first was complete before the junk was seen */
    CHECK(strstr(gw_xml_error_text(p), "line 1") != NULL);
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);

    /* feed on a document parser and parse_document on a stream parser are refused */
    struct gw_xml_opts so = stream_opts();
    p = gw_xml_new(&so, &cbs, &r);
    CHECK(p && gw_xml_parse_document(p, open, strlen(open)) == GW_EINVAL);
    gw_xml_free(p);
    p = gw_xml_new(&o, &cbs, &r);
    CHECK(p && gw_xml_feed(p, open, strlen(open), NULL) == GW_EINVAL);
    gw_xml_free(p);
}

static void test_restricted(void)
{
    struct gw_xml_opts so = stream_opts(), d = doc_opts(false), w = doc_opts(true);
    const struct gw_xml_opts *modes[] = {&so, &d, &w};
    const char *docs[] = {
        "<!DOCTYPE body><body/>",
        "<!DOCTYPE body SYSTEM 'http://example.com/x.dtd'><body/>",
        "<?xml version='1.0'?><!DOCTYPE body [<!ENTITY a 'b'>]><body>&a;</body>",
        "<!DOCTYPE body [<!ENTITY % p SYSTEM 'x'> %p;]><body/>",
        "<!DOCTYPE body [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><body>&e;</body>",
        "<!DOCTYPE body [<!NOTATION n SYSTEM 'x'><!ENTITY u SYSTEM 'y' NDATA n>]><body/>",
        "<?xml-stylesheet href='x'?><body/>",
        "<body><?foo bar?></body>",
        "<!-- hi --><body/>",
        "<body><!-- hi --></body>",
        "<body><message><!----></message></body>",
        "<body><message>&foo;</message></body>",
    };
    for (size_t m = 0; m < 3; m++)
        for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
            check_error(modes[m], docs[i], GW_EPROTO, "restricted-xml");
    check_error(&so, STREAM_OPEN "<message/><?pi x?>", GW_EPROTO, "restricted-xml");
    check_error(&so, STREAM_OPEN "</stream:stream><!-- after -->", GW_EPROTO, "restricted-xml");

    /* billion laughs: refused at the DOCTYPE, long before any expansion */
    struct gw_buf b;
    gw_buf_init(&b, 1 << 20);
    CHECK(gw_buf_append_str(&b, "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>") == 0);
    for (int i = 1; i < 10; i++) {
        CHECK(gw_buf_printf(&b, "<!ENTITY lol%d '", i) == 0);
        for (int j = 0; j < 10; j++)
            CHECK(gw_buf_printf(&b, "&lol%.0d;", i - 1) == 0);
        CHECK(gw_buf_append_str(&b, "'>") == 0);
    }
    CHECK(gw_buf_append_str(&b, "]><lolz>&lol9;</lolz>") == 0);
    for (size_t m = 0; m < 3; m++)
        check_error(modes[m], gw_buf_ptr(&b), GW_EPROTO, "restricted-xml");
    gw_buf_cleanup(&b);
}

static void test_malformed(void)
{
    struct gw_xml_opts so = stream_opts(), d = doc_opts(false);
    const char *bad[] = {
        STREAM_OPEN "<message><body></message>",
        STREAM_OPEN "<message to='a' to='b'/>",
        STREAM_OPEN "<message>\xff</message>",
        STREAM_OPEN "<message>\xc0\xaf</message>",         /* overlong */
        STREAM_OPEN "<message>\xed\xa0\x80</message>",     /* surrogate */
        STREAM_OPEN "<message>\xf4\x90\x80\x80</message>", /* past U+10FFFF */
        STREAM_OPEN "<message>&#0;</message>",
        STREAM_OPEN "<foo:bar/>", /* unbound prefix */
        STREAM_OPEN "<message foo:to='x'/>",
        STREAM_OPEN "<message><?xml version='1.0'?></message>",
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a/></stream:stream><b/>",
        "junk and more",
        "<a xmlns:xmlns='x'/>",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        check_error(&so, bad[i], GW_EPROTO, "not-well-formed");
    check_error(&d, "<body>\xff</body>", GW_EPROTO, "not-well-formed");
    check_error(&d, "<body xmlns='x'><p:a/></body>", GW_EPROTO, "not-well-formed");
    check_error(&so, "<?xml version='1.0' encoding='ISO-8859-1'?><a>", GW_EPROTO,
                "unsupported-encoding");

    /* expat would take these for UTF-16 despite being told UTF-8 */
    static const struct {
        const char *s;
        size_t n;
    } utf16[] = {
        {"\xff\xfe<\0a\0/\0>\0", 10},
        {"\xfe\xff\0<\0a\0/\0>", 10},
        {"<\0a\0/\0>\0", 8},
        {"\0<\0a\0/\0>", 8},
        {" \0", 2},
        {"\xfe", 1},
    };
    for (size_t i = 0; i < sizeof(utf16) / sizeof(utf16[0]); i++) {
        const struct gw_xml_opts *modes[] = {&so, &d};
        for (size_t m = 0; m < 2; m++) {
            struct rec r;
            rec_init(&r, false);
            gw_xml_free(
                expect_error(modes[m], utf16[i].s, utf16[i].n, GW_EPROTO, "not-well-formed", &r));
            gw_buf_cleanup(&r.log);
        }
        /* and when the first byte comes alone */
        struct rec r;
        rec_init(&r, false);
        size_t one = 1;
        CHECK(feed_cuts(&so, &r, utf16[i].s, utf16[i].n, &one, 1) == GW_EPROTO);
        CHECK(r.opens == 0 && r.stanzas == 0);
        gw_buf_cleanup(&r.log);
    }

    /* the error text says where */
    struct rec r;
    rec_init(&r, false);
    const char *s = "<a>\n<b>\n</a>";
    struct gw_xml_parser *p = expect_error(&so, s, strlen(s), GW_EPROTO, "not-well-formed", &r);
    CHECK(strstr(gw_xml_error_text(p), "line 3") != NULL);
    /* after an error, feeding again keeps failing until a reset */
    CHECK(gw_xml_feed(p, "<c/>", 4, NULL) == GW_EPROTO);
    CHECK(gw_xml_reset(p) == 0);
    CHECK(gw_xml_feed(p, STREAM_OPEN, strlen(STREAM_OPEN), NULL) == 0);
    CHECK(r.opens == 2); /* <a> above, then the new stream */
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);

    /* BOM and CRLF are fine */
    rec_init(&r, false);
    CHECK(feed_one(&so, &r, "\xef\xbb\xbf" STREAM_OPEN "\r\n<a/>\r\n") == 0);
    CHECK(r.stanzas == 1);
    CHECK_STR(r.last, "<a" CTX "/>");
    gw_buf_cleanup(&r.log);
}

static void test_limits(void)
{
    struct gw_xml_opts o = stream_opts();
    o.limits.max_depth = 4;
    struct rec r;
    rec_init(&r, true);
    /* depth: stream 0, a 1, b 2, c 3, d 4 are fine; e at 5 is not */
    CHECK(feed_one(&o, &r, STREAM_OPEN "<a><b><c><d/></c></b></a>") == 0);
    gw_buf_cleanup(&r.log);
    check_error(&o, STREAM_OPEN "<a><b><c><d><e/></d></c></b></a>", GW_ELIMIT, "policy-violation");
    struct gw_xml_opts w = doc_opts(true);
    w.limits.max_depth = 2;
    check_error(&w, "<a><b><c/></b></a>", GW_OK, "");
    check_error(&w, "<a><b><c><d/></c></b></a>", GW_ELIMIT, "policy-violation");

    /* attributes, namespace declarations included */
    o = stream_opts();
    o.limits.max_attrs = 4;
    check_error(&o, "<s xmlns='jabber:client'><a a='1' b='2' c='3' d='4'/>", GW_OK, "");
    check_error(&o, "<s><a a='1' b='2' c='3' d='4' e='5'/>", GW_ELIMIT, "policy-violation");
    check_error(&o, "<s><a xmlns='x' xmlns:p='y' a='1' b='2' p:c='3'/>", GW_ELIMIT,
                "policy-violation");
    check_error(&o, "<s xmlns='1' xmlns:a='2' xmlns:b='3' xmlns:c='4' xmlns:d='5'>", GW_ELIMIT,
                "policy-violation");

    /* a 1 MiB stanza against 256 KiB, fed in 4 KiB chunks and in one piece */
    o = stream_opts();
    size_t big = (size_t)1 << 20;
    char *s = malloc(big + 256);
    if (!s)
        abort();
    size_t n = (size_t)snprintf(s, 256, "%s<message><body>", STREAM_OPEN);
    memset(s + n, 'x', big);
    n += big;
    memcpy(s + n, "</body></message>", 18);
    n += 17;
    for (int whole = 0; whole < 2; whole++) {
        rec_init(&r, whole);
        struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
        int rc = 0;
        size_t at = 0;
        size_t step = whole ? n : 4096;
        while (!rc && at < n) {
            size_t k = n - at < step ? n - at : step;
            rc = gw_xml_feed(p, s + at, k, NULL);
            at += k;
        }
        CHECK(rc == GW_ELIMIT);
        CHECK(whole || at <= 256 * 1024 + 8192); /* stopped on the way, not at the end */
        CHECK_STR(gw_xml_error_condition(p), "policy-violation");
        CHECK(r.stanzas == 0);
        gw_xml_free(p);
        gw_buf_cleanup(&r.log);
    }

    /* a start tag that never ends, and text between stanzas that never ends */
    const char *heads[] = {STREAM_OPEN "<message to='", STREAM_OPEN "<message ",
                           "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='",
                           STREAM_OPEN};
    for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
        for (int whole = 0; whole < 2; whole++) {
            n = (size_t)snprintf(s, 256, "%s", heads[h]);
            memset(s + n, h == 1 ? ' ' : 'y', big);
            n += big;
            rec_init(&r, false);
            struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
            int rc = 0;
            size_t at = 0;
            size_t step = whole ? n : 4096;
            while (!rc && at < n) {
                size_t k = n - at < step ? n - at : step;
                rc = gw_xml_feed(p, s + at, k, NULL);
                at += k;
            }
            CHECK(rc == GW_ELIMIT);
            CHECK(whole || at <= 256 * 1024 + 8192);
            CHECK_STR(gw_xml_error_condition(p), "policy-violation");
            gw_xml_free(p);
            gw_buf_cleanup(&r.log);
        }
    }

    /* exactly max_stanza is fine, one more byte is not */
    o.limits.max_stanza = 64;
    char stz[128];
    for (int extra = 0; extra < 2; extra++) {
        size_t z = 64 - 7 + (size_t)extra;
        memcpy(stz, "<s><m>", 6);
        memset(stz + 6, 'z', z);
        strcpy(stz + 6 + z, "</m>");
        rec_init(&r, true);
        if (extra == 0) {
            CHECK(feed_one(&o, &r, stz) == 0);
            CHECK(r.stanzas == 1);
        } else {
            check_error(&o, stz, GW_ELIMIT, "policy-violation");
        }
        gw_buf_cleanup(&r.log);
    }
    free(s);
}

static void test_pause(void)
{
    struct gw_xml_opts o = stream_opts();
    const char *hdr = "<stream:stream xmlns='jabber:client' "
                      "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
    char s[1024];
    snprintf(s, sizeof(s), "%s<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>GARBAGE<message/>",
             hdr);
    size_t g = (size_t)(strstr(s, "GARBAGE") - s);
    /* pause with everything in one chunk, and with the header in an earlier chunk */
    for (int split = 0; split < 3; split++) {
        struct rec r;
        rec_init(&r, false);
        r.pause_at = "proceed";
        struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
        r.p = p;
        size_t first = split == 0 ? 0 : split == 1 ? strlen(hdr) : g - 3;
        size_t used = 99;
        if (first) {
            CHECK(gw_xml_feed(p, s, first, &used) == 0);
            CHECK(used == first);
        }
        CHECK(gw_xml_feed(p, s + first, strlen(s) - first, &used) == 0);
        CHECK(used == g - first);
        CHECK(s[first + used] == 'G');
        CHECK(r.stanzas == 1);
        CHECK_STR(r.last_name, "proceed");
        /* paused: the rest must go elsewhere, or to a reset parser */
        CHECK(gw_xml_feed(p, "<a/>", 4, &used) == GW_EINVAL);
        CHECK(gw_xml_reset(p) == 0);
        r.pause_at = NULL;
        CHECK(gw_xml_feed(p, hdr, strlen(hdr), &used) == 0 && used == strlen(hdr));
        CHECK(gw_xml_feed(p, "<message to='n'/>", 17, &used) == 0);
        CHECK(r.opens == 2 && r.stanzas == 2);
        CHECK_STR(r.last, "<message" CTX " to='n'/>");
        gw_xml_free(p);
        gw_buf_cleanup(&r.log);
    }

    /* what follows the pause point in the same chunk is not delivered */
    struct rec r;
    rec_init(&r, true);
    r.pause_at = "success";
    struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
    r.p = p;
    snprintf(s, sizeof(s),
             "%s<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>dj0x</success><message>"
             "<body>b</body></message></stream:stream>",
             hdr);
    size_t used;
    CHECK(gw_xml_feed(p, s, strlen(s), &used) == 0);
    CHECK(strncmp(s + used, "<message>", 9) == 0);
    CHECK(r.stanzas == 1 && r.closes == 0);
    /* a new stream on the same parser after reset (as after SASL success) */
    CHECK(gw_xml_reset(p) == 0);
    r.pause_at = NULL;
    CHECK(gw_xml_feed(p, hdr, strlen(hdr), &used) == 0);
    CHECK(gw_xml_feed(p, "<iq type='result' id='1'/></stream:stream>", 42, &used) == 0);
    CHECK(r.opens == 2 && r.stanzas == 2 && r.closes == 1);
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);

    /* pausing in a document stops the rest of the body */
    struct gw_xml_opts d = doc_opts(false);
    rec_init(&r, false);
    r.pause_at = "a";
    p = gw_xml_new(&d, &cbs, &r);
    r.p = p;
    const char *body = "<body xmlns='http://jabber.org/protocol/httpbind'><a/><b/></body>";
    CHECK(gw_xml_parse_document(p, body, strlen(body)) == 0);
    CHECK(r.stanzas == 1 && r.closes == 0);
    r.pause_at = NULL;
    CHECK(gw_xml_parse_document(p, body, strlen(body)) == 0);
    CHECK(r.stanzas == 3 && r.closes == 1);
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);
}

static void test_many_stanzas(void)
{
    /* Many small stanzas in one big chunk: each fits, so the chunk's size does not matter. */
    struct gw_xml_opts o = stream_opts();
    o.limits.max_stanza = 1024;
    struct gw_buf b;
    gw_buf_init(&b, 4 << 20);
    CHECK(gw_buf_append_str(&b, STREAM_OPEN) == 0);
    for (int i = 0; i < 20000; i++)
        CHECK(gw_buf_printf(&b, "<message id='%d'><body>hello %d</body></message> ", i, i) == 0);
    struct rec r;
    rec_init(&r, true);
    CHECK(feed_cuts(&o, &r, gw_buf_ptr(&b), gw_buf_size(&b), NULL, 0) == 0);
    CHECK(r.stanzas == 20000);
    CHECK_STR(r.last, "<message" CTX " id='19999'><body>hello 19999</body></message>");
    gw_buf_cleanup(&r.log);
    /* and in odd-sized chunks */
    size_t cuts[4096] = {0};
    unsigned nc = 0;
    for (size_t at = 977; at < gw_buf_size(&b) && nc < 4096; at += 977)
        cuts[nc++] = at;
    struct rec r2;
    rec_init(&r2, true);
    rec_init(&r, true);
    CHECK(feed_cuts(&o, &r, gw_buf_ptr(&b), cuts[nc - 1] + 1, NULL, 0) == 0);
    CHECK(feed_cuts(&o, &r2, gw_buf_ptr(&b), cuts[nc - 1] + 1, cuts, nc) == 0);
    CHECK(same_log(&r, &r2));
    gw_buf_cleanup(&r.log);
    gw_buf_cleanup(&r2.log);
    gw_buf_cleanup(&b);
}

/* Trees larger than one arena block, text larger than the idle size, and the tree bound. */
static void check_roster(void *ud, const struct gw_xml_stanza *st)
{
    unsigned *count = ud;
    const struct gw_xml_node *q = gw_xml_child(st->tree, "jabber:iq:roster", "query");
    *count = 0;
    for (const struct gw_xml_node *c = q ? q->children : NULL; c; c = c->next) {
        char want[32];
        snprintf(want, sizeof(want), "u%u@example.com", *count);
        const char *jid = gw_xml_attr(c->attrs, c->n_attrs, "jid");
        const struct gw_xml_node *g = gw_xml_child(c, NULL, "group");
        if (!jid || strcmp(jid, want) != 0 || !g || strcmp(g->text, "Friends") != 0 ||
            strncmp(st->bytes + c->start, "<item jid='", 11) != 0 ||
            strncmp(st->bytes + c->end - 7, "</item>", 7) != 0)
            return;
        (*count)++;
    }
}

static void test_big_trees(void)
{
    struct gw_xml_opts o = stream_opts();
    struct gw_buf b;
    gw_buf_init(&b, 1 << 20);
    CHECK(gw_buf_append_str(&b, STREAM_OPEN "<iq type='result'><query xmlns='jabber:iq:roster'>") ==
          0);
    for (unsigned i = 0; i < 2000; i++)
        CHECK(gw_buf_printf(&b,
                            "<item jid='u%u@example.com' name='User %u' subscription='both'>"
                            "<group>Friends</group></item>",
                            i, i) == 0);
    CHECK(gw_buf_append_str(&b, "</query></iq>") == 0);
    unsigned count = 0;
    struct gw_xml_callbacks cb = {NULL, always, check_roster, NULL};
    struct gw_xml_parser *p = gw_xml_new(&o, &cb, &count);
    CHECK(p && gw_xml_feed(p, gw_buf_ptr(&b), gw_buf_size(&b), NULL) == 0);
    CHECK(count == 2000);
    /* the same again in 1000-byte chunks on the same parser after a reset */
    count = 0;
    CHECK(gw_xml_reset(p) == 0);
    int rc = 0;
    for (size_t at = 0; at < gw_buf_size(&b) && !rc; at += 1000) {
        size_t k = gw_buf_size(&b) - at < 1000 ? gw_buf_size(&b) - at : 1000;
        rc = gw_xml_feed(p, gw_buf_ptr(&b) + at, k, NULL);
    }
    CHECK(rc == 0 && count == 2000);
    gw_xml_free(p);

    /* 40 KiB of text in one element */
    gw_buf_reset(&b);
    CHECK(gw_buf_append_str(&b, STREAM_OPEN "<message><body>") == 0);
    for (int i = 0; i < 4096; i++)
        CHECK(gw_buf_append_str(&b, "0123456789") == 0);
    CHECK(gw_buf_append_str(&b, "</body></message><presence/>") == 0);
    struct rec r;
    rec_init(&r, true);
    CHECK(feed_cuts(&o, &r, gw_buf_ptr(&b), gw_buf_size(&b), NULL, 0) == 0);
    CHECK(r.stanzas == 2);
    CHECK(strstr((const char *)r.log.data, "789</body></message> TREE") != NULL);
    gw_buf_cleanup(&r.log);

    /* many tiny elements: fine as bytes, too much as a tree */
    o.limits.max_stanza = 4096;
    gw_buf_reset(&b);
    CHECK(gw_buf_append_str(&b, "<s><m>") == 0);
    for (int i = 0; i < 1000; i++)
        CHECK(gw_buf_append_str(&b, "<b/>") == 0);
    CHECK(gw_buf_append_str(&b, "</m>") == 0);
    rec_init(&r, false);
    CHECK(feed_cuts(&o, &r, gw_buf_ptr(&b), gw_buf_size(&b), NULL, 0) == 0);
    CHECK(r.stanzas == 1);
    gw_buf_cleanup(&r.log);
    rec_init(&r, true);
    gw_xml_free(
        expect_error(&o, gw_buf_ptr(&b), gw_buf_size(&b), GW_ELIMIT, "policy-violation", &r));
    CHECK(r.stanzas == 0);
    gw_buf_cleanup(&r.log);
    gw_buf_cleanup(&b);
}

/* Single tokens that grow without end outside any stanza: whitespace inside markup. */
static void test_long_tokens(void)
{
    struct gw_xml_opts o = stream_opts();
    o.limits.max_stanza = 1024;
    const char *pre[] = {"<?xml", STREAM_OPEN "</stream:stream", STREAM_OPEN "<a", STREAM_OPEN,
                         "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"};
    const char *post[] = {" version='1.0'?><s>", ">", "/>", "<a/>", ">"};
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
        struct gw_buf b;
        gw_buf_init(&b, 1 << 20);
        CHECK(gw_buf_append_str(&b, pre[i]) == 0);
        for (int k = 0; k < 2000; k++)
            CHECK(gw_buf_append_str(&b, " ") == 0);
        CHECK(gw_buf_append_str(&b, post[i]) == 0);
        for (int chunked = 0; chunked < 2; chunked++) {
            struct rec r;
            rec_init(&r, false);
            struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
            int rc = 0;
            size_t step = chunked ? 100 : gw_buf_size(&b);
            for (size_t at = 0; at < gw_buf_size(&b) && !rc; at += step) {
                size_t k = gw_buf_size(&b) - at < step ? gw_buf_size(&b) - at : step;
                rc = gw_xml_feed(p, gw_buf_ptr(&b) + at, k, NULL);
            }
            CHECK(rc == GW_ELIMIT);
            CHECK_STR(gw_xml_error_condition(p), "policy-violation");
            if (rc != GW_ELIMIT)
                fprintf(stderr, "  case %zu chunked %d: %d\n", i, chunked, rc);
            gw_xml_free(p);
            gw_buf_cleanup(&r.log);
        }
        gw_buf_cleanup(&b);
    }
}

static void feed_str(struct gw_xml_parser *p, const char *s)
{
    int rc = gw_xml_feed(p, s, strlen(s), NULL);
    CHECK_QUIET(rc == 0);
    if (rc)
        fprintf(stderr, "  %s: %s\n", gw_xml_error_condition(p), gw_xml_error_text(p));
}

/* A token split over many chunks is not rescanned for each (that would be quadratic), yet the
 * chunk that completes a stanza delivers it at once, however small. */
static void test_no_holdback(void)
{
    struct gw_xml_opts o = stream_opts();
    struct rec r;
    rec_init(&r, true);
    struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
    if (!p)
        abort();
    feed_str(p, STREAM_OPEN);
    feed_str(p, "<message to='a' x='");
    for (int i = 0; i < 64; i++)
        feed_str(p, "a>b\"c[ -->?>]]> "); /* all inside the quoted value */
    CHECK(r.stanzas == 0);
    feed_str(p, "'/");
    CHECK(r.stanzas == 0);
    feed_str(p, ">");
    CHECK(r.stanzas == 1);
    feed_str(p, "<iq><![CDATA[it's a \"quote\" ] ]] > ]]");
    for (int i = 0; i < 64; i++)
        feed_str(p, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    feed_str(p, "]]></iq");
    CHECK(r.stanzas == 1);
    feed_str(p, ">");
    CHECK(r.stanzas == 2);
    CHECK(strstr((const char *)r.log.data, "\"it's a \"quote\" ] ]] > ]]xxxxxxxx") != NULL);
    feed_str(p, "<presence");
    for (int i = 0; i < 64; i++)
        feed_str(p, "                                ");
    feed_str(p, "/");
    feed_str(p, ">");
    CHECK(r.stanzas == 3);
    feed_str(p, "</stream:stream");
    for (int i = 0; i < 64; i++)
        feed_str(p, "                                ");
    CHECK(r.closes == 0);
    feed_str(p, ">");
    CHECK(r.closes == 1);
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);

    /* 200 KiB of one start tag, a byte at a time (correctness only: how long it takes depends on
     * expat's reparse deferral, which is a matter for bench/, not a unit test) */
    rec_init(&r, false);
    p = gw_xml_new(&o, &cbs, &r);
    if (!p)
        abort();
    feed_str(p, STREAM_OPEN "<message a='");
    int rc = 0;
    for (int i = 0; i < 200 * 1024 && !rc; i++)
        rc = gw_xml_feed(p, i % 7 ? "x" : ">", 1, NULL);
    CHECK(rc == 0);
    feed_str(p, "'/>");
    CHECK(r.stanzas == 1);
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);
}

/* release_idle: expat goes between stanzas and comes back with the root's name and namespaces. */
static void test_release_idle(void)
{
    struct gw_xml_opts o = stream_opts();
    o.release_idle = true;
    struct rec r;
    rec_init(&r, true);
    struct gw_xml_parser *p = gw_xml_new(&o, &cbs, &r);
    if (!p)
        abort();
    r.p = p;
    const char *open = "<?xml version='1.0'?><s:stream xmlns:s='http://etherx.jabber.org/streams' "
                       "xmlns='jabber:client' xmlns:x='urn:x&amp;y' to='example.com'>";
    CHECK(gw_xml_feed(p, open, strlen(open), NULL) == 0);
    CHECK(r.opens == 1 && gw_xml_released(p));
    const char *m1 = "<message><body>one</body></message>";
    CHECK(gw_xml_feed(p, m1, strlen(m1), NULL) == 0);
    CHECK(r.stanzas == 1 && gw_xml_released(p));
    CHECK_STR(r.last, "<message xmlns='jabber:client'><body>one</body></message>");
    /* a stanza over two reads: kept while it is open, released after */
    CHECK(gw_xml_feed(p, " <x:a><x:b ", 11, NULL) == 0);
    CHECK(!gw_xml_released(p));
    CHECK(gw_xml_feed(p, "c='1'/></x:a>", 13, NULL) == 0);
    CHECK(r.stanzas == 2 && gw_xml_released(p));
    CHECK_STR(r.last, "<x:a xmlns='jabber:client' xmlns:x='urn:x&amp;y'><x:b c='1'/></x:a>");
    /* whitespace keeps nothing either; the rebuilt parser still knows the root's name */
    CHECK(gw_xml_feed(p, "\n", 1, NULL) == 0);
    CHECK(gw_xml_released(p));
    /* a CDATA section between stanzas over two reads: expat is inside it, so it is kept ("&x;" in
     * it is text, not an undefined entity, as it would be to a parser rebuilt in the middle) */
    CHECK(gw_xml_feed(p, "<![CDATA[a", 10, NULL) == 0);
    CHECK(!gw_xml_released(p));
    CHECK(gw_xml_feed(p, "&x;]]>", 6, NULL) == 0);
    CHECK(gw_xml_released(p) && !*gw_xml_error_condition(p));
    CHECK(gw_xml_feed(p, "</s:stream>", 11, NULL) == 0);
    CHECK(r.closes == 1);
    gw_xml_free(p);
    gw_buf_cleanup(&r.log);

    /* errors are still errors after a rebuild: a wrong end tag, an undeclared prefix */
    const char *bad[] = {"</stream>", "<y:m/>", "<message><b></message>"};
    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rec_init(&r, false);
        p = gw_xml_new(&o, &cbs, &r);
        if (!p)
            abort();
        r.p = p;
        CHECK(gw_xml_feed(p, open, strlen(open), NULL) == 0);
        CHECK(gw_xml_released(p));
        CHECK(gw_xml_feed(p, bad[i], strlen(bad[i]), NULL) == GW_EPROTO);
        CHECK_STR(gw_xml_error_condition(p), "not-well-formed");
        CHECK(r.closes == 0);
        /* a reset after the error starts a new stream from scratch */
        CHECK(gw_xml_reset(p) == 0);
        CHECK(gw_xml_feed(p, STREAM_OPEN "<iq/>", strlen(STREAM_OPEN "<iq/>"), NULL) == 0);
        CHECK(r.opens == 2 && r.stanzas == 1 && gw_xml_released(p));
        gw_xml_free(p);
        gw_buf_cleanup(&r.log);
    }
}

int main(void)
{
    for (int round = 0; round < 2; round++) {
        release_idle = round == 1;
        test_stream_header();
        test_injection();
        test_every_split();
        test_trees();
        test_restricted();
        test_malformed();
        test_limits();
        test_pause();
        test_many_stanzas();
        test_big_trees();
        test_long_tokens();
    }
    release_idle = false;
    test_no_holdback(); /* its large inputs take long: once */
    test_release_idle();
    test_child_lookup();
    test_bosh_body();
    test_ws_frames();
    return CHECK_SUMMARY();
}
