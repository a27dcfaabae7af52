/* SPDX-License-Identifier: MIT */
/*
 * Tokens: the Ed25519 signing keyring, access JWTs (RFC 7519 / RFC 8037, header
 * {alg: EdDSA|Ed25519, typ: at+jwt, kid}), random opaque tokens and their at-rest hashes,
 * random numeric ids. tokens.c (with passwords.c) is the only user of libsodium.
 *
 * Keys live in <state_dir>/keys/<kid>.key (mode 0600; the 64-byte Ed25519 secret key, plus a
 * small JSON header with created/retired times, see docs/store.md). Secret keys are held in
 * sodium_malloc'd, read-only memory.
 *
 * Errors: -EBADMSG malformed or forged token (bad base64url/JSON, wrong alg/typ/iss/kid, bad
 * signature), -ETIME expired or not yet valid, -ENOENT no such key, -ENOMEM, -EIO and errno
 * values from file operations.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define TOKEN_HASH_STRLEN 64    /* hex of a 256-bit hash, without the NUL */

typedef struct Keyring Keyring;

typedef struct JwtClaims {
        char *iss;
        char *sub;              /* == customer_id */
        char *aud;              /* == publisher_id */
        char *jti;
        char *customer_id;
        char *publisher_id;
        uint64_t iat;           /* seconds since the epoch */
        uint64_t nbf;
        uint64_t exp;
        char *kid;              /* of the key that signed (verify only) */
} JwtClaims;

void jwt_claims_done(JwtClaims *c);

/* Loads every key in dir (created with mode 0700 if missing); if none is active, creates one.
 * Keys retired longer ago than retain_usec are deleted. now_usec: CLOCK_REALTIME. */
int keyring_load(const char *dir, uint64_t now_usec, uint64_t retain_usec, Keyring **ret);
Keyring *keyring_free(Keyring *k);

/* Makes a new active key (written durably first); the old active key is marked retired at
 * now_usec and keeps verifying for retain_usec (the longest lifetime of a token it signed). */
int keyring_rotate(Keyring *k, uint64_t now_usec, uint64_t retain_usec);

const char *keyring_active_kid(const Keyring *k);
/* NULL-terminated array of kids of keys that still verify; owned by k until the next rotate. */
char **keyring_kids(const Keyring *k);

/* {keys: [{kty: OKP, crv: Ed25519, x, kid, use: sig, alg: EdDSA}, ...]} of every key that
 * still verifies (RFC 8037). New reference. */
int keyring_jwks(const Keyring *k, json_t **ret);

/* Signs claims (iss, sub, aud, exp, iat, nbf, jti, customerId, publisherId) with the active
 * key. alg_name: "EdDSA" or "Ed25519" for the header. *ret is a new string. */
int jwt_sign(const Keyring *k, const JwtClaims *claims, const char *alg_name, char **ret);

/* Verifies signature, alg allow-list (EdDSA, Ed25519), typ at+jwt, kid known, iss == issuer,
 * and exp/nbf against now_sec with leeway_sec. Fills *ret (owned by the caller; call
 * jwt_claims_done). -EBADMSG or -ETIME as above. */
int jwt_verify(const Keyring *k, const char *token, const char *issuer, uint64_t now_sec,
               uint64_t leeway_sec, JwtClaims *ret);

/* A random token of 'bytes' random bytes (>= 16), base64url without padding. */
int token_random(size_t bytes, char **ret);
/* A random string of exactly n decimal digits, first digit not 0. */
int token_random_digits(size_t n, char **ret);
/* A random string of n characters from alphabet (uniform). */
int token_random_from(const char *alphabet, size_t n, char **ret);

/* Hex of a keyed-free 256-bit BLAKE2b hash of token: what the store keeps. */
void token_hash(const char *token, char ret[static TOKEN_HASH_STRLEN + 1]);

/* Constant-time comparison of two equal-length buffers: true if equal. */
bool token_equal(const void *a, const void *b, size_t n);
