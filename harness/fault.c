/*
 * fault.c — faults by name: the --fault syntax, the names in JSON and schedule files, and
 * the stress runner's plan of which requests get one and where. Where a fault fires is
 * the seam's business (seam.c).
 */
#include "runner.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const fault_names[PGR_NFAULTS] = {
    "none", "timeout-retry", "kill-backend", "error-at", "lost-commit",
};

const char *pgr_fault_name(pgr_fault_kind k)
{
    return k >= 0 && k < PGR_NFAULTS ? fault_names[k] : "?";
}

bool pgr_fault_step_is(const char *want, const char *label)
{
    for (;; want++, label++) {
        char a = *want, b = *label;
        if (a == '-' || a == '_') a = ' ';
        if (b == '-' || b == '_') b = ' ';
        if (tolower((unsigned char)a) != tolower((unsigned char)b)) return false;
        if (!a) return true;
    }
}

int pgr_fault_parse(const char *text, pgr_fault *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->rate = 0.2;
    const char *at = strrchr(text, '@');
    size_t klen = at ? (size_t)(at - text) : strlen(text);
    for (int k = 1; k < PGR_NFAULTS; k++) {
        size_t n = strlen(fault_names[k]);
        if (k == PGR_FAULT_ERROR) {
            if (klen == n && strncmp(text, "error-at", n) == 0) {
                out->kind = PGR_FAULT_ERROR;           /* no step named: any step */
            } else if (klen > n + 1 && strncmp(text, "error-at:", n + 1) == 0) {
                if (klen - n - 1 >= sizeof out->step) break;
                memcpy(out->step, text + n + 1, klen - n - 1);
                out->step[klen - n - 1] = '\0';
                out->kind = PGR_FAULT_ERROR;
            }
        } else if (klen == n && strncmp(text, fault_names[k], n) == 0) {
            out->kind = (pgr_fault_kind)k;
        }
    }
    if (out->kind == PGR_FAULT_NONE) {
        snprintf(err, errlen, "bad fault '%.60s': expected timeout-retry, kill-backend, error-at[:STEP] or lost-commit, "
                 "optionally @RATE", text);
        return -1;
    }
    if (at) {
        char *end;
        errno = 0;
        double r = strtod(at + 1, &end);
        if (end != at + 1 && *end == '%' && end[1] == '\0') { r /= 100; end++; }
        if (end == at + 1 || *end || errno || !(r > 0 && r <= 1)) {
            snprintf(err, errlen, "bad fault rate '%.40s': a fraction in (0, 1] or a percentage", at + 1);
            return -1;
        }
        out->rate = r;
    }
    return 0;
}

void pgr_fault_format(const pgr_fault *f, char *out, size_t len)
{
    if (f->kind == PGR_FAULT_ERROR && f->step[0])
        snprintf(out, len, "error-at:%s@%g", f->step, f->rate);
    else
        snprintf(out, len, "%s@%g", pgr_fault_name(f->kind), f->rate);
}

/* Which requests of trial t get the fault, and at which of their eligible sites: a pure
 * function of (seed, trial, session), so a run is reproducible. */
void pgr_fault_plan(pgr_trial *t, const pgr_fault *f, unsigned long long seed, int sites)
{
    for (int j = 0; j < t->nsessions; j++) {
        uint64_t r = pgr_splitmix64(seed ^ pgr_splitmix64((uint64_t)t->trial_no * PGR_MAX_SESSIONS + (uint64_t)j));
        t->fault_site[j] = -1;
        if (f->kind == PGR_FAULT_NONE || (double)(r >> 11) / 9007199254740992.0 >= f->rate) continue;
        uint64_t r2 = pgr_splitmix64(r);
        t->fault_site[j] = (short)(sites > 1 ? r2 % (uint64_t)sites : 0);
        t->fault_applies[j] = (r2 >> 40) & 1;
    }
}
