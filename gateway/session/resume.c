/* Streams left resumable (XEP-0198): the session reads <enabled resume='true'/> as it goes by;
 * when its client side is lost, session.c leaves the upstream to the server and resume_keep()
 * remembers the stream's id with the JID for the server's window, so that a session that resumes
 * it (<resumed previd=''/>, where a bind result would come) knows its JID. Entries are kept in
 * drop order, bounded by limits.max_sessions. Calls: session.c (internal.h), xmpp/upstream, core.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/log.h"
#include "session/internal.h"
#include "xmpp/upstream.h"

#define SM_WINDOW_DEFAULT                                                                          \
    600                     /* s: how long a dropped stream stays resumable when the server names  \
                               no 'max' (Prosody's smacks_hibernation_time) */
#define SM_WINDOW_MAX 86400 /* s: a server's 'max' is believed up to this */

void resume_drop_oldest(struct gw_sessions *tbl)
{
    struct resumable *r = tbl->res_head;
    tbl->res_head = r->next;
    if (!tbl->res_head)
        tbl->res_tail = NULL;
    gw_strmap_del(&tbl->resumable, &r->by_id);
    tbl->n_resumable--;
    free(r->jid);
    free(r);
}

/* Forget what the server has forgotten (and the oldest, past limits.max_sessions). Entries are
 * kept in drop order; one with a longer window waits behind an older one, which is harmless. */
static void resume_expire(struct gw_sessions *tbl)
{
    uint64_t now = uv_now(tbl->ctx->loop);
    while (tbl->res_head &&
           (tbl->res_head->expires_ms <= now || tbl->n_resumable > tbl->ctx->cfg->max_sessions))
        resume_drop_oldest(tbl);
}

/* The client side of s vanished with resumption enabled: remember its id and JID. */
void resume_keep(struct gw_session *s)
{
    struct gw_sessions *tbl = s->ctx->sessions;
    resume_expire(tbl);
    size_t n = strlen(s->sm_id);
    struct resumable *r = calloc(1, sizeof(*r) + n + 1);
    if (!r || !(r->jid = strdup(s->jid))) {
        free(r);
        return; /* the stream stays resumable; the session that resumes it will lack its JID */
    }
    memcpy(r->id, s->sm_id, n + 1);
    struct gw_strmap_node *old = gw_strmap_find(&tbl->resumable, r->id);
    if (old)
        gw_strmap_del(&tbl->resumable, old); /* the older entry expires in its turn */
    r->window = s->sm_window;
    r->expires_ms = uv_now(s->ctx->loop) + (uint64_t)s->sm_window * 1000;
    gw_strmap_add(&tbl->resumable, &r->by_id, r->id);
    if (tbl->res_tail)
        tbl->res_tail->next = r;
    else
        tbl->res_head = r;
    tbl->res_tail = r;
    tbl->n_resumable++;
}

/* The JID of a resumable stream (NULL: not known here) and its window, taken out of the table.
 * The caller frees the JID. */
char *resume_take(struct gw_sessions *tbl, const char *id, unsigned *window)
{
    *window = SM_WINDOW_DEFAULT;
    resume_expire(tbl);
    struct gw_strmap_node *n = gw_strmap_find(&tbl->resumable, id);
    if (!n)
        return NULL;
    struct resumable *r = GW_CONTAINER_OF(n, struct resumable, by_id);
    gw_strmap_del(&tbl->resumable, n);
    char *jid = r->jid;
    r->jid = NULL;
    *window = r->window;
    r->expires_ms = 0; /* the list entry goes at the next expiry */
    return jid;
}

/* XEP-0198 answers the session reads as they go by to the client: <enabled resume='true'/>
 * makes the stream resumable; <resumed previd=''/> in place of a bind result gives the session
 * the JID of the stream it resumed. */
void resume_stanza(struct gw_session *s, const struct gw_xml_stanza *st)
{
    const struct gw_xml_node *n = st->tree;
    const char *resume = gw_xml_attr(n->attrs, n->n_attrs, "resume");
    const char *id = gw_xml_attr(n->attrs, n->n_attrs, "id");
    if (strcmp(st->name, "enabled") == 0 && s->state == GW_SESSION_BOUND && id && resume &&
        (strcmp(resume, "true") == 0 || strcmp(resume, "1") == 0)) {
        const char *max = gw_xml_attr(n->attrs, n->n_attrs, "max");
        unsigned long w = max ? strtoul(max, NULL, 10) : 0;
        free(s->sm_id);
        s->sm_id = strdup(id);
        s->sm_window = w && w <= SM_WINDOW_MAX ? (unsigned)w : SM_WINDOW_DEFAULT;
        GW_DEBUG(&s->ctx->log, s->sid, s->jid, "stream management: resumable for %u s",
                 s->sm_window);
        return;
    }
    const char *previd = gw_xml_attr(n->attrs, n->n_attrs, "previd");
    if (strcmp(st->name, "resumed") != 0 || s->state != GW_SESSION_BINDING || !previd)
        return;
    char *jid = resume_take(s->ctx->sessions, previd, &s->sm_window);
    free(s->sm_id);
    s->sm_id = strdup(previd);
    if (jid) {
        s->jid = jid;
        gw_strmap_add(&s->ctx->sessions->by_jid, &s->by_jid, s->jid);
        gw_upstream_set_jid(s->up, s->jid);
    }
    s->ctx->metrics.resumed++;
    session_transition(s, GW_SESSION_BOUND);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "resumed a stream (XEP-0198)%s",
            jid ? "" : ": its JID is not known on this node");
}

void resume_free_all(struct gw_sessions *tbl)
{
    while (tbl->res_head)
        resume_drop_oldest(tbl);
}
