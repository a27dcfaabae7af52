/* SPDX-License-Identifier: MIT */
/*
 * idmctl consents show|set: a publisher's consent definitions (getPublisherConsents) and
 * replacing them with a list read from a file (setPublisherConsents). The publisher is named as
 * for the customer commands (--publisher, --publisher-token-file); reading the file and naming
 * the publisher are idmctl.c's publisher_list_show() and publisher_list_set(), which a "capture
 * show|set" would share.
 */
#include <stdio.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

#define LABEL_WIDTH 19

/* One "Key: value" block per definition, a blank line between them. */
static void print_consents(const json_t *result) {
        const json_t *consents = json_object_get(result, "consents");
        size_t i;
        json_t *c;

        if (json_array_size(consents) == 0) {
                (void) puts("No consents.");
                return;
        }
        json_array_foreach((json_t *) consents, i, c) {
                char version[32];

                if (i > 0)
                        (void) putchar('\n');
                (void) snprintf(version, sizeof(version), "%llu", (unsigned long long) json_get_u64(c, "version"));
                print_field(LABEL_WIDTH, "Consent:", json_object_get_string(c, "name"));
                print_field(LABEL_WIDTH, "Label:", json_object_get_string(c, "label"));
                print_field(LABEL_WIDTH, "Version:", version);
                print_field(LABEL_WIDTH, "Required:", json_is_true(json_object_get(c, "required")) ? "yes" : "no");
                print_field(LABEL_WIDTH, "Enabled by default:",
                            json_is_true(json_object_get(c, "enabledByDefault")) ? "yes" : "no");
                print_field(LABEL_WIDTH, "Value:", json_object_get_string(c, "value") ?: "-");
        }
}

int verb_consents_show(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = publisher_list_show(ctx, "getPublisherConsents", &result);
        if (r != 0 || !result)
                return r;
        print_consents(result);
        return 0;
}

/* Shows the consents as stored, with the versions idmd gave them. */
int verb_consents_set(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = publisher_list_set(ctx, "setPublisherConsents", "consents", &result);
        if (r != 0 || !result)
                return r;
        print_consents(result);
        return 0;
}
