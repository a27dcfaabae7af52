/* SPDX-License-Identifier: MIT */
/*
 * Passwords: Argon2id hashing and verification in the standard $argon2id$v=19$... encoding
 * (as libsodium's crypto_pwhash_str writes it), the rehash check, and the password policy. The hash and verify
 * functions are slow by design and are only called from worker threads (workers.h). They are
 * thread-safe. None of them logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PASSWORD_HASH_MAX 128   /* == crypto_pwhash_STRBYTES, checked in passwords.c */

typedef struct PasswordCost {
        uint64_t opslimit;      /* t */
        uint64_t memlimit;      /* bytes */
} PasswordCost;

typedef struct PasswordPolicy {
        unsigned min_length;    /* in characters (UTF-8 code points) */
        unsigned max_length;
        bool require_letter;
        bool require_digit_or_symbol;
} PasswordPolicy;

/* Hashes password into ret (NUL-terminated; ret is only written on success). -EINVAL cost out of
 * libsodium's Argon2id range (opslimit 1 ... 2^32-1, memlimit 8 KiB ... 4 TiB), -ENOMEM. */
int password_hash(const char *password, const PasswordCost *cost, char ret[static PASSWORD_HASH_MAX])
        __attribute__((warn_unused_result));

/* 0 if password matches hash, -EACCES if it does not, -EINVAL if hash is not a valid Argon2id
 * string ("$argon2id$v=19$m=..,t=..,p=..$salt$hash", shorter than PASSWORD_HASH_MAX), -ENOMEM.
 * Constant time in the password. */
int password_verify(const char *hash, const char *password) __attribute__((warn_unused_result));

/* Hashing and verifying keep their Argon2 memory (m bytes, the largest cost seen) allocated and
 * faulted-in per thread between calls. password_release_memory() gives this thread's back to the
 * system (the worker pool's idle function, and at thread exit); password_memory_held() says how
 * much all threads together hold now (at most workers × the largest m). */
void password_release_memory(void);
size_t password_memory_held(void);
/* For the tests: whether this thread's region is all zeros (or there is none). Each hash, by
 * either engine, wipes the region when it is done with it. */
bool password_memory_wiped(void);
/* How long a worker keeps its region without a hash to do (workers_set_idle()). */
#define PASSWORD_MEMORY_IDLE_USEC (30ULL * 1000000ULL)

/* Which Argon2id implementation computes the tags (the strings and tags are the same either way),
 * both in the region kept warm per thread (above): the reference libargon2 (plain C, as Debian
 * builds it), or libsodium's, which computes with the CPU's vector instructions (SSSE3, AVX2,
 * AVX-512F) and is the faster one wherever those exist. PASSWORD_ENGINE_WARM until
 * password_calibrate() says otherwise. */
typedef enum PasswordEngine {
        PASSWORD_ENGINE_WARM,           /* libargon2 */
        PASSWORD_ENGINE_SODIUM,         /* libsodium */
        _PASSWORD_ENGINE_MAX,
} PasswordEngine;

const char *password_engine_to_string(PasswordEngine e);        /* "libargon2", "libsodium" */
PasswordEngine password_engine(void);
/* For every thread's later hashes; a hash that is running finishes with the one it began with. */
void password_set_engine(PasswordEngine e);

typedef struct PasswordCalibration {
        uint64_t usec[_PASSWORD_ENGINE_MAX];    /* the fastest of each engine's hashes */
        PasswordEngine chosen;
} PasswordCalibration;

/* Times both engines at cost, interleaved (PASSWORD_CALIBRATE_ROUNDS hashes each, after one to
 * warm this thread's region), and sets the faster (libsodium only when it is at least 5 % faster,
 * so that noise does not flip the default). Slow: call it on a thread of its own.
 * Gives this thread's warm region back at the end. 0, -EINVAL (cost), -ENOMEM. */
#define PASSWORD_CALIBRATE_ROUNDS 2
int password_calibrate(const PasswordCost *cost, PasswordCalibration *ret);

/* Verifies password against a fixed hash of the same cost, for unknown accounts, so that they
 * cost the same as a wrong password. Always returns -EACCES (or -ENOMEM, or -EINVAL for a cost
 * out of range). The dummy hash is made on first use and again whenever the cost changes (that
 * call costs one extra hash). */
int password_verify_dummy(const char *password, const PasswordCost *cost);

/* true when hash was made with another cost than 'cost' (or is not Argon2id). */
bool password_needs_rehash(const char *hash, const PasswordCost *cost);

/* 0 if password satisfies the policy (then *ret_message = NULL). Else -EINVAL, with *ret_message
 * (static string, may be shown to the user; ret_message may be NULL) saying what is wrong:
 * "password is not valid UTF-8", "password is too short", "password is too long", "password
 * needs a letter", "password needs a digit or a symbol" (checked in that order). Invalid UTF-8
 * (overlong forms, surrogates, > U+10FFFF, truncated sequences) is refused. Length counts code
 * points. Without a Unicode database, a "letter" is A-Z, a-z or any code point >= U+0080; a
 * "digit or symbol" is any printable ASCII character that is not a letter (0-9, space,
 * punctuation). Control characters are allowed and count as neither. */
int password_check_policy(const PasswordPolicy *policy, const char *password, const char **ret_message);
