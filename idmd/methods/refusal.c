/* SPDX-License-Identifier: MIT */
/*
 * Refusals recorded in a unit of work and answered after it (refusal.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "methods/refusal.h"

void refusal_done(Refusal *ref) {
        json_decref(ref->data);
        *ref = (Refusal) {};
}

int refuse(Refusal *ref, int code, const char *reason, json_t *data, const char *format, ...) {
        va_list ap;

        refusal_done(ref);
        ref->code = code;
        ref->reason = reason;
        ref->data = data;
        va_start(ap, format);
        (void) vsnprintf(ref->message, sizeof(ref->message), format, ap);
        va_end(ap);
        return -EINVAL;
}

int refusal_reply(Call *call, Refusal *ref) {
        json_t *data = TAKE_PTR(ref->data);

        return call_fail(call, ref->code, ref->reason, data, "%s", ref->message);
}
