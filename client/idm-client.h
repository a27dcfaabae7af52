/* SPDX-License-Identifier: MIT */
/*
 * idm-client: the one transport to idmd of pam_idm.so and idmctl, a static library (built with
 * pic, so it goes into the module) that links nothing of the daemon. An AF_UNIX stream connection
 * speaking newline-delimited JSON-RPC 2.0 (include/idm/protocol.h), one request at a time,
 * bounded in time (poll() deadlines) and in size (IDM_MAX_REPLY received, max_request sent).
 *
 * Before anything is sent, the socket file must be a socket owned by a trusted user (root, idmd's
 * user, and for idmctl the caller itself), every directory above it must be safe from other users
 * (owned by a trusted user, not writable by others), and the peer (SO_PEERCRED) must be the file's
 * owner: a password or token never goes to a listener that another unprivileged user put in place
 * or redirected the path to.
 *
 * Hygiene, because this code runs inside sshd, login, display managers and screen lockers: no
 * threads, signals or children; the descriptor is CLOEXEC and above 2; every send uses
 * MSG_NOSIGNAL; buffers that held request or reply bytes are wiped before they are freed. Nothing
 * is printed or logged here: the reason for a failure is left in IdmClient.error for the caller
 * (pam_idm's one pam_syslog() line, idmctl's one line on stderr).
 *
 * Ownership: the caller owns the IdmClient (usually on its stack) and releases it with
 * idm_client_close(); results and error objects handed out are new references owned by the
 * caller; params are borrowed. Functions returning int return 0 or a negative errno, listed below.
 */
#pragma once

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "idm/protocol.h"

typedef uint64_t usec_t;
#define USEC_PER_SEC ((usec_t) 1000000)
#define USEC_PER_MSEC ((usec_t) 1000)

/* The user idmd runs as unless configured otherwise (pam_idm's user=). */
#define IDM_CLIENT_DAEMON_USER "idmd"

/* CLOCK_MONOTONIC in microseconds. */
usec_t now_usec(void);

typedef struct IdmClient {
        /* Settings: IDM_CLIENT_INIT sets the defaults; change them before idm_client_connect(). */
        size_t max_request;       /* longest request line sent, '\n' excluded (-EINVAL beyond) */
        bool trust_caller;        /* also trust the caller's own uid (getuid()) as owner of the
                                   * socket and the directories: for idmctl, whose operator may run
                                   * idmd as themselves; never in pam_idm or anything setuid */

        /* State. */
        int fd;
        usec_t timeout;           /* per request */
        json_int_t next_id;
        char *buf;                /* received bytes not yet consumed; wiped when dropped */
        size_t buf_len;
        size_t buf_size;
        char error[256];          /* why the last failing call failed, for the caller's message */
} IdmClient;

#define IDM_CLIENT_INIT { .max_request = IDM_MAX_LINE_DEFAULT, .fd = -EBADF, .next_id = 1 }

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
 * idmd runs as (NULL: none); a socket owned by that user is accepted as well as one owned by root
 * (or by the caller, with c->trust_caller); the name is only looked up when something is not
 * owned by root. Every directory the path leads through, from "/" down and through symlinks, must
 * be owned by such a user and not writable by group or others, except a root-owned sticky
 * directory (/tmp) whose entry on the path is safe in that sense (cf. OpenSSH's safe_path()). On
 * failure c is left closed and c->error says why.
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
 * params (borrowed; an object, an array, or NULL to leave the member out) may hold secrets: the
 * serialized request is built in a buffer of exactly the right size and wiped after sending; the
 * caller wipes params itself (json_wipe()).
 *
 * Returns 0 and *ret_result (a new reference to any JSON value, may hold tokens: release it with
 * json_wipe_and_decref()), or -EREMOTEIO with *reterr filled (when reterr is not NULL) when idmd
 * answered with an error object (also a connection-level refusal sent with id null), or a
 * transport failure, after which the connection is closed and c->error says why:
 *   -ETIMEDOUT     no complete reply within the request timeout
 *   -ECONNRESET    idmd closed the connection (or reset it) before replying
 *   -EMSGSIZE      the reply line is longer than IDM_MAX_REPLY
 *   -EBADMSG       the reply is not a JSON-RPC 2.0 response to this request (also an error
 *                  object without an integer code)
 *   -ENOTCONN      c is not connected
 *   -ENOMEM, -EINVAL (params neither an object nor an array, not serialisable, or the request
 *                  longer than c->max_request), other -errno from send(2), recv(2), poll(2)
 */
int idm_client_call(IdmClient *c, const char *method, json_t *params, json_t **ret_result, IdmError *reterr);

/* idm_client_call() that also hands out idmd's error object itself on -EREMOTEIO, in
 * *ret_error_object (a new reference; left NULL otherwise), for callers that show more of it
 * than IdmError keeps (idmctl: data.param, data.field, data.index). */
int idm_client_call_full(IdmClient *c, const char *method, json_t *params, json_t **ret_result, IdmError *reterr,
                         json_t **ret_error_object);

/* Closes the connection and wipes and frees the buffer; c keeps its settings and can be connected
 * again. NULL-safe. */
void idm_client_close(IdmClient *c);

/* Overwrites every string value inside v (recursively) with zero bytes, in place. NULL-safe. */
void json_wipe(json_t *v);

/* json_wipe() followed by json_decref(). For _cleanup_(json_wipe_and_decrefp). */
void json_wipe_and_decref(json_t *v);
static inline void json_wipe_and_decrefp(json_t **v) {
        json_wipe_and_decref(*v);
}
