/* SPDX-License-Identifier: MIT */
/*
 * idm-bench: the measuring instrument for idmd's performance work (docs/performance.md).
 *
 * Load generators against a running idmd, and floors measured by the same binary in the same run,
 * so that results can be read as ratios to what the machine can do at all:
 *
 *   load          N closed-loop connections over T threads calling one method (with per-method
 *                 set-up for refreshToken and login): throughput, latency percentiles, errors by
 *                 code, idmd's RSS and CPU time.
 *   mixed         one read client measured alone, then again while a write load runs.
 *   mix           a realistic blend on every connection (token reads with getCustomer, refreshToken,
 *                 login, by weight), after the same connections doing reads alone: per method.
 *   floor-echo    the same client loop against an in-process newline echo server (one thread,
 *                 like idmd's event loop): what a Unix socket round trip costs here.
 *   floor-lmdb    durable LMDB commits with idmd's environment flags, K records per transaction.
 *   floor-argon2  bare crypto_pwhash_str_verify() throughput at idmd's default cost.
 *   floor-ed25519 bare Ed25519 signature verification of a JWT-sized message on T threads.
 *   floor-pg      one-row INSERT + COMMIT round trips to PostgreSQL on one connection (libpq):
 *                 the floor of a store in PostgreSQL, as floor-lmdb is LMDB's.
 *   probe         waits until idmd answers getServerInfo; prints the request and reply sizes.
 *
 * Every command prints one JSON line on stdout (for scripts) and one human line on stderr.
 * Only libc, pthreads, jansson, libsodium, LMDB and libpq are used. Not installed, not in `meson test`
 * unless the build was configured with -Dbench=true (see bench/meson.build).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include <libpq-fe.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <lmdb.h>
#include <sodium.h>

#include "idm/cleanup.h"

#define NSEC_PER_SEC UINT64_C(1000000000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define DRAIN_NSEC (2 * NSEC_PER_SEC)          /* how long to wait for replies after the window */
#define SETUP_TIMEOUT_SEC 120                  /* one set-up call (a registration waits for a hash) */
#define SETUP_ROUNDS 60                        /* set-up retries after 429/503, one second apart */
#define REPLY_MAX (1024u * 1024u)              /* IDM_MAX_REPLY */
#define BENCH_PASSWORD "bench-Passw0rd!"
#define ARGON2_OPSLIMIT_DEFAULT 2              /* idmd/config.c config_new() */
#define ARGON2_MEMLIMIT_DEFAULT (UINT64_C(19) * 1024 * 1024)
#define ARGON2_THREADS_DEFAULT 2               /* [passwords] workers */
#define LMDB_MAP_SIZE (UINT64_C(4) * 1024 * 1024 * 1024)  /* idmd's map_size_max default */
#define LMDB_MAXDBS 12                         /* _STORE_TABLE_MAX */

/* jansson (>= 2.11) provides json_decrefp() for _cleanup_(json_decrefp). */

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

static bool startswith(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static uint64_t now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
        struct timespec ts = {
                .tv_sec = (time_t) (t / NSEC_PER_SEC),
                .tv_nsec = (long) (t % NSEC_PER_SEC),
        };

        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                ;
}

static uint64_t sec_to_nsec(double s) {
        return s <= 0 ? 0 : (uint64_t) (s * (double) NSEC_PER_SEC);
}

/* ---- latency samples, percentiles ---- */

typedef struct Samples {
        uint64_t *v;                    /* nanoseconds */
        size_t n, allocated;
} Samples;

static int samples_add(Samples *s, uint64_t x) {
        if (s->n == s->allocated) {
                size_t k = s->allocated ? s->allocated * 2 : 65536;
                uint64_t *v = realloc(s->v, k * sizeof(uint64_t));

                if (!v)
                        return -ENOMEM;
                s->v = v;
                s->allocated = k;
        }
        s->v[s->n++] = x;
        return 0;
}

static int samples_append(Samples *to, const Samples *from) {
        for (size_t i = 0; i < from->n; i++)
                if (samples_add(to, from->v[i]) < 0)
                        return -ENOMEM;
        return 0;
}

static void samples_done(Samples *s) {
        free(s->v);
        *s = (Samples) {};
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of sorted samples, in microseconds; 0 without samples. */
static double quantile_usec(const Samples *s, double q) {
        size_t i;

        if (s->n == 0)
                return 0;
        i = (size_t) ceil(q * (double) s->n);
        if (i > 0)
                i--;
        if (i >= s->n)
                i = s->n - 1;
        return (double) s->v[i] / 1000.0;
}

static double round1(double x) {
        return round(x * 10.0) / 10.0;
}

/* {"p50", "p90", "p99", "p999", "max", "mean"} in µs; sorts the samples. */
static json_t *latency_json(Samples *s) {
        double sum = 0;

        qsort(s->v, s->n, sizeof(uint64_t), cmp_u64);
        for (size_t i = 0; i < s->n; i++)
                sum += (double) s->v[i];
        return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}",
                         "p50", round1(quantile_usec(s, 0.50)),
                         "p90", round1(quantile_usec(s, 0.90)),
                         "p99", round1(quantile_usec(s, 0.99)),
                         "p999", round1(quantile_usec(s, 0.999)),
                         "max", round1(s->n ? (double) s->v[s->n - 1] / 1000.0 : 0),
                         "mean", round1(s->n ? sum / (double) s->n / 1000.0 : 0));
}

/* ---- errors by code ---- */

typedef struct ErrorCount {
        char *key;                      /* "401 invalid_token", "eof", ... */
        uint64_t n;
} ErrorCount;

typedef struct Errors {
        ErrorCount *v;
        size_t n;
} Errors;

static int errors_add(Errors *e, const char *key, uint64_t n) {
        ErrorCount *v;

        for (size_t i = 0; i < e->n; i++)
                if (streq(e->v[i].key, key)) {
                        e->v[i].n += n;
                        return 0;
                }
        v = realloc(e->v, (e->n + 1) * sizeof(ErrorCount));
        if (!v)
                return -ENOMEM;
        e->v = v;
        e->v[e->n].key = strdup(key);
        if (!e->v[e->n].key)
                return -ENOMEM;
        e->v[e->n++].n = n;
        return 0;
}

static void errors_done(Errors *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->v[i].key);
        free(e->v);
        *e = (Errors) {};
}

static json_t *errors_json(const Errors *e) {
        json_t *j = json_object();

        for (size_t i = 0; j && i < e->n; i++)
                json_object_set_new(j, e->v[i].key, json_integer((json_int_t) e->v[i].n));
        return j;
}

/* "CODE REASON" of a JSON-RPC error object. */
static void error_key(json_t *error, char *buf, size_t size) {
        json_t *code = json_object_get(error, "code");
        const char *reason = json_string_value(json_object_get(json_object_get(error, "data"), "reason"));

        snprintf(buf, size, "%" JSON_INTEGER_FORMAT " %s",
                 json_is_integer(code) ? json_integer_value(code) : 0, reason ?: "?");
}

/* ---- the server under test, seen from /proc ---- */

typedef struct ProcSample {
        bool valid;
        uint64_t rss_kib;
        double cpu_sec;                 /* utime + stime of all threads */
        double sys_sec;                 /* stime of all threads */
        double loop_cpu_sec;            /* of the main thread (idmd's event loop) */
} ProcSample;

/* utime + stime in seconds from a /proc/.../stat file (and stime alone); negative on failure. */
static double proc_stat_cpu(const char *path, double *ret_sys) {
        _cleanup_(fclosep) FILE *f = NULL;
        unsigned long long utime, stime;
        char buf[2048], *p;
        size_t n;

        f = fopen(path, "re");
        if (!f)
                return -1;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        p = strrchr(buf, ')');  /* the command name may hold spaces */
        if (!p)
                return -1;
        /* After ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
        if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return -1;
        if (ret_sys)
                *ret_sys = (double) stime / (double) sysconf(_SC_CLK_TCK);
        return (double) (utime + stime) / (double) sysconf(_SC_CLK_TCK);
}

static ProcSample proc_sample(pid_t pid) {
        _cleanup_(fclosep) FILE *f = NULL;
        ProcSample s = {};
        char path[64], line[256];

        if (pid <= 0)
                return s;
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return s;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %" SCNu64, &s.rss_kib) == 1)
                        break;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        s.cpu_sec = proc_stat_cpu(path, &s.sys_sec);
        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int) pid, (int) pid);
        s.loop_cpu_sec = proc_stat_cpu(path, NULL);
        s.valid = s.rss_kib > 0 && s.cpu_sec >= 0 && s.loop_cpu_sec >= 0;
        return s;
}

static double self_cpu_sec(void) {
        struct rusage ru;

        if (getrusage(RUSAGE_SELF, &ru) < 0)
                return 0;
        return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
               (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

/* ---- blocking JSON-RPC, for set-up ---- */

static int unix_connect(const char *path, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        *ret = TAKE_FD(fd);
        return 0;
}

static int send_all(int fd, const char *buf, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, buf, n, MSG_NOSIGNAL);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += k;
                n -= (size_t) k;
        }
        return 0;
}

static int rpc_send(int fd, uint64_t id, const char *method, json_t *params) {
        _cleanup_(json_decrefp) json_t *req = NULL;
        _cleanup_free_ char *text = NULL;
        int r;

        req = json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", (json_int_t) id, "method", method);
        if (!req)
                return -ENOMEM;
        if (params && json_object_set(req, "params", params) < 0)
                return -ENOMEM;
        text = json_dumps(req, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        r = send_all(fd, text, strlen(text));
        if (r < 0)
                return r;
        return send_all(fd, "\n", 1);
}

/* Reads one reply line (the only one outstanding on fd) and parses it. */
static int rpc_recv(int fd, json_t **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, size = 0;
        json_error_t error;
        json_t *j;

        for (;;) {
                ssize_t k;

                if (size - n < 4096) {
                        char *b;

                        if (size >= REPLY_MAX)
                                return -E2BIG;
                        size = size ? size * 2 : 8192;
                        b = realloc(buf, size);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                }
                k = recv(fd, buf + n, size - n - 1, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                n += (size_t) k;
                if (buf[n - 1] == '\n')
                        break;
        }
        j = json_loadb(buf, n, 0, &error);
        if (!j || !json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

/* A blocking call; the result or -EREMOTEIO with the error object in *ret_error. */
static int rpc_call(int fd, const char *method, json_t *params, json_t **ret_result, json_t **ret_error) {
        _cleanup_(json_decrefp) json_t *reply = NULL;
        json_t *v;
        int r;

        r = rpc_send(fd, 1, method, params);
        if (r < 0)
                return r;
        r = rpc_recv(fd, &reply);
        if (r < 0)
                return r;
        v = json_object_get(reply, "error");
        if (v) {
                if (ret_error)
                        *ret_error = json_incref(v);
                return -EREMOTEIO;
        }
        v = json_object_get(reply, "result");
        if (!v)
                return -EBADMSG;
        if (ret_result)
                *ret_result = json_incref(v);
        return 0;
}

static void set_timeouts(int fd, int sec) {
        struct timeval tv = { .tv_sec = sec };

        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- the closed-loop load engine ---- */

typedef enum Kind {
        KIND_GENERIC,                   /* the same request every time, no state */
        KIND_REFRESH,                   /* refreshToken, rotating the connection's own token */
        KIND_LOGIN,                     /* login as the connection's own customer */
        KIND_MIX,                       /* each request drawn by weight from the MixOp methods */
        KIND_JWT,                       /* getCustomer with the JWT of the connection's own customer */
} Kind;

/* The methods of KIND_MIX, each on the connection's own customer: a token read (getCustomer with
 * the connection's JWT), a refresh (rotating its refresh token), a login (with its password). */
typedef enum MixOp {
        MIX_READ,
        MIX_REFRESH,
        MIX_LOGIN,
        _MIX_OP_MAX,
} MixOp;

static const char *const mix_op_method[_MIX_OP_MAX] = {
        [MIX_READ] = "getCustomer",
        [MIX_REFRESH] = "refreshToken",
        [MIX_LOGIN] = "login",
};

typedef struct Group Group;
typedef struct Worker Worker;

typedef struct Conn {
        int fd;
        Worker *worker;
        unsigned index;

        char *email;                    /* KIND_LOGIN, KIND_REFRESH: this connection's customer */
        char *token;                    /* KIND_REFRESH, KIND_MIX: the refresh token to send next */
        char *jwt;                      /* KIND_MIX, KIND_JWT: the access token of the latest session */
        MixOp op;                       /* KIND_MIX: the method of the outstanding request */
        uint32_t rng;                   /* KIND_MIX: xorshift32 state for drawing the next method */

        uint64_t next_id;
        uint64_t sent_at;               /* 0 when no request is outstanding */
        uint64_t last_sent;             /* when the last request was sent */
        uint64_t next_send_at;          /* pacing (--rate) */
        bool dead;

        char *rbuf;
        size_t rlen, rsize;
        char *wbuf;
        size_t wlen, woff, wsize;
        bool want_out;
} Conn;

struct Worker {
        pthread_t thread;
        bool started;
        Group *group;
        Conn **conns;
        unsigned n_conns;
        int epfd;

        unsigned outstanding;
        Samples samples;                /* latencies of the replies inside the window */
        uint64_t ok, errors, warmup_replies, late_replies;
        uint64_t dead;
        Errors error_counts;
        int failure;                    /* -errno of a failed syscall */

        /* KIND_MIX: the same, per method, inside the window */
        Samples op_samples[_MIX_OP_MAX];
        uint64_t op_ok[_MIX_OP_MAX], op_errors[_MIX_OP_MAX];
};

struct Group {
        const char *label;
        const char *socket_path;
        const char *method;
        Kind kind;
        const char *params;             /* KIND_GENERIC: params as JSON text, or NULL */
        char *tail;                     /* KIND_GENERIC: everything after the id */
        const char *publisher_id;
        const char *password;
        unsigned n_conns, n_threads;
        uint64_t interval_nsec;         /* per connection; 0: next request right after the reply */
        unsigned weights[_MIX_OP_MAX];  /* KIND_MIX: relative weight of each method */

        Conn *conns;
        Worker *workers;

        uint64_t t_start, t_measure, t_end;
};

static Kind kind_of(const char *method) {
        if (streq(method, "refreshToken"))
                return KIND_REFRESH;
        if (streq(method, "login"))
                return KIND_LOGIN;
        if (streq(method, "getCustomer"))
                return KIND_JWT;
        return KIND_GENERIC;
}

static int conn_reserve_w(Conn *c, size_t n) {
        if (c->wsize >= n)
                return 0;
        char *b = realloc(c->wbuf, n);
        if (!b)
                return -ENOMEM;
        c->wbuf = b;
        c->wsize = n;
        return 0;
}

/* Writes the request for c into c->wbuf. */
static MixOp mix_draw(Group *g, Conn *c) {
        unsigned total = 0, x;

        for (unsigned i = 0; i < _MIX_OP_MAX; i++)
                total += g->weights[i];
        /* xorshift32: cheap, and each connection draws its own sequence */
        c->rng ^= c->rng << 13;
        c->rng ^= c->rng >> 17;
        c->rng ^= c->rng << 5;
        x = c->rng % total;
        for (unsigned i = 0; i < _MIX_OP_MAX; i++) {
                if (x < g->weights[i])
                        return (MixOp) i;
                x -= g->weights[i];
        }
        return MIX_READ;
}

static int conn_format(Group *g, Conn *c) {
        Kind kind = g->kind;
        int n;
        size_t need;

        if (kind == KIND_MIX) {
                c->op = mix_draw(g, c);
                if (c->op == MIX_READ) {
                        if (conn_reserve_w(c, 128 + strlen(c->jwt)) < 0)
                                return -ENOMEM;
                        n = snprintf(c->wbuf, c->wsize,
                                     "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"getCustomer\","
                                     "\"params\":{\"jwt\":\"%s\"}}\n", c->next_id, c->jwt);
                        if (n < 0 || (size_t) n >= c->wsize)
                                return -EOVERFLOW;
                        c->wlen = (size_t) n;
                        c->woff = 0;
                        return 0;
                }
                kind = c->op == MIX_REFRESH ? KIND_REFRESH : KIND_LOGIN;
        }

        switch (kind) {
        case KIND_REFRESH:
                need = 128 + strlen(c->token);
                break;
        case KIND_JWT:
                need = 128 + strlen(c->jwt);
                break;
        case KIND_LOGIN:
                need = 192 + strlen(c->email) + strlen(g->password) + strlen(g->publisher_id);
                break;
        default:
                need = 64 + strlen(g->tail);
        }
        if (conn_reserve_w(c, need) < 0)
                return -ENOMEM;

        switch (kind) {
        case KIND_REFRESH:
                n = snprintf(c->wbuf, c->wsize,
                             "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"refreshToken\","
                             "\"params\":{\"refreshToken\":\"%s\"}}\n", c->next_id, c->token);
                break;
        case KIND_JWT:
                n = snprintf(c->wbuf, c->wsize,
                             "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"getCustomer\","
                             "\"params\":{\"jwt\":\"%s\"}}\n", c->next_id, c->jwt);
                break;
        case KIND_LOGIN:
                n = snprintf(c->wbuf, c->wsize,
                             "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"login\","
                             "\"params\":{\"email\":\"%s\",\"password\":\"%s\",\"publisherId\":\"%s\"}}\n",
                             c->next_id, c->email, g->password, g->publisher_id);
                break;
        default:
                n = snprintf(c->wbuf, c->wsize, "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 "%s", c->next_id, g->tail);
        }
        if (n < 0 || (size_t) n >= c->wsize)
                return -EOVERFLOW;
        c->wlen = (size_t) n;
        c->woff = 0;
        return 0;
}

static int conn_watch(Worker *w, Conn *c, bool out) {
        struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };

        if (c->want_out == out)
                return 0;
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                return -errno;
        c->want_out = out;
        return 0;
}

static int conn_flush(Worker *w, Conn *c) {
        while (c->woff < c->wlen) {
                ssize_t k = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return conn_watch(w, c, true);
                        return -errno;
                }
                c->woff += (size_t) k;
        }
        return conn_watch(w, c, false);
}

static void conn_kill(Worker *w, Conn *c, const char *why) {
        if (c->dead)
                return;
        (void) epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->fd = safe_close(c->fd);
        c->dead = true;
        w->dead++;
        if (c->sent_at) {
                c->sent_at = 0;
                w->outstanding--;
        }
        if (why)
                (void) errors_add(&w->error_counts, why, 1);
}

static int conn_send(Worker *w, Conn *c, uint64_t now) {
        int r;

        assert(!c->sent_at);
        c->next_id++;
        r = conn_format(w->group, c);
        if (r < 0)
                return r;
        c->sent_at = c->last_sent = now;
        w->outstanding++;
        r = conn_flush(w, c);
        if (r < 0) {
                /* The peer went away: count it against this connection, not the run. */
                conn_kill(w, c, "send_failed");
                return 0;
        }
        return 0;
}

/* Cheap check that a reply line answers request id: finds "id": and compares the number. */
static bool reply_id_matches(const char *line, size_t n, uint64_t id) {
        const char *p = memmem(line, n, "\"id\":", 5);
        char *end;

        if (!p)
                return false;
        errno = 0;
        unsigned long long v = strtoull(p + 5, &end, 10);
        return errno == 0 && end != p + 5 && v == id;
}

/* One reply line for c's outstanding request. */
static int conn_reply(Worker *w, Conn *c, const char *line, size_t n, uint64_t now) {
        Group *g = w->group;
        _cleanup_(json_decrefp) json_t *reply = NULL;
        char key[128];
        bool ok, parse, rotates;
        uint64_t latency;

        if (!c->sent_at) {
                (void) errors_add(&w->error_counts, "unexpected_reply", 1);
                return 0;
        }
        latency = now - c->sent_at;
        c->sent_at = 0;
        w->outstanding--;

        /* Only parse what has to be parsed: the echo floor pays the same. Replies that carry a
         * new refresh token (and in a mix a new JWT) have to be. */
        rotates = g->kind == KIND_REFRESH || (g->kind == KIND_MIX && c->op != MIX_READ);
        parse = rotates || memmem(line, n, "\"error\"", 7);
        ok = reply_id_matches(line, n, c->next_id);
        key[0] = 0;
        if (!ok)
                snprintf(key, sizeof(key), "wrong_id");
        else if (parse) {
                json_error_t jerr;
                json_t *error;

                reply = json_loadb(line, n, 0, &jerr);
                if (!reply || !json_is_object(reply)) {
                        ok = false;
                        snprintf(key, sizeof(key), "bad_json");
                } else if ((error = json_object_get(reply, "error"))) {
                        ok = false;
                        error_key(error, key, sizeof(key));
                } else if (rotates) {
                        static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                        json_t *result = json_object_get(reply, "result");
                        const char *t = json_string_value(json_object_get(result, "refreshToken"));
                        const char *jwt = json_string_value(json_object_get(result, "jwt"));
                        char *copy;

                        if (!t || strspn(t, b64url) != strlen(t)) {
                                ok = false;
                                snprintf(key, sizeof(key), "no_refresh_token");
                        } else if (g->kind == KIND_MIX && (!jwt || strspn(jwt, ".ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != strlen(jwt))) {
                                ok = false;
                                snprintf(key, sizeof(key), "no_jwt");
                        } else {
                                copy = strdup(t);
                                if (!copy)
                                        return -ENOMEM;
                                free(c->token);
                                c->token = copy;
                                if (g->kind == KIND_MIX) {
                                        copy = strdup(jwt);
                                        if (!copy)
                                                return -ENOMEM;
                                        free(c->jwt);
                                        c->jwt = copy;
                                }
                        }
                }
        }

        if (now < g->t_measure)
                w->warmup_replies++;
        else if (now >= g->t_end)
                w->late_replies++;
        else {
                if (samples_add(&w->samples, latency) < 0)
                        return -ENOMEM;
                if (ok)
                        w->ok++;
                else {
                        w->errors++;
                        if (errors_add(&w->error_counts, key, 1) < 0)
                                return -ENOMEM;
                }
                if (g->kind == KIND_MIX) {
                        if (samples_add(&w->op_samples[c->op], latency) < 0)
                                return -ENOMEM;
                        if (ok)
                                w->op_ok[c->op]++;
                        else
                                w->op_errors[c->op]++;
                }
        }

        /* A refresh chain that broke (token refused, reply unusable) cannot go on: a token is
         * used up by its rotation. Rate limits and overload (429, 503) leave the token valid. */
        if (!ok && (g->kind == KIND_REFRESH || (g->kind == KIND_MIX && c->op == MIX_REFRESH)) &&
            !startswith(key, "429 ") && !startswith(key, "503 "))
                conn_kill(w, c, "refresh_chain_broken");
        return 0;
}

/* Reads what arrived on c and handles every complete reply line. */
static int conn_readable(Worker *w, Conn *c) {
        for (;;) {
                size_t start = 0;
                uint64_t t;
                ssize_t k;
                char *nl;

                if (c->rsize - c->rlen < 4096) {
                        size_t size = c->rsize ? c->rsize * 2 : 16384;
                        char *b;

                        if (size > 2 * REPLY_MAX) {
                                conn_kill(w, c, "reply_too_long");
                                return 0;
                        }
                        b = realloc(c->rbuf, size);
                        if (!b)
                                return -ENOMEM;
                        c->rbuf = b;
                        c->rsize = size;
                }
                k = recv(c->fd, c->rbuf + c->rlen, c->rsize - c->rlen, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        conn_kill(w, c, "recv_failed");
                        return 0;
                }
                if (k == 0) {
                        conn_kill(w, c, "eof");
                        return 0;
                }
                t = now_nsec();
                c->rlen += (size_t) k;
                while ((nl = memchr(c->rbuf + start, '\n', c->rlen - start))) {
                        size_t len = (size_t) (nl - (c->rbuf + start));
                        int r;

                        r = conn_reply(w, c, c->rbuf + start, len, t);
                        if (r < 0)
                                return r;
                        if (c->dead)
                                return 0;
                        start += len + 1;
                }
                if (start > 0) {
                        memmove(c->rbuf, c->rbuf + start, c->rlen - start);
                        c->rlen -= start;
                }
        }
}

/* epoll_pwait2() (nanosecond timeouts, for pacing), falling back to epoll_wait() on old kernels. */
static int wait_events(int epfd, struct epoll_event *ev, int n, uint64_t timeout_nsec) {
        static bool no_pwait2 = false;
        struct timespec ts = {
                .tv_sec = (time_t) (timeout_nsec / NSEC_PER_SEC),
                .tv_nsec = (long) (timeout_nsec % NSEC_PER_SEC),
        };
        int k;

        if (!__atomic_load_n(&no_pwait2, __ATOMIC_RELAXED)) {
                k = epoll_pwait2(epfd, ev, n, &ts, NULL);
                if (k >= 0 || errno != ENOSYS)
                        return k < 0 ? -errno : k;
                __atomic_store_n(&no_pwait2, true, __ATOMIC_RELAXED);
        }
        k = epoll_wait(epfd, ev, n, (int) ((timeout_nsec + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC));
        return k < 0 ? -errno : k;
}

static int worker_loop(Worker *w) {
        Group *g = w->group;
        struct epoll_event ev[64];
        uint64_t now;
        int r;

        sleep_until(g->t_start);
        now = now_nsec();
        for (unsigned i = 0; i < w->n_conns; i++) {
                Conn *c = w->conns[i];

                if (c->dead)
                        continue;
                if (g->interval_nsec > 0)
                        /* Spread paced connections over one interval instead of a burst. */
                        c->next_send_at = now + g->interval_nsec * c->index / g->n_conns;
                else {
                        r = conn_send(w, c, now);
                        if (r < 0)
                                return r;
                }
        }

        for (;;) {
                uint64_t wake;
                int n;

                now = now_nsec();
                if (now >= g->t_end) {
                        if (w->outstanding == 0 || now >= g->t_end + DRAIN_NSEC)
                                return 0;
                        wake = g->t_end + DRAIN_NSEC;
                } else {
                        wake = g->t_end;
                        for (unsigned i = 0; g->interval_nsec > 0 && i < w->n_conns; i++) {
                                Conn *c = w->conns[i];

                                if (c->dead || c->sent_at)
                                        continue;
                                if (c->next_send_at <= now) {
                                        r = conn_send(w, c, now);
                                        if (r < 0)
                                                return r;
                                } else if (c->next_send_at < wake)
                                        wake = c->next_send_at;
                        }
                }

                n = wait_events(w->epfd, ev, (int) ELEMENTSOF(ev), wake > now ? wake - now : 0);
                if (n == -EINTR)
                        continue;
                if (n < 0)
                        return n;

                for (int i = 0; i < n; i++) {
                        Conn *c = ev[i].data.ptr;

                        if (c->dead)
                                continue;
                        if (ev[i].events & EPOLLOUT) {
                                r = conn_flush(w, c);
                                if (r < 0)
                                        conn_kill(w, c, "send_failed");
                        }
                        if (!c->dead && (ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                                r = conn_readable(w, c);
                                if (r < 0)
                                        return r;
                        }
                        if (c->dead || c->sent_at)
                                continue;
                        if (g->interval_nsec > 0)
                                c->next_send_at = c->last_sent + g->interval_nsec;
                        else {
                                now = now_nsec();
                                if (now < g->t_end) {
                                        r = conn_send(w, c, now);
                                        if (r < 0)
                                                return r;
                                }
                        }
                }
        }
}

static void *worker_main(void *p) {
        Worker *w = p;

        w->failure = worker_loop(w);
        return NULL;
}

static void group_free(Group *g) {
        if (g->workers) {
                for (unsigned i = 0; i < g->n_threads; i++) {
                        Worker *w = &g->workers[i];

                        if (w->started)
                                (void) pthread_join(w->thread, NULL);
                        safe_close(w->epfd);
                        free(w->conns);
                        samples_done(&w->samples);
                        errors_done(&w->error_counts);
                        for (unsigned k = 0; k < _MIX_OP_MAX; k++)
                                samples_done(&w->op_samples[k]);
                }
                free(g->workers);
        }
        if (g->conns) {
                for (unsigned i = 0; i < g->n_conns; i++) {
                        Conn *c = &g->conns[i];

                        safe_close(c->fd);
                        free(c->email);
                        free(c->token);
                        free(c->jwt);
                        free(c->rbuf);
                        free(c->wbuf);
                }
                free(g->conns);
        }
        free(g->tail);
        *g = (Group) {};
}

/* The part of a KIND_GENERIC request after the id: ,"method":M[,"params":P]}\n */
static int group_make_tail(Group *g) {
        _cleanup_free_ char *method = NULL, *params = NULL;
        _cleanup_(json_decrefp) json_t *m = NULL, *p = NULL;
        json_error_t error;

        m = json_string(g->method);
        if (!m)
                return -EINVAL;
        method = json_dumps(m, JSON_ENCODE_ANY);
        if (!method)
                return -ENOMEM;
        if (g->params) {
                p = json_loads(g->params, 0, &error);
                if (!p || !json_is_object(p)) {
                        fprintf(stderr, "--params is not a JSON object: %s\n", p ? "not an object" : error.text);
                        return -EINVAL;
                }
                params = json_dumps(p, JSON_COMPACT);
                if (!params)
                        return -ENOMEM;
        }
        if (asprintf(&g->tail, ",\"method\":%s%s%s}\n", method, params ? ",\"params\":" : "",
                     params ?: "") < 0)
                return -ENOMEM;
        return 0;
}

/* Opens the group's connections (blocking, for set-up) and decides which thread serves each. */
static int group_connect(Group *g) {
        int r;

        if (g->n_conns == 0 || g->n_threads == 0)
                return -EINVAL;
        if (g->n_threads > g->n_conns)
                g->n_threads = g->n_conns;
        if (g->kind != KIND_MIX)        /* set by the mix command; its "method" is a label */
                g->kind = kind_of(g->method);
        if (g->kind == KIND_GENERIC) {
                r = group_make_tail(g);
                if (r < 0)
                        return r;
        }
        g->conns = calloc(g->n_conns, sizeof(Conn));
        g->workers = calloc(g->n_threads, sizeof(Worker));
        if (!g->conns || !g->workers)
                return -ENOMEM;
        for (unsigned i = 0; i < g->n_conns; i++) {
                g->conns[i] = (Conn) { .fd = -EBADF, .index = i };
                randombytes_buf(&g->conns[i].rng, sizeof(uint32_t));
                g->conns[i].rng |= 1;   /* xorshift32 never leaves 0 */
        }
        for (unsigned i = 0; i < g->n_threads; i++) {
                g->workers[i] = (Worker) { .group = g, .epfd = -EBADF };
                g->workers[i].conns = calloc(g->n_conns / g->n_threads + 1, sizeof(Conn *));
                if (!g->workers[i].conns)
                        return -ENOMEM;
        }
        for (unsigned i = 0; i < g->n_conns; i++) {
                Conn *c = &g->conns[i];
                Worker *w = &g->workers[i % g->n_threads];

                r = unix_connect(g->socket_path, &c->fd);
                if (r < 0) {
                        fprintf(stderr, "Cannot connect to %s: %s\n", g->socket_path, strerror(-r));
                        return r;
                }
                set_timeouts(c->fd, SETUP_TIMEOUT_SEC);
                c->worker = w;
                w->conns[w->n_conns++] = c;
        }
        return 0;
}

static int create_publisher(const char *socket_path, char **ret) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL, *error = NULL;
        _cleanup_(closep) int fd = -EBADF;
        const char *id;
        char name[64];
        int r;

        r = unix_connect(socket_path, &fd);
        if (r < 0)
                return r;
        set_timeouts(fd, SETUP_TIMEOUT_SEC);
        snprintf(name, sizeof(name), "idm-bench %d", (int) getpid());
        params = json_pack("{s:s}", "name", name);
        if (!params)
                return -ENOMEM;
        r = rpc_call(fd, "createPublisher", params, &result, &error);
        if (r == -EREMOTEIO) {
                char key[128];

                error_key(error, key, sizeof(key));
                fprintf(stderr, "createPublisher failed (%s): run as root or a member of idmd's admin group, "
                        "or pass --publisher-id.\n", key);
                return r;
        }
        if (r < 0)
                return r;
        id = json_string_value(json_object_get(result, "publisherId"));
        if (!id)
                return -EBADMSG;
        *ret = strdup(id);
        return *ret ? 0 : -ENOMEM;
}

/* Registers one customer per connection (pipelined over all connections; 429 and 503 are
 * retried a second later). Each connection keeps the refresh token and the JWT that registration
 * returns (KIND_REFRESH, KIND_MIX and KIND_JWT use them; the JWT is good for [tokens] access_ttl,
 * 15 minutes by default). */
static int group_register(Group *g) {
        _cleanup_free_ bool *done = NULL;
        unsigned char rnd[4];
        char tag[9];
        unsigned left = g->n_conns;

        done = calloc(g->n_conns, sizeof(bool));
        if (!done)
                return -ENOMEM;
        randombytes_buf(rnd, sizeof(rnd));
        sodium_bin2hex(tag, sizeof(tag), rnd, sizeof(rnd));
        for (unsigned i = 0; i < g->n_conns; i++)
                if (asprintf(&g->conns[i].email, "bench-%d-%s-%u@example.com", (int) getpid(), tag, i) < 0)
                        return -ENOMEM;

        for (unsigned round = 0; left > 0; round++) {
                if (round >= SETUP_ROUNDS) {
                        fprintf(stderr, "Registration still refused after %u rounds.\n", round);
                        return -EBUSY;
                }
                if (round > 0)
                        sleep(1);
                for (unsigned i = 0; i < g->n_conns; i++) {
                        _cleanup_(json_decrefp) json_t *params = NULL;
                        int r;

                        if (done[i])
                                continue;
                        params = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
                                           "email", g->conns[i].email, "password", g->password,
                                           "publisherId", g->publisher_id, "locale", "en_US",
                                           "country", "US", "currency", "USD");
                        if (!params)
                                return -ENOMEM;
                        r = rpc_send(g->conns[i].fd, 0, "registerCustomer", params);
                        if (r < 0)
                                return r;
                }
                for (unsigned i = 0; i < g->n_conns; i++) {
                        _cleanup_(json_decrefp) json_t *reply = NULL;
                        json_t *error, *result;
                        const char *token, *jwt;
                        int r;

                        if (done[i])
                                continue;
                        r = rpc_recv(g->conns[i].fd, &reply);
                        if (r < 0) {
                                fprintf(stderr, "registerCustomer: %s\n", strerror(-r));
                                return r;
                        }
                        error = json_object_get(reply, "error");
                        if (error) {
                                json_int_t code = json_integer_value(json_object_get(error, "code"));
                                char key[128];

                                if (code == 429 || code == 503)
                                        continue;
                                error_key(error, key, sizeof(key));
                                fprintf(stderr, "registerCustomer failed: %s\n", key);
                                return -EREMOTEIO;
                        }
                        result = json_object_get(reply, "result");
                        token = json_string_value(json_object_get(result, "refreshToken"));
                        jwt = json_string_value(json_object_get(result, "jwt"));
                        if (!token || !jwt)
                                return -EBADMSG;
                        g->conns[i].token = strdup(token);
                        g->conns[i].jwt = strdup(jwt);
                        if (!g->conns[i].token || !g->conns[i].jwt)
                                return -ENOMEM;
                        done[i] = true;
                        left--;
                }
        }
        return 0;
}

static int group_prepare(Group *g) {
        if (g->kind == KIND_GENERIC)
                return 0;
        if (!g->publisher_id)
                return -EINVAL;
        return group_register(g);
}

/* Connects every group, then prepares every one (registrations, hashing): all set-up is done
 * before the first window, so that it never overlaps a measurement. */
static int groups_set_up(Group *const *groups, size_t n) {
        int r = 0;

        for (size_t i = 0; r >= 0 && i < n; i++)
                r = group_connect(groups[i]);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = group_prepare(groups[i]);
        return r;
}

/* Switches the connections to non-blocking and starts the threads; they wait for t_start. */
static int group_start(Group *g, uint64_t t_start, uint64_t warmup, uint64_t duration) {
        g->t_start = t_start;
        g->t_measure = t_start + warmup;
        g->t_end = g->t_measure + duration;

        for (unsigned i = 0; i < g->n_threads; i++) {
                Worker *w = &g->workers[i];
                int r;

                w->epfd = epoll_create1(EPOLL_CLOEXEC);
                if (w->epfd < 0)
                        return -errno;
                for (unsigned j = 0; j < w->n_conns; j++) {
                        Conn *c = w->conns[j];
                        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

                        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
                                return -errno;
                        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                                return -errno;
                }
                r = pthread_create(&w->thread, NULL, worker_main, w);
                if (r != 0)
                        return -r;
                w->started = true;
        }
        return 0;
}

static int group_join(Group *g) {
        int failure = 0;

        for (unsigned i = 0; i < g->n_threads; i++) {
                Worker *w = &g->workers[i];

                if (w->started) {
                        (void) pthread_join(w->thread, NULL);
                        w->started = false;
                }
                if (w->failure < 0 && failure == 0)
                        failure = w->failure;
        }
        if (failure < 0)
                fprintf(stderr, "A load thread failed: %s\n", strerror(-failure));
        return failure;
}

typedef struct GroupResult {
        uint64_t ok, errors, dead;
        double throughput;              /* successful replies per second inside the window */
        double p50, p99, max;
        double op_throughput[_MIX_OP_MAX], op_p50[_MIX_OP_MAX], op_p99[_MIX_OP_MAX];  /* KIND_MIX */
        json_t *json;
} GroupResult;

/* KIND_MIX: {"getCustomer": {ok, errors, throughput, latency_us}, ...} over the window. */
static int group_result_by_method(Group *g, double window, GroupResult *ret, json_t **ret_json) {
        _cleanup_(json_decrefp) json_t *by = json_object();

        if (!by)
                return -ENOMEM;
        for (unsigned k = 0; k < _MIX_OP_MAX; k++) {
                _cleanup_(samples_done) Samples all = {};
                uint64_t ok = 0, err = 0;
                json_t *j;

                for (unsigned i = 0; i < g->n_threads; i++) {
                        if (samples_append(&all, &g->workers[i].op_samples[k]) < 0)
                                return -ENOMEM;
                        ok += g->workers[i].op_ok[k];
                        err += g->workers[i].op_errors[k];
                }
                j = json_pack("{s:I, s:I, s:i, s:f, s:o}",
                              "ok", (json_int_t) ok,
                              "errors", (json_int_t) err,
                              "weight", (int) g->weights[k],
                              "throughput", round1(window > 0 ? (double) ok / window : 0),
                              "latency_us", latency_json(&all));   /* sorts the samples */
                if (!j || json_object_set_new(by, mix_op_method[k], j) < 0)
                        return -ENOMEM;
                ret->op_throughput[k] = window > 0 ? (double) ok / window : 0;
                ret->op_p50[k] = quantile_usec(&all, 0.50);
                ret->op_p99[k] = quantile_usec(&all, 0.99);
        }
        *ret_json = TAKE_PTR(by);
        return 0;
}

static int group_result(Group *g, GroupResult *ret) {
        _cleanup_(samples_done) Samples all = {};
        _cleanup_(errors_done) Errors errors = {};
        uint64_t ok = 0, err = 0, dead = 0, warm = 0, late = 0;
        double window = (double) (g->t_end - g->t_measure) / (double) NSEC_PER_SEC;
        json_t *lat;

        for (unsigned i = 0; i < g->n_threads; i++) {
                Worker *w = &g->workers[i];

                if (samples_append(&all, &w->samples) < 0)
                        return -ENOMEM;
                for (size_t j = 0; j < w->error_counts.n; j++)
                        if (errors_add(&errors, w->error_counts.v[j].key, w->error_counts.v[j].n) < 0)
                                return -ENOMEM;
                ok += w->ok;
                err += w->errors;
                dead += w->dead;
                warm += w->warmup_replies;
                late += w->late_replies;
        }
        lat = latency_json(&all);
        *ret = (GroupResult) {
                .ok = ok,
                .errors = err,
                .dead = dead,
                .throughput = window > 0 ? (double) ok / window : 0,
                .p50 = quantile_usec(&all, 0.50),
                .p99 = quantile_usec(&all, 0.99),
                .max = all.n ? (double) all.v[all.n - 1] / 1000.0 : 0,
        };
        ret->json = json_pack("{s:s, s:i, s:i, s:f, s:f, s:I, s:I, s:I, s:f, s:o, s:o, s:I, s:I, s:I}",
                              "method", g->method,
                              "connections", (int) g->n_conns,
                              "threads", (int) g->n_threads,
                              "rate_per_connection", g->interval_nsec ? round1((double) NSEC_PER_SEC / (double) g->interval_nsec) : 0.0,
                              "window_s", window,
                              "replies", (json_int_t) (ok + err),
                              "ok", (json_int_t) ok,
                              "errors", (json_int_t) err,
                              "throughput", round1(ret->throughput),
                              "latency_us", lat,
                              "errors_by_code", errors_json(&errors),
                              "dead_connections", (json_int_t) dead,
                              "warmup_replies", (json_int_t) warm,
                              "late_replies", (json_int_t) late);
        if (!ret->json)
                return -ENOMEM;
        if (g->kind == KIND_MIX) {
                json_t *by = NULL;
                int r = group_result_by_method(g, window, ret, &by);

                if (r < 0 || json_object_set_new(ret->json, "by_method", by) < 0)
                        return r < 0 ? r : -ENOMEM;
        }
        return 0;
}

static void print_json(json_t *j) {
        _cleanup_free_ char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12));

        if (s)
                printf("%s\n", s);
        fflush(stdout);
}

/* ---- options ---- */

typedef struct Options {
        const char *socket_path;
        const char *method, *params;
        unsigned connections, threads;
        double duration, warmup, rate;
        pid_t pid;
        const char *publisher_id, *password;

        const char *read_method, *read_params, *write_method, *write_params;
        unsigned read_connections, write_connections, read_threads;
        double read_rate;
        unsigned weights[_MIX_OP_MAX];

        size_t reply_size;
        const char *dir;
        const char *records_per_txn;
        size_t record_size;
        unsigned long long opslimit;
        uint64_t memlimit;
        double wait;
        const char *conninfo;
} Options;

/* The server-side columns for the window [a, b] of a load: RSS, CPU time, CPU per request. */
static json_t *server_json(pid_t pid, ProcSample before, ProcSample a, ProcSample b, uint64_t requests) {
        if (pid <= 0 || !before.valid || !a.valid || !b.valid)
                return json_null();
        double cpu = b.cpu_sec - a.cpu_sec, loop = b.loop_cpu_sec - a.loop_cpu_sec, sys = b.sys_sec - a.sys_sec;
        /* /proc counts CPU time in clock ticks (10 ms): per-request figures need many requests. */
        return json_pack("{s:i, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}",
                         "pid", (int) pid,
                         "rss_before_kib", (json_int_t) before.rss_kib,
                         "rss_window_start_kib", (json_int_t) a.rss_kib,
                         "rss_after_kib", (json_int_t) b.rss_kib,
                         "cpu_s", round(cpu * 100) / 100,
                         "sys_cpu_s", round(sys * 100) / 100,
                         "loop_cpu_s", round(loop * 100) / 100,
                         "cpu_us_per_req", requests ? round1(cpu * 1e6 / (double) requests) : 0.0,
                         "sys_cpu_us_per_req", requests ? round1(sys * 1e6 / (double) requests) : 0.0,
                         "loop_cpu_us_per_req", requests ? round1(loop * 1e6 / (double) requests) : 0.0);
}

/* Runs groups[0..n) over one window while sampling the server and the client at its edges. */
typedef struct Window {
        ProcSample a, b;
        double client_cpu;
} Window;

static int run_groups(Group **groups, size_t n, const Options *o, Window *ret) {
        uint64_t t0 = now_nsec() + 50 * NSEC_PER_MSEC;
        uint64_t warmup = sec_to_nsec(o->warmup), duration = sec_to_nsec(o->duration);
        double c0;
        int r = 0, k;

        for (size_t i = 0; i < n; i++) {
                r = group_start(groups[i], t0, warmup, duration);
                if (r < 0)
                        break;
        }
        if (r >= 0) {
                sleep_until(t0 + warmup);
                ret->a = proc_sample(o->pid);
                c0 = self_cpu_sec();
                sleep_until(t0 + warmup + duration);
                ret->b = proc_sample(o->pid);
                ret->client_cpu = self_cpu_sec() - c0;
        }
        for (size_t i = 0; i < n; i++) {
                k = group_join(groups[i]);
                if (k < 0 && r >= 0)
                        r = k;
        }
        return r;
}

static void human_group(const GroupResult *res) {
        fprintf(stderr, "%.0f req/s, p50 %.0f µs, p99 %.0f µs, max %.0f µs, %" PRIu64 " errors",
                res->throughput, res->p50, res->p99, res->max, res->errors);
        if (res->dead)
                fprintf(stderr, ", %" PRIu64 " connections lost", res->dead);
}

static void human_server(json_t *server) {
        if (!json_is_object(server))
                return;
        fprintf(stderr, "; idmd RSS %" JSON_INTEGER_FORMAT " -> %" JSON_INTEGER_FORMAT " KiB, %.1f µs CPU/req "
                "(%.1f in the kernel, %.1f on the event loop)",
                json_integer_value(json_object_get(server, "rss_before_kib")),
                json_integer_value(json_object_get(server, "rss_after_kib")),
                json_real_value(json_object_get(server, "cpu_us_per_req")),
                json_real_value(json_object_get(server, "sys_cpu_us_per_req")),
                json_real_value(json_object_get(server, "loop_cpu_us_per_req")));
}

/* ---- load ---- */

static int need_publisher(const Options *o, const char *method, char **publisher_id) {
        if (kind_of(method) == KIND_GENERIC || *publisher_id)
                return 0;
        if (o->publisher_id) {
                *publisher_id = strdup(o->publisher_id);
                return *publisher_id ? 0 : -ENOMEM;
        }
        return create_publisher(o->socket_path, publisher_id);
}

/* The CPU time of a thread so far, in seconds (0 if it cannot be read). */
static double thread_cpu_sec(pthread_t thread) {
        struct timespec ts;
        clockid_t cid;

        if (pthread_getcpuclockid(thread, &cid) != 0 || clock_gettime(cid, &ts) < 0)
                return 0;
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* cmd_load_on() against the in-process echo server: also what the server thread spent. */
typedef struct EchoServer EchoServer;
static json_t *echo_server_json(EchoServer *s, double cpu0, uint64_t answered0);
static double echo_server_cpu(EchoServer *s);
static uint64_t echo_server_answered(EchoServer *s);

static int cmd_load_on(const Options *o, const char *bench, const char *socket_path, EchoServer *echo) {
        _cleanup_free_ char *publisher = NULL;
        _cleanup_(json_decrefp) json_t *out = NULL;
        Group g = {
                .label = bench,
                .socket_path = socket_path,
                .method = o->method,
                .params = o->params,
                .password = o->password,
                .n_conns = o->connections,
                .n_threads = o->threads,
                .interval_nsec = o->rate > 0 ? (uint64_t) ((double) NSEC_PER_SEC / o->rate) : 0,
        };
        Group *groups[] = { &g };
        GroupResult res = {};
        ProcSample before;
        Window win = {};
        json_t *server, *echo_json = NULL;
        double echo_cpu0 = echo ? echo_server_cpu(echo) : 0;
        uint64_t echo_answered0 = echo ? echo_server_answered(echo) : 0;
        int r;

        before = proc_sample(o->pid);
        r = need_publisher(o, o->method, &publisher);
        if (r < 0)
                goto finish;
        g.publisher_id = publisher;
        r = groups_set_up(groups, 1);
        if (r < 0)
                goto finish;
        r = run_groups(groups, 1, o, &win);
        if (r < 0)
                goto finish;
        r = group_result(&g, &res);
        if (r < 0)
                goto finish;

        server = server_json(o->pid, before, win.a, win.b, res.ok + res.errors);
        if (echo)
                echo_json = echo_server_json(echo, echo_cpu0, echo_answered0);
        out = TAKE_PTR(res.json);
        if (echo_json && json_object_set_new(out, "echo_server", echo_json) < 0) {
                json_decref(server);
                r = -ENOMEM;
                goto finish;
        }
        if (json_object_set_new(out, "bench", json_string(bench)) < 0 ||
            json_object_set(out, "server", server) < 0 ||
            json_object_set_new(out, "client_cpu_s", json_real(round(win.client_cpu * 100) / 100)) < 0 ||
            json_object_set_new(out, "warmup_s", json_real(o->warmup)) < 0) {
                json_decref(server);
                r = -ENOMEM;
                goto finish;
        }
        json_decref(server);
        print_json(out);

        fprintf(stderr, "%s %s, %u connections / %u threads, %.1f s: ", bench, g.method, g.n_conns,
                g.n_threads, o->duration);
        human_group(&res);
        human_server(server);
        if (echo_json)
                fprintf(stderr, "; echo server %.1f µs CPU/req",
                        json_real_value(json_object_get(echo_json, "cpu_us_per_req")));
        fprintf(stderr, "; client CPU %.2f s\n", win.client_cpu);
finish:
        group_free(&g);
        return r;
}

static int cmd_load(const Options *o) {
        if (!o->socket_path || !o->method) {
                fprintf(stderr, "load needs --socket and --method.\n");
                return -EINVAL;
        }
        return cmd_load_on(o, "load", o->socket_path, NULL);
}

/* ---- mixed: a read client alone, then under a write load ---- */

static int cmd_mixed(const Options *o) {
        _cleanup_free_ char *publisher = NULL;
        _cleanup_(json_decrefp) json_t *out = NULL;
        Group read_alone = {
                .label = "read-alone",
                .socket_path = o->socket_path,
                .method = o->read_method,
                .params = o->read_params,
                .password = o->password,
                .n_conns = o->read_connections,
                .n_threads = o->read_threads,
                .interval_nsec = o->read_rate > 0 ? (uint64_t) ((double) NSEC_PER_SEC / o->read_rate) : 0,
        };
        Group read_loaded = read_alone, write = {
                .label = "write",
                .socket_path = o->socket_path,
                .method = o->write_method,
                .params = o->write_params,
                .password = o->password,
                .n_conns = o->write_connections,
                .n_threads = o->threads,
        };
        Group *alone[] = { &read_alone }, *both[] = { &write, &read_loaded };
        GroupResult ra = {}, rl = {}, rw = {};
        ProcSample before;
        Window wa = {}, wl = {};
        json_t *server_alone, *server_loaded;
        double ratio;
        int r;

        if (!o->socket_path || !o->write_method) {
                fprintf(stderr, "mixed needs --socket and --write-method.\n");
                return -EINVAL;
        }
        read_loaded.label = "read-under-load";

        before = proc_sample(o->pid);
        r = need_publisher(o, o->write_method, &publisher);
        if (r >= 0)
                r = need_publisher(o, o->read_method, &publisher);
        if (r < 0)
                goto finish;
        read_alone.publisher_id = read_loaded.publisher_id = write.publisher_id = publisher;

        /* Everything is set up before the first window, so that set-up (registrations, hashing)
         * never overlaps a measurement. */
        r = groups_set_up((Group *const[]) { &read_alone, &read_loaded, &write }, 3);
        if (r < 0)
                goto finish;

        r = run_groups(alone, 1, o, &wa);
        if (r >= 0)
                r = group_result(&read_alone, &ra);
        if (r < 0)
                goto finish;
        r = run_groups(both, 2, o, &wl);
        if (r >= 0)
                r = group_result(&read_loaded, &rl);
        if (r >= 0)
                r = group_result(&write, &rw);
        if (r < 0)
                goto finish;

        ratio = ra.p99 > 0 ? rl.p99 / ra.p99 : 0;
        server_alone = server_json(o->pid, before, wa.a, wa.b, ra.ok + ra.errors);
        server_loaded = server_json(o->pid, before, wl.a, wl.b, rl.ok + rl.errors + rw.ok + rw.errors);
        out = json_pack("{s:s, s:{s:o, s:o}, s:o, s:f, s:f, s:f, s:o, s:o}",
                        "bench", "mixed",
                        "read", "alone", ra.json, "under_load", rl.json,
                        "write", rw.json,
                        "read_p99_alone_us", round1(ra.p99),
                        "read_p99_under_load_us", round1(rl.p99),
                        "p99_ratio", round(ratio * 100) / 100,
                        "server_alone", server_alone,
                        "server_under_load", server_loaded);
        if (!out) {
                r = -ENOMEM;
                goto finish;
        }
        print_json(out);

        fprintf(stderr, "mixed: %s alone: ", o->read_method);
        human_group(&ra);
        fprintf(stderr, "\nmixed: %s under a %u-connection %s load: ", o->read_method, write.n_conns, o->write_method);
        human_group(&rl);
        fprintf(stderr, "\nmixed: the %s load itself: ", o->write_method);
        human_group(&rw);
        fprintf(stderr, "\nmixed: read p99 under load / alone = %.2f\n", ratio);
finish:
        group_free(&read_alone);
        group_free(&read_loaded);
        group_free(&write);
        return r;
}

/* ---- mix: token reads, refreshes and logins blended on every connection ---- */

/* "90,9,1": the weights of getCustomer, refreshToken and login; at least one above zero. */
static int parse_weights(const char *s, unsigned ret[static _MIX_OP_MAX]) {
        unsigned v[_MIX_OP_MAX], total = 0;
        const char *p = s;

        for (unsigned i = 0; i < _MIX_OP_MAX; i++) {
                char *end;
                unsigned long x;

                errno = 0;
                x = strtoul(p, &end, 10);
                if (errno != 0 || end == p || x > 1000000 || *end != (i + 1 < _MIX_OP_MAX ? ',' : 0))
                        return -EINVAL;
                v[i] = (unsigned) x;
                total += v[i];
                p = end + 1;
        }
        if (total == 0)
                return -EINVAL;
        memcpy(ret, v, sizeof(v));
        return 0;
}

/* Two windows with the same number of connections, each connection with its own registered
 * customer (so its own JWT, refresh token and password): first token reads alone (getCustomer
 * with the JWT), then the blend of --weights. Reports each method's throughput and latency in
 * the blend, and the reads' p99 in the blend against their p99 alone. */
static int cmd_mix(const Options *o) {
        _cleanup_free_ char *publisher = NULL;
        _cleanup_(json_decrefp) json_t *out = NULL;
        Group alone = {
                .label = "reads-alone",
                .socket_path = o->socket_path,
                .method = "mix",
                .kind = KIND_MIX,
                .password = o->password,
                .n_conns = o->connections,
                .n_threads = o->threads,
                .weights = { [MIX_READ] = 1 },
        }, blend = alone;
        Group *g_alone[] = { &alone }, *g_blend[] = { &blend };
        GroupResult ra = {}, rb = {};
        ProcSample before;
        Window wa = {}, wb = {};
        json_t *server_alone, *server_blend;
        double ratio;
        int r;

        if (!o->socket_path) {
                fprintf(stderr, "mix needs --socket.\n");
                return -EINVAL;
        }
        blend.label = "mix";
        memcpy(blend.weights, o->weights, sizeof(blend.weights));

        before = proc_sample(o->pid);
        if (o->publisher_id)
                publisher = strdup(o->publisher_id);
        else {
                r = create_publisher(o->socket_path, &publisher);
                if (r < 0)
                        return r;
        }
        if (!publisher)
                return -ENOMEM;
        alone.publisher_id = blend.publisher_id = publisher;

        /* All set-up (two registrations per connection pair, hashing) before the first window. */
        r = groups_set_up((Group *const[]) { &alone, &blend }, 2);
        if (r < 0)
                goto finish;

        r = run_groups(g_alone, 1, o, &wa);
        if (r >= 0)
                r = group_result(&alone, &ra);
        if (r < 0)
                goto finish;
        r = run_groups(g_blend, 1, o, &wb);
        if (r >= 0)
                r = group_result(&blend, &rb);
        if (r < 0)
                goto finish;

        ratio = ra.op_p99[MIX_READ] > 0 ? rb.op_p99[MIX_READ] / ra.op_p99[MIX_READ] : 0;
        server_alone = server_json(o->pid, before, wa.a, wa.b, ra.ok + ra.errors);
        server_blend = server_json(o->pid, before, wb.a, wb.b, rb.ok + rb.errors);
        out = json_pack("{s:s, s:[i,i,i], s:o, s:o, s:f, s:f, s:f, s:o, s:o}",
                        "bench", "mix",
                        "weights", (int) blend.weights[MIX_READ], (int) blend.weights[MIX_REFRESH],
                        (int) blend.weights[MIX_LOGIN],
                        "reads_alone", ra.json,
                        "mix", rb.json,
                        "read_p99_alone_us", round1(ra.op_p99[MIX_READ]),
                        "read_p99_mix_us", round1(rb.op_p99[MIX_READ]),
                        "p99_ratio", round(ratio * 100) / 100,
                        "server_alone", server_alone,
                        "server_mix", server_blend);
        ra.json = rb.json = NULL;
        if (!out) {
                r = -ENOMEM;
                goto finish;
        }
        print_json(out);

        fprintf(stderr, "mix: getCustomer alone, %u connections: ", alone.n_conns);
        human_group(&ra);
        fprintf(stderr, "\nmix: %u,%u,%u of getCustomer,refreshToken,login, %u connections: ",
                blend.weights[MIX_READ], blend.weights[MIX_REFRESH], blend.weights[MIX_LOGIN], blend.n_conns);
        human_group(&rb);
        for (unsigned k = 0; k < _MIX_OP_MAX; k++)
                fprintf(stderr, "\nmix:   %-12s %8.1f/s, p50 %.0f µs, p99 %.0f µs", mix_op_method[k],
                        rb.op_throughput[k], rb.op_p50[k], rb.op_p99[k]);
        fprintf(stderr, "\nmix: getCustomer p99 in the mix / alone = %.2f\n", ratio);
finish:
        json_decref(ra.json);
        json_decref(rb.json);
        group_free(&alone);
        group_free(&blend);
        return r;
}

/* ---- floor-echo: an in-process newline echo server with one thread, like idmd's loop ---- */

typedef struct EchoConn {
        int fd;
        char *buf;
        size_t n, size;
        struct EchoConn *next;
} EchoConn;

struct EchoServer {
        char *dir, *path;
        int listen_fd, epfd, stop_fd;
        size_t reply_size;
        char *pad;                      /* REPLY_MAX bytes of 'x' */
        char *out;                      /* the reply being written */
        pthread_t thread;
        bool started;
        EchoConn *conns;
        int failure;
        _Atomic uint64_t answered;      /* request lines answered */
};

static void echo_conn_free(EchoServer *s, EchoConn *c) {
        for (EchoConn **p = &s->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        (void) epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        safe_close(c->fd);
        free(c->buf);
        free(c);
}

/* Answers one request line with a canned reply of reply_size bytes carrying the request's id. */
static int echo_reply(EchoServer *s, EchoConn *c, const char *line, size_t n) {
        static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":", mid[] = ",\"result\":{\"pad\":\"", tail[] = "\"}}\n";
        const char *id = memmem(line, n, "\"id\":", 5);
        size_t idlen = 0, fixed, padlen, len = 0;
        char *out = s->out;

        if (id) {
                id += 5;
                idlen = strspn(id, "0123456789");
                if (id + idlen > line + n)
                        idlen = 0;
        }
        if (idlen == 0) {
                id = "null";
                idlen = 4;
        }
        fixed = strlen(head) + idlen + strlen(mid) + strlen(tail);
        padlen = s->reply_size > fixed ? s->reply_size - fixed : 0;
        if (fixed + padlen > REPLY_MAX)
                padlen = REPLY_MAX - fixed;
        atomic_fetch_add_explicit(&s->answered, 1, memory_order_relaxed);
        memcpy(out + len, head, strlen(head)); len += strlen(head);
        memcpy(out + len, id, idlen); len += idlen;
        memcpy(out + len, mid, strlen(mid)); len += strlen(mid);
        memcpy(out + len, s->pad, padlen); len += padlen;
        memcpy(out + len, tail, strlen(tail)); len += strlen(tail);

        for (size_t off = 0; off < len;) {
                ssize_t k = send(c->fd, out + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                /* A closed-loop client never fills the socket; be correct anyway. */
                                fd_set set;

                                FD_ZERO(&set);
                                FD_SET(c->fd, &set);
                                (void) select(c->fd + 1, NULL, &set, NULL, NULL);
                                continue;
                        }
                        return -errno;
                }
                off += (size_t) k;
        }
        return 0;
}

static int echo_readable(EchoServer *s, EchoConn *c) {
        for (;;) {
                size_t start = 0;
                ssize_t k;
                char *nl;

                if (c->size - c->n < 4096) {
                        char *b = realloc(c->buf, c->size ? c->size * 2 : 16384);

                        if (!b)
                                return -ENOMEM;
                        c->buf = b;
                        c->size = c->size ? c->size * 2 : 16384;
                }
                k = recv(c->fd, c->buf + c->n, c->size - c->n, MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        echo_conn_free(s, c);
                        return 0;
                }
                if (k == 0) {
                        echo_conn_free(s, c);
                        return 0;
                }
                c->n += (size_t) k;
                while ((nl = memchr(c->buf + start, '\n', c->n - start))) {
                        size_t len = (size_t) (nl - (c->buf + start));

                        if (echo_reply(s, c, c->buf + start, len) < 0) {
                                echo_conn_free(s, c);
                                return 0;
                        }
                        start += len + 1;
                }
                memmove(c->buf, c->buf + start, c->n - start);
                c->n -= start;
        }
}

static int echo_loop(EchoServer *s) {
        struct epoll_event ev[64];

        for (;;) {
                int n = epoll_wait(s->epfd, ev, (int) ELEMENTSOF(ev), -1);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (int i = 0; i < n; i++) {
                        void *p = ev[i].data.ptr;

                        if (p == &s->stop_fd)
                                return 0;
                        if (p == &s->listen_fd) {
                                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                                EchoConn *c;

                                if (fd < 0)
                                        continue;
                                c = calloc(1, sizeof(EchoConn));
                                if (!c) {
                                        safe_close(fd);
                                        return -ENOMEM;
                                }
                                c->fd = fd;
                                c->next = s->conns;
                                s->conns = c;
                                struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
                                if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
                                        echo_conn_free(s, c);
                                        return -errno;
                                }
                                continue;
                        }
                        int r = echo_readable(s, p);
                        if (r < 0)
                                return r;
                }
        }
}

static void *echo_main(void *p) {
        EchoServer *s = p;

        s->failure = echo_loop(s);
        return NULL;
}

static void echo_stop(EchoServer *s) {
        if (s->started) {
                uint64_t one = 1;

                if (write(s->stop_fd, &one, sizeof(one)) < 0) {}
                (void) pthread_join(s->thread, NULL);
                s->started = false;
        }
        while (s->conns)
                echo_conn_free(s, s->conns);
        safe_close(s->listen_fd);
        safe_close(s->epfd);
        safe_close(s->stop_fd);
        if (s->path)
                (void) unlink(s->path);
        if (s->dir)
                (void) rmdir(s->dir);
        free(s->path);
        free(s->dir);
        free(s->pad);
        free(s->out);
        *s = (EchoServer) { .listen_fd = -EBADF, .epfd = -EBADF, .stop_fd = -EBADF };
}

static int echo_start(EchoServer *s, const char *parent, size_t reply_size) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct epoll_event e;
        int r;

        *s = (EchoServer) { .listen_fd = -EBADF, .epfd = -EBADF, .stop_fd = -EBADF, .reply_size = reply_size };
        s->pad = malloc(REPLY_MAX);
        s->out = malloc(REPLY_MAX);
        if (!s->pad || !s->out)
                return -ENOMEM;
        memset(s->pad, 'x', REPLY_MAX);
        if (asprintf(&s->dir, "%s/idm-bench-echo-XXXXXX", parent) < 0) {
                s->dir = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(s->dir)) {
                r = -errno;
                free(s->dir);
                s->dir = NULL;
                return r;
        }
        if (asprintf(&s->path, "%s/socket", s->dir) < 0) {
                s->path = NULL;
                return -ENOMEM;
        }
        if (strlen(s->path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, s->path);

        s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s->listen_fd < 0)
                return -errno;
        if (bind(s->listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        if (listen(s->listen_fd, SOMAXCONN) < 0)
                return -errno;
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        s->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (s->epfd < 0 || s->stop_fd < 0)
                return -errno;
        e = (struct epoll_event) { .events = EPOLLIN, .data.ptr = &s->listen_fd };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &e) < 0)
                return -errno;
        e = (struct epoll_event) { .events = EPOLLIN, .data.ptr = &s->stop_fd };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->stop_fd, &e) < 0)
                return -errno;
        r = pthread_create(&s->thread, NULL, echo_main, s);
        if (r != 0)
                return -r;
        s->started = true;
        return 0;
}

static double echo_server_cpu(EchoServer *s) {
        return s->started ? thread_cpu_sec(s->thread) : 0;
}

static uint64_t echo_server_answered(EchoServer *s) {
        return atomic_load_explicit(&s->answered, memory_order_relaxed);
}

/* The server thread's CPU per request answered since cpu0/answered0 (set-up, warm-up, window
 * and drain alike: both figures cover the same span). */
static json_t *echo_server_json(EchoServer *s, double cpu0, uint64_t answered0) {
        double cpu = echo_server_cpu(s) - cpu0;
        uint64_t n = echo_server_answered(s) - answered0;

        return json_pack("{s:f, s:I, s:f}",
                         "cpu_s", round(cpu * 1000) / 1000,
                         "answered", (json_int_t) n,
                         "cpu_us_per_req", n ? round1(cpu * 1e6 / (double) n) : 0.0);
}

static int cmd_floor_echo(const Options *o) {
        Options eo = *o;
        EchoServer s;
        int r;

        r = echo_start(&s, o->dir, o->reply_size);
        if (r < 0) {
                fprintf(stderr, "Cannot start the echo server in %s: %s\n", o->dir, strerror(-r));
                echo_stop(&s);
                return r;
        }
        eo.method = o->method ?: "getServerInfo";
        if (kind_of(eo.method) != KIND_GENERIC) {
                fprintf(stderr, "floor-echo sends a stateless request; --method %s needs idmd.\n", eo.method);
                echo_stop(&s);
                return -EINVAL;
        }
        eo.pid = 0;
        r = cmd_load_on(&eo, "floor-echo", s.path, &s);
        echo_stop(&s);
        return r;
}

/* ---- floor-lmdb: durable commits with idmd's environment flags ---- */

static void remove_env_dir(const char *dir) {
        char path[PATH_MAX];

        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        (void) unlink(path);
        snprintf(path, sizeof(path), "%s/lock.mdb", dir);
        (void) unlink(path);
        (void) rmdir(dir);
}

static void mdb_env_closep(MDB_env **e) {
        if (*e)
                mdb_env_close(*e);
}

static int lmdb_floor(const Options *o, unsigned per_txn, json_t **ret) {
        _cleanup_(mdb_env_closep) MDB_env *env = NULL;
        _cleanup_(samples_done) Samples commits = {};
        _cleanup_free_ char *dir = NULL, *value = NULL;
        _cleanup_free_ unsigned char *raw = NULL;
        uint64_t t0, t_measure, t_end, records = 0, txns = 0, file_bytes = 0;
        bool map_full = false;
        char path[PATH_MAX];
        struct stat st;
        MDB_txn *txn;
        MDB_dbi dbi;
        int k, r = 0;

        if (asprintf(&dir, "%s/idm-bench-lmdb-XXXXXX", o->dir) < 0) {
                dir = NULL;
                return -ENOMEM;
        }
        if (!mkdtemp(dir))
                return -errno;

        /* A record shaped like idmd's token records: compact JSON, o->record_size bytes. */
        value = malloc(o->record_size + 1);
        raw = malloc((size_t) per_txn * 32);
        if (!value || !raw) {
                r = -ENOMEM;
                goto finish;
        }
        memset(value, 'x', o->record_size);
        value[o->record_size] = 0;
        if (o->record_size >= 16) {
                memcpy(value, "{\"pad\":\"", 8);
                memcpy(value + o->record_size - 2, "\"}", 2);
        }

        /* store.c store_open(): maxdbs, map size, MDB_NOTLS and nothing else (synchronous). */
        k = mdb_env_create(&env);
        if (k == MDB_SUCCESS)
                k = mdb_env_set_maxdbs(env, LMDB_MAXDBS);
        if (k == MDB_SUCCESS)
                k = mdb_env_set_mapsize(env, (size_t) LMDB_MAP_SIZE);
        if (k == MDB_SUCCESS)
                k = mdb_env_open(env, dir, MDB_NOTLS, 0600);
        if (k == MDB_SUCCESS)
                k = mdb_txn_begin(env, NULL, 0, &txn);
        if (k == MDB_SUCCESS) {
                k = mdb_dbi_open(txn, "tokens", MDB_CREATE, &dbi);
                if (k == MDB_SUCCESS)
                        k = mdb_txn_commit(txn);
                else
                        mdb_txn_abort(txn);
        }
        if (k != MDB_SUCCESS) {
                fprintf(stderr, "LMDB in %s: %s\n", dir, mdb_strerror(k));
                r = -EIO;
                goto finish;
        }

        t0 = now_nsec();
        t_measure = t0 + sec_to_nsec(o->warmup);
        t_end = t_measure + sec_to_nsec(o->duration);
        for (;;) {
                uint64_t a = now_nsec(), b;

                if (a >= t_end)
                        break;
                /* Keys are hashes in idmd (token_hash()): random, like these. One getrandom() per
                 * transaction, so that the floor measures LMDB and not the random source. */
                randombytes_buf(raw, (size_t) per_txn * 32);
                k = mdb_txn_begin(env, NULL, 0, &txn);
                for (unsigned i = 0; k == MDB_SUCCESS && i < per_txn; i++) {
                        char key[64];
                        MDB_val kv, vv = { .mv_size = o->record_size, .mv_data = value };

                        sodium_bin2base64(key, sizeof(key), raw + (size_t) i * 32, 32,
                                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
                        kv = (MDB_val) { .mv_size = strlen(key), .mv_data = key };
                        k = mdb_put(txn, dbi, &kv, &vv, 0);
                        if (k != MDB_SUCCESS)
                                mdb_txn_abort(txn);
                }
                if (k == MDB_SUCCESS)
                        k = mdb_txn_commit(txn);    /* fdatasync of the pages, then the meta page */
                if (k == MDB_MAP_FULL) {
                        map_full = true;
                        break;
                }
                if (k != MDB_SUCCESS) {
                        fprintf(stderr, "LMDB commit: %s\n", mdb_strerror(k));
                        r = -EIO;
                        goto finish;
                }
                b = now_nsec();
                if (a >= t_measure) {
                        if (samples_add(&commits, b - a) < 0) {
                                r = -ENOMEM;
                                goto finish;
                        }
                        txns++;
                        records += per_txn;
                }
        }
        if (map_full)
                t_end = now_nsec();

        snprintf(path, sizeof(path), "%s/data.mdb", dir);
        if (stat(path, &st) == 0)
                file_bytes = (uint64_t) st.st_size;
        {
                double window = (double) (t_end - t_measure) / (double) NSEC_PER_SEC;

                *ret = json_pack("{s:s, s:i, s:i, s:f, s:I, s:I, s:f, s:f, s:o, s:I, s:b}",
                                 "bench", "floor-lmdb",
                                 "records_per_txn", (int) per_txn,
                                 "record_bytes", (int) o->record_size,
                                 "window_s", window,
                                 "txns", (json_int_t) txns,
                                 "records", (json_int_t) records,
                                 "records_per_s", round1(window > 0 ? (double) records / window : 0),
                                 "txns_per_s", round1(window > 0 ? (double) txns / window : 0),
                                 "commit_latency_us", latency_json(&commits),
                                 "file_bytes", (json_int_t) file_bytes,
                                 "map_full", map_full);
                if (!*ret)
                        r = -ENOMEM;
        }
finish:
        if (env) {
                mdb_env_close(env);
                env = NULL;
        }
        remove_env_dir(dir);
        return r;
}

static int cmd_floor_lmdb(const Options *o) {
        _cleanup_free_ char *list = strdup(o->records_per_txn);
        char *save = NULL;

        if (!list)
                return -ENOMEM;
        for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                _cleanup_(json_decrefp) json_t *out = NULL;
                char *end;
                unsigned long k;
                int r;

                errno = 0;
                k = strtoul(t, &end, 10);
                if (errno != 0 || *end || k == 0 || k > 1000000) {
                        fprintf(stderr, "Invalid --records-per-txn '%s'.\n", t);
                        return -EINVAL;
                }
                r = lmdb_floor(o, (unsigned) k, &out);
                if (r < 0) {
                        fprintf(stderr, "floor-lmdb in %s failed: %s\n", o->dir, strerror(-r));
                        return r;
                }
                print_json(out);
                json_t *lat = json_object_get(out, "commit_latency_us");
                fprintf(stderr, "floor-lmdb %lu record(s)/txn of %zu bytes: %.0f records/s (%.0f commits/s), "
                        "commit p50 %.0f µs, p99 %.0f µs%s\n", k, o->record_size,
                        json_real_value(json_object_get(out, "records_per_s")),
                        json_real_value(json_object_get(out, "txns_per_s")),
                        json_real_value(json_object_get(lat, "p50")),
                        json_real_value(json_object_get(lat, "p99")),
                        json_is_true(json_object_get(out, "map_full")) ? " (stopped: map full)" : "");
        }
        return 0;
}

/* ---- floors of one operation on T threads (floor-argon2, floor-ed25519) ---- */

/* One operation: 0 when it succeeded. */
typedef int (*FloorOp)(const void *arg);

typedef struct FloorWorker {
        pthread_t thread;
        FloorOp op;
        const void *arg;
        uint64_t t_measure, t_end;
        Samples samples;
        uint64_t done, failed;
} FloorWorker;

static void *floor_main(void *p) {
        FloorWorker *w = p;

        for (;;) {
                uint64_t a = now_nsec(), b;
                int k;

                if (a >= w->t_end)
                        break;
                k = w->op(w->arg);
                b = now_nsec();
                if (b >= w->t_measure && b < w->t_end) {
                        if (k != 0)
                                w->failed++;
                        else
                                w->done++;
                        if (samples_add(&w->samples, b - a) < 0)
                                break;
                }
        }
        return NULL;
}

/* Runs op(arg) in a loop on o->threads threads for o->warmup + o->duration seconds; the
 * operations that ended inside the window are counted into *ret_done / *ret_failed and their
 * latencies into all. -ENOMEM, or pthread_create()'s error. */
static int floor_run(const Options *o, FloorOp op, const void *arg, Samples *all, uint64_t *ret_done,
                     uint64_t *ret_failed) {
        _cleanup_free_ FloorWorker *w = NULL;
        unsigned n = o->threads, started = 0;
        uint64_t t0;
        int r = 0;

        *ret_done = *ret_failed = 0;
        w = calloc(n, sizeof(FloorWorker));
        if (!w)
                return -ENOMEM;
        t0 = now_nsec();
        for (unsigned i = 0; i < n; i++) {
                w[i] = (FloorWorker) {
                        .op = op,
                        .arg = arg,
                        .t_measure = t0 + sec_to_nsec(o->warmup),
                        .t_end = t0 + sec_to_nsec(o->warmup) + sec_to_nsec(o->duration),
                };
                r = -pthread_create(&w[i].thread, NULL, floor_main, &w[i]);
                if (r < 0)
                        break;
                started++;
        }
        for (unsigned i = 0; i < started; i++) {
                (void) pthread_join(w[i].thread, NULL);
                *ret_done += w[i].done;
                *ret_failed += w[i].failed;
                if (r >= 0 && samples_append(all, &w[i].samples) < 0)
                        r = -ENOMEM;
                samples_done(&w[i].samples);
        }
        return r;
}

/* floor-argon2: bare verification at idmd's cost. */
static int argon2_verify_op(const void *arg) {
        return crypto_pwhash_str_verify(arg, BENCH_PASSWORD, strlen(BENCH_PASSWORD));
}

static int cmd_floor_argon2(const Options *o) {
        _cleanup_(json_decrefp) json_t *out = NULL;
        _cleanup_(samples_done) Samples all = {};
        char hash[crypto_pwhash_STRBYTES];
        uint64_t verified, failed;
        double window;
        int r;

        if (o->opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN || o->opslimit > crypto_pwhash_argon2id_OPSLIMIT_MAX ||
            o->memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN || o->memlimit > crypto_pwhash_argon2id_MEMLIMIT_MAX) {
                fprintf(stderr, "Argon2id cost out of libsodium's range.\n");
                return -EINVAL;
        }
        if (crypto_pwhash_str_alg(hash, BENCH_PASSWORD, strlen(BENCH_PASSWORD), o->opslimit, (size_t) o->memlimit,
                                  crypto_pwhash_ALG_ARGON2ID13) != 0)
                return -ENOMEM;

        r = floor_run(o, argon2_verify_op, hash, &all, &verified, &failed);
        if (r < 0)
                return r;

        window = o->duration;
        out = json_pack("{s:s, s:I, s:I, s:i, s:f, s:I, s:I, s:f, s:o}",
                        "bench", "floor-argon2",
                        "opslimit", (json_int_t) o->opslimit,
                        "memlimit", (json_int_t) o->memlimit,
                        "threads", (int) o->threads,
                        "window_s", window,
                        "verified", (json_int_t) verified,
                        "failed", (json_int_t) failed,
                        "per_s", round1((double) verified / window),
                        "latency_us", latency_json(&all));
        if (!out)
                return -ENOMEM;
        print_json(out);
        fprintf(stderr, "floor-argon2 opslimit %llu, memlimit %" PRIu64 " KiB, %u threads: %.1f verifications/s, "
                "p50 %.0f µs, p99 %.0f µs%s\n", o->opslimit, o->memlimit / 1024, o->threads, (double) verified / window,
                quantile_usec(&all, 0.5), quantile_usec(&all, 0.99), failed ? " (VERIFICATIONS FAILED)" : "");
        return failed ? -EPROTO : 0;
}

/* floor-ed25519: bare signature verification of a JWT-sized message. */

#define ED25519_MESSAGE_BYTES 470       /* base64url(header) "." base64url(claims) of an idmd JWT */

typedef struct Ed25519Message {
        uint8_t pk[crypto_sign_PUBLICKEYBYTES], sig[crypto_sign_BYTES], msg[ED25519_MESSAGE_BYTES];
} Ed25519Message;

static int ed25519_verify_op(const void *arg) {
        const Ed25519Message *m = arg;

        return crypto_sign_verify_detached(m->sig, m->msg, sizeof(m->msg), m->pk);
}

/* What jwt_verify() in idmd/tokens.c pays for the signature alone, on T threads: the ceiling of
 * JWT-authenticated reads that verify every token. */
static int cmd_floor_ed25519(const Options *o) {
        _cleanup_(json_decrefp) json_t *out = NULL;
        _cleanup_(samples_done) Samples all = {};
        uint8_t sk[crypto_sign_SECRETKEYBYTES];
        Ed25519Message m;
        uint64_t verified, failed;
        double window;
        int r;

        crypto_sign_keypair(m.pk, sk);
        randombytes_buf(m.msg, sizeof m.msg);
        crypto_sign_detached(m.sig, NULL, m.msg, sizeof m.msg, sk);
        sodium_memzero(sk, sizeof sk);

        r = floor_run(o, ed25519_verify_op, &m, &all, &verified, &failed);
        if (r < 0)
                return r;

        window = o->duration;
        out = json_pack("{s:s, s:i, s:i, s:f, s:I, s:I, s:f, s:o}",
                        "bench", "floor-ed25519",
                        "message_bytes", ED25519_MESSAGE_BYTES,
                        "threads", (int) o->threads,
                        "window_s", window,
                        "verified", (json_int_t) verified,
                        "failed", (json_int_t) failed,
                        "per_s", round1((double) verified / window),
                        "latency_us", latency_json(&all));
        if (!out)
                return -ENOMEM;
        print_json(out);
        fprintf(stderr, "floor-ed25519 %d-byte message, %u threads: %.0f verifications/s, p50 %.1f µs, p99 %.1f µs%s\n",
                ED25519_MESSAGE_BYTES, o->threads, (double) verified / window, quantile_usec(&all, 0.5),
                quantile_usec(&all, 0.99), failed ? " (VERIFICATIONS FAILED)" : "");
        return failed ? -EPROTO : 0;
}

/* ---- probe ---- */

/* ---- floor-pg: one-row INSERT + COMMIT round trips ---- */

static void pq_finishp(PGconn **c) {
        if (*c)
                PQfinish(*c);
}

/* 0 if res (freed here) is a command's success, else -EIO, said on stderr as what failed. */
static int pg_result_check(PGconn *c, PGresult *res, const char *what) {
        int r = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -EIO;

        if (r < 0)
                fprintf(stderr, "floor-pg: %s: %s", what, PQerrorMessage(c));
        PQclear(res);
        return r;
}

static int pg_exec(PGconn *c, const char *sql) {
        return pg_result_check(c, PQexec(c, sql), sql);
}

/* What a durable one-row write costs on the database idmd would use: a prepared INSERT of a
 * random 32-byte key and a record_size value (bytea, as idm_records holds them) in autocommit,
 * so each is one round trip and one commit (WAL flush), on one connection, one after another. */
static int cmd_floor_pg(const Options *o) {
        _cleanup_(pq_finishp) PGconn *c = NULL;
        _cleanup_(samples_done) Samples commits = {};
        _cleanup_(json_decrefp) json_t *out = NULL;
        _cleanup_free_ char *value = NULL;
        uint64_t t0, t_measure, t_end, n = 0;
        json_t *lat;
        int r;

        if (!o->conninfo) {
                fprintf(stderr, "floor-pg needs --conninfo.\n");
                return -EINVAL;
        }
        c = PQconnectdb(o->conninfo);
        if (PQstatus(c) != CONNECTION_OK) {
                fprintf(stderr, "floor-pg: cannot connect: %s", PQerrorMessage(c));
                return -EIO;
        }
        value = malloc(o->record_size);
        if (!value)
                return -ENOMEM;
        memset(value, 'x', o->record_size);
        r = pg_exec(c, "SET client_min_messages = warning");
        if (r >= 0)
                r = pg_exec(c, "DROP TABLE IF EXISTS idm_bench_floor");
        if (r >= 0)
                r = pg_exec(c, "CREATE TABLE idm_bench_floor (key bytea PRIMARY KEY, value bytea NOT NULL)");
        if (r >= 0)
                r = pg_result_check(c, PQprepare(c, "ins", "INSERT INTO idm_bench_floor VALUES ($1, $2)", 2, NULL),
                                    "prepare");
        if (r < 0)
                return r;

        t0 = now_nsec();
        t_measure = t0 + sec_to_nsec(o->warmup);
        t_end = t_measure + sec_to_nsec(o->duration);
        for (;;) {
                unsigned char key[32];
                const char *values[2] = { (const char *) key, value };
                const int lengths[2] = { sizeof key, (int) o->record_size }, formats[2] = { 1, 1 };
                uint64_t a = now_nsec(), b;

                if (a >= t_end)
                        break;
                randombytes_buf(key, sizeof key);
                r = pg_result_check(c, PQexecPrepared(c, "ins", 2, values, lengths, formats, 1), "insert");
                if (r < 0)
                        return r;
                b = now_nsec();
                if (a >= t_measure) {
                        if (samples_add(&commits, b - a) < 0)
                                return -ENOMEM;
                        n++;
                }
        }
        (void) pg_exec(c, "DROP TABLE idm_bench_floor");

        {
                double window = (double) (t_end - t_measure) / (double) NSEC_PER_SEC;

                out = json_pack("{s:s, s:i, s:f, s:I, s:f, s:o, s:i}",
                                "bench", "floor-pg",
                                "record_bytes", (int) o->record_size,
                                "window_s", window,
                                "commits", (json_int_t) n,
                                "commits_per_s", round1(window > 0 ? (double) n / window : 0),
                                "commit_latency_us", latency_json(&commits),
                                "server_version", PQserverVersion(c));
        }
        if (!out)
                return -ENOMEM;
        print_json(out);
        lat = json_object_get(out, "commit_latency_us");
        fprintf(stderr, "floor-pg one-row INSERT + COMMIT of %zu bytes: %.0f commits/s, p50 %.0f us, p99 %.0f us\n",
                o->record_size, json_real_value(json_object_get(out, "commits_per_s")),
                json_number_value(json_object_get(lat, "p50")), json_number_value(json_object_get(lat, "p99")));
        return 0;
}

static int cmd_probe(const Options *o) {
        static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"getServerInfo\"}\n";
        _cleanup_(json_decrefp) json_t *out = NULL, *reply = NULL;
        uint64_t deadline = now_nsec() + sec_to_nsec(o->wait);
        char buf[65536];
        size_t n = 0;
        int r;

        if (!o->socket_path) {
                fprintf(stderr, "probe needs --socket.\n");
                return -EINVAL;
        }
        for (;;) {
                _cleanup_(closep) int fd = -EBADF;

                r = unix_connect(o->socket_path, &fd);
                if (r >= 0) {
                        set_timeouts(fd, 10);
                        r = send_all(fd, req, strlen(req));
                        n = 0;
                        while (r >= 0 && (n == 0 || buf[n - 1] != '\n')) {
                                ssize_t k = recv(fd, buf + n, sizeof(buf) - n, 0);

                                if (k <= 0 || n + (size_t) k >= sizeof(buf))
                                        r = k < 0 ? -errno : -ECONNRESET;
                                else
                                        n += (size_t) k;
                        }
                        if (r >= 0)
                                break;
                }
                if (now_nsec() >= deadline) {
                        fprintf(stderr, "No answer from %s: %s\n", o->socket_path, strerror(-r));
                        return r;
                }
                usleep(20000);
        }
        reply = json_loadb(buf, n, 0, NULL);
        if (!reply || !json_object_get(reply, "result")) {
                fprintf(stderr, "Unexpected reply from %s: %.*s", o->socket_path, (int) n, buf);
                return -EBADMSG;
        }
        out = json_pack("{s:s, s:I, s:I, s:O}", "bench", "probe",
                        "request_bytes", (json_int_t) strlen(req), "reply_bytes", (json_int_t) n,
                        "version", json_object_get(json_object_get(reply, "result"), "version") ?: json_null());
        if (!out)
                return -ENOMEM;
        print_json(out);
        fprintf(stderr, "probe: %s answers getServerInfo (%zu-byte reply)\n", o->socket_path, n);
        return 0;
}

/* ---- command line ---- */

static void help(void) {
        printf("Usage: idm-bench COMMAND [OPTIONS]\n\n"
               "Measures idmd, and the floors it is compared with, on this machine.\n"
               "Each command prints one JSON line on stdout and one human line on stderr.\n\n"
               "Commands:\n"
               "  load --socket PATH --method M [--params JSON] [--connections N] [--threads T]\n"
               "       [--duration S] [--warmup S] [--rate R] [--pid PID]\n"
               "        N closed-loop connections (one request in flight each) over T threads.\n"
               "        refreshToken: each connection registers its own customer and rotates its\n"
               "        own refresh token; login: each connection logs its own customer in;\n"
               "        getCustomer: each connection registers its own customer and reads it with\n"
               "        its JWT.\n"
               "  mixed --socket PATH --write-method M [--write-connections N] [--threads T]\n"
               "       [--read-method getServerInfo] [--read-connections 1] [--read-rate R]\n"
               "       [--duration S] [--warmup S] [--pid PID]\n"
               "        The read client alone, then while the write load runs.\n"
               "  mix --socket PATH [--weights 90,9,1] [--connections N] [--threads T] [--duration S]\n"
               "       [--warmup S] [--pid PID]\n"
               "        Token reads (getCustomer with a JWT) alone, then blended with refreshToken and\n"
               "        login by weight on every connection: throughput and latency per method.\n"
               "  floor-echo [--connections N] [--threads T] [--duration S] [--reply-size B] [--dir DIR]\n"
               "        The same client loop against an in-process one-thread echo server.\n"
               "  floor-lmdb [--records-per-txn K[,K...]] [--record-size B] [--duration S] [--dir DIR]\n"
               "        Durable LMDB commits with idmd's environment flags.\n"
               "  floor-argon2 [--opslimit N] [--memlimit BYTES[K|M|G]] [--threads T] [--duration S]\n"
               "        Bare crypto_pwhash_str_verify() at idmd's default cost.\n"
               "  floor-ed25519 [--threads T] [--duration S]\n"
               "        Bare crypto_sign_verify_detached() of a JWT-sized message, on T threads.\n"
               "  floor-pg --conninfo CONNINFO [--record-size B] [--duration S]\n"
               "        One-row INSERT + COMMIT round trips on one connection (table idm_bench_floor,\n"
               "        made and dropped in the connection's schema).\n"
               "  probe --socket PATH [--wait S]\n"
               "        Waits until idmd answers getServerInfo.\n\n"
               "Options:\n"
               "     --publisher-id ID   Use this publisher for set-up instead of creating one (createPublisher\n"
               "                         needs root or idmd's admin group)\n"
               "     --password PW       The benchmark customers' password (default %s)\n"
               "     --rate R            Requests per second per connection (default 0: closed loop)\n"
               "  -h --help              Show this help\n\n"
               "Defaults: 32 connections, 2 threads, 5 s after a 1 s warm-up; floor-lmdb 1,1000 records\n"
               "of 300 bytes per transaction; floor-argon2 opslimit %d, memlimit 19M, %d threads (idmd's\n"
               "defaults); --dir $TMPDIR or /tmp.\n", BENCH_PASSWORD, ARGON2_OPSLIMIT_DEFAULT,
               ARGON2_THREADS_DEFAULT);
}

static int parse_unsigned(const char *s, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int parse_seconds(const char *s, double *ret) {
        char *end;
        double v;

        errno = 0;
        v = strtod(s, &end);
        if (errno != 0 || end == s || *end || !(v >= 0) || v > 86400)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_size(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;
        uint64_t mult = 1;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno != 0 || end == s)
                return -EINVAL;
        if (*end == 'K' || *end == 'k')
                mult = 1024;
        else if (*end == 'M')
                mult = 1024 * 1024;
        else if (*end == 'G')
                mult = 1024 * 1024 * 1024;
        else if (*end)
                return -EINVAL;
        if (mult > 1 && end[1])
                return -EINVAL;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

int main(int argc, char *argv[]) {
        enum {
                ARG_SOCKET = 0x100, ARG_METHOD, ARG_PARAMS, ARG_CONNECTIONS, ARG_THREADS, ARG_DURATION,
                ARG_WARMUP, ARG_RATE, ARG_PID, ARG_PUBLISHER_ID, ARG_PASSWORD, ARG_READ_METHOD,
                ARG_READ_PARAMS, ARG_WRITE_METHOD, ARG_WRITE_PARAMS, ARG_READ_CONNECTIONS,
                ARG_WRITE_CONNECTIONS, ARG_READ_THREADS, ARG_READ_RATE, ARG_REPLY_SIZE, ARG_DIR,
                ARG_RECORDS_PER_TXN, ARG_RECORD_SIZE, ARG_OPSLIMIT, ARG_MEMLIMIT, ARG_WAIT, ARG_WEIGHTS,
                ARG_CONNINFO,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "method", required_argument, NULL, ARG_METHOD },
                { "params", required_argument, NULL, ARG_PARAMS },
                { "connections", required_argument, NULL, ARG_CONNECTIONS },
                { "threads", required_argument, NULL, ARG_THREADS },
                { "duration", required_argument, NULL, ARG_DURATION },
                { "warmup", required_argument, NULL, ARG_WARMUP },
                { "rate", required_argument, NULL, ARG_RATE },
                { "pid", required_argument, NULL, ARG_PID },
                { "publisher-id", required_argument, NULL, ARG_PUBLISHER_ID },
                { "password", required_argument, NULL, ARG_PASSWORD },
                { "read-method", required_argument, NULL, ARG_READ_METHOD },
                { "read-params", required_argument, NULL, ARG_READ_PARAMS },
                { "write-method", required_argument, NULL, ARG_WRITE_METHOD },
                { "write-params", required_argument, NULL, ARG_WRITE_PARAMS },
                { "read-connections", required_argument, NULL, ARG_READ_CONNECTIONS },
                { "write-connections", required_argument, NULL, ARG_WRITE_CONNECTIONS },
                { "read-threads", required_argument, NULL, ARG_READ_THREADS },
                { "read-rate", required_argument, NULL, ARG_READ_RATE },
                { "reply-size", required_argument, NULL, ARG_REPLY_SIZE },
                { "dir", required_argument, NULL, ARG_DIR },
                { "records-per-txn", required_argument, NULL, ARG_RECORDS_PER_TXN },
                { "record-size", required_argument, NULL, ARG_RECORD_SIZE },
                { "opslimit", required_argument, NULL, ARG_OPSLIMIT },
                { "memlimit", required_argument, NULL, ARG_MEMLIMIT },
                { "wait", required_argument, NULL, ARG_WAIT },
                { "weights", required_argument, NULL, ARG_WEIGHTS },
                { "conninfo", required_argument, NULL, ARG_CONNINFO },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        Options o = {
                .connections = 32,
                .threads = 2,
                .duration = 5,
                .warmup = 1,
                .password = BENCH_PASSWORD,
                .read_method = "getServerInfo",
                .read_connections = 1,
                .write_connections = 32,
                .read_threads = 1,
                .reply_size = 960,
                .dir = getenv("TMPDIR") ?: "/tmp",
                .records_per_txn = "1,1000",
                .record_size = 300,
                .opslimit = ARGON2_OPSLIMIT_DEFAULT,
                .memlimit = ARGON2_MEMLIMIT_DEFAULT,
                .wait = 10,
                .weights = { [MIX_READ] = 90, [MIX_REFRESH] = 9, [MIX_LOGIN] = 1 },
        };
        const char *command;
        unsigned u;
        uint64_t size = 0;
        int c, r = 0;

        if (argc < 2 || streq(argv[1], "-h") || streq(argv[1], "--help")) {
                help();
                return argc < 2 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        command = argv[1];
        argv[1] = argv[0];
        argc--;
        argv++;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        o.socket_path = optarg;
                        break;
                case ARG_METHOD:
                        o.method = optarg;
                        break;
                case ARG_PARAMS:
                        o.params = optarg;
                        break;
                case ARG_CONNECTIONS:
                        r = parse_unsigned(optarg, 1, 100000, &o.connections);
                        break;
                case ARG_THREADS:
                        r = parse_unsigned(optarg, 1, 1024, &o.threads);
                        break;
                case ARG_DURATION:
                        r = parse_seconds(optarg, &o.duration);
                        if (r >= 0 && o.duration <= 0)
                                r = -EINVAL;
                        break;
                case ARG_WARMUP:
                        r = parse_seconds(optarg, &o.warmup);
                        break;
                case ARG_RATE:
                        r = parse_seconds(optarg, &o.rate);
                        break;
                case ARG_PID:
                        r = parse_unsigned(optarg, 1, INT_MAX, &u);
                        o.pid = (pid_t) u;
                        break;
                case ARG_PUBLISHER_ID:
                        o.publisher_id = optarg;
                        break;
                case ARG_PASSWORD:
                        o.password = optarg;
                        break;
                case ARG_READ_METHOD:
                        o.read_method = optarg;
                        break;
                case ARG_READ_PARAMS:
                        o.read_params = optarg;
                        break;
                case ARG_WRITE_METHOD:
                        o.write_method = optarg;
                        break;
                case ARG_WRITE_PARAMS:
                        o.write_params = optarg;
                        break;
                case ARG_READ_CONNECTIONS:
                        r = parse_unsigned(optarg, 1, 100000, &o.read_connections);
                        break;
                case ARG_WRITE_CONNECTIONS:
                        r = parse_unsigned(optarg, 1, 100000, &o.write_connections);
                        break;
                case ARG_READ_THREADS:
                        r = parse_unsigned(optarg, 1, 1024, &o.read_threads);
                        break;
                case ARG_READ_RATE:
                        r = parse_seconds(optarg, &o.read_rate);
                        break;
                case ARG_REPLY_SIZE:
                        r = parse_unsigned(optarg, 1, REPLY_MAX - 1, &u);
                        o.reply_size = u;
                        break;
                case ARG_DIR:
                        o.dir = optarg;
                        break;
                case ARG_RECORDS_PER_TXN:
                        o.records_per_txn = optarg;
                        break;
                case ARG_RECORD_SIZE:
                        r = parse_unsigned(optarg, 1, 65536, &u);
                        o.record_size = u;
                        break;
                case ARG_OPSLIMIT:
                        r = parse_unsigned(optarg, 1, UINT_MAX, &u);
                        o.opslimit = u;
                        break;
                case ARG_MEMLIMIT:
                        r = parse_size(optarg, &size);
                        o.memlimit = size;
                        break;
                case ARG_WAIT:
                        r = parse_seconds(optarg, &o.wait);
                        break;
                case ARG_WEIGHTS:
                        r = parse_weights(optarg, o.weights);
                        break;
                case ARG_CONNINFO:
                        o.conninfo = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
                if (r < 0) {
                        fprintf(stderr, "Invalid value for --%s: '%s'.\n", options[c - ARG_SOCKET].name, optarg);
                        return EXIT_FAILURE;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "Unexpected argument '%s'.\n", argv[optind]);
                return EXIT_FAILURE;
        }
        if (!o.password[0] || strpbrk(o.password, "\"\\")) {
                fprintf(stderr, "--password must be non-empty without quotes or backslashes.\n");
                return EXIT_FAILURE;
        }

        if (sodium_init() < 0) {
                fprintf(stderr, "Cannot initialise libsodium.\n");
                return EXIT_FAILURE;
        }
        (void) signal(SIGPIPE, SIG_IGN);

        if (streq(command, "load"))
                r = cmd_load(&o);
        else if (streq(command, "mixed"))
                r = cmd_mixed(&o);
        else if (streq(command, "mix"))
                r = cmd_mix(&o);
        else if (streq(command, "floor-echo"))
                r = cmd_floor_echo(&o);
        else if (streq(command, "floor-lmdb"))
                r = cmd_floor_lmdb(&o);
        else if (streq(command, "floor-ed25519"))
                r = cmd_floor_ed25519(&o);
        else if (streq(command, "floor-argon2"))
                r = cmd_floor_argon2(&o);
        else if (streq(command, "floor-pg"))
                r = cmd_floor_pg(&o);
        else if (streq(command, "probe"))
                r = cmd_probe(&o);
        else {
                fprintf(stderr, "Unknown command '%s'. See idm-bench --help.\n", command);
                return EXIT_FAILURE;
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
