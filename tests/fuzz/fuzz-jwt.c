/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target "jwt": idmd's access-token parser and verifier (idmd/tokens.c jwt_verify():
 * base64url, the header's alg/typ/kid allow-list, the Ed25519 signature, the claims) with a fixed
 * keyring of one test key (below; never used anywhere else), at a fixed time.
 *
 * The first input byte picks the form of the rest:
 *   even: a compact token as a client sends it (the corpus has real tokens signed by the test
 *         key: valid, expired, not yet valid, another issuer, alg none, HS256, a foreign kid);
 *   odd:  "HEADER\nPAYLOAD" (JSON texts, or anything), which the target encodes and signs with
 *         the test key, so that the fuzzer reaches the claims parser behind the signature check.
 * A token that verifies must have every required claim, as tokens.h promises. Corpus:
 * tests/fuzz/jwt/.
 */
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "idm/cleanup.h"
#include "idmd/tokens.h"

#define NOW_SEC 1700000600ULL
#define ISSUER "https://idm.example"
#define TEST_KID "TU2-kXVEsHkiNIpm"
/* A test key (seed 01 02 ... 20 hex), written as keyring_load() reads keys. */
#define TEST_KEY_FILE                                                                           \
        "{\"kid\":\"" TEST_KID "\",\"created\":1700000000000000,\"retired\":null,"               \
        "\"secretKey\":\"AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyB5tVYuj-ZU-UB4sRLoqYunkB-FOuaVvtfg45ELrQSWZA\"}\n"

static Keyring *keyring;
static unsigned char secret_key[crypto_sign_SECRETKEYBYTES];

static void setup(void) {
        char dir[4096], path[4200];
        unsigned char seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES];
        int fd;

        fuzz_mkdtemp("jwt", dir, sizeof dir);
        (void) snprintf(path, sizeof path, "%s/%s.key", dir, TEST_KID);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, TEST_KEY_FILE, strlen(TEST_KEY_FILE)) != (ssize_t) strlen(TEST_KEY_FILE) ||
            close(fd) < 0)
                abort();
        if (keyring_load(dir, NOW_SEC * 1000000ULL, KEYRING_RETAIN_USEC(900ULL * 1000000ULL), &keyring) < 0 ||
            !streq(keyring_active_kid(keyring), TEST_KID))
                abort();
        fuzz_rm_rf(dir);

        for (size_t i = 0; i < sizeof seed; i++)
                seed[i] = (unsigned char) (i + 1);
        if (crypto_sign_seed_keypair(pk, secret_key, seed) != 0)
                abort();
}

static char *b64url(const void *data, size_t n) {
        size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        char *s = malloc(len);

        if (!s)
                abort();
        (void) sodium_bin2base64(s, len, data, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        return s;
}

/* "HEADER\nPAYLOAD" encoded and signed with the test key. */
static char *sign(const char *text, size_t size) {
        const char *nl = memchr(text, '\n', size);
        size_t header_len = nl ? (size_t) (nl - text) : size;
        char *h = b64url(text, header_len), *p = nl ? b64url(nl + 1, size - header_len - 1) : b64url("", 0);
        unsigned char sig[crypto_sign_BYTES];
        char *signing_input, *s, *token;

        if (asprintf(&signing_input, "%s.%s", h, p) < 0)
                abort();
        (void) crypto_sign_detached(sig, NULL, (const unsigned char *) signing_input, strlen(signing_input),
                                    secret_key);
        s = b64url(sig, sizeof sig);
        if (asprintf(&token, "%s.%s", signing_input, s) < 0)
                abort();
        free(h);
        free(p);
        free(s);
        free(signing_input);
        return token;
}

static bool nonempty(const char *s) {
        return s && s[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        JwtClaims c = {};
        char *token;
        int r;

        if (size == 0)
                return 0;
        if (!keyring)
                setup();

        if (data[0] & 1)
                token = sign((const char *) data + 1, size - 1);
        else
                token = fuzz_strndup(data + 1, size - 1);

        r = jwt_verify(keyring, token, ISSUER, NOW_SEC, JWT_LEEWAY_SEC, &c);
        if (r >= 0 && (!nonempty(c.iss) || !nonempty(c.sub) || !nonempty(c.aud) || !nonempty(c.jti) ||
                       !nonempty(c.customer_id) || !nonempty(c.publisher_id) || !streq(c.kid, TEST_KID) ||
                       c.exp + JWT_LEEWAY_SEC <= NOW_SEC)) {
                fprintf(stderr, "'%s' verified with incomplete claims\n", token);
                abort();
        }
        if (r >= 0 && jws_verify_ed25519(secret_key + crypto_sign_SEEDBYTES, token) < 0)
                abort();
        jwt_claims_done(&c);
        free(token);
        return 0;
}
