/* SPDX-License-Identifier: MIT */
/*
 * The device login's records in the store (what they mean: methods/device.c). Two timed records
 * in STORE_TOKENS (sessions.h) per device login, each of its own kind, written with its expiry
 * index entry and deleted by the sweep at its "expires":
 *
 *   "device:<token_hash() of the device code>"
 *       {publisherId, deviceName?, userCodeKey (the key of the record below),
 *        state: "pending" | "approved" | "denied",
 *        customerId?: who approved or denied it,
 *        created, expires, interval: the poll interval in seconds (grows by 5 with each slow_down),
 *        lastPoll?: when it was last polled}
 *   "devcode:<token_hash() of the normalised user code>"
 *       {deviceKey: the key of the record above, publisherId, expires}
 *
 * Neither the device code nor the user code is kept, only their hashes. The user code's record
 * goes once the login is approved or denied (a user code is used once); the device record once
 * its tokens were handed out (they are handed out once).
 *
 * Functions work in the caller's unit of work or snapshot and return 0 or a negative errno: the
 * store's errors, -ENOENT when there is no record; records returned are new references.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "store.h"

#define DEVICE_KIND "device"
#define DEVICE_CODE_KIND "devcode"

/* The user code alphabet (RFC 8628 section 6.1: no vowels, no digits) and its length. */
#define DEVICE_USER_CODE_ALPHABET "BCDFGHJKLMNPQRSTVWXZ"
#define DEVICE_USER_CODE_LEN 8

/* The user code as typed, normalised: upper case, dashes and spaces dropped; false if what is
 * left is not DEVICE_USER_CODE_LEN characters of the alphabet. ret holds LEN + 1 bytes. */
bool device_user_code_normalise(const char *typed, char ret[static DEVICE_USER_CODE_LEN + 1]);

/* "device:<hash>" of a device code, "devcode:<hash>" of a normalised user code. -ENOMEM. */
int device_key(const char *device_code, char **ret);
int device_user_code_key(const char *user_code, char **ret);

/* The device record at key (from device_key() or a user code record's deviceKey); _put replaces
 * it, _del removes it (1 if it was there, 0 if not). -EINVAL for a key of another kind. */
int device_get(StoreTxn *t, const char *key, json_t **ret);
int device_put(StoreTxn *t, const char *key, json_t *rec);
int device_del(StoreTxn *t, const char *key);

/* The same for user code records. */
int device_user_code_get(StoreTxn *t, const char *key, json_t **ret);
int device_user_code_put(StoreTxn *t, const char *key, json_t *rec);
int device_user_code_del(StoreTxn *t, const char *key);
