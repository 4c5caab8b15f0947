/* BOSH (XEP-0124 + XEP-0206): the "xmppgw-bosh" lws protocol that server.c mounts at bosh.path
 * (LWSMPRO_CALLBACK), with the struct gw_bosh main.c creates as the protocol's user pointer
 * (gw_web_transport()). bosh.c is the HTTP adapter (requests in, answers out); the BOSH sessions
 * (sid table, tombstones, held requests, timers, the sink of each core session) are in
 * bosh_session.c, and the protocol rules without sockets in bosh_proto.c. SIGTERM reaches the
 * BOSH sessions through the session core (gw_sessions_shutdown(): each sink's closed() with
 * system-shutdown). Calls: bosh_session, web helpers, config, core. */
#ifndef GW_WEB_BOSH_H
#define GW_WEB_BOSH_H

#include <stddef.h>
#include <libwebsockets.h>
#include "core/ctx.h"

#define GW_BOSH_PROTOCOL "xmppgw-bosh"

struct gw_bosh;

struct gw_bosh *gw_bosh_new(struct gw_ctx *ctx); /* NULL on ENOMEM */
/* Ends every BOSH session; frees. Call after the lws context is destroyed (its CLOSED_HTTP
 * callbacks still look for the BOSH state); the loop must run once more to close the timers. */
void gw_bosh_free(struct gw_bosh *b);
int gw_bosh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
size_t gw_bosh_pss_size(void); /* per-connection user data size for lws */

#endif
