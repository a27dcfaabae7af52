/* SPDX-License-Identifier: MIT */
/*
 * Consents in the store (records/consents.h): one table, two kinds of key.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "idm/cleanup.h"
#include "records/consents.h"

#define PUBLISHER_KEY_PREFIX "publisher:"
#define CUSTOMER_KEY_PREFIX "customer:"

static int definitions_key(const char *publisher_id, char **ret) {
        return asprintf(ret, PUBLISHER_KEY_PREFIX "%s", publisher_id) < 0 ? -ENOMEM : 0;
}

int consent_answers_key(const char *customer_id, char **ret) {
        return asprintf(ret, CUSTOMER_KEY_PREFIX "%s", customer_id) < 0 ? -ENOMEM : 0;
}

int consent_definitions_prefetch(StoreTxn *t, const char *publisher_id) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = definitions_key(publisher_id, &key);
        return r < 0 ? r : store_prefetch(t, STORE_CONSENTS, key);
}

int consent_definitions_get(StoreTxn *t, const char *publisher_id, json_t **ret) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = definitions_key(publisher_id, &key);
        return r < 0 ? r : store_get(t, STORE_CONSENTS, key, ret);
}

int consent_definitions_put(StoreTxn *t, const char *publisher_id, json_t *rec) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = definitions_key(publisher_id, &key);
        return r < 0 ? r : store_put(t, STORE_CONSENTS, key, rec, STORE_PUT_DEFAULT);
}

int consent_answers_get(StoreTxn *t, const char *customer_id, json_t **ret) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = consent_answers_key(customer_id, &key);
        return r < 0 ? r : store_get(t, STORE_CONSENTS, key, ret);
}

int consent_answers_put(StoreTxn *t, const char *customer_id, json_t *rec) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = consent_answers_key(customer_id, &key);
        return r < 0 ? r : store_put(t, STORE_CONSENTS, key, rec, STORE_PUT_DEFAULT);
}

int consent_answers_delete(StoreTxn *t, const char *customer_id) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = consent_answers_key(customer_id, &key);
        if (r < 0)
                return r;
        r = store_del(t, STORE_CONSENTS, key);
        return r == -ENOENT ? 0 : r;
}
