/* Conditions: why a stream or a BOSH session ends. One table says, for every condition, its name
 * on the wire and where it may be sent: as an RFC 6120 stream error (section 4.9.3), as an
 * XEP-0124 terminate condition (section 17), or both. Inside the daemon a condition is always an
 * enum gw_condition; the name is made only at the wire and read only from it. Calls: nothing. */
#ifndef GW_CORE_COND_H
#define GW_CORE_COND_H

#include <stdbool.h>
#include <stddef.h>

#define GW_CF_STREAM 1u /* an RFC 6120 stream error condition */
#define GW_CF_BOSH 2u   /* an XEP-0124 terminate condition */

/* clang-format off */
#define GW_CONDITIONS(X)                                                   \
    X(bad_format,              "bad-format",              GW_CF_STREAM)              \
    X(bad_namespace_prefix,    "bad-namespace-prefix",    GW_CF_STREAM)              \
    X(bad_request,             "bad-request",             GW_CF_BOSH)                \
    X(conflict,                "conflict",                GW_CF_STREAM)              \
    X(connection_timeout,      "connection-timeout",      GW_CF_STREAM)              \
    X(host_gone,               "host-gone",               GW_CF_STREAM | GW_CF_BOSH) \
    X(host_unknown,            "host-unknown",            GW_CF_STREAM | GW_CF_BOSH) \
    X(improper_addressing,     "improper-addressing",     GW_CF_STREAM | GW_CF_BOSH) \
    X(internal_server_error,   "internal-server-error",   GW_CF_STREAM | GW_CF_BOSH) \
    X(invalid_from,            "invalid-from",            GW_CF_STREAM)              \
    X(invalid_namespace,       "invalid-namespace",       GW_CF_STREAM)              \
    X(invalid_xml,             "invalid-xml",             GW_CF_STREAM)              \
    X(item_not_found,          "item-not-found",          GW_CF_BOSH)                \
    X(not_authorized,          "not-authorized",          GW_CF_STREAM)              \
    X(not_well_formed,         "not-well-formed",         GW_CF_STREAM)              \
    X(other_request,           "other-request",           GW_CF_BOSH)                \
    X(policy_violation,        "policy-violation",        GW_CF_STREAM | GW_CF_BOSH) \
    X(remote_connection_failed,"remote-connection-failed",GW_CF_STREAM | GW_CF_BOSH) \
    X(remote_stream_error,     "remote-stream-error",     GW_CF_BOSH)                \
    X(reset,                   "reset",                   GW_CF_STREAM)              \
    X(resource_constraint,     "resource-constraint",     GW_CF_STREAM)              \
    X(restricted_xml,          "restricted-xml",          GW_CF_STREAM)              \
    X(see_other_host,          "see-other-host",          GW_CF_STREAM)              \
    X(see_other_uri,           "see-other-uri",           GW_CF_BOSH)                \
    X(system_shutdown,         "system-shutdown",         GW_CF_STREAM | GW_CF_BOSH) \
    X(undefined_condition,     "undefined-condition",     GW_CF_STREAM | GW_CF_BOSH) \
    X(unsupported_encoding,    "unsupported-encoding",    GW_CF_STREAM)              \
    X(unsupported_feature,     "unsupported-feature",     GW_CF_STREAM)              \
    X(unsupported_stanza_type, "unsupported-stanza-type", GW_CF_STREAM)              \
    X(unsupported_version,     "unsupported-version",     GW_CF_STREAM)
/* clang-format on */

#define GW_COND_ENUM(id, name, flags) GW_COND_##id,
enum gw_condition {
    GW_COND_NONE = -1, /* no condition: a clean close */
    GW_CONDITIONS(GW_COND_ENUM) GW_COND_COUNT
};
#undef GW_COND_ENUM

/* The wire name; "" for GW_COND_NONE and out-of-range values. */
const char *gw_condition_name(enum gw_condition c);
/* The condition of a wire name; GW_COND_COUNT when the name is not in the table. */
enum gw_condition gw_condition_from_name(const char *name);
/* The same for a name of n bytes (not NUL-terminated). */
enum gw_condition gw_condition_from_name_n(const char *name, size_t n);
bool gw_condition_is_stream(enum gw_condition c);
bool gw_condition_is_bosh(enum gw_condition c);

/* Why a stream or a session ended, as one upstream, session or transport tells the next. */
struct gw_close_reason {
    enum gw_condition cond; /* GW_COND_NONE: a clean close */
    const char *text;       /* a short human reason, or NULL */
    const char *err_xml;    /* the upstream's own <stream:error/> element (framed), or NULL */
    size_t err_len;
    bool resumable; /* the upstream stream was left to the server for XEP-0198 resumption (a
                       drain): where the transport can, close the client side without a word
                       (no stream error, no <close/>) so that the client resumes elsewhere */
};

#endif
