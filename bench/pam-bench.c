/* SPDX-License-Identifier: MIT */
/*
 * pam-bench: how long a password sign-in takes through PAM, in process, compared with the same
 * customer's `login` over idmd's socket and, optionally, with pam_unix checking a local user's
 * password (docs/performance.md, "PAM comparison").
 *
 *   setup   creates a publisher (createPublisher: root or idmd's admin group) unless one is
 *           given, and registers one customer; prints {"publisherId", "email"} as JSON.
 *   run     interleaves, for --duration seconds after a --warmup, one transaction of each kind:
 *             login     the JSON-RPC login call on one persistent connection to --socket;
 *             pam_idm   pam_start(--idm-service, the customer's e-mail) + pam_authenticate +
 *                       pam_end, the conversation answering the password: pam_idm connects,
 *                       calls pamAuthenticate and closes, as an application's sign-in does;
 *             pam_unix  the same with --unix-service and --unix-user (only when given);
 *             verify    with --verify: one bare crypto_pwhash_str_verify() of the password at
 *                       idmd's default cost (Argon2id, opslimit 2, memlimit 19 MiB), the floor
 *                       of an unloaded login, measured in the same seconds as the login.
 *           The order rotates each iteration, so that none always runs first after a pause.
 *           Prints the latency of each kind, the CPU time each took in this process (the PAM
 *           modules run here; pam_unix's hashing too) and, with --pid, in idmd (/proc, clock
 *           ticks summed over the window), and the p50 ratios as one JSON line. The CPU times
 *           are what a busy machine changes least.
 *
 * The PAM service files are the caller's (bench/run.sh writes them into a directory that
 * pam_wrapper's PAM_WRAPPER_SERVICE_DIR names, so /etc/pam.d is never read or touched). The
 * password is the bench's fixed one (--password). Not installed; built with -Dbench=true.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <security/pam_appl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "idm/cleanup.h"

#define NSEC_PER_SEC UINT64_C(1000000000)
#define BENCH_PASSWORD "bench-Passw0rd!"
#define REPLY_MAX (1024u * 1024u)
#define MAX_ITERATIONS 100000
#define ARGON2_OPSLIMIT_DEFAULT 2                       /* idmd/config.c config_new() */
#define ARGON2_MEMLIMIT_DEFAULT (UINT64_C(19) * 1024 * 1024)

static uint64_t now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* ---- latency samples ---- */

typedef struct Samples {
        uint64_t v[MAX_ITERATIONS];     /* nanoseconds */
        size_t n;
        uint64_t failed;
        uint64_t self_cpu_nsec;         /* this thread's CPU time in the measured calls */
        uint64_t server_cpu_ticks;      /* idmd's (--pid) utime + stime in the measured calls */
} Samples;

static uint64_t thread_cpu_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

/* utime + stime of all of pid's threads in clock ticks; 0 without pid or on failure. */
static uint64_t proc_cpu_ticks(pid_t pid) {
        unsigned long long utime, stime;
        char path[64], buf[2048], *p;
        size_t n;
        FILE *f;

        if (pid <= 0)
                return 0;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')');  /* the command name may hold spaces */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return 0;
        return utime + stime;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) in µs of sorted samples; 0 without any. */
static double quantile_usec(const Samples *s, double q) {
        size_t i;

        if (s->n == 0)
                return 0;
        i = (size_t) ceil(q * (double) s->n);
        i = i > 0 ? i - 1 : 0;
        if (i >= s->n)
                i = s->n - 1;
        return (double) s->v[i] / 1000.0;
}

static double round1(double x) {
        return round(x * 10.0) / 10.0;
}

/* {"n", "failed", "p50", "p90", "p99", "max", "mean", "self_cpu_us", "idmd_cpu_us"} (the CPU
 * times per call, the last one null without --pid); sorts the samples. */
static json_t *samples_json(Samples *s, bool server) {
        double sum = 0, calls = (double) (s->n + s->failed);

        qsort(s->v, s->n, sizeof(uint64_t), cmp_u64);
        for (size_t i = 0; i < s->n; i++)
                sum += (double) s->v[i];
        return json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:o}",
                         "n", (json_int_t) s->n,
                         "failed", (json_int_t) s->failed,
                         "p50", round1(quantile_usec(s, 0.50)),
                         "p90", round1(quantile_usec(s, 0.90)),
                         "p99", round1(quantile_usec(s, 0.99)),
                         "max", round1(s->n ? (double) s->v[s->n - 1] / 1000.0 : 0),
                         "mean", round1(s->n ? sum / (double) s->n / 1000.0 : 0),
                         "self_cpu_us", round1(calls > 0 ? (double) s->self_cpu_nsec / 1000.0 / calls : 0),
                         "idmd_cpu_us", server && calls > 0 ?
                                json_real(round1((double) s->server_cpu_ticks * 1e6 / (double) sysconf(_SC_CLK_TCK) / calls)) :
                                json_null());
}

/* ---- blocking JSON-RPC on one connection ---- */

static int unix_connect(const char *path, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;
        struct timeval tv = { .tv_sec = 120 };

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        *ret = TAKE_FD(fd);
        return 0;
}

/* Sends {"method": method, "params": params} and reads the one reply line; the result object, or
 * -EREMOTEIO after printing the error. */
static int rpc_call(int fd, const char *method, json_t *params, json_t **ret) {
        _cleanup_(json_decrefp) json_t *req = NULL, *reply = NULL;
        _cleanup_free_ char *text = NULL, *buf = NULL;
        size_t n = 0, len;
        json_t *error, *result;

        req = json_pack("{s:s, s:i, s:s, s:O}", "jsonrpc", "2.0", "id", 1, "method", method, "params", params);
        if (!req)
                return -ENOMEM;
        text = json_dumps(req, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        text[len] = '\n';       /* json_dumps() leaves room for its NUL: replace it, send len + 1 */
        for (size_t off = 0; off < len + 1;) {
                ssize_t k = send(fd, text + off, len + 1 - off, MSG_NOSIGNAL);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (size_t) k;
        }
        buf = malloc(REPLY_MAX);
        if (!buf)
                return -ENOMEM;
        while (n == 0 || buf[n - 1] != '\n') {
                ssize_t k = recv(fd, buf + n, REPLY_MAX - n, 0);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0 || n + (size_t) k >= REPLY_MAX)
                        return -ECONNRESET;
                n += (size_t) k;
        }
        reply = json_loadb(buf, n, 0, NULL);
        if (!reply)
                return -EBADMSG;
        error = json_object_get(reply, "error");
        if (error) {
                _cleanup_free_ char *e = json_dumps(error, JSON_COMPACT);

                fprintf(stderr, "%s failed: %s\n", method, e ?: "?");
                return -EREMOTEIO;
        }
        result = json_object_get(reply, "result");
        if (!json_is_object(result))
                return -EBADMSG;
        if (ret)
                *ret = json_incref(result);
        return 0;
}

/* ---- options ---- */

typedef struct Options {
        const char *socket_path;
        const char *publisher_id, *email, *password;
        const char *idm_service, *unix_service, *unix_user;
        bool verify;
        double duration, warmup;
        unsigned min_iterations;
        pid_t pid;
} Options;

/* ---- setup ---- */

static int cmd_setup(const Options *o) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL, *out = NULL;
        _cleanup_free_ char *publisher = NULL, *email = NULL;
        _cleanup_(closep) int fd = -EBADF;
        unsigned char rnd[4];
        int r;

        if (!o->socket_path) {
                fprintf(stderr, "setup needs --socket.\n");
                return -EINVAL;
        }
        r = unix_connect(o->socket_path, &fd);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to %s: %s\n", o->socket_path, strerror(-r));
                return r;
        }
        if (o->publisher_id)
                publisher = strdup(o->publisher_id);
        else {
                params = json_pack("{s:s}", "name", "pam-bench");
                if (!params)
                        return -ENOMEM;
                r = rpc_call(fd, "createPublisher", params, &result);
                if (r < 0)
                        return r;
                publisher = strdup(json_string_value(json_object_get(result, "publisherId")) ?: "");
                json_decref(TAKE_PTR(params));
                json_decref(TAKE_PTR(result));
        }
        if (!publisher)
                return -ENOMEM;
        if (!publisher[0])
                return -EBADMSG;

        if (getentropy(rnd, sizeof(rnd)) < 0)
                return -errno;
        if (asprintf(&email, "pam-bench-%d-%02x%02x%02x%02x@example.com", (int) getpid(),
                     rnd[0], rnd[1], rnd[2], rnd[3]) < 0)
                return -ENOMEM;
        params = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "email", email, "password", o->password,
                           "publisherId", publisher, "locale", "en_US", "country", "US", "currency", "USD");
        if (!params)
                return -ENOMEM;
        r = rpc_call(fd, "registerCustomer", params, NULL);
        if (r < 0)
                return r;

        out = json_pack("{s:s, s:s}", "publisherId", publisher, "email", email);
        if (!out)
                return -ENOMEM;
        if (json_dumpf(out, stdout, JSON_COMPACT) < 0)
                return -EIO;
        putchar('\n');
        return fflush(stdout) == 0 ? 0 : -EIO;
}

/* ---- run ---- */

/* Answers every prompt with the password; shows nothing else. libpam frees the answers. */
static int conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
        const char *password = data;
        struct pam_response *r;

        if (n <= 0 || n > PAM_MAX_NUM_MSG)
                return PAM_CONV_ERR;
        r = calloc((size_t) n, sizeof(struct pam_response));
        if (!r)
                return PAM_BUF_ERR;
        for (int i = 0; i < n; i++) {
                if (msg[i]->msg_style != PAM_PROMPT_ECHO_OFF && msg[i]->msg_style != PAM_PROMPT_ECHO_ON)
                        continue;       /* info and error messages: nothing to answer */
                r[i].resp = strdup(password);
                if (!r[i].resp) {
                        for (int j = 0; j < i; j++)
                                free(r[j].resp);
                        free(r);
                        return PAM_BUF_ERR;
                }
        }
        *resp = r;
        return PAM_SUCCESS;
}

/* One whole sign-in through PAM; the pam_authenticate() result. */
static int pam_once(const char *service, const char *user, const char *password) {
        struct pam_conv conv = { conversation, (void *) password };
        pam_handle_t *h = NULL;
        int r;

        r = pam_start(service, user, &conv, &h);
        if (r != PAM_SUCCESS)
                return r;
        r = pam_authenticate(h, 0);
        (void) pam_end(h, r);
        return r;
}

typedef enum Kind {
        KIND_LOGIN,
        KIND_PAM_IDM,
        KIND_PAM_UNIX,
        KIND_VERIFY,
        _KIND_MAX,
} Kind;

static const char *const kind_name[_KIND_MAX] = {
        [KIND_LOGIN] = "login",
        [KIND_PAM_IDM] = "pam_idm",
        [KIND_PAM_UNIX] = "pam_unix",
        [KIND_VERIFY] = "verify",
};

static Samples samples[_KIND_MAX];

static int cmd_run(const Options *o) {
        _cleanup_(json_decrefp) json_t *login = NULL, *out = NULL, *by = NULL;
        _cleanup_(closep) int fd = -EBADF;
        uint64_t t0, t_measure, t_end;
        unsigned kinds = 0, iterations = 0;
        Kind active[_KIND_MAX];
        char hash[crypto_pwhash_STRBYTES];
        double p50[_KIND_MAX] = {};
        int r;

        if (!o->socket_path || !o->publisher_id || !o->email || (!o->idm_service && !o->verify)) {
                fprintf(stderr, "run needs --socket, --publisher-id, --email, and --idm-service or --verify.\n");
                return -EINVAL;
        }
        active[kinds++] = KIND_LOGIN;
        if (o->idm_service)
                active[kinds++] = KIND_PAM_IDM;
        if (o->unix_service)
                active[kinds++] = KIND_PAM_UNIX;
        if (o->verify) {
                if (sodium_init() < 0)
                        return -EIO;
                if (crypto_pwhash_str_alg(hash, o->password, strlen(o->password), ARGON2_OPSLIMIT_DEFAULT,
                                          (size_t) ARGON2_MEMLIMIT_DEFAULT, crypto_pwhash_ALG_ARGON2ID13) != 0)
                        return -ENOMEM;
                active[kinds++] = KIND_VERIFY;
        }
        if (!!o->unix_service != !!o->unix_user) {
                fprintf(stderr, "--unix-service and --unix-user go together.\n");
                return -EINVAL;
        }
        r = unix_connect(o->socket_path, &fd);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to %s: %s\n", o->socket_path, strerror(-r));
                return r;
        }
        login = json_pack("{s:s, s:s, s:s}", "email", o->email, "password", o->password,
                          "publisherId", o->publisher_id);
        if (!login)
                return -ENOMEM;

        t0 = now_nsec();
        t_measure = t0 + (uint64_t) (o->warmup * (double) NSEC_PER_SEC);
        t_end = t_measure + (uint64_t) (o->duration * (double) NSEC_PER_SEC);
        for (unsigned it = 0;; it++) {
                uint64_t now = now_nsec();
                bool measured = now >= t_measure;   /* the iterations started in the window */

                if (now >= t_end && iterations >= o->min_iterations)
                        break;
                if (iterations >= MAX_ITERATIONS)
                        break;
                for (unsigned j = 0; j < kinds; j++) {
                        Kind k = active[(it + j) % kinds];
                        uint64_t a, b, cpu_a, ticks_a;
                        bool ok;

                        ticks_a = proc_cpu_ticks(o->pid);
                        cpu_a = thread_cpu_nsec();
                        a = now_nsec();
                        if (k == KIND_LOGIN) {
                                r = rpc_call(fd, "login", login, NULL);
                                if (r < 0 && r != -EREMOTEIO) {
                                        fprintf(stderr, "login: %s\n", strerror(-r));
                                        return r;
                                }
                                ok = r >= 0;
                        } else if (k == KIND_VERIFY) {
                                ok = crypto_pwhash_str_verify(hash, o->password, strlen(o->password)) == 0;
                                if (!ok)
                                        fprintf(stderr, "verify: crypto_pwhash_str_verify failed\n");
                        } else {
                                r = pam_once(k == KIND_PAM_IDM ? o->idm_service : o->unix_service,
                                             k == KIND_PAM_IDM ? o->email : o->unix_user, o->password);
                                if (r != PAM_SUCCESS)
                                        fprintf(stderr, "%s: pam_authenticate: %s\n", kind_name[k],
                                                pam_strerror(NULL, r));
                                ok = r == PAM_SUCCESS;
                        }
                        b = now_nsec();
                        if (!measured)
                                continue;
                        samples[k].self_cpu_nsec += thread_cpu_nsec() - cpu_a;
                        samples[k].server_cpu_ticks += proc_cpu_ticks(o->pid) - ticks_a;
                        if (!ok)
                                samples[k].failed++;
                        else
                                samples[k].v[samples[k].n++] = b - a;
                }
                iterations += measured;
        }

        by = json_object();
        if (!by)
                return -ENOMEM;
        for (unsigned j = 0; j < kinds; j++) {
                Kind k = active[j];

                if (json_object_set_new(by, kind_name[k], samples_json(&samples[k], o->pid > 0 && k != KIND_VERIFY)) < 0)
                        return -ENOMEM;
                p50[k] = quantile_usec(&samples[k], 0.5);
        }
        out = json_pack("{s:s, s:I, s:O, s:o, s:o, s:o}",
                        "bench", "pam",
                        "iterations", (json_int_t) iterations,
                        "latency_us", by,
                        "pam_idm_to_login_p50", o->idm_service && p50[KIND_LOGIN] > 0 ?
                                json_real(round(p50[KIND_PAM_IDM] / p50[KIND_LOGIN] * 1000) / 1000) : json_null(),
                        "pam_idm_to_pam_unix_p50", o->idm_service && o->unix_service && p50[KIND_PAM_UNIX] > 0 ?
                                json_real(round(p50[KIND_PAM_IDM] / p50[KIND_PAM_UNIX] * 1000) / 1000) : json_null(),
                        "login_to_verify_p50", o->verify && p50[KIND_VERIFY] > 0 ?
                                json_real(round(p50[KIND_LOGIN] / p50[KIND_VERIFY] * 1000) / 1000) : json_null());
        if (!out)
                return -ENOMEM;
        if (json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(12)) < 0)
                return -EIO;
        putchar('\n');
        fflush(stdout);

        fprintf(stderr, "pam-bench: %u iterations of %.1f s:", iterations, o->duration);
        for (unsigned j = 0; j < kinds; j++) {
                Kind k = active[j];

                fprintf(stderr, " %s p50 %.0f µs, p99 %.0f µs, CPU %.0f µs here%s;", kind_name[k],
                        quantile_usec(&samples[k], 0.5), quantile_usec(&samples[k], 0.99),
                        samples[k].n ? (double) samples[k].self_cpu_nsec / 1000.0 / (double) samples[k].n : 0.0,
                        samples[k].failed ? " (FAILURES)" : "");
        }
        if (o->idm_service)
                fprintf(stderr, " pam_idm / login p50 %.2f", p50[KIND_LOGIN] > 0 ? p50[KIND_PAM_IDM] / p50[KIND_LOGIN] : 0);
        if (o->idm_service && o->unix_service)
                fprintf(stderr, ", pam_idm / pam_unix p50 %.2f",
                        p50[KIND_PAM_UNIX] > 0 ? p50[KIND_PAM_IDM] / p50[KIND_PAM_UNIX] : 0);
        if (o->verify)
                fprintf(stderr, " login / bare verify p50 %.2f", p50[KIND_VERIFY] > 0 ? p50[KIND_LOGIN] / p50[KIND_VERIFY] : 0);
        fputc('\n', stderr);

        for (unsigned j = 0; j < kinds; j++)
                if (samples[active[j]].failed || samples[active[j]].n == 0)
                        return -EPROTO;
        return 0;
}

static void help(void) {
        printf("Usage: pam-bench setup --socket PATH [--publisher-id ID] [--password PW]\n"
               "       pam-bench run --socket PATH --publisher-id ID --email E [--idm-service NAME]\n"
               "                     [--unix-service NAME --unix-user USER] [--verify] [--password PW]\n"
               "                     [--duration S] [--warmup S] [--min-iterations N] [--pid PID]\n\n"
               "setup registers a customer (and creates a publisher unless given) and prints both.\n"
               "run interleaves a login over the socket, a pam_authenticate through pam_idm and,\n"
               "with --unix-service, one through pam_unix and, with --verify, a bare Argon2id verify of\n"
               "the password at idmd's default cost (at least one of --idm-service and --verify); prints\n"
               "the latencies and CPU times (idmd's\n"
               "with --pid, its process id) as one JSON line.\n"
               "Defaults: --duration 4, --warmup 1, --min-iterations 5, --password %s.\n", BENCH_PASSWORD);
}

int main(int argc, char *argv[]) {
        enum {
                ARG_SOCKET = 0x100, ARG_PUBLISHER_ID, ARG_EMAIL, ARG_PASSWORD, ARG_IDM_SERVICE,
                ARG_UNIX_SERVICE, ARG_UNIX_USER, ARG_DURATION, ARG_WARMUP, ARG_MIN_ITERATIONS, ARG_PID,
                ARG_VERIFY,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "publisher-id", required_argument, NULL, ARG_PUBLISHER_ID },
                { "email", required_argument, NULL, ARG_EMAIL },
                { "password", required_argument, NULL, ARG_PASSWORD },
                { "idm-service", required_argument, NULL, ARG_IDM_SERVICE },
                { "unix-service", required_argument, NULL, ARG_UNIX_SERVICE },
                { "unix-user", required_argument, NULL, ARG_UNIX_USER },
                { "duration", required_argument, NULL, ARG_DURATION },
                { "warmup", required_argument, NULL, ARG_WARMUP },
                { "min-iterations", required_argument, NULL, ARG_MIN_ITERATIONS },
                { "pid", required_argument, NULL, ARG_PID },
                { "verify", no_argument, NULL, ARG_VERIFY },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        Options o = {
                .password = BENCH_PASSWORD,
                .duration = 4,
                .warmup = 1,
                .min_iterations = 5,
        };
        const char *command;
        char *end;
        int c, r;

        if (argc < 2 || streq(argv[1], "-h") || streq(argv[1], "--help")) {
                help();
                return argc < 2 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        command = argv[1];
        argv[1] = argv[0];
        argc--;
        argv++;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                bool bad = false;

                switch (c) {
                case ARG_SOCKET:
                        o.socket_path = optarg;
                        break;
                case ARG_PUBLISHER_ID:
                        o.publisher_id = optarg;
                        break;
                case ARG_EMAIL:
                        o.email = optarg;
                        break;
                case ARG_PASSWORD:
                        o.password = optarg;
                        bad = !optarg[0];
                        break;
                case ARG_IDM_SERVICE:
                        o.idm_service = optarg;
                        break;
                case ARG_UNIX_SERVICE:
                        o.unix_service = optarg;
                        break;
                case ARG_UNIX_USER:
                        o.unix_user = optarg;
                        break;
                case ARG_DURATION:
                case ARG_WARMUP: {
                        double v;

                        errno = 0;
                        v = strtod(optarg, &end);
                        bad = errno != 0 || end == optarg || *end || !(v >= 0) || v > 86400 ||
                              (c == ARG_DURATION && v <= 0);
                        *(c == ARG_DURATION ? &o.duration : &o.warmup) = v;
                        break;
                }
                case ARG_MIN_ITERATIONS:
                case ARG_PID: {
                        unsigned long v;

                        errno = 0;
                        v = strtoul(optarg, &end, 10);
                        bad = errno != 0 || end == optarg || *end ||
                              v > (c == ARG_PID ? (unsigned long) INT_MAX : MAX_ITERATIONS) || (c == ARG_PID && v == 0);
                        if (c == ARG_PID)
                                o.pid = (pid_t) v;
                        else
                                o.min_iterations = (unsigned) v;
                        break;
                }
                case ARG_VERIFY:
                        o.verify = true;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
                if (bad) {
                        fprintf(stderr, "Invalid value for --%s: '%s'.\n", options[c - ARG_SOCKET].name, optarg);
                        return EXIT_FAILURE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "Unexpected argument '%s'.\n", argv[optind]);
                return EXIT_FAILURE;
        }

        if (streq(command, "setup"))
                r = cmd_setup(&o);
        else if (streq(command, "run"))
                r = cmd_run(&o);
        else {
                fprintf(stderr, "Unknown command '%s'. See pam-bench --help.\n", command);
                return EXIT_FAILURE;
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
