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

#include <libpq-fe.h>

#include "idm/cleanup.h"
#include "log.h"
#include "store-pg.h"

/* pg_advisory_xact_lock() key of the schema migration: "idm" and the schema's name. */
#define SCHEMA_LOCK_KEY "7596621011"
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

static const char *strna(const char *s) {
        return s ? s : "n/a";
}

struct PgConn {
        PGconn *conn;
        bool busy;              /* a transaction of a StoreTxn runs on it */
};

struct StorePg {
        char *conninfo;
        PgConn conns[STORE_PG_CONNECTIONS_MAX];
        unsigned n_conns;
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
        STMT_EXISTS,
        STMT_PUT,
        STMT_PUT_NEW,
        STMT_DEL,
        STMT_COUNT,
        STMT_ANY,
        STMT_SCAN_FIRST,
        STMT_SCAN_GE,
        STMT_SCAN_GT,
        STMT_SIZE,
        _STMT_MAX,
} Statement;

#define PAGE_ROWS_STR "256"
static_assert(STORE_PG_PAGE_ROWS == 256, "PAGE_ROWS_STR");

static const struct {
        const char *name;
        const char *sql;
} statements[_STMT_MAX] = {
        [STMT_GET]        = { "get", "SELECT value FROM idm_records WHERE tbl = $1 AND key = $2" },
        [STMT_EXISTS]     = { "exists", "SELECT 1 FROM idm_records WHERE tbl = $1 AND key = $2" },
        [STMT_PUT]        = { "put", "INSERT INTO idm_records (tbl, key, value) VALUES ($1, $2, $3) "
                                     "ON CONFLICT (tbl, key) DO UPDATE SET value = EXCLUDED.value" },
        [STMT_PUT_NEW]    = { "put_new", "INSERT INTO idm_records (tbl, key, value) VALUES ($1, $2, $3) "
                                         "ON CONFLICT (tbl, key) DO NOTHING" },
        [STMT_DEL]        = { "del", "DELETE FROM idm_records WHERE tbl = $1 AND key = $2" },
        [STMT_COUNT]      = { "count", "SELECT count(*) FROM idm_records WHERE tbl = $1" },
        [STMT_ANY]        = { "any", "SELECT tbl FROM idm_records LIMIT 1" },
        [STMT_SCAN_FIRST] = { "scan_first", "SELECT key, value FROM idm_records WHERE tbl = $1 "
                                            "ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SCAN_GE]    = { "scan_ge", "SELECT key, value FROM idm_records WHERE tbl = $1 AND key >= $2 "
                                         "ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SCAN_GT]    = { "scan_gt", "SELECT key, value FROM idm_records WHERE tbl = $1 AND key > $2 "
                                         "ORDER BY key LIMIT " PAGE_ROWS_STR },
        [STMT_SIZE]       = { "size", "SELECT pg_database_size(current_database())" },
};

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
                message = PQerrorMessage(conn);
        if (!state)
                r = PQstatus(conn) == CONNECTION_OK ? -EIO : -ENOTCONN;
        else if (streq(state, "40001") || streq(state, "40P01"))
                r = -EAGAIN;    /* serialization failure, deadlock: run it again */
        else if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)
                r = -ENOTCONN;  /* connection exception, the server shutting down */
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

/* Runs a statement without parameters that returns no rows. */
static int pg_command(PGconn *conn, const char *sql) {
        _cleanup_(pqclearp) PGresult *res = PQexec(conn, sql);

        if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(conn, res, sql);
        return 0;
}

static int pg_prepare_all(PGconn *conn) {
        for (Statement i = 0; i < _STMT_MAX; i++) {
                _cleanup_(pqclearp) PGresult *res = PQprepare(conn, statements[i].name, statements[i].sql, 0, NULL);

                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        return pg_errno(conn, res, statements[i].name);
        }
        return 0;
}

static void pg_notice_ignore(void *arg, const PGresult *res) {
        /* NOTICEs ("relation already exists, skipping") are not for idmd's log. */
}

/* A new connection, checked and with the statements prepared. */
static int pg_connect(StorePg *p, PGconn **ret) {
        PGconn *conn;
        int r;

        conn = PQconnectdb(p->conninfo);
        if (!conn)
                return -ENOMEM;
        if (PQstatus(conn) != CONNECTION_OK) {
                r = log_debug_errno(ENOTCONN, "Could not connect to PostgreSQL: %s", PQerrorMessage(conn));
                PQfinish(conn);
                return r;
        }
        (void) PQsetNoticeReceiver(conn, pg_notice_ignore, NULL);
        /* Keys and values are bytea; the few texts idmd sends are ASCII. */
        r = pg_command(conn, "SET client_encoding = 'UTF8'");
        if (r >= 0)
                r = pg_prepare_all(conn);
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
static int pg_migrate_work(PGconn *conn, unsigned *ret_found) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        unsigned version = 0;
        bool fresh;
        int r;

        r = pg_command(conn, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK_KEY ")");
        if (r < 0)
                return r;
        r = pg_command(conn, "CREATE TABLE IF NOT EXISTS idm_schema (version integer NOT NULL)");
        if (r < 0)
                return r;
        res = PQexec(conn, "SELECT version FROM idm_schema");
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
                r = pg_command(conn, migrations[v]);
                if (r < 0)
                        return log_debug_errno(r, "PostgreSQL schema migration from version %u failed: %m", v);
                log_debug("Migrated the PostgreSQL schema from version %u to %u", v, v + 1);
        }
        r = pg_command(conn, fresh ? "INSERT INTO idm_schema (version) VALUES (" STRINGIFY(STORE_PG_SCHEMA_VERSION) ")"
                                   : "UPDATE idm_schema SET version = " STRINGIFY(STORE_PG_SCHEMA_VERSION));
        return r;
}

static int pg_migrate(PGconn *conn, unsigned *ret_found) {
        int r;

        r = pg_command(conn, "BEGIN");
        if (r < 0)
                return r;
        r = pg_migrate_work(conn, ret_found);
        if (r < 0) {
                (void) pg_command(conn, "ROLLBACK");
                return r;
        }
        return pg_command(conn, "COMMIT");
}

int store_pg_open(const char *conninfo, StorePg **ret, unsigned *ret_sql_version) {
        StorePg *p;
        PGconn *conn = NULL;
        unsigned found = 0;
        int r;

        if (!conninfo || !ret)
                return -EINVAL;
        p = calloc(1, sizeof(StorePg));
        if (!p)
                return -ENOMEM;
        p->conninfo = strdup(conninfo);
        if (!p->conninfo) {
                store_pg_free(p);
                return -ENOMEM;
        }

        /* The schema first, on a connection without prepared statements (their tables may not
         * exist yet). */
        conn = PQconnectdb(conninfo);
        if (!conn)
                r = -ENOMEM;
        else if (PQstatus(conn) != CONNECTION_OK)
                r = log_debug_errno(ENOTCONN, "Could not connect to PostgreSQL: %s", PQerrorMessage(conn));
        else {
                (void) PQsetNoticeReceiver(conn, pg_notice_ignore, NULL);
                r = pg_migrate(conn, &found);
        }
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

StorePg *store_pg_free(StorePg *p) {
        if (!p)
                return NULL;
        for (unsigned i = 0; i < p->n_conns; i++)
                if (p->conns[i].conn)
                        PQfinish(p->conns[i].conn);
        free(p->conninfo);
        free(p);
        return NULL;
}

int store_pg_server_version(StorePg *p, char **ret) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        PGconn *conn;
        char *v;

        if (!p || !ret || p->n_conns == 0)
                return -EINVAL;
        conn = p->conns[0].conn;
        if (p->conns[0].busy)
                return -EBUSY;
        res = PQexec(conn, "SELECT version()");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
                return pg_errno(conn, res, "SELECT version()");
        v = strdup(PQgetvalue(res, 0, 0));
        if (!v)
                return -ENOMEM;
        *ret = v;
        return 0;
}

int store_pg_begin(StorePg *p, bool write, PgConn **ret) {
        PgConn *c = NULL;
        int r;

        for (unsigned i = 0; i < p->n_conns; i++)
                if (!p->conns[i].busy) {
                        c = &p->conns[i];
                        break;
                }
        if (!c) {
                if (p->n_conns >= STORE_PG_CONNECTIONS_MAX)
                        return log_debug_errno(EAGAIN, "All %u PostgreSQL connections are in use",
                                               STORE_PG_CONNECTIONS_MAX);
                c = &p->conns[p->n_conns];
                r = pg_connect(p, &c->conn);
                if (r < 0)
                        return r;
                p->n_conns++;
        }
        if (PQstatus(c->conn) != CONNECTION_OK) {
                /* Broken since its last use: a new one (prepared statements do not survive). */
                PGconn *conn = NULL;

                r = pg_connect(p, &conn);
                if (r < 0)
                        return r;
                PQfinish(c->conn);
                c->conn = conn;
        }

        r = pg_command(c->conn, write ? "BEGIN ISOLATION LEVEL SERIALIZABLE"
                                      : "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
        if (r < 0)
                return r;
        c->busy = true;
        *ret = c;
        return 0;
}

int store_pg_commit(StorePg *p, PgConn *c) {
        _cleanup_(pqclearp) PGresult *res = NULL;
        int r = 0;

        assert(c->busy);
        res = PQexec(c->conn, "COMMIT");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                r = pg_errno(c->conn, res, "COMMIT");
        else if (!streq(PQcmdStatus(res), "COMMIT"))
                /* The transaction had failed: PostgreSQL rolls it back and says so. */
                r = log_debug_errno(EIO, "PostgreSQL rolled back a failed transaction instead of committing");
        if (r < 0 && PQtransactionStatus(c->conn) != PQTRANS_IDLE)
                (void) pg_command(c->conn, "ROLLBACK");
        c->busy = false;
        return r;
}

void store_pg_rollback(StorePg *p, PgConn *c) {
        assert(c->busy);
        if (PQtransactionStatus(c->conn) != PQTRANS_IDLE)
                (void) pg_command(c->conn, "ROLLBACK");
        c->busy = false;
}

int store_pg_savepoint(PgConn *c) {
        return pg_command(c->conn, "SAVEPOINT unit");
}

int store_pg_release(PgConn *c) {
        return pg_command(c->conn, "RELEASE SAVEPOINT unit");
}

int store_pg_rollback_to(PgConn *c) {
        int r = pg_command(c->conn, "ROLLBACK TO SAVEPOINT unit");

        return r < 0 ? r : pg_command(c->conn, "RELEASE SAVEPOINT unit");
}

/* Runs statement s with the table and, if given, a key and a value (binary), binary results. */
static PGresult *pg_run(PgConn *c, Statement s, StoreTable table, const char *key, size_t key_len,
                        const char *value, size_t value_len) {
        char tbl[8];
        const char *values[3] = { tbl, key, value };
        int lengths[3] = { 0, (int) key_len, (int) value_len };
        int formats[3] = { 0, 1, 1 };
        int n = value ? 3 : key ? 2 : 1;

        assert(key_len <= INT32_MAX && value_len <= INT32_MAX);
        (void) snprintf(tbl, sizeof(tbl), "%d", (int) table);
        return PQexecPrepared(c->conn, statements[s].name, n, values, lengths, formats, 1);
}

int store_pg_get(PgConn *c, StoreTable table, const char *key, size_t key_len, char **ret, size_t *ret_len) {
        _cleanup_(pqclearp) PGresult *res = pg_run(c, STMT_GET, table, key, key_len, NULL, 0);
        size_t n;
        char *v;

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, "get");
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

int store_pg_exists(PgConn *c, StoreTable table, const char *key, size_t key_len) {
        _cleanup_(pqclearp) PGresult *res = pg_run(c, STMT_EXISTS, table, key, key_len, NULL, 0);

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, "exists");
        return PQntuples(res) > 0 ? 0 : -ENOENT;
}

/* The number of rows a command changed (PQcmdTuples), -EPROTO if it says none. */
static int pg_changed(PGresult *res) {
        const char *n = PQcmdTuples(res);

        if (!n || !*n)
                return -EPROTO;
        return streq(n, "0") ? 0 : 1;
}

int store_pg_put(PgConn *c, StoreTable table, const char *key, size_t key_len, const char *value,
                 size_t value_len, bool no_overwrite) {
        _cleanup_(pqclearp) PGresult *res =
                pg_run(c, no_overwrite ? STMT_PUT_NEW : STMT_PUT, table, key, key_len, value, value_len);
        int r;

        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_errno(c->conn, res, "put");
        r = pg_changed(res);
        if (r < 0)
                return r;
        return r == 0 ? -EEXIST : 0;
}

int store_pg_del(PgConn *c, StoreTable table, const char *key, size_t key_len) {
        _cleanup_(pqclearp) PGresult *res = pg_run(c, STMT_DEL, table, key, key_len, NULL, 0);
        int r;

        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_errno(c->conn, res, "delete");
        r = pg_changed(res);
        if (r < 0)
                return r;
        return r == 0 ? -ENOENT : 0;
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
        _cleanup_(pqclearp) PGresult *res = pg_run(c, STMT_COUNT, table, NULL, 0, NULL, 0);

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, "count");
        return pg_result_int8(res, ret);
}

int store_pg_any(PgConn *c, StoreTable *ret_table) {
        _cleanup_(pqclearp) PGresult *res = PQexecPrepared(c->conn, statements[STMT_ANY].name, 0, NULL, NULL, NULL, 1);
        uint16_t be;

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, "any");
        if (PQntuples(res) == 0)
                return -ENOENT;
        if (PQgetlength(res, 0, 0) != 2)
                return -EPROTO;
        memcpy(&be, PQgetvalue(res, 0, 0), 2);
        *ret_table = (StoreTable) (int16_t) be16toh(be);
        return 0;
}

int store_pg_size(PgConn *c, uint64_t *ret) {
        _cleanup_(pqclearp) PGresult *res = PQexecPrepared(c->conn, statements[STMT_SIZE].name, 0, NULL, NULL, NULL, 1);

        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_errno(c->conn, res, "size");
        return pg_result_int8(res, ret);
}

int store_pg_scan(PgConn *c, StoreTable table, const char *from, size_t from_len, bool inclusive, PgRows **ret) {
        PGresult *res;
        PgRows *rows;

        res = pg_run(c, !from ? STMT_SCAN_FIRST : inclusive ? STMT_SCAN_GE : STMT_SCAN_GT,
                     table, from, from_len, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                int r = pg_errno(c->conn, res, "scan");

                PQclear(res);
                return r;
        }
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
