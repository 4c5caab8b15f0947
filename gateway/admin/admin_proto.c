/* The admin request policy (admin_proto.h): the routing table, the Host rule against DNS
 * rebinding, the bearer token for /api/, the method and body rules (GET routes, POST routes with
 * a JSON body), the limit argument, and the table of refusals with their JSON bodies. No sockets,
 * no HTTP library, no state. Calls: config, core (host rules), session/hub.h (a bound only);
 * OpenSSL (SHA-256 and CRYPTO_memcmp). */
#include "admin/admin_proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "admin/admin.h"
#include "core/cond.h"
#include "core/host.h"
#include "session/hub.h"

/* ---- refusals ---- */

#define ERROR_BODY(text, cond) "{\"error\":\"" text "\",\"condition\":\"" cond "\"}\n"
#define ERROR_ENTRY(status, text, cond, header, value)                                             \
    {                                                                                              \
        status, cond, ERROR_BODY(text, cond), header, value                                        \
    }

/* The limit's text below names the bound. */
_Static_assert(GW_ADMIN_SESSIONS_LIMIT_MAX == 10000u, "ERR_LIMIT's text says 10000");
_Static_assert(GW_ADMIN_SESSIONS_OFFSET_MAX == 100000000u, "ERR_OFFSET's text says 100000000");

/* 421 Misdirected Request rather than 403 for a Host we do not serve (RFC 9110 section
 * 15.5.20): the request reached a server that will not answer for that host, which is exactly the
 * case of a DNS-rebinding page or a wrong name; 403 would say the client lacks a permission that
 * a token could give. A request without exactly one Host, or with one that is no valid field
 * value, is malformed: 400 (RFC 9112 section 3.2). */
/* clang-format off */
static const struct gw_admin_error errors[GW_ADMIN_ERR_COUNT] = {
    [GW_ADMIN_ERR_HOST] = ERROR_ENTRY(421,
        "the Host header names no address or name of this admin port "
        "(IP address, localhost, or admin.hosts)", "host-not-allowed", NULL, NULL),
    [GW_ADMIN_ERR_HOST_FIELD] = ERROR_ENTRY(400,
        "exactly one Host header with a valid value is required", "bad-request", NULL, NULL),
    [GW_ADMIN_ERR_NO_TOKEN] = ERROR_ENTRY(401, "a bearer token is required", "not-authorized",
        "WWW-Authenticate", "Bearer realm=\"xmppgw\""),
    [GW_ADMIN_ERR_BAD_TOKEN] = ERROR_ENTRY(401, "the bearer token is not valid", "invalid-token",
        "WWW-Authenticate", "Bearer realm=\"xmppgw\", error=\"invalid_token\""),
    [GW_ADMIN_ERR_NOT_FOUND] = ERROR_ENTRY(404, "not found", "not-found", NULL, NULL),
    [GW_ADMIN_ERR_METHOD] = ERROR_ENTRY(405, "only GET and HEAD are allowed",
        "method-not-allowed", "Allow", "GET, HEAD"),
    [GW_ADMIN_ERR_POST_ONLY] = ERROR_ENTRY(405, "only POST is allowed", "method-not-allowed",
        "Allow", "POST"),
    [GW_ADMIN_ERR_MEDIA_TYPE] = ERROR_ENTRY(415, "the body must be application/json",
        "unsupported-media-type", NULL, NULL),
    [GW_ADMIN_ERR_TOO_LARGE] = ERROR_ENTRY(413, "the request body is too large",
        "payload-too-large", NULL, NULL),
    [GW_ADMIN_ERR_BODY] = ERROR_ENTRY(400, "no request body expected", "bad-request", NULL, NULL),
    [GW_ADMIN_ERR_LIMIT] = ERROR_ENTRY(400, "limit must be between 1 and 10000", "bad-request",
        NULL, NULL),
    [GW_ADMIN_ERR_INTERNAL] = ERROR_ENTRY(500, "internal error", "internal-error", NULL, NULL),
    [GW_ADMIN_ERR_OFFSET] = ERROR_ENTRY(400, "offset must be a number from 0 to 100000000",
        "bad-request", NULL, NULL),
    [GW_ADMIN_ERR_FILTER] = ERROR_ENTRY(400, "jid and address must not be empty or too long",
        "bad-request", NULL, NULL),
    [GW_ADMIN_ERR_DELETE_ONLY] = ERROR_ENTRY(405, "only DELETE is allowed", "method-not-allowed",
        "Allow", "DELETE"),
    [GW_ADMIN_ERR_CONDITION] = ERROR_ENTRY(400, "condition must be one of policy-violation, "
        "system-shutdown, undefined-condition, internal-server-error, host-gone, "
        "remote-connection-failed", "bad-request", NULL, NULL),
    [GW_ADMIN_ERR_NO_SESSION] = ERROR_ENTRY(404, "no session has that id", "not-found", NULL,
        NULL),
};
/* clang-format on */

const struct gw_admin_error *gw_admin_error(enum gw_admin_refusal r)
{
    if (r <= GW_ADMIN_OK || r >= GW_ADMIN_ERR_COUNT)
        return NULL;
    return &errors[r];
}

/* ---- routes ---- */

#define SESSION_PREFIX "/api/sessions/"

struct route_def {
    const char *path; /* as requested, exactly */
    size_t body_max;  /* 0: GET and HEAD without a body; else POST with a JSON body this long */
};

/* clang-format off */
static const struct route_def routes[GW_ADMIN_ROUTE_COUNT] = {
    [GW_ADMIN_ROUTE_HEALTHZ] = {"/healthz", 0},
    [GW_ADMIN_ROUTE_READYZ] = {"/readyz", 0},
    [GW_ADMIN_ROUTE_METRICS] = {"/metrics", 0},
    [GW_ADMIN_ROUTE_STATUS] = {"/status", 0},
    [GW_ADMIN_ROUTE_SESSIONS] = {"/api/sessions", 0},
    [GW_ADMIN_ROUTE_PUBLISH] = {"/api/publish", GW_HUB_PUBLISH_BODY_MAX},
    [GW_ADMIN_ROUTE_PREBIND] = {"/api/prebind", GW_ADMIN_PREBIND_BODY_MAX},
    [GW_ADMIN_ROUTE_DRAIN] = {"/api/drain", GW_ADMIN_DRAIN_BODY_MAX},
    [GW_ADMIN_ROUTE_SESSION_END] = {SESSION_PREFIX, 0}, /* a prefix: the id follows */
};
/* clang-format on */

const char *gw_admin_route_path(enum gw_admin_route r)
{
    if (r <= GW_ADMIN_ROUTE_NONE || r >= GW_ADMIN_ROUTE_COUNT)
        return NULL;
    return routes[r].path;
}

bool gw_admin_route_is_post(enum gw_admin_route r)
{
    return r > GW_ADMIN_ROUTE_NONE && r < GW_ADMIN_ROUTE_COUNT && routes[r].body_max > 0;
}

static enum gw_admin_route find_route(const char *path)
{
    if (strncmp(path, SESSION_PREFIX, sizeof(SESSION_PREFIX) - 1) == 0)
        return GW_ADMIN_ROUTE_SESSION_END;
    for (int r = GW_ADMIN_ROUTE_NONE + 1; r < GW_ADMIN_ROUTE_COUNT; r++)
        if (strcmp(routes[r].path, path) == 0)
            return (enum gw_admin_route)r;
    return GW_ADMIN_ROUTE_NONE;
}

/* ---- Host header ---- */

/* A page on any site can point its own name at 127.0.0.1 (DNS rebinding) and then read this
 * port from the operator's browser as same-origin; its requests still carry its own name in
 * Host. So the Host must be an address (which such a page cannot make its origin), "localhost",
 * or a name the operator listed in admin.hosts. h is the header's value, port optional:
 * "127.0.0.1:5281", "[::1]", "admin.example". */
static bool host_allowed(const struct gw_config *cfg, const char *h)
{
    char name[GW_HOST_MAX + 1];
    uint16_t port;
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        if (close && close[1] == '\0')
            return gw_host_ip_literal(h + 1, (size_t)(close - h - 1)) == GW_HOST_IP_V6;
        return gw_host_parse_addr(h, name, sizeof(name), &port) == 0; /* checks the IPv6 */
    }
    if (strchr(h, ':')) {
        if (gw_host_parse_addr(h, name, sizeof(name), &port) != 0)
            return false;
    } else {
        size_t n = strlen(h);
        if (!gw_host_name_valid(h, n)) /* also bounds n to GW_HOST_MAX */
            return false;
        memcpy(name, h, n + 1);
    }
    if (gw_host_ip_literal(name, strlen(name)) == GW_HOST_IP_V4 ||
        strcasecmp(name, "localhost") == 0)
        return true;
    unsigned n = cfg->n_admin_hosts < GW_CFG_MAX_LIST ? cfg->n_admin_hosts : GW_CFG_MAX_LIST;
    for (unsigned i = 0; i < n; i++)
        if (strcasecmp(name, cfg->admin_hosts[i]) == 0)
            return true;
    return false;
}

/* A field value may hold visible ASCII and inner spaces (RFC 9110 section 5.5); a host and port
 * (RFC 3986 section 3.2.2) hold no space either. So a control, a space, DEL or a byte outside
 * ASCII makes the value invalid rather than a host that is not ours. */
static bool host_field_valid(const char *h)
{
    for (const unsigned char *c = (const unsigned char *)h; *c; c++)
        if (*c <= ' ' || *c >= 0x7f)
            return false;
    return true;
}

/* Exactly one Host header with a valid value (RFC 9112 section 3.2), and one host_allowed()
 * takes. GW_ADMIN_OK, GW_ADMIN_ERR_HOST_FIELD or GW_ADMIN_ERR_HOST. */
static enum gw_admin_refusal check_host(const struct gw_config *cfg,
                                        const struct gw_admin_request *req)
{
    if (req->n_hosts != 1 || !req->hosts || !req->hosts[0] || !host_field_valid(req->hosts[0]))
        return GW_ADMIN_ERR_HOST_FIELD;
    return host_allowed(cfg, req->hosts[0]) ? GW_ADMIN_OK : GW_ADMIN_ERR_HOST;
}

/* ---- bearer token ---- */

/* Compare digests, not the strings: the time taken then tells nothing about the token, not even
 * its length. */
static bool token_matches(const char *want, const char *got, size_t got_len)
{
    unsigned char dw[SHA256_DIGEST_LENGTH], dg[SHA256_DIGEST_LENGTH];
    if (!SHA256((const unsigned char *)want, strlen(want), dw) ||
        !SHA256((const unsigned char *)got, got_len, dg))
        return false;
    return CRYPTO_memcmp(dw, dg, sizeof(dw)) == 0;
}

/* GW_ADMIN_OK, GW_ADMIN_ERR_NO_TOKEN or GW_ADMIN_ERR_BAD_TOKEN. */
static enum gw_admin_refusal check_token(const struct gw_config *cfg, const char *h)
{
    const char *want = cfg->admin_token;
    if (!want[0])
        return GW_ADMIN_OK;
    /* RFC 6750: scheme case-insensitive, one or more spaces, then the token. */
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return GW_ADMIN_ERR_NO_TOKEN;
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t len = strlen(tok);
    while (len > 0 && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
        len--;
    return token_matches(want, tok, len) ? GW_ADMIN_OK : GW_ADMIN_ERR_BAD_TOKEN;
}

/* ---- query arguments ---- */

/* A count in a query argument: absent gives def; else digits only, min..max. */
static bool parse_count(const char *s, size_t def, size_t min, size_t max, size_t *out)
{
    size_t v = 0;
    *out = def;
    if (!s)
        return true;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (size_t)(*s - '0');
        if (v > max)
            return false;
    }
    if (v < min)
        return false;
    *out = v;
    return true;
}

/* A filter is absent, or 1..max bytes. */
static bool filter_ok(const char *s, size_t max)
{
    return !s || (s[0] && strnlen(s, max + 1) <= max);
}

bool gw_admin_end_condition_ok(int c)
{
    switch (c) {
    case GW_COND_policy_violation:
    case GW_COND_system_shutdown:
    case GW_COND_undefined_condition:
    case GW_COND_internal_server_error:
    case GW_COND_host_gone:
    case GW_COND_remote_connection_failed:
        return true;
    default:
        return false;
    }
}

/* The id and the condition of DELETE /api/sessions/<id>. */
static enum gw_admin_refusal parse_end(const struct gw_admin_request *req,
                                       struct gw_admin_decision *out)
{
    const char *id = req->path + sizeof(SESSION_PREFIX) - 1;
    if (strlen(id) != GW_ADMIN_SID_HASH_LEN ||
        strspn(id, "0123456789abcdef") != GW_ADMIN_SID_HASH_LEN)
        return GW_ADMIN_ERR_NO_SESSION;
    enum gw_condition c = GW_COND_policy_violation;
    if (req->condition) {
        c = gw_condition_from_name(req->condition);
        if (!gw_admin_end_condition_ok(c))
            return GW_ADMIN_ERR_CONDITION;
    }
    out->id = id;
    out->condition = c;
    return GW_ADMIN_OK;
}

/* limit, offset, jid, address of GET /api/sessions. */
static enum gw_admin_refusal parse_listing(const struct gw_admin_request *req,
                                           struct gw_admin_decision *out)
{
    if (!parse_count(req->limit, GW_ADMIN_SESSIONS_LIMIT_DEFAULT, 1, GW_ADMIN_SESSIONS_LIMIT_MAX,
                     &out->limit))
        return GW_ADMIN_ERR_LIMIT;
    if (!parse_count(req->offset, 0, 0, GW_ADMIN_SESSIONS_OFFSET_MAX, &out->offset))
        return GW_ADMIN_ERR_OFFSET;
    if (!filter_ok(req->jid, GW_ADMIN_FILTER_JID_MAX) ||
        !filter_ok(req->address, GW_ADMIN_FILTER_ADDRESS_MAX))
        return GW_ADMIN_ERR_FILTER;
    out->jid = req->jid;
    out->address = req->address;
    return GW_ADMIN_OK;
}

/* ---- bodies of POST routes ---- */

/* "application/json", in any case, alone or with parameters ("; charset=utf-8"). */
static bool json_type(const char *ct)
{
    static const char want[] = "application/json";
    if (!ct || strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    const char *rest = ct + sizeof(want) - 1;
    rest += strspn(rest, " \t");
    return *rest == '\0' || *rest == ';';
}

/* An announced length past max (digits only; one too long to count is past any max). Anything
 * else is not ours to judge: the HTTP server refuses a malformed length itself. */
static bool length_over(const char *cl, size_t max)
{
    if (!cl || !cl[0] || strspn(cl, "0123456789") != strlen(cl))
        return false;
    uint64_t v = 0;
    for (const char *p = cl; *p; p++) {
        if (v > (UINT64_MAX - 9) / 10)
            return true;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    return v > max;
}

/* The method and body rules of one route. */
static enum gw_admin_refusal refuse_body(const struct gw_admin_request *req,
                                         enum gw_admin_route route)
{
    if (route == GW_ADMIN_ROUTE_SESSION_END) {
        if (strcmp(req->method, "DELETE") != 0)
            return GW_ADMIN_ERR_DELETE_ONLY;
        return req->has_body ? GW_ADMIN_ERR_BODY : GW_ADMIN_OK;
    }
    if (!gw_admin_route_is_post(route)) {
        if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
            return GW_ADMIN_ERR_METHOD;
        return req->has_body ? GW_ADMIN_ERR_BODY : GW_ADMIN_OK;
    }
    if (strcmp(req->method, "POST") != 0)
        return GW_ADMIN_ERR_POST_ONLY;
    if (!json_type(req->content_type))
        return GW_ADMIN_ERR_MEDIA_TYPE;
    return length_over(req->content_length, routes[route].body_max) ? GW_ADMIN_ERR_TOO_LARGE
                                                                    : GW_ADMIN_OK;
}

/* ---- the decision ---- */

/* The refusals that the headers alone decide, in order; GW_ADMIN_OK when none applies. */
static enum gw_admin_refusal refuse_on_headers(const struct gw_config *cfg,
                                               const struct gw_admin_request *req,
                                               enum gw_admin_route route)
{
    enum gw_admin_refusal h = check_host(cfg, req);
    if (h != GW_ADMIN_OK)
        return h;
    /* The token guards the whole /api/ tree, known paths or not, so that a new endpoint there
     * cannot be left open by mistake. */
    if (strncmp(req->path, "/api/", 5) == 0) {
        enum gw_admin_refusal t = check_token(cfg, req->authorization);
        if (t != GW_ADMIN_OK)
            return t;
    }
    if (route == GW_ADMIN_ROUTE_NONE)
        return GW_ADMIN_ERR_NOT_FOUND;
    return refuse_body(req, route);
}

void gw_admin_decide(const struct gw_config *cfg, const struct gw_admin_request *req,
                     struct gw_admin_decision *out)
{
    enum gw_admin_route route = find_route(req->path);
    memset(out, 0, sizeof(*out));
    out->refusal = refuse_on_headers(cfg, req, route);
    if (out->refusal != GW_ADMIN_OK) {
        out->at_once = true;
        return;
    }
    if (route == GW_ADMIN_ROUTE_SESSIONS)
        out->refusal = parse_listing(req, out);
    else if (route == GW_ADMIN_ROUTE_SESSION_END)
        out->refusal = parse_end(req, out);
    if (out->refusal != GW_ADMIN_OK) {
        out->limit = out->offset = 0;
        out->jid = out->address = out->id = NULL;
        out->condition = 0;
        return;
    }
    out->route = route;
    out->body_max = routes[route].body_max;
}
