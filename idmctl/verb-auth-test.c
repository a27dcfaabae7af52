/* SPDX-License-Identifier: MIT */
/*
 * idmctl auth-test SERVICE USER: runs a PAM transaction through libpam, as login or sshd would
 * for SERVICE (/etc/pam.d/SERVICE), and says what each step answered and what that usually
 * means for pam_idm (like sssctl user-checks). Prompts are shown on standard error and answered
 * from standard input, one line each (a terminal does not echo secret ones). It talks to libpam,
 * not to idmd: it tests the whole stack as the applications see it. Exit status 0 when every step
 * succeeded, 1 otherwise.
 */
#include <security/pam_appl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "idmctl.h"

/* Reads one line from stdin into a new string, without echo on a terminal for secret prompts. */
static char *read_answer(bool secret) {
        struct termios old, quiet;
        bool restore = false;
        char *line = NULL;
        size_t size = 0;
        ssize_t n;

        if (secret && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0) {
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) ECHO;
                restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
        }
        n = getline(&line, &size, stdin);
        if (restore) {
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
                (void) fputc('\n', stderr);
        }
        if (n < 0) {
                free(line);
                return NULL;
        }
        line[strcspn(line, "\r\n")] = '\0';
        return line;
}

static int conversation(int n, const struct pam_message **msg, struct pam_response **ret, void *userdata) {
        struct pam_response *r;

        if (n <= 0 || n > PAM_MAX_NUM_MSG)
                return PAM_CONV_ERR;
        r = calloc((size_t) n, sizeof(struct pam_response));
        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                const char *text = msg[i]->msg ? msg[i]->msg : "";

                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:
                case PAM_PROMPT_ECHO_ON:
                        (void) fprintf(stderr, "%s", text);
                        (void) fflush(stderr);
                        r[i].resp = read_answer(msg[i]->msg_style == PAM_PROMPT_ECHO_OFF);
                        if (!r[i].resp)
                                goto fail;
                        break;
                case PAM_ERROR_MSG:
                        (void) fprintf(stderr, "  (error message) %s\n", text);
                        break;
                case PAM_TEXT_INFO:
                        (void) fprintf(stderr, "  (info) %s\n", text);
                        break;
                default:
                        goto fail;
                }
        }
        *ret = r;
        return PAM_SUCCESS;
fail:
        for (int i = 0; i < n; i++)
                if (r[i].resp) {
                        explicit_bzero(r[i].resp, strlen(r[i].resp));
                        free(r[i].resp);
                }
        free(r);
        return PAM_CONV_ERR;
}

/* What an answer usually means when pam_idm is in the stack. */
static const char *hint(int code) {
        switch (code) {
        case PAM_SUCCESS:
                return NULL;
        case PAM_AUTH_ERR:
                return "wrong password or code (idmd counts it towards the account's lockout), or, with the "
                       "module's message above, a disabled account";
        case PAM_USER_UNKNOWN:
                return "no such customer for the module's publisher, or the user name is not an e-mail address";
        case PAM_AUTHINFO_UNAVAIL:
                return "idmd could not be asked: is idmd.socket running, is the module's socket= right, "
                       "is the socket owned by root or idmd's user? (the journal has pam_idm's reason)";
        case PAM_MAXTRIES:
                return "the account is locked after failed logins, or idmd's rate limit was hit: wait, or "
                       "idmctl customer unlock";
        case PAM_PERM_DENIED:
                return "refused by the account step: updated consents or profile questions not answered "
                       "(consents=, capture=), or this uid may not ask about this customer";
        case PAM_ACCT_EXPIRED:
                return "the customer is disabled (idmctl customer enable)";
        case PAM_SERVICE_ERR:
                return "a module is misconfigured (pam_idm needs publisher= or offer=); the journal says which";
        case PAM_ABORT:
        case PAM_SYSTEM_ERR:
                return "libpam could not run the stack: is the service file there and readable?";
        default:
                return NULL;
        }
}

/* Prints "STEP: PAM_CODE (text)" and the hint; returns whether it succeeded. */
static bool report(pam_handle_t *pamh, const char *step, int code) {
        const char *h = hint(code);

        (void) printf("%-13s %s\n", step, code == PAM_SUCCESS ? "success" : pam_strerror(pamh, code));
        if (h)
                (void) printf("%-13s %s\n", "", h);
        return code == PAM_SUCCESS;
}

int verb_auth_test(Context *ctx, int argc, char **argv) {
        struct pam_conv conv = { conversation, NULL };
        pam_handle_t *pamh = NULL;
        const void *item = NULL;
        bool ok;
        int r;

        r = pam_start(argv[0], argv[1], &conv, &pamh);
        if (r != PAM_SUCCESS)
                return log_error_errno(EINVAL, "libpam could not start service '%s': %s", argv[0],
                                       pam_strerror(pamh, r));

        (void) printf("Service:      %s\nUser:         %s\n", argv[0], argv[1]);
        ok = report(pamh, "authenticate:", pam_authenticate(pamh, 0));
        if (ok)
                ok = report(pamh, "account:", pam_acct_mgmt(pamh, 0));
        if (ok)
                ok = report(pamh, "open session:", pam_open_session(pamh, 0));
        if (ok) {
                if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item && strcmp(item, argv[1]) != 0)
                        (void) printf("%-13s %s\n", "PAM user:", (const char *) item);
                char **env = pam_getenvlist(pamh);

                for (size_t i = 0; env && env[i]; i++) {
                        /* The ids; never a token (export_tokens would put some there). */
                        if (strncmp(env[i], "IDM_", 4) == 0 && !strstr(env[i], "TOKEN"))
                                (void) printf("%-13s %s\n", "environment:", env[i]);
                        explicit_bzero(env[i], strlen(env[i]));
                        free(env[i]);
                }
                free(env);
                ok = report(pamh, "close session:", pam_close_session(pamh, 0));
        }
        (void) pam_end(pamh, ok ? PAM_SUCCESS : PAM_AUTH_ERR);
        return ok ? 0 : 1;
}
