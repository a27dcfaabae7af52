/* SPDX-License-Identifier: MIT */
/*
 * The store (store.h) and its LMDB backend: one environment per state directory, one named
 * database per StoreTable, records as compact JSON objects. This is the only file that includes
 * lmdb.h; LMDB's return codes become -errno here, in one place (store_errno()). What every backend
 * shares (key and record checks, walks, the unit-of-work rules, the schema stamp) is here too; a
 * Store or StoreTxn with a `pg` member runs on PostgreSQL instead (store-pg.c), whose units of work
 * each run in a coroutine and a transaction of their own (the PostgreSQL section below).
 *
 * Units of work are LMDB transactions. Write units of work run inside store_transact(), which
 * also grows the map when LMDB says it is full. Growing unmaps and remaps the file
 * (mdb_env_set_mapsize()), which LMDB allows only while this process has no transaction open:
 * that is why store_transact() refuses to run while a read snapshot is alive.
 */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <lmdb.h>
#include <sodium.h>
#include <systemd/sd-event.h>

#include "coro.h"
#include "idm/cleanup.h"
#include "log.h"
#include "sessions.h"
#include "store-pg.h"
#include "store.h"

#define STORE_MAP_SIZE_DEFAULT (UINT64_C(16) * 1024 * 1024)
#define STORE_MAP_SIZE_MAX_DEFAULT (UINT64_C(4) * 1024 * 1024 * 1024)
#define STORE_SCHEMA_KEY "schema_version"
#define STORE_BEGIN_ATTEMPTS 4
#define STORE_DISK_LOW (UINT64_C(1) * 1024 * 1024)
#define STORE_BATCH_MAX 1024u           /* units of work in one transaction, at most */
/* A batch waits for the requests the loop has already received (their units join it), but never
 * longer than this, however busy the loop is with other work. */
#define STORE_BATCH_DELAY_USEC 2000u
/* The loop runs a batch's units in slices of about this long, serving the connections that
 * became ready in between: a cheap read waits for one slice, not for a whole batch. */
#define STORE_SLICE_USEC 50u
/* A unit of work (or batch) that PostgreSQL rolled back for a conflict with another transaction
 * (serialization failure, deadlock) runs again, up to this many times in all. */
#define STORE_PG_ATTEMPTS 20u
/* PostgreSQL with an event loop: units of work running at once, each in a coroutine and a
 * transaction of its own (the rest of the connections are for read snapshots). */
#define STORE_PG_UNITS_MAX (STORE_PG_CONNECTIONS_MAX / 2)
/* The cache of decoded records (record_cache_*() below): its slots. Its bounds are in store.h. */
#define RECORD_CACHE_SLOTS 512u

typedef struct StoreUnit StoreUnit;

/* A record's bytes as last read for one slot, and what they decode to. */
typedef struct RecordCacheSlot {
        char *bytes;
        size_t size;
        json_t *value;
        uint64_t charge;        /* what it counts against RECORD_CACHE_BUDGET */
} RecordCacheSlot;

typedef enum BatchState {
        BATCH_IDLE,
        BATCH_OPENING,          /* the committer begins the transaction */
        BATCH_RUNNING,          /* the loop runs the units, a slice per loop iteration */
        BATCH_COMMITTING,       /* the units ran; the committer commits (fdatasync) */
        BATCH_ABORTING,         /* the store was full: the committer rolls back, then it grows */
} BatchState;

typedef enum CommitterRequest {
        REQUEST_NONE,
        REQUEST_BEGIN,
        REQUEST_COMMIT,
        REQUEST_ABORT,
        REQUEST_QUIT,
} CommitterRequest;

typedef struct Store Store;
static void committer_request(Store *s, CommitterRequest req);

struct Store {
        StorePg *pg;                    /* the PostgreSQL backend; NULL: LMDB (env) */
        MDB_env *env;
        MDB_dbi dbi[_STORE_TABLE_MAX];
        char *dir;
        char *data_path;

        uint64_t page_size;             /* the OS page size: map sizes are multiples of it */
        uint64_t map_size;              /* current map size */
        uint64_t map_size_max;
        uint64_t grow_count;

        StoreTxn *readers;              /* live read snapshots (doubly linked) */
        unsigned n_readers;
        StoreTxn *writer;               /* the unit of work store_transact() is running, if any */

        /* store_get()'s decoded records (record_cache_*()): RECORD_CACHE_SLOTS, made at the
         * first read; used by the thread that reads, which is the loop's when there is one. */
        RecordCacheSlot *record_cache;
        uint8_t record_cache_key[crypto_shorthash_KEYBYTES];
        uint64_t record_cache_charged;  /* the entries' charges, <= RECORD_CACHE_BUDGET */
        uint64_t record_cache_hits, record_cache_misses;

        /* Units of work submitted and not yet run (FIFO), and the event source that runs them
         * as one batch. */
        StoreUnit *queue_head, *queue_tail;
        unsigned n_queued;
        sd_event_source *batch_source;  /* runs the batch once the loop has nothing else to do */
        sd_event_source *batch_timer;   /* ... or after STORE_BATCH_DELAY_USEC at the latest */
        uint64_t batches, batched_units;
        uint64_t pg_reruns;             /* PostgreSQL: runs again after a conflict (StoreStats) */

        /* With an event loop, a committer thread begins and commits (fdatasync) each batch's
         * transaction, so that the loop goes on serving reads while the disk syncs. The units'
         * functions still run on the loop, in nested transactions of that transaction, handed
         * over under the lock (see "the committer" below). */
        BatchState state;               /* loop only */
        StoreUnit *batch;               /* loop only: the units of the batch in progress */
        unsigned batch_n;
        StoreUnit *run_next;            /* loop only: BATCH_RUNNING's next unit to run */
        /* Units of batches that ended, whose done functions have not been called yet (FIFO). */
        StoreUnit *deliver_head, *deliver_tail;
        /* Runs the next slice of units. A new defer source for each slice: sd-event dispatches
         * the source pending since the oldest iteration first, so a new one takes turns with the
         * connections, where one kept enabled would stay pending since it was made and always go
         * first. */
        sd_event *event;
        sd_event_source *slice_source;
        pthread_t committer;
        bool committer_started;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool lock_initialized;
        int efd;                        /* the committer's answers wake the loop */
        sd_event_source *efd_source;
        /* Under lock: */
        CommitterRequest request;
        bool answered;
        int answer;                     /* LMDB's code for the request */
        MDB_txn *batch_txn;             /* the batch's transaction (the committer's) */

        int dead;                       /* < 0: the map could not be re-established */

        /* PostgreSQL with an event loop: each submitted unit runs in a coroutine and a
         * transaction of its own, at most STORE_PG_UNITS_MAX at once, taken from the queue in
         * submission order; the running ones (FIFO) have their done functions called in that
         * order, as each one at the head has finished. */
        StoreUnit *running_head, *running_tail;
        unsigned n_running;
        bool delivering;
        StoreTxn *pg_writers;           /* the units of work running now, one per coroutine */
};

struct StoreUnit {
        Store *store;
        bool finished;                  /* PostgreSQL: its transaction ended */
        StoreWorkFn fn;
        StoreDoneFn done;
        void *userdata;
        int result;
        StoreUnit *next;
};

struct StoreTxn {
        Store *store;                   /* NULL once store_free() detached a read snapshot */
        MDB_txn *txn;                   /* LMDB's transaction, or */
        PgConn *pg;                     /* PostgreSQL's connection, inside its transaction */
        bool write;
        bool retry;                     /* PostgreSQL: a conflict killed the transaction */
        const void *coro;               /* PostgreSQL: the coroutine running the unit */
        StoreTxn *writers_next;

        /* Write units of work only. An LMDB write error other than "not found"/"exists" leaves
         * the transaction unusable; we remember it so that a unit of work whose function
         * swallowed the error is not committed, and so that store_transact() knows the map was
         * full whatever the function made of -ENOBUFS. */
        bool map_full;
        int failed;

        StoreTxn *readers_prev, *readers_next;
};

static const char *const table_names[_STORE_TABLE_MAX] = {
        [STORE_META]                     = "meta",
        [STORE_PUBLISHERS]               = "publishers",
        [STORE_PUBLISHER_TOKENS]         = "publisher_tokens",
        [STORE_OFFERS]                   = "offers",
        [STORE_CUSTOMERS]                = "customers",
        [STORE_CUSTOMERS_BY_EMAIL]       = "customers_by_email",
        [STORE_CUSTOMERS_BY_EXTERNAL_ID] = "customers_by_external_id",
        [STORE_TOKENS]                   = "tokens",
        [STORE_CONSENTS]                 = "consents",
        [STORE_CAPTURE]                  = "capture",
        [STORE_LOCKOUTS]                 = "lockouts",
        [STORE_OUTBOX]                   = "outbox",
        [STORE_TOKEN_EXPIRY]             = "token_expiry",
        [STORE_UNIX_UIDS]                = "unix_uids",
};

const char *store_table_to_string(StoreTable t) {
        if (t < 0 || t >= _STORE_TABLE_MAX)
                return NULL;
        return table_names[t];
}

/* Schema migrations: migrations[v] upgrades a store at schema version v to v + 1, in place, in
 * the unit of work that opens the store. They run in order and the new stamp is written after
 * the last one, in the same unit of work, so an upgrade is all or nothing (and runs again from
 * the start if the map has to grow). Bumping STORE_SCHEMA_VERSION to N means adding
 * [N - 1] = migrate_<N-1>_to_<N> here. Version 0 never existed (new stores are stamped with the
 * current version), so [0] stays NULL. */
typedef int (*StoreMigrateFn)(StoreTxn *t);

/* 1 -> 2: the expiry index of token records (token_expiry) is built from the tokens table.
 * sessions.c knows the records, so it does the walk; a big store takes a while, once. */
static int migrate_1_to_2(StoreTxn *t) {
        return session_expiry_rebuild(t);
}

static const StoreMigrateFn migrations[STORE_SCHEMA_VERSION] = {
        [0] = NULL,
        [1] = migrate_1_to_2,
};

/* The one place LMDB's codes become -errno. MDB_MAP_FULL becomes the internal "grow the map"
 * marker -ENOBUFS, which store_transact() never returns to its caller. */
static int store_errno(int k) {
        switch (k) {
        case MDB_SUCCESS:
                return 0;
        case MDB_NOTFOUND:
                return -ENOENT;
        case MDB_KEYEXIST:
                return -EEXIST;
        case MDB_MAP_FULL:
                return -ENOBUFS;
        case MDB_BAD_VALSIZE:
                return -E2BIG;
        case MDB_TXN_FULL:
                return -EFBIG;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_PAGE_FULL:
        case MDB_CURSOR_FULL:
        case MDB_INCOMPATIBLE:
                return log_debug_errno(EPROTO, "Store is damaged or not ours: %s", mdb_strerror(k));
        case MDB_VERSION_MISMATCH:
                return log_debug_errno(EPROTONOSUPPORT, "Store file format: %s", mdb_strerror(k));
        case MDB_READERS_FULL:
        case MDB_TLS_FULL:
        case MDB_MAP_RESIZED:
                return -EAGAIN;
        case MDB_DBS_FULL:
        case MDB_BAD_RSLOT:
        case MDB_BAD_TXN:
        case MDB_BAD_DBI:
                return log_debug_errno(EINVAL, "Store misuse: %s", mdb_strerror(k));
        case MDB_PANIC:
                return log_debug_errno(EIO, "Store environment failed: %s", mdb_strerror(k));
        default:
                if (k > 0)
                        return -k;
                return log_debug_errno(EIO, "Unknown LMDB error %d", k);
        }
}

/* LMDB reports a short write, which is how a full file system shows, as EIO. Tell that apart
 * from a failing disk by what is left: a short write leaves (next to) nothing. */
static bool store_disk_full(Store *s) {
        struct statvfs sv;
        uint64_t avail;

        if (statvfs(s->dir, &sv) < 0)
                return false;
        avail = (uint64_t) (geteuid() == 0 ? sv.f_bfree : sv.f_bavail) * sv.f_frsize;
        return avail < STORE_DISK_LOW;
}

/* store_errno() for writes to the file (page spills, commits): disk full is -ENOSPC. */
static int store_write_errno(Store *s, int k) {
        if (k == ENOSPC || k == EDQUOT || (k == EIO && store_disk_full(s)))
                return log_debug_errno(ENOSPC, "No space left for store '%s': %s", s->dir,
                                       mdb_strerror(k));
        return store_errno(k);
}

/* Returns an LMDB failure as -errno; in a write unit of work, also records it (see StoreTxn). */
static int txn_error(StoreTxn *t, int k) {
        int r;

        assert(k != MDB_SUCCESS);

        if (!t->write)
                return store_errno(k);

        /* A big unit of work can spill pages to the file before its commit. */
        r = store_write_errno(t->store, k);

        switch (k) {
        case MDB_NOTFOUND:
        case MDB_KEYEXIST:
        case MDB_BAD_VALSIZE:
                /* Answers, not failures: LMDB checks these before touching the transaction. */
                return r;
        default:
                if (k == MDB_MAP_FULL)
                        t->map_full = true;
                if (t->failed == 0)
                        t->failed = r;
                return r;
        }
}

static uint64_t monotonic_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t round_up(uint64_t v, uint64_t m) {
        return (v + m - 1) / m * m;
}

/* Checks a unit of work before use: -ESTALE once its store is gone, the first failure of a
 * write unit of work, which LMDB will not let go on anyway. */
static int txn_check(StoreTxn *t) {
        if (!t)
                return -EINVAL;
        if (!t->store || (!t->txn && !t->pg))
                return -ESTALE;
        if (t->failed < 0)
                return t->failed;
        return 0;
}

/* A PostgreSQL failure in t: the transaction is dead (PostgreSQL refuses anything in it after an
 * error), so it is remembered as txn_error() does for LMDB's, and a conflict asks for a rerun. */
static int pg_fail(StoreTxn *t, int r) {
        if (r == -ENOENT || r == -EEXIST)
                return r;       /* answers, not failures */
        if (r == -ENOTUNIQ)
                r = -EEXIST;    /* a fresh put's key existed (STORE_PUT_FRESH): the unit failed */
        if (r == -EAGAIN)
                t->retry = true;
        if (t->failed == 0)
                t->failed = r;
        return r;
}

/* The unit of work the caller runs in, if any. On PostgreSQL several run at once, each in a
 * coroutine of its own: the one of the caller's coroutine. */
static StoreTxn *store_writer(Store *s) {
        if (!s->pg)
                return s->writer;
        for (StoreTxn *w = s->pg_writers; w; w = w->writers_next)
                if (w->coro == coro_self())
                        return w;
        return NULL;
}

static void store_writer_enter(Store *s, StoreTxn *t) {
        if (!s->pg) {
                s->writer = t;
                return;
        }
        t->coro = coro_self();
        t->writers_next = s->pg_writers;
        s->pg_writers = t;
}

static void store_writer_leave(Store *s, StoreTxn *t) {
        if (!s->pg) {
                s->writer = NULL;
                return;
        }
        for (StoreTxn **w = &s->pg_writers; *w; w = &(*w)->writers_next)
                if (*w == t) {
                        *w = t->writers_next;
                        break;
                }
}

static int table_check(StoreTable table) {
        return table >= 0 && table < _STORE_TABLE_MAX ? 0 : -EINVAL;
}

/* txn_check() and table_check() together: what every record access starts with. */
static int txn_table_check(StoreTxn *t, StoreTable table) {
        int r = txn_check(t);

        return r < 0 ? r : table_check(table);
}

/* Keys are C strings of 1..STORE_KEY_MAX bytes, stored without the NUL. */
static int key_to_val(const char *key, MDB_val *ret) {
        size_t n;

        if (!key)
                return -EINVAL;
        n = strnlen(key, STORE_KEY_MAX + 1);
        if (n == 0)
                return -EINVAL;
        if (n > STORE_KEY_MAX)
                return -E2BIG;

        *ret = (MDB_val) { .mv_size = n, .mv_data = (void *) key };
        return 0;
}

/* Decodes a stored record. Done before the MDB_val's transaction ends: it points into the map. */
static int record_decode(const MDB_val *v, json_t **ret) {
        json_error_t error;
        json_t *j;

        /* JSON_ALLOW_NUL: json_dumps() writes a string holding NUL as "\u0000"; read it back. */
        j = json_loadb(v->mv_data, v->mv_size, JSON_ALLOW_NUL, &error);
        if (!j)
                return log_debug_errno(EPROTO, "Undecodable record: %s (at byte %d)", error.text,
                                       error.position);
        if (!json_is_object(j)) {
                json_decref(j);
                return log_debug_errno(EPROTO, "Stored record is not a JSON object");
        }

        *ret = j;
        return 0;
}

/* The cache of decoded records. Decoding is most of a cheap read's CPU: a customer's record of
 * 300 bytes takes about 4 µs with jansson, a deep copy of its decoded object 0.5 µs. Each slot
 * (a keyed hash of the table and key picks it) holds the bytes last decoded for it and their
 * decoded object. A read whose bytes are the same gets a deep copy of that object, which is what
 * decoding them again would give: the entry stands for the bytes, not for the key, so a record
 * written, deleted or rolled back since cannot be served from it. Slots are replaced, never
 * grown; a replaced entry's bytes are wiped (a customer's record holds its password hash). */
static void record_cache_slot_clear(Store *s, RecordCacheSlot *slot) {
        if (slot->bytes) {
                sodium_memzero(slot->bytes, slot->size);
                free(slot->bytes);
        }
        json_decref(slot->value);
        s->record_cache_charged -= slot->charge;
        *slot = (RecordCacheSlot) {};
}

static void record_cache_free(Store *s) {
        if (!s->record_cache)
                return;
        for (size_t i = 0; i < RECORD_CACHE_SLOTS; i++)
                record_cache_slot_clear(s, &s->record_cache[i]);
        free(s->record_cache);
        s->record_cache = NULL;
}

/* The slot of the record at key (key_len bytes) in table, or NULL without memory for the cache. */
static RecordCacheSlot *record_cache_slot(Store *s, StoreTable table, const char *key, size_t key_len) {
        uint8_t buf[1 + STORE_KEY_MAX], h[crypto_shorthash_BYTES];
        uint64_t x;

        assert(key_len <= STORE_KEY_MAX);
        if (!s->record_cache) {
                s->record_cache = calloc(RECORD_CACHE_SLOTS, sizeof(RecordCacheSlot));
                if (!s->record_cache)
                        return NULL;
                /* Keyed, so that no one can choose keys that share a slot. */
                randombytes_buf(s->record_cache_key, sizeof(s->record_cache_key));
        }
        buf[0] = (uint8_t) table;
        memcpy(buf + 1, key, key_len);
        (void) crypto_shorthash(h, buf, 1 + key_len, s->record_cache_key);
        memcpy(&x, h, sizeof(x));
        return &s->record_cache[x % RECORD_CACHE_SLOTS];
}

/* The JSON values in j: j itself and everything inside, counted up to just past max. The depth
 * of the walk is bounded by max too. */
static size_t json_values(json_t *j, size_t max) {
        const char *k;
        size_t n = 1, i;
        json_t *v;

        if (json_is_object(j)) {
                json_object_foreach(j, k, v) {
                        if (n > max)
                                break;
                        n += json_values(v, max - n);
                }
        } else if (json_is_array(j))
                json_array_foreach(j, i, v) {
                        if (n > max)
                                break;
                        n += json_values(v, max - n);
                }
        return n;
}

/* Keeps value, decoded from v, in slot, when it is small enough and the budget allows. */
static void record_cache_keep(Store *s, RecordCacheSlot *slot, const MDB_val *v, json_t *value) {
        uint64_t charge, values;
        json_t *copy;
        char *bytes;

        values = json_values(value, RECORD_CACHE_VALUES_MAX);
        if (values > RECORD_CACHE_VALUES_MAX)
                return;
        charge = v->mv_size + values * RECORD_CACHE_VALUE_COST;
        if (s->record_cache_charged - slot->charge + charge > RECORD_CACHE_BUDGET)
                return;

        /* A copy of the object: the caller may change the one it gets. */
        bytes = malloc(v->mv_size);
        if (!bytes)
                return;
        copy = json_deep_copy(value);
        if (!copy) {
                free(bytes);
                return;
        }
        record_cache_slot_clear(s, slot);
        memcpy(bytes, v->mv_data, v->mv_size);
        *slot = (RecordCacheSlot) { .bytes = bytes, .size = v->mv_size, .value = copy, .charge = charge };
        s->record_cache_charged += charge;
}

/* record_decode() through the cache of store s, for the record at key (key_len bytes) in table. */
static int record_decode_cached(Store *s, StoreTable table, const char *key, size_t key_len, const MDB_val *v,
                                json_t **ret) {
        RecordCacheSlot *slot = NULL;
        json_t *value;
        int r;

        if (v->mv_size > 0 && v->mv_size <= RECORD_CACHE_RECORD_MAX)
                slot = record_cache_slot(s, table, key, key_len);
        if (slot && slot->value && slot->size == v->mv_size && memcmp(slot->bytes, v->mv_data, v->mv_size) == 0) {
                value = json_deep_copy(slot->value);
                if (!value)
                        return -ENOMEM;
                s->record_cache_hits++;
                *ret = value;
                return 0;
        }

        r = record_decode(v, &value);
        if (r < 0)
                return r;
        if (slot) {
                s->record_cache_misses++;
                record_cache_keep(s, slot, v, value);
        }
        *ret = value;
        return 0;
}

static void store_update_map_size(Store *s) {
        MDB_envinfo info;

        if (mdb_env_info(s->env, &info) == MDB_SUCCESS)
                s->map_size = info.me_mapsize;
}

/* Changes the map size. Only with no transaction of ours open (LMDB's rule for a remap). On
 * failure LMDB may have lost its mapping, so the store is marked dead. size 0: adopt the size
 * recorded in the file (another process grew it). */
static int store_set_map_size(Store *s, uint64_t size) {
        int k;

        assert(!store_writer(s));
        assert(s->n_readers == 0);

        k = mdb_env_set_mapsize(s->env, (size_t) size);
        if (k != MDB_SUCCESS) {
                s->dead = store_errno(k);
                return log_debug_errno(s->dead, "Could not resize the map of '%s' to %" PRIu64
                                       " bytes: %m", s->dir, size);
        }

        store_update_map_size(s);
        return 0;
}

static int store_grow(Store *s) {
        uint64_t size;
        int r;

        if (s->map_size >= s->map_size_max)
                return log_debug_errno(ENOSPC, "Store '%s' is full at its maximum map size of %" PRIu64
                                       " bytes", s->dir, s->map_size_max);

        size = s->map_size > s->map_size_max / 2 ? s->map_size_max : s->map_size * 2;
        size = round_up(size, s->page_size);
        if (size > s->map_size_max)
                size = s->map_size_max;

        r = store_set_map_size(s, size);
        if (r < 0)
                return r;

        s->grow_count++;
        log_debug("Grew the map of '%s' to %" PRIu64 " bytes", s->dir, s->map_size);
        return 0;
}

/* mdb_txn_begin(), adopting a map grown by another process and clearing stale reader slots. */
static int store_txn_begin(Store *s, unsigned flags, MDB_txn **ret) {
        int k = MDB_SUCCESS;

        if (s->dead < 0)
                return s->dead;

        for (unsigned attempt = 0; attempt < STORE_BEGIN_ATTEMPTS; attempt++) {
                int r, dead = 0;

                k = mdb_txn_begin(s->env, NULL, flags, ret);
                if (k == MDB_SUCCESS)
                        return 0;

                if (k == MDB_MAP_RESIZED) {
                        /* Remapping is only allowed with none of our transactions open. */
                        if (s->n_readers > 0 || s->writer)
                                return -EAGAIN;
                        r = store_set_map_size(s, 0);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (k == MDB_READERS_FULL) {
                        (void) mdb_reader_check(s->env, &dead);
                        log_debug("Reader table of '%s' full, cleared %d stale slot(s)", s->dir, dead);
                        if (dead > 0)
                                continue;
                }
                break;
        }

        return store_errno(k);
}

static void store_reader_link(Store *s, StoreTxn *t) {
        t->store = s;
        t->readers_prev = NULL;
        t->readers_next = s->readers;
        if (s->readers)
                s->readers->readers_prev = t;
        s->readers = t;
        s->n_readers++;
}

static void store_reader_unlink(Store *s, StoreTxn *t) {
        if (t->readers_prev)
                t->readers_prev->readers_next = t->readers_next;
        else
                s->readers = t->readers_next;
        if (t->readers_next)
                t->readers_next->readers_prev = t->readers_prev;
        t->readers_prev = t->readers_next = NULL;
        t->store = NULL;
        assert(s->n_readers > 0);
        s->n_readers--;
}

StoreTxn *store_txn_free(StoreTxn *t) {
        if (!t)
                return NULL;

        /* The unit of work passed to a StoreWorkFn belongs to store_transact(). */
        assert(!t->write);
        if (t->write)
                return NULL;

        if (t->store) {
                if (t->pg)
                        store_pg_rollback(t->store->pg, t->pg);
                store_reader_unlink(t->store, t);
        }
        if (t->txn)
                mdb_txn_abort(t->txn);
        free(t);
        return NULL;
}

int store_read(Store *s, StoreTxn **ret) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        /* A snapshot opened inside a unit of work could outlive it and block the remap. */
        if (store_writer(s))
                return -EBUSY;

        t = calloc(1, sizeof(StoreTxn));
        if (!t)
                return -ENOMEM;

        if (s->pg)
                r = store_pg_begin(s->pg, false, &t->pg);
        else
                r = store_txn_begin(s, MDB_RDONLY, &t->txn);
        if (r < 0)
                return r;

        store_reader_link(s, t);
        *ret = TAKE_PTR(t);
        return 0;
}

Store *store_free(Store *s) {
        if (!s)
                return NULL;

        /* Not from inside a unit of work: its transaction is on store_transact()'s stack. */
        assert(!store_writer(s));

        /* Nothing submitted is lost: units still queued run (and are reported) now. */
        store_flush(s);
        /* The coroutines' loop goes with the store's (their stacks' trim timer is on it). */
        if (s->pg && s->event)
                coro_set_event(NULL);
        s->batch_source = sd_event_source_disable_unref(s->batch_source);
        s->batch_timer = sd_event_source_disable_unref(s->batch_timer);
        s->slice_source = sd_event_source_disable_unref(s->slice_source);
        s->event = sd_event_unref(s->event);
        if (s->committer_started) {
                committer_request(s, REQUEST_QUIT);
                (void) pthread_join(s->committer, NULL);
                s->committer_started = false;
        }
        s->efd_source = sd_event_source_disable_unref(s->efd_source);
        s->efd = safe_close(s->efd);
        if (s->lock_initialized) {
                (void) pthread_cond_destroy(&s->cond);
                (void) pthread_mutex_destroy(&s->lock);
        }

        /* Snapshots still alive are ended here; using them afterwards gives -ESTALE and
         * store_txn_free() just releases their memory. */
        while (s->readers) {
                StoreTxn *t = s->readers;

                if (t->pg)
                        store_pg_rollback(s->pg, t->pg);
                else
                        mdb_txn_abort(t->txn);
                store_reader_unlink(s, t);
                t->txn = NULL;
                t->pg = NULL;
        }

        s->pg = store_pg_free(s->pg);
        if (s->env)
                mdb_env_close(s->env);  /* also closes the table handles */
        record_cache_free(s);
        free(s->dir);
        free(s->data_path);
        free(s);
        return NULL;
}

/* Before a unit's next attempt after a conflict: a random wait of up to 2^attempt × 100 µs
 * (at most about 0.1 s), so that units that keep conflicting over one record spread out. */
static void store_pg_backoff(unsigned attempt) {
        uint64_t max = UINT64_C(100) << (attempt < 10 ? attempt : 10);

        (void) coro_sleep(randombytes_uniform((uint32_t) max) + 1);
}

/* store_run() on PostgreSQL: runs fn in a transaction until it commits, fails, or has conflicted
 * with other transactions STORE_PG_ATTEMPTS times. */
static int store_run_pg(Store *s, StoreWorkFn fn, void *userdata) {
        for (unsigned attempt = 1;; attempt++) {
                if (attempt > 1) {
                        store_pg_backoff(attempt);
                        s->pg_reruns++;
                }
                StoreTxn t = { .store = s, .write = true };
                int r, k;

                r = store_pg_begin(s->pg, true, &t.pg);
                if (r < 0)
                        return r;

                store_writer_enter(s, &t);
                r = fn(&t, userdata);
                store_writer_leave(s, &t);

                if (t.retry || r < 0 || t.failed < 0) {
                        store_pg_rollback(s->pg, t.pg);
                        if (t.retry) {
                                if (attempt < STORE_PG_ATTEMPTS)
                                        continue;
                                return log_debug_errno(EAGAIN, "Unit of work conflicted %u times, given up",
                                                       attempt);
                        }
                        /* After a failure of the store, whatever fn concluded (an -EEXIST from a
                         * check that failed, say) rests on it: the failure is the answer. */
                        if (r < 0 && t.failed >= 0)
                                return r;
                        return log_debug_errno(t.failed, "Unit of work failed after the store failed, rolled "
                                               "back: %m");
                }

                k = store_pg_commit(s->pg, t.pg);
                if (k == -EAGAIN && attempt < STORE_PG_ATTEMPTS)
                        continue;
                return k < 0 ? k : r;
        }
}

/* Runs fn in a write transaction until it commits, fails, or the map cannot grow any more. */
static int store_run(Store *s, StoreWorkFn fn, void *userdata) {
        if (s->pg)
                return store_run_pg(s, fn, userdata);
        for (;;) {
                StoreTxn t = { .store = s, .write = true };
                int r, k;

                r = store_txn_begin(s, 0, &t.txn);
                if (r < 0)
                        return r;

                store_writer_enter(s, &t);
                r = fn(&t, userdata);
                store_writer_leave(s, &t);

                if (t.map_full) {
                        /* Whatever fn returned: its writes did not fit. */
                        mdb_txn_abort(t.txn);
                        r = store_grow(s);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (r < 0) {
                        mdb_txn_abort(t.txn);
                        return r;
                }
                if (t.failed < 0) {
                        /* fn carried on after a write failed; LMDB would refuse the commit. */
                        mdb_txn_abort(t.txn);
                        return log_debug_errno(t.failed, "Unit of work went on after a failed write, "
                                               "rolled back: %m");
                }

                /* Commits durably (fdatasync) or frees the transaction without writing it. */
                k = mdb_txn_commit(t.txn);
                if (k == MDB_MAP_FULL) {
                        r = store_grow(s);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (k != MDB_SUCCESS)
                        return log_debug_errno(store_write_errno(s, k), "Commit to '%s' failed, nothing "
                                               "written: %m", s->dir);
                return r;
        }
}

int store_transact(Store *s, StoreWorkFn fn, void *userdata) {
        if (!s || !fn)
                return -EINVAL;
        /* No nesting, and no remap under a live snapshot (see the top of this file). */
        if (store_writer(s) || s->n_readers > 0)
                return -EBUSY;

        /* Units submitted earlier commit first: the order of writes is the order of requests. */
        store_flush(s);
        return store_run(s, fn, userdata);
}

/* --- batches: many units of work in one transaction --- */

/* Runs one unit of a batch in parent, in a nested transaction of its own so that a unit that
 * fails rolls back alone; sets its result. Returns true when the store is full: parent must be
 * rolled back, the map grown and the whole batch run again. */
static bool store_run_unit(Store *s, MDB_txn *parent, StoreUnit *u) {
        StoreTxn t = { .store = s, .write = true };
        int r, k;

        k = mdb_txn_begin(s->env, parent, 0, &t.txn);
        if (k == MDB_MAP_FULL)
                return true;
        if (k != MDB_SUCCESS) {
                u->result = store_write_errno(s, k);
                return false;
        }

        store_writer_enter(s, &t);
        r = u->fn(&t, u->userdata);
        store_writer_leave(s, &t);

        if (t.map_full) {
                mdb_txn_abort(t.txn);
                return true;
        }
        if (r < 0) {
                mdb_txn_abort(t.txn);
                u->result = r;
        } else if (t.failed < 0) {
                mdb_txn_abort(t.txn);
                u->result = log_debug_errno(t.failed, "Unit of work went on after a failed write, "
                                            "rolled back: %m");
        } else {
                /* Merges into the parent; nothing reaches the disk yet. */
                k = mdb_txn_commit(t.txn);
                if (k == MDB_MAP_FULL)
                        return true;
                u->result = k == MDB_SUCCESS ? r : store_write_errno(s, k);
        }
        return false;
}

/* store_run_unit() for every unit of a batch; true when the store is full. */
static bool store_run_units(Store *s, MDB_txn *parent, StoreUnit *batch) {
        for (StoreUnit *u = batch; u; u = u->next)
                if (store_run_unit(s, parent, u))
                        return true;
        return false;
}

/* One unit of a batch on PostgreSQL, under a savepoint so that it rolls back alone; sets its
 * result. < 0: the batch's transaction is dead (-EAGAIN: it conflicted, run the batch again). */
static int store_run_unit_pg(Store *s, PgConn *c, StoreUnit *u) {
        StoreTxn t = { .store = s, .write = true, .pg = c };
        int r, k;

        k = store_pg_savepoint(c);
        if (k < 0)
                return k;

        store_writer_enter(s, &t);
        r = u->fn(&t, u->userdata);
        store_writer_leave(s, &t);

        if (t.retry)
                return -EAGAIN;
        if (r < 0 || t.failed < 0) {
                k = store_pg_rollback_to(c);
                if (k < 0)
                        return k;
                /* As in store_run_pg(): after a failure of the store, that failure is the answer. */
                u->result = r < 0 && t.failed >= 0 ? r :
                            log_debug_errno(t.failed, "Unit of work failed after the store failed, rolled back: %m");
                return 0;
        }
        k = store_pg_release(c);
        if (k == -ENOTUNIQ) {
                /* A fresh put of the unit, sent with the release, clashed: the unit alone failed. */
                k = store_pg_rollback_to(c);
                if (k < 0)
                        return k;
                u->result = log_debug_errno(EEXIST, "Unit of work's fresh key existed, rolled back: %m");
                return 0;
        }
        if (k < 0)
                return k;
        u->result = r;
        return 0;
}

/* store_run_batch() on PostgreSQL: one transaction, run again when it conflicted. */
static int store_run_batch_pg(Store *s, StoreUnit *batch) {
        for (unsigned attempt = 1;; attempt++) {
                PgConn *c;
                int r;

                if (attempt > 1) {
                        store_pg_backoff(attempt);
                        s->pg_reruns++;
                }
                r = store_pg_begin(s->pg, true, &c);
                if (r < 0)
                        return r;
                for (StoreUnit *u = batch; u && r >= 0; u = u->next)
                        r = store_run_unit_pg(s, c, u);
                if (r < 0)
                        store_pg_rollback(s->pg, c);
                else
                        r = store_pg_commit(s->pg, c);
                if (r >= 0)
                        return 0;
                if (r != -EAGAIN || attempt >= STORE_PG_ATTEMPTS)
                        return log_debug_errno(r, "Store batch failed, nothing written: %m");
        }
}

/* The whole batch on this thread (no event loop): begin, run, one durable commit; grows the map
 * and runs every unit again when it is full. < 0 when the whole batch failed. */
static int store_run_batch(Store *s, StoreUnit *batch) {
        if (s->pg)
                return store_run_batch_pg(s, batch);
        for (;;) {
                MDB_txn *parent = NULL;
                int r, k;

                r = store_txn_begin(s, 0, &parent);
                if (r < 0)
                        return r;
                if (store_run_units(s, parent, batch))
                        mdb_txn_abort(parent);
                else {
                        k = mdb_txn_commit(parent);
                        if (k == MDB_SUCCESS)
                                return 0;
                        if (k != MDB_MAP_FULL)
                                return log_debug_errno(store_write_errno(s, k), "Commit of %s failed, nothing "
                                                       "written: %m", s->dir);
                }
                r = store_grow(s);
                if (r < 0)
                        return r;
        }
}

/* Ends the batch in progress: its units, with their results, join the units whose done
 * functions are due (store_deliver() calls them, in submission order). r < 0: the whole batch
 * failed (units that had succeeded get r). */
static void store_batch_deliver(Store *s, int r) {
        StoreUnit *batch = s->batch;

        s->batch = NULL;
        s->run_next = NULL;
        s->state = BATCH_IDLE;
        s->batches++;
        s->batched_units += s->batch_n;
        s->batch_n = 0;
        if (!batch)
                return;
        for (StoreUnit *u = batch; u; u = u->next) {
                if (r < 0 && u->result >= 0)
                        u->result = r;
                if (!u->next) {
                        if (s->deliver_tail)
                                s->deliver_tail->next = batch;
                        else
                                s->deliver_head = batch;
                        s->deliver_tail = u;
                }
        }
}

static int on_slice(sd_event_source *source, void *userdata);

/* The next slice runs in a later loop iteration, after the connections ready by then. */
static int store_slice_schedule(Store *s) {
        if (s->slice_source)
                return 0;
        if (!s->event)
                return -ESRCH;
        return sd_event_add_defer(s->event, &s->slice_source, on_slice, s);
}

/* Calls the done functions that are due, in submission order, all of them: in the same loop
 * turn as the commit, so that no other request sees a batch's writes before what its done
 * functions do (replies, counters). A done function may submit more units (they make a later
 * batch) or flush the store (it delivers the rest, still in order). */
static void store_deliver(Store *s) {
        StoreUnit *u;

        while ((u = s->deliver_head)) {
                s->deliver_head = u->next;
                if (!s->deliver_head)
                        s->deliver_tail = NULL;
                u->done(u->result, u->userdata);
                free(u);
        }
}

/* Takes the next batch from the queue (at most STORE_BATCH_MAX units). */
static void store_batch_take(Store *s) {
        StoreUnit *last = s->queue_head;
        unsigned n = 1;

        assert(s->state == BATCH_IDLE && last);
        while (last->next && n < STORE_BATCH_MAX) {
                last = last->next;
                n++;
        }
        s->batch = s->queue_head;
        s->batch_n = n;
        s->queue_head = last->next;
        if (!s->queue_head)
                s->queue_tail = NULL;
        last->next = NULL;
        s->n_queued -= n;
}

/* --- the committer ---
 *
 * LMDB wants a write transaction begun and ended on one thread (its writer mutex), so the
 * committer thread does both; the loop runs the units in nested transactions in between, while
 * the committer waits. Each hand-over goes through the lock, which orders the two threads' use
 * of the transaction. While the committer syncs, the loop serves reads (snapshots are ordinary
 * LMDB readers) and queues the units of the next batch. */

static void *committer_main(void *userdata) {
        Store *s = userdata;

        (void) pthread_setname_np(pthread_self(), "idmd-commit");
        (void) pthread_mutex_lock(&s->lock);
        for (;;) {
                CommitterRequest req;
                int k = MDB_SUCCESS;

                while (s->request == REQUEST_NONE)
                        (void) pthread_cond_wait(&s->cond, &s->lock);
                req = s->request;
                s->request = REQUEST_NONE;
                if (req == REQUEST_QUIT)
                        break;
                (void) pthread_mutex_unlock(&s->lock);

                switch (req) {
                case REQUEST_BEGIN:
                        k = mdb_txn_begin(s->env, NULL, 0, &s->batch_txn);
                        break;
                case REQUEST_COMMIT:
                        k = mdb_txn_commit(s->batch_txn);       /* ends it either way */
                        s->batch_txn = NULL;
                        break;
                case REQUEST_ABORT:
                        mdb_txn_abort(s->batch_txn);
                        s->batch_txn = NULL;
                        break;
                default:
                        break;
                }

                (void) pthread_mutex_lock(&s->lock);
                s->answer = k;
                s->answered = true;
                (void) pthread_cond_broadcast(&s->cond);
                (void) eventfd_write(s->efd, 1);
        }
        (void) pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void committer_request(Store *s, CommitterRequest req) {
        (void) pthread_mutex_lock(&s->lock);
        assert(s->request == REQUEST_NONE && !s->answered);
        s->request = req;
        (void) pthread_cond_broadcast(&s->cond);
        (void) pthread_mutex_unlock(&s->lock);
}

/* The committer's answer if there is one (wait: block until there is). false: none yet. */
static bool committer_answer(Store *s, bool wait, int *ret) {
        bool got;

        (void) pthread_mutex_lock(&s->lock);
        while (wait && !s->answered)
                (void) pthread_cond_wait(&s->cond, &s->lock);
        got = s->answered;
        if (got) {
                *ret = s->answer;
                s->answered = false;
        }
        (void) pthread_mutex_unlock(&s->lock);
        return got;
}

/* Starts the next batch: the committer begins its transaction. */
static void store_batch_start(Store *s) {
        store_batch_take(s);
        s->state = BATCH_OPENING;
        committer_request(s, REQUEST_BEGIN);
}

/* Runs the units of the batch (BATCH_RUNNING): all of them, or (all false) a slice, leaving
 * the rest to the next loop iteration. When the last has run, the committer commits (or, when
 * the store was full, rolls back). No read snapshot is alive between slices (they never outlive
 * a loop iteration); one that is (a bug) fails the units with -EBUSY, as the store could not
 * grow under it. */
static void store_batch_run(Store *s, bool all) {
        uint64_t start = all ? 0 : monotonic_usec();

        assert(s->state == BATCH_RUNNING);
        while (s->run_next) {
                StoreUnit *u = s->run_next;

                if (s->n_readers > 0)
                        u->result = log_debug_errno(EBUSY, "Store batch with a read snapshot alive: %m");
                else if (store_run_unit(s, s->batch_txn, u)) {
                        s->run_next = NULL;
                        s->state = BATCH_ABORTING;
                        committer_request(s, REQUEST_ABORT);
                        return;
                }
                s->run_next = u->next;
                if (!all && s->run_next && monotonic_usec() - start >= STORE_SLICE_USEC &&
                    store_slice_schedule(s) >= 0)
                        return;
        }
        s->state = BATCH_COMMITTING;
        committer_request(s, REQUEST_COMMIT);
}

/* The loop's side of a batch, one step per committer answer k. */
static void store_batch_step(Store *s, int k) {
        int r;

        switch (s->state) {
        case BATCH_OPENING:
                if (k != MDB_SUCCESS) {
                        store_batch_deliver(s, store_write_errno(s, k));
                        return;
                }
                s->state = BATCH_RUNNING;
                s->run_next = s->batch;
                store_batch_run(s, false);
                return;

        case BATCH_COMMITTING:
                if (k == MDB_SUCCESS) {
                        store_batch_deliver(s, 0);
                        return;
                }
                if (k != MDB_MAP_FULL) {
                        store_batch_deliver(s, log_debug_errno(store_write_errno(s, k), "Commit of %s failed, "
                                                               "nothing written: %m", s->dir));
                        return;
                }
                __attribute__((fallthrough));
        case BATCH_ABORTING:
                /* No transaction of ours is open now: grow, then run every unit again. */
                r = s->n_readers > 0 ? -EBUSY : store_grow(s);
                if (r < 0) {
                        store_batch_deliver(s, r);
                        return;
                }
                for (StoreUnit *u = s->batch; u; u = u->next)
                        u->result = 0;
                s->state = BATCH_OPENING;
                committer_request(s, REQUEST_BEGIN);
                return;

        case BATCH_RUNNING:     /* no committer answer is due */
        case BATCH_IDLE:
                break;
        }
}

/* --- PostgreSQL with an event loop: each unit in a coroutine and a transaction of its own --- */

static void store_pg_pump(Store *s);

/* Calls the done functions of the finished units at the head of the running FIFO, in submission
 * order. A done function that waits (a store read) holds the rest back until it returns: the
 * loop below, in its coroutine, goes on then. */
static void store_pg_deliver(Store *s) {
        StoreUnit *u;

        if (s->delivering)
                return;
        s->delivering = true;
        while ((u = s->running_head) && u->finished) {
                s->running_head = u->next;
                if (!s->running_head)
                        s->running_tail = NULL;
                u->done(u->result, u->userdata);
                free(u);
        }
        s->delivering = false;
}

static void store_pg_unit_main(void *userdata) {
        StoreUnit *u = userdata;
        Store *s = u->store;

        u->result = store_run_pg(s, u->fn, u->userdata);
        u->finished = true;
        s->n_running--;
        s->batches++;
        s->batched_units++;
        store_pg_deliver(s);
        store_pg_pump(s);
}

/* Moves the first queued unit to the end of the running FIFO, and returns it. */
static StoreUnit *store_pg_take(Store *s) {
        StoreUnit *u = s->queue_head;

        assert(u);
        s->queue_head = u->next;
        if (!s->queue_head)
                s->queue_tail = NULL;
        s->n_queued--;
        *u = (StoreUnit) { .store = s, .fn = u->fn, .done = u->done, .userdata = u->userdata };
        if (s->running_tail)
                s->running_tail->next = u;
        else
                s->running_head = u;
        s->running_tail = u;
        return u;
}

/* Starts queued units in submission order while fewer than STORE_PG_UNITS_MAX run. */
static void store_pg_pump(Store *s) {
        while (s->queue_head && s->n_running < STORE_PG_UNITS_MAX) {
                StoreUnit *u = store_pg_take(s);
                int r;

                s->n_running++;
                r = coro_start(store_pg_unit_main, u);
                if (r < 0) {
                        s->n_running--;
                        u->finished = true;
                        u->result = log_debug_errno(r, "Could not start a unit of work: %m");
                }
        }
        store_pg_deliver(s);
}

/* store_flush() on PostgreSQL with an event loop, outside any coroutine (shutting down): the
 * units running (and every other coroutine) are run to their end, waiting with poll(), then
 * those still queued, one by one. */
static void store_pg_flush(Store *s) {
        if (coro_running()) {
                log_debug("Store flush from a coroutine: the units run on their own");
                return;
        }
        coro_drain();
        while (s->queue_head) {
                StoreUnit *u = store_pg_take(s);

                u->result = store_run_pg(s, u->fn, u->userdata);
                u->finished = true;
                s->batches++;
                s->batched_units++;
                store_pg_deliver(s);
                coro_drain();   /* what its done function started */
        }
}

void store_flush(Store *s) {
        if (!s)
                return;
        if (s->pg && s->event) {
                store_pg_flush(s);
                return;
        }

        if (s->batch_source)
                (void) sd_event_source_set_enabled(s->batch_source, SD_EVENT_OFF);
        if (s->batch_timer)
                (void) sd_event_source_set_enabled(s->batch_timer, SD_EVENT_OFF);

        for (;;) {
                int k;

                if (s->deliver_head) {
                        store_deliver(s);
                        continue;
                }
                if (!s->committer_started) {
                        if (!s->queue_head)
                                return;
                        store_batch_take(s);
                        if (s->writer || s->n_readers > 0)
                                store_batch_deliver(s, log_debug_errno(EBUSY, "Store batch with a read "
                                                                       "snapshot alive, refused: %m"));
                        else
                                store_batch_deliver(s, store_run_batch(s, s->batch));
                        continue;
                }
                if (s->state == BATCH_IDLE) {
                        if (!s->queue_head)
                                return;
                        store_batch_start(s);
                }
                if (s->state == BATCH_RUNNING) {
                        store_batch_run(s, true);
                        continue;
                }
                (void) committer_answer(s, true, &k);
                store_batch_step(s, k);
        }
}

static int on_committer(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        Store *s = userdata;
        eventfd_t value;
        int k;

        (void) eventfd_read(fd, &value);
        if (s->state == BATCH_IDLE || s->state == BATCH_RUNNING || !committer_answer(s, false, &k))
                return 0;       /* answered already (store_flush() waited for it) */
        store_batch_step(s, k);
        /* The next batch starts at once (its units came in while this one was syncing), before
         * the replies of this one go out. */
        if (s->state == BATCH_IDLE && s->queue_head)
                store_batch_start(s);
        store_deliver(s);
        return 0;
}

/* A slice of units to run (store_flush() may have run them meanwhile). */
static int on_slice(sd_event_source *source, void *userdata) {
        Store *s = userdata;

        s->slice_source = sd_event_source_disable_unref(s->slice_source);
        if (s->state == BATCH_RUNNING)
                store_batch_run(s, false);
        return 0;
}

/* The batch's time has come: start it, unless one is in progress (then this one starts when
 * that one ends). */
static void store_batch_due(Store *s) {
        if (s->batch_source)
                (void) sd_event_source_set_enabled(s->batch_source, SD_EVENT_OFF);
        if (s->batch_timer)
                (void) sd_event_source_set_enabled(s->batch_timer, SD_EVENT_OFF);
        if (s->pg) {
                store_pg_pump(s);
                return;
        }
        if (!s->committer_started) {
                store_flush(s);
                return;
        }
        if (s->state == BATCH_IDLE && s->queue_head)
                store_batch_start(s);
}

static int on_batch(sd_event_source *source, void *userdata) {
        store_batch_due(userdata);
        return 0;
}

static int on_batch_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        store_batch_due(userdata);
        return 0;
}

/* The first unit of a batch: run it once the loop has dispatched what is ready now (the
 * requests that came in meanwhile add their units), or after the delay at the latest. */
static int store_schedule(Store *s) {
        int r;

        if (s->state != BATCH_IDLE)
                return 0;       /* it starts when the batch in progress ends */
        if (sd_event_source_get_enabled(s->batch_source, NULL) > 0)
                return 0;
        r = sd_event_source_set_enabled(s->batch_source, SD_EVENT_ONESHOT);
        if (r < 0)
                return r;
        r = sd_event_source_set_time_relative(s->batch_timer, STORE_BATCH_DELAY_USEC);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(s->batch_timer, SD_EVENT_ONESHOT);
}

const char *store_connect_error(void) {
        return store_pg_connect_error();
}

int store_lead(Store *s, StoreJob job) {
        if (!s)
                return -EINVAL;
        if (!s->pg)
                return 1;
        return store_pg_lead(s->pg, job == STORE_JOB_OUTBOX ? STORE_PG_JOB_OUTBOX : STORE_PG_JOB_SWEEP);
}

bool store_waits(Store *s) {
        return s && s->pg;
}

int store_set_event(Store *s, sd_event *event) {
        int r;

        if (!s || !event)
                return -EINVAL;
        if (s->pg)
                coro_set_event(event);
        s->batch_source = sd_event_source_disable_unref(s->batch_source);
        s->batch_timer = sd_event_source_disable_unref(s->batch_timer);
        r = sd_event_add_defer(event, &s->batch_source, on_batch, s);
        if (r < 0)
                return r;
        /* Below the connections' priority: every request already received is dispatched (and
         * its unit queued) before the batch commits. */
        r = sd_event_source_set_priority(s->batch_source, SD_EVENT_PRIORITY_IDLE);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->batch_source, "store-batch");
        (void) sd_event_source_set_enabled(s->batch_source, SD_EVENT_OFF);
        r = sd_event_add_time_relative(event, &s->batch_timer, CLOCK_MONOTONIC, STORE_BATCH_DELAY_USEC, 0,
                                       on_batch_timer, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->batch_timer, "store-batch-timer");
        (void) sd_event_source_set_enabled(s->batch_timer, SD_EVENT_OFF);
        s->slice_source = sd_event_source_disable_unref(s->slice_source);
        sd_event_unref(s->event);
        s->event = sd_event_ref(event);

        /* PostgreSQL: batches run on the loop's thread (store_flush()); its commits wait for the
         * server, not for a local fdatasync. */
        if (!s->committer_started && !s->pg) {
                sigset_t all, saved;

                s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (s->efd < 0)
                        return -errno;
                r = sd_event_add_io(event, &s->efd_source, s->efd, EPOLLIN, on_committer, s);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(s->efd_source, "store-committer");
                /* Signals go to the loop's thread only. */
                if (sigfillset(&all) < 0)
                        return -errno;
                r = pthread_sigmask(SIG_BLOCK, &all, &saved);
                if (r != 0)
                        return -r;
                r = pthread_create(&s->committer, NULL, committer_main, s);
                (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
                if (r != 0)
                        return -r;
                s->committer_started = true;
        }
        return s->queue_head ? store_schedule(s) : 0;
}

int store_submit(Store *s, StoreWorkFn fn, StoreDoneFn done, void *userdata) {
        StoreUnit *u;
        int r;

        if (!s || !fn || !done)
                return -EINVAL;
        if (s->dead < 0)
                return s->dead;
        /* Not from inside a unit of work: it would wait for itself. */
        if (store_writer(s))
                return -EBUSY;

        u = malloc(sizeof(StoreUnit));
        if (!u)
                return -ENOMEM;
        *u = (StoreUnit) { .fn = fn, .done = done, .userdata = userdata };
        if (s->queue_tail)
                s->queue_tail->next = u;
        else
                s->queue_head = u;
        s->queue_tail = u;
        s->n_queued++;

        /* Without an event loop (tools, tests), the unit runs at once. */
        if (!s->batch_source) {
                store_flush(s);
                return 0;
        }
        /* Queued now: it runs and is reported whatever happens next, so no error may be
         * returned from here on (the caller would free what the unit uses). When the loop
         * cannot schedule it (it has finished: idmd is stopping), store_flush() or store_free()
         * runs it. */
        r = store_schedule(s);
        if (r < 0)
                log_debug_errno(r, "Could not schedule a store batch, it runs at the next flush: %m");
        return 0;
}

/* The stored value of key: on LMDB it points into the map (valid while the unit of work or
 * snapshot lasts), on PostgreSQL into *ret_buf, a new buffer for the caller to free. */
static int txn_get_val(StoreTxn *t, StoreTable table, const char *key, MDB_val *ret, char **ret_buf) {
        MDB_val k;
        int r;

        r = txn_table_check(t, table);
        if (r < 0)
                return r;
        r = key_to_val(key, &k);
        if (r < 0)
                return r;

        if (t->pg) {
                size_t n;

                r = store_pg_get(t->pg, table, key, k.mv_size, ret_buf, &n);
                if (r < 0)
                        return pg_fail(t, r);
                *ret = (MDB_val) { .mv_size = n, .mv_data = *ret_buf };
                return 0;
        }
        r = mdb_get(t->txn, t->store->dbi[table], &k, ret);
        if (r != MDB_SUCCESS)
                return txn_error(t, r);
        return 0;
}

int store_get(StoreTxn *t, StoreTable table, const char *key, json_t **ret) {
        _cleanup_free_ char *buf = NULL;
        MDB_val v;
        int r;

        if (!ret)
                return -EINVAL;

        r = txn_get_val(t, table, key, &v, &buf);
        if (r < 0)
                return r;

        /* txn_get_val() checked the key's length and that the snapshot is still the store's. */
        r = record_decode_cached(t->store, table, key, strlen(key), &v, ret);
        if (r < 0)
                return log_debug_errno(r, "Record '%s' in table %s: %m", key, table_names[table]);
        return 0;
}

int store_prefetch(StoreTxn *t, StoreTable table, const char *key) {
        MDB_val k;
        int r;

        r = txn_table_check(t, table);
        if (r < 0)
                return r;
        if (!t->pg || key_to_val(key, &k) < 0)
                return 0;       /* LMDB reads from memory; a bad key is for store_get() to refuse */
        r = store_pg_prefetch(t->pg, table, key, k.mv_size);
        return r < 0 ? pg_fail(t, r) : 0;
}

int store_count(StoreTxn *t, StoreTable table, uint64_t *ret) {
        MDB_stat st;
        int r;

        r = txn_table_check(t, table);
        if (r < 0)
                return r;
        if (!ret)
                return -EINVAL;
        if (t->pg) {
                r = store_pg_count(t->pg, table, ret);
                return r < 0 ? pg_fail(t, r) : 0;
        }
        r = mdb_stat(t->txn, t->store->dbi[table], &st);
        if (r != MDB_SUCCESS)
                return txn_error(t, r);
        *ret = st.ms_entries;
        return 0;
}

int store_exists(StoreTxn *t, StoreTable table, const char *key) {
        _cleanup_free_ char *buf = NULL;
        MDB_val v;
        int r;

        r = txn_get_val(t, table, key, &v, &buf);
        if (r == -ENOENT || r == -E2BIG || r == -EINVAL)
                return 0;       /* no such record, or no key that could be one */
        return r < 0 ? r : 1;
}

int store_put(StoreTxn *t, StoreTable table, const char *key, json_t *value, StorePutFlags flags) {
        _cleanup_(freep) char *text = NULL;
        MDB_val k, v;
        int r;

        r = txn_check(t);
        if (r < 0)
                return r;
        if (!t->write)
                return -EROFS;
        r = table_check(table);
        if (r < 0)
                return r;
        r = key_to_val(key, &k);
        if (r < 0)
                return r;
        if (!json_is_object(value) || (flags & ~(STORE_PUT_NO_OVERWRITE | STORE_PUT_FRESH)) != 0 ||
            (flags & STORE_PUT_NO_OVERWRITE && flags & STORE_PUT_FRESH))
                return -EINVAL;

        /* Sorted keys make equal records byte-identical, which keeps backups and diffs stable. */
        text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return -ENOMEM;  /* jansson only fails on allocation for a valid object */

        v = (MDB_val) { .mv_size = strlen(text), .mv_data = text };
        if (t->pg) {
                r = store_pg_put(t->pg, table, key, k.mv_size, text, v.mv_size,
                                 flags & STORE_PUT_FRESH ? STORE_PG_PUT_FRESH :
                                 flags & STORE_PUT_NO_OVERWRITE ? STORE_PG_PUT_NEW : STORE_PG_PUT_OVERWRITE);
                return r < 0 ? pg_fail(t, r) : 0;
        }
        r = mdb_put(t->txn, t->store->dbi[table], &k, &v,
                    (flags & (STORE_PUT_NO_OVERWRITE | STORE_PUT_FRESH)) ? MDB_NOOVERWRITE : 0);
        if (r == MDB_KEYEXIST && flags & STORE_PUT_FRESH) {
                /* Not an answer: the whole unit fails, as on PostgreSQL. */
                if (t->failed == 0)
                        t->failed = -EEXIST;
                return -EEXIST;
        }
        if (r != MDB_SUCCESS)
                return txn_error(t, r);
        return 0;
}

int store_del(StoreTxn *t, StoreTable table, const char *key) {
        MDB_val k;
        int r;

        r = txn_check(t);
        if (r < 0)
                return r;
        if (!t->write)
                return -EROFS;
        r = table_check(table);
        if (r < 0)
                return r;
        r = key_to_val(key, &k);
        if (r < 0)
                return r;

        if (t->pg) {
                r = store_pg_del(t->pg, table, key, k.mv_size);
                return r < 0 ? pg_fail(t, r) : 0;
        }
        r = mdb_del(t->txn, t->store->dbi[table], &k, NULL);
        if (r != MDB_SUCCESS)
                return txn_error(t, r);
        return 0;
}

static void mdb_cursor_closep(MDB_cursor **c) {
        if (*c)
                mdb_cursor_close(*c);
}

/* A filter of store_walk(): records whose top-level string field equals value. needle is how
 * that member reads in a stored record (records are compact JSON): a record without it is
 * skipped without being decoded. */
typedef struct StoreWhere {
        const char *field, *value;
        const char *needle;
        size_t needle_len;
} StoreWhere;

/* One walk of store_walk(), whichever backend. */
typedef struct StoreWalk {
        StoreTxn *t;
        StoreTable table;
        const char *prefix, *after;
        size_t prefix_len;
        const StoreWhere *where;
        unsigned max, visited;
        char **ret_last;
        StoreForeachFn fn;
        void *userdata;
        char last[STORE_KEY_MAX + 1];
        bool done;              /* the walk ends with result */
        int result;
} StoreWalk;

/* Visits the record k, v of a walk, in key order. v is decoded (copied) before the walk's fn runs:
 * fn may write, which ends LMDB's v. < 0: the walk fails; otherwise w->done says whether it ends. */
static int walk_visit(StoreWalk *w, const MDB_val *k, const MDB_val *v) {
        _cleanup_(json_decrefp) json_t *value = NULL;
        char key[STORE_KEY_MAX + 1];
        int r;

        /* Keys with the prefix are contiguous: the first one without it ends the walk. */
        if (k->mv_size < w->prefix_len || memcmp(k->mv_data, w->prefix, w->prefix_len) != 0) {
                w->done = true;
                return 0;
        }

        if (k->mv_size == 0 || k->mv_size > STORE_KEY_MAX || memchr(k->mv_data, 0, k->mv_size))
                return log_debug_errno(EPROTO, "Malformed key in table %s", table_names[w->table]);
        memcpy(key, k->mv_data, k->mv_size);
        key[k->mv_size] = 0;

        if (w->after && strcmp(key, w->after) <= 0)
                return 0;
        if (w->max > 0 && w->visited++ >= w->max) {
                /* The bound: the previous key was the last one visited. */
                if (w->ret_last) {
                        *w->ret_last = strdup(w->last);
                        if (!*w->ret_last)
                                return -ENOMEM;
                }
                w->done = true;
                return 0;
        }
        memcpy(w->last, key, k->mv_size + 1);
        if (w->where && !memmem(v->mv_data, v->mv_size, w->where->needle, w->where->needle_len))
                return 0;

        r = record_decode(v, &value);
        if (r < 0)
                return log_debug_errno(r, "Record '%s' in table %s: %m", key, table_names[w->table]);
        /* The needle may have been inside a nested object or a longer string. */
        if (w->where && !streq_ptr(json_string_value(json_object_get(value, w->where->field)), w->where->value))
                return 0;

        r = w->fn(key, value, w->userdata);
        if (r != 0) {
                w->done = true;
                w->result = r;
                return r < 0 ? r : 0;
        }

        /* fn may have written in this unit of work; if that broke it, stop here. */
        return txn_check(w->t);
}

/* The walk on LMDB: one cursor. */
static int store_walk_lmdb(StoreWalk *w) {
        _cleanup_(mdb_cursor_closep) MDB_cursor *c = NULL;
        MDB_cursor_op op;
        MDB_val k, v;
        int r;

        r = mdb_cursor_open(w->t->txn, w->t->store->dbi[w->table], &c);
        if (r != MDB_SUCCESS)
                return txn_error(w->t, r);

        /* Position at the first key >= max(prefix, after). A longer 'after' than any key can be
         * (a client's pagination cursor) is cut for the seek; the keys up to 'after' itself are
         * skipped by walk_visit(). */
        if (w->after) {
                size_t after_len = strlen(w->after);

                k = (MDB_val) {
                        .mv_size = after_len < STORE_KEY_MAX ? after_len : STORE_KEY_MAX,
                        .mv_data = (void *) w->after,
                };
                op = MDB_SET_RANGE;
        } else if (w->prefix_len > 0) {
                k = (MDB_val) { .mv_size = w->prefix_len, .mv_data = (void *) w->prefix };
                op = MDB_SET_RANGE;
        } else {
                k = (MDB_val) { .mv_size = 0 };
                op = MDB_FIRST;
        }

        for (;; op = MDB_NEXT) {
                r = mdb_cursor_get(c, &k, &v, op);
                if (r == MDB_NOTFOUND)
                        return 0;
                if (r != MDB_SUCCESS)
                        return txn_error(w->t, r);
                r = walk_visit(w, &k, &v);
                if (r < 0 || w->done)
                        return r < 0 ? r : w->result;
        }
}

/* The walk on PostgreSQL: pages of STORE_PG_PAGE_ROWS records, each from the last key of the one
 * before (fn may write between them, on the same connection). */
static int store_walk_pg(StoreWalk *w) {
        char from[STORE_KEY_MAX + 1], below[STORE_KEY_MAX + 1];
        size_t from_len = 0, below_len = w->prefix_len;
        bool inclusive = true, have_from = false;
        int r;

        /* The first key past every key that starts with the prefix: the prefix with its last
         * byte below 0xff raised by one and what follows it cut off. A prefix of only 0xff bytes
         * has no such key: its pages are unbounded, and walk_visit() ends the walk at the first
         * key past the prefix, as it does on LMDB. */
        memcpy(below, w->prefix, w->prefix_len);
        while (below_len > 0 && (uint8_t) below[below_len - 1] == 0xff)
                below_len--;
        if (below_len > 0)
                below[below_len - 1] = (char) ((uint8_t) below[below_len - 1] + 1);

        if (w->after) {
                /* 'after' may be longer than any key; the seek is cut to the longest one as on
                 * LMDB, and walk_visit() skips the keys up to 'after' itself. */
                from_len = strnlen(w->after, STORE_KEY_MAX);
                memcpy(from, w->after, from_len);
                have_from = true;
        } else if (w->prefix_len > 0) {
                from_len = w->prefix_len;
                memcpy(from, w->prefix, from_len);
                have_from = true;
        }

        for (;;) {
                _cleanup_(store_pg_rows_freep) PgRows *rows = NULL;
                size_t n;

                r = store_pg_scan(w->t->pg, w->table, have_from ? from : NULL, from_len, inclusive,
                                  have_from && below_len > 0 ? below : NULL, below_len, &rows);
                if (r < 0)
                        return pg_fail(w->t, r);
                n = store_pg_rows_count(rows);
                for (size_t i = 0; i < n; i++) {
                        MDB_val k, v;

                        k.mv_data = (void *) store_pg_rows_key(rows, i, &k.mv_size);
                        v.mv_data = (void *) store_pg_rows_value(rows, i, &v.mv_size);
                        if (i == n - 1) {
                                if (k.mv_size > STORE_KEY_MAX)
                                        return log_debug_errno(EPROTO, "Malformed key in table %s",
                                                               table_names[w->table]);
                                memcpy(from, k.mv_data, k.mv_size);
                                from_len = k.mv_size;
                        }
                        r = walk_visit(w, &k, &v);
                        if (r < 0 || w->done)
                                return r < 0 ? r : w->result;
                }
                if (n < STORE_PG_PAGE_ROWS)
                        return 0;
                have_from = true;
                inclusive = false;
        }
}

/* max: visit at most this many records (0: no bound); *ret_last (if given): the last key visited
 * when the bound stopped the walk, NULL when the walk reached its end. */
static int store_walk(StoreTxn *t, StoreTable table, const char *prefix, const char *after,
                      const StoreWhere *where, unsigned max, char **ret_last,
                      StoreForeachFn fn, void *userdata) {
        StoreWalk w = {
                .t = t, .table = table, .where = where, .max = max, .ret_last = ret_last,
                .fn = fn, .userdata = userdata,
        };
        int r;

        if (ret_last)
                *ret_last = NULL;
        r = txn_table_check(t, table);
        if (r < 0)
                return r;
        if (!fn)
                return -EINVAL;

        w.prefix = strempty(prefix);
        w.prefix_len = strlen(w.prefix);
        if (w.prefix_len > STORE_KEY_MAX)
                return 0;  /* no key is that long */
        if (after && *after && strcmp(after, w.prefix) >= 0)
                w.after = after;        /* else the prefix starts later anyway */

        return t->pg ? store_walk_pg(&w) : store_walk_lmdb(&w);
}

int store_foreach(StoreTxn *t, StoreTable table, const char *prefix, const char *after,
                  StoreForeachFn fn, void *userdata) {
        return store_walk(t, table, prefix, after, NULL, 0, NULL, fn, userdata);
}

int store_foreach_where(StoreTxn *t, StoreTable table, const char *field, const char *value,
                        StoreForeachFn fn, void *userdata) {
        return store_foreach_where_from(t, table, field, value, NULL, 0, NULL, fn, userdata);
}

int store_foreach_where_from(StoreTxn *t, StoreTable table, const char *field, const char *value,
                             const char *after, unsigned max, char **ret_last,
                             StoreForeachFn fn, void *userdata) {
        _cleanup_free_ char *f = NULL, *v = NULL, *needle = NULL;
        _cleanup_(json_decrefp) json_t *jf = NULL, *jv = NULL;

        if (ret_last)
                *ret_last = NULL;
        if (!field || !value)
                return -EINVAL;
        /* Encoded as store_put() encodes: "<field>":"<value>", JSON escapes and all. */
        jf = json_string(field);
        jv = json_string(value);
        if (!jf || !jv)
                return -EINVAL;         /* not UTF-8 */
        f = json_dumps(jf, JSON_ENCODE_ANY | JSON_COMPACT);
        v = json_dumps(jv, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!f || !v || asprintf(&needle, "%s:%s", f, v) < 0)
                return -ENOMEM;
        return store_walk(t, table, NULL, after,
                          &(StoreWhere) { .field = field, .value = value, .needle = needle, .needle_len = strlen(needle) },
                          max, ret_last, fn, userdata);
}

static int store_stamp(StoreTxn *t, unsigned version) {
        _cleanup_(json_decrefp) json_t *stamp = NULL;

        stamp = json_pack("{s:I}", "version", (json_int_t) version);
        if (!stamp)
                return -ENOMEM;
        return store_put(t, STORE_META, STORE_SCHEMA_KEY, stamp, STORE_PUT_DEFAULT);
}

static int store_check_empty(StoreTxn *t) {
        if (t->pg) {
                StoreTable table;
                int r = store_pg_any(t->pg, &table);

                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return pg_fail(t, r);
                return log_debug_errno(EPROTO, "Store has records in table %s but no schema version",
                                       store_table_to_string(table) ?: "?");
        }
        for (StoreTable i = 0; i < _STORE_TABLE_MAX; i++) {
                MDB_stat st;
                int k;

                k = mdb_stat(t->txn, t->store->dbi[i], &st);
                if (k != MDB_SUCCESS)
                        return txn_error(t, k);
                if (st.ms_entries > 0)
                        return log_debug_errno(EPROTO, "Store has records in table %s but no schema "
                                               "version", table_names[i]);
        }
        return 0;
}

/* The unit of work of store_open(): opens (creating) the tables, then checks, migrates or
 * stamps the schema version. userdata: unsigned *, set to the version found (0: a new store). */
static int store_open_work(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *stamp = NULL;
        unsigned *found = userdata;
        Store *s = t->store;
        json_int_t stored;
        json_t *v;
        int r;

        for (StoreTable i = 0; !t->pg && i < _STORE_TABLE_MAX; i++) {
                int k;

                k = mdb_dbi_open(t->txn, table_names[i], MDB_CREATE, &s->dbi[i]);
                if (k != MDB_SUCCESS)
                        return log_debug_errno(txn_error(t, k), "Could not open table %s: %m",
                                               table_names[i]);
        }

        r = store_get(t, STORE_META, STORE_SCHEMA_KEY, &stamp);
        if (r == -ENOENT) {
                /* A new store (tables and stamp are created in one unit of work, so records
                 * without a stamp mean the store is not ours). */
                r = store_check_empty(t);
                if (r < 0)
                        return r;
                log_debug("Stamping new store '%s' with schema version %u", s->dir, STORE_SCHEMA_VERSION);
                return store_stamp(t, STORE_SCHEMA_VERSION);
        }
        if (r < 0)
                return r;

        v = json_object_get(stamp, "version");
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > UINT_MAX)
                return log_debug_errno(EPROTO, "Store '%s' has an invalid schema version record", s->dir);
        stored = json_integer_value(v);
        *found = (unsigned) stored;

        if (stored > STORE_SCHEMA_VERSION) {
                return log_debug_errno(EPROTONOSUPPORT, "Store '%s' has schema version %u, newer than "
                                       "the supported %u", s->dir, (unsigned) stored, STORE_SCHEMA_VERSION);
        }
        if (stored == STORE_SCHEMA_VERSION)
                return 0;

        for (unsigned from = (unsigned) stored; from < STORE_SCHEMA_VERSION; from++) {
                if (!migrations[from])
                        return log_debug_errno(EPROTONOSUPPORT, "No migration of store '%s' from schema "
                                               "version %u", s->dir, from);
                r = migrations[from](t);
                if (r < 0)
                        return log_debug_errno(r, "Migration of store '%s' from schema version %u "
                                               "failed: %m", s->dir, from);
                log_debug("Migrated store '%s' from schema version %u to %u", s->dir, from, from + 1);
        }
        return store_stamp(t, STORE_SCHEMA_VERSION);
}

/* Makes a newly created directory entry durable. */
static int fsync_directory(const char *dir) {
        _cleanup_(closep) int fd = -EBADF;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

/* The last step of opening either backend: the schema stamp checked, migrated or made. Sets
 * *ret_version (if given) to the version found, also when it is refused as too new. */
static int store_open_stamp(Store *s, unsigned *ret_version) {
        unsigned found = 0;
        int r;

        r = store_run(s, store_open_work, &found);
        if (ret_version && (r >= 0 || (r == -EPROTONOSUPPORT && found > 0)))
                *ret_version = found;
        return r;
}

int store_open(const char *dir, const StoreOptions *options, Store **ret, unsigned *ret_version) {
        _cleanup_(store_freep) Store *s = NULL;
        uint64_t initial, max, page_size;
        long ps;
        int r, k, dead = 0;

        if (!dir || !*dir || !ret)
                return -EINVAL;

        ps = sysconf(_SC_PAGESIZE);
        page_size = ps > 0 ? (uint64_t) ps : 4096;

        /* The maximum is rounded down and the initial size up to whole pages. */
        max = options && options->map_size_max > 0 ? options->map_size_max : STORE_MAP_SIZE_MAX_DEFAULT;
        if (max < STORE_MAP_SIZE_MIN || max > SIZE_MAX)
                return -EINVAL;
        max = max / page_size * page_size;
        if (options && options->map_size_initial > 0) {
                if (options->map_size_initial < STORE_MAP_SIZE_MIN || options->map_size_initial > max)
                        return -EINVAL;
                initial = round_up(options->map_size_initial, page_size);
                if (initial > max)
                        return -EINVAL;
        } else
                initial = STORE_MAP_SIZE_DEFAULT < max ? STORE_MAP_SIZE_DEFAULT : max;

        s = calloc(1, sizeof(Store));
        if (!s)
                return -ENOMEM;
        s->efd = -EBADF;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
                free(TAKE_PTR(s));
                return -ENOMEM;
        }
        if (pthread_cond_init(&s->cond, NULL) != 0) {
                (void) pthread_mutex_destroy(&s->lock);
                free(TAKE_PTR(s));
                return -ENOMEM;
        }
        s->lock_initialized = true;
        s->page_size = page_size;
        s->map_size_max = max;
        s->dir = strdup(dir);
        if (!s->dir || asprintf(&s->data_path, "%s/data.mdb", dir) < 0)
                return -ENOMEM;

        k = mdb_env_create(&s->env);
        if (k != MDB_SUCCESS)
                return store_errno(k);
        k = mdb_env_set_maxdbs(s->env, _STORE_TABLE_MAX);
        if (k != MDB_SUCCESS)
                return store_errno(k);
        k = mdb_env_set_mapsize(s->env, (size_t) initial);
        if (k != MDB_SUCCESS)
                return store_errno(k);

        /* Default flags: every commit is synced (no MDB_NOSYNC/NOMETASYNC), pages are zeroed
         * (no MDB_NOMEMINIT), the map is read-only (no MDB_WRITEMAP). MDB_NOTLS ties reader
         * slots to snapshots instead of the thread, so one thread may hold several snapshots
         * (store_read(), store_stats() and store_backup() at once). */
        k = mdb_env_open(s->env, dir, MDB_NOTLS, 0600);
        if (k != MDB_SUCCESS) {
                r = store_errno(k);
                if (r == -EPROTONOSUPPORT && ret_version)
                        *ret_version = 0;  /* the file format, not the schema */
                return log_debug_errno(r, "Could not open store '%s': %m", dir);
        }

        k = mdb_reader_check(s->env, &dead);
        if (k != MDB_SUCCESS)
                return log_debug_errno(store_errno(k), "Could not check reader slots of '%s': %m", dir);
        log_debug("Cleared %d stale reader slot(s) of store '%s'", dead, dir);

        /* LMDB widened the map to hold the existing data if that is bigger than 'initial'. Start
         * where growing from 'initial' would have got to, to spare the first writes a regrowth. */
        store_update_map_size(s);
        if (s->map_size > initial) {
                uint64_t size = initial;

                while (size < s->map_size && size < max)
                        size = size > max / 2 ? max : size * 2;
                if (size > s->map_size) {
                        r = store_set_map_size(s, size);
                        if (r < 0)
                                return r;
                }
        }

        r = store_open_stamp(s, ret_version);
        if (r < 0)
                return r;

        /* data.mdb may have just been created: make its directory entry durable as well. */
        r = fsync_directory(dir);
        if (r < 0)
                return log_debug_errno(r, "Could not sync directory '%s': %m", dir);

        log_debug("Opened store '%s', map size %" PRIu64 " bytes (maximum %" PRIu64 ")",
                  dir, s->map_size, s->map_size_max);
        *ret = TAKE_PTR(s);
        return 0;
}

int store_open_postgresql(const char *conninfo, uint64_t timeout_usec, Store **ret, unsigned *ret_version) {
        _cleanup_(store_freep) Store *s = NULL;
        int r;

        if (!conninfo || !ret)
                return -EINVAL;

        s = calloc(1, sizeof(Store));
        if (!s)
                return -ENOMEM;
        s->efd = -EBADF;
        /* What messages call the store ("Store 'postgresql' has ..."): never the connection
         * string, which may hold a password. */
        s->dir = strdup("postgresql");
        if (!s->dir)
                return -ENOMEM;

        r = store_pg_open(conninfo, timeout_usec, &s->pg, NULL);
        if (r < 0)
                return r;

        r = store_open_stamp(s, ret_version);
        if (r < 0)
                return r;

        log_debug("Opened the PostgreSQL store");
        *ret = TAKE_PTR(s);
        return 0;
}

/* store_stats() on PostgreSQL: the counts from one snapshot, the database's size. */
static int store_stats_pg(Store *s, StoreStats *stats) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        uint64_t size;
        int r;

        r = store_read(s, &t);
        if (r < 0)
                return r;
        r = store_pg_count_all(t->pg, stats->entries, &stats->entries_estimated);
        if (r < 0)
                return r;
        r = store_pg_size(t->pg, &size);
        if (r < 0)
                return r;
        stats->used_bytes = stats->file_bytes = size;
        return 0;
}

static uint64_t stat_pages(const MDB_stat *st) {
        return (uint64_t) st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

int store_stats(Store *s, StoreStats *ret) {
        StoreStats stats = {};
        MDB_envinfo info;
        MDB_txn *txn;
        MDB_stat st;
        MDB_dbi main_dbi;
        uint64_t pages = 2;     /* LMDB's two meta pages */
        struct stat sb;
        int r, k;

        if (!s || !ret)
                return -EINVAL;
        stats.batches = s->batches;
        stats.batched_units = s->batched_units;
        for (size_t i = 0; s->record_cache && i < RECORD_CACHE_SLOTS; i++)
                stats.record_cache_entries += !!s->record_cache[i].value;
        stats.record_cache_charged = s->record_cache_charged;
        stats.record_cache_hits = s->record_cache_hits;
        stats.record_cache_misses = s->record_cache_misses;
        stats.conflict_reruns = s->pg_reruns;
        stats.queued = s->n_queued;
        if (s->pg) {
                stats.postgresql = true;
                r = store_stats_pg(s, &stats);
                if (r == -ENOTCONN || r == -ETIMEDOUT) {
                        /* What there is to say: it cannot be reached. */
                        memset(stats.entries, 0, sizeof(stats.entries));
                        stats.used_bytes = stats.file_bytes = 0;
                        stats.unreachable = true;
                } else if (r < 0)
                        return log_debug_errno(r, "Could not read statistics of the PostgreSQL store: %m");
                *ret = stats;
                return 0;
        }

        r = store_txn_begin(s, MDB_RDONLY, &txn);
        if (r < 0)
                return r;

        k = mdb_env_info(s->env, &info);
        if (k == MDB_SUCCESS)
                /* dbi 0 is LMDB's free-page database (FREE_DBI, as the mdb_stat tool uses it). */
                k = mdb_stat(txn, 0, &st);
        if (k == MDB_SUCCESS) {
                pages += stat_pages(&st);
                k = mdb_dbi_open(txn, NULL, 0, &main_dbi);
        }
        if (k == MDB_SUCCESS)
                k = mdb_stat(txn, main_dbi, &st);
        if (k == MDB_SUCCESS)
                pages += stat_pages(&st);
        for (StoreTable i = 0; k == MDB_SUCCESS && i < _STORE_TABLE_MAX; i++) {
                k = mdb_stat(txn, s->dbi[i], &st);
                if (k == MDB_SUCCESS) {
                        stats.entries[i] = st.ms_entries;
                        pages += stat_pages(&st);
                }
        }
        mdb_txn_abort(txn);
        if (k != MDB_SUCCESS)
                return log_debug_errno(store_errno(k), "Could not read statistics of '%s': %m", s->dir);

        if (stat(s->data_path, &sb) < 0)
                return log_debug_errno(errno, "Could not stat '%s': %m", s->data_path);

        stats.map_size = info.me_mapsize;
        stats.used_bytes = pages * st.ms_psize;
        stats.file_bytes = (uint64_t) sb.st_size;
        stats.grow_count = s->grow_count;

        *ret = stats;
        return 0;
}

static int backup_to_fd(Store *s, int fd) {
        int k;

        /* Compaction copies only live pages, from a read snapshot: writers are not blocked. */
        k = mdb_env_copyfd2(s->env, fd, MDB_CP_COMPACT);
        if (k != MDB_SUCCESS)
                return store_errno(k);
        if (fsync(fd) < 0)
                return -errno;
        return 0;
}

int store_backup(Store *s, const char *path) {
        _cleanup_(freep) char *parent = NULL;
        _cleanup_(closep) int fd = -EBADF;
        int r;

        if (!s || !path || !*path)
                return -EINVAL;
        if (s->dead < 0)
                return s->dead;
        if (store_writer(s))
                return -EBUSY;
        if (s->pg)
                return -EOPNOTSUPP;     /* pg_dump's job (docs/operations.md) */

        parent = strdup(path);
        if (!parent)
                return -ENOMEM;

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return log_debug_errno(errno, "Could not create backup file '%s': %m", path);

        r = backup_to_fd(s, fd);
        if (r >= 0) {
                if (close(TAKE_FD(fd)) < 0)
                        r = -errno;
        }
        if (r >= 0)
                r = fsync_directory(dirname(parent));
        if (r < 0) {
                (void) unlink(path);
                return log_debug_errno(r, "Could not write backup '%s': %m", path);
        }

        log_debug("Wrote backup of '%s' to '%s'", s->dir, path);
        return 0;
}
