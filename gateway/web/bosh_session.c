/* BOSH sessions apart from HTTP (see bosh_session.h). One struct bsess per BOSH session, found by
 * sid, with its held requests (rid order), requests that came early (a rid gap), replays not yet
 * written, the stanzas waiting for the next answer, the rid log (replays) and one uv timer for
 * every deadline (wait, write, early, inactivity, pause, creation, tombstone, and an end decided
 * inside a sink callback). Every request on a list has a deadline, and so has every session:
 * next_deadline() is the one place that says which comes first.
 *
 * A session is CONNECTING (creation request held until upstream's features), then OPEN. It ends
 * in one place, bs_end(), which says what the core session and every held and early request get;
 * a session that upstream ended stays a while as a TOMB that answers its condition, then is
 * forgotten (DEAD: out of the table, memory freed from its timer's close callback, never inside
 * another callback).
 *
 * A prebound session (gw_bosh_sessions_prebind()) has no creation request: its core session logs
 * in by itself, and once it is bound the asker is told its sid and next rid from the session's
 * timer; it is then OPEN with no request, under the inactivity deadline, until the client
 * attaches. Until the asker was told, nobody knows the sid: an end before that keeps no
 * tombstone, and the asker hears of it when the session's memory goes.
 * Calls: session, bosh_proto, xmpp/jid, config, core, libuv; the adapter only through
 * gw_bosh_conn_ops. */
#include "web/bosh_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/strmap.h"
#include "session/session.h"
#include "web/bosh_proto.h"
#include "xmpp/jid.h"

#define TOMB_MIN_S 5        /* a tombstone lives `inactivity` seconds, at least this */
#define CREATION_SLACK_S 10 /* beyond twice connect_timeout before a creation request gives up */
#define ORDER_SETTLE_MS 300 /* an answer written this long ago has reached the client (wake) */
/* A prebound session's first rid is below this (the 2^53 rid space never runs out). */
#define PREBIND_RID_MAX 4000000000ull

enum req_state {
    REQ_NEW,   /* handed over; not yet on a list */
    REQ_EARLY, /* came before its turn (a rid gap): on bs->early until `wait` after it came */
    REQ_HELD,  /* processed: on bs->held, waiting for data or `wait` */
    REQ_DUE,   /* on bs->held, answered (composed) once the connection can write, which it must
                  within http.write_timeout */
    REQ_DONE,  /* its whole answer is in resp; on no list, or on bs->replays (a replay) */
};

struct bsess;

/* One request, from its body to its answer. */
struct gw_bosh_req {
    struct gw_bosh_sessions *t;      /* the module: the adapter's callbacks, the clock */
    void *conn;                      /* the adapter's handle of the connection */
    int fd;                          /* the connection's socket: which answer went out where */
    char peer[64];                   /* client address, for logs */
    struct bsess *bs;                /* set while on one of bs's lists */
    struct gw_bosh_req *prev, *next; /* neighbours on bs->held or bs->early */
    enum req_state state;            /* see enum req_state */
    uint64_t rid;                    /* as the body says */
    uint64_t deadline_ms;            /* on a list: HELD answer then (empty), DUE drop it then,
                                        EARLY end the session then; 0 on no list */
    bool creation;                   /* the session creation request */
    bool created;                    /* REQ_DONE: resp is the creation answer, with the sid */
    struct gw_bosh_report report;    /* XEP-0124 section 9.3: an answer the client missed */
    struct gw_bosh_body *body;       /* parsed, until processed (an early request keeps it
                                        until its turn); NULL after: a held request is small */
    unsigned status;                 /* REQ_DONE: HTTP status */
    bool xml;                        /* REQ_DONE: resp is a BOSH body (else empty text) */
    struct gw_buf resp;              /* REQ_DONE: the answer */
};

struct req_list {
    struct gw_bosh_req *head, *tail; /* ascending rid */
    unsigned n;                      /* requests on the list */
};

enum bs_state {
    BS_CONNECTING, /* waiting for upstream's first features; the creation request is held */
    BS_OPEN,       /* creation answered: requests come and go */
    BS_TOMB,       /* upstream ended it: every request gets the condition, for a while */
    BS_DEAD,       /* out of the table; freed when its timer has closed */
};

/* How a session ends; bs_end() decides from it what the core session and each request get. */
enum bs_end_kind {
    END_CLIENT,   /* type='terminate': clean close upstream, every request a clean terminate */
    END_FAIL,     /* a broken rule, a failure, a deadline: the request at fault gets the
                     condition, every other one other-request; the core session ends with it */
    END_UPSTREAM, /* the core session ended (closed()): every request gets the condition, and a
                     tombstone keeps answering it */
    END_LOST,     /* the client vanished (inactivity, creation abandoned): nobody to answer */
};

struct bsess {
    struct gw_bosh_sessions *t;    /* the module */
    struct gw_session *s;          /* the core session; NULL once detached */
    char sid[GW_SID_MAX + 1];      /* the core session's id: the key in the table */
    enum bs_state state;           /* see enum bs_state */
    struct gw_bosh_params p;       /* negotiated at creation */
    bool use_key;                  /* the client started a key chain */
    char key[GW_BOSH_KEY_MAX + 1]; /* the last key (or newkey) seen */
    uint64_t last_rid;             /* every rid up to this one was processed */
    uint64_t hi_answered;          /* highest rid answered */
    struct gw_bosh_order order;    /* which answers may carry stanzas */
    uint64_t order_settle_ms;      /* stanzas held back for order go out then at the latest */
    bool client_bound;             /* a request came after the bind: the client polls (wake) */
    struct gw_bosh_ridlog log;     /* recent rids and their answers */
    struct req_list held;          /* processed, not yet answered (REQ_HELD, REQ_DUE) */
    struct req_list early;         /* arrived before their turn (REQ_EARLY) */
    struct req_list replays;       /* answered from the rid log, not yet written (REQ_DONE) */
    struct gw_buf out;             /* stanzas for the client, not yet in an answer */
    bool out_paused;               /* deliver() said GW_EAGAIN: resume when drained */
    struct gw_buf features;        /* for the creation answer */
    char authid[256];              /* upstream stream id */
    char from[256];                /* XMPP domain as upstream names itself */
    char *jid;                     /* bound JID kept for log lines after detaching, or NULL */
    struct gw_bosh_activity act;   /* overactivity rule */
    uint64_t idle_since;           /* the inactivity clock runs from here when no request is open */
    uint64_t idle_ms;              /* inactivity limit (a pause raises it until the next request) */
    uint64_t creation_deadline;    /* BS_CONNECTING: give up then */
    enum gw_condition pending;     /* an end decided inside a sink callback, done from the timer */
    enum gw_condition cond;        /* BS_TOMB: the terminate condition (GW_COND_NONE: clean) */
    struct gw_buf err_xml;         /* BS_TOMB: upstream's <stream:error/> */
    uint64_t tomb_until;           /* BS_TOMB: forget the session then */
    uv_timer_t timer;              /* fires at the earliest deadline above */
    struct gw_strmap_node in_table; /* in t->table, by sid */
    struct gw_prebind *prebind;     /* a prebind whose asker was not told yet; NULL: none */
    bool prebind_due;               /* bound: tell the asker from the timer */
    enum gw_condition prebind_cond; /* why it ended before that, told when the memory goes */
};

/* One prebind in progress (gw_bosh_sessions_prebind()), until its asker was told. */
struct gw_prebind {
    struct bsess *bs; /* the session being made; NULL once told */
    gw_prebind_fn fn; /* the asker */
    void *ud;         /* passed to fn */
};

struct gw_bosh_sessions {
    struct gw_ctx *ctx;                 /* the gateway */
    const struct gw_bosh_conn_ops *ops; /* the adapter */
    struct gw_strmap table;             /* sid -> bsess */
    struct gw_bosh_parser *parser;      /* one body parser for every request */
    struct gw_xml_limits limits;        /* its limits (rebuilt when the configuration changes) */
};

static const struct gw_sink_ops sink_ops;
static void bs_end(struct bsess *bs, enum bs_end_kind kind, enum gw_condition cond,
                   struct gw_bosh_req *at);
static void reschedule(struct bsess *bs);

static uint64_t now_ms(const struct gw_bosh_sessions *t)
{
    return uv_now(t->ctx->loop);
}

static const struct gw_config *cfg_of(const struct bsess *bs)
{
    return bs->t->ctx->cfg;
}

static const struct gw_log *log_of(const struct bsess *bs)
{
    return &bs->t->ctx->log;
}

static const char *bs_jid(const struct bsess *bs)
{
    if (bs->s)
        return gw_session_jid(bs->s);
    return bs->jid;
}

/* A session with no request open: the inactivity clock runs. */
static bool no_requests(const struct bsess *bs)
{
    return bs->held.n == 0 && bs->early.n == 0;
}

/* Requests open at once, as `requests` counts them: held, early, and replays not yet written. */
static unsigned in_flight(const struct bsess *bs)
{
    return bs->held.n + bs->early.n + bs->replays.n;
}

/* When an answer due now must have been taken by (http.write_timeout from now). */
static uint64_t write_deadline(const struct bsess *bs)
{
    return now_ms(bs->t) + (uint64_t)cfg_of(bs)->http_write_timeout * 1000;
}

static bool is_live(const struct bsess *bs)
{
    return bs->state == BS_CONNECTING || bs->state == BS_OPEN;
}

static struct bsess *table_find(struct gw_bosh_sessions *t, const char *sid)
{
    struct gw_strmap_node *n = gw_strmap_find(&t->table, sid);
    return n ? GW_CONTAINER_OF(n, struct bsess, in_table) : NULL;
}

static enum gw_condition cond_of_err(int rc)
{
    return rc == GW_ELIMIT ? GW_COND_policy_violation : GW_COND_internal_server_error;
}

/* ---- request lists (ascending rid) ---- */

static void list_insert(struct bsess *bs, struct req_list *l, struct gw_bosh_req *r)
{
    struct gw_bosh_req *at = l->tail;
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
    r->bs = bs;
    if (l == &bs->held)
        bs->t->ctx->metrics.bosh_held++;
}

static void list_remove(struct req_list *l, struct gw_bosh_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    if (r->bs && l == &r->bs->held)
        r->bs->t->ctx->metrics.bosh_held--;
    r->prev = r->next = NULL;
    r->bs = NULL;
    l->n--;
}

static struct gw_bosh_req *list_find(const struct req_list *l, uint64_t rid)
{
    for (struct gw_bosh_req *r = l->head; r; r = r->next)
        if (r->rid == rid)
            return r;
    return NULL;
}

/* Take r off its session's list. */
static void req_detach(struct gw_bosh_req *r)
{
    struct bsess *bs = r->bs;
    if (!bs)
        return;
    list_remove(r->state == REQ_EARLY  ? &bs->early
                : r->state == REQ_DONE ? &bs->replays
                                       : &bs->held,
                r);
    r->deadline_ms = 0;
}

/* The next request of the session, held ones first, taken off its list (NULL: none left). */
static struct gw_bosh_req *pop_any(struct bsess *bs)
{
    struct gw_bosh_req *r = bs->held.head ? bs->held.head : bs->early.head;
    if (r)
        req_detach(r);
    return r;
}

/* ---- requests ---- */

static void req_drop_body(struct gw_bosh_req *r)
{
    if (r->body)
        gw_bosh_body_cleanup(r->body);
    free(r->body);
    r->body = NULL;
}

static void req_free(struct gw_bosh_req *r)
{
    gw_buf_cleanup(&r->resp);
    req_drop_body(r);
    free(r);
}

/* Close a request's connection without an answer (a repeat took its place). */
static void req_kill(struct gw_bosh_req *r)
{
    req_detach(r);
    r->t->ops->kill(r->conn);
    req_free(r);
}

/* r's answer is whole in r->resp (rc 0), or could not be made (503). Off every list. */
static void finish(struct gw_bosh_req *r, unsigned status, int rc)
{
    req_detach(r);
    r->state = REQ_DONE;
    r->status = rc ? 503 : status;
    r->xml = rc == 0;
    if (rc)
        gw_buf_reset(&r->resp);
}

/* Answer r with these bytes. */
static void answer_bytes(struct gw_bosh_req *r, unsigned status, const char *body, size_t len)
{
    gw_buf_reset(&r->resp);
    finish(r, status, gw_buf_append(&r->resp, body, len));
    r->t->ops->ready(r->conn);
}

static const char *buf_ptr(const struct gw_buf *b)
{
    return b ? gw_buf_ptr(b) : NULL;
}

static size_t buf_size(const struct gw_buf *b)
{
    return b ? gw_buf_size(b) : 0;
}

/* Build r's terminate body (cond, payload, upstream's error element; either may be NULL) without
 * telling the adapter. Returns 0 when the body was built. */
static int build_end(struct gw_bosh_req *r, enum gw_condition cond, unsigned status,
                     const struct gw_buf *payload, const struct gw_buf *err_xml)
{
    gw_buf_reset(&r->resp);
    int rc = gw_bosh_build_terminate(&r->resp, cond, buf_ptr(payload), buf_size(payload),
                                     buf_ptr(err_xml), buf_size(err_xml));
    if (!rc && cond != GW_COND_NONE)
        gw_metrics_count_terminate(&r->t->ctx->metrics, cond);
    finish(r, status, rc);
    return rc;
}

static int answer_end(struct gw_bosh_req *r, enum gw_condition cond, unsigned status,
                      const struct gw_buf *payload, const struct gw_buf *err_xml)
{
    int rc = build_end(r, cond, status, payload, err_xml);
    r->t->ops->ready(r->conn);
    return rc;
}

/* A binding error: the terminate body, with the status the client's version wants. */
static void answer_error(struct gw_bosh_req *r, enum gw_condition cond, bool legacy)
{
    (void)answer_end(r, cond, gw_bosh_error_status(cond, legacy), NULL, NULL);
}

/* ---- answering held requests ---- */

/* r (held) is to be answered now; its body is composed when the connection can take it. */
static void release(struct gw_bosh_req *r)
{
    r->state = REQ_DUE;
    r->deadline_ms = write_deadline(r->bs);
    r->t->ops->ready(r->conn);
}

/* Data for the client: the oldest held request answers at once. While the last answer that
 * carried stanzas may still be on its way (gw_bosh_order_allowed), that answer is empty and the
 * client comes back for them at once (a bound client polls). A client still logging in does not
 * poll (Strophe.js waiting for its bind result; bound for us is not bound for it until it
 * sends a request after the bind answer): its request waits up to ORDER_SETTLE_MS instead,
 * or until a new request tells that the client has that answer. */
static void wake(struct bsess *bs)
{
    struct gw_bosh_req *r = bs->held.head;
    if (!r || r->state != REQ_HELD || (r->creation && bs->state == BS_CONNECTING))
        return;
    if (r->creation || bs->client_bound || gw_bosh_order_allowed(&bs->order) ||
        !gw_buf_size(&bs->out)) {
        release(r);
        return;
    }
    uint64_t now = now_ms(bs->t);
    if (!bs->order_settle_ms)
        bs->order_settle_ms = now + ORDER_SETTLE_MS;
    if (!r->deadline_ms || r->deadline_ms > bs->order_settle_ms)
        r->deadline_ms = bs->order_settle_ms;
    reschedule(bs);
}

/* No more than `hold` requests wait: the oldest go first. */
static void enforce_hold(struct bsess *bs)
{
    unsigned waiting = 0;
    for (struct gw_bosh_req *r = bs->held.head; r; r = r->next)
        if (r->state == REQ_HELD)
            waiting++;
    for (struct gw_bosh_req *r = bs->held.head; r && waiting > bs->p.hold; r = r->next) {
        if (r->state != REQ_HELD || (r->creation && bs->state == BS_CONNECTING))
            continue;
        release(r);
        waiting--;
    }
}

/* Hold r (processed) on the session; its body is not needed any more. */
static void hold(struct bsess *bs, struct gw_bosh_req *r)
{
    req_drop_body(r);
    list_insert(bs, &bs->held, r);
}

/* The creation answer: sid and attributes, upstream's features, then any stanzas. */
static int compose_creation(struct bsess *bs, struct gw_bosh_req *r, const char *payload,
                            size_t plen)
{
    const struct gw_config *cfg = cfg_of(bs);
    struct gw_buf all;
    gw_buf_init(&all,
                gw_bosh_out_max(cfg->send_queue, cfg->max_stanza) + gw_buf_size(&bs->features) + 1);
    int rc = gw_buf_append(&all, gw_buf_ptr(&bs->features), gw_buf_size(&bs->features));
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
    return rc;
}

static int compose_reply(struct bsess *bs, struct gw_bosh_req *r, const char *payload, size_t plen)
{
    struct gw_bosh_reply rep = {.cond = GW_COND_NONE};
    if (bs->p.ack && r->rid < bs->last_rid) {
        rep.has_ack = true;
        rep.ack = bs->last_rid;
    }
    if (r->report.lost) {
        rep.has_report = true;
        rep.report = r->report.rid;
        rep.time_ms = r->report.time_ms;
    }
    return gw_bosh_build_reply(&r->resp, &rep, payload, plen);
}

/* Compose the answer of a due request: the stanzas waiting go to the oldest request, when
 * gw_bosh_order_allowed() (see bosh_proto.h). *empty: the answer is empty and the client was not
 * meant to come back at once (the overactivity rule counts it). */
static int compose(struct bsess *bs, struct gw_bosh_req *r, bool *empty)
{
    bool oldest = r == bs->held.head;
    if (bs->order_settle_ms && now_ms(bs->t) >= bs->order_settle_ms)
        gw_bosh_order_confirm_all(&bs->order); /* long enough on its way: it has arrived */
    bool take = oldest && (r->creation || gw_bosh_order_allowed(&bs->order));
    const char *payload = take ? gw_buf_ptr(&bs->out) : "";
    size_t plen = take ? gw_buf_size(&bs->out) : 0;
    gw_buf_reset(&r->resp);
    int rc =
        r->creation ? compose_creation(bs, r, payload, plen) : compose_reply(bs, r, payload, plen);
    /* Held back for order: the client is to come back at once for the stanzas. */
    *empty = !r->creation && plen == 0 && !(oldest && gw_buf_size(&bs->out));
    if (rc)
        return rc;
    if (take && plen)
        gw_bosh_order_sent(&bs->order, r->rid, r->fd);
    if (take) {
        bs->order_settle_ms = 0;
        gw_buf_reset(&bs->out);
        if (bs->out.cap > 65536)
            gw_buf_cleanup(&bs->out);
    }
    return 0;
}

/* The connection of a due request can take its answer: compose it now. */
static void answer_due(struct bsess *bs, struct gw_bosh_req *r)
{
    uint64_t now = now_ms(bs->t);
    bool empty = true;
    int rc = compose(bs, r, &empty);
    if (rc) {
        GW_WARN(log_of(bs), bs->sid, bs_jid(bs), "cannot compose an answer: %s", gw_strerror(rc));
        req_detach(r);
        (void)build_end(r, GW_COND_internal_server_error,
                        gw_bosh_error_status(GW_COND_internal_server_error, bs->p.legacy), NULL,
                        NULL);
        bs_end(bs, END_FAIL, GW_COND_internal_server_error, NULL);
        return;
    }
    if (gw_bosh_ridlog_answered(&bs->log, r->rid, gw_buf_ptr(&r->resp), gw_buf_size(&r->resp),
                                now) != 0)
        GW_DEBUG(log_of(bs), bs->sid, bs_jid(bs), "rid %llu: answer not kept",
                 (unsigned long long)r->rid);
    if (r->rid > bs->hi_answered)
        bs->hi_answered = r->rid;
    gw_bosh_activity_answer(&bs->act, empty);
    r->created = r->creation;
    finish(r, 200, 0);
    if (no_requests(bs))
        bs->idle_since = now;
    if (bs->out_paused && bs->s &&
        gw_queue_drained(gw_buf_size(&bs->out), cfg_of(bs)->send_queue)) {
        bs->out_paused = false;
        gw_session_resume(bs->s);
    }
    /* The next held request may have data waiting for it already. */
    if (gw_buf_size(&bs->out))
        wake(bs);
    reschedule(bs);
}

/* ---- the end of a session ---- */

static void on_timer(uv_timer_t *h);

static void bsess_free(struct bsess *bs)
{
    if (!bs)
        return;
    gw_bosh_ridlog_cleanup(&bs->log);
    gw_buf_cleanup(&bs->out);
    gw_buf_cleanup(&bs->features);
    gw_buf_cleanup(&bs->err_xml);
    free(bs->jid);
    free(bs);
}

/* Tell the asker of a prebind how it went (status 0: bound), once. */
static void prebind_tell(struct bsess *bs, int status, enum gw_condition cond)
{
    struct gw_prebind *p = bs->prebind;
    if (!p)
        return;
    bs->prebind = NULL;
    p->bs = NULL;
    struct gw_prebind_result res = {.status = status,
                                    .cond = status ? cond : GW_COND_NONE,
                                    .jid = status ? "" : bs_jid(bs),
                                    .sid = status ? "" : bs->sid,
                                    .rid = status ? 0 : (unsigned long long)bs->last_rid + 1};
    if (status)
        GW_INFO(log_of(bs), bs->sid, NULL, "prebind failed: %s", gw_condition_name(cond));
    else
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "prebound: the client's next rid is %llu",
                res.rid);
    p->fn(p->ud, &res);
    free(p);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct bsess *bs = h->data;
    if (bs->prebind) /* ended before it was bound: the asker hears of it now, on the loop */
        prebind_tell(bs,
                     bs->prebind_cond == GW_COND_policy_violation  ? GW_ELIMIT
                     : bs->prebind_cond == GW_COND_system_shutdown ? GW_ECLOSED
                                                                   : GW_EIO,
                     bs->prebind_cond);
    bsess_free(bs);
}

/* Let go of the core session (keeping its JID for log lines); returns it. */
static struct gw_session *detach(struct bsess *bs)
{
    struct gw_session *s = bs->s;
    if (s && !bs->jid && *gw_session_jid(s))
        bs->jid = strdup(gw_session_jid(s));
    bs->s = NULL;
    return s;
}

/* Tell the core session, if still attached, how the BOSH session ended. */
static void core_end(struct bsess *bs, enum bs_end_kind kind, enum gw_condition cond)
{
    struct gw_session *s = detach(bs);
    if (!s)
        return;
    if (kind == END_LOST)
        gw_session_lost(s);
    else
        gw_session_end(s, kind == END_CLIENT ? GW_COND_NONE : cond);
}

/* Replays keep their answers; they are only no longer the session's. */
static void let_go_of_replays(struct bsess *bs)
{
    while (bs->replays.head)
        req_detach(bs->replays.head);
}

/* Out of the table; the memory goes when the timer has closed. */
static void forget(struct bsess *bs)
{
    let_go_of_replays(bs);
    bs->state = BS_DEAD;
    gw_strmap_del(&bs->t->table, &bs->in_table);
    uv_timer_stop(&bs->timer);
    uv_close((uv_handle_t *)&bs->timer, on_timer_closed);
}

/* Answer r from a tombstone: the stanzas still waiting (to the first only), then the condition. */
static void answer_tombstone(struct bsess *bs, struct gw_bosh_req *r)
{
    unsigned status = gw_bosh_error_status(bs->cond, bs->p.legacy);
    if (answer_end(r, bs->cond, status, &bs->out, &bs->err_xml) == 0)
        gw_buf_cleanup(&bs->out);
}

static void entomb(struct bsess *bs, enum gw_condition cond)
{
    bs->state = BS_TOMB;
    bs->cond = cond;
    struct gw_bosh_req *r;
    while ((r = pop_any(bs)) != NULL)
        answer_tombstone(bs, r);
    unsigned keep = bs->p.inactivity > TOMB_MIN_S ? bs->p.inactivity : TOMB_MIN_S;
    bs->tomb_until = now_ms(bs->t) + (uint64_t)keep * 1000;
    reschedule(bs);
}

static const char *const end_words[] = {
    [END_CLIENT] = "terminated by the client",
    [END_FAIL] = "ended",
    [END_UPSTREAM] = "ended by upstream",
    [END_LOST] = "ended, the client is gone",
};

/* The one way a BOSH session ends. at: the request that ended it (type='terminate', a broken
 * rule), or NULL. What everyone gets is in enum bs_end_kind. Ending a tombstone forgets it. */
static void bs_end(struct bsess *bs, enum bs_end_kind kind, enum gw_condition cond,
                   struct gw_bosh_req *at)
{
    if (bs->state == BS_DEAD)
        return;
    if (bs->state == BS_TOMB) {
        forget(bs);
        return;
    }
    let_go_of_replays(bs);
    const struct gw_buf *err_xml = NULL;
    if (kind == END_UPSTREAM && (bs->state == BS_CONNECTING || bs->prebind)) {
        /* The client never learnt the sid: answer the creation request (with upstream's error
         * element, when it sent one), keep no tombstone. */
        kind = END_FAIL;
        at = bs->held.head;
        err_xml = &bs->err_xml;
        if (cond == GW_COND_NONE)
            cond = GW_COND_remote_connection_failed;
    }
    if (bs->prebind && bs->prebind_cond == GW_COND_NONE)
        bs->prebind_cond = cond == GW_COND_NONE ? GW_COND_internal_server_error : cond;
    GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "BOSH session %s: %s", end_words[kind],
            cond == GW_COND_NONE ? "closed" : gw_condition_name(cond));
    core_end(bs, kind, cond);
    if (kind == END_UPSTREAM) {
        entomb(bs, cond);
        return;
    }
    if (at && err_xml)
        (void)answer_end(at, cond, gw_bosh_error_status(cond, bs->p.legacy), NULL, err_xml);
    else if (at && kind == END_CLIENT)
        (void)answer_end(at, GW_COND_NONE, 200, &bs->out, NULL);
    else if (at)
        answer_error(at, cond, bs->p.legacy);
    struct gw_bosh_req *r;
    while ((r = pop_any(bs)) != NULL) {
        if (kind == END_CLIENT)
            (void)answer_end(r, GW_COND_NONE, 200, NULL, NULL);
        else
            answer_error(r, GW_COND_other_request, bs->p.legacy);
    }
    forget(bs);
}

/* ---- deadlines ---- */

static uint64_t earliest(const struct req_list *l, uint64_t next)
{
    for (const struct gw_bosh_req *r = l->head; r; r = r->next)
        if (r->deadline_ms && r->deadline_ms < next)
            next = r->deadline_ms;
    return next;
}

/* The earliest deadline of the session (UINT64_MAX: none, which no session in the table may
 * be without): an end decided in a callback, the tombstone's end, the creation deadline, every
 * held request's `wait`, every due request's write deadline, every early request's `wait`, and
 * inactivity when no request is open. */
static uint64_t next_deadline(const struct bsess *bs, uint64_t now)
{
    if (bs->pending != GW_COND_NONE || bs->prebind_due)
        return now;
    if (bs->state == BS_TOMB)
        return bs->tomb_until;
    uint64_t next = bs->state == BS_CONNECTING ? bs->creation_deadline : UINT64_MAX;
    next = earliest(&bs->early, earliest(&bs->held, next));
    /* (A prebound session has no request before it is OPEN, and is not idle then.) */
    if (bs->state == BS_OPEN && no_requests(bs) && bs->idle_since + bs->idle_ms < next)
        next = bs->idle_since + bs->idle_ms;
    return next;
}

static void reschedule(struct bsess *bs)
{
    if (bs->state == BS_DEAD)
        return;
    uint64_t now = now_ms(bs->t), next = next_deadline(bs, now);
    if (next == UINT64_MAX)
        uv_timer_stop(&bs->timer);
    else
        uv_timer_start(&bs->timer, on_timer, next > now ? next - now : 0, 0);
}

/* An early request waited `wait` and the gap before it was never filled (the rid window can never
 * move on): every early request gets item-not-found, and the session ends. */
static void gap_never_filled(struct bsess *bs)
{
    GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "rid %llu waited %u s for rid %llu, which never came",
            (unsigned long long)bs->early.head->rid, bs->p.wait,
            (unsigned long long)bs->last_rid + 1);
    struct gw_bosh_req *r;
    while ((r = bs->early.head) != NULL) {
        req_detach(r);
        answer_error(r, GW_COND_item_not_found, bs->p.legacy);
    }
    bs_end(bs, END_FAIL, GW_COND_item_not_found, NULL);
}

/* A due request whose connection did not take its answer within http.write_timeout: the
 * connection is closed and the request is lost, as if the browser had gone (a repeat of its rid
 * is held again). false: it was the creation request, and the session is gone with it. */
static bool drop_unwritten(struct bsess *bs, struct gw_bosh_req *r, uint64_t now)
{
    GW_INFO(log_of(bs), bs->sid, bs_jid(bs),
            "rid %llu from %s: answer not written within http.write_timeout (%u s): connection "
            "closed",
            (unsigned long long)r->rid, r->peer, cfg_of(bs)->http_write_timeout);
    bs->t->ctx->metrics.refused[GW_LIMIT_HTTP_DEADLINE]++;
    bool creation = r->creation;
    struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(&bs->log, r->rid);
    if (e && e->state == GW_BOSH_RID_HELD)
        e->state = GW_BOSH_RID_LOST;
    req_kill(r);
    if (creation) {
        bs_end(bs, END_LOST, GW_COND_NONE, NULL);
        return false;
    }
    if (no_requests(bs))
        bs->idle_since = now;
    return true;
}

/* Held requests past `wait` are answered; due ones past their write deadline dropped. false:
 * the session ended. */
static bool expire_held(struct bsess *bs, uint64_t now)
{
    struct gw_bosh_req *next;
    for (struct gw_bosh_req *r = bs->held.head; r; r = next) {
        next = r->next;
        if (!r->deadline_ms || r->deadline_ms > now)
            continue;
        if (r->state == REQ_HELD)
            release(r);
        else if (r->state == REQ_DUE && !drop_unwritten(bs, r, now))
            return false;
    }
    return true;
}

static void on_timer(uv_timer_t *h)
{
    struct bsess *bs = h->data;
    uint64_t now = now_ms(bs->t);
    if (bs->state == BS_DEAD)
        return;
    if (bs->pending != GW_COND_NONE) {
        enum gw_condition cond = bs->pending;
        bs->pending = GW_COND_NONE;
        bs_end(bs, END_FAIL, cond, bs->held.head);
        return;
    }
    if (bs->prebind_due) {
        bs->prebind_due = false;
        prebind_tell(bs, 0, GW_COND_NONE);
    }
    if (bs->state == BS_TOMB) {
        if (now >= bs->tomb_until)
            forget(bs);
        else
            reschedule(bs);
        return;
    }
    if (bs->state == BS_CONNECTING && now >= bs->creation_deadline) {
        GW_INFO(log_of(bs), bs->sid, NULL, "no stream features from upstream in time");
        bs_end(bs, END_FAIL, GW_COND_remote_connection_failed, bs->held.head);
        return;
    }
    if (earliest(&bs->early, UINT64_MAX) <= now) {
        gap_never_filled(bs);
        return;
    }
    if (!expire_held(bs, now))
        return;
    if (bs->state == BS_OPEN && no_requests(bs) && now >= bs->idle_since + bs->idle_ms) {
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "BOSH session inactive for %llu s",
                (unsigned long long)(bs->idle_ms / 1000));
        bs_end(bs, END_LOST, GW_COND_NONE, NULL);
        return;
    }
    reschedule(bs);
}

/* ---- the core session's sink ---- */

/* An end decided inside a sink callback runs from the timer, outside the session's callback. */
static void fail_later(struct bsess *bs, enum gw_condition cond)
{
    if (bs->pending == GW_COND_NONE)
        bs->pending = cond;
    reschedule(bs);
}

static void sink_stream_ready(void *t, const struct gw_stream_info *info, const char *features,
                              size_t len)
{
    struct bsess *bs = t;
    if (!is_live(bs))
        return;
    int rc;
    if (bs->state == BS_CONNECTING && bs->prebind) {
        /* Bound by the session itself: nothing to answer; the inactivity clock runs from now. */
        rc = 0;
        bs->state = BS_OPEN;
        gw_buf_cleanup(&bs->features);
        bs->idle_since = now_ms(bs->t);
        bs->prebind_due = true;
    } else if (bs->state == BS_CONNECTING) {
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
    if (rc)
        fail_later(bs, cond_of_err(rc));
    reschedule(bs);
}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    struct bsess *bs = t;
    if (!is_live(bs))
        return 0;
    int rc = gw_buf_append(&bs->out, bytes, len);
    if (rc) {
        GW_WARN(log_of(bs), bs->sid, bs_jid(bs), "client queue: %s", gw_strerror(rc));
        fail_later(bs, cond_of_err(rc));
        return GW_EAGAIN;
    }
    wake(bs);
    if (gw_queue_over(gw_buf_size(&bs->out), cfg_of(bs)->send_queue)) {
        bs->out_paused = true;
        return GW_EAGAIN;
    }
    return 0;
}

static void sink_closed(void *t, const struct gw_close_reason *why)
{
    struct bsess *bs = t;
    (void)detach(bs);
    if (!is_live(bs))
        return;
    if (bs->prebind && bs->prebind_cond == GW_COND_NONE && why->cond != GW_COND_NONE)
        bs->prebind_cond = why->cond; /* as the core session says it (not-authorized, ...) */
    bool has_err = why->err_xml && why->err_len;
    if (has_err && gw_buf_append(&bs->err_xml, why->err_xml, why->err_len) != 0)
        gw_buf_cleanup(&bs->err_xml);
    bs_end(bs, END_UPSTREAM, gw_bosh_terminate_condition(why->cond, has_err), NULL);
}

static const struct gw_sink_ops sink_ops = {
    .stream_ready = sink_stream_ready,
    .deliver = sink_deliver,
    .closed = sink_closed,
};

/* ---- requests for a session ---- */

/* Client stanzas for upstream (the core session holds them until the stream is open for them).
 * Returns the condition to end the session with, or GW_COND_NONE. */
static enum gw_condition send_payload(struct bsess *bs, const struct gw_bosh_body *body)
{
    for (unsigned i = 0; i < body->n_stanzas && bs->s; i++) {
        size_t len;
        const char *st = gw_bosh_body_stanza(body, i, &len);
        int rc = gw_session_send(bs->s, st, len);
        if (rc == GW_ECLOSED)
            return GW_COND_NONE; /* closed() follows or came */
        if (rc)
            return cond_of_err(rc);
    }
    return GW_COND_NONE;
}

/* Key sequencing (XEP-0124 section 15). false: the key is wrong and the session ended. */
static bool next_key(struct bsess *bs, struct gw_bosh_req *r)
{
    if (!bs->use_key)
        return true;
    if (!gw_bosh_key_ok(bs->key, r->body->key)) {
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "rid %llu: wrong key", (unsigned long long)r->rid);
        bs_end(bs, END_FAIL, GW_COND_item_not_found, r);
        return false;
    }
    snprintf(bs->key, sizeof(bs->key), "%s", r->body->newkey[0] ? r->body->newkey : r->body->key);
    return true;
}

/* xmpp:restart='true' (XEP-0206 section 5): GW_COND_NONE, or why the session ends. */
static enum gw_condition restart(struct bsess *bs)
{
    int rc = bs->s ? gw_session_restart(bs->s) : GW_ECLOSED;
    if (rc == GW_EPROTO) {
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "stream restart before SASL success");
        return GW_COND_bad_request;
    }
    return rc && rc != GW_ECLOSED ? GW_COND_internal_server_error : GW_COND_NONE;
}

/* pause (XEP-0124 section 10): every held request is answered now, and the session may then
 * stay without requests for `pause` seconds instead of `inactivity`. false: the session ended. */
static bool pause_session(struct bsess *bs, struct gw_bosh_req *r, uint64_t now)
{
    uint64_t pause = r->body->pause;
    if (!bs->p.maxpause || pause > bs->p.maxpause) {
        /* item-not-found when no maxpause was offered (section 10) */
        bs_end(bs, END_FAIL, bs->p.maxpause ? GW_COND_policy_violation : GW_COND_item_not_found, r);
        return false;
    }
    for (struct gw_bosh_req *h = bs->held.head; h; h = h->next)
        if (h->state == REQ_HELD)
            release(h);
    struct gw_bosh_reply rep = {.cond = GW_COND_NONE};
    gw_buf_reset(&r->resp);
    int rc = gw_bosh_build_reply(&r->resp, &rep, NULL, 0);
    if (!rc)
        (void)gw_bosh_ridlog_answered(&bs->log, r->rid, gw_buf_ptr(&r->resp), gw_buf_size(&r->resp),
                                      now);
    finish(r, 200, rc);
    bs->t->ops->ready(r->conn);
    if (r->rid > bs->hi_answered)
        bs->hi_answered = r->rid;
    bs->idle_ms = pause * 1000;
    if (no_requests(bs))
        bs->idle_since = now;
    GW_DEBUG(log_of(bs), bs->sid, bs_jid(bs), "paused for %llu s", (unsigned long long)pause);
    return true;
}

/* A request whose turn has come (rid == last_rid + 1). false: the session ended. */
static bool process_next(struct bsess *bs, struct gw_bosh_req *r)
{
    const struct gw_bosh_body *body = r->body;
    uint64_t now = now_ms(bs->t);
    if (!bs->client_bound) {
        const char *jid = bs_jid(bs);
        bs->client_bound = jid && jid[0];
    }
    if (!next_key(bs, r))
        return false;
    if (bs->p.ack && body->has_ack)
        gw_bosh_ridlog_ack(&bs->log, body->ack, bs->hi_answered, now, &r->report);
    bs->last_rid = r->rid;
    (void)gw_bosh_ridlog_add(&bs->log, r->rid, body->key);

    bool empty = gw_bosh_body_is_empty(body);
    if (gw_bosh_overactive(&bs->act, now, bs->p.polling, bs->held.n, empty)) {
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "empty requests closer than %u s", bs->p.polling);
        bs_end(bs, END_FAIL, GW_COND_policy_violation, r);
        return false;
    }
    gw_bosh_activity_request(&bs->act, now, empty);
    bs->idle_ms = (uint64_t)bs->p.inactivity * 1000;

    if (body->terminate) {
        /* Its last stanzas go upstream, then the stream is closed cleanly. */
        (void)send_payload(bs, body);
        bs_end(bs, END_CLIENT, GW_COND_NONE, r);
        return false;
    }
    /* A restart request follows the answer that carried <success/>, whichever connection each
     * took (a proxy may use another one per request): the features may go in its answer. */
    if (body->restart)
        gw_bosh_order_confirm_all(&bs->order);
    enum gw_condition cond = body->restart ? restart(bs) : GW_COND_NONE;
    if (cond == GW_COND_NONE)
        cond = send_payload(bs, body);
    if (cond != GW_COND_NONE) {
        bs_end(bs, END_FAIL, cond, r);
        return false;
    }
    if (body->has_pause)
        return pause_session(bs, r, now);
    r->state = REQ_HELD;
    r->deadline_ms = now + (uint64_t)bs->p.wait * 1000;
    hold(bs, r);
    enforce_hold(bs);
    if (gw_buf_size(&bs->out))
        wake(bs);
    return true;
}

/* One more open request would be more than `requests` (XEP-0124 section 12): the session ends
 * with policy-violation, and true is returned. */
static bool over_requests(struct bsess *bs, struct gw_bosh_req *r, const char *how)
{
    if (in_flight(bs) + 1 <= bs->p.requests)
        return false;
    GW_INFO(log_of(bs), bs->sid, bs_jid(bs),
            "rid %llu %s with %u requests open: more than %u simultaneous requests",
            (unsigned long long)r->rid, how, in_flight(bs), bs->p.requests);
    bs_end(bs, END_FAIL, GW_COND_policy_violation, r);
    return true;
}

/* A rid already processed: replay its answer, or take the place of its held request. */
static void repeated(struct bsess *bs, struct gw_bosh_req *r)
{
    struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(&bs->log, r->rid);
    bool wrong_key = e && bs->use_key && strcmp(e->key, r->body->key) != 0;
    bool lost = e && e->state == GW_BOSH_RID_ANSWERED && !gw_buf_size(&e->body);
    if (!e || wrong_key || lost) {
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "rid %llu: too old to repeat%s",
                (unsigned long long)r->rid,
                wrong_key ? " (wrong key)"
                : lost    ? " (answer not kept)"
                          : "");
        bs_end(bs, END_FAIL, GW_COND_item_not_found, r);
        return;
    }
    if (e->state == GW_BOSH_RID_ANSWERED) {
        /* A replay is a request open until its answer is written, like any other (XEP-0124
         * section 12: no more than `requests` at once); it goes on bs->replays until then. */
        if (over_requests(bs, r, "repeated"))
            return;
        GW_DEBUG(log_of(bs), bs->sid, bs_jid(bs), "rid %llu repeated: answer replayed",
                 (unsigned long long)r->rid);
        answer_bytes(r, 200, gw_buf_ptr(&e->body), gw_buf_size(&e->body));
        list_insert(bs, &bs->replays, r);
        return;
    }
    /* Still held, or its connection was lost: this request takes its place. One whose connection
     * was lost comes back as a new open request, within `requests` like any other. */
    struct gw_bosh_req *old = list_find(&bs->held, r->rid);
    if (!old && over_requests(bs, r, "resent"))
        return;
    uint64_t deadline = old ? old->deadline_ms : now_ms(bs->t) + (uint64_t)bs->p.wait * 1000;
    r->state = old ? old->state : REQ_HELD;
    r->creation = old && old->creation;
    if (old) {
        r->report = old->report;
        req_kill(old);
    }
    e->state = GW_BOSH_RID_HELD;
    hold(bs, r);
    /* A due answer has a new connection to go out on: its write deadline starts again. */
    r->deadline_ms = r->state == REQ_DUE ? write_deadline(bs) : deadline;
    GW_DEBUG(log_of(bs), bs->sid, bs_jid(bs), "rid %llu repeated while held",
             (unsigned long long)r->rid);
    if (r->state == REQ_DUE)
        r->t->ops->ready(r->conn);
    enforce_hold(bs);
    if (gw_buf_size(&bs->out))
        wake(bs);
}

/* A request naming a session that is open (or connecting). */
static void session_request(struct bsess *bs, struct gw_bosh_req *r)
{
    switch (gw_bosh_rid_classify(bs->last_rid, bs->p.requests, r->rid)) {
    case GW_BOSH_RID_SEEN:
        repeated(bs, r);
        return;
    case GW_BOSH_RID_OUTSIDE:
        GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "rid %llu outside the window (last %llu)",
                (unsigned long long)r->rid, (unsigned long long)bs->last_rid);
        bs_end(bs, END_FAIL, GW_COND_item_not_found, r);
        return;
    case GW_BOSH_RID_AHEAD:
    case GW_BOSH_RID_NEXT:
        gw_bosh_order_arrival(&bs->order, r->rid, bs->p.requests, r->fd);
        break;
    }
    /* An early rid sent again takes the place of the first, and keeps its deadline. */
    struct gw_bosh_req *dup = list_find(&bs->early, r->rid);
    uint64_t parked = dup ? dup->deadline_ms : now_ms(bs->t) + (uint64_t)bs->p.wait * 1000;
    if (dup)
        req_kill(dup);
    if (over_requests(bs, r, "sent"))
        return;
    if (r->rid != bs->last_rid + 1) {
        /* It waits for the gap until `wait` after it came; past it the session ends. */
        r->state = REQ_EARLY;
        list_insert(bs, &bs->early, r);
        r->deadline_ms = parked;
        return;
    }
    /* This one, then every early request whose turn it now is. */
    while (process_next(bs, r)) {
        r = bs->early.head;
        if (!r || r->rid != bs->last_rid + 1)
            return;
        req_detach(r);
    }
}

/* ---- session creation ---- */

static bool route_allowed(const struct gw_config *cfg, const char *route)
{
    for (unsigned i = 0; i < cfg->n_bosh_routes; i++)
        if (strcasecmp(cfg->bosh_routes[i], route) == 0)
            return true;
    return false;
}

/* Why a creation request is refused before anything is allocated (GW_COND_NONE: it is not). */
static enum gw_condition creation_refused(struct gw_bosh_sessions *t, const struct gw_bosh_req *r)
{
    const struct gw_bosh_body *body = r->body;
    if (t->ctx->draining)
        return GW_COND_system_shutdown;
    if (!body->to[0])
        return GW_COND_improper_addressing;
    /* route (XEP-0124 section 7.1) is only ever informational here: the upstream of a domain
     * comes from the configuration, so nobody can make the gateway connect elsewhere. */
    if (body->route[0] && route_allowed(t->ctx->cfg, body->route))
        GW_INFO(&t->ctx->log, NULL, NULL, "BOSH route '%s' from %s is allowed (informational)",
                body->route, r->peer);
    else if (body->route[0])
        GW_WARN(&t->ctx->log, NULL, NULL, "BOSH route '%s' from %s is not allowed: ignored",
                body->route, r->peer);
    return GW_COND_NONE;
}

/* Negotiate and size the session's buffers. */
static int bsess_init(struct bsess *bs, struct gw_bosh_sessions *t, const struct gw_bosh_body *b)
{
    const struct gw_config *cfg = t->ctx->cfg;
    struct gw_bosh_limits lim = {.max_wait = cfg->bosh_max_wait,
                                 .max_hold = cfg->bosh_max_hold,
                                 .max_requests = cfg->bosh_max_requests,
                                 .inactivity = cfg->bosh_inactivity,
                                 .max_pause = cfg->bosh_max_pause,
                                 .polling = cfg->bosh_polling};
    bs->t = t;
    bs->pending = GW_COND_NONE;
    bs->cond = GW_COND_NONE;
    bs->prebind_cond = GW_COND_NONE;
    gw_bosh_negotiate(b, &lim, &bs->p);
    gw_buf_init(&bs->out, gw_bosh_out_max(cfg->send_queue, cfg->max_stanza));
    gw_buf_init(&bs->features, cfg->max_stanza + 1);
    gw_buf_init(&bs->err_xml, cfg->max_stanza + 1);
    return gw_bosh_ridlog_init(&bs->log, bs->p.requests * 2,
                               gw_bosh_resp_max(cfg->send_queue, cfg->max_stanza));
}

/* The core session of a new BOSH session (so: its options but the sink), started for domain to.
 * On failure *cond says why. */
static int core_open(struct bsess *bs, struct gw_session_opts *so, const char *to, const char *lang,
                     enum gw_condition *cond)
{
    struct gw_ctx *ctx = bs->t->ctx;
    int rc = 0;
    so->transport = GW_TRANSPORT_BOSH;
    so->sink = &sink_ops;
    so->t = bs;
    bs->s = gw_session_new(ctx, so, &rc);
    if (!bs->s) {
        *cond = rc == GW_ELIMIT    ? GW_COND_policy_violation
                : rc == GW_ECLOSED ? GW_COND_system_shutdown
                                   : GW_COND_internal_server_error;
        return rc ? rc : GW_ENOMEM;
    }
    snprintf(bs->sid, sizeof(bs->sid), "%s", gw_session_id(bs->s));
    rc = gw_session_start(bs->s, to, lang);
    if (rc) {
        *cond = rc == GW_EINVAL ? GW_COND_host_unknown : GW_COND_internal_server_error;
        core_end(bs, END_FAIL, *cond);
    }
    return rc;
}

/* A new session's core session is started: into the table, its rids after rid, its clocks. */
static void bsess_enter(struct bsess *bs, uint64_t rid, const char *newkey)
{
    struct gw_bosh_sessions *t = bs->t;
    uint64_t now = now_ms(t);
    uv_timer_init(t->ctx->loop, &bs->timer);
    bs->timer.data = bs;
    gw_strmap_add(&t->table, &bs->in_table, bs->sid);
    bs->state = BS_CONNECTING;
    bs->last_rid = rid;
    bs->use_key = newkey[0] != '\0';
    snprintf(bs->key, sizeof(bs->key), "%s", newkey);
    gw_bosh_order_init(&bs->order);
    (void)gw_bosh_ridlog_add(&bs->log, rid, "");
    bs->idle_since = now;
    bs->idle_ms = (uint64_t)bs->p.inactivity * 1000;
    bs->creation_deadline =
        now + ((uint64_t)t->ctx->cfg->connect_timeout * 2 + CREATION_SLACK_S) * 1000;
    gw_bosh_activity_request(&bs->act, now, false);
}

/* A new BOSH session for creation request r, its core session started, in the table. NULL with
 * *cond: refused (nothing is left behind). */
static struct bsess *bsess_new(struct gw_bosh_sessions *t, const struct gw_bosh_req *r,
                               enum gw_condition *cond)
{
    const struct gw_bosh_body *body = r->body;
    struct bsess *bs = calloc(1, sizeof(*bs));
    int rc = bs ? bsess_init(bs, t, body) : GW_ENOMEM;
    struct gw_session_opts so = {.peer = r->peer, .auth = GW_SESSION_AUTH_CLIENT};
    *cond = GW_COND_internal_server_error;
    if (!rc)
        rc = core_open(bs, &so, body->to, body->lang[0] ? body->lang : NULL, cond);
    if (rc) {
        GW_INFO(&t->ctx->log, NULL, NULL, "BOSH session for '%s' from %s refused: %s", body->to,
                r->peer, gw_condition_name(*cond));
        bsess_free(bs);
        return NULL;
    }
    bsess_enter(bs, body->rid, body->newkey);
    return bs;
}

/* A request without sid: a new session. Its answer is held until upstream is ready. */
static void create_session(struct gw_bosh_sessions *t, struct gw_bosh_req *r)
{
    const struct gw_bosh_body *body = r->body;
    enum gw_condition cond = creation_refused(t, r);
    struct bsess *bs = cond == GW_COND_NONE ? bsess_new(t, r, &cond) : NULL;
    if (!bs) {
        answer_error(r, cond, gw_bosh_legacy(body->ver));
        return;
    }
    GW_INFO(&t->ctx->log, bs->sid, NULL,
            "BOSH session for %s from %s: wait=%u hold=%u requests=%u ver=%s ack=%s keys=%s",
            body->to, r->peer, bs->p.wait, bs->p.hold, bs->p.requests, bs->p.ver,
            bs->p.ack ? "yes" : "no", bs->use_key ? "yes" : "no");
    cond = send_payload(bs, body);
    if (cond != GW_COND_NONE) {
        bs_end(bs, END_FAIL, cond, r);
        return;
    }
    r->creation = true;
    r->state = REQ_HELD;
    hold(bs, r);
    r->deadline_ms = bs->creation_deadline; /* answered when the features come, or then */
    reschedule(bs);
}

/* ---- prebind: a session that logs in by itself, for a client to attach to ---- */

/* The core session's options and domain for a prebind request (user and resource point into
 * j). GW_EINVAL when the request cannot be served. */
static int prebind_opts(const struct gw_config *cfg, const struct gw_prebind_req *req,
                        struct gw_jid *j, struct gw_session_opts *so, const char **to)
{
    so->peer = req->peer;
    if (req->visitor) {
        if (!cfg->visitors_domain[0])
            return GW_EINVAL;
        so->auth = GW_SESSION_AUTH_VISITOR;
        *to = cfg->visitors_domain;
        return 0;
    }
    if (!req->jid || !req->password || gw_jid_parse(req->jid, j) != 0 || !j->local[0] ||
        !gw_config_upstream_for(cfg, j->domain))
        return GW_EINVAL;
    so->auth = GW_SESSION_AUTH_GATEWAY;
    so->user = j->local;
    so->password = req->password;
    so->resource = j->resource[0] ? j->resource : NULL;
    *to = j->domain;
    return 0;
}

/* The first rid of a prebound session: random, as a client picks its own. */
static int prebind_rid(uint64_t *rid)
{
    int rc = gw_rand_u64(rid);
    *rid = *rid % PREBIND_RID_MAX + 1;
    return rc;
}

int gw_bosh_sessions_prebind(struct gw_bosh_sessions *t, const struct gw_prebind_req *req,
                             gw_prebind_fn fn, void *ud, struct gw_prebind **out)
{
    static const struct gw_bosh_body no_attributes; /* a client that named no attribute */
    struct gw_jid j;
    struct gw_session_opts so = {0};
    const char *to = NULL;
    enum gw_condition cond = GW_COND_NONE;
    uint64_t rid = 0;
    if (t->ctx->draining)
        return GW_ECLOSED;
    int rc = req && fn && out ? prebind_opts(t->ctx->cfg, req, &j, &so, &to) : GW_EINVAL;
    if (!rc)
        rc = prebind_rid(&rid);
    struct gw_prebind *p = rc ? NULL : calloc(1, sizeof(*p));
    struct bsess *bs = p ? calloc(1, sizeof(*bs)) : NULL;
    if (!rc && !bs)
        rc = GW_ENOMEM;
    if (!rc)
        rc = bsess_init(bs, t, &no_attributes);
    if (!rc)
        rc = core_open(bs, &so, to, NULL, &cond);
    if (rc) {
        GW_INFO(&t->ctx->log, NULL, NULL, "BOSH prebind for %s from %s refused: %s",
                req && req->visitor ? "a visitor" : "an account",
                req && req->peer ? req->peer : "-", gw_strerror(rc));
        bsess_free(bs);
        free(p);
        return rc;
    }
    bsess_enter(bs, rid, "");
    /* The rid before the client's first: answered already, as a creation request would be. */
    (void)gw_bosh_ridlog_answered(&bs->log, rid, "", 0, now_ms(t));
    p->bs = bs;
    p->fn = fn;
    p->ud = ud;
    bs->prebind = p;
    *out = p;
    GW_INFO(&t->ctx->log, bs->sid, NULL, "BOSH prebind for %s from %s: wait=%u hold=%u requests=%u",
            to, req->peer ? req->peer : "-", bs->p.wait, bs->p.hold, bs->p.requests);
    reschedule(bs);
    return 0;
}

void gw_prebind_cancel(struct gw_prebind *p)
{
    if (!p)
        return;
    struct bsess *bs = p->bs;
    if (bs) {
        bs->prebind = NULL;
        if (is_live(bs)) {
            GW_INFO(log_of(bs), bs->sid, bs_jid(bs), "prebind abandoned by its asker");
            bs_end(bs, END_LOST, GW_COND_NONE, NULL);
        }
    }
    free(p);
}

/* ---- request bodies ---- */

static void refresh_parser(struct gw_bosh_sessions *t)
{
    const struct gw_config *cfg = t->ctx->cfg;
    struct gw_xml_limits lim = {
        .max_stanza = cfg->max_stanza, .max_depth = cfg->max_depth, .max_attrs = cfg->max_attrs};
    if (t->parser && memcmp(&lim, &t->limits, sizeof(lim)) == 0)
        return;
    struct gw_bosh_parser *p = gw_bosh_parser_new(&lim);
    if (!p)
        return; /* keep the old one */
    gw_bosh_parser_free(t->parser);
    t->parser = p;
    t->limits = lim;
}

static const char *parse_err_text(enum gw_bosh_parse_err e)
{
    return e == GW_BOSH_PARSE_XML     ? "not well-formed"
           : e == GW_BOSH_PARSE_ROOT  ? "not a BOSH <body/>"
           : e == GW_BOSH_PARSE_ATTR  ? "bad attribute value"
           : e == GW_BOSH_PARSE_CHILD ? "a child element in the stream namespace"
           : e == GW_BOSH_PARSE_LIMIT ? "a stanza past limits.max_stanza, max_depth or max_attrs"
                                      : "no rid";
}

/* A body that cannot be used: bad-request. One that still names a live session ends it
 * (XEP-0124: bad-request is terminal). */
static void bad_body(struct gw_bosh_sessions *t, struct bsess *bs, struct gw_bosh_req *r,
                     enum gw_bosh_parse_err perr)
{
    GW_INFO(&t->ctx->log, bs ? bs->sid : NULL, bs ? bs_jid(bs) : NULL,
            "bad BOSH request from %s: %s", r->peer, parse_err_text(perr));
    /* Broken XML is HTTP 400 whatever the client's version. A stanza past a limit breaks a
     * local rule, not the syntax: policy-violation for a live session (RFC 6120 4.9.3.18). */
    bool live = bs && is_live(bs), limit = perr == GW_BOSH_PARSE_LIMIT;
    enum gw_condition cond = limit && live ? GW_COND_policy_violation : GW_COND_bad_request;
    bool http400 = perr == GW_BOSH_PARSE_XML || perr == GW_BOSH_PARSE_ROOT || (limit && !live);
    if (live) {
        unsigned status = http400 ? 400 : gw_bosh_error_status(cond, bs->p.legacy);
        (void)answer_end(r, cond, status, NULL, NULL);
        bs_end(bs, END_FAIL, cond, NULL);
    } else {
        (void)answer_end(r, GW_COND_bad_request, http400 ? 400 : 200, NULL, NULL);
    }
}

/* The length of the node id that prefixes sid ("n2" in "n2.3f9a..."), or 0 when it names no
 * other node: no prefix, not a node id's characters, or this node's own id. */
static size_t other_node(const char *me, const char *sid)
{
    size_t n = strspn(sid, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");
    if (!n || n > GW_CFG_NODE_ID_MAX || sid[n] != GW_SID_SEP)
        return 0;
    return strlen(me) == n && memcmp(me, sid, n) == 0 ? 0 : n;
}

/* A sid not in the table: item-not-found (XEP-0124 section 17.3), never a new session. One the
 * sid's prefix says another node made was routed to the wrong node: the line names that node. */
static void unknown_sid(struct gw_bosh_sessions *t, struct gw_bosh_req *r)
{
    const char *me = t->ctx->cfg->node_id;
    size_t n = other_node(me, r->body->sid);
    if (n)
        GW_INFO(&t->ctx->log, NULL, NULL,
                "BOSH request from %s for a session of node '%.*s' (this is node '%s'): "
                "item-not-found; the proxy sent it to the wrong node",
                r->peer, (int)n, r->body->sid, me);
    else
        GW_DEBUG(&t->ctx->log, NULL, NULL, "BOSH request from %s for an unknown sid", r->peer);
    answer_error(r, GW_COND_item_not_found, false);
}

void gw_bosh_req_submit(struct gw_bosh_req *r, const char *data, size_t len)
{
    struct gw_bosh_sessions *t = r->t;
    refresh_parser(t);
    r->body = malloc(sizeof(*r->body));
    if (!r->body) {
        answer_error(r, GW_COND_internal_server_error, false);
        return;
    }
    gw_bosh_body_init(r->body, gw_bosh_payload_max(len));
    enum gw_bosh_parse_err perr =
        t->parser ? gw_bosh_parse(t->parser, data, len, r->body) : GW_BOSH_PARSE_NOMEM;
    struct bsess *bs = r->body->sid[0] ? table_find(t, r->body->sid) : NULL;
    if (perr == GW_BOSH_PARSE_NOMEM) {
        answer_error(r, GW_COND_internal_server_error, false);
        return;
    }
    if (perr != GW_BOSH_PARSE_OK || !r->body->has_rid) {
        bad_body(t, bs, r, perr);
        return;
    }
    r->rid = r->body->rid;
    if (!r->body->sid[0]) {
        create_session(t, r);
    } else if (!bs) {
        unknown_sid(t, r);
    } else if (bs->state == BS_TOMB) {
        answer_tombstone(bs, r);
    } else {
        session_request(bs, r);
        reschedule(bs);
    }
}

/* ---- the adapter's side of a request ---- */

struct gw_bosh_req *gw_bosh_req_new(struct gw_bosh_sessions *t, void *conn, int fd,
                                    const char *peer)
{
    struct gw_bosh_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    const struct gw_config *cfg = t->ctx->cfg;
    r->t = t;
    r->conn = conn;
    r->fd = fd;
    snprintf(r->peer, sizeof(r->peer), "%s", peer ? peer : "");
    r->state = REQ_NEW;
    gw_buf_init(&r->resp, gw_bosh_resp_max(cfg->send_queue, cfg->max_stanza));
    return r;
}

int gw_bosh_req_answer(struct gw_bosh_req *r, struct gw_bosh_answer *out)
{
    if (r->state == REQ_DUE && r->bs)
        answer_due(r->bs, r);
    if (r->state != REQ_DONE)
        return GW_EAGAIN;
    out->status = r->status;
    out->xml = r->xml;
    out->created = r->created;
    out->body = gw_buf_ptr(&r->resp);
    out->len = gw_buf_size(&r->resp);
    return 0;
}

void gw_bosh_req_close(struct gw_bosh_req *r)
{
    struct bsess *bs = r->bs;
    if (!bs || r->state == REQ_EARLY || r->state == REQ_DONE) {
        req_detach(r);
        req_free(r);
        if (bs)
            reschedule(bs);
        return;
    }
    /* A held request whose browser went away. */
    if (r->creation) {
        /* The client never got its sid: nobody can use this session. */
        GW_INFO(log_of(bs), bs->sid, NULL, "session creation request abandoned");
        req_detach(r);
        req_free(r);
        bs_end(bs, END_LOST, GW_COND_NONE, NULL);
        return;
    }
    struct gw_bosh_rid_entry *e = gw_bosh_ridlog_find(&bs->log, r->rid);
    if (e && e->state == GW_BOSH_RID_HELD)
        e->state = GW_BOSH_RID_LOST;
    GW_DEBUG(log_of(bs), bs->sid, bs_jid(bs), "rid %llu abandoned by the browser",
             (unsigned long long)r->rid);
    req_detach(r);
    req_free(r);
    if (no_requests(bs))
        bs->idle_since = now_ms(bs->t);
    /* Data that was on its way to it waits for the next request. */
    reschedule(bs);
}

/* ---- the module ---- */

struct gw_bosh_sessions *gw_bosh_sessions_new(struct gw_ctx *ctx,
                                              const struct gw_bosh_conn_ops *ops)
{
    struct gw_bosh_sessions *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ctx = ctx;
    t->ops = ops;
    if (gw_strmap_init(&t->table) != 0) {
        free(t);
        return NULL;
    }
    refresh_parser(t);
    if (!t->parser) {
        gw_strmap_cleanup(&t->table);
        free(t);
        return NULL;
    }
    return t;
}

size_t gw_bosh_sessions_count(const struct gw_bosh_sessions *t)
{
    return t ? t->table.n : 0;
}

static struct bsess *first_session(struct gw_bosh_sessions *t)
{
    struct gw_strmap_node *n = gw_strmap_first(&t->table);
    return n ? GW_CONTAINER_OF(n, struct bsess, in_table) : NULL;
}

void gw_bosh_sessions_free(struct gw_bosh_sessions *t)
{
    if (!t)
        return;
    struct bsess *bs;
    while ((bs = first_session(t)) != NULL) {
        /* Connections are gone by now: requests are freed, not answered. */
        struct gw_bosh_req *r;
        while ((r = pop_any(bs)) != NULL)
            req_free(r);
        if (bs->prebind) { /* its asker is gone by now (see bosh.h) */
            bs->prebind->bs = NULL;
            bs->prebind = NULL;
        }
        let_go_of_replays(bs);
        bs_end(bs, END_FAIL, GW_COND_system_shutdown, NULL);
    }
    gw_bosh_parser_free(t->parser);
    gw_strmap_cleanup(&t->table);
    free(t);
}

/* ---- views for tests ---- */

unsigned long long gw_bosh_req_rid(const struct gw_bosh_req *r)
{
    return (unsigned long long)r->rid;
}

static unsigned count_waiting(const struct bsess *bs)
{
    unsigned n = 0;
    for (const struct gw_bosh_req *r = bs->held.head; r; r = r->next)
        if (r->state == REQ_HELD && !(r->creation && bs->state == BS_CONNECTING))
            n++;
    return n;
}

bool gw_bosh_sessions_requests(struct gw_bosh_sessions *t, const char *sid, unsigned *held,
                               unsigned *early)
{
    struct bsess *bs = table_find(t, sid);
    if (!bs || !is_live(bs))
        return false;
    *held = count_waiting(bs);
    *early = bs->early.n;
    return true;
}

/* The invariants of one session; returns how many are broken. */
static unsigned check_session(const struct bsess *bs, uint64_t now)
{
    unsigned bad = 0;
    if (!is_live(bs))
        return bs->held.n + bs->early.n +
               (bs->state == BS_TOMB && !uv_is_active((uv_handle_t *)&bs->timer));
    bad += count_waiting(bs) > bs->p.hold;
    bad += in_flight(bs) > bs->p.requests;
    for (const struct gw_bosh_req *r = bs->held.head; r; r = r->next) {
        bad += r->bs != bs || (r->state != REQ_HELD && r->state != REQ_DUE);
        bad += !r->deadline_ms; /* every parked request has a deadline */
        bad += r->next && r->next->rid <= r->rid;
    }
    for (const struct gw_bosh_req *r = bs->early.head; r; r = r->next) {
        bad += r->bs != bs || r->state != REQ_EARLY || r->rid <= bs->last_rid + 1;
        bad += !r->deadline_ms;
        bad += r->next && r->next->rid <= r->rid;
    }
    for (const struct gw_bosh_req *r = bs->replays.head; r; r = r->next)
        bad += r->bs != bs || r->state != REQ_DONE;
    bad += bs->state == BS_CONNECTING && !bs->creation_deadline;
    /* No session without a pending deadline, and its timer set for it. */
    uint64_t next = next_deadline(bs, now);
    bad += next == UINT64_MAX || !uv_is_active((uv_handle_t *)&bs->timer);
    return bad;
}

unsigned gw_bosh_sessions_check(struct gw_bosh_sessions *t)
{
    unsigned bad = 0;
    uint64_t now = now_ms(t);
    for (struct gw_strmap_node *n = gw_strmap_first(&t->table); n; n = gw_strmap_next(&t->table, n))
        bad += check_session(GW_CONTAINER_OF(n, struct bsess, in_table), now);
    return bad;
}
