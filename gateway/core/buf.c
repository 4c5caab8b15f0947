/* Bounded dynamic byte buffers. Owns nothing but its own memory; calls only libc. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_buf_init(struct gw_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void gw_buf_cleanup(struct gw_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = b->head = 0;
}

void gw_buf_reset(struct gw_buf *b)
{
    b->len = b->head = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Make room for `need` more bytes plus a NUL; compacts consumed bytes first. */
static int reserve(struct gw_buf *b, size_t need)
{
    if (b->head > 0 && (b->head >= b->len / 2 || b->len + need + 1 > b->cap)) {
        memmove(b->data, b->data + b->head, b->len - b->head);
        b->len -= b->head;
        b->head = 0;
        b->data[b->len] = '\0';
    }
    if (need > b->max || b->len - b->head > b->max - need)
        return GW_ELIMIT;
    if (b->len + need + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + need + 1)
        cap *= 2;
    if (cap > b->max + 1 && b->len + need + 1 <= b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return GW_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int gw_buf_append(struct gw_buf *b, const void *data, size_t len)
{
    int rc = reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int gw_buf_append_str(struct gw_buf *b, const char *s)
{
    return gw_buf_append(b, s, strlen(s));
}

int gw_buf_printf(struct gw_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return GW_EINVAL;
    int rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int gw_buf_append_xml_escaped(struct gw_buf *b, const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&apos;";
            break;
        default:
            continue;
        }
        int rc = gw_buf_append(b, s + start, i - start);
        if (!rc)
            rc = gw_buf_append_str(b, rep);
        if (rc)
            return rc;
        start = i + 1;
    }
    return gw_buf_append(b, s + start, len - start);
}

void gw_buf_consume(struct gw_buf *b, size_t n)
{
    if (n >= b->len - b->head) {
        gw_buf_reset(b);
        return;
    }
    b->head += n;
}
