/* SPDX-License-Identifier: MIT */
/*
 * The password reset flow's record in the store (what it means: methods/reset.c). One record per
 * (publisher, address), whether or not an account has the address, so that a request costs the
 * same writes either way: a timed record in STORE_TOKENS (sessions.h), written with its expiry
 * index entry and deleted by the sweep at its "expires".
 *
 *   "reset:<publisherId>:<lower-cased e-mail>"
 *       {sent: [times of the requests of the last hour that were not capped],
 *        tries: wrong tokens and codes since the last request,
 *        tokenHash?, codeHash?: token_hash() of the pending reset's link token and code, never
 *                   the token or code (drawn for every request, mailed only to an account),
 *        customerId?: the account the pending reset was mailed to (absent: no account),
 *        created?, resetExpires?: when the pending reset was made and stops working,
 *        expires: when the record may go (an hour after the last request, or the reset's end)}
 *
 * Functions work in the caller's unit of work or snapshot and return 0 or a negative errno: the
 * store's errors, -ENOENT when there is no record; records returned are new references.
 */
#pragma once

#include <jansson.h>

#include "store.h"

#define RESET_KIND "reset"

/* -ENOMEM; -E2BIG when no account can have such an address (the key would be too long). */
int reset_key(const char *publisher_id, const char *email, char **ret);
int reset_get(StoreTxn *t, const char *key, json_t **ret);
int reset_put(StoreTxn *t, const char *key, json_t *rec);
