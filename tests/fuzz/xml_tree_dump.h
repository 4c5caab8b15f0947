/* Shared by the XML fuzz targets: a parsed tree written out as text, checking on the way that each
 * node's offsets frame an element inside the stanza bytes and that the lookup helpers find it.
 * Any broken promise aborts, which libFuzzer reports as a crash. */
#ifndef GW_TESTS_FUZZ_XML_TREE_DUMP_H
#define GW_TESTS_FUZZ_XML_TREE_DUMP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "xml/xml.h"

#define LOG_MAX ((size_t)64 << 20)

static void put(struct gw_buf *b, const char *s, size_t n)
{
    if (gw_buf_append(b, s, n))
        abort();
}

static void put_str(struct gw_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* A tree as text; [lo, hi) is where the node must lie within bytes[0, len). */
static void put_tree(struct gw_buf *b, const struct gw_xml_node *n, const char *bytes, size_t len,
                     size_t lo, size_t hi)
{
    if (n->start >= n->end || n->start < lo || n->end > hi || n->end > len ||
        bytes[n->start] != '<' || bytes[n->end - 1] != '>' || n->attrs[n->n_attrs].name ||
        strlen(n->text) != n->text_len)
        abort();
    char tmp[64];
    put_str(b, "{");
    put_str(b, n->ns);
    put_str(b, "}");
    put_str(b, n->name);
    for (unsigned i = 0; i < n->n_attrs; i++) {
        put_str(b, " {");
        put_str(b, n->attrs[i].ns);
        put_str(b, "}");
        put_str(b, n->attrs[i].name);
        put_str(b, "=");
        put_str(b, n->attrs[i].value);
        if (gw_xml_attr(n->attrs, n->n_attrs, n->attrs[i].name) == NULL && !*n->attrs[i].ns)
            abort();
    }
    snprintf(tmp, sizeof(tmp), " @%zu-%zu [", n->start, n->end);
    put_str(b, tmp);
    put(b, n->text, n->text_len);
    put_str(b, "]");
    size_t prev_end = n->start + 1;
    for (const struct gw_xml_node *c = n->children; c; c = c->next) {
        if (c->start < prev_end || gw_xml_child(n, c->ns, c->name) == NULL)
            abort();
        prev_end = c->end;
        put_str(b, "(");
        put_tree(b, c, bytes, len, n->start + 1, n->end - 1);
        put_str(b, ")");
    }
}

#endif
