/* SPDX-License-Identifier: MIT */
/*
 * idmctl outbox list|retry|drop: the mail waiting in idmd's outbox (listOutbox: recipient, kind,
 * attempts, the last error; never the message itself), making messages due now (retryOutbox) and
 * dropping one undelivered (dropOutbox). Admin only, like the methods.
 */
#include <errno.h>
#include <stdio.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

#define LIST_LIMIT 1000

int verb_outbox_list(Context *ctx, int argc, char **argv) {
        static const char *const headers[] = { "ID", "TO", "KIND", "PUBLISHER", "CREATED", "ATTEMPTS",
                                               "NEXT ATTEMPT", "LAST ERROR" };
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        json_t *items, *m;
        size_t i;
        int r;

        params = json_pack("{s:i}", "limit", LIST_LIMIT);
        if (!params)
                return log_oom();
        r = ctx_call_or_print_json(ctx, "listOutbox", params, &result);
        if (r <= 0)
                return r;
        items = json_object_get(result, "items");
        if (json_array_size(items) == 0) {
                (void) puts("The outbox is empty.");
                return 0;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        if (!t)
                return log_oom();
        json_array_foreach(items, i, m) {
                char attempts[32];

                (void) snprintf(attempts, sizeof(attempts), "%llu", (unsigned long long) json_get_u64(m, "attempts"));
                if (table_add_cell(t, json_object_get_string(m, "id")) < 0 ||
                    table_add_cell(t, json_object_get_string(m, "to")) < 0 ||
                    table_add_cell(t, json_object_get_string(m, "kind")) < 0 ||
                    table_add_cell(t, json_object_get_string(m, "publisherId")) < 0 ||
                    table_add_cell(t, json_object_get_string(m, "created")) < 0 ||
                    table_add_cell(t, attempts) < 0 ||
                    table_add_cell(t, json_object_get_string(m, "nextAttempt")) < 0 ||
                    table_add_cell(t, json_object_get_string(m, "lastError")) < 0)
                        return log_oom();
        }
        if (table_print(t, stdout) < 0)
                return log_oom();
        if (json_is_string(json_object_get(result, "cursor")))
                (void) printf("(the first %d messages; more are queued: idmctl call listOutbox "
                              "'{\"cursor\": \"%s\"}' shows the next)\n",
                              LIST_LIMIT, json_object_get_string(result, "cursor"));
        return 0;
}

int verb_outbox_retry(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        int r;

        params = argc > 0 ? json_pack("{s:s}", "id", argv[0]) : json_object();
        if (!params)
                return log_oom();
        r = ctx_call_or_print_json(ctx, "retryOutbox", params, &result);
        if (r <= 0)
                return r;
        (void) printf("%llu message(s) due now.\n", (unsigned long long) json_get_u64(result, "retried"));
        return 0;
}

int verb_outbox_drop(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_free_ char *id = NULL;
        int r;

        params = json_pack("{s:s}", "id", argv[0]);
        if (!params)
                return log_oom();
        r = ctx_call_or_print_json(ctx, "dropOutbox", params, &result);
        if (r <= 0)
                return r;
        id = text_sanitize(argv[0]);
        if (!id)
                return log_oom();
        (void) printf("Message %s dropped undelivered.\n", id);
        return 0;
}
