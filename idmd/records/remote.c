/* SPDX-License-Identifier: MIT */
/*
 * Remote-auth and SSO tokens, publisher sessions (records/remote.h): timed records in
 * STORE_TOKENS keyed by the hash of their secret.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "records/remote.h"
#include "sessions.h"
#include "tokens.h"

/* "<kind>:<token_hash(secret)>". */
static void secret_key(const char *kind, const char *secret, char *buf, size_t size) {
        char hash[TOKEN_HASH_STRLEN + 1];

        token_hash(secret, hash);
        (void) snprintf(buf, size, "%s:%s", kind, hash);
}

#define KEY_SIZE (16 + 1 + TOKEN_HASH_STRLEN + 1)

int signin_token_put(StoreTxn *t, const char *kind, const char *token, json_t *rec) {
        char key[KEY_SIZE];

        if (!streq(kind, REMOTE_KIND_REMOTE) && !streq(kind, REMOTE_KIND_SSO))
                return -EINVAL;
        secret_key(kind, token, key, sizeof(key));
        return session_timed_put(t, kind, key, rec);
}

int signin_token_take(StoreTxn *t, const char *token, json_t **ret, const char **ret_kind) {
        static const char *const kinds[] = { REMOTE_KIND_REMOTE, REMOTE_KIND_SSO };

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_(json_decrefp) json_t *rec = NULL;
                char key[KEY_SIZE];
                int r;

                secret_key(kinds[i], token, key, sizeof(key));
                r = session_timed_get(t, kinds[i], key, &rec);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                r = session_timed_del(t, kinds[i], key);
                if (r < 0)
                        return r;
                *ret = TAKE_PTR(rec);
                *ret_kind = kinds[i];
                return 0;
        }
        return -ENOENT;
}

int publisher_session_put(StoreTxn *t, const char *session_id, json_t *rec) {
        char key[KEY_SIZE];

        secret_key(REMOTE_KIND_PUBLISHER_SESSION, session_id, key, sizeof(key));
        return session_timed_put(t, REMOTE_KIND_PUBLISHER_SESSION, key, rec);
}

int publisher_session_get(StoreTxn *t, const char *session_id, json_t **ret) {
        char key[KEY_SIZE];

        secret_key(REMOTE_KIND_PUBLISHER_SESSION, session_id, key, sizeof(key));
        return session_timed_get(t, REMOTE_KIND_PUBLISHER_SESSION, key, ret);
}
