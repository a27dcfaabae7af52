/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/records/unixusers.c on a real store in a temporary directory: uids are
 * drawn from the range in order, once per customer, never again after the customer is deleted
 * (the counter only goes up, also when the range is moved down), the uid index finds the
 * customer and forgets it with its deletion, a used-up range is -ERANGE with nothing written,
 * and the publisher's setting decides who is a Unix user.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idmd/records/customers.h"
#include "idmd/records/publishers.h"
#include "idmd/records/unixusers.h"
#include "idmd/store.h"
#include "tests.h"

#define PUB "123456789"

static Store *store;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

typedef struct Op {
        const char *email;
        const char *customer_id;        /* assign/delete: the customer */
        UnixUidRange range;
        const char *unix_users;         /* publisher: its setting */
        uint32_t uid;                   /* out */
        char id[32];                    /* out: a created customer's id */
} Op;

static int publisher_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;
        _cleanup_(json_decrefp) json_t *rec = json_pack("{s:s, s:s}", "publisherId", PUB, "unixUsers", op->unix_users);

        if (!rec)
                return -ENOMEM;
        return publisher_save(t, rec, false, NULL);
}

static int create_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;
        _cleanup_(json_decrefp) json_t *rec = json_pack("{s:s, s:s}", "publisherId", PUB, "email", op->email);
        const char *taken = NULL;
        int r;

        if (!rec)
                return -ENOMEM;
        r = customer_create(t, rec, &op->range, &taken);
        if (r < 0)
                return r;
        (void) snprintf(op->id, sizeof(op->id), "%s", json_object_get_string(rec, "customerId"));
        op->uid = customer_unix_uid(rec);
        return 0;
}

static int assign_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = customer_get(t, op->customer_id, &rec);
        if (r < 0)
                return r;
        r = customer_unix_uid_assign(t, rec, &op->range);
        op->uid = customer_unix_uid(rec);
        return r;
}

static int delete_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;

        return customer_delete(t, op->customer_id);
}

static void set_publisher(const char *unix_users) {
        ASSERT_OK(store_transact(store, publisher_work, &(Op) { .unix_users = unix_users }));
}

static char *create(const char *email, UnixUidRange range, uint32_t *ret_uid) {
        Op op = { .email = email, .range = range };

        ASSERT_OK(store_transact(store, create_work, &op));
        *ret_uid = op.uid;
        return strdup(op.id);
}

static int assign(const char *id, UnixUidRange range, uint32_t *ret_uid) {
        Op op = { .customer_id = id, .range = range };
        int r = store_transact(store, assign_work, &op);

        *ret_uid = op.uid;
        return r;
}

static uint32_t found_uid(uint32_t uid) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *rec = NULL;

        ASSERT_OK(store_read(store, &t));
        if (customer_find_by_unix_uid(t, uid, &rec) < 0)
                return 0;
        return customer_unix_uid(rec);
}

static uint64_t counter(void) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        uint64_t next;

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(unix_uid_next(t, &next));
        return next;
}

TEST(never_reused) {
        UnixUidRange range = { .min = 5000, .max = 5002 };
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        uint32_t uid;

        set_publisher("enabled");
        ASSERT_EQ(counter(), 0u);
        a = create("a@example.com", range, &uid);
        ASSERT_EQ(uid, 0u);                     /* "enabled": none at creation */
        ASSERT_EQ(assign(a, range, &uid), 1);
        ASSERT_EQ(uid, 5000u);
        ASSERT_EQ(assign(a, range, &uid), 0);   /* once */
        ASSERT_EQ(uid, 5000u);
        ASSERT_EQ(found_uid(5000), 5000u);
        ASSERT_EQ(counter(), 5001u);

        /* Deleted: the uid names nobody and is never drawn again. */
        ASSERT_TRUE(store_transact(store, delete_work, &(Op) { .customer_id = a }) > 0);
        ASSERT_EQ(found_uid(5000), 0u);
        b = create("a@example.com", range, &uid);
        ASSERT_EQ(assign(b, range, &uid), 1);
        ASSERT_EQ(uid, 5001u);
        /* A range moved down does not move the counter back. */
        c = create("c@example.com", range, &uid);
        ASSERT_EQ(assign(c, (UnixUidRange) { .min = 1000, .max = 5002 }, &uid), 1);
        ASSERT_EQ(uid, 5002u);
        /* Used up: -ERANGE, nothing written. */
        d = create("d@example.com", range, &uid);
        ASSERT_EQ(assign(d, range, &uid), -ERANGE);
        ASSERT_EQ(uid, 0u);
        ASSERT_EQ(counter(), 5003u);
        ASSERT_EQ(found_uid(5003), 0u);
}

TEST(all_and_visibility) {
        UnixUidRange range = { .min = 7000, .max = 7999 };
        _cleanup_(json_decrefp) json_t *pub = NULL, *cust = NULL;
        _cleanup_free_ char *e = NULL;
        uint32_t uid;

        set_publisher("all");
        e = create("e@example.com", range, &uid);
        ASSERT_EQ(uid, 7000u);                  /* "all": drawn at creation */

        pub = json_pack("{s:s}", "unixUsers", "enabled");
        cust = json_pack("{s:i}", "unixUid", 7000);
        ASSERT_FALSE(customer_is_unix_user(cust, pub));
        ASSERT_OK(json_object_set_new(cust, "unixEnabled", json_true()));
        ASSERT_TRUE(customer_is_unix_user(cust, pub));
        ASSERT_OK(json_object_set_new(pub, "unixUsers", json_string("none")));
        ASSERT_FALSE(customer_is_unix_user(cust, pub));
        ASSERT_OK(json_object_set_new(pub, "unixUsers", json_string("all")));
        ASSERT_TRUE(customer_is_unix_user(cust, pub));
        ASSERT_OK(json_object_del(cust, "unixUid"));
        ASSERT_FALSE(customer_is_unix_user(cust, pub));   /* no uid, no Unix user */
        ASSERT_FALSE(customer_is_unix_user(cust, NULL));

        ASSERT_EQ(unix_users_from_string("all"), UNIX_USERS_ALL);
        ASSERT_EQ(unix_users_from_string("All"), _UNIX_USERS_INVALID);
        ASSERT_EQ(unix_users_from_string(NULL), _UNIX_USERS_INVALID);
        ASSERT_STREQ(unix_users_to_string(UNIX_USERS_NONE), "none");
        ASSERT_TRUE(unix_users_to_string(_UNIX_USERS_MAX) == NULL);
}

int main(void) {
        char dir[] = "/tmp/test-unixusers.XXXXXX";

        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, NULL, &store, NULL));
        RUN(never_reused);
        RUN(all_and_visibility);
        store = store_free(store);
        (void) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}
