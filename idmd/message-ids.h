/* SPDX-License-Identifier: MIT */
/*
 * The journal MESSAGE_IDs of idmd's events, one per kind of event, so that
 * "journalctl MESSAGE_ID=..." finds every occurrence and "journalctl -x" explains it. Each one has
 * an entry in catalog/idm.catalog (installed into systemd's catalog directory); a test checks
 * that every ID here has one. An ID, once released, never changes meaning.
 */
#pragma once

#define IDM_MESSAGE_STARTED             "dd71fb697a6f44dcb73c32f26d215fa5"
#define IDM_MESSAGE_STOPPED             "406ed6fed0d04c5f9d9a9418d66cc60f"
#define IDM_MESSAGE_CONFIG_RELOADED     "41c706b87e484ce3aee9619331fdc794"
#define IDM_MESSAGE_LOGIN_SUCCEEDED     "9c4e4aff7da14265837bfeb2a4d1bdbb"
#define IDM_MESSAGE_LOGIN_FAILED        "f74db01f8c34438c8f6782a2fdb9ac57"
#define IDM_MESSAGE_ACCOUNT_LOCKED      "7ab27605aa2b4fa282b9a8abd14c5cae"
#define IDM_MESSAGE_PASSWORD_CHANGED    "93a96804814445159c12ef4ee46e832d"
#define IDM_MESSAGE_REFRESH_REUSE       "5a111457ad9c4c308b5f40967331cfc1"
#define IDM_MESSAGE_KEY_ROTATED         "99d2450094e44cce82ef66bd713e5fe7"
#define IDM_MESSAGE_PUBLISHER_CREATED   "31a2a63946624bd19c87f67eecdcd312"
#define IDM_MESSAGE_CUSTOMER_DELETED    "b5d56b1fcc5744f2b676ddc5f9fd2d16"
#define IDM_MESSAGE_RATE_LIMITED        "d135508482d54aa78734dfd10ae6daa8"
#define IDM_MESSAGE_STORE_FULL          "c2289fb2ca3445449b82f0630c4d1511"
#define IDM_MESSAGE_STORE_WRITABLE      "372f5597ac4b4febbdf7e461c9232fc9"
#define IDM_MESSAGE_BACKUP_WRITTEN      "5f096ad3bfb24453bd193482f517e556"
#define IDM_MESSAGE_OUTBOX_EXPIRED      "5d0b1ef0a4cf4a7c9a3f2f0c6e8b7d21"
