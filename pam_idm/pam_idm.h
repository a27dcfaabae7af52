/* SPDX-License-Identifier: MIT */
/*
 * pam_idm internals, shared by its files and its unit tests. Nothing here is exported from
 * pam_idm.so (pam_idm.map; the module is built with -fvisibility=hidden).
 *
 * The module is split by concern, like pam_unix:
 *   options.c   module arguments and /etc/idm/pam_idm.conf (Options)
 *   support.c   what every phase shares: the one mapping from idmd's answers to PAM codes, the
 *               checks of user names and ids, building params, connecting, logging a failed call
 *   auth.c      pam_sm_authenticate (mode=password, code, device) and pam_sm_setcred
 *   reset.c     forgot password at the prompt (reset=code), for auth.c
 *   account.c   pam_sm_acct_mgmt (disabled accounts, the consents and capture prompts)
 *   password.c  pam_sm_chauthtok
 *   session.c   pam_sm_open_session, pam_sm_close_session
 *   conv.c      the conversation helpers (conv.h)
 * The transport to idmd is the idm-client library (client/idm-client.h), shared with idmctl.
 *
 * PAM_USER is the customer's e-mail, of one publisher (publisher= or offer=). Everything the
 * module needs between phases lives in idmd or in the PAM environment (the session id,
 * IDM_SESSION_ID), not in module memory: sshd authenticates in a forked child and imports only the
 * child's PAM environment into the process that closes the session. Logging goes through
 * pam_syslog() only; docs/pam_idm.md and pam_idm(8) describe options, return codes and stacks.
 *
 * Errors: functions returning int return a PAM code unless their comment says -errno; those that
 * log say so.
 */
#pragma once

#include <security/pam_modules.h>
#include <stdbool.h>
#include <syslog.h>

#include "client/idm-client.h"

#define SECRET_MAX 1024u                  /* longest password or code idmd accepts */
#define USER_MAX 320u                     /* longest user idmd accepts */
#define ID_MAX 128u                       /* customer, publisher, session ids */
#define TOKEN_MAX 8192u                   /* JWTs and opaque tokens */
#define SESSION_ID_MAX 64u                /* what idmd accepts as a sessionId */

/* PAM data and environment names shared between the phases. */
#define ENV_SESSION_ID "IDM_SESSION_ID"
#define DATA_SESSION "pam_idm_session"              /* SessionData, set by auth.c */
#define DATA_AUTH_USER "pam_idm_authenticated_user" /* char *, set by auth.c, read by account.c */

#define log_debug(pamh, o, ...)                                    \
        do {                                                       \
                if ((o)->debug)                                    \
                        pam_syslog((pamh), LOG_DEBUG, __VA_ARGS__); \
        } while (0)

typedef enum Mode {
        MODE_PASSWORD,
        MODE_CODE,
        MODE_DEVICE,
        _MODE_MAX,
        _MODE_INVALID = -EINVAL,
} Mode;

typedef enum ConsentPolicy {
        CONSENTS_PROMPT,
        CONSENTS_DENY,
        CONSENTS_IGNORE,
        _CONSENTS_MAX,
        _CONSENTS_INVALID = -EINVAL,
} ConsentPolicy;

/* Which pam_sm_* asks: the same idmd answer means different PAM codes in different phases. */
typedef enum Phase {
        PHASE_AUTH,
        PHASE_ACCOUNT,
        PHASE_PASSWORD,
        PHASE_SESSION,
        _PHASE_MAX,
        _PHASE_INVALID = -EINVAL,
} Phase;

typedef struct Options {
        const char *socket_path;  /* strings are borrowed from argv */
        const char *publisher_id;
        const char *offer_id;
        const char *daemon_user;  /* user= : who besides root may own the socket */
        usec_t connect_timeout;
        usec_t timeout;
        Mode mode;
        ConsentPolicy consents;
        ConsentPolicy capture;    /* the same three answers for profile questions */
        bool debug;
        bool ignore_unknown_user;
        bool ignore_authinfo_unavail;
        bool export_env;
        bool export_tokens;
        bool qr;
        bool unix_users;          /* unix: the account step checks the user's uid is the one idmd gave */
        bool reset_code;          /* reset=code: an empty password offers a reset code by mail */
        bool use_first_pass;      /* read by pam_get_authtok() too; mode=code needs it itself */
        int naming_rank;          /* which source set publisher/offer: 1 file, 2 arguments */
        char **owned;             /* strings read from the configuration file */
        size_t n_owned;
} Options;

/*
 * Reads the configuration file (conf=PATH, default /etc/idm/pam_idm.conf, "name = value" lines
 * with the options' names), then the module arguments, which override it, into *ret (defaults for
 * everything not given). Unknown options are logged and ignored. Returns PAM_SUCCESS, or
 * PAM_SERVICE_ERR (logged) when a value or the file is invalid or neither publisher= nor offer=
 * is given: the module fails closed on a broken configuration. Strings in *ret are borrowed from
 * argv or owned by *ret: release it with options_done().
 */
int options_parse(pam_handle_t *pamh, int argc, const char **argv, Options *ret);
void options_done(Options *o);

/*
 * The PAM code for the outcome of an idmd call in a phase: r is 0 (success), -EREMOTEIO (idmd
 * answered the error e) or another negative errno (the transport failed, see
 * client/idm-client.h). Applies ignore_unknown_user and ignore_authinfo_unavail from o.
 */
int result_to_pam(Phase phase, int r, const IdmError *e, const Options *o);

/*
 * The wait in seconds before the next pollDeviceLogin: interval as idmd gave it (or as last
 * returned), the RFC 8628 default of 5 s when it is not positive, 5 s more after a slow_down
 * answer, and at most 30 s, so that an approval is noticed soon and a bogus interval from idmd
 * cannot stretch the wait.
 */
json_int_t device_poll_interval(json_int_t interval, bool slow_down);

/* The idmd session a successful authentication opened, kept in the PAM handle (DATA_SESSION) for
 * pam_sm_close_session() in the same process. Owned by the handle; strings are wiped when freed. */
typedef struct SessionData {
        char *user;
        char *session_id;
} SessionData;

/* ---- support.c ---- */

/* Publisher, offer and customer ids: 1-max of A-Z a-z 0-9 _ - . (what idmd accepts for them). */
bool id_is_valid(const char *s, size_t max);

/* Whether user can name a customer at all: an e-mail address (something@something), valid
 * UTF-8, without control characters. Anything else ("root") is answered without asking idmd. */
bool user_is_customer_name(const char *user);

/* A token or code as idmd hands them out: 1-TOKEN_MAX of A-Z a-z 0-9 - _ . ~ + / =. */
bool token_is_valid(const char *s);

/* A session id as idmd hands it out and accepts it: 1-64 of A-Z a-z 0-9 - _. */
bool session_id_is_valid(const char *s);

/* PAM_USER, asked for if needed. PAM_SUCCESS, PAM_INCOMPLETE (conversation to be resumed), or
 * PAM_CONV_ERR / PAM_SERVICE_ERR (logged). */
int get_user(pam_handle_t *pamh, const char **ret);

/* New params for every PAM method: the publisher (or offer) and the user. NULL when out of
 * memory. */
json_t *params_new(const Options *o, const char *user);

/* Adds the PAM context (service, rhost, tty, ruser) for idmd's audit log and rate limits; values
 * idmd would refuse are left out. */
void params_add_context(pam_handle_t *pamh, json_t *params);

/* idm_client_connect() with the module's options; a failure is logged. Returns 0 or the -errno of
 * idm_client_connect(), for result_to_pam(). */
int connect_idmd(pam_handle_t *pamh, const Options *o, IdmClient *c);

/* Logs a failed idmd call once (r, c->error and e as idm_client_call() left them) and returns
 * its PAM code for phase; tells the user when to retry for PAM_MAXTRIES. */
int call_failed(pam_handle_t *pamh, int flags, const Options *o, Phase phase, const char *method,
                const char *user, int r, const IdmClient *c, const IdmError *e);

/* The start of the account and password phases: options, PAM_USER, and names that cannot be a
 * customer's answered as unknown without asking idmd. PAM_SUCCESS when the phase goes on; *o
 * must be released with options_done() either way. */
int phase_begin(pam_handle_t *pamh, int argc, const char **argv, Phase phase, Options *o,
                const char **ret_user);

/* reset=code (reset.c): offers a reset code by mail, asks for it and a new password twice, and
 * has idmd set the password. PAM_SUCCESS with *ret_password (the new password, to wipe), or the
 * PAM code to fail with (the user has been told why). */
int reset_by_code(pam_handle_t *pamh, int flags, const Options *o, const char *user, char **ret_password);
