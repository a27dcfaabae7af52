/* SPDX-License-Identifier: MIT */
/*
 * Account lockout where it meets calls: the check before a login hashes anything, counting
 * failures and clearing them after a success (for customers_login()), and the publisher
 * methods unlockCustomer and getCustomerLockout (publisher or admin).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "lockout.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/customers.h"
#include "methods/lockouts.h"
#include "methods/methods.h"
#include "records/customers.h"
#include "ratelimit.h"



/* --- the login path --- */

int lockouts_key(Call *call, const char *publisher_id, const char *email, char **ret) {
        Manager *m = call_manager(call);
        int r;

        *ret = NULL;
        if (m->config->lockout_deny == 0 || !publisher_id || !email)
                return 0;
        r = lockout_key(publisher_id, email, ret);
        if (r == -E2BIG) {
                *ret = NULL;
                return 0;
        }
        return r;
}

bool lockouts_may_tell(Call *call, bool lock_details) {
        return lock_details || call_role(call) == ROLE_ADMIN;
}

static int fail_locked(Call *call, bool tell, uint64_t remaining_usec) {
        uint64_t retry = ratelimit_retry_after_sec(remaining_usec);

        log_event(LOG_LEVEL_INFO, IDM_MESSAGE_LOGIN_FAILED, NULL, NULL, IDM_REASON_ACCOUNT_LOCKED,
                  "%s: login refused: the account is locked for %" PRIu64 " s more", call_request_id(call), retry);
        if (!tell)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_CREDENTIALS, NULL,
                                 "wrong e-mail or password");
        return call_fail(call, IDM_ERR_LOCKED, IDM_REASON_ACCOUNT_LOCKED,
                         json_pack("{s:I}", "retryAfter", (json_int_t) retry),
                         "the account is locked after too many failed logins; try again later");
}

int lockouts_refuse_if_locked(Call *call, StoreTxn *t, const char *key, bool tell) {
        _cleanup_(store_txn_freep) StoreTxn *own = NULL;
        _cleanup_(lockout_state_done) LockoutState s = {};
        uint64_t remaining = 0;
        int r;

        if (!key)
                return 0;
        if (!t) {
                r = call_store_read(call, &own);
                if (r < 0)
                        return r;
                t = own;
        }
        r = lockout_get(t, key, &s);
        own = store_txn_free(own);      /* no snapshot may outlive a reply */
        if (r < 0)
                return r;
        if (!lockout_is_locked(&s, now_realtime_usec(), &remaining))
                return 0;

        log_debug("%s: login refused, the account is locked for %llu s more", call_request_id(call),
                 (unsigned long long) ratelimit_retry_after_sec(remaining));
        return fail_locked(call, tell, remaining);
}

int lockouts_settle(StoreTxn *t, const LockoutPolicy *policy, const char *key, bool verified, uint64_t now_usec,
                    CredentialOutcome *ret_outcome, bool *ret_locked_now, bool *ret_recorded) {
        _cleanup_(lockout_state_done) LockoutState s = {};
        int r;

        *ret_locked_now = false;
        *ret_recorded = false;
        if (!verified) {
                *ret_outcome = CREDENTIAL_REFUSED;
                if (!key)
                        return 0;
                r = lockout_note_failure(t, policy, key, now_usec);
                if (r < 0)
                        return r;
                *ret_locked_now = r > 0;
                return 0;
        }
        if (key) {
                r = lockout_get(t, key, &s);
                if (r < 0)
                        return r;
                *ret_recorded = r > 0;
                if (lockout_is_locked(&s, now_usec, NULL)) {
                        *ret_outcome = CREDENTIAL_LOCKED;
                        return 0;
                }
        }
        *ret_outcome = CREDENTIAL_ACCEPTED;
        return 0;
}

int lockouts_clear(StoreTxn *t, const char *key) {
        return key ? lockout_clear(t, key) : 0;
}

void lockouts_log_locked(Call *call) {
        Manager *m = call_manager(call);

        m->lockouts++;
        log_struct(LOG_LEVEL_NOTICE, IDM_MESSAGE_ACCOUNT_LOCKED,
                   "%s: account locked after %u failed logins", call_request_id(call), m->config->lockout_deny);
}

static int clear_write(StoreTxn *t, void *userdata) {
        return lockout_clear(t, userdata);
}

/* --- unlockCustomer, getCustomerLockout --- */

int lockouts_view(Call *call, StoreTxn *t, const char *email, json_t *customer, json_t **ret) {
        Manager *m = call_manager(call);
        LockoutPolicy policy = lockout_policy_from_config(m->config);
        _cleanup_(lockout_state_done) LockoutState s = {};
        _cleanup_free_ char *key = NULL;
        uint64_t now = now_realtime_usec(), remaining = 0, next_lock;
        char buf[32];
        bool locked;
        int r;

        r = lockout_key(call_publisher_id(call), email, &key);
        if (r == -E2BIG)
                key = NULL;
        else if (r < 0)
                return r;
        if (key) {
                r = lockout_get(t, key, &s);
                if (r < 0)
                        return r;
        }
        locked = lockout_is_locked(&s, now, &remaining);
        next_lock = ratelimit_retry_after_sec(lockout_next_duration(&s, &policy, now));

        *ret = json_pack("{s:s, s:O?, s:b, s:I, s:s?, s:I, s:I, s:I}",
                         "email", email,
                         "customerId", json_object_get(customer, "customerId"),
                         "locked", locked,
                         "retryAfter", (json_int_t) (locked ? ratelimit_retry_after_sec(remaining) : 0),
                         "lockedUntil", locked ? format_rfc3339(s.locked_until_usec, buf) : NULL,
                         "failures", (json_int_t) lockout_failures(&s, &policy, now),
                         "lockCount", (json_int_t) lockout_lock_count(&s, &policy, now),
                         "nextLockSeconds", (json_int_t) next_lock);
        return *ret ? 0 : -ENOMEM;
}

static int method_lockouts_get(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        _cleanup_free_ char *email = NULL;
        json_t *view = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customers_resolve_named(call, t, params, &email, &customer);
        if (r < 0)
                return r;
        r = lockouts_view(call, t, email, customer, &view);
        if (r < 0)
                return r;
        return call_reply(call, view);
}

static void unlock_done(Call *call, int r, void *key) {
        if (r < 0)
                return;
        if (r > 0)
                log_info("%s: lockout of a customer of publisher %s cleared (uid %u)", call_request_id(call),
                         call_publisher_id(call), (unsigned) call_peer(call)->uid);
        (void) call_reply_empty(call);
}

static int method_lockouts_unlock(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        _cleanup_free_ char *email = NULL, *key = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customers_resolve_named(call, t, params, &email, &customer);
        if (r < 0)
                return r;
        t = store_txn_free(t);

        r = lockout_key(call_publisher_id(call), email, &key);
        if (r == -E2BIG)        /* no record is ever kept for such a name */
                return call_reply_empty(call);
        if (r < 0)
                return r;
        return call_write(call, clear_write, unlock_done, TAKE_PTR(key), free);
}

static const ParamSpec lockout_params[] = {
        PUBLISHER_AUTH_PARAMS,
        CUSTOMER_NAMING_PARAMS,
        {}
};

const Method methods_lockouts[] = {
        { .name = "unlockCustomer", .handler = method_lockouts_unlock, .role = ROLE_PUBLISHER,
          .params = lockout_params },
        { .name = "getCustomerLockout", .handler = method_lockouts_get, .role = ROLE_PUBLISHER,
          .params = lockout_params },
        {}
};
