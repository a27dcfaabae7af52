/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's password step: pam_sm_chauthtok() checks the current password in the
 * PAM_PRELIM_CHECK pass and changes it in the PAM_UPDATE_AUTHTOK pass (pamChangePassword); idmd's
 * policy refusals are shown to the user.
 */
#include <errno.h>
#include <security/pam_ext.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

static int change_password(pam_handle_t *pamh, int flags, const Options *o, const char *user,
                           const char *old_password, const char *new_password) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *result = NULL;
        const char *method = IDM_METHOD_PAM_CHANGE_PASSWORD;
        IdmError e = {};
        int r, pam;

        params = params_new(o, user);
        if (!params)
                return PAM_BUF_ERR;
        if (json_object_set_new(params, "oldPassword", json_string(old_password)) < 0)
                return PAM_AUTH_ERR;
        if (new_password && json_object_set_new(params, "newPassword", json_string(new_password)) < 0) {
                conv_message(pamh, flags, PAM_ERROR_MSG, "The new password is not valid text.");
                return PAM_AUTHTOK_ERR;
        }

        r = connect_idmd(pamh, o, &c);
        if (r < 0)
                return result_to_pam(PHASE_PASSWORD, r, NULL, o);
        r = idm_client_call(&c, method, params, &result, &e);
        idm_client_close(&c);
        if (r >= 0)
                return PAM_SUCCESS;

        pam = call_failed(pamh, flags, o, PHASE_PASSWORD, method, user, r, &c, &e);
        if (pam == PAM_AUTHTOK_ERR) {
                char m[256];

                /* Policy refusals are meant for the user, whatever PAM_SILENT says. */
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "%s",
                             e.message[0] ? conv_sanitize(m, sizeof(m), e.message) :
                                            "The new password is not acceptable.");
        } else if (pam == PAM_AUTH_ERR)
                conv_message(pamh, flags, PAM_ERROR_MSG, "The current password is not correct.");
        return pam;
}

_public_ int pam_sm_chauthtok(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        const char *user = NULL, *old_password = NULL, *new_password = NULL;
        _cleanup_(options_done) Options o = {};
        int r;

        r = phase_begin(pamh, argc, argv, PHASE_PASSWORD, &o, &user);
        if (r != PAM_SUCCESS)
                return r;

        if (flags & PAM_CHANGE_EXPIRED_AUTHTOK) {
                /* idmd has no password expiry: nothing is ever expired. */
                log_debug(pamh, &o, "PAM_CHANGE_EXPIRED_AUTHTOK: nothing to do");
                return PAM_SUCCESS;
        }

        if (flags & PAM_PRELIM_CHECK) {
                /* Verify the current password now, so that passwd asks for a new one only when
                 * it will be accepted. */
                r = pam_get_authtok(pamh, PAM_OLDAUTHTOK, &old_password, NULL);
                if (r == PAM_CONV_AGAIN)
                        return PAM_INCOMPLETE;
                if (r != PAM_SUCCESS || !old_password || !*old_password || strlen(old_password) > SECRET_MAX) {
                        log_debug(pamh, &o, "no current password: %s", pam_strerror(pamh, r));
                        return PAM_AUTH_ERR;
                }
                return change_password(pamh, flags, &o, user, old_password, NULL);
        }

        if (!(flags & PAM_UPDATE_AUTHTOK))
                return PAM_SERVICE_ERR;

        r = pam_get_item(pamh, PAM_OLDAUTHTOK, (const void **) &old_password);
        if (r != PAM_SUCCESS || !old_password) {
                r = pam_get_authtok(pamh, PAM_OLDAUTHTOK, &old_password, NULL);
                if (r == PAM_CONV_AGAIN)
                        return PAM_INCOMPLETE;
                if (r != PAM_SUCCESS || !old_password)
                        return PAM_AUTH_ERR;
        }
        /* Prompts twice ("New password", "Retype new password") unless use_authtok. */
        r = pam_get_authtok(pamh, PAM_AUTHTOK, &new_password, NULL);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS || !new_password) {
                log_debug(pamh, &o, "no new password: %s", pam_strerror(pamh, r));
                return PAM_AUTHTOK_ERR;
        }
        if (!*new_password || strlen(new_password) > SECRET_MAX) {
                conv_message(pamh, flags & ~PAM_SILENT, PAM_ERROR_MSG, "No acceptable password has been supplied.");
                return PAM_AUTHTOK_ERR;
        }
        r = change_password(pamh, flags, &o, user, old_password, new_password);
        if (r == PAM_SUCCESS)
                pam_syslog(pamh, LOG_NOTICE, "password changed for '%s'", user);
        return r;
}
