/* Configuration: the table of keys (path, type, default, bounds, checks, reload class), the JSON
 * loader and the cross-key checks built on it, the finder that turns a key path back into a line
 * and column, the reload merge, and address / TLS-mode parsing. Calls jansson, core/log (level
 * names), core/host (host, domain and address rules) and libc. */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <openssl/evp.h>
#include "core/host.h"

#define KIB 1024ULL
#define MIB (1024ULL * 1024ULL)
#define FILE_MAX ((size_t)1024 * 1024) /* a config file is a few KiB; refuse anything past this */
#define LOC_DEPTH 4                    /* deepest path: "upstreams" . domain . "port" */
#define KEY_TEXT_MAX 600               /* a dotted key as shown in messages */
#define UPSTREAM_PORT 5222             /* RFC 6120 c2s port */

enum key_type {
    KEY_SECTION,      /* an object whose members are table entries "section.member" */
    KEY_STRING,       /* char[size] */
    KEY_HOST,         /* char[size]: host name or IP literal ("[v6]" accepted, stored bare) */
    KEY_ADDR,         /* struct gw_addr from "host:port" */
    KEY_UINT,         /* unsigned integer of `size` bytes (uint16_t, unsigned, size_t) */
    KEY_BOOL,         /* bool */
    KEY_LIST,         /* char[max][size] plus an unsigned count at count_offset */
    KEY_LOG_LEVEL,    /* enum gw_log_level */
    KEY_TLS_MODE,     /* enum gw_upstream_tls */
    KEY_UPSTREAM,     /* struct gw_upstream_cfg from {"host","port","tls"} */
    KEY_UPSTREAM_MAP, /* struct gw_upstream_cfg[max] from {"domain": {...}} plus a count */
};

/* Checks one string value (or one list entry) beyond its type and length: NULL when fine, else the
 * reason, worded to follow "key 'x': ". */
typedef const char *(*check_fn)(const char *value);

struct key_def {
    const char *path;             /* dotted JSON path; within a section "section.member" */
    enum key_type type;           /* how the value is read and stored */
    size_t offset;                /* of the field in the struct the table describes */
    size_t size;                  /* bytes of the field (lists: of one entry) */
    size_t count_offset;          /* lists and maps: where the entry count lives */
    unsigned max_entries;         /* lists and maps: capacity */
    bool lower;                   /* store ASCII-lowercased (domains, origins) */
    bool required;                /* must be present in its object (upstream host) */
    unsigned long long def;       /* default of numbers and booleans */
    unsigned long long min, max;  /* bounds of numbers */
    const char *def_str;          /* default of strings, addresses, levels, TLS modes */
    const char *const *def_list;  /* default of lists (NULL-terminated), NULL = empty */
    check_fn check;               /* extra check on strings and list entries, or NULL */
    enum gw_config_reload reload; /* what SIGHUP does with a change (config.h) */
};

/* Where the value being applied sits in the document: keys and array indexes from the top. */
struct loc {
    const char *key[LOC_DEPTH]; /* NULL at a level that is an array index */
    size_t index[LOC_DEPTH];    /* the index at such a level */
    unsigned n;                 /* levels in use */
};

/* One load in progress. */
struct loader {
    struct gw_config *cfg; /* being filled (a copy: the caller's is replaced only on success) */
    const char *text;      /* the raw JSON, to find positions in */
    const char *name;      /* file name for messages */
    char *err;             /* where the one error line goes (may be NULL) */
    size_t errlen;         /* its size */
    struct loc loc;        /* the value being applied */
};

static const char *check_path(const char *s);
static const char *check_domain(const char *s);
static const char *check_origin(const char *s);
static const char *check_route(const char *s);
static const char *check_token(const char *s);
static const char *check_admin_host(const char *s);
static const char *check_domain_or_empty(const char *s);
static const char *check_bare_jid(const char *s);
static const char *check_log_format(const char *s);
static const char *check_node_id(const char *s);
static const char *check_resource_prefix(const char *s);
static const char *check_live_node(const char *s);
static const char *check_cidr(const char *s);
static const char *check_public_url(const char *s);

/* The table reads best one key per line. */
/* clang-format off */
#define FIELD(st, f) offsetof(struct st, f), sizeof(((struct st *)0)->f)
#define ENTRY(st, f) offsetof(struct st, f), sizeof(((struct st *)0)->f[0])
#define ENTRIES(st, f) (unsigned)(sizeof(((struct st *)0)->f) / sizeof(((struct st *)0)->f[0]))

/* Each key names its reload class (config.h) right after its path. */
#define LIVE GW_RELOAD_LIVE
#define NEW GW_RELOAD_NEW
#define RESTART GW_RELOAD_RESTART

#define SECTION(p) {.path = (p), .type = KEY_SECTION}
#define STRING(p, r, f, d, chk) {.path = (p), .reload = (r), .type = KEY_STRING,                   \
                                 FIELD(gw_config, f), .def_str = (d), .check = (chk)}
#define ADDR(p, r, f, d) {.path = (p), .reload = (r), .type = KEY_ADDR, FIELD(gw_config, f),       \
                          .def_str = (d)}
#define UINT(p, r, f, d, lo, hi) {.path = (p), .reload = (r), .type = KEY_UINT,                    \
                                  FIELD(gw_config, f), .def = (d), .min = (lo), .max = (hi)}
#define BOOL(p, r, f, d) {.path = (p), .reload = (r), .type = KEY_BOOL, FIELD(gw_config, f),       \
                          .def = (d)}
#define LIST(p, r, f, cnt, d, chk, low) {.path = (p), .reload = (r), .type = KEY_LIST,             \
                                         ENTRY(gw_config, f),                                      \
                                         .count_offset = offsetof(struct gw_config, cnt),          \
                                         .max_entries = ENTRIES(gw_config, f), .def_list = (d),    \
                                         .check = (chk), .lower = (low)}

static const char *const default_origins[] = {"same-host", "localhost", NULL};
static const char *const default_trusted_proxies[] = {"127.0.0.0/8", "::1/128", NULL};

/* Every key of the file. The order is the order of config/README.md and of "known keys" hints.
 * The reload class says what the code can honour: RESTART for what is read once at start
 * (listeners, lws mounts, the upstream SSL_CTX, lws's ping and extension settings), NEW for what
 * is read when a session, stream or parser is created, LIVE for what is read at each use. */
static const struct key_def config_keys[] = {
    ADDR("listen", RESTART, listen, "127.0.0.1:5280"),
    SECTION("tls"),
    STRING("tls.cert", RESTART, tls_cert, "", NULL),
    STRING("tls.key", RESTART, tls_key, "", NULL),
    SECTION("static"),
    STRING("static.root", RESTART, static_root, "static", NULL),
    STRING("static.node_modules", RESTART, node_modules, "node_modules", NULL),
    SECTION("admin"),
    ADDR("admin.listen", RESTART, admin_listen, "127.0.0.1:5281"),
    STRING("admin.token", LIVE, admin_token, "", check_token),
    LIST("admin.hosts", LIVE, admin_hosts, n_admin_hosts, NULL, check_admin_host, true),
    LIST("domains", NEW, domains, n_domains, NULL, check_domain, true),
    {.path = "upstream", .reload = NEW, .type = KEY_UPSTREAM, FIELD(gw_config, upstream)},
    {.path = "upstreams", .reload = NEW, .type = KEY_UPSTREAM_MAP, ENTRY(gw_config, upstream_map),
     .count_offset = offsetof(struct gw_config, n_upstream_map),
     .max_entries = ENTRIES(gw_config, upstream_map)},
    STRING("upstream_ca", RESTART, upstream_ca, "", NULL),
    UINT("connect_timeout", NEW, connect_timeout, 10, 1, 300),
    LIST("origins", LIVE, origins, n_origins, default_origins, check_origin, true),
    LIST("trusted_proxies", LIVE, trusted_proxies, n_trusted_proxies, default_trusted_proxies,
         check_cidr, true),
    STRING("public_url", RESTART, public_url, "", check_public_url),
    STRING("node_id", RESTART, node_id, "", check_node_id),
    SECTION("websocket"),
    STRING("websocket.path", RESTART, ws_path, "/xmpp-websocket", check_path),
    UINT("websocket.ping_interval", RESTART, ws_ping_interval, 30, 0, 3600),
    BOOL("websocket.deflate", RESTART, ws_deflate, false),
    SECTION("bosh"),
    STRING("bosh.path", RESTART, bosh_path, "/http-bind", check_path),
    UINT("bosh.max_wait", NEW, bosh_max_wait, 50, 1, 600),
    UINT("bosh.max_hold", NEW, bosh_max_hold, 1, 1, 10),
    UINT("bosh.max_requests", NEW, bosh_max_requests, 2, 2, 16),
    UINT("bosh.inactivity", NEW, bosh_inactivity, 60, 5, 3600),
    UINT("bosh.max_pause", NEW, bosh_max_pause, 120, 0, 3600),
    UINT("bosh.polling", NEW, bosh_polling, 2, 0, 60),
    UINT("bosh.max_body", LIVE, bosh_max_body, MIB, KIB, 64 * MIB),
    LIST("bosh.routes", NEW, bosh_routes, n_bosh_routes, NULL, check_route, false),
    SECTION("limits"),
    UINT("limits.max_stanza", NEW, max_stanza, 256 * KIB, KIB, 16 * MIB),
    UINT("limits.max_depth", NEW, max_depth, 64, 4, 1024),
    UINT("limits.max_attrs", NEW, max_attrs, 64, 4, 1024),
    UINT("limits.max_sessions", LIVE, max_sessions, 10000, 1, 1000000),
    UINT("limits.send_queue", NEW, send_queue, MIB, 64 * KIB, 64 * MIB),
    UINT("limits.auth_timeout", NEW, auth_timeout, 60, 5, 3600),
    UINT("limits.per_address_sessions", LIVE, per_address_sessions, 500, 1, 1000000),
    UINT("limits.per_address_unauthenticated", LIVE, per_address_unauth, 20, 1, 100000),
    UINT("limits.per_address_rate", LIVE, per_address_rate, 10, 1, 100000),
    UINT("limits.per_address_burst", LIVE, per_address_burst, 50, 1, 100000),
    UINT("limits.per_address_pending", LIVE, per_address_pending, 50, 1, 100000),
    UINT("limits.per_address_body_bytes", LIVE, per_address_body_bytes, 16 * MIB, 64 * KIB,
         1024 * MIB),
    SECTION("http"),
    UINT("http.header_timeout", RESTART, http_header_timeout, 10, 1, 300),
    UINT("http.body_timeout", LIVE, http_body_timeout, 30, 1, 600),
    UINT("http.min_body_rate", LIVE, http_min_body_rate, 512, 0, 1024 * MIB),
    UINT("http.write_timeout", LIVE, http_write_timeout, 30, 1, 600),
    SECTION("visitors"),
    STRING("visitors.domain", NEW, visitors_domain, "", check_domain_or_empty),
    STRING("visitors.jid", NEW, visitors_jid, "", check_bare_jid),
    STRING("visitors.password_file", NEW, visitors_password_file, "", NULL),
    STRING("visitors.password", NEW, visitors_password, "", NULL),
    STRING("visitors.resource_prefix", NEW, visitors_resource_prefix, "visitor-",
           check_resource_prefix),
    SECTION("visitors.allow"),
    LIST("visitors.allow.pubsub", LIVE, visitors_pubsub, n_visitors_pubsub, NULL, check_domain,
         true),
    BOOL("visitors.allow.disco", LIVE, visitors_disco, true),
    BOOL("visitors.allow.presence", LIVE, visitors_presence, true),
    SECTION("live"),
    STRING("live.jid", RESTART, live_jid, "", check_bare_jid),
    STRING("live.password_file", RESTART, live_password_file, "", NULL),
    STRING("live.password", RESTART, live_password, "", NULL),
    LIST("live.nodes", RESTART, live_nodes, n_live_nodes, NULL, check_live_node, false),
    UINT("live.replay", RESTART, live_replay, 20, 0, 1000),
    UINT("live.heartbeat", RESTART, live_heartbeat, 15, 1, 3600),
    UINT("live.linger", RESTART, live_linger, 60, 0, 86400),
    UINT("live.max_viewers", LIVE, live_max_viewers, 20000, 1, 1000000),
    BOOL("live.demo_publish", RESTART, live_demo_publish, false),
    SECTION("log"),
    {.path = "log.level", .reload = LIVE, .type = KEY_LOG_LEVEL, FIELD(gw_config, log_level),
     .def_str = "info"},
    STRING("log.format", LIVE, log_format, "plain", check_log_format),
    SECTION("drain"),
    UINT("drain.grace", LIVE, drain_grace, 20, 0, 3600),
};

#undef LIVE
#undef NEW
#undef RESTART

/* The members of "upstream" and of each "upstreams" entry, relative to struct gw_upstream_cfg. */
static const struct key_def upstream_keys[] = {
    {.path = "host", .type = KEY_HOST, FIELD(gw_upstream_cfg, addr.host), .required = true},
    {.path = "port", .type = KEY_UINT, FIELD(gw_upstream_cfg, addr.port), .def = UPSTREAM_PORT,
     .min = 1, .max = 65535},
    {.path = "tls", .type = KEY_TLS_MODE, FIELD(gw_upstream_cfg, tls), .def_str = "starttls"},
};

/* clang-format on */

#define N_CONFIG_KEYS (sizeof(config_keys) / sizeof(config_keys[0]))
#define N_UPSTREAM_KEYS (sizeof(upstream_keys) / sizeof(upstream_keys[0]))

/* apply_object() tracks the keys it has seen in a 64-bit mask. */
_Static_assert(N_CONFIG_KEYS < 128 && N_UPSTREAM_KEYS < 128, "key tables must stay below 128");

/* ---- small string helpers ---- */

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ascii_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool ascii_case_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (ascii_lower(*a) != ascii_lower(*b))
            return false;
    return *a == *b;
}

/* Copies s (which fits: callers checked) and lowercases ASCII letters when asked. */
static void copy_field(char *dst, size_t size, const char *s, bool lower)
{
    size_t n = strlen(s);
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = lower ? ascii_lower(s[i]) : s[i];
    dst[n] = '\0';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- hosts, addresses, TLS modes ---- */

int gw_config_parse_addr(const char *s, struct gw_addr *addr)
{
    if (!s || !addr)
        return GW_EINVAL;
    struct gw_addr a;
    memset(&a, 0, sizeof(a)); /* no stack bytes left behind the host's NUL */
    if (gw_host_parse_addr(s, a.host, sizeof(a.host), &a.port) != 0)
        return GW_EINVAL;
    *addr = a;
    return 0;
}

static const char *const tls_names[] = {"off", "starttls", "direct"};

int gw_config_parse_tls(const char *s, enum gw_upstream_tls *out)
{
    for (unsigned i = 0; s && i < sizeof(tls_names) / sizeof(tls_names[0]); i++) {
        if (strcmp(s, tls_names[i]) == 0) {
            *out = (enum gw_upstream_tls)i;
            return 0;
        }
    }
    return GW_EINVAL;
}

const char *gw_config_tls_name(enum gw_upstream_tls t)
{
    return (unsigned)t < sizeof(tls_names) / sizeof(tls_names[0]) ? tls_names[t] : "?";
}

static int parse_prefix_len(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    if (!*s || strlen(s) > 3)
        return GW_EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return GW_EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    if (v > max)
        return GW_EINVAL;
    *out = v;
    return 0;
}

int gw_config_parse_cidr(const char *s, struct gw_cidr *out)
{
    if (!s || !out)
        return GW_EINVAL;
    char addr[64];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(addr))
        return GW_EINVAL;
    memcpy(addr, s, n);
    addr[n] = '\0';
    struct gw_cidr c;
    memset(&c, 0, sizeof(c));
    enum gw_host_ip kind = gw_host_ip_literal(addr, n);
    if (kind == GW_HOST_IP_NONE)
        return GW_EINVAL;
    c.v6 = kind == GW_HOST_IP_V6;
    if (inet_pton(c.v6 ? AF_INET6 : AF_INET, addr, c.bytes) != 1)
        return GW_EINVAL;
    unsigned bits = c.v6 ? 128 : 32;
    c.prefix = bits;
    if (slash && parse_prefix_len(slash + 1, bits, &c.prefix) != 0)
        return GW_EINVAL;
    for (unsigned b = c.prefix; b < bits; b++)
        if (c.bytes[b / 8] & (0x80u >> (b % 8)))
            return GW_EINVAL; /* "10.1.2.3/8": a host address where a network is meant */
    *out = c;
    return 0;
}

/* "/a/b-c/" -> "/a/b-c"; "" or "/" -> "". */
static int parse_url_path(const char *p, char *out, size_t outlen)
{
    size_t n = strlen(p);
    if (n && p[n - 1] == '/')
        n--;
    if (n >= outlen)
        return GW_EINVAL;
    for (size_t i = 0; i < n;) {
        if (p[i] != '/')
            return GW_EINVAL;
        size_t seg = ++i;
        while (i < n && (ascii_alnum(p[i]) || strchr("-._~", p[i])))
            i++;
        size_t len = i - seg;
        bool dots = (len == 1 || len == 2) && strncmp(p + seg, "..", len) == 0;
        if (len == 0 || dots)
            return GW_EINVAL; /* "//", "/./", "/../" */
        if (i < n && p[i] != '/')
            return GW_EINVAL;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int gw_config_parse_public_url(const char *s, struct gw_public_url *out)
{
    if (!s || !out)
        return GW_EINVAL;
    struct gw_public_url u;
    memset(&u, 0, sizeof(u));
    u.https = strncasecmp(s, "https://", 8) == 0;
    if (!u.https && strncasecmp(s, "http://", 7) != 0)
        return GW_EINVAL;
    const char *host = s + (u.https ? 8 : 7);
    size_t an = strcspn(host, "/"); /* the authority: host[:port] */
    const char *end = host + an, *colon = NULL;
    if (*host == '[') {
        const char *close = memchr(host, ']', an);
        if (!close)
            return GW_EINVAL;
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon && *colon != ':')
            return GW_EINVAL;
    } else {
        colon = memchr(host, ':', an);
    }
    size_t hl = colon ? (size_t)(colon - host) : an;
    uint16_t port;
    if (hl == 0 || hl > GW_HOST_MAX || !gw_host_domain_valid(host, hl) ||
        (colon && gw_host_parse_port(colon + 1, (size_t)(end - colon - 1), &port) != 0))
        return GW_EINVAL;
    if (an >= sizeof(u.authority) || parse_url_path(end, u.prefix, sizeof(u.prefix)) != 0)
        return GW_EINVAL;
    memcpy(u.authority, host, an);
    u.authority[an] = '\0';
    *out = u;
    return 0;
}

/* ---- checks on single values ---- */

static const char *check_path(const char *s)
{
    if (s[0] != '/')
        return "must start with '/'";
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if (*u <= ' ' || *u >= 0x7f || *u == '?' || *u == '#')
            return "must be printable ASCII without spaces, '?' or '#'";
    return NULL;
}

/* An XMPP domain by the same rules a JID's domain follows (core/host.h), so that a configured
 * domain is always one a stream header can name. No trailing dot: stream headers may carry one,
 * the configuration never needs it. */
static const char *check_domain(const char *s)
{
    if (!gw_host_domain_valid(s, strlen(s)))
        return "must be a domain name such as \"example.com\"";
    return NULL;
}

/* "" (the feature is off) or a domain. */
static const char *check_domain_or_empty(const char *s)
{
    return s[0] ? check_domain(s) : NULL;
}

/* "" or a bare JID "local@domain" (a localpart without the characters RFC 7622 excludes). */
static const char *check_bare_jid(const char *s)
{
    static const char *const bad = "must be a bare JID such as \"user@example.org\"";
    const char *at = strchr(s, '@');
    if (!*s)
        return NULL;
    if (!at || at == s || strchr(s, '/') || strchr(at + 1, '@'))
        return bad;
    for (const unsigned char *u = (const unsigned char *)s; u < (const unsigned char *)at; u++)
        if (*u <= ' ' || strchr("\"&'/:<>", *u))
            return bad;
    return gw_host_domain_valid(at + 1, strlen(at + 1)) ? NULL : bad;
}

static const char *check_log_format(const char *s)
{
    return gw_log_format_parse(s, NULL) == 0 ? NULL : "must be \"plain\" or \"json\"";
}

/* A resource prefix: printable ASCII without spaces or markup characters, at most 64 bytes
 * (16 random hex characters follow it). */
static const char *check_resource_prefix(const char *s)
{
    if (strlen(s) > 64)
        return "must be at most 64 bytes";
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if (*u <= ' ' || *u >= 0x7f || strchr("\"&'<>/", *u))
            return "must be printable ASCII without spaces, quotes, '&', '<', '>' or '/'";
    return NULL;
}

/* "*", "same-host", "localhost", or a serialized origin: "http" or "https" "://" host [":" port],
 * nothing after (browsers send no path, no trailing slash). */
static const char *check_origin(const char *s)
{
    static const char *const bad = "must be \"*\", \"same-host\", \"localhost\" or an origin such "
                                   "as \"https://chat.example:8443\"";
    if (strcmp(s, "*") == 0 || strcmp(s, "same-host") == 0 || strcmp(s, "localhost") == 0)
        return NULL;
    /* web/http.c reads a request's Origin as http or https only: no other entry could match. */
    const char *p = s;
    if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else
        return bad;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close || gw_host_ip_literal(p + 1, (size_t)(close - p - 1)) != GW_HOST_IP_V6)
            return bad;
        p = close + 1;
    } else {
        const char *host = p;
        while (ascii_alnum(*p) || *p == '-' || *p == '.')
            p++;
        if (p == host)
            return bad;
    }
    if (*p == ':') {
        uint16_t port;
        if (gw_host_parse_port(p + 1, strlen(p + 1), &port) != 0)
            return bad;
    } else if (*p != '\0') {
        return bad;
    }
    return NULL;
}

/* XEP-0124 route: "xmpp:host:port". */
static const char *check_route(const char *s)
{
    struct gw_addr a;
    if (strncmp(s, "xmpp:", 5) != 0 || gw_config_parse_addr(s + 5, &a) != 0)
        return "must be \"xmpp:host:port\"";
    return NULL;
}

/* The token travels in an Authorization header: keep it to visible ASCII. */
static const char *check_token(const char *s)
{
    for (const unsigned char *u = (const unsigned char *)s; *u; u++)
        if (*u <= ' ' || *u >= 0x7f)
            return "must be printable ASCII without spaces";
    return NULL;
}

/* A name the admin port may be reached by, as the Host header carries it without its port. IP
 * literals and "localhost" are always allowed, so an entry is a name; an IPv4 address is let
 * through (harmless), an IPv6 address or a port is not (a Host header brackets the one and the
 * check drops the other). */
static const char *check_admin_host(const char *s)
{
    if (strchr(s, ':') || !gw_host_name_valid(s, strlen(s)))
        return "must be a host name such as \"gw.example.com\" (no port, no IPv6 address)";
    return NULL;
}

static const char *check_cidr(const char *s)
{
    struct gw_cidr c;
    if (gw_config_parse_cidr(s, &c) != 0)
        return "must be an IP address or a range such as \"10.0.0.0/8\" or \"fd00::/8\" (no "
               "bits set past the prefix)";
    return NULL;
}

static const char *check_public_url(const char *s)
{
    struct gw_public_url u;
    if (*s && gw_config_parse_public_url(s, &u) != 0)
        return "must be \"\" or an http or https URL such as \"https://example.org/chat/\" "
               "(a path of letters, digits and -._~ segments; no query, no fragment)";
    return NULL;
}

/* A node id goes into BOSH sids and a cookie, and into HAProxy's and nginx's routing: letters,
 * digits, '-' and '_' only, at most GW_CFG_NODE_ID_MAX bytes. */
static const char *check_node_id(const char *s)
{
    size_t n = strlen(s);
    if (n > GW_CFG_NODE_ID_MAX)
        return "must be at most 32 bytes";
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
            return "must be letters, digits, '-' and '_' only";
    return NULL;
}

/* "service/node": a pubsub service's domain, a node name; '*' only as the node's last character. */
static const char *check_live_node(const char *s)
{
    static const char *const bad = "must be \"service/node\" such as "
                                   "\"pubsub.example.org/news\" ('*' only at the end)";
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || !gw_host_domain_valid(s, (size_t)(slash - s)))
        return bad;
    const char *star = strchr(slash + 1, '*');
    if (star && star[1])
        return bad;
    for (const unsigned char *u = (const unsigned char *)slash + 1; *u; u++)
        if (*u < ' ' || *u == 0x7f)
            return bad;
    return NULL;
}

/* ---- positions: jansson keeps none after parsing, so find the key again in the raw text ---- */

/* These walk text that jansson has already accepted as JSON; they still stop at NUL so that a
 * mismatch between the two can never read past the end. */
static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *skip_string(const char *p)
{
    p++; /* the opening quote */
    while (*p && *p != '"') {
        if (*p == '\\' && p[1])
            p++;
        p++;
    }
    return *p ? p + 1 : p;
}

static const char *skip_value(const char *p)
{
    if (*p == '"')
        return skip_string(p);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (*p) {
            if (*p == '"') {
                p = skip_string(p);
                continue;
            }
            if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0)
                    return p + 1;
            }
            p++;
        }
        return p;
    }
    while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' &&
           *p != '\r')
        p++;
    return p;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = ascii_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool read_hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p[i]);
        if (h < 0)
            return false;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return true;
}

static bool put_utf8(unsigned cp, char *out, size_t *n, size_t cap)
{
    unsigned char b[4];
    size_t len;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        len = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        len = 4;
    }
    if (*n + len > cap)
        return false;
    memcpy(out + *n, b, len);
    *n += len;
    return true;
}

/* Does the JSON string at p (at its opening quote) decode to key? Keys may be written with
 * escapes ("bo\u0073h"), so compare decoded bytes. */
static bool key_matches(const char *p, const char *key)
{
    char buf[KEY_TEXT_MAX];
    size_t n = 0;
    for (p++; *p && *p != '"'; p++) {
        unsigned cp;
        if (*p != '\\') {
            if (n == sizeof(buf))
                return false;
            buf[n++] = *p;
            continue;
        }
        p++;
        switch (*p) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (!read_hex4(p + 1, &cp))
                return false;
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[1] == '\\' && p[2] == 'u') {
                unsigned lo;
                if (!read_hex4(p + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            break;
        case '\0':
            return false;
        default:
            cp = (unsigned char)*p;
            break; /* \" \\ \/ */
        }
        if (!put_utf8(cp, buf, &n, sizeof(buf)))
            return false;
    }
    return strlen(key) == n && (n == 0 || memcmp(buf, key, n) == 0);
}

/* Where loc points in the text: its key's opening quote (at_key, for unknown or misnamed keys) or
 * its value. NULL if the walk loses its way (it should not on text jansson accepted). */
static const char *locate(const char *text, const struct loc *loc, bool at_key)
{
    const char *p = skip_ws(text);
    const char *key_at = NULL;
    for (unsigned i = 0; i < loc->n; i++) {
        if (loc->key[i]) {
            if (*p != '{')
                return NULL;
            p = skip_ws(p + 1);
            bool found = false;
            while (*p == '"') {
                const char *k = p;
                bool match = key_matches(k, loc->key[i]);
                p = skip_ws(skip_string(p));
                if (*p != ':')
                    return NULL;
                p = skip_ws(p + 1);
                if (match) {
                    key_at = k;
                    found = true;
                    break;
                }
                p = skip_ws(skip_value(p));
                if (*p == ',')
                    p = skip_ws(p + 1);
            }
            if (!found)
                return NULL;
        } else {
            if (*p != '[')
                return NULL;
            p = skip_ws(p + 1);
            for (size_t j = 0; j < loc->index[i]; j++) {
                if (*p == ']' || *p == '\0')
                    return NULL;
                p = skip_ws(skip_value(p));
                if (*p == ',')
                    p = skip_ws(p + 1);
            }
            if (*p == ']' || *p == '\0')
                return NULL;
            key_at = p; /* an array entry has no key: point at the entry */
        }
    }
    return at_key && key_at ? key_at : p;
}

/* Lines from 1; columns from 1 in characters, as jansson counts them for syntax errors. */
static void line_col(const char *text, const char *at, unsigned *line, unsigned *col)
{
    unsigned l = 1, c = 1;
    for (const char *p = text; p < at; p++) {
        if (*p == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)*p & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

/* "bosh.max_wait", "origins[2]", "upstreams.example.com.port". */
static void loc_text(const struct loc *loc, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < loc->n && n < outlen; i++) {
        int w;
        if (loc->key[i])
            w = snprintf(out + n, outlen - n, "%s%s", i ? "." : "", loc->key[i]);
        else
            w = snprintf(out + n, outlen - n, "[%zu]", loc->index[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}

static int fail_at(struct loader *ld, bool at_key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(struct loader *ld, bool at_key, const char *fmt, ...)
{
    char msg[512], key[KEY_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    loc_text(&ld->loc, key, sizeof(key));
    const char *at = locate(ld->text, &ld->loc, at_key);
    char where[64] = "";
    if (at) {
        unsigned line, col;
        line_col(ld->text, at, &line, &col);
        snprintf(where, sizeof(where), "%u:%u:", line, col);
    }
    if (ld->loc.n)
        set_err(ld->err, ld->errlen, "%s:%s key '%s': %s", ld->name, where, key, msg);
    else
        set_err(ld->err, ld->errlen, "%s:%s %s", ld->name, where, msg);
    return GW_EINVAL;
}

static bool loc_push_key(struct loader *ld, const char *key)
{
    if (ld->loc.n == LOC_DEPTH)
        return false;
    ld->loc.key[ld->loc.n] = key;
    ld->loc.index[ld->loc.n] = 0;
    ld->loc.n++;
    return true;
}

static bool loc_push_index(struct loader *ld, size_t index)
{
    if (ld->loc.n == LOC_DEPTH)
        return false;
    ld->loc.key[ld->loc.n] = NULL;
    ld->loc.index[ld->loc.n] = index;
    ld->loc.n++;
    return true;
}

static void loc_pop(struct loader *ld)
{
    ld->loc.n--;
}

/* ---- the table: defaults, lookup ---- */

static void *field_at(void *base, const struct key_def *d)
{
    return (char *)base + d->offset;
}

static const void *field_at_const(const void *base, const struct key_def *d)
{
    return (const char *)base + d->offset;
}

static void store_uint(void *p, size_t size, unsigned long long v)
{
    if (size == sizeof(uint16_t)) {
        uint16_t x = (uint16_t)v;
        memcpy(p, &x, sizeof(x));
    } else if (size == sizeof(uint32_t)) {
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, sizeof(x));
    } else {
        uint64_t x = (uint64_t)v;
        memcpy(p, &x, sizeof(x));
    }
}

static unsigned long long load_uint(const void *p, size_t size)
{
    if (size == sizeof(uint16_t)) {
        uint16_t x;
        memcpy(&x, p, sizeof(x));
        return x;
    }
    if (size == sizeof(uint32_t)) {
        uint32_t x;
        memcpy(&x, p, sizeof(x));
        return x;
    }
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return x;
}

static void apply_defaults(const struct key_def *table, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        const struct key_def *d = &table[i];
        void *p = field_at(base, d);
        switch (d->type) {
        case KEY_SECTION:
            break;
        case KEY_STRING:
        case KEY_HOST:
            copy_field(p, d->size, d->def_str ? d->def_str : "", false);
            break;
        case KEY_ADDR:
            /* The table's own defaults always parse. */
            if (gw_config_parse_addr(d->def_str, p) != 0)
                memset(p, 0, d->size);
            break;
        case KEY_UINT:
            store_uint(p, d->size, d->def);
            break;
        case KEY_BOOL:
            *(bool *)p = d->def != 0;
            break;
        case KEY_LIST: {
            unsigned count = 0;
            memset(p, 0, d->size * d->max_entries);
            for (; d->def_list && d->def_list[count]; count++)
                copy_field((char *)p + count * d->size, d->size, d->def_list[count], false);
            *(unsigned *)((char *)base + d->count_offset) = count;
            break;
        }
        case KEY_LOG_LEVEL:
            if (gw_log_level_parse(d->def_str, p) != 0)
                *(enum gw_log_level *)p = GW_LOG_INFO;
            break;
        case KEY_TLS_MODE:
            if (gw_config_parse_tls(d->def_str, p) != 0)
                *(enum gw_upstream_tls *)p = GW_UPSTREAM_TLS_STARTTLS;
            break;
        case KEY_UPSTREAM:
            apply_defaults(upstream_keys, N_UPSTREAM_KEYS, p);
            break;
        case KEY_UPSTREAM_MAP:
            memset(p, 0, d->size * d->max_entries);
            *(unsigned *)((char *)base + d->count_offset) = 0;
            break;
        }
    }
}

void gw_config_defaults(struct gw_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    apply_defaults(config_keys, N_CONFIG_KEYS, cfg);
    cfg->has_default_upstream = false;
}

/* If path ("bosh.max_wait") is a direct member of section ("bosh"; "" for the top level), the
 * member's name ("max_wait"), else NULL. */
static const char *member_of(const char *path, const char *section)
{
    size_t slen = strlen(section);
    if (!slen)
        return strchr(path, '.') ? NULL : path;
    if (strncmp(path, section, slen) != 0 || path[slen] != '.')
        return NULL;
    const char *member = path + slen + 1;
    return strchr(member, '.') ? NULL : member; /* a member of a nested section */
}

/* The entry for member `key` of `section` ("" at the top). */
static const struct key_def *find_key(const struct key_def *table, size_t n, const char *section,
                                      const char *key)
{
    for (size_t i = 0; i < n; i++) {
        const char *member = member_of(table[i].path, section);
        if (member && strcmp(member, key) == 0)
            return &table[i];
    }
    return NULL;
}

/* "listen, tls, static, ..." : the members of section, for the unknown-key message. */
static void known_keys(const struct key_def *table, size_t n, const char *section, char *out,
                       size_t outlen)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && used < outlen; i++) {
        const char *member = member_of(table[i].path, section);
        if (!member)
            continue;
        int w = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", member);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* ---- applying JSON values ---- */

static int apply_object(struct loader *ld, json_t *obj, const struct key_def *table, size_t n,
                        const char *section, void *base);

/* A string that fits a field of `size` bytes. */
static int get_string(struct loader *ld, json_t *v, size_t size, const char **out)
{
    *out = "";
    const char *s = json_string_value(v); /* NULL when v is no string */
    if (!s)
        return fail_at(ld, false, "must be a string");
    size_t len = json_string_length(v);
    if (strlen(s) != len)
        return fail_at(ld, false, "must not contain NUL characters");
    if (len >= size)
        return fail_at(ld, false, "must be at most %zu bytes", size - 1);
    *out = s;
    return 0;
}

static int apply_uint(struct loader *ld, const struct key_def *d, json_t *v, void *p)
{
    if (!json_is_integer(v))
        return fail_at(ld, false, "must be an integer");
    json_int_t x = json_integer_value(v);
    if (x < 0 || (unsigned long long)x < d->min || (unsigned long long)x > d->max)
        return fail_at(ld, false, "must be between %llu and %llu", d->min, d->max);
    store_uint(p, d->size, (unsigned long long)x);
    return 0;
}

static int apply_list(struct loader *ld, const struct key_def *d, json_t *v, void *base)
{
    char *entries = field_at(base, d);
    if (!json_is_array(v))
        return fail_at(ld, false, "must be an array of strings");
    if (json_array_size(v) > d->max_entries)
        return fail_at(ld, false, "must have at most %u entries", d->max_entries);
    memset(entries, 0, d->size * d->max_entries);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        const char *s = NULL, *why;
        if (!loc_push_index(ld, i))
            return fail_at(ld, false, "nested too deeply");
        if (get_string(ld, e, d->size, &s) != 0)
            return GW_EINVAL;
        if (d->check && (why = d->check(s)) != NULL)
            return fail_at(ld, false, "%s", why);
        for (size_t j = 0; j < i; j++)
            if (ascii_case_equal(entries + j * d->size, s))
                return fail_at(ld, false, "duplicate entry \"%s\"", s);
        copy_field(entries + i * d->size, d->size, s, d->lower);
        loc_pop(ld);
    }
    *(unsigned *)((char *)base + d->count_offset) = (unsigned)json_array_size(v);
    return 0;
}

static int apply_upstream(struct loader *ld, json_t *v, struct gw_upstream_cfg *up)
{
    if (!json_is_object(v))
        return fail_at(ld, false, "must be an object with \"host\", \"port\" and \"tls\"");
    memset(up, 0, sizeof(*up));
    apply_defaults(upstream_keys, N_UPSTREAM_KEYS, up);
    return apply_object(ld, v, upstream_keys, N_UPSTREAM_KEYS, "", up);
}

static int apply_upstream_map(struct loader *ld, const struct key_def *d, json_t *v, void *base)
{
    struct gw_upstream_cfg *map = field_at(base, d);
    unsigned *count = (unsigned *)((char *)base + d->count_offset);
    if (!json_is_object(v))
        return fail_at(ld, false, "must be an object of \"domain\": {\"host\", \"port\", \"tls\"}");
    if (json_object_size(v) > d->max_entries)
        return fail_at(ld, false, "must have at most %u entries", d->max_entries);
    memset(map, 0, d->size * d->max_entries);
    *count = 0;
    const char *domain;
    json_t *e;
    json_object_foreach(v, domain, e)
    {
        const char *why;
        if (!loc_push_key(ld, domain))
            return fail_at(ld, true, "nested too deeply");
        if (strlen(domain) >= sizeof(map->domain))
            return fail_at(ld, true, "must be at most %zu bytes", sizeof(map->domain) - 1);
        if ((why = check_domain(domain)) != NULL)
            return fail_at(ld, true, "%s", why);
        for (unsigned j = 0; j < *count; j++)
            if (ascii_case_equal(map[j].domain, domain))
                return fail_at(ld, true, "duplicate domain \"%s\"", domain);
        struct gw_upstream_cfg *up = &map[*count];
        if (apply_upstream(ld, e, up) != 0)
            return GW_EINVAL;
        copy_field(up->domain, sizeof(up->domain), domain, true);
        (*count)++;
        loc_pop(ld);
    }
    return 0;
}

/* Applies one value; ld->loc already points at it. */
static int apply_value(struct loader *ld, const struct key_def *d, json_t *v, void *base)
{
    void *p = field_at(base, d);
    const char *s = NULL, *why;
    switch (d->type) {
    case KEY_SECTION:
        if (!json_is_object(v))
            return fail_at(ld, false, "must be an object");
        return apply_object(ld, v, config_keys, N_CONFIG_KEYS, d->path, base);
    case KEY_STRING:
        if (get_string(ld, v, d->size, &s) != 0)
            return GW_EINVAL;
        if (d->check && (why = d->check(s)) != NULL)
            return fail_at(ld, false, "%s", why);
        copy_field(p, d->size, s, d->lower);
        return 0;
    case KEY_HOST: {
        if (get_string(ld, v, d->size + 2, &s) != 0) /* room for brackets */
            return GW_EINVAL;
        size_t len = strlen(s);
        if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
            s++;
            len -= 2;
            if (gw_host_ip_literal(s, len) != GW_HOST_IP_V6)
                return fail_at(ld, false, "must be a host name or an IP address");
        }
        if (len >= d->size)
            return fail_at(ld, false, "must be at most %zu bytes", d->size - 1);
        if (!gw_host_name_valid(s, len))
            return fail_at(ld, false, "must be a host name or an IP address");
        memcpy(p, s, len);
        ((char *)p)[len] = '\0';
        return 0;
    }
    case KEY_ADDR:
        if (get_string(ld, v, (size_t)-1, &s) != 0)
            return GW_EINVAL;
        if (gw_config_parse_addr(s, p) != 0)
            return fail_at(ld, false,
                           "must be \"host:port\" (IPv6: \"[::1]:port\") with a port "
                           "from 1 to 65535");
        return 0;
    case KEY_UINT:
        return apply_uint(ld, d, v, p);
    case KEY_BOOL:
        if (!json_is_boolean(v))
            return fail_at(ld, false, "must be true or false");
        *(bool *)p = json_is_true(v);
        return 0;
    case KEY_LIST:
        return apply_list(ld, d, v, base);
    case KEY_LOG_LEVEL:
        if (get_string(ld, v, (size_t)-1, &s) != 0)
            return GW_EINVAL;
        if (gw_log_level_parse(s, p) != 0)
            return fail_at(ld, false, "must be \"error\", \"warn\", \"info\" or \"debug\"");
        return 0;
    case KEY_TLS_MODE:
        if (get_string(ld, v, (size_t)-1, &s) != 0)
            return GW_EINVAL;
        if (gw_config_parse_tls(s, p) != 0)
            return fail_at(ld, false, "must be \"off\", \"starttls\" or \"direct\"");
        return 0;
    case KEY_UPSTREAM:
        if (apply_upstream(ld, v, p) != 0)
            return GW_EINVAL;
        ld->cfg->has_default_upstream = true;
        return 0;
    case KEY_UPSTREAM_MAP:
        return apply_upstream_map(ld, d, v, base);
    }
    return fail_at(ld, false, "unsupported key type");
}

/* Applies every member of obj; `section` names obj within the table ("" = the table's top). */
static int apply_object(struct loader *ld, json_t *obj, const struct key_def *table, size_t n,
                        const char *section, void *base)
{
    uint64_t seen[2] = {0}; /* bit i: table[i] was given (tables have fewer than 128 entries) */
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (!loc_push_key(ld, key))
            return fail_at(ld, true, "nested too deeply");
        const struct key_def *d = find_key(table, n, section, key);
        if (!d) {
            char known[512];
            known_keys(table, n, section, known, sizeof(known));
            return fail_at(ld, true, "unknown key (known keys: %s)", known);
        }
        if (apply_value(ld, d, v, base) != 0)
            return GW_EINVAL;
        size_t at = (size_t)(d - table);
        seen[at / 64] |= 1ULL << (at % 64);
        loc_pop(ld);
    }
    for (size_t i = 0; i < n; i++)
        if (table[i].required && !(seen[i / 64] & (1ULL << (i % 64))))
            return fail_at(ld, true, "\"%s\" is required", table[i].path);
    return 0;
}

/* ---- loading ---- */

/* jansson refuses an integer past json_int_t (and a real past a double) while it parses, naming
 * no key. The overflowing token ends at the error's position: overwrite it, within its own bytes,
 * with the largest number of its kind jansson holds, so that the loader refuses it by its key (and
 * that key's bounds or type) at its line and column, as it does any other number out of range. */
static bool number_char(char c)
{
    return c && strchr("0123456789.eE+-", c);
}

static bool clamp_overflow(char *text, size_t pos)
{
    size_t end = pos, start;
    if (end > 0 && !number_char(text[end - 1]))
        end--; /* the error may point just past the token */
    for (start = end; start > 0 && number_char(text[start - 1]); start--)
        ;
    if (start == end)
        return false;
    bool neg = text[start] == '-', real = strcspn(text + start, ".eE") < end - start;
    const char *big =
        real ? (neg ? "-1e308" : "1e308") : (neg ? "-9223372036854775808" : "9223372036854775807");
    size_t n = strlen(big);
    if (end - start < n)
        return false;
    memcpy(text + start, big, n);
    memset(text + start + n, ' ', end - start - n);
    return true;
}

/* json_loads, taking NUL in strings (get_string refuses them by key) and clamping overflowing
 * numbers in a copy (*copy, to be freed; the text positions are those of the original). */
static json_t *parse_text(const char *json, char **copy, json_error_t *jerr)
{
    *copy = NULL;
    for (;;) {
        json_t *root =
            json_loads(*copy ? *copy : json, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, jerr);
        if (root || json_error_code(jerr) != json_error_numeric_overflow || jerr->position <= 0)
            return root;
        if (!*copy && !(*copy = strdup(json)))
            return NULL;
        if ((size_t)jerr->position > strlen(*copy) || !clamp_overflow(*copy, jerr->position))
            return NULL;
    }
}

int gw_config_load_string(struct gw_config *cfg, const char *json, const char *name, char *err,
                          size_t errlen)
{
    if (!name)
        name = "<string>";
    if (!cfg || !json) {
        set_err(err, errlen, "%s: no configuration given", name);
        return GW_EINVAL;
    }
    /* Parse into a copy so that a bad file leaves cfg as it was (a reload keeps running). */
    struct gw_config *tmp = malloc(sizeof(*tmp));
    if (!tmp) {
        set_err(err, errlen, "%s: out of memory", name);
        return GW_ENOMEM;
    }
    gw_config_defaults(tmp);

    json_error_t jerr;
    char *copy;
    json_t *root = parse_text(json, &copy, &jerr);
    if (!root) {
        free(copy);
        if (jerr.line >= 1)
            set_err(err, errlen, "%s:%d:%d: %s", name, jerr.line, jerr.column > 0 ? jerr.column : 1,
                    jerr.text);
        else
            set_err(err, errlen, "%s: %s", name, jerr.text);
        free(tmp);
        return GW_EINVAL;
    }
    struct loader ld = {
        .cfg = tmp, .text = copy ? copy : json, .name = name, .err = err, .errlen = errlen};
    int rc;
    if (!json_is_object(root))
        rc = fail_at(&ld, false, "the top level must be an object");
    else
        rc = apply_object(&ld, root, config_keys, N_CONFIG_KEYS, "", tmp);
    json_decref(root);
    free(copy);
    if (rc == 0)
        *cfg = *tmp;
    free(tmp);
    return rc;
}

/* SHA-256 of the file's bytes in hex ("" if OpenSSL fails): any change to the file changes it. */
static void file_digest(const char *text, size_t len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    out[0] = '\0';
    if (EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen * 2 + 1 > outlen)
        return;
    for (unsigned i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[2 * mdlen] = '\0';
}

int gw_config_load(struct gw_config *cfg, const char *path, char *err, size_t errlen)
{
    if (!path) {
        set_err(err, errlen, "no configuration file given");
        return GW_EINVAL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return GW_EINVAL;
    }
    size_t cap = 4096, len = 0;
    char *text = malloc(cap);
    int rc = 0;
    while (text) {
        len += fread(text + len, 1, cap - 1 - len, f);
        if (len < cap - 1 || cap > FILE_MAX)
            break;
        size_t ncap = cap * 2;
        char *grown = realloc(text, ncap);
        if (!grown) {
            free(text);
            text = NULL;
            break;
        }
        text = grown;
        cap = ncap;
    }
    if (!text) {
        set_err(err, errlen, "%s: out of memory", path);
        rc = GW_ENOMEM;
    } else if (ferror(f)) {
        set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        rc = GW_EINVAL;
    } else if (len > FILE_MAX) {
        set_err(err, errlen, "%s: larger than %zu bytes", path, FILE_MAX);
        rc = GW_EINVAL;
    } else {
        text[len] = '\0';
        const char *nul = memchr(text, '\0', len);
        if (nul) {
            /* jansson would stop at the NUL and ignore the rest of the file. */
            unsigned line, col;
            line_col(text, nul, &line, &col);
            set_err(err, errlen, "%s:%u:%u: NUL byte in the file", path, line, col);
            rc = GW_EINVAL;
        } else {
            rc = gw_config_load_string(cfg, text, path, err, errlen);
        }
        if (rc == 0)
            file_digest(text, len, cfg->digest, sizeof(cfg->digest));
    }
    free(text);
    fclose(f);
    return rc;
}

/* ---- checks across keys, and on values set outside the file (command line) ---- */

static bool string_ok(const char *p, size_t size)
{
    return memchr(p, '\0', size) != NULL;
}

static bool upstream_ok(const struct gw_upstream_cfg *up)
{
    return string_ok(up->addr.host, sizeof(up->addr.host)) &&
           gw_host_name_valid(up->addr.host, strlen(up->addr.host)) && up->addr.port != 0 &&
           (unsigned)up->tls <= GW_UPSTREAM_TLS_DIRECT;
}

static unsigned count_at(const struct gw_config *cfg, const struct key_def *d)
{
    return *(const unsigned *)((const char *)cfg + d->count_offset);
}

/* A list: every entry terminated and passing the key's check. */
static int validate_list(const struct gw_config *cfg, const struct key_def *d, char *err,
                         size_t errlen)
{
    const char *entries = field_at_const(cfg, d);
    unsigned count = count_at(cfg, d);
    if (count > d->max_entries) {
        set_err(err, errlen, "key '%s': has too many entries", d->path);
        return GW_EINVAL;
    }
    for (unsigned j = 0; j < count; j++) {
        const char *e = entries + j * d->size;
        const char *bad = !string_ok(e, d->size) ? "is not terminated"
                          : d->check             ? d->check(e)
                                                 : NULL;
        if (bad) {
            set_err(err, errlen, "key '%s[%u]': %s", d->path, j, bad);
            return GW_EINVAL;
        }
    }
    return 0;
}

static const char *upstream_map_problem(const struct gw_config *cfg, const struct key_def *d)
{
    const struct gw_upstream_cfg *map = field_at_const(cfg, d);
    unsigned count = count_at(cfg, d);
    if (count > d->max_entries)
        return "has too many entries";
    for (unsigned j = 0; j < count; j++)
        if (!string_ok(map[j].domain, sizeof(map[j].domain)) || check_domain(map[j].domain) ||
            !upstream_ok(&map[j]))
            return "has an entry without a valid domain, host, port and TLS mode";
    return NULL;
}

/* One key's value against its table entry. */
static int validate_key(const struct gw_config *cfg, const struct key_def *d, char *err,
                        size_t errlen)
{
    const void *p = field_at_const(cfg, d);
    const char *why = NULL;
    switch (d->type) {
    case KEY_SECTION:
    case KEY_BOOL:
    case KEY_HOST:
    case KEY_TLS_MODE:
        break;
    case KEY_STRING:
        if (!string_ok(p, d->size))
            why = "is not terminated";
        else if (d->check)
            why = d->check(p);
        break;
    case KEY_ADDR: {
        const struct gw_addr *a = p;
        if (!string_ok(a->host, sizeof(a->host)) || !gw_host_name_valid(a->host, strlen(a->host)) ||
            a->port == 0)
            why = "must be \"host:port\" with a port from 1 to 65535";
        break;
    }
    case KEY_UINT: {
        unsigned long long v = load_uint(p, d->size);
        if (v < d->min || v > d->max) {
            set_err(err, errlen, "key '%s': must be between %llu and %llu", d->path, d->min,
                    d->max);
            return GW_EINVAL;
        }
        break;
    }
    case KEY_LIST:
        return validate_list(cfg, d, err, errlen);
    case KEY_LOG_LEVEL:
        if ((unsigned)*(const enum gw_log_level *)p > GW_LOG_DEBUG)
            why = "is out of range";
        break;
    case KEY_UPSTREAM:
        if (cfg->has_default_upstream && !upstream_ok(p))
            why = "needs a host name or IP address, a port from 1 to 65535 and a TLS mode";
        break;
    case KEY_UPSTREAM_MAP:
        why = upstream_map_problem(cfg, d);
        break;
    }
    if (why) {
        set_err(err, errlen, "key '%s': %s", d->path, why);
        return GW_EINVAL;
    }
    return 0;
}

/* Re-checks every field against the table: command-line overrides bypass the loader. */
static int validate_table(const struct gw_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < N_CONFIG_KEYS; i++) {
        int rc = validate_key(cfg, &config_keys[i], err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Is host (admin.listen's: a name, or an IP literal without brackets) on loopback: 127.0.0.0/8,
 * ::1 (also as ::ffff:127.x.y.z), or the name "localhost"? Any other name counts as not: what
 * it resolves to is not known here, and may change. */
static bool host_is_loopback(const char *host)
{
    if (ascii_case_equal(host, "localhost"))
        return true;
    struct sockaddr_storage ss;
    socklen_t len;
    if (gw_host_sockaddr(host, 1, &ss, &len) != 0)
        return false;
    if (ss.ss_family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&((struct sockaddr_in *)&ss)->sin_addr;
        return b[0] == 127;
    }
    const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* The admin port lists sessions and JIDs: off loopback it needs a token. */
static bool admin_exposed(const struct gw_config *cfg)
{
    return !cfg->admin_token[0] && !host_is_loopback(cfg->admin_listen.host);
}

/* A password from a file's first line (key_file names the file's key) or given inline. */
static int read_password(const char *path, const char *inline_pw, const char *key_file,
                         const char *key_inline, char *out, size_t outlen, char *err, size_t errlen)
{
    if (!path[0]) {
        if (strlen(inline_pw) >= outlen) {
            set_err(err, errlen, "key '%s': too long", key_inline);
            return GW_EINVAL;
        }
        snprintf(out, outlen, "%s", inline_pw);
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "key '%s': cannot read \"%s\": %s", key_file, path, strerror(errno));
        return GW_EINVAL;
    }
    size_t n = fread(out, 1, outlen - 1, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0'; /* the first line */
    if (more && n == outlen - 1 && strlen(out) == n) {
        set_err(err, errlen, "key '%s': \"%s\" holds too long a password", key_file, path);
        return GW_EINVAL;
    }
    if (!out[0]) {
        set_err(err, errlen, "key '%s': \"%s\" holds no password", key_file, path);
        return GW_EINVAL;
    }
    return 0;
}

int gw_config_visitors_password(const struct gw_config *cfg, char *out, size_t outlen, char *err,
                                size_t errlen)
{
    return read_password(cfg->visitors_password_file, cfg->visitors_password,
                         "visitors.password_file", "visitors.password", out, outlen, err, errlen);
}

int gw_config_live_password(const struct gw_config *cfg, char *out, size_t outlen, char *err,
                            size_t errlen)
{
    return read_password(cfg->live_password_file, cfg->live_password, "live.password_file",
                         "live.password", out, outlen, err, errlen);
}

/* The hub, when configured: one way to its password, which works, and nodes to serve. The demo's
 * publish endpoint has no token: only on a loopback listen address (listen and it restart). */
static int validate_live(const struct gw_config *cfg, char *err, size_t errlen)
{
    if (cfg->live_demo_publish && !host_is_loopback(cfg->listen.host)) {
        bool v6 = strchr(cfg->listen.host, ':') != NULL;
        set_err(err, errlen,
                "key 'live.demo_publish': lets anyone publish through the hub: listen (%s%s%s:%u) "
                "must be a loopback address while it is on",
                v6 ? "[" : "", cfg->listen.host, v6 ? "]" : "", (unsigned)cfg->listen.port);
        return GW_EINVAL;
    }
    if (!cfg->live_jid[0])
        return 0;
    if (!cfg->live_password_file[0] && !cfg->live_password[0]) {
        set_err(err, errlen,
                "key 'live.password_file': required when live.jid is set (or set "
                "live.password)");
        return GW_EINVAL;
    }
    if (cfg->live_password_file[0] && cfg->live_password[0]) {
        set_err(err, errlen,
                "key 'live.password': set live.password_file or live.password, not "
                "both");
        return GW_EINVAL;
    }
    if (cfg->n_live_nodes == 0) {
        set_err(err, errlen, "key 'live.nodes': required when live.jid is set");
        return GW_EINVAL;
    }
    char pw[1024];
    int rc = gw_config_live_password(cfg, pw, sizeof(pw), err, errlen);
    explicit_bzero(pw, sizeof(pw));
    return rc;
}

/* Visitor mode, when configured: the shared account, served by an upstream, one way to its
 * password, which works, and a domain of its own. */
static int validate_visitors(const struct gw_config *cfg, char *err, size_t errlen)
{
    if (!cfg->visitors_domain[0])
        return 0;
    if (!cfg->visitors_jid[0]) {
        set_err(err, errlen, "key 'visitors.jid': required when visitors.domain is set");
        return GW_EINVAL;
    }
    const char *at = strchr(cfg->visitors_jid, '@');
    if (!at || !gw_config_upstream_for(cfg, at + 1)) {
        set_err(err, errlen, "key 'visitors.jid': no upstream serves its domain");
        return GW_EINVAL;
    }
    for (unsigned i = 0; i < cfg->n_domains; i++)
        if (ascii_case_equal(cfg->domains[i], cfg->visitors_domain)) {
            set_err(err, errlen, "key 'visitors.domain': must differ from the served domains");
            return GW_EINVAL;
        }
    if (!cfg->visitors_password_file[0] && !cfg->visitors_password[0]) {
        set_err(err, errlen,
                "key 'visitors.password_file': required when visitors.domain is set "
                "(or set visitors.password)");
        return GW_EINVAL;
    }
    if (cfg->visitors_password_file[0] && cfg->visitors_password[0]) {
        set_err(err, errlen,
                "key 'visitors.password': set visitors.password_file or "
                "visitors.password, not both");
        return GW_EINVAL;
    }
    char pw[1024];
    int rc = gw_config_visitors_password(cfg, pw, sizeof(pw), err, errlen);
    explicit_bzero(pw, sizeof(pw));
    return rc;
}

/* The checks across keys below relate only keys of one reload class (tls.cert and tls.key,
 * bosh.max_hold and bosh.max_requests, the two paths, the two listen addresses, the upstream
 * keys): a reload that keeps some RESTART values therefore still gives a valid snapshot.
 * tests/unit/test_config.c holds the classes to that. The one exception, admin.listen (restart)
 * and admin.token (live), is kept valid by gw_config_reload_merge. */
int gw_config_validate(const struct gw_config *cfg, char *err, size_t errlen)
{
    if (!cfg) {
        set_err(err, errlen, "no configuration given");
        return GW_EINVAL;
    }
    int rc = validate_table(cfg, err, errlen);
    if (rc != 0)
        return rc;
    if (cfg->tls_cert[0] && !cfg->tls_key[0]) {
        set_err(err, errlen, "key 'tls.key': required when tls.cert is set");
        return GW_EINVAL;
    }
    if (cfg->tls_key[0] && !cfg->tls_cert[0]) {
        set_err(err, errlen, "key 'tls.cert': required when tls.key is set");
        return GW_EINVAL;
    }
    if (cfg->bosh_max_requests < cfg->bosh_max_hold + 1) {
        set_err(err, errlen, "key 'bosh.max_requests': must be at least bosh.max_hold + 1 (%u)",
                cfg->bosh_max_hold + 1);
        return GW_EINVAL;
    }
    if (strcmp(cfg->ws_path, cfg->bosh_path) == 0) {
        set_err(err, errlen, "key 'bosh.path': must differ from websocket.path (\"%s\")",
                cfg->ws_path);
        return GW_EINVAL;
    }
    if (ascii_case_equal(cfg->listen.host, cfg->admin_listen.host) &&
        cfg->listen.port == cfg->admin_listen.port) {
        set_err(err, errlen, "key 'admin.listen': must differ from listen");
        return GW_EINVAL;
    }
    if (admin_exposed(cfg)) {
        bool v6 = strchr(cfg->admin_listen.host, ':') != NULL;
        set_err(err, errlen,
                "key 'admin.listen': %s%s%s:%u is not a loopback address: set admin.token, or "
                "listen on 127.0.0.1 or [::1]",
                v6 ? "[" : "", cfg->admin_listen.host, v6 ? "]" : "",
                (unsigned)cfg->admin_listen.port);
        return GW_EINVAL;
    }
    if (!cfg->has_default_upstream && cfg->n_upstream_map == 0) {
        set_err(err, errlen,
                "key 'upstream': no upstream configured: set \"upstream\" (or \"upstreams\") in "
                "the configuration file, or use --upstream HOST:PORT");
        return GW_EINVAL;
    }
    rc = validate_live(cfg, err, errlen);
    if (rc != 0)
        return rc;
    rc = validate_visitors(cfg, err, errlen);
    if (rc != 0)
        return rc;
    for (unsigned i = 0; i < cfg->n_domains; i++) {
        if (!gw_config_upstream_for(cfg, cfg->domains[i])) {
            set_err(err, errlen,
                    "key 'domains[%u]': no upstream for \"%s\": add it to \"upstreams\" or set "
                    "\"upstream\"",
                    i, cfg->domains[i]);
            return GW_EINVAL;
        }
    }
    return 0;
}

/* ---- reload: the table says which keys a running gateway can take ---- */

int gw_config_key_reload(const char *key, enum gw_config_reload *out)
{
    if (!key || !out)
        return GW_EINVAL;
    for (size_t i = 0; i < N_CONFIG_KEYS; i++) {
        const struct key_def *d = &config_keys[i];
        if (d->type == KEY_SECTION)
            continue;
        const char *member = NULL;
        size_t n = strlen(d->path);
        if (d->type == KEY_UPSTREAM && strncmp(key, d->path, n) == 0 && key[n] == '.')
            member = key + n + 1;
        if (strcmp(key, d->path) == 0 ||
            (member && find_key(upstream_keys, N_UPSTREAM_KEYS, "", member))) {
            *out = d->reload;
            return 0;
        }
    }
    return GW_EINVAL;
}

static bool upstream_equal(const struct gw_upstream_cfg *a, const struct gw_upstream_cfg *b)
{
    return strcmp(a->domain, b->domain) == 0 && strcmp(a->addr.host, b->addr.host) == 0 &&
           a->addr.port == b->addr.port && a->tls == b->tls;
}

static bool list_equal(const struct key_def *d, const struct gw_config *a,
                       const struct gw_config *b)
{
    unsigned n = count_at(a, d);
    if (n != count_at(b, d))
        return false;
    const char *ea = field_at_const(a, d), *eb = field_at_const(b, d);
    for (unsigned j = 0; j < n; j++) {
        bool same = d->type == KEY_LIST
                        ? strcmp(ea + j * d->size, eb + j * d->size) == 0
                        : upstream_equal((const struct gw_upstream_cfg *)(const void *)ea + j,
                                         (const struct gw_upstream_cfg *)(const void *)eb + j);
        if (!same)
            return false;
    }
    return true;
}

/* Do two valid snapshots hold the same value for key d? Compared by meaning, not by bytes: what
 * follows a string's NUL depends on how the value was set. */
static bool key_equal(const struct key_def *d, const struct gw_config *a, const struct gw_config *b)
{
    const void *pa = field_at_const(a, d), *pb = field_at_const(b, d);
    switch (d->type) {
    case KEY_SECTION:
        return true;
    case KEY_STRING:
    case KEY_HOST:
        return strcmp(pa, pb) == 0;
    case KEY_ADDR: {
        const struct gw_addr *x = pa, *y = pb;
        return strcmp(x->host, y->host) == 0 && x->port == y->port;
    }
    case KEY_UINT:
        return load_uint(pa, d->size) == load_uint(pb, d->size);
    case KEY_BOOL:
        return *(const bool *)pa == *(const bool *)pb;
    case KEY_LOG_LEVEL:
    case KEY_TLS_MODE:
        return memcmp(pa, pb, d->size) == 0;
    case KEY_UPSTREAM:
        return a->has_default_upstream == b->has_default_upstream && upstream_equal(pa, pb);
    case KEY_LIST:
    case KEY_UPSTREAM_MAP:
        return list_equal(d, a, b);
    }
    return false;
}

/* Copies key d's whole value from src into dst: every list entry and the count, and for
 * "upstream" whether one was given. */
static void key_copy(const struct key_def *d, struct gw_config *dst, const struct gw_config *src)
{
    size_t bytes = d->size;
    if (d->type == KEY_SECTION)
        return;
    if (d->type == KEY_LIST || d->type == KEY_UPSTREAM_MAP) {
        bytes = d->size * d->max_entries;
        memcpy((char *)dst + d->count_offset, (const char *)src + d->count_offset,
               sizeof(unsigned));
    }
    if (d->type == KEY_UPSTREAM)
        dst->has_default_upstream = src->has_default_upstream;
    memcpy(field_at(dst, d), field_at_const(src, d), bytes);
}

/* Appends ", path" (or "path" first) to kept; *used goes past keptlen when cut short, and
 * nothing more is written after that. */
static void name_kept(char *kept, size_t keptlen, size_t *used, const char *path)
{
    if (!kept || *used >= keptlen)
        return;
    int w = snprintf(kept + *used, keptlen - *used, "%s%s", *used ? ", " : "", path);
    if (w > 0)
        *used += (size_t)w;
}

int gw_config_reload_merge(struct gw_config *next, const struct gw_config *cur, char *kept,
                           size_t keptlen)
{
    if (kept && keptlen)
        kept[0] = '\0';
    if (!next || !cur)
        return GW_EINVAL;
    int n = 0;
    size_t used = 0;
    for (size_t i = 0; i < N_CONFIG_KEYS; i++) {
        const struct key_def *d = &config_keys[i];
        if (d->type == KEY_SECTION || d->reload != GW_RELOAD_RESTART || key_equal(d, next, cur))
            continue;
        key_copy(d, next, cur);
        n++;
        name_kept(kept, keptlen, &used, d->path);
    }
    /* The new file moved the admin port to loopback and dropped the token, but the port stays
     * where it is until a restart: so does the token that guards it. */
    if (admin_exposed(next) && strcmp(next->admin_token, cur->admin_token) != 0) {
        memcpy(next->admin_token, cur->admin_token, sizeof(next->admin_token));
        n++;
        name_kept(kept, keptlen, &used, "admin.token");
    }
    return n;
}

/* A configured domain against one from a stream header, which may end in the dot of a fully
 * qualified name (RFC 7622 section 3.2 says to drop it). */
static bool domain_matches(const char *configured, const char *domain)
{
    size_t n = strlen(domain);
    if (n > 1 && domain[n - 1] == '.')
        n--;
    size_t i = 0;
    for (; i < n && configured[i]; i++)
        if (ascii_lower(configured[i]) != ascii_lower(domain[i]))
            return false;
    return i == n && configured[i] == '\0';
}

const struct gw_upstream_cfg *gw_config_upstream_for(const struct gw_config *cfg,
                                                     const char *domain)
{
    if (!cfg || !domain || !domain[0])
        return NULL;
    unsigned n_map = cfg->n_upstream_map < GW_CFG_MAX_LIST ? cfg->n_upstream_map : GW_CFG_MAX_LIST;
    for (unsigned i = 0; i < n_map; i++)
        if (domain_matches(cfg->upstream_map[i].domain, domain))
            return &cfg->upstream_map[i];
    if (!cfg->has_default_upstream)
        return NULL;
    if (cfg->n_domains == 0)
        return &cfg->upstream;
    unsigned n_dom = cfg->n_domains < GW_CFG_MAX_LIST ? cfg->n_domains : GW_CFG_MAX_LIST;
    for (unsigned i = 0; i < n_dom; i++)
        if (domain_matches(cfg->domains[i], domain))
            return &cfg->upstream;
    return NULL;
}
