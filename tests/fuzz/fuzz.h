/* SPDX-License-Identifier: MIT */
/*
 * What every fuzz target in tests/fuzz/ shares: the libFuzzer entry point's prototype (the
 * targets define it; libFuzzer's main() or the plain replay driver replay.c calls it) and a few
 * test-only helpers for targets that need a scratch directory or a C string from the input.
 */
#pragma once

#include <ftw.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Defined (true) only by replay.c: a target that keeps state between inputs starts each one
 * afresh when replaying, so that every corpus file is a test of its own. */
extern const bool fuzz_replaying __attribute__((weak));

static inline bool fuzz_is_replay(void) {
        return &fuzz_replaying && fuzz_replaying;
}

/* A NUL-terminated copy of the input (which may itself hold NUL bytes). Aborts on OOM: a fuzz
 * target has nobody to report it to. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);

        if (!s)
                abort();
        if (size > 0)
                memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

/* A new private directory under $TMPDIR, else /dev/shm (a tmpfs: the store's fsync() costs
 * nothing there), else /tmp; aborts on failure. */
static inline void fuzz_mkdtemp(const char *name, char *ret, size_t size) {
        const char *tmp = getenv("TMPDIR");

        if (!tmp || !tmp[0])
                tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        (void) snprintf(ret, size, "%s/idm-fuzz-%s-XXXXXX", tmp, name);
        if (!mkdtemp(ret)) {
                perror("mkdtemp");
                abort();
        }
}

static inline int fuzz_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

/* Removes dir and everything below it, best effort. */
static inline void fuzz_rm_rf(const char *dir) {
        (void) nftw(dir, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
