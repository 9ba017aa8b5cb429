/* util.c — small utilities every part uses: the monotonic clock, number formatting. */
#include "pgrace.h"

#include <stdio.h>
#include <time.h>

int64_t pgr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void pgr_fmt_ll(char *buf, long long v)
{
    snprintf(buf, 24, "%lld", v);
}
