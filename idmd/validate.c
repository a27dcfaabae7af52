/* SPDX-License-Identifier: MIT */
/*
 * Input validation for customer and publisher data. Everything here is deliberately stricter
 * than the RFCs allow: what passes is stored, compared and echoed into URLs, mails and logs, so
 * anything ambiguous (quoted local parts, raw UTF-8 in URLs, overlong UTF-8, ...) is refused.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "idm/cleanup.h"
#include "idm/utf8.h"
#include "idmd/validate.h"

#define EMAIL_LOCAL_MAX 64
#define DNS_LABEL_MAX 63
#define DNS_NAME_MAX 253
#define REDIRECT_URI_MAX 2048

/* Locale-independent: the daemon never calls setlocale(), but a library user might. */
static bool ascii_is_lower(char c) {
        return c >= 'a' && c <= 'z';
}

static bool ascii_is_upper(char c) {
        return c >= 'A' && c <= 'Z';
}

static bool ascii_is_alpha(char c) {
        return ascii_is_lower(c) || ascii_is_upper(c);
}

static bool ascii_is_digit(char c) {
        return c >= '0' && c <= '9';
}

static bool ascii_is_alnum(char c) {
        return ascii_is_alpha(c) || ascii_is_digit(c);
}

static bool ascii_is_xdigit(char c) {
        return ascii_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 5322 atext. */
static bool char_is_atext(char c) {
        return ascii_is_alnum(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c));
}

/* A dot-separated run of LDH labels, [s, s+n): each 1..63, not starting or ending with '-', no
 * empty label (so no leading, trailing or doubled dot), at most 253 bytes. If ret_dots is given,
 * it gets the number of dots and ret_last the start of the last label. */
static bool dns_name_is_valid(const char *s, size_t n, size_t *ret_dots, const char **ret_last) {
        size_t dots = 0, label = 0;
        const char *last = s;

        if (n < 1 || n > DNS_NAME_MAX)
                return false;

        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (c == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        dots++;
                        label = 0;
                        last = s + i + 1;
                        continue;
                }

                if (!ascii_is_alnum(c) && c != '-')
                        return false;
                if (c == '-' && label == 0)
                        return false;
                if (++label > DNS_LABEL_MAX)
                        return false;
        }
        if (label == 0 || s[n - 1] == '-')
                return false;

        if (ret_dots)
                *ret_dots = dots;
        if (ret_last)
                *ret_last = last;
        return true;
}

static bool all_digits(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!ascii_is_digit(s[i]))
                        return false;
        return true;
}

bool email_is_valid(const char *email) {
        const char *at, *domain, *last;
        size_t len, local_len, domain_len, dots;

        if (!email)
                return false;

        len = strnlen(email, EMAIL_MAX + 1);
        if (len > EMAIL_MAX)
                return false;

        at = memchr(email, '@', len);
        if (!at)
                return false;

        /* Local part: dot-atom. '@' is not atext, so the first '@' is the only possible one; a
         * second one fails the domain check. */
        local_len = (size_t) (at - email);
        if (local_len < 1 || local_len > EMAIL_LOCAL_MAX)
                return false;
        if (email[0] == '.' || at[-1] == '.')
                return false;
        for (size_t i = 0; i < local_len; i++) {
                if (email[i] == '.') {
                        if (email[i + 1] == '.')
                                return false;
                        continue;
                }
                if (!char_is_atext(email[i]))
                        return false;
        }

        /* Domain: LDH labels (A-labels included), at least one dot, TLD not all-numeric (that
         * would be an IP address in disguise, or nothing routable). */
        domain = at + 1;
        domain_len = len - local_len - 1;
        if (!dns_name_is_valid(domain, domain_len, &dots, &last))
                return false;
        if (dots < 1)
                return false;
        if (all_digits(last, (size_t) (domain + domain_len - last)))
                return false;

        return true;
}

char *email_normalize(const char *email) {
        char *n;

        assert(email);

        n = strdup(email);
        if (!n)
                return NULL;
        for (char *p = n; *p; p++)
                if (ascii_is_upper(*p))
                        *p = (char) (*p - 'A' + 'a');
        return n;
}

/* ISO 3166-1 alpha-2, the 249 officially assigned codes (ISO 3166 Maintenance Agency; same set as
 * Debian's iso-codes). Sorted, for bsearch(). Reserved and user-assigned codes (UK, EU, XK, ...)
 * are deliberately absent. */
static const char country_codes[][3] = {
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
        "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
        "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK",
        "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
        "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR",
        "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
        "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN",
        "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
        "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV",
        "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
        "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI",
        "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
        "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC",
        "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
        "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR",
        "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
        "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
};

_Static_assert(ELEMENTSOF(country_codes) == 249, "ISO 3166-1 has 249 assigned alpha-2 codes");

static int country_code_compare(const void *a, const void *b) {
        return memcmp(a, b, 2);
}

bool country_is_valid(const char *code) {
        if (!code)
                return false;
        if (!ascii_is_upper(code[0]) || !ascii_is_upper(code[1]) || code[2] != '\0')
                return false;

        return bsearch(code, country_codes, ELEMENTSOF(country_codes), sizeof(country_codes[0]),
                       country_code_compare) != NULL;
}

bool currency_is_valid(const char *code, char *const *allowed) {
        if (!code || !allowed)
                return false;
        if (!ascii_is_upper(code[0]) || !ascii_is_upper(code[1]) || !ascii_is_upper(code[2]) ||
            code[3] != '\0')
                return false;

        for (char *const *a = allowed; *a; a++)
                if (streq(*a, code))
                        return true;
        return false;
}

bool locale_is_valid(const char *locale) {
        if (!locale)
                return false;
        if (!ascii_is_lower(locale[0]) || !ascii_is_lower(locale[1]) || locale[2] != '_')
                return false;

        return country_is_valid(locale + 3);
}

/* RFC 3986 unreserved, sub-delims, ':', '/', '?', '@', '[', ']', and '%' (checked separately).
 * No '#': fragments are refused. No space, control, backslash, quote, '<', '>', '^', '`', '{',
 * '|', '}', and no raw non-ASCII: those must be percent-encoded. */
static bool char_is_uri(char c) {
        return ascii_is_alnum(c) || (c != '\0' && strchr("-._~!$&'()*+,;=:/?@[]%", c));
}

static bool uri_port_is_valid(const char *s, size_t n) {
        unsigned long port = 0;

        if (n < 1 || n > 5 || s[0] == '0')
                return false;
        for (size_t i = 0; i < n; i++) {
                if (!ascii_is_digit(s[i]))
                        return false;
                port = port * 10 + (unsigned long) (s[i] - '0');
        }
        return port >= 1 && port <= 65535;
}

bool redirect_uri_is_valid(const char *uri) {
        const char *p, *authority, *authority_end, *host, *host_end, *port = NULL;
        size_t len, host_len;
        bool https;

        if (!uri)
                return false;

        len = strnlen(uri, REDIRECT_URI_MAX + 1);
        if (len < 1 || len > REDIRECT_URI_MAX)
                return false;

        /* The whole string first: allowed characters only, and well-formed %XX escapes. */
        for (size_t i = 0; i < len; i++) {
                if (!char_is_uri(uri[i]))
                        return false;
                if (uri[i] == '%' && (!ascii_is_xdigit(uri[i + 1]) || !ascii_is_xdigit(uri[i + 2])))
                        return false;
        }

        /* Scheme names are case-insensitive (RFC 3986 §3.1). */
        if (strncasecmp(uri, "https://", 8) == 0) {
                https = true;
                authority = uri + 8;
        } else if (strncasecmp(uri, "http://", 7) == 0) {
                https = false;
                authority = uri + 7;
        } else
                return false;

        /* Authority: up to the path or query. */
        authority_end = authority + strcspn(authority, "/?");
        if (memchr(authority, '@', (size_t) (authority_end - authority)))
                return false;           /* userinfo */

        host = authority;
        if (host[0] == '[') {
                char buf[INET6_ADDRSTRLEN];
                struct in6_addr a6;
                const char *rb = memchr(host, ']', (size_t) (authority_end - host));

                if (!rb)
                        return false;
                host_end = rb + 1;
                host_len = (size_t) (rb - host - 1);
                if (host_len < 2 || host_len >= sizeof(buf))
                        return false;
                memcpy(buf, host + 1, host_len);
                buf[host_len] = '\0';
                if (inet_pton(AF_INET6, buf, &a6) != 1)
                        return false;
        } else {
                const char *last;

                host_end = memchr(host, ':', (size_t) (authority_end - host));
                if (!host_end)
                        host_end = authority_end;
                host_len = (size_t) (host_end - host);
                if (!dns_name_is_valid(host, host_len, NULL, &last))
                        return false;

                /* A numeric last label only makes sense as a dotted-quad IPv4 address. */
                if (all_digits(last, (size_t) (host_end - last))) {
                        char buf[INET_ADDRSTRLEN];
                        struct in_addr a4;

                        if (host_len >= sizeof(buf))
                                return false;
                        memcpy(buf, host, host_len);
                        buf[host_len] = '\0';
                        if (inet_pton(AF_INET, buf, &a4) != 1)
                                return false;
                }
        }

        if (host_end < authority_end) {
                if (*host_end != ':')
                        return false;   /* e.g. "[::1]x" */
                port = host_end + 1;
                if (!uri_port_is_valid(port, (size_t) (authority_end - port)))
                        return false;
        }

        /* Path and query contain only allowed characters (checked above). '[' and ']' are only
         * allowed in the host. */
        for (p = authority_end; *p; p++)
                if (*p == '[' || *p == ']')
                        return false;

        if (https)
                return true;

        /* Plain http only for the loopback host, for native apps and development. */
        host_len = (size_t) (host_end - host);
        return (host_len == 9 && strncasecmp(host, "localhost", 9) == 0) ||
               (host_len == 9 && memcmp(host, "127.0.0.1", 9) == 0) ||
               (host_len == 5 && memcmp(host, "[::1]", 5) == 0);
}

/* Unicode general category Cc: C0, DEL, C1. */
static bool codepoint_is_control(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

static bool utf8_check(const char *s, bool allow_tab) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                uint32_t cp;
                size_t n = utf8_decode(p, &cp);

                if (n == 0)
                        return false;
                if (codepoint_is_control(cp) && !(allow_tab && cp == '\t'))
                        return false;
                p += n;
        }
        return true;
}

bool text_is_valid(const char *s, size_t max) {
        size_t len;

        if (!s)
                return false;

        len = strnlen(s, max);
        if (len < 1 || s[len] != '\0')
                return false;   /* empty, or longer than max */

        return utf8_check(s, false);
}

bool utf8_is_valid(const char *s) {
        if (!s)
                return false;

        return utf8_check(s, true);
}

bool digits_are_valid(const char *s, size_t n) {
        if (!s || n == 0 || strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

bool unix_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > USERDB_NAME_MAX || (s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '.')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '_' || s[i] == '.' || s[i] == '-'))
                        return false;
        return true;
}

bool unix_path_is_valid(const char *s, size_t max) {
        return s && s[0] == '/' && text_is_valid(s, max) && !strchr(s, ':');
}
