/* SPDX-License-Identifier: MIT */
/*
 * What the method families share: authentication of publisher and customer credentials found
 * in params (called by rpc.c before a handler runs, per the method's role), and small helpers
 * for building results. Each methods/<family>.c defines one Method table (rpc.h).
 */
#pragma once

#include <jansson.h>

#include "idm/protocol.h"
#include "idm/time-util.h"
#include "rpc.h"
#include "sessions.h"
#include "store.h"

/* For ROLE_PUBLISHER methods. Admin peers pass and may name any publisherId (required then,
 * unless a publisherToken/sessionID is given too); others must give a valid publisherToken
 * (or sessionID), which fixes the call's publisher; a publisherId naming another publisher
 * gives 403. Replies itself and returns < 0 when the call may not go on. */
int auth_publisher(Call *call, json_t *params);

/* The params of every ROLE_CUSTOMER method: a customer proves who it is with its access token
 * or, for publisher backends, its customerToken (auth_customer needs one of them; jwt wins). */
#define CUSTOMER_AUTH_PARAMS                                                                    \
        { "jwt", PARAM_STRING, false, IDM_JWT_MAX },                                            \
        { "customerToken", PARAM_STRING, false, IDM_CUSTOMER_TOKEN_MAX }

/* Methods only the customer itself may call, with its short-lived access token: a
 * customerToken (a publisher backend's, valid for days) is an unknown parameter there. */
#define CUSTOMER_JWT_ONLY_PARAMS { "jwt", PARAM_STRING, true, IDM_JWT_MAX }

/* The params of every ROLE_PUBLISHER method (auth_publisher): the token (or a sessionID from
 * publisherLogin), or for an admin peer the publisher it acts for. */
#define PUBLISHER_AUTH_PARAMS                                                                   \
        PARAM_ID("publisherId", false, IDM_PUBLISHER_ID_MAX),                                   \
        { "publisherToken", PARAM_STRING, false, IDM_PUBLISHER_TOKEN_MAX },                     \
        { "sessionID", PARAM_STRING, false, IDM_SESSION_ID_MAX }

/* A customer of the call's publisher, named by exactly one of these (customers_resolve_named). */
#define CUSTOMER_NAMING_PARAMS                                                                  \
        { "email", PARAM_STRING, false, IDM_EMAIL_MAX },                                        \
        PARAM_ID("customerId", false, IDM_CUSTOMER_ID_MAX),                                     \
        { "externalId", PARAM_STRING, false, IDM_EXTERNAL_ID_MAX }

/* The publisher a customer belongs to, named by either of its ids (customers_resolve_publisher). */
#define PUBLISHER_NAMING_PARAMS                                                                 \
        PARAM_ID("publisherId", false, IDM_PUBLISHER_ID_MAX),                                   \
        PARAM_ID("offerId", false, IDM_OFFER_ID_MAX)

/* For ROLE_CUSTOMER methods: a valid "jwt" (or "customerToken") param. Replies itself and
 * returns < 0 when the call may not go on. reads_customer: the customer's record is read in the
 * same snapshot, sent with the session's read, and kept for the handler
 * (call_take_customer_record()). */
int auth_customer(Call *call, json_t *params, bool reads_customer);

/* Sets the call's authenticated publisher (role at least PUBLISHER). -ENOMEM. */
int call_set_publisher(Call *call, const char *publisher_id);

/* The session module's view of this call: config, keys, now, the peer's uid. */
SessionContext call_session_context(Call *call);


/* How to answer for a customer deleted while its request was under way (a unit of work found
 * no record). */
typedef enum CustomerGone {
        CUSTOMER_GONE_INVALID_TOKEN,    /* 401 invalid_token: the caller's token named it */
        CUSTOMER_GONE_NOT_FOUND,        /* 404 not_found */
} CustomerGone;

/* Answers the call as gone says. Returns what call_fail() returns. */
int call_fail_customer_gone(Call *call, CustomerGone gone);

/* A store read snapshot for a method (store_read()). The store's errors. */
int call_store_read(Call *call, StoreTxn **ret);
