/* SPDX-License-Identifier: MIT */
/*
 * Rate and concurrency limits per method class (docs/ratelimits.md).
 *
 * Pure logic: no I/O, no clock, no event loop. The caller passes the time (CLOCK_MONOTONIC
 * microseconds; any clock that never goes backwards works) to every call, so the unit tests
 * run hours of traffic in microseconds.
 *
 * For each class there is
 *   - a global token bucket: `rate` tokens per second, at most `burst` tokens; a request takes
 *     one token;
 *   - a concurrency cap: at most `concurrency` requests taken and not yet released;
 *   - one token bucket per source (the peer's uid, or for trusted peers the client address
 *     they pass on), with half the class's rate and half its burst (at least 1 token), and a
 *     concurrency cap per source of half the class's (at least 1).
 *     A request needs a token from its source's bucket and from the global one, and room under
 *     both concurrency caps.
 *
 * Per-source buckets live in a table of at most max_sources entries (one per class and source).
 * When it is full, the least recently used entry makes room: the memory is bounded by
 * max_sources * (sizeof(RateLimitEntry) + a tree node) whatever the traffic. An evicted source
 * starts again with a full bucket, so max_sources should exceed the number of sources active
 * within a few seconds. A source with requests in flight is never evicted; when every entry has
 * some, a request from a new source is refused (-EBUSY).
 *
 * Not thread-safe: one RateLimiter is used from idmd's event loop only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "idm/cleanup.h"

/* A source key, including its type prefix and terminating NUL. */
#define RATELIMIT_SOURCE_MAX 64
/* retryAfter for a request refused by the concurrency cap: we cannot know when a slot frees. */
#define RATELIMIT_BUSY_RETRY_USEC (1000000ULL)

typedef struct RateLimiter RateLimiter;

/* Who a request is counted against: "uid:1000", "ip:192.0.2.7", "ip6:2001:db8:1:2::/64" or
 * "host:example.net" (a name that is not an address; "host#<hash>" when long). */
typedef struct RateLimitSource {
        char key[RATELIMIT_SOURCE_MAX];
} RateLimitSource;

typedef struct RateLimitStats {
        uint64_t rejected_rate[_METHOD_CLASS_MAX];      /* refused for want of a token */
        uint64_t rejected_busy[_METHOD_CLASS_MAX];      /* refused by the concurrency cap */
        unsigned in_flight[_METHOD_CLASS_MAX];
        unsigned in_flight_max[_METHOD_CLASS_MAX];      /* high-water mark since ratelimit_new() */
        size_t sources;                                 /* per-source entries held now */
        size_t max_sources;
        uint64_t evicted;                               /* entries dropped to make room */
} RateLimitStats;

/* A limiter with the given per-class settings (copied) and per-source table size (>= 1).
 * -EINVAL for a rate <= 0, a burst or concurrency of 0 or max_sources 0; -ENOMEM. */
int ratelimit_new(const RateLimitClassConfig classes[static _METHOD_CLASS_MAX], size_t max_sources,
                  RateLimiter **ret);
/* NULL-safe; returns NULL. */
/* New limits for every class (a configuration reload). -EINVAL for a limit ratelimit_new()
 * refuses, then nothing changes. */
int ratelimit_set_classes(RateLimiter *rl, const RateLimitClassConfig classes[static _METHOD_CLASS_MAX]);

RateLimiter *ratelimit_free(RateLimiter *rl);
DEFINE_POINTER_CLEANUP(RateLimiter, ratelimit_free);

/* The source of a request from a peer with this uid. address is the client's address the request
 * names (customerIP, PAM rhost), used only when trusted is true (admin peers and publishers,
 * which serve many end users each); NULL or "" means none. An unprivileged peer is always
 * counted by its uid, whatever address it names, so it cannot buy itself fresh buckets.
 *
 * Addresses are normalized: IPv4 (also IPv4-mapped IPv6) by the whole address, other IPv6 by
 * their /64 (one host usually owns a whole /64), anything else as a lower-cased host name. */
void ratelimit_source_init(RateLimitSource *ret, uid_t uid, bool trusted, const char *address);

/* Admits one request of class c from src at time now_usec, or refuses it.
 *   0        admitted: a token was taken from the source's and the class's bucket and the
 *            request counts against the concurrency cap until ratelimit_release()
 *   -EAGAIN  no token (in the source's or the class's bucket); *ret_retry_after_usec (if not
 *            NULL) is how long until one will be there
 *   -EBUSY   the class's or the source's concurrency cap is reached, or the source table is
 *            full of sources with requests in flight; *ret_retry_after_usec is
 *            RATELIMIT_BUSY_RETRY_USEC
 *   -ENOMEM  no memory for a new source entry (nothing taken)
 * A refused request takes nothing. *ret_retry_after_usec is left alone on success. */
int ratelimit_acquire(RateLimiter *rl, MethodClass c, const RateLimitSource *src, uint64_t now_usec,
                      uint64_t *ret_retry_after_usec);

/* Moves an admitted request from source `from` to source `to` once the caller has proved it may
 * speak for `to` (a publisher that authenticated and names its end user's address): takes a
 * token and a concurrency place from `to` and gives `from` back its token and its place. The
 * class's own bucket and cap are not touched (the request was counted there already). 0 when
 * the keys are equal. Refused (-EAGAIN, -EBUSY, -ENOMEM, as ratelimit_acquire): nothing
 * changes, the request still belongs to `from`. */
int ratelimit_move(RateLimiter *rl, MethodClass c, const RateLimitSource *from, const RateLimitSource *to,
                   uint64_t now_usec, uint64_t *ret_retry_after_usec);

/* Ends a request admitted by ratelimit_acquire() (exactly once per admitted request), naming the
 * source it belongs to now. */
void ratelimit_release(RateLimiter *rl, MethodClass c, const RateLimitSource *src);

void ratelimit_stats(const RateLimiter *rl, RateLimitStats *ret);

/* A wait in microseconds as the whole seconds of a retryAfter field: rounded up, at least 1. */
static inline uint64_t ratelimit_retry_after_sec(uint64_t usec) {
        uint64_t s = usec / 1000000ULL + (usec % 1000000ULL != 0);
        return s > 0 ? s : 1;
}
