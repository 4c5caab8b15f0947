/* Log lines to stderr: escaping of client bytes, bounds of each field and of the line, one write()
 * per line. Calls libc, and jansson for JSON lines; a plain line allocates nothing (a few KiB of
 * stack per line), a JSON line a few small objects (a plain line when they cannot be had). */
#include "core/log.h"

#include "core/err.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const names[] = {"error", "warn", "info", "debug"};

/* The escaper reads at most this many bytes past its output bound: a character that starts within
 * the bound is then seen whole, so a bounded read of a longer input cuts exactly as the whole
 * input would (every input byte gives at least one output byte, so the bound is reached first). */
#define READ_AHEAD 4

/* Time, level and " sid=": 35 bytes in any year before 10000. */
#define PREFIX_MAX 64

int gw_log_level_parse(const char *name, enum gw_log_level *out)
{
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum gw_log_level)i;
            return 0;
        }
    }
    return GW_EINVAL;
}

const char *gw_log_level_name(enum gw_log_level lvl)
{
    return (unsigned)lvl < 4 ? names[lvl] : "?";
}

int gw_log_format_parse(const char *name, enum gw_log_format *out)
{
    enum gw_log_format f;
    if (strcmp(name, "plain") == 0)
        f = GW_LOG_PLAIN;
    else if (strcmp(name, "json") == 0)
        f = GW_LOG_JSON;
    else
        return GW_EINVAL;
    if (out)
        *out = f;
    return 0;
}

/* ---- escaping ---- */

/* Length of the well-formed UTF-8 sequence at s (n bytes there), 0 when there is none: overlong
 * forms, surrogates and code points past U+10FFFF are not well-formed. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t v, min;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        v = s[0] & 0x1fu;
        min = 0x80;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        v = s[0] & 0x0fu;
        min = 0x800;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        v = s[0] & 0x07u;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

/* Characters that are valid but move the cursor, end a line or reorder what a terminal shows. */
static bool unsafe_char(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

static size_t put_hex(char *u, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        u[4 * i] = '\\';
        u[4 * i + 1] = 'x';
        u[4 * i + 2] = hex[s[i] >> 4];
        u[4 * i + 3] = hex[s[i] & 0xf];
    }
    return 4 * n;
}

/* The escaped form of the character (or lone byte) at s into u (at least 16 bytes); *used gets
 * the number of input bytes it stands for. Returns its length. */
static size_t escape_one(const unsigned char *s, size_t n, bool space, char *u, size_t *used)
{
    *used = 1;
    if (s[0] == '\\') {
        u[0] = u[1] = '\\';
        return 2;
    }
    if (s[0] < 0x20 || s[0] == 0x7f || (space && s[0] == ' '))
        return put_hex(u, s, 1);
    if (s[0] < 0x80) {
        u[0] = (char)s[0];
        return 1;
    }
    uint32_t cp;
    size_t len = utf8_seq(s, n, &cp);
    if (len == 0)
        return put_hex(u, s, 1); /* one byte: the next one may start a valid character */
    *used = len;
    if (unsafe_char(cp))
        return put_hex(u, s, len);
    memcpy(u, s, len);
    return len;
}

static size_t escape_into(char *out, size_t outlen, const char *in, size_t inlen, bool space)
{
    if (outlen == 0)
        return 0;
    const size_t cap = outlen - 1, mark = sizeof(GW_LOG_CUT) - 1;
    size_t o = 0, fit = 0; /* fit: the last character end that leaves room for the mark */
    for (size_t i = 0; i < inlen;) {
        char u[16];
        size_t used, n = escape_one((const unsigned char *)in + i, inlen - i, space, u, &used);
        if (n > cap - o) {
            if (mark <= cap) {
                memcpy(out + fit, GW_LOG_CUT, mark);
                o = fit + mark;
            }
            break;
        }
        memcpy(out + o, u, n);
        o += n;
        i += used;
        if (o + mark <= cap)
            fit = o;
    }
    out[o] = '\0';
    return o;
}

size_t gw_log_escape(char *out, size_t outlen, const char *in, size_t inlen)
{
    return escape_into(out, outlen, in, inlen, false);
}

/* ---- the line ---- */

/* A sid or JID field of at most max bytes at out; "-" when absent. */
static size_t put_field(char *out, size_t max, const char *s)
{
    if (!s || !*s)
        s = "-";
    return escape_into(out, max + 1, s, strnlen(s, max + READ_AHEAD), true);
}

/* The time as "2024-05-01T12:00:00.123Z" into ts (at least 32 bytes). */
static void put_time(char *ts, size_t tslen)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    char sec[24] = "";
    if (gmtime_r(&tv.tv_sec, &tm))
        strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts, tslen, "%s.%03ldZ", sec, (long)(tv.tv_usec / 1000));
}

static size_t put_prefix(char *out, size_t outlen, enum gw_log_level lvl)
{
    char ts[32];
    put_time(ts, sizeof(ts));
    int n = snprintf(out, outlen, "%s %s sid=", ts, gw_log_level_name(lvl));
    return n < 0 ? 0 : (size_t)n < outlen ? (size_t)n : outlen - 1;
}

/* One write() puts the line out whole; only a signal or a short write (not a pipe: there a line
 * within PIPE_BUF goes in one piece) makes another. A line that cannot be written is dropped. */
static void write_line(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* The plain line: prefix, sid, JID (cut to what room is left), addr, message. */
static size_t plain_line(char *line, enum gw_log_level lvl, const char *sid, const char *jid,
                         const char *addr, const char *msg, size_t msglen)
{
    char addrf[GW_LOG_ADDR_MAX + 1];
    size_t alen = put_field(addrf, GW_LOG_ADDR_MAX, addr);
    size_t o = put_prefix(line, PREFIX_MAX, lvl);
    o += put_field(line + o, GW_LOG_SID_MAX, sid);
    memcpy(line + o, " jid=", 5);
    o += 5;
    size_t room = GW_LOG_LINE_MAX - o - 6 - alen - 1 - msglen - 1; /* " addr=" A ' ' message '\n' */
    o += put_field(line + o, room < GW_LOG_JID_MAX ? room : GW_LOG_JID_MAX, jid);
    memcpy(line + o, " addr=", 6);
    o += 6;
    memcpy(line + o, addrf, alen);
    o += alen;
    line[o++] = ' ';
    memcpy(line + o, msg, msglen);
    o += msglen;
    line[o++] = '\n';
    return o;
}

/* Bytes of s once JSON-quoted: escaped text holds no control character, so only '"' and '\\'
 * grow (jansson keeps UTF-8 as it is). */
static size_t json_len(const char *s)
{
    size_t n = 2;
    for (; *s; s++)
        n += (*s == '"' || *s == '\\') ? 2 : 1;
    return n;
}

static json_t *json_field(const char *escaped, bool absent)
{
    return absent ? json_null() : json_string_nocheck(escaped);
}

/* The JSON line, or 0 when jansson had no memory. msg is escaped already; the message keeps
 * GW_LOG_MSG_MAX / 2 bytes at most so that its quoting cannot crowd out the rest, and the JID
 * gives way as in a plain line. */
static size_t json_line(char *line, enum gw_log_level lvl, const char *sid, const char *jid,
                        const char *addr, const char *msg)
{
    char ts[32], sidf[GW_LOG_SID_MAX + 1], jidf[GW_LOG_JID_MAX + 1], addrf[GW_LOG_ADDR_MAX + 1];
    put_time(ts, sizeof(ts));
    put_field(sidf, GW_LOG_SID_MAX, sid);
    put_field(addrf, GW_LOG_ADDR_MAX, addr);
    /* {"time":"","level":"","sid":,"jid":,"addr":,"msg":} and the newline: 53 bytes, 72 kept. */
    size_t fixed = 72 + strlen(ts) + json_len(sidf) + json_len(addrf) + json_len(msg);
    size_t room = GW_LOG_LINE_MAX > fixed ? GW_LOG_LINE_MAX - fixed : 0;
    put_field(jidf, room < GW_LOG_JID_MAX ? room : GW_LOG_JID_MAX, jid);
    if (json_len(jidf) > room)
        put_field(jidf, room / 2, jid);
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "time", json_string_nocheck(ts)) != 0 ||
        json_object_set_new(o, "level", json_string_nocheck(gw_log_level_name(lvl))) != 0 ||
        json_object_set_new(o, "sid", json_field(sidf, !sid || !*sid)) != 0 ||
        json_object_set_new(o, "jid", json_field(jidf, !jid || !*jid)) != 0 ||
        json_object_set_new(o, "addr", json_field(addrf, !addr || !*addr)) != 0 ||
        json_object_set_new(o, "msg", json_string_nocheck(msg)) != 0) {
        json_decref(o);
        return 0;
    }
    size_t n = json_dumpb(o, line, GW_LOG_LINE_MAX - 1, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (n == 0 || n > GW_LOG_LINE_MAX - 1)
        return 0;
    line[n++] = '\n';
    return n;
}

void gw_log(const struct gw_log *log, enum gw_log_level lvl, const char *sid, const char *jid,
            const char *fmt, ...)
{
    if (log && lvl > log->level)
        return;
    int saved_errno = errno;
    bool json = log && log->format == GW_LOG_JSON;
    char raw[GW_LOG_MSG_MAX + READ_AHEAD + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* The length vsnprintf gives, not strlen: a "%c" of 0 is escaped, not an end. */
    size_t rawlen = n < 0 ? 0 : (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1;
    char msg[GW_LOG_MSG_MAX + 1];
    size_t msglen = gw_log_escape(msg, json ? GW_LOG_MSG_MAX / 2 + 1 : sizeof(msg), raw, rawlen);

    /* The lookup is only asked about a line that goes out, and only with a sid. */
    const char *addr = log && log->peer_of && sid && *sid ? log->peer_of(log->peer_ud, sid) : NULL;
    char line[GW_LOG_LINE_MAX];
    size_t o = json ? json_line(line, lvl, sid, jid, addr, msg) : 0;
    if (o == 0)
        o = plain_line(line, lvl, sid, jid, addr, msg, msglen);
    write_line(line, o);
    errno = saved_errno;
}
