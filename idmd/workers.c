/* SPDX-License-Identifier: MIT */
/*
 * A fixed pool of worker threads fed from a bounded FIFO. Workers move finished jobs to a "done"
 * list and poke an eventfd; the event loop drains it and calls the completion functions on its
 * own thread, so nothing but the two lists and the counters is ever shared (all under one mutex).
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idmd/workers.h"

#define WORKERS_THREADS_MAX 64U

typedef struct Job Job;
struct Job {
        WorkFn work;
        WorkDoneFn done;
        void *userdata;
        const void *owner;      /* for workers_cancel(); NULL: none */
        int error;              /* delivered to done: 0, or -ECANCELED when cancelled */
        Job *next;
};

typedef struct JobList {
        Job *head, *tail;
} JobList;

struct Workers {
        sd_event *event;
        sd_event_source *source;
        int efd;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool lock_initialized;
        bool cond_initialized;

        pthread_t threads[WORKERS_THREADS_MAX];
        unsigned n_threads;             /* started, to be joined */

        /* Under lock: */
        JobList queue;                  /* waiting, FIFO */
        JobList done;                   /* finished, in completion order, not yet delivered */
        unsigned n_queued;              /* length of queue */
        unsigned n_running;             /* taken by a worker, not yet delivered */
        unsigned queue_max;
        uint64_t idle_usec;             /* workers_set_idle(); 0: none */
        void (*idle)(void);
        uint64_t completed;             /* delivered after their work ran */
        uint64_t cancelled;             /* delivered by workers_cancel(), never started */
        bool stop;
};

static void job_list_append(JobList *l, Job *j) {
        j->next = NULL;
        if (l->tail)
                l->tail->next = j;
        else
                l->head = j;
        l->tail = j;
}

/* The list must not be empty. */
static void job_list_remove_head(JobList *l) {
        Job *j = l->head;

        l->head = j->next;
        if (!l->head)
                l->tail = NULL;
        j->next = NULL;
}

/* Frees each node of a detached list before calling its completion, so a completion function may
 * submit new work or even free the pool without this touching anything shared. Each job gets
 * its own error, or error when that is not 0. */
static void job_list_deliver(Job *list, int error) {
        while (list) {
                Job *j = list;
                WorkDoneFn done = j->done;
                void *userdata = j->userdata;
                int e = error ?: j->error;

                list = j->next;
                free(j);
                done(userdata, e);
        }
}

/* Runs the idle function (if any) without the lock. */
static void worker_idle(Workers *w) {
        void (*idle)(void) = w->idle;

        if (!idle)
                return;
        (void) pthread_mutex_unlock(&w->lock);
        idle();
        (void) pthread_mutex_lock(&w->lock);
}

/* A worker runs WORKER_NICE steps nicer than idmd (Linux gives each thread its own nice value):
 * when hashes keep every core busy, the event loop still gets a core at once for the requests
 * that need none, and the hashes get the rest. Best effort: a failure leaves the thread as it is. */
static void worker_lower_priority(void) {
        pid_t tid = gettid();
        int nice;

        errno = 0;
        nice = getpriority(PRIO_PROCESS, (id_t) tid);
        if (nice == -1 && errno != 0)
                return;
        (void) setpriority(PRIO_PROCESS, (id_t) tid, nice + WORKER_NICE < 19 ? nice + WORKER_NICE : 19);
}

static void *worker_main(void *p) {
        Workers *w = p;
        bool used = false;      /* a job ran since the idle function last did */

        /* Named from inside, so the name is there before the first job runs. */
        (void) pthread_setname_np(pthread_self(), "idmd-worker");
        worker_lower_priority();

        (void) pthread_mutex_lock(&w->lock);
        for (;;) {
                Job *j;
                bool was_empty;

                /* stop wins over waiting jobs: those are cancelled by workers_free(). */
                for (;;) {
                        if (w->stop)
                                goto finish;
                        j = w->queue.head;
                        if (j)
                                break;
                        if (used && w->idle) {
                                struct timespec until;

                                (void) clock_gettime(CLOCK_MONOTONIC, &until);
                                until.tv_sec += (time_t) (w->idle_usec / 1000000ULL);
                                until.tv_nsec += (long) (w->idle_usec % 1000000ULL) * 1000L;
                                if (until.tv_nsec >= 1000000000L) {
                                        until.tv_sec++;
                                        until.tv_nsec -= 1000000000L;
                                }
                                if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT) {
                                        used = false;
                                        worker_idle(w);
                                }
                        } else
                                (void) pthread_cond_wait(&w->cond, &w->lock);
                }

                job_list_remove_head(&w->queue);
                w->n_queued--;
                w->n_running++;
                (void) pthread_mutex_unlock(&w->lock);

                j->work(j->userdata);

                (void) pthread_mutex_lock(&w->lock);
                used = true;
                was_empty = !w->done.head;
                job_list_append(&w->done, j);

                /* The loop drains the eventfd before it takes the done list, so one wakeup per
                 * empty → non-empty transition is enough. A full counter (EAGAIN) still means
                 * "readable", and nothing else can fail on a valid eventfd. */
                if (was_empty)
                        (void) eventfd_write(w->efd, 1);
        }
finish:
        if (used)
                worker_idle(w);         /* what the thread holds goes with it */
        (void) pthread_mutex_unlock(&w->lock);

        return NULL;
}

static int on_eventfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Workers *w = userdata;
        eventfd_t value;
        Job *list;

        (void) eventfd_read(fd, &value);        /* EAGAIN: a spurious wakeup, harmless */

        (void) pthread_mutex_lock(&w->lock);
        list = w->done.head;
        w->done = (JobList) {};
        for (Job *j = list; j; j = j->next)
                if (j->error == 0) {    /* cancelled jobs never ran */
                        assert(w->n_running > 0);
                        w->n_running--;
                        w->completed++;
                } else
                        w->cancelled++;
        (void) pthread_mutex_unlock(&w->lock);

        /* From here on w is not touched: a completion may free the pool. */
        job_list_deliver(list, 0);
        return 0;
}

int workers_new(sd_event *event, unsigned threads, unsigned queue_max, Workers **ret) {
        _cleanup_(workers_freep) Workers *w = NULL;
        sigset_t all, saved;
        int r;

        assert(event);
        assert(ret);

        if (threads < 1 || threads > WORKERS_THREADS_MAX || queue_max < 1)
                return -EINVAL;

        w = calloc(1, sizeof(Workers));
        if (!w)
                return -ENOMEM;
        w->efd = -EBADF;
        w->queue_max = queue_max;
        w->event = sd_event_ref(event);

        r = pthread_mutex_init(&w->lock, NULL);
        if (r != 0)
                return -r;
        w->lock_initialized = true;

        {
                pthread_condattr_t attr;

                /* Idle timeouts count on the monotonic clock: a clock step must not trigger them. */
                r = pthread_condattr_init(&attr);
                if (r != 0)
                        return -r;
                r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
                if (r == 0)
                        r = pthread_cond_init(&w->cond, &attr);
                (void) pthread_condattr_destroy(&attr);
                if (r != 0)
                        return -r;
        }
        w->cond_initialized = true;

        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->efd < 0)
                return -errno;

        r = sd_event_add_io(event, &w->source, w->efd, EPOLLIN, on_eventfd, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(w->source, "idmd-workers");

        /* Threads inherit the creator's signal mask: block everything while creating them so
         * that SIGTERM, SIGHUP etc. are only ever delivered to the event-loop thread. */
        if (sigfillset(&all) < 0)
                return -errno;
        r = pthread_sigmask(SIG_BLOCK, &all, &saved);
        if (r != 0)
                return -r;

        for (unsigned i = 0; i < threads; i++) {
                r = pthread_create(&w->threads[i], NULL, worker_main, w);
                if (r != 0)
                        break;
                w->n_threads++;
        }

        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (r != 0)
                return -r;      /* the cleanup joins the threads already started */

        *ret = TAKE_PTR(w);
        return 0;
}

void workers_set_idle(Workers *w, uint64_t idle_usec, void (*idle)(void)) {
        assert(w);
        assert(idle_usec > 0 || !idle);

        (void) pthread_mutex_lock(&w->lock);
        w->idle_usec = idle_usec;
        w->idle = idle;
        (void) pthread_mutex_unlock(&w->lock);
}

void workers_stop(Workers *w) {
        assert(w);

        (void) pthread_mutex_lock(&w->lock);
        w->stop = true;
        (void) pthread_cond_broadcast(&w->cond);
        (void) pthread_mutex_unlock(&w->lock);
}

Workers *workers_free(Workers *w) {
        Job *finished, *queued;

        if (!w)
                return NULL;

        /* A half-built pool has threads only once both are initialized. */
        if (w->lock_initialized && w->cond_initialized)
                workers_stop(w);

        /* A job already running finishes first; workers pick nothing new once stop is set. */
        for (unsigned i = 0; i < w->n_threads; i++)
                (void) pthread_join(w->threads[i], NULL);
        w->n_threads = 0;

        /* Only this thread is left: no locking needed any more. */
        w->source = sd_event_source_disable_unref(w->source);
        w->efd = safe_close(w->efd);
        w->event = sd_event_unref(w->event);

        finished = w->done.head;
        queued = w->queue.head;
        w->done = w->queue = (JobList) {};
        w->n_queued = w->n_running = 0;

        if (w->cond_initialized)
                (void) pthread_cond_destroy(&w->cond);
        if (w->lock_initialized)
                (void) pthread_mutex_destroy(&w->lock);
        free(w);

        /* Their work ran: report success, in completion order. Then the ones never started. */
        job_list_deliver(finished, 0);
        job_list_deliver(queued, -ECANCELED);

        return NULL;
}

int workers_submit(Workers *w, WorkFn work, WorkDoneFn done, void *userdata) {
        return workers_submit_owned(w, NULL, work, done, userdata);
}

int workers_submit_owned(Workers *w, const void *owner, WorkFn work, WorkDoneFn done, void *userdata) {
        Job *j;

        assert(w);
        assert(work);
        assert(done);

        (void) pthread_mutex_lock(&w->lock);

        /* Check before allocating: under overload, refusing should be cheap. */
        if (w->stop) {
                (void) pthread_mutex_unlock(&w->lock);
                return -ESHUTDOWN;
        }
        if (w->n_queued >= w->queue_max) {
                (void) pthread_mutex_unlock(&w->lock);
                return -EAGAIN;
        }

        j = malloc(sizeof(Job));
        if (!j) {
                (void) pthread_mutex_unlock(&w->lock);
                return -ENOMEM;
        }
        *j = (Job) {
                .work = work,
                .done = done,
                .userdata = userdata,
                .owner = owner,
        };
        job_list_append(&w->queue, j);
        w->n_queued++;
        (void) pthread_cond_signal(&w->cond);
        (void) pthread_mutex_unlock(&w->lock);

        return 0;
}

unsigned workers_cancel(Workers *w, const void *owner) {
        JobList keep = {};
        unsigned n = 0;
        bool was_empty;
        Job *j;

        assert(w);

        (void) pthread_mutex_lock(&w->lock);
        was_empty = !w->done.head;
        while ((j = w->queue.head)) {
                job_list_remove_head(&w->queue);
                if (owner && j->owner != owner) {
                        job_list_append(&keep, j);
                        continue;
                }
                j->error = -ECANCELED;
                job_list_append(&w->done, j);
                w->n_queued--;
                n++;
        }
        w->queue = keep;
        /* Delivered by the event loop like finished jobs, never from inside the caller. */
        if (n > 0 && was_empty)
                (void) eventfd_write(w->efd, 1);
        (void) pthread_mutex_unlock(&w->lock);
        return n;
}

void workers_stats(Workers *w, WorkersStats *ret) {
        assert(ret);

        *ret = (WorkersStats) {};
        if (!w)
                return;
        (void) pthread_mutex_lock(&w->lock);
        *ret = (WorkersStats) {
                .threads = w->n_threads,
                .queued = w->n_queued,
                .running = w->n_running,
                .completed = w->completed,
                .cancelled = w->cancelled,
        };
        (void) pthread_mutex_unlock(&w->lock);
}

unsigned workers_queued(Workers *w) {
        unsigned n;

        if (!w)
                return 0;

        (void) pthread_mutex_lock(&w->lock);
        n = w->n_queued;
        (void) pthread_mutex_unlock(&w->lock);
        return n;
}

unsigned workers_running(Workers *w) {
        unsigned n;

        if (!w)
                return 0;

        (void) pthread_mutex_lock(&w->lock);
        n = w->n_running;
        (void) pthread_mutex_unlock(&w->lock);
        return n;
}
