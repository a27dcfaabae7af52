/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target "validators": the checks idmd runs on strings from requests and configuration
 * (idmd/validate.c: e-mail, country, currency, locale, text and UTF-8; idmd/locales.c: "[locales]
 * cidr" networks, "[locales] country" overrides and end users' IP addresses; ratelimit.c: the
 * source key an address is counted by). The whole input is one string given to every check,
 * with properties where the headers promise them: a valid e-mail normalizes to a valid e-mail;
 * a network or an address that parses is formatted to text that parses back to the same value;
 * a rate-limit source key is a NUL-terminated string of its fixed buffer. Corpus:
 * tests/fuzz/validators/.
 */
#include <arpa/inet.h>

#include "fuzz.h"
#include "idmd/locales.h"
#include "idmd/ratelimit.h"
#include "idmd/validate.h"

static void check_network(const char *s) {
        LocaleNetwork n, again;
        char text[64];

        if (locale_network_parse(s, &n) < 0)
                return;
        locale_network_format(&n, text, sizeof text);
        if (locale_network_parse(text, &again) < 0 || again.family != n.family ||
            again.prefixlen != n.prefixlen || memcmp(again.addr, n.addr, sizeof n.addr) != 0 ||
            strcmp(again.country, n.country) != 0) {
                fprintf(stderr, "network '%s' formats as '%s', which does not parse back\n", s, text);
                abort();
        }
}

static void check_address(const char *s) {
        char normalized[INET6_ADDRSTRLEN], again_text[INET6_ADDRSTRLEN];
        LocaleAddress a, again;

        if (locale_address_parse(s, &a, normalized) < 0)
                return;
        if (locale_address_parse(normalized, &again, again_text) < 0 || again.family != a.family ||
            memcmp(again.addr, a.addr, sizeof a.addr) != 0 || strcmp(normalized, again_text) != 0) {
                fprintf(stderr, "address '%s' normalizes to '%s', which does not parse back\n", s, normalized);
                abort();
        }
}

static void check_source(const char *s) {
        RateLimitSource src;

        for (int trusted = 0; trusted <= 1; trusted++) {
                memset(&src, 'x', sizeof src);
                ratelimit_source_init(&src, 1000, trusted, s);
                if (!memchr(src.key, '\0', sizeof src.key) || src.key[0] == '\0')
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char *const currencies[] = { "EUR", "PLN", "USD", NULL };
        char *s = fuzz_strndup(data, size), *normalized;
        LocaleCountry country;

        if (email_is_valid(s)) {
                normalized = email_normalize(s);
                if (!normalized)
                        abort();
                if (!email_is_valid(normalized)) {
                        fprintf(stderr, "e-mail '%s' normalizes to the invalid '%s'\n", s, normalized);
                        abort();
                }
                free(normalized);
        }
        (void) country_is_valid(s);
        (void) currency_is_valid(s, currencies);
        (void) locale_is_valid(s);
        (void) text_is_valid(s, size);
        (void) text_is_valid(s, 16);
        (void) utf8_is_valid(s);
        if (locale_country_parse(s, &country) >= 0 &&
            (!country_is_valid(country.country) || !locale_is_valid(country.locale)))
                abort();
        (void) locale_country_builtin(s);
        check_network(s);
        check_address(s);
        check_source(s);
        free(s);
        return 0;
}
