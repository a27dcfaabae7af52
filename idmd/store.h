/* SPDX-License-Identifier: MIT */
/*
 * The durable store of idmd, in the domain's terms.
 *
 * The store is a set of tables (publishers, offers, customers and their indexes, tokens,
 * consents, capture answers, lockouts, outbox, the uid index, meta). Each table maps a string
 * key to a record, a JSON object (jansson), so records can gain fields without a migration
 * (docs/store.md).
 * Nothing here names LMDB: store.c is the only file that includes lmdb.h, and store-pg.c the only
 * one that includes libpq-fe.h: the same interface runs on either (store_open() for LMDB,
 * store_open_postgresql()).
 *
 * Threading: a Store and its units of work are used from one thread only (idmd's event loop).
 * That thread may hold several read snapshots at once.
 *
 * Units of work: store_read() gives a read-only snapshot, synchronously. Writes are units of
 * work submitted with store_submit(): the store runs the units queued meanwhile together, each
 * in a nested unit of its own (one that fails rolls back alone), commits them durably at once
 * (one fsync for the batch: group commit), and then reports each one's result to its done
 * function, in submission order. Nothing a unit wrote is visible to snapshots, nor reported,
 * before it is durable. When the store is full, it grows and runs the units again from the
 * start, so a unit's function must not have side effects outside the unit of work (or must
 * tolerate being run twice). store_transact() is the synchronous form, for start-up, tools and
 * tests: it commits what was queued before, then its own unit, and blocks until both are
 * durable. Keep snapshots short (never across an event-loop iteration): the store grows only
 * while none is alive.
 *
 * Errors (negative errno-style values), common to all functions:
 *   -ENOENT    record not found
 *   -EEXIST    key already present (STORE_PUT_NO_OVERWRITE)
 *   -E2BIG     key longer than STORE_KEY_MAX
 *   -EINVAL    bad argument (empty key, value not a JSON object, ...)
 *   -ENOSPC    the store is full (at its configured maximum size, or the disk is full): nothing
 *              of the unit of work was written
 *   -ENOBUFS   only inside a StoreWorkFn, from store_put()/store_del(): the store is full.
 *              Just return it (or any error): the store grows and runs the function again, or
 *              reports -ENOSPC at its maximum. It is never reported to a caller.
 *   -EBUSY     store_transact() while a read snapshot is alive or from inside a unit of work;
 *              store_read() or store_submit() from inside a unit of work; a batch that found a
 *              read snapshot alive (a programming error, logged)
 *   -EFBIG     one unit of work too large for the backend (far beyond any real request)
 *   -ESTALE    a read snapshot used after store_free() ended it
 *   -EPROTO    a record could not be decoded (corruption); logged at debug level
 *   -EROFS     write attempted in a read-only unit of work
 *   -EAGAIN    PostgreSQL: the unit of work conflicted with others (another instance's) every
 *              time it ran (STORE_PG_ATTEMPTS times): nothing of it was written
 *   -ENOTCONN  PostgreSQL: the database cannot be reached, or the connection broke; for a commit,
 *              whether it was written is unknown
 *   -EOPNOTSUPP  what the backend does not do (store_backup() on PostgreSQL: pg_dump's job)
 *   -EIO, -ENOMEM and other errno values from the backend
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "idm/cleanup.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_KEY_MAX 480
#define STORE_MAP_SIZE_MIN (UINT64_C(64) * 1024)  /* smallest map_size_initial/map_size_max */

typedef enum StoreTable {
        STORE_META,                     /* "schema_version" and other store-wide values */
        STORE_PUBLISHERS,               /* publisherId -> publisher */
        STORE_PUBLISHER_TOKENS,         /* hash(publisherToken) -> {publisherId} */
        STORE_OFFERS,                   /* offerId -> {publisherId, title, ...} */
        STORE_CUSTOMERS,                /* customerId -> customer */
        STORE_CUSTOMERS_BY_EMAIL,       /* "<publisherId>:<lower-cased e-mail>" -> {customerId} */
        STORE_CUSTOMERS_BY_EXTERNAL_ID, /* "<publisherId>:<externalId>" -> {customerId} */
        STORE_TOKENS,                   /* hash(token) -> token record (refresh, customer, one-time) */
        STORE_CONSENTS,                 /* "<publisherId>:..." / "<customerId>:..." -> consent records */
        STORE_CAPTURE,                  /* capture settings and answers */
        STORE_LOCKOUTS,                 /* "<publisherId>:<lower-cased e-mail>" -> failure counters */
        STORE_OUTBOX,                   /* queued mail, "<16 hex digits>" -> message (outbox.h) */
        STORE_TOKEN_EXPIRY,             /* "<kind>:<due, 16 hex digits>:<key in STORE_TOKENS>" -> {}:
                                         * the expiry index of token records (sessions.h) */
        STORE_UNIX_UIDS,                /* "<uid, 10 digits>" -> {customerId}: the uid index of
                                         * customers who are Unix users (records/unixusers.h) */
        _STORE_TABLE_MAX,
        _STORE_TABLE_INVALID = -22,
} StoreTable;

typedef struct Store Store;
typedef struct StoreTxn StoreTxn;       /* a unit of work */

/* The space the store reserves (the embedded backend's memory map). Sizes are rounded to whole
 * OS pages (initial up, max down). Each growth doubles it, up to map_size_max. A store reopened
 * with more data than map_size_initial starts at map_size_initial doubled as often as needed to
 * hold it. A backend without such a reservation ignores both. */
typedef struct StoreOptions {
        uint64_t map_size_initial;      /* bytes; 0: default 16 MiB (or map_size_max if smaller) */
        uint64_t map_size_max;          /* bytes; 0: default 4 GiB. Growth past it is -ENOSPC */
} StoreOptions;

/* The cache of decoded records behind store_get() (docs/decisions.md): it keeps records of at
 * most RECORD_CACHE_RECORD_MAX bytes holding at most RECORD_CACHE_VALUES_MAX JSON values (the
 * object itself, each member and element, nested). Each entry is charged its bytes plus
 * RECORD_CACHE_VALUE_COST per value (more than jansson takes for any kind of value, an empty
 * object's table included), and the charges stay within RECORD_CACHE_BUDGET. */
#define RECORD_CACHE_RECORD_MAX 1024u
#define RECORD_CACHE_VALUES_MAX 64u
#define RECORD_CACHE_VALUE_COST 256u
#define RECORD_CACHE_BUDGET (UINT64_C(1) << 20)

typedef struct StoreStats {
        uint64_t map_size;              /* bytes reserved for the map */
        uint64_t used_bytes;            /* bytes in use (pages of live data × page size; pages
                                         * freed and awaiting reuse are not counted) */
        uint64_t file_bytes;            /* size of the data file on disk */
        uint64_t entries[_STORE_TABLE_MAX];
        uint64_t grow_count;            /* times the map was grown since open */
        uint64_t batches;               /* durable commits of submitted units since open */
        uint64_t batched_units;         /* units of work in them */
        unsigned queued;                /* units submitted and not yet run */
        /* The cache of decoded records: the records it holds now, what they count against
         * RECORD_CACHE_BUDGET, and since open the reads it answered and the reads of records of
         * at most RECORD_CACHE_RECORD_MAX bytes it decoded (and kept, if it could). */
        unsigned record_cache_entries;
        uint64_t record_cache_charged;
        uint64_t record_cache_hits;
        uint64_t record_cache_misses;
        uint64_t conflict_reruns;       /* PostgreSQL: units of work (or batches) run again because
                                         * they conflicted with others, since open */
        bool postgresql;                /* the PostgreSQL backend */
        bool entries_estimated;         /* PostgreSQL: entries are the planner's estimates (a
                                         * large table: store_pg_count_all()) */
        bool unreachable;               /* PostgreSQL: the database cannot be reached now; the
                                         * sizes and entries above are 0 (not asked) */
} StoreStats;

typedef enum StorePutFlags {
        STORE_PUT_DEFAULT = 0,
        STORE_PUT_NO_OVERWRITE = 1 << 0,        /* -EEXIST if the key exists */
        /* The key is new by construction (random bits): a clash is not an answer but a failure
         * of the whole unit of work, which then commits nothing and gives -EEXIST. PostgreSQL
         * sends such a put with the unit's next statement, or its commit, instead of waiting
         * for it (a round trip less): the clash may be reported by a later call of the unit. */
        STORE_PUT_FRESH = 1 << 1,
} StorePutFlags;

/* Opens (creating if needed) the store in directory dir, which must exist. Removes stale reader
 * slots left by crashed processes. Checks the schema version: a store written by a newer schema
 * gives -EPROTONOSUPPORT (and *ret_version, if given, is set to the stored version; to 0 if it is
 * the backend's file format that is not supported); an older one is migrated. A new store is
 * stamped with STORE_SCHEMA_VERSION. On success *ret_version, if given, is the version the store
 * had when it was found (0: new; below STORE_SCHEMA_VERSION: it was migrated). The caller is responsible for keeping other idmd
 * processes away (lock file); this does not check.
 * Also: -EINVAL for sizes below STORE_MAP_SIZE_MIN or map_size_initial > map_size_max, -EPROTO
 * for a damaged store or one with records but no schema version, -ENOENT if dir is missing. */
int store_open(const char *dir, const StoreOptions *options, Store **ret, unsigned *ret_version);
/* Opens the store kept in the PostgreSQL database conninfo names (a libpq connection string; a
 * password only from PGPASSFILE or ~/.pgpass): creates or migrates its SQL schema under an
 * advisory lock (-EPROTONOSUPPORT for one newer than this build), then checks the schema stamp
 * as store_open() does. Statements wait as coro_wait_fd() does (the loop goes on in a
 * coroutine; elsewhere they block), each and each connect at most timeout_usec (0: 5 s), which
 * gives -ETIMEDOUT. -ENOTCONN when the database cannot be reached, -EPERM when the role may not
 * create the schema. Statistics give entries and the database's size (map_size 0). */
int store_open_postgresql(const char *conninfo, uint64_t timeout_usec, Store **ret, unsigned *ret_version);
/* The database's own words for this thread's last failed connect (PostgreSQL), NULL after a
 * good one. Never holds a password. */
const char *store_connect_error(void);
/* Closes the store. Read snapshots still alive are ended (later use: -ESTALE; they still have
 * to be freed with store_txn_free()). Not from inside a unit of work. NULL-safe. */
Store *store_free(Store *s);
DEFINE_POINTER_CLEANUP(Store, store_free)

/* A read-only snapshot. Free with store_txn_free(). Records returned from it are owned by the
 * caller (new references) and stay valid after the snapshot ends. Writes in it give -EROFS.
 * store_txn_free() is NULL-safe and only for snapshots: the unit of work passed to a
 * StoreWorkFn belongs to store_transact(). */
int store_read(Store *s, StoreTxn **ret);
StoreTxn *store_txn_free(StoreTxn *t);
DEFINE_POINTER_CLEANUP(StoreTxn, store_txn_free)

/* Runs fn(txn, userdata) in a write unit of work. If fn returns < 0 the unit of work is rolled
 * back and that value returned. If fn returns >= 0 it is committed durably and fn's value is
 * returned. When the store is full (fn's writes or the commit) it grows and fn runs again,
 * even if fn ignored or changed the -ENOBUFS. If fn goes on after a failed write (other than
 * -ENOENT/-EEXIST/-E2BIG/-EINVAL answers) and returns >= 0, nothing is committed and that
 * write's error is returned. The StoreTxn is valid only during the call. */
typedef int (*StoreWorkFn)(StoreTxn *t, void *userdata);
int store_transact(Store *s, StoreWorkFn fn, void *userdata);

/* Submits a unit of work: fn(txn, userdata) runs later (never inside this call when an event
 * loop is attached: from the loop, soon; without one, at once) and done(r, userdata) is called
 * once the unit is durable or failed, on the same thread, in submission order. r is fn's value
 * (>= 0, committed), fn's error (< 0, rolled back alone), or the batch's error (-ENOSPC, -EIO,
 * ..., nothing of the unit written). userdata must stay valid until done. done may submit more
 * units (they run in a later batch). -EINVAL, -ENOMEM, -EBUSY (from inside a unit of work), or
 * the error that left the store unusable; done is then not called. */
typedef void (*StoreDoneFn)(int r, void *userdata);
int store_submit(Store *s, StoreWorkFn fn, StoreDoneFn done, void *userdata);

/* Runs what was submitted and not run yet, now (its done functions are called before this
 * returns). store_free() does it too, so nothing submitted is lost. */
void store_flush(Store *s);

/* Attaches the store to an event loop: submitted units run from it as batches. Without it,
 * store_submit() runs each unit at once. On PostgreSQL each submitted unit runs in a coroutine
 * (coro.h) and a transaction of its own instead, several at once; their done functions are
 * still called in submission order, but units of different requests may commit in any order
 * that serializability allows (a client that needs one write before another waits for the
 * first's reply). -EINVAL, or sd-event's error. */
typedef struct sd_event sd_event;
int store_set_event(Store *s, sd_event *event);

/* The jobs that one idmd runs for every idmd sharing the store (PostgreSQL). */
typedef enum StoreJob {
        STORE_JOB_SWEEP,                /* the expiry sweep and the deleted customers' purges */
        STORE_JOB_OUTBOX,               /* delivering the mail outbox */
} StoreJob;

/* Whether this idmd runs job: always on LMDB (one idmd per store); on PostgreSQL the one that
 * holds the job's advisory lock, taken when free and kept until its idmd stops or loses its
 * connection, when another takes it over. 1, 0 (another idmd runs it), or -ENOTCONN/-ETIMEDOUT
 * (the database cannot be reached: run it nowhere for now). May wait, as store calls do. */
int store_lead(Store *s, StoreJob job);

/* Whether the store's calls may wait on the network (PostgreSQL): code on the event loop that
 * uses the store should then run in a coroutine (coro_start()), where a wait gives the loop
 * back; outside one, each statement blocks the loop until it is answered or times out. */
bool store_waits(Store *s);

/* Record access, in either kind of unit of work. Keys are C strings of 1..STORE_KEY_MAX bytes
 * (empty or NULL: -EINVAL; longer: -E2BIG). Values are JSON objects (else -EINVAL), stored as
 * compact JSON, so a later store_get() gives an equal, new object. store_exists() is 1 when
 * the record exists, 0 when not (also for a key that could not be one: empty, too long), or the
 * store's error (a database that cannot be reached is not a "no"). */
int store_get(StoreTxn *t, StoreTable table, const char *key, json_t **ret);   /* -ENOENT */
int store_exists(StoreTxn *t, StoreTable table, const char *key);
/* A hint: key will be read soon (store_get(), store_exists()). PostgreSQL sends that read with
 * the next statement that needs an answer, so that reads whose keys are known up front cost one
 * round trip between them; the later call takes its answer (a write of the key in between makes
 * it read again). Up to STORE_PG_PREFETCH_MAX (4) per unit of work or snapshot are sent; LMDB
 * needs none. 0, or the store's error. */
int store_prefetch(StoreTxn *t, StoreTable table, const char *key);
/* The number of records in table as this unit of work or snapshot sees it (a unit of work's
 * own writes included), without reading them. */
int store_count(StoreTxn *t, StoreTable table, uint64_t *ret);
/* value is borrowed (not stolen); it is serialized before store_put returns. */
int store_put(StoreTxn *t, StoreTable table, const char *key, json_t *value, StorePutFlags flags);
int store_del(StoreTxn *t, StoreTable table, const char *key);                 /* -ENOENT */

/* Calls fn for each record whose key starts with prefix (NULL or "": all), in key order,
 * starting after key 'after' (NULL: from the start). fn returns 0 to go on, > 0 to stop (that
 * value is returned), < 0 to stop with that error. The key and value passed to fn are borrowed
 * for the duration of the call only. Returns 0 when all were visited. In a write unit of work
 * fn may write, including deleting the record it was given. 'after' need not exist (nor be a
 * valid key: any string works as a pagination cursor). */
typedef int (*StoreForeachFn)(const char *key, json_t *value, void *userdata);
int store_foreach(StoreTxn *t, StoreTable table, const char *prefix, const char *after,
                  StoreForeachFn fn, void *userdata);

/* Calls fn, as store_foreach() does, for each record of table whose top-level member field is a
 * string equal to value, in key order ("every record naming this customer"). A walk over the
 * whole table, but one that decodes only the records that match: a record that does not name
 * the value is skipped at the cost of a byte search. -EINVAL for a NULL field or value, or one
 * that is not UTF-8. */
int store_foreach_where(StoreTxn *t, StoreTable table, const char *field, const char *value,
                        StoreForeachFn fn, void *userdata);
/* The same in bounded steps, for a large table walked in the background: from the first key
 * after 'after' (NULL: the start), visiting at most max records (0: no bound), matching or not.
 * *ret_last (if given) is set to the last key visited when max stopped the walk (a new string:
 * pass it as the next step's 'after'), or to NULL when the walk reached the end of the table. */
int store_foreach_where_from(StoreTxn *t, StoreTable table, const char *field, const char *value,
                             const char *after, unsigned max, char **ret_last,
                             StoreForeachFn fn, void *userdata);

int store_stats(Store *s, StoreStats *ret);

/* Writes a consistent, compacted copy of the store to the file path (must not exist: -EEXIST),
 * mode 0600, synced to disk. The copy is a data file: put it in an empty directory as
 * "data.mdb" and store_open() that directory. Partial files are removed on failure. Read
 * snapshots may be alive; not from inside a unit of work (-EBUSY). */
int store_backup(Store *s, const char *path);

const char *store_table_to_string(StoreTable t);        /* NULL if out of range */
