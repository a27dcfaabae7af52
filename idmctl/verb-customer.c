/* SPDX-License-Identifier: MIT */
/*
 * idmctl customer show|unlock: a customer's failed logins and lockout (getCustomerLockout) and
 * clearing them (unlockCustomer). The customer is named by e-mail or customerId within the
 * publisher given with --publisher (admin peers name any publisher).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

#define LABEL_WIDTH 16

static bool is_customer_id(const char *s) {
        if (!s[0])
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* {publisherId, email|customerId} for the command line, or an exit status. */
static int customer_params(Context *ctx, const char *who, json_t **ret) {
        json_t *params;

        if (!ctx->publisher_id)
                return usage_error(ctx, "--publisher ID is required");
        params = json_pack("{s:s, s:s}", "publisherId", ctx->publisher_id,
                           is_customer_id(who) ? "customerId" : "email", who);
        if (!params)
                return log_oom();
        *ret = params;
        return 0;
}

int verb_customer_show(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        char buf[DURATION_MAX + 64], duration[DURATION_MAX];
        int r;

        r = customer_params(ctx, argv[0], &params);
        if (r != 0)
                return r;
        r = ctx_call_or_print_json(ctx, "getCustomerLockout", params, &result);
        if (r <= 0)
                return r;

        print_field(LABEL_WIDTH, "E-mail:", json_object_get_string(result, "email"));
        print_field(LABEL_WIDTH, "Customer ID:",
                    json_object_get_string(result, "customerId") ?: "- (no account)");
        if (json_is_true(json_object_get(result, "locked"))) {
                (void) snprintf(buf, sizeof(buf), "yes, until %s (%s more)",
                                strempty(json_object_get_string(result, "lockedUntil")),
                                format_duration(json_get_u64(result, "retryAfter"), duration));
                print_field(LABEL_WIDTH, "Locked:", buf);
        } else
                print_field(LABEL_WIDTH, "Locked:", "no");
        (void) snprintf(buf, sizeof(buf), "%llu", (unsigned long long) json_get_u64(result, "failures"));
        print_field(LABEL_WIDTH, "Failed logins:", buf);
        (void) snprintf(buf, sizeof(buf), "%llu", (unsigned long long) json_get_u64(result, "lockCount"));
        print_field(LABEL_WIDTH, "Recent locks:", buf);
        print_field(LABEL_WIDTH, "Next lock lasts:",
                    format_duration(json_get_u64(result, "nextLockSeconds"), duration));
        return 0;
}

int verb_customer_unlock(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_free_ char *who = NULL;
        int r;

        r = customer_params(ctx, argv[0], &params);
        if (r != 0)
                return r;
        r = ctx_call_or_print_json(ctx, "unlockCustomer", params, &result);
        if (r <= 0)
                return r;
        who = text_sanitize(argv[0]);
        if (!who)
                return log_oom();
        (void) printf("Lockout of %s cleared.\n", who);
        return 0;
}
