/* SPDX-License-Identifier: MIT */
/* Tests for idmd/validate.c: tables of valid and invalid inputs for every validator. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idmd/validate.h"
#include "tests.h"

typedef struct Case {
        const char *input;
        bool valid;
} Case;

#define CHECK_TABLE(fn, table)                                                                  \
        do {                                                                                    \
                for (size_t _i = 0; _i < ELEMENTSOF(table); _i++) {                             \
                        bool _v = fn((table)[_i].input);                                        \
                        if (_v != (table)[_i].valid) {                                          \
                                fprintf(stderr, "%s(\"%s\") = %s, expected %s\n", #fn,          \
                                        strempty((table)[_i].input), _v ? "true" : "false",     \
                                        (table)[_i].valid ? "true" : "false");                  \
                                abort();                                                        \
                        }                                                                       \
                }                                                                               \
        } while (0)

static char *repeat(char c, size_t n) {
        char *s = malloc(n + 1);

        ASSERT_TRUE(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

TEST(email) {
        static const Case cases[] = {
                { "a@b.co", true },
                { "john.doe@example.com", true },
                { "John.Doe@Example.COM", true },
                { "user+tag@sub.example.co.uk", true },
                { "a!#$%&'*+/=?^_`{|}~-z@example.org", true },
                { "x@xn--bcher-kva.example", true },
                { "x@a-b.example", true },
                { "x@123.example", true },
                { "x@example.c0m", true },
                { "", false },
                { "@", false },
                { "a", false },
                { "a@", false },
                { "@b.co", false },
                { "a@b", false },                       /* no dot in the domain */
                { "a..b@c.d", false },
                { ".a@c.d", false },
                { "a.@c.d", false },
                { "a@b.co.", false },                   /* trailing dot */
                { "a@.b.co", false },
                { "a@b..co", false },
                { "a@-b.co", false },
                { "a@b-.co", false },
                { "a@b.-co", false },
                { "a@b_c.co", false },
                { "a@1.2.3.4", false },                 /* numeric TLD */
                { "a@[1.2.3.4]", false },
                { "a@b@c.co", false },
                { "\"a\"@b.co", false },                /* quoted local part */
                { "a(c)@b.co", false },                 /* comment */
                { "a b@c.co", false },
                { " a@b.co", false },
                { "a@b.co ", false },
                { "\ta@b.co", false },
                { "a@b.co\n", false },
                { "a@b.co\r\n", false },
                { "a@ b.co", false },
                { "a @b.co", false },
                { "jos\xc3\xa9@example.com", false },   /* non-ASCII local part */
                { "a@b\xc3\xa9.com", false },           /* U-label domain */
                { "a\\b@c.co", false },
                { "a,b@c.co", false },
                { "a;b@c.co", false },
                { "a<b>@c.co", false },
        };
        _cleanup_(freep) char *local64 = repeat('l', 64), *local65 = repeat('l', 65);
        _cleanup_(freep) char *l63 = repeat('a', 63), *l61 = repeat('c', 61), *l62 = repeat('c', 62);
        _cleanup_(freep) char *l64 = repeat('a', 64);
        char buf[512];

        CHECK_TABLE(email_is_valid, cases);
        ASSERT_FALSE(email_is_valid(NULL));

        /* 64 + 1 + (63 + 1 + 63 + 1 + 61) = 254 */
        snprintf(buf, sizeof(buf), "%s@%s.%s.%s", local64, l63, l63, l61);
        ASSERT_EQ(strlen(buf), 254);
        ASSERT_TRUE(email_is_valid(buf));
        snprintf(buf, sizeof(buf), "%s@%s.%s.%s", local64, l63, l63, l62);
        ASSERT_EQ(strlen(buf), 255);
        ASSERT_FALSE(email_is_valid(buf));

        /* Local part of 65, label of 64. */
        snprintf(buf, sizeof(buf), "%s@example.com", local65);
        ASSERT_FALSE(email_is_valid(buf));
        snprintf(buf, sizeof(buf), "%s@example.com", local64);
        ASSERT_TRUE(email_is_valid(buf));
        snprintf(buf, sizeof(buf), "a@%s.com", l64);
        ASSERT_FALSE(email_is_valid(buf));
        snprintf(buf, sizeof(buf), "a@%s.com", l63);
        ASSERT_TRUE(email_is_valid(buf));
}

TEST(email_normalize) {
        _cleanup_(freep) char *a = email_normalize("John.DOE+X@Example.COM");
        _cleanup_(freep) char *b = email_normalize("a@b.co");
        _cleanup_(freep) char *c = email_normalize("");

        ASSERT_STREQ(a, "john.doe+x@example.com");
        ASSERT_STREQ(b, "a@b.co");
        ASSERT_STREQ(c, "");
}

TEST(country) {
        static const Case cases[] = {
                { "GB", true },
                { "US", true },
                { "DE", true },
                { "AD", true },                         /* first */
                { "ZW", true },                         /* last */
                { "AX", true },
                { "SS", true },
                { "BQ", true },
                { "UK", false },
                { "EU", false },
                { "XK", false },
                { "AA", false },
                { "ZZ", false },
                { "gb", false },
                { "Gb", false },
                { "G", false },
                { "GBR", false },
                { "", false },
                { "G1", false },
                { " GB", false },
                { "GB ", false },
        };
        unsigned n = 0;
        char code[3] = "";

        CHECK_TABLE(country_is_valid, cases);
        ASSERT_FALSE(country_is_valid(NULL));

        /* Exactly the 249 assigned codes are found (also catches an unsorted table, which would
         * make bsearch() miss some). */
        for (char a = 'A'; a <= 'Z'; a++)
                for (char b = 'A'; b <= 'Z'; b++) {
                        code[0] = a;
                        code[1] = b;
                        if (country_is_valid(code))
                                n++;
                }
        ASSERT_EQ(n, 249);
}

TEST(currency) {
        char *allowed[] = { (char *) "EUR", (char *) "USD", (char *) "GBP", NULL };
        char *none[] = { NULL };

        ASSERT_TRUE(currency_is_valid("EUR", allowed));
        ASSERT_TRUE(currency_is_valid("USD", allowed));
        ASSERT_TRUE(currency_is_valid("GBP", allowed));
        ASSERT_FALSE(currency_is_valid("PLN", allowed));
        ASSERT_FALSE(currency_is_valid("eur", allowed));
        ASSERT_FALSE(currency_is_valid("EU", allowed));
        ASSERT_FALSE(currency_is_valid("EURO", allowed));
        ASSERT_FALSE(currency_is_valid("", allowed));
        ASSERT_FALSE(currency_is_valid(" EUR", allowed));
        ASSERT_FALSE(currency_is_valid(NULL, allowed));
        ASSERT_FALSE(currency_is_valid("EUR", none));
        ASSERT_FALSE(currency_is_valid("EUR", NULL));
}

TEST(locale) {
        static const Case cases[] = {
                { "en_US", true },
                { "en_GB", true },
                { "de_DE", true },
                { "pl_PL", true },
                { "en_UK", false },
                { "EN_US", false },
                { "en_us", false },
                { "en-US", false },
                { "en", false },
                { "en_", false },
                { "en_U", false },
                { "en_USA", false },
                { "eng_US", false },
                { "en_US.UTF-8", false },
                { "en_US ", false },
                { "", false },
                { "e1_US", false },
        };

        CHECK_TABLE(locale_is_valid, cases);
        ASSERT_FALSE(locale_is_valid(NULL));
}

TEST(redirect_uri) {
        static const Case cases[] = {
                { "https://app.example.com/cb", true },
                { "https://app.example.com", true },
                { "https://app.example.com/", true },
                { "https://app.example.com:8443/cb?x=1&y=%2F", true },
                { "https://app.example.com?x=1", true },
                { "HTTPS://App.Example.com/cb", true },
                { "https://localhost/cb", true },
                { "https://192.0.2.1/cb", true },
                { "https://[2001:db8::1]:8443/cb", true },
                { "https://xn--bcher-kva.example/cb", true },
                { "https://app.example.com/a/b;c=d/e@f!$'()*+,~", true },
                { "http://localhost:8080/cb", true },
                { "http://localhost", true },
                { "http://127.0.0.1/x", true },
                { "http://[::1]:3000/", true },
                { "http://[::1]", true },
                { "https://app.example.com:65535/", true },
                { "https://app.example.com:1/", true },
                { "http://example.com", false },
                { "http://example.com/cb", false },
                { "http://localhost.example.com/", false },
                { "http://127.0.0.2/", false },
                { "http://127.0.0.1.nip.io/", false },
                { "http://[::2]/", false },
                { "http://[0:0:0:0:0:0:0:1]/", false },  /* not spelt "[::1]" */
                { "ftp://example.com/", false },
                { "https:///path", false },
                { "https://", false },
                { "https://:443/", false },
                { "https://user@host.example/", false },
                { "https://user:pw@host.example/", false },
                { "https://host.example/@x", true },     /* '@' in the path is no userinfo */
                { "https://host.example/#frag", false },
                { "https://host.example/cb#", false },
                { "javascript:alert(1)", false },
                { "/relative/path", false },
                { "relative/path", false },
                { "//host.example/cb", false },
                { "https://ho st/", false },
                { " https://host.example/", false },
                { "https://host.example/ ", false },
                { "https://host.example/\tcb", false },
                { "https://host.example/\ncb", false },
                { "https://host.example\\@evil.example/", false },
                { "https://host.example/\\", false },
                { "https://host.example/\xc3\xa9", false },
                { "https://h\xc3\xa9st.example/", false },
                { "https://host.example/%", false },
                { "https://host.example/%2", false },
                { "https://host.example/%zz", false },
                { "https://host.example:0/", false },
                { "https://host.example:65536/", false },
                { "https://host.example:080/", false },
                { "https://host.example:/", false },
                { "https://host.example:99999/", false },
                { "https://host.example:12ab/", false },
                { "https://host.example:443:443/", false },
                { "https://host.example./", false },
                { "https://-host.example/", false },
                { "https://host_x.example/", false },
                { "https://999.1.1.1/", false },
                { "https://1.2.3/", false },
                { "https://[::1/", false },
                { "https://[::1]x/", false },
                { "https://[zz::1]/", false },
                { "https://[fe80::1%25eth0]/", false },
                { "https://[]/", false },
                { "https://host.example/[x]", false },
                { "https://host.example/<script>", false },
                { "https://host.example/\"", false },
                { "https:host.example", false },
                { "https:/host.example", false },
                { "", false },
        };
        _cleanup_(freep) char *long_path = repeat('p', 2048);
        char *uri;

        CHECK_TABLE(redirect_uri_is_valid, cases);
        ASSERT_FALSE(redirect_uri_is_valid(NULL));

        /* 2048 bytes ok, 2049 not. */
        ASSERT_TRUE(asprintf(&uri, "https://a.example/%s", long_path + 18) >= 0);
        ASSERT_EQ(strlen(uri), 2048);
        ASSERT_TRUE(redirect_uri_is_valid(uri));
        free(uri);
        ASSERT_TRUE(asprintf(&uri, "https://a.example/%s", long_path + 17) >= 0);
        ASSERT_EQ(strlen(uri), 2049);
        ASSERT_FALSE(redirect_uri_is_valid(uri));
        free(uri);
}

TEST(utf8) {
        static const Case cases[] = {
                { "", true },
                { "plain ascii", true },
                { "tab\tok", true },
                { "\xc3\xa9", true },                   /* é, 2 bytes */
                { "\xc2\xa0", true },                   /* U+00A0, first after C1 */
                { "\xdf\xbf", true },                   /* U+07FF */
                { "\xe0\xa0\x80", true },               /* U+0800, smallest 3-byte */
                { "\xe2\x82\xac", true },               /* €, 3 bytes */
                { "\xed\x9f\xbf", true },               /* U+D7FF, below the surrogates */
                { "\xee\x80\x80", true },               /* U+E000, above them */
                { "\xef\xbf\xbd", true },               /* U+FFFD */
                { "\xf0\x90\x80\x80", true },           /* U+10000, smallest 4-byte */
                { "\xf0\x9f\x98\x80", true },           /* 😀 */
                { "\xf4\x8f\xbf\xbf", true },           /* U+10FFFF */
                { "\xc0\x80", false },                  /* overlong NUL */
                { "\xc1\xbf", false },                  /* overlong */
                { "\xe0\x80\x80", false },              /* overlong */
                { "\xe0\x9f\xbf", false },              /* overlong U+07FF */
                { "\xf0\x80\x80\x80", false },          /* overlong */
                { "\xf0\x8f\xbf\xbf", false },          /* overlong U+FFFF */
                { "\xed\xa0\x80", false },              /* U+D800 */
                { "\xed\xbf\xbf", false },              /* U+DFFF */
                { "\xf4\x90\x80\x80", false },          /* U+110000 */
                { "\xf5\x80\x80\x80", false },
                { "\xf8\x88\x80\x80\x80", false },
                { "\xfe", false },
                { "\xff", false },
                { "\x80", false },                      /* lone continuation */
                { "a\xbf", false },
                { "\xc3", false },                      /* truncated */
                { "\xc3x", false },
                { "\xe2\x82", false },
                { "\xe2\x82x", false },
                { "\xf0\x9f\x98", false },
                { "\xf0\x9f", false },
                { "\xc3\xa9\xc3", false },
                { "\xc3\xc3\xa9", false },
                { "line\nbreak", false },
                { "cr\r", false },
                { "\x01", false },
                { "\x1f", false },
                { "del\x7f", false },
                { "\xc2\x80", false },                  /* U+0080, C1 control */
                { "\xc2\x9f", false },                  /* U+009F */
        };

        CHECK_TABLE(utf8_is_valid, cases);
        ASSERT_FALSE(utf8_is_valid(NULL));
}

TEST(text) {
        ASSERT_TRUE(text_is_valid("Jane", 4));
        ASSERT_TRUE(text_is_valid("Jane", 100));
        ASSERT_FALSE(text_is_valid("Jane", 3));
        ASSERT_FALSE(text_is_valid("", 100));
        ASSERT_FALSE(text_is_valid("x", 0));
        ASSERT_FALSE(text_is_valid(NULL, 100));
        ASSERT_TRUE(text_is_valid("Zo\xc3\xab", 4));    /* bytes, not characters */
        ASSERT_FALSE(text_is_valid("Zo\xc3\xab", 3));
        ASSERT_TRUE(text_is_valid("\xf0\x9f\x98\x80 ok", 100));
        ASSERT_FALSE(text_is_valid("a\tb", 100));       /* no tab here */
        ASSERT_FALSE(text_is_valid("a\nb", 100));
        ASSERT_FALSE(text_is_valid("a\x7f", 100));
        ASSERT_FALSE(text_is_valid("a\xc2\x85", 100));  /* NEL */
        ASSERT_FALSE(text_is_valid("\xc0\x80", 100));
        ASSERT_FALSE(text_is_valid("\xed\xa0\x80", 100));
        ASSERT_FALSE(text_is_valid("\xe2\x82", 100));
}

TEST(unix_names) {
        ASSERT_TRUE(digits_are_valid("123456789", 9));
        ASSERT_FALSE(digits_are_valid("12345678", 9));
        ASSERT_FALSE(digits_are_valid("1234567890", 9));
        ASSERT_FALSE(digits_are_valid("12345678x", 9));
        ASSERT_FALSE(digits_are_valid("", 0));
        ASSERT_FALSE(digits_are_valid(NULL, 9));

        ASSERT_TRUE(unix_name_is_valid("io.idm"));
        ASSERT_TRUE(unix_name_is_valid("idm-customers"));
        ASSERT_TRUE(unix_name_is_valid("_x"));
        ASSERT_FALSE(unix_name_is_valid(""));
        ASSERT_FALSE(unix_name_is_valid("."));
        ASSERT_FALSE(unix_name_is_valid(".."));
        ASSERT_FALSE(unix_name_is_valid("-x"));
        ASSERT_FALSE(unix_name_is_valid("1x"));
        ASSERT_FALSE(unix_name_is_valid("a b"));
        ASSERT_FALSE(unix_name_is_valid("a:b"));
        ASSERT_FALSE(unix_name_is_valid("a/b"));
        ASSERT_FALSE(unix_name_is_valid(NULL));
        ASSERT_TRUE(unix_name_is_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));   /* 64 */
        ASSERT_FALSE(unix_name_is_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));  /* 65 */

        ASSERT_TRUE(unix_path_is_valid("/bin/sh", 255));
        ASSERT_FALSE(unix_path_is_valid("bin/sh", 255));
        ASSERT_FALSE(unix_path_is_valid("/bin:/sh", 255));
        ASSERT_FALSE(unix_path_is_valid("/bin/\nsh", 255));
        ASSERT_FALSE(unix_path_is_valid("/bin/sh", 6));
        ASSERT_FALSE(unix_path_is_valid("", 255));
        ASSERT_FALSE(unix_path_is_valid(NULL, 255));
}

int main(void) {
        RUN(unix_names);
        RUN(email);
        RUN(email_normalize);
        RUN(country);
        RUN(currency);
        RUN(locale);
        RUN(redirect_uri);
        RUN(utf8);
        RUN(text);
        return 0;
}
