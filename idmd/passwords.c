/* SPDX-License-Identifier: MIT */
/*
 * Passwords: Argon2id through libsodium's crypto_pwhash_str*, a dummy verification for unknown
 * accounts, and the password policy (UTF-8 checked here, without a Unicode database). With
 * tokens.c the only user of libsodium. Logs nothing.
 */

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "idm/utf8.h"
#include "idmd/passwords.h"

_Static_assert(PASSWORD_HASH_MAX == crypto_pwhash_STRBYTES, "PASSWORD_HASH_MAX != crypto_pwhash_STRBYTES");
_Static_assert(crypto_pwhash_argon2id_STRBYTES == crypto_pwhash_STRBYTES, "argon2id string size");

#define ARGON2ID_PREFIX crypto_pwhash_argon2id_STRPREFIX

static bool cost_is_valid(const PasswordCost *cost) {
        return cost &&
                cost->opslimit >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
                cost->opslimit <= crypto_pwhash_argon2id_OPSLIMIT_MAX &&
                cost->memlimit >= crypto_pwhash_argon2id_MEMLIMIT_MIN &&
                cost->memlimit <= crypto_pwhash_argon2id_MEMLIMIT_MAX;
}

/* A NUL-terminated string that fits a crypto_pwhash_STRBYTES buffer and says Argon2id. */
static bool hash_is_argon2id(const char *hash) {
        return hash &&
                strnlen(hash, PASSWORD_HASH_MAX) < PASSWORD_HASH_MAX &&
                strncmp(hash, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) == 0;
}

int password_hash(const char *password, const PasswordCost *cost, char ret[static PASSWORD_HASH_MAX]) {
        char out[PASSWORD_HASH_MAX];

        if (!password || !cost_is_valid(cost))
                return -EINVAL;

        errno = 0;
        if (crypto_pwhash_str_alg(out, password, strlen(password), cost->opslimit, (size_t) cost->memlimit,
                                  crypto_pwhash_ALG_ARGON2ID13) != 0) {
                /* Limits are checked above, so what remains is running out of memory. */
                sodium_memzero(out, sizeof out);
                return errno == EINVAL ? -EINVAL : -ENOMEM;
        }

        memcpy(ret, out, sizeof out);
        return 0;
}

int password_verify(const char *hash, const char *password) {
        if (!hash_is_argon2id(hash) || !password)
                return -EINVAL;

        /* crypto_pwhash_str_verify() says -1 both for "no match" and for "cannot parse"; ask the
         * parser alone first (the cost given does not matter, only -1 does). */
        if (crypto_pwhash_str_needs_rehash(hash, crypto_pwhash_argon2id_OPSLIMIT_MIN,
                                           crypto_pwhash_argon2id_MEMLIMIT_MIN) < 0)
                return -EINVAL;

        errno = 0;
        if (crypto_pwhash_str_verify(hash, password, strlen(password)) == 0)
                return 0;
        return errno == ENOMEM ? -ENOMEM : -EACCES;
}

/* The dummy hash for unknown accounts: made once per cost, on first use (the first call thus
 * costs one more hash; later ones cost exactly one verification, like a real account). */
static pthread_mutex_t dummy_mutex = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[PASSWORD_HASH_MAX];
static PasswordCost dummy_cost;
static bool dummy_valid;

static int dummy_hash_get(const PasswordCost *cost, char ret[static PASSWORD_HASH_MAX]) {
        int r = 0;

        if (!cost_is_valid(cost))
                return -EINVAL;

        (void) pthread_mutex_lock(&dummy_mutex);
        if (!dummy_valid || dummy_cost.opslimit != cost->opslimit || dummy_cost.memlimit != cost->memlimit) {
                uint8_t seed[16];
                char password[2 * sizeof seed + 1];

                /* A password nobody knows; it does not matter anyway, the result is ignored. */
                randombytes_buf(seed, sizeof seed);
                (void) sodium_bin2hex(password, sizeof password, seed, sizeof seed);
                r = password_hash(password, cost, dummy_hash);
                sodium_memzero(seed, sizeof seed);
                sodium_memzero(password, sizeof password);
                if (r >= 0) {
                        dummy_cost = *cost;
                        dummy_valid = true;
                } else
                        dummy_valid = false;
        }
        if (r >= 0)
                memcpy(ret, dummy_hash, PASSWORD_HASH_MAX);
        (void) pthread_mutex_unlock(&dummy_mutex);

        return r;
}

int password_verify_dummy(const char *password, const PasswordCost *cost) {
        char hash[PASSWORD_HASH_MAX];
        int r;

        r = dummy_hash_get(cost, hash);
        if (r < 0)
                return r;

        r = password_verify(hash, password ?: "");
        if (r == -ENOMEM)
                return r;
        return -EACCES;
}

bool password_needs_rehash(const char *hash, const PasswordCost *cost) {
        if (!hash_is_argon2id(hash) || !cost_is_valid(cost))
                return true;
        /* 1: other parameters, -1: unparseable; either way hash it anew on the next good login. */
        return crypto_pwhash_str_needs_rehash(hash, cost->opslimit, (size_t) cost->memlimit) != 0;
}

/* Without a Unicode database we cannot tell letters from other characters outside ASCII, so:
 *  - a "letter" is A-Z, a-z, or any code point >= U+0080 (which is generous to scripts without
 *    case and to accented letters, and counts e.g. "€" as a letter too);
 *  - a "digit or symbol" is any printable ASCII character that is not a letter: 0-9, space and
 *    the ASCII punctuation !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~.
 * Control characters are allowed and count as neither. Length is counted in code points. */
static bool is_letter(uint32_t c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80;
}

static bool is_digit_or_symbol(uint32_t c) {
        return c >= 0x20 && c <= 0x7E && !is_letter(c);
}

int password_check_policy(const PasswordPolicy *policy, const char *password, const char **ret_message) {
        const unsigned char *p = (const unsigned char *) password;
        bool letter = false, digit_or_symbol = false;
        const char *message = NULL;
        size_t length = 0;

        if (!policy || !password)
                return -EINVAL;

        while (*p) {
                uint32_t c;
                size_t n;

                n = utf8_decode(p, &c);
                if (n == 0) {
                        message = "password is not valid UTF-8";
                        goto fail;
                }
                p += n;
                length++;
                letter = letter || is_letter(c);
                digit_or_symbol = digit_or_symbol || is_digit_or_symbol(c);
        }

        if (length < policy->min_length)
                message = "password is too short";
        else if (length > policy->max_length)
                message = "password is too long";
        else if (policy->require_letter && !letter)
                message = "password needs a letter";
        else if (policy->require_digit_or_symbol && !digit_or_symbol)
                message = "password needs a digit or a symbol";
        else {
                if (ret_message)
                        *ret_message = NULL;
                return 0;
        }

fail:
        if (ret_message)
                *ret_message = message;
        return -EINVAL;
}
