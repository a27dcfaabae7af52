/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of idmd/lockout.c with injected time: locking after deny failures within
 * fail_interval (a sliding window), doubling on repeat lockouts up to max_unlock_time and the
 * end of a run of repeats, no counting while locked, deny = 0 and 1, the record format, expiry,
 * and the store helpers (failure counting, clearing, keys, the incremental sweep) on a real
 * store in a temporary directory. Hours of lockouts run in microseconds.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idmd/lockout.h"
#include "tests.h"

#define SEC UINT64_C(1000000)
#define MIN (60 * SEC)
#define T0 (UINT64_C(1700000000) * SEC)        /* a realtime instant */

static const LockoutPolicy policy = {
        .deny = 5,
        .fail_interval_usec = 900 * SEC,
        .unlock_time_usec = 600 * SEC,
        .max_unlock_time_usec = 3600 * SEC,
};

/* n failures one second apart from start; returns the time of the last one. The last one must
 * lock (and only it) when expect_lock. */
static uint64_t fail_n(LockoutState *s, const LockoutPolicy *p, uint64_t start, unsigned n, bool expect_lock) {
        uint64_t t = start;

        for (unsigned i = 0; i < n; i++) {
                t = start + i * SEC;
                int r = lockout_record_failure(s, p, t);
                ASSERT_OK(r);
                ASSERT_EQ(r, expect_lock && i == n - 1);
        }
        return t;
}

static uint64_t remaining(const LockoutState *s, uint64_t now) {
        uint64_t left = 0;

        ASSERT_TRUE(lockout_is_locked(s, now, &left));
        return left;
}

TEST(locks_after_deny_failures) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        uint64_t t;

        t = fail_n(&s, &policy, T0, 4, false);
        ASSERT_FALSE(lockout_is_locked(&s, t, NULL));
        ASSERT_EQ(lockout_failures(&s, &policy, t), 4);
        ASSERT_EQ(lockout_record_failure(&s, &policy, t + SEC), 1);
        t += SEC;
        ASSERT_EQ(remaining(&s, t), 600 * SEC);
        ASSERT_EQ(remaining(&s, t + 599 * SEC), SEC);
        ASSERT_FALSE(lockout_is_locked(&s, t + 600 * SEC, NULL));
        ASSERT_EQ(s.lock_count, 1);
        ASSERT_EQ(lockout_failures(&s, &policy, t), 0);         /* cleared by the lock */

        /* While locked nothing is counted and the lock does not grow. */
        for (unsigned i = 0; i < 100; i++)
                ASSERT_EQ(lockout_record_failure(&s, &policy, t + i * SEC), 0);
        ASSERT_EQ(remaining(&s, t), 600 * SEC);
        ASSERT_EQ(lockout_failures(&s, &policy, t + 100 * SEC), 0);
        ASSERT_EQ(s.lock_count, 1);
}

TEST(repeat_lockouts_double_up_to_the_cap) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        static const uint64_t expected[] = { 600, 1200, 2400, 3600, 3600, 3600 };
        uint64_t t = T0;

        for (size_t i = 0; i < ELEMENTSOF(expected); i++) {
                ASSERT_EQ(lockout_next_duration(&s, &policy, t), expected[i] * SEC);
                t = fail_n(&s, &policy, t, 5, true);
                ASSERT_EQ(remaining(&s, t), expected[i] * SEC);
                ASSERT_EQ(s.lock_count, i + 1);
                ASSERT_EQ(lockout_lock_count(&s, &policy, t), i + 1);
                /* come back just as the lock ends */
                t += expected[i] * SEC;
                ASSERT_FALSE(lockout_is_locked(&s, t, NULL));
        }

        /* A quiet spell of max_unlock_time after a lock ends the run of repeats. */
        ASSERT_EQ(lockout_lock_count(&s, &policy, t + 3600 * SEC - 1), ELEMENTSOF(expected));
        t += 3600 * SEC;
        ASSERT_EQ(lockout_lock_count(&s, &policy, t), 0);
        ASSERT_EQ(lockout_next_duration(&s, &policy, t), 600 * SEC);
        t = fail_n(&s, &policy, t, 5, true);
        ASSERT_EQ(remaining(&s, t), 600 * SEC);
        ASSERT_EQ(s.lock_count, 1);

        /* Just under it still counts as a repeat. */
        t += 600 * SEC + 3600 * SEC - 10 * SEC;
        t = fail_n(&s, &policy, t, 5, true);
        ASSERT_EQ(remaining(&s, t), 1200 * SEC);
}

TEST(doubling_saturates) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        LockoutPolicy p = policy;
        uint64_t t = T0;

        /* A huge cap and many repeats: no overflow. */
        p.max_unlock_time_usec = UINT64_MAX / 4;
        p.deny = 1;
        for (unsigned i = 0; i < 200; i++) {
                ASSERT_EQ(lockout_record_failure(&s, &p, t), 1);
                ASSERT_TRUE(s.locked_until_usec > t);
                ASSERT_TRUE(lockout_next_duration(&s, &p, t) <= p.max_unlock_time_usec);
                t = s.locked_until_usec;
                if (t > UINT64_MAX / 2)
                        break;
        }
}

TEST(sliding_window) {
        _cleanup_(lockout_state_done) LockoutState s = {};

        /* 0, 800, 850, 890 s: four; at 950 s the first has left the 900 s window: still four. */
        ASSERT_EQ(lockout_record_failure(&s, &policy, T0), 0);
        ASSERT_EQ(lockout_record_failure(&s, &policy, T0 + 800 * SEC), 0);
        ASSERT_EQ(lockout_record_failure(&s, &policy, T0 + 850 * SEC), 0);
        ASSERT_EQ(lockout_record_failure(&s, &policy, T0 + 890 * SEC), 0);
        ASSERT_EQ(lockout_failures(&s, &policy, T0 + 899 * SEC), 4);
        ASSERT_EQ(lockout_failures(&s, &policy, T0 + 900 * SEC), 3);
        ASSERT_EQ(lockout_record_failure(&s, &policy, T0 + 950 * SEC), 0);
        ASSERT_EQ(lockout_failures(&s, &policy, T0 + 950 * SEC), 4);
        ASSERT_TRUE(s.n_failures <= policy.deny);
        /* the fifth within 900 s of the second */
        ASSERT_EQ(lockout_record_failure(&s, &policy, T0 + 960 * SEC), 1);
        ASSERT_EQ(remaining(&s, T0 + 960 * SEC), 600 * SEC);
}

TEST(interval_expiry) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        uint64_t t;

        t = fail_n(&s, &policy, T0, 4, false);
        /* 15 minutes later the old failures are forgotten. */
        t += 900 * SEC;
        ASSERT_EQ(lockout_failures(&s, &policy, t), 0);
        ASSERT_TRUE(lockout_is_expired(&s, &policy, t));
        t = fail_n(&s, &policy, t, 4, false);
        ASSERT_FALSE(lockout_is_locked(&s, t, NULL));
        ASSERT_EQ(lockout_failures(&s, &policy, t), 4);
        ASSERT_EQ(s.n_failures, 4);             /* the stale ones were dropped */
}

TEST(deny_zero_and_one) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        LockoutPolicy p = policy;

        p.deny = 0;
        for (unsigned i = 0; i < 1000; i++)
                ASSERT_EQ(lockout_record_failure(&s, &p, T0 + i), 0);
        ASSERT_EQ(s.n_failures, 0);
        ASSERT_FALSE(lockout_is_locked(&s, T0 + 1000, NULL));

        p.deny = 1;
        ASSERT_EQ(lockout_record_failure(&s, &p, T0), 1);
        ASSERT_EQ(remaining(&s, T0), 600 * SEC);
}

TEST(smaller_deny_after_restart) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        LockoutPolicy p = policy;

        /* Nine failures under deny = 10, then the operator lowers deny to 3: the next locks. */
        p.deny = 10;
        fail_n(&s, &p, T0, 9, false);
        ASSERT_EQ(s.n_failures, 9);
        p.deny = 3;
        ASSERT_EQ(lockout_record_failure(&s, &p, T0 + 10 * SEC), 1);
        ASSERT_EQ(s.n_failures, 0);
}

TEST(expiry) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        uint64_t t;

        ASSERT_TRUE(lockout_is_expired(&s, &policy, T0));
        t = fail_n(&s, &policy, T0, 1, false);
        ASSERT_FALSE(lockout_is_expired(&s, &policy, t));
        ASSERT_TRUE(lockout_is_expired(&s, &policy, t + 900 * SEC));

        t = fail_n(&s, &policy, t + 900 * SEC, 5, true);
        ASSERT_FALSE(lockout_is_expired(&s, &policy, t));
        ASSERT_FALSE(lockout_is_expired(&s, &policy, t + 600 * SEC));   /* a repeat would still double */
        ASSERT_FALSE(lockout_is_expired(&s, &policy, t + 600 * SEC + 3600 * SEC - 1));
        ASSERT_TRUE(lockout_is_expired(&s, &policy, t + 600 * SEC + 3600 * SEC));
}

TEST(json_round_trip) {
        _cleanup_(lockout_state_done) LockoutState s = {}, back = {};
        _cleanup_(json_decrefp) json_t *rec = NULL, *bad = NULL, *array = json_array();
        uint64_t t;

        t = fail_n(&s, &policy, T0, 5, true);
        t = fail_n(&s, &policy, t + 600 * SEC, 3, false);
        rec = lockout_state_to_json(&s);
        ASSERT_TRUE(rec);
        ASSERT_EQ(json_array_size(json_object_get(rec, "failures")), 3);
        ASSERT_OK(lockout_state_from_json(rec, &back));
        ASSERT_EQ(back.n_failures, 3);
        for (size_t i = 0; i < 3; i++)
                ASSERT_EQ(back.failures[i], s.failures[i]);
        ASSERT_EQ(back.locked_until_usec, s.locked_until_usec);
        ASSERT_EQ(back.lock_count, 1);

        /* Junk reads as zero values; not an object is -EINVAL. */
        lockout_state_done(&back);
        bad = json_pack("{s:[s, I, I], s:i, s:s}", "failures", "x", (json_int_t) -1, (json_int_t) T0, "lockedUntil",
                        -5, "lockCount", "y");
        ASSERT_TRUE(bad);
        ASSERT_OK(lockout_state_from_json(bad, &back));
        ASSERT_EQ(back.n_failures, 1);
        ASSERT_EQ(back.failures[0], T0);
        ASSERT_EQ(back.locked_until_usec, 0);
        ASSERT_EQ(back.lock_count, 0);
        ASSERT_EQ(lockout_state_from_json(array, &back), -EINVAL);
}

TEST(keys) {
        _cleanup_free_ char *k = NULL;
        char long_email[600];

        ASSERT_OK(lockout_key("123456789", "Alice@Example.COM", &k));
        ASSERT_STREQ(k, "123456789:alice@example.com");
        free(TAKE_PTR(k));
        /* Anything a caller types is counted, valid e-mail or not. */
        ASSERT_OK(lockout_key("123456789", "not an e-mail", &k));
        ASSERT_STREQ(k, "123456789:not an e-mail");
        memset(long_email, 'a', sizeof(long_email) - 1);
        long_email[sizeof(long_email) - 1] = 0;
        ASSERT_EQ(lockout_key("123456789", long_email, &k), -E2BIG);
}

/* --- store helpers --- */

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

typedef struct StoreFixture {
        char dir[64];
        Store *store;
} StoreFixture;

static void fixture_open(StoreFixture *f) {
        (void) snprintf(f->dir, sizeof(f->dir), "/tmp/test-lockout-XXXXXX");
        ASSERT_TRUE(mkdtemp(f->dir));
        ASSERT_OK(store_open(f->dir, NULL, &f->store, NULL));
}

static void fixture_close(StoreFixture *f) {
        f->store = store_free(f->store);
        ASSERT_EQ(nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

typedef struct Work {
        const LockoutPolicy *policy;
        const char *key;
        uint64_t now;
        int result;
} Work;

static int failure_fn(StoreTxn *t, void *userdata) {
        Work *w = userdata;

        w->result = lockout_note_failure(t, w->policy, w->key, w->now);
        return w->result;
}

static int clear_fn(StoreTxn *t, void *userdata) {
        return lockout_clear(t, userdata);
}

static int note_failure(Store *s, const LockoutPolicy *p, const char *key, uint64_t now) {
        Work w = { .policy = p, .key = key, .now = now };

        return store_transact(s, failure_fn, &w);
}

static bool stored_locked(Store *s, const char *key, uint64_t now, uint64_t *left) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(lockout_state_done) LockoutState st = {};

        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(lockout_get(t, key, &st));
        return lockout_is_locked(&st, now, left);
}

static uint64_t count_records(Store *s) {
        StoreStats st;

        ASSERT_OK(store_stats(s, &st));
        return st.entries[STORE_LOCKOUTS];
}

TEST(store_lock_and_clear) {
        StoreFixture f = {};
        uint64_t left = 0;

        fixture_open(&f);
        for (unsigned i = 0; i < 4; i++)
                ASSERT_EQ(note_failure(f.store, &policy, "1:alice@example.com", T0 + i * SEC), 0);
        ASSERT_FALSE(stored_locked(f.store, "1:alice@example.com", T0 + 4 * SEC, NULL));
        ASSERT_EQ(note_failure(f.store, &policy, "1:alice@example.com", T0 + 4 * SEC), 1);
        ASSERT_TRUE(stored_locked(f.store, "1:alice@example.com", T0 + 4 * SEC, &left));
        ASSERT_EQ(left, 600 * SEC);
        /* Per (publisher, e-mail): nobody else is locked. */
        ASSERT_FALSE(stored_locked(f.store, "1:bob@example.com", T0 + 4 * SEC, NULL));
        ASSERT_FALSE(stored_locked(f.store, "2:alice@example.com", T0 + 4 * SEC, NULL));

        /* It survives closing and reopening the store. */
        f.store = store_free(f.store);
        ASSERT_OK(store_open(f.dir, NULL, &f.store, NULL));
        ASSERT_TRUE(stored_locked(f.store, "1:alice@example.com", T0 + 5 * SEC, &left));
        ASSERT_EQ(left, 599 * SEC);

        /* Cleared (unlockCustomer, a successful login or password reset). */
        ASSERT_EQ(store_transact(f.store, clear_fn, (void *) "1:alice@example.com"), 1);
        ASSERT_FALSE(stored_locked(f.store, "1:alice@example.com", T0 + 5 * SEC, NULL));
        ASSERT_EQ(store_transact(f.store, clear_fn, (void *) "1:alice@example.com"), 0);
        ASSERT_EQ(count_records(f.store), 0);
        fixture_close(&f);
}

TEST(store_sweep_keeps_records_bounded) {
        StoreFixture f = {};
        char key[64];
        uint64_t t = T0;

        fixture_open(&f);
        /* 300 different unknown e-mails fail once each... */
        for (unsigned i = 0; i < 300; i++) {
                (void) snprintf(key, sizeof(key), "1:guess%04u@example.com", i);
                ASSERT_EQ(note_failure(f.store, &policy, key, t + i * SEC / 100), 0);
        }
        ASSERT_EQ(count_records(f.store), 300);

        /* ...and a locked account: its record must survive every sweep while it means something. */
        for (unsigned i = 0; i < 5; i++)
                ASSERT_OK(note_failure(f.store, &policy, "1:victim@example.com", t + 10 * SEC));
        ASSERT_TRUE(stored_locked(f.store, "1:victim@example.com", t + 10 * SEC, NULL));

        /* An hour later those failures mean nothing: every new failure sweeps 8 old records. */
        t += 3600 * SEC;
        for (unsigned i = 0; i < 100; i++) {
                (void) snprintf(key, sizeof(key), "1:later%04u@example.com", i);
                ASSERT_EQ(note_failure(f.store, &policy, key, t + i * SEC / 100), 0);
        }
        /* 300 old, 100 new, 100 * 8 looked at (wrapping around): the old ones are gone. */
        fprintf(stderr, "records after sweeping: %llu\n", (unsigned long long) count_records(f.store));
        ASSERT_TRUE(count_records(f.store) <= 100 + 1);
        /* The victim's lock ended at +610 s, but a repeat within an hour of that would double:
         * kept until then. */
        {
                _cleanup_(store_txn_freep) StoreTxn *txn = NULL;
                ASSERT_OK(store_read(f.store, &txn));
                ASSERT_TRUE(store_exists(txn, STORE_LOCKOUTS, "1:victim@example.com"));
        }
        t += 3600 * SEC;
        for (unsigned i = 0; i < 120; i++) {
                (void) snprintf(key, sizeof(key), "1:third%04u@example.com", i);
                ASSERT_EQ(note_failure(f.store, &policy, key, t + i * SEC / 100), 0);
        }
        ASSERT_TRUE(count_records(f.store) <= 120);
        {
                _cleanup_(store_txn_freep) StoreTxn *txn = NULL;
                ASSERT_OK(store_read(f.store, &txn));
                ASSERT_FALSE(store_exists(txn, STORE_LOCKOUTS, "1:victim@example.com"));
        }
        fixture_close(&f);
}

int main(void) {
        RUN(locks_after_deny_failures);
        RUN(repeat_lockouts_double_up_to_the_cap);
        RUN(doubling_saturates);
        RUN(sliding_window);
        RUN(interval_expiry);
        RUN(deny_zero_and_one);
        RUN(smaller_deny_after_restart);
        RUN(expiry);
        RUN(json_round_trip);
        RUN(keys);
        RUN(store_lock_and_clear);
        RUN(store_sweep_keeps_records_bounded);
        return 0;
}
