/* SPDX-License-Identifier: MIT */
/*
 * Capture in the store: a publisher's capture settings (one record per publisher) and a
 * customer's answers (one record per customer), both in STORE_CAPTURE. The only code that knows
 * that table and its keys; what the records mean is methods/capture.c's.
 *
 * Every function works in the unit of work or snapshot it is given and returns 0 or a negative
 * errno: the store's errors (store.h), -ENOENT when there is no record. Records returned are new
 * references owned by the caller.
 */
#pragma once

#include <jansson.h>

#include "store.h"

int capture_settings_get(StoreTxn *t, const char *publisher_id, json_t **ret);
/* The settings will be read soon (store_prefetch()). */
int capture_settings_prefetch(StoreTxn *t, const char *publisher_id);
int capture_settings_put(StoreTxn *t, const char *publisher_id, json_t *rec);

int capture_answers_get(StoreTxn *t, const char *customer_id, json_t **ret);
int capture_answers_put(StoreTxn *t, const char *customer_id, json_t *rec);

/* The key of the customer's answers record (for listing what a customer leaves behind). */
int capture_answers_key(const char *customer_id, char **ret);
