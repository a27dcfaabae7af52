/* SPDX-License-Identifier: MIT */
/*
 * Publishers and offers in the store: the only code that knows their tables, keys and record
 * shapes. A publisher record (key: its 9-digit id) keeps its settings and the hash of its
 * current publisherToken; a second table maps that hash back to the id. An offer record (key:
 * the offerId, unique across publishers) names its publisher. Methods use these functions and
 * never name a table or build a key.
 *
 * Every function works in the unit of work or snapshot it is given and returns 0 or a negative
 * errno: the store's errors (store.h), -ENOENT for what does not exist, -EEXIST for a taken key.
 * Records returned are new references owned by the caller.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include "store.h"

#define PUBLISHER_ID_DIGITS 9

/* The publisher record with this id. -ENOENT. */
int publisher_get(StoreTxn *t, const char *publisher_id, json_t **ret);
int publisher_exists(StoreTxn *t, const char *publisher_id);     /* 1, 0, or the store's error */

/* The id of the publisher whose current token this is (looked up by its hash). -ENOENT, -EPROTO
 * for a damaged link. *ret is a new string. */
int publisher_find_by_token(StoreTxn *t, const char *token, char **ret);

/* In a unit of work: writes a publisher record. create: draws a new id (again on a collision)
 * and sets rec's publisherId. token (may be NULL): becomes the publisher's token (its hash is
 * stored in rec and linked back; the previous token's link, if any, is removed). */
int publisher_save(StoreTxn *t, json_t *rec, bool create, const char *token);

/* Calls fn for every publisher record, in id order. fn's return as store_foreach(). */
int publishers_foreach(StoreTxn *t, StoreForeachFn fn, void *userdata);

/* The fields of a publisher record callers may see, dates as RFC 3339: built from an allow-list,
 * so a secret added to the record later never leaks by default. New reference, NULL on OOM. */
json_t *publisher_public(json_t *rec);

/* The offer record. -ENOENT. */
int offer_get(StoreTxn *t, const char *offer_id, json_t **ret);

/* In a unit of work: adds an offer record (its offerId and publisherId set). -EEXIST when the
 * offerId is taken (by any publisher). */
int offer_add(StoreTxn *t, json_t *rec);

/* In a unit of work: removes the offer if it belongs to publisher_id; another publisher's offer is
 * -ENOENT, as a missing one. */
int offer_remove(StoreTxn *t, const char *offer_id, const char *publisher_id);

/* Calls fn for every offer of publisher_id, in offerId order. */
int offers_foreach(StoreTxn *t, const char *publisher_id, StoreForeachFn fn, void *userdata);

/* An offer as callers see it (allow-list, dates as RFC 3339). New reference, NULL on OOM. */
json_t *offer_public(json_t *rec);
