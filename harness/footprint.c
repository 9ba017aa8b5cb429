/*
 * footprint.c — the explorer's dependency relation: which relations a statement reads,
 * locks and makes visible to other sessions (its footprint), and whether two steps of
 * different sessions are dependent (may not commute).
 *
 * A statement is parsed by PostgreSQL's own parser (libpg_query: the RangeVars, CTE names,
 * function calls and statement kind of its parse tree, read as JSON). Its relations are
 * resolved in the run's schema and closed over the catalog: foreign keys in both
 * directions, sequences of column defaults and identities. Anything that cannot be resolved
 * to plain tables and built-in non-volatile functions is "everything" (dependent on every
 * other step but BEGIN): views, partitions and inheritance, triggers, rules, row security,
 * user functions in defaults or checks, volatile or user functions in the statement, CTEs
 * that are not read-only SELECTs as written, LOCK, DO, DDL, unknown SQL, several statements
 * in one string, a catalog question that failed.
 *
 * The transaction context comes from the session's own executed prefix: a COMMIT/ROLLBACK's
 * footprint is the union of its transaction's statements'; under REPEATABLE READ and
 * SERIALIZABLE the first statement after BEGIN takes the snapshot. Conservative wherever
 * unsure: more dependence only costs schedules.
 */
#include "scheduler.h"

#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { ST_NOOP, ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_ROLLBACK_TO, ST_DML, ST_ALL };

struct fp_stmt {                    /* one statement text, analysed once per explorer */
    char *sql;
    int kind;                       /* ST_* */
    uint64_t read, write;           /* relations read; written or locked (closed over FKs, sequences) */
    uint64_t nkwrite;               /* relations written only by a plain UPDATE that changes no key
                                     * (its row locks: FOR NO KEY UPDATE) */
    uint64_t klock;                 /* relations whose rows its FK checks lock FOR KEY SHARE */
    bool all;                       /* ST_DML that touches something unresolvable */
    bool chain;                     /* COMMIT/ROLLBACK AND CHAIN: a new transaction opens at once */
    bool taints;                    /* changes how the session's later statements resolve (SET
                                     * search_path or role, RESET ALL, DISCARD, a snapshot, any
                                     * utility statement): they are all everything */
    unsigned iso;                   /* BEGIN/SET naming isolation levels: their bits (1 << level) */
    struct fp_stmt *next;
};

struct fp_rel {                     /* one relation, resolved once per explorer */
    char name[200];                 /* as written (schema-qualified or not), or "#oid" */
    unsigned oid;
    int bit;                        /* -1: no bit (the relation is opaque or bits ran out) */
    bool opaque;
    unsigned nbr[32];               /* FK neighbours (both directions) and sequences */
    int nnbr;
    unsigned parent[16];            /* the relations its FKs reference */
    int nparent;
    unsigned seq[16];               /* its sequences (owned, or in a column default) */
    int nseq;
    struct fp_rel *next;
};

struct fp_func { char name[130]; bool safe; struct fp_func *next; };

#define FP_HASH 256

struct fp_table {
    PGconn *conn;                   /* the explorer's monitor, search_path set to the run's schema */
    bool broken;                    /* setting that search_path failed */
    pgr_isolation iso;
    struct fp_stmt *stmts[FP_HASH];
    struct fp_rel *rels;
    struct fp_func *funcs;
    int nbits;
    struct fp_txn {                 /* a session's transaction as its executed prefix shows it */
        bool in_txn, snap_pending, all;
        bool tainted;               /* a statement changed how its later ones resolve */
        uint64_t read, write, nkwrite, klock;
        unsigned iso;               /* the levels the session's transactions may run at (bits 1 <<
                                     * level): its default, and every level a SET or BEGIN named */
        unsigned txn_iso;           /* the levels the open transaction may run at */
    } tx[PGR_MAX_EXPLORE_SESSIONS];
};

static unsigned long hash_str(const char *s)
{
    unsigned long h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h;
}

/* ---- the catalog ---- */

/* One catalog question on the monitor (under the watchdog); NULL when it failed. */
static PGresult *ask(fp_table *ft, const char *sql, int n, const char *const *p)
{
    char err[PGR_ERRLEN];
    pgr_call_begin(ft->conn, 0);
    PGresult *r = PQexecParams(ft->conn, sql, n, NULL, p, NULL, NULL, 0);
    if (pgr_call_end(ft->conn, err, sizeof err) != 0 || PQresultStatus(r) != PGRES_TUPLES_OK) { PQclear(r); return NULL; }
    return r;
}

/* The oids of an array's text form ({1,2,3}) into out: their count, -1 more than max. */
static int parse_oids(const char *a, unsigned *out, int max)
{
    int n = 0;
    while (*a) {
        if (*a >= '0' && *a <= '9') {
            char *end;
            unsigned long v = strtoul(a, &end, 10);
            if (n == max) return -1;
            out[n++] = (unsigned)v;
            a = end;
        } else {
            a++;
        }
    }
    return n;
}

/* The relation oid (0 none) and its catalog facts; name NULL: by oid. Cached. */
static struct fp_rel *rel_info(fp_table *ft, const char *name, unsigned oid)
{
    char key[200];
    if (name) snprintf(key, sizeof key, "%s", name);
    else snprintf(key, sizeof key, "#%u", oid);
    for (struct fp_rel *r = ft->rels; r; r = r->next)
        if (strcmp(r->name, key) == 0 || (!name && r->oid == oid)) return r;
    struct fp_rel *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->name, sizeof r->name, "%s", key);
    r->bit = -1;
    r->opaque = true;
    r->next = ft->rels;
    ft->rels = r;
    char oidtxt[16];
    if (name) {
        const char *p[1] = { name };
        PGresult *q = ask(ft, "SELECT COALESCE(to_regclass($1)::oid, 0)", 1, p);
        if (!q) return r;
        oid = (unsigned)strtoul(PQgetvalue(q, 0, 0), NULL, 10);
        PQclear(q);
        if (!oid) return r;              /* not a relation in the schema (a CTE, a typo): opaque */
        for (struct fp_rel *o = ft->rels; o; o = o->next)       /* known by oid already */
            if (o != r && o->oid == oid) {
                struct fp_rel *nx = r->next;
                *r = *o;
                snprintf(r->name, sizeof r->name, "%s", key);
                r->next = nx;
                return r;
            }
    }
    r->oid = oid;
    snprintf(oidtxt, sizeof oidtxt, "%u", oid);
    const char *p[1] = { oidtxt };
    PGresult *q = ask(ft,
        "SELECT c.relkind IN ('v','f','p','m') OR c.relhassubclass OR c.relispartition OR c.relrowsecurity "
        "  OR EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) "
        "  OR EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid AND w.rulename <> '_RETURN') "
        "  OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_proc f ON f.oid = d.refobjid "
        "             WHERE d.refclassid = 'pg_proc'::regclass AND f.pronamespace <> 'pg_catalog'::regnamespace "
        "               AND ((d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = c.oid)) "
        "                 OR (d.classid = 'pg_constraint'::regclass AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = c.oid)))), "
        "  ARRAY(SELECT DISTINCT confrelid FROM pg_constraint WHERE contype = 'f' AND conrelid = c.oid)::text, "
        "  ARRAY(SELECT DISTINCT conrelid FROM pg_constraint WHERE contype = 'f' AND confrelid = c.oid)::text, "
        "  ARRAY(SELECT s.oid FROM pg_class s WHERE s.relkind = 'S' AND ("
        "              EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = s.oid "
        "                      AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid) "
        "           OR EXISTS (SELECT 1 FROM pg_depend d JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid "
        "                      WHERE ad.adrelid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.refobjid = s.oid)))::text "
        "FROM pg_class c WHERE c.oid = $1::oid", 1, p);
    if (!q) return r;
    if (PQntuples(q) == 1) {
        r->opaque = PQgetvalue(q, 0, 0)[0] == 't';
        int np = parse_oids(PQgetvalue(q, 0, 1), r->parent, 16), nc = 0, nq = parse_oids(PQgetvalue(q, 0, 3), r->seq, 16);
        unsigned child[16];
        nc = parse_oids(PQgetvalue(q, 0, 2), child, 16);
        if (np < 0 || nc < 0 || nq < 0 || np + nc + nq > 32) r->opaque = true;
        else {
            r->nparent = np;
            r->nseq = nq;
            for (int i = 0; i < np; i++) r->nbr[r->nnbr++] = r->parent[i];
            for (int i = 0; i < nc; i++) r->nbr[r->nnbr++] = child[i];
            for (int i = 0; i < nq; i++) r->nbr[r->nnbr++] = r->seq[i];
        }
        if (!r->opaque && ft->nbits < 63) r->bit = ft->nbits++;
        else r->opaque = true;
    }
    PQclear(q);
    return r;
}

/* The relation's bit, by name or (name NULL) by oid, or -1 (opaque: the statement is
 * "everything"). */
static int rel_bit(fp_table *ft, const char *name, unsigned oid)
{
    struct fp_rel *r = rel_info(ft, name, oid);
    return r && !r->opaque ? r->bit : -1;
}

/* The bits of a written relation closed over FKs (both directions) and sequences; false
 * when something in the closure is opaque. */
static bool write_closure(fp_table *ft, const char *name, uint64_t *bits)
{
    struct fp_rel *r = rel_info(ft, name, 0);
    if (!r || r->opaque) return false;
    unsigned work[64], seen[64];
    int nw = 0, ns = 0;
    work[nw++] = r->oid;
    seen[ns++] = r->oid;
    while (nw > 0) {
        unsigned oid = work[--nw];
        struct fp_rel *o = rel_info(ft, NULL, oid);
        if (!o || o->opaque) return false;
        *bits |= 1ULL << o->bit;
        for (int i = 0; i < o->nnbr; i++) {
            bool dup = false;
            for (int k = 0; k < ns; k++) dup |= seen[k] == o->nbr[i];
            if (dup) continue;
            if (ns == 64) return false;
            seen[ns++] = o->nbr[i];
            work[nw++] = o->nbr[i];
        }
    }
    return true;
}

/* Would an UPDATE of the relation that sets these columns ({a,b}) lock its rows FOR UPDATE
 * rather than FOR NO KEY UPDATE, or check an FK: does it set a column of a unique index (any
 * unique index with an expression counts as every column), a column of one of its own FKs,
 * or is there a generated column? true also when the catalog cannot tell. */
static bool update_sets_keys(fp_table *ft, unsigned oid, const char *cols)
{
    char oidtxt[16];
    snprintf(oidtxt, sizeof oidtxt, "%u", oid);
    const char *p[2] = { oidtxt, cols };
    PGresult *q = ask(ft,
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = $1::oid AND i.indisunique "
        "                 AND (i.indexprs IS NOT NULL OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = i.indrelid "
        "                      AND a.attnum = ANY (i.indkey::int2[]) AND a.attname = ANY ($2::name[])))) "
        "    OR EXISTS (SELECT 1 FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey) "
        "                 WHERE k.contype = 'f' AND k.conrelid = $1::oid AND a.attname = ANY ($2::name[])) "
        "    OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 "
        "                 AND NOT a.attisdropped AND a.attgenerated <> '')", 2, p);
    bool keys = !q || PQntuples(q) != 1 || PQgetvalue(q, 0, 0)[0] != 'f';
    PQclear(q);
    return keys;
}

/* A function call is harmless when every function of that name is a built-in that is not
 * volatile (it neither writes nor depends on anything but its arguments and the snapshot). */
static bool func_safe(fp_table *ft, const char *schema, const char *name)
{
    if (schema && strcmp(schema, "pg_catalog") != 0) return false;
    for (struct fp_func *f = ft->funcs; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f->safe;
    struct fp_func *f = calloc(1, sizeof *f);
    if (!f) return false;
    snprintf(f->name, sizeof f->name, "%s", name);
    const char *p[1] = { name };
    PGresult *q = ask(ft, "SELECT count(*) > 0 AND bool_and(provolatile <> 'v' AND pronamespace = 'pg_catalog'::regnamespace) "
                          "FROM pg_proc WHERE proname = $1", 1, p);
    f->safe = q && PQgetvalue(q, 0, 0)[0] == 't';
    PQclear(q);
    f->next = ft->funcs;
    ft->funcs = f;
    return f->safe;
}

/* ---- the parse tree ---- */

typedef struct walk {
    const char *rel[64], *relschema[64];
    bool target[64];                /* the relation an INSERT/UPDATE/DELETE/MERGE writes */
    int nrel;
    const char *cte[16];
    int ncte;
    bool writes, locking, unsafe;   /* a data-modifying node anywhere; FOR UPDATE/SHARE; give up */
    fp_table *ft;
} walk;

static void walk_node(walk *w, json_t *j, const char *key);

static void add_rangevar(walk *w, json_t *o, bool target)
{
    const char *rel = json_string_value(json_object_get(o, "relname"));
    const char *sch = json_string_value(json_object_get(o, "schemaname"));
    if (!rel || w->nrel == 64) { w->unsafe = true; return; }
    w->rel[w->nrel] = rel;
    w->relschema[w->nrel] = sch;
    w->target[w->nrel++] = target;
}

static void walk_node(walk *w, json_t *j, const char *key)
{
    if (json_is_array(j)) {
        size_t i;
        json_t *e;
        json_array_foreach(j, i, e) walk_node(w, e, key);
        return;
    }
    if (!json_is_object(j)) return;
    if (json_object_get(j, "relname")) {               /* a RangeVar */
        bool target = key && strcmp(key, "relation") == 0;
        add_rangevar(w, j, target);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (!strcmp(k, "InsertStmt") || !strcmp(k, "UpdateStmt") || !strcmp(k, "DeleteStmt") || !strcmp(k, "MergeStmt")) {
            w->writes = true;
        } else if (!strcmp(k, "lockingClause") || !strcmp(k, "intoClause")) {
            w->locking = true;
            if (!strcmp(k, "intoClause")) w->unsafe = true;     /* SELECT INTO creates a table */
        } else if (!strcmp(k, "CommonTableExpr")) {
            const char *n = json_string_value(json_object_get(v, "ctename"));
            if (n && w->ncte < 16) w->cte[w->ncte++] = n;
            else w->unsafe = true;
        } else if (!strcmp(k, "FuncCall")) {
            json_t *fn = json_object_get(v, "funcname");
            const char *parts[3] = { NULL, NULL, NULL };
            size_t np = json_array_size(fn);
            for (size_t i = 0; i < np && i < 3; i++) {
                json_t *s = json_object_get(json_object_get(json_array_get(fn, i), "String"), "sval");
                parts[i] = json_string_value(s);
            }
            if (np == 1 && parts[0]) { if (!func_safe(w->ft, NULL, parts[0])) w->unsafe = true; }
            else if (np == 2 && parts[0] && parts[1]) { if (!func_safe(w->ft, parts[0], parts[1])) w->unsafe = true; }
            else w->unsafe = true;
        } else if (!strcmp(k, "RangeTableSample") || !strcmp(k, "CallStmt")) {
            w->unsafe = true;
        }
        walk_node(w, v, k);
    }
}

/* The isolation levels a statement names, as bits (1 << level); 0 none. */
static unsigned iso_named(const char *sql)
{
    unsigned m = 0;
    if (strcasestr(sql, "serializable")) m |= 1u << PGR_SER;
    if (strcasestr(sql, "repeatable")) m |= 1u << PGR_RR;
    if (strcasestr(sql, "committed")) m |= 1u << PGR_RC;       /* read committed, read uncommitted */
    return m;
}

/* The walked relation i's name, quoted for to_regclass; false when it holds a quote. */
static bool rel_name(const walk *w, int i, char *out, size_t len)
{
    if (strchr(w->rel[i], '"') || (w->relschema[i] && strchr(w->relschema[i], '"'))) return false;
    if (w->relschema[i]) snprintf(out, len, "\"%s\".\"%s\"", w->relschema[i], w->rel[i]);
    else snprintf(out, len, "\"%s\"", w->rel[i]);
    return true;
}

/* A single-table INSERT (no ON CONFLICT) or UPDATE, as its footprint can be narrowed: true
 * with st's sets filled, false to take the general closure. The INSERT writes its table and
 * the table's sequences; its FK checks read the referenced tables and lock the referenced rows
 * FOR KEY SHARE (klock). Inserting a row fires nothing on the tables that reference this one.
 * The UPDATE that sets no key column, no column of its own FKs and has no generated column
 * to recompute locks its rows FOR NO KEY UPDATE (nkwrite), which a KEY SHARE lock does not
 * conflict with, and fires no FK trigger on the tables that reference it; its own FKs are
 * checked again only for a row its transaction inserted (read and klocked as by the INSERT,
 * always, to be safe). PostgreSQL's own rules: heapam's tuple lock modes and the RI
 * triggers' "is a check required" tests. */
static bool narrow_write(fp_table *ft, const char *top, json_t *body, const walk *w, const char *name, struct fp_stmt *st)
{
    if (w->nrel != 1 || !w->target[0] || w->locking || w->ncte || w->unsafe) return false;
    struct fp_rel *r = rel_info(ft, name, 0);
    if (!r || r->opaque) return false;
    uint64_t self = 1ULL << r->bit, par = 0;
    for (int i = 0; i < r->nparent; i++) {
        int b = rel_bit(ft, NULL, r->parent[i]);
        if (b < 0) return false;
        par |= 1ULL << b;
    }
    if (!strcmp(top, "InsertStmt")) {
        if (json_object_get(body, "onConflictClause")) return false;
        uint64_t seq = 0;
        for (int i = 0; i < r->nseq; i++) {
            int b = rel_bit(ft, NULL, r->seq[i]);
            if (b < 0) return false;
            seq |= 1ULL << b;
        }
        st->write = self | seq;
        st->read = self | par;
        st->klock = par;
        return true;
    }
    if (strcmp(top, "UpdateStmt") != 0) return false;
    char cols[1024];
    size_t off = 0;
    cols[off++] = '{';
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(body, "targetList"), i, t) {
        json_t *rt = json_object_get(t, "ResTarget");
        const char *col = json_string_value(json_object_get(rt, "name"));
        if (!col || strpbrk(col, "\"{},\\ ") || json_object_get(json_object_get(rt, "val"), "SetToDefault")) return false;
        int n = snprintf(cols + off, sizeof cols - off, "%s%s", i ? "," : "", col);
        if (n < 0 || (size_t)n >= sizeof cols - off - 2) return false;
        off += (size_t)n;
    }
    if (off == 1) return false;
    snprintf(cols + off, sizeof cols - off, "}");
    if (update_sets_keys(ft, r->oid, cols)) return false;
    /* an UPDATE of a row its own transaction inserted checks its FKs again, changed or not:
     * the referenced tables are read and locked as by the INSERT */
    st->nkwrite = self;
    st->read = self | par;
    st->klock = par;
    return true;
}

/* Analyse sql once: its kind and relation sets. */
static void analyse(fp_table *ft, struct fp_stmt *st)
{
    st->kind = ST_ALL;
    st->iso = 0;
    PgQueryParseResult pr = pg_query_parse(st->sql);
    json_t *root = pr.error ? NULL : json_loads(pr.parse_tree, 0, NULL);
    pg_query_free_parse_result(pr);
    if (!root) return;
    json_t *stmts = json_object_get(root, "stmts");
    if (json_array_size(stmts) != 1) { st->taints = true; json_decref(root); return; }
    json_t *stmt = json_object_get(json_array_get(stmts, 0), "stmt");
    const char *top = NULL;
    json_t *body = NULL;
    json_object_foreach(stmt, top, body) break;
    if (!top) { json_decref(root); return; }
    if (!strcmp(top, "TransactionStmt")) {
        const char *kind = json_string_value(json_object_get(body, "kind"));
        if (!kind) kind = "";
        if (!strcmp(kind, "TRANS_STMT_BEGIN") || !strcmp(kind, "TRANS_STMT_START")) st->kind = ST_BEGIN;
        else if (!strcmp(kind, "TRANS_STMT_COMMIT")) st->kind = ST_COMMIT;
        else if (!strcmp(kind, "TRANS_STMT_ROLLBACK")) st->kind = ST_ROLLBACK;
        else if (!strcmp(kind, "TRANS_STMT_ROLLBACK_TO")) st->kind = ST_ROLLBACK_TO;
        else if (!strcmp(kind, "TRANS_STMT_SAVEPOINT") || !strcmp(kind, "TRANS_STMT_RELEASE")) st->kind = ST_NOOP;
        /* PREPARE TRANSACTION and the rest: everything */
        st->chain = json_is_true(json_object_get(body, "chain"));
        st->iso = iso_named(st->sql);
    } else if (!strcmp(top, "VariableSetStmt") || !strcmp(top, "VariableShowStmt")) {
        /* SET LOCAL/SESSION and SHOW: this session's settings only */
        const char *name = json_string_value(json_object_get(body, "name"));
        const char *kind = json_string_value(json_object_get(body, "kind"));
        st->kind = ST_NOOP;
        st->iso = iso_named(st->sql);
        if ((kind && !strcmp(kind, "VAR_RESET_ALL")) ||
            (name && (!strcasecmp(name, "search_path") || !strcasecmp(name, "role") ||
                      !strcasecmp(name, "session_authorization") || strcasestr(name, "snapshot")))) {
            st->kind = ST_ALL;
            st->taints = true;
        }
    } else if (!strcmp(top, "SelectStmt") || !strcmp(top, "InsertStmt") || !strcmp(top, "UpdateStmt") ||
               !strcmp(top, "DeleteStmt") || !strcmp(top, "MergeStmt")) {
        walk w = { .ft = ft };
        walk_node(&w, stmt, NULL);
        st->kind = ST_DML;
        st->all = w.unsafe;
        char name[200];
        if (!st->all && w.nrel == 1 && rel_name(&w, 0, name, sizeof name) && narrow_write(ft, top, body, &w, name, st)) {
            json_decref(root);
            return;
        }
        for (int i = 0; i < w.nrel && !st->all; i++) {
            bool is_cte = false;
            for (int c = 0; c < w.ncte && !w.relschema[i]; c++) is_cte |= strcmp(w.cte[c], w.rel[i]) == 0;
            if (is_cte) continue;         /* its query is walked where the WITH defines it */
            if (!rel_name(&w, i, name, sizeof name)) { st->all = true; break; }
            /* a write or a locking read locks (and reads) every relation it names, closed over
             * FKs and sequences: conservative for the relations it only reads */
            if (w.writes || w.locking) {
                uint64_t b = 0;
                if (!write_closure(ft, name, &b)) { st->all = true; break; }
                st->write |= b;
                st->read |= b;
            } else {
                int bit = rel_bit(ft, name, 0);
                if (bit < 0) { st->all = true; break; }
                st->read |= 1ULL << bit;
            }
        }
        if (st->all) st->kind = ST_ALL;
    } else {
        st->taints = true;               /* DDL, DISCARD, DO, LOCK, CALL, ...: everything, and after */
    }
    json_decref(root);
}

static struct fp_stmt *stmt_of(fp_table *ft, const char *sql)
{
    unsigned long h = hash_str(sql) % FP_HASH;
    for (struct fp_stmt *s = ft->stmts[h]; s; s = s->next)
        if (strcmp(s->sql, sql) == 0) return s;
    struct fp_stmt *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->sql = strdup(sql);
    if (!s->sql) { free(s); return NULL; }
    analyse(ft, s);
    s->next = ft->stmts[h];
    ft->stmts[h] = s;
    return s;
}

/* ---- the relation ---- */

fp_table *pgr_fp_new(PGconn *monitor, const char *schema, pgr_isolation iso)
{
    fp_table *ft = calloc(1, sizeof *ft);
    if (!ft) return NULL;
    ft->conn = monitor;
    ft->iso = iso;
    char sql[200];
    snprintf(sql, sizeof sql, "SET search_path = \"%s\"", schema);
    char err[PGR_ERRLEN];
    pgr_call_begin(monitor, 0);
    PGresult *r = PQexec(monitor, sql);
    /* failed: names would resolve elsewhere, so every step is everything */
    ft->broken = pgr_call_end(monitor, err, sizeof err) != 0 || PQresultStatus(r) != PGRES_COMMAND_OK;
    PQclear(r);
    pgr_fp_reset(ft);
    return ft;
}

void pgr_fp_free(fp_table *ft)
{
    if (!ft) return;
    for (int h = 0; h < FP_HASH; h++)
        for (struct fp_stmt *s = ft->stmts[h], *n; s; s = n) { n = s->next; free(s->sql); free(s); }
    for (struct fp_rel *r = ft->rels, *n; r; r = n) { n = r->next; free(r); }
    for (struct fp_func *f = ft->funcs, *n; f; f = n) { n = f->next; free(f); }
    free(ft);
}

void pgr_fp_reset(fp_table *ft)
{
    memset(ft->tx, 0, sizeof ft->tx);
    for (int i = 0; i < PGR_MAX_EXPLORE_SESSIONS; i++) ft->tx[i].iso = ft->tx[i].txn_iso = 1u << ft->iso;
}

pgr_fp pgr_fp_pending(fp_table *ft, int session, const char *sql)
{
    pgr_fp f = { 0 };
    struct fp_stmt *st = sql ? stmt_of(ft, sql) : NULL;
    if (!st || session >= PGR_MAX_EXPLORE_SESSIONS || ft->broken) { f.flags = FP_ALL; return f; }
    struct fp_txn *t = &ft->tx[session];
    if (t->tainted) { f.flags = FP_ALL; return f; }
    /* the level is a set when a statement named another: every rule of each level applies,
     * and the one rule that removes dependence (REPEATABLE READ's reads) only when sure */
    unsigned iso = (t->in_txn ? t->txn_iso : t->iso) | st->iso;
    bool ser = iso & (1u << PGR_SER);
    bool snapshot_level = iso & (1u << PGR_RR | 1u << PGR_SER);
    bool only_rr = iso == 1u << PGR_RR;
    switch (st->kind) {
    case ST_NOOP:
    case ST_BEGIN:
        f.flags = FP_NOOP;
        break;
    case ST_ALL:
        f.flags = FP_ALL;
        break;
    case ST_COMMIT:
    case ST_ROLLBACK:
    case ST_ROLLBACK_TO:
        if (t->all) { f.flags = FP_ALL; break; }
        f.lock = t->write;                  /* releases its locks */
        f.nklock = t->nkwrite;
        f.klock = t->klock;
        f.read = t->read;
        if (st->kind == ST_COMMIT) f.pub = t->write | t->nkwrite;   /* its writes become visible */
        if (ser) {
            f.flags |= FP_SER;
            f.sread = t->read;
            f.swrite = t->write | t->nkwrite;
            if (st->kind != ST_ROLLBACK_TO && (t->read | t->write | t->nkwrite)) f.flags |= FP_SER_END;
        }
        break;
    case ST_DML: {
        uint64_t wr = st->write | st->nkwrite;
        f.lock = st->write;
        f.nklock = st->nkwrite;
        f.klock = st->klock;
        if (!t->in_txn) {                   /* autocommit: its own snapshot, visible at once */
            f.read = st->read;
            f.pub = wr;
            if (ser) {
                f.flags |= FP_SER;
                f.sread = st->read;
                f.swrite = wr;
                if (st->read | wr) f.flags |= FP_SER_END;
            }
        } else {
            bool snap = snapshot_level && t->snap_pending;
            if (snap) f.flags |= FP_SNAP;
            /* a plain read inside a REPEATABLE READ transaction whose snapshot is taken sees
             * nothing another session does from now on */
            if (!(only_rr && !snap && (wr | st->klock) == 0)) f.read = st->read;
            if (ser) {
                f.flags |= FP_SER;
                f.sread = t->read | st->read;
                f.swrite = t->write | t->nkwrite | wr;
            }
        }
        break;
    }
    }
    return f;
}

void pgr_fp_granted(fp_table *ft, int session, const char *sql)
{
    struct fp_stmt *st = sql ? stmt_of(ft, sql) : NULL;
    if (session >= PGR_MAX_EXPLORE_SESSIONS) return;
    struct fp_txn *t = &ft->tx[session];
    if (!st) { t->all = t->in_txn; t->tainted = true; return; }
    if (st->taints) t->tainted = true;
    switch (st->kind) {
    case ST_NOOP:
        t->iso |= st->iso;                 /* SET ... ISOLATION: sticky for the session, conservative */
        t->txn_iso |= st->iso;
        break;
    case ST_BEGIN:
        t->in_txn = true;
        t->snap_pending = true;
        t->all = false;
        t->read = t->write = t->nkwrite = t->klock = 0;
        t->txn_iso = t->iso | st->iso;
        break;
    case ST_COMMIT:
    case ST_ROLLBACK:
        t->in_txn = st->chain;             /* AND CHAIN: the next one is open, its snapshot to come */
        t->snap_pending = st->chain;
        t->all = false;
        t->read = t->write = t->nkwrite = t->klock = 0;
        if (!st->chain) t->txn_iso = t->iso;
        break;
    case ST_ROLLBACK_TO:
        break;
    case ST_ALL:
        if (t->in_txn) { t->all = true; t->snap_pending = false; }
        break;
    case ST_DML:
        if (t->in_txn) {
            t->read |= st->read;
            t->write |= st->write;
            t->nkwrite |= st->nkwrite;
            t->klock |= st->klock;
            t->snap_pending = false;
        }
        break;
    }
}

bool pgr_fp_dependent(const pgr_fp *a, const pgr_fp *b)
{
    if ((a->flags | b->flags) & FP_NOOP) return false;
    if ((a->flags | b->flags) & FP_ALL) return true;
    /* locks: one may wait on the other; a KEY SHARE lock (an FK check) waits only on a lock
     * that is not FOR NO KEY UPDATE, and nothing waits on it but such a lock */
    if ((a->lock | a->nklock) & (b->lock | b->nklock)) return true;
    if ((a->klock & b->lock) || (b->klock & a->lock)) return true;
    if ((a->read & b->pub) || (b->read & a->pub)) return true;   /* one sees the other's commit */
    if (((a->flags & FP_SNAP) && b->pub) || ((b->flags & FP_SNAP) && a->pub)) return true;  /* the snapshot */
    if ((a->flags & FP_SER) && (b->flags & FP_SER)) {
        /* SSI: a transaction's predicate locks see another's write of what it read whichever
         * comes first, the conflicts are flagged (and a pivot aborted) per transaction, and
         * which transaction aborts depends on the order of commits */
        if ((a->sread & b->swrite) || (b->sread & a->swrite)) return true;
        if ((a->flags & FP_SER_END) && (b->sread | b->swrite)) return true;
        if ((b->flags & FP_SER_END) && (a->sread | a->swrite)) return true;
    }
    return false;
}

