/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of records/device.c: the user code as typed, normalised (case, dashes and spaces;
 * anything else refused), and the keys of the two records (the kind, then the hash of the code,
 * never the code).
 */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "idmd/records/device.h"
#include "idmd/tokens.h"
#include "tests.h"

TEST(normalise) {
        static const struct {
                const char *typed;
                const char *want;       /* NULL: refused */
        } cases[] = {
                { "WDJB-MJHT", "WDJBMJHT" },
                { "wdjb-mjht", "WDJBMJHT" },
                { "WDJBMJHT", "WDJBMJHT" },
                { " w d j b - m j h t ", "WDJBMJHT" },
                { "--WdJb--MjHt--", "WDJBMJHT" },
                { "BCDFGHJK", "BCDFGHJK" },
                { "LMNPQRST", "LMNPQRST" },
                { "VWXZVWXZ", "VWXZVWXZ" },
                { "", NULL },
                { "----", NULL },
                { "WDJB-MJH", NULL },           /* 7 letters */
                { "WDJB-MJHTB", NULL },         /* 9 letters */
                { "ABCD-EFGH", NULL },          /* vowels are not in the alphabet */
                { "WDJB-MJH1", NULL },          /* nor digits */
                { "WDJB_MJHT", NULL },
                { "WDJB\tMJHT", NULL },         /* only spaces are ignored */
                { "WDJB-MJHT\n", NULL },
                { "WDJB-MJH\xc3\x9f", NULL },
        };
        char out[DEVICE_USER_CODE_LEN + 1];

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                bool ok = device_user_code_normalise(cases[i].typed, out);

                if (!cases[i].want) {
                        if (ok)
                                fprintf(stderr, "accepted: '%s'\n", cases[i].typed);
                        ASSERT_FALSE(ok);
                        continue;
                }
                ASSERT_TRUE(ok);
                ASSERT_STREQ(out, cases[i].want);
        }
        ASSERT_FALSE(device_user_code_normalise(NULL, out));
}

TEST(keys) {
        char *a = NULL, *b = NULL, *c = NULL, hash[TOKEN_HASH_STRLEN + 1];

        ASSERT_OK(device_key("dev-code-1", &a));
        token_hash("dev-code-1", hash);
        ASSERT_EQ(strlen(a), strlen(DEVICE_KIND ":") + TOKEN_HASH_STRLEN);
        ASSERT_TRUE(strncmp(a, DEVICE_KIND ":", strlen(DEVICE_KIND ":")) == 0);
        ASSERT_STREQ(a + strlen(DEVICE_KIND ":"), hash);
        ASSERT_TRUE(!strstr(a, "dev-code-1"));

        ASSERT_OK(device_user_code_key("WDJBMJHT", &b));
        ASSERT_TRUE(strncmp(b, DEVICE_CODE_KIND ":", strlen(DEVICE_CODE_KIND ":")) == 0);
        ASSERT_TRUE(!strstr(b, "WDJBMJHT"));
        ASSERT_OK(device_user_code_key("WDJBMJHV", &c));
        ASSERT_TRUE(strcmp(b, c) != 0);
        free(a);
        free(b);
        free(c);
}

int main(void) {
        ASSERT_TRUE(sodium_init() >= 0);
        RUN(normalise);
        RUN(keys);
        return 0;
}
