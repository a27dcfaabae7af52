/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's account step: pam_sm_acct_mgmt() asks idmd (pamAccount) whether the customer may
 * log in now: a disabled account is PAM_ACCT_EXPIRED; outdated required consents are asked
 * about (consents=prompt, then pamAcceptConsents), refused (deny) or let through (ignore); and
 * required capture fields not answered yet are asked for (capture=prompt, then
 * pamCaptureAnswers), refused with a message naming them (deny) or let through (ignore). A
 * setuid-root caller is told only about the user it authenticated or runs as (account_may_ask()).
 */
#include <errno.h>
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modutil.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

#define CONSENTS_MAX 32u                  /* consents asked for in one acct_mgmt call */
#define CAPTURE_ITEMS_MAX 25u             /* capture fields asked for in one acct_mgmt call */
#define CAPTURE_FIELDS_MAX 6u             /* answer fields of one capture field */
#define CAPTURE_TRIES 3                   /* rounds of questions before giving up */

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

/* The consents part of the account step. */
static int account_consents(pam_handle_t *pamh, int flags, const Options *o, const char *user, json_t *params,
                            json_t *result) {
        _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
        _cleanup_(json_wipe_and_decrefp) json_t *answers = NULL, *ignored = NULL;
        json_t *consents = json_object_get(result, "consents");
        bool declined = false;
        IdmError e = {};
        int r;

        if (!json_is_true(json_object_get(result, "consentsUpdateRequired")) && json_array_size(consents) == 0)
                return PAM_SUCCESS;

        switch (o->consents) {
        case CONSENTS_IGNORE:
                log_debug(pamh, o, "consents outdated for '%s', ignored (consents=ignore)", user);
                return PAM_SUCCESS;
        case CONSENTS_DENY:
                pam_syslog(pamh, LOG_NOTICE, "consents outdated for '%s', denied (consents=deny)", user);
                conv_message(pamh, flags, PAM_ERROR_MSG, "You must accept the updated terms before you can log in.");
                return PAM_PERM_DENIED;
        default:
                break;
        }

        r = ask_consents(pamh, flags, o, consents, &answers, &declined);
        if (r != PAM_SUCCESS)
                return r;

        /* Record what was accepted (at the versions idmd listed); a decline needs no record. */
        if (json_array_size(answers) > 0) {
                if (json_object_set(params, "consents", answers) < 0)
                        return PAM_BUF_ERR;
                r = connect_idmd(pamh, o, &c);
                if (r < 0)
                        return result_to_pam(PHASE_ACCOUNT, r, NULL, o);
                r = idm_client_call(&c, IDM_METHOD_PAM_ACCEPT_CONSENTS, params, &ignored, &e);
                idm_client_close(&c);
                (void) json_object_del(params, "consents");
                if (r < 0)
                        return call_failed(pamh, flags, o, PHASE_ACCOUNT, IDM_METHOD_PAM_ACCEPT_CONSENTS, user, r,
                                           &c, &e);
        }
        if (declined) {
                pam_syslog(pamh, LOG_NOTICE, "updated consents declined by '%s'", user);
                return PAM_PERM_DENIED;
        }
        return PAM_SUCCESS;
}

/* The prompt for an answer field; NULL for a name pam_idm does not know. */
static const char *field_prompt(const char *field) {
        static const struct {
                const char *field, *prompt;
        } prompts[] = {
                { "firstName", "First name: " },
                { "lastName", "Last name: " },
                { "birthDate", "Date of birth (YYYY-MM-DD): " },
                { "companyName", "Company: " },
                { "phoneNumber", "Phone number (e.g. +44 20 7946 0958): " },
                { "address", "Street address: " },
                { "address2", "Address line 2 (optional): " },
                { "city", "City: " },
                { "state", "State or region (optional): " },
                { "postCode", "Postal code: " },
                { "country", "Country (two letters, e.g. GB): " },
        };

        for (size_t i = 0; i < ELEMENTSOF(prompts); i++)
                if (streq(prompts[i].field, field))
                        return prompts[i].prompt;
        return NULL;
}

static bool is_custom_field(const char *field) {
        return strncmp(field, "custom_", 7) == 0 && strlen(field) > 7 && strlen(field) <= 10;
}

/* A short description of one missing capture item for messages: its question, or its key. */
static const char *item_label(json_t *item, char *buf, size_t size) {
        const char *question = json_object_get_string(item, "question");

        return conv_sanitize(buf, size, question && *question ? question : json_object_get_string(item, "key"));
}

/* Checks idmd's list of missing capture items before anything is asked. */
static bool capture_list_ok(pam_handle_t *pamh, json_t *capture) {
        json_t *item, *f;
        size_t i, j;

        if (json_array_size(capture) == 0 || json_array_size(capture) > CAPTURE_ITEMS_MAX)
                goto bad;
        json_array_foreach(capture, i, item) {
                json_t *fields = json_object_get(item, "fields");

                if (!json_object_get_string(item, "key") || json_array_size(fields) == 0 ||
                    json_array_size(fields) > CAPTURE_FIELDS_MAX)
                        goto bad;
                json_array_foreach(fields, j, f)
                        if (!json_is_string(f) ||
                            !(field_prompt(json_string_value(f)) || is_custom_field(json_string_value(f))))
                                goto bad;
        }
        return true;
bad:
        pam_syslog(pamh, LOG_ERR, "malformed capture list from idmd, refusing");
        return false;
}

/* Tells the user which profile questions are missing (capture=deny, or after giving up). */
static void capture_tell_missing(pam_handle_t *pamh, int flags, json_t *capture) {
        char list[512] = "", label[128];
        json_t *item;
        size_t i;

        json_array_foreach(capture, i, item) {
                size_t len = strlen(list);

                (void) snprintf(list + len, sizeof(list) - len, "%s%s", i > 0 ? ", " : "",
                                item_label(item, label, sizeof(label)));
        }
        conv_message(pamh, flags, PAM_ERROR_MSG, "Your profile must be completed before you can log in: %s.", list);
}

/* Asks one answer field; *ret is the answer without surrounding blanks (possibly empty). */
static int ask_field(pam_handle_t *pamh, json_t *item, const char *field, char **ret) {
        _cleanup_free_ char *answer = NULL;
        char question[1200], q[512], options[600];
        const char *value, *a;
        size_t len;
        int r;

        if (is_custom_field(field)) {
                value = json_object_get_string(item, "value");
                (void) conv_sanitize(q, sizeof(q), json_object_get_string(item, "question"));
                if (value && *value) {
                        (void) conv_sanitize(options, sizeof(options), value);
                        (void) snprintf(question, sizeof(question), "%s (one of: %s): ", q, options);
                } else
                        (void) snprintf(question, sizeof(question), "%s ", q);
        } else
                (void) snprintf(question, sizeof(question), "%s", field_prompt(field));

        r = pam_prompt(pamh, PAM_PROMPT_ECHO_ON, &answer, "%s", question);
        if (r != PAM_SUCCESS)
                return r;
        a = strempty(answer);
        while (*a == ' ' || *a == '\t')
                a++;
        len = strlen(a);
        while (len > 0 && (a[len - 1] == ' ' || a[len - 1] == '\t' || a[len - 1] == '\n' || a[len - 1] == '\r'))
                len--;
        *ret = strndup(a, len);
        return *ret ? PAM_SUCCESS : PAM_BUF_ERR;
}

/* Asks every field of every missing capture item once; *ret becomes pamCaptureAnswers'
 * answers object. */
static int ask_capture(pam_handle_t *pamh, json_t *capture, json_t **ret) {
        _cleanup_(json_decrefp) json_t *answers = json_object(), *custom = json_array();
        json_t *item, *f;
        size_t i, j;

        if (!answers || !custom)
                return PAM_BUF_ERR;
        json_array_foreach(capture, i, item)
                json_array_foreach(json_object_get(item, "fields"), j, f) {
                        _cleanup_free_ char *answer = NULL;
                        const char *field = json_string_value(f);
                        int r;

                        r = ask_field(pamh, item, field, &answer);
                        if (r != PAM_SUCCESS)
                                return r;
                        if (!*answer)
                                continue;       /* optional parts may stay empty; idmd decides */
                        if (is_custom_field(field))
                                r = json_array_append_new(custom, json_pack("{s:s, s:s}", "questionId", field,
                                                                            "value", answer));
                        else
                                r = json_object_set_new(answers, field, json_string(answer));
                        if (r < 0)
                                return PAM_BUF_ERR;
                }
        if (json_array_size(custom) > 0 && json_object_set(answers, "customAnswers", custom) < 0)
                return PAM_BUF_ERR;
        *ret = TAKE_PTR(answers);
        return PAM_SUCCESS;
}

/* capture=prompt: asks, records through pamCaptureAnswers, and asks again (up to CAPTURE_TRIES
 * rounds) while idmd refuses an answer or still misses one. */
static int prompt_capture(pam_handle_t *pamh, int flags, const Options *o, json_t *params, json_t *capture) {
        _cleanup_(json_decrefp) json_t *missing = json_incref(capture);

        for (int round = 0; round < CAPTURE_TRIES; round++) {
                _cleanup_(idm_client_close) IdmClient c = IDM_CLIENT_INIT;
                _cleanup_(json_wipe_and_decrefp) json_t *answers = NULL, *result = NULL;
                IdmError e = {};
                int r;

                if (round == 0)
                        conv_message(pamh, flags, PAM_TEXT_INFO, "Please complete your profile.");
                r = ask_capture(pamh, missing, &answers);
                if (r == PAM_CONV_AGAIN)
                        return PAM_INCOMPLETE;
                if (r != PAM_SUCCESS) {
                        pam_syslog(pamh, LOG_NOTICE, "cannot ask for the profile: %s", pam_strerror(pamh, r));
                        return PAM_PERM_DENIED;
                }
                if (json_object_set(params, "answers", answers) < 0)
                        return PAM_BUF_ERR;
                r = connect_idmd(pamh, o, &c);
                if (r < 0)
                        return result_to_pam(PHASE_ACCOUNT, r, NULL, o);
                r = idm_client_call(&c, IDM_METHOD_PAM_CAPTURE_ANSWERS, params, &result, &e);
                if (r == -EREMOTEIO && (e.code == IDM_ERR_BAD_REQUEST || e.code == IDM_ERR_UNPROCESSABLE ||
                                        e.code == IDM_RPC_INVALID_PARAMS)) {
                        char m[256];

                        conv_message(pamh, flags, PAM_ERROR_MSG, "%s", conv_sanitize(m, sizeof(m), e.message));
                        continue;
                }
                if (r < 0)
                        return call_failed(pamh, flags, o, PHASE_ACCOUNT, IDM_METHOD_PAM_CAPTURE_ANSWERS,
                                           json_object_get_string(params, "user"), r, &c, &e);
                idm_client_close(&c);

                /* Stored: is anything still missing (a required part left empty)? */
                json_decref(result);
                result = NULL;
                (void) json_object_del(params, "answers");
                r = connect_idmd(pamh, o, &c);
                if (r < 0)
                        return result_to_pam(PHASE_ACCOUNT, r, NULL, o);
                r = idm_client_call(&c, IDM_METHOD_PAM_ACCOUNT, params, &result, &e);
                if (r < 0)
                        return call_failed(pamh, flags, o, PHASE_ACCOUNT, IDM_METHOD_PAM_ACCOUNT,
                                           json_object_get_string(params, "user"), r, &c, &e);
                if (!json_is_true(json_object_get(result, "captureRequired")))
                        return PAM_SUCCESS;
                json_decref(missing);
                /* A copy: result is wiped when it goes. */
                missing = json_deep_copy(json_object_get(result, "capture"));
                if (!missing)
                        return PAM_BUF_ERR;
                if (!capture_list_ok(pamh, missing))
                        return PAM_PERM_DENIED;
                conv_message(pamh, flags, PAM_ERROR_MSG, "Some required answers are still missing.");
        }
        capture_tell_missing(pamh, flags, missing);
        pam_syslog(pamh, LOG_NOTICE, "profile questions left unanswered by '%s'",
                   json_object_get_string(params, "user"));
        return PAM_PERM_DENIED;
}

/* The capture part of the account step, after consents. */
static int account_capture(pam_handle_t *pamh, int flags, const Options *o, const char *user, json_t *params,
                           json_t *result) {
        json_t *capture = json_object_get(result, "capture");

        if (!json_is_true(json_object_get(result, "captureRequired")))
                return PAM_SUCCESS;
        if (!capture_list_ok(pamh, capture))
                return PAM_PERM_DENIED;
        switch (o->capture) {
        case CONSENTS_IGNORE:
                log_debug(pamh, o, "profile incomplete for '%s', ignored (capture=ignore)", user);
                return PAM_SUCCESS;
        case CONSENTS_DENY:
                pam_syslog(pamh, LOG_NOTICE, "profile incomplete for '%s', denied (capture=deny)", user);
                capture_tell_missing(pamh, flags, capture);
                return PAM_PERM_DENIED;
        default:
                return prompt_capture(pamh, flags, o, params, capture);
        }
}

/* unix: the user name must resolve (NSS: nss-systemd asking idmd's userdb) to the uid idmd gave
 * the customer, so that a local account that happens to carry a customer's name (an
 * /etc/passwd line before "systemd" in nsswitch.conf) never gets the customer's login. A
 * customer that is not a Unix user (unixUid null) has no account here at all. */
static int account_unix(pam_handle_t *pamh, int flags, const char *user, json_t *uid) {
        const struct passwd *pw;

        if (!json_is_integer(uid) || json_integer_value(uid) <= 0) {
                pam_syslog(pamh, LOG_NOTICE, "'%s' is not a Unix user of idmd (unix), refusing", user);
                conv_message(pamh, flags, PAM_ERROR_MSG, "Your account may not log in on this machine.");
                return PAM_PERM_DENIED;
        }
        pw = pam_modutil_getpwnam(pamh, user);
        if (!pw || (json_int_t) pw->pw_uid != json_integer_value(uid)) {
                if (pw)
                        pam_syslog(pamh, LOG_ERR, "'%s' resolves to uid %u, not to the customer's uid %lld: "
                                   "another account has its name; refusing", user, (unsigned) pw->pw_uid,
                                   (long long) json_integer_value(uid));
                else
                        pam_syslog(pamh, LOG_ERR, "'%s' does not resolve to a Unix user (is nss-systemd in "
                                   "nsswitch.conf and [userdb] on?); refusing", user);
                conv_message(pamh, flags, PAM_ERROR_MSG,
                             "Your account cannot log in on this machine: its Unix user does not match.");
                return PAM_PERM_DENIED;
        }
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
        _cleanup_(json_wipe_and_decrefp) json_t *params = NULL, *result = NULL;
        const char *user = NULL;
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

        if (o.unix_users) {
                r = account_unix(pamh, flags, user, json_object_get(result, "unixUid"));
                if (r != PAM_SUCCESS)
                        return r;
        }

        r = account_consents(pamh, flags, &o, user, params, result);
        if (r != PAM_SUCCESS)
                return r;
        return account_capture(pamh, flags, &o, user, params, result);
}
