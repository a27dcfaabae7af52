/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's authentication: pam_sm_authenticate() in its three modes (mode=password: the
 * password to pamAuthenticate; mode=code: a sign-in code to redeemToken; mode=device: the device
 * login of RFC 8628, startDeviceLogin then pollDeviceLogin), the checks of idmd's result, what is
 * kept for the later phases (the session id in the PAM data and environment, the authenticated
 * user) and exported (export_env, export_tokens), and pam_sm_setcred().
 */
#include <errno.h>
#include <poll.h>
#include <security/pam_ext.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

#define FAIL_DELAY_USEC 2000000u          /* like pam_unix */
#define DEVICE_EXPIRY_MAX_SEC 3600
#define DEVICE_INTERVAL_DEFAULT_SEC 5     /* RFC 8628 section 3.2 */
#define DEVICE_INTERVAL_SLOW_DOWN_SEC 5   /* RFC 8628 section 3.5 */
#define DEVICE_INTERVAL_MAX_SEC 30
#define DATA_SETCRED "pam_idm_setcred_return"

/* Remembers an authenticate result for pam_sm_setcred(), like pam_unix: the value is stored in
 * the pointer itself (offset by one, NULL meaning "none"), so nothing needs freeing. */
static int remember(pam_handle_t *pamh, int pam) {
        (void) pam_set_data(pamh, DATA_SETCRED, (void *) (intptr_t) (pam + 1), NULL);
        return pam;
}

/* Memory only, never I/O: under PAM_DATA_SILENT this runs in a forked copy of the process (sshd),
 * where closing anything would end the parent's session. */
static void session_data_cleanup(pam_handle_t *pamh, void *data, int error_status) {
        SessionData *d = data;

        if (!d)
                return;
        (void) erase_and_free(d->user);
        (void) erase_and_free(d->session_id);
        free(d);
}

static int session_data_set(pam_handle_t *pamh, const char *user, const char *session_id) {
        SessionData *d = calloc(1, sizeof(SessionData));

        if (!d)
                return -ENOMEM;
        d->user = strdup(user);
        d->session_id = strdup(session_id);
        if (!d->user || !d->session_id) {
                session_data_cleanup(pamh, d, 0);
                return -ENOMEM;
        }
        if (pam_set_data(pamh, DATA_SESSION, d, session_data_cleanup) != PAM_SUCCESS) {
                session_data_cleanup(pamh, d, 0);
                return -ENOMEM;
        }
        return 0;
}

static void authenticated_user_cleanup(pam_handle_t *pamh, void *data, int error_status) {
        (void) erase_and_free(data);
}

/* Which user this handle authenticated, for the account step of a setuid caller
 * (account_may_ask()). Memory only, like DATA_SESSION. */
static int authenticated_user_set(pam_handle_t *pamh, const char *user) {
        char *u = strdup(user);

        if (!u)
                return -ENOMEM;
        if (pam_set_data(pamh, DATA_AUTH_USER, u, authenticated_user_cleanup) != PAM_SUCCESS) {
                (void) erase_and_free(u);
                return -ENOMEM;
        }
        return 0;
}

static int putenv_pair(pam_handle_t *pamh, const char *name, const char *value) {
        char *s = NULL;
        int r;

        if (asprintf(&s, "%s=%s", name, value) < 0)
                return PAM_BUF_ERR;
        r = pam_putenv(pamh, s);
        (void) erase_and_free(s);
        return r;
}

/* A login succeeded: checks the result, keeps the session id and exports what was asked for. */
static int auth_accept(pam_handle_t *pamh, const Options *o, const char *user, json_t *result) {
        const char *customer_id = json_object_get_string(result, "customerId");
        const char *publisher_id = json_object_get_string(result, "publisherId");
        const char *session_id = json_object_get_string(result, "sessionId");
        const char *jwt = json_object_get_string(result, "jwt");
        const char *refresh_token = json_object_get_string(result, "refreshToken");
        int r;

        if (!id_is_valid(customer_id, ID_MAX) || !id_is_valid(publisher_id, ID_MAX) ||
            (session_id && !session_id_is_valid(session_id))) {
                pam_syslog(pamh, LOG_ERR, "malformed login result from idmd, refusing");
                return PAM_SERVICE_ERR;
        }
        if (o->publisher_id && !streq(publisher_id, o->publisher_id)) {
                pam_syslog(pamh, LOG_ERR, "idmd logged in a customer of publisher %s, not %s, refusing", publisher_id,
                           o->publisher_id);
                return PAM_SERVICE_ERR;
        }

        if (o->export_env || o->export_tokens) {
                r = putenv_pair(pamh, "IDM_CUSTOMER_ID", customer_id);
                if (r == PAM_SUCCESS)
                        r = putenv_pair(pamh, "IDM_PUBLISHER_ID", publisher_id);
                if (r != PAM_SUCCESS) {
                        pam_syslog(pamh, LOG_ERR, "cannot export the environment: %s", pam_strerror(pamh, r));
                        return r == PAM_BUF_ERR ? PAM_BUF_ERR : PAM_SERVICE_ERR;
                }
        }
        if (o->export_tokens) {
                if (!token_is_valid(jwt) || !token_is_valid(refresh_token)) {
                        pam_syslog(pamh, LOG_ERR, "login result from idmd lacks tokens, refusing");
                        return PAM_SERVICE_ERR;
                }
                r = putenv_pair(pamh, "IDM_ACCESS_TOKEN", jwt);
                if (r == PAM_SUCCESS)
                        r = putenv_pair(pamh, "IDM_REFRESH_TOKEN", refresh_token);
                if (r != PAM_SUCCESS) {
                        pam_syslog(pamh, LOG_ERR, "cannot export the tokens: %s", pam_strerror(pamh, r));
                        return r == PAM_BUF_ERR ? PAM_BUF_ERR : PAM_SERVICE_ERR;
                }
        }

        if (session_id) {
                if (session_data_set(pamh, user, session_id) < 0)
                        return PAM_BUF_ERR;
                /* Also in the PAM environment, whatever export_env says: sshd authenticates in a
                 * forked child, where the PAM data above stays, but imports the child's PAM
                 * environment into the monitor, which closes the session. Not a secret (it is the
                 * "sid" of every access JWT, and idmd lets only root or the uid that opened the
                 * session close it by id). */
                r = putenv_pair(pamh, ENV_SESSION_ID, session_id);
                if (r != PAM_SUCCESS) {
                        pam_syslog(pamh, LOG_ERR, "cannot export the session id: %s", pam_strerror(pamh, r));
                        return r == PAM_BUF_ERR ? PAM_BUF_ERR : PAM_SERVICE_ERR;
                }
        } else {
                /* No id (a code or device login): an earlier login in this handle must not be
                 * closed in its place. */
                (void) pam_set_data(pamh, DATA_SESSION, NULL, NULL);
                (void) pam_putenv(pamh, ENV_SESSION_ID);
        }

        if (authenticated_user_set(pamh, user) < 0)
                return PAM_BUF_ERR;

        log_debug(pamh, o, "authenticated customer %s of publisher %s", customer_id, publisher_id);
        return PAM_SUCCESS;
}

/* Reads the secret (password or code) through pam_get_authtok(), which honours use_first_pass,
 * try_first_pass and stacking. Returns PAM_SUCCESS or the PAM code to fail with. */
static int get_secret(pam_handle_t *pamh, const Options *o, const char *prompt, bool allow_empty,
                      const char **ret) {
        const char *secret = NULL;
        int r;

        r = pam_get_authtok(pamh, PAM_AUTHTOK, &secret, prompt);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS || !secret) {
                log_debug(pamh, o, "no secret: %s", pam_strerror(pamh, r));
                return PAM_AUTH_ERR;
        }
        if ((secret[0] == '\0' && !allow_empty) || strlen(secret) > SECRET_MAX) {
                log_debug(pamh, o, "empty or oversized secret, refusing");
                return PAM_AUTH_ERR;
        }
        *ret = secret;
        return PAM_SUCCESS;
}

/* The login succeeded in idmd but fails here (malformed result, out of memory): closes the session
 * idmd just opened, best effort, so that no live tokens stay behind a failed PAM call. */
static void session_abandon(pam_handle_t *pamh, const Options *o, const char *user, json_t *result) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *ignored = NULL;
        const char *session_id = json_object_get_string(result, "sessionId");
        IdmError e = {};

        if (!token_is_valid(session_id))
                return;
        params = params_new(o, user);
        if (!params || json_object_set_new(params, "sessionId", json_string(session_id)) < 0)
                return;
        if (idm_client_connect(&c, o->socket_path, o->daemon_user, o->connect_timeout, o->timeout) < 0 ||
            idm_client_call(&c, IDM_METHOD_PAM_CLOSE_SESSION, params, &ignored, &e) < 0)
                pam_syslog(pamh, LOG_WARNING, "cannot close the session of the failed login: %s", c.error);
}

static int authenticate_password(pam_handle_t *pamh, int flags, const Options *o, const char *user) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_(erase_and_freep) char *new_password = NULL;
        const char *password = NULL;
        IdmError e = {};
        int r;

        r = get_secret(pamh, o, NULL, o->reset_code, &password);
        if (r != PAM_SUCCESS)
                return r;
        if (password[0] == '\0') {
                /* reset=code: nothing typed offers a reset; its new password signs the customer in. */
                r = reset_by_code(pamh, flags, o, user, &new_password);
                if (r != PAM_SUCCESS)
                        return r;
                r = pam_set_item(pamh, PAM_AUTHTOK, new_password);
                if (r != PAM_SUCCESS)
                        return r;
                password = new_password;
        }

        params = params_new(o, user);
        if (!params)
                return PAM_BUF_ERR;
        if (json_object_set_new(params, "password", json_string(password)) < 0) {
                log_debug(pamh, o, "password is not valid UTF-8, refusing");
                return PAM_AUTH_ERR;
        }
        /* Tokens only when they are to be exported: whatever jansson reads may stay behind in
         * freed memory of the application (sshd, login), and the session step needs only the
         * session id. */
        if (o->export_tokens && json_object_set_new(params, "tokens", json_true()) < 0)
                return PAM_BUF_ERR;
        params_add_context(pamh, params);

        r = connect_idmd(pamh, o, &c);
        if (r < 0)
                return result_to_pam(PHASE_AUTH, r, NULL, o);
        r = idm_client_call(&c, IDM_METHOD_PAM_AUTHENTICATE, params, &result, &e);
        idm_client_close(&c);
        if (r < 0) {
                /* Only told once the password proved right: no oracle. */
                if (r == -EREMOTEIO && streq(e.reason, IDM_REASON_ACCOUNT_DISABLED))
                        conv_message(pamh, flags, PAM_ERROR_MSG, "Your account has been disabled.");
                return call_failed(pamh, flags, o, PHASE_AUTH, IDM_METHOD_PAM_AUTHENTICATE, user, r, &c, &e);
        }
        r = auth_accept(pamh, o, user, result);
        if (r != PAM_SUCCESS)
                session_abandon(pamh, o, user, result);
        return r;
}

/* For code and device logins, whose result names a customer only by tokens: checks that the
 * customer is PAM_USER of publisher=, and revokes the new session otherwise. */
static int verify_customer(pam_handle_t *pamh, const Options *o, IdmClient *c, const char *user,
                           json_t *result, IdmError *reterr) {
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *customer = NULL, *ignored = NULL;
        const char *jwt = json_object_get_string(result, "jwt");
        const char *refresh_token = json_object_get_string(result, "refreshToken");
        const char *email, *publisher_id;
        IdmError e = {};
        int r;

        if (!token_is_valid(jwt)) {
                (void) snprintf(c->error, sizeof(c->error), "the login result from idmd has no valid jwt");
                return -EBADMSG;
        }
        params = json_pack("{s:s}", "jwt", jwt);
        if (!params)
                return -ENOMEM;
        r = idm_client_call(c, "getCustomer", params, &customer, reterr);
        if (r < 0)
                return r;

        email = json_object_get_string(customer, "email");
        publisher_id = json_object_get_string(customer, "publisherId");
        /* No user given (a device login on a kiosk): whoever of the publisher approved it is the
         * user; it becomes PAM_USER (a copy: customer is wiped when released). */
        if (!user && user_is_customer_name(email) && streq_ptr(publisher_id, o->publisher_id)) {
                if (pam_set_item(pamh, PAM_USER, email) != PAM_SUCCESS)
                        return -ENOMEM;
                user = email;
        }
        if (email && user && strcasecmp(email, user) == 0 && streq_ptr(publisher_id, o->publisher_id)) {
                /* A copy: customer is wiped when released. */
                if (!json_object_get(result, "publisherId") &&
                    json_object_set_new(result, "publisherId", json_string(publisher_id)) < 0)
                        return -ENOMEM;
                return 0;
        }

        pam_syslog(pamh, LOG_NOTICE, "the code belongs to another customer than '%s', refusing", strempty(user));
        json_wipe_and_decref(params);
        params = json_pack("{s:s}", "token", strempty(refresh_token));
        if (params && refresh_token)
                (void) idm_client_call(c, IDM_METHOD_REVOKE_TOKEN, params, &ignored, &e);
        return -EACCES;
}

/* The end of a code or device login on the open connection c: the customer checked, c closed,
 * the login accepted or refused. A PAM result. */
static int token_login_finish(pam_handle_t *pamh, int flags, const Options *o, IdmClient *c, const char *user,
                              json_t *result) {
        const void *item = NULL;
        IdmError e = {};
        int r;

        r = verify_customer(pamh, o, c, user, result, &e);
        idm_client_close(c);
        if (r == -EACCES)
                return PAM_AUTH_ERR;
        if (r < 0)
                return call_failed(pamh, flags, o, PHASE_AUTH, "getCustomer", strempty(user), r, c, &e);
        if (!user) {
                /* verify_customer() made the approving customer PAM_USER. */
                if (pam_get_item(pamh, PAM_USER, &item) != PAM_SUCCESS || !item)
                        return PAM_SERVICE_ERR;
                user = item;
        }
        return auth_accept(pamh, o, user, result);
}

/* Reads the sign-in code. A PAM_AUTHTOK set by a module stacked before is taken only if it looks
 * like a code (token characters): otherwise it is that module's password, which must not go to
 * idmd as a code; the code is then asked for (PAM_PROMPT_ECHO_OFF, without replacing
 * PAM_AUTHTOK), or, with use_first_pass, the login fails. *ret_owned holds a prompted code, to
 * be wiped by the caller. Returns PAM_SUCCESS or the PAM code to fail with. */
static int get_code(pam_handle_t *pamh, const Options *o, const char **ret, char **ret_owned) {
        const void *stacked = NULL;
        char *answer = NULL;
        int r;

        if (pam_get_item(pamh, PAM_AUTHTOK, &stacked) != PAM_SUCCESS || !stacked || token_is_valid(stacked))
                return get_secret(pamh, o, "Code: ", false, ret);

        if (o->use_first_pass) {
                log_debug(pamh, o, "the stacked password is not a sign-in code, refusing (use_first_pass)");
                return PAM_AUTH_ERR;
        }
        log_debug(pamh, o, "the stacked password is not a sign-in code, asking for one");
        r = pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &answer, "Code: ");
        if (r == PAM_CONV_AGAIN) {
                (void) erase_and_free(answer);
                return PAM_INCOMPLETE;
        }
        if (r != PAM_SUCCESS || !answer) {
                (void) erase_and_free(answer);
                log_debug(pamh, o, "no code: %s", pam_strerror(pamh, r));
                return PAM_AUTH_ERR;
        }
        *ret = *ret_owned = answer;
        return PAM_SUCCESS;
}

static int authenticate_code(pam_handle_t *pamh, int flags, const Options *o, const char *user) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_(erase_and_freep) char *typed = NULL;
        const char *code = NULL;
        IdmError e = {};
        int r;

        r = get_code(pamh, o, &code, &typed);
        if (r != PAM_SUCCESS)
                return r;
        if (!token_is_valid(code)) {
                log_debug(pamh, o, "not a sign-in code (not only A-Z a-z 0-9 - _ . ~ + / =), refusing");
                return PAM_AUTH_ERR;
        }
        params = json_pack("{s:s}", "token", code);
        if (!params)
                return PAM_BUF_ERR;

        r = connect_idmd(pamh, o, &c);
        if (r < 0)
                return result_to_pam(PHASE_AUTH, r, NULL, o);
        r = idm_client_call(&c, "redeemToken", params, &result, &e);
        if (r < 0)
                return call_failed(pamh, flags, o, PHASE_AUTH, "redeemToken", user, r, &c, &e);
        return token_login_finish(pamh, flags, o, &c, user, result);
}

static bool text_is_printable(const char *s, size_t max) {
        char buf[1024];

        return s && *s && strlen(s) <= max && max < sizeof(buf) &&
               streq(conv_sanitize(buf, sizeof(buf), s), s);
}

json_int_t device_poll_interval(json_int_t interval, bool slow_down) {
        if (interval <= 0)
                interval = DEVICE_INTERVAL_DEFAULT_SEC;
        if (slow_down && interval <= DEVICE_INTERVAL_MAX_SEC)
                interval += DEVICE_INTERVAL_SLOW_DOWN_SEC;
        return interval > DEVICE_INTERVAL_MAX_SEC ? DEVICE_INTERVAL_MAX_SEC : interval;
}

/* Whether PAM_USER is set to something (mode=device goes without one). */
static bool user_given(pam_handle_t *pamh) {
        const void *item = NULL;

        return pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item && *(const char *) item;
}

/* Waits usec without signals (poll() with no descriptors). */
static void sleep_usec(usec_t usec) {
        usec_t deadline = now_usec() + usec;

        for (;;) {
                usec_t n = now_usec();

                if (n >= deadline)
                        return;
                (void) poll(NULL, 0, (int) ((deadline - n + USEC_PER_MSEC - 1) / USEC_PER_MSEC));
        }
}

/* user: PAM_USER, or NULL when none was given (then whoever approves becomes PAM_USER). */
static int authenticate_device(pam_handle_t *pamh, int flags, const Options *o, const char *user) {
        const char *who = user ?: "(whoever approves)";
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *start = NULL, *result = NULL;
        const char *service = NULL, *device_code, *user_code, *uri, *uri_complete;
        json_int_t expires_in, interval;
        usec_t deadline;
        IdmError e = {};
        int r;

        (void) pam_get_item(pamh, PAM_SERVICE, (const void **) &service);
        params = json_pack("{s:s}", "publisherId", o->publisher_id);
        if (!params)
                return PAM_BUF_ERR;
        if (service && strlen(service) <= 64)
                (void) json_object_set_new(params, "deviceName", json_string(service));

        r = connect_idmd(pamh, o, &c);
        if (r < 0)
                return result_to_pam(PHASE_AUTH, r, NULL, o);
        r = idm_client_call(&c, "startDeviceLogin", params, &start, &e);
        /* Never hold a connection open while a human answers a prompt. */
        idm_client_close(&c);
        if (r < 0)
                return call_failed(pamh, flags, o, PHASE_AUTH, "startDeviceLogin", who, r, &c, &e);

        device_code = json_object_get_string(start, "deviceCode");
        user_code = json_object_get_string(start, "userCode");
        uri = json_object_get_string(start, "verificationUri");
        uri_complete = json_object_get_string(start, "verificationUriComplete");
        expires_in = json_integer_value(json_object_get(start, "expiresIn"));
        interval = json_integer_value(json_object_get(start, "interval"));
        if (!token_is_valid(device_code) || !text_is_printable(user_code, 32) || !text_is_printable(uri, 500) ||
            expires_in <= 0) {
                pam_syslog(pamh, LOG_ERR, "malformed startDeviceLogin result from idmd, refusing");
                return PAM_SERVICE_ERR;
        }
        if (expires_in > DEVICE_EXPIRY_MAX_SEC)
                expires_in = DEVICE_EXPIRY_MAX_SEC;
        interval = device_poll_interval(interval, false);
        deadline = now_usec() + (usec_t) expires_in * USEC_PER_SEC;

        r = conv_device_login(pamh, uri, user_code, text_is_printable(uri_complete, 500) ? uri_complete : NULL,
                              o->qr);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS)
                return PAM_AUTH_ERR;

        json_decref(params);
        params = json_pack("{s:s}", "deviceCode", device_code);
        if (!params)
                return PAM_BUF_ERR;
        for (;;) {
                /* One connection per poll, closed before the wait: idmd closes connections idle for
                 * 60 s, and the wait is the idle time. */
                r = connect_idmd(pamh, o, &c);
                if (r < 0)
                        return result_to_pam(PHASE_AUTH, r, NULL, o);
                r = idm_client_call(&c, "pollDeviceLogin", params, &result, &e);
                if (r >= 0)
                        break;          /* c stays open for verify_customer() */
                if (r != -EREMOTEIO || e.code != IDM_ERR_PENDING)
                        return call_failed(pamh, flags, o, PHASE_AUTH, "pollDeviceLogin", who, r, &c, &e);
                idm_client_close(&c);
                interval = device_poll_interval(interval, streq(e.reason, IDM_REASON_SLOW_DOWN));
                if (now_usec() + (usec_t) interval * USEC_PER_SEC >= deadline) {
                        conv_message(pamh, flags, PAM_ERROR_MSG, "The sign-in code has expired.");
                        pam_syslog(pamh, LOG_NOTICE, "device login for '%s' expired", who);
                        return PAM_AUTH_ERR;
                }
                sleep_usec((usec_t) interval * USEC_PER_SEC);
        }

        return token_login_finish(pamh, flags, o, &c, user, result);
}

_public_ int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        const char *user = NULL;
        _cleanup_(options_done) Options o = {};
        int r;

        /* A new attempt: what an earlier one in this handle authenticated no longer counts. */
        (void) pam_set_data(pamh, DATA_AUTH_USER, NULL, NULL);

        r = options_parse(pamh, argc, argv, &o);
        if (r != PAM_SUCCESS)
                return remember(pamh, r);

        (void) pam_fail_delay(pamh, FAIL_DELAY_USEC);

        if (o.mode == MODE_DEVICE && !user_given(pamh)) {
                /* A kiosk or TV asks nobody for a name: the customer who approves is the user. */
                log_debug(pamh, &o, "no user name: the customer who approves the device login becomes the user");
                return remember(pamh, authenticate_device(pamh, flags, &o, NULL));
        }

        r = get_user(pamh, &user);
        if (r != PAM_SUCCESS)
                return remember(pamh, r);
        if (!user_is_customer_name(user)) {
                log_debug(pamh, &o, "user name is not an e-mail address");
                return remember(pamh, result_to_pam(PHASE_AUTH, -EREMOTEIO,
                                                    &(IdmError) { .code = IDM_ERR_UNAUTHORIZED,
                                                                  .reason = IDM_REASON_UNKNOWN_USER },
                                                    &o));
        }

        switch (o.mode) {
        case MODE_CODE:
                r = authenticate_code(pamh, flags, &o, user);
                break;
        case MODE_DEVICE:
                r = authenticate_device(pamh, flags, &o, user);
                break;
        default:
                r = authenticate_password(pamh, flags, &o, user);
                break;
        }
        return remember(pamh, r);
}

_public_ int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        const void *p = NULL;

        /* Nothing to establish: idmd's session exists since authentication. Answer like the
         * authentication did, so that stacks jump the same way (cf. pam_unix). */
        if (pam_get_data(pamh, DATA_SETCRED, &p) == PAM_SUCCESS && p)
                return (int) ((intptr_t) p - 1);
        return PAM_SUCCESS;
}
