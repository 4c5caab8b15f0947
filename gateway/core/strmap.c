/* Intrusive chained hash map keyed by strings. Keys come from clients (resources in JIDs), so the
 * hash is keyed: SipHash-2-4 with a random key per map, so that nobody can choose keys that share
 * a bucket. Written here because OpenSSL's SipHash (EVP_MAC) allocates a context per call, too
 * dear for every lookup. Calls: core/rand, libc. */
#include "core/strmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/rand.h"

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND(v0, v1, v2, v3)                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t gw_siphash24(const uint64_t key[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ull ^ key[0], v1 = 0x646f72616e646f6dull ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ key[0], v3 = 0x7465646279746573ull ^ key[1];
    size_t whole = len & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND(v0, v1, v2, v3);
        SIPROUND(v0, v1, v2, v3);
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[whole + i] << (8 * i);
    v3 ^= b;
    SIPROUND(v0, v1, v2, v3);
    SIPROUND(v0, v1, v2, v3);
    v0 ^= b;
    v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        SIPROUND(v0, v1, v2, v3);
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash_str(const struct gw_strmap *m, const char *s)
{
    return gw_siphash24(m->key, s, strlen(s));
}

static bool grow(struct gw_strmap *m)
{
    size_t nb = m->nb ? m->nb * 2 : 64;
    struct gw_strmap_node **b = calloc(nb, sizeof(*b));
    if (!b)
        return false;
    for (size_t i = 0; i < m->nb; i++) {
        for (struct gw_strmap_node *e = m->b[i], *next; e; e = next) {
            next = e->next;
            size_t k = e->hash & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
    return true;
}

int gw_strmap_init(struct gw_strmap *m)
{
    memset(m, 0, sizeof(*m));
    if (gw_rand_u64(&m->key[0]) != 0 || gw_rand_u64(&m->key[1]) != 0)
        return GW_EIO;
    return grow(m) ? 0 : GW_ENOMEM;
}

void gw_strmap_cleanup(struct gw_strmap *m)
{
    free(m->b);
    memset(m, 0, sizeof(*m));
}

void gw_strmap_add(struct gw_strmap *m, struct gw_strmap_node *node, const char *key)
{
    if (m->n >= m->nb)
        (void)grow(m); /* a full map still works, only slower */
    node->key = key;
    node->hash = hash_str(m, key);
    size_t k = node->hash & (m->nb - 1);
    node->next = m->b[k];
    m->b[k] = node;
    m->n++;
}

void gw_strmap_del(struct gw_strmap *m, struct gw_strmap_node *node)
{
    if (!m->nb || !node->key)
        return;
    for (struct gw_strmap_node **pp = &m->b[node->hash & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
        if (*pp == node) {
            *pp = node->next;
            node->next = NULL;
            m->n--;
            return;
        }
    }
}

struct gw_strmap_node *gw_strmap_find(const struct gw_strmap *m, const char *key)
{
    if (!m->nb || !key)
        return NULL;
    uint64_t h = hash_str(m, key);
    for (struct gw_strmap_node *e = m->b[h & (m->nb - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static struct gw_strmap_node *from_bucket(const struct gw_strmap *m, size_t i)
{
    for (; i < m->nb; i++)
        if (m->b[i])
            return m->b[i];
    return NULL;
}

struct gw_strmap_node *gw_strmap_first(const struct gw_strmap *m)
{
    return m->n ? from_bucket(m, 0) : NULL;
}

struct gw_strmap_node *gw_strmap_next(const struct gw_strmap *m, const struct gw_strmap_node *node)
{
    if (node->next)
        return node->next;
    return from_bucket(m, (node->hash & (m->nb - 1)) + 1);
}
