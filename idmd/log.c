/* SPDX-License-Identifier: MIT */
/*
 * idmd's log sink: the journal (structured, with CODE_* fields and MESSAGE_ID) when stderr is a
 * journal stream or when running under systemd, else "idmd[pid]: level: message" on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/stat.h>

#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_LEVEL_INFO;
static bool use_journal = false;
static const char *ident = "idmd";

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
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

int log_internal(int level, int error, const char *msg_id, const char *file, int line,
                 const char *func, const char *format, ...) {
        char buf[2048];
        va_list ap;
        int saved_errno = errno;

        if (error < 0)
                error = -error;

        if (level > max_level)
                return -error;

        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (use_journal) {
                char lineno[16];
                (void) snprintf(lineno, sizeof(lineno), "%d", line);
                if (msg_id)
                        (void) sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level,
                                               "MESSAGE_ID=%s", msg_id, "CODE_FILE=%s", file,
                                               "CODE_LINE=%s", lineno, "CODE_FUNC=%s", func,
                                               "SYSLOG_IDENTIFIER=%s", ident,
                                               error ? "ERRNO=%i" : NULL, error, NULL);
                else
                        (void) sd_journal_send("MESSAGE=%s", buf, "PRIORITY=%d", level,
                                               "CODE_FILE=%s", file, "CODE_LINE=%s", lineno,
                                               "CODE_FUNC=%s", func, "SYSLOG_IDENTIFIER=%s", ident,
                                               error ? "ERRNO=%i" : NULL, error, NULL);
        } else
                (void) fprintf(stderr, "%s[%d]: %s: %s\n", ident, (int) getpid(), level_name(level), buf);

        errno = saved_errno;
        return -error;
}
