/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's options: the module arguments and the configuration file (/etc/idm/pam_idm.conf, or
 * conf=PATH), read into an Options at the start of every pam_sm_* call (see pam_idm.h). A broken
 * configuration fails closed: PAM_SERVICE_ERR, logged with the file and line.
 */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <security/pam_ext.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/protocol.h"
#include "pam_idm/pam_idm.h"

#define TIMEOUT_MAX_USEC (3600 * USEC_PER_SEC)
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)
#define PAM_IDM_CONF IDM_CONFDIR "/pam_idm.conf"

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

static const char *startswith(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

static bool is_flag(const char *name) {
        return streq(name, "debug") || streq(name, "ignore_unknown_user") || streq(name, "ignore_authinfo_unavail") ||
               streq(name, "export_env") || streq(name, "export_tokens") || streq(name, "qr") || streq(name, "unix");
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
        else if (streq(name, "unix"))
                o->unix_users = value;
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
        } else if ((v = startswith(a, "reset="))) {
                if (!streq(v, "code")) {
                        log_option(pamh, src, "invalid reset '%s' (code)", v);
                        return false;
                }
                o->reset_code = true;
        } else if ((v = startswith(a, "capture="))) {
                int m = table_lookup(consents_table, _CONSENTS_MAX, v);

                if (m < 0) {
                        log_option(pamh, src, "invalid capture '%s' (prompt, deny or ignore)", v);
                        return false;
                }
                o->capture = (ConsentPolicy) m;
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
                .daemon_user = IDM_CLIENT_DAEMON_USER,
                .connect_timeout = 2 * USEC_PER_SEC,
                .timeout = 15 * USEC_PER_SEC,
                .mode = MODE_PASSWORD,
                .consents = CONSENTS_PROMPT,
                .capture = CONSENTS_PROMPT,
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
