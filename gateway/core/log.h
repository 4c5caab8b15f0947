/* One line per event on stderr: time, level, session id, JID, message. Never log passwords or SASL
 * payloads: callers pass what is safe to show. The logger is part of the gateway context.
 *
 * Every field may carry client bytes (an Origin, a 'to', a route, a JID), so every field is
 * escaped: C0 controls (CR, LF and TAB too), DEL, C1 controls, U+2028/U+2029, the bidirectional
 * embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069) and any byte that is
 * not part of valid UTF-8 become "\xNN" (lowercase hex, one per byte); a backslash becomes "\\".
 * In the sid, JID and addr fields a space is escaped too, so that no field can forge the next one.
 * Printable UTF-8 is kept as it is. In escaped text a backslash is only ever followed by '\' or
 * 'x', so the cut mark GW_LOG_CUT cannot be forged either.
 *
 * Two formats (log.format): "plain", a text line "TIME LEVEL sid=S jid=J addr=A message", and
 * "json", one JSON object per line, {"time","level","sid","jid","addr","msg"} (sid, jid and addr
 * null when absent; "-" in a plain line). addr is the client address of the session the sid names,
 * as the log's peer_of lookup gives it (the address the per-address limits count: behind a
 * trusted proxy, the forwarded one); callers pass only the sid. JSON lines are written by jansson
 * from the same escaped fields: decoding a JSON line gives exactly what the plain line shows. */
#ifndef GW_CORE_LOG_H
#define GW_CORE_LOG_H

#include <stddef.h>

enum gw_log_level { GW_LOG_ERROR, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG };

enum gw_log_format { GW_LOG_PLAIN, GW_LOG_JSON };

struct gw_log {
    enum gw_log_level level;   /* lines above this level are dropped */
    enum gw_log_format format; /* how a line is written */
    /* The client address of a session, for the addr field of a line with a sid: NULL when
     * unknown. Optional (NULL: every addr is "-"); main.c sets it to the session table's. */
    const char *(*peer_of)(const void *ud, const char *sid);
    const void *peer_ud;
};

/* Bounds of a line, in bytes after escaping. A field cut at its bound ends in GW_LOG_CUT; a cut
 * never splits a character or an escape. The whole line stays within PIPE_BUF so that its one
 * write() to a pipe is atomic: the message keeps its bound and the JID field gives way. */
#define GW_LOG_SID_MAX 128   /* the sid field (a BOSH sid attribute is at most 96 bytes) */
#define GW_LOG_JID_MAX 3071  /* the JID field: the longest valid JID */
#define GW_LOG_ADDR_MAX 64   /* the addr field (an IPv6 address with a zone fits) */
#define GW_LOG_MSG_MAX 2048  /* the formatted message */
#define GW_LOG_LINE_MAX 4096 /* the whole line with its '\n' (PIPE_BUF on Linux) */
#define GW_LOG_CUT "\\...[cut]"

/* 0, or GW_EINVAL for a name that is not a level. */
int gw_log_level_parse(const char *name, enum gw_log_level *out);
const char *gw_log_level_name(enum gw_log_level lvl);
/* "plain" or "json": 0 (and *out when out is not NULL), else GW_EINVAL. */
int gw_log_format_parse(const char *name, enum gw_log_format *out);

/* sid and jid may be NULL (printed as "-"). Keeps errno. */
void gw_log(const struct gw_log *log, enum gw_log_level lvl, const char *sid, const char *jid,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Escapes inlen bytes of in (NUL bytes included) as a message is escaped, into out, which is
 * always NUL-terminated when outlen > 0. When the escaped text does not fit in outlen - 1 bytes,
 * out holds the longest run of whole escaped characters that leaves room for GW_LOG_CUT, then
 * GW_LOG_CUT (only whole characters and no mark when outlen - 1 is shorter than the mark).
 * Returns the length written, without the NUL. */
size_t gw_log_escape(char *out, size_t outlen, const char *in, size_t inlen);

#define GW_ERROR(lg, sid, jid, ...) gw_log((lg), GW_LOG_ERROR, (sid), (jid), __VA_ARGS__)
#define GW_WARN(lg, sid, jid, ...) gw_log((lg), GW_LOG_WARN, (sid), (jid), __VA_ARGS__)
#define GW_INFO(lg, sid, jid, ...) gw_log((lg), GW_LOG_INFO, (sid), (jid), __VA_ARGS__)
#define GW_DEBUG(lg, sid, jid, ...)                                                                \
    do {                                                                                           \
        if ((lg)->level >= GW_LOG_DEBUG)                                                           \
            gw_log((lg), GW_LOG_DEBUG, (sid), (jid), __VA_ARGS__);                                 \
    } while (0)

#endif
