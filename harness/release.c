/*
 * release.c — the release barrier that starts every session of a trial together.
 *
 * How it works: the coordinator opens the gate by bumping a generation word and waking
 * every sleeper with a single FUTEX_WAKE; sessions spin very briefly on that word, then
 * sleep on it with FUTEX_WAIT (spinning longer measured no better on 2 cores: a spinning
 * session only takes the core another one needs). Finishing is
 * the mirror image: each session decrements `pending`, and the last one wakes the
 * coordinator. One syscall releases N sessions, so the release skew (the spread of the
 * sessions' first sends) is bounded by scheduling, not by a chain of wake-ups as with a
 * mutex/condvar. The skew is measured, not assumed (stress results, bench/).
 */
#include "release.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static void futex_wait(_Atomic uint32_t *addr, uint32_t expect)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, expect, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

void pgr_release_init(pgr_release *r)
{
    atomic_store(&r->gen, 0);
    atomic_store(&r->pending, 0);
}

void pgr_release_open(pgr_release *r, uint32_t sessions)
{
    atomic_store_explicit(&r->pending, sessions, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->gen, 1, memory_order_release);
    futex_wake(&r->gen, INT_MAX);
}

void pgr_release_wait(pgr_release *r, uint32_t *seen)
{
    for (int spin = 0; spin < 200; spin++) {
        uint32_t g = atomic_load_explicit(&r->gen, memory_order_acquire);
        if (g != *seen) { *seen = g; return; }
        cpu_relax();
    }
    for (;;) {
        uint32_t g = atomic_load_explicit(&r->gen, memory_order_acquire);
        if (g != *seen) { *seen = g; return; }
        futex_wait(&r->gen, g);
    }
}

void pgr_release_done(pgr_release *r)
{
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1)
        futex_wake(&r->pending, 1);
}

void pgr_release_join(pgr_release *r)
{
    for (;;) {
        uint32_t p = atomic_load_explicit(&r->pending, memory_order_acquire);
        if (p == 0) return;
        futex_wait(&r->pending, p);
    }
}
