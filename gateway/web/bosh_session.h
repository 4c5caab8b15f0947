/* BOSH sessions (XEP-0124 + XEP-0206), apart from HTTP: the sid table (with short-lived tombstones
 * of sessions that upstream ended), each session's rid window, its held, early and replayed
 * requests, its deadlines (wait, the write deadline of a due answer, an early request's wait,
 * inactivity, pause, creation, tombstone) on one uv timer, key sequencing,
 * restarts, terminate, and the sink it gives its core session (session.h). The HTTP adapter
 * (bosh.c) hands over whole request bodies and writes the answers; this module never touches a
 * connection itself: it asks the adapter through struct gw_bosh_conn_ops. Private to web/ (and the
 * unit tests). Calls: session, bosh_proto, config, core, libuv (timers). */
#ifndef GW_WEB_BOSH_SESSION_H
#define GW_WEB_BOSH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include "core/ctx.h"
#include "core/err.h"
#include "web/bosh.h" /* the prebind types */

struct gw_bosh_sessions;
struct gw_bosh_req;

/* What the adapter does for a request's connection. conn is the adapter's own handle, as given
 * to gw_bosh_req_new(). Both may be called from inside any call below. */
struct gw_bosh_conn_ops {
    /* The answer is ready: call gw_bosh_req_answer() once the connection can be written. */
    void (*ready)(void *conn);
    /* Close the connection without an answer (a repeated rid took its place, or a due answer
     * was not taken within http.write_timeout). The request is freed when this returns: the
     * adapter forgets it. */
    void (*kill)(void *conn);
};

/* An answer to write. body stays valid until gw_bosh_req_close(). */
struct gw_bosh_answer {
    unsigned status;  /* HTTP status */
    bool xml;         /* text/xml (a BOSH body); false: text/plain, no body */
    const char *body; /* the body bytes */
    size_t len;       /* their length */
    bool created;     /* the session creation answer (it tells the sid): node_id's cookie */
};

/* The BOSH sessions of the gateway; ops is kept. NULL on ENOMEM. */
struct gw_bosh_sessions *gw_bosh_sessions_new(struct gw_ctx *ctx,
                                              const struct gw_bosh_conn_ops *ops);
/* Ends every BOSH session and its core session. Requests still held are freed, not answered: call
 * it when the connections are gone. The loop must run once more to close the timers. */
void gw_bosh_sessions_free(struct gw_bosh_sessions *t);
/* BOSH sessions in the sid table, tombstones included. */
size_t gw_bosh_sessions_count(const struct gw_bosh_sessions *t);

/* gw_bosh_prebind() (bosh.h) on these sessions. */
int gw_bosh_sessions_prebind(struct gw_bosh_sessions *t, const struct gw_prebind_req *req,
                             gw_prebind_fn fn, void *ud, struct gw_prebind **out) GW_MUST_CHECK;

/* A request arriving on connection conn (fd: its socket, to tell connections apart; peer: the
 * client address for logs). NULL on ENOMEM. */
struct gw_bosh_req *gw_bosh_req_new(struct gw_bosh_sessions *t, void *conn, int fd,
                                    const char *peer);
/* The whole request body is here (copied as needed). ready() follows, now or later. */
void gw_bosh_req_submit(struct gw_bosh_req *r, const char *body, size_t len);
/* The answer, once ready() was called (composed now if it carries the session's stanzas).
 * GW_EAGAIN: no answer is due yet. */
int gw_bosh_req_answer(struct gw_bosh_req *r, struct gw_bosh_answer *out) GW_MUST_CHECK;
/* The adapter is done with r: its answer went out, or its connection went away before (a held
 * request the browser gave up). r is freed. */
void gw_bosh_req_close(struct gw_bosh_req *r);

/* ---- views for tests and the fuzz target ---- */

/* The rid of r (0 before it was read). */
unsigned long long gw_bosh_req_rid(const struct gw_bosh_req *r);
/* Requests a session holds (waiting for data or a deadline) and early ones (a rid gap); false
 * when no session has that sid (a tombstone has none). */
bool gw_bosh_sessions_requests(struct gw_bosh_sessions *t, const char *sid, unsigned *held,
                               unsigned *early);
/* Every session's invariants hold: held requests within hold; held, early and replayed ones
 * within requests; every request a session holds with a deadline; no session without a pending
 * deadline, and its timer set for it. Returns the number of broken ones (0: fine). */
unsigned gw_bosh_sessions_check(struct gw_bosh_sessions *t);

#endif
