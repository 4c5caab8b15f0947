/* The one gateway context: what every module shares (the loop, the configuration snapshot, the
 * log, the metrics, the session table, the upstream TLS context, the shared read buffers),
 * created in main.c. A module's own state (a transport, a port) is main.c's to create and wire;
 * modules see each other's state only as opaque pointers. */
#ifndef GW_CORE_CTX_H
#define GW_CORE_CTX_H

#include <stdbool.h>
#include <uv.h>
#include "core/log.h"
#include "core/metrics.h"

struct gw_config;
struct gw_sessions;
struct ssl_ctx_st;
struct gw_upstream_batch;

#define GW_CTX_READ_BUF 65536 /* shared socket read buffer */
#define GW_CTX_TLS_BUF 16384  /* shared TLS plaintext buffer */

struct gw_ctx {
    uv_loop_t *loop;                    /* the one event loop */
    const struct gw_config *cfg;        /* replaced whole on reload: keep values, not pointers */
    struct gw_log log;                  /* log level */
    struct gw_metrics metrics;          /* counters for /metrics */
    struct gw_sessions *sessions;       /* session table (session/) */
    struct ssl_ctx_st *upstream_tls;    /* SSL_CTX for upstream connections (xmpp/) */
    struct gw_upstream_batch *up_batch; /* upstream writes gathered per loop turn (xmpp/); NULL:
                                           each leaves at once */
    bool draining;                      /* SIGTERM seen: refuse new sessions */
    uint64_t started_ms;                /* uv_now() at start */
    char *read_buf; /* GW_CTX_READ_BUF bytes: every socket read lands here first */
    char *tls_buf;  /* GW_CTX_TLS_BUF bytes: decrypted upstream data */
};

#endif
