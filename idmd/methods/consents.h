/* SPDX-License-Identifier: MIT */
/*
 * Consents: what a publisher asks its customers to agree to, and what each
 * customer answered. The methods are in consents.c; this header is what registration, login and
 * the PAM path need from it.
 *
 * Versions are integers kept by idmd: a consent starts at version 1, and a changed label or value
 * makes a new version. A customer's answer names the version it was given for; an answer is
 * current when it names the newest version. A required consent not accepted at its newest
 * version is "outdated" for that customer (login's consentsUpdateRequired, pamAccount).
 *
 * Records in STORE_CONSENTS (docs/store.md), times in CLOCK_REALTIME usec:
 *   "publisher:<publisherId>"  {consents: [{name, label, value?, required, enabledByDefault,
 *                              version, date}], retired: {name: last version}, updated}
 *                              (a removed consent keeps its last version in "retired", so adding
 *                              it again continues from there instead of starting at 1 again)
 *   "customer:<customerId>"    {publisherId, consents: {name: {version, state, date}},
 *                              history: [{name, version, state, date, source}]}
 *                              (state "accepted" or "declined"; source "registration",
 *                              "customer" or "pam"; the newest CONSENTS_HISTORY_MAX changes)
 *
 * Functions taking a StoreTxn run on the event loop inside the caller's snapshot or unit of work
 * (store.h); the ones writing may be run twice when the store grows, and are deterministic.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "methods/methods.h"
#include "rpc.h"
#include "store.h"

#define CONSENTS_MAX 64                 /* consents per publisher, answers per request */
#define CONSENTS_HISTORY_MAX 200        /* history entries kept per customer (oldest dropped) */
#define CONSENTS_RETIRED_MAX 1000       /* removed consent names a publisher's record remembers */
#define CONSENT_NAME_MAX 64
#define CONSENT_LABEL_MAX 1024
#define CONSENT_VALUE_MAX 4096

/* A consent version from an answer: a JSON integer >= 1, or a string of decimal digits (some
 * seed clients send "1"). -EINVAL otherwise. */
int consents_version_parse(json_t *v, int64_t *ret);

/* registerCustomer: checks the answers [{name, version, state}] (shape already checked by the
 * caller) against the publisher's consents: an unknown or repeated name is 400 invalid_value;
 * a required consent not accepted at its current version is 422 terms_not_accepted (data.missing
 * names them); an optional one answered for another version is 409 version_mismatch. answers may
 * be NULL (none given). Returns 0 when acceptable; otherwise < 0, with the refusal recorded
 * (call_fail()) or a store error. */
int consents_check_registration(Call *call, StoreTxn *t, const char *publisher_id, json_t *answers);

/* registerCustomer's unit of work: stores the answers (checked before) as the customer's first
 * consent record, source "registration". Nothing is written when answers is NULL or empty. */
int consents_record_registration(StoreTxn *t, const char *publisher_id, const char *customer_id, json_t *answers,
                                 uint64_t now_usec);

/* The customer's outdated required consents: *ret (may be NULL) becomes a new array of {name,
 * label, version (the newest)}. Returns how many, or -errno from the store. */
int consents_outdated_required(StoreTxn *t, const char *publisher_id, const char *customer_id, json_t **ret);

/* Records a customer's answers [{name, version, state}] in one unit of work, with a history
 * entry for each answer that changes something. Refuses (and writes nothing) when an answer is
 * malformed (-32602), names an unknown consent or one twice (400 invalid_value) or a version
 * that is not the newest (409 version_mismatch {name, version, newestVersion}). Replies itself:
 * with the customer's consents as getCustomerConsents shows them when reply_view, else {}, once
 * the answers are durable; a customer deleted meanwhile is answered as gone says. source must be
 * a static string. Returns < 0 only for an error the caller should give up with. */
int consents_answer(Call *call, const char *publisher_id, const char *customer_id, json_t *answers,
                    const char *source, bool reply_view, CustomerGone gone);

/* Deletes the customer's consent record (for deleteCustomer). 0, or 0 when there was none. */
int consents_delete_customer(StoreTxn *t, const char *customer_id);
