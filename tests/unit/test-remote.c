/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/records/remote.c on a real store in a temporary directory: a sign-in token
 * is stored under the hash of its secret only, found once by signin_token_take() (which deletes
 * it with its expiry index entry) and never again; remote-auth and SSO tokens are told apart;
 * publisher sessions are looked up without being used up; and the sweep (session_expire_timed,
 * as the manager registers it) deletes each kind at its "expires" and not before.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idmd/config.h"
#include "idmd/records/remote.h"
#include "idmd/sessions.h"
#include "idmd/store.h"
#include "idmd/tokens.h"
#include "tests.h"

#define USEC UINT64_C(1000000)
#define T0 (UINT64_C(1700000000) * USEC)

static Store *store;
static Config *config;
static Keyring *keyring;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

typedef struct Op {
        const char *kind;       /* NULL: a publisher session */
        const char *secret;
        uint64_t expires;
        json_t *taken;
        const char *taken_kind;
} Op;

static int put_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;
        _cleanup_(json_decrefp) json_t *rec = json_pack("{s:s, s:s, s:I, s:I}", "customerId", "1000000001",
                                                         "publisherId", "123456789", "created", (json_int_t) T0,
                                                         "expires", (json_int_t) op->expires);

        if (!rec)
                return -ENOMEM;
        if (!op->kind)
                return publisher_session_put(t, op->secret, rec);
        return signin_token_put(t, op->kind, op->secret, rec);
}

static int take_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;

        json_decref(op->taken);
        op->taken = NULL;
        return signin_token_take(t, op->secret, &op->taken, &op->taken_kind);
}

static int take(Op *op) {
        return store_transact(store, take_work, op);
}

static int collect(const char *key, json_t *value, void *userdata) {
        return json_object_set(userdata, key, value) < 0 ? -ENOMEM : 0;
}

/* The number of records in the token table and in its expiry index, and whether any key or
 * record holds text. */
static int count_table(StoreTable table, const char *needle, bool *ret_found) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *all = json_object();
        const char *key;
        json_t *v;

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(store_foreach(t, table, NULL, NULL, collect, all));
        if (ret_found) {
                *ret_found = false;
                json_object_foreach(all, key, v) {
                        _cleanup_free_ char *text = json_dumps(v, JSON_COMPACT);
                        if (strstr(key, needle) || (text && strstr(text, needle)))
                                *ret_found = true;
                }
        }
        return (int) json_object_size(all);
}

typedef struct Sweep {
        uint64_t now;
        int deleted;
} Sweep;

static int sweep_work(StoreTxn *t, void *userdata) {
        static const char *const kinds[] = { REMOTE_KIND_REMOTE, REMOTE_KIND_SSO, REMOTE_KIND_PUBLISHER_SESSION };
        Sweep *s = userdata;
        SessionContext ctx = { .config = config, .keyring = keyring, .now_usec = s->now };

        s->deleted = 0;
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_free_ char *cursor = NULL;
                SessionSweepStats st;
                int r;

                r = session_sweep_kind(t, &ctx, kinds[i], session_expire_timed, 100, NULL, &cursor, &st);
                if (r < 0)
                        return r;
                s->deleted += (int) st.deleted;
        }
        return 0;
}

static int sweep(uint64_t now) {
        Sweep s = { .now = now };

        ASSERT_OK(store_transact(store, sweep_work, &s));
        return s.deleted;
}

TEST(single_use) {
        Op remote = { .kind = REMOTE_KIND_REMOTE, .secret = "remote-secret-1", .expires = T0 + 300 * USEC };
        Op sso = { .kind = REMOTE_KIND_SSO, .secret = "sso-secret-1", .expires = T0 + 10 * USEC };
        Op unknown = { .secret = "never-issued" };
        bool found;

        ASSERT_OK(store_transact(store, put_work, &remote));
        ASSERT_OK(store_transact(store, put_work, &sso));
        ASSERT_EQ(count_table(STORE_TOKENS, "secret-1", &found), 2);
        ASSERT_FALSE(found);
        ASSERT_EQ(count_table(STORE_TOKEN_EXPIRY, "x", NULL), 2);

        ASSERT_OK(take(&remote));
        ASSERT_STREQ(remote.taken_kind, REMOTE_KIND_REMOTE);
        ASSERT_STREQ(json_object_get_string(remote.taken, "customerId"), "1000000001");
        ASSERT_EQ(take(&remote), -ENOENT);
        ASSERT_OK(take(&sso));
        ASSERT_STREQ(sso.taken_kind, REMOTE_KIND_SSO);
        ASSERT_EQ(take(&sso), -ENOENT);
        ASSERT_EQ(take(&unknown), -ENOENT);
        /* Taken with their index entries. */
        ASSERT_EQ(count_table(STORE_TOKENS, "x", NULL), 0);
        ASSERT_EQ(count_table(STORE_TOKEN_EXPIRY, "x", NULL), 0);
        json_decref(remote.taken);
        json_decref(sso.taken);
}

TEST(wrong_kind) {
        Op pub = { .kind = REMOTE_KIND_PUBLISHER_SESSION, .secret = "s" };

        /* A publisher session is not a sign-in token. */
        ASSERT_EQ(store_transact(store, put_work, &pub), -EINVAL);
}

static int session_get_work(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *rec = NULL;

        return publisher_session_get(t, userdata, &rec);
}

TEST(publisher_sessions_and_sweep) {
        Op session = { .secret = "publisher-session-1", .expires = T0 + 600 * USEC };
        Op remote = { .kind = REMOTE_KIND_REMOTE, .secret = "remote-secret-2", .expires = T0 + 300 * USEC };
        Op sso = { .kind = REMOTE_KIND_SSO, .secret = "sso-secret-2", .expires = T0 + 10 * USEC };

        ASSERT_OK(store_transact(store, put_work, &session));
        ASSERT_OK(store_transact(store, put_work, &remote));
        ASSERT_OK(store_transact(store, put_work, &sso));
        /* Looked up as often as needed; a publisher session is no sign-in token. */
        ASSERT_OK(store_transact(store, session_get_work, (void *) "publisher-session-1"));
        ASSERT_OK(store_transact(store, session_get_work, (void *) "publisher-session-1"));
        ASSERT_EQ(store_transact(store, session_get_work, (void *) "publisher-session-2"), -ENOENT);
        ASSERT_EQ(take(&session), -ENOENT);

        ASSERT_EQ(sweep(T0 + 9 * USEC), 0);
        ASSERT_EQ(sweep(T0 + 10 * USEC), 1);            /* the SSO token */
        ASSERT_EQ(take(&sso), -ENOENT);
        ASSERT_EQ(sweep(T0 + 299 * USEC), 0);
        ASSERT_EQ(sweep(T0 + 300 * USEC), 1);           /* the remote-auth token */
        ASSERT_EQ(sweep(T0 + 600 * USEC), 1);           /* the publisher session */
        ASSERT_EQ(store_transact(store, session_get_work, (void *) "publisher-session-1"), -ENOENT);
        ASSERT_EQ(count_table(STORE_TOKENS, "x", NULL), 0);
        ASSERT_EQ(count_table(STORE_TOKEN_EXPIRY, "x", NULL), 0);
}

int main(void) {
        char template[] = "/tmp/test-remote-XXXXXX";
        _cleanup_free_ char *store_dir = NULL, *key_dir = NULL;
        char *tmp_root;

        umask(022);
        tmp_root = mkdtemp(template);
        ASSERT_TRUE(tmp_root);
        ASSERT_TRUE(asprintf(&store_dir, "%s/store", tmp_root) > 0);
        ASSERT_TRUE(asprintf(&key_dir, "%s/keys", tmp_root) > 0);
        ASSERT_EQ(mkdir(store_dir, 0700), 0);
        /* The sweep wants a whole session context. */
        ASSERT_OK(config_new(&config));
        ASSERT_OK(keyring_load(key_dir, T0, config->access_ttl_usec, &keyring));
        ASSERT_OK(store_open(store_dir, NULL, &store, NULL));

        RUN(single_use);
        RUN(wrong_kind);
        RUN(publisher_sessions_and_sweep);

        store_free(store);
        keyring_free(keyring);
        config_free(config);
        (void) nftw(tmp_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}
