/* Visitor mode, an option of the session: a client whose stream 'to' is visitors.domain is offered
 * SASL ANONYMOUS only; on its <auth/> the session logs in upstream with the one shared account
 * (login.c's SASL PLAIN), answers <success/>, offers <bind/> after the client's restart and binds
 * visitors.resource_prefix + 16 random hex characters whatever the client asked for. Every later
 * client element passes the visitor policy (one document-mode parser in the session table);
 * what it refuses is answered `forbidden` by the gateway from the table's sweeper, never inside
 * the owner's call, and never goes upstream. A visitor asking for its roster or its blocklist is
 * answered an empty one by the gateway (the shared account's are not the visitor's; clients such
 * as Converse.js wait for both). Subscriptions a visitor made are undone when its session ends.
 * Calls: session.c and login.c (internal.h), xmpp/upstream, xmpp/jid, xml, config, core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/rand.h"
#include "session/internal.h"
#include "xmpp/jid.h"
#include "xmpp/upstream.h"

#define NS_PUBSUB "http://jabber.org/protocol/pubsub"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_PING "urn:xmpp:ping"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_ROSTER "jabber:iq:roster"
#define NS_BLOCKING "urn:xmpp:blocking"
#define MAX_SUBS 64 /* subscriptions one visitor may hold */

#define FEATURES_OPEN "<stream:features xmlns:stream='" GW_NS_STREAM "' xmlns='" GW_NS_CLIENT "'>"
static const char features_sasl[] =
    FEATURES_OPEN "<mechanisms xmlns='" GW_NS_SASL "'><mechanism>ANONYMOUS</mechanism>"
                  "</mechanisms></stream:features>";
static const char features_bind[] =
    FEATURES_OPEN "<bind xmlns='" GW_NS_BIND "'/></stream:features>";
static const char sasl_success[] = "<success xmlns='" GW_NS_SASL "'/>";
static const char sasl_bad_mech[] =
    "<failure xmlns='" GW_NS_SASL "'><invalid-mechanism/></failure>";
static const char sm_failed[] =
    "<failed xmlns='" GW_NS_SM "'><unexpected-request xmlns='" GW_NS_STANZAS "'/></failed>";

/* One subscription a visitor asked for: kept until its session ends or it unsubscribes. */
struct vsub {
    struct vsub *next;
    char id[128];      /* of the subscribe iq, until its result comes */
    char service[256]; /* pubsub service */
    char node[512];
};

struct visitor {
    char domain[256];        /* visitors.domain as the client named it (stream 'from') */
    char user[1024];         /* the shared account's localpart */
    char resource[64 + 17];  /* resource_prefix + 16 hex */
    char stream_id[256];     /* upstream's bound stream, for the client's restarted stream */
    char stream_lang[64];    /* its language */
    bool auth_sent;          /* the shared account's <auth/> went upstream */
    const char *mech;        /* the SASL mechanism upstream offers that it uses (static) */
    enum gw_scram_hash hash; /* for a SCRAM one */
    struct gw_scram *scram;  /* the SCRAM exchange under way; NULL for PLAIN */
    bool client_restarted;   /* the client restarted after <success/> */
    bool upstream_ready;     /* the upstream's bound stream has sent its features */
    bool ready_due;          /* the bind features go to the client from the sweeper */
    bool pending;            /* on the table's pending list */
    struct gw_session *next; /* on that list */
    struct gw_buf answers;   /* elements for the client: [size_t len][bytes]... */
    struct vsub *subs;       /* subscriptions asked for, newest first */
    unsigned n_subs;
};

/* What the policy made of one element. */
enum verdict { V_ALLOW, V_REFUSE, V_DROP, V_SM_FAILED, V_AUTH, V_AUTH_BAD, V_BIND, V_EMPTY };

struct judged {
    struct gw_session *s;
    bool parsed;       /* the callback ran */
    enum verdict what; /* for a client element */
    const char *why;   /* what was refused, for the log */
    char kind[16];     /* root element name */
    char id[128], to[1024], type[16];
    char service[256], node[512];
    int sub;           /* +1: a subscribe, -1: an unsubscribe */
    const char *empty; /* V_EMPTY: the element of the empty answer (roster, blocklist) */
};

bool visitor_selected(const struct gw_config *cfg, const char *to)
{
    return cfg->visitors_domain[0] && strcasecmp(to, cfg->visitors_domain) == 0;
}

void visitor_free(struct visitor *v)
{
    if (!v)
        return;
    while (v->subs) {
        struct vsub *n = v->subs->next;
        free(v->subs);
        v->subs = n;
    }
    gw_buf_cleanup(&v->answers);
    login_scram_free(&v->scram);
    free(v);
}

/* ---- answers the gateway gives the client itself, delivered from the sweeper ---- */

static void defer(struct gw_session *s)
{
    struct gw_sessions *tbl = s->ctx->sessions;
    if (s->visitor->pending)
        return;
    s->visitor->pending = true;
    s->visitor->next = tbl->pending;
    tbl->pending = s;
    if (tbl->sweeper_open)
        uv_prepare_start(&tbl->sweeper, session_sweep);
}

static int queue_answer(struct gw_session *s, const char *bytes, size_t len)
{
    struct visitor *v = s->visitor;
    int rc = gw_buf_append(&v->answers, &len, sizeof(len));
    if (!rc)
        rc = gw_buf_append(&v->answers, bytes, len);
    if (!rc)
        defer(s);
    return rc;
}

static void deliver_now(struct gw_session *s, const char *bytes, size_t len)
{
    if (!s->ops)
        return;
    s->stanzas_out++;
    s->ctx->metrics.stanzas_to_client++;
    s->ctx->metrics.bytes_to_client += len;
    if (s->ops->deliver(s->t, bytes, len) == GW_EAGAIN && s->up)
        gw_upstream_pause_reading(s->up, true);
}

static void ready_now(struct gw_session *s, const char *features, size_t len)
{
    struct visitor *v = s->visitor;
    struct gw_stream_info info = {
        .id = v->stream_id, .from = v->domain, .version = "1.0", .lang = v->stream_lang};
    if (s->ops)
        s->ops->stream_ready(s->t, &info, features, len);
}

struct gw_session *visitor_next_pending(const struct gw_session *s)
{
    return s->visitor->next;
}

void visitor_flush_cancel(struct gw_session *s)
{
    s->visitor->pending = false;
}

/* From the sweeper: what was queued for the client, in order. */
void visitor_flush(struct gw_session *s)
{
    struct visitor *v = s->visitor;
    v->pending = false;
    if (v->ready_due) {
        v->ready_due = false;
        ready_now(s, features_bind, sizeof(features_bind) - 1);
    }
    struct gw_buf q = v->answers; /* the owner may queue more while we deliver */
    gw_buf_init(&v->answers, q.max);
    for (size_t at = 0; at + sizeof(size_t) <= gw_buf_size(&q) && s->ops;) {
        size_t len;
        memcpy(&len, gw_buf_ptr(&q) + at, sizeof(len));
        at += sizeof(len);
        deliver_now(s, gw_buf_ptr(&q) + at, len);
        at += len;
    }
    gw_buf_cleanup(&q);
}

/* ---- the policy: one parse per element, the decision made on its tree ---- */

static void copy_attr(char *dst, size_t n, const struct gw_xml_node *e, const char *name)
{
    const char *v = gw_xml_attr(e->attrs, e->n_attrs, name);
    snprintf(dst, n, "%s", v && strlen(v) < n ? v : "");
}

/* The server of the shared account: no 'to', or its domain. */
static bool to_server(const struct gw_session *s, const char *to)
{
    return !to[0] || gw_jid_domain_equal(to, s->domain);
}

static bool to_service(const struct gw_session *s, const char *to)
{
    const struct gw_config *cfg = s->ctx->cfg;
    for (unsigned i = 0; i < cfg->n_visitors_pubsub; i++)
        if (gw_jid_domain_equal(to, cfg->visitors_pubsub[i]))
            return true;
    return false;
}

/* The visitor's own full JID, compared as JIDs. */
static bool is_own_jid(const struct gw_session *s, const char *text)
{
    struct gw_jid j;
    char norm[2 * GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 3];
    return text && s->jid && gw_jid_parse(text, &j) == 0 &&
           gw_jid_format(&j, norm, sizeof(norm)) == 0 && strcmp(norm, s->jid) == 0;
}

static const struct gw_xml_node *first_child(const struct gw_xml_node *e)
{
    return e->children;
}

/* A pubsub request: subscribe / unsubscribe for the own full JID, items, subscriptions. */
static enum verdict judge_pubsub(struct judged *j, const struct gw_xml_node *ps)
{
    const struct gw_xml_node *op = first_child(ps);
    if (!op || strcmp(op->ns, NS_PUBSUB) != 0 || !to_service(j->s, j->to)) {
        j->why = "a pubsub request to a service not allowed";
        return V_REFUSE;
    }
    for (const struct gw_xml_node *c = op->next; c; c = c->next)
        if (strcmp(c->name, "options") != 0 || strcmp(op->name, "subscribe") != 0) {
            j->why = "a pubsub request of several parts";
            return V_REFUSE;
        }
    bool set = strcmp(j->type, "set") == 0, get = strcmp(j->type, "get") == 0;
    copy_attr(j->node, sizeof(j->node), op, "node");
    size_t tl = strlen(j->to);
    if (tl >= sizeof(j->service)) {
        j->why = "a pubsub service name too long";
        return V_REFUSE;
    }
    memcpy(j->service, j->to, tl + 1);
    if (set && (strcmp(op->name, "subscribe") == 0 || strcmp(op->name, "unsubscribe") == 0)) {
        if (!j->node[0] || !is_own_jid(j->s, gw_xml_attr(op->attrs, op->n_attrs, "jid"))) {
            j->why = "a pubsub (un)subscription for another JID";
            return V_REFUSE;
        }
        j->sub = op->name[0] == 's' ? 1 : -1;
        return V_ALLOW;
    }
    if (get && (strcmp(op->name, "items") == 0 || strcmp(op->name, "subscriptions") == 0))
        return V_ALLOW;
    j->why = "a pubsub request other than subscribe, unsubscribe, items, subscriptions";
    return V_REFUSE;
}

static enum verdict judge_iq(struct judged *j, const struct gw_xml_node *iq)
{
    struct gw_session *s = j->s;
    const struct gw_config *cfg = s->ctx->cfg;
    const struct gw_xml_node *q = first_child(iq);
    bool get = strcmp(j->type, "get") == 0, set = strcmp(j->type, "set") == 0;
    if (!get && !set) {
        j->why = "an iq answer to an entity that asked nothing of visitors";
        return to_server(s, j->to) || to_service(s, j->to) ? V_ALLOW : V_DROP;
    }
    if (!q) {
        j->why = "an empty iq";
        return V_REFUSE;
    }
    if (get && strcmp(q->ns, NS_PING) == 0 && (to_server(s, j->to) || to_service(s, j->to)))
        return V_ALLOW;
    if (set && strcmp(q->ns, NS_SESSION) == 0 && to_server(s, j->to))
        return V_ALLOW;
    bool own = to_server(s, j->to) || strcmp(j->to, cfg->visitors_jid) == 0;
    if (get && own && strcmp(q->ns, NS_ROSTER) == 0 && strcmp(q->name, "query") == 0) {
        j->empty = "<query xmlns='" NS_ROSTER "'/>";
        return V_EMPTY;
    }
    if (get && own && strcmp(q->ns, NS_BLOCKING) == 0 && strcmp(q->name, "blocklist") == 0) {
        j->empty = "<blocklist xmlns='" NS_BLOCKING "'/>";
        return V_EMPTY;
    }
    bool disco = strcmp(q->ns, NS_DISCO_INFO) == 0 || strcmp(q->ns, NS_DISCO_ITEMS) == 0;
    if (get && disco && cfg->visitors_disco &&
        (to_server(s, j->to) || to_service(s, j->to) ||
         strncmp(j->to, cfg->visitors_jid, strlen(cfg->visitors_jid) + 1) == 0))
        return V_ALLOW;
    if (strcmp(q->ns, NS_PUBSUB) == 0 && strcmp(q->name, "pubsub") == 0)
        return judge_pubsub(j, q);
    j->why = "an iq the visitor policy does not allow";
    return V_REFUSE;
}

static enum verdict judge_client(struct judged *j, const struct gw_xml_node *e)
{
    const struct gw_config *cfg = j->s->ctx->cfg;
    if (strcmp(e->ns, GW_NS_SASL) == 0 && strcmp(e->name, "auth") == 0) {
        const char *mech = gw_xml_attr(e->attrs, e->n_attrs, "mechanism");
        return mech && strcmp(mech, "ANONYMOUS") == 0 ? V_AUTH : V_AUTH_BAD;
    }
    if (strcmp(e->ns, GW_NS_SM) == 0) {
        j->why = "a stream management element (not offered to visitors)";
        return strcmp(e->name, "enable") == 0 ? V_SM_FAILED : V_DROP;
    }
    if (e->ns[0] && strcmp(e->ns, GW_NS_CLIENT) != 0) {
        j->why = "an element that is no stanza";
        return V_DROP;
    }
    if (strcmp(e->name, "iq") == 0) {
        const struct gw_xml_node *b = first_child(e);
        if (b && strcmp(b->ns, GW_NS_BIND) == 0 && strcmp(b->name, "bind") == 0 &&
            j->s->state != GW_SESSION_BOUND)
            return V_BIND;
        return judge_iq(j, e);
    }
    if (strcmp(e->name, "presence") == 0) {
        j->why = j->to[0] ? "a directed presence" : "a presence (visitors.allow.presence)";
        return !j->to[0] && cfg->visitors_presence ? V_ALLOW : V_REFUSE;
    }
    if (strcmp(e->name, "message") == 0) {
        j->why = "a message";
        return V_REFUSE;
    }
    j->why = "an element that is no stanza";
    return V_DROP;
}

/* The table's one parser calls this for the one element being judged. */
static void on_judged(void *ud, const struct gw_xml_stanza *st)
{
    struct gw_sessions *tbl = ud;
    struct judged *j = tbl->vjudge;
    const struct gw_xml_node *e = st->tree;
    if (!j || !e)
        return;
    j->parsed = true;
    snprintf(j->kind, sizeof(j->kind), "%s", e->name);
    copy_attr(j->id, sizeof(j->id), e, "id");
    copy_attr(j->to, sizeof(j->to), e, tbl->vjudge_upstream ? "from" : "to");
    copy_attr(j->type, sizeof(j->type), e, "type");
    if (!tbl->vjudge_upstream)
        j->what = judge_client(j, e);
}

static bool want_all(void *ud, const char *ns, const char *name)
{
    return true;
}

const struct gw_xml_callbacks visitor_parse_cb = {.want_tree = want_all, .on_stanza = on_judged};

/* ---- the shared password: read once, again when the configuration names another source ---- */

int visitor_password(struct gw_sessions *tbl, const struct gw_config *cfg, char *out, size_t outlen,
                     char *err, size_t errlen)
{
    char src[sizeof(cfg->visitors_password_file) + 2];
    snprintf(src, sizeof(src), "%c%s", cfg->visitors_password_file[0] ? 'f' : 'p',
             cfg->visitors_password_file);
    if (!tbl->vpw || strcmp(tbl->vpw_src, src) != 0 ||
        (!cfg->visitors_password_file[0] && strcmp(tbl->vpw, cfg->visitors_password) != 0)) {
        visitor_password_forget(tbl);
        char pw[1024];
        int rc = gw_config_visitors_password(cfg, pw, sizeof(pw), err, errlen);
        if (rc)
            return rc;
        tbl->vpw = strdup(pw);
        explicit_bzero(pw, sizeof(pw));
        if (!tbl->vpw)
            return GW_ENOMEM;
        snprintf(tbl->vpw_src, sizeof(tbl->vpw_src), "%s", src);
    }
    if (strlen(tbl->vpw) >= outlen)
        return GW_EINVAL;
    snprintf(out, outlen, "%s", tbl->vpw);
    return 0;
}

void visitor_password_forget(struct gw_sessions *tbl)
{
    if (tbl->vpw) {
        explicit_bzero(tbl->vpw, strlen(tbl->vpw));
        free(tbl->vpw);
        tbl->vpw = NULL;
    }
}

/* ---- starting: the upstream of the shared account ---- */

/* A visitor that logs in by itself (GW_SESSION_AUTH_VISITOR, a prebound visitor): login.c's
 * SASL PLAIN as the shared account and the bind of the generated resource, with no client
 * SASL in between. */
static int self_login(struct gw_session *s, const struct visitor *v)
{
    const struct gw_config *cfg = s->ctx->cfg;
    char pw[1024], err[512];
    int rc = visitor_password(s->ctx->sessions, cfg, pw, sizeof(pw), err, sizeof(err));
    if (rc) {
        GW_ERROR(&s->ctx->log, s->sid, NULL, "visitor login: %s", err);
        return rc;
    }
    struct gw_session_opts o = {
        .auth = GW_SESSION_AUTH_VISITOR, .user = v->user, .password = pw, .resource = v->resource};
    s->login = login_new(&o, cfg->max_stanza);
    explicit_bzero(pw, sizeof(pw));
    return s->login ? 0 : GW_ENOMEM;
}

int visitor_start(struct gw_session *s, const char *to, const char *lang)
{
    const struct gw_config *cfg = s->ctx->cfg;
    const char *at = strchr(cfg->visitors_jid, '@');
    const struct gw_upstream_cfg *uc = at ? gw_config_upstream_for(cfg, at + 1) : NULL;
    if (!uc)
        return GW_EINVAL;
    struct gw_sessions *tbl = s->ctx->sessions;
    if (!tbl->vparser) {
        struct gw_xml_opts xo = {
            .mode = GW_XML_DOCUMENT,
            .limits = {cfg->max_stanza, cfg->max_depth, cfg->max_attrs},
            .root_is_stanza = true,
        };
        tbl->vparser = gw_xml_new(&xo, &visitor_parse_cb, tbl);
        if (!tbl->vparser)
            return GW_ENOMEM;
    }
    struct visitor *v = calloc(1, sizeof(*v));
    if (!v)
        return GW_ENOMEM;
    char hex[17];
    if (gw_rand_hex(hex, 8) != 0) {
        free(v);
        return GW_EIO;
    }
    snprintf(v->domain, sizeof(v->domain), "%s", to);
    snprintf(v->user, sizeof(v->user), "%.*s", (int)(at - cfg->visitors_jid), cfg->visitors_jid);
    snprintf(v->resource, sizeof(v->resource), "%s%s", cfg->visitors_resource_prefix, hex);
    gw_buf_init(&v->answers, cfg->send_queue);
    s->visitor = v;
    int rc = s->visitor_login ? self_login(s, v) : 0;
    if (rc)
        return rc;
    snprintf(s->domain, sizeof(s->domain), "%s", at + 1);
    s->up = gw_upstream_open(s->ctx, uc, s->domain, lang, session_upstream_ops(), s, s->sid);
    if (!s->up)
        return GW_ENOMEM;
    session_transition(s, GW_SESSION_CONNECTING);
    GW_INFO(&s->ctx->log, s->sid, NULL, "visitor session for %s: upstream account %s%s", to,
            cfg->visitors_jid, s->visitor_login ? " (logged in by the gateway)" : "");
    return 0;
}

/* ---- upstream events ---- */

void visitor_features(struct gw_session *s, const struct gw_stream_info *hdr,
                      const struct gw_xml_node *tree)
{
    struct visitor *v = s->visitor;
    snprintf(v->stream_id, sizeof(v->stream_id), "%s", hdr->id ? hdr->id : "");
    snprintf(v->stream_lang, sizeof(v->stream_lang), "%s", hdr->lang ? hdr->lang : "en");
    if (s->state == GW_SESSION_FEATURES) {
        v->mech = login_pick_mech(tree, &v->hash);
        if (!v->mech) {
            session_fail(s, GW_COND_internal_server_error,
                         "upstream offers no SASL SCRAM or PLAIN");
            return;
        }
        session_transition(s, GW_SESSION_AUTHENTICATING);
        ready_now(s, features_sasl, sizeof(features_sasl) - 1);
        return;
    }
    session_transition(s, GW_SESSION_BINDING);
    v->upstream_ready = true;
    if (v->client_restarted)
        ready_now(s, features_bind, sizeof(features_bind) - 1);
}

/* A SCRAM step of the shared account's login: 1 while it goes on (a challenge answered), 0 once
 * the server's signature checked out, -1 when the session failed. */
static int scram_step(struct gw_session *s, const struct gw_xml_stanza *st)
{
    struct visitor *v = s->visitor;
    const char *why = NULL;
    int rc = login_scram_answer(s->up, v->scram, st, &why);
    if (rc) {
        GW_ERROR(&s->ctx->log, s->sid, NULL, "visitors' account %s: SCRAM login failed: %s",
                 s->ctx->cfg->visitors_jid, why ? why : gw_strerror(rc));
        session_fail(s, GW_COND_internal_server_error, "upstream refused the visitors' account");
        return -1;
    }
    if (strcmp(st->name, "challenge") == 0)
        return 1;
    login_scram_free(&v->scram);
    return 0;
}

static void sasl_answer(struct gw_session *s, const struct gw_xml_stanza *st)
{
    const struct gw_config *cfg = s->ctx->cfg;
    struct visitor *v = s->visitor;
    bool challenge = strcmp(st->name, "challenge") == 0;
    if (strcmp(st->name, "success") != 0 && !(challenge && v->scram)) {
        GW_ERROR(&s->ctx->log, s->sid, NULL, "upstream refused the visitors' account %s",
                 cfg->visitors_jid);
        session_fail(s, GW_COND_internal_server_error, "upstream refused the visitors' account");
        return;
    }
    if (v->scram && scram_step(s, st) != 0)
        return;
    session_transition(s, GW_SESSION_RESTARTING);
    s->restart_due = true;
    gw_upstream_restart_after(s->up);
    int rc = gw_upstream_restart(s->up);
    if (rc) {
        session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
        return;
    }
    deliver_now(s, sasl_success, sizeof(sasl_success) - 1);
}

/* An upstream iq while subscriptions await their results: confirm or forget them. */
static void sub_result(struct gw_session *s, const struct gw_xml_stanza *st)
{
    struct gw_sessions *tbl = s->ctx->sessions;
    struct judged j = {.s = s};
    tbl->vjudge = &j;
    tbl->vjudge_upstream = true;
    int rc = gw_xml_parse_document(tbl->vparser, st->bytes, st->len);
    tbl->vjudge = NULL;
    if (rc || !j.parsed || !j.id[0])
        return;
    for (struct vsub **p = &s->visitor->subs; *p; p = &(*p)->next) {
        struct vsub *sub = *p;
        if (!sub->id[0] || strcmp(sub->id, j.id) != 0)
            continue;
        if (strcmp(j.type, "result") == 0) {
            sub->id[0] = '\0';
        } else if (strcmp(j.type, "error") == 0) {
            *p = sub->next;
            free(sub);
            s->visitor->n_subs--;
        }
        return;
    }
}

/* true: the element was the session's own business (it does not go to the client as it is). */
bool visitor_upstream(struct gw_session *s, const struct gw_xml_stanza *st)
{
    if (!s->login && s->state == GW_SESSION_AUTHENTICATING && strcmp(st->ns, GW_NS_SASL) == 0) {
        sasl_answer(s, st);
        return true;
    }
    if (s->state == GW_SESSION_BOUND && strcmp(st->name, "iq") == 0)
        for (const struct vsub *sub = s->visitor->subs; sub; sub = sub->next)
            if (sub->id[0]) {
                sub_result(s, st);
                break;
            }
    return false;
}

/* ---- the client's elements ---- */

int visitor_restart(struct gw_session *s)
{
    struct visitor *v = s->visitor;
    if (!s->restart_due || !s->up ||
        (s->state != GW_SESSION_RESTARTING && s->state != GW_SESSION_BINDING))
        return GW_EPROTO;
    s->restart_due = false;
    v->client_restarted = true;
    if (v->upstream_ready) {
        v->ready_due = true;
        defer(s);
    }
    return 0;
}

/* The client's bind, whatever resource it asks for, becomes a bind of the generated one. */
static int send_bind(struct gw_session *s, const char *id)
{
    struct gw_buf b;
    gw_buf_init(&b, 4096);
    int rc = gw_buf_append_str(&b, "<iq type='set' id='");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, id, strlen(id));
    if (!rc)
        rc = gw_buf_printf(&b, "'><bind xmlns='" GW_NS_BIND "'><resource>%s</resource></bind></iq>",
                           s->visitor->resource);
    if (!rc)
        rc = gw_upstream_send(s->up, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    return rc;
}

/* The gateway's answer to a refused stanza: the error of its kind, from/to swapped. */
static int answer_forbidden(struct gw_session *s, const struct judged *j)
{
    struct gw_buf b;
    gw_buf_init(&b, 8192);
    int rc = gw_buf_printf(&b, "<%s xmlns='" GW_NS_CLIENT "' type='error'", j->kind);
    if (!rc && j->id[0]) {
        rc = gw_buf_append_str(&b, " id='");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, j->id, strlen(j->id));
        if (!rc)
            rc = gw_buf_append_str(&b, "'");
    }
    if (!rc && j->to[0]) {
        rc = gw_buf_append_str(&b, " from='");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, j->to, strlen(j->to));
        if (!rc)
            rc = gw_buf_append_str(&b, "'");
    }
    if (!rc)
        rc = gw_buf_append_str(&b, " to='");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, s->jid, strlen(s->jid));
    if (!rc)
        rc = gw_buf_printf(
            &b, "'><error type='auth'><forbidden xmlns='" GW_NS_STANZAS "'/></error></%s>",
            j->kind);
    if (!rc)
        rc = queue_answer(s, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    return rc;
}

/* The gateway's answer to a roster or blocklist request: an empty one of its own. */
static int answer_empty(struct gw_session *s, const struct judged *j)
{
    struct gw_buf b;
    gw_buf_init(&b, 4096);
    int rc = gw_buf_append_str(&b, "<iq xmlns='" GW_NS_CLIENT "' type='result' id='");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, j->id, strlen(j->id));
    if (!rc)
        rc = gw_buf_append_str(&b, "' to='");
    if (!rc)
        rc = gw_buf_append_xml_escaped(&b, s->jid, strlen(s->jid));
    if (!rc)
        rc = gw_buf_printf(&b, "'>%s</iq>", j->empty);
    if (!rc)
        rc = queue_answer(s, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    return rc;
}

/* Remember a subscribe going upstream; forget the subscription an unsubscribe undoes. */
static int track(struct gw_session *s, const struct judged *j)
{
    struct visitor *v = s->visitor;
    if (j->sub < 0) {
        for (struct vsub **p = &v->subs; *p; p = &(*p)->next)
            if (strcmp((*p)->service, j->service) == 0 && strcmp((*p)->node, j->node) == 0) {
                struct vsub *gone = *p;
                *p = gone->next;
                free(gone);
                v->n_subs--;
                break;
            }
        return 0;
    }
    struct vsub *sub = calloc(1, sizeof(*sub));
    if (!sub)
        return GW_ENOMEM;
    snprintf(sub->id, sizeof(sub->id), "%s", j->id);
    snprintf(sub->service, sizeof(sub->service), "%s", j->service);
    snprintf(sub->node, sizeof(sub->node), "%s", j->node);
    sub->next = v->subs;
    v->subs = sub;
    v->n_subs++;
    return 0;
}

static int before_bind(struct gw_session *s, const struct judged *j)
{
    struct visitor *v = s->visitor;
    const struct gw_config *cfg = s->ctx->cfg;
    if (j->what == V_AUTH_BAD)
        return queue_answer(s, sasl_bad_mech, sizeof(sasl_bad_mech) - 1);
    if (j->what == V_AUTH && s->state == GW_SESSION_AUTHENTICATING && !v->auth_sent) {
        char pw[1024], err[512];
        int rc = visitor_password(s->ctx->sessions, cfg, pw, sizeof(pw), err, sizeof(err));
        if (rc) {
            GW_ERROR(&s->ctx->log, s->sid, NULL, "visitor login: %s", err);
            return rc;
        }
        v->auth_sent = true;
        GW_DEBUG(&s->ctx->log, s->sid, NULL, "upstream SASL %s as %s", v->mech, cfg->visitors_jid);
        rc = strcmp(v->mech, "PLAIN") == 0
                 ? login_send_plain(s->up, v->user, pw)
                 : login_scram_first(s->up, &v->scram, v->hash, v->user, pw);
        explicit_bzero(pw, sizeof(pw));
        return rc;
    }
    if (j->what == V_BIND && s->state == GW_SESSION_BINDING && v->client_restarted)
        return send_bind(s, j->id);
    return GW_EPROTO;
}

int visitor_send(struct gw_session *s, const char *bytes, size_t len)
{
    struct gw_sessions *tbl = s->ctx->sessions;
    struct judged j = {.s = s};
    tbl->vjudge = &j;
    tbl->vjudge_upstream = false;
    int rc = gw_xml_parse_document(tbl->vparser, bytes, len);
    tbl->vjudge = NULL;
    if (rc || !j.parsed)
        return GW_EPROTO;
    if (s->state != GW_SESSION_BOUND)
        return before_bind(s, &j);
    switch (j.what) {
    case V_ALLOW:
        if (j.sub > 0 && s->visitor->n_subs >= MAX_SUBS) {
            j.why = "a subscription past the visitor's limit";
            break;
        }
        rc = j.sub ? track(s, &j) : 0;
        return rc ? rc : session_forward(s, bytes, len);
    case V_SM_FAILED:
        return queue_answer(s, sm_failed, sizeof(sm_failed) - 1);
    case V_EMPTY:
        GW_DEBUG(&s->ctx->log, s->sid, s->jid, "visitor policy: answered %s empty", j.empty);
        return answer_empty(s, &j);
    case V_DROP:
        GW_INFO(&s->ctx->log, s->sid, s->jid, "visitor policy: dropped %s", j.why);
        return 0;
    default:
        break;
    }
    GW_INFO(&s->ctx->log, s->sid, s->jid, "visitor policy: refused %s%s%s", j.why,
            j.to[0] ? " to " : "", j.to);
    return answer_forbidden(s, &j);
}

/* ---- the end: undo what the visitor subscribed to ---- */

void visitor_end(struct gw_session *s)
{
    struct visitor *v = s->visitor;
    if (!v->subs || !s->up || s->state != GW_SESSION_BOUND)
        return;
    unsigned n = 0;
    for (struct vsub *sub = v->subs; sub; sub = sub->next) {
        struct gw_buf b;
        gw_buf_init(&b, 4096);
        int rc = gw_buf_printf(&b, "<iq type='set' id='gw-unsub-%u' to='", n);
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, sub->service, strlen(sub->service));
        if (!rc)
            rc = gw_buf_append_str(&b, "'><pubsub xmlns='" NS_PUBSUB "'><unsubscribe node='");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, sub->node, strlen(sub->node));
        if (!rc)
            rc = gw_buf_append_str(&b, "' jid='");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, s->jid, strlen(s->jid));
        if (!rc)
            rc = gw_buf_append_str(&b, "'/></pubsub></iq>");
        if (!rc)
            rc = gw_upstream_send(s->up, gw_buf_ptr(&b), gw_buf_size(&b));
        gw_buf_cleanup(&b);
        n += rc == 0;
    }
    GW_INFO(&s->ctx->log, s->sid, s->jid, "visitor ended: %u subscription(s) undone", n);
}
