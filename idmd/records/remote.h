/* SPDX-License-Identifier: MIT */
/*
 * The records of remote auth, SSO and publisher sessions (what they mean: methods/remote.c):
 * timed records in STORE_TOKENS (sessions.h), each keyed by token_hash() of its secret, so the
 * store never holds a token, written with its expiry index entry and deleted by the sweep at its
 * "expires".
 *
 *   "remote:<64 hex>"      a remote-auth token (prepareRemoteAuth):
 *                          {customerId, publisherId, created, expires}
 *   "sso:<64 hex>"         an SSO token (getSingleSignOnByCustomer):
 *                          {customerId, publisherId, created, expires, validationIp?}
 *   "pubsession:<64 hex>"  a publisher's sessionID (publisherLogin): {publisherId, created, expires}
 *
 * The first two name a customer in "customerId", so they are found and deleted with it
 * (records/customers.c). Functions work in the caller's unit of work or snapshot and return 0 or
 * a negative errno: the store's errors, -ENOENT when there is no record; records returned are
 * new references.
 */
#pragma once

#include <jansson.h>

#include "store.h"

#define REMOTE_KIND_REMOTE "remote"
#define REMOTE_KIND_SSO "sso"
#define REMOTE_KIND_PUBLISHER_SESSION "pubsession"

/* Stores rec (which holds "expires") as the record of token, of kind REMOTE_KIND_REMOTE or
 * REMOTE_KIND_SSO. -EINVAL for another kind. */
int signin_token_put(StoreTxn *t, const char *kind, const char *token, json_t *rec);

/* Takes the sign-in token (remote-auth or SSO) out of the store: its record is deleted, whatever
 * it holds (a token is used up by being presented), and returned in *ret with *ret_kind (static)
 * saying which kind it was. -ENOENT: no such token. */
int signin_token_take(StoreTxn *t, const char *token, json_t **ret, const char **ret_kind);

/* A publisher's sessionID: stored, and looked up (-ENOENT). */
int publisher_session_put(StoreTxn *t, const char *session_id, json_t *rec);
int publisher_session_get(StoreTxn *t, const char *session_id, json_t **ret);
