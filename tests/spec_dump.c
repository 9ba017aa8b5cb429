/*
 * spec_dump.c — parse one spec file and print its pgr_spec as JSON (tests/test_spec_parse.py
 * checks trees with it). Exit 0 and the JSON on stdout, or exit 2 and the parser's one-line
 * error on stderr.
 */
#include "spec.h"

#include <jansson.h>
#include <stdio.h>

static json_t *str(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *pos(pgr_spec_pos p)
{
    return json_pack("[i,i]", p.line, p.col);
}

static const char *const COND[] = { "always", "rows", "error", "true", "false", "compare" };
static const char *const OP[] = { "=", "!=", "<", ">", "<=", ">=" };
static const char *const OUTCOME[] = { "status", "next", "goto", "retry" };
static const char *const INV[] = { "sql", "statuses", "exactly_one", "same_id" };

static json_t *rule(const pgr_spec_rule *r)
{
    json_t *o = json_pack("{s:s,s:o,s:s,s:o}", "cond", COND[r->cond], "pos", pos(r->pos), "outcome",
                          OUTCOME[r->outcome], "column", str(r->column));
    if (r->cond == PGR_COND_ROWS || r->cond == PGR_COND_COMPARE) json_object_set_new(o, "op", json_string(OP[r->op]));
    if (r->cond == PGR_COND_ROWS || (r->cond == PGR_COND_COMPARE && r->numeric))
        json_object_set_new(o, "number", json_integer(r->number));
    if (r->cond == PGR_COND_COMPARE || r->cond == PGR_COND_ERROR) json_object_set_new(o, "value", str(r->value));
    if (r->cond == PGR_COND_COMPARE) json_object_set_new(o, "numeric", json_boolean(r->numeric));
    if (r->outcome == PGR_OUT_STATUS) {
        json_object_set_new(o, "status", json_integer(r->status));
        json_object_set_new(o, "id", str(r->id_column));
    }
    if (r->outcome == PGR_OUT_GOTO) {
        json_object_set_new(o, "target", str(r->target));
        json_object_set_new(o, "target_step", json_integer(r->target_step));
    }
    if (r->outcome == PGR_OUT_RETRY) json_object_set_new(o, "attempts", json_integer(r->attempts));
    return o;
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: spec_dump FILE.spec\n"); return 2; }
    pgr_spec s;
    char err[PGR_ERRLEN];
    if (pgr_spec_load(argv[1], &s, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); return 2; }
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)s.hash);
    json_t *root = json_pack("{s:s,s:s,s:s}", "path", s.path, "name", s.name, "hash", hash);
    json_t *a = json_array();
    for (int i = 0; i < s.nsetups; i++) json_array_append_new(a, json_string(s.setups[i]));
    json_object_set_new(root, "setups", a);
    json_object_set_new(root, "teardown", str(s.teardown));
    a = json_array();
    for (int i = 0; i < s.nsessions; i++) {
        const pgr_spec_session *ss = &s.sessions[i];
        json_t *steps = json_array();
        for (int j = 0; j < ss->nsteps; j++) {
            const pgr_spec_step *st = &ss->steps[j];
            json_array_append_new(steps, json_pack("{s:s,s:s,s:o,s:i,s:b}", "name", st->name, "sql", st->sql, "pos",
                                                   pos(st->pos), "session", st->session, "used", st->used));
        }
        json_array_append_new(a, json_pack("{s:s,s:o,s:o,s:o,s:o}", "name", ss->name, "setup", str(ss->setup),
                                           "teardown", str(ss->teardown), "pos", pos(ss->pos), "steps", steps));
    }
    json_object_set_new(root, "sessions", a);
    a = json_array();
    for (int i = 0; i < s.nperms; i++) {
        json_t *steps = json_array();
        for (int j = 0; j < s.perms[i].nsteps; j++) {
            const pgr_spec_pstep *ps = &s.perms[i].steps[j];
            json_t *bl = json_array();
            for (int k = 0; k < ps->nblockers; k++) {
                const pgr_spec_blocker *b = &ps->blockers[k];
                json_array_append_new(bl, json_pack("{s:o,s:i,s:b,s:i,s:i}", "step", str(b->step), "notices", b->notices,
                                                    "by_notices", b->by_notices, "session", b->session, "index", b->index));
            }
            json_array_append_new(steps, json_pack("{s:s,s:i,s:i,s:o,s:o}", "name", ps->name, "session", ps->session,
                                                   "step", ps->step, "pos", pos(ps->pos), "blockers", bl));
        }
        json_array_append_new(a, json_pack("{s:o,s:o}", "pos", pos(s.perms[i].pos), "steps", steps));
    }
    json_object_set_new(root, "permutations", a);
    json_object_set_new(root, "trial", str(s.trial));
    json_object_set_new(root, "app", str(s.app));
    json_object_set_new(root, "model", str(s.model));
    a = json_array();
    for (int i = 0; i < s.nvariants; i++) {
        const pgr_spec_variant *v = &s.variants[i];
        json_t *steps = json_array();
        for (int j = 0; j < v->nsteps; j++) {
            json_t *rules = json_array();
            for (int k = 0; k < v->steps[j].nrules; k++) json_array_append_new(rules, rule(&v->steps[j].rules[k]));
            json_array_append_new(steps, json_pack("{s:s,s:s,s:o,s:o}", "name", v->steps[j].name, "sql",
                                                   v->steps[j].sql, "pos", pos(v->steps[j].pos), "rules", rules));
        }
        json_t *vo = json_pack("{s:s,s:s,s:b,s:o}", "name", v->name, "kind", pgr_kind_name(v->kind),
                               "kind_given", v->kind_given, "steps", steps);
        if (v->http) {
            json_t *reqs = json_array();
            for (int j = 0; j < v->nrequests; j++) {
                const pgr_spec_request *r = &v->requests[j];
                json_t *hs = json_array();
                for (int k = 0; k < r->nheaders; k++) json_array_append_new(hs, json_string(r->headers[k]));
                json_array_append_new(reqs, json_pack("{s:s,s:s,s:o,s:o,s:o}", "method", r->method, "path", r->path,
                                                      "headers", hs, "body", str(r->body), "pos", pos(r->pos)));
            }
            json_object_set_new(vo, "requests", reqs);
            json_object_set_new(vo, "id_path", str(v->id_path));
            json_object_set_new(vo, "setup", str(v->setup));
        }
        json_array_append_new(a, vo);
    }
    json_object_set_new(root, "variants", a);
    a = json_array();
    for (int i = 0; i < s.ncases; i++)
        json_array_append_new(a, json_pack("{s:s,s:i,s:i,s:o}", "name", s.cases[i].name, "weight", s.cases[i].weight,
                                           "sends", s.cases[i].sends, "trial", str(s.cases[i].trial)));
    json_object_set_new(root, "cases", a);
    a = json_array();
    for (int i = 0; i < s.ninvariants; i++) {
        json_t *st = json_array();
        for (int k = 0; k < s.invariants[i].nstatuses; k++) json_array_append_new(st, json_integer(s.invariants[i].statuses[k]));
        json_array_append_new(a, json_pack("{s:s,s:s,s:o,s:o}", "name", s.invariants[i].name, "kind",
                                           INV[s.invariants[i].kind], "sql", str(s.invariants[i].sql), "statuses", st));
    }
    json_object_set_new(root, "invariants", a);
    a = json_array();
    for (int i = 0; i < s.nexpects; i++) {
        const pgr_spec_expect *x = &s.expects[i];
        json_t *lv = json_array();
        for (int k = 0; k < PGR_NISO; k++)
            if (x->levels & (1u << k)) json_array_append_new(lv, json_string(pgr_isolation_name((pgr_isolation)k)));
        json_array_append_new(a, json_pack("{s:s,s:s,s:o,s:i,s:o}", "variant", x->variant, "verdict",
                                           pgr_verdict_name(x->verdict), "levels", lv, "sessions", x->sessions,
                                           "case", str(x->kase)));
    }
    json_object_set_new(root, "expects", a);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    puts(text);
    free(text);
    json_decref(root);
    pgr_spec_free(&s);
    return 0;
}
