/* util.c — small utilities every part uses: the monotonic clock, number formatting, bounded copies. */
#include "pgrace.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t pgr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t pgr_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

void pgr_fmt_ll(char *buf, long long v)
{
    snprintf(buf, 24, "%lld", v);
}

void pgr_copy_trunc(char *dst, size_t cap, const char *src)
{
    if (!src) src = "";
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void pgr_block_run_signals(sigset_t *old)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, old);
}

void pgr_target_error(pgr_session *s, const char *what, const char *fmt, va_list ap)
{
    if (s->infra_error) return;
    char m[PGR_ERRLEN - 96];
    vsnprintf(m, sizeof m, fmt, ap);
    s->infra_error = true;
    snprintf(s->infra_msg, sizeof s->infra_msg, "session S%d: %s: %s", s->index + 1, what, m);
}
