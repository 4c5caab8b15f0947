/* Log lines to stderr. Calls only libc. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *const names[] = {"error", "warn", "info", "debug"};

int gw_log_level_parse(const char *name, enum gw_log_level *out)
{
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (enum gw_log_level)i;
            return 0;
        }
    }
    return -1;
}

const char *gw_log_level_name(enum gw_log_level lvl)
{
    return (unsigned)lvl < 4 ? names[lvl] : "?";
}

void gw_log(const struct gw_log *log, enum gw_log_level lvl, const char *sid, const char *jid,
            const char *fmt, ...)
{
    if (log && lvl > log->level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One event, one line: fold any line breaks the message carries. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s sid=%s jid=%s %s\n", ts, (long)(tv.tv_usec / 1000),
            gw_log_level_name(lvl), sid && *sid ? sid : "-", jid && *jid ? jid : "-", msg);
}
