/* SPDX-License-Identifier: MIT */
/*
 * Methods about the server itself: getServerInfo (anyone) and getStats (admin).
 */
#include "config-build.h"
#include "connection.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "manager.h"
#include "methods/methods.h"
#include "tokens.h"
#include "workers.h"

static const char *const role_names[_ROLE_MAX] = {
        [ROLE_ANYONE] = "anyone",
        [ROLE_CUSTOMER] = "customer",
        [ROLE_PUBLISHER] = "publisher",
        [ROLE_ADMIN] = "admin",
};

static void add_method_name(const Method *m, size_t index, void *userdata) {
        (void) json_array_append_new(userdata, json_string(m->name));
}

static int method_server_get_info(Call *call, json_t *params) {
        json_t *methods = json_array();

        if (!methods)
                return -ENOMEM;
        rpc_foreach_method(add_method_name, methods);
        return call_reply(call, json_pack("{s:s, s:i, s:o, s:s}",
                                          "version", IDM_VERSION,
                                          "protocolVersion", IDM_PROTOCOL_VERSION,
                                          "methods", methods,
                                          "role", role_names[call_role(call)]));
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

static int method_server_get_stats(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        _cleanup_(json_decrefp) json_t *methods = json_object(), *classes = json_object(), *tables = json_object(),
                                       *keys = json_array(), *rate_limited = json_object(), *result = NULL;
        RateLimitStats rs = {};
        char **kids;
        StoreStats ss = {};
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
        for (StoreTable t = 0; t < _STORE_TABLE_MAX; t++)
                (void) json_object_set_new(tables, store_table_to_string(t), json_integer((json_int_t) ss.entries[t]));

        workers_stats(m->workers, &ws);
        kids = keyring_kids(m->keyring);
        for (size_t i = 0; kids && kids[i]; i++)
                (void) json_array_append_new(keys, json_string(kids[i]));

        result = json_pack(
                "{s:s, s:I, s:{s:I, s:I, s:I}, s:O, s:O, s:I, s:{s:I, s:I, s:I, s:I, s:O, s:I, s:I, s:i}, "
                "s:{s:i, s:i, s:I, s:I}, s:{s:s?, s:O}}",
                "version", IDM_VERSION,
                "uptime", (json_int_t) ((now_realtime_usec() - m->start_realtime_usec) / 1000000ULL),
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
                "workers",
                "queued", (int) ws.queued,
                "running", (int) ws.running,
                "completed", (json_int_t) ws.completed,
                "cancelled", (json_int_t) ws.cancelled,
                "keys",
                "active", keyring_active_kid(m->keyring),
                "verifying", keys);
        if (!result)
                return -ENOMEM;
        /* Rate limits and lockouts (docs/ratelimits.md). */
        (void) json_object_set(result, "rateLimited", rate_limited);
        (void) json_object_set_new(result, "rateLimitSources",
                                   json_pack("{s:I, s:I, s:I}", "current", (json_int_t) rs.sources,
                                             "capacity", (json_int_t) rs.max_sources,
                                             "evicted", (json_int_t) rs.evicted));
        (void) json_object_set_new(result, "lockouts", json_integer((json_int_t) m->lockouts));
        return call_reply(call, TAKE_PTR(result));
}

const Method methods_server[] = {
        { .name = IDM_METHOD_GET_SERVER_INFO, .handler = method_server_get_info, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) { {} } },
        { .name = IDM_METHOD_GET_STATS, .handler = method_server_get_stats, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { {} } },
        {}
};
