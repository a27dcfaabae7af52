/* SPDX-License-Identifier: MIT */
/*
 * Coroutines on idmd's event loop, for work that waits on a network store (PostgreSQL).
 *
 * A request handler reads and writes the store in plain sequential code (store.h). On LMDB
 * every store call returns at once. On PostgreSQL each statement is a round trip; a handler
 * that runs in a coroutine waits for the server's answer with coro_wait_fd(), which gives the
 * event loop back until the socket is ready, so other requests go on meanwhile. Everything
 * still runs on the loop's one thread: a coroutine only ever yields inside coro_wait_fd(), so
 * code between two store calls runs without anything else interleaving, as it always has.
 *
 * Outside a coroutine (start-up, tools, tests, and the loop's own callbacks) coro_wait_fd()
 * waits with poll(): the same code works blocking.
 *
 * Bounds: at most CORO_MAX coroutines are alive at once (coro_start() gives -EAGAIN beyond);
 * each has a stack of CORO_STACK_SIZE bytes of address space with a guard page below it, of
 * which only the pages it touches take memory; up to CORO_STACKS_KEPT stacks are kept for
 * reuse, with their pages for CORO_STACKS_TRIM_USEC (a coroutine per request would otherwise
 * fault its stack in again each time), then without. One event loop per thread
 * (coro_set_event(); setting another, or NULL, gives the kept stacks' pages back at once).
 *
 * Errors: -EAGAIN (too many alive), -ENOMEM, -ETIMEDOUT (coro_wait_fd), sd-event's errors.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct sd_event sd_event;

#define CORO_MAX 1024u
#define CORO_STACK_SIZE (256u * 1024u)
#define CORO_STACKS_KEPT 32u
#define CORO_STACKS_TRIM_USEC (10ULL * 1000000ULL)

typedef void (*CoroFn)(void *userdata);

/* The loop coroutines wait on, for this thread (NULL: none, coro_wait_fd() polls). */
void coro_set_event(sd_event *event);

/* Runs fn(userdata) in a new coroutine, at once: it returns here when fn ends or first waits.
 * From a coroutine too (the new one then returns to it). */
int coro_start(CoroFn fn, void *userdata);

/* Whether the caller runs in a coroutine; an identity for it (NULL outside), which stays the
 * same until it ends. */
bool coro_running(void);
const void *coro_self(void);

/* Waits until fd is ready for events (EPOLLIN, EPOLLOUT) or timeout_usec has passed: in a
 * coroutine by giving the loop back, else with poll(). One coroutine waits on an fd at a time
 * (the loop's epoll holds each fd once: a second waiter gets -EEXIST). 0, -ETIMEDOUT, -errno. */
int coro_wait_fd(int fd, uint32_t events, uint64_t timeout_usec);

/* A descriptor that coroutines wait on again and again, one at a time (a database connection's
 * socket): its io source is added to the loop at the first wait in a coroutine and stays there
 * between waits, so a wait costs no epoll_ctl() while the events asked for stay the same
 * (coro_wait_fd() adds and removes one per wait). The source is level-triggered: when the
 * descriptor becomes ready while nobody waits (an answer the owner reads later), idle(userdata)
 * is called on the loop to take in what arrived (it must read the descriptor until it is no
 * longer ready, or return < 0); if it fails, the source is taken off the loop until the next
 * wait. The owner frees it (coro_fd_free()) before it closes the descriptor, never while a
 * coroutine waits on it. Outside a coroutine a wait polls, as coro_wait_fd() does. */
typedef struct CoroFd CoroFd;
typedef int (*CoroFdIdleFn)(void *userdata);
int coro_fd_new(int fd, CoroFdIdleFn idle, void *userdata, CoroFd **ret);       /* -EBADF, -ENOMEM */
CoroFd *coro_fd_free(CoroFd *f);                                                /* NULL-safe, NULL */
/* As coro_wait_fd(); -EBUSY while another coroutine waits on f. */
int coro_fd_wait(CoroFd *f, uint32_t events, uint64_t timeout_usec);

/* Waits usec: in a coroutine by giving the loop back, else with nanosleep(). 0 or -errno. */
int coro_sleep(uint64_t usec);

/* Coroutines waiting their turn for something (a free database connection), first come, first
 * served. Zero-initialized. */
typedef struct CoroQueue {
        void *head;
} CoroQueue;

/* Waits in q until coro_queue_wake() picks this coroutine, or timeout_usec passes (-ETIMEDOUT).
 * Only in a coroutine on a loop: elsewhere nothing could wake the caller, -EAGAIN. */
int coro_queue_wait(CoroQueue *q, uint64_t timeout_usec);
/* Wakes the first coroutine waiting in q (it resumes from the loop, soon). false: none waits. */
bool coro_queue_wake(CoroQueue *q);

/* The number of coroutines alive (started and not ended), and of those waiting. */
unsigned coro_alive(void);
/* The stacks kept for reuse, and of those the ones still holding the pages they touched. */
unsigned coro_stacks_kept(unsigned *ret_with_pages);

/* Runs every coroutine waiting on this thread to its end, waiting for their fds with poll()
 * (the event loop is not run): for shutting down after the loop ended. */
void coro_drain(void);

/* Frees the stacks kept for reuse (at exit; coroutines still alive keep theirs). */
void coro_release_stacks(void);
