/* Tests for gateway/admin/admin_proto.c without sockets: the Host rule (addresses, localhost and
 * admin.hosts pass; other names get 421; none, two or a malformed value 400), the bearer token over
 * the whole /api/ tree, routes, methods, bodies, the limit argument, the POST routes (method, media
 * type, announced length, the bound handed on), the order of the refusals and which go out on the
 * headers, the same decision twice, and the refusal table (status, JSON body,
 * extra header). */
#include "admin/admin_proto.h"
#include "check.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "admin/admin.h"
#include "config/config.h"
#include "session/hub.h"

#define TOKEN "s3cret-token"
#define ADMIN_HOST "admin.example" /* in admin.hosts */

static struct gw_config cfg;

/* A request that passes every check; each test changes one thing. */
static struct gw_admin_request base(const char *path, const char *const *host)
{
    struct gw_admin_request r = {
        .method = "GET", .path = path, .hosts = host, .n_hosts = 1, .authorization = NULL};
    return r;
}

static const char *const loopback[] = {"127.0.0.1:5281"};

static struct gw_admin_decision decide(const struct gw_admin_request *req)
{
    struct gw_admin_decision d, again;
    gw_admin_decide(&cfg, req, &d);
    gw_admin_decide(&cfg, req, &again);
    CHECK(d.route == again.route && d.refusal == again.refusal && d.limit == again.limit &&
          d.at_once == again.at_once);
    CHECK((d.route == GW_ADMIN_ROUTE_NONE) == (d.refusal != GW_ADMIN_OK));
    CHECK(d.refusal == GW_ADMIN_OK || d.limit == 0);
    return d;
}

static enum gw_admin_refusal refusal_for_host(const char *host, const char *path)
{
    const char *const hosts[] = {host};
    struct gw_admin_request r = base(path, hosts);
    return decide(&r).refusal;
}

static void test_hosts(void)
{
    struct gw_admin_decision d;
    const char *ok[] = {"127.0.0.1", "127.0.0.1:5281",    "[::1]",          "[::1]:5281",
                        "localhost", "LocalHost:5281",    "192.0.2.9:5281", "[2001:db8::1]",
                        ADMIN_HOST,  "Admin.EXAMPLE:5281"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (refusal_for_host(ok[i], "/healthz") != GW_ADMIN_OK)
            fprintf(stderr, "Host: %s refused\n", ok[i]);
        CHECK(refusal_for_host(ok[i], "/healthz") == GW_ADMIN_OK);
        CHECK(refusal_for_host(ok[i], "/api/sessions") == GW_ADMIN_OK);
    }
    const char *bad[] = {"evil.example",
                         "evil.example:5281",
                         "localhost.evil.example",
                         "127.0.0.1.evil.example",
                         "admin.example.evil",
                         "localhost.",
                         "::1",
                         "[::1",
                         "[127.0.0.1]",
                         "[::1]x",
                         "127.0.0.1:0",
                         "127.0.0.1:99999",
                         "localhost:",
                         "localhost:x",
                         "",
                         "2130706433",
                         "0x7f.0.0.1",
                         "evil.example,127.0.0.1"};
    const char *paths[] = {"/healthz",      "/metrics",  "/status", "/readyz",
                           "/api/sessions", "/api/nope", "/nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
            if (refusal_for_host(bad[i], paths[p]) != GW_ADMIN_ERR_HOST)
                fprintf(stderr, "Host: %s on %s not refused\n", bad[i], paths[p]);
            CHECK(refusal_for_host(bad[i], paths[p]) == GW_ADMIN_ERR_HOST);
        }
    }
    /* Not a valid field value: 400, whatever the path or the token. */
    const char *malformed[] = {"a b",  "evil.example, 127.0.0.1", "local\x01host",   "127.0.0.1\t",
                               " ::1", "localhost\x7f",           "l\303\266calhost"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++)
            CHECK(refusal_for_host(malformed[i], paths[p]) == GW_ADMIN_ERR_HOST_FIELD);
    /* None, two (even the same one twice), or a NULL value: 400 (RFC 9112 section 3.2). */
    const char *const two[] = {"127.0.0.1", "127.0.0.1"};
    const char *const null_host[] = {NULL};
    struct gw_admin_request r = base("/healthz", two);
    r.n_hosts = 0;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST_FIELD);
    r.hosts = NULL;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST_FIELD);
    r.hosts = two;
    r.n_hosts = 2;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST_FIELD);
    r.path = "/api/sessions";
    r.authorization = "Bearer " TOKEN;
    d = decide(&r);
    CHECK(d.refusal == GW_ADMIN_ERR_HOST_FIELD && d.at_once);
    r.path = "/healthz";
    r.n_hosts = 1;
    CHECK(decide(&r).refusal == GW_ADMIN_OK);
    r.hosts = null_host;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST_FIELD);
}

static enum gw_admin_refusal refusal_for_auth(const char *path, const char *auth)
{
    struct gw_admin_request r = base(path, loopback);
    r.authorization = auth;
    return decide(&r).refusal;
}

static void test_token(void)
{
    /* No token configured: /api/ is open, whatever Authorization says. */
    cfg.admin_token[0] = '\0';
    CHECK(refusal_for_auth("/api/sessions", NULL) == GW_ADMIN_OK);
    CHECK(refusal_for_auth("/api/sessions", "Bearer nope") == GW_ADMIN_OK);
    CHECK(refusal_for_auth("/api/nope", NULL) == GW_ADMIN_ERR_NOT_FOUND);

    snprintf(cfg.admin_token, sizeof(cfg.admin_token), "%s", TOKEN);
    CHECK(refusal_for_auth("/api/sessions", NULL) == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "") == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Basic " TOKEN) == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer") == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer" TOKEN) == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer ") == GW_ADMIN_ERR_BAD_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer nope") == GW_ADMIN_ERR_BAD_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer " TOKEN "x") == GW_ADMIN_ERR_BAD_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer s3cret") == GW_ADMIN_ERR_BAD_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer " TOKEN " x") == GW_ADMIN_ERR_BAD_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer S3CRET-TOKEN") == GW_ADMIN_ERR_BAD_TOKEN);
    CHECK(refusal_for_auth("/api/sessions", "Bearer " TOKEN) == GW_ADMIN_OK);
    CHECK(refusal_for_auth("/api/sessions", "bearer   " TOKEN " \t") == GW_ADMIN_OK);
    CHECK(refusal_for_auth("/api/sessions", "BEARER " TOKEN) == GW_ADMIN_OK);

    /* The whole /api/ tree, unknown paths and other methods included; nothing else. */
    CHECK(refusal_for_auth("/api/nope", NULL) == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/", NULL) == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/../metrics", NULL) == GW_ADMIN_ERR_NO_TOKEN);
    CHECK(refusal_for_auth("/api/nope", "Bearer " TOKEN) == GW_ADMIN_ERR_NOT_FOUND);
    CHECK(refusal_for_auth("/api", NULL) == GW_ADMIN_ERR_NOT_FOUND);
    CHECK(refusal_for_auth("/status", NULL) == GW_ADMIN_OK);
    CHECK(refusal_for_auth("/metrics", "Bearer nope") == GW_ADMIN_OK);
    struct gw_admin_request r = base("/api/sessions", loopback);
    r.method = "DELETE";
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_NO_TOKEN);
    r.authorization = "Bearer " TOKEN;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_METHOD);

    /* The Host before the token: a right token does not make a wrong Host right. */
    const char *const evil[] = {"evil.example"};
    r = base("/api/sessions", evil);
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST);
    r.authorization = "Bearer " TOKEN;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST);
    cfg.admin_token[0] = '\0';
}

static void test_routes(void)
{
    const struct {
        const char *path;
        enum gw_admin_route route;
    } routes[] = {
        {"/healthz", GW_ADMIN_ROUTE_HEALTHZ},       {"/readyz", GW_ADMIN_ROUTE_READYZ},
        {"/metrics", GW_ADMIN_ROUTE_METRICS},       {"/status", GW_ADMIN_ROUTE_STATUS},
        {"/api/sessions", GW_ADMIN_ROUTE_SESSIONS},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        struct gw_admin_request r = base(routes[i].path, loopback);
        struct gw_admin_decision d = decide(&r);
        CHECK(d.route == routes[i].route && d.refusal == GW_ADMIN_OK);
        CHECK_STR(gw_admin_route_path(routes[i].route), routes[i].path);
        r.method = "HEAD";
        CHECK(decide(&r).route == routes[i].route);
        r.method = "POST";
        d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_METHOD && d.at_once);
        r.method = "get";
        CHECK(decide(&r).refusal == GW_ADMIN_ERR_METHOD);
        r.method = "GET";
        r.has_body = true;
        d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_BODY && d.at_once);
    }
    CHECK(gw_admin_route_path(GW_ADMIN_ROUTE_NONE) == NULL);
    CHECK(gw_admin_route_path(GW_ADMIN_ROUTE_COUNT) == NULL);
    const char *none[] = {"/nope", "/metrics/", "/Metrics", "/healthz?x", "", "/", "//healthz"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        struct gw_admin_request r = base(none[i], loopback);
        struct gw_admin_decision d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_NOT_FOUND && d.at_once);
        /* The path before the method and the body. */
        r.method = "POST";
        r.has_body = true;
        CHECK(decide(&r).refusal == GW_ADMIN_ERR_NOT_FOUND);
    }
    /* The method before the body. */
    struct gw_admin_request r = base("/metrics", loopback);
    r.method = "PUT";
    r.has_body = true;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_METHOD);
    /* GET routes read no body: none has a bound. */
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        CHECK(!gw_admin_route_is_post(routes[i].route));
        struct gw_admin_request g = base(routes[i].path, loopback);
        CHECK(decide(&g).body_max == 0);
    }
}

/* A POST request to path with a JSON body of the given announced length (NULL: chunked). */
static struct gw_admin_request post(const char *path, const char *length)
{
    struct gw_admin_request r = base(path, loopback);
    r.method = "POST";
    r.has_body = true;
    r.content_type = "application/json";
    r.content_length = length;
    return r;
}

/* POST routes: POST only (405 with Allow: POST), application/json (415), an announced length
 * within the bound (413), all on the headers and in that order after Host, token and path; a
 * routed request carries the bound for the body still to come. */
static void test_post_routes(void)
{
    CHECK(gw_admin_route_is_post(GW_ADMIN_ROUTE_PUBLISH));
    CHECK(!gw_admin_route_is_post(GW_ADMIN_ROUTE_NONE));
    CHECK(!gw_admin_route_is_post(GW_ADMIN_ROUTE_COUNT));
    CHECK_STR(gw_admin_route_path(GW_ADMIN_ROUTE_PUBLISH), "/api/publish");
    CHECK(gw_admin_route_is_post(GW_ADMIN_ROUTE_PREBIND));
    CHECK_STR(gw_admin_route_path(GW_ADMIN_ROUTE_PREBIND), "/api/prebind");
    struct gw_admin_request pb = post("/api/prebind", "4096");
    CHECK(decide(&pb).route == GW_ADMIN_ROUTE_PREBIND &&
          decide(&pb).body_max == GW_ADMIN_PREBIND_BODY_MAX);
    pb.content_length = "4097";
    CHECK(decide(&pb).refusal == GW_ADMIN_ERR_TOO_LARGE);
    pb.authorization = NULL;
    snprintf(cfg.admin_token, sizeof(cfg.admin_token), "%s", TOKEN);
    CHECK(decide(&pb).refusal == GW_ADMIN_ERR_NO_TOKEN);
    cfg.admin_token[0] = '\0';
    /* POST /api/drain: a small JSON body at most, under the token like all of /api/. */
    CHECK(gw_admin_route_is_post(GW_ADMIN_ROUTE_DRAIN));
    CHECK_STR(gw_admin_route_path(GW_ADMIN_ROUTE_DRAIN), "/api/drain");
    struct gw_admin_request dr = post("/api/drain", "2");
    CHECK(decide(&dr).route == GW_ADMIN_ROUTE_DRAIN &&
          decide(&dr).body_max == GW_ADMIN_DRAIN_BODY_MAX);
    dr.content_length = "257";
    CHECK(decide(&dr).refusal == GW_ADMIN_ERR_TOO_LARGE);
    dr.content_length = "2";
    dr.method = "GET";
    CHECK(decide(&dr).refusal == GW_ADMIN_ERR_POST_ONLY);
    dr.method = "POST";
    dr.authorization = NULL;
    snprintf(cfg.admin_token, sizeof(cfg.admin_token), "%s", TOKEN);
    CHECK(decide(&dr).refusal == GW_ADMIN_ERR_NO_TOKEN);
    cfg.admin_token[0] = '\0';
    struct gw_admin_request r = post("/api/publish", "120");
    struct gw_admin_decision d = decide(&r);
    CHECK(d.route == GW_ADMIN_ROUTE_PUBLISH && d.body_max == GW_HUB_PUBLISH_BODY_MAX);
    CHECK(!d.at_once);
    const char *types[] = {"application/json", "Application/JSON",
                           "application/json; charset=utf-8", "application/json ;charset=UTF-8",
                           "application/json\t"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        r.content_type = types[i];
        CHECK(decide(&r).route == GW_ADMIN_ROUTE_PUBLISH);
    }
    const char *not_json[] = {NULL,
                              "",
                              "text/plain",
                              "application/jsonx",
                              "application/json5",
                              "application/x-www-form-urlencoded",
                              "multipart/form-data",
                              "application/ld+json",
                              " application/json"};
    for (size_t i = 0; i < sizeof(not_json) / sizeof(not_json[0]); i++) {
        r.content_type = not_json[i];
        d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_MEDIA_TYPE && d.at_once);
    }
    /* Lengths: up to the bound, chunked (read with the bound), past it, too long to count. */
    const struct {
        const char *cl;
        bool ok;
    } lengths[] = {{"0", true},      {"65536", true},       {NULL, true},
                   {"65537", false}, {"0000065537", false}, {"99999999999999999999999", false}};
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        r = post("/api/publish", lengths[i].cl);
        d = decide(&r);
        CHECK(lengths[i].ok ? d.route == GW_ADMIN_ROUTE_PUBLISH
                            : (d.refusal == GW_ADMIN_ERR_TOO_LARGE && d.at_once));
    }
    /* No body at all is routed: the empty body is the endpoint's to refuse (bad JSON). */
    r = post("/api/publish", NULL);
    r.has_body = false;
    CHECK(decide(&r).route == GW_ADMIN_ROUTE_PUBLISH);
    /* Other methods, HEAD included: 405 with Allow: POST, before the type and the length. */
    const char *methods[] = {"GET", "HEAD", "PUT", "post", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        r = post("/api/publish", "999999");
        r.method = methods[i];
        r.content_type = "text/plain";
        d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_POST_ONLY && d.at_once);
    }
    /* POST to a GET route is still GET's 405; Host, token and path still come first. */
    r = post("/api/sessions", "2");
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_METHOD);
    r = post("/api/publishx", "2");
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_NOT_FOUND);
    snprintf(cfg.admin_token, sizeof(cfg.admin_token), "%s", TOKEN);
    r = post("/api/publish", "999999");
    r.content_type = "text/plain";
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_NO_TOKEN);
    r.authorization = "Bearer nope";
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_BAD_TOKEN);
    r.authorization = "Bearer " TOKEN;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_MEDIA_TYPE);
    const char *const evil[] = {"evil.example"};
    r.hosts = evil;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST);
    r.n_hosts = 2;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_HOST_FIELD);
    cfg.admin_token[0] = '\0';
}

static void test_limit(void)
{
    const struct {
        const char *arg;
        size_t limit; /* 0: refused */
    } cases[] = {
        {NULL, GW_ADMIN_SESSIONS_LIMIT_DEFAULT},
        {"1", 1},
        {"0010", 10},
        {"10000", GW_ADMIN_SESSIONS_LIMIT_MAX},
        {"", 0},
        {"0", 0},
        {"000", 0},
        {"10001", 0},
        {"99999999999999999999999", 0},
        {"12x", 0},
        {"-1", 0},
        {"+1", 0},
        {" 1", 0},
        {"1 ", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_admin_request r = base("/api/sessions", loopback);
        r.limit = cases[i].arg;
        struct gw_admin_decision d = decide(&r);
        if (cases[i].limit) {
            CHECK(d.route == GW_ADMIN_ROUTE_SESSIONS && d.limit == cases[i].limit);
        } else {
            /* Answered at the end of the request, like an answer. */
            CHECK(d.refusal == GW_ADMIN_ERR_LIMIT && !d.at_once);
        }
        /* Every refusal on the headers comes before the limit's. */
        r.has_body = true;
        CHECK(decide(&r).refusal == GW_ADMIN_ERR_BODY);
    }
    /* Only /api/sessions reads it. */
    struct gw_admin_request r = base("/metrics", loopback);
    r.limit = "0";
    struct gw_admin_decision d = decide(&r);
    CHECK(d.route == GW_ADMIN_ROUTE_METRICS && d.limit == 0);
}

/* GET /api/sessions: offset (digits, 0..GW_ADMIN_SESSIONS_OFFSET_MAX), jid and address (1..their
 * bounds) handed on as given; refused after the limit, never at once, and only there. */
static void test_listing(void)
{
    struct gw_admin_request r = base("/api/sessions", loopback);
    struct gw_admin_decision d = decide(&r);
    CHECK(d.route == GW_ADMIN_ROUTE_SESSIONS && d.offset == 0 && !d.jid && !d.address);
    r.offset = "100000000";
    r.jid = "alice@localhost";
    r.address = "127.0.0.1";
    d = decide(&r);
    CHECK(d.route == GW_ADMIN_ROUTE_SESSIONS && d.offset == 100000000u);
    CHECK(d.jid == r.jid && d.address == r.address);
    const char *bad_offsets[] = {"", "-1", "100000001", "1e3", " 1", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_offsets) / sizeof(bad_offsets[0]); i++) {
        r.offset = bad_offsets[i];
        d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_OFFSET && !d.at_once && d.offset == 0 && !d.jid);
    }
    r.offset = "0";
    r.limit = "0";
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_LIMIT); /* the limit first */
    r.limit = NULL;
    char big[GW_ADMIN_FILTER_JID_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    r.jid = big;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_FILTER);
    big[GW_ADMIN_FILTER_JID_MAX] = '\0';
    CHECK(decide(&r).route == GW_ADMIN_ROUTE_SESSIONS);
    r.jid = "";
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_FILTER);
    r.jid = NULL;
    big[GW_ADMIN_FILTER_ADDRESS_MAX + 1] = '\0';
    r.address = big;
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_FILTER);
    big[GW_ADMIN_FILTER_ADDRESS_MAX] = '\0';
    CHECK(decide(&r).route == GW_ADMIN_ROUTE_SESSIONS);
    /* Elsewhere they mean nothing. */
    struct gw_admin_request m = base("/metrics", loopback);
    m.offset = "x";
    m.jid = "";
    CHECK(decide(&m).route == GW_ADMIN_ROUTE_METRICS);
}

/* DELETE /api/sessions/<id>: DELETE only (405, Allow: DELETE), no body, under the token; the id
 * is GW_ADMIN_SID_HASH_LEN lowercase hex characters (else 404 as for an unknown one); the
 * condition is policy-violation unless ?condition= names one of the allowed ones (else 400). */
static void test_session_end(void)
{
    static const char id[] = "0123456789abcdef";
    struct gw_admin_request r = base("/api/sessions/0123456789abcdef", loopback);
    struct gw_admin_decision d = decide(&r);
    CHECK(d.refusal == GW_ADMIN_ERR_DELETE_ONLY && d.at_once);
    r.method = "DELETE";
    d = decide(&r);
    CHECK(d.route == GW_ADMIN_ROUTE_SESSION_END && d.condition == GW_COND_policy_violation);
    CHECK(d.id && strcmp(d.id, id) == 0 && d.body_max == 0);
    CHECK_STR(gw_admin_route_path(GW_ADMIN_ROUTE_SESSION_END), "/api/sessions/");
    CHECK(!gw_admin_route_is_post(GW_ADMIN_ROUTE_SESSION_END));
    const char *ok[] = {"policy-violation",      "system-shutdown", "undefined-condition",
                        "internal-server-error", "host-gone",       "remote-connection-failed"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        r.condition = ok[i];
        d = decide(&r);
        CHECK(d.route == GW_ADMIN_ROUTE_SESSION_END &&
              d.condition == gw_condition_from_name(ok[i]));
    }
    const char *bad[] = {"",         "see-other-uri",    "item-not-found",    "bad-request",
                         "conflict", "Policy-Violation", "policy-violation ", "nope"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.condition = bad[i];
        d = decide(&r);
        CHECK(d.refusal == GW_ADMIN_ERR_CONDITION && !d.at_once && !d.id);
    }
    r.condition = NULL;
    const char *ids[] = {"/api/sessions/",
                         "/api/sessions/0123456789ABCDEF",
                         "/api/sessions/0123456789abcde",
                         "/api/sessions/0123456789abcdef0",
                         "/api/sessions/0123456789abcdef/",
                         "/api/sessions/../status"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        r.path = ids[i];
        CHECK(decide(&r).refusal == GW_ADMIN_ERR_NO_SESSION);
        r.condition = "nope"; /* the id first */
        CHECK(decide(&r).refusal == GW_ADMIN_ERR_NO_SESSION);
        r.condition = NULL;
    }
    r.path = "/api/sessions/0123456789abcdef";
    r.has_body = true;
    d = decide(&r);
    CHECK(d.refusal == GW_ADMIN_ERR_BODY && d.at_once);
    r.has_body = false;
    snprintf(cfg.admin_token, sizeof(cfg.admin_token), "s3cret");
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_NO_TOKEN);
    r.authorization = "Bearer wrong";
    CHECK(decide(&r).refusal == GW_ADMIN_ERR_BAD_TOKEN);
    r.authorization = "Bearer s3cret";
    CHECK(decide(&r).route == GW_ADMIN_ROUTE_SESSION_END);
    cfg.admin_token[0] = '\0';
    CHECK(gw_admin_end_condition_ok(GW_COND_policy_violation));
    CHECK(!gw_admin_end_condition_ok(GW_COND_NONE) && !gw_admin_end_condition_ok(GW_COND_COUNT));
}

/* Every refusal: its status and extra header, and a body {"error": text, "condition": cond} with
 * nothing else, the condition the table names. */
static void test_errors(void)
{
    const struct {
        enum gw_admin_refusal e;
        unsigned status;
        const char *cond;
        const char *header;
    } want[] = {
        {GW_ADMIN_ERR_HOST, 421, "host-not-allowed", NULL},
        {GW_ADMIN_ERR_HOST_FIELD, 400, "bad-request", NULL},
        {GW_ADMIN_ERR_NO_TOKEN, 401, "not-authorized", "WWW-Authenticate"},
        {GW_ADMIN_ERR_BAD_TOKEN, 401, "invalid-token", "WWW-Authenticate"},
        {GW_ADMIN_ERR_NOT_FOUND, 404, "not-found", NULL},
        {GW_ADMIN_ERR_METHOD, 405, "method-not-allowed", "Allow"},
        {GW_ADMIN_ERR_BODY, 400, "bad-request", NULL},
        {GW_ADMIN_ERR_LIMIT, 400, "bad-request", NULL},
        {GW_ADMIN_ERR_POST_ONLY, 405, "method-not-allowed", "Allow"},
        {GW_ADMIN_ERR_MEDIA_TYPE, 415, "unsupported-media-type", NULL},
        {GW_ADMIN_ERR_TOO_LARGE, 413, "payload-too-large", NULL},
        {GW_ADMIN_ERR_INTERNAL, 500, "internal-error", NULL},
        {GW_ADMIN_ERR_OFFSET, 400, "bad-request", NULL},
        {GW_ADMIN_ERR_FILTER, 400, "bad-request", NULL},
        {GW_ADMIN_ERR_DELETE_ONLY, 405, "method-not-allowed", "Allow"},
        {GW_ADMIN_ERR_CONDITION, 400, "bad-request", NULL},
        {GW_ADMIN_ERR_NO_SESSION, 404, "not-found", NULL},
    };
    CHECK(sizeof(want) / sizeof(want[0]) == GW_ADMIN_ERR_COUNT - 1);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct gw_admin_error *e = gw_admin_error(want[i].e);
        CHECK(e != NULL);
        if (!e)
            continue;
        CHECK(e->status == want[i].status);
        CHECK_STR(e->condition, want[i].cond);
        CHECK((e->header == NULL) == (want[i].header == NULL));
        CHECK(!want[i].header || (strcmp(e->header, want[i].header) == 0 && e->value[0]));
        size_t n = strlen(e->body);
        CHECK(n > 0 && e->body[n - 1] == '\n');
        json_t *j = json_loads(e->body, 0, NULL);
        CHECK(j && json_is_object(j) && json_object_size(j) == 2);
        const char *text = json_string_value(json_object_get(j, "error"));
        CHECK(text && text[0]);
        CHECK_STR(json_string_value(json_object_get(j, "condition")), want[i].cond);
        json_decref(j);
    }
    CHECK_STR(gw_admin_error(GW_ADMIN_ERR_BAD_TOKEN)->value,
              "Bearer realm=\"xmppgw\", error=\"invalid_token\"");
    CHECK_STR(gw_admin_error(GW_ADMIN_ERR_METHOD)->value, "GET, HEAD");
    CHECK_STR(gw_admin_error(GW_ADMIN_ERR_POST_ONLY)->value, "POST");
    CHECK_STR(gw_admin_error(GW_ADMIN_ERR_DELETE_ONLY)->value, "DELETE");
    CHECK(strstr(gw_admin_error(GW_ADMIN_ERR_LIMIT)->body, "10000") != NULL);
    CHECK(gw_admin_error(GW_ADMIN_OK) == NULL);
    CHECK(gw_admin_error(GW_ADMIN_ERR_COUNT) == NULL);
    CHECK(gw_admin_error((enum gw_admin_refusal) - 1) == NULL);
}

/* admin.hosts as the configuration holds it: read at each call, bounded by GW_CFG_MAX_LIST. */
static void test_hosts_config(void)
{
    CHECK(refusal_for_host("second.example", "/healthz") == GW_ADMIN_ERR_HOST);
    snprintf(cfg.admin_hosts[1], sizeof(cfg.admin_hosts[1]), "second.example");
    cfg.n_admin_hosts = 2;
    CHECK(refusal_for_host("second.example:80", "/healthz") == GW_ADMIN_OK);
    cfg.n_admin_hosts = 1;
    CHECK(refusal_for_host("second.example", "/healthz") == GW_ADMIN_ERR_HOST);
    cfg.n_admin_hosts = 1000; /* past the array: only GW_CFG_MAX_LIST entries are read */
    CHECK(refusal_for_host(ADMIN_HOST, "/healthz") == GW_ADMIN_OK);
    cfg.n_admin_hosts = 0;
    CHECK(refusal_for_host(ADMIN_HOST, "/healthz") == GW_ADMIN_ERR_HOST);
    CHECK(refusal_for_host("localhost", "/healthz") == GW_ADMIN_OK);
    cfg.n_admin_hosts = 1;
}

int main(void)
{
    gw_config_defaults(&cfg);
    cfg.admin_token[0] = '\0';
    snprintf(cfg.admin_hosts[0], sizeof(cfg.admin_hosts[0]), "%s", ADMIN_HOST);
    cfg.n_admin_hosts = 1;
    test_hosts();
    test_token();
    test_routes();
    test_limit();
    test_post_routes();
    test_errors();
    test_listing();
    test_session_end();
    test_hosts_config();
    return CHECK_SUMMARY();
}
