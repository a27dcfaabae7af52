/* SPDX-License-Identifier: MIT */
/*
 * Locale detection as methods see it: getLocales (anyone), and the filling of a registration's
 * missing locale, country and currency (registerCustomer). The detection itself is locales.h.
 */
#pragma once

#include <jansson.h>

#include "rpc.h"

/* For registerCustomer, after its own checks of the explicit locale, country, currency and
 * customerIP: *ret gets params (a new reference) when all three are given, else a shallow copy
 * with the missing ones set. The country is the one given, else the one detected from
 * customerIP (the default without one); a missing currency and locale are that country's, as
 * getLocales answers them. A customerIP that is not an address literal: 400 invalid_value
 * (call_fail(), data.field "customerIP"). -ENOMEM. */
int locales_complete_profile(Call *call, json_t *params, json_t **ret);
