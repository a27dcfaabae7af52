/* SPDX-License-Identifier: MIT */
/*
 * A refusal worked out inside a unit of work and answered after it. A write function (store.h)
 * may run more than once and must not reply: it records why it refuses here and returns
 * -EINVAL to roll back; the done callback then answers with refusal_reply(). Owned by the
 * work item that embeds it; refusal_done() frees what it holds.
 */
#pragma once

#include <jansson.h>

#include "idm/cleanup.h"
#include "rpc.h"

typedef struct Refusal {
        int code;               /* 0: nothing refused */
        const char *reason;     /* a static string (IDM_REASON_*) */
        json_t *data;
        char message[256];
} Refusal;

void refusal_done(Refusal *ref);

/* Records the refusal (replacing an earlier one, as a unit of work may run twice) and returns
 * -EINVAL, for the unit of work to roll back. data is stolen (may be NULL). */
int refuse(Refusal *ref, int code, const char *reason, json_t *data, const char *format, ...) _printf_(5, 6);

/* Answers the call with the recorded refusal (call_fail()). */
int refusal_reply(Call *call, Refusal *ref);
