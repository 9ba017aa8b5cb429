/*
 * registry.c — the scenarios this process knows. The built-in seven register here, in seed
 * order, the same way any other scenario does (a team's own main, a loaded spec): through
 * pgr_register. `list`, `run`, the reports and the fuzzers read the registry, never a
 * compiled table.
 */
#include "pgrace.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const pgr_scenario pgr_scenario_form_submission;        /* seed 000 */
extern const pgr_scenario pgr_scenario_invite_claim;           /* seed 001 */
extern const pgr_scenario pgr_scenario_conversation_dedup;     /* seed 002 */
extern const pgr_scenario pgr_scenario_message_sequence;       /* seed 003 */
extern const pgr_scenario pgr_scenario_identity_verify;        /* seed 004 */
extern const pgr_scenario pgr_scenario_nullifier_submission;   /* seed 004 */
extern const pgr_scenario pgr_scenario_idempotent_submission;  /* seed 004 */

static const pgr_scenario **registered;
static int nregistered, capacity;

/* A name that can stand in a target, a schema name and a file name. */
static bool name_ok(const char *name, size_t max)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]) || name[i] == '_')) return false;
    return true;
}

int pgr_register(const pgr_scenario *sc, char *err, size_t errlen)
{
    if (!sc || !name_ok(sc->name, 32)) {
        snprintf(err, errlen, "scenario name '%.60s': 1 to 32 of a-z, 0-9 and _", sc && sc->name ? sc->name : "");
        return -1;
    }
    if (pgr_find_scenario(sc->name)) {
        snprintf(err, errlen, "scenario '%s' is registered already", sc->name);
        return -1;
    }
    if (sc->nvariants < 1 || sc->ncases < 1 || sc->ninvariants < 0 || !sc->prepare || !sc->request || !sc->check) {
        snprintf(err, errlen, "scenario '%s': needs variants, cases, prepare, request and check", sc->name);
        return -1;
    }
    for (int j = 0; j < sc->nvariants; j++) {
        const pgr_variant *v = &sc->variants[j];
        if (!name_ok(v->name, 20) || !v->handler) {
            snprintf(err, errlen, "scenario '%s': variant %d needs a name (1 to 20 of a-z, 0-9, _) and a handler",
                     sc->name, j + 1);
            return -1;
        }
    }
    if (nregistered == capacity) {
        int ncap = capacity ? capacity * 2 : 16;
        const pgr_scenario **n = realloc(registered, (size_t)ncap * sizeof *n);
        if (!n) { snprintf(err, errlen, "out of memory"); return -1; }
        registered = n;
        capacity = ncap;
    }
    registered[nregistered++] = sc;
    return 0;
}

int pgr_register_builtins(char *err, size_t errlen)
{
    const pgr_scenario *const builtins[] = {
        &pgr_scenario_form_submission,
        &pgr_scenario_invite_claim,
        &pgr_scenario_conversation_dedup,
        &pgr_scenario_message_sequence,
        &pgr_scenario_identity_verify,
        &pgr_scenario_nullifier_submission,
        &pgr_scenario_idempotent_submission,
    };
    for (int i = 0; i < PGR_LEN(builtins); i++)
        if (!pgr_find_scenario(builtins[i]->name) && pgr_register(builtins[i], err, errlen) != 0) return -1;
    return 0;
}

int pgr_scenario_count(void) { return nregistered; }

const pgr_scenario *pgr_scenario_at(int i) { return i >= 0 && i < nregistered ? registered[i] : NULL; }

const pgr_scenario *pgr_find_scenario(const char *name)
{
    for (int i = 0; i < nregistered; i++)
        if (strcmp(registered[i]->name, name) == 0) return registered[i];
    return NULL;
}
