/* SPDX-License-Identifier: MIT */
/*
 * Account lockout on the login path (customers_login() for `login` and the PAM methods) and the
 * publisher methods unlockCustomer and getCustomerLockout. The rules are in lockout.h; this is
 * where they meet calls, replies and the store.
 */
#pragma once

#include <stdbool.h>

#include "lockout.h"
#include "rpc.h"
#include "store.h"

/* The lockout key of (publisher, e-mail) into *ret, or NULL when lockout is off ([lockout]
 * deny = 0) or the name is too long to be any account's (no record is kept for it). -ENOMEM. */
int lockouts_key(Call *call, const char *publisher_id, const char *email, char **ret);

/* Whether the caller may be told that an account is locked (423 account_locked with
 * retryAfter): the PAM path (lock_details) and admin peers. Everyone else gets 401
 * invalid_credentials, the answer for a wrong password. */
bool lockouts_may_tell(Call *call, bool lock_details);

/* Refuses the login if the account under key is locked: records the refusal (423 or 401, see
 * above; call_fail()) and returns < 0, as for a store error. 0: not locked, go on. t may be a
 * read snapshot of the caller; NULL: one is taken (and ended) here. key NULL (lockout off, or
 * a name too long to be an account): 0. */
int lockouts_refuse_if_locked(Call *call, StoreTxn *t, const char *key, bool tell);

/* The outcome of a credential check once it is settled in a unit of work. */
typedef enum CredentialOutcome {
        CREDENTIAL_ACCEPTED,    /* right, and the account is not locked: go on */
        CREDENTIAL_REFUSED,     /* wrong (or no such account): the failure was counted */
        CREDENTIAL_LOCKED,      /* right, but other attempts locked the account meanwhile */
} CredentialOutcome;

/* Inside the unit of work that ends a credential check (the pipeline: lock check on a snapshot →
 * hash on a worker → this): a failed check is counted under key (*ret_locked_now when this
 * failure locked the account; then call lockouts_log_locked() once it is durable); a right one
 * is checked against the lock again, since other attempts may have locked the account while
 * this one was hashed; *ret_recorded then says whether failures are on record (for
 * lockouts_clear(): none, nothing to clear). key NULL (lockout off, or a name no account can
 * have): nothing is counted or checked. Store errors. */
int lockouts_settle(StoreTxn *t, const LockoutPolicy *policy, const char *key, bool verified, uint64_t now_usec,
                    CredentialOutcome *ret_outcome, bool *ret_locked_now, bool *ret_recorded);

/* Inside the same unit of work, after the success work: clears the failures under key (0 when
 * there were none, 1 when cleared; nothing for NULL). */
int lockouts_clear(StoreTxn *t, const char *key);

/* Counts and logs (with a journal MESSAGE_ID) an account that a failure just locked. */
void lockouts_log_locked(Call *call);

/* What getCustomerLockout shows of the account (email, and customer's record or NULL) of the
 * call's publisher: {email, customerId, locked, retryAfter, lockedUntil, failures, lockCount,
 * nextLockSeconds}. New reference in *ret; store errors, -ENOMEM. */
int lockouts_view(Call *call, StoreTxn *t, const char *email, json_t *customer, json_t **ret);
