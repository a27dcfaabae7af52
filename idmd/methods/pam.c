/* SPDX-License-Identifier: MIT */
/*
 * The PAM path (pam_idm <-> idmd; the wire contract is the comment in include/idm/protocol.h):
 * pamAuthenticate, pamAccount, pamAcceptConsents, pamChangePassword, pamCloseSession
 * (setCustomerDisabled, the switch pamAccount reports, is a customer administration method in
 * methods/customers.c).
 *
 * PAM runs its phases in different processes (sshd authenticates in a forked child) and pam_idm
 * keeps nothing between them, so what links the phases lives here: pamAuthenticate records a
 * "PAM session" for (publisher, user, peer uid). While that session lives, the peer uid may ask
 * pamAccount / pamAcceptConsents about that user (admin peers may always), and pamCloseSession
 * without a sessionId ends the session the peer uid opened last for the user.
 *
 * pamAuthenticate replies with the session id and sends the session's tokens only when asked
 * ("tokens": true): the PAM stack closes the session by its id, and tokens it never needed should
 * not pass through the memory of sshd or login.
 *
 * Records (sessions.c, docs/store.md), times in CLOCK_REALTIME usec:
 *   "pam:<publisherId>:<lower-cased e-mail>:<peer uid>"  {sessionId, customerId, created,
 *                                                         expires}
 * The session is a session family (sessions.h): sessionId is its id ("sid" in the JWT), and its
 * record "family:<sessionId>" ({customerId, publisherId, expires, revoked?}) says whether it is
 * still live. A PAM session record is replaced by the next pamAuthenticate of the same peer uid
 * and removed by pamCloseSession; one whose session is gone is ignored.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/capture.h"
#include "methods/consents.h"
#include "methods/customers.h"
#include "methods/lockouts.h"
#include "methods/methods.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/unixusers.h"
#include "passwords.h"
#include "sessions.h"

#define SESSION_ID_MAX IDM_SESSION_ID_MAX
#define USER_MAX IDM_EMAIL_MAX
#define PASSWORD_MAX_BYTES IDM_PASSWORD_MAX
#define CONTEXT_MAX 256
#define RHOST_MAX 1024
#define LOG_CONTEXT_MAX 64              /* bytes of each PAM context item shown in the log */

/* A copy of s safe for a log line: at most LOG_CONTEXT_MAX bytes, control characters as '?',
 * "-" for NULL. The PAM context comes from the client (rhost may come from a remote resolver). */
static const char *log_safe(const char *s, char buf[static LOG_CONTEXT_MAX + 1]) {
        size_t i;

        if (!s)
                return "-";
        for (i = 0; s[i] && i < LOG_CONTEXT_MAX; i++)
                buf[i] = ((unsigned char) s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
        buf[i] = 0;
        return buf;
}

/* The publisher named by params, in a short snapshot (customers_resolve_publisher()). */
static int pam_publisher(Call *call, json_t *params, char **ret) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;

        return customers_read_publisher(call, params, &t, ret);
}

/* May this peer ask about (publisher, user)? Admin peers may; another peer uid only while the
 * session it opened for the user with pamAuthenticate lives. Refuses (403 forbidden, 404
 * not_found to those allowed to know; call_fail()) when not; else *ret is the customer. */
static int pam_authorize(Call *call, StoreTxn *t, const char *publisher_id, const char *user, json_t **ret) {
        _cleanup_(json_decrefp) json_t *customer = NULL, *rec = NULL;
        _cleanup_free_ char *key = NULL;
        const char *customer_id;
        int r;

        r = customers_find_by_email(t, publisher_id, user, &customer);
        if (r < 0 && r != -ENOENT)
                return r;
        customer_id = json_object_get_string(customer, "customerId");

        if (call_role(call) != ROLE_ADMIN) {
                r = session_pam_key(publisher_id, user, call_peer(call)->uid, &key);
                if (r == -E2BIG)        /* no account has such a name */
                        r = -ENOENT;
                else if (r >= 0)
                        r = session_timed_get(t, SESSION_KIND_PAM, key, &rec);
                /* It authenticated the user, who was deleted since: it may know. */
                if (r >= 0 && !customer)
                        return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL,
                                                "no such customer");
                if (r >= 0) {
                        SessionContext ctx = { .now_usec = now_realtime_usec() };
                        r = streq_ptr(json_object_get_string(rec, "customerId"), customer_id) &&
                                session_check_live(t, &ctx, json_object_get_string(rec, "sessionId"),
                                                   customer_id) >= 0 ? 0 : -ENOENT;
                }
                if (r == -ENOENT)
                        return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                                "only an administrator or the peer that authenticated this user "
                                                "may ask");
                if (r < 0)
                        return r;
        }
        if (!customer)
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such customer");
        *ret = TAKE_PTR(customer);
        return 0;
}

/* --- pamAuthenticate --- */

/* Who opened which session, committed with the login itself (customers_login). */
static int pam_login_record(StoreTxn *t, Call *call, const CustomerLogin *l) {
        Manager *m = call_manager(call);
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *key = NULL;
        uint64_t now = now_realtime_usec();
        int r;

        r = session_pam_key(l->publisher_id, strempty(json_object_get_string(l->customer, "email")), call_peer(call)->uid,
                           &key);
        if (r < 0)
                return r;
        rec = json_pack("{s:s, s:s, s:I, s:I}", "sessionId", l->tokens->family, "customerId", l->customer_id,
                        "created", (json_int_t) now,
                        "expires", (json_int_t) (now + m->config->refresh_ttl_usec));
        if (!rec)
                return -ENOMEM;
        return session_timed_put(t, SESSION_KIND_PAM, key, rec);    /* with its entry in the expiry index */
}

/* By default the reply names the customer and the session and carries no token: the PAM stack
 * needs only the session id (for pamCloseSession), and whatever a client's JSON parser reads may
 * stay behind in freed memory of sshd or login. The tokens go out only when asked for ("tokens":
 * true, pam_idm's export_tokens); the session and its PAM record stay here either way. */
static int pam_login_reply_common(Call *call, const CustomerLogin *l, bool tokens) {
        log_info("%s: PAM session %s of customer %s opened (uid %u)%s", call_request_id(call), l->tokens->family,
                 l->customer_id, (unsigned) call_peer(call)->uid, tokens ? ", tokens sent" : "");
        if (!tokens)
                return call_reply(call, json_pack("{s:s, s:s, s:s}",
                                                  "customerId", l->customer_id,
                                                  "publisherId", l->publisher_id,
                                                  "sessionId", l->tokens->family));
        return call_reply(call, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
                                          "customerId", l->customer_id,
                                          "publisherId", l->publisher_id,
                                          "sessionId", l->tokens->family,
                                          "jwt", l->tokens->jwt,
                                          "refreshToken", l->tokens->refresh_token,
                                          "customerToken", l->tokens->customer_token));
}

static int pam_login_reply(Call *call, const CustomerLogin *l) {
        return pam_login_reply_common(call, l, false);
}

static int pam_login_reply_with_tokens(Call *call, const CustomerLogin *l) {
        return pam_login_reply_common(call, l, true);
}

static int method_pam_authenticate(Call *call, json_t *params) {
        _cleanup_free_ char *publisher_id = NULL;
        _cleanup_(json_decrefp) json_t *job_params = NULL;
        const char *rhost = json_object_get_string(params, "rhost");
        unsigned char addr[sizeof(struct in6_addr)];
        char b1[LOG_CONTEXT_MAX + 1], b2[LOG_CONTEXT_MAX + 1], b3[LOG_CONTEXT_MAX + 1], b4[LOG_CONTEXT_MAX + 1];
        CustomerLoginRequest req = {
                .email = json_object_get_string(params, "user"),
                .password = json_object_get_string(params, "password"),
                .lock_details = true,
                .also_record = pam_login_record,
        };
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        int r;

        r = customers_read_publisher_for_login(call, params, req.email, &t, &publisher_id);
        if (r < 0)
                return r;

        log_info("%s: PAM authentication for publisher %s: service '%s', rhost '%s', tty '%s', ruser '%s' (uid %u)",
                 call_request_id(call), publisher_id, log_safe(json_object_get_string(params, "service"), b1),
                 log_safe(rhost, b2), log_safe(json_object_get_string(params, "tty"), b3),
                 log_safe(json_object_get_string(params, "ruser"), b4), (unsigned) call_peer(call)->uid);

        /* The login job keeps its own params, without the password: a remote host given as an
         * address becomes the customer's lastUserIP, as customerIP does for `login`. */
        job_params = json_object();
        if (!job_params)
                return -ENOMEM;
        if (rhost && (inet_pton(AF_INET, rhost, addr) == 1 || inet_pton(AF_INET6, rhost, addr) == 1) &&
            json_object_set_new(job_params, "customerIP", json_string(rhost)) < 0)
                return -ENOMEM;

        req.params = job_params;
        req.publisher_id = publisher_id;
        req.snapshot = TAKE_PTR(t);
        return customers_login(call, &req,
                               json_is_true(json_object_get(params, "tokens")) ? pam_login_reply_with_tokens :
                                                                                 pam_login_reply);
}

/* --- pamAccount, pamAcceptConsents --- */

static int method_pam_account(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL, *outdated = NULL, *capture = NULL, *publisher = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        const char *customer_id;
        uint32_t uid;
        int r, n, q;

        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        r = pam_authorize(call, t, publisher_id, json_object_get_string(params, "user"), &customer);
        if (r < 0)
                return r;
        customer_id = json_object_get_string(customer, "customerId");
        r = consents_outdated_required(t, publisher_id, customer_id, &outdated);
        if (r < 0)
                return r;
        n = capture_missing_required(t, publisher_id, customer_id, &capture);
        if (n < 0)
                return n;
        /* The uid the customer has as a Unix user (records/unixusers.h), for pam_idm's check
         * that the name resolves to it; null when it is not one. */
        q = publisher_get(t, publisher_id, &publisher);
        if (q < 0 && q != -ENOENT)
                return q;
        uid = customer_is_unix_user(customer, publisher) ? customer_unix_uid(customer) : 0;
        return call_reply(call, json_pack("{s:s?, s:b, s:o, s:b, s:O, s:b, s:O}",
                                          "customerId", customer_id,
                                          "disabled", json_is_true(json_object_get(customer, "disabled")),
                                          "unixUid", uid ? json_integer(uid) : json_null(),
                                          "consentsUpdateRequired", r > 0,
                                          "consents", outdated,
                                          "captureRequired", n > 0,
                                          "capture", capture));
}

/* The customer a PAM account-phase call names (pam_authorize's rules): *ret_customer_id, or < 0
 * once answered. */
static int pam_account_customer(Call *call, json_t *params, char **ret_publisher_id, char **ret_customer_id) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        int r;

        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        r = pam_authorize(call, t, publisher_id, json_object_get_string(params, "user"), &customer);
        if (r < 0)
                return r;
        *ret_customer_id = strdup(strempty(json_object_get_string(customer, "customerId")));
        if (!*ret_customer_id)
                return -ENOMEM;
        *ret_publisher_id = TAKE_PTR(publisher_id);
        return 0;
}

static int method_pam_accept_consents(Call *call, json_t *params) {
        _cleanup_free_ char *publisher_id = NULL, *customer_id = NULL;
        int r;

        r = pam_account_customer(call, params, &publisher_id, &customer_id);
        if (r < 0)
                return r;
        return consents_answer(call, publisher_id, customer_id, json_object_get(params, "consents"), "pam", false,
                               CUSTOMER_GONE_NOT_FOUND);
}

static int method_pam_capture_answers(Call *call, json_t *params) {
        _cleanup_free_ char *publisher_id = NULL, *customer_id = NULL;
        int r;

        r = pam_account_customer(call, params, &publisher_id, &customer_id);
        if (r < 0)
                return r;
        return capture_answer(call, publisher_id, customer_id, json_object_get(params, "answers"), "pam", false,
                              CUSTOMER_GONE_NOT_FOUND);
}

/* --- pamChangePassword --- */

static void pam_password_checked(Call *call, const CustomerPasswordCheck *c) {
        if (c->changed)
                /* Through PAM there is no session of the caller's to keep: every one ended. */
                log_event(LOG_LEVEL_INFO, IDM_MESSAGE_PASSWORD_CHANGED, c->publisher_id, c->customer_id, NULL,
                          "%s: customer %s changed the password through PAM (uid %u); %d sessions revoked",
                          call_request_id(call), c->customer_id, (unsigned) call_peer(call)->uid, c->revoked);
        (void) call_reply_empty(call);  /* PAM_PRELIM_CHECK: only the old password */
}

static int method_pam_change_password(Call *call, json_t *params) {
        _cleanup_free_ char *publisher_id = NULL;
        const char *new_password = json_object_get_string(params, "newPassword");
        int r;

        /* The policy is public: checking it first tells nothing about the account. */
        if (new_password) {
                r = customers_check_new_password(call, new_password);
                if (r < 0)
                        return r;
        }
        r = pam_publisher(call, params, &publisher_id);
        if (r < 0)
                return r;
        return customers_check_password(call, params, publisher_id, json_object_get_string(params, "user"),
                                        json_object_get_string(params, "oldPassword"), new_password,
                                        pam_password_checked);
}

/* --- pamCloseSession --- */

typedef struct PamCloseWork {
        json_t *params;                 /* user and session_id point into it */
        char *publisher_id;
        const char *user;
        const char *session_id;         /* given, or NULL */
        uid_t uid;
        bool admin;
        SessionContext ctx;
        int revoked;
} PamCloseWork;

static int pam_close_write(StoreTxn *t, void *userdata) {
        PamCloseWork *w = userdata;
        _cleanup_(json_decrefp) json_t *customer = NULL, *rec = NULL;
        _cleanup_free_ char *key = NULL;
        const char *sid, *customer_id;
        int r;

        w->revoked = 0;
        r = session_pam_key(w->publisher_id, w->user, w->uid, &key);
        if (r == -E2BIG)
                return 0;
        if (r < 0)
                return r;
        r = session_timed_get(t, SESSION_KIND_PAM, key, &rec);
        if (r < 0 && r != -ENOENT)
                return r;
        sid = w->session_id ?: json_object_get_string(rec, "sessionId");

        r = customers_find_by_email(t, w->publisher_id, w->user, &customer);
        if (r < 0 && r != -ENOENT)
                return r;
        customer_id = json_object_get_string(customer, "customerId");
        /* A session id is not a secret (it is the "sid" of every JWT): besides administrators, a
         * peer may only close a session it opened itself, the one its record names. */
        if (sid && w->session_id && !w->admin && !streq_ptr(json_object_get_string(rec, "sessionId"), sid))
                sid = NULL;
        if (customer_id && sid) {
                /* Only a session of this user: session_revoke_family() checks whose it is. */
                r = session_revoke_family(t, &w->ctx, sid, customer_id);
                if (r < 0)
                        return r;
                w->revoked = r;
        }

        /* The record goes when it names the session closed (or no session is named). */
        if (rec && (!w->session_id || streq_ptr(json_object_get_string(rec, "sessionId"), w->session_id))) {
                r = session_timed_del(t, SESSION_KIND_PAM, key);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

static void pam_close_work_free(void *p) {
        PamCloseWork *w = p;

        json_decref(w->params);
        free(w->publisher_id);
        free(w);
}

static void pam_close_done(Call *call, int r, void *userdata) {
        PamCloseWork *w = userdata;

        if (r < 0)
                return;
        if (w->revoked > 0)
                log_info("%s: PAM session closed for publisher %s (uid %u)", call_request_id(call), w->publisher_id,
                         (unsigned) w->uid);
        /* RFC 7009 spirit: an unknown or already closed session is not an error. */
        (void) call_reply_empty(call);
}

static int method_pam_close_session(Call *call, json_t *params) {
        _cleanup_free_ char *publisher_id = NULL;
        PamCloseWork *w;
        int r;

        r = pam_publisher(call, params, &publisher_id);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(PamCloseWork));
        if (!w)
                return -ENOMEM;
        *w = (PamCloseWork) {
                .params = json_incref(params),
                .publisher_id = TAKE_PTR(publisher_id),
                .user = json_object_get_string(params, "user"),
                .session_id = json_object_get_string(params, "sessionId"),
                .uid = call_peer(call)->uid,
                .admin = call_role(call) == ROLE_ADMIN,
                .ctx = { .now_usec = now_realtime_usec() },
        };
        return call_write(call, pam_close_write, pam_close_done, w, pam_close_work_free);
}

#define PAM_PUBLISHER_PARAMS PUBLISHER_NAMING_PARAMS

const Method methods_pam[] = {
        { .name = IDM_METHOD_PAM_AUTHENTICATE, .handler = method_pam_authenticate, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN, .address_param = "rhost",
          .params = (const ParamSpec[]) {
                  PAM_PUBLISHER_PARAMS,
                  { "user", PARAM_STRING, true, USER_MAX },
                  { "password", PARAM_STRING, true, PASSWORD_MAX_BYTES },
                  { "service", PARAM_STRING, false, CONTEXT_MAX },
                  { "rhost", PARAM_STRING, false, RHOST_MAX },
                  { "tty", PARAM_STRING, false, CONTEXT_MAX },
                  { "ruser", PARAM_STRING, false, CONTEXT_MAX },
                  { "tokens", PARAM_BOOLEAN, false, 0 },
                  {} } },
        { .name = IDM_METHOD_PAM_ACCOUNT, .handler = method_pam_account, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) {
                  PAM_PUBLISHER_PARAMS,
                  { "user", PARAM_STRING, true, USER_MAX },
                  {} } },
        { .name = IDM_METHOD_PAM_ACCEPT_CONSENTS, .handler = method_pam_accept_consents, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) {
                  PAM_PUBLISHER_PARAMS,
                  { "user", PARAM_STRING, true, USER_MAX },
                  { "consents", PARAM_ARRAY, true, CONSENTS_MAX },
                  {} } },
        { .name = IDM_METHOD_PAM_CAPTURE_ANSWERS, .handler = method_pam_capture_answers, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) {
                  PAM_PUBLISHER_PARAMS,
                  { "user", PARAM_STRING, true, USER_MAX },
                  { "answers", PARAM_OBJECT, true },
                  {} } },
        { .name = IDM_METHOD_PAM_CHANGE_PASSWORD, .handler = method_pam_change_password, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) {
                  PAM_PUBLISHER_PARAMS,
                  { "user", PARAM_STRING, true, USER_MAX },
                  { "oldPassword", PARAM_STRING, true, PASSWORD_MAX_BYTES },
                  { "newPassword", PARAM_STRING, false, PASSWORD_MAX_BYTES },
                  {} } },
        { .name = IDM_METHOD_PAM_CLOSE_SESSION, .handler = method_pam_close_session, .role = ROLE_ANYONE,
          .params = (const ParamSpec[]) {
                  PAM_PUBLISHER_PARAMS,
                  { "user", PARAM_STRING, true, USER_MAX },
                  PARAM_ID("sessionId", false, SESSION_ID_MAX),
                  {} } },
        {}
};
