/* Tests for gateway/session/session.c: the session state machine against a scripted upstream. The
 * upstream server is a libuv TCP listener on 127.0.0.1 in the gateway's own loop; each connection
 * it accepts reads what the session sends and answers by a per-test script (substring triggers on
 * the accumulated input). The client side is a recording sink. Every wait is bounded by a timer
 * and its outcome checked; at the end every handle is closed and the loop closes cleanly (the
 * test runs under ASan with leak detection). */
#include "session/session.h"
#include "check.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "config/config.h"
#include "core/buf.h"
#include "xml/xml.h"
#include "xmpp/upstream.h"

#define WAIT_MS 3000  /* bound of every wait for something that should happen */
#define SETTLE_MS 150 /* how long to watch for something that should not happen */
#define MAX_PEERS 16

/* ---- what the scripted server says ---- */

#define HDR(id)                                                                                    \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' id='" id "' from='localhost' version='1.0'>"
#define FEAT_SASL                                                                                  \
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"                       \
    "<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
#define FEAT_NO_KNOWN_MECH                                                                         \
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"                       \
    "<mechanism>DIGEST-MD5</mechanism></mechanisms></stream:features>"
#define FEAT_BIND                                                                                  \
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
#define SUCCESS "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
#define FAILURE "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
#define BIND_RESULT(id)                                                                            \
    "<iq type='result' id='" id "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"                \
    "<jid>user@localhost/res</jid></bind></iq>"
#define STREAM_END "</stream:stream>"
#define STREAM_ERROR(cond, ns) "<stream:error><" cond " xmlns='" ns "'/></stream:error>"

/* ---- what the client side sends ---- */

#define AUTH "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHUAcA==</auth>"
#define BIND_IQ                                                                                    \
    "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"                       \
    "<resource>res</resource></bind></iq>"
#define PRESENCE "<presence/>"

struct fixture;
struct peer;

/* One step of a server script: when `when` is found in what the server read since the previous
 * match, hook (if any) runs, `say` (if any) is sent, and the connection is dropped if asked. */
struct step {
    const char *when;
    const char *say;
    bool drop;
    void (*hook)(struct peer *p);
};

/* Client-auth steps up to a bound stream (the bind answers any client bind request). */
/* clang-format off */
#define UP_TO_BOUND(bind_id)                                                                       \
    {"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},                                          \
    {"<auth", SUCCESS, false, NULL},                                                               \
    {"<stream:stream", HDR("s2") FEAT_BIND, false, NULL},                                          \
    {"<bind", BIND_RESULT(bind_id), false, NULL}
/* clang-format on */

/* One accepted upstream connection. */
struct peer {
    uv_tcp_t tcp;
    struct fixture *f;
    struct gw_buf in;        /* everything the gateway sent on this connection */
    size_t pos;              /* where the next trigger is looked for */
    const struct step *step; /* next step of its script */
    bool eof;                /* the gateway closed or shut down its side */
    bool closing, closed;
};

/* The recording sink of one session. */
struct rec {
    struct fixture *f;
    struct gw_session *s;
    unsigned ready, delivered, closed;
    enum gw_session_state state_at_ready;
    char id[64], from[64], version[16], lang[16]; /* stream info of the last stream_ready */
    struct gw_buf features;                       /* features of the last stream_ready */
    struct gw_buf out;                            /* every delivered element, concatenated */
    struct gw_buf last;                           /* the last delivered element */
    enum gw_condition cond;                       /* of closed() */
    bool has_text, has_err;
    char text[256];
    struct gw_buf err_xml;
    bool eagain;                       /* deliver() answers GW_EAGAIN */
    const char *send_in_deliver;       /* sent from inside the next deliver() */
    int deliver_send_rc;               /* what that send returned */
    bool try_in_closed;                /* call the session from inside closed() */
    int send_rc, restart_rc, start_rc; /* what those calls returned */
    struct gw_session *end_on_close;   /* a session this owner ends from inside closed() */
    bool gone;                         /* closed() came: the session must not be touched */
    bool resumable;                    /* closed() said the stream was left resumable */
};

struct fixture {
    uv_loop_t loop;
    struct gw_config cfg;
    struct gw_ctx ctx;
    uv_tcp_t listener;
    uint16_t port;
    const struct step *script; /* for connections accepted from now on */
    struct peer *peers[MAX_PEERS];
    unsigned n_peers;
    uv_timer_t deadline; /* unreferenced: bounds waits without keeping the loop alive */
    bool timed_out;
    struct rec *traced; /* its session's states are recorded */
    enum gw_session_state trace[32];
    unsigned n_trace;
    struct gw_session *hook_session;     /* for server hooks that act on a session */
    int hook_rc[2];                      /* what the hooks' calls returned */
    enum gw_session_state hook_state[2]; /* the session's state when they ran */
};

/* ---- the state trace ---- */

static void note_state(struct fixture *f)
{
    if (!f->traced || f->traced->gone || !f->traced->s)
        return;
    enum gw_session_state st = gw_session_state(f->traced->s);
    if (f->n_trace && f->trace[f->n_trace - 1] == st)
        return;
    if (f->n_trace < sizeof(f->trace) / sizeof(f->trace[0]))
        f->trace[f->n_trace++] = st;
}

/* ---- running the loop, bounded ---- */

static void on_deadline(uv_timer_t *t)
{
    struct fixture *f = t->data;
    f->timed_out = true;
}

static void arm(struct fixture *f, unsigned ms)
{
    f->timed_out = false;
    uv_timer_start(&f->deadline, on_deadline, ms, 0);
}

/* One loop iteration; false once the deadline passed or nothing can happen any more. */
static bool turn(struct fixture *f)
{
    int alive = uv_run(&f->loop, UV_RUN_ONCE);
    note_state(f);
    return alive && !f->timed_out;
}

#define WAIT_MAX(f, cond, ms)                                                                      \
    do {                                                                                           \
        arm((f), (ms));                                                                            \
        while (!(cond) && turn(f)) {                                                               \
        }                                                                                          \
        uv_timer_stop(&(f)->deadline);                                                             \
    } while (0)
#define WAIT(f, cond) WAIT_MAX(f, cond, WAIT_MS)

/* Run the loop for ms whatever happens. */
static void settle(struct fixture *f, unsigned ms)
{
    arm(f, ms);
    while (turn(f)) {
    }
    uv_timer_stop(&f->deadline);
}

/* ---- the scripted server ---- */

struct wreq {
    uv_write_t req;
    char data[];
};

static void on_peer_written(uv_write_t *req, int status)
{
    free(req);
}

static void peer_say(struct peer *p, const char *bytes, size_t len)
{
    if (p->closing)
        return;
    struct wreq *w = malloc(sizeof(*w) + len);
    if (!w)
        return;
    memcpy(w->data, bytes, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&p->tcp, &b, 1, on_peer_written) != 0)
        free(w);
}

static void on_peer_closed(uv_handle_t *h)
{
    struct peer *p = h->data;
    p->closed = true;
}

static void peer_close(struct peer *p)
{
    if (p->closing)
        return;
    p->closing = true;
    uv_close((uv_handle_t *)&p->tcp, on_peer_closed);
}

static void run_script(struct peer *p)
{
    while (!p->closing && p->step && p->step->when) {
        const char *base = gw_buf_ptr(&p->in);
        const char *hit = strstr(base + p->pos, p->step->when);
        if (!hit)
            return;
        const struct step *st = p->step++;
        p->pos = (size_t)(hit - base) + strlen(st->when);
        if (st->hook)
            st->hook(p);
        if (st->say)
            peer_say(p, st->say, strlen(st->say));
        if (st->drop)
            peer_close(p);
    }
}

static void on_peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char chunk[65536];
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct peer *p = s->data;
    if (n < 0) {
        p->eof = true;
        peer_close(p);
        return;
    }
    if (n > 0 && gw_buf_append(&p->in, buf->base, (size_t)n) == 0) {
        note_state(p->f);
        run_script(p);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct fixture *f = server->data;
    struct peer *p = calloc(1, sizeof(*p));
    if (status < 0 || !p || f->n_peers == MAX_PEERS) {
        free(p);
        return;
    }
    uv_tcp_init(&f->loop, &p->tcp);
    p->tcp.data = p;
    p->f = f;
    p->step = f->script;
    gw_buf_init(&p->in, 8u << 20);
    f->peers[f->n_peers++] = p;
    if (uv_accept(server, (uv_stream_t *)&p->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, on_peer_alloc, on_peer_read) != 0)
        peer_close(p);
}

/* What the gateway sent on connection i ("" when there is no such connection). */
static const char *peer_in(struct fixture *f, unsigned i)
{
    return i < f->n_peers ? gw_buf_ptr(&f->peers[i]->in) : "";
}

static bool peer_has(struct fixture *f, unsigned i, const char *needle)
{
    return strstr(peer_in(f, i), needle) != NULL;
}

static bool peer_eof(struct fixture *f, unsigned i)
{
    return i < f->n_peers && f->peers[i]->eof;
}

static bool peers_closed(struct fixture *f)
{
    for (unsigned i = 0; i < f->n_peers; i++)
        if (!f->peers[i]->closed)
            return false;
    return true;
}

/* Do the needles occur in hay in this order, none overlapping the previous? */
__attribute__((sentinel)) static bool in_order(const char *hay, ...)
{
    va_list ap;
    va_start(ap, hay);
    const char *at = hay, *n;
    bool ok = true;
    while ((n = va_arg(ap, const char *)) != NULL) {
        const char *hit = strstr(at, n);
        if (!hit) {
            ok = false;
            break;
        }
        at = hit + strlen(n);
    }
    va_end(ap);
    return ok;
}

static unsigned count_of(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + strlen(needle), needle))
        n++;
    return n;
}

/* ---- the recording sink ---- */

static int send_str(struct gw_session *s, const char *xml)
{
    return gw_session_send(s, xml, strlen(xml));
}

static void copy_str(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s ? s : "(null)");
}

static void sink_ready(void *t, const struct gw_stream_info *info, const char *features, size_t len)
{
    struct rec *r = t;
    r->ready++;
    r->state_at_ready = gw_session_state(r->s);
    copy_str(r->id, sizeof(r->id), info->id);
    copy_str(r->from, sizeof(r->from), info->from);
    copy_str(r->version, sizeof(r->version), info->version);
    copy_str(r->lang, sizeof(r->lang), info->lang);
    gw_buf_reset(&r->features);
    CHECK(gw_buf_append(&r->features, features, len) == 0);
    note_state(r->f);
}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    struct rec *r = t;
    r->delivered++;
    gw_buf_reset(&r->last);
    CHECK(gw_buf_append(&r->last, bytes, len) == 0);
    CHECK(gw_buf_append(&r->out, bytes, len) == 0);
    note_state(r->f);
    if (r->send_in_deliver) {
        r->deliver_send_rc = send_str(r->s, r->send_in_deliver);
        r->send_in_deliver = NULL;
    }
    return r->eagain ? GW_EAGAIN : 0;
}

static void sink_closed(void *t, const struct gw_close_reason *why)
{
    struct rec *r = t;
    r->closed++;
    r->cond = why->cond;
    r->resumable = why->resumable;
    r->has_text = why->text != NULL;
    copy_str(r->text, sizeof(r->text), why->text);
    r->has_err = why->err_xml != NULL;
    if (why->err_xml)
        CHECK(gw_buf_append(&r->err_xml, why->err_xml, why->err_len) == 0);
    note_state(r->f);
    if (r->try_in_closed) {
        r->send_rc = gw_session_send(r->s, PRESENCE, strlen(PRESENCE));
        r->restart_rc = gw_session_restart(r->s);
        r->start_rc = gw_session_start(r->s, "localhost", NULL);
    }
    if (r->end_on_close)
        gw_session_end(r->end_on_close, GW_COND_NONE);
    r->gone = true;
}

static const struct gw_sink_ops sink = {sink_ready, sink_deliver, sink_closed};

static void rec_init(struct rec *r, struct fixture *f)
{
    memset(r, 0, sizeof(*r));
    r->f = f;
    gw_buf_init(&r->features, 1u << 20);
    gw_buf_init(&r->out, 8u << 20);
    gw_buf_init(&r->last, 1u << 20);
    gw_buf_init(&r->err_xml, 1u << 20);
}

static void rec_cleanup(struct rec *r)
{
    gw_buf_cleanup(&r->features);
    gw_buf_cleanup(&r->out);
    gw_buf_cleanup(&r->last);
    gw_buf_cleanup(&r->err_xml);
}

/* A client-auth session recorded by r (NULL with a failed CHECK if it cannot be made). */
static struct gw_session *open_client(struct fixture *f, struct rec *r)
{
    rec_init(r, f);
    struct gw_session_opts o = {
        .transport = GW_TRANSPORT_WS, .sink = &sink, .t = r, .peer = "192.0.2.7"};
    int err = 1;
    r->s = gw_session_new(&f->ctx, &o, &err);
    CHECK(r->s != NULL);
    CHECK(err == 0);
    return r->s;
}

static struct gw_session *open_gateway(struct fixture *f, struct rec *r, const char *resource)
{
    rec_init(r, f);
    struct gw_session_opts o = {.transport = GW_TRANSPORT_INTERNAL,
                                .sink = &sink,
                                .t = r,
                                .auth = GW_SESSION_AUTH_GATEWAY,
                                .user = "user",
                                .password = "password",
                                .resource = resource};
    int err = 1;
    r->s = gw_session_new(&f->ctx, &o, &err);
    CHECK(r->s != NULL);
    CHECK(err == 0);
    return r->s;
}

/* Drive a client-auth session with the UP_TO_BOUND script to BOUND. */
static bool bring_up(struct fixture *f, struct rec *r)
{
    if (!r->s || gw_session_start(r->s, "localhost", NULL) != 0)
        return false;
    WAIT(f, r->ready == 1 || r->closed);
    if (r->ready != 1 || send_str(r->s, AUTH) != 0)
        return false;
    WAIT(f, r->delivered == 1 || r->closed);
    if (gw_session_state(r->s) != GW_SESSION_RESTARTING || gw_session_restart(r->s) != 0)
        return false;
    WAIT(f, r->ready == 2 || r->closed);
    if (r->ready != 2 || send_str(r->s, BIND_IQ) != 0)
        return false;
    WAIT(f, r->closed || gw_session_state(r->s) == GW_SESSION_BOUND);
    return !r->closed && gw_session_state(r->s) == GW_SESSION_BOUND;
}

/* End of a test: no session left, every server connection closed and forgotten. */
static void finish(struct fixture *f)
{
    f->traced = NULL;
    WAIT(f, gw_sessions_count(f->ctx.sessions) == 0 && peers_closed(f));
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    if (gw_sessions_count(f->ctx.sessions) != 0)
        gw_sessions_shutdown(f->ctx.sessions); /* a failed test left one: the next starts clean */
    for (unsigned i = 0; i < f->n_peers; i++)
        peer_close(f->peers[i]);
    WAIT(f, peers_closed(f));
    CHECK(peers_closed(f));
    if (!peers_closed(f))
        return; /* kept for fixture_cleanup */
    for (unsigned i = 0; i < f->n_peers; i++) {
        gw_buf_cleanup(&f->peers[i]->in);
        free(f->peers[i]);
        f->peers[i] = NULL;
    }
    f->n_peers = 0;
    f->script = NULL;
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++)
        CHECK(f->ctx.metrics.sessions_open[tr] == 0);
}

/* ---- the admin view ---- */

struct view {
    const char *sid; /* the session looked for */
    unsigned n;      /* sessions seen */
    bool found;
    struct gw_session_info info; /* its row (strings copied below) */
    char jid[256], domain[256], peer[64];
};

static void view_row(void *ud, const struct gw_session_info *info)
{
    struct view *v = ud;
    v->n++;
    if (strcmp(info->sid, v->sid) != 0)
        return;
    v->found = true;
    v->info = *info;
    copy_str(v->jid, sizeof(v->jid), info->jid);
    copy_str(v->domain, sizeof(v->domain), info->domain);
    copy_str(v->peer, sizeof(v->peer), info->peer);
}

static struct view view_of(struct fixture *f, struct gw_session *s)
{
    struct view v = {.sid = gw_session_id(s)};
    gw_sessions_foreach(f->ctx.sessions, view_row, &v);
    return v;
}

/* The domain the admin view shows for s. */
static bool domain_is(struct fixture *f, struct gw_session *s, const char *want)
{
    struct view v = view_of(f, s);
    return v.found && strcmp(v.domain, want) == 0;
}

/* ---- 1. client auth, the happy path ---- */

static void test_client_happy_path(struct fixture *f)
{
    static const struct step script[] = {
        UP_TO_BOUND("b1"),
        {"<message",
         "<message from='a@localhost' to='user@localhost/res'><body>hi</body></message>", false,
         NULL},
        {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    f->traced = &r;
    f->n_trace = 0;
    note_state(f);
    CHECK(strlen(gw_session_id(s)) == GW_SID_LEN);
    CHECK(domain_is(f, s, ""));
    CHECK_STR(gw_session_jid(s), "");
    CHECK(gw_sessions_count(f->ctx.sessions) == 1);
    CHECK(f->ctx.metrics.sessions_open[GW_TRANSPORT_WS] == 1);

    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    CHECK(gw_session_state(s) == GW_SESSION_CONNECTING);
    CHECK(domain_is(f, s, "localhost"));
    note_state(f);
    WAIT(f, r.ready == 1 || r.closed);
    CHECK(r.ready == 1);
    CHECK(r.closed == 0);
    CHECK(r.state_at_ready == GW_SESSION_AUTHENTICATING);
    CHECK(gw_session_state(s) == GW_SESSION_AUTHENTICATING);
    CHECK(peer_has(f, 0, "<stream:stream"));
    CHECK(peer_has(f, 0, "to='localhost'"));
    CHECK(peer_has(f, 0, "version='1.0'"));
    CHECK(peer_has(f, 0, "xml:lang='en'"));
    CHECK_STR(r.id, "s1");
    CHECK_STR(r.from, "localhost");
    CHECK_STR(r.version, "1.0");
    CHECK_STR(r.lang, "en");
    const char *feat = gw_buf_ptr(&r.features);
    CHECK(strncmp(feat, "<stream:features", 16) == 0);
    CHECK(strstr(feat, "xmlns:stream='http://etherx.jabber.org/streams'") != NULL);
    CHECK(strstr(feat, "<mechanism>PLAIN</mechanism>") != NULL);
    CHECK(r.delivered == 0);

    CHECK(send_str(s, AUTH) == 0);
    WAIT(f, r.delivered == 1 || r.closed);
    CHECK(r.delivered == 1);
    CHECK(strstr(gw_buf_ptr(&r.last), "<success") != NULL);
    CHECK(strstr(gw_buf_ptr(&r.last), "urn:ietf:params:xml:ns:xmpp-sasl") != NULL);
    CHECK(gw_session_state(s) == GW_SESSION_RESTARTING);
    CHECK(r.ready == 1);
    CHECK(peer_has(f, 0, AUTH));

    CHECK(gw_session_restart(s) == 0);
    CHECK(gw_session_restart(s) == GW_EPROTO); /* one restart per SASL success */
    WAIT(f, r.ready == 2 || r.closed);
    CHECK(r.ready == 2);
    CHECK(r.state_at_ready == GW_SESSION_BINDING);
    CHECK(gw_session_state(s) == GW_SESSION_BINDING);
    CHECK_STR(r.id, "s2");
    CHECK(strstr(gw_buf_ptr(&r.features), "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    CHECK(count_of(peer_in(f, 0), "<stream:stream") == 2);
    CHECK(in_order(peer_in(f, 0), "<stream:stream", AUTH, "<stream:stream", NULL));
    CHECK(gw_session_restart(s) == GW_EPROTO);

    CHECK(send_str(s, BIND_IQ) == 0);
    WAIT(f, r.delivered == 2 || r.closed);
    CHECK(r.delivered == 2);
    CHECK(gw_session_state(s) == GW_SESSION_BOUND);
    CHECK_STR(gw_session_jid(s), "user@localhost/res");
    CHECK(strstr(gw_buf_ptr(&r.last), "<jid>user@localhost/res</jid>") != NULL);
    CHECK(strstr(gw_buf_ptr(&r.last), "xmlns='jabber:client'") != NULL); /* framed */

    struct view v = view_of(f, s);
    CHECK(v.n == 1);
    CHECK(v.found);
    CHECK(v.info.state == GW_SESSION_BOUND);
    CHECK_STR(v.jid, "user@localhost/res");
    CHECK_STR(v.domain, "localhost");
    CHECK_STR(v.peer, "192.0.2.7");
    CHECK(v.info.transport == GW_TRANSPORT_WS);
    CHECK(v.info.stanzas_in == 2);
    CHECK(v.info.stanzas_out == 2);
    CHECK(!v.info.upstream_tls);

    CHECK(send_str(s, "<message to='a@localhost'><body>yo</body></message>") == 0);
    WAIT(f, r.delivered == 3 || r.closed);
    CHECK(r.delivered == 3);
    CHECK(strstr(gw_buf_ptr(&r.last), "<body>hi</body>") != NULL);
    CHECK(peer_has(f, 0, "<body>yo</body>"));

    /* NEW -> CONNECTING -> FEATURES -> AUTHENTICATING: no SECURING with tls off. */
    static const enum gw_session_state want[] = {GW_SESSION_NEW,        GW_SESSION_CONNECTING,
                                                 GW_SESSION_FEATURES,   GW_SESSION_AUTHENTICATING,
                                                 GW_SESSION_RESTARTING, GW_SESSION_BINDING,
                                                 GW_SESSION_BOUND};
    CHECK(f->n_trace == sizeof(want) / sizeof(want[0]));
    for (unsigned i = 0; i < f->n_trace && i < sizeof(want) / sizeof(want[0]); i++) {
        if (f->trace[i] != want[i])
            fprintf(stderr, "trace[%u] = %s, expected %s\n", i, gw_session_state_name(f->trace[i]),
                    gw_session_state_name(want[i]));
        CHECK(f->trace[i] == want[i]);
    }
    CHECK(f->ctx.metrics.stanzas_to_upstream >= 3);

    f->traced = NULL;
    gw_session_end(s, GW_COND_NONE);
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    WAIT(f, peer_eof(f, 0));
    CHECK(peer_eof(f, 0));
    CHECK(in_order(peer_in(f, 0), "<body>yo</body>", STREAM_END, NULL));
    finish(f);
    CHECK(r.closed == 0); /* the owner ended it: no sink call */
    rec_cleanup(&r);
}

/* ---- 2. held elements ---- */

/* Server hook: the header arrived, the features are not sent yet. */
static void hook_send_in_features(struct peer *p)
{
    struct fixture *f = p->f;
    f->hook_state[0] = gw_session_state(f->hook_session);
    f->hook_rc[0] = send_str(f->hook_session, "<iq type='get' id='held2'/>");
}

static void test_held_before_features(struct fixture *f)
{
    static const struct step script[] = {
        {"<stream:stream", HDR("s1") FEAT_SASL, false, hook_send_in_features},
        {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    CHECK(send_str(s, "<iq type='get' id='held0'/>") == 0); /* NEW */
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    CHECK(send_str(s, "<iq type='get' id='held1'/>") == 0); /* CONNECTING */
    f->hook_session = s;
    f->hook_rc[0] = 1;
    WAIT(f, r.ready == 1 || r.closed);
    CHECK(r.ready == 1);
    CHECK(f->hook_state[0] == GW_SESSION_FEATURES);
    CHECK(f->hook_rc[0] == 0);
    CHECK(send_str(s, "<iq type='get' id='late3'/>") == 0); /* AUTHENTICATING: straight through */
    WAIT(f, peer_has(f, 0, "late3"));
    const char *in = peer_in(f, 0);
    CHECK(strncmp(in, "<?xml", 5) == 0); /* nothing before the header */
    CHECK(in_order(in, "<stream:stream", "'>", "held0", "held1", "held2", "late3", NULL));
    CHECK(count_of(in, "held") == 3);
    struct view v = view_of(f, s);
    CHECK(v.info.stanzas_in == 4);
    gw_session_end(s, GW_COND_NONE);
    finish(f);
    rec_cleanup(&r);
}

static void test_held_across_restart(struct fixture *f)
{
    static const struct step script[] = {UP_TO_BOUND("b1"), {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, r.ready == 1 || r.closed);
    CHECK(send_str(s, AUTH) == 0);
    /* From inside the delivery of <success/>: the upstream has not yet seen its stream end. */
    r.send_in_deliver = "<iq type='get' id='r0'/>";
    r.deliver_send_rc = 1;
    WAIT(f, r.delivered == 1 || r.closed);
    CHECK(r.deliver_send_rc == 0);
    CHECK(gw_session_state(s) == GW_SESSION_RESTARTING);
    /* Between <success/> and the restart: held, not sent on the stream that just ended. */
    CHECK(send_str(s, "<iq type='get' id='r1'/>") == 0);
    settle(f, SETTLE_MS);
    CHECK(!peer_has(f, 0, "'r0'"));
    CHECK(!peer_has(f, 0, "'r1'"));
    CHECK(gw_session_restart(s) == 0);
    /* After the restart, before the new features (WebSocket clients send at once): held too. */
    CHECK(send_str(s, BIND_IQ) == 0);
    CHECK(send_str(s, "<iq type='get' id='r2'/>") == 0);
    WAIT(f, r.closed || gw_session_state(s) == GW_SESSION_BOUND);
    CHECK(gw_session_state(s) == GW_SESSION_BOUND);
    CHECK(send_str(s, "<iq type='get' id='r3'/>") == 0);
    WAIT(f, peer_has(f, 0, "'r3'"));
    const char *in = peer_in(f, 0);
    CHECK(in_order(in, "<stream:stream", AUTH, "<stream:stream", "'>", "'r0'", "'r1'", "id='b1'",
                   "'r2'", "'r3'", NULL));
    CHECK(count_of(in, "'r0'") == 1);
    CHECK(count_of(in, "'r1'") == 1);
    CHECK(r.ready == 2);
    CHECK(r.closed == 0);
    gw_session_end(s, GW_COND_NONE);
    finish(f);
    rec_cleanup(&r);
}

/* ---- 3. return codes ---- */

static void test_restart_and_start_codes(struct fixture *f)
{
    static const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                         {"<auth", FAILURE, false, NULL},
                                         {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    /* A session that was never started has seen no SASL success: GW_EPROTO, not the GW_ECLOSED
     * of an ended session. */
    CHECK(gw_session_restart(s) == GW_EPROTO);
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    CHECK(gw_session_start(s, "localhost", NULL) == GW_EPROTO);
    CHECK(gw_session_restart(s) == GW_EPROTO); /* CONNECTING */
    WAIT(f, r.ready == 1 || r.closed);
    CHECK(gw_session_restart(s) == GW_EPROTO); /* AUTHENTICATING, no success yet */
    CHECK(send_str(s, AUTH) == 0);
    WAIT(f, r.delivered == 1 || r.closed);
    CHECK(strstr(gw_buf_ptr(&r.last), "<failure") != NULL);
    CHECK(gw_session_state(s) == GW_SESSION_AUTHENTICATING); /* the client may try again */
    CHECK(gw_session_restart(s) == GW_EPROTO);
    CHECK(gw_session_start(s, "localhost", NULL) == GW_EPROTO);
    gw_session_end(s, GW_COND_NONE);
    finish(f);
    rec_cleanup(&r);
}

static void test_domain_not_served(struct fixture *f)
{
    static const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                         {NULL, NULL, false, NULL}};
    f->script = script;
    struct gw_config saved = f->cfg;
    f->cfg.n_domains = 1;
    snprintf(f->cfg.domains[0], sizeof(f->cfg.domains[0]), "localhost");
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    CHECK(gw_session_start(s, "example.org", NULL) == GW_EINVAL);
    CHECK(gw_session_start(s, "not a domain", NULL) == GW_EINVAL);
    CHECK(gw_session_start(s, "", NULL) == GW_EINVAL);
    CHECK(gw_session_start(s, NULL, NULL) == GW_EINVAL);
    CHECK(gw_session_state(s) == GW_SESSION_NEW);
    CHECK(domain_is(f, s, ""));
    CHECK(f->n_peers == 0);

    /* Served only through the map: the default upstream is gone. */
    f->cfg.n_domains = 0;
    f->cfg.has_default_upstream = false;
    f->cfg.upstream_map[0] = saved.upstream;
    snprintf(f->cfg.upstream_map[0].domain, sizeof(f->cfg.upstream_map[0].domain), "localhost");
    f->cfg.n_upstream_map = 1;
    CHECK(gw_session_start(s, "example.org", NULL) == GW_EINVAL);
    CHECK(gw_session_start(s, "localhost", "de") == 0);
    WAIT(f, r.ready == 1 || r.closed);
    CHECK(r.ready == 1);
    CHECK(peer_has(f, 0, "xml:lang='de'"));
    CHECK_STR(r.lang, "de");
    f->cfg = saved;
    gw_session_end(s, GW_COND_NONE);
    finish(f);
    rec_cleanup(&r);
}

/* node_id prefixes every session's id: the id, '.', then the 128 random bits as without it. */
static void test_sid_node_id(struct fixture *f)
{
    static const char *const ids[] = {"gw-2_b", "abcdefghijABCDEFGHIJ0123456789_-"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(f->cfg.node_id, sizeof(f->cfg.node_id), "%s", ids[i]);
        struct rec r;
        struct gw_session *s = open_client(f, &r);
        if (!s)
            break;
        const char *sid = gw_session_id(s);
        size_t n = strlen(ids[i]);
        CHECK(strlen(sid) == n + 1 + GW_SID_LEN && strlen(sid) <= GW_SID_MAX);
        CHECK(strncmp(sid, ids[i], n) == 0 && sid[n] == GW_SID_SEP);
        CHECK(strspn(sid + n + 1, "0123456789abcdef") == GW_SID_LEN);
        gw_session_end(s, GW_COND_NONE);
        finish(f);
        rec_cleanup(&r);
    }
    f->cfg.node_id[0] = '\0';
}

static void test_send_after_end(struct fixture *f)
{
    static const struct step script[] = {
        {"<stream:stream", HDR("s1") FEAT_SASL STREAM_END, false, NULL}, {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    r.try_in_closed = true;
    r.send_rc = r.restart_rc = r.start_rc = 1;
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, r.closed == 1);
    CHECK(r.closed == 1);
    CHECK(r.send_rc == GW_ECLOSED); /* from inside closed(): the session has ended */
    CHECK(r.restart_rc == GW_ECLOSED);
    CHECK(r.start_rc == GW_EPROTO);
    finish(f);
    rec_cleanup(&r);

    /* Ended by the owner: the session lives until the loop runs again. */
    s = open_client(f, &r);
    if (!s)
        return;
    gw_session_end(s, GW_COND_NONE);
    CHECK(send_str(s, PRESENCE) == GW_ECLOSED);
    CHECK(gw_session_restart(s) == GW_ECLOSED);
    CHECK(gw_session_start(s, "localhost", NULL) == GW_EPROTO);
    finish(f);
    CHECK(r.closed == 0);
    rec_cleanup(&r);
}

/* An element of exactly len bytes whose body is made of c. */
static char *big_element(size_t len, char c)
{
    static const char head[] = "<message><body>", tail[] = "</body></message>";
    char *e = malloc(len + 1);
    if (!e)
        return NULL;
    memset(e, c, len);
    memcpy(e, head, sizeof(head) - 1);
    memcpy(e + len - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
    e[len] = '\0';
    return e;
}

static void test_send_limits(struct fixture *f)
{
    static const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                         {NULL, NULL, false, NULL}};
    f->script = script;
    size_t saved = f->cfg.send_queue;
    f->cfg.send_queue = 64 * 1024; /* the minimum */
    char *a = big_element(40000, 'a'), *b = big_element(40000, 'b'), *c = big_element(20000, 'c');
    char *d = big_element(70000, 'd');
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s || !a || !b || !c || !d)
        goto out;
    CHECK(send_str(s, d) == GW_ELIMIT); /* bigger than the bound on its own */
    CHECK(send_str(s, a) == 0);
    CHECK(send_str(s, b) == GW_ELIMIT); /* held 40000 + 40000 > 65536: nothing taken */
    CHECK(send_str(s, c) == 0);         /* 60000 held */
    CHECK(view_of(f, s).info.stanzas_in == 2);
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, r.closed || peer_has(f, 0, "ccc</body></message>"));
    CHECK(r.ready == 1);
    const char *in = peer_in(f, 0);
    CHECK(in_order(in, "'>", "<message><body>aaa", "aaa</body></message><message><body>ccc",
                   "ccc</body></message>", NULL));
    CHECK(!strstr(in, "bbbb"));
    CHECK(!strstr(in, "dddd"));
    settle(f, SETTLE_MS); /* the flushed bytes' write requests have returned */

    /* Open stream: the upstream write queue is bounded the same way. Write requests are
     * accounted until their callback, which runs on a later loop iteration. */
    CHECK(send_str(s, a) == 0);
    CHECK(send_str(s, b) == GW_ELIMIT);
    settle(f, SETTLE_MS);
    CHECK(send_str(s, b) == 0);
    WAIT(f, peer_has(f, 0, "bbb</body></message>"));
    CHECK(peer_has(f, 0, "bbb</body></message>"));
    CHECK(view_of(f, s).info.stanzas_in == 4);
    gw_session_end(s, GW_COND_NONE);
out:
    finish(f);
    if (s)
        rec_cleanup(&r);
    f->cfg.send_queue = saved;
    free(a);
    free(b);
    free(c);
    free(d);
}

/* ---- 4. how upstream ends a stream ---- */

/* A client session whose server follows script; returns once closed() came (or WAIT_MS). */
static void run_to_close(struct fixture *f, const struct step *script, struct rec *r,
                         unsigned wait_ms)
{
    f->script = script;
    struct gw_session *s = open_client(f, r);
    if (!s)
        return;
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT_MAX(f, r->closed, wait_ms);
    CHECK(r->closed == 1);
}

static void test_stream_error(struct fixture *f)
{
    static const struct step script[] = {
        {"<stream:stream",
         HDR("s1") "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                   "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no</text></stream:error>",
         false, NULL},
        {NULL, NULL, false, NULL}};
    struct rec r;
    run_to_close(f, script, &r, WAIT_MS);
    CHECK(r.cond == GW_COND_host_unknown);
    CHECK(r.has_text);
    CHECK_STR(r.text, "no");
    CHECK(r.has_err);
    const char *e = gw_buf_ptr(&r.err_xml);
    CHECK(strncmp(e, "<stream:error", 13) == 0);
    CHECK(strstr(e, "<host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") != NULL);
    CHECK(strstr(e, "</stream:error>") != NULL);
    CHECK(r.ready == 0);
    WAIT(f, peer_eof(f, 0));
    CHECK(peer_has(f, 0, STREAM_END));
    finish(f);
    rec_cleanup(&r);
}

/* Conditions that are not RFC 6120 stream conditions: unknown, BOSH-only, or in another
 * namespace. The element still reaches the owner. */
static void test_stream_error_unknown(struct fixture *f)
{
    static const char *const errors[] = {STREAM_ERROR("made-up-condition", GW_NS_STREAMS),
                                         STREAM_ERROR("bad-request", GW_NS_STREAMS),
                                         STREAM_ERROR("host-unknown", "urn:example:other")};
    static const char *const names[] = {"<made-up-condition", "<bad-request", "<host-unknown"};
    for (unsigned i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                      {"<presence", errors[i], false, NULL},
                                      {NULL, NULL, false, NULL}};
        f->script = script;
        struct rec r;
        struct gw_session *s = open_client(f, &r);
        if (!s)
            return;
        CHECK(gw_session_start(s, "localhost", NULL) == 0);
        WAIT(f, r.ready || r.closed);
        CHECK(send_str(s, PRESENCE) == 0);
        WAIT(f, r.closed);
        CHECK(r.closed == 1);
        CHECK(r.cond == GW_COND_undefined_condition);
        CHECK(r.has_err);
        CHECK(strstr(gw_buf_ptr(&r.err_xml), names[i]) != NULL);
        CHECK(!r.has_text);
        CHECK(r.delivered == 0);
        finish(f); /* the script lives on this stack frame */
        rec_cleanup(&r);
    }
}

static void test_upstream_closes(struct fixture *f)
{
    static const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                         {"<presence", STREAM_END, false, NULL},
                                         {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, r.ready || r.closed);
    CHECK(send_str(s, PRESENCE) == 0);
    WAIT(f, r.closed);
    CHECK(r.closed == 1);
    CHECK(r.cond == GW_COND_NONE);
    CHECK(!r.has_err);
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    WAIT(f, peer_eof(f, 0));
    CHECK(in_order(peer_in(f, 0), PRESENCE, STREAM_END, NULL)); /* answered in kind */
    finish(f);
    rec_cleanup(&r);
}

static void test_upstream_drops(struct fixture *f)
{
    static const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                         {"<presence", NULL, true, NULL},
                                         {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, r.ready || r.closed);
    CHECK(send_str(s, PRESENCE) == 0);
    WAIT(f, r.closed);
    CHECK(r.closed == 1);
    CHECK(r.cond == GW_COND_remote_connection_failed);
    CHECK(r.has_text);
    CHECK(!r.has_err);
    finish(f);
    rec_cleanup(&r);
}

static void test_upstream_silent(struct fixture *f)
{
    static const struct step script[] = {{NULL, NULL, false, NULL}};
    unsigned saved = f->cfg.connect_timeout;
    f->cfg.connect_timeout = 1;
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    if (!s)
        return;
    uv_update_time(&f->loop);
    uint64_t t0 = uv_now(&f->loop);
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, peer_has(f, 0, "<stream:stream"));
    CHECK(gw_session_state(s) == GW_SESSION_FEATURES);
    WAIT_MAX(f, r.closed, 4000);
    uint64_t took = uv_now(&f->loop) - t0;
    CHECK(r.closed == 1);
    CHECK(r.cond == GW_COND_remote_connection_failed);
    CHECK(r.has_text);
    CHECK(took >= 900 && took < 3500);
    CHECK(r.ready == 0);
    f->cfg.connect_timeout = saved;
    finish(f);
    rec_cleanup(&r);
}

static void test_upstream_refused(struct fixture *f)
{
    /* A port nothing listens on: bind one, note it, close it. */
    uv_tcp_t t;
    struct sockaddr_in sa;
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&f->loop, &t);
    CHECK(uv_tcp_bind(&t, (const struct sockaddr *)&sa, 0) == 0);
    CHECK(uv_tcp_getsockname(&t, (struct sockaddr *)&name, &namelen) == 0);
    uint16_t closed_port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    settle(f, 10);
    uint16_t saved = f->cfg.upstream.addr.port;
    f->cfg.upstream.addr.port = closed_port;
    static const struct step script[] = {{NULL, NULL, false, NULL}};
    struct rec r;
    run_to_close(f, script, &r, WAIT_MS);
    CHECK(r.cond == GW_COND_remote_connection_failed);
    CHECK(r.has_text);
    f->cfg.upstream.addr.port = saved;
    finish(f);
    rec_cleanup(&r);
}

/* ---- 5. the gateway's own login ---- */

static void hook_send_while_authenticating(struct peer *p)
{
    struct fixture *f = p->f;
    f->hook_state[0] = gw_session_state(f->hook_session);
    f->hook_rc[0] = send_str(f->hook_session, "<iq type='get' id='g2'/>");
}

static void hook_send_while_binding(struct peer *p)
{
    struct fixture *f = p->f;
    f->hook_state[1] = gw_session_state(f->hook_session);
    f->hook_rc[1] = send_str(f->hook_session, "<iq type='get' id='g3'/>");
}

static void test_gateway_login(struct fixture *f)
{
    static const struct step script[] = {
        {"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
        {"</auth>", SUCCESS, false, hook_send_while_authenticating},
        {"<stream:stream", HDR("s2") FEAT_BIND, false, NULL},
        {"</iq>", BIND_RESULT("gw-bind-1"), false, hook_send_while_binding},
        {"<message", "<message from='a@localhost'><body>back</body></message>", false, NULL},
        {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_gateway(f, &r, "res");
    if (!s)
        return;
    f->traced = &r;
    f->n_trace = 0;
    f->hook_session = s;
    f->hook_rc[0] = f->hook_rc[1] = 1;
    note_state(f);
    CHECK(gw_session_restart(s) !=
          0); /* GW_EPROTO by session.h; see test_restart_and_start_codes */
    /* Held until bound, as for the client's elements (session.h's gw_session_send says GW_EPROTO
     * for this case; the code holds them). */
    CHECK(send_str(s, "<iq type='get' id='g0'/>") == 0); /* NEW */
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    note_state(f);
    CHECK(send_str(s, "<iq type='get' id='g1'/>") == 0); /* CONNECTING */
    WAIT(f, r.ready || r.closed);
    CHECK(r.ready == 1);
    CHECK(r.closed == 0);
    CHECK(r.state_at_ready == GW_SESSION_BOUND);
    CHECK(gw_session_state(s) == GW_SESSION_BOUND);
    CHECK_STR(gw_session_jid(s), "user@localhost/res");
    CHECK(f->hook_state[0] == GW_SESSION_AUTHENTICATING);
    CHECK(f->hook_rc[0] == 0);
    CHECK(f->hook_state[1] == GW_SESSION_BINDING);
    CHECK(f->hook_rc[1] == 0);
    CHECK_STR(r.id, "s2");
    CHECK_STR(r.version, "1.0");
    CHECK(strstr(gw_buf_ptr(&r.features), "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"));
    CHECK(r.delivered == 0); /* neither <success/> nor the bind result reach the owner */
    CHECK(gw_session_restart(s) == GW_EPROTO);

    WAIT(f, peer_has(f, 0, "'g3'"));
    const char *in = peer_in(f, 0);
    CHECK(in_order(in, "<stream:stream",
                   "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                   "AHVzZXIAcGFzc3dvcmQ=</auth>",
                   "<stream:stream", "'>",
                   "<iq type='set' id='gw-bind-1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                   "<resource>res</resource></bind></iq>",
                   "'g0'", "'g1'", "'g2'", "'g3'", NULL));
    CHECK(count_of(in, "<stream:stream") == 2);
    CHECK(!strstr(in, "password"));

    CHECK(send_str(s, "<message to='a@localhost'><body>out</body></message>") == 0);
    WAIT(f, r.delivered == 1 || r.closed);
    CHECK(r.delivered == 1);
    CHECK(strstr(gw_buf_ptr(&r.last), "<body>back</body>") != NULL);
    CHECK(in_order(peer_in(f, 0), "'g3'", "<body>out</body>", NULL));
    static const enum gw_session_state want[] = {GW_SESSION_NEW,        GW_SESSION_CONNECTING,
                                                 GW_SESSION_FEATURES,   GW_SESSION_AUTHENTICATING,
                                                 GW_SESSION_RESTARTING, GW_SESSION_BINDING,
                                                 GW_SESSION_BOUND};
    CHECK(f->n_trace == sizeof(want) / sizeof(want[0]));
    for (unsigned i = 0; i < f->n_trace && i < sizeof(want) / sizeof(want[0]); i++)
        CHECK(f->trace[i] == want[i]);
    CHECK(r.ready == 1);
    struct view v = view_of(f, s);
    CHECK(v.info.transport == GW_TRANSPORT_INTERNAL);
    CHECK_STR(v.jid, "user@localhost/res");
    f->traced = NULL;
    gw_session_end(s, GW_COND_NONE);
    finish(f);
    CHECK(r.closed == 0);
    rec_cleanup(&r);
}

static void test_gateway_login_refused(struct fixture *f)
{
    static const struct step failure[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                          {"</auth>", FAILURE, false, NULL},
                                          {NULL, NULL, false, NULL}};
    static const struct step no_mech[] = {
        {"<stream:stream", HDR("s1") FEAT_NO_KNOWN_MECH, false, NULL}, {NULL, NULL, false, NULL}};
    static const struct step bind_refused[] = {
        {"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
        {"</auth>", SUCCESS, false, NULL},
        {"<stream:stream", HDR("s2") FEAT_BIND, false, NULL},
        {"</iq>",
         "<iq type='error' id='gw-bind-1'><error type='cancel'><not-allowed "
         "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
         false, NULL},
        {NULL, NULL, false, NULL}};
    const struct step *scripts[] = {failure, no_mech, bind_refused};
    for (unsigned i = 0; i < 3; i++) {
        f->script = scripts[i];
        struct rec r;
        struct gw_session *s = open_gateway(f, &r, i == 2 ? NULL : "res");
        if (!s)
            return;
        CHECK(send_str(s, "<iq type='get' id='never'/>") == 0);
        CHECK(gw_session_start(s, "localhost", NULL) == 0);
        WAIT(f, r.closed);
        CHECK(r.closed == 1);
        CHECK(r.cond == GW_COND_not_authorized);
        CHECK(r.ready == 0);
        CHECK(r.delivered == 0);
        WAIT(f, peer_eof(f, 0));
        CHECK(peer_has(f, 0, STREAM_END));
        CHECK(!peer_has(f, 0, "never"));
        if (i == 1)
            CHECK(!peer_has(f, 0, "<auth"));
        if (i == 2) /* no resource asked: the server chooses */
            CHECK(peer_has(f, 0, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"));
        finish(f);
        rec_cleanup(&r);
    }
}

static void test_gateway_login_needs_credentials(struct fixture *f)
{
    struct rec r;
    rec_init(&r, f);
    struct gw_session_opts o = {.transport = GW_TRANSPORT_INTERNAL,
                                .sink = &sink,
                                .t = &r,
                                .auth = GW_SESSION_AUTH_GATEWAY,
                                .user = "user"};
    int err = 0;
    CHECK(gw_session_new(&f->ctx, &o, &err) == NULL);
    CHECK(err == GW_EINVAL);
    o.password = "password";
    o.user = NULL;
    err = 0;
    CHECK(gw_session_new(&f->ctx, &o, &err) == NULL);
    CHECK(err == GW_EINVAL);
    o.user = "";
    err = 0;
    CHECK(gw_session_new(&f->ctx, &o, &err) == NULL);
    CHECK(err == GW_EINVAL);
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    rec_cleanup(&r);
}

/* ---- the bound JID ---- */

/* A client-auth session whose upstream answers its bind with `answer`; want_jid: the JID the
 * session should then have (NULL: it should end). */
static void bind_to(struct fixture *f, struct rec *r, const char *answer, const char *want_jid)
{
    const struct step script[] = {{"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
                                  {"<auth", SUCCESS, false, NULL},
                                  {"<stream:stream", HDR("s2") FEAT_BIND, false, NULL},
                                  {"<bind", answer, false, NULL},
                                  {NULL, NULL, false, NULL}};
    f->script = script;
    struct gw_session *s = open_client(f, r);
    if (!s)
        return;
    CHECK(gw_session_start(s, "localhost", NULL) == 0);
    WAIT(f, r->ready == 1 || r->closed);
    CHECK(send_str(s, AUTH) == 0);
    WAIT(f, r->delivered == 1 || r->closed);
    CHECK(gw_session_restart(s) == 0);
    WAIT(f, r->ready == 2 || r->closed);
    CHECK(send_str(s, BIND_IQ) == 0);
    WAIT(f, r->delivered == 2 || r->closed);
    if (!r->closed) {
        CHECK(gw_session_state(s) == GW_SESSION_BOUND);
        CHECK_STR(gw_session_jid(s), want_jid ? want_jid : "(none)");
        gw_session_end(s, GW_COND_NONE);
    }
    finish(f); /* the script lives on this stack frame */
}

#define BIND_AS(jid)                                                                               \
    "<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>" jid           \
    "</jid></bind></iq>"

static void test_bound_jid_checked(struct fixture *f)
{
    struct rec r;
    bind_to(f, &r, BIND_AS("user@LocalHost/res"), "user@localhost/res"); /* normalised */
    CHECK(r.closed == 0);
    CHECK(r.delivered == 2);
    rec_cleanup(&r);

    static const char *const refused[] = {BIND_AS("user@elsewhere.example/res"),
                                          BIND_AS("user@localhost"), BIND_AS("not a jid@@")};
    for (unsigned i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        bind_to(f, &r, refused[i], NULL);
        CHECK(r.closed == 1);
        CHECK(r.cond == GW_COND_undefined_condition);
        CHECK(r.delivered == 1); /* <success/> only: the refused result is not passed on */
        rec_cleanup(&r);
    }
}

/* ---- 6. ending, the table and its limits ---- */

static void test_end_and_lost(struct fixture *f)
{
    static const struct step script[] = {UP_TO_BOUND("b1"), {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec a, b, c;
    open_client(f, &a);
    open_client(f, &b);
    open_client(f, &c);
    if (!a.s || !b.s || !c.s)
        return;
    CHECK(bring_up(f, &a));
    CHECK(bring_up(f, &b));
    CHECK(gw_sessions_count(f->ctx.sessions) == 3);

    gw_session_end(a.s, GW_COND_NONE);
    CHECK(gw_sessions_count(f->ctx.sessions) == 2);
    WAIT(f, peer_eof(f, 0));
    CHECK(peer_eof(f, 0));
    CHECK(in_order(peer_in(f, 0), "id='b1'", STREAM_END, NULL));

    gw_session_lost(b.s);
    CHECK(gw_sessions_count(f->ctx.sessions) == 1);
    WAIT(f, peer_eof(f, 1));
    CHECK(peer_eof(f, 1));
    CHECK(peer_has(f, 1, STREAM_END));

    CHECK(gw_session_start(c.s, "localhost", NULL) == 0);
    CHECK(gw_session_state(c.s) == GW_SESSION_CONNECTING);
    gw_session_end(c.s, GW_COND_policy_violation); /* before the loop ran: still connecting */
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    settle(f, SETTLE_MS);
    CHECK(a.closed == 0 && b.closed == 0 && c.closed == 0);
    CHECK(a.delivered == 2 && b.delivered == 2 && c.delivered == 0);
    finish(f);
    rec_cleanup(&a);
    rec_cleanup(&b);
    rec_cleanup(&c);
}

/* Stanzas sent in one loop turn leave in one write to the server, in order, and what a turn
 * gathered goes before the close tag of a session ended in that turn. */
static void test_writes_gathered(struct fixture *f)
{
    static const struct step script[] = {UP_TO_BOUND("b1"), {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    if (!open_client(f, &r) || !f->ctx.up_batch)
        return;
    CHECK(bring_up(f, &r));
    settle(f, SETTLE_MS);
    uint64_t w0 = f->ctx.metrics.upstream_writes;
    CHECK(send_str(r.s, "<message id='g1'/>") == 0);
    CHECK(send_str(r.s, "<message id='g2'/>") == 0);
    CHECK(send_str(r.s, "<message id='g3'/>") == 0);
    CHECK(f->ctx.metrics.upstream_writes == w0); /* nothing left before the turn ended */
    WAIT(f, peer_has(f, 0, "id='g3'"));
    CHECK(f->ctx.metrics.upstream_writes == w0 + 1);
    CHECK(in_order(peer_in(f, 0), "id='b1'", "id='g1'", "id='g2'", "id='g3'", NULL));

    CHECK(send_str(r.s, "<message id='g4'/>") == 0);
    gw_session_end(r.s, GW_COND_NONE);
    WAIT(f, peer_eof(f, 0));
    CHECK(in_order(peer_in(f, 0), "id='g3'", "id='g4'", STREAM_END, NULL));
    CHECK(f->ctx.metrics.upstream_writes == w0 + 2);
    finish(f);
    rec_cleanup(&r);
}

static void test_shutdown(struct fixture *f)
{
    static const struct step script[] = {UP_TO_BOUND("b1"), {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r[5];
    for (unsigned i = 0; i < 5; i++)
        if (!open_client(f, &r[i]))
            return;
    CHECK(gw_session_start(r[1].s, "localhost", NULL) == 0); /* r[0] stays NEW */
    WAIT(f, r[1].ready == 1);
    CHECK(gw_session_state(r[1].s) == GW_SESSION_AUTHENTICATING);
    CHECK(bring_up(f, &r[2]));
    CHECK(gw_session_start(r[3].s, "localhost", NULL) == 0); /* CONNECTING */
    r[0].end_on_close = r[4].s; /* telling one owner makes it end another session */
    CHECK(gw_sessions_count(f->ctx.sessions) == 5);
    gw_sessions_shutdown(f->ctx.sessions);
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    for (unsigned i = 0; i < 4; i++) {
        CHECK(r[i].closed == 1);
        CHECK(r[i].cond == GW_COND_system_shutdown);
    }
    CHECK(r[4].closed <= 1); /* told once, or ended by r[0]'s owner first */
    WAIT(f, peer_eof(f, 0) && peer_eof(f, 1));
    CHECK(peer_has(f, 0, STREAM_END));
    CHECK(peer_has(f, 1, STREAM_END));
    finish(f);
    for (unsigned i = 0; i < 5; i++)
        rec_cleanup(&r[i]);
}

/* One session ended by sid (the admin port's DELETE): its owner told the condition and text, its
 * upstream closed with the stream's end; the other untouched; an unknown sid GW_EINVAL. The
 * peer lookup of the log: the session's address by sid, still while it waits in the graveyard,
 * NULL for an unknown sid. */
static void test_end_sid(struct fixture *f)
{
    static const struct step script[] = {UP_TO_BOUND("e1"), {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r[2];
    if (!open_client(f, &r[0]) || !open_client(f, &r[1]))
        return;
    CHECK(bring_up(f, &r[0]));
    CHECK(gw_session_start(r[1].s, "localhost", NULL) == 0);
    WAIT(f, r[1].ready == 1);
    char sid[GW_SID_MAX + 1];
    snprintf(sid, sizeof(sid), "%s", gw_session_id(r[0].s));
    CHECK_STR(gw_sessions_peer_of(f->ctx.sessions, sid), "192.0.2.7");
    CHECK(gw_sessions_peer_of(f->ctx.sessions, "nope") == NULL);
    CHECK(gw_sessions_end_sid(f->ctx.sessions, "nope", GW_COND_policy_violation, "x") == GW_EINVAL);
    CHECK(gw_sessions_end_sid(f->ctx.sessions, sid, GW_COND_policy_violation, "by the operator") ==
          0);
    CHECK(r[0].closed == 1 && r[0].cond == GW_COND_policy_violation);
    CHECK(r[0].has_text && strcmp(r[0].text, "by the operator") == 0);
    CHECK(r[1].closed == 0 && gw_sessions_count(f->ctx.sessions) == 1);
    /* Out of the table, not yet freed: the address is still known in this turn. */
    CHECK_STR(gw_sessions_peer_of(f->ctx.sessions, sid), "192.0.2.7");
    CHECK(gw_sessions_end_sid(f->ctx.sessions, sid, GW_COND_policy_violation, "x") == GW_EINVAL);
    WAIT(f, peer_eof(f, 0));
    CHECK(peer_has(f, 0, STREAM_END));
    CHECK(gw_sessions_peer_of(f->ctx.sessions, sid) == NULL); /* freed since */
    gw_session_end(r[1].s, GW_COND_NONE);
    finish(f);
    for (unsigned i = 0; i < 2; i++)
        rec_cleanup(&r[i]);
}

#define SM_ENABLE "<enable xmlns='urn:xmpp:sm:3' resume='true'/>"
#define SM_ENABLED "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true' max='60'/>"

/* The end of a drain: the session with XEP-0198 resumption enabled has its upstream closed
 * without </stream:stream> and its owner told so; the other one gets system-shutdown and the
 * stream's end. */
static void test_end_drained(struct fixture *f)
{
    static const struct step script[] = {
        UP_TO_BOUND("b1"), {"<enable", SM_ENABLED, false, NULL}, {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec a, b;
    open_client(f, &a);
    open_client(f, &b);
    CHECK(bring_up(f, &a));
    CHECK(bring_up(f, &b));
    CHECK(send_str(a.s, SM_ENABLE) == 0);
    WAIT(f, a.delivered == 3 || a.closed);
    CHECK(a.delivered == 3);
    CHECK(gw_sessions_end_drained(f->ctx.sessions) == 1);
    CHECK(gw_sessions_count(f->ctx.sessions) == 0);
    CHECK(a.closed == 1 && a.cond == GW_COND_system_shutdown && a.resumable);
    CHECK(b.closed == 1 && b.cond == GW_COND_system_shutdown && !b.resumable);
    WAIT(f, peer_eof(f, 0) && peer_eof(f, 1));
    CHECK(peer_eof(f, 0) && !peer_has(f, 0, STREAM_END));
    CHECK(peer_eof(f, 1) && peer_has(f, 1, STREAM_END));
    finish(f);
    rec_cleanup(&a);
    rec_cleanup(&b);
}

/* A stream another node left resumable, resumed here: the bare JID comes from the client's SASL
 * identity, the full JID from the first stanza addressed to a full JID of it (not one to the bare
 * JID, not one to another user). */
static void resume_elsewhere(struct fixture *f, const char *auth, const char *bare,
                             const char *full)
{
    static const struct step script[] = {
        {"<stream:stream", HDR("s1") FEAT_SASL, false, NULL},
        {"<auth", SUCCESS, false, NULL},
        {"<stream:stream", HDR("s2") FEAT_BIND, false, NULL},
        {"<resume",
         "<resumed xmlns='urn:xmpp:sm:3' previd='elsewhere' h='0'/>"
         "<message to='u@localhost'><body>1</body></message>"
         "<message to='v@localhost/z'><body>2</body></message>",
         false, NULL},
        {"<r ",
         "<iq type='get' id='p1' to='u@localhost/phone' from='localhost'>"
         "<ping xmlns='urn:xmpp:ping'/></iq>"
         "<message to='sc,ott@localhost/tab'><body>3</body></message>",
         false, NULL},
        {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    open_client(f, &r);
    CHECK(r.s && gw_session_start(r.s, "localhost", NULL) == 0);
    WAIT(f, r.ready == 1 || r.closed);
    CHECK(send_str(r.s, auth) == 0);
    WAIT(f, r.delivered == 1 || r.closed);
    CHECK(gw_session_restart(r.s) == 0);
    WAIT(f, r.ready == 2 || r.closed);
    CHECK(send_str(r.s, "<resume xmlns='urn:xmpp:sm:3' previd='elsewhere' h='0'/>") == 0);
    WAIT(f, r.delivered == 4 || r.closed);
    CHECK(gw_session_state(r.s) == GW_SESSION_BOUND);
    CHECK_STR(gw_session_jid(r.s), bare);
    CHECK(send_str(r.s, "<r xmlns='urn:xmpp:sm:3'/>") == 0);
    WAIT(f, r.delivered == 6 || r.closed);
    CHECK_STR(gw_session_jid(r.s), full);
    gw_session_end(r.s, GW_COND_NONE);
    finish(f);
    rec_cleanup(&r);
}

static void test_resumed_elsewhere(struct fixture *f)
{
    resume_elsewhere(f, AUTH, "u@localhost", "u@localhost/phone"); /* PLAIN "\0u\0p" */
    /* SCRAM's client-first "n,,n=sc=2Cott,r=abc": the escaped ',' is undone. */
    resume_elsewhere(f,
                     "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>"
                     "biwsbj1zYz0yQ290dCxyPWFiYw==</auth>",
                     "sc,ott@localhost", "sc,ott@localhost/tab");
}

static void test_table_limits(struct fixture *f)
{
    unsigned saved = f->cfg.max_sessions;
    f->cfg.max_sessions = 2;
    struct rec a, b, c;
    open_client(f, &a);
    open_client(f, &b);
    rec_init(&c, f);
    struct gw_session_opts o = {.transport = GW_TRANSPORT_BOSH, .sink = &sink, .t = &c};
    int err = 0;
    CHECK(gw_session_new(&f->ctx, &o, &err) == NULL);
    CHECK(err == GW_ELIMIT);
    CHECK(gw_sessions_count(f->ctx.sessions) == 2);
    if (a.s)
        gw_session_end(a.s, GW_COND_NONE);
    CHECK(gw_sessions_count(f->ctx.sessions) == 1);
    err = 1;
    c.s = gw_session_new(&f->ctx, &o, &err);
    CHECK(c.s != NULL);
    CHECK(err == 0);
    CHECK(f->ctx.metrics.sessions_open[GW_TRANSPORT_BOSH] == 1);
    if (b.s)
        gw_session_end(b.s, GW_COND_NONE);
    if (c.s)
        gw_session_end(c.s, GW_COND_NONE);
    f->cfg.max_sessions = saved;

    f->ctx.draining = true;
    err = 0;
    CHECK(gw_session_new(&f->ctx, &o, &err) == NULL);
    CHECK(err == GW_ECLOSED);
    f->ctx.draining = false;
    finish(f);
    rec_cleanup(&a);
    rec_cleanup(&b);
    rec_cleanup(&c);
}

/* ---- 7. back-pressure ---- */

#define N_FLOOD 2000

static char *flood(void)
{
    struct gw_buf b;
    gw_buf_init(&b, 4u << 20);
    int rc = 0;
    for (unsigned i = 0; i < N_FLOOD && !rc; i++)
        rc = gw_buf_printf(
            &b, "<message from='a@localhost' id='m%04u'><body>%0120u</body></message>", i, i);
    char *out = rc ? NULL : strdup(gw_buf_ptr(&b));
    gw_buf_cleanup(&b);
    return out;
}

static bool delivered_in_order(const char *out)
{
    char id[16];
    const char *at = out;
    for (unsigned i = 0; i < N_FLOOD; i++) {
        snprintf(id, sizeof(id), "id='m%04u'", i);
        const char *hit = strstr(at, id);
        if (!hit)
            return false;
        at = hit + strlen(id);
    }
    return true;
}

static void test_back_pressure(struct fixture *f)
{
    char *blob = flood();
    CHECK(blob != NULL);
    if (!blob)
        return;
    CHECK(strlen(blob) > 4 * GW_CTX_READ_BUF); /* more than one read can hold */
    const struct step script[] = {
        UP_TO_BOUND("b1"), {"<presence", blob, false, NULL}, {NULL, NULL, false, NULL}};
    f->script = script;
    struct rec r;
    struct gw_session *s = open_client(f, &r);
    bool up = s && bring_up(f, &r);
    CHECK(up);
    if (up) {
        unsigned base = r.delivered; /* <success/> and the bind result */
        r.eagain = true;
        CHECK(send_str(s, PRESENCE) == 0);
        WAIT(f, r.delivered > base || r.closed);
        settle(f, 300);
        unsigned first = r.delivered - base;
        settle(f, SETTLE_MS);
        CHECK(first > 0);
        CHECK(first < N_FLOOD);
        CHECK(r.delivered - base == first); /* reading stopped */

        gw_session_resume(s); /* still over its bound after the next element: stops again */
        WAIT(f, r.delivered - base > first || r.closed);
        settle(f, SETTLE_MS);
        unsigned second = r.delivered - base;
        CHECK(second > first);
        CHECK(second < N_FLOOD);

        r.eagain = false;
        gw_session_resume(s);
        WAIT(f, r.delivered - base == N_FLOOD || r.closed);
        CHECK(r.delivered - base == N_FLOOD);
        CHECK(delivered_in_order(gw_buf_ptr(&r.out)));
        CHECK(view_of(f, s).info.stanzas_out == N_FLOOD + 2);
        CHECK(r.closed == 0);
        gw_session_resume(s); /* not paused: nothing changes */
        gw_session_end(s, GW_COND_NONE);
    } else {
        if (s && !r.closed)
            gw_session_end(s, GW_COND_NONE);
    }
    finish(f);
    if (s)
        rec_cleanup(&r);
    free(blob);
}

/* ---- fixture ---- */

/* ---- visitor mode: ANONYMOUS offered, the shared account, the generated resource, the policy ----
 */

#define VIS_PUBSUB "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"

/* The bind result names the resource the gateway asked for. */
static void hook_visitor_bind(struct peer *p)
{
    const char *r = strstr(gw_buf_ptr(&p->in), "<resource>");
    const char *e = r ? strstr(r, "</resource>") : NULL;
    char res[128] = "";
    if (r && e && (size_t)(e - r - 10) < sizeof(res))
        snprintf(res, sizeof(res), "%.*s", (int)(e - r - 10), r + 10);
    char out[512];
    snprintf(out, sizeof(out),
             "<iq type='result' id='c1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
             "<jid>site@localhost/%s</jid></bind></iq>",
             res);
    peer_say(p, out, strlen(out));
}

static void visitors_on(struct fixture *f, bool on)
{
    struct gw_config *c = &f->cfg;
    snprintf(c->visitors_domain, sizeof(c->visitors_domain), "%s", on ? "visitors.localhost" : "");
    snprintf(c->visitors_jid, sizeof(c->visitors_jid), "%s", on ? "site@localhost" : "");
    snprintf(c->visitors_password, sizeof(c->visitors_password), "%s", on ? "pw" : "");
    snprintf(c->visitors_pubsub[0], sizeof(c->visitors_pubsub[0]), "pubsub.localhost");
    c->n_visitors_pubsub = on ? 1 : 0;
}

/* Sent while bound: refused (an error of its kind, `forbidden`, not upstream) or forwarded. */
static void visitor_refused(struct fixture *f, struct rec *r, const char *xml, const char *kind,
                            const char *marker)
{
    unsigned before = r->delivered;
    CHECK(send_str(r->s, xml) == 0);
    CHECK(r->delivered == before); /* never from inside the owner's call */
    WAIT(f, r->delivered == before + 1);
    const char *last = gw_buf_ptr(&r->last);
    CHECK(r->delivered == before + 1 && strncmp(last, kind, strlen(kind)) == 0);
    CHECK(strstr(last, "type='error'") && strstr(last, "<error type='auth'><forbidden"));
    CHECK(strstr(last, "urn:ietf:params:xml:ns:xmpp-stanzas"));
    settle(f, 50);
    CHECK(!peer_has(f, 0, marker));
}

static void visitor_forwarded(struct fixture *f, struct rec *r, const char *xml, const char *marker)
{
    CHECK(send_str(r->s, xml) == 0);
    WAIT(f, peer_has(f, 0, marker));
    CHECK(peer_has(f, 0, marker));
}

static void visitor_login(struct fixture *f, struct rec *r)
{
    CHECK(gw_session_start(r->s, "Visitors.Localhost", NULL) == 0);
    WAIT(f, r->ready == 1 || r->closed);
    CHECK(r->ready == 1 && strstr(gw_buf_ptr(&r->features), "<mechanism>ANONYMOUS</mechanism>"));
    CHECK(!strstr(gw_buf_ptr(&r->features), "PLAIN"));
    CHECK_STR(r->from, "Visitors.Localhost");
    CHECK(send_str(r->s, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                         "AHUAcA==</auth>") == 0);
    CHECK(r->delivered == 0);
    WAIT(f, r->delivered == 1);
    CHECK(strstr(gw_buf_ptr(&r->last), "<invalid-mechanism/>"));
    CHECK(!peer_has(f, 0, "<auth"));
    CHECK(send_str(r->s,
                   "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>") == 0);
    WAIT(f, r->delivered == 2 || r->closed);
    CHECK(peer_has(f, 0, "mechanism='PLAIN'>AHNpdGUAcHc=</auth>")); /* \0site\0pw */
    CHECK(strstr(gw_buf_ptr(&r->last), "<success"));
    CHECK(gw_session_restart(r->s) == 0);
    WAIT(f, r->ready == 2 || r->closed);
    CHECK(r->ready == 2 && strstr(gw_buf_ptr(&r->features), "<bind"));
    CHECK(!strstr(gw_buf_ptr(&r->features), "urn:xmpp:sm"));
    CHECK(send_str(r->s, "<iq type='set' id='c1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                         "<resource>mine</resource></bind></iq>") == 0);
    WAIT(f, r->closed || gw_session_state(r->s) == GW_SESSION_BOUND);
    CHECK(gw_session_state(r->s) == GW_SESSION_BOUND);
    CHECK(!peer_has(f, 0, "<resource>mine"));
    const char *jid = gw_session_jid(r->s);
    CHECK(strncmp(jid, "site@localhost/visitor-", 23) == 0 && strlen(jid) == 23 + 16);
    CHECK(strspn(jid + 23, "0123456789abcdef") == 16);
    CHECK(strstr(gw_buf_ptr(&r->last), jid) && strstr(gw_buf_ptr(&r->last), "id='c1'"));
}

static void test_visitor(struct fixture *f)
{
    static const struct step script[] = {
        {"<stream:stream", HDR("v1") FEAT_SASL, false, NULL},
        {"<auth", SUCCESS, false, NULL},
        {"<stream:stream", HDR("v2") FEAT_BIND, false, NULL},
        {"<bind", NULL, false, hook_visitor_bind},
        {"id='s1'", "<iq type='result' id='s1' from='pubsub.localhost'/>", false, NULL},
        {NULL, NULL, false, NULL}};
    f->script = script;
    visitors_on(f, true);
    struct rec r;
    open_client(f, &r);
    visitor_login(f, &r);
    char xml[1024];
    const char *jid = gw_session_jid(r.s);
    visitor_refused(f, &r,
                    "<message to='bob@localhost' id='m1' type='chat'><body>hi</body></message>",
                    "<message", "id='m1'");
    CHECK(strstr(gw_buf_ptr(&r.last), "from='bob@localhost'") &&
          !strstr(gw_buf_ptr(&r.last), "hi"));
    visitor_refused(f, &r,
                    "<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item "
                    "jid='x@localhost'/></query></iq>",
                    "<iq", "id='r1'");
    CHECK(strstr(gw_buf_ptr(&r.last), "id='r1'"));
    visitor_refused(f, &r, "<iq type='set' id='v1'><vCard xmlns='vcard-temp'/></iq>", "<iq",
                    "id='v1'");
    visitor_refused(f, &r,
                    "<iq type='set' id='u1' to='pubsub.localhost'>" VIS_PUBSUB
                    "<publish node='n1'><item/></publish></pubsub></iq>",
                    "<iq", "id='u1'");
    visitor_refused(f, &r,
                    "<iq type='get' id='o1' to='muc.localhost'><query "
                    "xmlns='http://jabber.org/protocol/disco#items'/></iq>",
                    "<iq", "id='o1'");
    visitor_refused(f, &r, "<presence to='bob@localhost' id='pr1'/>", "<presence", "id='pr1'");
    snprintf(xml, sizeof(xml),
             "<iq type='set' id='s2' to='pubsub.localhost'>" VIS_PUBSUB
             "<subscribe node='n1' jid='site@localhost/other'/></pubsub></iq>");
    visitor_refused(f, &r, xml, "<iq", "id='s2'");

    visitor_forwarded(f, &r, "<presence id='pa'/>", "<presence id='pa'/>");
    visitor_forwarded(f, &r,
                      "<iq type='get' id='d1'><query "
                      "xmlns='http://jabber.org/protocol/disco#info'/></iq>",
                      "id='d1'");
    visitor_forwarded(f, &r,
                      "<iq type='get' id='d2' to='pubsub.localhost'><query "
                      "xmlns='http://jabber.org/protocol/disco#items'/></iq>",
                      "id='d2'");
    visitor_forwarded(f, &r,
                      "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
                      "id='p1'");
    snprintf(xml, sizeof(xml),
             "<iq type='set' id='s1' to='pubsub.localhost'>" VIS_PUBSUB
             "<subscribe node='n1' jid='%s'/></pubsub></iq>",
             jid);
    visitor_forwarded(f, &r, xml, "id='s1'");
    visitor_forwarded(f, &r,
                      "<iq type='get' id='i1' to='pubsub.localhost'>" VIS_PUBSUB
                      "<items node='n1'/></pubsub></iq>",
                      "id='i1'");
    visitor_forwarded(f, &r,
                      "<iq type='get' id='i2' to='pubsub.localhost'>" VIS_PUBSUB
                      "<subscriptions/></pubsub></iq>",
                      "id='i2'");
    WAIT(f, strstr(gw_buf_ptr(&r.out), "id='s1'") != NULL);

    /* The end: what the visitor subscribed to is undone before the stream closes. */
    char unsub[512];
    snprintf(unsub, sizeof(unsub), "<unsubscribe node='n1' jid='%s'/>", jid);
    gw_session_end(r.s, GW_COND_NONE);
    WAIT(f, peer_eof(f, 0));
    CHECK(in_order(peer_in(f, 0), unsub, "</stream:stream>", NULL));
    finish(f);
    rec_cleanup(&r);
    visitors_on(f, false);
}

static bool fixture_init(struct fixture *f)
{
    if (uv_loop_init(&f->loop) != 0)
        return false;
    gw_config_defaults(&f->cfg);
    f->ctx.loop = &f->loop;
    f->ctx.cfg = &f->cfg;
    f->ctx.log.level = getenv("XMPPGW_TEST_DEBUG") ? GW_LOG_DEBUG : GW_LOG_ERROR;
    f->ctx.started_ms = uv_now(&f->loop);
    f->ctx.read_buf = malloc(GW_CTX_READ_BUF);
    f->ctx.tls_buf = malloc(GW_CTX_TLS_BUF);
    f->ctx.up_batch = gw_upstream_batch_new(&f->ctx); /* as the daemon runs */
    f->ctx.sessions = gw_sessions_new(&f->ctx);
    if (!f->ctx.read_buf || !f->ctx.tls_buf || !f->ctx.up_batch || !f->ctx.sessions)
        return false;

    uv_timer_init(&f->loop, &f->deadline);
    f->deadline.data = f;
    uv_unref((uv_handle_t *)&f->deadline);

    struct sockaddr_in sa;
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&f->loop, &f->listener);
    f->listener.data = f;
    if (uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0) != 0 ||
        uv_listen((uv_stream_t *)&f->listener, 16, on_connection) != 0 ||
        uv_tcp_getsockname(&f->listener, (struct sockaddr *)&name, &namelen) != 0)
        return false;
    f->port = ntohs(((struct sockaddr_in *)&name)->sin_port);

    f->cfg.has_default_upstream = true;
    snprintf(f->cfg.upstream.addr.host, sizeof(f->cfg.upstream.addr.host), "127.0.0.1");
    f->cfg.upstream.addr.port = f->port;
    f->cfg.upstream.tls = GW_UPSTREAM_TLS_OFF;
    return f->port != 0;
}

/* Everything closed, the loop run until nothing is left, bounded. */
static void fixture_cleanup(struct fixture *f)
{
    if (f->ctx.sessions)
        gw_sessions_free(f->ctx.sessions);
    f->ctx.sessions = NULL;
    gw_upstream_batch_free(&f->ctx);
    if (f->listener.data)
        uv_close((uv_handle_t *)&f->listener, NULL);
    for (unsigned i = 0; i < f->n_peers; i++)
        peer_close(f->peers[i]);
    arm(f, 5000);
    while (uv_loop_alive(&f->loop) && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    CHECK(!uv_loop_alive(&f->loop));
    uv_close((uv_handle_t *)&f->deadline, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    for (unsigned i = 0; i < f->n_peers; i++) {
        gw_buf_cleanup(&f->peers[i]->in);
        free(f->peers[i]);
    }
    CHECK(uv_loop_close(&f->loop) == 0);
    free(f->ctx.read_buf);
    free(f->ctx.tls_buf);
}

int main(void)
{
    struct fixture *f = calloc(1, sizeof(*f));
    CHECK(f != NULL);
    if (!f)
        return CHECK_SUMMARY();
    bool ok = fixture_init(f);
    CHECK(ok);
    if (ok) {
        test_client_happy_path(f);
        test_held_before_features(f);
        test_held_across_restart(f);
        test_restart_and_start_codes(f);
        test_domain_not_served(f);
        test_sid_node_id(f);
        test_send_after_end(f);
        test_send_limits(f);
        test_stream_error(f);
        test_stream_error_unknown(f);
        test_upstream_closes(f);
        test_upstream_drops(f);
        test_upstream_silent(f);
        test_upstream_refused(f);
        test_gateway_login(f);
        test_gateway_login_refused(f);
        test_gateway_login_needs_credentials(f);
        test_bound_jid_checked(f);
        test_end_and_lost(f);
        test_writes_gathered(f);
        test_shutdown(f);
        test_end_sid(f);
        test_end_drained(f);
        test_resumed_elsewhere(f);
        test_table_limits(f);
        test_back_pressure(f);
        test_visitor(f);
    }
    fixture_cleanup(f);
    free(f);
    return CHECK_SUMMARY();
}
