/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target "url": building the URLs idmd hands out (idmd/url.c url_add_query(): reset links,
 * remote-auth and SSO links, device login's verification URI) and the check of the URLs
 * publishers configure (validate.c redirect_uri_is_valid()). The input is "URL\0NAME\0VALUE"
 * (missing parts are empty). Every URL is checked; a query parameter added to a valid URL must
 * leave a URL that starts like it (before its fragment), ends with its fragment and, unless it
 * grew beyond the check's 2048 bytes (a link may, validate.h), passes the check again: what idmd
 * sends to end users is never something the publisher's URL check would refuse. Corpus:
 * tests/fuzz/url/.
 */
#include "fuzz.h"
#include "idmd/url.h"
#include "idmd/validate.h"

#define REDIRECT_URI_LENGTH_CHECKED 2048u     /* validate.h: "At most 2048 bytes." */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *input = fuzz_strndup(data, size), *end = input + size, *url = input, *name, *value, *out = NULL;
        const char *fragment;
        bool valid;

        name = url + strlen(url);
        name = name < end ? name + 1 : name;
        value = name + strlen(name);
        value = value < end ? value + 1 : value;

        valid = redirect_uri_is_valid(url);
        if (url_add_query(url, name, value, &out) < 0)
                abort();        /* -ENOMEM only */

        if (valid) {
                size_t base;

                fragment = strchr(url, '#');
                base = fragment ? (size_t) (fragment - url) : strlen(url);
                if (strlen(out) <= REDIRECT_URI_LENGTH_CHECKED && !redirect_uri_is_valid(out)) {
                        fprintf(stderr, "'%s' + %s=%s gives the invalid '%s'\n", url, name, value, out);
                        abort();
                }
                if (strncmp(out, url, base) != 0 ||
                    (fragment && (strlen(out) < strlen(fragment) ||
                                  strcmp(out + strlen(out) - strlen(fragment), fragment) != 0))) {
                        fprintf(stderr, "'%s' + %s=%s gives '%s'\n", url, name, value, out);
                        abort();
                }
        }
        free(out);
        free(input);
        return 0;
}
