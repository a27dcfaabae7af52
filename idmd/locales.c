/* SPDX-License-Identifier: MIT */
/*
 * Locale detection: the built-in country table, the [locales] cidr networks with their
 * longest-prefix match, and the order of the sources (MaxMind DB, networks, default). The
 * choices behind the table and the fallbacks are in docs/decisions.md, "Locales".
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config.h"
#include "geoip.h"
#include "locales.h"
#include "validate.h"

/* Every ISO 3166-1 alpha-2 country (the same 249 as validate.c), sorted for bsearch(): the
 * currency in use there (ISO 4217; where the US dollar is what prices are in, USD) and the locale
 * of its most used language online (ll_CC: two letters, so en_PH rather than fil_PH). The
 * uninhabited territories get the currency of the country that holds them. */
static const LocaleCountry builtin_countries[] = {
        { "AD", "EUR", "ca_AD" }, { "AE", "AED", "ar_AE" }, { "AF", "AFN", "ps_AF" },
        { "AG", "XCD", "en_AG" }, { "AI", "XCD", "en_AI" }, { "AL", "ALL", "sq_AL" },
        { "AM", "AMD", "hy_AM" }, { "AO", "AOA", "pt_AO" }, { "AQ", "USD", "en_AQ" },
        { "AR", "ARS", "es_AR" }, { "AS", "USD", "en_AS" }, { "AT", "EUR", "de_AT" },
        { "AU", "AUD", "en_AU" }, { "AW", "AWG", "nl_AW" }, { "AX", "EUR", "sv_AX" },
        { "AZ", "AZN", "az_AZ" }, { "BA", "BAM", "bs_BA" }, { "BB", "BBD", "en_BB" },
        { "BD", "BDT", "bn_BD" }, { "BE", "EUR", "nl_BE" }, { "BF", "XOF", "fr_BF" },
        { "BG", "BGN", "bg_BG" }, { "BH", "BHD", "ar_BH" }, { "BI", "BIF", "fr_BI" },
        { "BJ", "XOF", "fr_BJ" }, { "BL", "EUR", "fr_BL" }, { "BM", "BMD", "en_BM" },
        { "BN", "BND", "ms_BN" }, { "BO", "BOB", "es_BO" }, { "BQ", "USD", "nl_BQ" },
        { "BR", "BRL", "pt_BR" }, { "BS", "BSD", "en_BS" }, { "BT", "BTN", "dz_BT" },
        { "BV", "NOK", "nb_BV" }, { "BW", "BWP", "en_BW" }, { "BY", "BYN", "be_BY" },
        { "BZ", "BZD", "en_BZ" }, { "CA", "CAD", "en_CA" }, { "CC", "AUD", "en_CC" },
        { "CD", "CDF", "fr_CD" }, { "CF", "XAF", "fr_CF" }, { "CG", "XAF", "fr_CG" },
        { "CH", "CHF", "de_CH" }, { "CI", "XOF", "fr_CI" }, { "CK", "NZD", "en_CK" },
        { "CL", "CLP", "es_CL" }, { "CM", "XAF", "fr_CM" }, { "CN", "CNY", "zh_CN" },
        { "CO", "COP", "es_CO" }, { "CR", "CRC", "es_CR" }, { "CU", "CUP", "es_CU" },
        { "CV", "CVE", "pt_CV" }, { "CW", "ANG", "nl_CW" }, { "CX", "AUD", "en_CX" },
        { "CY", "EUR", "el_CY" }, { "CZ", "CZK", "cs_CZ" }, { "DE", "EUR", "de_DE" },
        { "DJ", "DJF", "fr_DJ" }, { "DK", "DKK", "da_DK" }, { "DM", "XCD", "en_DM" },
        { "DO", "DOP", "es_DO" }, { "DZ", "DZD", "ar_DZ" }, { "EC", "USD", "es_EC" },
        { "EE", "EUR", "et_EE" }, { "EG", "EGP", "ar_EG" }, { "EH", "MAD", "ar_EH" },
        { "ER", "ERN", "ti_ER" }, { "ES", "EUR", "es_ES" }, { "ET", "ETB", "am_ET" },
        { "FI", "EUR", "fi_FI" }, { "FJ", "FJD", "en_FJ" }, { "FK", "FKP", "en_FK" },
        { "FM", "USD", "en_FM" }, { "FO", "DKK", "fo_FO" }, { "FR", "EUR", "fr_FR" },
        { "GA", "XAF", "fr_GA" }, { "GB", "GBP", "en_GB" }, { "GD", "XCD", "en_GD" },
        { "GE", "GEL", "ka_GE" }, { "GF", "EUR", "fr_GF" }, { "GG", "GBP", "en_GG" },
        { "GH", "GHS", "en_GH" }, { "GI", "GIP", "en_GI" }, { "GL", "DKK", "kl_GL" },
        { "GM", "GMD", "en_GM" }, { "GN", "GNF", "fr_GN" }, { "GP", "EUR", "fr_GP" },
        { "GQ", "XAF", "es_GQ" }, { "GR", "EUR", "el_GR" }, { "GS", "GBP", "en_GS" },
        { "GT", "GTQ", "es_GT" }, { "GU", "USD", "en_GU" }, { "GW", "XOF", "pt_GW" },
        { "GY", "GYD", "en_GY" }, { "HK", "HKD", "zh_HK" }, { "HM", "AUD", "en_HM" },
        { "HN", "HNL", "es_HN" }, { "HR", "EUR", "hr_HR" }, { "HT", "HTG", "fr_HT" },
        { "HU", "HUF", "hu_HU" }, { "ID", "IDR", "id_ID" }, { "IE", "EUR", "en_IE" },
        { "IL", "ILS", "he_IL" }, { "IM", "GBP", "en_IM" }, { "IN", "INR", "en_IN" },
        { "IO", "USD", "en_IO" }, { "IQ", "IQD", "ar_IQ" }, { "IR", "IRR", "fa_IR" },
        { "IS", "ISK", "is_IS" }, { "IT", "EUR", "it_IT" }, { "JE", "GBP", "en_JE" },
        { "JM", "JMD", "en_JM" }, { "JO", "JOD", "ar_JO" }, { "JP", "JPY", "ja_JP" },
        { "KE", "KES", "en_KE" }, { "KG", "KGS", "ky_KG" }, { "KH", "KHR", "km_KH" },
        { "KI", "AUD", "en_KI" }, { "KM", "KMF", "fr_KM" }, { "KN", "XCD", "en_KN" },
        { "KP", "KPW", "ko_KP" }, { "KR", "KRW", "ko_KR" }, { "KW", "KWD", "ar_KW" },
        { "KY", "KYD", "en_KY" }, { "KZ", "KZT", "kk_KZ" }, { "LA", "LAK", "lo_LA" },
        { "LB", "LBP", "ar_LB" }, { "LC", "XCD", "en_LC" }, { "LI", "CHF", "de_LI" },
        { "LK", "LKR", "si_LK" }, { "LR", "LRD", "en_LR" }, { "LS", "LSL", "en_LS" },
        { "LT", "EUR", "lt_LT" }, { "LU", "EUR", "fr_LU" }, { "LV", "EUR", "lv_LV" },
        { "LY", "LYD", "ar_LY" }, { "MA", "MAD", "ar_MA" }, { "MC", "EUR", "fr_MC" },
        { "MD", "MDL", "ro_MD" }, { "ME", "EUR", "sr_ME" }, { "MF", "EUR", "fr_MF" },
        { "MG", "MGA", "mg_MG" }, { "MH", "USD", "en_MH" }, { "MK", "MKD", "mk_MK" },
        { "ML", "XOF", "fr_ML" }, { "MM", "MMK", "my_MM" }, { "MN", "MNT", "mn_MN" },
        { "MO", "MOP", "zh_MO" }, { "MP", "USD", "en_MP" }, { "MQ", "EUR", "fr_MQ" },
        { "MR", "MRU", "ar_MR" }, { "MS", "XCD", "en_MS" }, { "MT", "EUR", "mt_MT" },
        { "MU", "MUR", "en_MU" }, { "MV", "MVR", "dv_MV" }, { "MW", "MWK", "en_MW" },
        { "MX", "MXN", "es_MX" }, { "MY", "MYR", "ms_MY" }, { "MZ", "MZN", "pt_MZ" },
        { "NA", "NAD", "en_NA" }, { "NC", "XPF", "fr_NC" }, { "NE", "XOF", "fr_NE" },
        { "NF", "AUD", "en_NF" }, { "NG", "NGN", "en_NG" }, { "NI", "NIO", "es_NI" },
        { "NL", "EUR", "nl_NL" }, { "NO", "NOK", "nb_NO" }, { "NP", "NPR", "ne_NP" },
        { "NR", "AUD", "en_NR" }, { "NU", "NZD", "en_NU" }, { "NZ", "NZD", "en_NZ" },
        { "OM", "OMR", "ar_OM" }, { "PA", "USD", "es_PA" }, { "PE", "PEN", "es_PE" },
        { "PF", "XPF", "fr_PF" }, { "PG", "PGK", "en_PG" }, { "PH", "PHP", "en_PH" },
        { "PK", "PKR", "ur_PK" }, { "PL", "PLN", "pl_PL" }, { "PM", "EUR", "fr_PM" },
        { "PN", "NZD", "en_PN" }, { "PR", "USD", "es_PR" }, { "PS", "ILS", "ar_PS" },
        { "PT", "EUR", "pt_PT" }, { "PW", "USD", "en_PW" }, { "PY", "PYG", "es_PY" },
        { "QA", "QAR", "ar_QA" }, { "RE", "EUR", "fr_RE" }, { "RO", "RON", "ro_RO" },
        { "RS", "RSD", "sr_RS" }, { "RU", "RUB", "ru_RU" }, { "RW", "RWF", "rw_RW" },
        { "SA", "SAR", "ar_SA" }, { "SB", "SBD", "en_SB" }, { "SC", "SCR", "en_SC" },
        { "SD", "SDG", "ar_SD" }, { "SE", "SEK", "sv_SE" }, { "SG", "SGD", "en_SG" },
        { "SH", "SHP", "en_SH" }, { "SI", "EUR", "sl_SI" }, { "SJ", "NOK", "nb_SJ" },
        { "SK", "EUR", "sk_SK" }, { "SL", "SLE", "en_SL" }, { "SM", "EUR", "it_SM" },
        { "SN", "XOF", "fr_SN" }, { "SO", "SOS", "so_SO" }, { "SR", "SRD", "nl_SR" },
        { "SS", "SSP", "en_SS" }, { "ST", "STN", "pt_ST" }, { "SV", "USD", "es_SV" },
        { "SX", "ANG", "nl_SX" }, { "SY", "SYP", "ar_SY" }, { "SZ", "SZL", "en_SZ" },
        { "TC", "USD", "en_TC" }, { "TD", "XAF", "fr_TD" }, { "TF", "EUR", "fr_TF" },
        { "TG", "XOF", "fr_TG" }, { "TH", "THB", "th_TH" }, { "TJ", "TJS", "tg_TJ" },
        { "TK", "NZD", "en_TK" }, { "TL", "USD", "pt_TL" }, { "TM", "TMT", "tk_TM" },
        { "TN", "TND", "ar_TN" }, { "TO", "TOP", "to_TO" }, { "TR", "TRY", "tr_TR" },
        { "TT", "TTD", "en_TT" }, { "TV", "AUD", "en_TV" }, { "TW", "TWD", "zh_TW" },
        { "TZ", "TZS", "sw_TZ" }, { "UA", "UAH", "uk_UA" }, { "UG", "UGX", "en_UG" },
        { "UM", "USD", "en_UM" }, { "US", "USD", "en_US" }, { "UY", "UYU", "es_UY" },
        { "UZ", "UZS", "uz_UZ" }, { "VA", "EUR", "it_VA" }, { "VC", "XCD", "en_VC" },
        { "VE", "VES", "es_VE" }, { "VG", "USD", "en_VG" }, { "VI", "USD", "en_VI" },
        { "VN", "VND", "vi_VN" }, { "VU", "VUV", "bi_VU" }, { "WF", "XPF", "fr_WF" },
        { "WS", "WST", "sm_WS" }, { "YE", "YER", "ar_YE" }, { "YT", "EUR", "fr_YT" },
        { "ZA", "ZAR", "en_ZA" }, { "ZM", "ZMW", "en_ZM" }, { "ZW", "ZWG", "en_ZW" },
};

_Static_assert(ELEMENTSOF(builtin_countries) == 249, "one entry per ISO 3166-1 alpha-2 country");

static int country_compare(const void *key, const void *entry) {
        return strncmp(key, ((const LocaleCountry *) entry)->country, 2);
}

const LocaleCountry *locale_country_builtin(const char *country) {
        if (!country_is_valid(country))
                return NULL;
        return bsearch(country, builtin_countries, ELEMENTSOF(builtin_countries), sizeof(LocaleCountry),
                       country_compare);
}

const LocaleCountry *locale_countries_builtin(size_t *ret_n) {
        *ret_n = ELEMENTSOF(builtin_countries);
        return builtin_countries;
}

const LocaleCountry *locale_country_find(const LocaleCountryList *overrides, const char *country) {
        for (size_t i = 0; overrides && i < overrides->n; i++)
                if (streq(overrides->items[i].country, country))
                        return overrides->items + i;
        return locale_country_builtin(country);
}

/* ---- parsing -------------------------------------------------------------------------------- */

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

#define WORD_MAX 64

/* Splits s into words separated by blanks, each copied into words[i]. -EINVAL unless there are
 * exactly max words, each shorter than WORD_MAX. */
static int split_words(const char *s, size_t max, char (*words)[WORD_MAX]) {
        size_t n = 0;

        for (;;) {
                size_t len;

                while (is_blank(*s))
                        s++;
                if (*s == '\0')
                        break;
                len = strcspn(s, " \t");
                if (n >= max || len >= WORD_MAX)
                        return -EINVAL;
                memcpy(words[n], s, len);
                words[n][len] = '\0';
                n++;
                s += len;
        }
        return n == max ? 0 : -EINVAL;
}

static bool is_digits(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

/* Whether the bits of addr past prefixlen are all zero. */
static bool host_bits_zero(const uint8_t *addr, size_t size, unsigned prefixlen) {
        for (size_t i = 0; i < size; i++) {
                unsigned bit = (unsigned) i * 8;
                uint8_t mask;

                if (bit + 8 <= prefixlen)
                        continue;
                mask = bit >= prefixlen ? 0xff : (uint8_t) (0xff >> (prefixlen - bit));
                if (addr[i] & mask)
                        return false;
        }
        return true;
}

int locale_network_parse(const char *s, LocaleNetwork *ret) {
        char words[2][WORD_MAX], *slash;
        LocaleNetwork n = {};
        unsigned long prefixlen;
        unsigned max;

        if (split_words(s, 2, words) < 0)
                return -EINVAL;

        slash = strchr(words[0], '/');
        if (!slash || !is_digits(slash + 1) || strlen(slash + 1) > 3 || (slash[1] == '0' && slash[2]))
                return -EINVAL;
        *slash = '\0';
        prefixlen = strtoul(slash + 1, NULL, 10);

        if (inet_pton(AF_INET, words[0], n.addr) == 1) {
                n.family = AF_INET;
                max = 32;
        } else if (inet_pton(AF_INET6, words[0], n.addr) == 1) {
                n.family = AF_INET6;
                max = 128;
        } else
                return -EINVAL;
        if (prefixlen > max || !host_bits_zero(n.addr, max / 8, (unsigned) prefixlen))
                return -EINVAL;
        n.prefixlen = (unsigned) prefixlen;

        if (!country_is_valid(words[1]))
                return -EINVAL;
        memcpy(n.country, words[1], 3);

        *ret = n;
        return 0;
}

void locale_network_format(const LocaleNetwork *n, char *buf, size_t size) {
        char a[INET6_ADDRSTRLEN];

        if (!inet_ntop(n->family, n->addr, a, sizeof(a)))
                a[0] = '\0';
        (void) snprintf(buf, size, "%s/%u %s", a, n->prefixlen, n->country);
}

int locale_networks_add(LocaleNetworkList *l, const LocaleNetwork *n) {
        LocaleNetwork *items;

        for (size_t i = 0; i < l->n; i++) {
                LocaleNetwork *e = l->items + i;

                if (e->family == n->family && e->prefixlen == n->prefixlen && memcmp(e->addr, n->addr, 16) == 0) {
                        memcpy(e->country, n->country, sizeof(e->country));
                        return 0;
                }
        }
        if (l->n >= LOCALES_NETWORKS_MAX)
                return -E2BIG;
        items = reallocarray(l->items, l->n + 1, sizeof(LocaleNetwork));
        if (!items)
                return -ENOMEM;
        l->items = items;
        l->items[l->n++] = *n;
        return 0;
}

void locale_networks_done(LocaleNetworkList *l) {
        free(l->items);
        *l = (LocaleNetworkList) {};
}

int locale_country_parse(const char *s, LocaleCountry *ret) {
        char words[3][WORD_MAX];
        LocaleCountry c = {};

        if (split_words(s, 3, words) < 0)
                return -EINVAL;
        if (!country_is_valid(words[0]) || strlen(words[1]) != 3 || !locale_is_valid(words[2]))
                return -EINVAL;
        for (size_t i = 0; i < 3; i++)
                if (words[1][i] < 'A' || words[1][i] > 'Z')
                        return -EINVAL;
        memcpy(c.country, words[0], sizeof(c.country));
        memcpy(c.currency, words[1], sizeof(c.currency));
        memcpy(c.locale, words[2], sizeof(c.locale));
        *ret = c;
        return 0;
}

int locale_countries_add(LocaleCountryList *l, const LocaleCountry *c) {
        LocaleCountry *items;

        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].country, c->country)) {
                        l->items[i] = *c;
                        return 0;
                }
        /* At most one entry per country: bounded by the 249 codes. */
        items = reallocarray(l->items, l->n + 1, sizeof(LocaleCountry));
        if (!items)
                return -ENOMEM;
        l->items = items;
        l->items[l->n++] = *c;
        return 0;
}

void locale_countries_done(LocaleCountryList *l) {
        free(l->items);
        *l = (LocaleCountryList) {};
}

/* ---- addresses and networks ----------------------------------------------------------------- */

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int locale_address_parse(const char *s, LocaleAddress *ret, char *normalized) {
        LocaleAddress a = {};
        int family;

        if (!s)
                return -EINVAL;
        if (inet_pton(AF_INET, s, a.addr) == 1)
                family = AF_INET;
        else if (inet_pton(AF_INET6, s, a.addr) == 1)
                family = AF_INET6;
        else
                return -EINVAL;
        if (normalized && !inet_ntop(family, a.addr, normalized, INET6_ADDRSTRLEN))
                return -EINVAL;

        a.family = family;
        if (family == AF_INET6 && memcmp(a.addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
                a.family = AF_INET;
                memmove(a.addr, a.addr + 12, 4);
                memset(a.addr + 4, 0, 12);
        }
        *ret = a;
        return 0;
}

static bool network_contains(const LocaleNetwork *n, const LocaleAddress *a) {
        unsigned full = n->prefixlen / 8, rest = n->prefixlen % 8;

        if (n->family != a->family)
                return false;
        if (memcmp(n->addr, a->addr, full) != 0)
                return false;
        if (rest == 0)
                return true;
        return ((n->addr[full] ^ a->addr[full]) & (uint8_t) (0xff << (8 - rest))) == 0;
}

const LocaleNetwork *locale_networks_match(const LocaleNetworkList *l, const LocaleAddress *a) {
        const LocaleNetwork *best = NULL;

        /* A walk over at most LOCALES_NETWORKS_MAX entries: a few microseconds, no index to keep. */
        for (size_t i = 0; l && i < l->n; i++)
                if ((!best || l->items[i].prefixlen > best->prefixlen) && network_contains(l->items + i, a))
                        best = l->items + i;
        return best;
}

/* ---- the detector --------------------------------------------------------------------------- */

struct Locales {
        const Config *config;
        Geoip *geoip;                   /* NULL: no maxmind_db */
        Locale fallback;                /* default_country's, as it is answered */
};

Locales *locales_free(Locales *l) {
        if (!l)
                return NULL;
        geoip_free(l->geoip);
        free(l);
        return NULL;
}

/* The answer for entry e (NULL: the default). A currency [customers] currencies does not accept
 * becomes the fallback's. */
static void locale_from_entry(const Locales *l, const LocaleCountry *e, Locale *ret) {
        if (!e) {
                *ret = l->fallback;
                return;
        }
        memcpy(ret->country, e->country, sizeof(ret->country));
        memcpy(ret->locale, e->locale, sizeof(ret->locale));
        if (currency_is_valid(e->currency, l->config->currencies))
                memcpy(ret->currency, e->currency, sizeof(ret->currency));
        else
                memcpy(ret->currency, l->fallback.currency, sizeof(ret->currency));
}

int locales_new(const Config *c, Locales **ret, const char **reterr_message) {
        _cleanup_(locales_freep) Locales *l = NULL;
        const LocaleCountry *e;
        int r;

        assert(c);
        assert(ret);

        if (reterr_message)
                *reterr_message = NULL;
        l = calloc(1, sizeof(Locales));
        if (!l)
                return -ENOMEM;
        l->config = c;

        e = locale_country_find(&c->locale_countries, c->locales_default_country);
        if (!e)
                return -EINVAL;         /* config_verify() refuses this */
        memcpy(l->fallback.country, e->country, sizeof(l->fallback.country));
        memcpy(l->fallback.locale, e->locale, sizeof(l->fallback.locale));
        /* The currency every unaccepted one becomes: the default country's if registration accepts
         * it, else the first accepted one (config_verify(): there is one). */
        if (currency_is_valid(e->currency, c->currencies))
                memcpy(l->fallback.currency, e->currency, sizeof(l->fallback.currency));
        else if (c->currencies && c->currencies[0] && strlen(c->currencies[0]) == 3)
                memcpy(l->fallback.currency, c->currencies[0], sizeof(l->fallback.currency));
        else
                return -EINVAL;

        if (c->maxmind_db && c->maxmind_db[0]) {
                r = geoip_open(c->maxmind_db, &l->geoip, reterr_message);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

void locales_lookup(const Locales *l, const LocaleAddress *a, Locale *ret, LocaleSource *ret_source,
                    int *ret_lookup_error) {
        LocaleSource source = LOCALE_SOURCE_DEFAULT;
        const LocaleCountry *e = NULL;
        const LocaleNetwork *n;
        char country[3];
        int lookup_error = 0;

        assert(l);
        assert(ret);

        if (a && l->geoip) {
                int r = geoip_lookup_country(l->geoip, a, country);

                if (r >= 0) {
                        e = locale_country_find(&l->config->locale_countries, country);
                        source = LOCALE_SOURCE_MAXMIND;
                } else if (r != -ENOENT)
                        lookup_error = r;
        }
        if (a && !e && (n = locale_networks_match(&l->config->locale_networks, a))) {
                e = locale_country_find(&l->config->locale_countries, n->country);
                source = LOCALE_SOURCE_CIDR;
        }

        locale_from_entry(l, e, ret);
        if (ret_source)
                *ret_source = e ? source : LOCALE_SOURCE_DEFAULT;
        if (ret_lookup_error)
                *ret_lookup_error = lookup_error;
}

int locales_for_country(const Locales *l, const char *country, Locale *ret) {
        const LocaleCountry *e;

        assert(l);
        assert(ret);

        e = locale_country_find(&l->config->locale_countries, country);
        if (!e)
                return -EINVAL;
        locale_from_entry(l, e, ret);
        return 0;
}
