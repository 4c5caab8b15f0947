/* Streams left resumable (XEP-0198): the session reads <enabled resume='true'/> as it goes by;
 * when its client side is lost, session.c leaves the upstream to the server and resume_keep()
 * remembers the stream's id with the JID for the server's window, so that a session that resumes
 * it (<resumed previd=''/>, where a bind result would come) knows its JID. Entries are kept in
 * drop order, bounded by limits.max_sessions. A stream another node left resumable (its drain)
 * is not in that table: the session then takes the bare JID from the identity the client's SASL
 * named on the new stream (the server checks that a resumption is the same user's), and the full
 * JID from the first stanza the server addresses to it. Calls: session.c (internal.h),
 * xmpp/upstream, xmpp/jid, xml, core, OpenSSL (base64, cleanse).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config/config.h"
#include "core/log.h"
#include "session/internal.h"
#include "xmpp/jid.h"
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
    if (!jid && s->auth_jid && (jid = strdup(s->auth_jid)) != NULL)
        s->jid_bare = true; /* another node held it: the full JID comes with a stanza */
    if (jid) {
        s->jid = jid;
        gw_strmap_add(&s->ctx->sessions->by_jid, &s->by_jid, s->jid);
        if (!s->jid_bare)
            gw_upstream_set_jid(s->up, s->jid);
    }
    s->ctx->metrics.resumed++;
    session_transition(s, GW_SESSION_BOUND);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "resumed a stream (XEP-0198)%s",
            !jid          ? ": its JID is not known on this node"
            : s->jid_bare ? " held by another node; the full JID follows"
                          : "");
}

/* ---- who a stream resumed here belongs to ---- */

/* One element parsed alone, its tree handed to fn. 0, or the parser's error. */
struct one_el {
    void (*fn)(struct gw_session *s, const struct gw_xml_stanza *st);
    struct gw_session *s;
};

static bool want_all(void *ud, const char *ns, const char *name)
{
    return true;
}

static void on_one(void *ud, const struct gw_xml_stanza *st)
{
    struct one_el *o = ud;
    if (st->tree)
        o->fn(o->s, st);
}

static void parse_alone(struct gw_session *s, const char *bytes, size_t len,
                        void (*fn)(struct gw_session *, const struct gw_xml_stanza *))
{
    const struct gw_config *cfg = s->ctx->cfg;
    struct gw_xml_opts xo = {
        .mode = GW_XML_DOCUMENT,
        .limits = {cfg->max_stanza, cfg->max_depth, cfg->max_attrs},
        .root_is_stanza = true,
    };
    struct gw_xml_callbacks cb = {.want_tree = want_all, .on_stanza = on_one};
    struct one_el o = {fn, s};
    struct gw_xml_parser *p = gw_xml_new(&xo, &cb, &o);
    if (!p)
        return;
    if (gw_xml_parse_document(p, bytes, len) != 0)
        GW_DEBUG(&s->ctx->log, s->sid, s->jid, "an element read for its JID did not parse");
    gw_xml_free(p);
}

/* "local@domain" of the session's domain into s->auth_jid, when it is a valid bare JID. A JID
 * (an authzid) is taken as it is if it is of the session's domain. */
static void set_auth_jid(struct gw_session *s, const char *id, size_t n, bool is_jid)
{
    char text[GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 2];
    struct gw_jid j;
    if (!n || n > GW_JID_PART_MAX)
        return;
    snprintf(text, sizeof(text), is_jid ? "%.*s" : "%.*s@%s", (int)n, id, s->domain);
    if (gw_jid_parse(text, &j) != 0 || !j.local[0] || !gw_jid_domain_equal(j.domain, s->domain))
        return;
    j.resource[0] = '\0';
    if (gw_jid_format(&j, text, sizeof(text)) != 0)
        return;
    free(s->auth_jid);
    s->auth_jid = strdup(text);
}

/* SCRAM's client-first message: gs2-header "n,a=authzid," or "n,," then "n=saslname,r=...";
 * saslname escapes ',' as =2C and '=' as =3D. */
static void scram_identity(struct gw_session *s, const char *m, size_t n)
{
    const char *end = m + n, *p = memchr(m, ',', n);
    if (!p)
        return;
    const char *authz = p + 1, *q = memchr(authz, ',', (size_t)(end - authz));
    if (!q || end - q < 3 || q[1] != 'n' || q[2] != '=')
        return;
    if (q - authz > 2 && authz[0] == 'a' && authz[1] == '=') {
        set_auth_jid(s, authz + 2, (size_t)(q - authz - 2), true);
        return;
    }
    char user[GW_JID_PART_MAX + 1];
    size_t u = 0;
    for (p = q + 3; p < end && *p != ',' && u < sizeof(user) - 1; p++) {
        if (*p == '=' && end - p >= 3 && (memcmp(p, "=2C", 3) == 0 || memcmp(p, "=3D", 3) == 0)) {
            user[u++] = p[2] == 'C' ? ',' : '=';
            p += 2;
        } else {
            user[u++] = *p;
        }
    }
    set_auth_jid(s, user, u, false);
}

/* PLAIN (RFC 4616): authzid NUL authcid NUL password. Only the identities are read. */
static void plain_identity(struct gw_session *s, const char *m, size_t n)
{
    const char *nul1 = memchr(m, '\0', n);
    if (!nul1)
        return;
    const char *authc = nul1 + 1, *nul2 = memchr(authc, '\0', (size_t)(m + n - authc));
    if (!nul2)
        return;
    if (nul1 > m)
        set_auth_jid(s, m, (size_t)(nul1 - m), true);
    else
        set_auth_jid(s, authc, (size_t)(nul2 - authc), false);
}

static void on_client_auth(struct gw_session *s, const struct gw_xml_stanza *st)
{
    const struct gw_xml_node *n = st->tree;
    const char *mech = gw_xml_attr(n->attrs, n->n_attrs, "mechanism");
    if (strcmp(n->ns, GW_NS_SASL) != 0 || strcmp(n->name, "auth") != 0 || !mech || !n->text_len)
        return;
    bool plain = strcmp(mech, "PLAIN") == 0;
    if (!plain && strncmp(mech, "SCRAM-", 6) != 0)
        return;
    size_t cap = n->text_len / 4 * 3 + 4;
    unsigned char *raw = malloc(cap);
    if (!raw)
        return;
    int len = n->text_len % 4
                  ? -1
                  : EVP_DecodeBlock(raw, (const unsigned char *)n->text, (int)n->text_len);
    if (len > 0) { /* EVP_DecodeBlock counts the padding as zero bytes */
        for (size_t i = n->text_len; i > 0 && n->text[i - 1] == '='; i--)
            len--;
        if (plain)
            plain_identity(s, (const char *)raw, (size_t)len);
        else
            scram_identity(s, (const char *)raw, (size_t)len);
    }
    OPENSSL_cleanse(raw, cap);
    free(raw);
}

void resume_client_element(struct gw_session *s, const char *bytes, size_t len)
{
    static const char tag[] = "auth";
    if (len < 16 || !memmem(bytes, len < 64 ? len : 64, tag, sizeof(tag) - 1))
        return;
    parse_alone(s, bytes, len, on_client_auth);
}

static void on_upstream_stanza(struct gw_session *s, const struct gw_xml_stanza *st)
{
    const struct gw_xml_node *n = st->tree;
    const char *to = gw_xml_attr(n->attrs, n->n_attrs, "to");
    struct gw_jid j;
    char full[2 * GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 3];
    if (!to || gw_jid_parse(to, &j) != 0 || !j.resource[0] ||
        gw_jid_format(&j, full, sizeof(full)) != 0)
        return;
    size_t bare = strlen(s->jid);
    if (strncmp(full, s->jid, bare) != 0 || full[bare] != '/')
        return;
    char *copy = strdup(full);
    if (!copy)
        return;
    struct gw_sessions *tbl = s->ctx->sessions;
    gw_strmap_del(&tbl->by_jid, &s->by_jid);
    free(s->jid);
    s->jid = copy;
    s->jid_bare = false;
    gw_strmap_add(&tbl->by_jid, &s->by_jid, s->jid);
    gw_upstream_set_jid(s->up, s->jid);
    GW_INFO(&s->ctx->log, s->sid, s->jid, "resumed stream: full JID known");
}

void resume_learn_jid(struct gw_session *s, const struct gw_xml_stanza *st)
{
    if (strcmp(st->ns, GW_NS_CLIENT) != 0 || !s->up)
        return;
    if (st->tree)
        on_upstream_stanza(s, st);
    else
        parse_alone(s, st->bytes, st->len, on_upstream_stanza);
}

void resume_free_all(struct gw_sessions *tbl)
{
    while (tbl->res_head)
        resume_drop_oldest(tbl);
}
