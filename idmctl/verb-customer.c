/* SPDX-License-Identifier: MIT */
/*
 * idmctl customer list|show|export|delete|disable|enable|unlock|unix: a publisher's customers
 * (listCustomers), one customer's profile and lockout (getCustomer, getCustomerLockout), its
 * export (exportCustomer), deleting it (deleteCustomer), disabling or enabling it
 * (setCustomerDisabled), clearing its lockout (unlockCustomer) and making it a Unix user or not
 * (setCustomerUnix). The customer is named by
 * e-mail or customerId within the publisher given with --publisher (admin peers name any
 * publisher).
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

/* {publisherId|publisherToken, email|customerId} for the command line, or an exit status. */
static int customer_params(Context *ctx, const char *who, json_t **ret) {
        json_t *params = NULL;
        int r;

        r = ctx_publisher_params(ctx, &params);
        if (r != 0)
                return r;
        if (json_object_set_new(params, is_customer_id(who) ? "customerId" : "email", json_string(who)) < 0) {
                json_decref(params);
                return log_oom();
        }
        *ret = params;
        return 0;
}

/* Calls method for the customer whom names, with the members of extra (may be NULL) added. 0 with
 * *ret_who set (whom made safe to print) when the verb goes on to print the result as text; 0 with
 * *ret_who NULL when --json printed it; else an exit status or a reported error, as a verb returns. */
static int customer_call(Context *ctx, const char *whom, const char *method, json_t *extra, json_t **ret_result,
                         char **ret_who) {
        _cleanup_(json_decrefp) json_t *params = NULL;
        int r;

        r = customer_params(ctx, whom, &params);
        if (r != 0)
                return r;
        if (extra && json_object_update(params, extra) < 0)
                return log_oom();
        r = ctx_call_or_print_json(ctx, method, params, ret_result);
        if (r <= 0)
                return r;
        *ret_who = text_sanitize(whom);
        if (!*ret_who)
                return log_oom();
        return 0;
}

int verb_customer_show(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL, *profile = NULL;
        char buf[DURATION_MAX + 64], duration[DURATION_MAX], ts[TIMESTAMP_MAX];
        int r;

        r = customer_params(ctx, argv[0], &params);
        if (r != 0)
                return r;
        r = ctx_call_or_print_json(ctx, "getCustomerLockout", params, &result);
        if (r <= 0)
                return r;
        /* The profile when there is an account (an e-mail without one still has a lockout
         * record to show). */
        if (json_object_get_string(result, "customerId")) {
                _cleanup_(json_decrefp) json_t *by_id = NULL;

                r = ctx_publisher_params(ctx, &by_id);
                if (r != 0)
                        return r;
                if (json_object_set(by_id, "customerId", json_object_get(result, "customerId")) < 0)
                        return log_oom();
                r = ctx_call(ctx, "getCustomer", by_id, &profile);
                if (r < 0)
                        return r;
        }

        print_field(LABEL_WIDTH, "E-mail:", json_object_get_string(result, "email"));
        print_field(LABEL_WIDTH, "Customer ID:",
                    json_object_get_string(result, "customerId") ?: "- (no account)");
        if (profile) {
                static const char *const fields[][2] = {
                        { "firstName", "First name:" }, { "lastName", "Last name:" }, { "country", "Country:" },
                        { "currency", "Currency:" }, { "locale", "Locale:" }, { "externalId", "External ID:" },
                        { "lastUserIP", "Last IP:" },
                };
                for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                        if (json_object_get_string(profile, fields[i][0]))
                                print_field(LABEL_WIDTH, fields[i][1], json_object_get_string(profile, fields[i][0]));
                print_field(LABEL_WIDTH, "Registered:", format_json_timestamp(profile, "registrationDate", ts));
                print_field(LABEL_WIDTH, "Last login:", format_json_timestamp(profile, "lastLoginDate", ts));
        }
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
        _cleanup_(json_decrefp) json_t *result = NULL;
        _cleanup_free_ char *who = NULL;
        int r;

        r = customer_call(ctx, argv[0], "unlockCustomer", NULL, &result, &who);
        if (r != 0 || !who)
                return r;
        (void) printf("Lockout of %s cleared.\n", who);
        return 0;
}

int verb_customer_list(Context *ctx, int argc, char **argv) {
        static const char *const headers[] = { "CUSTOMER ID", "E-MAIL", "NAME", "REGISTERED" };
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_(table_freep) Table *t = NULL;
        json_t *items, *c;
        size_t i;
        int r;

        r = ctx_publisher_params(ctx, &params);
        if (r != 0)
                return r;
        if (json_object_set_new(params, "limit", json_integer(1000)) < 0 ||
            (argc > 0 && json_object_set_new(params, "query", json_string(argv[0])) < 0))
                return log_oom();
        r = ctx_call_or_print_json(ctx, "listCustomers", params, &result);
        if (r <= 0)
                return r;
        items = json_object_get(result, "items");
        if (json_array_size(items) == 0) {
                (void) puts("No customers.");
                return 0;
        }
        t = table_new(ELEMENTSOF(headers), headers);
        if (!t)
                return log_oom();
        json_array_foreach(items, i, c) {
                _cleanup_free_ char *name = NULL;
                char ts[TIMESTAMP_MAX];

                if (asprintf(&name, "%s %s", strempty(json_object_get_string(c, "firstName")),
                             strempty(json_object_get_string(c, "lastName"))) < 0)
                        return log_oom();
                if (table_add_cell(t, json_object_get_string(c, "customerId")) < 0 ||
                    table_add_cell(t, json_object_get_string(c, "email")) < 0 ||
                    table_add_cell(t, name[0] == ' ' && name[1] == 0 ? "-" : name) < 0 ||
                    table_add_cell(t, format_json_timestamp(c, "registrationDate", ts)) < 0)
                        return log_oom();
        }
        if (table_print(t, stdout) < 0)
                return log_oom();
        if (json_object_get_string(result, "cursor"))
                (void) puts("(more: the first 1000 are shown; narrow the list with a QUERY)");
        return 0;
}

/* Prints the result as JSON whatever --json says: an export is a document for a person. */
int verb_customer_export(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_free_ char *text = NULL;
        int r;

        r = customer_params(ctx, argv[0], &params);
        if (r != 0)
                return r;
        r = ctx_call(ctx, "exportCustomer", params, &result);
        if (r < 0)
                return 1;
        text = json_dumps(result, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return log_oom();
        (void) puts(text);
        return 0;
}

int verb_customer_delete(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        _cleanup_free_ char *who = NULL;
        int r;

        r = customer_call(ctx, argv[0], "deleteCustomer", NULL, &result, &who);
        if (r != 0 || !who)
                return r;
        (void) printf("Customer %s deleted (%llu records).\n", who,
                      (unsigned long long) json_get_u64(result, "deletedRecords"));
        return 0;
}

static int set_disabled(Context *ctx, const char *whom, bool disabled) {
        _cleanup_(json_decrefp) json_t *extra = NULL, *result = NULL;
        _cleanup_free_ char *who = NULL;
        int r;

        extra = json_pack("{s:b}", "disabled", disabled);
        if (!extra)
                return log_oom();
        r = customer_call(ctx, whom, "setCustomerDisabled", extra, &result, &who);
        if (r != 0 || !who)
                return r;
        (void) printf("Customer %s %s.\n", who, disabled ? "disabled (its sessions ended)" : "enabled");
        return 0;
}

int verb_customer_disable(Context *ctx, int argc, char **argv) {
        return set_disabled(ctx, argv[0], true);
}

int verb_customer_enable(Context *ctx, int argc, char **argv) {
        return set_disabled(ctx, argv[0], false);
}

/* customer unix enable|disable WHO: the customer as a Unix user of the machines serving the
 * publisher's userdb ([userdb] in idmd.conf). */
int verb_customer_unix(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *extra = NULL, *result = NULL;
        _cleanup_free_ char *who = NULL;
        bool enable = streq(argv[0], "enable");
        json_t *uid;
        int r;

        if (!enable && !streq(argv[0], "disable")) {
                (void) log_error_errno(EINVAL, "customer unix: expected enable or disable, not '%s'", argv[0]);
                return 2;
        }
        extra = json_pack("{s:b}", "enabled", enable);
        if (!extra)
                return log_oom();
        r = customer_call(ctx, argv[1], "setCustomerUnix", extra, &result, &who);
        if (r != 0 || !who)
                return r;
        uid = json_object_get(result, "unixUid");
        if (!enable)
                (void) printf("Customer %s is no Unix user any more%s.\n", who,
                              json_is_integer(uid) ? " (its uid stays reserved)" : "");
        else if (json_is_true(json_object_get(result, "unixUser")))
                (void) printf("Customer %s is a Unix user, uid %lld.\n", who, (long long) json_integer_value(uid));
        else
                (void) printf("Customer %s has uid %lld, but its publisher's unixUsers is %s: not a Unix user yet.\n",
                              who, (long long) json_integer_value(uid),
                              strempty(json_object_get_string(result, "unixUsers")));
        return 0;
}

/* Starts the forgot-password flow for an address: idmd mails the account's link or code (and
 * answers alike whether or not the address has an account). */
int verb_customer_reset_password(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_free_ char *who = NULL;
        int r;

        if (is_customer_id(argv[0]))
                return usage_error(ctx, "reset-password takes the customer's e-mail address");
        r = ctx_publisher_params(ctx, &params);
        if (r != 0)
                return r;
        if (json_object_set_new(params, "customerEmail", json_string(argv[0])) < 0)
                return log_oom();
        r = ctx_call_or_print_json(ctx, "requestPasswordReset", params, &result);
        if (r <= 0)
                return r;
        who = text_sanitize(argv[0]);
        if (!who)
                return log_oom();
        (void) printf("Password reset requested for %s: if the address has an account, its mail is queued.\n", who);
        return 0;
}
