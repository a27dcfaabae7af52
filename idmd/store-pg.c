/* SPDX-License-Identifier: MIT */
/*
 * The PostgreSQL backend's connections (store-pg.h): the pool, the SQL schema and its
 * migrations, the prepared statements, and the one place libpq's errors become -errno
 * (pg_errno()). This is the only file that includes libpq-fe.h.
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

#include <libpq-fe.h>

#include "coro.h"
#include "idm/cleanup.h"
#include "idm/time-util.h"
#include "log.h"
#include "store-pg.h"

/* pg_advisory_xact_lock() key of the schema migration: "idm" and the schema's name. */
#define SCHEMA_LOCK_KEY "7596621011"
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

static const char *strna(const char *s) {
        return s ? s : "n/a";
}

/* A connection of the pool runs in libpq's pipeline mode, so that what needs no answer of its
 * own does not cost a round trip: a transaction's BEGIN is sent with its first statement, an
 * overwriting put goes with the next statement that needs an answer (or the COMMIT), and a read
 * snapshot's end is sent without waiting (its results are read before the next statement of
 * whoever uses the connection next). A statement sent ahead that fails is reported by the
 * statement it went with (the ones behind it are not run). Every round trip ends with a sync.
 * A read the caller will need soon (store_pg_prefetch()) is queued too; its answer, read with
 * the next round trip, waits in the connection until store_pg_get() asks for it. */
typedef struct PgPrefetch {
        StoreTable table;
        char *key;
        size_t key_len;
        unsigned position;      /* its place among the statements queued after the BEGIN */
        bool arrived;           /* res is its answer */
        bool stale;             /* the unit wrote the key since: the answer is not to be used */
        PGresult *res;
} PgPrefetch;

struct PgConn {
        StorePg *pool;
        PGconn *conn;           /* NULL once dropped (broken, or a statement timed out) */
        bool busy;              /* a transaction of a StoreTxn runs on it */
        bool write;             /* ... a unit of work (else a read snapshot) */
        const char *begin;      /* its BEGIN, until sent ahead of its first statement */
        bool begin_queued;      /* ... queued, its result not read yet */
        unsigned queued;        /* statements queued after it whose results are not read yet */
        unsigned owed;          /* syncs sent whose results (the statements', then the sync's)
                                 * are still to be read: ended read snapshots */
        PgPrefetch prefetch[STORE_PG_PREFETCH_MAX];
        unsigned n_prefetch;
        CoroFd *socket;                 /* conn's socket, kept on the loop (NULL until waited on) */
};

struct StorePg {
        char *conninfo;
        uint64_t timeout_usec;
        PgConn conns[STORE_PG_CONNECTIONS_MAX];
        unsigned n_conns;
        CoroQueue free_waiters;         /* coroutines waiting for a connection to be given back */
        bool unreachable;               /* the last connect failed: an episode is logged */

        /* Jobs one instance runs for all (store_pg_lead()): session advisory locks held on a
         * connection of their own, given up only when it ends. */
        PGconn *lead_conn;
        bool lead_busy;                 /* a statement of it is on its way (one at a time) */
        bool lead_held[_STORE_PG_JOB_MAX];
};

struct PgRows {
        PGresult *res;
};

/* The SQL schema, one step per version: migrations[v] takes a database from version v to v + 1.
 * Steps are never edited once released; a change is a new step. */
static const char *const migrations[STORE_PG_SCHEMA_VERSION] = {
        [0] =
        "CREATE TABLE idm_records ("
        "  tbl smallint NOT NULL,"
        "  key bytea NOT NULL,"
        "  value bytea NOT NULL,"
        "  PRIMARY KEY (tbl, key))",
};

/* The prepared statements of every connection. $1 is always the table, $2 the key. */
typedef enum Statement {
        STMT_GET,
        STMT_PUT,
        STMT_PUT_NEW,
        STMT_PUT_FRESH,
        STMT_DEL,
        STMT_COUNT,
        STMT_ANY,
        STMT_SCAN_FIRST,
        STMT_SCAN_GE,
        STMT_SCAN_GT,
        STMT_SCAN_GE_BELOW,
        STMT_SCAN_GT_BELOW,
        STMT_SIZE,
        STMT_COUNT_ALL,
        STMT_ROWS_ESTIMATE,
        STMT_COUNT_ESTIMATE,
        _STMT_MAX,
} Statement;

#define PAGE_ROWS_STR "256"
static_assert(STORE_PG_PAGE_ROWS == 256, "PAGE_ROWS_STR");

static const struct {
        const char *name;
        const char *sql;
} statements[_STMT_MAX] = {
        [STMT_GET]        = { "get", "SELECT value FROM idm_records WHERE tbl = $1 AND key = $2" },
        [STMT_PUT]        = { "put", "INSERT INTO idm_records (tbl, key, value) VALUES ($1, $2, $3) "
                                     "ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value" },
        [STMT_PUT_NEW]    = { "put_new", "INSERT INTO idm_records (tbl, key, value) VALUES ($1, $2, $3) "
                                         "ON CONFLICT (tbl, key) DO NOTHING" },
        /* No ON CONFLICT: a clash is a unique violation, which fails the transaction. */
        [STMT_PUT_FRESH]  = { "put_fresh", "INSERT INTO idm_records (tbl, key, value) VALUES ($1, $2, $3)" },
        [STMT_DEL]        = { "del", "DELETE FROM idm_records WHERE tbl = $1 AND key = $2" },
        [STMT_COUNT]      = { "count", "SELECT count(*) FROM idm_records WHERE tbl = $1" },
        [STMT_ANY]        = { "any", "SELECT tbl FROM idm_records LIMIT 1" },
        [STMT_SCAN_FIRST] = { "scan_first", "SELECT key, value FROM idm_records WHERE tbl = $1 "
                                            "ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SCAN_GE]    = { "scan_ge", "SELECT key, value FROM idm_records WHERE tbl = $1 AND key >= $2 "
                                         "ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SCAN_GT]    = { "scan_gt", "SELECT key, value FROM idm_records WHERE tbl = $1 AND key > $2 "
                                         "ORDER BY key LIMIT " PAGE_ROWS_STR },
        /* A walk under a prefix stops at the first key past it ($3), so that a page holds no
         * rows the walk would only throw away. */
        [STMT_SCAN_GE_BELOW] = { "scan_ge_below", "SELECT key, value FROM idm_records WHERE tbl = $1 AND key >= $2 "
                                                  "AND key < $3 ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SCAN_GT_BELOW] = { "scan_gt_below", "SELECT key, value FROM idm_records WHERE tbl = $1 AND key > $2 "
                                                  "AND key < $3 ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SIZE]       = { "size", "SELECT pg_database_size(current_database())" },
        [STMT_COUNT_ALL]  = { "count_all", "SELECT tbl, count(*) FROM idm_records GROUP BY tbl" },
        /* The planner's statistics (VACUUM and ANALYZE keep them, autovacuum among them): the
         * rows of the table (-1: never counted), and the share of each table among them. */
        [STMT_ROWS_ESTIMATE] = { "rows_estimate", "SELECT coalesce((SELECT reltuples::bigint FROM pg_class "
                                                  "WHERE oid = to_regclass('idm_records')), -1)" },
        [STMT_COUNT_ESTIMATE] = { "count_estimate",
                                  "SELECT u.tbl, round(u.share * c.reltuples)::bigint "
                                  "FROM pg_stats s, pg_class c, "
                                  "unnest(s.most_common_vals::text::smallint[], s.most_common_freqs) AS u(tbl, share) "
                                  "WHERE s.schemaname = current_schema() AND s.tablename = 'idm_records' "
                                  "AND s.attname = 'tbl' AND c.oid = to_regclass('idm_records')" },
};

/* The server's (or libpq's) words for the last failed connect of this thread. */
static _Thread_local char connect_error[256];

const char *store_pg_connect_error(void) {
        return connect_error[0] ? connect_error : NULL;
}

static void pqclearp(PGresult **r) {
        if (*r)
                PQclear(*r);
}

/* The one place libpq's failures become -errno. res may be NULL (libpq could not even send). */
static int pg_errno(PGconn *conn, const PGresult *res, const char *what) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *message = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        int r;

        /* Only the primary message: the detail may quote a key (an e-mail address). */
        if (!message)
                message = conn ? PQerrorMessage(conn) : "connection dropped";
        if (!state)
                r = conn && PQstatus(conn) == CONNECTION_OK ? -EIO : -ENOTCONN;
        else if (streq(state, "40001") || streq(state, "40P01"))
                r = -EAGAIN;    /* serialization failure, deadlock: run it again */
        else if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
                r = -ENOTCONN;  /* connection exception, the server shutting down */
        else if (streq(state, "23505"))
                r = -ENOTUNIQ;  /* only a fresh put (STMT_PUT_FRESH) can violate the key */
        else if (streq(state, "53100"))
                r = -ENOSPC;
        else if (streq(state, "53200"))
                r = -ENOMEM;
        else if (streq(state, "42501"))
                r = -EPERM;
        else if (streq(state, "25006"))
                r = -EROFS;
        else if (streq(state, "54000"))
                r = -EFBIG;
        else
                r = -EIO;
        return log_debug_errno(r, "PostgreSQL %s failed (%s): %s", what, strna(state), strna(message));
}

/* Waits (coro_wait_fd(): the loop goes on in a coroutine) until conn's socket is ready. */
static int pg_wait(PGconn *conn, uint32_t events, uint64_t deadline) {
        uint64_t now = now_monotonic_usec();

        if (now >= deadline)
                return -ETIMEDOUT;
        return coro_wait_fd(PQsocket(conn), events, deadline - now);
}

/* A pool connection's answer arrived while nobody waits for it (an ended snapshot's, read later):
 * libpq takes it into its buffer, so that the socket is no longer ready. */
static int pg_take_input(void *userdata) {
        PgConn *c = userdata;

        return c->conn && PQconsumeInput(c->conn) ? 0 : -ENOTCONN;
}

/* As pg_wait(), on a pool connection: its socket stays on the loop between waits (coro_fd_wait()). */
static int pg_wait_pool(PgConn *c, uint32_t events, uint64_t deadline) {
        uint64_t now = now_monotonic_usec();
        int r;

        if (now >= deadline)
                return -ETIMEDOUT;
        if (!c->socket) {
                r = coro_fd_new(PQsocket(c->conn), pg_take_input, c, &c->socket);
                if (r < 0)
                        return r;
        }
        return coro_fd_wait(c->socket, events, deadline - now);
}

/* After a statement was sent on conn: flushes it, waits for its answer, and returns its first
 * result (NULL: see PQerrorMessage()), consuming any further ones. -ETIMEDOUT when the server
 * did not answer by the deadline (the connection is then of no further use). */
static int pg_await(PGconn *conn, uint64_t timeout_usec, PGresult **ret) {
        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        PGresult *first = NULL;
        int r, f;

        while ((f = PQflush(conn)) != 0) {
                if (f < 0)
                        goto done;
                r = pg_wait(conn, EPOLLIN | EPOLLOUT, deadline);
                if (r < 0)
                        return log_debug_errno(r, "PostgreSQL did not take a statement in time: %m");
                if (!PQconsumeInput(conn))
                        goto done;
        }
        for (;;) {
                PGresult *res;

                while (PQisBusy(conn)) {
                        r = pg_wait(conn, EPOLLIN, deadline);
                        if (r < 0) {
                                if (first)
                                        PQclear(first);
                                return log_debug_errno(r, "PostgreSQL did not answer in time: %m");
                        }
                        if (!PQconsumeInput(conn))
                                goto done;
                }
                res = PQgetResult(conn);
                if (!res)
                        break;
                if (!first)
                        first = res;
                else
                        PQclear(res);
        }
done:
        *ret = first;
        return 0;
}

/* Forgets the reads sent ahead (the transaction ended, or the connection went). */
static void pg_prefetch_clear(PgConn *c) {
        for (unsigned i = 0; i < c->n_prefetch; i++) {
                PQclear(c->prefetch[i].res);
                free(c->prefetch[i].key);
        }
        c->n_prefetch = 0;
}

/* The prefetch of key in table, or NULL. */
static PgPrefetch *pg_prefetch_find(PgConn *c, StoreTable table, const char *key, size_t key_len) {
        for (unsigned i = 0; i < c->n_prefetch; i++) {
                PgPrefetch *f = &c->prefetch[i];

                if (f->table == table && f->key_len == key_len && memcmp(f->key, key, key_len) == 0)
                        return f;
        }
        return NULL;
}

/* The connection c holds is of no further use (it broke, or a statement timed out mid-way). */
static void pg_drop(PgConn *c) {
        pg_prefetch_clear(c);
        /* Off the loop before the socket closes (its number may be the next connection's). */
        c->socket = coro_fd_free(c->socket);
        if (c->conn)
                PQfinish(c->conn);
        c->conn = NULL;
        /* What it owed or had queued went with it. */
        c->owed = 0;
        c->queued = 0;
        c->begin_queued = false;
}

/* Runs SQL without parameters (one statement, or several that return no rows) on conn. */
static int pg_command_conn(PGconn *conn, uint64_t timeout_usec, const char *sql, PGresult **ret) {
        int r;

        if (!PQsendQuery(conn, sql)) {
                *ret = NULL;
                return 0;
        }
        r = pg_await(conn, timeout_usec, ret);
        return r;
}

/* A statement without parameters whose rows, if any, do not matter. */
static int pg_command_timeout(PGconn *conn, uint64_t timeout_usec, const char *sql) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = pg_command_conn(conn, timeout_usec, sql, &res);
        if (r < 0)
                return r;
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(conn, res, sql);
        return 0;
}

/* ---- pool connections: pipeline mode ---- */

/* The next result of the pipeline, waiting for it: NULL ends one statement's results. */
static int pg_next_result(PgConn *c, uint64_t deadline, PGresult **ret) {
        int r;

        while (PQisBusy(c->conn)) {
                r = pg_wait_pool(c, EPOLLIN, deadline);
                if (r < 0)
                        return log_debug_errno(r, "PostgreSQL did not answer in time: %m");
                if (!PQconsumeInput(c->conn))
                        return log_debug_errno(ENOTCONN, "PostgreSQL connection broke: %s", PQerrorMessage(c->conn));
        }
        *ret = PQgetResult(c->conn);
        return 0;
}

/* One statement's results, up to the NULL that ends them: the first in *ret (NULL: freed), the
 * others freed. */
static int pg_read_statement(PgConn *c, uint64_t deadline, PGresult **ret) {
        PGresult *first = NULL, *res;
        int r;

        for (;;) {
                r = pg_next_result(c, deadline, &res);
                if (r < 0)
                        break;
                if (!res)
                        break;
                if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                        /* A sync where a statement's results belong: we lost count. */
                        PQclear(res);
                        r = log_debug_errno(EPROTO, "PostgreSQL pipeline out of step");
                        break;
                }
                if (!first)
                        first = res;
                else
                        PQclear(res);
        }
        if (r < 0 || !ret) {
                PQclear(first);
                first = NULL;
        }
        if (ret)
                *ret = first;
        return r;
}

static int pg_read_sync(PgConn *c, uint64_t deadline) {
        PGresult *res = NULL;
        int r;

        r = pg_next_result(c, deadline, &res);
        if (r >= 0 && PQresultStatus(res) != PGRES_PIPELINE_SYNC)
                r = log_debug_errno(EPROTO, "PostgreSQL pipeline out of step");
        PQclear(res);
        return r;
}

/* Sends what is queued with a sync, and flushes it. */
static int pg_sync_send(PgConn *c, uint64_t deadline) {
        int f, r;

        if (!PQpipelineSync(c->conn))
                return log_debug_errno(ENOTCONN, "PostgreSQL connection broke: %s", PQerrorMessage(c->conn));
        while ((f = PQflush(c->conn)) != 0) {
                if (f < 0)
                        return log_debug_errno(ENOTCONN, "PostgreSQL connection broke: %s", PQerrorMessage(c->conn));
                r = pg_wait_pool(c, EPOLLIN | EPOLLOUT, deadline);
                if (r < 0)
                        return log_debug_errno(r, "PostgreSQL did not take a statement in time: %m");
                if (!PQconsumeInput(c->conn))
                        return log_debug_errno(ENOTCONN, "PostgreSQL connection broke: %s", PQerrorMessage(c->conn));
        }
        return 0;
}

/* Queues the transaction's BEGIN, if not sent yet, ahead of the statement about to be queued. */
static int pg_queue_begin(PgConn *c) {
        if (!c->begin)
                return 0;
        if (!PQsendQueryParams(c->conn, c->begin, 0, NULL, NULL, NULL, NULL, 0))
                return pg_errno(c->conn, NULL, c->begin);
        c->begin = NULL;
        c->begin_queued = true;
        return 0;
}

static bool pg_result_ok(const PGresult *res) {
        return PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
}

/* The results of one ended snapshot (c->owed): whatever statements it had, up to its sync. */
static int pg_skip_to_sync(PgConn *c, uint64_t deadline) {
        unsigned nulls = 0;

        for (;;) {
                PGresult *res = NULL;
                bool sync;
                int r;

                r = pg_next_result(c, deadline, &res);
                if (r < 0)
                        return r;
                if (!res) {
                        /* The end of one statement's results; two in a row: nothing is coming. */
                        if (++nulls > 1)
                                return log_debug_errno(EPROTO, "PostgreSQL pipeline out of step");
                        continue;
                }
                nulls = 0;
                sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
                PQclear(res);
                if (sync)
                        return 0;
        }
}

/* The prefetch queued at position, not arrived yet, or NULL. */
static PgPrefetch *pg_prefetch_at(PgConn *c, unsigned position) {
        for (unsigned i = 0; i < c->n_prefetch; i++)
                if (!c->prefetch[i].arrived && c->prefetch[i].position == position)
                        return &c->prefetch[i];
        return NULL;
}

/* Syncs what was sent (c->queued, and one more statement if statement), reads what the connection
 * owes, then the results of the BEGIN and of the statements queued ahead (c->queued; a
 * prefetch's answer is kept), and returns the last statement's first result (NULL: see
 * PQerrorMessage()). When one sent ahead failed, its result is returned instead (the statements
 * behind it were not run: PGRES_PIPELINE_ABORTED); without a statement of its own, *ret is NULL
 * when all went well. -ENOTCONN, -ETIMEDOUT, -EPROTO: the connection is dropped. */
static int pg_roundtrip_queued(PgConn *c, bool statement, PGresult **ret) {
        uint64_t deadline = now_monotonic_usec() + c->pool->timeout_usec;
        PGresult *failed = NULL, *res = NULL;
        unsigned queued = c->queued;
        bool begin = c->begin_queued;
        int r;

        *ret = NULL;
        c->begin_queued = false;
        c->queued = 0;
        r = pg_sync_send(c, deadline);
        for (; r >= 0 && c->owed > 0; c->owed--)
                r = pg_skip_to_sync(c, deadline);
        for (unsigned i = 0; r >= 0 && i < queued + (begin ? 1 : 0); i++) {
                PgPrefetch *f = begin && i == 0 ? NULL : pg_prefetch_at(c, i - (begin ? 1 : 0));
                PGresult *a = NULL;

                r = pg_read_statement(c, deadline, &a);
                if (r < 0)
                        break;
                if (f)
                        f->arrived = true;
                if (!failed && !pg_result_ok(a))
                        failed = TAKE_PTR(a);
                else if (f && !f->stale)
                        f->res = TAKE_PTR(a);
                PQclear(a);
        }
        if (r >= 0 && statement)
                r = pg_read_statement(c, deadline, &res);
        if (r >= 0)
                r = pg_read_sync(c, deadline);
        if (r < 0) {
                PQclear(failed);
                PQclear(res);
                pg_drop(c);
                return r;
        }
        if (failed) {
                PQclear(res);
                *ret = failed;
                return 0;
        }
        *ret = res;
        return 0;
}

/* After one statement was sent (pg_queue_begin() before it) whose answer is wanted now. */
static int pg_roundtrip(PgConn *c, PGresult **ret) {
        return pg_roundtrip_queued(c, true, ret);
}

/* A statement without parameters on a pool connection (inside its transaction). */
static int pg_command(PgConn *c, const char *sql) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        if (!c->conn)
                return -ENOTCONN;
        r = pg_queue_begin(c);
        if (r < 0)
                return r;
        if (!PQsendQueryParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0))
                return pg_errno(c->conn, NULL, sql);
        r = pg_roundtrip(c, &res);
        if (r < 0)
                return r;
        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, sql);
        return 0;
}

static int pg_prepare_all(PGconn *conn, uint64_t timeout_usec) {
        for (Statement i = 0; i < _STMT_MAX; i++) {
                _cleanup_(pqclearp) PGresult *res = NULL;
                int r;

                if (!PQsendPrepare(conn, statements[i].name, statements[i].sql, 0, NULL))
                        return pg_errno(conn, NULL, statements[i].name);
                r = pg_await(conn, timeout_usec, &res);
                if (r < 0)
                        return r;
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        return pg_errno(conn, res, statements[i].name);
        }
        return 0;
}

static void pg_notice_ignore(void *arg, const PGresult *res) {
        /* NOTICEs ("relation already exists, skipping") are not for idmd's log. */
}

/* A new connection, without waiting on the loop's thread: PQconnectStart()/PQconnectPoll(). */
static int pg_connect_raw(const char *conninfo, uint64_t timeout_usec, PGconn **ret) {
        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        PGconn *conn;
        int r;

        conn = PQconnectStart(conninfo);
        if (!conn)
                return -ENOMEM;
        while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
                if (st == PGRES_POLLING_READING || st == PGRES_POLLING_WRITING) {
                        r = pg_wait(conn, st == PGRES_POLLING_READING ? EPOLLIN : EPOLLOUT, deadline);
                        if (r < 0) {
                                PQfinish(conn);
                                (void) snprintf(connect_error, sizeof(connect_error),
                                                "no answer within the timeout");
                                return log_debug_errno(r == -ETIMEDOUT ? ENOTCONN : -r,
                                                       "Could not connect to PostgreSQL in time");
                        }
                }
                st = PQconnectPoll(conn);
        }
        if (PQstatus(conn) != CONNECTION_OK) {
                /* libpq's message names the host and the role, never the password. */
                (void) snprintf(connect_error, sizeof(connect_error), "%s", PQerrorMessage(conn));
                connect_error[strcspn(connect_error, "\n")] = 0;
                r = log_debug_errno(ENOTCONN, "Could not connect to PostgreSQL: %s", connect_error);
                PQfinish(conn);
                return r;
        }
        connect_error[0] = 0;
        (void) PQsetNoticeReceiver(conn, pg_notice_ignore, NULL);
        if (PQsetnonblocking(conn, 1) != 0) {
                PQfinish(conn);
                return log_debug_errno(EIO, "Could not make the PostgreSQL connection non-blocking");
        }
        *ret = conn;
        return 0;
}

/* A new connection of the pool, checked and with the statements prepared. */
static int pg_connect(StorePg *p, PGconn **ret) {
        PGconn *conn = NULL;
        int r;

        r = pg_connect_raw(p->conninfo, p->timeout_usec, &conn);
        if (r < 0)
                return r;
        /* Keys and values are bytea; the few texts idmd sends are ASCII. */
        r = pg_command_timeout(conn, p->timeout_usec, "SET client_encoding = 'UTF8'");
        if (r >= 0)
                r = pg_prepare_all(conn, p->timeout_usec);
        if (r >= 0 && !PQenterPipelineMode(conn))
                r = log_debug_errno(EIO, "Could not put the PostgreSQL connection in pipeline mode: %s",
                                    PQerrorMessage(conn));
        if (r < 0) {
                PQfinish(conn);
                return r;
        }
        *ret = conn;
        return 0;
}

/* The single integer of a one-row, one-column text result. */
static int pg_result_uint(const PGresult *res, unsigned *ret) {
        const char *v;
        char *end;
        unsigned long n;

        if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
                return -EPROTO;
        v = PQgetvalue(res, 0, 0);
        errno = 0;
        n = strtoul(v, &end, 10);
        if (errno != 0 || end == v || *end || n > UINT32_MAX)
                return -EPROTO;
        *ret = (unsigned) n;
        return 0;
}

/* Creates or migrates the SQL schema, one instance at a time. */
static int pg_migrate_work(PGconn *conn, uint64_t timeout_usec, unsigned *ret_found) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        unsigned version = 0;
        bool fresh;
        int r;

        r = pg_command_timeout(conn, timeout_usec, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")");
        if (r < 0)
                return r;
        r = pg_command_timeout(conn, timeout_usec, "CREATE TABLE IF NOT EXISTS idm_schema (version integer NOT NULL)");
        if (r < 0)
                return r;
        r = pg_command_conn(conn, timeout_usec, "SELECT version FROM idm_schema", &res);
        if (r < 0)
                return r;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(conn, res, "reading the schema version");
        fresh = PQntuples(res) == 0;
        if (!fresh && pg_result_uint(res, &version) < 0)
                return log_debug_errno(EPROTO, "PostgreSQL table idm_schema holds no valid version");
        *ret_found = version;
        if (version > STORE_PG_SCHEMA_VERSION)
                return log_debug_errno(EPROTONOSUPPORT, "The PostgreSQL schema is version %u, newer than "
                                       "this idmd knows (%u)", version, STORE_PG_SCHEMA_VERSION);
        if (version == STORE_PG_SCHEMA_VERSION)
                return 0;

        for (unsigned v = version; v < STORE_PG_SCHEMA_VERSION; v++) {
                r = pg_command_timeout(conn, timeout_usec, migrations[v]);
                if (r < 0)
                        return log_debug_errno(r, "PostgreSQL schema migration from version %u failed: %m", v);
                log_debug("Migrated the PostgreSQL schema from version %u to %u", v, v + 1);
        }
        r = pg_command_timeout(conn, timeout_usec, fresh ? "INSERT INTO idm_schema (version) VALUES (" STRINGIFY(STORE_PG_SCHEMA_VERSION) ")"
                                   : "UPDATE idm_schema SET version = " STRINGIFY(STORE_PG_SCHEMA_VERSION));
        return r;
}

static int pg_migrate(PGconn *conn, uint64_t timeout_usec, unsigned *ret_found) {
        int r;

        r = pg_command_timeout(conn, timeout_usec, "BEGIN");
        if (r < 0)
                return r;
        r = pg_migrate_work(conn, timeout_usec, ret_found);
        if (r < 0) {
                (void) pg_command_timeout(conn, timeout_usec, "ROLLBACK");
                return r;
        }
        return pg_command_timeout(conn, timeout_usec, "COMMIT");
}

/* One text value of a query on conn (a new string), NULL if it failed or gave no row. */
static char *pg_query_text(PGconn *conn, uint64_t timeout_usec, const char *sql) {
        _cleanup_(pqclearp) PGresult *res = NULL;

        if (pg_command_conn(conn, timeout_usec, sql, &res) < 0 || PQresultStatus(res) != PGRES_TUPLES_OK ||
            PQntuples(res) < 1 || PQgetisnull(res, 0, 0))
                return NULL;
        return strdup(PQgetvalue(res, 0, 0));
}

int store_pg_lead(StorePg *p, StorePgJob job) {
        static const char *const lock_sql[_STORE_PG_JOB_MAX] = {
                /* Keys: the schema idmd's tables are in (several stores may share a database,
                 * one per schema), and the job. */
                [STORE_PG_JOB_SWEEP] = "SELECT pg_try_advisory_lock(hashtext('idm:' || current_schema()), 1)::text",
                [STORE_PG_JOB_OUTBOX] = "SELECT pg_try_advisory_lock(hashtext('idm:' || current_schema()), 2)::text",
        };
        _cleanup_free_ char *got = NULL;
        int r;

        if (!p || job < 0 || job >= _STORE_PG_JOB_MAX)
                return -EINVAL;
        if (p->lead_busy)
                return 0;       /* the other job is asking: this one asks next time */
        if (p->lead_conn && PQstatus(p->lead_conn) != CONNECTION_OK) {
                /* The connection ended, and every lock it held with it. */
                PQfinish(p->lead_conn);
                p->lead_conn = NULL;
        }
        if (!p->lead_conn) {
                memset(p->lead_held, 0, sizeof(p->lead_held));
                p->lead_busy = true;
                r = pg_connect_raw(p->conninfo, p->timeout_usec, &p->lead_conn);
                p->lead_busy = false;
                if (r < 0) {
                        p->lead_conn = NULL;
                        return r;
                }
        }
        if (p->lead_held[job])
                return 1;
        p->lead_busy = true;
        got = pg_query_text(p->lead_conn, p->timeout_usec, lock_sql[job]);
        p->lead_busy = false;
        if (!got) {
                /* No answer: what this connection holds is unknown; start afresh next time. */
                PQfinish(p->lead_conn);
                p->lead_conn = NULL;
                return -ENOTCONN;
        }
        p->lead_held[job] = streq(got, "true");
        if (p->lead_held[job])
                log_debug("This instance runs the %s for every instance on the PostgreSQL store",
                          job == STORE_PG_JOB_SWEEP ? "expiry sweep" : "mail outbox");
        return p->lead_held[job];
}

int store_pg_check(const char *conninfo, uint64_t timeout_usec, FILE *f) {
        _cleanup_free_ char *version = NULL, *who = NULL, *tables = NULL, *schema = NULL, *stamp = NULL,
                *can_create = NULL;
        PGconn *conn = NULL;
        unsigned v = 0;
        int r;

        r = pg_connect_raw(conninfo, timeout_usec ?: STORE_PG_TIMEOUT_USEC, &conn);
        if (r < 0) {
                fprintf(f, "# [store] postgresql: cannot connect: %s\n", connect_error[0] ? connect_error : "no answer");
                return r;
        }
        version = pg_query_text(conn, timeout_usec, "SELECT version()");
        who = pg_query_text(conn, timeout_usec, "SELECT 'role ' || current_user || ', database ' || current_database()");
        fprintf(f, "# [store] postgresql: connected to %s as %s\n", strna(version), strna(who));
        tables = pg_query_text(conn, timeout_usec, "SELECT count(*) FROM pg_tables WHERE tablename = 'idm_schema' "
                                                   "AND schemaname = ANY (current_schemas(false))");
        if (!tables || streq(tables, "0")) {
                can_create = pg_query_text(conn, timeout_usec,
                                           "SELECT has_schema_privilege(current_schema(), 'CREATE')::text");
                fprintf(f, "# [store] postgresql: no idmd tables yet; idmd makes them when it starts%s\n",
                        streq_ptr(can_create, "true") ? "" : ", but this role may not create tables there");
                PQfinish(conn);
                return streq_ptr(can_create, "true") ? 0 : -EPERM;
        }
        schema = pg_query_text(conn, timeout_usec, "SELECT version::text FROM idm_schema");
        stamp = pg_query_text(conn, timeout_usec, "SELECT convert_from(value, 'UTF8') FROM idm_records "
                                                  "WHERE tbl = 0 AND key = 'schema_version'::bytea");
        PQfinish(conn);
        if (!schema || sscanf(schema, "%u", &v) != 1) {
                fprintf(f, "# [store] postgresql: table idm_schema holds no version: not idmd's, or damaged\n");
                return -EPROTO;
        }
        fprintf(f, "# [store] postgresql: tables of version %u (this idmd: %u), store stamp %s\n", v,
                STORE_PG_SCHEMA_VERSION, strna(stamp));
        if (v > STORE_PG_SCHEMA_VERSION) {
                fprintf(f, "# [store] postgresql: made by a newer idmd: this one refuses to start on it\n");
                return -EPROTONOSUPPORT;
        }
        return 0;
}

int store_pg_open(const char *conninfo, uint64_t timeout_usec, StorePg **ret, unsigned *ret_sql_version) {
        StorePg *p;
        PGconn *conn = NULL;
        unsigned found = 0;
        int r;

        if (!conninfo || !ret)
                return -EINVAL;
        p = calloc(1, sizeof(StorePg));
        if (!p)
                return -ENOMEM;
        p->timeout_usec = timeout_usec > 0 ? timeout_usec : STORE_PG_TIMEOUT_USEC;
        for (unsigned i = 0; i < STORE_PG_CONNECTIONS_MAX; i++)
                p->conns[i].pool = p;
        p->conninfo = strdup(conninfo);
        if (!p->conninfo) {
                store_pg_free(p);
                return -ENOMEM;
        }

        /* The schema first, on a connection without prepared statements (their tables may not
         * exist yet). */
        r = pg_connect_raw(conninfo, p->timeout_usec, &conn);
        if (r >= 0)
                r = pg_migrate(conn, p->timeout_usec, &found);
        if (conn)
                PQfinish(conn);
        if (ret_sql_version)
                *ret_sql_version = found;
        if (r < 0) {
                store_pg_free(p);
                return r;
        }

        r = pg_connect(p, &p->conns[0].conn);
        if (r < 0) {
                store_pg_free(p);
                return r;
        }
        p->n_conns = 1;
        *ret = p;
        return 0;
}

int store_pg_check_connection(const char *conninfo) {
        PQconninfoOption *options;
        char *error = NULL;
        int r = 0;

        options = PQconninfoParse(conninfo, &error);
        if (!options) {
                /* libpq's message may quote the string: not logged. */
                PQfreemem(error);
                return -EINVAL;
        }
        for (PQconninfoOption *o = options; o->keyword; o++)
                if (streq(o->keyword, "password") && o->val && o->val[0])
                        r = -EPERM;
        PQconninfoFree(options);
        return r;
}

StorePg *store_pg_free(StorePg *p) {
        if (!p)
                return NULL;
        for (unsigned i = 0; i < p->n_conns; i++)
                pg_drop(&p->conns[i]);
        if (p->lead_conn)
                PQfinish(p->lead_conn);         /* gives up its jobs for another instance */
        free(p->conninfo);
        free(p);
        return NULL;
}

/* Logs the start and the end of an episode in which the database cannot be reached, once each. */
static void pg_reachable(StorePg *p, bool ok) {
        if (ok && p->unreachable) {
                p->unreachable = false;
                log_notice("The PostgreSQL store is reachable again.");
        } else if (!ok && !p->unreachable) {
                p->unreachable = true;
                log_warning("Cannot reach the PostgreSQL store (%s): requests that need it are answered 503 "
                            "store_unavailable until it is back.", connect_error[0] ? connect_error : "no answer");
        }
}

/* A connection is free again: the first coroutine waiting for one may take it. */
static void pg_release(PgConn *c) {
        pg_prefetch_clear(c);
        c->busy = false;
        (void) coro_queue_wake(&c->pool->free_waiters);
}

int store_pg_begin(StorePg *p, bool write, PgConn **ret) {
        PgConn *c = NULL;
        int r;

        for (;;) {
                for (unsigned i = 0; i < p->n_conns && !c; i++)
                        if (!p->conns[i].busy)
                                c = &p->conns[i];
                if (c || p->n_conns < STORE_PG_CONNECTIONS_MAX)
                        break;
                /* All in use: a coroutine waits its turn (elsewhere nobody could give one back). */
                r = coro_queue_wait(&p->free_waiters, p->timeout_usec);
                if (r < 0)
                        return log_debug_errno(r == -ETIMEDOUT ? EAGAIN : -r,
                                               "All %u PostgreSQL connections are in use: %m",
                                               STORE_PG_CONNECTIONS_MAX);
        }
        if (!c)
                c = &p->conns[p->n_conns++];    /* a new slot, connected below */
        /* Taken from here on: the connect and the BEGIN may wait, and nobody else may take it. */
        c->busy = true;
        /* Still inside a transaction (nothing should leave one open): not to be used. */
        if (c->conn && (c->begin_queued || c->queued > 0 ||
                        (c->owed == 0 && PQtransactionStatus(c->conn) != PQTRANS_IDLE))) {
                log_debug("PostgreSQL connection left inside a transaction, connecting again");
                pg_drop(c);
        }
        if (!c->conn || PQstatus(c->conn) != CONNECTION_OK) {
                /* New, dropped, or broken since its last use: a new connection (prepared
                 * statements do not survive a reset). */
                pg_drop(c);
                r = pg_connect(p, &c->conn);
                if (r == -ENOTCONN || r == -ETIMEDOUT)
                        pg_reachable(p, false);
                if (r < 0) {
                        c->conn = NULL;
                        pg_release(c);
                        return r;
                }
                pg_reachable(p, true);
        }

        /* Sent ahead of the first statement, in the same round trip (pg_queue_begin()). */
        c->write = write;
        c->begin = write ? "BEGIN ISOLATION LEVEL SERIALIZABLE" : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
        c->begin_queued = false;
        *ret = c;
        return 0;
}

/* Ends a read snapshot without waiting: its end is sent now, and its results (with those of
 * reads sent ahead and never asked for) are read before the connection's next statement
 * (c->owed). Nothing to end if nothing was sent. */
static void pg_end_snapshot(PgConn *c, const char *sql) {
        bool ahead;

        if (c->begin || !c->conn) {
                c->begin = NULL;
                pg_release(c);
                return;
        }
        /* Sent now (the server ends the snapshot at once; a wait only if the socket is full),
         * its answer read later. Reads sent ahead and never asked for get a sync of their own
         * first: were one to fail, the server would skip the rest of its segment, this end too. */
        ahead = c->begin_queued || c->queued > 0;
        if ((ahead && !PQpipelineSync(c->conn)) ||
            !PQsendQueryParams(c->conn, sql, 0, NULL, NULL, NULL, NULL, 0) ||
            pg_sync_send(c, now_monotonic_usec() + c->pool->timeout_usec) < 0)
                pg_drop(c);
        else {
                c->owed += ahead ? 2 : 1;
                c->begin_queued = false;
                c->queued = 0;
        }
        pg_release(c);
}

int store_pg_commit(StorePg *p, PgConn *c) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = 0;

        assert(c->busy);
        if (c->begin) {
                /* Nothing was sent: there is no transaction to commit. */
                c->begin = NULL;
                pg_release(c);
                return 0;
        }
        if (!c->write) {
                pg_end_snapshot(c, "COMMIT");
                return 0;
        }
        if (!c->conn)
                r = -ENOTCONN;
        else if (!PQsendQueryParams(c->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
                r = -ENOTCONN;
        else
                r = pg_roundtrip(c, &res);
        if (r < 0) {
                /* Whether it committed is unknown; the connection is of no further use. */
                pg_drop(c);
                pg_release(c);
                return log_debug_errno(r == -ETIMEDOUT ? r : -ENOTCONN, "PostgreSQL COMMIT not confirmed: %m");
        }
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                r = pg_errno(c->conn, res, "COMMIT");
        else if (!streq(PQcmdStatus(res), "COMMIT"))
                /* The transaction had failed: PostgreSQL rolls it back and says so. */
                r = log_debug_errno(EIO, "PostgreSQL rolled back a failed transaction instead of committing");
        if (r == -ENOTUNIQ)
                r = -EEXIST;    /* a fresh put sent with the COMMIT clashed: the unit failed */
        if (r < 0 && c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
                (void) pg_command(c, "ROLLBACK");
        pg_release(c);
        return r;
}

void store_pg_rollback(StorePg *p, PgConn *c) {
        assert(c->busy);
        if (!c->write) {
                pg_end_snapshot(c, "ROLLBACK");
                return;
        }
        if (c->begin)
                c->begin = NULL;        /* nothing was sent */
        else if (c->conn && (c->begin_queued || c->queued > 0 || PQtransactionStatus(c->conn) != PQTRANS_IDLE)) {
                /* (Also when the BEGIN and puts are only queued: they must not go out with the
                 * next user's statements.) */
                (void) pg_command(c, "ROLLBACK");
                /* A put sent ahead of it that failed made the server skip this ROLLBACK (until
                 * the sync): the transaction is still open, failed. Now nothing goes ahead. */
                if (c->conn && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
                        (void) pg_command(c, "ROLLBACK");
        }
        pg_release(c);
}

/* A read sent ahead is a hint of one unit: a unit of a batch does not see another's. */
int store_pg_savepoint(PgConn *c) {
        int r = pg_command(c, "SAVEPOINT unit");

        pg_prefetch_clear(c);
        return r;
}

int store_pg_release(PgConn *c) {
        int r = pg_command(c, "RELEASE SAVEPOINT unit");

        pg_prefetch_clear(c);
        return r;
}

int store_pg_rollback_to(PgConn *c) {
        int r = pg_command(c, "ROLLBACK TO SAVEPOINT unit");

        pg_prefetch_clear(c);
        return r < 0 ? r : pg_command(c, "RELEASE SAVEPOINT unit");
}

/* Runs statement s with the table (unless it takes no parameters) and, if given, a key and a
 * value (binary), binary results, into *ret (NULL: see PQerrorMessage()). -ENOTCONN for a
 * dropped connection, -ETIMEDOUT (the connection is dropped then). Without ret_wanted the
 * statement is only queued (1): its answer comes with the next statement's. */
static int pg_run_ahead(PgConn *c, Statement s, StoreTable table, const char *key, size_t key_len,
                        const char *value, size_t value_len, bool ret_wanted, PGresult **ret) {
        char tbl[8];
        const char *values[3] = { tbl, key, value };
        int lengths[3] = { 0, (int) key_len, (int) value_len };
        int formats[3] = { 0, 1, 1 };
        int n = (int) table < 0 ? 0 : value ? 3 : key ? 2 : 1;
        int r;

        *ret = NULL;
        if (!c->conn)
                return log_debug_errno(ENOTCONN, "PostgreSQL connection was dropped");
        assert(key_len <= INT32_MAX && value_len <= INT32_MAX);
        (void) snprintf(tbl, sizeof(tbl), "%d", (int) table);
        r = pg_queue_begin(c);
        if (r < 0)
                return r;
        if (!PQsendQueryPrepared(c->conn, statements[s].name, n, values, lengths, formats, 1))
                return 0;       /* *ret NULL: pg_errno() tells */
        if (!ret_wanted) {
                /* Its answer is read with the next statement's (pg_roundtrip()). */
                c->queued++;
                return 1;
        }
        return pg_roundtrip(c, ret);
}

static int pg_run(PgConn *c, Statement s, StoreTable table, const char *key, size_t key_len,
                  const char *value, size_t value_len, PGresult **ret) {
        return pg_run_ahead(c, s, table, key, key_len, value, value_len, true, ret);
}

/* pg_run(), then a failure of the statement itself as -errno. want: the status of success. */
static int pg_run_check(PgConn *c, Statement s, StoreTable table, const char *key, size_t key_len,
                        const char *value, size_t value_len, ExecStatusType want, PGresult **ret) {
        int r = pg_run(c, s, table, key, key_len, value, value_len, ret);

        if (r < 0)
                return r;
        if (PQresultStatus(*ret) != want) {
                r = pg_errno(c->conn, *ret, statements[s].name);
                PQclear(*ret);
                *ret = NULL;
                return r;
        }
        return 0;
}

/* The answer to a get of key sent ahead, if there is one to use: waits for it if it has not
 * come yet. 1 (*ret its result), 0 (none: ask), or what the round trip met. */
static int pg_prefetched(PgConn *c, StoreTable table, const char *key, size_t key_len, PGresult **ret) {
        PgPrefetch *f = pg_prefetch_find(c, table, key, key_len);
        int r;

        *ret = NULL;
        if (!f || f->stale)
                return 0;
        if (!f->arrived) {
                r = pg_roundtrip_queued(c, false, ret);
                if (r < 0)
                        return r;
                if (*ret)
                        return 1;       /* a statement sent ahead failed: that is the answer */
                f = pg_prefetch_find(c, table, key, key_len);
                assert(f && f->arrived);
        }
        *ret = TAKE_PTR(f->res);
        f->stale = true;                /* used: a later get asks again */
        return *ret ? 1 : 0;
}

int store_pg_get(PgConn *c, StoreTable table, const char *key, size_t key_len, char **ret, size_t *ret_len) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        size_t n;
        char *v;
        int r;

        r = pg_prefetched(c, table, key, key_len, &res);
        if (r < 0)
                return r;
        if (r > 0 && PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, statements[STMT_GET].name);
        if (r == 0) {
                r = pg_run_check(c, STMT_GET, table, key, key_len, NULL, 0, PGRES_TUPLES_OK, &res);
                if (r < 0)
                        return r;
        }
        if (PQntuples(res) == 0)
                return -ENOENT;
        n = (size_t) PQgetlength(res, 0, 0);
        v = malloc(n + 1);
        if (!v)
                return -ENOMEM;
        memcpy(v, PQgetvalue(res, 0, 0), n);
        v[n] = 0;
        *ret = v;
        *ret_len = n;
        return 0;
}

int store_pg_prefetch(PgConn *c, StoreTable table, const char *key, size_t key_len) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        PgPrefetch *f;
        char *copy;
        int r;

        if (c->n_prefetch >= STORE_PG_PREFETCH_MAX || pg_prefetch_find(c, table, key, key_len))
                return 0;
        copy = strndup(key, key_len);
        if (!copy)
                return -ENOMEM;
        r = pg_run_ahead(c, STMT_GET, table, key, key_len, NULL, 0, false, &res);
        if (r <= 0) {
                free(copy);
                return r < 0 ? r : pg_errno(c->conn, NULL, statements[STMT_GET].name);
        }
        f = &c->prefetch[c->n_prefetch++];
        *f = (PgPrefetch) { .table = table, .key = copy, .key_len = key_len, .position = c->queued - 1 };
        return 0;
}

/* A write of key: an answer to a get of it sent ahead is out of date. */
static void pg_prefetch_spoil(PgConn *c, StoreTable table, const char *key, size_t key_len) {
        PgPrefetch *f = pg_prefetch_find(c, table, key, key_len);

        if (!f)
                return;
        f->stale = true;
        PQclear(TAKE_PTR(f->res));
}

/* Runs a command of statement s that changes one row or none: 0 if it changed one, none (-EEXIST,
 * -ENOENT) if not, -EPROTO if PostgreSQL does not say. */
static int pg_change(PgConn *c, Statement s, StoreTable table, const char *key, size_t key_len,
                     const char *value, size_t value_len, int none) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        const char *n;
        int r;

        r = pg_run_check(c, s, table, key, key_len, value, value_len, PGRES_COMMAND_OK, &res);
        if (r < 0)
                return r;
        n = PQcmdTuples(res);
        if (!n || !*n)
                return -EPROTO;
        return streq(n, "0") ? none : 0;
}

int store_pg_put(PgConn *c, StoreTable table, const char *key, size_t key_len, const char *value,
                 size_t value_len, StorePgPut how) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        Statement s = how == STORE_PG_PUT_FRESH ? STMT_PUT_FRESH : STMT_PUT;
        int r;

        pg_prefetch_spoil(c, table, key, key_len);
        if (how == STORE_PG_PUT_NEW)
                return pg_change(c, STMT_PUT_NEW, table, key, key_len, value, value_len, -EEXIST);
        /* An overwrite always changes one row, a fresh put one row or fails the transaction: the
         * answer can wait for the next statement's. */
        r = pg_run_ahead(c, s, table, key, key_len, value, value_len, false, &res);
        if (r == 0)
                return pg_errno(c->conn, NULL, statements[s].name);
        return r < 0 ? r : 0;
}

int store_pg_del(PgConn *c, StoreTable table, const char *key, size_t key_len) {
        pg_prefetch_spoil(c, table, key, key_len);
        return pg_change(c, STMT_DEL, table, key, key_len, NULL, 0, -ENOENT);
}

/* A binary int8 result's value. */
static int pg_result_int8(const PGresult *res, uint64_t *ret) {
        uint64_t be;

        if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) != 8)
                return -EPROTO;
        memcpy(&be, PQgetvalue(res, 0, 0), 8);
        *ret = be64toh(be);
        return 0;
}

int store_pg_count(PgConn *c, StoreTable table, uint64_t *ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = pg_run_check(c, STMT_COUNT, table, NULL, 0, NULL, 0, PGRES_TUPLES_OK, &res);
        return r < 0 ? r : pg_result_int8(res, ret);
}

int store_pg_any(PgConn *c, StoreTable *ret_table) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        uint16_t be;
        int r;

        r = pg_run_check(c, STMT_ANY, _STORE_TABLE_INVALID, NULL, 0, NULL, 0, PGRES_TUPLES_OK, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0)
                return -ENOENT;
        if (PQgetlength(res, 0, 0) != 2)
                return -EPROTO;
        memcpy(&be, PQgetvalue(res, 0, 0), 2);
        *ret_table = (StoreTable) (int16_t) be16toh(be);
        return 0;
}

int store_pg_count_all(PgConn *c, uint64_t counts[static _STORE_TABLE_MAX], bool *ret_estimated) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        uint64_t rows;
        int r;

        /* A count walks the whole table: above STORE_PG_COUNT_EXACT_MAX rows the statistics'
         * shares answer instead (none yet: counted after all). */
        *ret_estimated = false;
        r = pg_run_check(c, STMT_ROWS_ESTIMATE, _STORE_TABLE_INVALID, NULL, 0, NULL, 0, PGRES_TUPLES_OK, &res);
        if (r < 0)
                return r;
        r = pg_result_int8(res, &rows);
        if (r < 0)
                return r;
        PQclear(TAKE_PTR(res));
        if ((int64_t) rows > (int64_t) STORE_PG_COUNT_EXACT_MAX) {
                r = pg_run_check(c, STMT_COUNT_ESTIMATE, _STORE_TABLE_INVALID, NULL, 0, NULL, 0, PGRES_TUPLES_OK, &res);
                if (r < 0)
                        return r;
                if (PQntuples(res) > 0)
                        *ret_estimated = true;
                else
                        PQclear(TAKE_PTR(res));
        }
        if (!res) {
                r = pg_run_check(c, STMT_COUNT_ALL, _STORE_TABLE_INVALID, NULL, 0, NULL, 0, PGRES_TUPLES_OK, &res);
                if (r < 0)
                        return r;
        }
        memset(counts, 0, sizeof(uint64_t) * _STORE_TABLE_MAX);
        for (int i = 0; i < PQntuples(res); i++) {
                uint16_t tbl;
                uint64_t n;

                if (PQgetlength(res, i, 0) != 2 || PQgetlength(res, i, 1) != 8)
                        return -EPROTO;
                memcpy(&tbl, PQgetvalue(res, i, 0), 2);
                memcpy(&n, PQgetvalue(res, i, 1), 8);
                tbl = be16toh(tbl);
                if (tbl < _STORE_TABLE_MAX)
                        counts[tbl] = be64toh(n);
        }
        return 0;
}

int store_pg_size(PgConn *c, uint64_t *ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r;

        r = pg_run_check(c, STMT_SIZE, _STORE_TABLE_INVALID, NULL, 0, NULL, 0, PGRES_TUPLES_OK, &res);
        return r < 0 ? r : pg_result_int8(res, ret);
}

int store_pg_scan(PgConn *c, StoreTable table, const char *from, size_t from_len, bool inclusive,
                  const char *below, size_t below_len, PgRows **ret) {
        PGresult *res = NULL;
        PgRows *rows;
        Statement s;
        int r;

        if (below && !from)
                return -EINVAL;
        s = !from ? STMT_SCAN_FIRST :
                below ? (inclusive ? STMT_SCAN_GE_BELOW : STMT_SCAN_GT_BELOW) :
                (inclusive ? STMT_SCAN_GE : STMT_SCAN_GT);
        r = pg_run_check(c, s, table, from, from_len, below, below_len, PGRES_TUPLES_OK, &res);
        if (r < 0)
                return r;
        rows = malloc(sizeof(PgRows));
        if (!rows) {
                PQclear(res);
                return -ENOMEM;
        }
        rows->res = res;
        *ret = rows;
        return 0;
}

size_t store_pg_rows_count(const PgRows *rows) {
        return (size_t) PQntuples(rows->res);
}

const char *store_pg_rows_key(const PgRows *rows, size_t i, size_t *ret_len) {
        *ret_len = (size_t) PQgetlength(rows->res, (int) i, 0);
        return PQgetvalue(rows->res, (int) i, 0);
}

const char *store_pg_rows_value(const PgRows *rows, size_t i, size_t *ret_len) {
        *ret_len = (size_t) PQgetlength(rows->res, (int) i, 1);
        return PQgetvalue(rows->res, (int) i, 1);
}

PgRows *store_pg_rows_free(PgRows *rows) {
        if (!rows)
                return NULL;
        PQclear(rows->res);
        free(rows);
        return NULL;
}
