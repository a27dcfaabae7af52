/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of idmd/ratelimit.c with injected time: token bucket arithmetic (global and per
 * source), concurrency caps, refusals that take nothing, independent classes, the bounded
 * least-recently-used source table (far more sources than it holds), source keys, retryAfter.
 * No test sleeps: an hour of traffic runs in milliseconds.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "idmd/ratelimit.h"
#include "tests.h"

#define SEC UINT64_C(1000000)
#define T0 (UINT64_C(1000) * SEC)       /* an arbitrary monotonic start */

static RateLimitClassConfig classes_default[_METHOD_CLASS_MAX] = {
        [METHOD_CLASS_DEFAULT] = { .rate = 200, .burst = 200, .concurrency = 50 },
        [METHOD_CLASS_LOGIN] = { .rate = 50, .burst = 50, .concurrency = 20 },
        [METHOD_CLASS_REGISTRATION] = { .rate = 20, .burst = 20, .concurrency = 10 },
        [METHOD_CLASS_PASSWORD_RESET] = { .rate = 10, .burst = 10, .concurrency = 5 },
        [METHOD_CLASS_USERDB] = { .rate = 1000, .burst = 2000, .concurrency = 100 },
};

static RateLimiter *limiter(double rate, unsigned burst, unsigned concurrency, size_t sources) {
        RateLimitClassConfig cc[_METHOD_CLASS_MAX];
        RateLimiter *rl = NULL;

        memcpy(cc, classes_default, sizeof(cc));
        cc[METHOD_CLASS_LOGIN] = (RateLimitClassConfig) { .rate = rate, .burst = burst, .concurrency = concurrency };
        ASSERT_OK(ratelimit_new(cc, sources, &rl));
        ASSERT_TRUE(rl);
        return rl;
}

static RateLimitSource uid_source(unsigned uid) {
        RateLimitSource s;

        ratelimit_source_init(&s, uid, false, NULL);
        return s;
}

static RateLimitSource ip_source(unsigned n) {
        RateLimitSource s;
        char ip[32];

        (void) snprintf(ip, sizeof(ip), "10.%u.%u.%u", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        ratelimit_source_init(&s, 0, true, ip);
        return s;
}

/* Takes and at once releases one slot: a request that finishes immediately. */
static int hit(RateLimiter *rl, MethodClass c, RateLimitSource s, uint64_t now, uint64_t *retry) {
        int r = ratelimit_acquire(rl, c, &s, now, retry);

        if (r == 0)
                ratelimit_release(rl, c, &s);
        return r;
}

TEST(new_rejects_bad_settings) {
        RateLimitClassConfig cc[_METHOD_CLASS_MAX];
        RateLimiter *rl = NULL;

        memcpy(cc, classes_default, sizeof(cc));
        ASSERT_EQ(ratelimit_new(cc, 0, &rl), -EINVAL);
        cc[METHOD_CLASS_LOGIN].rate = 0;
        ASSERT_EQ(ratelimit_new(cc, 16, &rl), -EINVAL);
        cc[METHOD_CLASS_LOGIN].rate = 1;
        cc[METHOD_CLASS_LOGIN].burst = 0;
        ASSERT_EQ(ratelimit_new(cc, 16, &rl), -EINVAL);
        cc[METHOD_CLASS_LOGIN].burst = 1;
        cc[METHOD_CLASS_LOGIN].concurrency = 0;
        ASSERT_EQ(ratelimit_new(cc, 16, &rl), -EINVAL);
        ASSERT_TRUE(rl == NULL);
        ASSERT_TRUE(ratelimit_free(NULL) == NULL);
}

TEST(global_bucket) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(5, 5, 100, 1024);
        uint64_t retry = 0;

        /* A full bucket: burst requests at once (each from a fresh source, so only the global
         * bucket counts), then none. */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(i), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(100), T0, &retry), -EAGAIN);
        ASSERT_EQ(retry, SEC / 5);              /* one token takes 200 ms */
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(101), T0 + SEC / 5 - 1, &retry), -EAGAIN);
        ASSERT_EQ(retry, 1);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(102), T0 + SEC / 5, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(103), T0 + SEC / 5, &retry), -EAGAIN);

        /* Idle for a long time: the bucket holds burst tokens, no more. */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(200 + i), T0 + 3600 * SEC, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(300), T0 + 3600 * SEC, &retry), -EAGAIN);
}

TEST(flood_stays_within_rate_times_time_plus_burst) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(5, 5, 100, 1 << 16);
        RateLimitStats st;
        unsigned accepted = 0, refused = 0;

        /* A request every millisecond for 10 s, each from another address: 5 + 5 * 10. */
        for (unsigned ms = 0; ms <= 10000; ms++) {
                uint64_t retry = 0;
                int r = hit(rl, METHOD_CLASS_LOGIN, ip_source(ms), T0 + ms * (SEC / 1000), &retry);

                if (r == 0)
                        accepted++;
                else {
                        ASSERT_EQ(r, -EAGAIN);
                        ASSERT_TRUE(retry >= 1 && retry <= SEC / 5);
                        refused++;
                }
        }
        fprintf(stderr, "accepted %u, refused %u\n", accepted, refused);
        ASSERT_TRUE(accepted <= 5 + 5 * 10);
        ASSERT_TRUE(accepted >= 5 + 5 * 10 - 1);        /* floating point may lose the last one */
        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.rejected_rate[METHOD_CLASS_LOGIN], refused);
        ASSERT_EQ(st.rejected_busy[METHOD_CLASS_LOGIN], 0);
        ASSERT_EQ(st.rejected_rate[METHOD_CLASS_DEFAULT], 0);
}

TEST(source_bucket_is_half_the_class) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(10, 10, 100, 1024);
        uint64_t retry = 0;

        /* One uid: half the burst (5), then half the rate (one every 200 ms). */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1000), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1000), T0, &retry), -EAGAIN);
        ASSERT_EQ(retry, SEC / 5);
        /* Another uid is served from what is left of the class bucket. */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1001), T0, &retry), 0);
        /* Now the class bucket is empty: even a fresh source waits, for the class's token. */
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1002), T0, &retry), -EAGAIN);
        ASSERT_EQ(retry, SEC / 10);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1002), T0 + SEC / 10, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1000), T0 + SEC / 10, &retry), -EAGAIN);
        ASSERT_EQ(retry, SEC / 10);             /* the source's own bucket: 100 ms more */
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1000), T0 + SEC / 5, &retry), 0);

        /* A burst of 1 gives each source a burst of 1. */
        ratelimit_free(TAKE_PTR(rl));
        rl = limiter(1, 1, 100, 1024);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(5), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(5), T0, &retry), -EAGAIN);
        ASSERT_EQ(retry, 2 * SEC);              /* the source's bucket (0.5/s) is the longer wait */
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(5), T0 + SEC, &retry), -EAGAIN);
        ASSERT_EQ(retry, SEC);                  /* the source refills at 0.5/s */
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(5), T0 + 2 * SEC, &retry), 0);
}

TEST(noisy_source_cannot_starve_others) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(20, 20, 100, 1024);
        unsigned noisy = 0, quiet = 0;

        /* uid 1000 tries every millisecond, uid 1001 ten times a second, for 60 s. */
        for (unsigned ms = 0; ms < 60000; ms++) {
                uint64_t now = T0 + ms * (SEC / 1000), retry;

                if (hit(rl, METHOD_CLASS_LOGIN, uid_source(1000), now, &retry) == 0)
                        noisy++;
                if (ms % 100 == 0 && hit(rl, METHOD_CLASS_LOGIN, uid_source(1001), now, &retry) == 0)
                        quiet++;
        }
        fprintf(stderr, "noisy %u, quiet %u\n", noisy, quiet);
        ASSERT_TRUE(noisy <= 10 + 10 * 60);     /* its share: half the burst, half the rate */
        ASSERT_EQ(quiet, 600);                  /* every request of the quiet one got through */
}

TEST(unprivileged_address_is_ignored) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(10, 10, 100, 1024);
        RateLimitSource s;
        unsigned accepted = 0;
        char ip[32];

        /* uid 1000 names a new customerIP with every request: still one bucket (its uid). */
        for (unsigned i = 0; i < 100; i++) {
                uint64_t retry;

                (void) snprintf(ip, sizeof(ip), "192.0.2.%u", i);
                ratelimit_source_init(&s, 1000, false, ip);
                ASSERT_STREQ(s.key, "uid:1000");
                if (ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0, &retry) == 0) {
                        ratelimit_release(rl, METHOD_CLASS_LOGIN, &s);
                        accepted++;
                }
        }
        ASSERT_EQ(accepted, 5);

        /* A trusted peer naming addresses gets a bucket per address (here the class's burst
         * is what is left). */
        accepted = 0;
        for (unsigned i = 0; i < 100; i++) {
                uint64_t retry;

                (void) snprintf(ip, sizeof(ip), "192.0.2.%u", i);
                ratelimit_source_init(&s, 0, true, ip);
                if (ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0, &retry) == 0) {
                        ratelimit_release(rl, METHOD_CLASS_LOGIN, &s);
                        accepted++;
                }
        }
        ASSERT_EQ(accepted, 5);
}

TEST(refusal_takes_nothing) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(4, 4, 100, 1024);
        uint64_t retry;

        /* uid 1 (burst 2) is refused for its own bucket: the class bucket keeps 2 tokens. */
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1), T0, &retry), 0);
        for (unsigned i = 0; i < 10; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(1), T0, &retry), -EAGAIN);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(2), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(2), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, uid_source(3), T0, &retry), -EAGAIN);
}

TEST(concurrency_cap) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(1000, 1000, 3, 1024);
        RateLimitSource held_src[3], s;
        RateLimitStats st;
        uint64_t retry = 0;

        for (unsigned i = 0; i < 3; i++) {
                held_src[i] = ip_source(i);
                ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &held_src[i], T0, &retry), 0);
        }
        s = ip_source(10);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0, &retry), -EBUSY);
        ASSERT_EQ(retry, RATELIMIT_BUSY_RETRY_USEC);
        /* Other classes are not affected. */
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_DEFAULT, &s, T0, &retry), 0);
        ratelimit_release(rl, METHOD_CLASS_DEFAULT, &s);

        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.in_flight[METHOD_CLASS_LOGIN], 3);
        ASSERT_EQ(st.in_flight_max[METHOD_CLASS_LOGIN], 3);
        ASSERT_EQ(st.rejected_busy[METHOD_CLASS_LOGIN], 1);

        ratelimit_release(rl, METHOD_CLASS_LOGIN, &held_src[0]);
        held_src[0] = s;
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0, &retry), 0);
        s = ip_source(11);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0, &retry), -EBUSY);

        /* Many requests coming and going: never more than the cap in flight. */
        for (unsigned i = 0; i < 3; i++)
                ratelimit_release(rl, METHOD_CLASS_LOGIN, &held_src[i]);
        RateLimitSource ring[4];
        unsigned held = 0, first = 0;
        for (unsigned i = 0; i < 10000; i++) {
                s = ip_source(i);
                if (i % 3 == 0 && held > 0) {
                        ratelimit_release(rl, METHOD_CLASS_LOGIN, &ring[first]);
                        first = (first + 1) % 4;
                        held--;
                }
                if (ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0 + i * SEC, &retry) == 0) {
                        ring[(first + held) % 4] = s;
                        held++;
                }
                ASSERT_TRUE(held <= 3);
        }
        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.in_flight[METHOD_CLASS_LOGIN], held);
        ASSERT_EQ(st.in_flight_max[METHOD_CLASS_LOGIN], 3);
        while (held-- > 0) {
                ratelimit_release(rl, METHOD_CLASS_LOGIN, &ring[first]);
                first = (first + 1) % 4;
        }
}

/* One source may hold at most half of a class's concurrency: the rest stays for the others. */
TEST(per_source_concurrency) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(1000, 1000, 6, 1024);
        RateLimitSource a = uid_source(1000), b = uid_source(1001);
        RateLimitStats st;
        uint64_t retry = 0;

        for (unsigned i = 0; i < 3; i++)
                ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), 0);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), -EBUSY);
        ASSERT_EQ(retry, RATELIMIT_BUSY_RETRY_USEC);
        for (unsigned i = 0; i < 3; i++)
                ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &b, T0, &retry), 0);
        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.in_flight[METHOD_CLASS_LOGIN], 6);
        ASSERT_EQ(st.rejected_busy[METHOD_CLASS_LOGIN], 1);

        /* A release frees a place of that source only. */
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &b);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), -EBUSY);
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &a);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), 0);
        for (unsigned i = 0; i < 3; i++)
                ratelimit_release(rl, METHOD_CLASS_LOGIN, &a);
        for (unsigned i = 0; i < 2; i++)
                ratelimit_release(rl, METHOD_CLASS_LOGIN, &b);

        /* A class of concurrency 1 still admits one request per source. */
        _cleanup_(ratelimit_freep) RateLimiter *one = limiter(1000, 1000, 1, 1024);
        ASSERT_EQ(ratelimit_acquire(one, METHOD_CLASS_LOGIN, &a, T0, &retry), 0);
        ASSERT_EQ(ratelimit_acquire(one, METHOD_CLASS_LOGIN, &b, T0, &retry), -EBUSY);
        ratelimit_release(one, METHOD_CLASS_LOGIN, &a);
}

/* A flood of fresh sources cannot evict a busy source to reset its concurrency count. */
TEST(busy_sources_not_evicted) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(100000, 100000, 1000, 4);
        RateLimitSource a = uid_source(1000), s;
        uint64_t retry = 0;

        for (unsigned i = 0; i < 500; i++)
                ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), 0);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), -EBUSY);
        for (unsigned i = 0; i < 100; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(i), T0, &retry), 0);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &a, T0, &retry), -EBUSY);

        /* A table full of busy sources refuses a new one rather than forget one. */
        RateLimitSource busy[3];
        for (unsigned i = 0; i < 3; i++) {
                busy[i] = ip_source(1000 + i);
                ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &busy[i], T0, &retry), 0);
        }
        s = ip_source(2000);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &s, T0, &retry), -EBUSY);
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &busy[0]);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, s, T0, &retry), 0);
        for (unsigned i = 1; i < 3; i++)
                ratelimit_release(rl, METHOD_CLASS_LOGIN, &busy[i]);
        for (unsigned i = 0; i < 500; i++)
                ratelimit_release(rl, METHOD_CLASS_LOGIN, &a);
}

/* A request first counted against its uid moves to the address it proved it speaks for: the uid
 * gets its token and place back, the address pays. */
TEST(move_to_address) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(4, 4, 4, 1024);
        RateLimitSource u = uid_source(1000), addr = ip_source(7), other = ip_source(8);
        RateLimitStats st;
        uint64_t retry = 0;

        /* uid burst 2: two requests, each moved to an address, leave the uid's bucket full. */
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &u, T0, &retry), 0);
        ASSERT_EQ(ratelimit_move(rl, METHOD_CLASS_LOGIN, &u, &addr, T0, &retry), 0);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &u, T0, &retry), 0);
        ASSERT_EQ(ratelimit_move(rl, METHOD_CLASS_LOGIN, &u, &other, T0, &retry), 0);
        /* The address's concurrency share (2 of 4) and the uid's are counted apart. */
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &u, T0, &retry), 0);
        ASSERT_EQ(ratelimit_acquire(rl, METHOD_CLASS_LOGIN, &u, T0, &retry), 0);
        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.in_flight[METHOD_CLASS_LOGIN], 4);
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &u);
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &u);
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &addr);
        ratelimit_release(rl, METHOD_CLASS_LOGIN, &other);

        /* The address's bucket (2 tokens) refuses a third move: nothing changes then. */
        _cleanup_(ratelimit_freep) RateLimiter *r2 = limiter(1000, 1000, 100, 1024);
        RateLimitSource v = uid_source(1001);
        _cleanup_(ratelimit_freep) RateLimiter *r3 = limiter(4, 4, 100, 1024);
        for (unsigned i = 0; i < 2; i++) {
                ASSERT_EQ(ratelimit_acquire(r3, METHOD_CLASS_LOGIN, &v, T0, &retry), 0);
                ASSERT_EQ(ratelimit_move(r3, METHOD_CLASS_LOGIN, &v, &addr, T0, &retry), 0);
                ratelimit_release(r3, METHOD_CLASS_LOGIN, &addr);
        }
        ASSERT_EQ(ratelimit_acquire(r3, METHOD_CLASS_LOGIN, &v, T0, &retry), 0);
        ASSERT_EQ(ratelimit_move(r3, METHOD_CLASS_LOGIN, &v, &addr, T0, &retry), -EAGAIN);
        ASSERT_TRUE(retry > 0);
        ratelimit_release(r3, METHOD_CLASS_LOGIN, &v);
        /* Same key: nothing to do. */
        ASSERT_EQ(ratelimit_acquire(r2, METHOD_CLASS_LOGIN, &v, T0, &retry), 0);
        ASSERT_EQ(ratelimit_move(r2, METHOD_CLASS_LOGIN, &v, &v, T0, &retry), 0);
        ratelimit_release(r2, METHOD_CLASS_LOGIN, &v);
}

TEST(classes_are_independent) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(2, 2, 100, 1024);
        uint64_t retry;

        for (unsigned i = 0; i < 2; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(i), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(9), T0, &retry), -EAGAIN);
        /* The same source in another class has its own buckets. */
        for (unsigned i = 0; i < 100; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_DEFAULT, ip_source(i), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_REGISTRATION, ip_source(0), T0, &retry), 0);
}

TEST(clock_going_back_adds_nothing) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(1, 1, 100, 1024);
        uint64_t retry;

        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(1), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(2), T0 - 10 * SEC, &retry), -EAGAIN);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(3), T0 + SEC / 2, &retry), -EAGAIN);
        ASSERT_EQ(retry, SEC / 2);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(4), T0 + SEC, &retry), 0);
}

TEST(source_table_is_bounded_lru) {
        _cleanup_(ratelimit_freep) RateLimiter *rl = limiter(1000000, 1000000, 100, 64);
        RateLimitSource busy = uid_source(4242);
        RateLimitStats st;
        uint64_t retry;

        /* A source that has used its whole share (burst 500000)... */
        for (unsigned i = 0; i < 500000; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, busy, T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, busy, T0, &retry), -EAGAIN);

        /* ...stays in the table while it is used, however many other sources come and go. */
        for (unsigned i = 0; i < 100000; i++) {
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(i), T0, &retry), 0);
                if (i % 32 == 0)
                        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, busy, T0, &retry), -EAGAIN);
                ratelimit_stats(rl, &st);
                ASSERT_TRUE(st.sources <= 64);
        }
        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.sources, 64);
        ASSERT_EQ(st.max_sources, 64);
        ASSERT_TRUE(st.evicted >= 100000 - 64);

        /* Unused for 64 new sources: evicted, so it starts again with a full bucket. */
        for (unsigned i = 200000; i < 200064; i++)
                ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, ip_source(i), T0, &retry), 0);
        ASSERT_EQ(hit(rl, METHOD_CLASS_LOGIN, busy, T0, &retry), 0);

        /* A table of one works too. */
        ratelimit_free(TAKE_PTR(rl));
        rl = limiter(10, 10, 100, 1);
        for (unsigned i = 0; i < 1000; i++)
                (void) hit(rl, METHOD_CLASS_LOGIN, ip_source(i), T0 + i * SEC, &retry);
        ratelimit_stats(rl, &st);
        ASSERT_EQ(st.sources, 1);
        ASSERT_EQ(st.evicted, 999);
}

TEST(source_keys) {
        RateLimitSource s;
        char long_name[300];

        ratelimit_source_init(&s, 1000, false, NULL);
        ASSERT_STREQ(s.key, "uid:1000");
        ratelimit_source_init(&s, 1000, false, "192.0.2.1");
        ASSERT_STREQ(s.key, "uid:1000");
        ratelimit_source_init(&s, 0, true, NULL);
        ASSERT_STREQ(s.key, "uid:0");
        ratelimit_source_init(&s, 0, true, "");
        ASSERT_STREQ(s.key, "uid:0");
        ratelimit_source_init(&s, 0, true, "192.0.2.1");
        ASSERT_STREQ(s.key, "ip:192.0.2.1");
        ratelimit_source_init(&s, 0, true, "::ffff:192.0.2.1");
        ASSERT_STREQ(s.key, "ip:192.0.2.1");
        /* IPv6 by /64 */
        ratelimit_source_init(&s, 0, true, "2001:db8:1:2::1");
        ASSERT_STREQ(s.key, "ip6:2001:db8:1:2::/64");
        ratelimit_source_init(&s, 0, true, "2001:DB8:1:2:ffff:eeee:dddd:cccc");
        ASSERT_STREQ(s.key, "ip6:2001:db8:1:2::/64");
        ratelimit_source_init(&s, 0, true, "2001:db8:1:3::1");
        ASSERT_STREQ(s.key, "ip6:2001:db8:1:3::/64");
        /* host names (PAM rhost), case-insensitive; long ones hashed to a fixed size */
        ratelimit_source_init(&s, 0, true, "Client.Example.NET");
        ASSERT_STREQ(s.key, "host:client.example.net");
        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = 0;
        ratelimit_source_init(&s, 0, true, long_name);
        ASSERT_TRUE(strncmp(s.key, "host#", 5) == 0);
        ASSERT_EQ(strlen(s.key), 5 + 16);
        long_name[0] = 'A';
        RateLimitSource t;
        ratelimit_source_init(&t, 0, true, long_name);
        ASSERT_STREQ(s.key, t.key);
        long_name[1] = 'b';
        ratelimit_source_init(&t, 0, true, long_name);
        ASSERT_FALSE(streq(s.key, t.key));
}

TEST(retry_after_seconds) {
        ASSERT_EQ(ratelimit_retry_after_sec(0), 1);
        ASSERT_EQ(ratelimit_retry_after_sec(1), 1);
        ASSERT_EQ(ratelimit_retry_after_sec(SEC), 1);
        ASSERT_EQ(ratelimit_retry_after_sec(SEC + 1), 2);
        ASSERT_EQ(ratelimit_retry_after_sec(600 * SEC), 600);
}

int main(void) {
        RUN(new_rejects_bad_settings);
        RUN(global_bucket);
        RUN(flood_stays_within_rate_times_time_plus_burst);
        RUN(source_bucket_is_half_the_class);
        RUN(noisy_source_cannot_starve_others);
        RUN(unprivileged_address_is_ignored);
        RUN(refusal_takes_nothing);
        RUN(concurrency_cap);
        RUN(per_source_concurrency);
        RUN(busy_sources_not_evicted);
        RUN(move_to_address);
        RUN(classes_are_independent);
        RUN(clock_going_back_adds_nothing);
        RUN(source_table_is_bounded_lru);
        RUN(source_keys);
        RUN(retry_after_seconds);
        return 0;
}
