/* SPDX-License-Identifier: MIT */
/*
 * systemd's user database served from idmd's store: the io.systemd.UserDatabase varlink
 * interface (GetUserRecord, GetGroupRecord, GetMemberships) on [userdb] socket, so the stock
 * nss-systemd resolves the customers who are Unix users (records/unixusers.h) for login, sshd
 * and every other program, with no NSS module of ours loaded anywhere. docs/userdb.md describes
 * the records and the errors.
 *
 * Framing and limits are connection.c's, with userdb_protocol: JSON objects ended by a NUL byte,
 * at most USERDB_MAX_MESSAGE bytes each (a longer one, bad JSON, or a message that is not a
 * varlink call closes the connection without a reply, as systemd does), the same connection
 * limits and timeouts as idmd's socket. Every lookup is a short read of one snapshot, charged to
 * the peer's uid in the rate-limit class "userdb" before it is made; over the limit the answer
 * is io.systemd.UserDatabase.ServiceNotAvailable. Replies never carry a secret.
 *
 * idmd itself never resolves users through NSS (it would ask itself): see outbox.c for the
 * SYSTEMD_BYPASS_USERDB it sets for the mail command.
 */
#pragma once

#include "connection.h"
#include "records/unixusers.h"

#define USERDB_FD_NAME "userdb"                 /* FileDescriptorName= of the socket unit */
#define USERDB_MAX_MESSAGE (16u * 1024u)        /* bytes of one request, its NUL excluded */
#define USERDB_ENUMERATE_MAX 10000u             /* records one enumeration answers, at most */

extern const ConnectionProtocol userdb_protocol;

/* The uid range of a configuration ([userdb] uid_min, uid_max). */
#define USERDB_UID_RANGE(c) \
        ((UnixUidRange) { .min = (uint32_t) (c)->userdb_uid_min, .max = (uint32_t) (c)->userdb_uid_max })

/* The service name records carry: the socket's file name ("io.idm"). NULL when userdb is off. */
const char *userdb_service(const Config *c);

/* At start, with the store open: logs what will make every lookup come back empty ([userdb]
 * publisher missing, or its unixUsers "none"). Nothing when userdb is off. */
void userdb_log_setup(Manager *m);
