/* SPDX-License-Identifier: MIT */
/*
 * Coroutines on the event loop (coro.h): glibc's ucontext for the switches, mmap'd stacks with a
 * guard page, and sd-event io and timer sources to wake a coroutine that waits on a socket.
 *
 * A coroutine switches only to the context that last resumed it (its caller): coro_start()'s
 * caller the first time, the loop (a source's callback) after a wait. Each keeps its own log
 * scope (log.h: the request its entries name) across its waits; the caller's is back when it
 * switches out. Under AddressSanitizer every switch is announced to it
 * (__sanitizer_*_switch_fiber), so it knows which stack is live.
 */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "coro.h"
#include "idm/time-util.h"
#include "log.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ASAN_FIBERS 1
#else
#define ASAN_FIBERS 0
#endif

typedef struct Coro Coro;

struct Coro {
        ucontext_t ctx;
        ucontext_t *caller;             /* where a wait or the end switches to */
        void *stack;                    /* the mapping: guard page, then the stack */
        CoroFn fn;
        void *userdata;
        bool done;
        LogScope scope;                 /* its log scope while it is switched out */

        /* While waiting in coro_wait_fd(), coro_sleep() or coro_queue_wait(): */
        bool waiting, timed_out;
        bool woken;                     /* coro_queue_wake() chose it; it resumes soon */
        CoroQueue *queue;               /* the queue it waits in, if any */
        Coro *queue_next;
        int wait_fd;
        uint32_t wait_events;
        uint64_t wait_deadline;         /* CLOCK_MONOTONIC usec */
        sd_event_source *io, *timer;
        CoroFd *fd_wait;                /* the kept descriptor it waits on (coro_fd_wait()) */
        Coro *waiting_prev, *waiting_next;

#if ASAN_FIBERS
        void *fake_stack;
        const void *caller_bottom;
        size_t caller_size;
#endif
};

static _Thread_local Coro *current;
static _Thread_local sd_event *loop;
static _Thread_local unsigned n_alive;
static _Thread_local Coro *waiting_head;
static _Thread_local void *stacks_kept[CORO_STACKS_KEPT];
static _Thread_local bool stacks_dirty[CORO_STACKS_KEPT];      /* its pages not given back yet */
static _Thread_local unsigned n_stacks_kept;
static _Thread_local sd_event_source *trim_timer;

static size_t page_size(void) {
        long ps = sysconf(_SC_PAGESIZE);

        return ps > 0 ? (size_t) ps : 4096;
}

static size_t mapping_size(void) {
        return CORO_STACK_SIZE + page_size();
}

static void *stack_new(void) {
        void *m;

        if (n_stacks_kept > 0)
                return stacks_kept[--n_stacks_kept];
        m = mmap(NULL, mapping_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                 -1, 0);
        if (m == MAP_FAILED)
                return NULL;
        /* The guard page: an overflow faults instead of writing over another mapping. */
        if (mprotect(m, page_size(), PROT_NONE) < 0) {
                (void) munmap(m, mapping_size());
                return NULL;
        }
        return m;
}

static void stack_trim(unsigned i) {
        if (!stacks_dirty[i])
                return;
        (void) madvise((uint8_t *) stacks_kept[i] + page_size(), CORO_STACK_SIZE, MADV_DONTNEED);
        stacks_dirty[i] = false;
}

/* The pages the kept stacks touched go back to the system. */
static void stacks_trim(void) {
        for (unsigned i = 0; i < n_stacks_kept; i++)
                stack_trim(i);
}

static int on_trim(sd_event_source *s, uint64_t usec, void *userdata) {
        stacks_trim();
        trim_timer = sd_event_source_disable_unref(trim_timer);
        return 0;
}

static void stack_free(void *m) {
        if (n_stacks_kept < CORO_STACKS_KEPT) {
                /* Kept with the pages it touched for the next coroutine (no madvise() and page
                 * faults per request), until CORO_STACKS_TRIM_USEC after the first of them was
                 * kept; without a loop to time that, they go back now. */
                stacks_kept[n_stacks_kept] = m;
                stacks_dirty[n_stacks_kept] = true;
                if (!trim_timer) {
                        if (loop && sd_event_add_time_relative(loop, &trim_timer, CLOCK_MONOTONIC,
                                                               CORO_STACKS_TRIM_USEC, 0, on_trim, NULL) >= 0)
                                (void) sd_event_source_set_description(trim_timer, "coro-stack-trim");
                        else
                                stack_trim(n_stacks_kept);
                }
                n_stacks_kept++;
                return;
        }
        (void) munmap(m, mapping_size());
}

void coro_release_stacks(void) {
        trim_timer = sd_event_source_disable_unref(trim_timer);
        while (n_stacks_kept > 0)
                (void) munmap(stacks_kept[--n_stacks_kept], mapping_size());
}

static void *stack_bottom(Coro *c) {
        return (uint8_t *) c->stack + page_size();
}

void coro_set_event(sd_event *event) {
        if (event != loop) {
                /* The timer is the old loop's: the stacks go back now. */
                trim_timer = sd_event_source_disable_unref(trim_timer);
                stacks_trim();
        }
        loop = event;
}

bool coro_running(void) {
        return current;
}

const void *coro_self(void) {
        return current;
}

unsigned coro_stacks_kept(unsigned *ret_with_pages) {
        unsigned n = 0;

        for (unsigned i = 0; i < n_stacks_kept; i++)
                n += stacks_dirty[i];
        if (ret_with_pages)
                *ret_with_pages = n;
        return n_stacks_kept;
}

unsigned coro_alive(void) {
        return n_alive;
}

/* Switches from the caller into c, until c waits or ends; frees c if it ended. */
static void coro_switch_in(Coro *c) {
        ucontext_t here;
        Coro *prev = current;
#if ASAN_FIBERS
        void *fake = NULL;
#endif

        c->caller = &here;
        current = c;
        LogScope outer = log_scope_set(c->scope.fill, c->scope.owner);
#if ASAN_FIBERS
        __sanitizer_start_switch_fiber(&fake, stack_bottom(c), CORO_STACK_SIZE);
#endif
        if (swapcontext(&here, &c->ctx) < 0)
                abort();        /* only fails for a bad context: a bug */
#if ASAN_FIBERS
        __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
        c->scope = log_scope_set(outer.fill, outer.owner);
        current = prev;

        if (c->done) {
                stack_free(c->stack);
                free(c);
                n_alive--;
        }
}

/* From inside c, back to its caller; returns when c is resumed. */
static void coro_switch_out(Coro *c) {
#if ASAN_FIBERS
        __sanitizer_start_switch_fiber(&c->fake_stack, c->caller_bottom, c->caller_size);
#endif
        if (swapcontext(&c->ctx, c->caller) < 0)
                abort();
#if ASAN_FIBERS
        __sanitizer_finish_switch_fiber(c->fake_stack, &c->caller_bottom, &c->caller_size);
#endif
}

static void coro_entry(unsigned hi, unsigned lo) {
        Coro *c = (Coro *) (((uintptr_t) hi << 32) | (uintptr_t) lo);

#if ASAN_FIBERS
        __sanitizer_finish_switch_fiber(NULL, &c->caller_bottom, &c->caller_size);
#endif
        c->fn(c->userdata);
        c->done = true;
#if ASAN_FIBERS
        /* This stack dies: no fake stack to keep. */
        __sanitizer_start_switch_fiber(NULL, c->caller_bottom, c->caller_size);
#endif
        (void) setcontext(c->caller);
        abort();
}

int coro_start(CoroFn fn, void *userdata) {
        Coro *c;

        if (!fn)
                return -EINVAL;
        if (n_alive >= CORO_MAX)
                return -EAGAIN;

        c = calloc(1, sizeof(Coro));
        if (!c)
                return -ENOMEM;
        c->stack = stack_new();
        if (!c->stack) {
                free(c);
                return -ENOMEM;
        }
        c->fn = fn;
        c->userdata = userdata;
        c->wait_fd = -EBADF;
        /* It starts in its starter's scope (the request that starts it). */
        c->scope = log_scope_set(NULL, NULL);
        (void) log_scope_set(c->scope.fill, c->scope.owner);
        if (getcontext(&c->ctx) < 0) {
                stack_free(c->stack);
                free(c);
                return -errno;
        }
        c->ctx.uc_stack.ss_sp = stack_bottom(c);
        c->ctx.uc_stack.ss_size = CORO_STACK_SIZE;
        c->ctx.uc_link = NULL;
        makecontext(&c->ctx, (void (*)(void)) coro_entry, 2, (unsigned) ((uintptr_t) c >> 32),
                    (unsigned) ((uintptr_t) c & UINT32_MAX));
        n_alive++;
        coro_switch_in(c);
        return 0;
}

static void waiting_link(Coro *c) {
        c->waiting = true;
        c->waiting_prev = NULL;
        c->waiting_next = waiting_head;
        if (waiting_head)
                waiting_head->waiting_prev = c;
        waiting_head = c;
}

static void waiting_unlink(Coro *c) {
        if (c->waiting_prev)
                c->waiting_prev->waiting_next = c->waiting_next;
        else
                waiting_head = c->waiting_next;
        if (c->waiting_next)
                c->waiting_next->waiting_prev = c->waiting_prev;
        c->waiting_prev = c->waiting_next = NULL;
        c->waiting = false;
}

static void queue_unlink(Coro *c) {
        CoroQueue *q = c->queue;

        if (!q)
                return;
        for (Coro **p = (Coro **) &q->head; *p; p = &(*p)->queue_next)
                if (*p == c) {
                        *p = c->queue_next;
                        break;
                }
        c->queue = NULL;
        c->queue_next = NULL;
}

struct CoroFd {
        int fd;
        CoroFdIdleFn idle;
        void *userdata;
        sd_event_source *io;            /* on the loop from the first wait in a coroutine */
        uint32_t events;                /* what io asks for now */
        bool off;                       /* io was taken off the loop (idle() failed) */
        Coro *waiter;
};

/* Ends c's wait (its fd is ready, its time is up, or its queue woke it) and resumes it, from
 * the loop. */
static void coro_wake(Coro *c, bool timed_out) {
        if (c->fd_wait) {
                c->fd_wait->waiter = NULL;
                c->fd_wait = NULL;
        }
        c->io = sd_event_source_disable_unref(c->io);
        c->timer = sd_event_source_disable_unref(c->timer);
        queue_unlink(c);
        c->woken = false;
        waiting_unlink(c);
        c->timed_out = timed_out;
        coro_switch_in(c);
}

static int on_wait_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        coro_wake(userdata, false);
        return 0;
}

static int on_wait_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        coro_wake(userdata, true);
        return 0;
}

static int poll_fd(int fd, uint32_t events, uint64_t timeout_usec) {
        struct pollfd p = {
                .fd = fd,
                .events = (short) (((events & EPOLLIN) ? POLLIN : 0) | ((events & EPOLLOUT) ? POLLOUT : 0)),
        };
        uint64_t deadline = now_monotonic_usec() + timeout_usec;

        for (;;) {
                uint64_t now = now_monotonic_usec(), left = deadline > now ? deadline - now : 0;
                int k = poll(&p, 1, (int) ((left + 999) / 1000 > INT32_MAX ? INT32_MAX : (left + 999) / 1000));

                if (k > 0)
                        return 0;       /* ready, or an error/hang-up the caller's read will see */
                if (k == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }
}

/* The rest of a wait on fd, its sources set up: gives the loop back until coro_wake() (the loop)
 * or coro_drain() resumes c. 0 or -ETIMEDOUT. */
static int wait_fd_switch(Coro *c, int fd, uint32_t events, uint64_t timeout_usec) {
        c->wait_fd = fd;
        c->wait_events = events;
        c->wait_deadline = now_monotonic_usec() + timeout_usec;
        waiting_link(c);

        coro_switch_out(c);

        assert(!c->waiting && !c->io && !c->fd_wait && !c->timer);
        c->wait_fd = -EBADF;
        return c->timed_out ? -ETIMEDOUT : 0;
}

int coro_wait_fd(int fd, uint32_t events, uint64_t timeout_usec) {
        Coro *c = current;
        int r;

        if (fd < 0)
                return -EBADF;
        if (!c || !loop)
                return poll_fd(fd, events, timeout_usec);

        r = sd_event_add_io(loop, &c->io, fd, events, on_wait_io, c);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(loop, &c->timer, CLOCK_MONOTONIC, timeout_usec, 0, on_wait_timer, c);
        if (r < 0) {
                c->io = sd_event_source_disable_unref(c->io);
                return r;
        }
        (void) sd_event_source_set_description(c->io, "coro-wait");
        (void) sd_event_source_set_description(c->timer, "coro-wait-timer");
        return wait_fd_switch(c, fd, events, timeout_usec);
}

int coro_fd_new(int fd, CoroFdIdleFn idle, void *userdata, CoroFd **ret) {
        CoroFd *f;

        if (fd < 0)
                return -EBADF;
        f = calloc(1, sizeof(CoroFd));
        if (!f)
                return -ENOMEM;
        f->fd = fd;
        f->idle = idle;
        f->userdata = userdata;
        *ret = f;
        return 0;
}

CoroFd *coro_fd_free(CoroFd *f) {
        if (!f)
                return NULL;
        assert(!f->waiter);
        (void) sd_event_source_disable_unref(f->io);
        free(f);
        return NULL;
}

static int on_fd_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CoroFd *f = userdata;

        if (f->waiter) {
                coro_wake(f->waiter, false);
                return 0;
        }
        /* Ready with nobody waiting. Nobody wants to write now: a level-triggered EPOLLOUT would
         * fire at every turn of the loop. */
        if (f->events != EPOLLIN) {
                if (sd_event_source_set_io_events(s, EPOLLIN) < 0)
                        goto off;
                f->events = EPOLLIN;
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;
        /* The owner takes in what came, or the source goes off the loop until the next wait
         * (level-triggered, it would fire again at once). */
        if (f->idle && f->idle(f->userdata) >= 0)
                return 0;
off:
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        f->off = true;
        return 0;
}

int coro_fd_wait(CoroFd *f, uint32_t events, uint64_t timeout_usec) {
        Coro *c = current;
        int r;

        if (!c || !loop)
                return poll_fd(f->fd, events, timeout_usec);
        if (f->waiter)
                return -EBUSY;

        if (f->io && sd_event_source_get_event(f->io) != loop)
                /* Another loop's (a loop per thread): start afresh on this one. */
                f->io = sd_event_source_disable_unref(f->io);
        if (!f->io) {
                r = sd_event_add_io(loop, &f->io, f->fd, events, on_fd_io, f);
                if (r < 0)
                        return r;
                (void) sd_event_source_set_description(f->io, "coro-fd");
                f->events = events;
                f->off = false;
        } else {
                if (f->events != events) {
                        r = sd_event_source_set_io_events(f->io, events);
                        if (r < 0)
                                return r;
                        f->events = events;
                }
                if (f->off) {
                        r = sd_event_source_set_enabled(f->io, SD_EVENT_ON);
                        if (r < 0)
                                return r;
                        f->off = false;
                }
        }
        r = sd_event_add_time_relative(loop, &c->timer, CLOCK_MONOTONIC, timeout_usec, 0, on_wait_timer, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->timer, "coro-fd-timer");
        f->waiter = c;
        c->fd_wait = f;
        return wait_fd_switch(c, f->fd, events, timeout_usec);
}

int coro_sleep(uint64_t usec) {
        Coro *c = current;
        int r;

        if (!c || !loop) {
                struct timespec ts = { .tv_sec = (time_t) (usec / 1000000), .tv_nsec = (long) (usec % 1000000) * 1000 };

                while (nanosleep(&ts, &ts) < 0)
                        if (errno != EINTR)
                                return -errno;
                return 0;
        }
        r = sd_event_add_time_relative(loop, &c->timer, CLOCK_MONOTONIC, usec, 0, on_wait_timer, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->timer, "coro-sleep");
        c->wait_fd = -EBADF;
        c->wait_deadline = now_monotonic_usec() + usec;
        waiting_link(c);
        coro_switch_out(c);
        assert(!c->waiting && !c->timer);
        return 0;
}

int coro_queue_wait(CoroQueue *q, uint64_t timeout_usec) {
        Coro *c = current;
        Coro **tail;
        int r;

        if (!c || !loop)
                return -EAGAIN;         /* nobody could wake a thread that waits here */
        r = sd_event_add_time_relative(loop, &c->timer, CLOCK_MONOTONIC, timeout_usec, 0, on_wait_timer, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->timer, "coro-queue-timer");
        for (tail = (Coro **) &q->head; *tail; tail = &(*tail)->queue_next)
                ;
        *tail = c;
        c->queue = q;
        c->wait_fd = -EBADF;
        c->wait_deadline = now_monotonic_usec() + timeout_usec;
        waiting_link(c);
        coro_switch_out(c);
        assert(!c->waiting && !c->queue);
        return c->timed_out ? -ETIMEDOUT : 0;
}

static int on_queue_wake(sd_event_source *s, void *userdata) {
        coro_wake(userdata, false);
        return 0;
}

bool coro_queue_wake(CoroQueue *q) {
        Coro *c = q->head;

        if (!c)
                return false;
        q->head = c->queue_next;
        c->queue = NULL;
        c->queue_next = NULL;
        c->woken = true;
        /* Resumed from the loop, not from inside the caller (which may be a coroutine in the
         * middle of its work); coro_drain() resumes it when the loop is gone. */
        if (loop && sd_event_add_defer(loop, &c->io, on_queue_wake, c) >= 0)
                (void) sd_event_source_set_description(c->io, "coro-queue-wake");
        return true;
}

/* The coroutine coro_drain() resumes next: one a queue woke, else the first waiting, if any. */
static Coro *drain_next(void) {
        for (Coro *w = waiting_head; w; w = w->waiting_next)
                if (w->woken)
                        return w;
        return waiting_head;
}

void coro_drain(void) {
        assert(!current);

        for (;;) {
                Coro *c = drain_next();
                uint64_t now = now_monotonic_usec();
                int r;

                if (!c)
                        break;
                if (c->woken)
                        r = 0;
                else if (c->wait_fd < 0) {
                        /* Asleep (coro_sleep()). */
                        if (c->wait_deadline > now)
                                (void) usleep((useconds_t) (c->wait_deadline - now));
                        r = -ETIMEDOUT;
                } else
                        r = poll_fd(c->wait_fd, c->wait_events, c->wait_deadline > now ? c->wait_deadline - now : 0);
                coro_wake(c, r == -ETIMEDOUT);
        }
}
