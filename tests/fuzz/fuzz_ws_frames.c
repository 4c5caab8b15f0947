/* libFuzzer target for gateway/web/ws_proto.c: the input is a sequence of WebSocket messages of
 * one connection, cut at the bytes 0xFF ("next message") and 0xFE ("the gateway answers the
 * pending <open/>, then the next message"); neither byte occurs in UTF-8, so every message is
 * still any text. Each message goes through gw_ws_parse() with the connection's state, and the
 * answers are checked against a model of the stream:
 * - after an error or <close/> nothing else is accepted;
 * - at most one <open/> is accepted before its answer; the first is GW_WS_OPEN, later ones
 *   GW_WS_RESTART, and a stanza comes only after an accepted <open/>;
 * - every stanza accepted is its own well-formed document (re-parsed alone), bytes as received,
 *   with a root in neither the stream nor the framing namespace;
 * - an error's condition is always a stream condition, with a text; whitespace changes nothing;
 * - the frames the gateway would write (<open/> answer, <stream:error/>, <close/>) parse.
 * Calls: web/ws_proto, xml, core. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/cond.h"
#include "web/ws_proto.h"
#include "xml/xml.h"

#define MSG_MAX 256 /* messages per input */

static const struct gw_xml_limits limits = {.max_stanza = 4096, .max_depth = 16, .max_attrs = 16};

static struct gw_ws_parser *proto;
static struct gw_xml_parser *alone; /* re-parses what ws_proto accepted or built */

struct alone_result {
    unsigned roots;
    char ns[256];
    char name[64];
};
static struct alone_result got;

static void alone_stanza(void *ud, const struct gw_xml_stanza *st)
{
    got.roots++;
    snprintf(got.ns, sizeof(got.ns), "%s", st->ns);
    snprintf(got.name, sizeof(got.name), "%s", st->name);
}

/* bytes parse alone as one element; its namespace and name are in got. */
static void parse_alone(const char *what, const char *bytes, size_t len)
{
    memset(&got, 0, sizeof(got));
    int rc = gw_xml_parse_document(alone, bytes, len);
    if (rc != 0 || got.roots != 1) {
        fprintf(stderr, "%s does not parse alone (%d %s: %s):\n%.*s\n", what, rc,
                gw_xml_error_condition(alone), gw_xml_error_text(alone), (int)len, bytes);
        abort();
    }
}

static void setup(void)
{
    proto = gw_ws_parser_new(&limits);
    struct gw_xml_opts o = {.mode = GW_XML_DOCUMENT,
                            .limits = {.max_stanza = 1 << 20, .max_depth = 64, .max_attrs = 64},
                            .root_is_stanza = true};
    static const struct gw_xml_callbacks cb = {.on_stanza = alone_stanza};
    alone = gw_xml_new(&o, &cb, NULL);
    if (!proto || !alone)
        abort();
}

static bool only_whitespace(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* What the connection has been through, kept apart from ws_proto's own state. */
struct model {
    bool ended;    /* an error or <close/> was returned */
    bool accepted; /* an <open/> was accepted */
    bool pending;  /* ... and not answered yet */
    bool answered; /* an <open/> answer went out */
    char domain[GW_HOST_MAX + 1];
};

static void check_frames(const struct gw_ws_state *st, const struct gw_ws_msg *m)
{
    struct gw_buf b;
    gw_buf_init(&b, 1 << 16);
    if (gw_ws_build_open(&b, gw_ws_state_from(st), "id&<'\"", m->lang) != 0)
        abort();
    parse_alone("<open/> answer", gw_buf_ptr(&b), gw_buf_size(&b));
    if (strcmp(got.ns, "urn:ietf:params:xml:ns:xmpp-framing") || strcmp(got.name, "open"))
        abort();
    if (m->kind == GW_WS_ERROR) {
        gw_buf_reset(&b);
        if (gw_ws_build_error(&b, m->cond, m->text) != 0)
            abort();
        parse_alone("<stream:error/>", gw_buf_ptr(&b), gw_buf_size(&b));
        if (strcmp(got.ns, "http://etherx.jabber.org/streams") || strcmp(got.name, "error"))
            abort();
        if (!strstr(gw_buf_ptr(&b), gw_condition_name(m->cond)))
            abort();
    }
    gw_buf_cleanup(&b);
}

static void check_open(struct model *md, const struct gw_ws_state *st, const struct gw_ws_msg *m)
{
    if (md->pending)
        abort(); /* a second <open/> before the first was answered */
    if (m->kind == GW_WS_OPEN) {
        if (md->accepted || !m->to[0] || strlen(m->to) > GW_HOST_MAX || strcmp(st->domain, m->to))
            abort();
        memcpy(md->domain, m->to, sizeof(md->domain));
    } else if (!md->answered || strcmp(st->domain, md->domain) != 0) {
        abort(); /* a restart before any answer, or one that moved the domain */
    }
    if (strlen(m->lang) > GW_WS_LANG_MAX || !st->awaiting_ready)
        abort();
    md->accepted = md->pending = true;
}

static void check_stanza(const struct model *md, const char *msg, size_t n,
                         const struct gw_ws_msg *m)
{
    if (!md->accepted || !m->bytes || m->len == 0 || m->len > n)
        abort();
    /* The stanza's bytes are the message's own (no namespace added, nothing rewritten). */
    if (!memmem(msg, n, m->bytes, m->len))
        abort();
    parse_alone("stanza", m->bytes, m->len);
    if (!strcmp(got.ns, "http://etherx.jabber.org/streams") ||
        !strcmp(got.ns, "urn:ietf:params:xml:ns:xmpp-framing"))
        abort();
}

static void one_message(struct model *md, struct gw_ws_state *st, const char *msg, size_t n)
{
    struct gw_ws_state before = *st;
    struct gw_ws_msg m;
    enum gw_ws_kind k = gw_ws_parse(proto, st, msg, n, &m);
    if (k != m.kind || (k != GW_WS_ERROR && m.cond != GW_COND_NONE))
        abort();
    if (md->ended || only_whitespace(msg, n)) {
        if (k != GW_WS_IGNORE || memcmp(&before, st, sizeof(*st)) != 0)
            abort();
        return;
    }
    switch (k) {
    case GW_WS_IGNORE:
        abort(); /* only whitespace and messages after the end are ignored */
    case GW_WS_OPEN:
    case GW_WS_RESTART:
        check_open(md, st, &m);
        break;
    case GW_WS_STANZA:
        check_stanza(md, msg, n, &m);
        break;
    case GW_WS_CLOSE:
    case GW_WS_ERROR:
        if (k == GW_WS_ERROR && (!gw_condition_is_stream(m.cond) || !m.text || !*m.text))
            abort();
        md->ended = true;
        break;
    }
    if (st->closing != md->ended)
        abort();
    check_frames(st, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!proto)
        setup();
    struct gw_ws_state st = {0};
    struct model md = {0};
    const char *in = (const char *)data;
    size_t at = 0;
    for (unsigned i = 0; i < MSG_MAX; i++) {
        size_t cut = at;
        while (cut < size && data[cut] != 0xFF && data[cut] != 0xFE)
            cut++;
        one_message(&md, &st, in + at, cut - at);
        if (cut < size && data[cut] == 0xFE && md.pending && !md.ended) {
            gw_ws_state_ready(&st);
            md.pending = false;
            md.answered = true;
        }
        if (cut >= size)
            break;
        at = cut + 1;
    }
    return 0;
}
