/* SPDX-License-Identifier: MIT */
/*
 * What idmctl's verbs share: the parsed command line (Context), the command table entry (Verb),
 * the call helper that connects on first use (through idm-client, the transport it shares with
 * pam_idm) and reports failures, and the exit conventions.
 *
 * A verb returns an int: < 0 is a -errno failure that has already been reported on stderr (exit
 * status 1); >= 0 is the exit status itself (EXIT_SUCCESS, or EXIT_USAGE from usage_error()).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/idm-client.h"
#include "idm/cleanup.h"

#define EXIT_USAGE 2

/* Option groups a verb may accept besides the global ones (Verb.options). */
typedef enum VerbOptions {
        VERB_OPT_PUBLISHER_SETTINGS = 1u << 0,  /* --redirect-uri, --reset-url, --sso-page, ... */
        VERB_OPT_NAME = 1u << 1,                /* --name */
        VERB_OPT_TITLE = 1u << 2,               /* --title */
        VERB_OPT_PUBLISHER = 1u << 3,           /* --publisher, --publisher-token-file */
        VERB_OPT_FILE = 1u << 4,                /* --file */
        VERB_OPT_LIST = 1u << 5,                /* --list */
        VERB_OPT_CUSTOMER = 1u << 6,            /* --customer */
} VerbOptions;

typedef struct Context {
        /* global options */
        const char *socket_path;
        uint64_t timeout_usec;
        bool json;

        /* verb options; NULL when not given */
        json_t *redirect_uris;          /* array of strings ([] after an empty --redirect-uri) */
        json_t *sso_pages;              /* object name -> path ({} after an empty --sso-page) */
        const char *reset_url;
        const char *remote_auth_url;
        const char *sso_url;
        const char *device_verification_url;
        const char *unix_users;
        const char *unix_shell;
        const char *name;
        const char *title;
        const char *publisher_id;       /* --publisher */
        char *publisher_token;          /* --publisher-token-file's token (wiped at exit) */
        const char *file;               /* --file ("-": standard input) */
        const char *customer;           /* --customer (an e-mail or a customer id) */
        bool list;                      /* --list */
        bool help;                      /* --help: for the command named, if any */

        IdmClient client;               /* IDM_CLIENT_INIT; connected on the first ctx_call() */
        const struct Verb *verb;        /* the verb being run, for usage_error() */
} Context;

typedef int (*VerbHandler)(Context *ctx, int argc, char **argv);

typedef struct Verb {
        const char *name;               /* "publisher" */
        const char *sub;                /* "create", or NULL for a verb without subcommands */
        unsigned min_args, max_args;    /* positional arguments after name [sub] */
        unsigned options;               /* VerbOptions accepted */
        VerbHandler handler;            /* gets the positional arguments only */
        const char *usage;              /* arguments, for help and usage errors: "NAME [OPTIONS]" */
        const char *description;        /* one line for --help */
} Verb;

/* Calls method on the daemon, connecting first if needed: the socket and the directories above it
 * must belong to root, idmd's user or the caller, and the listener to the socket's owner
 * (idm-client.h); a relative socket path is taken from the current directory. params is borrowed
 * (an object or array; NULL: none).
 * On success returns 0 and *ret_result (a new reference). Every failure is reported on stderr
 * (one line) before returning it: -EREMOTEIO for a JSON-RPC error, else the transport's -errno. */
int ctx_call(Context *ctx, const char *method, json_t *params, json_t **ret_result);

/* ctx_call() for a verb that prints its result: with --json prints the result (indented) and
 * returns 0, the verb is done; without, returns 1 for the verb to print it as text. Either way
 * *ret_result is set (a new reference). Failures are as for ctx_call(), reported. */
int ctx_call_or_print_json(Context *ctx, const char *method, json_t *params, json_t **ret_result);

/* Reads all of fd, at most max bytes, into a NUL-terminated buffer (*ret, *ret_len: the bytes
 * read; a NUL among them is the caller's to check). The buffer is never realloc()ed, so nothing
 * read (params may hold a password) is left behind in freed memory: wipe *ret before freeing it.
 * Returns 0, -EFBIG when there is more than max, -ENOMEM, or read(2)'s -errno. Reports nothing. */
int read_full(int fd, size_t max, char **ret, size_t *ret_len);

/* The params that name the publisher a command acts for: {publisherId} from --publisher,
 * {publisherToken} from --publisher-token-file, or both (idmd then checks that they agree).
 * Returns 0 and *ret (a new object); EXIT_USAGE (reported) when neither is given; or a reported
 * -ENOMEM. */
int ctx_publisher_params(Context *ctx, json_t **ret);

/* The list a "set" command sends, read from --file (ctx->file; "-": standard input, at most
 * IDM_MAX_REPLY bytes): a JSON array, or an object whose only member is member holding the array
 * ({"consents": [...]}, as the matching "show --json" prints it). Returns 0 and *ret_array (a
 * new reference); EXIT_USAGE (reported) without --file; else a reported -errno: the file cannot be
 * read, or -EINVAL when it is not JSON (the message names the file, line and column) or not such
 * a list. */
int ctx_read_list_file(Context *ctx, const char *member, json_t **ret_array);

/* The "show" and "set" of one of a publisher's lists (consents; next, capture settings): call
 * method with the publisher params (ctx_publisher_params()) and, for a set, the list from --file
 * as params[member]. Return 0 with *ret_result (a new reference) for the verb to print as text; 0
 * with *ret_result left NULL when --json printed it; else an exit status or a reported error, as a
 * verb returns. */
int publisher_list_show(Context *ctx, const char *method, json_t **ret_result);
int publisher_list_set(Context *ctx, const char *method, const char *member, json_t **ret_result);

/* Prints "idmctl: <message>" and a usage line for the current verb; returns EXIT_USAGE. */
int usage_error(Context *ctx, const char *format, ...) _printf_(2, 3);

/* Prints "idmctl: <message>" to stderr; returns -abs(error) (log-and-return). Do not use "%m":
 * errno may have changed by the time the message is formatted; pass strerror() explicitly. */
int log_error_errno(int error, const char *format, ...) _printf_(2, 3);

/* Prints "idmctl: out of memory"; returns -ENOMEM. */
int log_oom(void);

/* Verbs (verb-*.c). */
int verb_status(Context *ctx, int argc, char **argv);
int verb_publisher_create(Context *ctx, int argc, char **argv);
int verb_publisher_list(Context *ctx, int argc, char **argv);
int verb_publisher_show(Context *ctx, int argc, char **argv);
int verb_publisher_update(Context *ctx, int argc, char **argv);
int verb_publisher_rotate_token(Context *ctx, int argc, char **argv);
int verb_offer_add(Context *ctx, int argc, char **argv);
int verb_offer_list(Context *ctx, int argc, char **argv);
int verb_offer_remove(Context *ctx, int argc, char **argv);
int verb_call(Context *ctx, int argc, char **argv);
int verb_customer_show(Context *ctx, int argc, char **argv);
int verb_customer_unlock(Context *ctx, int argc, char **argv);
int verb_customer_list(Context *ctx, int argc, char **argv);
int verb_customer_export(Context *ctx, int argc, char **argv);
int verb_customer_delete(Context *ctx, int argc, char **argv);
int verb_customer_disable(Context *ctx, int argc, char **argv);
int verb_customer_enable(Context *ctx, int argc, char **argv);
int verb_customer_unix(Context *ctx, int argc, char **argv);
int verb_customer_reset_password(Context *ctx, int argc, char **argv);
int verb_metrics(Context *ctx, int argc, char **argv);
int verb_backup(Context *ctx, int argc, char **argv);
int verb_migrate_store(Context *ctx, int argc, char **argv);
int verb_auth_test(Context *ctx, int argc, char **argv);
int verb_consents_show(Context *ctx, int argc, char **argv);
int verb_consents_set(Context *ctx, int argc, char **argv);
int verb_capture_show(Context *ctx, int argc, char **argv);
int verb_capture_set(Context *ctx, int argc, char **argv);
int verb_outbox_list(Context *ctx, int argc, char **argv);
int verb_outbox_retry(Context *ctx, int argc, char **argv);
int verb_outbox_drop(Context *ctx, int argc, char **argv);
int verb_device_approve(Context *ctx, int argc, char **argv);
int verb_device_deny(Context *ctx, int argc, char **argv);
