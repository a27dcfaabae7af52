/* SPDX-License-Identifier: MIT */
/*
 * Customers as Unix users in the store (records/unixusers.h): the uid counter, the uid index and
 * the Unix fields of customer and publisher records.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/unixusers.h"

#define UID_COUNTER_KEY "unixUidNext"   /* in STORE_META: {next}: the lowest uid never given */
#define UID_KEY_MAX 16

static const char *const unix_users_table[_UNIX_USERS_MAX] = {
        [UNIX_USERS_NONE] = "none",
        [UNIX_USERS_ENABLED] = "enabled",
        [UNIX_USERS_ALL] = "all",
};

UnixUsers unix_users_from_string(const char *s) {
        for (UnixUsers u = 0; s && u < _UNIX_USERS_MAX; u++)
                if (streq(unix_users_table[u], s))
                        return u;
        return _UNIX_USERS_INVALID;
}

const char *unix_users_to_string(UnixUsers u) {
        return u >= 0 && u < _UNIX_USERS_MAX ? unix_users_table[u] : NULL;
}

UnixUsers publisher_unix_users(json_t *publisher) {
        UnixUsers u = unix_users_from_string(json_object_get_string(publisher, "unixUsers"));

        return u < 0 ? UNIX_USERS_NONE : u;
}

uint32_t customer_unix_uid(json_t *customer) {
        json_t *v = json_object_get(customer, "unixUid");

        if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT32_MAX)
                return 0;
        return (uint32_t) json_integer_value(v);
}

bool customer_is_unix_user(json_t *customer, json_t *publisher) {
        if (customer_unix_uid(customer) == 0)
                return false;
        switch (publisher_unix_users(publisher)) {
        case UNIX_USERS_ALL:
                return true;
        case UNIX_USERS_ENABLED:
                return json_is_true(json_object_get(customer, "unixEnabled"));
        default:
                return false;
        }
}

static void uid_key(uint32_t uid, char buf[static UID_KEY_MAX]) {
        /* Fixed width, so key order is numeric order. */
        (void) snprintf(buf, UID_KEY_MAX, "%010" PRIu32, uid);
}

int unix_uid_next(StoreTxn *t, uint64_t *ret) {
        _cleanup_(json_decrefp) json_t *counter = NULL;
        json_t *v;
        int r;

        r = store_get(t, STORE_META, UID_COUNTER_KEY, &counter);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        if (r < 0)
                return r;
        v = json_object_get(counter, "next");
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EPROTO;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

int customer_unix_uid_assign(StoreTxn *t, json_t *rec, const UnixUidRange *range) {
        _cleanup_(json_decrefp) json_t *link = NULL, *counter = NULL;
        const char *id = json_object_get_string(rec, "customerId");
        uint64_t next;
        int r;

        if (!id || range->min == 0 || range->min > range->max)
                return -EINVAL;
        if (customer_unix_uid(rec) != 0)
                return 0;
        r = unix_uid_next(t, &next);
        if (r < 0)
                return r;
        if (next < range->min)
                next = range->min;
        link = json_pack("{s:s}", "customerId", id);
        if (!link)
                return -ENOMEM;
        for (;; next++) {
                char key[UID_KEY_MAX];

                if (next > range->max)
                        return -ERANGE;
                uid_key((uint32_t) next, key);
                /* Taken only if the counter was set back by hand: never hand out a uid twice. */
                r = store_put(t, STORE_UNIX_UIDS, key, link, STORE_PUT_NO_OVERWRITE);
                if (r != -EEXIST)
                        break;
        }
        if (r < 0)
                return r;
        counter = json_pack("{s:I}", "next", (json_int_t) (next + 1));
        if (!counter)
                return -ENOMEM;
        r = store_put(t, STORE_META, UID_COUNTER_KEY, counter, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        if (json_object_set_new(rec, "unixUid", json_integer((json_int_t) next)) < 0)
                return -ENOMEM;
        r = customer_put(t, rec);
        return r < 0 ? r : 1;
}

int customer_unix_on_create(StoreTxn *t, json_t *rec, const UnixUidRange *range) {
        _cleanup_(json_decrefp) json_t *pub = NULL;
        int r;

        r = publisher_get(t, json_object_get_string(rec, "publisherId"), &pub);
        if (r < 0)
                return r;
        if (publisher_unix_users(pub) != UNIX_USERS_ALL)
                return 0;
        return customer_unix_uid_assign(t, rec, range);
}

typedef struct AssignAll {
        StoreTxn *t;
        const UnixUidRange *range;
        json_t *ids;            /* customers without a uid, collected before writing */
} AssignAll;

static int collect_without_uid(json_t *customer, void *userdata) {
        AssignAll *a = userdata;

        if (customer_unix_uid(customer) != 0)
                return 0;
        return json_array_append(a->ids, json_object_get(customer, "customerId")) < 0 ? -ENOMEM : 0;
}

int publisher_unix_uid_assign_all(StoreTxn *t, const char *publisher_id, const UnixUidRange *range) {
        _cleanup_(json_decrefp) json_t *ids = json_array();
        size_t i;
        json_t *id;
        int r, n = 0;

        if (!ids)
                return -ENOMEM;
        /* Named first, written after: no writes while the walk is under way. */
        r = customers_foreach_by_email(t, publisher_id, NULL, NULL, collect_without_uid,
                                       &(AssignAll) { .t = t, .range = range, .ids = ids });
        if (r < 0)
                return r;
        json_array_foreach(ids, i, id) {
                _cleanup_(json_decrefp) json_t *rec = NULL;

                r = customer_get(t, json_string_value(id), &rec);
                if (r < 0)
                        return r;
                r = customer_unix_uid_assign(t, rec, range);
                if (r < 0)
                        return r;
                n += r;
        }
        return n;
}

int customer_find_by_unix_uid(StoreTxn *t, uint32_t uid, json_t **ret) {
        _cleanup_(json_decrefp) json_t *link = NULL, *rec = NULL;
        char key[UID_KEY_MAX];
        const char *id;
        int r;

        uid_key(uid, key);
        r = store_get(t, STORE_UNIX_UIDS, key, &link);
        if (r < 0)
                return r;
        id = json_object_get_string(link, "customerId");
        if (!id)
                return -EPROTO;
        r = customer_get(t, id, &rec);
        if (r < 0)
                return r;
        if (customer_unix_uid(rec) != uid)
                return -ENOENT;         /* a stale entry names nobody */
        *ret = TAKE_PTR(rec);
        return 0;
}

int customer_unix_uid_key(json_t *customer, char **ret) {
        uint32_t uid = customer_unix_uid(customer);
        char key[UID_KEY_MAX] = "";

        if (uid != 0)
                uid_key(uid, key);
        *ret = strdup(key);
        return *ret ? 0 : -ENOMEM;
}
