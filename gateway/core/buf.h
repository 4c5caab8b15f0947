/* Bounded dynamic byte buffers (after curl's dynbuf): every buffer has a maximum size given at
 * init, and growing past it fails with GW_ELIMIT instead of eating memory. */
#ifndef GW_CORE_BUF_H
#define GW_CORE_BUF_H

#include <stddef.h>
#include "core/err.h"

struct gw_buf {
    char *data;  /* owned; NUL-terminated whenever len > 0 */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated */
    size_t max;  /* len may never exceed this */
    size_t head; /* bytes consumed from the front (gw_buf_consume), not yet compacted */
};

void gw_buf_init(struct gw_buf *b, size_t max);
void gw_buf_cleanup(struct gw_buf *b);
void gw_buf_reset(struct gw_buf *b); /* empty, keep the allocation */
int gw_buf_append(struct gw_buf *b, const void *data, size_t len) GW_MUST_CHECK;
int gw_buf_append_str(struct gw_buf *b, const char *s) GW_MUST_CHECK;
int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) GW_MUST_CHECK
    __attribute__((format(printf, 2, 3)));
/* Append s with the five XML special characters escaped (valid in text and quoted attributes). */
int gw_buf_append_xml_escaped(struct gw_buf *b, const char *s, size_t len) GW_MUST_CHECK;
/* Drop n bytes from the front. */
void gw_buf_consume(struct gw_buf *b, size_t n);
/* Bytes still unread (after consume). */
static inline const char *gw_buf_ptr(const struct gw_buf *b)
{
    return b->data ? b->data + b->head : "";
}
static inline size_t gw_buf_size(const struct gw_buf *b)
{
    return b->len - b->head;
}

#endif
