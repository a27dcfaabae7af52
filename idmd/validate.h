/* SPDX-License-Identifier: MIT */
/*
 * Validation of customer and publisher input: e-mail addresses, ISO 3166 countries, currencies,
 * locales, redirect URIs, identifiers. Pure functions, no I/O, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define EMAIL_MAX 254

/* RFC 5322 addr-spec subset: dot-atom local part (no quoted strings, no comments; ASCII atext
 * only, dots not leading, trailing or doubled), '@', a domain of LDH labels (1..63 chars, not
 * starting/ending with '-'; IDNs only in A-label form) with at least one dot, no trailing dot and
 * a top-level label that is not all digits. At most EMAIL_MAX bytes, local part at most 64. No
 * surrounding whitespace is accepted (callers do not trim: " a@b.c" is invalid). Case is kept:
 * "A@B.CD" is valid. NULL is invalid. */
bool email_is_valid(const char *email);

/* A newly allocated lower-cased (ASCII) copy, the key customers are found by. NULL on OOM. */
char *email_normalize(const char *email);

/* ISO 3166-1 alpha-2, officially assigned codes only, upper case ("GB" yes, "UK" no). */
bool country_is_valid(const char *code);

/* Three upper-case letters present in the NULL-terminated list (a NULL list allows nothing). */
bool currency_is_valid(const char *code, char *const *allowed);

/* "ll_CC": two lower-case letters, '_', a valid country. */
bool locale_is_valid(const char *locale);

/* Absolute https URL with a host; http only for localhost, 127.0.0.1 or [::1]. No fragment,
 * no userinfo, no whitespace or control characters. At most 2048 bytes.
 * In detail: scheme "https://" or "http://" (case-insensitive); host a DNS name of LDH labels
 * (no trailing dot; if its last label is numeric it must be a dotted-quad IPv4 address) or a
 * bracketed IPv6 address (no zone id); optional ":port", 1..65535 without leading zeros; then an
 * optional path starting with '/' and an optional '?' query. Only RFC 3986 characters are
 * accepted (raw non-ASCII, '\', '"', '<', '>', '^', '`', '{', '|', '}' must be percent-encoded),
 * every '%' starts a %XX escape, and '[' ']' appear only around an IPv6 host. */
bool redirect_uri_is_valid(const char *uri);

/* Strict UTF-8 (no overlong forms, surrogates, code points above U+10FFFF or truncated
 * sequences) without control characters (C0, DEL and C1, i.e. Unicode category Cc, tab
 * included), 1..max bytes. NULL is invalid. */
bool text_is_valid(const char *s, size_t max);

/* Strict UTF-8 as above, possibly empty, without control characters other than \t. NULL is
 * invalid. */
bool utf8_is_valid(const char *s);

/* n ASCII digits and nothing else (n > 0): publisher ids (9) and customer ids (10). */
bool digits_are_valid(const char *s, size_t n);

/* A Unix user or group name as systemd's user records accept them in their strict form and
 * useradd would: 1..USERDB_NAME_MAX bytes of [a-zA-Z0-9_.-], not starting with a digit, '-' or
 * '.', not "." or "..". Used for the userdb service name and the shared group. */
#define USERDB_NAME_MAX 64
bool unix_name_is_valid(const char *s);

/* A login shell or home for a passwd entry: an absolute path of 1..max bytes of printable text
 * (text_is_valid()) without ':'. */
bool unix_path_is_valid(const char *s, size_t max);
