/* SPDX-License-Identifier: MIT */
/*
 * getLocales (anyone): the country, currency and locale of an end user's address, and the same
 * detection for registerCustomer's missing fields. The sources and their order are locales.c's;
 * docs/rpc.md has the method, docs/decisions.md ("Locales") the choices.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "methods/locales.h"
#include "methods/methods.h"

static const char *const source_names[_LOCALE_SOURCE_MAX] = {
        [LOCALE_SOURCE_DEFAULT] = "default",
        [LOCALE_SOURCE_MAXMIND] = "maxmind_db",
        [LOCALE_SOURCE_CIDR] = "cidr",
};

/* The detection for params' customerIP (none: the default). *ret_normalized (may be NULL) gets
 * the address as inet_ntop() writes it, "" without one. Refuses a bad customerIP. */
static int detect(Call *call, json_t *params, Locale *ret, char *ret_normalized) {
        static bool warned = false;
        const char *ip = json_object_get_string(params, "customerIP");
        char normalized[INET6_ADDRSTRLEN] = "";
        LocaleSource source;
        LocaleAddress a;
        int lookup_error;

        if (ip && locale_address_parse(ip, &a, normalized) < 0)
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "customerIP"), "customerIP must be an IPv4 or IPv6 address");

        locales_lookup(call_manager(call)->locales, ip ? &a : NULL, ret, &source, &lookup_error);
        /* A damaged file is the operator's to fix; one warning, then the other sources answer. */
        if (lookup_error < 0 && !warned) {
                warned = true;
                log_warning_errno(lookup_error, "%s: reading [locales] maxmind_db failed for %s, using the other "
                                  "sources (further failures are logged at debug level): %m",
                                  call_request_id(call), normalized);
        } else if (lookup_error < 0)
                log_debug_errno(lookup_error, "%s: reading [locales] maxmind_db failed: %m", call_request_id(call));
        log_debug("%s: locale of %s: %s %s %s (%s)", call_request_id(call), ip ? normalized : "no address",
                  ret->country, ret->currency, ret->locale, source_names[source]);

        if (ret_normalized)
                memcpy(ret_normalized, normalized, sizeof(normalized));
        return 0;
}

static int method_locales_get(Call *call, json_t *params) {
        char normalized[INET6_ADDRSTRLEN];
        Locale l;
        int r;

        r = detect(call, params, &l, normalized);
        if (r < 0)
                return r;
        return call_reply(call, json_pack("{s:s, s:s, s:s, s:s?}",
                                          "country", l.country,
                                          "currency", l.currency,
                                          "locale", l.locale,
                                          "ipAddress", normalized[0] ? normalized : NULL));
}

int locales_complete_profile(Call *call, json_t *params, json_t **ret) {
        _cleanup_(json_decrefp) json_t *filled = NULL;
        const char *country = json_object_get_string(params, "country");
        Locale l;
        int r;

        if (country && json_object_get(params, "currency") && json_object_get(params, "locale")) {
                *ret = json_incref(params);
                return 0;
        }

        /* An explicit country decides the rest: a customer who says DE gets EUR and de_DE, wherever
         * the address is. */
        if (country)
                r = locales_for_country(call_manager(call)->locales, country, &l);
        else
                r = detect(call, params, &l, NULL);
        if (r < 0)
                return r;

        filled = json_copy(params);
        if (!filled)
                return -ENOMEM;
        if ((!json_object_get(filled, "country") &&
             json_object_set_new(filled, "country", json_string(l.country)) < 0) ||
            (!json_object_get(filled, "currency") &&
             json_object_set_new(filled, "currency", json_string(l.currency)) < 0) ||
            (!json_object_get(filled, "locale") && json_object_set_new(filled, "locale", json_string(l.locale)) < 0))
                return -ENOMEM;
        *ret = TAKE_PTR(filled);
        return 0;
}

const Method methods_locales[] = {
        { .name = "getLocales", .handler = method_locales_get, .role = ROLE_ANYONE, .class = METHOD_CLASS_DEFAULT,
          .address_param = "customerIP",
          .params = (const ParamSpec[]) {
                  { "customerIP", PARAM_STRING, false, IDM_CUSTOMER_IP_MAX },
                  {} } },
        {}
};
