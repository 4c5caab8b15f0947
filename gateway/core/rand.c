/* Randomness from OpenSSL. */
#include "core/rand.h"

#include <openssl/rand.h>

int gw_rand_hex(char *out, size_t nbytes)
{
    unsigned char raw[64];
    if (nbytes > sizeof(raw) || RAND_bytes(raw, (int)nbytes) != 1)
        return GW_EIO;
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

int gw_rand_u64(uint64_t *out)
{
    return RAND_bytes((unsigned char *)out, sizeof(*out)) == 1 ? 0 : GW_EIO;
}
