/* The demo page's publish form (demo.c): POST GW_DEMO_PATH on the public port publishes an Atom
 * entry {"node": "<service>/<node>", "title", "summary", "link"} through the live-updates hub
 * (session/hub.h) when live.demo_publish is on (config.c allows that only on a loopback listen
 * address); 404 otherwise. The "xmppgw-demo" lws protocol, mounted by server.c, whose user pointer
 * is the struct gw_demo main.c creates. Calls: session/hub, web helpers, config, core. */
#ifndef GW_WEB_DEMO_H
#define GW_WEB_DEMO_H

#include <stddef.h>
#include <libwebsockets.h>
#include "core/ctx.h"

#define GW_DEMO_PROTOCOL "xmppgw-demo"
#define GW_DEMO_PATH "/demo/publish"
#define GW_DEMO_BODY_MAX 4096u /* a request body */

struct gw_demo;
struct gw_hub;

/* hub may be NULL (live is not configured): a publish is answered 503. NULL: no memory. */
struct gw_demo *gw_demo_new(struct gw_ctx *ctx, struct gw_hub *hub);
/* After the lws context is gone (every request closed, every publish cancelled). */
void gw_demo_free(struct gw_demo *demo);

int gw_demo_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len);
size_t gw_demo_pss_size(void); /* per-connection user data size for lws */

#endif
