/* SPDX-License-Identifier: MIT */
/*
 * idmctl status: is the daemon up, what it runs, and how it is doing (getServerInfo + getStats).
 * A caller who is not an admin sees the first part and which group would see the rest.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "idmctl.h"

#define LABEL_WIDTH 16

static void print_server_info(Context *ctx, const json_t *info) {
        char buf[256];

        (void) snprintf(buf, sizeof(buf), "up, on %s", ctx->socket_path);
        print_field(LABEL_WIDTH, "Daemon:", buf);
        json_int_t protocol = json_integer_value(json_object_get(info, "protocolVersion"));
        int n;

        n = snprintf(buf, sizeof(buf), "%s (protocol %" JSON_INTEGER_FORMAT,
                     strempty(json_object_get_string(info, "version")), protocol);
        if (n > 0 && (size_t) n < sizeof(buf)) {
                if (protocol == IDM_PROTOCOL_VERSION)
                        (void) snprintf(buf + n, sizeof(buf) - (size_t) n, ")");
                else
                        (void) snprintf(buf + n, sizeof(buf) - (size_t) n, "; idmctl speaks protocol %d)",
                                        IDM_PROTOCOL_VERSION);
        }
        print_field(LABEL_WIDTH, "Version:", buf);
        if (json_object_get_string(info, "role"))
                print_field(LABEL_WIDTH, "Your role:", json_object_get_string(info, "role"));
        if (json_is_array(json_object_get(info, "methods"))) {
                (void) snprintf(buf, sizeof(buf), "%zu", json_array_size(json_object_get(info, "methods")));
                print_field(LABEL_WIDTH, "Methods:", buf);
        }
}

static void print_request_totals(const json_t *stats) {
        const json_t *methods = json_object_get(stats, "methods");
        uint64_t calls = 0, errors = 0;
        const char *k;
        json_t *v;
        char buf[128];

        json_object_foreach((json_t *) methods, k, v) {
                calls += json_get_u64(v, "calls");
                errors += json_get_u64(v, "errors");
        }
        (void) snprintf(buf, sizeof(buf), "%" PRIu64 " calls, %" PRIu64 " errors, %" PRIu64 " parse errors", calls,
                        errors, json_get_u64(stats, "parseErrors"));
        print_field(LABEL_WIDTH, "Requests:", buf);
}

static void print_store(const json_t *store) {
        const json_t *entries = json_object_get(store, "entries");
        char map[SIZE_MAX_STR], used[SIZE_MAX_STR], file[SIZE_MAX_STR], buf[160];
        size_t width = 0;
        const char *k;
        json_t *v;
        bool first = true;

        if (streq_ptr(json_string_value(json_object_get(store, "backend")), "postgresql")) {
                if (json_is_false(json_object_get(store, "reachable"))) {
                        print_field(LABEL_WIDTH, "Store:", "PostgreSQL, CANNOT BE REACHED: requests that need it "
                                                           "are answered 503 store_unavailable");
                        return;
                }
                (void) snprintf(buf, sizeof(buf), "PostgreSQL, reachable, database %s",
                                format_bytes(json_get_u64(store, "fileBytes"), file));
                print_field(LABEL_WIDTH, "Store:", buf);
        } else {
                (void) snprintf(buf, sizeof(buf), "map %s, used %s, file %s (map grown %" PRIu64 " times)",
                                format_bytes(json_get_u64(store, "mapSize"), map),
                                format_bytes(json_get_u64(store, "usedBytes"), used),
                                format_bytes(json_get_u64(store, "fileBytes"), file), json_get_u64(store, "grown"));
                print_field(LABEL_WIDTH, "Store:", buf);
        }

        json_object_foreach((json_t *) entries, k, v)
                if (strlen(k) > width)
                        width = strlen(k);
        json_object_foreach((json_t *) entries, k, v) {
                (void) snprintf(buf, sizeof(buf), "%-*s %" PRIu64, (int) width + 1, k,
                                json_get_u64(entries, k));
                print_field(LABEL_WIDTH, first ? "Store entries:" : "", buf);
                first = false;
        }
}

static void print_keys(const json_t *keys) {
        const json_t *verifying = json_object_get(keys, "verifying");
        const char *active = json_object_get_string(keys, "active");
        size_t i;
        json_t *v;
        char buf[160];

        (void) snprintf(buf, sizeof(buf), "active    %s", active ?: "(none)");
        print_field(LABEL_WIDTH, "Signing keys:", buf);
        json_array_foreach((json_t *) verifying, i, v) {
                (void) snprintf(buf, sizeof(buf), "%s %s", i == 0 ? "verifying" : "         ",
                                strempty(json_string_value(v)));
                print_field(LABEL_WIDTH, "", buf);
        }
}

static void print_stats(const json_t *stats) {
        const json_t *conns = json_object_get(stats, "connections");
        const json_t *workers = json_object_get(stats, "workers");
        const json_t *outbox = json_object_get(stats, "outbox");
        char buf[160], dur[DURATION_MAX];

        print_field(LABEL_WIDTH, "Uptime:", format_duration(json_get_u64(stats, "uptime"), dur));
        (void) snprintf(buf, sizeof(buf), "%" PRIu64 " current, %" PRIu64 " accepted, %" PRIu64 " refused",
                        json_get_u64(conns, "current"), json_get_u64(conns, "accepted"),
                        json_get_u64(conns, "refused"));
        print_field(LABEL_WIDTH, "Connections:", buf);
        print_request_totals(stats);
        print_store(json_object_get(stats, "store"));
        print_keys(json_object_get(stats, "keys"));
        (void) snprintf(buf, sizeof(buf), "%" PRIu64 " queued, %" PRIu64 " running",
                        json_get_u64(workers, "queued"), json_get_u64(workers, "running"));
        print_field(LABEL_WIDTH, "Worker queue:", buf);
        /* The mail outbox (a daemon without one says nothing): depth and the oldest message's age. */
        if (json_is_integer(json_object_get(outbox, "depth"))) {
                int n = snprintf(buf, sizeof(buf), "%" PRIu64 " queued", json_get_u64(outbox, "depth"));

                if (n > 0 && (size_t) n < sizeof(buf) && json_is_integer(json_object_get(outbox, "oldestAge")))
                        (void) snprintf(buf + n, sizeof(buf) - (size_t) n, ", oldest %s",
                                        format_duration(json_get_u64(outbox, "oldestAge"), dur));
                print_field(LABEL_WIDTH, "Outbox:", buf);
                (void) snprintf(buf, sizeof(buf), "%" PRIu64 " delivered, %" PRIu64 " failed attempts, %" PRIu64
                                " expired, %" PRIu64 " dropped since start",
                                json_get_u64(outbox, "delivered"), json_get_u64(outbox, "failedAttempts"),
                                json_get_u64(outbox, "expired"), json_get_u64(outbox, "dropped"));
                print_field(LABEL_WIDTH, "", buf);
        }
}

/* For a caller who is not an admin, instead of the statistics: who may see them. */
static void print_admins_only(const json_t *info) {
        const json_t *group = json_object_get(info, "adminGroup");
        _cleanup_free_ char *buf = NULL;

        if (json_is_string(group)) {
                if (asprintf(&buf, "for administrators only: root and the members of group '%s'",
                             json_string_value(group)) < 0)
                        buf = NULL;
        } else if (json_is_null(group))
                buf = strdup("for administrators only: root (idmd's admin_group is off or does not exist)");
        else    /* an older daemon, which does not say */
                buf = strdup("for administrators only: root and the daemon's admin_group");
        print_field(LABEL_WIDTH, "Statistics:", buf ?: "for administrators only");
}

int verb_status(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *info = NULL, *stats = NULL, *both = NULL;
        const char *role;
        int r;

        r = ctx_call(ctx, IDM_METHOD_GET_SERVER_INFO, NULL, &info);
        if (r < 0)
                return r;
        if (!ctx->json)
                print_server_info(ctx, info);

        /* getStats is for admins: anyone else gets what getServerInfo says, and whom to ask for
         * more. A daemon that does not report the role is asked all the same. */
        role = json_object_get_string(info, "role");
        if (role && !streq(role, "admin")) {
                if (!ctx->json) {
                        print_admins_only(info);
                        return 0;
                }
                both = json_pack("{s:O}", "serverInfo", info);
                if (!both || print_json(both) < 0)
                        return log_oom();
                return 0;
        }

        r = ctx_call(ctx, IDM_METHOD_GET_STATS, NULL, &stats);
        if (r < 0)
                return r;

        if (ctx->json) {
                both = json_pack("{s:O, s:O}", "serverInfo", info, "stats", stats);
                if (!both || print_json(both) < 0)
                        return log_oom();
                return 0;
        }
        print_stats(stats);
        return 0;
}
