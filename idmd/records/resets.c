/* SPDX-License-Identifier: MIT */
/*
 * The reset flow's record (records/resets.h): a timed record in STORE_TOKENS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/cleanup.h"
#include "records/customers.h"
#include "records/resets.h"
#include "sessions.h"

int reset_key(const char *publisher_id, const char *email, char **ret) {
        _cleanup_free_ char *index = NULL;
        char *key;
        int r;

        r = customer_email_key(publisher_id, email, &index);
        if (r < 0)
                return r;
        if (asprintf(&key, RESET_KIND ":%s", index) < 0)
                return -ENOMEM;
        if (strlen(key) > STORE_KEY_MAX) {
                free(key);
                return -E2BIG;
        }
        *ret = key;
        return 0;
}

int reset_get(StoreTxn *t, const char *key, json_t **ret) {
        return session_timed_get(t, RESET_KIND, key, ret);
}

int reset_put(StoreTxn *t, const char *key, json_t *rec) {
        return session_timed_put(t, RESET_KIND, key, rec);
}
