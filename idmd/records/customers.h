/* SPDX-License-Identifier: MIT */
/*
 * Customers in the store: the only code that knows their tables, keys and record shape. A
 * customer record (key: its 10-digit id) has two indexes, written in the same unit of work as the
 * record so they never disagree with it: (publisher, lower-cased e-mail) and (publisher,
 * externalId), each mapping to the id. The e-mail and externalId of a record never change.
 *
 * Every function works in the unit of work or snapshot it is given and returns 0 or a negative
 * errno: the store's errors (store.h), -ENOENT for what does not exist, -EEXIST for a taken key.
 * Records returned are new references owned by the caller.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "store.h"

#define CUSTOMER_ID_DIGITS 10

/* The customer record with this id. -ENOENT. */
int customer_get(StoreTxn *t, const char *customer_id, json_t **ret);
int customer_exists(StoreTxn *t, const char *customer_id);       /* 1, 0, or the store's error */
/* The record will be read soon (store_prefetch()). */
int customer_prefetch(StoreTxn *t, const char *customer_id);

/* The customer of (publisher, e-mail). -ENOENT, also for a malformed e-mail (registration only
 * takes valid ones, so it names nobody); -EPROTO for a damaged index. */
int customer_find_by_email(StoreTxn *t, const char *publisher_id, const char *email, json_t **ret);

/* The customer of (publisher, externalId). -ENOENT; -EPROTO for a damaged index. */
int customer_find_by_external_id(StoreTxn *t, const char *publisher_id, const char *external_id, json_t **ret);

/* In a unit of work: stores a new customer (rec holds publisherId, email and optionally
 * externalId), drawing its id (set in rec) and writing its indexes, and its uid from unix_range
 * when its publisher makes every customer a Unix user (records/unixusers.h; NULL: never).
 * -EEXIST with *ret_taken naming what was taken ("email" or "externalId"); -ERANGE when the uid
 * range is used up. */
typedef struct UnixUidRange UnixUidRange;
int customer_create(StoreTxn *t, json_t *rec, const UnixUidRange *unix_range, const char **ret_taken);

/* In a unit of work: gives a customer that has none the externalId (set in rec, which is
 * written back) and its index entry. -EEXIST when another customer of the publisher has it;
 * -EINVAL when rec has an externalId already. */
int customer_link_external_id(StoreTxn *t, json_t *rec, const char *external_id);

/* In a unit of work: writes back a changed record of an existing customer (its e-mail and
 * externalId unchanged). */
int customer_put(StoreTxn *t, json_t *rec);

/* The key of the customer's e-mail index entry: "<publisherId>:<lower-cased e-mail>". Also the
 * name other records of that account are keyed by (lockouts, PAM session records). -ENOMEM. */
int customer_email_key(const char *publisher_id, const char *email, char **ret);

/* Every record a customer leaves behind, for deleting or exporting it: calls fn(table, key,
 * userdata) for the customer record, its e-mail and externalId index entries, its uid index
 * entry when it is a Unix user (records/unixusers.h), its consent
 * answers, its lockout record (keyed by the account's e-mail) when there is one, and every record
 * of its sessions in the token table (session index entries, families, refresh and customer
 * tokens, the PAM path's records). Derived index entries that the sweep drops by themselves
 * (token expiry) are not named. fn returns 0 to go on, or < 0 to stop with that error. -ENOENT
 * when there is no such customer. */
typedef int (*CustomerRecordFn)(StoreTable table, const char *key, void *userdata);
int customer_foreach_record(StoreTxn *t, const char *customer_id, CustomerRecordFn fn, void *userdata);

/* In a unit of work: deletes every record customer_foreach_record() names that keys lead to (the
 * customer record, its index entries, consents, capture answers, lockout and reset records, its
 * sessions), and the expiry index entries of its tokens that can be found from the records
 * (the others are dropped by the sweep when they come due); and queues the purge of the rest
 * (below). With its sessions gone, none of the customer's tokens grants anything. Returns the
 * number of records deleted; -ENOENT when there is no such customer. */
int customer_delete(StoreTxn *t, const char *customer_id);

/* The purge: what only a walk over the whole token table finds (token records keyed by hash,
 * the PAM path's records, one-time tokens) is deleted
 * in the background, one bounded step per unit of work, so that deleteCustomer never holds the
 * event loop for a walk over the whole table. Each deleted customer has a job in STORE_META,
 * "purge:<customerId>" -> {cursor?}: where its walk goes on, kept in the same unit of work as
 * the step, so a restart goes on where it was. customer_purge_step() runs one step of the oldest
 * job over at most max records (*ret_deleted: the records it deleted) and returns 1 when a job
 * is left after it, 0 when none is. customer_purges_pending() counts the jobs queued. */
#define CUSTOMER_PURGE_PREFIX "purge:"
int customer_purge_step(StoreTxn *t, unsigned max, unsigned *ret_deleted);
int customer_purges_pending(StoreTxn *t, uint64_t *ret);

/* Calls fn(customer record, userdata) for the customers of publisher_id whose lower-cased e-mail
 * starts with email_prefix ("" or NULL: all), in e-mail order, after the customer whose e-mail
 * is after_email (NULL: from the first). fn returns 0 to go on, > 0 to stop (that value is
 * returned), < 0 to stop with that error. The order is the e-mail's, so a cursor (the last
 * e-mail seen) stays correct while customers are added and removed. */
typedef int (*CustomerFn)(json_t *customer, void *userdata);
int customers_foreach_by_email(StoreTxn *t, const char *publisher_id, const char *email_prefix, const char *after_email,
                               CustomerFn fn, void *userdata);
