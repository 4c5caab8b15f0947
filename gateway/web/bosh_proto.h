/* BOSH protocol logic that needs no sockets (XEP-0124 + XEP-0206): reading a request's <body/>,
 * negotiating the session attributes, the size caps of a session's buffers, the rid window and the
 * log of recent rids with their cached responses and acknowledgements, key sequencing, the
 * overactivity rule, the order of answers, building response bodies (terminate bodies included)
 * and which XEP-0124 condition a session's end becomes. bosh_session.c drives it; the unit tests
 * and the fuzz targets drive it directly.
 * Owns: nothing beyond the structs below. Calls: xml, core. */
#ifndef GW_WEB_BOSH_PROTO_H
#define GW_WEB_BOSH_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"
#include "core/cond.h"
#include "core/err.h"
#include "xml/xml.h"

#define GW_BOSH_VER "1.11"                  /* the protocol version we implement */
#define GW_BOSH_RID_MAX 9007199254740991ull /* 2^53 - 1 (XEP-0124 section 14.1) */
#define GW_BOSH_REQUESTS_MAX 16             /* upper bound of bosh.max_requests */
#define GW_BOSH_KEY_MAX 128                 /* bytes of a key or newkey (SHA-1 hex is 40) */
#define GW_BOSH_SID_MAX 96                  /* bytes of a sid attribute we accept */

/* The attributes of one request's <body/> that the gateway reads, and its payload. */
struct gw_bosh_body {
    bool has_rid;                                /* rid was present and valid */
    uint64_t rid;                                /* the request id */
    char sid[GW_BOSH_SID_MAX + 1];               /* "" when absent: a session creation request */
    char to[256];                                /* creation: XMPP domain */
    char route[300];                             /* creation: "xmpp:host:port" */
    char lang[64];                               /* creation: xml:lang */
    char ver[16];                                /* creation: "major.minor", "" when absent */
    char xmpp_version[16];                       /* creation: xmpp:version (XEP-0206) */
    bool has_wait, has_hold, has_ack, has_pause; /* which of the four below were sent */
    uint64_t wait, hold, ack, pause;             /* as sent (saturated at GW_BOSH_RID_MAX) */
    char key[GW_BOSH_KEY_MAX + 1];               /* "" when absent */
    char newkey[GW_BOSH_KEY_MAX + 1];            /* "" when absent */
    bool terminate;                              /* type='terminate' */
    bool restart;                                /* xmpp:restart='true' */
    struct gw_buf payload;                       /* the child elements, one after the other */
    struct gw_buf slices; /* struct gw_bosh_slice per child element, in order */
    unsigned n_stanzas;   /* child elements (entries in slices) */
};

/* One child element of the body: payload bytes [off, off + len). */
struct gw_bosh_slice {
    size_t off; /* where it starts in payload */
    size_t len; /* its bytes */
};

/* payload_max bounds the payload: the request body size plus what the parser adds to it (see
 * gw_bosh_payload_max()). */
void gw_bosh_body_init(struct gw_bosh_body *b, size_t payload_max);
void gw_bosh_body_cleanup(struct gw_bosh_body *b);

/* What went wrong with a request body. */
enum gw_bosh_parse_err {
    GW_BOSH_PARSE_OK = 0,
    GW_BOSH_PARSE_XML,   /* not well-formed, restricted XML, a limit of <body/> itself: HTTP 400 */
    GW_BOSH_PARSE_ROOT,  /* well-formed but not <body xmlns='...httpbind'/> */
    GW_BOSH_PARSE_ATTR,  /* an attribute we read has a bad value or is too long */
    GW_BOSH_PARSE_CHILD, /* a child element in the stream namespace (as on WebSocket: refused) */
    GW_BOSH_PARSE_LIMIT, /* <body/> read, a child past limits.max_stanza/max_depth/max_attrs */
    GW_BOSH_PARSE_NOMEM,
};

/* The payload bound for a body of len bytes. Each child element is a slice that stands alone:
 * the prefixes declared on <body/> that it uses are declared on it too (the default namespace is
 * not: a stanza without xmlns takes jabber:client from the upstream stream). That can make the
 * payload longer than the body; twice the body is the most it may be (past it the parse fails
 * as a parser limit would). */
size_t gw_bosh_payload_max(size_t len);

/* A reusable body parser (one expat parser in document mode). NULL on ENOMEM. */
struct gw_bosh_parser;
struct gw_bosh_parser *gw_bosh_parser_new(const struct gw_xml_limits *limits);
void gw_bosh_parser_free(struct gw_bosh_parser *p);
/* Parse one request body into out (which is reset first). Attributes read before an error stay in
 * out (out->sid names the session a broken body was meant for). */
enum gw_bosh_parse_err gw_bosh_parse(struct gw_bosh_parser *p, const char *data, size_t len,
                                     struct gw_bosh_body *out);
/* The payload bytes of child element i. */
const char *gw_bosh_body_stanza(const struct gw_bosh_body *b, unsigned i, size_t *len);
/* An empty request: no payload and none of pause, terminate, restart. */
bool gw_bosh_body_is_empty(const struct gw_bosh_body *b);

/* Decimal without sign, at most 2^53 - 1; false otherwise. */
bool gw_bosh_parse_uint(const char *s, uint64_t *out);
/* "1.6" -> 1006; "" or malformed -> 0. */
unsigned gw_bosh_parse_ver(const char *s);
/* A client that names a version below 1.6: binding errors use HTTP status codes. */
bool gw_bosh_legacy(const char *ver);

/* ---- session attributes ---- */

struct gw_bosh_limits {
    unsigned max_wait;     /* bosh.max_wait */
    unsigned max_hold;     /* bosh.max_hold */
    unsigned max_requests; /* bosh.max_requests */
    unsigned inactivity;   /* bosh.inactivity */
    unsigned max_pause;    /* bosh.max_pause (0: pausing not offered) */
    unsigned polling;      /* bosh.polling */
};

struct gw_bosh_params {
    unsigned wait;       /* seconds a request may be held */
    unsigned hold;       /* requests held at once */
    unsigned requests;   /* simultaneous requests allowed (hold + 1, within max_requests) */
    unsigned inactivity; /* seconds with no request held before the session ends */
    unsigned polling;    /* shortest interval between empty polls */
    unsigned maxpause;   /* longest pause, 0 = none */
    bool ack;            /* the client asked for acknowledgements */
    bool legacy;         /* client version < 1.6: binding errors use HTTP status codes */
    char ver[16];        /* the version we answer: the lower of the client's and ours */
};

void gw_bosh_negotiate(const struct gw_bosh_body *req, const struct gw_bosh_limits *lim,
                       struct gw_bosh_params *out);

/* ---- size caps of a session's buffers ---- */

/* Stanzas waiting for the client: the sink says GW_EAGAIN past send_queue, but what upstream
 * already read still comes (up to one more queue and one stanza). */
size_t gw_bosh_out_max(size_t send_queue, size_t max_stanza);
/* One answer: the stanzas waiting, stream features or a stream error, and the body's tags. */
size_t gw_bosh_resp_max(size_t send_queue, size_t max_stanza);

/* ---- rid window ---- */

enum gw_bosh_rid_class {
    GW_BOSH_RID_SEEN,   /* <= last processed rid: a repeat (replay, or item-not-found) */
    GW_BOSH_RID_NEXT,   /* last + 1: process now */
    GW_BOSH_RID_AHEAD,  /* within the window but early: hold until the gap is filled */
    GW_BOSH_RID_OUTSIDE /* beyond the window: item-not-found */
};
enum gw_bosh_rid_class gw_bosh_rid_classify(uint64_t last_rid, unsigned window, uint64_t rid);

/* The most recent processed rids (as many as the session's `requests`) with what became of each:
 * still held, answered (the body is kept for replay) or lost (the browser gave up before the
 * answer; a repeat takes its place). */
enum gw_bosh_rid_state {
    GW_BOSH_RID_FREE,
    GW_BOSH_RID_HELD,
    GW_BOSH_RID_ANSWERED,
    GW_BOSH_RID_LOST
};

struct gw_bosh_rid_entry {
    uint64_t rid;                  /* the rid this slot holds */
    enum gw_bosh_rid_state state;  /* what became of it */
    uint64_t sent_ms;              /* when the answer was written */
    char key[GW_BOSH_KEY_MAX + 1]; /* the key the request carried ("" if none) */
    struct gw_buf body;            /* the answer, for replays */
};

struct gw_bosh_ridlog {
    struct gw_bosh_rid_entry *e; /* size entries, slot rid % size */
    unsigned size;               /* entries */
};

int gw_bosh_ridlog_init(struct gw_bosh_ridlog *l, unsigned size, size_t body_max) GW_MUST_CHECK;
void gw_bosh_ridlog_cleanup(struct gw_bosh_ridlog *l);
/* The entry of rid, or NULL if not (or no longer) logged. */
struct gw_bosh_rid_entry *gw_bosh_ridlog_find(struct gw_bosh_ridlog *l, uint64_t rid);
/* Log rid as held with its key, replacing whatever older rid had its slot. */
struct gw_bosh_rid_entry *gw_bosh_ridlog_add(struct gw_bosh_ridlog *l, uint64_t rid,
                                             const char *key);
/* Keep the answer of a logged rid for replays. GW_ELIMIT/GW_ENOMEM: kept as answered without a
 * body (a repeat then gets item-not-found). */
int gw_bosh_ridlog_answered(struct gw_bosh_ridlog *l, uint64_t rid, const char *body, size_t len,
                            uint64_t now_ms);

/* What an acknowledgement tells (XEP-0124 section 9.3). */
struct gw_bosh_report {
    bool lost;        /* the client has not seen the answer to rid, which went out */
    uint64_t rid;     /* ack + 1 */
    uint64_t time_ms; /* since that answer went out */
};
/* A request acknowledged every answer up to ack; hi_answered is the highest rid answered. The
 * answers it acknowledged are no longer kept for replays. When ack is below hi_answered and the
 * answer to ack + 1 is logged, the client missed it: out->lost. */
void gw_bosh_ridlog_ack(struct gw_bosh_ridlog *l, uint64_t ack, uint64_t hi_answered,
                        uint64_t now_ms, struct gw_bosh_report *out);

/* ---- key sequencing (XEP-0124 section 15) ---- */

/* Lowercase hex SHA-1 of s (41 bytes with the NUL). */
int gw_bosh_sha1_hex(const char *s, size_t len, char out[41]) GW_MUST_CHECK;
/* Does key belong to the chain whose last key was prev, i.e. hex(SHA-1(key)) == prev? */
bool gw_bosh_key_ok(const char *prev, const char *key);

/* ---- overactivity (XEP-0124 section 12) ---- */

struct gw_bosh_activity {
    bool have;              /* a request was seen */
    uint64_t last_ms;       /* when the last new request arrived */
    bool last_empty;        /* it was empty */
    bool last_answer_empty; /* the last answer carried no payload */
};

/* Does an incoming new request break the polling rule? It does when it is empty, no request is
 * held, the previous request was empty too, its answer carried nothing, and it came less than
 * `polling` seconds after the previous one. */
bool gw_bosh_overactive(const struct gw_bosh_activity *a, uint64_t now_ms, unsigned polling,
                        unsigned held, bool empty);
void gw_bosh_activity_request(struct gw_bosh_activity *a, uint64_t now_ms, bool empty);
void gw_bosh_activity_answer(struct gw_bosh_activity *a, bool empty);

/* ---- order of answers that carry stanzas ----
 * Clients such as Strophe.js handle answers in the order they complete, not in rid order (XEP-0124
 * section 14.2 asks otherwise), and two answers in flight on two connections may complete in
 * either order. So an answer carries stanzas only once the client surely has the last answer that
 * did; a held request that may not carry them is answered empty, and the client's next request
 * (which tells us what it has) gets them. */
struct gw_bosh_order {
    uint64_t payload_rid;   /* the newest answer that carried stanzas (0: none) */
    int payload_fd;         /* the connection (socket) it went out on, -1 for none */
    uint64_t confirmed_rid; /* the client surely has every answer up to this rid */
};

void gw_bosh_order_init(struct gw_bosh_order *o);
/* A new rid arrived on connection fd: the client has every answer up to rid - requests (it never
 * has more than `requests` outstanding) and, without HTTP pipelining, the answer last written on
 * the same connection. */
void gw_bosh_order_arrival(struct gw_bosh_order *o, uint64_t rid, unsigned requests, int fd);
/* May the next answer carry stanzas? */
bool gw_bosh_order_allowed(const struct gw_bosh_order *o);
/* An answer with stanzas for rid went out on fd. */
void gw_bosh_order_sent(struct gw_bosh_order *o, uint64_t rid, int fd);
/* The client surely has every answer so far: a stream restart (XEP-0206 section 5) is sent only
 * once the client has read the SASL success, and the server sends nothing after it on the old
 * stream. */
void gw_bosh_order_confirm_all(struct gw_bosh_order *o);

/* ---- response bodies ---- */

/* Attributes of a response body other than the session creation response. */
struct gw_bosh_reply {
    bool terminate;         /* type='terminate' */
    enum gw_condition cond; /* with terminate: a BOSH condition, or GW_COND_NONE for none */
    bool has_ack;           /* ack is written */
    uint64_t ack;           /* the last rid processed */
    bool has_report;        /* report and time are written */
    uint64_t report;        /* the rid whose answer the client missed */
    uint64_t time_ms;       /* since that answer went out */
};

/* <body xmlns='...httpbind' [attrs]>payload</body> (self-closed when payload is empty);
 * xmlns:stream is declared whenever there is a payload. GW_EINVAL: terminate with a condition
 * that XEP-0124 does not have (map it with gw_bosh_terminate_condition() first). */
int gw_bosh_build_reply(struct gw_buf *out, const struct gw_bosh_reply *r, const char *payload,
                        size_t len) GW_MUST_CHECK;

/* A terminate body with cond (GW_COND_NONE: a clean end; else a BOSH condition): the payload
 * (stanzas still waiting for the client) and then err_xml (upstream's <stream:error/>, with
 * remote-stream-error) inside; either may be empty. */
int gw_bosh_build_terminate(struct gw_buf *out, enum gw_condition cond, const char *payload,
                            size_t len, const char *err_xml, size_t err_len) GW_MUST_CHECK;

/* The session creation response (XEP-0124 section 7.1, XEP-0206 section 3): sid, wait, requests,
 * hold, inactivity, polling, maxpause, ver, from, authid, ack (when ack_rid != 0), xmpp:version,
 * xmpp:restartlogic, then the payload (the stream features). */
struct gw_bosh_creation {
    const struct gw_bosh_params *params; /* what was negotiated */
    const char *sid;                     /* the session id */
    const char *from;                    /* the XMPP domain */
    const char *authid;                  /* the upstream stream id */
    bool has_ack;                        /* the client asked for acknowledgements */
    uint64_t ack;                        /* the creation request's rid */
};
int gw_bosh_build_creation(struct gw_buf *out, const struct gw_bosh_creation *c,
                           const char *payload, size_t len) GW_MUST_CHECK;

/* The XEP-0124 terminate condition to send for a session's end: cond as the session core gives
 * it (a stream error condition, remote-connection-failed, ...). has_err_xml: upstream sent a
 * <stream:error/>, which the body carries. A stream condition that XEP-0124 has with the same
 * meaning stays itself (host-unknown, host-gone, system-shutdown, policy-violation,
 * undefined-condition, internal-server-error, remote-connection-failed); any other one with an
 * error element becomes remote-stream-error (XEP-0206). GW_COND_NONE (a clean close)
 * stays GW_COND_NONE; every other result is a BOSH condition (gw_condition_is_bosh()). */
enum gw_condition gw_bosh_terminate_condition(enum gw_condition cond, bool has_err_xml);
/* Is cond one of the XEP-0124 terminate conditions? */
bool gw_bosh_is_condition(enum gw_condition cond);
/* HTTP status for a binding error: 200, or for legacy clients (ver < 1.6) 400/403/404. */
unsigned gw_bosh_error_status(enum gw_condition cond, bool legacy);

#endif
