/* testutil.c: temporary files and shared-data lookup for the unit tests. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(tmpdir);
}

const char *tu_tmpdir(void) {
    if (tmpdir[0] != '\0')
        return tmpdir;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/unlearnd-test-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        abort();
    }
    atexit(remove_tmpdir);
    return tmpdir;
}

const char *tu_write_file(const char *name, const char *content) {
    static char paths[8][512];
    static int slot;
    char *path = paths[slot++ % 8];
    snprintf(path, 512, "%s/%s", tu_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        abort();
    }
    fwrite(content, 1, strlen(content), f);
    fclose(f);
    return path;
}

const char *tu_shared_data(const char *relpath) {
    static char path[1024];
    const char *base = getenv("UNLEARND_SHARED_DATA");
    snprintf(path, sizeof(path), "%s/%s", base ? base : "../shared/data", relpath);
    return access(path, R_OK) == 0 ? path : NULL;
}
