/* SPDX-License-Identifier: MIT */
/*
 * Account lockout after failed logins: the state transitions (pure, time passed in), the record
 * format of STORE_LOCKOUTS, and the few store helpers the login path and unlockCustomer use.
 * Logs nothing: the callers log once.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "lockout.h"
#include "validate.h"

#define SWEEP_CURSOR_KEY "lockoutSweepCursor"

LockoutPolicy lockout_policy_from_config(const Config *c) {
        assert(c);

        return (LockoutPolicy) {
                .deny = c->lockout_deny,
                .fail_interval_usec = c->lockout_fail_interval_usec,
                .unlock_time_usec = c->lockout_unlock_time_usec,
                .max_unlock_time_usec = c->lockout_max_unlock_time_usec,
        };
}

void lockout_state_done(LockoutState *s) {
        if (!s)
                return;
        free(s->failures);
        *s = LOCKOUT_STATE_NULL;
}

bool lockout_is_locked(const LockoutState *s, uint64_t now_usec, uint64_t *ret_remaining_usec) {
        assert(s);

        if (s->locked_until_usec <= now_usec)
                return false;
        if (ret_remaining_usec)
                *ret_remaining_usec = s->locked_until_usec - now_usec;
        return true;
}

static bool failure_counts(uint64_t t, const LockoutPolicy *p, uint64_t now_usec) {
        /* A failure "in the future" (the clock went back) still counts: it happened. */
        return t >= now_usec || now_usec - t < p->fail_interval_usec;
}

size_t lockout_failures(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec) {
        size_t n = 0;

        assert(s);
        assert(p);

        for (size_t i = 0; i < s->n_failures; i++)
                if (failure_counts(s->failures[i], p, now_usec))
                        n++;
        return n;
}

/* The next lockout continues the current run of repeats if it starts less than max_unlock_time
 * after the last one ended. */
static bool next_lock_is_repeat(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec) {
        if (s->lock_count == 0 || s->locked_until_usec == 0)
                return false;
        return now_usec < s->locked_until_usec || now_usec - s->locked_until_usec < p->max_unlock_time_usec;
}

unsigned lockout_lock_count(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec) {
        assert(s);
        assert(p);

        return next_lock_is_repeat(s, p, now_usec) ? s->lock_count : 0;
}

uint64_t lockout_next_duration(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec) {
        uint64_t d = p->unlock_time_usec;
        unsigned previous = next_lock_is_repeat(s, p, now_usec) ? s->lock_count : 0;

        assert(s);
        assert(p);

        for (unsigned i = 0; i < previous && d < p->max_unlock_time_usec; i++)
                d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
        return d < p->max_unlock_time_usec ? d : p->max_unlock_time_usec;
}

int lockout_record_failure(LockoutState *s, const LockoutPolicy *p, uint64_t now_usec) {
        size_t n = 0;

        assert(s);
        assert(p);

        if (p->deny == 0 || lockout_is_locked(s, now_usec, NULL))
                return 0;

        /* Keep the failures that still count, the newest deny - 1 of them at most. */
        for (size_t i = 0; i < s->n_failures; i++)
                if (failure_counts(s->failures[i], p, now_usec))
                        s->failures[n++] = s->failures[i];
        if (n >= p->deny) {
                memmove(s->failures, s->failures + (n - (p->deny - 1)), (p->deny - 1) * sizeof(uint64_t));
                n = p->deny - 1;
        }
        s->n_failures = n;

        if (n + 1 < p->deny) {
                uint64_t *f = realloc(s->failures, (n + 1) * sizeof(uint64_t));
                if (!f)
                        return -ENOMEM;
                s->failures = f;
                s->failures[s->n_failures++] = now_usec;
                return 0;
        }

        /* The deny-th failure within fail_interval: lock. */
        uint64_t d = lockout_next_duration(s, p, now_usec);
        s->lock_count = next_lock_is_repeat(s, p, now_usec) ? s->lock_count + 1 : 1;
        s->locked_until_usec = d > UINT64_MAX - now_usec ? UINT64_MAX : now_usec + d;
        free(s->failures);
        s->failures = NULL;
        s->n_failures = 0;
        return 1;
}

bool lockout_is_expired(const LockoutState *s, const LockoutPolicy *p, uint64_t now_usec) {
        assert(s);
        assert(p);

        return !lockout_is_locked(s, now_usec, NULL) && lockout_failures(s, p, now_usec) == 0 &&
               !next_lock_is_repeat(s, p, now_usec);
}

static uint64_t json_u64(json_t *v) {
        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
}

int lockout_state_from_json(json_t *rec, LockoutState *ret) {
        LockoutState s = {};
        json_t *failures, *v;
        size_t i;

        assert(ret);

        if (!json_is_object(rec))
                return -EINVAL;
        failures = json_object_get(rec, "failures");
        if (json_array_size(failures) > 0) {
                s.failures = calloc(json_array_size(failures), sizeof(uint64_t));
                if (!s.failures)
                        return -ENOMEM;
                json_array_foreach(failures, i, v)
                        if (json_u64(v) > 0)
                                s.failures[s.n_failures++] = json_u64(v);
        }
        s.locked_until_usec = json_u64(json_object_get(rec, "lockedUntil"));
        v = json_object_get(rec, "lockCount");
        s.lock_count = json_u64(v) > UINT32_MAX ? UINT32_MAX : (unsigned) json_u64(v);

        *ret = s;
        return 0;
}

json_t *lockout_state_to_json(const LockoutState *s) {
        json_t *failures = json_array();

        assert(s);

        if (!failures)
                return NULL;
        for (size_t i = 0; i < s->n_failures; i++)
                if (json_array_append_new(failures, json_integer((json_int_t) s->failures[i])) < 0) {
                        json_decref(failures);
                        return NULL;
                }
        return json_pack("{s:o, s:I, s:I}", "failures", failures,
                         "lockedUntil", (json_int_t) s->locked_until_usec,
                         "lockCount", (json_int_t) s->lock_count);
}

/* --- store --- */

int lockout_key(const char *publisher_id, const char *email, char **ret) {
        _cleanup_free_ char *lower = NULL;
        char *key;

        assert(publisher_id);
        assert(email);
        assert(ret);

        lower = email_normalize(email);
        if (!lower)
                return -ENOMEM;
        if (asprintf(&key, "%s:%s", publisher_id, lower) < 0)
                return -ENOMEM;
        if (strlen(key) > STORE_KEY_MAX) {
                free(key);
                return -E2BIG;
        }
        *ret = key;
        return 0;
}

int lockout_get(StoreTxn *t, const char *key, LockoutState *ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        assert(ret);

        r = store_get(t, STORE_LOCKOUTS, key, &rec);
        if (r == -ENOENT) {
                *ret = LOCKOUT_STATE_NULL;
                return 0;
        }
        if (r < 0)
                return r;
        r = lockout_state_from_json(rec, ret);
        return r < 0 ? r : 1;
}

int lockout_note_failure(StoreTxn *t, const LockoutPolicy *p, const char *key, uint64_t now_usec) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int locked, r;

        r = lockout_get(t, key, &s);
        if (r < 0)
                return r;
        locked = lockout_record_failure(&s, p, now_usec);
        if (locked < 0)
                return locked;
        rec = lockout_state_to_json(&s);
        if (!rec)
                return -ENOMEM;
        r = store_put(t, STORE_LOCKOUTS, key, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        r = lockout_sweep(t, p, now_usec, LOCKOUT_SWEEP_PER_FAILURE);
        if (r < 0)
                return r;
        return locked;
}

int lockout_clear(StoreTxn *t, const char *key) {
        int r = store_del(t, STORE_LOCKOUTS, key);

        if (r == -ENOENT)
                return 0;
        return r < 0 ? r : 1;
}

typedef struct Sweep {
        StoreTxn *txn;
        const LockoutPolicy *policy;
        uint64_t now_usec;
        unsigned max, visited, deleted;
        char *last;             /* the last key looked at */
        int error;
} Sweep;

static int sweep_one(const char *key, json_t *value, void *userdata) {
        Sweep *w = userdata;
        _cleanup_(lockout_state_done) LockoutState s = {};
        char *copy;
        int r;

        copy = strdup(key);
        if (!copy)
                return -ENOMEM;
        free(w->last);
        w->last = copy;
        w->visited++;

        /* An unreadable record is left alone (the store already logged the decoding problem). */
        if (lockout_state_from_json(value, &s) >= 0 && lockout_is_expired(&s, w->policy, w->now_usec)) {
                r = store_del(w->txn, STORE_LOCKOUTS, key);
                if (r < 0 && r != -ENOENT)
                        return r;
                w->deleted++;
        }
        return w->visited >= w->max ? 1 : 0;
}

int lockout_sweep(StoreTxn *t, const LockoutPolicy *p, uint64_t now_usec, unsigned max) {
        _cleanup_(json_decrefp) json_t *cursor = NULL, *next = NULL;
        Sweep w = { .txn = t, .policy = p, .now_usec = now_usec, .max = max };
        const char *after = NULL;
        int r;

        if (max == 0)
                return 0;

        r = store_get(t, STORE_META, SWEEP_CURSOR_KEY, &cursor);
        if (r < 0 && r != -ENOENT)
                return r;
        after = json_object_get_string(cursor, "after");

        r = store_foreach(t, STORE_LOCKOUTS, NULL, after, sweep_one, &w);
        if (r < 0) {
                free(w.last);
                return r;
        }
        /* Stopped early: go on after the last key next time. Reached the end: start over. */
        if (r > 0) {
                next = json_pack("{s:s}", "after", w.last);
                free(w.last);
                if (!next)
                        return -ENOMEM;
                r = store_put(t, STORE_META, SWEEP_CURSOR_KEY, next, STORE_PUT_DEFAULT);
        } else {
                free(w.last);
                r = after ? store_del(t, STORE_META, SWEEP_CURSOR_KEY) : 0;
        }
        if (r < 0 && r != -ENOENT)
                return r;
        return (int) w.deleted;
}
