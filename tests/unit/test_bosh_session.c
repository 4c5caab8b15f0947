/* Unit tests for gateway/web/bosh_session.c without libwebsockets: a fake adapter (requests are
 * plain structs; "ready" and "kill" are recorded) drives the BOSH sessions, whose core sessions
 * (a real session table on a real libuv loop) talk to a small scripted XMPP server on a loopback
 * TCP listener inside this test (upstream TLS off). Covers session creation, the rid window
 * (next, ahead, replay, outside), hold, wait, early requests, a browser giving up a held request,
 * data waking a held request, back-pressure, pause, inactivity, terminate, tombstones, keys,
 * restart, refused creations and the SIGTERM path (gw_sessions_shutdown() answers held requests
 * system-shutdown), and the deadlines that keep nothing alive for ever: a due answer never taken
 * (http.write_timeout), early requests whose gap is never filled, replays counted against
 * `requests`, upstream's stream error at creation, stream-namespace children and prefixes
 * declared on <body/>; prebound sessions (an account, a visitor: bound by the gateway, attached
 * by a request with the sid and rid given, what came meanwhile delivered on it; refused logins,
 * requests refused at once, a prebind nobody attaches to, a cancelled one). Every step checks the
 * sessions' invariants (gw_bosh_sessions_check()). */
#include <stdarg.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "check.h"
#include "config/config.h"
#include "core/ctx.h"
#include "session/session.h"
#include "web/bosh_proto.h"
#include "web/bosh_session.h"

#define DOMAIN "example.com"
#define NS_BIND_BODY "xmlns='http://jabber.org/protocol/httpbind'"
#define XBOSH "xmlns:xmpp='urn:xmpp:xbosh'"
#define FLOOD_N 150 /* messages of about 1 KB: more than one socket read, many times send_queue */

/* ---- a scripted XMPP server ---- */

struct xconn {
    uv_tcp_t tcp;        /* the gateway's upstream connection */
    struct xserver *srv; /* the server it belongs to */
    char buf[65536];     /* bytes received, not yet handled */
    size_t len;          /* bytes in buf */
    unsigned headers;    /* stream headers seen (a restart sends another) */
    bool closing;        /* uv_close called */
    struct xconn *next;  /* on srv->conns */
};

struct xserver {
    uv_tcp_t listener;   /* 127.0.0.1, a free port */
    int port;            /* that port */
    struct xconn *conns; /* open connections */
    char got[65536];     /* every element received, one after the other (for strstr) */
    size_t got_len;      /* bytes in got */
    unsigned accepted;   /* connections accepted */
    bool refuse_auth;    /* answer <auth/> with <failure/> */
};

static void xconn_closed(uv_handle_t *h)
{
    struct xconn *c = h->data;
    struct xconn **p = &c->srv->conns;
    while (*p && *p != c)
        p = &(*p)->next;
    if (*p)
        *p = c->next;
    free(c);
}

static void xconn_close(struct xconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, xconn_closed);
}

static void written(uv_write_t *w, int status)
{
    free(w);
}

static void xsend(struct xconn *c, const char *s)
{
    size_t n = strlen(s);
    uv_write_t *w = malloc(sizeof(*w) + n);
    if (!w || c->closing) {
        free(w);
        return;
    }
    char *copy = (char *)(w + 1);
    memcpy(copy, s, n);
    uv_buf_t b = uv_buf_init(copy, (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, written) != 0)
        free(w);
}

#define SRV_HEADER                                                                                 \
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "                                   \
    "xmlns:stream='http://etherx.jabber.org/streams' id='upstream-id' from='" DOMAIN               \
    "' version='1.0'>"

/* A message for the client, about 1 KB with a sequence number. */
static void send_flood(struct xconn *c, unsigned n)
{
    char pad[900];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    for (unsigned i = 0; i < n; i++) {
        char m[1100];
        snprintf(m, sizeof(m), "<message from='e@" DOMAIN "'><body>flood-%03u %s</body></message>",
                 i, pad);
        xsend(c, m);
    }
}

/* The result of a bind: the resource asked for, else one of the server's; a resource with
 * "echo" in it also gets a message right after, one with "silent" in it no answer. */
static void bind_result(struct xconn *c, const char *iq)
{
    char id[64] = "", res[128] = "srv-chosen", m[512];
    const char *p = strstr(iq, "id='"), *r = strstr(iq, "<resource>");
    if (p)
        sscanf(p + 4, "%63[^']", id);
    if (r)
        sscanf(r + 10, "%127[^<]", res);
    if (strstr(res, "silent"))
        return;
    snprintf(
        m, sizeof(m),
        "<iq type='result' id='%s'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>%s@" DOMAIN
        "/%s</jid></bind></iq>",
        id, strncmp(res, "visitor-", 8) == 0 ? "site" : "alice", res);
    xsend(c, m);
    if (strstr(res, "echo"))
        xsend(c, "<message from='e@" DOMAIN "'><body>before-attach</body></message>");
}

/* One complete element from the client: answer as the script says. */
static void on_element(struct xconn *c, const char *el, size_t len)
{
    struct xserver *srv = c->srv;
    if (srv->got_len + len < sizeof(srv->got)) {
        memcpy(srv->got + srv->got_len, el, len);
        srv->got_len += len;
        srv->got[srv->got_len] = '\0';
    }
    char copy[8192];
    snprintf(copy, sizeof(copy), "%.*s", (int)len, el);
    if (strncmp(copy, "<auth", 5) == 0) {
        xsend(c, srv->refuse_auth ? "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                                    "<not-authorized/></failure>"
                                  : "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
    } else if (strstr(copy, "<bind")) {
        bind_result(c, copy);
    } else if (strstr(copy, "die")) {
        xsend(c, "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                 "</stream:error></stream:stream>");
        xconn_close(c);
    } else if (strstr(copy, "flood")) {
        send_flood(c, FLOOD_N);
    } else if (strstr(copy, "echo")) {
        xsend(c, "<message from='e@" DOMAIN "'><body>echo</body></message>");
    }
}

/* A stream header for one of the domains this server refuses: its stream error instead of
 * features (true: the connection is closing). */
static bool stream_error_for(struct xconn *c, const char *hdr, size_t len)
{
    static const struct {
        const char *domain, *cond;
    } refused[] = {{"unknown.example", "host-unknown"}, {"conflict.example", "conflict"}};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (!memmem(hdr, len, refused[i].domain, strlen(refused[i].domain)))
            continue;
        char err[512];
        snprintf(err, sizeof(err),
                 SRV_HEADER "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                            "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>not here</text>"
                            "</stream:error></stream:stream>",
                 refused[i].cond);
        xsend(c, err);
        xconn_close(c);
        return true;
    }
    return false;
}

/* Length of the element at p (0: not complete yet). */
static size_t element_len(const char *p, size_t n)
{
    char name[64];
    size_t i = 1;
    while (i < n && i < sizeof(name) && p[i] != ' ' && p[i] != '>' && p[i] != '/')
        i++;
    if (i >= n || i >= sizeof(name))
        return 0;
    snprintf(name, sizeof(name), "</%.*s>", (int)(i - 1), p + 1);
    const char *gt = memchr(p, '>', n);
    if (!gt)
        return 0;
    if (gt[-1] == '/')
        return (size_t)(gt - p) + 1;
    const char *end = memmem(p, n, name, strlen(name));
    return end ? (size_t)(end - p) + strlen(name) : 0;
}

static void xconn_scan(struct xconn *c)
{
    size_t pos = 0;
    while (pos < c->len && !c->closing) {
        const char *p = c->buf + pos;
        size_t n = c->len - pos, used = 0;
        const char *lt = memchr(p, '<', n);
        if (!lt) {
            pos = c->len;
            break;
        }
        pos += (size_t)(lt - p);
        p = lt;
        n = c->len - pos;
        if (n >= 2 && p[1] == '?') {
            const char *e = memmem(p, n, "?>", 2);
            used = e ? (size_t)(e - p) + 2 : 0;
        } else if (n >= 14 && memcmp(p, "<stream:stream", 14) == 0) {
            const char *e = memchr(p, '>', n);
            used = e ? (size_t)(e - p) + 1 : 0;
            if (used && stream_error_for(c, p, used))
                return;
            if (used)
                xsend(c, c->headers++ == 0 ? SRV_HEADER
                             "<stream:features><mechanisms "
                             "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>"
                             "PLAIN</mechanism></mechanisms></stream:features>"
                                           : SRV_HEADER "<stream:features><bind "
                                                        "xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
                                                        "</stream:features>");
        } else if (n >= 16 && memcmp(p, "</stream:stream>", 16) == 0) {
            xsend(c, "</stream:stream>");
            xconn_close(c);
            return;
        } else {
            used = element_len(p, n);
            if (used)
                on_element(c, p, used);
        }
        if (!used)
            break;
        pos += used;
    }
    if (c->closing)
        return;
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
}

static void xalloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct xconn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len - 1));
}

static void xread(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct xconn *c = s->data;
    if (n < 0) {
        xconn_close(c);
        return;
    }
    c->len += (size_t)n;
    xconn_scan(c);
}

static void xaccept(uv_stream_t *l, int status)
{
    struct xserver *srv = l->data;
    struct xconn *c = calloc(1, sizeof(*c));
    if (status < 0 || !c) {
        free(c);
        return;
    }
    c->srv = srv;
    uv_tcp_init(l->loop, &c->tcp);
    c->tcp.data = c;
    c->next = srv->conns;
    srv->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        xconn_close(c);
        return;
    }
    srv->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, xalloc, xread);
}

static int xserver_start(struct xserver *srv, uv_loop_t *loop)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    if (uv_tcp_bind(&srv->listener, (const struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&srv->listener, 16, xaccept) != 0)
        return -1;
    struct sockaddr_in got;
    int len = sizeof(got);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&got, &len);
    srv->port = ntohs(got.sin_port);
    return 0;
}

/* ---- the fixture: loop, context, session tables, fake adapter ---- */

struct fx {
    uv_loop_t loop;              /* the one loop */
    uv_timer_t tick;             /* wakes uv_run(UV_RUN_ONCE) so that waits can time out */
    struct gw_config cfg;        /* the configuration the sessions see */
    struct gw_ctx ctx;           /* the gateway context */
    struct gw_bosh_sessions *bs; /* what is tested */
    struct xserver srv;          /* the upstream */
};

static struct fx F;

/* One request as the adapter sees it. */
struct conn {
    struct gw_bosh_req *r; /* NULL once answered or killed */
    bool ready;            /* ready() came */
    bool killed;           /* kill() came */
    unsigned status;       /* the answer's HTTP status */
    char body[70000];      /* the answer's body */
};

static void fake_ready(void *conn)
{
    ((struct conn *)conn)->ready = true;
}

static void fake_kill(void *conn)
{
    struct conn *c = conn;
    c->killed = true;
    c->r = NULL;
}

static const struct gw_bosh_conn_ops fake_ops = {.ready = fake_ready, .kill = fake_kill};

static void on_tick(uv_timer_t *t) {}

static void check_invariants(void)
{
    if (F.bs)
        CHECK(gw_bosh_sessions_check(F.bs) == 0);
}

/* Run the loop until *flag or ms pass. */
static bool run_until(const bool *flag, unsigned ms)
{
    uv_update_time(&F.loop);
    uint64_t end = uv_now(&F.loop) + ms;
    while (!(flag && *flag) && uv_now(&F.loop) < end) {
        uv_run(&F.loop, UV_RUN_ONCE);
        check_invariants();
    }
    return flag && *flag;
}

static void run_for(unsigned ms)
{
    (void)run_until(NULL, ms);
}

/* A request on fake connection fd with this body (printf format). */
static struct conn *post(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static struct conn *post(int fd, const char *fmt, ...)
{
    char body[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    uv_update_time(&F.loop);
    c->r = gw_bosh_req_new(F.bs, c, fd, "127.0.0.1");
    if (!c->r)
        abort();
    gw_bosh_req_submit(c->r, body, strlen(body));
    check_invariants();
    return c;
}

/* What the adapter does in WRITEABLE: take the answer and let go. */
static bool take(struct conn *c)
{
    struct gw_bosh_answer a;
    if (!c->r || gw_bosh_req_answer(c->r, &a) != 0)
        return false;
    c->status = a.status;
    snprintf(c->body, sizeof(c->body), "%.*s", (int)a.len, a.body ? a.body : "");
    gw_bosh_req_close(c->r);
    c->r = NULL;
    check_invariants();
    return true;
}

/* Wait for the answer and take it. */
static bool answer(struct conn *c, unsigned ms)
{
    return run_until(&c->ready, ms) && take(c);
}

/* The browser gives up. */
static void drop(struct conn *c)
{
    if (c->r)
        gw_bosh_req_close(c->r);
    c->r = NULL;
    free(c);
    check_invariants();
}

static bool has(const struct conn *c, const char *s)
{
    return strstr(c->body, s) != NULL;
}

static bool is_terminate(const struct conn *c, const char *cond)
{
    if (!has(c, "type='terminate'"))
        return false;
    if (!cond)
        return !has(c, "condition=");
    char want[128];
    snprintf(want, sizeof(want), "condition='%s'", cond);
    return has(c, want);
}

/* A BOSH session to talk to: sid and the last rid used. */
struct bosh {
    char sid[64];
    unsigned long long rid;
    int fd;
};

static bool create(struct bosh *s, int fd, unsigned wait, unsigned hold, const char *extra)
{
    memset(s, 0, sizeof(*s));
    s->rid = 1000 + (unsigned long long)fd * 100;
    s->fd = fd;
    struct conn *c = post(fd,
                          "<body rid='%llu' to='" DOMAIN "' wait='%u' hold='%u' "
                          "xmpp:version='1.0' " XBOSH " %s " NS_BIND_BODY "/>",
                          s->rid, wait, hold, extra ? extra : "");
    bool ok = answer(c, 3000) && c->status == 200;
    const char *p = strstr(c->body, "sid='");
    if (ok && p)
        sscanf(p + 5, "%63[0-9a-f]", s->sid);
    CHECK(ok && strlen(s->sid) == GW_SID_LEN);
    drop(c);
    return ok && s->sid[0];
}

/* The next request of the session (rid + 1 unless rid is given). */
static struct conn *next(struct bosh *s, const char *attrs, const char *payload)
{
    s->rid++;
    return post(s->fd, "<body rid='%llu' sid='%s' %s " NS_BIND_BODY ">%s</body>", s->rid, s->sid,
                attrs ? attrs : "", payload ? payload : "");
}

static struct conn *at_rid(struct bosh *s, unsigned long long rid, const char *attrs,
                           const char *payload)
{
    return post(s->fd, "<body rid='%llu' sid='%s' %s " NS_BIND_BODY ">%s</body>", rid, s->sid,
                attrs ? attrs : "", payload ? payload : "");
}

static bool counts(const struct bosh *s, unsigned held, unsigned early)
{
    unsigned h = 99, e = 99;
    return gw_bosh_sessions_requests(F.bs, s->sid, &h, &e) && h == held && e == early;
}

/* ---- the tests ---- */

static void test_creation(void)
{
    struct conn *c = post(1, "<body rid='7' to='" DOMAIN "' wait='2' hold='1' ver='1.11' ack='1' "
                             "xmpp:version='1.0' " XBOSH " " NS_BIND_BODY "/>");
    CHECK(!c->ready); /* held until upstream's features */
    CHECK(answer(c, 3000));
    CHECK(c->status == 200);
    CHECK(has(c, " wait='2'") && has(c, " hold='1'") && has(c, " requests='2'"));
    CHECK(has(c, " authid='upstream-id'") && has(c, " from='" DOMAIN "'"));
    CHECK(has(c, " ack='7'") && has(c, "xmpp:restartlogic='true'"));
    CHECK(has(c, "<mechanism>PLAIN</mechanism>"));
    drop(c);
}

static void test_refused(void)
{
    struct conn *c = post(2, "<body rid='1' " NS_BIND_BODY "/>");
    CHECK(answer(c, 100) && is_terminate(c, "improper-addressing") && c->status == 200);
    drop(c);
    c = post(2, "<body rid='1' to='not a domain' " NS_BIND_BODY "/>");
    CHECK(answer(c, 100) && is_terminate(c, "host-unknown"));
    drop(c);
    c = post(2, "<body rid='1' sid='00000000000000000000000000000000' " NS_BIND_BODY "/>");
    CHECK(answer(c, 100) && is_terminate(c, "item-not-found"));
    drop(c);
    c = post(2, "<body sid='x' " NS_BIND_BODY "/>");
    CHECK(answer(c, 100) && is_terminate(c, "bad-request") && c->status == 200);
    drop(c);
    c = post(2, "<body rid='1' " NS_BIND_BODY ">");
    CHECK(answer(c, 100) && is_terminate(c, "bad-request") && c->status == 400);
    drop(c);
    /* Legacy clients (ver < 1.6) get HTTP codes for binding errors. */
    struct bosh s;
    if (create(&s, 2, 5, 1, "ver='1.5'")) {
        c = at_rid(&s, s.rid + 5, NULL, NULL);
        CHECK(c->ready && take(c) && is_terminate(c, "item-not-found") && c->status == 404);
        drop(c);
    }
    c = post(2, "<body rid='1' to='" DOMAIN "' route='xmpp:elsewhere:5222' " NS_BIND_BODY "/>");
    CHECK(answer(c, 3000) && c->status == 200 && has(c, "sid=")); /* route only logged */
    drop(c);
}

static void test_hold_and_wait(void)
{
    struct bosh s;
    if (!create(&s, 3, 1, 1, NULL))
        return;
    struct conn *a = next(&s, NULL, NULL);
    CHECK(!a->ready && counts(&s, 1, 0));
    /* Beyond hold: the oldest is answered at once (empty). */
    struct conn *b = next(&s, NULL, NULL);
    CHECK(a->ready && !b->ready && counts(&s, 1, 0));
    CHECK(take(a) && a->status == 200 && !has(a, "<message") && !has(a, "type="));
    /* wait (1 s) passes: an empty answer. */
    uv_update_time(&F.loop);
    uint64_t t0 = uv_now(&F.loop);
    CHECK(answer(b, 2500));
    uint64_t waited = uv_now(&F.loop) - t0;
    CHECK(waited >= 900 && waited < 3000);
    CHECK(has(b, "<body xmlns='http://jabber.org/protocol/httpbind'/>"));
    /* Data from upstream wakes a held request, and goes in one body. */
    struct conn *c = next(&s, NULL, "<message to='e@" DOMAIN "'><body>echo</body></message>");
    CHECK(answer(c, 2000) && has(c, "<body>echo</body>"));
    /* A repeated rid replays the answer, byte for byte. */
    struct conn *r = at_rid(&s, s.rid, NULL, NULL);
    CHECK(r->ready && take(r) && strcmp(r->body, c->body) == 0);
    drop(a);
    drop(b);
    drop(c);
    drop(r);
}

static void test_early_and_window(void)
{
    struct bosh s;
    if (!create(&s, 4, 5, 1, NULL))
        return;
    unsigned long long last = s.rid;
    /* rid + 2 first: it waits for the gap. */
    struct conn *two = at_rid(&s, last + 2, NULL, NULL);
    CHECK(!two->ready && counts(&s, 0, 1));
    /* The gap is filled: both are processed in order; hold 1 answers the older at once. */
    struct conn *one = at_rid(&s, last + 1, NULL,
                              "<message to='x@" DOMAIN "'><body>first</body>"
                              "</message>");
    CHECK(one->ready && !two->ready && counts(&s, 1, 0));
    CHECK(take(one));
    s.rid = last + 2;
    /* The stanzas reached upstream in rid order. */
    run_for(100);
    CHECK(strstr(F.srv.got, "<body>first</body>") != NULL);
    /* A repeat of a held rid takes its place; the old connection is closed. */
    struct conn *again = at_rid(&s, last + 2, NULL, NULL);
    CHECK(two->killed && !again->ready && counts(&s, 1, 0));
    /* The browser gives it up: its rid may come again and is held again. */
    drop(again);
    CHECK(counts(&s, 0, 0));
    struct conn *third = at_rid(&s, last + 2, NULL, NULL);
    CHECK(!third->ready && counts(&s, 1, 0));
    /* Too far ahead: item-not-found; the held request gets other-request. */
    struct conn *far = at_rid(&s, last + 10, NULL, NULL);
    CHECK(far->ready && take(far) && is_terminate(far, "item-not-found"));
    CHECK(third->ready && take(third) && is_terminate(third, "other-request"));
    struct conn *after = next(&s, NULL, NULL);
    CHECK(after->ready && take(after) && is_terminate(after, "item-not-found"));
    drop(one);
    drop(two);
    drop(third);
    drop(far);
    drop(after);
}

static void test_old_rid_and_overactivity(void)
{
    struct bosh s;
    if (!create(&s, 5, 5, 1, NULL))
        return;
    /* More simultaneous requests than `requests` (2): policy-violation. */
    struct conn *a = next(&s, NULL, NULL);
    struct conn *b = at_rid(&s, s.rid + 2, NULL, NULL); /* early */
    struct conn *c = at_rid(&s, s.rid + 1, NULL, NULL);
    CHECK(c->ready && take(c) && is_terminate(c, "policy-violation"));
    CHECK(a->ready && take(a) && is_terminate(a, "other-request"));
    CHECK(b->ready && take(b) && is_terminate(b, "other-request"));
    drop(a);
    drop(b);
    drop(c);

    if (!create(&s, 5, 5, 1, NULL))
        return;
    /* A rid from before the log: item-not-found. */
    struct conn *old = at_rid(&s, s.rid - 5, NULL, NULL);
    CHECK(old->ready && take(old) && is_terminate(old, "item-not-found"));
    drop(old);

    /* An empty request right after an empty answer to an empty request, nothing held, faster
     * than polling: policy-violation (XEP-0124 section 12). */
    F.cfg.bosh_polling = 3;
    bool made = create(&s, 5, 1, 1, NULL);
    F.cfg.bosh_polling = 0;
    if (!made)
        return;
    struct conn *poll = next(&s, NULL, NULL);
    CHECK(answer(poll, 2500) && !has(poll, "type="));
    struct conn *fast = next(&s, NULL, NULL);
    CHECK(fast->ready && take(fast) && is_terminate(fast, "policy-violation"));
    drop(poll);
    drop(fast);
}

static void test_pause(void)
{
    struct bosh s;
    if (!create(&s, 6, 5, 1, NULL))
        return;
    struct conn *held = next(&s, NULL, NULL);
    struct conn *p = next(&s, "pause='5000'", NULL);
    CHECK(p->ready && take(p) && is_terminate(p, "policy-violation"));
    CHECK(held->ready && take(held) && is_terminate(held, "other-request"));
    drop(held);
    drop(p);

    /* inactivity 5 s, pause 1 s: the pause decides. */
    F.cfg.bosh_inactivity = 5;
    bool made = create(&s, 6, 5, 1, NULL);
    F.cfg.bosh_inactivity = 1;
    if (!made)
        return;
    held = next(&s, NULL, NULL);
    p = next(&s, "pause='1'", NULL);
    /* Every held request answered at once, and the pause request too. */
    CHECK(held->ready && p->ready && take(held) && take(p));
    CHECK(!has(p, "type="));
    CHECK(counts(&s, 0, 0));
    /* Without a request the session lasts its pause, not its inactivity. */
    run_for(2500);
    unsigned h, e;
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    drop(held);
    drop(p);
}

static void test_inactivity(void)
{
    struct bosh s;
    size_t before = gw_sessions_count(F.ctx.sessions);
    if (!create(&s, 7, 5, 1, NULL))
        return;
    CHECK(gw_sessions_count(F.ctx.sessions) == before + 1);
    /* bosh.inactivity is 1 s here: no request, the session ends, the core session too. */
    run_for(2500);
    unsigned h, e;
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    CHECK(gw_sessions_count(F.ctx.sessions) == before);
    struct conn *c = next(&s, NULL, NULL);
    CHECK(c->ready && take(c) && is_terminate(c, "item-not-found"));
    drop(c);
}

static void test_terminate(void)
{
    struct bosh s;
    if (!create(&s, 8, 5, 1, NULL))
        return;
    struct conn *held = next(&s, NULL, NULL);
    struct conn *t = next(&s, "type='terminate'",
                          "<message to='e@" DOMAIN "'><body>last-words</body></message>");
    CHECK(t->ready && take(t) && is_terminate(t, NULL) && t->status == 200);
    CHECK(held->ready && take(held) && is_terminate(held, NULL));
    run_for(200);
    CHECK(strstr(F.srv.got, "last-words") != NULL); /* its stanzas went upstream */
    struct conn *after = next(&s, NULL, NULL);
    CHECK(after->ready && take(after) && is_terminate(after, "item-not-found"));
    drop(held);
    drop(t);
    drop(after);
}

static void test_tombstone(void)
{
    struct bosh s;
    if (!create(&s, 9, 5, 1, NULL))
        return;
    size_t n = gw_bosh_sessions_count(F.bs);
    struct conn *held = next(&s, NULL, "<message to='e@" DOMAIN "'><body>die</body></message>");
    /* Upstream answers with a stream error: the held request gets remote-stream-error with it. */
    CHECK(answer(held, 2000));
    CHECK(is_terminate(held, "remote-stream-error") && has(held, "<conflict"));
    /* The tombstone answers later requests the same way. */
    CHECK(gw_bosh_sessions_count(F.bs) == n);
    struct conn *later = next(&s, NULL, NULL);
    CHECK(later->ready && take(later) && is_terminate(later, "remote-stream-error") &&
          has(later, "<conflict"));
    drop(held);
    drop(later);
}

static void test_keys(void)
{
    char k[4][41];
    snprintf(k[0], sizeof(k[0]), "%s", "seed");
    for (int i = 1; i < 4; i++)
        CHECK(gw_bosh_sha1_hex(k[i - 1], strlen(k[i - 1]), k[i]) == 0);
    char attr[128];
    snprintf(attr, sizeof(attr), "newkey='%s'", k[3]);
    struct bosh s;
    if (!create(&s, 10, 5, 1, attr))
        return;
    snprintf(attr, sizeof(attr), "key='%s'", k[2]);
    struct conn *a = next(&s, attr, NULL);
    CHECK(!a->ready); /* accepted and held */
    /* A repeat must carry the same key. */
    struct conn *bad_repeat = at_rid(&s, s.rid, "key='nope'", NULL);
    CHECK(bad_repeat->ready && take(bad_repeat) && is_terminate(bad_repeat, "item-not-found"));
    CHECK(a->ready && take(a) && is_terminate(a, "other-request"));
    drop(a);
    drop(bad_repeat);

    snprintf(attr, sizeof(attr), "newkey='%s'", k[3]);
    if (!create(&s, 10, 5, 1, attr))
        return;
    snprintf(attr, sizeof(attr), "key='%s'", k[2]);
    a = next(&s, attr, NULL);
    snprintf(attr, sizeof(attr), "key='%s'", k[3]); /* not the one before k[2] */
    struct conn *b = next(&s, attr, NULL);
    CHECK(b->ready && take(b) && is_terminate(b, "item-not-found"));
    CHECK(a->ready && take(a) && is_terminate(a, "other-request"));
    drop(a);
    drop(b);
}

static void test_restart(void)
{
    struct bosh s;
    if (!create(&s, 11, 5, 1, NULL))
        return;
    /* Before SASL success: bad-request. */
    struct conn *r = next(&s, "xmpp:restart='true' " XBOSH, NULL);
    CHECK(r->ready && take(r) && is_terminate(r, "bad-request"));
    drop(r);

    if (!create(&s, 11, 5, 1, NULL))
        return;
    struct conn *auth =
        next(&s, NULL,
             "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>");
    CHECK(answer(auth, 2000) && has(auth, "<success"));
    r = next(&s, "xmpp:restart='true' " XBOSH, NULL);
    CHECK(answer(r, 2000) && has(r, "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'"));
    drop(auth);
    drop(r);
}

static void test_back_pressure(void)
{
    struct bosh s;
    if (!create(&s, 12, 2, 1, NULL))
        return;
    /* FLOOD_N messages against limits.send_queue of 8 KB: upstream reading pauses and
     * resumes as answers drain the queue; nothing is lost or reordered. */
    struct conn *c = next(&s, NULL, "<message to='e@" DOMAIN "'><body>flood</body></message>");
    unsigned seen = 0, idle = 0;
    bool in_order = true;
    for (int round = 0; round < 200 && seen < FLOOD_N && idle < 2; round++) {
        if (!answer(c, 3000))
            break;
        unsigned before = seen;
        for (const char *p = strstr(c->body, "flood-"); p; p = strstr(p + 1, "flood-")) {
            unsigned k = 0;
            if (sscanf(p, "flood-%u", &k) == 1) {
                in_order = in_order && k == seen;
                seen++;
            }
        }
        idle = seen == before ? idle + 1 : 0; /* wait passed with nothing: reading stopped */
        drop(c);
        c = next(&s, NULL, NULL);
    }
    CHECK(seen == FLOOD_N && in_order);
    drop(c);
}

static void test_order_of_answers(void)
{
    struct bosh s;
    if (!create(&s, 13, 5, 1, NULL))
        return;
    /* Two requests on two connections: while the answer with stanzas may still be on its way on
     * one, the other waits with the stanzas for it (a client that is logging in does not come
     * back for them by itself), and they go out ORDER_SETTLE_MS (300 ms) later at the latest. */
    s.fd = 20;
    struct conn *a = next(&s, NULL, "<message to='e@" DOMAIN "'><body>echo</body></message>");
    CHECK(answer(a, 2000) && has(a, "echo"));
    s.fd = 21;
    uint64_t t0 = uv_now(&F.loop);
    struct conn *b = next(&s, NULL, "<message to='e@" DOMAIN "'><body>echo</body></message>");
    CHECK(!answer(b, 150)); /* the client may not have a's answer yet */
    CHECK(answer(b, 2000) && has(b, "echo"));
    uint64_t waited = uv_now(&F.loop) - t0;
    CHECK(waited >= 250 && waited < 1500);
    /* Again, but the client's next request comes on the connection b's answer took: it has that
     * answer, so the waiting request goes out at once, with the stanzas. */
    s.fd = 22;
    struct conn *d = next(&s, NULL, "<message to='e@" DOMAIN "'><body>echo</body></message>");
    CHECK(!answer(d, 100));
    s.fd = 21;
    struct conn *c = next(&s, NULL, NULL);
    CHECK(answer(d, 100) && has(d, "echo"));
    drop(a);
    drop(b);
    drop(c);
    drop(d);
}

static void test_abandoned_creation(void)
{
    size_t n = gw_bosh_sessions_count(F.bs);
    struct conn *c = post(14, "<body rid='5' to='" DOMAIN "' " NS_BIND_BODY "/>");
    CHECK(gw_bosh_sessions_count(F.bs) == n + 1);
    drop(c); /* nobody will ever know the sid */
    CHECK(gw_bosh_sessions_count(F.bs) == n);
}

static void test_shutdown(void)
{
    struct bosh s;
    if (!create(&s, 15, 20, 1, NULL))
        return;
    struct conn *held = next(&s, NULL, NULL);
    CHECK(!held->ready);
    /* SIGTERM: the gateway drains through the session core. */
    F.ctx.draining = true;
    gw_sessions_shutdown(F.ctx.sessions);
    CHECK(held->ready && take(held) && is_terminate(held, "system-shutdown"));
    struct conn *c = post(16, "<body rid='1' to='" DOMAIN "' " NS_BIND_BODY "/>");
    CHECK(c->ready && take(c) && is_terminate(c, "system-shutdown"));
    drop(held);
    drop(c);
}

static void test_upstream_down(void)
{
    struct conn *c = post(17, "<body rid='1' to='down.example' " NS_BIND_BODY "/>");
    CHECK(answer(c, 5000) && is_terminate(c, "remote-connection-failed"));
    drop(c);
}

static void test_write_deadline(void)
{
    struct bosh s;
    if (!create(&s, 18, 1, 1, NULL))
        return;
    uint64_t refused = F.ctx.metrics.refused[GW_LIMIT_HTTP_DEADLINE];
    struct conn *c = next(&s, NULL, NULL);
    /* wait (1 s) passes: the answer is due, but the connection never takes it. */
    CHECK(run_until(&c->ready, 2500) && counts(&s, 0, 0));
    /* http.write_timeout (1 s here) later the connection is closed and the request dropped. */
    CHECK(run_until(&c->killed, 2500));
    CHECK(F.ctx.metrics.refused[GW_LIMIT_HTTP_DEADLINE] == refused + 1);
    unsigned h = 99, e = 99;
    CHECK(gw_bosh_sessions_requests(F.bs, s.sid, &h, &e) && h == 0 && e == 0);
    /* Its rid may come again (the browser lost it) and is held again. */
    struct conn *again = at_rid(&s, s.rid, NULL, NULL);
    CHECK(!again->ready && counts(&s, 1, 0));
    drop(again);
    /* With no request, inactivity (1 s) ends the session. */
    run_for(2500);
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    free(c);

    /* The creation answer not taken: nobody has the sid, the session goes with the request. */
    size_t n = gw_sessions_count(F.ctx.sessions);
    c = post(18, "<body rid='5' to='" DOMAIN "' wait='5' hold='1' " NS_BIND_BODY "/>");
    CHECK(run_until(&c->ready, 3000) && gw_sessions_count(F.ctx.sessions) == n + 1);
    CHECK(run_until(&c->killed, 2500) && gw_sessions_count(F.ctx.sessions) == n);
    free(c);
}

static void test_early_deadline(void)
{
    struct bosh s;
    if (!create(&s, 19, 1, 1, NULL))
        return;
    size_t before = gw_sessions_count(F.ctx.sessions);
    /* rid + 2 and rid + 3, and rid + 1 never comes: `wait` (1 s) after the first was parked,
     * both are answered item-not-found and the session ends. */
    struct conn *two = at_rid(&s, s.rid + 2, NULL, NULL);
    CHECK(!two->ready && counts(&s, 0, 1));
    run_for(300);
    struct conn *again = at_rid(&s, s.rid + 2, NULL, NULL); /* sent again: same deadline */
    CHECK(two->killed && !again->ready && counts(&s, 0, 1));
    uv_update_time(&F.loop);
    uint64_t t0 = uv_now(&F.loop);
    CHECK(run_until(&again->ready, 2500));
    uint64_t waited = uv_now(&F.loop) - t0;
    CHECK(waited >= 500 && waited < 1200);
    CHECK(take(again) && is_terminate(again, "item-not-found"));
    unsigned h, e;
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    CHECK(gw_sessions_count(F.ctx.sessions) == before - 1);
    free(two);
    drop(again);

    /* A held request besides is answered at its `wait`; every early one: item-not-found. */
    F.cfg.bosh_max_requests = 4;
    F.cfg.bosh_max_hold = 2;
    bool made = create(&s, 19, 1, 2, NULL);
    F.cfg.bosh_max_requests = 2;
    F.cfg.bosh_max_hold = 1;
    if (!made)
        return;
    struct conn *held = next(&s, NULL, NULL);
    run_for(200);
    struct conn *e3 = at_rid(&s, s.rid + 2, NULL, NULL), *e4 = at_rid(&s, s.rid + 3, NULL, NULL);
    CHECK(counts(&s, 1, 2));
    /* wait (1 s) answers the held one empty first; the early ones end the session. */
    CHECK(answer(held, 2500) && !has(held, "type="));
    CHECK(answer(e3, 2500) && is_terminate(e3, "item-not-found"));
    CHECK(e4->ready && take(e4) && is_terminate(e4, "item-not-found"));
    drop(held);
    drop(e3);
    drop(e4);
}

static void test_replay_window(void)
{
    struct bosh s;
    if (!create(&s, 20, 1, 1, NULL))
        return;
    struct conn *a = next(&s, NULL, "<message to='e@" DOMAIN "'><body>echo</body></message>");
    CHECK(answer(a, 2000) && has(a, "echo"));
    /* Replays are requests open until written: two fit `requests` (2), a third does not. */
    struct conn *r[3];
    for (int i = 0; i < 3; i++)
        r[i] = at_rid(&s, s.rid, NULL, NULL);
    CHECK(r[0]->ready && r[1]->ready && r[2]->ready);
    CHECK(take(r[2]) && is_terminate(r[2], "policy-violation"));
    CHECK(take(r[0]) && strcmp(r[0]->body, a->body) == 0);
    CHECK(take(r[1]) && strcmp(r[1]->body, a->body) == 0);
    unsigned h, e;
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    drop(a);
    for (int i = 0; i < 3; i++)
        drop(r[i]);

    /* Replays written one after the other are fine, however many. */
    if (!create(&s, 20, 1, 1, NULL))
        return;
    a = next(&s, NULL, NULL);
    CHECK(answer(a, 2500));
    for (int i = 0; i < 20; i++) {
        struct conn *one = at_rid(&s, s.rid, NULL, NULL);
        CHECK(one->ready && take(one) && strcmp(one->body, a->body) == 0);
        drop(one);
    }
    CHECK(gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    drop(a);
}

/* A held request whose connection was lost may come again, but as one more open request: with
 * `requests` (2) open already, it ends the session (policy-violation), as any third would. */
static void test_resent_lost_request(void)
{
    struct bosh s;
    if (!create(&s, 21, 5, 1, NULL))
        return;
    struct conn *a = next(&s, NULL, NULL);
    struct conn *b = next(&s, NULL, NULL);
    CHECK(a->ready && !b->ready && counts(&s, 1, 0)); /* hold 1: a is due, not yet taken */
    unsigned long long lost = s.rid;
    drop(b);
    struct conn *c = next(&s, NULL, NULL);
    CHECK(!c->ready && counts(&s, 1, 0)); /* c waits, a is still due */
    struct conn *again = at_rid(&s, lost, NULL, NULL);
    CHECK(again->ready && take(again) && is_terminate(again, "policy-violation"));
    CHECK(c->ready && take(c) && is_terminate(c, "other-request"));
    unsigned h, e;
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    drop(a);
    drop(c);
    drop(again);
}

static void test_creation_stream_error(void)
{
    /* Upstream refuses the domain with a stream error while the creation request is held: the
     * creation answer carries its condition (host-unknown has the same meaning in XEP-0124) and
     * its <stream:error/>; no session remains. */
    size_t n = gw_bosh_sessions_count(F.bs);
    struct conn *c = post(21, "<body rid='1' to='unknown.example' " NS_BIND_BODY "/>");
    CHECK(answer(c, 3000) && is_terminate(c, "host-unknown"));
    CHECK(has(c, "<stream:error") && has(c, "<host-unknown") && has(c, "not here"));
    CHECK(gw_bosh_sessions_count(F.bs) == n);
    drop(c);
    /* A condition XEP-0124 does not have: remote-stream-error, with the element. */
    c = post(21, "<body rid='1' to='conflict.example' " NS_BIND_BODY "/>");
    CHECK(answer(c, 3000) && is_terminate(c, "remote-stream-error"));
    CHECK(has(c, "<stream:error") && has(c, "<conflict"));
    drop(c);
}

static void test_stream_namespace_child(void)
{
    struct bosh s;
    if (!create(&s, 22, 5, 1, NULL))
        return;
    struct conn *c =
        next(&s, "xmlns:stream='http://etherx.jabber.org/streams'", "<stream:features/>");
    CHECK(c->ready && take(c) && is_terminate(c, "bad-request") && c->status == 200);
    unsigned h, e;
    CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
    drop(c);
    /* A prefix declared on <body/> goes upstream with the stanza that uses it. */
    if (!create(&s, 22, 5, 1, NULL))
        return;
    c = next(&s, "xmlns:foo='urn:example:foo'",
             "<message to='x@" DOMAIN "'><body>prefixed</body><foo:x/></message>");
    run_for(200);
    CHECK(strstr(F.srv.got, "<message xmlns:foo='urn:example:foo' to='x@" DOMAIN "'>") != NULL);
    drop(c);
}

/* A stanza past a limit ends its session with policy-violation (200; 403 for a legacy client);
 * in a body that names no live session it stays 400 bad-request. */
static void test_stanza_past_limit(void)
{
    unsigned depth = F.cfg.max_depth;
    F.cfg.max_depth = 4;
    const char *deep = "<message><a><b><c><d><e/></d></c></b></a></message>";
    struct bosh s;
    unsigned h, e;
    if (create(&s, 23, 5, 1, NULL)) {
        struct conn *c = next(&s, NULL, deep);
        CHECK(c->ready && take(c) && is_terminate(c, "policy-violation") && c->status == 200);
        CHECK(!gw_bosh_sessions_requests(F.bs, s.sid, &h, &e));
        drop(c);
    }
    if (create(&s, 23, 5, 1, "ver='1.5'")) {
        struct conn *c = next(&s, NULL, deep);
        CHECK(c->ready && take(c) && is_terminate(c, "policy-violation") && c->status == 403);
        drop(c);
    }
    struct conn *c = post(23, "<body rid='1' sid='%s' " NS_BIND_BODY ">%s</body>", s.sid, deep);
    CHECK(c->ready && take(c) && is_terminate(c, "bad-request") && c->status == 400);
    drop(c);
    F.cfg.max_depth = depth;
}

/* ---- prebind ---- */

/* What a prebind's asker was told. */
struct told {
    bool called;            /* fn came */
    unsigned times;         /* how often */
    int status;             /* as told */
    enum gw_condition cond; /* as told */
    char jid[256];          /* as told */
    char sid[64];           /* as told */
    unsigned long long rid; /* as told */
};

static void on_prebound(void *ud, const struct gw_prebind_result *res)
{
    struct told *t = ud;
    t->called = true;
    t->times++;
    t->status = res->status;
    t->cond = res->cond;
    snprintf(t->jid, sizeof(t->jid), "%s", res->jid);
    snprintf(t->sid, sizeof(t->sid), "%s", res->sid);
    t->rid = res->rid;
}

/* Start a prebind and wait until its asker is told. */
static bool prebind(struct told *t, const char *jid, const char *password, bool visitor)
{
    memset(t, 0, sizeof(*t));
    struct gw_prebind_req req = {
        .jid = jid, .password = password, .visitor = visitor, .peer = "127.0.0.1"};
    struct gw_prebind *p = NULL;
    int rc = gw_bosh_sessions_prebind(F.bs, &req, on_prebound, t, &p);
    CHECK(rc == 0 && p);
    CHECK(!t->called); /* never from inside the call */
    check_invariants();
    return rc == 0 && run_until(&t->called, 4000);
}

/* The client's side of a prebound session: its next request is the rid it was given. */
static void attached(struct bosh *s, const struct told *t, int fd)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->sid, sizeof(s->sid), "%s", t->sid);
    s->rid = t->rid - 1;
    s->fd = fd;
}

/* An account: logged in and bound by the gateway; the client attaches with the sid and rid it was
 * told, gets at once what upstream sent meanwhile, and its stanzas go upstream. */
static void test_prebind_account(void)
{
    struct told t;
    size_t before = F.srv.got_len;
    CHECK(prebind(&t, "alice@" DOMAIN "/echo-1", "secret", false));
    CHECK(t.status == 0 && t.times == 1 && t.cond == GW_COND_NONE);
    CHECK(strcmp(t.jid, "alice@" DOMAIN "/echo-1") == 0 && strlen(t.sid) == GW_SID_LEN);
    CHECK(t.rid > 1 && t.rid <= 4000000001ull);
    CHECK(strstr(F.srv.got + before, "mechanism='PLAIN'"));
    CHECK(strstr(F.srv.got + before, "<resource>echo-1</resource>"));
    run_for(100); /* the message upstream sent after the bind waits for the client */
    struct bosh s;
    attached(&s, &t, 30);
    struct conn *c = next(&s, NULL, NULL);
    CHECK(c->ready && take(c) && c->status == 200 && has(c, "before-attach"));
    drop(c);
    c = next(&s, NULL, "<message to='e@" DOMAIN "'><body>echo</body></message>");
    CHECK(answer(c, 3000) && has(c, "<body>echo</body>"));
    drop(c);
    /* The rid before the first was never the client's: nothing to replay. */
    c = at_rid(&s, t.rid - 1, NULL, NULL);
    CHECK(c->ready && take(c) && is_terminate(c, "item-not-found"));
    drop(c);
    /* Without a resource the server chooses one. */
    CHECK(prebind(&t, "alice@" DOMAIN, "secret", false));
    CHECK(t.status == 0 && strcmp(t.jid, "alice@" DOMAIN "/srv-chosen") == 0);
    attached(&s, &t, 31);
    c = next(&s, "type='terminate'", NULL);
    CHECK(c->ready && take(c) && is_terminate(c, NULL));
    drop(c);
}

/* A visitor: the shared account, a generated resource, the visitor policy. */
static void test_prebind_visitor(void)
{
    snprintf(F.cfg.visitors_domain, sizeof(F.cfg.visitors_domain), "visitors." DOMAIN);
    snprintf(F.cfg.visitors_jid, sizeof(F.cfg.visitors_jid), "site@" DOMAIN);
    snprintf(F.cfg.visitors_password, sizeof(F.cfg.visitors_password), "site-pw");
    struct told t;
    size_t before = F.srv.got_len;
    CHECK(prebind(&t, "alice@" DOMAIN, "ignored", true));
    const char *want = "site@" DOMAIN "/visitor-";
    CHECK(t.status == 0 && strncmp(t.jid, want, strlen(want)) == 0);
    CHECK(strlen(t.jid) == strlen(want) + 16 &&
          strspn(t.jid + strlen(want), "0123456789abcdef") == 16);
    struct bosh s;
    attached(&s, &t, 32);
    struct conn *c =
        next(&s, NULL, "<message to='bob@" DOMAIN "' id='m1'><body>hi</body></message>");
    CHECK(answer(c, 3000) && has(c, "<forbidden ") && has(c, "id='m1'"));
    drop(c);
    CHECK(!strstr(F.srv.got + before, "bob@"));
    c = next(&s, "type='terminate'", NULL);
    CHECK(c->ready && take(c) && is_terminate(c, NULL));
    drop(c);
    F.cfg.visitors_domain[0] = '\0';
}

/* Refused at once (nothing started, never told), or told of a failed login. */
static void test_prebind_refused(void)
{
    struct told t = {0};
    struct gw_prebind *p = NULL;
    struct gw_prebind_req req = {
        .jid = "no-localpart." DOMAIN, .password = "x", .peer = "127.0.0.1"};
    size_t n = gw_bosh_sessions_count(F.bs);
    CHECK(gw_bosh_sessions_prebind(F.bs, &req, on_prebound, &t, &p) == GW_EINVAL);
    req.jid = "alice@" DOMAIN;
    req.password = NULL;
    CHECK(gw_bosh_sessions_prebind(F.bs, &req, on_prebound, &t, &p) == GW_EINVAL);
    struct gw_prebind_req vis = {.visitor = true, .peer = "127.0.0.1"}; /* no visitors.domain */
    CHECK(gw_bosh_sessions_prebind(F.bs, &vis, on_prebound, &t, &p) == GW_EINVAL);
    req.password = "secret";
    unsigned max = F.cfg.max_sessions;
    F.cfg.max_sessions = (unsigned)gw_sessions_count(F.ctx.sessions);
    CHECK(gw_bosh_sessions_prebind(F.bs, &req, on_prebound, &t, &p) == GW_ELIMIT);
    F.cfg.max_sessions = max;
    F.ctx.draining = true;
    CHECK(gw_bosh_sessions_prebind(F.bs, &req, on_prebound, &t, &p) == GW_ECLOSED);
    F.ctx.draining = false;
    CHECK(gw_bosh_sessions_count(F.bs) == n);
    run_for(50);
    CHECK(!t.called);

    F.srv.refuse_auth = true;
    CHECK(prebind(&t, "alice@" DOMAIN, "wrong", false));
    CHECK(t.status != 0 && t.cond == GW_COND_not_authorized && t.times == 1 && !t.sid[0]);
    F.srv.refuse_auth = false;
    CHECK(prebind(&t, "alice@down.example", "secret", false));
    CHECK(t.status != 0 && t.cond == GW_COND_remote_connection_failed);
    run_for(50);
    CHECK(gw_bosh_sessions_count(F.bs) == n);
}

/* A prebind that is never bound ends at limits.auth_timeout (policy-violation). */
static void test_prebind_auth_timeout(void)
{
    struct told t;
    unsigned auth_timeout = F.cfg.auth_timeout;
    F.cfg.auth_timeout = 1;
    CHECK(prebind(&t, "alice@" DOMAIN "/silent", "secret", false)); /* never bound */
    CHECK(t.status == GW_ELIMIT && t.cond == GW_COND_policy_violation);
    F.cfg.auth_timeout = auth_timeout;
    run_for(50);
    CHECK(gw_bosh_sessions_count(F.bs) == 0 && gw_sessions_count(F.ctx.sessions) == 0);
}

/* Is there a core session with this sid? */
static void find_sid(void *ud, const struct gw_session_info *info)
{
    const char **sid = ud;
    if (*sid && strcmp(info->sid, *sid) == 0)
        *sid = NULL;
}

static bool core_alive(const char *sid)
{
    const char *want = sid;
    gw_sessions_foreach(F.ctx.sessions, find_sid, &want);
    return want == NULL;
}

/* A prebind nobody attaches to ends after inactivity, upstream and all. */
static void test_prebind_unused(void)
{
    struct told t;
    unsigned h, e;
    CHECK(prebind(&t, "alice@" DOMAIN, "secret", false) && t.status == 0);
    CHECK(gw_bosh_sessions_requests(F.bs, t.sid, &h, &e) && h == 0 && e == 0 && core_alive(t.sid));
    run_for(700);
    CHECK(gw_bosh_sessions_requests(F.bs, t.sid, &h, &e)); /* bosh.inactivity is 1 s here */
    run_for(800);
    CHECK(!gw_bosh_sessions_requests(F.bs, t.sid, &h, &e) && !core_alive(t.sid));
    struct bosh s;
    attached(&s, &t, 33);
    struct conn *c = next(&s, NULL, NULL);
    CHECK(c->ready && take(c) && is_terminate(c, "item-not-found"));
    drop(c);
}

/* A cancelled prebind: never told, its session gone at once. */
static void test_prebind_cancel(void)
{
    struct told t = {0};
    struct gw_prebind *p = NULL;
    struct gw_prebind_req req = {.jid = "alice@" DOMAIN, .password = "secret", .peer = "127.0.0.1"};
    size_t n = gw_bosh_sessions_count(F.bs), m = gw_sessions_count(F.ctx.sessions);
    CHECK(gw_bosh_sessions_prebind(F.bs, &req, on_prebound, &t, &p) == 0);
    CHECK(gw_bosh_sessions_count(F.bs) == n + 1);
    gw_prebind_cancel(p);
    CHECK(gw_bosh_sessions_count(F.bs) == n && gw_sessions_count(F.ctx.sessions) == m);
    run_for(300);
    CHECK(!t.called);
}

/* ---- setup ---- */

static void close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* A port nobody listens on. */
static int closed_port(void)
{
    uv_tcp_t t;
    struct sockaddr_in a, got;
    int len = sizeof(got);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&F.loop, &t);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&F.loop, UV_RUN_NOWAIT);
    return ntohs(got.sin_port);
}

static int setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code, as in main.c */
    uv_loop_init(&F.loop);
    uv_timer_init(&F.loop, &F.tick);
    uv_timer_start(&F.tick, on_tick, 5, 5);
    if (xserver_start(&F.srv, &F.loop) != 0)
        return -1;
    gw_config_defaults(&F.cfg);
    F.cfg.has_default_upstream = true;
    snprintf(F.cfg.upstream.addr.host, sizeof(F.cfg.upstream.addr.host), "127.0.0.1");
    F.cfg.upstream.addr.port = (uint16_t)F.srv.port;
    F.cfg.upstream.tls = GW_UPSTREAM_TLS_OFF;
    F.cfg.n_upstream_map = 1;
    snprintf(F.cfg.upstream_map[0].domain, sizeof(F.cfg.upstream_map[0].domain), "down.example");
    snprintf(F.cfg.upstream_map[0].addr.host, sizeof(F.cfg.upstream_map[0].addr.host), "127.0.0.1");
    F.cfg.upstream_map[0].addr.port = (uint16_t)closed_port();
    F.cfg.upstream_map[0].tls = GW_UPSTREAM_TLS_OFF;
    F.cfg.bosh_inactivity = 1; /* below the configuration's bound: seconds are test time */
    F.cfg.bosh_max_pause = 120;
    F.cfg.bosh_polling = 0;
    F.cfg.connect_timeout = 2;
    F.cfg.http_write_timeout = 1;
    F.cfg.send_queue = 8192;
    F.cfg.log_level = GW_LOG_WARN;
    F.ctx.loop = &F.loop;
    F.ctx.cfg = &F.cfg;
    F.ctx.log.level = getenv("XMPPGW_TEST_DEBUG") ? GW_LOG_DEBUG : GW_LOG_ERROR;
    F.ctx.read_buf = malloc(GW_CTX_READ_BUF);
    F.ctx.tls_buf = malloc(GW_CTX_TLS_BUF);
    F.ctx.sessions = gw_sessions_new(&F.ctx);
    F.bs = gw_bosh_sessions_new(&F.ctx, &fake_ops);
    return F.ctx.read_buf && F.ctx.tls_buf && F.ctx.sessions && F.bs ? 0 : -1;
}

static void teardown(void)
{
    gw_bosh_sessions_free(F.bs);
    F.bs = NULL;
    run_for(50);
    gw_sessions_free(F.ctx.sessions);
    F.ctx.sessions = NULL;
    /* Upstreams close themselves (bounded by their own timer); then the server's side goes. */
    run_for(300);
    uv_close((uv_handle_t *)&F.tick, NULL);
    uv_close((uv_handle_t *)&F.srv.listener, NULL);
    for (struct xconn *c = F.srv.conns; c; c = c->next)
        xconn_close(c);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    uv_walk(&F.loop, close_walk, NULL);
    uv_run(&F.loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&F.loop) == 0);
    free(F.ctx.read_buf);
    free(F.ctx.tls_buf);
}

int main(void)
{
    if (setup() != 0) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    test_prebind_auth_timeout(); /* first: the unbound sessions' deadlines are checked in order */
    test_creation();
    test_refused();
    test_hold_and_wait();
    test_early_and_window();
    test_old_rid_and_overactivity();
    test_pause();
    test_inactivity();
    test_terminate();
    test_tombstone();
    test_keys();
    test_restart();
    test_back_pressure();
    test_order_of_answers();
    test_abandoned_creation();
    test_upstream_down();
    test_write_deadline();
    test_early_deadline();
    test_replay_window();
    test_resent_lost_request();
    test_creation_stream_error();
    test_stream_namespace_child();
    test_stanza_past_limit();
    test_prebind_account();
    test_prebind_visitor();
    test_prebind_refused();
    test_prebind_unused();
    test_prebind_cancel();
    test_shutdown();
    teardown();
    return CHECK_SUMMARY();
}
