/* SPDX-License-Identifier: MIT */
/*
 * Customers as Unix users in the store: the only code that knows the uid counter, the uid index
 * and the Unix fields of customer and publisher records (docs/store.md "Unix users").
 *
 * A customer becomes a Unix user when it is given a uid: its record gets "unixUid" (the gid of
 * its private group is the same number), kept for the customer's whole life, whatever its
 * publisher's setting does later. uids come from a counter in the meta table that only ever
 * goes up, drawn in the unit of work that writes the customer, together with an entry in the uid
 * index (STORE_UNIX_UIDS); deleting the customer removes the index entry, never the counter, so a
 * uid is never given twice, also across restarts and backups (both are in the store).
 *
 * Whether a customer with a uid is served as a Unix user depends on its publisher's "unixUsers":
 * "none" (the default: nobody), "enabled" (customers whose "unixEnabled" is true), "all".
 *
 * Functions that take a StoreTxn work in that unit of work or snapshot and return 0 or a
 * negative errno: the store's errors (store.h), -ENOENT for what does not exist. Records returned
 * are new references owned by the caller.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct UnixUidRange {
        uint32_t min, max;              /* inclusive; [userdb] uid_min, uid_max */
};
typedef struct UnixUidRange UnixUidRange;

typedef enum UnixUsers {
        UNIX_USERS_NONE,
        UNIX_USERS_ENABLED,
        UNIX_USERS_ALL,
        _UNIX_USERS_MAX,
        _UNIX_USERS_INVALID = -22,
} UnixUsers;

/* "none", "enabled", "all" and back; _UNIX_USERS_INVALID / NULL for anything else. */
UnixUsers unix_users_from_string(const char *s);
const char *unix_users_to_string(UnixUsers u);

/* The publisher record's setting (missing: none). */
UnixUsers publisher_unix_users(json_t *publisher);

/* The customer's uid, or 0 when it has none (0 is never allocated: the range starts at 1000). */
uint32_t customer_unix_uid(json_t *customer);

/* Whether the customer is a Unix user now: it has a uid and its publisher's setting admits it. */
bool customer_is_unix_user(json_t *customer, json_t *publisher);

/* In a unit of work: gives the customer (its record rec, which must exist in the store under its
 * customerId) a uid if it has none: the counter's next value within range, written to rec, the
 * store and the uid index. 1 when a uid was drawn, 0 when rec had one; -ERANGE (nothing written)
 * when the range is used up. */
int customer_unix_uid_assign(StoreTxn *t, json_t *rec, const UnixUidRange *range);

/* In a unit of work, for a customer just created (customer_create()): draws its uid when its
 * publisher's setting is "all". Same returns as customer_unix_uid_assign(). */
int customer_unix_on_create(StoreTxn *t, json_t *rec, const UnixUidRange *range);

/* In a unit of work: gives every customer of publisher_id without a uid one (a publisher switched
 * to "all"). Returns how many were drawn; -ERANGE when the range ran out (the unit of work is
 * then to be rolled back). Bounded by the publisher's customers (one write each). */
int publisher_unix_uid_assign_all(StoreTxn *t, const char *publisher_id, const UnixUidRange *range);

/* The customer record of the customer whose uid this is. -ENOENT (also for a deleted customer:
 * its uid stays taken but names nobody). */
int customer_find_by_unix_uid(StoreTxn *t, uint32_t uid, json_t **ret);

/* The uid index key of the customer record's uid ("" if it has none: nothing to name). -ENOMEM. */
int customer_unix_uid_key(json_t *customer, char **ret);

/* The next uid the counter would give (the last given + 1, or 0 when none was given yet). */
int unix_uid_next(StoreTxn *t, uint64_t *ret);
