/* SPDX-License-Identifier: MIT */
/*
 * pam_idm's transport to idmd: an AF_UNIX stream connection speaking newline-delimited JSON-RPC
 * 2.0 (include/idm/protocol.h), bounded in time (poll() deadlines) and in size (IDM_MAX_REPLY).
 *
 * Before anything is sent, the socket file must be a socket owned by root or by idmd's user, every
 * directory above it must be safe from other users (owned by root or idmd's user, not writable by
 * others), and the peer (SO_PEERCRED) must be the file's owner: a password never goes to a
 * listener that another unprivileged user put in place or redirected the path to.
 *
 * Hygiene, because this code runs inside sshd, login, display managers and screen lockers: no
 * threads, signals or children; the descriptor is CLOEXEC and above 2; every send uses
 * MSG_NOSIGNAL; buffers that held request or reply bytes are wiped before they are freed. The
 * caller opens one connection per PAM call and closes it before returning (never across a fork,
 * never across a conversation with the user or a wait). Nothing is logged here: the reason for a
 * failure is left in IdmClient.error for the caller's one pam_syslog() line.
 */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef uint64_t usec_t;
#define USEC_PER_SEC ((usec_t) 1000000)
#define USEC_PER_MSEC ((usec_t) 1000)

/* CLOCK_MONOTONIC in microseconds. */
usec_t now_usec(void);

typedef struct IdmClient {
        int fd;
        usec_t timeout;           /* per request */
        json_int_t next_id;
        char *buf;                /* received bytes not yet consumed; wiped when dropped */
        size_t buf_len;
        size_t buf_size;
        char error[256];          /* why the last failing call failed, for the caller's log */
} IdmClient;

#define IDM_CLIENT_INIT { .fd = -EBADF, .next_id = 1 }

/* An error object sent by idmd. Strings are copied (truncated) out of the reply. */
typedef struct IdmError {
        int code;                 /* JSON-RPC error.code */
        char reason[64];          /* error.data.reason, "" when absent */
        char message[256];        /* error.message, "" when absent */
        long long retry_after;    /* error.data.retryAfter in seconds, -1 when absent, negative or
                                   * over IDM_RETRY_AFTER_MAX */
} IdmError;

#define IDM_RETRY_AFTER_MAX (365LL * 24 * 3600)

/*
 * Connects c (initialised with IDM_CLIENT_INIT, not connected) to the socket at path, giving up
 * after connect_timeout; timeout bounds each later idm_client_call(). daemon_user names the user
 * idmd runs as; a socket owned by that user is accepted as well as one owned by root (the name is
 * only looked up when something is not owned by root). Every directory the path leads through,
 * from "/" down and through symlinks, must be owned by root or that user and not writable by
 * group or others, except a root-owned sticky directory (/tmp) whose entry on the path is safe in
 * that sense (cf. OpenSSH's safe_path()). On failure c is left closed and c->error says why.
 *
 * Returns 0, or:
 *   -ENOENT        no socket file at path (idmd not installed or not running), or a directory
 *                  on the way is missing
 *   -ECONNREFUSED  nobody listens on it
 *   -ENOTSOCK      path is not a socket
 *   -EPERM         the file, a directory (or symlink) on the way, or the peer belongs to another
 *                  user, or a directory on the way is writable by others
 *   -ETIMEDOUT     the connection was not accepted in time (backlog full)
 *   -EINVAL        path is not absolute
 *   -ENAMETOOLONG  path does not fit into sockaddr_un
 *   -ELOOP, -ENOTDIR  the path cannot be resolved (too many symlinks, a file where a directory
 *                  should be)
 *   other -errno   from lstat(2), readlink(2), socket(2), connect(2), getsockopt(2), fcntl(2), or
 *                  -ENOMEM
 */
int idm_client_connect(IdmClient *c, const char *path, const char *daemon_user, usec_t connect_timeout,
                       usec_t timeout);

/*
 * Sends one request {jsonrpc, id, method, params} and waits for the reply with the same id.
 * params (borrowed) may hold secrets: the serialized request is built in a buffer of exactly the
 * right size and wiped after sending; the caller wipes params itself (json_wipe()).
 *
 * Returns 0 and *ret_result (a new reference, may hold tokens: release it with
 * json_wipe_and_decref()), or -EREMOTEIO with *reterr filled when idmd answered with an error
 * object (also a connection-level refusal sent with id null), or a transport failure, after which
 * the connection is closed and c->error says why:
 *   -ETIMEDOUT     no complete reply within the request timeout
 *   -ECONNRESET    idmd closed the connection (or reset it) before replying
 *   -EMSGSIZE      the reply line is longer than IDM_MAX_REPLY
 *   -EBADMSG       the reply is not a JSON-RPC 2.0 response to this request
 *   -ENOTCONN      c is not connected
 *   -ENOMEM, -EINVAL (params not an object, or not serialisable)
 */
int idm_client_call(IdmClient *c, const char *method, json_t *params, json_t **ret_result, IdmError *reterr);

/* Closes the connection and wipes and frees the buffer; c can be connected again. NULL-safe. */
void idm_client_close(IdmClient *c);

/* Overwrites every string value inside v (recursively) with zero bytes, in place. NULL-safe. */
void json_wipe(json_t *v);

/* json_wipe() followed by json_decref(). For _cleanup_(json_wipe_and_decrefp). */
void json_wipe_and_decref(json_t *v);
static inline void json_wipe_and_decrefp(json_t **v) {
        json_wipe_and_decref(*v);
}
