/* SPDX-License-Identifier: MIT */
/*
 * A bounded pool of worker threads for CPU-heavy work (Argon2id hashing), so idmd's event loop
 * keeps answering while hashes run. Work functions run on a worker thread and must not touch
 * the store, the event loop or any other event-loop state; completion functions run on the
 * event-loop thread (woken through an eventfd watched by sd-event), in completion order.
 */
#pragma once

#include <systemd/sd-event.h>

typedef struct Workers Workers;

typedef void (*WorkFn)(void *userdata);                 /* on a worker thread */
typedef void (*WorkDoneFn)(void *userdata, int error);  /* on the event loop: 0, or -ECANCELED
                                                         * when the pool was freed first (the
                                                         * work function may not have run) */

/* threads: 1..64; queue_max: jobs waiting (not running) before workers_submit says -EAGAIN.
 * Errors: -EINVAL, -ENOMEM, errno from pthread_create/eventfd/sd-event. */
int workers_new(sd_event *event, unsigned threads, unsigned queue_max, Workers **ret);

/* Stops the threads after their current job, calls done(userdata, -ECANCELED) for queued jobs
 * and for finished jobs not yet delivered... (both on the calling thread), joins. NULL-safe. */
Workers *workers_free(Workers *w);

/* Queues a job. -EAGAIN when queue_max jobs are already waiting (nothing queued then). */
int workers_submit(Workers *w, WorkFn work, WorkDoneFn done, void *userdata);

unsigned workers_queued(const Workers *w);      /* waiting, not started */
unsigned workers_running(const Workers *w);     /* started, not delivered */
