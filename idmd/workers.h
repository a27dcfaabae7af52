/* SPDX-License-Identifier: MIT */
/*
 * A bounded pool of worker threads for CPU-heavy work (Argon2id hashing), so idmd's event loop
 * keeps answering while hashes run. Work functions run on a worker thread and must not touch
 * the store, the event loop or any other event-loop state; completion functions run on the
 * event-loop thread (woken through an eventfd watched by sd-event), in completion order.
 *
 * Every job submitted successfully gets exactly one call of its done function. Worker threads
 * run with all signals blocked, so process signals (SIGTERM, SIGHUP, ...) reach the loop thread,
 * and WORKER_NICE steps nicer than the process, so the loop thread wins a busy core.
 * All functions except the work functions are to be called from the event-loop thread.
 */
#pragma once

#include <stdint.h>

#include <systemd/sd-event.h>

#include "idm/cleanup.h"

#define WORKER_NICE 5

typedef struct Workers Workers;

typedef void (*WorkFn)(void *userdata);                 /* on a worker thread */
typedef void (*WorkDoneFn)(void *userdata, int error);  /* on the event loop: 0 once the work
                                                         * function has run, or -ECANCELED when
                                                         * it was cancelled or the pool was freed
                                                         * before it started (the work function
                                                         * did not run) */

/* threads: 1..64; queue_max: >= 1, jobs waiting (not running) before workers_submit says -EAGAIN
 * (every job waits in the queue, however briefly, so 0 would refuse everything). Takes a
 * reference on event and adds an I/O source to it; threads are named "idmd-worker".
 * Errors: -EINVAL, -ENOMEM, errno from pthread_create/eventfd/sd-event. */
int workers_new(sd_event *event, unsigned threads, unsigned queue_max, Workers **ret);

/* idle(), when set, runs on a worker thread that has been waiting idle_usec for a job since it
 * last ran one, and on each thread that ran a job when it exits: for memory a thread keeps
 * between jobs (warm Argon2 regions) to go back to the system. idle_usec > 0. */
void workers_set_idle(Workers *w, uint64_t idle_usec, void (*idle)(void));

/* Sets the stop flag and joins the threads: a job already running finishes first, nothing new
 * is started. Then, on the calling thread and after the pool's memory is released, calls
 * done(userdata, 0) for finished jobs not yet delivered (in completion order), then
 * done(userdata, -ECANCELED) for the queued jobs never started (in FIFO order). Those done
 * functions must not use the pool any more. May be called from a done function delivered by the
 * event loop (that delivery goes on for the rest of its batch). NULL-safe, returns NULL. */
Workers *workers_free(Workers *w);
DEFINE_POINTER_CLEANUP(Workers, workers_free)

/* Optional, before workers_free(): from now on no job starts (running ones finish and are
 * delivered by the event loop as usual), workers_submit says -ESHUTDOWN, and the queued jobs
 * stay queued until workers_free() cancels them. Idempotent. */
void workers_stop(Workers *w);

/* Queues a job; work and done must not be NULL. -EAGAIN when queue_max jobs are already waiting
 * (nothing queued then), -ESHUTDOWN after workers_stop(), -ENOMEM. */
int workers_submit(Workers *w, WorkFn work, WorkDoneFn done, void *userdata);

/* The same, with an owner (any pointer, compared only) that workers_cancel() can name. */
int workers_submit_owned(Workers *w, const void *owner, WorkFn work, WorkDoneFn done, void *userdata);

/* Cancels the queued jobs of owner (NULL: every queued job): they are never started, and the
 * event loop delivers done(userdata, -ECANCELED) for each soon after, in queue order, never from
 * inside this call. Jobs already running finish as usual. Returns how many were cancelled. For
 * a client that went away (its work would help nobody) and for a fast stop. */
unsigned workers_cancel(Workers *w, const void *owner);

typedef struct WorkersStats {
        unsigned threads, queued, running;
        uint64_t completed;             /* delivered after their work ran */
        uint64_t cancelled;             /* cancelled by workers_cancel() before they started */
} WorkersStats;

/* All counters at once, read under the pool's lock. Zeros for a NULL pool. */
void workers_stats(Workers *w, WorkersStats *ret);

/* Counters, read under the pool's lock (hence no const). 0 for a NULL pool. */
unsigned workers_queued(Workers *w);            /* waiting, not started */
unsigned workers_running(Workers *w);           /* started, done not yet delivered */
