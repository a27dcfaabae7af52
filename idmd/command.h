/* SPDX-License-Identifier: MIT */
/*
 * Running an external command with a message on its standard input: the outbox's mail command.
 * posix_spawn() in a process group of its own, standard input a file holding the whole message (a
 * memfd, so that a command still reading when idmd dies gets all of it), standard output and
 * error captured (the first bytes kept), a deadline after which the whole group is killed, and the
 * child always reaped. For a worker thread: it blocks until the command is done, touches no event
 * loop and no global state, and writes nothing to the child (a command that does not read its
 * input raises no SIGPIPE). The child starts with an empty signal mask and default dispositions,
 * whatever the caller blocked or ignored.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COMMAND_OUTPUT_MAX 160          /* bytes of the command's output kept */

typedef struct CommandResult {
        bool exited;                    /* it exited by itself: status is its exit status */
        int status;
        int signal;                     /* killed by this signal (ours after a timeout or cancel) */
        bool timed_out;                 /* the deadline passed: killed */
        bool cancelled;                 /* *cancel_at passed: killed */
        char output[COMMAND_OUTPUT_MAX + 1];    /* the first line of its output, control characters
                                                 * and non-ASCII bytes as '?' */
} CommandResult;

/* Runs argv[0] (an absolute path) with argv and envp, feeding it input (len bytes), and waits
 * until it exits or timeout_usec (CLOCK_MONOTONIC) has passed, or the monotonic time in
 * *cancel_at (if not NULL and not 0; may be set from another thread) is reached: then kills its
 * process group with SIGKILL. Returns 0 when the command was started (the outcome is in *ret),
 * or -errno when it could not be (memfd_create, pipe2, posix_spawn: e.g. -ENOENT, -EACCES). */
int command_run(char *const argv[], char *const envp[], const char *input, size_t len, uint64_t timeout_usec,
                const _Atomic uint64_t *cancel_at, CommandResult *ret);

/* Splits a command line on blanks (spaces, tabs; no quoting) into a NULL-terminated vector of
 * new strings. -EINVAL when it is empty, -ENOMEM. */
int command_split(const char *line, char ***ret);
char **command_argv_free(char **argv);
