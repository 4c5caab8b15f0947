/* The public port: one libwebsockets context on the gateway's libuv loop serving BOSH, WebSocket,
 * host-meta and static files. server.c owns the lws context and the mounts; each transport is its
 * own lws protocol in its own file (bosh.c, websocket.c), created by main.c and handed to
 * gw_web_start(). Calls: session, config, core. */
#ifndef GW_WEB_WEB_H
#define GW_WEB_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libwebsockets.h>
#include "config/config.h"
#include "core/ctx.h"
#include "core/err.h"
#include "core/host.h"

struct gw_web;
struct gw_ws;
struct gw_bosh;
struct gw_sse;
struct gw_demo;

/* The transports the public port serves; they outlive the gw_web that serves them. */
struct gw_web_transports {
    struct gw_ws *ws;     /* RFC 7395 (websocket.c) */
    struct gw_bosh *bosh; /* XEP-0124/0206 (bosh.c) */
    struct gw_sse *sse;   /* Server-Sent Events from the live-updates hub (sse.c) */
    struct gw_demo *demo; /* the demo page's publish form (demo.c) */
};

/* Create the lws context on ctx->loop and listen. NULL on failure with one line in err. */
struct gw_web *gw_web_start(struct gw_ctx *ctx, const struct gw_web_transports *tr, char *err,
                            size_t errlen);
/* Destroy the lws context (every connection closes; the transports see their CLOSED callbacks),
 * then free. The transports are freed by their owner afterwards. */
void gw_web_free(struct gw_web *web);

/* The end of a drain: the public port accepts no new connection (a proxy's next connect is
 * refused at once and goes to another node); connections already open go on. */
void gw_web_stop_listening(struct gw_web *web);

/* ---- helpers shared by the transports (http.c) ---- */

/* The gateway context of an lws connection. */
struct gw_ctx *gw_web_ctx(struct lws *wsi);

/* The state of the transport whose protocol the connection is bound to (gw_web_transports). */
void *gw_web_transport(struct lws *wsi);

/* Copy header `tok` into out (NUL-terminated); returns its length, or -1 if absent/too long. */
int gw_web_header(struct lws *wsi, enum lws_token_indexes tok, char *out, size_t outlen);

/* RFC 9112 3.2: exactly one Host line, not empty, within 299 bytes, of visible ASCII only (no
 * control, space, DEL or byte past ASCII). What it names is the caller's to judge. */
bool gw_web_host_one(struct lws *wsi);

/* An Origin header value read strictly as RFC 6454 serializes an origin: "http://" or "https://"
 * (scheme in any case), a host by core/host.c's domain rules (a name, an IPv4 address, an IPv6
 * address in brackets), an optional ":port" of digits only (1..65535), nothing else: no path,
 * userinfo, spaces, controls or bytes outside ASCII. */
struct gw_web_origin {
    bool https;                 /* the scheme is https (else http) */
    char host[GW_HOST_MAX + 1]; /* as sent, brackets kept for IPv6 */
    uint16_t port;              /* as sent, else the scheme's default (80, 443) */
    const char *authority;      /* "host[:port]" within the parsed string (for "same-host") */
};
/* 0, or GW_EINVAL for a malformed origin (out untouched). */
int gw_web_origin_parse(const char *s, struct gw_web_origin *out) GW_MUST_CHECK;

/* The origin policy (cfg->origins) without a connection: origin is the Origin header (NULL or ""
 * when absent: allowed, a non-browser client), reqhost the Host header (NULL when absent). A
 * malformed origin is refused whatever the rules; "null" (an opaque origin) passes only "*". */
bool gw_web_origin_check(const struct gw_config *cfg, const char *origin, const char *reqhost);

/* The origin policy for a request. On return, origin holds the request's Origin ("" if none). */
bool gw_web_origin_allowed(struct lws *wsi, char *origin, size_t originlen);

/* The client's address as text ("192.0.2.1", "::1"; IPv4-mapped IPv6 as IPv4): the TCP peer's,
 * or, when the TCP peer is in trusted_proxies, the one its forwarding headers name (forwarded.h).
 * Per-address limits, log lines and /api/sessions all take it from here. */
void gw_web_peer(struct lws *wsi, char *out, size_t outlen);

/* Where the client reached the gateway: scheme and host from a trusted proxy's forwarding
 * headers, else from public_url, else from the connection (TLS or not) and its Host header; the
 * path prefix from public_url. */
struct gw_web_public {
    bool https;                            /* the scheme the client used */
    char host[GW_HOST_MAX + 7];            /* "host[:port]"; "" when nothing says */
    char prefix[GW_PUBLIC_PREFIX_MAX + 1]; /* public_url's path without its trailing '/', or "" */
};
void gw_web_public_base(struct lws *wsi, struct gw_web_public *out);

/* uri without public_url's path prefix when it starts with it ("/chat/events/x" -> "/events/x"),
 * else uri itself. */
const char *gw_web_unprefixed(const struct gw_config *cfg, const char *uri);

/* Answer a whole HTTP response at once (status, content type, extra header lines, body) and mark
 * the transaction complete. extra_headers: NULL or "Name: value\r\n..." lines. Returns -1 when the
 * connection should close (the lws callback returns that), 0 otherwise. */
int gw_web_respond(struct lws *wsi, unsigned status, const char *content_type,
                   const char *extra_headers, const char *body, size_t body_len);

/* CORS headers for an allowed Origin ("Access-Control-Allow-Origin: ...\r\nVary: Origin\r\n..."),
 * written into out; "" when origin is "". */
void gw_web_cors_headers(const char *origin, char *out, size_t outlen);

/* ---- a JSON request whose answer comes later (web/prebind.c, web/demo.c) ---- */

#define GW_WEB_CALL_EXTRA 832 /* header lines of such an answer (CORS, Allow, Retry-After) */

/* One such request, from its headers to its answer: the first member of the module's own
 * request struct (freed with free() on it). The module's on_http makes it and hangs it on the
 * connection; the body is read into the module's buffer; submit hands it on; the answer is given
 * by gw_web_call_ready(), once, and written when the connection can take it. */
struct gw_web_call {
    struct lws *wsi;           /* its connection */
    struct gw_web_call **slot; /* the connection's user data pointing here */
    bool submitted;            /* handed on (or answered) */
    bool too_big;              /* the body passed body_max */
    bool drop_body;            /* refused from the headers: the body is read and dropped */
    size_t got, body_max;      /* body bytes kept, and the most kept */
    char *body;                /* the module's body buffer, body_max + 1 bytes */
    unsigned status;           /* the answer's status; 0: none yet */
    const char *answer;        /* its body, answer_len bytes (the module's) */
    size_t answer_len;
    char extra[GW_WEB_CALL_EXTRA]; /* its header lines */
};

/* What a module does with its requests. */
struct gw_web_call_ops {
    /* A new request's headers: answer at once, or make the call (gw_web_call_init) and return 0;
     * then the body follows, or the module submits at once. */
    int (*on_http)(struct lws *wsi, struct gw_web_call **slot);
    /* The body is in (submitted is set): answer now or later with gw_web_call_ready(). */
    int (*submit)(struct lws *wsi, struct gw_web_call *c);
    /* The client went away before the answer: cancel what is under way (the call is freed). */
    void (*cancel)(struct gw_web_call *c);
};

/* Fill a new call (the module has zeroed it) and hang it on the connection. */
void gw_web_call_init(struct gw_web_call *c, struct lws *wsi, struct gw_web_call **slot, char *body,
                      size_t body_max);

/* The answer is ready: written when the connection can take it. extra header lines are already
 * in c->extra. */
void gw_web_call_ready(struct gw_web_call *c, unsigned status, const char *answer, size_t len);

/* The lws protocol callback of such a module: user is its per-connection data, a
 * struct gw_web_call * (GW_WEB_CALL_PSS_SIZE bytes). */
int gw_web_call_callback(const struct gw_web_call_ops *ops, struct lws *wsi,
                         enum lws_callback_reasons reason, void *user, void *in, size_t len);
#define GW_WEB_CALL_PSS_SIZE sizeof(struct gw_web_call *)

#endif
