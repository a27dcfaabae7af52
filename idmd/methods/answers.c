/* SPDX-License-Identifier: MIT */
/*
 * The unit of work that records a customer's answers (answers.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "manager.h"
#include "methods/answers.h"

static int answers_write(StoreTxn *t, void *userdata) {
        CustomerAnswers *w = userdata;

        refusal_done(&w->refusal);
        json_decref(w->view);
        w->view = NULL;
        w->changed = 0;
        return w->write(t, w);
}

static void answers_free(void *p) {
        CustomerAnswers *w = p;

        free(w->publisher_id);
        free(w->customer_id);
        json_decref(w->given);
        refusal_done(&w->refusal);
        json_decref(w->view);
        free(w);
}

static void answers_done(Call *call, int r, void *userdata) {
        CustomerAnswers *w = userdata;

        if (r == -ENOENT) {     /* deleted meanwhile */
                (void) call_fail_customer_gone(call, w->gone);
                return;
        }
        if (r < 0 && w->refusal.code) {
                (void) refusal_reply(call, &w->refusal);
                return;
        }
        if (r < 0)
                return;
        if (w->changed > 0)
                log_info("%s: customer %s changed %u %s(s) (%s)", call_request_id(call), w->customer_id, w->changed,
                         w->what, w->source);
        (void) (w->want_view ? call_reply(call, json_incref(w->view)) : call_reply_empty(call));
}

int customer_answers_submit(Call *call, const char *publisher_id, const char *customer_id, json_t *given,
                            const char *source, const char *what, bool want_view, CustomerGone gone,
                            CustomerAnswersWrite write) {
        CustomerAnswers *w = calloc(1, sizeof(CustomerAnswers));

        if (!w)
                return -ENOMEM;
        *w = (CustomerAnswers) {
                .publisher_id = strdup(publisher_id),
                .customer_id = strdup(customer_id),
                .source = source,
                .what = what,
                .given = json_incref(given),
                .now_usec = now_realtime_usec(),
                .want_view = want_view,
                .gone = gone,
                .write = write,
        };
        if (!w->publisher_id || !w->customer_id) {
                answers_free(w);
                return -ENOMEM;
        }
        return call_write(call, answers_write, answers_done, w, answers_free);
}
