/* SPDX-License-Identifier: MIT */
/*
 * idmctl metrics: getStats as OpenMetrics text (the format node_exporter's textfile collector and
 * Prometheus read). Every name starts with "idm_"; counters end in "_total"; the request latency
 * histogram is cumulative with the buckets idmd counts in (1 ms to 64 s, powers of 4), its count
 * in the +Inf bucket (idmd keeps no sum of durations, and OpenMetrics allows _count only with a
 * _sum). Label
 * values (method and table names) come from idmd and are escaped as the format asks. The output
 * ends with "# EOF". Admin only, like getStats.
 */
#include <stdio.h>
#include <string.h>

#include "idm/json-util.h"
#include "idmctl.h"

/* idmd's latency buckets (getStats methods.*.latency) and their upper bounds in seconds. */
static const struct {
        const char *name;
        const char *le;
} buckets[] = {
        { "<1ms", "0.001" }, { "<4ms", "0.004" }, { "<16ms", "0.016" }, { "<64ms", "0.064" },
        { "<256ms", "0.256" }, { "<1s", "1.0" }, { "<4s", "4.0" }, { "<16s", "16.0" }, { "<64s", "64.0" },
        { ">=64s", "+Inf" },
};

/* A label value as OpenMetrics wants it: '\\', '"' and newlines escaped. */
static void print_label(const char *s) {
        for (; s && *s; s++)
                if (*s == '\\' || *s == '"')
                        (void) printf("\\%c", *s);
                else if (*s == '\n')
                        (void) fputs("\\n", stdout);
                else
                        (void) putchar(*s);
}

static json_int_t integer(const json_t *o, const char *path1, const char *path2) {
        const json_t *v = json_object_get(o, path1);

        if (path2)
                v = json_object_get(v, path2);
        return json_is_integer(v) ? json_integer_value(v) : 0;
}

static void family(const char *name, const char *type, const char *help) {
        (void) printf("# TYPE %s %s\n# HELP %s %s\n", name, type, name, help);
}

static void sample(const char *name, json_int_t value) {
        (void) printf("%s %" JSON_INTEGER_FORMAT "\n", name, value);
}

/* name{label="value"} value, for each member of object: value(member) picks the number. */
static void labelled(const char *name, const char *label, const json_t *object, const char *field,
                     const char *field2) {
        const char *key;
        json_t *v;

        json_object_foreach((json_t *) object, key, v) {
                (void) printf("%s{%s=\"", name, label);
                print_label(key);
                (void) printf("\"} %" JSON_INTEGER_FORMAT "\n",
                              field ? integer(v, field, field2) : (json_is_integer(v) ? json_integer_value(v) : 0));
        }
}

static void print_requests(const json_t *methods) {
        const char *method;
        json_t *m;

        family("idm_requests", "counter", "Requests answered, per method.");
        labelled("idm_requests_total", "method", methods, "calls", NULL);
        family("idm_request_errors", "counter", "Requests answered with an error, per method.");
        labelled("idm_request_errors_total", "method", methods, "errors", NULL);

        family("idm_request_duration_seconds", "histogram", "Time from a request to its reply, per method.");
        json_object_foreach((json_t *) methods, method, m) {
                const json_t *latency = json_object_get(m, "latency");
                json_int_t cumulative = 0;

                for (size_t i = 0; i < ELEMENTSOF(buckets); i++) {
                        cumulative += integer(latency, buckets[i].name, NULL);
                        (void) fputs("idm_request_duration_seconds_bucket{method=\"", stdout);
                        print_label(method);
                        (void) printf("\",le=\"%s\"} %" JSON_INTEGER_FORMAT "\n", buckets[i].le, cumulative);
                }
        }
}

static void print_metrics(const json_t *s) {
        const json_t *outbox = json_object_get(s, "outbox");

        family("idm_uptime_seconds", "gauge", "Seconds since idmd started.");
        sample("idm_uptime_seconds", integer(s, "uptime", NULL));
        family("idm_connections", "gauge", "Client connections open now.");
        sample("idm_connections", integer(s, "connections", "current"));
        family("idm_connections_accepted", "counter", "Client connections accepted.");
        sample("idm_connections_accepted_total", integer(s, "connections", "accepted"));
        family("idm_connections_refused", "counter", "Client connections refused (limits).");
        sample("idm_connections_refused_total", integer(s, "connections", "refused"));
        family("idm_parse_errors", "counter", "Request lines that were not JSON.");
        sample("idm_parse_errors_total", integer(s, "parseErrors", NULL));

        print_requests(json_object_get(s, "methods"));

        family("idm_rate_limited", "counter", "Requests refused by the rate limit, per class.");
        labelled("idm_rate_limited_total", "class", json_object_get(s, "classes"), "rateLimited", NULL);
        family("idm_concurrency_limited", "counter", "Requests refused by the concurrency limit, per class.");
        labelled("idm_concurrency_limited_total", "class", json_object_get(s, "classes"), "concurrencyLimited",
                 NULL);
        family("idm_in_flight", "gauge", "Requests being worked on, per class.");
        labelled("idm_in_flight", "class", json_object_get(s, "classes"), "inFlight", NULL);
        family("idm_lockouts", "counter", "Accounts locked after failed logins.");
        sample("idm_lockouts_total", integer(s, "lockouts", NULL));

        family("idm_store_map_bytes", "gauge", "Size of the store's memory map.");
        sample("idm_store_map_bytes", integer(s, "store", "mapSize"));
        family("idm_store_used_bytes", "gauge", "Bytes of the store in use.");
        sample("idm_store_used_bytes", integer(s, "store", "usedBytes"));
        family("idm_store_entries", "gauge", "Records per table (tokens: sessions and one-time tokens; "
               "estimates when idm_store_entries_estimated is 1).");
        labelled("idm_store_entries", "table", json_object_get(json_object_get(s, "store"), "entries"), NULL, NULL);
        family("idm_store_purges_pending", "gauge", "Deleted customers whose leftover records are still being purged.");
        sample("idm_store_purges_pending", integer(s, "store", "purgesPending"));
        family("idm_store_conflict_reruns", "counter",
               "Units of work run again after a conflict with another (PostgreSQL's serializable transactions).");
        sample("idm_store_conflict_reruns_total", integer(s, "store", "conflictReruns"));
        family("idm_store_entries_estimated", "gauge",
               "1 while idm_store_entries are the planner's estimates (a PostgreSQL table of more than 100,000 records).");
        sample("idm_store_entries_estimated",
               json_is_true(json_object_get(json_object_get(s, "store"), "entriesEstimated")) ? 1 : 0);
        family("idm_store_reachable", "gauge", "1 while the store can be reached (0: a PostgreSQL store that cannot).");
        sample("idm_store_reachable", json_is_false(json_object_get(json_object_get(s, "store"), "reachable")) ? 0 : 1);

        family("idm_workers_queued", "gauge", "Password hashes waiting for a worker.");
        sample("idm_workers_queued", integer(s, "workers", "queued"));
        family("idm_workers_memory_bytes", "gauge", "Argon2 memory the hashing threads keep between hashes.");
        sample("idm_workers_memory_bytes", integer(s, "workers", "memoryHeld"));

        family("idm_outbox_depth", "gauge", "Mail messages waiting in the outbox.");
        sample("idm_outbox_depth", integer(outbox, "depth", NULL));
        family("idm_outbox_oldest_age_seconds", "gauge", "Age of the oldest message in the outbox (0: none).");
        sample("idm_outbox_oldest_age_seconds", integer(outbox, "oldestAge", NULL));
        family("idm_outbox_delivered", "counter", "Mail messages handed to the mail command.");
        sample("idm_outbox_delivered_total", integer(outbox, "delivered", NULL));
        family("idm_outbox_failed_attempts", "counter", "Deliveries the mail command failed.");
        sample("idm_outbox_failed_attempts_total", integer(outbox, "failedAttempts", NULL));
        family("idm_outbox_expired", "counter", "Mail messages dropped for their age.");
        sample("idm_outbox_expired_total", integer(outbox, "expired", NULL));
        (void) puts("# EOF");
}

int verb_metrics(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *stats = NULL;
        int r;

        r = ctx_call_or_print_json(ctx, "getStats", NULL, &stats);
        if (r <= 0)
                return r;
        print_metrics(stats);
        return 0;
}
