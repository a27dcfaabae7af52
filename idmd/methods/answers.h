/* SPDX-License-Identifier: MIT */
/*
 * What a customer answers a publisher (consents, capture), recorded in one unit of work: the
 * work item both families share. The family's write function checks the answers against the
 * publisher's current definitions inside the unit of work (refusing through w->refusal, which
 * rolls back: nothing of the request is stored), stores what changed, counts it in w->changed
 * and, when w->want_view, sets w->view to the reply. The write may run twice (store.h): its
 * outputs are reset before each run.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "methods/methods.h"
#include "methods/refusal.h"
#include "store.h"

typedef struct CustomerAnswers CustomerAnswers;
typedef int (*CustomerAnswersWrite)(StoreTxn *t, CustomerAnswers *w);

struct CustomerAnswers {
        /* inputs */
        char *publisher_id;
        char *customer_id;
        const char *source;             /* "registration", "customer", "pam": a static string */
        const char *what;               /* for the log line: "consent", "capture answer" */
        json_t *given;
        uint64_t now_usec;
        bool want_view;
        CustomerGone gone;
        CustomerAnswersWrite write;

        /* outputs of the write */
        Refusal refusal;
        unsigned changed;
        json_t *view;
};

/* Records the answers given (a reference is taken) for the customer in a unit of work running
 * write, and replies once durable: w->view when want_view, else {}; a refusal as recorded; -ENOENT
 * from the write (the customer was deleted meanwhile) as gone says. A log line counts the
 * changes. Returns < 0 only for an error the caller should give up with. */
int customer_answers_submit(Call *call, const char *publisher_id, const char *customer_id, json_t *given,
                            const char *source, const char *what, bool want_view, CustomerGone gone,
                            CustomerAnswersWrite write);
