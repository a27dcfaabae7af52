/* SPDX-License-Identifier: MIT */
/*
 * Forgot password: requestPasswordReset (anyone) mails a reset link, a code, or both, and
 * updatePassword (anyone holding the link's token or the code) sets a new password.
 *
 * Nothing here tells whether an address has an account. requestPasswordReset always answers {}
 * after the same unit of work: it counts the request for the address (records/resets.h: at most
 * [reset] max_per_hour requests an hour per address, account or not) and replaces the address's
 * pending reset, with fresh hashes whether or not anyone will get the secrets; only when an
 * account has the address does it also queue the mail, in the same unit of work. Every
 * updatePassword hashes the new password first and then settles the token or code in one unit
 * of work, so a wrong token costs what a right one does; a wrong one is counted for the address
 * and [reset] code_tries of them void the pending reset. One answer, 401 invalid_token, for a
 * token or code that is wrong, used, voided or expired, and for an unknown address; admin peers
 * are told which.
 *
 * Tokens: the link's is 256 bits (base64url), the code 8 digits; only token_hash() of each is
 * stored. A newer request replaces the pending reset, so an older link stops working. A success
 * sets the password, ends every session of the customer, clears its lockout and deletes the
 * pending reset.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "lockout.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/customers.h"
#include "methods/lockouts.h"
#include "methods/methods.h"
#include "outbox.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/resets.h"
#include "tokens.h"
#include "url.h"
#include "validate.h"

#define RESET_TOKEN_BYTES 32
#define RESET_CODE_DIGITS 8
#define RESET_URL_MAX 2048
#define HOUR_USEC (UINT64_C(3600) * 1000000)
#define MAIL_KIND "password-reset"

static uint64_t record_u64(json_t *rec, const char *field) {
        json_t *v = json_object_get(rec, field);

        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
}

/* The address's record, with the requests older than an hour dropped; a new one if none. */
static int record_load(StoreTxn *t, const char *key, uint64_t now, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL, *recent = json_array();
        size_t i;
        json_t *v;
        int r;

        if (!recent)
                return -ENOMEM;
        r = reset_get(t, key, &rec);
        if (r == -ENOENT || r == -EPROTO)
                rec = json_pack("{s:[], s:i}", "sent", "tries", 0);
        else if (r < 0)
                return r;
        if (!rec)
                return -ENOMEM;
        json_array_foreach(json_object_get(rec, "sent"), i, v)
                if (json_is_integer(v) && (uint64_t) json_integer_value(v) + HOUR_USEC > now &&
                    json_array_append(recent, v) < 0)
                        return -ENOMEM;
        if (json_object_set(rec, "sent", recent) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(rec);
        return 0;
}

/* Ends the pending reset in the record (used, voided or expired); the count of requests stays. */
static void record_end_reset(json_t *rec) {
        static const char *const fields[] = { "tokenHash", "codeHash", "customerId", "created", "resetExpires" };

        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                (void) json_object_del(rec, fields[i]);
}

/* Writes the record back, kept for as long as it matters: an hour after its last request, or
 * while its pending reset may still be used. */
static int record_save(StoreTxn *t, const char *key, json_t *rec, uint64_t now) {
        uint64_t expires = now + HOUR_USEC, reset = record_u64(rec, "resetExpires");

        if (reset > expires)
                expires = reset;
        if (json_object_set_new(rec, "expires", json_integer((json_int_t) expires)) < 0)
                return -ENOMEM;
        return reset_put(t, key, rec);
}

/* --- requestPasswordReset --- */

typedef struct RequestWork {
        Manager *manager;
        char *publisher_id;
        char *publisher_name;
        char *email;
        char *key;              /* the address's record; NULL: an address no account can have */
        char *link_base;        /* NULL: no link (resetMode code) */
        char *token;            /* drawn before the unit of work, which may run twice */
        char *code;
        uint64_t now_usec;
        uint64_t ttl_usec;
        unsigned max_per_hour;

        bool capped;
        char *customer_id;      /* the account the mail is for */
        int mail_error;         /* the outbox refused the mail (< 0) */
} RequestWork;

static void request_work_free(void *p) {
        RequestWork *w = p;

        free(w->publisher_id);
        free(w->publisher_name);
        free(w->email);
        free(w->key);
        free(w->link_base);
        erase_and_free(w->token);
        erase_and_free(w->code);
        free(w->customer_id);
        free(w);
}

/* The mail to an account, with the link and the code. */
static int request_queue_mail(StoreTxn *t, RequestWork *w, json_t *customer) {
        _cleanup_(json_decrefp) json_t *vars = NULL;
        _cleanup_free_ char *link = NULL;
        int r;

        vars = json_pack("{s:s, s:s, s:I}", "email", json_object_get_string(customer, "email"),
                         "publisherName", w->publisher_name, "expiresMinutes",
                         (json_int_t) ((w->ttl_usec + 59999999) / 60000000));
        if (!vars)
                return -ENOMEM;
        if (w->token) {
                r = url_add_query(w->link_base, "resetPasswordToken", w->token, &link);
                if (r < 0)
                        return r;
                if (json_object_set_new(vars, "link", json_string(link)) < 0)
                        return -ENOMEM;
        }
        if (w->code && json_object_set_new(vars, "code", json_string(w->code)) < 0)
                return -ENOMEM;
        return outbox_queue(t, MAIL_KIND, w->publisher_id, json_object_get_string(customer, "locale"),
                            json_object_get_string(customer, "email"), vars);
}

/* One unit of work, the same writes for every address that is not capped: the request is
 * counted, a new pending reset replaces the old one (its hashes drawn whether or not anyone will
 * get them), and only for an account (not disabled) the mail is queued with it. */
static int request_write(StoreTxn *t, void *userdata) {
        RequestWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL, *customer = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        bool mail;
        int r;

        w->capped = false;
        w->mail_error = 0;
        free(w->customer_id);
        w->customer_id = NULL;
        if (!w->key)
                return 0;       /* no account can have the address: nothing to count or send */

        r = record_load(t, w->key, w->now_usec, &rec);
        if (r < 0)
                return r;
        if (json_array_size(json_object_get(rec, "sent")) >= w->max_per_hour) {
                w->capped = true;
                return 0;
        }
        r = customer_find_by_email(t, w->publisher_id, w->email, &customer);
        if (r < 0 && r != -ENOENT)
                return r;
        mail = r >= 0 && !json_is_true(json_object_get(customer, "disabled"));

        record_end_reset(rec);
        if (json_array_append_new(json_object_get(rec, "sent"), json_integer((json_int_t) w->now_usec)) < 0 ||
            json_object_set_new(rec, "tries", json_integer(0)) < 0 ||
            json_object_set_new(rec, "created", json_integer((json_int_t) w->now_usec)) < 0 ||
            json_object_set_new(rec, "resetExpires", json_integer((json_int_t) (w->now_usec + w->ttl_usec))) < 0)
                return -ENOMEM;
        if (w->token) {
                token_hash(w->token, hash);
                if (json_object_set_new(rec, "tokenHash", json_string(hash)) < 0)
                        return -ENOMEM;
        }
        if (w->code) {
                token_hash(w->code, hash);
                if (json_object_set_new(rec, "codeHash", json_string(hash)) < 0)
                        return -ENOMEM;
        }
        if (mail && json_object_set(rec, "customerId", json_object_get(customer, "customerId")) < 0)
                return -ENOMEM;
        r = record_save(t, w->key, rec, w->now_usec);
        if (r < 0 || !mail)
                return r;

        w->customer_id = strdup(json_object_get_string(customer, "customerId"));
        if (!w->customer_id)
                return -ENOMEM;
        r = request_queue_mail(t, w, customer);
        if (r == -ENOSPC || r == -EINVAL || r == -EMSGSIZE || r == -ENOMSG) {
                /* The outbox refused before writing anything: the request is still answered {}
                 * (a 503 for accounts only would tell them apart), and the log says why. */
                w->mail_error = r;
                return 0;
        }
        return r;
}

static void request_done(Call *call, int r, void *userdata) {
        RequestWork *w = userdata;

        if (r < 0)
                return;
        if (w->capped)
                log_notice("%s: password reset for publisher %s: an address asked more than %u times this hour, "
                           "no mail", call_request_id(call), w->publisher_id, w->max_per_hour);
        else if (w->customer_id && w->mail_error < 0)
                log_warning_errno(w->mail_error, "%s: password reset for customer %s of publisher %s: the outbox "
                                  "refused the mail, none sent: %m", call_request_id(call), w->customer_id,
                                  w->publisher_id);
        else if (w->customer_id) {
                log_info("%s: password reset mail queued for customer %s of publisher %s (%s)", call_request_id(call),
                         w->customer_id, w->publisher_id,
                         w->token && w->code ? "link and code" : w->token ? "link" : "code");
                outbox_kick(w->manager);
        }
        (void) call_reply_empty(call);
}

/* Whether url may receive the link: one of the publisher's allowedRedirectUris or its resetUrl,
 * exactly. */
static bool reset_url_allowed(json_t *publisher, const char *url) {
        size_t i;
        json_t *v;

        if (streq_ptr(json_object_get_string(publisher, "resetUrl"), url))
                return true;
        json_array_foreach(json_object_get(publisher, "allowedRedirectUris"), i, v)
                if (streq_ptr(json_string_value(v), url))
                        return true;
        return false;
}

static int method_reset_request(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *publisher = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        const char *email = json_object_get_string(params, "customerEmail");
        const char *given_url = json_object_get_string(params, "resetUrl");
        const char *mode, *base;
        RequestWork *w;
        int r;

        if (!email_is_valid(email))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_EMAIL,
                                 json_pack("{s:s}", "field", "customerEmail"), "customerEmail is not a valid address");
        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        r = publisher_get(t, publisher_id, &publisher);
        if (r < 0)
                return r;
        t = store_txn_free(t);

        /* Where the link goes: never a host taken from the request, only the publisher's own. */
        if (given_url && !reset_url_allowed(publisher, given_url))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_RESET_URL,
                                 json_pack("{s:s}", "field", "resetUrl"),
                                 "resetUrl is not one of the publisher's allowed URLs");
        mode = json_object_get_string(publisher, "resetMode") ?: "link";
        base = streq(mode, "code") ? NULL : given_url ?: json_object_get_string(publisher, "resetUrl");
        if (streq(mode, "link") && !base && !json_is_true(json_object_get(params, "useCode")))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_RESET_URL,
                                 json_pack("{s:s}", "field", "resetUrl"),
                                 "the publisher has no reset URL: give resetUrl, or set the publisher's resetUrl");

        w = calloc(1, sizeof(RequestWork));
        if (!w)
                return -ENOMEM;
        *w = (RequestWork) {
                .manager = m,
                .publisher_id = TAKE_PTR(publisher_id),
                .publisher_name = strdup(strempty(json_object_get_string(publisher, "name"))),
                .email = strdup(email),
                .link_base = base ? strdup(base) : NULL,
                .now_usec = now_realtime_usec(),
                .ttl_usec = m->config->reset_token_ttl_usec,
                .max_per_hour = m->config->reset_max_per_hour,
        };
        r = reset_key(w->publisher_id, email, &w->key);
        if (r == -E2BIG)
                r = 0;
        if (r >= 0 && base)
                r = token_random(RESET_TOKEN_BYTES, &w->token);
        /* A code too when the publisher sends codes, or the caller asks for one (pam_idm's
         * reset=code on a kiosk, where no link can be followed). */
        if (r >= 0 && (!streq(mode, "link") || json_is_true(json_object_get(params, "useCode"))))
                r = token_random_digits(RESET_CODE_DIGITS, &w->code);
        if (r < 0 || !w->publisher_name || !w->email || (base && !w->link_base)) {
                request_work_free(w);
                return r < 0 ? r : -ENOMEM;
        }
        return call_write(call, request_write, request_done, w, request_work_free);
}

/* --- updatePassword --- */

typedef enum Outcome {
        OUTCOME_REFUSED,        /* no account, no pending reset, or a wrong token or code */
        OUTCOME_EXPIRED,
        OUTCOME_VOIDED,         /* a wrong one that used up the tries */
        OUTCOME_DISABLED,
        OUTCOME_SET,
} Outcome;

typedef struct UpdateWork {
        char *publisher_id;
        char *email;            /* as given, or NULL */
        char *customer_id;      /* as given, or NULL; the account's after a success */
        char *secret;           /* the token or the code */
        bool is_code;
        SessionContext ctx;
        unsigned tries;

        Outcome outcome;
        int revoked;
} UpdateWork;

static void update_work_free(void *p) {
        UpdateWork *w = p;

        free(w->publisher_id);
        free(w->email);
        free(w->customer_id);
        erase_and_free(w->secret);
        free(w);
}

/* The account the params name, within the publisher: NULL (and 0) when there is none. */
static int update_find(StoreTxn *t, UpdateWork *w, json_t **ret) {
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        *ret = NULL;
        if (w->email)
                r = customer_find_by_email(t, w->publisher_id, w->email, &customer);
        else
                r = customer_get(t, w->customer_id, &customer);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (!streq_ptr(json_object_get_string(customer, "publisherId"), w->publisher_id))
                return 0;       /* another publisher's: as unknown */
        *ret = TAKE_PTR(customer);
        return 0;
}

/* Whether the pending reset accepts the secret: 1 yes, 0 no, -ETIME expired. */
static int update_check(UpdateWork *w, json_t *rec) {
        const char *stored = json_object_get_string(rec, w->is_code ? "codeHash" : "tokenHash");
        char hash[TOKEN_HASH_STRLEN + 1];

        if (!stored || strlen(stored) != TOKEN_HASH_STRLEN)
                return 0;
        token_hash(w->secret, hash);
        if (!token_equal(hash, stored, TOKEN_HASH_STRLEN))
                return 0;
        if (record_u64(rec, "resetExpires") <= w->ctx.now_usec)
                return -ETIME;
        return 1;
}

/* One unit of work after the new password was hashed, whatever the token: the address's record
 * is read and written back either way (a wrong one counted, the last allowed try voiding the
 * pending reset; a right one ending it), and only a right one for the account it was mailed to
 * sets the password, ends the sessions and clears the lockout. */
static int update_write(StoreTxn *t, const char *new_hash, void *userdata) {
        UpdateWork *w = userdata;
        _cleanup_(json_decrefp) json_t *customer = NULL, *rec = NULL;
        _cleanup_free_ char *key = NULL, *lock = NULL;
        const char *id, *email;
        int r, ok;

        w->outcome = OUTCOME_REFUSED;
        w->revoked = 0;
        r = update_find(t, w, &customer);
        if (r < 0)
                return r;
        id = json_object_get_string(customer, "customerId");
        email = customer ? json_object_get_string(customer, "email") : w->email;
        if (!email)
                return 0;       /* an unknown customerId: no address to count for */
        r = reset_key(w->publisher_id, email, &key);
        if (r == -E2BIG)
                return 0;
        if (r < 0)
                return r;
        r = record_load(t, key, w->ctx.now_usec, &rec);
        if (r < 0)
                return r;

        ok = update_check(w, rec);
        /* The reset was mailed to this very account (not one deleted and registered again). */
        if (ok > 0 && (!id || !streq_ptr(json_object_get_string(rec, "customerId"), id)))
                ok = 0;
        if (ok == -ETIME) {
                w->outcome = OUTCOME_EXPIRED;
                record_end_reset(rec);
        } else if (ok == 0) {
                int64_t tries = json_integer_value(json_object_get(rec, "tries")) + 1;

                if (tries >= (int64_t) w->tries) {
                        if (json_object_get(rec, "customerId"))
                                w->outcome = OUTCOME_VOIDED;
                        record_end_reset(rec);
                        tries = 0;
                }
                if (json_object_set_new(rec, "tries", json_integer(tries)) < 0)
                        return -ENOMEM;
        } else {
                r = customers_set_password(t, &w->ctx, id, json_object_get_string(customer, "passwordHash"), new_hash,
                                           NULL);
                if (r == -EPERM) {
                        w->outcome = OUTCOME_DISABLED;
                        return 0;
                }
                if (r < 0)
                        return r;
                w->revoked = r;
                /* The lockout and the count of wrong tries start afresh. */
                r = lockout_key(w->publisher_id, email, &lock);
                if (r >= 0)
                        r = lockouts_clear(t, lock);
                if (r < 0 && r != -E2BIG)
                        return r;
                record_end_reset(rec);
                if (json_object_set_new(rec, "tries", json_integer(0)) < 0)
                        return -ENOMEM;
                free(w->customer_id);
                w->customer_id = strdup(id);
                if (!w->customer_id)
                        return -ENOMEM;
                w->outcome = OUTCOME_SET;
        }
        return record_save(t, key, rec, w->ctx.now_usec);
}

static void update_done(Call *call, int r, void *userdata) {
        UpdateWork *w = userdata;
        static const char *const details[] = {
                [OUTCOME_REFUSED] = "no pending reset with this token or code for this customer",
                [OUTCOME_EXPIRED] = "the reset has expired",
                [OUTCOME_VOIDED] = "too many wrong tries: the reset is void",
        };

        if (r < 0)
                return;
        switch (w->outcome) {
        case OUTCOME_SET:
                log_event(LOG_LEVEL_NOTICE, IDM_MESSAGE_PASSWORD_CHANGED, w->publisher_id, w->customer_id, NULL,
                          "%s: customer %s of publisher %s set a new password through a reset %s; %d session(s) ended",
                          call_request_id(call), w->customer_id, w->publisher_id, w->is_code ? "code" : "link",
                          w->revoked);
                (void) call_reply_empty(call);
                return;
        case OUTCOME_DISABLED:
                (void) call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_ACCOUNT_DISABLED, NULL, "the account is disabled");
                return;
        default:
                log_info("%s: password reset refused for publisher %s: %s", call_request_id(call), w->publisher_id,
                         details[w->outcome]);
                if (call_role(call) == ROLE_ADMIN)
                        (void) call_fail(call, IDM_ERR_UNAUTHORIZED,
                                         w->outcome == OUTCOME_EXPIRED ? IDM_REASON_TOKEN_EXPIRED :
                                                                         IDM_REASON_INVALID_TOKEN,
                                         NULL, "%s", details[w->outcome]);
                else
                        (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL,
                                         "invalid or expired reset token or code");
        }
}

static int method_reset_update(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        const char *email = json_object_get_string(params, "customerEmail");
        const char *customer_id = json_object_get_string(params, "customerId");
        const char *token = json_object_get_string(params, "resetPasswordToken");
        const char *code = json_object_get_string(params, "resetCode");
        UpdateWork *w;
        int r;

        if (!email == !customer_id)
                return call_fail_param(call, email ? "customerId" : "customerEmail",
                                       "give exactly one of customerEmail and customerId");
        if (!token == !code)
                return call_fail_param(call, token ? "resetCode" : "resetPasswordToken",
                                       "give exactly one of resetPasswordToken and resetCode");
        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        t = store_txn_free(t);
        r = customers_check_new_password(call, json_object_get_string(params, "newPassword"));
        if (r < 0)
                return r;

        w = calloc(1, sizeof(UpdateWork));
        if (!w)
                return -ENOMEM;
        *w = (UpdateWork) {
                .publisher_id = TAKE_PTR(publisher_id),
                .email = email ? strdup(email) : NULL,
                .customer_id = customer_id ? strdup(customer_id) : NULL,
                .secret = strdup(token ?: code),
                .is_code = !!code,
                .ctx = call_session_context(call),
                .tries = call_manager(call)->config->reset_code_tries,
        };
        if ((email && !w->email) || (customer_id && !w->customer_id) || !w->secret) {
                update_work_free(w);
                return -ENOMEM;
        }
        /* The new password is hashed whatever the token: a wrong token costs what a right one does. */
        return customers_hash_then_write(call, json_object_get_string(params, "newPassword"), update_write,
                                         update_done, w, update_work_free);
}

const Method methods_reset[] = {
        { .name = IDM_METHOD_REQUEST_PASSWORD_RESET, .handler = method_reset_request, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_PASSWORD_RESET, .publisher_optional = true,
          .params = (const ParamSpec[]) {
                  PUBLISHER_NAMING_PARAMS,
                  { "publisherToken", PARAM_STRING, false, IDM_PUBLISHER_TOKEN_MAX },
                  { "sessionID", PARAM_STRING, false, IDM_SESSION_ID_MAX },
                  { "customerEmail", PARAM_STRING, true, IDM_EMAIL_MAX },
                  { "resetUrl", PARAM_STRING, false, RESET_URL_MAX },
                  { "useCode", PARAM_BOOLEAN, false },
                  {} } },
        { .name = IDM_METHOD_UPDATE_PASSWORD, .handler = method_reset_update, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_PASSWORD_RESET,
          .params = (const ParamSpec[]) {
                  PUBLISHER_NAMING_PARAMS,
                  { "customerEmail", PARAM_STRING, false, IDM_EMAIL_MAX },
                  PARAM_ID("customerId", false, IDM_CUSTOMER_ID_MAX),
                  { "resetPasswordToken", PARAM_STRING, false, IDM_OPAQUE_TOKEN_MAX },
                  PARAM_ID("resetCode", false, 16),
                  { "newPassword", PARAM_STRING, true, IDM_PASSWORD_MAX },
                  {} } },
        {}
};
