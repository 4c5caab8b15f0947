/* The hub's socket-free parts: pubsub notifications and items turned into serialized Server-Sent
 * Events (JSON by jansson), the per-node ring and its replay rule, the live.nodes allowlist, and
 * the publish API's bodies (JSON in, an Atom entry or a checked payload out) and answers.
 * Calls: xml (trees, the payload check), xmpp/jid (domains), config (the allowlist), core
 * (buffers, randomness), jansson, libc. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "core/rand.h"
#include "session/hub.h"
#include "xmpp/jid.h"

/* ---- events ---- */

struct gw_hub_event *gw_hub_event_ref(struct gw_hub_event *ev)
{
    ev->refs++;
    return ev;
}

void gw_hub_event_unref(struct gw_hub_event *ev)
{
    if (!ev || --ev->refs)
        return;
    free(ev->id);
    free(ev);
}

/* An id that may stand on an "id:" line: no line breaks (else the line is left out). */
static bool id_line_ok(const char *id)
{
    return id[0] && !strpbrk(id, "\r\n");
}

/* "id: ID\nevent: NAME\ndata: JSON\n\n" (the id line only for items); data is consumed. */
static struct gw_hub_event *event_new(enum gw_hub_kind kind, const char *name, const char *id,
                                      json_t *data)
{
    char *json = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    if (!json)
        return NULL;
    bool with_id = kind == GW_HUB_ITEM && id_line_ok(id);
    size_t cap = strlen(json) + strlen(id) + strlen(name) + 32;
    struct gw_hub_event *ev = calloc(1, sizeof(*ev) + cap);
    if (ev)
        ev->id = strdup(id);
    if (!ev || !ev->id) {
        free(ev);
        free(json);
        return NULL;
    }
    int n = snprintf(ev->bytes, cap, "%s%s%sevent: %s\ndata: %s\n\n", with_id ? "id: " : "",
                     with_id ? id : "", with_id ? "\n" : "", name, json);
    free(json);
    ev->len = (size_t)n;
    ev->refs = 1;
    ev->kind = kind;
    ev->final = kind == GW_HUB_DELETE || kind == GW_HUB_ERROR;
    return ev;
}

static json_t *text_of(const struct gw_xml_node *n)
{
    return n ? json_stringn(n->text, n->text_len) : json_null();
}

/* The link of an Atom entry: href of rel='alternate' (also when rel is absent, RFC 4287 4.2.7.2),
 * else of the first link. */
static json_t *atom_link(const struct gw_xml_node *entry)
{
    const char *first = NULL;
    for (const struct gw_xml_node *c = entry->children; c; c = c->next) {
        if (strcmp(c->ns, GW_NS_ATOM) != 0 || strcmp(c->name, "link") != 0)
            continue;
        const char *href = gw_xml_attr(c->attrs, c->n_attrs, "href");
        const char *rel = gw_xml_attr(c->attrs, c->n_attrs, "rel");
        if (!href)
            continue;
        if (!rel || strcmp(rel, "alternate") == 0)
            return json_string(href);
        if (!first)
            first = href;
    }
    return first ? json_string(first) : json_null();
}

static void atom_fields(json_t *o, const struct gw_xml_node *entry, const char *now)
{
    const struct gw_xml_node *published = gw_xml_child(entry, GW_NS_ATOM, "published");
    json_object_set_new(o, "published", published ? text_of(published) : json_string(now));
    json_object_set_new(o, "title", text_of(gw_xml_child(entry, GW_NS_ATOM, "title")));
    json_object_set_new(o, "summary", text_of(gw_xml_child(entry, GW_NS_ATOM, "summary")));
    json_object_set_new(o, "link", atom_link(entry));
    json_object_set_new(o, "entry_id", text_of(gw_xml_child(entry, GW_NS_ATOM, "id")));
    json_object_set_new(o, "updated", text_of(gw_xml_child(entry, GW_NS_ATOM, "updated")));
}

struct gw_hub_event *gw_hub_event_item(const char *service, const char *node,
                                       const struct gw_xml_node *item, const char *st_bytes,
                                       const char *now)
{
    const char *id = gw_xml_attr(item->attrs, item->n_attrs, "id");
    if (!id || !id[0])
        return NULL;
    const struct gw_xml_node *payload = item->children;
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "node", json_string(node));
    json_object_set_new(o, "service", json_string(service));
    if (payload && strcmp(payload->ns, GW_NS_ATOM) == 0 && strcmp(payload->name, "entry") == 0) {
        atom_fields(o, payload, now);
    } else {
        json_object_set_new(o, "published", json_string(now));
        json_object_set_new(
            o, "xml",
            payload ? json_stringn(st_bytes + payload->start, payload->end - payload->start)
                    : json_null());
    }
    return event_new(GW_HUB_ITEM, "item", id, o);
}

struct gw_hub_event *gw_hub_event_retract(const char *id)
{
    return event_new(GW_HUB_RETRACT, "retract", id, json_pack("{s:s}", "id", id));
}

struct gw_hub_event *gw_hub_event_delete(const char *service, const char *node)
{
    return event_new(GW_HUB_DELETE, "delete", "",
                     json_pack("{s:s,s:s}", "service", service, "node", node));
}

struct gw_hub_event *gw_hub_event_error(const char *condition, const char *text)
{
    return event_new(GW_HUB_ERROR, "error", "",
                     json_pack("{s:s,s:s}", "error", text, "condition", condition));
}

/* The <items/> of a notification: items and retractions, in document order. */
static unsigned items_events(const struct gw_xml_stanza *st, const char *service,
                             const struct gw_xml_node *items, const char *now, gw_hub_event_fn fn,
                             void *ud)
{
    const char *node = gw_xml_attr(items->attrs, items->n_attrs, "node");
    unsigned n = 0;
    if (!node)
        return 0;
    for (const struct gw_xml_node *c = items->children; c; c = c->next) {
        struct gw_hub_event *ev = NULL;
        const char *id = gw_xml_attr(c->attrs, c->n_attrs, "id");
        if (strcmp(c->name, "item") == 0)
            ev = gw_hub_event_item(service, node, c, st->bytes, now);
        else if (strcmp(c->name, "retract") == 0 && id)
            ev = gw_hub_event_retract(id);
        if (ev) {
            fn(ud, service, node, ev);
            n++;
        }
    }
    return n;
}

unsigned gw_hub_message_events(const struct gw_xml_stanza *st, const char *now, gw_hub_event_fn fn,
                               void *ud)
{
    const struct gw_xml_node *msg = st->tree;
    if (!msg || strcmp(st->name, "message") != 0)
        return 0;
    const char *service = gw_xml_attr(msg->attrs, msg->n_attrs, "from");
    const struct gw_xml_node *event = gw_xml_child(msg, GW_NS_PUBSUB_EVENT, "event");
    if (!service || !event)
        return 0;
    unsigned n = 0;
    for (const struct gw_xml_node *c = event->children; c; c = c->next) {
        const char *node = gw_xml_attr(c->attrs, c->n_attrs, "node");
        if (strcmp(c->ns, GW_NS_PUBSUB_EVENT) != 0 || !node)
            continue;
        if (strcmp(c->name, "items") == 0) {
            n += items_events(st, service, c, now, fn, ud);
        } else if (strcmp(c->name, "delete") == 0) {
            struct gw_hub_event *ev = gw_hub_event_delete(service, node);
            if (ev) {
                fn(ud, service, node, ev);
                n++;
            }
        }
    }
    return n;
}

void gw_hub_now(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- the ring ---- */

int gw_hub_ring_init(struct gw_hub_ring *r, unsigned cap)
{
    memset(r, 0, sizeof(*r));
    r->cap = cap;
    if (cap && !(r->ev = calloc(cap, sizeof(*r->ev))))
        return GW_ENOMEM;
    return 0;
}

void gw_hub_ring_cleanup(struct gw_hub_ring *r)
{
    for (unsigned i = 0; i < r->n; i++)
        gw_hub_event_unref(r->ev[(r->head + i) % r->cap]);
    free(r->ev);
    memset(r, 0, sizeof(*r));
}

static struct gw_hub_event *ring_at(const struct gw_hub_ring *r, unsigned i)
{
    return r->ev[(r->head + i) % r->cap];
}

/* Index (0 = oldest) of the event with this id, or -1. */
static int ring_find(const struct gw_hub_ring *r, const char *id)
{
    for (unsigned i = r->n; i-- > 0;)
        if (strcmp(ring_at(r, i)->id, id) == 0)
            return (int)i;
    return -1;
}

static void ring_drop(struct gw_hub_ring *r, unsigned at)
{
    gw_hub_event_unref(ring_at(r, at));
    for (unsigned i = at; i + 1 < r->n; i++)
        r->ev[(r->head + i) % r->cap] = ring_at(r, i + 1);
    r->n--;
}

void gw_hub_ring_push(struct gw_hub_ring *r, struct gw_hub_event *ev)
{
    if (!r->cap)
        return;
    int old = ring_find(r, ev->id);
    if (old >= 0)
        ring_drop(r, (unsigned)old);
    if (r->n == r->cap) {
        gw_hub_event_unref(r->ev[r->head]);
        r->head = (r->head + 1) % r->cap;
        r->n--;
    }
    r->ev[(r->head + r->n) % r->cap] = gw_hub_event_ref(ev);
    r->n++;
}

void gw_hub_ring_remove(struct gw_hub_ring *r, const char *id)
{
    int at = ring_find(r, id);
    if (at >= 0)
        ring_drop(r, (unsigned)at);
}

bool gw_hub_ring_has(const struct gw_hub_ring *r, const char *id)
{
    return ring_find(r, id) >= 0;
}

unsigned gw_hub_ring_after(const struct gw_hub_ring *r, const char *last_id,
                           struct gw_hub_event **out, unsigned max)
{
    int at = last_id ? ring_find(r, last_id) : -1;
    unsigned from = at >= 0 ? (unsigned)at + 1 : 0, n = 0;
    for (unsigned i = from; i < r->n && n < max; i++)
        out[n++] = ring_at(r, i);
    return n;
}

/* ---- the allowlist ---- */

static bool entry_matches(const char *entry, const char *service, const char *node)
{
    const char *slash = strchr(entry, '/');
    size_t sl = slash ? (size_t)(slash - entry) : 0;
    if (!slash || strlen(service) != sl || strncasecmp(entry, service, sl) != 0)
        return false;
    const char *pat = slash + 1;
    size_t pl = strlen(pat);
    if (pl && pat[pl - 1] == '*')
        return strncmp(pat, node, pl - 1) == 0;
    return strcmp(pat, node) == 0;
}

bool gw_hub_allowed(const struct gw_config *cfg, const char *service, const char *node)
{
    if (!node[0])
        return false;
    for (unsigned i = 0; i < cfg->n_live_nodes; i++)
        if (entry_matches(cfg->live_nodes[i], service, node))
            return true;
    return false;
}

/* ---- publishing: request bodies, Atom entries, answers ---- */

static const char *const api_fields[] = {"service", "node", "id",      "title",
                                         "summary", "link", "payload", NULL};
static const char *const demo_fields[] = {"node", "title", "summary", "link", NULL};

static void why_set(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
}

/* Characters XML 1.0 cannot carry (section 2.2): C0 controls but tab, line feed and carriage
 * return, and U+FFFE, U+FFFF. jansson has already checked that the string is UTF-8. */
static bool xml_chars_ok(const char *s)
{
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c < 0x20 && *c != '\t' && *c != '\n' && *c != '\r')
            return false;
        if (c[0] == 0xef && c[1] == 0xbf && (c[2] == 0xbe || c[2] == 0xbf))
            return false;
    }
    return true;
}

/* An identifier (service, node, item id): no control characters at all, and a bound. */
static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return n > 0 && n <= max && xml_chars_ok(s);
}

/* The only links a page may follow safely: absolute http and https URLs without blanks. */
static bool link_ok(const char *s)
{
    size_t skip = strncasecmp(s, "https://", 8) == 0  ? 8
                  : strncasecmp(s, "http://", 7) == 0 ? 7
                                                      : 0;
    if (!skip || !s[skip] || s[skip] == '/')
        return false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return false;
    return true;
}

/* A field that is absent (NULL), a string (its value), or neither (*bad). */
static const char *field(json_t *o, const char *key, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return NULL;
    if (!json_is_string(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* Percent-encode for an XMPP URI's query (RFC 5122): unreserved characters stay. */
static int append_uri_part(struct gw_buf *b, const char *s)
{
    int rc = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c && !rc; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("-._~", *c))
            rc = gw_buf_append(b, c, 1);
        else
            rc = gw_buf_printf(b, "%%%02X", *c);
    }
    return rc;
}

static int append_element(struct gw_buf *b, const char *name, const char *text)
{
    int rc = gw_buf_printf(b, "<%s>", name);
    rc = rc ? rc : gw_buf_append_xml_escaped(b, text, strlen(text));
    return rc ? rc : gw_buf_printf(b, "</%s>", name);
}

/* <entry xmlns='Atom'><title/><summary/>?<link rel='alternate' href=''/>?<id/><published/>
 * <updated/></entry>, its id the item's XMPP URI. */
static int build_atom(struct gw_hub_item *it, const char *title, const char *summary,
                      const char *link, const char *now)
{
    struct gw_buf *b = &it->payload;
    int rc = gw_buf_append_str(b, "<entry xmlns='" GW_NS_ATOM "'>");
    rc = rc ? rc : append_element(b, "title", title);
    if (summary && summary[0])
        rc = rc ? rc : append_element(b, "summary", summary);
    if (link && link[0]) {
        rc = rc ? rc : gw_buf_append_str(b, "<link rel='alternate' href='");
        rc = rc ? rc : gw_buf_append_xml_escaped(b, link, strlen(link));
        rc = rc ? rc : gw_buf_append_str(b, "'/>");
    }
    rc = rc ? rc : gw_buf_append_str(b, "<id>xmpp:");
    rc = rc ? rc : gw_buf_append_xml_escaped(b, it->service, strlen(it->service));
    rc = rc ? rc : gw_buf_append_str(b, "?;node=");
    rc = rc ? rc : append_uri_part(b, it->node);
    rc = rc ? rc : gw_buf_append_str(b, ";item=");
    rc = rc ? rc : append_uri_part(b, it->id);
    rc = rc ? rc : gw_buf_append_str(b, "</id>");
    rc = rc ? rc : append_element(b, "published", now);
    rc = rc ? rc : append_element(b, "updated", now);
    return rc ? rc : gw_buf_append_str(b, "</entry>");
}

struct payload_check {
    struct gw_hub_item *it; /* where the element goes */
    int rc;                 /* of the copy */
    unsigned n;             /* elements seen */
};

static void payload_stanza(void *ud, const struct gw_xml_stanza *st)
{
    struct payload_check *pc = ud;
    if (pc->n++ == 0)
        pc->rc = gw_buf_append(&pc->it->payload, st->bytes, st->len);
}

/* One element by the parser's own rules (limits, no DOCTYPE, PI or comment), and no XML
 * declaration either: its encoding would not be the stream's. The element's bytes are kept. */
static int check_payload(struct gw_hub_item *it, const char *xml, const struct gw_xml_limits *lim,
                         char *why, size_t whylen)
{
    size_t n = strlen(xml), skip = strspn(xml, " \t\r\n");
    if (strncmp(xml + skip, "<?", 2) == 0) {
        why_set(why, whylen, "%s", "payload: no XML declaration or processing instruction");
        return GW_EINVAL;
    }
    struct gw_xml_opts o = {.mode = GW_XML_DOCUMENT, .limits = *lim, .root_is_stanza = true};
    struct gw_xml_callbacks cb = {.on_stanza = payload_stanza};
    struct payload_check pc = {.it = it};
    struct gw_xml_parser *p = gw_xml_new(&o, &cb, &pc);
    if (!p)
        return GW_ENOMEM;
    int rc = gw_xml_parse_document(p, xml, n);
    if (rc == GW_EPROTO || rc == GW_ELIMIT || (!rc && pc.n != 1)) {
        why_set(why, whylen, "payload is not one well-formed XML element: %s",
                rc ? gw_xml_error_text(p) : "no element");
        rc = GW_EINVAL;
    }
    gw_xml_free(p);
    return rc ? rc : pc.rc;
}

/* Every key is one the body may hold. */
static int check_fields(json_t *o, const char *const *known, char *why, size_t whylen)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        const char *const *k = known;
        while (*k && strcmp(*k, key) != 0)
            k++;
        if (!*k) {
            why_set(why, whylen, "unknown field: %.64s", key);
            return GW_EINVAL;
        }
    }
    return 0;
}

/* Where the item goes: "service" and "node", or the demo's "node" as "<service>/<node>". */
static int read_target(struct gw_hub_item *it, json_t *o, enum gw_hub_body kind, bool *bad)
{
    const char *service = field(o, "service", bad), *node = field(o, "node", bad);
    if (kind == GW_HUB_BODY_DEMO && node) {
        const char *slash = strchr(node, '/');
        if (!slash || (size_t)(slash - node) >= sizeof(it->service))
            return GW_EINVAL;
        snprintf(it->service, sizeof(it->service), "%.*s", (int)(slash - node), node);
        node = slash + 1;
    } else if (service) {
        snprintf(it->service, sizeof(it->service), "%s", service);
        if (strlen(service) >= sizeof(it->service))
            return GW_EINVAL;
    }
    if (!node || !name_ok(node, sizeof(it->node) - 1) || !gw_jid_domain_valid(it->service))
        return GW_EINVAL;
    snprintf(it->node, sizeof(it->node), "%s", node);
    return 0;
}

/* The entry's fields, or the payload. */
static int read_content(struct gw_hub_item *it, json_t *o, const struct gw_xml_limits *lim,
                        const char *now, char *why, size_t whylen)
{
    bool bad = false;
    const char *title = field(o, "title", &bad), *summary = field(o, "summary", &bad);
    const char *link = field(o, "link", &bad), *payload = field(o, "payload", &bad);
    if (bad) {
        why_set(why, whylen, "%s", "title, summary, link and payload must be strings");
        return GW_EINVAL;
    }
    if (payload && (title || summary || link)) {
        why_set(why, whylen, "%s", "either payload or title (summary, link), not both");
        return GW_EINVAL;
    }
    if (payload)
        return check_payload(it, payload, lim, why, whylen);
    if (!title || !title[0]) {
        why_set(why, whylen, "%s", "missing field: title (or payload)");
        return GW_EINVAL;
    }
    if (!xml_chars_ok(title) || (summary && !xml_chars_ok(summary))) {
        why_set(why, whylen, "%s", "title and summary may not hold control characters");
        return GW_EINVAL;
    }
    if (link && link[0] && !link_ok(link)) {
        why_set(why, whylen, "%s", "link must be an http or https URL");
        return GW_EINVAL;
    }
    if (!it->id[0] && gw_rand_hex(it->id, 16) != 0)
        return GW_EIO;
    return build_atom(it, title, summary, link, now);
}

int gw_hub_item_parse(struct gw_hub_item *it, enum gw_hub_body kind, const char *body, size_t len,
                      const struct gw_xml_limits *limits, const char *now, char *why, size_t whylen)
{
    memset(it, 0, sizeof(*it));
    gw_buf_init(&it->payload, GW_HUB_PUBLISH_BODY_MAX);
    why[0] = '\0';
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = GW_EINVAL;
    bool bad = false;
    if (!json_is_object(o))
        why_set(why, whylen, "%s", "the body is not a JSON object");
    else if (check_fields(o, kind == GW_HUB_BODY_DEMO ? demo_fields : api_fields, why, whylen))
        ;
    else if (read_target(it, o, kind, &bad) != 0 || bad)
        why_set(why, whylen, "%s",
                kind == GW_HUB_BODY_DEMO ? "node must be \"<service>/<node>\""
                                         : "service (a domain) and node are required strings");
    else if (field(o, "id", &bad) && !name_ok(field(o, "id", &bad), GW_HUB_ITEM_ID_MAX))
        why_set(why, whylen, "%s", "id must be 1 to 255 bytes without control characters");
    else if (bad)
        why_set(why, whylen, "%s", "id must be a string");
    else {
        const char *id = field(o, "id", &bad);
        snprintf(it->id, sizeof(it->id), "%s", id ? id : "");
        rc = read_content(it, o, limits, now, why, whylen);
        if (rc == GW_ELIMIT) {
            why_set(why, whylen, "%s", "the entry is too large");
            rc = GW_EINVAL;
        }
    }
    json_decref(o);
    return rc;
}

void gw_hub_item_cleanup(struct gw_hub_item *it)
{
    gw_buf_cleanup(&it->payload);
}

/* ---- answers ---- */

static const struct {
    const char *condition; /* the service's */
    unsigned status;       /* HTTP's */
} refused_status[] = {
    {"forbidden", 403},      {"not-authorized", 403},
    {"item-not-found", 404}, {"remote-server-not-found", 404},
    {"not-allowed", 405},    {"conflict", 409},
    {"bad-request", 400},    {"not-acceptable", 400},
    {"jid-malformed", 400},
};

static const char *const outcome_names[GW_HUB_PUB_COUNT] = {
    [GW_HUB_PUB_OK] = "ok",     [GW_HUB_PUB_REFUSED] = "refused", [GW_HUB_PUB_TIMEOUT] = "timeout",
    [GW_HUB_PUB_LOST] = "lost", [GW_HUB_PUB_DOWN] = "down",       [GW_HUB_PUB_INVALID] = "invalid",
};

const char *gw_hub_pub_outcome_name(enum gw_hub_pub_outcome o)
{
    return o >= 0 && o < GW_HUB_PUB_COUNT ? outcome_names[o] : "";
}

static unsigned status_of(const struct gw_hub_pub_result *res, const char **cond, const char **text)
{
    switch (res->outcome) {
    case GW_HUB_PUB_OK:
        return 200;
    case GW_HUB_PUB_REFUSED:
        *cond = res->condition ? res->condition : "undefined-condition";
        *text = "the pubsub service refused the item";
        for (size_t i = 0; i < sizeof(refused_status) / sizeof(refused_status[0]); i++)
            if (strcmp(refused_status[i].condition, *cond) == 0)
                return refused_status[i].status;
        return 502;
    case GW_HUB_PUB_TIMEOUT:
        *cond = "remote-server-timeout";
        *text = "the pubsub service did not answer in time";
        return 504;
    case GW_HUB_PUB_LOST:
        *cond = "remote-connection-failed";
        *text = "the live-updates hub lost its upstream before the answer";
        return 502;
    case GW_HUB_PUB_INVALID:
        *cond = "bad-request";
        *text = res->text && res->text[0] ? res->text : "bad request";
        return 400;
    default:
        *cond = "service-unavailable";
        *text = "the live-updates hub is not online";
        return 503;
    }
}

/* A text from upstream joins the answer when it is short; the answer must fit in out->body. */
static json_t *answer_json(const struct gw_hub_pub_result *res, unsigned status, const char *cond,
                           const char *text)
{
    if (status == 200)
        return json_pack("{s:s}", "id", res->id ? res->id : "");
    json_t *o = json_pack("{s:s,s:s}", "error", text, "condition", cond);
    if (o && res->outcome == GW_HUB_PUB_REFUSED && res->text && strlen(res->text) <= 300) {
        json_t *t = json_string(res->text); /* NULL when not UTF-8: left out */
        if (t)
            json_object_set_new(o, "text", t);
    }
    return o;
}

void gw_hub_pub_answer_of(const struct gw_hub_pub_result *res, struct gw_hub_answer *out)
{
    const char *cond = "", *text = "";
    memset(out, 0, sizeof(*out));
    out->status = status_of(res, &cond, &text);
    out->allow = out->status == 405 ? "POST" : NULL;
    json_t *o = answer_json(res, out->status, cond, text);
    size_t n = o ? json_dumpb(o, out->body, sizeof(out->body) - 1, JSON_COMPACT) : 0;
    json_decref(o);
    if (n == 0 || n >= sizeof(out->body) - 1) {
        /* Out of memory, or too long (an id or a why cannot be): a fixed answer. */
        out->status = 500;
        out->allow = NULL;
        n = (size_t)snprintf(out->body, sizeof(out->body),
                             "{\"error\":\"internal error\",\"condition\":\"internal-error\"}");
    }
    out->body[n] = '\n';
    out->len = n + 1;
}
