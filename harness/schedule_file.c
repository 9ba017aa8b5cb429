/*
 * schedule_file.c — schedule files: writing a (minimized) failing schedule with its table,
 * and reading one back for replay and for the parsers fuzzer (pgr_schedule_check). A file
 * must be text (UTF-8, no NUL or control bytes, lines of at most 2047 bytes); anything else
 * is refused with one line that names the file and the line, its bad bytes escaped.
 */
#include "scheduler.h"
#include "spec_scenario.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

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

/* ---- reading: text only, one line per error, every byte shown escaped ---- */

#define SCHEDULE_MAX_BYTES (1 << 20)   /* a schedule is a few hundred bytes */
#define SCHEDULE_MAX_LINE 2047

/* s[0, n) as one line that is safe on a terminal: printable ASCII and valid UTF-8 as they
 * are, every other byte (controls, DEL, C1 controls, invalid UTF-8) and '\' as \xNN; at most
 * max bytes of s, then "...". */
static void quote_max(char *out, size_t cap, const char *s, size_t n, size_t max)
{
    size_t o = 0, shown = 0;
    if (!cap) return;
    for (size_t i = 0; i < n && o + 8 < cap; ) {
        if (shown >= max) { o += (size_t)snprintf(out + o, cap - o, "..."); break; }
        const unsigned char *u = (const unsigned char *)s + i;
        ucs4_t c;
        int len = u8_mbtouc(&c, u, n - i);
        bool plain = (c >= 0x20 && c < 0x7f && c != '\\') || (c >= 0xa0 && !u8_check(u, (size_t)len));
        if (plain) {
            memcpy(out + o, u, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
            shown += (size_t)len;
        } else {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", u[0]);
            i++;
            shown++;
        }
    }
    out[o] = '\0';
}

/* A value quoted in an error: its first 60 bytes. */
static void quote(char *out, size_t cap, const char *s, size_t n)
{
    quote_max(out, cap, s, n, 60);
}

/* Is line[0, n) text? NULL, or why not (written to why). */
static const char *not_text(const char *line, size_t n, char *why, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\0') { snprintf(why, len, "a NUL byte at column %zu: not a text file", i + 1); return why; }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            snprintf(why, len, "control character \\x%02x at column %zu: not a text file", c, i + 1);
            return why;
        }
    }
    const uint8_t *bad = u8_check((const uint8_t *)line, n);
    if (bad) {
        snprintf(why, len, "byte \\x%02x at column %zu is not UTF-8: not a text file", *bad,
                 (size_t)(bad - (const uint8_t *)line) + 1);
        return why;
    }
    return NULL;
}

/* Parse a schedule held in data[0, n). 0, or -1 with err (one line) naming the file and
 * the line. */
static int parse_schedule(const char *data, size_t n, const char *path, sched_file *sf, char *err, size_t errlen);

int pgr_schedule_read(const char *path, sched_file *sf, char *err, size_t errlen)
{
    char shown[PATH_MAX];
    quote_max(shown, sizeof shown, path, strlen(path), sizeof shown);
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "cannot read schedule %s: %s", shown, strerror(errno)); return -1; }
    char *data = malloc(SCHEDULE_MAX_BYTES + 1);
    size_t n = data ? fread(data, 1, SCHEDULE_MAX_BYTES + 1, f) : 0;
    int rc = -1;
    if (!data) snprintf(err, errlen, "%s: out of memory", shown);
    else if (ferror(f)) snprintf(err, errlen, "cannot read schedule %s: %s", shown, strerror(errno));
    else if (n > SCHEDULE_MAX_BYTES) snprintf(err, errlen, "%s: larger than %d bytes: not a pgrace schedule", shown, SCHEDULE_MAX_BYTES);
    else rc = parse_schedule(data, n, shown, sf, err, errlen);
    fclose(f);
    free(data);
    return rc;
}

int pgr_schedule_check(const char *data, size_t n, char *err, size_t errlen)
{
    sched_file sf;
    return parse_schedule(data, n, "<memory>", &sf, err, errlen);
}

/* One line's key and value (line is NUL-terminated text). 0, or -1 with err. */
static int parse_line(char *line, const char *path, int lineno, sched_file *sf, bool *have_grants, char *err, size_t errlen)
{
    char q[256];
    char *sp = strchr(line, ' ');
    char *val = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = '\0';
    static const struct { const char *key; size_t off, cap; } text[] = {
        { "scenario", offsetof(sched_file, scenario), sizeof sf->scenario },
        { "variant", offsetof(sched_file, variant), sizeof sf->variant },
        { "case", offsetof(sched_file, kase), sizeof sf->kase },
        { "client", offsetof(sched_file, client), sizeof sf->client },
        { "violation", offsetof(sched_file, violation), sizeof sf->violation },
        { "explanation", offsetof(sched_file, explanation), sizeof sf->explanation },
    };
    for (size_t k = 0; k < sizeof text / sizeof text[0]; k++) {
        if (strcmp(line, text[k].key) != 0) continue;
        if (strlen(val) >= text[k].cap) {          /* never cut: a cut could split a character */
            snprintf(err, errlen, "%s:%d: %s longer than %zu bytes", path, lineno, line, text[k].cap - 1);
            return -1;
        }
        memcpy((char *)sf + text[k].off, val, strlen(val) + 1);
        return 0;
    }
    if (strcmp(line, "spec") == 0) {               /* HASH PATH */
        char *end;
        sf->spec_hash = strtoull(val, &end, 16);
        if (end != val + 16 || *end != ' ' || !end[1]) {
            snprintf(err, errlen, "%s:%d: spec must be 'HASH PATH' (16 hex digits, the file)", path, lineno);
            return -1;
        }
        if (strlen(end + 1) >= sizeof sf->spec) {
            snprintf(err, errlen, "%s:%d: spec path longer than %zu bytes", path, lineno, sizeof sf->spec - 1);
            return -1;
        }
        memcpy(sf->spec, end + 1, strlen(end + 1) + 1);
    } else if (strcmp(line, "isolation") == 0) {
        if (pgr_isolation_parse(val, &sf->iso) != 0) {
            quote(q, sizeof q, val, strlen(val));
            snprintf(err, errlen, "%s:%d: bad isolation '%s'", path, lineno, q);
            return -1;
        }
    } else if (strcmp(line, "sessions") == 0) {
        char *end;
        long v = strtol(val, &end, 10);
        if (*val == '\0' || *end || v < 1 || v > PGR_MAX_EXPLORE_SESSIONS) {
            quote(q, sizeof q, val, strlen(val));
            snprintf(err, errlen, "%s:%d: sessions must be 1..%d, got '%s'", path, lineno, PGR_MAX_EXPLORE_SESSIONS, q);
            return -1;
        }
        sf->sessions = (int)v;
    } else if (strcmp(line, "grants") == 0) {
        *have_grants = true;
        char *p = val, *end;
        while (*p) {
            while (*p == ' ') p++;
            if (!*p) break;
            long g = strtol(p, &end, 10);
            if (end == p || (*end && *end != ' ') || g < 1 || g > PGR_MAX_EXPLORE_SESSIONS || sf->ngrants == PGR_MAX_GRANTS) {
                snprintf(err, errlen, "%s:%d: grants must be session numbers 1..%d (at most %d)", path, lineno,
                         PGR_MAX_EXPLORE_SESSIONS, PGR_MAX_GRANTS);
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
            quote(q, sizeof q, val, strlen(val));
            snprintf(err, errlen, "%s:%d: fault must be 'SESSION SITE APPLIED KIND', got '%s'", path, lineno, q);
            return -1;
        }
        sf->fat.session = fs - 1;
        sf->fat.site = site - 1;
        sf->fat.applies = applied;
    } else {
        quote(q, sizeof q, line, strlen(line));
        snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, q);
        return -1;
    }
    return 0;
}

static int parse_schedule(const char *data, size_t n, const char *path, sched_file *sf, char *err, size_t errlen)
{
    memset(sf, 0, sizeof *sf);
    sf->sessions = -1;
    sf->iso = PGR_NISO;
    char line[SCHEDULE_MAX_LINE + 1], why[128];
    int lineno = 0;
    bool have_grants = false;
    for (const char *p = data, *end = data + n; p < end;) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        const char *next = nl ? nl + 1 : end;
        if (len && p[len - 1] == '\r') len--;                  /* CRLF */
        if (not_text(p, len, why, sizeof why)) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
            return -1;
        }
        if (len > SCHEDULE_MAX_LINE) {
            snprintf(err, errlen, "%s:%d: line longer than %d bytes (%zu): not a pgrace schedule", path, lineno,
                     SCHEDULE_MAX_LINE, len);
            return -1;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p = next;
        if (line[0] == '#' || line[0] == '\0') continue;
        if (parse_line(line, path, lineno, sf, &have_grants, err, errlen) != 0) return -1;
    }
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
