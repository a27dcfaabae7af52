/* SPDX-License-Identifier: MIT */
/*
 * What every phase of pam_idm shares (cf. pam_unix's support.c): the one mapping from idmd's
 * answers to PAM codes (result_to_pam()), the checks of user names, ids and tokens before they go
 * to idmd or into the PAM environment, building params, connecting, and logging a failed call
 * once. See pam_idm.h.
 */
#include <ctype.h>
#include <errno.h>
#include <security/pam_ext.h>
#include <string.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

/* ---- idmd's answers -> PAM codes -------------------------------------------------------- */

static int error_to_pam(Phase phase, const IdmError *e) {
        switch (e->code) {
        case IDM_RPC_METHOD_NOT_FOUND:
                return PAM_AUTHINFO_UNAVAIL;    /* an idmd older than this module */
        case IDM_ERR_BAD_REQUEST:
                return phase == PHASE_PASSWORD ? PAM_AUTHTOK_ERR : PAM_SERVICE_ERR;
        case IDM_ERR_UNAUTHORIZED:
                if (streq(e->reason, IDM_REASON_UNKNOWN_USER))
                        return phase == PHASE_SESSION ? PAM_SUCCESS : PAM_USER_UNKNOWN;
                return phase == PHASE_SESSION ? PAM_SESSION_ERR : PAM_AUTH_ERR;
        case IDM_ERR_FORBIDDEN:
                switch (phase) {
                case PHASE_AUTH:
                        return PAM_AUTH_ERR;
                case PHASE_ACCOUNT:
                        return streq(e->reason, IDM_REASON_ACCOUNT_DISABLED) ? PAM_ACCT_EXPIRED : PAM_PERM_DENIED;
                case PHASE_PASSWORD:
                        return PAM_PERM_DENIED;
                default:
                        return PAM_SESSION_ERR;
                }
        case IDM_ERR_NOT_FOUND:
                switch (phase) {
                case PHASE_AUTH:
                        return PAM_SERVICE_ERR;         /* publisher= or offer= unknown to idmd */
                case PHASE_SESSION:
                        return PAM_SUCCESS;             /* nothing left to close */
                default:
                        return PAM_USER_UNKNOWN;
                }
        case IDM_ERR_UNPROCESSABLE:
                return phase == PHASE_PASSWORD ? PAM_AUTHTOK_ERR :
                       phase == PHASE_AUTH     ? PAM_AUTH_ERR :
                       phase == PHASE_SESSION  ? PAM_SESSION_ERR : PAM_PERM_DENIED;
        case IDM_ERR_LOCKED:
                return phase == PHASE_SESSION ? PAM_SESSION_ERR : PAM_MAXTRIES;
        case IDM_ERR_TOO_MANY:
                if (streq(e->reason, IDM_REASON_TOO_MANY_CONNECTIONS))
                        return PAM_AUTHINFO_UNAVAIL;
                return phase == PHASE_SESSION ? PAM_SESSION_ERR : PAM_MAXTRIES;
        case IDM_ERR_UNAVAILABLE:
                return PAM_AUTHINFO_UNAVAIL;
        default:
                return PAM_SERVICE_ERR;         /* -32700..-32603 and anything unexpected */
        }
}

int result_to_pam(Phase phase, int r, const IdmError *e, const Options *o) {
        int pam;

        if (r >= 0)
                pam = PAM_SUCCESS;
        else if (r == -EREMOTEIO && e)
                pam = error_to_pam(phase, e);
        else if (r == -EREMOTEIO || r == -ENOMEM || r == -EINVAL || r == -ENAMETOOLONG)
                pam = PAM_SERVICE_ERR;          /* our own failure or configuration, not idmd's */
        else if (phase == PHASE_ACCOUNT && r == -ENOENT)
                /* No socket: idmd is not installed or not started, and local accounts keep
                 * working. A socket nobody listens on (idmd crashed) is not that: unavailable. */
                pam = PAM_USER_UNKNOWN;
        else
                pam = PAM_AUTHINFO_UNAVAIL;     /* absent, refusing, too slow, not trusted */

        if (pam == PAM_AUTHINFO_UNAVAIL && o->ignore_authinfo_unavail)
                return PAM_IGNORE;
        if (pam == PAM_USER_UNKNOWN && o->ignore_unknown_user)
                return PAM_IGNORE;
        if (pam == PAM_AUTHINFO_UNAVAIL && phase == PHASE_SESSION)
                return PAM_SESSION_ERR;
        return pam;
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* Publisher and offer ids: what idmd accepts for them (1-64 of A-Z a-z 0-9 _ - .). */
bool id_is_valid(const char *s, size_t max) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (!isascii((unsigned char) s[n]) || !(isalnum((unsigned char) s[n]) || strchr("_-.", s[n])))
                        return false;
        return n > 0 && n <= max;
}

/* Whether user can name a customer at all: an e-mail address (something@something), valid
 * UTF-8, without control characters. Anything else ("root") is PAM_USER_UNKNOWN without asking
 * idmd, which tells nobody anything about who exists. */
bool user_is_customer_name(const char *user) {
        _cleanup_(json_decrefp) json_t *s = NULL;
        const char *at;
        size_t n;

        if (!user)
                return false;
        n = strlen(user);
        at = strchr(user, '@');
        if (n == 0 || n > USER_MAX || !at || at == user || at[1] == '\0')
                return false;
        for (const char *p = user; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
        s = json_string(user);          /* NULL unless valid UTF-8 */
        return s != NULL;
}

bool token_is_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (!isascii((unsigned char) s[n]) || !(isalnum((unsigned char) s[n]) || strchr("-_.~+/=", s[n])))
                        return false;
        return n > 0 && n <= TOKEN_MAX;
}

/* A session id as idmd hands it out and accepts it (docs/rpc.md, pamCloseSession): 1-64 of
 * A-Z a-z 0-9 - _. */
bool session_id_is_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (!isascii((unsigned char) s[n]) || !(isalnum((unsigned char) s[n]) || strchr("-_", s[n])))
                        return false;
        return n > 0 && n <= SESSION_ID_MAX;
}

int get_user(pam_handle_t *pamh, const char **ret) {
        int r;

        r = pam_get_user(pamh, ret, NULL);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS) {
                pam_syslog(pamh, LOG_ERR, "cannot determine the user name: %s", pam_strerror(pamh, r));
                return r == PAM_CONV_ERR ? PAM_CONV_ERR : PAM_SERVICE_ERR;
        }
        return PAM_SUCCESS;
}

/* params for every PAM method: the publisher (or offer) and the user. */
json_t *params_new(const Options *o, const char *user) {
        if (o->publisher_id)
                return json_pack("{s:s, s:s}", "publisherId", o->publisher_id, "user", user);
        return json_pack("{s:s, s:s}", "offerId", o->offer_id, "user", user);
}

/* Adds the PAM context (service, rhost, tty, ruser) for idmd's audit log and rate limits. */
void params_add_context(pam_handle_t *pamh, json_t *params) {
        static const struct {
                int item;
                const char *name;
                size_t max;     /* what idmd accepts; longer values are left out */
        } items[] = {
                { PAM_SERVICE, "service", 256 },
                { PAM_RHOST, "rhost", 1024 },
                { PAM_TTY, "tty", 256 },
                { PAM_RUSER, "ruser", 256 },
        };

        for (size_t i = 0; i < ELEMENTSOF(items); i++) {
                const void *v = NULL;

                if (pam_get_item(pamh, items[i].item, &v) != PAM_SUCCESS || !v || !*(const char *) v ||
                    strlen(v) > items[i].max)
                        continue;
                /* json_string() refuses invalid UTF-8; such a value is left out. */
                (void) json_object_set_new(params, items[i].name, json_string(v));
        }
}

int connect_idmd(pam_handle_t *pamh, const Options *o, IdmClient *c) {
        int r;

        r = idm_client_connect(c, o->socket_path, o->daemon_user, o->connect_timeout, o->timeout);
        if (r < 0)
                pam_syslog(pamh, r == -EPERM || r == -ENOTSOCK ? LOG_ERR : LOG_WARNING, "idmd is not available: %s",
                           c->error);
        return r;
}

/* Logs a failed call once and returns its PAM code; shows the retry time for PAM_MAXTRIES. */
int call_failed(pam_handle_t *pamh, int flags, const Options *o, Phase phase, const char *method,
                const char *user, int r, const IdmClient *c, const IdmError *e) {
        int pam;

        if (r != -EREMOTEIO) {
                pam_syslog(pamh, LOG_ERR, "%s: idmd is not usable: %s", method, c->error);
                return result_to_pam(phase, r, e, o);
        }

        if (phase == PHASE_AUTH && e->code == IDM_ERR_UNAUTHORIZED && streq(e->reason, IDM_REASON_UNKNOWN_USER) &&
            getuid() != 0) {
                /* idmd tells "unknown user" to root peers, judged by the effective uid, so a
                 * setuid-root program (su) run by an ordinary user would learn who is a customer.
                 * Like pam_unix's unix_chkpwd, answer such a caller as for a wrong password. */
                pam_syslog(pamh, LOG_NOTICE, "%s: unknown user (not told to uid %u)", method, (unsigned) getuid());
                return result_to_pam(phase, r, &(IdmError) { .code = IDM_ERR_UNAUTHORIZED, .retry_after = -1 }, o);
        }

        pam = result_to_pam(phase, r, e, o);

        if (e->code == IDM_RPC_METHOD_NOT_FOUND)
                pam_syslog(pamh, LOG_ERR, "%s: idmd does not implement this method (older than pam_idm?)", method);
        else if (pam == PAM_SERVICE_ERR)
                pam_syslog(pamh, LOG_ERR, "%s: idmd refused the request: %d %s (%s)", method, e->code, e->reason,
                           e->message);
        else if (pam == PAM_USER_UNKNOWN || (pam == PAM_IGNORE && streq(e->reason, IDM_REASON_UNKNOWN_USER)))
                /* The name may be a mistyped password: not logged (cf. pam_faillock). */
                pam_syslog(pamh, LOG_NOTICE, "%s: unknown user", method);
        else
                pam_syslog(pamh, LOG_NOTICE, "%s: refused for user '%s': %d %s", method, user, e->code, e->reason);

        if (pam == PAM_MAXTRIES) {
                bool locked = e->code == IDM_ERR_LOCKED;
                const char *what = locked ? "This account is locked after too many failed attempts." :
                                            "Too many attempts.";

                if (e->retry_after < 0 || e->retry_after > IDM_RETRY_AFTER_MAX)
                        conv_message(pamh, flags, PAM_ERROR_MSG, "%s Try again later.", what);
                else if (e->retry_after < 60)
                        conv_message(pamh, flags, PAM_ERROR_MSG, "%s Try again in %lld second%s.", what,
                                     e->retry_after > 0 ? e->retry_after : 1, e->retry_after == 1 ? "" : "s");
                else {
                        long long minutes = (e->retry_after + 59) / 60;

                        conv_message(pamh, flags, PAM_ERROR_MSG, "%s Try again in %lld minute%s.", what, minutes,
                                     minutes == 1 ? "" : "s");
                }
        }
        return pam;
}
/* The start of the account and password phases: options, PAM_USER, and names that cannot be a
 * customer's answered as unknown without asking idmd. PAM_SUCCESS when the phase goes on. */
int phase_begin(pam_handle_t *pamh, int argc, const char **argv, Phase phase, Options *o,
                const char **ret_user) {
        int r;

        r = options_parse(pamh, argc, argv, o);
        if (r != PAM_SUCCESS)
                return r;
        r = get_user(pamh, ret_user);
        if (r != PAM_SUCCESS)
                return r;
        if (!user_is_customer_name(*ret_user))
                return result_to_pam(phase, -EREMOTEIO, &(IdmError) { .code = IDM_ERR_NOT_FOUND }, o);
        return PAM_SUCCESS;
}

