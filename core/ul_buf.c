/* ul_buf.c: growable memory (see ul_buf.h). */
#include "ul_buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *ul_grow(void *arr, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return arr;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2 / size)
            return NULL;
        n *= 2;
    }
    void *p = realloc(arr, n * size);
    if (p == NULL)
        return NULL;
    *cap = n;
    return p;
}

void ul_buf_put(ul_buf *b, const void *src, size_t n) {
    if (b->oom || n == 0)
        return;
    unsigned char *p = ul_grow(b->data, &b->cap, b->len + n, 1);
    if (p == NULL) {
        b->oom = 1;
        return;
    }
    b->data = p;
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

void ul_buf_free(ul_buf *b) {
    if (b == NULL)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

unsigned char *ul_buf_take(ul_buf *b, size_t *len) {
    unsigned char *p = b->data;
    *len = b->len;
    memset(b, 0, sizeof(*b));
    return p;
}

int ul_fmt_u64(char *buf, size_t size, uint64_t v) {
    char rev[20];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    if (size < n + 1) {
        if (size > 0)
            buf[0] = '\0';
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        buf[i] = rev[n - 1 - i];
    buf[n] = '\0';
    return (int)n;
}

int ul_fmt_i64(char *buf, size_t size, int64_t v) {
    if (v >= 0)
        return ul_fmt_u64(buf, size, (uint64_t)v);
    if (size < 2) {
        if (size > 0)
            buf[0] = '\0';
        return -1;
    }
    buf[0] = '-';
    int n = ul_fmt_u64(buf + 1, size - 1, 0 - (uint64_t)v); /* INT64_MIN too */
    if (n < 0)
        buf[0] = '\0';
    return n < 0 ? -1 : n + 1;
}
