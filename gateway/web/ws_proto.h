/* XMPP over WebSocket (RFC 7395) rules that need no sockets: what one complete client message is
 * (<open/>, <close/>, one stanza, or a broken rule as a stream condition), the order rules of one
 * connection's stream (nothing before <open/>, one <open/> at a time, a restart keeps the domain,
 * nothing after the end) and the frames the gateway writes (<open/> answer, <stream:error/>,
 * <close/>), and the count per client address of connections that have not sent <open/>
 * (limits.per_address_pending). websocket.c drives it from the lws callbacks; the unit tests and
 * the fuzz target drive it directly. Owns: the frame parser (one expat parser in document mode),
 * the pending table's entries and the structs below. Calls: xml, core. */
#ifndef GW_WEB_WS_PROTO_H
#define GW_WEB_WS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include "core/buf.h"
#include "core/cond.h"
#include "core/err.h"
#include "core/host.h"
#include "core/strmap.h"
#include "xml/xml.h"

#define GW_WS_LANG_MAX 63 /* bytes of xml:lang kept (the upstream header keeps as many) */

/* One connection's stream, as far as the order of messages goes. Zeroed = a new connection. */
struct gw_ws_state {
    bool opened;                  /* an <open/> answer went to the client at least once */
    bool awaiting_ready;          /* an <open/> was accepted and its answer has not gone out */
    bool closing;                 /* the stream ended (<close/> or an error): nothing is accepted */
    char domain[GW_HOST_MAX + 1]; /* the 'to' of the client's first <open/>; "" before it */
};

/* What a client message is, and what the transport does with it. */
enum gw_ws_kind {
    GW_WS_IGNORE,  /* a whitespace keepalive, or anything after the stream ended: nothing */
    GW_WS_OPEN,    /* the first <open/>: start a session for msg->to (msg->lang) */
    GW_WS_RESTART, /* a later <open/> (after SASL success): restart the stream */
    GW_WS_CLOSE,   /* <close/>: end the session cleanly and answer <close/> */
    GW_WS_STANZA,  /* one stanza for upstream: msg->bytes, msg->len as received */
    GW_WS_ERROR,   /* a rule was broken: answer the stream error msg->cond with msg->text */
};

/* One message read. Pointers are valid until the next gw_ws_parse() with the same parser. */
struct gw_ws_msg {
    enum gw_ws_kind kind;
    const char *bytes; /* GW_WS_STANZA: the element's bytes */
    size_t len;
    char to[GW_HOST_MAX + 1];      /* GW_WS_OPEN: the domain asked for */
    char lang[GW_WS_LANG_MAX + 1]; /* GW_WS_OPEN: xml:lang ("" when absent), cut between
                                      characters to GW_WS_LANG_MAX bytes */
    enum gw_condition cond;        /* GW_WS_ERROR: always a stream condition; else GW_COND_NONE */
    const char *text;              /* GW_WS_ERROR: a short human reason */
};

struct gw_ws_parser;

/* A frame parser with these limits (one serves every connection: a message is parsed at once).
 * NULL on ENOMEM. */
struct gw_ws_parser *gw_ws_parser_new(const struct gw_xml_limits *limits);
void gw_ws_parser_free(struct gw_ws_parser *p);

/* Read one complete message (all of one WebSocket text message) of connection st, apply the
 * order rules and move st on: an accepted <open/> sets st->awaiting_ready (and st->domain the
 * first time), <close/> and every error set st->closing. Returns msg->kind. Errors: the parser's
 * conditions (not-well-formed, restricted-xml, policy-violation for a limit, unsupported-encoding),
 * unsupported-stanza-type (an unknown framing element, an element of the stream namespace),
 * bad-format (an <open/> before the previous one was answered, a stanza before <open/>, a
 * restart to another domain), host-unknown (<open/> without 'to', or a 'to' too long to be a
 * domain), unsupported-version (a first <open/> whose version is not "1.0"). */
enum gw_ws_kind gw_ws_parse(struct gw_ws_parser *p, struct gw_ws_state *st, const char *data,
                            size_t len, struct gw_ws_msg *msg);

/* The answer to the pending <open/> goes out (or an answer to none, before a stream error). */
void gw_ws_state_ready(struct gw_ws_state *st);
/* The gateway ends the stream (a stream error, upstream gone): nothing more is accepted. */
void gw_ws_state_closing(struct gw_ws_state *st);
/* The 'from' of an <open/> answer sent before a stream error: the domain asked for, if any. */
const char *gw_ws_state_from(const struct gw_ws_state *st);

/* ---- frames the gateway writes; each appends one frame to b (GW_ELIMIT past b's maximum) ---- */

/* <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from id version='1.0' xml:lang/>. */
int gw_ws_build_open(struct gw_buf *b, const char *from, const char *id,
                     const char *lang) GW_MUST_CHECK;
/* <stream:error/> with the condition (one that is no stream condition is sent as
 * undefined-condition) and, when text is not NULL, a <text/>. */
int gw_ws_build_error(struct gw_buf *b, enum gw_condition cond, const char *text) GW_MUST_CHECK;
/* <close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>. */
int gw_ws_build_close(struct gw_buf *b) GW_MUST_CHECK;

/* ---- connections per client address that have not sent <open/> ---- */

#define GW_WS_ADDR_MAX 64 /* bytes of a client address kept, NUL included (gw_web_peer's) */

/* One client address's connections that have not sent <open/>; it lives while n is not zero. */
struct gw_ws_pending_addr {
    struct gw_strmap_node node; /* in gw_ws_pending.map, keyed by addr */
    char addr[GW_WS_ADDR_MAX];  /* the client address */
    unsigned n;                 /* its connections counted */
};

/* The table of those counts (limits.per_address_pending), one for the transport. */
struct gw_ws_pending {
    struct gw_strmap map; /* client address -> struct gw_ws_pending_addr */
};

int gw_ws_pending_init(struct gw_ws_pending *t) GW_MUST_CHECK; /* GW_ENOMEM, GW_EIO */
void gw_ws_pending_cleanup(struct gw_ws_pending *t);           /* frees every entry left */

/* Count one more connection of addr, unless addr has limit counted already (GW_ELIMIT, nothing
 * counted; *out NULL) or no entry could be made (GW_ENOMEM). On 0, *out is what to release. */
int gw_ws_pending_take(struct gw_ws_pending *t, const char *addr, unsigned limit,
                       struct gw_ws_pending_addr **out) GW_MUST_CHECK;

/* The connection counted in *a sent <open/> or closed: it counts no more, and *a becomes NULL, so
 * that a second call does nothing. The entry is freed with its last connection. */
void gw_ws_pending_release(struct gw_ws_pending *t, struct gw_ws_pending_addr **a);

/* How many connections of addr are counted (0 for an address not in the table). */
unsigned gw_ws_pending_count(const struct gw_ws_pending *t, const char *addr);

#endif
