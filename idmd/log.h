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

/* The level gate, checked by the log_*() macros before anything else: below the level nothing
 * is formatted and the arguments are not even evaluated. Written only by log_set_max_level(). */
extern int log_max_level_;

static inline bool log_level_enabled(int level) {
        return level <= log_max_level_;
}

/* What a log_*_errno() call returns: -abs(error). */
static inline int log_errno_return(int error) {
        return error < 0 ? error : -error;
}
void log_open(void);            /* picks journal or stderr */
void log_set_ident(const char *ident);

/* The request being served, for the journal fields of every entry logged while it is in scope
 * (REQUEST_ID, METHOD, PEER_UID, PUBLISHER_ID, CUSTOMER_ID). Any field may be NULL (not set). */
typedef struct LogRequest {
        const char *request_id;
        const char *method;
        const char *publisher_id;
        const char *customer_id;
        long long peer_uid;             /* -1: none */
} LogRequest;

/* A scope: fill(owner, ret) is asked for the request's fields when an entry is logged (so a
 * customer authenticated meanwhile is named). Set with log_scope_set(), which returns the scope
 * it replaces; give that back to log_scope_restore() (usable with _cleanup_) before owner goes. */
typedef struct LogScope {
        void (*fill)(const void *owner, LogRequest *ret);
        const void *owner;
} LogScope;

LogScope log_scope_set(void (*fill)(const void *owner, LogRequest *ret), const void *owner);
void log_scope_restore(LogScope *previous);

/* What one event adds to the request's fields: publisher_id and customer_id replace the
 * scope's when not NULL; reason is a stable IDM_REASON_* string (REASON=). */
typedef struct LogFields {
        const char *publisher_id;
        const char *customer_id;
        const char *reason;
} LogFields;

/* msg_id may be NULL (a 32-hex MESSAGE_ID from message-ids.h otherwise); fields may be NULL. */
int log_internal(int level, int error, const char *msg_id, const LogFields *fields, const char *file,
                 int line, const char *func, const char *format, ...) _printf_(8, 9);

#define log_full_errno(level, error, ...)                                                         \
        (log_level_enabled(level)                                                                 \
                 ? log_internal((level), (error), NULL, NULL, __FILE__, __LINE__, __func__, __VA_ARGS__) \
                 : log_errno_return(error))

#define log_debug(...) log_full_errno(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_LEVEL_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_LEVEL_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_LEVEL_DEBUG, (e), __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_LEVEL_INFO, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_LEVEL_ERR, (e), __VA_ARGS__)

/* An event with a MESSAGE_ID (message-ids.h, catalog/idm.catalog) and its own fields: pub and
 * cust (NULL: the scope's) and why (an IDM_REASON_*, or NULL). */
#define log_event(level, msg_id, pub, cust, why, ...)                                             \
        (log_level_enabled(level)                                                                   \
                 ? log_internal((level), 0, (msg_id),                                               \
                                &(const LogFields) { .publisher_id = (pub), .customer_id = (cust), .reason = (why) }, \
                                __FILE__, __LINE__, __func__, __VA_ARGS__)                          \
                 : 0)
#define log_struct(level, msg_id, ...)                                                            \
        (log_level_enabled(level) ? log_internal((level), 0, (msg_id), NULL, __FILE__, __LINE__, __func__, __VA_ARGS__) \
                                  : 0)

#define log_oom() log_full_errno(LOG_LEVEL_ERR, ENOMEM, "Out of memory.")
