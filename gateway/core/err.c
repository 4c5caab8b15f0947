/* Names for enum gw_err. */
#include "core/err.h"

const char *gw_strerror(int err)
{
    switch (err) {
    case GW_OK:
        return "ok";
    case GW_ENOMEM:
        return "out of memory";
    case GW_EPROTO:
        return "protocol error";
    case GW_ELIMIT:
        return "limit reached";
    case GW_EAGAIN:
        return "try again";
    case GW_ECLOSED:
        return "closed";
    case GW_EINVAL:
        return "invalid value";
    case GW_EIO:
        return "I/O error";
    default:
        return "unknown error";
    }
}
