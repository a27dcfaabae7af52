/* SPDX-License-Identifier: MIT */
/*
 * Tests for idmd/workers.c with a real sd-event loop. Jobs that must stay put block on
 * semaphores the test controls, so every outcome checked here is independent of timing.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "idm/cleanup.h"
#include "idmd/workers.h"
#include "tests.h"

typedef struct TestJob {
        unsigned id;
        sem_t *started;         /* posted when the work starts, if set */
        sem_t *release;         /* waited for before the work returns, if set */

        /* Written by the worker; read after delivery (ordered by the pool's mutex). */
        bool ran;
        bool on_worker_thread;
        bool sigterm_blocked;
        bool named;

        /* Written on the loop thread. */
        unsigned n_done;
        int error;
        unsigned seq;           /* delivery order, from 1 */
        bool done_on_loop_thread;
} TestJob;

static pthread_t loop_thread;
static unsigned delivered;      /* dones called so far */

static sd_event *event_new_or_die(void) {
        sd_event *e = NULL;

        ASSERT_OK(sd_event_new(&e));
        return e;
}

static void work(void *userdata) {
        TestJob *j = userdata;
        char name[16] = "";
        sigset_t mask;

        j->ran = true;
        j->on_worker_thread = !pthread_equal(pthread_self(), loop_thread);
        j->named = pthread_getname_np(pthread_self(), name, sizeof(name)) == 0 &&
                   streq(name, "idmd-worker");
        j->sigterm_blocked = pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0 &&
                             sigismember(&mask, SIGTERM) == 1 && sigismember(&mask, SIGINT) == 1;

        if (j->started)
                ASSERT_OK(sem_post(j->started));
        if (j->release)
                while (sem_wait(j->release) < 0)
                        ASSERT_EQ(errno, EINTR);
}

static void done(void *userdata, int error) {
        TestJob *j = userdata;

        j->n_done++;
        j->error = error;
        j->seq = ++delivered;
        j->done_on_loop_thread = pthread_equal(pthread_self(), loop_thread);
}

static void sem_wait_or_die(sem_t *s) {
        while (sem_wait(s) < 0)
                ASSERT_EQ(errno, EINTR);
}

/* Runs the loop until `target` dones were delivered in total. Blocks without a timeout: a lost
 * wakeup shows up as the test's meson timeout, not as a flaky failure. */
static void run_until(sd_event *e, unsigned target) {
        while (delivered < target)
                ASSERT_OK(sd_event_run(e, UINT64_MAX));
}

static void assert_ran_ok(const TestJob *j) {
        ASSERT_EQ(j->n_done, 1);
        ASSERT_EQ(j->error, 0);
        ASSERT_TRUE(j->ran);
        ASSERT_TRUE(j->on_worker_thread);
        ASSERT_TRUE(j->named);
        ASSERT_TRUE(j->sigterm_blocked);
        ASSERT_TRUE(j->done_on_loop_thread);
}

TEST(invalid_args) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        Workers *w = NULL;

        ASSERT_EQ(workers_new(e, 0, 4, &w), -EINVAL);
        ASSERT_EQ(workers_new(e, 65, 4, &w), -EINVAL);
        ASSERT_EQ(workers_new(e, 1, 0, &w), -EINVAL);
        ASSERT_TRUE(w == NULL);
        ASSERT_TRUE(workers_free(NULL) == NULL);
}

TEST(many_jobs) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        _cleanup_(workers_freep) Workers *w = NULL;
        enum { N = 200 };
        static TestJob jobs[N];
        sigset_t mask;
        unsigned submitted = 0;

        delivered = 0;
        ASSERT_OK(workers_new(e, 4, 16, &w));

        /* The caller's signal mask is restored after the threads are created. */
        ASSERT_OK(-pthread_sigmask(SIG_BLOCK, NULL, &mask));
        ASSERT_EQ(sigismember(&mask, SIGTERM), 0);

        /* Keep the queue fed: more jobs than queue_max, so -EAGAIN is met and retried after
         * some deliveries. */
        while (submitted < N) {
                int r;

                jobs[submitted] = (TestJob) { .id = submitted };
                r = workers_submit(w, work, done, &jobs[submitted]);
                if (r == -EAGAIN) {
                        ASSERT_OK(sd_event_run(e, UINT64_MAX));
                        continue;
                }
                ASSERT_OK(r);
                submitted++;
        }
        run_until(e, N);

        for (unsigned i = 0; i < N; i++)
                assert_ran_ok(&jobs[i]);
        ASSERT_EQ(delivered, N);
        ASSERT_EQ(workers_queued(w), 0);
        ASSERT_EQ(workers_running(w), 0);

        /* Nothing more is delivered. */
        ASSERT_OK(sd_event_run(e, 0));
        ASSERT_EQ(delivered, N);
}

TEST(queue_full) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        _cleanup_(workers_freep) Workers *w = NULL;
        sem_t started, release;
        TestJob blocker = { .id = 0, .started = &started, .release = &release };
        TestJob q1 = { .id = 1 }, q2 = { .id = 2 }, q3 = { .id = 3 };

        delivered = 0;
        ASSERT_OK(sem_init(&started, 0, 0));
        ASSERT_OK(sem_init(&release, 0, 0));
        ASSERT_OK(workers_new(e, 1, 2, &w));

        ASSERT_OK(workers_submit(w, work, done, &blocker));
        sem_wait_or_die(&started);              /* the only worker is now busy */
        ASSERT_EQ(workers_running(w), 1);
        ASSERT_EQ(workers_queued(w), 0);

        ASSERT_OK(workers_submit(w, work, done, &q1));
        ASSERT_OK(workers_submit(w, work, done, &q2));
        ASSERT_EQ(workers_queued(w), 2);
        ASSERT_EQ(workers_submit(w, work, done, &q3), -EAGAIN);
        ASSERT_EQ(workers_submit(w, work, done, &q3), -EAGAIN);
        ASSERT_EQ(workers_queued(w), 2);
        ASSERT_EQ(workers_running(w), 1);

        ASSERT_OK(sem_post(&release));
        run_until(e, 3);

        assert_ran_ok(&blocker);
        assert_ran_ok(&q1);
        assert_ran_ok(&q2);
        /* One worker: strict FIFO. */
        ASSERT_EQ(blocker.seq, 1);
        ASSERT_EQ(q1.seq, 2);
        ASSERT_EQ(q2.seq, 3);
        /* The refused job was never run nor delivered. */
        ASSERT_FALSE(q3.ran);
        ASSERT_EQ(q3.n_done, 0);
        ASSERT_EQ(workers_queued(w), 0);
        ASSERT_EQ(workers_running(w), 0);

        /* Room again. */
        ASSERT_OK(workers_submit(w, work, done, &q3));
        run_until(e, 4);
        assert_ran_ok(&q3);

        ASSERT_OK(sem_destroy(&started));
        ASSERT_OK(sem_destroy(&release));
}

TEST(quick_overtakes_slow) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        _cleanup_(workers_freep) Workers *w = NULL;
        sem_t started, release;
        TestJob slow = { .id = 0, .started = &started, .release = &release };
        TestJob quick = { .id = 1 };

        delivered = 0;
        ASSERT_OK(sem_init(&started, 0, 0));
        ASSERT_OK(sem_init(&release, 0, 0));
        ASSERT_OK(workers_new(e, 2, 4, &w));

        ASSERT_OK(workers_submit(w, work, done, &slow));
        sem_wait_or_die(&started);
        ASSERT_OK(workers_submit(w, work, done, &quick));

        run_until(e, 1);
        assert_ran_ok(&quick);
        ASSERT_EQ(quick.seq, 1);
        ASSERT_EQ(slow.n_done, 0);
        ASSERT_EQ(workers_running(w), 1);

        ASSERT_OK(sem_post(&release));
        run_until(e, 2);
        assert_ran_ok(&slow);
        ASSERT_EQ(slow.seq, 2);

        ASSERT_OK(sem_destroy(&started));
        ASSERT_OK(sem_destroy(&release));
}

TEST(free_cancels_queued) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        Workers *w = NULL;
        sem_t started, release;
        TestJob blocker = { .id = 0, .started = &started, .release = &release };
        TestJob q[3] = { { .id = 1 }, { .id = 2 }, { .id = 3 } };
        TestJob late = { .id = 4 };

        delivered = 0;
        ASSERT_OK(sem_init(&started, 0, 0));
        ASSERT_OK(sem_init(&release, 0, 0));
        ASSERT_OK(workers_new(e, 1, 4, &w));

        ASSERT_OK(workers_submit(w, work, done, &blocker));
        sem_wait_or_die(&started);
        for (unsigned i = 0; i < ELEMENTSOF(q); i++)
                ASSERT_OK(workers_submit(w, work, done, &q[i]));

        /* Stop first, so that releasing the blocker cannot let the worker pick up q[0]. */
        workers_stop(w);
        workers_stop(w);
        ASSERT_EQ(workers_submit(w, work, done, &late), -ESHUTDOWN);
        ASSERT_OK(sem_post(&release));

        /* Joins the worker (the blocker finishes), then delivers on this thread: the finished
         * blocker with 0 first, then the never-started ones with -ECANCELED, in FIFO order. */
        w = workers_free(w);
        ASSERT_TRUE(w == NULL);
        ASSERT_EQ(delivered, 4);

        assert_ran_ok(&blocker);
        ASSERT_EQ(blocker.seq, 1);
        for (unsigned i = 0; i < ELEMENTSOF(q); i++) {
                ASSERT_EQ(q[i].n_done, 1);
                ASSERT_EQ(q[i].error, -ECANCELED);
                ASSERT_FALSE(q[i].ran);
                ASSERT_TRUE(q[i].done_on_loop_thread);
                ASSERT_EQ(q[i].seq, i + 2);
        }
        ASSERT_EQ(late.n_done, 0);

        /* The eventfd source is gone from the loop. */
        ASSERT_OK(sd_event_run(e, 0));
        ASSERT_EQ(delivered, 4);

        ASSERT_OK(sem_destroy(&started));
        ASSERT_OK(sem_destroy(&release));
}

/* workers_cancel(): the queued jobs of one owner (or all) are never started and are delivered
 * by the loop with -ECANCELED, not from inside the call; others' jobs and running jobs go on. */
TEST(cancel_by_owner) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        Workers *w = NULL;
        sem_t started, release;
        TestJob blocker = { .id = 0, .started = &started, .release = &release };
        TestJob mine[3] = { { .id = 1 }, { .id = 2 }, { .id = 3 } };
        TestJob other = { .id = 4 }, last = { .id = 5 };
        int owner_a, owner_b;

        delivered = 0;
        ASSERT_OK(sem_init(&started, 0, 0));
        ASSERT_OK(sem_init(&release, 0, 0));
        ASSERT_OK(workers_new(e, 1, 8, &w));

        ASSERT_OK(workers_submit_owned(w, &owner_a, work, done, &blocker));
        sem_wait_or_die(&started);
        ASSERT_OK(workers_submit_owned(w, &owner_a, work, done, &mine[0]));
        ASSERT_OK(workers_submit_owned(w, &owner_b, work, done, &other));
        ASSERT_OK(workers_submit_owned(w, &owner_a, work, done, &mine[1]));
        ASSERT_OK(workers_submit_owned(w, &owner_a, work, done, &mine[2]));
        ASSERT_EQ(workers_queued(w), 4);

        ASSERT_EQ(workers_cancel(w, &owner_a), 3);
        ASSERT_EQ(delivered, 0);                /* not from inside the call */
        ASSERT_EQ(workers_queued(w), 1);
        ASSERT_EQ(workers_cancel(w, &owner_a), 0);

        run_until(e, 3);
        for (unsigned i = 0; i < ELEMENTSOF(mine); i++) {
                ASSERT_EQ(mine[i].n_done, 1);
                ASSERT_EQ(mine[i].error, -ECANCELED);
                ASSERT_FALSE(mine[i].ran);
                ASSERT_TRUE(mine[i].done_on_loop_thread);
                ASSERT_EQ(mine[i].seq, i + 1);
        }
        /* The running job of that owner finishes; the other owner's job runs after it. */
        ASSERT_EQ(blocker.n_done, 0);
        ASSERT_OK(sem_post(&release));
        run_until(e, 5);
        assert_ran_ok(&blocker);
        assert_ran_ok(&other);
        ASSERT_EQ(workers_running(w), 0);

        /* NULL cancels every queued job (a stop). */
        blocker = (TestJob) { .id = 0, .started = &started, .release = &release };
        ASSERT_OK(workers_submit(w, work, done, &blocker));
        sem_wait_or_die(&started);
        ASSERT_OK(workers_submit_owned(w, &owner_b, work, done, &other));
        ASSERT_OK(workers_submit(w, work, done, &last));
        ASSERT_EQ(workers_cancel(w, NULL), 2);
        ASSERT_EQ(workers_queued(w), 0);
        ASSERT_OK(sem_post(&release));
        run_until(e, 8);
        assert_ran_ok(&blocker);
        ASSERT_EQ(other.n_done, 2);
        ASSERT_EQ(other.error, -ECANCELED);
        ASSERT_EQ(last.error, -ECANCELED);
        ASSERT_FALSE(last.ran);

        w = workers_free(w);
        ASSERT_EQ(delivered, 8);
        ASSERT_OK(sem_destroy(&started));
        ASSERT_OK(sem_destroy(&release));
}

static void *release_after_go(void *p) {
        sem_t **s = p;

        sem_wait_or_die(s[0]);
        ASSERT_OK(sem_post(s[1]));
        return NULL;
}

/* workers_free() without workers_stop(), racing with the blocker's release: which queued jobs
 * still start is up to the scheduler, but every job is delivered exactly once, with 0 if and
 * only if its work ran, and the ones that ran are a FIFO prefix. */
TEST(free_racing) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        Workers *w = NULL;
        sem_t started, release, go;
        sem_t *sems[2] = { &go, &release };
        TestJob blocker = { .id = 0, .started = &started, .release = &release };
        TestJob q[8];
        pthread_t helper;
        bool prefix = true;

        delivered = 0;
        ASSERT_OK(sem_init(&started, 0, 0));
        ASSERT_OK(sem_init(&release, 0, 0));
        ASSERT_OK(sem_init(&go, 0, 0));
        ASSERT_OK(workers_new(e, 1, ELEMENTSOF(q), &w));

        ASSERT_OK(workers_submit(w, work, done, &blocker));
        sem_wait_or_die(&started);
        for (unsigned i = 0; i < ELEMENTSOF(q); i++) {
                q[i] = (TestJob) { .id = i + 1 };
                ASSERT_OK(workers_submit(w, work, done, &q[i]));
        }

        ASSERT_OK(-pthread_create(&helper, NULL, release_after_go, sems));
        ASSERT_OK(sem_post(&go));
        w = workers_free(w);
        ASSERT_OK(-pthread_join(helper, NULL));

        ASSERT_EQ(delivered, ELEMENTSOF(q) + 1);
        assert_ran_ok(&blocker);
        for (unsigned i = 0; i < ELEMENTSOF(q); i++) {
                ASSERT_EQ(q[i].n_done, 1);
                ASSERT_TRUE(q[i].done_on_loop_thread);
                ASSERT_EQ(q[i].error, q[i].ran ? 0 : -ECANCELED);
                if (!q[i].ran)
                        prefix = false;
                else
                        ASSERT_TRUE(prefix);
        }

        ASSERT_OK(sem_destroy(&started));
        ASSERT_OK(sem_destroy(&release));
        ASSERT_OK(sem_destroy(&go));
}

/* A done function may submit more work, and may free the pool. */
typedef struct Chain {
        Workers *w;
        TestJob first, second;
} Chain;

static void chain_work(void *userdata) {
        Chain *c = userdata;

        work(&c->first);
}

static void chain_first_done(void *userdata, int error) {
        Chain *c = userdata;

        done(&c->first, error);
        ASSERT_OK(workers_submit(c->w, work, done, &c->second));
}

static void free_in_done(void *userdata, int error) {
        Chain *c = userdata;

        done(&c->first, error);
        c->w = workers_free(c->w);
}

TEST(reentrant_done) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        Chain c = {};

        delivered = 0;
        ASSERT_OK(workers_new(e, 2, 2, &c.w));

        ASSERT_OK(workers_submit(c.w, chain_work, chain_first_done, &c));
        run_until(e, 2);
        assert_ran_ok(&c.first);
        assert_ran_ok(&c.second);
        ASSERT_EQ(c.first.seq, 1);
        ASSERT_EQ(c.second.seq, 2);

        c.first = (TestJob) {};
        ASSERT_OK(workers_submit(c.w, chain_work, free_in_done, &c));
        run_until(e, 3);
        assert_ran_ok(&c.first);
        ASSERT_TRUE(c.w == NULL);

        ASSERT_OK(sd_event_run(e, 0));
        ASSERT_EQ(delivered, 3);
}

/* The idle function: runs on a worker thread once it waited without a job, and at exit. */
static _Atomic unsigned idle_calls;
static _Atomic bool idle_on_worker = true;

static void count_idle(void) {
        idle_calls++;
        if (pthread_equal(pthread_self(), loop_thread))
                idle_on_worker = false;
}

TEST(idle) {
        _cleanup_(sd_event_unrefp) sd_event *e = event_new_or_die();
        Workers *w = NULL;
        TestJob j = {};

        delivered = 0;
        idle_calls = 0;
        ASSERT_OK(workers_new(e, 2, 4, &w));
        workers_set_idle(w, 20 * 1000, count_idle);
        /* Threads that ran nothing never idle. */
        (void) usleep(100 * 1000);
        ASSERT_EQ(idle_calls, 0);
        /* One job: its thread idles once (not again until it runs another). */
        ASSERT_OK(workers_submit(w, work, done, &j));
        run_until(e, 1);
        assert_ran_ok(&j);
        while (idle_calls < 1)
                (void) usleep(5 * 1000);
        (void) usleep(100 * 1000);
        ASSERT_EQ(idle_calls, 1);
        /* Another job, then the pool goes before the idle time: the exit runs it. */
        workers_set_idle(w, 60ULL * 1000 * 1000, count_idle);
        j = (TestJob) {};
        ASSERT_OK(workers_submit(w, work, done, &j));
        run_until(e, 2);
        w = workers_free(w);
        ASSERT_EQ(idle_calls, 2);
        ASSERT_TRUE(idle_on_worker);
}

int main(void) {
        loop_thread = pthread_self();

        RUN(invalid_args);
        RUN(many_jobs);
        RUN(queue_full);
        RUN(quick_overtakes_slow);
        RUN(free_cancels_queued);
        RUN(cancel_by_owner);
        RUN(free_racing);
        RUN(reentrant_done);
        RUN(idle);
        return 0;
}
