/* libFuzzer target for gateway/xml/xml.c in document mode (BOSH bodies, RFC 7395 frames): the
 * input is parsed with the root as a container and with the root as the stanza, with trees for
 * every stanza. Tree offsets must frame elements of the delivered bytes, and a container's stanzas
 * must be what stream mode delivers from the same bytes. Calls: xml, core/buf. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "xml/xml.h"
#include "xml_tree_dump.h"


static const struct gw_xml_limits limits = {.max_stanza = 1024, .max_depth = 8, .max_attrs = 8};

static bool want_tree(void *ud, const char *ns, const char *name)
{
    return true;
}

static void on_open(void *ud, const char *ns, const char *name, const struct gw_xml_attr *attrs,
                    unsigned n)
{
    struct gw_buf *log = *(struct gw_buf **)ud;
    put_str(log, "OPEN {");
    put_str(log, ns);
    put_str(log, "}");
    put_str(log, name);
    if (attrs[n].name)
        abort();
    put_str(log, "\n");
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_buf *log = *(struct gw_buf **)ud;
    if (!st->tree || st->tree->start != 0 || st->tree->end != st->len ||
        strcmp(st->tree->ns, st->ns) || strcmp(st->tree->name, st->name))
        abort();
    put_str(log, "STANZA ");
    put(log, st->bytes, st->len);
    put_str(log, " TREE ");
    put_tree(log, st->tree, st->bytes, st->len, 0, st->len);
    put_str(log, "\n");
}

static void on_close(void *ud)
{
    put_str(*(struct gw_buf **)ud, "CLOSE\n");
}

static const struct gw_xml_callbacks cbs = {on_open, want_tree, on_stanza, on_close};

/* The callbacks write to whichever log *sink points at, so that one parser can fill two logs. */
static int parse(const struct gw_xml_opts *o, struct gw_buf *log, const char *s, size_t n)
{
    struct gw_buf *sink = log;
    struct gw_xml_parser *p = gw_xml_new(o, &cbs, &sink);
    if (!p)
        abort();
    int rc =
        o->mode == GW_XML_DOCUMENT ? gw_xml_parse_document(p, s, n) : gw_xml_feed(p, s, n, NULL);
    if (rc && (!*gw_xml_error_condition(p) || !*gw_xml_error_text(p)))
        abort();
    if (o->mode == GW_XML_DOCUMENT) {
        /* The same document again on the same parser gives the same result. */
        struct gw_buf again;
        gw_buf_init(&again, LOG_MAX);
        sink = &again;
        int rc2 = gw_xml_parse_document(p, s, n);
        if (rc2 != rc || gw_buf_size(&again) != gw_buf_size(log) ||
            memcmp(gw_buf_ptr(&again), gw_buf_ptr(log), gw_buf_size(log)) != 0)
            abort();
        gw_buf_cleanup(&again);
    }
    gw_xml_free(p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    for (int root_is_stanza = 0; root_is_stanza < 2; root_is_stanza++) {
        struct gw_xml_opts o = {.mode = GW_XML_DOCUMENT,
                                .limits = limits,
                                .inject_context = !root_is_stanza,
                                .root_is_stanza = root_is_stanza};
        struct gw_buf doc, stream;
        gw_buf_init(&doc, LOG_MAX);
        gw_buf_init(&stream, LOG_MAX);
        int rc_doc = parse(&o, &doc, s, size);
        if (root_is_stanza && rc_doc == 0 && gw_buf_size(&doc) == 0)
            abort(); /* a well-formed frame is one stanza */
        if (!root_is_stanza) {
            /* Stream mode sees the same events, short of what only the document's end decides. */
            o.mode = GW_XML_STREAM;
            o.root_is_stanza = false;
            int rc_stream = parse(&o, &stream, s, size);
            size_t a = gw_buf_size(&doc), b = gw_buf_size(&stream);
            size_t n = a < b ? a : b;
            if ((rc_doc == 0 && rc_stream == 0 && a != b) ||
                (n && memcmp(gw_buf_ptr(&doc), gw_buf_ptr(&stream), n) != 0))
                abort();
        }
        gw_buf_cleanup(&doc);
        gw_buf_cleanup(&stream);
    }
    return 0;
}
