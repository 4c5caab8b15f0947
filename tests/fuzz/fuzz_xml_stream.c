/* libFuzzer target for gateway/xml/xml.c in stream mode. The first four input bytes choose where
 * the rest is cut into chunks; every way of feeding must deliver the same stanzas, byte for byte
 * and tree for tree, as feeding it in one piece. Each delivered stanza must also stand alone:
 * parsed as a document of its own it gives the same tree. A parser that releases expat between
 * stanzas (release_idle, as upstream streams run) must deliver what one that keeps it does.
 * Calls: xml, core/buf. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "xml/xml.h"
#include "xml_tree_dump.h"

#define BYTEWISE_MAX 1024 /* longer inputs go in small chunks of a size the input chooses */

static const struct gw_xml_limits limits = {.max_stanza = 1024, .max_depth = 8, .max_attrs = 8};

struct run {
    struct gw_buf log;
    struct gw_buf tree;      /* scratch for one stanza's tree */
    struct gw_xml_parser *p; /* the parser feeding this run */
    bool pause;              /* pause after the first stanza */
    unsigned stanzas;        /* delivered so far */
    int rc;                  /* how the feeding ended */
    char cond[32];           /* and the error condition */
};

static struct gw_xml_parser *alone; /* re-parses each stanza as a document */
static struct gw_buf alone_tree;
static int alone_done;

static bool want_tree(void *ud, const char *ns, const char *name)
{
    return true;
}

static void on_open(void *ud, const char *ns, const char *name, const struct gw_xml_attr *attrs,
                    unsigned n)
{
    struct run *r = ud;
    put_str(&r->log, "OPEN {");
    put_str(&r->log, ns);
    put_str(&r->log, "}");
    put_str(&r->log, name);
    for (unsigned i = 0; i < n; i++) {
        put_str(&r->log, " {");
        put_str(&r->log, attrs[i].ns);
        put_str(&r->log, "}");
        put_str(&r->log, attrs[i].name);
        put_str(&r->log, "=");
        put_str(&r->log, attrs[i].value);
    }
    if (attrs[n].name)
        abort();
    put_str(&r->log, "\n");
}

static void alone_stanza(void *ud, const struct gw_xml_stanza *st)
{
    gw_buf_reset(&alone_tree);
    if (!st->tree)
        abort();
    put_tree(&alone_tree, st->tree, st->bytes, st->len, 0, st->len);
    alone_done++;
}

static void on_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct run *r = ud;
    if (!st->tree || st->tree->start != 0 || st->tree->end != st->len ||
        strcmp(st->tree->ns, st->ns) || strcmp(st->tree->name, st->name))
        abort();
    gw_buf_reset(&r->tree);
    put_tree(&r->tree, st->tree, st->bytes, st->len, 0, st->len);
    put_str(&r->log, "STANZA ");
    put(&r->log, st->bytes, st->len);
    put_str(&r->log, " TREE ");
    put(&r->log, gw_buf_ptr(&r->tree), gw_buf_size(&r->tree));
    put_str(&r->log, "\n");
    r->stanzas++;
    if (r->pause)
        gw_xml_pause(r->p);

    /* With the context declarations inserted, the slice is a well-formed document by itself. */
    alone_done = 0;
    int rc = gw_xml_parse_document(alone, st->bytes, st->len);
    if (rc != 0 || alone_done != 1 || gw_buf_size(&alone_tree) != gw_buf_size(&r->tree) ||
        memcmp(gw_buf_ptr(&alone_tree), gw_buf_ptr(&r->tree), gw_buf_size(&r->tree)) != 0) {
        fprintf(stderr, "stanza does not stand alone (%d %s: %s):\n%.*s\n", rc,
                gw_xml_error_condition(alone), gw_xml_error_text(alone), (int)st->len, st->bytes);
        abort();
    }
}

static void on_close(void *ud)
{
    struct run *r = ud;
    put_str(&r->log, "CLOSE\n");
}

static const struct gw_xml_callbacks cbs = {on_open, want_tree, on_stanza, on_close};

/* Feed data cut at the given offsets (or in steps of step bytes) and record what came out. */
static void run_feed(struct run *r, bool pause, bool release, const char *data, size_t n,
                     const size_t *cuts, size_t n_cuts, size_t step)
{
    struct gw_xml_opts o = {
        .mode = GW_XML_STREAM, .limits = limits, .inject_context = true, .release_idle = release};
    memset(r, 0, sizeof(*r));
    r->pause = pause;
    r->p = gw_xml_new(&o, &cbs, r);
    if (!r->p)
        abort();
    gw_buf_init(&r->log, LOG_MAX);
    gw_buf_init(&r->tree, LOG_MAX);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; at < n || i == 0; i++) {
        size_t to = step ? (n - at < step ? n : at + step) : i < n_cuts ? cuts[i] : n;
        size_t used = 0;
        rc = gw_xml_feed(r->p, data + at, to - at, &used);
        if (rc)
            break;
        if (used > to - at || (used < to - at && !pause))
            abort();
        if (pause && r->stanzas) {
            /* Paused just past the stanza's end tag; nothing after it was parsed. */
            if (at + used == 0 || data[at + used - 1] != '>' || r->stanzas != 1 ||
                gw_xml_feed(r->p, "<a/>", 4, &used) != GW_EINVAL)
                abort();
            break;
        }
        at = to;
    }
    r->rc = rc;
    snprintf(r->cond, sizeof(r->cond), "%s", gw_xml_error_condition(r->p));
    if (rc && (!r->cond[0] || !*gw_xml_error_text(r->p) || rc == GW_ENOMEM ||
               strcmp(r->cond, "internal-server-error") == 0))
        abort();
    /* Reuse after reset must behave like a fresh parser. */
    if (gw_xml_reset(r->p) != 0 || *gw_xml_error_condition(r->p))
        abort();
    gw_xml_free(r->p);
    gw_buf_cleanup(&r->tree);
}

/* The same input must give the same stanzas however it was cut. When one run stopped early (a
 * limit seen at a chunk's end, a pause, or an error that expat finds eagerly in one cut and defers
 * in another, e.g. junk followed by a partial character), its log must begin the other's. Two runs
 * that both found a protocol error must agree on which. */
static void compare(const struct run *a, const struct run *b)
{
    size_t la = gw_buf_size(&a->log), lb = gw_buf_size(&b->log);
    if (a->rc == 0 && b->rc == 0 && !a->pause && !b->pause && la != lb)
        abort();
    size_t n = la < lb ? la : lb;
    if (n && memcmp(gw_buf_ptr(&a->log), gw_buf_ptr(&b->log), n) != 0)
        abort();
    if (a->rc == GW_EPROTO && b->rc == GW_EPROTO && strcmp(a->cond, b->cond) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    if (!alone) {
        struct gw_xml_opts o = {.mode = GW_XML_DOCUMENT,
                                .limits = {.max_stanza = 1 << 20,
                                           .max_depth = limits.max_depth,
                                           .max_attrs = 2 * limits.max_attrs},
                                .root_is_stanza = true};
        static const struct gw_xml_callbacks acb = {NULL, want_tree, alone_stanza, NULL};
        alone = gw_xml_new(&o, &acb, NULL);
        gw_buf_init(&alone_tree, LOG_MAX);
        if (!alone)
            abort();
    }
    const char *s = (const char *)data + 4;
    size_t n = size - 4;
    size_t cuts[2];
    cuts[0] = ((size_t)data[0] | (size_t)data[1] << 8) % (n + 1);
    cuts[1] = cuts[0] + ((size_t)data[2] | (size_t)data[3] << 8) % (n - cuts[0] + 1);

    struct run one, other;
    run_feed(&one, false, false, s, n, NULL, 0, 0);
    run_feed(&other, false, false, s, n, cuts, 2, 0);
    compare(&one, &other);
    gw_buf_cleanup(&other.log);
    run_feed(&other, true, false, s, n, cuts, 2, 0);
    compare(&one, &other);
    if (one.stanzas && other.rc == 0 && other.stanzas != 1)
        abort();
    gw_buf_cleanup(&other.log);
    /* Many small chunks: where expat's deferral of split tokens matters. */
    size_t small = n <= BYTEWISE_MAX ? 1 : 1 + data[3] % 61;
    run_feed(&other, false, false, s, n, NULL, 0, small);
    compare(&one, &other);
    gw_buf_cleanup(&other.log);
    /* Released between stanzas: in one piece, at the cuts, and in small chunks. */
    run_feed(&other, false, true, s, n, NULL, 0, 0);
    compare(&one, &other);
    if (other.rc != one.rc)
        abort();
    gw_buf_cleanup(&other.log);
    run_feed(&other, false, true, s, n, cuts, 2, 0);
    compare(&one, &other);
    gw_buf_cleanup(&other.log);
    run_feed(&other, false, true, s, n, NULL, 0, small);
    compare(&one, &other);
    gw_buf_cleanup(&other.log);
    gw_buf_cleanup(&one.log);
    return 0;
}
