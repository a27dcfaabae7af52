/* SPDX-License-Identifier: MIT */
/*
 * Locale detection (getLocales, and registerCustomer without locale, country or currency): the
 * country an end user's address is in, and the currency and locale that go with that country.
 *
 * Sources, in order: a MaxMind DB file ([locales] maxmind_db, through geoip.h), the networks of
 * [locales] cidr (longest prefix wins), then [locales] default_country. A country's currency and
 * locale come from [locales] country overrides, else from the built-in table, which has every
 * ISO 3166-1 alpha-2 country. A currency that [customers] currencies does not accept is replaced
 * by the default country's currency, or by the first of [customers] currencies when that one is
 * not accepted either, so what comes out is always what registerCustomer would accept
 * (config_verify() refuses overrides with a currency it would not). docs/decisions.md, "Locales".
 *
 * Pure logic apart from the MaxMind DB, no logging above debug: the caller logs.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "idm/cleanup.h"

typedef struct Config Config;

/* At most this many [locales] cidr networks: each lookup walks them all. */
#define LOCALES_NETWORKS_MAX 4096u

/* "ll_CC" plus NUL. */
#define LOCALE_STRING_MAX 6

/* One [locales] cidr entry: a network and the country its addresses are in. */
typedef struct LocaleNetwork {
        int family;                     /* AF_INET or AF_INET6 */
        uint8_t addr[16];               /* network address (4 bytes used for AF_INET); no host bits */
        unsigned prefixlen;             /* 0..32 or 0..128 */
        char country[3];
} LocaleNetwork;

/* Owned arrays, for config.h's [locales] keys. Free with locale_networks_done() / free(items). */
typedef struct LocaleNetworkList {
        LocaleNetwork *items;
        size_t n;
} LocaleNetworkList;

/* What a country's customers get: its currency and locale. */
typedef struct LocaleCountry {
        char country[3];                /* ISO 3166-1 alpha-2 */
        char currency[4];               /* ISO 4217 */
        char locale[LOCALE_STRING_MAX]; /* ll_CC */
} LocaleCountry;

typedef struct LocaleCountryList {
        LocaleCountry *items;
        size_t n;
} LocaleCountryList;

/* An end user's address, ready for lookups. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is
 * looked up as the IPv4 address it carries. */
typedef struct LocaleAddress {
        int family;                     /* AF_INET or AF_INET6 */
        uint8_t addr[16];
} LocaleAddress;

/* The answer of a lookup. */
typedef struct Locale {
        char country[3];
        char currency[4];
        char locale[LOCALE_STRING_MAX];
} Locale;

/* ---- parsing and formatting (config.c) ---- */

/* "ADDRESS/PREFIX CC" (blanks between the two): an IPv4 or IPv6 network without host bits and a
 * valid country. -EINVAL otherwise. */
int locale_network_parse(const char *s, LocaleNetwork *ret);
/* "192.0.2.0/24 PL": what locale_network_parse() reads back. buf of at least 64 bytes. */
void locale_network_format(const LocaleNetwork *n, char *buf, size_t size);

/* Adds n to l; a network already listed (same address and prefix) gets n's country instead.
 * -E2BIG when l already has LOCALES_NETWORKS_MAX other networks, -ENOMEM. */
int locale_networks_add(LocaleNetworkList *l, const LocaleNetwork *n);
void locale_networks_done(LocaleNetworkList *l);

/* "CC CUR ll_CC" (blanks between): a valid country, three upper-case letters, a valid locale.
 * -EINVAL otherwise. */
int locale_country_parse(const char *s, LocaleCountry *ret);
/* Adds c to l, replacing an entry for the same country. -ENOMEM. */
int locale_countries_add(LocaleCountryList *l, const LocaleCountry *c);
void locale_countries_done(LocaleCountryList *l);

/* The built-in entry of a country; NULL for anything that is not an ISO 3166-1 alpha-2 code. */
const LocaleCountry *locale_country_builtin(const char *country);
/* The whole built-in table, sorted by country (for the tests). */
const LocaleCountry *locale_countries_builtin(size_t *ret_n);

/* The entry for country with c's overrides applied: an override, else the built-in entry, else
 * NULL. */
const LocaleCountry *locale_country_find(const LocaleCountryList *overrides, const char *country);

/* Parses an IPv4 or IPv6 address literal (inet_pton(): no zone id, no prefix, no blanks) into
 * *ret; normalized (may be NULL) gets inet_ntop()'s text of it (at least INET6_ADDRSTRLEN
 * bytes). -EINVAL. */
int locale_address_parse(const char *s, LocaleAddress *ret, char *normalized);

/* The most specific network of l that holds a (longest prefix), or NULL. */
const LocaleNetwork *locale_networks_match(const LocaleNetworkList *l, const LocaleAddress *a);

/* ---- the detector (idmd's, from its Config) ---- */

typedef struct Locales Locales;

typedef enum LocaleSource {
        LOCALE_SOURCE_DEFAULT,          /* no address, or found in no source */
        LOCALE_SOURCE_MAXMIND,
        LOCALE_SOURCE_CIDR,
        _LOCALE_SOURCE_MAX,
} LocaleSource;

/* Builds the detector from c, which must outlive it and pass config_verify(). Opens
 * c->maxmind_db when set: -EOPNOTSUPP when idmd was built without libmaxminddb, else
 * geoip_open()'s errors, with *reterr_message (static) saying what libmaxminddb found (may be
 * NULL). -ENOMEM. Does not log. */
int locales_new(const Config *c, Locales **ret, const char **reterr_message);
Locales *locales_free(Locales *l);
DEFINE_POINTER_CLEANUP(Locales, locales_free);

/* What a customer at address a (NULL: none known) gets. Never fails: an address found in no
 * source gets the default. ret_source (may be NULL) says which source decided the country;
 * ret_lookup_error (may be NULL) gets a MaxMind DB read error (< 0) that was passed over, else 0. */
void locales_lookup(const Locales *l, const LocaleAddress *a, Locale *ret, LocaleSource *ret_source,
                    int *ret_lookup_error);

/* What a customer in country gets (the country's entry, its currency subject to [customers]
 * currencies as above). -EINVAL if country is not a valid code. */
int locales_for_country(const Locales *l, const char *country, Locale *ret);
