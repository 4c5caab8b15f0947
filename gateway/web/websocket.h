/* XMPP over WebSocket (RFC 7395): the "xmpp" lws protocol. Each connection is one session; each
 * message is one complete element (<open/>, <close/> or a stanza), read by web/ws_proto.h. Owns
 * the per-connection state, message reassembly, the outgoing frame queue and the connect_timeout
 * timer for <open/>. Calls: web/ws_proto, session, web helpers, core. */
#ifndef GW_WEB_WEBSOCKET_H
#define GW_WEB_WEBSOCKET_H

#include <libwebsockets.h>
#include "core/ctx.h"

#define GW_WS_PROTOCOL "xmpp"
/* lws's receive buffer of each connection (rx_buffer_size; its default is pt_serv_buf_size,
 * 4 KiB). A longer frame arrives in several RECEIVE callbacks and is reassembled anyway. */
#define GW_WS_RX_BUFFER 1024

struct gw_ws;

struct gw_ws *gw_ws_new(struct gw_ctx *ctx); /* NULL on ENOMEM */
void gw_ws_free(struct gw_ws *ws);
int gw_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len);
size_t gw_ws_pss_size(void);

#endif
