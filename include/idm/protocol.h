/* SPDX-License-Identifier: MIT */
/*
 * The wire contract between idmd and its clients (pam_idm, idmctl, publishers' backends):
 * method names, error codes and their stable reasons, default paths and protocol limits.
 * docs/rpc.md describes every method; this header is what the C code on both sides shares.
 */
#pragma once

#define IDM_PROTOCOL_VERSION 1

#define IDM_DEFAULT_SOCKET "/run/idmd/socket"
#define IDM_DEFAULT_STATE_DIR "/var/lib/idmd"
/* The build names the configuration directory (meson: prefix/sysconfdir/idm, /etc/idm for
 * -Dprefix=/usr). */
#ifndef IDM_CONFDIR
#define IDM_CONFDIR "/etc/idm"
#endif
#define IDM_DEFAULT_CONFIG IDM_CONFDIR "/idmd.conf"

/* Protocol limits (defaults; idmd.conf may change the daemon's side). */
#define IDM_MAX_LINE_DEFAULT (64u * 1024u)   /* bytes in one request line, '\n' excluded */
#define IDM_MAX_DEPTH_DEFAULT 32u            /* nesting of arrays/objects in one request */
#define IDM_MAX_CONN_PER_UID_DEFAULT 256u
#define IDM_IDLE_TIMEOUT_DEFAULT 60u         /* seconds without any byte */
#define IDM_PARTIAL_TIMEOUT_DEFAULT 10u      /* seconds a partial line may wait for its '\n' */
#define IDM_MAX_BATCH 100u                   /* requests in one batch */
#define IDM_MAX_REPLY (1024u * 1024u)        /* what clients should accept as one reply line */

/* Sizes of params that several methods (and clients) share, in bytes. */
#define IDM_EMAIL_MAX 320u                   /* e-mail / PAM user name as a param */
#define IDM_PASSWORD_MAX 1024u               /* the policy counts characters; this bounds bytes */
#define IDM_PUBLISHER_ID_MAX 16u
#define IDM_OFFER_ID_MAX 64u
#define IDM_CUSTOMER_ID_MAX 32u
#define IDM_EXTERNAL_ID_MAX 128u
#define IDM_CUSTOMER_IP_MAX 64u              /* customerIP: an address literal */
#define IDM_SESSION_ID_MAX 64u
#define IDM_PUBLISHER_TOKEN_MAX 128u
#define IDM_CUSTOMER_TOKEN_MAX 256u
#define IDM_OPAQUE_TOKEN_MAX 512u            /* refresh tokens and other opaque tokens */
#define IDM_JWT_MAX 8192u

/* JSON-RPC 2.0 error codes. */
#define IDM_RPC_PARSE_ERROR -32700
#define IDM_RPC_INVALID_REQUEST -32600
#define IDM_RPC_METHOD_NOT_FOUND -32601
#define IDM_RPC_INVALID_PARAMS -32602
#define IDM_RPC_INTERNAL_ERROR -32603

/* Application error codes (HTTP-like); error.data.reason names the case. */
#define IDM_ERR_BAD_REQUEST 400
#define IDM_ERR_UNAUTHORIZED 401
#define IDM_ERR_FORBIDDEN 403
#define IDM_ERR_NOT_FOUND 404
#define IDM_ERR_CONFLICT 409
#define IDM_ERR_UNPROCESSABLE 422
#define IDM_ERR_LOCKED 423
#define IDM_ERR_PENDING 428
#define IDM_ERR_TOO_MANY 429
#define IDM_ERR_UNAVAILABLE 503

/* Stable reasons (error.data.reason). */
#define IDM_REASON_PARSE_ERROR "parse_error"
#define IDM_REASON_INVALID_REQUEST "invalid_request"
#define IDM_REASON_REQUEST_TOO_LARGE "request_too_large"
#define IDM_REASON_TOO_DEEP "too_deep"
#define IDM_REASON_BATCH_TOO_LARGE "batch_too_large"
#define IDM_REASON_TIMEOUT "timeout"
#define IDM_REASON_UNKNOWN_METHOD "unknown_method"
#define IDM_REASON_INVALID_PARAMS "invalid_params"
#define IDM_REASON_INTERNAL "internal_error"
#define IDM_REASON_INVALID_EMAIL "invalid_email"
#define IDM_REASON_WEAK_PASSWORD "weak_password"
#define IDM_REASON_INVALID_COUNTRY "invalid_country"
#define IDM_REASON_INVALID_CURRENCY "invalid_currency"
#define IDM_REASON_INVALID_LOCALE "invalid_locale"
#define IDM_REASON_INVALID_URI "invalid_uri"
#define IDM_REASON_INVALID_RESET_URL "invalid_reset_url"
#define IDM_REASON_INVALID_VALUE "invalid_value"
#define IDM_REASON_INVALID_CREDENTIALS "invalid_credentials"
#define IDM_REASON_INVALID_TOKEN "invalid_token"
#define IDM_REASON_TOKEN_EXPIRED "token_expired"
#define IDM_REASON_UNKNOWN_USER "unknown_user"       /* admin peers only (PAM as root) */
#define IDM_REASON_FORBIDDEN "forbidden"
#define IDM_REASON_NOT_FOUND "not_found"
#define IDM_REASON_CUSTOMER_EXISTS "customer_exists"
#define IDM_REASON_OFFER_EXISTS "offer_exists"
#define IDM_REASON_EXTERNAL_ID_EXISTS "external_id_exists"
#define IDM_REASON_VERSION_MISMATCH "version_mismatch"
#define IDM_REASON_TERMS_NOT_ACCEPTED "terms_not_accepted"
#define IDM_REASON_FIELD_NOT_ENABLED "field_not_enabled"
#define IDM_REASON_ACCOUNT_LOCKED "account_locked"
#define IDM_REASON_ACCOUNT_DISABLED "account_disabled"
#define IDM_REASON_AUTHORIZATION_PENDING "authorization_pending"
#define IDM_REASON_SLOW_DOWN "slow_down"
#define IDM_REASON_ACCESS_DENIED "access_denied"
#define IDM_REASON_DEVICE_LOGIN_DISABLED "device_login_disabled"
#define IDM_REASON_RATE_LIMITED "rate_limited"
#define IDM_REASON_UNAVAILABLE "unavailable"
#define IDM_REASON_STORE_FULL "store_full"
#define IDM_REASON_STORE_UNAVAILABLE "store_unavailable"     /* 503: the database cannot be reached */
#define IDM_REASON_NOT_SUPPORTED "not_supported"     /* 400: not with this store (backup on PostgreSQL) */
#define IDM_REASON_UID_RANGE_EXHAUSTED "uid_range_exhausted"     /* 503: [userdb] uid_min..uid_max used up */

/* Method names used by more than one program. */
#define IDM_METHOD_GET_SERVER_INFO "getServerInfo"
#define IDM_METHOD_GET_STATS "getStats"
/*
 * The PAM path (pam_idm <-> idmd). Every method names the publisher by "publisherId" or
 * "offerId" and the customer by "user" (the e-mail, PAM_USER). docs/rpc.md has the details.
 *
 *   pamAuthenticate {publisherId|offerId, user, password, service?, rhost?, tty?, ruser?, tokens?}
 *     -> {customerId, publisherId, sessionId} (+ jwt, refreshToken, customerToken with
 *     "tokens": true)
 *     errors: 401 invalid_credentials, 401 unknown_user (admin peers only), 423 account_locked
 *     {retryAfter}, 429 rate_limited {retryAfter}, 403 account_disabled (told only once the
 *     password is right; no tokens then)
 *   pamAccount {publisherId|offerId, user}
 *     -> {customerId, disabled, consentsUpdateRequired, consents: [{name, label, version}]}
 *     (the required consents the customer has not accepted at their current version)
 *     errors: 404 not_found (admin peers, or the peer uid that authenticated the user last)
 *     who may ask: admin peers, and a peer uid while the session it opened for the user with
 *     pamAuthenticate is live; any other peer gets 403 forbidden, known user or not
 *   pamAcceptConsents {publisherId|offerId, user, consents: [{name, version, state}]} -> {}
 *     the same callers as pamAccount; errors: 409 version_mismatch {name, version,
 *     newestVersion} (only the current version), 400 invalid_value (unknown consent), 403, 404
 *   pamChangePassword {publisherId|offerId, user, oldPassword, newPassword?} -> {}
 *     without newPassword only verifies oldPassword (PAM_PRELIM_CHECK);
 *     errors: 401 invalid_credentials, 400 weak_password (message says why), 423, 429
 *     any peer may call it (the old password is the proof; it counts towards the lockout like a
 *     login); a change revokes every session of the customer
 *   pamCloseSession {publisherId|offerId, user, sessionId?} -> {}
 *     revokes the session's tokens (sessionId from pamAuthenticate; without it, the session
 *     this peer uid opened last for the user); {} also for unknown or closed sessions, and a
 *     sessionId of another user's session is ignored
 */
#define IDM_METHOD_PAM_AUTHENTICATE "pamAuthenticate"
#define IDM_METHOD_PAM_ACCOUNT "pamAccount"
#define IDM_METHOD_PAM_ACCEPT_CONSENTS "pamAcceptConsents"
#define IDM_METHOD_PAM_CAPTURE_ANSWERS "pamCaptureAnswers"
#define IDM_METHOD_REQUEST_PASSWORD_RESET "requestPasswordReset"
#define IDM_METHOD_UPDATE_PASSWORD "updatePassword"
#define IDM_METHOD_PAM_CHANGE_PASSWORD "pamChangePassword"
#define IDM_METHOD_PAM_CLOSE_SESSION "pamCloseSession"
#define IDM_METHOD_LOGIN "login"
#define IDM_METHOD_REVOKE_TOKEN "revokeToken"
#define IDM_METHOD_UPDATE_CUSTOMER_CONSENTS "updateCustomerConsents"
#define IDM_METHOD_REDEEM_TOKEN "redeemToken"

/* Connection-level refusals (sent with id null, then the connection is closed). */
#define IDM_REASON_TOO_MANY_CONNECTIONS "too_many_connections"
