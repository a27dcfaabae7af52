/* SPDX-License-Identifier: MIT */
/*
 * idm-bulkload: builds a store of N customers for the scale measurements (bench/scale.sh,
 * docs/performance.md "Scale"), through the store API and the same record code idmd uses.
 *
 * One publisher (createPublisher's record, with a publisherToken printed for the caller), then N
 * customers written as registerCustomer writes them: customer_create() (the customer record with
 * its e-mail index entry), consents_record_registration() (nothing: no answers) and, with
 * --sessions, session_start() (the family, its customer index entry, the refresh and customer
 * token records and their expiry index entries). Each customer gets its own Argon2id hash of the
 * same password at a cheap cost (default t=1, m=8 KiB: the smallest libsodium allows), so the
 * records have the real shape and length but loading 1,000,000 takes minutes, not days. Many
 * customers go into one unit of work (--batch).
 *
 * --expire then runs the token sweep (the manager's session kinds) with the clock a year ahead,
 * so what is left is what a customer leaves behind once its tokens have expired.
 *
 * E-mail addresses are in random key order (an 8-hex-digit hash of the index in front), like real
 * addresses, so the index pages fill as they would in production.
 *
 * Prints one JSON line on stdout: the publisher, one sample customer (id and e-mail; the password
 * is BULK_PASSWORD), timings, and per table: entries, branch/leaf/overflow pages, depth, and
 * the bytes of keys and values; used_bytes (pages of live data × page size) and bytes per
 * customer. Not installed; only built with -Dbench=true.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <lmdb.h>
#include <sodium.h>

#include "config.h"
#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "log.h"
#include "methods/consents.h"
#include "passwords.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "sessions.h"
#include "store.h"
#include "tokens.h"
#include "userdb.h"

#define BULK_PASSWORD "bench-Passw0rd!"         /* idm-bench's BENCH_PASSWORD */
#define PUBLISHER_TOKEN_BYTES 36                /* methods/publishers.c */
#define USEC_PER_SEC UINT64_C(1000000)
#define YEAR_USEC (UINT64_C(366) * 24 * 3600 * USEC_PER_SEC)

typedef struct Options {
        const char *dir;
        uint64_t customers;
        unsigned batch;
        PasswordCost cost;
        bool sessions;
        bool expire;
        const char *keys;
} Options;

typedef struct Batch {
        const Options *o;
        const Config *config;
        Keyring *keyring;
        const char *publisher_id;
        json_t *recs;           /* the batch's customer records, hashed before the unit of work */
        uint64_t now;
} Batch;

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Random-looking, unique and reproducible: the index's hash in front. */
static int customer_email(uint64_t i, char **ret) {
        uint8_t h[4];

        crypto_generichash(h, sizeof(h), (const uint8_t *) &i, sizeof(i), NULL, 0);
        return asprintf(ret, "%02x%02x%02x%02x.customer%" PRIu64 "@example.com", h[0], h[1], h[2], h[3], i) < 0 ?
                -ENOMEM : 0;
}

/* What register_done() packs for a registration with locale en_US (country and currency as the
 * locale detection fills them in). */
static int customer_record(const Options *o, const char *publisher_id, uint64_t i, uint64_t now, json_t **ret) {
        _cleanup_free_ char *email = NULL;
        char hash[PASSWORD_HASH_MAX];
        json_t *rec;
        int r;

        r = customer_email(i, &email);
        if (r < 0)
                return r;
        r = password_hash(BULK_PASSWORD, &o->cost, hash);
        if (r < 0)
                return r;
        rec = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s}",
                        "email", email,
                        "publisherId", publisher_id,
                        "passwordHash", hash,
                        "locale", "en_US",
                        "registrationDate", (json_int_t) now,
                        "country", "US",
                        "currency", "USD");
        sodium_memzero(hash, sizeof(hash));
        if (!rec)
                return -ENOMEM;
        *ret = rec;
        return 0;
}

static int batch_work(StoreTxn *t, void *userdata) {
        Batch *b = userdata;
        UnixUidRange range = USERDB_UID_RANGE(b->config);
        SessionContext ctx = { .config = b->config, .keyring = b->keyring, .now_usec = b->now };
        size_t i;
        json_t *rec;
        int r;

        json_array_foreach(b->recs, i, rec) {
                const char *taken = NULL, *cid;

                r = customer_create(t, rec, &range, &taken);
                if (r == -ENOBUFS)
                        return r;       /* the store grows and runs the batch again */
                if (r < 0)
                        return log_error_errno(r, "customer_create: %m%s%s", taken ? ", taken: " : "", strempty(taken));
                cid = json_object_get_string(rec, "customerId");
                r = consents_record_registration(t, b->publisher_id, cid, NULL, b->now);
                if (r < 0)
                        return r;
                if (b->o->sessions) {
                        SessionTokens tokens = {};

                        r = session_start(t, &ctx, cid, b->publisher_id, &tokens);
                        session_tokens_done(&tokens);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

typedef struct PublisherWork {
        json_t *rec;
        const char *token;
} PublisherWork;

static int publisher_work(StoreTxn *t, void *userdata) {
        PublisherWork *w = userdata;

        return publisher_save(t, w->rec, true, w->token);
}

typedef struct SweepWork {
        SessionContext ctx;
        const char *kind;
        SessionExpireFn expire;
        char *cursor;
        uint64_t deleted;
} SweepWork;

static int sweep_work(StoreTxn *t, void *userdata) {
        SweepWork *w = userdata;
        SessionSweepStats stats = {};
        char *next = NULL;
        int r;

        r = session_sweep_kind(t, &w->ctx, w->kind, w->expire, 20000, w->cursor, &next, &stats);
        if (r < 0)
                return r;
        free(w->cursor);
        w->cursor = next;
        w->deleted += stats.deleted;
        return r;
}

/* The manager's sweep of the session kinds (manager.c sweepers[]), with the clock a year on. */
static int expire_all(Store *s, const Config *config, Keyring *keyring, uint64_t now, uint64_t *ret_deleted) {
        static const struct {
                const char *kind;
                SessionExpireFn expire;
        } kinds[] = {
                { SESSION_KIND_REFRESH, session_expire_token },
                { SESSION_KIND_CUSTOMER, session_expire_token },
                { SESSION_KIND_SEAL, session_expire_seal },
                { SESSION_KIND_FAMILY, session_expire_family },
        };
        uint64_t deleted = 0;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                SweepWork w = {
                        .ctx = { .config = config, .keyring = keyring, .now_usec = now + YEAR_USEC },
                        .kind = kinds[i].kind,
                        .expire = kinds[i].expire,
                };

                do {
                        r = store_transact(s, sweep_work, &w);
                } while (r > 0);
                free(w.cursor);
                if (r < 0)
                        return r;
                deleted += w.deleted;
        }
        *ret_deleted = deleted;
        return 0;
}

/* Per table: entries, pages, depth, and the bytes of its keys and values (a read-only LMDB
 * environment of its own, after the store is closed). */
static int table_report(const char *dir, json_t *out, uint64_t *ret_used_pages, unsigned *ret_page_size) {
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        MDB_stat st;
        MDB_dbi main_dbi;
        uint64_t used = 2;      /* the two meta pages */
        json_t *tables = json_object();
        int k;

        if (!tables)
                return -ENOMEM;
        json_object_set_new(out, "tables", tables);
        k = mdb_env_create(&env);
        if (k == MDB_SUCCESS)
                k = mdb_env_set_maxdbs(env, _STORE_TABLE_MAX);
        if (k == MDB_SUCCESS)
                k = mdb_env_open(env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
        if (k == MDB_SUCCESS)
                k = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
        if (k == MDB_SUCCESS)
                k = mdb_dbi_open(txn, NULL, 0, &main_dbi);
        if (k == MDB_SUCCESS)
                k = mdb_stat(txn, main_dbi, &st);
        if (k != MDB_SUCCESS)
                goto finish;
        *ret_page_size = st.ms_psize;
        used += (uint64_t) st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;

        for (StoreTable i = 0; i < _STORE_TABLE_MAX; i++) {
                MDB_dbi dbi;
                MDB_cursor *c = NULL;
                MDB_val key, val;
                uint64_t kbytes = 0, vbytes = 0;

                k = mdb_dbi_open(txn, store_table_to_string(i), 0, &dbi);
                if (k != MDB_SUCCESS)
                        goto finish;
                k = mdb_stat(txn, dbi, &st);
                if (k != MDB_SUCCESS)
                        goto finish;
                k = mdb_cursor_open(txn, dbi, &c);
                if (k != MDB_SUCCESS)
                        goto finish;
                for (k = mdb_cursor_get(c, &key, &val, MDB_FIRST); k == MDB_SUCCESS;
                     k = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
                        kbytes += key.mv_size;
                        vbytes += val.mv_size;
                }
                mdb_cursor_close(c);
                if (k != MDB_NOTFOUND)
                        goto finish;
                k = MDB_SUCCESS;
                used += (uint64_t) st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
                if (st.ms_entries == 0)
                        continue;
                json_object_set_new(tables, store_table_to_string(i),
                                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                                              "entries", (json_int_t) st.ms_entries,
                                              "depth", (json_int_t) st.ms_depth,
                                              "branch_pages", (json_int_t) st.ms_branch_pages,
                                              "leaf_pages", (json_int_t) st.ms_leaf_pages,
                                              "overflow_pages", (json_int_t) st.ms_overflow_pages,
                                              "key_bytes", (json_int_t) kbytes,
                                              "value_bytes", (json_int_t) vbytes));
        }
        *ret_used_pages = used;
finish:
        if (txn)
                mdb_txn_abort(txn);
        if (env)
                mdb_env_close(env);
        return k == MDB_SUCCESS ? 0 : -EIO;
}

static void help(void) {
        printf("Usage: idm-bulkload --dir DIR --customers N [OPTIONS]\n\n"
               "Builds a store of N customers of one new publisher in DIR (a state directory; the store\n"
               "is created or added to) through idmd's store API, as registerCustomer writes them.\n\n"
               "  --dir DIR          state directory (data.mdb is created in it)\n"
               "  --customers N      customers to add\n"
               "  --batch N          customers per unit of work (default 10000)\n"
               "  --opslimit T       Argon2id passes of each customer's hash (default 1)\n"
               "  --memlimit BYTES   Argon2id memory of each customer's hash (default 8192)\n"
               "  --sessions         also start a session per customer (as registerCustomer does)\n"
               "  --keys DIR         signing keys for --sessions (default DIR/keys)\n"
               "  --expire           then sweep the session tokens with the clock a year on\n"
               "\nOne JSON line on stdout: publisherId, publisherToken, a sample customerId and email\n"
               "(password " BULK_PASSWORD "), timings, per-table pages and bytes, bytes per customer.\n");
}

int main(int argc, char *argv[]) {
        enum { ARG_DIR = 0x100, ARG_CUSTOMERS, ARG_BATCH, ARG_OPSLIMIT, ARG_MEMLIMIT, ARG_SESSIONS, ARG_EXPIRE,
               ARG_KEYS };
        static const struct option options[] = {
                { "dir", required_argument, NULL, ARG_DIR },
                { "customers", required_argument, NULL, ARG_CUSTOMERS },
                { "batch", required_argument, NULL, ARG_BATCH },
                { "opslimit", required_argument, NULL, ARG_OPSLIMIT },
                { "memlimit", required_argument, NULL, ARG_MEMLIMIT },
                { "sessions", no_argument, NULL, ARG_SESSIONS },
                { "expire", no_argument, NULL, ARG_EXPIRE },
                { "keys", required_argument, NULL, ARG_KEYS },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        Options o = { .batch = 10000, .cost = { .opslimit = 1, .memlimit = 8192 } };
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(json_decrefp) json_t *out = NULL, *prec = NULL;
        _cleanup_(erase_and_freep) char *ptoken = NULL;
        _cleanup_free_ char *keydir = NULL, *sample_email = NULL, *sample_id = NULL;
        Config *config = NULL;
        Keyring *keyring = NULL;
        uint64_t t0, t_loaded, t_expired, now, deleted = 0, used_pages = 0;
        unsigned page_size = 4096;
        StoreStats stats;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                char *end = NULL;

                errno = 0;
                switch (c) {
                case ARG_DIR:
                        o.dir = optarg;
                        break;
                case ARG_CUSTOMERS:
                        o.customers = strtoull(optarg, &end, 10);
                        break;
                case ARG_BATCH:
                        o.batch = (unsigned) strtoul(optarg, &end, 10);
                        break;
                case ARG_OPSLIMIT:
                        o.cost.opslimit = strtoull(optarg, &end, 10);
                        break;
                case ARG_MEMLIMIT:
                        o.cost.memlimit = strtoull(optarg, &end, 10);
                        break;
                case ARG_SESSIONS:
                        o.sessions = true;
                        break;
                case ARG_EXPIRE:
                        o.expire = true;
                        break;
                case ARG_KEYS:
                        o.keys = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
                if (end && (errno != 0 || *end || end == optarg)) {
                        fprintf(stderr, "Bad number: %s\n", optarg);
                        return EXIT_FAILURE;
                }
        }
        if (!o.dir || o.customers == 0 || o.batch == 0) {
                help();
                return EXIT_FAILURE;
        }
        log_set_max_level(LOG_LEVEL_WARNING);
        if (sodium_init() < 0)
                return EXIT_FAILURE;

        r = config_new(&config);
        if (r < 0)
                return log_error_errno(r, "config_new: %m"), EXIT_FAILURE;
        now = now_usec(CLOCK_REALTIME);
        if (mkdir(o.dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "mkdir %s: %m", o.dir), EXIT_FAILURE;
        if (o.sessions) {
                if (!o.keys && asprintf(&keydir, "%s/keys", o.dir) < 0)
                        return EXIT_FAILURE;
                r = keyring_load(o.keys ?: keydir, now, KEYRING_RETAIN_USEC(config->access_ttl_usec), &keyring);
                if (r < 0)
                        return log_error_errno(r, "keyring_load: %m"), EXIT_FAILURE;
        }

        r = store_open(o.dir, &(StoreOptions) { .map_size_max = UINT64_C(16) * 1024 * 1024 * 1024 }, &s, NULL);
        if (r < 0)
                return log_error_errno(r, "store_open %s: %m", o.dir), EXIT_FAILURE;

        r = token_random(PUBLISHER_TOKEN_BYTES, &ptoken);
        if (r < 0)
                return EXIT_FAILURE;
        prec = json_pack("{s:[], s:I, s:s}", "allowedRedirectUris", "createdDate", (json_int_t) now, "name",
                         "bulkload");
        if (!prec)
                return EXIT_FAILURE;
        r = store_transact(s, publisher_work, &(PublisherWork) { .rec = prec, .token = ptoken });
        if (r < 0)
                return log_error_errno(r, "publisher_save: %m"), EXIT_FAILURE;
        const char *pid = json_object_get_string(prec, "publisherId");

        t0 = now_usec(CLOCK_MONOTONIC);
        for (uint64_t done = 0; done < o.customers;) {
                _cleanup_(json_decrefp) json_t *recs = json_array();
                uint64_t n = o.customers - done < o.batch ? o.customers - done : o.batch;

                if (!recs)
                        return EXIT_FAILURE;
                for (uint64_t i = 0; i < n; i++) {
                        json_t *rec;

                        r = customer_record(&o, pid, done + i, now, &rec);
                        if (r < 0)
                                return log_error_errno(r, "customer record: %m"), EXIT_FAILURE;
                        if (json_array_append_new(recs, rec) < 0)
                                return EXIT_FAILURE;
                }
                r = store_transact(s, batch_work, &(Batch) { .o = &o, .config = config, .keyring = keyring,
                                                            .publisher_id = pid, .recs = recs, .now = now });
                if (r < 0)
                        return log_error_errno(r, "batch at %" PRIu64 ": %m", done), EXIT_FAILURE;
                if (done == 0) {
                        sample_id = strdup(json_object_get_string(json_array_get(recs, 0), "customerId"));
                        if (!sample_id || customer_email(0, &sample_email) < 0)
                                return EXIT_FAILURE;
                }
                done += n;
                if (done % (o.batch * 10) == 0 || done == o.customers)
                        fprintf(stderr, "idm-bulkload: %" PRIu64 "/%" PRIu64 " customers, %.1f s\n", done,
                                o.customers, (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC);
        }
        t_loaded = now_usec(CLOCK_MONOTONIC);
        if (o.expire) {
                r = expire_all(s, config, keyring, now, &deleted);
                if (r < 0)
                        return log_error_errno(r, "sweep: %m"), EXIT_FAILURE;
        }
        t_expired = now_usec(CLOCK_MONOTONIC);
        r = store_stats(s, &stats);
        if (r < 0)
                return EXIT_FAILURE;
        s = store_free(s);

        out = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:I, s:I, s:I, s:b, s:f, s:f, s:I, s:I}",
                        "publisherId", pid,
                        "publisherToken", ptoken,
                        "customerId", sample_id,
                        "email", sample_email,
                        "password", BULK_PASSWORD,
                        "customers", (json_int_t) o.customers,
                        "opslimit", (json_int_t) o.cost.opslimit,
                        "memlimit", (json_int_t) o.cost.memlimit,
                        "sessions", o.sessions,
                        "load_seconds", (double) (t_loaded - t0) / USEC_PER_SEC,
                        "expire_seconds", (double) (t_expired - t_loaded) / USEC_PER_SEC,
                        "swept_records", (json_int_t) deleted,
                        "file_bytes", (json_int_t) stats.file_bytes);
        if (!out)
                return EXIT_FAILURE;
        r = table_report(o.dir, out, &used_pages, &page_size);
        if (r < 0)
                return log_error_errno(r, "table report: %m"), EXIT_FAILURE;
        json_object_set_new(out, "page_size", json_integer(page_size));
        json_object_set_new(out, "used_bytes", json_integer((json_int_t) (used_pages * page_size)));
        json_object_set_new(out, "bytes_per_customer",
                            json_real((double) (used_pages * page_size) / (double) o.customers));
        r = json_dumpf(out, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        printf("\n");
        keyring_free(keyring);
        config_free(config);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
