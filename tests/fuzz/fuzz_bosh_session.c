/* Fuzz target for the BOSH sessions (gateway/web/bosh_session.c): each input creates one BOSH
 * session (its core session talks to a tiny XMPP server on loopback inside this process, upstream
 * TLS off), then plays a sequence of requests read from the input (rids next, ahead, outside and
 * repeated, keys right and wrong, ack, pause, restart, terminate, stanzas, several connections),
 * browsers giving up requests, answers taken, loop turns, and time passing (from a second, so that
 * `wait`, early requests' deadlines and http.write_timeout (1 s here) go by, to two minutes, past
 * bosh.inactivity, limits.auth_timeout and the longest pause). After every step the sessions'
 * invariants must hold (gw_bosh_sessions_check(): held requests within hold, held, early and
 * replayed requests within `requests`, every parked request with a deadline, no session without a
 * pending deadline, the timer armed for it), every request told "ready" must have an answer, and no
 * request is told anything after it was killed or closed. No lws.
 *
 * Time is virtual: this file defines clock_gettime(), which the dynamic linker gives libuv in place
 * of libc's, and adds `skew_ms` to the monotonic clocks. Letting two minutes pass is a jump of the
 * skew to each next timer's due time and one loop turn there, so an input costs what its steps
 * cost, not the seconds it lets pass. */
#include <dlfcn.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "core/ctx.h"
#include "session/session.h"
#include "web/bosh_proto.h"
#include "web/bosh_session.h"

#define DOMAIN "example.com"
#define MAX_CONNS 16 /* requests outstanding at once in one input */
#define MAX_OPS 64   /* steps of one input */
#define CHAIN 80     /* keys in the chain (more than MAX_OPS) */

/* ---- the virtual clock ---- */

static uint64_t skew_ms; /* added to CLOCK_MONOTONIC and CLOCK_MONOTONIC_COARSE; only grows */

int clock_gettime(clockid_t id, struct timespec *ts)
{
    static int (*real)(clockid_t, struct timespec *);
    if (!real)
        real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real ? real(id, ts) : (int)syscall(SYS_clock_gettime, id, ts);
    if (rc == 0 && skew_ms && (id == CLOCK_MONOTONIC || id == CLOCK_MONOTONIC_COARSE)) {
        uint64_t ns = (uint64_t)ts->tv_nsec + skew_ms % 1000 * 1000000;
        ts->tv_sec += (time_t)(skew_ms / 1000 + ns / 1000000000);
        ts->tv_nsec = (long)(ns % 1000000000);
    }
    return rc;
}

/* ---- a tiny XMPP server: features for every stream header, an echo for every message ---- */

struct xconn {
    uv_tcp_t tcp;       /* the gateway's upstream connection */
    char buf[16384];    /* what came, not yet looked at */
    size_t len;         /* bytes in buf */
    bool closing;       /* uv_close called */
    struct xconn *next; /* on the open list */
};

static uv_loop_t loop;
static uv_tcp_t listener;
static struct xconn *xconns;

static void xclosed(uv_handle_t *h)
{
    struct xconn *c = h->data, **p = &xconns;
    while (*p && *p != c)
        p = &(*p)->next;
    if (*p)
        *p = c->next;
    free(c);
}

static void xwritten(uv_write_t *w, int status)
{
    free(w);
}

static void xsend(struct xconn *c, const char *s)
{
    size_t n = strlen(s);
    uv_write_t *w = malloc(sizeof(*w) + n);
    if (!w)
        abort();
    memcpy(w + 1, s, n);
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
    if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, xwritten) != 0)
        free(w);
}

static void xalloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct xconn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len - 1));
}

/* Whole markers only: what is cut at the end of a read waits for the next. */
static void xread(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct xconn *c = s->data;
    if (n < 0 || c->len + (size_t)n >= sizeof(c->buf) - 1) {
        if (!c->closing)
            uv_close((uv_handle_t *)&c->tcp, xclosed);
        c->closing = true;
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    char *p = c->buf, *q;
    for (;;) {
        char *h = strstr(p, "<stream:stream"), *m = strstr(p, "</message>");
        if (h && (!m || h < m) && (q = strchr(h, '>')) != NULL) {
            xsend(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                     "xmlns:stream='http://etherx.jabber.org/streams' id='i' from='" DOMAIN
                     "' version='1.0'><stream:features><mechanisms "
                     "xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
                     "</mechanisms></stream:features>");
            p = q + 1;
        } else if (m) {
            xsend(c, "<message from='e@" DOMAIN "'><body>echo</body></message>");
            p = m + 10;
        } else {
            break;
        }
    }
    size_t keep = strlen(p);
    memmove(c->buf, p, keep + 1);
    c->len = keep;
}

static void xaccept(uv_stream_t *l, int status)
{
    struct xconn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    uv_tcp_init(&loop, &c->tcp);
    c->tcp.data = c;
    c->next = xconns;
    xconns = c;
    if (status < 0 || uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, xclosed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, xalloc, xread);
}

/* ---- the fake adapter ---- */

struct conn {
    struct gw_bosh_req *r; /* NULL once answered, closed or killed */
    bool ready;            /* ready() came */
    bool done;             /* answered, closed or killed: nothing may reach it any more */
};

static struct conn conns[MAX_CONNS + 2];

static void fake_ready(void *p)
{
    struct conn *c = p;
    if (c->done)
        abort();
    c->ready = true;
}

static void fake_kill(void *p)
{
    struct conn *c = p;
    if (c->done)
        abort();
    c->done = true;
    c->r = NULL;
}

static const struct gw_bosh_conn_ops ops = {.ready = fake_ready, .kill = fake_kill};

/* ---- the fixture, made once ---- */

static struct gw_config cfg;
static struct gw_ctx ctx;
static uv_timer_t guard; /* wakes the loop while a creation answer is awaited */

static void on_guard(uv_timer_t *h) {}
static char keys[CHAIN][41];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error code, as in main.c */
    uv_loop_init(&loop);
    uv_timer_init(&loop, &guard);
    struct sockaddr_in a, got;
    int len = sizeof(got);
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&loop, &listener);
    if (uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&listener, 64, xaccept) != 0)
        abort();
    uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len);
    gw_config_defaults(&cfg);
    cfg.has_default_upstream = true;
    snprintf(cfg.upstream.addr.host, sizeof(cfg.upstream.addr.host), "127.0.0.1");
    cfg.upstream.addr.port = ntohs(got.sin_port);
    cfg.upstream.tls = GW_UPSTREAM_TLS_OFF;
    cfg.bosh_max_hold = 3;
    cfg.bosh_max_requests = 4;
    cfg.bosh_polling = 0;
    cfg.http_write_timeout = 1;
    ctx.loop = &loop;
    ctx.cfg = &cfg;
    ctx.log.level = GW_LOG_ERROR;
    ctx.read_buf = malloc(GW_CTX_READ_BUF);
    ctx.tls_buf = malloc(GW_CTX_TLS_BUF);
    ctx.sessions = gw_sessions_new(&ctx);
    if (!ctx.read_buf || !ctx.tls_buf || !ctx.sessions)
        abort();
    snprintf(keys[0], sizeof(keys[0]), "seed");
    for (int i = 1; i < CHAIN; i++)
        if (gw_bosh_sha1_hex(keys[i - 1], strlen(keys[i - 1]), keys[i]) != 0)
            abort();
}

static struct gw_bosh_sessions *t;

static void check(void)
{
    if (gw_bosh_sessions_check(t) != 0)
        abort();
}

static struct conn *post(unsigned slot, int fd, const char *body)
{
    struct conn *c = &conns[slot];
    memset(c, 0, sizeof(*c));
    c->r = gw_bosh_req_new(t, c, fd, "127.0.0.1");
    if (!c->r)
        abort();
    gw_bosh_req_submit(c->r, body, strlen(body));
    check();
    return c;
}

/* What WRITEABLE does; a request told ready must have its answer. */
static void take(struct conn *c)
{
    struct gw_bosh_answer a;
    if (!c->r || !c->ready)
        return;
    if (gw_bosh_req_answer(c->r, &a) != 0)
        abort();
    if (a.xml && (a.len < 6 || memcmp(a.body, "<body ", 6) != 0))
        abort();
    gw_bosh_req_close(c->r);
    c->r = NULL;
    c->done = true;
    check();
}

static void give_up(struct conn *c)
{
    if (!c->r)
        return;
    gw_bosh_req_close(c->r);
    c->r = NULL;
    c->done = true;
    check();
}

/* ---- one input ---- */

struct play {
    char sid[64];           /* the session's sid */
    unsigned long long rid; /* the highest rid sent */
    int key;                /* index of the next right key, -1: no chain */
    int fd;                 /* the connection the next request goes out on */
    bool short_wait;        /* made with wait='1' rather than 60 */
};

/* Let ms of virtual time pass: jump to each next timer's due time (libuv's own view of it) and turn
 * the loop once there, checking after every turn; a loop with work pending moves 1 ms a turn. */
static void let_time_pass(uint64_t ms)
{
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + ms;
    while (uv_now(&loop) < end) {
        int next = uv_backend_timeout(&loop);
        uint64_t left = end - uv_now(&loop);
        skew_ms += next < 0 || (uint64_t)next > left ? left : next > 0 ? (uint64_t)next : 1;
        uv_run(&loop, UV_RUN_NOWAIT);
        check();
    }
}

static bool create(struct play *pl, unsigned hold, bool ack, bool chain)
{
    char body[512];
    pl->rid = 1000;
    pl->key = chain ? CHAIN - 2 : -1;
    snprintf(body, sizeof(body),
             "<body rid='%llu' to='" DOMAIN "' wait='%u' hold='%u' %s %s%s%s "
             "xmlns='http://jabber.org/protocol/httpbind'/>",
             pl->rid, pl->short_wait ? 1 : 60, hold, ack ? "ack='1'" : "", chain ? "newkey='" : "",
             chain ? keys[CHAIN - 1] : "", chain ? "'" : "");
    struct conn *c = post(MAX_CONNS, 0, body);
    /* The guard timer bounds every turn of the loop: a stuck upstream fails the input. */
    uv_update_time(&loop);
    uint64_t end = uv_now(&loop) + 5000;
    uv_timer_start(&guard, on_guard, 10, 10);
    while (!c->ready && uv_now(&loop) < end)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    if (!c->ready) {
        fprintf(stderr, "no creation answer in 5 s\n");
        abort();
    }
    struct gw_bosh_answer a;
    if (!c->ready || gw_bosh_req_answer(c->r, &a) != 0)
        return false;
    const char *p = memmem(a.body, a.len, "sid='", 5);
    bool ok = p && sscanf(p + 5, "%63[0-9a-f]", pl->sid) == 1;
    take(c);
    return ok;
}

static void step(struct play *pl, uint8_t op, uint8_t arg, unsigned *n)
{
    char attrs[256] = "", payload[128] = "", body[1024];
    unsigned long long rid = pl->rid + 1;
    switch (op % 15) {
    case 0: /* the next request, empty */
        break;
    case 1: /* with a stanza (the server echoes it) */
        snprintf(payload, sizeof(payload), "<message to='e@" DOMAIN "'><body>x</body></message>");
        break;
    case 2: /* ahead of its turn, or outside the window */
        rid = pl->rid + 1 + arg % 6;
        break;
    case 3: /* a repeat */
        rid = pl->rid > arg % 5 ? pl->rid - arg % 5 : pl->rid;
        break;
    case 4:
        snprintf(attrs, sizeof(attrs), "type='terminate'");
        break;
    case 5:
        snprintf(attrs, sizeof(attrs), "pause='%u'", arg % 200);
        break;
    case 6:
        snprintf(attrs, sizeof(attrs), "xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh'");
        break;
    case 7: /* a wrong key */
        snprintf(attrs, sizeof(attrs), "key='%s'", keys[arg % CHAIN]);
        break;
    case 8:
        give_up(&conns[arg % MAX_CONNS]);
        return;
    case 9:
        take(&conns[arg % MAX_CONNS]);
        return;
    case 10:
        uv_run(&loop, UV_RUN_NOWAIT);
        check();
        return;
    case 11:
        pl->fd = arg % 4;
        return;
    case 12:
        snprintf(attrs, sizeof(attrs), "ack='%llu'", pl->rid > arg % 3 ? pl->rid - arg % 3 : 0);
        break;
    case 14: { /* time passes: wait, early and write deadlines (1 s); inactivity, auth, pause */
        static const uint64_t spans[8] = {1100, 1400, 1700, 2000, 5000, 31000, 61000, 125000};
        let_time_pass(spans[arg % 8]);
        return;
    }
    default: /* a new key chain */
        snprintf(attrs, sizeof(attrs), "newkey='%s'", keys[CHAIN - 1]);
        break;
    }
    /* Requests with the next rid carry the next key of the chain, unless the step set one. */
    size_t al = strlen(attrs);
    if (pl->key >= 0 && rid == pl->rid + 1 && op % 15 != 7)
        snprintf(attrs + al, sizeof(attrs) - al, " key='%s'", keys[pl->key]);
    snprintf(body, sizeof(body),
             "<body rid='%llu' sid='%s' %s xmlns='http://jabber.org/protocol/httpbind'>%s</body>",
             rid, pl->sid, attrs, payload);
    unsigned slot = (*n)++ % MAX_CONNS;
    give_up(&conns[slot]); /* the slot's previous browser went away */
    (void)post(slot, pl->fd, body);
    if (rid == pl->rid + 1) {
        pl->rid = rid;
        if (op % 15 == 13)
            pl->key = CHAIN - 2; /* newkey next to key starts a new chain */
        else if (pl->key > 0)
            pl->key--;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (size < 2)
        return 0;
    t = gw_bosh_sessions_new(&ctx, &ops);
    if (!t)
        abort();
    memset(conns, 0, sizeof(conns));
    struct play pl = {.fd = 0, .short_wait = (data[1] & 4) != 0};
    if (create(&pl, data[0] % 4, data[1] & 1, data[1] & 2)) {
        unsigned n = 0;
        for (size_t i = 2; i + 1 < size && i / 2 <= MAX_OPS; i += 2)
            step(&pl, data[i], data[i + 1], &n);
        /* Every request told ready has its answer; then the browsers go. */
        for (unsigned i = 0; i < MAX_CONNS; i++)
            take(&conns[i]);
        for (unsigned i = 0; i < MAX_CONNS + 1; i++)
            give_up(&conns[i]);
    }
    gw_bosh_sessions_free(t);
    t = NULL;
    /* Let the ended sessions' upstreams and the server's side go before the next input: the
     * server closes its side when it reads the end, two turns after the gateway's close. */
    for (int i = 0; i < 20 && xconns; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
