/* SPDX-License-Identifier: MIT */
/*
 * Forgot password at the prompt (reset=code): a customer who answers the password prompt with
 * nothing is offered a reset code by mail (requestPasswordReset with useCode), types the code and
 * a new password twice, and idmd sets it (updatePassword). auth.c then signs the customer in with
 * the new password, as if it had been typed at the prompt. idmd answers a request alike for
 * every address, so nothing here tells whether the customer exists; a wrong code counts towards
 * the reset's tries in idmd, and the reset rate-limit class applies to both calls.
 */
#include <errno.h>
#include <security/pam_ext.h>
#include <stdlib.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

#define CODE_MAX 16

/* Params naming the customer by e-mail for the publisher of the options. */
static json_t *reset_params(const Options *o, const char *user) {
        return json_pack("{s:s, s:s}", o->publisher_id ? "publisherId" : "offerId",
                         o->publisher_id ?: o->offer_id, "customerEmail", user);
}

static int reset_call(pam_handle_t *pamh, int flags, const Options *o, const char *user, const char *method,
                      json_t *params, IdmError *e) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *result = NULL;
        int r;

        r = connect_idmd(pamh, o, &c);
        if (r < 0)
                return result_to_pam(PHASE_AUTH, r, NULL, o);
        r = idm_client_call(&c, method, params, &result, e);
        if (r == -EREMOTEIO && (e->code == IDM_ERR_UNAUTHORIZED || e->code == IDM_ERR_BAD_REQUEST))
                return PAM_AUTH_ERR;    /* the caller says what went wrong */
        if (r < 0)
                return call_failed(pamh, flags, o, PHASE_AUTH, method, user, r, &c, e);
        return PAM_SUCCESS;
}

/* Asks with the given style; *ret is a new string the caller wipes. */
static int ask(pam_handle_t *pamh, int style, const char *prompt, char **ret) {
        int r;

        r = pam_prompt(pamh, style, ret, "%s", prompt);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS || !*ret) {
                erase_and_freep(ret);
                return PAM_AUTH_ERR;
        }
        return PAM_SUCCESS;
}

int reset_by_code(pam_handle_t *pamh, int flags, const Options *o, const char *user, char **ret_password) {
        _cleanup_(erase_and_freep) char *code = NULL, *password = NULL, *again = NULL;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL;
        IdmError e = {};
        bool yes = false;
        char m[256];
        int r;

        r = conv_confirm(pamh, "Forgot your password? A code will be sent to your e-mail address [y/N] ", &yes);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS || !yes)
                return PAM_AUTH_ERR;

        params = reset_params(o, user);
        if (!params || json_object_set_new(params, "useCode", json_true()) < 0)
                return PAM_BUF_ERR;
        r = reset_call(pamh, flags, o, user, IDM_METHOD_REQUEST_PASSWORD_RESET, params, &e);
        if (r != PAM_SUCCESS) {
                pam_syslog(pamh, LOG_NOTICE, "password reset not requested: %s", e.reason[0] ? e.reason : "failed");
                return r;
        }
        pam_syslog(pamh, LOG_NOTICE, "password reset code requested for '%s'", user);
        conv_message(pamh, flags & ~PAM_SILENT, PAM_TEXT_INFO,
                     "If this address has an account, a code is on its way to it.");

        r = ask(pamh, PAM_PROMPT_ECHO_ON, "Code from the e-mail: ", &code);
        if (r != PAM_SUCCESS)
                return r;
        code[strcspn(code, " \t\r\n")] = '\0';
        if (!*code || strlen(code) > CODE_MAX) {
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "No code given.");
                return PAM_AUTH_ERR;
        }
        r = ask(pamh, PAM_PROMPT_ECHO_OFF, "New password: ", &password);
        if (r == PAM_SUCCESS)
                r = ask(pamh, PAM_PROMPT_ECHO_OFF, "Retype new password: ", &again);
        if (r != PAM_SUCCESS)
                return r;
        if (!streq(password, again)) {
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "Sorry, the passwords do not match.");
                return PAM_AUTH_ERR;
        }

        json_decref(params);
        params = reset_params(o, user);
        if (!params || json_object_set_new(params, "resetCode", json_string(code)) < 0)
                return PAM_BUF_ERR;
        if (json_object_set_new(params, "newPassword", json_string(password)) < 0) {
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "The new password is not valid text.");
                return PAM_AUTH_ERR;
        }
        e = (IdmError) {};
        r = reset_call(pamh, flags, o, user, IDM_METHOD_UPDATE_PASSWORD, params, &e);
        if (r == PAM_AUTH_ERR && e.code == IDM_ERR_BAD_REQUEST) {
                /* Policy refusals are meant for the user, whatever PAM_SILENT says. */
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "%s",
                             e.message[0] ? conv_sanitize(m, sizeof(m), e.message) :
                                            "The new password is not acceptable.");
                return r;
        }
        if (r == PAM_AUTH_ERR && e.code == IDM_ERR_UNAUTHORIZED) {
                pam_syslog(pamh, LOG_NOTICE, "password reset code refused for '%s'", user);
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "The code is not valid, or has expired.");
                return r;
        }
        if (r != PAM_SUCCESS)
                return r;

        pam_syslog(pamh, LOG_NOTICE, "password of '%s' reset with a code", user);
        conv_message(pamh, flags & ~PAM_SILENT, PAM_TEXT_INFO, "Your password has been changed.");
        *ret_password = TAKE_PTR(password);
        return PAM_SUCCESS;
}
