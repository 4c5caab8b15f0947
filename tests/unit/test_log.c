/* Tests for gateway/core/log.c: escaping of controls, C1, line separators and invalid UTF-8, the
 * backslash, valid UTF-8 kept, cuts on character boundaries, and whole lines taken from stderr,
 * plain and JSON. */
#include "core/log.h"
#include "check.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

static char esc[8192];

/* The escaped form of n bytes, in a buffer large enough for no cut. */
static const char *escn(const char *in, size_t n)
{
    gw_log_escape(esc, sizeof(esc), in, n);
    return esc;
}

static const char *escs(const char *in)
{
    return escn(in, strlen(in));
}

static void test_controls(void)
{
    char want[8];
    for (unsigned c = 0; c < 0x20; c++) {
        char in = (char)c;
        snprintf(want, sizeof(want), "\\x%02x", c);
        CHECK_STR(escn(&in, 1), want);
    }
    CHECK_STR(escs("\x7f"), "\\x7f");
    CHECK_STR(escs("a\r\nb\tc"), "a\\x0d\\x0ab\\x09c");
    CHECK_STR(escn("a\0b", 3), "a\\x00b");
    /* Printable ASCII, space included, stays; only the backslash changes. */
    char ascii[0x60], *p = ascii;
    for (unsigned c = 0x20; c < 0x7f; c++)
        if (c != '\\')
            *p++ = (char)c;
    *p = '\0';
    CHECK_STR(escs(ascii), ascii);
    CHECK_STR(escs("\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
    CHECK_STR(escs("\x1b]0;title\x07"), "\\x1b]0;title\\x07");
}

static void test_unicode(void)
{
    /* C1 controls, each byte of the encoding. */
    CHECK_STR(escs("\xc2\x80"), "\\xc2\\x80");
    CHECK_STR(escs("a\xc2\x85z"), "a\\xc2\\x85z"); /* NEL */
    CHECK_STR(escs("\xc2\x9b"
                   "31m"),
              "\\xc2\\x9b"
              "31m"); /* CSI */
    CHECK_STR(escs("\xc2\x9f"), "\\xc2\\x9f");
    CHECK_STR(escs("\xc2\xa0\xc2\xa9"), "\xc2\xa0\xc2\xa9"); /* NBSP and the copyright sign stay */
    /* Line and paragraph separators, bidirectional controls; their neighbours stay. */
    CHECK_STR(escs("a\xe2\x80\xa8z"), "a\\xe2\\x80\\xa8z");
    CHECK_STR(escs("\xe2\x80\xa9"), "\\xe2\\x80\\xa9");
    CHECK_STR(escs("\xe2\x80\xae"), "\\xe2\\x80\\xae"); /* RIGHT-TO-LEFT OVERRIDE */
    CHECK_STR(escs("\xe2\x81\xa6"), "\\xe2\\x81\\xa6"); /* LEFT-TO-RIGHT ISOLATE */
    CHECK_STR(escs("\xe2\x80\xa7\xe2\x80\xaf"), "\xe2\x80\xa7\xe2\x80\xaf");
    /* Valid UTF-8 is kept. */
    CHECK_STR(escs("Grüße"), "Grüße");
    CHECK_STR(escs("日本"), "日本");
    CHECK_STR(escs("\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"), "\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
    CHECK_STR(escs("\xdf\xbf\xe0\xa0\x80"), "\xdf\xbf\xe0\xa0\x80"); /* edges of each length */
}

static void test_invalid_utf8(void)
{
    CHECK_STR(escs("a\x80z"), "a\\x80z"); /* lone continuation byte */
    CHECK_STR(escs("\xbf\xbf"), "\\xbf\\xbf");
    CHECK_STR(escs("ab\xe6\x97"), "ab\\xe6\\x97"); /* truncated at the end */
    CHECK_STR(escs("\xe6\x97z"), "\\xe6\\x97z");   /* truncated in the middle */
    CHECK_STR(escs("\xf0\x9f\x98"), "\\xf0\\x9f\\x98");
    CHECK_STR(escs("\xc0\x80"), "\\xc0\\x80");                   /* overlong NUL */
    CHECK_STR(escs("\xc1\xbf"), "\\xc1\\xbf");                   /* overlong DEL */
    CHECK_STR(escs("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");          /* overlong '/' */
    CHECK_STR(escs("\xf0\x80\x80\xaf"), "\\xf0\\x80\\x80\\xaf"); /* overlong '/' */
    CHECK_STR(escs("\xed\xa0\x80"), "\\xed\\xa0\\x80");          /* high surrogate */
    CHECK_STR(escs("\xed\xbf\xbf"), "\\xed\\xbf\\xbf");          /* low surrogate */
    CHECK_STR(escs("\xed\x9f\xbf"), "\xed\x9f\xbf");             /* U+D7FF is fine */
    CHECK_STR(escs("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
    CHECK_STR(escs("\xf5\xfe\xff"), "\\xf5\\xfe\\xff");
    /* A bad byte costs only itself: the character after it is seen. */
    CHECK_STR(escs("\xe6\xe6\x97\xa5"), "\\xe6\xe6\x97\xa5");
}

static void test_backslash(void)
{
    CHECK_STR(escs("a\\b"), "a\\\\b");
    CHECK_STR(escs("\\x1b"), "\\\\x1b"); /* an escape cannot be forged */
    CHECK_STR(escs(GW_LOG_CUT), "\\\\...[cut]");
    CHECK_STR(escs("\\\\"), "\\\\\\\\");
}

/* Every bound from 0 to past the whole: the longest run of whole pieces that leaves room for the
 * mark, then the mark; or everything when it fits. */
static void test_cut_boundaries(void)
{
    static const char *const pieces[][2] = {
        {"a", "a"},
        {"日", "日"},
        {"\x1b", "\\x1b"},
        {"\\", "\\\\"},
        {"ü", "ü"},
        {"\xe2\x80\xa8", "\\xe2\\x80\\xa8"},
        {"\x80", "\\x80"},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
        {"\xc2\x85", "\\xc2\\x85"},
    };
    const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
    char in[512] = "", full[1024] = "";
    size_t ends[64], nends = 0;
    ends[nends++] = 0;
    for (int round = 0; round < 3; round++) {
        for (size_t k = 0; k < npieces; k++) {
            strcat(in, pieces[k][0]);
            strcat(full, pieces[k][1]);
            ends[nends++] = strlen(full);
        }
    }
    CHECK_STR(escs(in), full);
    const size_t fl = strlen(full), mark = strlen(GW_LOG_CUT);
    bool all_good = true;
    for (size_t outlen = 0; outlen <= fl + 2; outlen++) {
        char out[1024];
        memset(out, '#', sizeof(out));
        size_t r = gw_log_escape(out, outlen, in, strlen(in));
        bool ok;
        if (outlen == 0) {
            ok = r == 0 && out[0] == '#';
        } else if (fl <= outlen - 1) {
            ok = r == fl && strcmp(out, full) == 0;
        } else {
            size_t keep = 0, room = outlen - 1 >= mark ? outlen - 1 - mark : outlen - 1;
            for (size_t e = 0; e < nends; e++)
                if (ends[e] <= room)
                    keep = ends[e];
            bool marked = outlen - 1 >= mark;
            ok = r == keep + (marked ? mark : 0) && strlen(out) == r &&
                 memcmp(out, full, keep) == 0 && (!marked || strcmp(out + keep, GW_LOG_CUT) == 0);
        }
        if (!ok) {
            fprintf(stderr, "cut at outlen %zu: \"%s\"\n", outlen, outlen ? out : "");
            all_good = false;
        }
    }
    CHECK(all_good);
}

static void test_cut_long(void)
{
    /* 1000 three-byte characters into 100 bytes: whole characters, then the mark. */
    static char in[8192], out[101];
    in[0] = '\0';
    for (int i = 0; i < 1000; i++)
        strcat(in, "日");
    size_t r = gw_log_escape(out, sizeof(out), in, strlen(in));
    size_t keep = r - strlen(GW_LOG_CUT);
    CHECK(r <= 100);
    CHECK(keep % 3 == 0 && keep > 100 - strlen(GW_LOG_CUT) - 3);
    CHECK(memcmp(out, in, keep) == 0);
    CHECK_STR(out + keep, GW_LOG_CUT);
    /* Controls: four bytes each, never split. */
    memset(in, '\x01', 1000);
    r = gw_log_escape(out, sizeof(out), in, 1000);
    keep = r - strlen(GW_LOG_CUT);
    CHECK(r <= 100 && keep % 4 == 0 && keep > 100 - strlen(GW_LOG_CUT) - 4);
    CHECK(strncmp(out, "\\x01\\x01", 8) == 0);
    CHECK_STR(out + keep, GW_LOG_CUT);
    /* A tiny buffer holds whole characters without a mark. */
    char small[4];
    CHECK(gw_log_escape(small, sizeof(small), "\x01\x01", 2) == 0 && small[0] == '\0');
    CHECK(gw_log_escape(small, sizeof(small), "abcd", 4) == 3);
    CHECK_STR(small, "abc");
    CHECK(gw_log_escape(small, sizeof(small), "abc", 3) == 3);
    CHECK_STR(small, "abc");
}

/* ---- whole lines from stderr ---- */

static char line[2 * GW_LOG_LINE_MAX];
static size_t line_len;

static FILE *capture;
static int saved_fd = -1;

static void capture_start(void)
{
    fflush(stderr);
    capture = tmpfile();
    saved_fd = dup(STDERR_FILENO);
    if (!capture || saved_fd < 0 || dup2(fileno(capture), STDERR_FILENO) < 0)
        abort();
}

/* Restores stderr and leaves what was written in line. */
static void capture_end(void)
{
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    ssize_t n = pread(fileno(capture), line, sizeof(line) - 1, 0);
    line_len = n > 0 ? (size_t)n : 0;
    line[line_len] = '\0';
    fclose(capture);
}

/* One line ending in exactly one '\n', no other control byte, starting with a UTC timestamp. */
static bool one_clean_line(void)
{
    if (line_len == 0 || line_len > GW_LOG_LINE_MAX || line[line_len - 1] != '\n' ||
        memchr(line, '\n', line_len) != line + line_len - 1)
        return false;
    for (size_t i = 0; i + 1 < line_len; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            return false;
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (size_t i = 0; shape[i]; i++)
        if (shape[i] == 'd' ? line[i] < '0' || line[i] > '9' : line[i] != shape[i])
            return false;
    return true;
}

/* The line without its timestamp and '\n'. */
static const char *after_time(void)
{
    static char rest[sizeof(line)];
    size_t skip = strlen("2024-01-01T00:00:00.000Z ");
    if (line_len < skip + 1)
        return "";
    memcpy(rest, line + skip, line_len - skip - 1);
    rest[line_len - skip - 1] = '\0';
    return rest;
}

static void test_line_fields(void)
{
    struct gw_log lg = {.level = GW_LOG_INFO};
    capture_start();
    GW_WARN(&lg, "s1 jid=x\x1b", "a@b\n\xe2\x80\xa8", "origin '%s' refused%c",
            "http://e\r\nvil\x1b[2J", 0);
    capture_end();
    CHECK(one_clean_line());
    CHECK_STR(after_time(), "warn sid=s1\\x20jid=x\\x1b jid=a@b\\x0a\\xe2\\x80\\xa8 addr=- origin "
                            "'http://e\\x0d\\x0avil\\x1b[2J' refused\\x00");

    capture_start();
    GW_INFO(&lg, NULL, "", "Grüße aus 日本 \\o/");
    capture_end();
    CHECK(one_clean_line());
    CHECK_STR(after_time(), "info sid=- jid=- addr=- Grüße aus 日本 \\\\o/");

    /* Dropped by level: nothing written, and errno kept either way. */
    capture_start();
    GW_DEBUG(&lg, "s", "j", "hidden");
    errno = EAGAIN;
    GW_ERROR(&lg, "s", "j", "shown");
    int e = errno;
    capture_end();
    CHECK(e == EAGAIN);
    CHECK(one_clean_line());
    CHECK_STR(after_time(), "error sid=s jid=j addr=- shown");
}

static void test_line_bounds(void)
{
    static char big[10000], jid[5000], sid[300];
    memset(big, 'm', sizeof(big) - 1);
    memset(jid, 'j', sizeof(jid) - 1);
    memset(sid, 's', sizeof(sid) - 1);

    /* A long message alone: cut at its bound. */
    capture_start();
    gw_log(NULL, GW_LOG_INFO, "s", "j", "%s", big);
    capture_end();
    CHECK(one_clean_line());
    const char *msg = strstr(line, " jid=j addr=- ");
    CHECK(msg && strlen(msg + 14) == GW_LOG_MSG_MAX + 1);
    CHECK(line_len > strlen(GW_LOG_CUT) + 1 &&
          memcmp(line + line_len - 1 - strlen(GW_LOG_CUT), GW_LOG_CUT, strlen(GW_LOG_CUT)) == 0);

    /* A long JID and a short message: the JID field at its bound. */
    capture_start();
    gw_log(NULL, GW_LOG_INFO, "s", jid, "short");
    capture_end();
    CHECK(one_clean_line());
    const char *j = strstr(line, " jid=");
    const char *end = j ? strstr(j, GW_LOG_CUT " addr=- short\n") : NULL;
    CHECK(end && (size_t)(end - (j + 5)) + strlen(GW_LOG_CUT) == GW_LOG_JID_MAX);

    /* Everything long: the line within its bound, the message whole to its own bound. */
    capture_start();
    gw_log(NULL, GW_LOG_DEBUG, sid, jid, "%s", big);
    capture_end();
    CHECK(one_clean_line());
    CHECK(line_len <= GW_LOG_LINE_MAX);
    const char *s = strstr(line, " sid=");
    CHECK(s && strncmp(s + 5 + GW_LOG_SID_MAX - strlen(GW_LOG_CUT),
                       GW_LOG_CUT " jid=", strlen(GW_LOG_CUT) + 5) == 0);
    msg = strstr(line, GW_LOG_CUT " addr=- m");
    CHECK(msg && strlen(msg + strlen(GW_LOG_CUT) + 8) == GW_LOG_MSG_MAX + 1);

    /* A message of controls: cut on an escape boundary. */
    memset(big, '\x1b', sizeof(big) - 1);
    capture_start();
    gw_log(NULL, GW_LOG_INFO, "s", "j", "%s", big);
    capture_end();
    CHECK(one_clean_line());
    msg = strstr(line, " jid=j addr=- ");
    size_t keep = msg ? strlen(msg + 14) - 1 - strlen(GW_LOG_CUT) : 1;
    CHECK(keep % 4 == 0 && keep <= GW_LOG_MSG_MAX && msg && strncmp(msg + 14, "\\x1b", 4) == 0);
}

/* The captured line as one JSON object with exactly the six fields, or NULL. */
static json_t *json_of_line(void)
{
    if (line_len == 0 || line[line_len - 1] != '\n' ||
        memchr(line, '\n', line_len) != line + line_len - 1 || line_len > GW_LOG_LINE_MAX)
        return NULL;
    json_t *o = json_loadb(line, line_len - 1, 0, NULL);
    if (!o || !json_is_object(o) || json_object_size(o) != 6 || !json_object_get(o, "addr") ||
        !json_is_string(json_object_get(o, "time")) ||
        !json_is_string(json_object_get(o, "level")) || !json_object_get(o, "sid") ||
        !json_object_get(o, "jid") || !json_is_string(json_object_get(o, "msg"))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "(not a string)";
}

static void test_json_lines(void)
{
    enum gw_log_format f = GW_LOG_PLAIN;
    CHECK(gw_log_format_parse("json", &f) == 0 && f == GW_LOG_JSON);
    CHECK(gw_log_format_parse("plain", &f) == 0 && f == GW_LOG_PLAIN);
    CHECK(gw_log_format_parse("JSON", &f) != 0 && gw_log_format_parse("", NULL) != 0);

    struct gw_log lg = {.level = GW_LOG_INFO, .format = GW_LOG_JSON};
    capture_start();
    GW_WARN(&lg, "s1 x", "a@b\n\xe2\x80\xa8\"", "origin '%s' \"refused\"%c \\o/",
            "http://e\r\nvil\xff", 0);
    capture_end();
    json_t *o = json_of_line();
    CHECK(o != NULL);
    if (o) {
        /* The same escaped text as a plain line shows, quoted by JSON. */
        CHECK_STR(jstr(o, "level"), "warn");
        CHECK_STR(jstr(o, "sid"), "s1\\x20x");
        CHECK_STR(jstr(o, "jid"), "a@b\\x0a\\xe2\\x80\\xa8\"");
        CHECK_STR(jstr(o, "msg"), "origin 'http://e\\x0d\\x0avil\\xff' \"refused\"\\x00 \\\\o/");
        const char *t = jstr(o, "time");
        CHECK(strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z');
        json_decref(o);
    }
    capture_start();
    GW_INFO(&lg, NULL, "", "no session");
    capture_end();
    o = json_of_line();
    CHECK(o && json_is_null(json_object_get(o, "sid")) && json_is_null(json_object_get(o, "jid")) &&
          json_is_null(json_object_get(o, "addr")));
    json_decref(o);

    /* Everything long and full of what JSON quotes: one line within its bound, still JSON. */
    static char big[10000], jid[5000], sid[300];
    memset(big, '"', sizeof(big) - 1);
    memset(jid, '\\', sizeof(jid) - 1);
    memset(sid, '"', sizeof(sid) - 1);
    capture_start();
    gw_log(&lg, GW_LOG_ERROR, sid, jid, "%s", big);
    capture_end();
    o = json_of_line();
    CHECK(o != NULL);
    if (o) {
        const char *m = jstr(o, "msg");
        size_t ml = strlen(m), cl = strlen(GW_LOG_CUT);
        CHECK(ml <= GW_LOG_MSG_MAX / 2 && ml > cl && strcmp(m + ml - cl, GW_LOG_CUT) == 0);
        CHECK(strlen(jstr(o, "jid")) > 100);
        json_decref(o);
    }
}

/* The addr field: what the lookup says for the line's sid, escaped like the sid; "-" (null in
 * JSON) when there is no sid, no lookup, or no answer. The lookup is asked only with a sid. */
static unsigned lookups;
static const char *peer_of(const void *ud, const char *sid)
{
    lookups++;
    if (strcmp(sid, "s1") == 0)
        return "192.0.2.7";
    if (strcmp(sid, "evil") == 0)
        return (const char *)ud;
    return NULL;
}

static void test_addr(void)
{
    static char jid[5000];
    memset(jid, 'j', sizeof(jid) - 1);
    const char *evil = "1.2.3.4 jid=forged\n";
    struct gw_log lg = {.level = GW_LOG_INFO, .peer_of = peer_of, .peer_ud = evil};
    capture_start();
    GW_INFO(&lg, "s1", "a@b/r", "hello");
    capture_end();
    CHECK(one_clean_line());
    CHECK_STR(after_time(), "info sid=s1 jid=a@b/r addr=192.0.2.7 hello");

    lookups = 0;
    capture_start();
    GW_INFO(&lg, NULL, NULL, "no sid");
    GW_INFO(&lg, "", NULL, "empty sid");
    GW_DEBUG(&lg, "s1", NULL, "dropped");
    capture_end();
    CHECK(lookups == 0);

    capture_start();
    GW_INFO(&lg, "s2", NULL, "unknown");
    capture_end();
    CHECK(lookups == 1);
    CHECK_STR(after_time(), "info sid=s2 jid=- addr=- unknown");

    capture_start();
    GW_WARN(&lg, "evil", NULL, "x");
    capture_end();
    CHECK(one_clean_line());
    CHECK_STR(after_time(), "warn sid=evil jid=- addr=1.2.3.4\\x20jid=forged\\x0a x");

    /* A long JID gives way to the address, the line stays within its bound. */
    capture_start();
    GW_INFO(&lg, "s1", jid, "short");
    capture_end();
    CHECK(one_clean_line() && line_len <= GW_LOG_LINE_MAX);
    CHECK(strstr(line, GW_LOG_CUT " addr=192.0.2.7 short\n") != NULL);

    lg.format = GW_LOG_JSON;
    capture_start();
    GW_INFO(&lg, "s1", "a@b/r", "hello");
    capture_end();
    json_t *o = json_of_line();
    CHECK(o != NULL);
    if (o) {
        CHECK_STR(jstr(o, "addr"), "192.0.2.7");
        CHECK_STR(jstr(o, "sid"), "s1");
        json_decref(o);
    }
    capture_start();
    GW_INFO(&lg, "s2", NULL, "unknown");
    capture_end();
    o = json_of_line();
    CHECK(o && json_is_null(json_object_get(o, "addr")));
    json_decref(o);
}

int main(void)
{
    test_controls();
    test_unicode();
    test_invalid_utf8();
    test_backslash();
    test_cut_boundaries();
    test_cut_long();
    test_line_fields();
    test_line_bounds();
    test_json_lines();
    test_addr();
    return CHECK_SUMMARY();
}
