/*
 * client_env.c — the environment of a program or an application behind the proxy (client_env.h).
 */
#include "client_env.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* The variables we set, or that would send the process to the server behind our back. */
static bool ours(const char *e)
{
    static const char *const drop[] = { "PGHOST=", "PGHOSTADDR=", "PGPORT=", "PGDATABASE=", "PGUSER=", "PGOPTIONS=",
                                        "PGSERVICE=", "PGSSLMODE=", "DATABASE_URL=", "PGRACE_", "PGPASSWORD=", "PORT=" };
    for (int i = 0; i < PGR_LEN(drop); i++)
        if (strncmp(e, drop[i], strlen(drop[i])) == 0) return true;
    return false;
}

/* URL-encode src into dst (cap bytes). */
static void urlenc(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (const unsigned char *q = (const unsigned char *)src; *q && o + 4 < cap; q++) {
        if (isalnum(*q) || *q == '-' || *q == '_' || *q == '.' || *q == '~') dst[o++] = (char)*q;
        else o += (size_t)snprintf(dst + o, cap - o, "%%%02X", *q);
    }
    dst[o] = '\0';
}

char **pgr_client_env(const pgr_client_env_opts *o, const char *const *extra, int nextra)
{
    static const char *const level[] = { "read\\ committed", "repeatable\\ read", "serializable" };
    static const char *const level_name[] = { "read committed", "repeatable read", "serializable" };
    char options[256], url[1024], opt_enc[400], user_enc[200], db_enc[200];
    snprintf(options, sizeof options, "-c search_path=%s -c default_transaction_isolation=%s", o->schema, level[o->iso]);
    urlenc(opt_enc, sizeof opt_enc, options);
    urlenc(user_enc, sizeof user_enc, o->user);
    urlenc(db_enc, sizeof db_enc, o->dbname);
    snprintf(url, sizeof url, "postgresql://%s@127.0.0.1:%d/%s?sslmode=disable&options=%s", user_enc, o->port, db_enc, opt_enc);
    enum { NSET = 11 };
    char set[NSET][1200];
    snprintf(set[0], sizeof set[0], "PGHOST=%s", o->host);
    snprintf(set[1], sizeof set[1], "PGPORT=%d", o->port);
    snprintf(set[2], sizeof set[2], "PGDATABASE=%s", o->dbname);
    snprintf(set[3], sizeof set[3], "PGUSER=%s", o->user);
    snprintf(set[4], sizeof set[4], "PGOPTIONS=%s", options);
    snprintf(set[5], sizeof set[5], "DATABASE_URL=%s", url);
    snprintf(set[6], sizeof set[6], "PGRACE_SCHEMA=%s", o->schema);
    snprintf(set[7], sizeof set[7], "PGRACE_ISOLATION=%s", level_name[o->iso]);
    snprintf(set[8], sizeof set[8], "PGSSLMODE=disable");
    int nset = 9;
    if (o->password && o->password[0]) snprintf(set[nset++], sizeof set[0], "PGPASSWORD=%s", o->password);

    /* one block: the pointer array, then the strings */
    size_t nenv = 0, bytes = 0;
    for (char **e = environ; *e; e++)
        if (!ours(*e)) { nenv++; bytes += strlen(*e) + 1; }
    for (int i = 0; i < nset; i++) bytes += strlen(set[i]) + 1;
    for (int i = 0; i < nextra; i++) bytes += strlen(extra[i]) + 1;
    size_t nptr = nenv + (size_t)nset + (size_t)nextra + 1;
    char **env = malloc(nptr * sizeof *env + bytes);
    if (!env) return NULL;
    char *w = (char *)(env + nptr);
    size_t k = 0;
#define PUT(str) do { size_t l_ = strlen(str) + 1; memcpy(w, (str), l_); env[k++] = w; w += l_; } while (0)
    for (char **e = environ; *e; e++)
        if (!ours(*e)) PUT(*e);
    for (int i = 0; i < nset; i++) PUT(set[i]);
    for (int i = 0; i < nextra; i++) PUT(extra[i]);
#undef PUT
    env[k] = NULL;
    return env;
}
