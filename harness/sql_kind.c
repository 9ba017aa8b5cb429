/*
 * sql_kind.c — what a statement does, from its text: the explorer's independence relation
 * and the faults (which statements commit) ask here.
 */
#include "pgrace.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *skip_space(const char *sql)
{
    while (*sql && isspace((unsigned char)*sql)) sql++;
    return sql;
}

/* Does sql start with keyword as a whole word? */
static bool starts_with_word(const char *sql, const char *kw)
{
    size_t n = strlen(kw);
    sql = skip_space(sql);
    return strncasecmp(sql, kw, n) == 0 && !isalnum((unsigned char)sql[n]) && sql[n] != '_';
}

int pgr_sql_kind(const char *sql)
{
    sql = skip_space(sql);
    if (strncasecmp(sql, "BEGIN", 5) == 0) return PGR_SQL_NOOP;
    if (strncasecmp(sql, "SELECT", 6) != 0) return PGR_SQL_WRITE;
    static const char *const not_plain[] = { " FOR ", "nextval", "setval", "lock", "INSERT", "UPDATE", "DELETE" };
    for (size_t i = 0; i < sizeof not_plain / sizeof not_plain[0]; i++)
        if (strcasestr(sql, not_plain[i])) return PGR_SQL_WRITE;
    return PGR_SQL_READ;
}

bool pgr_sql_is_commit(const char *sql)
{
    return starts_with_word(sql, "COMMIT") || starts_with_word(sql, "END");
}

bool pgr_sql_is_rollback(const char *sql)
{
    return starts_with_word(sql, "ROLLBACK") || starts_with_word(sql, "ABORT");
}
