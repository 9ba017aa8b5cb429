/* names.c — names of isolation levels, kinds and verdicts, as printed and parsed. */
#include "pgrace.h"

#include <string.h>

const char *pgr_isolation_name(pgr_isolation iso)
{
    static const char *const n[] = { "read-committed", "repeatable-read", "serializable" };
    return iso >= 0 && iso < PGR_NISO ? n[iso] : "?";
}

int pgr_isolation_parse(const char *s, pgr_isolation *out)
{
    static const char *const alias[][2] = {
        { "read-committed", "rc" }, { "repeatable-read", "rr" }, { "serializable", "ser" } };
    for (int i = 0; i < PGR_NISO; i++)
        if (strcmp(s, alias[i][0]) == 0 || strcmp(s, alias[i][1]) == 0) { *out = (pgr_isolation)i; return 0; }
    return -1;
}

const char *pgr_kind_name(pgr_kind k)
{
    return k == PGR_ORIGINAL ? "original" : k == PGR_PROPOSED ? "proposed" : "recommended";
}

const char *pgr_verdict_name(pgr_verdict v)
{
    return v == PGR_RACE ? "race" : v == PGR_EITHER ? "either" : "safe";
}
