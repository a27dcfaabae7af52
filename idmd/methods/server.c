/* SPDX-License-Identifier: MIT */
/*
 * Methods about the server itself: getServerInfo (anyone) and getStats (admin), and the test-only
 * testAdvanceClock (admin, and only in an idmd started with --test-clock).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-build.h"
#include "connection.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "records/customers.h"
#include "methods/methods.h"
#include "outbox.h"
#include "passwords.h"
#include "tokens.h"
#include "workers.h"

static const char *const role_names[_ROLE_MAX] = {
        [ROLE_ANYONE] = "anyone",
        [ROLE_CUSTOMER] = "customer",
        [ROLE_PUBLISHER] = "publisher",
        [ROLE_ADMIN] = "admin",
};

#define TEST_METHOD_ADVANCE_CLOCK "testAdvanceClock"

static int method_server_test_advance_clock(Call *call, json_t *params);

static void add_method_name(const Method *m, size_t index, void *userdata) {
        (void) json_array_append_new(userdata, json_string(m->name));
}

/* The reply of each role, serialized once: it changes only with what it is made of (the admin
 * group, which a reload may rename; the test-only methods), checked on every request. */
typedef struct ServerInfoKept {
        char *text;
        size_t len;
        char *admin_group;      /* what adminGroup was made of; NULL: null */
        bool test_clock;
} ServerInfoKept;

static ServerInfoKept server_info_kept[_ROLE_MAX];

static int method_server_get_info(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        Role role = call_role(call);
        const char *admin_group = m->admin_gid_valid ? m->config->admin_group : NULL;
        ServerInfoKept *kept = &server_info_kept[role];
        _cleanup_free_ char *group_copy = NULL;
        json_t *methods, *result;
        char *text;

        if (kept->text && streq_ptr(kept->admin_group, admin_group) && kept->test_clock == test_clock_enabled())
                return call_reply_text(call, kept->text, kept->len);

        methods = json_array();
        if (!methods)
                return -ENOMEM;
        rpc_foreach_method(add_method_name, methods);
        /* adminGroup tells a caller who is not admin whom to ask; the name is no secret, as
         * /etc/group shows every group and its members to every local user. null: only root. */
        result = json_pack("{s:s, s:i, s:o, s:s, s:s?}",
                           "version", IDM_VERSION,
                           "protocolVersion", IDM_PROTOCOL_VERSION,
                           "methods", methods,
                           "role", role_names[role],
                           "adminGroup", admin_group);
        if (!result)
                return call_reply(call, NULL);
        text = json_dumps(result, JSON_COMPACT);
        if (admin_group)
                group_copy = strdup(admin_group);
        if (!text || (admin_group && !group_copy)) {    /* keeping it failed: answered the ordinary way */
                free(text);
                return call_reply(call, result);
        }
        json_decref(result);
        free(kept->text);
        free(kept->admin_group);
        *kept = (ServerInfoKept) {
                .text = text,
                .len = strlen(text),
                .admin_group = TAKE_PTR(group_copy),
                .test_clock = test_clock_enabled(),
        };
        return call_reply_text(call, kept->text, kept->len);
}

static const char *const latency_names[LATENCY_BUCKETS] = {
        "<1ms", "<4ms", "<16ms", "<64ms", "<256ms", "<1s", "<4s", "<16s", "<64s", ">=64s",
};

static void add_method_stats(const Method *method, size_t index, void *userdata) {
        Manager *m = ((void **) userdata)[0];
        json_t *out = ((void **) userdata)[1];
        const MethodStats *st = &m->method_stats[index];
        json_t *hist;

        if (st->calls == 0)
                return;
        hist = json_object();
        for (unsigned i = 0; i < LATENCY_BUCKETS; i++)
                if (st->latency[i] > 0)
                        (void) json_object_set_new(hist, latency_names[i], json_integer((json_int_t) st->latency[i]));
        (void) json_object_set_new(out, method->name,
                                   json_pack("{s:I, s:I, s:o}", "calls", (json_int_t) st->calls, "errors",
                                             (json_int_t) st->errors, "latency", hist));
}

/* The mail outbox: depth and the oldest message's age from a snapshot, counters since start. */
static int add_outbox_stats(Call *call, json_t *result) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        uint64_t now = now_realtime_usec();
        OutboxStats os;
        json_t *age;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = outbox_stats(call_manager(call)->outbox, t, &os);
        if (r < 0)
                return r;
        age = os.oldest_created_usec == 0 ? json_null()
                                           : json_integer((json_int_t) (now > os.oldest_created_usec
                                                                                ? (now - os.oldest_created_usec) / 1000000ULL
                                                                                : 0));
        return json_object_set_new(result, "outbox",
                                   json_pack("{s:I, s:o, s:I, s:I, s:I, s:I, s:b}",
                                             "depth", (json_int_t) os.depth,
                                             "oldestAge", age,
                                             "delivered", (json_int_t) os.delivered,
                                             "failedAttempts", (json_int_t) os.failed_attempts,
                                             "expired", (json_int_t) os.expired,
                                             "dropped", (json_int_t) os.dropped,
                                             "inFlight", os.in_flight)) < 0 ? -ENOMEM : 0;
}

static int method_server_get_stats(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        _cleanup_(json_decrefp) json_t *methods = json_object(), *classes = json_object(), *tables = json_object(),
                                       *keys = json_array(), *rate_limited = json_object(), *result = NULL;
        RateLimitStats rs = {};
        JwtCacheStats js;
        char **kids;
        StoreStats ss = {};
        uint64_t purges = 0;
        WorkersStats ws;
        void *ud[2] = { m, methods };
        int r;

        if (!methods || !classes || !tables || !keys || !rate_limited)
                return -ENOMEM;

        rpc_foreach_method(add_method_stats, ud);
        if (m->ratelimit)
                ratelimit_stats(m->ratelimit, &rs);
        for (MethodClass c = 0; c < _METHOD_CLASS_MAX; c++) {
                const RateLimitClassConfig *cc = &m->config->ratelimit[c];

                (void) json_object_set_new(classes, method_class_to_string(c),
                                           json_pack("{s:I, s:I, s:I, s:I, s:{s:f, s:I, s:I}}",
                                                     "inFlight", (json_int_t) m->class_in_flight[c],
                                                     "inFlightMax", (json_int_t) m->class_in_flight_max[c],
                                                     "rateLimited", (json_int_t) rs.rejected_rate[c],
                                                     "concurrencyLimited", (json_int_t) rs.rejected_busy[c],
                                                     "limits",
                                                     "rate", cc->rate,
                                                     "burst", (json_int_t) cc->burst,
                                                     "concurrency", (json_int_t) cc->concurrency));
                (void) json_object_set_new(rate_limited, method_class_to_string(c),
                                           json_integer((json_int_t) (rs.rejected_rate[c] + rs.rejected_busy[c])));
        }

        r = store_stats(m->store, &ss);
        if (r < 0)
                return r;
        if (!ss.unreachable) {
                _cleanup_(store_txn_freep) StoreTxn *t = NULL;

                r = store_read(m->store, &t);
                if (r >= 0)
                        r = customer_purges_pending(t, &purges);
                if (r == -ENOTCONN || r == -ETIMEDOUT)
                        ss.unreachable = true;  /* it went away meanwhile */
                else if (r < 0)
                        return r;
        }
        for (StoreTable t = 0; t < _STORE_TABLE_MAX; t++)
                (void) json_object_set_new(tables, store_table_to_string(t), json_integer((json_int_t) ss.entries[t]));

        workers_stats(m->workers, &ws);
        kids = keyring_kids(m->keyring);
        for (size_t i = 0; kids && kids[i]; i++)
                (void) json_array_append_new(keys, json_string(kids[i]));

        result = json_pack(
                "{s:s, s:I, s:{s:I, s:I, s:I}, s:O, s:O, s:I, s:{s:I, s:I, s:I, s:I, s:O, s:I, s:I, s:i, s:I}, "
                "s:{s:i, s:i, s:I, s:I, s:I, s:I, s:s}, s:{s:s?, s:O}}",
                "version", IDM_VERSION,
                "uptime", (json_int_t) ((now_monotonic_usec() - m->start_monotonic_usec) / 1000000ULL),
                "connections",
                "current", (json_int_t) m->n_connections,
                "accepted", (json_int_t) m->connections_accepted,
                "refused", (json_int_t) m->connections_refused,
                "methods", methods,
                "classes", classes,
                "parseErrors", (json_int_t) m->parse_errors,
                "store",
                "mapSize", (json_int_t) ss.map_size,
                "usedBytes", (json_int_t) ss.used_bytes,
                "fileBytes", (json_int_t) ss.file_bytes,
                "grown", (json_int_t) ss.grow_count,
                "entries", tables,
                "batches", (json_int_t) ss.batches,
                "batchedUnits", (json_int_t) ss.batched_units,
                "queued", (int) ss.queued,
                "purgesPending", (json_int_t) purges,
                "workers",
                "queued", (int) ws.queued,
                "running", (int) ws.running,
                "completed", (json_int_t) ws.completed,
                "cancelled", (json_int_t) ws.cancelled,
                "memoryHeld", (json_int_t) password_memory_held(),
                "memoryBound", (json_int_t) (m->config->workers * m->config->argon2_memlimit),
                "engine", password_engine_to_string(password_engine()),
                "keys",
                "active", keyring_active_kid(m->keyring),
                "verifying", keys);
        if (!result)
                return -ENOMEM;
        /* Where the store is, and whether it can be reached (PostgreSQL; LMDB always can). */
        {
                json_t *store = json_object_get(result, "store");

                (void) json_object_set_new(store, "backend", json_string(ss.postgresql ? "postgresql" : "lmdb"));
                (void) json_object_set_new(store, "reachable", json_boolean(!ss.unreachable));
                (void) json_object_set_new(store, "conflictReruns", json_integer((json_int_t) ss.conflict_reruns));
                (void) json_object_set_new(store, "entriesEstimated", json_boolean(ss.entries_estimated));
        }
        /* Rate limits and lockouts (docs/ratelimits.md). */
        (void) json_object_set(result, "rateLimited", rate_limited);
        (void) json_object_set_new(result, "rateLimitSources",
                                   json_pack("{s:I, s:I, s:I}", "current", (json_int_t) rs.sources,
                                             "capacity", (json_int_t) rs.max_sources,
                                             "evicted", (json_int_t) rs.evicted));
        (void) json_object_set_new(result, "lockouts", json_integer((json_int_t) m->lockouts));
        jwt_cache_stats(m->keyring, &js);
        (void) json_object_set_new(result, "jwtCache",
                                   json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "entries", (json_int_t) js.entries,
                                             "capacity", (json_int_t) js.capacity, "hits", (json_int_t) js.hits,
                                             "misses", (json_int_t) js.misses, "evictions",
                                             (json_int_t) js.evictions, "flushes", (json_int_t) js.flushes));
        (void) json_object_set_new(result, "recordCache",
                                   json_pack("{s:I, s:I, s:I, s:I}", "entries", (json_int_t) ss.record_cache_entries,
                                             "bytes", (json_int_t) ss.record_cache_charged, "hits",
                                             (json_int_t) ss.record_cache_hits, "misses",
                                             (json_int_t) ss.record_cache_misses));
        /* The outbox is a table of the store: nothing to say of it while the store is away. */
        r = ss.unreachable ? 0 : add_outbox_stats(call, result);
        if (r < 0)
                return r;
        if (test_clock_enabled())
                (void) json_object_set_new(result, "testClock",
                                           json_pack("{s:I}", "offset",
                                                     (json_int_t) (test_clock_offset_usec() / 1000000ULL)));
        return call_reply(call, TAKE_PTR(result));
}

static json_t *test_clock_result(void) {
        char buf[32];

        return json_pack("{s:s, s:I}", "now", format_rfc3339(now_realtime_usec(), buf), "offset",
                         (json_int_t) (test_clock_offset_usec() / 1000000ULL));
}

/* Tests only (docs/rpc.md, "testAdvanceClock"): moves idmd's realtime clock forward by
 * params.seconds, never back; with params.sweep, the background sweep of expired tokens runs
 * right away (after the reply) instead of at its time. The monotonic clock (timeouts, rate
 * limits, the sweep's schedule) is not moved. */
static int method_server_test_advance_clock(Call *call, json_t *params) {
        json_t *seconds = json_object_get(params, "seconds"), *sweep = json_object_get(params, "sweep");
        json_int_t n;
        int r;

        /* The role is checked here, not by the dispatcher: without the switch, nobody must be
         * able to tell this method from one that does not exist. */
        if (!test_clock_enabled())
                return call_fail(call, IDM_RPC_METHOD_NOT_FOUND, IDM_REASON_UNKNOWN_METHOD, NULL, NULL);
        if (call_role(call) != ROLE_ADMIN)
                return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                        "this method needs an administrator (root or the admin group)");

        if (!seconds)
                return call_fail_param(call, "seconds", "missing parameter 'seconds'");
        if (!json_is_integer(seconds))
                return call_fail_param(call, "seconds", "parameter 'seconds' must be an integer");
        n = json_integer_value(seconds);
        if (n < 0)
                return call_fail_param(call, "seconds", "the clock only moves forward");
        if (sweep && !json_is_boolean(sweep))
                return call_fail_param(call, "sweep", "parameter 'sweep' must be a boolean");

        r = (uint64_t) n > TEST_CLOCK_MAX_OFFSET_USEC / 1000000ULL ? -ERANGE
                                                                   : test_clock_advance((uint64_t) n * 1000000ULL);
        if (r == -ERANGE)
                return call_fail_param(call, "seconds", "the clock would be more than 100 years ahead");
        if (r < 0)
                return r;
        log_notice("%s: test clock advanced by %lld s, now %llu s ahead.", call_request_id(call), (long long) n,
                   (unsigned long long) (test_clock_offset_usec() / 1000000ULL));

        if (json_is_true(sweep)) {
                r = manager_sweep_soon(call_manager(call));
                if (r < 0)
                        return r;
        }
        return call_reply(call, test_clock_result());
}

/* backup {path}: a directory laid out as a state directory: data.mdb, a consistent compacted copy
 * of the store taken while idmd serves (LMDB's copy, in a read snapshot), and keys/ with every
 * signing key. Restoring is copying both into an empty state directory with idmd stopped
 * (docs/operations.md). The copy runs on the event loop: other requests wait for it. */
static int method_server_backup(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        const char *path = json_object_get_string(params, "path");
        _cleanup_free_ char *data = NULL, *keys = NULL;
        struct stat st;
        int r, n;

        if (path[0] != '/')
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "path"), "path must be absolute");
        if (store_waits(m->store))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_NOT_SUPPORTED, NULL,
                                 "the store is in PostgreSQL: back it up with pg_dump (docs/operations.md)");
        if (mkdir(path, 0700) < 0) {
                r = -errno;
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "path"),
                                 "cannot create the backup directory (it must not exist; its parent must): %s",
                                 strerror(-r));
        }
        if (asprintf(&data, "%s/data.mdb", path) < 0 || asprintf(&keys, "%s/keys", path) < 0)
                return -ENOMEM;
        r = store_backup(m->store, data);
        if (r >= 0)
                r = n = keyring_save_to(m->keyring, keys);
        if (r < 0) {
                (void) unlink(data);
                (void) rmdir(path);     /* fails when keys/ holds files: then it is left for a look */
                log_error_errno(r, "%s: backup to %s failed: %m", call_request_id(call), path);
                return call_fail(call, IDM_RPC_INTERNAL_ERROR, IDM_REASON_INTERNAL, json_pack("{s:s}", "path", path),
                                 "the backup failed: %s", strerror(-r));
        }
        if (stat(data, &st) < 0)
                st.st_size = 0;
        log_struct(LOG_LEVEL_NOTICE, IDM_MESSAGE_BACKUP_WRITTEN, "%s: backup written to %s by uid %u (%lld bytes, %d key(s))", call_request_id(call), path,
                   (unsigned) call_peer(call)->uid, (long long) st.st_size, n);
        return call_reply(call, json_pack("{s:s, s:I, s:i}", "path", path, "bytes", (json_int_t) st.st_size,
                                          "keys", n));
}

const Method methods_server[] = {
        { .name = IDM_METHOD_GET_SERVER_INFO, .handler = method_server_get_info, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) { {} } },
        { .name = IDM_METHOD_GET_STATS, .handler = method_server_get_stats, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { {} } },
        { .name = "backup", .handler = method_server_backup, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { { "path", PARAM_STRING, true, 4096 }, {} } },
        /* Without --test-clock it does not exist (rpc.c); the handler checks again. */
        { .name = TEST_METHOD_ADVANCE_CLOCK, .handler = method_server_test_advance_clock, .role = ROLE_ADMIN,
          .test_only = true,
          .params = (const ParamSpec[]) { { "seconds", PARAM_INTEGER, true }, { "sweep", PARAM_BOOLEAN }, {} },
          .positional = (const char *const[]) { "seconds", "sweep", NULL } },
        {}
};
