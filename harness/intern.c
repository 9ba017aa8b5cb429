/*
 * intern.c — statement texts and labels kept for the life of the process.
 *
 * A step records its label and SQL as pointers (traces are copied into counterexamples
 * that outlive the sessions and pools that ran them). A C scenario's SQL is a static
 * constant; a spec's is read from a file and a proxied statement arrives off the wire with
 * new text every time. pgr_intern gives every distinct text one stable copy, so a step's
 * pointers stay valid and equal texts have equal pointers. The table only grows: it holds
 * one copy per distinct text the process has seen.
 */
#include "intern.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    uint64_t hash;
    char *text;
} entry;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static entry *table;
static size_t cap, used;

uint64_t pgr_text_hash(const char *s)
{
    return pgr_bytes_hash(s, strlen(s));
}

uint64_t pgr_bytes_hash(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;        /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static int grow(void)
{
    size_t ncap = cap ? cap * 2 : 1024;
    entry *nt = calloc(ncap, sizeof *nt);
    if (!nt) return -1;
    for (size_t i = 0; i < cap; i++) {
        if (!table[i].text) continue;
        size_t j = table[i].hash & (ncap - 1);
        while (nt[j].text) j = (j + 1) & (ncap - 1);
        nt[j] = table[i];
    }
    free(table);
    table = nt;
    cap = ncap;
    return 0;
}

const char *pgr_intern_hashed(const char *text, uint64_t hash)
{
    const char *out = NULL;
    pthread_mutex_lock(&mu);
    if ((used + 1) * 2 > cap && grow() != 0) goto done;
    size_t j = hash & (cap - 1);
    for (; table[j].text; j = (j + 1) & (cap - 1))
        if (table[j].hash == hash && strcmp(table[j].text, text) == 0) { out = table[j].text; goto done; }
    char *copy = strdup(text);
    if (!copy) goto done;
    table[j] = (entry){ hash, copy };
    used++;
    out = copy;
done:
    pthread_mutex_unlock(&mu);
    return out;
}

const char *pgr_intern(const char *text)
{
    return pgr_intern_hashed(text, pgr_text_hash(text));
}
