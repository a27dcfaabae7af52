/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of idmd/coro.c: coroutines that run at once, wait on a pipe while an sd-event loop
 * serves others, time out, start one another, wait with poll() outside a coroutine or outside
 * the loop, wait again and again on a kept descriptor, are bounded in number, use their whole
 * stack, and are drained at shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "idm/cleanup.h"
#include "idmd/coro.h"
#include "tests.h"

typedef struct Waiter {
        int fd;
        uint64_t timeout_usec;
        int result;
        unsigned steps;
        const void *self;
        bool ended;
} Waiter;

static void wait_once(void *userdata) {
        Waiter *w = userdata;
        char c;

        w->self = coro_self();
        ASSERT_TRUE(coro_running());
        w->steps++;
        w->result = coro_wait_fd(w->fd, EPOLLIN, w->timeout_usec);
        ASSERT_TRUE(coro_self() == w->self);
        w->steps++;
        if (w->result == 0)
                ASSERT_EQ(read(w->fd, &c, 1), 1);
        w->ended = true;
}

static void run_plain(void *userdata) {
        Waiter *w = userdata;

        w->self = coro_self();
        w->ended = true;
}

static int write_pipe(sd_event_source *s, uint64_t usec, void *userdata) {
        ASSERT_EQ(write(*(int *) userdata, "x", 1), 1);
        return 0;
}

static int exit_when_done(sd_event_source *s, void *userdata) {
        Waiter *w = userdata;

        if (w->ended)
                (void) sd_event_exit(sd_event_source_get_event(s), 0);
        return 0;
}

TEST(start_and_end) {
        Waiter a = { .fd = -1 }, b = { .fd = -1 };

        ASSERT_FALSE(coro_running());
        ASSERT_TRUE(!coro_self());
        ASSERT_OK(coro_start(run_plain, &a));
        ASSERT_OK(coro_start(run_plain, &b));
        ASSERT_TRUE(a.ended && b.ended);
        ASSERT_TRUE(a.self && b.self);
        ASSERT_EQ(coro_alive(), 0);
        ASSERT_EQ(coro_start(NULL, NULL), -EINVAL);
}

TEST(wait_on_loop) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *t = NULL, *post = NULL;
        int p[2];
        Waiter w = {};

        ASSERT_OK(pipe(p));
        ASSERT_OK(sd_event_new(&e));
        coro_set_event(e);
        w = (Waiter) { .fd = p[0], .timeout_usec = 10 * 1000 * 1000 };
        ASSERT_OK(coro_start(wait_once, &w));
        /* It returned here at its wait. */
        ASSERT_EQ(w.steps, 1);
        ASSERT_EQ(coro_alive(), 1);
        ASSERT_OK(sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, 20 * 1000, 0, write_pipe, &p[1]));
        ASSERT_OK(sd_event_add_post(e, &post, exit_when_done, &w));
        ASSERT_OK(sd_event_loop(e));
        ASSERT_EQ(w.steps, 2);
        ASSERT_EQ(w.result, 0);
        ASSERT_TRUE(w.ended);
        ASSERT_EQ(coro_alive(), 0);
        coro_set_event(NULL);
        (void) close(p[0]);
        (void) close(p[1]);
}

TEST(timeout_on_loop) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *post = NULL;
        int p[2];
        Waiter w;

        ASSERT_OK(pipe(p));
        ASSERT_OK(sd_event_new(&e));
        coro_set_event(e);
        w = (Waiter) { .fd = p[0], .timeout_usec = 20 * 1000 };
        ASSERT_OK(coro_start(wait_once, &w));
        ASSERT_OK(sd_event_add_post(e, &post, exit_when_done, &w));
        ASSERT_OK(sd_event_loop(e));
        ASSERT_EQ(w.result, -ETIMEDOUT);
        ASSERT_EQ(coro_alive(), 0);
        coro_set_event(NULL);
        (void) close(p[0]);
        (void) close(p[1]);
}

/* A coroutine starts another that waits: the starter goes on at once. */
typedef struct Nest {
        Waiter inner;
        bool outer_went_on;
} Nest;

static void outer(void *userdata) {
        Nest *n = userdata;

        ASSERT_OK(coro_start(wait_once, &n->inner));
        ASSERT_EQ(n->inner.steps, 1);
        n->outer_went_on = true;
}

TEST(nested) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *post = NULL;
        int p[2];
        Nest n = {};

        ASSERT_OK(pipe(p));
        ASSERT_OK(sd_event_new(&e));
        coro_set_event(e);
        n.inner = (Waiter) { .fd = p[0], .timeout_usec = 10 * 1000 * 1000 };
        ASSERT_OK(coro_start(outer, &n));
        ASSERT_TRUE(n.outer_went_on);
        ASSERT_EQ(coro_alive(), 1);
        ASSERT_EQ(write(p[1], "x", 1), 1);
        ASSERT_OK(sd_event_add_post(e, &post, exit_when_done, &n.inner));
        ASSERT_OK(sd_event_loop(e));
        ASSERT_EQ(n.inner.result, 0);
        ASSERT_EQ(coro_alive(), 0);
        coro_set_event(NULL);
        (void) close(p[0]);
        (void) close(p[1]);
}

/* A kept descriptor (coro_fd_*): its source stays on the loop between waits, what arrives while
 * nobody waits goes to its idle function, and it comes off the loop when that fails or it is
 * freed. */
typedef struct FdUser {
        CoroFd *f;
        int fd;
        unsigned waits;
        uint64_t timeout_usec;
        int results[3];
        unsigned idle_calls;
        bool idle_fails;
        bool ended;
} FdUser;

static int fd_idle(void *userdata) {
        FdUser *u = userdata;
        char c;

        u->idle_calls++;
        if (u->idle_fails)
                return -EIO;
        return read(u->fd, &c, 1) == 1 ? 0 : -errno;
}

static void wait_kept(void *userdata) {
        FdUser *u = userdata;
        char c;

        for (unsigned i = 0; i < u->waits; i++) {
                u->results[i] = coro_fd_wait(u->f, EPOLLIN, u->timeout_usec);
                if (u->results[i] == 0)
                        ASSERT_EQ(read(u->fd, &c, 1), 1);
        }
        u->ended = true;
}

static void wait_kept_out(void *userdata) {
        FdUser *u = userdata;

        u->results[0] = coro_fd_wait(u->f, EPOLLOUT, u->timeout_usec);
        u->ended = true;
}

static void wait_kept_busy(void *userdata) {
        ASSERT_EQ(coro_fd_wait(userdata, EPOLLIN, 1000 * 1000), -EBUSY);
}

TEST(kept_fd) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        FdUser u = {}, v = {};
        Waiter w;
        int p[2];
        char c;

        ASSERT_OK(pipe2(p, O_NONBLOCK));
        ASSERT_OK(sd_event_new(&e));
        coro_set_event(e);
        ASSERT_EQ(coro_fd_new(-1, fd_idle, &u, &u.f), -EBADF);
        ASSERT_OK(coro_fd_new(p[0], fd_idle, &u, &u.f));
        u.fd = p[0];
        u.waits = 3;
        u.timeout_usec = 10 * 1000 * 1000;
        u.results[0] = u.results[1] = u.results[2] = 1;

        /* Three waits in a row, each woken by a byte. */
        ASSERT_OK(coro_start(wait_kept, &u));
        ASSERT_OK(coro_start(wait_kept_busy, u.f));     /* one waiter at a time */
        for (unsigned i = 0; i < 3; i++) {
                ASSERT_EQ(write(p[1], "x", 1), 1);
                ASSERT_TRUE(sd_event_run(e, 1000 * 1000) > 0);
                ASSERT_EQ(u.results[i], 0);
                /* Between waits the source stays on the loop: epoll holds the descriptor, so a
                 * one-off wait on it is refused. */
                w = (Waiter) { .fd = p[0], .timeout_usec = 1000 * 1000 };
                ASSERT_OK(coro_start(wait_once, &w));
                ASSERT_TRUE(w.ended);
                ASSERT_EQ(w.result, -EEXIST);
        }
        ASSERT_TRUE(u.ended);
        ASSERT_EQ(u.idle_calls, 0);

        /* Nobody waits: what arrives goes to the idle function, which reads it. */
        ASSERT_EQ(write(p[1], "y", 1), 1);
        ASSERT_TRUE(sd_event_run(e, 1000 * 1000) > 0);
        ASSERT_EQ(u.idle_calls, 1);
        ASSERT_EQ(read(p[0], &c, 1), -1);
        ASSERT_EQ(errno, EAGAIN);

        /* It fails: the source comes off the loop (no more calls), and the next wait puts it
         * back and finds the byte still there. */
        u.idle_fails = true;
        ASSERT_EQ(write(p[1], "z", 1), 1);
        ASSERT_TRUE(sd_event_run(e, 1000 * 1000) > 0);
        ASSERT_EQ(u.idle_calls, 2);
        ASSERT_EQ(sd_event_run(e, 20 * 1000), 0);
        ASSERT_EQ(u.idle_calls, 2);
        v = (FdUser) { .f = u.f, .fd = p[0], .waits = 2, .timeout_usec = 20 * 1000, .results = { 1, 1, 1 } };
        ASSERT_OK(coro_start(wait_kept, &v));
        while (!v.ended)
                ASSERT_TRUE(sd_event_run(e, 1000 * 1000) >= 0);
        ASSERT_EQ(v.results[0], 0);
        ASSERT_EQ(v.results[1], -ETIMEDOUT);
        ASSERT_EQ(u.idle_calls, 2);

        /* A wait for writing, on the pipe's other end: once it is over, nobody wants to write,
         * and the always-writable end does not keep the loop turning (nor reach idle()). */
        {
                FdUser o = { .fd = p[1], .waits = 1, .timeout_usec = 1000 * 1000, .results = { 1 } };
                unsigned calls;

                ASSERT_OK(coro_fd_new(p[1], fd_idle, &o, &o.f));
                ASSERT_OK(coro_start(wait_kept_out, &o));
                while (!o.ended)
                        ASSERT_TRUE(sd_event_run(e, 1000 * 1000) >= 0);
                ASSERT_EQ(o.results[0], 0);
                for (calls = 0; calls < 3 && sd_event_run(e, 20 * 1000) > 0; calls++)
                        ;
                ASSERT_TRUE(calls < 3);
                ASSERT_EQ(o.idle_calls, 0);
                o.f = coro_fd_free(o.f);
        }

        /* Freed, it is off the loop: a one-off wait works again. */
        u.f = coro_fd_free(u.f);
        ASSERT_EQ(write(p[1], "w", 1), 1);
        w = (Waiter) { .fd = p[0], .timeout_usec = 1000 * 1000 };
        ASSERT_OK(coro_start(wait_once, &w));
        while (!w.ended)
                ASSERT_TRUE(sd_event_run(e, 1000 * 1000) >= 0);
        ASSERT_EQ(w.result, 0);
        ASSERT_EQ(coro_alive(), 0);
        ASSERT_TRUE(coro_fd_free(NULL) == NULL);
        coro_set_event(NULL);
        (void) close(p[0]);
        (void) close(p[1]);
}

/* Ended coroutines' stacks are kept with their pages while a loop can time their trim; without
 * a loop, or when the loop is taken away, the pages go back at once. */
TEST(stacks_kept) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Waiter a = { .fd = -1 };
        unsigned kept, with_pages;

        coro_release_stacks();
        ASSERT_OK(coro_start(run_plain, &a));
        ASSERT_EQ(coro_stacks_kept(&with_pages), 1);
        ASSERT_EQ(with_pages, 0);                       /* no loop: given back */

        ASSERT_OK(sd_event_new(&e));
        coro_set_event(e);
        ASSERT_OK(coro_start(run_plain, &a));
        ASSERT_OK(coro_start(run_plain, &a));
        kept = coro_stacks_kept(&with_pages);
        ASSERT_EQ(kept, 1);                             /* the same stack, reused */
        ASSERT_EQ(with_pages, 1);
        coro_set_event(NULL);
        ASSERT_EQ(coro_stacks_kept(&with_pages), 1);
        ASSERT_EQ(with_pages, 0);
        coro_release_stacks();
        ASSERT_EQ(coro_stacks_kept(NULL), 0);
}

/* Without a loop, or outside a coroutine, a wait is a poll(). */
TEST(poll_fallback) {
        int p[2];
        Waiter w;

        ASSERT_OK(pipe(p));
        ASSERT_EQ(coro_wait_fd(p[0], EPOLLIN, 10 * 1000), -ETIMEDOUT);
        ASSERT_EQ(coro_wait_fd(p[1], EPOLLOUT, 10 * 1000), 0);
        ASSERT_EQ(coro_wait_fd(-1, EPOLLIN, 10 * 1000), -EBADF);
        ASSERT_EQ(write(p[1], "x", 1), 1);
        w = (Waiter) { .fd = p[0], .timeout_usec = 1000 * 1000 };
        ASSERT_OK(coro_start(wait_once, &w));       /* no loop set: polls inside */
        ASSERT_TRUE(w.ended);
        ASSERT_EQ(w.result, 0);
        (void) close(p[0]);
        (void) close(p[1]);
}

/* At most CORO_MAX alive; those waiting at shutdown are run to their end by coro_drain(). */
TEST(bound_and_drain) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        Waiter *w = calloc(CORO_MAX, sizeof(Waiter));
        Waiter extra = { .fd = -1 };
        struct rlimit rl;
        int p[2];

        ASSERT_TRUE(w);
        ASSERT_OK(pipe(p));
        ASSERT_OK(sd_event_new(&e));
        coro_set_event(e);
        /* One fd per waiter (an fd has one waiter at a time): duplicates of the pipe's end. */
        ASSERT_OK(getrlimit(RLIMIT_NOFILE, &rl));
        if (rl.rlim_cur < CORO_MAX + 64) {
                rl.rlim_cur = rl.rlim_max;
                ASSERT_OK(setrlimit(RLIMIT_NOFILE, &rl));
        }
        for (unsigned i = 0; i < CORO_MAX; i++) {
                w[i] = (Waiter) { .fd = dup(p[0]), .timeout_usec = 10 * 1000 * 1000 };
                ASSERT_TRUE(w[i].fd >= 0);
                ASSERT_OK(coro_start(wait_once, &w[i]));
        }
        ASSERT_EQ(coro_alive(), CORO_MAX);
        ASSERT_EQ(coro_start(run_plain, &extra), -EAGAIN);
        ASSERT_FALSE(extra.ended);

        /* One byte per waiter: each wakes, reads its byte, ends. */
        for (unsigned i = 0; i < CORO_MAX; i++)
                ASSERT_EQ(write(p[1], "x", 1), 1);
        coro_drain();
        ASSERT_EQ(coro_alive(), 0);
        for (unsigned i = 0; i < CORO_MAX; i++) {
                ASSERT_TRUE(w[i].ended);
                ASSERT_EQ(w[i].result, 0);
                (void) close(w[i].fd);
        }
        coro_set_event(NULL);
        coro_release_stacks();
        free(w);
        (void) close(p[0]);
        (void) close(p[1]);
}

/* The stack is CORO_STACK_SIZE deep, less what the start and the C library use. */
static void deep(void *userdata) {
        volatile char big[CORO_STACK_SIZE - 32 * 1024];

        memset((char *) big, 0x5a, sizeof(big));
        *(int *) userdata = big[sizeof(big) - 1] + big[0];
}

TEST(stack) {
        int sum = 0;

        ASSERT_OK(coro_start(deep, &sum));
        ASSERT_EQ(sum, 2 * 0x5a);
}

int main(void) {
        RUN(start_and_end);
        RUN(wait_on_loop);
        RUN(timeout_on_loop);
        RUN(nested);
        RUN(poll_fallback);
        RUN(kept_fd);
        RUN(stacks_kept);
        RUN(bound_and_drain);
        RUN(stack);
        coro_release_stacks();
        return EXIT_SUCCESS;
}
