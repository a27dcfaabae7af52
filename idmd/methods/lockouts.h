/* SPDX-License-Identifier: MIT */
/*
 * Account lockout on the login path (customers_login() for `login` and the PAM methods) and the
 * publisher methods unlockCustomer and getCustomerLockout. The rules are in lockout.h; this is
 * where they meet calls, replies and the store.
 */
#pragma once

#include <stdbool.h>

#include "rpc.h"
#include "store.h"

/* The lockout key of (publisher, e-mail) into *ret, or NULL when lockout is off ([lockout]
 * deny = 0) or the name is too long to be any account's (no record is kept for it). -ENOMEM. */
int lockouts_key(Call *call, const char *publisher_id, const char *email, char **ret);

/* Whether the caller may be told that an account is locked (423 account_locked with
 * retryAfter): the PAM path (lock_details) and admin peers. Everyone else gets 401
 * invalid_credentials, the answer for a wrong password. */
bool lockouts_may_tell(Call *call, bool lock_details);

/* Refuses the login if the account under key is locked: replies (423 or 401, see above) and
 * returns > 0. Also replies and returns > 0 on a store error. 0: not locked, go on. t may be a
 * read snapshot of the caller; NULL: one is taken (and ended) here. key NULL (lockout off, or
 * a name too long to be an account): 0. */
int lockouts_refuse_if_locked(Call *call, StoreTxn *t, const char *key, bool tell);

/* After a failed login (wrong password or unknown account): counts it under key, in one unit
 * of work that also sweeps a few expired records. Nothing when key is NULL (0). When the failure
 * cannot be counted (store full), < 0: the caller must answer that error (call_reply_errno),
 * not 401, or the lockout would fail open exactly when the store is in trouble. */
int lockouts_note_failure(Call *call, const char *key);

/* After a successful login: clears the failures under key, if any (a unit of work only then). */
void lockouts_note_success(Call *call, const char *key);
