/* The gateway's own login (GW_SESSION_AUTH_GATEWAY): SASL with the credentials the owner gave
 * (SCRAM-SHA-256, else SCRAM-SHA-1, else PLAIN: the first the server offers; no channel binding),
 * the stream restart, the bind of the given resource; nothing of it reaches the owner, who hears
 * of the stream once it is bound. The password is cleared as soon as SASL used it and is never
 * logged; a SCRAM login succeeds only when the server's signature in <success/> is the right one.
 * A visitor that logs in by itself (a prebound visitor) uses it too, as the shared account.
 * Calls: session.c (internal.h), scram.c, xmpp/upstream, xml, config, core, OpenSSL (base64,
 * cleanse). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/log.h"
#include "session/internal.h"
#include "session/scram.h"
#include "xmpp/upstream.h"

#define BIND_ID "gw-bind-1"

/* What a refused login ends with: for a visitor the shared account is the gateway's own (a
 * configuration fault, not the client's), for anyone else the credentials were wrong. */
static enum gw_condition refused_cond(const struct gw_session *s, const char *why)
{
    if (!s->visitor)
        return GW_COND_not_authorized;
    GW_ERROR(&s->ctx->log, s->sid, NULL, "visitor login as %s: %s", s->ctx->cfg->visitors_jid, why);
    return GW_COND_internal_server_error;
}

/* SASL has the password: nothing keeps it any more. */
static void forget_password(struct login *l)
{
    if (l->password)
        OPENSSL_cleanse(l->password, strlen(l->password));
}

void login_free(struct login *l)
{
    if (!l)
        return;
    if (l->password) {
        OPENSSL_cleanse(l->password, strlen(l->password));
        free(l->password);
    }
    if (l->scram) {
        gw_scram_cleanup(l->scram);
        free(l->scram);
    }
    free(l->user);
    free(l->resource);
    gw_buf_cleanup(&l->features);
    free(l);
}

struct login *login_new(const struct gw_session_opts *o, size_t max_stanza)
{
    struct login *l = calloc(1, sizeof(*l));
    if (!l)
        return NULL;
    l->user = strdup(o->user);
    l->password = strdup(o->password);
    l->resource = o->resource ? strdup(o->resource) : NULL;
    gw_buf_init(&l->features, max_stanza);
    if (!l->user || !l->password || (o->resource && !l->resource)) {
        login_free(l);
        return NULL;
    }
    return l;
}

bool login_offers(const struct gw_xml_node *features, const char *mech)
{
    const struct gw_xml_node *m = gw_xml_child(features, GW_NS_SASL, "mechanisms");
    for (const struct gw_xml_node *c = m ? m->children : NULL; c; c = c->next)
        if (strcmp(c->name, "mechanism") == 0 && c->text && strcmp(c->text, mech) == 0)
            return true;
    return false;
}

/* SASL PLAIN (RFC 4616): base64 of "\0user\0password". */
int login_send_plain(struct gw_upstream *up, const char *user, const char *password)
{
    size_t ul = strlen(user), pl = strlen(password), n = ul + pl + 2;
    unsigned char *raw = malloc(n);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    struct gw_buf b;
    gw_buf_init(&b, 4 * n + 256);
    int rc = raw && b64 ? 0 : GW_ENOMEM;
    if (!rc) {
        raw[0] = '\0';
        memcpy(raw + 1, user, ul);
        raw[ul + 1] = '\0';
        memcpy(raw + ul + 2, password, pl);
        EVP_EncodeBlock((unsigned char *)b64, raw, (int)n);
        rc = gw_buf_printf(&b, "<auth xmlns='" GW_NS_SASL "' mechanism='PLAIN'>%s</auth>", b64);
    }
    if (!rc)
        rc = gw_upstream_send(up, gw_buf_ptr(&b), gw_buf_size(&b));
    if (raw)
        OPENSSL_cleanse(raw, n);
    if (b64)
        OPENSSL_cleanse(b64, strlen(b64));
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    gw_buf_cleanup(&b);
    free(raw);
    free(b64);
    return rc;
}

/* <auth/> or <response/> (head and tail) around the base64 of msg, the bytes cleared after. */
static int send_sasl(struct gw_upstream *up, const char *head, const char *tail, const char *msg)
{
    size_t n = strlen(msg);
    char b64[4 * ((GW_SCRAM_MAX_MSG + 2) / 3) + 1];
    if (n > GW_SCRAM_MAX_MSG)
        return GW_ELIMIT;
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)msg, (int)n);
    struct gw_buf b;
    gw_buf_init(&b, sizeof(b64) + 256);
    int rc = gw_buf_printf(&b, "%s%s%s", head, b64, tail);
    if (!rc)
        rc = gw_upstream_send(up, gw_buf_ptr(&b), gw_buf_size(&b));
    if (b.data)
        OPENSSL_cleanse(b.data, b.cap);
    gw_buf_cleanup(&b);
    OPENSSL_cleanse(b64, sizeof(b64));
    return rc;
}

/* The strongest mechanism the server offers; the -PLUS ones (channel binding) are not used. */
const char *login_pick_mech(const struct gw_xml_node *features, enum gw_scram_hash *h)
{
    *h = GW_SCRAM_SHA1;
    if (login_offers(features, "SCRAM-SHA-256")) {
        *h = GW_SCRAM_SHA256;
        return "SCRAM-SHA-256";
    }
    if (login_offers(features, "SCRAM-SHA-1"))
        return "SCRAM-SHA-1";
    return login_offers(features, "PLAIN") ? "PLAIN" : NULL;
}

int login_scram_first(struct gw_upstream *up, struct gw_scram **out, enum gw_scram_hash h,
                      const char *user, const char *password)
{
    char first[GW_SCRAM_MAX_MSG], head[128];
    struct gw_scram *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return GW_ENOMEM;
    *out = sc;
    int rc = gw_scram_init(sc, h, user, password, NULL);
    if (!rc)
        rc = gw_scram_client_first(sc, first, sizeof(first));
    if (!rc) {
        snprintf(head, sizeof(head), "<auth xmlns='" GW_NS_SASL "' mechanism='%s'>",
                 gw_scram_mech(h));
        rc = send_sasl(up, head, "</auth>", first);
    }
    return rc;
}

void login_scram_free(struct gw_scram **sc)
{
    if (!*sc)
        return;
    gw_scram_cleanup(*sc);
    free(*sc);
    *sc = NULL;
}

static void start_sasl(struct gw_session *s, const struct gw_xml_node *tree)
{
    struct login *l = s->login;
    enum gw_scram_hash h;
    const char *mech = login_pick_mech(tree, &h);
    if (!mech) {
        session_fail(s, refused_cond(s, "no SASL SCRAM or PLAIN offered"),
                     "upstream offers no SASL SCRAM or PLAIN");
        return;
    }
    session_transition(s, GW_SESSION_AUTHENTICATING);
    GW_DEBUG(&s->ctx->log, s->sid, NULL, "upstream SASL %s as %s@%s", mech, l->user, s->domain);
    int rc = strcmp(mech, "PLAIN") == 0
                 ? login_send_plain(s->up, l->user, l->password)
                 : login_scram_first(s->up, &l->scram, h, l->user, l->password);
    forget_password(l);
    if (rc == GW_EINVAL && l->scram)
        session_fail(s, refused_cond(s, "the password is not printable ASCII (no SASLprep)"),
                     "the upstream user name or password is not printable ASCII");
    else if (rc)
        session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
}

/* The base64 text of a SASL element (<challenge/>, <success/>) decoded into out, NUL-terminated;
 * an empty element or "=" is the empty message. The upstream builds no tree for SASL elements:
 * the text is between the end of the start tag and the end tag's '<'. */
static int sasl_payload(const struct gw_xml_stanza *st, char *out, size_t cap, size_t *n)
{
    const char *p = st->bytes, *end = st->bytes + st->len;
    char quote = 0;
    for (; p < end && (quote || *p != '>'); p++)
        if (*p == quote)
            quote = 0;
        else if (!quote && (*p == '\'' || *p == '"'))
            quote = *p;
    *n = 0;
    out[0] = '\0';
    if (p >= end || p == st->bytes)
        return GW_EPROTO;
    if (p[-1] == '/')
        return 0;
    const char *text = p + 1, *lt = end - 1;
    while (lt >= text && *lt != '<')
        lt--;
    if (lt < text)
        return GW_EPROTO;
    size_t tl = (size_t)(lt - text);
    if (tl == 0 || (tl == 1 && text[0] == '='))
        return 0;
    if (tl / 4 * 3 + 1 > cap)
        return GW_ELIMIT;
    int rc = gw_scram_b64_decode(text, tl, (unsigned char *)out, cap - 1, n);
    if (!rc && memchr(out, '\0', *n))
        rc = GW_EPROTO;
    out[rc ? 0 : *n] = '\0';
    return rc;
}

/* SCRAM's server-first message in <challenge/>: the client-final one goes back in <response/>.
 * A refusal sets *why (never a secret); an error without *why is the gateway's own. */
static int scram_challenge(struct gw_upstream *up, struct gw_scram *sc,
                           const struct gw_xml_stanza *st, const char **why)
{
    char msg[GW_SCRAM_MAX_MSG], final[GW_SCRAM_MAX_MSG];
    size_t n;
    if (sc->proof_made)
        return *why = "a second challenge", GW_EPROTO;
    if (sasl_payload(st, msg, sizeof(msg), &n) != 0)
        return *why = "a challenge that is not base64", GW_EPROTO;
    int rc = gw_scram_client_final(sc, msg, n, final, sizeof(final), why);
    if (!rc)
        rc = send_sasl(up, "<response xmlns='" GW_NS_SASL "'>", "</response>", final);
    OPENSSL_cleanse(final, sizeof(final));
    return rc;
}

/* SCRAM's server-final message in <success/>: the server proves it knew the password too. */
static int scram_success(struct gw_scram *sc, const struct gw_xml_stanza *st, const char **why)
{
    char msg[GW_SCRAM_MAX_MSG];
    size_t n;
    if (sasl_payload(st, msg, sizeof(msg), &n) != 0)
        return *why = "a success that is not base64", GW_EPROTO;
    return gw_scram_verify_final(sc, msg, n, why);
}

int login_scram_answer(struct gw_upstream *up, struct gw_scram *sc, const struct gw_xml_stanza *st,
                       const char **why)
{
    return strcmp(st->name, "challenge") == 0 ? scram_challenge(up, sc, st, why)
                                              : scram_success(sc, st, why);
}

/* A SASL answer: a SCRAM challenge is answered; a success (its signature checked for SCRAM)
 * restarts the stream; anything else is a refusal. */
static void sasl_answer(struct gw_session *s, const struct gw_xml_stanza *st)
{
    struct login *l = s->login;
    bool challenge = strcmp(st->name, "challenge") == 0;
    const char *why = NULL;
    if (strcmp(st->name, "success") != 0 && !(challenge && l->scram)) {
        session_fail(s, refused_cond(s, "upstream refused the login"),
                     "upstream refused the gateway's login");
        return;
    }
    int rc = l->scram ? login_scram_answer(s->up, l->scram, st, &why) : 0;
    if (rc && why) {
        char text[160];
        snprintf(text, sizeof(text), "upstream SCRAM login refused: %s", why);
        session_fail(s, refused_cond(s, text), text);
        return;
    }
    if (rc) {
        session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
        return;
    }
    if (challenge)
        return;
    forget_password(l);
    login_scram_free(&l->scram);
    session_transition(s, GW_SESSION_RESTARTING);
    gw_upstream_restart_after(s->up);
    rc = gw_upstream_restart(s->up);
    if (rc)
        session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
}

static int send_bind(struct gw_session *s)
{
    struct gw_buf b;
    gw_buf_init(&b, 2048);
    int rc = gw_buf_append_str(&b, "<iq type='set' id='" BIND_ID "'><bind xmlns='" GW_NS_BIND "'");
    if (!rc && s->login->resource) {
        rc = gw_buf_append_str(&b, "><resource>");
        if (!rc)
            rc = gw_buf_append_xml_escaped(&b, s->login->resource, strlen(s->login->resource));
        if (!rc)
            rc = gw_buf_append_str(&b, "</resource></bind></iq>");
    } else if (!rc) {
        rc = gw_buf_append_str(&b, "/></iq>");
    }
    if (!rc)
        rc = gw_upstream_send(s->up, gw_buf_ptr(&b), gw_buf_size(&b));
    gw_buf_cleanup(&b);
    return rc;
}

/* Features of the gateway's own login: authenticate, then bind. */
void login_features(struct gw_session *s, const struct gw_stream_info *hdr, const char *features,
                    size_t len, const struct gw_xml_node *tree)
{
    struct login *l = s->login;
    int rc;
    if (s->state == GW_SESSION_FEATURES) {
        start_sasl(s, tree);
        return;
    }
    session_transition(s, GW_SESSION_BINDING);
    snprintf(l->stream_id, sizeof(l->stream_id), "%s", hdr->id);
    snprintf(l->stream_from, sizeof(l->stream_from), "%s", hdr->from);
    snprintf(l->stream_lang, sizeof(l->stream_lang), "%s", hdr->lang);
    gw_buf_reset(&l->features);
    rc = gw_buf_append(&l->features, features, len);
    if (!rc)
        rc = send_bind(s);
    if (rc)
        session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
}

/* An element of the gateway's own login (nothing before the bind goes to the owner). */
void login_stanza(struct gw_session *s, const struct gw_xml_stanza *st)
{
    if (s->state == GW_SESSION_AUTHENTICATING && strcmp(st->ns, GW_NS_SASL) == 0) {
        sasl_answer(s, st);
        return;
    }
    if (s->state == GW_SESSION_BINDING && strcmp(st->name, "iq") == 0 && st->tree) {
        /* A result was read by bind_result(); anything else answering our bind is a refusal. */
        const char *id = gw_xml_attr(st->tree->attrs, st->tree->n_attrs, "id");
        if (id && strcmp(id, BIND_ID) == 0)
            session_fail(s, GW_COND_not_authorized, "upstream refused the resource binding");
    }
}

/* A gateway login is bound: the owner learns of the stream now, and what it held goes. */
void login_bound(struct gw_session *s)
{
    struct login *l = s->login;
    struct gw_stream_info info = {
        .id = l->stream_id, .from = l->stream_from, .version = "1.0", .lang = l->stream_lang};
    int rc = session_flush_held(s);
    if (rc) {
        session_fail(s, rc == GW_ELIMIT ? GW_COND_policy_violation : GW_COND_internal_server_error,
                     "the held elements could not be sent upstream");
        return;
    }
    if (s->ops)
        s->ops->stream_ready(s->t, &info, gw_buf_ptr(&l->features), gw_buf_size(&l->features));
    gw_buf_cleanup(&l->features);
}
