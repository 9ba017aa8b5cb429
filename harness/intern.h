/* intern.h — one stable copy of every distinct statement text and label (intern.c). */
#ifndef PGRACE_INTERN_H
#define PGRACE_INTERN_H

#include <stddef.h>
#include <stdint.h>

/* The text's hash (FNV-1a, 64 bits): what the statement caches and the fuzzer's
 * interleaving signal key on. */
uint64_t pgr_text_hash(const char *s);
/* The same function of n bytes (which may hold NULs). */
uint64_t pgr_bytes_hash(const void *p, size_t n);
/* The process's copy of text: equal texts give the same pointer, valid until exit.
 * Thread-safe. NULL only when out of memory. */
const char *pgr_intern(const char *text);
const char *pgr_intern_hashed(const char *text, uint64_t hash);

#endif
