/* SPDX-License-Identifier: MIT */
/*
 * Capture in the store (records/capture.h): one table, two kinds of key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "idm/cleanup.h"
#include "records/capture.h"

static int key_of(const char *kind, const char *id, char **ret) {
        return asprintf(ret, "%s:%s", kind, id) < 0 ? -ENOMEM : 0;
}

int capture_answers_key(const char *customer_id, char **ret) {
        return key_of("customer", customer_id, ret);
}

static int get_by(const char *kind, StoreTxn *t, const char *id, json_t **ret) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = key_of(kind, id, &key);
        return r < 0 ? r : store_get(t, STORE_CAPTURE, key, ret);
}

static int put_by(const char *kind, StoreTxn *t, const char *id, json_t *rec) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = key_of(kind, id, &key);
        return r < 0 ? r : store_put(t, STORE_CAPTURE, key, rec, STORE_PUT_DEFAULT);
}

int capture_settings_get(StoreTxn *t, const char *publisher_id, json_t **ret) {
        return get_by("publisher", t, publisher_id, ret);
}

int capture_settings_prefetch(StoreTxn *t, const char *publisher_id) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = key_of("publisher", publisher_id, &key);
        return r < 0 ? r : store_prefetch(t, STORE_CAPTURE, key);
}

int capture_settings_put(StoreTxn *t, const char *publisher_id, json_t *rec) {
        return put_by("publisher", t, publisher_id, rec);
}

int capture_answers_get(StoreTxn *t, const char *customer_id, json_t **ret) {
        return get_by("customer", t, customer_id, ret);
}

int capture_answers_put(StoreTxn *t, const char *customer_id, json_t *rec) {
        return put_by("customer", t, customer_id, rec);
}
