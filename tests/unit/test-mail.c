/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of mail.c: the encoders (quoted-printable, RFC 2047 words) on known answers, the
 * renderer's placeholders and sections, the template files and their lookup order, header
 * safety (every way a value could add a header line is refused), and a whole message composed
 * with a fixed time and unique string (a known answer).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idmd/mail.h"
#include "tests.h"

static const char *const expected_message =
        "Date: Fri, 14 Mar 2025 09:26:53 +0000\n"
        "From: \"Acme TV\" <idm@example.com>\n"
        "To: <alice@example.com>\n"
        "Subject: Acme TV: Reset your password\n"
        "Message-ID: <20250314092653.AbCdEfGh12345678@example.com>\n"
        "Auto-Submitted: auto-generated\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "Hello,\n"
        "\n"
        "someone asked to reset the password of the account alice@example.com at Acme TV.\n"
        "\n"
        "To choose a new password, open this link within 30 minutes:\n"
        "\n"
        "https://acme.example/r?t=abc\n"
        "\n"
        "If you did not ask for this, ignore this message: your password stays as it is.\n";

static MailSpec spec_of(json_t *vars) {
        return (MailSpec) {
                .kind = "password-reset",
                .to = "alice@example.com",
                .from = "idm@example.com",
                .vars = vars,
                .now_usec = 1741944413ULL * 1000000ULL,         /* 2025-03-14T09:26:53Z */
                .unique = "AbCdEfGh12345678",
        };
}

static int compose(const MailTemplates *t, const MailSpec *spec, char **ret) {
        return mail_compose(t, spec, ret);
}

TEST(known_answer) {
        _cleanup_(json_decrefp) json_t *vars = json_pack("{s:s, s:s, s:s, s:i}", "link", "https://acme.example/r?t=abc",
                                                          "email", "alice@example.com", "publisherName", "Acme TV",
                                                          "expiresMinutes", 30);
        MailSpec spec = spec_of(vars);
        _cleanup_free_ char *m = NULL, *again = NULL;

        ASSERT_OK(compose(NULL, &spec, &m));
        ASSERT_STREQ(m, expected_message);
        /* Deterministic: the same input, the same message. */
        ASSERT_OK(compose(NULL, &spec, &again));
        ASSERT_STREQ(again, m);
}

TEST(qp) {
        _cleanup_free_ char *a = mail_encode_qp("a=b \t\nc \n", 9), *b = NULL, *c = NULL, *line = NULL;
        char long_line[200];

        ASSERT_STREQ(a, "a=3Db =09\nc=20\n");
        b = mail_encode_qp("Grüße\n", strlen("Grüße\n"));
        ASSERT_STREQ(b, "Gr=C3=BC=C3=9Fe\n");
        memset(long_line, 'x', 100);
        long_line[100] = 0;
        c = mail_encode_qp(long_line, 100);
        ASSERT_EQ(strcspn(c, "\n"), 76);        /* 75 characters and the soft break's '=' */
        ASSERT_TRUE(c[75] == '=' && c[76] == '\n');
        ASSERT_STREQ(c + 77, long_line + 75);
        /* An escape is never split by a soft break. */
        memset(long_line, 'x', 74);
        strcpy(long_line + 74, "é\n");
        line = mail_encode_qp(long_line, strlen(long_line));
        ASSERT_TRUE(strstr(line, "x=\n=C3=A9\n"));
}

TEST(header_text) {
        _cleanup_free_ char *a = mail_encode_header_text("Hello"), *b = mail_encode_header_text("Grüße"),
                            *c = NULL, *d = mail_encode_header_text("=?UTF-8?B?x?=");
        char long_text[400] = "";

        ASSERT_STREQ(a, "Hello");
        ASSERT_STREQ(b, "=?UTF-8?B?R3LDvMOfZQ==?=");
        ASSERT_STREQ(d, "=?UTF-8?B?PT9VVEYtOD9CP3g/PQ==?=");  /* what looks encoded is encoded */
        for (int i = 0; i < 40; i++)
                strcat(long_text, "é€");
        c = mail_encode_header_text(long_text);
        /* Folded encoded words, each at most 75 characters, every character whole. */
        for (char *p = c, *e; *p; p = *e ? e + 2 : e) {
                e = strchr(p, '\n') ?: p + strlen(p);
                ASSERT_TRUE(e - p <= 75);
                ASSERT_TRUE(strncmp(p, "=?UTF-8?B?", 10) == 0);
                if (*e)
                        ASSERT_TRUE(e[1] == ' ');
        }
}

TEST(addresses) {
        ASSERT_TRUE(mail_address_is_valid("idmd@localhost"));
        ASSERT_TRUE(mail_address_is_valid("no-reply+idm@mail.example.com"));
        ASSERT_FALSE(mail_address_is_valid("Idmd <idmd@example.com>"));
        ASSERT_FALSE(mail_address_is_valid("idmd@example.com\nBcc: x@y.z"));
        ASSERT_FALSE(mail_address_is_valid("idmd@-example.com"));
        ASSERT_FALSE(mail_address_is_valid("idmd@example..com"));
        ASSERT_FALSE(mail_address_is_valid("@example.com"));
        ASSERT_FALSE(mail_address_is_valid("idmd@"));
        ASSERT_FALSE(mail_address_is_valid("a.@example.com"));
        ASSERT_FALSE(mail_address_is_valid("a b@example.com"));
}

/* Each refusal is -EINVAL and nothing is produced. */
static void refused(MailSpec spec) {
        char *m = NULL;

        ASSERT_EQ(compose(NULL, &spec, &m), -EINVAL);
        ASSERT_TRUE(m == NULL);
}

TEST(header_injection) {
        static const char *const bad_to[] = {
                "alice@example.com\r\nBcc: eve@example.com", "alice@example.com\n", "alice@example.com, eve@example.com",
                "Alice <alice@example.com>", "", "alice",
        };
        static const char *const bad_values[] = { "Acme\r\nBcc: eve@example.com", "Acme\n", "Acme\r", "a\x1b[2J",
                                                  "\x7f", "\xc2\x85" /* U+0085, a C1 control */ };
        _cleanup_(json_decrefp) json_t *ok = json_pack("{s:s}", "code", "123456");
        MailSpec spec;

        for (size_t i = 0; i < ELEMENTSOF(bad_to); i++) {
                spec = spec_of(ok);
                spec.to = bad_to[i];
                refused(spec);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_values); i++) {
                _cleanup_(json_decrefp) json_t *vars = json_pack("{s:s}", "publisherName", bad_values[i]);
                _cleanup_(json_decrefp) json_t *other = json_pack("{s:s}", "unused", bad_values[i]);

                spec = spec_of(vars);
                refused(spec);
                spec = spec_of(other);  /* even a value no template uses */
                refused(spec);
        }
        spec = spec_of(ok);
        spec.from = "idm@example.com\nBcc: eve@example.com";
        refused(spec);
        spec = spec_of(ok);
        spec.kind = "password-reset\n";
        refused(spec);
        spec = spec_of(ok);
        spec.locale = "../x";
        refused(spec);
        spec = spec_of(ok);
        spec.publisher_id = "1/2";
        refused(spec);
        {
                _cleanup_(json_decrefp) json_t *arr = json_pack("{s:[s]}", "code", "1");
                _cleanup_(json_decrefp) json_t *notobj = json_string("x");

                spec = spec_of(arr);
                refused(spec);
                spec = spec_of(notobj);
                refused(spec);
        }
}

static void rm_rf(const char *dir) {
        char cmd[64];

        (void) snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        ASSERT_EQ(system(cmd), 0);
}

static void write_file(const char *dir, const char *name, const char *text) {
        _cleanup_free_ char *path = NULL;
        FILE *f;

        ASSERT_TRUE(asprintf(&path, "%s/%s", dir, name) > 0);
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs(text, f);
        ASSERT_EQ(fclose(f), 0);
}

TEST(templates_and_sections) {
        char dir[] = "/tmp/test-mail.XXXXXX";
        _cleanup_(mail_templates_freep) MailTemplates *t = NULL;
        _cleanup_(json_decrefp) json_t *vars = json_pack("{s:s, s:s, s:s}", "code", "42", "empty", "",
                                                          "publisherName", "A&B");
        _cleanup_free_ char *m1 = NULL, *m2 = NULL, *m3 = NULL, *bad = NULL;
        MailSpec spec = spec_of(vars);

        ASSERT_TRUE(mkdtemp(dir));
        write_file(dir, "note.txt", "code {{code}}\n{{#code}}\nhas code\n{{/code}}\n{{#empty}}\nnever\n{{/empty}}\n"
                                    "{{#missing}}never{{/missing}}end {{unknown}}{{ not a tag }}\r\n");
        write_file(dir, "note.subject", "Note for {{publisherName}}\n\n");
        write_file(dir, "note.111.txt", "publisher {{code}}\n");
        write_file(dir, "note.111.html", "<i>{{publisherName}}</i>\n");
        write_file(dir, "note.de_DE.subject", "Notiz\n");
        write_file(dir, "other.txt", "x\n");
        write_file(dir, "not-a-template", "\x01");
        ASSERT_OK(mail_templates_load(dir, &t, &bad));
        ASSERT_EQ(mail_templates_count(t), 6);

        spec.kind = "note";
        ASSERT_OK(compose(t, &spec, &m1));
        ASSERT_TRUE(strstr(m1, "\nSubject: Note for A&B\n"));
        ASSERT_TRUE(strstr(m1, "\n\ncode 42\nhas code\nend {{ not a tag }}\n"));
        spec.publisher_id = "111";
        spec.locale = "de_DE";
        ASSERT_OK(compose(t, &spec, &m2));
        /* note.111 has the text and the HTML; its subject comes from note.de_DE. */
        ASSERT_TRUE(strstr(m2, "\nSubject: Notiz\n"));
        ASSERT_TRUE(strstr(m2, "Content-Type: multipart/alternative; boundary=\"=_AbCdEfGh12345678\"\n"));
        ASSERT_TRUE(strstr(m2, "\npublisher 42\n\n--=_AbCdEfGh12345678\nContent-Type: text/html; charset=UTF-8\n"
                               "Content-Transfer-Encoding: 7bit\n\n<i>A&amp;B</i>\n\n--=_AbCdEfGh12345678--\n"));
        spec.kind = "nothing";
        ASSERT_EQ(compose(t, &spec, &m3), -ENOMSG);

        /* A bad file refuses the lot, naming itself. */
        t = mail_templates_free(t);
        write_file(dir, "bad.txt", "tab\tok, escape \x1b not\n");
        ASSERT_EQ(mail_templates_load(dir, &t, &bad), -EBADMSG);
        ASSERT_STREQ(bad, "bad.txt");
        free(bad);
        bad = NULL;
        write_file(dir, "bad.txt", "fine\n");
        write_file(dir, "two.subject", "line one\nline two\n");
        ASSERT_EQ(mail_templates_load(dir, &t, &bad), -EBADMSG);
        ASSERT_STREQ(bad, "two.subject");
        ASSERT_EQ(mail_templates_load("/nonexistent/dir", &t, NULL), -ENOENT);

        rm_rf(dir);
}

TEST(size_bound) {
        _cleanup_(json_decrefp) json_t *vars = json_object();
        char dir[] = "/tmp/test-mail.XXXXXX";
        _cleanup_(mail_templates_freep) MailTemplates *t = NULL;
        _cleanup_free_ char *big = malloc(MAIL_TEMPLATE_MAX), *m = NULL, *value = malloc(MAIL_VALUE_MAX + 1);
        MailSpec spec = spec_of(vars);
        size_t n = 0;

        ASSERT_TRUE(big && value && mkdtemp(dir));
        memset(value, 'v', MAIL_VALUE_MAX);
        value[MAIL_VALUE_MAX] = 0;
        ASSERT_OK(json_object_set_new(vars, "v", json_string(value)));
        /* 64 KiB of {{v}}: 13 107 × 4 KiB would be 52 MiB. */
        while (n + 5 < MAIL_TEMPLATE_MAX - 1) {
                memcpy(big + n, "{{v}}", 5);
                n += 5;
        }
        big[n] = 0;
        write_file(dir, "big.txt", big);
        ASSERT_OK(mail_templates_load(dir, &t, NULL));
        spec.kind = "big";
        ASSERT_EQ(compose(t, &spec, &m), -EMSGSIZE);
        ASSERT_TRUE(m == NULL);
        rm_rf(dir);
}

int main(void) {
        RUN(known_answer);
        RUN(qp);
        RUN(header_text);
        RUN(addresses);
        RUN(header_injection);
        RUN(templates_and_sections);
        RUN(size_bound);
        return 0;
}
