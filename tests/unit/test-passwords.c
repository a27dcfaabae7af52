/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/passwords.c: Argon2id round trips at the cheapest cost libsodium allows,
 * known-answer strings (one made by libsodium, one by the reference libargon2), rehash decisions,
 * the dummy verification (also from two threads at once), and the password policy with its UTF-8
 * edge cases. Nothing here measures time.
 */

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <sodium.h>

#include "idm/cleanup.h"
#include "idmd/passwords.h"
#include "tests.h"

static const PasswordCost cheap = { .opslimit = 1, .memlimit = 8192 };
static const PasswordCost cheap2 = { .opslimit = 2, .memlimit = 8192 };
static const PasswordCost cheap_m16 = { .opslimit = 1, .memlimit = 16384 };

TEST(hash_verify) {
        char h[PASSWORD_HASH_MAX], h2[PASSWORD_HASH_MAX];

        ASSERT_OK(password_hash("correct horse", &cheap, h));
        ASSERT_TRUE(strncmp(h, "$argon2id$v=19$m=8,t=1,p=1$", 27) == 0);
        ASSERT_TRUE(strlen(h) < PASSWORD_HASH_MAX);
        ASSERT_EQ(password_verify(h, "correct horse"), 0);
        ASSERT_EQ(password_verify(h, "correct horsE"), -EACCES);
        ASSERT_EQ(password_verify(h, "correct hors"), -EACCES);
        ASSERT_EQ(password_verify(h, ""), -EACCES);

        /* salted: the same password hashes differently */
        ASSERT_OK(password_hash("correct horse", &cheap, h2));
        ASSERT_FALSE(streq(h, h2));
        ASSERT_EQ(password_verify(h2, "correct horse"), 0);

        /* empty and non-ASCII passwords hash too (the policy is checked elsewhere) */
        ASSERT_OK(password_hash("", &cheap, h));
        ASSERT_EQ(password_verify(h, ""), 0);
        ASSERT_EQ(password_verify(h, " "), -EACCES);
        ASSERT_OK(password_hash("pässwörd ☃", &cheap2, h));
        ASSERT_TRUE(strncmp(h, "$argon2id$v=19$m=8,t=2,p=1$", 27) == 0);
        ASSERT_EQ(password_verify(h, "pässwörd ☃"), 0);
        ASSERT_EQ(password_verify(h, "passwörd ☃"), -EACCES);
}

TEST(cost_limits) {
        char h[PASSWORD_HASH_MAX] = "untouched";

        ASSERT_EQ(password_hash("x", &(PasswordCost) { .opslimit = 0, .memlimit = 8192 }, h), -EINVAL);
        ASSERT_EQ(password_hash("x", &(PasswordCost) { .opslimit = 1, .memlimit = 8191 }, h), -EINVAL);
        ASSERT_EQ(password_hash("x", &(PasswordCost) { .opslimit = 1, .memlimit = 0 }, h), -EINVAL);
        ASSERT_EQ(password_hash("x", &(PasswordCost) { .opslimit = UINT64_C(1) << 32, .memlimit = 8192 }, h),
                  -EINVAL);
        ASSERT_EQ(password_hash("x", &(PasswordCost) { .opslimit = 1, .memlimit = UINT64_MAX }, h), -EINVAL);
        ASSERT_EQ(password_hash("x", NULL, h), -EINVAL);
        ASSERT_EQ(password_hash(NULL, &cheap, h), -EINVAL);
        ASSERT_STREQ(h, "untouched");
}

TEST(known_answers) {
        /* Made once with libsodium 1.0.18 (crypto_pwhash_str_alg, t=1, m=8 KiB) and checked with
         * the reference libargon2 (argon2id_verify). */
        static const char sodium_made[] =
                "$argon2id$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A";
        /* Made with the reference libargon2 (argon2id_hash_encoded, t=2, m=16 KiB, p=1, salt
         * "idm-known-answer", 32-byte tag): the same strings whichever library wrote them. */
        static const char reference_made[] =
                "$argon2id$v=19$m=16,t=2,p=1$aWRtLWtub3duLWFuc3dlcg$LkenmU4mATZJFXjIoxf/gRS8ZyBu4rl+vhkuNF6V8yE";

        ASSERT_EQ(password_verify(sodium_made, "correct horse battery staple"), 0);
        ASSERT_EQ(password_verify(sodium_made, "correct horse battery stapler"), -EACCES);
        ASSERT_FALSE(password_needs_rehash(sodium_made, &cheap));
        ASSERT_TRUE(password_needs_rehash(sodium_made, &cheap2));

        ASSERT_EQ(password_verify(reference_made, "p\xc3\xa4ssw\xc3\xb6rd 123"), 0);
        ASSERT_EQ(password_verify(reference_made, "passwort 123"), -EACCES);
        ASSERT_FALSE(password_needs_rehash(reference_made, &(PasswordCost) { .opslimit = 2, .memlimit = 16384 }));
        ASSERT_TRUE(password_needs_rehash(reference_made, &cheap));

        /* One changed tag character */
        {
                char bad[sizeof reference_made];
                memcpy(bad, reference_made, sizeof bad);
                bad[sizeof bad - 3] = bad[sizeof bad - 3] == 'A' ? 'B' : 'A';
                ASSERT_EQ(password_verify(bad, "p\xc3\xa4ssw\xc3\xb6rd 123"), -EACCES);
        }
}

TEST(libsodium_reads_ours) {
        static const PasswordCost m64 = { .opslimit = 2, .memlimit = 65536 };
        char h[PASSWORD_HASH_MAX];

        /* What we write, libsodium verifies and parses; our tag is 32 bytes, our salt 16. */
        ASSERT_OK(password_hash("correct horse 9", &m64, h));
        ASSERT_TRUE(strncmp(h, "$argon2id$v=19$m=64,t=2,p=1$", 28) == 0);
        ASSERT_EQ(strlen(h), 28 + 22 + 1 + 43);
        ASSERT_EQ(crypto_pwhash_str_verify(h, "correct horse 9", strlen("correct horse 9")), 0);
        ASSERT_EQ(crypto_pwhash_str_verify(h, "correct horse 8", strlen("correct horse 8")), -1);
        ASSERT_EQ(crypto_pwhash_str_needs_rehash(h, 2, 65536), 0);
}

TEST(engines) {
        static const PasswordCost m64 = { .opslimit = 2, .memlimit = 65536 };
        /* Made with the reference libargon2 (argon2id_hash_encoded, t=1, m=8 KiB, an 8-byte salt
         * "8bytes!!"): libsodium takes 16-byte salts only, so this one is libargon2's either way. */
        static const char salt8[] = "$argon2id$v=19$m=8,t=1,p=1$OGJ5dGVzISE$RW6G0puQYdpUj36wr8peK0tPX+ZSZaQchA5TT5Gnugo";
        char by_warm[PASSWORD_HASH_MAX], by_sodium[PASSWORD_HASH_MAX], h10[PASSWORD_HASH_MAX];

        ASSERT_STREQ(password_engine_to_string(PASSWORD_ENGINE_WARM), "libargon2");
        ASSERT_STREQ(password_engine_to_string(PASSWORD_ENGINE_SODIUM), "libsodium");
        ASSERT_TRUE(password_engine_to_string(_PASSWORD_ENGINE_MAX) == NULL);
        ASSERT_EQ(password_engine(), PASSWORD_ENGINE_WARM);

        /* What one engine makes, the other verifies, and each refuses a wrong password. */
        ASSERT_OK(password_hash("engine pw", &m64, by_warm));
        password_set_engine(PASSWORD_ENGINE_SODIUM);
        ASSERT_EQ(password_engine(), PASSWORD_ENGINE_SODIUM);
        ASSERT_OK(password_hash("engine pw", &m64, by_sodium));
        ASSERT_EQ(password_verify(by_warm, "engine pw"), 0);
        ASSERT_EQ(password_verify(by_warm, "engine pX"), -EACCES);
        ASSERT_EQ(password_verify(salt8, "salt8 bytes pw"), 0);
        ASSERT_EQ(password_verify(salt8, "salt8 bytes pX"), -EACCES);
        /* libsodium hashes in the thread's kept region too (lent through mmap()), and wipes it. */
        password_release_memory();
        ASSERT_OK(password_hash("engine pw", &m64, by_sodium));
        ASSERT_EQ(password_memory_held(), 65536);
        ASSERT_TRUE(password_memory_wiped());
        ASSERT_EQ(crypto_pwhash_str_verify(by_sodium, "engine pw", strlen("engine pw")), 0);
        /* m = 10 KiB: libsodium maps 8 blocks (a multiple of 4), and that is the length lent. */
        password_release_memory();
        ASSERT_OK(password_hash("engine pw", &(PasswordCost) { .opslimit = 1, .memlimit = 10240 }, h10));
        ASSERT_EQ(password_memory_held(), 8192);
        ASSERT_TRUE(password_memory_wiped());
        ASSERT_EQ(crypto_pwhash_str_verify(h10, "engine pw", strlen("engine pw")), 0);
        ASSERT_EQ(password_verify(h10, "engine pw"), 0);
        ASSERT_EQ(password_verify(h10, "engine pX"), -EACCES);
        ASSERT_EQ(password_verify_dummy("engine pw", &m64), -EACCES);
        password_set_engine(PASSWORD_ENGINE_WARM);
        ASSERT_EQ(password_verify(by_sodium, "engine pw"), 0);
        ASSERT_EQ(password_verify(by_sodium, "engine pX"), -EACCES);
        ASSERT_TRUE(strcmp(by_warm, by_sodium) != 0);   /* salts differ */
        password_release_memory();
}

TEST(calibrate) {
        PasswordCalibration c;

        ASSERT_EQ(password_calibrate(&(PasswordCost) { .opslimit = 0, .memlimit = 8192 }, &c), -EINVAL);
        ASSERT_EQ(password_calibrate(NULL, &c), -EINVAL);

        ASSERT_OK(password_calibrate(&(PasswordCost) { .opslimit = 1, .memlimit = 1 << 20 }, &c));
        ASSERT_TRUE(c.usec[PASSWORD_ENGINE_WARM] > 0 && c.usec[PASSWORD_ENGINE_WARM] < UINT64_MAX);
        ASSERT_TRUE(c.usec[PASSWORD_ENGINE_SODIUM] > 0 && c.usec[PASSWORD_ENGINE_SODIUM] < UINT64_MAX);
        ASSERT_EQ(password_engine(), c.chosen);
        /* The choice follows the figures: libsodium only when at least 5 % faster. */
        ASSERT_EQ(c.chosen == PASSWORD_ENGINE_SODIUM,
                  c.usec[PASSWORD_ENGINE_SODIUM] * 100 <= c.usec[PASSWORD_ENGINE_WARM] * 95);
        ASSERT_EQ(password_memory_held(), 0);
        /* Hashing goes on with the engine chosen. */
        {
                char h[PASSWORD_HASH_MAX];

                ASSERT_OK(password_hash("after calibration", &cheap, h));
                ASSERT_EQ(password_verify(h, "after calibration"), 0);
        }
        password_set_engine(PASSWORD_ENGINE_WARM);
        password_release_memory();
}

TEST(warm_memory) {
        static const PasswordCost m64 = { .opslimit = 1, .memlimit = 65536 };
        char h[PASSWORD_HASH_MAX];

        password_release_memory();
        ASSERT_EQ(password_memory_held(), 0);
        ASSERT_OK(password_hash("pw one", &cheap, h));
        ASSERT_EQ(password_memory_held(), 8192);
        ASSERT_TRUE(password_memory_wiped());
        /* A larger cost grows the region; a smaller one reuses it. */
        ASSERT_OK(password_hash("pw one", &m64, h));
        ASSERT_EQ(password_memory_held(), 65536);
        ASSERT_EQ(password_verify(h, "pw one"), 0);
        ASSERT_OK(password_hash("pw two", &cheap, h));
        ASSERT_EQ(password_memory_held(), 65536);
        ASSERT_EQ(password_verify(h, "pw two"), 0);
        ASSERT_EQ(password_verify(h, "pw one"), -EACCES);
        password_release_memory();
        ASSERT_EQ(password_memory_held(), 0);
        ASSERT_EQ(password_verify(h, "pw two"), 0);
        password_release_memory();
}

TEST(invalid_hashes) {
        char long_hash[300];

        ASSERT_EQ(password_verify("", "x"), -EINVAL);
        ASSERT_EQ(password_verify(NULL, "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$", "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$garbage", "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$$", "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$", "x"), -EINVAL);
        /* other algorithms are not ours to verify, even if libsodium could */
        ASSERT_EQ(password_verify("$argon2i$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "correct horse battery staple"), -EINVAL);
        ASSERT_EQ(password_verify("$2b$12$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui", "x"), -EINVAL);
        ASSERT_EQ(password_verify("$ARGON2ID$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "correct horse battery staple"), -EINVAL);
        /* parameters: leading zeros, overflow, more lanes than one, below the minimum cost,
         * padding or another alphabet in the base64 */
        ASSERT_EQ(password_verify("$argon2id$v=19$m=08,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "correct horse battery staple"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=4294967296,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=2$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=4,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=0,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=16$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw==$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$Yavprmffp_K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A$",
                                  "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$YWJj$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A", "x"),
                  -EINVAL);     /* a 3-byte salt */
        /* no NUL within PASSWORD_HASH_MAX */
        memset(long_hash, 'A', sizeof long_hash - 1);
        long_hash[sizeof long_hash - 1] = 0;
        memcpy(long_hash, "$argon2id$", 10);
        ASSERT_EQ(password_verify(long_hash, "x"), -EINVAL);
        ASSERT_EQ(password_verify("$argon2id$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                  NULL), -EINVAL);
}

TEST(needs_rehash) {
        char h[PASSWORD_HASH_MAX];

        ASSERT_OK(password_hash("pw", &cheap, h));
        ASSERT_FALSE(password_needs_rehash(h, &cheap));
        ASSERT_TRUE(password_needs_rehash(h, &cheap2));
        ASSERT_TRUE(password_needs_rehash(h, &cheap_m16));
        ASSERT_TRUE(password_needs_rehash(h, &(PasswordCost) { .opslimit = 0, .memlimit = 8192 }));
        ASSERT_TRUE(password_needs_rehash(h, NULL));
        ASSERT_TRUE(password_needs_rehash("", &cheap));
        ASSERT_TRUE(password_needs_rehash(NULL, &cheap));
        ASSERT_TRUE(password_needs_rehash("$argon2id$garbage", &cheap));
        ASSERT_TRUE(password_needs_rehash("$argon2i$v=19$m=8,t=1,p=1$Yavprmffp/K2PRkC6Dtbyw$GhaHfg3c7at7ZOtaZvgJ1oFDAkCdRX2wGTBJhIHm93A",
                                          &cheap));
        ASSERT_TRUE(password_needs_rehash("$2b$12$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui", &cheap));

        ASSERT_OK(password_hash("pw", &cheap_m16, h));
        ASSERT_FALSE(password_needs_rehash(h, &cheap_m16));
        ASSERT_TRUE(password_needs_rehash(h, &cheap));
}

TEST(dummy) {
        ASSERT_EQ(password_verify_dummy("anything", &cheap), -EACCES);
        ASSERT_EQ(password_verify_dummy("anything", &cheap), -EACCES);
        ASSERT_EQ(password_verify_dummy("", &cheap), -EACCES);
        ASSERT_EQ(password_verify_dummy(NULL, &cheap), -EACCES);
        /* the cost changes: made again */
        ASSERT_EQ(password_verify_dummy("anything", &cheap2), -EACCES);
        ASSERT_EQ(password_verify_dummy("anything", &cheap), -EACCES);
        ASSERT_EQ(password_verify_dummy("anything", &(PasswordCost) { .opslimit = 0, .memlimit = 8192 }), -EINVAL);
        ASSERT_EQ(password_verify_dummy("anything", NULL), -EINVAL);
        ASSERT_EQ(password_verify_dummy("anything", &cheap), -EACCES);
}

static void *dummy_thread(void *arg) {
        const PasswordCost *cost = arg;

        for (unsigned i = 0; i < 20; i++)
                if (password_verify_dummy("x", (i & 1) ? cost : &cheap) != -EACCES)
                        return (void *) 1;
        return NULL;
}

TEST(dummy_threads) {
        pthread_t t[4];
        void *ret;

        for (unsigned i = 0; i < 4; i++)
                ASSERT_EQ(pthread_create(&t[i], NULL, dummy_thread, (void *) ((i & 1) ? &cheap2 : &cheap)), 0);
        for (unsigned i = 0; i < 4; i++) {
                ASSERT_EQ(pthread_join(t[i], &ret), 0);
                ASSERT_TRUE(ret == NULL);
        }
}

/* ---- policy ---- */

static const PasswordPolicy policy = {
        .min_length = 8,
        .max_length = 80,
        .require_letter = true,
        .require_digit_or_symbol = true,
};

static const char *check(const char *password) {
        const char *m = "unset";
        int r;

        r = password_check_policy(&policy, password, &m);
        if (r == 0) {
                ASSERT_TRUE(m == NULL);
                return "ok";
        }
        ASSERT_EQ(r, -EINVAL);
        ASSERT_TRUE(m);
        return m;
}

static char *repeat(const char *unit, size_t n, const char *tail) {
        size_t u = strlen(unit), t = strlen(tail);
        char *s = malloc(u * n + t + 1);

        ASSERT_TRUE(s);
        for (size_t i = 0; i < n; i++)
                memcpy(s + i * u, unit, u);
        memcpy(s + u * n, tail, t + 1);
        return s;
}

#define TOO_SHORT "password is too short"
#define TOO_LONG "password is too long"
#define NO_LETTER "password needs a letter"
#define NO_DIGIT "password needs a digit or a symbol"
#define BAD_UTF8 "password is not valid UTF-8"

TEST(policy_length) {
        char *s;

        ASSERT_STREQ(check(""), TOO_SHORT);
        ASSERT_STREQ(check("abcdef1"), TOO_SHORT);      /* 7 */
        ASSERT_STREQ(check("abcdefg1"), "ok");          /* 8 */
        s = repeat("a", 79, "1");                       /* 80 */
        ASSERT_STREQ(check(s), "ok");
        free(s);
        s = repeat("a", 80, "1");                       /* 81 */
        ASSERT_STREQ(check(s), TOO_LONG);
        free(s);

        /* code points, not bytes */
        s = repeat("é", 7, "");                         /* 7 code points, 14 bytes */
        ASSERT_STREQ(check(s), TOO_SHORT);
        free(s);
        s = repeat("é", 7, "1");                        /* 8 code points, 15 bytes */
        ASSERT_STREQ(check(s), "ok");
        free(s);
        s = repeat("€", 6, "!");                        /* 7 code points, 19 bytes */
        ASSERT_STREQ(check(s), TOO_SHORT);
        free(s);
        s = repeat("😀", 7, "1");                       /* 4-byte sequences: 8 code points */
        ASSERT_STREQ(check(s), "ok");
        free(s);
        s = repeat("é", 79, "1");                       /* 80 code points, 159 bytes */
        ASSERT_STREQ(check(s), "ok");
        free(s);
        s = repeat("😀", 80, "1");                      /* 81 code points */
        ASSERT_STREQ(check(s), TOO_LONG);
        free(s);
}

TEST(policy_classes) {
        ASSERT_STREQ(check("12345678"), NO_LETTER);
        ASSERT_STREQ(check("!@#$%^&*"), NO_LETTER);
        ASSERT_STREQ(check("abcdefgh"), NO_DIGIT);
        ASSERT_STREQ(check("ABCDEFGH"), NO_DIGIT);
        ASSERT_STREQ(check("éééééééé"), NO_DIGIT);
        ASSERT_STREQ(check("abcdefg1"), "ok");
        ASSERT_STREQ(check("Abcdefg!"), "ok");
        ASSERT_STREQ(check("abcd efg"), "ok");          /* space is a symbol */
        ASSERT_STREQ(check("abcdefg~"), "ok");
        ASSERT_STREQ(check("1234567é"), "ok");          /* non-ASCII counts as a letter */
        ASSERT_STREQ(check("1234567ж"), "ok");
        ASSERT_STREQ(check("abcdefg\t"), NO_DIGIT);     /* control characters count as neither */
        ASSERT_STREQ(check("1234567\t"), NO_LETTER);

        /* requirements off */
        {
                PasswordPolicy p = { .min_length = 1, .max_length = 4 };
                const char *m = NULL;

                ASSERT_EQ(password_check_policy(&p, "1234", &m), 0);
                ASSERT_EQ(password_check_policy(&p, "abcd", &m), 0);
                ASSERT_EQ(password_check_policy(&p, "abcde", &m), -EINVAL);
                ASSERT_STREQ(m, TOO_LONG);
                ASSERT_EQ(password_check_policy(&p, "", &m), -EINVAL);
                ASSERT_STREQ(m, TOO_SHORT);
                ASSERT_EQ(password_check_policy(&p, "abcde", NULL), -EINVAL);
        }
        /* order: length before classes */
        ASSERT_STREQ(check("abc"), TOO_SHORT);
}

TEST(policy_utf8) {
        static const char *const bad[] = {
                "abcdefg1\xff",                 /* never valid */
                "abcdefg1\xfe",
                "abcdefg1\x80",                 /* lone continuation byte */
                "abcdefg1\xbf",
                "abcdefg1\xc3",                 /* truncated 2-byte */
                "abcdefg1\xe2\x82",             /* truncated 3-byte */
                "abcdefg1\xf0\x9f\x98",         /* truncated 4-byte */
                "abcdefg1\xc3x",                /* continuation missing mid-string */
                "abcdefg1\xc0\xaf",             /* overlong '/' */
                "abcdefg1\xc1\xbf",
                "abcdefg1\xe0\x80\xaf",         /* overlong 3-byte */
                "abcdefg1\xe0\x9f\xbf",
                "abcdefg1\xf0\x80\x80\xaf",     /* overlong 4-byte */
                "abcdefg1\xf0\x8f\xbf\xbf",
                "abcdefg1\xed\xa0\x80",         /* U+D800 */
                "abcdefg1\xed\xbf\xbf",         /* U+DFFF */
                "abcdefg1\xf4\x90\x80\x80",     /* U+110000 */
                "abcdefg1\xf5\x80\x80\x80",
                "abcdefg1\xf8\x88\x80\x80\x80", /* 5-byte form */
                "\200abcdefg1",                /* leading continuation byte */
        };
        static const char *const good[] = {
                "abcdefg1\xc2\x80",             /* U+0080 */
                "abcdefg1\xdf\xbf",             /* U+07FF */
                "abcdefg1\xe0\xa0\x80",         /* U+0800 */
                "abcdefg1\xed\x9f\xbf",         /* U+D7FF */
                "abcdefg1\xee\x80\x80",         /* U+E000 */
                "abcdefg1\xef\xbf\xbf",         /* U+FFFF */
                "abcdefg1\xf0\x90\x80\x80",     /* U+10000 */
                "abcdefg1\xf4\x8f\xbf\xbf",     /* U+10FFFF */
        };

        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                fprintf(stderr, "  bad[%zu]\n", i);
                ASSERT_STREQ(check(bad[i]), BAD_UTF8);
        }
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                fprintf(stderr, "  good[%zu]\n", i);
                ASSERT_STREQ(check(good[i]), "ok");
        }
        /* invalid UTF-8 is reported even when the password is also too short */
        ASSERT_STREQ(check("\xff"), BAD_UTF8);
}

int main(void) {
        ASSERT_TRUE(sodium_init() >= 0);

        RUN(hash_verify);
        RUN(cost_limits);
        RUN(known_answers);
        RUN(libsodium_reads_ours);
        RUN(engines);
        RUN(calibrate);
        RUN(warm_memory);
        RUN(invalid_hashes);
        RUN(needs_rehash);
        RUN(dummy);
        RUN(dummy_threads);
        RUN(policy_length);
        RUN(policy_classes);
        RUN(policy_utf8);
        return 0;
}
