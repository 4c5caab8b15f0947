/* The client side of SASL SCRAM (RFC 5802) with SHA-1 or SHA-256 (RFC 7677), without channel
 * binding (gs2 header "n,,", the -PLUS mechanisms are never offered): the messages as strings, no
 * sockets, no base64 of the SASL layer. login.c carries them over the stream.
 *
 * Bounds: the server's iteration count must be GW_SCRAM_MIN_ITER..GW_SCRAM_MAX_ITER (RFC 7677
 * asks for at least 4096, Prosody's default; the top bound keeps PBKDF2, which runs on the loop
 * thread, to a few tens of milliseconds). SASLprep (RFC 4013) is not done: a user name or
 * password must be printable ASCII (0x20..0x7e), for which SASLprep changes nothing; anything
 * else is refused with GW_EINVAL before a byte is sent. */
#ifndef GW_SESSION_SCRAM_H
#define GW_SESSION_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define GW_SCRAM_MIN_ITER 4096
#define GW_SCRAM_MAX_ITER 100000
#define GW_SCRAM_MAX_USER 256 /* user name, before its ',' and '=' are escaped */
#define GW_SCRAM_MAX_PASS 1024
#define GW_SCRAM_MAX_MSG 2048 /* any one message either way */
#define GW_SCRAM_MAX_KEY 32   /* SHA-256 */

enum gw_scram_hash { GW_SCRAM_SHA1, GW_SCRAM_SHA256 };

/* One exchange. The password is kept only until the client-final message is made; every key is
 * cleared by gw_scram_cleanup(). */
struct gw_scram {
    enum gw_scram_hash hash;
    char password[GW_SCRAM_MAX_PASS + 1];       /* cleared once the proof is made */
    char client_first_bare[GW_SCRAM_MAX_MSG];   /* "n=user,r=cnonce" */
    size_t cnonce_len;                          /* the nonce's length inside it */
    unsigned char server_sig[GW_SCRAM_MAX_KEY]; /* what the server's v= must be */
    size_t md_len;                              /* 20 or 32 */
    bool proof_made;                            /* server_sig is set */
};

/* "SCRAM-SHA-1" or "SCRAM-SHA-256". */
const char *gw_scram_mech(enum gw_scram_hash h);

/* Start an exchange. cnonce: NULL for a fresh random one (tests give RFC's). GW_EINVAL for a user
 * name or password that is not printable ASCII or too long, GW_EIO if RAND fails. The password
 * is copied; on any error nothing is kept. */
int gw_scram_init(struct gw_scram *sc, enum gw_scram_hash h, const char *user, const char *password,
                  const char *cnonce) GW_MUST_CHECK;

/* The client-first message, "n,," + client-first-bare, NUL-terminated into out. */
int gw_scram_client_first(const struct gw_scram *sc, char *out, size_t outlen) GW_MUST_CHECK;

/* Read the server-first message (len bytes, not NUL-terminated) and write the client-final
 * message with its proof into out. The server-first message is checked strictly: r= starting
 * with our nonce and longer than it, s= valid non-empty base64, i= a decimal number within the
 * bounds, no mandatory extension (m=). GW_EPROTO with a reason in *why (a constant string,
 * never a secret) for a bad message, GW_ELIMIT for a count out of bounds. The password is
 * cleared whatever the outcome. */
int gw_scram_client_final(struct gw_scram *sc, const char *server_first, size_t len, char *out,
                          size_t outlen, const char **why) GW_MUST_CHECK;

/* Check the server-final message ("v=" + base64 of the server signature; len bytes): 0 if it is
 * the one expected, GW_EPROTO (reason in *why) for "e=", a missing or wrong "v=". */
int gw_scram_verify_final(const struct gw_scram *sc, const char *server_final, size_t len,
                          const char **why) GW_MUST_CHECK;

/* Strict base64 (RFC 4648, padded, no white space, nothing after the padding), as the SASL layer
 * of XMPP carries it (RFC 6120 6.4.2) and SCRAM's s=, p= and v= are: *outlen bytes into out.
 * GW_EPROTO for anything else, the empty string included; out must have room for 3*len/4. */
int gw_scram_b64_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
                        size_t *outlen) GW_MUST_CHECK;

void gw_scram_cleanup(struct gw_scram *sc);

#endif
