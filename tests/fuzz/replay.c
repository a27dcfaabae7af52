/* SPDX-License-Identifier: MIT */
/*
 * The fuzz-regress driver: a plain main() (no clang, no libFuzzer) that feeds every file named on
 * the command line, or every regular file of a directory named there, to the target's
 * LLVMFuzzerTestOneInput(), once each, in name order. Linked with each target's sources, it makes
 * each corpus in tests/fuzz/<target>/ (seeds and every crash found) a test of the normal build
 * (meson test --suite fuzz-regress). It fails when a file cannot be read or when nothing was
 * replayed; a crash in the target fails it the way the crash would (abort, sanitizer report).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"

const bool fuzz_replaying = true;

static int read_file(int dir_fd, const char *name, uint8_t **ret, size_t *ret_size) {
        uint8_t *buf = NULL;
        size_t size = 0, alloc = 0;
        int fd;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t n;

                if (size == alloc) {
                        uint8_t *p = realloc(buf, alloc ? alloc * 2 : 4096);
                        if (!p) {
                                free(buf);
                                (void) close(fd);
                                return -ENOMEM;
                        }
                        buf = p;
                        alloc = alloc ? alloc * 2 : 4096;
                }
                n = read(fd, buf + size, alloc - size);
                if (n < 0) {
                        int r = -errno;
                        if (r == -EINTR)
                                continue;
                        free(buf);
                        (void) close(fd);
                        return r;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        (void) close(fd);
        *ret = buf;
        *ret_size = size;
        return 0;
}

static int replay_one(int dir_fd, const char *name, const char *shown) {
        uint8_t *data = NULL;
        size_t size = 0;
        int r;

        r = read_file(dir_fd, name, &data, &size);
        if (r < 0) {
                fprintf(stderr, "%s: cannot read: %s\n", shown, strerror(-r));
                return r;
        }
        fprintf(stderr, "%s (%zu bytes)\n", shown, size);
        (void) LLVMFuzzerTestOneInput(data, size);
        free(data);
        return 0;
}

static int replay_dir(const char *path, unsigned *n) {
        struct dirent **entries = NULL;
        int dir_fd, k, r = 0;

        dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0) {
                r = -errno;
                fprintf(stderr, "%s: cannot open: %s\n", path, strerror(-r));
                return r;
        }
        k = scandir(path, &entries, NULL, alphasort);
        if (k < 0) {
                r = -errno;
                fprintf(stderr, "%s: cannot list: %s\n", path, strerror(-r));
                (void) close(dir_fd);
                return r;
        }
        for (int i = 0; i < k; i++) {
                struct stat st;
                char shown[4096];

                if (entries[i]->d_name[0] != '.' && fstatat(dir_fd, entries[i]->d_name, &st, 0) == 0 &&
                    S_ISREG(st.st_mode) && r >= 0) {
                        (void) snprintf(shown, sizeof shown, "%s/%s", path, entries[i]->d_name);
                        r = replay_one(dir_fd, entries[i]->d_name, shown);
                        if (r >= 0)
                                (*n)++;
                }
                free(entries[i]);
        }
        free(entries);
        (void) close(dir_fd);
        return r;
}

int main(int argc, char *argv[]) {
        unsigned n = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                int r;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return EXIT_FAILURE;
                }
                if (S_ISDIR(st.st_mode))
                        r = replay_dir(argv[i], &n);
                else {
                        r = replay_one(AT_FDCWD, argv[i], argv[i]);
                        if (r >= 0)
                                n++;
                }
                if (r < 0)
                        return EXIT_FAILURE;
        }
        if (n == 0) {
                fprintf(stderr, "no input replayed\n");
                return EXIT_FAILURE;
        }
        fprintf(stderr, "%u inputs replayed\n", n);
        return EXIT_SUCCESS;
}
