/* Error codes shared by every module: functions return 0 or a negative enum gw_err. */
#ifndef GW_CORE_ERR_H
#define GW_CORE_ERR_H

enum gw_err {
    GW_OK = 0,
    GW_ENOMEM = -1,  /* an allocation failed */
    GW_EPROTO = -2,  /* the peer broke the protocol */
    GW_ELIMIT = -3,  /* a configured bound was reached */
    GW_EAGAIN = -4,  /* try again later (queue full, not ready) */
    GW_ECLOSED = -5, /* the other side is gone */
    GW_EINVAL = -6,  /* a bad argument or value */
    GW_EIO = -7,     /* the operating system said no */
};

#define GW_MUST_CHECK __attribute__((warn_unused_result))

const char *gw_strerror(int err);

#endif
