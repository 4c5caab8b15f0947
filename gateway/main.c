/* xmppgw: wiring only. Arguments, configuration, start order, signals, the loop, the stop order. */
#include <getopt.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/ctx.h"
#include "core/log.h"
#include "session/hub.h"
#include "session/session.h"
#include "web/bosh.h"
#include "web/demo.h"
#include "web/sse.h"
#include "web/web.h"
#include "web/websocket.h"
#include "xmpp/upstream.h"

/* After the sessions ended, the time for the last words (stream errors, terminate answers,
 * close frames) to leave before the loop stops. */
#define DRAIN_FLUSH_MS 1000

static const char usage[] =
    "usage: xmppgw [--config FILE] [--listen ADDR:PORT] [--admin ADDR:PORT]\n"
    "              [--upstream HOST:PORT] [--upstream-tls off|starttls|direct]\n"
    "              [--upstream-ca FILE] [--check-config] [--version] [--help]\n"
    "\n"
    "A connection manager that gives web browsers XMPP over BOSH (XEP-0124/0206) and\n"
    "WebSocket (RFC 7395) on one HTTP port, each session its own upstream c2s stream.\n"
    "\n"
    "  --config FILE        JSON configuration (see config/README.md); flags override it\n"
    "  --listen ADDR:PORT   public HTTP/WebSocket port (default 127.0.0.1:5280)\n"
    "  --admin ADDR:PORT    admin port: /metrics, /healthz, /status (default 127.0.0.1:5281)\n"
    "  --upstream HOST:PORT send every domain to this XMPP server\n"
    "  --upstream-tls MODE  starttls (default), direct (TLS from the first byte) or off\n"
    "  --upstream-ca FILE   also trust this CA (PEM) for upstream certificates\n"
    "  --check-config       validate the configuration and exit 0 (valid) or 1;\n"
    "                       --check-config FILE is short for --config FILE --check-config\n"
    "  --version            print the version and exit\n"
    "  --help               print this help and exit\n"
    "\n"
    "Signals: SIGHUP reloads what can change live (config/README.md says which keys).\n"
    "SIGTERM or SIGINT (or POST /api/drain on the admin port) drains: /readyz answers 503 at\n"
    "once and new sessions are refused (system-shutdown) while open ones go on for drain.grace\n"
    "seconds (default 20); then a session with XEP-0198 resumption enabled is closed so that\n"
    "the client resumes it through another node (WebSocket close 1001, the upstream stream left\n"
    "resumable), every other one is told system-shutdown, and the process exits 0 about a\n"
    "second later. A second signal stops at once.\n";

struct overrides {
    const char *listen, *admin, *upstream, *upstream_tls, *upstream_ca;
};

struct app {
    struct gw_ctx ctx;
    struct gw_config *cfg;   /* the current snapshot (owned); ctx.cfg points here */
    const char *config_path; /* NULL: defaults and flags only */
    struct overrides ov;
    bool check_only; /* --check-config */
    uv_loop_t loop;
    bool loop_open;         /* uv_loop_init succeeded */
    struct gw_ws *ws;       /* RFC 7395 transport */
    struct gw_bosh *bosh;   /* XEP-0124/0206 transport */
    struct gw_hub *hub;     /* the live-updates hub; NULL unless live.jid is set */
    struct gw_sse *sse;     /* Server-Sent Events from the hub */
    struct gw_demo *demo;   /* the demo's POST /demo/publish through the hub */
    struct gw_web *web;     /* the public port (lws), serving ws and bosh */
    struct gw_admin *admin; /* the admin port (libmicrohttpd) */
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t drain_timer;
    bool signals_open; /* the signal and drain handles are initialised */
    bool stopping;     /* a drain started (signal or POST /api/drain) */
    bool signalled;    /* a SIGTERM or SIGINT came: the next one stops at once */
    bool grace_over;   /* the drain's sessions have ended: the stop is DRAIN_FLUSH_MS away */
    unsigned grace_s;  /* the drain's grace, as drain.grace was when it started */
};

static int apply_overrides(struct gw_config *cfg, const struct overrides *ov, char *err,
                           size_t errlen)
{
    if (ov->listen && gw_config_parse_addr(ov->listen, &cfg->listen) != 0) {
        snprintf(err, errlen, "--listen '%s': expected ADDR:PORT", ov->listen);
        return GW_EINVAL;
    }
    if (ov->admin && gw_config_parse_addr(ov->admin, &cfg->admin_listen) != 0) {
        snprintf(err, errlen, "--admin '%s': expected ADDR:PORT", ov->admin);
        return GW_EINVAL;
    }
    if (ov->upstream) {
        if (gw_config_parse_addr(ov->upstream, &cfg->upstream.addr) != 0) {
            snprintf(err, errlen, "--upstream '%s': expected HOST:PORT", ov->upstream);
            return GW_EINVAL;
        }
        cfg->has_default_upstream = true;
        cfg->upstream.domain[0] = '\0';
        /* "--upstream sends every domain to that server": the per-domain map gives way. */
        cfg->n_upstream_map = 0;
    }
    if (ov->upstream_tls) {
        enum gw_upstream_tls t;
        if (gw_config_parse_tls(ov->upstream_tls, &t) != 0) {
            snprintf(err, errlen, "--upstream-tls '%s': expected off, starttls or direct",
                     ov->upstream_tls);
            return GW_EINVAL;
        }
        cfg->upstream.tls = t;
        for (unsigned i = 0; i < cfg->n_upstream_map; i++)
            cfg->upstream_map[i].tls = t;
    }
    if (ov->upstream_ca) {
        if (strlen(ov->upstream_ca) >= sizeof(cfg->upstream_ca)) {
            snprintf(err, errlen, "--upstream-ca: path too long");
            return GW_EINVAL;
        }
        snprintf(cfg->upstream_ca, sizeof(cfg->upstream_ca), "%s", ov->upstream_ca);
    }
    return 0;
}

/* A whole new snapshot: defaults, the file, the command line, validated. NULL (and err) if not. */
static struct gw_config *load_config(const struct app *app, char *err, size_t errlen)
{
    struct gw_config *cfg = malloc(sizeof(*cfg));
    if (!cfg) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    gw_config_defaults(cfg);
    if ((app->config_path && gw_config_load(cfg, app->config_path, err, errlen) != 0) ||
        apply_overrides(cfg, &app->ov, err, errlen) != 0 ||
        gw_config_validate(cfg, err, errlen) != 0) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

/* ---- signals ---- */

static void close_cb_noop(uv_handle_t *h) {}

/* Leave the loop; main() destroys the lws context outside any lws callback (foreign-loop rule) and
 * then runs the loop until every handle has closed. */
static void close_signals(struct app *app)
{
    if (!app->signals_open)
        return;
    app->signals_open = false;
    uv_timer_stop(&app->drain_timer);
    uv_close((uv_handle_t *)&app->drain_timer, close_cb_noop);
    uv_close((uv_handle_t *)&app->sig_term, close_cb_noop);
    uv_close((uv_handle_t *)&app->sig_int, close_cb_noop);
    uv_close((uv_handle_t *)&app->sig_hup, close_cb_noop);
}

static void stop_now(struct app *app)
{
    close_signals(app);
    uv_stop(app->ctx.loop);
}

static void on_drained(uv_timer_t *t)
{
    stop_now(t->data);
}

/* The grace is over: every session ends (resumable ones so that their clients resume
 * elsewhere), then the last words get DRAIN_FLUSH_MS to leave. */
static void on_grace_over(uv_timer_t *t)
{
    struct app *app = t->data;
    size_t n = gw_sessions_count(app->ctx.sessions);
    /* First the port: the clients told below reconnect through the proxy at once, and a connect
     * refused here goes to another node instead of to this one's refusal. */
    app->grace_over = true;
    gw_web_stop_listening(app->web);
    size_t resumable = gw_sessions_end_drained(app->ctx.sessions);
    GW_INFO(&app->ctx.log, NULL, NULL,
            "drain: grace of %u s over: %zu sessions ended (%zu left resumable for XEP-0198, "
            "%zu told system-shutdown); stopping",
            app->grace_s, n, resumable, n - resumable);
    uv_timer_start(&app->drain_timer, on_drained, DRAIN_FLUSH_MS, 0);
}

/* Start a drain (once; a later call changes nothing): /readyz fails and new sessions are refused
 * at once, open ones go on for drain.grace seconds. */
static void drain_start(struct app *app, const char *why)
{
    if (app->stopping)
        return;
    app->stopping = true;
    app->ctx.draining = true;
    app->grace_s = app->cfg->drain_grace;
    const uint64_t *open = app->ctx.metrics.sessions_open;
    GW_INFO(&app->ctx.log, NULL, NULL,
            "drain started (%s): %zu sessions (websocket %llu, bosh %llu, internal %llu) end in "
            "%u s",
            why, gw_sessions_count(app->ctx.sessions), (unsigned long long)open[GW_TRANSPORT_WS],
            (unsigned long long)open[GW_TRANSPORT_BOSH],
            (unsigned long long)open[GW_TRANSPORT_INTERNAL], app->grace_s);
    uv_timer_start(&app->drain_timer, on_grace_over, (uint64_t)app->grace_s * 1000, 0);
}

/* POST /api/drain: start the drain (a second one is harmless) and say what it is. */
static void drain_by_api(void *ud, struct gw_admin_drain *out)
{
    struct app *app = ud;
    drain_start(app, "POST /api/drain");
    out->grace_s = app->grace_s;
    out->sessions = gw_sessions_count(app->ctx.sessions);
}

static void on_term(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    if (app->grace_over && signum == SIGINT) {
        /* lws's own, once its last connection is gone (gw_web_stop_listening): the stop comes
         * within DRAIN_FLUSH_MS anyway */
        GW_DEBUG(&app->ctx.log, NULL, NULL, "SIGINT after the drain: stopping as planned");
        return;
    }
    if (app->signalled) {
        GW_WARN(&app->ctx.log, NULL, NULL, "second signal: stopping at once");
        stop_now(app);
        return;
    }
    app->signalled = true;
    drain_start(app, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* SIGHUP: a whole new snapshot replaces the running one; keys that need a restart keep their
 * running values (the key table says which). A bad file changes nothing. No module keeps a pointer
 * into a snapshot past its callback (upstreams copy their entry, the public port copies what lws
 * keeps), so the old one goes at once. */
static void on_hup(uv_signal_t *h, int signum)
{
    struct app *app = h->data;
    char err[1024], kept[512];
    if (!app->config_path) {
        GW_INFO(&app->ctx.log, NULL, NULL, "SIGHUP: no configuration file to reload");
        return;
    }
    struct gw_config *next = load_config(app, err, sizeof(err));
    if (!next) {
        GW_ERROR(&app->ctx.log, NULL, NULL, "SIGHUP: configuration not reloaded: %s", err);
        return;
    }
    int n_kept = gw_config_reload_merge(next, app->cfg, kept, sizeof(kept));
    if (n_kept > 0)
        GW_WARN(&app->ctx.log, NULL, NULL, "SIGHUP: %s need%s a restart; kept", kept,
                n_kept == 1 ? "s" : "");
    struct gw_config *old = app->cfg;
    app->cfg = next;
    app->ctx.cfg = next;
    app->ctx.log.level = next->log_level;
    (void)gw_log_format_parse(next->log_format, &app->ctx.log.format);
    free(old);
    GW_INFO(&app->ctx.log, NULL, NULL, "SIGHUP: configuration reloaded from %s", app->config_path);
}

/* ---- start and stop ---- */

/* Parse the command line into app. Returns -1 to go on, else the exit code. */
static int parse_args(struct app *app, int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"admin", required_argument, NULL, 'a'},
        {"upstream", required_argument, NULL, 'u'},
        {"upstream-tls", required_argument, NULL, 't'},
        {"upstream-ca", required_argument, NULL, 'C'},
        {"check-config", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            app->config_path = optarg;
            break;
        case 'l':
            app->ov.listen = optarg;
            break;
        case 'a':
            app->ov.admin = optarg;
            break;
        case 'u':
            app->ov.upstream = optarg;
            break;
        case 't':
            app->ov.upstream_tls = optarg;
            break;
        case 'C':
            app->ov.upstream_ca = optarg;
            break;
        case 'k':
            app->check_only = true;
            break;
        case 'V':
            printf("xmppgw %s\n", XMPPGW_VERSION);
            return 0;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    /* "--check-config FILE" is accepted as well as "--config FILE --check-config". */
    if (app->check_only && !app->config_path && optind == argc - 1)
        app->config_path = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "xmppgw: unexpected argument '%s'\n%s", argv[optind], usage);
        return 2;
    }
    return -1;
}

/* --check-config: the CA file is part of the configuration, so it must load too. */
static int check_config(const struct app *app)
{
    char err[1024];
    struct ssl_ctx_st *tls = gw_upstream_tls_ctx_new(app->cfg->upstream_ca, err, sizeof(err));
    if (tls)
        printf("xmppgw: configuration OK%s%s\n", app->config_path ? ": " : "",
               app->config_path ? app->config_path : "");
    else
        fprintf(stderr, "xmppgw: %s\n", err);
    SSL_CTX_free(tls);
    return tls ? 0 : 1;
}

static void start_signals(struct app *app)
{
    uv_loop_t *loop = app->ctx.loop;
    uv_signal_init(loop, &app->sig_term);
    uv_signal_init(loop, &app->sig_int);
    uv_signal_init(loop, &app->sig_hup);
    uv_timer_init(loop, &app->drain_timer);
    app->sig_term.data = app->sig_int.data = app->sig_hup.data = app->drain_timer.data = app;
    uv_signal_start(&app->sig_term, on_term, SIGTERM);
    uv_signal_start(&app->sig_int, on_term, SIGINT);
    uv_signal_start(&app->sig_hup, on_hup, SIGHUP);
    app->signals_open = true;
}

/* Everything in start order: loop, shared buffers, upstream TLS, the session table, the
 * transports, the public port, the admin port, signals. 0, or -1 with one line in err. */
static int start(struct app *app, char *err, size_t errlen)
{
    struct gw_ctx *ctx = &app->ctx;
    ctx->cfg = app->cfg;
    ctx->log.level = app->cfg->log_level;
    (void)gw_log_format_parse(app->cfg->log_format, &ctx->log.format);
    if (uv_loop_init(&app->loop) != 0) {
        snprintf(err, errlen, "cannot create the event loop");
        return GW_EIO;
    }
    app->loop_open = true;
    ctx->loop = &app->loop;
    ctx->started_ms = uv_now(ctx->loop);
    ctx->read_buf = malloc(GW_CTX_READ_BUF);
    ctx->tls_buf = malloc(GW_CTX_TLS_BUF);
    if (!ctx->read_buf || !ctx->tls_buf) {
        snprintf(err, errlen, "out of memory");
        return GW_EIO;
    }
    ctx->upstream_tls = gw_upstream_tls_ctx_new(app->cfg->upstream_ca, err, errlen);
    if (!ctx->upstream_tls)
        return GW_EIO;
    ctx->up_batch = gw_upstream_batch_new(ctx);
    ctx->sessions = gw_sessions_new(ctx);
    if (ctx->sessions) { /* log lines with a sid name its client's address */
        ctx->log.peer_of = gw_sessions_peer_of;
        ctx->log.peer_ud = ctx->sessions;
    }
    app->ws = gw_ws_new(ctx);
    app->bosh = gw_bosh_new(ctx);
    if (!ctx->sessions || !app->ws || !app->bosh) {
        snprintf(err, errlen, "out of memory");
        return GW_EIO;
    }
    if (app->cfg->live_jid[0] && !(app->hub = gw_hub_new(ctx, err, errlen)))
        return GW_EIO;
    app->demo = gw_demo_new(ctx, app->hub);
    if (!(app->sse = gw_sse_new(ctx, app->hub)) || !app->demo) {
        snprintf(err, errlen, "out of memory");
        return GW_EIO;
    }
    struct gw_web_transports tr = {
        .ws = app->ws, .bosh = app->bosh, .sse = app->sse, .demo = app->demo};
    app->web = gw_web_start(ctx, &tr, err, errlen);
    if (!app->web)
        return GW_EIO;
    struct gw_admin_services svc = {
        .hub = app->hub, .bosh = app->bosh, .drain = drain_by_api, .drain_ud = app};
    app->admin = gw_admin_start(ctx, &svc, err, errlen);
    if (!app->admin)
        return GW_EIO;
    start_signals(app);
    return 0;
}

/* Whatever was started is stopped, in reverse order; the loop runs until every handle closed.
 * The lws context goes before the transports: its CLOSED callbacks still reach them. */
static void stop(struct app *app)
{
    struct gw_ctx *ctx = &app->ctx;
    gw_admin_free(app->admin);
    gw_web_free(app->web);
    gw_sse_free(app->sse);
    gw_demo_free(app->demo);
    gw_hub_free(app->hub);
    gw_bosh_free(app->bosh);
    gw_ws_free(app->ws);
    ctx->log.peer_of = NULL;
    gw_sessions_free(ctx->sessions);
    gw_upstream_batch_free(ctx);
    close_signals(app);
    if (app->loop_open) {
        uv_run(ctx->loop, UV_RUN_DEFAULT);
        if (uv_loop_close(ctx->loop) != 0)
            GW_WARN(&ctx->log, NULL, NULL, "event loop closed with handles still open");
    }
    SSL_CTX_free(ctx->upstream_tls);
    free(ctx->read_buf);
    free(ctx->tls_buf);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    struct app *app = calloc(1, sizeof(*app));
    if (!app) {
        fprintf(stderr, "xmppgw: out of memory\n");
        return 1;
    }
    int rc = parse_args(app, argc, argv);
    char err[1024];
    if (rc < 0 && !(app->cfg = load_config(app, err, sizeof(err)))) {
        fprintf(stderr, "xmppgw: %s\n", err);
        rc = 1;
    }
    if (rc < 0 && app->check_only)
        rc = check_config(app);
    if (rc < 0) {
        signal(SIGPIPE, SIG_IGN);
        if (start(app, err, sizeof(err)) == 0) {
            GW_INFO(&app->ctx.log, NULL, NULL, "xmppgw %s running; admin on %s:%u", XMPPGW_VERSION,
                    app->cfg->admin_listen.host, gw_admin_port(app->admin));
            uv_run(app->ctx.loop, UV_RUN_DEFAULT);
            GW_INFO(&app->ctx.log, NULL, NULL, "stopped");
            rc = 0;
        } else {
            fprintf(stderr, "xmppgw: %s\n", err);
            rc = 1;
        }
        stop(app);
    }
    free(app->cfg);
    free(app);
    return rc;
}
