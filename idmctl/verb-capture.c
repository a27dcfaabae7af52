/* SPDX-License-Identifier: MIT */
/*
 * idmctl capture show|set: a publisher's capture settings (getCaptureSettings) and replacing them
 * with a list read from a file (setCaptureSettings). The publisher is named and the file read as
 * for "consents show|set" (idmctl.c's publisher_list_show() and publisher_list_set()).
 */
#include <stdio.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

#define LABEL_WIDTH 10

/* One "Key: value" block per setting, a blank line between them. */
static void print_settings(const json_t *result) {
        const json_t *settings = json_object_get(result, "settings");
        size_t i;
        json_t *s;

        json_array_foreach((json_t *) settings, i, s) {
                const char *question = json_object_get_string(s, "question");
                const char *options = json_object_get_string(s, "value");

                if (i > 0)
                        (void) putchar('\n');
                print_field(LABEL_WIDTH, "Field:", json_object_get_string(s, "key"));
                print_field(LABEL_WIDTH, "Enabled:", json_is_true(json_object_get(s, "enabled")) ? "yes" : "no");
                print_field(LABEL_WIDTH, "Required:", json_is_true(json_object_get(s, "required")) ? "yes" : "no");
                if (question)
                        print_field(LABEL_WIDTH, "Question:", question);
                if (options)
                        print_field(LABEL_WIDTH, "Options:", options[0] ? options : "(free text)");
        }
}

int verb_capture_show(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = publisher_list_show(ctx, "getCaptureSettings", &result);
        if (r != 0 || !result)
                return r;
        print_settings(result);
        return 0;
}

/* Shows the settings as stored: every standard field, then the custom questions. */
int verb_capture_set(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = publisher_list_set(ctx, "setCaptureSettings", "settings", &result);
        if (r != 0 || !result)
                return r;
        print_settings(result);
        return 0;
}
