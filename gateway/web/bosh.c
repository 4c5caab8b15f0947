/* BOSH on libwebsockets: HTTP requests in, held (parked) until the session has something to say
 * or `wait` passes, answered in the WRITEABLE callback. One struct bsess per BOSH session, found
 * by sid, with its held requests (rid order), requests that came early (rid gap), the stanzas
 * waiting for the next answer, the rid log (replays) and one uv timer for every deadline (wait,
 * inactivity, pause, tombstone). When upstream ends a session its bsess stays a while as a
 * tombstone that answers the condition, then goes. Memory of a bsess is freed from its timer's
 * close callback, never inside another callback.
 * Calls: session, web helpers (http.c), bosh_proto, config, core. */
#include "web/bosh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/strmap.h"
#include "session/session.h"
#include "web/bosh_proto.h"
#include "web/web.h"

#define CT_XML "text/xml; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"
#define CORS_MAX 768        /* CORS header lines kept per request */
#define TOMB_MIN_S 5        /* a tombstone lives `inactivity` seconds, at least this */
#define DRAIN_FACTOR 4      /* bodies up to 4x bosh.max_body are read and dropped (413) */
#define CREATION_SLACK_S 10 /* beyond connect_timeout before a creation request gives up */

enum req_state {
    RQ_READING, /* the body is arriving */
    RQ_WAITING, /* came before its turn (a rid gap): in bs->waiting */
    RQ_HELD,    /* processed: in bs->held, waiting for data or its deadline */
    RQ_ANSWER,  /* to be answered in the next WRITEABLE callback */
};

struct bsess;
struct pss;

/* One HTTP request on the BOSH path. */
struct req {
    struct lws *wsi;         /* NULL once the browser went away */
    struct pss *pss;         /* the connection's user data that points here */
    struct bsess *bs;        /* set while on one of bs's lists */
    struct req *prev, *next; /* on bs->held or bs->waiting */
    enum req_state state;
    uint64_t rid;
    uint64_t deadline_ms; /* RQ_HELD: answer at this time (0: none) */
    bool creation;        /* the session creation request */
    bool fixed;           /* resp is the whole answer (errors, replays, terminate) */
    unsigned status;      /* HTTP status of a fixed answer */
    const char *ctype;    /* content type of a fixed answer */
    struct gw_buf resp;   /* the answer */
    bool has_report;      /* XEP-0124 section 9.3: a response the client says it lost */
    uint64_t report, report_time;
    uint64_t content_length;  /* as announced */
    bool discard;             /* over bosh.max_body: read and drop, then 413 */
    bool nomem;               /* the body could not be kept */
    struct gw_buf raw;        /* the body as read */
    bool has_body;            /* body below is initialised */
    struct gw_bosh_body body; /* parsed (kept by an early request until its turn) */
    char cors[CORS_MAX];      /* CORS header lines for the answer */
    char peer[64];            /* client address */
};

struct pss {
    struct req *req; /* the request in progress on this connection, NULL between requests */
};

struct req_list {
    struct req *head, *tail; /* ascending rid */
    unsigned n;
};

enum bs_state {
    BS_CONNECTING, /* waiting for the upstream's first features (creation request held) */
    BS_OPEN,       /* creation answered */
    BS_CLOSED,     /* upstream ended it: a tombstone */
};

struct bsess {
    struct gw_bosh *b;
    struct gw_session *s; /* NULL once detached from the core session */
    char sid[GW_SID_LEN + 1];
    enum bs_state state;
    bool dead;                     /* out of the table, memory freed when the timer closes */
    struct gw_bosh_params p;       /* negotiated at creation */
    bool use_key;                  /* the client started a key chain */
    char key[GW_BOSH_KEY_MAX + 1]; /* the last key (or newkey) seen */
    uint64_t last_rid;             /* every rid up to this one was processed */
    uint64_t hi_answered;          /* highest rid answered */
    struct gw_bosh_order order;    /* which answers may carry stanzas */
    struct gw_bosh_ridlog log;     /* recent rids and their answers */
    struct req_list held;          /* processed, not yet answered */
    struct req_list waiting;       /* arrived early */
    struct gw_buf out;             /* stanzas for the client, not yet in an answer */
    bool out_paused;               /* deliver() said GW_EAGAIN: resume when drained */
    struct gw_buf up;              /* client stanzas the session could not take yet */
    struct gw_buf features;        /* for the creation answer */
    char authid[256];              /* upstream stream id */
    char from[256];                /* XMPP domain as upstream names itself */
    char *jid;                     /* bound JID kept for log lines after detaching, or NULL */
    struct gw_bosh_activity act;   /* overactivity rule */
    uint64_t idle_since;           /* the inactivity clock runs from here when nothing is held */
    uint64_t idle_ms;              /* inactivity limit (a pause raises it until the next request) */
    uint64_t creation_deadline;    /* BS_CONNECTING: give up then */
    const char *cond;              /* BS_CLOSED: the terminate condition (NULL: clean close) */
    struct gw_buf err_xml;         /* BS_CLOSED: upstream's <stream:error/> */
    uint64_t tomb_until;           /* BS_CLOSED: forget the session then */
    const char *fail_cond;         /* an end decided inside a sink callback, done from the timer */
    uv_timer_t timer;
    struct gw_strmap_node in_table; /* in gw_bosh.table, by sid */
};

struct gw_bosh {
    struct gw_ctx *ctx;
    struct gw_strmap table; /* sid -> bsess */
    struct gw_bosh_parser *parser;
    struct gw_xml_limits limits; /* the parser's limits (rebuilt when the configuration changes) */
    bool shutting_down;
};

static const struct gw_sink_ops sink_ops;

static uint64_t now_ms(const struct gw_bosh *b)
{
    return uv_now(b->ctx->loop);
}

static const char *bs_jid(const struct bsess *bs)
{
    if (bs->s)
        return gw_session_jid(bs->s);
    return bs->jid ? bs->jid : NULL;
}

/* Stanzas waiting for the client: deliver() says GW_EAGAIN at send_queue, but what upstream
 * already read still comes. */
static size_t out_max(const struct gw_config *cfg)
{
    return cfg->send_queue * 2 + cfg->max_stanza;
}

/* One answer: the stanzas waiting, stream features or a stream error, and the body's tags. */
static size_t resp_max(const struct gw_config *cfg)
{
    return out_max(cfg) + cfg->max_stanza + 65536;
}

/* ---- the sid table ---- */

static struct bsess *table_find(struct gw_bosh *b, const char *sid)
{
    struct gw_strmap_node *n = gw_strmap_find(&b->table, sid);
    return n ? GW_CONTAINER_OF(n, struct bsess, in_table) : NULL;
}

/* ---- request lists (ascending rid) ---- */

static void list_insert(struct req_list *l, struct req *r)
{
    struct req *at = l->tail;
    while (at && at->rid > r->rid)
        at = at->prev;
    r->prev = at;
    r->next = at ? at->next : l->head;
    if (r->next)
        r->next->prev = r;
    else
        l->tail = r;
    if (at)
        at->next = r;
    else
        l->head = r;
    l->n++;
}

static void list_remove(struct req_list *l, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

/* Take the first request off a session list (NULL when empty). */
static struct req *list_pop(struct req_list *l)
{
    struct req *r = l->head;
    if (!r)
        return NULL;
    l->head = r->next;
    if (l->head)
        l->head->prev = NULL;
    else
        l->tail = NULL;
    l->n--;
    r->prev = r->next = NULL;
    r->bs = NULL;
    return r;
}

static struct req *list_find(const struct req_list *l, uint64_t rid)
{
    for (struct req *r = l->head; r; r = r->next)
        if (r->rid == rid)
            return r;
    return NULL;
}

/* ---- requests ---- */

static void req_free(struct req *r)
{
    if (r->pss)
        r->pss->req = NULL;
    gw_buf_cleanup(&r->raw);
    gw_buf_cleanup(&r->resp);
    if (r->has_body)
        gw_bosh_body_cleanup(&r->body);
    free(r);
}

/* Take r off its session's lists. */
static void req_detach(struct req *r)
{
    struct bsess *bs = r->bs;
    if (!bs)
        return;
    if (r->state == RQ_WAITING)
        list_remove(&bs->waiting, r);
    else
        list_remove(&bs->held, r);
    r->bs = NULL;
}

/* Close a request's connection without an answer (a repeat took its place). */
static void req_kill(struct req *r)
{
    req_detach(r);
    if (r->wsi)
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
    req_free(r);
}

/* Answer r with a complete body of its own, off any session. */
static void answer_fixed(struct req *r, unsigned status, const char *ctype, const char *body,
                         size_t len)
{
    req_detach(r);
    r->fixed = true;
    r->status = status;
    r->ctype = ctype;
    gw_buf_reset(&r->resp);
    if (len && gw_buf_append(&r->resp, body, len) != 0) {
        r->status = 503; /* no memory for the answer */
        r->ctype = CT_TEXT;
        gw_buf_reset(&r->resp);
    }
    r->state = RQ_ANSWER;
    if (r->wsi)
        lws_callback_on_writable(r->wsi);
    else
        req_free(r);
}

static void count_condition(struct gw_ctx *ctx, const char *cond)
{
    if (cond)
        gw_metrics_count_condition(&ctx->metrics, gw_condition_from_name(cond));
}

/* A terminate body with cond (NULL: none), an element inside it (the upstream's stream error)
 * and payload for the client. */
static int build_terminate(struct gw_buf *out, const char *cond, const char *inner,
                           size_t inner_len, const char *payload, size_t len)
{
    struct gw_bosh_reply r = {.terminate = true, .condition = cond};
    if (!inner_len)
        return gw_bosh_build_reply(out, &r, payload, len);
    /* Payload first, then the error element, inside one body. */
    struct gw_buf tmp;
    gw_buf_init(&tmp, len + inner_len + 1);
    int rc = gw_buf_append(&tmp, payload, len);
    if (!rc)
        rc = gw_buf_append(&tmp, inner, inner_len);
    if (!rc)
        rc = gw_bosh_build_reply(out, &r, gw_buf_ptr(&tmp), gw_buf_size(&tmp));
    gw_buf_cleanup(&tmp);
    return rc;
}

/* Answer r with a terminal binding error. */
static void answer_error(struct gw_ctx *ctx, struct req *r, const char *cond, bool legacy,
                         unsigned status)
{
    struct gw_buf body;
    gw_buf_init(&body, 4096);
    count_condition(ctx, cond);
    if (build_terminate(&body, cond, NULL, 0, NULL, 0) != 0) {
        answer_fixed(r, 503, CT_TEXT, NULL, 0);
    } else {
        answer_fixed(r, status ? status : gw_bosh_error_status(cond, legacy), CT_XML,
                     gw_buf_ptr(&body), gw_buf_size(&body));
    }
    gw_buf_cleanup(&body);
}

/* ---- session lifetime ---- */

static void on_timer(uv_timer_t *t);
static void on_gone(struct gw_bosh *b, struct pss *pss);

static void on_timer_closed(uv_handle_t *h)
{
    struct bsess *bs = h->data;
    gw_bosh_ridlog_cleanup(&bs->log);
    gw_buf_cleanup(&bs->out);
    gw_buf_cleanup(&bs->up);
    gw_buf_cleanup(&bs->features);
    gw_buf_cleanup(&bs->err_xml);
    free(bs->jid);
    free(bs);
}

/* The earliest deadline of the session decides when its timer fires. */
static void reschedule(struct bsess *bs)
{
    if (bs->dead)
        return;
    uint64_t now = now_ms(bs->b), next = UINT64_MAX;
    if (bs->fail_cond) {
        next = now;
    } else if (bs->state == BS_CLOSED) {
        next = bs->tomb_until;
    } else {
        if (bs->state == BS_CONNECTING)
            next = bs->creation_deadline;
        for (struct req *r = bs->held.head; r; r = r->next)
            if (r->state == RQ_HELD && r->deadline_ms && r->deadline_ms < next)
                next = r->deadline_ms;
        if (bs->held.n == 0 && bs->waiting.n == 0 && bs->idle_since + bs->idle_ms < next)
            next = bs->idle_since + bs->idle_ms;
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&bs->timer);
        return;
    }
    uv_timer_start(&bs->timer, on_timer, next > now ? next - now : 0, 0);
}

/* Out of the table; the memory goes when the timer has closed. Requests still on the lists are
 * answered `cond` (they should have been answered before). */
static void destroy(struct bsess *bs, const char *cond)
{
    if (bs->dead)
        return;
    struct gw_ctx *ctx = bs->b->ctx;
    struct req *r;
    while ((r = list_pop(&bs->held)) || (r = list_pop(&bs->waiting)))
        answer_error(ctx, r, cond ? cond : "other-request", bs->p.legacy, 0);
    if (bs->s) {
        gw_session_end(bs->s, GW_COND_NONE);
        bs->s = NULL;
    }
    bs->dead = true;
    gw_strmap_del(&bs->b->table, &bs->in_table);
    uv_timer_stop(&bs->timer);
    uv_close((uv_handle_t *)&bs->timer, on_timer_closed);
}

/* The client broke a rule (or the gateway failed it): end the session with cond, answer the
 * request at fault with cond and every other held request with other-request. */
static void end_session(struct bsess *bs, struct req *r, const char *cond)
{
    struct gw_ctx *ctx = bs->b->ctx;
    GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "BOSH session ended: %s", cond);
    if (bs->s) {
        gw_session_end(bs->s, gw_condition_from_name(cond));
        bs->s = NULL;
    }
    if (r)
        answer_error(ctx, r, cond, bs->p.legacy, 0);
    destroy(bs, "other-request");
}

/* Remember the JID for log lines once the core session is gone. */
static void keep_jid(struct bsess *bs)
{
    if (bs->s && !bs->jid && *gw_session_jid(bs->s))
        bs->jid = strdup(gw_session_jid(bs->s));
}

/* ---- answering ---- */

/* r (held) is to be answered now; its body is composed when the connection can take it. */
static void release(struct req *r)
{
    r->state = RQ_ANSWER;
    r->deadline_ms = 0;
    if (r->wsi)
        lws_callback_on_writable(r->wsi);
}

/* Data for the client: the oldest held request answers at once. */
static void wake(struct bsess *bs)
{
    struct req *r = bs->held.head;
    if (r && r->state == RQ_HELD && !(r->creation && bs->state == BS_CONNECTING))
        release(r);
}

/* No more than `hold` requests wait: the oldest go first. */
static void enforce_hold(struct bsess *bs)
{
    unsigned waiting = 0;
    for (struct req *r = bs->held.head; r; r = r->next)
        if (r->state == RQ_HELD)
            waiting++;
    for (struct req *r = bs->held.head; r && waiting > bs->p.hold; r = r->next) {
        if (r->state != RQ_HELD || (r->creation && bs->state == BS_CONNECTING))
            continue;
        release(r);
        waiting--;
    }
}

/* The socket of a connection, to tell connections apart (-1: none). */
static int wsi_fd(struct lws *wsi)
{
    return wsi ? (int)lws_get_socket_fd(wsi) : -1;
}

/* Compose the answer of a held request: the stanzas waiting go to the oldest request, when
 * gw_bosh_order_allowed() (see bosh_proto.h). *empty: the answer is empty and the client was not
 * meant to come back at once (the overactivity rule counts it). */
static int compose(struct bsess *bs, struct req *r, bool *empty)
{
    const struct gw_config *cfg = bs->b->ctx->cfg;
    bool oldest = r == bs->held.head;
    bool take = oldest && (r->creation || gw_bosh_order_allowed(&bs->order));
    const char *payload = take ? gw_buf_ptr(&bs->out) : "";
    size_t plen = take ? gw_buf_size(&bs->out) : 0;
    int rc;
    gw_buf_cleanup(&r->resp);
    gw_buf_init(&r->resp, resp_max(cfg));
    if (r->creation) {
        struct gw_buf all;
        gw_buf_init(&all, out_max(cfg) + gw_buf_size(&bs->features) + 1);
        rc = gw_buf_append(&all, gw_buf_ptr(&bs->features), gw_buf_size(&bs->features));
        if (!rc)
            rc = gw_buf_append(&all, payload, plen);
        struct gw_bosh_creation c = {.params = &bs->p,
                                     .sid = bs->sid,
                                     .from = bs->from,
                                     .authid = bs->authid,
                                     .has_ack = bs->p.ack,
                                     .ack = r->rid};
        if (!rc)
            rc = gw_bosh_build_creation(&r->resp, &c, gw_buf_ptr(&all), gw_buf_size(&all));
        gw_buf_cleanup(&all);
        gw_buf_cleanup(&bs->features);
        *empty = false;
    } else {
        struct gw_bosh_reply rep = {0};
        if (bs->p.ack && r->rid < bs->last_rid) {
            rep.has_ack = true;
            rep.ack = bs->last_rid;
        }
        if (r->has_report) {
            rep.has_report = true;
            rep.report = r->report;
            rep.time_ms = r->report_time;
        }
        rc = gw_bosh_build_reply(&r->resp, &rep, payload, plen);
        /* Held back for order: the client is to come back at once for the stanzas. */
        *empty = plen == 0 && !(oldest && gw_buf_size(&bs->out));
    }
    if (rc)
        return rc;
    if (take && plen)
        gw_bosh_order_sent(&bs->order, r->rid, wsi_fd(r->wsi));
    if (take) {
        gw_buf_reset(&bs->out);
        if (gw_buf_size(&bs->out) == 0 && bs->out.cap > 65536)
            gw_buf_cleanup(&bs->out);
    }
    return 0;
}

static int respond(struct lws *wsi, unsigned status, const char *ctype, const char *cors,
                   const char *extra, const char *body, size_t len, bool close)
{
    char hdr[CORS_MAX + 256];
    snprintf(hdr, sizeof(hdr), "%s%s%s", cors ? cors : "", extra ? extra : "",
             close ? "Connection: close\r\n" : "");
    int rc = gw_web_respond(wsi, status, ctype, hdr, body, len);
    return close ? -1 : rc;
}

static int on_writeable(struct lws *wsi, struct pss *pss)
{
    struct req *r = pss->req;
    if (!r || r->state != RQ_ANSWER)
        return 0;
    struct bsess *bs = r->bs;
    if (!r->fixed && bs) {
        struct gw_bosh *b = bs->b;
        uint64_t now = now_ms(b);
        bool empty = true;
        int rc = compose(bs, r, &empty);
        if (rc) {
            GW_WARN(&b->ctx->log, bs->sid, bs_jid(bs), "cannot compose an answer: %s",
                    gw_strerror(rc));
            end_session(bs, r, "internal-server-error");
            r = pss->req; /* answer_fixed kept it on this connection */
            if (!r)
                return 0;
        } else {
            if (gw_bosh_ridlog_answered(&bs->log, r->rid, gw_buf_ptr(&r->resp),
                                        gw_buf_size(&r->resp), now) != 0)
                GW_DEBUG(&b->ctx->log, bs->sid, bs_jid(bs), "rid %llu: answer not kept",
                         (unsigned long long)r->rid);
            if (r->rid > bs->hi_answered)
                bs->hi_answered = r->rid;
            gw_bosh_activity_answer(&bs->act, empty);
            req_detach(r);
            if (bs->held.n == 0 && bs->waiting.n == 0)
                bs->idle_since = now;
            if (bs->out_paused && gw_buf_size(&bs->out) < b->ctx->cfg->send_queue && bs->s) {
                bs->out_paused = false;
                gw_session_resume(bs->s);
            }
            /* The next held request may have data waiting for it already. */
            if (gw_buf_size(&bs->out))
                wake(bs);
            reschedule(bs);
            r->status = 200;
            r->ctype = CT_XML;
        }
    }
    pss->req = NULL;
    r->pss = NULL;
    r->wsi = NULL;
    int rc = respond(wsi, r->status ? r->status : 200, r->ctype ? r->ctype : CT_XML, r->cors, NULL,
                     gw_buf_ptr(&r->resp), gw_buf_size(&r->resp), false);
    req_free(r);
    return rc;
}

/* ---- tombstones ---- */

/* Answer r from a tombstone: the stanzas still waiting, then the condition. */
static void answer_tombstone(struct bsess *bs, struct req *r)
{
    struct gw_ctx *ctx = bs->b->ctx;
    struct gw_buf body;
    gw_buf_init(&body, out_max(ctx->cfg) + gw_buf_size(&bs->err_xml) + 4096);
    count_condition(ctx, bs->cond);
    int rc = build_terminate(&body, bs->cond, gw_buf_ptr(&bs->err_xml), gw_buf_size(&bs->err_xml),
                             gw_buf_ptr(&bs->out), gw_buf_size(&bs->out));
    if (rc) {
        answer_fixed(r, 503, CT_TEXT, NULL, 0);
    } else {
        gw_buf_cleanup(&bs->out);
        answer_fixed(r, gw_bosh_error_status(bs->cond, bs->p.legacy), CT_XML, gw_buf_ptr(&body),
                     gw_buf_size(&body));
    }
    gw_buf_cleanup(&body);
}

/* Upstream ended the session (or the gateway is shutting down): every request held gets the
 * condition (the oldest with the stanzas still waiting); later requests too, for a while. */
static void entomb(struct bsess *bs, const char *cond, const char *err_xml, size_t err_len)
{
    struct gw_bosh *b = bs->b;
    keep_jid(bs);
    bs->s = NULL;
    if (bs->state == BS_CONNECTING) {
        /* The client never learnt the sid: answer the creation request and forget. */
        struct req *r = list_pop(&bs->held);
        if (r)
            answer_error(b->ctx, r, cond ? cond : "remote-connection-failed", bs->p.legacy, 0);
        destroy(bs, "other-request");
        return;
    }
    bs->state = BS_CLOSED;
    bs->cond = cond;
    gw_buf_init(&bs->err_xml, b->ctx->cfg->max_stanza + 1);
    if (err_xml && err_len && gw_buf_append(&bs->err_xml, err_xml, err_len) != 0)
        gw_buf_cleanup(&bs->err_xml);
    struct req *r;
    while ((r = list_pop(&bs->held)) || (r = list_pop(&bs->waiting)))
        answer_tombstone(bs, r);
    unsigned keep = bs->p.inactivity > TOMB_MIN_S ? bs->p.inactivity : TOMB_MIN_S;
    bs->tomb_until = now_ms(b) + (uint64_t)keep * 1000;
    reschedule(bs);
}

/* ---- the session's sink ---- */

/* An end decided inside a sink callback runs from the timer, outside the session's callback. */
static void fail_later(struct bsess *bs, const char *cond)
{
    if (!bs->fail_cond)
        bs->fail_cond = cond;
    reschedule(bs);
}

static int flush_up(struct bsess *bs)
{
    if (!gw_buf_size(&bs->up) || !bs->s)
        return 0;
    int rc = gw_session_send(bs->s, gw_buf_ptr(&bs->up), gw_buf_size(&bs->up));
    if (rc == GW_EAGAIN)
        return 0;
    gw_buf_reset(&bs->up);
    return rc;
}

static void sink_stream_ready(void *t, const struct gw_stream_info *info, const char *features,
                              size_t len)
{
    struct bsess *bs = t;
    if (bs->dead || bs->state == BS_CLOSED)
        return;
    int rc;
    if (bs->state == BS_CONNECTING) {
        snprintf(bs->authid, sizeof(bs->authid), "%s", info && info->id ? info->id : "");
        snprintf(bs->from, sizeof(bs->from), "%s", info && info->from ? info->from : "");
        gw_buf_reset(&bs->features);
        rc = gw_buf_append(&bs->features, features, len);
        bs->state = BS_OPEN;
        if (!rc && bs->held.head && bs->held.head->creation)
            release(bs->held.head);
    } else {
        rc = gw_buf_append(&bs->out, features, len);
        wake(bs);
    }
    if (!rc)
        rc = flush_up(bs);
    if (rc)
        fail_later(bs, rc == GW_ELIMIT ? "policy-violation" : "internal-server-error");
    reschedule(bs);
}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    struct bsess *bs = t;
    if (bs->dead || bs->state == BS_CLOSED)
        return 0;
    const struct gw_config *cfg = bs->b->ctx->cfg;
    int rc = gw_buf_append(&bs->out, bytes, len);
    if (rc) {
        GW_WARN(&bs->b->ctx->log, bs->sid, bs_jid(bs), "client queue: %s", gw_strerror(rc));
        fail_later(bs, rc == GW_ELIMIT ? "policy-violation" : "internal-server-error");
        return GW_EAGAIN;
    }
    wake(bs);
    if (gw_buf_size(&bs->out) >= cfg->send_queue) {
        bs->out_paused = true;
        return GW_EAGAIN;
    }
    return 0;
}

static void sink_closed(void *t, const struct gw_close_reason *why)
{
    struct bsess *bs = t;
    const char *cond = why->cond == GW_COND_NONE ? NULL : gw_condition_name(why->cond);
    const char *text = why->text, *err_xml = why->err_xml;
    size_t err_len = why->err_len;
    keep_jid(bs);
    bs->s = NULL;
    if (bs->dead || bs->state == BS_CLOSED)
        return;
    const char *tc = gw_bosh_terminate_condition(cond, err_xml && err_len);
    GW_INFO(&bs->b->ctx->log, bs->sid, bs_jid(bs), "BOSH session ended by upstream: %s%s%s",
            tc ? tc : "closed", text ? ": " : "", text ? text : "");
    entomb(bs, tc, err_xml, err_len);
}

static const struct gw_sink_ops sink_ops = {
    .stream_ready = sink_stream_ready,
    .deliver = sink_deliver,
    .closed = sink_closed,
};

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
    struct bsess *bs = t->data;
    if (bs->dead)
        return;
    struct gw_bosh *b = bs->b;
    uint64_t now = now_ms(b);
    if (bs->fail_cond) {
        const char *cond = bs->fail_cond;
        bs->fail_cond = NULL;
        struct req *r = list_pop(&bs->held);
        end_session(bs, r, cond);
        return;
    }
    if (bs->state == BS_CLOSED) {
        if (now >= bs->tomb_until)
            destroy(bs, NULL);
        else
            reschedule(bs);
        return;
    }
    if (bs->state == BS_CONNECTING && now >= bs->creation_deadline) {
        GW_INFO(&b->ctx->log, bs->sid, NULL, "no stream features from upstream in time");
        if (bs->s) {
            gw_session_end(bs->s, GW_COND_remote_connection_failed);
            bs->s = NULL;
        }
        entomb(bs, "remote-connection-failed", NULL, 0);
        return;
    }
    for (struct req *r = bs->held.head; r; r = r->next)
        if (r->state == RQ_HELD && r->deadline_ms && r->deadline_ms <= now)
            release(r);
    if (bs->state == BS_OPEN && bs->held.n == 0 && bs->waiting.n == 0 &&
        now >= bs->idle_since + bs->idle_ms) {
        GW_INFO(&b->ctx->log, bs->sid, bs_jid(bs), "BOSH session inactive for %llu s: ended",
                (unsigned long long)(bs->idle_ms / 1000));
        destroy(bs, NULL);
        return;
    }
    reschedule(bs);
}

/* ---- requests for a session ---- */

/* Client stanzas for upstream. Returns the condition to end the session with, or NULL. */
static const char *send_payload(struct bsess *bs, const struct gw_bosh_body *body)
{
    const struct gw_config *cfg = bs->b->ctx->cfg;
    for (unsigned i = 0; i < body->n_stanzas && bs->s; i++) {
        size_t len;
        const char *st = gw_bosh_body_stanza(body, i, &len);
        int rc;
        if (gw_buf_size(&bs->up)) {
            rc = GW_EAGAIN;
        } else {
            rc = gw_session_send(bs->s, st, len);
            if (rc == GW_ECLOSED)
                return NULL; /* closed() follows or came */
        }
        if (rc == GW_EAGAIN) {
            if (!bs->up.max)
                gw_buf_init(&bs->up, cfg->send_queue);
            rc = gw_buf_append(&bs->up, st, len);
        }
        if (rc == GW_ELIMIT)
            return "policy-violation";
        if (rc)
            return "internal-server-error";
    }
    return NULL;
}

/* The client ends the session (type='terminate'): its last stanzas go upstream, the stream is
 * closed cleanly, every held request and this one are answered type='terminate'. */
static void client_terminate(struct bsess *bs, struct req *r)
{
    struct gw_ctx *ctx = bs->b->ctx;
    (void)send_payload(bs, &r->body);
    (void)flush_up(bs);
    GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "BOSH session terminated by the client");
    if (bs->s) {
        gw_session_end(bs->s, GW_COND_NONE);
        bs->s = NULL;
    }
    struct gw_buf body;
    gw_buf_init(&body, out_max(ctx->cfg) + 4096);
    struct req *h;
    while ((h = list_pop(&bs->held)) || (h = list_pop(&bs->waiting))) {
        gw_buf_reset(&body);
        if (build_terminate(&body, NULL, NULL, 0, NULL, 0) == 0)
            answer_fixed(h, 200, CT_XML, gw_buf_ptr(&body), gw_buf_size(&body));
        else
            answer_fixed(h, 503, CT_TEXT, NULL, 0);
    }
    gw_buf_reset(&body);
    if (build_terminate(&body, NULL, NULL, 0, gw_buf_ptr(&bs->out), gw_buf_size(&bs->out)) == 0)
        answer_fixed(r, 200, CT_XML, gw_buf_ptr(&body), gw_buf_size(&body));
    else
        answer_fixed(r, 503, CT_TEXT, NULL, 0);
    gw_buf_cleanup(&body);
    destroy(bs, "other-request");
}

/* A request whose turn has come (rid == last_rid + 1). false: the session ended. */
static bool process_next(struct bsess *bs, struct req *r)
{
    struct gw_bosh *b = bs->b;
    struct gw_ctx *ctx = b->ctx;
    const struct gw_bosh_body *body = &r->body;
    uint64_t now = now_ms(b);

    if (bs->use_key) {
        if (!gw_bosh_key_ok(bs->key, body->key)) {
            GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "rid %llu: wrong key",
                    (unsigned long long)r->rid);
            end_session(bs, r, "item-not-found");
            return false;
        }
        snprintf(bs->key, sizeof(bs->key), "%s", body->newkey[0] ? body->newkey : body->key);
    }
    /* XEP-0124 section 9.3: the client says it has not seen an answer we sent. Answers it has
     * seen need not be kept for replays any more. */
    if (bs->p.ack && body->has_ack) {
        if (body->ack < bs->hi_answered) {
            struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(&bs->log, body->ack + 1);
            if (e && e->state == GW_BOSH_RID_ANSWERED) {
                r->has_report = true;
                r->report = body->ack + 1;
                r->report_time = now - e->sent_ms;
            }
        }
        for (unsigned i = 0; i < bs->log.size; i++)
            if (bs->log.e[i].state == GW_BOSH_RID_ANSWERED && bs->log.e[i].rid <= body->ack)
                gw_buf_cleanup(&bs->log.e[i].body);
    }
    bs->last_rid = r->rid;
    (void)gw_bosh_ridlog_add(&bs->log, r->rid, body->key);

    bool empty = gw_bosh_body_is_empty(body);
    if (gw_bosh_overactive(&bs->act, now, bs->p.polling, bs->held.n, empty)) {
        GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "empty requests closer than %u s", bs->p.polling);
        end_session(bs, r, "policy-violation");
        return false;
    }
    gw_bosh_activity_request(&bs->act, now, empty);
    bs->idle_ms = (uint64_t)bs->p.inactivity * 1000;

    if (body->terminate) {
        client_terminate(bs, r);
        return false;
    }

    if (body->restart) {
        int rc = bs->s ? gw_session_restart(bs->s) : GW_ECLOSED;
        if (rc == GW_EPROTO) {
            GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "stream restart before SASL success");
            end_session(bs, r, "bad-request");
            return false;
        }
        if (rc && rc != GW_ECLOSED) {
            end_session(bs, r, "internal-server-error");
            return false;
        }
    }

    const char *cond = send_payload(bs, body);
    if (cond) {
        end_session(bs, r, cond);
        return false;
    }
    if (bs->state == BS_CLOSED) { /* defensive: the session ended while we sent */
        answer_tombstone(bs, r);
        return false;
    }

    if (body->has_pause) {
        if (!bs->p.maxpause) {
            end_session(bs, r, "item-not-found"); /* XEP-0124 section 10: no maxpause offered */
            return false;
        }
        if (body->pause > bs->p.maxpause) {
            end_session(bs, r, "policy-violation");
            return false;
        }
        /* Every held request is answered now, and the session may then stay without requests
         * for `pause` seconds instead of `inactivity`. */
        for (struct req *h = bs->held.head; h; h = h->next)
            if (h->state == RQ_HELD)
                release(h);
        struct gw_buf empty_body;
        gw_buf_init(&empty_body, 256);
        struct gw_bosh_reply rep = {0};
        if (gw_bosh_build_reply(&empty_body, &rep, NULL, 0) == 0) {
            (void)gw_bosh_ridlog_answered(&bs->log, r->rid, gw_buf_ptr(&empty_body),
                                          gw_buf_size(&empty_body), now);
            answer_fixed(r, 200, CT_XML, gw_buf_ptr(&empty_body), gw_buf_size(&empty_body));
        } else {
            answer_fixed(r, 503, CT_TEXT, NULL, 0);
        }
        gw_buf_cleanup(&empty_body);
        if (r->rid > bs->hi_answered)
            bs->hi_answered = r->rid;
        bs->idle_ms = body->pause * 1000;
        if (bs->held.n == 0 && bs->waiting.n == 0)
            bs->idle_since = now;
        GW_DEBUG(&ctx->log, bs->sid, bs_jid(bs), "paused for %llu s",
                 (unsigned long long)body->pause);
        return true;
    }

    r->state = RQ_HELD;
    r->deadline_ms = now + (uint64_t)bs->p.wait * 1000;
    r->bs = bs;
    list_insert(&bs->held, r);
    gw_bosh_body_cleanup(&r->body);
    r->has_body = false;
    enforce_hold(bs);
    if (gw_buf_size(&bs->out))
        wake(bs);
    return true;
}

/* A request naming a session that is open (or connecting). */
static void session_request(struct bsess *bs, struct req *r)
{
    struct gw_bosh *b = bs->b;
    struct gw_ctx *ctx = b->ctx;
    uint64_t rid = r->body.rid;
    r->rid = rid;
    switch (gw_bosh_rid_classify(bs->last_rid, bs->p.requests, rid)) {
    case GW_BOSH_RID_SEEN: {
        struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(&bs->log, rid);
        if (!e || (bs->use_key && strcmp(e->key, r->body.key) != 0)) {
            GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "rid %llu: too old to repeat%s",
                    (unsigned long long)rid, e ? " (wrong key)" : "");
            end_session(bs, r, "item-not-found");
            return;
        }
        if (e->state == GW_BOSH_RID_ANSWERED) {
            if (!gw_buf_size(&e->body)) {
                end_session(bs, r, "item-not-found");
                return;
            }
            GW_DEBUG(&ctx->log, bs->sid, bs_jid(bs), "rid %llu repeated: answer replayed",
                     (unsigned long long)rid);
            answer_fixed(r, 200, CT_XML, gw_buf_ptr(&e->body), gw_buf_size(&e->body));
            return;
        }
        /* Still held, or its connection was lost: this request takes its place. */
        struct req *old = list_find(&bs->held, rid);
        r->state = old ? old->state : RQ_HELD;
        r->deadline_ms = old ? old->deadline_ms : now_ms(b) + (uint64_t)bs->p.wait * 1000;
        r->creation = old ? old->creation : false;
        r->has_report = old ? old->has_report : false;
        r->report = old ? old->report : 0;
        r->report_time = old ? old->report_time : 0;
        if (old)
            req_kill(old);
        e->state = GW_BOSH_RID_HELD;
        gw_bosh_body_cleanup(&r->body);
        r->has_body = false;
        r->bs = bs;
        list_insert(&bs->held, r);
        GW_DEBUG(&ctx->log, bs->sid, bs_jid(bs), "rid %llu repeated while held",
                 (unsigned long long)rid);
        if (r->state == RQ_ANSWER)
            lws_callback_on_writable(r->wsi);
        enforce_hold(bs);
        if (gw_buf_size(&bs->out))
            wake(bs);
        return;
    }
    case GW_BOSH_RID_OUTSIDE:
        GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "rid %llu outside the window (last %llu)",
                (unsigned long long)rid, (unsigned long long)bs->last_rid);
        end_session(bs, r, "item-not-found");
        return;
    case GW_BOSH_RID_AHEAD:
    case GW_BOSH_RID_NEXT:
        gw_bosh_order_arrival(&bs->order, rid, bs->p.requests, wsi_fd(r->wsi));
        break;
    }
    struct req *dup = list_find(&bs->waiting, rid);
    if (dup)
        req_kill(dup);
    if (bs->held.n + bs->waiting.n + 1 > bs->p.requests) {
        GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "more than %u simultaneous requests",
                bs->p.requests);
        end_session(bs, r, "policy-violation");
        return;
    }
    if (rid != bs->last_rid + 1) {
        r->state = RQ_WAITING;
        r->bs = bs;
        list_insert(&bs->waiting, r);
        return;
    }
    if (!process_next(bs, r))
        return;
    while (!bs->dead && bs->state != BS_CLOSED && bs->waiting.head &&
           bs->waiting.head->rid == bs->last_rid + 1) {
        struct req *w = bs->waiting.head;
        list_remove(&bs->waiting, w);
        w->bs = NULL;
        if (!process_next(bs, w))
            return;
    }
}

static bool route_allowed(const struct gw_config *cfg, const char *route)
{
    for (unsigned i = 0; i < cfg->n_bosh_routes; i++)
        if (strcasecmp(cfg->bosh_routes[i], route) == 0)
            return true;
    return false;
}

/* A request without sid: a new session. */
static void create_session(struct gw_bosh *b, struct req *r)
{
    struct gw_ctx *ctx = b->ctx;
    const struct gw_config *cfg = ctx->cfg;
    const struct gw_bosh_body *body = &r->body;
    bool legacy = gw_bosh_parse_ver(body->ver) && gw_bosh_parse_ver(body->ver) < 1006;
    if (b->shutting_down || ctx->draining) {
        answer_error(ctx, r, "system-shutdown", legacy, 0);
        return;
    }
    if (!body->to[0]) {
        answer_error(ctx, r, "improper-addressing", legacy, 0);
        return;
    }
    /* route (XEP-0124 section 7.1) is only ever informational here: the upstream of a domain
     * comes from the configuration, so nobody can make the gateway connect elsewhere. */
    if (body->route[0]) {
        if (route_allowed(cfg, body->route))
            GW_INFO(&ctx->log, NULL, NULL, "BOSH route '%s' from %s is allowed (informational)",
                    body->route, r->peer);
        else
            GW_WARN(&ctx->log, NULL, NULL, "BOSH route '%s' from %s is not allowed: ignored",
                    body->route, r->peer);
    }
    struct bsess *bs = calloc(1, sizeof(*bs));
    if (!bs) {
        answer_error(ctx, r, "internal-server-error", legacy, 0);
        return;
    }
    bs->b = b;
    struct gw_bosh_limits lim = {.max_wait = cfg->bosh_max_wait,
                                 .max_hold = cfg->bosh_max_hold,
                                 .max_requests = cfg->bosh_max_requests,
                                 .inactivity = cfg->bosh_inactivity,
                                 .max_pause = cfg->bosh_max_pause,
                                 .polling = cfg->bosh_polling};
    gw_bosh_negotiate(body, &lim, &bs->p);
    gw_buf_init(&bs->out, out_max(cfg));
    gw_buf_init(&bs->features, cfg->max_stanza + 1);
    if (gw_bosh_ridlog_init(&bs->log, bs->p.requests * 2, resp_max(cfg)) != 0) {
        free(bs);
        answer_error(ctx, r, "internal-server-error", legacy, 0);
        return;
    }
    int err = 0;
    struct gw_session_opts so = {
        .transport = GW_TRANSPORT_BOSH, .sink = &sink_ops, .t = bs, .peer = r->peer};
    bs->s = gw_session_new(ctx, &so, &err);
    if (!bs->s) {
        gw_bosh_ridlog_cleanup(&bs->log);
        free(bs);
        const char *cond = err == GW_ELIMIT    ? "policy-violation"
                           : err == GW_ECLOSED ? "system-shutdown"
                                               : "internal-server-error";
        GW_WARN(&ctx->log, NULL, NULL, "BOSH session for %s refused: %s", r->peer, cond);
        answer_error(ctx, r, cond, legacy, 0);
        return;
    }
    snprintf(bs->sid, sizeof(bs->sid), "%s", gw_session_id(bs->s));
    int rc = gw_session_start(bs->s, body->to, body->lang[0] ? body->lang : NULL);
    if (rc) {
        const char *cond = rc == GW_EINVAL ? "host-unknown" : "internal-server-error";
        GW_INFO(&ctx->log, bs->sid, NULL, "BOSH session for '%s' refused: %s", body->to, cond);
        gw_session_end(bs->s, gw_condition_from_name(cond));
        gw_bosh_ridlog_cleanup(&bs->log);
        gw_buf_cleanup(&bs->out);
        gw_buf_cleanup(&bs->features);
        free(bs);
        answer_error(ctx, r, cond, legacy, 0);
        return;
    }
    uv_timer_init(ctx->loop, &bs->timer);
    bs->timer.data = bs;
    gw_strmap_add(&b->table, &bs->in_table, bs->sid);

    uint64_t now = now_ms(b);
    bs->state = BS_CONNECTING;
    bs->last_rid = body->rid;
    bs->use_key = body->newkey[0] != '\0';
    gw_bosh_order_init(&bs->order);
    snprintf(bs->key, sizeof(bs->key), "%s", body->newkey);
    (void)gw_bosh_ridlog_add(&bs->log, body->rid, "");
    bs->idle_since = now;
    bs->idle_ms = (uint64_t)bs->p.inactivity * 1000;
    bs->creation_deadline = now + ((uint64_t)cfg->connect_timeout * 2 + CREATION_SLACK_S) * 1000;
    gw_bosh_activity_request(&bs->act, now, false);
    GW_INFO(&ctx->log, bs->sid, NULL,
            "BOSH session for %s from %s: wait=%u hold=%u requests=%u ver=%s ack=%s keys=%s",
            body->to, r->peer, bs->p.wait, bs->p.hold, bs->p.requests, bs->p.ver,
            bs->p.ack ? "yes" : "no", bs->use_key ? "yes" : "no");

    const char *cond = send_payload(bs, body);
    if (cond) {
        end_session(bs, r, cond);
        return;
    }
    r->rid = body->rid;
    r->creation = true;
    r->state = RQ_HELD;
    r->deadline_ms = 0; /* answered when the features come (or the creation deadline) */
    r->bs = bs;
    gw_bosh_body_cleanup(&r->body);
    r->has_body = false;
    list_insert(&bs->held, r);
    reschedule(bs);
}

/* ---- HTTP ---- */

static void refresh_parser(struct gw_bosh *b)
{
    const struct gw_config *cfg = b->ctx->cfg;
    struct gw_xml_limits lim = {
        .max_stanza = cfg->max_stanza, .max_depth = cfg->max_depth, .max_attrs = cfg->max_attrs};
    if (b->parser && memcmp(&lim, &b->limits, sizeof(lim)) == 0)
        return;
    struct gw_bosh_parser *p = gw_bosh_parser_new(&lim);
    if (!p)
        return; /* keep the old one */
    gw_bosh_parser_free(b->parser);
    b->parser = p;
    b->limits = lim;
}

/* A whole request body is here. */
static void process(struct gw_bosh *b, struct req *r)
{
    struct gw_ctx *ctx = b->ctx;
    refresh_parser(b);
    gw_bosh_body_init(&r->body, gw_buf_size(&r->raw) + 1);
    r->has_body = true;
    enum gw_bosh_parse_err perr =
        b->parser ? gw_bosh_parse(b->parser, gw_buf_ptr(&r->raw), gw_buf_size(&r->raw), &r->body)
                  : GW_BOSH_PARSE_NOMEM;
    gw_buf_cleanup(&r->raw);
    struct bsess *bs = r->body.sid[0] ? table_find(b, r->body.sid) : NULL;
    if (bs && bs->dead)
        bs = NULL;
    if (perr == GW_BOSH_PARSE_NOMEM) {
        answer_error(ctx, r, "internal-server-error", false, 0);
        return;
    }
    if (perr != GW_BOSH_PARSE_OK || !r->body.has_rid) {
        GW_INFO(&ctx->log, bs ? bs->sid : NULL, bs ? bs_jid(bs) : NULL,
                "bad BOSH request from %s: %s", r->peer,
                perr == GW_BOSH_PARSE_XML    ? "not well-formed"
                : perr == GW_BOSH_PARSE_ROOT ? "not a BOSH <body/>"
                : perr == GW_BOSH_PARSE_ATTR ? "bad attribute value"
                                             : "no rid");
        /* A broken body that still names its session ends that session (XEP-0124: bad-request
         * is terminal). */
        unsigned status = perr == GW_BOSH_PARSE_XML || perr == GW_BOSH_PARSE_ROOT ? 400 : 0;
        if (bs && bs->state != BS_CLOSED) {
            GW_INFO(&ctx->log, bs->sid, bs_jid(bs), "BOSH session ended: bad-request");
            if (bs->s) {
                gw_session_end(bs->s, GW_COND_bad_request);
                bs->s = NULL;
            }
            answer_error(ctx, r, "bad-request", bs->p.legacy, status);
            destroy(bs, "other-request");
        } else {
            answer_error(ctx, r, "bad-request", bs && bs->p.legacy, status ? status : 200);
        }
        return;
    }
    if (!r->body.sid[0]) {
        create_session(b, r);
        return;
    }
    if (!bs) {
        GW_DEBUG(&ctx->log, NULL, NULL, "BOSH request from %s for an unknown sid", r->peer);
        answer_error(ctx, r, "item-not-found", false, 0);
        return;
    }
    if (bs->state == BS_CLOSED) {
        answer_tombstone(bs, r);
        return;
    }
    session_request(bs, r);
    if (!bs->dead)
        reschedule(bs);
}

/* Answer at once, before the body is read. */
static int early(struct lws *wsi, unsigned status, const char *cors, const char *extra,
                 const char *body, bool close)
{
    return respond(wsi, status, body ? CT_XML : CT_TEXT, cors, extra, body, body ? strlen(body) : 0,
                   close);
}

static const char bad_request_body[] =
    "<body type='terminate' condition='bad-request' xmlns='" GW_NS_HTTPBIND "'/>";

static bool has_header(struct lws *wsi, enum lws_token_indexes tok)
{
    return lws_hdr_total_length(wsi, tok) > 0;
}

static int on_http(struct lws *wsi, struct pss *pss)
{
    struct gw_ctx *ctx = gw_web_ctx(wsi);
    struct gw_bosh *b = ctx->bosh;
    ctx->metrics.http_requests++;
    if (!b)
        return early(wsi, 503, NULL, NULL, NULL, true);
    if (pss->req) /* a new request while the last one is unanswered (pipelining) */
        on_gone(b, pss);
    bool post = has_header(wsi, WSI_TOKEN_POST_URI);
    bool options = has_header(wsi, WSI_TOKEN_OPTIONS_URI);
    bool body_follows = has_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) ||
                        has_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    if (!post && !options)
        return early(wsi, 405, NULL, "Allow: POST, OPTIONS\r\n", NULL, body_follows);

    char origin[512], cors[CORS_MAX - 200], peer[64];
    gw_web_peer(wsi, peer, sizeof(peer));
    if (!gw_web_origin_allowed(wsi, origin, sizeof(origin))) {
        GW_INFO(&ctx->log, NULL, NULL, "BOSH request from %s refused: origin '%s' not allowed",
                peer, origin);
        return early(wsi, 403, NULL, NULL, NULL, body_follows);
    }
    gw_web_cors_headers(origin, cors, sizeof(cors));
    if (options) {
        char hdrs[CORS_MAX];
        snprintf(hdrs, sizeof(hdrs),
                 "%sAccess-Control-Allow-Methods: POST, OPTIONS\r\n"
                 "Access-Control-Allow-Headers: Content-Type\r\n"
                 "Access-Control-Max-Age: 86400\r\n",
                 cors);
        return early(wsi, 200, hdrs, NULL, NULL, body_follows);
    }

    if (has_header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING))
        return early(wsi, 411, cors, NULL, NULL, true);
    char clen[32];
    uint64_t cl;
    if (gw_web_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, clen, sizeof(clen)) < 0)
        return early(wsi, has_header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) ? 400 : 411, cors, NULL,
                     NULL, true);
    if (!gw_bosh_parse_uint(clen, &cl))
        return early(wsi, 400, cors, NULL, NULL, true);
    if (cl == 0) {
        count_condition(ctx, "bad-request");
        return early(wsi, 400, cors, NULL, bad_request_body, false);
    }
    size_t max_body = ctx->cfg->bosh_max_body;
    if (cl > max_body && cl > (uint64_t)max_body * DRAIN_FACTOR) {
        GW_INFO(&ctx->log, NULL, NULL, "BOSH request from %s: body of %llu bytes refused", peer,
                (unsigned long long)cl);
        return early(wsi, 413, cors, NULL, NULL, true);
    }

    struct req *r = calloc(1, sizeof(*r));
    if (!r)
        return early(wsi, 503, cors, NULL, NULL, true);
    r->wsi = wsi;
    r->pss = pss;
    r->state = RQ_READING;
    r->content_length = cl;
    r->discard = cl > max_body;
    gw_buf_init(&r->raw, max_body);
    gw_buf_init(&r->resp, resp_max(ctx->cfg));
    snprintf(r->cors, sizeof(r->cors), "%s", cors);
    snprintf(r->peer, sizeof(r->peer), "%s", peer);
    pss->req = r;
    return 0;
}

static int on_body(struct pss *pss, const void *in, size_t len)
{
    struct req *r = pss->req;
    if (!r || r->state != RQ_READING || r->discard || r->nomem)
        return 0;
    int rc = gw_buf_append(&r->raw, in, len);
    if (rc == GW_ELIMIT) {
        r->discard = true;
        gw_buf_cleanup(&r->raw);
    } else if (rc) {
        r->nomem = true;
        gw_buf_cleanup(&r->raw);
    }
    return 0;
}

static int on_body_done(struct lws *wsi, struct pss *pss)
{
    struct req *r = pss->req;
    struct gw_bosh *b = gw_web_ctx(wsi)->bosh;
    if (!r || r->state != RQ_READING || !b)
        return 0;
    /* lws gives a parked request no timeout; ours is the wait timer. The header table is not
     * needed any more (everything used was copied): give it back. */
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    lws_http_headers_detach(wsi);
    if (r->discard) {
        GW_INFO(&b->ctx->log, NULL, NULL, "BOSH request from %s: body over %zu bytes", r->peer,
                b->ctx->cfg->bosh_max_body);
        answer_fixed(r, 413, CT_TEXT, NULL, 0);
        return 0;
    }
    if (r->nomem) {
        answer_fixed(r, 503, CT_TEXT, NULL, 0);
        return 0;
    }
    process(b, r);
    return 0;
}

/* The browser closed the connection (or lws is done with this protocol on it). */
static void on_gone(struct gw_bosh *b, struct pss *pss)
{
    struct req *r = pss->req;
    if (!r)
        return;
    pss->req = NULL;
    r->pss = NULL;
    r->wsi = NULL;
    struct bsess *bs = r->bs;
    if (!bs || !b) {
        req_free(r);
        return;
    }
    if (r->state == RQ_WAITING) {
        req_detach(r);
        req_free(r);
        reschedule(bs);
        return;
    }
    if (r->creation) {
        /* The client never got its sid: nobody can use this session. */
        GW_INFO(&b->ctx->log, bs->sid, NULL, "session creation request abandoned");
        req_detach(r);
        req_free(r);
        destroy(bs, NULL);
        return;
    }
    struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(&bs->log, r->rid);
    if (e && e->state == GW_BOSH_RID_HELD)
        e->state = GW_BOSH_RID_LOST;
    GW_DEBUG(&b->ctx->log, bs->sid, bs_jid(bs), "rid %llu abandoned by the browser",
             (unsigned long long)r->rid);
    req_detach(r);
    req_free(r);
    if (bs->held.n == 0 && bs->waiting.n == 0)
        bs->idle_since = now_ms(b);
    /* Data that was on its way to it waits for the next request. */
    reschedule(bs);
}

int gw_bosh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len)
{
    struct pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return pss ? on_http(wsi, pss) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return pss ? on_body(pss, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return pss ? on_body_done(wsi, pss) : 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss && gw_web_ctx(wsi)->bosh ? on_writeable(wsi, pss) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (pss && gw_web_ctx(wsi)->bosh)
            on_gone(gw_web_ctx(wsi)->bosh, pss);
        return 0;
    default:
        return 0;
    }
}

size_t gw_bosh_pss_size(void)
{
    return sizeof(struct pss);
}

/* ---- the module ---- */

struct gw_bosh *gw_bosh_new(struct gw_ctx *ctx)
{
    struct gw_bosh *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->ctx = ctx;
    if (gw_strmap_init(&b->table) != 0) {
        free(b);
        return NULL;
    }
    refresh_parser(b);
    if (!b->parser) {
        gw_strmap_cleanup(&b->table);
        free(b);
        return NULL;
    }
    return b;
}

size_t gw_bosh_count(const struct gw_bosh *b)
{
    return b ? b->table.n : 0;
}

/* Every bsess, one at a time (the callee may take it out of the table). */
static struct bsess *first_session(struct gw_bosh *b, bool live_only)
{
    for (struct gw_strmap_node *n = gw_strmap_first(&b->table); n;
         n = gw_strmap_next(&b->table, n)) {
        struct bsess *bs = GW_CONTAINER_OF(n, struct bsess, in_table);
        if (!live_only || bs->state != BS_CLOSED)
            return bs;
    }
    return NULL;
}

void gw_bosh_shutdown(struct gw_bosh *b)
{
    if (!b)
        return;
    b->shutting_down = true;
    struct bsess *bs;
    while ((bs = first_session(b, true)) != NULL) {
        GW_INFO(&b->ctx->log, bs->sid, bs_jid(bs), "BOSH session ended: system-shutdown");
        keep_jid(bs);
        if (bs->s) {
            gw_session_end(bs->s, GW_COND_system_shutdown);
            bs->s = NULL;
        }
        entomb(bs, "system-shutdown", NULL, 0);
    }
}

void gw_bosh_free(struct gw_bosh *b)
{
    if (!b)
        return;
    struct bsess *bs;
    while ((bs = first_session(b, false)) != NULL) {
        /* Connections are gone by now: requests are freed, not answered. */
        struct req *r;
        while ((r = list_pop(&bs->held)) || (r = list_pop(&bs->waiting)))
            req_free(r);
        if (bs->s) {
            gw_session_end(bs->s, GW_COND_system_shutdown);
            bs->s = NULL;
        }
        destroy(bs, NULL);
    }
    gw_bosh_parser_free(b->parser);
    gw_strmap_cleanup(&b->table);
    if (b->ctx->bosh == b)
        b->ctx->bosh = NULL;
    free(b);
}
