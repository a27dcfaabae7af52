/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's account step: pam_sm_acct_mgmt() asks idmd (pamAccount) whether the customer may
 * log in now: a disabled account is PAM_ACCT_EXPIRED, and outdated required consents are asked
 * about (consents=prompt, then pamAcceptConsents), refused (deny) or let through (ignore). A
 * setuid-root caller is told only about the user it authenticated or runs as (account_may_ask()).
 */
#include <errno.h>
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modutil.h>
#include <stdio.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

#define CONSENTS_MAX 32u                  /* consents asked for in one acct_mgmt call */

static const char *version_string(json_t *v, char *buf, size_t size) {
        if (json_is_integer(v))
                (void) snprintf(buf, size, "%lld", (long long) json_integer_value(v));
        else
                (void) conv_sanitize(buf, size, json_string_value(v));
        return buf;
}

/* Asks about each outdated required consent. The accepted ones go to *ret_accepted (answers for
 * pamAcceptConsents, possibly none); *ret_declined tells whether any was declined. Returns
 * PAM_SUCCESS, or the PAM code to fail with. */
static int ask_consents(pam_handle_t *pamh, int flags, const Options *o, json_t *consents,
                        json_t **ret_accepted, bool *ret_declined) {
        _cleanup_(json_decrefp) json_t *accepted = json_array();
        bool declined = false;
        json_t *item;
        size_t i;

        if (!accepted)
                return PAM_BUF_ERR;
        if (json_array_size(consents) == 0 || json_array_size(consents) > CONSENTS_MAX) {
                pam_syslog(pamh, LOG_ERR, "idmd requires updated consents but lists %zu, refusing",
                           json_array_size(consents));
                return PAM_PERM_DENIED;
        }
        json_array_foreach(consents, i, item) {
                json_t *version = json_object_get(item, "version");
                const char *name = json_object_get_string(item, "name");
                const char *label = json_object_get_string(item, "label");
                char question[512], l[128], v[64];
                bool yes = false;
                int r;

                if (!name || !(json_is_string(version) || json_is_integer(version))) {
                        pam_syslog(pamh, LOG_ERR, "malformed consent list from idmd, refusing");
                        return PAM_PERM_DENIED;
                }
                (void) conv_sanitize(l, sizeof(l), label && *label ? label : name);
                (void) snprintf(question, sizeof(question), "Accept the updated %s (version %s)? [y/N] ", l,
                                version_string(version, v, sizeof(v)));
                r = conv_confirm(pamh, question, &yes);
                if (r == PAM_CONV_AGAIN)
                        return PAM_INCOMPLETE;
                if (r != PAM_SUCCESS) {
                        pam_syslog(pamh, LOG_NOTICE, "cannot ask about updated consents: %s", pam_strerror(pamh, r));
                        return PAM_PERM_DENIED;
                }
                if (!yes) {
                        declined = true;
                        conv_message(pamh, flags, PAM_ERROR_MSG, "You must accept the updated %s to log in.", l);
                        continue;
                }
                if (json_array_append_new(accepted, json_pack("{s:s, s:O, s:s}", "name", name, "version", version,
                                                              "state", "accepted")) < 0)
                        return PAM_BUF_ERR;
        }
        log_debug(pamh, o, "%zu of %zu updated consent(s) accepted", json_array_size(accepted),
                  json_array_size(consents));
        *ret_accepted = TAKE_PTR(accepted);
        *ret_declined = declined;
        return PAM_SUCCESS;
}

/* Whether idmd may be asked about user's account for this caller. idmd judges its peer by the
 * effective uid, so for a setuid-root program (su) run by an ordinary user it answers as for
 * root: whether the customer exists, is disabled, has consents to accept. Such a caller is told
 * only about a customer it authenticated in this PAM handle, or about the user it runs as (sudo
 * with cached credentials runs only the account step, for the invoking user), like pam_unix's
 * unix_chkpwd; about anyone else it gets PAM_PERM_DENIED, known customer or not, which is what
 * idmd answers an unprivileged peer that has not authenticated the user. Root, and processes
 * that are not setuid root, are left to idmd, which sees who they are. */
static bool account_may_ask(pam_handle_t *pamh, const char *user) {
        const struct passwd *pw;
        const void *p = NULL;
        uid_t uid = getuid();

        if (uid == 0 || geteuid() != 0)
                return true;
        if (pam_get_data(pamh, DATA_AUTH_USER, &p) == PAM_SUCCESS && p && streq(p, user))
                return true;
        pw = pam_modutil_getpwuid(pamh, uid);
        return pw && streq_ptr(pw->pw_name, user);
}

_public_ int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *result = NULL, *answers = NULL,
                                                *ignored = NULL;
        const char *user = NULL;
        json_t *consents;
        bool declined = false;
        IdmError e = {};
        _cleanup_(options_done) Options o = {};
        int r;

        r = phase_begin(pamh, argc, argv, PHASE_ACCOUNT, &o, &user);
        if (r != PAM_SUCCESS)
                return r;

        params = params_new(&o, user);
        if (!params)
                return PAM_BUF_ERR;
        r = connect_idmd(pamh, &o, &c);
        if (r < 0)
                return result_to_pam(PHASE_ACCOUNT, r, NULL, &o);
        /* After connecting: an idmd that is missing or away is told as to anyone (that says
         * nothing about its customers). The user name is not logged: it may be a probe. */
        if (!account_may_ask(pamh, user)) {
                pam_syslog(pamh, LOG_NOTICE, "%s: not asked for uid %u, which has not authenticated this user",
                           IDM_METHOD_PAM_ACCOUNT, (unsigned) getuid());
                return PAM_PERM_DENIED;
        }
        r = idm_client_call(&c, IDM_METHOD_PAM_ACCOUNT, params, &result, &e);
        idm_client_close(&c);
        if (r < 0)
                return call_failed(pamh, flags, &o, PHASE_ACCOUNT, IDM_METHOD_PAM_ACCOUNT, user, r, &c, &e);

        if (json_is_true(json_object_get(result, "disabled"))) {
                pam_syslog(pamh, LOG_NOTICE, "account of '%s' is disabled", user);
                conv_message(pamh, flags, PAM_ERROR_MSG, "Your account has been disabled.");
                return PAM_ACCT_EXPIRED;
        }

        consents = json_object_get(result, "consents");
        if (!json_is_true(json_object_get(result, "consentsUpdateRequired")) && json_array_size(consents) == 0)
                return PAM_SUCCESS;

        switch (o.consents) {
        case CONSENTS_IGNORE:
                log_debug(pamh, &o, "consents outdated for '%s', ignored (consents=ignore)", user);
                return PAM_SUCCESS;
        case CONSENTS_DENY:
                pam_syslog(pamh, LOG_NOTICE, "consents outdated for '%s', denied (consents=deny)", user);
                conv_message(pamh, flags, PAM_ERROR_MSG, "You must accept the updated terms before you can log in.");
                return PAM_PERM_DENIED;
        default:
                break;
        }

        r = ask_consents(pamh, flags, &o, consents, &answers, &declined);
        if (r != PAM_SUCCESS)
                return r;

        /* Record what was accepted (at the versions idmd listed); a decline needs no record. */
        if (json_array_size(answers) > 0) {
                if (json_object_set(params, "consents", answers) < 0)
                        return PAM_BUF_ERR;
                r = connect_idmd(pamh, &o, &c);
                if (r < 0)
                        return result_to_pam(PHASE_ACCOUNT, r, NULL, &o);
                r = idm_client_call(&c, IDM_METHOD_PAM_ACCEPT_CONSENTS, params, &ignored, &e);
                idm_client_close(&c);
                if (r < 0)
                        return call_failed(pamh, flags, &o, PHASE_ACCOUNT, IDM_METHOD_PAM_ACCEPT_CONSENTS, user, r,
                                           &c, &e);
        }
        if (declined) {
                pam_syslog(pamh, LOG_NOTICE, "updated consents declined by '%s'", user);
                return PAM_PERM_DENIED;
        }
        return PAM_SUCCESS;
}
