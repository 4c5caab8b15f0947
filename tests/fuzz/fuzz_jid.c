/* libFuzzer target for gateway/xmpp/jid.c. The input (cut at its first NUL, as a C string) is
 * parsed as a JID; when it parses:
 * - every part is within its bound, the domain is not empty, has no upper-case ASCII and no
 *   trailing dot, and passes gw_jid_domain_valid();
 * - formatting gives at most the longest JID text, needs exactly its length plus one byte
 *   (GW_ELIMIT one byte short), and parsing the formatted text gives the same parts;
 * - the formatted text is the input with the domain lower-cased and one trailing dot dropped.
 * A string with neither '@' nor '/' parses exactly when gw_jid_domain_valid() accepts it, and
 * gw_jid_domain_equal() is reflexive and symmetric. A failed parse leaves the output untouched.
 * Calls: xmpp/jid, core/host. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xmpp/jid.h"

/* local@domain/resource at their longest, and the NUL. */
#define JID_TEXT_MAX (2 * GW_JID_PART_MAX + GW_JID_DOMAIN_MAX + 2)
#define INPUT_MAX (JID_TEXT_MAX + 64)

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static void check_parts(const struct gw_jid *j)
{
    size_t l = strnlen(j->local, sizeof(j->local)), d = strnlen(j->domain, sizeof(j->domain));
    size_t r = strnlen(j->resource, sizeof(j->resource));
    if (l > GW_JID_PART_MAX || r > GW_JID_PART_MAX || d == 0 || d > GW_JID_DOMAIN_MAX)
        abort();
    if (j->domain[d - 1] == '.' || !gw_jid_domain_valid(j->domain))
        abort();
    for (size_t i = 0; i < d; i++)
        if (j->domain[i] >= 'A' && j->domain[i] <= 'Z')
            abort();
    if (!gw_jid_domain_equal(j->domain, j->domain))
        abort();
}

/* out is s with the domain lower-cased and at most one trailing dot of the domain dropped. */
static void check_text(const char *s, const struct gw_jid *j, const char *out)
{
    size_t sl = strlen(s), ol = strlen(out);
    size_t l = strlen(j->local), d = strlen(j->domain);
    size_t at = l ? l + 1 : 0; /* where the domain starts, in both */
    if (ol != sl && ol + 1 != sl)
        abort();
    if (memcmp(s, out, at) != 0)
        abort();
    for (size_t i = 0; i < d; i++)
        if (lower(s[at + i]) != out[at + i])
            abort();
    size_t skip = ol + 1 == sl ? 1 : 0;
    if (skip && s[at + d] != '.')
        abort();
    if (strcmp(s + at + d + skip, out + at + d) != 0)
        abort();
}

static void check_format(const char *s, const struct gw_jid *j)
{
    char out[JID_TEXT_MAX + 1];
    if (gw_jid_format(j, out, sizeof(out)) != 0)
        abort();
    size_t n = strlen(out);
    if (n > JID_TEXT_MAX)
        abort();
    char tight[JID_TEXT_MAX + 1];
    if (gw_jid_format(j, tight, n + 1) != 0 || strcmp(tight, out) != 0)
        abort();
    if (gw_jid_format(j, tight, n) != GW_ELIMIT)
        abort();
    check_text(s, j, out);

    static struct gw_jid again;
    if (gw_jid_parse(out, &again) != 0)
        abort();
    if (strcmp(again.local, j->local) || strcmp(again.domain, j->domain) ||
        strcmp(again.resource, j->resource))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char s[INPUT_MAX + 1];
    static struct gw_jid j, untouched;
    if (size > INPUT_MAX)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    memset(&j, 0x5a, sizeof(j));
    untouched = j;
    int rc = gw_jid_parse(s, &j);
    if (rc != 0 && rc != GW_EINVAL)
        abort();
    if (rc != 0) {
        if (memcmp(&j, &untouched, sizeof(j)) != 0)
            abort();
    } else {
        check_parts(&j);
        check_format(s, &j);
    }

    /* A bare domain: the JID rules and the domain rules are one. */
    if (!strchr(s, '@') && !strchr(s, '/') && (rc == 0) != gw_jid_domain_valid(s))
        abort();

    /* Domain comparison: the input against its first half, both ways. */
    size_t half = strlen(s) / 2;
    char a[INPUT_MAX / 2 + 2];
    memcpy(a, s, half);
    a[half] = '\0';
    if (gw_jid_domain_equal(a, s + half) != gw_jid_domain_equal(s + half, a))
        abort();
    if (!gw_jid_domain_equal(s, s))
        abort();
    return 0;
}
