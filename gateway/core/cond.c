/* The condition table's names and flags (cond.h). Calls: nothing. */
#include "core/cond.h"

#include <string.h>

struct cond_def {
    const char *name;
    unsigned flags;
};

#define GW_COND_DEF(id, name, flags) {name, flags},
static const struct cond_def conds[] = {GW_CONDITIONS(GW_COND_DEF)};
#undef GW_COND_DEF

const char *gw_condition_name(enum gw_condition c)
{
    return c >= 0 && c < GW_COND_COUNT ? conds[c].name : "";
}

enum gw_condition gw_condition_from_name_n(const char *name, size_t n)
{
    for (int i = 0; i < GW_COND_COUNT; i++)
        if (strlen(conds[i].name) == n && memcmp(conds[i].name, name, n) == 0)
            return (enum gw_condition)i;
    return GW_COND_COUNT;
}

enum gw_condition gw_condition_from_name(const char *name)
{
    return name ? gw_condition_from_name_n(name, strlen(name)) : GW_COND_COUNT;
}

bool gw_condition_is_stream(enum gw_condition c)
{
    return c >= 0 && c < GW_COND_COUNT && (conds[c].flags & GW_CF_STREAM);
}

bool gw_condition_is_bosh(enum gw_condition c)
{
    return c >= 0 && c < GW_COND_COUNT && (conds[c].flags & GW_CF_BOSH);
}
