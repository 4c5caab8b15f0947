/* Tests for gateway/core/strmap.c: add, find, delete, growth past the first bucket array,
 * iteration visiting every entry once; the keyed hash (SipHash-2-4 test vectors, a key per map). */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "core/strmap.h"

struct item {
    char key[16];
    int seen;
    struct gw_strmap_node node;
};

/* The reference vectors of the SipHash paper: key 00 01 .. 0f, message 00 01 .. (len-1). */
static void test_siphash(void)
{
    const uint64_t key[2] = {0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull};
    unsigned char msg[16];
    for (int i = 0; i < 16; i++)
        msg[i] = (unsigned char)i;
    CHECK(gw_siphash24(key, msg, 0) == 0x726fdb47dd0e0e31ull);
    CHECK(gw_siphash24(key, msg, 1) == 0x74f839c593dc67fdull);
    CHECK(gw_siphash24(key, msg, 7) == 0xab0200f58b01d137ull);
    CHECK(gw_siphash24(key, msg, 8) == 0x93f5f5799a932462ull);
    CHECK(gw_siphash24(key, msg, 15) == 0xa129ca6149be45e5ull);

    /* Two maps hash the same key differently (their keys are random). */
    struct gw_strmap a, b;
    struct gw_strmap_node na, nb;
    CHECK(gw_strmap_init(&a) == 0 && gw_strmap_init(&b) == 0);
    gw_strmap_add(&a, &na, "user@example.org/resource");
    gw_strmap_add(&b, &nb, "user@example.org/resource");
    CHECK(na.hash != nb.hash);
    CHECK(gw_strmap_find(&a, "user@example.org/resource") == &na);
    gw_strmap_cleanup(&a);
    gw_strmap_cleanup(&b);
}

int main(void)
{
    test_siphash();
    enum { N = 1000 };
    static struct item items[N];
    struct gw_strmap m;
    CHECK(gw_strmap_init(&m) == 0);
    CHECK(gw_strmap_first(&m) == NULL);
    for (int i = 0; i < N; i++) {
        snprintf(items[i].key, sizeof(items[i].key), "k%d", i);
        gw_strmap_add(&m, &items[i].node, items[i].key);
    }
    CHECK(m.n == N && m.nb >= N);
    int found = 0;
    for (int i = 0; i < N; i++) {
        struct gw_strmap_node *n = gw_strmap_find(&m, items[i].key);
        found += n && GW_CONTAINER_OF(n, struct item, node) == &items[i];
    }
    CHECK(found == N);
    CHECK(gw_strmap_find(&m, "nope") == NULL);
    CHECK(gw_strmap_find(&m, NULL) == NULL);

    int visited = 0;
    for (struct gw_strmap_node *n = gw_strmap_first(&m); n; n = gw_strmap_next(&m, n)) {
        GW_CONTAINER_OF(n, struct item, node)->seen++;
        visited++;
    }
    int once = 0;
    for (int i = 0; i < N; i++)
        once += items[i].seen == 1;
    CHECK(visited == N && once == N);

    for (int i = 0; i < N; i += 2)
        gw_strmap_del(&m, &items[i].node);
    gw_strmap_del(&m, &items[0].node); /* twice: nothing happens */
    CHECK(m.n == N / 2);
    CHECK(gw_strmap_find(&m, "k0") == NULL);
    CHECK(gw_strmap_find(&m, "k1") == &items[1].node);

    /* take them out one by one, as shutdown does */
    int taken = 0;
    struct gw_strmap_node *n;
    while ((n = gw_strmap_first(&m)) != NULL && taken <= N) {
        gw_strmap_del(&m, n);
        taken++;
    }
    CHECK(taken == N / 2 && m.n == 0);
    gw_strmap_cleanup(&m);
    return CHECK_SUMMARY();
}
