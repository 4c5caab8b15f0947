/* Counters the admin port exposes. Plain integers, written only on the loop thread. */
#ifndef GW_CORE_METRICS_H
#define GW_CORE_METRICS_H

#include <stdint.h>

enum gw_transport { GW_TRANSPORT_WS, GW_TRANSPORT_BOSH, GW_TRANSPORT_COUNT };

/* Stream error / BOSH terminate conditions counted by name (RFC 6120 4.9.3, XEP-0124 17). */
#define GW_CONDITIONS(X)                                                                           \
    X(bad_format, "bad-format")                                                                    \
    X(bad_request, "bad-request")                                                                  \
    X(conflict, "conflict")                                                                        \
    X(connection_timeout, "connection-timeout")                                                    \
    X(host_gone, "host-gone")                                                                      \
    X(host_unknown, "host-unknown")                                                                \
    X(improper_addressing, "improper-addressing")                                                  \
    X(internal_server_error, "internal-server-error")                                              \
    X(invalid_namespace, "invalid-namespace")                                                      \
    X(invalid_xml, "invalid-xml")                                                                  \
    X(item_not_found, "item-not-found")                                                            \
    X(not_authorized, "not-authorized")                                                            \
    X(not_well_formed, "not-well-formed")                                                          \
    X(other_request, "other-request")                                                              \
    X(policy_violation, "policy-violation")                                                        \
    X(remote_connection_failed, "remote-connection-failed")                                        \
    X(remote_stream_error, "remote-stream-error")                                                  \
    X(reset, "reset")                                                                              \
    X(resource_constraint, "resource-constraint")                                                  \
    X(restricted_xml, "restricted-xml")                                                            \
    X(see_other_host, "see-other-host")                                                            \
    X(see_other_uri, "see-other-uri")                                                              \
    X(system_shutdown, "system-shutdown")                                                          \
    X(undefined_condition, "undefined-condition")                                                  \
    X(unsupported_encoding, "unsupported-encoding")                                                \
    X(unsupported_feature, "unsupported-feature")                                                  \
    X(unsupported_stanza_type, "unsupported-stanza-type")                                          \
    X(unsupported_version, "unsupported-version")

#define GW_COND_ENUM(id, name) GW_COND_##id,
enum gw_condition { GW_CONDITIONS(GW_COND_ENUM) GW_COND_COUNT };
#undef GW_COND_ENUM

const char *gw_condition_name(enum gw_condition c);
/* Returns GW_COND_COUNT when the name is not a known condition. */
enum gw_condition gw_condition_from_name(const char *name);

struct gw_metrics {
    uint64_t sessions_open[GW_TRANSPORT_COUNT];  /* gauge */
    uint64_t sessions_total[GW_TRANSPORT_COUNT]; /* counter */
    uint64_t stanzas_to_upstream;                /* client -> server */
    uint64_t stanzas_to_client;                  /* server -> client */
    uint64_t bytes_to_upstream;
    uint64_t bytes_to_client;
    uint64_t upstream_connects;      /* attempts */
    uint64_t upstream_connected;     /* streams that reached features */
    uint64_t upstream_failures;      /* connect or stream failures, TLS apart */
    uint64_t upstream_tls_failures;  /* handshake or verification failures */
    uint64_t stream_errors[GW_COND_COUNT]; /* sent to clients, by condition */
    uint64_t http_requests;          /* public port */
    uint64_t http_errors;            /* public port 4xx/5xx answers */
};

const char *gw_transport_name(enum gw_transport t);

#endif
