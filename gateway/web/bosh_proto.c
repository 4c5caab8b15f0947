/* BOSH protocol logic without sockets: request bodies, attribute negotiation, buffer caps, the rid
 * window and log, acknowledgements, key sequencing, overactivity, answer order, response bodies
 * and terminate conditions (XEP-0124, XEP-0206). Calls: xml, core (the condition table), OpenSSL
 * (SHA-1 for keys). */
#include "web/bosh_proto.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- request bodies ---- */

void gw_bosh_body_init(struct gw_bosh_body *b, size_t payload_max)
{
    memset(b, 0, sizeof(*b));
    gw_buf_init(&b->payload, payload_max);
    /* Each child element is at least "<a/>": four bytes. */
    gw_buf_init(&b->slices, (payload_max / 4 + 1) * sizeof(struct gw_bosh_slice));
}

void gw_bosh_body_cleanup(struct gw_bosh_body *b)
{
    gw_buf_cleanup(&b->payload);
    gw_buf_cleanup(&b->slices);
}

/* Forget the previous body's values, keep the buffers' allocations and bounds. */
static void body_reset(struct gw_bosh_body *b)
{
    struct gw_buf payload = b->payload, slices = b->slices;
    memset(b, 0, sizeof(*b));
    b->payload = payload;
    b->slices = slices;
    gw_buf_reset(&b->payload);
    gw_buf_reset(&b->slices);
}

const char *gw_bosh_body_stanza(const struct gw_bosh_body *b, unsigned i, size_t *len)
{
    if (i >= b->n_stanzas) {
        *len = 0;
        return NULL;
    }
    struct gw_bosh_slice sl;
    memcpy(&sl, gw_buf_ptr(&b->slices) + (size_t)i * sizeof(sl), sizeof(sl));
    *len = sl.len;
    return gw_buf_ptr(&b->payload) + sl.off;
}

size_t gw_bosh_payload_max(size_t len)
{
    return len > SIZE_MAX / 2 - 1 ? SIZE_MAX : len * 2 + 1;
}

bool gw_bosh_body_is_empty(const struct gw_bosh_body *b)
{
    return b->n_stanzas == 0 && !b->has_pause && !b->terminate && !b->restart;
}

bool gw_bosh_parse_uint(const char *s, uint64_t *out)
{
    if (!s || !*s || strlen(s) > 16)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > GW_BOSH_RID_MAX)
        return false;
    *out = v;
    return true;
}

unsigned gw_bosh_parse_ver(const char *s)
{
    unsigned major = 0, minor = 0;
    const char *p = s;
    if (!p || *p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9' && major < 1000)
        major = major * 10 + (unsigned)(*p++ - '0');
    if (*p != '.' || p[1] < '0' || p[1] > '9')
        return 0;
    p++;
    while (*p >= '0' && *p <= '9' && minor < 1000)
        minor = minor * 10 + (unsigned)(*p++ - '0');
    if (*p || major >= 1000 || minor >= 1000)
        return 0;
    return major * 1000 + minor;
}

bool gw_bosh_legacy(const char *ver)
{
    unsigned v = gw_bosh_parse_ver(ver);
    return v && v < 1006;
}

struct gw_bosh_parser {
    struct gw_xml_parser *xml;  /* expat in document mode */
    struct gw_bosh_body *out;   /* the body being filled */
    enum gw_bosh_parse_err err; /* the first error a callback found */
    bool root_read;             /* <body/> and its attributes were read without error */
};

static bool copy_value(char *dst, size_t dstlen, const char *v)
{
    size_t n = strlen(v);
    if (n >= dstlen)
        return false;
    memcpy(dst, v, n + 1);
    return true;
}

/* Numbers larger than 2^53 - 1 are not valid rids; for wait/hold/pause/ack they are capped later
 * anyway, so any all-digit value is taken (saturated). */
static bool read_number(const char *v, uint64_t *out, bool saturate)
{
    if (gw_bosh_parse_uint(v, out))
        return true;
    if (!saturate || !*v)
        return false;
    for (const char *p = v; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    *out = GW_BOSH_RID_MAX;
    return true;
}

static bool read_attr(struct gw_bosh_body *b, const struct gw_xml_attr *a)
{
    const char *n = a->name, *v = a->value;
    if (a->ns[0] == '\0') {
        if (strcmp(n, "rid") == 0)
            return (b->has_rid = read_number(v, &b->rid, false));
        if (strcmp(n, "sid") == 0)
            return copy_value(b->sid, sizeof(b->sid), v);
        if (strcmp(n, "to") == 0)
            return copy_value(b->to, sizeof(b->to), v);
        if (strcmp(n, "route") == 0)
            return copy_value(b->route, sizeof(b->route), v);
        if (strcmp(n, "ver") == 0)
            return copy_value(b->ver, sizeof(b->ver), v);
        if (strcmp(n, "wait") == 0)
            return (b->has_wait = read_number(v, &b->wait, true));
        if (strcmp(n, "hold") == 0)
            return (b->has_hold = read_number(v, &b->hold, true));
        if (strcmp(n, "ack") == 0)
            return (b->has_ack = read_number(v, &b->ack, true));
        if (strcmp(n, "pause") == 0)
            return (b->has_pause = read_number(v, &b->pause, true));
        if (strcmp(n, "key") == 0)
            return copy_value(b->key, sizeof(b->key), v);
        if (strcmp(n, "newkey") == 0)
            return copy_value(b->newkey, sizeof(b->newkey), v);
        if (strcmp(n, "type") == 0) {
            b->terminate = strcmp(v, "terminate") == 0;
            return true;
        }
        return true; /* content, from, secure, hold-over attributes we do not use */
    }
    if (strcmp(a->ns, GW_NS_XBOSH) == 0) {
        if (strcmp(n, "version") == 0)
            return copy_value(b->xmpp_version, sizeof(b->xmpp_version), v);
        if (strcmp(n, "restart") == 0) {
            b->restart = strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
            return true;
        }
    }
    return true;
}

static void on_open(void *ud, const char *ns, const char *name, const struct gw_xml_attr *attrs,
                    unsigned n_attrs)
{
    struct gw_bosh_parser *p = ud;
    if (strcmp(name, "body") != 0 || strcmp(ns, GW_NS_HTTPBIND) != 0) {
        p->err = GW_BOSH_PARSE_ROOT;
    } else {
        for (unsigned i = 0; i < n_attrs && attrs[i].name; i++) {
            if (!read_attr(p->out, &attrs[i])) {
                p->err = GW_BOSH_PARSE_ATTR;
                break;
            }
        }
        const char *lang = gw_xml_attr(attrs, n_attrs, "xml:lang");
        if (!p->err && lang && !copy_value(p->out->lang, sizeof(p->out->lang), lang))
            p->err = GW_BOSH_PARSE_ATTR;
    }
    if (p->err)
        gw_xml_pause(p->xml);
    else
        p->root_read = true;
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_bosh_parser *p = ud;
    if (p->err)
        return;
    if (strcmp(st->ns, GW_NS_STREAM) == 0) {
        /* <stream:features/>, <stream:error/>, ...: the client does not speak for the stream. */
        p->err = GW_BOSH_PARSE_CHILD;
        gw_xml_pause(p->xml);
        return;
    }
    struct gw_bosh_body *b = p->out;
    struct gw_bosh_slice sl = {.off = gw_buf_size(&b->payload), .len = st->len};
    int rc = gw_buf_append(&b->payload, st->bytes, st->len);
    if (rc == 0)
        rc = gw_buf_append(&b->slices, &sl, sizeof(sl));
    if (rc) {
        p->err = rc == GW_ENOMEM ? GW_BOSH_PARSE_NOMEM : GW_BOSH_PARSE_XML;
        gw_xml_pause(p->xml);
        return;
    }
    b->n_stanzas++;
}

struct gw_bosh_parser *gw_bosh_parser_new(const struct gw_xml_limits *limits)
{
    struct gw_bosh_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    /* Prefixes only: a stanza without its own xmlns must reach upstream without one, so that it
     * takes jabber:client from the upstream stream (XEP-0206 section 4) instead of the httpbind
     * namespace of <body/>; a prefix declared on <body/> goes with each stanza that uses it, or
     * upstream would see it unbound (or bound to its own prefixes, such as stream). */
    struct gw_xml_opts opts = {.mode = GW_XML_DOCUMENT, .limits = *limits, .inject_prefixes = true};
    struct gw_xml_callbacks cb = {.on_open = on_open, .on_stanza = on_stanza};
    p->xml = gw_xml_new(&opts, &cb, p);
    if (!p->xml) {
        free(p);
        return NULL;
    }
    return p;
}

void gw_bosh_parser_free(struct gw_bosh_parser *p)
{
    if (!p)
        return;
    gw_xml_free(p->xml);
    free(p);
}

enum gw_bosh_parse_err gw_bosh_parse(struct gw_bosh_parser *p, const char *data, size_t len,
                                     struct gw_bosh_body *out)
{
    body_reset(out);
    p->out = out;
    p->err = GW_BOSH_PARSE_OK;
    p->root_read = false;
    int rc = gw_xml_parse_document(p->xml, data, len);
    p->out = NULL;
    if (p->err)
        return p->err;
    if (rc == GW_ENOMEM)
        return GW_BOSH_PARSE_NOMEM;
    if (rc == GW_ELIMIT && p->root_read)
        return GW_BOSH_PARSE_LIMIT; /* the limits of <body/> itself stay a format error */
    if (rc)
        return GW_BOSH_PARSE_XML;
    return GW_BOSH_PARSE_OK;
}

/* ---- session attributes ---- */

static unsigned clamp_u(uint64_t v, unsigned lo, unsigned hi)
{
    return v < lo ? lo : v > hi ? hi : (unsigned)v;
}

void gw_bosh_negotiate(const struct gw_bosh_body *req, const struct gw_bosh_limits *lim,
                       struct gw_bosh_params *out)
{
    memset(out, 0, sizeof(*out));
    unsigned max_requests = clamp_u(lim->max_requests, 1, GW_BOSH_REQUESTS_MAX);
    out->wait = req->has_wait ? clamp_u(req->wait, 1, lim->max_wait) : lim->max_wait;
    out->hold = req->has_hold ? clamp_u(req->hold, 0, lim->max_hold) : 1;
    if (out->hold > lim->max_hold)
        out->hold = lim->max_hold;
    if (out->hold + 1 > max_requests)
        out->hold = max_requests - 1;
    out->requests = out->hold + 1 < 2 ? 2 : out->hold + 1;
    if (out->requests > max_requests)
        out->requests = max_requests;
    out->inactivity = lim->inactivity;
    out->polling = lim->polling;
    out->maxpause = lim->max_pause;
    out->ack = req->has_ack;
    /* The lower of the client's version and ours. A client that names no version is answered with
     * ours and treated as current (1.6+: binding errors in 200 responses). */
    unsigned ours = gw_bosh_parse_ver(GW_BOSH_VER), theirs = gw_bosh_parse_ver(req->ver);
    if (theirs && theirs < ours) {
        snprintf(out->ver, sizeof(out->ver), "%u.%u", theirs / 1000, theirs % 1000);
        out->legacy = gw_bosh_legacy(req->ver);
    } else {
        snprintf(out->ver, sizeof(out->ver), "%s", GW_BOSH_VER);
    }
}

/* ---- size caps ---- */

size_t gw_bosh_out_max(size_t send_queue, size_t max_stanza)
{
    return send_queue * 2 + max_stanza;
}

size_t gw_bosh_resp_max(size_t send_queue, size_t max_stanza)
{
    return gw_bosh_out_max(send_queue, max_stanza) + max_stanza + 65536;
}

/* ---- rid window ---- */

enum gw_bosh_rid_class gw_bosh_rid_classify(uint64_t last_rid, unsigned window, uint64_t rid)
{
    if (rid <= last_rid)
        return GW_BOSH_RID_SEEN;
    if (rid == last_rid + 1)
        return GW_BOSH_RID_NEXT;
    if (rid - last_rid <= window)
        return GW_BOSH_RID_AHEAD;
    return GW_BOSH_RID_OUTSIDE;
}

int gw_bosh_ridlog_init(struct gw_bosh_ridlog *l, unsigned size, size_t body_max)
{
    if (size == 0)
        size = 1;
    l->e = calloc(size, sizeof(*l->e));
    if (!l->e) {
        l->size = 0;
        return GW_ENOMEM;
    }
    l->size = size;
    for (unsigned i = 0; i < size; i++)
        gw_buf_init(&l->e[i].body, body_max);
    return 0;
}

void gw_bosh_ridlog_cleanup(struct gw_bosh_ridlog *l)
{
    for (unsigned i = 0; i < l->size; i++)
        gw_buf_cleanup(&l->e[i].body);
    free(l->e);
    l->e = NULL;
    l->size = 0;
}

struct gw_bosh_rid_entry *gw_bosh_ridlog_find(struct gw_bosh_ridlog *l, uint64_t rid)
{
    if (!l->size)
        return NULL;
    struct gw_bosh_rid_entry *e = &l->e[rid % l->size];
    return e->state != GW_BOSH_RID_FREE && e->rid == rid ? e : NULL;
}

struct gw_bosh_rid_entry *gw_bosh_ridlog_add(struct gw_bosh_ridlog *l, uint64_t rid,
                                             const char *key)
{
    if (!l->size)
        return NULL;
    struct gw_bosh_rid_entry *e = &l->e[rid % l->size];
    e->rid = rid;
    e->state = GW_BOSH_RID_HELD;
    e->sent_ms = 0;
    snprintf(e->key, sizeof(e->key), "%s", key ? key : "");
    /* Old answers are big: give the memory back rather than keep it per session. */
    gw_buf_cleanup(&e->body);
    return e;
}

int gw_bosh_ridlog_answered(struct gw_bosh_ridlog *l, uint64_t rid, const char *body, size_t len,
                            uint64_t now_ms)
{
    struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(l, rid);
    if (!e)
        return GW_EINVAL;
    e->state = GW_BOSH_RID_ANSWERED;
    e->sent_ms = now_ms;
    gw_buf_reset(&e->body);
    int rc = gw_buf_append(&e->body, body, len);
    if (rc)
        gw_buf_cleanup(&e->body);
    return rc;
}

void gw_bosh_ridlog_ack(struct gw_bosh_ridlog *l, uint64_t ack, uint64_t hi_answered,
                        uint64_t now_ms, struct gw_bosh_report *out)
{
    memset(out, 0, sizeof(*out));
    struct gw_bosh_rid_entry *e = ack < hi_answered ? gw_bosh_ridlog_find(l, ack + 1) : NULL;
    if (e && e->state == GW_BOSH_RID_ANSWERED) {
        out->lost = true;
        out->rid = ack + 1;
        out->time_ms = now_ms - e->sent_ms;
    }
    for (unsigned i = 0; i < l->size; i++)
        if (l->e[i].state == GW_BOSH_RID_ANSWERED && l->e[i].rid <= ack)
            gw_buf_cleanup(&l->e[i].body);
}

/* ---- keys ---- */

int gw_bosh_sha1_hex(const char *s, size_t len, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(s, len, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20) {
        out[0] = '\0';
        return GW_ENOMEM;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
    return 0;
}

bool gw_bosh_key_ok(const char *prev, const char *key)
{
    char h[41];
    if (!prev || !key || !*key || gw_bosh_sha1_hex(key, strlen(key), h) != 0)
        return false;
    return strcasecmp(h, prev) == 0;
}

/* ---- overactivity ---- */

bool gw_bosh_overactive(const struct gw_bosh_activity *a, uint64_t now_ms, unsigned polling,
                        unsigned held, bool empty)
{
    if (!empty || held > 0 || !a->have || !a->last_empty || !a->last_answer_empty)
        return false;
    return now_ms - a->last_ms < (uint64_t)polling * 1000;
}

void gw_bosh_activity_request(struct gw_bosh_activity *a, uint64_t now_ms, bool empty)
{
    a->have = true;
    a->last_ms = now_ms;
    a->last_empty = empty;
    a->last_answer_empty = false;
}

void gw_bosh_activity_answer(struct gw_bosh_activity *a, bool empty)
{
    a->last_answer_empty = empty;
}

/* ---- order of answers ---- */

void gw_bosh_order_init(struct gw_bosh_order *o)
{
    o->payload_rid = 0;
    o->payload_fd = -1;
    o->confirmed_rid = 0;
}

void gw_bosh_order_arrival(struct gw_bosh_order *o, uint64_t rid, unsigned requests, int fd)
{
    if (rid > requests && rid - requests > o->confirmed_rid)
        o->confirmed_rid = rid - requests;
    if (fd >= 0 && fd == o->payload_fd && rid > o->payload_rid && o->payload_rid > o->confirmed_rid)
        o->confirmed_rid = o->payload_rid;
}

bool gw_bosh_order_allowed(const struct gw_bosh_order *o)
{
    return o->payload_rid == 0 || o->payload_rid <= o->confirmed_rid;
}

void gw_bosh_order_sent(struct gw_bosh_order *o, uint64_t rid, int fd)
{
    o->payload_rid = rid;
    o->payload_fd = fd;
}

void gw_bosh_order_confirm_all(struct gw_bosh_order *o)
{
    if (o->payload_rid > o->confirmed_rid)
        o->confirmed_rid = o->payload_rid;
}

/* ---- response bodies ---- */

#define BODY_OPEN "<body xmlns='" GW_NS_HTTPBIND "'"
#define STREAM_DECL " xmlns:stream='" GW_NS_STREAM "'"

/* The end of a body: self-closed, or two pieces of payload (either may be empty) and the end tag.
 */
static int close_body(struct gw_buf *out, const char *p1, size_t l1, const char *p2, size_t l2)
{
    if (!l1 && !l2)
        return gw_buf_append_str(out, "/>");
    int rc = gw_buf_append_str(out, ">");
    if (!rc && l1)
        rc = gw_buf_append(out, p1, l1);
    if (!rc && l2)
        rc = gw_buf_append(out, p2, l2);
    if (!rc)
        rc = gw_buf_append_str(out, "</body>");
    return rc;
}

static int attr(struct gw_buf *out, const char *name, const char *value)
{
    int rc = gw_buf_printf(out, " %s='", name);
    if (!rc)
        rc = gw_buf_append_xml_escaped(out, value, strlen(value));
    if (!rc)
        rc = gw_buf_append_str(out, "'");
    return rc;
}

/* A reply body whose payload is p1 then p2. */
static int build_body(struct gw_buf *out, const struct gw_bosh_reply *r, const char *p1, size_t l1,
                      const char *p2, size_t l2)
{
    if (r->terminate && r->cond != GW_COND_NONE && !gw_condition_is_bosh(r->cond))
        return GW_EINVAL;
    int rc = gw_buf_append_str(out, BODY_OPEN);
    if (!rc && (l1 || l2))
        rc = gw_buf_append_str(out, STREAM_DECL);
    if (!rc && r->terminate)
        rc = gw_buf_append_str(out, " type='terminate'");
    if (!rc && r->terminate && r->cond != GW_COND_NONE)
        rc = attr(out, "condition", gw_condition_name(r->cond));
    if (!rc && r->has_ack)
        rc = gw_buf_printf(out, " ack='%llu'", (unsigned long long)r->ack);
    if (!rc && r->has_report)
        rc = gw_buf_printf(out, " report='%llu' time='%llu'", (unsigned long long)r->report,
                           (unsigned long long)r->time_ms);
    if (!rc)
        rc = close_body(out, p1, l1, p2, l2);
    return rc;
}

int gw_bosh_build_reply(struct gw_buf *out, const struct gw_bosh_reply *r, const char *payload,
                        size_t len)
{
    return build_body(out, r, payload, len, NULL, 0);
}

int gw_bosh_build_terminate(struct gw_buf *out, enum gw_condition cond, const char *payload,
                            size_t len, const char *err_xml, size_t err_len)
{
    struct gw_bosh_reply r = {.terminate = true, .cond = cond};
    return build_body(out, &r, payload, len, err_xml, err_len);
}

int gw_bosh_build_creation(struct gw_buf *out, const struct gw_bosh_creation *c,
                           const char *payload, size_t len)
{
    const struct gw_bosh_params *p = c->params;
    int rc = gw_buf_append_str(out, BODY_OPEN " xmlns:xmpp='" GW_NS_XBOSH "'" STREAM_DECL);
    if (!rc)
        rc = attr(out, "sid", c->sid);
    if (!rc)
        rc = gw_buf_printf(out, " wait='%u' requests='%u' hold='%u' inactivity='%u' polling='%u'",
                           p->wait, p->requests, p->hold, p->inactivity, p->polling);
    if (!rc && p->maxpause)
        rc = gw_buf_printf(out, " maxpause='%u'", p->maxpause);
    if (!rc)
        rc = attr(out, "ver", p->ver);
    if (!rc && c->from && *c->from)
        rc = attr(out, "from", c->from);
    if (!rc && c->authid && *c->authid)
        rc = attr(out, "authid", c->authid);
    if (!rc && c->has_ack)
        rc = gw_buf_printf(out, " ack='%llu'", (unsigned long long)c->ack);
    if (!rc)
        rc = gw_buf_append_str(out, " xmpp:version='1.0' xmpp:restartlogic='true'");
    if (!rc)
        rc = close_body(out, payload, len, NULL, 0);
    return rc;
}

/* ---- conditions ---- */

bool gw_bosh_is_condition(enum gw_condition cond)
{
    return gw_condition_is_bosh(cond);
}

/* Stream conditions (RFC 6120 section 4.9.3) that XEP-0124 section 17 has with the same meaning.
 * Not improper-addressing: a stream's is a stanza between servers without to or from, a BOSH
 * session's a creation request without to. */
static bool same_meaning(enum gw_condition cond)
{
    switch (cond) {
    case GW_COND_host_unknown:
    case GW_COND_host_gone:
    case GW_COND_system_shutdown:
    case GW_COND_policy_violation:
    case GW_COND_undefined_condition:
    case GW_COND_internal_server_error:
    case GW_COND_remote_connection_failed:
        return true;
    default:
        return false;
    }
}

enum gw_condition gw_bosh_terminate_condition(enum gw_condition cond, bool has_err_xml)
{
    if (same_meaning(cond))
        return cond;
    if (has_err_xml)
        return GW_COND_remote_stream_error;
    if (cond == GW_COND_NONE || gw_condition_is_bosh(cond))
        return cond;
    /* Stream conditions that XEP-0124 says in its own words. */
    if (cond == GW_COND_connection_timeout)
        return GW_COND_remote_connection_failed;
    if (cond == GW_COND_resource_constraint)
        return GW_COND_internal_server_error;
    return GW_COND_undefined_condition;
}

unsigned gw_bosh_error_status(enum gw_condition cond, bool legacy)
{
    if (!legacy)
        return 200;
    switch (cond) {
    case GW_COND_bad_request:
        return 400;
    case GW_COND_policy_violation:
        return 403;
    case GW_COND_item_not_found:
        return 404;
    default:
        return 200;
    }
}
