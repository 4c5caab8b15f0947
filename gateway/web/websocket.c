/* XMPP over WebSocket (RFC 7395): the lws adapter. One connection, one session: ws_proto says what
 * each reassembled message is and keeps the order rules; this file turns that into session calls
 * (<open/> starts or restarts the upstream stream, a stanza is passed through as bytes, <close/>
 * ends it) and writes the answers: a stream error is <stream:error/>, <close/>, then the WebSocket
 * close. Stanzas from upstream are written at once while the socket takes them, else (and
 * everything else) in WRITEABLE callbacks, several per callback, from a bounded queue; past
 * limits.send_queue the session stops reading upstream until it drains. A connection that sends
 * no <open/> within connect_timeout gets connection-timeout. Until its <open/> (or its end) a
 * connection counts against its client address's limits.per_address_pending; one past it is
 * refused with policy-violation as soon as it is upgraded (from <open/> on, the session's own
 * per-address limits hold it). Owns: the per-connection state, its reassembly buffer, frame queue
 * and <open/> timer, the shared frame parser, the per-address count of connections without
 * <open/>. Calls: web/ws_proto, session, web helpers, config, core. */
#include "web/websocket.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/host.h"
#include "core/log.h"
#include "core/rand.h"
#include "session/session.h"
#include "web/web.h"
#include "web/ws_proto.h"

#define CLOSE_WAIT_S 3 /* how long the peer has to answer our close frame */
#define WRITE_BATCH 16 /* frames written per WRITEABLE callback at most */

struct frame {
    struct frame *next;
    size_t len;
    unsigned char data[]; /* LWS_PRE headroom, then len bytes */
};

struct conn {
    struct gw_ctx *ctx;
    struct gw_ws *ws; /* the transport (its shared frame parser) */
    struct lws *wsi;
    struct gw_session *s;  /* NULL before <open/> and after the session ended */
    struct gw_ws_state st; /* the stream's order rules (ws_proto) */
    struct gw_buf msg;     /* message being reassembled (limits.max_stanza) */
    struct frame *q_head, *q_tail;
    size_t q_bytes;       /* bytes queued for the client */
    bool close_queued;    /* <close/> queued: close the WebSocket once the queue drains */
    bool close_sent;      /* our close frame is on the wire */
    bool upstream_paused; /* we told the session to stop reading */
    bool asked;           /* a WRITEABLE callback is asked for */
    lws_sorted_usec_list_t open_timer; /* connect_timeout for <open/>; cancelled on CLOSED */
    enum lws_close_status close_code;
    struct gw_ws_pending_addr *pending; /* counted against its address until <open/>; or NULL */
    char peer[GW_WS_ADDR_MAX];          /* client address (gw_web_peer) */
};

struct pss {
    struct conn *c;
};

struct gw_ws {
    struct gw_ctx *ctx;
    struct gw_ws_parser *proto;   /* one parser for all connections: a message is parsed at once */
    struct gw_xml_limits limits;  /* the parser's limits: rebuilt when the configuration changes */
    struct gw_ws_pending pending; /* connections without <open/>, by client address */
};

/* The frame parser with the configuration's current limits (a reload changes them for the
 * messages that follow). GW_ENOMEM keeps the old parser. */
static int refresh_parser(struct gw_ws *ws)
{
    const struct gw_config *cfg = ws->ctx->cfg;
    struct gw_xml_limits lim = {
        .max_stanza = cfg->max_stanza, .max_depth = cfg->max_depth, .max_attrs = cfg->max_attrs};
    if (ws->proto && memcmp(&lim, &ws->limits, sizeof(lim)) == 0)
        return 0;
    struct gw_ws_parser *p = gw_ws_parser_new(&lim);
    if (!p)
        return GW_ENOMEM;
    gw_ws_parser_free(ws->proto);
    ws->proto = p;
    ws->limits = lim;
    return 0;
}

struct gw_ws *gw_ws_new(struct gw_ctx *ctx)
{
    struct gw_ws *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return NULL;
    ws->ctx = ctx;
    if (gw_ws_pending_init(&ws->pending) != 0) {
        free(ws);
        return NULL;
    }
    if (refresh_parser(ws) != 0) {
        gw_ws_pending_cleanup(&ws->pending);
        free(ws);
        return NULL;
    }
    return ws;
}

void gw_ws_free(struct gw_ws *ws)
{
    if (!ws)
        return;
    gw_ws_parser_free(ws->proto);
    gw_ws_pending_cleanup(&ws->pending);
    free(ws);
}

size_t gw_ws_pss_size(void)
{
    return sizeof(struct pss);
}

/* ---- the outgoing queue ---- */

static void ask_writeable(struct conn *c)
{
    if (!c->asked) {
        c->asked = true;
        lws_callback_on_writable(c->wsi);
    }
}

/* Queue a frame; the caller says when it goes (enqueue() asks for WRITEABLE). */
static int enqueue_only(struct conn *c, const char *data, size_t len)
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
    return 0;
}

static int enqueue(struct conn *c, const char *data, size_t len)
{
    int rc = enqueue_only(c, data, len);
    if (!rc)
        ask_writeable(c);
    return rc;
}

/* Queue what a builder wrote into b (nothing when it failed), and free b. */
static void enqueue_built(struct conn *c, int rc, struct gw_buf *b)
{
    if (!rc)
        (void)enqueue(c, gw_buf_ptr(b), gw_buf_size(b));
    gw_buf_cleanup(b);
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
    gw_buf_init(&b, 4096);
    enqueue_built(c, gw_ws_build_open(&b, from, id, lang), &b);
    gw_ws_state_ready(&c->st);
}

/* <close/>, then the WebSocket closes with code once the queue drains. */
static void enqueue_close(struct conn *c, enum lws_close_status code)
{
    struct gw_buf b;
    gw_buf_init(&b, 256);
    enqueue_built(c, gw_ws_build_close(&b), &b);
    gw_ws_state_closing(&c->st);
    c->close_queued = true;
    c->close_code = code;
}

/* Stream error (RFC 6120 4.9) then <close/>, then the WebSocket closes once the queue drains.
 * err_xml: the upstream's own <stream:error/>, passed on as it came. The caller logs it. */
static void queue_stream_error(struct conn *c, enum gw_condition cond, const char *text,
                               const char *err_xml, size_t err_len, enum lws_close_status code)
{
    gw_ws_state_closing(&c->st);
    if (!c->st.opened) {
        /* RFC 6120 4.9.1.2: the stream header goes out even when the error comes first. */
        char id[33];
        if (gw_rand_hex(id, 16) != 0)
            snprintf(id, sizeof(id), "0");
        enqueue_open(c, gw_ws_state_from(&c->st), id, "en");
    }
    gw_metrics_count_condition(&c->ctx->metrics, cond);
    if (err_xml) {
        (void)enqueue(c, err_xml, err_len);
    } else {
        struct gw_buf b;
        gw_buf_init(&b, 4096);
        enqueue_built(c, gw_ws_build_error(&b, cond, text), &b);
    }
    enqueue_close(c, code);
}

static void stream_error(struct conn *c, enum gw_condition cond, const char *text,
                         const char *err_xml, size_t err_len, enum lws_close_status code)
{
    if (c->close_queued)
        return;
    queue_stream_error(c, cond, text, err_xml, err_len, code);
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

static void flush_now(struct conn *c);

static void sink_ready(void *t, const struct gw_stream_info *info, const char *features, size_t len)
{
    struct conn *c = t;
    enqueue_open(c, info->from, info->id, info->lang);
    (void)enqueue(c, features, len);
}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    struct conn *c = t;
    if (c->close_queued)
        return 0;
    if (enqueue_only(c, bytes, len) != 0) {
        client_error(c, GW_COND_resource_constraint, "out of memory",
                     LWS_CLOSE_STATUS_UNEXPECTED_CONDITION);
        return 0;
    }
    flush_now(c);
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
    if (why->resumable && !c->close_queued) {
        /* A drain left the stream resumable: no stream error and no <close/>, only the
         * WebSocket's "going away", so that the client reconnects (to another node) and resumes. */
        GW_DEBUG(&c->ctx->log, NULL, NULL, "websocket closing with 1001 going away: resumable");
        gw_ws_state_closing(&c->st);
        c->close_queued = true;
        c->close_code = LWS_CLOSE_STATUS_GOINGAWAY;
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (why->cond == GW_COND_NONE) {
        if (!c->close_queued)
            enqueue_close(c, LWS_CLOSE_STATUS_NORMAL);
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

static void open_timeout(lws_sorted_usec_list_t *sul);

/* An lws timer of the connection's own: lws_set_timer_usecs(wsi, LWS_SET_TIMER_USEC_CANCEL)
 * does not cancel in lws 4.1.6, it fires at once. */
static void start_open_timer(struct conn *c)
{
    lws_sul_schedule(lws_get_context(c->wsi), lws_get_tsi(c->wsi), &c->open_timer, open_timeout,
                     (lws_usec_t)c->ctx->cfg->connect_timeout * LWS_USEC_PER_SEC);
}

static void stop_open_timer(struct conn *c)
{
    lws_sul_cancel(&c->open_timer);
}

/* The stream's first <open/>, accepted by ws_proto: a session for its domain. */
static void start_session(struct conn *c, const struct gw_ws_msg *m)
{
    int err = 0;
    struct gw_session_opts so = {
        .transport = GW_TRANSPORT_WS, .sink = &sink_ops, .t = c, .peer = c->peer};
    c->s = gw_session_new(c->ctx, &so, &err);
    if (!c->s) {
        client_error(c, err == GW_ECLOSED ? GW_COND_system_shutdown : GW_COND_resource_constraint,
                     err == GW_ELIMIT    ? "too many sessions"
                     : err == GW_ECLOSED ? "the gateway is shutting down (draining)"
                                         : gw_strerror(err),
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    int rc = gw_session_start(c->s, m->to, m->lang[0] ? m->lang : NULL);
    if (rc == GW_EINVAL) {
        client_error(c, GW_COND_host_unknown, "this gateway does not serve that domain",
                     LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    if (rc) {
        client_error(c, GW_COND_internal_server_error, gw_strerror(rc), LWS_CLOSE_STATUS_NORMAL);
        return;
    }
    stop_open_timer(c);
}

static void send_stanza(struct conn *c, const char *bytes, size_t len)
{
    int rc = c->s ? gw_session_send(c->s, bytes, len) : GW_ECLOSED;
    if (rc == GW_ELIMIT)
        client_error(c, GW_COND_policy_violation, "too much data waiting for upstream",
                     LWS_CLOSE_STATUS_NORMAL);
    else if (rc && rc != GW_ECLOSED)
        client_error(c, GW_COND_internal_server_error, gw_strerror(rc), LWS_CLOSE_STATUS_NORMAL);
}

static void handle_message(struct conn *c)
{
    struct gw_ws *ws = c->ws;
    struct gw_ws_msg m;
    if (!gw_host_utf8_valid(gw_buf_ptr(&c->msg), gw_buf_size(&c->msg))) {
        /* RFC 6455 8.1: text frames are UTF-8; the connection fails with 1007. */
        client_error(c, GW_COND_not_well_formed, "a text frame must be UTF-8",
                     LWS_CLOSE_STATUS_INVALID_PAYLOAD);
        return;
    }
    (void)refresh_parser(ws);
    switch (gw_ws_parse(ws->proto, &c->st, gw_buf_ptr(&c->msg), gw_buf_size(&c->msg), &m)) {
    case GW_WS_IGNORE:
        return;
    case GW_WS_OPEN:
        /* From here the session's per-address limits hold the connection. */
        gw_ws_pending_release(&ws->pending, &c->pending);
        start_session(c, &m);
        return;
    case GW_WS_RESTART:
        /* Only after SASL success (RFC 6120 6.4.6): the session knows. */
        if (!c->s || gw_session_restart(c->s) != 0)
            client_error(c, GW_COND_bad_format, "restart without SASL success",
                         LWS_CLOSE_STATUS_NORMAL);
        return;
    case GW_WS_CLOSE:
        if (c->s) {
            gw_session_end(c->s, GW_COND_NONE);
            c->s = NULL;
        }
        enqueue_close(c, LWS_CLOSE_STATUS_NORMAL);
        return;
    case GW_WS_STANZA:
        send_stanza(c, m.bytes, m.len);
        return;
    case GW_WS_ERROR:
        client_error(c, m.cond, m.text, LWS_CLOSE_STATUS_NORMAL);
        return;
    }
}

/* ---- lws ---- */

static void conn_free(struct conn *c)
{
    stop_open_timer(c);
    gw_ws_pending_release(&c->ws->pending, &c->pending);
    if (c->s) {
        if (c->close_queued)
            gw_session_end(c->s, GW_COND_NONE);
        else
            gw_session_lost(c->s); /* no <close/>: the connection dropped */
        c->s = NULL;
    }
    free_queue(c);
    gw_buf_cleanup(&c->msg);
    free(c);
}

/* Past limits.per_address_pending. lws has sent the 101 before it tells this protocol of the
 * connection, so the refusal is RFC 7395's: <open/>, <stream:error><policy-violation/>, <close/>,
 * then the close frame (1008). A browser's WebSocket reads this; it could not read the HTTP
 * status of a refused handshake. The connection never counts against its address. */
static void refuse_pending(struct conn *c)
{
    c->ctx->metrics.refused[GW_LIMIT_ADDR_PENDING]++;
    GW_INFO(&c->ctx->log, NULL, NULL,
            "websocket connection from %s refused (policy-violation): %u connections of this "
            "address have not sent <open/> (limits.per_address_pending)",
            c->peer, gw_ws_pending_count(&c->ws->pending, c->peer));
    queue_stream_error(c, GW_COND_policy_violation,
                       "too many connections from this address have not sent <open/>", NULL, 0,
                       LWS_CLOSE_STATUS_POLICY_VIOLATION);
}

static struct conn *conn_new(struct lws *wsi)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->ctx = ctx;
    c->ws = gw_web_transport(wsi);
    if (!c->ws) {
        free(c);
        return NULL;
    }
    c->wsi = wsi;
    gw_buf_init(&c->msg, ctx->cfg->max_stanza);
    gw_web_peer(wsi, c->peer, sizeof(c->peer));
    int rc =
        gw_ws_pending_take(&c->ws->pending, c->peer, ctx->cfg->per_address_pending, &c->pending);
    if (rc == GW_ENOMEM) {
        free(c);
        return NULL;
    }
    /* A connection that never sends <open/> holds a descriptor for nothing: it gets as long as
     * an upstream gets to answer (connect_timeout), then a stream error. A refused one is bounded
     * by the same timer while its frames go out. */
    start_open_timer(c);
    if (rc == GW_ELIMIT)
        refuse_pending(c);
    else
        GW_DEBUG(&ctx->log, NULL, NULL, "websocket connection from %s", c->peer);
    return c;
}

/* connect_timeout passed without an accepted <open/>. The first time: connection-timeout, and
 * as long again for the client to take it. The second time, if our frames are still queued:
 * drop the connection (once the close frame is out, lws's close timeout bounds the rest). */
static void open_timeout(lws_sorted_usec_list_t *sul)
{
    struct conn *c = (struct conn *)(void *)((char *)sul - offsetof(struct conn, open_timer));
    if (!c->close_queued) {
        client_error(c, GW_COND_connection_timeout, "no <open/> within connect_timeout",
                     LWS_CLOSE_STATUS_NORMAL);
        start_open_timer(c);
    } else if (!c->close_sent) {
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
    }
}

static int on_receive(struct conn *c, const void *in, size_t len)
{
    if (c->close_queued)
        return 0;
    if (lws_frame_is_binary(c->wsi)) {
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
    if (lws_is_final_fragment(c->wsi) && !lws_remaining_packet_payload(c->wsi)) {
        handle_message(c);
        /* An idle session should not keep the buffer of its largest message. */
        if (c->msg.cap > 16384)
            gw_buf_cleanup(&c->msg);
        else
            gw_buf_reset(&c->msg);
    }
    return 0;
}

/* The head frame on the wire. -1: the write failed. */
static int write_head(struct conn *c)
{
    struct frame *f = c->q_head;
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
    return 0;
}

/* Stanzas from upstream go out at once while lws holds nothing back for the socket: on lws's
 * libuv loop a WRITEABLE round costs epoll_ctl calls (POLLOUT on, then off). lws keeps what the
 * socket did not take and asks for POLLOUT itself; the rest of the queue then waits for
 * WRITEABLE. Not with permessage-deflate (its compressor drains in WRITEABLE callbacks), nor once
 * the stream is closing (the close frame's order). Called outside lws's callbacks only. */
static void flush_now(struct conn *c)
{
    if (c->asked || c->close_queued || c->ctx->cfg->ws_deflate) {
        ask_writeable(c);
        return;
    }
    while (c->q_head && !lws_partial_buffered(c->wsi))
        if (write_head(c) < 0) {
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
            return;
        }
    if (c->q_head)
        ask_writeable(c);
}

static int on_writeable(struct conn *c)
{
    c->asked = false;
    bool wrote = false;
    /* Several frames per callback while the socket takes them; the close frame after them. */
    for (int i = 0; i < WRITE_BATCH && c->q_head && (!i || !lws_partial_buffered(c->wsi)); i++) {
        if (write_head(c) < 0)
            return -1;
        wrote = true;
    }
    if (c->q_head || (wrote && c->close_queued)) {
        /* The close frame goes in a WRITEABLE callback of its own, after the last data frame. */
        ask_writeable(c);
        return 0;
    }
    if (c->close_queued && !c->close_sent) {
        /* Send the close frame (opcode 4, RFC 6455 5.5.1) ourselves: lws 4.1 has no public name for
         * it, and its own close-on-return path does not reliably put it on the wire. The peer's
         * answering close ends the connection; a timeout bounds the wait. */
        unsigned char cf[LWS_PRE + 2];
        cf[LWS_PRE] = (unsigned char)(c->close_code >> 8);
        cf[LWS_PRE + 1] = (unsigned char)(c->close_code & 0xff);
        c->close_sent = true;
        if (lws_write(c->wsi, cf + LWS_PRE, 2, (enum lws_write_protocol)4 /* close */) < 0)
            return -1;
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_WAIT_S);
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
    case LWS_CALLBACK_ESTABLISHED:
        pss->c = conn_new(wsi);
        return pss->c ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        return c ? on_receive(c, in, len) : 0;
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
