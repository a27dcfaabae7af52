/* SPDX-License-Identifier: MIT */
/*
 * Passwords: Argon2id hashing and verification in the standard $argon2id$v=19$... encoding
 * (libsodium crypto_pwhash_str), the rehash check, and the password policy. The hash and verify
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

/* Hashes password into ret (NUL-terminated). -EINVAL cost out of libsodium's range, -ENOMEM. */
int password_hash(const char *password, const PasswordCost *cost, char ret[static PASSWORD_HASH_MAX])
        __attribute__((warn_unused_result));

/* 0 if password matches hash, -EACCES if it does not, -EINVAL if hash is not a valid Argon2id
 * string. Constant time in the password. */
int password_verify(const char *hash, const char *password) __attribute__((warn_unused_result));

/* Verifies password against a fixed hash of the same cost, for unknown accounts, so that they
 * cost the same as a wrong password. Always returns -EACCES (or -ENOMEM). */
int password_verify_dummy(const char *password, const PasswordCost *cost);

/* true when hash was made with another cost than 'cost' (or is not Argon2id). */
bool password_needs_rehash(const char *hash, const PasswordCost *cost);

/* 0 if password satisfies the policy. Else -EINVAL, with *ret_message (static string, may be
 * shown to the user) saying what is missing. Invalid UTF-8 is refused. */
int password_check_policy(const PasswordPolicy *policy, const char *password, const char **ret_message);
