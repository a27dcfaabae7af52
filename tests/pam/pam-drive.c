/* SPDX-License-Identifier: MIT */
/*
 * pam-drive: runs one PAM transaction (or N of them) through libpamtest and the real libpam
 * (under pam_wrapper), answering the module's prompts from the command line and printing every
 * message, result and environment variable, for the python tests in tests/pam/.
 *
 *   pam-drive [--pw SECRET]... [--echo TEXT]... [--rhost H] [--tty T] [--ruser U] [--silent]
 *             [--putenv NAME=VALUE]... [--ruid UID] [--loop N | --pause] SERVICE USER OP[=PAM_CODE]...
 *
 * OP is auth, setcred, acct, open, close, chauthtok or env (pam_getenvlist); PAM_CODE the
 * expected result (default PAM_SUCCESS). libpamtest stops at the first unexpected result.
 * Output, one line each: "prompt-off TEXT", "prompt-on TEXT", "info TEXT", "error TEXT",
 * "faildelay USEC", "result OP PAM_CODE", "env NAME=VALUE". Exit status 0 when every OP gave its
 * expected code, 1 when one did not, 2 on a usage or libpamtest error.
 *
 * An answer "@stdin" is read from stdin when its prompt comes (after the output so far is
 * flushed): for answers the test learns only then, such as a code sent by mail.
 *
 * --putenv puts NAME=VALUE into the PAM environment before the first OP: what sshd's monitor has
 * imported from its authentication child when it closes a session. --ruid (run as root) sets the
 * real uid to UID and keeps the effective uid 0: a setuid-root program such as su, run by UID.
 *
 * --loop N repeats the transaction N times in this process (quietly) and prints "fds-before",
 * "fds-after", "heap-before", "heap-after" (open descriptors, malloc'ed bytes in use) measured
 * after a warm-up, for the leak test.
 *
 * --pause: once the transaction has ended (pam_end), prints "paused" and waits until stdin is
 * closed, so that a test can read this process's memory (/proc/PID/mem) for what the module left
 * behind in the caller's heap.
 */
#include <dirent.h>
#include <libpamtest.h>
#include <malloc.h>
#include <security/pam_appl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ANSWERS_MAX 16
#define PUTENV_MAX 8

static const struct {
        int code;
        const char *name;
} pam_codes[] = {
#define C(x) { x, #x }
        C(PAM_SUCCESS), C(PAM_OPEN_ERR), C(PAM_SYMBOL_ERR), C(PAM_SERVICE_ERR), C(PAM_SYSTEM_ERR),
        C(PAM_BUF_ERR), C(PAM_PERM_DENIED), C(PAM_AUTH_ERR), C(PAM_CRED_INSUFFICIENT),
        C(PAM_AUTHINFO_UNAVAIL), C(PAM_USER_UNKNOWN), C(PAM_MAXTRIES), C(PAM_NEW_AUTHTOK_REQD),
        C(PAM_ACCT_EXPIRED), C(PAM_SESSION_ERR), C(PAM_CRED_UNAVAIL), C(PAM_CRED_EXPIRED),
        C(PAM_CRED_ERR), C(PAM_NO_MODULE_DATA), C(PAM_CONV_ERR), C(PAM_AUTHTOK_ERR),
        C(PAM_AUTHTOK_RECOVERY_ERR), C(PAM_AUTHTOK_LOCK_BUSY), C(PAM_AUTHTOK_DISABLE_AGING),
        C(PAM_TRY_AGAIN), C(PAM_IGNORE), C(PAM_ABORT), C(PAM_AUTHTOK_EXPIRED), C(PAM_MODULE_UNKNOWN),
        C(PAM_BAD_ITEM), C(PAM_CONV_AGAIN), C(PAM_INCOMPLETE),
#undef C
};

static const struct {
        const char *name;
        enum pamtest_ops op;
} ops[] = {
        { "auth", PAMTEST_AUTHENTICATE },  { "setcred", PAMTEST_SETCRED },
        { "acct", PAMTEST_ACCOUNT },       { "open", PAMTEST_OPEN_SESSION },
        { "close", PAMTEST_CLOSE_SESSION }, { "chauthtok", PAMTEST_CHAUTHTOK },
        { "env", PAMTEST_GETENVLIST },
};

typedef struct Answers {
        const char *echo_off[ANSWERS_MAX];
        const char *echo_on[ANSWERS_MAX];
        size_t n_off, n_on, i_off, i_on;
        bool quiet;
} Answers;

static const char *code_name(int code) {
        for (size_t i = 0; i < sizeof(pam_codes) / sizeof(pam_codes[0]); i++)
                if (pam_codes[i].code == code)
                        return pam_codes[i].name;
        return "PAM_(unknown)";
}

static int code_parse(const char *s) {
        for (size_t i = 0; i < sizeof(pam_codes) / sizeof(pam_codes[0]); i++)
                if (strcmp(pam_codes[i].name, s) == 0)
                        return pam_codes[i].code;
        return -1;
}

static const char *op_name(enum pamtest_ops op) {
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
                if (ops[i].op == op)
                        return ops[i].name;
        return "?";
}

static int conv(int n, const struct pam_message **msg, struct pam_response **resp, void *userdata) {
        Answers *a = userdata;
        struct pam_response *r = calloc((size_t) n, sizeof(struct pam_response));

        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                const char *answer = NULL;

                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                        if (!a->quiet)
                                printf("prompt-off %s\n", msg[i]->msg);
                        if (a->i_off >= a->n_off)
                                goto fail;
                        answer = a->echo_off[a->i_off++];
                        break;
                case PAM_PROMPT_ECHO_ON:
                        if (!a->quiet)
                                printf("prompt-on %s\n", msg[i]->msg);
                        if (a->i_on >= a->n_on)
                                goto fail;
                        answer = a->echo_on[a->i_on++];
                        break;
                case PAM_ERROR_MSG:
                        if (!a->quiet)
                                printf("error %s\n", msg[i]->msg);
                        break;
                case PAM_TEXT_INFO:
                        if (!a->quiet)
                                printf("info %s\n", msg[i]->msg);
                        break;
                default:
                        goto fail;
                }
                if (answer && strcmp(answer, "@stdin") == 0) {
                        /* Answered by the test at the time of the prompt: a line on stdin. */
                        static char line[1024];

                        fflush(stdout);
                        if (!fgets(line, sizeof(line), stdin))
                                goto fail;
                        line[strcspn(line, "\n")] = '\0';
                        answer = line;
                }
                if (answer) {
                        r[i].resp = strdup(answer);
                        if (!r[i].resp)
                                goto fail;
                }
        }
        *resp = r;
        return PAM_SUCCESS;

fail:
        if (!a->quiet)
                printf("conv-exhausted\n");
        for (int i = 0; i < n; i++)
                free(r[i].resp);
        free(r);
        return PAM_CONV_ERR;
}

static bool quiet_delay;

static void fail_delay(int retval, unsigned usec, void *userdata) {
        /* Recorded instead of slept: the tests check the module asked for a delay. */
        if (!quiet_delay && retval != PAM_SUCCESS)
                printf("faildelay %u\n", usec);
}

static long count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        long n = 0;

        if (!d)
                return -1;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1;   /* the directory's own descriptor */
}

static const char *putenv_list[PUTENV_MAX];
static size_t n_putenv;

static int run_once(const char *service, const char *user, Answers *answers, struct pam_testcase *tests, size_t n,
                    const char *rhost, const char *tty, const char *ruser) {
        pam_handle_t *ph = NULL;
        struct pam_conv c = { .conv = conv, .appdata_ptr = answers };
        enum pamtest_err perr;
        int r;

        answers->i_off = answers->i_on = 0;
        /* -1 marks cases not run; libpamtest leaves op_rv alone for PAMTEST_GETENVLIST, whose
         * "result" is the list (NULL until run). */
        for (size_t i = 0; i < n; i++) {
                tests[i].op_rv = tests[i].pam_operation == PAMTEST_GETENVLIST ? tests[i].expected_rv : -1;
                tests[i].case_out.envlist = NULL;
        }

        r = pam_start(service, user, &c, &ph);
        if (r != PAM_SUCCESS) {
                fprintf(stderr, "pam_start: %s\n", pam_strerror(NULL, r));
                return 2;
        }
        (void) pam_set_item(ph, PAM_FAIL_DELAY, (const void *) fail_delay);
        if (rhost)
                (void) pam_set_item(ph, PAM_RHOST, rhost);
        if (tty)
                (void) pam_set_item(ph, PAM_TTY, tty);
        if (ruser)
                (void) pam_set_item(ph, PAM_RUSER, ruser);
        for (size_t i = 0; i < n_putenv; i++)
                if (pam_putenv(ph, putenv_list[i]) != PAM_SUCCESS) {
                        fprintf(stderr, "pam_putenv '%s' failed\n", putenv_list[i]);
                        pam_end(ph, PAM_SUCCESS);
                        return 2;
                }

        /* libpamtest runs the cases on our handle and ends it (pam_end). */
        perr = _pamtest_conv(service, user, conv, answers, tests, n, ph);

        for (size_t i = 0; i < n; i++) {
                if (tests[i].op_rv == -1 ||
                    (tests[i].pam_operation == PAMTEST_GETENVLIST && !tests[i].case_out.envlist))
                        break;
                if (!answers->quiet) {
                        if (tests[i].pam_operation == PAMTEST_GETENVLIST) {
                                for (char **e = tests[i].case_out.envlist; e && *e; e++)
                                        printf("env %s\n", *e);
                        } else
                                printf("result %s %s\n", op_name(tests[i].pam_operation), code_name(tests[i].op_rv));
                }
                if (tests[i].pam_operation == PAMTEST_GETENVLIST) {
                        pamtest_free_env(tests[i].case_out.envlist);
                        tests[i].case_out.envlist = NULL;
                }
        }
        if (perr == PAMTEST_ERR_OK)
                return 0;
        if (perr == PAMTEST_ERR_CASE) {
                const struct pam_testcase *f = _pamtest_failed_case(tests, n);

                if (!answers->quiet && f)
                        printf("unexpected %s %s (expected %s)\n", op_name(f->pam_operation), code_name(f->op_rv),
                               code_name(f->expected_rv));
                return 1;
        }
        fprintf(stderr, "libpamtest: %s\n", pamtest_strerror(perr));
        return 2;
}

int main(int argc, char **argv) {
        Answers answers = {};
        const char *rhost = NULL, *tty = NULL, *ruser = NULL, *service, *user;
        struct pam_testcase tests[16];
        long loop = 0;
        bool pause = false;
        int flags = 0, i = 1, r = 0;
        size_t n = 0;

        for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
                const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (strcmp(o, "--silent") == 0) {
                        flags |= PAM_SILENT;
                        continue;
                }
                if (strcmp(o, "--pause") == 0) {
                        pause = true;
                        continue;
                }
                if (!v)
                        goto usage;
                i++;
                if (strcmp(o, "--pw") == 0 && answers.n_off < ANSWERS_MAX)
                        answers.echo_off[answers.n_off++] = v;
                else if (strcmp(o, "--echo") == 0 && answers.n_on < ANSWERS_MAX)
                        answers.echo_on[answers.n_on++] = v;
                else if (strcmp(o, "--rhost") == 0)
                        rhost = v;
                else if (strcmp(o, "--tty") == 0)
                        tty = v;
                else if (strcmp(o, "--ruser") == 0)
                        ruser = v;
                else if (strcmp(o, "--loop") == 0)
                        loop = strtol(v, NULL, 10);
                else if (strcmp(o, "--putenv") == 0 && n_putenv < PUTENV_MAX)
                        putenv_list[n_putenv++] = v;
                else if (strcmp(o, "--ruid") == 0) {
                        uid_t ruid = (uid_t) strtoul(v, NULL, 10);

                        if (setresuid(ruid, 0, 0) < 0) {
                                perror("setresuid");
                                return 2;
                        }
                } else
                        goto usage;
        }
        if (argc - i < 3)
                goto usage;
        service = argv[i++];
        user = argv[i++];

        for (; i < argc; i++) {
                char *eq = strchr(argv[i], '=');
                int expected = PAM_SUCCESS;
                size_t k;

                if (n >= sizeof(tests) / sizeof(tests[0]))
                        goto usage;
                if (eq) {
                        *eq = '\0';
                        expected = code_parse(eq + 1);
                        if (expected < 0)
                                goto usage;
                }
                for (k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
                        if (strcmp(ops[k].name, argv[i]) == 0)
                                break;
                if (k == sizeof(ops) / sizeof(ops[0]))
                        goto usage;
                tests[n++] = (struct pam_testcase) pam_test_flags(ops[k].op, expected, flags);
        }

        if (loop > 0) {
                long fds_before = 0, warmup = loop < 10 ? loop : 10;
                size_t heap_before = 0;

                answers.quiet = quiet_delay = true;
                for (long k = 0; k < loop; k++) {
                        if (k == warmup) {
                                fds_before = count_fds();
                                heap_before = mallinfo2().uordblks;
                        }
                        r = run_once(service, user, &answers, tests, n, rhost, tty, ruser);
                        if (r != 0) {
                                printf("iteration %ld failed\n", k);
                                return r;
                        }
                }
                printf("fds-before %ld\nfds-after %ld\nheap-before %zu\nheap-after %zu\n", fds_before, count_fds(),
                       heap_before, mallinfo2().uordblks);
                return 0;
        }

        r = run_once(service, user, &answers, tests, n, rhost, tty, ruser);
        if (pause) {
                char buf[64];

                printf("paused\n");
                fflush(stdout);
                while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                        ;
        }
        fflush(stdout);
        return r;

usage:
        fprintf(stderr, "usage: pam-drive [--pw S]... [--echo S]... [--rhost H] [--tty T] [--ruser U] [--silent] "
                        "[--putenv NAME=VALUE]... [--ruid UID] [--loop N | --pause] SERVICE USER OP[=PAM_CODE]...\n");
        return 2;
}
