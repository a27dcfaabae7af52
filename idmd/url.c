/* SPDX-License-Identifier: MIT */
/*
 * URL building (url.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

static bool is_unreserved(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
               c == '_' || c == '~';
}

/* Appends s percent-encoded at *p (room for 3 bytes per input byte). */
static char *append_encoded(char *p, const char *s) {
        static const char hex[] = "0123456789ABCDEF";

        for (const unsigned char *c = (const unsigned char *) s; *c; c++)
                if (is_unreserved(*c))
                        *p++ = (char) *c;
                else {
                        *p++ = '%';
                        *p++ = hex[*c >> 4];
                        *p++ = hex[*c & 15];
                }
        return p;
}

int url_add_query(const char *url, const char *name, const char *value, char **ret) {
        const char *fragment = strchr(url, '#');
        size_t base = fragment ? (size_t) (fragment - url) : strlen(url);
        bool has_query = memchr(url, '?', base) != NULL;
        char *out, *p;

        out = malloc(strlen(url) + 3 * (strlen(name) + strlen(value)) + 3);
        if (!out)
                return -ENOMEM;
        p = mempcpy(out, url, base);
        /* "https://h/p?" already ends its query: no '&' needed. */
        if (has_query && p[-1] != '?' && p[-1] != '&')
                *p++ = '&';
        else if (!has_query)
                *p++ = '?';
        p = append_encoded(p, name);
        *p++ = '=';
        p = append_encoded(p, value);
        strcpy(p, fragment ? fragment : "");
        *ret = out;
        return 0;
}
