/* testutil.h: helpers shared by the cmocka test programs: temporary files
 * and the optional shared MovieLens data (tests that need it skip). */
#ifndef UL_TESTUTIL_H
#define UL_TESTUTIL_H

#include <stddef.h>

/* A fresh temporary directory for this process (created once, removed with
 * its files at exit). */
const char *tu_tmpdir(void);

/* Write `content` to <tmpdir>/<name>; returns the path (static buffer per
 * call slot: copy it if you need two at once) or aborts the test. */
const char *tu_write_file(const char *name, const char *content);

/* Path of a file under the shared MovieLens data (env UNLEARND_SHARED_DATA,
 * default ../shared/data), or NULL when it is absent: the caller skips. */
const char *tu_shared_data(const char *relpath);

#endif
