/* SPDX-License-Identifier: MIT */
/*
 * idmd --migrate-store DIR: copies the LMDB store of a stopped idmd (the state directory DIR) into
 * the PostgreSQL store the configuration names ([store] backend = postgresql), which must hold
 * no records yet. Every table, record for record, through store.h on both sides, in units of
 * MIGRATE_UNIT_RECORDS records; then the counts of both are compared. Last, the signing keys
 * (files in DIR/keys on LMDB) become records of the PostgreSQL store, where every idmd sharing it
 * finds them (records/signingkeys.h): tokens signed before the move verify everywhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "idm/cleanup.h"
#include "log.h"
#include "manager.h"
#include "migrate.h"
#include "records/signingkeys.h"
#include "store.h"

#define MIGRATE_UNIT_RECORDS 1000u

/* One unit's worth of records of one table: [[key, value], ...]. */
typedef struct Chunk {
        StoreTable table;
        json_t *records;
        char *last;             /* the last key taken: the next chunk starts after it */
} Chunk;

static int chunk_take(const char *key, json_t *value, void *userdata) {
        Chunk *c = userdata;

        /* The stamp is the destination's own (written when it was opened). */
        if (c->table == STORE_META && streq(key, "schema_version"))
                return 0;
        if (json_array_append_new(c->records, json_pack("[sO]", key, value)) < 0)
                return -ENOMEM;
        free(c->last);
        c->last = strdup(key);
        if (!c->last)
                return -ENOMEM;
        return json_array_size(c->records) >= MIGRATE_UNIT_RECORDS ? 1 : 0;
}

static int chunk_put(StoreTxn *t, void *userdata) {
        Chunk *c = userdata;
        size_t i;
        json_t *rec;
        int r;

        json_array_foreach(c->records, i, rec) {
                /* NO_OVERWRITE: a record already there means the destination was not empty. */
                r = store_put(t, c->table, json_string_value(json_array_get(rec, 0)), json_array_get(rec, 1),
                              STORE_PUT_NO_OVERWRITE);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Copies one table; *ret_n: the records copied. */
static int copy_table(Store *from, Store *to, StoreTable table, uint64_t *ret_n) {
        _cleanup_free_ char *after = NULL;
        uint64_t n = 0;

        for (;;) {
                _cleanup_(store_txn_freep) StoreTxn *t = NULL;
                Chunk c = { .table = table, .records = json_array() };
                int walked, r;

                if (!c.records)
                        return -ENOMEM;
                /* 1: stopped at MIGRATE_UNIT_RECORDS (there may be more), 0: the table's end. */
                walked = r = store_read(from, &t);
                if (r >= 0)
                        walked = r = store_foreach(t, table, NULL, after, chunk_take, &c);
                t = store_txn_free(t);
                if (r >= 0 && json_array_size(c.records) > 0)
                        r = store_transact(to, chunk_put, &c);
                if (r >= 0)
                        n += json_array_size(c.records);
                json_decref(c.records);
                free(after);
                after = c.last;
                if (r < 0)
                        return r;
                if (walked == 0 || !after)
                        break;
        }
        *ret_n = n;
        return 0;
}

static int import_keys(StoreTxn *t, void *userdata) {
        return signing_keys_import(t, userdata);
}

/* The key files of from_dir as records ({kid: record}; empty without a keys directory), read
 * before anything is copied: keys that cannot be read (not this user's, damaged) stop the move
 * before it changes anything. */
static int read_keys(const Config *config, const char *from_dir, json_t **ret) {
        _cleanup_(keyring_freep) Keyring *k = NULL;
        _cleanup_free_ char *dir = NULL;
        struct stat st;
        int r;

        if (asprintf(&dir, "%s/keys", from_dir) < 0)
                return -ENOMEM;
        if (stat(dir, &st) < 0) {
                if (errno != ENOENT)
                        return -errno;
                *ret = json_object();
                return *ret ? 0 : -ENOMEM;
        }
        /* As idmd would load them at its start: expired keys go, an active one is there. */
        r = keyring_load(dir, now_realtime_usec(), KEYRING_RETAIN_USEC(config->access_ttl_usec), &k);
        if (r < 0)
                return r;
        return keyring_records(k, ret);
}

int migrate_store(const Config *config, const char *from_dir) {
        _cleanup_(store_freep) Store *from = NULL, *to = NULL;
        _cleanup_free_ char *lock = NULL;
        _cleanup_(closep) int fd = -EBADF;
        StoreStats a, b;
        uint64_t total = 0;
        json_auto_t *keys = NULL;
        int r;

        if (!streq(config->store_backend, "postgresql"))
                return log_error_errno(EINVAL, "--migrate-store copies into the PostgreSQL store: set [store] "
                                       "backend = postgresql and connection first.");

        /* The lock a running idmd holds on its state directory. */
        if (asprintf(&lock, "%s/idmd.lock", from_dir) < 0)
                return log_oom();
        fd = open(lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return log_error_errno(errno, "%s is not an idmd state directory (%s: %m).", from_dir, lock);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return log_error_errno(errno == EWOULDBLOCK ? EBUSY : errno,
                                       "An idmd is running on %s: stop it first.", from_dir);

        r = read_keys(config, from_dir, &keys);
        if (r < 0)
                return log_error_errno(r, "Failed to read the signing keys in %s/keys (run this as idmd's user; "
                                       "nothing was copied): %m", from_dir);
        r = store_open(from_dir, NULL, &from, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to open the store in %s: %m", from_dir);
        r = store_open_postgresql(config->store_connection, config->store_timeout_usec, &to, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to open the PostgreSQL store: %s",
                                       store_connect_error() ?: strerror(-r));

        r = store_stats(to, &b);
        if (r < 0)
                return log_error_errno(r, "Failed to count the records of the PostgreSQL store: %m");
        for (StoreTable i = 0; i < _STORE_TABLE_MAX; i++)
                if (b.entries[i] > (i == STORE_META ? 1u : 0u))
                        return log_error_errno(EEXIST, "The PostgreSQL store already holds records (table %s): "
                                               "--migrate-store copies into an empty one only.",
                                               store_table_to_string(i));

        for (StoreTable i = 0; i < _STORE_TABLE_MAX; i++) {
                uint64_t n = 0;

                r = copy_table(from, to, i, &n);
                if (r < 0)
                        return log_error_errno(r, "Failed to copy table %s (what was copied stays; empty the "
                                               "database's idm tables before trying again): %m",
                                               store_table_to_string(i));
                log_info("Copied %" PRIu64 " records of table %s.", n, store_table_to_string(i));
                total += n;
        }

        r = store_stats(from, &a);
        if (r >= 0)
                r = store_stats(to, &b);
        if (r < 0)
                return log_error_errno(r, "Failed to count the records after the copy: %m");
        for (StoreTable i = 0; i < _STORE_TABLE_MAX; i++)
                if (a.entries[i] != b.entries[i])
                        return log_error_errno(EIO, "Table %s holds %" PRIu64 " records in %s but %" PRIu64
                                               " in PostgreSQL after the copy.", store_table_to_string(i),
                                               a.entries[i], from_dir, b.entries[i]);

        r = store_transact(to, import_keys, keys);
        if (r < 0)
                return log_error_errno(r, "Failed to copy the signing keys of %s/keys (the records are copied; "
                                       "empty the database's idm tables before trying again): %m", from_dir);
        printf("Copied %" PRIu64 " records from %s into the PostgreSQL store; every table's count matches.\n"
               "Copied %u signing keys: the tokens they signed verify on every idmd of the store.\n",
               total, from_dir, (unsigned) json_object_size(keys));
        return 0;
}
