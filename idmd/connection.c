/* SPDX-License-Identifier: MIT */
/*
 * Client connections of idmd: reading request lines within the protocol limits, keeping replies
 * in request order, writing with back-pressure (a budget of bytes owed to the client), the idle,
 * partial-line and write timeouts, and closing.
 *
 * Replies are serialized as soon as they are made, also those waiting behind an unfinished
 * earlier request, so that every byte owed to the client is counted (c->slot_bytes plus the
 * unwritten part of c->out) against CONNECTION_OUT_BUDGET.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "connection.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "workers.h"

#define READ_CHUNK 16384u
#define OUT_KEEP (64u * 1024u)          /* a larger output buffer is freed once it is written */

struct Slot {
        Slot *next;
        size_t n_items;         /* 0: single reply */
        size_t n_pending;
        size_t n_replies;       /* batch: replies in text so far (notifications have none) */
        char *text;             /* the reply, serialized; a batch: "[r1,r2" so far. NULL: none */
        size_t text_len, text_alloc;
};

static int connection_update_events(Connection *c);
static void connection_schedule_resume(Connection *c);
static void connection_io(Connection *c, uint32_t revents);

/* The sockets of all connections are in one epoll set of our own, which the event loop watches
 * as one source: the connections ready at the same time are served in one iteration of the loop
 * and with one epoll_wait(), as a plain epoll server would, instead of one iteration (and one
 * epoll_wait() of the loop's, which polls every ready socket again) per connection. There is one
 * event loop per process: the set is made with the first connection and goes with the last. */
#define POLL_BATCH 64
#define POLL_BUDGET_USEC 100

static struct {
        sd_event *event;
        sd_event_source *source;
        int fd;
        unsigned n_connections;
} poller = { .fd = -EBADF };

static int on_poller(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct epoll_event ev[POLL_BATCH];
        uint64_t start;
        int n;

        n = epoll_wait(poller.fd, ev, POLL_BATCH, 0);
        if (n < 0) {
                if (errno != EINTR)
                        log_error_errno(errno, "Waiting for client connections failed: %m");
                return 0;
        }
        /* A connection served may close another one (and drop the last reference to it): the
         * ones in this batch are kept until the batch is done. Closed ones have left the set. */
        for (int i = 0; i < n; i++)
                connection_ref(ev[i].data.ptr);
        /* Served until POLL_BUDGET_USEC is spent: the loop's other work (a slice of the store's
         * units, a timer) gets its turn before the rest, which the next epoll_wait() reports
         * again (the set is level-triggered), after the ones behind them in its ready list. */
        start = now_monotonic_usec();
        for (int i = 0; i < n; i++) {
                if (i > 0 && now_monotonic_usec() - start >= POLL_BUDGET_USEC)
                        break;
                connection_io(ev[i].data.ptr, ev[i].events);
        }
        for (int i = 0; i < n; i++)
                connection_unref(ev[i].data.ptr);
        return 0;
}

static int poller_ref(sd_event *event) {
        int r;

        if (poller.n_connections > 0) {
                if (poller.event != event)
                        return -EXDEV;  /* connections of a second event loop: not supported */
                poller.n_connections++;
                return 0;
        }
        poller.fd = epoll_create1(EPOLL_CLOEXEC);
        if (poller.fd < 0)
                return -errno;
        r = sd_event_add_io(event, &poller.source, poller.fd, EPOLLIN, on_poller, NULL);
        if (r < 0) {
                poller.fd = safe_close(poller.fd);
                return r;
        }
        (void) sd_event_source_set_description(poller.source, "connections");
        poller.event = event;
        poller.n_connections = 1;
        return 0;
}

static void poller_unref(void) {
        assert(poller.n_connections > 0);
        if (--poller.n_connections > 0)
                return;
        poller.source = sd_event_source_disable_unref(poller.source);
        poller.fd = safe_close(poller.fd);
        poller.event = NULL;
}

/* Watches c's socket for events (0: not at all). */
static int connection_poll(Connection *c, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.ptr = c };
        int op;

        if (events == c->poll_events)
                return 0;
        op = events == 0 ? EPOLL_CTL_DEL : c->poll_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if (epoll_ctl(poller.fd, op, c->fd, &ev) < 0)
                return -errno;
        c->poll_events = events;
        return 0;
}

/* Bytes of replies the client has not read yet: made but not written, and written to our
 * buffer but not to the socket. */
static size_t connection_owed(const Connection *c) {
        return c->out_len - c->out_pos + c->slot_bytes;
}

/* Whether another request line may be dispatched now. */
/* A line is dispatched only once the writes of the lines before it are durable, so a request
 * always sees what the requests before it on the same connection wrote (a JSON-RPC batch is one
 * line: its members run together). */
static bool connection_may_dispatch(const Connection *c) {
        return !c->closed && !c->closing && !c->manager->stopping && c->n_slots < CONNECTION_MAX_PENDING &&
               connection_owed(c) < CONNECTION_OUT_BUDGET && c->writes_pending == 0;
}

/* Whether the connection has nothing left to do: every reply written, and no request line left
 * (refused, stopping, or the client's EOF read and the lines before it answered: lines held
 * back by the budget are still answered after EOF). */
static bool connection_finished(const Connection *c) {
        return c->out_len == 0 && c->n_slots == 0 &&
               (c->closing || c->manager->stopping || (c->read_eof && c->in_len == 0));
}

/* Whether we read from the client now: not when it is refused, finished, or owed too much. */
static bool connection_wants_input(const Connection *c) {
        return !c->read_eof && connection_may_dispatch(c);
}

/* Request lines carry passwords and replies carry tokens: buffers are wiped before they are
 * freed, moved or resized. */
static void buffer_free(char **p, size_t alloc) {
        if (*p) {
                explicit_bzero(*p, alloc);
                free(*p);
        }
        *p = NULL;
}

/* Like realloc, but the old block is wiped before it is freed. */
static char *buffer_grow(char *p, size_t used, size_t old_alloc, size_t new_alloc) {
        char *n = malloc(new_alloc);

        if (!n)
                return NULL;
        if (p) {
                memcpy(n, p, used);
                explicit_bzero(p, old_alloc);
                free(p);
        }
        return n;
}

/* Drops unread input (a refused stream). */
static void input_discard(Connection *c) {
        if (c->in)
                explicit_bzero(c->in, c->in_len);
        c->in_len = c->in_scanned = 0;
        c->partial_since_usec = 0;
}
static int connection_arm_timer(Connection *c);
static void connection_process_input(Connection *c);

static void slot_free(Slot *s) {
        if (!s)
                return;
        buffer_free(&s->text, s->text_alloc);
        free(s);
}

/* Appends to a slot's text (wiped when it moves, like every buffer here). */
static int slot_append(Connection *c, Slot *s, const char *data, size_t len) {
        if (s->text_len + len > s->text_alloc) {
                size_t n = s->text_alloc ? s->text_alloc : 256;
                char *p;

                while (n < s->text_len + len)
                        n *= 2;
                p = buffer_grow(s->text, s->text_len, s->text_alloc, n);
                if (!p)
                        return -ENOMEM;
                s->text = p;
                s->text_alloc = n;
        }
        memcpy(s->text + s->text_len, data, len);
        s->text_len += len;
        c->slot_bytes += len;
        return 0;
}

/* Serializes one reply into its slot (a batch item goes after the ones already there). */
static int slot_add_reply(Connection *c, Slot *s, json_t *reply) {
        char *text;
        size_t len;
        int r;

        text = json_dumps(reply, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text);
        if (s->n_items > 0 && c->protocol->items_apart) {
                /* Each item is a message of its own. */
                r = slot_append(c, s, text, len);
                if (r >= 0)
                        r = slot_append(c, s, &c->protocol->terminator, 1);
                erase_and_free(text);
                if (r < 0)
                        return r;
                s->n_replies++;
                return 0;
        }
        if (s->n_items == 0 && !s->text) {
                /* A single reply: keep jansson's buffer as it is. */
                s->text = text;
                s->text_len = len;
                s->text_alloc = len + 1;
                c->slot_bytes += len;
                return 0;
        }
        r = slot_append(c, s, s->n_replies == 0 ? "[" : ",", 1);
        if (r >= 0)
                r = slot_append(c, s, text, len);
        erase_and_free(text);
        if (r < 0)
                return r;
        s->n_replies++;
        return 0;
}

/* The same for a reply given as text in parts (call_reply_text()). */
static int slot_add_iov(Connection *c, Slot *s, const struct iovec *iov, size_t n) {
        bool apart = s->n_items > 0 && c->protocol->items_apart;
        int r = 0;

        if (s->n_items > 0 && !apart)
                r = slot_append(c, s, s->n_replies == 0 ? "[" : ",", 1);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = slot_append(c, s, iov[i].iov_base, iov[i].iov_len);
        if (r >= 0 && apart)
                r = slot_append(c, s, &c->protocol->terminator, 1);
        if (r < 0)
                return r;
        if (s->n_items > 0)
                s->n_replies++;
        return 0;
}

static size_t rpc_max_message(const Manager *m) {
        return m->config->max_line;
}

static json_t *rpc_refusal(int code, const char *reason, const char *message) {
        return rpc_error_reply(NULL, code, reason, message);
}

const ConnectionProtocol connection_protocol_rpc = {
        .name = "JSON-RPC",
        .terminator = '\n',
        .unterminated_is_message = true,
        .max_message = rpc_max_message,
        .process = rpc_process_line,
        .refusal = rpc_refusal,
};

static void connection_free(Connection *c) {
        Slot *s;

        while ((s = c->slots_head)) {
                c->slots_head = s->next;
                slot_free(s);
        }
        buffer_free(&c->in, c->in_alloc);
        buffer_free(&c->out, c->out_alloc);
        free(c);
}

Connection *connection_ref(Connection *c) {
        if (c)
                c->n_ref++;
        return c;
}

Connection *connection_unref(Connection *c) {
        if (!c)
                return NULL;
        if (--c->n_ref == 0)
                connection_free(c);
        return NULL;
}

void connection_close(Connection *c) {
        if (c->closed)
                return;
        c->closed = true;
        (void) connection_poll(c, 0);
        poller_unref();
        c->timer_source = sd_event_source_disable_unref(c->timer_source);
        c->resume_source = sd_event_source_disable_unref(c->resume_source);
        c->fd = safe_close(c->fd);
        /* Buffers are not needed any more; slots stay until the last call has replied. */
        buffer_free(&c->in, c->in_alloc);
        c->in_len = c->in_alloc = c->in_scanned = 0;
        buffer_free(&c->out, c->out_alloc);
        c->out_len = c->out_alloc = c->out_pos = 0;
        /* Password checks still queued for this client would help nobody: dropped (their
         * calls are answered into the void). */
        if (c->manager->workers)
                (void) workers_cancel(c->manager->workers, c);
        log_debug("c%llu: closed", (unsigned long long) c->id);
        manager_connection_closed(c->manager, c);       /* drops the manager's reference */
}

static int out_append(Connection *c, const char *data, size_t len) {
        if (c->out_pos == c->out_len) {
                /* Nothing was owed: the write clock starts now. */
                c->out_pos = c->out_len = 0;
                c->write_progress_usec = now_monotonic_usec();
        }
        if (c->out_len + len > c->out_alloc && c->out_pos > 0) {
                /* Move what is still owed to the front rather than grow past what is owed. */
                size_t owed = c->out_len - c->out_pos;

                memmove(c->out, c->out + c->out_pos, owed);
                explicit_bzero(c->out + owed, c->out_len - owed);
                c->out_len = owed;
                c->out_pos = 0;
        }
        if (c->out_len + len > c->out_alloc) {
                size_t n = c->out_alloc ? c->out_alloc : 4096;
                char *p;

                while (n < c->out_len + len)
                        n *= 2;
                p = buffer_grow(c->out, c->out_len, c->out_alloc, n);
                if (!p)
                        return -ENOMEM;
                c->out = p;
                c->out_alloc = n;
        }
        memcpy(c->out + c->out_len, data, len);
        c->out_len += len;
        return 0;
}

/* Writes what can be written now. Returns < 0 if the connection had to be closed. */
static int connection_flush(Connection *c) {
        while (c->out_pos < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        log_debug_errno(errno, "c%llu: write failed: %m", (unsigned long long) c->id);
                        connection_close(c);
                        return -EPIPE;
                }
                if (n > 0)
                        c->write_progress_usec = now_monotonic_usec();
                c->out_pos += (size_t) n;
        }
        if (c->out_pos == c->out_len && c->out_len > 0) {
                explicit_bzero(c->out, c->out_len);
                c->out_pos = c->out_len = 0;
                /* A burst of big replies does not pin its buffer for the connection's lifetime. */
                if (c->out_alloc > OUT_KEEP) {
                        buffer_free(&c->out, c->out_alloc);
                        c->out_alloc = 0;
                }
                /* Everything owed is delivered: the idle clock starts now. */
                if (c->n_slots == 0)
                        c->last_activity_usec = now_monotonic_usec();
        }
        /* The idle clock (nothing owed) or the write clock (output owed) runs now. */
        (void) connection_arm_timer(c);

        if (connection_finished(c)) {
                connection_close(c);
                return -EPIPE;
        }
        return connection_update_events(c);
}

static void connection_write_ready_slots(Connection *c) {
        Slot *s;

        while ((s = c->slots_head) && s->n_pending == 0) {
                c->slots_head = s->next;
                if (!c->slots_head)
                        c->slots_tail = NULL;
                c->n_slots--;
                c->slot_bytes -= s->text_len;

                /* No text: a notification, or a batch of notifications (no reply at all). */
                /* One message: the array closed and terminated (items apart are terminated each). */
                bool whole = s->n_items == 0 || !c->protocol->items_apart;

                if (!c->closed && s->text &&
                    (out_append(c, s->text, s->text_len) < 0 ||
                     (whole && s->n_items > 0 && out_append(c, "]", 1) < 0) ||
                     (whole && out_append(c, &c->protocol->terminator, 1) < 0))) {
                        slot_free(s);
                        log_error("c%llu: out of memory writing a reply, closing", (unsigned long long) c->id);
                        connection_close(c);
                        return;
                }
                slot_free(s);
        }
        if (c->closed)
                return;
        /* Back-pressure released: lines already buffered go on, but from the event loop, never
         * from inside the reply that released it (its caller may hold a store snapshot). Not
         * while connection_process_input() runs: it goes on with the next line itself. */
        if (c->in_len > 0 && !c->closing && !c->processing)
                connection_schedule_resume(c);
        if (c->n_slots == 0 && c->out_len == 0) {      /* nothing to write (notifications) */
                c->last_activity_usec = now_monotonic_usec();
                (void) connection_arm_timer(c);
        }
        /* Replies made while connection_process_input() runs go out together when it is done
         * (one send for the pipelined lines of one read), unless they grow past OUT_KEEP. */
        if (c->processing && c->out_len - c->out_pos < OUT_KEEP)
                return;
        (void) connection_flush(c);
}

Slot *connection_add_slot(Connection *c, size_t batch_size) {
        Slot *s = calloc(1, sizeof(Slot));

        if (!s)
                return NULL;
        if (batch_size > 0) {
                s->n_items = batch_size;
                s->n_pending = batch_size;
        } else
                s->n_pending = 1;

        if (c->slots_tail)
                c->slots_tail->next = s;
        else
                c->slots_head = s;
        c->slots_tail = s;
        c->n_slots++;
        return s;
}

/* After one of s's replies was kept (r: slot_add_reply()'s or out_append()'s result): the
 * connection closes if it could not be, else the slot is one reply closer to being written. */
static void slot_reply_kept(Connection *c, Slot *s, int r) {
        if (r < 0) {
                log_error("c%llu: out of memory keeping a reply, closing", (unsigned long long) c->id);
                connection_close(c);
        }
        if (s->n_pending > 0)
                s->n_pending--;
        if (s->n_pending == 0 && s == c->slots_head)
                connection_write_ready_slots(c);
        else if (!c->closed)
                (void) connection_update_events(c);
}

void connection_slot_done(Connection *c, Slot *s, size_t index, json_t *reply) {
        /* Serialized now, so that it counts against the budget even while it waits for an
         * earlier request; a closed connection drops it. */
        int r = reply && !c->closed ? slot_add_reply(c, s, reply) : 0;

        json_decref(reply);
        slot_reply_kept(c, s, r);
}

void connection_slot_done_iov(Connection *c, Slot *s, size_t index, const struct iovec *iov, size_t n) {
        int r = 0;

        if (n > 0 && !c->closed) {
                if (s == c->slots_head && s->n_items == 0 && !s->text) {
                        /* The first reply owed, alone: straight into the output, with no slot
                         * text in between (the slot then goes without output). */
                        for (size_t i = 0; r >= 0 && i < n; i++)
                                r = out_append(c, iov[i].iov_base, iov[i].iov_len);
                        if (r >= 0)
                                r = out_append(c, &c->protocol->terminator, 1);
                } else
                        r = slot_add_iov(c, s, iov, n);
        }
        slot_reply_kept(c, s, r);
}

void connection_refuse(Connection *c, int code, const char *reason, const char *message) {
        Slot *s;

        if (c->closed || c->closing)
                return;
        /* Read nothing more; the refusal is answered after the replies still owed, in order. The
         * input is dropped by connection_process_input() when it is the caller. */
        c->closing = true;
        if (!c->processing)
                input_discard(c);
        s = connection_add_slot(c, 0);
        if (!s) {
                connection_close(c);
                return;
        }
        connection_slot_done(c, s, 0, c->protocol->refusal ? c->protocol->refusal(code, reason, message) : NULL);
}

void connection_drain(Connection *c) {
        if (c->closed)
                return;
        (void) connection_flush(c);
}

/* Over the line limit: say why and close; a stream cannot be resynchronised safely. */
static void refuse_overlong(Connection *c) {
        log_debug("c%llu: %s message over %zu bytes, closing", (unsigned long long) c->id, c->protocol->name,
                  c->protocol->max_message(c->manager));
        connection_refuse(c, IDM_RPC_INVALID_REQUEST, IDM_REASON_REQUEST_TOO_LARGE,
                          "request line exceeds the size limit");
}

/* Processes complete lines in the input buffer, as far as back-pressure allows: not while 64
 * requests are in flight or the replies owed reach the budget (checked before each line, so one
 * line's replies may go past it). Not reentrant: a reply sent synchronously from a handler does
 * not restart it. */
static void connection_process_input(Connection *c) {
        Manager *m = c->manager;
        size_t max = c->protocol->max_message(m);
        char term = c->protocol->terminator;
        size_t start = 0;

        if (c->processing || c->closed)
                return;
        c->processing = true;
        c->dispatch_blocked = false;

        for (;;) {
                char *nl;
                size_t len;

                if (!connection_may_dispatch(c)) {
                        /* Lines left wait until the client catches up (connection_update_events()). */
                        if (!c->closed && !c->closing && !m->stopping && start < c->in_len)
                                c->dispatch_blocked = true;
                        break;
                }
                nl = memchr(c->in + start + c->in_scanned, term, c->in_len - start - c->in_scanned);
                if (!nl) {
                        c->in_scanned = c->in_len - start;
                        break;
                }
                len = (size_t) (nl - (c->in + start));
                c->in_scanned = 0;

                if (len > max) {
                        start += len + 1;
                        refuse_overlong(c);
                        break;
                }
                if (term == '\n' && len > 0 && c->in[start + len - 1] == '\r')
                        c->protocol->process(c, c->in + start, len - 1);
                else
                        c->protocol->process(c, c->in + start, len);
                start += len + 1;
        }

        c->processing = false;
        if (c->closed)
                return;
        /* The replies made meanwhile, in one send (connection_write_ready_slots()). */
        if (c->out_pos < c->out_len)
                (void) connection_flush(c);
        if (c->closed)
                return;
        if (c->closing)
                input_discard(c);
        else if (start > 0) {
                memmove(c->in, c->in + start, c->in_len - start);
                explicit_bzero(c->in + c->in_len - start, start);
                c->in_len -= start;
        }
        if (c->in_len == 0)
                c->partial_since_usec = 0;
        else if (c->partial_since_usec == 0)
                c->partial_since_usec = now_monotonic_usec();

        if (c->closed)
                return;

        /* A partial line already longer than the limit: refuse it without waiting for its end. */
        if (c->in_len > max + 1 && !memchr(c->in, term, c->in_len)) {
                refuse_overlong(c);
                return;
        }
        if (!c->closed)
                (void) connection_arm_timer(c);
}

static int connection_read(Connection *c) {
        Manager *m = c->manager;
        size_t want = c->protocol->max_message(m) + 2;  /* a maximal line, its '\r\n' */

        if (c->in_len == c->in_alloc && c->in_alloc < want) {
                size_t n = c->in_alloc ? c->in_alloc * 2 : READ_CHUNK;
                char *p;

                if (n > want)
                        n = want;
                p = buffer_grow(c->in, c->in_len, c->in_alloc, n);
                if (!p)
                        return -ENOMEM;
                c->in = p;
                c->in_alloc = n;
        }

        if (c->in_len >= c->in_alloc)
                return 0;       /* full: process_input refuses the line */

        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_alloc - c->in_len, MSG_DONTWAIT);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return 0;
                return -errno;
        }
        if (n == 0) {
                c->read_eof = true;
                return 0;
        }
        c->in_len += (size_t) n;
        c->last_activity_usec = now_monotonic_usec();
        return 1;
}

static void connection_io(Connection *c, uint32_t revents) {
        if (c->closed)
                return;
        connection_ref(c);

        /* A peer that went away while we owe it replies: the write reports it (EPIPE). */
        if ((revents & EPOLLOUT) || ((revents & (EPOLLHUP | EPOLLERR)) && c->out_pos < c->out_len))
                (void) connection_flush(c);

        /* Paused (connection_update_events()) with EPOLLIN still on, and input came: it waits in
         * the socket, and the socket stops being watched for it until we read again. */
        if (!c->closed && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->read_paused) {
                c->read_stalled = true;
                (void) connection_update_events(c);
        } else if (!c->closed && (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                int r = connection_read(c);
                if (r < 0) {
                        log_debug_errno(r, "c%llu: read failed: %m", (unsigned long long) c->id);
                        connection_close(c);
                } else if (c->read_eof && c->in_len > 0 && !c->closed) {
                        /* A last line without '\n' is still a request; a varlink message is not
                         * one without its NUL (dropped). */
                        if (!c->protocol->unterminated_is_message)
                                input_discard(c);
                        else if (c->in_len < c->in_alloc) {
                                c->in[c->in_len++] = c->protocol->terminator;
                                connection_process_input(c);
                        }
                } else
                        connection_process_input(c);

                if (!c->closed && connection_finished(c))
                        connection_close(c);
                else if (!c->closed && c->read_eof && (revents & EPOLLHUP)) {
                        /* Hung up in both directions (not a half-close): nothing we owe can be
                         * delivered any more, so what is still queued for it is dropped. */
                        log_debug("c%llu: peer hung up with %zu replies owed, closing", (unsigned long long) c->id,
                                  (size_t) c->n_slots);
                        connection_close(c);
                } else if (!c->closed)
                        (void) connection_update_events(c);
        }

        connection_unref(c);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Connection *c = userdata;
        Manager *m = c->manager;

        c->timer_usec = UINT64_MAX;     /* a oneshot timer is off once it has fired */

        if (c->partial_since_usec > 0 && !c->read_paused &&
            usec >= c->partial_since_usec + m->config->partial_line_timeout_usec) {
                log_debug("c%llu: partial line timed out, closing", (unsigned long long) c->id);
                connection_refuse(c, IDM_RPC_INVALID_REQUEST, IDM_REASON_TIMEOUT, "incomplete request line timed out");
                return 0;
        }
        if (c->n_slots == 0 && c->out_len == 0 && usec >= c->last_activity_usec + m->config->idle_timeout_usec) {
                log_debug("c%llu: idle, closing", (unsigned long long) c->id);
                connection_close(c);
                return 0;
        }
        if (c->out_pos < c->out_len && usec >= c->write_progress_usec + m->config->write_timeout_usec) {
                log_info("c%llu: uid %u has not read its replies for %llu s, closing.", (unsigned long long) c->id,
                         (unsigned) c->peer.uid,
                         (unsigned long long) (m->config->write_timeout_usec / 1000000ULL));
                connection_close(c);
                return 0;
        }
        (void) connection_arm_timer(c);
        return 0;
}

/* The idle deadline counts only while nothing is owed to the client (a long hash is not idleness);
 * the write deadline while replies wait in our buffer for the client to read them (the clock
 * restarts whenever a write makes progress); the partial-line deadline counts whenever a line is
 * incomplete. */
static int connection_arm_timer(Connection *c) {
        Manager *m = c->manager;
        uint64_t deadline = UINT64_MAX;
        int r;

        if (c->n_slots == 0 && c->out_len == 0)
                deadline = c->last_activity_usec + m->config->idle_timeout_usec;
        if (c->out_pos < c->out_len) {
                uint64_t w = c->write_progress_usec + m->config->write_timeout_usec;
                if (w < deadline)
                        deadline = w;
        }
        /* The partial-line clock stops while we do not read (back-pressure): the rest of the line
         * may be waiting in the socket for us. */
        if (c->partial_since_usec > 0 && !c->read_paused) {
                uint64_t p = c->partial_since_usec + m->config->partial_line_timeout_usec;
                if (p < deadline)
                        deadline = p;
        }
        /* A timer already armed for an earlier time stays: on_timer() checks what is due and arms
         * it again. So the deadlines pushed back by every request do not touch the event loop's
         * timer queue each time (at most one early wake-up per connection and timeout). */
        if (c->timer_usec <= deadline)
                return 0;
        if (deadline == UINT64_MAX)
                return 0;       /* c->timer_usec is UINT64_MAX too: off already */
        if (!c->timer_source) {
                r = sd_event_add_time(m->event, &c->timer_source, CLOCK_MONOTONIC, deadline, 0, on_timer, c);
                if (r >= 0)
                        c->timer_usec = deadline;
                return r;
        }
        (void) sd_event_source_set_time(c->timer_source, deadline);
        r = sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
        if (r >= 0)
                c->timer_usec = deadline;
        return r;
}

static int on_resume(sd_event_source *s, void *userdata) {
        Connection *c = connection_ref(userdata);

        if (!c->closed) {
                connection_process_input(c);
                if (!c->closed)
                        (void) connection_update_events(c);
        }
        connection_unref(c);
        return 0;
}

static void connection_schedule_resume(Connection *c) {
        if (c->closed)
                return;
        if (!c->resume_source) {
                if (sd_event_add_defer(c->manager->event, &c->resume_source, on_resume, c) < 0) {
                        log_error("c%llu: cannot schedule input processing, closing", (unsigned long long) c->id);
                        connection_close(c);
                }
                return;         /* a new defer source starts enabled (ONESHOT) */
        }
        (void) sd_event_source_set_enabled(c->resume_source, SD_EVENT_ONESHOT);
}

static int connection_update_events(Connection *c) {
        uint32_t events = 0;
        bool reading;

        if (c->closed)
                return 0;
        /* The client caught up: lines already read go on, from the event loop. */
        if (c->dispatch_blocked && connection_may_dispatch(c)) {
                c->dispatch_blocked = false;
                connection_schedule_resume(c);
        }
        reading = connection_wants_input(c);
        if (reading && c->read_paused) {
                /* Back-pressure is over: a partial line gets its full time again, counted from
                 * now, since we were the ones not reading. */
                c->read_paused = false;
                if (c->partial_since_usec > 0) {
                        c->partial_since_usec = now_monotonic_usec();
                        (void) connection_arm_timer(c);
                }
        } else if (!reading && !c->read_paused && !c->read_eof && !c->closing) {
                c->read_paused = true;
                (void) connection_arm_timer(c);
        }
        /* The pause is lazy: the socket stays watched for input until some comes while we are
         * not reading (connection_io()). A client that waits for its reply, as nearly all do,
         * sends nothing meanwhile, so pausing and resuming around a write's commit costs no
         * epoll_ctl() at all, instead of two per request. */
        if (reading)
                c->read_stalled = false;
        if (reading || (c->read_paused && !c->read_stalled && (c->poll_events & EPOLLIN)))
                events |= EPOLLIN;
        if (c->out_len > c->out_pos)
                events |= EPOLLOUT;
        return connection_poll(c, events);
}

int connection_new(Manager *m, int fd, const ConnectionProtocol *protocol, Connection **ret) {
        Connection *c;
        int r;

        c = calloc(1, sizeof(Connection));
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->n_ref = 1;   /* the manager's */
        c->manager = m;
        c->protocol = protocol;
        c->fd = fd;
        c->id = ++m->next_connection_id;
        c->last_activity_usec = c->write_progress_usec = now_monotonic_usec();
        c->timer_usec = UINT64_MAX;

        r = poller_ref(m->event);
        if (r < 0) {
                safe_close(c->fd);
                connection_free(c);
                return r;
        }
        r = connection_poll(c, EPOLLIN);
        if (r >= 0)
                r = connection_arm_timer(c);
        if (r < 0)
                goto fail;

        *ret = c;
        return 0;
fail:
        (void) connection_poll(c, 0);
        poller_unref();
        c->timer_source = sd_event_source_disable_unref(c->timer_source);
        safe_close(c->fd);
        connection_free(c);
        return r;
}

void connection_write_begin(Connection *c) {
        c->writes_pending++;
}

void connection_write_end(Connection *c) {
        assert(c->writes_pending > 0);
        if (c->writes_pending > 0)
                c->writes_pending--;
        if (c->writes_pending == 0 && !c->closed)
                (void) connection_update_events(c);
}
