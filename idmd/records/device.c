/* SPDX-License-Identifier: MIT */
/*
 * The device login's records (records/device.h): timed records in STORE_TOKENS.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "records/device.h"
#include "sessions.h"
#include "tokens.h"

bool device_user_code_normalise(const char *typed, char ret[static DEVICE_USER_CODE_LEN + 1]) {
        size_t n = 0;

        for (const char *p = typed; p && *p; p++) {
                char c = (char) toupper((unsigned char) *p);

                if (c == '-' || c == ' ')
                        continue;
                if (n >= DEVICE_USER_CODE_LEN || !strchr(DEVICE_USER_CODE_ALPHABET, c))
                        return false;
                ret[n++] = c;
        }
        ret[n] = '\0';
        return n == DEVICE_USER_CODE_LEN;
}

static int hashed_key(const char *kind, const char *secret, char **ret) {
        char hash[TOKEN_HASH_STRLEN + 1];

        token_hash(secret, hash);
        return asprintf(ret, "%s:%s", kind, hash) < 0 ? -ENOMEM : 0;
}

int device_key(const char *device_code, char **ret) {
        return hashed_key(DEVICE_KIND, device_code, ret);
}

int device_user_code_key(const char *user_code, char **ret) {
        return hashed_key(DEVICE_CODE_KIND, user_code, ret);
}

int device_get(StoreTxn *t, const char *key, json_t **ret) {
        return session_timed_get(t, DEVICE_KIND, key, ret);
}

int device_put(StoreTxn *t, const char *key, json_t *rec) {
        return session_timed_put(t, DEVICE_KIND, key, rec);
}

int device_del(StoreTxn *t, const char *key) {
        return session_timed_del(t, DEVICE_KIND, key);
}

int device_user_code_get(StoreTxn *t, const char *key, json_t **ret) {
        return session_timed_get(t, DEVICE_CODE_KIND, key, ret);
}

int device_user_code_put(StoreTxn *t, const char *key, json_t *rec) {
        return session_timed_put(t, DEVICE_CODE_KIND, key, rec);
}

int device_user_code_del(StoreTxn *t, const char *key) {
        return session_timed_del(t, DEVICE_CODE_KIND, key);
}
