/* SPDX-License-Identifier: MIT */
/*
 * idmd's log sink: the journal (structured, with CODE_* fields and MESSAGE_ID) when stderr is a
 * journal stream or when running under systemd, else "idmd[pid]: level: message" on stderr.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>

/* The CODE_* fields are the caller's, given by log_internal(), not this file's. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "log.h"

int log_max_level_ = LOG_LEVEL_INFO;
static bool use_journal = false;
static const char *ident = "idmd";
static LogScope scope = {};

void log_set_max_level(int level) {
        log_max_level_ = level;
}

int log_get_max_level(void) {
        return log_max_level_;
}

void log_set_ident(const char *s) {
        ident = s;
}

/* JOURNAL_STREAM is "dev:ino" of the journal's stream; use the journal only when it is really
 * our stderr (systemd.exec(5)), so "idmd 2>file" under a service still logs to the file. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_open(void) {
        use_journal = stderr_is_journal();
}

LogScope log_scope_set(void (*fill)(const void *owner, LogRequest *ret), const void *owner) {
        LogScope previous = scope;

        scope = (LogScope) { .fill = fill, .owner = owner };
        return previous;
}

void log_scope_restore(LogScope *previous) {
        scope = *previous;
}

static const char *level_name(int level) {
        switch (level) {
        case LOG_LEVEL_ERR:
                return "error";
        case LOG_LEVEL_WARNING:
                return "warning";
        case LOG_LEVEL_NOTICE:
                return "notice";
        case LOG_LEVEL_INFO:
                return "info";
        default:
                return "debug";
        }
}

/* One "NAME=value" field, appended to iov when value is set; buf holds it. */
typedef struct JournalField {
        char buf[192];
} JournalField;

static void add_field(struct iovec *iov, size_t *n, JournalField *f, const char *name, const char *value) {
        int k;

        if (!value || !*value)
                return;
        k = snprintf(f->buf, sizeof(f->buf), "%s=%s", name, value);
        if (k < 0)
                return;
        iov[(*n)++] = (struct iovec) { .iov_base = f->buf, .iov_len = (size_t) k < sizeof(f->buf) ? (size_t) k : sizeof(f->buf) - 1 };
}

/* The entry as journal fields: the message, where it comes from, the event's and the request's. */
static void send_journal(int level, int error, const char *msg_id, const LogFields *fields, const char *file,
                         int line, const char *func, const char *message) {
        LogRequest req = { .peer_uid = -1 };
        JournalField f[13];
        struct iovec iov[14];
        char number[3][24];
        size_t n = 0, k = 0;
        char text[2048 + sizeof("MESSAGE=")];

        (void) snprintf(text, sizeof(text), "MESSAGE=%s", message);
        iov[n++] = (struct iovec) { .iov_base = text, .iov_len = strlen(text) };

        if (scope.fill)
                scope.fill(scope.owner, &req);
        if (fields && fields->publisher_id)
                req.publisher_id = fields->publisher_id;
        if (fields && fields->customer_id)
                req.customer_id = fields->customer_id;

        (void) snprintf(number[0], sizeof(number[0]), "%d", level);
        (void) snprintf(number[1], sizeof(number[1]), "%d", line);
        add_field(iov, &n, &f[k++], "PRIORITY", number[0]);
        add_field(iov, &n, &f[k++], "MESSAGE_ID", msg_id);
        add_field(iov, &n, &f[k++], "CODE_FILE", file);
        add_field(iov, &n, &f[k++], "CODE_LINE", number[1]);
        add_field(iov, &n, &f[k++], "CODE_FUNC", func);
        add_field(iov, &n, &f[k++], "SYSLOG_IDENTIFIER", ident);
        if (error) {
                (void) snprintf(number[2], sizeof(number[2]), "%d", error);
                add_field(iov, &n, &f[k++], "ERRNO", number[2]);
        }
        add_field(iov, &n, &f[k++], "REQUEST_ID", req.request_id);
        add_field(iov, &n, &f[k++], "METHOD", req.method);
        if (req.peer_uid >= 0) {
                char uid[24];

                (void) snprintf(uid, sizeof(uid), "%lld", req.peer_uid);
                add_field(iov, &n, &f[k++], "PEER_UID", uid);
        }
        add_field(iov, &n, &f[k++], "PUBLISHER_ID", req.publisher_id);
        add_field(iov, &n, &f[k++], "CUSTOMER_ID", req.customer_id);
        add_field(iov, &n, &f[k++], "REASON", fields ? fields->reason : NULL);
        assert(k <= ELEMENTSOF(f) && n <= ELEMENTSOF(iov));

        (void) sd_journal_sendv(iov, (int) n);
}

int log_internal(int level, int error, const char *msg_id, const LogFields *fields, const char *file, int line,
                 const char *func, const char *format, ...) {
        char buf[2048];
        va_list ap;
        int saved_errno = errno;

        if (error < 0)
                error = -error;

        if (level > log_max_level_)
                return -error;

        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (use_journal)
                send_journal(level, error, msg_id, fields, file, line, func, buf);
        else
                (void) fprintf(stderr, "%s[%d]: %s: %s\n", ident, (int) getpid(), level_name(level), buf);

        errno = saved_errno;
        return -error;
}
