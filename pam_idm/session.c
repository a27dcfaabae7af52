/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's session step. idmd's session begins with the authentication, so
 * pam_sm_open_session() only checks the configuration; pam_sm_close_session() ends the session
 * (pamCloseSession) named by the PAM data of this process or by IDM_SESSION_ID in the PAM
 * environment (sshd authenticates in a forked child and closes in the monitor).
 */
#include <errno.h>
#include <security/pam_ext.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/pam_idm.h"

_public_ int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        _cleanup_(options_done) Options o = {};

        /* idmd's session began with the authentication; only the configuration is checked. */
        return options_parse(pamh, argc, argv, &o);
}

_public_ int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *result = NULL;
        const char *user = NULL, *session_id = NULL;
        const void *p = NULL;
        IdmError e = {};
        _cleanup_(options_done) Options o = {};
        int r;

        r = options_parse(pamh, argc, argv, &o);
        if (r != PAM_SUCCESS)
                return r;
        if (flags & PAM_DATA_SILENT)
                return PAM_SUCCESS;     /* a forked copy (sshd): the parent closes the session */
        r = pam_get_item(pamh, PAM_USER, (const void **) &user);
        if (r != PAM_SUCCESS || !user_is_customer_name(user))
                return PAM_SUCCESS;     /* not a customer: nothing of ours to close */

        params = params_new(&o, user);
        if (!params)
                return PAM_BUF_ERR;
        /* Which session: the id kept in the PAM handle when authentication ran in this process;
         * else the one in the PAM environment (sshd authenticates in a forked child and imports
         * its PAM environment into the monitor, which closes the session); only without either
         * does idmd close the session this peer uid opened last for the user. */
        if (pam_get_data(pamh, DATA_SESSION, &p) == PAM_SUCCESS && p) {
                const SessionData *d = p;

                if (streq(d->user, user))
                        session_id = d->session_id;
        } else {
                session_id = pam_getenv(pamh, ENV_SESSION_ID);
                if (session_id && !session_id_is_valid(session_id)) {
                        pam_syslog(pamh, LOG_WARNING, "malformed %s in the PAM environment, ignoring",
                                   ENV_SESSION_ID);
                        session_id = NULL;
                }
        }
        if (session_id && json_object_set_new(params, "sessionId", json_string(session_id)) < 0)
                return PAM_BUF_ERR;
        if (session_id)
                log_debug(pamh, &o, "closing session %s of '%s'", session_id, user);
        else
                log_debug(pamh, &o, "closing the session this uid opened last for '%s'", user);

        r = connect_idmd(pamh, &o, &c);
        if (r < 0)
                return result_to_pam(PHASE_SESSION, r, NULL, &o);
        r = idm_client_call(&c, IDM_METHOD_PAM_CLOSE_SESSION, params, &result, &e);
        idm_client_close(&c);
        if (r < 0)
                return call_failed(pamh, flags, &o, PHASE_SESSION, IDM_METHOD_PAM_CLOSE_SESSION, user, r, &c, &e);
        log_debug(pamh, &o, "session of '%s' closed", user);
        return PAM_SUCCESS;
}

