/* SPDX-License-Identifier: MIT */
/*
 * idmctl's transport (see client.h). Requests go out with MSG_NOSIGNAL so a daemon that goes away
 * mid-write is an error, not a SIGPIPE; replies are read with poll() against one deadline per call
 * and capped at IDM_MAX_REPLY, so a stuck or runaway daemon can't hang or exhaust the CLI.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include "client.h"
#include "idm/protocol.h"

struct IdmClient {
        int fd;
        uint64_t timeout_usec;
        json_int_t next_id;
        char *buf;              /* received bytes not consumed yet */
        size_t buf_len, buf_size;
};

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* The poll() timeout in ms until deadline (-1: none); -ETIMEDOUT once it has passed. */
static int deadline_to_ms(uint64_t deadline) {
        uint64_t n;

        if (deadline == UINT64_MAX)
                return -1;
        n = now_usec();
        if (n >= deadline)
                return -ETIMEDOUT;
        /* Round up, so we never spin on a 0 ms poll just before the deadline. */
        return (int) ((deadline - n + 999) / 1000 > INT32_MAX ? INT32_MAX : (deadline - n + 999) / 1000);
}

static int wait_fd(int fd, short events, uint64_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                int ms = deadline_to_ms(deadline), r;

                if (ms == -ETIMEDOUT)
                        return -ETIMEDOUT;
                r = poll(&p, 1, ms);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -ETIMEDOUT;
                /* POLLHUP/POLLERR: let the following send()/recv() report what happened. */
                return 0;
        }
}

int idm_client_connect(const char *path, uint64_t timeout_usec, IdmClient **ret) {
        _cleanup_(idm_client_freep) IdmClient *c = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len;

        assert(path);
        assert(ret);

        len = strlen(path);
        if (len == 0)
                return -EINVAL;
        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->timeout_usec = timeout_usec;
        c->next_id = 1;

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;

        /* A blocking AF_UNIX connect() waits while the listener's backlog is full; SO_SNDTIMEO
         * bounds that wait (and makes it fail with EAGAIN). */
        if (timeout_usec > 0) {
                struct timeval tv = {
                        .tv_sec = (time_t) (timeout_usec / 1000000ULL),
                        .tv_usec = (suseconds_t) (timeout_usec % 1000000ULL),
                };
                if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                        return -errno;
        }

        if (connect(c->fd, (const struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1)) < 0)
                return errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;

        *ret = TAKE_PTR(c);
        return 0;
}

IdmClient *idm_client_free(IdmClient *c) {
        if (!c)
                return NULL;
        (void) safe_close(c->fd);
        if (c->buf) {
                explicit_bzero(c->buf, c->buf_size);
                free(c->buf);
        }
        free(c);
        return NULL;
}

static void erase_and_free_line(char **p) {
        if (*p) {
                explicit_bzero(*p, strlen(*p));
                free(*p);
        }
}

static int send_all(IdmClient *c, const char *data, size_t len, uint64_t deadline) {
        while (len > 0) {
                ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                int r;

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return errno == EPIPE ? -ECONNRESET : -errno;
                        r = wait_fd(c->fd, POLLOUT, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                data += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Reads until buf holds a '\n'; returns the line's length (without '\n'). */
static int recv_line(IdmClient *c, uint64_t deadline, size_t *ret_len) {
        size_t scanned = 0;

        for (;;) {
                char *nl = c->buf_len > scanned ? memchr(c->buf + scanned, '\n', c->buf_len - scanned) : NULL;
                ssize_t n;
                int r;

                if (nl) {
                        *ret_len = (size_t) (nl - c->buf);
                        return 0;
                }
                scanned = c->buf_len;
                if (c->buf_len > IDM_MAX_REPLY)
                        return -EMSGSIZE;

                if (c->buf_size - c->buf_len < 4096) {
                        size_t size = c->buf_size ? c->buf_size * 2 : 16384;
                        char *b;

                        if (size > IDM_MAX_REPLY + 4096)
                                size = IDM_MAX_REPLY + 4096;
                        /* Not realloc(): the old block may hold a token and must be wiped. */
                        b = malloc(size);
                        if (!b)
                                return -ENOMEM;
                        if (c->buf) {
                                memcpy(b, c->buf, c->buf_len);
                                explicit_bzero(c->buf, c->buf_size);
                                free(c->buf);
                        }
                        c->buf = b;
                        c->buf_size = size;
                }

                n = recv(c->fd, c->buf + c->buf_len, c->buf_size - c->buf_len, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        r = wait_fd(c->fd, POLLIN, deadline);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == 0)
                        return -ECONNRESET;
                c->buf_len += (size_t) n;
        }
}

int idm_client_call(IdmClient *c, const char *method, json_t *params, json_t **ret_result,
                    json_t **reterr_error) {
        _cleanup_(json_decrefp) json_t *req = NULL, *reply = NULL;
        _cleanup_(erase_and_free_line) char *line = NULL;
        uint64_t deadline = c->timeout_usec > 0 ? now_usec() + c->timeout_usec : UINT64_MAX;
        json_int_t id = c->next_id++;
        json_t *reply_id, *result, *error;
        size_t len;
        int r;

        assert(c);
        assert(method);
        assert(ret_result);
        assert(reterr_error);

        req = json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", id, "method", method);
        if (!req)
                return -ENOMEM;
        if (params && json_object_set(req, "params", params) < 0)
                return -ENOMEM;

        /* Compact output has no raw newline: JSON escapes them inside strings. */
        {
                _cleanup_free_ char *s = json_dumps(req, JSON_COMPACT);
                if (!s)
                        return -ENOMEM;
                len = strlen(s);
                line = malloc(len + 2);
                if (!line) {
                        explicit_bzero(s, len);
                        return -ENOMEM;
                }
                memcpy(line, s, len);
                line[len] = '\n';
                line[len + 1] = 0;
                /* The request may carry a password (idmctl call login ...). */
                explicit_bzero(s, len);
        }

        r = send_all(c, line, len + 1, deadline);
        if (r < 0)
                return r;

        r = recv_line(c, deadline, &len);
        if (r < 0)
                return r;

        reply = json_loadb(c->buf, len, 0, NULL);
        /* Consume the line (and wipe it) whether or not it parsed. */
        memmove(c->buf, c->buf + len + 1, c->buf_len - len - 1);
        explicit_bzero(c->buf + c->buf_len - len - 1, len + 1);
        c->buf_len -= len + 1;

        if (!json_is_object(reply))
                return -EBADMSG;

        reply_id = json_object_get(reply, "id");
        result = json_object_get(reply, "result");
        error = json_object_get(reply, "error");

        if (json_is_object(error) && (json_is_null(reply_id) || !reply_id ||
                                      (json_is_integer(reply_id) && json_integer_value(reply_id) == id))) {
                *reterr_error = json_incref(error);
                return -EREMOTEIO;
        }
        if (!json_is_integer(reply_id) || json_integer_value(reply_id) != id || !result)
                return -EBADMSG;

        *ret_result = json_incref(result);
        return 0;
}
