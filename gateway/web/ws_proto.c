/* RFC 7395 rules without sockets: one client message read with the document-mode parser into
 * what it is, the order rules of a connection's stream, and the frames the gateway writes.
 * Calls: xml, core (buffers, the condition table). */
#include "web/ws_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What the root element of a message was. */
enum root {
    ROOT_NONE,
    ROOT_OPEN,
    ROOT_CLOSE,
    ROOT_FRAMING_OTHER, /* another element of the framing namespace */
    ROOT_STREAM_NS,     /* an element of the stream namespace (features, error, ...) */
    ROOT_STANZA,
};

struct gw_ws_parser {
    struct gw_xml_parser *xml;
    struct gw_ws_msg *msg; /* the message being read */
    enum root root;
    bool to_given;    /* <open/> has a 'to' attribute */
    bool to_too_long; /* ... longer than any domain (msg->to is then "") */
    bool version_ok;  /* <open/> has version='1.0' */
};

static bool want_tree(void *ud, const char *ns, const char *name)
{
    return strcmp(ns, GW_NS_FRAMING) == 0;
}

/* RFC 6120 4.7.5: a client offering a higher version than 1.0 is answered 1.0 and goes on (it may
 * close if it cannot live with 1.0); a lower, missing or malformed one is unsupported-version. */
static bool version_ok(const char *v)
{
    if (!v || *v < '0' || *v > '9')
        return false;
    unsigned long major = strtoul(v, (char **)&v, 10);
    if (*v++ != '.' || *v < '0' || *v > '9')
        return false;
    while (*v >= '0' && *v <= '9')
        v++;
    return *v == '\0' && major >= 1;
}

static void read_open(struct gw_ws_parser *p, const struct gw_xml_node *open)
{
    const struct gw_xml_attr *attrs = open ? open->attrs : NULL;
    unsigned n = open ? open->n_attrs : 0;
    const char *to = gw_xml_attr(attrs, n, "to");
    const char *version = gw_xml_attr(attrs, n, "version");
    const char *lang = gw_xml_attr(attrs, n, "xml:lang");
    p->to_given = to != NULL;
    p->to_too_long = to && strlen(to) > GW_HOST_MAX;
    if (to && !p->to_too_long)
        memcpy(p->msg->to, to, strlen(to) + 1);
    p->version_ok = version_ok(version);
    /* Kept to as many bytes as the upstream header keeps, cut before a character, never inside
     * one (the value is UTF-8: expat checked it). */
    size_t n_lang = lang ? strlen(lang) : 0;
    if (n_lang > GW_WS_LANG_MAX) {
        n_lang = GW_WS_LANG_MAX;
        while (n_lang > 0 && ((unsigned char)lang[n_lang] & 0xC0) == 0x80)
            n_lang--;
    }
    memcpy(p->msg->lang, lang ? lang : "", n_lang);
    p->msg->lang[n_lang] = '\0';
}

/* Only notes what the root is: the rules apply once the whole message has parsed, so that a
 * stanza followed by junk is an error and never half a message. */
static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_ws_parser *p = ud;
    if (strcmp(st->ns, GW_NS_FRAMING) == 0) {
        if (strcmp(st->name, "open") == 0) {
            p->root = ROOT_OPEN;
            read_open(p, st->tree);
        } else {
            p->root = strcmp(st->name, "close") == 0 ? ROOT_CLOSE : ROOT_FRAMING_OTHER;
        }
    } else if (strcmp(st->ns, GW_NS_STREAM) == 0) {
        p->root = ROOT_STREAM_NS;
    } else {
        p->root = ROOT_STANZA;
        p->msg->bytes = st->bytes;
        p->msg->len = st->len;
    }
}

static const struct gw_xml_callbacks xml_cb = {
    .want_tree = want_tree,
    .on_stanza = on_stanza,
};

struct gw_ws_parser *gw_ws_parser_new(const struct gw_xml_limits *limits)
{
    struct gw_ws_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    struct gw_xml_opts xo = {.mode = GW_XML_DOCUMENT, .limits = *limits, .root_is_stanza = true};
    p->xml = gw_xml_new(&xo, &xml_cb, p);
    if (!p->xml) {
        free(p);
        return NULL;
    }
    return p;
}

void gw_ws_parser_free(struct gw_ws_parser *p)
{
    if (!p)
        return;
    gw_xml_free(p->xml);
    free(p);
}

/* ---- the rules ---- */

static enum gw_ws_kind fail(struct gw_ws_state *st, struct gw_ws_msg *msg, enum gw_condition cond,
                            const char *text)
{
    st->closing = true;
    msg->kind = GW_WS_ERROR;
    msg->cond = cond;
    msg->text = text;
    msg->bytes = NULL;
    msg->len = 0;
    return msg->kind;
}

static enum gw_ws_kind take(struct gw_ws_msg *msg, enum gw_ws_kind kind)
{
    msg->kind = kind;
    return kind;
}

static enum gw_ws_kind apply_open(const struct gw_ws_parser *p, struct gw_ws_state *st,
                                  struct gw_ws_msg *msg)
{
    if (st->awaiting_ready)
        return fail(st, msg, GW_COND_bad_format, "<open/> before the previous one was answered");
    if (st->opened) {
        /* A restart (RFC 6120 4.3.3): for the same domain; no 'to' means the same one. */
        if (p->to_given && (p->to_too_long || strcasecmp(msg->to, st->domain) != 0))
            return fail(st, msg, GW_COND_bad_format, "a restart may not change the domain");
        st->awaiting_ready = true;
        return take(msg, GW_WS_RESTART);
    }
    /* The first <open/>: its 'to' names the stream even when it is refused (the answer before
     * the stream error says it). */
    memcpy(st->domain, msg->to, strlen(msg->to) + 1);
    bool has_to = p->to_given && (msg->to[0] || p->to_too_long);
    if (!has_to)
        return fail(st, msg, GW_COND_host_unknown, "<open/> has no 'to'");
    if (!p->version_ok)
        return fail(st, msg, GW_COND_unsupported_version, "version must be 1.0 or higher");
    if (p->to_too_long)
        return fail(st, msg, GW_COND_host_unknown, "this gateway does not serve that domain");
    st->awaiting_ready = true;
    return take(msg, GW_WS_OPEN);
}

static enum gw_ws_kind apply_rules(const struct gw_ws_parser *p, struct gw_ws_state *st,
                                   struct gw_ws_msg *msg)
{
    switch (p->root) {
    case ROOT_OPEN:
        return apply_open(p, st, msg);
    case ROOT_CLOSE:
        st->closing = true;
        return take(msg, GW_WS_CLOSE);
    case ROOT_FRAMING_OTHER:
        return fail(st, msg, GW_COND_unsupported_stanza_type, "unknown framing element");
    case ROOT_STREAM_NS:
        return fail(st, msg, GW_COND_unsupported_stanza_type,
                    "stream elements are not sent as frames");
    case ROOT_STANZA:
        if (!st->opened && !st->awaiting_ready)
            return fail(st, msg, GW_COND_bad_format, "the first frame must be <open/>");
        return take(msg, GW_WS_STANZA);
    case ROOT_NONE:
    default:
        return fail(st, msg, GW_COND_not_well_formed, "no element");
    }
}

/* The parser's error as a stream condition. */
static enum gw_ws_kind parse_failed(struct gw_ws_parser *p, struct gw_ws_state *st,
                                    struct gw_ws_msg *msg, int rc)
{
    enum gw_condition cond = rc == GW_ELIMIT
                                 ? GW_COND_policy_violation
                                 : gw_condition_from_name(gw_xml_error_condition(p->xml));
    if (!gw_condition_is_stream(cond))
        cond = GW_COND_internal_server_error;
    const char *text = gw_xml_error_text(p->xml);
    return fail(st, msg, cond, text && *text ? text : gw_strerror(rc));
}

static bool only_whitespace(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

enum gw_ws_kind gw_ws_parse(struct gw_ws_parser *p, struct gw_ws_state *st, const char *data,
                            size_t len, struct gw_ws_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    msg->kind = GW_WS_IGNORE;
    msg->cond = GW_COND_NONE;
    /* Whitespace keepalives are not part of RFC 7395 but are harmless. */
    if (st->closing || only_whitespace(data, len))
        return msg->kind;
    p->msg = msg;
    p->root = ROOT_NONE;
    p->to_given = p->to_too_long = p->version_ok = false;
    int rc = gw_xml_parse_document(p->xml, data, len);
    p->msg = NULL;
    if (rc)
        return parse_failed(p, st, msg, rc);
    return apply_rules(p, st, msg);
}

void gw_ws_state_ready(struct gw_ws_state *st)
{
    st->opened = true;
    st->awaiting_ready = false;
}

void gw_ws_state_closing(struct gw_ws_state *st)
{
    st->closing = true;
}

const char *gw_ws_state_from(const struct gw_ws_state *st)
{
    return st->domain[0] ? st->domain : "localhost";
}

/* ---- frames ---- */

int gw_ws_build_open(struct gw_buf *b, const char *from, const char *id, const char *lang)
{
    int rc = gw_buf_append_str(b, "<open xmlns=\"" GW_NS_FRAMING "\" from=\"");
    if (!rc)
        rc = gw_buf_append_xml_escaped(b, from, strlen(from));
    if (!rc)
        rc = gw_buf_append_str(b, "\" id=\"");
    if (!rc)
        rc = gw_buf_append_xml_escaped(b, id, strlen(id));
    if (!rc)
        rc = gw_buf_append_str(b, "\" version=\"1.0\" xml:lang=\"");
    if (!rc)
        rc = gw_buf_append_xml_escaped(b, lang, strlen(lang));
    if (!rc)
        rc = gw_buf_append_str(b, "\"/>");
    return rc;
}

int gw_ws_build_error(struct gw_buf *b, enum gw_condition cond, const char *text)
{
    if (!gw_condition_is_stream(cond))
        cond = GW_COND_undefined_condition;
    int rc = gw_buf_printf(
        b, "<stream:error xmlns:stream=\"" GW_NS_STREAM "\"><%s xmlns=\"" GW_NS_STREAMS "\"/>",
        gw_condition_name(cond));
    if (!rc && text) {
        rc = gw_buf_append_str(b, "<text xmlns=\"" GW_NS_STREAMS "\">");
        if (!rc)
            rc = gw_buf_append_xml_escaped(b, text, strlen(text));
        if (!rc)
            rc = gw_buf_append_str(b, "</text>");
    }
    if (!rc)
        rc = gw_buf_append_str(b, "</stream:error>");
    return rc;
}

int gw_ws_build_close(struct gw_buf *b)
{
    return gw_buf_append_str(b, "<close xmlns=\"" GW_NS_FRAMING "\"/>");
}

/* ---- connections per client address that have not sent <open/> ---- */

int gw_ws_pending_init(struct gw_ws_pending *t)
{
    return gw_strmap_init(&t->map);
}

void gw_ws_pending_cleanup(struct gw_ws_pending *t)
{
    struct gw_strmap_node *n;
    while ((n = gw_strmap_first(&t->map)) != NULL) {
        gw_strmap_del(&t->map, n);
        free(GW_CONTAINER_OF(n, struct gw_ws_pending_addr, node));
    }
    gw_strmap_cleanup(&t->map);
}

/* The entry of addr, looked up as it is kept: cut to GW_WS_ADDR_MAX - 1 bytes. */
static struct gw_ws_pending_addr *pending_find(const struct gw_ws_pending *t, const char *addr,
                                               char key[GW_WS_ADDR_MAX])
{
    snprintf(key, GW_WS_ADDR_MAX, "%s", addr);
    struct gw_strmap_node *n = gw_strmap_find(&t->map, key);
    return n ? GW_CONTAINER_OF(n, struct gw_ws_pending_addr, node) : NULL;
}

int gw_ws_pending_take(struct gw_ws_pending *t, const char *addr, unsigned limit,
                       struct gw_ws_pending_addr **out)
{
    char key[GW_WS_ADDR_MAX];
    *out = NULL;
    struct gw_ws_pending_addr *a = pending_find(t, addr, key);
    if ((a ? a->n : 0) >= limit)
        return GW_ELIMIT;
    if (!a) {
        a = calloc(1, sizeof(*a));
        if (!a)
            return GW_ENOMEM;
        memcpy(a->addr, key, sizeof(a->addr));
        gw_strmap_add(&t->map, &a->node, a->addr);
    }
    a->n++;
    *out = a;
    return 0;
}

void gw_ws_pending_release(struct gw_ws_pending *t, struct gw_ws_pending_addr **a)
{
    struct gw_ws_pending_addr *p = *a;
    if (!p)
        return;
    *a = NULL;
    if (--p->n == 0) {
        gw_strmap_del(&t->map, &p->node);
        free(p);
    }
}

unsigned gw_ws_pending_count(const struct gw_ws_pending *t, const char *addr)
{
    char key[GW_WS_ADDR_MAX];
    const struct gw_ws_pending_addr *a = pending_find(t, addr, key);
    return a ? a->n : 0;
}
