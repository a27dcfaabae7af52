/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the deletion of a customer in idmd/records/customers.c on a real store in a
 * temporary directory: customer_delete() deletes what keys lead to and queues a purge job; the
 * purge deletes every other record naming the customer (and a timed record's expiry entry), in
 * bounded steps whose cursor survives closing and reopening the store, and nothing of anyone
 * else.
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
#include "idmd/records/remote.h"
#include "idmd/records/unixusers.h"
#include "idmd/sessions.h"
#include "idmd/store.h"
#include "tests.h"

#define PUB "123456789"
#define LEFTOVERS 10
#define REMOTE_KEY REMOTE_KIND_REMOTE ":00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define REMOTE_DUE UINT64_C(1700000000000000)

static char dir[] = "/tmp/test-customers.XXXXXX";
static Store *store;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void reopen(void) {
        store = store_free(store);
        ASSERT_OK(store_open(dir, NULL, &store, NULL));
}

typedef struct Setup {
        char id[32], other_id[32];
} Setup;

static int create_one(StoreTxn *t, const char *email, char id[static 32]) {
        _cleanup_(json_decrefp) json_t *rec = json_pack("{s:s, s:s}", "publisherId", PUB, "email", email);
        UnixUidRange range = { .min = 5000, .max = 5999 };
        const char *taken = NULL;
        int r;

        if (!rec)
                return -ENOMEM;
        r = customer_create(t, rec, &range, &taken);
        if (r < 0)
                return r;
        (void) snprintf(id, 32, "%s", json_object_get_string(rec, "customerId"));
        return 0;
}

/* Two customers, and records in the token table that name each as only a walk finds them
 * (keyed by hash), plus one timed record of the first with its expiry entry. */
static int setup_work(StoreTxn *t, void *userdata) {
        Setup *s = userdata;
        _cleanup_(json_decrefp) json_t *pub = json_pack("{s:s, s:s}", "publisherId", PUB, "unixUsers", "none");
        _cleanup_(json_decrefp) json_t *remote = NULL;
        int r;

        if (!pub)
                return -ENOMEM;
        r = publisher_save(t, pub, false, NULL);
        if (r >= 0)
                r = create_one(t, "a@example.com", s->id);
        if (r >= 0)
                r = create_one(t, "b@example.com", s->other_id);
        for (unsigned i = 0; r >= 0 && i < 2 * LEFTOVERS; i++) {
                _cleanup_(json_decrefp) json_t *rec = json_pack("{s:s, s:s}", "customerId",
                                                                 i % 2 ? s->other_id : s->id, "type", "refresh");
                char key[80];

                (void) snprintf(key, sizeof key, "%064x", i * 7919u);   /* spread like hashes */
                r = rec ? store_put(t, STORE_TOKENS, key, rec, STORE_PUT_NO_OVERWRITE) : -ENOMEM;
        }
        if (r < 0)
                return r;
        remote = json_pack("{s:s, s:s, s:I}", "customerId", s->id, "publisherId", PUB, "expires",
                           (json_int_t) REMOTE_DUE);
        if (!remote)
                return -ENOMEM;
        r = store_put(t, STORE_TOKENS, REMOTE_KEY, remote, STORE_PUT_NO_OVERWRITE);
        if (r < 0)
                return r;
        return session_expiry_put(t, REMOTE_KIND_REMOTE, REMOTE_DUE, REMOTE_KEY);
}

static int delete_work(StoreTxn *t, void *userdata) {
        return customer_delete(t, userdata);
}

typedef struct Step {
        unsigned max, deleted;
} Step;

static int step_work(StoreTxn *t, void *userdata) {
        Step *s = userdata;

        return customer_purge_step(t, s->max, &s->deleted);
}

typedef struct Naming {
        const char *id;
        unsigned n;
} Naming;

static int count_naming(const char *key, json_t *value, void *userdata) {
        Naming *c = userdata;

        ASSERT_STREQ(json_object_get_string(value, "customerId"), c->id);
        c->n++;
        return 0;
}

static unsigned records_naming(const char *id) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        Naming c = { .id = id };

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(store_foreach_where(t, STORE_TOKENS, "customerId", id, count_naming, &c));
        return c.n;
}

static uint64_t pending(void) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        uint64_t n = 99;

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(customer_purges_pending(t, &n));
        return n;
}

static bool expiry_entry_exists(void) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        char key[256];

        (void) snprintf(key, sizeof key, "%s:%016llx:%s", REMOTE_KIND_REMOTE, (unsigned long long) REMOTE_DUE,
                        REMOTE_KEY);
        ASSERT_OK(store_read(store, &t));
        return store_exists(t, STORE_TOKEN_EXPIRY, key) == 1;
}

TEST(delete_then_purge) {
        Setup s = {};
        unsigned deleted = 0, steps = 0;
        int r;

        ASSERT_OK(store_transact(store, setup_work, &s));
        ASSERT_EQ(records_naming(s.id), LEFTOVERS + 1);
        ASSERT_TRUE(expiry_entry_exists());
        ASSERT_EQ(pending(), 0u);

        /* Before the reply: the customer record and its e-mail index entry; the rest is queued. */
        ASSERT_EQ(store_transact(store, delete_work, s.id), 2);
        ASSERT_EQ(pending(), 1u);
        ASSERT_EQ(records_naming(s.id), LEFTOVERS + 1);
        ASSERT_EQ(store_transact(store, delete_work, s.id), -ENOENT);

        /* Steps of at most 4 records, the store closed and reopened between them: each goes on
         * where the last one stopped. */
        do {
                Step step = { .max = 4 };

                r = store_transact(store, step_work, &step);
                ASSERT_TRUE(r >= 0);
                deleted += step.deleted;
                ASSERT_TRUE(step.deleted <= 4);
                steps++;
                ASSERT_TRUE(steps < 100);
                reopen();
        } while (r > 0);
        ASSERT_TRUE(steps >= (2 * LEFTOVERS + 1) / 4);
        ASSERT_EQ(deleted, LEFTOVERS + 1);
        ASSERT_EQ(records_naming(s.id), 0u);
        ASSERT_FALSE(expiry_entry_exists());            /* the timed record went with its entry */
        ASSERT_EQ(records_naming(s.other_id), LEFTOVERS); /* nothing of anyone else */
        ASSERT_EQ(pending(), 0u);

        /* Nothing queued: a step does nothing. */
        {
                Step step = { .max = 4 };

                ASSERT_EQ(store_transact(store, step_work, &step), 0);
                ASSERT_EQ(step.deleted, 0u);
        }
}

int main(void) {
        ASSERT_TRUE(mkdtemp(dir));
        ASSERT_OK(store_open(dir, NULL, &store, NULL));
        RUN(delete_then_purge);
        store = store_free(store);
        (void) nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}
