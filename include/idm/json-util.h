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
