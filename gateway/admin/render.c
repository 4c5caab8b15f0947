/* Bodies of the admin endpoints: Prometheus text for /metrics, JSON (jansson) for /status and
 * /api/sessions. Owns no state: reads the context's counters, the hub's publish counts and the
 * session table's read-only view, writes into the caller's bounded buffer. Calls: session
 * (count, foreach), session/hub (publish counts), config, core; OpenSSL (SHA-256 of sids). */
#include "admin/admin.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <jansson.h>
#include <openssl/evp.h>
#include "config/config.h"
#include "session/hub.h"
#include "session/session.h"

#ifndef XMPPGW_VERSION
#define XMPPGW_VERSION "unknown"
#endif

/* One session entry serialized on its own before it joins the list; a JID is at most 3071 bytes,
 * so this is far more than any real entry needs. */
#define ENTRY_MAX (32u * 1024u)
/* Room kept at the end of the sessions body for the closing fields. */
#define SESSIONS_TAIL 256u

static uint64_t get_uptime(const struct gw_ctx *ctx)
{
    uint64_t now = uv_now(ctx->loop);
    return now > ctx->started_ms ? (now - ctx->started_ms) / 1000 : 0;
}

/* Sessions in the table by transport and state: one walk, no allocation. */
struct census {
    size_t by_transport[GW_TRANSPORT_COUNT];
    size_t by_state[GW_TRANSPORT_COUNT][GW_SESSION_STATE_COUNT];
};

static void count_session(void *ud, const struct gw_session_info *info)
{
    struct census *c = ud;
    if ((unsigned)info->transport >= GW_TRANSPORT_COUNT)
        return;
    c->by_transport[info->transport]++;
    if ((unsigned)info->state < GW_SESSION_STATE_COUNT)
        c->by_state[info->transport][info->state]++;
}

static void take_census(const struct gw_ctx *ctx, struct census *c)
{
    memset(c, 0, sizeof(*c));
    if (ctx->sessions)
        gw_sessions_foreach(ctx->sessions, count_session, c);
}

/* ---- the process, from /proc (Linux) ---- */

/* Resident set size in bytes from /proc/self/statm (its second field, in pages); 0 if unknown. */
static uint64_t process_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long long size = 0, resident = 0;
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return n == 2 && page > 0 ? (uint64_t)resident * (uint64_t)page : 0;
}

/* Descriptors open now: the entries of /proc/self/fd, less the one reading it. */
static uint64_t process_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    uint64_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

static uint64_t process_max_fds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    return (uint64_t)rl.rlim_cur;
}

/* ---- Prometheus text format 0.0.4 ---- */

/* Appends stop at the first error; the caller reads rc once at the end. */
struct text {
    struct gw_buf *out;
    int rc;
};

static void put_line(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_line(struct text *t, const char *fmt, ...)
{
    if (t->rc)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        t->rc = GW_ELIMIT;
        return;
    }
    t->rc = gw_buf_append(t->out, line, (size_t)n);
}

static void put_family(struct text *t, const char *name, const char *type, const char *help)
{
    put_line(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void put_plain(struct text *t, const char *name, uint64_t v)
{
    put_line(t, "%s %" PRIu64 "\n", name, v);
}

/* Label values here are our own names, but the version comes from the build: escape it the way
 * the format asks (backslash, double quote, line feed) rather than trust it. */
static void put_labeled(struct text *t, const char *name, const char *label, const char *value,
                        uint64_t v)
{
    char esc[256];
    size_t n = 0;
    for (const char *p = value; *p && n + 3 < sizeof(esc); p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            esc[n++] = '\\';
            esc[n++] = *p == '\n' ? (char)'n' : *p;
        } else {
            esc[n++] = *p;
        }
    }
    esc[n] = '\0';
    put_line(t, "%s{%s=\"%s\"} %" PRIu64 "\n", name, label, esc, v);
}

/* Two labels: transport and a second one (state, condition). */
static void put_two(struct text *t, const char *name, const char *tr, const char *label,
                    const char *value, uint64_t v)
{
    put_line(t, "%s{transport=\"%s\",%s=\"%s\"} %" PRIu64 "\n", name, tr, label, value, v);
}

static void put_sessions_by_state(const struct gw_ctx *ctx, struct text *t)
{
    struct census c;
    take_census(ctx, &c);
    put_family(t, "xmppgw_sessions_by_state", "gauge",
               "Sessions in the table now, by transport and state.");
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++)
        for (int st = 0; st < GW_SESSION_STATE_COUNT; st++)
            if (st != GW_SESSION_CLOSED) /* a closed session is out of the table at once */
                put_two(t, "xmppgw_sessions_by_state", gw_transport_name((enum gw_transport)tr),
                        "state", gw_session_state_name((enum gw_session_state)st),
                        c.by_state[tr][st]);
}

/* Each condition where its transport may send it: BOSH terminates apart from the stream errors
 * of WebSocket (stream_errors counts both). */
static void put_conditions(const struct gw_metrics *m, struct text *t)
{
    put_family(t, "xmppgw_conditions_total", "counter",
               "Stream errors (websocket) and terminate conditions (bosh) sent to clients.");
    for (int c = 0; c < GW_COND_COUNT; c++) {
        const char *name = gw_condition_name((enum gw_condition)c);
        uint64_t bosh = m->bosh_terminates[c];
        if (gw_condition_is_stream((enum gw_condition)c))
            put_two(t, "xmppgw_conditions_total", "websocket", "condition", name,
                    m->stream_errors[c] > bosh ? m->stream_errors[c] - bosh : 0);
        if (gw_condition_is_bosh((enum gw_condition)c))
            put_two(t, "xmppgw_conditions_total", "bosh", "condition", name, bosh);
    }
}

static void put_lag(const struct gw_metrics *m, struct text *t)
{
    static const char name[] = "xmppgw_event_loop_lag_seconds";
    put_family(t, name, "histogram", "How late a 250 ms timer on the event loop fires.");
    uint64_t cum = 0;
    for (int i = 0; i < GW_LAG_BUCKETS; i++) {
        cum += m->lag_buckets[i];
        uint64_t us = gw_lag_bounds_us[i];
        put_line(t, "%s_bucket{le=\"%" PRIu64 ".%06" PRIu64 "\"} %" PRIu64 "\n", name,
                 us / 1000000u, us % 1000000u, cum);
    }
    put_line(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, m->lag_count);
    put_line(t, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name, m->lag_sum_us / 1000000u,
             m->lag_sum_us % 1000000u);
    put_line(t, "%s_count %" PRIu64 "\n", name, m->lag_count);
}

/* The families that are not plain counters of the context. */
static void put_more(const struct gw_ctx *ctx, struct text *t)
{
    const struct gw_metrics *m = &ctx->metrics;
    put_sessions_by_state(ctx, t);
    put_conditions(m, t);
    put_family(t, "xmppgw_bosh_held_requests", "gauge", "BOSH requests held open now.");
    put_plain(t, "xmppgw_bosh_held_requests", m->bosh_held);
    put_family(t, "xmppgw_sse_viewers", "gauge", "Live-update (/events) streams open now.");
    put_plain(t, "xmppgw_sse_viewers", m->sse_viewers);
    put_lag(m, t);
    put_family(t, "xmppgw_process_resident_memory_bytes", "gauge",
               "Resident memory of the process (/proc/self/statm).");
    put_plain(t, "xmppgw_process_resident_memory_bytes", process_rss());
    put_family(t, "xmppgw_process_open_fds", "gauge", "File descriptors open now.");
    put_plain(t, "xmppgw_process_open_fds", process_fds());
    put_family(t, "xmppgw_process_max_fds", "gauge",
               "The descriptor limit (RLIMIT_NOFILE soft limit; 0 when unlimited).");
    put_plain(t, "xmppgw_process_max_fds", process_max_fds());
}

/* The upstream connections' families. */
static void put_upstream(const struct gw_metrics *m, struct text *t)
{
    put_family(t, "xmppgw_upstream_writes_total", "counter",
               "Writes to upstream sockets: stanzas that arrive in one loop turn leave in one.");
    put_plain(t, "xmppgw_upstream_writes_total", m->upstream_writes);

    put_family(t, "xmppgw_upstream_connects_total", "counter",
               "Connection attempts to upstream XMPP servers.");
    put_plain(t, "xmppgw_upstream_connects_total", m->upstream_connects);

    put_family(t, "xmppgw_upstream_connected_total", "counter",
               "Upstream streams that reached stream features.");
    put_plain(t, "xmppgw_upstream_connected_total", m->upstream_connected);

    put_family(t, "xmppgw_upstream_failures_total", "counter",
               "Upstream failures: connect or stream (connect), TLS handshake or verification "
               "(tls).");
    put_labeled(t, "xmppgw_upstream_failures_total", "kind", "connect", m->upstream_failures);
    put_labeled(t, "xmppgw_upstream_failures_total", "kind", "tls", m->upstream_tls_failures);
}

int gw_admin_render_metrics(const struct gw_ctx *ctx, const struct gw_hub *hub, struct gw_buf *out)
{
    const struct gw_metrics *m = &ctx->metrics;
    struct text t = {.out = out, .rc = 0};

    put_family(&t, "xmppgw_sessions_open", "gauge", "Sessions open now, by transport.");
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++)
        put_labeled(&t, "xmppgw_sessions_open", "transport",
                    gw_transport_name((enum gw_transport)tr), m->sessions_open[tr]);

    put_family(&t, "xmppgw_sessions_total", "counter", "Sessions opened, by transport.");
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++)
        put_labeled(&t, "xmppgw_sessions_total", "transport",
                    gw_transport_name((enum gw_transport)tr), m->sessions_total[tr]);

    put_family(&t, "xmppgw_stanzas_total", "counter", "Stanzas relayed, by direction.");
    put_labeled(&t, "xmppgw_stanzas_total", "direction", "to_upstream", m->stanzas_to_upstream);
    put_labeled(&t, "xmppgw_stanzas_total", "direction", "to_client", m->stanzas_to_client);

    put_family(&t, "xmppgw_bytes_total", "counter", "Stanza bytes relayed, by direction.");
    put_labeled(&t, "xmppgw_bytes_total", "direction", "to_upstream", m->bytes_to_upstream);
    put_labeled(&t, "xmppgw_bytes_total", "direction", "to_client", m->bytes_to_client);

    put_upstream(m, &t);

    put_family(&t, "xmppgw_refused_total", "counter",
               "Clients refused or cut by a limit or deadline, by limit.");
    for (int l = 0; l < GW_LIMIT_COUNT; l++)
        put_labeled(&t, "xmppgw_refused_total", "limit", gw_limit_name((enum gw_limit)l),
                    m->refused[l]);

    put_family(&t, "xmppgw_resumable_drops_total", "counter",
               "Client sides lost with XEP-0198 resumption enabled: upstream left resumable.");
    put_plain(&t, "xmppgw_resumable_drops_total", m->resumable_drops);
    put_family(&t, "xmppgw_resumed_total", "counter",
               "Sessions that resumed a stream left resumable (XEP-0198).");
    put_plain(&t, "xmppgw_resumed_total", m->resumed);

    /* Every condition, zeros included, so that rate() has a series from the first scrape. */
    put_family(&t, "xmppgw_stream_errors_total", "counter",
               "Stream errors and BOSH terminate conditions sent to clients, by condition.");
    for (int c = 0; c < GW_COND_COUNT; c++)
        put_labeled(&t, "xmppgw_stream_errors_total", "condition",
                    gw_condition_name((enum gw_condition)c), m->stream_errors[c]);

    put_family(&t, "xmppgw_http_requests_total", "counter", "HTTP requests on the public port.");
    put_plain(&t, "xmppgw_http_requests_total", m->http_requests);

    put_family(&t, "xmppgw_http_errors_total", "counter",
               "HTTP 4xx and 5xx answers on the public port.");
    put_plain(&t, "xmppgw_http_errors_total", m->http_errors);

    put_family(&t, "xmppgw_publish_total", "counter",
               "Publish requests answered (/api/publish, /demo/publish), by outcome.");
    for (int o = 0; o < GW_HUB_PUB_COUNT; o++)
        put_labeled(&t, "xmppgw_publish_total", "outcome",
                    gw_hub_pub_outcome_name((enum gw_hub_pub_outcome)o),
                    gw_hub_pub_count(hub, (enum gw_hub_pub_outcome)o));

    put_more(ctx, &t);

    put_family(&t, "xmppgw_uptime_seconds", "gauge", "Seconds since the gateway started.");
    put_plain(&t, "xmppgw_uptime_seconds", get_uptime(ctx));

    put_family(&t, "xmppgw_build_info", "gauge", "Always 1; the label carries the version.");
    put_labeled(&t, "xmppgw_build_info", "version", XMPPGW_VERSION, 1);
    return t.rc;
}

/* ---- JSON ---- */

/* jansson writes through this into a bounded buffer, so no body is ever larger than its bound. */
struct sink {
    struct gw_buf *out;
    int rc;
};

static int write_sink(const char *bytes, size_t size, void *data)
{
    struct sink *s = data;
    s->rc = gw_buf_append(s->out, bytes, size);
    return s->rc ? -1 : 0;
}

static int dump_json(const json_t *v, struct gw_buf *out)
{
    struct sink s = {.out = out, .rc = 0};
    if (json_dump_callback(v, write_sink, &s, JSON_COMPACT) != 0)
        return s.rc ? s.rc : GW_ENOMEM;
    return 0;
}

/* Set o[key] = v, taking v; a NULL v (allocation failure) or a failed set marks *rc. */
static void set_value(json_t *o, const char *key, json_t *v, int *rc)
{
    if (!v) {
        *rc = GW_ENOMEM;
        return;
    }
    if (json_object_set_new(o, key, v) != 0)
        *rc = GW_ENOMEM;
}

/* A string that is not valid UTF-8 cannot be a JSON string: show null rather than drop the
 * whole answer. */
static json_t *new_text(const char *s)
{
    json_t *v = s ? json_string(s) : NULL;
    return v ? v : json_null();
}

static json_t *new_count(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* {"open", "websocket", "bosh", "internal", "max", "by_state": {transport: {state: n}}} */
static json_t *status_sessions(const struct gw_ctx *ctx, int *rc)
{
    struct census c;
    take_census(ctx, &c);
    json_t *o = json_object(), *by = json_object();
    if (!o || !by) {
        json_decref(o);
        json_decref(by);
        *rc = GW_ENOMEM;
        return NULL;
    }
    set_value(o, "open", new_count(ctx->sessions ? gw_sessions_count(ctx->sessions) : 0), rc);
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++) {
        const char *name = gw_transport_name((enum gw_transport)tr);
        set_value(o, name, new_count(c.by_transport[tr]), rc);
        json_t *st = json_object();
        for (int i = 0; st && i < GW_SESSION_STATE_COUNT; i++)
            if (i != GW_SESSION_CLOSED)
                set_value(st, gw_session_state_name((enum gw_session_state)i),
                          new_count(c.by_state[tr][i]), rc);
        set_value(by, name, st, rc);
    }
    set_value(o, "max", new_count(ctx->cfg->max_sessions), rc);
    set_value(o, "by_state", by, rc);
    return o;
}

int gw_admin_render_status(const struct gw_ctx *ctx, struct gw_buf *out)
{
    const struct gw_config *cfg = ctx->cfg;
    int rc = 0;
    json_t *root = json_object();
    if (!root)
        return GW_ENOMEM;
    set_value(root, "version", json_string(XMPPGW_VERSION), &rc);
    set_value(root, "uptime_seconds", new_count(get_uptime(ctx)), &rc);
    set_value(root, "node_id", cfg->node_id[0] ? new_text(cfg->node_id) : json_null(), &rc);
    set_value(root, "config_digest", cfg->digest[0] ? json_string(cfg->digest) : json_null(), &rc);
    set_value(root, "draining", json_boolean(ctx->draining), &rc);
    set_value(root, "sessions", status_sessions(ctx, &rc), &rc);
    set_value(root, "sse_viewers", new_count(ctx->metrics.sse_viewers), &rc);
    set_value(root, "bosh_held_requests", new_count(ctx->metrics.bosh_held), &rc);
    if (!rc)
        rc = dump_json(root, out);
    json_decref(root);
    return rc;
}

/* State of one walk over the session table for /api/sessions. */
struct listing {
    uint64_t now;                            /* uv_now() once for the whole answer */
    const struct gw_admin_sessions_query *q; /* what is asked */
    size_t budget;                           /* out may grow to this many bytes with entries */
    struct gw_buf *out;                      /* the body */
    struct gw_buf entry;                     /* one entry, serialized before it is appended */
    size_t seen;                             /* sessions in the table */
    size_t total;                            /* sessions that match the filters */
    size_t listed;                           /* entries written */
    bool truncated;                          /* some matching ones after offset were left out */
    int rc;                                  /* first hard error (allocation) */
};

/* A BOSH sid is the session's bearer secret: whoever holds it can speak as the session. The list
 * shows a digest instead, enough to tell sessions apart and to find one whose sid is known, and
 * nothing to act with. */
int gw_admin_sid_hash(const char *sid, char out[GW_ADMIN_SID_HASH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!sid || EVP_Digest(sid, strlen(sid), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen * 2 < GW_ADMIN_SID_HASH_LEN)
        return GW_EIO;
    for (size_t i = 0; i < GW_ADMIN_SID_HASH_LEN; i++)
        out[i] = hex[(md[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
    out[GW_ADMIN_SID_HASH_LEN] = '\0';
    return 0;
}

static json_t *describe_session(const struct gw_session_info *info, uint64_t now, int *rc)
{
    json_t *o = json_object();
    char id[GW_ADMIN_SID_HASH_LEN + 1];
    if (!o || gw_admin_sid_hash(info->sid, id) != 0) {
        json_decref(o);
        *rc = GW_ENOMEM;
        return NULL;
    }
    uint64_t age = now > info->created_ms ? (now - info->created_ms) / 1000 : 0;
    set_value(o, "id", json_string(id), rc);
    set_value(o, "sid_hash", json_string(id), rc);
    set_value(o, "jid", new_text(info->jid), rc);
    set_value(o, "domain", new_text(info->domain), rc);
    set_value(o, "peer", new_text(info->peer), rc);
    set_value(o, "transport", json_string(gw_transport_name(info->transport)), rc);
    set_value(o, "state", new_text(gw_session_state_name(info->state)), rc);
    set_value(o, "age_seconds", new_count(age), rc);
    set_value(o, "stanzas_in", new_count(info->stanzas_in), rc);
    set_value(o, "stanzas_out", new_count(info->stanzas_out), rc);
    set_value(o, "upstream_tls", json_boolean(info->upstream_tls), rc);
    return o;
}

/* ?jid= is the full JID, or the bare JID (the full one up to its '/'); ?address= the peer. */
bool gw_admin_session_matches(const struct gw_admin_sessions_query *q,
                              const struct gw_session_info *info)
{
    if (q->address && (!info->peer || strcmp(q->address, info->peer) != 0))
        return false;
    if (!q->jid)
        return true;
    const char *jid = info->jid ? info->jid : "";
    if (strcmp(q->jid, jid) == 0)
        return true;
    const char *slash = strchr(jid, '/');
    size_t n = strlen(q->jid);
    return slash && !strchr(q->jid, '/') && (size_t)(slash - jid) == n &&
           strncmp(q->jid, jid, n) == 0;
}

/* One entry into out, when it fits the budget; else the listing is marked truncated. */
static void append_entry(struct listing *l, const struct gw_session_info *info)
{
    json_t *o = describe_session(info, l->now, &l->rc);
    gw_buf_reset(&l->entry);
    if (!l->rc)
        l->rc = dump_json(o, &l->entry);
    json_decref(o);
    if (l->rc == GW_ELIMIT) {
        /* An entry larger than ENTRY_MAX: leave it out, say so, keep the answer. */
        l->rc = 0;
        l->truncated = true;
        return;
    }
    if (l->rc)
        return;
    size_t need = gw_buf_size(&l->entry) + (l->listed ? 1 : 0);
    if (gw_buf_size(l->out) + need > l->budget) {
        l->truncated = true;
        return;
    }
    if (l->listed)
        l->rc = gw_buf_append(l->out, ",", 1);
    if (!l->rc)
        l->rc = gw_buf_append(l->out, gw_buf_ptr(&l->entry), gw_buf_size(&l->entry));
    if (!l->rc)
        l->listed++;
}

/* Every session is looked at (string compares only, to count the matches); only the page's
 * entries are hashed and serialized. */
static void list_session(void *ud, const struct gw_session_info *info)
{
    struct listing *l = ud;
    l->seen++;
    if (!gw_admin_session_matches(l->q, info))
        return;
    size_t index = l->total++;
    if (l->rc || index < l->q->offset)
        return;
    if (l->truncated || l->listed >= l->q->limit) {
        l->truncated = true;
        return;
    }
    append_entry(l, info);
}

int gw_admin_render_sessions(const struct gw_ctx *ctx, const struct gw_admin_sessions_query *q,
                             struct gw_buf *out)
{
    if (out->max < gw_buf_size(out) + SESSIONS_TAIL + 16)
        return GW_ELIMIT;
    struct listing l = {
        .now = uv_now(ctx->loop),
        .q = q,
        .budget = out->max - SESSIONS_TAIL,
        .out = out,
    };
    gw_buf_init(&l.entry, ENTRY_MAX);
    /* Entries are streamed one by one so that a large table never becomes one large tree. */
    l.rc = gw_buf_append_str(out, "{\"sessions\":[");
    if (!l.rc && ctx->sessions)
        gw_sessions_foreach(ctx->sessions, list_session, &l);
    gw_buf_cleanup(&l.entry);
    char next[24] = "null";
    if (l.truncated)
        snprintf(next, sizeof(next), "%zu", q->offset + l.listed);
    if (!l.rc)
        l.rc = gw_buf_printf(out,
                             "],\"count\":%zu,\"total\":%zu,\"offset\":%zu,\"listed\":%zu,"
                             "\"next\":%s,\"truncated\":%s}",
                             l.seen, l.total, q->offset, l.listed, next,
                             l.truncated ? "true" : "false");
    return l.rc;
}
