/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of idm-client, the transport of pam_idm and idmctl (client/idm-client.c), against
 * small fake servers forked from the test: the socket checks (missing, not a socket, not
 * listening, wrong owner, wrong peer, unsafe directories and symlinks on the way, the caller's own
 * uid trusted only when asked), the deadlines (silent server, full backlog), size caps both ways,
 * malformed replies, retryAfter bounds, error objects handed out whole, MSG_NOSIGNAL, the
 * descriptor hygiene (above 2, CLOEXEC) and the JSON-RPC framing (params object, array or left
 * out). Needs root for the ownership cases (skipped otherwise).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "idm/protocol.h"
#include "client/idm-client.h"
#include "tests/unit/tests.h"

static char dir[] = "/tmp/test-pam-client-XXXXXX";
static char path[100];
static json_int_t retry_after = 42;

typedef enum Behaviour {
        SERVE_ECHO,             /* answer every request with {"echo": request} */
        SERVE_ERROR,            /* answer with a 423 account_locked error, retryAfter retry_after */
        SERVE_ERROR_ID_NULL,    /* a connection-level refusal: 429 with id null, then close */
        SERVE_WRONG_ID,
        SERVE_GARBAGE,
        SERVE_SILENT,           /* read, never answer */
        SERVE_CLOSE,            /* read the request, close without answering */
        SERVE_CLOSE_AT_ONCE,    /* close before reading anything */
        SERVE_HUGE,             /* a reply line longer than IDM_MAX_REPLY */
        SERVE_ERROR_NO_CODE,    /* an error object without a code */
} Behaviour;

static int listen_at(const char *p, int backlog) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        (void) unlink(p);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_OK(listen(fd, backlog));
        return fd;
}

static void write_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, s, n);

                if (k <= 0)
                        return;
                s += k;
                n -= (size_t) k;
        }
}

/* Reads one line from fd into a malloc'ed string (NULL at EOF). */
static char *read_line(int fd) {
        size_t size = 256, n = 0;
        char *b = malloc(size);

        for (;;) {
                char ch;
                ssize_t k = read(fd, &ch, 1);

                if (k <= 0) {
                        free(b);
                        return NULL;
                }
                if (ch == '\n') {
                        b[n] = '\0';
                        return b;
                }
                if (n + 2 > size)
                        b = realloc(b, size *= 2);
                b[n++] = ch;
        }
}

static void serve_connection(int cfd, Behaviour b) {
        char *line;

        if (b == SERVE_CLOSE_AT_ONCE)
                return;
        if (b == SERVE_ERROR_ID_NULL) {
                const char *s = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":429,\"message\":\"too many\","
                                "\"data\":{\"reason\":\"too_many_connections\"}}}\n";
                write_all(cfd, s, strlen(s));
                return;
        }
        while ((line = read_line(cfd))) {
                json_t *req = json_loads(line, 0, NULL), *reply = NULL;
                json_int_t id = json_integer_value(json_object_get(req, "id"));
                char *out = NULL;

                free(line);
                switch (b) {
                case SERVE_ECHO:
                        reply = json_pack("{s:s, s:I, s:{s:O}}", "jsonrpc", "2.0", "id", id, "result", "echo", req);
                        break;
                case SERVE_ERROR:
                        reply = json_pack("{s:s, s:I, s:{s:i, s:s, s:{s:s, s:I}}}", "jsonrpc", "2.0", "id", id, "error",
                                          "code", 423, "message", "locked", "data", "reason", "account_locked",
                                          "retryAfter", retry_after);
                        break;
                case SERVE_ERROR_NO_CODE:
                        reply = json_pack("{s:s, s:I, s:{s:s}}", "jsonrpc", "2.0", "id", id, "error", "message", "no code");
                        break;
                case SERVE_WRONG_ID:
                        reply = json_pack("{s:s, s:I, s:{}}", "jsonrpc", "2.0", "id", id + 7, "result");
                        break;
                case SERVE_GARBAGE:
                        write_all(cfd, "{\"jsonrpc\": nope\n", 17);
                        break;
                case SERVE_SILENT:
                        pause();
                        break;
                case SERVE_HUGE: {
                        size_t n = IDM_MAX_REPLY + 4096;
                        char *big = malloc(n);

                        memset(big, ' ', n);
                        write_all(cfd, big, n);
                        free(big);
                        pause();
                        break;
                }
                default:
                        json_decref(req);
                        return;
                }
                if (reply) {
                        out = json_dumps(reply, JSON_COMPACT);
                        write_all(cfd, out, strlen(out));
                        write_all(cfd, "\n", 1);
                        free(out);
                        json_decref(reply);
                }
                json_decref(req);
        }
}

/* Forks a server accepting connections on lfd; returns its pid. */
static pid_t serve(int lfd, Behaviour b) {
        pid_t parent = getpid(), pid = fork();

        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                /* Dies with the test, also when an assertion aborts it. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                        _exit(1);
                for (;;) {
                        int cfd = accept(lfd, NULL, NULL);

                        if (cfd < 0)
                                _exit(1);
                        serve_connection(cfd, b);
                        close(cfd);
                }
        }
        return pid;
}

static void stop(pid_t pid) {
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
}

static int connect_default(IdmClient *c, usec_t timeout) {
        return idm_client_connect(c, path, "idmd-test-no-such-user", 2 * USEC_PER_SEC, timeout);
}

TEST(missing) {
        IdmClient c = IDM_CLIENT_INIT;

        ASSERT_EQ(idm_client_connect(&c, "/tmp/test-pam-client-does-not-exist/socket", "idmd", USEC_PER_SEC,
                                     USEC_PER_SEC),
                  -ENOENT);
        ASSERT_EQ(c.fd, -EBADF);
        ASSERT_TRUE(strstr(c.error, "cannot access socket") != NULL);
        ASSERT_EQ(idm_client_connect(&c, "relative/socket", "idmd", USEC_PER_SEC, USEC_PER_SEC), -EINVAL);
}

TEST(not_a_socket) {
        IdmClient c = IDM_CLIENT_INIT;
        int fd;

        (void) unlink(path);
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        ASSERT_EQ(connect_default(&c, USEC_PER_SEC), -ENOTSOCK);
        (void) unlink(path);
}

TEST(not_listening) {
        IdmClient c = IDM_CLIENT_INIT;
        int lfd = listen_at(path, 1);

        close(lfd);     /* the file stays, nobody listens */
        ASSERT_EQ(connect_default(&c, USEC_PER_SEC), -ECONNREFUSED);
        (void) unlink(path);
}

TEST(wrong_owner) {
        IdmClient c = IDM_CLIENT_INIT;
        int lfd;
        pid_t pid;

        if (geteuid() != 0) {
                fprintf(stderr, "not root, skipped\n");
                return;
        }
        lfd = listen_at(path, 16);
        pid = serve(lfd, SERVE_ECHO);

        /* Owned by an unprivileged user that is not idmd's user. */
        ASSERT_OK(chown(path, 65534, 65534));
        ASSERT_EQ(connect_default(&c, USEC_PER_SEC), -EPERM);
        ASSERT_TRUE(strstr(c.error, "owned by uid 65534") != NULL);

        /* Owned by idmd's user (here: "nobody"), but the listener runs as root: peer mismatch. */
        ASSERT_EQ(idm_client_connect(&c, path, "nobody", USEC_PER_SEC, USEC_PER_SEC), -EPERM);
        ASSERT_TRUE(strstr(c.error, "runs as uid 0") != NULL);
        ASSERT_EQ(c.fd, -EBADF);

        stop(pid);
        close(lfd);
        (void) unlink(path);
}

TEST(echo) {
        IdmClient c = IDM_CLIENT_INIT;
        json_t *params = json_pack("{s:s, s:s}", "user", "alice@example.com", "password", "s3cret pass"), *result = NULL;
        IdmError e = {};
        int lfd = listen_at(path, 16), flags;
        pid_t pid = serve(lfd, SERVE_ECHO);

        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
        ASSERT_TRUE(c.fd > 2);
        flags = fcntl(c.fd, F_GETFD);
        ASSERT_TRUE(flags >= 0 && (flags & FD_CLOEXEC));

        for (int i = 1; i <= 3; i++) {
                json_t *req;

                ASSERT_EQ(idm_client_call(&c, "pamAuthenticate", params, &result, &e), 0);
                req = json_object_get(result, "echo");
                ASSERT_STREQ(json_string_value(json_object_get(req, "jsonrpc")), "2.0");
                ASSERT_STREQ(json_string_value(json_object_get(req, "method")), "pamAuthenticate");
                ASSERT_EQ(json_integer_value(json_object_get(req, "id")), i);
                ASSERT_TRUE(json_equal(json_object_get(req, "params"), params));
                json_wipe_and_decref(result);
                result = NULL;
        }

        /* json_wipe() overwrites string values in place. */
        json_wipe(params);
        ASSERT_EQ(json_string_value(json_object_get(params, "password"))[0], '\0');
        ASSERT_EQ(json_string_length(json_object_get(params, "password")), 11);
        json_decref(params);

        idm_client_close(&c);
        ASSERT_EQ(c.fd, -EBADF);
        ASSERT_TRUE(c.buf == NULL);
        idm_client_close(&c);   /* idempotent */
        stop(pid);
        close(lfd);
}

TEST(error_reply) {
        IdmClient c = IDM_CLIENT_INIT;
        json_t *params = json_object(), *result = NULL;
        IdmError e = {};
        int lfd = listen_at(path, 16);
        pid_t pid = serve(lfd, SERVE_ERROR);

        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
        ASSERT_EQ(idm_client_call(&c, "pamAuthenticate", params, &result, &e), -EREMOTEIO);
        ASSERT_TRUE(result == NULL);
        ASSERT_EQ(e.code, 423);
        ASSERT_STREQ(e.reason, "account_locked");
        ASSERT_STREQ(e.message, "locked");
        ASSERT_EQ(e.retry_after, 42);
        /* An error leaves the connection usable. */
        ASSERT_TRUE(c.fd >= 0);
        ASSERT_EQ(idm_client_call(&c, "pamAuthenticate", params, &result, &e), -EREMOTEIO);
        idm_client_close(&c);
        stop(pid);
        close(lfd);

        lfd = listen_at(path, 16);
        pid = serve(lfd, SERVE_ERROR_ID_NULL);
        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
        ASSERT_EQ(idm_client_call(&c, "pamAuthenticate", params, &result, &e), -EREMOTEIO);
        ASSERT_EQ(e.code, 429);
        ASSERT_STREQ(e.reason, "too_many_connections");
        ASSERT_EQ(e.retry_after, -1);
        idm_client_close(&c);
        stop(pid);
        close(lfd);
        json_decref(params);
}

/* Params as idmctl sends them: an array, or none at all; anything else is refused before sending,
 * as is a request longer than max_request, and the connection stays usable. */
TEST(params_shapes) {
        IdmClient c = IDM_CLIENT_INIT;
        json_t *array = json_pack("[s, i]", "s", 7), *big = json_object(), *text = json_string("not params");
        json_t *result = NULL, *req;
        char blob[201];
        IdmError e = {};
        int lfd = listen_at(path, 16);
        pid_t pid = serve(lfd, SERVE_ECHO);

        ASSERT_EQ(c.max_request, IDM_MAX_LINE_DEFAULT);
        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));

        ASSERT_OK(idm_client_call(&c, "getServerInfo", NULL, &result, NULL));
        req = json_object_get(result, "echo");
        ASSERT_STREQ(json_string_value(json_object_get(req, "method")), "getServerInfo");
        ASSERT_TRUE(json_object_get(req, "params") == NULL);
        json_wipe_and_decref(result);

        ASSERT_OK(idm_client_call(&c, "getSingleSignOnByCustomer", array, &result, &e));
        ASSERT_TRUE(json_equal(json_object_get(json_object_get(result, "echo"), "params"), array));
        json_wipe_and_decref(result);
        result = NULL;

        ASSERT_EQ(idm_client_call(&c, "x", text, &result, &e), -EINVAL);
        ASSERT_TRUE(c.fd >= 0);

        /* 200 bytes of params do not fit into 100; they do into the default. */
        c.max_request = 100;
        memset(blob, 'x', 200);
        blob[200] = '\0';
        json_object_set_new(big, "blob", json_string(blob));
        ASSERT_EQ(idm_client_call(&c, "x", big, &result, &e), -EINVAL);
        ASSERT_TRUE(strstr(c.error, "too large") != NULL);
        ASSERT_TRUE(result == NULL);
        ASSERT_TRUE(c.fd >= 0);
        c.max_request = IDM_MAX_LINE_DEFAULT;
        ASSERT_OK(idm_client_call(&c, "x", big, &result, &e));
        json_wipe_and_decref(result);

        idm_client_close(&c);
        ASSERT_EQ(c.max_request, IDM_MAX_LINE_DEFAULT);       /* settings outlive the connection */
        stop(pid);
        close(lfd);
        json_decref(array);
        json_decref(big);
        json_decref(text);
}

/* idm_client_call_full() hands out idmd's error object whole (idmctl prints data.param etc.),
 * also without an IdmError. */
TEST(error_object) {
        IdmClient c = IDM_CLIENT_INIT;
        json_t *result = NULL, *error = NULL;
        IdmError e = {};
        int lfd = listen_at(path, 16);
        pid_t pid = serve(lfd, SERVE_ERROR);

        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
        ASSERT_EQ(idm_client_call_full(&c, "login", NULL, &result, NULL, &error), -EREMOTEIO);
        ASSERT_TRUE(result == NULL);
        ASSERT_EQ(json_integer_value(json_object_get(error, "code")), 423);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(error, "data"), "reason")), "account_locked");
        ASSERT_STREQ(json_string_value(json_object_get(error, "message")), "locked");
        json_decref(error);
        ASSERT_EQ(idm_client_call_full(&c, "login", NULL, &result, &e, &error), -EREMOTEIO);
        ASSERT_EQ(e.code, 423);
        ASSERT_TRUE(json_is_object(error));
        json_decref(error);
        idm_client_close(&c);
        stop(pid);
        close(lfd);

        /* A success leaves *ret_error_object NULL. */
        lfd = listen_at(path, 16);
        pid = serve(lfd, SERVE_ECHO);
        error = json_null();            /* anything: it is overwritten */
        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
        ASSERT_OK(idm_client_call_full(&c, "x", NULL, &result, NULL, &error));
        ASSERT_TRUE(error == NULL);
        json_wipe_and_decref(result);
        idm_client_close(&c);
        stop(pid);
        close(lfd);
}

/* retryAfter beyond a year (up to json_int_t's maximum) is treated as absent. */
TEST(retry_after_clamped) {
        static const struct {
                json_int_t sent;
                long long got;
        } cases[] = {
                { 0, 0 },
                { 31536000, 31536000 },
                { 31536001, -1 },
                { INT64_MAX, -1 },
                { -5, -1 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                IdmClient c = IDM_CLIENT_INIT;
                json_t *params = json_object(), *result = NULL;
                IdmError e = {};
                int lfd;
                pid_t pid;

                retry_after = cases[i].sent;
                lfd = listen_at(path, 16);
                pid = serve(lfd, SERVE_ERROR);
                ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
                ASSERT_EQ(idm_client_call(&c, "pamAuthenticate", params, &result, &e), -EREMOTEIO);
                ASSERT_EQ(e.retry_after, cases[i].got);
                idm_client_close(&c);
                stop(pid);
                close(lfd);
                json_decref(params);
        }
        retry_after = 42;
}

/* Makes d (under dir) with owner and mode; returns its path in a static buffer. */
static const char *make_dir(const char *name, uid_t uid, mode_t mode) {
        static char d[160];

        snprintf(d, sizeof(d), "%s/%s", dir, name);
        ASSERT_OK(mkdir(d, 0700));
        ASSERT_OK(chown(d, uid, uid));
        ASSERT_OK(chmod(d, mode));
        return d;
}

/* Listens (as root) at dir/<sub>/socket and connects through via (a path to the same socket,
 * possibly through symlinks); returns idm_client_connect()'s result and leaves c->error. */
static int connect_through(const char *sub, const char *via, mode_t socket_mode, IdmClient *c) {
        char p[200];
        int lfd, r;
        pid_t pid;

        snprintf(p, sizeof(p), "%s/%s/socket", dir, sub);
        lfd = listen_at(p, 16);
        ASSERT_OK(chmod(p, socket_mode));
        pid = serve(lfd, SERVE_ECHO);
        r = idm_client_connect(c, via ?: p, "idmd-test-no-such-user", USEC_PER_SEC, USEC_PER_SEC);
        fprintf(stderr, "   %s: %d %s\n", via ?: p, r, c->error);
        idm_client_close(c);
        stop(pid);
        close(lfd);
        (void) unlink(p);
        return r;
}

TEST(unsafe_directories) {
        IdmClient c = IDM_CLIENT_INIT;
        char via[200], target[200];

        if (geteuid() != 0) {
                fprintf(stderr, "not root, skipped\n");
                return;
        }

        /* dir itself: root-owned below the root-owned sticky /tmp. */
        (void) make_dir("safe", 0, 0755);
        ASSERT_OK(connect_through("safe", NULL, 0666, &c));

        /* A directory owned by another unprivileged user, or writable by a group or by all. */
        (void) make_dir("nobody", 65534, 0755);
        ASSERT_EQ(connect_through("nobody", NULL, 0666, &c), -EPERM);
        ASSERT_TRUE(strstr(c.error, "/nobody' of socket") && strstr(c.error, "is owned by uid 65534"));
        (void) make_dir("group", 0, 0775);
        ASSERT_EQ(connect_through("group", NULL, 0666, &c), -EPERM);
        ASSERT_TRUE(strstr(c.error, "is writable by group or others (mode 0775)") != NULL);
        (void) make_dir("world", 0, 0777);
        ASSERT_EQ(connect_through("world", NULL, 0666, &c), -EPERM);

        /* A root-owned sticky directory (like /tmp) is fine when what is below it is safe. */
        (void) make_dir("sticky", 0, 01777);
        (void) make_dir("sticky/safe", 0, 0755);
        ASSERT_OK(connect_through("sticky/safe", NULL, 0666, &c));
        (void) make_dir("sticky/nobody", 65534, 0755);
        ASSERT_EQ(connect_through("sticky/nobody", NULL, 0666, &c), -EPERM);
        (void) make_dir("sticky/sticky", 0, 01777);
        ASSERT_EQ(connect_through("sticky/sticky", NULL, 0666, &c), -EPERM);
        /* A socket right in it: only if others cannot write to the socket. */
        ASSERT_EQ(connect_through("sticky", NULL, 0666, &c), -EPERM);
        ASSERT_TRUE(strstr(c.error, "writable by others in a world-writable directory") != NULL);
        ASSERT_OK(connect_through("sticky", NULL, 0755, &c));
        /* A sticky directory owned by someone else is just world-writable. */
        (void) make_dir("sticky-nobody", 65534, 01777);
        (void) make_dir("sticky-nobody/safe", 0, 0755);
        ASSERT_EQ(connect_through("sticky-nobody/safe", NULL, 0666, &c), -EPERM);

        /* Symlinks are followed and their targets checked: a root-owned link in a safe directory
         * to an unsafe one, and back to a safe one through "..". */
        snprintf(via, sizeof(via), "%s/to-nobody", dir);
        snprintf(target, sizeof(target), "%s/nobody", dir);
        ASSERT_OK(symlink(target, via));
        snprintf(via, sizeof(via), "%s/to-nobody/socket", dir);
        ASSERT_EQ(connect_through("nobody", via, 0666, &c), -EPERM);
        ASSERT_TRUE(strstr(c.error, "/nobody' of socket") != NULL);
        snprintf(via, sizeof(via), "%s/to-safe", dir);
        ASSERT_OK(symlink("sticky/../safe", via));
        snprintf(via, sizeof(via), "%s/to-safe/./socket", dir);
        ASSERT_OK(connect_through("safe", via, 0666, &c));
        snprintf(via, sizeof(via), "%s/to-nobody/../safe/socket", dir);
        ASSERT_EQ(connect_through("safe", via, 0666, &c), -EPERM);     /* the kernel goes through nobody/ */

        /* A symlink in a sticky directory, made by another user, to a safe directory. */
        snprintf(via, sizeof(via), "%s/sticky/link", dir);
        snprintf(target, sizeof(target), "%s/safe", dir);
        ASSERT_OK(symlink(target, via));
        ASSERT_OK(lchown(via, 65534, 65534));
        snprintf(via, sizeof(via), "%s/sticky/link/socket", dir);
        ASSERT_EQ(connect_through("safe", via, 0666, &c), -EPERM);
        ASSERT_TRUE(strstr(c.error, "symlink") && strstr(c.error, "is owned by uid 65534"));
        snprintf(via, sizeof(via), "%s/sticky/link", dir);
        ASSERT_OK(lchown(via, 0, 0));
        snprintf(via, sizeof(via), "%s/sticky/link/socket", dir);
        ASSERT_OK(connect_through("safe", via, 0666, &c));

        /* A symlink loop and a file where a directory should be. */
        snprintf(via, sizeof(via), "%s/loop", dir);
        ASSERT_OK(symlink("loop", via));
        snprintf(via, sizeof(via), "%s/loop/socket", dir);
        ASSERT_EQ(connect_through("safe", via, 0666, &c), -ELOOP);
        snprintf(via, sizeof(via), "%s/file", dir);
        close(open(via, O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
        snprintf(via, sizeof(via), "%s/file/socket", dir);
        ASSERT_EQ(connect_through("safe", via, 0666, &c), -ENOTDIR);
}

/* trust_caller (idmctl): a socket and directory of the caller's own uid are accepted only when
 * asked for, and never someone else's. Run as nobody in a child, against a server of nobody's. */
TEST(trust_caller) {
        char sub[200], p[220];
        pid_t server, child;
        int status;

        if (geteuid() != 0) {
                fprintf(stderr, "not root, skipped\n");
                return;
        }
        ASSERT_OK(chmod(dir, 0755));    /* root's, safe; nobody must pass through */
        snprintf(sub, sizeof(sub), "%s/own", dir);
        ASSERT_OK(mkdir(sub, 0755));
        ASSERT_OK(chown(sub, 65534, 65534));
        snprintf(p, sizeof(p), "%s/socket", sub);

        server = fork();
        ASSERT_TRUE(server >= 0);
        if (server == 0) {
                int lfd;

                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(1);
                lfd = listen_at(p, 16);
                for (;;) {
                        int cfd = accept(lfd, NULL, NULL);

                        if (cfd < 0)
                                _exit(1);
                        serve_connection(cfd, SERVE_ECHO);
                        close(cfd);
                }
        }
        for (int i = 0; i < 500 && access(p, F_OK) < 0; i++)
                usleep(10 * 1000);

        /* root, trusting itself: nobody's socket is still refused. */
        {
                IdmClient c = IDM_CLIENT_INIT;

                c.trust_caller = true;
                ASSERT_EQ(idm_client_connect(&c, p, "idmd-test-no-such-user", USEC_PER_SEC, USEC_PER_SEC), -EPERM);
                ASSERT_TRUE(strstr(c.error, "nor yours") != NULL);
        }

        child = fork();
        ASSERT_TRUE(child >= 0);
        if (child == 0) {
                IdmClient c = IDM_CLIENT_INIT;
                json_t *result = NULL;

                if (setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(10);
                if (idm_client_connect(&c, p, "idmd-test-no-such-user", USEC_PER_SEC, USEC_PER_SEC) != -EPERM)
                        _exit(11);
                c.trust_caller = true;
                if (idm_client_connect(&c, p, "idmd-test-no-such-user", USEC_PER_SEC, USEC_PER_SEC) != 0)
                        _exit(12);
                if (idm_client_call(&c, "x", NULL, &result, NULL) != 0)
                        _exit(13);
                json_wipe_and_decref(result);
                idm_client_close(&c);
                _exit(0);
        }
        ASSERT_EQ(waitpid(child, &status, 0), child);
        fprintf(stderr, "   child: status %d\n", status);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        stop(server);
        (void) unlink(p);
        ASSERT_OK(rmdir(sub));
        ASSERT_OK(chmod(dir, 0700));
}

static void expect_failure(Behaviour b, usec_t timeout, int expected) {
        IdmClient c = IDM_CLIENT_INIT;
        json_t *params = json_pack("{s:s}", "password", "x"), *result = NULL;
        IdmError e = {};
        int lfd = listen_at(path, 16);
        pid_t pid = serve(lfd, b);
        usec_t start;

        ASSERT_OK(connect_default(&c, timeout));
        start = now_usec();
        ASSERT_EQ(idm_client_call(&c, "pamAuthenticate", params, &result, &e), expected);
        ASSERT_TRUE(result == NULL);
        ASSERT_EQ(c.fd, -EBADF);        /* a transport failure closes the connection */
        ASSERT_TRUE(c.error[0] != '\0');
        fprintf(stderr, "   %d after %llu ms: %s\n", expected, (unsigned long long) ((now_usec() - start) / 1000), c.error);
        if (expected == -ETIMEDOUT) {
                ASSERT_TRUE(now_usec() - start >= timeout);
                ASSERT_TRUE(now_usec() - start < timeout + 2 * USEC_PER_SEC);
        }
        stop(pid);
        close(lfd);
        json_decref(params);
}

TEST(failures) {
        expect_failure(SERVE_WRONG_ID, 5 * USEC_PER_SEC, -EBADMSG);
        expect_failure(SERVE_GARBAGE, 5 * USEC_PER_SEC, -EBADMSG);
        expect_failure(SERVE_SILENT, 300 * USEC_PER_MSEC, -ETIMEDOUT);
        expect_failure(SERVE_CLOSE, 5 * USEC_PER_SEC, -ECONNRESET);
        expect_failure(SERVE_HUGE, 10 * USEC_PER_SEC, -EMSGSIZE);
        expect_failure(SERVE_ERROR_NO_CODE, 5 * USEC_PER_SEC, -EBADMSG);
}

TEST(no_sigpipe) {
        IdmClient c = IDM_CLIENT_INIT;
        json_t *params = json_object(), *result = NULL;
        char *big = malloc(60000);
        IdmError e = {};
        int lfd = listen_at(path, 16), r;
        pid_t pid = serve(lfd, SERVE_CLOSE_AT_ONCE);

        /* SIGPIPE keeps its default action: without MSG_NOSIGNAL this test would die. */
        ASSERT_TRUE(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
        memset(big, 'a', 59999);
        big[59999] = '\0';
        json_object_set_new(params, "blob", json_string(big));
        ASSERT_OK(connect_default(&c, 5 * USEC_PER_SEC));
        usleep(100 * 1000);     /* let the server close its end */
        r = idm_client_call(&c, "pamAuthenticate", params, &result, &e);
        ASSERT_EQ(r, -ECONNRESET);
        stop(pid);
        close(lfd);
        json_decref(params);
        free(big);
}

TEST(backlog_full) {
        IdmClient c = IDM_CLIENT_INIT;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int lfd = listen_at(path, 0), filler[2];
        usec_t start;
        int r;

        /* Nobody accepts; the queue of a backlog-0 listener holds one connection. */
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        for (int i = 0; i < 2; i++) {
                filler[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                (void) connect(filler[i], (struct sockaddr *) &sa, sizeof(sa));
        }
        start = now_usec();
        r = idm_client_connect(&c, path, "idmd", 300 * USEC_PER_MSEC, USEC_PER_SEC);
        fprintf(stderr, "   %d after %llu ms: %s\n", r, (unsigned long long) ((now_usec() - start) / 1000), c.error);
        ASSERT_EQ(r, -ETIMEDOUT);
        ASSERT_TRUE(now_usec() - start >= 300 * USEC_PER_MSEC);
        ASSERT_TRUE(now_usec() - start < 2 * USEC_PER_SEC);
        close(filler[0]);
        close(filler[1]);
        close(lfd);
}

TEST(above_stdio) {
        IdmClient c = IDM_CLIENT_INIT;
        int lfd = listen_at(path, 16), saved = fcntl(0, F_DUPFD_CLOEXEC, 3);
        pid_t pid = serve(lfd, SERVE_ECHO);

        /* A daemon with stdin closed: socket() would return 0. */
        ASSERT_TRUE(saved >= 0);
        close(0);
        ASSERT_OK(connect_default(&c, USEC_PER_SEC));
        ASSERT_TRUE(c.fd > 2);
        ASSERT_TRUE(fcntl(0, F_GETFD) < 0);     /* the temporary descriptor 0 was closed */
        idm_client_close(&c);
        ASSERT_EQ(dup2(saved, 0), 0);
        close(saved);
        stop(pid);
        close(lfd);
}

int main(void) {
        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/socket", dir);

        RUN(missing);
        RUN(not_a_socket);
        RUN(not_listening);
        RUN(wrong_owner);
        RUN(echo);
        RUN(error_reply);
        RUN(retry_after_clamped);
        RUN(params_shapes);
        RUN(error_object);
        RUN(unsafe_directories);
        RUN(trust_caller);
        RUN(failures);
        RUN(no_sigpipe);
        RUN(backlog_full);
        RUN(above_stdio);

        (void) unlink(path);
        {
                char cmd[160];

                /* The trees unsafe_directories made (symlinks, sticky directories). */
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "cannot remove %s\n", dir);
        }
        return 0;
}
