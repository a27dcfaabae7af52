/* SPDX-License-Identifier: MIT */
/*
 * pam_idm: the PAM module that lets login, sshd, display managers and kiosk apps authenticate a
 * customer of one publisher (PAM_USER = the customer's e-mail) against idmd, and that runs the
 * account (consents), password change and session steps through it.
 *
 * This file holds the pam_sm_* entry points, their argument parsing and the one mapping from
 * idmd's answers to PAM codes; client.c is the socket transport, conv.c the conversation helpers.
 * Everything the module needs between phases lives in idmd or in the PAM environment (the
 * session id, IDM_SESSION_ID), not in module memory: sshd authenticates in a forked child and
 * imports only the child's PAM environment into the process that closes the session. Logging
 * goes through pam_syslog() only; docs/pam_idm.md and pam_idm(8) describe options, return codes
 * and stacks.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "pam_idm/client.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"

#define FAIL_DELAY_USEC 2000000u          /* like pam_unix */
#define SECRET_MAX 1024u                  /* longest password or code idmd accepts */
#define USER_MAX 320u                     /* longest user idmd accepts */
#define ID_MAX 128u                       /* customer, publisher, session ids */
#define TOKEN_MAX 8192u                   /* JWTs and opaque tokens */
#define CONSENTS_MAX 32u                  /* consents asked for in one acct_mgmt call */
#define TIMEOUT_MAX_USEC (3600 * USEC_PER_SEC)
#define SESSION_ID_MAX 64u                /* what idmd accepts as a sessionId */
#define DEVICE_EXPIRY_MAX_SEC 3600
#define DEVICE_INTERVAL_DEFAULT_SEC 5     /* RFC 8628 section 3.2 */
#define DEVICE_INTERVAL_SLOW_DOWN_SEC 5   /* RFC 8628 section 3.5 */
#define DEVICE_INTERVAL_MAX_SEC 30
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)
#define ENV_SESSION_ID "IDM_SESSION_ID"
#define DATA_SESSION "pam_idm_session"
#define DATA_SETCRED "pam_idm_setcred_return"
#define DATA_AUTH_USER "pam_idm_authenticated_user"
#define PAM_IDM_CONF "/etc/idm/pam_idm.conf"

#define log_debug(pamh, o, ...)                                    \
        do {                                                       \
                if ((o)->debug)                                    \
                        pam_syslog((pamh), LOG_DEBUG, __VA_ARGS__); \
        } while (0)

/* ---- options ---------------------------------------------------------------------------- */

static const char *const mode_table[_MODE_MAX] = {
        [MODE_PASSWORD] = "password",
        [MODE_CODE] = "code",
        [MODE_DEVICE] = "device",
};

static const char *const consents_table[_CONSENTS_MAX] = {
        [CONSENTS_PROMPT] = "prompt",
        [CONSENTS_DENY] = "deny",
        [CONSENTS_IGNORE] = "ignore",
};

static int table_lookup(const char *const *table, int n, const char *s) {
        for (int i = 0; i < n; i++)
                if (streq(table[i], s))
                        return i;
        return -EINVAL;
}

/* "SECONDS": a decimal number of seconds ("2", "0.5"), parsed without the locale, in
 * (0, 3600]. */
static int parse_seconds(const char *s, usec_t *ret) {
        usec_t v = 0, scale = USEC_PER_SEC;
        bool digits = false;

        for (; *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (usec_t) (*s - '0') * USEC_PER_SEC;
                digits = true;
                if (v > TIMEOUT_MAX_USEC)
                        return -ERANGE;
        }
        if (*s == '.') {
                for (s++; *s >= '0' && *s <= '9'; s++) {
                        scale /= 10;
                        v += (usec_t) (*s - '0') * scale;
                        digits = true;
                }
        }
        if (*s != '\0' || !digits)
                return -EINVAL;
        if (v == 0 || v > TIMEOUT_MAX_USEC)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* Publisher and offer ids: what idmd accepts for them (1-64 of A-Z a-z 0-9 _ - .). */
static bool id_is_valid(const char *s, size_t max) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (!isascii((unsigned char) s[n]) || !(isalnum((unsigned char) s[n]) || strchr("_-.", s[n])))
                        return false;
        return n > 0 && n <= max;
}

static const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static bool is_flag(const char *name) {
        return streq(name, "debug") || streq(name, "ignore_unknown_user") || streq(name, "ignore_authinfo_unavail") ||
               streq(name, "export_env") || streq(name, "export_tokens") || streq(name, "qr");
}

static void flag_set(Options *o, const char *name, bool value) {
        if (streq(name, "debug"))
                o->debug = value;
        else if (streq(name, "ignore_unknown_user"))
                o->ignore_unknown_user = value;
        else if (streq(name, "ignore_authinfo_unavail"))
                o->ignore_authinfo_unavail = value;
        else if (streq(name, "export_env"))
                o->export_env = value;
        else if (streq(name, "export_tokens"))
                o->export_tokens = value;
        else if (streq(name, "qr"))
                o->qr = value;
}

/* Where a setting came from, for messages and for "arguments override the file". */
typedef struct Source {
        const char *file;       /* NULL: module arguments */
        unsigned line;
        int rank;               /* 1 file, 2 arguments */
} Source;

#define log_option(pamh, src, fmt, ...)                                                         \
        do {                                                                                    \
                if ((src)->file)                                                                \
                        pam_syslog((pamh), LOG_ERR, "%s:%u: " fmt, (src)->file, (src)->line,    \
                                   __VA_ARGS__);                                                \
                else                                                                            \
                        pam_syslog((pamh), LOG_ERR, fmt, __VA_ARGS__);                          \
        } while (0)

/* Applies one "name=value" (or "name" for a flag). Returns false for an invalid value (logged);
 * the string must outlive o. */
static bool option_apply(pam_handle_t *pamh, Options *o, const Source *src, const char *a) {
        const char *v;

        if (is_flag(a))
                flag_set(o, a, true);
        else if (streq(a, "use_first_pass") || streq(a, "try_first_pass") || streq(a, "use_authtok") ||
                 startswith(a, "authtok_type=")) {
                /* Read by pam_get_authtok() from the module arguments, and only from there. */
                if (src->file)
                        log_option(pamh, src, "'%s' works only as a module argument, ignoring", a);
                else if (streq(a, "use_first_pass"))
                        o->use_first_pass = true;
        } else if (startswith(a, "conf=")) {
                if (src->file)
                        log_option(pamh, src, "'%s' works only as a module argument, ignoring", a);
        } else if ((v = startswith(a, "socket="))) {
                if (v[0] != '/') {
                        log_option(pamh, src, "socket path '%s' is not absolute", v);
                        return false;
                }
                /* Caught here, not at connect(): a path that can never work is a configuration
                 * error (PAM_SERVICE_ERR), not an idmd that is away (PAM_AUTHINFO_UNAVAIL). */
                if (strlen(v) > SOCKET_PATH_MAX) {
                        log_option(pamh, src, "socket path '%s' is longer than %zu bytes", v, SOCKET_PATH_MAX);
                        return false;
                }
                o->socket_path = v;
        } else if ((v = startswith(a, "publisher=")) || (v = startswith(a, "offer="))) {
                bool publisher = a[0] == 'p';

                if (!id_is_valid(v, 64)) {
                        log_option(pamh, src, "invalid %s id '%s'", publisher ? "publisher" : "offer", v);
                        return false;
                }
                /* Module arguments name the publisher instead of the file, not in addition. */
                if (o->naming_rank < src->rank)
                        o->publisher_id = o->offer_id = NULL;
                o->naming_rank = src->rank;
                if (publisher)
                        o->publisher_id = v;
                else
                        o->offer_id = v;
        } else if ((v = startswith(a, "user="))) {
                if (v[0] == '\0') {
                        log_option(pamh, src, "empty %s", "user=");
                        return false;
                }
                o->daemon_user = v;
        } else if ((v = startswith(a, "connect_timeout="))) {
                if (parse_seconds(v, &o->connect_timeout) < 0) {
                        log_option(pamh, src, "invalid connect_timeout '%s' (seconds, up to 3600)", v);
                        return false;
                }
        } else if ((v = startswith(a, "timeout="))) {
                if (parse_seconds(v, &o->timeout) < 0) {
                        log_option(pamh, src, "invalid timeout '%s' (seconds, up to 3600)", v);
                        return false;
                }
        } else if ((v = startswith(a, "mode="))) {
                int m = table_lookup(mode_table, _MODE_MAX, v);

                if (m < 0) {
                        log_option(pamh, src, "invalid mode '%s' (password, code or device)", v);
                        return false;
                }
                o->mode = (Mode) m;
        } else if ((v = startswith(a, "consents="))) {
                int m = table_lookup(consents_table, _CONSENTS_MAX, v);

                if (m < 0) {
                        log_option(pamh, src, "invalid consents '%s' (prompt, deny or ignore)", v);
                        return false;
                }
                o->consents = (ConsentPolicy) m;
        } else
                log_option(pamh, src, "unknown option '%s', ignoring", a);
        return true;
}

static int options_keep(Options *o, char *s) {
        char **n = reallocarray(o->owned, o->n_owned + 1, sizeof(char *));

        if (!n) {
                free(s);
                return -ENOMEM;
        }
        o->owned = n;
        o->owned[o->n_owned++] = s;
        return 0;
}

typedef struct ConfReader {
        pam_handle_t *pamh;
        Options *options;
        Source source;
        FILE *f;
        bool bad;
} ConfReader;

/* fgets() for ini_parse_stream(), counting lines for messages (Debian's libinih has no line
 * numbers in the handler). A line that does not fit into libinih's buffer (INI_MAX_LINE) ends the
 * parse and makes the file bad: fgets() would hand the rest of it over as a line of its own, and a
 * long comment could end in a setting that takes effect. */
static char *conf_read_line(char *str, int num, void *userdata) {
        ConfReader *r = userdata;
        char *l = fgets(str, num, r->f);
        int ch;

        if (!l)
                return NULL;
        r->source.line++;
        if (strchr(l, '\n') || feof(r->f))
                return l;
        /* The buffer is full: fine if the line ends right here, else it is too long (or holds a
         * NUL byte, which hides the newline from strchr()). */
        ch = getc(r->f);
        if (ch == '\n' || ch == EOF)
                return l;
        log_option(r->pamh, &r->source, "line is longer than %d bytes or contains a NUL byte, refusing", num - 1);
        r->bad = true;
        return NULL;
}

static int conf_handle(void *userdata, const char *section, const char *name, const char *value) {
        ConfReader *r = userdata;
        char *a = NULL;

        if (!streq(strempty(section), "")) {
                log_option(r->pamh, &r->source, "sections are not used ([%s]), refusing", section);
                r->bad = true;
                return 1;
        }
        if (streq(name, "use_first_pass") || streq(name, "try_first_pass") || streq(name, "use_authtok")) {
                log_option(r->pamh, &r->source, "'%s' works only as a module argument, ignoring", name);
                return 1;
        }
        if (is_flag(name)) {
                if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0 || streq(value, "1") ||
                    strcasecmp(value, "on") == 0)
                        flag_set(r->options, name, true);
                else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0 || streq(value, "0") ||
                         strcasecmp(value, "off") == 0)
                        flag_set(r->options, name, false);
                else {
                        log_option(r->pamh, &r->source, "invalid value '%s' for %s (yes or no)", value, name);
                        r->bad = true;
                }
                return 1;
        }
        if (asprintf(&a, "%s=%s", name, value) < 0 || options_keep(r->options, a) < 0) {
                r->bad = true;
                return 0;
        }
        if (!option_apply(r->pamh, r->options, &r->source, a))
                r->bad = true;
        return 1;
}

/* Reads the configuration file: "name = value" lines, the same names as the module arguments
 * (flags take yes/no). It decides where passwords go (socket=), so it must belong to root and be
 * writable by nobody else. A missing default file is fine; a missing conf= file is not. */
static bool conf_load(pam_handle_t *pamh, Options *o, const char *path, bool explicit) {
        ConfReader r = { .pamh = pamh, .options = o, .source = { .file = path, .rank = 1 } };
        struct stat st;
        int fd, line;

        /* O_NONBLOCK: a FIFO put at the path must not block the login in open(); O_NOFOLLOW: the
         * file is checked below, not whatever a symlink points to. */
        fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno == ENOENT && !explicit)
                        return true;
                if (errno == ELOOP)
                        pam_syslog(pamh, LOG_ERR, "configuration '%s' is a symlink, refusing", path);
                else
                        pam_syslog(pamh, LOG_ERR, "cannot open configuration '%s': %m", path);
                return false;
        }
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022)) {
                pam_syslog(pamh, LOG_ERR,
                           "configuration '%s' is not a regular file owned by root and writable only by it, "
                           "refusing", path);
                (void) close(fd);
                return false;
        }
        r.f = fdopen(fd, "re");
        if (!r.f) {
                pam_syslog(pamh, LOG_ERR, "cannot read configuration '%s': %m", path);
                (void) close(fd);
                return false;
        }
        line = ini_parse_stream(conf_read_line, &r, conf_handle, &r);
        (void) fclose(r.f);
        if (line > 0) {
                pam_syslog(pamh, LOG_ERR, "%s:%d: syntax error (expected 'name = value')", path, line);
                return false;
        }
        return !r.bad;
}

void options_done(Options *o) {
        for (size_t i = 0; i < o->n_owned; i++)
                free(o->owned[i]);
        free(o->owned);
        o->owned = NULL;
        o->n_owned = 0;
}

int options_parse(pam_handle_t *pamh, int argc, const char **argv, Options *ret) {
        _cleanup_(options_done) Options o = {
                .socket_path = IDM_DEFAULT_SOCKET,
                .daemon_user = "idmd",
                .connect_timeout = 2 * USEC_PER_SEC,
                .timeout = 15 * USEC_PER_SEC,
                .mode = MODE_PASSWORD,
                .consents = CONSENTS_PROMPT,
        };
        const Source args = { .rank = 2 };
        const char *conf = NULL;
        bool bad = false;

        for (int i = 0; i < argc; i++)
                if (argv[i] && startswith(argv[i], "conf="))
                        conf = argv[i] + strlen("conf=");
        if (conf && conf[0] != '/') {
                pam_syslog(pamh, LOG_ERR, "configuration path '%s' is not absolute, refusing", conf);
                return PAM_SERVICE_ERR;
        }
        if (!conf_load(pamh, &o, conf ?: PAM_IDM_CONF, conf != NULL))
                bad = true;

        for (int i = 0; i < argc; i++)
                if (argv[i] && !option_apply(pamh, &o, &args, argv[i]))
                        bad = true;

        if (!o.publisher_id && !o.offer_id) {
                pam_syslog(pamh, LOG_ERR, "neither publisher= nor offer= given, refusing");
                bad = true;
        } else if (o.publisher_id && o.offer_id) {
                pam_syslog(pamh, LOG_ERR, "both publisher= and offer= given, refusing");
                bad = true;
        } else if (o.mode != MODE_PASSWORD && !o.publisher_id) {
                /* A code or device login yields a customer whose publisher is checked against
                 * publisher=; an offer id cannot be resolved to its publisher from here. */
                pam_syslog(pamh, LOG_ERR, "mode=%s needs publisher=, refusing", mode_table[o.mode]);
                bad = true;
        }
        if (bad)
                return PAM_SERVICE_ERR;

        *ret = o;
        o = (Options) {};        /* ownership moved to *ret */
        return PAM_SUCCESS;
}

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

/* Whether user can name a customer at all: an e-mail address (something@something), valid
 * UTF-8, without control characters. Anything else ("root") is PAM_USER_UNKNOWN without asking
 * idmd, which tells nobody anything about who exists. */
static bool user_is_customer_name(const char *user) {
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

static bool token_is_valid(const char *s) {
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
static bool session_id_is_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (!isascii((unsigned char) s[n]) || !(isalnum((unsigned char) s[n]) || strchr("-_", s[n])))
                        return false;
        return n > 0 && n <= SESSION_ID_MAX;
}

/* Remembers an authenticate result for pam_sm_setcred(), like pam_unix: the value is stored in
 * the pointer itself (offset by one, NULL meaning "none"), so nothing needs freeing. */
static int remember(pam_handle_t *pamh, int pam) {
        (void) pam_set_data(pamh, DATA_SETCRED, (void *) (intptr_t) (pam + 1), NULL);
        return pam;
}

static int get_user(pam_handle_t *pamh, const char **ret) {
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
static json_t *params_new(const Options *o, const char *user) {
        if (o->publisher_id)
                return json_pack("{s:s, s:s}", "publisherId", o->publisher_id, "user", user);
        return json_pack("{s:s, s:s}", "offerId", o->offer_id, "user", user);
}

/* Adds the PAM context (service, rhost, tty, ruser) for idmd's audit log and rate limits. */
static void params_add_context(pam_handle_t *pamh, json_t *params) {
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

static int connect_idmd(pam_handle_t *pamh, const Options *o, IdmClient *c) {
        int r;

        r = idm_client_connect(c, o->socket_path, o->daemon_user, o->connect_timeout, o->timeout);
        if (r < 0)
                pam_syslog(pamh, r == -EPERM || r == -ENOTSOCK ? LOG_ERR : LOG_WARNING, "idmd is not available: %s",
                           c->error);
        return r;
}

/* Logs a failed call once and returns its PAM code; shows the retry time for PAM_MAXTRIES. */
static int call_failed(pam_handle_t *pamh, int flags, const Options *o, Phase phase, const char *method,
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

/* ---- authentication ----------------------------------------------------------------------- */

typedef struct SessionData {
        char *user;
        char *session_id;
} SessionData;

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
static int get_secret(pam_handle_t *pamh, const Options *o, const char *prompt, const char **ret) {
        const char *secret = NULL;
        int r;

        r = pam_get_authtok(pamh, PAM_AUTHTOK, &secret, prompt);
        if (r == PAM_CONV_AGAIN)
                return PAM_INCOMPLETE;
        if (r != PAM_SUCCESS || !secret) {
                log_debug(pamh, o, "no secret: %s", pam_strerror(pamh, r));
                return PAM_AUTH_ERR;
        }
        if (secret[0] == '\0' || strlen(secret) > SECRET_MAX) {
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
        const char *password = NULL;
        IdmError e = {};
        int r;

        r = get_secret(pamh, o, NULL, &password);
        if (r != PAM_SUCCESS)
                return r;

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
        if (email && strcasecmp(email, user) == 0 && streq_ptr(publisher_id, o->publisher_id)) {
                /* A copy: customer is wiped when released. */
                if (!json_object_get(result, "publisherId") &&
                    json_object_set_new(result, "publisherId", json_string(publisher_id)) < 0)
                        return -ENOMEM;
                return 0;
        }

        pam_syslog(pamh, LOG_NOTICE, "the code belongs to another customer than '%s', refusing", user);
        json_wipe_and_decref(params);
        params = json_pack("{s:s}", "token", strempty(refresh_token));
        if (params && refresh_token)
                (void) idm_client_call(c, IDM_METHOD_REVOKE_TOKEN, params, &ignored, &e);
        return -EACCES;
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
                return get_secret(pamh, o, "Code: ", ret);

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
        r = verify_customer(pamh, o, &c, user, result, &e);
        idm_client_close(&c);
        if (r == -EACCES)
                return PAM_AUTH_ERR;
        if (r < 0)
                return call_failed(pamh, flags, o, PHASE_AUTH, "getCustomer", user, r, &c, &e);
        return auth_accept(pamh, o, user, result);
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

static int authenticate_device(pam_handle_t *pamh, int flags, const Options *o, const char *user) {
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
                return call_failed(pamh, flags, o, PHASE_AUTH, "startDeviceLogin", user, r, &c, &e);

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
                        return call_failed(pamh, flags, o, PHASE_AUTH, "pollDeviceLogin", user, r, &c, &e);
                idm_client_close(&c);
                interval = device_poll_interval(interval, streq(e.reason, IDM_REASON_SLOW_DOWN));
                if (now_usec() + (usec_t) interval * USEC_PER_SEC >= deadline) {
                        conv_message(pamh, flags, PAM_ERROR_MSG, "The sign-in code has expired.");
                        pam_syslog(pamh, LOG_NOTICE, "device login for '%s' expired", user);
                        return PAM_AUTH_ERR;
                }
                sleep_usec((usec_t) interval * USEC_PER_SEC);
        }

        r = verify_customer(pamh, o, &c, user, result, &e);
        idm_client_close(&c);
        if (r == -EACCES)
                return PAM_AUTH_ERR;
        if (r < 0)
                return call_failed(pamh, flags, o, PHASE_AUTH, "getCustomer", user, r, &c, &e);
        return auth_accept(pamh, o, user, result);
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

/* ---- account ------------------------------------------------------------------------------ */

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

/* The start of the account and password phases: options, PAM_USER, and names that cannot be a
 * customer's answered as unknown without asking idmd. PAM_SUCCESS when the phase goes on. */
static int phase_begin(pam_handle_t *pamh, int argc, const char **argv, Phase phase, Options *o,
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

/* ---- password ----------------------------------------------------------------------------- */

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

/* ---- session ------------------------------------------------------------------------------ */

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
