/* Bodies of the admin endpoints: Prometheus text for /metrics, JSON (jansson) for /status and
 * /api/sessions. Owns no state: reads the context's counters, the hub's publish counts and the
 * session table's read-only view, writes into the caller's bounded buffer. Calls: session
 * (count, foreach), session/hub (publish counts), config, core; OpenSSL (SHA-256 of sids). */
#include "admin/admin.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
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
#define SESSIONS_TAIL 160u

static uint64_t get_uptime(const struct gw_ctx *ctx)
{
    uint64_t now = uv_now(ctx->loop);
    return now > ctx->started_ms ? (now - ctx->started_ms) / 1000 : 0;
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

    put_family(&t, "xmppgw_upstream_connects_total", "counter",
               "Connection attempts to upstream XMPP servers.");
    put_plain(&t, "xmppgw_upstream_connects_total", m->upstream_connects);

    put_family(&t, "xmppgw_upstream_connected_total", "counter",
               "Upstream streams that reached stream features.");
    put_plain(&t, "xmppgw_upstream_connected_total", m->upstream_connected);

    put_family(&t, "xmppgw_upstream_failures_total", "counter",
               "Upstream failures: connect or stream (connect), TLS handshake or verification "
               "(tls).");
    put_labeled(&t, "xmppgw_upstream_failures_total", "kind", "connect", m->upstream_failures);
    put_labeled(&t, "xmppgw_upstream_failures_total", "kind", "tls", m->upstream_tls_failures);

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

struct census {
    size_t by_transport[GW_TRANSPORT_COUNT];
};

static void count_session(void *ud, const struct gw_session_info *info)
{
    struct census *c = ud;
    if ((unsigned)info->transport < GW_TRANSPORT_COUNT)
        c->by_transport[info->transport]++;
}

int gw_admin_render_status(const struct gw_ctx *ctx, struct gw_buf *out)
{
    struct census census = {{0}};
    size_t open = 0;
    if (ctx->sessions) {
        open = gw_sessions_count(ctx->sessions);
        gw_sessions_foreach(ctx->sessions, count_session, &census);
    }

    int rc = 0;
    json_t *root = json_object();
    json_t *sessions = json_object();
    if (!root || !sessions) {
        json_decref(root);
        json_decref(sessions);
        return GW_ENOMEM;
    }
    set_value(root, "version", json_string(XMPPGW_VERSION), &rc);
    set_value(root, "uptime_seconds", new_count(get_uptime(ctx)), &rc);
    set_value(root, "draining", json_boolean(ctx->draining), &rc);
    set_value(sessions, "open", new_count(open), &rc);
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++)
        set_value(sessions, gw_transport_name((enum gw_transport)tr),
                  new_count(census.by_transport[tr]), &rc);
    set_value(sessions, "max", new_count(ctx->cfg->max_sessions), &rc);
    set_value(root, "sessions", sessions, &rc);
    if (!rc)
        rc = dump_json(root, out);
    json_decref(root);
    return rc;
}

/* State of one walk over the session table for /api/sessions. */
struct listing {
    uint64_t now;        /* uv_now() once for the whole answer */
    size_t limit;        /* entries wanted at most */
    size_t budget;       /* out may grow to this many bytes with entries */
    struct gw_buf *out;  /* the body */
    struct gw_buf entry; /* one entry, serialized before it is appended */
    size_t seen;         /* sessions in the table */
    size_t listed;       /* entries written */
    bool truncated;      /* some were left out (limit or budget) */
    int rc;              /* first hard error (allocation) */
};

/* A BOSH sid is the session's bearer secret: whoever holds it can speak as the session. The list
 * shows a digest instead, enough to tell sessions apart and to find one whose sid is known, and
 * nothing to act with. */
static json_t *new_sid_hash(const char *sid)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char out[GW_ADMIN_SID_HASH_LEN + 1];
    if (!sid || EVP_Digest(sid, strlen(sid), md, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen * 2 < GW_ADMIN_SID_HASH_LEN)
        return NULL;
    for (size_t i = 0; i < GW_ADMIN_SID_HASH_LEN; i++)
        out[i] = hex[(md[i / 2] >> (i % 2 ? 0 : 4)) & 0xf];
    out[GW_ADMIN_SID_HASH_LEN] = '\0';
    return json_string(out);
}

static json_t *describe_session(const struct gw_session_info *info, uint64_t now, int *rc)
{
    json_t *o = json_object();
    if (!o) {
        *rc = GW_ENOMEM;
        return NULL;
    }
    uint64_t age = now > info->created_ms ? (now - info->created_ms) / 1000 : 0;
    set_value(o, "sid_hash", new_sid_hash(info->sid), rc);
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

static void list_session(void *ud, const struct gw_session_info *info)
{
    struct listing *l = ud;
    l->seen++;
    if (l->rc || l->truncated)
        return;
    if (l->listed >= l->limit) {
        l->truncated = true;
        return;
    }
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

int gw_admin_render_sessions(const struct gw_ctx *ctx, size_t limit, struct gw_buf *out)
{
    if (out->max < gw_buf_size(out) + SESSIONS_TAIL + 16)
        return GW_ELIMIT;
    struct listing l = {
        .now = uv_now(ctx->loop),
        .limit = limit,
        .budget = out->max - SESSIONS_TAIL,
        .out = out,
    };
    gw_buf_init(&l.entry, ENTRY_MAX);
    /* Entries are streamed one by one so that a large table never becomes one large tree. */
    l.rc = gw_buf_append_str(out, "{\"sessions\":[");
    if (!l.rc && ctx->sessions)
        gw_sessions_foreach(ctx->sessions, list_session, &l);
    gw_buf_cleanup(&l.entry);
    if (!l.rc)
        l.rc = gw_buf_printf(out, "],\"count\":%zu,\"listed\":%zu,\"truncated\":%s}", l.seen,
                             l.listed, l.truncated ? "true" : "false");
    return l.rc;
}
