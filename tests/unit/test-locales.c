/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/locales.c: the built-in country table (every ISO 3166-1 country, valid
 * entries, the currencies of the brief's countries), parsing of networks, overrides and
 * addresses, the longest-prefix match, and the detector's fallbacks for currencies that
 * [customers] currencies does not accept. The MaxMind DB path is tested through idmd
 * (tests/integration/test_locales.py), with a file the test writes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "idm/cleanup.h"
#include "idmd/config.h"
#include "idmd/geoip.h"
#include "idmd/locales.h"
#include "idmd/validate.h"
#include "tests.h"

TEST(builtin_table) {
        const LocaleCountry *t;
        size_t n, valid = 0;

        t = locale_countries_builtin(&n);
        ASSERT_EQ(n, 249);
        for (size_t i = 0; i < n; i++) {
                ASSERT_TRUE(country_is_valid(t[i].country));
                ASSERT_TRUE(locale_is_valid(t[i].locale));
                ASSERT_EQ(strlen(t[i].currency), 3);
                for (size_t k = 0; k < 3; k++)
                        ASSERT_TRUE(t[i].currency[k] >= 'A' && t[i].currency[k] <= 'Z');
                if (i > 0)
                        ASSERT_TRUE(strcmp(t[i - 1].country, t[i].country) < 0);
        }

        /* Exactly the countries validate.c knows. */
        for (char a = 'A'; a <= 'Z'; a++)
                for (char b = 'A'; b <= 'Z'; b++) {
                        char code[3] = { a, b, 0 };
                        const LocaleCountry *e = locale_country_builtin(code);

                        ASSERT_EQ(!!e, country_is_valid(code));
                        if (e) {
                                ASSERT_STREQ(e->country, code);
                                valid++;
                        }
                }
        ASSERT_EQ(valid, 249);
        ASSERT_TRUE(!locale_country_builtin("pl"));
        ASSERT_TRUE(!locale_country_builtin("UK"));
        ASSERT_TRUE(!locale_country_builtin(""));
        ASSERT_TRUE(!locale_country_builtin(NULL));
}

TEST(builtin_currencies) {
        static const char *const euro[] = {
                "AT", "BE", "HR", "CY", "EE", "FI", "FR", "DE", "GR", "IE",
                "IT", "LV", "LT", "LU", "MT", "NL", "PT", "SK", "SI", "ES",
        };
        static const struct {
                const char *country, *currency, *locale;
        } known[] = {
                { "US", "USD", "en_US" }, { "GB", "GBP", "en_GB" }, { "PL", "PLN", "pl_PL" },
                { "CA", "CAD", "en_CA" }, { "AU", "AUD", "en_AU" }, { "NZ", "NZD", "en_NZ" },
                { "CH", "CHF", "de_CH" }, { "DK", "DKK", "da_DK" }, { "NO", "NOK", "nb_NO" },
                { "SE", "SEK", "sv_SE" }, { "BR", "BRL", "pt_BR" }, { "JP", "JPY", "ja_JP" },
                { "IN", "INR", "en_IN" }, { "MX", "MXN", "es_MX" }, { "ZA", "ZAR", "en_ZA" },
                { "DE", "EUR", "de_DE" }, { "FR", "EUR", "fr_FR" }, { "TR", "TRY", "tr_TR" },
                { "SN", "XOF", "fr_SN" }, { "CI", "XOF", "fr_CI" },
        };
        static const char *const defaults[] = {
                "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "SEK", "DKK", "NOK", "ZAR", "XOF",
        };
        size_t n;
        const LocaleCountry *t = locale_countries_builtin(&n);

        for (size_t i = 0; i < ELEMENTSOF(euro); i++)
                ASSERT_STREQ(locale_country_builtin(euro[i])->currency, "EUR");
        for (size_t i = 0; i < ELEMENTSOF(known); i++) {
                ASSERT_STREQ(locale_country_builtin(known[i].country)->currency, known[i].currency);
                ASSERT_STREQ(locale_country_builtin(known[i].country)->locale, known[i].locale);
        }
        /* Every default currency is some country's (TRL, also a default, was withdrawn in 2005:
         * Turkey is TRY; docs/decisions.md "Locales"). */
        for (size_t i = 0; i < ELEMENTSOF(defaults); i++) {
                bool found = false;

                for (size_t k = 0; k < n; k++)
                        found = found || streq(t[k].currency, defaults[i]);
                ASSERT_TRUE(found);
        }
}

static LocaleNetwork network(const char *s) {
        LocaleNetwork n;

        ASSERT_OK(locale_network_parse(s, &n));
        return n;
}

TEST(network_parse) {
        static const char *const good[] = {
                "192.0.2.0/24 PL", "0.0.0.0/0 US", "192.0.2.7/32 DE", "  10.0.0.0/8\tGB  ",
                "2001:db8::/32 CH", "::/0 FR", "2001:DB8:0:0::/64 SE", "2001:db8::1/128 NO",
        };
        static const char *const bad[] = {
                "", "PL", "192.0.2.0/24", "192.0.2.0/24 XX", "192.0.2.0/24 pl", "192.0.2.1/24 PL",
                "192.0.2.0/33 PL", "192.0.2.0/024 PL", "192.0.2.0/-1 PL", "192.0.2.0/ PL", "192.0.2.0 PL",
                "/24 PL", "192.0.2/24 PL", "2001:db8::1/32 DE", "2001:db8::/129 DE", "fe80::%eth0/64 DE",
                "192.0.2.0/24 PL DE", "192.0.2.0/24PL", "192.0.2.0 /24 PL",
        };
        char buf[80];
        LocaleNetwork n;

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ASSERT_OK(locale_network_parse(good[i], &n));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                fprintf(stderr, "   bad: '%s'\n", bad[i]);
                ASSERT_EQ(locale_network_parse(bad[i], &n), -EINVAL);
        }

        n = network("2001:DB8:0:0::/64 SE");
        ASSERT_EQ(n.family, AF_INET6);
        ASSERT_EQ(n.prefixlen, 64);
        locale_network_format(&n, buf, sizeof(buf));
        ASSERT_STREQ(buf, "2001:db8::/64 SE");
        n = network("  10.0.0.0/8\tGB  ");
        locale_network_format(&n, buf, sizeof(buf));
        ASSERT_STREQ(buf, "10.0.0.0/8 GB");
}

TEST(networks_bound) {
        LocaleNetworkList l = {};
        LocaleNetwork n;
        char s[64];

        for (unsigned i = 0; i < LOCALES_NETWORKS_MAX; i++) {
                (void) snprintf(s, sizeof(s), "10.%u.%u.0/24 PL", i / 256, i % 256);
                n = network(s);
                ASSERT_OK(locale_networks_add(&l, &n));
        }
        ASSERT_EQ(l.n, LOCALES_NETWORKS_MAX);
        n = network("192.0.2.0/24 PL");
        ASSERT_EQ(locale_networks_add(&l, &n), -E2BIG);
        /* A network already there only changes its country. */
        n = network("10.0.0.0/24 DE");
        ASSERT_OK(locale_networks_add(&l, &n));
        ASSERT_EQ(l.n, LOCALES_NETWORKS_MAX);
        ASSERT_STREQ(l.items[0].country, "DE");
        locale_networks_done(&l);
        ASSERT_EQ(l.n, 0);
        ASSERT_TRUE(!l.items);
}

static const char *match(const LocaleNetworkList *l, const char *address) {
        LocaleAddress a;
        const LocaleNetwork *n;

        ASSERT_OK(locale_address_parse(address, &a, NULL));
        n = locale_networks_match(l, &a);
        return n ? n->country : "--";
}

TEST(longest_prefix) {
        static const char *const networks[] = {
                "192.0.2.128/25 DE", "192.0.2.0/24 PL", "192.0.2.192/26 CH", "192.0.2.200/32 SE",
                "2001:db8::/32 FR", "2001:db8:1::/48 IT", "2001:db8:1:2::/64 ES", "198.51.100.0/23 GB",
        };
        LocaleNetworkList l = {};

        for (size_t i = 0; i < ELEMENTSOF(networks); i++) {
                LocaleNetwork n = network(networks[i]);
                ASSERT_OK(locale_networks_add(&l, &n));
        }
        ASSERT_STREQ(match(&l, "192.0.2.1"), "PL");
        ASSERT_STREQ(match(&l, "192.0.2.127"), "PL");
        ASSERT_STREQ(match(&l, "192.0.2.128"), "DE");
        ASSERT_STREQ(match(&l, "192.0.2.191"), "DE");
        ASSERT_STREQ(match(&l, "192.0.2.192"), "CH");
        ASSERT_STREQ(match(&l, "192.0.2.200"), "SE");
        ASSERT_STREQ(match(&l, "192.0.2.201"), "CH");
        ASSERT_STREQ(match(&l, "192.0.3.1"), "--");
        ASSERT_STREQ(match(&l, "198.51.101.255"), "GB");        /* /23: the odd bit */
        ASSERT_STREQ(match(&l, "198.51.102.0"), "--");
        ASSERT_STREQ(match(&l, "2001:db8::1"), "FR");
        ASSERT_STREQ(match(&l, "2001:db8:1::1"), "IT");
        ASSERT_STREQ(match(&l, "2001:db8:1:2:ffff::1"), "ES");
        ASSERT_STREQ(match(&l, "2001:db9::1"), "--");
        /* IPv4-mapped IPv6 is looked up as IPv4; an IPv4 network never holds other IPv6. */
        ASSERT_STREQ(match(&l, "::ffff:192.0.2.200"), "SE");
        ASSERT_STREQ(match(&l, "::c000:0201"), "--");

        /* A default route holds everything of its family, and loses to anything longer. */
        LocaleNetwork all = network("0.0.0.0/0 US");
        ASSERT_OK(locale_networks_add(&l, &all));
        ASSERT_STREQ(match(&l, "203.0.113.9"), "US");
        ASSERT_STREQ(match(&l, "192.0.2.1"), "PL");
        ASSERT_STREQ(match(&l, "2001:db9::1"), "--");
        locale_networks_done(&l);
}

TEST(address_parse) {
        char normalized[INET6_ADDRSTRLEN];
        LocaleAddress a;

        ASSERT_OK(locale_address_parse("192.0.2.7", &a, normalized));
        ASSERT_EQ(a.family, AF_INET);
        ASSERT_STREQ(normalized, "192.0.2.7");
        ASSERT_OK(locale_address_parse("2001:DB8:0:0:0:0:0:1", &a, normalized));
        ASSERT_EQ(a.family, AF_INET6);
        ASSERT_STREQ(normalized, "2001:db8::1");
        ASSERT_OK(locale_address_parse("::FFFF:192.0.2.7", &a, normalized));
        ASSERT_EQ(a.family, AF_INET);
        ASSERT_EQ(a.addr[0], 192);
        ASSERT_EQ(a.addr[3], 7);
        ASSERT_STREQ(normalized, "::ffff:192.0.2.7");

        static const char *const bad[] = {
                "", "x", "192.0.2", "192.0.2.256", "192.0.2.7 ", " 192.0.2.7", "192.0.2.7/32",
                "fe80::1%eth0", "2001:db8::1::1", "[2001:db8::1]", "0x7f.0.0.1", "localhost",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ASSERT_EQ(locale_address_parse(bad[i], &a, normalized), -EINVAL);
        ASSERT_EQ(locale_address_parse(NULL, &a, NULL), -EINVAL);
}

TEST(country_parse) {
        LocaleCountry c;
        LocaleCountryList l = {};

        ASSERT_OK(locale_country_parse("PL PLN pl_PL", &c));
        ASSERT_STREQ(c.country, "PL");
        ASSERT_STREQ(c.currency, "PLN");
        ASSERT_STREQ(c.locale, "pl_PL");
        ASSERT_OK(locale_country_parse(" BE\tEUR fr_BE ", &c));
        ASSERT_EQ(locale_country_parse("PL PLN", &c), -EINVAL);
        ASSERT_EQ(locale_country_parse("XX PLN pl_PL", &c), -EINVAL);
        ASSERT_EQ(locale_country_parse("PL pln pl_PL", &c), -EINVAL);
        ASSERT_EQ(locale_country_parse("PL PLN pl-PL", &c), -EINVAL);
        ASSERT_EQ(locale_country_parse("PL PLN pl_PL x", &c), -EINVAL);

        ASSERT_OK(locale_countries_add(&l, &c));
        ASSERT_OK(locale_country_parse("BE EUR nl_BE", &c));
        ASSERT_OK(locale_countries_add(&l, &c));
        ASSERT_EQ(l.n, 1);
        ASSERT_STREQ(locale_country_find(&l, "BE")->locale, "nl_BE");
        ASSERT_STREQ(locale_country_find(&l, "FR")->locale, "fr_FR");
        ASSERT_TRUE(!locale_country_find(&l, "XX"));
        locale_countries_done(&l);
}

static Config *config_with(const char *text) {
        Config *c;
        FILE *f;

        ASSERT_OK(config_new(&c));
        f = fmemopen((void *) text, strlen(text), "r");
        ASSERT_TRUE(f);
        ASSERT_OK(config_load_stream(c, f, "test.conf"));
        fclose(f);
        return c;
}

static void lookup(const Locales *l, const char *address, const char *want_country, const char *want_currency,
                   const char *want_locale, LocaleSource want_source) {
        LocaleAddress a;
        LocaleSource source;
        Locale r;
        int error;

        if (address)
                ASSERT_OK(locale_address_parse(address, &a, NULL));
        locales_lookup(l, address ? &a : NULL, &r, &source, &error);
        fprintf(stderr, "   %s: %s %s %s\n", address ?: "(none)", r.country, r.currency, r.locale);
        ASSERT_STREQ(r.country, want_country);
        ASSERT_STREQ(r.currency, want_currency);
        ASSERT_STREQ(r.locale, want_locale);
        ASSERT_EQ(source, want_source);
        ASSERT_EQ(error, 0);
}

TEST(detector) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL;
        _cleanup_(locales_freep) Locales *l = NULL, *m = NULL, *k = NULL;
        Locale r;

        /* Default currencies: PLN and CHF are not among them, so Poland and Switzerland get the
         * default country's currency. */
        c = config_with("[locales]\n"
                        "cidr = 192.0.2.0/24 PL\n"
                        "cidr = 192.0.2.128/25 DE\n"
                        "cidr = 2001:db8::/32 CH\n"
                        "cidr = 198.51.100.0/24 BE\n"
                        "country = BE EUR fr_BE\n");
        ASSERT_OK(locales_new(c, &l, NULL));
        lookup(l, NULL, "US", "USD", "en_US", LOCALE_SOURCE_DEFAULT);
        lookup(l, "203.0.113.1", "US", "USD", "en_US", LOCALE_SOURCE_DEFAULT);
        lookup(l, "192.0.2.1", "PL", "USD", "pl_PL", LOCALE_SOURCE_CIDR);
        lookup(l, "192.0.2.129", "DE", "EUR", "de_DE", LOCALE_SOURCE_CIDR);
        lookup(l, "2001:db8::7", "CH", "USD", "de_CH", LOCALE_SOURCE_CIDR);
        lookup(l, "198.51.100.7", "BE", "EUR", "fr_BE", LOCALE_SOURCE_CIDR);
        ASSERT_OK(locales_for_country(l, "GB", &r));
        ASSERT_STREQ(r.currency, "GBP");
        ASSERT_OK(locales_for_country(l, "JP", &r));
        ASSERT_STREQ(r.currency, "USD");
        ASSERT_STREQ(r.locale, "ja_JP");
        ASSERT_EQ(locales_for_country(l, "UK", &r), -EINVAL);

        /* Accepted currencies decide; a default country whose currency is not accepted stands in
         * with the first accepted one. */
        d = config_with("[customers]\ncurrencies = EUR PLN\n"
                        "[locales]\ncidr = 192.0.2.0/24 PL\ncidr = 198.51.100.0/24 GB\n");
        ASSERT_OK(locales_new(d, &m, NULL));
        lookup(m, NULL, "US", "EUR", "en_US", LOCALE_SOURCE_DEFAULT);
        lookup(m, "192.0.2.1", "PL", "PLN", "pl_PL", LOCALE_SOURCE_CIDR);
        lookup(m, "198.51.100.1", "GB", "EUR", "en_GB", LOCALE_SOURCE_CIDR);

        /* The default country and its override. */
        e = config_with("[customers]\ncurrencies = CHF USD\n[locales]\ndefault_country = CH\ncountry = CH CHF fr_CH\n");
        ASSERT_OK(locales_new(e, &k, NULL));
        lookup(k, NULL, "CH", "CHF", "fr_CH", LOCALE_SOURCE_DEFAULT);
        lookup(k, "192.0.2.1", "CH", "CHF", "fr_CH", LOCALE_SOURCE_DEFAULT);
}

TEST(maxmind_unusable) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(locales_freep) Locales *l = NULL;
        const char *detail = NULL;
        int r;

        c = config_with("[locales]\nmaxmind_db = /nonexistent/GeoLite2-Country.mmdb\n");
        r = locales_new(c, &l, &detail);
        if (geoip_supported()) {
                ASSERT_EQ(r, -ENOENT);
                ASSERT_TRUE(detail);
        } else
                ASSERT_EQ(r, -EOPNOTSUPP);
        ASSERT_TRUE(!l);
}

int main(void) {
        RUN(builtin_table);
        RUN(builtin_currencies);
        RUN(network_parse);
        RUN(networks_bound);
        RUN(longest_prefix);
        RUN(address_parse);
        RUN(country_parse);
        RUN(detector);
        RUN(maxmind_unusable);
        return 0;
}
