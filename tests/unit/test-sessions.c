/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/sessions.c (and token_seal/token_unseal of tokens.c) on a real store in a
 * temporary directory and a real keyring, with time injected through SessionContext.now_usec:
 * starting sessions, verifying their tokens, rotation with the grace window and re-use
 * detection, expiry and the sliding lifetime, revocation (one token, a customer, deletion),
 * introspection of every kind of token and of garbage, the expiry index and the sweep in bounded
 * batches, the migration that builds the index, re-runs of units of work when the store grows,
 * and that no issued token is ever stored in plaintext.
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
#include "idmd/sessions.h"
#include "idmd/store.h"
#include "idmd/tokens.h"
#include "tests.h"

#define USEC UINT64_C(1000000)
#define MINUTE (60 * USEC)
#define HOUR (60 * MINUTE)
#define DAY (86400 * USEC)
#define T0 (UINT64_C(1700000000) * USEC)
#define UID_A 1000
#define UID_B 1001
#define CID "100000001"
#define CID2 "100000002"
#define PID "123456789"

static char *tmp_root;
static Store *store;
static Keyring *keyring;
static Config *config;
static json_t *issued;          /* every token handed out, for the plaintext check */

/* ---- fixtures ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static SessionContext ctx_at(uint64_t now, uid_t uid) {
        return (SessionContext) { .config = config, .keyring = keyring, .now_usec = now, .peer_uid = uid };
}

static void remember(const char *token) {
        if (token)
                ASSERT_OK(json_array_append_new(issued, json_string(token)));
}

static void remember_all(const SessionTokens *s) {
        remember(s->jwt);
        remember(s->refresh_token);
        remember(s->customer_token);
}

typedef enum OpKind {
        OP_START,
        OP_REFRESH,
        OP_REVOKE,
        OP_REVOKE_CUSTOMER,
        OP_DELETE_CUSTOMER,
        OP_PURGE,
        OP_SWEEP,
} OpKind;

typedef struct Op {
        OpKind kind;
        SessionContext ctx;
        const char *a, *b;
        unsigned max;
        char *next;             /* OP_PURGE: where the next step goes on */
        SessionTokens tokens;
        int result;
        unsigned runs;
} Op;

/* The session kinds, as the manager's sweep registry has them. */
static const struct {
        const char *kind;
        SessionExpireFn expire;
} kinds[] = {
        { SESSION_KIND_REFRESH,  session_expire_token  },
        { SESSION_KIND_CUSTOMER, session_expire_token  },
        { SESSION_KIND_SEAL,     session_expire_seal   },
        { SESSION_KIND_FAMILY,   session_expire_family },
        { SESSION_KIND_PAM,      session_expire_timed  },
};

/* One batch of each kind, from its first due entry: the records deleted or updated. */
static int sweep_all_kinds(StoreTxn *t, const SessionContext *ctx, unsigned max) {
        int n = 0;

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_free_ char *cursor = NULL;
                SessionSweepStats st;
                int r;

                r = session_sweep_kind(t, ctx, kinds[i].kind, kinds[i].expire, max, NULL, &cursor, &st);
                if (r < 0)
                        return r;
                ASSERT_TRUE(st.visited <= max);
                ASSERT_EQ(!!cursor, r > 0);
                n += (int) (st.deleted + st.updated);
        }
        return n;
}

/* The unit of work, as the method handlers write it: session refusals commit (a re-use must
 * leave its revocation behind), store errors roll back. */
static int op_work(StoreTxn *t, void *userdata) {
        Op *op = userdata;

        op->runs++;
        switch (op->kind) {
        case OP_START:
                op->result = session_start(t, &op->ctx, op->a, op->b, &op->tokens);
                break;
        case OP_REFRESH:
                op->result = session_refresh(t, &op->ctx, op->a, &op->tokens);
                break;
        case OP_REVOKE:
                op->result = session_revoke_token(t, &op->ctx, op->a);
                break;
        case OP_REVOKE_CUSTOMER:
                op->result = session_revoke_customer(t, &op->ctx, op->a, op->b);
                break;
        case OP_DELETE_CUSTOMER:
                op->result = session_delete_customer(t, op->a);
                break;
        case OP_PURGE: {
                char *next = NULL;

                op->result = session_purge_customer_step(t, op->a, op->b, op->max, NULL, NULL, &next);
                free(op->next);
                op->next = next;
                break;
        }
        case OP_SWEEP:
                op->result = sweep_all_kinds(t, &op->ctx, op->max);
                break;
        }
        if (op->result == -EKEYREVOKED || op->result == -EACCES || op->result == -ETIME)
                return 0;
        return op->result;
}

static int run(Op *op) {
        int r = store_transact(store, op_work, op);

        if (r < 0)
                return r;
        remember_all(&op->tokens);
        return op->result;
}

static void start(uint64_t now, const char *cid, SessionTokens *ret) {
        Op op = { .kind = OP_START, .ctx = ctx_at(now, UID_A), .a = cid, .b = PID };

        ASSERT_OK(run(&op));
        ASSERT_TRUE(op.tokens.jwt && op.tokens.refresh_token && op.tokens.customer_token && op.tokens.family);
        *ret = op.tokens;
}

/* Refreshes; on success *ret (if given) gets the tokens. Returns session_refresh()'s answer. */
static int refresh(uint64_t now, uid_t uid, const char *token, SessionTokens *ret) {
        Op op = { .kind = OP_REFRESH, .ctx = ctx_at(now, uid), .a = token };
        int r = run(&op);

        if (r >= 0) {
                ASSERT_TRUE(op.tokens.jwt && op.tokens.refresh_token && op.tokens.family);
                ASSERT_TRUE(!op.tokens.customer_token);
        } else
                ASSERT_TRUE(!op.tokens.jwt && !op.tokens.refresh_token);
        if (ret)
                *ret = op.tokens;
        else
                session_tokens_done(&op.tokens);
        return r;
}

static int revoke_tok(uint64_t now, const char *token) {
        Op op = { .kind = OP_REVOKE, .ctx = ctx_at(now, UID_A), .a = token };

        return run(&op);
}

static int revoke_customer(uint64_t now, const char *cid, const char *except) {
        Op op = { .kind = OP_REVOKE_CUSTOMER, .ctx = ctx_at(now, UID_A), .a = cid, .b = except };

        return run(&op);
}

static int sweep(uint64_t now, unsigned max) {
        Op op = { .kind = OP_SWEEP, .ctx = ctx_at(now, UID_A), .max = max };

        return run(&op);
}

static int verify_jwt(uint64_t now, const char *jwt, JwtClaims *ret, char **ret_family) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        SessionContext ctx = ctx_at(now, UID_A);

        ASSERT_OK(store_read(store, &t));
        return session_verify_jwt(t, &ctx, jwt, ret, ret_family);
}

static int verify_customer_token(uint64_t now, const char *token, char **cid, char **pid, char **family) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        SessionContext ctx = ctx_at(now, UID_A);

        ASSERT_OK(store_read(store, &t));
        return session_verify_customer_token(t, &ctx, token, cid, pid, family);
}

static json_t *introspect(uint64_t now, const char *token) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        SessionContext ctx = ctx_at(now, UID_A);
        json_t *o = NULL;

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(session_introspect(t, &ctx, token, &o));
        ASSERT_TRUE(json_is_object(o));
        return o;
}

static bool jwt_ok(uint64_t now, const char *jwt) {
        _cleanup_(jwt_claims_done) JwtClaims c = {};

        return verify_jwt(now, jwt, &c, NULL) == 0;
}

static void assert_inactive(uint64_t now, const char *token) {
        _cleanup_(json_decrefp) json_t *o = introspect(now, token);

        /* Exactly {"active": false}: nothing about an inactive token. */
        ASSERT_EQ(json_object_size(o), 1);
        ASSERT_TRUE(json_is_false(json_object_get(o, "active")));
}

static void assert_active(uint64_t now, const char *token, const char *type, const char *cid) {
        _cleanup_(json_decrefp) json_t *o = introspect(now, token);

        ASSERT_TRUE(json_is_true(json_object_get(o, "active")));
        ASSERT_STREQ(json_object_get_string(o, "token_type"), type);
        ASSERT_STREQ(json_object_get_string(o, "sub"), cid);
        ASSERT_STREQ(json_object_get_string(o, "customerId"), cid);
        ASSERT_STREQ(json_object_get_string(o, "aud"), PID);
        ASSERT_STREQ(json_object_get_string(o, "publisherId"), PID);
        ASSERT_STREQ(json_object_get_string(o, "iss"), config->issuer);
        ASSERT_TRUE(json_is_integer(json_object_get(o, "exp")));
        ASSERT_TRUE(json_is_integer(json_object_get(o, "iat")));
        ASSERT_TRUE(json_integer_value(json_object_get(o, "exp")) > (json_int_t) (now / USEC));
        ASSERT_EQ(json_object_get(o, "jti") != NULL, streq(type, "access_token"));
}

static int count_record(const char *key, json_t *value, void *userdata) {
        (*(unsigned *) userdata)++;
        return 0;
}

static unsigned count_tokens_table(const char *prefix) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        unsigned n = 0;

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(store_foreach(t, STORE_TOKENS, prefix, NULL, count_record, &n));
        return n;
}

/* The record at key in the token table, NULL if there is none (a new reference). */
static json_t *record_at(const char *key) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        json_t *rec = NULL;
        int r;

        ASSERT_OK(store_read(store, &t));
        r = store_get(t, STORE_TOKENS, key, &rec);
        ASSERT_TRUE(r == 0 || r == -ENOENT);
        return rec;
}

static unsigned count_expiry(const char *prefix) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        unsigned n = 0;

        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(store_foreach(t, STORE_TOKEN_EXPIRY, prefix, NULL, count_record, &n));
        return n;
}

/* Everything of ours has an index entry: sweeping far in the future leaves nothing behind. */
static void clear_tokens_table(void) {
        Op op = { .kind = OP_SWEEP, .ctx = ctx_at(UINT64_C(1) << 62, UID_A), .max = 1000000 };

        ASSERT_OK(run(&op));
        ASSERT_EQ(count_tokens_table(NULL), 0);
        ASSERT_EQ(count_expiry(NULL), 0);
}

/* ---- token_seal ---- */

TEST(seal) {
        _cleanup_(erase_and_freep) char *key = NULL, *other = NULL, *plain = NULL;
        _cleanup_free_ char *sealed = NULL, *sealed2 = NULL, *bad = NULL;

        ASSERT_OK(token_random(32, &key));
        ASSERT_OK(token_random(32, &other));
        ASSERT_OK(token_seal(key, "the successor", &sealed));
        ASSERT_OK(token_seal(key, "the successor", &sealed2));
        ASSERT_TRUE(!strstr(sealed, "successor"));
        ASSERT_TRUE(!streq(sealed, sealed2));   /* random nonce */

        ASSERT_OK(token_unseal(key, sealed, &plain));
        ASSERT_STREQ(plain, "the successor");
        plain = erase_and_free(plain);
        ASSERT_OK(token_unseal(key, sealed2, &plain));
        ASSERT_STREQ(plain, "the successor");
        plain = erase_and_free(plain);

        ASSERT_EQ(token_unseal(other, sealed, &plain), -EBADMSG);
        ASSERT_TRUE(!plain);
        /* A flipped character anywhere is refused (MAC or base64url canonical check). */
        for (size_t i = 0; sealed[i]; i++) {
                bad = strdup(sealed);
                ASSERT_TRUE(bad);
                bad[i] = bad[i] == 'A' ? 'B' : 'A';
                ASSERT_EQ(token_unseal(key, bad, &plain), -EBADMSG);
                free(bad);
                bad = NULL;
        }
        ASSERT_EQ(token_unseal(key, "", &plain), -EBADMSG);
        ASSERT_EQ(token_unseal(key, "!!!", &plain), -EBADMSG);
        ASSERT_EQ(token_unseal(key, "AAAA", &plain), -EBADMSG);
        ASSERT_EQ(token_unseal("", sealed, &plain), -EINVAL);
        ASSERT_EQ(token_seal(key, "", &bad), -EINVAL);
        ASSERT_EQ(token_seal("", "x", &bad), -EINVAL);
        ASSERT_EQ(token_seal(NULL, "x", &bad), -EINVAL);
        ASSERT_TRUE(!bad);
}

/* ---- sessions ---- */

TEST(start_and_verify) {
        _cleanup_(session_tokens_done) SessionTokens s = {};
        _cleanup_(jwt_claims_done) JwtClaims c = {};
        _cleanup_free_ char *family = NULL, *cid = NULL, *pid = NULL, *cfam = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];

        start(T0, CID, &s);
        ASSERT_EQ(strlen(s.refresh_token), 43);
        ASSERT_EQ(strlen(s.customer_token), 43);
        ASSERT_EQ(strlen(s.family), 22);
        ASSERT_EQ(s.jwt_expires, T0 / USEC + 15 * 60);

        ASSERT_OK(verify_jwt(T0, s.jwt, &c, &family));
        ASSERT_STREQ(c.sub, CID);
        ASSERT_STREQ(c.customer_id, CID);
        ASSERT_STREQ(c.aud, PID);
        ASSERT_STREQ(c.publisher_id, PID);
        ASSERT_STREQ(c.iss, "idmd");
        ASSERT_STREQ(c.sid, s.family);
        ASSERT_STREQ(family, s.family);
        ASSERT_EQ(c.iat, T0 / USEC);
        ASSERT_EQ(c.nbf, T0 / USEC);
        ASSERT_EQ(c.exp, T0 / USEC + 15 * 60);
        ASSERT_TRUE(c.jti && strlen(c.jti) >= 22);

        ASSERT_OK(verify_customer_token(T0, s.customer_token, &cid, &pid, &cfam));
        ASSERT_STREQ(cid, CID);
        ASSERT_STREQ(pid, PID);
        ASSERT_STREQ(cfam, s.family);

        /* Kinds are not interchangeable. */
        ASSERT_EQ(verify_customer_token(T0, s.refresh_token, NULL, NULL, NULL), -EACCES);
        ASSERT_EQ(refresh(T0, UID_A, s.customer_token, NULL), -EACCES);
        ASSERT_EQ(refresh(T0, UID_A, s.jwt, NULL), -EACCES);
        ASSERT_EQ(verify_jwt(T0, s.refresh_token, &c, NULL), -EACCES);
        /* Knowing what the store keeps (the hash) is worth nothing. */
        token_hash(s.refresh_token, hash);
        ASSERT_EQ(refresh(T0, UID_A, hash, NULL), -EACCES);
        token_hash(s.customer_token, hash);
        ASSERT_EQ(verify_customer_token(T0, hash, NULL, NULL, NULL), -EACCES);

        /* Expiry with 60 s leeway for the JWT; customerToken after 14 days. */
        ASSERT_TRUE(jwt_ok(T0 + 15 * MINUTE + 59 * USEC, s.jwt));
        ASSERT_EQ(verify_jwt(T0 + 16 * MINUTE, s.jwt, &c, NULL), -ETIME);
        ASSERT_OK(verify_customer_token(T0 + 14 * DAY - 1, s.customer_token, NULL, NULL, NULL));
        ASSERT_EQ(verify_customer_token(T0 + 14 * DAY, s.customer_token, NULL, NULL, NULL), -ETIME);

        ASSERT_EQ(session_start(NULL, NULL, CID, PID, &s), -EINVAL);
        ASSERT_TRUE(!s.jwt);    /* outputs are reset first */
}

TEST(jwt_without_family) {
        _cleanup_(session_tokens_done) SessionTokens s = {};
        _cleanup_(jwt_claims_done) JwtClaims v = {};
        _cleanup_free_ char *jwt = NULL, *jwt2 = NULL;
        JwtClaims c;    /* borrowed strings: not freed */

        start(T0, CID, &s);
        /* Well signed, but without "sid" or with an unknown one: not a session's token. */
        c = (JwtClaims) { .iss = config->issuer, .sub = (char *) CID, .aud = (char *) PID, .jti = (char *) "x",
                          .customer_id = (char *) CID, .publisher_id = (char *) PID,
                          .iat = T0 / USEC, .nbf = T0 / USEC, .exp = T0 / USEC + 60 };
        ASSERT_OK(jwt_sign(keyring, &c, NULL, &jwt));
        ASSERT_OK(jwt_verify(keyring, jwt, config->issuer, T0 / USEC, 60, &v));
        ASSERT_TRUE(!v.sid);
        ASSERT_EQ(verify_jwt(T0, jwt, &v, NULL), -EACCES);
        assert_inactive(T0, jwt);

        c.sid = (char *) "AAAAAAAAAAAAAAAAAAAAAA";
        ASSERT_OK(jwt_sign(keyring, &c, NULL, &jwt2));
        ASSERT_EQ(verify_jwt(T0, jwt2, &v, NULL), -EACCES);

        /* Another customer's family. */
        free(jwt2);
        c.sid = s.family;
        c.sub = c.customer_id = (char *) CID2;
        ASSERT_OK(jwt_sign(keyring, &c, NULL, &jwt2));
        ASSERT_EQ(verify_jwt(T0, jwt2, &v, NULL), -EACCES);

        ASSERT_EQ(verify_jwt(T0, "garbage", &v, NULL), -EACCES);
        ASSERT_EQ(verify_jwt(T0, NULL, &v, NULL), -EACCES);
}

TEST(refresh_rotates) {
        _cleanup_(session_tokens_done) SessionTokens s = {}, r1 = {}, r2 = {};

        start(T0, CID, &s);
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, s.refresh_token, &r1));
        ASSERT_TRUE(!streq(r1.refresh_token, s.refresh_token));
        ASSERT_TRUE(!streq(r1.jwt, s.jwt));
        ASSERT_STREQ(r1.family, s.family);
        ASSERT_EQ(r1.jwt_expires, (T0 + MINUTE) / USEC + 15 * 60);
        ASSERT_TRUE(jwt_ok(T0 + MINUTE, r1.jwt));
        ASSERT_TRUE(jwt_ok(T0 + MINUTE, s.jwt));        /* the old JWT lives on until its exp */
        assert_inactive(T0 + MINUTE, s.refresh_token);  /* used up */
        assert_active(T0 + MINUTE, r1.refresh_token, "refresh_token", CID);

        ASSERT_OK(refresh(T0 + 2 * MINUTE, UID_A, r1.refresh_token, &r2));
        ASSERT_TRUE(!streq(r2.refresh_token, r1.refresh_token));
        ASSERT_TRUE(jwt_ok(T0 + 2 * MINUTE, r2.jwt));
        ASSERT_OK(verify_customer_token(T0 + 2 * MINUTE, s.customer_token, NULL, NULL, NULL));
}

TEST(grace_same_peer) {
        _cleanup_(session_tokens_done) SessionTokens s = {}, r1 = {}, again = {}, again2 = {}, r2 = {};

        start(T0, CID, &s);
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, s.refresh_token, &r1));
        /* A concurrent user of the same token (same peer, within 10 s) gets the same successor
         * (and a JWT of its own); the family lives on. */
        ASSERT_OK(refresh(T0 + MINUTE + 5 * USEC, UID_A, s.refresh_token, &again));
        ASSERT_STREQ(again.refresh_token, r1.refresh_token);
        ASSERT_TRUE(jwt_ok(T0 + MINUTE + 5 * USEC, again.jwt));
        ASSERT_OK(refresh(T0 + MINUTE + 10 * USEC - 1, UID_A, s.refresh_token, &again2));
        ASSERT_STREQ(again2.refresh_token, r1.refresh_token);
        /* The successor still rotates normally. */
        ASSERT_OK(refresh(T0 + 2 * MINUTE, UID_A, r1.refresh_token, &r2));
        ASSERT_TRUE(jwt_ok(T0 + 2 * MINUTE, r2.jwt));
        ASSERT_TRUE(jwt_ok(T0 + 2 * MINUTE, s.jwt));
}

TEST(grace_other_peer) {
        _cleanup_(session_tokens_done) SessionTokens s = {}, r1 = {}, other = {};

        start(T0, CID, &s);
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, s.refresh_token, &r1));
        /* Another uid presenting the rotated token, even inside the window: theft. */
        ASSERT_EQ(refresh(T0 + MINUTE + USEC, UID_B, s.refresh_token, NULL), -EKEYREVOKED);
        ASSERT_EQ(refresh(T0 + MINUTE + 2 * USEC, UID_A, r1.refresh_token, &other), -EACCES);
        ASSERT_EQ(refresh(T0 + MINUTE + 2 * USEC, UID_A, s.refresh_token, NULL), -EACCES);
        ASSERT_EQ(verify_customer_token(T0 + MINUTE + 2 * USEC, s.customer_token, NULL, NULL, NULL), -EACCES);
        ASSERT_TRUE(!jwt_ok(T0 + MINUTE + 2 * USEC, s.jwt));
        ASSERT_TRUE(!jwt_ok(T0 + MINUTE + 2 * USEC, r1.jwt));
        assert_inactive(T0 + MINUTE + 2 * USEC, r1.jwt);
        assert_inactive(T0 + MINUTE + 2 * USEC, r1.refresh_token);
        assert_inactive(T0 + MINUTE + 2 * USEC, s.customer_token);
}

TEST(reuse_after_grace) {
        _cleanup_(session_tokens_done) SessionTokens s = {}, r1 = {}, mine = {};

        start(T0, CID, &s);
        start(T0, CID, &mine);  /* another login of the same customer */
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, s.refresh_token, &r1));
        /* Exactly at the end of the window: a re-use, the family is revoked. */
        ASSERT_EQ(refresh(T0 + MINUTE + 10 * USEC, UID_A, s.refresh_token, NULL), -EKEYREVOKED);
        ASSERT_EQ(refresh(T0 + MINUTE + 11 * USEC, UID_A, r1.refresh_token, NULL), -EACCES);
        ASSERT_TRUE(!jwt_ok(T0 + MINUTE + 11 * USEC, r1.jwt));
        /* Only that family: the other login is untouched. */
        ASSERT_TRUE(jwt_ok(T0 + MINUTE + 11 * USEC, mine.jwt));
        ASSERT_OK(verify_customer_token(T0 + MINUTE + 11 * USEC, mine.customer_token, NULL, NULL, NULL));
        ASSERT_OK(refresh(T0 + MINUTE + 11 * USEC, UID_A, mine.refresh_token, NULL));
}

TEST(expiry_and_sliding) {
        _cleanup_(session_tokens_done) SessionTokens s = {}, idle = {}, r1 = {}, r2 = {};

        start(T0, CID, &s);
        start(T0, CID, &idle);
        /* Without use a refresh token dies after 100 days... */
        ASSERT_EQ(refresh(T0 + 100 * DAY, UID_A, idle.refresh_token, NULL), -ETIME);
        assert_inactive(T0 + 100 * DAY, idle.refresh_token);
        /* ...but each use gives 100 days from then. */
        ASSERT_OK(refresh(T0 + 99 * DAY, UID_A, s.refresh_token, &r1));
        ASSERT_EQ(sweep(T0 + 150 * DAY, 1000) > 0, true);       /* idle's records, s's old token */
        ASSERT_OK(refresh(T0 + 150 * DAY, UID_A, r1.refresh_token, &r2));
        ASSERT_TRUE(jwt_ok(T0 + 150 * DAY, r2.jwt));
        ASSERT_OK(sweep(T0 + 150 * DAY, 1000));
        ASSERT_TRUE(jwt_ok(T0 + 150 * DAY, r2.jwt));    /* the family was extended, not swept */
        assert_active(T0 + 250 * DAY - 1, r2.refresh_token, "refresh_token", CID);
        ASSERT_EQ(refresh(T0 + 250 * DAY, UID_A, r2.refresh_token, NULL), -ETIME);
        /* An expired token is not a re-use: nothing is revoked. */
        ASSERT_EQ(refresh(T0 + 250 * DAY, UID_A, r1.refresh_token, NULL), -ETIME);
}

TEST(revoke_token) {
        _cleanup_(session_tokens_done) SessionTokens a = {}, b = {}, c = {}, d = {};

        start(T0, CID, &a);
        start(T0, CID, &b);
        start(T0, CID, &c);
        start(T0, CID, &d);

        /* Unknown and invalid tokens are not errors (RFC 7009), and change nothing. */
        ASSERT_EQ(revoke_tok(T0, "garbage"), 0);
        ASSERT_EQ(revoke_tok(T0, ""), 0);
        ASSERT_EQ(revoke_tok(T0, "a.b.c"), 0);
        ASSERT_EQ(revoke_tok(T0, NULL), 0);

        /* A refresh token ends its family: its JWTs, its customerToken. */
        ASSERT_EQ(revoke_tok(T0 + USEC, a.refresh_token), 1);
        ASSERT_EQ(revoke_tok(T0 + USEC, a.refresh_token), 0);
        ASSERT_EQ(refresh(T0 + USEC, UID_A, a.refresh_token, NULL), -EACCES);
        ASSERT_TRUE(!jwt_ok(T0 + USEC, a.jwt));
        assert_inactive(T0 + USEC, a.jwt);
        assert_inactive(T0 + USEC, a.customer_token);
        ASSERT_EQ(verify_customer_token(T0 + USEC, a.customer_token, NULL, NULL, NULL), -EACCES);

        /* A customerToken, a JWT: likewise their family. */
        ASSERT_EQ(revoke_tok(T0 + USEC, b.customer_token), 1);
        ASSERT_EQ(refresh(T0 + USEC, UID_A, b.refresh_token, NULL), -EACCES);
        ASSERT_EQ(revoke_tok(T0 + USEC, c.jwt), 1);
        ASSERT_EQ(refresh(T0 + USEC, UID_A, c.refresh_token, NULL), -EACCES);
        ASSERT_EQ(revoke_tok(T0 + USEC, c.jwt), 0);

        /* An expired JWT revokes nothing. */
        ASSERT_EQ(revoke_tok(T0 + DAY, d.jwt), 0);
        ASSERT_OK(refresh(T0 + DAY, UID_A, d.refresh_token, NULL));
}

TEST(revoke_customer) {
        _cleanup_(session_tokens_done) SessionTokens a = {}, b = {}, c = {}, other = {};

        clear_tokens_table();
        start(T0, CID, &a);
        start(T0, CID, &b);
        start(T0, CID, &c);
        start(T0, CID2, &other);

        ASSERT_EQ(revoke_customer(T0 + USEC, CID, b.family), 2);
        ASSERT_TRUE(!jwt_ok(T0 + USEC, a.jwt));
        ASSERT_TRUE(!jwt_ok(T0 + USEC, c.jwt));
        ASSERT_EQ(refresh(T0 + USEC, UID_A, a.refresh_token, NULL), -EACCES);
        ASSERT_EQ(verify_customer_token(T0 + USEC, c.customer_token, NULL, NULL, NULL), -EACCES);
        ASSERT_TRUE(jwt_ok(T0 + USEC, b.jwt));
        ASSERT_OK(verify_customer_token(T0 + USEC, b.customer_token, NULL, NULL, NULL));
        ASSERT_TRUE(jwt_ok(T0 + USEC, other.jwt));

        ASSERT_EQ(revoke_customer(T0 + USEC, CID, b.family), 0);
        ASSERT_EQ(revoke_customer(T0 + USEC, CID, NULL), 1);
        ASSERT_TRUE(!jwt_ok(T0 + USEC, b.jwt));
        ASSERT_TRUE(jwt_ok(T0 + USEC, other.jwt));
        ASSERT_EQ(revoke_customer(T0 + USEC, "no-such-customer", NULL), 0);
        ASSERT_EQ(revoke_customer(T0 + USEC, "bad:id", NULL), -EINVAL);
}

TEST(introspect) {
        _cleanup_(session_tokens_done) SessionTokens s = {};
        _cleanup_(json_decrefp) json_t *o = NULL;
        static const char *const jwt_keys[] = {
                "active", "sub", "exp", "iat", "nbf", "iss", "aud", "jti", "token_type", "customerId",
                "publisherId",
        };
        _cleanup_free_ char *long_token = NULL;

        start(T0, CID, &s);
        assert_active(T0, s.jwt, "access_token", CID);
        assert_active(T0, s.refresh_token, "refresh_token", CID);
        assert_active(T0, s.customer_token, "customer_token", CID);

        o = introspect(T0, s.jwt);
        ASSERT_EQ(json_object_size(o), ELEMENTSOF(jwt_keys));
        for (size_t i = 0; i < ELEMENTSOF(jwt_keys); i++)
                ASSERT_TRUE(json_object_get(o, jwt_keys[i]));
        ASSERT_EQ(json_integer_value(json_object_get(o, "exp")), (json_int_t) (T0 / USEC + 15 * 60));

        long_token = malloc(5000);
        ASSERT_TRUE(long_token);
        memset(long_token, 'A', 4999);
        long_token[4999] = 0;
        assert_inactive(T0, "garbage");
        assert_inactive(T0, "");
        assert_inactive(T0, NULL);
        assert_inactive(T0, "a.b.c");
        assert_inactive(T0, "...");
        assert_inactive(T0, long_token);
        assert_inactive(T0, "family:x");
        /* Expired ones. */
        assert_inactive(T0 + 16 * MINUTE, s.jwt);
        assert_inactive(T0 + 14 * DAY, s.customer_token);
        assert_inactive(T0 + 100 * DAY, s.refresh_token);
}

typedef struct Put {
        const char *key;
        json_t *value;
        bool del;
} Put;

static int collect_key_test(const char *key, json_t *value, void *userdata) {
        return json_array_append_new(userdata, json_string(key)) < 0 ? -ENOMEM : 0;
}

static int put_work(StoreTxn *t, void *userdata) {
        Put *p = userdata;

        if (p->del)
                return store_del(t, STORE_TOKENS, p->key);
        return store_put(t, STORE_TOKENS, p->key, p->value, STORE_PUT_DEFAULT);
}

TEST(one_time_tokens_are_not_ours) {
        /* A record of another kind in the token table (a reset token, say) is never accepted as a
         * session token, and the sweep leaves it to its owner. */
        static const char *const token = "a-one-time-token-of-another-module";
        char hash[TOKEN_HASH_STRLEN + 1];
        _cleanup_(json_decrefp) json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "type", "reset",
                                                         "family", "AAAAAAAAAAAAAAAAAAAAAA", "customerId", CID,
                                                         "publisherId", PID, "created", (json_int_t) 0,
                                                         "expires", (json_int_t) 1);
        Put p = { .key = hash };

        ASSERT_TRUE(rec);
        token_hash(token, hash);
        p.value = rec;
        ASSERT_OK(store_transact(store, put_work, &p));

        ASSERT_EQ(refresh(T0, UID_A, token, NULL), -EACCES);
        ASSERT_EQ(verify_customer_token(T0, token, NULL, NULL, NULL), -EACCES);
        assert_inactive(T0, token);
        ASSERT_EQ(revoke_tok(T0, token), 0);
        ASSERT_OK(sweep(T0, 1000));
        ASSERT_EQ(count_tokens_table(hash), 1);

        p.del = true;
        ASSERT_OK(store_transact(store, put_work, &p));
}

/* What a refresh writes: the family's index entry stays put (one entry, never a second one),
 * the predecessor's sealed successor is dropped once the window is over, and after a revocation
 * and the sweep nothing is left behind. */
TEST(refresh_index_entries) {
        _cleanup_(session_tokens_done) SessionTokens a = {}, r1 = {}, r2 = {}, r3 = {};

        clear_tokens_table();
        start(T0, CID, &a);
        ASSERT_EQ(count_expiry(NULL), 3);
        ASSERT_OK(refresh(T0 + USEC, UID_A, a.refresh_token, &r1));
        ASSERT_EQ(count_expiry(SESSION_KIND_FAMILY ":"), 1);
        ASSERT_EQ(count_expiry(SESSION_KIND_REFRESH ":"), 2);
        ASSERT_EQ(count_expiry(SESSION_KIND_SEAL ":"), 1);
        /* within the window of a's rotation: a keeps its sealed successor */
        ASSERT_OK(refresh(T0 + 2 * USEC, UID_A, r1.refresh_token, &r2));
        ASSERT_EQ(count_expiry(SESSION_KIND_FAMILY ":"), 1);
        ASSERT_EQ(count_expiry(SESSION_KIND_SEAL ":"), 2);
        /* a minute later: r1's sealed successor (r2) goes with r2's rotation */
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, r2.refresh_token, &r3));
        ASSERT_EQ(count_expiry(SESSION_KIND_FAMILY ":"), 1);
        ASSERT_EQ(count_expiry(SESSION_KIND_SEAL ":"), 2);      /* a's and r2's */
        ASSERT_EQ(count_expiry(SESSION_KIND_REFRESH ":"), 4);
        /* the grace window still works for the latest rotation */
        ASSERT_OK(refresh(T0 + MINUTE + USEC, UID_A, r2.refresh_token, NULL));
        ASSERT_TRUE(jwt_ok(T0 + MINUTE, r3.jwt));

        /* revoked: the entry moves from where the extensions left it, no second one */
        ASSERT_EQ(revoke_tok(T0 + 2 * MINUTE, r3.refresh_token), 1);
        ASSERT_EQ(count_expiry(SESSION_KIND_FAMILY ":"), 1);
        ASSERT_TRUE(!jwt_ok(T0 + 2 * MINUTE, r3.jwt));
        ASSERT_TRUE(sweep(T0 + 1000 * DAY, 1000) > 0);
        ASSERT_EQ(count_tokens_table(NULL), 0);
        ASSERT_EQ(count_expiry(NULL), 0);
}

TEST(sweep) {
        _cleanup_(session_tokens_done) SessionTokens a = {}, b = {}, c = {}, r = {}, r2 = {};
        int n, total = 0;

        clear_tokens_table();
        start(T0, CID, &a);
        start(T0, CID, &b);
        start(T0, CID2, &c);
        ASSERT_EQ(count_tokens_table(NULL), 12);        /* 3 × (family, index, refresh, customer) */
        ASSERT_EQ(count_tokens_table("family:"), 3);
        ASSERT_EQ(count_tokens_table("customer:" CID ":"), 2);
        /* 3 × (family, refresh, customer) in the expiry index */
        ASSERT_EQ(count_expiry(NULL), 9);
        ASSERT_EQ(count_expiry(SESSION_KIND_REFRESH ":"), 3);

        /* Nothing is due yet. */
        ASSERT_EQ(sweep(T0 + DAY, 1000), 0);

        /* Revoked: the family goes once its JWTs can no longer verify (its tokens, which grant
         * nothing without it, at their own expiry). */
        ASSERT_EQ(revoke_tok(T0 + DAY, a.refresh_token), 1);
        /* Its index entry moved to the revoked sessions' index at once. */
        ASSERT_EQ(count_tokens_table("customer:" CID ":"), 1);
        ASSERT_EQ(count_tokens_table("revoked:" CID ":"), 1);
        {
                _cleanup_(json_decrefp) json_t *entry = NULL;
                _cleanup_free_ char *rkey = NULL;

                ASSERT_TRUE(asprintf(&rkey, "revoked:" CID ":%s", a.family) > 0);
                entry = record_at(rkey);
                ASSERT_TRUE(entry && json_object_get(entry, "revoked") && json_object_get(entry, "created"));
        }
        ASSERT_EQ(sweep(T0 + DAY, 1000), 0);
        ASSERT_EQ(sweep(T0 + DAY + 16 * MINUTE, 1000), 2);      /* the family and its index entry */
        ASSERT_EQ(count_tokens_table("revoked:" CID ":"), 0);
        ASSERT_EQ(count_tokens_table(NULL), 10);
        ASSERT_EQ(refresh(T0 + DAY + 16 * MINUTE, UID_A, a.refresh_token, NULL), -EACCES);
        ASSERT_EQ(count_expiry(SESSION_KIND_FAMILY ":"), 2);

        /* The customerTokens expire after 14 days; a refresh keeps the rest alive. */
        ASSERT_OK(refresh(T0 + 10 * DAY, UID_A, b.refresh_token, &r));
        ASSERT_EQ(count_expiry(SESSION_KIND_SEAL ":"), 1);
        ASSERT_EQ(sweep(T0 + 14 * DAY, 1000), 4);       /* 3 customerTokens; b's sealed successor */
        ASSERT_EQ(verify_customer_token(T0 + 14 * DAY, b.customer_token, NULL, NULL, NULL), -EACCES);
        ASSERT_EQ(verify_customer_token(T0 + 14 * DAY, c.customer_token, NULL, NULL, NULL), -EACCES);
        ASSERT_EQ(count_tokens_table(NULL), 8);
        ASSERT_EQ(count_expiry(SESSION_KIND_SEAL ":"), 0);
        ASSERT_EQ(count_expiry(SESSION_KIND_CUSTOMER ":"), 0);

        /* After 100 days: a's, b's first and c's refresh tokens; c's family (with its index
         * entry). b's family was extended by the refresh, which left its index entry where it
         * was: that entry comes due now and moves on (the record loses "indexed": one update).
         * One entry per kind and batch. */
        n = sweep(T0 + 100 * DAY, 1);
        /* a refresh token; c's family and index entry, or b's family entry moved (both due at
         * T0 + 100 days, in the order of their random keys) */
        ASSERT_TRUE(n == 3 || n == 2);
        total += n;
        while ((n = sweep(T0 + 100 * DAY, 1)) > 0)
                total += n;
        ASSERT_EQ(n, 0);
        ASSERT_EQ(total, 6);
        ASSERT_EQ(count_expiry(SESSION_KIND_FAMILY ":"), 1);     /* b's, at its new due */
        ASSERT_OK(refresh(T0 + 100 * DAY, UID_A, r.refresh_token, &r2));
        ASSERT_TRUE(count_tokens_table(NULL) > 0);

        ASSERT_TRUE(sweep(T0 + 1000 * DAY, 1000) > 0);
        ASSERT_EQ(count_tokens_table(NULL), 0);
        ASSERT_EQ(count_expiry(NULL), 0);
        ASSERT_EQ(sweep(T0 + 1000 * DAY, 1000), 0);
}

/* Starts n sessions at 'now' in one unit of work, for customers first_cid, first_cid + 1, ... */
typedef struct Bulk {
        uint64_t now;
        unsigned first_cid, n;
} Bulk;

static int bulk_work(StoreTxn *t, void *userdata) {
        Bulk *b = userdata;
        SessionContext ctx = ctx_at(b->now, UID_A);

        for (unsigned i = 0; i < b->n; i++) {
                _cleanup_(session_tokens_done) SessionTokens s = {};
                char cid[16];
                int r;

                (void) snprintf(cid, sizeof(cid), "%u", b->first_cid + i);
                r = session_start(t, &ctx, cid, PID, &s);
                if (r < 0)
                        return r;
        }
        return 0;
}

typedef struct RefreshCount {
        uint64_t now;
        unsigned live, dead;
} RefreshCount;

static int count_refresh(const char *key, json_t *value, void *userdata) {
        RefreshCount *c = userdata;

        if (streq_ptr(json_object_get_string(value, "type"), "refresh")) {
                if (json_integer_value(json_object_get(value, "expires")) > (json_int_t) c->now)
                        c->live++;
                else
                        c->dead++;
        }
        return 0;
}

typedef struct KindBatch {
        SessionContext ctx;
        const char *after;
        char *cursor;
        SessionSweepStats stats;
} KindBatch;

static int kind_batch_work(StoreTxn *t, void *userdata) {
        KindBatch *k = userdata;

        free(k->cursor);        /* run again after the store grew */
        k->cursor = NULL;
        return session_sweep_kind(t, &k->ctx, SESSION_KIND_REFRESH, session_expire_token, 256, k->after,
                                  &k->cursor, &k->stats);
}

TEST(sweep_in_bounded_batches) {
        /* 10,000 expired refresh tokens and 1,000 live ones: each unit of work takes at most 256
         * due entries and reads only the records it deletes; the live ones are never read. */
        const uint64_t now = T0 + 120 * DAY;
        _cleanup_free_ char *cursor = NULL;
        Bulk expired = { .now = T0, .first_cid = 200000000, .n = 1000 };
        Bulk live = { .now = T0 + 50 * DAY, .first_cid = 300000000, .n = 1000 };
        RefreshCount c = { .now = now };
        unsigned units = 0, deleted = 0;
        int r;

        clear_tokens_table();
        for (unsigned i = 0; i < 10; i++, expired.first_cid += expired.n)
                ASSERT_OK(store_transact(store, bulk_work, &expired));
        ASSERT_OK(store_transact(store, bulk_work, &live));
        ASSERT_EQ(count_expiry(SESSION_KIND_REFRESH ":"), 11000);

        do {
                KindBatch k = { .ctx = ctx_at(now, UID_A), .after = cursor };

                r = store_transact(store, kind_batch_work, &k);
                ASSERT_OK(r);
                units++;
                ASSERT_TRUE(k.stats.visited <= 256);
                ASSERT_EQ(k.stats.deleted, k.stats.visited);    /* every entry taken was due... */
                ASSERT_EQ(k.stats.read, k.stats.deleted);       /* ...and no live record was read */
                ASSERT_EQ(!!k.cursor, r > 0);
                deleted += k.stats.deleted;
                free(cursor);
                cursor = TAKE_PTR(k.cursor);
        } while (r > 0);
        ASSERT_EQ(deleted, 10000);
        ASSERT_EQ(units, 40);   /* 39 full batches and 16 records */
        ASSERT_TRUE(!cursor);

        /* Nothing left that is due: one more batch reads one index entry and no record. */
        {
                KindBatch k = { .ctx = ctx_at(now, UID_A) };

                ASSERT_EQ(store_transact(store, kind_batch_work, &k), 0);
                ASSERT_EQ(k.stats.visited, 0);
                ASSERT_EQ(k.stats.read, 0);
        }

        {
                _cleanup_(store_txn_freep) StoreTxn *t = NULL;

                ASSERT_OK(store_read(store, &t));
                ASSERT_OK(store_foreach(t, STORE_TOKENS, NULL, NULL, count_refresh, &c));
        }
        ASSERT_EQ(c.dead, 0);
        ASSERT_EQ(c.live, 1000);
        ASSERT_EQ(count_expiry(SESSION_KIND_REFRESH ":"), 1000);
        clear_tokens_table();
}

TEST(sessions_per_customer_are_bounded) {
        /* The 101st login of one customer ends its oldest session, not the store. */
        SessionTokens sessions[101] = {};

        clear_tokens_table();
        for (size_t i = 0; i < ELEMENTSOF(sessions); i++)
                start(T0 + i * MINUTE, CID, &sessions[i]);
        ASSERT_EQ(refresh(T0 + DAY, UID_A, sessions[0].refresh_token, NULL), -EACCES);
        for (size_t i = 1; i < ELEMENTSOF(sessions); i++)
                ASSERT_OK(refresh(T0 + DAY, UID_A, sessions[i].refresh_token, NULL));
        for (size_t i = 0; i < ELEMENTSOF(sessions); i++)
                session_tokens_done(&sessions[i]);
}

static int index_entries(StoreTxn *t, json_t *keys) {
        char prefix[64];

        (void) snprintf(prefix, sizeof(prefix), "customer:%s:", CID);
        return store_foreach(t, STORE_TOKENS, prefix, NULL, collect_key_test, keys);
}

TEST(session_limit_reads_the_index_summary) {
        /* The customer's index entries carry {created, expires}, and a revoked session's moves to
         * another index, so the limit counts live sessions from them alone; entries without a
         * summary (written before it existed) are counted through their family record. */
        _cleanup_(json_decrefp) json_t *keys = json_array(), *entry = NULL, *empty = json_object();
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        SessionTokens sessions[101] = {};
        size_t i;
        json_t *k;

        clear_tokens_table();
        ASSERT_TRUE(keys && empty);
        for (i = 0; i < 100; i++)
                start(T0 + i * MINUTE, CID, &sessions[i]);

        /* A revoked session's entry moves to the revoked sessions' index (it and the family stay
         * until the sweep): the 101st login ends nobody's session. */
        ASSERT_OK(revoke_tok(T0 + 2 * HOUR, sessions[50].refresh_token));
        ASSERT_EQ(count_tokens_table("revoked:" CID ":"), 1);
        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(index_entries(t, keys));
        ASSERT_EQ(json_array_size(keys), 99);
        json_array_foreach(keys, i, k) {
                ASSERT_TRUE(strstr(json_string_value(k), sessions[50].family) == NULL);
                ASSERT_OK(store_get(t, STORE_TOKENS, json_string_value(k), &entry));
                ASSERT_TRUE(json_object_get(entry, "created") && json_object_get(entry, "expires"));
                ASSERT_FALSE(json_object_get(entry, "revoked"));
                json_decref(entry);
                entry = NULL;
        }
        t = store_txn_free(t);
        start(T0 + 3 * HOUR, CID, &sessions[100]);
        assert_active(T0 + 3 * HOUR, sessions[0].refresh_token, "refresh_token", CID);

        /* Entries of an older store, {}: the family records decide. 100 live, so the next login
         * ends the oldest, session 0. */
        json_array_foreach(keys, i, k) {
                Put p = { .key = json_string_value(k), .value = empty };
                ASSERT_OK(store_transact(store, put_work, &p));
        }
        session_tokens_done(&sessions[50]);
        start(T0 + 4 * HOUR, CID, &sessions[50]);
        assert_inactive(T0 + 4 * HOUR, sessions[0].refresh_token);
        assert_active(T0 + 4 * HOUR, sessions[1].refresh_token, "refresh_token", CID);
        for (i = 0; i < ELEMENTSOF(sessions); i++)
                session_tokens_done(&sessions[i]);
}

static int pam_put_work(StoreTxn *t, void *userdata) {
        Put *p = userdata;

        if (p->del)
                return session_timed_del(t, SESSION_KIND_PAM, p->key);
        return session_timed_put(t, SESSION_KIND_PAM, p->key, p->value);
}

TEST(sweep_pam_records) {
        /* The PAM path's "who opened which session" records go at their expiry (one whose session
         * is gone grants nothing meanwhile: pam.c checks the session). */
        _cleanup_(session_tokens_done) SessionTokens a = {}, b = {};
        _cleanup_(json_decrefp) json_t *ra = NULL, *ra2 = NULL, *rb = NULL, *rc = NULL;
        Put pa = { .key = SESSION_PAM_PREFIX PID ":a@example.com:0" };
        Put pb = { .key = SESSION_PAM_PREFIX PID ":b@example.com:0" };
        Put pc = { .key = SESSION_PAM_PREFIX PID ":c@example.com:0" };
        char longkey[STORE_KEY_MAX + 1];
        Put pl = { .key = longkey };

        clear_tokens_table();
        start(T0, CID, &a);
        start(T0, CID2, &b);
        ra = json_pack("{s:s, s:s, s:I, s:I}", "sessionId", a.family, "customerId", CID, "created", (json_int_t) T0,
                       "expires", (json_int_t) (T0 + 10 * DAY));
        ra2 = json_pack("{s:s, s:s, s:I, s:I}", "sessionId", a.family, "customerId", CID, "created",
                        (json_int_t) T0, "expires", (json_int_t) (T0 + 20 * DAY));
        rb = json_pack("{s:s, s:s, s:I, s:I}", "sessionId", b.family, "customerId", CID2, "created", (json_int_t) T0,
                       "expires", (json_int_t) (T0 + DAY));
        rc = json_pack("{s:s, s:s, s:I, s:I}", "sessionId", "AAAAAAAAAAAAAAAAAAAAAA", "customerId", CID,
                       "created", (json_int_t) T0, "expires", (json_int_t) (T0 + 10 * DAY));
        ASSERT_TRUE(ra && ra2 && rb && rc);
        /* A key as long as a key may be: its index entry names it by hash. */
        memset(longkey, 'x', sizeof(longkey) - 1);
        longkey[sizeof(longkey) - 1] = 0;
        memcpy(longkey, SESSION_PAM_PREFIX, strlen(SESSION_PAM_PREFIX));
        pa.value = ra;
        pb.value = rb;
        pc.value = rc;
        pl.value = rc;
        ASSERT_OK(store_transact(store, pam_put_work, &pa));
        ASSERT_OK(store_transact(store, pam_put_work, &pb));
        ASSERT_OK(store_transact(store, pam_put_work, &pc));
        ASSERT_OK(store_transact(store, pam_put_work, &pl));
        ASSERT_EQ(count_tokens_table(SESSION_PAM_PREFIX), 4);
        ASSERT_EQ(count_expiry(SESSION_KIND_PAM ":"), 4);

        ASSERT_EQ(sweep(T0 + MINUTE, 1000), 0);
        /* b's record expires after a day. */
        ASSERT_EQ(sweep(T0 + 2 * DAY, 1000), 1);
        ASSERT_EQ(count_tokens_table(SESSION_PAM_PREFIX), 3);
        /* a's is replaced by one living longer: its entry moves. */
        pa.value = ra2;
        ASSERT_OK(store_transact(store, pam_put_work, &pa));
        ASSERT_EQ(count_expiry(SESSION_KIND_PAM ":"), 3);
        ASSERT_EQ(sweep(T0 + 11 * DAY, 1000), 2);      /* c's and the long one */
        ASSERT_EQ(count_tokens_table(SESSION_PAM_PREFIX), 1);
        /* Removed with its entry. */
        pa.del = true;
        ASSERT_OK(store_transact(store, pam_put_work, &pa));
        ASSERT_EQ(count_tokens_table(SESSION_PAM_PREFIX), 0);
        ASSERT_EQ(count_expiry(SESSION_KIND_PAM ":"), 0);
}

TEST(delete_customer) {
        _cleanup_(session_tokens_done) SessionTokens a = {}, b = {}, other = {};
        Op op = { .kind = OP_DELETE_CUSTOMER, .a = CID };

        clear_tokens_table();
        start(T0, CID, &a);
        start(T0, CID, &b);
        start(T0, CID2, &other);
        ASSERT_OK(refresh(T0 + USEC, UID_A, a.refresh_token, NULL));
        ASSERT_EQ(count_tokens_table(NULL), 13);
        ASSERT_EQ(count_expiry(NULL), 3 * 3 + 2);       /* + a's successor, a's sealed successor */
        /* What keys lead to: the 2 index entries and the 2 families they name. */
        ASSERT_EQ(run(&op), 4);
        ASSERT_EQ(count_tokens_table(NULL), 9);
        ASSERT_TRUE(!jwt_ok(T0 + USEC, b.jwt));
        ASSERT_TRUE(jwt_ok(T0 + USEC, other.jwt));
        /* The token records, keyed by hash, are still there but grant nothing. */
        ASSERT_EQ(refresh(T0 + USEC, UID_A, b.refresh_token, NULL), -EACCES);
        ASSERT_EQ(verify_customer_token(T0 + USEC, a.customer_token, NULL, NULL, NULL), -EACCES);

        /* The purge: bounded steps over the table, each going on where the last one stopped. */
        {
                Op purge = { .kind = OP_PURGE, .a = CID, .max = 3 };
                int deleted = 0, steps = 0;

                do {
                        _cleanup_free_ char *after = purge.next;

                        purge.next = NULL;
                        purge.b = after;
                        ASSERT_TRUE(run(&purge) >= 0);
                        deleted += purge.result;
                        steps++;
                        ASSERT_TRUE(steps < 20);
                } while (purge.next);
                ASSERT_EQ(deleted, 5);  /* a's 2 refresh and 1 customer tokens, b's 1 and 1 */
                ASSERT_TRUE(steps >= 9 / 3);
                ASSERT_EQ(count_tokens_table(NULL), 4);
                purge.b = NULL;
                purge.max = 100;
                ASSERT_EQ(run(&purge), 0);      /* nothing left of it */
                ASSERT_TRUE(!purge.next);
        }
        /* The entries went with the records, but for the sealed successor's (its time depends on
         * refresh_grace): the sweep drops that one when it comes due. */
        ASSERT_EQ(count_expiry(NULL), 3 + 1);
        ASSERT_EQ(sweep(T0 + MINUTE, 1000), 0);
        ASSERT_EQ(count_expiry(NULL), 3);
        clear_tokens_table();
}

/* What a store of schema version 1 was: the same records, no expiry index, stamped 1. */
static int make_version_1_work(StoreTxn *t, void *userdata) {
        _cleanup_(json_decrefp) json_t *keys = json_array(), *stamp = json_pack("{s:i}", "version", 1);
        size_t i;
        json_t *k;
        int r;

        ASSERT_TRUE(keys && stamp);
        r = store_foreach(t, STORE_TOKEN_EXPIRY, NULL, NULL, collect_key_test, keys);
        if (r < 0)
                return r;
        json_array_foreach(keys, i, k) {
                r = store_del(t, STORE_TOKEN_EXPIRY, json_string_value(k));
                if (r < 0)
                        return r;
        }
        return store_put(t, STORE_META, "schema_version", stamp, STORE_PUT_DEFAULT);
}

static bool has_expiry(const char *kind, uint64_t due, const char *key) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *k = NULL;

        ASSERT_TRUE(asprintf(&k, "%s:%016" PRIx64 ":%s", kind, due, key) > 0);
        ASSERT_OK(store_read(store, &t));
        return store_exists(t, STORE_TOKEN_EXPIRY, k) == 1;
}

TEST(migration_from_version_1) {
        _cleanup_(session_tokens_done) SessionTokens a = {}, b = {}, r1 = {};
        _cleanup_(json_decrefp) json_t *pam = NULL, *empty = json_object(), *reset = NULL, *stamp = NULL;
        _cleanup_free_ char *dir = NULL, *fa = NULL, *fb = NULL;
        char ha[TOKEN_HASH_STRLEN + 1], hr1[TOKEN_HASH_STRLEN + 1], hb[TOKEN_HASH_STRLEN + 1];
        char hca[TOKEN_HASH_STRLEN + 1], hcb[TOKEN_HASH_STRLEN + 1];
        Put pp = { .key = SESSION_PAM_PREFIX PID ":a@example.com:0" };
        Put orphan = { .key = "customer:" CID ":BBBBBBBBBBBBBBBBBBBBBB" };
        Put other = { .key = "0000000000000000000000000000000000000000000000000000000000000000" };
        Store *saved = store;

        ASSERT_TRUE(asprintf(&dir, "%s/v1", tmp_root) > 0);
        ASSERT_EQ(mkdir(dir, 0700), 0);
        ASSERT_OK(store_open(dir, NULL, &store, NULL));

        /* Records of every kind: live, rotated with a sealed successor, revoked; a PAM record, a
         * customer index entry whose family is gone, another module's one-time token. */
        start(T0, CID, &a);
        start(T0, CID2, &b);
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, a.refresh_token, &r1));
        ASSERT_EQ(revoke_tok(T0 + 2 * MINUTE, b.refresh_token), 1);
        pam = json_pack("{s:s, s:s, s:I, s:I}", "sessionId", a.family, "customerId", CID, "created", (json_int_t) T0,
                        "expires", (json_int_t) (T0 + 10 * DAY));
        reset = json_pack("{s:s, s:I}", "type", "reset", "expires", (json_int_t) T0);
        ASSERT_TRUE(pam && empty && reset);
        pp.value = pam;
        orphan.value = empty;
        other.value = reset;
        ASSERT_OK(store_transact(store, put_work, &pp));         /* the old way: no index entry */
        ASSERT_OK(store_transact(store, put_work, &orphan));
        ASSERT_OK(store_transact(store, put_work, &other));
        {       /* a version 1 store kept a revoked session's index entry, {}, where it was */
                _cleanup_free_ char *ikey = NULL, *rkey = NULL;
                Put revoked = { .value = empty }, moved = { .del = true };

                ASSERT_TRUE(asprintf(&ikey, "customer:" CID2 ":%s", b.family) > 0);
                ASSERT_TRUE(asprintf(&rkey, "revoked:" CID2 ":%s", b.family) > 0);
                revoked.key = ikey;
                moved.key = rkey;
                ASSERT_OK(store_transact(store, put_work, &revoked));
                ASSERT_OK(store_transact(store, put_work, &moved));
        }
        ASSERT_OK(store_transact(store, make_version_1_work, NULL));
        ASSERT_EQ(count_expiry(NULL), 0);
        ASSERT_EQ(count_tokens_table(NULL), 2 * 4 + 1 + 3);

        /* Reopened: migrated to version 2 in the opening unit of work. */
        store = store_free(store);
        ASSERT_OK(store_open(dir, NULL, &store, NULL));
        {
                _cleanup_(store_txn_freep) StoreTxn *t = NULL;

                ASSERT_OK(store_read(store, &t));
                ASSERT_OK(store_get(t, STORE_META, "schema_version", &stamp));
                ASSERT_EQ(json_integer_value(json_object_get(stamp, "version")), 2);
        }

        token_hash(a.refresh_token, ha);
        token_hash(r1.refresh_token, hr1);
        token_hash(b.refresh_token, hb);
        token_hash(a.customer_token, hca);
        token_hash(b.customer_token, hcb);
        ASSERT_TRUE(asprintf(&fa, "family:%s", a.family) > 0);
        ASSERT_TRUE(asprintf(&fb, "family:%s", b.family) > 0);
        ASSERT_TRUE(has_expiry(SESSION_KIND_REFRESH, T0 + 100 * DAY, ha));
        ASSERT_TRUE(has_expiry(SESSION_KIND_REFRESH, T0 + MINUTE + 100 * DAY, hr1));
        ASSERT_TRUE(has_expiry(SESSION_KIND_REFRESH, T0 + 100 * DAY, hb));
        ASSERT_TRUE(has_expiry(SESSION_KIND_CUSTOMER, T0 + 14 * DAY, hca));
        ASSERT_TRUE(has_expiry(SESSION_KIND_CUSTOMER, T0 + 14 * DAY, hcb));
        ASSERT_TRUE(has_expiry(SESSION_KIND_SEAL, T0 + MINUTE, ha));            /* at the rotation */
        ASSERT_TRUE(has_expiry(SESSION_KIND_FAMILY, T0 + MINUTE + 100 * DAY, fa));
        ASSERT_TRUE(has_expiry(SESSION_KIND_FAMILY, T0 + 2 * MINUTE, fb));      /* at the revocation */
        ASSERT_TRUE(has_expiry(SESSION_KIND_PAM, T0 + 10 * DAY, pp.key));
        ASSERT_EQ(count_expiry(NULL), 9);
        ASSERT_EQ(count_tokens_table("customer:" CID ":"), 1);                  /* the orphan is gone */

        /* The sweep moves the early entries on to their real time... */
        ASSERT_EQ(sweep(T0 + 3 * MINUTE, 1000), 1);     /* a's sealed successor */
        ASSERT_TRUE(has_expiry(SESSION_KIND_FAMILY, T0 + 2 * MINUTE + 15 * MINUTE + 60 * USEC, fb));
        ASSERT_EQ(sweep(T0 + 18 * MINUTE, 1000), 2);    /* b's family and its index entry */
        /* ...and, far enough in the future, leaves nothing of ours behind. */
        ASSERT_TRUE(sweep(T0 + 1000 * DAY, 1000) > 0);
        ASSERT_EQ(count_expiry(NULL), 0);
        ASSERT_EQ(count_tokens_table(NULL), 1);         /* the one-time token is its module's */

        store = store_free(store);
        store = saved;
}

TEST(store_growth_reruns) {
        /* A store with the smallest map grows while sessions are started and refreshed, so units
         * of work run more than once: every token handed out must still be the one stored. */
        _cleanup_free_ char *dir = NULL;
        Store *saved = store;
        SessionTokens s[200] = {};
        unsigned reruns = 0;

        ASSERT_TRUE(asprintf(&dir, "%s/small", tmp_root) > 0);
        ASSERT_EQ(mkdir(dir, 0700), 0);
        ASSERT_OK(store_open(dir, &(StoreOptions) { .map_size_initial = STORE_MAP_SIZE_MIN }, &store, NULL));

        /* Spread over customers: one customer keeps at most 100 live sessions. */
        static char cids[ELEMENTSOF(s)][16];
        for (size_t i = 0; i < ELEMENTSOF(s); i++) {
                Op op = { .kind = OP_START, .ctx = ctx_at(T0, UID_A), .a = cids[i], .b = PID };

                (void) snprintf(cids[i], sizeof(cids[i]), "%zu", (size_t) 1000000000 + i);
                ASSERT_OK(run(&op));
                reruns += op.runs - 1;
                s[i] = op.tokens;
        }
        for (size_t i = 0; i < ELEMENTSOF(s); i++) {
                Op op = { .kind = OP_REFRESH, .ctx = ctx_at(T0 + USEC, UID_A), .a = s[i].refresh_token };

                ASSERT_OK(run(&op));
                reruns += op.runs - 1;
                ASSERT_TRUE(jwt_ok(T0 + USEC, op.tokens.jwt));
                ASSERT_OK(verify_customer_token(T0 + USEC, s[i].customer_token, NULL, NULL, NULL));
                /* Grace: the same successor the (possibly re-run) rotation stored. */
                {
                        Op again = { .kind = OP_REFRESH, .ctx = ctx_at(T0 + 2 * USEC, UID_A),
                                     .a = s[i].refresh_token };

                        ASSERT_OK(run(&again));
                        ASSERT_STREQ(again.tokens.refresh_token, op.tokens.refresh_token);
                        session_tokens_done(&again.tokens);
                }
                session_tokens_done(&op.tokens);
                session_tokens_done(&s[i]);
        }
        ASSERT_TRUE(reruns > 0);

        store_free(store);
        store = saved;
}

static json_t *token_record(const char *token) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        json_t *rec = NULL;

        token_hash(token, hash);
        ASSERT_OK(store_read(store, &t));
        ASSERT_OK(store_get(t, STORE_TOKENS, hash, &rec));
        return rec;
}

static bool has_sealed(const char *token) {
        _cleanup_(json_decrefp) json_t *rec = token_record(token);

        return json_object_get(rec, "successorSealed") != NULL;
}

TEST(no_sealed_chain) {
        /* Store + an old token must not lead to the live token: a sealed successor is kept only
         * during its grace window. */
        _cleanup_(session_tokens_done) SessionTokens s = {}, r1 = {}, r2 = {}, r3 = {}, again = {};
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_(erase_and_freep) char *plain = NULL;

        start(T0, CID, &s);
        ASSERT_OK(refresh(T0 + MINUTE, UID_A, s.refresh_token, &r1));
        ASSERT_TRUE(has_sealed(s.refresh_token));
        /* The holder of the old token can open it; the store's hash cannot. */
        rec = token_record(s.refresh_token);
        ASSERT_OK(token_unseal(s.refresh_token, json_object_get_string(rec, "successorSealed"), &plain));
        ASSERT_STREQ(plain, r1.refresh_token);
        plain = erase_and_free(plain);
        ASSERT_EQ(token_unseal(r1.refresh_token, json_object_get_string(rec, "successorSealed"), &plain), -EBADMSG);

        /* Rotating the successor inside the window keeps the predecessor's (a concurrent user of
         * the old token still needs it)... */
        ASSERT_OK(refresh(T0 + MINUTE + 2 * USEC, UID_A, r1.refresh_token, &r2));
        ASSERT_TRUE(has_sealed(s.refresh_token));
        ASSERT_OK(refresh(T0 + MINUTE + 3 * USEC, UID_A, s.refresh_token, &again));
        ASSERT_STREQ(again.refresh_token, r1.refresh_token);
        /* ...after it, the next rotation drops it. */
        ASSERT_OK(refresh(T0 + 2 * MINUTE, UID_A, r2.refresh_token, &r3));
        ASSERT_TRUE(!has_sealed(r1.refresh_token));
        ASSERT_TRUE(has_sealed(s.refresh_token));       /* not r3's parent: left to the sweep */
        ASSERT_TRUE(has_sealed(r2.refresh_token));
        ASSERT_OK(sweep(T0 + 2 * MINUTE + 10 * USEC, 1000));
        ASSERT_TRUE(!has_sealed(s.refresh_token));
        ASSERT_TRUE(!has_sealed(r2.refresh_token));
        /* The records stay, for re-use detection. */
        ASSERT_EQ(refresh(T0 + 3 * MINUTE, UID_A, s.refresh_token, NULL), -EKEYREVOKED);
        ASSERT_EQ(refresh(T0 + 3 * MINUTE, UID_A, r3.refresh_token, NULL), -EACCES);
}

/* ---- nothing in plaintext ---- */

typedef struct Leak {
        json_t *issued;
        unsigned records;
} Leak;

static int check_record(const char *key, json_t *value, void *userdata) {
        Leak *l = userdata;
        _cleanup_free_ char *text = json_dumps(value, JSON_COMPACT);
        size_t i;
        json_t *tok;

        ASSERT_TRUE(text);
        l->records++;
        json_array_foreach(l->issued, i, tok) {
                const char *s = json_string_value(tok);

                if (strstr(key, s) || strstr(text, s)) {
                        fprintf(stderr, "token %s found in record '%s': %s\n", s, key, text);
                        abort();
                }
        }
        return 0;
}

TEST(no_plaintext_at_rest) {
        _cleanup_(session_tokens_done) SessionTokens s = {}, r1 = {}, g = {};
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        Leak l = { .issued = issued };

        /* Leave something of every kind in the store: live, rotated (with a sealed successor),
         * revoked. */
        start(T0, CID, &s);
        ASSERT_OK(refresh(T0 + USEC, UID_A, s.refresh_token, &r1));
        ASSERT_OK(refresh(T0 + 2 * USEC, UID_A, s.refresh_token, &g));
        remember(r1.refresh_token);

        ASSERT_OK(store_read(store, &t));
        for (StoreTable tab = 0; tab < _STORE_TABLE_MAX; tab++)
                ASSERT_OK(store_foreach(t, tab, NULL, NULL, check_record, &l));
        ASSERT_TRUE(l.records > 10);
        ASSERT_TRUE(json_array_size(issued) > 50);
        fprintf(stderr, "checked %u records against %zu issued tokens\n", l.records, json_array_size(issued));
}

int main(void) {
        char template[] = "/tmp/test-sessions-XXXXXX";
        _cleanup_free_ char *store_dir = NULL, *key_dir = NULL;

        umask(022);
        tmp_root = mkdtemp(template);
        ASSERT_TRUE(tmp_root);
        ASSERT_TRUE(asprintf(&store_dir, "%s/store", tmp_root) > 0);
        ASSERT_TRUE(asprintf(&key_dir, "%s/keys", tmp_root) > 0);
        ASSERT_EQ(mkdir(store_dir, 0700), 0);

        ASSERT_OK(config_new(&config));
        ASSERT_OK(keyring_load(key_dir, T0, config->access_ttl_usec, &keyring));
        ASSERT_OK(store_open(store_dir, NULL, &store, NULL));
        issued = json_array();
        ASSERT_TRUE(issued);

        RUN(seal);
        RUN(start_and_verify);
        RUN(jwt_without_family);
        RUN(refresh_rotates);
        RUN(grace_same_peer);
        RUN(grace_other_peer);
        RUN(reuse_after_grace);
        RUN(no_sealed_chain);
        RUN(expiry_and_sliding);
        RUN(revoke_token);
        RUN(revoke_customer);
        RUN(introspect);
        RUN(no_plaintext_at_rest);
        RUN(one_time_tokens_are_not_ours);
        RUN(refresh_index_entries);
        RUN(sweep);
        RUN(sweep_in_bounded_batches);
        RUN(sessions_per_customer_are_bounded);
        RUN(session_limit_reads_the_index_summary);
        RUN(sweep_pam_records);
        RUN(delete_customer);
        RUN(migration_from_version_1);
        RUN(store_growth_reruns);

        json_decref(issued);
        store_free(store);
        keyring_free(keyring);
        config_free(config);
        (void) nftw(tmp_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}
