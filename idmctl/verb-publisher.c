/* SPDX-License-Identifier: MIT */
/*
 * idmctl publisher create|list|show|update|rotate-token and offer add|list|remove: admin calls
 * on publishers (createPublisher, listPublishers, getPublisher, updatePublisher,
 * rotatePublisherToken) and on a named publisher's offers (addOffer, listOffers, removeOffer
 * with publisherId, which only admins may name).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

#define LABEL_WIDTH 16

/* {key: value} plus the publisher options given on the command line, into *ret. Returns 0 or
 * -ENOMEM (reported). */
static int publisher_settings_params(Context *ctx, const char *key, const char *value, json_t **ret) {
        const struct {
                const char *key;
                const char *value;
        } urls[] = {
                { "resetUrl", ctx->reset_url },
                { "remoteAuthUrl", ctx->remote_auth_url },
                { "ssoUrl", ctx->sso_url },
                { "deviceVerificationUrl", ctx->device_verification_url },
                { "unixUsers", ctx->unix_users },
                { "unixShell", ctx->unix_shell },
        };
        _cleanup_(json_decrefp) json_t *params = NULL;

        params = json_pack("{s:s}", key, value);
        if (!params)
                return log_oom();
        if (ctx->name && json_object_set_new(params, "name", json_string(ctx->name)) < 0)
                return log_oom();
        if (ctx->redirect_uris && json_object_set(params, "allowedRedirectUris", ctx->redirect_uris) < 0)
                return log_oom();
        for (size_t i = 0; i < ELEMENTSOF(urls); i++)
                if (urls[i].value && json_object_set_new(params, urls[i].key, json_string(urls[i].value)) < 0)
                        return log_oom();
        if (ctx->sso_pages && json_object_set(params, "ssoPages", ctx->sso_pages) < 0)
                return log_oom();
        *ret = TAKE_PTR(params);
        return 0;
}

/* Calls method with {publisherId[, offerId]} (offer_id NULL: without); returns as
 * ctx_call_or_print_json(): 1 when the verb is to print *ret_result as text. */
static int call_on_publisher(Context *ctx, const char *method, const char *publisher_id,
                             const char *offer_id, json_t **ret_result) {
        _cleanup_(json_decrefp) json_t *params = NULL;

        params = json_pack("{s:s}", "publisherId", publisher_id);
        if (!params)
                return log_oom();
        if (offer_id && json_object_set_new(params, "offerId", json_string(offer_id)) < 0)
                return log_oom();
        return ctx_call_or_print_json(ctx, method, params, ret_result);
}

/* Prints result.items as a table, a row per item by add_row(), or empty when there are none.
 * Returns 0 or -ENOMEM (reported). */
static int print_items(const json_t *result, const char *empty, size_t n_columns, const char *const *headers,
                       int (*add_row)(Table *t, const json_t *item)) {
        const json_t *items = json_object_get(result, "items");
        _cleanup_(table_freep) Table *t = NULL;
        json_t *item;
        size_t i;

        if (json_array_size(items) == 0) {
                (void) puts(empty);
                return 0;
        }

        t = table_new(n_columns, headers);
        if (!t)
                return log_oom();
        json_array_foreach((json_t *) items, i, item)
                if (add_row(t, item) < 0)
                        return log_oom();
        if (table_print(t, stdout) < 0)
                return log_oom();
        return 0;
}

static void print_token(const json_t *result) {
        const char *id = json_object_get_string(result, "publisherId");

        print_field(LABEL_WIDTH, "Publisher ID:", id);
        print_field(LABEL_WIDTH, "Publisher token:", json_object_get_string(result, "publisherToken"));
        (void) printf("\nThe token is shown only once: store it now. A lost token can only be replaced,\n"
                      "with 'idmctl publisher rotate-token %s'.\n", strempty(id));
}

/* A record member that is not a string (a list, a number): its compact JSON. */
static char *json_text(const json_t *v) {
        if (json_is_string(v))
                return strdup(json_string_value(v));
        return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

static const char *const known_publisher_keys[] = {
        "publisherId", "name", "allowedRedirectUris", "resetUrl", "remoteAuthUrl", "ssoUrl", "ssoPages",
        "createdDate", "unixUsers", "unixShell",
};

static int print_publisher(const json_t *rec) {
        const json_t *uris = json_object_get(rec, "allowedRedirectUris");
        const json_t *pages = json_object_get(rec, "ssoPages");
        char ts[TIMESTAMP_MAX];
        const char *k;
        json_t *v;
        size_t i;

        print_field(LABEL_WIDTH, "Publisher ID:", json_object_get_string(rec, "publisherId"));
        print_field(LABEL_WIDTH, "Name:", json_object_get_string(rec, "name"));
        if (json_array_size(uris) == 0)
                print_field(LABEL_WIDTH, "Redirect URIs:", "-");
        json_array_foreach((json_t *) uris, i, v)
                print_field(LABEL_WIDTH, i == 0 ? "Redirect URIs:" : "", json_string_value(v));
        print_field(LABEL_WIDTH, "Reset URL:", json_object_get_string(rec, "resetUrl") ?: "-");
        print_field(LABEL_WIDTH, "Remote auth URL:", json_object_get_string(rec, "remoteAuthUrl") ?: "-");
        print_field(LABEL_WIDTH, "SSO URL:", json_object_get_string(rec, "ssoUrl") ?: "-");
        if (json_object_size(pages) == 0)
                print_field(LABEL_WIDTH, "SSO pages:", "-");
        i = 0;
        json_object_foreach((json_t *) pages, k, v) {
                _cleanup_free_ char *line = NULL;

                if (asprintf(&line, "%s=%s", k, strempty(json_string_value(v))) < 0)
                        return log_oom();
                print_field(LABEL_WIDTH, i++ == 0 ? "SSO pages:" : "", line);
        }
        print_field(LABEL_WIDTH, "Unix users:", json_object_get_string(rec, "unixUsers") ?: "none");
        if (json_object_get_string(rec, "unixShell"))
                print_field(LABEL_WIDTH, "Unix shell:", json_object_get_string(rec, "unixShell"));
        print_field(LABEL_WIDTH, "Created:", format_json_timestamp(rec, "createdDate", ts));

        /* Whatever newer daemons add, under its wire name. */
        json_object_foreach((json_t *) rec, k, v) {
                _cleanup_free_ char *label = NULL, *text = NULL;
                bool known = false;

                for (size_t j = 0; j < ELEMENTSOF(known_publisher_keys); j++)
                        if (streq(k, known_publisher_keys[j]))
                                known = true;
                if (known)
                        continue;
                if (asprintf(&label, "%s:", k) < 0)
                        return log_oom();
                text = json_text(v);
                if (!text)
                        return log_oom();
                print_field(LABEL_WIDTH, label, text);
        }
        return 0;
}

int verb_publisher_create(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        int r;

        r = publisher_settings_params(ctx, "name", argv[0], &params);
        if (r < 0)
                return r;
        r = ctx_call_or_print_json(ctx, "createPublisher", params, &result);
        if (r <= 0)
                return r;
        print_token(result);
        return 0;
}

static int add_publisher_row(Table *t, const json_t *p) {
        const json_t *uris = json_object_get(p, "allowedRedirectUris");
        const char *first = json_string_value(json_array_get(uris, 0));
        _cleanup_free_ char *more = NULL;
        char ts[TIMESTAMP_MAX];
        size_t n = json_array_size(uris);

        if (n > 1 && asprintf(&more, "%s (+%zu more)", strempty(first), n - 1) < 0)
                return -ENOMEM;
        if (table_add_cell(t, json_object_get_string(p, "publisherId")) < 0 ||
            table_add_cell(t, json_object_get_string(p, "name")) < 0 ||
            table_add_cell(t, n == 0 ? "-" : n == 1 ? first : more) < 0 ||
            table_add_cell(t, format_json_timestamp(p, "createdDate", ts)) < 0)
                return -ENOMEM;
        return 0;
}

int verb_publisher_list(Context *ctx, int argc, char **argv) {
        static const char *const headers[] = { "ID", "NAME", "REDIRECT URIS", "CREATED" };
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = ctx_call_or_print_json(ctx, "listPublishers", NULL, &result);
        if (r <= 0)
                return r;
        return print_items(result, "No publishers.", ELEMENTSOF(headers), headers, add_publisher_row);
}

int verb_publisher_show(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = call_on_publisher(ctx, "getPublisher", argv[0], NULL, &result);
        if (r <= 0)
                return r;
        return print_publisher(result);
}

int verb_publisher_update(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        int r;

        r = publisher_settings_params(ctx, "publisherId", argv[0], &params);
        if (r < 0)
                return r;
        if (json_object_size(params) == 1)
                return usage_error(ctx, "nothing to update: give --name or a publisher option");
        r = ctx_call_or_print_json(ctx, "updatePublisher", params, &result);
        if (r <= 0)
                return r;
        return print_publisher(result);
}

int verb_publisher_rotate_token(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = call_on_publisher(ctx, "rotatePublisherToken", argv[0], NULL, &result);
        if (r <= 0)
                return r;
        print_token(result);
        return 0;
}

/* --- offers --- */

int verb_offer_add(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        char ts[TIMESTAMP_MAX];
        int r;

        params = json_pack("{s:s, s:s}", "publisherId", argv[0], "offerId", argv[1]);
        if (!params)
                return log_oom();
        if (ctx->title && json_object_set_new(params, "title", json_string(ctx->title)) < 0)
                return log_oom();

        r = ctx_call_or_print_json(ctx, "addOffer", params, &result);
        if (r <= 0)
                return r;
        print_field(LABEL_WIDTH, "Offer ID:", json_object_get_string(result, "offerId"));
        print_field(LABEL_WIDTH, "Publisher ID:", json_object_get_string(result, "publisherId"));
        print_field(LABEL_WIDTH, "Title:", json_object_get_string(result, "title") ?: "-");
        print_field(LABEL_WIDTH, "Created:", format_json_timestamp(result, "createdDate", ts));
        return 0;
}

static int add_offer_row(Table *t, const json_t *o) {
        char ts[TIMESTAMP_MAX];

        if (table_add_cell(t, json_object_get_string(o, "offerId")) < 0 ||
            table_add_cell(t, json_object_get_string(o, "title")) < 0 ||
            table_add_cell(t, format_json_timestamp(o, "createdDate", ts)) < 0)
                return -ENOMEM;
        return 0;
}

int verb_offer_list(Context *ctx, int argc, char **argv) {
        static const char *const headers[] = { "OFFER ID", "TITLE", "CREATED" };
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = call_on_publisher(ctx, "listOffers", argv[0], NULL, &result);
        if (r <= 0)
                return r;
        return print_items(result, "No offers.", ELEMENTSOF(headers), headers, add_offer_row);
}

int verb_offer_remove(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        /* Quiet on success, like rm; --json still shows the (empty) result. */
        r = call_on_publisher(ctx, "removeOffer", argv[0], argv[1], &result);
        return r < 0 ? r : 0;
}
