/* BOSH (XEP-0124 + XEP-0206): the "xmppgw-bosh" lws protocol that server.c mounts at bosh.path
 * (LWSMPRO_CALLBACK). Each BOSH session drives one core session (session.h) and receives from it
 * through its sink. Owns the BOSH sessions (sid -> state, with short-lived tombstones of sessions
 * that upstream ended), the HTTP requests they hold, their timers and output queues. The protocol
 * logic without sockets lives in bosh_proto.c. Calls: session, web helpers, xml, config, core. */
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
/* SIGTERM: every session answered system-shutdown; new sessions refused. */
void gw_bosh_shutdown(struct gw_bosh *b);
int gw_bosh_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
size_t gw_bosh_pss_size(void); /* per-connection user data size for lws */

/* BOSH sessions in the table, tombstones included (for tests and the admin port). */
size_t gw_bosh_count(const struct gw_bosh *b);

#endif
