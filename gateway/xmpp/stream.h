/* What the session, its upstream and its transports say of one XMPP stream: the attributes of a
 * stream header. Calls: nothing. */
#ifndef GW_XMPP_STREAM_H
#define GW_XMPP_STREAM_H

/* Attributes of the upstream's stream header, as the client should see them. */
struct gw_stream_info {
    const char *id;      /* upstream stream id */
    const char *from;    /* the XMPP domain */
    const char *version; /* "1.0" */
    const char *lang;    /* xml:lang, the one asked for if upstream gave none */
};

#endif
