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
