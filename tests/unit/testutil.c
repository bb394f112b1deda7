/* testutil.c: temporary files, shared-data lookup and hand-built random
 * models for the unit tests. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"

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

mf_model *tu_model_random(int32_t nu, int32_t ni, int k, uint64_t seed, double factor_sd,
                          double user_bias_sd, double item_bias_sd) {
    mf_model *m = calloc(1, sizeof(*m));
    m->n_users = nu;
    m->n_items = ni;
    m->k = k;
    m->global_mean = 3.5f;
    m->rating_min = 1;
    m->rating_max = 5;
    m->user_bias = calloc((size_t)nu, sizeof(float));
    m->item_bias = calloc((size_t)ni, sizeof(float));
    m->P = calloc((size_t)nu * (size_t)k, sizeof(float));
    m->Q = calloc((size_t)ni * (size_t)k, sizeof(float));
    rng r;
    rng_seed(&r, seed);
    for (size_t j = 0; j < (size_t)nu * (size_t)k; j++)
        m->P[j] = (float)(factor_sd * rng_normal(&r));
    for (size_t j = 0; j < (size_t)ni * (size_t)k; j++)
        m->Q[j] = (float)(factor_sd * rng_normal(&r));
    if (user_bias_sd != 0.0)
        for (int32_t u = 0; u < nu; u++)
            m->user_bias[u] = (float)(user_bias_sd * rng_normal(&r));
    for (int32_t i = 0; i < ni; i++)
        m->item_bias[i] = (float)(item_bias_sd * rng_normal(&r));
    return m;
}
