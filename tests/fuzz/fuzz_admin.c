/* libFuzzer target for gateway/admin/admin_proto.c. The input is lines, each a field named by its
 * first byte: M method, P path with query, H a Host header (repeatable: none, one or several), A
 * Authorization, B a body comes, C Content-Type, N Content-Length, L an admin.hosts entry
 * (repeatable), T admin.token. The query is read as the HTTP server would give it (the first
 * "limit", "offset", "jid", "address" and "condition" arguments, decoded). Invariants: not exactly
 * one Host, or one with a control, space or byte outside ASCII, is always refused with 400; any
 * other Host that no rule could allow (a name that is no IPv4 address, bracketed IPv6, localhost or
 * admin.hosts entry; a bad port) is always refused with 421; under /api/ with a token set, a
 * missing or wrong bearer never gets routed; a routed request is on its route's path, GET or HEAD
 * without a body on a GET route, POST with a JSON type and no announced length past the bound it
 * gets on a POST route, and a routed /api/sessions has 1 <= limit <= GW_ADMIN_SESSIONS_LIMIT_MAX
 * (the number given, when one was), an offset within its bound and the filters as given; a routed
 * DELETE /api/sessions/<id> is DELETE without a body, its id GW_ADMIN_SID_HASH_LEN lowercase hex
 * characters at the end of the path, and a condition gw_admin_end_condition_ok() takes
 * (policy-violation when none was given); the decision is the same when asked twice; every
 * refusal's body is JSON naming its condition. A plain GET /healthz from 127.0.0.1 must be routed,
 * so the policy cannot pass by refusing everything. Calls: admin_proto, config, core/host; jansson.
 */
#include "admin/admin_proto.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include "admin/admin.h"
#include "config/config.h"
#include "core/cond.h"
#include "core/host.h"
#include "session/hub.h"

#define HOSTS_MAX 8   /* Host lines read; more are counted as these */
#define FIELD_MAX 512 /* bytes kept of the path, the query's limit */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct input {
    char *text;                /* the input, each line's newline replaced by NUL */
    const char *method, *path; /* M, P (path without the query) */
    const char *query;         /* what followed '?' in P, or NULL */
    const char *hosts[HOSTS_MAX];
    size_t n_hosts;            /* H lines, up to HOSTS_MAX */
    const char *authorization; /* A (the first), or NULL */
    bool has_body;             /* a B line */
    const char *content_type;  /* C (the first), or NULL */
    const char *length;        /* N: Content-Length (the first), or NULL */
    char limit[FIELD_MAX];     /* the decoded limit argument, when has_limit */
    bool has_limit;
    char offset[FIELD_MAX], jid[FIELD_MAX], address[FIELD_MAX], condition[FIELD_MAX];
    bool has_offset, has_jid, has_address, has_condition;
};

static struct gw_config cfg;

/* ---- reading the input ---- */

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode '+' and %XX as an HTTP server does with a query argument; stops at a decoded NUL. */
static void decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen; i++) {
        char c = s[i];
        if (c == '+')
            c = ' ';
        else if (c == '%' && i + 2 < n && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            c = (char)(hex(s[i + 1]) << 4 | hex(s[i + 2]));
            i += 2;
        }
        if (c == '\0')
            break;
        out[o++] = c;
    }
    out[o] = '\0';
}

/* The first `name` argument of the query (name compared without case): absent, the name alone
 * (no value: absent too), or "name=value". */
static void find_arg(const struct input *in, const char *name, char *out, size_t outlen, bool *has)
{
    for (const char *p = in->query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        char key[16];
        decode(p, klen, key, sizeof(key));
        if (strcasecmp(key, name) == 0 && klen < sizeof(key)) {
            if (eq) {
                decode(eq + 1, len - klen - 1, out, outlen);
                *has = true;
            }
            return;
        }
        p = end ? end + 1 : NULL;
    }
}

static void set_string(char *dst, size_t dstlen, const char *s)
{
    size_t n = strlen(s);
    if (n >= dstlen)
        n = dstlen - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void read_line(struct input *in, char tag, char *v)
{
    switch (tag) {
    case 'M':
        in->method = v;
        break;
    case 'P': {
        char *q = strchr(v, '?');
        if (q) {
            *q = '\0';
            in->query = q + 1;
        }
        in->path = v;
        break;
    }
    case 'H':
        if (in->n_hosts < HOSTS_MAX)
            in->hosts[in->n_hosts++] = v;
        break;
    case 'A':
        if (!in->authorization)
            in->authorization = v;
        break;
    case 'B':
        in->has_body = true;
        break;
    case 'C':
        if (!in->content_type)
            in->content_type = v;
        break;
    case 'N':
        if (!in->length)
            in->length = v;
        break;
    case 'L':
        if (cfg.n_admin_hosts < GW_CFG_MAX_LIST)
            set_string(cfg.admin_hosts[cfg.n_admin_hosts++], sizeof(cfg.admin_hosts[0]), v);
        break;
    case 'T':
        set_string(cfg.admin_token, sizeof(cfg.admin_token), v);
        break;
    default:
        break;
    }
}

static bool read_input(struct input *in, const uint8_t *data, size_t size)
{
    memset(in, 0, sizeof(*in));
    in->text = malloc(size + 1);
    if (!in->text)
        return false;
    memcpy(in->text, data, size);
    in->text[size] = '\0';
    in->method = "GET";
    in->path = "/";
    cfg.admin_token[0] = '\0';
    cfg.n_admin_hosts = 0;
    for (char *line = in->text; line && line < in->text + size;) {
        char *nl = memchr(line, '\n', (size_t)(in->text + size - line));
        if (nl)
            *nl = '\0';
        if (*line)
            read_line(in, line[0], line + 1);
        line = nl ? nl + 1 : NULL;
    }
    find_arg(in, "limit", in->limit, sizeof(in->limit), &in->has_limit);
    find_arg(in, "offset", in->offset, sizeof(in->offset), &in->has_offset);
    find_arg(in, "jid", in->jid, sizeof(in->jid), &in->has_jid);
    find_arg(in, "address", in->address, sizeof(in->address), &in->has_address);
    find_arg(in, "condition", in->condition, sizeof(in->condition), &in->has_condition);
    return true;
}

/* ---- what any correct policy must do ---- */

/* "" or ":" and a port 1..65535 (digits only). */
static bool port_ok(const char *s)
{
    if (!*s)
        return true;
    if (*s != ':' || !s[1] || strspn(s + 1, "0123456789") != strlen(s + 1))
        return false;
    unsigned long v = 0;
    for (const char *p = s + 1; *p && v <= 65535; p++)
        v = v * 10 + (unsigned long)(*p - '0');
    return v >= 1 && v <= 65535;
}

/* Could any rule allow this Host value? Looser than the real rule, never stricter: an IPv4
 * address, a bracketed IPv6 address, localhost or an admin.hosts entry, then an optional port. */
static bool host_could_pass(const char *h)
{
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        return close && gw_host_ip_literal(h + 1, (size_t)(close - h - 1)) == GW_HOST_IP_V6 &&
               port_ok(close + 1);
    }
    size_t n = strcspn(h, ":");
    if (n == 0 || n > GW_HOST_MAX || !port_ok(h + n))
        return false;
    char name[GW_HOST_MAX + 1];
    memcpy(name, h, n);
    name[n] = '\0';
    if (gw_host_ip_literal(name, n) == GW_HOST_IP_V4 || strcasecmp(name, "localhost") == 0)
        return true;
    for (unsigned i = 0; i < cfg.n_admin_hosts; i++)
        if (strcasecmp(name, cfg.admin_hosts[i]) == 0)
            return true;
    return false;
}

/* A Host field value with no control, space, DEL or byte outside ASCII. */
static bool host_field_could_pass(const char *h)
{
    for (const unsigned char *c = (const unsigned char *)h; *c; c++)
        if (*c <= ' ' || *c >= 0x7f)
            return false;
    return true;
}

/* Does auth carry the configured token as a bearer: "Bearer", spaces, the token, blanks? */
static bool bearer_could_pass(const char *auth)
{
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *t = auth + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(cfg.admin_token);
    return strncmp(t, cfg.admin_token, n) == 0 && strspn(t + n, " \t") == strlen(t + n);
}

static void check_error_body(enum gw_admin_refusal r)
{
    const struct gw_admin_error *e = gw_admin_error(r);
    if (!e || e->status < 400 || e->status > 599 || !e->condition[0])
        abort();
    json_error_t err;
    json_t *j = json_loads(e->body, 0, &err);
    const char *cond = json_string_value(json_object_get(j, "condition"));
    const char *text = json_string_value(json_object_get(j, "error"));
    if (!json_is_object(j) || !cond || !text || !text[0] || strcmp(cond, e->condition) != 0)
        abort();
    json_decref(j);
}

/* "application/json", any case, then nothing or parameters. */
static bool json_type_could_pass(const char *ct)
{
    if (!ct || strncasecmp(ct, "application/json", 16) != 0)
        return false;
    const char *rest = ct + 16 + strspn(ct + 16, " \t");
    return !*rest || *rest == ';';
}

/* A POST route: POST, a JSON type, no announced length past the bound it hands on. */
static void check_routed_post(const struct input *in, const struct gw_admin_decision *d)
{
    if (strcmp(in->method, "POST") != 0 || !json_type_could_pass(in->content_type) ||
        d->body_max == 0 || d->body_max > GW_HUB_PUBLISH_BODY_MAX || d->limit != 0)
        abort();
    if (d->route == GW_ADMIN_ROUTE_DRAIN && d->body_max != GW_ADMIN_DRAIN_BODY_MAX)
        abort(); /* POST /api/drain reads {} or nothing, never a publish-sized body */
    const char *n = in->length;
    if (n && *n && strspn(n, "0123456789") == strlen(n)) {
        n += strspn(n, "0");
        if (strlen(n) > 20 || (strlen(n) > 0 && strtoull(n, NULL, 10) > d->body_max))
            abort();
    }
}

/* DELETE /api/sessions/<id>. */
static void check_routed_end(const struct input *in, const struct gw_admin_decision *d)
{
    const char *prefix = gw_admin_route_path(d->route);
    size_t n = prefix ? strlen(prefix) : 0;
    if (!prefix || strncmp(in->path, prefix, n) != 0 || strcmp(in->method, "DELETE") != 0 ||
        in->has_body || d->body_max != 0 || d->limit != 0 || !d->id || d->id != in->path + n ||
        strlen(d->id) != GW_ADMIN_SID_HASH_LEN ||
        strspn(d->id, "0123456789abcdef") != GW_ADMIN_SID_HASH_LEN ||
        !gw_admin_end_condition_ok(d->condition))
        abort();
    if (in->has_condition ? d->condition != gw_condition_from_name(in->condition)
                          : d->condition != GW_COND_policy_violation)
        abort();
}

static void check_routed_listing(const struct input *in, const struct gw_admin_decision *d)
{
    if (d->offset > GW_ADMIN_SESSIONS_OFFSET_MAX || (!in->has_offset && d->offset != 0) ||
        (in->has_offset && (strspn(in->offset, "0123456789") != strlen(in->offset) ||
                            strtoul(in->offset, NULL, 10) != d->offset)))
        abort();
    if ((d->jid != NULL) != in->has_jid || (d->address != NULL) != in->has_address ||
        (d->jid && (strcmp(d->jid, in->jid) != 0 || !d->jid[0])) ||
        (d->address && (strcmp(d->address, in->address) != 0 || !d->address[0])))
        abort();
}

static void check_routed(const struct input *in, const struct gw_admin_decision *d)
{
    if (d->route == GW_ADMIN_ROUTE_SESSION_END) {
        check_routed_end(in, d);
        return;
    }
    const char *path = gw_admin_route_path(d->route);
    if (!path || strcmp(path, in->path) != 0 || d->id)
        abort();
    if (gw_admin_route_is_post(d->route)) {
        check_routed_post(in, d);
        return;
    }
    if (in->has_body || d->body_max != 0 ||
        (strcmp(in->method, "GET") != 0 && strcmp(in->method, "HEAD") != 0))
        abort();
    if (d->route != GW_ADMIN_ROUTE_SESSIONS) {
        if (d->limit != 0 || d->offset != 0 || d->jid || d->address)
            abort();
        return;
    }
    check_routed_listing(in, d);
    if (d->limit < 1 || d->limit > GW_ADMIN_SESSIONS_LIMIT_MAX)
        abort();
    if (!in->has_limit && d->limit != GW_ADMIN_SESSIONS_LIMIT_DEFAULT)
        abort();
    if (in->has_limit && (strspn(in->limit, "0123456789") != strlen(in->limit) ||
                          strtoul(in->limit, NULL, 10) != d->limit))
        abort();
}

static void check(const struct input *in, const struct gw_admin_decision *d)
{
    bool field_ok = in->n_hosts == 1 && host_field_could_pass(in->hosts[0]);
    bool host_ok = field_ok && host_could_pass(in->hosts[0]);
    bool api = strncmp(in->path, "/api/", 5) == 0;
    bool token_ok = !cfg.admin_token[0] || bearer_could_pass(in->authorization);
    if ((d->route == GW_ADMIN_ROUTE_NONE) != (d->refusal != GW_ADMIN_OK))
        abort();
    if (!field_ok && d->refusal != GW_ADMIN_ERR_HOST_FIELD)
        abort();
    if (field_ok && !host_ok && d->refusal != GW_ADMIN_ERR_HOST)
        abort();
    if (host_ok && api && !token_ok && d->refusal != GW_ADMIN_ERR_HOST &&
        d->refusal != GW_ADMIN_ERR_NO_TOKEN && d->refusal != GW_ADMIN_ERR_BAD_TOKEN)
        abort();
    /* Only the query's arguments wait for the end of the request; the adapter's own refusal is
     * not ours. */
    bool late = d->refusal == GW_ADMIN_ERR_LIMIT || d->refusal == GW_ADMIN_ERR_OFFSET ||
                d->refusal == GW_ADMIN_ERR_FILTER || d->refusal == GW_ADMIN_ERR_CONDITION ||
                d->refusal == GW_ADMIN_ERR_NO_SESSION;
    if (d->refusal == GW_ADMIN_ERR_INTERNAL || (d->refusal != GW_ADMIN_OK && d->at_once != !late) ||
        (d->refusal == GW_ADMIN_OK && d->at_once))
        abort();
    if (d->refusal == GW_ADMIN_OK)
        check_routed(in, d);
    else
        check_error_body(d->refusal);
}

/* The same request with a plain loopback Host and GET /healthz must be served. */
static void check_served(const struct gw_admin_request *req)
{
    static const char *const loopback[] = {"127.0.0.1"};
    struct gw_admin_request plain = *req;
    struct gw_admin_decision d;
    plain.method = "GET";
    plain.path = "/healthz";
    plain.hosts = loopback;
    plain.n_hosts = 1;
    plain.has_body = false;
    plain.content_type = NULL;
    plain.content_length = NULL;
    gw_admin_decide(&cfg, &plain, &d);
    if (d.route != GW_ADMIN_ROUTE_HEALTHZ || d.refusal != GW_ADMIN_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        gw_config_defaults(&cfg);
        ready = true;
    }
    struct input in;
    if (!read_input(&in, data, size))
        return 0;
    struct gw_admin_request req = {
        .method = in.method,
        .path = in.path,
        .limit = in.has_limit ? in.limit : NULL,
        .offset = in.has_offset ? in.offset : NULL,
        .jid = in.has_jid ? in.jid : NULL,
        .address = in.has_address ? in.address : NULL,
        .condition = in.has_condition ? in.condition : NULL,
        .hosts = in.hosts,
        .n_hosts = in.n_hosts,
        .authorization = in.authorization,
        .has_body = in.has_body,
        .content_type = in.content_type,
        .content_length = in.length,
    };
    struct gw_admin_decision d, again;
    gw_admin_decide(&cfg, &req, &d);
    gw_admin_decide(&cfg, &req, &again);
    if (d.route != again.route || d.refusal != again.refusal || d.limit != again.limit ||
        d.at_once != again.at_once || d.body_max != again.body_max || d.offset != again.offset ||
        d.id != again.id || d.condition != again.condition || d.jid != again.jid ||
        d.address != again.address)
        abort();
    check(&in, &d);
    check_served(&req);
    free(in.text);
    return 0;
}
