/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's conversation helpers: messages, a yes/no question and the device-login prompt, all
 * through the application's conversation function (pam_prompt()), never stdout/stderr.
 *
 * Text that comes from idmd (consent labels, policy messages, device codes and URIs) is shown
 * only after conv_sanitize(), so a reply can never put terminal escape sequences on a login
 * screen.
 */
#pragma once

#include <security/pam_modules.h>
#include <stdbool.h>
#include <stddef.h>

#include "idm/cleanup.h"

/* Sends one PAM_ERROR_MSG or PAM_TEXT_INFO message, unless flags carries PAM_SILENT. */
_printf_(4, 5) void conv_message(pam_handle_t *pamh, int flags, int style, const char *fmt, ...);

/* Copies src into dst (size bytes, NUL-terminated, truncated on a character boundary), replacing
 * control characters (C0, DEL, C1) and invalid UTF-8 with '?'. Returns dst. */
char *conv_sanitize(char *dst, size_t size, const char *src);

/*
 * Asks question with PAM_PROMPT_ECHO_ON. *ret is true only for an answer of "y" or "yes" (any
 * case, surrounding blanks ignored). Returns PAM_SUCCESS, or the conversation's failure
 * (PAM_CONV_ERR, PAM_CONV_AGAIN, PAM_BUF_ERR, ...).
 */
int conv_confirm(pam_handle_t *pamh, const char *question, bool *ret);

/*
 * Device login (mode=device): shows "visit URI and enter CODE" as PAM_TEXT_INFO, then asks a
 * PAM_PROMPT_ECHO_ON question ("Press Enter once approved") and waits for the answer. The prompt is
 * needed because some applications (sshd's keyboard-interactive) only deliver info messages
 * together with the next prompt. qr asks for a QR code of uri_complete, shown only when this build
 * has QR support and the PAM_TTY is a local terminal. Strings are sanitised here. Returns
 * PAM_SUCCESS once the user answered, or the conversation's failure.
 */
int conv_device_login(pam_handle_t *pamh, const char *uri, const char *user_code, const char *uri_complete,
                      bool qr);
