/* SPDX-License-Identifier: MIT */
/*
 * Customer sessions: what a login starts and what tokens are kept for it (DESIGN.md section 6).
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
 *                                  revoked?}; expires is the latest expiry of anything issued
 *                                  for it (refresh token, customerToken, JWT)
 *   "customer:<customerId>:<id>"   {}: index of a customer's families
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
 * session, {sessionId, customerId, created, expires}. session_sweep() removes them with their
 * session or at their expiry. */
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
        const Keyring *keyring;
        uint64_t now_usec;      /* CLOCK_REALTIME, injected so tests can move time */
        uid_t peer_uid;         /* for the refresh grace window: only the same peer gets the same successor */
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
 * already revoked, or someone else's). */
int session_revoke_family(StoreTxn *t, const SessionContext *ctx, const char *family, const char *customer_id);

/* Revokes every family of the customer except except_family (NULL: all). Returns the number
 * revoked. For logoutAll and password changes. */
int session_revoke_customer(StoreTxn *t, const SessionContext *ctx, const char *customer_id,
                            const char *except_family);

/* Deletes every session record of the customer (families, index entries, refresh and customer
 * token records), for deleteCustomer. Walks the whole token table (token records are keyed by
 * hash only). Returns the number of records deleted. */
int session_delete_customer(StoreTxn *t, const char *customer_id);

/* Verifies an access JWT (signature, claims, expiry via jwt_verify with 60 s leeway; a "sid"
 * naming a live family of the same customer) and that its family is not revoked. Fills *ret
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

/* Background sweep: deletes expired refresh/customer token records, those of revoked or missing
 * families, families past their expiry (or revoked longer ago than access_ttl + 60 s) with their
 * index entries, and index entries whose family is gone; drops successorSealed from rotated
 * refresh records whose grace window is over. Returns the number of records deleted or updated:
 * it stops once max are queued (a family and its index entry go together: at most max + 1).
 * Walks the whole token table. One-time tokens of other modules are left to them. */
int session_sweep(StoreTxn *t, const SessionContext *ctx, unsigned max);
