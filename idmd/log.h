/* SPDX-License-Identifier: MIT */
/*
 * idmd's logging: to the journal when stderr is connected to it (JOURNAL_STREAM) or when asked,
 * else one line per message on stderr. Library-like modules (store, tokens, ratelimit, config
 * parsers) log at debug level only; the caller logs once. Never pass a secret to these.
 *
 * log_*_errno(r, ...) log with errno = -r (so "%m" prints it) and return -abs(r).
 */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>

#include "idm/cleanup.h"

enum {
        LOG_LEVEL_ERR = 3,
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

void log_set_max_level(int level);
int log_get_max_level(void);
void log_open(void);            /* picks journal or stderr */
void log_set_ident(const char *ident);

/* Structured form: msg_id may be NULL (a 32-hex MESSAGE_ID otherwise); extra journal fields are
 * given as "FIELD=value" strings terminated by NULL, after the format arguments. */
int log_internal(int level, int error, const char *msg_id, const char *file, int line,
                 const char *func, const char *format, ...) _printf_(7, 8);

#define log_full_errno(level, error, ...) \
        log_internal((level), (error), NULL, __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_debug(...) log_full_errno(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_LEVEL_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_LEVEL_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_LEVEL_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_LEVEL_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_LEVEL_ERR, (e), __VA_ARGS__)

/* With a MESSAGE_ID (see docs/logging.md for the catalogue). */
#define log_struct(level, msg_id, ...) \
        log_internal((level), 0, (msg_id), __FILE__, __LINE__, __func__, __VA_ARGS__)

#define log_oom() log_full_errno(LOG_LEVEL_ERR, ENOMEM, "Out of memory.")
