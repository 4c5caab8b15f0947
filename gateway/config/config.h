/* Configuration: one JSON file (jansson) parsed into a const struct gw_config snapshot, with
 * command-line overrides applied on top. Every key lives in one table with its default, bounds and
 * reload class (config.c); config/README.md documents each. Errors name the key, the line and the
 * column. A reload builds a whole new snapshot and swaps it in (gw_config_reload_merge). */
#ifndef GW_CONFIG_CONFIG_H
#define GW_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/err.h"
#include "core/host.h"
#include "core/log.h"

#define GW_CFG_MAX_LIST 64    /* entries in any list (origins, domains, routes, upstream map) */
#define GW_CFG_NODE_ID_MAX 32 /* bytes of "node_id" */

enum gw_upstream_tls { GW_UPSTREAM_TLS_OFF, GW_UPSTREAM_TLS_STARTTLS, GW_UPSTREAM_TLS_DIRECT };

/* What a SIGHUP does with a changed key: a property of the key in the table, and the "Reload"
 * column of config/README.md. Modules read ctx->cfg where the class says: a LIVE key at each use,
 * a NEW key once when they create the session, stream or parser it governs (and keep the value,
 * not a pointer into the snapshot), a RESTART key at start only. */
enum gw_config_reload {
    GW_RELOAD_LIVE,    /* the new value holds at once, for everything (origins, log level) */
    GW_RELOAD_NEW,     /* the new value holds for sessions, streams and parsers created after the
                          reload; existing ones keep what they started with (limits, upstreams) */
    GW_RELOAD_RESTART, /* read once at start (listeners, TLS files, paths): a reload keeps the
                          running value, and the gateway says that a restart is needed */
};

struct gw_addr {
    char host[256]; /* name or literal; IPv6 literals without brackets */
    uint16_t port;
};

struct gw_upstream_cfg {
    char domain[256];         /* XMPP domain this entry serves; "" for the default entry */
    struct gw_addr addr;      /* where to connect */
    enum gw_upstream_tls tls; /* off | starttls | direct */
};

struct gw_config {
    /* public port (libwebsockets) */
    struct gw_addr listen;   /* "listen": default 127.0.0.1:5280 */
    char tls_cert[1024];     /* "tls.cert": PEM for the public port; "" = plain HTTP */
    char tls_key[1024];      /* "tls.key" */
    char static_root[1024];  /* "static.root": default "static" (relative to cwd) */
    char node_modules[1024]; /* "static.node_modules": default "node_modules" */

    /* admin port (libmicrohttpd) */
    struct gw_addr admin_listen; /* "admin.listen": default 127.0.0.1:5281 */
    char admin_token[256];       /* "admin.token": bearer token for the /api/ paths; "" = none;
                                    required when admin_listen is not a loopback address */
    char admin_hosts[GW_CFG_MAX_LIST][256]; /* "admin.hosts": host names (lowercase) the admin
                                               port answers to besides IP literals and
                                               "localhost" (Host header check) */
    unsigned n_admin_hosts;

    /* XMPP domains and upstreams */
    char domains[GW_CFG_MAX_LIST][256]; /* "domains": served XMPP domains; none = any domain the
                                           default upstream will take */
    unsigned n_domains;
    bool has_default_upstream;       /* "upstream" given (or --upstream) */
    struct gw_upstream_cfg upstream; /* "upstream": {"host","port","tls"} for every domain */
    struct gw_upstream_cfg upstream_map[GW_CFG_MAX_LIST]; /* "upstreams": {"domain": {...}} */
    unsigned n_upstream_map;
    char upstream_ca[1024];   /* "upstream_ca": extra trusted CA file (PEM) */
    unsigned connect_timeout; /* "connect_timeout" s: 10 (1..300) */

    /* browser origins */
    char origins[GW_CFG_MAX_LIST][256]; /* "origins": exact origins ("https://a.example"), "*",
                                           "same-host", "localhost"; default
                                           ["same-host","localhost"] */
    unsigned n_origins;

    /* behind a reverse proxy */
    char trusted_proxies[GW_CFG_MAX_LIST][64]; /* "trusted_proxies": addresses and CIDR ranges
                                                  whose forwarding headers are believed
                                                  (gw_config_parse_cidr); default loopback */
    unsigned n_trusted_proxies;
    char public_url[1024];                /* "public_url": "https://example.org/chat/", "" = none
                                             (gw_config_parse_public_url) */
    char node_id[GW_CFG_NODE_ID_MAX + 1]; /* "node_id": this node's name among several behind
                                             one proxy ([A-Za-z0-9_-]); "" = a single node */

    /* WebSocket */
    char ws_path[128];         /* "websocket.path": "/xmpp-websocket" */
    unsigned ws_ping_interval; /* "websocket.ping_interval" s: 30 (0=off, 0..3600) */
    bool ws_deflate;           /* "websocket.deflate": false (see config/README.md) */

    /* BOSH */
    char bosh_path[128];                    /* "bosh.path": "/http-bind" */
    unsigned bosh_max_wait;                 /* "bosh.max_wait" s: 50 (1..600) */
    unsigned bosh_max_hold;                 /* "bosh.max_hold": 1 (1..10) */
    unsigned bosh_max_requests;             /* "bosh.max_requests": 2 (hold+1 at least; 2..16) */
    unsigned bosh_inactivity;               /* "bosh.inactivity" s: 60 (5..3600) */
    unsigned bosh_max_pause;                /* "bosh.max_pause" s: 120 (0..3600) */
    unsigned bosh_polling;                  /* "bosh.polling" s: 2 (0..60) */
    size_t bosh_max_body;                   /* "bosh.max_body" bytes: 1 MiB (1 KiB..64 MiB) */
    char bosh_routes[GW_CFG_MAX_LIST][300]; /* "bosh.routes": allowed route values
                                               ("xmpp:host:port"); none = route ignored */
    unsigned n_bosh_routes;

    /* limits */
    size_t max_stanza;             /* "limits.max_stanza" bytes: 262144 (1 KiB..16 MiB) */
    unsigned max_depth;            /* "limits.max_depth": 64 (4..1024) */
    unsigned max_attrs;            /* "limits.max_attrs": 64 (4..1024) */
    unsigned max_sessions;         /* "limits.max_sessions": 10000 (1..1000000) */
    size_t send_queue;             /* "limits.send_queue" bytes per session: 1 MiB
                                      (64 KiB..64 MiB); past it upstream reads pause */
    unsigned auth_timeout;         /* "limits.auth_timeout" s: 60 (5..3600): bind a JID by then */
    unsigned per_address_sessions; /* "limits.per_address_sessions": 500 (1..1000000) */
    unsigned per_address_unauth;   /* "limits.per_address_unauthenticated": 20 (1..100000) */
    unsigned per_address_rate;     /* "limits.per_address_rate" new sessions/s: 10 */
    unsigned per_address_burst;    /* "limits.per_address_burst": 50 new sessions at once */
    unsigned per_address_pending;  /* "limits.per_address_pending": 50 connections that have
                                      not yet sent <open/> or a BOSH body */
    size_t per_address_body_bytes; /* "limits.per_address_body_bytes": 16 MiB of request
                                      bodies being read (64 KiB..1 GiB) */

    /* HTTP requests on the public port */
    unsigned http_header_timeout; /* "http.header_timeout" s: 10 (1..300), from the first byte */
    unsigned http_body_timeout;   /* "http.body_timeout" s: 30 (1..600), from the headers */
    size_t http_min_body_rate;    /* "http.min_body_rate" bytes/s: 512 (0 = none) */
    unsigned http_write_timeout;  /* "http.write_timeout" s: 30 (1..600) for an answer to go */

    /* visitor mode (optional: off while visitors.domain is "") */
    char visitors_domain[256];         /* "visitors.domain": the stream 'to' that selects it */
    char visitors_jid[1024];           /* "visitors.jid": the one shared upstream account */
    char visitors_password_file[1024]; /* "visitors.password_file": file holding its password */
    char visitors_password[1024];      /* "visitors.password": the password (never logged) */
    char visitors_resource_prefix[65]; /* "visitors.resource_prefix": "visitor-" */
    char visitors_pubsub[GW_CFG_MAX_LIST][256]; /* "visitors.allow.pubsub": pubsub services
                                                   visitors may subscribe to (lowercase) */
    unsigned n_visitors_pubsub;
    bool visitors_disco;    /* "visitors.allow.disco": true: disco#info and #items allowed */
    bool visitors_presence; /* "visitors.allow.presence": true: presence without 'to' allowed */

    /* live-updates hub (optional: off while live.jid is "") */
    char live_jid[1024];                   /* "live.jid": the hub's account ("hub@example.org") */
    char live_password_file[1024];         /* "live.password_file": file holding its password */
    char live_password[1024];              /* "live.password": the password itself (never logged) */
    char live_nodes[GW_CFG_MAX_LIST][512]; /* "live.nodes": "service/node" allowlist; a '*'
                                              ending the node matches any suffix */
    unsigned n_live_nodes;
    unsigned live_replay;      /* "live.replay": 20 items kept per node (0..1000) */
    unsigned live_heartbeat;   /* "live.heartbeat" s: 15 (1..3600) between ": hb" comments */
    unsigned live_linger;      /* "live.linger" s: 60 (0..86400) subscribed after the last viewer */
    unsigned live_max_viewers; /* "live.max_viewers": 20000 (1..1000000) at once */
    bool live_demo_publish;    /* "live.demo_publish": false; POST /demo/publish, loopback only */

    enum gw_log_level log_level; /* "log.level": "info" */
    char log_format[8];          /* "log.format": "plain" (text lines) or "json" (JSON lines) */

    char digest[65]; /* not a key: SHA-256 (hex) of the file's bytes as gw_config_load read them;
                        "" when no file was loaded (shown by the admin /status) */

    unsigned drain_grace; /* "drain.grace" s: 20 (0..3600) from the start of a drain until its
                             sessions are ended */
};

/* Fill every field with its default. */
void gw_config_defaults(struct gw_config *cfg);

/* Parse FILE over the defaults. On error returns GW_EINVAL and writes one line into err
 * ("FILE:LINE:COL: key 'bosh.max_wait': must be between 1 and 600"). */
int gw_config_load(struct gw_config *cfg, const char *path, char *err, size_t errlen) GW_MUST_CHECK;

/* Same, from a string (name is used in messages). */
int gw_config_load_string(struct gw_config *cfg, const char *json, const char *name, char *err,
                          size_t errlen) GW_MUST_CHECK;

/* Parse "host:port", "[v6]:port" into addr (core/host.h's rules); GW_EINVAL leaves addr as it was.
 */
int gw_config_parse_addr(const char *s, struct gw_addr *addr) GW_MUST_CHECK;
int gw_config_parse_tls(const char *s, enum gw_upstream_tls *out) GW_MUST_CHECK;
const char *gw_config_tls_name(enum gw_upstream_tls t);

/* An address range: "192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "::1" (no brackets). A bare
 * address is a whole /32 or /128; the bits past the prefix must be zero. */
struct gw_cidr {
    bool v6;           /* an IPv6 range (16 bytes), else IPv4 (the first 4) */
    uint8_t bytes[16]; /* the network, in network order */
    unsigned prefix;   /* bits that must match: 0..32 or 0..128 */
};
int gw_config_parse_cidr(const char *s, struct gw_cidr *out) GW_MUST_CHECK;

/* public_url split up: "https://example.org:8443/chat/" -> https, "example.org:8443", "/chat". */
#define GW_PUBLIC_PREFIX_MAX 127 /* bytes of the path prefix */
struct gw_public_url {
    bool https;                            /* the scheme is https (else http) */
    char authority[GW_HOST_MAX + 7];       /* host[:port] as written (IPv6 in brackets) */
    char prefix[GW_PUBLIC_PREFIX_MAX + 1]; /* the path without its trailing '/'; "" for "/" */
};
/* "http(s)://host[:port]" then nothing, "/", or a path of "/"-separated segments of letters,
 * digits and "-._~" (no ".", "..", empty segments, query or fragment), with or without a
 * trailing '/'. GW_EINVAL for anything else (out untouched). */
int gw_config_parse_public_url(const char *s, struct gw_public_url *out) GW_MUST_CHECK;

/* Checks every value against the table, and across keys (e.g. no upstream for a listed domain,
 * tls.cert without tls.key, admin.listen off loopback without admin.token); call after
 * command-line overrides. */
int gw_config_validate(const struct gw_config *cfg, char *err, size_t errlen) GW_MUST_CHECK;

/* The reload class of key, named as config/README.md names it ("bosh.max_wait", "upstreams"; a
 * member of "upstream" has the class of "upstream"). GW_EINVAL when key is no key. */
int gw_config_key_reload(const char *key, enum gw_config_reload *out) GW_MUST_CHECK;

/* Reload, step two. next is a whole new snapshot (defaults, file, command line), already valid
 * (gw_config_validate); cur is the running one (valid too). For every key of class
 * GW_RELOAD_RESTART whose value differs, copies cur's value into next and names the key in kept
 * ("listen, bosh.path"; "" when none; cut short if keptlen is too small). One live key follows a
 * kept restart key: when the admin port stays on a non-loopback address and next has no
 * admin.token, cur's token is kept too. Returns how many keys were kept. next stays valid. */
int gw_config_reload_merge(struct gw_config *next, const struct gw_config *cur, char *kept,
                           size_t keptlen) GW_MUST_CHECK;

/* The hub's password (live.password_file's first line, else live.password) into out. GW_EINVAL
 * with one line in err naming the key when the file cannot be read, is empty or too long. The
 * value never appears in err. */
int gw_config_live_password(const struct gw_config *cfg, char *out, size_t outlen, char *err,
                            size_t errlen) GW_MUST_CHECK;

/* The visitors' shared password (visitors.password_file's first line, else visitors.password)
 * into out. GW_EINVAL with one line in err naming the key when the file cannot be read, is empty
 * or too long. The value never appears in err. */
int gw_config_visitors_password(const struct gw_config *cfg, char *out, size_t outlen, char *err,
                                size_t errlen) GW_MUST_CHECK;

/* Which upstream serves this XMPP domain (case-insensitive)? NULL = domain not served. The result
 * points into cfg: copy what must outlive the current callback (a reload frees old snapshots). */
const struct gw_upstream_cfg *gw_config_upstream_for(const struct gw_config *cfg,
                                                     const char *domain);

#endif
