/* The XMPP stream parser on expat: stream and document modes, stanza byte slices with the stream's
 * namespace context inserted, refusal of restricted XML, limits, and the per-stanza tree arena.
 * Owns: the expat parser, the pending-input, stanza and text buffers, the arena. Calls: expat,
 * core/buf. */
#include "xml/xml.h"

#include <expat.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/rand.h"

/* Cannot occur in XML 1.0 text, so expat's "uri SEP local SEP prefix" names split unambiguously. */
#define NS_SEP '\x01'
#define NS_XML "http://www.w3.org/XML/1998/namespace"
#define PIECE_MAX ((size_t)1 << 30) /* XML_Parse takes an int length */
#define IDLE_KEEP 16384             /* a buffer grown past this is freed once idle */
#define ARENA_INLINE 512
#define ARENA_BLOCK_MAX 65536
#define ARENA_FACTOR 16 /* tree bytes allowed per stanza byte: a node outweighs a short tag */
#define ESCAPE_FACTOR 6 /* worst growth of a value when re-escaped ("'" -> "&apos;") */
#define NAME_CACHE 16
#define FEED_PAUSED 1

struct arena_block {
    struct arena_block *next; /* older block */
    size_t size;              /* usable bytes after the header */
    size_t used;              /* bytes handed out */
};

/* The first arena block lives in the parser: the names of tree-less stanzas need no malloc. */
struct arena_inline {
    struct arena_block hdr;
    unsigned char data[ARENA_INLINE]; /* must follow hdr directly, as in malloc'd blocks */
};

/* One namespace declaration of the depth-0 element, rendered once for insertion into stanzas. */
struct ctx_decl {
    char *prefix;       /* "" for the default namespace */
    char *text;         /* " xmlns:p='uri'", escaped */
    size_t text_len;    /* strlen(text) */
    bool root_declares; /* the current stanza's root declares this prefix itself */
    bool injected;      /* part of the current stanza's injection */
};

/* An element of the tree being built whose end tag has not come yet. */
struct frame {
    struct gw_xml_node *node; /* the element */
    struct gw_xml_node *last; /* last child so far, to append in document order */
    size_t text_off;          /* where this element's character data starts in p->text */
};

/* Where the input stands between markup and text, followed byte by byte in stream mode to know
 * when a chunk may complete a token (see feed_all). */
enum lex {
    LEX_TEXT,      /* character data, or between markup in the prolog */
    LEX_LT,        /* after '<' */
    LEX_BANG,      /* after "<!" and lex_match bytes of "[CDATA[" */
    LEX_BANG_DASH, /* after "<!-" */
    LEX_TAG,       /* inside a tag or declaration, up to '>' outside quotes */
    LEX_COMMENT,   /* up to "-->" */
    LEX_CDATA,     /* up to "]]>" */
    LEX_PI,        /* up to "?>" (the XML declaration too) */
};

/* An expat name split into its parts (pointers into expat's string, not NUL-terminated). */
struct qname {
    const char *ns, *local, *prefix;      /* "" when absent */
    size_t ns_len, local_len, prefix_len; /* their lengths */
};

struct gw_xml_parser {
    unsigned long hash_salt;    /* expat hash salt, random once per parser */
    XML_Parser xp;              /* created with namespace processing, UTF-8 forced; NULL while
                                   released between stanzas (opts.release_idle) */
    int64_t xp_shift;           /* absolute offset = expat's offset + xp_shift (rebuilt parsers
                                   start with the replayed root tag) */
    struct gw_buf root_tag;     /* release_idle: the depth-0 start tag, name and namespace
                                   declarations only, replayed into a rebuilt parser */
    bool replaying;             /* feeding root_tag: no event is ours */
    struct gw_xml_opts opts;    /* as given to gw_xml_new */
    struct gw_xml_callbacks cb; /* as given to gw_xml_new */
    void *ud;                   /* the callbacks' first argument */
    unsigned stanza_level;      /* 1, or 0 when a document's root is itself the stanza */

    /* Byte positions are absolute offsets since the last reset, as expat counts them. */
    const char *chunk;     /* the input piece expat is parsing now */
    size_t chunk_len;      /* its length */
    uint64_t chunk_base;   /* offset of chunk[0] */
    struct gw_buf in;      /* earlier input still needed, covering [in_base, chunk_base) */
    uint64_t in_base;      /* offset of in's first byte */
    uint64_t mark;         /* end of the last event outside stanzas: later ones start after it */
    uint64_t pause_end;    /* end of the element after which a callback paused us */
    unsigned depth;        /* elements open */
    bool in_stanza;        /* between a stanza's start tag and its end */
    bool in_cdata;         /* inside a CDATA section (expat's own state: release_idle waits) */
    uint64_t stanza_start; /* offset of the current stanza's '<' */
    uint64_t text_run;     /* character data between stanzas since the last one */
    enum lex lex;          /* lexical state after the last byte fed */
    char lex_quote;        /* in LEX_TAG: the quote of the attribute value we are in, or 0 */
    unsigned lex_match;    /* bytes of the terminator (or of "<![CDATA[") matched so far */

    struct ctx_decl *ctx; /* declarations made on the depth-0 element */
    unsigned n_ctx;       /* entries in ctx */
    struct gw_buf decls;  /* "prefix\0uri\0" pairs declared on the start tag being reported */
    unsigned n_decls;     /* pairs in decls */

    struct gw_buf inj; /* the declarations this stanza gets, inserted at inj_at */
    size_t inj_at;     /* just past the root element's name, from its '<' */
    bool inj_more;     /* a descendant uses a context prefix the root did not get */
    struct gw_buf out; /* stanza bytes when they cannot point straight into the input */

    struct arena_block *arena;     /* newest first, ending with &arena0.hdr */
    struct arena_inline arena0;    /* the first block, never freed */
    size_t arena_used;             /* bytes handed out for this stanza */
    size_t arena_max;              /* bound on arena_used */
    const char *st_ns, *st_name;   /* the stanza's root, in the arena */
    bool tree;                     /* building a tree for this stanza */
    struct frame *frames;          /* open elements of the tree, root first */
    unsigned n_frames, cap_frames; /* used and allocated entries of frames */
    struct gw_buf text;            /* character data of the open elements, innermost last */
    const char *names[NAME_CACHE]; /* strings already in the arena, for repeats */
    unsigned n_names;              /* entries in names */

    int err;           /* the first error, 0 if none */
    const char *cond;  /* its stream error condition, "" if none */
    char errtext[192]; /* and what happened, with line and column */
    bool stopped;      /* an error ended the parse */
    bool pause_asked;  /* gw_xml_pause() was called: stop at the end of the current element */
    bool paused;       /* expat is suspended; only a reset goes on */
};

/* ---- small helpers ---- */

static size_t sat_mul(size_t a, size_t b)
{
    return a && b > SIZE_MAX / a ? SIZE_MAX : a * b;
}

static size_t sat_add(size_t a, size_t b)
{
    return b > SIZE_MAX - a ? SIZE_MAX : a + b;
}

static void split_name(const char *s, struct qname *q)
{
    const char *sep = strchr(s, NS_SEP);
    memset(q, 0, sizeof(*q));
    q->ns = q->prefix = "";
    if (!sep) {
        q->local = s;
        q->local_len = strlen(s);
        return;
    }
    q->ns = s;
    q->ns_len = (size_t)(sep - s);
    q->local = sep + 1;
    const char *sep2 = strchr(q->local, NS_SEP);
    if (!sep2) {
        q->local_len = strlen(q->local);
        return;
    }
    q->local_len = (size_t)(sep2 - q->local);
    q->prefix = sep2 + 1;
    q->prefix_len = strlen(q->prefix);
}

static bool names_utf8(const char *s)
{
    const char *want = "utf-8";
    for (; *s && *want; s++, want++) {
        int c = *s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s;
        if (c != *want)
            return false;
    }
    return !*s && !*want;
}

static uint64_t event_start(const struct gw_xml_parser *p)
{
    XML_Index i = XML_GetCurrentByteIndex(p->xp);
    int64_t at = (int64_t)(i > 0 ? i : 0) + p->xp_shift;
    return at > 0 ? (uint64_t)at : 0;
}

static uint64_t event_end(const struct gw_xml_parser *p)
{
    int n = XML_GetCurrentByteCount(p->xp);
    return event_start(p) + (n > 0 ? (uint64_t)n : 0);
}

static void fail(struct gw_xml_parser *p, int err, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record the first error and stop expat for good; later events are ignored. */
static void fail(struct gw_xml_parser *p, int err, const char *cond, const char *fmt, ...)
{
    if (p->stopped)
        return;
    p->stopped = true;
    p->err = err;
    p->cond = cond;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->errtext, sizeof(p->errtext), fmt, ap);
    va_end(ap);
    if (!p->xp) /* released, and rebuilding it failed */
        return;
    if (n >= 0 && (size_t)n < sizeof(p->errtext))
        snprintf(p->errtext + n, sizeof(p->errtext) - (size_t)n, " (line %llu, column %llu)",
                 (unsigned long long)XML_GetCurrentLineNumber(p->xp),
                 (unsigned long long)XML_GetCurrentColumnNumber(p->xp));
    XML_StopParser(p->xp, XML_FALSE);
}

static void fail_buf(struct gw_xml_parser *p, int rc, const char *what)
{
    if (rc == GW_ENOMEM)
        fail(p, GW_ENOMEM, "internal-server-error", "out of memory (%s)", what);
    else
        fail(p, GW_ELIMIT, "policy-violation", "%s larger than %zu bytes", what,
             p->opts.limits.max_stanza);
}

static void fail_limit(struct gw_xml_parser *p, const char *what)
{
    fail_buf(p, GW_ELIMIT, what);
}

static bool is_live(const struct gw_xml_parser *p)
{
    return !p->stopped && !p->paused && !p->replaying;
}

/* ---- arena: per-stanza tree memory, bounded, freed in one go ---- */

#define ARENA_ALIGN _Alignof(struct gw_xml_node)
_Static_assert(sizeof(struct arena_block) % ARENA_ALIGN == 0, "arena header keeps alignment");
_Static_assert(_Alignof(struct gw_xml_attr) <= ARENA_ALIGN, "attrs fit the arena alignment");
_Static_assert(offsetof(struct arena_inline, data) == sizeof(struct arena_block),
               "the inline block is laid out like a malloc'd one");

static void arena_reset(struct gw_xml_parser *p)
{
    while (p->arena != &p->arena0.hdr) {
        struct arena_block *b = p->arena;
        p->arena = b->next;
        free(b);
    }
    p->arena->used = 0;
    p->arena_used = 0;
    p->n_names = 0;
}

static void *arena_alloc(struct gw_xml_parser *p, size_t n, size_t align)
{
    struct arena_block *b = p->arena;
    size_t off = (b->used + align - 1) / align * align;
    if (n > p->arena_max - p->arena_used) {
        fail(p, GW_ELIMIT, "policy-violation", "stanza tree larger than %zu bytes", p->arena_max);
        return NULL;
    }
    if (off > b->size || b->size - off < n) {
        size_t size = sat_mul(b->size, 4);
        if (size > ARENA_BLOCK_MAX)
            size = ARENA_BLOCK_MAX;
        if (size < n)
            size = n;
        b = malloc(sizeof(*b) + size);
        if (!b) {
            fail_buf(p, GW_ENOMEM, "stanza tree");
            return NULL;
        }
        b->next = p->arena;
        b->size = size;
        b->used = 0;
        p->arena = b;
        off = 0;
    }
    b->used = off + n;
    p->arena_used += n;
    return (char *)(b + 1) + off;
}

static const char *arena_strndup(struct gw_xml_parser *p, const char *s, size_t n)
{
    if (n == 0)
        return "";
    char *d = arena_alloc(p, n + 1, 1);
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Namespace URIs and names repeat on every element of a stanza: keep one copy of the first few. */
static const char *intern(struct gw_xml_parser *p, const char *s, size_t n)
{
    if (n == 0)
        return "";
    for (unsigned i = 0; i < p->n_names; i++)
        if (strncmp(p->names[i], s, n) == 0 && p->names[i][n] == '\0')
            return p->names[i];
    const char *d = arena_strndup(p, s, n);
    if (d && p->n_names < NAME_CACHE)
        p->names[p->n_names++] = d;
    return d;
}

static const struct gw_xml_attr no_attrs[1];

/* expat's attribute list as gw_xml_attr entries, copied into the arena, NULL-name terminated. */
static const struct gw_xml_attr *copy_attrs(struct gw_xml_parser *p, const XML_Char **atts,
                                            unsigned n)
{
    if (n == 0)
        return no_attrs;
    struct gw_xml_attr *a = arena_alloc(p, sizeof(*a) * ((size_t)n + 1), ARENA_ALIGN);
    if (!a)
        return NULL;
    for (unsigned i = 0; i < n; i++) {
        struct qname q;
        split_name(atts[2 * i], &q);
        a[i].ns = intern(p, q.ns, q.ns_len);
        a[i].name = intern(p, q.local, q.local_len);
        a[i].value = arena_strndup(p, atts[2 * i + 1], strlen(atts[2 * i + 1]));
        if (!a[i].ns || !a[i].name || !a[i].value)
            return NULL;
    }
    a[n].ns = a[n].name = a[n].value = NULL;
    return a;
}

/* ---- namespace context ---- */

static void free_context(struct gw_xml_parser *p)
{
    for (unsigned i = 0; i < p->n_ctx; i++) {
        free(p->ctx[i].prefix);
        free(p->ctx[i].text);
    }
    free(p->ctx);
    p->ctx = NULL;
    p->n_ctx = 0;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* The declarations just reported belong to the depth-0 element: they are the stanzas' context. */
static int save_context(struct gw_xml_parser *p)
{
    free_context(p);
    if (!(p->opts.inject_context || p->opts.inject_prefixes) || p->n_decls == 0 || !p->decls.data)
        return 0;
    p->ctx = calloc(p->n_decls, sizeof(*p->ctx));
    if (!p->ctx)
        return GW_ENOMEM;
    struct gw_buf t;
    gw_buf_init(&t, p->inj.max);
    const char *s = p->decls.data;
    int rc = 0;
    for (unsigned i = 0; i < p->n_decls && !rc; i++) {
        const char *prefix = s;
        const char *uri = prefix + strlen(prefix) + 1;
        s = uri + strlen(uri) + 1;
        if (!*uri) /* xmlns='' on the root: nothing in scope to carry */
            continue;
        if (!*prefix && !p->opts.inject_context) /* inject_prefixes: not the default */
            continue;
        gw_buf_reset(&t);
        rc = gw_buf_append_str(&t, *prefix ? " xmlns:" : " xmlns");
        if (!rc)
            rc = gw_buf_append_str(&t, prefix);
        if (!rc)
            rc = gw_buf_append_str(&t, "='");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&t, uri, strlen(uri));
        if (!rc)
            rc = gw_buf_append_str(&t, "'");
        if (rc)
            break;
        struct ctx_decl *d = &p->ctx[p->n_ctx];
        d->prefix = dup_bytes(prefix, strlen(prefix));
        d->text = dup_bytes(gw_buf_ptr(&t), gw_buf_size(&t));
        d->text_len = gw_buf_size(&t);
        p->n_ctx++; /* counted before the check so that free_context frees a half-made entry */
        if (!d->prefix || !d->text)
            rc = GW_ENOMEM;
    }
    gw_buf_cleanup(&t);
    return rc;
}

static bool declared_here(const struct gw_xml_parser *p, const char *prefix)
{
    const char *s = p->decls.data;
    for (unsigned i = 0; s && i < p->n_decls; i++) {
        const char *uri = s + strlen(s) + 1;
        if (strcmp(s, prefix) == 0)
            return true;
        s = uri + strlen(uri) + 1;
    }
    return false;
}

/* Does the element or one of its attributes use this prefix? */
static bool uses_prefix(const struct qname *q, const XML_Char **atts, unsigned n_atts,
                        const char *prefix)
{
    size_t n = strlen(prefix);
    if (q->prefix_len == n && memcmp(q->prefix, prefix, n) == 0)
        return true;
    for (unsigned k = 0; k < n_atts; k++) {
        struct qname a;
        split_name(atts[2 * k], &a);
        if (a.prefix_len == n && memcmp(a.prefix, prefix, n) == 0)
            return true;
    }
    return false;
}

/* Which context declarations this stanza root needs, and where they go: the default namespace
 * always (the stanza inherits it), a prefix only when the root uses it. A descendant that uses
 * another context prefix adds it when the stanza closes (note_prefixes, complete_injection). */
static int plan_injection(struct gw_xml_parser *p, const struct qname *q, const XML_Char **atts,
                          unsigned n_atts)
{
    gw_buf_reset(&p->inj);
    p->inj_at = 0;
    p->inj_more = false;
    if (p->n_ctx == 0)
        return 0;
    p->inj_at = 1 + (q->prefix_len ? q->prefix_len + 1 : 0) + q->local_len;
    for (unsigned i = 0; i < p->n_ctx; i++) {
        struct ctx_decl *d = &p->ctx[i];
        d->root_declares = declared_here(p, d->prefix);
        d->injected = false;
        if (d->root_declares || (*d->prefix && !uses_prefix(q, atts, n_atts, d->prefix)))
            continue;
        int rc = gw_buf_append(&p->inj, d->text, d->text_len);
        if (rc)
            return rc;
        d->injected = true;
    }
    return 0;
}

/* A descendant element: note context prefixes it uses that the root did not get. */
static void note_prefixes(struct gw_xml_parser *p, const XML_Char *name, const XML_Char **atts,
                          unsigned n_atts)
{
    struct qname q;
    bool split = false;
    for (unsigned i = 0; i < p->n_ctx; i++) {
        struct ctx_decl *d = &p->ctx[i];
        if (d->injected || d->root_declares || !*d->prefix)
            continue;
        if (!split) {
            split_name(name, &q);
            split = true;
        }
        if (uses_prefix(&q, atts, n_atts, d->prefix)) {
            d->injected = true;
            p->inj_more = true;
        }
    }
}

static void shift_nodes(struct gw_xml_node *n, size_t delta)
{
    for (; n; n = n->next) {
        n->start += delta;
        n->end += delta;
        shift_nodes(n->children, delta);
    }
}

/* Add the declarations descendants turned out to need; the tree's offsets move with them. */
static int complete_injection(struct gw_xml_parser *p, struct gw_xml_node *root)
{
    if (!p->inj_more)
        return 0;
    size_t before = p->inj.len;
    for (unsigned i = 0; i < p->n_ctx; i++) {
        struct ctx_decl *d = &p->ctx[i];
        if (!d->injected || !*d->prefix || d->root_declares)
            continue;
        /* Already in: the root used it. Only the ones noted later are appended. */
        if (p->inj.data && memmem(p->inj.data, before, d->text, d->text_len))
            continue;
        int rc = gw_buf_append(&p->inj, d->text, d->text_len);
        if (rc)
            return rc;
    }
    p->inj_more = false;
    if (root)
        shift_nodes(root->children, p->inj.len - before);
    return 0;
}

/* ---- stanza bytes ---- */

/* Append input bytes [from, to) (absolute offsets), wherever they are now, to out. */
static int copy_input(struct gw_xml_parser *p, struct gw_buf *out, uint64_t from, uint64_t to)
{
    if (from < to && from < p->chunk_base) {
        uint64_t stop = to < p->chunk_base ? to : p->chunk_base;
        int rc = gw_buf_append(out, gw_buf_ptr(&p->in) + (from - p->in_base), stop - from);
        if (rc)
            return rc;
        from = stop;
    }
    if (from < to)
        return gw_buf_append(out, p->chunk + (from - p->chunk_base), to - from);
    return 0;
}

static char input_byte(const struct gw_xml_parser *p, uint64_t at)
{
    if (at < p->chunk_base)
        return gw_buf_ptr(&p->in)[at - p->in_base];
    return p->chunk[at - p->chunk_base];
}

/* The stanza [stanza_start, end) as one run of bytes, with the injected declarations. */
static int assemble_stanza(struct gw_xml_parser *p, uint64_t end, struct gw_xml_stanza *st)
{
    uint64_t s = p->stanza_start;
    if (s < p->in_base || end > p->chunk_base + p->chunk_len || end < s + 2 + p->inj_at) {
        fail(p, GW_EPROTO, "internal-server-error", "stanza bytes out of the buffered input");
        return GW_EPROTO;
    }
    if (p->inj.len == 0 && s >= p->chunk_base) {
        st->bytes = p->chunk + (s - p->chunk_base);
        st->len = (size_t)(end - s);
        return 0;
    }
    gw_buf_reset(&p->out);
    int rc;
    if (p->inj.len == 0) {
        rc = copy_input(p, &p->out, s, end);
    } else {
        /* The name must end where expat's parts say, or the insertion would corrupt the tag. */
        char next = input_byte(p, s + p->inj_at);
        if (!strchr(" \t\r\n/>", next) || next == '\0') {
            fail(p, GW_EPROTO, "internal-server-error", "stanza name does not match its bytes");
            return GW_EPROTO;
        }
        rc = copy_input(p, &p->out, s, s + p->inj_at);
        if (!rc)
            rc = gw_buf_append(&p->out, p->inj.data, p->inj.len);
        if (!rc)
            rc = copy_input(p, &p->out, s + p->inj_at, end);
    }
    if (rc) {
        fail_buf(p, rc, "stanza");
        return GW_EPROTO;
    }
    st->bytes = gw_buf_ptr(&p->out);
    st->len = gw_buf_size(&p->out);
    return 0;
}

/* ---- tree ---- */

static bool push_node(struct gw_xml_parser *p, const struct qname *q, const XML_Char **atts,
                      unsigned n_atts, size_t start)
{
    if (p->n_frames == p->cap_frames) {
        unsigned cap = p->cap_frames ? p->cap_frames * 2 : 8;
        struct frame *f = realloc(p->frames, sizeof(*f) * cap);
        if (!f) {
            fail_buf(p, GW_ENOMEM, "stanza tree");
            return false;
        }
        p->frames = f;
        p->cap_frames = cap;
    }
    struct gw_xml_node *n = arena_alloc(p, sizeof(*n), ARENA_ALIGN);
    if (!n)
        return false;
    memset(n, 0, sizeof(*n));
    n->ns = intern(p, q->ns, q->ns_len);
    n->name = intern(p, q->local, q->local_len);
    n->attrs = copy_attrs(p, atts, n_atts);
    if (!n->ns || !n->name || !n->attrs)
        return false;
    n->n_attrs = n_atts;
    n->text = "";
    n->start = start;
    if (p->n_frames) {
        struct frame *parent = &p->frames[p->n_frames - 1];
        if (parent->last)
            parent->last->next = n;
        else
            parent->node->children = n;
        parent->last = n;
    }
    p->frames[p->n_frames++] = (struct frame){.node = n, .last = NULL, .text_off = p->text.len};
    return true;
}

static bool pop_node(struct gw_xml_parser *p, size_t end)
{
    if (p->n_frames == 0)
        return true;
    struct frame *f = &p->frames[--p->n_frames];
    size_t len = p->text.len - f->text_off;
    if (len) {
        const char *t = arena_strndup(p, p->text.data + f->text_off, len);
        if (!t)
            return false;
        f->node->text = t;
        f->node->text_len = len;
        p->text.len = f->text_off; /* the parent's text continues after the child's end tag */
        p->text.data[p->text.len] = '\0';
    }
    f->node->end = end;
    return true;
}

/* ---- expat handlers ---- */

static void check_pause(struct gw_xml_parser *p, uint64_t end)
{
    if (!p->pause_asked || !is_live(p))
        return;
    p->paused = true;
    p->pause_end = end;
    XML_StopParser(p->xp, XML_TRUE);
}

static void trim_buf(struct gw_buf *b)
{
    if (b->cap > IDLE_KEEP)
        gw_buf_cleanup(b);
    else
        gw_buf_reset(b);
}

/* release_idle: "<prefix:name xmlns='uri' xmlns:p='uri'>", what a rebuilt expat must have read to
 * be where this one is between stanzas (attributes other than declarations do not matter there). */
static int save_root_tag(struct gw_xml_parser *p, const struct qname *q)
{
    gw_buf_reset(&p->root_tag);
    if (!p->opts.release_idle || p->opts.mode != GW_XML_STREAM)
        return 0;
    int rc = gw_buf_append_str(&p->root_tag, "<");
    if (!rc && q->prefix_len)
        rc = gw_buf_printf(&p->root_tag, "%.*s:", (int)q->prefix_len, q->prefix);
    if (!rc)
        rc = gw_buf_append(&p->root_tag, q->local, q->local_len);
    const char *s = p->decls.data;
    for (unsigned i = 0; s && i < p->n_decls && !rc; i++) {
        const char *uri = s + strlen(s) + 1;
        rc = gw_buf_printf(&p->root_tag, *s ? " xmlns:%s='" : " xmlns%s='", s);
        if (!rc)
            rc = gw_buf_append_xml_escaped(&p->root_tag, uri, strlen(uri));
        if (!rc)
            rc = gw_buf_append_str(&p->root_tag, "'");
        s = uri + strlen(uri) + 1;
    }
    if (!rc)
        rc = gw_buf_append_str(&p->root_tag, ">");
    return rc;
}

static void open_root(struct gw_xml_parser *p, const XML_Char *name, const XML_Char **atts,
                      unsigned n_atts, uint64_t at, uint64_t end)
{
    if (end - at > p->opts.limits.max_stanza) {
        fail_limit(p, "start tag");
        return;
    }
    struct qname q;
    split_name(name, &q);
    int rc = save_context(p);
    if (!rc)
        rc = save_root_tag(p, &q);
    if (rc) {
        fail_buf(p, rc, "root namespace declarations");
        return;
    }
    arena_reset(p);
    const char *ns = intern(p, q.ns, q.ns_len);
    const char *local = arena_strndup(p, q.local, q.local_len);
    const struct gw_xml_attr *a = copy_attrs(p, atts, n_atts);
    if (!ns || !local || !a)
        return;
    p->mark = end;
    p->text_run = 0;
    if (p->cb.on_open)
        p->cb.on_open(p->ud, ns, local, a, n_atts);
    arena_reset(p);
    check_pause(p, end);
}

static void open_stanza(struct gw_xml_parser *p, const XML_Char *name, const XML_Char **atts,
                        unsigned n_atts, uint64_t at, uint64_t end)
{
    p->in_stanza = true;
    p->stanza_start = at;
    p->text_run = 0;
    if (end - at > p->opts.limits.max_stanza) {
        fail_limit(p, "stanza");
        return;
    }
    arena_reset(p);
    gw_buf_reset(&p->text);
    p->n_frames = 0;
    struct qname q;
    split_name(name, &q);
    p->st_ns = intern(p, q.ns, q.ns_len);
    p->st_name = arena_strndup(p, q.local, q.local_len);
    if (!p->st_ns || !p->st_name)
        return;
    int rc = plan_injection(p, &q, atts, n_atts);
    if (rc) {
        fail_buf(p, rc, "stanza namespace declarations");
        return;
    }
    p->tree = p->cb.want_tree && p->cb.want_tree(p->ud, p->st_ns, p->st_name);
    if (p->tree)
        push_node(p, &q, atts, n_atts, 0);
}

static void handle_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct gw_xml_parser *p = ud;
    if (!is_live(p))
        return;
    uint64_t at = event_start(p), end = event_end(p);
    unsigned level = p->depth++;
    unsigned n_atts = 0;
    while (atts[2 * n_atts])
        n_atts++;
    if (level > p->opts.limits.max_depth) {
        fail(p, GW_ELIMIT, "policy-violation", "elements nested deeper than %u",
             p->opts.limits.max_depth);
        return;
    }
    if (n_atts + p->n_decls > p->opts.limits.max_attrs) {
        fail(p, GW_ELIMIT, "policy-violation", "more than %u attributes on an element",
             p->opts.limits.max_attrs);
        return;
    }
    if (level < p->stanza_level) {
        open_root(p, name, atts, n_atts, at, end);
    } else if (level == p->stanza_level) {
        open_stanza(p, name, atts, n_atts, at, end);
    } else if (end - p->stanza_start > p->opts.limits.max_stanza) {
        fail_limit(p, "stanza");
    } else {
        note_prefixes(p, name, atts, n_atts);
        if (p->tree) {
            struct qname q;
            split_name(name, &q);
            push_node(p, &q, atts, n_atts, (size_t)(at - p->stanza_start) + p->inj.len);
        }
    }
    p->n_decls = 0;
    gw_buf_reset(&p->decls);
}

static void close_stanza(struct gw_xml_parser *p, uint64_t end)
{
    if (end - p->stanza_start > p->opts.limits.max_stanza) {
        fail_limit(p, "stanza");
        return;
    }
    struct gw_xml_stanza st = {.ns = p->st_ns, .name = p->st_name};
    int rc = complete_injection(p, p->tree && p->n_frames ? p->frames[0].node : NULL);
    if (rc) {
        fail_buf(p, rc, "stanza namespace declarations");
        return;
    }
    if (p->tree) {
        if (!pop_node(p, (size_t)(end - p->stanza_start) + p->inj.len))
            return;
        st.tree = p->frames[0].node;
    }
    if (assemble_stanza(p, end, &st))
        return;
    p->in_stanza = false;
    p->tree = false;
    p->mark = end;
    if (p->cb.on_stanza)
        p->cb.on_stanza(p->ud, &st);
    arena_reset(p);
    trim_buf(&p->out);
    trim_buf(&p->text);
    check_pause(p, end);
}

static void handle_end(void *ud, const XML_Char *name)
{
    struct gw_xml_parser *p = ud;
    (void)name;
    if (!is_live(p))
        return;
    /* An empty-element tag reports its end with a zero count at the tag's end: end is right. */
    uint64_t at = event_start(p), end = event_end(p);
    unsigned level = --p->depth;
    if (level < p->stanza_level) {
        if (end - at > p->opts.limits.max_stanza) {
            fail_limit(p, "end tag");
            return;
        }
        p->mark = end;
        if (p->cb.on_close)
            p->cb.on_close(p->ud);
        check_pause(p, end);
    } else if (level == p->stanza_level) {
        close_stanza(p, end);
    } else if (end - p->stanza_start > p->opts.limits.max_stanza) {
        fail_limit(p, "stanza");
    } else if (p->tree) {
        pop_node(p, (size_t)(end - p->stanza_start) + p->inj.len);
    }
}

static void handle_text(void *ud, const XML_Char *s, int len)
{
    struct gw_xml_parser *p = ud;
    if (!is_live(p))
        return;
    uint64_t at = event_start(p), end = event_end(p);
    if (!p->in_stanza) {
        /* Not kept, but an endless run between stanzas is no stream anyone should send. */
        p->mark = end;
        p->text_run += end - at;
        if (p->text_run > p->opts.limits.max_stanza)
            fail_limit(p, "text between stanzas");
        return;
    }
    if (end - p->stanza_start > p->opts.limits.max_stanza) {
        fail_limit(p, "stanza");
        return;
    }
    if (p->tree && len > 0) {
        int rc = gw_buf_append(&p->text, s, (size_t)len);
        if (rc)
            fail_buf(p, rc, "stanza text");
    }
}

/* Whatever has no handler of its own: whitespace around the root, CDATA section markers. */
static void handle_other(void *ud, const XML_Char *s, int len)
{
    struct gw_xml_parser *p = ud;
    (void)s;
    (void)len;
    if (!is_live(p) || p->in_stanza)
        return;
    uint64_t at = event_start(p), end = event_end(p);
    if (end - at > p->opts.limits.max_stanza) {
        fail_limit(p, "markup between stanzas");
        return;
    }
    p->mark = end;
}

/* A CDATA section's content comes as character data; its start and end tags are markup as above,
 * and say that expat is inside a section, which a parser rebuilt between stanzas would not know
 * (release_idle waits for its end). */
static void handle_cdata_start(void *ud)
{
    ((struct gw_xml_parser *)ud)->in_cdata = true;
    handle_other(ud, NULL, 0);
}

static void handle_cdata_end(void *ud)
{
    ((struct gw_xml_parser *)ud)->in_cdata = false;
    handle_other(ud, NULL, 0);
}

static void handle_xml_decl(void *ud, const XML_Char *version, const XML_Char *encoding,
                            int standalone)
{
    struct gw_xml_parser *p = ud;
    (void)version;
    (void)standalone;
    if (!is_live(p))
        return;
    if (encoding && !names_utf8(encoding)) {
        fail(p, GW_EPROTO, "unsupported-encoding", "encoding '%.40s' is not UTF-8", encoding);
        return;
    }
    uint64_t at = event_start(p), end = event_end(p);
    if (end - at > p->opts.limits.max_stanza) {
        fail_limit(p, "XML declaration");
        return;
    }
    p->mark = end;
}

static void handle_ns_decl(void *ud, const XML_Char *prefix, const XML_Char *uri)
{
    struct gw_xml_parser *p = ud;
    if (!is_live(p))
        return;
    if (++p->n_decls > p->opts.limits.max_attrs) {
        fail(p, GW_ELIMIT, "policy-violation", "more than %u attributes on an element",
             p->opts.limits.max_attrs);
        return;
    }
    if (!prefix)
        prefix = "";
    if (!uri)
        uri = "";
    int rc = gw_buf_append(&p->decls, prefix, strlen(prefix) + 1);
    if (!rc)
        rc = gw_buf_append(&p->decls, uri, strlen(uri) + 1);
    if (rc)
        fail_buf(p, rc, "namespace declarations");
}

static void refuse(void *ud, const char *what)
{
    struct gw_xml_parser *p = ud;
    if (!is_live(p))
        return;
    fail(p, GW_EPROTO, "restricted-xml", "%s not allowed", what);
}

/* Refused at the DOCTYPE's start, before any entity in it is declared or expanded. */
static void refuse_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                           const XML_Char *pubid, int has_internal_subset)
{
    (void)name;
    (void)sysid;
    (void)pubid;
    (void)has_internal_subset;
    refuse(ud, "DOCTYPE");
}

static void refuse_entity_decl(void *ud, const XML_Char *name, int is_param, const XML_Char *value,
                               int value_len, const XML_Char *base, const XML_Char *sysid,
                               const XML_Char *pubid, const XML_Char *notation)
{
    (void)name;
    (void)is_param;
    (void)value;
    (void)value_len;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    refuse(ud, "entity declaration");
}

static void refuse_unparsed_entity(void *ud, const XML_Char *name, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation)
{
    (void)name;
    (void)base;
    (void)sysid;
    (void)pubid;
    (void)notation;
    refuse(ud, "unparsed entity");
}

static void refuse_notation(void *ud, const XML_Char *name, const XML_Char *base,
                            const XML_Char *sysid, const XML_Char *pubid)
{
    (void)name;
    (void)base;
    (void)sysid;
    (void)pubid;
    refuse(ud, "notation declaration");
}

static void refuse_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
    (void)target;
    (void)data;
    refuse(ud, "processing instruction");
}

static void refuse_comment(void *ud, const XML_Char *data)
{
    (void)data;
    refuse(ud, "comment");
}

static void refuse_skipped_entity(void *ud, const XML_Char *name, int is_param)
{
    (void)name;
    (void)is_param;
    refuse(ud, "entity reference");
}

/* Everything expat needs again after XML_ParserReset, which clears handlers and settings. */
static void setup_expat(struct gw_xml_parser *p)
{
    XML_Parser xp = p->xp;
    /* Without a salt of ours expat draws one from the kernel on every reset: a system call per
     * WebSocket frame and BOSH body. One random salt per parser keeps the hash-flooding defence. */
    XML_SetHashSalt(xp, p->hash_salt);
    XML_SetUserData(xp, p);
    XML_SetReturnNSTriplet(xp, XML_TRUE);
    XML_SetElementHandler(xp, handle_start, handle_end);
    XML_SetCharacterDataHandler(xp, handle_text);
    XML_SetCdataSectionHandler(xp, handle_cdata_start, handle_cdata_end);
    XML_SetStartNamespaceDeclHandler(xp, handle_ns_decl);
    XML_SetXmlDeclHandler(xp, handle_xml_decl);
    XML_SetDefaultHandlerExpand(xp, handle_other);
    XML_SetStartDoctypeDeclHandler(xp, refuse_doctype);
    XML_SetEntityDeclHandler(xp, refuse_entity_decl);
    XML_SetUnparsedEntityDeclHandler(xp, refuse_unparsed_entity);
    XML_SetNotationDeclHandler(xp, refuse_notation);
    XML_SetProcessingInstructionHandler(xp, refuse_pi);
    XML_SetCommentHandler(xp, refuse_comment);
    XML_SetSkippedEntityHandler(xp, refuse_skipped_entity);
    XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_NEVER);
    /* Documents come whole; streams set deferral per chunk (feed_all). */
#ifdef GW_HAVE_REPARSE_DEFERRAL
    XML_SetReparseDeferralEnabled(xp, XML_FALSE);
#endif
}

static void clear_state(struct gw_xml_parser *p)
{
    p->chunk = NULL;
    p->chunk_len = 0;
    p->chunk_base = p->in_base = p->mark = p->pause_end = 0;
    p->depth = 0;
    p->in_stanza = p->tree = p->in_cdata = false;
    p->stanza_start = p->text_run = 0;
    p->lex = LEX_TEXT;
    p->lex_quote = 0;
    p->lex_match = 0;
    trim_buf(&p->in);
    trim_buf(&p->decls);
    trim_buf(&p->inj);
    trim_buf(&p->out);
    trim_buf(&p->text);
    gw_buf_reset(&p->root_tag);
    p->n_decls = 0;
    p->inj_at = 0;
    p->n_frames = 0;
    free_context(p);
    arena_reset(p);
    p->st_ns = p->st_name = NULL;
    p->err = 0;
    p->cond = "";
    p->errtext[0] = '\0';
    p->stopped = p->pause_asked = p->paused = false;
}

/* ---- feeding ---- */

static int expat_error(struct gw_xml_parser *p)
{
    if (p->stopped)
        return p->err;
    enum XML_Error code = XML_GetErrorCode(p->xp);
    p->stopped = true;
    p->err = GW_EPROTO;
    p->cond = "not-well-formed";
    if (code == XML_ERROR_NO_MEMORY) {
        p->err = GW_ENOMEM;
        p->cond = "internal-server-error";
    } else if (code == XML_ERROR_UNDEFINED_ENTITY || code == XML_ERROR_EXTERNAL_ENTITY_HANDLING ||
               code == XML_ERROR_BINARY_ENTITY_REF || code == XML_ERROR_ASYNC_ENTITY ||
               code == XML_ERROR_RECURSIVE_ENTITY_REF) {
        /* RFC 6120 11.1: entity references other than the predefined ones. */
        p->cond = "restricted-xml";
    }
    snprintf(p->errtext, sizeof(p->errtext), "%s (line %llu, column %llu)", XML_ErrorString(code),
             (unsigned long long)XML_GetCurrentLineNumber(p->xp),
             (unsigned long long)XML_GetCurrentColumnNumber(p->xp));
    return p->err;
}

/* After a parse call: keep what a later stanza or a split token still needs, drop the rest. */
static int keep_pending(struct gw_xml_parser *p)
{
    uint64_t chunk_end = p->chunk_base + p->chunk_len;
    uint64_t keep = p->in_stanza ? p->stanza_start : p->mark;
    if (keep > chunk_end)
        keep = chunk_end;
    if (keep < p->in_base)
        keep = p->in_base;
    int rc;
    if (keep >= p->chunk_base) {
        gw_buf_reset(&p->in);
        rc = gw_buf_append(&p->in, p->chunk + (keep - p->chunk_base), chunk_end - keep);
    } else {
        gw_buf_consume(&p->in, keep - p->in_base);
        rc = gw_buf_append(&p->in, p->chunk, p->chunk_len);
    }
    p->in_base = keep;
    p->chunk_base = chunk_end;
    p->chunk = NULL;
    p->chunk_len = 0;
    if (rc) {
        fail_buf(p, rc, p->in_stanza ? "stanza" : "pending token");
        return p->err;
    }
    if (gw_buf_size(&p->in) == 0)
        trim_buf(&p->in);
    return 0;
}

/* expat guesses UTF-16 from a document's first two bytes even when told UTF-8, and the slices would
 * then not be UTF-8. The bytes it goes by are never valid in UTF-8: refuse them before it looks. */
static int check_start(struct gw_xml_parser *p, const char *data, size_t n)
{
    for (uint64_t at = p->chunk_base; at < 2 && at < p->chunk_base + n; at++) {
        unsigned char c = (unsigned char)data[at - p->chunk_base];
        if (c == 0x00 || c == 0xfe || c == 0xff) {
            fail(p, GW_EPROTO, "not-well-formed", "not UTF-8: byte 0x%02x at offset %u", c,
                 (unsigned)at);
            return p->err;
        }
    }
    return 0;
}

/* Follow data lexically; true if it ends some markup (a tag's '>', "-->", "]]>", "?>"), that is, if
 * expat may now have a complete element event to report. Errs towards true on odd input: a '<' or
 * '[' inside a tag also counts, so that expat gets to see (and refuse) it. */
__attribute__((unused)) static bool ends_markup(struct gw_xml_parser *p, const char *data, size_t n)
{
    static const char cdata[] = "[CDATA[";
    bool ends = false;
    size_t i = 0;
    while (i < n) {
        char c = data[i];
        bool again = false; /* the byte opens the next state: look at it there */
        switch (p->lex) {
        case LEX_TEXT:
            if (c == '<')
                p->lex = LEX_LT;
            break;
        case LEX_LT:
            p->lex_match = 0;
            p->lex_quote = 0;
            p->lex = c == '!' ? LEX_BANG : c == '?' ? LEX_PI : LEX_TAG;
            again = p->lex == LEX_TAG;
            break;
        case LEX_BANG:
            if (p->lex_match == 0 && c == '-') {
                p->lex = LEX_BANG_DASH;
            } else if (p->lex_match < sizeof(cdata) - 1 && c == cdata[p->lex_match]) {
                if (++p->lex_match == sizeof(cdata) - 1) {
                    p->lex = LEX_CDATA;
                    p->lex_match = 0;
                }
            } else {
                p->lex = LEX_TAG; /* DOCTYPE or junk: quotes and '>' as in a tag */
                again = true;
            }
            break;
        case LEX_BANG_DASH:
            p->lex = c == '-' ? LEX_COMMENT : LEX_TAG;
            p->lex_match = 0;
            again = p->lex == LEX_TAG;
            break;
        case LEX_TAG:
            if (p->lex_quote) {
                if (c == p->lex_quote)
                    p->lex_quote = 0;
            } else if (c == '\'' || c == '"') {
                p->lex_quote = c;
            } else if (c == '>' || c == '<' || c == '[') {
                ends = true;
                p->lex = c == '>' ? LEX_TEXT : c == '<' ? LEX_LT : LEX_TAG;
            }
            break;
        case LEX_COMMENT:
        case LEX_CDATA: {
            char dash = p->lex == LEX_COMMENT ? '-' : ']';
            if (c == dash) {
                p->lex_match = p->lex_match < 2 ? p->lex_match + 1 : 2;
            } else if (c == '>' && p->lex_match == 2) {
                ends = true;
                p->lex = LEX_TEXT;
            } else {
                p->lex_match = 0;
            }
            break;
        }
        case LEX_PI:
            if (c == '>' && p->lex_match == 1) {
                ends = true;
                p->lex = LEX_TEXT;
            }
            p->lex_match = c == '?';
            break;
        }
        if (!again)
            i++;
    }
    return ends;
}

/* Feed len bytes; on a pause, *consumed is how many of them belong to this stream. */
static int feed_all(struct gw_xml_parser *p, const char *data, size_t len, bool final,
                    size_t *consumed)
{
    size_t off = 0;
    do {
        size_t n = len - off < PIECE_MAX ? len - off : PIECE_MAX;
        bool last = off + n == len;
        int rc = check_start(p, data + off, n);
        if (rc)
            return rc;
        p->chunk = n ? data + off : "";
        p->chunk_len = n;
        /* expat's reparse deferral keeps a large split token from being rescanned on every small
         * chunk, but it could also hold back a complete stanza until more input came. So let it
         * defer only while no markup has ended; a chunk that ends some is parsed at once. */
#ifdef GW_HAVE_REPARSE_DEFERRAL
        if (!final)
            XML_SetReparseDeferralEnabled(p->xp, !ends_markup(p, p->chunk, n));
#endif
        enum XML_Status st = XML_Parse(p->xp, p->chunk, (int)n, final && last);
        if (st == XML_STATUS_SUSPENDED || p->paused) {
            uint64_t end = p->pause_end;
            if (end < p->chunk_base)
                end = p->chunk_base;
            if (end > p->chunk_base + n)
                end = p->chunk_base + n;
            *consumed = off + (size_t)(end - p->chunk_base);
            p->chunk = NULL;
            return FEED_PAUSED;
        }
        if (st != XML_STATUS_OK || p->stopped)
            return expat_error(p);
        rc = keep_pending(p);
        if (rc)
            return rc;
        off += n;
    } while (off < len);
    *consumed = len;
    return 0;
}

/* ---- public ---- */

/* A new expat with our handlers; offsets count from its first byte. */
static int create_expat(struct gw_xml_parser *p)
{
    p->xp = XML_ParserCreateNS("UTF-8", NS_SEP);
    if (!p->xp)
        return GW_ENOMEM;
    p->xp_shift = 0;
    setup_expat(p);
    return 0;
}

/* release_idle, after a feed: if the stream stands between stanzas with nothing pending, free
 * expat and the buffers. What comes next is rebuilt by revive(). */
static void release_idle(struct gw_xml_parser *p)
{
    if (!p->opts.release_idle || !p->xp || p->stopped || p->paused || p->depth != 1 ||
        p->in_stanza || p->in_cdata || gw_buf_size(&p->in) || p->lex != LEX_TEXT ||
        !gw_buf_size(&p->root_tag))
        return;
    XML_ParserFree(p->xp);
    p->xp = NULL;
    gw_buf_cleanup(&p->in);
    gw_buf_cleanup(&p->decls);
    gw_buf_cleanup(&p->inj);
    gw_buf_cleanup(&p->out);
    gw_buf_cleanup(&p->text);
    free(p->frames);
    p->frames = NULL;
    p->n_frames = p->cap_frames = 0;
    arena_reset(p);
}

/* A released parser's next bytes: a new expat that has read the root tag again (its events are
 * not ours), with offsets shifted so that the next byte is at chunk_base as before. */
static int revive(struct gw_xml_parser *p)
{
    if (p->xp)
        return 0;
    if (create_expat(p) != 0) {
        fail(p, GW_ENOMEM, "internal-server-error", "out of memory (parser)");
        return p->err;
    }
    size_t n = gw_buf_size(&p->root_tag);
    p->replaying = true;
    enum XML_Status st = XML_Parse(p->xp, gw_buf_ptr(&p->root_tag), (int)n, XML_FALSE);
    p->replaying = false;
    if (st != XML_STATUS_OK || p->depth != 1) {
        fail(p, GW_EPROTO, "internal-server-error", "the stream parser could not be rebuilt");
        return p->err;
    }
    p->xp_shift = (int64_t)p->chunk_base - (int64_t)n;
    return 0;
}

/* ---- public ---- */

struct gw_xml_parser *gw_xml_new(const struct gw_xml_opts *opts, const struct gw_xml_callbacks *cb,
                                 void *ud)
{
    struct gw_xml_parser *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->opts = *opts;
    if (cb)
        p->cb = *cb;
    p->ud = ud;
    p->stanza_level = opts->mode == GW_XML_DOCUMENT && opts->root_is_stanza ? 0 : 1;
    size_t max = opts->limits.max_stanza;
    size_t inj_max = sat_add(sat_mul(max, ESCAPE_FACTOR), 64);
    gw_buf_init(&p->in, max);
    gw_buf_init(&p->decls, max);
    gw_buf_init(&p->inj, inj_max);
    gw_buf_init(&p->out, sat_add(max, inj_max));
    gw_buf_init(&p->text, max);
    gw_buf_init(&p->root_tag, inj_max);
    p->arena_max = sat_add(sat_mul(max, ARENA_FACTOR), 4096);
    p->arena0.hdr.size = ARENA_INLINE;
    p->arena = &p->arena0.hdr;
    p->cond = "";
    uint64_t salt = 0;
    if (gw_rand_u64(&salt) != 0) {
        free(p);
        return NULL;
    }
    p->hash_salt = (unsigned long)salt | 1; /* 0 would make expat draw its own */
    if (create_expat(p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

void gw_xml_free(struct gw_xml_parser *p)
{
    if (!p)
        return;
    if (p->xp)
        XML_ParserFree(p->xp);
    gw_buf_cleanup(&p->in);
    gw_buf_cleanup(&p->decls);
    gw_buf_cleanup(&p->inj);
    gw_buf_cleanup(&p->out);
    gw_buf_cleanup(&p->text);
    gw_buf_cleanup(&p->root_tag);
    free_context(p);
    arena_reset(p);
    free(p->frames);
    free(p);
}

int gw_xml_reset(struct gw_xml_parser *p)
{
    clear_state(p);
    if (!p->xp) {
        if (create_expat(p) != 0) {
            fail_buf(p, GW_ENOMEM, "parser reset");
            return GW_ENOMEM;
        }
        return 0;
    }
    if (!XML_ParserReset(p->xp, "UTF-8")) {
        fail_buf(p, GW_ENOMEM, "parser reset");
        return GW_ENOMEM;
    }
    p->xp_shift = 0;
    setup_expat(p);
    return 0;
}

int gw_xml_feed(struct gw_xml_parser *p, const char *data, size_t len, size_t *consumed)
{
    size_t used = 0;
    if (consumed)
        *consumed = 0;
    if (p->opts.mode != GW_XML_STREAM || p->paused)
        return GW_EINVAL; /* a paused stream is done: the caller resets it */
    if (p->stopped)
        return p->err;
    int rc = revive(p);
    if (rc)
        return rc;
    rc = feed_all(p, data, len, false, &used);
    if (consumed)
        *consumed = used;
    if (rc == 0)
        release_idle(p);
    return rc == FEED_PAUSED ? 0 : rc;
}

/* A pause here ends the document early: the stanzas after it are not delivered. */
int gw_xml_parse_document(struct gw_xml_parser *p, const char *data, size_t len)
{
    if (p->opts.mode != GW_XML_DOCUMENT)
        return GW_EINVAL;
    int rc = gw_xml_reset(p);
    if (rc)
        return rc;
    size_t used;
    rc = feed_all(p, data, len, true, &used);
    return rc == FEED_PAUSED ? 0 : rc;
}

void gw_xml_pause(struct gw_xml_parser *p)
{
    p->pause_asked = true;
}

bool gw_xml_released(const struct gw_xml_parser *p)
{
    return !p->xp;
}

const char *gw_xml_error_condition(const struct gw_xml_parser *p)
{
    return p->cond;
}

const char *gw_xml_error_text(const struct gw_xml_parser *p)
{
    return p->errtext;
}

/* Unqualified attributes by local name; "xml:lang" and the like name the xml namespace. */
const char *gw_xml_attr(const struct gw_xml_attr *attrs, unsigned n, const char *name)
{
    const char *ns = "";
    if (strncmp(name, "xml:", 4) == 0) {
        ns = NS_XML;
        name += 4;
    }
    for (unsigned i = 0; attrs && i < n && attrs[i].name; i++)
        if (strcmp(attrs[i].name, name) == 0 && strcmp(attrs[i].ns, ns) == 0)
            return attrs[i].value;
    return NULL;
}

/* First child with that local name, in namespace ns (NULL: any namespace). */
const struct gw_xml_node *gw_xml_child(const struct gw_xml_node *n, const char *ns,
                                       const char *name)
{
    for (const struct gw_xml_node *c = n ? n->children : NULL; c; c = c->next)
        if (strcmp(c->name, name) == 0 && (!ns || strcmp(c->ns, ns) == 0))
            return c;
    return NULL;
}
