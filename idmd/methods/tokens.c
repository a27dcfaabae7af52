/* SPDX-License-Identifier: MIT */
/*
 * Token methods: refreshToken (rotation, docs/rpc.md), revokeToken (RFC 7009), logoutAll,
 * introspectToken (RFC 7662), getJwks (RFC 8037 keys), rotateSigningKey (admin). The session
 * logic is in sessions.c; this file turns it into replies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/methods.h"
#include "records/signingkeys.h"
#include "sessions.h"
#include "tokens.h"


static int fail_token(Call *call, int r) {
        if (r == -ETIME)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL, "the token has expired");
        if (r == -EACCES || r == -EKEYREVOKED)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
        return r;
}

/* --- refreshToken --- */

typedef struct RefreshWork {
        SessionContext ctx;
        char *token;
        SessionTokens tokens;
        int result;             /* session_refresh()'s answer, kept aside so a revocation commits */
} RefreshWork;

static void refresh_work_free(void *p) {
        RefreshWork *w = p;

        erase_and_free(w->token);
        session_tokens_done(&w->tokens);
        free(w);
}

static int refresh_work(StoreTxn *t, void *userdata) {
        RefreshWork *w = userdata;
        int r;

        session_tokens_done(&w->tokens);        /* run again after the store grew */
        r = session_refresh(t, &w->ctx, w->token, &w->tokens);
        w->result = r;
        /* A re-use revoked the family: that must be committed although the call fails. Refusals
         * wrote nothing; committing an empty unit of work is harmless. */
        if (r == -EKEYREVOKED || r == -EACCES || r == -ETIME)
                return 0;
        return r;
}

static void refresh_done(Call *call, int r, void *userdata) {
        RefreshWork *w = userdata;

        if (r < 0)
                return;         /* answered by call_write() */
        if (w->result == -EKEYREVOKED)
                log_event(LOG_LEVEL_NOTICE, IDM_MESSAGE_REFRESH_REUSE, NULL, NULL, IDM_REASON_INVALID_TOKEN,
                          "%s: a rotated refresh token was presented again (uid %u): its session was revoked",
                          call_request_id(call), (unsigned) call_peer(call)->uid);
        if (w->result < 0) {
                (void) fail_token(call, w->result);
                return;
        }
        (void) call_reply(call, json_pack("{s:s, s:s}", "jwt", w->tokens.jwt, "refreshToken", w->tokens.refresh_token));
}

static int method_tokens_refresh(Call *call, json_t *params) {
        RefreshWork *w = calloc(1, sizeof(RefreshWork));

        if (!w)
                return -ENOMEM;
        w->ctx = call_session_context(call);
        w->token = strdup(json_object_get_string(params, "refreshToken"));
        if (!w->token) {
                free(w);
                return -ENOMEM;
        }
        return call_write(call, refresh_work, refresh_done, w, refresh_work_free);
}

/* --- revokeToken --- */

typedef struct RevokeWork {
        SessionContext ctx;
        char *token;
        char *customer_id;      /* logoutAll */
} RevokeWork;

static void revoke_work_free(void *p) {
        RevokeWork *w = p;

        erase_and_free(w->token);
        free(w->customer_id);
        free(w);
}

static RevokeWork *revoke_work_new(Call *call, const char *token, const char *customer_id) {
        RevokeWork *w = calloc(1, sizeof(RevokeWork));

        if (!w)
                return NULL;
        w->ctx = call_session_context(call);
        w->token = token ? strdup(token) : NULL;
        w->customer_id = customer_id ? strdup(customer_id) : NULL;
        if ((token && !w->token) || (customer_id && !w->customer_id)) {
                revoke_work_free(w);
                return NULL;
        }
        return w;
}

static int revoke_token_work(StoreTxn *t, void *userdata) {
        RevokeWork *w = userdata;

        return session_revoke_token(t, &w->ctx, w->token);
}

static void revoke_done(Call *call, int r, void *userdata) {
        if (r < 0)
                return;         /* only the store's failures: an invalid token is not one (RFC 7009 2.2) */
        if (r > 0) {
                jwt_cache_revoke();     /* again, now that it is committed (sessions.c did at the unit) */
                log_info("%s: a session was revoked by revokeToken", call_request_id(call));
        }
        (void) call_reply_empty(call);
}

static int method_tokens_revoke(Call *call, json_t *params) {
        RevokeWork *w = revoke_work_new(call, json_object_get_string(params, "token"), NULL);

        if (!w)
                return -ENOMEM;
        return call_write(call, revoke_token_work, revoke_done, w, revoke_work_free);
}

/* --- logoutAll --- */

static int logout_all_work(StoreTxn *t, void *userdata) {
        RevokeWork *w = userdata;

        return session_revoke_customer(t, &w->ctx, w->customer_id, NULL);
}

static void logout_all_done(Call *call, int r, void *userdata) {
        RevokeWork *w = userdata;

        if (r < 0)
                return;
        jwt_cache_revoke();     /* again, now that it is committed (sessions.c did at the unit) */
        log_info("%s: customer %s logged out everywhere (%d sessions revoked)", call_request_id(call),
                 w->customer_id, r);
        (void) call_reply(call, json_pack("{s:i}", "revoked", r));
}

static int method_tokens_logout_all(Call *call, json_t *params) {
        RevokeWork *w;

        if (!call_customer_id(call))    /* auth_customer() lets no call through without one */
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL,
                                        "invalid token");
        w = revoke_work_new(call, NULL, call_customer_id(call));
        if (!w)
                return -ENOMEM;
        return call_write(call, logout_all_work, logout_all_done, w, revoke_work_free);
}

/* --- introspectToken --- */

static int method_tokens_introspect(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        SessionContext ctx = call_session_context(call);
        json_t *result = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = session_introspect(t, &ctx, json_object_get_string(params, "token"), &result);
        if (r < 0)
                return r;
        return call_reply(call, result);
}

/* --- keys --- */

/* The JWKS reply, serialized once per state of the keys (keyring_generation(): a rotation or
 * a deletion of retired keys makes it again for the next request). */
static struct {
        uint64_t generation;
        char *text;
        size_t len;
} jwks_kept;

static int method_tokens_get_jwks(Call *call, json_t *params) {
        const Keyring *k = call_manager(call)->keyring;
        uint64_t generation = keyring_generation(k);
        json_t *jwks = NULL;
        char *text;
        int r;

        if (jwks_kept.text && jwks_kept.generation == generation && generation != 0)
                return call_reply_text(call, jwks_kept.text, jwks_kept.len);

        r = keyring_jwks(k, &jwks);
        if (r < 0)
                return r;
        text = json_dumps(jwks, JSON_COMPACT);
        if (!text)      /* keeping it failed: answered the ordinary way */
                return call_reply(call, jwks);
        json_decref(jwks);
        free(jwks_kept.text);
        jwks_kept.text = text;
        jwks_kept.len = strlen(text);
        jwks_kept.generation = generation;
        return call_reply_text(call, jwks_kept.text, jwks_kept.len);
}

static int rotate_reply(Call *call, const char *old_kid, bool revoke, int dropped) {
        Manager *m = call_manager(call);

        log_struct(LOG_LEVEL_NOTICE, IDM_MESSAGE_KEY_ROTATED, "%s: signing key rotated by uid %u, new kid %s (kid %s %s)",
                   call_request_id(call), (unsigned) call_peer(call)->uid, keyring_active_kid(m->keyring),
                   strempty(old_kid), revoke ? "and every other retired key deleted: their tokens no longer verify" :
                   "verifies until its tokens expire");
        return call_reply(call, json_pack("{s:s, s:i}", "kid", keyring_active_kid(m->keyring), "revoked", dropped));
}

/* A store several idmd share (signingkeys.h): the rotation is a unit of work on the key
 * records; this idmd takes the new set up at once, the others within SIGNING_KEYS_SYNC_USEC
 * (or at the first JWT of the new key they see). */
typedef struct RotateWork {
        uint64_t now_usec, retain_usec;
        KeyRecordsFlags flags;
        json_t *records;
        unsigned dropped;
        char *old_kid;
} RotateWork;

static void rotate_work_free(void *userdata) {
        RotateWork *w = userdata;

        json_decref(w->records);
        free(w->old_kid);
        free(w);
}

static int rotate_work(StoreTxn *t, void *userdata) {
        RotateWork *w = userdata;

        json_decref(w->records);        /* a unit may run again */
        w->records = NULL;
        return signing_keys_update(t, w->now_usec, w->retain_usec, w->flags, &w->records, &w->dropped);
}

static void rotate_done(Call *call, int r, void *userdata) {
        Manager *m = call_manager(call);
        RotateWork *w = userdata;

        if (r < 0)
                return;
        r = signing_keys_take(m->keyring, w->records, w->now_usec, w->retain_usec);
        if (r < 0) {
                /* In the store, so in force: this idmd takes it up at its next reading. */
                log_error_errno(r, "%s: signing key rotated in the store, but taking the new keys up failed: %m",
                                call_request_id(call));
                (void) call_reply_errno(call, r);
                return;
        }
        (void) rotate_reply(call, w->old_kid, w->flags & KEY_RECORDS_DROP_RETIRED, (int) w->dropped);
}

static int method_tokens_rotate_signing_key(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        _cleanup_free_ char *old_kid = NULL;
        bool revoke = json_is_true(json_object_get(params, "revokePrevious"));
        int r, dropped = 0;

        old_kid = strdup(strempty(keyring_active_kid(m->keyring)));
        if (!old_kid)
                return -ENOMEM;

        if (m->keys_in_store) {
                RotateWork *w = calloc(1, sizeof(RotateWork));

                if (!w)
                        return -ENOMEM;
                *w = (RotateWork) {
                        .now_usec = now_realtime_usec(),
                        .retain_usec = KEYRING_RETAIN_USEC(m->config->access_ttl_usec),
                        .flags = KEY_RECORDS_ROTATE | (revoke ? KEY_RECORDS_DROP_RETIRED : 0),
                        .old_kid = TAKE_PTR(old_kid),
                };
                return call_write(call, rotate_work, rotate_done, w, rotate_work_free);
        }

        /* The old key keeps verifying until every JWT it signed has expired, leeway included. */
        r = keyring_rotate(m->keyring, now_realtime_usec(), KEYRING_RETAIN_USEC(m->config->access_ttl_usec));
        if (r < 0) {
                if (streq_ptr(keyring_active_kid(m->keyring), old_kid))
                        return r;       /* nothing changed; rpc.c logs it */
                /* The new key is active anyway (tokens.h): warn and answer with it. */
                log_warning_errno(r, "%s: new signing key active, but updating the old one failed: %m",
                                  call_request_id(call));
        }
        if (revoke) {
                /* A key that may have leaked: what it signed stops verifying now. Sessions go on
                 * (refresh tokens are not signed); their next refresh gets a JWT of the new key. */
                dropped = keyring_drop_retired(m->keyring);
                if (dropped < 0)
                        return log_error_errno(dropped, "%s: new signing key %s active, but deleting the retired "
                                               "keys failed: %m", call_request_id(call),
                                               keyring_active_kid(m->keyring));
        }
        return rotate_reply(call, old_kid, revoke, dropped);
}

const Method methods_tokens[] = {
        { .name = "refreshToken", .handler = method_tokens_refresh, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) { { "refreshToken", PARAM_STRING, true, IDM_OPAQUE_TOKEN_MAX }, {} } },
        { .name = IDM_METHOD_REVOKE_TOKEN, .handler = method_tokens_revoke, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) { { "token", PARAM_STRING, true, JWT_MAX }, {} } },
        { .name = "logoutAll", .handler = method_tokens_logout_all, .role = ROLE_CUSTOMER,
          .params = (const ParamSpec[]) { CUSTOMER_JWT_ONLY_PARAMS, {} } },
        { .name = "introspectToken", .handler = method_tokens_introspect, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) { { "token", PARAM_STRING, true, JWT_MAX }, {} } },
        { .name = "getJwks", .handler = method_tokens_get_jwks, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) { {} } },
        { .name = "rotateSigningKey", .handler = method_tokens_rotate_signing_key, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { { "revokePrevious", PARAM_BOOLEAN, false, 0 }, {} } },
        {}
};
