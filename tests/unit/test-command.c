/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of command.c: the exit status and first output line, the input as a file on standard
 * input, a command that reads nothing (no SIGPIPE death), the timeout killing the whole process group,
 * cancellation, a command that cannot be started, and splitting the command line.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "idm/cleanup.h"
#include "idmd/command.h"
#include "tests.h"

static char *const env[] = { "PATH=/usr/bin:/bin", NULL };

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static int run_sh(const char *script, const char *input, size_t len, uint64_t timeout_usec,
                  const _Atomic uint64_t *cancel_at, CommandResult *ret) {
        char *const argv[] = { "/bin/sh", "-c", (char *) script, NULL };

        return command_run(argv, env, input, len, timeout_usec, cancel_at, ret);
}

TEST(exit_status_and_output) {
        CommandResult r;

        ASSERT_OK(run_sh("cat >/dev/null; echo 'first line'; echo second >&2; exit 3", "msg\n", 4, 10000000, NULL, &r));
        ASSERT_TRUE(r.exited && !r.timed_out);
        ASSERT_EQ(r.status, 3);
        ASSERT_STREQ(r.output, "first line");
        ASSERT_OK(run_sh("printf 'bad \\033[2J\\t\\n'; exit 0", "", 0, 10000000, NULL, &r));
        ASSERT_TRUE(r.exited);
        ASSERT_EQ(r.status, 0);
        ASSERT_STREQ(r.output, "bad ?[2J?");
}

TEST(input_as_a_file) {
        size_t len = 1024 * 1024;
        _cleanup_free_ char *input = malloc(len);
        CommandResult r;

        ASSERT_TRUE(input);
        memset(input, 'x', len);
        /* The whole megabyte arrives (wc counts it), from a regular file that holds all of it before
         * the command starts: a kill of idmd meanwhile cannot cut it short. */
        ASSERT_OK(run_sh("test -f /dev/stdin && test \"$(stat -L -c %s /dev/stdin)\" -eq 1048576 && "
                         "test \"$(wc -c)\" -eq 1048576", input, len, 30000000, NULL, &r));
        ASSERT_TRUE(r.exited);
        ASSERT_EQ(r.status, 0);
        /* The signal mask and SIGPIPE's disposition are the defaults in the child. */
        ASSERT_OK(run_sh("grep -q '^SigBlk:[[:space:]]*0*$' /proc/self/status", "", 0, 10000000, NULL, &r));
        ASSERT_EQ(r.status, 0);
}

TEST(reads_nothing) {
        size_t len = 4 * 1024 * 1024;
        _cleanup_free_ char *input = malloc(len);
        CommandResult r;

        ASSERT_TRUE(input);
        memset(input, 'y', len);
        /* More than a pipe holds, to a command that exits at once: no SIGPIPE kills us. */
        ASSERT_OK(run_sh("exit 0", input, len, 10000000, NULL, &r));
        ASSERT_TRUE(r.exited);
        ASSERT_EQ(r.status, 0);
        ASSERT_OK(run_sh("exec 0<&-; sleep 0.2; exit 1", input, len, 10000000, NULL, &r));
        ASSERT_TRUE(r.exited);
        ASSERT_EQ(r.status, 1);
}

TEST(timeout_kills_the_group) {
        CommandResult r;
        uint64_t start = now_usec();
        char pidfile[] = "/tmp/test-command.XXXXXX";
        int fd = mkstemp(pidfile);
        _cleanup_free_ char *script = NULL;
        FILE *f;
        int pid = 0;

        ASSERT_TRUE(fd >= 0);
        close(fd);
        /* A grandchild in the background: it must go with the command. */
        ASSERT_TRUE(asprintf(&script, "sleep 100 & echo $! > %s; sleep 100", pidfile) > 0);
        ASSERT_OK(run_sh(script, "", 0, 500000, NULL, &r));
        ASSERT_TRUE(r.timed_out && !r.exited);
        ASSERT_EQ(r.signal, SIGKILL);
        ASSERT_TRUE(now_usec() - start < 5000000);
        f = fopen(pidfile, "re");
        ASSERT_TRUE(f);
        ASSERT_EQ(fscanf(f, "%d", &pid), 1);
        fclose(f);
        unlink(pidfile);
        /* Killed (it may be a zombie of init's for a moment). */
        for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
                char path[64], state = 0;
                FILE *s;

                (void) snprintf(path, sizeof(path), "/proc/%d/stat", pid);
                s = fopen(path, "re");
                if (s && fscanf(s, "%*d %*s %c", &state) == 1 && state == 'Z') {
                        fclose(s);
                        break;
                }
                if (s)
                        fclose(s);
                usleep(20000);
        }
        {
                char path[64], state = 'Z';
                FILE *s;

                (void) snprintf(path, sizeof(path), "/proc/%d/stat", pid);
                s = fopen(path, "re");
                if (s) {
                        ASSERT_EQ(fscanf(s, "%*d %*s %c", &state), 1);
                        fclose(s);
                }
                ASSERT_EQ(state, 'Z');
        }
}

TEST(cancel) {
        _Atomic uint64_t cancel_at = now_usec() + 300000;
        CommandResult r;

        ASSERT_OK(run_sh("sleep 100", "", 0, 60000000, &cancel_at, &r));
        ASSERT_TRUE(r.cancelled && !r.timed_out && !r.exited);
}

TEST(cannot_start) {
        char *const missing[] = { "/nonexistent/sendmail", "-t", NULL };
        char *const relative[] = { "sendmail", NULL };
        CommandResult r;

        ASSERT_EQ(command_run(missing, env, "x", 1, 1000000, NULL, &r), -ENOENT);
        ASSERT_EQ(command_run(relative, env, "x", 1, 1000000, NULL, &r), -EINVAL);
}

TEST(split) {
        char **argv = NULL;

        ASSERT_OK(command_split("  /usr/sbin/sendmail\t-t  -i ", &argv));
        ASSERT_STREQ(argv[0], "/usr/sbin/sendmail");
        ASSERT_STREQ(argv[1], "-t");
        ASSERT_STREQ(argv[2], "-i");
        ASSERT_TRUE(argv[3] == NULL);
        command_argv_free(argv);
        ASSERT_EQ(command_split(" \t ", &argv), -EINVAL);
}

int main(void) {
        /* As in idmd: SIGPIPE ignored process-wide; the test also holds without it. */
        RUN(exit_status_and_output);
        RUN(input_as_a_file);
        RUN(reads_nothing);
        RUN(timeout_kills_the_group);
        RUN(cancel);
        RUN(cannot_start);
        RUN(split);
        return 0;
}
