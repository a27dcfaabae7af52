/* SPDX-License-Identifier: MIT */
/*
 * Customer lookups shared by the method families that deal with customers (customers.c, the PAM
 * methods, later consents and capture).
 */
#pragma once

#include <jansson.h>

#include "rpc.h"
#include "store.h"

/* The publisher named by params' publisherId or offerId (both: they must agree). Replies itself
 * (-32602 / 404 / 400) and returns NULL when there is none; else a new string. */
char *customers_resolve_publisher(Call *call, StoreTxn *t, json_t *params);

/* "<publisherId>:<lower-cased e-mail>", the key of STORE_CUSTOMERS_BY_EMAIL. -ENOMEM. */
int customers_index_key(const char *publisher_id, const char *email, char **ret);

/* The customer record of (publisher, e-mail). -ENOENT if none; new reference. */
int customers_find_by_email(StoreTxn *t, const char *publisher_id, const char *email, json_t **ret);

/* The fields of a customer record callers may see (no password hash), dates as RFC 3339. */
json_t *customers_public(json_t *rec);
