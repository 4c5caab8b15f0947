/* The live-updates hub: one upstream session with no browser behind it (GW_SESSION_AUTH_GATEWAY
 * as live.jid, GW_TRANSPORT_INTERNAL), subscribed once per pubsub node that has viewers and
 * unsubscribed live.linger seconds after the last one left. Every item it receives is parsed once
 * and turned into one serialized Server-Sent Event (bytes, shared by reference), appended to a
 * bounded per-node ring of the last live.replay events; the ring is filled with a pubsub items
 * request when a node is first viewed. Whoever shows the events (web/sse.c) watches a node
 * through a struct gw_hub_watch and reads the ring from a viewer's last event id.
 * Owns: the hub's session, its nodes and their rings. Calls: session, xml, config, core, jansson.
 *
 * hub_event.c holds what needs no socket (events from stanzas, the ring, the allowlist); hub.c the
 * session and the nodes' lives. */
#ifndef GW_SESSION_HUB_H
#define GW_SESSION_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include "core/ctx.h"
#include "core/err.h"
#include "xml/xml.h"

#define GW_NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define GW_NS_PUBSUB_EVENT "http://jabber.org/protocol/pubsub#event"
#define GW_NS_ATOM "http://www.w3.org/2005/Atom"

struct gw_config;
struct gw_hub;

/* ---- events: serialized once, shared by the ring and every viewer's queue ---- */

enum gw_hub_kind {
    GW_HUB_ITEM,    /* "event: item": a published item */
    GW_HUB_RETRACT, /* "event: retract": {"id"} of an item taken back */
    GW_HUB_DELETE,  /* "event: delete": the node is gone; the stream ends after it */
    GW_HUB_ERROR,   /* "event: error": the hub lost its upstream or the node; the stream ends */
};

struct gw_hub_event {
    unsigned refs;         /* holders: the ring, viewers' queues */
    enum gw_hub_kind kind; /* what it says */
    bool final;            /* the stream ends after this event */
    char *id;              /* the item id ("" when none), owned */
    size_t len;            /* bytes of the serialized event */
    char bytes[];          /* "id: ...\nevent: item\ndata: {...}\n\n" */
};

struct gw_hub_event *gw_hub_event_ref(struct gw_hub_event *ev);
void gw_hub_event_unref(struct gw_hub_event *ev); /* NULL is fine */

/* The event of one <item/> of node at service. st_bytes is the stanza the item's offsets point
 * into; now ("2024-05-01T12:00:00Z") stands in for a payload without <published/>. NULL: no
 * memory, or an item without an id. */
struct gw_hub_event *gw_hub_event_item(const char *service, const char *node,
                                       const struct gw_xml_node *item, const char *st_bytes,
                                       const char *now);
/* event: retract {"id"}; event: delete {"service","node"}; event: error {"error","condition"}. */
struct gw_hub_event *gw_hub_event_retract(const char *id);
struct gw_hub_event *gw_hub_event_delete(const char *service, const char *node);
struct gw_hub_event *gw_hub_event_error(const char *condition, const char *text);

/* Called for each event a pubsub notification carries, in order; the callee owns ev. */
typedef void (*gw_hub_event_fn)(void *ud, const char *service, const char *node,
                                struct gw_hub_event *ev);
/* The events of one upstream <message/> (pubsub#event items, retractions, deletion). Returns how
 * many were found; 0 for any other message. */
unsigned gw_hub_message_events(const struct gw_xml_stanza *st, const char *now, gw_hub_event_fn fn,
                               void *ud);

/* now as RFC 3339 UTC, in out (at least 21 bytes). */
void gw_hub_now(char *out, size_t outlen);

/* ---- the ring: the last `cap` items of one node ---- */

struct gw_hub_ring {
    struct gw_hub_event **ev; /* cap slots, oldest at head */
    unsigned cap;             /* live.replay */
    unsigned head;            /* slot of the oldest */
    unsigned n;               /* events held */
};

int gw_hub_ring_init(struct gw_hub_ring *r, unsigned cap) GW_MUST_CHECK;
void gw_hub_ring_cleanup(struct gw_hub_ring *r);
/* Append (a reference is taken); an older event with the same id goes, and the oldest when full. */
void gw_hub_ring_push(struct gw_hub_ring *r, struct gw_hub_event *ev);
/* Drop the event with this id, if held. */
void gw_hub_ring_remove(struct gw_hub_ring *r, const char *id);
bool gw_hub_ring_has(const struct gw_hub_ring *r, const char *id);
/* What a viewer replays, oldest first, into out (at most max, references not taken): with
 * last_id, every event after it (all of them when the id is unknown; none when it is the newest);
 * without, all. */
unsigned gw_hub_ring_after(const struct gw_hub_ring *r, const char *last_id,
                           struct gw_hub_event **out, unsigned max);

/* ---- the allowlist (live.nodes) ---- */

/* Is service/node in live.nodes? Services compare without case; a '*' ending an entry's node
 * matches any suffix. */
bool gw_hub_allowed(const struct gw_config *cfg, const char *service, const char *node);

/* ---- the hub ---- */

/* What a watcher hears. Both come from loop callbacks only, never from a call the watcher made. */
struct gw_hub_watch_ops {
    /* The node's cache is loaded (after gw_hub_watch() returned 0): call gw_hub_replay() now. */
    void (*ready)(void *ud);
    /* A new event after the replay. ev is lent: take a reference to keep it. When ev->final the
     * watch is already detached (gw_hub_unwatch() is then a no-op). */
    void (*event)(void *ud, struct gw_hub_event *ev);
};

/* One watcher of one node, embedded in the watcher's own struct. */
struct gw_hub_watch {
    const struct gw_hub_watch_ops *ops; /* set by the watcher */
    void *ud;                           /* passed to ops */
    struct hub_node *node;              /* the hub's: NULL when not watching */
    struct gw_hub_watch *prev, *next;   /* the hub's: the node's watchers */
    bool started;                       /* the hub's: replayed, hears live events */
};

/* Start the hub (ctx->cfg->live_jid set): the password is read and the login begins. NULL with one
 * line in err. */
struct gw_hub *gw_hub_new(struct gw_ctx *ctx, char *err, size_t errlen);
/* Ends the hub's session (no unsubscriptions are sent); watchers must be gone already. */
void gw_hub_free(struct gw_hub *hub);

/* Watch service/node. 1: the cache is there, call gw_hub_replay() at once; 0: ready() follows.
 * GW_EINVAL: not in live.nodes; GW_ENOMEM. */
int gw_hub_watch(struct gw_hub *hub, const char *service, const char *node,
                 struct gw_hub_watch *w) GW_MUST_CHECK;
/* The replay for a watcher (see gw_hub_ring_after; cache false: nothing); from now on it hears
 * live events. References are not taken. */
unsigned gw_hub_replay(struct gw_hub_watch *w, const char *last_id, bool cache,
                       struct gw_hub_event **out, unsigned max);
/* Stop watching (the node lingers when this was its last watcher). */
void gw_hub_unwatch(struct gw_hub_watch *w);

/* The hub's upstream is bound. */
bool gw_hub_up(const struct gw_hub *hub);

#endif
