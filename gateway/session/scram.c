/* SASL SCRAM's client messages and keys (RFC 5802, RFC 7677), kept apart from the stream so that
 * the RFCs' test vectors run without a socket. Calls: core (err), OpenSSL (PBKDF2, HMAC, digests,
 * base64, RAND, CRYPTO_memcmp, cleanse). */
#include "session/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CNONCE_BYTES 24 /* 192 random bits, sent as 48 hex characters */
#define GS2_HEADER "n,,"
#define GS2_HEADER_B64 "biws" /* base64 of "n,," for c= */

const char *gw_scram_mech(enum gw_scram_hash h)
{
    return h == GW_SCRAM_SHA256 ? "SCRAM-SHA-256" : "SCRAM-SHA-1";
}

static const EVP_MD *scram_md(enum gw_scram_hash h)
{
    return h == GW_SCRAM_SHA256 ? EVP_sha256() : EVP_sha1();
}

static bool printable_ascii(const char *p, size_t max)
{
    size_t n = 0;
    for (; p[n]; n++)
        if (n >= max || (unsigned char)p[n] < 0x20 || (unsigned char)p[n] > 0x7e)
            return false;
    return true;
}

/* saslname (RFC 5802 5.1): ',' and '=' escaped. */
static int put_saslname(char *out, size_t outlen, const char *user)
{
    size_t o = 0;
    for (const char *p = user; *p; p++) {
        const char *rep = *p == ',' ? "=2C" : *p == '=' ? "=3D" : NULL;
        size_t n = rep ? 3 : 1;
        if (o + n >= outlen)
            return GW_ELIMIT;
        memcpy(out + o, rep ? rep : p, n);
        o += n;
    }
    out[o] = '\0';
    return 0;
}

static int make_cnonce(char *out, size_t outlen)
{
    unsigned char raw[CNONCE_BYTES];
    if (outlen < 2 * CNONCE_BYTES + 1)
        return GW_ELIMIT;
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return GW_EIO;
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

int gw_scram_init(struct gw_scram *sc, enum gw_scram_hash h, const char *user, const char *password,
                  const char *cnonce)
{
    char name[3 * GW_SCRAM_MAX_USER + 1], fresh[2 * CNONCE_BYTES + 1];
    memset(sc, 0, sizeof(*sc));
    sc->hash = h;
    sc->md_len = (size_t)EVP_MD_get_size(scram_md(h));
    if (!printable_ascii(user, GW_SCRAM_MAX_USER) || !*user ||
        !printable_ascii(password, GW_SCRAM_MAX_PASS))
        return GW_EINVAL;
    if (cnonce && (!*cnonce || !printable_ascii(cnonce, 256) || strchr(cnonce, ',')))
        return GW_EINVAL;
    int rc = put_saslname(name, sizeof(name), user);
    if (!rc && !cnonce) {
        rc = make_cnonce(fresh, sizeof(fresh));
        cnonce = fresh;
    }
    if (rc)
        return rc;
    int n =
        snprintf(sc->client_first_bare, sizeof(sc->client_first_bare), "n=%s,r=%s", name, cnonce);
    if (n < 0 || (size_t)n >= sizeof(sc->client_first_bare))
        return GW_ELIMIT;
    sc->cnonce_len = strlen(cnonce);
    snprintf(sc->password, sizeof(sc->password), "%s", password);
    return 0;
}

int gw_scram_client_first(const struct gw_scram *sc, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, GS2_HEADER "%s", sc->client_first_bare);
    return n < 0 || (size_t)n >= outlen ? GW_ELIMIT : 0;
}

int gw_scram_b64_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
                        size_t *outlen)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t pad = 0;
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > outcap || len > INT32_MAX)
        return GW_EPROTO;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '=' && i + 2 >= len && (i + 1 == len || in[i + 1] == '='))
            pad++;
        else if (pad || in[i] == '\0' || !strchr(alpha, in[i]))
            return GW_EPROTO;
    }
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0 || (size_t)n < pad)
        return GW_EPROTO;
    *outlen = (size_t)n - pad;
    return 0;
}

/* The server-first message's parts, pointing into it. */
struct server_first {
    const char *nonce, *salt_b64;
    size_t nonce_len, salt_len;
    unsigned long iter;
};

/* One "x=value" attribute at *p (up to end): its value, and *p moved past the following ','. */
static bool take_attr(const char **p, const char *end, char key, const char **val, size_t *n)
{
    if (end - *p < 2 || (*p)[0] != key || (*p)[1] != '=')
        return false;
    const char *v = *p + 2, *comma = memchr(v, ',', (size_t)(end - v));
    const char *stop = comma ? comma : end;
    *val = v;
    *n = (size_t)(stop - v);
    *p = comma ? comma + 1 : end;
    return true;
}

static int parse_server_first(const struct gw_scram *sc, const char *msg, size_t len,
                              struct server_first *sf, const char **why)
{
    const char *p = msg, *end = msg + len, *it;
    size_t it_len;
    const char *cnonce = sc->client_first_bare + strlen(sc->client_first_bare) - sc->cnonce_len;
    if (memchr(msg, '\0', len))
        return *why = "a NUL in the server-first message", GW_EPROTO;
    if (len >= 2 && msg[0] == 'm' && msg[1] == '=')
        return *why = "a mandatory extension (m=) in the server-first message", GW_EPROTO;
    if (!take_attr(&p, end, 'r', &sf->nonce, &sf->nonce_len))
        return *why = "no nonce (r=) in the server-first message", GW_EPROTO;
    if (sf->nonce_len <= sc->cnonce_len || memcmp(sf->nonce, cnonce, sc->cnonce_len) != 0)
        return *why = "the server nonce does not extend ours", GW_EPROTO;
    for (size_t i = 0; i < sf->nonce_len; i++)
        if (sf->nonce[i] < 0x21 || sf->nonce[i] > 0x7e)
            return *why = "a non-printable server nonce", GW_EPROTO;
    if (!take_attr(&p, end, 's', &sf->salt_b64, &sf->salt_len))
        return *why = "no salt (s=) in the server-first message", GW_EPROTO;
    if (!take_attr(&p, end, 'i', &it, &it_len))
        return *why = "no iteration count (i=) in the server-first message", GW_EPROTO;
    sf->iter = 0;
    if (it_len == 0 || it_len > 9 || it[0] == '0')
        return *why = "a bad iteration count", GW_EPROTO;
    for (size_t i = 0; i < it_len; i++) {
        if (it[i] < '0' || it[i] > '9')
            return *why = "a bad iteration count", GW_EPROTO;
        sf->iter = sf->iter * 10 + (unsigned long)(it[i] - '0');
    }
    if (sf->iter < GW_SCRAM_MIN_ITER || sf->iter > GW_SCRAM_MAX_ITER)
        return *why = "an iteration count out of bounds", GW_ELIMIT;
    return 0; /* what follows i= is an optional extension (RFC 5802 7): ignored */
}

/* The keys of one exchange, all cleared at the end of client_final. */
struct keys {
    unsigned char salted[GW_SCRAM_MAX_KEY], client_key[GW_SCRAM_MAX_KEY];
    unsigned char stored_key[GW_SCRAM_MAX_KEY], client_sig[GW_SCRAM_MAX_KEY];
    unsigned char server_key[GW_SCRAM_MAX_KEY], salt[GW_SCRAM_MAX_MSG];
};

static bool hmac(const EVP_MD *md, const unsigned char *key, size_t md_len, const void *data,
                 size_t n, unsigned char *out)
{
    unsigned int outn = 0;
    return HMAC(md, key, (int)md_len, data, n, out, &outn) && outn == md_len;
}

/* SaltedPassword, ClientKey, StoredKey, ServerKey, the signatures over the AuthMessage. */
static bool derive(struct gw_scram *sc, struct keys *k, size_t salt_len, unsigned long iter,
                   const char *auth, size_t auth_len)
{
    const EVP_MD *md = scram_md(sc->hash);
    size_t m = sc->md_len;
    unsigned int sl = 0;
    return PKCS5_PBKDF2_HMAC(sc->password, (int)strlen(sc->password), k->salt, (int)salt_len,
                             (int)iter, md, (int)m, k->salted) == 1 &&
           hmac(md, k->salted, m, "Client Key", 10, k->client_key) &&
           EVP_Digest(k->client_key, m, k->stored_key, &sl, md, NULL) == 1 && sl == m &&
           hmac(md, k->stored_key, m, auth, auth_len, k->client_sig) &&
           hmac(md, k->salted, m, "Server Key", 10, k->server_key) &&
           hmac(md, k->server_key, m, auth, auth_len, sc->server_sig);
}

/* client-final-without-proof ("c=biws,r=nonce"), the AuthMessage over the three messages, the
 * keys, then ",p=" and the proof appended. */
int gw_scram_client_final(struct gw_scram *sc, const char *server_first, size_t len, char *out,
                          size_t outlen, const char **why)
{
    struct server_first sf;
    struct keys k;
    char auth[3 * GW_SCRAM_MAX_MSG];
    unsigned char proof[GW_SCRAM_MAX_KEY];
    size_t salt_len = 0;
    int rc = len < GW_SCRAM_MAX_MSG ? parse_server_first(sc, server_first, len, &sf, why)
                                    : (*why = "a server-first message too long", GW_ELIMIT);
    if (!rc &&
        gw_scram_b64_decode(sf.salt_b64, sf.salt_len, k.salt, sizeof(k.salt), &salt_len) != 0)
        rc = (*why = "a salt that is not base64", GW_EPROTO);
    if (!rc && salt_len == 0)
        rc = (*why = "an empty salt", GW_EPROTO);
    int n = 0, a = 0;
    if (!rc) {
        n = snprintf(out, outlen, "c=" GS2_HEADER_B64 ",r=%.*s", (int)sf.nonce_len, sf.nonce);
        a = snprintf(auth, sizeof(auth), "%s,%.*s,%s", sc->client_first_bare, (int)len,
                     server_first, out);
        if (n < 0 || (size_t)n >= outlen || a < 0 || (size_t)a >= sizeof(auth))
            rc = (*why = "a message too long", GW_ELIMIT);
    }
    if (!rc && !derive(sc, &k, salt_len, sf.iter, auth, (size_t)a))
        rc = (*why = "the key derivation failed", GW_EIO);
    if (!rc) {
        for (size_t i = 0; i < sc->md_len; i++)
            proof[i] = k.client_key[i] ^ k.client_sig[i];
        size_t room = outlen - (size_t)n;
        if (room < 3 + 4 * ((sc->md_len + 2) / 3) + 1)
            rc = (*why = "a message too long", GW_ELIMIT);
        else {
            memcpy(out + n, ",p=", 3);
            EVP_EncodeBlock((unsigned char *)out + n + 3, proof, (int)sc->md_len);
            sc->proof_made = true;
        }
    }
    OPENSSL_cleanse(&k, sizeof(k));
    OPENSSL_cleanse(proof, sizeof(proof));
    OPENSSL_cleanse(sc->password, sizeof(sc->password));
    return rc;
}

int gw_scram_verify_final(const struct gw_scram *sc, const char *server_final, size_t len,
                          const char **why)
{
    unsigned char got[GW_SCRAM_MAX_MSG];
    size_t got_len = 0;
    if (!sc->proof_made)
        return *why = "no proof was sent", GW_EPROTO;
    if (len >= 2 && server_final[0] == 'e' && server_final[1] == '=')
        return *why = "the server sent an error (e=)", GW_EPROTO;
    if (len < 2 || server_final[0] != 'v' || server_final[1] != '=')
        return *why = "no server signature (v=)", GW_EPROTO;
    const char *v = server_final + 2, *comma = memchr(v, ',', len - 2);
    size_t vlen = comma ? (size_t)(comma - v) : len - 2;
    if (gw_scram_b64_decode(v, vlen, got, sizeof(got), &got_len) != 0)
        return *why = "a server signature that is not base64", GW_EPROTO;
    if (got_len != sc->md_len || CRYPTO_memcmp(got, sc->server_sig, sc->md_len) != 0)
        return *why = "a wrong server signature", GW_EPROTO;
    return 0;
}

void gw_scram_cleanup(struct gw_scram *sc)
{
    OPENSSL_cleanse(sc, sizeof(*sc));
}
