/* SPDX-License-Identifier: MIT */
/*
 * Scope-based cleanup helpers shared by idmd, idmctl and pam_idm.
 *
 * A local declared with _cleanup_(f) has f(&local) called when it goes out of scope. Ownership
 * leaves such a local through TAKE_PTR()/TAKE_FD(), which return the value and reset the local so
 * the cleanup does nothing. Every *_freep helper accepts a pointer to NULL.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _warn_unused_result_ __attribute__((warn_unused_result))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _public_ __attribute__((visibility("default")))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define TAKE_PTR(p)                              \
        ({                                       \
                __typeof__(p) _taken_ = (p);     \
                (p) = NULL;                      \
                _taken_;                         \
        })

#define TAKE_FD(fd)                              \
        ({                                       \
                int _taken_fd_ = (fd);           \
                (fd) = -EBADF;                   \
                _taken_fd_;                      \
        })

/* Defines name##p(type **p) calling func(*p) when *p is not NULL. */
#define DEFINE_POINTER_CLEANUP(type, func)                \
        static inline void func##p(type **p) {            \
                if (*p)                                   \
                        func(*p);                         \
        }

#define _cleanup_free_ _cleanup_(freep)

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        (void) safe_close(*fd);
}

/* Overwrites a NUL-terminated secret and frees it. Returns NULL. */
static inline void *erase_and_free(char *s) {
        if (s) {
                explicit_bzero(s, strlen(s));
                free(s);
        }
        return NULL;
}

static inline void erase_and_freep(char **p) {
        (void) erase_and_free(*p);
}

/* A NULL-terminated array of strings and the strings. NULL-safe; returns NULL. */
static inline char **strv_free(char **l) {
        if (l) {
                for (char **i = l; *i; i++)
                        free(*i);
                free(l);
        }
        return NULL;
}

static inline void strv_freep(char ***l) {
        (void) strv_free(*l);
}

#define _cleanup_strv_free_ _cleanup_(strv_freep)

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline int streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}

#define streq(a, b) (strcmp((a), (b)) == 0)
