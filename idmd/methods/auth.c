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
#include "records/publishers.h"
#include "sessions.h"
#include "tokens.h"

StoreTxn *call_store_read(Call *call) {
        StoreTxn *t = NULL;
        int r = store_read(call_manager(call)->store, &t);

        if (r < 0) {
                (void) call_reply_errno(call, r);
                return NULL;
        }
        return t;
}


int auth_publisher(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *token_publisher = NULL;
        const char *token = json_object_get_string(params, "publisherToken");
        const char *named = json_object_get_string(params, "publisherId");
        int r;

        t = call_store_read(call);
        if (!t)
                return -EIO;

        if (token) {
                r = publisher_find_by_token(t, token, &token_publisher);
                if (r == -ENOENT) {
                        call_reply_error(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL,
                                         "invalid publisherToken");
                        return -EACCES;
                }
                if (r < 0) {
                        call_reply_errno(call, r);
                        return r;
                }
                if (named && !streq(named, token_publisher)) {
                        call_reply_error(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                         "publisherId does not match the publisherToken");
                        return -EPERM;
                }
                r = call_set_publisher(call, token_publisher);
                if (r < 0)
                        call_reply_errno(call, r);
                return r;
        }

        if (call_role(call) != ROLE_ADMIN) {
                call_reply_error(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                 "this method needs a publisherToken");
                return -EPERM;
        }
        if (!named) {
                call_reply_invalid_param(call, "publisherId", "missing parameter 'publisherId'");
                return -EINVAL;
        }
        if (!publisher_exists(t, named)) {
                call_reply_error(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such publisher");
                return -ENOENT;
        }
        /* Admin keeps its role; the publisher it acts for is recorded. */
        r = call_set_publisher(call, named);
        if (r < 0)
                call_reply_errno(call, r);
        return r;
}

SessionContext call_session_context(Call *call) {
        Manager *m = call_manager(call);

        return (SessionContext) {
                .config = m->config,
                .keyring = m->keyring,
                .now_usec = now_realtime_usec(),
                .peer_uid = call_peer(call)->uid,
        };
}

int auth_customer(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(jwt_claims_done) JwtClaims claims = {};
        _cleanup_free_ char *family = NULL;
        _cleanup_free_ char *customer_id = NULL, *publisher_id = NULL;
        const char *jwt = json_object_get_string(params, "jwt");
        const char *customer_token = json_object_get_string(params, "customerToken");
        SessionContext ctx = call_session_context(call);
        int r;

        if (!jwt && !customer_token) {
                call_reply_invalid_param(call, "jwt", "missing parameter 'jwt' (or 'customerToken')");
                return -EINVAL;
        }
        t = call_store_read(call);
        if (!t)
                return -EIO;
        if (jwt)
                r = session_verify_jwt(t, &ctx, jwt, &claims, &family);
        else {
                r = session_verify_customer_token(t, &ctx, customer_token, &customer_id, &publisher_id, &family);
                if (r >= 0) {
                        claims.customer_id = TAKE_PTR(customer_id);
                        claims.publisher_id = TAKE_PTR(publisher_id);
                }
        }
        if (r == -ETIME) {
                call_reply_error(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL, "the token has expired");
                return r;
        }
        if (r == -EACCES || r == -EBADMSG) {
                call_reply_error(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
                return -EACCES;
        }
        if (r < 0) {
                call_reply_errno(call, r);
                return r;
        }
        r = call_set_customer(call, claims.customer_id, claims.publisher_id, family);
        if (r < 0)
                call_reply_errno(call, r);
        return r;
}
