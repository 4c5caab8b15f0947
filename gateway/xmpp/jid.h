/* JIDs (RFC 7622) as the gateway needs them: split, check lengths and characters, compare domains.
 * No PRECIS profiles (no library for them in our dependency set): upstream is the authority on
 * what a JID means; the gateway only refuses what can never be valid. */
#ifndef GW_XMPP_JID_H
#define GW_XMPP_JID_H

#include <stdbool.h>
#include <stddef.h>
#include "core/err.h"
#include "core/host.h"

#define GW_JID_PART_MAX 1023          /* bytes in a local part or a resource (RFC 7622) */
#define GW_JID_DOMAIN_MAX GW_HOST_MAX /* bytes in a domain, as DNS and the configuration */

struct gw_jid {
    char local[GW_JID_PART_MAX + 1];    /* "" if none */
    char domain[GW_JID_DOMAIN_MAX + 1]; /* lowercased when ASCII; no trailing dot */
    char resource[GW_JID_PART_MAX + 1]; /* "" if none */
};

/* GW_EINVAL for anything that is not a JID (empty parts, over-long parts, bad UTF-8, forbidden
 * characters such as space, '"', '&', '\'', '/', ':', '<', '>', '@' in the local part, a domain
 * that gw_jid_domain_valid refuses). */
int gw_jid_parse(const char *s, struct gw_jid *out) GW_MUST_CHECK;
/* Writes local@domain/resource; GW_ELIMIT when out is too small. */
int gw_jid_format(const struct gw_jid *j, char *out, size_t outlen) GW_MUST_CHECK;
/* A domain part alone, with or without one trailing dot: the rules of gw_host_domain_valid
 * (core/host.h), which the configuration's "domains" and "upstreams" follow too. */
bool gw_jid_domain_valid(const char *domain);
bool gw_jid_domain_equal(const char *a, const char *b); /* ASCII case-insensitive */

#endif
