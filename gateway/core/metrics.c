/* Names for the counters' labels. */
#include "core/metrics.h"

const char *gw_transport_name(enum gw_transport t)
{
    switch (t) {
    case GW_TRANSPORT_WS:
        return "websocket";
    case GW_TRANSPORT_BOSH:
        return "bosh";
    case GW_TRANSPORT_INTERNAL:
        return "internal";
    default:
        return "?";
    }
}

void gw_metrics_count_condition(struct gw_metrics *m, enum gw_condition c)
{
    if (c == GW_COND_NONE)
        return;
    m->stream_errors[c >= 0 && c < GW_COND_COUNT ? c : GW_COND_undefined_condition]++;
}

void gw_metrics_count_terminate(struct gw_metrics *m, enum gw_condition c)
{
    if (c == GW_COND_NONE)
        return;
    gw_metrics_count_condition(m, c);
    m->bosh_terminates[c >= 0 && c < GW_COND_COUNT ? c : GW_COND_undefined_condition]++;
}

/* From 1 ms (a loop at rest) to 2.5 s (a loop stuck in one callback). */
const uint64_t gw_lag_bounds_us[GW_LAG_BUCKETS] = {1000,   5000,   10000,  25000,   50000,
                                                   100000, 250000, 500000, 1000000, 2500000};

void gw_metrics_observe_lag(struct gw_metrics *m, uint64_t lag_us)
{
    for (int i = 0; i < GW_LAG_BUCKETS; i++) {
        if (lag_us <= gw_lag_bounds_us[i]) {
            m->lag_buckets[i]++;
            break;
        }
    }
    m->lag_count++;
    m->lag_sum_us += lag_us;
}

const char *gw_limit_name(enum gw_limit l)
{
    static const char *const names[GW_LIMIT_COUNT] = {
        [GW_LIMIT_SESSIONS] = "sessions",
        [GW_LIMIT_ADDR_SESSIONS] = "address_sessions",
        [GW_LIMIT_ADDR_UNAUTH] = "address_unauthenticated",
        [GW_LIMIT_ADDR_RATE] = "address_rate",
        [GW_LIMIT_ADDR_PENDING] = "address_pending",
        [GW_LIMIT_ADDR_BODY_BYTES] = "address_body_bytes",
        [GW_LIMIT_AUTH_TIMEOUT] = "auth_timeout",
        [GW_LIMIT_HTTP_DEADLINE] = "http_deadline",
        [GW_LIMIT_ADDR_VIEWERS] = "address_viewers",
    };
    return (unsigned)l < GW_LIMIT_COUNT ? names[l] : "?";
}
