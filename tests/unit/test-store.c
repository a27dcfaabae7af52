/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of idmd/store.c on real LMDB environments in temporary directories: records,
 * iteration and pagination, rollback, durability across reopen, schema stamps, map growth,
 * a full store, backups and the unit-of-work rules; and submitted units on an event loop, run
 * in slices that take turns with the loop's other work and reported together at their commit.
 *
 * With IDM_TEST_PG set (tests/pg/with-cluster.sh does), the same tests of the interface run on
 * the PostgreSQL backend (idmd/store-pg.c) against that database, emptied before each test,
 * and so do the tests of what only PostgreSQL has: its SQL schema and migrations, concurrent
 * transactions of two instances, walks over several pages, a database that cannot be reached.
 * LMDB's map, its backups and its slices are tested on LMDB only.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <systemd/sd-event.h>

#include "idm/cleanup.h"
#include "idmd/log.h"
#include "idmd/coro.h"
#include "idmd/store-pg.h"
#include "idmd/store.h"
#include "tests.h"

#define KIB UINT64_C(1024)
#define MIB (KIB * KIB)

/* The PostgreSQL database of this run (IDM_TEST_PG), or NULL: the tests run on LMDB. */
static const char *pg;

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path);
}

/* Runs SQL on the test database, outside idmd's store (to empty it, or to damage it). */
static void pg_sql(const char *sql) {
        PGconn *c = PQconnectdb(pg);
        PGresult *res;

        ASSERT_TRUE(PQstatus(c) == CONNECTION_OK);
        res = PQexec(c, sql);
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(c));
        ASSERT_TRUE(PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK);
        PQclear(res);
        PQfinish(c);
}

/* A place for a new store: a temporary directory, and on PostgreSQL an empty database. */
static char *tmpdir_new(void) {
        char *d = strdup("/tmp/test-store-XXXXXX");

        ASSERT_TRUE(d);
        ASSERT_TRUE(mkdtemp(d));
        if (pg)
                pg_sql("SET client_min_messages = warning; DROP TABLE IF EXISTS idm_records, idm_schema");
        return d;
}

/* store_open() of dir, or on PostgreSQL store_open_postgresql() of the test database. */
static int reopen(const char *dir, Store **ret, unsigned *ret_version) {
        return pg ? store_open_postgresql(pg, 0, ret, ret_version) : store_open(dir, NULL, ret, ret_version);
}

static void tmpdir_removep(char **d) {
        if (!*d)
                return;
        ASSERT_EQ(nftw(*d, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
        free(*d);
}

static Store *open_ok(const char *dir, uint64_t initial, uint64_t max) {
        StoreOptions o = { .map_size_initial = initial, .map_size_max = max };
        Store *s = NULL;

        if (pg)
                ASSERT_OK(store_open_postgresql(pg, 0, &s, NULL));
        else
                ASSERT_OK(store_open(dir, &o, &s, NULL));
        ASSERT_TRUE(s);
        return s;
}

/* A record {"n": n, "pad": "<size bytes>"}. */
static json_t *record_new(int n, size_t size) {
        _cleanup_(freep) char *pad = malloc(size + 1);
        json_t *j;

        ASSERT_TRUE(pad);
        memset(pad, 'x', size);
        pad[size] = 0;
        j = json_pack("{s:i,s:s}", "n", n, "pad", pad);
        ASSERT_TRUE(j);
        return j;
}

static int record_n(json_t *j) {
        json_t *n = json_object_get(j, "n");

        ASSERT_TRUE(json_is_integer(n));
        return (int) json_integer_value(n);
}

static uint64_t entries(Store *s, StoreTable t) {
        StoreStats st;

        ASSERT_OK(store_stats(s, &st));
        return st.entries[t];
}

/* Writes records "<prefix><first..first+count-1>" of 'size' bytes into 'table'. */
typedef struct Fill {
        StoreTable table;
        const char *prefix;
        int first, count;
        size_t size;
        bool swallow;           /* ignore store_put() errors and return 0 anyway */
        unsigned runs;
} Fill;

static int fill_work(StoreTxn *t, void *userdata) {
        Fill *f = userdata;

        f->runs++;
        for (int i = f->first; i < f->first + f->count; i++) {
                _cleanup_(json_decrefp) json_t *j = record_new(i, f->size);
                char key[64];
                int r;

                (void) snprintf(key, sizeof(key), "%s%06d", f->prefix, i);
                r = store_put(t, f->table, key, j, STORE_PUT_DEFAULT);
                if (r < 0 && !f->swallow)
                        return r;
        }
        return 0;
}

static int fill(Store *s, StoreTable table, const char *prefix, int first, int count, size_t size) {
        Fill f = { .table = table, .prefix = prefix, .first = first, .count = count, .size = size };

        return store_transact(s, fill_work, &f);
}

static void check_filled(Store *s, StoreTable table, const char *prefix, int first, int count) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;

        ASSERT_OK(store_read(s, &t));
        for (int i = first; i < first + count; i++) {
                _cleanup_(json_decrefp) json_t *j = NULL;
                char key[64];

                (void) snprintf(key, sizeof(key), "%s%06d", prefix, i);
                ASSERT_OK(store_get(t, table, key, &j));
                ASSERT_EQ(record_n(j), i);
        }
}

/* ---- records ---- */

static int put_basic(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *a = json_pack("{s:s,s:i}", "name", "Ann", "age", 41);
        _cleanup_(json_decrefp) json_t *b = json_pack("{s:s}", "name", "Bob");
        _cleanup_(json_decrefp) json_t *arr = json_pack("[i]", 1);
        _cleanup_(json_decrefp) json_t *got = NULL;

        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "c1", a, STORE_PUT_DEFAULT));
        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "c2", b, STORE_PUT_NO_OVERWRITE));
        ASSERT_EQ(store_put(t, STORE_CUSTOMERS, "c2", a, STORE_PUT_NO_OVERWRITE), -EEXIST);
        ASSERT_EQ(store_put(t, STORE_CUSTOMERS, "c3", arr, STORE_PUT_DEFAULT), -EINVAL);
        ASSERT_EQ(store_put(t, STORE_CUSTOMERS, "c3", NULL, STORE_PUT_DEFAULT), -EINVAL);
        ASSERT_EQ(store_put(t, STORE_CUSTOMERS, "c3", a, 1 << 5), -EINVAL);
        ASSERT_EQ(store_put(t, _STORE_TABLE_MAX, "c3", a, STORE_PUT_DEFAULT), -EINVAL);
        ASSERT_EQ(store_put(t, _STORE_TABLE_INVALID, "c3", a, STORE_PUT_DEFAULT), -EINVAL);

        /* The unit of work sees its own writes; -EEXIST/-EINVAL did not spoil it. */
        ASSERT_OK(store_get(t, STORE_CUSTOMERS, "c2", &got));
        ASSERT_STREQ(json_string_value(json_object_get(got, "name")), "Bob");
        ASSERT_TRUE(store_exists(t, STORE_CUSTOMERS, "c1"));
        ASSERT_FALSE(store_exists(t, STORE_OFFERS, "c1"));

        /* Overwrite is the default. */
        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "c2", a, STORE_PUT_DEFAULT));
        ASSERT_OK(store_del(t, STORE_CUSTOMERS, "c2"));
        ASSERT_EQ(store_del(t, STORE_CUSTOMERS, "c2"), -ENOENT);
        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "c2", b, STORE_PUT_NO_OVERWRITE));

        /* Whatever jansson can hold comes back: NUL inside a string, UTF-8, numbers, nesting. */
        _cleanup_(json_decrefp) json_t *odd = json_pack("{s:s%,s:s,s:f,s:I,s:n,s:{s:[b,b]}}",
                                                         "nul", "a\0b", (size_t) 3, "utf8", "Zoë ✓",
                                                         "real", 0.1, "big", (json_int_t) INT64_MAX,
                                                         "null", "deep", "x", true, false);
        ASSERT_TRUE(odd);
        ASSERT_OK(store_put(t, STORE_CAPTURE, "odd", odd, STORE_PUT_DEFAULT));
        json_decref(TAKE_PTR(got));
        ASSERT_OK(store_get(t, STORE_CAPTURE, "odd", &got));
        ASSERT_TRUE(json_equal(got, odd));
        ASSERT_EQ(json_string_length(json_object_get(got, "nul")), 3);
        return 7;
}

TEST(records) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(json_decrefp) json_t *a = NULL, *b = NULL, *expected = NULL;
        _cleanup_(json_decrefp) json_t *v = json_pack("{s:b}", "x", true);
        StoreTxn *t = NULL;

        ASSERT_EQ(store_transact(s, put_basic, NULL), 7);

        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_get(t, STORE_CUSTOMERS, "c1", &a));
        ASSERT_OK(store_get(t, STORE_CUSTOMERS, "c2", &b));
        ASSERT_EQ(store_get(t, STORE_CUSTOMERS, "c3", &v), -ENOENT);
        ASSERT_EQ(store_get(t, STORE_PUBLISHERS, "c1", &v), -ENOENT);
        ASSERT_TRUE(store_exists(t, STORE_CUSTOMERS, "c2"));
        ASSERT_FALSE(store_exists(t, STORE_CUSTOMERS, "c3"));
        ASSERT_EQ(store_exists(t, STORE_CUSTOMERS, ""), 0);      /* no key could be one */
        ASSERT_EQ(store_put(t, STORE_CUSTOMERS, "c9", v, STORE_PUT_DEFAULT), -EROFS);
        ASSERT_EQ(store_del(t, STORE_CUSTOMERS, "c1"), -EROFS);
        t = store_txn_free(t);
        ASSERT_TRUE(!t);

        /* Records outlive their snapshot. */
        expected = json_pack("{s:s,s:i}", "name", "Ann", "age", 41);
        ASSERT_TRUE(json_equal(a, expected));
        ASSERT_STREQ(json_string_value(json_object_get(b, "name")), "Bob");
        ASSERT_EQ(json_object_size(b), 1);

        ASSERT_EQ(entries(s, STORE_CUSTOMERS), 2);

        ASSERT_STREQ(store_table_to_string(STORE_META), "meta");
        ASSERT_STREQ(store_table_to_string(STORE_CUSTOMERS_BY_EXTERNAL_ID), "customers_by_external_id");
        ASSERT_STREQ(store_table_to_string(STORE_OUTBOX), "outbox");
        ASSERT_TRUE(!store_table_to_string(_STORE_TABLE_MAX));
        ASSERT_TRUE(!store_table_to_string(_STORE_TABLE_INVALID));

        ASSERT_TRUE(!store_free(NULL));
        ASSERT_TRUE(!store_txn_free(NULL));
}

/* ---- the cache of decoded records ---- */

typedef struct CachePut {
        StoreTable table;
        const char *key;
        json_t *value;          /* NULL: delete */
        bool fail;              /* read the record back, then fail the unit */
} CachePut;

static int cache_put(StoreTxn *t, void *userdata) {
        CachePut *p = userdata;
        _cleanup_(json_decrefp) json_t *got = NULL;

        if (!p->value)
                return store_del(t, p->table, p->key);
        ASSERT_OK(store_put(t, p->table, p->key, p->value, STORE_PUT_DEFAULT));
        if (!p->fail)
                return 0;
        ASSERT_OK(store_get(t, p->table, p->key, &got));        /* decoded (and kept) in the unit */
        ASSERT_TRUE(json_equal(got, p->value));
        return -EIO;
}

static void cache_write(Store *s, StoreTable table, const char *key, json_t *value, bool fail) {
        CachePut p = { .table = table, .key = key, .value = value, .fail = fail };

        ASSERT_EQ(store_transact(s, cache_put, &p), fail ? -EIO : 0);
}

/* Reads key and checks it against expected (NULL: absent); returns the cache's hits and misses
 * that read added, as hits * 10 + misses. */
static int cache_read(Store *s, StoreTable table, const char *key, json_t *expected) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *got = NULL;
        StoreStats before, after;

        ASSERT_OK(store_stats(s, &before));
        ASSERT_OK(store_read(s, &t));
        if (expected) {
                ASSERT_OK(store_get(t, table, key, &got));
                ASSERT_TRUE(json_equal(got, expected));
                /* The caller owns what it got: changing it changes nothing kept. */
                ASSERT_OK(json_object_set_new(got, "changed", json_true()));
                ASSERT_OK(json_object_del(got, "name"));
        } else
                ASSERT_EQ(store_get(t, table, key, &got), -ENOENT);
        ASSERT_OK(store_stats(s, &after));
        ASSERT_TRUE(after.record_cache_charged <= RECORD_CACHE_BUDGET);
        return (int) ((after.record_cache_hits - before.record_cache_hits) * 10 +
                      (after.record_cache_misses - before.record_cache_misses));
}

TEST(record_cache) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(json_decrefp) json_t *ann = json_pack("{s:s,s:i}", "name", "Ann", "n", 1);
        _cleanup_(json_decrefp) json_t *bea = json_pack("{s:s,s:i}", "name", "Bea", "n", 2);
        _cleanup_(json_decrefp) json_t *cid = json_pack("{s:s,s:i}", "name", "Cid", "n", 3);
        _cleanup_(json_decrefp) json_t *nul = json_pack("{s:s%}", "name", "a\0b", (size_t) 3);
        _cleanup_(json_decrefp) json_t *big = NULL, *many = NULL;
        _cleanup_free_ char *filler = NULL;

        /* Decoded once, then copies of what it decoded to. */
        cache_write(s, STORE_CUSTOMERS, "c1", ann, false);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", ann), 1);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", ann), 10);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", ann), 10);

        /* The same key in another table is another record. */
        cache_write(s, STORE_OFFERS, "c1", bea, false);
        ASSERT_EQ(cache_read(s, STORE_OFFERS, "c1", bea), 1);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", ann) / 10, 1);

        /* Overwritten: the new bytes are decoded. */
        cache_write(s, STORE_CUSTOMERS, "c1", bea, false);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", bea), 1);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", bea), 10);

        /* A unit that read its own write and then failed: what was kept for it is not served. */
        cache_write(s, STORE_CUSTOMERS, "c1", cid, true);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", bea), 1);

        /* Deleted: gone, whatever was kept. */
        cache_write(s, STORE_CUSTOMERS, "c1", NULL, false);
        ASSERT_EQ(cache_read(s, STORE_CUSTOMERS, "c1", NULL), 0);

        /* A NUL inside a string survives the copy. */
        cache_write(s, STORE_CAPTURE, "nul", nul, false);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "nul", nul), 1);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "nul", nul), 10);

        /* A record longer than 1 KiB is decoded every time and never kept. */
        filler = malloc(1100);
        ASSERT_TRUE(filler);
        memset(filler, 'x', 1099);
        filler[1099] = 0;
        big = json_pack("{s:s}", "name", filler);
        cache_write(s, STORE_CAPTURE, "big", big, false);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "big", big), 0);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "big", big), 0);

        /* So is one of more than 64 JSON values, however short: 65 values of a few bytes each
         * can take 15 KiB once decoded. 64 are kept. */
        many = json_pack("{s:s,s:[]}", "name", "Many", "v");
        for (int i = 0; i < 62; i++)
                ASSERT_OK(json_array_append_new(json_object_get(many, "v"), json_object()));
        cache_write(s, STORE_CAPTURE, "many", many, false);     /* root, 2 members, 62 objects */
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "many", many), 1);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "many", many), 1);
        ASSERT_OK(json_array_remove(json_object_get(many, "v"), 0));
        cache_write(s, STORE_CAPTURE, "many", many, false);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "many", many), 1);
        ASSERT_EQ(cache_read(s, STORE_CAPTURE, "many", many), 10);
}

/* Records that each count 16 KiB against the cache's 1 MiB: it keeps about 64 of them. */
static int cache_fill(StoreTxn *t, void *userdata) {
        for (int i = 0; i < 100; i++) {
                _cleanup_(json_decrefp) json_t *v = json_pack("{s:i,s:[]}", "n", i, "v");
                char key[16];

                for (int k = 0; k < 61; k++)
                        ASSERT_OK(json_array_append_new(json_object_get(v, "v"), json_integer(k)));
                (void) snprintf(key, sizeof(key), "b%03d", i);
                ASSERT_OK(store_put(t, STORE_CAPTURE, key, v, STORE_PUT_DEFAULT));
        }
        return 0;
}

TEST(record_cache_bound) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        StoreStats st;
        unsigned kept;

        ASSERT_OK(store_transact(s, cache_fill, NULL));
        ASSERT_OK(store_read(s, &t));
        for (int round = 0; round < 2; round++)
                for (int i = 0; i < 100; i++) {
                        _cleanup_(json_decrefp) json_t *got = NULL;
                        char key[16];

                        (void) snprintf(key, sizeof(key), "b%03d", i);
                        ASSERT_OK(store_get(t, STORE_CAPTURE, key, &got));
                        ASSERT_EQ(json_integer_value(json_object_get(got, "n")), i);
                        ASSERT_EQ(json_array_size(json_object_get(got, "v")), 61);
                }
        ASSERT_OK(store_stats(s, &st));
        /* 64 values (root, 2 members, 61 elements) and about 180 bytes: about 16,550 each. */
        ASSERT_TRUE(st.record_cache_charged <= RECORD_CACHE_BUDGET);
        kept = st.record_cache_entries;
        ASSERT_TRUE(kept <= RECORD_CACHE_BUDGET / (RECORD_CACHE_VALUES_MAX * RECORD_CACHE_VALUE_COST));
        ASSERT_TRUE(kept >= 50);        /* 100 keys over 512 slots share few of them */
        ASSERT_TRUE(st.record_cache_charged >= (uint64_t) kept * RECORD_CACHE_VALUES_MAX * RECORD_CACHE_VALUE_COST);
        /* The second round found most of the kept ones (a slot two keys share holds the later). */
        ASSERT_EQ(st.record_cache_hits + st.record_cache_misses, 200);
        ASSERT_TRUE(st.record_cache_hits >= 40);
        ASSERT_TRUE(st.record_cache_hits <= kept);
}

/* ---- keys ---- */

static int put_keys(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *v = json_object();
        char key[STORE_KEY_MAX + 2];

        ASSERT_EQ(store_put(t, STORE_TOKENS, "", v, STORE_PUT_DEFAULT), -EINVAL);
        ASSERT_EQ(store_put(t, STORE_TOKENS, NULL, v, STORE_PUT_DEFAULT), -EINVAL);
        ASSERT_EQ(store_del(t, STORE_TOKENS, ""), -EINVAL);

        memset(key, 'k', sizeof(key) - 1);
        key[sizeof(key) - 1] = 0;       /* STORE_KEY_MAX + 1 bytes */
        ASSERT_EQ(store_put(t, STORE_TOKENS, key, v, STORE_PUT_DEFAULT), -E2BIG);
        ASSERT_EQ(store_del(t, STORE_TOKENS, key), -E2BIG);
        ASSERT_FALSE(store_exists(t, STORE_TOKENS, key));

        key[STORE_KEY_MAX] = 0;         /* STORE_KEY_MAX bytes: fine */
        ASSERT_OK(store_put(t, STORE_TOKENS, key, v, STORE_PUT_DEFAULT));
        ASSERT_TRUE(store_exists(t, STORE_TOKENS, key));
        ASSERT_OK(store_put(t, STORE_TOKENS, "x", v, STORE_PUT_DEFAULT));
        return 0;
}

/* A fresh put (STORE_PUT_FRESH) whose key exists fails the whole unit with -EEXIST, whether the
 * clash is told at once (LMDB), by the unit's next call or by its commit (PostgreSQL sends such a
 * put with the next statement), and even when the unit's function swallows the error. */
typedef struct Fresh {
        const char *mode;
        int result;
} Fresh;

static int fresh_work(StoreTxn *t, void *userdata) {
        Fresh *f = userdata;
        _cleanup_(json_decrefp) json_t *v = json_pack("{s:s}", "by", f->mode), *got = NULL;
        int r;

        if (streq(f->mode, "first")) {
                ASSERT_OK(store_put(t, STORE_TOKENS, "f1", v, STORE_PUT_FRESH));
                ASSERT_OK(store_get(t, STORE_TOKENS, "f1", &got));
                ASSERT_STREQ(json_string_value(json_object_get(got, "by")), "first");
                return 1;
        }
        ASSERT_OK(store_put(t, STORE_OUTBOX, "before", v, STORE_PUT_DEFAULT));
        r = store_put(t, STORE_TOKENS, "f1", v, STORE_PUT_FRESH);
        ASSERT_TRUE(r == 0 || r == -EEXIST);    /* LMDB tells at once, PostgreSQL later */
        (void) store_put(t, STORE_OUTBOX, "after", v, STORE_PUT_DEFAULT);
        if (streq(f->mode, "told-later"))
                ASSERT_EQ(store_get(t, STORE_OUTBOX, "before", &got), -EEXIST);
        return 0;       /* as if the clash had gone unnoticed */
}

static void fresh_done(int r, void *userdata) {
        ((Fresh *) userdata)->result = r;
}

static void fresh_check(Store *s) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *got = NULL;

        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_get(t, STORE_TOKENS, "f1", &got));
        ASSERT_STREQ(json_string_value(json_object_get(got, "by")), "first");
        ASSERT_FALSE(store_exists(t, STORE_OUTBOX, "before"));
        ASSERT_FALSE(store_exists(t, STORE_OUTBOX, "after"));
}

static int fresh_bad_flags(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *v = json_object();

        return store_put(t, STORE_TOKENS, "f2", v, STORE_PUT_FRESH | STORE_PUT_NO_OVERWRITE);
}

TEST(fresh_put) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        Fresh first = { .mode = "first" }, later = { .mode = "told-later" };
        Fresh at_commit = { .mode = "told-at-commit" }, batched = { .mode = "told-at-commit", .result = 1 };

        ASSERT_EQ(store_transact(s, fresh_work, &first), 1);
        ASSERT_EQ(store_transact(s, fresh_work, &later), -EEXIST);
        fresh_check(s);
        ASSERT_EQ(store_transact(s, fresh_work, &at_commit), -EEXIST);
        fresh_check(s);
        /* Submitted without a loop: the batch path (PostgreSQL: a savepoint per unit). */
        ASSERT_OK(store_submit(s, fresh_work, fresh_done, &batched));
        store_flush(s);
        ASSERT_EQ(batched.result, -EEXIST);
        fresh_check(s);
        ASSERT_EQ(store_transact(s, fresh_bad_flags, NULL), -EINVAL);
}

/* store_prefetch(): a hint only. Reads take the answer sent ahead, a write of the key in between
 * makes them read again, and what is never asked for (or refused) changes nothing. */
static int prefetch_setup(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *one = json_pack("{s:i}", "n", 1), *two = json_pack("{s:i}", "n", 2);

        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "a", one, STORE_PUT_DEFAULT));
        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "b", two, STORE_PUT_DEFAULT));
        return 0;
}

static int prefetch_restore_b(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *two = json_pack("{s:i}", "n", 2);

        return store_put(t, STORE_CUSTOMERS, "b", two, STORE_PUT_DEFAULT);
}

static int prefetch_write(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *ten = json_pack("{s:i}", "n", 10), *got = NULL;

        ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "a"));
        ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "b"));
        ASSERT_OK(store_put(t, STORE_CUSTOMERS, "a", ten, STORE_PUT_DEFAULT));
        ASSERT_OK(store_del(t, STORE_CUSTOMERS, "b"));
        ASSERT_OK(store_get(t, STORE_CUSTOMERS, "a", &got));
        ASSERT_EQ(record_n(got), 10);                   /* the write, not the answer sent ahead */
        ASSERT_EQ(store_exists(t, STORE_CUSTOMERS, "b"), 0);
        ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "a"));
        json_decref(TAKE_PTR(got));
        ASSERT_OK(store_get(t, STORE_CUSTOMERS, "a", &got));
        ASSERT_EQ(record_n(got), 10);
        ASSERT_OK(store_prefetch(t, STORE_OFFERS, "never-asked"));
        return 1;
}

TEST(prefetch) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);

        ASSERT_OK(store_transact(s, prefetch_setup, NULL));
        for (unsigned round = 0; round < 3; round++) {
                _cleanup_(store_txn_freep) StoreTxn *t = NULL;
                _cleanup_(json_decrefp) json_t *a = NULL, *b = NULL, *again = NULL;

                ASSERT_OK(store_read(s, &t));
                ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "b"));
                ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "a"));
                ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "a"));     /* once is enough */
                ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, "missing"));
                ASSERT_OK(store_prefetch(t, STORE_OFFERS, "a"));
                ASSERT_OK(store_prefetch(t, STORE_CAPTURE, "beyond-the-limit"));
                ASSERT_OK(store_prefetch(t, STORE_CUSTOMERS, ""));      /* no key: store_get() says */
                ASSERT_EQ(store_prefetch(t, _STORE_TABLE_MAX, "a"), -EINVAL);
                ASSERT_OK(store_get(t, STORE_CUSTOMERS, "a", &a));
                ASSERT_OK(store_get(t, STORE_CUSTOMERS, "b", &b));
                ASSERT_EQ(record_n(a), round == 0 ? 1 : 10);
                ASSERT_EQ(record_n(b), 2);
                ASSERT_EQ(store_get(t, STORE_CUSTOMERS, "missing", &again), -ENOENT);
                ASSERT_EQ(store_get(t, STORE_CUSTOMERS, "", &again), -EINVAL);
                ASSERT_OK(store_get(t, STORE_CUSTOMERS, "a", &again));  /* asked again */
                ASSERT_TRUE(json_equal(a, again));
                ASSERT_FALSE(store_exists(t, STORE_CAPTURE, "beyond-the-limit"));
                t = store_txn_free(t);  /* STORE_OFFERS "a" was never asked for */

                if (round == 0) {
                        ASSERT_EQ(store_transact(s, prefetch_write, NULL), 1);
                        ASSERT_OK(store_transact(s, prefetch_restore_b, NULL));
                }
        }
}

TEST(keys) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *v = NULL;

        ASSERT_OK(store_transact(s, put_keys, NULL));
        ASSERT_EQ(entries(s, STORE_TOKENS), 2);

        ASSERT_OK(store_read(s, &t));
        ASSERT_EQ(store_get(t, STORE_TOKENS, "", &v), -EINVAL);
        ASSERT_EQ(store_get(t, STORE_TOKENS, NULL, &v), -EINVAL);
        ASSERT_EQ(store_get(t, STORE_TOKENS, "x", NULL), -EINVAL);
        ASSERT_OK(store_get(t, STORE_TOKENS, "x", &v));
}

/* ---- iteration ---- */

typedef struct Collect {
        char keys[64][32];
        unsigned n, limit;
        int stop_with;
} Collect;

static int collect(const char *key, json_t *value, void *userdata) {
        Collect *c = userdata;

        ASSERT_TRUE(json_is_object(value));
        ASSERT_TRUE(c->n < ELEMENTSOF(c->keys));
        (void) snprintf(c->keys[c->n++], sizeof(c->keys[0]), "%s", key);
        if (c->limit > 0 && c->n == c->limit)
                return c->stop_with != 0 ? c->stop_with : 1;
        return 0;
}

static int put_iter(StoreTxn *t, void *userdata) {
        static const char *const keys[] = { "a", "p1:", "p1:a", "p1:b", "p1:c", "p1:d", "p1:e",
                                            "p10:a", "p2:a", "q" };
        _cleanup_(json_decrefp) json_t *v = json_object();

        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                ASSERT_OK(store_put(t, STORE_CONSENTS, keys[i], v, STORE_PUT_DEFAULT));
        return 0;
}

static int delete_visited(const char *key, json_t *value, void *userdata) {
        StoreTxn *t = userdata;

        return store_del(t, STORE_CONSENTS, key);
}

static int foreach_delete_work(StoreTxn *t, void *userdata) {
        Collect c = {};

        ASSERT_OK(store_foreach(t, STORE_CONSENTS, "p1:", NULL, delete_visited, t));
        ASSERT_OK(store_foreach(t, STORE_CONSENTS, NULL, NULL, collect, &c));
        ASSERT_EQ(c.n, 4);
        ASSERT_STREQ(c.keys[0], "a");
        ASSERT_STREQ(c.keys[1], "p10:a");
        ASSERT_STREQ(c.keys[2], "p2:a");
        ASSERT_STREQ(c.keys[3], "q");
        return 0;
}

TEST(foreach) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        StoreTxn *t = NULL;
        char after[64], longer[STORE_KEY_MAX + 20];
        Collect c;

        ASSERT_OK(store_transact(s, put_iter, NULL));
        ASSERT_OK(store_read(s, &t));

        /* everything, in key order */
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, NULL, NULL, collect, &c), 0);
        ASSERT_EQ(c.n, 10);
        ASSERT_STREQ(c.keys[0], "a");
        ASSERT_STREQ(c.keys[1], "p10:a");     /* '0' sorts before ':' */
        ASSERT_STREQ(c.keys[2], "p1:");
        ASSERT_STREQ(c.keys[7], "p1:e");
        ASSERT_STREQ(c.keys[9], "q");
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "", "", collect, &c), 0);
        ASSERT_EQ(c.n, 10);

        /* a prefix: "p1:" matches itself but not "p10:a" */
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "p1:", NULL, collect, &c), 0);
        ASSERT_EQ(c.n, 6);
        ASSERT_STREQ(c.keys[0], "p1:");
        ASSERT_STREQ(c.keys[5], "p1:e");

        /* pages of 2, each starting after the last key of the previous one */
        after[0] = 0;
        for (unsigned page = 0;; page++) {
                c = (Collect) { .limit = 2 };
                int r = store_foreach(t, STORE_CONSENTS, "p1:", after[0] ? after : NULL, collect, &c);

                ASSERT_OK(r);
                if (page < 3) {
                        ASSERT_EQ(r, 1);
                        ASSERT_EQ(c.n, 2);
                } else {
                        ASSERT_EQ(r, 0);
                        ASSERT_EQ(c.n, 0);
                        break;
                }
                (void) snprintf(after, sizeof(after), "%s", c.keys[1]);
        }
        ASSERT_STREQ(after, "p1:e");

        /* 'after' that is not a key, before the prefix, past everything, or longer than a key */
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "p1:", "p1:bb", collect, &c), 0);
        ASSERT_EQ(c.n, 3);
        ASSERT_STREQ(c.keys[0], "p1:c");
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "p1:", "a", collect, &c), 0);
        ASSERT_EQ(c.n, 6);
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "p1:", "zzz", collect, &c), 0);
        ASSERT_EQ(c.n, 0);
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, NULL, "p2:a", collect, &c), 0);
        ASSERT_EQ(c.n, 1);
        ASSERT_STREQ(c.keys[0], "q");
        memset(longer, 'p', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = 0;
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, NULL, longer, collect, &c), 0);
        ASSERT_EQ(c.n, 1);
        ASSERT_STREQ(c.keys[0], "q");
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, longer, NULL, collect, &c), 0);
        ASSERT_EQ(c.n, 0);

        /* prefixes with no match, empty tables */
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "p3", NULL, collect, &c), 0);
        ASSERT_EQ(c.n, 0);
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, "0", NULL, collect, &c), 0);
        ASSERT_EQ(c.n, 0);
        c = (Collect) {};
        ASSERT_EQ(store_foreach(t, STORE_OUTBOX, NULL, NULL, collect, &c), 0);
        ASSERT_EQ(c.n, 0);

        /* fn's value stops the walk */
        c = (Collect) { .limit = 3, .stop_with = -ECANCELED };
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, NULL, NULL, collect, &c), -ECANCELED);
        ASSERT_EQ(c.n, 3);
        c = (Collect) { .limit = 1, .stop_with = 42 };
        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, NULL, NULL, collect, &c), 42);

        ASSERT_EQ(store_foreach(t, STORE_CONSENTS, NULL, NULL, NULL, NULL), -EINVAL);
        ASSERT_EQ(store_foreach(t, _STORE_TABLE_MAX, NULL, NULL, collect, &c), -EINVAL);
        t = store_txn_free(t);

        /* deleting the visited record while walking, in a write unit of work */
        ASSERT_OK(store_transact(s, foreach_delete_work, NULL));
        ASSERT_EQ(entries(s, STORE_CONSENTS), 4);
}

/* Prefixes whose last bytes are 0xff or 0xfe: on PostgreSQL a prefix walk is bounded by the first
 * key past the prefix ("a\xff" -> "b", "a\xfe" -> "a\xff"), which must neither cut the walk short
 * nor let a key past the prefix in. */
static int put_high_bytes(StoreTxn *t, void *userdata) {
        static const char *const keys[] = { "a", "a\xfe", "a\xfe\xff", "a\xff", "a\xff\x01", "a\xff\xff",
                                            "a\xff\xff\xff", "b", "b\x01" };
        _cleanup_(json_decrefp) json_t *v = json_object();

        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                ASSERT_OK(store_put(t, STORE_OUTBOX, keys[i], v, STORE_PUT_DEFAULT));
        return 0;
}

TEST(foreach_prefix_bound) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        Collect c;

        ASSERT_OK(store_transact(s, put_high_bytes, NULL));
        ASSERT_OK(store_read(s, &t));
        c = (Collect) {};
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "a\xff", NULL, collect, &c));
        ASSERT_EQ(c.n, 4);
        ASSERT_STREQ(c.keys[0], "a\xff");
        ASSERT_STREQ(c.keys[3], "a\xff\xff\xff");
        c = (Collect) {};
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "a\xff\xff", NULL, collect, &c));
        ASSERT_EQ(c.n, 2);
        c = (Collect) {};
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "a\xfe", NULL, collect, &c));
        ASSERT_EQ(c.n, 2);
        ASSERT_STREQ(c.keys[1], "a\xfe\xff");
        c = (Collect) {};
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "a", "a\xfe\xff", collect, &c));
        ASSERT_EQ(c.n, 4);
        ASSERT_STREQ(c.keys[0], "a\xff");
        c = (Collect) {};
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "b", NULL, collect, &c));
        ASSERT_EQ(c.n, 2);
}

/* ---- rollback, durability ---- */

static int put_then_fail(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *v = json_pack("{s:i}", "v", 2);

        ASSERT_OK(store_put(t, STORE_PUBLISHERS, "p1", v, STORE_PUT_DEFAULT));
        ASSERT_OK(store_put(t, STORE_OFFERS, "o1", v, STORE_PUT_DEFAULT));
        ASSERT_OK(store_del(t, STORE_PUBLISHERS, "p000000"));
        return -EIO;
}

TEST(rollback_and_durability) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        StoreTxn *t = NULL;

        ASSERT_OK(fill(s, STORE_PUBLISHERS, "p", 0, 1, 10));
        ASSERT_EQ(store_transact(s, put_then_fail, NULL), -EIO);

        ASSERT_OK(store_read(s, &t));
        ASSERT_FALSE(store_exists(t, STORE_PUBLISHERS, "p1"));
        ASSERT_FALSE(store_exists(t, STORE_OFFERS, "o1"));
        ASSERT_TRUE(store_exists(t, STORE_PUBLISHERS, "p000000"));
        t = store_txn_free(t);

        ASSERT_OK(fill(s, STORE_OUTBOX, "m", 0, 100, 100));
        s = store_free(s);

        s = open_ok(dir, 0, 0);
        check_filled(s, STORE_OUTBOX, "m", 0, 100);
        check_filled(s, STORE_PUBLISHERS, "p", 0, 1);
        ASSERT_EQ(entries(s, STORE_OFFERS), 0);
        ASSERT_EQ(entries(s, STORE_OUTBOX), 100);
}

/* ---- counting ---- */

static int count_in_unit(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *v = json_object();
        uint64_t n = 99;

        ASSERT_OK(store_count(t, STORE_OUTBOX, &n));
        ASSERT_EQ(n, 100);
        ASSERT_OK(store_put(t, STORE_OUTBOX, "zzz", v, STORE_PUT_DEFAULT));
        ASSERT_OK(store_del(t, STORE_OUTBOX, "m000000"));
        ASSERT_OK(store_del(t, STORE_OUTBOX, "m000001"));
        ASSERT_OK(store_count(t, STORE_OUTBOX, &n));    /* its own writes count */
        ASSERT_EQ(n, 99);
        ASSERT_EQ(store_count(t, _STORE_TABLE_MAX, &n), -EINVAL);
        return *(int *) userdata;
}

TEST(count) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        StoreTxn *t = NULL;
        uint64_t n = 1;
        int fail = -EIO, ok = 0;

        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_count(t, STORE_OUTBOX, &n));
        ASSERT_EQ(n, 0);
        t = store_txn_free(t);
        ASSERT_OK(fill(s, STORE_OUTBOX, "m", 0, 100, 10));
        ASSERT_EQ(store_transact(s, count_in_unit, &fail), -EIO);      /* rolled back */
        ASSERT_EQ(entries(s, STORE_OUTBOX), 100);
        ASSERT_OK(store_transact(s, count_in_unit, &ok));
        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_count(t, STORE_OUTBOX, &n));
        ASSERT_EQ(n, 99);
        t = store_txn_free(t);
}

/* ---- schema ---- */

static int put_schema(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *v = json_pack("{s:i}", "version", *(int *) userdata);

        return store_put(t, STORE_META, "schema_version", v, STORE_PUT_DEFAULT);
}

static int del_schema(StoreTxn *t, void *userdata) {
        return store_del(t, STORE_META, "schema_version");
}

TEST(schema) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(json_decrefp) json_t *stamp = NULL;
        Store *s = open_ok(dir, 0, 0);
        StoreTxn *t = NULL;
        unsigned version = 12345;
        int newer = STORE_SCHEMA_VERSION + 1;

        /* a new store is stamped */
        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_get(t, STORE_META, "schema_version", &stamp));
        ASSERT_EQ(json_integer_value(json_object_get(stamp, "version")), STORE_SCHEMA_VERSION);
        t = store_txn_free(t);

        /* the current version opens and keeps its stamp */
        s = store_free(s);
        ASSERT_OK(reopen(dir, &s, &version));
        ASSERT_EQ(version, STORE_SCHEMA_VERSION);
        ASSERT_EQ(entries(s, STORE_META), 1);

        /* a newer one is refused, with its version */
        ASSERT_OK(store_transact(s, put_schema, &newer));
        s = store_free(s);
        ASSERT_EQ(reopen(dir, &s, &version), -EPROTONOSUPPORT);
        ASSERT_TRUE(!s);
        ASSERT_EQ(version, (unsigned) newer);
        ASSERT_EQ(reopen(dir, &s, NULL), -EPROTONOSUPPORT);
}

TEST(schema_missing) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        Store *s = open_ok(dir, 0, 0);
        int bad = 0;

        /* without a stamp but also without records: stamped again */
        ASSERT_OK(store_transact(s, del_schema, NULL));
        ASSERT_EQ(entries(s, STORE_META), 0);
        s = store_free(s);
        s = open_ok(dir, 0, 0);
        ASSERT_EQ(entries(s, STORE_META), 1);

        /* an invalid stamp */
        ASSERT_OK(store_transact(s, put_schema, &bad));
        s = store_free(s);
        ASSERT_EQ(reopen(dir, &s, NULL), -EPROTO);
        ASSERT_TRUE(!s);
}

TEST(schema_records_without_stamp) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        Store *s = open_ok(dir, 0, 0);

        ASSERT_OK(fill(s, STORE_CUSTOMERS, "c", 0, 3, 10));
        ASSERT_OK(store_transact(s, del_schema, NULL));
        s = store_free(s);
        ASSERT_EQ(reopen(dir, &s, NULL), -EPROTO);
        ASSERT_TRUE(!s);
}

/* ---- unit-of-work rules ---- */

static int nested_work(StoreTxn *t, void *userdata) {
        Store *s = userdata;
        StoreTxn *r = NULL;

        ASSERT_EQ(store_transact(s, nested_work, s), -EBUSY);
        ASSERT_EQ(store_read(s, &r), -EBUSY);
        ASSERT_TRUE(!r);
        if (!pg)
                ASSERT_EQ(store_backup(s, "/nonexistent/never"), -EBUSY);
        return 0;
}

static int noop_work(StoreTxn *t, void *userdata) {
        return 0;
}

TEST(busy_and_stale) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(json_decrefp) json_t *v = NULL;
        Store *s = open_ok(dir, 0, 0);
        StoreTxn *t1 = NULL, *t2 = NULL;
        StoreStats st;

        ASSERT_OK(store_transact(s, nested_work, s));

        /* several snapshots at once; no unit of work while any is alive */
        ASSERT_OK(fill(s, STORE_TOKENS, "t", 0, 1, 10));
        ASSERT_OK(store_read(s, &t1));
        ASSERT_OK(store_read(s, &t2));
        ASSERT_OK(store_stats(s, &st));
        ASSERT_EQ(store_transact(s, noop_work, NULL), -EBUSY);
        t1 = store_txn_free(t1);
        ASSERT_EQ(store_transact(s, noop_work, NULL), -EBUSY);
        t2 = store_txn_free(t2);
        ASSERT_OK(store_transact(s, noop_work, NULL));
        ASSERT_EQ(store_transact(s, NULL, NULL), -EINVAL);
        ASSERT_EQ(store_transact(NULL, noop_work, NULL), -EINVAL);

        /* a snapshot outliving its store */
        ASSERT_OK(store_read(s, &t1));
        s = store_free(s);
        ASSERT_EQ(store_get(t1, STORE_TOKENS, "t000000", &v), -ESTALE);
        ASSERT_EQ(store_exists(t1, STORE_TOKENS, "t000000"), -ESTALE);   /* an error, not a "no" */
        t1 = store_txn_free(t1);
}

/* ---- options ---- */

TEST(options) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(freep) char *missing = NULL;
        StoreOptions o;
        StoreStats st;
        Store *s = NULL;

        o = (StoreOptions) { .map_size_initial = STORE_MAP_SIZE_MIN - 1 };
        ASSERT_EQ(store_open(dir, &o, &s, NULL), -EINVAL);
        o = (StoreOptions) { .map_size_initial = 2 * MIB, .map_size_max = 1 * MIB };
        ASSERT_EQ(store_open(dir, &o, &s, NULL), -EINVAL);
        o = (StoreOptions) { .map_size_max = STORE_MAP_SIZE_MIN - 1 };
        ASSERT_EQ(store_open(dir, &o, &s, NULL), -EINVAL);
        ASSERT_EQ(store_open(NULL, NULL, &s, NULL), -EINVAL);
        ASSERT_EQ(store_open(dir, NULL, NULL, NULL), -EINVAL);
        ASSERT_TRUE(!s);

        ASSERT_TRUE(asprintf(&missing, "%s/missing", dir) > 0);
        ASSERT_EQ(store_open(missing, NULL, &s, NULL), -ENOENT);

        /* an initial size that is not a whole number of pages is rounded up */
        o = (StoreOptions) { .map_size_initial = 100 * KIB + 1, .map_size_max = 1 * MIB };
        ASSERT_OK(store_open(dir, &o, &s, NULL));
        ASSERT_OK(store_stats(s, &st));
        ASSERT_EQ(st.map_size % (uint64_t) sysconf(_SC_PAGESIZE), 0);
        ASSERT_TRUE(st.map_size > 100 * KIB);
        s = store_free(s);

        /* the default initial size is capped by a smaller maximum */
        o = (StoreOptions) { .map_size_max = 1 * MIB };
        ASSERT_OK(store_open(dir, &o, &s, NULL));
        ASSERT_OK(store_stats(s, &st));
        ASSERT_EQ(st.map_size, 1 * MIB);
        s = store_free(s);
}

/* ---- growth ---- */

TEST(growth) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        Store *s = open_ok(dir, STORE_MAP_SIZE_MIN, 64 * MIB);
        StoreStats st;

        /* ~10 MiB: 10 units of work of 1000 records of ~1 KiB */
        for (int i = 0; i < 10; i++)
                ASSERT_OK(fill(s, STORE_CUSTOMERS, "c", i * 1000, 1000, 1000));

        ASSERT_OK(store_stats(s, &st));
        ASSERT_TRUE(st.grow_count > 0);
        ASSERT_TRUE(st.map_size > 10 * MIB);
        ASSERT_TRUE(st.map_size <= 64 * MIB);
        ASSERT_TRUE(st.used_bytes > 10 * MIB);
        ASSERT_TRUE(st.used_bytes <= st.file_bytes);
        ASSERT_TRUE(st.file_bytes <= st.map_size);
        ASSERT_EQ(st.entries[STORE_CUSTOMERS], 10000);
        fprintf(stderr, "grew %" PRIu64 " times to %" PRIu64 " bytes, %" PRIu64 " used, file %" PRIu64 "\n",
                st.grow_count, st.map_size, st.used_bytes, st.file_bytes);
        s = store_free(s);

        /* everything is there after reopening with the small initial size */
        s = open_ok(dir, STORE_MAP_SIZE_MIN, 64 * MIB);
        ASSERT_OK(store_stats(s, &st));
        ASSERT_EQ(st.entries[STORE_CUSTOMERS], 10000);
        ASSERT_TRUE(st.map_size > 10 * MIB);
        check_filled(s, STORE_CUSTOMERS, "c", 0, 10000);
        ASSERT_OK(fill(s, STORE_CUSTOMERS, "d", 0, 100, 1000));
        s = store_free(s);
}

TEST(growth_when_fn_swallows_map_full) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        Store *s = open_ok(dir, STORE_MAP_SIZE_MIN, 64 * MIB);
        Fill f = { .table = STORE_OUTBOX, .prefix = "m", .count = 500, .size = 1000, .swallow = true };
        StoreStats st;

        ASSERT_OK(store_transact(s, fill_work, &f));
        ASSERT_TRUE(f.runs > 1);
        ASSERT_OK(store_stats(s, &st));
        ASSERT_TRUE(st.grow_count > 0);
        ASSERT_EQ(st.entries[STORE_OUTBOX], 500);
        check_filled(s, STORE_OUTBOX, "m", 0, 500);
        s = store_free(s);
}

/* ---- a full store ---- */

static int delete_some(StoreTxn *t, void *userdata) {
        for (int i = 0; i < 20; i++) {
                char key[64];
                int r;

                (void) snprintf(key, sizeof(key), "c%06d", i);
                r = store_del(t, STORE_CUSTOMERS, key);
                if (r < 0)
                        return r;
        }
        return 0;
}

TEST(full) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        Store *s = open_ok(dir, STORE_MAP_SIZE_MIN, 1 * MIB);
        uint64_t before, after;
        StoreStats st;
        int r = 0, units = 0;

        for (; units < 1000; units++) {
                before = entries(s, STORE_CUSTOMERS);
                r = fill(s, STORE_CUSTOMERS, "c", units * 50, 50, 1000);
                if (r < 0)
                        break;
        }
        ASSERT_EQ(r, -ENOSPC);
        ASSERT_TRUE(units > 5);

        /* the failing unit of work left nothing behind */
        after = entries(s, STORE_CUSTOMERS);
        ASSERT_EQ(after, before);
        ASSERT_EQ(after, (uint64_t) units * 50);
        ASSERT_OK(store_stats(s, &st));
        ASSERT_EQ(st.map_size, 1 * MIB);
        ASSERT_TRUE(st.grow_count > 0);

        /* still usable: reads, deletes, then a small write */
        check_filled(s, STORE_CUSTOMERS, "c", 0, units * 50);
        ASSERT_OK(store_transact(s, delete_some, NULL));
        ASSERT_OK(fill(s, STORE_OFFERS, "o", 0, 1, 100));
        ASSERT_EQ(fill(s, STORE_OFFERS, "o", 1, 2000, 1000), -ENOSPC);
        ASSERT_EQ(entries(s, STORE_OFFERS), 1);
        s = store_free(s);

        s = open_ok(dir, STORE_MAP_SIZE_MIN, 1 * MIB);
        ASSERT_EQ(entries(s, STORE_CUSTOMERS), after - 20);
        check_filled(s, STORE_CUSTOMERS, "c", 20, units * 50 - 20);
        s = store_free(s);
}

/* ---- backup ---- */

TEST(backup) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(tmpdir_removep) char *restore = tmpdir_new();
        _cleanup_(freep) char *path = NULL, *data = NULL;
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        Store *s = open_ok(dir, 0, 0);
        struct stat sb;

        ASSERT_OK(fill(s, STORE_CUSTOMERS, "c", 0, 2000, 200));
        ASSERT_OK(fill(s, STORE_CUSTOMERS_BY_EMAIL, "e", 0, 10, 10));
        ASSERT_OK(store_transact(s, delete_some, NULL));

        ASSERT_TRUE(asprintf(&path, "%s/backup.mdb", restore) > 0);
        ASSERT_TRUE(asprintf(&data, "%s/data.mdb", restore) > 0);

        /* with a snapshot alive, which the backup does not see changes after */
        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_backup(s, path));
        t = store_txn_free(t);
        ASSERT_EQ(store_backup(s, path), -EEXIST);
        ASSERT_EQ(store_backup(s, "/nonexistent-dir/backup.mdb"), -ENOENT);
        ASSERT_EQ(stat(path, &sb), 0);
        ASSERT_EQ(sb.st_mode & 07777, 0600);
        s = store_free(s);

        ASSERT_EQ(rename(path, data), 0);
        s = open_ok(restore, 0, 0);
        ASSERT_EQ(entries(s, STORE_CUSTOMERS), 1980);
        ASSERT_EQ(entries(s, STORE_CUSTOMERS_BY_EMAIL), 10);
        ASSERT_EQ(entries(s, STORE_META), 1);
        check_filled(s, STORE_CUSTOMERS, "c", 20, 1980);
        s = store_free(s);
}

/* ---- records naming a value ---- */

static int collect_where(const char *key, json_t *value, void *userdata) {
        return json_array_append_new(userdata, json_string(key)) < 0 ? -ENOMEM : 0;
}

static int put_where_records(StoreTxn *t, void *userdata) {
        static const char *const records[][2] = {
                { "a", "{\"customerId\":\"12\",\"type\":\"refresh\"}" },
                { "b", "{\"customerId\":\"123\"}" },                     /* a longer value */
                { "c", "{\"other\":{\"customerId\":\"12\"}}" },          /* nested: not top-level */
                { "d", "{\"customerId\":12}" },                          /* a number, not a string */
                { "e", "{\"note\":\"\\\"customerId\\\":\\\"12\\\"\"}" }, /* inside a string */
                { "f", "{\"x\":1,\"customerId\":\"12\"}" },
                { "g", "{\"customerId\":\"q\\\"u/o\\u00e9\"}" },         /* escapes */
        };

        for (size_t i = 0; i < ELEMENTSOF(records); i++) {
                _cleanup_(json_decrefp) json_t *v = json_loads(records[i][1], 0, NULL);

                ASSERT_TRUE(v);
                ASSERT_OK(store_put(t, STORE_TOKENS, records[i][0], v, STORE_PUT_DEFAULT));
        }
        return 0;
}

TEST(foreach_where) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(json_decrefp) json_t *keys = json_array(), *quoted = json_array();
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *got = NULL, *got_quoted = NULL;

        ASSERT_TRUE(keys && quoted);
        ASSERT_OK(store_transact(s, put_where_records, NULL));
        ASSERT_OK(store_read(s, &t));
        ASSERT_OK(store_foreach_where(t, STORE_TOKENS, "customerId", "12", collect_where, keys));
        got = json_dumps(keys, JSON_COMPACT);
        ASSERT_STREQ(got, "[\"a\",\"f\"]");
        ASSERT_OK(store_foreach_where(t, STORE_TOKENS, "customerId", "q\"u/o\xc3\xa9", collect_where, quoted));
        got_quoted = json_dumps(quoted, JSON_COMPACT);
        ASSERT_STREQ(got_quoted, "[\"g\"]");
        ASSERT_EQ(store_foreach_where(t, STORE_TOKENS, NULL, "12", collect_where, keys), -EINVAL);
        ASSERT_EQ(store_foreach_where(t, STORE_TOKENS, "customerId", NULL, collect_where, keys), -EINVAL);
        ASSERT_EQ(store_foreach_where(t, STORE_TOKENS, "customerId", "\xff", collect_where, keys), -EINVAL);
        ASSERT_EQ(json_array_size(keys), 2);
}

/* ---- the event loop: a batch runs, and is reported, in slices ---- */

#define SLICED_UNITS 24
#define SLICED_SPIN_USEC 80     /* longer than a slice (50 µs): one unit per slice */

typedef enum SlicedAction {
        SLICED_WATCH,           /* the other source only watches */
        SLICED_FLUSH,           /* ... and flushes once a few units ran */
        SLICED_TRANSACT,        /* ... and runs a unit of work of its own then */
} SlicedAction;

typedef struct Sliced {
        Store *store;
        sd_event *event;
        SlicedAction action;
        unsigned ran, reported;
        unsigned turns;                         /* the other source's dispatches */
        unsigned turns_at_run[SLICED_UNITS], turns_at_done[SLICED_UNITS];
        unsigned order[SLICED_UNITS];
        unsigned seen_early;                    /* snapshots that saw the batch before it committed */
        int acted;                              /* what the action returned; 1: not yet */
        unsigned reported_when_acted;
} Sliced;

typedef struct SlicedUnit {
        Sliced *x;
        unsigned i;
} SlicedUnit;

static void spin_usec(uint64_t usec) {
        struct timespec a, b;

        ASSERT_OK(clock_gettime(CLOCK_MONOTONIC, &a));
        do
                ASSERT_OK(clock_gettime(CLOCK_MONOTONIC, &b));
        while ((uint64_t) (b.tv_sec - a.tv_sec) * 1000000 + (uint64_t) (b.tv_nsec - a.tv_nsec) / 1000 < usec);
}

static int sliced_fn(StoreTxn *t, void *userdata) {
        SlicedUnit *u = userdata;
        _cleanup_(json_decrefp) json_t *v = json_pack("{s:i}", "i", u->i);
        char key[16];

        u->x->turns_at_run[u->i] = u->x->turns;
        (void) snprintf(key, sizeof key, "u%03u", u->i);
        ASSERT_OK(store_put(t, STORE_OUTBOX, key, v, STORE_PUT_NO_OVERWRITE));
        u->x->ran++;
        spin_usec(SLICED_SPIN_USEC);
        return 0;
}

static int mark_fn(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *v = json_object();

        return store_put(t, STORE_OUTBOX, "zz-mark", v, STORE_PUT_DEFAULT);
}

static void sliced_done(int r, void *userdata) {
        SlicedUnit *u = userdata;
        Sliced *x = u->x;
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        char key[16];

        ASSERT_EQ(r, 0);
        x->order[x->reported] = u->i;
        x->turns_at_done[u->i] = x->turns;
        x->reported++;
        /* Durable, so visible, before it is reported. */
        (void) snprintf(key, sizeof key, "u%03u", u->i);
        ASSERT_OK(store_read(x->store, &t));
        ASSERT_TRUE(store_exists(t, STORE_OUTBOX, key));
        spin_usec(SLICED_SPIN_USEC);
        if (x->reported == SLICED_UNITS)
                ASSERT_OK(sd_event_exit(x->event, 0));
}

/* The loop's other work, ready on every iteration (as a busy connection is). */
static int sliced_other(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Sliced *x = userdata;
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        uint64_t n = 0;

        x->turns++;
        ASSERT_TRUE(x->turns < 100000);
        /* A snapshot between slices sees nothing of the batch before it commits. */
        ASSERT_OK(store_read(x->store, &t));
        ASSERT_OK(store_count(t, STORE_OUTBOX, &n));
        if (x->ran < SLICED_UNITS && n > 0)
                x->seen_early++;
        t = store_txn_free(t);

        if (x->action != SLICED_WATCH && x->acted == 1 && x->ran >= 3) {
                x->acted = x->action == SLICED_FLUSH ? (store_flush(x->store), 0) :
                                                       store_transact(x->store, mark_fn, NULL);
                x->reported_when_acted = x->reported;
        }
        return 0;
}

static void sliced_run(SlicedAction action) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *other = NULL;
        _cleanup_(closep) int efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);     /* always readable */
        Sliced x = { .store = s, .action = action, .acted = 1 };
        SlicedUnit units[SLICED_UNITS];

        ASSERT_TRUE(efd >= 0);
        ASSERT_OK(sd_event_new(&e));
        x.event = e;
        ASSERT_OK(store_set_event(s, e));
        ASSERT_OK(sd_event_add_io(e, &other, efd, EPOLLIN, sliced_other, &x));

        /* Submitted together: one batch. */
        for (unsigned i = 0; i < SLICED_UNITS; i++) {
                units[i] = (SlicedUnit) { .x = &x, .i = i };
                ASSERT_OK(store_submit(s, sliced_fn, sliced_done, &units[i]));
        }
        ASSERT_EQ(x.ran, 0);    /* never inside store_submit() with a loop attached */
        ASSERT_OK(sd_event_loop(e));

        ASSERT_EQ(x.ran, SLICED_UNITS);
        ASSERT_EQ(x.reported, SLICED_UNITS);
        for (unsigned k = 0; k < SLICED_UNITS; k++)
                ASSERT_EQ(x.order[k], k);
        ASSERT_EQ(x.seen_early, 0);

        if (action == SLICED_WATCH) {
                /* The other source ran at least once in any two slices: sd-event dispatches the
                 * source pending since the oldest iteration first. The done functions all ran in
                 * one turn, the commit's: nothing else saw the batch before its reports. */
                for (unsigned k = 2; k < SLICED_UNITS; k++)
                        ASSERT_TRUE(x.turns_at_run[k] > x.turns_at_run[k - 2]);
                for (unsigned k = 1; k < SLICED_UNITS; k++)
                        ASSERT_EQ(x.turns_at_done[k], x.turns_at_done[0]);
        } else {
                /* Flushing between slices ran the rest of the batch and reported all of it
                 * before returning, in order; store_transact() does the same first. */
                ASSERT_EQ(x.acted, 0);
                ASSERT_EQ(x.reported_when_acted, SLICED_UNITS);
                ASSERT_EQ(entries(s, STORE_OUTBOX), SLICED_UNITS + (action == SLICED_TRANSACT));
        }
        other = sd_event_source_disable_unref(other);
        s = store_free(s);
}

TEST(loop_slices) {
        sliced_run(SLICED_WATCH);
}

TEST(loop_flush_between_slices) {
        sliced_run(SLICED_FLUSH);
        sliced_run(SLICED_TRANSACT);
}

/* ---- PostgreSQL only ---- */

/* The first column of the first row of a query on the test database, as text (a new string). */
static char *pg_value(const char *sql) {
        PGconn *c = PQconnectdb(pg);
        PGresult *res;
        char *v;

        ASSERT_TRUE(PQstatus(c) == CONNECTION_OK);
        res = PQexec(c, sql);
        ASSERT_TRUE(PQresultStatus(res) == PGRES_TUPLES_OK);
        ASSERT_EQ(PQntuples(res), 1);
        v = strdup(PQgetvalue(res, 0, 0));
        ASSERT_TRUE(v);
        PQclear(res);
        PQfinish(c);
        return v;
}

/* The SQL schema is made once and kept; a newer one, or a damaged one, is refused. */
TEST(pg_schema) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_free_ char *rows = NULL, *sql = NULL;
        Store *s = NULL;
        unsigned version = 7;

        ASSERT_OK(store_open_postgresql(pg, 0, &s, &version));
        ASSERT_EQ(version, 0);          /* a new store */
        s = store_free(s);
        ASSERT_OK(store_open_postgresql(pg, 0, &s, &version));
        ASSERT_EQ(version, STORE_SCHEMA_VERSION);
        s = store_free(s);
        rows = pg_value("SELECT count(*) || ':' || max(version) FROM idm_schema");
        ASSERT_TRUE(asprintf(&sql, "1:%d", STORE_PG_SCHEMA_VERSION) > 0);
        ASSERT_STREQ(rows, sql);

        pg_sql("UPDATE idm_schema SET version = version + 1");
        ASSERT_EQ(store_open_postgresql(pg, 0, &s, NULL), -EPROTONOSUPPORT);
        ASSERT_TRUE(!s);
        pg_sql("UPDATE idm_schema SET version = -1");
        ASSERT_EQ(store_open_postgresql(pg, 0, &s, NULL), -EPROTO);
        ASSERT_TRUE(!s);
}

/* Instances starting at once on a new database: every one opens, the schema is made once. */
TEST(pg_concurrent_open) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_free_ char *rows = NULL, *stamps = NULL;
        int go[2];
        pid_t pids[6];

        ASSERT_OK(pipe(go));
        for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
                pids[i] = fork();
                ASSERT_TRUE(pids[i] >= 0);
                if (pids[i] == 0) {
                        Store *s = NULL;
                        char c;

                        (void) close(go[1]);
                        (void) read(go[0], &c, 1);      /* until the parent closes its end */
                        _exit(store_open_postgresql(pg, 0, &s, NULL) == 0 ? 0 : 1);
                }
        }
        (void) close(go[0]);
        (void) close(go[1]);
        for (size_t i = 0; i < ELEMENTSOF(pids); i++) {
                int status;

                ASSERT_EQ(waitpid(pids[i], &status, 0), pids[i]);
                ASSERT_TRUE(WIFEXITED(status));
                ASSERT_EQ(WEXITSTATUS(status), 0);
        }
        rows = pg_value("SELECT count(*) FROM idm_schema");
        ASSERT_STREQ(rows, "1");
        stamps = pg_value("SELECT count(*) FROM idm_records WHERE tbl = 0");
        ASSERT_STREQ(stamps, "1");
}

/* Two instances (two stores) race to use one single-use record: exactly one wins, the other's
 * unit conflicts, runs again and sees it used. */
typedef struct Race {
        Store *store;
        pthread_barrier_t *barrier;
        unsigned attempts;
        int result;
        const char *name;
} Race;

static int race_work(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *tok = NULL, *mark = json_pack("{s:s}", "by", ((Race *) userdata)->name);
        Race *race = userdata;
        int r;

        race->attempts++;
        r = store_get(t, STORE_TOKENS, "tok", &tok);
        if (r < 0)
                return r;
        if (race->attempts == 1)
                (void) pthread_barrier_wait(race->barrier);     /* both have read it unused */
        if (json_is_true(json_object_get(tok, "used")))
                return 0;
        ASSERT_OK(json_object_set_new(tok, "used", json_true()));
        r = store_put(t, STORE_TOKENS, "tok", tok, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        r = store_put(t, STORE_TOKENS, race->name, mark, STORE_PUT_NO_OVERWRITE);
        return r < 0 ? r : 1;
}

static void *race_thread(void *userdata) {
        Race *race = userdata;

        race->result = store_transact(race->store, race_work, race);
        return NULL;
}

static int put_unused(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *tok = json_pack("{s:b}", "used", false);

        (void) store_del(t, STORE_TOKENS, "winner-a");
        (void) store_del(t, STORE_TOKENS, "winner-b");
        return store_put(t, STORE_TOKENS, "tok", tok, STORE_PUT_DEFAULT);
}

TEST(pg_race) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *a = open_ok(dir, 0, 0);
        _cleanup_(store_freep) Store *b = open_ok(dir, 0, 0);
        unsigned reruns = 0;

        for (unsigned round = 0; round < 20; round++) {
                pthread_barrier_t barrier;
                Race ra = { .store = a, .barrier = &barrier, .name = "winner-a" };
                Race rb = { .store = b, .barrier = &barrier, .name = "winner-b" };
                pthread_t ta, tb;

                ASSERT_OK(store_transact(a, put_unused, NULL));
                ASSERT_OK(pthread_barrier_init(&barrier, NULL, 2));
                ASSERT_OK(pthread_create(&ta, NULL, race_thread, &ra));
                ASSERT_OK(pthread_create(&tb, NULL, race_thread, &rb));
                ASSERT_OK(pthread_join(ta, NULL));
                ASSERT_OK(pthread_join(tb, NULL));
                ASSERT_OK(pthread_barrier_destroy(&barrier));

                ASSERT_OK(ra.result);
                ASSERT_OK(rb.result);
                ASSERT_EQ(ra.result + rb.result, 1);            /* one winner */
                ASSERT_EQ(entries(a, STORE_TOKENS), 2);         /* the token and one mark */
                reruns += ra.attempts + rb.attempts - 2;
        }
        /* Both read before either wrote, every round: the loser ran again every time. */
        ASSERT_EQ(reruns, 20);
}

/* Walks longer than one page of rows, with deletes between pages. */
static int delete_every_other(const char *key, json_t *value, void *userdata) {
        StoreTxn *t = userdata;

        return record_n(value) % 2 == 0 ? store_del(t, STORE_OUTBOX, key) : 0;
}

static int delete_every_other_work(StoreTxn *t, void *userdata) {
        return store_foreach(t, STORE_OUTBOX, "m", NULL, delete_every_other, t);
}

static int count_and_check_order(const char *key, json_t *value, void *userdata) {
        int *n = userdata;

        ASSERT_TRUE(record_n(value) > n[1]);
        n[1] = record_n(value);
        n[0]++;
        return 0;
}

TEST(pg_pages) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *last = NULL;
        int n[2];

        ASSERT_OK(fill(s, STORE_OUTBOX, "m", 0, 3 * STORE_PG_PAGE_ROWS + 10, 20));
        ASSERT_OK(fill(s, STORE_OUTBOX, "z", 0, 5, 20));

        ASSERT_OK(store_read(s, &t));
        n[0] = 0, n[1] = -1;
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "m", NULL, count_and_check_order, n));
        ASSERT_EQ(n[0], 3 * STORE_PG_PAGE_ROWS + 10);
        n[0] = 0, n[1] = -1;
        ASSERT_OK(store_foreach(t, STORE_OUTBOX, "m", "m000299", count_and_check_order, n));
        ASSERT_EQ(n[0], 3 * STORE_PG_PAGE_ROWS + 10 - 300);
        n[0] = 0, n[1] = -1;
        ASSERT_OK(store_foreach_where_from(t, STORE_OUTBOX, "pad", "xxxxxxxxxxxxxxxxxxxx", "m000099", 400,
                                           &last, count_and_check_order, n));
        ASSERT_EQ(n[0], 400);
        ASSERT_STREQ(last, "m000499");
        t = store_txn_free(t);

        ASSERT_OK(store_transact(s, delete_every_other_work, NULL));
        ASSERT_EQ(entries(s, STORE_OUTBOX), (3 * STORE_PG_PAGE_ROWS + 10) / 2 + 5);
        check_filled(s, STORE_OUTBOX, "z", 0, 5);
}

/* Submitted units on an event loop: each in a coroutine and a transaction of its own, several
 * at once, all incrementing one counter (every conflict is run again: no increment is lost); a
 * unit that fails rolls back alone; done functions in submission order. Read snapshots in
 * coroutines of their own meanwhile. */
#define PG_UNITS 40

typedef struct PgUnit {
        unsigned i;
        unsigned *order;
        unsigned *reported;
        sd_event *event;
        int result;
        unsigned runs;
} PgUnit;

static int pg_unit_fn(StoreTxn *t, void *userdata) {
        PgUnit *u = userdata;
        _cleanup_(json_decrefp) json_t *v = json_pack("{s:i}", "n", (int) u->i), *counter = NULL;
        char key[16];
        int r;

        u->runs++;
        ASSERT_TRUE(coro_running());
        (void) snprintf(key, sizeof(key), "u%u", u->i);
        r = store_put(t, STORE_OUTBOX, key, v, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        r = store_get(t, STORE_META, "counter", &counter);
        if (r < 0)
                return r;
        r = json_object_set_new(counter, "n", json_integer(json_integer_value(json_object_get(counter, "n")) + 1));
        ASSERT_OK(r);
        r = store_put(t, STORE_META, "counter", counter, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        return u->i == 2 ? -EIO : (int) u->i;
}

static void pg_unit_done(int r, void *userdata) {
        PgUnit *u = userdata;

        u->result = r;
        u->order[(*u->reported)++] = u->i;
        if (*u->reported == PG_UNITS)
                (void) sd_event_exit(u->event, 0);
}

typedef struct PgReader {
        Store *store;
        unsigned reads;
} PgReader;

static void pg_reader(void *userdata) {
        PgReader *r = userdata;

        for (unsigned i = 0; i < 20; i++) {
                _cleanup_(store_txn_freep) StoreTxn *t = NULL;
                _cleanup_(json_decrefp) json_t *counter = NULL;

                ASSERT_OK(store_read(r->store, &t));
                ASSERT_OK(store_get(t, STORE_META, "counter", &counter));
                ASSERT_TRUE(json_integer_value(json_object_get(counter, "n")) <= PG_UNITS - 1);
                r->reads++;
        }
}

static int put_counter(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *counter = json_pack("{s:i}", "n", 0);

        return store_put(t, STORE_META, "counter", counter, STORE_PUT_DEFAULT);
}

TEST(pg_loop) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *counter = NULL;
        unsigned order[PG_UNITS], reported = 0, runs = 0;
        PgUnit units[PG_UNITS];
        PgReader reader = { .store = s };
        StoreStats st;

        ASSERT_OK(store_transact(s, put_counter, NULL));
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(store_set_event(s, e));
        for (unsigned i = 0; i < PG_UNITS; i++) {
                units[i] = (PgUnit) { .i = i, .order = order, .reported = &reported, .event = e };
                ASSERT_OK(store_submit(s, pg_unit_fn, pg_unit_done, &units[i]));
        }
        ASSERT_EQ(reported, 0);
        ASSERT_EQ(units[0].runs, 0);    /* never inside store_submit() with a loop attached */
        ASSERT_OK(coro_start(pg_reader, &reader));
        ASSERT_OK(sd_event_loop(e));
        for (unsigned i = 0; i < PG_UNITS; i++) {
                ASSERT_EQ(order[i], i);
                ASSERT_EQ(units[i].result, i == 2 ? -EIO : (int) i);
                runs += units[i].runs;
        }
        /* They ran at once: some conflicted and ran again. */
        log_info("%u units ran %u times", PG_UNITS, runs);
        ASSERT_TRUE(runs > PG_UNITS);
        ASSERT_OK(store_stats(s, &st));
        ASSERT_EQ(st.batches, PG_UNITS);               /* a transaction each */
        ASSERT_EQ(st.batched_units, PG_UNITS);
        ASSERT_EQ(st.conflict_reruns, runs - PG_UNITS);  /* every run after a unit's first */
        ASSERT_EQ(st.entries[STORE_OUTBOX], PG_UNITS - 1);
        ASSERT_TRUE(st.file_bytes > 0);
        ASSERT_OK(store_read(s, &t));
        ASSERT_FALSE(store_exists(t, STORE_OUTBOX, "u2"));
        ASSERT_TRUE(store_exists(t, STORE_OUTBOX, "u4"));
        ASSERT_OK(store_get(t, STORE_META, "counter", &counter));
        ASSERT_EQ(json_integer_value(json_object_get(counter, "n")), PG_UNITS - 1);      /* all but the failed one */
        t = store_txn_free(t);
        s = store_free(s);
        ASSERT_EQ(reader.reads, 20);
        ASSERT_EQ(coro_alive(), 0);
}

/* What PostgreSQL does not do, and a database that is not there. */
TEST(pg_limits) {
        _cleanup_(tmpdir_removep) char *dir = tmpdir_new();
        _cleanup_(store_freep) Store *s = open_ok(dir, 0, 0);
        _cleanup_free_ char *path = NULL, *version = NULL;
        Store *none = NULL;

        ASSERT_TRUE(asprintf(&path, "%s/backup.mdb", dir) > 0);
        ASSERT_EQ(store_backup(s, path), -EOPNOTSUPP);
        ASSERT_EQ(access(path, F_OK), -1);
        ASSERT_EQ(store_open_postgresql("host=/nonexistent-idm-test dbname=idm user=idm", 0, &none, NULL), -ENOTCONN);
        ASSERT_TRUE(!none);
        ASSERT_EQ(store_open_postgresql(NULL, 0, &none, NULL), -EINVAL);
}

int main(void) {
        if (getenv("STORE_TEST_DEBUG"))
                log_set_max_level(LOG_LEVEL_DEBUG);

        pg = getenv("IDM_TEST_PG");

        RUN(records);
        RUN(fresh_put);
        RUN(prefetch);
        RUN(keys);
        RUN(foreach);
        RUN(foreach_prefix_bound);
        RUN(record_cache);
        RUN(record_cache_bound);
        RUN(foreach_where);
        RUN(rollback_and_durability);
        RUN(count);
        RUN(schema);
        RUN(schema_missing);
        RUN(schema_records_without_stamp);
        RUN(busy_and_stale);
        if (pg) {
                RUN(pg_schema);
                RUN(pg_concurrent_open);
                RUN(pg_race);
                RUN(pg_pages);
                RUN(pg_loop);
                RUN(pg_limits);
                return EXIT_SUCCESS;
        }
        RUN(options);
        RUN(growth);
        RUN(growth_when_fn_swallows_map_full);
        RUN(full);
        RUN(backup);
        RUN(loop_slices);
        RUN(loop_flush_between_slices);
        return EXIT_SUCCESS;
}
