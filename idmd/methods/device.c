/* SPDX-License-Identifier: MIT */
/*
 * Device login (RFC 8628): startDeviceLogin (anyone, for a publisher with a
 * deviceVerificationUrl) hands a device a device code and a user code; a signed-in customer of
 * the same publisher approves or denies the user code (approveDeviceLogin, denyDeviceLogin;
 * admin peers may approve or deny on behalf of a customer they name, for idmctl and tests); the
 * device polls (pollDeviceLogin) until it gets the session's tokens, once, or a refusal.
 *
 * Secrets: the device code is 256 bits (base64url), the user code 8 letters of
 * BCDFGHJKLMNPQRSTVWXZ (about 34.6 bits, shown XXXX-XXXX, typed in any case, with or without
 * dashes and spaces); only their hashes are stored (records/device.h). A user code is used once
 * (approved or denied, its record goes); guessing user codes is bounded by the login class's rate
 * limit, which every approveDeviceLogin and denyDeviceLogin takes a token of before anything is
 * looked up. Everything lives DEVICE_TTL_SEC; the sweep deletes what is left.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/customers.h"
#include "methods/methods.h"
#include "records/customers.h"
#include "records/device.h"
#include "records/publishers.h"
#include "tokens.h"
#include "url.h"
#include "validate.h"

#define DEVICE_CODE_BYTES 32
#define DEVICE_TTL_SEC 600
#define DEVICE_INTERVAL_SEC 5           /* RFC 8628 section 3.2 */
#define DEVICE_SLOW_DOWN_SEC 5          /* RFC 8628 section 3.5 */
#define DEVICE_INTERVAL_MAX_SEC 60
#define DEVICE_NAME_MAX 64
#define DEVICE_USER_CODE_TRIES 8        /* draws before giving up on a free user code (503) */
#define USER_CODE_PARAM_MAX 32
#define USEC_PER_SEC_U64 UINT64_C(1000000)

static uint64_t record_u64(json_t *rec, const char *field) {
        json_t *v = json_object_get(rec, field);

        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
}

/* --- startDeviceLogin --- */

typedef struct StartWork {
        char *publisher_id;
        char *device_name;
        char *uri;              /* the publisher's deviceVerificationUrl */
        char *device_code;      /* drawn before the unit of work, which may run twice */
        uint64_t now_usec;

        char user_code[DEVICE_USER_CODE_LEN + 1];       /* the free one the unit of work took */
} StartWork;

static void start_work_free(void *p) {
        StartWork *w = p;

        free(w->publisher_id);
        free(w->device_name);
        free(w->uri);
        erase_and_free(w->device_code);
        explicit_bzero(w->user_code, sizeof(w->user_code));
        free(w);
}

/* Writes both records, with a user code no live login has (drawn here: a collision draws again). */
static int start_write(StoreTxn *t, void *userdata) {
        StartWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL, *code_rec = NULL;
        _cleanup_free_ char *key = NULL, *code_key = NULL;
        uint64_t expires = w->now_usec + DEVICE_TTL_SEC * USEC_PER_SEC_U64;
        int r;

        w->user_code[0] = '\0';
        r = device_key(w->device_code, &key);
        if (r < 0)
                return r;
        for (unsigned i = 0;; i++) {
                _cleanup_(erase_and_freep) char *code = NULL;
                _cleanup_(json_decrefp) json_t *taken = NULL;

                if (i >= DEVICE_USER_CODE_TRIES)
                        return -ENOTUNIQ;       /* answered 503 by start_done() */
                r = token_random_from(DEVICE_USER_CODE_ALPHABET, DEVICE_USER_CODE_LEN, &code);
                if (r < 0)
                        return r;
                free(code_key);
                code_key = NULL;
                r = device_user_code_key(code, &code_key);
                if (r < 0)
                        return r;
                r = device_user_code_get(t, code_key, &taken);
                if (r == -ENOENT) {
                        memcpy(w->user_code, code, sizeof(w->user_code));
                        break;
                }
                if (r < 0)
                        return r;
        }

        rec = json_pack("{s:s, s:s*, s:s, s:s, s:I, s:I, s:i}", "publisherId", w->publisher_id, "deviceName",
                        w->device_name, "userCodeKey", code_key, "state", "pending", "created",
                        (json_int_t) w->now_usec, "expires", (json_int_t) expires, "interval", DEVICE_INTERVAL_SEC);
        code_rec = json_pack("{s:s, s:s, s:I}", "deviceKey", key, "publisherId", w->publisher_id, "expires",
                             (json_int_t) expires);
        if (!rec || !code_rec)
                return -ENOMEM;
        r = device_put(t, key, rec);
        if (r < 0)
                return r;
        return device_user_code_put(t, code_key, code_rec);
}

static void start_done(Call *call, int r, void *userdata) {
        StartWork *w = userdata;
        _cleanup_free_ char *complete = NULL;
        char shown[DEVICE_USER_CODE_LEN + 2];

        if (r == -ENOTUNIQ) {
                (void) call_fail(call, IDM_ERR_UNAVAILABLE, IDM_REASON_UNAVAILABLE, NULL,
                                 "no free user code: too many device logins under way");
                return;
        }
        if (r < 0)
                return;
        /* XXXX-XXXX, as RFC 8628 section 6.1 suggests for reading it out. */
        memcpy(shown, w->user_code, 4);
        shown[4] = '-';
        memcpy(shown + 5, w->user_code + 4, DEVICE_USER_CODE_LEN - 4 + 1);
        r = url_add_query(w->uri, "user_code", shown, &complete);
        if (r < 0) {
                (void) call_reply_failure(call, r);
                return;
        }
        log_info("%s: device login started for publisher %s%s%s%s", call_request_id(call), w->publisher_id,
                 w->device_name ? " (device '" : "", strempty(w->device_name), w->device_name ? "')" : "");
        (void) call_reply(call, json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "deviceCode", w->device_code,
                                          "userCode", shown, "verificationUri", w->uri, "verificationUriComplete",
                                          complete, "expiresIn", DEVICE_TTL_SEC, "interval", DEVICE_INTERVAL_SEC));
        explicit_bzero(shown, sizeof(shown));
}

static int method_device_start(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *publisher = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        const char *name = json_object_get_string(params, "deviceName");
        const char *uri;
        StartWork *w;
        int r;

        if (name && !text_is_valid(name, DEVICE_NAME_MAX))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "deviceName"),
                                 "deviceName must be 1 to 64 bytes of printable text");
        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        r = publisher_get(t, publisher_id, &publisher);
        if (r < 0)
                return r;
        t = store_txn_free(t);
        uri = json_object_get_string(publisher, "deviceVerificationUrl");
        if (!uri)
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_DEVICE_LOGIN_DISABLED, NULL,
                                 "the publisher has no deviceVerificationUrl: device login is off");

        w = calloc(1, sizeof(StartWork));
        if (!w)
                return -ENOMEM;
        *w = (StartWork) {
                .publisher_id = TAKE_PTR(publisher_id),
                .device_name = name ? strdup(name) : NULL,
                .uri = strdup(uri),
                .now_usec = now_realtime_usec(),
        };
        r = token_random(DEVICE_CODE_BYTES, &w->device_code);
        if (r < 0 || (name && !w->device_name) || !w->uri) {
                start_work_free(w);
                return r < 0 ? r : -ENOMEM;
        }
        return call_write(call, start_write, start_done, w, start_work_free);
}

/* --- approveDeviceLogin, denyDeviceLogin --- */

typedef enum Decision {
        DECISION_UNKNOWN,       /* no such user code (or another publisher's, or decided already) */
        DECISION_EXPIRED,
        DECISION_DONE,
} Decision;

typedef struct DecideWork {
        bool approve;
        char *publisher_id;
        char *customer_id;
        char user_code[DEVICE_USER_CODE_LEN + 1];
        uint64_t now_usec;

        Decision decision;
        char *device_name;
} DecideWork;

static void decide_work_free(void *p) {
        DecideWork *w = p;

        free(w->publisher_id);
        free(w->customer_id);
        free(w->device_name);
        explicit_bzero(w->user_code, sizeof(w->user_code));
        free(w);
}

static int decide_write(StoreTxn *t, void *userdata) {
        DecideWork *w = userdata;
        _cleanup_(json_decrefp) json_t *code_rec = NULL, *rec = NULL;
        _cleanup_free_ char *code_key = NULL;
        const char *key;
        int r;

        w->decision = DECISION_UNKNOWN;
        free(w->device_name);
        w->device_name = NULL;
        r = device_user_code_key(w->user_code, &code_key);
        if (r < 0)
                return r;
        r = device_user_code_get(t, code_key, &code_rec);
        if (r == -ENOENT || r == -EPROTO)
                return 0;
        if (r < 0)
                return r;
        key = json_object_get_string(code_rec, "deviceKey");
        /* Another publisher's login is as unknown as none: its customers cannot approve it. */
        if (!key || !streq_ptr(json_object_get_string(code_rec, "publisherId"), w->publisher_id))
                return 0;
        r = device_get(t, key, &rec);
        if (r == -ENOENT || r == -EPROTO || r == -EINVAL)
                return 0;
        if (r < 0)
                return r;
        if (!streq_ptr(json_object_get_string(rec, "state"), "pending") ||
            !streq_ptr(json_object_get_string(rec, "publisherId"), w->publisher_id))
                return 0;
        if (record_u64(rec, "expires") <= w->now_usec) {
                w->decision = DECISION_EXPIRED;
                return 0;
        }

        if (json_object_set_new(rec, "state", json_string(w->approve ? "approved" : "denied")) < 0 ||
            json_object_set_new(rec, "customerId", json_string(w->customer_id)) < 0)
                return -ENOMEM;
        r = device_put(t, key, rec);
        if (r < 0)
                return r;
        /* A user code is used once. */
        r = device_user_code_del(t, code_key);
        if (r < 0)
                return r;
        if (json_object_get_string(rec, "deviceName")) {
                w->device_name = strdup(json_object_get_string(rec, "deviceName"));
                if (!w->device_name)
                        return -ENOMEM;
        }
        w->decision = DECISION_DONE;
        return 0;
}

static void decide_done(Call *call, int r, void *userdata) {
        DecideWork *w = userdata;

        if (r < 0)
                return;
        switch (w->decision) {
        case DECISION_DONE:
                log_notice("%s: customer %s of publisher %s %s a device login%s%s%s", call_request_id(call),
                           w->customer_id, w->publisher_id, w->approve ? "approved" : "denied",
                           w->device_name ? " (device '" : "", strempty(w->device_name),
                           w->device_name ? "')" : "");
                (void) call_reply(call, json_pack("{s:s*}", "deviceName", w->device_name));
                return;
        case DECISION_EXPIRED:
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL,
                                 "the device login has expired");
                return;
        default:
                log_info("%s: a device login user code that is not pending was given for publisher %s",
                         call_request_id(call), w->publisher_id);
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND,
                                 json_pack("{s:s}", "field", "userCode"),
                                 "no pending device login with this user code");
                return;
        }
}

/* The admin form: the customer named by publisherId and customerEmail or customerId. */
static int decide_admin_customer(Call *call, json_t *params, char **ret_publisher_id, char **ret_customer_id) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        const char *publisher_id = json_object_get_string(params, "publisherId");
        const char *email = json_object_get_string(params, "customerEmail");
        const char *customer_id = json_object_get_string(params, "customerId");
        char *p, *c;
        int r;

        if (call_role(call) != ROLE_ADMIN)
                return call_fail_param(call, "jwt", "missing parameter 'jwt' (only administrators name a customer)");
        if (!publisher_id)
                return call_fail_param(call, "publisherId", "the admin form needs 'publisherId'");
        if (!email == !customer_id)
                return call_fail_param(call, email ? "customerId" : "customerEmail",
                                       "give exactly one of customerEmail and customerId");
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        if (email)
                r = customer_find_by_email(t, publisher_id, email, &customer);
        else
                r = customer_get(t, customer_id, &customer);
        if (r == -ENOENT ||
            (r >= 0 && !streq_ptr(json_object_get_string(customer, "publisherId"), publisher_id)))
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND,
                                 json_pack("{s:s}", "field", email ? "customerEmail" : "customerId"),
                                 "no such customer of this publisher");
        if (r < 0)
                return r;
        if (json_is_true(json_object_get(customer, "disabled")))
                return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_ACCOUNT_DISABLED, NULL,
                                 "the account is disabled");
        p = strdup(publisher_id);
        c = strdup(json_object_get_string(customer, "customerId"));
        if (!p || !c) {
                free(p);
                free(c);
                return -ENOMEM;
        }
        *ret_publisher_id = p;
        *ret_customer_id = c;
        return 0;
}

static int device_decide(Call *call, json_t *params, bool approve) {
        _cleanup_free_ char *publisher_id = NULL, *customer_id = NULL;
        DecideWork *w;
        char code[DEVICE_USER_CODE_LEN + 1];
        int r;

        /* Checked before any credential or record: a malformed code names nothing. The call took
         * its token of the login class already (rpc.c), right or wrong. */
        if (!device_user_code_normalise(json_object_get_string(params, "userCode"), code))
                return call_fail_param(call, "userCode",
                                       "userCode is 8 letters of BCDFGHJKLMNPQRSTVWXZ (XXXX-XXXX)");
        if (json_object_get(params, "jwt")) {
                static const char *const admin_only[] = { "publisherId", "customerEmail", "customerId" };

                for (size_t i = 0; i < ELEMENTSOF(admin_only); i++)
                        if (json_object_get(params, admin_only[i]))
                                return call_fail_param(call, admin_only[i],
                                                       "with 'jwt' the customer is the token's: name no other");
                r = auth_customer(call, params, false);
                if (r < 0)
                        return r;
                publisher_id = strdup(strempty(call_publisher_id(call)));
                customer_id = strdup(strempty(call_customer_id(call)));
                if (!publisher_id || !customer_id)
                        return -ENOMEM;
        } else {
                r = decide_admin_customer(call, params, &publisher_id, &customer_id);
                if (r < 0)
                        return r;
        }

        w = calloc(1, sizeof(DecideWork));
        if (!w)
                return -ENOMEM;
        *w = (DecideWork) {
                .approve = approve,
                .publisher_id = TAKE_PTR(publisher_id),
                .customer_id = TAKE_PTR(customer_id),
                .now_usec = now_realtime_usec(),
        };
        memcpy(w->user_code, code, sizeof(code));
        explicit_bzero(code, sizeof(code));
        return call_write(call, decide_write, decide_done, w, decide_work_free);
}

static int method_device_approve(Call *call, json_t *params) {
        return device_decide(call, params, true);
}

static int method_device_deny(Call *call, json_t *params) {
        return device_decide(call, params, false);
}

/* --- pollDeviceLogin --- */

typedef enum PollOutcome {
        POLL_UNKNOWN,           /* no such device code, or its tokens were handed out */
        POLL_EXPIRED,
        POLL_PENDING,
        POLL_SLOW_DOWN,
        POLL_DENIED,            /* or the approving customer is gone or disabled */
        POLL_APPROVED,
} PollOutcome;

typedef struct PollWork {
        char *device_code;
        SessionContext ctx;

        PollOutcome outcome;
        json_int_t interval;
        char *customer_id;
        char *publisher_id;
        SessionTokens tokens;
} PollWork;

static void poll_work_free(void *p) {
        PollWork *w = p;

        erase_and_free(w->device_code);
        free(w->customer_id);
        free(w->publisher_id);
        session_tokens_done(&w->tokens);
        free(w);
}

/* Approved: the session, once; both records go with it. */
static int poll_approved(StoreTxn *t, PollWork *w, const char *key, json_t *rec) {
        _cleanup_(json_decrefp) json_t *customer = NULL;
        const char *customer_id = json_object_get_string(rec, "customerId");
        const char *publisher_id = json_object_get_string(rec, "publisherId");
        int r;

        r = device_del(t, key);
        if (r < 0)
                return r;
        r = customer_id ? customer_get(t, customer_id, &customer) : -ENOENT;
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == -ENOENT || json_is_true(json_object_get(customer, "disabled")) ||
            !streq_ptr(json_object_get_string(customer, "publisherId"), publisher_id)) {
                w->outcome = POLL_DENIED;
                return 0;
        }
        w->customer_id = strdup(customer_id);
        w->publisher_id = strdup(publisher_id);
        if (!w->customer_id || !w->publisher_id)
                return -ENOMEM;
        r = session_start(t, &w->ctx, customer_id, publisher_id, &w->tokens);
        if (r < 0)
                return r;
        w->outcome = POLL_APPROVED;
        return 0;
}

static int poll_write(StoreTxn *t, void *userdata) {
        PollWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *key = NULL;
        const char *state;
        uint64_t interval, last;
        int r;

        w->outcome = POLL_UNKNOWN;
        free(w->customer_id);
        w->customer_id = NULL;
        free(w->publisher_id);
        w->publisher_id = NULL;
        session_tokens_done(&w->tokens);        /* run again after the store grew */

        r = device_key(w->device_code, &key);
        if (r < 0)
                return r;
        r = device_get(t, key, &rec);
        if (r == -ENOENT || r == -EPROTO)
                return 0;
        if (r < 0)
                return r;
        if (record_u64(rec, "expires") <= w->ctx.now_usec) {
                w->outcome = POLL_EXPIRED;
                return 0;
        }
        state = strempty(json_object_get_string(rec, "state"));
        if (streq(state, "approved"))
                return poll_approved(t, w, key, rec);
        if (streq(state, "denied")) {
                w->outcome = POLL_DENIED;
                return 0;
        }

        /* Pending: polled sooner than the interval after the last poll, the interval grows. */
        interval = record_u64(rec, "interval") ?: DEVICE_INTERVAL_SEC;
        last = record_u64(rec, "lastPoll");
        w->outcome = POLL_PENDING;
        if (last > 0 && w->ctx.now_usec < last + interval * USEC_PER_SEC_U64) {
                w->outcome = POLL_SLOW_DOWN;
                interval += DEVICE_SLOW_DOWN_SEC;
                if (interval > DEVICE_INTERVAL_MAX_SEC)
                        interval = DEVICE_INTERVAL_MAX_SEC;
        }
        w->interval = (json_int_t) interval;
        if (json_object_set_new(rec, "interval", json_integer((json_int_t) interval)) < 0 ||
            json_object_set_new(rec, "lastPoll", json_integer((json_int_t) w->ctx.now_usec)) < 0)
                return -ENOMEM;
        return device_put(t, key, rec);
}

static void poll_done(Call *call, int r, void *userdata) {
        PollWork *w = userdata;

        if (r < 0)
                return;
        switch (w->outcome) {
        case POLL_APPROVED:
                log_event(LOG_LEVEL_INFO, IDM_MESSAGE_LOGIN_SUCCEEDED, w->publisher_id, w->customer_id, NULL,
                          "%s: device login of customer %s of publisher %s completed", call_request_id(call),
                          w->customer_id, w->publisher_id);
                (void) call_reply(call, json_pack("{s:s, s:s, s:s, s:s, s:s}", "customerId", w->customer_id,
                                                  "publisherId", w->publisher_id, "jwt", w->tokens.jwt,
                                                  "refreshToken", w->tokens.refresh_token, "customerToken",
                                                  w->tokens.customer_token));
                return;
        case POLL_PENDING:
                (void) call_fail(call, IDM_ERR_PENDING, IDM_REASON_AUTHORIZATION_PENDING,
                                 json_pack("{s:I}", "interval", w->interval), "the login is not approved yet");
                return;
        case POLL_SLOW_DOWN:
                (void) call_fail(call, IDM_ERR_PENDING, IDM_REASON_SLOW_DOWN,
                                 json_pack("{s:I}", "interval", w->interval),
                                 "polled too soon: wait %lld seconds between polls", (long long) w->interval);
                return;
        case POLL_DENIED:
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_ACCESS_DENIED, NULL,
                                 "the device login was denied");
                return;
        case POLL_EXPIRED:
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL,
                                 "the device login has expired");
                return;
        default:
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL,
                                 "invalid device code (unknown, expired, or its tokens were handed out)");
                return;
        }
}

static int method_device_poll(Call *call, json_t *params) {
        PollWork *w = calloc(1, sizeof(PollWork));

        if (!w)
                return -ENOMEM;
        w->ctx = call_session_context(call);
        w->device_code = strdup(json_object_get_string(params, "deviceCode"));
        if (!w->device_code) {
                free(w);
                return -ENOMEM;
        }
        return call_write(call, poll_write, poll_done, w, poll_work_free);
}

#define DECIDE_PARAMS                                                                           \
        { "jwt", PARAM_STRING, false, IDM_JWT_MAX },                                            \
        PARAM_ID("publisherId", false, IDM_PUBLISHER_ID_MAX),                                   \
        { "customerEmail", PARAM_STRING, false, IDM_EMAIL_MAX },                                \
        PARAM_ID("customerId", false, IDM_CUSTOMER_ID_MAX),                                     \
        PARAM_ID("userCode", true, USER_CODE_PARAM_MAX)

const Method methods_device[] = {
        { .name = "startDeviceLogin", .handler = method_device_start, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) {
                  PUBLISHER_NAMING_PARAMS,
                  { "deviceName", PARAM_STRING, false, DEVICE_NAME_MAX },
                  {} } },
        { .name = "pollDeviceLogin", .handler = method_device_poll, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) { PARAM_ID("deviceCode", true, IDM_OPAQUE_TOKEN_MAX), {} } },
        { .name = "approveDeviceLogin", .handler = method_device_approve, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) { DECIDE_PARAMS, {} } },
        { .name = "denyDeviceLogin", .handler = method_device_deny, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) { DECIDE_PARAMS, {} } },
        {}
};
