/*
 * parsers_fuzzer.c — everything pgrace parses from outside, with no server: schedule files
 * (pgrace replay), DSNs (--dsn / PGRACE_DSN), isolation levels and scenario names, and whole
 * command lines (NUL-separated arguments). The first byte picks the parser; the rest is its
 * input. Bad input must be an error, never a
 * crash, a leak or undefined behaviour (ASan+UBSan).
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char err[PGR_ERRLEN];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    char *z = malloc(n + 1);                /* NUL-terminated copy for the string parsers */
    if (!z) return 0;
    memcpy(z, text, n);
    z[n] = '\0';
    switch (data[0] % 4) {
    case 0:
        if (n > 0) pgr_schedule_check(text, n, err, sizeof err);
        break;
    case 1:
        pgr_dsn_check(z, err, sizeof err);
        break;
    case 2: {
        pgr_isolation iso;
        pgr_isolation_parse(z, &iso);
        pgr_find_scenario(z);
        break;
    }
    case 3: {                               /* a command line: arguments split at NUL bytes */
        char *argv[33];
        int argc = 0;
        argv[argc++] = "pgrace";
        for (size_t i = 0; i <= n && argc < 32;) {
            argv[argc++] = z + i;
            i += strlen(z + i) + 1;
        }
        argv[argc] = NULL;
        pgr_config cfg;
        pgr_config_defaults(&cfg);
        int npos;
        char **pos;
        pgr_cli_parse(argc, argv, &cfg, &npos, &pos, err, sizeof err);
        break;
    }
    }
    free(z);
    return 0;
}
