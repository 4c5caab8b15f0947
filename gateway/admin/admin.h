/* The admin plane: a libmicrohttpd server on the gateway's one libuv loop (no thread of its own),
 * listening on admin.listen. Serves /healthz, /readyz, /metrics (Prometheus text 0.0.4), /status
 * and /api/sessions (JSON; everything under /api/ needs admin.token when one is set), and POST
 * /api/publish and /api/prebind (JSON bodies; the answer waits for the pubsub service or the
 * login, the connection suspended) and POST /api/drain (starts the drain, answers 202).
 * Every request carry exactly one Host header (400 otherwise) naming an IP address, "localhost" or
 * a name of admin.hosts (421 otherwise: DNS rebinding). Errors are JSON {"error": text,
 * "condition": token}. admin.c owns the daemon, its loop glue and the routing; render.c writes the
 * bodies. Calls: session (read-only views), config, core. Everything runs on the loop thread, so
 * counters are read without locks. */
#ifndef GW_ADMIN_ADMIN_H
#define GW_ADMIN_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"
#include "core/ctx.h"
#include "core/err.h"

struct gw_admin;
struct gw_hub;
struct gw_bosh;

/* What POST /api/drain answers (202 {"draining": true, "grace_seconds", "sessions"}). */
struct gw_admin_drain {
    unsigned grace_s; /* the drain's grace */
    size_t sessions;  /* sessions open now */
};

/* What the POST endpoints call; they outlive the admin port. Any may be NULL: /api/publish,
 * /api/prebind or /api/drain then answers 503. */
struct gw_admin_services {
    struct gw_hub *hub;   /* the live-updates hub: /api/publish */
    struct gw_bosh *bosh; /* the BOSH transport: /api/prebind */
    /* POST /api/drain: start the drain (a second call changes nothing) and fill out. */
    void (*drain)(void *ud, struct gw_admin_drain *out);
    void *drain_ud;
};

/* Listen on ctx->cfg->admin_listen and serve on ctx->loop. Call once, before the loop runs: a
 * host name (rather than a literal) is resolved here, blocking. svc is copied (NULL: none).
 * Returns NULL on failure with one line in err, e.g. "admin: cannot listen on 127.0.0.1:5281:
 * Address already in use". */
struct gw_admin *gw_admin_start(struct gw_ctx *ctx, const struct gw_admin_services *svc, char *err,
                                size_t errlen);

/* Stop listening, close every admin connection (a request waiting for the hub is cancelled) and
 * close the uv handles. The memory goes when the
 * last handle's close callback runs, so the caller runs the loop afterwards (as it does for every
 * other module at shutdown). Not to be called from inside an admin request. NULL is ignored. */
void gw_admin_free(struct gw_admin *a);

/* The port actually bound (useful when admin.listen asked for port 0). */
uint16_t gw_admin_port(const struct gw_admin *a);

/* ---- response bodies (render.c), exposed for tests ---- */

/* Bounds on what one response may hold. */
#define GW_ADMIN_METRICS_MAX (64u * 1024u)      /* /metrics */
#define GW_ADMIN_STATUS_MAX (4u * 1024u)        /* /status */
#define GW_ADMIN_SESSIONS_MAX (16u << 20)       /* /api/sessions */
#define GW_ADMIN_SESSIONS_LIMIT_DEFAULT 1000u   /* /api/sessions?limit= when absent */
#define GW_ADMIN_SESSIONS_LIMIT_MAX 10000u      /* largest limit= accepted */
#define GW_ADMIN_SESSIONS_OFFSET_MAX 100000000u /* largest offset= accepted */
#define GW_ADMIN_FILTER_JID_MAX 3071u           /* bytes of ?jid= (the longest valid JID) */
#define GW_ADMIN_FILTER_ADDRESS_MAX 64u         /* bytes of ?address= */
#define GW_ADMIN_SID_HASH_LEN 16u /* hex characters of SHA-256(sid) shown per session */
#define GW_ADMIN_PREBIND_BODY_MAX (4u * 1024u) /* a POST /api/prebind body */
#define GW_ADMIN_DRAIN_BODY_MAX 256u           /* a POST /api/drain body: {} or nothing */

/* Each appends one whole body to out (created by the caller with gw_buf_init and a maximum).
 * Returns 0, GW_ENOMEM, or GW_ELIMIT when out's maximum was too small. */
/* hub may be NULL (its counters are then 0). */
int gw_admin_render_metrics(const struct gw_ctx *ctx, const struct gw_hub *hub,
                            struct gw_buf *out) GW_MUST_CHECK;
int gw_admin_render_status(const struct gw_ctx *ctx, struct gw_buf *out) GW_MUST_CHECK;
/* What GET /api/sessions asks: a page of the sessions that match the filters. */
struct gw_admin_sessions_query {
    size_t limit;        /* entries at most */
    size_t offset;       /* matching sessions to skip first (in the table's order) */
    const char *jid;     /* only this full JID, or bare JID (any resource); NULL: any */
    const char *address; /* only this client address; NULL: any */
};

/* {"sessions":[{id, sid_hash, jid, domain, peer, transport, state, age_seconds, stanzas_in,
 * stanzas_out, upstream_tls}...], "count": sessions in the table, "total": those that match,
 * "offset": as asked, "listed": entries given, "next": the offset of the next page or null,
 * "truncated": whether matching ones after offset were left out}. At most q->limit entries, and
 * only as many as fit in out's maximum. id (and sid_hash, the same) is the first
 * GW_ADMIN_SID_HASH_LEN hex characters of SHA-256(sid): the sid itself (a BOSH session's bearer
 * secret) is never shown. The order is the session table's: a page follows the previous one
 * exactly while no session comes or goes in between. */
int gw_admin_render_sessions(const struct gw_ctx *ctx, const struct gw_admin_sessions_query *q,
                             struct gw_buf *out) GW_MUST_CHECK;

struct gw_session_info;
/* Does the session match q's filters (limit and offset aside)? */
bool gw_admin_session_matches(const struct gw_admin_sessions_query *q,
                              const struct gw_session_info *info);
/* The id of a session: GW_ADMIN_SID_HASH_LEN hex characters of SHA-256(sid). 0 or GW_EIO. */
int gw_admin_sid_hash(const char *sid, char out[GW_ADMIN_SID_HASH_LEN + 1]) GW_MUST_CHECK;

#endif
