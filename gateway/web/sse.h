/* Server-Sent Events on the public port: GET /events/<service>/<node> streams a pubsub node's
 * items from the live-updates hub (session/hub.h) as text/event-stream. The "xmppgw-sse" lws
 * protocol, mounted by server.c; created by main.c. */
#ifndef GW_WEB_SSE_H
#define GW_WEB_SSE_H

#include <stddef.h>
#include <libwebsockets.h>
#include "core/ctx.h"

#define GW_SSE_PROTOCOL "xmppgw-sse"
#define GW_SSE_PATH "/events" /* the mount; streams are under GW_SSE_PATH "/" */

struct gw_sse;
struct gw_hub;

/* hub may be NULL (live is not configured): every request is answered 503. */
struct gw_sse *gw_sse_new(struct gw_ctx *ctx, struct gw_hub *hub);
/* After the lws context is gone (every viewer closed). */
void gw_sse_free(struct gw_sse *sse);

int gw_sse_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len);
size_t gw_sse_pss_size(void);

#endif
