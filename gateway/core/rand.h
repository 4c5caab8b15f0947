/* Unpredictable identifiers from OpenSSL's RAND. */
#ifndef GW_CORE_RAND_H
#define GW_CORE_RAND_H

#include <stddef.h>
#include <stdint.h>
#include "core/err.h"

/* Writes 2*nbytes lowercase hex characters and a NUL into out (size >= 2*nbytes+1). */
int gw_rand_hex(char *out, size_t nbytes) GW_MUST_CHECK;
int gw_rand_u64(uint64_t *out) GW_MUST_CHECK;

#endif
