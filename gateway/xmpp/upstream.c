/* The upstream c2s stream: resolve, connect, STARTTLS or direct TLS (tls.c, a filter stacked
 * between the socket and the parser), stream headers and restarts, features with <starttls/> cut
 * out, stream errors. It reports events and does what the session says; the session decides.
 * Bytes reach the socket one way (write_raw: plain, or what the TLS layer made of them) and leave
 * it one way (receive: through the TLS layer when there is one, then to the parser). Owns the TCP
 * handle, the TLS layer, the parser and the write requests; frees itself once its handles are
 * closed and its requests have returned. Calls: xml, config, core, tls, libuv. */
#include "xmpp/upstream.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/log.h"
#include "xmpp/tls.h"

#define READ_CHUNK 65536
#define CLOSE_GRACE_MS 2000

enum state {
    ST_RESOLVING,  /* uv_getaddrinfo in flight */
    ST_CONNECTING, /* uv_tcp_connect in flight */
    ST_STREAM,     /* header sent, waiting for header + features (plain, pre-STARTTLS) */
    ST_STARTTLS,   /* <starttls/> sent, waiting for <proceed/> */
    ST_HANDSHAKE,  /* TLS handshake running */
    ST_TLS_STREAM, /* header sent over TLS (or plain when tls=off), waiting for features */
    ST_READY,      /* features handed up; stanzas flow */
    ST_RESTART,    /* SASL success: new header sent, waiting for features */
    ST_CLOSED,     /* torn down, waiting for handles */
};

static const char *const state_names[] = {"resolving", "connecting", "stream",  "starttls", "tls",
                                          "stream",    "open",       "restart", "closed"};

enum after_pause { AFTER_NONE, AFTER_TLS, AFTER_STREAM };

struct gw_upstream {
    struct gw_ctx *ctx;
    struct gw_addr addr; /* copies: the config may be reloaded meanwhile */
    enum gw_upstream_tls tls_mode;
    char domain[256];                  /* XMPP domain: to='', SNI and certificate name */
    char lang[64];                     /* xml:lang for our stream headers */
    char sid[80];                      /* for log lines (a session id: GW_SID_MAX, 65) */
    char *jid;                         /* for log lines, once bound */
    const struct gw_upstream_ops *ops; /* NULL once closed: no callback after that */
    void *ud;
    enum state state;
    uv_getaddrinfo_t gai;         /* resolution request */
    struct addrinfo *addrs;       /* result list, owned */
    struct addrinfo *next_addr;   /* next address to try */
    uv_tcp_t tcp;                 /* the socket */
    uv_connect_t conn;            /* connect request */
    uv_timer_t timer;             /* connect/handshake deadline */
    uv_shutdown_t shut;           /* graceful close */
    struct gw_tls *tls;           /* NULL until TLS starts; then between socket and parser */
    struct gw_xml_parser *xml;    /* the stream parser */
    struct stream_hdr *hdr;       /* the current stream's header, from it until its features */
    bool header_seen;             /* current stream's header arrived */
    bool restart_due;             /* the session said this stream restarts */
    enum after_pause after_pause; /* what the bytes after a paused element are */
    bool read_paused;             /* client side asked us to stop reading */
    bool reading;                 /* uv_read_start active */
    bool tcp_open;                /* tcp handle initialised and not yet closed */
    bool timer_open;              /* timer handle not yet closed */
    unsigned pending;             /* requests in flight (resolve, connect, writes, shutdown) */
    size_t queued;                /* bytes gathered and in write requests in flight */
    struct wreq *gather;          /* bytes written this loop turn, not yet handed to libuv */
    struct gw_upstream *b_next;   /* on the batch's list while gather holds bytes */
    struct gw_upstream **b_pprev; /* NULL: not on it */
};

/* Header attributes of a stream: kept only until its features are handed up. */
struct stream_hdr {
    char id[256];
    char from[256];
    char version[16];
    char lang[64];
};

struct wreq {
    uv_write_t req;
    struct gw_upstream *u;
    size_t len, cap; /* bytes in data, room in data */
    char data[];
};

/* Writes gathered per loop turn: what is written to an upstream while the loop runs its
 * callbacks collects in one write request, which leaves when the turn's callbacks are done (the
 * check handle, after the poll phase) or before the loop would wait (the idle handle, for bytes
 * written by timers and close callbacks): stanzas that arrive together cost one system call,
 * and the server reads them in one. */
struct gw_upstream_batch {
    uv_check_t check;
    uv_idle_t idle;
    struct gw_upstream *head; /* upstreams with gathered bytes */
    unsigned open;            /* handles not yet closed */
    bool running;             /* check and idle started */
};

#define GATHER_MIN 1024 /* first room of a gather request */

static void teardown(struct gw_upstream *u, bool send_close);
static void fail(struct gw_upstream *u, enum gw_condition cond, bool tls_failure, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));
static void try_next_address(struct gw_upstream *u);
static void batch_unlink(struct gw_upstream *u);

/* ---- lifetime ---- */

static void maybe_free(struct gw_upstream *u)
{
    if (u->state != ST_CLOSED || u->tcp_open || u->timer_open || u->pending)
        return;
    batch_unlink(u);
    free(u->gather);
    if (u->addrs)
        uv_freeaddrinfo(u->addrs);
    gw_tls_free(u->tls);
    gw_xml_free(u->xml);
    free(u->hdr);
    free(u->jid);
    free(u);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct gw_upstream *u = h->data;
    u->tcp_open = false;
    maybe_free(u);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct gw_upstream *u = h->data;
    u->timer_open = false;
    maybe_free(u);
}

static void close_handles(struct gw_upstream *u)
{
    if (u->tcp_open && !uv_is_closing((uv_handle_t *)&u->tcp))
        uv_close((uv_handle_t *)&u->tcp, on_tcp_closed);
    if (u->timer_open && !uv_is_closing((uv_handle_t *)&u->timer))
        uv_close((uv_handle_t *)&u->timer, on_timer_closed);
}

/* ---- writing ---- */

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    struct gw_upstream *u = w->u;
    u->queued -= w->len;
    u->pending--;
    free(w);
    if (status < 0 && status != UV_ECANCELED && u->state != ST_CLOSED)
        fail(u, GW_COND_remote_connection_failed, false, "write to upstream failed: %s",
             uv_strerror(status));
    maybe_free(u);
}

/* w (its bytes counted in u->queued) to libuv, which writes at once when nothing is queued
 * before it. GW_EIO: not taken (w freed, its bytes uncounted). */
static int submit(struct gw_upstream *u, struct wreq *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&u->tcp, &b, 1, on_written) < 0) {
        u->queued -= w->len;
        free(w);
        return GW_EIO;
    }
    u->pending++;
    u->ctx->metrics.upstream_writes++;
    return 0;
}

static void batch_unlink(struct gw_upstream *u)
{
    if (!u->b_pprev)
        return;
    *u->b_pprev = u->b_next;
    if (u->b_next)
        u->b_next->b_pprev = u->b_pprev;
    u->b_next = NULL;
    u->b_pprev = NULL;
}

/* The bytes gathered for u leave now (dropped if the socket is closing). */
static void flush(struct gw_upstream *u)
{
    struct wreq *w = u->gather;
    batch_unlink(u);
    u->gather = NULL;
    if (!w)
        return;
    if (!u->tcp_open || uv_is_closing((uv_handle_t *)&u->tcp)) {
        u->queued -= w->len;
        free(w);
        return;
    }
    if (submit(u, w) != 0)
        fail(u, GW_COND_remote_connection_failed, false, "write to upstream failed");
}

static void batch_run(struct gw_upstream_batch *b)
{
    while (b->head)
        flush(b->head); /* unlinks it; a failure's callbacks may link or unlink others */
    if (b->running) {
        uv_check_stop(&b->check);
        uv_idle_stop(&b->idle);
        b->running = false;
    }
}

static void on_batch_check(uv_check_t *h)
{
    batch_run(h->data);
}

static void on_batch_idle(uv_idle_t *h)
{
    batch_run(h->data);
}

/* Append to u's gather request, growing it; u goes on the batch's list. */
static int gather(struct gw_upstream *u, struct gw_upstream_batch *b, const char *data, size_t len)
{
    struct wreq *w = u->gather;
    size_t have = w ? w->len : 0;
    if (len > SIZE_MAX / 4 - have - sizeof(*w))
        return GW_ELIMIT;
    if (!w || w->cap - have < len) {
        size_t cap = w ? w->cap : GATHER_MIN;
        while (cap - have < len)
            cap *= 2;
        struct wreq *n = realloc(w, sizeof(*n) + cap);
        if (!n)
            return GW_ENOMEM;
        n->u = u;
        n->len = have;
        n->cap = cap;
        u->gather = w = n;
    }
    memcpy(w->data + w->len, data, len);
    w->len += len;
    u->queued += len;
    if (!u->b_pprev) {
        u->b_next = b->head;
        if (b->head)
            b->head->b_pprev = &u->b_next;
        b->head = u;
        u->b_pprev = &b->head;
    }
    if (!b->running) {
        uv_check_start(&b->check, on_batch_check);
        uv_idle_start(&b->idle, on_batch_idle);
        b->running = true;
    }
    return 0;
}

static int write_raw(struct gw_upstream *u, const char *data, size_t len)
{
    if (!u->tcp_open || uv_is_closing((uv_handle_t *)&u->tcp))
        return GW_ECLOSED;
    if (u->ctx->up_batch)
        return gather(u, u->ctx->up_batch, data, len);
    struct wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return GW_ENOMEM;
    w->u = u;
    w->len = w->cap = len;
    memcpy(w->data, data, len);
    u->queued += len;
    return submit(u, w);
}

struct gw_upstream_batch *gw_upstream_batch_new(struct gw_ctx *ctx)
{
    struct gw_upstream_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    uv_check_init(ctx->loop, &b->check);
    uv_idle_init(ctx->loop, &b->idle);
    b->check.data = b->idle.data = b;
    b->open = 2;
    return b;
}

static void on_batch_closed(uv_handle_t *h)
{
    struct gw_upstream_batch *b = h->data;
    if (--b->open == 0)
        free(b);
}

void gw_upstream_batch_free(struct gw_ctx *ctx)
{
    struct gw_upstream_batch *b = ctx->up_batch;
    if (!b)
        return;
    batch_run(b);
    ctx->up_batch = NULL; /* from now on upstream writes leave at once */
    uv_close((uv_handle_t *)&b->check, on_batch_closed);
    uv_close((uv_handle_t *)&b->idle, on_batch_closed);
}

/* What the TLS layer produced (handshake, records, alerts) goes out like plain bytes. */
static int tls_send(void *ud, const char *cipher, size_t len)
{
    return write_raw(ud, cipher, len);
}

/* Plaintext for upstream: to the socket, or into the TLS layer (GW_EAGAIN during its handshake),
 * which gives the ciphertext back to write_raw(). */
static int send_bytes(struct gw_upstream *u, const char *data, size_t len)
{
    return u->tls ? gw_tls_write(u->tls, data, len) : write_raw(u, data, len);
}

static int send_header(struct gw_upstream *u)
{
    struct gw_buf b;
    gw_buf_init(&b, 2048);
    int rc = gw_buf_append_str(&b, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                                   "xmlns:stream='http://etherx.jabber.org/streams' to='");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, u->domain, strlen(u->domain));
    if (!rc)
        rc = gw_buf_append_str(&b, "' version='1.0' xml:lang='");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, u->lang, strlen(u->lang));
    if (!rc)
        rc = gw_buf_append_str(&b, "'>");
    if (!rc)
        rc = send_bytes(u, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    u->header_seen = false;
    return rc;
}

static void progress(struct gw_upstream *u, enum gw_upstream_progress p)
{
    if (u->ops)
        u->ops->on_progress(u->ud, p);
}

/* The header of the stream that will carry stanzas: after TLS, or at once with tls=off. */
static int open_stream(struct gw_upstream *u)
{
    u->state = ST_TLS_STREAM;
    progress(u, GW_UPSTREAM_STREAM);
    if (u->state == ST_CLOSED)
        return GW_ECLOSED;
    int rc = send_header(u);
    if (rc)
        fail(u, GW_COND_remote_connection_failed, false, "cannot write to upstream");
    return rc;
}

/* ---- failure and close ---- */

/* Tell the session, once; no callback follows. */
static void report_closed(struct gw_upstream *u, const struct gw_close_reason *why)
{
    const struct gw_upstream_ops *ops = u->ops;
    u->ops = NULL;
    if (ops)
        ops->on_closed(u->ud, why);
}

static void fail(struct gw_upstream *u, enum gw_condition cond, bool tls_failure, const char *fmt,
                 ...)
{
    if (u->state == ST_CLOSED)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    GW_WARN(&u->ctx->log, u->sid, u->jid, "upstream %s:%u (%s) failed: %s", u->addr.host,
            u->addr.port, u->domain, text);
    if (tls_failure)
        u->ctx->metrics.upstream_tls_failures++;
    else
        u->ctx->metrics.upstream_failures++;
    report_closed(u, &(struct gw_close_reason){.cond = cond, .text = text});
    teardown(u, false);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct gw_upstream *u = req->data;
    u->pending--;
    close_handles(u);
    maybe_free(u);
}

static void on_close_grace(uv_timer_t *t)
{
    struct gw_upstream *u = t->data;
    close_handles(u);
}

/* Stop everything; send </stream:stream> first when asked and a stream is up. */
static void teardown(struct gw_upstream *u, bool send_close)
{
    if (u->state == ST_CLOSED)
        return;
    enum state was = u->state;
    u->state = ST_CLOSED;
    u->ops = NULL;
    if (was == ST_RESOLVING) {
        uv_cancel((uv_req_t *)&u->gai);
    }
    if (u->tcp_open && u->reading) {
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = false;
    }
    bool streaming = was >= ST_STREAM && was != ST_HANDSHAKE && u->tcp_open;
    if (send_close && streaming) {
        (void)send_bytes(u, "</stream:stream>", 16);
        if (u->tls)
            gw_tls_close_notify(u->tls);
    }
    flush(u); /* what this turn gathered goes before the shutdown */
    if (streaming && u->tcp_open) {
        /* Let queued bytes (our close tag) leave before the socket closes; the timer bounds it. */
        u->shut.data = u;
        if (uv_shutdown(&u->shut, (uv_stream_t *)&u->tcp, on_shutdown) == 0) {
            u->pending++;
            if (u->timer_open) {
                uv_timer_stop(&u->timer);
                uv_timer_start(&u->timer, on_close_grace, CLOSE_GRACE_MS, 0);
            }
            return;
        }
    }
    close_handles(u);
}

void gw_upstream_close(struct gw_upstream *u)
{
    if (!u)
        return;
    teardown(u, true);
    maybe_free(u);
}

void gw_upstream_abort(struct gw_upstream *u)
{
    if (!u)
        return;
    teardown(u, false);
    maybe_free(u);
}

/* ---- parser callbacks ---- */

static bool want_tree(void *ud, const char *ns, const char *name)
{
    struct gw_upstream *u = ud;
    if (strcmp(ns, GW_NS_STREAM) == 0)
        return true; /* features, error */
    if (strcmp(ns, GW_NS_TLS) == 0)
        return true;
    if (!u->jid && strcmp(ns, GW_NS_CLIENT) == 0 && strcmp(name, "iq") == 0)
        return true;
    /* Stream management's answers the session reads (XEP-0198): not the frequent <r/> and <a/>. */
    if (strcmp(ns, GW_NS_SM) == 0)
        return strcmp(name, "enabled") == 0 || strcmp(name, "resumed") == 0;
    return false;
}

static void copy_attr(char *dst, size_t n, const char *v)
{
    snprintf(dst, n, "%s", v ? v : "");
}

static void on_open(void *ud, const char *ns, const char *name, const struct gw_xml_attr *attrs,
                    unsigned n_attrs)
{
    struct gw_upstream *u = ud;
    if (strcmp(ns, GW_NS_STREAM) != 0 || strcmp(name, "stream") != 0) {
        fail(u, GW_COND_remote_connection_failed, false,
             "upstream sent <%s/> instead of a stream header", name);
        return;
    }
    struct stream_hdr *h = u->hdr ? u->hdr : malloc(sizeof(*h));
    if (!h) {
        fail(u, GW_COND_internal_server_error, false, "out of memory");
        return;
    }
    u->hdr = h;
    copy_attr(h->id, sizeof(h->id), gw_xml_attr(attrs, n_attrs, "id"));
    copy_attr(h->from, sizeof(h->from), gw_xml_attr(attrs, n_attrs, "from"));
    copy_attr(h->version, sizeof(h->version), gw_xml_attr(attrs, n_attrs, "version"));
    const char *lang = gw_xml_attr(attrs, n_attrs, "xml:lang");
    copy_attr(h->lang, sizeof(h->lang), lang ? lang : u->lang);
    if (strcmp(h->version, "1.0") != 0) {
        fail(u, GW_COND_remote_connection_failed, false, "upstream stream version '%s' is not 1.0",
             h->version);
        return;
    }
    u->header_seen = true;
}

static void start_tls(struct gw_upstream *u, const char *data, size_t len);

/* Hand the features up, with <starttls/> cut out. */
static void features_ready(struct gw_upstream *u, const struct gw_xml_stanza *st)
{
    if (!u->hdr) {
        fail(u, GW_COND_remote_connection_failed, false, "upstream sent features without a header");
        return;
    }
    const struct gw_xml_node *tls = gw_xml_child(st->tree, GW_NS_TLS, "starttls");
    struct gw_buf b;
    gw_buf_init(&b, st->len + 1);
    int rc = 0;
    if (tls) {
        rc = gw_buf_append(&b, st->bytes, tls->start);
        if (!rc)
            rc = gw_buf_append(&b, st->bytes + tls->end, st->len - tls->end);
    } else {
        rc = gw_buf_append(&b, st->bytes, st->len);
    }
    if (rc) {
        gw_buf_cleanup(&b);
        fail(u, GW_COND_internal_server_error, false, "out of memory");
        return;
    }
    bool first = u->state != ST_RESTART;
    u->state = ST_READY;
    if (first) {
        u->ctx->metrics.upstream_connected++;
        if (u->timer_open)
            uv_timer_stop(&u->timer);
    }
    struct stream_hdr *h = u->hdr;
    u->hdr = NULL;
    struct gw_stream_info hdr = {
        .id = h->id,
        .from = h->from[0] ? h->from : u->domain,
        .version = h->version,
        .lang = h->lang,
    };
    GW_DEBUG(&u->ctx->log, u->sid, u->jid, "upstream stream %s ready (%s)", h->id,
             u->tls ? gw_tls_version(u->tls) : "plain");
    if (u->ops)
        u->ops->on_features(u->ud, &hdr, gw_buf_ptr(&b), gw_buf_size(&b), st->tree);
    gw_buf_cleanup(&b);
    free(h);
}

static void on_features(struct gw_upstream *u, const struct gw_xml_stanza *st)
{
    if (u->state == ST_STREAM && u->tls_mode == GW_UPSTREAM_TLS_STARTTLS) {
        if (!gw_xml_child(st->tree, GW_NS_TLS, "starttls")) {
            fail(u, GW_COND_remote_connection_failed, true,
                 "upstream does not offer STARTTLS, and upstream tls is 'starttls'");
            return;
        }
        static const char req[] = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
        if (send_bytes(u, req, sizeof(req) - 1) != 0) {
            fail(u, GW_COND_remote_connection_failed, false, "cannot write to upstream");
            return;
        }
        u->state = ST_STARTTLS;
        return;
    }
    if (u->state == ST_STREAM || u->state == ST_TLS_STREAM || u->state == ST_RESTART) {
        features_ready(u, st);
        return;
    }
    fail(u, GW_COND_remote_connection_failed, false, "upstream sent stream features out of turn");
}

static void on_stream_error(struct gw_upstream *u, const struct gw_xml_stanza *st)
{
    enum gw_condition cond = GW_COND_undefined_condition;
    const char *text = NULL;
    for (const struct gw_xml_node *c = st->tree ? st->tree->children : NULL; c; c = c->next) {
        if (strcmp(c->ns, GW_NS_STREAMS) != 0)
            continue;
        enum gw_condition named = gw_condition_from_name(c->name);
        if (strcmp(c->name, "text") == 0)
            text = c->text;
        else if (gw_condition_is_stream(named))
            cond = named;
    }
    GW_WARN(&u->ctx->log, u->sid, u->jid, "upstream stream error: %s%s%s", gw_condition_name(cond),
            text ? ": " : "", text ? text : "");
    u->ctx->metrics.upstream_failures++;
    report_closed(u, &(struct gw_close_reason){
                         .cond = cond, .text = text, .err_xml = st->bytes, .err_len = st->len});
    teardown(u, true);
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_upstream *u = ud;
    if (u->state == ST_CLOSED)
        return;
    if (strcmp(st->ns, GW_NS_STREAM) == 0) {
        if (strcmp(st->name, "features") == 0)
            on_features(u, st);
        else if (strcmp(st->name, "error") == 0)
            on_stream_error(u, st);
        else
            fail(u, GW_COND_remote_connection_failed, false, "upstream sent unknown <stream:%s/>",
                 st->name);
        return;
    }
    if (u->state == ST_STARTTLS) {
        if (strcmp(st->ns, GW_NS_TLS) == 0 && strcmp(st->name, "proceed") == 0) {
            u->after_pause = AFTER_TLS;
            gw_xml_pause(u->xml);
        } else {
            fail(u, GW_COND_remote_connection_failed, true, "upstream refused STARTTLS (<%s/>)",
                 st->name);
        }
        return;
    }
    if (u->state != ST_READY) {
        fail(u, GW_COND_remote_connection_failed, false, "upstream sent <%s/> before its features",
             st->name);
        return;
    }
    if (u->ops)
        u->ops->on_stanza(u->ud, st);
}

static void on_close(void *ud)
{
    struct gw_upstream *u = ud;
    GW_INFO(&u->ctx->log, u->sid, u->jid, "upstream closed its stream");
    report_closed(u, &(struct gw_close_reason){.cond = GW_COND_NONE});
    teardown(u, true);
}

static const struct gw_xml_callbacks xml_cb = {
    .on_open = on_open,
    .want_tree = want_tree,
    .on_stanza = on_stanza,
    .on_close = on_close,
};

/* ---- reading ---- */

static void process_plain(struct gw_upstream *u, const char *data, size_t len)
{
    while (len > 0 && u->state != ST_CLOSED) {
        size_t consumed = len;
        u->after_pause = AFTER_NONE;
        int rc = gw_xml_feed(u->xml, data, len, &consumed);
        if (u->state == ST_CLOSED)
            return;
        if (rc) {
            fail(u, GW_COND_remote_connection_failed, false, "upstream sent bad XML (%s: %s)",
                 gw_xml_error_condition(u->xml), gw_xml_error_text(u->xml));
            return;
        }
        if (u->after_pause == AFTER_NONE)
            return;
        if (consumed > len)
            consumed = len;
        data += consumed;
        len -= consumed;
        enum after_pause what = u->after_pause;
        u->after_pause = AFTER_NONE;
        if (gw_xml_reset(u->xml) != 0) {
            fail(u, GW_COND_internal_server_error, false, "cannot reset the stream parser");
            return;
        }
        if (what == AFTER_TLS) {
            start_tls(u, data, len);
            return;
        }
        if (what == AFTER_STREAM)
            u->state = ST_RESTART; /* gw_upstream_restart() sends (or sent) our new header */
    }
}

static bool tls_up(void *ud)
{
    struct gw_upstream *u = ud;
    GW_INFO(&u->ctx->log, u->sid, u->jid, "upstream TLS up: %s %s, certificate verified for %s",
            gw_tls_version(u->tls), gw_tls_cipher(u->tls), u->domain);
    return open_stream(u) == 0;
}

static bool tls_plain(void *ud, const char *data, size_t len)
{
    struct gw_upstream *u = ud;
    process_plain(u, data, len);
    return u->state != ST_CLOSED;
}

static const struct gw_tls_ops tls_ops = {.send = tls_send, .on_up = tls_up, .on_plain = tls_plain};

static void tls_failed(struct gw_upstream *u, int rc)
{
    if (rc == GW_ECLOSED)
        fail(u, GW_COND_remote_connection_failed, false, "upstream ended TLS without closing");
    else if (rc == GW_ENOMEM)
        fail(u, GW_COND_internal_server_error, true, "cannot buffer TLS data");
    else if (rc == GW_EIO)
        fail(u, GW_COND_remote_connection_failed, true, "cannot write to upstream");
    else
        fail(u, GW_COND_remote_connection_failed, true, "%s", gw_tls_error(u->tls));
}

/* Bytes from the socket: through the TLS layer when there is one, then to the parser. */
static void receive(struct gw_upstream *u, const char *data, size_t len)
{
    if (!u->tls) {
        process_plain(u, data, len);
        return;
    }
    int rc = gw_tls_feed(u->tls, data, len, u->ctx->tls_buf, GW_CTX_TLS_BUF);
    if (rc)
        tls_failed(u, rc);
}

/* After <proceed/> with the bytes that followed it, or at once for direct TLS (none). */
static void start_tls(struct gw_upstream *u, const char *data, size_t len)
{
    char err[320];
    /* The certificate must name the XMPP domain (RFC 6120 13.7.2.1), not the host we dial. */
    u->tls = gw_tls_new(u->ctx->upstream_tls, u->domain, &tls_ops, u, err, sizeof(err));
    if (!u->tls) {
        fail(u, GW_COND_internal_server_error, true, "%s", err);
        return;
    }
    u->state = ST_HANDSHAKE;
    receive(u, data, len); /* len 0 sends the ClientHello */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct gw_upstream *u = h->data;
    /* One read buffer for the whole loop: libuv fills it and calls on_read before the next read. */
    *buf = uv_buf_init(u->ctx->read_buf, GW_CTX_READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct gw_upstream *u = s->data;
    if (n == 0)
        return;
    if (n < 0) {
        if (n == UV_EOF)
            fail(u, GW_COND_remote_connection_failed, false, "upstream closed the connection");
        else
            fail(u, GW_COND_remote_connection_failed, false, "upstream read failed: %s",
                 uv_strerror((int)n));
        maybe_free(u);
        return;
    }
    receive(u, buf->base, (size_t)n);
    maybe_free(u);
}

static void update_reading(struct gw_upstream *u)
{
    if (!u->tcp_open || u->state < ST_STREAM || u->state == ST_CLOSED)
        return;
    bool want = !u->read_paused;
    if (want && !u->reading) {
        if (uv_read_start((uv_stream_t *)&u->tcp, on_alloc, on_read) == 0)
            u->reading = true;
    } else if (!want && u->reading) {
        uv_read_stop((uv_stream_t *)&u->tcp);
        u->reading = false;
    }
}

void gw_upstream_pause_reading(struct gw_upstream *u, bool pause)
{
    u->read_paused = pause;
    update_reading(u);
}

/* ---- connecting ---- */

static void on_timeout(uv_timer_t *t)
{
    struct gw_upstream *u = t->data;
    fail(u, GW_COND_remote_connection_failed, false, "no stream from upstream within %u s (%s)",
         u->ctx->cfg->connect_timeout, state_names[u->state]);
    maybe_free(u);
}

/* A failed socket's handle is reusable only once closed: the next address is tried from the close
 * callback. */
static void on_tcp_closed_retry(uv_handle_t *h)
{
    struct gw_upstream *u = h->data;
    u->tcp_open = false;
    if (u->state == ST_CLOSED)
        maybe_free(u);
    else
        try_next_address(u);
}

static void retry_closed_handle(struct gw_upstream *u)
{
    uv_close((uv_handle_t *)&u->tcp, on_tcp_closed_retry);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct gw_upstream *u = req->data;
    u->pending--;
    if (u->state == ST_CLOSED) {
        maybe_free(u);
        return;
    }
    if (status < 0) {
        if (status == UV_ECANCELED) {
            maybe_free(u);
            return;
        }
        if (u->next_addr) {
            GW_DEBUG(&u->ctx->log, u->sid, u->jid, "upstream connect failed (%s), next address",
                     uv_strerror(status));
            retry_closed_handle(u);
            return;
        }
        fail(u, GW_COND_remote_connection_failed, false, "cannot connect to %s:%u: %s",
             u->addr.host, u->addr.port, uv_strerror(status));
        maybe_free(u);
        return;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    /* Notice an upstream that vanished without a FIN (crash, network cut) on an idle stream. */
    uv_tcp_keepalive(&u->tcp, 1, 60);
    GW_DEBUG(&u->ctx->log, u->sid, u->jid, "upstream connected to %s:%u", u->addr.host,
             u->addr.port);
    if (u->tls_mode == GW_UPSTREAM_TLS_OFF) {
        u->state = ST_STREAM;
        update_reading(u);
        (void)open_stream(u);
        maybe_free(u);
        return;
    }
    progress(u, GW_UPSTREAM_CONNECTED);
    if (u->state == ST_CLOSED) {
        maybe_free(u);
        return;
    }
    if (u->tls_mode == GW_UPSTREAM_TLS_DIRECT) {
        u->state = ST_HANDSHAKE;
        update_reading(u);
        start_tls(u, NULL, 0);
    } else {
        u->state = ST_STREAM;
        update_reading(u);
        if (send_header(u) != 0)
            fail(u, GW_COND_remote_connection_failed, false, "cannot write to upstream");
    }
    maybe_free(u);
}

static void try_next_address(struct gw_upstream *u)
{
    struct addrinfo *ai = u->next_addr;
    u->next_addr = ai ? ai->ai_next : NULL;
    if (!ai) {
        fail(u, GW_COND_remote_connection_failed, false, "no address for %s", u->addr.host);
        return;
    }
    if (uv_tcp_init(u->ctx->loop, &u->tcp) != 0) {
        fail(u, GW_COND_internal_server_error, false, "cannot create a socket");
        return;
    }
    u->tcp.data = u;
    u->tcp_open = true;
    u->conn.data = u;
    int rc = uv_tcp_connect(&u->conn, &u->tcp, ai->ai_addr, on_connected);
    if (rc < 0) {
        if (u->next_addr) {
            retry_closed_handle(u);
            return;
        }
        fail(u, GW_COND_remote_connection_failed, false, "cannot connect to %s:%u: %s",
             u->addr.host, u->addr.port, uv_strerror(rc));
        return;
    }
    u->pending++;
    u->state = ST_CONNECTING;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct gw_upstream *u = req->data;
    u->pending--;
    if (u->state == ST_CLOSED) {
        if (res)
            uv_freeaddrinfo(res);
        maybe_free(u);
        return;
    }
    if (status < 0 || !res) {
        fail(u, GW_COND_remote_connection_failed, false, "cannot resolve upstream host '%s': %s",
             u->addr.host, uv_strerror(status));
        maybe_free(u);
        return;
    }
    u->addrs = res;
    u->next_addr = res;
    try_next_address(u);
    maybe_free(u);
}

struct gw_upstream *gw_upstream_open(struct gw_ctx *ctx, const struct gw_upstream_cfg *cfg,
                                     const char *domain, const char *lang,
                                     const struct gw_upstream_ops *ops, void *ud,
                                     const char *log_sid)
{
    struct gw_upstream *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->ctx = ctx;
    u->addr = cfg->addr;
    u->tls_mode = cfg->tls;
    snprintf(u->domain, sizeof(u->domain), "%s", domain);
    snprintf(u->lang, sizeof(u->lang), "%s", lang && *lang ? lang : "en");
    snprintf(u->sid, sizeof(u->sid), "%s", log_sid ? log_sid : "");
    u->ops = ops;
    u->ud = ud;
    struct gw_xml_opts xo = {
        .mode = GW_XML_STREAM,
        .limits = {.max_stanza = ctx->cfg->max_stanza,
                   .max_depth = ctx->cfg->max_depth,
                   .max_attrs = ctx->cfg->max_attrs},
        .inject_context = true,
        .release_idle = true, /* an idle session holds no expat (docs/design-notes.md) */
    };
    u->xml = gw_xml_new(&xo, &xml_cb, u);
    if (!u->xml) {
        free(u);
        return NULL;
    }
    uv_timer_init(ctx->loop, &u->timer);
    u->timer.data = u;
    u->timer_open = true;
    uv_timer_start(&u->timer, on_timeout, (uint64_t)ctx->cfg->connect_timeout * 1000, 0);

    ctx->metrics.upstream_connects++;
    u->state = ST_RESOLVING;
    u->gai.data = u;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->addr.port);
    int rc = uv_getaddrinfo(ctx->loop, &u->gai, on_resolved, cfg->addr.host, port, &hints);
    if (rc < 0) {
        /* Report through the loop like any other failure: callers get no synchronous callback. */
        u->state = ST_CLOSED;
        u->ops = NULL;
        close_handles(u);
        return NULL;
    }
    u->pending++;
    return u;
}

int gw_upstream_send(struct gw_upstream *u, const char *bytes, size_t len)
{
    if (u->state == ST_CLOSED)
        return GW_ECLOSED;
    if (u->state != ST_READY)
        return GW_EAGAIN;
    if (u->queued + len > u->ctx->cfg->send_queue)
        return GW_ELIMIT;
    return send_bytes(u, bytes, len);
}

void gw_upstream_restart_after(struct gw_upstream *u)
{
    if (u->state != ST_READY || u->restart_due)
        return;
    u->restart_due = true;
    u->after_pause = AFTER_STREAM;
    gw_xml_pause(u->xml);
}

int gw_upstream_restart(struct gw_upstream *u)
{
    if (u->state == ST_CLOSED)
        return GW_ECLOSED;
    if (!u->restart_due)
        return GW_EPROTO;
    u->restart_due = false;
    return send_header(u);
}

bool gw_upstream_is_tls(const struct gw_upstream *u)
{
    return u->tls && gw_tls_is_up(u->tls);
}

void gw_upstream_set_jid(struct gw_upstream *u, const char *jid)
{
    char *j = strdup(jid);
    if (!j)
        return;
    free(u->jid);
    u->jid = j;
}

struct ssl_ctx_st *gw_upstream_tls_ctx_new(const char *ca_file, char *err, size_t errlen)
{
    return gw_tls_ctx_new(ca_file, err, errlen);
}
