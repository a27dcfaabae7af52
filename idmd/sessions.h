/* SPDX-License-Identifier: MIT */
/*
 * Customer sessions: what a login starts and what tokens are kept for it.
 *
 * One login = one session family. A family has a record, an entry in its customer's index, one
 * live refresh token (rotated on every use; the rotated ones are kept until they expire so a
 * re-use can be recognised) and one customerToken. Access JWTs carry the family id as "sid", so
 * revoking a family also makes its JWTs inactive for introspectToken / customer methods.
 * Everything at rest is a hash of a token, never the token.
 *
 * Keys in STORE_TOKENS (docs/store.md); times are CLOCK_REALTIME usec:
 *   "<64 hex>"                     token_hash() of a token:
 *                                    refresh: {type: "refresh", family, customerId, publisherId,
 *                                      created, expires, parent? (key of the token it replaced),
 *                                      rotated?, rotatedBy? (peer uid), successorSealed?
 *                                      (token_seal() of the successor under this token: only a
 *                                      presenter of this token can open it; dropped once the
 *                                      grace window is over, by the next rotation or the sweep,
 *                                      so no chain of them leads from an old token to a live one)}
 *                                    customerToken: {type: "customer", family, customerId,
 *                                      publisherId, created, expires}
 *                                    (one-time tokens of other modules have other types)
 *   "family:<id>"                  family record {customerId, publisherId, created, expires,
 *                                  revoked?, indexed?}; expires is the latest expiry of anything
 *                                  issued for it (refresh token, customerToken, JWT); indexed:
 *                                  the due of its expiry index entry when a refresh extended
 *                                  expires without moving it (the sweep moves it later)
 *   "customer:<customerId>:<id>"   {created, expires} of the family as it started: index of a
 *                                  customer's live families (a revoked one leaves it at once)
 * A token record whose family record is missing is dead (fail closed), so deleting a family
 * record is enough to end it. Rotated refresh records are kept until their own expiry, so that a
 * re-use is recognised for as long as the token could have been valid.
 *
 * Tokens: refresh tokens and customerTokens are 256-bit random, base64url (43 characters); the
 * family id ("sid") is 128-bit random, base64url (22 characters), and is not a secret.
 *
 * All functions run inside a unit of work of the caller (store.h) on the event loop thread (the
 * read-only ones also in a store_read() snapshot); that serializes them, which is what makes
 * rotation atomic. They may be run twice when the store grows (store_transact), so outputs are
 * reset at their start: a SessionTokens passed as ret must be zero-initialized or hold an earlier
 * result. Other ret_* outputs are set only on success.
 *
 * Errors: -EACCES (token unknown, malformed, revoked, used, or of the wrong kind), -ETIME (token
 * expired), -EINVAL (a NULL argument, an unusable customer id), -EPROTO (a damaged record),
 * -ENOMEM, and the store's errors (-ENOSPC, -ENOBUFS inside store_transact, -EIO, ...): return
 * those from the StoreWorkFn as they are.
 */
#pragma once

/* Keys of STORE_TOKENS under this prefix belong to the PAM path (methods/pam.c): who opened which
 * session, {sessionId, customerId, created, expires}, timed records of kind "pam" (below). */
#define SESSION_PAM_PREFIX "pam:"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "config.h"
#include "store.h"
#include "tokens.h"

typedef struct SessionContext {
        const Config *config;
        Keyring *keyring;       /* brought up to date from the store for an unknown kid, when */
        bool keys_in_store;     /* ... the keys are records of a shared store (signingkeys.h) */
        uint64_t now_usec;      /* CLOCK_REALTIME, injected so tests can move time */
        uid_t peer_uid;         /* for the refresh grace window: only the same peer gets the same successor */
        bool prefetch_customer; /* verifying a token: the caller reads the customer's record next,
                                 * so it is sent with the session's read (store_prefetch()) */
} SessionContext;

typedef struct SessionTokens {
        char *jwt;
        char *refresh_token;
        char *customer_token;   /* NULL from session_refresh() */
        char *family;           /* the session id ("sid") */
        uint64_t jwt_expires;   /* seconds since the epoch */
} SessionTokens;

/* Wipes and frees the tokens. */
void session_tokens_done(SessionTokens *t);

/* Starts a new family for the customer: an access JWT, a refresh token and a customerToken. */
int session_start(StoreTxn *t, const SessionContext *ctx, const char *customer_id, const char *publisher_id,
                  SessionTokens *ret);

/* Rotates a refresh token: returns a new JWT and refresh token; the old one stops working.
 * Presenting an already rotated token again:
 *   - within refresh_grace of its rotation and from the same peer uid: the same successor
 *     refresh token is returned again (with a new JWT), so concurrent users of one token agree;
 *   - otherwise: the whole family is revoked (token theft) and -EKEYREVOKED returned. The
 *     revocation is written in t: the caller must COMMIT the unit of work (return >= 0 from its
 *     StoreWorkFn, keeping the error aside) and then answer as for -EACCES.
 * Sliding lifetime: the successor lives refresh_ttl from now. -EACCES, -ETIME (then nothing was
 * written), -EKEYREVOKED. ret->customer_token is NULL. */
int session_refresh(StoreTxn *t, const SessionContext *ctx, const char *refresh_token, SessionTokens *ret);

/* RFC 7009: revokes a refresh token (its whole family; a rotated but unexpired one too), a
 * customerToken (its family too) or a valid access JWT (its family). Returns 1 when a family was
 * revoked, 0 when there was nothing to do: an unknown, invalid, expired or already revoked token
 * is not an error. */
int session_revoke_token(StoreTxn *t, const SessionContext *ctx, const char *token);

/* 0 if session (family) id is live (not revoked, not expired) and the customer's; -EACCES if
 * not. */
int session_check_live(StoreTxn *t, const SessionContext *ctx, const char *family, const char *customer_id);

/* Revokes one session (family) of the customer: 1 if it was live, 0 if it was not (unknown,
 * already revoked, or someone else's). ctx needs only now_usec (without config the family's
 * expiry index entry is made at the revocation and the sweep moves it on). */
int session_revoke_family(StoreTxn *t, const SessionContext *ctx, const char *family, const char *customer_id);

/* Revokes every family of the customer except except_family (NULL: all). Returns the number
 * revoked. For logoutAll and password changes. */
int session_revoke_customer(StoreTxn *t, const SessionContext *ctx, const char *customer_id,
                            const char *except_family);

/* Deletes the session records of the customer that keys lead to: its index entries and the
 * families they name (revoked ones too), with their expiry index entries (but those of a revoked
 * family, whose time depends on the configuration: the sweep drops them when they come due), for
 * deleteCustomer. Token records are keyed by hash: only a walk finds those,
 * session_purge_customer_step() in bounded steps. With its families gone, none of the
 * customer's tokens grants anything. Returns the number of records deleted. */
int session_delete_customer(StoreTxn *t, const char *customer_id);

/* One bounded step of the walk that deletes the rest of a deleted customer's records in the
 * token table: every record naming it ("customerId") among at most max records after 'after'
 * (NULL: the start). Its session records (families, refresh and customer tokens) are deleted
 * with their expiry index entries; any other record naming it is handed to other(t, key,
 * userdata), which deletes it and returns the records deleted (NULL: deleted as it is).
 * *ret_next: where the next step goes on, a new string, or NULL when the table is done. Returns
 * the number of records deleted. -EINVAL. */
typedef int (*SessionPurgeOtherFn)(StoreTxn *t, const char *key, void *userdata);
int session_purge_customer_step(StoreTxn *t, const char *customer_id, const char *after, unsigned max,
                                SessionPurgeOtherFn other, void *userdata, char **ret_next);

/* Calls fn(key, userdata) for every record of the customer in the token table: its session
 * index entries, families, refresh and customer tokens, and every other record naming it in a
 * "customerId" field (the PAM path's, the reset flow's)
 * (their expiry index entries are derived and left to the sweep). fn returns 0 to go on, < 0 to
 * stop with that error. Walks the whole token table, as the purge does: for tools and tests
 * (store-inspect), not for requests. */
typedef int (*SessionRecordFn)(const char *key, void *userdata);
int session_foreach_customer_record(StoreTxn *t, const char *customer_id, SessionRecordFn fn, void *userdata);

/* The customer's sessions as an export shows them, without any token or token hash: a new array
 * of {sessionId, publisherId, created, expires, revoked} (dates RFC 3339; revoked null), the live
 * sessions then the revoked ones, each in session id order, and of the PAM path's records naming the customer {sessionId, peerUid, created,
 * expires}, found by key (the customer's index, its publisher and e-mail), without a walk over
 * the table. *ret_sessions and *ret_pam are new references. -EINVAL. */
int session_export_customer(StoreTxn *t, const char *customer_id, const char *publisher_id, const char *email,
                            json_t **ret_sessions, json_t **ret_pam);

/* Verifies an access JWT (signature, claims, expiry via jwt_verify_cached with 60 s leeway: a
 * token verified before skips the signature and parsing; a "sid" naming a live family of the same
 * customer) and that its family is not revoked, in t, every time. Revoking a family or deleting a
 * customer's sessions also empties the cache (jwt_cache_revoke). Fills *ret
 * (jwt_claims_done it); *ret_family (may be NULL) is a new string. -EACCES or -ETIME. */
int session_verify_jwt(StoreTxn *t, const SessionContext *ctx, const char *jwt, JwtClaims *ret,
                       char **ret_family);

/* Checks a customerToken: -EACCES/-ETIME, else the customer, publisher and family (new strings;
 * each ret_* may be NULL). */
int session_verify_customer_token(StoreTxn *t, const SessionContext *ctx, const char *token,
                                  char **ret_customer_id, char **ret_publisher_id, char **ret_family);

/* RFC 7662 for any of our tokens (JWT, refresh token, customerToken): {active: false} or
 * {active: true, sub, exp, iat, iss, aud, token_type, customerId, publisherId} plus jti and nbf
 * for a JWT. token_type: "access_token", "refresh_token" (not rotated, revoked or expired),
 * "customer_token". Anything else (garbage, another kind of token) is {active: false}. Read
 * only. Fails only for -ENOMEM and store errors. */
int session_introspect(StoreTxn *t, const SessionContext *ctx, const char *token, json_t **ret);

/* ---- The expiry index and the sweep ----
 *
 * Every token record of a kind that expires has one entry in STORE_TOKEN_EXPIRY:
 *   "<kind>:<due>:<key>" -> {}      due: when the record is to be looked at again (CLOCK_REALTIME
 *                                   usec, 16 lower-case hex digits, so key order is time order);
 *                                   key: the record's key in STORE_TOKENS
 *   "<kind>:<due>:#<hash of key>" -> {key}   the same, for a key too long to fit
 * It is written in the same unit of work as the record (created, rotated, revoked, extended,
 * deleted), so the expired records of a kind are found in key order without reading a live
 * one. An entry whose record is gone or not due yet is harmless: the sweep drops or moves it.
 * Kinds of this file:
 *   refresh   refresh token records, due at their expiry (rotated ones too)
 *   customer  customerToken records, due at their expiry
 *   seal      rotated refresh records still holding successorSealed, due when the grace window
 *             is over (then only the field goes)
 *   family    family records, due at their expiry or access_ttl + 60 s after their revocation
 *             (with the family go its "customer:" index entry); the token records of a family
 *             that is gone grant nothing and go at their own expiry. A refresh extends a
 *             family without moving its entry (recorded in "indexed"): the entry may be earlier
 *             than the family's due, never later
 *   pam       PAM session records, due at their expiry
 * Another module's kind (a one-time token) writes its entries with session_expiry_put()/_del()
 * and gives the manager's sweep registry a SessionExpireFn. Kind names: 1..16 characters, no
 * ':'. */
#define SESSION_KIND_REFRESH "refresh"
#define SESSION_KIND_CUSTOMER "customer"
#define SESSION_KIND_SEAL "seal"
#define SESSION_KIND_FAMILY "family"
#define SESSION_KIND_PAM "pam"

/* Adds (overwriting) or removes the entry of the record at key (in STORE_TOKENS), of kind, due
 * at due. _del returns 1 if the entry was there, 0 if not. -EINVAL for a bad kind or key. */
int session_expiry_put(StoreTxn *t, const char *kind, uint64_t due, const char *key);
int session_expiry_del(StoreTxn *t, const char *kind, uint64_t due, const char *key);

typedef struct SessionSweepStats {
        unsigned visited;       /* due index entries taken (and removed or moved) */
        unsigned read;          /* records read from STORE_TOKENS for them */
        unsigned deleted;       /* records deleted from STORE_TOKENS */
        unsigned updated;       /* records rewritten (successorSealed dropped) */
} SessionSweepStats;

/* What a kind does with a record whose index entry came due (the entry is already removed):
 * delete the record if it is dead at ctx->now_usec, else put a new entry for when it will be;
 * a record that is gone, damaged or of another type is left alone. Counts what it did in
 * stats. Store errors. */
typedef int (*SessionExpireFn)(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                               SessionSweepStats *stats);
int session_expire_token(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                         SessionSweepStats *stats);   /* refresh and customer */
int session_expire_seal(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                        SessionSweepStats *stats);
int session_expire_family(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                          SessionSweepStats *stats);
/* Timed records (below): deleted at their "expires". */
int session_expire_timed(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                         SessionSweepStats *stats);

/* One bounded batch of the sweep of kind: takes the index entries of kind due at or before
 * ctx->now_usec, in due order, starting after the index key 'after' (NULL: from the first), at
 * most max of them, and hands each to expire. Reads no record that is not due, and at most one
 * index entry that is not. Returns 1 if it stopped at max (more may be due: call again with
 * *ret_cursor, the last index key taken), 0 if nothing more is due (*ret_cursor NULL).
 * *ret_cursor is set on success only (a new string or NULL); stats (may be NULL) is reset
 * first. -EINVAL, store errors. */
int session_sweep_kind(StoreTxn *t, const SessionContext *ctx, const char *kind, SessionExpireFn expire,
                       unsigned max, const char *after, char **ret_cursor, SessionSweepStats *stats);

/* Whether an index entry of kind after 'after' (NULL: from the first) is due at now_usec: 1 or
 * 0, or a store error. Reads one index entry, for a read snapshot: the sweep submits a unit of
 * work only when there is something to do. */
int session_sweep_pending(StoreTxn *t, const char *kind, uint64_t now_usec, const char *after);

/* Timed records: a record in STORE_TOKENS under a key "<kind>:..." that lives until its
 * "expires" (CLOCK_REALTIME usec), written and removed with its expiry index entry of kind, and
 * deleted by session_expire_timed() in the sweep. The PAM path's records are such records of
 * kind "pam" ({sessionId, customerId, created, expires}); the reset flow's are others.
 * -EINVAL for a key that does not start with "<kind>:". _put replaces a record (moving its
 * index entry); _del returns 1 if there was a record, 0 if not; _get -ENOENT. */
int session_timed_put(StoreTxn *t, const char *kind, const char *key, json_t *rec);
int session_timed_del(StoreTxn *t, const char *kind, const char *key);
int session_timed_get(StoreTxn *t, const char *kind, const char *key, json_t **ret);
/* The key of the record of the session peer uid opened for (publisher, user):
 * "pam:<publisherId>:<lower-cased e-mail>:<uid>". -ENOMEM; -E2BIG when no account can have such
 * a name (the key would be too long). */
int session_pam_key(const char *publisher_id, const char *user, uid_t uid, char **ret);

/* For the store's migration from schema version 1: adds the index entry of every token record
 * (by the record alone: a revoked family or a sealed successor is entered at its revocation or
 * rotation and moved on by the sweep) and drops "customer:" index entries whose family is gone.
 * Walks the whole tokens table, once. */
int session_expiry_rebuild(StoreTxn *t);
