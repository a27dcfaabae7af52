/* SPDX-License-Identifier: MIT */
/*
 * Customer lookups shared by the method families that deal with customers (customers.c, the PAM
 * methods, later consents and capture).
 */
#pragma once

#include <jansson.h>

#include "methods/lockouts.h"
#include "rpc.h"
#include "sessions.h"
#include "store.h"

/* The publisher named by params' publisherId or offerId (both: they must agree), or else by the
 * call's publisherToken (publisher_optional methods), as a new string.
 * A refusal (-32602 / 404 / 400) is recorded with call_fail(); store errors. */
int customers_resolve_publisher(Call *call, StoreTxn *t, json_t *params, char **ret);

/* The same in a read snapshot taken here and handed to the caller (*ret_txn, to free with
 * store_txn_free() before the reply). */
int customers_read_publisher(Call *call, json_t *params, StoreTxn **ret_txn, char **ret_publisher_id);
/* The same for a sign-in of email (NULL: none given): the reads of its check (the account's
 * lockout and e-mail index entry) are sent ahead of the publisher's (store_prefetch()), so that
 * they cost no round trip of their own; customers_login() takes the snapshot over. */
int customers_read_publisher_for_login(Call *call, json_t *params, const char *email, StoreTxn **ret_txn,
                                       char **ret_publisher_id);

/* For publisher methods: the customer the params name by exactly one of email, customerId and
 * externalId, within the call's publisher (another publisher's customer is as unknown as a
 * missing one: 404). *ret_email is the account's e-mail (the one given, for email), and
 * *ret_customer its record, NULL for an e-mail without an account. Refusals with call_fail(). */
int customers_resolve_named(Call *call, StoreTxn *t, json_t *params, char **ret_email, json_t **ret_customer);

/* "<publisherId>:<lower-cased e-mail>", the key of STORE_CUSTOMERS_BY_EMAIL. -ENOMEM. */
int customers_index_key(const char *publisher_id, const char *email, char **ret);

/* The customer record of (publisher, e-mail). -ENOENT if none (also for a malformed e-mail,
 * which no account can have); new reference. */
int customers_find_by_email(StoreTxn *t, const char *publisher_id, const char *email, json_t **ret);

/* Checks a new password against the configured policy; records 400 weak_password (the message
 * says what is missing) and returns -EINVAL when it falls short. */
int customers_check_new_password(Call *call, const char *password);

/* In a unit of work: replaces the customer's password hash, if it is still old_hash (-EACCES when
 * it changed meanwhile; -EPERM for a disabled customer; -ENOENT), and revokes every session of
 * the customer but keep_session (NULL: all). Returns the number of sessions revoked. */
int customers_set_password(StoreTxn *t, const SessionContext *ctx, const char *customer_id, const char *old_hash,
                           const char *new_hash, const char *keep_session);

/* A new password that is to be stored: hashes password on a worker thread (the configured cost),
 * then runs write(t, hash, userdata) as a unit of work and done(call, r, userdata) after it
 * (store.h's CallWriteDone: the reply, once durable). userdata is freed with free_fn when the
 * job ends, also when this fails. The caller checked the password against the policy. A hash
 * that fails, or a full worker queue (503, recorded), is answered here. Returns < 0 only when
 * the job could not be queued. */
typedef int (*CustomerHashedWrite)(StoreTxn *t, const char *new_hash, void *userdata);
int customers_hash_then_write(Call *call, const char *password, CustomerHashedWrite write, CallWriteDone done,
                              void *userdata, void (*free_fn)(void *p));

/* Refuses for a customers_set_password() failure: 401 invalid_credentials when the password changed
 * meanwhile (or the customer is gone), 403 account_disabled (call_fail()); other errors are
 * returned as they are. */
int customers_fail_set_password(Call *call, int r);

/* Refuses a call whose unit of work found the uid range used up (-ERANGE from
 * records/unixusers.h): 503 uid_range_exhausted, logged. Returns the call_fail() value. */
int customers_fail_uid_range(Call *call);

/* The fields of a customer record callers may see (no password hash), dates as RFC 3339. */
json_t *customers_public(json_t *rec);

/* What a successful login hands to its caller's reply function. Borrowed for the call only. */
typedef struct CustomerLogin {
        const char *customer_id;
        const char *publisher_id;
        json_t *customer;               /* the customer record after the login was recorded */
        const SessionTokens *tokens;    /* the new session */
        /* With CustomerLoginRequest.prompts, worked out in the login's unit of work: whether
         * required consents are outdated, how many required capture fields are unanswered. */
        bool consents_outdated;
        unsigned capture_missing;
} CustomerLogin;

/* Replies to the call (and may record more); < 0: an internal error, answered for it. */
typedef int (*CustomerLoginSuccess)(Call *call, const CustomerLogin *login);

/* Called inside the unit of work that records a successful login (and may run more than once
 * with it), to write what must be committed with it. */
typedef int (*CustomerLoginRecord)(StoreTxn *t, Call *call, const CustomerLogin *login);

typedef struct CustomerLoginRequest {
        json_t *params;                 /* kept with the job (customerIP is read from it) */
        CustomerLoginRecord also_record; /* may be NULL */
        const char *publisher_id;       /* resolved by the caller */
        StoreTxn *snapshot;             /* what it was resolved in (taken over), or NULL */
        const char *email;
        const char *password;
        bool lock_details;              /* 423 account_locked may be told (PAM path, admin peers) */
        bool prompts;                   /* CustomerLogin's consents_outdated and capture_missing */
} CustomerLoginRequest;

/* The login both `login` and the PAM path use: verifies the password on a worker thread (a
 * dummy verification for unknown accounts), records lastLoginDate/lastUserIP, rehashes when
 * the configured cost changed, starts a session and calls on_login to reply. Every failure is
 * answered here: 401 invalid_credentials (unknown_user to admin peers), 423 account_locked (to
 * admin peers and lock_details callers; 401 to others), 403 account_disabled (after the right
 * password only; no session, nothing recorded), 503 unavailable. Returns
 * < 0 only for an internal error the caller should answer. */
int customers_login(Call *call, const CustomerLoginRequest *req, CustomerLoginSuccess on_login);

/* What customers_check_password() settled, for its callback. Borrowed for the call only. */
typedef struct CustomerPasswordCheck {
        json_t *params;                 /* the params given to customers_check_password() */
        const char *publisher_id;
        const char *customer_id;        /* NULL: no such customer, or one without a password */
        bool changed;                   /* a new password was given and stored */
        int revoked;                    /* sessions ended by the change */
} CustomerPasswordCheck;

/* Runs on the event loop for an accepted check and replies to the call. */
typedef void (*CustomerPasswordChecked)(Call *call, const CustomerPasswordCheck *check);

/* The credential pipeline for the PAM path: refuses a locked account before any hashing (423 to
 * PAM callers), verifies the password of the customer (publisher, e-mail) on a worker thread (a
 * dummy verification for an unknown account or one without a password: the same cost) and, when
 * new_password is given and the password matches, hashes new_password there too; then, in one
 * unit of work, counts a failure, or re-checks the lock, stores the new password (ending every
 * session of the customer) and clears the failures. Then calls done when the check was accepted;
 * a refused one (401 "wrong e-mail or password", counted) and the write's failures (401 when the
 * password changed meanwhile, 403 account_disabled, 503) are answered here. params is kept with the job. Answers 503 itself when the worker queue is full. Returns
 * < 0 only for an internal error the caller should answer. */
int customers_check_password(Call *call, json_t *params, const char *publisher_id, const char *email,
                             const char *password, const char *new_password, CustomerPasswordChecked done);
