/* SPDX-License-Identifier: MIT */
/*
 * One client connection: reading newline-delimited requests within the protocol limits (line
 * size, partial-line, idle and write timeouts), queueing their replies in request order, writing
 * them with back-pressure (no reading and no dispatching while too many replies are pending or
 * too many bytes are owed to the client), and closing.
 *
 * Memory per connection: the input buffer (at most max_line + 2 bytes) plus the replies owed
 * (written to the socket or not yet). Requests are dispatched only while less than
 * CONNECTION_OUT_BUDGET bytes are owed, so the replies owed stay below the budget plus the
 * replies of one line (a batch: up to max_batch replies) plus those of calls already in flight.
 * A client that owes us reading and makes no progress for write_timeout is disconnected.
 *
 * A Connection is reference counted: calls in flight keep it alive after it was closed, so a
 * late reply finds a closed connection (and is dropped) rather than freed memory.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "ratelimit.h"
#include "rpc.h"

/* What is spoken on a connection: idmd's JSON-RPC lines on the main socket, varlink messages on
 * the userdb socket (userdb.h). The limits, timeouts, reply order and back-pressure are the
 * same for both. */
typedef struct ConnectionProtocol {
        const char *name;               /* for the log */
        char terminator;                /* ends each message: '\n' (JSON-RPC) or '\0' (varlink) */
        bool items_apart;               /* a slot's items go out as messages of their own, each
                                         * with its terminator (varlink's "continues"), instead
                                         * of one JSON array (a JSON-RPC batch) */
        bool unterminated_is_message;   /* at EOF, an unterminated last message is still one */
        /* The largest message, terminator excluded: a longer one closes the connection. */
        size_t (*max_message)(const Manager *m);
        /* Processes one complete message (without its terminator; a '\r' before a '\n' is
         * dropped too). Never fails: bad input becomes error replies or connection_refuse(). */
        void (*process)(Connection *c, const char *msg, size_t len);
        /* The last reply of a refused connection (new reference), or NULL for none. */
        json_t *(*refusal)(int code, const char *reason, const char *message);
} ConnectionProtocol;

extern const ConnectionProtocol connection_protocol_rpc;

#define CONNECTION_MAX_PENDING 64       /* requests in flight per connection before we stop reading */
#define CONNECTION_OUT_BUDGET (1024u * 1024u) /* bytes of replies owed before we stop dispatching */

struct Connection {
        unsigned n_ref;
        Manager *manager;
        const ConnectionProtocol *protocol;
        Connection *prev, *next;
        uint64_t id;
        int fd;
        Peer peer;
        bool closed;
        bool closing;                   /* refused: no more requests; close once replies are out */
        bool read_eof;

        uint32_t poll_events;           /* what its socket is watched for (0: not watched) */
        sd_event_source *timer_source;
        uint64_t timer_usec;            /* when timer_source fires (it may be early: on_timer()
                                         * checks); UINT64_MAX: off */
        sd_event_source *resume_source; /* processes buffered lines once back-pressure ends */
        uint64_t last_activity_usec;    /* CLOCK_MONOTONIC */
        uint64_t partial_since_usec;    /* 0: no partial line */
        uint64_t write_progress_usec;   /* CLOCK_MONOTONIC: last write progress while output is owed */
        bool read_paused;               /* not reading because of back-pressure */
        bool read_stalled;              /* input came while paused: EPOLLIN is off until we read again */
        bool dispatch_blocked;          /* complete lines wait in 'in' because of back-pressure */

        char *in;
        size_t in_len, in_alloc;
        size_t in_scanned;              /* bytes of in already searched for '\n' */
        bool processing;                /* inside connection_process_input() */

        char *out;
        size_t out_len, out_alloc, out_pos;    /* out[out_pos..out_len) is still to be written */
        size_t slot_bytes;              /* serialized replies waiting in slots behind an unfinished one */

        Slot *slots_head, *slots_tail;  /* replies in request order */
        unsigned n_slots;
        unsigned writes_pending;        /* units of work submitted for it and not yet durable */
        uint64_t next_call_seq;
        RateLimitSource uid_rate_source;        /* rpc.c: what its calls naming no address are
                                                 * counted against, made once */
        bool uid_rate_source_set;
};

int connection_new(Manager *m, int fd, const ConnectionProtocol *protocol, Connection **ret);  /* takes fd */
Connection *connection_ref(Connection *c);
Connection *connection_unref(Connection *c);

/* Closes the socket and stops the sources now; pending replies are dropped. */
void connection_close(Connection *c);

/* Refuses the rest of the stream (a limit was hit): nothing more is read, the replies still
 * owed are sent in order, then this error (id null; none for a protocol without refusal()), then
 * the connection is closed. */
void connection_refuse(Connection *c, int code, const char *reason, const char *message);

/* A unit of work was submitted for a request of c / is durable now: while one is pending, no
 * further line of c is dispatched (its requests see their predecessors' writes). */
void connection_write_begin(Connection *c);
void connection_write_end(Connection *c);

/* During shutdown: stop reading; close once every pending reply is written. */
void connection_drain(Connection *c);

/* For rpc.c and userdb.c: a new slot at the tail (batch: n items, else 0). NULL on OOM. */
Slot *connection_add_slot(Connection *c, size_t batch_size);
/* Sets a slot's reply (a single reply JSON object, or one batch item at index), and flushes
 * completed slots at the head. reply may be NULL for a notification (no output). */
void connection_slot_done(Connection *c, Slot *s, size_t index, json_t *reply);
/* The same with the reply already serialized, in n parts (n == 0: a notification). */
struct iovec;
void connection_slot_done_iov(Connection *c, Slot *s, size_t index, const struct iovec *iov, size_t n);
