/* XMPP over WebSocket (RFC 7395). One connection, one session: <open/> starts (or restarts) the
 * upstream stream, every other message is one stanza passed through as bytes, <close/> ends it.
 * Errors are a <stream:error/> then <close/> then the WebSocket close. Frames are written one per
 * WRITEABLE callback from a bounded queue; when it passes limits.send_queue the session stops
 * reading upstream until it drains. Calls: session, xml, web helpers, core. */
#include "web/websocket.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/rand.h"
#include "session/session.h"
#include "web/web.h"
#include "xml/xml.h"

struct frame {
    struct frame *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE headroom, then len bytes */
};

struct conn {
    struct gw_ctx *ctx;
    struct gw_ws *ws; /* the transport (its shared frame parser) */
    struct lws *wsi;
    struct gw_session *s; /* NULL before <open/> and after the session ended */
    struct gw_buf msg;    /* message being reassembled (limits.max_stanza) */
    struct frame *q_head, *q_tail;
    size_t q_bytes;       /* bytes queued for the client */
    bool opened;          /* we answered an <open/> at least once */
    bool awaiting_ready;  /* <open/> received, its answer not yet sent */
    bool closing;         /* <close/> queued: close the WebSocket once the queue drains */
    bool close_sent;      /* our close frame is on the wire */
    bool upstream_paused; /* we told the session to stop reading */
    enum lws_close_status close_code;
    char domain[256]; /* from the client's <open to=''/> */
    char peer[64];
};

struct pss {
    struct conn *c;
};

struct gw_ws {
    struct gw_ctx *ctx;
    struct gw_xml_parser *xml;   /* one parser for all connections: a message is parsed at once */
    struct gw_xml_limits limits; /* the parser's limits: rebuilt when the configuration changes */
    struct conn *current;        /* connection whose message is being parsed */
};

static void handle_stanza(void *ud, const struct gw_xml_stanza *st);

static bool want_tree(void *ud, const char *ns, const char *name)
{
    return strcmp(ns, GW_NS_FRAMING) == 0;
}

static const struct gw_xml_callbacks xml_cb = {
    .want_tree = want_tree,
    .on_stanza = handle_stanza,
};

/* The frame parser with the configuration's current limits (a reload changes them for the
 * messages that follow). GW_ENOMEM keeps the old parser. */
static int refresh_parser(struct gw_ws *ws)
{
    const struct gw_config *cfg = ws->ctx->cfg;
    struct gw_xml_opts xo = {
        .mode = GW_XML_DOCUMENT,
        .limits = {.max_stanza = cfg->max_stanza,
                   .max_depth = cfg->max_depth,
                   .max_attrs = cfg->max_attrs},
        .root_is_stanza = true,
    };
    if (ws->xml && memcmp(&xo.limits, &ws->limits, sizeof(xo.limits)) == 0)
        return 0;
    struct gw_xml_parser *p = gw_xml_new(&xo, &xml_cb, ws);
    if (!p)
        return GW_ENOMEM;
    gw_xml_free(ws->xml);
    ws->xml = p;
    ws->limits = xo.limits;
    return 0;
}

struct gw_ws *gw_ws_new(struct gw_ctx *ctx)
{
    struct gw_ws *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->ctx = ctx;
    if (refresh_parser(ws) != 0) {
        free(ws);
        return NULL;
    }
    return ws;
}

void gw_ws_free(struct gw_ws *ws)
{
    if (!ws)
        return;
    gw_xml_free(ws->xml);
    free(ws);
}

size_t gw_ws_pss_size(void)
{
    return sizeof(struct pss);
}

/* ---- the outgoing queue ---- */

static int enqueue(struct conn *c, const char *data, size_t len)
{
    struct frame *f = malloc(sizeof(*f) + LWS_PRE + len);
    if (!f)
        return GW_ENOMEM;
    f->next = NULL;
    f->len = len;
    memcpy(f->data + LWS_PRE, data, len);
    if (c->q_tail)
        c->q_tail->next = f;
    else
        c->q_head = f;
    c->q_tail = f;
    c->q_bytes += len;
    lws_callback_on_writable(c->wsi);
    return 0;
}

static void enqueue_str(struct conn *c, const char *s)
{
    (void)enqueue(c, s, strlen(s));
}

static void free_queue(struct conn *c)
{
    while (c->q_head) {
        struct frame *f = c->q_head;
        c->q_head = f->next;
        free(f);
    }
    c->q_tail = NULL;
    c->q_bytes = 0;
}

static void enqueue_open(struct conn *c, const char *from, const char *id, const char *lang)
{
    struct gw_buf b;
    gw_buf_init(&b, 2048);
    int rc = gw_buf_append_str(&b, "<open xmlns=\"" GW_NS_FRAMING "\" from=\"");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, from, strlen(from));
    if (!rc)
        rc = gw_buf_append_str(&b, "\" id=\"");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, id, strlen(id));
    if (!rc)
        rc = gw_buf_append_str(&b, "\" version=\"1.0\" xml:lang=\"");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, lang, strlen(lang));
    if (!rc)
        rc = gw_buf_append_str(&b, "\"/>");
    if (!rc)
        (void)enqueue(c, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    c->opened = true;
}

/* Stream error (RFC 6120 4.9) then <close/>, then the WebSocket closes once the queue drains.
 * err_xml: the upstream's own <stream:error/>, passed on as it came. */
static void stream_error(struct conn *c, enum gw_condition cond, const char *text,
                         const char *err_xml, size_t err_len, enum lws_close_status code)
{
    if (c->closing)
        return;
    if (!c->opened) {
        char id[33];
        if (gw_rand_hex(id, 16) != 0)
            snprintf(id, sizeof(id), "0");
        enqueue_open(c, c->domain[0] ? c->domain : "localhost", id, "en");
    }
    gw_metrics_count_condition(&c->ctx->metrics, cond);
    if (err_xml) {
        (void)enqueue(c, err_xml, err_len);
    } else {
        struct gw_buf b;
        gw_buf_init(&b, 4096);
        int rc = gw_buf_printf(
            &b, "<stream:error xmlns:stream=\"" GW_NS_STREAM "\"><%s xmlns=\"" GW_NS_STREAMS "\"/>",
            gw_condition_name(cond));
        if (!rc && text) {
            rc = gw_buf_append_str(&b, "<text xmlns=\"" GW_NS_STREAMS "\">");
            if (!rc)
                rc = gw_buf_append_xml_escaped(&b, text, strlen(text));
            if (!rc)
                rc = gw_buf_append_str(&b, "</text>");
        }
        if (!rc)
            rc = gw_buf_append_str(&b, "</stream:error>");
        if (!rc)
            (void)enqueue(c, gw_buf_ptr(&b), gw_buf_size(&b));
        gw_buf_cleanup(&b);
    }
    enqueue_str(c, "<close xmlns=\"" GW_NS_FRAMING "\"/>");
    c->closing = true;
    c->close_code = code;
    GW_INFO(&c->ctx->log, c->s ? gw_session_id(c->s) : NULL, c->s ? gw_session_jid(c->s) : NULL,
            "websocket stream error %s%s%s", gw_condition_name(cond), text ? ": " : "",
            text ? text : "");
}

/* The client broke a rule: tell it, and end its session. */
static void client_error(struct conn *c, enum gw_condition cond, const char *text,
                         enum lws_close_status code)
{
    stream_error(c, cond, text, NULL, 0, code);
    if (c->s) {
        gw_session_end(c->s, cond);
        c->s = NULL;
    }
}

/* ---- session -> client ---- */

static void sink_ready(void *t, const struct gw_stream_info *info, const char *features, size_t len)
{
    struct conn *c = t;
    c->awaiting_ready = false;
    enqueue_open(c, info->from, info->id, info->lang);
    (void)enqueue(c, features, len);
}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    struct conn *c = t;
    if (c->closing)
        return 0;
    if (enqueue(c, bytes, len) != 0) {
        client_error(c, GW_COND_resource_constraint, "out of memory",
                     LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
        return 0;
    }
    if (gw_queue_over(c->q_bytes, c->ctx->cfg->send_queue)) {
        c->upstream_paused = true;
        return GW_EAGAIN;
    }
    return 0;
}

static void sink_closed(void *t, const struct gw_close_reason *why)
{
    struct conn *c = t;
    c->s = NULL;
    if (why->cond == GW_COND_NONE) {
        if (!c->closing) {
            enqueue_str(c, "<close xmlns=\"" GW_NS_FRAMING "\"/>");
            c->closing = true;
            c->close_code = LWS_CLOSE_STATUS_NORMAL;
        }
        return;
    }
    stream_error(c, why->cond, why->text, why->err_xml, why->err_len, LWS_CLOSE_STATUS_NORMAL);
}

static const struct gw_sink_ops sink_ops = {
    .stream_ready = sink_ready,
    .deliver = sink_deliver,
    .closed = sink_closed,
};

/* ---- client -> session ---- */

static void handle_open(struct conn *c, const struct gw_xml_node *open)
{
    const char *to = gw_xml_attr(open->attrs, open->n_attrs, "to");
    const char *version = gw_xml_attr(open->attrs, open->n_attrs, "version");
    const char *lang = gw_xml_attr(open->attrs, open->n_attrs, "xml:lang");
    if (c->awaiting_ready) {
        client_error(c, GW_COND_bad_format, "<open/> before the previous one was answered",
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    if (!c->s) {
        if (c->opened) {
            client_error(c, GW_COND_bad_format, "the stream is closed", LWS_CLOSE_STATUS_NORMAL);
            return;
        }
        snprintf(c->domain, sizeof(c->domain), "%s", to ? to : "");
        if (!to || !*to) {
            client_error(c, GW_COND_host_unknown, "<open/> has no 'to'", LWS_CLOSE_STATUS_NORMAL);
            return;
        }
        if (!version || strcmp(version, "1.0") != 0) {
            client_error(c, GW_COND_unsupported_version, "version must be 1.0",
                         LWS_CLOSE_STATUS_NORMAL);
            return;
        }
        int err = 0;
        struct gw_session_opts so = {
            .transport = GW_TRANSPORT_WS, .sink = &sink_ops, .t = c, .peer = c->peer};
        c->s = gw_session_new(c->ctx, &so, &err);
        if (!c->s) {
            client_error(
                c, err == GW_ECLOSED ? GW_COND_system_shutdown : GW_COND_resource_constraint,
                err == GW_ELIMIT ? "too many sessions" : gw_strerror(err), LWS_CLOSE_STATUS_NORMAL);
            return;
        }
        lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
        int rc = gw_session_start(c->s, to, lang);
        if (rc == GW_EINVAL) {
            client_error(c, GW_COND_host_unknown, "this gateway does not serve that domain",
                         LWS_CLOSE_STATUS_NORMAL);
            return;
        }
        if (rc) {
            client_error(c, GW_COND_internal_server_error, gw_strerror(rc),
                         LWS_CLOSE_STATUS_NORMAL);
            return;
        }
        c->awaiting_ready = true;
        return;
    }
    /* A restart: only after SASL success (RFC 6120 6.4.6), and for the same domain. */
    if (to && strcasecmp(to, c->domain) != 0) {
        client_error(c, GW_COND_host_unknown, "a restart may not change the domain",
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    if (gw_session_restart(c->s) != 0) {
        client_error(c, GW_COND_bad_format, "restart without SASL success",
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    c->awaiting_ready = true;
}

static void handle_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_ws *ws = ud;
    struct conn *c = ws->current;
    if (!c || c->closing)
        return;
    if (strcmp(st->ns, GW_NS_FRAMING) == 0) {
        if (strcmp(st->name, "open") == 0) {
            handle_open(c, st->tree);
        } else if (strcmp(st->name, "close") == 0) {
            if (c->s) {
                gw_session_end(c->s, GW_COND_NONE);
                c->s = NULL;
            }
            enqueue_str(c, "<close xmlns=\"" GW_NS_FRAMING "\"/>");
            c->closing = true;
            c->close_code = LWS_CLOSE_STATUS_NORMAL;
        } else {
            client_error(c, GW_COND_unsupported_stanza_type, "unknown framing element",
                         LWS_CLOSE_STATUS_NORMAL);
        }
        return;
    }
    if (strcmp(st->ns, GW_NS_STREAM) == 0) {
        client_error(c, GW_COND_unsupported_stanza_type, "stream elements are not sent as frames",
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    if (!c->s) {
        client_error(c, GW_COND_bad_format, "the first frame must be <open/>",
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    int rc = gw_session_send(c->s, st->bytes, st->len);
    if (rc == GW_ELIMIT)
        client_error(c, GW_COND_policy_violation, "too much data waiting for upstream",
                     LWS_CLOSE_STATUS_NORMAL);
    else if (rc && rc != GW_ECLOSED)
        client_error(c, GW_COND_internal_server_error, gw_strerror(rc), LWS_CLOSE_STATUS_NORMAL);
}

static bool only_whitespace(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

static void handle_message(struct conn *c)
{
    const char *p = gw_buf_ptr(&c->msg);
    size_t n = gw_buf_size(&c->msg);
    /* Whitespace keepalives are not part of RFC 7395 but are harmless: ignore them. */
    if (only_whitespace(p, n))
        return;
    struct gw_ws *ws = c->ws;
    (void)refresh_parser(ws);
    ws->current = c;
    int rc = gw_xml_parse_document(ws->xml, p, n);
    ws->current = NULL;
    if (rc) {
        enum gw_condition cond = rc == GW_ELIMIT
                                     ? GW_COND_policy_violation
                                     : gw_condition_from_name(gw_xml_error_condition(ws->xml));
        client_error(c, cond, gw_xml_error_text(ws->xml), LWS_CLOSE_STATUS_NORMAL);
    }
}

/* ---- lws ---- */

static void conn_free(struct conn *c)
{
    if (c->s) {
        if (c->closing)
            gw_session_end(c->s, GW_COND_NONE);
        else
            gw_session_lost(c->s); /* no <close/>: the connection dropped */
        c->s = NULL;
    }
    free_queue(c);
    gw_buf_cleanup(&c->msg);
    free(c);
}

static int on_writeable(struct conn *c)
{
    struct frame *f = c->q_head;
    if (f) {
        c->q_head = f->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_bytes -= f->len;
        int n = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
        free(f);
        if (n < 0)
            return -1;
        if (c->upstream_paused && gw_queue_drained(c->q_bytes, c->ctx->cfg->send_queue) && c->s) {
            c->upstream_paused = false;
            gw_session_resume(c->s);
        }
    }
    if (c->q_head || (f && c->closing)) {
        /* The close frame goes in a WRITEABLE callback of its own, after the last data frame. */
        lws_callback_on_writable(c->wsi);
        return 0;
    }
    if (c->closing && !c->close_sent) {
        /* Send the close frame (opcode 4, RFC 6455 5.5.1) ourselves: lws 4.1 has no public name for
         * it, and its own close-on-return path does not reliably put it on the wire. The peer's
         * answering close ends the connection; a timeout bounds the wait. */
        unsigned char cf[LWS_PRE + 2];
        cf[LWS_PRE] = (unsigned char)(c->close_code >> 8);
        cf[LWS_PRE + 1] = (unsigned char)(c->close_code & 0xff);
        c->close_sent = true;
        if (lws_write(c->wsi, cf + LWS_PRE, 2, (enum lws_write_protocol)4 /* close */) < 0)
            return -1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 3);
        return 0;
    }
    return 0;
}

int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len)
{
    struct pss *pss = user;
    struct conn *c = pss ? pss->c : NULL;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED: {
        struct gw_ctx *ctx = gw_web_ctx(wsi);
        c = calloc(1, sizeof(*c));
        if (!c)
            return -1;
        c->ctx = ctx;
        c->ws = gw_web_transport(wsi);
        if (!c->ws) {
            free(c);
            return -1;
        }
        c->wsi = wsi;
        gw_buf_init(&c->msg, ctx->cfg->max_stanza);
        gw_web_peer(wsi, c->peer, sizeof(c->peer));
        pss->c = c;
        /* A connection that never sends <open/> holds a descriptor for nothing: it gets as long
         * as an upstream gets to answer (connect_timeout), then lws closes it. */
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, (int)ctx->cfg->connect_timeout);
        GW_DEBUG(&ctx->log, NULL, NULL, "websocket connection from %s", c->peer);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        if (!c || c->closing)
            return 0;
        if (lws_frame_is_binary(wsi)) {
            client_error(c, GW_COND_bad_format, "binary frames are not allowed (RFC 7395 3.2)",
                         LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE);
            return 0;
        }
        if (gw_buf_append(&c->msg, in, len) != 0) {
            gw_buf_reset(&c->msg);
            client_error(c, GW_COND_policy_violation, "message larger than limits.max_stanza",
                         LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
            return 0;
        }
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
            handle_message(c);
            /* An idle session should not keep the buffer of its largest message. */
            if (c->msg.cap > 16384)
                gw_buf_cleanup(&c->msg);
            else
                gw_buf_reset(&c->msg);
        }
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? on_writeable(c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (c) {
            pss->c = NULL;
            conn_free(c);
        }
        return 0;
    default:
        return 0;
    }
}
