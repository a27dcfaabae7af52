/* SPDX-License-Identifier: MIT */
/*
 * The durable mail outbox: messages queued in the store in the same unit of work as what they
 * announce (a password-reset token), and delivered after that unit commits by a worker thread that
 * pipes each one to [mail] mail_command, never on the event loop.
 *
 * outbox.c owns the STORE_OUTBOX table (docs/store.md): key "<16 lower-case hex digits>", the
 * enqueue time in µs made strictly increasing, so key order is FIFO order; the record
 * {to, kind, publisherId?, locale?, created, attempts, nextAttempt, lastError?, message}, message
 * being the whole composed RFC 5322 text (mail.h), rendered when queued. The message holds the
 * link or code it carries, a secret: it is in the store only until the command accepted it (exit
 * status 0) or it is dropped, and it is never logged nor returned by any method.
 *
 * Delivery: one message at a time, oldest due first. The loop picks it from a read snapshot and
 * hands a copy to the thread, which runs the command (command.h) with the [mail] timeout; the
 * record is deleted in a unit of work only after the command exited 0, otherwise attempts and
 * lastError are updated and nextAttempt moved by an exponential back-off (retry_initial, doubled
 * per failed attempt, at most retry_max). Messages older than max_age are dropped with a log line.
 * A crash between the command's success and the delete sends that message again at the next
 * start (at least once); nothing else is sent twice.
 *
 * Threads: every function here is for the event-loop thread; the thread only runs the command.
 */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "idm/cleanup.h"
#include "store.h"

typedef struct Manager Manager;
typedef struct Outbox Outbox;

/* Queues one message in the unit of work t (a write: store.h), to be delivered after it commits.
 * kind names the template ("password-reset"); publisher_id and locale (may be NULL) choose the
 * template variant; to is the recipient address; vars is an object of placeholder values
 * (strings/integers): for password-reset {link?, code?, email, publisherName, expiresMinutes}.
 * Returns 0, -EINVAL for an address or value that cannot go into a header (CR/LF, ...), or the
 * store's errors. Deterministic apart from the store (may be run twice).
 *
 * In detail: -EINVAL also for a kind, publisher_id or locale that is not a plain word (mail.h),
 * a value that is not a string or integer, is longer than 4096 bytes or holds a control
 * character; -ENOMSG when there is no template for kind (never for password-reset, which is
 * built in; not -ENOENT, so that it cannot pass for a record the caller's unit did not find); -EMSGSIZE when the message would exceed
 * 1 MiB; -ENOSPC when [mail] max_queued messages are queued already (idmd answers 503
 * store_full). The time and the random Message-ID are taken anew on each run: only the run that
 * commits counts. Uses the templates and settings of the running outbox (outbox_new()); without
 * one, the built-in templates, "idmd@localhost" and a bound of 10000. Nothing is logged. */
int outbox_queue(StoreTxn *t, const char *kind, const char *publisher_id, const char *locale, const char *to,
                 json_t *vars);

/* Tells the delivery worker to look at the outbox now: call it from the loop after a unit of work
 * that queued a message committed (its done function, r >= 0). Cheap; NULL-safe; does nothing
 * before startup or while stopping. */
void outbox_kick(Manager *m);

/* Sets up the outbox of m from m->config: reads the templates, splits mail_command, starts the
 * delivery thread and schedules a first look (messages left by an earlier run are delivered).
 * Logs its own errors: a template_dir that cannot be read, or a bad template, refuses start
 * (-errno). Needs m->store and m->event. */
int outbox_new(Manager *m, Outbox **ret);

/* On SIGHUP, with the new configuration c: templates, mail_command, from and max_queued as c
 * says (timeouts and retry delays are read from the running configuration when used). A
 * delivery under way finishes with the command it started with. Logs its own errors; on one
 * (a template_dir that cannot be read, a bad template or command) nothing changes. -errno. */
int outbox_reload(Outbox *o, const Config *c);

/* On SIGTERM: no new delivery starts; one in flight gets OUTBOX_STOP_GRACE_USEC more (within its
 * timeout) to finish, then its command is killed and the message stays queued as it was (not
 * counted as a failed attempt: it is due at the next start). */
#define OUTBOX_STOP_GRACE_USEC (5ULL * 1000000ULL)
void outbox_stop(Outbox *o);

/* Stops (as outbox_stop()), waits for a delivery in flight, records its outcome in the store
 * (store_flush()) and frees. NULL-safe. Call before the store is freed. */
Outbox *outbox_free(Outbox *o);
DEFINE_POINTER_CLEANUP(Outbox, outbox_free)

/* --- for the admin methods (methods/outbox.c) and getStats --- */

#define OUTBOX_ID_LEN 16

/* A page of queued messages in queue order after the id cursor (NULL: from the first), at most
 * limit: *ret_items an array of {id, to, kind, publisherId, locale, created, attempts,
 * nextAttempt, lastError} (dates RFC 3339; never the message), *ret_cursor the last id when there
 * may be more, else NULL (a new string). The store's errors. */
int outbox_list(StoreTxn *t, const char *cursor, size_t limit, json_t **ret_items, char **ret_cursor);

/* Makes the message id (NULL: every message) due at now_usec. *ret_n: how many. -ENOENT for an
 * id that is not queued; the store's errors. */
int outbox_retry(StoreTxn *t, const char *id, uint64_t now_usec, unsigned *ret_n);

/* Deletes the message id. -ENOENT when it is not queued; the store's errors. */
int outbox_drop(StoreTxn *t, const char *id);

typedef struct OutboxStats {
        uint64_t depth;                 /* messages queued */
        uint64_t oldest_created_usec;   /* 0: none queued */
        uint64_t delivered;             /* since start: accepted by the command (exit 0) */
        uint64_t failed_attempts;       /* since start: attempts that failed */
        uint64_t expired;               /* since start: dropped for max_age */
        uint64_t dropped;               /* since start: dropped by dropOutbox */
        bool in_flight;                 /* a command is running */
} OutboxStats;

/* From a read snapshot t (depth and oldest) and o's counters (o may be NULL). The store's errors. */
int outbox_stats(Outbox *o, StoreTxn *t, OutboxStats *ret);

/* For dropOutbox's count in getStats. */
void outbox_note_dropped(Outbox *o);
