/* SPDX-License-Identifier: MIT */
/*
 * Customer sessions (sessions.h): login families, refresh token rotation with re-use detection
 * and a grace window, customerTokens, access JWTs bound to their family ("sid"), revocation,
 * RFC 7662 introspection and the sweep of expired records.
 *
 * Nothing at rest yields a live token: records are keyed by token_hash(); the one token kept in
 * any form, a rotated refresh token's successor (for the grace window), is sealed with a key
 * derived from its predecessor (token_seal()), which only the presenter of that token has.
 *
 * Every function runs inside the caller's unit of work and may be run again from the start when
 * the store grows, so each one resets its outputs first and draws fresh random tokens each run.
 * Logs nothing above debug level: the method handlers log once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "log.h"
#include "idm/time-util.h"
#include "records/customers.h"
#include "records/signingkeys.h"
#include "sessions.h"

#define SESSION_USEC_PER_SEC UINT64_C(1000000)
#define REFRESH_TOKEN_BYTES 32          /* 256 bits: 43 base64url characters */
#define CUSTOMER_TOKEN_BYTES 32
#define FAMILY_ID_BYTES 16              /* 22 base64url characters */
#define FAMILY_ID_MAX 64
#define JTI_BYTES 16
#define OPAQUE_TOKEN_MAX 256            /* a longer opaque token is none of ours */

#define FAMILY_PREFIX "family:"
#define SESSIONS_PER_CUSTOMER_MAX 100u     /* live sessions; a new one ends the oldest */
#define CUSTOMER_PREFIX "customer:"
#define REVOKED_PREFIX "revoked:"       /* the index of a customer's revoked sessions */
#define TYPE_REFRESH "refresh"
#define TYPE_CUSTOMER "customer"

/* ---- small helpers ---- */

static bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* a + b, saturated at INT64_MAX (what a JSON integer and a JWT time can hold). */
static uint64_t time_add(uint64_t a, uint64_t b) {
        if (a >= (uint64_t) INT64_MAX || b >= (uint64_t) INT64_MAX - a)
                return (uint64_t) INT64_MAX;
        return a + b;
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

/* An unsigned time field of a record; false when missing or not a non-negative integer. */
static bool record_time(json_t *rec, const char *field, uint64_t *ret) {
        json_t *v = json_object_get(rec, field);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t) json_integer_value(v);
        return true;
}

/* Sets rec[field] to an integer; -ENOMEM. */
static int record_set_time(json_t *rec, const char *field, uint64_t value) {
        if (value > (uint64_t) INT64_MAX)
                value = (uint64_t) INT64_MAX;
        return json_object_set_new(rec, field, json_integer((json_int_t) value)) < 0 ? -ENOMEM : 0;
}

/* Family ids are ours (token_random: base64url), but they also arrive in JWTs (signed by us) and
 * in index keys: anything else is refused before it becomes part of a key. */
static bool family_id_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, FAMILY_ID_MAX + 1);
        if (n == 0 || n > FAMILY_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
                        return false;
        return true;
}

static bool customer_id_is_valid(const char *s) {
        /* ':' separates the parts of index keys. */
        return s && s[0] && !strchr(s, ':') && strlen(s) <= 128;
}

static int family_key(const char *family, char **ret) {
        return asprintf(ret, FAMILY_PREFIX "%s", family) < 0 ? -ENOMEM : 0;
}

static int index_key(const char *customer_id, const char *family, char **ret) {
        return asprintf(ret, CUSTOMER_PREFIX "%s:%s", customer_id, family) < 0 ? -ENOMEM : 0;
}

static int revoked_index_key(const char *customer_id, const char *family, char **ret) {
        return asprintf(ret, REVOKED_PREFIX "%s:%s", customer_id, family) < 0 ? -ENOMEM : 0;
}

/* Calls fn for each of the customer's index entries (index_move_revoked()): its live sessions'
 * ("customer:"), then its revoked ones' ("revoked:"), each in key order. */
static int index_foreach(StoreTxn *t, const char *customer_id, StoreForeachFn fn, void *userdata) {
        static const char *const prefixes[] = { CUSTOMER_PREFIX, REVOKED_PREFIX };

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                _cleanup_free_ char *prefix = NULL;
                int r;

                if (asprintf(&prefix, "%s%s:", prefixes[i], customer_id) < 0)
                        return -ENOMEM;
                r = store_foreach(t, STORE_TOKENS, prefix, NULL, fn, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The family that the index entry at key ("<prefix><customerId>:<family>") names, if it is
 * still there and customer_id's: 1 with its key and record (new references), else 0. */
static int index_entry_family(StoreTxn *t, const char *key, const char *customer_id, char **ret_key,
                              json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *fkey = NULL;
        const char *family = strrchr(key, ':');
        int r;

        if (!family || !family_id_is_valid(family + 1))
                return 0;
        r = family_key(family + 1, &fkey);
        if (r < 0)
                return r;
        r = store_get(t, STORE_TOKENS, fkey, &rec);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (!streq_ptr(json_object_get_string(rec, "customerId"), customer_id))
                return 0;
        *ret_key = TAKE_PTR(fkey);
        *ret = TAKE_PTR(rec);
        return 1;
}

static bool looks_like_jwt(const char *token) {
        return strchr(token, '.') != NULL;      /* base64url opaque tokens have none */
}

/* ---- the expiry index (sessions.h) ---- */

#define NO_DUE UINT64_MAX               /* "no index entry" for expiry_move() */
#define DUE_HEX 16
#define KIND_MAX 16
#define HASHED_KEY_MARK '#'

static bool kind_is_valid(const char *kind) {
        size_t n = kind ? strnlen(kind, KIND_MAX + 1) : 0;

        return n > 0 && n <= KIND_MAX && !memchr(kind, ':', n);
}

/* "<kind>:<due>:<key>", or "<kind>:<due>:#<hash of key>" when that is too long (*ret_hashed). */
static int expiry_key(const char *kind, uint64_t due, const char *key, char **ret, bool *ret_hashed) {
        char hash[TOKEN_HASH_STRLEN + 1];
        char *k;

        if (!kind_is_valid(kind) || !key || !key[0])
                return -EINVAL;
        if (asprintf(&k, "%s:%016" PRIx64 ":%s", kind, due, key) < 0)
                return -ENOMEM;
        *ret_hashed = strlen(k) > STORE_KEY_MAX || key[0] == HASHED_KEY_MARK;
        if (*ret_hashed) {
                free(k);
                token_hash(key, hash);
                if (asprintf(&k, "%s:%016" PRIx64 ":%c%s", kind, due, HASHED_KEY_MARK, hash) < 0)
                        return -ENOMEM;
        }
        *ret = k;
        return 0;
}

int session_expiry_put(StoreTxn *t, const char *kind, uint64_t due, const char *key) {
        _cleanup_(json_decrefp) json_t *value = NULL;
        _cleanup_free_ char *k = NULL;
        bool hashed;
        int r;

        r = expiry_key(kind, due, key, &k, &hashed);
        if (r < 0)
                return r;
        value = hashed ? json_pack("{s:s}", "key", key) : json_object();
        if (!value)
                return -ENOMEM;
        return store_put(t, STORE_TOKEN_EXPIRY, k, value, STORE_PUT_DEFAULT);
}

int session_expiry_del(StoreTxn *t, const char *kind, uint64_t due, const char *key) {
        _cleanup_free_ char *k = NULL;
        bool hashed;
        int r;

        r = expiry_key(kind, due, key, &k, &hashed);
        if (r < 0)
                return r;
        r = store_del(t, STORE_TOKEN_EXPIRY, k);
        if (r == -ENOENT)
                return 0;
        return r < 0 ? r : 1;
}

/* Moves the entry of key from old_due to new_due (either NO_DUE: none). */
static int expiry_move(StoreTxn *t, const char *kind, uint64_t old_due, uint64_t new_due, const char *key) {
        int r;

        if (old_due == new_due)
                return 0;
        if (old_due != NO_DUE) {
                r = session_expiry_del(t, kind, old_due, key);
                if (r < 0)
                        return r;
        }
        return new_due == NO_DUE ? 0 : session_expiry_put(t, kind, new_due, key);
}

/* Refresh, customer and PAM records are due at their expiry (a record without one at once). */
static uint64_t expires_due(json_t *rec) {
        uint64_t expires = 0;

        (void) record_time(rec, "expires", &expires);
        return expires;
}

/* A rotated refresh record holding its sealed successor: when the grace window is over. Some
 * callers pass a context without a configuration (session_revoke_family() from pam.c): then the
 * entry is made early (at the rotation, the revocation) and the sweep moves it on, as after the
 * migration. */
static uint64_t seal_due(const SessionContext *ctx, json_t *rec) {
        uint64_t rotated = 0;

        if (!json_object_get(rec, "successorSealed"))
                return NO_DUE;
        (void) record_time(rec, "rotated", &rotated);
        return ctx->config ? time_add(rotated, ctx->config->refresh_grace_usec) : rotated;
}

/* A family: at its expiry, or once JWTs naming it can no longer verify after its revocation. */
static uint64_t family_due(const SessionContext *ctx, json_t *frec) {
        uint64_t expires = 0, revoked;

        (void) record_time(frec, "expires", &expires);
        if (json_object_get(frec, "revoked")) {
                if (!record_time(frec, "revoked", &revoked))
                        return 0;
                if (!ctx->config)
                        return min_u64(expires, revoked);
                return min_u64(expires, time_add(time_add(revoked, ctx->config->access_ttl_usec),
                                                 JWT_LEEWAY_SEC * SESSION_USEC_PER_SEC));
        }
        return expires;
}

/* ---- records ---- */

void session_tokens_done(SessionTokens *t) {
        if (!t)
                return;
        t->jwt = erase_and_free(t->jwt);
        t->refresh_token = erase_and_free(t->refresh_token);
        t->customer_token = erase_and_free(t->customer_token);
        free(t->family);
        *t = (SessionTokens) {};
}

static json_t *token_record_new(const char *type, const char *family, const char *customer_id,
                                const char *publisher_id, uint64_t created, uint64_t expires) {
        return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}",
                         "type", type,
                         "family", family,
                         "customerId", customer_id,
                         "publisherId", publisher_id,
                         "created", (json_int_t) created,
                         "expires", (json_int_t) expires);
}

/* Looks up the record of an opaque token. type NULL: a refresh token or a customerToken.
 * -EACCES when unknown, malformed or of another type. The hash is returned for later writes. */
static int token_record_get(StoreTxn *t, const char *token, const char *type,
                            char hash[static TOKEN_HASH_STRLEN + 1], json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        const char *rec_type;
        size_t n;
        int r;

        if (!token)
                return -EACCES;
        n = strnlen(token, OPAQUE_TOKEN_MAX + 1);
        if (n == 0 || n > OPAQUE_TOKEN_MAX || looks_like_jwt(token))
                return -EACCES;

        token_hash(token, hash);
        r = store_get(t, STORE_TOKENS, hash, &rec);
        if (r == -ENOENT)
                return -EACCES;
        if (r < 0)
                return r;

        rec_type = json_object_get_string(rec, "type");
        if (!rec_type)
                return -EACCES;
        if (type ? !streq(rec_type, type) : !streq(rec_type, TYPE_REFRESH) && !streq(rec_type, TYPE_CUSTOMER))
                return -EACCES; /* e.g. a one-time token of another method family */
        if (!family_id_is_valid(json_object_get_string(rec, "family")) ||
            !json_object_get_string(rec, "customerId") || !json_object_get_string(rec, "publisherId"))
                return log_debug_errno(EPROTO, "Token record %s is malformed", hash);

        *ret = TAKE_PTR(rec);
        return 0;
}

/* The family record, if it may still be used by customer_id: -EACCES when it is gone, revoked or
 * belongs to someone else. ret_key and ret may be NULL. */
static int family_get_live(StoreTxn *t, const char *family, const char *customer_id, const char *publisher_id,
                           char **ret_key, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *key = NULL;
        int r;

        if (!family_id_is_valid(family))
                return -EACCES;
        r = family_key(family, &key);
        if (r < 0)
                return r;
        r = store_get(t, STORE_TOKENS, key, &rec);
        if (r == -ENOENT)
                return -EACCES;
        if (r < 0)
                return r;
        if (json_object_get(rec, "revoked"))
                return -EACCES;
        if (!streq_ptr(json_object_get_string(rec, "customerId"), customer_id) ||
            (publisher_id && !streq_ptr(json_object_get_string(rec, "publisherId"), publisher_id)))
                return -EACCES;

        if (ret_key)
                *ret_key = TAKE_PTR(key);
        if (ret)
                *ret = TAKE_PTR(rec);
        return 0;
}

/* Where the family's index entry is: "indexed" when family_extend() left it behind, else at
 * family_due(). */
static uint64_t family_indexed(const SessionContext *ctx, json_t *frec) {
        uint64_t due;

        if (record_time(frec, "indexed", &due))
                return due;
        return family_due(ctx, frec);
}

/* Writes the family record rec at key and moves its index entry from old_due to family_due(). */
static int family_put(StoreTxn *t, const SessionContext *ctx, const char *key, json_t *rec, uint64_t old_due) {
        int r;

        (void) json_object_del(rec, "indexed");         /* the entry is where family_due() says */
        r = store_put(t, STORE_TOKENS, key, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        return expiry_move(t, SESSION_KIND_FAMILY, old_due, family_due(ctx, rec), key);
}

/* The customer's index of its sessions: "customer:<customerId>:<family>" for a session that is
 * live or was until its expiry, "revoked:<customerId>:<family>" for a revoked one, each until the
 * sweep deletes the family. So logoutAll and the session limit walk the live ones only, and
 * exportCustomer and deleteCustomer find every family by key. The value summarizes the family as
 * it started, {created, expires} (and "revoked", the time, under "revoked:"), so that the session
 * limit counts a customer's live sessions from the index alone; "expires" is not moved when a
 * refresh extends the family, so past it the reader asks the family record. Entries written
 * before the summary existed are {} and are read that way too. (For a while a revocation deleted
 * the entry: such a revoked family is found only by a walk, and is swept within access_ttl.) */
static int index_move_revoked(StoreTxn *t, const SessionContext *ctx, json_t *frec, const char *fkey) {
        _cleanup_(json_decrefp) json_t *entry = NULL;
        _cleanup_free_ char *ikey = NULL, *rkey = NULL;
        const char *cid = json_object_get_string(frec, "customerId");
        int r;

        if (!customer_id_is_valid(cid) || !startswith(fkey, FAMILY_PREFIX))
                return 0;
        r = index_key(cid, fkey + strlen(FAMILY_PREFIX), &ikey);
        if (r < 0)
                return r;
        r = revoked_index_key(cid, fkey + strlen(FAMILY_PREFIX), &rkey);
        if (r < 0)
                return r;
        r = store_get(t, STORE_TOKENS, ikey, &entry);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = store_del(t, STORE_TOKENS, ikey);
        if (r < 0)
                return r;
        r = record_set_time(entry, "revoked", ctx->now_usec);
        if (r < 0)
                return r;
        return store_put(t, STORE_TOKENS, rkey, entry, STORE_PUT_DEFAULT);
}

/* Marks the family revoked (rec is its record, key its key). */
static int family_revoke(StoreTxn *t, const SessionContext *ctx, const char *key, json_t *rec) {
        uint64_t old_due = family_indexed(ctx, rec);
        int r;

        /* Its JWTs keep a valid signature: no verification of one made before counts now
         * (session_verify_jwt() checks the family every time anyway). */
        jwt_cache_revoke();
        r = record_set_time(rec, "revoked", ctx->now_usec);
        if (r < 0)
                return r;
        r = family_put(t, ctx, key, rec, old_due);
        if (r < 0)
                return r;
        return index_move_revoked(t, ctx, rec, key);
}

/* Makes the family live at least until 'until' (so the sweep keeps it while anything issued for
 * it can still be presented). Its index entry stays where it is, recorded as "indexed": a due
 * time that only moves later needs no move now (every refresh would move it); the sweep moves the
 * entry when it comes due and finds the family live (session_expire_family()). So a family's
 * entry is never later than its due, and may be earlier. For a live family only (a revoked one's
 * due would move earlier). */
static int family_extend(StoreTxn *t, const SessionContext *ctx, const char *key, json_t *rec, uint64_t until) {
        uint64_t expires = 0;
        int r;

        (void) record_time(rec, "expires", &expires);
        if (expires >= until)
                return 0;
        if (!json_object_get(rec, "indexed")) {
                r = record_set_time(rec, "indexed", family_due(ctx, rec));
                if (r < 0)
                        return r;
        }
        r = record_set_time(rec, "expires", until);
        if (r < 0)
                return r;
        return store_put(t, STORE_TOKENS, key, rec, STORE_PUT_DEFAULT);
}

/* An access JWT for the family, valid from now for access_ttl. */
static int jwt_mint(const SessionContext *ctx, const char *customer_id, const char *publisher_id,
                    const char *family, char **ret, uint64_t *ret_exp) {
        _cleanup_(erase_and_freep) char *jti = NULL;
        uint64_t now_sec = ctx->now_usec / SESSION_USEC_PER_SEC;
        JwtClaims c;
        int r;

        r = token_random(JTI_BYTES, &jti);
        if (r < 0)
                return r;
        c = (JwtClaims) {
                .iss = ctx->config->issuer,
                .sub = (char *) customer_id,
                .aud = (char *) publisher_id,
                .jti = jti,
                .customer_id = (char *) customer_id,
                .publisher_id = (char *) publisher_id,
                .sid = (char *) family,
                .iat = now_sec,
                .nbf = now_sec,
                .exp = time_add(ctx->now_usec, ctx->config->access_ttl_usec) / SESSION_USEC_PER_SEC,
        };
        r = jwt_sign(ctx->keyring, &c, ctx->config->jwt_alg, ret);
        if (r < 0)
                return r;
        /* What jwt_verify() would return for it, without verifying the signature just made: the
         * first call with the new token is answered from the cache. The family check still runs
         * at every call, so a token of a unit of work that then fails gains nothing from this
         * (and no one has it). */
        c.kid = (char *) keyring_active_kid(ctx->keyring);
        jwt_cache_remember(ctx->keyring, *ret, &c, now_sec);
        *ret_exp = c.exp;
        return 0;
}

static int context_check(const SessionContext *ctx) {
        if (!ctx || !ctx->config || !ctx->keyring || !ctx->config->issuer)
                return -EINVAL;
        return 0;
}

/* ---- starting and refreshing ---- */

typedef struct OldestSession {
        StoreTxn *t;
        uint64_t now;
        unsigned live;
        uint64_t oldest_created;
        char *oldest_key;       /* family key */
} OldestSession;

/* Counts a live session (*fkey: its family key, taken if it is the oldest so far). */
static void oldest_session_count(OldestSession *o, char **fkey, uint64_t created) {
        o->live++;
        if (!o->oldest_key || created < o->oldest_created) {
                free(o->oldest_key);
                o->oldest_key = TAKE_PTR(*fkey);
                o->oldest_created = created;
        }
}

static int find_oldest(const char *key, json_t *value, void *userdata) {
        OldestSession *o = userdata;
        _cleanup_(json_decrefp) json_t *frec = NULL;
        _cleanup_free_ char *fkey = NULL;
        const char *family = strrchr(key, ':') + 1;
        uint64_t created = 0, expires = 0;
        int r;

        if (!family_id_is_valid(family) || json_object_get(value, "revoked"))
                return 0;
        r = family_key(family, &fkey);
        if (r < 0)
                return r;
        /* The entry's summary answers for most sessions without reading the family
         * (index_move_revoked()). */
        if (record_time(value, "created", &created) && record_time(value, "expires", &expires) &&
            expires > o->now) {
                oldest_session_count(o, &fkey, created);
                return 0;
        }
        /* No summary (an entry written before it existed), or the expiry it recorded has passed
         * (a refresh may have extended the family since): the family record decides. */
        r = store_get(o->t, STORE_TOKENS, fkey, &frec);
        if (r == -ENOENT || r == -EPROTO)
                return 0;
        if (r < 0)
                return r;
        if (json_object_get(frec, "revoked") || !record_time(frec, "expires", &expires) || expires <= o->now)
                return 0;
        (void) record_time(frec, "created", &created);
        oldest_session_count(o, &fkey, created);
        return 0;
}

/* Keeps a customer below SESSIONS_PER_CUSTOMER_MAX live sessions by ending the oldest: without a
 * bound, one account's logins could fill the store (each session keeps records for 100 days). */
static int customer_limit_sessions(StoreTxn *t, const SessionContext *ctx, const char *customer_id) {
        _cleanup_free_ char *prefix = NULL;

        if (asprintf(&prefix, CUSTOMER_PREFIX "%s:", customer_id) < 0)
                return -ENOMEM;
        for (;;) {
                OldestSession o = { .t = t, .now = ctx->now_usec };
                _cleanup_(json_decrefp) json_t *frec = NULL;
                int r;

                r = store_foreach(t, STORE_TOKENS, prefix, NULL, find_oldest, &o);
                if (r >= 0 && o.live >= SESSIONS_PER_CUSTOMER_MAX)
                        r = store_get(t, STORE_TOKENS, o.oldest_key, &frec);
                if (r >= 0 && o.live >= SESSIONS_PER_CUSTOMER_MAX)
                        r = family_revoke(t, ctx, o.oldest_key, frec);
                free(o.oldest_key);
                if (r < 0)
                        return r;
                if (o.live < SESSIONS_PER_CUSTOMER_MAX)
                        return 0;
        }
}

int session_start(StoreTxn *t, const SessionContext *ctx, const char *customer_id, const char *publisher_id,
                  SessionTokens *ret) {
        _cleanup_(session_tokens_done) SessionTokens s = {};
        _cleanup_(json_decrefp) json_t *family_rec = NULL, *refresh_rec = NULL, *customer_rec = NULL,
                                       *summary = NULL;
        _cleanup_free_ char *fkey = NULL, *ikey = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        uint64_t now, refresh_expires, customer_expires, jwt_expires_usec, family_expires;
        int r;

        session_tokens_done(ret);
        if (!t || !ret || !customer_id_is_valid(customer_id) || !publisher_id || !publisher_id[0])
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;

        r = customer_limit_sessions(t, ctx, customer_id);
        if (r < 0)
                return r;

        now = ctx->now_usec;
        refresh_expires = time_add(now, ctx->config->refresh_ttl_usec);
        customer_expires = time_add(now, ctx->config->customer_token_ttl_usec);
        jwt_expires_usec = time_add(now, ctx->config->access_ttl_usec);

        r = token_random(FAMILY_ID_BYTES, &s.family);
        if (r < 0)
                return r;
        r = token_random(REFRESH_TOKEN_BYTES, &s.refresh_token);
        if (r < 0)
                return r;
        r = token_random(CUSTOMER_TOKEN_BYTES, &s.customer_token);
        if (r < 0)
                return r;

        r = family_key(s.family, &fkey);
        if (r < 0)
                return r;
        r = index_key(customer_id, s.family, &ikey);
        if (r < 0)
                return r;

        family_expires = max_u64(max_u64(refresh_expires, customer_expires), jwt_expires_usec);
        family_rec = json_pack("{s:s, s:s, s:I, s:I}",
                               "customerId", customer_id,
                               "publisherId", publisher_id,
                               "created", (json_int_t) now,
                               "expires", (json_int_t) family_expires);
        refresh_rec = token_record_new(TYPE_REFRESH, s.family, customer_id, publisher_id, now, refresh_expires);
        customer_rec = token_record_new(TYPE_CUSTOMER, s.family, customer_id, publisher_id, now,
                                        customer_expires);
        /* The customer's index entry carries what the session limit needs (index_summary()). */
        summary = json_pack("{s:I, s:I}", "created", (json_int_t) now, "expires", (json_int_t) family_expires);
        if (!family_rec || !refresh_rec || !customer_rec || !summary)
                return -ENOMEM;

        /* Fresh keys everywhere: a collision of 128/256 random bits is not going to happen, but
         * if it did the unit must fail rather than hand out someone else's session. */
        r = store_put(t, STORE_TOKENS, fkey, family_rec, STORE_PUT_FRESH);
        if (r < 0)
                return r;
        r = session_expiry_put(t, SESSION_KIND_FAMILY, family_due(ctx, family_rec), fkey);
        if (r < 0)
                return r;
        r = store_put(t, STORE_TOKENS, ikey, summary, STORE_PUT_FRESH);
        if (r < 0)
                return r;
        token_hash(s.refresh_token, hash);
        r = store_put(t, STORE_TOKENS, hash, refresh_rec, STORE_PUT_FRESH);
        if (r < 0)
                return r;
        r = session_expiry_put(t, SESSION_KIND_REFRESH, refresh_expires, hash);
        if (r < 0)
                return r;
        token_hash(s.customer_token, hash);
        r = store_put(t, STORE_TOKENS, hash, customer_rec, STORE_PUT_FRESH);
        if (r < 0)
                return r;
        r = session_expiry_put(t, SESSION_KIND_CUSTOMER, customer_expires, hash);
        if (r < 0)
                return r;

        r = jwt_mint(ctx, customer_id, publisher_id, s.family, &s.jwt, &s.jwt_expires);
        if (r < 0)
                return r;

        *ret = s;
        s = (SessionTokens) {};
        return 0;
}

/* The token in rec (hash: its key) was already rotated. Within the grace window and from the
 * same peer: *ret is the successor it was rotated to. Otherwise the family is revoked and
 * -EKEYREVOKED returned. */
static int refresh_reuse(StoreTxn *t, const SessionContext *ctx, const char *token, json_t *rec,
                         const char *fkey, json_t *frec, char **ret) {
        _cleanup_(erase_and_freep) char *successor = NULL;
        const char *sealed = json_object_get_string(rec, "successorSealed");
        uint64_t rotated = 0, by = UINT64_MAX;
        int r;

        (void) record_time(rec, "rotated", &rotated);
        (void) record_time(rec, "rotatedBy", &by);

        /* A clock stepped back (now < rotated) counts as inside the window. */
        if (sealed && by == (uint64_t) ctx->peer_uid &&
            (ctx->now_usec < rotated || ctx->now_usec - rotated < ctx->config->refresh_grace_usec)) {
                _cleanup_(json_decrefp) json_t *srec = NULL;
                char shash[TOKEN_HASH_STRLEN + 1];
                uint64_t expires = 0;

                r = token_unseal(token, sealed, &successor);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0) {
                        token_hash(successor, shash);
                        r = store_get(t, STORE_TOKENS, shash, &srec);
                        if (r < 0 && r != -ENOENT)
                                return r;
                        if (r >= 0 && streq_ptr(json_object_get_string(srec, "type"), TYPE_REFRESH) &&
                            streq_ptr(json_object_get_string(srec, "family"),
                                      json_object_get_string(rec, "family")) &&
                            record_time(srec, "expires", &expires) && expires > ctx->now_usec) {
                                *ret = TAKE_PTR(successor);
                                return 0;
                        }
                }
                /* A successor that cannot be opened or is gone: treat it as a re-use. */
        }

        r = family_revoke(t, ctx, fkey, frec);
        if (r < 0)
                return r;
        log_debug("A rotated refresh token of session %s (customer %s) was presented again: session revoked",
                  json_object_get_string(rec, "family"), json_object_get_string(rec, "customerId"));
        return -EKEYREVOKED;
}

/* Whether the grace window that began at rec[field] (when a token was rotated) is over. */
static bool grace_over(const SessionContext *ctx, json_t *rec, const char *field) {
        uint64_t rotated = 0;

        return record_time(rec, field, &rotated) && ctx->now_usec >= rotated &&
                ctx->now_usec - rotated >= ctx->config->refresh_grace_usec;
}

/* Removes successorSealed from the record at key (and its "seal" index entry), if its grace
 * window is over: 1 if it did, 0 if there was nothing to do. */
static int refresh_drop_sealed(StoreTxn *t, const SessionContext *ctx, const char *key) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        uint64_t due;
        int r;

        if (!key)
                return 0;
        r = store_get(t, STORE_TOKENS, key, &rec);
        if (r == -ENOENT || r == -EPROTO)
                return 0;
        if (r < 0)
                return r;
        if (!json_object_get(rec, "successorSealed") || !grace_over(ctx, rec, "rotated"))
                return 0;
        due = seal_due(ctx, rec);
        (void) json_object_del(rec, "successorSealed");
        r = store_put(t, STORE_TOKENS, key, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        r = session_expiry_del(t, SESSION_KIND_SEAL, due, key);
        return r < 0 ? r : 1;
}

/* Rotates the token in rec (hash: its key): a new refresh token, living refresh_ttl from now; the
 * old record remembers when, by whom and (sealed) to what it was rotated. */
static int refresh_rotate(StoreTxn *t, const SessionContext *ctx, const char *token, const char *hash,
                          json_t *rec, char **ret, uint64_t *ret_expires) {
        _cleanup_(erase_and_freep) char *successor = NULL;
        _cleanup_(json_decrefp) json_t *srec = NULL;
        _cleanup_free_ char *sealed = NULL;
        char shash[TOKEN_HASH_STRLEN + 1];
        uint64_t expires = time_add(ctx->now_usec, ctx->config->refresh_ttl_usec);
        int r;

        r = token_random(REFRESH_TOKEN_BYTES, &successor);
        if (r < 0)
                return r;
        srec = token_record_new(TYPE_REFRESH, json_object_get_string(rec, "family"),
                                json_object_get_string(rec, "customerId"),
                                json_object_get_string(rec, "publisherId"), ctx->now_usec, expires);
        if (!srec || json_object_set_new(srec, "parent", json_string(hash)) < 0)
                return -ENOMEM;
        r = token_seal(token, successor, &sealed);
        if (r < 0)
                return r;

        /* The predecessor's sealed successor (this token) is no longer needed once its window is
         * over: drop it, so that no chain of sealed successors leads from an old token to the
         * live one. The predecessor was rotated when this record was created: while that is
         * within the window, there is nothing to drop and its record is not read. */
        if (grace_over(ctx, rec, "created")) {
                r = refresh_drop_sealed(t, ctx, json_object_get_string(rec, "parent"));
                if (r < 0)
                        return r;
        }

        token_hash(successor, shash);
        r = store_put(t, STORE_TOKENS, shash, srec, STORE_PUT_FRESH);
        if (r < 0)
                return r;
        r = session_expiry_put(t, SESSION_KIND_REFRESH, expires, shash);
        if (r < 0)
                return r;

        /* The old record stays until its own expiry, so that a later re-use is recognised. */
        r = record_set_time(rec, "rotated", ctx->now_usec);
        if (r < 0)
                return r;
        r = record_set_time(rec, "rotatedBy", (uint64_t) ctx->peer_uid);
        if (r < 0)
                return r;
        if (json_object_set_new(rec, "successorSealed", json_string(sealed)) < 0)
                return -ENOMEM;
        r = store_put(t, STORE_TOKENS, hash, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        /* Its expiry (and "refresh" entry) stays; the sealed successor goes after the window. */
        r = session_expiry_put(t, SESSION_KIND_SEAL, seal_due(ctx, rec), hash);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(successor);
        *ret_expires = expires;
        return 0;
}

int session_refresh(StoreTxn *t, const SessionContext *ctx, const char *refresh_token, SessionTokens *ret) {
        _cleanup_(session_tokens_done) SessionTokens s = {};
        _cleanup_(json_decrefp) json_t *rec = NULL, *frec = NULL;
        _cleanup_free_ char *fkey = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        const char *family, *customer_id, *publisher_id;
        uint64_t expires = 0, until;
        int r;

        session_tokens_done(ret);
        if (!t || !ret)
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;

        r = token_record_get(t, refresh_token, TYPE_REFRESH, hash, &rec);
        if (r < 0)
                return r;
        family = json_object_get_string(rec, "family");
        customer_id = json_object_get_string(rec, "customerId");
        publisher_id = json_object_get_string(rec, "publisherId");

        r = family_get_live(t, family, customer_id, publisher_id, &fkey, &frec);
        if (r < 0)
                return r;
        if (!record_time(rec, "expires", &expires))
                return log_debug_errno(EPROTO, "Token record %s has no expiry", hash);
        if (expires <= ctx->now_usec)
                return -ETIME;

        until = time_add(ctx->now_usec, ctx->config->access_ttl_usec);
        if (json_object_get(rec, "rotated"))
                r = refresh_reuse(t, ctx, refresh_token, rec, fkey, frec, &s.refresh_token);
        else {
                uint64_t successor_expires = 0;

                r = refresh_rotate(t, ctx, refresh_token, hash, rec, &s.refresh_token, &successor_expires);
                until = max_u64(until, successor_expires);
        }
        if (r < 0)
                return r;

        r = family_extend(t, ctx, fkey, frec, until);
        if (r < 0)
                return r;

        s.family = strdup(family);
        if (!s.family)
                return -ENOMEM;
        r = jwt_mint(ctx, customer_id, publisher_id, family, &s.jwt, &s.jwt_expires);
        if (r < 0)
                return r;

        *ret = s;
        s = (SessionTokens) {};
        return 0;
}

/* ---- revocation ---- */

int session_check_live(StoreTxn *t, const SessionContext *ctx, const char *family, const char *customer_id) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        uint64_t expires = 0;
        int r;

        r = family_get_live(t, family, customer_id, NULL, NULL, &rec);
        if (r < 0)
                return r;
        if (!record_time(rec, "expires", &expires) || expires <= ctx->now_usec)
                return -EACCES;
        return 0;
}

int session_revoke_family(StoreTxn *t, const SessionContext *ctx, const char *family, const char *customer_id) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *key = NULL;
        int r;

        r = family_get_live(t, family, customer_id, NULL, &key, &rec);
        if (r == -EACCES)
                return 0;
        if (r < 0)
                return r;
        r = family_revoke(t, ctx, key, rec);
        return r < 0 ? r : 1;
}

int session_revoke_token(StoreTxn *t, const SessionContext *ctx, const char *token) {
        _cleanup_(json_decrefp) json_t *rec = NULL, *frec = NULL;
        _cleanup_free_ char *fkey = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        uint64_t expires = 0;
        int r;

        if (!t)
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;
        if (!token)
                return 0;

        if (looks_like_jwt(token)) {
                /* RFC 7009 2.1 lets a server revoke access tokens: ours ends its whole family,
                 * like logoutAll would for that one session. */
                _cleanup_(jwt_claims_done) JwtClaims c = {};

                r = session_verify_jwt(t, ctx, token, &c, NULL);
                if (r == -EACCES || r == -ETIME)
                        return 0;
                if (r < 0)
                        return r;
                r = family_get_live(t, c.sid, c.customer_id, c.publisher_id, &fkey, &frec);
        } else {
                r = token_record_get(t, token, NULL, hash, &rec);
                if (r == -EACCES)
                        return 0;
                if (r < 0)
                        return r;
                /* An expired token is no token (RFC 7009: invalid tokens are not an error). A
                 * rotated refresh token still names its family: whoever holds it may end it, as
                 * presenting it to refreshToken would. */
                if (!record_time(rec, "expires", &expires) || expires <= ctx->now_usec)
                        return 0;
                r = family_get_live(t, json_object_get_string(rec, "family"),
                                    json_object_get_string(rec, "customerId"),
                                    json_object_get_string(rec, "publisherId"), &fkey, &frec);
        }
        if (r == -EACCES)
                return 0;       /* already revoked or gone */
        if (r < 0)
                return r;

        r = family_revoke(t, ctx, fkey, frec);
        if (r < 0)
                return r;
        return 1;
}

static int collect_key(const char *key, json_t *value, void *userdata) {
        return json_array_append_new(userdata, json_string(key)) < 0 ? -ENOMEM : 0;
}

int session_revoke_customer(StoreTxn *t, const SessionContext *ctx, const char *customer_id,
                            const char *except_family) {
        _cleanup_(json_decrefp) json_t *keys = NULL;
        _cleanup_free_ char *prefix = NULL;
        size_t i, prefix_len;
        json_t *k;
        int r, n = 0;

        if (!t || !customer_id_is_valid(customer_id))
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;

        if (asprintf(&prefix, CUSTOMER_PREFIX "%s:", customer_id) < 0)
                return -ENOMEM;
        prefix_len = strlen(prefix);
        keys = json_array();
        if (!keys)
                return -ENOMEM;
        /* Collected first, written after: no writes while the walk is under way. */
        r = store_foreach(t, STORE_TOKENS, prefix, NULL, collect_key, keys);
        if (r < 0)
                return r;

        json_array_foreach(keys, i, k) {
                _cleanup_(json_decrefp) json_t *frec = NULL;
                _cleanup_free_ char *fkey = NULL;
                const char *family = json_string_value(k) + prefix_len;
                uint64_t expires = 0;

                if (streq_ptr(family, except_family))
                        continue;
                r = family_get_live(t, family, customer_id, NULL, &fkey, &frec);
                if (r == -EACCES)
                        continue;       /* gone or revoked already; the sweep tidies the index */
                if (r < 0)
                        return r;
                if (record_time(frec, "expires", &expires) && expires <= ctx->now_usec)
                        continue;       /* nothing of it works any more */
                r = family_revoke(t, ctx, fkey, frec);
                if (r < 0)
                        return r;
                n++;
        }
        return n;
}

typedef struct CustomerDelete {
        StoreTxn *t;
        const char *customer_id;
        json_t *keys;           /* [[key, kind or null, due], ...]: the sessions' records */
        json_t *others;         /* [key, ...]: other records naming the customer */
} CustomerDelete;

static int collect_doomed(json_t *keys, const char *key, const char *kind, uint64_t due) {
        json_t *e = json_pack("[s, s?, I]", key, kind, (json_int_t) due);

        if (!e)
                return -ENOMEM;
        return json_array_append_new(keys, e) < 0 ? -ENOMEM : 0;
}

/* The index entries go with the records where their due time is known from the record alone;
 * a revoked family's or a sealed successor's (which depend on the configuration) are dropped by
 * the sweep, within access_ttl or refresh_grace. */
static int collect_family(CustomerDelete *d, const char *key, json_t *value) {
        uint64_t due = expires_due(value);

        (void) record_time(value, "indexed", &due);     /* left behind by family_extend() */
        return collect_doomed(d->keys, key, json_object_get(value, "revoked") ? NULL : SESSION_KIND_FAMILY, due);
}

/* The walk over the customer's index entries: each, and the family it names. */
static int collect_index_entry(const char *key, json_t *value, void *userdata) {
        CustomerDelete *d = userdata;
        _cleanup_(json_decrefp) json_t *frec = NULL;
        _cleanup_free_ char *fkey = NULL;
        int r;

        r = collect_doomed(d->keys, key, NULL, 0);
        if (r >= 0)
                r = index_entry_family(d->t, key, d->customer_id, &fkey, &frec);
        if (r <= 0)
                return r;
        return collect_family(d, fkey, frec);
}

/* The walk over the records naming the customer (index entries name nobody: they are not
 * among them). */
static int collect_customer_record(const char *key, json_t *value, void *userdata) {
        CustomerDelete *d = userdata;
        const char *type = json_object_get_string(value, "type");

        if (startswith(key, FAMILY_PREFIX))
                return collect_family(d, key, value);
        if (streq_ptr(type, TYPE_REFRESH))
                return collect_doomed(d->keys, key, SESSION_KIND_REFRESH, expires_due(value));
        if (streq_ptr(type, TYPE_CUSTOMER))
                return collect_doomed(d->keys, key, SESSION_KIND_CUSTOMER, expires_due(value));
        if (d->others)
                return json_array_append_new(d->others, json_string(key)) < 0 ? -ENOMEM : 0;
        return 0;
}

/* Deletes what was collected: the sessions' records with their index entries, then the others
 * through other() (NULL: as they are). Returns the number of records deleted. */
static int delete_collected(CustomerDelete *d, SessionPurgeOtherFn other, void *userdata) {
        size_t i;
        json_t *k;
        int r, n = 0;

        json_array_foreach(d->keys, i, k) {
                const char *key = json_string_value(json_array_get(k, 0));
                const char *kind = json_string_value(json_array_get(k, 1));

                r = store_del(d->t, STORE_TOKENS, key);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                n++;
                if (kind) {
                        r = session_expiry_del(d->t, kind, (uint64_t) json_integer_value(json_array_get(k, 2)), key);
                        if (r < 0)
                                return r;
                }
        }
        json_array_foreach(d->others, i, k) {
                r = other ? other(d->t, json_string_value(k), userdata) :
                            store_del(d->t, STORE_TOKENS, json_string_value(k));
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                n += r > 0 ? r : 1;
        }
        return n;
}

int session_delete_customer(StoreTxn *t, const char *customer_id) {
        _cleanup_(json_decrefp) json_t *keys = json_array();
        CustomerDelete d;
        int r;

        if (!t || !customer_id_is_valid(customer_id))
                return -EINVAL;
        if (!keys)
                return -ENOMEM;

        jwt_cache_revoke();     /* as for a revoked family */

        /* Collected first, deleted after: no writes while the walks are under way. */
        d = (CustomerDelete) { .t = t, .customer_id = customer_id, .keys = keys };
        r = index_foreach(t, customer_id, collect_index_entry, &d);
        if (r < 0)
                return r;
        return delete_collected(&d, NULL, NULL);
}

int session_purge_customer_step(StoreTxn *t, const char *customer_id, const char *after, unsigned max,
                                SessionPurgeOtherFn other, void *userdata, char **ret_next) {
        _cleanup_(json_decrefp) json_t *keys = json_array(), *others = json_array();
        _cleanup_free_ char *next = NULL;
        CustomerDelete d;
        int r;

        if (!t || !customer_id_is_valid(customer_id) || max == 0 || !ret_next)
                return -EINVAL;
        if (!keys || !others)
                return -ENOMEM;

        d = (CustomerDelete) { .t = t, .customer_id = customer_id, .keys = keys, .others = others };
        r = store_foreach_where_from(t, STORE_TOKENS, "customerId", customer_id, after, max, &next,
                                     collect_customer_record, &d);
        if (r < 0)
                return r;
        r = delete_collected(&d, other, userdata);
        if (r < 0)
                return r;
        *ret_next = TAKE_PTR(next);
        return r;
}

/* ---- verification and introspection ---- */

int session_verify_jwt(StoreTxn *t, const SessionContext *ctx, const char *jwt, JwtClaims *ret,
                       char **ret_family) {
        _cleanup_(jwt_claims_done) JwtClaims c = {};
        _cleanup_free_ char *family = NULL;
        int r, cached;

        if (!t || !ret)
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;
        if (!jwt)
                return -EACCES;

        /* The cache stands for the signature and the claims only; the checks below run every
         * time. */
        r = cached = jwt_verify_cached(ctx->keyring, jwt, ctx->config->issuer,
                                       ctx->now_usec / SESSION_USEC_PER_SEC, JWT_LEEWAY_SEC, &c);
        if (r == -ENOKEY && ctx->keys_in_store) {
                /* Perhaps a key another idmd made since this one last looked. */
                int q = signing_keys_sync_unknown_kid(t, ctx->keyring, ctx->now_usec,
                                                      KEYRING_RETAIN_USEC(ctx->config->access_ttl_usec));
                if (q == -EBADMSG || q == -ENOKEY)
                        log_warning_errno(q, "The signing keys in the store are damaged, keeping those held: %m");
                else if (q < 0)
                        return q;       /* the store's failure (unreachable: 503) */
                if (q > 0)
                        r = cached = jwt_verify_cached(ctx->keyring, jwt, ctx->config->issuer,
                                                       ctx->now_usec / SESSION_USEC_PER_SEC, JWT_LEEWAY_SEC, &c);
        }
        if (r == -EBADMSG || r == -EINVAL || r == -ENOKEY)
                return -EACCES;
        if (r < 0)
                return r;       /* -ETIME, -ENOMEM */

        /* Every JWT we mint names its family and the same customer twice. */
        if (!c.sid || !streq(c.sub, c.customer_id) || !streq(c.aud, c.publisher_id))
                return -EACCES;
        if (ctx->prefetch_customer)
                (void) customer_prefetch(t, c.customer_id);
        r = family_get_live(t, c.sid, c.customer_id, c.publisher_id, NULL, NULL);
        if (r < 0)
                return r;
        if (cached == 0)        /* only a token accepted by every check is cached */
                jwt_cache_remember(ctx->keyring, jwt, &c, ctx->now_usec / SESSION_USEC_PER_SEC);

        if (ret_family) {
                family = strdup(c.sid);
                if (!family)
                        return -ENOMEM;
                *ret_family = TAKE_PTR(family);
        }
        *ret = c;
        c = (JwtClaims) {};
        return 0;
}

int session_verify_customer_token(StoreTxn *t, const SessionContext *ctx, const char *token,
                                  char **ret_customer_id, char **ret_publisher_id, char **ret_family) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *cid = NULL, *pid = NULL, *family = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        uint64_t expires = 0;
        int r;

        if (!t)
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;

        r = token_record_get(t, token, TYPE_CUSTOMER, hash, &rec);
        if (r < 0)
                return r;
        if (ctx->prefetch_customer && json_object_get_string(rec, "customerId"))
                (void) customer_prefetch(t, json_object_get_string(rec, "customerId"));
        r = family_get_live(t, json_object_get_string(rec, "family"), json_object_get_string(rec, "customerId"),
                            json_object_get_string(rec, "publisherId"), NULL, NULL);
        if (r < 0)
                return r;
        if (!record_time(rec, "expires", &expires))
                return log_debug_errno(EPROTO, "Token record %s has no expiry", hash);
        if (expires <= ctx->now_usec)
                return -ETIME;

        cid = strdup(json_object_get_string(rec, "customerId"));
        pid = strdup(json_object_get_string(rec, "publisherId"));
        family = strdup(json_object_get_string(rec, "family"));
        if (!cid || !pid || !family)
                return -ENOMEM;
        if (ret_customer_id)
                *ret_customer_id = TAKE_PTR(cid);
        if (ret_publisher_id)
                *ret_publisher_id = TAKE_PTR(pid);
        if (ret_family)
                *ret_family = TAKE_PTR(family);
        return 0;
}

static int introspect_opaque(StoreTxn *t, const SessionContext *ctx, const char *token, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        const char *type, *cid, *pid;
        uint64_t created = 0, expires = 0;
        json_t *o;
        int r;

        r = token_record_get(t, token, NULL, hash, &rec);
        if (r < 0)
                return r;
        type = json_object_get_string(rec, "type");
        cid = json_object_get_string(rec, "customerId");
        pid = json_object_get_string(rec, "publisherId");
        r = family_get_live(t, json_object_get_string(rec, "family"), cid, pid, NULL, NULL);
        if (r < 0)
                return r;
        if (!record_time(rec, "expires", &expires) || !record_time(rec, "created", &created))
                return log_debug_errno(EPROTO, "Token record %s has no times", hash);
        if (expires <= ctx->now_usec)
                return -ETIME;
        /* A rotated refresh token is used up, even inside its grace window (that only exists to
         * hand the same successor to a concurrent user). */
        if (json_object_get(rec, "rotated"))
                return -EACCES;

        o = json_pack("{s:b, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s}",
                      "active", 1,
                      "sub", cid,
                      "exp", (json_int_t) (expires / SESSION_USEC_PER_SEC),
                      "iat", (json_int_t) (created / SESSION_USEC_PER_SEC),
                      "iss", ctx->config->issuer,
                      "aud", pid,
                      "token_type", streq(type, TYPE_REFRESH) ? "refresh_token" : "customer_token",
                      "customerId", cid,
                      "publisherId", pid);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

static int introspect_jwt(StoreTxn *t, const SessionContext *ctx, const char *token, json_t **ret) {
        _cleanup_(jwt_claims_done) JwtClaims c = {};
        json_t *o;
        int r;

        r = session_verify_jwt(t, ctx, token, &c, NULL);
        if (r < 0)
                return r;
        o = json_pack("{s:b, s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s}",
                      "active", 1,
                      "sub", c.sub,
                      "exp", (json_int_t) c.exp,
                      "iat", (json_int_t) c.iat,
                      "nbf", (json_int_t) c.nbf,
                      "iss", c.iss,
                      "aud", c.aud,
                      "jti", c.jti,
                      "token_type", "access_token",
                      "customerId", c.customer_id,
                      "publisherId", c.publisher_id);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

int session_introspect(StoreTxn *t, const SessionContext *ctx, const char *token, json_t **ret) {
        json_t *o = NULL;
        int r;

        if (!t || !ret)
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;

        if (!token || !token[0])
                r = -EACCES;
        else if (looks_like_jwt(token))
                r = introspect_jwt(t, ctx, token, &o);
        else
                r = introspect_opaque(t, ctx, token, &o);
        /* RFC 7662 2.2: an inactive token says nothing more about itself, nor why. */
        if (r == -EACCES || r == -ETIME || r == -EPROTO) {
                o = json_pack("{s:b}", "active", 0);
                r = o ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        *ret = o;
        return 0;
}

/* ---- the sweep, by kind (sessions.h) ---- */

/* Reads the record at key for an expire function: 0 and *ret, or 0 and NULL when there is
 * nothing to do (gone or damaged: the damage was logged by the store). Store errors. */
static int expire_get(StoreTxn *t, const char *key, SessionSweepStats *stats, json_t **ret) {
        int r;

        *ret = NULL;
        stats->read++;
        r = store_get(t, STORE_TOKENS, key, ret);
        if (r == -ENOENT || r == -EPROTO)
                return 0;
        return r;
}

/* Deletes the record at key, counted; one gone already is not an error. Store errors. */
static int expire_del(StoreTxn *t, const char *key, SessionSweepStats *stats) {
        int r;

        r = store_del(t, STORE_TOKENS, key);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        stats->deleted++;
        return 0;
}

/* Deletes the record at key if due <= now; else enters it again under kind, at due. */
static int expire_or_enter(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                           uint64_t due, SessionSweepStats *stats) {
        if (due > ctx->now_usec)
                return session_expiry_put(t, kind, due, key);
        return expire_del(t, key, stats);
}

int session_expire_token(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                         SessionSweepStats *stats) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        const char *type;
        int r;

        r = expire_get(t, key, stats, &rec);
        if (r < 0 || !rec)
                return r;
        /* Only ours: a record of another type under this key is its module's business. */
        type = json_object_get_string(rec, "type");
        if (!streq_ptr(type, TYPE_REFRESH) && !streq_ptr(type, TYPE_CUSTOMER))
                return 0;
        return expire_or_enter(t, ctx, kind, key, expires_due(rec), stats);
}

int session_expire_seal(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                        SessionSweepStats *stats) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        uint64_t due;
        int r;

        r = expire_get(t, key, stats, &rec);
        if (r < 0 || !rec)
                return r;
        if (!streq_ptr(json_object_get_string(rec, "type"), TYPE_REFRESH))
                return 0;
        due = seal_due(ctx, rec);
        if (due == NO_DUE)
                return 0;       /* dropped already */
        if (due > ctx->now_usec)
                return session_expiry_put(t, kind, due, key);
        (void) json_object_del(rec, "successorSealed");
        r = store_put(t, STORE_TOKENS, key, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        stats->updated++;
        return 0;
}

int session_expire_family(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                          SessionSweepStats *stats) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *ikey = NULL;
        const char *cid;
        uint64_t due;
        int r;

        if (!startswith(key, FAMILY_PREFIX))
                return 0;
        r = expire_get(t, key, stats, &rec);
        if (r < 0 || !rec)
                return r;
        due = family_due(ctx, rec);
        if (due > ctx->now_usec) {
                /* Extended since the entry was made (family_extend()): on to its due now. */
                r = session_expiry_put(t, kind, due, key);
                if (r < 0 || json_object_del(rec, "indexed") < 0)
                        return r;
                r = store_put(t, STORE_TOKENS, key, rec, STORE_PUT_DEFAULT);
                if (r < 0)
                        return r;
                stats->updated++;
                return 0;
        }

        r = expire_del(t, key, stats);
        if (r < 0)
                return r;
        /* Its entry in the customer's index goes with it. */
        cid = json_object_get_string(rec, "customerId");
        if (!customer_id_is_valid(cid))
                return 0;
        r = index_key(cid, key + strlen(FAMILY_PREFIX), &ikey);
        if (r < 0)
                return r;
        r = expire_del(t, ikey, stats);
        if (r < 0)
                return r;
        free(ikey);
        ikey = NULL;
        r = revoked_index_key(cid, key + strlen(FAMILY_PREFIX), &ikey);
        if (r < 0)
                return r;
        return expire_del(t, ikey, stats);
}

/* Whether key is "<kind>:...", the key of a timed record of kind. */
static bool timed_key_is(const char *kind, const char *key) {
        return kind && key && startswith(key, kind) && key[strlen(kind)] == ':';
}

int session_expire_timed(StoreTxn *t, const SessionContext *ctx, const char *kind, const char *key,
                         SessionSweepStats *stats) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        if (!timed_key_is(kind, key))
                return 0;
        r = expire_get(t, key, stats, &rec);
        if (r < 0 || !rec)
                return r;
        return expire_or_enter(t, ctx, kind, key, expires_due(rec), stats);
}

typedef struct KindWalk {
        size_t prefix_len;
        uint64_t now;
        unsigned max;
        json_t *due;            /* [[index key, record key], ...] */
        bool more;
} KindWalk;

/* Parses "<due>:<rest>" (after the kind's prefix) of an index key. */
static bool expiry_key_parse(const char *s, uint64_t *ret_due, const char **ret_rest) {
        uint64_t due = 0;

        for (size_t i = 0; i < DUE_HEX; i++) {
                char c = s[i];

                if (c >= '0' && c <= '9')
                        due = due << 4 | (uint64_t) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        due = due << 4 | (uint64_t) (c - 'a' + 10);
                else
                        return false;
        }
        if (s[DUE_HEX] != ':' || !s[DUE_HEX + 1])
                return false;
        *ret_due = due;
        *ret_rest = s + DUE_HEX + 1;
        return true;
}

static int kind_walk_one(const char *key, json_t *value, void *userdata) {
        KindWalk *w = userdata;
        const char *rest, *rkey;
        uint64_t due;

        if (!expiry_key_parse(key + w->prefix_len, &due, &rest))
                rkey = NULL;    /* not an entry we wrote: removed, nothing looked up */
        else if (due > w->now)
                return 1;       /* the first one not due: nothing after it is */
        else
                rkey = rest[0] == HASHED_KEY_MARK ? json_object_get_string(value, "key") : rest;
        if (json_array_size(w->due) >= w->max) {
                w->more = true;
                return 1;
        }
        return json_array_append_new(w->due, json_pack("[s, s?]", key, rkey)) < 0 ? -ENOMEM : 0;
}

int session_sweep_kind(StoreTxn *t, const SessionContext *ctx, const char *kind, SessionExpireFn expire,
                       unsigned max, const char *after, char **ret_cursor, SessionSweepStats *stats) {
        _cleanup_(json_decrefp) json_t *due = NULL;
        _cleanup_free_ char *prefix = NULL, *cursor = NULL;
        SessionSweepStats local = {};
        KindWalk w;
        size_t i;
        json_t *e;
        int r;

        if (!stats)
                stats = &local;
        *stats = (SessionSweepStats) {};
        if (!t || !kind_is_valid(kind) || !expire || !ret_cursor || max == 0)
                return -EINVAL;
        r = context_check(ctx);
        if (r < 0)
                return r;
        if (asprintf(&prefix, "%s:", kind) < 0)
                return -ENOMEM;
        due = json_array();
        if (!due)
                return -ENOMEM;

        /* Collected first, acted on after: the walk reads index entries only. */
        w = (KindWalk) { .prefix_len = strlen(prefix), .now = ctx->now_usec, .max = max, .due = due };
        r = store_foreach(t, STORE_TOKEN_EXPIRY, prefix, after, kind_walk_one, &w);
        if (r < 0)
                return r;

        json_array_foreach(due, i, e) {
                const char *ikey = json_string_value(json_array_get(e, 0));
                const char *rkey = json_string_value(json_array_get(e, 1));

                r = store_del(t, STORE_TOKEN_EXPIRY, ikey);
                if (r < 0 && r != -ENOENT)
                        return r;
                stats->visited++;
                if (!rkey)
                        continue;
                r = expire(t, ctx, kind, rkey, stats);
                if (r < 0)
                        return r;
        }

        if (w.more && json_array_size(due) > 0) {
                cursor = strdup(json_string_value(json_array_get(json_array_get(due, json_array_size(due) - 1), 0)));
                if (!cursor)
                        return -ENOMEM;
        }
        *ret_cursor = TAKE_PTR(cursor);
        return w.more ? 1 : 0;
}

static int pending_one(const char *key, json_t *value, void *userdata) {
        KindWalk *w = userdata;
        const char *rest;
        uint64_t due;

        /* Something that is not an entry of ours counts as due: the sweep removes it. */
        w->more = !expiry_key_parse(key + w->prefix_len, &due, &rest) || due <= w->now;
        return 1;
}

int session_sweep_pending(StoreTxn *t, const char *kind, uint64_t now_usec, const char *after) {
        _cleanup_free_ char *prefix = NULL;
        KindWalk w;
        int r;

        if (!t || !kind_is_valid(kind))
                return -EINVAL;
        if (asprintf(&prefix, "%s:", kind) < 0)
                return -ENOMEM;
        w = (KindWalk) { .prefix_len = strlen(prefix), .now = now_usec };
        r = store_foreach(t, STORE_TOKEN_EXPIRY, prefix, after, pending_one, &w);
        if (r < 0)
                return r;
        return w.more;
}

/* ---- the PAM path's records ---- */

int session_timed_put(StoreTxn *t, const char *kind, const char *key, json_t *rec) {
        _cleanup_(json_decrefp) json_t *old = NULL;
        int r;

        if (!t || !timed_key_is(kind, key) || !json_is_object(rec))
                return -EINVAL;
        r = store_get(t, STORE_TOKENS, key, &old);
        if (r < 0 && r != -ENOENT && r != -EPROTO)
                return r;
        r = store_put(t, STORE_TOKENS, key, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        return expiry_move(t, kind, old ? expires_due(old) : NO_DUE, expires_due(rec), key);
}

int session_timed_del(StoreTxn *t, const char *kind, const char *key) {
        _cleanup_(json_decrefp) json_t *old = NULL;
        int r;

        if (!t || !timed_key_is(kind, key))
                return -EINVAL;
        r = store_get(t, STORE_TOKENS, key, &old);
        if (r < 0 && r != -EPROTO)
                return r == -ENOENT ? 0 : r;
        r = store_del(t, STORE_TOKENS, key);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (old) {
                r = session_expiry_del(t, kind, expires_due(old), key);
                if (r < 0)
                        return r;
        }
        return 1;
}

int session_timed_get(StoreTxn *t, const char *kind, const char *key, json_t **ret) {
        if (!timed_key_is(kind, key))
                return -EINVAL;
        return store_get(t, STORE_TOKENS, key, ret);
}

/* ---- the index of a store from before it (schema version 1) ---- */

static int rebuild_one(const char *key, json_t *value, void *userdata) {
        StoreTxn *t = userdata;
        const char *type = json_object_get_string(value, "type");
        uint64_t t2 = 0;
        int r;

        if (startswith(key, FAMILY_PREFIX)) {
                uint64_t due = expires_due(value);

                /* Revoked: entered at the revocation, the sweep moves it on (it knows access_ttl). */
                if (json_object_get(value, "revoked")) {
                        (void) record_time(value, "revoked", &t2);
                        due = min_u64(due, t2);
                }
                return session_expiry_put(t, SESSION_KIND_FAMILY, due, key);
        }
        if (startswith(key, CUSTOMER_PREFIX)) {
                _cleanup_free_ char *fkey = NULL;
                const char *family = strrchr(key, ':') + 1;

                /* An index entry whose family is gone would never be looked at again. */
                if (family_id_is_valid(family)) {
                        r = family_key(family, &fkey);
                        if (r < 0)
                                return r;
                        r = store_exists(t, STORE_TOKENS, fkey);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
                r = store_del(t, STORE_TOKENS, key);
                return r == -ENOENT ? 0 : r;
        }
        if (startswith(key, SESSION_PAM_PREFIX))
                return session_expiry_put(t, SESSION_KIND_PAM, expires_due(value), key);
        if (streq_ptr(type, TYPE_CUSTOMER))
                return session_expiry_put(t, SESSION_KIND_CUSTOMER, expires_due(value), key);
        if (streq_ptr(type, TYPE_REFRESH)) {
                r = session_expiry_put(t, SESSION_KIND_REFRESH, expires_due(value), key);
                if (r < 0)
                        return r;
                /* Sealed successor: entered at the rotation, the sweep moves it on (refresh_grace). */
                if (!json_object_get(value, "successorSealed"))
                        return 0;
                (void) record_time(value, "rotated", &t2);
                return session_expiry_put(t, SESSION_KIND_SEAL, t2, key);
        }
        return 0;       /* one-time tokens of other modules */
}

int session_expiry_rebuild(StoreTxn *t) {
        if (!t)
                return -EINVAL;
        return store_foreach(t, STORE_TOKENS, NULL, NULL, rebuild_one, t);
}

/* ---- what a customer leaves behind ---- */

typedef struct CustomerRecords {
        SessionRecordFn fn;
        void *userdata;
} CustomerRecords;

static int customer_record(const char *key, json_t *value, void *userdata) {
        CustomerRecords *c = userdata;

        return c->fn(key, c->userdata);
}

int session_foreach_customer_record(StoreTxn *t, const char *customer_id, SessionRecordFn fn, void *userdata) {
        CustomerRecords c = { .fn = fn, .userdata = userdata };
        int r;

        if (!t || !fn || !customer_id_is_valid(customer_id))
                return -EINVAL;
        /* The index entries, then the records naming the customer (as the purge does; index
         * entries name nobody, so none is visited twice). */
        r = index_foreach(t, customer_id, customer_record, &c);
        if (r < 0)
                return r;
        return store_foreach_where(t, STORE_TOKENS, "customerId", customer_id, customer_record, &c);
}

int session_pam_key(const char *publisher_id, const char *user, uid_t uid, char **ret) {
        _cleanup_free_ char *index = NULL;
        char *key;
        int r;

        r = customer_email_key(publisher_id, user, &index);
        if (r < 0)
                return r;
        if (asprintf(&key, SESSION_PAM_PREFIX "%s:%u", index, (unsigned) uid) < 0)
                return -ENOMEM;
        if (strlen(key) > STORE_KEY_MAX) {
                free(key);
                return -E2BIG;
        }
        *ret = key;
        return 0;
}

/* ---- export ---- */

typedef struct SessionExport {
        StoreTxn *t;
        const char *customer_id;
        json_t *sessions, *pam;
} SessionExport;

static json_t *export_time(json_t *rec, const char *field) {
        uint64_t usec;
        char buf[32];

        if (!json_object_get(rec, field) || !record_time(rec, field, &usec))
                return json_null();
        return json_string(format_rfc3339(usec, buf));
}

/* The walk over the customer's index entries: the family each names. */
static int export_session(const char *key, json_t *value, void *userdata) {
        SessionExport *e = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *fkey = NULL;
        json_t *item;
        int r;

        r = index_entry_family(e->t, key, e->customer_id, &fkey, &rec);
        if (r <= 0)
                return r;
        item = json_pack("{s:s, s:O?, s:o, s:o, s:o}",
                         "sessionId", fkey + strlen(FAMILY_PREFIX),
                         "publisherId", json_object_get(rec, "publisherId"),
                         "created", export_time(rec, "created"),
                         "expires", export_time(rec, "expires"),
                         "revoked", export_time(rec, "revoked"));
        return json_array_append_new(e->sessions, item) < 0 ? -ENOMEM : 0;
}

/* The prefix walk over the PAM path's records of the customer's e-mail. */
static int export_pam(const char *key, json_t *rec, void *userdata) {
        SessionExport *e = userdata;
        const char *uid = strrchr(key, ':');
        json_t *item;

        /* One of a deleted customer of that e-mail whose purge has not come to it yet. */
        if (!streq_ptr(json_object_get_string(rec, "customerId"), e->customer_id))
                return 0;
        item = json_pack("{s:O?, s:s, s:o, s:o}",
                         "sessionId", json_object_get(rec, "sessionId"),
                         "peerUid", uid ? uid + 1 : "",
                         "created", export_time(rec, "created"),
                         "expires", export_time(rec, "expires"));
        return json_array_append_new(e->pam, item) < 0 ? -ENOMEM : 0;
}

int session_export_customer(StoreTxn *t, const char *customer_id, const char *publisher_id, const char *email,
                            json_t **ret_sessions, json_t **ret_pam) {
        _cleanup_(json_decrefp) json_t *sessions = json_array(), *pam = json_array();
        _cleanup_free_ char *email_key = NULL, *pam_prefix = NULL;
        SessionExport e = { .t = t, .customer_id = customer_id, .sessions = sessions, .pam = pam };
        int r;

        if (!t || !customer_id_is_valid(customer_id) || !publisher_id || !email)
                return -EINVAL;
        if (!sessions || !pam)
                return -ENOMEM;
        /* By key only: the families through the customer's index (its live sessions', then its
         * revoked ones'), the PAM records through the account's e-mail, which never changes. */
        r = index_foreach(t, customer_id, export_session, &e);
        if (r < 0)
                return r;
        r = customer_email_key(publisher_id, email, &email_key);
        if (r < 0)
                return r;
        if (asprintf(&pam_prefix, SESSION_PAM_PREFIX "%s:", email_key) < 0)
                return -ENOMEM;
        r = store_foreach(t, STORE_TOKENS, pam_prefix, NULL, export_pam, &e);
        if (r < 0)
                return r;
        *ret_sessions = TAKE_PTR(sessions);
        *ret_pam = TAKE_PTR(pam);
        return 0;
}
