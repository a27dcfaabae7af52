/* SPDX-License-Identifier: MIT */
/*
 * idm-client, the transport to idmd shared by pam_idm and idmctl: connect with checks on who
 * listens, one JSON-RPC request at a time, deadlines on every wait, capped and wiped buffers. See
 * idm-client.h for the contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "client/idm-client.h"

#define RECV_CHUNK 4096u
#define CONNECT_RETRY_USEC (10 * USEC_PER_MSEC)   /* backlog full: try again this often */
#define CLOSED_READ_USEC (100 * USEC_PER_MSEC)    /* reading what a peer said before it closed */
#define BUF_SIZE_MAX ((size_t) IDM_MAX_REPLY + RECV_CHUNK + 1)
#define PW_BUF_SIZE_MAX (1024u * 1024u)
#define SYMLINK_HOPS_MAX 40                        /* like the kernel's MAXSYMLINKS */

usec_t now_usec(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                return 0;
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

_printf_(3, 4) static int client_fail(IdmClient *c, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
        return r;
}

/* Milliseconds left until deadline for poll(), rounded up; 0 once it has passed. */
static int poll_timeout_ms(usec_t deadline) {
        usec_t n = now_usec(), left;

        if (n >= deadline)
                return 0;
        left = (deadline - n + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
        return left > INT_MAX ? INT_MAX : (int) left;
}

/* Waits until fd is ready for events or deadline passes: 0, -ETIMEDOUT or -errno. */
static int fd_wait(int fd, short events, usec_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int ms = poll_timeout_ms(deadline), n;

                if (ms == 0 && now_usec() >= deadline)
                        return -ETIMEDOUT;
                n = poll(&p, 1, ms);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n > 0)
                        return 0;
        }
}

/* Keeps fd away from 0, 1 and 2, which a daemon may have closed: a stray write to "stderr" must
 * never reach idmd. Takes ownership of fd. */
static int fd_move_above_stdio(int fd) {
        int copy;

        if (fd < 0 || fd > 2)
                return fd;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                copy = -errno;
        (void) safe_close(fd);
        return copy;
}

static int daemon_uid_lookup(const char *name, uid_t *ret) {
        long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t size = hint > 0 ? (size_t) hint : 4096;

        for (;;) {
                _cleanup_free_ char *b = malloc(size);
                struct passwd pw, *result = NULL;
                int r;

                if (!b)
                        return -ENOMEM;
                r = getpwnam_r(name, &pw, b, size, &result);
                if (r == ERANGE && size < PW_BUF_SIZE_MAX) {
                        size *= 2;
                        continue;
                }
                if (r != 0)
                        return -r;
                if (!result)
                        return -ESRCH;
                *ret = pw.pw_uid;
                return 0;
        }
}

/* Who may own the socket and the directories above it: root, idmd's user (looked up once, and
 * only when something is not owned by root), and with trust_caller the caller's own uid. */
typedef struct Trust {
        const char *daemon_user;
        bool caller;
        uid_t daemon_uid;
        int looked_up;          /* 0 not yet, 1 daemon_uid is valid, -1 no such user (or lookup failed) */
} Trust;

static bool uid_is_trusted(Trust *t, uid_t uid) {
        if (uid == 0 || (t->caller && uid == getuid()))
                return true;
        if (t->looked_up == 0)
                t->looked_up = t->daemon_user && daemon_uid_lookup(t->daemon_user, &t->daemon_uid) >= 0 ? 1 : -1;
        return t->looked_up > 0 && t->daemon_uid == uid;
}

static bool dir_is_sticky_root(const struct stat *st) {
        return st->st_uid == 0 && (st->st_mode & S_ISVTX);
}

/*
 * Checks every directory in which the kernel looks up a name while it resolves the socket's path,
 * from "/" down and through symlinks as the kernel follows them (cf. OpenSSH's safe_path(), which
 * checks every component of the resolved path): each must be owned by root or idmd's user and not
 * writable by group or others. Otherwise whoever may write there could swap a directory or a
 * symlink and send the password to another root-owned socket. The one exception is a root-owned
 * sticky directory such as /tmp: what is looked up in it must itself be owned by root or idmd's
 * user (only its owner can rename or remove it there) and not writable by group or others (so a
 * sticky directory directly above another world-writable one, or a world-writable socket directly
 * in it, is refused). sock is the lstat() of the socket file. Returns 0, -EPERM (c->error says
 * why), -ELOOP, -ENOTDIR or another -errno from lstat(2)/readlink(2).
 */
static int socket_check_directories(IdmClient *c, const char *path, const struct stat *sock, Trust *t) {
        /* cur: the directory resolved so far ("" is "/"); rest: what is still to resolve (the
         * directory part of path, later with symlink targets put in front); next: cur plus the
         * next name; link: a symlink's target. Four PATH_MAX buffers: on the heap, not on the
         * stack of whatever application loaded the module. */
        _cleanup_free_ char *mem = malloc(4 * (size_t) PATH_MAX);
        char *cur = mem, *rest = mem + PATH_MAX, *next = mem + 2 * PATH_MAX, *link = mem + 3 * PATH_MAX;
        const char *base = strrchr(path, '/');
        size_t cur_len = 0, rest_len = (size_t) (base - path);
        bool root_sticky, in_sticky;
        unsigned hops = 0;
        struct stat st;

        if (!mem)
                return client_fail(c, -ENOMEM, "out of memory");
        memcpy(rest, path, rest_len);
        rest[rest_len] = '\0';
        cur[0] = '\0';

        if (lstat("/", &st) < 0)
                return client_fail(c, -errno, "cannot access '/': %s", strerror(errno));
        if (!uid_is_trusted(t, st.st_uid) || ((st.st_mode & 022) && !dir_is_sticky_root(&st)))
                return client_fail(c, -EPERM,
                                   "'/' is owned by uid %u with mode %04o, refusing to use socket '%s'",
                                   (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777), path);
        root_sticky = in_sticky = (st.st_mode & 022) != 0;

        for (;;) {
                char *comp = rest, *end;
                size_t comp_len;
                ssize_t n;

                while (*comp == '/')
                        comp++;
                if (*comp == '\0')
                        break;
                end = strchrnul(comp, '/');
                comp_len = (size_t) (end - comp);
                if (cur_len + 1 + comp_len >= PATH_MAX)
                        return client_fail(c, -ELOOP, "cannot resolve the path of socket '%s'", path);
                memcpy(next, cur, cur_len);
                next[cur_len] = '/';
                memcpy(next + cur_len + 1, comp, comp_len);
                next[cur_len + 1 + comp_len] = '\0';
                /* The name is in next now: drop it from rest. */
                memmove(rest, end, strlen(end) + 1);

                if (streq(next + cur_len, "/."))
                        continue;
                if (streq(next + cur_len, "/..")) {
                        char *slash;

                        /* Back to the parent, which was checked on the way down. */
                        cur[cur_len] = '\0';
                        slash = strrchr(cur, '/');
                        cur_len = slash ? (size_t) (slash - cur) : 0;
                        cur[cur_len] = '\0';
                        if (lstat(cur_len > 0 ? cur : "/", &st) < 0)
                                return client_fail(c, -errno, "cannot access '%s': %s", cur_len > 0 ? cur : "/",
                                                   strerror(errno));
                        in_sticky = cur_len > 0 ? (st.st_mode & 022) != 0 : root_sticky;
                        continue;
                }

                if (lstat(next, &st) < 0)
                        return client_fail(c, -errno, "cannot access '%s': %s", next, strerror(errno));
                if (S_ISLNK(st.st_mode)) {
                        size_t tail = strlen(rest);

                        /* A symlink in a safe directory was put there by root or idmd's user; one
                         * in a sticky directory belongs to whoever made it. */
                        if (in_sticky && !uid_is_trusted(t, st.st_uid))
                                return client_fail(c, -EPERM,
                                                   "symlink '%s' on the way to socket '%s' is owned by uid %u in a "
                                                   "world-writable directory, refusing",
                                                   next, path, (unsigned) st.st_uid);
                        if (++hops > SYMLINK_HOPS_MAX)
                                return client_fail(c, -ELOOP, "too many symlinks on the way to socket '%s'", path);
                        n = readlink(next, link, PATH_MAX);
                        if (n < 0)
                                return client_fail(c, -errno, "cannot read symlink '%s': %s", next,
                                                   strerror(errno));
                        if (n == 0)
                                return client_fail(c, -ENOENT, "symlink '%s' is empty", next);
                        if (n >= PATH_MAX || (size_t) n + 1 + tail >= PATH_MAX)
                                return client_fail(c, -ELOOP, "cannot resolve the path of socket '%s'", path);
                        /* rest becomes the link's target followed by what was left. */
                        memmove(rest + n + 1, rest, tail + 1);
                        memcpy(rest, link, (size_t) n);
                        rest[n] = '/';
                        if (link[0] == '/') {
                                cur_len = 0;
                                cur[0] = '\0';
                                in_sticky = root_sticky;
                        }
                        continue;
                }
                if (!S_ISDIR(st.st_mode))
                        return client_fail(c, -ENOTDIR, "'%s' on the way to socket '%s' is not a directory", next,
                                           path);
                if (!uid_is_trusted(t, st.st_uid))
                        return client_fail(c, -EPERM,
                                           "directory '%s' of socket '%s' is owned by uid %u, which is neither "
                                           "root nor idmd's user '%s'%s, refusing",
                                           next, path, (unsigned) st.st_uid, strempty(t->daemon_user),
                                           t->caller ? " nor yours" : "");
                if (st.st_mode & 022) {
                        /* Writable by others: only a root-owned sticky directory, and not right
                         * below another one. */
                        if (in_sticky || !dir_is_sticky_root(&st))
                                return client_fail(c, -EPERM,
                                                   "directory '%s' of socket '%s' is writable by group or others "
                                                   "(mode %04o), refusing",
                                                   next, path, (unsigned) (st.st_mode & 07777));
                        in_sticky = true;
                } else
                        in_sticky = false;
                cur_len = strlen(next);
                memcpy(cur, next, cur_len + 1);
        }

        if (in_sticky && (sock->st_mode & 022))
                return client_fail(c, -EPERM,
                                   "socket '%s' is writable by others in a world-writable directory, refusing", path);
        return 0;
}

int idm_client_connect(IdmClient *c, const char *path, const char *daemon_user, usec_t connect_timeout,
                       usec_t timeout) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;
        usec_t deadline = now_usec() + connect_timeout;
        Trust trust = { .daemon_user = daemon_user, .caller = c->trust_caller };
        struct ucred cred = {};
        socklen_t cred_len = sizeof(cred), sa_len;
        struct stat st;
        size_t path_len;
        int r;

        idm_client_close(c);
        c->error[0] = '\0';

        if (!path || path[0] != '/')
                return client_fail(c, -EINVAL, "socket path '%s' is not absolute", strempty(path));
        path_len = strlen(path);
        if (path_len >= sizeof(sa.sun_path))
                return client_fail(c, -ENAMETOOLONG, "socket path '%s' is too long", path);
        memcpy(sa.sun_path, path, path_len + 1);

        if (lstat(path, &st) < 0) {
                r = -errno;
                return client_fail(c, r, "cannot access socket '%s': %s", path, strerror(-r));
        }
        if (!S_ISSOCK(st.st_mode))
                return client_fail(c, -ENOTSOCK, "'%s' is not a socket, refusing", path);
        if (!uid_is_trusted(&trust, st.st_uid))
                return client_fail(c, -EPERM,
                                   "socket '%s' is owned by uid %u, which is neither root nor idmd's "
                                   "user '%s'%s, refusing",
                                   path, (unsigned) st.st_uid, strempty(daemon_user), c->trust_caller ? " nor yours" : "");
        r = socket_check_directories(c, path, &st, &trust);
        if (r < 0)
                return r;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                return client_fail(c, r, "cannot create socket: %s", strerror(-r));
        }
        fd = fd_move_above_stdio(fd);
        if (fd < 0) {
                r = fd;
                return client_fail(c, r, "cannot move socket above stdio: %s", strerror(-r));
        }

        sa_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + path_len + 1);
        for (;;) {
                int error = 0;
                socklen_t error_len = sizeof(error);

                if (connect(fd, (const struct sockaddr *) &sa, sa_len) >= 0)
                        break;
                if (errno == EAGAIN) {
                        /* AF_UNIX: the listen backlog is full (idmd busy or stopped). Try again
                         * until the deadline. */
                        int ms = poll_timeout_ms(deadline), retry_ms = CONNECT_RETRY_USEC / USEC_PER_MSEC;

                        if (ms == 0)
                                return client_fail(c, -ETIMEDOUT, "idmd did not accept a connection on '%s' in time",
                                                   path);
                        (void) poll(NULL, 0, ms < retry_ms ? ms : retry_ms);
                        continue;
                }
                if (errno != EINPROGRESS && errno != EINTR) {
                        r = -errno;
                        return client_fail(c, r, "cannot connect to '%s': %s", path, strerror(-r));
                }
                r = fd_wait(fd, POLLOUT, deadline);
                if (r == -ETIMEDOUT)
                        return client_fail(c, r, "idmd did not accept a connection on '%s' in time", path);
                if (r < 0)
                        return client_fail(c, r, "cannot connect to '%s': %s", path, strerror(-r));
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) < 0)
                        error = errno;
                if (error != 0)
                        return client_fail(c, -error, "cannot connect to '%s': %s", path, strerror(error));
                break;
        }

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) < 0) {
                r = -errno;
                return client_fail(c, r, "cannot get the peer credentials of '%s': %s", path, strerror(-r));
        }
        if (cred.uid != st.st_uid)
                return client_fail(c, -EPERM,
                                   "peer of '%s' runs as uid %u, not as the socket's owner uid %u, refusing", path,
                                   (unsigned) cred.uid, (unsigned) st.st_uid);

        c->fd = TAKE_FD(fd);
        c->timeout = timeout;
        return 0;
}

void json_wipe(json_t *v) {
        const char *key;
        json_t *x;
        size_t i;

        switch (v ? json_typeof(v) : JSON_NULL) {
        case JSON_STRING:
                /* jansson owns a writable, malloc'ed copy; the const is only its API's promise. */
                explicit_bzero((char *) json_string_value(v), json_string_length(v));
                break;
        case JSON_OBJECT:
                json_object_foreach(v, key, x)
                        json_wipe(x);
                break;
        case JSON_ARRAY:
                json_array_foreach(v, i, x)
                        json_wipe(x);
                break;
        default:
                break;
        }
}

void json_wipe_and_decref(json_t *v) {
        json_wipe(v);
        json_decref(v);
}

void idm_client_close(IdmClient *c) {
        if (!c)
                return;
        c->fd = safe_close(c->fd);
        if (c->buf) {
                explicit_bzero(c->buf, c->buf_size);
                free(c->buf);
        }
        c->buf = NULL;
        c->buf_len = c->buf_size = 0;
}

typedef struct DumpBuffer {
        char *data;
        size_t len;
        size_t size;
} DumpBuffer;

static int dump_count(const char *buffer, size_t size, void *data) {
        size_t *n = data;

        *n += size;
        return 0;
}

/* jansson hands string contents straight from the json_t to this callback, so the only copy of a
 * secret made by serialising is the one in our buffer, which is wiped after sending. */
static int dump_copy(const char *buffer, size_t size, void *data) {
        DumpBuffer *b = data;

        if (size > b->size - b->len)
                return -1;
        memcpy(b->data + b->len, buffer, size);
        b->len += size;
        return 0;
}

static int send_all(IdmClient *c, const char *p, size_t len, usec_t deadline, const char *method) {
        while (len > 0) {
                ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                int r;

                if (n >= 0) {
                        p += n;
                        len -= (size_t) n;
                        continue;
                }
                if (errno == EINTR)
                        continue;
                if (errno == EAGAIN) {
                        r = fd_wait(c->fd, POLLOUT, deadline);
                        if (r == -ETIMEDOUT)
                                return client_fail(c, r, "idmd did not read the '%s' request in time", method);
                        if (r < 0)
                                return client_fail(c, r, "cannot send to idmd: %s", strerror(-r));
                        continue;
                }
                if (errno == EPIPE || errno == ECONNRESET)
                        return client_fail(c, -ECONNRESET, "idmd closed the connection");
                r = -errno;
                return client_fail(c, r, "cannot send to idmd: %s", strerror(-r));
        }
        return 0;
}

/* Grows the receive buffer without realloc(), so no unwiped copy of reply bytes is left behind. */
static int buf_reserve(IdmClient *c, size_t want) {
        size_t size;
        char *n;

        if (c->buf_size - c->buf_len >= want)
                return 0;
        size = c->buf_size > 0 ? c->buf_size : RECV_CHUNK;
        while (size - c->buf_len < want)
                size *= 2;
        if (size > BUF_SIZE_MAX)
                size = BUF_SIZE_MAX;
        if (size - c->buf_len < want)
                return -EMSGSIZE;
        n = malloc(size);
        if (!n)
                return -ENOMEM;
        if (c->buf) {
                memcpy(n, c->buf, c->buf_len);
                explicit_bzero(c->buf, c->buf_size);
                free(c->buf);
        }
        c->buf = n;
        c->buf_size = size;
        return 0;
}

static void buf_consume(IdmClient *c, size_t n) {
        size_t rest = c->buf_len - n;

        memmove(c->buf, c->buf + n, rest);
        explicit_bzero(c->buf + rest, c->buf_len - rest);
        c->buf_len = rest;
}

static void copy_string(char *dst, size_t size, const char *src) {
        (void) snprintf(dst, size, "%s", strempty(src));
}

static int parse_reply(IdmClient *c, const char *line, size_t len, json_int_t id, json_t **ret_result,
                       IdmError *reterr, json_t **ret_error_object) {
        _cleanup_(json_wipe_and_decrefp) json_t *reply = NULL;
        json_t *rid, *result, *error, *code, *data;
        json_error_t e;

        reply = json_loadb(line, len, JSON_REJECT_DUPLICATES, &e);
        if (!reply)
                return client_fail(c, -EBADMSG, "malformed reply from idmd: %s", e.text);
        if (!json_is_object(reply) || !streq_ptr(json_object_get_string(reply, "jsonrpc"), "2.0"))
                return client_fail(c, -EBADMSG, "reply from idmd is not a JSON-RPC 2.0 response");

        rid = json_object_get(reply, "id");
        result = json_object_get(reply, "result");
        error = json_object_get(reply, "error");
        if (!result == !error)
                return client_fail(c, -EBADMSG, "reply from idmd has %s result and error",
                                   result ? "both" : "neither");

        if (error) {
                /* id null: a connection-level refusal (too many connections, shutting down). */
                if (!json_is_null(rid) && !(json_is_integer(rid) && json_integer_value(rid) == id))
                        return client_fail(c, -EBADMSG, "reply from idmd answers another request");
                code = json_object_get(error, "code");
                if (!json_is_object(error) || !json_is_integer(code) || json_integer_value(code) < INT_MIN ||
                    json_integer_value(code) > INT_MAX)
                        return client_fail(c, -EBADMSG, "malformed error object from idmd");
                if (reterr) {
                        json_t *retry;

                        data = json_object_get(error, "data");
                        retry = json_object_get(data, "retryAfter");
                        /* A retryAfter beyond a year is nonsense (and would overflow the
                         * arithmetic of the message): treated as absent. */
                        *reterr = (IdmError) {
                                .code = (int) json_integer_value(code),
                                .retry_after = json_is_integer(retry) && json_integer_value(retry) >= 0 &&
                                                               json_integer_value(retry) <= IDM_RETRY_AFTER_MAX ?
                                                       (long long) json_integer_value(retry) : -1,
                        };
                        copy_string(reterr->reason, sizeof(reterr->reason),
                                    json_object_get_string(data, "reason"));
                        copy_string(reterr->message, sizeof(reterr->message),
                                    json_object_get_string(error, "message"));
                }
                if (ret_error_object) {
                        /* Detached, like a result below, so that wiping the envelope leaves it. */
                        *ret_error_object = json_incref(error);
                        (void) json_object_del(reply, "error");
                }
                (void) client_fail(c, -EREMOTEIO, "idmd answered error %d", (int) json_integer_value(code));
                return -EREMOTEIO;
        }

        if (!json_is_integer(rid) || json_integer_value(rid) != id)
                return client_fail(c, -EBADMSG, "reply from idmd answers another request");
        *ret_result = json_incref(result);
        /* Detach the result so that wiping the envelope leaves the caller's copy intact. */
        (void) json_object_del(reply, "result");
        return 0;
}

static int read_reply(IdmClient *c, json_int_t id, usec_t deadline, const char *method, json_t **ret_result,
                      IdmError *reterr, json_t **ret_error_object) {
        size_t scanned = 0;

        for (;;) {
                char *nl = c->buf ? memchr(c->buf + scanned, '\n', c->buf_len - scanned) : NULL;
                ssize_t n;
                int r;

                if (nl) {
                        size_t line_len = (size_t) (nl - c->buf);

                        r = parse_reply(c, c->buf, line_len, id, ret_result, reterr, ret_error_object);
                        buf_consume(c, line_len + 1);
                        return r;
                }
                scanned = c->buf_len;
                if (c->buf_len > IDM_MAX_REPLY)
                        return client_fail(c, -EMSGSIZE, "reply from idmd is longer than %u bytes", IDM_MAX_REPLY);

                r = buf_reserve(c, RECV_CHUNK);
                if (r < 0)
                        return client_fail(c, r, "cannot receive from idmd: %s", strerror(-r));

                r = fd_wait(c->fd, POLLIN, deadline);
                if (r == -ETIMEDOUT)
                        return client_fail(c, r, "no reply from idmd to '%s' within %llu ms", method,
                                           (unsigned long long) (c->timeout / USEC_PER_MSEC));
                if (r < 0)
                        return client_fail(c, r, "cannot receive from idmd: %s", strerror(-r));

                n = recv(c->fd, c->buf + c->buf_len, c->buf_size - c->buf_len, MSG_DONTWAIT);
                if (n == 0)
                        return client_fail(c, -ECONNRESET, "idmd closed the connection without replying to '%s'",
                                           method);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        if (errno == ECONNRESET)
                                return client_fail(c, -ECONNRESET, "idmd reset the connection");
                        r = -errno;
                        return client_fail(c, r, "cannot receive from idmd: %s", strerror(-r));
                }
                c->buf_len += (size_t) n;
        }
}

int idm_client_call_full(IdmClient *c, const char *method, json_t *params, json_t **ret_result, IdmError *reterr,
                         json_t **ret_error_object) {
        _cleanup_(json_decrefp) json_t *request = NULL;
        usec_t deadline = now_usec() + c->timeout;
        DumpBuffer b = {};
        json_int_t id;
        size_t need = 0;
        int r;

        if (ret_error_object)
                *ret_error_object = NULL;
        if (c->fd < 0)
                return client_fail(c, -ENOTCONN, "not connected to idmd");
        if (!method || (params && !json_is_object(params) && !json_is_array(params)))
                return client_fail(c, -EINVAL, "invalid request");

        id = c->next_id++;
        request = json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", id, "method", method);
        if (!request || (params && json_object_set(request, "params", params) < 0))
                return client_fail(c, -ENOMEM, "cannot build the '%s' request", method);

        if (json_dump_callback(request, dump_count, &need, JSON_COMPACT) < 0)
                return client_fail(c, -EINVAL, "cannot serialise the '%s' request", method);
        if (need > c->max_request)
                return client_fail(c, -EINVAL, "the '%s' request is too large", method);
        b.size = need + 1;
        b.data = malloc(b.size);
        if (!b.data)
                return client_fail(c, -ENOMEM, "cannot build the '%s' request", method);
        if (json_dump_callback(request, dump_copy, &b, JSON_COMPACT) < 0 || b.len != need) {
                explicit_bzero(b.data, b.size);
                free(b.data);
                return client_fail(c, -EINVAL, "cannot serialise the '%s' request", method);
        }
        b.data[b.len++] = '\n';

        r = send_all(c, b.data, b.len, deadline, method);
        explicit_bzero(b.data, b.size);
        free(b.data);
        if (r >= 0)
                r = read_reply(c, id, deadline, method, ret_result, reterr, ret_error_object);
        else if (r == -ECONNRESET) {
                /* idmd may have refused the connection with an error line (too many connections,
                 * shutting down) and closed it before our request arrived: report its reason. */
                json_t *late = NULL;

                if (read_reply(c, id, now_usec() + CLOSED_READ_USEC, method, &late, reterr, ret_error_object) ==
                    -EREMOTEIO)
                        r = -EREMOTEIO;
                json_wipe_and_decref(late);
        }
        if (r < 0 && r != -EREMOTEIO)
                idm_client_close(c);
        return r;
}

int idm_client_call(IdmClient *c, const char *method, json_t *params, json_t **ret_result, IdmError *reterr) {
        return idm_client_call_full(c, method, params, ret_result, reterr, NULL);
}
