/* SPDX-License-Identifier: MIT */
/*
 * Tokens: the Ed25519 signing keyring, access JWTs (RFC 7519 / RFC 8037, header
 * {alg: EdDSA|Ed25519, typ: at+jwt, kid}), random opaque tokens and their at-rest hashes,
 * sealing a secret under a token (token_seal), random numeric ids. tokens.c (with passwords.c) is
 * the only user of libsodium's cryptography and random numbers (mail.c uses its base64 encoder).
 *
 * Keys live in <state_dir>/keys/<kid>.key (or, for a store several idmd share, as records of it:
 * "Keys as records" below), mode 0600, owned by the daemon user, one small JSON
 * document per key: {"kid": "<16 chars>", "created": <usec>, "retired": <usec>|null,
 * "secretKey": "<base64url, no padding, of the 64-byte libsodium Ed25519 secret key>"}. The kid
 * is the first 16 characters of base64url(BLAKE2b-256(public key)), so it is stable and is
 * checked against the key and the file name on load. Files are written to a temporary name,
 * fsync'd, renamed into place, and the directory fsync'd. Secret keys are held in sodium_malloc'd,
 * read-only memory; every temporary copy (file text, base64) is wiped.
 *
 * Threads: jwt_verify, jwt_sign, keyring_jwks, keyring_kids, keyring_active_kid and
 * keyring_generation only read the keyring and may run concurrently with each other;
 * keyring_rotate, keyring_drop_retired and keyring_free need the caller to exclude every other
 * user of the keyring. jwt_verify_cached and the jwt_cache_* functions use the keyring's cache of
 * verified tokens: one thread only (idmd's event loop). The token_* and password functions are
 * thread-safe.
 *
 * Errors: -EBADMSG malformed or forged token (bad base64url/JSON, wrong alg/typ/iss, bad
 * signature), -ENOKEY a kid the keyring does not hold, -ETIME expired or not yet valid, -ENOENT no such key, -ENOMEM, -EIO and errno
 * values from file operations.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "idm/cleanup.h"

#define TOKEN_HASH_STRLEN 64    /* hex of a 256-bit hash, without the NUL */
#define JWT_MAX 8192            /* longest access token jwt_verify accepts, in bytes */
#define JWT_LEEWAY_SEC 60u      /* clock skew allowed on exp/nbf (at most 60 s) */
/* How long a retired signing key must keep verifying: the longest-lived token it signed, plus the
 * leeway. Used by keyring_load (at start) and keyring_rotate alike. */
#define KEYRING_RETAIN_USEC(access_ttl_usec) ((access_ttl_usec) + JWT_LEEWAY_SEC * 1000000ULL)

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
        char *sid;              /* session (login family) id; optional: NULL = not in the token */
} JwtClaims;

/* Frees the strings and zeroes *c. NULL-safe, idempotent. */
void jwt_claims_done(JwtClaims *c);

/* Loads every key in dir (created with mode 0700 if missing); if none is active, creates one.
 * Keys retired longer ago than retain_usec are deleted. now_usec: CLOCK_REALTIME.
 * Fails closed: -EPERM when dir is group/world writable or not ours, or a key file is
 * group/world accessible or not ours; -EBADMSG when a key file is malformed or does not match its
 * name. If several keys are active (a crash inside keyring_rotate), the newest stays active and
 * the others are retired at now_usec. Stale temporary files (".*.tmp") are removed. */
int keyring_load(const char *dir, uint64_t now_usec, uint64_t retain_usec, Keyring **ret);
Keyring *keyring_free(Keyring *k);
DEFINE_POINTER_CLEANUP(Keyring, keyring_free)

/* Makes a new active key (written durably first); the old active key is marked retired at
 * now_usec and keeps verifying for retain_usec (the longest lifetime of a token it signed).
 * If writing the new key fails, nothing changed. If only re-writing the old key as retired fails,
 * the error is returned but the new key is active anyway (as keyring_load would decide). */
int keyring_rotate(Keyring *k, uint64_t now_usec, uint64_t retain_usec);

/* Deletes every retired key at once (from disk first), so that nothing it signed verifies any
 * more: for a key that may have leaked. Returns how many were deleted, or -errno (those deleted
 * before the error stay deleted). */
int keyring_drop_retired(Keyring *k);

const char *keyring_active_kid(const Keyring *k);
/* NULL-terminated array of kids of keys that still verify; owned by k until the next rotate. */
char **keyring_kids(const Keyring *k);

/* Writes every key of k (secret keys included, as keyring_load() reads them) into dir, created
 * 0700 if missing: for backups. Returns the number of keys, or -errno. */
int keyring_save_to(const Keyring *k, const char *dir);

/* ---- Keys as records, for a store several idmd share (PostgreSQL) ----
 *
 * There the keys are records of the store, not files: a record is the JSON document a key file
 * holds ({kid, created, retired, secretKey}), and a set of them is a JSON object {kid: record}.
 * A keyring made from records has no directory: keyring_rotate() and keyring_drop_retired()
 * change it in memory only; the store is changed with key_records_update() in a unit of work,
 * and every idmd then takes the new set with keyring_set_records(). Reading records wipes the
 * secret strings in them (the object is spent for anything but freeing). */
typedef enum KeyRecordsFlags {
        KEY_RECORDS_SETTLE = 0,                 /* only the rules of keyring_load() */
        KEY_RECORDS_ROTATE = 1 << 0,            /* then as keyring_rotate() */
        KEY_RECORDS_DROP_RETIRED = 1 << 1,      /* then as keyring_drop_retired() */
} KeyRecordsFlags;

/* Rewrites the set of key records in place as keyring_load() would settle it (one active key,
 * the newest; keys retired longer ago than retain_usec gone; a new key made when none is
 * active), then rotates and/or drops the retired keys as flags say. *ret_dropped (if given):
 * how many retired keys were dropped. -EBADMSG for a malformed record, -EINVAL, -ENOMEM. */
int key_records_update(json_t *records, uint64_t now_usec, uint64_t retain_usec, KeyRecordsFlags flags,
                       unsigned *ret_dropped);
/* A keyring of the keys of records (settled as above, but never making a key: -ENOKEY when
 * none is active). */
int keyring_from_records(json_t *records, uint64_t now_usec, uint64_t retain_usec, Keyring **ret);
/* Makes k's keys those of records (as keyring_from_records() reads them): 1 when they changed
 * (a new generation, the cache emptied), 0 when they were the same; on
 * error k is unchanged. Only for a keyring made from records. */
int keyring_set_records(Keyring *k, json_t *records, uint64_t now_usec, uint64_t retain_usec);
/* Every key of k as records, secret keys included (for moving a store). New reference. */
int keyring_records(const Keyring *k, json_t **ret);

/* {keys: [{kty: OKP, crv: Ed25519, x, kid, use: sig, alg: EdDSA}, ...]} of every key that
 * still verifies (RFC 8037). New reference. */
int keyring_jwks(const Keyring *k, json_t **ret);
/* A number that changes whenever the keys of k change (load, rotation, retired keys deleted),
 * and that no other keyring of the process has had: what was made of the keys (the JWKS
 * reply) is good while it is the same. */
uint64_t keyring_generation(const Keyring *k);

/* Signs claims (iss, sub, aud, exp, iat, nbf, jti, customerId, publisherId, and sid when not
 * NULL) with the active key. alg_name: "EdDSA" or "Ed25519" for the header (NULL: "EdDSA"). *ret is a new string.
 * claims->kid is ignored. -EINVAL: another alg_name, a NULL or non-UTF-8 string claim, or a time
 * above INT64_MAX. */
int jwt_sign(const Keyring *k, const JwtClaims *claims, const char *alg_name, char **ret);

/* Verifies signature, alg allow-list (EdDSA, Ed25519), typ at+jwt (or RFC 9068's
 * "application/at+jwt"), kid known, iss == issuer, and exp/nbf against now_sec with leeway_sec.
 * Fills *ret (owned by the caller; call jwt_claims_done). The header must have exactly alg, typ
 * and kid (anything else, e.g. crit, is refused); duplicate JSON keys are refused; every claim
 * listed at jwt_sign is required with its type (strings non-empty, times integers >= 0), other
 * claims are ignored. The signature is checked before the claims are parsed. Tokens longer
 * than JWT_MAX are refused. -EBADMSG, -ENOKEY (a well-formed header naming a kid k does not
 * hold: forged, or signed by a key this keyring has not seen yet), -ETIME (now >= exp + leeway,
 * or now + leeway < nbf), -ENOMEM. */
int jwt_verify(const Keyring *k, const char *token, const char *issuer, uint64_t now_sec,
               uint64_t leeway_sec, JwtClaims *ret);

/* ---- The cache of verified access JWTs ----
 *
 * jwt_verify_cached() answers exactly as jwt_verify() but skips the signature check and the
 * parsing for a token it verified before. Each keyring owns one cache of a fixed number of entries
 * (JWT_CACHE_ENTRIES; 4-way set associative, the least recently used entry of a full set is
 * evicted). An entry is keyed by BLAKE2b-256 of the token keyed with a random key drawn when the
 * cache is made (never the token itself; compared in constant time) and holds the claims
 * jwt_verify() returned. An entry is used only while now < exp (it never outlives the token's exp:
 * from then on jwt_verify() decides, leeway included), nbf is within the leeway, and the issuer
 * asked for is the token's; anything else goes to jwt_verify(). Emptied by keyring_rotate() and
 * keyring_drop_retired() (and gone with keyring_free()), and by jwt_cache_revoke() for every
 * keyring. The cache only stands for the signature and the claims: whatever a caller checks
 * after jwt_verify() (the session's family in the store, sessions.c) it still checks every time.
 * docs/decisions.md says why this is safe. */
#define JWT_CACHE_ENTRIES 4096u

typedef struct JwtCacheStats {
        size_t entries;         /* live entries now */
        size_t capacity;        /* the bound */
        uint64_t hits, misses;  /* lookups answered from the cache / by jwt_verify() */
        uint64_t evictions;     /* live entries pushed out by a new one */
        uint64_t flushes;       /* times the cache was emptied (rotation, revocation) */
} JwtCacheStats;

/* As jwt_verify(), through k's cache (see above): 1 when the answer came from the cache, 0 when
 * jwt_verify() gave it (then the caller, once its own checks accepted the token too, may
 * jwt_cache_remember() it), or jwt_verify()'s errors. Only accepted tokens are cached. */
int jwt_verify_cached(const Keyring *k, const char *token, const char *issuer, uint64_t now_sec,
                      uint64_t leeway_sec, JwtClaims *ret);
/* Caches what jwt_verify_cached() returned (0) for token, or the claims jwt_sign() just signed
 * token with (kid: the active key's), unless its exp has passed or a jwt_cache_revoke() came
 * since. A full set loses its least recently used entry. */
void jwt_cache_remember(const Keyring *k, const char *token, const JwtClaims *claims, uint64_t now_sec);
/* Empties the cache of every keyring of the process (at its next use): for a revocation that
 * makes a JWT with a valid signature invalid (a session revoked, a customer deleted). Cheap. */
void jwt_cache_revoke(void);
void jwt_cache_stats(const Keyring *k, JwtCacheStats *ret);
/* Replaces k's cache by an empty one of capacity entries (rounded up to a multiple of 4, at least
 * 4): for tests. 0 turns the cache off. -ENOMEM. */
int jwt_cache_set_capacity(Keyring *k, size_t capacity);


/* Low level, for known-answer tests (RFC 8037 A.4): checks only that compact is three non-empty
 * base64url parts and that the third is a valid Ed25519 signature by pk over the first two
 * (header and payload are not looked at). 0 or -EBADMSG. */
int jws_verify_ed25519(const uint8_t pk[static 32], const char *compact);

/* A random token of 'bytes' random bytes (16 ... 1024, else -EINVAL), base64url without padding.
 * *ret is a new string; it is a secret: free it with erase_and_free(). */
int token_random(size_t bytes, char **ret);
/* A random string of exactly n (1 ... 1024, else -EINVAL) decimal digits, first digit not 0. */
int token_random_digits(size_t n, char **ret);
/* A random string of n (1 ... 1024) characters, each drawn uniformly from the bytes of alphabet
 * (single-byte characters; a repeated byte is drawn more often). -EINVAL for an empty alphabet or
 * n out of range. */
int token_random_from(const char *alphabet, size_t n, char **ret);

/* Hex of a keyed-free 256-bit BLAKE2b hash of token: what the store keeps. */
void token_hash(const char *token, char ret[static TOKEN_HASH_STRLEN + 1]);

/* Seals plaintext (1 ... TOKEN_SEAL_PLAINTEXT_MAX bytes, no NUL) so that only a presenter of
 * key_token can read it back: XSalsa20-Poly1305 (crypto_secretbox) under a key derived from
 * key_token (keyed BLAKE2b-256 with a fixed context), a random nonce prepended, base64url without
 * padding. *ret is a new string (not a secret by itself). -EINVAL for empty/overlong input,
 * -ENOMEM. Used for a refresh token's successor, sealed with the old token, so the store holds
 * nothing that yields a live token without the old one. */
#define TOKEN_SEAL_PLAINTEXT_MAX 1024
int token_seal(const char *key_token, const char *plaintext, char **ret);
/* Opens what token_seal made with the same key_token. *ret is a new string and a secret: free it
 * with erase_and_free(). -EBADMSG for a wrong key, a forged or malformed box, -EINVAL, -ENOMEM. */
int token_unseal(const char *key_token, const char *sealed, char **ret);

/* Constant-time comparison of two equal-length buffers: true if equal. */
bool token_equal(const void *a, const void *b, size_t n);
