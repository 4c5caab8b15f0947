/* An intrusive hash map keyed by a string the entry itself holds (a session id, a JID): the caller
 * embeds a struct gw_strmap_node in its own struct, so adding never allocates (only growing the
 * bucket array does, and a map that cannot grow still works, with longer chains). Recover the
 * entry with GW_CONTAINER_OF. The hash is keyed per map (clients choose keys). Calls: core/rand. */
#ifndef GW_CORE_STRMAP_H
#define GW_CORE_STRMAP_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

#define GW_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct gw_strmap_node {
    struct gw_strmap_node *next; /* chain */
    const char *key;             /* the entry's own string: must not change while in the map */
    uint64_t hash;               /* of key */
};

struct gw_strmap {
    struct gw_strmap_node **b; /* buckets, a power of two of them */
    size_t nb;                 /* buckets */
    size_t n;                  /* entries */
    uint64_t key[2];           /* the hash key, random per map */
};

int gw_strmap_init(struct gw_strmap *m) GW_MUST_CHECK; /* GW_ENOMEM, GW_EIO (no randomness) */
void gw_strmap_cleanup(struct gw_strmap *m);           /* frees the buckets, not the entries */
void gw_strmap_add(struct gw_strmap *m, struct gw_strmap_node *node, const char *key);
void gw_strmap_del(struct gw_strmap *m, struct gw_strmap_node *node); /* no-op if not in it */
struct gw_strmap_node *gw_strmap_find(const struct gw_strmap *m, const char *key);
/* Iteration: first, then next until NULL. Do not add or delete while iterating; to take entries
 * out one by one, call first again after each deletion. */
struct gw_strmap_node *gw_strmap_first(const struct gw_strmap *m);
struct gw_strmap_node *gw_strmap_next(const struct gw_strmap *m, const struct gw_strmap_node *node);

/* SipHash-2-4 of data under a 128-bit key (the map's hash; exported for its test vectors). */
uint64_t gw_siphash24(const uint64_t key[2], const void *data, size_t len);

#endif
