/* One line per event on stderr: time, level, session id, JID, message. Never log passwords or SASL
 * payloads: callers pass what is safe to show. The logger is part of the gateway context. */
#ifndef GW_CORE_LOG_H
#define GW_CORE_LOG_H

enum gw_log_level { GW_LOG_ERROR, GW_LOG_WARN, GW_LOG_INFO, GW_LOG_DEBUG };

struct gw_log {
    enum gw_log_level level; /* lines above this level are dropped */
};

int gw_log_level_parse(const char *name, enum gw_log_level *out);
const char *gw_log_level_name(enum gw_log_level lvl);

/* sid and jid may be NULL (printed as "-"). */
void gw_log(const struct gw_log *log, enum gw_log_level lvl, const char *sid, const char *jid,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define GW_ERROR(lg, sid, jid, ...) gw_log((lg), GW_LOG_ERROR, (sid), (jid), __VA_ARGS__)
#define GW_WARN(lg, sid, jid, ...) gw_log((lg), GW_LOG_WARN, (sid), (jid), __VA_ARGS__)
#define GW_INFO(lg, sid, jid, ...) gw_log((lg), GW_LOG_INFO, (sid), (jid), __VA_ARGS__)
#define GW_DEBUG(lg, sid, jid, ...)                                                                \
    do {                                                                                           \
        if ((lg)->level >= GW_LOG_DEBUG)                                                           \
            gw_log((lg), GW_LOG_DEBUG, (sid), (jid), __VA_ARGS__);                                 \
    } while (0)

#endif
