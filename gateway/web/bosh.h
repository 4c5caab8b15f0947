/* BOSH (XEP-0124 + XEP-0206): the "xmppgw-bosh" lws protocol that server.c mounts at bosh.path
 * (LWSMPRO_CALLBACK), with the struct gw_bosh main.c creates as the protocol's user pointer
 * (gw_web_transport()). bosh.c is the HTTP adapter (requests in, answers out); the BOSH sessions
 * (sid table, tombstones, held requests, timers, the sink of each core session) are in
 * bosh_session.c, and the protocol rules without sockets in bosh_proto.c. SIGTERM reaches the
 * BOSH sessions through the session core (gw_sessions_shutdown(): each sink's closed() with
 * system-shutdown). Prebind (gw_bosh_prebind()) makes a BOSH session whose core session logs in
 * by itself, for a client that attaches to it later (Strophe.js attach, Converse.js prebind);
 * docs/bosh.md says how it behaves. Calls: bosh_session, web helpers, config, core. */
#ifndef GW_WEB_BOSH_H
#define GW_WEB_BOSH_H

#include <stdbool.h>
#include <stddef.h>
#include <libwebsockets.h>
#include "core/cond.h"
#include "core/ctx.h"
#include "core/err.h"

#define GW_BOSH_PROTOCOL "xmppgw-bosh"

struct gw_bosh;

struct gw_bosh *gw_bosh_new(struct gw_ctx *ctx); /* NULL on ENOMEM */
/* Ends every BOSH session; frees. Call after the lws context is destroyed (its CLOSED_HTTP
 * callbacks still look for the BOSH state); the loop must run once more to close the timers. */
void gw_bosh_free(struct gw_bosh *b);
int gw_bosh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
size_t gw_bosh_pss_size(void); /* per-connection user data size for lws */

/* ---- prebind: a logged-in, resource-bound BOSH session for a client to attach to ---- */

struct gw_prebind_req {
    const char *jid;      /* bare JID to log in as upstream (SASL PLAIN by the session itself);
                             NULL when visitor is set. A resource part, if any, is the resource
                             asked for; without one the server chooses (as for a client's bind) */
    const char *password; /* its password; copied, never logged, wiped once sent upstream */
    bool visitor;         /* a visitor session (visitors.*) instead of jid/password */
    const char *peer;     /* the address asking ("127.0.0.1"), for logs and per-address limits */
};

struct gw_prebind_result {
    int status;             /* 0: bound; else an enum gw_err value (GW_EIO, GW_ECLOSED, ...) */
    enum gw_condition cond; /* when status != 0: not-authorized (bad credentials),
                               remote-connection-failed (upstream unreachable or too slow),
                               policy-violation (limits.auth_timeout), system-shutdown
                               (draining), internal-server-error (anything else, including a
                               visitors' shared account that upstream refuses) */
    const char *jid;        /* the bound full JID (valid during the callback only) */
    const char *sid;        /* the BOSH sid (valid during the callback only) */
    unsigned long long rid; /* the next rid the client must use */
};

typedef void (*gw_prebind_fn)(void *ud, const struct gw_prebind_result *res);
struct gw_prebind; /* one pending request */

/* Start creating an authenticated, resource-bound BOSH session (the attributes of a session
 * created by a client that named none: wait = bosh.max_wait, hold 1, requests 2). fn is called
 * exactly once, later on the loop (never from inside this call), unless gw_prebind_cancel() came
 * first; *out is valid until fn returns. From the moment it is bound the session is under
 * bosh.inactivity (nobody attaching ends it), before that under limits.auth_timeout; it counts
 * in limits.max_sessions and the per-address limits of peer; what upstream sends before the
 * client's first request waits for that request (bounded by limits.send_queue).
 * Returns 0 and sets *out, or (nothing started, fn never called): GW_ECLOSED (draining),
 * GW_ELIMIT (limits.max_sessions or a per-address limit), GW_EINVAL (no jid or password, a JID
 * that is not valid or whose domain no upstream serves, visitor without visitors.domain),
 * GW_ENOMEM, GW_EIO. */
int gw_bosh_prebind(struct gw_bosh *b, const struct gw_prebind_req *req, gw_prebind_fn fn, void *ud,
                    struct gw_prebind **out) GW_MUST_CHECK;
/* The asker went away before fn was called: fn is not called, and the session ends (nobody
 * learnt its sid). Never call it after fn. */
void gw_prebind_cancel(struct gw_prebind *p);

#endif
