/*
 * schedule_file.c — schedule files: writing a (minimized) failing schedule with its table,
 * and reading one back for replay and for the parsers fuzzer (pgr_schedule_check).
 */
#include "scheduler.h"
#include "spec_scenario.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pgr_schedule_write(const char *path, const pgr_scenario *sc, const pgr_variant *v, pgr_isolation iso,
                       const pgr_trial *t, const sched_run *sr, const char *table)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# pgrace schedule: replay with `pgrace replay %s`\n", path);
    const pgr_spec *spec = pgr_spec_of(sc);
    if (spec) fprintf(f, "spec %016llx %s\n", (unsigned long long)spec->hash, spec->path);
    if (v->client) fprintf(f, "client %s\n", v->client);      /* the program that is the variant */
    fprintf(f, "scenario %s\nvariant %s\nisolation %s\nsessions %d\ncase %s\ngrants", sc->name, v->name,
            pgr_isolation_name(iso), t->nsessions, sc->cases[t->kase].name);
    for (int g = 0; g < sr->n; g++) fprintf(f, " %d", sr->grants[g] + 1);
    if (sr->fat.fault.kind != PGR_FAULT_NONE)       /* session, site, commit applied, kind */
        fprintf(f, "\nfault %d %d %d %s%s%s", sr->fat.session + 1, sr->fat.site + 1, sr->fat.applies ? 1 : 0,
                pgr_fault_name(sr->fat.fault.kind), sr->fat.fault.step[0] ? ":" : "", sr->fat.fault.step);
    fprintf(f, "\nviolation %s\nexplanation %s\n#\n",
            t->violated ? pgr_invariant_name(sc, t->first_invariant) : "none", t->violated ? t->why : "");
    for (const char *p = table; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "#%.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Parse a schedule file. 0, or -1 with err naming the file and the line. */
static int parse_schedule(FILE *f, const char *path, sched_file *sf, char *err, size_t errlen);

int pgr_schedule_read(const char *path, sched_file *sf, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "cannot read schedule %s: %s", path, strerror(errno)); return -1; }
    return parse_schedule(f, path, sf, err, errlen);
}

int pgr_schedule_check(const char *data, size_t n, char *err, size_t errlen)
{
    sched_file sf;
    FILE *f = fmemopen((void *)data, n, "r");
    if (!f) { snprintf(err, errlen, "fmemopen: %s", strerror(errno)); return -1; }
    return parse_schedule(f, "<memory>", &sf, err, errlen);
}

/* Parse a schedule (closes f). 0, or -1 with err naming the file and the line. */
static int parse_schedule(FILE *f, const char *path, sched_file *sf, char *err, size_t errlen)
{
    memset(sf, 0, sizeof *sf);
    sf->sessions = -1;
    sf->iso = PGR_NISO;
    char line[2048];
    int lineno = 0;
    bool have_grants = false;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        char *sp = strchr(line, ' ');
        char *val = sp ? sp + 1 : line + strlen(line);
        if (sp) *sp = '\0';
        if (strcmp(line, "scenario") == 0) snprintf(sf->scenario, sizeof sf->scenario, "%s", val);
        else if (strcmp(line, "variant") == 0) snprintf(sf->variant, sizeof sf->variant, "%s", val);
        else if (strcmp(line, "case") == 0) snprintf(sf->kase, sizeof sf->kase, "%s", val);
        else if (strcmp(line, "client") == 0) snprintf(sf->client, sizeof sf->client, "%s", val);
        else if (strcmp(line, "violation") == 0) snprintf(sf->violation, sizeof sf->violation, "%s", val);
        else if (strcmp(line, "explanation") == 0) snprintf(sf->explanation, sizeof sf->explanation, "%s", val);
        else if (strcmp(line, "spec") == 0) {          /* HASH PATH */
            char *end;
            sf->spec_hash = strtoull(val, &end, 16);
            if (end != val + 16 || *end != ' ' || !end[1]) {
                snprintf(err, errlen, "%s:%d: spec must be 'HASH PATH' (16 hex digits, the file)", path, lineno);
                fclose(f);
                return -1;
            }
            snprintf(sf->spec, sizeof sf->spec, "%s", end + 1);
        }
        else if (strcmp(line, "isolation") == 0) {
            if (pgr_isolation_parse(val, &sf->iso) != 0) {
                snprintf(err, errlen, "%s:%d: bad isolation '%s'", path, lineno, val);
                fclose(f);
                return -1;
            }
        } else if (strcmp(line, "sessions") == 0) {
            char *end;
            long v = strtol(val, &end, 10);
            if (*val == '\0' || *end || v < 1 || v > PGR_MAX_EXPLORE_SESSIONS) {
                snprintf(err, errlen, "%s:%d: sessions must be 1..%d, got '%s'", path, lineno, PGR_MAX_EXPLORE_SESSIONS, val);
                fclose(f);
                return -1;
            }
            sf->sessions = (int)v;
        } else if (strcmp(line, "grants") == 0) {
            have_grants = true;
            char *p = val, *end;
            while (*p) {
                while (*p == ' ') p++;
                if (!*p) break;
                long g = strtol(p, &end, 10);
                if (end == p || (*end && *end != ' ') || g < 1 || g > PGR_MAX_EXPLORE_SESSIONS || sf->ngrants == PGR_MAX_GRANTS) {
                    snprintf(err, errlen, "%s:%d: grants must be session numbers 1..%d", path, lineno, PGR_MAX_EXPLORE_SESSIONS);
                    fclose(f);
                    return -1;
                }
                sf->grants[sf->ngrants++] = (int)g - 1;
                p = end;
            }
        } else if (strcmp(line, "fault") == 0) {
            int fs, site, applied, used = 0;
            char kerr[PGR_ERRLEN];
            if (sscanf(val, "%d %d %d %n", &fs, &site, &applied, &used) != 3 || fs < 1 || fs > PGR_MAX_EXPLORE_SESSIONS || site < 1 ||
                site > PGR_MAX_STEPS || (applied != 0 && applied != 1) || !val[used] ||
                pgr_fault_parse(val + used, &sf->fat.fault, kerr, sizeof kerr) != 0 || strchr(val + used, '@')) {
                snprintf(err, errlen, "%s:%d: fault must be 'SESSION SITE APPLIED KIND', got '%s'", path, lineno, val);
                fclose(f);
                return -1;
            }
            sf->fat.session = fs - 1;
            sf->fat.site = site - 1;
            sf->fat.applies = applied;
        } else {
            snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, line);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    const char *missing = !sf->scenario[0] ? "scenario" : !sf->variant[0] ? "variant" : sf->iso == PGR_NISO ? "isolation"
                        : sf->sessions < 0 ? "sessions" : !sf->kase[0] ? "case" : !have_grants ? "grants"
                        : !sf->violation[0] ? "violation" : NULL;
    if (missing) { snprintf(err, errlen, "%s: not a pgrace schedule (no '%s' line)", path, missing); return -1; }
    if (sf->fat.fault.kind != PGR_FAULT_NONE && sf->fat.session >= sf->sessions) {
        snprintf(err, errlen, "%s: the fault names session %d of %d", path, sf->fat.session + 1, sf->sessions);
        return -1;
    }
    for (int g = 0; g < sf->ngrants; g++)
        if (sf->grants[g] >= sf->sessions) {
            snprintf(err, errlen, "%s: grant %d names session %d of %d", path, g + 1, sf->grants[g] + 1, sf->sessions);
            return -1;
        }
    return 0;
}
