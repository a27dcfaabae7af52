/* SPDX-License-Identifier: MIT */
/*
 * The mail outbox (outbox.h): the STORE_OUTBOX records, queuing, and delivery.
 *
 * Delivery is a small state machine on the loop around one worker thread (a Workers pool of one,
 * so its completion comes back to the loop like a password hash's): a scan (timer) reads a
 * snapshot, drops what is older than max_age, and hands the oldest due message to the thread; the
 * thread runs the command; its completion records the outcome in a unit of work and scans again.
 * The scan looks at OUTBOX_SCAN_MAX records at most and goes on from where it stopped, so a long
 * queue of messages waiting for their next attempt costs bounded steps. While nothing is due it
 * sleeps until the earliest nextAttempt, at most OUTBOX_POLL_USEC (the realtime clock may jump).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "command.h"
#include "coro.h"
#include "idm/json-util.h"
#include "idm/time-util.h"
#include "log.h"
#include "message-ids.h"
#include "mail.h"
#include "manager.h"
#include "outbox.h"
#include "userdb.h"
#include "tokens.h"
#include "workers.h"

#define OUTBOX_SCAN_MAX 256u            /* records looked at per scan */
#define OUTBOX_EXPIRE_BATCH 64u         /* expired records dropped per unit of work */
#define OUTBOX_POLL_USEC (60ULL * 1000000ULL)
#define OUTBOX_POLL_SHARED_USEC (5ULL * 1000000ULL)
#define OUTBOX_START_USEC (500ULL * 1000ULL)    /* the first scan after start */
#define QUEUE_MAX_DEFAULT 10000u

/* What outbox_queue() works with: the running outbox's, else built-in defaults. Loop thread only. */
static const MailTemplates *queue_templates = NULL;
static const char *queue_from = "idmd@localhost";
static unsigned queue_max = QUEUE_MAX_DEFAULT;
static uint64_t queue_last_usec = 0;    /* the last id handed out: ids only grow */

typedef struct Delivery Delivery;

struct Outbox {
        Manager *m;
        MailTemplates *templates;
        char *from;
        char **argv;
        char **retired_argv;            /* replaced by a reload while a delivery used it */
        char *envp[4];                  /* command_env, and SYSTEMD_BYPASS_USERDB when userdb is on */
        char *bypass_userdb;            /* owned: the SYSTEMD_BYPASS_USERDB= entry */
        Workers *worker;
        sd_event_source *timer;
        char *cursor;                   /* where the next scan goes on; NULL: from the first */
        bool busy;                      /* a delivery or an expiry unit is under way */
        bool scanning;                  /* a coroutine reads the table (PostgreSQL) */
        bool rescan;                    /* the timer fired meanwhile: scan again at its end */
        bool stopping;
        _Atomic uint64_t cancel_at;     /* CLOCK_MONOTONIC µs; 0: none */
        OutboxStats stats;
};

struct Delivery {
        Outbox *o;
        char id[OUTBOX_ID_LEN + 1];
        char *message;                  /* a secret: wiped */
        char **argv;                    /* the outbox's when the delivery started (a reload keeps it) */
        uint64_t timeout_usec;
        unsigned attempts;              /* before this one */
        int error;                      /* command_run()'s */
        CommandResult result;
        uint64_t finished_usec;
        bool ok;
};

static char *const command_env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C" };

static uint64_t rec_u64(json_t *rec, const char *key) {
        json_int_t v = json_integer_value(json_object_get(rec, key));
        return v > 0 ? (uint64_t) v : 0;
}

static bool id_is_valid(const char *id) {
        if (!id || strlen(id) != OUTBOX_ID_LEN)
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

/* --- queuing --- */

int outbox_queue(StoreTxn *t, const char *kind, const char *publisher_id, const char *locale, const char *to,
                 json_t *vars) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_(erase_and_freep) char *unique = NULL, *message = NULL;
        uint64_t now = now_realtime_usec(), id_usec, n = 0;
        char id[OUTBOX_ID_LEN + 1];
        MailSpec spec;
        int r;

        r = token_random(16, &unique);
        if (r < 0)
                return r;
        spec = (MailSpec) {
                .kind = kind,
                .publisher_id = publisher_id,
                .locale = locale,
                .to = to,
                .from = queue_from,
                .vars = vars,
                .now_usec = now,
                .unique = unique,
        };
        r = mail_compose(queue_templates, &spec, &message);
        if (r < 0)
                return r;
        /* After the checks: a message that cannot be sent is refused as such, full or not. */
        r = store_count(t, STORE_OUTBOX, &n);
        if (r < 0)
                return r;
        if (n >= queue_max)
                return -ENOSPC;

        /* Strictly increasing ids, so key order is queue order even when two units run in the
         * same microsecond or the clock steps back. A rerun takes a new one; only the committed
         * run's is kept. */
        id_usec = now > queue_last_usec ? now : queue_last_usec + 1;
        queue_last_usec = id_usec;
        (void) snprintf(id, sizeof(id), "%016" PRIx64, id_usec);

        rec = json_pack("{s:s, s:s, s:s?, s:s?, s:I, s:i, s:I, s:s}",
                        "to", to,
                        "kind", kind,
                        "publisherId", publisher_id,
                        "locale", locale,
                        "created", (json_int_t) now,
                        "attempts", 0,
                        "nextAttempt", (json_int_t) now,
                        "message", message);
        if (!rec)
                return -ENOMEM;
        return store_put(t, STORE_OUTBOX, id, rec, STORE_PUT_NO_OVERWRITE);
}

/* --- the admin side --- */

static json_t *record_view(const char *id, json_t *rec) {
        char created[32], next[32];

        return json_pack("{s:s, s:O?, s:O?, s:O?, s:O?, s:s, s:I, s:s, s:O?}",
                         "id", id,
                         "to", json_object_get(rec, "to"),
                         "kind", json_object_get(rec, "kind"),
                         "publisherId", json_object_get(rec, "publisherId") ?: json_null(),
                         "locale", json_object_get(rec, "locale") ?: json_null(),
                         "created", format_rfc3339(rec_u64(rec, "created"), created),
                         "attempts", (json_int_t) rec_u64(rec, "attempts"),
                         "nextAttempt", format_rfc3339(rec_u64(rec, "nextAttempt"), next),
                         "lastError", json_object_get(rec, "lastError") ?: json_null());
}

typedef struct ListState {
        json_t *items;
        size_t limit;
        bool more;
} ListState;

static int list_one(const char *key, json_t *value, void *userdata) {
        ListState *l = userdata;

        if (json_array_size(l->items) >= l->limit) {
                l->more = true;
                return 1;
        }
        return json_array_append_new(l->items, record_view(key, value)) < 0 ? -ENOMEM : 0;
}

int outbox_list(StoreTxn *t, const char *cursor, size_t limit, json_t **ret_items, char **ret_cursor) {
        _cleanup_(json_decrefp) json_t *items = json_array();
        ListState l = { .items = items, .limit = limit };
        char *last = NULL;
        int r;

        if (!items)
                return -ENOMEM;
        r = store_foreach(t, STORE_OUTBOX, NULL, cursor, list_one, &l);
        if (r < 0)
                return r;
        if (l.more && json_array_size(items) > 0) {
                last = strdup(json_object_get_string(json_array_get(items, json_array_size(items) - 1), "id"));
                if (!last)
                        return -ENOMEM;
        }
        *ret_items = TAKE_PTR(items);
        *ret_cursor = last;
        return 0;
}

typedef struct RetryState {
        StoreTxn *t;
        uint64_t now;
        unsigned n;
} RetryState;

static int retry_one(const char *key, json_t *value, void *userdata) {
        RetryState *st = userdata;
        _cleanup_(json_decrefp) json_t *rec = json_deep_copy(value);
        int r;

        if (!rec)
                return -ENOMEM;
        if (json_object_set_new(rec, "nextAttempt", json_integer((json_int_t) st->now)) < 0)
                return -ENOMEM;
        r = store_put(st->t, STORE_OUTBOX, key, rec, STORE_PUT_DEFAULT);
        if (r < 0)
                return r;
        st->n++;
        return 0;
}

int outbox_retry(StoreTxn *t, const char *id, uint64_t now_usec, unsigned *ret_n) {
        RetryState st = { .t = t, .now = now_usec };
        int r;

        if (id) {
                _cleanup_(json_decrefp) json_t *rec = NULL;

                if (!id_is_valid(id))
                        return -ENOENT;
                r = store_get(t, STORE_OUTBOX, id, &rec);
                if (r < 0)
                        return r;
                r = retry_one(id, rec, &st);
        } else
                r = store_foreach(t, STORE_OUTBOX, NULL, NULL, retry_one, &st);
        if (r < 0)
                return r;
        *ret_n = st.n;
        return 0;
}

int outbox_drop(StoreTxn *t, const char *id) {
        if (!id_is_valid(id))
                return -ENOENT;
        return store_del(t, STORE_OUTBOX, id);
}

static int first_record(const char *key, json_t *value, void *userdata) {
        *(uint64_t *) userdata = rec_u64(value, "created");
        return 1;
}

int outbox_stats(Outbox *o, StoreTxn *t, OutboxStats *ret) {
        OutboxStats st = o ? o->stats : (OutboxStats) {};
        int r;

        r = store_count(t, STORE_OUTBOX, &st.depth);
        if (r < 0)
                return r;
        st.oldest_created_usec = 0;
        r = store_foreach(t, STORE_OUTBOX, NULL, NULL, first_record, &st.oldest_created_usec);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

void outbox_note_dropped(Outbox *o) {
        if (o)
                o->stats.dropped++;
}

/* --- delivery --- */

static void outbox_schedule(Outbox *o, uint64_t delay_usec) {
        if (!o->timer || o->stopping)
                return;
        (void) sd_event_source_set_time_relative(o->timer, delay_usec);
        (void) sd_event_source_set_enabled(o->timer, SD_EVENT_ONESHOT);
}

void outbox_kick(Manager *m) {
        if (m && m->outbox && !m->outbox->busy)
                outbox_schedule(m->outbox, 0);
}

static uint64_t backoff_usec(const Config *c, unsigned attempts) {
        uint64_t d = c->mail_retry_initial_usec;

        for (unsigned i = 1; i < attempts && d < c->mail_retry_max_usec; i++)
                d *= 2;
        return d < c->mail_retry_max_usec ? d : c->mail_retry_max_usec;
}

static void delivery_free(Delivery *d) {
        if (!d)
                return;
        erase_and_free(d->message);
        free(d);
}

/* What lastError says: the outcome and the first line of the command's output. */
static void delivery_describe(const Delivery *d, char *buf, size_t size) {
        const CommandResult *c = &d->result;
        int n;

        if (d->error < 0)
                n = snprintf(buf, size, "cannot run the mail command: %s", strerror(-d->error));
        else if (c->timed_out)
                n = snprintf(buf, size, "timed out, killed");
        else if (c->cancelled)
                n = snprintf(buf, size, "killed: idmd was stopping");
        else if (c->exited)
                n = snprintf(buf, size, "exit status %d", c->status);
        else
                n = snprintf(buf, size, "killed by signal %d", c->signal);
        if (n > 0 && (size_t) n < size && c->output[0])
                (void) snprintf(buf + n, size - (size_t) n, ": %s", c->output);
}

static int delivered_write(StoreTxn *t, void *userdata) {
        Delivery *d = userdata;
        int r;

        r = store_del(t, STORE_OUTBOX, d->id);
        return r == -ENOENT ? 0 : r;    /* dropped meanwhile */
}

static int failed_write(StoreTxn *t, void *userdata) {
        Delivery *d = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        char error[256];
        unsigned attempts;
        int r;

        r = store_get(t, STORE_OUTBOX, d->id, &rec);
        if (r == -ENOENT)
                return 0;       /* dropped meanwhile */
        if (r < 0)
                return r;
        attempts = (unsigned) rec_u64(rec, "attempts") + 1;
        delivery_describe(d, error, sizeof(error));
        if (json_object_set_new(rec, "attempts", json_integer(attempts)) < 0 ||
            json_object_set_new(rec, "nextAttempt",
                                json_integer((json_int_t) (d->finished_usec +
                                                           backoff_usec(d->o->m->config, attempts)))) < 0 ||
            json_object_set_new(rec, "lastError", json_string(error)) < 0)
                return -ENOMEM;
        return store_put(t, STORE_OUTBOX, d->id, rec, STORE_PUT_DEFAULT);
}

static void outcome_done(int r, void *userdata) {
        Delivery *d = userdata;
        Outbox *o = d->o;
        char error[256];

        if (d->ok) {
                if (r < 0)
                        log_error_errno(r, "Outbox message %s was accepted by the mail command, but removing it "
                                        "failed; it may be sent again: %m", d->id);
                else {
                        o->stats.delivered++;
                        log_info("Outbox message %s handed to the mail command (attempt %u).", d->id, d->attempts + 1);
                }
        } else {
                o->stats.failed_attempts++;
                delivery_describe(d, error, sizeof(error));
                if (r < 0)
                        log_error_errno(r, "Recording the failed delivery of outbox message %s failed: %m", d->id);
                else
                        log_warning("Delivering outbox message %s failed (attempt %u): %s; next attempt in %" PRIu64
                                    " s.",
                                    d->id, d->attempts + 1, error,
                                    (uint64_t) (backoff_usec(o->m->config, d->attempts + 1) / 1000000ULL));
        }
        delivery_free(d);
        o->busy = false;
        outbox_schedule(o, 0);
}

/* On the worker thread. */
static void delivery_work(void *userdata) {
        Delivery *d = userdata;
        Outbox *o = d->o;

        d->error = command_run(d->argv, o->envp, d->message, strlen(d->message), d->timeout_usec, &o->cancel_at,
                               &d->result);
        d->ok = d->error == 0 && d->result.exited && d->result.status == 0;
}

/* On the loop (or in outbox_free()): the command is done; record what it did. */
static void delivery_done(void *userdata, int error) {
        Delivery *d = userdata;
        int r;

        d->o->stats.in_flight = false;
        d->o->retired_argv = command_argv_free(d->o->retired_argv);
        if (error < 0) {        /* never started (the pool was freed first) */
                d->o->busy = false;
                delivery_free(d);
                return;
        }
        /* The message is not needed any more: wipe it now rather than after the unit of work. */
        d->message = erase_and_free(d->message);
        if (!d->ok && d->result.cancelled) {
                /* Killed because idmd is stopping: not the message's failure. Its record stays as
                 * it was, due at the next start. */
                log_info("Delivery of outbox message %s interrupted by the stop; it is tried again at the next start.",
                         d->id);
                d->o->busy = false;
                delivery_free(d);
                return;
        }
        d->finished_usec = now_realtime_usec();
        r = store_submit(d->o->m->store, d->ok ? delivered_write : failed_write, outcome_done, d);
        if (r < 0)
                outcome_done(r, d);
}

typedef struct Scan {
        uint64_t now;
        unsigned visited;
        char last[OUTBOX_ID_LEN + 1];
        char *expired[OUTBOX_EXPIRE_BATCH];
        unsigned n_expired;
        uint64_t max_age;
        uint64_t earliest;              /* the earliest nextAttempt not due; 0: none */
        Delivery *due;
} Scan;

static int scan_one(const char *key, json_t *value, void *userdata) {
        Scan *s = userdata;
        uint64_t created = rec_u64(value, "created"), next = rec_u64(value, "nextAttempt");
        const char *message;

        if (++s->visited > OUTBOX_SCAN_MAX)
                return 1;
        (void) snprintf(s->last, sizeof(s->last), "%s", key);

        if (created + s->max_age <= s->now || !id_is_valid(key)) {
                if (s->n_expired >= OUTBOX_EXPIRE_BATCH)
                        return 1;
                s->expired[s->n_expired] = strdup(key);
                if (!s->expired[s->n_expired])
                        return -ENOMEM;
                s->n_expired++;
                return 0;
        }
        if (next > s->now) {
                if (s->earliest == 0 || next < s->earliest)
                        s->earliest = next;
                return 0;
        }
        message = json_object_get_string(value, "message");
        if (!message)
                return 0;       /* cannot happen: outbox_queue() writes it; left for max_age */
        s->due = calloc(1, sizeof(Delivery));
        if (!s->due)
                return -ENOMEM;
        memcpy(s->due->id, key, sizeof(s->due->id));
        s->due->attempts = (unsigned) rec_u64(value, "attempts");
        s->due->message = strdup(message);
        if (!s->due->message)
                return -ENOMEM;
        return 1;
}

typedef struct Expiry {
        Outbox *o;
        char *ids[OUTBOX_EXPIRE_BATCH];
        unsigned n;
        unsigned deleted;
} Expiry;

static void expiry_free(Expiry *e) {
        for (unsigned i = 0; i < e->n; i++)
                free(e->ids[i]);
        free(e);
}

static int expiry_write(StoreTxn *t, void *userdata) {
        Expiry *e = userdata;
        int r;

        e->deleted = 0;
        for (unsigned i = 0; i < e->n; i++) {
                r = store_del(t, STORE_OUTBOX, e->ids[i]);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                e->deleted++;
        }
        return 0;
}

static void expiry_done(int r, void *userdata) {
        Expiry *e = userdata;
        Outbox *o = e->o;
        char age[32];

        if (r < 0)
                log_warning_errno(r, "Dropping %u outbox messages older than max_age failed, ignoring: %m", e->n);
        else {
                o->stats.expired += e->deleted;
                (void) snprintf(age, sizeof(age), "%" PRIu64 " s", (uint64_t) (o->m->config->mail_max_age_usec / 1000000ULL));
                for (unsigned i = 0; i < e->n; i++)
                        log_struct(LOG_LEVEL_WARNING, IDM_MESSAGE_OUTBOX_EXPIRED,
                                   "Outbox message %s dropped undelivered: older than max_age (%s).", e->ids[i], age);
        }
        expiry_free(e);
        o->busy = false;
        outbox_schedule(o, 0);
}

static void scan_done(Scan *s) {
        for (unsigned i = 0; i < s->n_expired; i++)
                free(s->expired[i]);
        delivery_free(s->due);
}

/* Reads the table for what is due or expired, and starts that. */
static void outbox_scan(Outbox *o) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        Scan s = { .now = now_realtime_usec(), .max_age = o->m->config->mail_max_age_usec };
        /* A store other instances share (PostgreSQL) gets mail they queue: look more often. */
        uint64_t delay = store_waits(o->m->store) ? OUTBOX_POLL_SHARED_USEC : OUTBOX_POLL_USEC;
        int r;

        /* Of the instances sharing a store, one delivers its outbox. */
        r = store_lead(o->m->store, STORE_JOB_OUTBOX);
        if (r <= 0) {
                if (r < 0)
                        log_debug_errno(r, "Cannot tell whether this instance delivers the outbox: %m");
                outbox_schedule(o, delay);
                return;
        }
        r = store_read(o->m->store, &t);
        if (r >= 0)
                r = store_foreach(t, STORE_OUTBOX, NULL, o->cursor, scan_one, &s);
        t = store_txn_free(t);
        if (r < 0) {
                log_warning_errno(r, "Reading the outbox failed, trying again later: %m");
                scan_done(&s);
                outbox_schedule(o, OUTBOX_POLL_USEC);
                return;
        }

        if (s.n_expired > 0) {
                Expiry *e = calloc(1, sizeof(Expiry));

                if (!e) {
                        scan_done(&s);
                        outbox_schedule(o, OUTBOX_POLL_USEC);
                        return;
                }
                e->o = o;
                memcpy(e->ids, s.expired, sizeof(e->ids));
                e->n = s.n_expired;
                s.n_expired = 0;
                scan_done(&s);  /* the due message, if any, is found again after the expiry */
                o->busy = true;
                r = store_submit(o->m->store, expiry_write, expiry_done, e);
                if (r < 0)
                        expiry_done(r, e);
                return;
        }

        if (s.due) {
                Delivery *d = TAKE_PTR(s.due);

                scan_done(&s);
                d->o = o;
                d->argv = o->argv;
                d->timeout_usec = o->m->config->mail_timeout_usec;
                o->busy = true;
                o->stats.in_flight = true;
                r = workers_submit(o->worker, delivery_work, delivery_done, d);
                if (r < 0) {
                        o->busy = false;
                        o->stats.in_flight = false;
                        delivery_free(d);
                        log_warning_errno(r, "Starting a delivery failed, trying again later: %m");
                        outbox_schedule(o, OUTBOX_POLL_USEC);
                }
                /* The next scan starts from the first again: FIFO among what is due. */
                free(o->cursor);
                o->cursor = NULL;
                return;
        }

        scan_done(&s);
        free(o->cursor);
        o->cursor = NULL;
        if (s.visited > OUTBOX_SCAN_MAX) {
                /* Stopped at the bound: go on from there at once. */
                o->cursor = strdup(s.last);
                delay = 0;
        } else if (s.earliest != 0 && s.earliest - s.now < delay)
                delay = s.earliest - s.now;
        outbox_schedule(o, delay);
}

static void outbox_scan_main(void *userdata) {
        Outbox *o = userdata;

        outbox_scan(o);
        o->scanning = false;
        if (o->rescan) {
                /* A kick (new mail, retryOutbox) came while this scan was reading. */
                o->rescan = false;
                if (!o->busy)
                        outbox_schedule(o, 0);
        }
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        Outbox *o = userdata;

        if (o->scanning) {
                o->rescan = true;
                return 0;
        }
        if (o->busy || o->stopping)
                return 0;
        /* On a store that waits, the scan runs in a coroutine: the loop serves on meanwhile. */
        if (store_waits(o->m->store)) {
                o->scanning = true;
                if (coro_start(outbox_scan_main, o) < 0) {
                        o->scanning = false;
                        outbox_schedule(o, OUTBOX_POLL_USEC);
                }
                return 0;
        }
        outbox_scan(o);
        return 0;
}

/* The last id in the table, so that new ids come after it even if the clock went back. */
static int last_id(const char *key, json_t *value, void *userdata) {
        uint64_t v;

        if (id_is_valid(key) && sscanf(key, "%" SCNx64, &v) == 1 && v > *(uint64_t *) userdata)
                *(uint64_t *) userdata = v;
        return 0;
}

static int outbox_load_last_id(Outbox *o) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        uint64_t last = 0;
        int r;

        r = store_read(o->m->store, &t);
        if (r < 0)
                return r;
        r = store_foreach(t, STORE_OUTBOX, NULL, NULL, last_id, &last);
        if (r < 0)
                return r;
        if (last > queue_last_usec)
                queue_last_usec = last;
        return 0;
}

static char *default_from(void) {
        char host[256] = {};
        char *from = NULL;

        if (gethostname(host, sizeof(host) - 1) < 0 || asprintf(&from, "idmd@%s", host) < 0)
                from = NULL;
        if (from && mail_address_is_valid(from))
                return from;
        free(from);
        log_warning("The host's name '%s' does not make a valid address; mail is sent from idmd@localhost. "
                    "Set [mail] from.", host);
        return strdup("idmd@localhost");
}

/* What [mail] makes of the outbox: templates, command and sender, loaded from c (logged). */
typedef struct MailSettings {
        MailTemplates *templates;
        char **argv;
        char *from;
} MailSettings;

static void mail_settings_done(MailSettings *s) {
        s->templates = mail_templates_free(s->templates);
        s->argv = command_argv_free(s->argv);
        free(s->from);
        s->from = NULL;
}

static int mail_settings_load(const Config *c, MailSettings *ret) {
        _cleanup_(mail_settings_done) MailSettings s = {};
        _cleanup_free_ char *bad = NULL;
        int r;

        r = mail_templates_load(c->mail_template_dir, &s.templates, &bad);
        if (r < 0) {
                if (bad)
                        return log_error_errno(r, "[mail] template_dir: cannot use the template %s/%s: %m", c->mail_template_dir,
                                               bad);
                return log_error_errno(r, "[mail] template_dir: cannot read %s: %m", c->mail_template_dir);
        }
        r = command_split(c->mail_command, &s.argv);
        if (r < 0)
                return log_error_errno(r, "[mail] mail_command: cannot use '%s': %m", c->mail_command);
        if (access(s.argv[0], X_OK) < 0)
                log_warning_errno(errno, "[mail] mail_command: %s cannot be run (%m); mail stays queued until it can.",
                                  s.argv[0]);
        s.from = c->mail_from[0] ? strdup(c->mail_from) : default_from();
        if (!s.from)
                return log_oom();
        *ret = s;
        s = (MailSettings) {};
        return 0;
}

int outbox_reload(Outbox *o, const Config *c) {
        _cleanup_(mail_settings_done) MailSettings s = {};
        int r;

        r = mail_settings_load(c, &s);
        if (r < 0)
                return r;
        /* Templates and sender are the loop's alone: replaced at once. */
        mail_templates_free(o->templates);
        o->templates = TAKE_PTR(s.templates);
        free(o->from);
        o->from = TAKE_PTR(s.from);
        queue_templates = o->templates;
        queue_from = o->from;
        queue_max = c->mail_max_queued;
        /* The delivery under way keeps the command it started with (delivery_done() frees it);
         * an earlier reload's command, if it was never used, goes now. */
        if (o->stats.in_flight && !o->retired_argv)
                o->retired_argv = o->argv;
        else
                command_argv_free(o->argv);
        o->argv = TAKE_PTR(s.argv);
        log_debug("Outbox reloaded: mail from %s through %s, %u template files.", o->from, o->argv[0],
                  mail_templates_count(o->templates));
        return 0;
}

int outbox_new(Manager *m, Outbox **ret) {
        _cleanup_(outbox_freep) Outbox *o = NULL;
        _cleanup_(mail_settings_done) MailSettings s = {};
        const Config *c = m->config;
        int r;

        o = calloc(1, sizeof(Outbox));
        if (!o)
                return log_oom();
        o->m = m;
        memcpy(o->envp, command_env, sizeof(command_env));
        /* The command (sendmail looks its user up) must not ask idmd's userdb through NSS: idmd
         * waits for the command, so that would wait for itself. */
        if (userdb_service(c)) {
                if (asprintf(&o->bypass_userdb, "SYSTEMD_BYPASS_USERDB=%s", userdb_service(c)) < 0)
                        return log_oom();
                o->envp[ELEMENTSOF(command_env)] = o->bypass_userdb;
        }

        r = mail_settings_load(c, &s);
        if (r < 0)
                return r;
        o->templates = TAKE_PTR(s.templates);
        o->argv = TAKE_PTR(s.argv);
        o->from = TAKE_PTR(s.from);

        r = outbox_load_last_id(o);
        if (r < 0)
                return log_error_errno(r, "Failed to read the outbox: %m");

        r = workers_new(m->event, 1, 1, &o->worker);
        if (r < 0)
                return log_error_errno(r, "Failed to start the mail delivery thread: %m");
        r = sd_event_add_time_relative(m->event, &o->timer, CLOCK_MONOTONIC, OUTBOX_START_USEC, 0, on_timer, o);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the outbox timer: %m");
        /* Requests already received go first; a scan is background work. */
        (void) sd_event_source_set_priority(o->timer, SD_EVENT_PRIORITY_IDLE);

        queue_templates = o->templates;
        queue_from = o->from;
        queue_max = c->mail_max_queued;
        log_debug("Outbox: mail from %s through %s, %u template files.", o->from, o->argv[0],
                  mail_templates_count(o->templates));
        *ret = TAKE_PTR(o);
        return 0;
}

void outbox_stop(Outbox *o) {
        if (!o || o->stopping)
                return;
        o->stopping = true;
        if (o->timer)
                (void) sd_event_source_set_enabled(o->timer, SD_EVENT_OFF);
        if (o->stats.in_flight) {
                uint64_t at = now_monotonic_usec() + OUTBOX_STOP_GRACE_USEC;
                o->cancel_at = at;
                log_info("Waiting up to %llu s for the mail command in flight.",
                         (unsigned long long) (OUTBOX_STOP_GRACE_USEC / 1000000ULL));
        }
}

Outbox *outbox_free(Outbox *o) {
        if (!o)
                return NULL;
        outbox_stop(o);
        /* Joins the thread; the finished delivery's outcome is submitted and, by the flush,
         * written while o is still here for its completion. */
        o->worker = workers_free(o->worker);
        if (o->m->store)
                store_flush(o->m->store);
        o->timer = sd_event_source_disable_unref(o->timer);
        if (queue_templates == o->templates) {
                queue_templates = NULL;
                queue_from = "idmd@localhost";
                queue_max = QUEUE_MAX_DEFAULT;
        }
        mail_templates_free(o->templates);
        command_argv_free(o->argv);
        command_argv_free(o->retired_argv);
        free(o->from);
        free(o->cursor);
        free(o->bypass_userdb);
        free(o);
        return NULL;
}
