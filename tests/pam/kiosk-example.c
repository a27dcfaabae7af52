/* SPDX-License-Identifier: MIT */
/*
 * kiosk-example: the smallest kiosk app that signs a customer in through PAM (pam_idm) and reads
 * who it is from the PAM environment. docs/pam_idm.md shows this file; the tests build and run it.
 *
 *   cc -o kiosk-example kiosk-example.c -lpam
 *   ./kiosk-example [SERVICE [E-MAIL]]
 *
 * A real kiosk draws the prompts on its screen; this one uses stdin and stdout.
 */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_responses(struct pam_response *r, int n) {
        for (int i = 0; i < n; i++)
                if (r[i].resp) {
                        explicit_bzero(r[i].resp, strlen(r[i].resp));
                        free(r[i].resp);
                }
        free(r);
}

/* The conversation: PAM (through pam_idm) asks, the app answers. libpam frees the answers. */
static int conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
        struct pam_response *r = calloc((size_t) n, sizeof(struct pam_response));
        char line[PAM_MAX_RESP_SIZE];

        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                switch (msg[i]->msg_style) {
                case PAM_PROMPT_ECHO_OFF:       /* "Password: " (a kiosk would mask the input) */
                case PAM_PROMPT_ECHO_ON:        /* "Accept the updated Terms (version 2)? [y/N] " */
                        fputs(msg[i]->msg, stdout);
                        fflush(stdout);
                        if (!fgets(line, sizeof(line), stdin)) {
                                free_responses(r, n);
                                return PAM_CONV_ERR;
                        }
                        line[strcspn(line, "\n")] = '\0';
                        r[i].resp = strdup(line);
                        explicit_bzero(line, sizeof(line));
                        if (!r[i].resp) {
                                free_responses(r, n);
                                return PAM_BUF_ERR;
                        }
                        break;
                case PAM_ERROR_MSG:             /* "Try again in 10 minutes." */
                case PAM_TEXT_INFO:
                        printf("%s\n", msg[i]->msg);
                        break;
                default:
                        free_responses(r, n);
                        return PAM_CONV_ERR;
                }
        }
        *resp = r;
        return PAM_SUCCESS;
}

int main(int argc, char **argv) {
        const char *service = argc > 1 ? argv[1] : "kiosk";
        const char *user = argc > 2 ? argv[2] : NULL;   /* NULL: PAM asks for it */
        struct pam_conv conv = { conversation, NULL };
        pam_handle_t *pamh = NULL;
        const char *customer;
        int r;

        r = pam_start(service, user, &conv, &pamh);
        if (r != PAM_SUCCESS) {
                fprintf(stderr, "pam_start: %s\n", pam_strerror(NULL, r));
                return 1;
        }

        r = pam_authenticate(pamh, 0);                  /* password check by idmd */
        if (r == PAM_SUCCESS)
                r = pam_acct_mgmt(pamh, 0);             /* disabled? terms to accept? */
        if (r == PAM_SUCCESS)
                r = pam_open_session(pamh, 0);
        if (r != PAM_SUCCESS) {
                fprintf(stderr, "sign-in failed: %s\n", pam_strerror(pamh, r));
                pam_end(pamh, r);
                return 1;
        }

        /* pam_idm with export_env put these into the PAM environment. */
        customer = pam_getenv(pamh, "IDM_CUSTOMER_ID");
        printf("signed in: customer %s of publisher %s\n", customer ? customer : "?",
               pam_getenv(pamh, "IDM_PUBLISHER_ID") ? pam_getenv(pamh, "IDM_PUBLISHER_ID") : "?");

        /* ... the kiosk session runs here ... */

        r = pam_close_session(pamh, 0);                 /* revokes the session's tokens */
        pam_end(pamh, r);
        return r == PAM_SUCCESS ? 0 : 1;
}
