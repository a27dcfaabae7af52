/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's conversation helpers (see conv.h).
 */
#include <ctype.h>
#include <security/pam_ext.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "idm/utf8.h"
#include "pam_idm/conv.h"

void conv_message(pam_handle_t *pamh, int flags, int style, const char *fmt, ...) {
        va_list ap;

        if (flags & PAM_SILENT)
                return;
        va_start(ap, fmt);
        (void) pam_vprompt(pamh, style, NULL, fmt, ap);
        va_end(ap);
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if there is none. */
static size_t utf8_sequence_length(const unsigned char *s) {
        uint32_t cp;

        return utf8_decode(s, &cp);
}

char *conv_sanitize(char *dst, size_t size, const char *src) {
        const unsigned char *s = (const unsigned char *) strempty(src);
        size_t o = 0;

        if (size == 0)
                return dst;
        while (*s) {
                size_t n = utf8_sequence_length(s);

                if (n == 0 || s[0] < 0x20 || s[0] == 0x7f || (s[0] == 0xc2 && s[1] < 0xa0)) {
                        /* Control character (C0, DEL, C1) or invalid byte: one '?' for it. */
                        if (o + 1 >= size)
                                break;
                        dst[o++] = '?';
                        s += n == 0 ? 1 : n;
                        continue;
                }
                if (o + n >= size)
                        break;
                memcpy(dst + o, s, n);
                o += n;
                s += n;
        }
        dst[o] = '\0';
        return dst;
}

int conv_confirm(pam_handle_t *pamh, const char *question, bool *ret) {
        _cleanup_free_ char *answer = NULL;
        const char *a;
        size_t len;
        int r;

        r = pam_prompt(pamh, PAM_PROMPT_ECHO_ON, &answer, "%s", question);
        if (r != PAM_SUCCESS)
                return r;

        a = strempty(answer);
        while (isblank((unsigned char) *a))
                a++;
        len = strlen(a);
        while (len > 0 && isspace((unsigned char) a[len - 1]))
                len--;
        *ret = (len == 1 && strncasecmp(a, "y", 1) == 0) || (len == 3 && strncasecmp(a, "yes", 3) == 0);
        return PAM_SUCCESS;
}

int conv_device_login(pam_handle_t *pamh, const char *uri, const char *user_code, const char *uri_complete,
                      bool qr) {
        _cleanup_free_ char *answer = NULL;
        char u[512], code[64];
        int r;

        /* No QR renderer in this build (libqrencode is optional and not linked): qr only changes
         * anything once one is. The text below always works, also over ssh. */
        (void) uri_complete;
        (void) qr;

        r = pam_info(pamh, "To sign in, visit %s and enter the code %s", conv_sanitize(u, sizeof(u), uri),
                     conv_sanitize(code, sizeof(code), user_code));
        if (r != PAM_SUCCESS)
                return r;
        return pam_prompt(pamh, PAM_PROMPT_ECHO_ON, &answer, "Press Enter once approved: ");
}
