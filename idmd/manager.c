/* SPDX-License-Identifier: MIT */
/*
 * The idmd manager: state-directory lock, store and key setup, the listening socket (systemd
 * socket activation or our own bind, replacing only a stale socket), accepting connections with
 * their peer credentials and per-uid limits, signals, and the orderly stop.
 *
 * Out of file descriptors (EMFILE/ENFILE), accept() would fail for as long as the listening
 * socket stays readable. idmd keeps one descriptor in reserve (/dev/null): it gives it up to
 * accept the waiting connection, serves it if the peer is an administrator and refuses it with
 * one error line otherwise, then takes the reserve back. When that is not possible either, it
 * stops listening until a connection closes or ACCEPT_RETRY_USEC have passed. Each such episode
 * is logged once.
 *
 * It also holds idmd's clocks: now_realtime_usec() is the one source of realtime, and the test
 * clock (--test-clock, tests only) moves it forward by an offset.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config-build.h"
#include "connection.h"
#include "idm/protocol.h"
#include "lockout.h"
#include "log.h"
#include "message-ids.h"
#include "coro.h"
#include "manager.h"
#include "outbox.h"
#include "passwords.h"
#include "records/remote.h"
#include "records/device.h"
#include "records/customers.h"
#include "records/resets.h"
#include "records/signingkeys.h"
#include "sessions.h"
#include "tokens.h"
#include "userdb.h"
#include "workers.h"

#define SHUTDOWN_TIMEOUT_USEC (10ULL * 1000000ULL)
#define SWEEP_START_USEC (1000000ULL)   /* the first sweep, after start */
#define SWEEP_INTERVAL_USEC (60ULL * 1000000ULL)       /* between rounds when nothing was left */
/* Due records per unit of work, at most: measured at 60-100 us each on a loaded 2-core machine
 * with a 1 GiB store (a random leaf page per record), so a batch holds the loop for under 10 ms. */
#define SWEEP_BATCH 64u
/* Records a deleted customer's purge looks at in one unit of work (records/customers.h): a
 * byte search each, a decode only for the customer's own (about 2 ms). */
#define PURGE_STEP_RECORDS 4096u
#define ACCEPT_RETRY_USEC (200ULL * 1000ULL)    /* listening again after accept() could not succeed */
#define REFUSAL_LOG_INTERVAL_USEC (10ULL * 1000000ULL) /* between "too many connections" lines */
#define FD_HEADROOM 64u                 /* descriptors besides connections: store, keys, event loop... */

/* The test clock: set once at start, before any other thread exists; the offset only grows.
 * Atomic because now_realtime_usec() may be called from any thread. */
static bool test_clock_on = false;
static _Atomic uint64_t test_clock_offset = 0;

void test_clock_enable(void) {
        test_clock_on = true;
}

bool test_clock_enabled(void) {
        return test_clock_on;
}

uint64_t test_clock_offset_usec(void) {
        return atomic_load_explicit(&test_clock_offset, memory_order_relaxed);
}

int test_clock_advance(uint64_t usec) {
        uint64_t old = atomic_load_explicit(&test_clock_offset, memory_order_relaxed);

        if (!test_clock_on)
                return -EPERM;
        for (;;) {
                if (usec > TEST_CLOCK_MAX_OFFSET_USEC - old)
                        return -ERANGE;
                if (atomic_compare_exchange_weak_explicit(&test_clock_offset, &old, old + usec,
                                                          memory_order_relaxed, memory_order_relaxed))
                        return 0;
        }
}

uint64_t now_realtime_usec(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL +
                atomic_load_explicit(&test_clock_offset, memory_order_relaxed);
}

int manager_new(Config *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m) {
                config_free(config);
                return -ENOMEM;
        }
        m->config = config;
        m->lock_fd = -EBADF;
        for (ListenerKind k = 0; k < _LISTENER_MAX; k++)
                m->listeners[k].fd = -EBADF;
        m->listeners[LISTENER_RPC] = (Listener) {
                .path = config->socket_path,
                .protocol = &connection_protocol_rpc,
                .fd = -EBADF,
        };
        if (config->userdb_socket[0])
                m->listeners[LISTENER_USERDB] = (Listener) {
                        .path = config->userdb_socket,
                        .fd_name = USERDB_FD_NAME,
                        .protocol = &userdb_protocol,
                        .fd = -EBADF,
                };
        m->reserve_fd = -EBADF;
        m->start_realtime_usec = now_realtime_usec();
        m->start_monotonic_usec = now_monotonic_usec();

        m->method_stats = calloc(rpc_n_methods(), sizeof(MethodStats));
        if (!m->method_stats)
                return -ENOMEM;

        /* A loop of our own, not sd_event_default(): the default loop checks with gettid() on
         * every iteration that it runs in its thread (a system call per request). */
        r = sd_event_new(&m->event);
        if (r < 0)
                return r;
        (void) sd_event_set_watchdog(m->event, true);

        *ret = TAKE_PTR(m);
        return 0;
}

static void manager_close_listener(Manager *m) {
        m->accept_retry_source = sd_event_source_disable_unref(m->accept_retry_source);
        m->accept_paused = false;
        m->reserve_fd = safe_close(m->reserve_fd);      /* only needed for accepting */

        for (ListenerKind k = 0; k < _LISTENER_MAX; k++) {
                Listener *l = m->listeners + k;
                struct stat st;

                l->source = sd_event_source_disable_unref(l->source);
                l->fd = safe_close(l->fd);
                /* Unlink the socket only if we made it and it is still ours (not a successor's). */
                if (l->created && lstat(l->path, &st) >= 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
                    st.st_ino == l->ino)
                        (void) unlink(l->path);
                l->created = false;
        }
}

/* Whether anything is listening now (before startup and after the stop, nothing). */
static bool manager_listening(Manager *m) {
        return m->listeners[LISTENER_RPC].source != NULL;
}

static void manager_listeners_enable(Manager *m, int enabled) {
        for (ListenerKind k = 0; k < _LISTENER_MAX; k++)
                if (m->listeners[k].source)
                        (void) sd_event_source_set_enabled(m->listeners[k].source, enabled);
}

Manager *manager_free(Manager *m) {
        Connection *c;

        if (!m)
                return NULL;

        manager_close_listener(m);

        /* Workers first: their completions may still reply to calls (dropped, connections closed). */
        while ((c = m->connections))
                connection_close(c);
        m->workers = workers_free(m->workers);
        /* The delivery in flight finishes (or is killed after its grace) and its outcome is written. */
        m->outbox = outbox_free(m->outbox);
        /* Writes still queued commit now, while what their completions use is still there. */
        store_flush(m->store);

        m->sigterm_source = sd_event_source_disable_unref(m->sigterm_source);
        m->sigint_source = sd_event_source_disable_unref(m->sigint_source);
        m->sighup_source = sd_event_source_disable_unref(m->sighup_source);
        free(m->config_path);
        m->shutdown_timer = sd_event_source_disable_unref(m->shutdown_timer);
        m->sweep_timer = sd_event_source_disable_unref(m->sweep_timer);
        m->keys_timer = sd_event_source_disable_unref(m->keys_timer);
        m->keyring = keyring_free(m->keyring);
        m->ratelimit = ratelimit_free(m->ratelimit);
        m->locales = locales_free(m->locales);
        m->store = store_free(m->store);
        m->lock_fd = safe_close(m->lock_fd);    /* releases the lock */
        m->event = sd_event_unref(m->event);
        free(m->method_stats);
        config_free(m->config);
        free(m);
        return NULL;
}

static int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

static int manager_lock_state_dir(Manager *m) {
        _cleanup_free_ char *path = NULL;
        _cleanup_(closep) int fd = -EBADF;
        char buf[32];
        int n;

        if (asprintf(&path, "%s/idmd.lock", m->config->state_dir) < 0)
                return log_oom();
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return log_error_errno(errno, "Failed to open lock file %s: %m", path);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK) {
                        n = (int) pread(fd, buf, sizeof(buf) - 1, 0);
                        buf[n > 0 ? n : 0] = 0;
                        buf[strcspn(buf, "\n")] = 0;
                        log_error("Another idmd (pid %s) is using the state directory %s; refusing to start.",
                                  buf[0] ? buf : "unknown", m->config->state_dir);
                        return -EBUSY;
                }
                return log_error_errno(errno, "Failed to lock %s: %m", path);
        }
        n = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t) n, 0) != n)
                log_warning_errno(errno, "Failed to write pid to %s, ignoring: %m", path);
        m->lock_fd = TAKE_FD(fd);
        return 0;
}

static int peer_is_admin(Manager *m, int fd, const struct ucred *cred) {
        gid_t groups[256];
        socklen_t len = sizeof(groups);

        if (cred->uid == 0)
                return true;
        if (!m->admin_gid_valid)
                return false;
        if (cred->gid == m->admin_gid)
                return true;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
                log_debug_errno(errno, "SO_PEERGROUPS failed, treating peer as not admin: %m");
                return false;
        }
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
                if (groups[i] == m->admin_gid)
                        return true;
        return false;
}

/* One error line on idmd's socket; varlink has no words for it: the peer sees the close. */
static void refuse_connection(Manager *m, int fd, const ConnectionProtocol *protocol, const char *reason,
                              const char *message) {
        _cleanup_free_ char *line = protocol->refusal ? rpc_format_error_line(IDM_ERR_TOO_MANY, reason, message) : NULL;

        m->connections_refused++;
        if (line)
                (void) send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
        safe_close(fd);
}

/* Refusals are logged at most once per REFUSAL_LOG_INTERVAL_USEC: a client connecting in a loop
 * must not be able to fill the log. */
static void log_refusal(Manager *m, const char *what, uid_t uid, unsigned n) {
        uint64_t now = now_monotonic_usec();

        if (m->refusal_log_usec != 0 && now < m->refusal_log_usec + REFUSAL_LOG_INTERVAL_USEC) {
                m->refusals_not_logged++;
                return;
        }
        if (m->refusals_not_logged > 0)
                log_warning("Too many connections %s (%u), refusing one from uid %u "
                            "(%u more refused since the last such message).",
                            what, n, (unsigned) uid, m->refusals_not_logged);
        else
                log_warning("Too many connections %s (%u), refusing one from uid %u.", what, n, (unsigned) uid);
        m->refusal_log_usec = now;
        m->refusals_not_logged = 0;
}

/* The reserve descriptor: held while descriptors are available, given up to accept one
 * connection when they are not. */
static int manager_reserve_open(Manager *m) {
        int fd;

        if (m->reserve_fd >= 0)
                return 0;
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        m->reserve_fd = fd;
        return 0;
}

static void manager_accept_resume(Manager *m) {
        if (!m->accept_paused)
                return;
        m->accept_paused = false;
        if (m->accept_retry_source)
                (void) sd_event_source_set_enabled(m->accept_retry_source, SD_EVENT_OFF);
        if (!m->stopping)
                manager_listeners_enable(m, SD_EVENT_ON);
}

static int on_accept_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        manager_accept_resume(userdata);
        return 0;
}

/* accept() cannot succeed now (and the listening socket would stay readable): stop listening
 * until a connection closes (manager_connection_closed()) or the retry timer fires. */
static void manager_accept_pause(Manager *m) {
        int r;

        if (m->accept_paused || !manager_listening(m))
                return;
        if (!m->accept_retry_source)
                r = sd_event_add_time_relative(m->event, &m->accept_retry_source, CLOCK_MONOTONIC,
                                               ACCEPT_RETRY_USEC, 0, on_accept_retry, m);
        else {
                r = sd_event_source_set_time_relative(m->accept_retry_source, ACCEPT_RETRY_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(m->accept_retry_source, SD_EVENT_ONESHOT);
        }
        if (r < 0) {
                /* Without a way back, not listening would lock everybody out for good. */
                log_error_errno(r, "Failed to set up the accept back-off timer, still listening: %m");
                return;
        }
        manager_listeners_enable(m, SD_EVENT_OFF);
        m->accept_paused = true;
}

/* The start of an episode of failing accept() calls is logged, the attempts within it are not. */
static void manager_accept_trouble(Manager *m, int error) {
        struct rlimit rl = {};

        if (m->accept_trouble)
                return;
        m->accept_trouble = true;
        m->accept_trouble_refused = 0;
        if (error == EMFILE || error == ENFILE) {
                (void) getrlimit(RLIMIT_NOFILE, &rl);
                log_warning_errno(error, "Out of file descriptors with %u connections open (RLIMIT_NOFILE %llu): "
                                  "serving administrators only until descriptors are free: %m",
                                  m->n_connections, (unsigned long long) rl.rlim_cur);
        } else
                log_warning_errno(error, "accept() failed, trying again shortly: %m");
}

static void manager_accept_recovered(Manager *m) {
        if (!m->accept_trouble)
                return;
        m->accept_trouble = false;
        log_info("Accepting connections again; %llu refused meanwhile.",
                 (unsigned long long) m->accept_trouble_refused);
}

/* Serves a freshly accepted socket, or refuses it. from_reserve: accepted with the reserve
 * descriptor while out of descriptors, so only administrators are served. */
static void manager_add_connection(Manager *m, int fd, const ConnectionProtocol *protocol, bool from_reserve) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        unsigned same_uid = 0;
        Connection *c;
        bool admin;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                log_warning_errno(errno, "SO_PEERCRED failed, dropping connection: %m");
                safe_close(fd);
                return;
        }
        admin = peer_is_admin(m, fd, &cred);

        if (from_reserve && !admin) {
                m->accept_trouble_refused++;   /* logged when the episode ends */
                refuse_connection(m, fd, protocol, IDM_REASON_TOO_MANY_CONNECTIONS,
                                  "the server is out of file descriptors; try again later");
                return;
        }
        if (m->n_connections >= m->config->max_connections) {
                log_refusal(m, "in total", cred.uid, m->n_connections);
                refuse_connection(m, fd, protocol, IDM_REASON_TOO_MANY_CONNECTIONS, "too many connections");
                return;
        }
        for (c = m->connections; c; c = c->next)
                if (c->peer.uid == cred.uid)
                        same_uid++;
        if (same_uid >= m->config->max_connections_per_uid) {
                log_refusal(m, "from one uid", cred.uid, same_uid);
                refuse_connection(m, fd, protocol, IDM_REASON_TOO_MANY_CONNECTIONS,
                                  "too many connections from this user");
                return;
        }

        r = connection_new(m, fd, protocol, &c);
        if (r < 0) {
                log_warning_errno(r, "Failed to set up a connection, ignoring: %m");
                return;
        }
        c->peer = (Peer) {
                .uid = cred.uid,
                .gid = cred.gid,
                .pid = cred.pid,
                .admin = admin,
        };
        c->next = m->connections;
        if (m->connections)
                m->connections->prev = c;
        m->connections = c;
        m->n_connections++;
        m->connections_accepted++;
        log_debug("c%llu: %s connection from pid %d uid %u%s%s", (unsigned long long) c->id, protocol->name,
                  (int) cred.pid, (unsigned) cred.uid, c->peer.admin ? " (admin)" : "",
                  from_reserve ? " (with the reserve descriptor)" : "");
}

/* Out of descriptors: the reserve one makes room to accept the waiting connection. Without a
 * reserve (an administrator's connection holds it) we stop listening for a while. */
static void manager_accept_with_reserve(Manager *m, const Listener *l) {
        int fd, k;

        if (manager_reserve_open(m) < 0) {
                manager_accept_pause(m);
                return;
        }
        m->reserve_fd = safe_close(m->reserve_fd);
        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        k = errno;
        if (fd >= 0)
                manager_add_connection(m, fd, l->protocol, /* from_reserve= */ true);
        /* Fails if an administrator's connection took the reserve's place: it is retaken when a
         * descriptor is free again. */
        (void) manager_reserve_open(m);
        if (fd < 0 && k != EAGAIN && k != EINTR && k != ECONNABORTED)
                manager_accept_pause(m);        /* someone else took the descriptor (ENFILE) */
}

static int on_accept(sd_event_source *s, int listen_fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        const Listener *l = NULL;
        int fd;

        for (ListenerKind k = 0; k < _LISTENER_MAX; k++)
                if (m->listeners[k].fd == listen_fd)
                        l = m->listeners + k;
        if (!l)
                return 0;

        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
                int k = errno;

                if (k == EAGAIN || k == EINTR || k == ECONNABORTED)
                        return 0;
                manager_accept_trouble(m, k);
                if (k == EMFILE || k == ENFILE)
                        manager_accept_with_reserve(m, l);
                else
                        manager_accept_pause(m);        /* ENOBUFS, ENOMEM, ...: let it pass */
                return 0;
        }
        manager_accept_recovered(m);
        if (m->reserve_fd < 0)
                (void) manager_reserve_open(m);
        manager_add_connection(m, fd, l->protocol, /* from_reserve= */ false);
        return 0;
}

void manager_connection_closed(Manager *m, Connection *c) {
        if (c->prev)
                c->prev->next = c->next;
        else if (m->connections == c)
                m->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        m->n_connections--;
        connection_unref(c);

        if (m->stopping && m->n_connections == 0)
                (void) sd_event_exit(m->event, 0);

        /* A descriptor is free: the reserve first, then whoever waits to connect. */
        if (!m->stopping && manager_listening(m)) {
                (void) manager_reserve_open(m);
                manager_accept_resume(m);
        }
}

/* Binds the socket ourselves. A socket file left by a dead idmd is replaced; one that accepts
 * connections belongs to a live daemon and is left alone. */
static int manager_bind(Manager *m, Listener *l) {
        const char *path = l->path;
        _cleanup_(closep) int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old_umask;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error("Socket path %s is too long (at most %zu bytes).", path, sizeof(sa.sun_path) - 1),
                       -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path));

        r = mkdir_parents(path, 0755);
        if (r < 0)
                return log_error_errno(r, "Failed to create the directory of %s: %m", path);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "Failed to create socket: %m");

        if (lstat(path, &st) >= 0) {
                _cleanup_(closep) int probe = -EBADF;

                if (!S_ISSOCK(st.st_mode))
                        return log_error("%s exists and is not a socket; refusing to replace it.", path), -EEXIST;
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return log_error_errno(errno, "Failed to create socket: %m");
                if (connect(probe, (struct sockaddr *) &sa, sizeof(sa)) >= 0)
                        return log_error("Socket %s is in use by a running daemon; refusing to start.", path),
                               -EADDRINUSE;
                if (errno != ECONNREFUSED && errno != ENOENT)
                        return log_error_errno(errno, "Cannot tell whether %s is in use: %m", path);
                log_info("Replacing stale socket %s.", path);
                if (unlink(path) < 0 && errno != ENOENT)
                        return log_error_errno(errno, "Failed to remove stale socket %s: %m", path);
        }

        old_umask = umask(0111);        /* 0666: any local process may connect (roles decide) */
        r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        (void) umask(old_umask);
        if (r < 0)
                return log_error_errno(errno, "Failed to bind %s: %m", path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "Failed to listen on %s: %m", path);
        if (lstat(path, &st) < 0)
                return log_error_errno(errno, "Failed to stat %s: %m", path);

        l->created = true;
        l->dev = st.st_dev;
        l->ino = st.st_ino;
        l->fd = TAKE_FD(fd);
        return 0;
}

/* A socket passed by systemd: a listening Unix stream socket, made non-blocking. The userdb
 * socket must be bound to [userdb] socket: its file name is the service name records carry. */
static int manager_take_activated(Listener *l, int fd) {
        int flags;

        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                return log_error("The socket passed by systemd for %s is not a listening Unix stream socket.", l->path),
                       -EINVAL;
        if (l->fd_name && sd_is_socket_unix(fd, SOCK_STREAM, 1, l->path, 0) <= 0)
                return log_error("The userdb socket passed by systemd is not bound to [userdb] socket = %s.", l->path),
                       -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return log_error_errno(errno, "Failed to make the activated socket non-blocking: %m");
        l->fd = fd;
        l->activated = true;
        log_debug("Using the socket passed by systemd for %s.", l->path);
        return 0;
}

/* Sockets passed by systemd are told apart by their FileDescriptorName=: USERDB_FD_NAME is the
 * userdb socket, any other name idmd's own (one of each at most). What was not passed is bound
 * here. */
static int manager_listen(Manager *m) {
        _cleanup_strv_free_ char **names = NULL;
        int n, r;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read sockets passed by systemd: %m");
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                bool userdb = names && names[i] && streq(names[i], USERDB_FD_NAME);
                Listener *l = m->listeners + (userdb ? LISTENER_USERDB : LISTENER_RPC);

                if (userdb && !l->path)
                        return log_error("systemd passed a userdb socket, but [userdb] socket is not set."), -EINVAL;
                if (l->fd >= 0)
                        return log_error("Got more than one %s socket from systemd (%d in all).",
                                         userdb ? "userdb" : "idmd", n), -EINVAL;
                r = manager_take_activated(l, fd);
                if (r < 0)
                        return r;
        }

        for (ListenerKind k = 0; k < _LISTENER_MAX; k++) {
                Listener *l = m->listeners + k;

                if (!l->path)
                        continue;
                if (l->fd < 0) {
                        r = manager_bind(m, l);
                        if (r < 0)
                                return r;
                }
                r = sd_event_add_io(m->event, &l->source, l->fd, EPOLLIN, on_accept, m);
                if (r < 0)
                        return log_error_errno(r, "Failed to watch the socket %s: %m", l->path);
        }
        return 0;
}

/* The sweep registry: one sweeper per kind of expiring record. A kind with an expiry index
 * (sessions.h) names its prefix and what to do with a due record; a kind with a walk of its own
 * (lockouts) gives that. Adding a kind of token is one line here (and its module keeping its
 * index entries). The sweepers take turns, one bounded batch (one unit of work) each; a round
 * with a batch that stopped at SWEEP_BATCH is followed by the next at once, a round that
 * finished everything by a pause of SWEEP_INTERVAL_USEC. One batch is in flight at a time, and
 * the timer is idle-priority, so requests already received go first. */
typedef struct Sweeper {
        const char *name;               /* for the log */
        const char *kind;               /* expiry index prefix; NULL: 'walk' */
        SessionExpireFn expire;
        int (*walk)(StoreTxn *t, Manager *m, uint64_t now_usec, unsigned max);  /* >0: more left */
        StoreTable table;               /* of 'walk': nothing to do while it has no record ... */
        const char *prefix;             /* ... with this prefix (NULL: none at all) */
} Sweeper;

static int sweep_lockouts(StoreTxn *t, Manager *m, uint64_t now_usec, unsigned max) {
        LockoutPolicy p = lockout_policy_from_config(m->config);
        int r;

        /* Its cursor is kept in the store and wraps around: one batch per round is enough. */
        r = lockout_sweep(t, &p, now_usec, max);
        return r < 0 ? r : 0;
}

static int sweep_purges(StoreTxn *t, Manager *m, uint64_t now_usec, unsigned max) {
        unsigned deleted = 0;
        int r;

        r = customer_purge_step(t, PURGE_STEP_RECORDS, &deleted);
        if (r >= 0 && deleted > 0)
                log_debug("Purged %u records of a deleted customer.", deleted);
        return r;
}

static const Sweeper sweepers[] = {
        { "refresh token",       SESSION_KIND_REFRESH,  session_expire_token  },
        { "customerToken",       SESSION_KIND_CUSTOMER, session_expire_token  },
        { "sealed successor",    SESSION_KIND_SEAL,     session_expire_seal   },
        { "session",             SESSION_KIND_FAMILY,   session_expire_family },
        { "PAM session",         SESSION_KIND_PAM,      session_expire_timed  },
        { "password reset",      RESET_KIND,            session_expire_timed  },
        { "remote-auth token",   REMOTE_KIND_REMOTE,    session_expire_timed  },
        { "SSO token",           REMOTE_KIND_SSO,       session_expire_timed  },
        { "publisher session",   REMOTE_KIND_PUBLISHER_SESSION, session_expire_timed },
        { "device login",        DEVICE_KIND,           session_expire_timed  },
        { "device user code",    DEVICE_CODE_KIND,      session_expire_timed  },
        { "lockout",             .walk = sweep_lockouts, .table = STORE_LOCKOUTS },
        { "deleted customer's",  .walk = sweep_purges, .table = STORE_META, .prefix = CUSTOMER_PURGE_PREFIX },
};

typedef struct SweepState {
        Manager *m;
        char *cursor[ELEMENTSOF(sweepers)];     /* where each kind's walk goes on; NULL: first */
        size_t current;                 /* the sweeper whose batch runs next (or now) */
        bool round_more;                /* a batch of this round stopped at its bound */
        bool in_flight;                 /* a batch is submitted and not done */
        bool checking;                  /* a coroutine reads what is pending (PostgreSQL) */
        bool again;                     /* the timer fired meanwhile (manager_sweep_soon) */
        /* the batch in flight: */
        uint64_t now_usec;
        char *next_cursor;
        SessionSweepStats stats;
} SweepState;

static void sweep_state_free(void *userdata) {
        SweepState *st = userdata;

        if (!st)
                return;
        for (size_t i = 0; i < ELEMENTSOF(sweepers); i++)
                free(st->cursor[i]);
        free(st->next_cursor);
        free(st);
}

static int sweep_any(const char *key, json_t *value, void *userdata) {
        return 1;
}

/* Whether the current sweeper has something to do, from a read snapshot: an idle sweeper costs
 * no unit of work (and no commit). Errors count as work, so that the batch reports them. */
static bool sweep_pending(SweepState *st) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        const Sweeper *w = &sweepers[st->current];
        int r;

        r = store_read(st->m->store, &t);
        if (r < 0)
                return true;
        if (w->kind)
                r = session_sweep_pending(t, w->kind, st->now_usec, st->cursor[st->current]);
        else
                r = store_foreach(t, w->table, w->prefix, NULL, sweep_any, NULL);
        return r != 0;
}

/* On to the next sweeper. At the end of a round, returns true and the pause before the next. */
static bool sweep_next(SweepState *st, uint64_t *ret_delay) {
        if (++st->current < ELEMENTSOF(sweepers))
                return false;
        st->current = 0;
        *ret_delay = st->round_more ? 0 : SWEEP_INTERVAL_USEC;
        st->round_more = false;
        return true;
}

static void sweep_schedule(SweepState *st, uint64_t delay) {
        if (st->again) {
                st->again = false;
                delay = 0;
        }
        if (!st->m->sweep_timer)
                return;
        (void) sd_event_source_set_time_relative(st->m->sweep_timer, delay);
        (void) sd_event_source_set_enabled(st->m->sweep_timer, SD_EVENT_ONESHOT);
}

static int sweep_work(StoreTxn *t, void *userdata) {
        SweepState *st = userdata;
        const Sweeper *w = &sweepers[st->current];
        SessionContext ctx = {
                .config = st->m->config,
                .keyring = st->m->keyring,
                .now_usec = st->now_usec,
        };

        /* Run again from the start when the store grows: nothing of a former run is kept. */
        free(st->next_cursor);
        st->next_cursor = NULL;
        st->stats = (SessionSweepStats) {};
        if (!w->kind)
                return w->walk(t, st->m, st->now_usec, SWEEP_BATCH);
        return session_sweep_kind(t, &ctx, w->kind, w->expire, SWEEP_BATCH, st->cursor[st->current],
                                  &st->next_cursor, &st->stats);
}

static void sweep_done(int r, void *userdata) {
        SweepState *st = userdata;
        const Sweeper *w = &sweepers[st->current];
        uint64_t delay = 0;

        st->in_flight = false;
        if (r < 0)
                log_warning_errno(r, "Sweeping expired %s records failed, ignoring: %m", w->name);
        else {
                if (st->stats.deleted + st->stats.updated > 0)
                        log_debug("Swept %u expired %s records (%u updated) in one batch.",
                                  st->stats.deleted, w->name, st->stats.updated);
                free(st->cursor[st->current]);
                st->cursor[st->current] = TAKE_PTR(st->next_cursor);
                if (r > 0)
                        st->round_more = true;
        }

        (void) sweep_next(st, &delay);
        sweep_schedule(st, delay);
}

/* Expired records are deleted in the background, one bounded batch per unit of work (committed
 * with the requests' units of work of the moment). */
static void sweep_check(SweepState *st) {
        int r;

        /* Instances sharing a store (PostgreSQL) sweep it one at a time. */
        r = store_lead(st->m->store, STORE_JOB_SWEEP);
        if (r <= 0) {
                if (r < 0)
                        log_debug_errno(r, "Cannot tell whether this instance sweeps the store: %m");
                sweep_schedule(st, SWEEP_INTERVAL_USEC);
                return;
        }
        st->now_usec = now_realtime_usec();
        while (!sweep_pending(st)) {
                uint64_t delay;

                /* Done with this kind for the round; left-behind entries are found next round. */
                free(st->cursor[st->current]);
                st->cursor[st->current] = NULL;
                if (sweep_next(st, &delay)) {
                        sweep_schedule(st, delay);
                        return;
                }
        }
        st->in_flight = true;
        r = store_submit(st->m->store, sweep_work, sweep_done, st);
        if (r < 0)
                sweep_done(r, st);
}

static void sweep_check_main(void *userdata) {
        SweepState *st = userdata;

        sweep_check(st);
        st->checking = false;
}

static int on_sweep(sd_event_source *s, uint64_t usec, void *userdata) {
        SweepState *st = userdata;

        if (st->in_flight || st->checking) {
                st->again = true;       /* sweep_done (or the check) schedules the next batch at once */
                return 0;
        }
        st->again = false;
        /* On a store that waits, the reads run in a coroutine: the loop serves on meanwhile. */
        if (store_waits(st->m->store)) {
                st->checking = true;
                if (coro_start(sweep_check_main, st) < 0) {
                        st->checking = false;
                        sweep_schedule(st, SWEEP_INTERVAL_USEC);
                }
                return 0;
        }
        sweep_check(st);
        return 0;
}

int manager_sweep_soon(Manager *m) {
        int r;

        if (!m->sweep_timer)
                return -ESTALE;
        /* If a sweep is in flight, this one follows it: the units of work are serialized. */
        r = sd_event_source_set_time_relative(m->sweep_timer, 0);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->sweep_timer, SD_EVENT_ONESHOT);
        return r;
}

static int on_shutdown_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("%u connections still busy after the shutdown timeout, closing them.", m->n_connections);
        return sd_event_exit(m->event, 0);
}

void manager_stop(Manager *m) {
        Connection *c, *next;

        if (m->stopping)
                return;
        m->stopping = true;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
        log_info("Stopping: answering requests in flight, accepting no new ones.");

        manager_close_listener(m);
        outbox_stop(m->outbox);
        /* Hashes not started yet are answered 503 at once (from the loop, soon): only those
         * already running are waited for, so idmd stops within about one hash. */
        if (m->workers) {
                unsigned n = workers_cancel(m->workers, NULL);
                if (n > 0)
                        log_info("Cancelled %u queued password checks.", n);
        }
        for (c = m->connections; c; c = next) {
                next = c->next;
                connection_drain(c);
        }
        if (m->n_connections == 0) {
                (void) sd_event_exit(m->event, 0);
                return;
        }
        (void) sd_event_add_time_relative(m->event, &m->shutdown_timer, CLOCK_MONOTONIC, SHUTDOWN_TIMEOUT_USEC, 0,
                                          on_shutdown_timeout, m);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager_stop(userdata);
        return 0;
}

int manager_reload(Manager *m) {
        _cleanup_(config_freep) Config *fresh = NULL;
        _cleanup_free_ char *changes = NULL;
        size_t size = 0;
        FILE *f;
        int r, n;

        (void) sd_notify(false, "RELOADING=1\nSTATUS=Reloading the configuration");
        r = config_new(&fresh);
        if (r >= 0)
                r = config_load(fresh, m->config_path, m->config_required);
        /* The paths stay what they were (the command line may have set them). */
        if (r >= 0) {
                free(fresh->state_dir);
                free(fresh->socket_path);
                fresh->state_dir = strdup(m->config->state_dir);
                fresh->socket_path = strdup(m->config->socket_path);
                if (!fresh->state_dir || !fresh->socket_path)
                        r = -ENOMEM;
        }
        /* The outbox first: a [mail] that does not load (templates, command) changes nothing. */
        if (r >= 0 && m->outbox)
                r = outbox_reload(m->outbox, fresh);
        if (r >= 0)
                r = ratelimit_set_classes(m->ratelimit, fresh->ratelimit);
        if (r < 0) {
                log_error_errno(r, "Reloading %s failed, keeping the running configuration: %m", m->config_path);
                (void) sd_notifyf(false, "READY=1\nSTATUS=Serving on %s (reload failed)", m->config->socket_path);
                return r;
        }

        f = open_memstream(&changes, &size);
        if (!f)
                return log_oom();
        n = config_apply_live(m->config, fresh, f);
        if (fclose(f) != 0 && n >= 0)
                n = -errno;
        if (n < 0)
                return log_error_errno(n, "Reloading %s failed: %m", m->config_path);
        if (!m->log_level_forced)
                log_set_max_level(m->config->log_level);
        jwt_cache_revoke();     /* verified JWTs are checked again after a reload (tokens.h) */
        log_struct(LOG_LEVEL_NOTICE, IDM_MESSAGE_CONFIG_RELOADED,
                   "Configuration reloaded from %s (log level, limits, rate limits, lockout, mail, reset).",
                   m->config_path);
        if (n > 0)
                log_warning("Changed in %s but applied only at the next start: %s.", m->config_path, changes);
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving on %s", m->config->socket_path);
        return 0;
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) manager_reload(userdata);
        return 0;
}

/* Connections need a descriptor each: the soft RLIMIT_NOFILE goes up to the hard limit, and a
 * max_connections the limit cannot hold is said at start rather than found out under load. */
static void manager_setup_fd_limit(Manager *m) {
        unsigned long long needed = (unsigned long long) m->config->max_connections + FD_HEADROOM;
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning_errno(errno, "Failed to read RLIMIT_NOFILE, ignoring: %m");
                return;
        }
        if (rl.rlim_cur < rl.rlim_max) {
                struct rlimit raised = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };

                if (setrlimit(RLIMIT_NOFILE, &raised) < 0)
                        log_warning_errno(errno, "Failed to raise RLIMIT_NOFILE from %llu to %llu, ignoring: %m",
                                          (unsigned long long) rl.rlim_cur, (unsigned long long) rl.rlim_max);
                else {
                        log_debug("Raised RLIMIT_NOFILE from %llu to %llu.", (unsigned long long) rl.rlim_cur,
                                  (unsigned long long) rl.rlim_max);
                        rl.rlim_cur = rl.rlim_max;
                }
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < needed)
                log_warning("max_connections=%u needs about %llu file descriptors, but the limit (RLIMIT_NOFILE) "
                            "is %llu: beyond about %llu connections, only administrators are served. Raise the "
                            "limit (LimitNOFILE=) or lower max_connections.",
                            m->config->max_connections, needed, (unsigned long long) rl.rlim_cur,
                            rl.rlim_cur > FD_HEADROOM ? (unsigned long long) rl.rlim_cur - FD_HEADROOM : 0ULL);
        else
                log_debug("RLIMIT_NOFILE %llu holds max_connections=%u.", (unsigned long long) rl.rlim_cur,
                          m->config->max_connections);
}

/* Locale detection. A MaxMind DB file that is configured but cannot be used stops idmd: answering
 * from the networks and the default instead would be a silent misconfiguration. */
static int manager_setup_locales(Manager *m) {
        const char *detail = NULL;
        int r;

        r = locales_new(m->config, &m->locales, &detail);
        if (r == -EOPNOTSUPP)
                return log_error_errno(r,
                                       "[locales] maxmind_db=%s is set, but this idmd was built without "
                                       "libmaxminddb (meson option maxminddb); refusing to start. Remove the key "
                                       "or rebuild with libmaxminddb-dev installed.",
                                       m->config->maxmind_db);
        if (r < 0 && detail)
                return log_error_errno(r, "Failed to open [locales] maxmind_db=%s: %s (%m); refusing to start.",
                                       m->config->maxmind_db, detail);
        if (r < 0)
                return log_error_errno(r, "Failed to set up locale detection: %m");
        if (m->config->maxmind_db[0])
                log_info("Locale detection reads %s.", m->config->maxmind_db);
        return 0;
}

/* The dummy hash for unknown accounts (passwords.h), made on a thread of its own that ends when
 * it is made, so that start-up does not wait for it (and the worker pool's jobs and counters are
 * the requests' alone). A login that needs it meanwhile waits for it (it is made once, under a
 * lock), which only a login in the first moments after start-up can notice. With [passwords]
 * argon2_engine = auto (the default) the same thread then times the two Argon2id engines at the
 * configured cost and sets the faster for every later hash (password_calibrate(): 5 more hashes);
 * until then the workers hash with libargon2. The thread gives its Argon2 memory back before it
 * ends. */
typedef struct DummyHashJob {
        PasswordCost cost;
        bool calibrate;         /* [passwords] argon2_engine = auto */
} DummyHashJob;

static void *dummy_hash_thread(void *userdata) {
        DummyHashJob *job = userdata;
        PasswordCalibration c;
        int r;

        /* Named from inside: the thread is detached, so its id is not to be used once it may
         * have ended. */
        (void) pthread_setname_np(pthread_self(), "idmd-dummy");
        (void) password_verify_dummy("", &job->cost);
        if (job->calibrate) {
                r = password_calibrate(&job->cost, &c);
                if (r < 0)
                        log_warning_errno(r, "Failed to time the Argon2id engines, hashing with %s: %m",
                                          password_engine_to_string(password_engine()));
                else
                        log_info("Argon2id at m=%" PRIu64 " KiB, t=%" PRIu64 ": libargon2 with a kept region %" PRIu64
                                 " us, libsodium %" PRIu64 " us per hash; hashing with %s.",
                                 job->cost.memlimit / 1024U, job->cost.opslimit, c.usec[PASSWORD_ENGINE_WARM],
                                 c.usec[PASSWORD_ENGINE_SODIUM], password_engine_to_string(c.chosen));
        }
        password_release_memory();
        free(job);
        return NULL;
}

static int manager_make_dummy_hash(Manager *m) {
        DummyHashJob *job = malloc(sizeof(DummyHashJob));
        sigset_t all, saved;
        pthread_attr_t attr;
        pthread_t thread;
        int r;

        if (!job)
                return -ENOMEM;
        *job = (DummyHashJob) {
                .cost = { .opslimit = m->config->argon2_opslimit, .memlimit = m->config->argon2_memlimit },
                .calibrate = streq(m->config->argon2_engine, "auto"),
        };
        /* An engine the configuration names is used from the first hash on. */
        password_set_engine(streq(m->config->argon2_engine, "libsodium") ? PASSWORD_ENGINE_SODIUM : PASSWORD_ENGINE_WARM);

        /* Signals go to the event loop's signalfd only, as with the worker threads. */
        r = pthread_attr_init(&attr);
        if (r != 0) {
                free(job);
                return -r;
        }
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &saved);
        r = pthread_create(&thread, &attr, dummy_hash_thread, job);
        (void) pthread_sigmask(SIG_SETMASK, &saved, NULL);
        (void) pthread_attr_destroy(&attr);
        if (r != 0) {
                free(job);
                return -r;
        }
        return 0;
}

/* The store in the state directory ([store] backend = lmdb). Errors are logged here. */
static int manager_open_lmdb(Manager *m) {
        StoreOptions so = {
                .map_size_initial = m->config->map_size_initial,
                .map_size_max = m->config->map_size_max,
        };
        unsigned version = 0;
        int r;

        r = store_open(m->config->state_dir, &so, &m->store, &version);
        if (r == -EPROTONOSUPPORT && version == 0)
                return log_error("The store file in %s is not in a format this idmd's LMDB can read (written on "
                                 "another architecture, or by an incompatible LMDB); refusing to start. Restore "
                                 "a backup made with \"idmctl backup\" on this machine's idmd.",
                                 m->config->state_dir), r;
        if (r == -EPROTONOSUPPORT)
                return log_error("The store in %s has schema version %u, newer than this idmd understands (%u); "
                                 "refusing to start. Run a newer idmd or restore a backup.",
                                 m->config->state_dir, version, STORE_SCHEMA_VERSION), r;
        if (r < 0)
                return log_error_errno(r, "Failed to open the store in %s: %m", m->config->state_dir);
        if (version == 0)
                log_info("Created a new store in %s (schema version %u).", m->config->state_dir, STORE_SCHEMA_VERSION);
        else if (version < STORE_SCHEMA_VERSION)
                log_notice("Migrated the store in %s from schema version %u to %u.", m->config->state_dir, version,
                           STORE_SCHEMA_VERSION);
        return 0;
}

/* ---- signing keys kept in a shared store (PostgreSQL) ---- */

static uint64_t manager_keys_retain_usec(Manager *m) {
        return KEYRING_RETAIN_USEC(m->config->access_ttl_usec);
}

typedef struct KeysSettle {
        Manager *m;
        uint64_t now_usec;
        json_t *records;
} KeysSettle;

static int keys_settle_work(StoreTxn *t, void *userdata) {
        KeysSettle *ks = userdata;

        json_decref(ks->records);       /* a unit may run again */
        ks->records = NULL;
        return signing_keys_update(t, ks->now_usec, manager_keys_retain_usec(ks->m), KEY_RECORDS_SETTLE,
                                   &ks->records, NULL);
}

static void keys_sync_schedule(Manager *m) {
        if (!m->keys_timer)
                return;
        (void) sd_event_source_set_time_relative(m->keys_timer, SIGNING_KEYS_SYNC_USEC);
        (void) sd_event_source_set_enabled(m->keys_timer, SD_EVENT_ONESHOT);
}

/* Takes up the keys other instances made or dropped (in a coroutine: the reads may wait). */
static void keys_sync_main(void *userdata) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        Manager *m = userdata;
        int r;

        r = store_read(m->store, &t);
        if (r >= 0)
                r = signing_keys_sync(t, m->keyring, now_realtime_usec(), manager_keys_retain_usec(m));
        if (r > 0)
                log_info("Signing keys changed in the store; active kid %s.", keyring_active_kid(m->keyring));
        else if (r < 0)
                /* An unreachable database is logged once per episode by the store. */
                log_full_errno(r == -ENOTCONN || r == -ETIMEDOUT ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARNING, r,
                               "Failed to read the signing keys from the store, keeping those held: %m");
        m->keys_syncing = false;
        keys_sync_schedule(m);
}

static int on_keys_sync(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->keys_syncing)
                return 0;
        m->keys_syncing = true;
        if (coro_start(keys_sync_main, m) < 0) {
                m->keys_syncing = false;
                keys_sync_schedule(m);
        }
        return 0;
}

/* The first idmd on a new store makes its first key; every one takes the keys from the store
 * and reads them again now and then (records/signingkeys.h). */
static int manager_load_shared_keys(Manager *m) {
        KeysSettle ks = { .m = m, .now_usec = now_realtime_usec() };
        int r;

        r = store_transact(m->store, keys_settle_work, &ks);
        if (r >= 0)
                r = keyring_from_records(ks.records, ks.now_usec, manager_keys_retain_usec(m), &m->keyring);
        json_decref(ks.records);
        if (r < 0)
                return log_error_errno(r, "Failed to load the signing keys from the store: %m");

        r = sd_event_add_time_relative(m->event, &m->keys_timer, CLOCK_MONOTONIC, SIGNING_KEYS_SYNC_USEC, 0,
                                       on_keys_sync, m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up reading the signing keys again: %m");
        return 0;
}

/* The store in PostgreSQL ([store] backend = postgresql). Errors are logged here, with the
 * database's own words for a failed connect (never the connection string). */
static int manager_open_postgresql(Manager *m) {
        unsigned version = 0;
        int r;

        r = store_open_postgresql(m->config->store_connection, m->config->store_timeout_usec, &m->store,
                                  &version);
        if (r == -EPROTONOSUPPORT && version == 0)
                return log_error("The PostgreSQL database's tables were made by a newer idmd than this one; "
                                 "refusing to start. Run a newer idmd."), r;
        if (r == -EPROTONOSUPPORT)
                return log_error("The store in PostgreSQL has schema version %u, newer than this idmd "
                                 "understands (%u); refusing to start. Run a newer idmd.",
                                 version, STORE_SCHEMA_VERSION), r;
        if (r == -ENOTCONN || r == -ETIMEDOUT)
                return log_error_errno(r, "Could not connect to the PostgreSQL store ([store] connection): %s",
                                       store_connect_error() ?: "no answer in time");
        if (r == -EPERM)
                return log_error_errno(r, "The PostgreSQL role may not create idmd's tables (it needs CREATE on "
                                       "the database's schema, or an owner who made them first): %m");
        if (r < 0)
                return log_error_errno(r, "Failed to open the store in PostgreSQL: %m");
        if (version == 0)
                log_info("Created a new store in PostgreSQL (schema version %u).", STORE_SCHEMA_VERSION);
        else if (version < STORE_SCHEMA_VERSION)
                log_notice("Migrated the store in PostgreSQL from schema version %u to %u.", version,
                           STORE_SCHEMA_VERSION);
        return 0;
}

int manager_startup(Manager *m) {
        _cleanup_free_ char *keydir = NULL;
        SweepState *sweep;
        sigset_t ss;
        int r;

        manager_setup_fd_limit(m);

        /* idmd never asks its own userdb socket through NSS (getgrnam() below, a library doing
         * getpwuid()): socket-activated, the socket would accept and nobody would answer. */
        if (userdb_service(m->config) && setenv("SYSTEMD_BYPASS_USERDB", userdb_service(m->config), 1) < 0)
                return log_oom();

        if (mkdir(m->config->state_dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Failed to create state directory %s: %m", m->config->state_dir);

        r = manager_lock_state_dir(m);
        if (r < 0)
                return r;

        /* Instances sharing a store share their signing keys too: they are records there. */
        m->keys_in_store = streq(m->config->store_backend, "postgresql");
        if (m->keys_in_store)
                r = manager_open_postgresql(m);
        else
                r = manager_open_lmdb(m);
        if (r < 0)
                return r;
        r = store_set_event(m->store, m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to attach the store to the event loop: %m");

        if (m->keys_in_store) {
                r = manager_load_shared_keys(m);
                if (r < 0)
                        return r;
        } else {
                if (asprintf(&keydir, "%s/keys", m->config->state_dir) < 0)
                        return log_oom();
                r = keyring_load(keydir, now_realtime_usec(), KEYRING_RETAIN_USEC(m->config->access_ttl_usec),
                                 &m->keyring);
                if (r < 0)
                        return log_error_errno(r, "Failed to load the signing keys from %s: %m", keydir);
        }

        r = workers_new(m->event, m->config->workers, m->config->worker_queue, &m->workers);
        if (r < 0)
                return log_error_errno(r, "Failed to start worker threads: %m");
        workers_set_idle(m->workers, PASSWORD_MEMORY_IDLE_USEC, password_release_memory);

        /* The dummy hash unknown accounts are checked against is made now, not by the first
         * unknown login (which would then cost two hashes and stand out), but beside start-up:
         * at the default cost it takes longer than the rest of start-up together. */
        r = manager_make_dummy_hash(m);
        if (r < 0)
                return log_error_errno(r, "Failed to start the thread making the dummy password hash: %m");

        r = ratelimit_new(m->config->ratelimit, m->config->ratelimit_sources, &m->ratelimit);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the rate limits: %m");

        r = manager_setup_locales(m);
        if (r < 0)
                return r;

        r = outbox_new(m, &m->outbox);
        if (r < 0)
                return r;

        if (m->config->admin_group[0]) {
                struct group *g = getgrnam(m->config->admin_group);
                if (g) {
                        m->admin_gid = g->gr_gid;
                        m->admin_gid_valid = true;
                } else
                        log_info("Admin group '%s' does not exist; only root is administrator.",
                                 m->config->admin_group);
        }

        sweep = calloc(1, sizeof(SweepState));
        if (!sweep)
                return log_oom();
        sweep->m = m;
        r = sd_event_add_time_relative(m->event, &m->sweep_timer, CLOCK_MONOTONIC, SWEEP_START_USEC, 0, on_sweep,
                                       sweep);
        if (r < 0) {
                sweep_state_free(sweep);
                return log_error_errno(r, "Failed to set up the token sweep: %m");
        }
        (void) sd_event_source_set_destroy_callback(m->sweep_timer, sweep_state_free);
        (void) sd_event_source_set_priority(m->sweep_timer, SD_EVENT_PRIORITY_IDLE);

        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        (void) signal(SIGPIPE, SIG_IGN);
        r = sd_event_add_signal(m->event, &m->sigterm_source, SIGTERM, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sigint_source, SIGINT, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sighup_source, SIGHUP, on_reload, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch signals: %m");

        r = manager_listen(m);
        if (r < 0)
                return r;
        userdb_log_setup(m);

        r = manager_reserve_open(m);
        if (r < 0)
                log_warning_errno(r, "Failed to open /dev/null as a reserve descriptor, ignoring: %m");
        return 0;
}

int manager_run(Manager *m) {
        int r;

        log_struct(LOG_LEVEL_INFO, IDM_MESSAGE_STARTED, "idmd %s ready on %s (state in %s).", IDM_VERSION,
                   m->config->socket_path, m->config->state_dir);
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving on %s", m->config->socket_path);

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        log_struct(LOG_LEVEL_INFO, IDM_MESSAGE_STOPPED, "Stopped.");
        return 0;
}
