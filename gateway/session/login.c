/* The gateway's own login (GW_SESSION_AUTH_GATEWAY): SASL PLAIN with the credentials the owner
 * gave, the stream restart, the bind of the given resource; nothing of it reaches the owner, who
 * hears of the stream once it is bound. The password is cleared as soon as it went upstream and is
 * never logged. A visitor that logs in by itself (a prebound visitor) uses it too, as the shared
 * account. Calls: session.c (internal.h), xmpp/upstream, xml, config, core, OpenSSL (base64,
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
        if (!login_offers(tree, "PLAIN")) {
            session_fail(s, refused_cond(s, "no SASL PLAIN offered"),
                         "upstream offers no SASL PLAIN");
            return;
        }
        session_transition(s, GW_SESSION_AUTHENTICATING);
        rc = login_send_plain(s->up, l->user, l->password);
        forget_password(l);
    } else {
        session_transition(s, GW_SESSION_BINDING);
        snprintf(l->stream_id, sizeof(l->stream_id), "%s", hdr->id);
        snprintf(l->stream_from, sizeof(l->stream_from), "%s", hdr->from);
        snprintf(l->stream_lang, sizeof(l->stream_lang), "%s", hdr->lang);
        gw_buf_reset(&l->features);
        rc = gw_buf_append(&l->features, features, len);
        if (!rc)
            rc = send_bind(s);
    }
    if (rc)
        session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
}

/* An element of the gateway's own login (nothing before the bind goes to the owner). */
void login_stanza(struct gw_session *s, const struct gw_xml_stanza *st)
{
    if (s->state == GW_SESSION_AUTHENTICATING && strcmp(st->ns, GW_NS_SASL) == 0) {
        if (strcmp(st->name, "success") != 0) {
            session_fail(s, refused_cond(s, "upstream refused the login"),
                         "upstream refused the gateway's login");
            return;
        }
        forget_password(s->login);
        session_transition(s, GW_SESSION_RESTARTING);
        gw_upstream_restart_after(s->up);
        int rc = gw_upstream_restart(s->up);
        if (rc)
            session_fail(s, GW_COND_internal_server_error, gw_strerror(rc));
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
