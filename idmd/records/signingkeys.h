/* SPDX-License-Identifier: MIT */
/*
 * The signing keys kept in the store, for idmd instances that share one (PostgreSQL): the only
 * code that reads or writes them there. Each key is a record of the meta table under
 * "signing-key:<kid>", holding what a key file holds (tokens.h: kid, created, retired and the
 * secret key). On LMDB the keys are files of the state directory and nothing here is used.
 *
 * Every idmd keeps the keys in memory (a keyring made from records) and takes up the others'
 * changes: it reads them again every SIGNING_KEYS_SYNC_USEC, and at once (at most every
 * SIGNING_KEYS_SYNC_MIN_USEC) when a JWT names a kid it does not hold. A rotation is one unit of
 * work (serializable on PostgreSQL: two instances rotating at once make one new key each, one
 * after the other, never two active ones).
 *
 * Functions that take a StoreTxn work in that unit of work or snapshot and return 0 or a
 * negative errno: the store's errors (store.h), tokens.h's for a malformed record (-EBADMSG) or
 * a store without an active key (-ENOKEY). Records returned are new references owned by the
 * caller; their secrets are wiped when jansson frees them (idmd's allocator).
 */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "store.h"
#include "tokens.h"

#define SIGNING_KEYS_SYNC_USEC (30u * 1000000u)         /* every idmd reads the keys this often */
#define SIGNING_KEYS_SYNC_MIN_USEC 1000000u             /* and for an unknown kid at most this often */

/* {kid: record} of the keys in the store (none: an empty object). */
int signing_keys_read(StoreTxn *t, json_t **ret);

/* In a unit of work: the keys of the store settled and changed as key_records_update() does
 * (KEY_RECORDS_SETTLE at start: makes the first key of a new store), the records that changed
 * written, those gone deleted. *ret_records (if given): the set now in the store. */
int signing_keys_update(StoreTxn *t, uint64_t now_usec, uint64_t retain_usec, KeyRecordsFlags flags,
                        json_t **ret_records, unsigned *ret_dropped);

/* In a unit of work: adds the keys of records to the store (another store's, when it is moved:
 * migrate.c). -EEXIST if one is there already. */
int signing_keys_import(StoreTxn *t, json_t *records);

/* Makes k's keys those of the store as t sees it (keyring_set_records()): 1 changed, 0 same (or
 * a read that began later was applied meanwhile: this one's keys may be older). */
int signing_keys_sync(StoreTxn *t, Keyring *k, uint64_t now_usec, uint64_t retain_usec);
/* Makes k's keys the set a unit of work just wrote (a rotation), as signing_keys_sync() would. */
int signing_keys_take(Keyring *k, json_t *records, uint64_t now_usec, uint64_t retain_usec);
/* The same as signing_keys_sync(), for a JWT that names a kid k does not hold, unless the last read for that reason was
 * less than SIGNING_KEYS_SYNC_MIN_USEC ago (then 0): made-up kids cost at most one read a second.
 * Event-loop thread only. */
int signing_keys_sync_unknown_kid(StoreTxn *t, Keyring *k, uint64_t now_usec, uint64_t retain_usec);
