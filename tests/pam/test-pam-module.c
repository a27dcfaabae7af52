/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of pam_idm's option parsing and configuration file reader, its mapping of idmd's
 * answers to PAM codes (the table in docs/pam_idm.md, phase by phase), the device-login poll
 * interval and the sanitising of text shown to users.
 */
#include <fcntl.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idm/protocol.h"
#include "pam_idm/conv.h"
#include "pam_idm/pam_idm.h"
#include "tests/unit/tests.h"

#define ARGS(...) ((const char *[]) { __VA_ARGS__ }), (int) (sizeof((const char *[]) { __VA_ARGS__ }) / sizeof(const char *))

static char conf_dir[] = "/tmp/test-pam-module-XXXXXX";
static char empty_conf[128];

/* Parses argv plus conf=<an empty file>, so that no /etc/idm/pam_idm.conf of the host matters. */
static int parse(const char **argv, int argc, Options *o) {
        const char *args[64];
        char conf[160];
        int r;

        ASSERT_TRUE(argc < 63);
        snprintf(conf, sizeof(conf), "conf=%s", empty_conf);
        args[0] = conf;
        memcpy(args + 1, argv, sizeof(const char *) * (size_t) argc);
        options_done(o);
        *o = (Options) {};
        r = options_parse(NULL, argc + 1, args, o);
        return r;
}

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "we");

        ASSERT_TRUE(f != NULL);
        fputs(text, f);
        fclose(f);
        ASSERT_OK(chmod(path, mode));
}

static int parse_conf(const char *text, mode_t mode, const char **argv, int argc, Options *o) {
        char path[160], conf[170];
        const char *args[64];

        snprintf(path, sizeof(path), "%s/pam_idm.conf", conf_dir);
        write_file(path, text, mode);
        snprintf(conf, sizeof(conf), "conf=%s", path);
        memcpy(args, argv, sizeof(const char *) * (size_t) argc);
        args[argc] = conf;
        options_done(o);
        *o = (Options) {};
        return options_parse(NULL, argc + 1, args, o);
}

TEST(defaults) {
        Options o = {};

        ASSERT_EQ(parse(ARGS("publisher=123456789"), &o), PAM_SUCCESS);
        ASSERT_STREQ(o.socket_path, IDM_DEFAULT_SOCKET);
        ASSERT_STREQ(o.publisher_id, "123456789");
        ASSERT_TRUE(o.offer_id == NULL);
        ASSERT_STREQ(o.daemon_user, "idmd");
        ASSERT_EQ(o.connect_timeout, 2 * USEC_PER_SEC);
        ASSERT_EQ(o.timeout, 15 * USEC_PER_SEC);
        ASSERT_EQ(o.mode, MODE_PASSWORD);
        ASSERT_EQ(o.consents, CONSENTS_PROMPT);
        ASSERT_EQ(o.capture, CONSENTS_PROMPT);
        ASSERT_FALSE(o.reset_code);
        ASSERT_FALSE(o.debug || o.ignore_unknown_user || o.ignore_authinfo_unavail || o.export_env || o.export_tokens ||
                     o.qr);
        options_done(&o);
}

TEST(every_option) {
        Options o = {};

        ASSERT_EQ(parse(ARGS("socket=/tmp/x/socket", "offer=R123123123_US", "connect_timeout=0.25", "timeout=3",
                             "mode=device", "debug", "use_first_pass", "try_first_pass", "use_authtok",
                             "authtok_type=IDM", "ignore_unknown_user", "ignore_authinfo_unavail", "export_env",
                             "export_tokens", "consents=deny", "qr", "user=idm", "no_such_option", "publisher=1"),
                        &o),
                  PAM_SERVICE_ERR);     /* publisher and offer together */

        ASSERT_EQ(parse(ARGS("socket=/tmp/x/socket", "publisher=123456789", "connect_timeout=0.25", "timeout=3",
                             "mode=device", "debug", "use_first_pass", "try_first_pass", "use_authtok",
                             "authtok_type=IDM", "ignore_unknown_user", "ignore_authinfo_unavail", "export_env",
                             "export_tokens", "consents=deny", "capture=ignore", "reset=code", "qr", "user=idm",
                             "no_such_option"),
                        &o),
                  PAM_SUCCESS);         /* the unknown option is logged and ignored */
        ASSERT_STREQ(o.socket_path, "/tmp/x/socket");
        ASSERT_EQ(o.connect_timeout, 250 * USEC_PER_MSEC);
        ASSERT_EQ(o.timeout, 3 * USEC_PER_SEC);
        ASSERT_EQ(o.mode, MODE_DEVICE);
        ASSERT_EQ(o.consents, CONSENTS_DENY);
        ASSERT_EQ(o.capture, CONSENTS_IGNORE);
        ASSERT_TRUE(o.reset_code);
        ASSERT_STREQ(o.daemon_user, "idm");
        ASSERT_TRUE(o.debug && o.ignore_unknown_user && o.ignore_authinfo_unavail && o.export_env && o.export_tokens &&
                    o.qr);

        ASSERT_EQ(parse(ARGS("offer=R123123123_US", "mode=code", "consents=ignore"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("offer=R123123123_US", "mode=password", "consents=ignore"), &o), PAM_SUCCESS);
        ASSERT_STREQ(o.offer_id, "R123123123_US");
        ASSERT_TRUE(o.publisher_id == NULL);
        ASSERT_EQ(o.consents, CONSENTS_IGNORE);
        ASSERT_EQ(parse(ARGS("publisher=1", "mode=code"), &o), PAM_SUCCESS);
        ASSERT_EQ(o.mode, MODE_CODE);
        options_done(&o);
}

TEST(fails_closed) {
        Options o = {};

        ASSERT_EQ(parse(ARGS("debug"), &o), PAM_SERVICE_ERR);                  /* no publisher */
        ASSERT_EQ(parse(ARGS("publisher="), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=12 34"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("offer=a/b"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "socket=relative"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "mode=magic"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "consents=maybe"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "capture=ask"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "reset=link"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "user="), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=0"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=-1"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=1e3"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=3601"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=99999999999999999999"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "connect_timeout="), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "connect_timeout=."), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=3600"), &o), PAM_SUCCESS);
        ASSERT_EQ(parse(ARGS("publisher=1", "timeout=.5"), &o), PAM_SUCCESS);
        ASSERT_EQ(o.timeout, 500 * USEC_PER_MSEC);
        /* sun_path holds 107 bytes and a NUL: a longer socket= can never work (108, 107 bytes). */
        ASSERT_EQ(parse(ARGS("publisher=1", "socket=/ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
                                                    "sssssssssssssssssssssssssssssssssssssssssssssss"), &o),
                  PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "socket=/ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
                                                    "ssssssssssssssssssssssssssssssssssssssssssssss"), &o),
                  PAM_SUCCESS);
        ASSERT_EQ(strlen(o.socket_path), 107);
        ASSERT_EQ(parse(ARGS("publisher=1", "conf=relative.conf"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse(ARGS("publisher=1", "conf=/nonexistent/pam_idm.conf"), &o), PAM_SERVICE_ERR);
        options_done(&o);
}

TEST(configuration_file) {
        Options o = {};

        ASSERT_EQ(parse_conf("# pam_idm.conf\n"
                             "publisher = 123456789\n"
                             "socket = /tmp/idm/socket\n"
                             "timeout = 3\n"
                             "debug = yes\n"
                             "export_env = true\n"
                             "consents = deny\n"
                             "use_first_pass = yes\n"       /* module argument only: ignored */
                             "frobnicate = 1\n",            /* unknown: ignored */
                             0644, ARGS("timeout=4"), &o),
                  PAM_SUCCESS);
        ASSERT_STREQ(o.publisher_id, "123456789");
        ASSERT_STREQ(o.socket_path, "/tmp/idm/socket");
        ASSERT_EQ(o.timeout, 4 * USEC_PER_SEC);                 /* arguments override the file */
        ASSERT_TRUE(o.debug && o.export_env);
        ASSERT_EQ(o.consents, CONSENTS_DENY);

        /* An argument naming the offer replaces the file's publisher. */
        ASSERT_EQ(parse_conf("publisher = 123456789\n", 0644, ARGS("offer=S1_GB"), &o), PAM_SUCCESS);
        ASSERT_TRUE(o.publisher_id == NULL);
        ASSERT_STREQ(o.offer_id, "S1_GB");
        ASSERT_EQ(parse_conf("publisher = 123456789\noffer = S1_GB\n", 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("debug = no\n", 0644, ARGS("debug", "publisher=1"), &o), PAM_SUCCESS);
        ASSERT_TRUE(o.debug);

        /* Broken or unsafe files fail closed. */
        ASSERT_EQ(parse_conf("publisher = 1\nthis is not an option\n", 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("[pam]\npublisher = 1\n", 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("publisher = 1\ndebug = maybe\n", 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("publisher = 1\ntimeout = soon\n", 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("publisher = 1\n", 0664, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("publisher = 1\n", 0646, ARGS("debug"), &o), PAM_SERVICE_ERR);
        ASSERT_EQ(parse_conf("publisher = 1\n", 0600, ARGS("debug"), &o), PAM_SUCCESS);
        options_done(&o);
}

TEST(configuration_file_long_lines) {
        Options o = {};
        char text[1024], line[256];

        /* A commented-out setting behind a comment longer than libinih's 200-byte line buffer:
         * read in chunks, its tail would become a line of its own and take effect. */
        memset(line, 'x', 198);
        line[198] = '\0';
        snprintf(text, sizeof(text), "publisher = 1\n#%ssocket = /tmp/elsewhere/socket\n", line);
        ASSERT_EQ(parse_conf(text, 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);

        /* 199 bytes and the newline fit; 200 do not. */
        memset(line, 'x', 199 - strlen("# "));
        line[199 - strlen("# ")] = '\0';
        snprintf(text, sizeof(text), "publisher = 1\n# %s\ntimeout = 3\n", line);
        ASSERT_EQ(parse_conf(text, 0644, ARGS("debug"), &o), PAM_SUCCESS);
        ASSERT_EQ(o.timeout, 3 * USEC_PER_SEC);
        snprintf(text, sizeof(text), "publisher = 1\n# %sx\ntimeout = 3\n", line);
        ASSERT_EQ(parse_conf(text, 0644, ARGS("debug"), &o), PAM_SERVICE_ERR);

        /* The last line may end without a newline, also when it fills the buffer. */
        snprintf(text, sizeof(text), "publisher = 1\n# %s", line);
        ASSERT_EQ(parse_conf(text, 0644, ARGS("debug"), &o), PAM_SUCCESS);
        ASSERT_EQ(parse_conf("publisher = 1\ntimeout = 3", 0644, ARGS("debug"), &o), PAM_SUCCESS);
        ASSERT_EQ(o.timeout, 3 * USEC_PER_SEC);
        options_done(&o);
}

TEST(configuration_file_not_regular) {
        Options o = {};
        char fifo[160], link[160], target[160], conf[180];

        /* A FIFO must not block the login in open(): refused at once. The alarm kills the test
         * if it blocks. */
        snprintf(fifo, sizeof(fifo), "%s/fifo.conf", conf_dir);
        (void) unlink(fifo);
        ASSERT_OK(mkfifo(fifo, 0644));
        snprintf(conf, sizeof(conf), "conf=%s", fifo);
        alarm(10);
        ASSERT_EQ(options_parse(NULL, 2, (const char *[]) { conf, "publisher=1" }, &o), PAM_SERVICE_ERR);
        alarm(0);
        (void) unlink(fifo);

        /* A symlink is not followed, even to a good file. */
        snprintf(target, sizeof(target), "%s/target.conf", conf_dir);
        write_file(target, "publisher = 1\n", 0644);
        snprintf(link, sizeof(link), "%s/link.conf", conf_dir);
        (void) unlink(link);
        ASSERT_OK(symlink(target, link));
        snprintf(conf, sizeof(conf), "conf=%s", link);
        ASSERT_EQ(options_parse(NULL, 1, (const char *[]) { conf }, &o), PAM_SERVICE_ERR);
        snprintf(conf, sizeof(conf), "conf=%s", target);
        ASSERT_EQ(options_parse(NULL, 1, (const char *[]) { conf }, &o), PAM_SUCCESS);
        options_done(&o);
        (void) unlink(link);
        (void) unlink(target);

        /* A directory. */
        snprintf(conf, sizeof(conf), "conf=%s", conf_dir);
        ASSERT_EQ(options_parse(NULL, 2, (const char *[]) { conf, "publisher=1" }, &o), PAM_SERVICE_ERR);
}

TEST(device_poll_interval) {
        ASSERT_EQ(device_poll_interval(5, false), 5);
        ASSERT_EQ(device_poll_interval(1, false), 1);
        ASSERT_EQ(device_poll_interval(0, false), 5);          /* RFC 8628 default */
        ASSERT_EQ(device_poll_interval(-3, false), 5);
        ASSERT_EQ(device_poll_interval(5, true), 10);          /* slow_down: 5 s more */
        ASSERT_EQ(device_poll_interval(29, true), 30);         /* at most 30 s */
        ASSERT_EQ(device_poll_interval(30, true), 30);
        ASSERT_EQ(device_poll_interval(3600, false), 30);
        ASSERT_EQ(device_poll_interval(INT64_MAX, true), 30);  /* no overflow */
}

static int map(Phase phase, int code, const char *reason, const Options *o) {
        IdmError e = { .code = code, .retry_after = -1 };

        snprintf(e.reason, sizeof(e.reason), "%s", reason);
        return result_to_pam(phase, -EREMOTEIO, &e, o);
}

TEST(result_mapping) {
        Options o = {}, ign = { .ignore_unknown_user = true, .ignore_authinfo_unavail = true };

        /* Authentication. */
        ASSERT_EQ(result_to_pam(PHASE_AUTH, 0, NULL, &o), PAM_SUCCESS);
        ASSERT_EQ(map(PHASE_AUTH, 401, "invalid_credentials", &o), PAM_AUTH_ERR);
        ASSERT_EQ(map(PHASE_AUTH, 401, "invalid_token", &o), PAM_AUTH_ERR);
        ASSERT_EQ(map(PHASE_AUTH, 401, "unknown_user", &o), PAM_USER_UNKNOWN);
        ASSERT_EQ(map(PHASE_AUTH, 401, "unknown_user", &ign), PAM_IGNORE);
        ASSERT_EQ(map(PHASE_AUTH, 423, "account_locked", &o), PAM_MAXTRIES);
        ASSERT_EQ(map(PHASE_AUTH, 429, "rate_limited", &o), PAM_MAXTRIES);
        ASSERT_EQ(map(PHASE_AUTH, 429, "too_many_connections", &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(map(PHASE_AUTH, 503, "unavailable", &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(map(PHASE_AUTH, 503, "shutting_down", &ign), PAM_IGNORE);
        ASSERT_EQ(map(PHASE_AUTH, 403, "account_disabled", &o), PAM_AUTH_ERR);
        ASSERT_EQ(map(PHASE_AUTH, 404, "not_found", &o), PAM_SERVICE_ERR);
        ASSERT_EQ(map(PHASE_AUTH, -32601, "unknown_method", &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(map(PHASE_AUTH, -32602, "invalid_params", &o), PAM_SERVICE_ERR);
        ASSERT_EQ(map(PHASE_AUTH, -32603, "internal_error", &o), PAM_SERVICE_ERR);
        ASSERT_EQ(map(PHASE_AUTH, 400, "invalid_email", &o), PAM_SERVICE_ERR);

        /* Transport failures. */
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ENOENT, NULL, &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ETIMEDOUT, NULL, &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -EPERM, NULL, &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -EBADMSG, NULL, &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ETIMEDOUT, NULL, &ign), PAM_IGNORE);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ENOMEM, NULL, &o), PAM_SERVICE_ERR);
        /* A socket= that cannot work is a configuration error, not an idmd that is away. */
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ENAMETOOLONG, NULL, &o), PAM_SERVICE_ERR);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ENAMETOOLONG, NULL, &ign), PAM_SERVICE_ERR);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -EINVAL, NULL, &ign), PAM_SERVICE_ERR);
        ASSERT_EQ(result_to_pam(PHASE_SESSION, -ENAMETOOLONG, NULL, &o), PAM_SERVICE_ERR);
        ASSERT_EQ(result_to_pam(PHASE_AUTH, -ECONNREFUSED, NULL, &o), PAM_AUTHINFO_UNAVAIL);

        /* Account. */
        ASSERT_EQ(result_to_pam(PHASE_ACCOUNT, -ENOENT, NULL, &o), PAM_USER_UNKNOWN);
        /* Only a missing socket is "not ours"; one nobody listens on (idmd crashed) is not. */
        ASSERT_EQ(result_to_pam(PHASE_ACCOUNT, -ECONNREFUSED, NULL, &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(result_to_pam(PHASE_ACCOUNT, -ECONNREFUSED, NULL, &ign), PAM_IGNORE);
        ASSERT_EQ(result_to_pam(PHASE_ACCOUNT, -ENAMETOOLONG, NULL, &o), PAM_SERVICE_ERR);
        ASSERT_EQ(result_to_pam(PHASE_ACCOUNT, -ENOENT, NULL, &ign), PAM_IGNORE);
        ASSERT_EQ(result_to_pam(PHASE_ACCOUNT, -ETIMEDOUT, NULL, &o), PAM_AUTHINFO_UNAVAIL);
        ASSERT_EQ(map(PHASE_ACCOUNT, 404, "not_found", &o), PAM_USER_UNKNOWN);
        ASSERT_EQ(map(PHASE_ACCOUNT, 403, "account_disabled", &o), PAM_ACCT_EXPIRED);
        ASSERT_EQ(map(PHASE_ACCOUNT, 422, "terms_not_accepted", &o), PAM_PERM_DENIED);

        /* Password change. */
        ASSERT_EQ(map(PHASE_PASSWORD, 400, "weak_password", &o), PAM_AUTHTOK_ERR);
        ASSERT_EQ(map(PHASE_PASSWORD, 401, "invalid_credentials", &o), PAM_AUTH_ERR);
        ASSERT_EQ(map(PHASE_PASSWORD, 423, "account_locked", &o), PAM_MAXTRIES);
        ASSERT_EQ(map(PHASE_PASSWORD, 404, "not_found", &o), PAM_USER_UNKNOWN);

        /* Session. */
        ASSERT_EQ(map(PHASE_SESSION, 404, "not_found", &o), PAM_SUCCESS);
        ASSERT_EQ(result_to_pam(PHASE_SESSION, -ENOENT, NULL, &o), PAM_SESSION_ERR);
        ASSERT_EQ(result_to_pam(PHASE_SESSION, -ENOENT, NULL, &ign), PAM_IGNORE);
}

TEST(sanitize) {
        char b[16];

        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "Terms"), "Terms");
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), NULL), "");
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "a\033[2Jb\n"), "a?[2Jb?");
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "\xc2\x9b" "31m"), "?31m");           /* C1 CSI */
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "caf\xc3\xa9"), "caf\xc3\xa9");
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "bad\xff\xc3"), "bad??");
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "\xe0\x80\x80"), "???");               /* overlong */
        ASSERT_STREQ(conv_sanitize(b, 6, "abcd\xc3\xa9"), "abcd");                      /* whole characters */
        ASSERT_STREQ(conv_sanitize(b, sizeof(b), "0123456789abcdefXYZ"), "0123456789abcde");
}

int main(void) {
        if (geteuid() != 0) {
                /* The configuration file must belong to root: files made here would not. */
                fprintf(stderr, "not root, skipped\n");
                return 77;
        }
        ASSERT_TRUE(mkdtemp(conf_dir) != NULL);
        snprintf(empty_conf, sizeof(empty_conf), "%s/empty.conf", conf_dir);
        write_file(empty_conf, "", 0644);

        RUN(defaults);
        RUN(every_option);
        RUN(fails_closed);
        RUN(configuration_file);
        RUN(configuration_file_long_lines);
        RUN(configuration_file_not_regular);
        RUN(device_poll_interval);
        RUN(result_mapping);
        RUN(sanitize);

        (void) unlink(empty_conf);
        snprintf(empty_conf, sizeof(empty_conf), "%s/pam_idm.conf", conf_dir);
        (void) unlink(empty_conf);
        (void) rmdir(conf_dir);
        return 0;
}
