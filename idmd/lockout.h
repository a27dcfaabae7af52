/* SPDX-License-Identifier: MIT */
/*
 * Lockout of accounts after failed logins (docs/ratelimits.md).
 *
 * One LockoutState per (publisher, lower-cased e-mail), for known and unknown e-mails alike, so
 * a lockout tells nothing about whether an account exists. The state transitions are pure
 * functions of the state, the policy and the time passed in (realtime microseconds, as the
 * state is kept across restarts); the store helpers below read and write the state as a record
 * of STORE_LOCKOUTS (docs/store.md, "Lockouts").
 *
 * Rules:
 *   - A failure is counted when a password is wrong or the account unknown. Failures older than
 *     fail_interval no longer count (a sliding window).
 *   - When `deny` failures fall within fail_interval, the account is locked for unlock_time,
 *     doubled for each repeat lockout, at most max_unlock_time. A lockout is a repeat when it
 *     starts less than max_unlock_time after the previous one ended. The failures are cleared.
 *   - While locked, logins are refused before any hashing and are not counted as failures
 *     (the lock does not grow by being hammered; the rate limiter bounds the hammering).
 *   - A successful login, unlockCustomer and a successful password reset clear everything.
 *   - deny = 0 turns lockout off: nothing is recorded.
 *   - A record with no lock, no failure within fail_interval and no lockout that could still
 *     count as a repeat is expired: it means the same as no record and is swept.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"
#include "store.h"

typedef struct LockoutPolicy {
        unsigned deny;                  /* failures that lock; 0: lockout off */
        uint64_t fail_interval_usec;
        uint64_t unlock_time_usec;
        uint64_t max_unlock_time_usec;
} LockoutPolicy;

typedef struct LockoutState {
        uint64_t *failures;             /* times of the failures in the window, oldest first */
        size_t n_failures;              /* <= the policy's deny */
        uint64_t locked_until_usec;     /* end of the last lock (in the past once it is over); 0: never */
        unsigned lock_count;            /* lockouts in the current run of repeats */
} LockoutState;

#define LOCKOUT_STATE_NULL ((LockoutState) {})

LockoutPolicy lockout_policy_from_config(const Config *c);

/* Frees what the state owns and resets it to LOCKOUT_STATE_NULL. */
void lockout_state_done(LockoutState *s);

/* True if locked at now_usec; then *ret_remaining_usec (if not NULL) is the time left (> 0). */
bool lockout_is_locked(const LockoutState *s, uint64_t now_usec, uint64_t *ret_remaining_usec);

/* Records a failed login at now_usec. Returns 1 if this failure locked the account, 0 if not
 * (also when it was locked already, or the policy's deny is 0: nothing changes then), -ENOMEM. */
int lockout_record_failure(LockoutState *s, const LockoutPolicy *p, uint64_t now_usec);

/* The failures that still count at now_usec (within fail_interval, and not while locked). */
size_t lockout_failures(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec);

/* The lockouts in the current run of repeats at now_usec: 0 once a lock starting now would be
 * a first one again. */
unsigned lockout_lock_count(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec);

/* How long the next lockout would last at now_usec. */
uint64_t lockout_next_duration(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec);

/* True if the state means nothing any more at now_usec (see the rules above). */
bool lockout_is_expired(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec);

/* The record <-> the state. A missing or malformed field reads as its zero value; extra fields
 * are ignored. lockout_state_from_json: -ENOMEM, -EINVAL if rec is not an object.
 * lockout_state_to_json: a new object, NULL on OOM. */
int lockout_state_from_json(json_t *rec, LockoutState *ret);
json_t *lockout_state_to_json(const LockoutState *s);

/* --- store helpers (STORE_LOCKOUTS) --- */

/* "<publisherId>:<lower-cased e-mail>", the key of STORE_LOCKOUTS (the same as the customers'
 * e-mail index). The e-mail need not be valid: anything a caller tries is counted. -ENOMEM;
 * -E2BIG if the key would be longer than STORE_KEY_MAX. */
int lockout_key(const char *publisher_id, const char *email, char **ret);

/* The state stored under key: 1, or LOCKOUT_STATE_NULL and 0 if there is none. Store errors. */
int lockout_get(StoreTxn *t, const char *key, LockoutState *ret);

/* Inside a unit of work: records a failure under key (see lockout_record_failure(); returns
 * its 0/1) and sweeps a few expired records (lockout_sweep()). Store errors. */
int lockout_note_failure(StoreTxn *t, const LockoutPolicy *p, const char *key, uint64_t now_usec);

/* Inside a unit of work: removes the record under key. 0 if there was none, 1 if there was. */
int lockout_clear(StoreTxn *t, const char *key);

/* Inside a unit of work: looks at up to max records after the sweep cursor (kept in STORE_META
 * as "lockoutSweepCursor", wrapping around at the end) and deletes the expired ones. Each
 * failure sweeps more records than it can create, so expired records stay few. Returns how
 * many were deleted, or a store error. */
int lockout_sweep(StoreTxn *t, const LockoutPolicy *p, uint64_t now_usec, unsigned max);

#define LOCKOUT_SWEEP_PER_FAILURE 8u
