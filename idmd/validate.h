/* SPDX-License-Identifier: MIT */
/*
 * Validation of customer and publisher input: e-mail addresses, ISO 3166 countries, currencies,
 * locales, redirect URIs, identifiers. Pure functions, no I/O, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define EMAIL_MAX 254

/* RFC 5322 addr-spec subset: dot-atom local part (no quoted strings, no comments), '@', a domain
 * of LDH labels (1..63 chars, not starting/ending with '-') with at least one dot, or an IDN
 * already in A-label form. At most EMAIL_MAX bytes, local part at most 64. No surrounding
 * whitespace is accepted (callers do not trim: " a@b.c" is invalid). */
bool email_is_valid(const char *email);

/* A newly allocated lower-cased (ASCII) copy, the key customers are found by. NULL on OOM. */
char *email_normalize(const char *email);

/* ISO 3166-1 alpha-2, officially assigned codes only, upper case ("GB" yes, "UK" no). */
bool country_is_valid(const char *code);

/* Three upper-case letters present in the NULL-terminated list. */
bool currency_is_valid(const char *code, char *const *allowed);

/* "ll_CC": two lower-case letters, '_', a valid country. */
bool locale_is_valid(const char *locale);

/* Absolute https URL with a host; http only for localhost, 127.0.0.1 or [::1]. No fragment,
 * no userinfo, no whitespace or control characters. At most 2048 bytes. */
bool redirect_uri_is_valid(const char *uri);

/* A printable UTF-8 string without control characters, 1..max bytes. */
bool text_is_valid(const char *s, size_t max);

/* Valid UTF-8 without NUL or control characters other than \t. */
bool utf8_is_valid(const char *s);
