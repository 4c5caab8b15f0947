/* libFuzzer target for gateway/config/config.c: arbitrary bytes through gw_config_load_string,
 * then the cross-key checks and the upstream look-up on whatever loaded, and the address and
 * TLS-mode parsers on the raw text. Nothing may crash, leak, or leave err unterminated. */
#include "config/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const char *err, size_t errlen)
{
    if (!memchr(err, '\0', errlen) || err[0] == '\0')
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct gw_config *cfg = malloc(sizeof(*cfg));
    if (!text || !cfg) {
        free(text);
        free(cfg);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    gw_config_defaults(cfg);

    char err[512];
    err[0] = '\0';
    int rc = gw_config_load_string(cfg, text, "fuzz.json", err, sizeof(err));
    if (rc != 0) {
        check_err(err, sizeof(err));
    } else {
        if (gw_config_validate(cfg, err, sizeof(err)) != 0)
            check_err(err, sizeof(err));
        /* What loaded must be usable: every lookup stays inside the struct. */
        const struct gw_upstream_cfg *up = gw_config_upstream_for(cfg, "localhost");
        if (up && !memchr(up->addr.host, '\0', sizeof(up->addr.host)))
            abort();
        for (unsigned i = 0; i < cfg->n_domains; i++)
            (void)gw_config_upstream_for(cfg, cfg->domains[i]);
        for (unsigned i = 0; i < cfg->n_upstream_map; i++)
            if (gw_config_upstream_for(cfg, cfg->upstream_map[i].domain) != &cfg->upstream_map[i])
                abort();
    }

    struct gw_addr addr;
    if (gw_config_parse_addr(text, &addr) == 0 && (addr.port == 0 || !addr.host[0]))
        abort();
    enum gw_upstream_tls tls;
    if (gw_config_parse_tls(text, &tls) == 0 && strcmp(gw_config_tls_name(tls), text) != 0)
        abort();

    free(cfg);
    free(text);
    return 0;
}
