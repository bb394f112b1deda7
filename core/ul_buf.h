/* ul_buf.h: growable memory, the one implementation every module uses: a
 * byte buffer that remembers a failed allocation (append freely, check
 * once at the end), the doubling growth of a typed array, and an
 * integer's decimal text (the worker formats ids and counts per row). */
#ifndef UL_BUF_H
#define UL_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Bytes data[0 .. len). Zero-initialise it ({0}); free with ul_buf_free. */
typedef struct ul_buf {
    unsigned char *data;
    size_t len, cap;
    int oom; /* an append failed: the content is incomplete */
} ul_buf;

/* Append n bytes. After a failed allocation every later append is a no-op
 * and `oom` stays set. */
void ul_buf_put(ul_buf *b, const void *src, size_t n);
/* Free the bytes and zero the buffer. NULL is a no-op. */
void ul_buf_free(ul_buf *b);
/* Hand the bytes over (the caller frees them) and zero the buffer. */
unsigned char *ul_buf_take(ul_buf *b, size_t *len);

/* Room for at least `need` elements of `size` bytes in `arr` (holding *cap
 * now; NULL when 0): the capacity doubles, from 16. Returns the array,
 * possibly moved, with *cap updated, or NULL when out of memory (then
 * `arr` and *cap are unchanged). */
void *ul_grow(void *arr, size_t *cap, size_t need, size_t size);

/* v in decimal into buf (NUL-terminated), as "%" PRId64 / PRIu64 print it,
 * without printf's cost. Returns the length, or -1 when size is too small
 * (buf then holds ""). 21 bytes hold any value. */
int ul_fmt_i64(char *buf, size_t size, int64_t v);
int ul_fmt_u64(char *buf, size_t size, uint64_t v);

#endif
