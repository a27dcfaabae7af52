/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL backend's connections, for store.c only (callers use store.h).
 *
 * store.c keeps what every backend shares (the unit-of-work rules, batches, keys, JSON records,
 * the schema stamp and its migrations); this file speaks to PostgreSQL: a bounded pool of
 * connections, the SQL schema and its versioned migrations, and one prepared statement per
 * record operation. A unit of work or a read snapshot holds one connection, inside one
 * transaction, from its begin to its end. Records are rows of one table, idm_records (tbl, key,
 * value), keys and values as bytea so that the database's encoding never touches them; keys
 * order bytewise, as LMDB's do.
 *
 * libpq runs non-blocking: a statement waits for its answer with coro_wait_fd(), so in a
 * coroutine the event loop goes on meanwhile, and outside one the wait is a poll(). Each wait is
 * bounded by STORE_PG_TIMEOUT_USEC; a connection that timed out is dropped (its state is
 * unknown) and the next transaction opens a new one.
 *
 * Errors, besides store.h's:
 *   -EAGAIN        a serialization failure or deadlock: the transaction is dead, run it again
 *   -ENOTCONN      the database cannot be reached, or the connection broke or was dropped
 *   -ETIMEDOUT     no answer within STORE_PG_TIMEOUT_USEC (the connection is dropped)
 *   -EPROTONOSUPPORT  the database's schema is newer than this build knows
 *   -EPERM         the role may not do what the schema needs (its SQL state class 42501)
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "idm/cleanup.h"
#include "store.h"

/* The SQL schema this build writes and reads (idm_schema.version). */
#define STORE_PG_SCHEMA_VERSION 1
/* Connections per store: snapshots and units of work alive at once, at most. */
#define STORE_PG_CONNECTIONS_MAX 16u
/* How long a statement (or a connect) may take before the connection is dropped and the caller
 * gets -ETIMEDOUT. */
#define STORE_PG_TIMEOUT_USEC (UINT64_C(5) * 1000 * 1000)
/* Rows fetched per statement by a walk (store_foreach()). */
#define STORE_PG_PAGE_ROWS 256u
/* Reads a transaction may have sent ahead (store_prefetch()); more are not sent. */
#define STORE_PG_PREFETCH_MAX 4u

/* The longest [store] connection string. */
#define STORE_CONNECTION_MAX 1024u

typedef struct StorePg StorePg;
typedef struct PgConn PgConn;
typedef struct PgRows PgRows;

/* Connects to the database conninfo names (a libpq connection string; a password comes from
 * PGPASSFILE or ~/.pgpass, never from here), creates or migrates the SQL schema under an
 * advisory lock (instances starting at once migrate once) and refuses a newer one. On success
 * *ret_sql_version is the SQL schema version found (0: none, created now). */
int store_pg_open(const char *conninfo, uint64_t timeout_usec, StorePg **ret, unsigned *ret_sql_version);
StorePg *store_pg_free(StorePg *p);

/* For idmd --check-config: connects without changing anything and writes to f, as "# " comment
 * lines, what it found (the server, the role, idmd's tables and their version). 0 when idmd could
 * start on it; -ENOTCONN, -ETIMEDOUT, -EPERM (may not create the tables), -EPROTONOSUPPORT
 * (tables of a newer idmd), -EPROTO (not idmd's). */
int store_pg_check(const char *conninfo, uint64_t timeout_usec, FILE *f);

/* Whether libpq reads conninfo, and it holds no password (-EPERM then; -EINVAL if unreadable). */
int store_pg_check_connection(const char *conninfo);

/* The jobs one instance runs for all the instances that share the database. */
typedef enum StorePgJob {
        STORE_PG_JOB_SWEEP,
        STORE_PG_JOB_OUTBOX,
        _STORE_PG_JOB_MAX,
} StorePgJob;

/* Whether this instance runs job: 1 when it holds (or now takes) the job's session advisory lock,
 * on a connection of its own; it keeps it until that connection ends (idmd stops or dies, or the
 * database restarts), and then another instance takes it at its next try. 0 when another
 * instance holds it. -ENOTCONN, -ETIMEDOUT. */
int store_pg_lead(StorePg *p, StorePgJob job);

/* The server's (or libpq's) words for this thread's last failed connect, NULL after a good one:
 * "FATAL:  database \"x\" does not exist", "connection to server ... failed: ...". */
const char *store_pg_connect_error(void);

/* Begins a transaction on an idle connection (opening one if none is idle, up to
 * STORE_PG_CONNECTIONS_MAX; -EAGAIN beyond): serializable for writes, repeatable read, read only
 * for snapshots. */
int store_pg_begin(StorePg *p, bool write, PgConn **ret);
/* Ends the transaction and gives the connection back. commit: 0, -EAGAIN (serialization
 * failure: nothing written), -EEXIST (a fresh put's key existed: nothing written), or another
 * error (nothing written, or for -ENOTCONN: unknown). */
int store_pg_commit(StorePg *p, PgConn *c);
void store_pg_rollback(StorePg *p, PgConn *c);

/* Nested units of a batch: a savepoint, and its release or rollback. */
int store_pg_savepoint(PgConn *c);
int store_pg_release(PgConn *c);
int store_pg_rollback_to(PgConn *c);

/* Record operations; key is key_len bytes (checked by store.c), values are compact JSON. An
 * overwriting put (STORE_PG_PUT_OVERWRITE) or a fresh one (STORE_PG_PUT_FRESH) is sent with the
 * next operation on c, or its commit, and returns 0 at once: if it fails, that next operation
 * returns its error (and the transaction is dead, as after any failure); a fresh put whose key
 * exists fails so, with -ENOTUNIQ. */
int store_pg_get(PgConn *c, StoreTable table, const char *key, size_t key_len, char **ret, size_t *ret_len);
/* Sends the get of key ahead, with the next statement that needs an answer; store_pg_get() of
 * the same key takes that answer then (a write of the key in between makes it ask again).
 * 0 (also when STORE_PG_PREFETCH_MAX are out already: nothing sent), or what sending met. */
int store_pg_prefetch(PgConn *c, StoreTable table, const char *key, size_t key_len);
typedef enum StorePgPut {
        STORE_PG_PUT_OVERWRITE,
        STORE_PG_PUT_NEW,               /* -EEXIST if the key exists (an answer) */
        STORE_PG_PUT_FRESH,             /* the key is new by construction: see above */
} StorePgPut;
int store_pg_put(PgConn *c, StoreTable table, const char *key, size_t key_len, const char *value,
                 size_t value_len, StorePgPut how);
int store_pg_del(PgConn *c, StoreTable table, const char *key, size_t key_len);        /* -ENOENT */
int store_pg_count(PgConn *c, StoreTable table, uint64_t *ret);
/* Whether any table holds a record (a store with records but no schema stamp is not ours). */
int store_pg_any(PgConn *c, StoreTable *ret_table);                                    /* 0, -ENOENT */

/* Up to STORE_PG_PAGE_ROWS records of table in key order, from the first key >= from
 * (inclusive) or > from; from NULL: from the first key. below (not NULL): only keys < below (in
 * byte order), which needs a from. -EINVAL for a below without a from. */
int store_pg_scan(PgConn *c, StoreTable table, const char *from, size_t from_len, bool inclusive,
                  const char *below, size_t below_len, PgRows **ret);
size_t store_pg_rows_count(const PgRows *rows);
const char *store_pg_rows_key(const PgRows *rows, size_t i, size_t *ret_len);
const char *store_pg_rows_value(const PgRows *rows, size_t i, size_t *ret_len);
PgRows *store_pg_rows_free(PgRows *rows);
DEFINE_POINTER_CLEANUP(PgRows, store_pg_rows_free)

/* The records of every table at once: counted (a walk of the whole table) while the table holds
 * at most STORE_PG_COUNT_EXACT_MAX records by the planner's statistics, estimated from those
 * statistics above (*ret_estimated; a table too rare to be in their sample shows 0). */
#define STORE_PG_COUNT_EXACT_MAX 100000u
int store_pg_count_all(PgConn *c, uint64_t counts[static _STORE_TABLE_MAX], bool *ret_estimated);
/* The bytes of the database (pg_database_size). */
int store_pg_size(PgConn *c, uint64_t *ret);
