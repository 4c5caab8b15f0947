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
