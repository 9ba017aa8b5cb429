/*
 * retry.c — retrying a transaction after a serialization failure or deadlock.
 *
 * Why a pause at all: a serializable transaction that writes what a committing transaction
 * read, while a third, running one read what the committing one wrote, is cancelled at its
 * COMMIT ("Canceled on commit attempt with conflict in from prepared pivot"): the committing
 * one can no longer be. It stays "prepared" until its commit record is flushed, and a retry
 * that starts before then conflicts with it the same way again. On a server with fsync and
 * synchronous_commit on that is 1-6 ms here, longer than ten immediate attempts take, so a
 * retry loop without a pause gave up (503) on requests that nothing actually conflicted with
 * (issue #15 item 6). Equal jitter: a random 50-100 % of the doubling step, so that sessions
 * that failed together do not retry in lockstep.
 */
#include "pgrace.h"

#include <errno.h>
#include <time.h>

void pgr_retry_pause(const pgr_session *s)
{
    if (s->gate || s->attempt < 1) return;      /* a scheduler runs one statement at a time */
    if (s->interrupted && __atomic_load_n(s->interrupted, __ATOMIC_RELAXED)) return;
    int shift = s->attempt - 1 < 6 ? s->attempt - 1 : 6;
    int64_t step = (int64_t)1000000 << shift;   /* ns: 1 ms .. 64 ms */
    uint64_t x = (uint64_t)pgr_now_ns() ^ ((uint64_t)(s->index + 1) << 40) ^ (uint64_t)s->attempt;
    x = pgr_splitmix64(x);
    int64_t ns = step / 2 + (int64_t)(x % (uint64_t)(step / 2 + 1));
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !(s->interrupted && __atomic_load_n(s->interrupted, __ATOMIC_RELAXED))) {}
}

int pgr_retry(pgr_session *s, int attempts, int (*once)(pgr_session *, const pgr_request *, pgr_response *),
              const pgr_request *req, pgr_response *resp)
{
    for (s->attempt = 0; s->attempt < attempts; s->attempt++) {
        pgr_retry_pause(s);
        int status = once(s, req, resp);
        if (status != PGR_RETRY) return status;
    }
    return 503;
}
