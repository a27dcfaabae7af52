/* SPDX-License-Identifier: MIT */
/*
 * Deciding who a caller is from the credentials in its params (publisherToken, sessionID, jwt),
 * for methods whose role needs more than "anyone", plus helpers every method family shares.
 * The peer's own role (admin) comes from SO_PEERCRED, in manager.c.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "methods/methods.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/remote.h"
#include "sessions.h"
#include "tokens.h"

int call_fail_customer_gone(Call *call, CustomerGone gone) {
        if (gone == CUSTOMER_GONE_INVALID_TOKEN)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
        return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such customer");
}

int call_store_read(Call *call, StoreTxn **ret) {
        return store_read(call_manager(call)->store, ret);
}

int auth_publisher(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *token_publisher = NULL;
        const char *token = json_object_get_string(params, "publisherToken");
        const char *named = json_object_get_string(params, "publisherId");
        const char *session_id = json_object_get_string(params, "sessionID");
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;

        /* A sessionID from publisherLogin stands for the token for 10 minutes (methods/remote.c). */
        if (!token && session_id) {
                _cleanup_(json_decrefp) json_t *session = NULL;
                json_t *expires;

                r = publisher_session_get(t, session_id, &session);
                if (r == -ENOENT || r == -EINVAL)
                        return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid sessionID");
                if (r < 0)
                        return r;
                expires = json_object_get(session, "expires");
                if (!json_is_integer(expires) || (uint64_t) json_integer_value(expires) <= now_realtime_usec())
                        return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL,
                                         "the sessionID has expired");
                if (!json_object_get_string(session, "publisherId"))
                        return -EPROTO;
                if (named && !streq(named, json_object_get_string(session, "publisherId")))
                        return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                         "publisherId does not match the sessionID");
                return call_set_publisher(call, json_object_get_string(session, "publisherId"));
        }

        if (token) {
                r = publisher_find_by_token(t, token, &token_publisher);
                if (r == -ENOENT)
                        return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL,
                                         "invalid publisherToken");
                if (r < 0)
                        return r;
                if (named && !streq(named, token_publisher))
                        return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                         "publisherId does not match the publisherToken");
                return call_set_publisher(call, token_publisher);
        }

        if (call_role(call) != ROLE_ADMIN)
                return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL, "this method needs a publisherToken (or sessionID)");
        if (!named)
                return call_fail_param(call, "publisherId", "missing parameter 'publisherId'");
        r = publisher_exists(t, named);
        if (r < 0)
                return r;
        if (r == 0)
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such publisher");
        /* Admin keeps its role; the publisher it acts for is recorded. */
        return call_set_publisher(call, named);
}

SessionContext call_session_context(Call *call) {
        Manager *m = call_manager(call);

        return (SessionContext) {
                .config = m->config,
                .keyring = m->keyring,
                .keys_in_store = m->keys_in_store,
                .now_usec = now_realtime_usec(),
                .peer_uid = call_peer(call)->uid,
        };
}

int auth_customer(Call *call, json_t *params, bool reads_customer) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(jwt_claims_done) JwtClaims claims = {};
        _cleanup_free_ char *family = NULL;
        _cleanup_free_ char *customer_id = NULL, *publisher_id = NULL;
        const char *jwt = json_object_get_string(params, "jwt");
        const char *customer_token = json_object_get_string(params, "customerToken");
        SessionContext ctx = call_session_context(call);
        int r;

        if (!jwt && !customer_token)
                return call_fail_param(call, "jwt", "missing parameter 'jwt' (or 'customerToken')");
        ctx.prefetch_customer = reads_customer;
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        if (jwt)
                r = session_verify_jwt(t, &ctx, jwt, &claims, &family);
        else {
                r = session_verify_customer_token(t, &ctx, customer_token, &customer_id, &publisher_id, &family);
                if (r >= 0) {
                        claims.customer_id = TAKE_PTR(customer_id);
                        claims.publisher_id = TAKE_PTR(publisher_id);
                }
        }
        if (r == -ETIME)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL, "the token has expired");
        if (r == -EACCES || r == -EBADMSG)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
        if (r < 0)
                return r;
        if (reads_customer) {
                _cleanup_(json_decrefp) json_t *rec = NULL;

                /* Its answer came with the session's: the handler need not ask again. */
                r = customer_get(t, claims.customer_id, &rec);
                if (r >= 0)
                        call_keep_customer_record(call, TAKE_PTR(rec));
                else if (r != -ENOENT)
                        return r;       /* gone: the handler says so */
        }
        return call_set_customer(call, claims.customer_id, claims.publisher_id, family);
}
