/* The public prebind endpoint (prebind.c): GET and POST GW_PREBIND_PATH make a prebound visitor
 * session when visitors.domain is set, for Converse.js's prebind_url or a page of its own; the
 * "xmppgw-prebind" lws protocol, whose user pointer is the struct gw_bosh (bosh.h) that makes the
 * sessions. docs/bosh.md has the contract. Calls: web/bosh, web helpers, config, core. */
#ifndef GW_WEB_PREBIND_H
#define GW_WEB_PREBIND_H

#include <stddef.h>
#include <libwebsockets.h>

#define GW_PREBIND_PROTOCOL "xmppgw-prebind"
#define GW_PREBIND_PATH "/prebind"

int gw_prebind_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len);
size_t gw_prebind_pss_size(void); /* per-connection user data size for lws */

#endif
