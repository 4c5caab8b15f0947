/* Streaming XML for XMPP on expat (after libstrophe's parser.h, with limits): an opaque parser with
 * three callbacks and a few calls. Depth 0 is the stream header (or the document's root), depth 1 a
 * stanza. Stanzas travel as byte slices of the input; a small tree is built only for the stanzas a
 * callback asks for. DOCTYPE, entity declarations, processing instructions and comments end the
 * parse with restricted-xml; limits on stanza bytes, depth and attributes are enforced while
 * parsing. Owns: the expat parser, the stanza buffer, the per-stanza tree arena. Calls: expat,
 * core. */
#ifndef GW_XML_XML_H
#define GW_XML_XML_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"

#define GW_NS_CLIENT "jabber:client"
#define GW_NS_STREAM "http://etherx.jabber.org/streams"
#define GW_NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"
#define GW_NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define GW_NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define GW_NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define GW_NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define GW_NS_STREAMS "urn:ietf:params:xml:ns:xmpp-streams"
#define GW_NS_HTTPBIND "http://jabber.org/protocol/httpbind"
#define GW_NS_XBOSH "urn:xmpp:xbosh"
#define GW_NS_SM "urn:xmpp:sm:3"

struct gw_xml_limits {
    size_t max_stanza;  /* bytes of one depth-1 element, or of any one pending token */
    unsigned max_depth; /* nesting, the root counting as depth 0 */
    unsigned max_attrs; /* attributes on one element (namespace declarations included) */
};

/* One attribute. ns is "" for unqualified attributes (the usual case). */
struct gw_xml_attr {
    const char *ns;
    const char *name;
    const char *value;
};

/* A tree node, built only when want_tree said yes. Everything lives in the parser's arena and is
 * valid only during the on_stanza callback. */
struct gw_xml_node {
    const char *ns;   /* namespace URI, "" if none */
    const char *name; /* local name */
    const struct gw_xml_attr *attrs;
    unsigned n_attrs;
    const char *text; /* concatenated character data directly inside, "" if none */
    size_t text_len;
    struct gw_xml_node *children; /* first child element */
    struct gw_xml_node *next;     /* next sibling */
    size_t start, end;            /* byte offsets of this element within the stanza slice
                                     (st->bytes), [start, end) */
};

struct gw_xml_stanza {
    const char *bytes; /* the element's bytes as received, from '<' to the end of its end tag, with
                          the context namespace declarations inserted into the root start tag when
                          the parser was created with inject_context (see below) */
    size_t len;
    const char *ns;                 /* root element namespace */
    const char *name;               /* root element local name */
    const struct gw_xml_node *tree; /* NULL unless want_tree returned true */
};

struct gw_xml_callbacks {
    /* Depth-0 start tag: the stream header or the document root (<body/>, WS frame root when
     * root_is_stanza is false). attrs end with an entry whose name is NULL. */
    void (*on_open)(void *ud, const char *ns, const char *name, const struct gw_xml_attr *attrs,
                    unsigned n_attrs);
    /* At the start tag of each stanza: build a tree for it? NULL = never. */
    bool (*want_tree)(void *ud, const char *ns, const char *name);
    /* One complete stanza. */
    void (*on_stanza)(void *ud, const struct gw_xml_stanza *st);
    /* Depth-0 end tag (</stream:stream>, end of the document root). */
    void (*on_close)(void *ud);
};

enum gw_xml_mode {
    GW_XML_STREAM,   /* an endless stream: feed chunks in any split */
    GW_XML_DOCUMENT, /* gw_xml_parse_document: one complete document per call (BOSH body, WS
                        frame) */
};

struct gw_xml_opts {
    enum gw_xml_mode mode;
    struct gw_xml_limits limits;
    /* Insert the namespace declarations in scope from the depth-0 element (default namespace and
     * prefixes) into each stanza's root start tag, unless the stanza declares that prefix itself,
     * so that the slice stands alone (what RFC 7395 frames and BOSH bodies need). Used on upstream
     * streams. */
    bool inject_context;
    /* The same for the prefixes only: the default namespace of the depth-0 element is not
     * carried. BOSH bodies: a stanza without its own xmlns takes jabber:client from the upstream
     * stream, not the httpbind namespace of <body/>, but a prefix declared on <body/> must go
     * with every stanza that uses it. */
    bool inject_prefixes;
    /* Document mode only: the root element itself is the one stanza (RFC 7395 frames): on_stanza is
     * called for it (on_open/on_close are not). */
    bool root_is_stanza;
    /* Stream mode only: between stanzas, free expat and the input, stanza and text buffers (about
     * 12 KiB for an XMPP stream), and build them again on the next byte from the depth-0 start
     * tag's name and namespace declarations, the only state a stream has between stanzas. An idle
     * stream then holds the parser struct and its context. Line and column numbers in error texts
     * count from the rebuild. */
    bool release_idle;
};

struct gw_xml_parser;

/* NULL on allocation failure. */
struct gw_xml_parser *gw_xml_new(const struct gw_xml_opts *opts, const struct gw_xml_callbacks *cb,
                                 void *ud);
void gw_xml_free(struct gw_xml_parser *p);

/* Start over for a new stream (after STARTTLS or SASL success). Never call from a callback: call
 * gw_xml_pause() there, then reset after gw_xml_feed() returns. */
int gw_xml_reset(struct gw_xml_parser *p) GW_MUST_CHECK;

/* Stream mode: feed the next chunk. Returns 0 when every byte was taken, or when a callback paused
 * the parser, in which case *consumed (may be NULL otherwise) is the number of bytes up to the end
 * of the element that paused it; the rest belongs to whatever comes next (a new stream, TLS bytes).
 * Errors: GW_EPROTO (see gw_xml_error), GW_ELIMIT (a limit; condition policy-violation),
 * GW_ENOMEM. After an error the parser must be reset or freed. */
int gw_xml_feed(struct gw_xml_parser *p, const char *data, size_t len,
                size_t *consumed) GW_MUST_CHECK;

/* Document mode: parse one complete document (resets the parser first). Same errors. A document
 * with anything but one root element (and surrounding whitespace / XML declaration) is an error. */
int gw_xml_parse_document(struct gw_xml_parser *p, const char *data, size_t len) GW_MUST_CHECK;

/* From a callback: stop after the current element; gw_xml_feed returns with *consumed set. */
void gw_xml_pause(struct gw_xml_parser *p);

/* After an error: the stream error condition that fits (RFC 6120 4.9.3 names, e.g.
 * "not-well-formed", "restricted-xml", "policy-violation", "invalid-namespace") and a short human
 * text (e.g. expat's message with line and column). */
const char *gw_xml_error_condition(const struct gw_xml_parser *p);
const char *gw_xml_error_text(const struct gw_xml_parser *p);

/* release_idle: expat and the buffers are released (the stream is idle between stanzas). */
bool gw_xml_released(const struct gw_xml_parser *p);

/* Small helpers for the trees. */
const char *gw_xml_attr(const struct gw_xml_attr *attrs, unsigned n, const char *name);
const struct gw_xml_node *gw_xml_child(const struct gw_xml_node *n, const char *ns,
                                       const char *name);

#endif
