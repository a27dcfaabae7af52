/* SPDX-License-Identifier: MIT */
/*
 * Capture: the profile questions a publisher asks its customers after registration. The
 * methods (setCaptureSettings, getCaptureSettings, getCaptureStatus, updateCaptureAnswers,
 * pamCaptureAnswers' work) are in capture.c; this header is what login, the PAM path and
 * exportCustomer need from it.
 *
 * Settings name fields by Cleeng's keys: firstNameLastName, birthDate, companyName,
 * phoneNumber, address, and custom questions custom_N (N 1..999) with a question and options
 * (value: ';'-separated; empty: free text). Each is enabled or not, required or not.
 * A field is answered when its parts are (firstNameLastName: firstName and lastName;
 * address: address, city and country; a custom question: an answer that is one of its options
 * where it has options). A customer must be asked (shouldCaptureBeDisplayed) while a field is
 * enabled, required and not answered, so a field made required later asks every customer.
 *
 * Records in STORE_CAPTURE (docs/store.md), times in CLOCK_REALTIME usec:
 *   "publisher:<publisherId>"  {settings: [{key, enabled, required, question?, value?}], updated}
 *   "customer:<customerId>"    {publisherId, answers: {field or custom_N: text}, updated}
 * firstName and lastName are not in the answers record: they are the customer's profile names
 * (getCustomer shows what capture sets).
 */
#pragma once

#include <jansson.h>

#include "methods/methods.h"
#include "store.h"

#define CAPTURE_CUSTOM_MAX 20           /* custom questions per publisher */
#define CAPTURE_SETTINGS_MAX (5 + CAPTURE_CUSTOM_MAX)
#define CAPTURE_QUESTION_MAX 512u       /* bytes of a custom question */
#define CAPTURE_OPTIONS_MAX 2048u       /* bytes of a custom question's ';'-separated options */
#define CAPTURE_OPTION_MAX 256u         /* bytes of one option */
#define CAPTURE_ANSWER_MAX 1024u        /* bytes of a custom answer */

#define CAPTURE_NAME_MAX 100u           /* firstName, lastName, city, state */
#define CAPTURE_LINE_MAX 200u           /* companyName, address, address2 */
#define CAPTURE_PHONE_MAX 32u
#define CAPTURE_POST_CODE_MAX 20u

/* The fields a customer answers (updateCaptureAnswers' params besides its credentials, and
 * pamCaptureAnswers' "answers" object), as ParamSpec entries. */
#define CAPTURE_ANSWER_PARAMS                                                                   \
        { "firstName", PARAM_STRING, false, CAPTURE_NAME_MAX },                                 \
        { "lastName", PARAM_STRING, false, CAPTURE_NAME_MAX },                                  \
        { "birthDate", PARAM_STRING, false, 10 },                                               \
        { "companyName", PARAM_STRING, false, CAPTURE_LINE_MAX },                               \
        { "phoneNumber", PARAM_STRING, false, CAPTURE_PHONE_MAX },                              \
        { "address", PARAM_STRING, false, CAPTURE_LINE_MAX },                                   \
        { "address2", PARAM_STRING, false, CAPTURE_LINE_MAX },                                  \
        { "city", PARAM_STRING, false, CAPTURE_NAME_MAX },                                      \
        { "state", PARAM_STRING, false, CAPTURE_NAME_MAX },                                     \
        { "postCode", PARAM_STRING, false, CAPTURE_POST_CODE_MAX },                             \
        { "country", PARAM_STRING, false, 2 },                                                  \
        { "customAnswers", PARAM_ARRAY, false, CAPTURE_CUSTOM_MAX }

/* The required fields the customer has not answered: *ret (may be NULL) becomes a new array of
 * {key, fields: [answer field names], question?, value?} (what a prompt asks). Returns how many,
 * or -errno from the store (-ENOENT: no such customer; the customer's records are read only
 * when a field is required). */
int capture_missing_required(StoreTxn *t, const char *publisher_id, const char *customer_id, json_t **ret);

/* The customer's capture answers for exportCustomer: a new object {field: text} ({} when none),
 * the profile names left out. The store's errors. */
int capture_export(StoreTxn *t, const char *customer_id, json_t **ret);

/* Records the customer's answers (an object of CAPTURE_ANSWER_PARAMS fields; others are ignored)
 * in one unit of work. Refuses, writing nothing: a malformed value 400 invalid_value {field} (a
 * country: invalid_country), a field that is not enabled 422 field_not_enabled {field}, an answer
 * that is not one of its question's options 400 invalid_value. Replies itself: with the status
 * getCaptureStatus shows when reply_view, else {}; a customer deleted meanwhile is answered as
 * gone says. source ("customer", "pam") must be a static string. Returns < 0 only for an error
 * the caller should give up with. */
int capture_answer(Call *call, const char *publisher_id, const char *customer_id, json_t *answers,
                   const char *source, bool reply_view, CustomerGone gone);
