/* SPDX-License-Identifier: MIT */
/*
 * Mail messages from templates (mail.h): the built-in templates, reading template_dir, the
 * placeholder renderer, the header and body encoders, and the composition of one message.
 *
 * Header safety is by construction: every header value is either checked to be a plain address
 * (To, From), made of our own characters (Date, Message-ID, MIME headers), or text that was
 * refused when it held a control character and is written as printable ASCII or as RFC 2047
 * encoded words (Subject, From's display name). So nothing a caller passes can start a header
 * line or end the header block.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "idm/cleanup.h"
#include "idm/utf8.h"
#include "log.h"
#include "mail.h"
#include "validate.h"

#define ENCODED_WORD_BYTES 45   /* UTF-8 bytes per encoded word: 60 base64 chars, 72 in all (<= 75) */
#define QP_LINE_MAX 76
#define BASE64_LINE_BYTES 57    /* 76 base64 characters a line */
#define LINE_MAX_7BIT 998

/* --- built-in templates --- */

typedef struct BuiltinTemplate {
        const char *kind;
        const char *subject;
        const char *text;
} BuiltinTemplate;

static const BuiltinTemplate builtins[] = {
        { "password-reset",
          "{{#publisherName}}{{publisherName}}: {{/publisherName}}Reset your password",
          "Hello,\n"
          "\n"
          "someone asked to reset the password of the account {{email}}"
          "{{#publisherName}} at {{publisherName}}{{/publisherName}}.\n"
          "{{#link}}\n"
          "\n"
          "To choose a new password, open this link{{#expiresMinutes}} within {{expiresMinutes}} "
          "minutes{{/expiresMinutes}}:\n"
          "\n"
          "{{link}}\n"
          "{{/link}}\n"
          "{{#code}}\n"
          "\n"
          "To choose a new password on the device where you asked, enter this code"
          "{{#expiresMinutes}} within {{expiresMinutes}} minutes{{/expiresMinutes}}:\n"
          "\n"
          "    {{code}}\n"
          "{{/code}}\n"
          "\n"
          "If you did not ask for this, ignore this message: your password stays as it is.\n" },
};

/* --- a growing buffer; a failed allocation or the size bound sticks --- */

typedef struct Buf {
        char *p;
        size_t len, cap;
        int error;              /* -ENOMEM, -EMSGSIZE */
} Buf;

static void buf_done(Buf *b) {
        free(b->p);
        *b = (Buf) {};
}

static void buf_put(Buf *b, const char *s, size_t n) {
        if (b->error)
                return;
        if (b->len + n > MAIL_MESSAGE_MAX) {
                b->error = -EMSGSIZE;
                return;
        }
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 1024;
                char *p;

                while (cap < b->len + n + 1)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p) {
                        b->error = -ENOMEM;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = 0;
}

static void buf_puts(Buf *b, const char *s) {
        buf_put(b, s, strlen(s));
}

static void buf_printf(Buf *b, const char *format, ...) _printf_(2, 3);
static void buf_printf(Buf *b, const char *format, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;
        int n;

        va_start(ap, format);
        n = vasprintf(&s, format, ap);
        va_end(ap);
        if (n < 0) {
                s = NULL;
                if (!b->error)
                        b->error = -ENOMEM;
                return;
        }
        buf_put(b, s, (size_t) n);
}

/* Takes the text out (NULL-terminated, never NULL when there is no error). */
static int buf_take(Buf *b, char **ret) {
        if (b->error) {
                int r = b->error;
                buf_done(b);
                return r;
        }
        if (!b->p) {
                b->p = strdup("");
                if (!b->p)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(b->p);
        *b = (Buf) {};
        return 0;
}

/* --- checks --- */

static bool char_in(char c, const char *set) {
        return c && strchr(set, c);
}

static bool is_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* 1..max bytes of letters, digits and the characters of extra. */
static bool word_is_valid(const char *s, size_t max, const char *extra) {
        size_t n = 0;

        if (!s || !*s)
                return false;
        for (; *s; s++, n++)
                if (n >= max || !(is_alnum(*s) || char_in(*s, extra)))
                        return false;
        return true;
}

static bool kind_is_valid(const char *s) {
        if (!word_is_valid(s, MAIL_KIND_MAX, "-"))
                return false;
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        return false;
        return true;
}

bool mail_address_is_valid(const char *address) {
        const char *at, *p;
        size_t label = 0;

        if (!address || strlen(address) > MAIL_ADDRESS_MAX)
                return false;
        at = strrchr(address, '@');
        if (!at || at == address || at - address > 64 || !at[1])
                return false;
        /* Local part: dot-atom of RFC 5322 atext. */
        if (address[0] == '.' || at[-1] == '.')
                return false;
        for (p = address; p < at; p++) {
                if (*p == '.') {
                        if (p[1] == '.')
                                return false;
                        continue;
                }
                if (!(is_alnum(*p) || char_in(*p, "!#$%&'*+-/=?^_`{|}~")))
                        return false;
        }
        /* Domain: LDH labels of 1..63 characters, not starting or ending with '-'. */
        for (p = at + 1;; p++) {
                if (*p == '.' || *p == 0) {
                        if (label == 0 || p[-1] == '-')
                                return false;
                        if (*p == 0)
                                return true;
                        label = 0;
                        continue;
                }
                if (!(is_alnum(*p) || (*p == '-' && label > 0)) || ++label > 63)
                        return false;
        }
}

/* Strict UTF-8 without control characters; newlines (and tabs) only when multiline. */
static bool text_ok(const char *s, size_t len, bool multiline) {
        const unsigned char *p = (const unsigned char *) s, *end = p + len;

        while (p < end) {
                uint32_t cp;
                size_t n = utf8_decode(p, &cp);

                if (n == 0 || (size_t) (end - p) < n)
                        return false;
                if ((cp < 0x20 && !(multiline && (cp == '\n' || cp == '\t'))) || (cp >= 0x7f && cp < 0xa0))
                        return false;
                p += n;
        }
        return true;
}

/* --- templates --- */

typedef struct TemplateFile {
        char *name;             /* "password-reset.123456789.en_GB.txt" */
        char *text;
} TemplateFile;

struct MailTemplates {
        TemplateFile *files;
        size_t n;
};

MailTemplates *mail_templates_free(MailTemplates *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n; i++) {
                free(t->files[i].name);
                free(t->files[i].text);
        }
        free(t->files);
        free(t);
        return NULL;
}

unsigned mail_templates_count(const MailTemplates *t) {
        return t ? (unsigned) t->n : 0;
}

static bool template_name_is_ours(const char *name) {
        static const char *const parts[] = { ".txt", ".html", ".subject" };
        size_t n = strlen(name);

        if (name[0] == '.' || !word_is_valid(name, 255, "._-"))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(parts); i++) {
                size_t k = strlen(parts[i]);

                if (n > k && streq(name + n - k, parts[i]))
                        return true;
        }
        return false;
}

/* Reads one template file: UTF-8, CRs before newlines dropped; a subject is its one line. */
static int template_read(int dir_fd, const char *name, char **ret) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_free_ char *text = NULL;
        bool subject = strlen(name) > 8 && streq(name + strlen(name) - 8, ".subject");
        size_t len = 0, w = 0;
        struct stat st;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        if (st.st_size > (off_t) MAIL_TEMPLATE_MAX)
                return -EFBIG;
        text = malloc(MAIL_TEMPLATE_MAX + 2);
        if (!text)
                return -ENOMEM;
        for (;;) {
                ssize_t k = read(fd, text + len, MAIL_TEMPLATE_MAX + 1 - len);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
                if (len > MAIL_TEMPLATE_MAX)
                        return -EFBIG;
        }
        text[len] = 0;
        if (memchr(text, 0, len))
                return -EBADMSG;
        /* CRLF to LF; a lone CR is refused below as a control character. */
        for (size_t i = 0; i < len; i++)
                if (!(text[i] == '\r' && i + 1 < len && text[i + 1] == '\n'))
                        text[w++] = text[i];
        text[w] = 0;
        len = w;
        if (subject) {
                while (len > 0 && text[len - 1] == '\n')
                        text[--len] = 0;
                if (strchr(text, '\n'))
                        return -EBADMSG;
        }
        if (!text_ok(text, len, !subject))
                return -EBADMSG;
        *ret = TAKE_PTR(text);
        return 0;
}

static int template_cmp(const void *a, const void *b) {
        return strcmp(((const TemplateFile *) a)->name, ((const TemplateFile *) b)->name);
}

int mail_templates_load(const char *dir, MailTemplates **ret, char **reterr_file) {
        _cleanup_(mail_templates_freep) MailTemplates *t = NULL;
        DIR *d = NULL;
        struct dirent *de;
        int r = 0;

        if (reterr_file)
                *reterr_file = NULL;
        t = calloc(1, sizeof(MailTemplates));
        if (!t)
                return -ENOMEM;
        if (dir && dir[0]) {
                d = opendir(dir);
                if (!d)
                        return -errno;
                while ((errno = 0, de = readdir(d))) {
                        TemplateFile *files;
                        char *text = NULL;

                        if (!template_name_is_ours(de->d_name))
                                continue;
                        if (t->n >= MAIL_TEMPLATE_FILES_MAX) {
                                r = -E2BIG;
                                break;
                        }
                        r = template_read(dirfd(d), de->d_name, &text);
                        if (r < 0) {
                                if (reterr_file)
                                        *reterr_file = strdup(de->d_name);
                                break;
                        }
                        files = reallocarray(t->files, t->n + 1, sizeof(TemplateFile));
                        if (!files) {
                                free(text);
                                r = -ENOMEM;
                                break;
                        }
                        t->files = files;
                        t->files[t->n].text = text;
                        t->files[t->n].name = strdup(de->d_name);
                        if (!t->files[t->n++].name) {
                                r = -ENOMEM;
                                break;
                        }
                }
                if (r == 0 && errno != 0)
                        r = -errno;
                (void) closedir(d);
                if (r < 0)
                        return r;
                if (t->n > 0)
                        qsort(t->files, t->n, sizeof(TemplateFile), template_cmp);
        }
        *ret = TAKE_PTR(t);
        return 0;
}

static const char *template_find(const MailTemplates *t, const char *name) {
        TemplateFile key = { .name = (char *) name }, *f;

        if (!t || t->n == 0)
                return NULL;
        f = bsearch(&key, t->files, t->n, sizeof(TemplateFile), template_cmp);
        return f ? f->text : NULL;
}

/* The names to try, most specific first: kind.pub.locale, kind.pub, kind.locale, kind. */
static int template_candidates(const MailSpec *spec, char *names[static 4]) {
        const char *pub = spec->publisher_id, *loc = spec->locale;
        size_t n = 0;

        if (pub && loc && asprintf(&names[n++], "%s.%s.%s", spec->kind, pub, loc) < 0)
                return -ENOMEM;
        if (pub && asprintf(&names[n++], "%s.%s", spec->kind, pub) < 0)
                return -ENOMEM;
        if (loc && asprintf(&names[n++], "%s.%s", spec->kind, loc) < 0)
                return -ENOMEM;
        if (asprintf(&names[n++], "%s", spec->kind) < 0)
                return -ENOMEM;
        return (int) n;
}

static const char *template_part(const MailTemplates *t, const char *base, const char *part) {
        _cleanup_free_ char *name = NULL;

        if (asprintf(&name, "%s.%s", base, part) < 0)
                return NULL;
        return template_find(t, name);
}

typedef struct Chosen {
        const char *subject, *text, *html;
} Chosen;

static int template_choose(const MailTemplates *t, const MailSpec *spec, Chosen *ret) {
        char *names[4] = {};
        Chosen c = {};
        int n, chosen = -1;

        n = template_candidates(spec, names);
        if (n < 0)
                goto finish;
        for (int i = 0; i < n && chosen < 0; i++) {
                c.text = template_part(t, names[i], "txt");
                if (c.text) {
                        chosen = i;
                        c.html = template_part(t, names[i], "html");
                }
        }
        for (int i = chosen < 0 ? n : chosen; i < n && !c.subject; i++)
                c.subject = template_part(t, names[i], "subject");
        for (size_t i = 0; i < ELEMENTSOF(builtins); i++)
                if (streq(builtins[i].kind, spec->kind)) {
                        if (!c.text)
                                c.text = builtins[i].text;
                        if (!c.subject)
                                c.subject = builtins[i].subject;
                }
        if (!c.text)
                n = -ENOMSG;
        else if (!c.subject)
                c.subject = spec->kind;
        *ret = c;
finish:
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                free(names[i]);
        return n < 0 ? n : 0;
}

/* --- rendering --- */

static int vars_check(json_t *vars) {
        const char *key;
        json_t *v;

        if (!vars)
                return 0;
        if (!json_is_object(vars))
                return -EINVAL;
        json_object_foreach(vars, key, v) {
                if (json_is_integer(v))
                        continue;
                if (!json_is_string(v) || json_string_length(v) > MAIL_VALUE_MAX ||
                    !text_ok(json_string_value(v), json_string_length(v), false))
                        return -EINVAL;
        }
        return 0;
}

/* vars[name] as text into buf (32 bytes for integers); NULL when missing. */
static const char *var_text(json_t *vars, const char *name, size_t name_len, char buf[static 32]) {
        char key[65];
        json_t *v;

        if (name_len >= sizeof(key))
                return NULL;
        memcpy(key, name, name_len);
        key[name_len] = 0;
        v = json_object_get(vars, key);
        if (json_is_integer(v)) {
                (void) snprintf(buf, 32, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return buf;
        }
        return json_string_value(v);
}

static void put_escaped_html(Buf *b, const char *s) {
        for (; *s; s++)
                switch (*s) {
                case '&': buf_puts(b, "&amp;"); break;
                case '<': buf_puts(b, "&lt;"); break;
                case '>': buf_puts(b, "&gt;"); break;
                case '"': buf_puts(b, "&quot;"); break;
                case '\'': buf_puts(b, "&#39;"); break;
                default: buf_put(b, s, 1);
                }
}

/* A tag "{{...}}" at p: its kind ('#', '/' or 0), name and length; false if p holds none. */
static bool tag_parse(const char *p, char *ret_kind, const char **ret_name, size_t *ret_name_len,
                      size_t *ret_len) {
        const char *s = p + 2, *end;
        char kind = 0;

        if (p[0] != '{' || p[1] != '{')
                return false;
        if (*s == '#' || *s == '/')
                kind = *s++;
        end = s;
        while (is_alnum(*end) || *end == '_')
                end++;
        if (end == s || end - s > 64 || end[0] != '}' || end[1] != '}')
                return false;
        *ret_kind = kind;
        *ret_name = s;
        *ret_name_len = (size_t) (end - s);
        *ret_len = (size_t) (end + 2 - p);
        return true;
}

/* A section tag alone on its line takes the line's newline with it. */
static size_t standalone_skip(const char *text, const char *tag, size_t tag_len) {
        if ((tag == text || tag[-1] == '\n') && tag[tag_len] == '\n')
                return 1;
        return 0;
}

static void render(const char *text, json_t *vars, bool html, Buf *b) {
        const char *p = text;

        while (*p) {
                const char *name, *value;
                size_t name_len, len;
                char kind, num[32];

                if (!tag_parse(p, &kind, &name, &name_len, &len)) {
                        const char *next = strstr(p + 1, "{{");
                        size_t n = next ? (size_t) (next - p) : strlen(p);

                        buf_put(b, p, n);
                        p += n;
                        continue;
                }
                value = var_text(vars, name, name_len, num);
                if (kind == 0) {
                        if (value && html)
                                put_escaped_html(b, value);
                        else if (value)
                                buf_puts(b, value);
                        p += len;
                        continue;
                }
                if (kind == '#' && (!value || !value[0])) {
                        /* Skip to the matching close tag. */
                        const char *q = p + len;
                        char k2;
                        const char *n2;
                        size_t n2_len, len2;

                        for (; *q; q++)
                                if (tag_parse(q, &k2, &n2, &n2_len, &len2) && k2 == '/' && n2_len == name_len &&
                                    memcmp(n2, name, name_len) == 0)
                                        break;
                        if (!*q) {
                                p = q;
                                continue;
                        }
                        p = q + len2 + standalone_skip(text, q, len2);
                        continue;
                }
                p += len + standalone_skip(text, p, len);
        }
}

static int render_string(const char *text, json_t *vars, bool html, char **ret) {
        Buf b = {};

        render(text, vars, html, &b);
        return buf_take(&b, ret);
}

/* --- encoders --- */

char *mail_encode_qp(const char *text, size_t len) {
        static const char hex[] = "0123456789ABCDEF";
        size_t line = 0;
        Buf b = {};
        char *ret = NULL;

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) text[i];
                bool at_eol = i + 1 >= len || text[i + 1] == '\n';
                char tok[3];
                size_t n;

                if (c == '\n') {
                        buf_puts(&b, "\n");
                        line = 0;
                        continue;
                }
                if (c == '=' || c > 126 || (c < 32 && c != '\t') || ((c == ' ' || c == '\t') && at_eol)) {
                        tok[0] = '=';
                        tok[1] = hex[c >> 4];
                        tok[2] = hex[c & 15];
                        n = 3;
                } else {
                        tok[0] = (char) c;
                        n = 1;
                }
                /* Room for the soft break's '=' at the end of the line. */
                if (line + n > QP_LINE_MAX - 1) {
                        buf_puts(&b, "=\n");
                        line = 0;
                }
                buf_put(&b, tok, n);
                line += n;
        }
        return buf_take(&b, &ret) < 0 ? NULL : ret;
}

static void put_base64(Buf *b, const unsigned char *data, size_t len) {
        char out[sodium_base64_ENCODED_LEN(BASE64_LINE_BYTES, sodium_base64_VARIANT_ORIGINAL)];

        for (size_t i = 0; i < len; i += BASE64_LINE_BYTES) {
                size_t n = len - i < BASE64_LINE_BYTES ? len - i : BASE64_LINE_BYTES;

                (void) sodium_bin2base64(out, sizeof(out), data + i, n, sodium_base64_VARIANT_ORIGINAL);
                buf_puts(b, out);
                buf_puts(b, "\n");
        }
}

static bool is_printable_ascii(const char *s) {
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

/* RFC 2047 "B" encoded words, whole characters only, separated by folding whitespace. */
static void put_encoded_words(Buf *b, const char *s) {
        char out[sodium_base64_ENCODED_LEN(ENCODED_WORD_BYTES, sodium_base64_VARIANT_ORIGINAL)];
        bool first = true;

        while (*s) {
                size_t n = utf8_prefix_len(s, ENCODED_WORD_BYTES);

                if (n == 0)     /* cannot happen with text_ok() input; never loop forever */
                        n = 1;
                (void) sodium_bin2base64(out, sizeof(out), (const unsigned char *) s, n,
                                         sodium_base64_VARIANT_ORIGINAL);
                buf_printf(b, "%s=?UTF-8?B?%s?=", first ? "" : "\n ", out);
                first = false;
                s += n;
        }
}

char *mail_encode_header_text(const char *utf8) {
        Buf b = {};
        char *ret = NULL;

        if (is_printable_ascii(utf8) && !strstr(utf8, "=?") && strlen(utf8) <= 900)
                buf_puts(&b, utf8);
        else
                put_encoded_words(&b, utf8);
        return buf_take(&b, &ret) < 0 ? NULL : ret;
}

/* From's display name: a quoted string when it is printable ASCII, else encoded words. */
static void put_display_name(Buf *b, const char *name) {
        if (is_printable_ascii(name) && !strstr(name, "=?") && strlen(name) <= 200) {
                buf_puts(b, "\"");
                for (; *name; name++) {
                        if (*name == '"' || *name == '\\')
                                buf_puts(b, "\\");
                        buf_put(b, name, 1);
                }
                buf_puts(b, "\"");
        } else
                put_encoded_words(b, name);
}

/* The Content-Transfer-Encoding for a body: 7bit when it is short-lined ASCII (and does not hold
 * the boundary), else base64 when more than a third of it is non-ASCII, else quoted-printable. */
static const char *body_encoding(const char *body, const char *boundary) {
        size_t high = 0, line = 0, longest = 0, len = strlen(body);

        for (const char *p = body; *p; p++) {
                if ((unsigned char) *p >= 0x80)
                        high++;
                line = *p == '\n' ? 0 : line + 1;
                if (line > longest)
                        longest = line;
        }
        if (high == 0 && longest <= LINE_MAX_7BIT && !(boundary && strstr(body, boundary)))
                return "7bit";
        return high * 3 > len ? "base64" : "quoted-printable";
}

static int put_body(Buf *b, const char *type, const char *body, const char *boundary) {
        const char *cte = body_encoding(body, boundary);

        buf_printf(b, "Content-Type: %s; charset=UTF-8\nContent-Transfer-Encoding: %s\n\n", type, cte);
        if (streq(cte, "7bit"))
                buf_puts(b, body);
        else if (streq(cte, "base64"))
                put_base64(b, (const unsigned char *) body, strlen(body));
        else {
                _cleanup_free_ char *qp = mail_encode_qp(body, strlen(body));

                if (!qp)
                        return -ENOMEM;
                buf_puts(b, qp);
        }
        if (b->len > 0 && b->p[b->len - 1] != '\n')
                buf_puts(b, "\n");
        return 0;
}

static void put_date(Buf *b, const char *header, uint64_t usec) {
        static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        time_t t = (time_t) (usec / 1000000ULL);
        struct tm tm;

        if (!gmtime_r(&t, &tm)) {
                b->error = b->error ?: -EINVAL;
                return;
        }
        if (header)
                buf_printf(b, "%s: %s, %02d %s %04d %02d:%02d:%02d +0000\n", header, days[tm.tm_wday], tm.tm_mday,
                           months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        else
                buf_printf(b, "%04d%02d%02d%02d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                           tm.tm_min, tm.tm_sec);
}

static const char *text_with_newline(const char *s, char **buf) {
        size_t n = strlen(s);

        if (n > 0 && s[n - 1] == '\n')
                return s;
        if (asprintf(buf, "%s\n", s) < 0) {
                *buf = NULL;
                return NULL;
        }
        return *buf;
}

int mail_compose(const MailTemplates *t, const MailSpec *spec, char **ret) {
        _cleanup_free_ char *subject = NULL, *text = NULL, *html = NULL, *subject_enc = NULL, *text_nl = NULL,
                            *html_nl = NULL;
        const char *name, *domain, *body_text, *body_html = NULL;
        Chosen c = {};
        Buf b = {};
        int r;

        if (!spec || !kind_is_valid(spec->kind) ||
            (spec->publisher_id && !word_is_valid(spec->publisher_id, 64, "_-")) ||
            (spec->locale && !word_is_valid(spec->locale, 16, "_-")) ||
            !word_is_valid(spec->unique, 64, "_-") || strlen(spec->unique) < 8 ||
            !email_is_valid(spec->to) || !mail_address_is_valid(spec->from))
                return -EINVAL;
        r = vars_check(spec->vars);
        if (r < 0)
                return r;

        r = template_choose(t, spec, &c);
        if (r < 0)
                return r;
        r = render_string(c.subject, spec->vars, false, &subject);
        if (r < 0)
                return r;
        /* The values were checked, the template too; a subject is one line all the same. */
        if (!text_ok(subject, strlen(subject), false))
                return -EINVAL;
        subject_enc = mail_encode_header_text(subject);
        if (!subject_enc)
                return -ENOMEM;
        r = render_string(c.text, spec->vars, false, &text);
        if (r < 0)
                return r;
        body_text = text_with_newline(text, &text_nl);
        if (c.html) {
                r = render_string(c.html, spec->vars, true, &html);
                if (r < 0)
                        return r;
                body_html = text_with_newline(html, &html_nl);
        }
        if (!body_text || (c.html && !body_html))
                return -ENOMEM;

        domain = strrchr(spec->from, '@') + 1;
        name = json_string_value(json_object_get(spec->vars, "publisherName"));

        put_date(&b, "Date", spec->now_usec);
        buf_puts(&b, "From: ");
        if (name && name[0]) {
                put_display_name(&b, name);
                buf_puts(&b, " ");
        }
        buf_printf(&b, "<%s>\nTo: <%s>\nSubject: %s\nMessage-ID: <", spec->from, spec->to, subject_enc);
        put_date(&b, NULL, spec->now_usec);
        buf_printf(&b, ".%s@%s>\nAuto-Submitted: auto-generated\nMIME-Version: 1.0\n", spec->unique, domain);
        if (!body_html)
                r = put_body(&b, "text/plain", body_text, NULL);
        else {
                _cleanup_free_ char *boundary = NULL;

                if (asprintf(&boundary, "--=_%s", spec->unique) < 0) {
                        buf_done(&b);
                        return -ENOMEM;
                }
                buf_printf(&b, "Content-Type: multipart/alternative; boundary=\"=_%s\"\n\n"
                           "This is a message in MIME format: plain text and HTML.\n\n--=_%s\n",
                           spec->unique, spec->unique);
                /* The line break before a boundary belongs to the boundary (RFC 2046 5.1.1): one
                 * more keeps each part's own last line break. */
                r = put_body(&b, "text/plain", body_text, boundary);
                if (r >= 0) {
                        buf_printf(&b, "\n--=_%s\n", spec->unique);
                        r = put_body(&b, "text/html", body_html, boundary);
                }
                buf_printf(&b, "\n--=_%s--\n", spec->unique);
        }
        if (r < 0) {
                buf_done(&b);
                return r;
        }
        return buf_take(&b, ret);
}
