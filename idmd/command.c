/* SPDX-License-Identifier: MIT */
/*
 * Runs the mail command (command.h): spawn, feed, capture, deadline, kill, reap.
 *
 * The message is the command's standard input as a file holding all of it (a memfd), not a pipe
 * fed as the command reads: if idmd dies while the command reads, a pipe would end early and the
 * command would take the cut message for all of it (and exit 0); a file still holds the rest.
 *
 * The exit is watched through a pidfd when the kernel has one (Linux >= 5.3), else by polling
 * waitpid() every POLL_SLICE_USEC. After a normal exit the group is left alone: a sendmail may
 * leave a delivery process behind on purpose. Output still held open by such a process is not
 * waited for.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "command.h"
#include "idm/cleanup.h"
#include "idm/time-util.h"

#define POLL_SLICE_USEC (20ULL * 1000ULL)       /* without a pidfd: how often waitpid() looks */
#define CANCEL_SLICE_USEC (100ULL * 1000ULL)    /* how often *cancel_at is looked at */

char **command_argv_free(char **argv) {
        if (argv) {
                for (char **a = argv; *a; a++)
                        free(*a);
                free(argv);
        }
        return NULL;
}

int command_split(const char *line, char ***ret) {
        char **argv = NULL;
        size_t n = 0;

        for (const char *p = line;;) {
                size_t len;
                char **a;

                p += strspn(p, " \t");
                if (!*p)
                        break;
                len = strcspn(p, " \t");
                a = reallocarray(argv, n + 2, sizeof(char *));
                if (!a) {
                        command_argv_free(argv);
                        return -ENOMEM;
                }
                argv = a;
                argv[n] = strndup(p, len);
                argv[n + 1] = NULL;
                if (!argv[n]) {
                        command_argv_free(argv);
                        return -ENOMEM;
                }
                n++;
                p += len;
        }
        if (n == 0) {
                free(argv);
                return -EINVAL;
        }
        *ret = argv;
        return 0;
}

/* Keeps the first line of the output, printable ASCII only. */
static void output_append(CommandResult *r, size_t *len, bool *line_done, const char *buf, size_t n) {
        for (size_t i = 0; i < n && !*line_done && *len < COMMAND_OUTPUT_MAX; i++) {
                unsigned char c = (unsigned char) buf[i];

                if (c == '\n') {
                        if (*len > 0)
                                *line_done = true;
                        continue;
                }
                r->output[(*len)++] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
        r->output[*len] = 0;
}

static int pidfd_open_(pid_t pid) {
#ifdef SYS_pidfd_open
        return (int) syscall(SYS_pidfd_open, pid, 0);
#else
        errno = ENOSYS;
        return -1;
#endif
}

static void kill_group(pid_t pid) {
        (void) kill(-pid, SIGKILL);
        (void) kill(pid, SIGKILL);     /* should it have left the group */
}

static void record_status(CommandResult *ret, int status) {
        if (WIFEXITED(status)) {
                ret->exited = true;
                ret->status = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status))
                ret->signal = WTERMSIG(status);
}

static int spawn(char *const argv[], char *const envp[], int in_fd, int out_fd, pid_t *ret) {
        static const int defaults[] = { SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGALRM, SIGUSR1,
                                        SIGUSR2, SIGXFSZ };
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t mask, def;
        int r;

        sigemptyset(&mask);
        sigemptyset(&def);
        for (size_t i = 0; i < ELEMENTSOF(defaults); i++)
                sigaddset(&def, defaults[i]);

        r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                (void) posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        r = posix_spawn_file_actions_adddup2(&fa, in_fd, STDIN_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                            POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &mask);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &def);
        if (r == 0)
                r = posix_spawn(ret, argv[0], &fa, &attr, argv, envp);
        (void) posix_spawnattr_destroy(&attr);
        (void) posix_spawn_file_actions_destroy(&fa);
        return -r;
}

/* A memfd holding input, at offset 0; -errno. */
static int input_file(const char *input, size_t len) {
        _cleanup_(closep) int fd = memfd_create("idmd-mail", MFD_CLOEXEC);

        if (fd < 0)
                return -errno;
        for (size_t done = 0; done < len;) {
                ssize_t k = write(fd, input + done, len - done);

                if (k < 0 && errno != EINTR)
                        return -errno;
                if (k > 0)
                        done += (size_t) k;
        }
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int command_run(char *const argv[], char *const envp[], const char *input, size_t len, uint64_t timeout_usec,
                const _Atomic uint64_t *cancel_at, CommandResult *ret) {
        _cleanup_(closep) int in_fd = -EBADF, out_r = -EBADF, out_w = -EBADF, pidfd = -EBADF;
        int out_pipe[2], status, r;
        uint64_t deadline = now_monotonic_usec() + timeout_usec;
        bool line_done = false, exited = false;
        size_t out_len = 0;
        pid_t pid;

        *ret = (CommandResult) {};
        if (!argv || !argv[0] || argv[0][0] != '/')
                return -EINVAL;

        in_fd = input_file(input, len);
        if (in_fd < 0)
                return in_fd;
        if (pipe2(out_pipe, O_CLOEXEC) < 0)
                return -errno;
        out_r = out_pipe[0];
        out_w = out_pipe[1];

        r = spawn(argv, envp, in_fd, out_w, &pid);
        /* The message is the command's now (it may still be reading when it is killed, or when we
         * die): our copy of the descriptor goes, the pages with the last one. */
        in_fd = safe_close(in_fd);
        if (r < 0)
                return r;
        out_w = safe_close(out_w);
        (void) fcntl(out_r, F_SETFL, O_NONBLOCK);
        pidfd = pidfd_open_(pid);
        if (pidfd < 0)
                pidfd = -EBADF;

        for (;;) {
                struct pollfd p[2];
                size_t n = 0;
                int idx_out = -1;
                uint64_t now = now_monotonic_usec(), cancel = cancel_at ? *cancel_at : 0, wait_usec;

                if (!exited) {
                        pid_t k = waitpid(pid, &status, WNOHANG);

                        if (k == pid) {
                                exited = true;
                                record_status(ret, status);
                        }
                }
                if (exited) {
                        /* Take what output is there; a descendant may hold the pipe open. */
                        char buf[512];
                        ssize_t k;

                        while (out_r >= 0 && (k = read(out_r, buf, sizeof(buf))) > 0)
                                output_append(ret, &out_len, &line_done, buf, (size_t) k);
                        break;
                }
                if (now >= deadline || (cancel != 0 && now >= cancel)) {
                        if (now >= deadline)
                                ret->timed_out = true;
                        else
                                ret->cancelled = true;
                        kill_group(pid);
                        if (waitpid(pid, &status, 0) == pid)
                                record_status(ret, status);
                        exited = true;
                        break;
                }

                if (out_r >= 0) {
                        p[n] = (struct pollfd) { .fd = out_r, .events = POLLIN };
                        idx_out = (int) n++;
                }
                if (pidfd >= 0)        /* readable once it exited: waitpid() above then reaps it */
                        p[n++] = (struct pollfd) { .fd = pidfd, .events = POLLIN };
                wait_usec = deadline - now;
                if (cancel != 0 && cancel - now < wait_usec)
                        wait_usec = cancel > now ? cancel - now : 0;
                if (pidfd < 0 && wait_usec > POLL_SLICE_USEC)
                        wait_usec = POLL_SLICE_USEC;
                if (cancel_at && wait_usec > CANCEL_SLICE_USEC)
                        wait_usec = CANCEL_SLICE_USEC;
                /* EINTR (or any error): the loop looks at the child and the clock again. */
                (void) poll(p, n, (int) ((wait_usec + 999) / 1000));

                if (idx_out >= 0 && (p[idx_out].revents & (POLLIN | POLLERR | POLLHUP))) {
                        char buf[512];
                        ssize_t k = read(out_r, buf, sizeof(buf));

                        if (k > 0)
                                output_append(ret, &out_len, &line_done, buf, (size_t) k);
                        else if (k == 0 || (errno != EAGAIN && errno != EINTR))
                                out_r = safe_close(out_r);
                }
        }
        return 0;
}
