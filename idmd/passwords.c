/* SPDX-License-Identifier: MIT */
/*
 * Passwords: Argon2id through the reference libargon2 or through libsodium, whichever is faster
 * here (password_calibrate(), below), both in a warm per-thread region; strings and the rehash
 * check in libsodium's crypto_pwhash_str format, a dummy verification for unknown accounts, and
 * the password policy (UTF-8 checked here, without a Unicode database). Logs nothing.
 *
 * This file also defines mmap() and munmap() for the whole process, to lend the warm region to
 * libsodium's Argon2 (see "libsodium's region", below); every other call goes to the C library.
 */

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <argon2.h>
#include <sodium.h>

#include "idm/time-util.h"
#include "idm/utf8.h"
#include "idmd/passwords.h"

_Static_assert(PASSWORD_HASH_MAX == crypto_pwhash_STRBYTES, "PASSWORD_HASH_MAX != crypto_pwhash_STRBYTES");
_Static_assert(crypto_pwhash_argon2id_STRBYTES == crypto_pwhash_STRBYTES, "argon2id string size");

#define ARGON2ID_PREFIX crypto_pwhash_argon2id_STRPREFIX

static bool cost_is_valid(const PasswordCost *cost) {
        return cost &&
                cost->opslimit >= crypto_pwhash_argon2id_OPSLIMIT_MIN &&
                cost->opslimit <= crypto_pwhash_argon2id_OPSLIMIT_MAX &&
                cost->memlimit >= crypto_pwhash_argon2id_MEMLIMIT_MIN &&
                cost->memlimit <= crypto_pwhash_argon2id_MEMLIMIT_MAX;
}

/* A NUL-terminated string that fits a crypto_pwhash_STRBYTES buffer and says Argon2id. */
static bool hash_is_argon2id(const char *hash) {
        return hash &&
                strnlen(hash, PASSWORD_HASH_MAX) < PASSWORD_HASH_MAX &&
                strncmp(hash, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) == 0;
}

/* --- Argon2id with memory kept warm ---
 *
 * A fresh region for every hash costs the kernel a page fault and a zeroed page for each 4 KiB:
 * a third of a 19 MiB hash on real hardware, and several times the hash itself in some virtual
 * machines. So each worker thread keeps one region, faulted in once, for all its hashes, wiped
 * after each, and gives it back when the thread idles (password_release_memory(), the workers'
 * idle function). The reference libargon2 takes allocation callbacks in its context and wipes the
 * region itself before "freeing" it to us; libsodium gets the same region through mmap() (below).
 * The strings are the standard "$argon2id$v=19$m=..,t=..,p=1$salt$tag" that libsodium reads and
 * writes, so hashes made by either engine verify with the other. */

#define SALT_BYTES crypto_pwhash_argon2id_SALTBYTES             /* 16, as libsodium */
#define TAG_BYTES 32U                                           /* as libsodium's strings */
#define SALT_MIN 8
#define TAG_MIN 16
#define PARAM_MAX 64

static _Thread_local uint8_t *warm_memory;
static _Thread_local size_t warm_size;
/* Bytes held by all threads together, for getStats. */
static _Atomic size_t warm_total;
/* Also held under a thread key, whose destructor frees it when a thread ends holding it. The key's
 * value is the thread's WarmRegion, so the destructor knows the size to take off warm_total. */
typedef struct WarmRegion {
        size_t size;
        _Alignas(64) uint8_t bytes[];
} WarmRegion;
static pthread_once_t warm_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t warm_key;
static bool warm_key_made;

static void warm_region_free(void *p) {
        WarmRegion *region = p;

        warm_total -= region->size;
        free(region);
}

static void warm_key_make(void) {
        warm_key_made = pthread_key_create(&warm_key, warm_region_free) == 0;
}

static int warm_allocate(uint8_t **memory, size_t size) {
        if (!warm_memory || warm_size < size) {
                void *m = NULL;
                WarmRegion *region;

                password_release_memory();
                (void) pthread_once(&warm_key_once, warm_key_make);
                if (!warm_key_made || size > SIZE_MAX - sizeof(WarmRegion) ||
                    posix_memalign(&m, 64, sizeof(WarmRegion) + size) != 0)
                        return ARGON2_MEMORY_ALLOCATION_ERROR;
                region = m;
                region->size = size;
                if (pthread_setspecific(warm_key, region) != 0) {
                        free(region);
                        return ARGON2_MEMORY_ALLOCATION_ERROR;
                }
                warm_total += size;
                warm_memory = region->bytes;
                warm_size = size;
        }
        *memory = warm_memory;
        return ARGON2_OK;
}

static void warm_free(uint8_t *memory, size_t size) {
        /* libargon2 wiped it already; it stays for the next hash on this thread. */
        assert(memory == warm_memory);
}

void password_release_memory(void) {
        if (!warm_memory)
                return;
        warm_region_free(pthread_getspecific(warm_key));
        (void) pthread_setspecific(warm_key, NULL);
        warm_memory = NULL;
        warm_size = 0;
}

size_t password_memory_held(void) {
        return warm_total;
}

bool password_memory_wiped(void) {
        return !warm_memory || sodium_is_zero(warm_memory, warm_size);
}

/* --- libsodium's region ---
 *
 * libsodium's Argon2 has no allocation callbacks: it maps its region with mmap() and unmaps it
 * with munmap() when the hash is done. These two definitions in the executable come before the C
 * library's for every library that idmd loads, so libsodium's calls come here. While this thread
 * is inside crypto_pwhash_argon2id() (sodium_hashing), the first anonymous private read-write
 * mapping of the region's length (sodium_region_len) it asks for is this thread's warm region
 * (sodium_lent), and the munmap() of that region wipes it, as libargon2 does, instead of
 * unmapping it: the blocks are derived from the password, and a wiped region gives an attacker
 * who reads memory later nothing to test guesses against.
 * Every other call, on any thread, goes to the C library's mmap() and munmap() unchanged. Should
 * the definitions not be reached (linked statically, or a libsodium that allocates otherwise),
 * libsodium maps a fresh region as before and the hashes are the same, only slower:
 * password_memory_held() then stays 0 under libsodium, which the tests check. */
static _Thread_local bool sodium_hashing, sodium_lent;
/* The length libsodium maps for the cost being hashed (sodium_tag()): only a mapping of exactly
 * that length is lent, so that nothing else this thread maps meanwhile (an allocator that maps
 * through mmap() for one of libsodium's small mallocs, say) is taken for the region. */
static _Thread_local size_t sodium_region_len;

#if defined(__LP64__)
/* The symbol is "mmap", the one libsodium calls: with _FILE_OFFSET_BITS=64 the C name mmap stands
 * for mmap64, and on a 64-bit system the two take the same 64-bit offset. (A 32-bit build has no
 * such definition, and libsodium maps its own region there.) */
void *interposed_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) __asm__("mmap");
_Static_assert(sizeof(off_t) == 8, "mmap's offset");

typedef void *(*MmapFunction)(void *, size_t, int, int, int, off_t);
typedef int (*MunmapFunction)(void *, size_t);

/* The C library's (or a sanitizer's, which forwards to it) next definition. dlsym() does not
 * map through this mmap(); a dynamically linked process always has one. */
static void *next_symbol(const char *name) {
        void *f = dlsym(RTLD_NEXT, name);

        if (!f)
                abort();
        return f;
}

__attribute__((visibility("default")))
void *interposed_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
        static _Atomic(MmapFunction) next;
        MmapFunction f = next;

        if (sodium_hashing && !sodium_lent && length == sodium_region_len && !addr && fd == -1 && offset == 0 &&
            prot == (PROT_READ | PROT_WRITE) && (flags & (MAP_ANONYMOUS | MAP_PRIVATE | MAP_SHARED | MAP_FIXED)) ==
            (MAP_ANONYMOUS | MAP_PRIVATE)) {
                uint8_t *m;

                if (warm_allocate(&m, length) == ARGON2_OK) {
                        sodium_lent = true;
                        return m;
                }
                /* No memory for a kept region: libsodium gets a mapping of its own. */
        }
        if (!f)
                next = f = (MmapFunction) next_symbol("mmap");
        return f(addr, length, prot, flags, fd, offset);
}

__attribute__((visibility("default")))
int munmap(void *addr, size_t length) {
        static _Atomic(MunmapFunction) next;
        MunmapFunction f = next;

        if (sodium_lent && addr && addr == (void *) warm_memory) {
                sodium_memzero(addr, length);
                sodium_lent = false;
                return 0;
        }
        if (!f)
                next = f = (MunmapFunction) next_symbol("munmap");
        return f(addr, length);
}
#endif

static _Atomic PasswordEngine engine = PASSWORD_ENGINE_WARM;

static const char *const engine_names[_PASSWORD_ENGINE_MAX] = {
        [PASSWORD_ENGINE_WARM] = "libargon2",
        [PASSWORD_ENGINE_SODIUM] = "libsodium",
};

const char *password_engine_to_string(PasswordEngine e) {
        return e >= 0 && e < _PASSWORD_ENGINE_MAX ? engine_names[e] : NULL;
}

PasswordEngine password_engine(void) {
        return engine;
}

void password_set_engine(PasswordEngine e) {
        assert(e >= 0 && e < _PASSWORD_ENGINE_MAX);
        engine = e;
}

/* The tag through libsodium. false: it takes only 16-byte salts, so the caller uses libargon2. */
static bool sodium_tag(const char *password, const uint8_t *salt, size_t salt_len, uint32_t t_cost,
                       uint32_t m_cost_kib, uint8_t *tag, size_t tag_len, int *ret) {
        size_t len = strlen(password);

        if (salt_len != crypto_pwhash_argon2id_SALTBYTES || tag_len < crypto_pwhash_argon2id_BYTES_MIN ||
            len > crypto_pwhash_argon2id_PASSWD_MAX)
                return false;
        /* -1 for a cost out of its range (the parser and cost_is_valid() keep to that range) or
         * for memory it could not map. In the warm region (mmap(), above), whose length is
         * libsodium's: m blocks of 1 KiB, at least 8, rounded down to a multiple of 4 (its four
         * sync points of one lane). */
        sodium_region_len = (size_t) ((m_cost_kib < 8 ? 8 : m_cost_kib) & ~UINT32_C(3)) * 1024U;
        sodium_hashing = true;
        *ret = crypto_pwhash_argon2id(tag, tag_len, password, len, salt, t_cost, (size_t) m_cost_kib * 1024U,
                                      crypto_pwhash_argon2id_ALG_ARGON2ID13) == 0 ? 0 : -ENOMEM;
        sodium_hashing = false;
        if (sodium_lent) {
                /* Not given back (libsodium unmaps on every path after mapping; this is in case). */
                sodium_memzero(warm_memory, warm_size);
                sodium_lent = false;
        }
        return true;
}

/* The tag of password under the given parameters, into tag[tag_len], by the engine given.
 * 0, -ENOMEM, -EINVAL. */
static int argon2id_tag_by(PasswordEngine e, const char *password, const uint8_t *salt, size_t salt_len,
                           uint32_t t_cost, uint32_t m_cost_kib, uint8_t *tag, size_t tag_len) {
        argon2_context ctx = {
                .out = tag,
                .outlen = (uint32_t) tag_len,
                .pwd = (uint8_t *) password,    /* not written: no ARGON2_FLAG_CLEAR_PASSWORD */
                .pwdlen = (uint32_t) strlen(password),
                .salt = (uint8_t *) salt,
                .saltlen = (uint32_t) salt_len,
                .t_cost = t_cost,
                .m_cost = m_cost_kib,
                .lanes = 1,
                .threads = 1,
                .version = ARGON2_VERSION_13,
                .allocate_cbk = warm_allocate,
                .free_cbk = warm_free,
                .flags = ARGON2_DEFAULT_FLAGS,
        };
        int k;

        if (e == PASSWORD_ENGINE_SODIUM && sodium_tag(password, salt, salt_len, t_cost, m_cost_kib, tag, tag_len, &k))
                return k;
        if (strlen(password) > UINT32_MAX)
                return -EINVAL;
        k = argon2id_ctx(&ctx);
        if (k == ARGON2_OK)
                return 0;
        return k == ARGON2_MEMORY_ALLOCATION_ERROR ? -ENOMEM : -EINVAL;
}

static int argon2id_tag(const char *password, const uint8_t *salt, size_t salt_len, uint32_t t_cost,
                        uint32_t m_cost_kib, uint8_t *tag, size_t tag_len) {
        return argon2id_tag_by(engine, password, salt, salt_len, t_cost, m_cost_kib, tag, tag_len);
}

/* A decimal without sign or leading zeros, at most UINT32_MAX; advances *p. */
static bool parse_u32(const char **p, uint32_t *ret) {
        const char *s = *p;
        uint64_t v = 0;
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9') {
                v = v * 10 + (uint64_t) (s[n] - '0');
                if (++n > 10 || v > UINT32_MAX)
                        return false;
        }
        if (n == 0 || (n > 1 && s[0] == '0'))
                return false;
        *ret = (uint32_t) v;
        *p = s + n;
        return true;
}

static bool skip(const char **p, const char *literal) {
        size_t n = strlen(literal);

        if (strncmp(*p, literal, n) != 0)
                return false;
        *p += n;
        return true;
}

/* Unpadded standard base64 from s up to end, into buf (1..max bytes). */
static bool parse_b64(const char *s, const char *end, uint8_t *buf, size_t min, size_t max, size_t *ret_len) {
        const char *stop = NULL;
        size_t len = 0;

        if (sodium_base642bin(buf, max, s, (size_t) (end - s), NULL, &len, &stop,
                              sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 || stop != end)
                return false;
        if (len < min)
                return false;
        *ret_len = len;
        return true;
}

typedef struct Argon2idString {
        uint32_t m_cost_kib, t_cost;
        uint8_t salt[PARAM_MAX], tag[PARAM_MAX];
        size_t salt_len, tag_len;
} Argon2idString;

static bool parse_argon2id(const char *hash, Argon2idString *ret) {
        const char *p = hash, *dollar;
        uint32_t lanes;

        if (!skip(&p, ARGON2ID_PREFIX "v=19$m=") || !parse_u32(&p, &ret->m_cost_kib) ||
            !skip(&p, ",t=") || !parse_u32(&p, &ret->t_cost) ||
            !skip(&p, ",p=") || !parse_u32(&p, &lanes) || !skip(&p, "$"))
                return false;
        /* libsodium's strings have one lane; so does every hash we make. m in KiB fits 32 bits,
         * as libsodium's maximum (4 TiB) does. */
        if (lanes != 1 || ret->t_cost < crypto_pwhash_argon2id_OPSLIMIT_MIN ||
            ret->m_cost_kib < crypto_pwhash_argon2id_MEMLIMIT_MIN / 1024)
                return false;
        dollar = strchr(p, '$');
        if (!dollar || !parse_b64(p, dollar, ret->salt, SALT_MIN, sizeof ret->salt, &ret->salt_len))
                return false;
        p = dollar + 1;
        return parse_b64(p, p + strlen(p), ret->tag, TAG_MIN, sizeof ret->tag, &ret->tag_len);
}

int password_hash(const char *password, const PasswordCost *cost, char ret[static PASSWORD_HASH_MAX]) {
        uint8_t salt[SALT_BYTES], tag[TAG_BYTES];
        char salt64[sodium_base64_ENCODED_LEN(SALT_BYTES, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
        char tag64[sodium_base64_ENCODED_LEN(TAG_BYTES, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)];
        char out[PASSWORD_HASH_MAX];
        int r, n;

        if (!password || !cost_is_valid(cost))
                return -EINVAL;

        randombytes_buf(salt, sizeof salt);
        r = argon2id_tag(password, salt, sizeof salt, (uint32_t) cost->opslimit, (uint32_t) (cost->memlimit / 1024U),
                         tag, sizeof tag);
        if (r < 0)
                return r;
        (void) sodium_bin2base64(salt64, sizeof salt64, salt, sizeof salt, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
        (void) sodium_bin2base64(tag64, sizeof tag64, tag, sizeof tag, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
        n = snprintf(out, sizeof out, ARGON2ID_PREFIX "v=19$m=%u,t=%u,p=1$%s$%s",
                     (unsigned) (cost->memlimit / 1024U), (unsigned) cost->opslimit, salt64, tag64);
        sodium_memzero(tag, sizeof tag);
        sodium_memzero(tag64, sizeof tag64);
        if (n < 0 || (size_t) n >= sizeof out) {
                sodium_memzero(out, sizeof out);
                return -EINVAL;
        }
        memcpy(ret, out, sizeof out);
        sodium_memzero(out, sizeof out);
        return 0;
}

int password_verify(const char *hash, const char *password) {
        Argon2idString h;
        uint8_t tag[PARAM_MAX];
        int r;

        if (!hash_is_argon2id(hash) || !password || !parse_argon2id(hash, &h))
                return -EINVAL;

        r = argon2id_tag(password, h.salt, h.salt_len, h.t_cost, h.m_cost_kib, tag, h.tag_len);
        if (r >= 0)
                r = sodium_memcmp(tag, h.tag, h.tag_len) == 0 ? 0 : -EACCES;
        sodium_memzero(tag, sizeof tag);
        sodium_memzero(&h, sizeof h);
        return r;
}

int password_calibrate(const PasswordCost *cost, PasswordCalibration *ret) {
        PasswordCalibration c = { .usec = { UINT64_MAX, UINT64_MAX } };
        uint8_t salt[SALT_BYTES], tag[TAG_BYTES];
        int r;

        if (!cost_is_valid(cost))
                return -EINVAL;
        /* What is hashed does not matter; a machine's speed swings between moments, so the two
         * take turns, and the fastest of each counts. The first hash faults the region in. */
        randombytes_buf(salt, sizeof salt);
        for (unsigned i = 0; i <= PASSWORD_CALIBRATE_ROUNDS * _PASSWORD_ENGINE_MAX; i++) {
                PasswordEngine e = i == 0 ? PASSWORD_ENGINE_WARM : (PasswordEngine) ((i - 1) % _PASSWORD_ENGINE_MAX);
                uint64_t start = now_monotonic_usec(), took;

                r = argon2id_tag_by(e, "calibration", salt, sizeof salt, (uint32_t) cost->opslimit,
                                    (uint32_t) (cost->memlimit / 1024U), tag, sizeof tag);
                if (r < 0) {
                        password_release_memory();
                        return r;
                }
                took = now_monotonic_usec() - start;
                if (i > 0 && took < c.usec[e])
                        c.usec[e] = took;
        }
        password_release_memory();
        c.chosen = c.usec[PASSWORD_ENGINE_SODIUM] * 100 <= c.usec[PASSWORD_ENGINE_WARM] * 95 ?
                PASSWORD_ENGINE_SODIUM : PASSWORD_ENGINE_WARM;
        password_set_engine(c.chosen);
        if (ret)
                *ret = c;
        return 0;
}

/* The dummy hash for unknown accounts: made once per cost, on first use (the first call thus
 * costs one more hash; later ones cost exactly one verification, like a real account). */
static pthread_mutex_t dummy_mutex = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[PASSWORD_HASH_MAX];
static PasswordCost dummy_cost;
static bool dummy_valid;

static int dummy_hash_get(const PasswordCost *cost, char ret[static PASSWORD_HASH_MAX]) {
        int r = 0;

        if (!cost_is_valid(cost))
                return -EINVAL;

        (void) pthread_mutex_lock(&dummy_mutex);
        if (!dummy_valid || dummy_cost.opslimit != cost->opslimit || dummy_cost.memlimit != cost->memlimit) {
                uint8_t seed[16];
                char password[2 * sizeof seed + 1];

                /* A password nobody knows; it does not matter anyway, the result is ignored. */
                randombytes_buf(seed, sizeof seed);
                (void) sodium_bin2hex(password, sizeof password, seed, sizeof seed);
                r = password_hash(password, cost, dummy_hash);
                sodium_memzero(seed, sizeof seed);
                sodium_memzero(password, sizeof password);
                if (r >= 0) {
                        dummy_cost = *cost;
                        dummy_valid = true;
                } else
                        dummy_valid = false;
        }
        if (r >= 0)
                memcpy(ret, dummy_hash, PASSWORD_HASH_MAX);
        (void) pthread_mutex_unlock(&dummy_mutex);

        return r;
}

int password_verify_dummy(const char *password, const PasswordCost *cost) {
        char hash[PASSWORD_HASH_MAX];
        int r;

        r = dummy_hash_get(cost, hash);
        if (r < 0)
                return r;

        r = password_verify(hash, password ?: "");
        if (r == -ENOMEM)
                return r;
        return -EACCES;
}

bool password_needs_rehash(const char *hash, const PasswordCost *cost) {
        if (!hash_is_argon2id(hash) || !cost_is_valid(cost))
                return true;
        /* 1: other parameters, -1: unparseable; either way hash it anew on the next good login. */
        return crypto_pwhash_str_needs_rehash(hash, cost->opslimit, (size_t) cost->memlimit) != 0;
}

/* Without a Unicode database we cannot tell letters from other characters outside ASCII, so:
 *  - a "letter" is A-Z, a-z, or any code point >= U+0080 (which is generous to scripts without
 *    case and to accented letters, and counts e.g. "€" as a letter too);
 *  - a "digit or symbol" is any printable ASCII character that is not a letter: 0-9, space and
 *    the ASCII punctuation !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~.
 * Control characters are allowed and count as neither. Length is counted in code points. */
static bool is_letter(uint32_t c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c >= 0x80;
}

static bool is_digit_or_symbol(uint32_t c) {
        return c >= 0x20 && c <= 0x7E && !is_letter(c);
}

int password_check_policy(const PasswordPolicy *policy, const char *password, const char **ret_message) {
        const unsigned char *p = (const unsigned char *) password;
        bool letter = false, digit_or_symbol = false;
        const char *message = NULL;
        size_t length = 0;

        if (!policy || !password)
                return -EINVAL;

        while (*p) {
                uint32_t c;
                size_t n;

                n = utf8_decode(p, &c);
                if (n == 0) {
                        message = "password is not valid UTF-8";
                        goto fail;
                }
                p += n;
                length++;
                letter = letter || is_letter(c);
                digit_or_symbol = digit_or_symbol || is_digit_or_symbol(c);
        }

        if (length < policy->min_length)
                message = "password is too short";
        else if (length > policy->max_length)
                message = "password is too long";
        else if (policy->require_letter && !letter)
                message = "password needs a letter";
        else if (policy->require_digit_or_symbol && !digit_or_symbol)
                message = "password needs a digit or a symbol";
        else {
                if (ret_message)
                        *ret_message = NULL;
                return 0;
        }

fail:
        if (ret_message)
                *ret_message = message;
        return -EINVAL;
}
