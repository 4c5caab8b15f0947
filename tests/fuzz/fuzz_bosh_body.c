/* Fuzz target for the BOSH request body path (gateway/web/bosh_proto.c): arbitrary bytes go through
 * the body parser, then whatever was read goes through the checks and builders a request meets in
 * bosh_session.c (negotiation, rid window and log, acknowledgements, key check, response and
 * terminate bodies, terminate conditions). Invariant of a body that parsed: every child slice
 * stands alone (it parses by itself, with the prefixes it uses declared), and none is in the
 * stream namespace. No sockets. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "web/bosh_proto.h"
#include "xml/xml.h"

static struct gw_bosh_parser *parser;
static struct gw_xml_parser *alone; /* one slice as its own document */
static bool alone_stream_ns;        /* the slice parsed by itself is in the stream namespace */

static void on_alone(void *ud, const struct gw_xml_stanza *st)
{
    (void)ud;
    alone_stream_ns = strcmp(st->ns, GW_NS_STREAM) == 0;
}

/* A slice parses by itself: what the body declared and it uses came with it. Its limits are
 * wider than the body parser's: the declarations added count as bytes and attributes. */
static void check_alone(const char *st, size_t len, size_t size)
{
    static size_t made_for;
    if (!alone || size * 2 + 4096 > made_for) {
        gw_xml_free(alone);
        made_for = size * 2 + 4096;
        struct gw_xml_opts o = {
            .mode = GW_XML_DOCUMENT,
            .limits = {.max_stanza = made_for, .max_depth = 64, .max_attrs = 4096},
            .root_is_stanza = true};
        struct gw_xml_callbacks cb = {.on_stanza = on_alone};
        alone = gw_xml_new(&o, &cb, NULL);
        if (!alone)
            abort();
    }
    alone_stream_ns = false;
    if (gw_xml_parse_document(alone, st, len) != 0 || alone_stream_ns)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!parser) {
        struct gw_xml_limits lim = {.max_stanza = 16384, .max_depth = 32, .max_attrs = 64};
        parser = gw_bosh_parser_new(&lim);
        if (!parser)
            abort();
    }
    struct gw_bosh_body b;
    gw_bosh_body_init(&b, gw_bosh_payload_max(size));
    enum gw_bosh_parse_err err = gw_bosh_parse(parser, (const char *)data, size, &b);

    /* Whatever was read must be consistent, even after an error. */
    if (strlen(b.sid) > GW_BOSH_SID_MAX || strlen(b.key) > GW_BOSH_KEY_MAX ||
        strlen(b.newkey) > GW_BOSH_KEY_MAX)
        abort();
    if (b.has_rid && b.rid > GW_BOSH_RID_MAX)
        abort();
    size_t total = 0;
    for (unsigned i = 0; i < b.n_stanzas; i++) {
        size_t len;
        const char *st = gw_bosh_body_stanza(&b, i, &len);
        if (!st || len == 0 || st[0] != '<')
            abort();
        total += len;
        if (err == GW_BOSH_PARSE_OK)
            check_alone(st, len, size);
    }
    if (total > gw_buf_size(&b.payload))
        abort();
    (void)gw_bosh_body_is_empty(&b);

    if (err == GW_BOSH_PARSE_OK) {
        struct gw_bosh_limits lim = {.max_wait = 60,
                                     .max_hold = 3,
                                     .max_requests = 4,
                                     .inactivity = 60,
                                     .max_pause = 120,
                                     .polling = 2};
        struct gw_bosh_params p;
        gw_bosh_negotiate(&b, &lim, &p);
        if (p.wait < 1 || p.wait > 60 || p.hold > 3 || p.requests > 4 || p.requests < 2)
            abort();

        struct gw_bosh_ridlog log;
        if (gw_bosh_ridlog_init(&log, p.requests, 4096) == 0) {
            uint64_t last = b.has_rid && b.rid > 3 ? b.rid - 3 : 0;
            (void)gw_bosh_rid_classify(last, p.requests, b.rid);
            (void)gw_bosh_ridlog_add(&log, b.rid, b.key);
            if (gw_bosh_ridlog_find(&log, b.rid) == NULL)
                abort();
            (void)gw_bosh_ridlog_answered(&log, b.rid, gw_buf_ptr(&b.payload),
                                          gw_buf_size(&b.payload), 1);
            struct gw_bosh_report rep;
            gw_bosh_ridlog_ack(&log, b.ack, b.rid, 2, &rep);
            if (rep.lost && (rep.rid != b.ack + 1 || b.ack >= b.rid))
                abort();
            gw_bosh_ridlog_cleanup(&log);
        }
        (void)gw_bosh_key_ok(b.newkey, b.key);

        struct gw_bosh_order o;
        gw_bosh_order_init(&o);
        gw_bosh_order_sent(&o, b.rid, (int)(b.wait & 7));
        gw_bosh_order_arrival(&o, b.ack, p.requests, (int)(b.hold & 7));
        if (o.confirmed_rid > (b.ack > b.rid ? b.ack : b.rid))
            abort();
        (void)gw_bosh_order_allowed(&o);

        struct gw_buf out;
        gw_buf_init(&out, 2 * size + 4096);
        struct gw_bosh_creation c = {.params = &p,
                                     .sid = b.sid,
                                     .from = b.to,
                                     .authid = b.route,
                                     .has_ack = b.has_ack,
                                     .ack = b.rid};
        (void)gw_bosh_build_creation(&out, &c, gw_buf_ptr(&b.payload), gw_buf_size(&b.payload));
        gw_buf_reset(&out);
        /* Any condition a session can end with maps to one XEP-0124 has (or none). */
        enum gw_condition in = b.to[0] ? gw_condition_from_name(b.to) : GW_COND_NONE;
        enum gw_condition cond = gw_bosh_terminate_condition(in, b.restart);
        if (cond != GW_COND_NONE ? !gw_bosh_is_condition(cond) : in != GW_COND_NONE || b.restart)
            abort();
        struct gw_bosh_reply r = {
            .terminate = b.terminate, .cond = cond, .has_ack = b.has_ack, .ack = b.ack};
        if (gw_bosh_build_reply(&out, &r, gw_buf_ptr(&b.payload), gw_buf_size(&b.payload)) ==
            GW_EINVAL)
            abort();
        gw_buf_reset(&out);
        if (gw_bosh_build_terminate(&out, cond, gw_buf_ptr(&b.payload), gw_buf_size(&b.payload),
                                    b.route, strlen(b.route)) == GW_EINVAL)
            abort();
        gw_buf_cleanup(&out);
    }
    gw_bosh_body_cleanup(&b);
    return 0;
}
