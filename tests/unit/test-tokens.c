/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/tokens.c: known answers (RFC 8037 A.4, BLAKE2b-256), JWT round trips, every
 * kind of forged or malformed token (also with valid signatures, made here from the key file on
 * disk, so that each header/claims check is reached on its own), expiry, rotation and pruning,
 * JWKS, key file permissions and crash recovery, keys as store records. Uses libsodium itself only to forge and check.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "idm/cleanup.h"
#include "idmd/tokens.h"
#include "tests.h"

#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define USEC 1000000ULL
#define NOW_SEC 1700000000ULL
#define NOW_USEC (NOW_SEC * USEC)
#define RETAIN_USEC (3600ULL * USEC)
#define ISS "https://idm.example"


static char *tmp_root;

/* ---- helpers ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void rm_rf(const char *path) {
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh, not yet existing directory path below the test's temporary root. */
static char *new_dir_path(void) {
        static unsigned counter;
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/keys%u", tmp_root, counter++) > 0);
        return p;
}

static char *path_join(const char *dir, const char *name) {
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static char *key_path(const char *dir, const char *kid) {
        char *p;

        ASSERT_TRUE(asprintf(&p, "%s/%s.key", dir, kid) > 0);
        return p;
}

static void write_file(const char *path, const char *content, mode_t mode) {
        int fd;

        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        ASSERT_EQ(fchmod(fd, mode), 0);
        ASSERT_EQ(close(fd), 0);
}

static json_t *read_json(const char *path) {
        json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, NULL);

        ASSERT_TRUE(json_is_object(j));
        return j;
}

static char *read_text(const char *path) {
        char *s = NULL;
        size_t n = 0;
        FILE *f;

        f = fopen(path, "re");
        ASSERT_TRUE(f);
        ASSERT_TRUE(getdelim(&s, &n, 0, f) > 0);
        fclose(f);
        return s;
}

static bool file_exists(const char *path) {
        return access(path, F_OK) == 0;
}

static char *b64(const void *data, size_t n) {
        size_t len = sodium_base64_ENCODED_LEN(n, B64URL);
        char *s = malloc(len);

        ASSERT_TRUE(s);
        sodium_bin2base64(s, len, data, n, B64URL);
        return s;
}

static char *b64s(const char *s) {
        return b64(s, strlen(s));
}

/* Splits a compact token into its three parts (new strings). */
static void split3(const char *token, char **h, char **c, char **s) {
        const char *d1 = strchr(token, '.'), *d2;

        ASSERT_TRUE(d1);
        d2 = strchr(d1 + 1, '.');
        ASSERT_TRUE(d2);
        *h = strndup(token, (size_t) (d1 - token));
        *c = strndup(d1 + 1, (size_t) (d2 - d1 - 1));
        *s = strdup(d2 + 1);
        ASSERT_TRUE(*h && *c && *s);
}

static json_t *decode_part(const char *part) {
        uint8_t buf[JWT_MAX];
        size_t n;
        json_t *j;

        ASSERT_EQ(sodium_base642bin(buf, sizeof buf, part, strlen(part), NULL, &n, NULL, B64URL), 0);
        j = json_loadb((const char *) buf, n, JSON_REJECT_DUPLICATES, NULL);
        ASSERT_TRUE(j);
        return j;
}

static char *join3(const char *h, const char *c, const char *s) {
        char *t;

        ASSERT_TRUE(asprintf(&t, "%s.%s.%s", h, c, s) > 0);
        return t;
}

/* Signs header_json.claims_json (raw JSON text, base64url-encoded here) with the secret key read
 * from <dir>/<kid>.key: a token with a valid signature by one of the keyring's own keys. */
static char *forge(const char *dir, const char *kid, const char *header_json, const char *claims_json) {
        _cleanup_(freep) char *path = key_path(dir, kid), *h = b64s(header_json), *c = b64s(claims_json),
                *input = NULL;
        uint8_t sk[crypto_sign_SECRETKEYBYTES], sig[crypto_sign_BYTES];
        _cleanup_(freep) char *s = NULL;
        json_t *j, *v;
        size_t n;

        j = read_json(path);
        v = json_object_get(j, "secretKey");
        ASSERT_TRUE(json_is_string(v));
        ASSERT_EQ(sodium_base642bin(sk, sizeof sk, json_string_value(v), json_string_length(v), NULL, &n,
                                    NULL, B64URL), 0);
        ASSERT_EQ(n, sizeof sk);
        json_decref(j);

        ASSERT_TRUE(asprintf(&input, "%s.%s", h, c) > 0);
        ASSERT_EQ(crypto_sign_detached(sig, NULL, (const uint8_t *) input, strlen(input), sk), 0);
        sodium_memzero(sk, sizeof sk);
        s = b64(sig, sizeof sig);
        return join3(h, c, s);
}

static char *header_json(const char *alg, const char *kid) {
        char *s;

        ASSERT_TRUE(asprintf(&s, "{\"alg\":\"%s\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", alg, kid) > 0);
        return s;
}

/* Claims as jwt_sign makes them, with times relative to NOW_SEC and an optional extra member. */
static char *claims_json(const char *iss, long long exp, const char *extra) {
        char *s;

        ASSERT_TRUE(asprintf(&s,
                             "{\"iss\":\"%s\",\"sub\":\"c1\",\"aud\":\"123456789\",\"exp\":%lld,"
                             "\"iat\":%llu,\"nbf\":%llu,\"jti\":\"j1\",\"customerId\":\"c1\","
                             "\"publisherId\":\"123456789\"%s}",
                             iss, exp, NOW_SEC, NOW_SEC, extra ?: "") > 0);
        return s;
}

static JwtClaims claims_at(uint64_t iat, uint64_t nbf, uint64_t exp) {
        return (JwtClaims) {
                .iss = (char *) ISS,
                .sub = (char *) "c1",
                .aud = (char *) "123456789",
                .jti = (char *) "j1",
                .customer_id = (char *) "c1",
                .publisher_id = (char *) "123456789",
                .iat = iat,
                .nbf = nbf,
                .exp = exp,
        };
}

static char *sign_default(const Keyring *k) {
        JwtClaims c = claims_at(NOW_SEC, NOW_SEC, NOW_SEC + 900);
        char *t = NULL;

        ASSERT_OK(jwt_sign(k, &c, "EdDSA", &t));
        return t;
}

static int verify(const Keyring *k, const char *token) {
        JwtClaims c = {};
        int r;

        r = jwt_verify(k, token, ISS, NOW_SEC, 60, &c);
        jwt_claims_done(&c);
        return r;
}

static size_t strv_length(char **v) {
        size_t n = 0;

        while (v && v[n])
                n++;
        return n;
}

/* ---- known answers ---- */

TEST(token_hash) {
        char h[TOKEN_HASH_STRLEN + 1];

        token_hash("abc", h);
        ASSERT_STREQ(h, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
        token_hash("", h);
        ASSERT_STREQ(h, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}

TEST(rfc8037_a4) {
        /* RFC 8037 A.1 key (x) and the A.4 JWS over "Example of Ed25519 signing". */
        static const char x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        static const char jws[] =
                "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
                "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
        uint8_t pk[32];
        size_t n;
        char *bad;

        ASSERT_EQ(sodium_base642bin(pk, sizeof pk, x, strlen(x), NULL, &n, NULL, B64URL), 0);
        ASSERT_EQ(n, 32);
        ASSERT_EQ(jws_verify_ed25519(pk, jws), 0);

        /* One changed payload character */
        bad = strdup(jws);
        bad[strlen("eyJhbGciOiJFZERTQSJ9.RX")] = 'Y';
        ASSERT_EQ(jws_verify_ed25519(pk, bad), -EBADMSG);
        free(bad);

        /* Another key */
        pk[0] ^= 1;
        ASSERT_EQ(jws_verify_ed25519(pk, jws), -EBADMSG);
        pk[0] ^= 1;

        /* Shape */
        ASSERT_EQ(jws_verify_ed25519(pk, "a.b"), -EBADMSG);
        ASSERT_EQ(jws_verify_ed25519(pk, "a.b.c.d"), -EBADMSG);
        ASSERT_EQ(jws_verify_ed25519(pk, ""), -EBADMSG);
        ASSERT_EQ(jws_verify_ed25519(pk, NULL), -EBADMSG);
}

/* ---- random tokens ---- */

static bool all_in(const char *s, const char *alphabet) {
        return strspn(s, alphabet) == strlen(s);
}

#define B64URL_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

TEST(token_random) {
        char *a = NULL, *b = NULL;

        ASSERT_EQ(token_random(15, &a), -EINVAL);
        ASSERT_EQ(token_random(0, &a), -EINVAL);
        ASSERT_EQ(token_random(1025, &a), -EINVAL);
        ASSERT_TRUE(!a);

        ASSERT_OK(token_random(16, &a));
        ASSERT_EQ(strlen(a), 22);
        ASSERT_TRUE(all_in(a, B64URL_CHARS));
        erase_and_free(a);

        ASSERT_OK(token_random(32, &a));
        ASSERT_OK(token_random(32, &b));
        ASSERT_EQ(strlen(a), 43);
        ASSERT_TRUE(all_in(a, B64URL_CHARS));
        ASSERT_FALSE(streq(a, b));
        erase_and_free(a);
        erase_and_free(b);

        ASSERT_OK(token_random(1024, &a));
        ASSERT_EQ(strlen(a), sodium_base64_ENCODED_LEN(1024, B64URL) - 1);
        erase_and_free(a);
}

TEST(token_random_digits) {
        bool first_seen[10] = {};
        char *s = NULL;

        ASSERT_EQ(token_random_digits(0, &s), -EINVAL);

        for (unsigned i = 0; i < 2000; i++) {
                ASSERT_OK(token_random_digits(9, &s));
                ASSERT_EQ(strlen(s), 9);
                ASSERT_TRUE(all_in(s, "0123456789"));
                ASSERT_TRUE(s[0] != '0');
                first_seen[s[0] - '0'] = true;
                free(s);
        }
        /* Each of 1-9 leads with p = 1/9: missing one in 2000 draws has p < 1e-100. */
        for (unsigned d = 1; d <= 9; d++)
                ASSERT_TRUE(first_seen[d]);

        ASSERT_OK(token_random_digits(1, &s));
        ASSERT_EQ(strlen(s), 1);
        ASSERT_TRUE(s[0] >= '1' && s[0] <= '9');
        free(s);
}

TEST(token_random_from) {
        unsigned count[2] = {};
        char *s = NULL;

        ASSERT_EQ(token_random_from("", 8, &s), -EINVAL);
        ASSERT_EQ(token_random_from("ab", 0, &s), -EINVAL);

        ASSERT_OK(token_random_from("ab", 1000, &s));
        ASSERT_EQ(strlen(s), 1000);
        ASSERT_TRUE(all_in(s, "ab"));
        for (size_t i = 0; i < 1000; i++)
                count[s[i] - 'a']++;
        /* Both appear (p of missing one is 2^-999). */
        ASSERT_TRUE(count[0] > 0 && count[1] > 0);
        free(s);

        ASSERT_OK(token_random_from("X", 5, &s));
        ASSERT_STREQ(s, "XXXXX");
        free(s);
}

TEST(token_equal) {
        ASSERT_TRUE(token_equal("abcd", "abcd", 4));
        ASSERT_FALSE(token_equal("abcd", "abce", 4));
        ASSERT_TRUE(token_equal("abcd", "abce", 3));
        ASSERT_TRUE(token_equal("", "", 0));
}

TEST(claims_done) {
        JwtClaims c = {};

        jwt_claims_done(&c);
        jwt_claims_done(NULL);
        c.iss = strdup("x");
        c.kid = strdup("y");
        jwt_claims_done(&c);
        ASSERT_TRUE(!c.iss && !c.kid);
        jwt_claims_done(&c);
}

/* ---- JWT ---- */

TEST(sign_verify) {
        _cleanup_(freep) char *dir = new_dir_path(), *t = NULL, *t2 = NULL, *h = NULL, *c = NULL, *s = NULL;
        _cleanup_(keyring_freep) Keyring *k = NULL;
        JwtClaims in = claims_at(NOW_SEC, NOW_SEC, NOW_SEC + 900), out = {};
        json_t *hdr, *cl;
        struct stat st;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        ASSERT_EQ(stat(dir, &st), 0);
        ASSERT_EQ(st.st_mode & 07777, 0700);
        ASSERT_TRUE(keyring_active_kid(k));
        ASSERT_EQ(strlen(keyring_active_kid(k)), 16);
        ASSERT_EQ(strv_length(keyring_kids(k)), 1);
        ASSERT_STREQ(keyring_kids(k)[0], keyring_active_kid(k));

        ASSERT_OK(jwt_sign(k, &in, "EdDSA", &t));
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC, 60, &out));
        ASSERT_STREQ(out.iss, ISS);
        ASSERT_STREQ(out.sub, "c1");
        ASSERT_STREQ(out.aud, "123456789");
        ASSERT_STREQ(out.jti, "j1");
        ASSERT_STREQ(out.customer_id, "c1");
        ASSERT_STREQ(out.publisher_id, "123456789");
        ASSERT_EQ(out.iat, NOW_SEC);
        ASSERT_EQ(out.nbf, NOW_SEC);
        ASSERT_EQ(out.exp, NOW_SEC + 900);
        ASSERT_STREQ(out.kid, keyring_active_kid(k));
        jwt_claims_done(&out);

        /* The header is exactly {alg, typ, kid}; the claims carry every field. */
        split3(t, &h, &c, &s);
        hdr = decode_part(h);
        ASSERT_EQ(json_object_size(hdr), 3);
        ASSERT_STREQ(json_string_value(json_object_get(hdr, "alg")), "EdDSA");
        ASSERT_STREQ(json_string_value(json_object_get(hdr, "typ")), "at+jwt");
        ASSERT_STREQ(json_string_value(json_object_get(hdr, "kid")), keyring_active_kid(k));
        json_decref(hdr);
        cl = decode_part(c);
        ASSERT_EQ(json_object_size(cl), 9);
        ASSERT_STREQ(json_string_value(json_object_get(cl, "customerId")), "c1");
        ASSERT_EQ(json_integer_value(json_object_get(cl, "exp")), NOW_SEC + 900);
        json_decref(cl);

        /* RFC 9864 name, and NULL = EdDSA */
        ASSERT_OK(jwt_sign(k, &in, "Ed25519", &t2));
        ASSERT_OK(jwt_verify(k, t2, ISS, NOW_SEC, 0, &out));
        jwt_claims_done(&out);
        free(h);
        free(c);
        free(s);
        split3(t2, &h, &c, &s);
        hdr = decode_part(h);
        ASSERT_STREQ(json_string_value(json_object_get(hdr, "alg")), "Ed25519");
        json_decref(hdr);
        free(t2);
        ASSERT_OK(jwt_sign(k, &in, NULL, &t2));
        ASSERT_EQ(verify(k, t2), 0);

        /* Bad input to jwt_sign */
        free(t2);
        t2 = NULL;
        ASSERT_EQ(jwt_sign(k, &in, "none", &t2), -EINVAL);
        ASSERT_EQ(jwt_sign(k, &in, "HS256", &t2), -EINVAL);
        in.jti = NULL;
        ASSERT_EQ(jwt_sign(k, &in, "EdDSA", &t2), -EINVAL);
        in.jti = (char *) "\xff";
        ASSERT_EQ(jwt_sign(k, &in, "EdDSA", &t2), -EINVAL);
        in.jti = (char *) "j1";
        in.exp = UINT64_MAX;
        ASSERT_EQ(jwt_sign(k, &in, "EdDSA", &t2), -EINVAL);
        ASSERT_TRUE(!t2);

        /* The output is untouched on failure */
        out.iss = (char *) "untouched";
        ASSERT_EQ(jwt_verify(k, "x.y.z", ISS, NOW_SEC, 0, &out), -EBADMSG);
        ASSERT_STREQ(out.iss, "untouched");
}

/* Tokens changed without the key: each must fail. */
TEST(tampered) {
        _cleanup_(freep) char *dir = new_dir_path(), *t = NULL, *h = NULL, *c = NULL, *s = NULL;
        _cleanup_(keyring_freep) Keyring *k = NULL;
        char *x, *y, *z;
        const char *kid;
        size_t n;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        kid = keyring_active_kid(k);
        t = sign_default(k);
        split3(t, &h, &c, &s);
        ASSERT_EQ(verify(k, t), 0);

        /* alg none, with no and with the original signature */
        x = header_json("none", kid);
        y = b64s(x);
        z = join3(y, c, "");
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        z = join3(y, c, s);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(y);
        free(z);

        /* alg HS256 with an HMAC keyed with the public key (the classic confusion) */
        {
                uint8_t pk[32], mac[crypto_auth_hmacsha256_BYTES];
                json_t *jwks = NULL, *jwk;
                _cleanup_(freep) char *input = NULL, *m = NULL;

                ASSERT_OK(keyring_jwks(k, &jwks));
                jwk = json_array_get(json_object_get(jwks, "keys"), 0);
                ASSERT_EQ(sodium_base642bin(pk, sizeof pk, json_string_value(json_object_get(jwk, "x")),
                                            43, NULL, &n, NULL, B64URL), 0);
                json_decref(jwks);

                x = header_json("HS256", kid);
                y = b64s(x);
                ASSERT_TRUE(asprintf(&input, "%s.%s", y, c) > 0);
                crypto_auth_hmacsha256_state st;
                crypto_auth_hmacsha256_init(&st, pk, sizeof pk);
                crypto_auth_hmacsha256_update(&st, (const uint8_t *) input, strlen(input));
                crypto_auth_hmacsha256_final(&st, mac);
                m = b64(mac, sizeof mac);
                z = join3(y, c, m);
                ASSERT_EQ(verify(k, z), -EBADMSG);
                free(x);
                free(y);
                free(z);
        }

        /* unknown kid, original signature */
        x = header_json("EdDSA", "AAAAAAAAAAAAAAAA");
        y = b64s(x);
        z = join3(y, c, s);
        ASSERT_EQ(verify(k, z), -ENOKEY);       /* told apart: another idmd may have made that key */
        free(x);
        free(y);
        free(z);

        /* same header meaning, other bytes: the signature covers the encoded bytes */
        x = header_json("EdDSA", kid);
        y = b64s(x);
        ASSERT_STREQ(y, h);     /* sanity: this is the header jwt_sign wrote */
        free(x);
        free(y);
        ASSERT_TRUE(asprintf(&x, "{\"alg\": \"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid) > 0);
        y = b64s(x);
        z = join3(y, c, s);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(y);
        free(z);

        /* changed claims, original signature */
        x = claims_json(ISS, NOW_SEC + 900, NULL);
        y = b64s(x);
        ASSERT_STREQ(y, c);     /* sanity: the same claims text jwt_sign wrote */
        free(x);
        free(y);
        x = claims_json(ISS, NOW_SEC + 90000, NULL);
        y = b64s(x);
        z = join3(h, y, s);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(y);
        free(z);

        /* signature: truncated, one character changed, padded, non-canonical last character */
        n = strlen(s);
        ASSERT_EQ(n, 86);
        x = strndup(s, n - 1);
        z = join3(h, c, x);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(z);
        x = strndup(s, n - 4);
        z = join3(h, c, x);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(z);
        x = strdup(s);
        x[10] = x[10] == 'A' ? 'B' : 'A';
        z = join3(h, c, x);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(z);
        ASSERT_TRUE(asprintf(&x, "%s==", s) > 0);
        z = join3(h, c, x);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(z);
        {
                /* 64 bytes = 86 characters, the last holding 2 bits and 4 zero bits; setting one
                 * of those would decode to the same signature if the decoder were lax. */
                const char *p = strchr(B64URL_CHARS, s[n - 1]);
                ASSERT_TRUE(p);
                ASSERT_EQ((p - B64URL_CHARS) & 15, 0);
                x = strdup(s);
                x[n - 1] = B64URL_CHARS[(p - B64URL_CHARS) | 1];
                z = join3(h, c, x);
                ASSERT_EQ(verify(k, z), -EBADMSG);
                free(x);
                free(z);
        }
        /* standard base64 alphabet / whitespace */
        x = strdup(s);
        x[5] = '+';
        z = join3(h, c, x);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(x);
        free(z);
        ASSERT_TRUE(asprintf(&z, " %s", t) > 0);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        ASSERT_TRUE(asprintf(&z, "%s\n", t) > 0);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);

        /* shape: extra dot, missing part, empty parts */
        ASSERT_TRUE(asprintf(&z, "%s.", t) > 0);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        ASSERT_TRUE(asprintf(&z, "%s.%s", t, s) > 0);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        ASSERT_TRUE(asprintf(&z, "%s.%s", h, c) > 0);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        z = join3("", c, s);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        z = join3(h, "", s);
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        z = join3(h, c, "");
        ASSERT_EQ(verify(k, z), -EBADMSG);
        free(z);
        ASSERT_EQ(verify(k, ".."), -EBADMSG);
        ASSERT_EQ(verify(k, ""), -EBADMSG);
        ASSERT_EQ(verify(k, NULL), -EBADMSG);

        /* huge: a valid token with a claims part padded far beyond JWT_MAX */
        {
                size_t big = JWT_MAX + 100;
                char *pad = malloc(big + 1);
                memset(pad, 'A', big);
                pad[big] = 0;
                z = join3(h, pad, s);
                ASSERT_EQ(verify(k, z), -EBADMSG);
                free(z);
                free(pad);
        }
}

/* Tokens with a valid signature by our own key whose header or claims are wrong: each check is
 * reached on its own. */
TEST(forged) {
        _cleanup_(freep) char *dir = new_dir_path();
        _cleanup_(keyring_freep) Keyring *k = NULL;
        char kid[17], hdr[256], *t, *cl;
        JwtClaims out = {};

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        strcpy(kid, keyring_active_kid(k));

#define CHECK_HDR(expected, ...)                                                        \
        do {                                                                            \
                (void) snprintf(hdr, sizeof hdr, __VA_ARGS__);                          \
                cl = claims_json(ISS, NOW_SEC + 900, NULL);                             \
                t = forge(dir, kid, hdr, cl);                                           \
                fprintf(stderr, "  header %s\n", hdr);                                  \
                ASSERT_EQ(verify(k, t), expected);                                      \
                free(t);                                                                \
                free(cl);                                                               \
        } while (0)

        /* The helper works: a forged but well-formed token verifies. */
        CHECK_HDR(0, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(0, "{\"kid\":\"%s\",\"typ\":\"at+jwt\",\"alg\":\"Ed25519\"}", kid);
        CHECK_HDR(0, "{\"alg\":\"EdDSA\",\"typ\":\"application/at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(0, "{\"alg\":\"EdDSA\",\"typ\":\"AT+JWT\",\"kid\":\"%s\"}", kid);

        CHECK_HDR(-EBADMSG, "{\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"HS256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"RS256\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"eddsa\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":[\"EdDSA\"],\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\"}%s", "");
        CHECK_HDR(-ENOKEY, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"AAAAAAAAAAAAAAAA\"}%s", "");
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":7}%s", "");
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"crit\":[\"exp\"]}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"jku\":\"https://x\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"b64\":false}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"alg\":\"none\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"none\",\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\",\"kid\":\"%s\"}", kid, kid);
        CHECK_HDR(-EBADMSG, "[\"EdDSA\",\"at+jwt\",\"%s\"]", kid);
        CHECK_HDR(-EBADMSG, "\"%s\"", kid);
        CHECK_HDR(-EBADMSG, "not json %s", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"} x", kid);
        CHECK_HDR(-EBADMSG, "{\"alg\":\"EdDSA\\u0000\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);
#undef CHECK_HDR

        (void) snprintf(hdr, sizeof hdr, "{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"%s\"}", kid);

#define CHECK_CLAIMS(expected, text)                                                    \
        do {                                                                            \
                t = forge(dir, kid, hdr, text);                                         \
                fprintf(stderr, "  claims %s\n", (const char *) text);                  \
                ASSERT_EQ(verify(k, t), expected);                                      \
                free(t);                                                                \
        } while (0)

#define CLAIMS(iss, sub, aud, exp, iat, nbf, jti, cid, pid)                             \
        "{\"iss\":" iss ",\"sub\":" sub ",\"aud\":" aud ",\"exp\":" exp ",\"iat\":" iat \
        ",\"nbf\":" nbf ",\"jti\":" jti ",\"customerId\":" cid ",\"publisherId\":" pid "}"

#define Q(s) "\"" s "\""
#define ISSQ Q(ISS)
#define IAT "1700000000"
#define EXP "1700000900"

        CHECK_CLAIMS(0, CLAIMS(ISSQ, Q("c"), Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        /* unknown claims are ignored */
        cl = claims_json(ISS, NOW_SEC + 900, ",\"scope\":\"x\",\"n\":[1,2]");
        CHECK_CLAIMS(0, cl);
        free(cl);

        /* duplicate keys, before or after */
        cl = claims_json(ISS, NOW_SEC + 900, ",\"iss\":\"https://evil\"");
        CHECK_CLAIMS(-EBADMSG, cl);
        free(cl);
        cl = claims_json(ISS, NOW_SEC + 900, ",\"exp\":9999999999");
        CHECK_CLAIMS(-EBADMSG, cl);
        free(cl);

        /* not an object */
        CHECK_CLAIMS(-EBADMSG, "[1,2]");
        CHECK_CLAIMS(-EBADMSG, "null");
        CHECK_CLAIMS(-EBADMSG, "\"x\"");
        CHECK_CLAIMS(-EBADMSG, "{");
        CHECK_CLAIMS(-EBADMSG, "Example of Ed25519 signing");

        /* wrong types and values */
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), Q(EXP), IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), "1700000900.5", IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), "1.7e9", IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), "-1", IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), "99999999999999999999999", IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), "null", IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), EXP, "true", IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), EXP, IAT, "-5", Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q(""), Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, "7", Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), "[\"p\"]", EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), EXP, IAT, IAT, "{}", Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), EXP, IAT, IAT, Q("j"), "123", Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c"), Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), "123456789"));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(ISSQ, Q("c\\u0000x"), Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        /* wrong or missing iss */
        CHECK_CLAIMS(-EBADMSG, CLAIMS(Q("https://evil"), Q("c"), Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, CLAIMS(Q(ISS "/"), Q("c"), Q("p"), EXP, IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-EBADMSG, "{\"sub\":\"c\",\"aud\":\"p\",\"exp\":" EXP ",\"iat\":" IAT ",\"nbf\":" IAT
                               ",\"jti\":\"j\",\"customerId\":\"c\",\"publisherId\":\"p\"}");
        /* missing exp / nbf / customerId */
        CHECK_CLAIMS(-EBADMSG, "{\"iss\":" ISSQ ",\"sub\":\"c\",\"aud\":\"p\",\"iat\":" IAT ",\"nbf\":" IAT
                               ",\"jti\":\"j\",\"customerId\":\"c\",\"publisherId\":\"p\"}");
        CHECK_CLAIMS(-EBADMSG, "{\"iss\":" ISSQ ",\"sub\":\"c\",\"aud\":\"p\",\"exp\":" EXP ",\"iat\":" IAT
                               ",\"jti\":\"j\",\"customerId\":\"c\",\"publisherId\":\"p\"}");
        CHECK_CLAIMS(-EBADMSG, "{\"iss\":" ISSQ ",\"sub\":\"c\",\"aud\":\"p\",\"exp\":" EXP ",\"iat\":" IAT
                               ",\"nbf\":" IAT ",\"jti\":\"j\",\"publisherId\":\"p\"}");
        /* expired, not yet valid */
        CHECK_CLAIMS(-ETIME, CLAIMS(ISSQ, Q("c"), Q("p"), "1699999000", IAT, IAT, Q("j"), Q("c"), Q("p")));
        CHECK_CLAIMS(-ETIME, CLAIMS(ISSQ, Q("c"), Q("p"), "1700009000", IAT, "1700001000", Q("j"), Q("c"), Q("p")));
        /* iss is checked before the time: a foreign expired token is "forged", not "expired" */
        CHECK_CLAIMS(-EBADMSG, CLAIMS(Q("x"), Q("c"), Q("p"), "1699999000", IAT, IAT, Q("j"), Q("c"), Q("p")));

#undef CHECK_CLAIMS
        /* The returned claims are those of the token. */
        t = forge(dir, kid, hdr, CLAIMS(ISSQ, Q("cust"), Q("pub"), EXP, IAT, "1700000001", Q("jj"), Q("cid"), Q("pid")));
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC, 60, &out));
        ASSERT_STREQ(out.sub, "cust");
        ASSERT_STREQ(out.aud, "pub");
        ASSERT_STREQ(out.jti, "jj");
        ASSERT_STREQ(out.customer_id, "cid");
        ASSERT_STREQ(out.publisher_id, "pid");
        ASSERT_EQ(out.nbf, 1700000001);
        ASSERT_STREQ(out.kid, kid);
        jwt_claims_done(&out);
        free(t);
}

TEST(time) {
        _cleanup_(freep) char *dir = new_dir_path();
        _cleanup_(keyring_freep) Keyring *k = NULL;
        JwtClaims c, out = {};
        char *t = NULL;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));

        /* expired 10 s ago */
        c = claims_at(NOW_SEC - 910, NOW_SEC - 910, NOW_SEC - 10);
        ASSERT_OK(jwt_sign(k, &c, "EdDSA", &t));
        ASSERT_EQ(jwt_verify(k, t, ISS, NOW_SEC, 0, &out), -ETIME);
        ASSERT_EQ(jwt_verify(k, t, ISS, NOW_SEC, 10, &out), -ETIME);     /* now >= exp + leeway */
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC, 11, &out));
        jwt_claims_done(&out);
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC, 60, &out));
        jwt_claims_done(&out);
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC - 11, 0, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(jwt_verify(k, t, ISS, NOW_SEC - 10, 0, &out), -ETIME);  /* exactly at exp */
        ASSERT_EQ(jwt_verify(k, t, "https://other", NOW_SEC, 60, &out), -EBADMSG);
        free(t);

        /* not valid for another 100 s */
        c = claims_at(NOW_SEC, NOW_SEC + 100, NOW_SEC + 1000);
        ASSERT_OK(jwt_sign(k, &c, "EdDSA", &t));
        ASSERT_EQ(jwt_verify(k, t, ISS, NOW_SEC, 0, &out), -ETIME);
        ASSERT_EQ(jwt_verify(k, t, ISS, NOW_SEC, 99, &out), -ETIME);
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC, 100, &out));
        jwt_claims_done(&out);
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC + 100, 0, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(jwt_verify(k, t, ISS, NOW_SEC + 1000, 0, &out), -ETIME);
        free(t);

        /* extremes do not overflow */
        c = claims_at(0, 0, INT64_MAX);
        ASSERT_OK(jwt_sign(k, &c, "EdDSA", &t));
        ASSERT_OK(jwt_verify(k, t, ISS, NOW_SEC, UINT64_MAX, &out));
        jwt_claims_done(&out);
        ASSERT_OK(jwt_verify(k, t, ISS, UINT64_MAX - 1, UINT64_MAX, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(jwt_verify(k, t, ISS, UINT64_MAX, 0, &out), -ETIME);
        free(t);
        c = claims_at(0, INT64_MAX, INT64_MAX);
        ASSERT_OK(jwt_sign(k, &c, "EdDSA", &t));
        ASSERT_EQ(jwt_verify(k, t, ISS, 0, 0, &out), -ETIME);
        ASSERT_EQ(jwt_verify(k, t, ISS, INT64_MAX - 1, 0, &out), -ETIME);
        ASSERT_OK(jwt_verify(k, t, ISS, INT64_MAX - 1, 1, &out));
        jwt_claims_done(&out);
        free(t);
}

/* ---- the cache of verified tokens ---- */

static JwtCacheStats cache_stats(const Keyring *k) {
        JwtCacheStats st;

        jwt_cache_stats(k, &st);
        return st;
}

/* Signs claims_at(...) with a jti of its own (so every token differs). */
static char *sign_jti(const Keyring *k, unsigned n, uint64_t nbf, uint64_t exp) {
        JwtClaims c = claims_at(NOW_SEC, nbf, exp);
        char jti[32], *t = NULL;

        snprintf(jti, sizeof jti, "jti-%u", n);
        c.jti = jti;
        c.sid = (char *) "family1";
        ASSERT_OK(jwt_sign(k, &c, "EdDSA", &t));
        return t;
}

/* What sessions.c does: look up, and remember what was verified now (when its checks pass). */
static int verify_cached(const Keyring *k, const char *t, const char *iss, uint64_t now, uint64_t leeway,
                         JwtClaims *out) {
        int r = jwt_verify_cached(k, t, iss, now, leeway, out);

        if (r == 0)
                jwt_cache_remember(k, t, out, now);
        return r;
}

TEST(verify_cache) {
        _cleanup_(freep) char *dir = new_dir_path();
        _cleanup_(keyring_freep) Keyring *k = NULL;
        _cleanup_(freep) char *t = NULL, *bad = NULL, *late = NULL, *old = NULL;
        JwtClaims out = {};
        JwtCacheStats st;
        uint64_t gen, exp = NOW_SEC + 900;
        char *tokens[40];

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        ASSERT_EQ(cache_stats(k).capacity, JWT_CACHE_ENTRIES);
        ASSERT_TRUE(keyring_generation(k) > 0);
        ASSERT_OK(jwt_cache_set_capacity(k, 8));
        ASSERT_EQ(cache_stats(k).capacity, 8);

        /* Only what the caller remembers is cached. */
        t = sign_jti(k, 0, NOW_SEC, exp);
        ASSERT_EQ(jwt_verify_cached(k, t, ISS, NOW_SEC, 60, &out), 0);
        jwt_claims_done(&out);
        ASSERT_EQ(jwt_verify_cached(k, t, ISS, NOW_SEC, 60, &out), 0);
        jwt_claims_done(&out);
        ASSERT_EQ(cache_stats(k).entries, 0);
        ASSERT_EQ(cache_stats(k).misses, 2);

        /* The second answer comes from the cache and is the same. */
        ASSERT_OK(verify_cached(k, t, ISS, NOW_SEC, 60, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(verify_cached(k, t, ISS, NOW_SEC + 1, 60, &out), 1);
        ASSERT_STREQ(out.jti, "jti-0");
        ASSERT_STREQ(out.sid, "family1");
        ASSERT_STREQ(out.customer_id, "c1");
        ASSERT_STREQ(out.kid, keyring_active_kid(k));
        ASSERT_EQ(out.exp, exp);
        jwt_claims_done(&out);
        st = cache_stats(k);
        ASSERT_EQ(st.hits, 1);
        ASSERT_EQ(st.misses, 3);
        ASSERT_EQ(st.entries, 1);

        /* A cached token does not make an altered one pass, nor another issuer. */
        bad = strdup(t);
        ASSERT_TRUE(bad);
        bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
        ASSERT_EQ(verify_cached(k, bad, ISS, NOW_SEC, 60, &out), -EBADMSG);
        ASSERT_EQ(verify_cached(k, t, "https://other", NOW_SEC, 60, &out), -EBADMSG);
        ASSERT_EQ(verify_cached(k, NULL, ISS, NOW_SEC, 60, &out), -EBADMSG);

        /* Never past exp: up to exp - 1 from the cache; at exp the entry goes and jwt_verify()
         * decides (the leeway), and nothing is cached again. */
        ASSERT_OK(verify_cached(k, t, ISS, exp - 1, 60, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(cache_stats(k).hits, 2);
        ASSERT_OK(verify_cached(k, t, ISS, exp, 60, &out));
        jwt_claims_done(&out);
        st = cache_stats(k);
        ASSERT_EQ(st.hits, 2);
        ASSERT_EQ(st.entries, 0);
        ASSERT_EQ(verify_cached(k, t, ISS, exp + 60, 60, &out), -ETIME);
        ASSERT_EQ(verify_cached(k, t, ISS, exp, 0, &out), -ETIME);
        ASSERT_EQ(cache_stats(k).entries, 0);

        /* nbf: a clock set back before it (beyond the leeway) is refused, cached or not. */
        late = sign_jti(k, 1, NOW_SEC + 100, exp);
        ASSERT_OK(verify_cached(k, late, ISS, NOW_SEC + 100, 0, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(verify_cached(k, late, ISS, NOW_SEC, 0, &out), -ETIME);
        ASSERT_OK(verify_cached(k, late, ISS, NOW_SEC, 100, &out));
        jwt_claims_done(&out);

        /* The bound: 40 tokens through a cache of 8. */
        for (unsigned i = 0; i < ELEMENTSOF(tokens); i++) {
                tokens[i] = sign_jti(k, 100 + i, NOW_SEC, exp);
                ASSERT_OK(verify_cached(k, tokens[i], ISS, NOW_SEC, 60, &out));
                jwt_claims_done(&out);
                ASSERT_TRUE(cache_stats(k).entries <= 8);
        }
        for (unsigned i = 0; i < ELEMENTSOF(tokens); i++) {
                ASSERT_OK(verify_cached(k, tokens[i], ISS, NOW_SEC, 60, &out));
                ASSERT_EQ(out.exp, exp);
                jwt_claims_done(&out);
                ASSERT_TRUE(cache_stats(k).entries <= 8);
        }
        st = cache_stats(k);
        ASSERT_EQ(st.entries, 8);
        ASSERT_TRUE(st.evictions >= 2 * ELEMENTSOF(tokens) - 8 - 8);

        /* A revocation empties it at the next lookup. */
        jwt_cache_revoke();
        ASSERT_OK(verify_cached(k, tokens[0], ISS, NOW_SEC, 60, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(cache_stats(k).flushes, st.flushes + 1);
        ASSERT_EQ(cache_stats(k).entries, 1);

        /* Rotation empties it; dropping the retired keys too, and their tokens fail at once. */
        old = sign_jti(k, 2, NOW_SEC, exp);
        ASSERT_OK(verify_cached(k, old, ISS, NOW_SEC, 60, &out));
        jwt_claims_done(&out);
        ASSERT_OK(verify_cached(k, old, ISS, NOW_SEC, 60, &out));
        jwt_claims_done(&out);
        gen = keyring_generation(k);
        ASSERT_OK(keyring_rotate(k, NOW_USEC + 1, RETAIN_USEC));
        ASSERT_EQ(keyring_generation(k), gen + 1);
        ASSERT_EQ(cache_stats(k).entries, 0);
        ASSERT_OK(verify_cached(k, old, ISS, NOW_SEC, 60, &out));      /* the retired key verifies */
        jwt_claims_done(&out);
        ASSERT_EQ(cache_stats(k).entries, 1);
        ASSERT_EQ(keyring_drop_retired(k), 1);
        ASSERT_EQ(keyring_generation(k), gen + 2);
        ASSERT_EQ(cache_stats(k).entries, 0);
        ASSERT_EQ(verify_cached(k, old, ISS, NOW_SEC, 60, &out), -ENOKEY);
        ASSERT_EQ(verify_cached(k, tokens[1], ISS, NOW_SEC, 60, &out), -ENOKEY);

        /* Off: still verifies. */
        ASSERT_OK(jwt_cache_set_capacity(k, 0));
        free(t);
        t = sign_jti(k, 3, NOW_SEC, exp);
        ASSERT_OK(verify_cached(k, t, ISS, NOW_SEC, 60, &out));
        jwt_claims_done(&out);
        ASSERT_EQ(cache_stats(k).capacity, 0);

        for (unsigned i = 0; i < ELEMENTSOF(tokens); i++)
                free(tokens[i]);
}

/* ---- keyring ---- */

static uint64_t key_file_retired(const char *dir, const char *kid) {
        _cleanup_(freep) char *p = key_path(dir, kid);
        json_t *j = read_json(p), *v;
        uint64_t r;

        v = json_object_get(j, "retired");
        r = json_is_null(v) ? UINT64_MAX : (uint64_t) json_integer_value(v);
        json_decref(j);
        return r;
}

TEST(key_file) {
        _cleanup_(freep) char *dir = new_dir_path(), *p = NULL;
        _cleanup_(keyring_freep) Keyring *k = NULL;
        json_t *j;
        struct stat st;
        uint8_t sk[64];
        size_t n;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        p = key_path(dir, keyring_active_kid(k));
        ASSERT_EQ(stat(p, &st), 0);
        ASSERT_TRUE(S_ISREG(st.st_mode));
        ASSERT_EQ(st.st_mode & 07777, 0600);

        j = read_json(p);
        ASSERT_EQ(json_object_size(j), 4);
        ASSERT_STREQ(json_string_value(json_object_get(j, "kid")), keyring_active_kid(k));
        ASSERT_EQ(json_integer_value(json_object_get(j, "created")), NOW_USEC);
        ASSERT_TRUE(json_is_null(json_object_get(j, "retired")));
        ASSERT_EQ(sodium_base642bin(sk, sizeof sk, json_string_value(json_object_get(j, "secretKey")),
                                    json_string_length(json_object_get(j, "secretKey")), NULL, &n, NULL,
                                    B64URL), 0);
        ASSERT_EQ(n, 64);
        sodium_memzero(sk, sizeof sk);
        json_decref(j);
}

TEST(reload) {
        _cleanup_(freep) char *dir = new_dir_path(), *t = NULL, *kid = NULL;
        Keyring *k = NULL;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        kid = strdup(keyring_active_kid(k));
        t = sign_default(k);
        k = keyring_free(k);
        ASSERT_TRUE(!k);

        ASSERT_OK(keyring_load(dir, NOW_USEC + 5 * USEC, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), kid);
        ASSERT_EQ(strv_length(keyring_kids(k)), 1);
        ASSERT_EQ(verify(k, t), 0);
        keyring_free(k);
        ASSERT_TRUE(!keyring_free(NULL));
}

TEST(rotation) {
        _cleanup_(freep) char *dir = new_dir_path(), *t1 = NULL, *t2 = NULL, *a = NULL, *b = NULL, *pa = NULL;
        const uint64_t t_rot = NOW_USEC + 10 * USEC;
        Keyring *k = NULL;
        JwtClaims out = {};
        char **kids;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        a = strdup(keyring_active_kid(k));
        pa = key_path(dir, a);
        t1 = sign_default(k);

        ASSERT_OK(keyring_rotate(k, t_rot, RETAIN_USEC));
        b = strdup(keyring_active_kid(k));
        ASSERT_FALSE(streq(a, b));
        kids = keyring_kids(k);
        ASSERT_EQ(strv_length(kids), 2);
        ASSERT_STREQ(kids[0], b);
        ASSERT_STREQ(kids[1], a);
        ASSERT_EQ(key_file_retired(dir, a), t_rot);
        ASSERT_EQ(key_file_retired(dir, b), UINT64_MAX);

        /* the old key still verifies; the new one signs */
        ASSERT_OK(jwt_verify(k, t1, ISS, NOW_SEC, 60, &out));
        ASSERT_STREQ(out.kid, a);
        jwt_claims_done(&out);
        t2 = sign_default(k);
        ASSERT_OK(jwt_verify(k, t2, ISS, NOW_SEC, 60, &out));
        ASSERT_STREQ(out.kid, b);
        jwt_claims_done(&out);
        k = keyring_free(k);

        /* at exactly retired + retain the old key is still kept */
        ASSERT_OK(keyring_load(dir, t_rot + RETAIN_USEC, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), b);
        ASSERT_EQ(strv_length(keyring_kids(k)), 2);
        ASSERT_EQ(verify(k, t1), 0);
        k = keyring_free(k);

        /* one microsecond later it is gone, from memory and disk, and its tokens fail */
        ASSERT_OK(keyring_load(dir, t_rot + RETAIN_USEC + 1, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), b);
        ASSERT_EQ(strv_length(keyring_kids(k)), 1);
        ASSERT_FALSE(file_exists(pa));
        ASSERT_EQ(verify(k, t1), -ENOKEY);
        ASSERT_EQ(verify(k, t2), 0);

        /* rotate prunes too: b retired now, then a rotation after retain drops it */
        ASSERT_OK(keyring_rotate(k, t_rot + RETAIN_USEC + 2, RETAIN_USEC));
        ASSERT_EQ(strv_length(keyring_kids(k)), 2);
        ASSERT_OK(keyring_rotate(k, t_rot + 3 * RETAIN_USEC, RETAIN_USEC));
        kids = keyring_kids(k);
        ASSERT_EQ(strv_length(kids), 2);        /* c (retired now) and d (active); b pruned */
        ASSERT_FALSE(streq(kids[0], b) || streq(kids[1], b));
        ASSERT_EQ(verify(k, t2), -ENOKEY);
        {
                _cleanup_(freep) char *pb = key_path(dir, b);
                ASSERT_FALSE(file_exists(pb));
        }

        /* a clock step backwards does not make the older key active again on reload */
        ASSERT_OK(keyring_rotate(k, NOW_USEC, RETAIN_USEC * 100));
        free(b);
        b = strdup(keyring_active_kid(k));
        k = keyring_free(k);
        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC * 100, &k));
        ASSERT_STREQ(keyring_active_kid(k), b);
        keyring_free(k);
}

TEST(jwks) {
        _cleanup_(freep) char *dir = new_dir_path(), *t = NULL, *h = NULL, *c = NULL, *s = NULL;
        _cleanup_(keyring_freep) Keyring *k = NULL;
        json_t *jwks = NULL, *keys, *hdr;
        uint8_t pk[2][32];

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        ASSERT_OK(keyring_rotate(k, NOW_USEC + USEC, RETAIN_USEC));
        t = sign_default(k);
        split3(t, &h, &c, &s);
        hdr = decode_part(h);

        ASSERT_OK(keyring_jwks(k, &jwks));
        ASSERT_EQ(json_object_size(jwks), 1);
        keys = json_object_get(jwks, "keys");
        ASSERT_EQ(json_array_size(keys), 2);
        for (size_t i = 0; i < 2; i++) {
                json_t *jwk = json_array_get(keys, i);
                const char *x = json_string_value(json_object_get(jwk, "x"));
                uint8_t hsh[32];
                char *hb;
                size_t n;

                ASSERT_EQ(json_object_size(jwk), 6);
                ASSERT_STREQ(json_string_value(json_object_get(jwk, "kty")), "OKP");
                ASSERT_STREQ(json_string_value(json_object_get(jwk, "crv")), "Ed25519");
                ASSERT_STREQ(json_string_value(json_object_get(jwk, "use")), "sig");
                ASSERT_STREQ(json_string_value(json_object_get(jwk, "alg")), "EdDSA");
                ASSERT_STREQ(json_string_value(json_object_get(jwk, "kid")), keyring_kids(k)[i]);
                ASSERT_TRUE(x);
                ASSERT_EQ(strlen(x), 43);
                ASSERT_EQ(sodium_base642bin(pk[i], 32, x, strlen(x), NULL, &n, NULL, B64URL), 0);
                ASSERT_EQ(n, 32);

                /* kid = first 16 characters of base64url(BLAKE2b-256(x)) */
                crypto_generichash(hsh, sizeof hsh, pk[i], 32, NULL, 0);
                hb = b64(hsh, sizeof hsh);
                hb[16] = 0;
                ASSERT_STREQ(hb, keyring_kids(k)[i]);
                free(hb);
        }
        /* keys[0] is the active key, the one in the token's header, and its x verifies it */
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(keys, 0), "kid")),
                     json_string_value(json_object_get(hdr, "kid")));
        ASSERT_EQ(jws_verify_ed25519(pk[0], t), 0);
        ASSERT_EQ(jws_verify_ed25519(pk[1], t), -EBADMSG);
        json_decref(hdr);
        json_decref(jwks);
}

TEST(permissions) {
        _cleanup_(freep) char *dir = new_dir_path(), *p = NULL, *kid = NULL;
        Keyring *k = NULL;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        kid = strdup(keyring_active_kid(k));
        p = key_path(dir, kid);
        k = keyring_free(k);

        ASSERT_EQ(chmod(p, 0644), 0);
        ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EPERM);
        ASSERT_EQ(chmod(p, 0640), 0);
        ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EPERM);
        ASSERT_EQ(chmod(p, 0604), 0);
        ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EPERM);
        ASSERT_TRUE(!k);
        ASSERT_EQ(chmod(p, 0400), 0);
        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), kid);
        k = keyring_free(k);
        ASSERT_EQ(chmod(p, 0600), 0);

        /* a directory others can write to */
        ASSERT_EQ(chmod(dir, 0777), 0);
        ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EPERM);
        ASSERT_EQ(chmod(dir, 0770), 0);
        ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EPERM);
        ASSERT_EQ(chmod(dir, 0755), 0);
        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        k = keyring_free(k);

        /* a symlink instead of a key file is refused */
        {
                _cleanup_(freep) char *target = path_join(tmp_root, "target.key");
                ASSERT_EQ(rename(p, target), 0);
                ASSERT_EQ(symlink(target, p), 0);
                ASSERT_TRUE(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k) < 0);
                ASSERT_TRUE(!k);
                ASSERT_EQ(unlink(p), 0);
                ASSERT_EQ(rename(target, p), 0);
                ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
                ASSERT_STREQ(keyring_active_kid(k), kid);
                k = keyring_free(k);
        }
}

/* A crash between the two writes of keyring_rotate leaves two active keys: the newest wins. */
TEST(two_active) {
        _cleanup_(freep) char *d1 = new_dir_path(), *d2 = new_dir_path(), *a = NULL, *b = NULL, *pb1 = NULL,
                *pb2 = NULL, *text = NULL, *t = NULL;
        Keyring *k = NULL;
        char **kids;

        ASSERT_OK(keyring_load(d1, NOW_USEC, RETAIN_USEC, &k));
        a = strdup(keyring_active_kid(k));
        t = sign_default(k);
        k = keyring_free(k);
        ASSERT_OK(keyring_load(d2, NOW_USEC + 5 * USEC, RETAIN_USEC, &k));
        b = strdup(keyring_active_kid(k));
        k = keyring_free(k);

        pb2 = key_path(d2, b);
        pb1 = key_path(d1, b);
        text = read_text(pb2);
        write_file(pb1, text, 0600);
        sodium_memzero(text, strlen(text));

        ASSERT_OK(keyring_load(d1, NOW_USEC + 10 * USEC, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), b);
        kids = keyring_kids(k);
        ASSERT_EQ(strv_length(kids), 2);
        ASSERT_STREQ(kids[1], a);
        ASSERT_EQ(key_file_retired(d1, a), NOW_USEC + 10 * USEC);
        ASSERT_EQ(key_file_retired(d1, b), UINT64_MAX);
        ASSERT_EQ(verify(k, t), 0);
        k = keyring_free(k);

        /* all keys retired: a new active one is made */
        {
                json_t *j;
                char *s;

                j = read_json(pb1);
                ASSERT_EQ(json_object_set_new(j, "retired", json_integer((json_int_t) NOW_USEC)), 0);
                s = json_dumps(j, JSON_COMPACT);
                write_file(pb1, s, 0600);
                free(s);
                json_decref(j);
        }
        ASSERT_OK(keyring_load(d1, NOW_USEC + 20 * USEC, RETAIN_USEC, &k));
        ASSERT_EQ(strv_length(keyring_kids(k)), 3);
        ASSERT_FALSE(streq(keyring_active_kid(k), a) || streq(keyring_active_kid(k), b));
        k = keyring_free(k);
}

TEST(bad_files) {
        _cleanup_(freep) char *dir = new_dir_path(), *p = NULL, *kid = NULL, *good = NULL, *other = NULL,
                *tmp = NULL, *readme = NULL;
        Keyring *k = NULL;
        json_t *j;
        char *s;

        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        kid = strdup(keyring_active_kid(k));
        k = keyring_free(k);
        p = key_path(dir, kid);
        good = read_text(p);

        /* stale temporary files are removed, other names ignored */
        ASSERT_TRUE(asprintf(&tmp, "%s/.%s.key.tmp", dir, kid) > 0);
        write_file(tmp, "garbage", 0600);
        readme = path_join(dir, "README");
        write_file(readme, "not a key", 0644);
        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), kid);
        ASSERT_FALSE(file_exists(tmp));
        ASSERT_TRUE(file_exists(readme));
        k = keyring_free(k);

#define CHECK_CONTENT(text)                                                                     \
        do {                                                                                    \
                write_file(p, text, 0600);                                                      \
                ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EBADMSG);              \
                ASSERT_TRUE(!k);                                                                \
        } while (0)

        CHECK_CONTENT("");
        CHECK_CONTENT("garbage");
        CHECK_CONTENT("[]");
        CHECK_CONTENT("{}");

#define CHECK_FIELD(field, value)                                                               \
        do {                                                                                    \
                json_t *_v = (value);                                                           \
                j = json_loads(good, 0, NULL);                                                  \
                ASSERT_TRUE(j);                                                                 \
                if (_v)                                                                         \
                        ASSERT_EQ(json_object_set_new(j, field, _v), 0);                        \
                else                                                                            \
                        ASSERT_EQ(json_object_del(j, field), 0);                                \
                s = json_dumps(j, JSON_COMPACT);                                                \
                CHECK_CONTENT(s);                                                               \
                free(s);                                                                        \
                json_decref(j);                                                                 \
        } while (0)

        CHECK_FIELD("kid", json_string("AAAAAAAAAAAAAAAA"));
        CHECK_FIELD("kid", NULL);
        CHECK_FIELD("created", json_string("1"));
        CHECK_FIELD("created", json_integer(-1));
        CHECK_FIELD("created", NULL);
        CHECK_FIELD("retired", json_string("never"));
        CHECK_FIELD("retired", NULL);
        CHECK_FIELD("secretKey", json_string("AAAA"));
        CHECK_FIELD("secretKey", json_integer(1));
        CHECK_FIELD("secretKey", NULL);
        {
                /* 64 bytes that are not seed || public key */
                uint8_t junk[64];
                char *x;
                memset(junk, 7, sizeof junk);
                x = b64(junk, sizeof junk);
                CHECK_FIELD("secretKey", json_string(x));
                free(x);
        }
        {
                /* the right seed (so the right kid) but a damaged public half */
                json_t *g = json_loads(good, 0, NULL), *v = json_object_get(g, "secretKey");
                uint8_t sk[64];
                size_t n;
                char *x;

                ASSERT_EQ(sodium_base642bin(sk, sizeof sk, json_string_value(v), json_string_length(v), NULL,
                                            &n, NULL, B64URL), 0);
                sk[40] ^= 1;
                x = b64(sk, sizeof sk);
                sodium_memzero(sk, sizeof sk);
                CHECK_FIELD("secretKey", json_string(x));
                free(x);
                json_decref(g);
        }
        /* duplicate key */
        {
                char *d;
                ASSERT_TRUE(asprintf(&d, "{\"created\":1,%s", good + 1) > 0);
                CHECK_CONTENT(d);
                free(d);
        }
        /* a good key under another name */
        write_file(p, good, 0600);
        ASSERT_TRUE(asprintf(&other, "%s/BBBBBBBBBBBBBBBB.key", dir) > 0);
        ASSERT_EQ(rename(p, other), 0);
        ASSERT_EQ(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k), -EBADMSG);
        ASSERT_EQ(rename(other, p), 0);
#undef CHECK_FIELD
#undef CHECK_CONTENT

        /* restored: loads again with the same key */
        ASSERT_OK(keyring_load(dir, NOW_USEC, RETAIN_USEC, &k));
        ASSERT_STREQ(keyring_active_kid(k), kid);
        k = keyring_free(k);
        sodium_memzero(good, strlen(good));
}

/* Keys as records (a store several idmd share): settled, rotated, dropped, taken up by a keyring
 * that never touches a directory; records are checked as key files are. */
static json_t *copy(json_t *records) {
        json_t *c = json_deep_copy(records);

        ASSERT_TRUE(c);
        return c;
}

static int set_records(Keyring *k, json_t *records, uint64_t now_usec) {
        json_auto_t *c = copy(records);

        return keyring_set_records(k, c, now_usec, RETAIN_USEC);
}

TEST(records) {
        json_auto_t *records = json_object(), *spent = NULL, *bad = NULL;
        _cleanup_(keyring_freep) Keyring *k = NULL, *other = NULL;
        _cleanup_(freep) char *t1 = NULL, *t2 = NULL, *first = NULL, *kid = NULL;
        const char *secret;
        unsigned dropped = 99;
        uint64_t gen;

        /* None active: one is made. */
        ASSERT_OK(key_records_update(records, NOW_USEC, RETAIN_USEC, KEY_RECORDS_SETTLE, &dropped));
        ASSERT_EQ(dropped, 0);
        ASSERT_EQ(json_object_size(records), 1);
        first = strdup(json_object_iter_key(json_object_iter(records)));
        ASSERT_TRUE(json_is_null(json_object_get(json_object_get(records, first), "retired")));

        /* Reading records wipes their secrets. */
        spent = copy(records);
        ASSERT_OK(keyring_from_records(spent, NOW_USEC, RETAIN_USEC, &k));
        secret = json_string_value(json_object_get(json_object_get(spent, first), "secretKey"));
        ASSERT_TRUE(secret && json_string_length(json_object_get(json_object_get(spent, first), "secretKey")) > 0);
        for (const char *c = secret; c < secret + json_string_length(json_object_get(json_object_get(spent, first),
                                                                                       "secretKey")); c++)
                ASSERT_EQ(*c, 0);
        ASSERT_STREQ(keyring_active_kid(k), first);
        t1 = sign_default(k);
        ASSERT_OK(verify(k, t1));

        /* Settling again changes nothing; the same set again is no change. */
        ASSERT_OK(key_records_update(records, NOW_USEC + 1, RETAIN_USEC, KEY_RECORDS_SETTLE, NULL));
        ASSERT_EQ(json_object_size(records), 1);
        gen = keyring_generation(k);
        ASSERT_EQ(set_records(k, records, NOW_USEC + 2), 0);
        ASSERT_EQ(keyring_generation(k), gen);

        /* A rotation in the records: another keyring (another idmd) takes it up, and the first
         * key's tokens verify there until it expires. */
        ASSERT_OK(key_records_update(records, NOW_USEC + 10, RETAIN_USEC, KEY_RECORDS_ROTATE, NULL));
        ASSERT_EQ(json_object_size(records), 2);
        ASSERT_EQ(json_integer_value(json_object_get(json_object_get(records, first), "retired")), NOW_USEC + 10);
        spent = (json_decref(spent), copy(records));
        ASSERT_OK(keyring_from_records(spent, NOW_USEC + 10, RETAIN_USEC, &other));
        t2 = sign_default(other);
        ASSERT_EQ(verify(k, t2), -ENOKEY);              /* k has not seen it yet */
        ASSERT_EQ(set_records(k, records, NOW_USEC + 11), 1);
        ASSERT_TRUE(keyring_generation(k) != gen);
        kid = strdup(keyring_active_kid(k));   /* (kids are k's until its keys change) */
        ASSERT_STREQ(kid, keyring_active_kid(other));
        ASSERT_FALSE(streq(kid, first));
        ASSERT_OK(verify(k, t2));
        ASSERT_OK(verify(k, t1));
        ASSERT_EQ(strv_length(keyring_kids(k)), 2);

        /* Retired longer than retain: gone from memory (and from the records at their next
         * update), and its tokens with it. */
        ASSERT_EQ(set_records(k, records, NOW_USEC + 10 + RETAIN_USEC + 1), 1);
        ASSERT_EQ(strv_length(keyring_kids(k)), 1);
        ASSERT_EQ(verify(k, t1), -ENOKEY);
        ASSERT_OK(set_records(k, records, NOW_USEC + 12));      /* back in time: the record is still there */
        ASSERT_OK(verify(k, t1));

        /* Dropping the retired keys (a leaked key). */
        ASSERT_OK(key_records_update(records, NOW_USEC + 20, RETAIN_USEC, KEY_RECORDS_DROP_RETIRED, &dropped));
        ASSERT_EQ(dropped, 1);
        ASSERT_EQ(json_object_size(records), 1);
        ASSERT_EQ(set_records(k, records, NOW_USEC + 21), 1);
        ASSERT_EQ(verify(k, t1), -ENOKEY);
        ASSERT_OK(verify(k, t2));

        /* Two active (a rotation raced by hand): the newest signs, the other verifies. */
        bad = copy(records);
        ASSERT_OK(key_records_update(bad, NOW_USEC + 30, RETAIN_USEC, KEY_RECORDS_ROTATE, NULL));
        json_object_set_new(json_object_get(bad, kid), "retired", json_null());
        ASSERT_EQ(set_records(k, bad, NOW_USEC + 31), 1);
        ASSERT_FALSE(streq(keyring_active_kid(k), kid));
        ASSERT_OK(verify(k, t2));
        json_decref(bad);

        /* Refused, and k unchanged: no active key, a record under another kid, a damaged key. */
        gen = keyring_generation(k);
        bad = copy(records);
        json_object_set_new(json_object_get(bad, kid), "retired", json_integer(NOW_USEC));
        ASSERT_EQ(set_records(k, bad, NOW_USEC + 40), -ENOKEY);
        json_decref(bad);
        bad = json_pack("{s:O}", "AAAAAAAAAAAAAAAA", json_object_get(records, kid));
        ASSERT_EQ(set_records(k, bad, NOW_USEC + 40), -EBADMSG);
        json_decref(bad);
        bad = copy(records);
        json_object_set_new(json_object_get(bad, kid), "secretKey", json_string("AAAA"));
        ASSERT_EQ(set_records(k, bad, NOW_USEC + 40), -EBADMSG);
        json_decref(bad);
        bad = NULL;
        ASSERT_EQ(keyring_generation(k), gen);
        ASSERT_EQ(key_records_update(NULL, NOW_USEC, RETAIN_USEC, 0, NULL), -EINVAL);

        /* What a keyring exports makes a keyring that verifies the same tokens. */
        {
                json_auto_t *exported = NULL;
                _cleanup_(keyring_freep) Keyring *again = NULL;

                ASSERT_OK(keyring_records(other, &exported));
                ASSERT_EQ(json_object_size(exported), 2);
                ASSERT_OK(keyring_from_records(exported, NOW_USEC + 10, RETAIN_USEC, &again));
                ASSERT_STREQ(keyring_active_kid(again), keyring_active_kid(other));
                ASSERT_OK(verify(again, t1));
                ASSERT_OK(verify(again, t2));
        }
}

int main(void) {
        char template[] = "/tmp/test-tokens-XXXXXX";

        ASSERT_TRUE(sodium_init() >= 0);
        umask(022);
        tmp_root = mkdtemp(template);
        ASSERT_TRUE(tmp_root);

        RUN(token_hash);
        RUN(rfc8037_a4);
        RUN(token_random);
        RUN(token_random_digits);
        RUN(token_random_from);
        RUN(token_equal);
        RUN(claims_done);
        RUN(sign_verify);
        RUN(tampered);
        RUN(forged);
        RUN(time);
        RUN(key_file);
        RUN(reload);
        RUN(verify_cache);
        RUN(rotation);
        RUN(jwks);
        RUN(permissions);
        RUN(two_active);
        RUN(bad_files);
        RUN(records);

        rm_rf(tmp_root);
        return 0;
}
