/* SPDX-License-Identifier: MIT */
/*
 * idmctl's transport: one AF_UNIX stream connection to idmd carrying newline-delimited
 * JSON-RPC 2.0, one request at a time, every wait bounded by the caller's timeout.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "idm/cleanup.h"

typedef struct IdmClient IdmClient;

/* Connects to the socket at path. timeout_usec bounds the connect (a full listen backlog) and,
 * later, each idm_client_call() as a whole; 0 means no limit.
 * Returns 0 and *ret on success, or -errno from socket()/connect() (-ENOENT, -ECONNREFUSED,
 * -EACCES, ...), -ENAMETOOLONG when path does not fit a sockaddr_un, -ETIMEDOUT, -ENOMEM. */
int idm_client_connect(const char *path, uint64_t timeout_usec, IdmClient **ret);

/* Closes the connection and frees c (NULL is fine). Received bytes are wiped: replies may carry
 * tokens. Returns NULL. */
IdmClient *idm_client_free(IdmClient *c);
DEFINE_POINTER_CLEANUP(IdmClient, idm_client_free);

/* Sends {"jsonrpc":"2.0","id":N,"method":method,"params":params} and waits for its reply.
 * params is borrowed and may be NULL (the member is then left out).
 * Returns:
 *   0            *ret_result holds the result (a new reference; any JSON value);
 *   -EREMOTEIO   the daemon answered with an error: *reterr_error holds the error object (a new
 *                reference) - also for a connection-level refusal sent with id null;
 *   -ETIMEDOUT   no complete reply within the timeout;
 *   -ECONNRESET  the daemon closed the connection before replying;
 *   -EMSGSIZE    the reply line exceeds IDM_MAX_REPLY;
 *   -EBADMSG     the reply is not JSON-RPC, or answers another id;
 *   -ENOMEM, or -errno from send()/recv()/poll(). */
int idm_client_call(IdmClient *c, const char *method, json_t *params, json_t **ret_result,
                    json_t **reterr_error);
