/* Counters the admin port exposes. Plain integers, written only on the loop thread. */
#ifndef GW_CORE_METRICS_H
#define GW_CORE_METRICS_H

#include <stdint.h>
#include "core/cond.h"

/* What is on the client side of a session: a browser transport, or nothing (a session the gateway
 * itself uses, such as a live-updates hub). */
enum gw_transport { GW_TRANSPORT_WS, GW_TRANSPORT_BOSH, GW_TRANSPORT_INTERNAL, GW_TRANSPORT_COUNT };

/* Limits that refuse a client (xmppgw_refused_total{limit=...}). */
enum gw_limit {
    GW_LIMIT_SESSIONS,        /* limits.max_sessions */
    GW_LIMIT_ADDR_SESSIONS,   /* limits.per_address_sessions */
    GW_LIMIT_ADDR_UNAUTH,     /* limits.per_address_unauthenticated */
    GW_LIMIT_ADDR_RATE,       /* limits.per_address_rate / _burst */
    GW_LIMIT_ADDR_PENDING,    /* limits.per_address_pending */
    GW_LIMIT_ADDR_BODY_BYTES, /* limits.per_address_body_bytes */
    GW_LIMIT_AUTH_TIMEOUT,    /* limits.auth_timeout */
    GW_LIMIT_HTTP_DEADLINE,   /* http.header_timeout, body_timeout, min_body_rate, write_timeout */
    GW_LIMIT_ADDR_VIEWERS,    /* limits.per_address_sessions, for /events viewers */
    GW_LIMIT_COUNT
};

#define GW_LAG_BUCKETS 10 /* bounds of the event-loop lag histogram */

struct gw_metrics {
    uint64_t sessions_open[GW_TRANSPORT_COUNT];  /* gauge */
    uint64_t sessions_total[GW_TRANSPORT_COUNT]; /* counter */
    uint64_t stanzas_to_upstream;                /* client -> server */
    uint64_t stanzas_to_client;                  /* server -> client */
    uint64_t bytes_to_upstream;
    uint64_t bytes_to_client;
    uint64_t upstream_writes;              /* write requests to upstream sockets */
    uint64_t upstream_connects;            /* attempts */
    uint64_t upstream_connected;           /* streams that reached features */
    uint64_t upstream_failures;            /* connect or stream failures, TLS apart */
    uint64_t upstream_tls_failures;        /* handshake or verification failures */
    uint64_t resumable_drops;              /* client sides lost with XEP-0198 resumption on */
    uint64_t resumed;                      /* sessions that resumed one of those (XEP-0198) */
    uint64_t stream_errors[GW_COND_COUNT]; /* sent to clients, by condition */
    uint64_t http_requests;                /* public port */
    uint64_t http_errors;                  /* public port 4xx/5xx answers */
    uint64_t refused[GW_LIMIT_COUNT];      /* clients refused or cut, by limit */
    /* BOSH terminate conditions, by condition (stream_errors counts them too) */
    uint64_t bosh_terminates[GW_COND_COUNT];
    /* gauges that the transports keep: BOSH requests held open, /events streams open */
    uint64_t bosh_held;
    uint64_t sse_viewers;
    /* event-loop lag: how late a periodic timer fired (admin.c), a histogram over
     * gw_lag_bounds_us; each bucket counts the observations within it alone (not cumulative) */
    uint64_t lag_buckets[GW_LAG_BUCKETS];
    uint64_t lag_count;  /* observations */
    uint64_t lag_sum_us; /* their sum, in microseconds */
};

/* The lag histogram's upper bounds, in microseconds (+Inf is lag_count). */
extern const uint64_t gw_lag_bounds_us[GW_LAG_BUCKETS];

/* One lag observation. */
void gw_metrics_observe_lag(struct gw_metrics *m, uint64_t lag_us);

/* A BOSH terminate condition was sent: counted in stream_errors and, apart, in bosh_terminates. */
void gw_metrics_count_terminate(struct gw_metrics *m, enum gw_condition c);

const char *gw_transport_name(enum gw_transport t);

/* A stream error or terminate condition was sent to a client. */
void gw_metrics_count_condition(struct gw_metrics *m, enum gw_condition c);

/* The name of a limit in xmppgw_refused_total{limit=...}. */
const char *gw_limit_name(enum gw_limit l);

#endif
