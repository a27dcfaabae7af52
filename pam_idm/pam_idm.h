/* SPDX-License-Identifier: MIT */
/*
 * pam_idm internals shared with its unit tests: the module options and the one mapping from
 * idmd's answers to PAM return codes. Nothing here is exported from pam_idm.so (pam_idm.map).
 */
#pragma once

#include <security/pam_modules.h>
#include <stdbool.h>

#include "pam_idm/client.h"

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
        bool debug;
        bool ignore_unknown_user;
        bool ignore_authinfo_unavail;
        bool export_env;
        bool export_tokens;
        bool qr;
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
 * answered the error e) or another negative errno (the transport failed, see client.h). Applies
 * ignore_unknown_user and ignore_authinfo_unavail from o.
 */
int result_to_pam(Phase phase, int r, const IdmError *e, const Options *o);

/*
 * The wait in seconds before the next pollDeviceLogin: interval as idmd gave it (or as last
 * returned), the RFC 8628 default of 5 s when it is not positive, 5 s more after a slow_down
 * answer, and at most 30 s, so that an approval is noticed soon and a bogus interval from idmd
 * cannot stretch the wait.
 */
json_int_t device_poll_interval(json_int_t interval, bool slow_down);
