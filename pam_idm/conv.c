/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's conversation helpers (see conv.h).
 */
#include <ctype.h>
#include <security/pam_ext.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "config-build.h"
#include "idm/utf8.h"
#include "pam_idm/conv.h"

#if HAVE_QRENCODE
#include <qrencode.h>
#endif

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

/* Whether the login happens on a terminal of this machine: no remote host, and a PAM_TTY that
 * names a terminal device (a QR code is no use over ssh, whose client may be anywhere, nor to a
 * display manager, which shows text in its own widgets). */
static bool tty_is_local(pam_handle_t *pamh) {
        static const char *const prefixes[] = { "tty", "/dev/tty", "pts/", "/dev/pts/", "console", "/dev/console" };
        const void *rhost = NULL, *tty = NULL;

        (void) pam_get_item(pamh, PAM_RHOST, &rhost);
        (void) pam_get_item(pamh, PAM_TTY, &tty);
        if ((rhost && *(const char *) rhost) || !tty)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (strncmp(tty, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

#if HAVE_QRENCODE
#define QR_QUIET_ZONE 2         /* modules of light border (the standard asks for 4; 2 scan fine) */
#define QR_LINE_MAX 1024

/* Shows uri as a QR code, one PAM_TEXT_INFO per line of text: two rows of modules per line with
 * the half blocks U+2580 and U+2584 and the full block U+2588 drawn for light modules, as
 * qrencode -t UTF8 does (a terminal's light text on a dark background reads as dark on light).
 * Best effort: the text message says the same. */
static void conv_show_qr(pam_handle_t *pamh, const char *uri) {
        static const char *const cells[4] = { " ", "\xe2\x96\x80", "\xe2\x96\x84", "\xe2\x96\x88" };  /* bit 0: top light, 1: bottom */
        QRcode *qr = QRcode_encodeString(uri, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
        int width;

        if (!qr)
                return;
        width = qr->width + 2 * QR_QUIET_ZONE;
        if (width * 3 + 1 > QR_LINE_MAX) {
                QRcode_free(qr);
                return;
        }
        for (int y = 0; y < width; y += 2) {
                char line[QR_LINE_MAX];
                size_t n = 0;

                for (int x = 0; x < width; x++) {
                        unsigned cell = 0;

                        for (int dy = 0; dy < 2; dy++) {
                                int my = y + dy - QR_QUIET_ZONE, mx = x - QR_QUIET_ZONE;
                                bool dark = my >= 0 && my < qr->width && mx >= 0 && mx < qr->width &&
                                            (qr->data[my * qr->width + mx] & 1);

                                /* A row past the bottom of the border (odd width) stays dark. */
                                if (!dark && y + dy < width)
                                        cell |= 1u << dy;
                        }
                        n += (size_t) snprintf(line + n, sizeof(line) - n, "%s", cells[cell]);
                }
                if (pam_info(pamh, "%s", line) != PAM_SUCCESS)
                        break;
        }
        QRcode_free(qr);
}
#endif

int conv_device_login(pam_handle_t *pamh, const char *uri, const char *user_code, const char *uri_complete,
                      bool qr) {
        _cleanup_free_ char *answer = NULL;
        char u[512], code[64];
        int r;

        r = pam_info(pamh, "To sign in, visit %s and enter the code %s", conv_sanitize(u, sizeof(u), uri),
                     conv_sanitize(code, sizeof(code), user_code));
        if (r != PAM_SUCCESS)
                return r;
        /* The text above always works, also over ssh; the QR code only where it can be scanned. */
        if (qr && uri_complete && tty_is_local(pamh)) {
#if HAVE_QRENCODE
                conv_show_qr(pamh, uri_complete);
#else
                (void) 0;       /* no QR renderer in this build: qr has no effect */
#endif
        }
        return pam_prompt(pamh, PAM_PROMPT_ECHO_ON, &answer, "Press Enter once approved: ");
}
