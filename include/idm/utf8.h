/* SPDX-License-Identifier: MIT */
/*
 * A strict UTF-8 decoder shared by idmd (validation, password policy), idmctl (printing what the
 * daemon says) and pam_idm (messages it shows): one definition of "valid UTF-8" for all three.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Decodes one strict UTF-8 sequence at s: no overlong forms, no surrogates, nothing above
 * U+10FFFF, no truncated sequence (the terminating NUL is never a continuation byte). Returns
 * its length, 0 if invalid. */
static inline size_t utf8_decode(const unsigned char *s, uint32_t *ret_cp) {
        unsigned char c = s[0], lo = 0x80, hi = 0xBF;
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
                *ret_cp = c;
                return 1;
        }
        if (c >= 0xC2 && c <= 0xDF) {
                n = 2;
                cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
                n = 3;
                cp = c & 0x0F;
                if (c == 0xE0)
                        lo = 0xA0;      /* overlong */
                else if (c == 0xED)
                        hi = 0x9F;      /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
                n = 4;
                cp = c & 0x07;
                if (c == 0xF0)
                        lo = 0x90;      /* overlong */
                else if (c == 0xF4)
                        hi = 0x8F;      /* > U+10FFFF */
        } else
                return 0;               /* continuation byte, C0/C1 overlong lead, F5..FF */

        if (s[1] < lo || s[1] > hi)
                return 0;
        cp = (cp << 6) | (s[1] & 0x3F);
        for (size_t i = 2; i < n; i++) {
                if (s[i] < 0x80 || s[i] > 0xBF)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3F);
        }

        *ret_cp = cp;
        return n;
}

/* The length of the longest prefix of the valid UTF-8 string s that is at most max bytes and
 * does not cut a character in half. */
static inline size_t utf8_prefix_len(const char *s, size_t max) {
        size_t n = 0;

        while (n < max && s[n])
                n++;
        if (s[n] == 0)
                return n;
        while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                n--;
        return n;
}
