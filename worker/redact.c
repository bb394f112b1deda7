/* redact.c: secret masking for text that leaves the process (see redact.h).
 *
 * DESIGN: one byte per input byte says "mask it"; the given secrets and the
 * endpoint credentials each set their ranges, then one pass copies the
 * unmasked bytes and writes REDACT_MASK once per masked run. Marking first
 * keeps the rules independent (a secret inside a URL's userinfo is masked
 * once, not twice) and makes truncation safe: the output is cut only after
 * the decision was taken on the whole input. */
#include "redact.h"

#include <stdlib.h>
#include <string.h>

#define STACK_MARKS 1024
#define OOM_NOTICE "(text withheld: out of memory while masking secrets)"

/* Characters that end a token when scanning back from '@'. '@' and ':' are
 * not among them: "user:p@ss@host" is one token whose password is "p@ss". */
static int is_delim(char c) {
    return c == '\0' || strchr(" \t\r\n,;\"'`()[]<>{}=/\\|", c) != NULL;
}

/* Mark the credential part of every `user:password@` and `scheme://token@`;
 * returns how many were found. `mark` may be NULL (count only). */
static size_t mark_userinfo(const char *s, size_t n, unsigned char *mark) {
    size_t found = 0;
    for (size_t at = 0; at < n; at++) {
        if (s[at] != '@')
            continue;
        size_t start = at;
        while (start > 0 && !is_delim(s[start - 1]))
            start--;
        if (start == at)
            continue;
        const char *colon = memchr(s + start, ':', at - start);
        int url = start >= 3 && s[start - 1] == '/' && s[start - 2] == '/' && s[start - 3] == ':';
        size_t from = colon ? (size_t)(colon - s) + 1 : start;
        if ((colon == NULL && !url) || from >= at)
            continue;
        if (mark)
            memset(mark + from, 1, at - from);
        found++;
    }
    return found;
}

static void mark_secrets(const char *s, const char *const *secrets, size_t n_secrets,
                         unsigned char *mark) {
    for (size_t k = 0; secrets && k < n_secrets; k++) {
        const char *sec = secrets[k];
        size_t len = sec ? strlen(sec) : 0;
        if (len == 0)
            continue;
        for (const char *p = strstr(s, sec); p; p = strstr(p + 1, sec))
            memset(mark + (p - s), 1, len);
    }
}

typedef struct sink {
    char *out;
    size_t size, len; /* len counts every byte, also those that did not fit */
} sink;

static void put(sink *k, const char *text, size_t len) {
    if (k->size > 0 && k->len < k->size - 1) {
        size_t room = k->size - 1 - k->len;
        memcpy(k->out + k->len, text, len < room ? len : room);
    }
    k->len += len;
}

static size_t finish(sink *k) {
    if (k->size > 0)
        k->out[k->len < k->size - 1 ? k->len : k->size - 1] = '\0';
    return k->len;
}

size_t redact_text(const char *in, const char *const *secrets, size_t n_secrets, char *out,
                   size_t size) {
    sink k = {out, size, 0};
    size_t n = in ? strlen(in) : 0;
    unsigned char stack_marks[STACK_MARKS];
    unsigned char *mark = n <= sizeof(stack_marks) ? stack_marks : malloc(n);
    if (mark == NULL) {
        put(&k, OOM_NOTICE, strlen(OOM_NOTICE));
        return finish(&k);
    }
    memset(mark, 0, n);
    mark_secrets(in ? in : "", secrets, n_secrets, mark);
    mark_userinfo(in, n, mark);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && mark[j] == mark[i])
            j++;
        if (mark[i])
            put(&k, REDACT_MASK, strlen(REDACT_MASK));
        else
            put(&k, in + i, j - i);
        i = j;
    }
    if (mark != stack_marks)
        free(mark);
    return finish(&k);
}

char *redact_dup(const char *in, const char *const *secrets, size_t n_secrets) {
    char probe[1];
    size_t len = redact_text(in, secrets, n_secrets, probe, sizeof(probe));
    char *out = malloc(len + 1);
    if (out != NULL)
        redact_text(in, secrets, n_secrets, out, len + 1);
    return out;
}

int redact_has_credentials(const char *text) {
    return text != NULL && mark_userinfo(text, strlen(text), NULL) > 0;
}
