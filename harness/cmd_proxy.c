/*
 * cmd_proxy.c — `pgrace proxy`: the proxy in pass-through mode (no gate: every statement
 * goes at once, a session per connection) until SIGINT/SIGTERM. It says on stderr where to
 * connect; with --trace, every step as it completes; with --fault, faults at the wire.
 * Exit status: 0 stopped by a signal, 2 it could not start or the server went away.
 */
#include "app.h"
#include "proxy.h"
#include "seam.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* s percent-encoded for a URL's user or path part. */
static void url_part(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (; *s && k + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-._~", c)) {
            out[k++] = (char)c;
        } else {
            out[k++] = '%';
            out[k++] = hex[c >> 4];
            out[k++] = hex[c & 15];
        }
    }
    out[k] = '\0';
}

/* The user and database the DSN names ("" when it names none). */
static void dsn_user_db(const char *dsn, char *user, size_t ulen, char *db, size_t dlen)
{
    user[0] = db[0] = '\0';
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    if (!opts) return;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        if (strcmp(o->keyword, "user") == 0) snprintf(user, ulen, "%s", o->val);
        else if (strcmp(o->keyword, "dbname") == 0) snprintf(db, dlen, "%s", o->val);
    }
    PQconninfoFree(opts);
}

int pgr_cmd_proxy(char **pos, int npos)
{
    (void)pos; (void)npos;
    char dsn[PATH_MAX + 128];
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) return 2;
    /* -c N: listener i bound to session Si (ports PORT..PORT+N-1) */
    int nsessions = pgr_cfg.sessions_given ? pgr_cfg.sessions : 0;
    pgr_session *sessions = nsessions ? calloc((size_t)nsessions, sizeof *sessions) : NULL;
    pgr_session *bound[PGR_MAX_SESSIONS];
    if (nsessions && !sessions) { fprintf(stderr, "pgrace: out of memory\n"); return 2; }
    for (int i = 0; i < nsessions; i++) {
        sessions[i].index = i;
        sessions[i].fault_site = sessions[i].fault_fired_at = -1;
        bound[i] = &sessions[i];
    }
    pgr_proxy_opts o = {
        .dsn = dsn, .socket_dir = pgr_cfg.socket_dir, .client_uid = 0, .port = pgr_cfg.port,
        .trace = pgr_cfg.trace ? stderr : NULL, .fault = pgr_cfg.fault.kind != PGR_FAULT_NONE ? &pgr_cfg.fault : NULL,
        .seed = pgr_cfg.seed, .interrupted = &pgr_interrupted, .nsessions = nsessions, .sessions = bound,
    };
    char err[PGR_ERRLEN];
    pgr_proxy *px = pgr_proxy_open(&o, err, sizeof err);
    if (!px) {
        fprintf(stderr, "pgrace: proxy: %s\n", err);
        free(sessions);
        return 2;
    }
    char user[128], db[128], shown[PATH_MAX + 128], uu[400], ud[400];
    dsn_user_db(dsn, user, sizeof user, db, sizeof db);
    pgr_dsn_redact(dsn, NULL, shown, sizeof shown);
    url_part(user, uu, sizeof uu);
    url_part(db, ud, sizeof ud);
    int port = pgr_proxy_port(px, 0);
    fprintf(stderr, "pgrace: proxy for %s%s\n", shown, pgr_cfg.dsn ? "" : " (the throwaway server)");
    fprintf(stderr, "pgrace: connect with PGHOST=%s PGPORT=%d%s%s%s%s\n", pgr_proxy_socket_dir(px), port,
            user[0] ? " PGUSER=" : "", user, db[0] ? " PGDATABASE=" : "", db);
    fprintf(stderr, "pgrace: or DATABASE_URL=postgresql://%s%s127.0.0.1:%d/%s\n", uu, uu[0] ? "@" : "", port, ud);
    for (int i = 0; i < nsessions; i++)
        fprintf(stderr, "pgrace: session S%d: PGPORT=%d (127.0.0.1:%d)\n", i + 1, pgr_proxy_port(px, i), pgr_proxy_port(px, i));
    if (o.fault) {
        char f[96];
        pgr_fault_format(o.fault, f, sizeof f);
        fprintf(stderr, "pgrace: fault %s on each eligible statement\n", f);
    }
    fprintf(stderr, "pgrace: pass-through (%s, no gate); stop with SIGINT or SIGTERM\n",
            nsessions ? "each listener a session" : "each connection a session");
    int rc = pgr_proxy_run(px, err, sizeof err);
    pgr_proxy_stats st;
    pgr_proxy_get_stats(px, &st);
    pgr_proxy_close(px);
    for (int i = 0; i < nsessions; i++) pgr_stmt_cache_free(&sessions[i]);
    free(sessions);
    if (rc != 0) {
        fprintf(stderr, "pgrace: proxy: %s\n", err);
        return 2;
    }
    if (!pgr_cfg.quiet)
        fprintf(stderr, "pgrace: proxy stopped: %lld connections, %lld steps, %lld refused\n", st.connections, st.steps,
                st.refused);
    return 0;
}
