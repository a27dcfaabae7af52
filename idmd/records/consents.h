/* SPDX-License-Identifier: MIT */
/*
 * Consents in the store: a publisher's consent definitions (one record per publisher) and a
 * customer's answers with their history (one record per customer). The only code that knows
 * their table and keys; what the records mean is methods/consents.c's.
 *
 * Every function works in the unit of work or snapshot it is given and returns 0 or a negative
 * errno: the store's errors (store.h), -ENOENT when there is no record. Records returned are new
 * references owned by the caller.
 */
#pragma once

#include <jansson.h>

#include "store.h"

int consent_definitions_get(StoreTxn *t, const char *publisher_id, json_t **ret);
/* The definitions will be read soon (store_prefetch()). */
int consent_definitions_prefetch(StoreTxn *t, const char *publisher_id);
int consent_definitions_put(StoreTxn *t, const char *publisher_id, json_t *rec);

int consent_answers_get(StoreTxn *t, const char *customer_id, json_t **ret);
int consent_answers_put(StoreTxn *t, const char *customer_id, json_t *rec);
/* 0 also when there was none. */
int consent_answers_delete(StoreTxn *t, const char *customer_id);

/* The key of the customer's answers record (for listing what a customer leaves behind). */
int consent_answers_key(const char *customer_id, char **ret);
