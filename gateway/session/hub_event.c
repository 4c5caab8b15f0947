/* The hub's socket-free parts: pubsub notifications and items turned into serialized Server-Sent
 * Events (JSON by jansson), the per-node ring and its replay rule, the live.nodes allowlist.
 * Calls: xml (trees), config (the allowlist), jansson, libc. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "config/config.h"
#include "session/hub.h"

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
