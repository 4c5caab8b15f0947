/* Tests for gateway/admin/: the bodies on their own, then the HTTP server on a real loop. The loop
 * runs on the main thread as in the gateway; a plain blocking client runs on a second thread and
 * asks the loop, through uv_async_t, to change the gateway's state between its requests (only the
 * loop thread touches the context). */
#include "admin/admin.h"
#include "check.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <uv.h>
#include "config/config.h"
#include "session/hub.h"
#include "session/session.h"

#ifndef XMPPGW_VERSION
#define XMPPGW_VERSION "unknown"
#endif

#define TOKEN "s3cret-token"
#define ADMIN_HOST "admin.example" /* in admin.hosts */

struct fixture {
    uv_loop_t loop;
    struct gw_config cfg;
    struct gw_ctx ctx;
    struct gw_admin *admin;
    struct gw_session *ws;       /* a websocket session in the table, when the table allows */
    struct gw_session *bosh;     /* and a BOSH one */
    char ws_sid[GW_SID_LEN + 1]; /* their ids, copied before the client starts */
    char bosh_sid[GW_SID_LEN + 1];
    char ws_hash[GW_ADMIN_SID_HASH_LEN + 1]; /* and what /api/sessions should show for them */
    char bosh_hash[GW_ADMIN_SID_HASH_LEN + 1];
    uint16_t port;
    uv_async_t step;  /* client -> loop: make the next state change */
    uv_async_t done;  /* client -> loop: finished, shut down */
    uv_sem_t stepped; /* loop -> client: the change is made */
    uv_timer_t watchdog;
    unsigned steps; /* loop thread only */
    char want_open[GW_TRANSPORT_COUNT]
                  [128]; /* the xmppgw_sessions_open lines, as the session table set them */
};

/* ---- sink for the test session (never called: the session is never started) ---- */

static void sink_ready(void *t, const struct gw_stream_info *info, const char *f, size_t len) {}

static int sink_deliver(void *t, const char *bytes, size_t len)
{
    return 0;
}

static void sink_closed(void *t, const struct gw_close_reason *why) {}

static const struct gw_sink_ops sink = {sink_ready, sink_deliver, sink_closed};

/* ---- a blocking HTTP/1.1 client (client thread only) ---- */

struct reply {
    int status;
    char raw[256 << 10];  /* the bytes received */
    char head[8192];      /* status line and headers, NUL-terminated */
    char body[256 << 10]; /* NUL-terminated */
    size_t body_len;
};

/* Send `request` as is and read until the server closes. 0 on success. */
static int http(uint16_t port, const char *request, struct reply *r)
{
    char *raw = r->raw;
    memset(r, 0, sizeof(*r));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t len = strlen(request), got = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        send(fd, request, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    for (;;) {
        if (got == sizeof(r->raw) - 1)
            break;
        ssize_t n = recv(fd, raw + got, sizeof(r->raw) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    raw[got] = '\0';
    char *end = strstr(raw, "\r\n\r\n");
    if (!end || (size_t)(end - raw) >= sizeof(r->head) ||
        sscanf(raw, "HTTP/1.1 %d", &r->status) != 1)
        return -1;
    memcpy(r->head, raw, (size_t)(end - raw) + 2);
    r->body_len = got - (size_t)(end + 4 - raw);
    memcpy(r->body, end + 4, r->body_len);
    return 0;
}

/* Two requests on one connection: answers wait for the end of the request, so MHD keeps the
 * connection alive between them. Returns how many answers came back (2 expected). */
static int keepalive_twice(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *one = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const char *two = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char buf[4096];
    size_t got = 0;
    int answers = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        send(fd, one, strlen(one), MSG_NOSIGNAL) != (ssize_t)strlen(one)) {
        close(fd);
        return 0;
    }
    for (;;) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (answers == 0 && strstr(buf, "\r\n\r\nok\n")) {
            answers = 1;
            got = 0;
            if (send(fd, two, strlen(two), MSG_NOSIGNAL) != (ssize_t)strlen(two))
                break;
        }
        if (got == sizeof(buf) - 1)
            break;
    }
    if (answers == 1 && strncmp(buf, "HTTP/1.1 200", 12) == 0 && strstr(buf, "\r\n\r\nok\n"))
        answers = 2;
    close(fd);
    return answers;
}

/* The value of header `name` (case-insensitive) in out, or NULL. */
static const char *header(const struct reply *r, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    for (const char *p = strstr(r->head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vl = e ? (size_t)(e - v) : strlen(v);
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return out;
        }
    }
    return NULL;
}

/* What every answer must carry: Content-Length matching the body, Cache-Control: no-store. */
static void check_common(const struct reply *r, bool head_request)
{
    char v[256];
    CHECK(header(r, "Cache-Control", v, sizeof(v)) != NULL);
    CHECK_STR(header(r, "Cache-Control", v, sizeof(v)), "no-store");
    CHECK(header(r, "Content-Length", v, sizeof(v)) != NULL);
    if (!head_request && header(r, "Content-Length", v, sizeof(v)))
        CHECK(strtoul(v, NULL, 10) == r->body_len);
}

static size_t count_lines_starting(const char *text, const char *prefix)
{
    size_t n = 0, pl = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, pl) == 0)
            n++;
    return n;
}

static json_t *parse_json(const struct reply *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    if (!j)
        fprintf(stderr, "bad JSON (%s): %s\n", e.text, r->body);
    return j;
}

/* What /api/sessions shows for a sid: the first hex characters of its SHA-256, written here
 * apart from render.c so that the two are checked against each other. */
static void sid_hash(const char *sid, char out[GW_ADMIN_SID_HASH_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    out[0] = '\0';
    CHECK(EVP_Digest(sid, strlen(sid), md, &len, EVP_sha256(), NULL) == 1 && len == 32);
    for (unsigned i = 0; i < GW_ADMIN_SID_HASH_LEN / 2; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* An /api/sessions body: every entry has a sid_hash of 16 lowercase hex digits and no sid; the
 * test sessions appear by their hashes with their transports and peers; no raw sid appears
 * anywhere in the body. */
static void check_sessions_body(const struct fixture *f, const char *body, size_t len)
{
    CHECK(strlen(f->ws_hash) == GW_ADMIN_SID_HASH_LEN);
    CHECK(strstr(body, "\"sid_hash\":") != NULL || (!f->ws && !f->bosh));
    CHECK(!f->ws || strstr(body, f->ws_sid) == NULL);
    CHECK(!f->bosh || strstr(body, f->bosh_sid) == NULL);
    json_t *j = json_loadb(body, len, 0, NULL);
    CHECK(j != NULL);
    json_t *list = json_object_get(j, "sessions");
    bool seen_ws = false, seen_bosh = false;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        const char *h = json_string_value(json_object_get(e, "sid_hash"));
        const char *tr = json_string_value(json_object_get(e, "transport"));
        const char *peer = json_string_value(json_object_get(e, "peer"));
        CHECK(json_object_get(e, "sid") == NULL);
        CHECK(h && tr && peer);
        if (!h || !tr || !peer)
            continue;
        CHECK(strlen(h) == GW_ADMIN_SID_HASH_LEN &&
              strspn(h, "0123456789abcdef") == GW_ADMIN_SID_HASH_LEN);
        if (f->ws && strcmp(h, f->ws_hash) == 0) {
            seen_ws = true;
            CHECK_STR(tr, "websocket");
            CHECK_STR(peer, "127.0.0.1");
        } else if (f->bosh && strcmp(h, f->bosh_hash) == 0) {
            seen_bosh = true;
            CHECK_STR(tr, "bosh");
            CHECK_STR(peer, "::1");
        }
    }
    size_t listed = json_array_size(list);
    CHECK((size_t)(seen_ws + seen_bosh) == listed); /* the table holds these two only */
    json_decref(j);
}

/* A refusal: the status, and the JSON body {"error": text, "condition": cond} and nothing else. */
static void check_error(const struct reply *r, int status, const char *cond)
{
    char v[256];
    CHECK(r->status == status);
    if (r->status != status)
        fprintf(stderr, "expected %d, got %d: %s\n", status, r->status, r->body);
    check_common(r, false);
    CHECK(header(r, "Content-Type", v, sizeof(v)) && strcmp(v, "application/json") == 0);
    json_t *j = parse_json(r);
    CHECK(j && json_is_object(j) && json_object_size(j) == 2);
    const char *text = json_string_value(json_object_get(j, "error"));
    CHECK(text && text[0]);
    CHECK_STR(json_string_value(json_object_get(j, "condition")), cond);
    json_decref(j);
}

#define GET(path, extra)                                                                           \
    "GET " path " HTTP/1.1\r\nHost: 127.0.0.1\r\n" extra "Connection: close\r\n\r\n"
/* The same with another Host header. */
#define GET_AT(path, host) "GET " path " HTTP/1.1\r\nHost: " host "\r\nConnection: close\r\n\r\n"

/* GET path with the given Host header line(s) ("" for none) as HTTP/1.1, or as HTTP/1.0. */
static int get_with(uint16_t port, const char *path, const char *version, const char *hosts,
                    struct reply *r)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/%s\r\n%sConnection: close\r\n\r\n", path, version,
             hosts);
    return http(port, req, r);
}

/* tmpl with "PORT" (at its end, if anywhere) replaced by the admin port. */
static void with_port(const char *tmpl, uint16_t port, char *out, size_t outlen)
{
    const char *p = strstr(tmpl, "PORT");
    if (p)
        snprintf(out, outlen, "%.*s%u", (int)(p - tmpl), tmpl, (unsigned)port);
    else
        snprintf(out, outlen, "%s", tmpl);
}

/* The Host header, against DNS rebinding: addresses, localhost and admin.hosts pass; any other
 * name gets 421 with a JSON body, on every path; none, two or a malformed value 400. */
static void client_hosts(struct fixture *f, struct reply *r)
{
    char line[512];
    const char *ok[] = {"127.0.0.1", "127.0.0.1:PORT",    "[::1]",          "[::1]:PORT",
                        "localhost", "LocalHost:PORT",    "192.0.2.9:PORT", "[2001:db8::1]",
                        ADMIN_HOST,  "Admin.EXAMPLE:PORT"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char host[128];
        with_port(ok[i], f->port, host, sizeof(host));
        snprintf(line, sizeof(line), "Host: %s\r\n", host);
        CHECK(get_with(f->port, "/healthz", "1.1", line, r) == 0);
        if (r->status != 200)
            fprintf(stderr, "Host: %s: %d\n", host, r->status);
        CHECK(r->status == 200);
        CHECK(get_with(f->port, "/api/sessions", "1.1", line, r) == 0);
        CHECK(r->status == 200);
    }
    const char *bad[] = {"evil.example",
                         "evil.example:PORT",
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
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char host[128];
        with_port(bad[i], f->port, host, sizeof(host));
        snprintf(line, sizeof(line), "Host: %s\r\n", host);
        CHECK(get_with(f->port, "/healthz", "1.1", line, r) == 0);
        if (r->status != 421)
            fprintf(stderr, "Host: %s: %d\n", host, r->status);
        check_error(r, 421, "host-not-allowed");
    }
    /* Every path, known or not, and the sessions list above all. */
    const char *paths[] = {"/metrics", "/status", "/readyz", "/api/sessions", "/api/nope", "/nope"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        CHECK(get_with(f->port, paths[i], "1.1", "Host: evil.example\r\n", r) == 0);
        check_error(r, 421, "host-not-allowed");
        CHECK(!f->ws || strstr(r->body, f->ws_hash) == NULL);
    }
    /* A value that is no valid field value (RFC 9112 section 3.2): 400. */
    const char *malformed[] = {"a b", "evil.example, 127.0.0.1", "local\x01host"};
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        snprintf(line, sizeof(line), "Host: %s\r\n", malformed[i]);
        CHECK(get_with(f->port, "/api/sessions", "1.1", line, r) == 0);
        check_error(r, 400, "bad-request");
    }
    /* No Host (HTTP/1.0 allows that, but the rebinding rule needs one; HTTP/1.1 requires it), or
     * two of them: 400. */
    CHECK(get_with(f->port, "/api/sessions", "1.0", "", r) == 0);
    check_error(r, 400, "bad-request");
    CHECK(get_with(f->port, "/api/sessions", "1.1", "", r) == 0);
    check_error(r, 400, "bad-request");
    CHECK(get_with(f->port, "/api/sessions", "1.0", "Host: 127.0.0.1\r\n", r) == 0);
    CHECK(r->status == 200);
    CHECK(get_with(f->port, "/healthz", "1.1", "Host: 127.0.0.1\r\nHost: evil.example\r\n", r) ==
          0);
    check_error(r, 400, "bad-request");
    CHECK(get_with(f->port, "/healthz", "1.1", "Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n", r) == 0);
    check_error(r, 400, "bad-request");
    /* Refused on the headers, before any body. */
    CHECK(http(f->port,
               "POST /api/sessions HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 3\r\n"
               "Connection: close\r\n\r\nx=1",
               r) == 0);
    check_error(r, 421, "host-not-allowed");
}

static void client_status_and_sessions(struct fixture *f, struct reply *r);

#define PUBLISH_HEAD "POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
#define GOOD_ITEM "{\"service\":\"pubsub.localhost\",\"node\":\"n\",\"title\":\"T\"}"

/* POST /api/publish without a hub (the POST route's body rules and the answers known at once):
 * a good item gets 503, a bad one 400 naming why, a body not JSON by type 415, one announced or
 * sent (chunked) past 64 KiB 413, other methods 405 with Allow: POST. */
static void client_publish(struct fixture *f, struct reply *r)
{
    char v[256], req[1024];
    snprintf(req, sizeof(req),
             PUBLISH_HEAD "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(GOOD_ITEM), GOOD_ITEM);
    CHECK(http(f->port, req, r) == 0);
    check_error(r, 503, "service-unavailable");
    const char *bad[] = {"{", "[]", "{\"service\":\"pubsub.localhost\",\"title\":\"T\"}",
                         "{\"service\":\"s.example\",\"node\":\"n\",\"payload\":\"<x>\"}", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req),
                 PUBLISH_HEAD "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                 strlen(bad[i]), bad[i]);
        CHECK(http(f->port, req, r) == 0);
        check_error(r, 400, "bad-request");
    }
    CHECK(strstr(r->body, "not a JSON object") != NULL);
    snprintf(req, sizeof(req),
             PUBLISH_HEAD "Content-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
             strlen(GOOD_ITEM), GOOD_ITEM);
    CHECK(http(f->port, req, r) == 0);
    check_error(r, 415, "unsupported-media-type");
    CHECK(http(f->port,
               PUBLISH_HEAD "Content-Type: application/json\r\nContent-Length: 65537\r\n\r\n{",
               r) == 0);
    check_error(r, 413, "payload-too-large");
    /* Chunked, 70,000 bytes: read, dropped, then 413. */
    static char big[72 * 1024];
    int n = snprintf(big, sizeof(big),
                     PUBLISH_HEAD "Content-Type: application/json\r\nTransfer-Encoding: "
                                  "chunked\r\n\r\n");
    for (int c = 0; c < 7; c++) {
        n += snprintf(big + n, sizeof(big) - (size_t)n, "2710\r\n");
        memset(big + n, ' ', 10000);
        n += 10000;
        n += snprintf(big + n, sizeof(big) - (size_t)n, "\r\n");
    }
    snprintf(big + n, sizeof(big) - (size_t)n, "0\r\n\r\n");
    CHECK(http(f->port, big, r) == 0);
    check_error(r, 413, "payload-too-large");
    const char *methods[] = {"GET", "HEAD", "PUT"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        snprintf(req, sizeof(req),
                 "%s /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                 methods[i]);
        CHECK(http(f->port, req, r) == 0);
        CHECK(r->status == 405);
        CHECK_STR(header(r, "Allow", v, sizeof(v)), "POST");
    }
    /* The answers counted by outcome: none, without a hub. */
    CHECK(http(f->port, GET("/metrics", ""), r) == 0);
    CHECK(strstr(r->body, "\nxmppgw_publish_total{outcome=\"down\"} 0\n") != NULL);
}

static void client_phase_one(struct fixture *f, struct reply *r)
{
    char v[256];

    CHECK(http(f->port, GET("/healthz", ""), r) == 0);
    CHECK(r->status == 200);
    CHECK_STR(r->body, "ok\n");
    check_common(r, false);
    CHECK(header(r, "Content-Type", v, sizeof(v)) && strncmp(v, "text/plain", 10) == 0);

    CHECK(keepalive_twice(f->port) == 2);

    /* None of these endpoints takes a body. */
    CHECK(http(f->port,
               "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: "
               "close\r\n\r\n"
               "hello",
               r) == 0);
    check_error(r, 400, "bad-request");

    CHECK(http(f->port, "HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
               r) == 0);
    CHECK(r->status == 200);
    CHECK(r->body_len == 0);
    CHECK_STR(header(r, "Content-Length", v, sizeof(v)), "3");
    check_common(r, true);

    CHECK(http(f->port, GET("/readyz", ""), r) == 0);
    CHECK(r->status == 200);
    check_common(r, false);

    CHECK(http(f->port, GET("/metrics", ""), r) == 0);
    CHECK(r->status == 200);
    check_common(r, false);
    CHECK(header(r, "Content-Type", v, sizeof(v)) &&
          strncmp(v, "text/plain; version=0.0.4", 25) == 0);
    CHECK(strstr(r->body, "\nxmppgw_stanzas_total{direction=\"to_upstream\"} 42\n") != NULL);
    CHECK(strstr(r->body, "\nxmppgw_stanzas_total{direction=\"to_client\"} 0\n") != NULL);
    CHECK(strstr(r->body, f->want_open[GW_TRANSPORT_WS]) != NULL);
    CHECK(strstr(r->body, f->want_open[GW_TRANSPORT_BOSH]) != NULL);
    CHECK(strstr(r->body, "\nxmppgw_upstream_failures_total{kind=\"tls\"} 5\n") != NULL);
    CHECK(strstr(r->body, "# TYPE xmppgw_stream_errors_total counter\n") != NULL);
    CHECK(strstr(r->body, "# TYPE xmppgw_sessions_open gauge\n") != NULL);
    CHECK(strstr(r->body, "\nxmppgw_stream_errors_total{condition=\"system-shutdown\"} 3\n"));
    CHECK(strstr(r->body, "\nxmppgw_stream_errors_total{condition=\"bad-format\"} 0\n"));
    CHECK(count_lines_starting(r->body, "xmppgw_stream_errors_total{") == GW_COND_COUNT);
    CHECK(strstr(r->body, "\nxmppgw_build_info{version=\"" XMPPGW_VERSION "\"} 1\n") != NULL);
    CHECK(strstr(r->body, "\nxmppgw_uptime_seconds ") != NULL);
    CHECK(r->body_len > 0 && r->body[r->body_len - 1] == '\n');

    CHECK(http(f->port, GET("/nope", ""), r) == 0);
    check_error(r, 404, "not-found");
    CHECK(http(f->port, GET("/metrics/", ""), r) == 0);
    CHECK(r->status == 404);

    CHECK(http(f->port,
               "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
               "Content-Length: 3\r\nConnection: close\r\n\r\nx=1",
               r) == 0);
    check_error(r, 405, "method-not-allowed");
    CHECK_STR(header(r, "Allow", v, sizeof(v)), "GET, HEAD");
    CHECK(http(f->port,
               "DELETE /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
               r) == 0);
    CHECK(r->status == 405);
    check_common(r, false);

    client_status_and_sessions(f, r);
    client_hosts(f, r);
    client_publish(f, r);
}

/* /status, then /api/sessions with no token configured yet. */
static void client_status_and_sessions(struct fixture *f, struct reply *r)
{
    char v[256];
    CHECK(http(f->port, GET("/status", ""), r) == 0);
    CHECK(r->status == 200);
    check_common(r, false);
    CHECK(header(r, "Content-Type", v, sizeof(v)) && strcmp(v, "application/json") == 0);
    json_t *j = parse_json(r);
    CHECK(j != NULL);
    if (j) {
        json_int_t ws = f->ws ? 1 : 0, bosh = f->bosh ? 1 : 0;
        CHECK(json_is_false(json_object_get(j, "draining")));
        CHECK_STR(json_string_value(json_object_get(j, "version")), XMPPGW_VERSION);
        json_t *s = json_object_get(j, "sessions");
        CHECK(json_integer_value(json_object_get(s, "open")) == ws + bosh);
        CHECK(json_integer_value(json_object_get(s, "websocket")) == ws);
        CHECK(json_integer_value(json_object_get(s, "bosh")) == bosh);
        CHECK(json_integer_value(json_object_get(s, "max")) == (json_int_t)f->cfg.max_sessions);
        json_decref(j);
    }

    /* No token configured yet: /api/ is open. */
    CHECK(http(f->port, GET("/api/sessions", ""), r) == 0);
    CHECK(r->status == 200);
    check_common(r, false);
    j = parse_json(r);
    CHECK(j != NULL);
    if (j) {
        json_t *list = json_object_get(j, "sessions");
        CHECK(json_is_array(list));
        CHECK(json_is_false(json_object_get(j, "truncated")));
        size_t n = (f->ws ? 1 : 0) + (f->bosh ? 1 : 0);
        CHECK(json_array_size(list) == n);
        CHECK(json_integer_value(json_object_get(j, "count")) == (json_int_t)n);
        CHECK(json_integer_value(json_object_get(j, "listed")) == (json_int_t)n);
        check_sessions_body(f, r->body, r->body_len);
        CHECK(!f->ws || strstr(r->body, f->ws_hash) != NULL);
        CHECK(!f->bosh || strstr(r->body, f->bosh_hash) != NULL);
        for (size_t i = 0; i < json_array_size(list); i++) {
            json_t *e = json_array_get(list, i);
            CHECK(json_is_string(json_object_get(e, "jid")));
            CHECK(json_is_string(json_object_get(e, "domain")));
            CHECK(json_is_string(json_object_get(e, "state")));
            CHECK(json_is_integer(json_object_get(e, "age_seconds")));
            CHECK(json_integer_value(json_object_get(e, "stanzas_in")) == 0);
            CHECK(json_integer_value(json_object_get(e, "stanzas_out")) == 0);
            CHECK(json_is_boolean(json_object_get(e, "upstream_tls")));
        }
        json_decref(j);
    }
    /* A limit below the table's size: the answer says it left some out. */
    CHECK(http(f->port, GET("/api/sessions?limit=1", ""), r) == 0);
    CHECK(r->status == 200);
    j = parse_json(r);
    CHECK(j != NULL);
    if (j && f->ws && f->bosh) {
        CHECK(json_array_size(json_object_get(j, "sessions")) == 1);
        CHECK(json_integer_value(json_object_get(j, "count")) == 2);
        CHECK(json_is_true(json_object_get(j, "truncated")));
    }
    json_decref(j);
    CHECK(http(f->port, GET("/api/sessions?limit=0", ""), r) == 0);
    check_error(r, 400, "bad-request");
    CHECK(http(f->port, GET("/api/sessions?limit=12x", ""), r) == 0);
    CHECK(r->status == 400);
    CHECK(http(f->port, GET("/api/sessions?limit=10000", ""), r) == 0);
    CHECK(r->status == 200);
}

static void client_phase_two(struct fixture *f, struct reply *r)
{
    char v[256];

    CHECK(http(f->port, GET("/readyz", ""), r) == 0);
    CHECK(r->status == 503);
    check_common(r, false);
    CHECK(http(f->port, GET("/healthz", ""), r) == 0);
    CHECK(r->status == 200);

    CHECK(http(f->port, GET("/api/sessions", ""), r) == 0);
    check_error(r, 401, "not-authorized");
    CHECK(header(r, "WWW-Authenticate", v, sizeof(v)) && strncmp(v, "Bearer ", 7) == 0);

    CHECK(http(f->port, GET("/api/sessions", "Authorization: Bearer nope\r\n"), r) == 0);
    check_error(r, 401, "invalid-token");
    CHECK(header(r, "WWW-Authenticate", v, sizeof(v)) && strstr(v, "invalid_token") != NULL);
    CHECK(http(f->port, GET("/api/sessions", "Authorization: Bearer " TOKEN "x\r\n"), r) == 0);
    CHECK(r->status == 401);
    CHECK(http(f->port, GET("/api/sessions", "Authorization: Basic " TOKEN "\r\n"), r) == 0);
    CHECK(r->status == 401);

    CHECK(http(f->port, GET("/api/sessions", "Authorization: Bearer " TOKEN "\r\n"), r) == 0);
    CHECK(r->status == 200);
    check_common(r, false);
    check_sessions_body(f, r->body, r->body_len);
    CHECK(!f->ws || strstr(r->body, f->ws_hash) != NULL);

    /* The Host check comes before the token: a page that may not ask learns nothing, not even
     * whether a token is set, and a right token does not make a wrong Host right. */
    CHECK(http(f->port, GET_AT("/api/sessions", "evil.example"), r) == 0);
    check_error(r, 421, "host-not-allowed");
    CHECK(http(f->port,
               "GET /api/sessions HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer " TOKEN
               "\r\nConnection: close\r\n\r\n",
               r) == 0);
    check_error(r, 421, "host-not-allowed");
    CHECK(!f->ws || strstr(r->body, f->ws_hash) == NULL);
    CHECK(http(f->port, GET("/api/sessions", "authorization: bearer  " TOKEN "\r\n"), r) == 0);
    CHECK(r->status == 200);

    /* The whole /api/ tree is guarded, unknown paths and other methods included. */
    CHECK(http(f->port, GET("/api/nope", ""), r) == 0);
    CHECK(r->status == 401);
    CHECK(http(f->port, GET("/api/nope", "Authorization: Bearer " TOKEN "\r\n"), r) == 0);
    CHECK(r->status == 404);
    CHECK(http(f->port,
               "DELETE /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
               r) == 0);
    CHECK(r->status == 401);

    /* The token guards /api/ only. */
    CHECK(http(f->port, GET("/status", ""), r) == 0);
    CHECK(r->status == 200);
    json_t *j = parse_json(r);
    CHECK(j && json_is_true(json_object_get(j, "draining")));
    json_decref(j);

    CHECK(http(f->port, GET("/metrics", ""), r) == 0);
    CHECK(strstr(r->body, "\nxmppgw_stanzas_total{direction=\"to_client\"} 7\n") != NULL);
}

static void client_main(void *arg)
{
    struct fixture *f = arg;
    struct reply *r = malloc(sizeof(*r));
    CHECK(r != NULL);
    if (r) {
        client_phase_one(f, r);
        uv_async_send(&f->step);
        uv_sem_wait(&f->stepped);
        client_phase_two(f, r);
        free(r);
    }
    uv_async_send(&f->done);
}

/* ---- loop side ---- */

static void on_step(uv_async_t *h)
{
    struct fixture *f = h->data;
    f->steps++;
    f->ctx.draining = true;
    snprintf(f->cfg.admin_token, sizeof(f->cfg.admin_token), "%s", TOKEN);
    f->ctx.metrics.stanzas_to_client = 7;
    uv_sem_post(&f->stepped);
}

static void on_done(uv_async_t *h)
{
    struct fixture *f = h->data;
    gw_admin_free(f->admin);
    f->admin = NULL;
    if (f->ws)
        gw_session_end(f->ws, GW_COND_NONE);
    if (f->bosh)
        gw_session_end(f->bosh, GW_COND_NONE);
    f->ws = f->bosh = NULL;
    gw_sessions_free(f->ctx.sessions);
    f->ctx.sessions = NULL;
    uv_close((uv_handle_t *)&f->step, NULL);
    uv_close((uv_handle_t *)&f->done, NULL);
    uv_close((uv_handle_t *)&f->watchdog, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    fprintf(stderr, "test_admin: no answer within 60 s\n");
    abort();
}

/* ---- bodies without HTTP ---- */

static void test_render(struct fixture *f)
{
    struct gw_buf b;
    gw_buf_init(&b, 100);
    CHECK(gw_admin_render_metrics(&f->ctx, NULL, &b) == GW_ELIMIT);
    gw_buf_cleanup(&b);

    gw_buf_init(&b, GW_ADMIN_METRICS_MAX);
    CHECK(gw_admin_render_metrics(&f->ctx, NULL, &b) == 0);
    CHECK(strncmp(gw_buf_ptr(&b), "# HELP xmppgw_sessions_open ", 28) == 0);
    CHECK(count_lines_starting(gw_buf_ptr(&b), "# TYPE ") == 25);
    CHECK(strstr(gw_buf_ptr(&b), "\n# TYPE xmppgw_event_loop_lag_seconds histogram\n") != NULL);
    CHECK(count_lines_starting(gw_buf_ptr(&b), "xmppgw_event_loop_lag_seconds_bucket{") ==
          GW_LAG_BUCKETS + 1);
    CHECK(strstr(gw_buf_ptr(&b), "\nxmppgw_event_loop_lag_seconds_bucket{le=\"0.001000\"} ") !=
          NULL);
    CHECK(strstr(gw_buf_ptr(&b), "\nxmppgw_sessions_by_state{transport=\"bosh\",state=\"bound\"} "
                                 "0\n") != NULL);
    CHECK(strstr(gw_buf_ptr(&b), "\nxmppgw_conditions_total{transport=\"bosh\",condition=\"item-"
                                 "not-found\"} 0\n") != NULL);
    CHECK(strstr(gw_buf_ptr(&b), "{transport=\"websocket\",condition=\"item-not-found\"}") == NULL);
    CHECK(strstr(gw_buf_ptr(&b), "\nxmppgw_process_resident_memory_bytes 0\n") == NULL);
    CHECK(count_lines_starting(gw_buf_ptr(&b), "xmppgw_publish_total{") == GW_HUB_PUB_COUNT);
    CHECK(strstr(gw_buf_ptr(&b), "\nxmppgw_publish_total{outcome=\"timeout\"} 0\n") != NULL);
    CHECK(count_lines_starting(gw_buf_ptr(&b), "xmppgw_refused_total{") == GW_LIMIT_COUNT);
    CHECK(strstr(gw_buf_ptr(&b), "\nxmppgw_refused_total{limit=\"address_rate\"} 0\n") != NULL);
    gw_buf_cleanup(&b);

    gw_buf_init(&b, GW_ADMIN_STATUS_MAX);
    CHECK(gw_admin_render_status(&f->ctx, &b) == 0);
    json_t *j = json_loads(gw_buf_ptr(&b), 0, NULL);
    CHECK(j != NULL);
    json_decref(j);
    gw_buf_cleanup(&b);

    gw_buf_init(&b, GW_ADMIN_SESSIONS_MAX);
    struct gw_admin_sessions_query q = {GW_ADMIN_SESSIONS_LIMIT_DEFAULT, 0, NULL, NULL};
    CHECK(gw_admin_render_sessions(&f->ctx, &q, &b) == 0);
    j = json_loads(gw_buf_ptr(&b), 0, NULL);
    CHECK(j != NULL);
    CHECK(json_is_false(json_object_get(j, "truncated")));
    json_decref(j);
    check_sessions_body(f, gw_buf_ptr(&b), gw_buf_size(&b));
    CHECK(!f->ws || strstr(gw_buf_ptr(&b), f->ws_hash) != NULL);
    CHECK(!f->bosh || strstr(gw_buf_ptr(&b), f->bosh_hash) != NULL);
    gw_buf_cleanup(&b);

    /* A bound that holds the frame but no entry: still valid JSON, marked truncated. */
    gw_buf_init(&b, 360);
    q.limit = 10;
    CHECK(gw_admin_render_sessions(&f->ctx, &q, &b) == 0);
    j = json_loads(gw_buf_ptr(&b), 0, NULL);
    CHECK(j != NULL);
    CHECK(json_array_size(json_object_get(j, "sessions")) == 0);
    CHECK(json_is_true(json_object_get(j, "truncated")) == (f->ws || f->bosh));
    json_decref(j);
    gw_buf_cleanup(&b);

    /* A body bound too small for even the frame. */
    gw_buf_init(&b, 64);
    CHECK(gw_admin_render_sessions(&f->ctx, &q, &b) == GW_ELIMIT);
    gw_buf_cleanup(&b);
}

/* Starting on a port already taken fails with one clear line. */
static void test_port_taken(struct fixture *f)
{
    struct gw_config cfg2 = f->cfg;
    cfg2.admin_listen.port = f->port;
    struct gw_ctx ctx2 = f->ctx;
    ctx2.cfg = &cfg2;
    char err[256] = "";
    struct gw_admin *a = gw_admin_start(&ctx2, NULL, err, sizeof(err));
    CHECK(a == NULL);
    char want[128];
    snprintf(want, sizeof(want), "admin: cannot listen on 127.0.0.1:%u: Address already in use",
             (unsigned)f->port);
    CHECK_STR(err, want);
    gw_admin_free(a);
}

int main(void)
{
    struct fixture *f = calloc(1, sizeof(*f));
    CHECK(f != NULL);
    if (!f)
        return CHECK_SUMMARY();
    CHECK(uv_loop_init(&f->loop) == 0);
    gw_config_defaults(&f->cfg);
    snprintf(f->cfg.admin_listen.host, sizeof(f->cfg.admin_listen.host), "127.0.0.1");
    f->cfg.admin_listen.port = 0;
    f->cfg.admin_token[0] = '\0';
    snprintf(f->cfg.admin_hosts[0], sizeof(f->cfg.admin_hosts[0]), "%s", ADMIN_HOST);
    f->cfg.n_admin_hosts = 1;
    f->ctx.loop = &f->loop;
    f->ctx.cfg = &f->cfg;
    f->ctx.log.level = GW_LOG_WARN;
    f->ctx.started_ms = uv_now(&f->loop);
    f->ctx.metrics.stanzas_to_upstream = 42;
    f->ctx.metrics.upstream_tls_failures = 5;
    f->ctx.metrics.stream_errors[GW_COND_system_shutdown] = 3;

    f->ctx.sessions = gw_sessions_new(&f->ctx);
    CHECK(f->ctx.sessions != NULL);
    int err = 0;
    if (f->ctx.sessions) {
        struct gw_session_opts ws = {
            .transport = GW_TRANSPORT_WS, .sink = &sink, .peer = "127.0.0.1"};
        struct gw_session_opts bosh = {
            .transport = GW_TRANSPORT_BOSH, .sink = &sink, .peer = "::1"};
        f->ws = gw_session_new(&f->ctx, &ws, &err);
        f->bosh = gw_session_new(&f->ctx, &bosh, &err);
    }
    CHECK(f->ws != NULL && f->bosh != NULL);
    if (f->ws)
        snprintf(f->ws_sid, sizeof(f->ws_sid), "%s", gw_session_id(f->ws));
    if (f->bosh)
        snprintf(f->bosh_sid, sizeof(f->bosh_sid), "%s", gw_session_id(f->bosh));
    sid_hash(f->ws_sid, f->ws_hash);
    sid_hash(f->bosh_sid, f->bosh_hash);

    /* The table keeps the gauge; the client compares against what it holds now. */
    for (int tr = 0; tr < GW_TRANSPORT_COUNT; tr++)
        snprintf(f->want_open[tr], sizeof(f->want_open[tr]),
                 "\nxmppgw_sessions_open{transport=\"%s\"} %" PRIu64 "\n",
                 gw_transport_name((enum gw_transport)tr), f->ctx.metrics.sessions_open[tr]);

    test_render(f);

    char errbuf[256] = "";
    f->admin = gw_admin_start(&f->ctx, NULL, errbuf, sizeof(errbuf));
    CHECK(f->admin != NULL);
    if (!f->admin) {
        fprintf(stderr, "%s\n", errbuf);
        return CHECK_SUMMARY();
    }
    f->port = gw_admin_port(f->admin);
    CHECK(f->port != 0);
    test_port_taken(f);

    uv_async_init(&f->loop, &f->step, on_step);
    uv_async_init(&f->loop, &f->done, on_done);
    f->step.data = f->done.data = f;
    uv_timer_init(&f->loop, &f->watchdog);
    uv_timer_start(&f->watchdog, on_watchdog, 60000, 0);
    CHECK(uv_sem_init(&f->stepped, 0) == 0);

    uv_thread_t client;
    CHECK(uv_thread_create(&client, client_main, f) == 0);
    CHECK(uv_run(&f->loop, UV_RUN_DEFAULT) == 0);
    uv_thread_join(&client);
    CHECK(f->steps == 1);
    CHECK(uv_loop_close(&f->loop) == 0);
    uv_sem_destroy(&f->stepped);
    free(f);
    return CHECK_SUMMARY();
}
