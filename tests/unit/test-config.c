/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for idmd/config.c: defaults, every value type, every way a value can be bad, the
 * FILE:LINE messages (stderr is captured and checked), libinih's quirks (overlong lines,
 * continuation lines, syntax errors), drop-ins, cross-key checks, config_set(), config_dump()
 * round trips, and that packaging/idmd.conf and docs/man/idmd.conf.5 list every key with its
 * default.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/protocol.h"
#include "idmd/config.h"
#include "idmd/log.h"
#include "tests.h"

#define USEC_PER_SEC UINT64_C(1000000)
#define MiB (UINT64_C(1024) * 1024)
#define GiB (UINT64_C(1024) * MiB)

/* ---- helpers -------------------------------------------------------------------------------- */

typedef struct Capture {
        int saved_fd;
        FILE *tmp;
} Capture;

static void capture_start(Capture *cap) {
        fflush(stderr);
        cap->tmp = tmpfile();
        ASSERT_TRUE(cap->tmp);
        cap->saved_fd = dup(STDERR_FILENO);
        ASSERT_TRUE(cap->saved_fd >= 0);
        ASSERT_TRUE(dup2(fileno(cap->tmp), STDERR_FILENO) >= 0);
}

/* Returns what was written to stderr meanwhile (and echoes it, so test logs still show it). */
static char *capture_stop(Capture *cap) {
        char *buf;
        long n;

        fflush(stderr);
        ASSERT_TRUE(dup2(cap->saved_fd, STDERR_FILENO) >= 0);
        close(cap->saved_fd);

        ASSERT_TRUE(fseek(cap->tmp, 0, SEEK_END) == 0);
        n = ftell(cap->tmp);
        ASSERT_TRUE(n >= 0);
        rewind(cap->tmp);
        buf = calloc(1, (size_t) n + 1);
        ASSERT_TRUE(buf);
        ASSERT_EQ(fread(buf, 1, (size_t) n, cap->tmp), n);
        fclose(cap->tmp);

        fputs(buf, stderr);
        return buf;
}

#define ASSERT_CONTAINS(haystack, needle)                                                       \
        do {                                                                                    \
                const char *_h = (haystack), *_n = (needle);                                    \
                if (!_h || !strstr(_h, _n)) {                                                   \
                        fprintf(stderr, "%s:%d: \"%s\" not found in:\n%s\n", __FILE__, __LINE__, \
                                _n, _h ? _h : "(null)");                                        \
                        abort();                                                                \
                }                                                                               \
        } while (0)

#define ASSERT_NOT_CONTAINS(haystack, needle)                                                   \
        do {                                                                                    \
                const char *_h = (haystack), *_n = (needle);                                    \
                if (strstr(_h, _n)) {                                                           \
                        fprintf(stderr, "%s:%d: unexpected \"%s\" in:\n%s\n", __FILE__,         \
                                __LINE__, _n, _h);                                              \
                        abort();                                                                \
                }                                                                               \
        } while (0)

/* Parses size bytes of text as "test.conf" into *ret (a fresh Config). Returns config_load_stream(). */
static int load_buffer(const char *text, size_t size, Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        FILE *f;
        int r;

        ASSERT_OK(config_new(&c));
        f = fmemopen((void *) text, size, "r");
        ASSERT_TRUE(f);
        r = config_load_stream(c, f, "test.conf");
        fclose(f);
        *ret = TAKE_PTR(c);
        return r;
}

static int load_text(const char *text, Config **ret) {
        return load_buffer(text, strlen(text), ret);
}

/* load_text() with stderr captured into *ret_log. */
static int load_text_log(const char *text, Config **ret, char **ret_log) {
        Capture cap;
        int r;

        capture_start(&cap);
        r = load_text(text, ret);
        *ret_log = capture_stop(&cap);
        return r;
}

static char *dump(const Config *c) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        ASSERT_TRUE(f);
        ASSERT_OK(config_dump(c, f));
        fclose(f);
        return buf;
}

static char *tmpdir_new(void) {
        const char *t = getenv("TMPDIR");
        char *d = NULL;

        ASSERT_TRUE(asprintf(&d, "%s/test-config.XXXXXX", t && *t ? t : "/tmp") > 0);
        ASSERT_TRUE(mkdtemp(d));
        return d;
}

static void write_file(const char *dir, const char *name, const char *text) {
        _cleanup_(freep) char *p = NULL;
        FILE *f;

        ASSERT_TRUE(asprintf(&p, "%s/%s", dir, name) > 0);
        f = fopen(p, "we");
        ASSERT_TRUE(f);
        fputs(text, f);
        ASSERT_EQ(fclose(f), 0);
}

static void rm_rf(const char *dir) {
        _cleanup_(freep) char *cmd = NULL;

        ASSERT_TRUE(strncmp(dir, "/", 1) == 0 && strstr(dir, "test-config."));
        ASSERT_TRUE(asprintf(&cmd, "rm -rf -- '%s'", dir) > 0);
        ASSERT_EQ(system(cmd), 0);
}

static char *read_source_file(const char *relative) {
        /* __FILE__ is this file's path as given to the compiler: with meson, relative to the build
         * directory, where meson test runs the tests. When run from elsewhere, find the build
         * directory from our own path (BUILD/tests/unit/test-config). */
        static const char suffix[] = "tests/unit/test-config.c";
        _cleanup_(freep) char *path = NULL, *exe = NULL;
        const char *file = __FILE__;
        size_t n = strlen(file);
        char *buf = NULL;
        size_t size = 0;
        FILE *f, *out;
        int ch;

        ASSERT_TRUE(n >= strlen(suffix) && streq(file + n - strlen(suffix), suffix));
        ASSERT_TRUE(asprintf(&path, "%.*s%s", (int) (n - strlen(suffix)), file, relative) > 0);
        f = fopen(path, "re");
        if (!f && file[0] != '/') {
                char *slash;

                exe = realpath("/proc/self/exe", NULL);
                ASSERT_TRUE(exe);
                slash = strrchr(exe, '/');
                ASSERT_TRUE(slash);
                *slash = '\0';
                free(path);
                ASSERT_TRUE(asprintf(&path, "%s/../../%.*s%s", exe, (int) (n - strlen(suffix)), file, relative) > 0);
                f = fopen(path, "re");
        }
        if (!f) {
                fprintf(stderr, "Cannot open %s: %m\n", path);
                abort();
        }
        out = open_memstream(&buf, &size);
        ASSERT_TRUE(out);
        while ((ch = getc(f)) != EOF)
                fputc(ch, out);
        fclose(f);
        fclose(out);
        return buf;
}

/* ---- tests ---------------------------------------------------------------------------------- */

TEST(defaults) {
        _cleanup_(config_freep) Config *c = NULL;

        ASSERT_OK(config_new(&c));

        ASSERT_STREQ(c->socket_path, IDM_DEFAULT_SOCKET);
        ASSERT_STREQ(c->state_dir, IDM_DEFAULT_STATE_DIR);
        ASSERT_STREQ(c->admin_group, "idm-admin");
        ASSERT_EQ(c->log_level, LOG_LEVEL_INFO);

        ASSERT_EQ(c->max_line, 65536);
        ASSERT_EQ(c->max_depth, 32);
        ASSERT_EQ(c->max_batch, 100);
        ASSERT_EQ(c->max_connections_per_uid, 256);
        ASSERT_EQ(c->max_connections, 4096);
        ASSERT_EQ(c->idle_timeout_usec, 60 * USEC_PER_SEC);
        ASSERT_EQ(c->partial_line_timeout_usec, 10 * USEC_PER_SEC);
        ASSERT_EQ(c->write_timeout_usec, 30 * USEC_PER_SEC);

        ASSERT_EQ(c->map_size_initial, 16 * MiB);
        ASSERT_EQ(c->map_size_max, 4 * GiB);

        ASSERT_EQ(c->argon2_opslimit, 2);
        ASSERT_EQ(c->argon2_memlimit, 19 * MiB);
        ASSERT_STREQ(c->argon2_engine, "auto");
        ASSERT_EQ(c->password_min_length, 8);
        ASSERT_EQ(c->password_max_length, 80);
        ASSERT_TRUE(c->password_require_letter);
        ASSERT_TRUE(c->password_require_digit_or_symbol);
        ASSERT_EQ(c->workers, 2);
        ASSERT_EQ(c->worker_queue, 256);

        ASSERT_STREQ(c->issuer, "idmd");
        ASSERT_STREQ(c->jwt_alg, "EdDSA");
        ASSERT_EQ(c->access_ttl_usec, 15 * 60 * USEC_PER_SEC);
        ASSERT_EQ(c->refresh_ttl_usec, 100 * 86400 * USEC_PER_SEC);
        ASSERT_EQ(c->refresh_grace_usec, 10 * USEC_PER_SEC);
        ASSERT_EQ(c->customer_token_ttl_usec, 14 * 86400 * USEC_PER_SEC);

        static const char *const currencies[] = { "USD", "EUR", "GBP", "CAD", "AUD", "NZD",
                                                  "SEK", "DKK", "NOK", "TRL", "ZAR", "XOF", NULL };
        for (size_t i = 0; i < ELEMENTSOF(currencies); i++)
                ASSERT_STREQ(c->currencies[i] ?: "(end)", currencies[i] ?: "(end)");
        ASSERT_EQ(c->max_external_data, 4096);

        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_DEFAULT].rate == 200.0);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_DEFAULT].burst, 200);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_DEFAULT].concurrency, 50);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_LOGIN].rate == 50.0);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_LOGIN].burst, 50);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_LOGIN].concurrency, 20);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_REGISTRATION].rate == 20.0);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_REGISTRATION].burst, 20);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_REGISTRATION].concurrency, 10);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_PASSWORD_RESET].rate == 10.0);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_PASSWORD_RESET].burst, 10);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_PASSWORD_RESET].concurrency, 5);
        ASSERT_EQ(c->ratelimit_sources, 4096);

        ASSERT_EQ(c->lockout_deny, 5);
        ASSERT_EQ(c->lockout_fail_interval_usec, 900 * USEC_PER_SEC);
        ASSERT_EQ(c->lockout_unlock_time_usec, 600 * USEC_PER_SEC);
        ASSERT_EQ(c->lockout_max_unlock_time_usec, 3600 * USEC_PER_SEC);

        /* The defaults pass their own checks. */
        ASSERT_OK(config_verify(c));

        ASSERT_TRUE(config_free(NULL) == NULL);
        ASSERT_TRUE(config_free(TAKE_PTR(c)) == NULL);
}

TEST(method_class) {
        static const char *const names[] = { "default", "login", "registration", "password_reset", "userdb" };

        for (MethodClass m = 0; m < _METHOD_CLASS_MAX; m++) {
                ASSERT_STREQ(method_class_to_string(m), names[m]);
                ASSERT_EQ(method_class_from_string(names[m]), m);
        }
        ASSERT_TRUE(method_class_to_string(_METHOD_CLASS_MAX) == NULL);
        ASSERT_TRUE(method_class_to_string(_METHOD_CLASS_INVALID) == NULL);
        ASSERT_EQ(method_class_from_string("Login"), _METHOD_CLASS_INVALID);
        ASSERT_EQ(method_class_from_string(""), _METHOD_CLASS_INVALID);
        ASSERT_EQ(method_class_from_string(NULL), _METHOD_CLASS_INVALID);
}

TEST(empty) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *a = NULL, *b = NULL;
        _cleanup_(config_freep) Config *d = NULL;

        ASSERT_OK(load_text("", &c));
        ASSERT_OK(config_new(&d));
        a = dump(c);
        b = dump(d);
        ASSERT_STREQ(a, b);
}

TEST(every_key) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *log = NULL;

        ASSERT_OK(load_text_log("[daemon]\n"
                                "socket_path = /run/test/idmd.sock\n"
                                "state_dir=/srv/idmd\n"
                                "admin_group =\n"
                                "log_level = debug\n"
                                "[limits]\n"
                                "max_line = 128K\n"
                                "max_depth = 8\n"
                                "max_batch = 10\n"
                                "max_connections_per_uid = 16\n"
                                "max_connections = 64\n"
                                "idle_timeout = 2min\n"
                                "partial_line_timeout = 1.5\n"
                                "write_timeout = 5min\n"
                                "[store]\n"
                                "map_size_initial = 1MiB\n"
                                "map_size_max = 2 G\n"
                                "[passwords]\n"
                                "argon2_opslimit = 3\n"
                                "argon2_memlimit = 64M\n"
                                "min_length = 12\n"
                                "max_length = 128\n"
                                "require_letter = no\n"
                                "require_digit_or_symbol = off\n"
                                "workers = 64\n"
                                "worker_queue = 1\n"
                                "[tokens]\n"
                                "issuer = https://id.example.com\n"
                                "jwt_alg = Ed25519\n"
                                "access_ttl = 300\n"
                                "refresh_ttl = 30d\n"
                                "refresh_grace = 500ms\n"
                                "customer_token_ttl = 1h\n"
                                "[customers]\n"
                                "currencies = EUR, USD,GBP   EUR\n"
                                "max_external_data = 0\n"
                                "[ratelimit]\n"
                                "sources = 100\n"
                                "[ratelimit.default]\n"
                                "rate = 12.25\n"
                                "burst = 30\n"
                                "concurrency = 7\n"
                                "[ratelimit.login]\n"
                                "rate = 0.5\n"
                                "burst = 1\n"
                                "concurrency = 1\n"
                                "[ratelimit.registration]\n"
                                "rate = 1000000\n"
                                "burst = 1000000\n"
                                "concurrency = 100000\n"
                                "[ratelimit.password_reset]\n"
                                "rate = 0.001\n"
                                "burst = 2\n"
                                "concurrency = 3\n"
                                "[lockout]\n"
                                "deny = 0\n"
                                "fail_interval = 1d\n"
                                "unlock_time = 30s\n"
                                "max_unlock_time = 30d\n",
                                &c, &log));
        ASSERT_STREQ(log, "");

        ASSERT_STREQ(c->socket_path, "/run/test/idmd.sock");
        ASSERT_STREQ(c->state_dir, "/srv/idmd");
        ASSERT_STREQ(c->admin_group, "");
        ASSERT_EQ(c->log_level, LOG_LEVEL_DEBUG);
        ASSERT_EQ(c->max_line, 128 * 1024);
        ASSERT_EQ(c->max_depth, 8);
        ASSERT_EQ(c->max_batch, 10);
        ASSERT_EQ(c->max_connections_per_uid, 16);
        ASSERT_EQ(c->max_connections, 64);
        ASSERT_EQ(c->idle_timeout_usec, 120 * USEC_PER_SEC);
        ASSERT_EQ(c->partial_line_timeout_usec, 1500000);
        ASSERT_EQ(c->write_timeout_usec, 300 * USEC_PER_SEC);
        ASSERT_EQ(c->map_size_initial, MiB);
        ASSERT_EQ(c->map_size_max, 2 * GiB);
        ASSERT_EQ(c->argon2_opslimit, 3);
        ASSERT_EQ(c->argon2_memlimit, 64 * MiB);
        ASSERT_EQ(c->password_min_length, 12);
        ASSERT_EQ(c->password_max_length, 128);
        ASSERT_FALSE(c->password_require_letter);
        ASSERT_FALSE(c->password_require_digit_or_symbol);
        ASSERT_EQ(c->workers, 64);
        ASSERT_EQ(c->worker_queue, 1);
        ASSERT_STREQ(c->issuer, "https://id.example.com");
        ASSERT_STREQ(c->jwt_alg, "Ed25519");
        ASSERT_EQ(c->access_ttl_usec, 300 * USEC_PER_SEC);
        ASSERT_EQ(c->refresh_ttl_usec, 30 * 86400 * USEC_PER_SEC);
        ASSERT_EQ(c->refresh_grace_usec, 500000);
        ASSERT_EQ(c->customer_token_ttl_usec, 3600 * USEC_PER_SEC);
        ASSERT_STREQ(c->currencies[0], "EUR");
        ASSERT_STREQ(c->currencies[1], "USD");
        ASSERT_STREQ(c->currencies[2], "GBP");
        ASSERT_TRUE(c->currencies[3] == NULL);  /* the second EUR is dropped */
        ASSERT_EQ(c->max_external_data, 0);
        ASSERT_EQ(c->ratelimit_sources, 100);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_DEFAULT].rate == 12.25);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_DEFAULT].burst, 30);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_DEFAULT].concurrency, 7);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_LOGIN].rate == 0.5);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_LOGIN].burst, 1);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_LOGIN].concurrency, 1);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_REGISTRATION].rate == 1000000.0);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_REGISTRATION].burst, 1000000);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_REGISTRATION].concurrency, 100000);
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_PASSWORD_RESET].rate > 0.00099 &&
                    c->ratelimit[METHOD_CLASS_PASSWORD_RESET].rate < 0.00101);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_PASSWORD_RESET].burst, 2);
        ASSERT_EQ(c->ratelimit[METHOD_CLASS_PASSWORD_RESET].concurrency, 3);
        ASSERT_EQ(c->lockout_deny, 0);
        ASSERT_EQ(c->lockout_fail_interval_usec, 86400 * USEC_PER_SEC);
        ASSERT_EQ(c->lockout_unlock_time_usec, 30 * USEC_PER_SEC);
        ASSERT_EQ(c->lockout_max_unlock_time_usec, 30 * 86400 * USEC_PER_SEC);
}

/* One key, one value, parsed alone: the value of the field afterwards (as dumped). */
static int load_one(const char *section, const char *key, const char *value, Config **ret) {
        _cleanup_(freep) char *text = NULL;

        ASSERT_TRUE(asprintf(&text, "[%s]\n%s = %s\n", section, key, value) > 0);
        return load_text(text, ret);
}

static void assert_u64(const char *section, const char *key, const char *value, size_t offset, uint64_t want) {
        _cleanup_(config_freep) Config *c = NULL;
        uint64_t got;

        fprintf(stderr, "   [%s] %s = %s\n", section, key, value);
        ASSERT_OK(load_one(section, key, value, &c));
        memcpy(&got, (uint8_t *) c + offset, sizeof(got));
        ASSERT_EQ(got, want);
}

TEST(sizes) {
        static const struct {
                const char *value;
                uint64_t bytes;
        } cases[] = {
                { "19M", 19 * MiB },       { "19MiB", 19 * MiB },  { "19 M", 19 * MiB },
                { "8K", 8192 },            { "8KiB", 8192 },       { "8192", 8192 },
                { "8192B", 8192 },         { "1G", GiB },          { "1GiB", GiB },
                { "4G", 4 * GiB },         { "0004G", 4 * GiB },   { "65536", 65536 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_u64("passwords", "argon2_memlimit", cases[i].value, offsetof(Config, argon2_memlimit),
                           cases[i].bytes);
        assert_u64("store", "map_size_max", "1T", offsetof(Config, map_size_max), 1024 * GiB);
        assert_u64("store", "map_size_max", "16TiB", offsetof(Config, map_size_max), 16 * 1024 * GiB);

        /* Narrower fields: unsigned and size_t. */
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        ASSERT_OK(load_one("limits", "max_line", "16M", &c));
        ASSERT_EQ(c->max_line, 16 * MiB);
        ASSERT_OK(load_one("customers", "max_external_data", "1M", &d));
        ASSERT_EQ(d->max_external_data, MiB);
}

TEST(durations) {
        static const struct {
                const char *value;
                uint64_t usec;
        } cases[] = {
                { "60", 60 * USEC_PER_SEC },
                { "60s", 60 * USEC_PER_SEC },
                { "60 s", 60 * USEC_PER_SEC },
                { "1.5", 1500000 },
                { "0.25min", 15 * USEC_PER_SEC },
                { "2min", 120 * USEC_PER_SEC },
                { "1h", 3600 * USEC_PER_SEC },
                { "1.5h", 5400 * USEC_PER_SEC },
                { "1d", 86400 * USEC_PER_SEC },
                { "1000ms", USEC_PER_SEC },
                { "1000000us", USEC_PER_SEC },
                { "1.0000001", USEC_PER_SEC },  /* below usec resolution */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_u64("limits", "idle_timeout", cases[i].value, offsetof(Config, idle_timeout_usec), cases[i].usec);
        assert_u64("limits", "write_timeout", "1", offsetof(Config, write_timeout_usec), USEC_PER_SEC);
        assert_u64("limits", "write_timeout", "1h", offsetof(Config, write_timeout_usec), 3600 * USEC_PER_SEC);
        assert_u64("tokens", "refresh_grace", "0", offsetof(Config, refresh_grace_usec), 0);
        assert_u64("tokens", "refresh_ttl", "3650d", offsetof(Config, refresh_ttl_usec),
                   UINT64_C(3650) * 86400 * USEC_PER_SEC);
}

TEST(bools) {
        static const struct {
                const char *value;
                bool b;
        } cases[] = {
                { "yes", true },  { "no", false },   { "true", true }, { "false", false },
                { "1", true },    { "0", false },    { "on", true },   { "off", false },
                { "YES", true },  { "False", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_freep) Config *c = NULL;

                ASSERT_OK(load_one("passwords", "require_letter", cases[i].value, &c));
                ASSERT_EQ(c->password_require_letter, cases[i].b);
        }
}

TEST(enums) {
        static const struct {
                const char *value;
                int level;
        } levels[] = {
                { "err", LOG_LEVEL_ERR },       { "error", LOG_LEVEL_ERR },   { "warning", LOG_LEVEL_WARNING },
                { "notice", LOG_LEVEL_NOTICE }, { "info", LOG_LEVEL_INFO },   { "debug", LOG_LEVEL_DEBUG },
        };

        for (size_t i = 0; i < ELEMENTSOF(levels); i++) {
                _cleanup_(config_freep) Config *c = NULL;

                ASSERT_OK(load_one("daemon", "log_level", levels[i].value, &c));
                ASSERT_EQ(c->log_level, levels[i].level);
        }

        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL, *g = NULL;
        ASSERT_OK(load_one("passwords", "argon2_engine", "libsodium", &e));
        ASSERT_STREQ(e->argon2_engine, "libsodium");
        ASSERT_OK(load_one("passwords", "argon2_engine", "libargon2", &g));
        ASSERT_STREQ(g->argon2_engine, "libargon2");
        ASSERT_OK(load_one("tokens", "jwt_alg", "Ed25519", &c));
        ASSERT_STREQ(c->jwt_alg, "Ed25519");
        ASSERT_OK(load_one("tokens", "jwt_alg", "EdDSA", &d));
        ASSERT_STREQ(d->jwt_alg, "EdDSA");
}

#define A10 "aaaaaaaaaa"

TEST(bad_values) {
        static const struct {
                const char *section, *key, *value;
        } cases[] = {
                /* unsigned: not a number, sign, base prefix, fraction, trailing junk, range, overflow */
                { "passwords", "workers", "abc" },
                { "passwords", "workers", "" },
                { "passwords", "workers", "-1" },
                { "passwords", "workers", "+4" },
                { "passwords", "workers", "0x10" },
                { "passwords", "workers", "1.5" },
                { "passwords", "workers", "4 threads" },
                { "passwords", "workers", "0" },
                { "passwords", "workers", "65" },
                { "passwords", "workers", "99999999999999999999999" },
                { "limits", "max_depth", "1" },
                { "limits", "max_depth", "1001" },
                { "lockout", "deny", "1001" },
                { "ratelimit", "sources", "0" },
                { "ratelimit.login", "burst", "0" },
                { "ratelimit.login", "concurrency", "100001" },
                /* size: bad suffix, decimal, negative, range, overflow */
                { "passwords", "argon2_memlimit", "19X" },
                { "passwords", "argon2_memlimit", "19MB" },
                { "passwords", "argon2_memlimit", "19KB" },
                { "passwords", "argon2_memlimit", "19m" },
                { "passwords", "argon2_memlimit", "19 M B" },
                { "passwords", "argon2_memlimit", "M" },
                { "passwords", "argon2_memlimit", "1.5M" },
                { "passwords", "argon2_memlimit", "-1M" },
                { "passwords", "argon2_memlimit", "" },
                { "passwords", "argon2_memlimit", "4K" },
                { "passwords", "argon2_memlimit", "5G" },
                { "passwords", "argon2_memlimit", "99999999999999T" },
                { "passwords", "argon2_engine", "sodium" },
                { "passwords", "argon2_engine", "AUTO" },
                { "passwords", "argon2_engine", "" },
                { "limits", "max_line", "1023" },
                { "limits", "max_line", "17M" },
                { "store", "map_size_initial", "512K" },
                { "store", "map_size_max", "17T" },
                { "store", "backend", "LMDB" },
                { "store", "backend", "postgres" },
                { "store", "backend", "" },
                { "store", "connection", "host=db dbname=idm password=hunter2" },
                { "store", "connection", "postgresql://idm:hunter2@db/idm" },
                { "store", "connection", "host=db dbname" },
                { "store", "connection", "bogus_keyword=1" },
                { "store", "timeout", "99ms" },
                { "store", "timeout", "11min" },
                { "customers", "max_external_data", "2M" },
                /* duration: bad unit, bad number, range, overflow */
                { "limits", "idle_timeout", "abc" },
                { "limits", "idle_timeout", "" },
                { "limits", "idle_timeout", "5x" },
                { "limits", "idle_timeout", "5 minutes" },
                { "limits", "idle_timeout", "5m" },
                { "limits", "idle_timeout", "1h30min" },
                { "limits", "idle_timeout", "-1" },
                { "limits", "idle_timeout", ".5" },
                { "limits", "idle_timeout", "5." },
                { "limits", "idle_timeout", "1.2.3" },
                { "limits", "idle_timeout", "0" },
                { "limits", "idle_timeout", "999ms" },
                { "limits", "idle_timeout", "2d" },
                { "limits", "idle_timeout", "99999999999999999999d" },
                { "limits", "idle_timeout", "99999999999999d" },
                { "limits", "partial_line_timeout", "61min" },
                { "limits", "write_timeout", "0" },
                { "limits", "write_timeout", "999ms" },
                { "limits", "write_timeout", "61min" },
                { "limits", "write_timeout", "30x" },
                { "tokens", "refresh_grace", "6min" },
                { "tokens", "access_ttl", "0" },
                { "lockout", "unlock_time", "31d" },
                /* rate */
                { "ratelimit.default", "rate", "abc" },
                { "ratelimit.default", "rate", "" },
                { "ratelimit.default", "rate", "0" },
                { "ratelimit.default", "rate", "0.0009" },
                { "ratelimit.default", "rate", "1000000.5" },
                { "ratelimit.default", "rate", "-1" },
                { "ratelimit.default", "rate", "1e3" },
                { "ratelimit.default", "rate", "1." },
                { "ratelimit.default", "rate", ".5" },
                { "ratelimit.default", "rate", "nan" },
                { "ratelimit.default", "rate", "inf" },
                { "ratelimit.default", "rate", "0x10" },
                { "ratelimit.default", "rate", "10/s" },
                /* bool */
                { "passwords", "require_letter", "maybe" },
                { "passwords", "require_letter", "2" },
                { "passwords", "require_letter", "" },
                { "passwords", "require_letter", "y" },
                /* paths */
                { "daemon", "socket_path", "run/idmd/socket" },
                { "daemon", "socket_path", "./socket" },
                { "daemon", "socket_path", "" },
                { "daemon", "socket_path",
                  "/run/" A10 A10 A10 A10 A10 A10 A10 A10 A10 A10 "aaa" },
                { "daemon", "state_dir", "var/lib/idmd" },
                { "daemon", "state_dir", "~/idmd" },
                /* strings */
                { "tokens", "issuer", "" },
                { "tokens", "issuer", "a\tb" },
                { "daemon", "admin_group", "a\x01" },
                /* enums */
                { "daemon", "log_level", "verbose" },
                { "daemon", "log_level", "INFO" },
                { "daemon", "log_level", "7" },
                { "daemon", "log_level", "" },
                { "tokens", "jwt_alg", "HS256" },
                { "tokens", "jwt_alg", "eddsa" },
                { "tokens", "jwt_alg", "none" },
                { "tokens", "jwt_alg", "" },
                /* currencies */
                { "customers", "currencies", "usd" },
                { "customers", "currencies", "USD eur" },
                { "customers", "currencies", "US" },
                { "customers", "currencies", "USDX" },
                { "customers", "currencies", "US1" },
                { "customers", "currencies", "USD;EUR" },
                { "customers", "currencies", "" },
                { "customers", "currencies", " , ," },
                { "customers", "currencies", "\xc3\x9c" "SD" },
                /* [locales] */
                { "locales", "default_country", "" },
                { "locales", "default_country", "us" },
                { "locales", "default_country", "UK" },
                { "locales", "default_country", "USA" },
                { "locales", "maxmind_db", "GeoLite2-Country.mmdb" },
                { "locales", "cidr", "192.0.2.0/24" },
                { "locales", "cidr", "192.0.2.0/24 XX" },
                { "locales", "cidr", "192.0.2.0/24 pl" },
                { "locales", "cidr", "192.0.2.1/24 PL" },
                { "locales", "cidr", "192.0.2.0/33 PL" },
                { "locales", "cidr", "192.0.2.0/024 PL" },
                { "locales", "cidr", "192.0.2.0 PL" },
                { "locales", "cidr", "192.0.2.0/ PL" },
                { "locales", "cidr", "192.0.2/24 PL" },
                { "locales", "cidr", "2001:db8::1/32 DE" },
                { "locales", "cidr", "2001:db8::/129 DE" },
                { "locales", "cidr", "fe80::%eth0/64 DE" },
                { "locales", "cidr", "example.com/24 DE" },
                { "locales", "cidr", "192.0.2.0/24 PL extra" },
                { "locales", "country", "PL" },
                { "locales", "country", "PL PLN" },
                { "locales", "country", "XX USD en_US" },
                { "locales", "country", "PL pln pl_PL" },
                { "locales", "country", "PL PLN pl-PL" },
                { "locales", "country", "PL PLNX pl_PL" },
                { "locales", "country", "PL USD pl_PL extra" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_freep) Config *c = NULL, *d = NULL;
                _cleanup_(freep) char *log = NULL, *text = NULL, *a = NULL, *b = NULL;

                fprintf(stderr, "   [%s] %s = '%s'\n", cases[i].section, cases[i].key, cases[i].value);
                ASSERT_TRUE(asprintf(&text, "[%s]\n%s = %s\n", cases[i].section, cases[i].key, cases[i].value) > 0);
                ASSERT_EQ(load_text_log(text, &c, &log), -EINVAL);

                /* Logged with file:line, key and section. */
                ASSERT_CONTAINS(log, "test.conf:2: invalid value '");
                ASSERT_CONTAINS(log, cases[i].key);
                ASSERT_CONTAINS(log, cases[i].section);
                ASSERT_CONTAINS(log, ": expected ");
                /* A password in a refused connection string never reaches the log. */
                ASSERT_TRUE(!strstr(log, "hunter2"));

                /* A rejected value leaves the field as it was. */
                ASSERT_OK(config_new(&d));
                a = dump(c);
                b = dump(d);
                ASSERT_STREQ(a, b);
        }
}

TEST(bad_value_message) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *log = NULL;

        ASSERT_EQ(load_text_log("# comment\n"
                                "[passwords]\n"
                                "workers = 65\n"
                                "min_length = 10\n"
                                "argon2_memlimit = 19X\n"
                                "[tokens]\n"
                                "access_ttl = soon\n"
                                "[customers]\n"
                                "currencies = USD eur\n",
                                &c, &log),
                  -EINVAL);
        ASSERT_CONTAINS(log, "test.conf:3: invalid value '65' for key 'workers' in [passwords]: "
                             "expected an integer between 1 and 64.");
        ASSERT_CONTAINS(log, "test.conf:5: invalid value '19X' for key 'argon2_memlimit' in [passwords]: "
                             "expected a size between 8K and 4G");
        ASSERT_CONTAINS(log, "test.conf:7: invalid value 'soon' for key 'access_ttl' in [tokens]: "
                             "expected a duration between 1s and 1d");
        ASSERT_CONTAINS(log, "test.conf:9: invalid value 'USD eur' for key 'currencies' in [customers]: "
                             "expected one or more ISO 4217 currency codes");
        /* Every error is reported, and good keys next to bad ones are still applied. */
        ASSERT_EQ(c->password_min_length, 10);
}

TEST(unknown_keys) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *log = NULL;

        ASSERT_OK(load_text_log("early = 1\n"
                                "[passwords]\n"
                                "workers = 4\n"
                                "nope = 1\n"
                                "Workers = 9\n"
                                "[nosuchsection]\n"
                                "workers = 5\n"
                                "[ratelimit.bogus]\n"
                                "rate = 1\n"
                                "[tokens]\n"
                                "issuer = x\n",
                                &c, &log));
        ASSERT_CONTAINS(log, "test.conf:1: key 'early' outside of any section, ignoring.");
        ASSERT_CONTAINS(log, "test.conf:4: unknown key 'nope' in section [passwords], ignoring.");
        /* Key names are case-sensitive. */
        ASSERT_CONTAINS(log, "test.conf:5: unknown key 'Workers' in section [passwords], ignoring.");
        ASSERT_CONTAINS(log, "test.conf:7: unknown key 'workers' in section [nosuchsection], ignoring.");
        ASSERT_CONTAINS(log, "test.conf:9: unknown key 'rate' in section [ratelimit.bogus], ignoring.");
        ASSERT_NOT_CONTAINS(log, "error");
        ASSERT_EQ(c->workers, 4);
        ASSERT_STREQ(c->issuer, "x");
}

TEST(syntax) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL, *g = NULL, *h = NULL;
        _cleanup_(freep) char *log = NULL, *log2 = NULL, *log3 = NULL, *log4 = NULL;

        /* A line that is neither a section, an assignment nor a comment. */
        ASSERT_EQ(load_text_log("[passwords]\nworkers = 3\nthis is not valid\nmin_length = 9\n", &c, &log), -EINVAL);
        ASSERT_CONTAINS(log, "test.conf:3: syntax error");

        /* An unterminated section header. */
        ASSERT_EQ(load_text_log("[passwords]\n[tokens\nissuer = x\n", &d, &log2), -EINVAL);
        ASSERT_CONTAINS(log2, "test.conf:2: syntax error");

        /* No key name. */
        ASSERT_EQ(load_text_log("[passwords]\n\n= 3\n", &e, &log3), -EINVAL);
        ASSERT_CONTAINS(log3, "test.conf:3: syntax error: missing key name");

        /* An indented line is not a continuation of the previous value (libinih's multi-line
         * values), it is a line of its own: here not an assignment. */
        ASSERT_EQ(load_text_log("[customers]\ncurrencies = USD\n    EUR\n", &g, &log4), -EINVAL);
        ASSERT_CONTAINS(log4, "test.conf:3: syntax error");
        ASSERT_STREQ(g->currencies[0], "USD");
        ASSERT_TRUE(g->currencies[1] == NULL);

        /* Control characters are shown escaped. */
        _cleanup_(config_freep) Config *m = NULL;
        _cleanup_(freep) char *log6 = NULL;
        ASSERT_EQ(load_text_log("[tokens]\nissuer = a\x1b[2Jb\x7f\n", &m, &log6), -EINVAL);
        ASSERT_CONTAINS(log6, "test.conf:2: invalid value 'a\\x1b[2Jb\\x7f' for key 'issuer'");

        /* "key =;x" has no blank before the ';', so libinih passes ";x" on; refused, because
         * config_dump() could not write it back (it would read as a comment). */
        _cleanup_(config_freep) Config *k = NULL;
        _cleanup_(freep) char *log5 = NULL;
        ASSERT_EQ(load_text_log("[daemon]\nadmin_group =;idm\n", &k, &log5), -EINVAL);
        ASSERT_CONTAINS(log5, "test.conf:2: invalid value ';idm' for key 'admin_group'");

        /* Indented assignments, comments, inline comments, "key: value", CRLF, blanks in the
         * section header, a UTF-8 BOM, duplicates (last wins). */
        ASSERT_OK(load_text("\xef\xbb\xbf# comment\r\n"
                            "; another comment\r\n"
                            "[ passwords ]\r\n"
                            "   workers = 3\r\n"
                            "\tmin_length = 9 ; inline comment\r\n"
                            "max_length: 99\r\n"
                            "worker_queue = 10\r\n"
                            "worker_queue = 20\r\n"
                            "\r\n"
                            "[tokens]\n"
                            "issuer = a#b;c\n",
                            &h));
        ASSERT_EQ(h->workers, 3);
        ASSERT_EQ(h->password_min_length, 9);
        ASSERT_EQ(h->password_max_length, 99);
        ASSERT_EQ(h->worker_queue, 20);
        ASSERT_STREQ(h->issuer, "a#b;c");
}

TEST(long_lines) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL;
        _cleanup_(freep) char *text = NULL, *text2 = NULL, *log = NULL, *log2 = NULL;
        char issuer[200];

        /* 197 bytes is the longest line Debian's libinih takes: "issuer = " + 188. */
        memset(issuer, 'a', 188);
        issuer[188] = '\0';
        ASSERT_TRUE(asprintf(&text, "[tokens]\nissuer = %s\r\n", issuer) > 0);
        ASSERT_OK(load_text(text, &c));
        ASSERT_STREQ(c->issuer, issuer);

        /* One more byte: refused, with file:line, and later line numbers stay right. */
        issuer[188] = 'b';
        issuer[189] = '\0';
        ASSERT_TRUE(asprintf(&text2, "[tokens]\nissuer = %s\n[passwords]\nworkers = 99\n", issuer) > 0);
        ASSERT_EQ(load_text_log(text2, &d, &log), -EINVAL);
        ASSERT_CONTAINS(log, "test.conf:2: line is too long (198 bytes): at most 197 bytes");
        ASSERT_CONTAINS(log, "test.conf:4: invalid value '99' for key 'workers'");
        ASSERT_NOT_CONTAINS(log, "syntax error");
        ASSERT_STREQ(d->issuer, "idmd");

        /* A very long line (which libinih would split into pieces and parse each). */
        _cleanup_(freep) char *huge = malloc(100001);
        ASSERT_TRUE(huge);
        memcpy(huge, "[tokens]\nissuer = ", 18);
        memset(huge + 18, 'x', 100000 - 18);
        huge[100000 - 2] = '\n';
        huge[100000 - 1] = '\0';
        ASSERT_EQ(load_text_log(huge, &e, &log2), -EINVAL);
        ASSERT_CONTAINS(log2, "test.conf:2: line is too long (99989 bytes)");
        ASSERT_NOT_CONTAINS(log2, "syntax error");
}

TEST(nul_byte) {
        _cleanup_(config_freep) Config *c = NULL;
        static const char text[] = "[tokens]\nissuer = a\0b\n";
        Capture cap;
        _cleanup_(freep) char *log = NULL;

        capture_start(&cap);
        ASSERT_EQ(load_buffer(text, sizeof(text) - 1, &c), -EINVAL);
        log = capture_stop(&cap);
        ASSERT_CONTAINS(log, "test.conf:2: line contains a NUL byte");
        ASSERT_STREQ(c->issuer, "idmd");
}

TEST(cross_key) {
        static const struct {
                const char *text, *message;
        } cases[] = {
                { "[passwords]\nmin_length = 81\n", "[passwords] min_length=81 is greater than max_length=80" },
                { "[passwords]\nmax_length = 7\n", "[passwords] min_length=8 is greater than max_length=7" },
                { "[lockout]\nunlock_time = 2h\n", "[lockout] unlock_time=2h is greater than max_unlock_time=1h" },
                { "[store]\nmap_size_initial = 8G\n", "[store] map_size_initial=8G is greater than map_size_max=4G" },
                { "[store]\nbackend = postgresql\n", "[store] backend=postgresql needs [store] connection" },
                { "[limits]\nmax_connections = 100\n", "[limits] max_connections_per_uid=256 is greater than max_connections=100" },
                { "[tokens]\nrefresh_ttl = 10s\n", "[tokens] refresh_grace=10s must be shorter than refresh_ttl=10s" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_freep) Config *c = NULL;
                _cleanup_(freep) char *log = NULL;

                ASSERT_EQ(load_text_log(cases[i].text, &c, &log), -EINVAL);
                ASSERT_CONTAINS(log, cases[i].message);
        }

        /* Both sides moved together: fine. Equal is fine. */
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *log = NULL;
        ASSERT_OK(load_text("[passwords]\nmin_length = 100\nmax_length = 200\n"
                            "[lockout]\nunlock_time = 1h\nmax_unlock_time = 1h\n",
                            &c));
        ASSERT_EQ(c->password_min_length, 100);

        /* Odd but allowed: a warning only. */
        ASSERT_OK(load_text_log("[tokens]\nrefresh_ttl = 1min\n", &d, &log));
        ASSERT_CONTAINS(log, "refresh_ttl=1min is shorter than access_ttl=15min");
}

TEST(mail) {
        static const char *const bad[] = {
                "mail_command = sendmail -t -i",                /* not an absolute path */
                "mail_command = ",
                "mail_command = /usr/sbin/sendmail\t-t",        /* a tab: control characters are refused */
                ("mail_command = /usr/sbin/sendmail 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 "
                 "24 25 26 27 28 29 30 31 32"),                 /* 33 words */
                "from = Idmd <idmd@example.com>",
                "from = idmd",
                "from = idmd@exa mple.com",
                "from = idmd@-example.com",
                "template_dir = templates",
                "timeout = 0",
                "timeout = 2h",
                "retry_initial = 0",
                "retry_max = 8d",
                "max_age = 59s",
                "max_queued = 0",
                "max_queued = 1000001",
        };
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *log = NULL;

        ASSERT_OK(config_new(&c));
        ASSERT_STREQ(c->mail_command, "/usr/sbin/sendmail -t -i");
        ASSERT_STREQ(c->mail_from, "");
        ASSERT_STREQ(c->mail_template_dir, "");
        ASSERT_EQ(c->mail_timeout_usec, 30 * USEC_PER_SEC);
        ASSERT_EQ(c->mail_retry_initial_usec, 60 * USEC_PER_SEC);
        ASSERT_EQ(c->mail_retry_max_usec, 3600 * USEC_PER_SEC);
        ASSERT_EQ(c->mail_max_age_usec, 3 * 86400 * USEC_PER_SEC);
        ASSERT_EQ(c->mail_max_queued, 10000);
        c = config_free(c);

        ASSERT_OK(load_text("[mail]\nmail_command = /usr/lib/sendmail  -t -oi\nfrom = no-reply@localhost\n"
                            "template_dir = /etc/idm/mail\ntimeout = 5s\nretry_initial = 10s\nretry_max = 10s\n"
                            "max_age = 1d\nmax_queued = 5\n", &c));
        ASSERT_STREQ(c->mail_command, "/usr/lib/sendmail  -t -oi");
        ASSERT_STREQ(c->mail_from, "no-reply@localhost");
        ASSERT_STREQ(c->mail_template_dir, "/etc/idm/mail");
        ASSERT_EQ(c->mail_retry_initial_usec, c->mail_retry_max_usec);
        ASSERT_EQ(c->mail_max_queued, 5);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(config_freep) Config *e = NULL;
                _cleanup_(freep) char *text = NULL, *elog = NULL;

                ASSERT_TRUE(asprintf(&text, "[mail]\n%s\n", bad[i]) > 0);
                ASSERT_EQ(load_text_log(text, &e, &elog), -EINVAL);
                ASSERT_CONTAINS(elog, "test.conf:2: invalid value");
        }
        ASSERT_EQ(load_text_log("[mail]\nretry_initial = 2h\n", &d, &log), -EINVAL);
        ASSERT_CONTAINS(log, "[mail] retry_initial=2h is greater than retry_max=1h.");
}

TEST(config_set) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) char *log = NULL;
        Capture cap;

        ASSERT_OK(config_new(&c));
        ASSERT_OK(config_set(c, "daemon", "socket_path", "/tmp/x.sock", "--socket"));
        ASSERT_STREQ(c->socket_path, "/tmp/x.sock");
        ASSERT_OK(config_set(c, "ratelimit.login", "rate", "2.5", NULL));
        ASSERT_TRUE(c->ratelimit[METHOD_CLASS_LOGIN].rate == 2.5);

        capture_start(&cap);
        ASSERT_EQ(config_set(c, "daemon", "socket_path", "relative", "--socket"), -EINVAL);
        ASSERT_EQ(config_set(c, "daemon", "nope", "1", NULL), -ENOENT);
        log = capture_stop(&cap);
        ASSERT_CONTAINS(log, "--socket: invalid value 'relative' for key 'socket_path' in [daemon]: expected an absolute path");
        ASSERT_CONTAINS(log, "command line: unknown configuration key 'nope' in [daemon]");
        ASSERT_STREQ(c->socket_path, "/tmp/x.sock");
}

TEST(dump_round_trip) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL, *e = NULL;
        _cleanup_(freep) char *a = NULL, *b = NULL, *x = NULL, *y = NULL;

        /* Defaults. */
        ASSERT_OK(config_new(&c));
        a = dump(c);
        ASSERT_CONTAINS(a, "[passwords]\nargon2_opslimit = 2\nargon2_memlimit = 19M\n");
        ASSERT_CONTAINS(a, "[lockout]\ndeny = 5\nfail_interval = 15min\nunlock_time = 10min\nmax_unlock_time = 1h\n");
        ASSERT_OK(load_text(a, &d));
        b = dump(d);
        ASSERT_STREQ(a, b);

        /* Odd values. */
        ASSERT_OK(config_set(c, "ratelimit.login", "rate", "0.125", NULL));
        ASSERT_OK(config_set(c, "limits", "idle_timeout", "1.5", NULL));
        ASSERT_OK(config_set(c, "store", "map_size_initial", "1048577", NULL));
        ASSERT_OK(config_set(c, "daemon", "admin_group", "", NULL));
        ASSERT_OK(config_set(c, "customers", "currencies", "XOF", NULL));
        ASSERT_OK(config_set(c, "daemon", "log_level", "err", NULL));
        ASSERT_OK(config_verify(c));
        x = dump(c);
        ASSERT_CONTAINS(x, "rate = 0.125\n");
        ASSERT_CONTAINS(x, "idle_timeout = 1500ms\n");
        ASSERT_CONTAINS(x, "map_size_initial = 1048577\n");
        ASSERT_CONTAINS(x, "admin_group = \n");
        ASSERT_CONTAINS(x, "currencies = XOF\n");
        ASSERT_CONTAINS(x, "log_level = err\n");
        ASSERT_OK(load_text(x, &e));
        y = dump(e);
        ASSERT_STREQ(x, y);
}

TEST(load_files) {
        _cleanup_(freep) char *dir = tmpdir_new(), *main_path = NULL, *dropins = NULL, *log = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        Capture cap;

        ASSERT_TRUE(asprintf(&main_path, "%s/idmd.conf", dir) > 0);
        ASSERT_TRUE(asprintf(&dropins, "%s/idmd.conf.d", dir) > 0);
        ASSERT_EQ(mkdir(dropins, 0755), 0);

        write_file(dir, "idmd.conf", "[passwords]\nworkers = 3\nmin_length = 10\n[tokens]\nissuer = main\n");
        write_file(dropins, "20-b.conf", "[passwords]\nworkers = 5\n");
        write_file(dropins, "10-a.conf", "[passwords]\nworkers = 4\nworker_queue = 7\n[tokens]\nissuer = a\n");
        write_file(dropins, "30-c.conf.disabled", "[passwords]\nworkers = 6\n");
        write_file(dropins, "40-d.txt", "[passwords]\nworkers = 6\n");
        write_file(dropins, ".50-hidden.conf", "[passwords]\nworkers = 6\n");
        write_file(dropins, "README", "not a config file at all");
        {
                _cleanup_(freep) char *sub = NULL;
                ASSERT_TRUE(asprintf(&sub, "%s/60-dir.conf", dropins) > 0);
                ASSERT_EQ(mkdir(sub, 0755), 0);
                _cleanup_(freep) char *fifo = NULL;
                ASSERT_TRUE(asprintf(&fifo, "%s/70-fifo.conf", dropins) > 0);
                ASSERT_EQ(mkfifo(fifo, 0600), 0);
        }

        ASSERT_OK(config_new(&c));
        ASSERT_OK(config_load(c, main_path, true));
        ASSERT_EQ(c->workers, 5);                 /* 20-b.conf last */
        ASSERT_EQ(c->worker_queue, 7);            /* 10-a.conf */
        ASSERT_EQ(c->password_min_length, 10);    /* main file, not overridden */
        ASSERT_STREQ(c->issuer, "a");

        /* Messages from drop-ins name the drop-in and its line. */
        write_file(dropins, "25-bad.conf", "[passwords]\n\nworkers = lots\nbogus = 1\n");
        {
                _cleanup_(config_freep) Config *d = NULL;
                _cleanup_(freep) char *want = NULL, *want2 = NULL;

                ASSERT_OK(config_new(&d));
                capture_start(&cap);
                ASSERT_EQ(config_load(d, main_path, true), -EINVAL);
                log = capture_stop(&cap);
                ASSERT_TRUE(asprintf(&want, "%s/25-bad.conf:3: invalid value 'lots' for key 'workers' in [passwords]",
                                     dropins) > 0);
                ASSERT_TRUE(asprintf(&want2, "%s/25-bad.conf:4: unknown key 'bogus' in section [passwords], ignoring",
                                     dropins) > 0);
                ASSERT_CONTAINS(log, want);
                ASSERT_CONTAINS(log, want2);
        }

        /* Missing main file: drop-ins still apply when not required. */
        ASSERT_EQ(unlink(main_path), 0);
        {
                _cleanup_(freep) char *p = NULL;
                _cleanup_(config_freep) Config *d = NULL;

                ASSERT_TRUE(asprintf(&p, "%s/25-bad.conf", dropins) > 0);
                ASSERT_EQ(unlink(p), 0);
                ASSERT_OK(config_new(&d));
                ASSERT_OK(config_load(d, main_path, false));
                ASSERT_EQ(d->workers, 5);
                ASSERT_STREQ(d->issuer, "a");
        }

        /* Missing main file, required: -ENOENT, logged. */
        {
                _cleanup_(config_freep) Config *d = NULL;
                _cleanup_(freep) char *log2 = NULL;

                ASSERT_OK(config_new(&d));
                capture_start(&cap);
                ASSERT_EQ(config_load(d, main_path, true), -ENOENT);
                log2 = capture_stop(&cap);
                ASSERT_CONTAINS(log2, main_path);
                ASSERT_EQ(d->workers, 2);
        }

        /* No file and no drop-in directory at all: the defaults. */
        {
                _cleanup_(freep) char *p = NULL, *a = NULL, *b = NULL;
                _cleanup_(config_freep) Config *d = NULL, *e = NULL;

                ASSERT_TRUE(asprintf(&p, "%s/nonexistent.conf", dir) > 0);
                ASSERT_OK(config_new(&d));
                ASSERT_OK(config_new(&e));
                ASSERT_OK(config_load(d, p, false));
                a = dump(d);
                b = dump(e);
                ASSERT_STREQ(a, b);
        }

        /* A directory given as the main file. */
        {
                _cleanup_(config_freep) Config *d = NULL;
                _cleanup_(freep) char *log3 = NULL;

                ASSERT_OK(config_new(&d));
                capture_start(&cap);
                ASSERT_EQ(config_load(d, dropins, false), -EISDIR);
                log3 = capture_stop(&cap);
                ASSERT_CONTAINS(log3, dropins);
        }

        /* Cross-key checks run on the merged result: the main file alone would fail. */
        write_file(dir, "idmd.conf", "[passwords]\nmin_length = 100\n");
        write_file(dropins, "90-max.conf", "[passwords]\nmax_length = 120\n");
        {
                _cleanup_(config_freep) Config *d = NULL;

                ASSERT_OK(config_new(&d));
                ASSERT_OK(config_load(d, main_path, true));
                ASSERT_EQ(d->password_min_length, 100);
                ASSERT_EQ(d->password_max_length, 120);
        }
        write_file(dropins, "95-max.conf", "[passwords]\nmax_length = 99\n");
        {
                _cleanup_(config_freep) Config *d = NULL;
                _cleanup_(freep) char *log4 = NULL;

                ASSERT_OK(config_new(&d));
                capture_start(&cap);
                ASSERT_EQ(config_load(d, main_path, true), -EINVAL);
                log4 = capture_stop(&cap);
                ASSERT_CONTAINS(log4, "min_length=100 is greater than max_length=99");
        }

        /* /dev/null as the main file: the defaults (plus /dev/null.d, which does not exist). */
        {
                _cleanup_(config_freep) Config *d = NULL;

                ASSERT_OK(config_new(&d));
                ASSERT_OK(config_load(d, "/dev/null", true));
                ASSERT_EQ(d->workers, 2);
        }

        rm_rf(dir);
}

/* The sample packaging/idmd.conf has every key, commented out as "#key = default" under its
 * uncommented [section] header: uncommenting gives exactly the defaults, with no unknown key. */
TEST(sample_file) {
        _cleanup_(freep) char *sample = read_source_file("packaging/idmd.conf"), *uncommented = NULL,
                              *defaults = NULL, *log = NULL, *loaded = NULL;
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        char *buf = NULL;
        size_t size = 0;
        FILE *out;
        const char *section = "";

        /* As shipped it sets nothing. */
        ASSERT_OK(load_text(sample, &c));
        ASSERT_OK(config_new(&d));
        defaults = dump(d);
        loaded = dump(c);
        ASSERT_STREQ(loaded, defaults);
        c = config_free(c);

        out = open_memstream(&buf, &size);
        ASSERT_TRUE(out);
        for (char *line = sample, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (line[0] == '#' && line[1] >= 'a' && line[1] <= 'z' && strstr(line, " = "))
                        fprintf(out, "%s\n", line + 1);
                else if (line[0] == '[')
                        fprintf(out, "%s\n", line);
        }
        fclose(out);
        uncommented = buf;

        ASSERT_OK(load_text_log(uncommented, &c, &log));
        ASSERT_STREQ(log, "");  /* no unknown keys */

        /* Every "key = default" line of the dump is in the uncommented sample, in its section. */
        for (char *line = defaults, *next; line && *line; line = next) {
                _cleanup_(freep) char *want = NULL, *header = NULL;
                const char *at;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (line[0] == '\0')
                        continue;
                if (line[0] == '[') {
                        section = line;
                        continue;
                }
                ASSERT_TRUE(asprintf(&header, "%s\n", section) > 0);
                ASSERT_TRUE(asprintf(&want, "\n%s\n", line) > 0);
                at = strstr(uncommented, header);
                if (!at || !strstr(at, want)) {
                        fprintf(stderr, "packaging/idmd.conf lacks \"#%s\" under %s\n", line, section);
                        abort();
                }
                /* ... and before the next section. */
                const char *next_section = strchr(at + 1, '[');
                ASSERT_TRUE(!next_section || strstr(at, want) < next_section);
        }
}

static char *mfree(char *p) {
        free(p);
        return NULL;
}

/* [locales]: the lists (repeatable keys), their bound, emptying, the dump and the cross-key check. */
TEST(locales) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        _cleanup_(freep) char *log = NULL, *a = NULL, *b = NULL, *big = NULL;
        char buf[80];
        FILE *f;
        size_t size = 0;

        ASSERT_OK(config_new(&c));
        ASSERT_STREQ(c->locales_default_country, "US");
        ASSERT_STREQ(c->maxmind_db, "");
        ASSERT_EQ(c->locale_networks.n, 0);
        ASSERT_EQ(c->locale_countries.n, 0);
        c = config_free(c);

        ASSERT_OK(load_text_log("[locales]\n"
                                "default_country = PL\n"
                                "maxmind_db = /var/lib/GeoIP/GeoLite2-Country.mmdb\n"
                                "cidr = 10.0.0.0/8 DE\n"
                                "cidr = 192.0.2.0/24 PL\n"
                                "cidr =\n"                      /* empties the list */
                                "cidr = 192.0.2.0/24 PL\n"
                                "cidr = 2001:DB8::/32   CH\n"
                                "cidr = 192.0.2.0/24 DE\n"      /* the same network: the later country */
                                "cidr = 0.0.0.0/0 FR\n"
                                "country = BE EUR fr_BE\n"
                                "country = BE EUR nl_BE\n"      /* the last for a country wins */
                                "country = CH USD fr_CH\n",
                                &c, &log));
        ASSERT_STREQ(log, "");
        ASSERT_STREQ(c->locales_default_country, "PL");
        ASSERT_STREQ(c->maxmind_db, "/var/lib/GeoIP/GeoLite2-Country.mmdb");
        ASSERT_EQ(c->locale_networks.n, 3);
        locale_network_format(c->locale_networks.items + 0, buf, sizeof(buf));
        ASSERT_STREQ(buf, "192.0.2.0/24 DE");
        locale_network_format(c->locale_networks.items + 1, buf, sizeof(buf));
        ASSERT_STREQ(buf, "2001:db8::/32 CH");
        locale_network_format(c->locale_networks.items + 2, buf, sizeof(buf));
        ASSERT_STREQ(buf, "0.0.0.0/0 FR");
        ASSERT_EQ(c->locale_countries.n, 2);
        ASSERT_STREQ(c->locale_countries.items[0].locale, "nl_BE");

        /* The dump writes one line per value and reads back to the same. */
        a = dump(c);
        ASSERT_CONTAINS(a, "[locales]\ndefault_country = PL\nmaxmind_db = /var/lib/GeoIP/GeoLite2-Country.mmdb\n"
                           "cidr = 192.0.2.0/24 DE\ncidr = 2001:db8::/32 CH\ncidr = 0.0.0.0/0 FR\n"
                           "country = BE EUR nl_BE\ncountry = CH USD fr_CH\n");
        ASSERT_OK(load_text(a, &d));
        b = dump(d);
        ASSERT_STREQ(a, b);
        c = config_free(c);
        d = config_free(d);
        log = mfree(log);

        /* An override's currency must be one registration accepts. */
        ASSERT_EQ(load_text_log("[locales]\ncountry = PL PLN pl_PL\n", &c, &log), -EINVAL);
        ASSERT_CONTAINS(log, "[locales] country = PL PLN pl_PL: currency PLN is not one of [customers] currencies.");
        c = config_free(c);
        log = mfree(log);
        ASSERT_OK(load_text_log("[customers]\ncurrencies = PLN EUR\n[locales]\ncountry = PL PLN pl_PL\n", &c, &log));
        c = config_free(c);
        log = mfree(log);
        /* ... while the default country's currency need not be (the first accepted one stands in). */
        ASSERT_OK(load_text_log("[customers]\ncurrencies = EUR\n", &c, &log));
        ASSERT_STREQ(log, "");
        c = config_free(c);
        log = mfree(log);

        /* At most LOCALES_NETWORKS_MAX networks; one more is an error naming its line. */
        f = open_memstream(&big, &size);
        ASSERT_TRUE(f);
        fprintf(f, "[locales]\n");
        for (unsigned i = 0; i <= LOCALES_NETWORKS_MAX; i++)
                fprintf(f, "cidr = 10.%u.%u.0/24 PL\n", i / 256, i % 256);
        fclose(f);
        ASSERT_EQ(load_text_log(big, &c, &log), -EINVAL);
        ASSERT_CONTAINS(log, "test.conf:4098: too many values for key 'cidr' in [locales]: at most 4096.");
        ASSERT_EQ(c->locale_networks.n, LOCALES_NETWORKS_MAX);
        c = config_free(c);
        log = mfree(log);
        *strrchr(big, 'c') = '\0';      /* without the last line: exactly the bound */
        ASSERT_OK(load_text_log(big, &c, &log));
        ASSERT_EQ(c->locale_networks.n, LOCALES_NETWORKS_MAX);
}

/* The man page names every section and key. */
TEST(man_page) {
        _cleanup_(freep) char *man = read_source_file("docs/man/idmd.conf.5"), *defaults = NULL;
        _cleanup_(config_freep) Config *c = NULL;

        ASSERT_OK(config_new(&c));
        defaults = dump(c);
        for (char *line = defaults, *next; line && *line; line = next) {
                _cleanup_(freep) char *want = NULL;
                char *eq;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (line[0] == '\0')
                        continue;
                if (line[0] == '[')
                        ASSERT_TRUE(asprintf(&want, ".SS \"%s\"", line) > 0);
                else {
                        eq = strstr(line, " = ");
                        ASSERT_TRUE(eq);
                        ASSERT_TRUE(asprintf(&want, "\\fB%.*s\\fR", (int) (eq - line), line) > 0);
                }
                if (!strstr(man, want)) {
                        fprintf(stderr, "docs/man/idmd.conf.5 lacks %s\n", want);
                        abort();
                }
        }
}

int main(void) {
        /* The tests compare messages: make sure warnings are printed, to stderr. */
        log_set_max_level(LOG_LEVEL_INFO);
        unsetenv("JOURNAL_STREAM");
        log_open();

        RUN(defaults);
        RUN(method_class);
        RUN(empty);
        RUN(every_key);
        RUN(sizes);
        RUN(durations);
        RUN(bools);
        RUN(enums);
        RUN(bad_values);
        RUN(bad_value_message);
        RUN(unknown_keys);
        RUN(syntax);
        RUN(long_lines);
        RUN(nul_byte);
        RUN(cross_key);
        RUN(mail);
        RUN(config_set);
        RUN(dump_round_trip);
        RUN(load_files);
        RUN(sample_file);
        RUN(locales);
        RUN(man_page);
        return 0;
}
