/* Tests for gateway/config/config.c: defaults, a full file, every kind of error with its key, line
 * and column, addresses, TLS modes, upstream look-up, cross-key checks, the reload merge and the
 * reload classes, and that config/README.md (names, defaults, bounds, the Reload column) and the
 * shipped files agree with the key table. Fixtures: tests/data/config/. */
#include "config/config.h"
#include "check.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char data_dir[2048];   /* tests/data */
static char config_dir[2048]; /* tests/data/config */
static char source_dir[2048]; /* the source tree */
static char err[2048];

/* snprintf that gives up on a path too long for the test's buffers. */
#define PATH_PRINTF(buf, ...)                                                                      \
    do {                                                                                           \
        int w_ = snprintf((buf), sizeof(buf), __VA_ARGS__);                                        \
        if (w_ < 0 || (size_t)w_ >= sizeof(buf)) {                                                 \
            fprintf(stderr, "path too long\n");                                                    \
            exit(2);                                                                               \
        }                                                                                          \
    } while (0)

static void find_dirs(void)
{
    const char *env = getenv("XMPPGW_TEST_DATA");
    if (env && *env) {
        PATH_PRINTF(data_dir, "%s", env);
    } else {
        /* tests/unit/test_config.c -> tests/data */
        char here[1024];
        PATH_PRINTF(here, "%s", __FILE__);
        char *slash = strrchr(here, '/');
        if (slash)
            *slash = '\0';
        else
            PATH_PRINTF(here, ".");
        PATH_PRINTF(data_dir, "%s/../data", here);
    }
    PATH_PRINTF(config_dir, "%s/config", data_dir);
    PATH_PRINTF(source_dir, "%s/../..", data_dir);
}

static struct gw_config *new_cfg(void)
{
    struct gw_config *c = calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    gw_config_defaults(c);
    return c;
}

static int load(struct gw_config *c, const char *json)
{
    err[0] = '\0';
    return gw_config_load_string(c, json, "t.json", err, sizeof(err));
}

static int load_fixture(struct gw_config *c, const char *file)
{
    char path[4096];
    PATH_PRINTF(path, "%s/%s", config_dir, file);
    err[0] = '\0';
    return gw_config_load(c, path, err, sizeof(err));
}

static int validate(const struct gw_config *c)
{
    err[0] = '\0';
    return gw_config_validate(c, err, sizeof(err));
}

/* Loading json fails with exactly this message. */
#define CHECK_LOAD_ERR(json, expected)                                                             \
    do {                                                                                           \
        struct gw_config *c_ = new_cfg();                                                          \
        CHECK(load(c_, (json)) == GW_EINVAL);                                                      \
        CHECK_STR(err, (expected));                                                                \
        free(c_);                                                                                  \
    } while (0)

#define CHECK_LOAD_OK(json)                                                                        \
    do {                                                                                           \
        struct gw_config *c_ = new_cfg();                                                          \
        int rc_ = load(c_, (json));                                                                \
        if (rc_ != 0)                                                                              \
            fprintf(stderr, "unexpected error: %s\n", err);                                        \
        CHECK(rc_ == 0);                                                                           \
        free(c_);                                                                                  \
    } while (0)

/* err is "<dir>/<file>" followed by suffix. */
static void check_fixture_err(const char *file, const char *suffix)
{
    char expected[4096];
    PATH_PRINTF(expected, "%s/%s%s", config_dir, file, suffix);
    CHECK_STR(err, expected);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    size_t n = buf ? fread(buf, 1, cap - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* ---- defaults ---- */

static void test_defaults(void)
{
    struct gw_config *c = new_cfg();
    CHECK_STR(c->listen.host, "127.0.0.1");
    CHECK(c->listen.port == 5280);
    CHECK_STR(c->tls_cert, "");
    CHECK_STR(c->tls_key, "");
    CHECK_STR(c->static_root, "static");
    CHECK_STR(c->node_modules, "node_modules");
    CHECK_STR(c->admin_listen.host, "127.0.0.1");
    CHECK(c->admin_listen.port == 5281);
    CHECK_STR(c->admin_token, "");
    CHECK(c->n_admin_hosts == 0);
    CHECK(c->n_domains == 0);
    CHECK(!c->has_default_upstream);
    CHECK_STR(c->upstream.domain, "");
    CHECK_STR(c->upstream.addr.host, "");
    CHECK(c->upstream.addr.port == 5222);
    CHECK(c->upstream.tls == GW_UPSTREAM_TLS_STARTTLS);
    CHECK(c->n_upstream_map == 0);
    CHECK_STR(c->upstream_ca, "");
    CHECK(c->connect_timeout == 10);
    CHECK(c->n_origins == 2);
    CHECK_STR(c->origins[0], "same-host");
    CHECK_STR(c->origins[1], "localhost");
    CHECK_STR(c->ws_path, "/xmpp-websocket");
    CHECK(c->ws_ping_interval == 30);
    CHECK(!c->ws_deflate);
    CHECK_STR(c->bosh_path, "/http-bind");
    CHECK(c->bosh_max_wait == 50);
    CHECK(c->bosh_max_hold == 1);
    CHECK(c->bosh_max_requests == 2);
    CHECK(c->bosh_inactivity == 60);
    CHECK(c->bosh_max_pause == 120);
    CHECK(c->bosh_polling == 2);
    CHECK(c->bosh_max_body == 1048576);
    CHECK(c->n_bosh_routes == 0);
    CHECK(c->max_stanza == 262144);
    CHECK(c->max_depth == 64);
    CHECK(c->max_attrs == 64);
    CHECK(c->max_sessions == 10000);
    CHECK(c->send_queue == 1048576);
    CHECK(c->log_level == GW_LOG_INFO);
    CHECK_STR(c->log_format, "plain");

    /* An empty object is the defaults; loading resets whatever cfg held before. */
    struct gw_config *d = new_cfg();
    d->max_sessions = 7;
    d->n_origins = 0;
    CHECK(load(d, "{}") == 0);
    CHECK(memcmp(c, d, sizeof(*c)) == 0);
    CHECK(load(d, " \n\t{ }\r\n") == 0);
    CHECK(memcmp(c, d, sizeof(*c)) == 0);
    free(c);
    free(d);
}

/* ---- a full valid file ---- */

static void test_full_file(void)
{
    struct gw_config *c = new_cfg();
    int rc = load_fixture(c, "full.json");
    if (rc)
        fprintf(stderr, "full.json: %s\n", err);
    CHECK(rc == 0);
    CHECK_STR(c->listen.host, "::1");
    CHECK(c->listen.port == 8443);
    CHECK_STR(c->tls_cert, "/etc/xmppgw/cert.pem");
    CHECK_STR(c->tls_key, "/etc/xmppgw/key.pem");
    CHECK_STR(c->static_root, "/srv/xmppgw/static");
    CHECK_STR(c->node_modules, "");
    CHECK_STR(c->admin_listen.host, "127.0.0.1");
    CHECK(c->admin_listen.port == 9281);
    CHECK_STR(c->admin_token, "s3cret-token");
    CHECK(c->n_domains == 2);
    CHECK_STR(c->domains[0], "example.com"); /* stored lowercase */
    CHECK_STR(c->domains[1], "chat.example.org");
    CHECK(c->has_default_upstream);
    CHECK_STR(c->upstream.domain, "");
    CHECK_STR(c->upstream.addr.host, "xmpp.example.com");
    CHECK(c->upstream.addr.port == 5223);
    CHECK(c->upstream.tls == GW_UPSTREAM_TLS_DIRECT);
    CHECK(c->n_upstream_map == 2);
    CHECK_STR(c->upstream_map[0].domain, "chat.example.org");
    CHECK_STR(c->upstream_map[0].addr.host, "2001:db8::5"); /* brackets dropped */
    CHECK(c->upstream_map[0].addr.port == 5222);            /* default port */
    CHECK(c->upstream_map[0].tls == GW_UPSTREAM_TLS_OFF);
    CHECK_STR(c->upstream_map[1].domain, "muc.example.net");
    CHECK_STR(c->upstream_map[1].addr.host, "10.0.0.7");
    CHECK(c->upstream_map[1].addr.port == 15222);
    CHECK(c->upstream_map[1].tls == GW_UPSTREAM_TLS_STARTTLS); /* default mode */
    CHECK_STR(c->upstream_ca, "/etc/ssl/private-ca.pem");
    CHECK(c->connect_timeout == 300);
    CHECK(c->n_origins == 3);
    CHECK_STR(c->origins[0], "https://chat.example.com");
    CHECK_STR(c->origins[1], "http://localhost:8080");
    CHECK_STR(c->origins[2], "same-host");
    CHECK_STR(c->ws_path, "/ws");
    CHECK(c->ws_ping_interval == 0);
    CHECK(!c->ws_deflate);
    CHECK_STR(c->bosh_path, "/bosh");
    CHECK(c->bosh_max_wait == 600);
    CHECK(c->bosh_max_hold == 2);
    CHECK(c->bosh_max_requests == 3);
    CHECK(c->bosh_inactivity == 5);
    CHECK(c->bosh_max_pause == 0);
    CHECK(c->bosh_polling == 60);
    CHECK(c->bosh_max_body == 67108864);
    CHECK(c->n_bosh_routes == 2);
    CHECK_STR(c->bosh_routes[0], "xmpp:xmpp.example.com:5222");
    CHECK_STR(c->bosh_routes[1], "xmpp:[::1]:5222");
    CHECK(c->max_stanza == 1024);
    CHECK(c->max_depth == 1024);
    CHECK(c->max_attrs == 4);
    CHECK(c->max_sessions == 1000000);
    CHECK(c->send_queue == 65536);
    CHECK(c->log_level == GW_LOG_DEBUG);
    rc = validate(c);
    if (rc)
        fprintf(stderr, "full.json: %s\n", err);
    CHECK(rc == 0);

    /* A bad file afterwards leaves cfg as it was. */
    struct gw_config *copy = new_cfg();
    memcpy(copy, c, sizeof(*c));
    CHECK(load(c, "{\"bosh\": {\"max_wait\": 0}}") == GW_EINVAL);
    CHECK(memcmp(copy, c, sizeof(*c)) == 0);
    CHECK(load(c, "{\"bosh\": ") == GW_EINVAL);
    CHECK(memcmp(copy, c, sizeof(*c)) == 0);
    free(copy);

    /* A list in the file replaces the default list, it does not add to it. */
    CHECK(load(c, "{\"origins\": [\"*\"]}") == 0);
    CHECK(c->n_origins == 1);
    CHECK_STR(c->origins[0], "*");
    CHECK_STR(c->origins[1], "");
    CHECK(load(c, "{\"origins\": []}") == 0);
    CHECK(c->n_origins == 0);

    CHECK(load_fixture(c, "minimal.json") == 0);
    CHECK(c->has_default_upstream);
    CHECK_STR(c->upstream.addr.host, "127.0.0.1");
    CHECK(c->upstream.addr.port == 5222);
    CHECK(validate(c) == 0);
    free(c);
}

/* ---- errors: exact key, line and column ---- */

static void test_fixture_errors(void)
{
    struct gw_config *c = new_cfg();
    CHECK(load_fixture(c, "range.json") == GW_EINVAL);
    check_fixture_err("range.json", ":5:17: key 'bosh.max_wait': must be between 1 and 600");
    CHECK(load_fixture(c, "unknown.json") == GW_EINVAL);
    check_fixture_err("unknown.json", ":4:5: key 'websocket.ping_intervall': unknown key (known "
                                      "keys: path, ping_interval, deflate)");
    CHECK(load_fixture(c, "syntax.json") == GW_EINVAL);
    check_fixture_err("syntax.json", ":3:27: string or '}' expected near '}'");
    /* The second "port" in the file, inside the entry whose name holds dots. */
    CHECK(load_fixture(c, "upstreams.json") == GW_EINVAL);
    check_fixture_err("upstreams.json",
                      ":7:15: key 'upstreams.example.org.port': must be between 1 and 65535");
    CHECK(load_fixture(c, "no-such-file.json") == GW_EINVAL);
    check_fixture_err("no-such-file.json", ": cannot open: No such file or directory");
    /* A directory opens but does not read. */
    err[0] = '\0';
    CHECK(gw_config_load(c, config_dir, err, sizeof(err)) == GW_EINVAL);
    char expected[4096];
    PATH_PRINTF(expected, "%s: cannot read: Is a directory", config_dir);
    CHECK_STR(err, expected);
    free(c);
}

static void test_type_errors(void)
{
    CHECK_LOAD_ERR("{\"bosh\": {\"max_wait\": 601}}",
                   "t.json:1:23: key 'bosh.max_wait': must be between 1 and 600");
    CHECK_LOAD_ERR("{\"connect_timeout\": \"10\"}",
                   "t.json:1:21: key 'connect_timeout': must be an integer");
    CHECK_LOAD_ERR("{\"connect_timeout\": 10.5}",
                   "t.json:1:21: key 'connect_timeout': must be an integer");
    CHECK_LOAD_ERR("{\"connect_timeout\": null}",
                   "t.json:1:21: key 'connect_timeout': must be an integer");
    CHECK_LOAD_ERR("{\"bosh\": {\"max_pause\": -1}}",
                   "t.json:1:24: key 'bosh.max_pause': must be between 0 and 3600");
    CHECK_LOAD_ERR("{\"limits\": {\"max_sessions\": 9223372036854775807}}",
                   "t.json:1:29: key 'limits.max_sessions': must be between 1 and 1000000");
    CHECK_LOAD_ERR("{\"websocket\": {\"deflate\": 1}}",
                   "t.json:1:27: key 'websocket.deflate': must be true or false");
    CHECK_LOAD_ERR("{\"tls\": {\"cert\": 5}}", "t.json:1:18: key 'tls.cert': must be a string");
    CHECK_LOAD_ERR("{\"bosh\": []}", "t.json:1:10: key 'bosh': must be an object");
    CHECK_LOAD_ERR("{\"origins\": \"*\"}",
                   "t.json:1:13: key 'origins': must be an array of strings");
    CHECK_LOAD_ERR("{\"origins\": [\"same-host\", 5]}",
                   "t.json:1:27: key 'origins[1]': must be a string");
    CHECK_LOAD_ERR(
        "{\"log\": {\"level\": \"loud\"}}",
        "t.json:1:19: key 'log.level': must be \"error\", \"warn\", \"info\" or \"debug\"");
    CHECK_LOAD_ERR("{\"log\": {\"format\": \"xml\"}}",
                   "t.json:1:20: key 'log.format': must be \"plain\" or \"json\"");
    CHECK_LOAD_ERR("{\"listen\": \"127.0.0.1\"}",
                   "t.json:1:12: key 'listen': must be \"host:port\" (IPv6: \"[::1]:port\") with a "
                   "port from 1 to 65535");
    CHECK_LOAD_ERR("{\"admin\": {\"listen\": \"::1:5281\"}}",
                   "t.json:1:22: key 'admin.listen': must be \"host:port\" (IPv6: \"[::1]:port\") "
                   "with a port from 1 to 65535");
    CHECK_LOAD_ERR("[1]", "t.json:1:1: the top level must be an object");
    CHECK_LOAD_ERR("{\"bosh\": {\"max_body\": 1023}}",
                   "t.json:1:23: key 'bosh.max_body': must be between 1024 and 67108864");
    CHECK_LOAD_ERR("{\"bosh\": {\"max_requests\": 1}}",
                   "t.json:1:27: key 'bosh.max_requests': must be between 2 and 16");
}

static void test_value_errors(void)
{
    CHECK_LOAD_ERR(
        "{\"origins\": [\"https://a.example/\"]}",
        "t.json:1:14: key 'origins[0]': must be \"*\", \"same-host\", \"localhost\" or an "
        "origin such as \"https://chat.example:8443\"");
    /* Only http and https origins: a request's Origin of another scheme is refused (web/http.c). */
    CHECK_LOAD_ERR(
        "{\"origins\": [\"http://a.example\", \"chrome-extension://abc\"]}",
        "t.json:1:34: key 'origins[1]': must be \"*\", \"same-host\", \"localhost\" or an "
        "origin such as \"https://chat.example:8443\"");
    CHECK_LOAD_OK("{\"origins\": [\"HTTP://a.example\", \"https://[::1]:8443\"]}");
    CHECK_LOAD_ERR("{\"domains\": [\"a.example\", \"A.example\"]}",
                   "t.json:1:27: key 'domains[1]': duplicate entry \"A.example\"");
    CHECK_LOAD_ERR("{\"domains\": [\"a..example\"]}",
                   "t.json:1:14: key 'domains[0]': must be a domain name such as \"example.com\"");
    /* Domains follow a JID domain's rules (core/host.h), so every configured domain is one a
     * stream header can name. */
    static const char *const bad_domains[] = {
        "-a.example",
        "a-.example",
        "a_b.example",
        "999.0.0.1",
        "1.2.3",
        "a.example.",
        "[::1",
        "[127.0.0.1]",
        "a\\u0085b",
        "a\\u3000b",
        "a:b",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", /* 64 */
    };
    for (size_t i = 0; i < sizeof(bad_domains) / sizeof(bad_domains[0]); i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"domains\": [\"%s\"]}", bad_domains[i]);
        CHECK_LOAD_ERR(j, "t.json:1:14: key 'domains[0]': must be a domain name such as "
                          "\"example.com\"");
        snprintf(j, sizeof(j), "{\"upstreams\": {\"%s\": {\"host\": \"h\"}}}", bad_domains[i]);
        struct gw_config *c = new_cfg();
        CHECK(load(c, j) == GW_EINVAL);
        CHECK(strncmp(err, "t.json:1:16: key 'upstreams.", 28) == 0);
        CHECK(strstr(err, "': must be a domain name such as \"example.com\"") != NULL);
        free(c);
    }
    CHECK_LOAD_OK("{\"domains\": [\"[::1]\", \"192.0.2.1\", \"\xc3\xa4.example\", \"1a.example\", "
                  "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example\"]}");
    CHECK_LOAD_ERR("{\"websocket\": {\"path\": \"ws\"}}",
                   "t.json:1:24: key 'websocket.path': must start with '/'");
    CHECK_LOAD_ERR("{\"bosh\": {\"path\": \"/a b\"}}",
                   "t.json:1:19: key 'bosh.path': must be printable ASCII without spaces, '?' or "
                   "'#'");
    CHECK_LOAD_ERR("{\"bosh\": {\"routes\": [\"xmpp:h\"]}}",
                   "t.json:1:22: key 'bosh.routes[0]': must be \"xmpp:host:port\"");
    CHECK_LOAD_ERR("{\"admin\": {\"token\": \"a b\"}}",
                   "t.json:1:21: key 'admin.token': must be printable ASCII without spaces");

    /* Strings one byte too long for their field; lists one entry too long. */
    char json[70000];
    char token[300];
    memset(token, 'a', 256);
    token[256] = '\0';
    snprintf(json, sizeof(json), "{\"admin\": {\"token\": \"%s\"}}", token);
    CHECK_LOAD_ERR(json, "t.json:1:21: key 'admin.token': must be at most 255 bytes");
    token[255] = '\0';
    snprintf(json, sizeof(json), "{\"admin\": {\"token\": \"%s\"}}", token);
    CHECK_LOAD_OK(json);

    char path[200];
    memset(path, 'p', 128);
    path[0] = '/';
    path[128] = '\0';
    snprintf(json, sizeof(json), "{\"bosh\": {\"path\": \"%s\"}}", path);
    CHECK_LOAD_ERR(json, "t.json:1:19: key 'bosh.path': must be at most 127 bytes");
    path[127] = '\0';
    snprintf(json, sizeof(json), "{\"bosh\": {\"path\": \"%s\"}}", path);
    CHECK_LOAD_OK(json);

    size_t n = (size_t)snprintf(json, sizeof(json), "{\"domains\": [");
    for (unsigned i = 0; i < 65; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "%s\"d%u.example\"", i ? ", " : "", i);
    snprintf(json + n, sizeof(json) - n, "]}");
    CHECK_LOAD_ERR(json, "t.json:1:13: key 'domains': must have at most 64 entries");
    /* 64 entries fit: drop the last one. */
    char *last = strstr(json, ", \"d64.example\"");
    CHECK(last != NULL);
    if (last)
        memcpy(last, "]}", 3);
    CHECK_LOAD_OK(json);

    /* A long upstream host: 255 bytes fit, 256 do not (with and without brackets). */
    char host[300];
    memset(host, 'h', 256);
    host[256] = '\0';
    snprintf(json, sizeof(json), "{\"upstream\": {\"host\": \"%s\"}}", host);
    CHECK_LOAD_ERR(json, "t.json:1:23: key 'upstream.host': must be at most 255 bytes");
    host[255] = '\0';
    snprintf(json, sizeof(json), "{\"upstream\": {\"host\": \"%s\"}}", host);
    CHECK_LOAD_OK(json);
}

static void test_key_errors(void)
{
    CHECK_LOAD_ERR("{\"listen\": \"127.0.0.1:5280\", \"bogus\": 1}",
                   "t.json:1:30: key 'bogus': unknown key (known keys: listen, tls, static, admin, "
                   "domains, upstream, upstreams, upstream_ca, connect_timeout, origins, "
                   "trusted_proxies, public_url, node_id, websocket, bosh, limits, http, visitors, "
                   "live, log, drain)");
    CHECK_LOAD_ERR("{\"upstream\": {\"port\": 5222}}",
                   "t.json:1:2: key 'upstream': \"host\" is required");
    CHECK_LOAD_ERR("{\"upstream\": {\"host\": \"h\", \"tls\": \"on\"}}",
                   "t.json:1:35: key 'upstream.tls': must be \"off\", \"starttls\" or \"direct\"");
    CHECK_LOAD_ERR("{\"upstream\": {\"host\": \"h\", \"prot\": 1}}",
                   "t.json:1:28: key 'upstream.prot': unknown key (known keys: host, port, tls)");
    CHECK_LOAD_ERR("{\"upstream\": {\"host\": \"a b\"}}",
                   "t.json:1:23: key 'upstream.host': must be a host name or an IP address");
    CHECK_LOAD_ERR("{\"upstream\": {\"host\": \"[1.2.3.4]\"}}",
                   "t.json:1:23: key 'upstream.host': must be a host name or an IP address");
    CHECK_LOAD_ERR("{\"upstream\": {\"host\": \"h\", \"port\": 0}}",
                   "t.json:1:36: key 'upstream.port': must be between 1 and 65535");
    CHECK_LOAD_ERR("{\"upstream\": \"127.0.0.1:5222\"}",
                   "t.json:1:14: key 'upstream': must be an object with \"host\", \"port\" and "
                   "\"tls\"");
    CHECK_LOAD_ERR("{\"upstreams\": {\"a b\": {\"host\": \"h\"}}}",
                   "t.json:1:16: key 'upstreams.a b': must be a domain name such as "
                   "\"example.com\"");
    CHECK_LOAD_ERR("{\"upstreams\": {\"a.example\": {\"host\": \"h\"}, \"A.example\": {\"host\": "
                   "\"h\"}}}",
                   "t.json:1:44: key 'upstreams.A.example': duplicate domain \"A.example\"");
    CHECK_LOAD_ERR("{\"upstreams\": {\"a.example\": {}}}",
                   "t.json:1:16: key 'upstreams.a.example': \"host\" is required");
    CHECK_LOAD_ERR("{\"upstreams\": {\"a.example\": {\"host\": {\"x\": 1}}}}",
                   "t.json:1:38: key 'upstreams.a.example.host': must be a string");
    CHECK_LOAD_ERR("{\"upstreams\": []}",
                   "t.json:1:15: key 'upstreams': must be an object of \"domain\": {\"host\", "
                   "\"port\", \"tls\"}");
}

/* The finder must walk JSON, not search text. */
static void test_positions(void)
{
    /* A key written with an escape. */
    CHECK_LOAD_ERR("{\"bo\\u0073h\": {\"max_wait\": 0}}",
                   "t.json:1:28: key 'bosh.max_wait': must be between 1 and 600");
    /* The key's name appears earlier inside a string value. */
    CHECK_LOAD_ERR("{\"admin\": {\"token\": \"x\\\"bosh\\\":{\\\"max_wait\\\":\"}, \"bosh\": "
                   "{\"max_wait\": 0}}",
                   "t.json:1:71: key 'bosh.max_wait': must be between 1 and 600");
    /* The same member name in an earlier section. */
    CHECK_LOAD_ERR("{\"websocket\": {\"path\": \"/ws\"}, \"bosh\": {\"path\": \"ws\"}}",
                   "t.json:1:49: key 'bosh.path': must start with '/'");
    /* Columns count characters, as jansson's do: "é" is one column, two bytes. */
    CHECK_LOAD_ERR(
        "{\"admin\": {\"token\": \"x\"}, \"static\": {\"root\": \"\xc3\xa9\"}, \"log\": "
        "{\"level\": \"loud\"}}",
        "t.json:1:69: key 'log.level': must be \"error\", \"warn\", \"info\" or \"debug\"");
    /* Nested values before the key are skipped whole. */
    CHECK_LOAD_ERR(
        "{\n"
        "  \"upstreams\": {\"x.example\": {\"host\": \"h\", \"port\": 1}},\n"
        "  \"origins\": [\"same-host\", \"localhost\", \"http://a\", \"b\"]\n"
        "}\n",
        "t.json:3:53: key 'origins[3]': must be \"*\", \"same-host\", \"localhost\" or an "
        "origin such as \"https://chat.example:8443\"");
    /* CRLF line ends and tabs. */
    CHECK_LOAD_ERR("{\r\n\t\"limits\": {\r\n\t\t\"max_depth\": 3\r\n\t}\r\n}\r\n",
                   "t.json:3:16: key 'limits.max_depth': must be between 4 and 1024");
    /* An unknown key inside a section, after a nested list. */
    CHECK_LOAD_ERR(
        "{\"bosh\": {\"routes\": [\"xmpp:a:1\", \"xmpp:b:2\"], \"max_hold\": 1, \"hold\": 1}}",
        "t.json:1:62: key 'bosh.hold': unknown key (known keys: path, max_wait, "
        "max_hold, max_requests, inactivity, max_pause, polling, max_body, routes)");
}

static void test_syntax_errors(void)
{
    CHECK_LOAD_ERR("{\"a\": }", "t.json:1:7: unexpected token near '}'");
    CHECK_LOAD_ERR("{\n  \"listen\": \"127.0.0.1:1\",\n  \"listen\": \"127.0.0.1:2\"\n}",
                   "t.json:3:10: duplicate object key near '\"listen\"'");
    CHECK_LOAD_ERR("", "t.json:1:1: '[' or '{' expected near end of file");
    CHECK_LOAD_ERR("{} {}", "t.json:1:4: end of file expected near '{'");
    CHECK_LOAD_ERR("{\"static\": {\"root\": \"\xff\"}}",
                   "t.json:1:21: unable to decode byte 0xff near '\"'");

    /* No name, no cfg, no err buffer, a tiny err buffer: nothing overflows. */
    struct gw_config *c = new_cfg();
    char small[12];
    CHECK(gw_config_load_string(c, "{\"x\": 1}", NULL, small, sizeof(small)) == GW_EINVAL);
    CHECK_STR(small, "<string>:1:");
    CHECK(gw_config_load_string(c, "{\"x\": 1}", "n", NULL, 0) == GW_EINVAL);
    CHECK(gw_config_load_string(c, NULL, "n", small, sizeof(small)) == GW_EINVAL);
    CHECK(gw_config_load_string(NULL, "{}", "n", small, sizeof(small)) == GW_EINVAL);
    CHECK(gw_config_load(c, NULL, small, sizeof(small)) == GW_EINVAL);

    /* A NUL byte in a file would end jansson's input early: refused with its position. */
    char tmpl[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0);
    if (fd >= 0) {
        static const char bytes[] = "{\n  \"log\": {\"level\": \"info\"}\n}\n\0{\"x\": 1}";
        CHECK(write(fd, bytes, sizeof(bytes) - 1) == (ssize_t)(sizeof(bytes) - 1));
        close(fd);
        err[0] = '\0';
        CHECK(gw_config_load(c, tmpl, err, sizeof(err)) == GW_EINVAL);
        char expected[256];
        snprintf(expected, sizeof(expected), "%s:4:1: NUL byte in the file", tmpl);
        CHECK_STR(err, expected);

        /* A file over the size cap. */
        FILE *f = fopen(tmpl, "wb");
        CHECK(f != NULL);
        if (f) {
            fputs("{\"admin\": {\"token\": \"", f);
            for (unsigned i = 0; i < 9000; i++)
                fputs("                                                                    "
                      "                                                            ",
                      f);
            fputs("\"}}", f);
            fclose(f);
            CHECK(gw_config_load(c, tmpl, err, sizeof(err)) == GW_EINVAL);
            snprintf(expected, sizeof(expected), "%s: larger than 1048576 bytes", tmpl);
            CHECK_STR(err, expected);
        }
        unlink(tmpl);
    }
    free(c);
}

/* ---- addresses and TLS modes ---- */

/* jansson refuses these while parsing, naming no key: the loader still names it, with the
 * value's line and column, and the message the key's own rules give. */
static void test_parse_errors_by_key(void)
{
    CHECK_LOAD_ERR("{\"limits\": {\"max_sessions\": 99999999999999999999999}}",
                   "t.json:1:29: key 'limits.max_sessions': must be between 1 and 1000000");
    CHECK_LOAD_ERR("{\"limits\": {\"max_sessions\": -99999999999999999999999}}",
                   "t.json:1:29: key 'limits.max_sessions': must be between 1 and 1000000");
    /* Just past json_int_t, then on a later line after CRLF. */
    CHECK_LOAD_ERR("{\"connect_timeout\": 9223372036854775808}",
                   "t.json:1:21: key 'connect_timeout': must be between 1 and 300");
    CHECK_LOAD_ERR("{\r\n\"bosh\": {\r\n  \"max_body\": 184467440737095516160}\r\n}",
                   "t.json:3:15: key 'bosh.max_body': must be between 1024 and 67108864");
    /* A real past a double is still no integer; a huge number where a string belongs. */
    CHECK_LOAD_ERR("{\"bosh\": {\"max_wait\": 1e999}}",
                   "t.json:1:23: key 'bosh.max_wait': must be an integer");
    CHECK_LOAD_ERR("{\"bosh\": {\"max_wait\": -2.5E400}}",
                   "t.json:1:23: key 'bosh.max_wait': must be an integer");
    CHECK_LOAD_ERR("{\"origins\": [\"localhost\", 99999999999999999999999]}",
                   "t.json:1:27: key 'origins[1]': must be a string");
    CHECK_LOAD_ERR("{\"upstreams\": {\"example.org\": {\"host\": \"h\", \"port\": "
                   "99999999999999999999}}}",
                   "t.json:1:53: key 'upstreams.example.org.port': must be between 1 and 65535");
    CHECK_LOAD_ERR("{\"nope\": 99999999999999999999999}",
                   "t.json:1:2: key 'nope': unknown key (known keys: listen, tls, static, admin, "
                   "domains, upstream, upstreams, upstream_ca, connect_timeout, origins, "
                   "trusted_proxies, public_url, node_id, websocket, bosh, limits, http, visitors, "
                   "live, log, drain)");
    /* Several: the first one the loader meets is named; one that parses fine before it first. */
    CHECK_LOAD_ERR("{\"limits\": {\"max_depth\": 99999999999999999999, \"max_attrs\": "
                   "99999999999999999999}}",
                   "t.json:1:26: key 'limits.max_depth': must be between 4 and 1024");
    CHECK_LOAD_ERR("{\"limits\": {\"max_depth\": 2, \"max_attrs\": 99999999999999999999}}",
                   "t.json:1:26: key 'limits.max_depth': must be between 4 and 1024");
    /* A syntax error after an overflow is still the syntax error. */
    CHECK_LOAD_ERR("{\"limits\": {\"max_depth\": 99999999999999999999,}}",
                   "t.json:1:47: string or '}' expected near '}'");

    /* NUL in a string value, a list entry, an upstream host: refused by key. */
    CHECK_LOAD_ERR("{\"tls\": {\"cert\": \"a\\u0000b\"}}",
                   "t.json:1:18: key 'tls.cert': must not contain NUL characters");
    CHECK_LOAD_ERR("{\"origins\": [\"localhost\", \"http://a\\u0000.example\"]}",
                   "t.json:1:27: key 'origins[1]': must not contain NUL characters");
    CHECK_LOAD_ERR("{\"upstream\": {\"host\": \"\\u0000\"}}",
                   "t.json:1:23: key 'upstream.host': must not contain NUL characters");
    CHECK_LOAD_ERR("{\"log\": {\"level\": \"info\\u0000x\"}}",
                   "t.json:1:19: key 'log.level': must not contain NUL characters");
    /* In a key jansson still refuses it (no key to name but the position). */
    CHECK_LOAD_ERR("{\"a\\u0000b\": 1}",
                   "t.json:1:11: NUL byte in object key not supported near '\"a\\u0000b\"'");
}

static void test_parse_addr(void)
{
    struct gw_addr a;
    CHECK(gw_config_parse_addr("127.0.0.1:5280", &a) == 0);
    CHECK_STR(a.host, "127.0.0.1");
    CHECK(a.port == 5280);
    CHECK(gw_config_parse_addr("localhost:1", &a) == 0);
    CHECK_STR(a.host, "localhost");
    CHECK(a.port == 1);
    CHECK(gw_config_parse_addr("xmpp.example.com:65535", &a) == 0);
    CHECK(a.port == 65535);
    CHECK(gw_config_parse_addr("prosody_1:5222", &a) == 0);
    CHECK(gw_config_parse_addr("[::1]:5280", &a) == 0);
    CHECK_STR(a.host, "::1");
    CHECK(a.port == 5280);
    CHECK(gw_config_parse_addr("[2001:db8::1]:443", &a) == 0);
    CHECK_STR(a.host, "2001:db8::1");
    CHECK(gw_config_parse_addr("[::]:80", &a) == 0);
    CHECK_STR(a.host, "::");
    CHECK(gw_config_parse_addr("[::ffff:192.0.2.1]:80", &a) == 0);
    CHECK(gw_config_parse_addr("0.0.0.0:00080", &a) == 0);
    CHECK(a.port == 80);

    char host[300];
    memset(host, 'a', 255);
    snprintf(host + 255, sizeof(host) - 255, ":1");
    CHECK(gw_config_parse_addr(host, &a) == 0);
    CHECK(strlen(a.host) == 255);
    memset(host, 'a', 256);
    snprintf(host + 256, sizeof(host) - 256, ":1");
    CHECK(gw_config_parse_addr(host, &a) == GW_EINVAL);

    /* clang-format off */
    static const char *const bad[] = {
        "", "host", ":5280", "host:", "host:0", "host:65536", "host:-1", "host:+1", "host: 1",
        "host:1 ", "host:1a", "host:99999999999", "::1:5280", "::1", "[::1]", "[::1]5280", "[::1]:",
        "[::1]:0", "[1.2.3.4]:5", "[zz]:1", "[]:1", "[::1:5280", "a b:1", "a/b:1", "[::1]:80:80",
        "h@st:1", "host:0x10", "[fe80::1%eth0]:80",
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gw_addr keep = {.host = "unchanged", .port = 9};
        int rc = gw_config_parse_addr(bad[i], &keep);
        if (rc != GW_EINVAL)
            fprintf(stderr, "parse_addr accepted \"%s\"\n", bad[i]);
        CHECK(rc == GW_EINVAL);
        CHECK_STR(keep.host, "unchanged"); /* nothing written on failure */
        CHECK(keep.port == 9);
    }
    CHECK(gw_config_parse_addr(NULL, &a) == GW_EINVAL);
    CHECK(gw_config_parse_addr("h:1", NULL) == GW_EINVAL);
}

static void test_parse_tls(void)
{
    enum gw_upstream_tls t = GW_UPSTREAM_TLS_DIRECT;
    CHECK(gw_config_parse_tls("off", &t) == 0 && t == GW_UPSTREAM_TLS_OFF);
    CHECK(gw_config_parse_tls("starttls", &t) == 0 && t == GW_UPSTREAM_TLS_STARTTLS);
    CHECK(gw_config_parse_tls("direct", &t) == 0 && t == GW_UPSTREAM_TLS_DIRECT);
    CHECK(gw_config_parse_tls("STARTTLS", &t) == GW_EINVAL);
    CHECK(gw_config_parse_tls("tls", &t) == GW_EINVAL);
    CHECK(gw_config_parse_tls("", &t) == GW_EINVAL);
    CHECK(gw_config_parse_tls(NULL, &t) == GW_EINVAL);
    CHECK(t == GW_UPSTREAM_TLS_DIRECT); /* untouched by failures */
    CHECK_STR(gw_config_tls_name(GW_UPSTREAM_TLS_OFF), "off");
    CHECK_STR(gw_config_tls_name(GW_UPSTREAM_TLS_STARTTLS), "starttls");
    CHECK_STR(gw_config_tls_name(GW_UPSTREAM_TLS_DIRECT), "direct");
    CHECK_STR(gw_config_tls_name((enum gw_upstream_tls)7), "?");
}

/* ---- behind a proxy: trusted_proxies, public_url ---- */

static void test_node_keys(void)
{
    struct gw_config *c = new_cfg();
    CHECK(load(c, "{}") == 0);
    CHECK_STR(c->node_id, "");
    CHECK(c->drain_grace == 20);
    CHECK(load(c, "{\"node_id\": \"gw-2_b\", \"drain\": {\"grace\": 0}}") == 0);
    CHECK_STR(c->node_id, "gw-2_b");
    CHECK(c->drain_grace == 0);
    CHECK(load(c, "{\"node_id\": \"abcdefghijabcdefghijabcdefghij12\"}") == 0);
    free(c);
    CHECK_LOAD_ERR("{\"node_id\": \"abcdefghijabcdefghijabcdefghij123\"}",
                   "t.json:1:13: key 'node_id': must be at most 32 bytes");
    CHECK_LOAD_ERR("{\"node_id\": \"a.b\"}",
                   "t.json:1:13: key 'node_id': must be letters, digits, '-' and '_' only");
    CHECK_LOAD_ERR("{\"node_id\": \"a b\"}",
                   "t.json:1:13: key 'node_id': must be letters, digits, '-' and '_' only");
    CHECK_LOAD_ERR("{\"drain\": {\"grace\": 3601}}",
                   "t.json:1:21: key 'drain.grace': must be between 0 and 3600");
}

static void test_proxy_keys(void)
{
    struct gw_config *c = new_cfg();
    CHECK(load(c, "{}") == 0);
    CHECK(c->n_trusted_proxies == 2);
    CHECK_STR(c->trusted_proxies[0], "127.0.0.0/8");
    CHECK_STR(c->trusted_proxies[1], "::1/128");
    CHECK_STR(c->public_url, "");
    CHECK(load(c, "{\"trusted_proxies\": [\"10.0.0.7\", \"FD00::/8\", \"0.0.0.0/0\"], "
                  "\"public_url\": \"https://Example.org/chat/\"}") == 0);
    CHECK(c->n_trusted_proxies == 3);
    CHECK_STR(c->trusted_proxies[1], "fd00::/8"); /* stored in lowercase */
    CHECK_STR(c->public_url, "https://Example.org/chat/");
    CHECK(load(c, "{\"trusted_proxies\": []}") == 0);
    CHECK(c->n_trusted_proxies == 0);
    free(c);
    CHECK_LOAD_ERR("{\"trusted_proxies\": [\"10.1.2.3/8\"]}",
                   "t.json:1:22: key 'trusted_proxies[0]': must be an IP address or a range such "
                   "as \"10.0.0.0/8\" or \"fd00::/8\" (no bits set past the prefix)");
    CHECK_LOAD_ERR("{\"public_url\": \"ftp://example.org/\"}",
                   "t.json:1:16: key 'public_url': must be \"\" or an http or https URL such as "
                   "\"https://example.org/chat/\" (a path of letters, digits and -._~ segments; "
                   "no query, no fragment)");

    struct gw_cidr r;
    CHECK(gw_config_parse_cidr("192.0.2.0/24", &r) == 0 && !r.v6 && r.prefix == 24);
    CHECK(r.bytes[0] == 192 && r.bytes[2] == 2 && r.bytes[3] == 0);
    CHECK(gw_config_parse_cidr("192.0.2.9", &r) == 0 && r.prefix == 32);
    CHECK(gw_config_parse_cidr("::1", &r) == 0 && r.v6 && r.prefix == 128 && r.bytes[15] == 1);
    CHECK(gw_config_parse_cidr("2001:db8::/32", &r) == 0 && r.v6 && r.prefix == 32);
    CHECK(gw_config_parse_cidr("::/0", &r) == 0 && r.prefix == 0);
    /* clang-format off */
    static const char *const bad_cidr[] = {
        "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.1/8", "2001:db8::1/32",
        "10.0.0.0/ 8", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/0008", "[::1]", "[::1]/128",
        "localhost", "10.0.0", "fe80::1%eth0", "10.0.0.0/8/8", "1.2.3.4 ",
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof(bad_cidr) / sizeof(bad_cidr[0]); i++) {
        struct gw_cidr keep = {.prefix = 99};
        int rc = gw_config_parse_cidr(bad_cidr[i], &keep);
        if (rc != GW_EINVAL)
            fprintf(stderr, "parse_cidr accepted \"%s\"\n", bad_cidr[i]);
        CHECK(rc == GW_EINVAL && keep.prefix == 99);
    }

    struct gw_public_url u;
    CHECK(gw_config_parse_public_url("https://example.org/chat/", &u) == 0);
    CHECK(u.https && strcmp(u.authority, "example.org") == 0 && strcmp(u.prefix, "/chat") == 0);
    CHECK(gw_config_parse_public_url("http://[::1]:8080", &u) == 0);
    CHECK(!u.https && strcmp(u.authority, "[::1]:8080") == 0 && strcmp(u.prefix, "") == 0);
    CHECK(gw_config_parse_public_url("HTTPS://a.example:443/", &u) == 0 && u.prefix[0] == '\0');
    CHECK(gw_config_parse_public_url("https://a.example/x/y-z_1.~", &u) == 0);
    CHECK_STR(u.prefix, "/x/y-z_1.~");
    /* clang-format off */
    static const char *const bad_url[] = {
        "", "example.org", "ws://example.org/", "https://", "https:///chat", "https://a b/",
        "https://example.org:0/", "https://example.org:/", "https://[::1/", "https://[::1]x/",
        "https://example.org/chat?x", "https://example.org/chat#x", "https://example.org//",
        "https://example.org/a//b", "https://example.org/./", "https://example.org/../",
        "https://example.org/a%20b", "https://user@example.org/", "https://example.org/a b",
    };
    /* clang-format on */
    for (size_t i = 0; i < sizeof(bad_url) / sizeof(bad_url[0]); i++) {
        struct gw_public_url keep = {.authority = "kept"};
        int rc = gw_config_parse_public_url(bad_url[i], &keep);
        if (rc != GW_EINVAL)
            fprintf(stderr, "parse_public_url accepted \"%s\"\n", bad_url[i]);
        CHECK(rc == GW_EINVAL && strcmp(keep.authority, "kept") == 0);
    }
    char longpath[200] = "https://e.example/";
    memset(longpath + 18, 'p', 128);
    CHECK(gw_config_parse_public_url(longpath, &u) == GW_EINVAL); /* a 129-byte prefix */
    longpath[18 + 126] = '\0';
    CHECK(gw_config_parse_public_url(longpath, &u) == 0 && strlen(u.prefix) == 127);
}

/* ---- upstream look-up ---- */

static void test_upstream_for(void)
{
    struct gw_config *c = new_cfg();
    CHECK(gw_config_upstream_for(c, "localhost") == NULL); /* nothing configured */

    /* Default only, no domains: any domain. */
    CHECK(load(c, "{\"upstream\": {\"host\": \"127.0.0.1\"}}") == 0);
    CHECK(gw_config_upstream_for(c, "localhost") == &c->upstream);
    CHECK(gw_config_upstream_for(c, "anything.example") == &c->upstream);
    CHECK(gw_config_upstream_for(c, "") == NULL);
    CHECK(gw_config_upstream_for(c, NULL) == NULL);
    CHECK(gw_config_upstream_for(NULL, "localhost") == NULL);

    /* Default plus domains: only the listed ones, any ASCII case. */
    CHECK(load(c, "{\"upstream\": {\"host\": \"127.0.0.1\"}, \"domains\": [\"a.example\"]}") == 0);
    CHECK(gw_config_upstream_for(c, "a.example") == &c->upstream);
    CHECK(gw_config_upstream_for(c, "A.EXAMPLE") == &c->upstream);
    CHECK(gw_config_upstream_for(c, "b.example") == NULL);
    CHECK(gw_config_upstream_for(c, "a.example.evil") == NULL);
    CHECK(gw_config_upstream_for(c, "a.example.") == &c->upstream); /* FQDN dot */
    CHECK(gw_config_upstream_for(c, "a.example..") == NULL);
    CHECK(gw_config_upstream_for(c, "a.exampl") == NULL);
    CHECK(gw_config_upstream_for(c, ".") == NULL);

    /* The map wins, listed in domains or not; the default covers the listed rest. */
    CHECK(load(c, "{\"upstream\": {\"host\": \"d.example\"}, \"domains\": [\"a.example\", "
                  "\"b.example\"], \"upstreams\": {\"b.example\": {\"host\": \"mb.example\"}, "
                  "\"C.example\": {\"host\": \"mc.example\", \"port\": 5269}}}") == 0);
    const struct gw_upstream_cfg *u = gw_config_upstream_for(c, "a.example");
    CHECK(u == &c->upstream);
    u = gw_config_upstream_for(c, "B.Example");
    CHECK(u == &c->upstream_map[0]);
    if (u) {
        CHECK_STR(u->domain, "b.example");
        CHECK_STR(u->addr.host, "mb.example");
    }
    CHECK(gw_config_upstream_for(c, "b.example.") == &c->upstream_map[0]);
    u = gw_config_upstream_for(c, "c.example"); /* not in domains, still in the map */
    CHECK(u == &c->upstream_map[1]);
    if (u)
        CHECK(u->addr.port == 5269);
    CHECK(gw_config_upstream_for(c, "d.example") == NULL);

    /* Map only: nothing else is served. */
    CHECK(load(c, "{\"upstreams\": {\"b.example\": {\"host\": \"mb.example\"}}}") == 0);
    CHECK(gw_config_upstream_for(c, "b.example") == &c->upstream_map[0]);
    CHECK(gw_config_upstream_for(c, "localhost") == NULL);

    /* Set the way --upstream would. */
    gw_config_defaults(c);
    CHECK(gw_config_parse_addr("[::1]:5222", &c->upstream.addr) == 0);
    c->has_default_upstream = true;
    CHECK(gw_config_upstream_for(c, "localhost") == &c->upstream);
    CHECK(validate(c) == 0);
    free(c);
}

/* ---- cross-key checks ---- */

static void check_validate_err(const char *json, const char *expected)
{
    struct gw_config *c = new_cfg();
    int rc = load(c, json);
    if (rc)
        fprintf(stderr, "unexpected load error: %s\n", err);
    CHECK(rc == 0);
    CHECK(validate(c) == GW_EINVAL);
    CHECK_STR(err, expected);
    free(c);
}

#define UP "\"upstream\": {\"host\": \"127.0.0.1\"}"

static void test_validate(void)
{
    check_validate_err("{}", "key 'upstream': no upstream configured: set \"upstream\" (or "
                             "\"upstreams\") in the configuration file, or use --upstream "
                             "HOST:PORT");
    check_validate_err("{\"domains\": [\"localhost\"]}",
                       "key 'upstream': no upstream configured: set \"upstream\" (or "
                       "\"upstreams\") in the configuration file, or use --upstream HOST:PORT");
    check_validate_err("{" UP ", \"tls\": {\"cert\": \"c.pem\"}}",
                       "key 'tls.key': required when tls.cert is set");
    check_validate_err("{" UP ", \"tls\": {\"key\": \"k.pem\"}}",
                       "key 'tls.cert': required when tls.key is set");
    check_validate_err("{" UP ", \"bosh\": {\"max_hold\": 3, \"max_requests\": 3}}",
                       "key 'bosh.max_requests': must be at least bosh.max_hold + 1 (4)");
    check_validate_err("{" UP ", \"bosh\": {\"path\": \"/x\"}, \"websocket\": {\"path\": \"/x\"}}",
                       "key 'bosh.path': must differ from websocket.path (\"/x\")");
    check_validate_err("{" UP ", \"listen\": \"127.0.0.1:5281\"}",
                       "key 'admin.listen': must differ from listen");
    check_validate_err("{\"domains\": [\"a.example\", \"b.example\"], \"upstreams\": "
                       "{\"a.example\": {\"host\": \"h\"}}}",
                       "key 'domains[1]': no upstream for \"b.example\": add it to \"upstreams\" "
                       "or set \"upstream\"");

    struct gw_config *c = new_cfg();
    CHECK(load(c, "{" UP ", \"tls\": {\"cert\": \"c.pem\", \"key\": \"k.pem\"}, \"bosh\": "
                  "{\"max_hold\": 3, \"max_requests\": 4}, \"domains\": [\"localhost\"]}") == 0);
    CHECK(validate(c) == 0);

    /* Values set outside the file (command line) are checked against the table too. */
    struct gw_config *d = new_cfg();
    memcpy(d, c, sizeof(*c));
    d->max_sessions = 0;
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'limits.max_sessions': must be between 1 and 1000000");
    memcpy(d, c, sizeof(*c));
    d->send_queue = 64 * 1024 * 1024 + 1;
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'limits.send_queue': must be between 65536 and 67108864");
    memcpy(d, c, sizeof(*c));
    snprintf(d->ws_path, sizeof(d->ws_path), "ws");
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'websocket.path': must start with '/'");
    memcpy(d, c, sizeof(*c));
    snprintf(d->origins[1], sizeof(d->origins[1]), "example.com");
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'origins[1]': must be \"*\", \"same-host\", \"localhost\" or an origin "
                   "such as \"https://chat.example:8443\"");
    memcpy(d, c, sizeof(*c));
    memset(d->admin_token, 'x', sizeof(d->admin_token)); /* no terminating NUL */
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'admin.token': is not terminated");
    memcpy(d, c, sizeof(*c));
    d->n_domains = GW_CFG_MAX_LIST + 1;
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'domains': has too many entries");
    memcpy(d, c, sizeof(*c));
    d->upstream.addr.host[0] = '\0';
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'upstream': needs a host name or IP address, a port from 1 to 65535 and "
                   "a TLS mode");
    memcpy(d, c, sizeof(*c));
    d->listen.port = 0;
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'listen': must be \"host:port\" with a port from 1 to 65535");
    memcpy(d, c, sizeof(*c));
    d->log_level = (enum gw_log_level)9;
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, "key 'log.level': is out of range");
    CHECK(gw_config_validate(NULL, err, sizeof(err)) == GW_EINVAL);
    CHECK(gw_config_validate(c, NULL, 0) == 0);
    free(c);
    free(d);
}

/* ---- the admin port: a token off loopback, the Host names it answers to ---- */

#define NOT_LOOPBACK(addr)                                                                         \
    "key 'admin.listen': " addr " is not a loopback address: set admin.token, or listen on "       \
    "127.0.0.1 or [::1]"

static void check_admin_listen_ok(const char *addr, const char *token)
{
    char json[512];
    snprintf(json, sizeof(json), "{" UP ", \"admin\": {\"listen\": \"%s\", \"token\": \"%s\"}}",
             addr, token);
    struct gw_config *c = new_cfg();
    CHECK(load(c, json) == 0);
    int rc = validate(c);
    if (rc)
        fprintf(stderr, "admin.listen %s, token \"%s\": %s\n", addr, token, err);
    CHECK(rc == 0);
    free(c);
}

static void test_admin_listen(void)
{
    /* Off loopback without a token: refused, naming both keys. */
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"0.0.0.0:5281\"}}",
                       NOT_LOOPBACK("0.0.0.0:5281"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"[::]:5281\"}}",
                       NOT_LOOPBACK("[::]:5281"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"192.0.2.7:9000\"}}",
                       NOT_LOOPBACK("192.0.2.7:9000"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"128.0.0.1:5281\"}}",
                       NOT_LOOPBACK("128.0.0.1:5281"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"[::2]:5281\"}}",
                       NOT_LOOPBACK("[::2]:5281"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"[::ffff:10.0.0.1]:5281\"}}",
                       NOT_LOOPBACK("[::ffff:10.0.0.1]:5281"));
    /* A name other than localhost may resolve to anything. */
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"admin.example.com:5281\"}}",
                       NOT_LOOPBACK("admin.example.com:5281"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"localhost.example:5281\"}}",
                       NOT_LOOPBACK("localhost.example:5281"));
    check_validate_err("{" UP ", \"admin\": {\"listen\": \"0.0.0.0:5281\", \"token\": \"\"}}",
                       NOT_LOOPBACK("0.0.0.0:5281"));

    /* With a token, anywhere. */
    check_admin_listen_ok("0.0.0.0:5281", "s3cret");
    check_admin_listen_ok("[::]:5281", "s3cret");
    check_admin_listen_ok("admin.example.com:5281", "s3cret");
    /* Loopback, without one. */
    check_admin_listen_ok("127.0.0.1:5281", "");
    check_admin_listen_ok("127.0.0.2:5281", "");
    check_admin_listen_ok("127.255.255.254:5281", "");
    check_admin_listen_ok("localhost:5281", "");
    check_admin_listen_ok("LocalHost:5281", "");
    check_admin_listen_ok("[::1]:5281", "");
    check_admin_listen_ok("[0:0:0:0:0:0:0:1]:5281", "");
    check_admin_listen_ok("[::ffff:127.0.0.1]:5281", "");

    /* The shipped default is loopback without a token, and valid. */
    struct gw_config *c = new_cfg(), *d = new_cfg();
    CHECK(load(c, "{" UP "}") == 0);
    CHECK(validate(c) == 0);
    CHECK_STR(c->admin_listen.host, "127.0.0.1");
    CHECK_STR(c->admin_token, "");

    /* An address from the command line (--admin) is held to the same rule. */
    memcpy(d, c, sizeof(*c));
    CHECK(gw_config_parse_addr("0.0.0.0:7000", &d->admin_listen) == 0);
    CHECK(validate(d) == GW_EINVAL);
    CHECK_STR(err, NOT_LOOPBACK("0.0.0.0:7000"));
    snprintf(d->admin_token, sizeof(d->admin_token), "t");
    CHECK(validate(d) == 0);
    free(c);
    free(d);
}

/* admin.listen restarts, admin.token is live: a reload that moves the port to loopback and drops
 * the token keeps both until the restart, so the running port is never left without one. */
static void test_admin_reload(void)
{
    struct gw_config *cur = new_cfg(), *next = new_cfg();
    char kept[512];
    CHECK(load(cur, "{" UP ", \"admin\": {\"listen\": \"0.0.0.0:5281\", \"token\": \"old\"}}") ==
          0);
    CHECK(validate(cur) == 0);

    CHECK(load(next, "{" UP ", \"admin\": {\"listen\": \"127.0.0.1:5281\"}}") == 0);
    CHECK(validate(next) == 0);
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 2);
    CHECK_STR(kept, "admin.listen, admin.token");
    CHECK_STR(next->admin_listen.host, "0.0.0.0");
    CHECK_STR(next->admin_token, "old");
    CHECK(validate(next) == 0);

    /* A new token takes effect at once, wherever the port is. */
    CHECK(load(next, "{" UP ", \"admin\": {\"listen\": \"127.0.0.1:5281\", \"token\": \"new\"}}") ==
          0);
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 1);
    CHECK_STR(kept, "admin.listen");
    CHECK_STR(next->admin_token, "new");
    CHECK(validate(next) == 0);
    CHECK(load(next, "{" UP ", \"admin\": {\"listen\": \"0.0.0.0:5281\", \"token\": \"new\"}}") ==
          0);
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 0);
    CHECK_STR(next->admin_token, "new");

    /* On loopback the token may go. */
    CHECK(load(cur, "{" UP ", \"admin\": {\"token\": \"old\"}}") == 0);
    CHECK(load(next, "{" UP "}") == 0);
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 0);
    CHECK_STR(next->admin_token, "");
    free(cur);
    free(next);
}

static void test_admin_hosts(void)
{
    struct gw_config *c = new_cfg();
    CHECK(load_fixture(c, "full.json") == 0);
    CHECK(c->n_admin_hosts == 2);
    CHECK_STR(c->admin_hosts[0], "admin.example.com"); /* stored lowercase */
    CHECK_STR(c->admin_hosts[1], "gw-admin.internal");
    CHECK(load(c, "{\"admin\": {\"hosts\": [\"Admin.Example.COM\", \"gw_admin\", \"10.1.2.3\", "
                  "\"x\"]}}") == 0);
    CHECK(c->n_admin_hosts == 4);
    CHECK_STR(c->admin_hosts[0], "admin.example.com");
    CHECK_STR(c->admin_hosts[1], "gw_admin");
    CHECK_STR(c->admin_hosts[2], "10.1.2.3");
    CHECK_STR(c->admin_hosts[3], "x");
    CHECK(load(c, "{\"admin\": {\"hosts\": []}}") == 0);
    CHECK(c->n_admin_hosts == 0);

    /* Bad entries, each named with its index. */
    static const char *const why =
        "must be a host name such as \"gw.example.com\" (no port, no IPv6 address)";
    static const char *const bad[] = {"a.example:8080", "[::1]", "::1", "", "a b", "*",
                                      "ex\xc3\xa4mple", "a/b"};
    char json[512], want[512];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(json, sizeof(json), "{\"admin\": {\"hosts\": [\"ok.example\", \"%s\"]}}", bad[i]);
        snprintf(want, sizeof(want), "t.json:1:36: key 'admin.hosts[1]': %s", why);
        CHECK_LOAD_ERR(json, want);
    }
    CHECK_LOAD_ERR("{\"admin\": {\"hosts\": \"a.example\"}}",
                   "t.json:1:21: key 'admin.hosts': must be an array of strings");
    CHECK_LOAD_ERR("{\"admin\": {\"hosts\": [5]}}",
                   "t.json:1:22: key 'admin.hosts[0]': must be a string");
    CHECK_LOAD_ERR("{\"admin\": {\"hosts\": [\"a.example\", \"A.Example\"]}}",
                   "t.json:1:35: key 'admin.hosts[1]': duplicate entry \"A.Example\"");

    /* Bounds: 64 entries of 255 bytes. */
    char *big = malloc(64 * 300 + 64);
    CHECK(big != NULL);
    if (big) {
        size_t n = (size_t)sprintf(big, "{\"admin\": {\"hosts\": [");
        for (int i = 0; i < 64; i++)
            n += (size_t)sprintf(big + n, "%s\"h%d.example\"", i ? ", " : "", i);
        strcpy(big + n, "]}}");
        CHECK(load(c, big) == 0);
        CHECK(c->n_admin_hosts == 64);
        CHECK_STR(c->admin_hosts[63], "h63.example");
        strcpy(big + n, ", \"h64.example\"]}}");
        CHECK_LOAD_ERR(big, "t.json:1:21: key 'admin.hosts': must have at most 64 entries");
    }
    free(big);
    char host[300];
    memset(host, 'h', 256);
    host[256] = '\0';
    snprintf(json, sizeof(json), "{\"admin\": {\"hosts\": [\"%s\"]}}", host);
    CHECK_LOAD_ERR(json, "t.json:1:22: key 'admin.hosts[0]': must be at most 255 bytes");
    host[255] = '\0';
    snprintf(json, sizeof(json), "{\"admin\": {\"hosts\": [\"%s\"]}}", host);
    CHECK_LOAD_OK(json);

    /* A value set outside the loader is checked too. */
    CHECK(load(c, "{" UP "}") == 0);
    snprintf(c->admin_hosts[0], sizeof(c->admin_hosts[0]), "bad host");
    c->n_admin_hosts = 1;
    CHECK(validate(c) == GW_EINVAL);
    char want0[256];
    snprintf(want0, sizeof(want0), "key 'admin.hosts[0]': %s", why);
    CHECK_STR(err, want0);
    c->n_admin_hosts = GW_CFG_MAX_LIST + 1;
    CHECK(validate(c) == GW_EINVAL);
    CHECK_STR(err, "key 'admin.hosts': has too many entries");
    free(c);
}

/* ---- reload ---- */

static enum gw_config_reload reload_of(const char *key)
{
    enum gw_config_reload r = GW_RELOAD_LIVE;
    int rc = gw_config_key_reload(key, &r);
    if (rc != 0)
        fprintf(stderr, "no reload class for %s\n", key);
    CHECK(rc == 0);
    return r;
}

static void test_reload_classes(void)
{
    CHECK(reload_of("listen") == GW_RELOAD_RESTART);
    CHECK(reload_of("bosh.path") == GW_RELOAD_RESTART);
    CHECK(reload_of("limits.max_stanza") == GW_RELOAD_NEW);
    CHECK(reload_of("origins") == GW_RELOAD_LIVE);
    CHECK(reload_of("admin.hosts") == GW_RELOAD_LIVE);
    CHECK(reload_of("admin.token") == GW_RELOAD_LIVE);
    CHECK(reload_of("admin.listen") == GW_RELOAD_RESTART);
    CHECK(reload_of("upstream") == GW_RELOAD_NEW);
    CHECK(reload_of("upstream.host") == GW_RELOAD_NEW); /* a member has its object's class */
    CHECK(reload_of("upstream.tls") == GW_RELOAD_NEW);

    enum gw_config_reload r = GW_RELOAD_NEW;
    CHECK(gw_config_key_reload("upstream.nope", &r) == GW_EINVAL);
    CHECK(gw_config_key_reload("upstreams.example.com", &r) == GW_EINVAL);
    CHECK(gw_config_key_reload("bosh", &r) == GW_EINVAL); /* a section is no key */
    CHECK(gw_config_key_reload("bosh.", &r) == GW_EINVAL);
    CHECK(gw_config_key_reload("nope", &r) == GW_EINVAL);
    CHECK(gw_config_key_reload("", &r) == GW_EINVAL);
    CHECK(gw_config_key_reload(NULL, &r) == GW_EINVAL);
    CHECK(gw_config_key_reload("listen", NULL) == GW_EINVAL);
    CHECK(r == GW_RELOAD_NEW);

    /* The cross-key checks relate keys of one class only, so that a merge which keeps the
     * running value of one key of a pair cannot break the pair. The one exception, admin.listen
     * and admin.token, is test_admin_reload's. */
    static const char *const together[][3] = {
        {"tls.cert", "tls.key", NULL},         {"bosh.max_hold", "bosh.max_requests", NULL},
        {"websocket.path", "bosh.path", NULL}, {"listen", "admin.listen", NULL},
        {"upstream", "upstreams", "domains"},
    };
    for (size_t i = 0; i < sizeof(together) / sizeof(together[0]); i++)
        for (size_t j = 1; j < 3 && together[i][j]; j++) {
            if (reload_of(together[i][0]) != reload_of(together[i][j]))
                fprintf(stderr, "%s and %s are checked together but reload differently\n",
                        together[i][0], together[i][j]);
            CHECK(reload_of(together[i][0]) == reload_of(together[i][j]));
        }
}

static void test_reload_merge(void)
{
    struct gw_config *cur = new_cfg(), *next = new_cfg();
    char kept[512];

    /* A restart key changed keeps its running value and is named; live and new-session keys,
     * the limits among them, take the new value. */
    CHECK(load(cur, "{" UP "}") == 0);
    CHECK(load(next, "{" UP ", \"listen\": \"127.0.0.1:6000\", \"origins\": [\"*\"], \"limits\": "
                     "{\"max_stanza\": 2048, \"max_depth\": 8, \"max_attrs\": 5, "
                     "\"max_sessions\": 7}, \"log\": {\"level\": \"debug\"}}") == 0);
    CHECK(validate(next) == 0);
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 1);
    CHECK_STR(kept, "listen");
    CHECK_STR(next->listen.host, "127.0.0.1");
    CHECK(next->listen.port == 5280);
    CHECK(next->n_origins == 1);
    CHECK_STR(next->origins[0], "*");
    CHECK(next->max_stanza == 2048);
    CHECK(next->max_depth == 8);
    CHECK(next->max_attrs == 5);
    CHECK(next->max_sessions == 7);
    CHECK(next->log_level == GW_LOG_DEBUG);
    CHECK(validate(next) == 0);

    /* Nothing changed: nothing kept. */
    CHECK(load(next, "{" UP "}") == 0);
    strcpy(kept, "x");
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 0);
    CHECK_STR(kept, "");
    CHECK(memcmp(next, cur, sizeof(*cur)) == 0);

    /* Upstreams, domains and lists are one key each, and take the new value. */
    CHECK(load(next, "{\"upstream\": {\"host\": \"h2\", \"port\": 5223}, \"domains\": "
                     "[\"a.example\"], \"upstreams\": {\"b.example\": {\"host\": \"h3\"}}, "
                     "\"bosh\": {\"routes\": [\"xmpp:h2:5223\"]}}") == 0);
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 0);
    CHECK_STR(next->upstream.addr.host, "h2");
    CHECK(next->n_domains == 1 && next->n_upstream_map == 1 && next->n_bosh_routes == 1);

    /* Every restart key of full.json differs from minimal.json's (websocket.deflate does not):
     * all are named in table order, and each gets minimal.json's value back. */
    struct gw_config *full = new_cfg(), *again = new_cfg();
    CHECK(load_fixture(cur, "minimal.json") == 0);
    CHECK(load_fixture(full, "full.json") == 0);
    memcpy(next, full, sizeof(*full));
    CHECK(gw_config_reload_merge(next, cur, kept, sizeof(kept)) == 10);
    CHECK_STR(kept, "listen, tls.cert, tls.key, static.root, static.node_modules, admin.listen, "
                    "upstream_ca, websocket.path, websocket.ping_interval, bosh.path");
    CHECK(memcmp(&next->listen, &cur->listen, sizeof(cur->listen)) == 0);
    CHECK_STR(next->tls_cert, "");
    CHECK_STR(next->tls_key, "");
    CHECK_STR(next->static_root, "static");
    CHECK_STR(next->node_modules, "node_modules");
    CHECK(next->admin_listen.port == 5281);
    CHECK_STR(next->upstream_ca, "");
    CHECK_STR(next->ws_path, "/xmpp-websocket");
    CHECK(next->ws_ping_interval == 30);
    CHECK_STR(next->bosh_path, "/http-bind");
    CHECK_STR(next->admin_token, "s3cret-token"); /* live */
    CHECK(next->n_domains == 2 && next->n_upstream_map == 2);
    CHECK_STR(next->upstream.addr.host, "xmpp.example.com");
    CHECK(next->bosh_max_wait == 600 && next->max_stanza == 1024 && next->send_queue == 65536);
    CHECK(validate(next) == 0);
    /* Merging full.json over the result again changes nothing more: every other key already
     * held full.json's value. */
    memcpy(again, full, sizeof(*full));
    CHECK(gw_config_reload_merge(again, next, kept, sizeof(kept)) == 10);
    CHECK(memcmp(again, next, sizeof(*next)) == 0);
    /* And the other way round: the running full.json values are kept over minimal.json's. */
    memcpy(next, cur, sizeof(*cur));
    CHECK(gw_config_reload_merge(next, full, kept, sizeof(kept)) == 10);
    CHECK_STR(next->tls_cert, "/etc/xmppgw/cert.pem");
    CHECK_STR(next->bosh_path, "/bosh");
    CHECK(next->max_stanza == 262144);
    CHECK(validate(next) == 0);

    /* The list of names is cut to the buffer, the count is not; no buffer is fine too. */
    char small[8];
    memcpy(next, full, sizeof(*full));
    CHECK(gw_config_reload_merge(next, cur, small, sizeof(small)) == 10);
    CHECK_STR(small, "listen,");
    memcpy(next, full, sizeof(*full));
    CHECK(gw_config_reload_merge(next, cur, NULL, 0) == 10);
    CHECK(memcmp(&next->listen, &cur->listen, sizeof(cur->listen)) == 0);
    CHECK(gw_config_reload_merge(NULL, cur, kept, sizeof(kept)) == GW_EINVAL);
    CHECK(gw_config_reload_merge(next, NULL, kept, sizeof(kept)) == GW_EINVAL);
    CHECK_STR(kept, "");

    free(cur);
    free(next);
    free(full);
    free(again);
}

/* ---- live: the hub's keys ---- */

static void test_live(void)
{
    struct gw_config *c = new_cfg();
    CHECK(load(c, "{}") == 0);
    CHECK_STR(c->live_jid, "");
    CHECK(c->live_replay == 20 && c->live_heartbeat == 15 && c->live_linger == 60);
    CHECK(c->live_max_viewers == 20000);
    CHECK(reload_of("live.jid") == GW_RELOAD_RESTART);
    CHECK(reload_of("live.max_viewers") == GW_RELOAD_LIVE);
    CHECK(!c->live_demo_publish);
    CHECK(reload_of("live.demo_publish") == GW_RELOAD_RESTART); /* as listen, which it needs */
    /* The demo's publish endpoint has no token: on loopback only. */
    CHECK(load(c, "{" UP ", \"live\": {\"demo_publish\": true}}") == 0);
    CHECK(c->live_demo_publish && validate(c) == 0);
    CHECK(load(c, "{" UP ", \"listen\": \"[::1]:5280\", \"live\": {\"demo_publish\": true}}") == 0);
    CHECK(validate(c) == 0);
    check_validate_err("{" UP ", \"listen\": \"0.0.0.0:5280\", \"live\": {\"demo_publish\": true}}",
                       "key 'live.demo_publish': lets anyone publish through the hub: listen "
                       "(0.0.0.0:5280) must be a loopback address while it is on");
    check_validate_err("{" UP ", \"listen\": \"[2001:db8::1]:5280\", \"live\": {\"demo_publish\": "
                       "true}}",
                       "key 'live.demo_publish': lets anyone publish through the hub: listen "
                       "([2001:db8::1]:5280) must be a loopback address while it is on");
    CHECK_LOAD_ERR("{\"live\": {\"demo_publish\": 1}}",
                   "t.json:1:27: key 'live.demo_publish': must be true or false");
    /* Off without a JID: nothing else is required. */
    CHECK(load(c, "{" UP ", \"live\": {\"nodes\": [\"pubsub.a.example/n\"]}}") == 0);
    CHECK(validate(c) == 0);

    CHECK_LOAD_ERR("{\"live\": {\"jid\": \"hub\"}}",
                   "t.json:1:18: key 'live.jid': must be a bare JID such as \"user@example.org\"");
    CHECK_LOAD_ERR("{\"live\": {\"jid\": \"hub@a.example/r\"}}",
                   "t.json:1:18: key 'live.jid': must be a bare JID such as \"user@example.org\"");
    CHECK_LOAD_OK("{\"live\": {\"nodes\": [\"pubsub.a.example/news-*\", \"p.a.example/*\"]}}");
    static const char *const bad_nodes[] = {"nodename", "/n", "pubsub.a.example/", "a..b/n",
                                            "pubsub.a.example/a*b"};
    for (size_t i = 0; i < sizeof(bad_nodes) / sizeof(bad_nodes[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json), "{\"live\": {\"nodes\": [\"%s\"]}}", bad_nodes[i]);
        CHECK(load(c, json) == GW_EINVAL);
        CHECK(strstr(err, "key 'live.nodes[0]': must be \"service/node\"") != NULL);
    }

    check_validate_err("{" UP
                       ", \"live\": {\"jid\": \"hub@a.example\", \"nodes\": [\"p.a.example/n\"]}}",
                       "key 'live.password_file': required when live.jid is set (or set "
                       "live.password)");
    check_validate_err("{" UP ", \"live\": {\"jid\": \"hub@a.example\", \"password\": \"s3cret\"}}",
                       "key 'live.nodes': required when live.jid is set");
    check_validate_err("{" UP ", \"live\": {\"jid\": \"hub@a.example\", \"password_file\": "
                       "\"/nonexistent/hub.pass\", \"nodes\": [\"p.a.example/n\"]}}",
                       "key 'live.password_file': cannot read \"/nonexistent/hub.pass\": No such "
                       "file or directory");

    /* The file's first line is the password; it never shows in an error. */
    char path[] = "/tmp/xmppgw-test-pass-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "s3cret\nrest\n", 12) == 12);
    close(fd);
    char json[512], pw[64];
    snprintf(json, sizeof(json),
             "{" UP ", \"live\": {\"jid\": \"hub@a.example\", \"password_file\": \"%s\", "
             "\"nodes\": [\"p.a.example/n\"]}}",
             path);
    CHECK(load(c, json) == 0);
    CHECK(validate(c) == 0);
    CHECK(gw_config_live_password(c, pw, sizeof(pw), err, sizeof(err)) == 0);
    CHECK_STR(pw, "s3cret");
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    close(fd);
    CHECK(validate(c) == GW_EINVAL);
    CHECK(strstr(err, "holds no password") != NULL);
    CHECK(strstr(err, "s3cret") == NULL);
    unlink(path);
    free(c);
}

/* ---- visitors: the section is optional; when set, the shared account works ---- */

#define VIS(extra)                                                                                 \
    "{" UP ", \"domains\": [\"a.example\"], \"visitors\": {\"domain\": \"v.a.example\", " extra "}}"

static void test_visitors(void)
{
    struct gw_config *c = new_cfg();
    CHECK(load(c, "{}") == 0);
    CHECK_STR(c->visitors_domain, "");
    CHECK_STR(c->visitors_resource_prefix, "visitor-");
    CHECK(c->visitors_disco && c->visitors_presence && c->n_visitors_pubsub == 0);
    CHECK(load(c, VIS("\"jid\": \"site@a.example\", \"password\": \"pw\", \"allow\": {\"pubsub\": "
                      "[\"Pubsub.a.example\"], \"disco\": false}")) == 0);
    CHECK(validate(c) == 0);
    CHECK(c->n_visitors_pubsub == 1);
    CHECK_STR(c->visitors_pubsub[0], "pubsub.a.example");
    CHECK(!c->visitors_disco && c->visitors_presence);
    char pw[64];
    CHECK(gw_config_visitors_password(c, pw, sizeof(pw), err, sizeof(err)) == 0);
    CHECK_STR(pw, "pw");
    CHECK(reload_of("visitors.domain") == GW_RELOAD_NEW);
    CHECK(reload_of("visitors.allow.pubsub") == GW_RELOAD_LIVE);

    CHECK_LOAD_ERR("{\"visitors\": {\"jid\": \"site\"}}",
                   "t.json:1:22: key 'visitors.jid': must be a bare JID such as "
                   "\"user@example.org\"");
    CHECK_LOAD_ERR("{\"visitors\": {\"allow\": {\"pubsub\": [\"a..b\"]}}}",
                   "t.json:1:36: key 'visitors.allow.pubsub[0]': must be a domain name such as "
                   "\"example.com\"");
    CHECK(load(c, "{\"visitors\": {\"allow.pubsub\": []}}") == GW_EINVAL);
    CHECK(strstr(err, "unknown key") != NULL);
    CHECK_LOAD_ERR("{\"visitors\": {\"resource_prefix\": \"a b\"}}",
                   "t.json:1:34: key 'visitors.resource_prefix': must be printable ASCII without "
                   "spaces, quotes, '&', '<', '>' or '/'");

    check_validate_err(VIS("\"password\": \"pw\""),
                       "key 'visitors.jid': required when visitors.domain is set");
    check_validate_err(VIS("\"jid\": \"site@a.example\""),
                       "key 'visitors.password_file': required when visitors.domain is set (or "
                       "set visitors.password)");
    check_validate_err(VIS("\"jid\": \"site@a.example\", \"password\": \"p\", \"password_file\": "
                           "\"/x\""),
                       "key 'visitors.password': set visitors.password_file or "
                       "visitors.password, not both");
    check_validate_err(VIS("\"jid\": \"site@a.example\", \"password_file\": "
                           "\"/nonexistent/site.pass\""),
                       "key 'visitors.password_file': cannot read \"/nonexistent/site.pass\": No "
                       "such file or directory");
    check_validate_err(VIS("\"jid\": \"site@b.example\", \"password\": \"pw\""),
                       "key 'visitors.jid': no upstream serves its domain");
    check_validate_err("{" UP ", \"domains\": [\"a.example\"], \"visitors\": {\"domain\": "
                       "\"A.example\", \"jid\": \"site@a.example\", \"password\": \"pw\"}}",
                       "key 'visitors.domain': must differ from the served domains");
    free(c);
}

/* ---- the shipped files and config/README.md agree with the table ---- */

/* The member list an unknown-key error gives for the object `prefix` + {"zz": 1} + `suffix`. */
static int known_keys(const char *prefix, const char *suffix, char *out, size_t outlen)
{
    char json[512];
    snprintf(json, sizeof(json), "%s{\"zz-unknown\": 1}%s", prefix, suffix);
    struct gw_config *c = new_cfg();
    int rc = load(c, json);
    free(c);
    const char *p = strstr(err, "(known keys: ");
    if (rc != GW_EINVAL || !p)
        return -1;
    p += strlen("(known keys: ");
    const char *end = strchr(p, ')');
    if (!end || (size_t)(end - p) >= outlen)
        return -1;
    memcpy(out, p, (size_t)(end - p));
    out[end - p] = '\0';
    return 0;
}

/* Is the value after prefix a section? A section answers a number with exactly "must be an
 * object". */
static bool is_section(const char *prefix, const char *suffix)
{
    char json[256];
    struct gw_config *c = new_cfg();
    snprintf(json, sizeof(json), "%s-1%s", prefix, suffix); /* valid for no key */
    CHECK(load(c, json) == GW_EINVAL);
    free(c);
    size_t elen = strlen(err), olen = strlen("must be an object");
    return elen > olen && strcmp(err + elen - olen, "must be an object") == 0;
}

/* The leaf keys of section k ("visitors"), nested sections ("visitors.allow") walked too. */
static unsigned section_keys(const char *k, char keys[][64], unsigned n, unsigned max)
{
    char members[1024], prefix[128], inner[128];
    snprintf(prefix, sizeof(prefix), "{\"%s\": ", k);
    CHECK(known_keys(prefix, "}", members, sizeof(members)) == 0);
    char *save = NULL;
    for (char *m = strtok_r(members, ", ", &save); m; m = strtok_r(NULL, ", ", &save)) {
        snprintf(inner, sizeof(inner), "{\"%s\": {\"%s\": ", k, m);
        if (strcmp(k, "upstream") != 0 && is_section(inner, "}}")) {
            CHECK(known_keys(inner, "}}", prefix, sizeof(prefix)) == 0);
            char *save2 = NULL;
            for (char *l = strtok_r(prefix, ", ", &save2); l; l = strtok_r(NULL, ", ", &save2))
                if (n < max)
                    snprintf(keys[n++], 64, "%s.%s.%s", k, m, l);
        } else if (n < max) {
            snprintf(keys[n++], 64, "%s.%s", k, m);
        }
    }
    return n;
}

/* Every leaf key, as config/README.md names them: "listen", "bosh.max_wait", "upstream.host",
 * "upstreams", "visitors.allow.pubsub". Found through the public API only, from the unknown-key
 * hints. */
static unsigned all_keys(char keys[][64], unsigned max)
{
    char top[1024], prefix[128];
    unsigned n = 0;
    if (known_keys("", "", top, sizeof(top)) != 0)
        return 0;
    char *save_top = NULL;
    for (char *k = strtok_r(top, ", ", &save_top); k; k = strtok_r(NULL, ", ", &save_top)) {
        snprintf(prefix, sizeof(prefix), "{\"%s\": ", k);
        if (is_section(prefix, "}") || strcmp(k, "upstream") == 0)
            n = section_keys(k, keys, n, max);
        else if (n < max)
            snprintf(keys[n++], 64, "%s", k);
    }
    return n;
}

/* {"a": {"b": LIT}} for "a.b"; inside base_upstream for "upstream.*". */
static void json_for(const char *key, const char *lit, char *out, size_t outlen)
{
    const char *dot = strchr(key, '.');
    if (strncmp(key, "upstream.", 9) == 0)
        snprintf(out, outlen, "{\"upstream\": {\"host\": \"h.example\", \"%s\": %s}}", dot + 1,
                 lit);
    else if (dot && strchr(dot + 1, '.')) {
        const char *dot2 = strchr(dot + 1, '.');
        snprintf(out, outlen, "{\"%.*s\": {\"%.*s\": {\"%s\": %s}}}", (int)(dot - key), key,
                 (int)(dot2 - dot - 1), dot + 1, dot2 + 1, lit);
    } else if (dot)
        snprintf(out, outlen, "{\"%.*s\": {\"%s\": %s}}", (int)(dot - key), key, dot + 1, lit);
    else
        snprintf(out, outlen, "{\"%s\": %s}", key, lit);
}

/* One README row: the default loads to the table's default; integer bounds hold exactly. */
static void check_readme_row(const char *key, const char *def, const char *bounds)
{
    struct gw_config *a = new_cfg(), *b = new_cfg();
    char json[1024], lit[256];
    const char *base =
        strncmp(key, "upstream.", 9) == 0 ? "{\"upstream\": {\"host\": \"h.example\"}}" : "{}";
    size_t dlen = strlen(def);
    if (dlen >= 2 && def[0] == '`' && def[dlen - 1] == '`' && dlen - 2 < sizeof(lit)) {
        memcpy(lit, def + 1, dlen - 2);
        lit[dlen - 2] = '\0';
        json_for(key, lit, json, sizeof(json));
        CHECK(load(a, base) == 0);
        int rc = load(b, json);
        if (rc != 0 || memcmp(a, b, sizeof(*a)) != 0)
            fprintf(stderr, "README default of %s (%s) differs from the table\n", key, lit);
        CHECK(rc == 0);
        CHECK(memcmp(a, b, sizeof(*a)) == 0);
    }
    unsigned long long lo, hi;
    if (sscanf(bounds, "`%llu..%llu`", &lo, &hi) == 2) {
        char expected[256];
        snprintf(expected, sizeof(expected), "'%s': must be between %llu and %llu", key, lo, hi);
        snprintf(lit, sizeof(lit), "%llu", lo);
        json_for(key, lit, json, sizeof(json));
        CHECK(load(b, json) == 0);
        snprintf(lit, sizeof(lit), "%llu", hi);
        json_for(key, lit, json, sizeof(json));
        CHECK(load(b, json) == 0);
        if (lo > 0) {
            snprintf(lit, sizeof(lit), "%llu", lo - 1);
            json_for(key, lit, json, sizeof(json));
            CHECK(load(b, json) == GW_EINVAL);
            CHECK(strstr(err, expected) != NULL);
        }
        snprintf(lit, sizeof(lit), "%llu", hi + 1);
        json_for(key, lit, json, sizeof(json));
        CHECK(load(b, json) == GW_EINVAL);
        if (!strstr(err, expected))
            fprintf(stderr, "README bounds of %s: got \"%s\"\n", key, err);
        CHECK(strstr(err, expected) != NULL);
    }
    free(a);
    free(b);
}

/* One README row's Reload cell names the key's class in the table. */
static void check_readme_reload(const char *key, const char *cell)
{
    static const char *const words[] = {[GW_RELOAD_LIVE] = "live",
                                        [GW_RELOAD_NEW] = "new sessions",
                                        [GW_RELOAD_RESTART] = "restart"};
    enum gw_config_reload r;
    if (gw_config_key_reload(key, &r) != 0) {
        fprintf(stderr, "config/README.md: %s has no reload class in the table\n", key);
        CHECK(false);
        return;
    }
    if (strcmp(cell, words[r]) != 0)
        fprintf(stderr, "config/README.md says %s reloads \"%s\"; the table says \"%s\"\n", key,
                cell, words[r]);
    CHECK_STR(cell, words[r]);
}

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
    return s;
}

static json_t *json_path(json_t *root, const char *key)
{
    char part[64];
    const char *p = key;
    json_t *v = root;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        v = json_object_get(v, part);
        p += n + (dot ? 1 : 0);
    }
    return v;
}

static void test_docs_and_shipped_files(void)
{
    char keys[96][64];
    unsigned n = all_keys(keys, 96);
    CHECK(n == 67);

    char path[4096];
    PATH_PRINTF(path, "%s/config/README.md", source_dir);
    char *readme = read_text(path);
    CHECK(readme != NULL);
    PATH_PRINTF(path, "%s/config/xmppgw.example.json", source_dir);
    json_error_t jerr;
    json_t *example = json_load_file(path, 0, &jerr);
    CHECK(example != NULL);

    /* Table -> README and example. */
    for (unsigned i = 0; i < n; i++) {
        char row[96];
        PATH_PRINTF(row, "| `%s` |", keys[i]);
        if (readme && !strstr(readme, row))
            fprintf(stderr, "config/README.md has no row for %s\n", keys[i]);
        CHECK(readme && strstr(readme, row));
        if (example && !json_path(example, keys[i]))
            fprintf(stderr, "config/xmppgw.example.json has no %s\n", keys[i]);
        CHECK(example && json_path(example, keys[i]));
    }

    /* README -> table: every row names a key, its default and bounds are true. */
    unsigned rows = 0;
    char *save = NULL;
    for (char *line = readme ? strtok_r(readme, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "| `", 3) != 0)
            continue;
        char *cell[8];
        unsigned nc = 0;
        for (char *p = line + 1; nc < 8;) {
            char *bar = strchr(p, '|');
            if (!bar)
                break;
            *bar = '\0';
            cell[nc++] = trim(p);
            p = bar + 1;
        }
        CHECK(nc == 6);
        if (nc != 6)
            continue;
        size_t klen = strlen(cell[0]);
        char key[64];
        CHECK(klen > 2 && klen - 2 < sizeof(key));
        if (klen <= 2 || klen - 2 >= sizeof(key))
            continue;
        memcpy(key, cell[0] + 1, klen - 2);
        key[klen - 2] = '\0';
        bool known = false;
        for (unsigned i = 0; i < n; i++)
            known |= strcmp(keys[i], key) == 0;
        if (!known)
            fprintf(stderr, "config/README.md documents %s, which is no key\n", key);
        CHECK(known);
        check_readme_row(key, cell[2], cell[3]);
        check_readme_reload(key, cell[4]);
        rows++;
    }
    CHECK(rows == n);

    /* The example holds the defaults (plus its upstream examples), and is valid. */
    struct gw_config *c = new_cfg(), *d = new_cfg();
    PATH_PRINTF(path, "%s/config/xmppgw.example.json", source_dir);
    err[0] = '\0';
    int rc = gw_config_load(c, path, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK(rc == 0);
    CHECK(validate(c) == 0);
    CHECK(c->has_default_upstream);
    CHECK(c->n_upstream_map == 1);
    d->has_default_upstream = c->has_default_upstream;
    d->upstream = c->upstream;
    memcpy(d->upstream_map, c->upstream_map, sizeof(d->upstream_map));
    d->n_upstream_map = c->n_upstream_map;
    /* The file's digest: SHA-256 in hex, the one field a file sets that is no key. */
    CHECK(strlen(c->digest) == 64 && strspn(c->digest, "0123456789abcdef") == 64);
    CHECK(d->digest[0] == '\0');
    memcpy(d->digest, c->digest, sizeof(d->digest));
    CHECK(memcmp(c, d, sizeof(*c)) == 0);

    /* The working default for a local Prosody. */
    PATH_PRINTF(path, "%s/config/xmppgw.json", source_dir);
    rc = gw_config_load(c, path, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s\n", err);
    CHECK(rc == 0);
    CHECK(validate(c) == 0);
    CHECK_STR(c->listen.host, "127.0.0.1");
    CHECK(c->listen.port == 5280);
    CHECK_STR(c->admin_listen.host, "127.0.0.1");
    CHECK(c->admin_listen.port == 5281);
    CHECK(c->n_domains == 1);
    CHECK_STR(c->domains[0], "localhost");
    CHECK(c->has_default_upstream);
    CHECK_STR(c->upstream.addr.host, "127.0.0.1");
    CHECK(c->upstream.addr.port == 5222);
    CHECK(c->upstream.tls == GW_UPSTREAM_TLS_STARTTLS);
    CHECK_STR(c->upstream_ca, "/etc/prosody/certs/localhost.crt");
    CHECK_STR(c->static_root, "static");
    CHECK_STR(c->node_modules, "node_modules");
    CHECK(gw_config_upstream_for(c, "localhost") == &c->upstream);

    json_decref(example);
    free(readme);
    free(c);
    free(d);
}

int main(void)
{
    find_dirs();
    test_defaults();
    test_full_file();
    test_fixture_errors();
    test_type_errors();
    test_value_errors();
    test_key_errors();
    test_positions();
    test_syntax_errors();
    test_parse_errors_by_key();
    test_parse_addr();
    test_parse_tls();
    test_proxy_keys();
    test_node_keys();
    test_upstream_for();
    test_validate();
    test_admin_listen();
    test_admin_hosts();
    test_reload_classes();
    test_admin_reload();
    test_reload_merge();
    test_live();
    test_visitors();
    test_docs_and_shipped_files();
    return CHECK_SUMMARY();
}
