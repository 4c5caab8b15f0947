/* Tests for gateway/xmpp/jid.c: splitting, lengths at the edges, UTF-8, forbidden characters,
 * domain rules (IP literals, labels, trailing dot, case), formatting and comparison. */
#include "xmpp/jid.h"
#include "check.h"

#include <stdio.h>
#include <string.h>

/* Parses s and checks the three parts. */
#define CHECK_JID(s, l, d, r)                                                                      \
    do {                                                                                           \
        struct gw_jid j_;                                                                          \
        int rc_ = gw_jid_parse((s), &j_);                                                          \
        if (rc_ != 0)                                                                              \
            fprintf(stderr, "refused: \"%s\"\n", (s));                                             \
        CHECK(rc_ == 0);                                                                           \
        if (rc_ == 0) {                                                                            \
            CHECK_STR(j_.local, (l));                                                              \
            CHECK_STR(j_.domain, (d));                                                             \
            CHECK_STR(j_.resource, (r));                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_BAD(s)                                                                               \
    do {                                                                                           \
        struct gw_jid j_;                                                                          \
        int rc_ = gw_jid_parse((s), &j_);                                                          \
        if (rc_ != GW_EINVAL)                                                                      \
            fprintf(stderr, "accepted: \"%s\"\n", (s));                                            \
        CHECK(rc_ == GW_EINVAL);                                                                   \
    } while (0)

/* A domain of exactly len bytes: labels of 62 letters, then the rest. */
static void make_domain(char *out, size_t len)
{
    size_t k = 0;
    while (len - k > 63) {
        memset(out + k, 'a', 62);
        out[k + 62] = '.';
        k += 63;
    }
    memset(out + k, 'b', len - k);
    out[len] = '\0';
}

static void test_split(void)
{
    CHECK_JID("example.com", "", "example.com", "");
    CHECK_JID("user@example.com", "user", "example.com", "");
    CHECK_JID("user@example.com/res", "user", "example.com", "res");
    CHECK_JID("example.com/res", "", "example.com", "res");
    CHECK_JID("localhost", "", "localhost", "");
    CHECK_JID("a@b", "a", "b", "");
    /* The first '/' starts the resource, which may hold '/' and '@'. */
    CHECK_JID("a@b/c@d/e", "a", "b", "c@d/e");
    CHECK_JID("a/b@c", "", "a", "b@c");
    CHECK_JID("x/a/b/c", "", "x", "a/b/c");
    CHECK_JID("x//", "", "x", "/");
    /* Case: domain lowercased (ASCII), local and resource kept. */
    CHECK_JID("User@Example.COM/Res", "User", "example.com", "Res");
    /* One trailing dot is not part of the domain. */
    CHECK_JID("user@example.com./r", "user", "example.com", "r");
    CHECK_JID("example.com.", "", "example.com", "");
    /* Spaces and punctuation are fine in a resource, and in a local part what is not forbidden. */
    CHECK_JID("x/My Phone (2)", "", "x", "My Phone (2)");
    CHECK_JID("first.last+tag_1=x!#$%*?^`{|}~@x", "first.last+tag_1=x!#$%*?^`{|}~", "x", "");
    CHECK_JID("x/\"&'<>:", "", "x", "\"&'<>:");
    /* UTF-8 in every part; ASCII lowercasing leaves other letters alone. */
    CHECK_JID("j\xc3\xbcrgen@EX\xc3\x84MPLE.de/\xf0\x9f\x99\x82", "j\xc3\xbcrgen",
              "ex\xc3\x84mple.de", "\xf0\x9f\x99\x82");
    CHECK_JID("\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95",
              "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", "");
    /* IP literals. */
    CHECK_JID("user@[::1]/r", "user", "[::1]", "r");
    CHECK_JID("[2001:DB8::1]", "", "[2001:db8::1]", "");
    CHECK_JID("user@127.0.0.1", "user", "127.0.0.1", "");
    CHECK_JID("[::ffff:192.0.2.1]", "", "[::ffff:192.0.2.1]", "");
    CHECK_JID("1.2.3.4.", "", "1.2.3.4", ""); /* the trailing dot goes first */
    /* Hyphens inside labels, digits anywhere but an all-digit name. */
    CHECK_JID("a-b.x-1.example", "", "a-b.x-1.example", "");
    CHECK_JID("xn--bcher-kva.example", "", "xn--bcher-kva.example", "");
    CHECK_JID("123.example", "", "123.example", "");
}

static void test_empty_parts(void)
{
    CHECK_BAD("");
    CHECK_BAD("@example.com");
    CHECK_BAD("user@");
    CHECK_BAD("user@/r");
    CHECK_BAD("example.com/");
    CHECK_BAD("user@example.com/");
    CHECK_BAD("/r");
    CHECK_BAD("@");
    CHECK_BAD("/");
    CHECK_BAD("@/");
    CHECK_BAD(".");
    CHECK_BAD("user@.");
    CHECK_BAD("user@./r");
    CHECK_BAD("example.com..");
    CHECK_BAD(".example.com");
    CHECK_BAD("a..b");

    struct gw_jid j;
    CHECK(gw_jid_parse(NULL, &j) == GW_EINVAL);
    CHECK(gw_jid_parse("a@b", NULL) == GW_EINVAL);
}

static void test_forbidden(void)
{
    /* RFC 7622 3.3.1 in the local part. */
    CHECK_BAD("a b@x");
    CHECK_BAD("a\"b@x");
    CHECK_BAD("a&b@x");
    CHECK_BAD("a'b@x");
    CHECK_BAD("a:b@x");
    CHECK_BAD("a<b@x");
    CHECK_BAD("a>b@x");
    CHECK_BAD("a@b@x"); /* the second '@' lands in the domain */
    CHECK_BAD(" @x");
    /* Other spaces (Zs, Zl, Zp) in the local part. */
    CHECK_BAD("a\xc2\xa0"
              "b@x");
    CHECK_BAD("a\xe3\x80\x80"
              "b@x");
    CHECK_BAD("a\xe2\x80\x80"
              "b@x");
    CHECK_BAD("a\xe2\x80\xa8"
              "b@x");
    /* Controls anywhere. */
    CHECK_BAD("a\x01"
              "b@x");
    CHECK_BAD("a\x7f"
              "b@x");
    CHECK_BAD("a\xc2\x80"
              "b@x");
    CHECK_BAD("x/a\tb");
    CHECK_BAD("x/a\nb");
    CHECK_BAD("x/a\x7f");
    CHECK_BAD("x/a\xc2\x9f");
    CHECK_BAD("x\x01.example");
    /* Not in a domain. */
    CHECK_BAD("exa mple.com");
    CHECK_BAD("example.com:5222");
    CHECK_BAD("a_b.example");
    CHECK_BAD("a!b.example");
    CHECK_BAD("-a.example");
    CHECK_BAD("a-.example");
    CHECK_BAD("a.-b");
    CHECK_BAD("ex\xc2\xa0mple.com");
    CHECK_BAD("[::1]:5222");
    CHECK_BAD("[::1");
    CHECK_BAD("::1");
    CHECK_BAD("[]");
    CHECK_BAD("[1.2.3.4]");
    CHECK_BAD("[zz::1]");
    CHECK_BAD("[::1]x");
    CHECK_BAD("x[::1]");
    CHECK_BAD("256.1.1.1");
    CHECK_BAD("1.2.3");
    CHECK_BAD("123");
}

static void test_bad_utf8(void)
{
    CHECK_BAD("\x80@x");             /* lone continuation byte */
    CHECK_BAD("a\xc3@x");            /* truncated 2-byte sequence */
    CHECK_BAD("a\xe2\x82@x");        /* truncated 3-byte sequence */
    CHECK_BAD("\xc0\xaf@x");         /* overlong '/' */
    CHECK_BAD("\xc1\xbf@x");         /* overlong */
    CHECK_BAD("\xe0\x80\xaf@x");     /* overlong, 3 bytes */
    CHECK_BAD("\xf0\x80\x80\xaf@x"); /* overlong, 4 bytes */
    CHECK_BAD("\xed\xa0\x80@x");     /* UTF-16 surrogate */
    CHECK_BAD("\xed\xbf\xbf@x");     /* UTF-16 surrogate */
    CHECK_BAD("\xf4\x90\x80\x80@x"); /* past U+10FFFF */
    CHECK_BAD("\xf5\x80\x80\x80@x");
    CHECK_BAD("\xff@x");
    CHECK_BAD("\xfe@x");
    CHECK_BAD("a@ex\xc3"
              "ample.com");
    CHECK_BAD("a@x/\xe2\x82");
    CHECK_BAD("a@x/ok\x80");
    CHECK_BAD("\xf0\x9f\x99@x"); /* emoji cut short */
    /* The edges that are fine. */
    CHECK_JID("\xc2\xa9@x", "\xc2\xa9", "x", "");                 /* U+00A9 */
    CHECK_JID("x/\xef\xbf\xbd", "", "x", "\xef\xbf\xbd");         /* U+FFFD */
    CHECK_JID("x/\xf4\x8f\xbf\xbf", "", "x", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    CHECK_JID("x/\xee\x80\x80", "", "x", "\xee\x80\x80");         /* U+E000 */
}

static void test_lengths(void)
{
    static char s[4 * GW_JID_PART_MAX];
    static char part[GW_JID_PART_MAX + 8];
    static char dom[GW_JID_PART_MAX + 8];
    struct gw_jid j;

    /* Local part: 1023 bytes fit, 1024 do not. */
    memset(part, 'l', 1023);
    part[1023] = '\0';
    snprintf(s, sizeof(s), "%s@x", part);
    CHECK(gw_jid_parse(s, &j) == 0);
    CHECK(strlen(j.local) == 1023);
    memset(part, 'l', 1024);
    part[1024] = '\0';
    snprintf(s, sizeof(s), "%s@x", part);
    CHECK(gw_jid_parse(s, &j) == GW_EINVAL);

    /* Resource. */
    memset(part, 'r', 1023);
    part[1023] = '\0';
    snprintf(s, sizeof(s), "x/%s", part);
    CHECK(gw_jid_parse(s, &j) == 0);
    CHECK(strlen(j.resource) == 1023);
    memset(part, 'r', 1024);
    part[1024] = '\0';
    snprintf(s, sizeof(s), "x/%s", part);
    CHECK(gw_jid_parse(s, &j) == GW_EINVAL);

    /* Multi-byte characters count in bytes: 511 x 2 bytes + 1 = 1023, one more = 1025. */
    size_t n = 0;
    for (unsigned i = 0; i < 511; i++, n += 2)
        memcpy(part + n, "\xc3\xa9", 2);
    part[n++] = 'e';
    part[n] = '\0';
    snprintf(s, sizeof(s), "x/%s", part);
    CHECK(gw_jid_parse(s, &j) == 0);
    memcpy(part + n - 1, "\xc3\xa9", 3);
    snprintf(s, sizeof(s), "x/%s", part);
    CHECK(gw_jid_parse(s, &j) == GW_EINVAL);

    /* Domain: 255 bytes fit (DNS, and what the configuration allows), 256 do not, even though
     * RFC 7622 would allow 1023; a trailing dot does not count. */
    make_domain(dom, 255);
    CHECK(strlen(dom) == 255);
    CHECK(gw_jid_parse(dom, &j) == 0);
    CHECK(strlen(j.domain) == 255);
    CHECK(gw_jid_domain_valid(dom));
    dom[255] = '.';
    dom[256] = '\0';
    CHECK(gw_jid_parse(dom, &j) == 0);
    CHECK(strlen(j.domain) == 255);
    CHECK(gw_jid_domain_valid(dom));
    make_domain(dom, 256);
    CHECK(gw_jid_parse(dom, &j) == GW_EINVAL);
    CHECK(!gw_jid_domain_valid(dom));
    dom[256] = '.';
    dom[257] = '\0';
    CHECK(gw_jid_parse(dom, &j) == GW_EINVAL);
    CHECK(!gw_jid_domain_valid(dom));
    make_domain(dom, 1023);
    CHECK(gw_jid_parse(dom, &j) == GW_EINVAL);
    CHECK(!gw_jid_domain_valid(dom));

    /* ASCII labels: 63 octets fit, 64 do not. */
    memset(dom, 'a', 63);
    snprintf(dom + 63, 16, ".example");
    CHECK(gw_jid_parse(dom, &j) == 0);
    memset(dom, 'a', 64);
    snprintf(dom + 64, 16, ".example");
    CHECK(gw_jid_parse(dom, &j) == GW_EINVAL);

    /* Every part at its maximum at once (plus a trailing dot): the longest JID there is. */
    memset(part, 'p', 1023);
    part[1023] = '\0';
    make_domain(dom, 255);
    snprintf(s, sizeof(s), "%s@%s./%s", part, dom, part);
    CHECK(strlen(s) == 2 * 1023 + 255 + 3);
    CHECK(gw_jid_parse(s, &j) == 0);
    char out[2 * GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 3];
    CHECK(gw_jid_format(&j, out, sizeof(out)) == 0);
    CHECK(strlen(out) == 2 * 1023 + 255 + 2);
    CHECK(gw_jid_format(&j, out, sizeof(out) - 2) == GW_ELIMIT);
    /* One byte more anywhere is too much. */
    snprintf(s, sizeof(s), "%s@%s./%sq", part, dom, part);
    CHECK(gw_jid_parse(s, &j) == GW_EINVAL);
}

static void test_untouched_on_failure(void)
{
    struct gw_jid j;
    CHECK(gw_jid_parse("keep@example.com/res", &j) == 0);
    CHECK(gw_jid_parse("bad@@example.com", &j) == GW_EINVAL);
    CHECK(gw_jid_parse("a b@example.com", &j) == GW_EINVAL);
    CHECK_STR(j.local, "keep");
    CHECK_STR(j.domain, "example.com");
    CHECK_STR(j.resource, "res");
}

static void test_format(void)
{
    struct gw_jid j;
    char out[64];
    static const char *const round[] = {"example.com",   "u@example.com", "u@example.com/r",
                                        "example.com/r", "a@b/c@d/e",     "u@[::1]/r"};
    for (size_t i = 0; i < sizeof(round) / sizeof(round[0]); i++) {
        CHECK(gw_jid_parse(round[i], &j) == 0);
        CHECK(gw_jid_format(&j, out, sizeof(out)) == 0);
        CHECK_STR(out, round[i]);
    }
    CHECK(gw_jid_parse("U@EXAMPLE.com./R", &j) == 0);
    CHECK(gw_jid_format(&j, out, sizeof(out)) == 0);
    CHECK_STR(out, "U@example.com/R");

    /* Exactly enough room, and one byte short. */
    CHECK(gw_jid_parse("u@example.com/r", &j) == 0);
    CHECK(gw_jid_format(&j, out, 16) == 0);
    CHECK_STR(out, "u@example.com/r");
    CHECK(gw_jid_format(&j, out, 15) == GW_ELIMIT);
    CHECK_STR(out, "");
    CHECK(gw_jid_format(&j, out, 1) == GW_ELIMIT);
    CHECK(gw_jid_format(&j, out, 0) == GW_ELIMIT);
    CHECK(gw_jid_format(&j, NULL, 10) == GW_ELIMIT);

    /* Not a JID: no domain, or a part without its NUL. */
    struct gw_jid e;
    memset(&e, 0, sizeof(e));
    CHECK(gw_jid_format(&e, out, sizeof(out)) == GW_EINVAL);
    snprintf(e.domain, sizeof(e.domain), "x");
    memset(e.local, 'a', sizeof(e.local));
    CHECK(gw_jid_format(&e, out, sizeof(out)) == GW_EINVAL);
    CHECK(gw_jid_format(NULL, out, sizeof(out)) == GW_EINVAL);
}

static void test_domains(void)
{
    CHECK(gw_jid_domain_valid("example.com"));
    CHECK(gw_jid_domain_valid("EXAMPLE.com"));
    CHECK(gw_jid_domain_valid("example.com."));
    CHECK(gw_jid_domain_valid("localhost"));
    CHECK(gw_jid_domain_valid("[::1]"));
    CHECK(gw_jid_domain_valid("192.0.2.1"));
    CHECK(gw_jid_domain_valid("\xc3\xa4.example"));
    CHECK(!gw_jid_domain_valid(NULL));
    CHECK(!gw_jid_domain_valid(""));
    CHECK(!gw_jid_domain_valid("."));
    CHECK(!gw_jid_domain_valid("a@b"));
    CHECK(!gw_jid_domain_valid("a/b"));
    CHECK(!gw_jid_domain_valid("a b"));
    CHECK(!gw_jid_domain_valid("[::1"));
    CHECK(!gw_jid_domain_valid("999.0.0.1"));
    CHECK(!gw_jid_domain_valid("a\xff"));

    CHECK(gw_jid_domain_equal("example.com", "EXAMPLE.COM"));
    CHECK(gw_jid_domain_equal("Example.Com", "example.com"));
    CHECK(gw_jid_domain_equal("", ""));
    CHECK(!gw_jid_domain_equal("example.com", "example.co"));
    CHECK(!gw_jid_domain_equal("example.co", "example.com"));
    CHECK(!gw_jid_domain_equal("example.com", "example.com."));
    CHECK(!gw_jid_domain_equal("\xc3\x84", "\xc3\xa4")); /* non-ASCII compares as bytes */
    CHECK(gw_jid_domain_equal("\xc3\x84.example", "\xc3\x84.EXAMPLE"));
    CHECK(!gw_jid_domain_equal(NULL, "a"));
    CHECK(!gw_jid_domain_equal("a", NULL));
}

int main(void)
{
    test_split();
    test_empty_parts();
    test_forbidden();
    test_bad_utf8();
    test_lengths();
    test_untouched_on_failure();
    test_format();
    test_domains();
    return CHECK_SUMMARY();
}
