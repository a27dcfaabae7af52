/* SPDX-License-Identifier: MIT */
/*
 * Mail messages built from templates: the templates (built in, and the files of [mail]
 * template_dir, read once at start), rendering them with placeholder values, and composing the
 * complete RFC 5322 message that the outbox stores and hands to the mail command (headers made
 * safe, UTF-8 subjects and names as RFC 2047 encoded words, bodies as 7bit, quoted-printable or
 * base64, a multipart/alternative message when there is an HTML part).
 *
 * Pure apart from mail_templates_load(), which reads the directory; no logging beyond debug, no
 * clock, no random: the caller passes the time and a unique string, so the same input gives the
 * same message (the known-answer unit tests rely on it). mail.c uses libsodium for base64 only.
 *
 * Templates: a file "<kind>[.<publisherId>][.<locale>].<part>" in template_dir, part "txt" (the
 * plain text, required for a variant to count), "html" (optional HTML part) or "subject" (its
 * first line). The variant used for (kind, publisher, locale) is the first of kind.publisher.locale,
 * kind.publisher, kind.locale, kind that has a .txt file, else the built-in one; its .html is the
 * HTML part if present; its .subject if present, else the next .subject along the same order,
 * else the built-in subject. Placeholders: {{name}} is replaced by vars[name] (a string, or an
 * integer in decimal; empty when missing), HTML-escaped in the HTML part; {{#name}}...{{/name}}
 * keeps its content only when vars[name] is present and not empty (a tag alone on its line takes
 * its line with it).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "idm/cleanup.h"

#define MAIL_COMMAND_DEFAULT "/usr/sbin/sendmail -t -i"
#define MAIL_COMMAND_WORDS_MAX 32
#define MAIL_ADDRESS_MAX 254
#define MAIL_MESSAGE_MAX (1024u * 1024u)        /* a composed message, in bytes */
#define MAIL_TEMPLATE_MAX (64u * 1024u)         /* one template file */
#define MAIL_TEMPLATE_FILES_MAX 1024u           /* template files read from template_dir */
#define MAIL_VALUE_MAX 4096u                    /* one placeholder value, in bytes */
#define MAIL_KIND_MAX 64u                       /* kind: [a-z0-9-], 1..64 bytes */

/* A plain address local@domain for From: a dot-atom local part of ASCII atext, a domain of
 * letter-digit-hyphen labels (a single label is allowed: "localhost"), at most MAIL_ADDRESS_MAX
 * bytes. No display name, comments or quoting. */
bool mail_address_is_valid(const char *address);

typedef struct MailTemplates MailTemplates;

/* Reads the template files of dir (NULL or "": none, built-in only): regular files named
 * "<kind>[.<publisherId>][.<locale>].txt|.html|.subject" (others are ignored). Each must be
 * valid UTF-8 without NUL or control characters other than tab and newline (CR before a newline
 * is dropped), at most MAIL_TEMPLATE_MAX bytes; a .subject holds one line. Errors: -ENOENT /
 * -ENOTDIR and other errno of opening dir or a file, -EFBIG a file too large, -EBADMSG a file
 * that is not valid, -E2BIG more than MAIL_TEMPLATE_FILES_MAX files, -ENOMEM; *reterr_file (if
 * given) is then the file's name (a new string, or NULL). */
int mail_templates_load(const char *dir, MailTemplates **ret, char **reterr_file);
MailTemplates *mail_templates_free(MailTemplates *t);
DEFINE_POINTER_CLEANUP(MailTemplates, mail_templates_free)
/* How many files were read (for the start-up log line). */
unsigned mail_templates_count(const MailTemplates *t);

typedef struct MailSpec {
        const char *kind;               /* [a-z0-9-]{1,64} */
        const char *publisher_id;       /* NULL: none; [A-Za-z0-9_-]{1,64} */
        const char *locale;             /* NULL: none; [A-Za-z0-9_-]{1,16} */
        const char *to;                 /* the recipient: email_is_valid() */
        const char *from;               /* the sender: mail_address_is_valid() */
        json_t *vars;                   /* object of strings/integers; NULL: none. "publisherName",
                                         * when given, is also From's display name */
        uint64_t now_usec;              /* the Date header (realtime µs) */
        const char *unique;             /* [A-Za-z0-9_-]{8,64}: Message-ID and MIME boundary */
} MailSpec;

/* Renders the template of spec->kind and composes the whole message (LF line endings, as a
 * local sendmail expects them), *ret a new string. -EINVAL: a bad kind, publisher_id, locale or
 * unique; a "to" or "from" that is not a plain address (CR/LF, a second address, a display
 * name, ...); vars not an object, a value not a string or an integer, longer than
 * MAIL_VALUE_MAX, or with control characters (CR/LF included), or a subject that renders with
 * them. -ENOMSG: no template for kind. -EMSGSIZE: the message would exceed MAIL_MESSAGE_MAX.
 * -ENOMEM. */
int mail_compose(const MailTemplates *t, const MailSpec *spec, char **ret);

/* The encoders, for the unit tests. Each returns a new string or NULL on OOM. */
/* Quoted-printable (RFC 2045 6.7) of text with LF line breaks; lines of at most 76 characters. */
char *mail_encode_qp(const char *text, size_t len);
/* A header value: as it is when it is printable ASCII; else RFC 2047 "B" encoded words of UTF-8,
 * never splitting a character, folded onto continuation lines. */
char *mail_encode_header_text(const char *utf8);
