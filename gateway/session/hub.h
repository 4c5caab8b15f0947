/* The live-updates hub: one upstream session with no browser behind it (GW_SESSION_AUTH_GATEWAY
 * as live.jid, GW_TRANSPORT_INTERNAL), subscribed once per pubsub node that has viewers and
 * unsubscribed live.linger seconds after the last one left. Every item it receives is parsed once
 * and turned into one serialized Server-Sent Event (bytes, shared by reference), appended to a
 * bounded per-node ring of the last live.replay events; the ring is filled with a pubsub items
 * request when a node is first viewed. Whoever shows the events (web/sse.c) watches a node
 * through a struct gw_hub_watch and reads the ring from a viewer's last event id. The publish
 * API publishes through the same session (gw_hub_publish).
 * Owns: the hub's session, its nodes and their rings. Calls: session, xml, config, core, jansson.
 *
 * hub_event.c holds what needs no socket (events from stanzas, the ring, the allowlist, publish
 * bodies and answers); hub.c the session, the nodes' lives and the publishes in flight. */
#ifndef GW_SESSION_HUB_H
#define GW_SESSION_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/buf.h"
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

/* ---- publishing: the publish API (admin POST /api/publish, the demo's POST /demo/publish) ---- */

#define GW_HUB_PUBLISH_BODY_MAX (64u * 1024u) /* a publish request's JSON body */
#define GW_HUB_PUBLISH_TIMEOUT_MS 10000u      /* the service's answer is due within this */
#define GW_HUB_ITEM_ID_MAX 255u               /* bytes of an item id */

/* Which body a request carries. */
enum gw_hub_body {
    /* {"service", "node", "title", "summary"?, "link"?, "id"?}: an Atom entry is built;
     * {"service", "node", "payload", "id"?}: one XML element of the caller's own. */
    GW_HUB_BODY_API,
    /* {"node": "<service>/<node>", "title", "summary"?, "link"?}: an Atom entry. */
    GW_HUB_BODY_DEMO,
};

/* One item to publish, read from a request body. */
struct gw_hub_item {
    char service[256];               /* pubsub service (a JID domain) */
    char node[512];                  /* node name */
    char id[GW_HUB_ITEM_ID_MAX + 1]; /* item id; "" lets the service choose */
    struct gw_buf payload;           /* the one element published, checked */
};

/* Read a publish body into it (cleaned up by gw_hub_item_cleanup, also after an error). Strings
 * must be JSON strings; unknown fields are refused. title is required for an Atom entry, link
 * must be an http or https URL, text may not hold characters XML cannot carry. The entry gets
 * <published/> and <updated/> = now (RFC 3339), <link rel='alternate'/>, and as <id/> the item's
 * XMPP URI (RFC 5122, "xmpp:service?;node=...;item=...", as XEP-0060 links items); an Atom entry
 * without "id" gets 32 random hex characters as its item id. A payload must be one well-formed
 * element within limits, with no XML declaration, DOCTYPE, processing instruction or comment (the
 * stream parser's rules). 0; GW_EINVAL with a one-line reason in why (for the answer); GW_ENOMEM,
 * GW_EIO (randomness). */
int gw_hub_item_parse(struct gw_hub_item *it, enum gw_hub_body kind, const char *body, size_t len,
                      const struct gw_xml_limits *limits, const char *now, char *why,
                      size_t whylen) GW_MUST_CHECK;
void gw_hub_item_cleanup(struct gw_hub_item *it);

/* How a publish ended. */
enum gw_hub_pub_outcome {
    GW_HUB_PUB_OK,      /* published */
    GW_HUB_PUB_REFUSED, /* the service answered an iq error (condition) */
    GW_HUB_PUB_TIMEOUT, /* no answer within GW_HUB_PUBLISH_TIMEOUT_MS */
    GW_HUB_PUB_LOST,    /* the hub's upstream went before the answer came */
    GW_HUB_PUB_DOWN,    /* no hub, or its upstream is not bound: nothing was sent */
    GW_HUB_PUB_INVALID, /* the request body (gw_hub_item_parse): nothing was sent */
    GW_HUB_PUB_COUNT
};

struct gw_hub_pub_result {
    enum gw_hub_pub_outcome outcome;
    const char *id;        /* OK: the item id the service returned, else the one sent */
    const char *condition; /* REFUSED: the stanza error condition ("forbidden") */
    const char *text;      /* REFUSED: the error's <text/>; INVALID: why; else NULL */
};

/* The HTTP answer to a publish, the same on both ports: 200 {"id"}; otherwise {"error",
 * "condition"}: REFUSED by condition (forbidden and not-authorized 403, item-not-found and
 * remote-server-not-found 404, not-allowed 405 with Allow: POST, conflict 409, bad-request,
 * not-acceptable and jid-malformed 400, any other 502), TIMEOUT 504, LOST 502, DOWN 503, INVALID
 * 400. */
struct gw_hub_answer {
    unsigned status;   /* HTTP status */
    const char *allow; /* an Allow header's value (405), or NULL */
    char body[1024];   /* one JSON object and a newline */
    size_t len;        /* its bytes */
};
void gw_hub_pub_answer_of(const struct gw_hub_pub_result *res, struct gw_hub_answer *out);
/* The same, counted under res->outcome (hub may be NULL: not counted). */
void gw_hub_pub_answer(struct gw_hub *hub, const struct gw_hub_pub_result *res,
                       struct gw_hub_answer *out);
/* Publishes answered with this outcome so far (0 for a NULL hub). */
uint64_t gw_hub_pub_count(const struct gw_hub *hub, enum gw_hub_pub_outcome o);
/* The outcome's name in metrics ("ok", "refused", ...). */
const char *gw_hub_pub_outcome_name(enum gw_hub_pub_outcome o);

/* Called once with the outcome (never DOWN or INVALID); res and its strings are lent. */
typedef void (*gw_hub_publish_fn)(void *ud, const struct gw_hub_pub_result *res);
struct gw_hub_publish; /* one publish waiting for the service's answer */

/* Send the item as live.jid (a XEP-0060 publish iq to it->service). fn is called exactly once,
 * later on the loop (never from inside this call), unless gw_hub_publish_cancel() came first.
 * Returns 0 and sets *out; or, nothing sent and fn never called: GW_ECLOSED (no hub, or not
 * bound: answer DOWN), GW_ENOMEM, GW_EIO. */
int gw_hub_publish(struct gw_hub *hub, const struct gw_hub_item *it, gw_hub_publish_fn fn, void *ud,
                   struct gw_hub_publish **out) GW_MUST_CHECK;
/* The asker went away: fn is not called (the item may still be published). Never after fn. */
void gw_hub_publish_cancel(struct gw_hub_publish *p);

#endif
