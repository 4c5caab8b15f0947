/* Intrusive chained hash map keyed by strings (FNV-1a). Calls: libc. */
#include "core/strmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
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
    node->hash = hash_str(key);
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
    uint64_t h = hash_str(key);
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
