/* SPDX-License-Identifier: MIT */
/*
 * Small jansson helpers shared by idmd, idmctl and pam_idm: typed getters that return NULL
 * instead of misreading a value of the wrong type.
 */
#pragma once

#include <jansson.h>

#include "idm/cleanup.h"

/* jansson (>= 2.11, GCC/clang) provides json_decrefp() for _cleanup_(json_decrefp). */

/* The string value of o[key], or NULL when missing or not a string. Borrowed from o. */
static inline const char *json_object_get_string(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* The first object in array whose member is the string value, or NULL. Borrowed from array. */
static inline json_t *json_array_find_string(const json_t *array, const char *member, const char *value) {
        for (size_t i = 0; i < json_array_size(array); i++) {
                json_t *item = json_array_get(array, i);
                const char *s = json_object_get_string(item, member);

                if (s && value && streq(s, value))
                        return item;
        }
        return NULL;
}
