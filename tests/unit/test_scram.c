/* Tests for gateway/session/scram.c without sockets: the test vectors of RFC 5802 section 5
 * (SCRAM-SHA-1) and RFC 7677 section 3 (SCRAM-SHA-256) byte for byte (client-first, client-final
 * with its proof, the server signature accepted); server-first messages refused (a nonce that does
 * not extend ours or only repeats it, missing r=, s= or i=, an iteration count out of bounds or
 * not a number, a salt that is not base64 or is empty, a mandatory extension m=); server-final
 * messages refused (a wrong, truncated or missing v=, e=); user names and passwords that are not
 * printable ASCII refused; a fresh client nonce is random; the password is cleared. */
#include "session/scram.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

/* RFC 5802 section 5 */
#define SHA1_CNONCE "fyko+d2lbbFgONRv9qkxdawL"
#define SHA1_SFIRST "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
#define SHA1_CFINAL                                                                                \
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
#define SHA1_SFINAL "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

/* RFC 7677 section 3 */
#define SHA256_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define SHA256_SFIRST                                                                              \
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
#define SHA256_CFINAL                                                                              \
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p="                               \
    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define SHA256_SFINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

static void test_vector(enum gw_scram_hash h, const char *cnonce, const char *cfirst,
                        const char *sfirst, const char *cfinal, const char *sfinal)
{
    struct gw_scram sc;
    char out[GW_SCRAM_MAX_MSG];
    const char *why = NULL;
    CHECK(gw_scram_init(&sc, h, "user", "pencil", cnonce) == 0);
    CHECK(gw_scram_client_first(&sc, out, sizeof(out)) == 0);
    CHECK_STR(out, cfirst);
    CHECK(gw_scram_client_final(&sc, sfirst, strlen(sfirst), out, sizeof(out), &why) == 0);
    CHECK_STR(out, cfinal);
    CHECK(sc.password[0] == '\0');
    CHECK(gw_scram_verify_final(&sc, sfinal, strlen(sfinal), &why) == 0);
    gw_scram_cleanup(&sc);
}

/* The server-first message is refused, with a reason. */
static void refused_first(enum gw_scram_hash h, const char *cnonce, const char *sfirst, int want)
{
    struct gw_scram sc;
    char out[GW_SCRAM_MAX_MSG];
    const char *why = NULL;
    CHECK(gw_scram_init(&sc, h, "user", "pencil", cnonce) == 0);
    int rc = gw_scram_client_final(&sc, sfirst, strlen(sfirst), out, sizeof(out), &why);
    if (rc != want)
        fprintf(stderr, "server-first \"%s\": %d, expected %d\n", sfirst, rc, want);
    CHECK(rc == want);
    CHECK(why && *why);
    CHECK(sc.password[0] == '\0');
    CHECK(!sc.proof_made);
    gw_scram_cleanup(&sc);
}

static void test_bad_server_first(void)
{
    const enum gw_scram_hash h = GW_SCRAM_SHA1;
    const char *c = SHA1_CNONCE;
    refused_first(h, c, "r=xyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                  GW_EPROTO); /* not our nonce */
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkx,s=QSXCR+Q6sek8bf92,i=4096", GW_EPROTO);
    refused_first(h, c, "s=QSXCR+Q6sek8bf92,i=4096", GW_EPROTO);             /* no r= */
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096", GW_EPROTO); /* no s= */
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096,s=QSXCR+Q6sek8bf92", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4095", GW_ELIMIT);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=100001", GW_ELIMIT);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=1", GW_ELIMIT);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096x", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=-4096", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=04096", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf9,i=4096", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR*Q6sek8bf92,i=4096", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QS=CR+Q6sek8bf92,i=4096", GW_EPROTO);
    refused_first(h, c, "r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=,i=4096", GW_EPROTO);
    refused_first(h, c, "m=ext,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096",
                  GW_EPROTO);
    refused_first(h, c, "", GW_EPROTO);
}

static void test_optional_extension(void)
{
    /* RFC 5802 7: an extension after i= is ignored; it is part of the AuthMessage, so the
     * proof differs from the vector's. */
    struct gw_scram sc;
    char out[GW_SCRAM_MAX_MSG];
    const char *why = NULL;
    const char *sf = SHA1_SFIRST ",x=ext";
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "user", "pencil", SHA1_CNONCE) == 0);
    CHECK(gw_scram_client_final(&sc, sf, strlen(sf), out, sizeof(out), &why) == 0);
    CHECK(strncmp(out, SHA1_CFINAL, strlen(SHA1_CFINAL) - 28) == 0);
    CHECK(strcmp(out, SHA1_CFINAL) != 0);
    gw_scram_cleanup(&sc);
}

/* The vector's exchange up to the proof, then a server-final that must be refused. */
static void refused_final(const char *sfinal)
{
    struct gw_scram sc;
    char out[GW_SCRAM_MAX_MSG];
    const char *why = NULL;
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA256, "user", "pencil", SHA256_CNONCE) == 0);
    CHECK(gw_scram_client_final(&sc, SHA256_SFIRST, strlen(SHA256_SFIRST), out, sizeof(out),
                                &why) == 0);
    why = NULL;
    CHECK(gw_scram_verify_final(&sc, sfinal, strlen(sfinal), &why) == GW_EPROTO);
    CHECK(why && *why);
    gw_scram_cleanup(&sc);
}

static void test_bad_server_final(void)
{
    refused_final("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="); /* one bit off */
    refused_final(SHA1_SFINAL);                                      /* SHA-1's, too short */
    refused_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4");  /* not base64 */
    refused_final("v=");
    refused_final("");
    refused_final("e=invalid-proof");
    refused_final("x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    /* No proof sent yet: nothing to check against. */
    struct gw_scram sc;
    const char *why = NULL;
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA256, "user", "pencil", SHA256_CNONCE) == 0);
    CHECK(gw_scram_verify_final(&sc, SHA256_SFINAL, strlen(SHA256_SFINAL), &why) == GW_EPROTO);
    gw_scram_cleanup(&sc);
}

static void test_init(void)
{
    struct gw_scram sc, sc2;
    char a[GW_SCRAM_MAX_MSG], b[GW_SCRAM_MAX_MSG];
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "us,er=", "pencil", "abc") == 0);
    CHECK(gw_scram_client_first(&sc, a, sizeof(a)) == 0);
    CHECK_STR(a, "n,,n=us=2Cer=3D,r=abc");
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "user", "p\xc3\xa9ncil", NULL) == GW_EINVAL);
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "user", "pen\tcil", NULL) == GW_EINVAL);
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "us\xc3\xa9r", "pencil", NULL) == GW_EINVAL);
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "", "pencil", NULL) == GW_EINVAL);
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "user", "pencil", "a,b") == GW_EINVAL);
    char longpw[GW_SCRAM_MAX_PASS + 2];
    memset(longpw, 'x', sizeof(longpw) - 1);
    longpw[sizeof(longpw) - 1] = '\0';
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA1, "user", longpw, NULL) == GW_EINVAL);
    /* Fresh nonces: 48 hex characters, never twice the same. */
    CHECK(gw_scram_init(&sc, GW_SCRAM_SHA256, "user", "pencil", NULL) == 0);
    CHECK(gw_scram_init(&sc2, GW_SCRAM_SHA256, "user", "pencil", NULL) == 0);
    CHECK(gw_scram_client_first(&sc, a, sizeof(a)) == 0);
    CHECK(gw_scram_client_first(&sc2, b, sizeof(b)) == 0);
    CHECK(strlen(a) == strlen("n,,n=user,r=") + 48);
    CHECK(strcmp(a, b) != 0);
    CHECK(gw_scram_client_first(&sc, a, 10) == GW_ELIMIT);
    CHECK_STR(gw_scram_mech(GW_SCRAM_SHA1), "SCRAM-SHA-1");
    CHECK_STR(gw_scram_mech(GW_SCRAM_SHA256), "SCRAM-SHA-256");
    gw_scram_cleanup(&sc);
    gw_scram_cleanup(&sc2);
}

int main(void)
{
    test_vector(GW_SCRAM_SHA1, SHA1_CNONCE, "n,,n=user,r=" SHA1_CNONCE, SHA1_SFIRST, SHA1_CFINAL,
                SHA1_SFINAL);
    test_vector(GW_SCRAM_SHA256, SHA256_CNONCE, "n,,n=user,r=" SHA256_CNONCE, SHA256_SFIRST,
                SHA256_CFINAL, SHA256_SFINAL);
    test_bad_server_first();
    test_optional_extension();
    test_bad_server_final();
    test_init();
    return CHECK_SUMMARY();
}
