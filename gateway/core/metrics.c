/* Names for the counters' labels. */
#include "core/metrics.h"

#include <string.h>

#define GW_COND_NAME(id, name) name,
static const char *const cond_names[] = {GW_CONDITIONS(GW_COND_NAME)};
#undef GW_COND_NAME

const char *gw_condition_name(enum gw_condition c)
{
    return (unsigned)c < GW_COND_COUNT ? cond_names[c] : "undefined-condition";
}

enum gw_condition gw_condition_from_name(const char *name)
{
    for (unsigned i = 0; i < GW_COND_COUNT; i++)
        if (strcmp(cond_names[i], name) == 0)
            return (enum gw_condition)i;
    return GW_COND_COUNT;
}

const char *gw_transport_name(enum gw_transport t)
{
    switch (t) {
    case GW_TRANSPORT_WS: return "websocket";
    case GW_TRANSPORT_BOSH: return "bosh";
    default: return "?";
    }
}
