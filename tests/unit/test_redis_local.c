/* test_redis_local.c: the throwaway redis-server keeps other local users
 * out: it answers NOAUTH to a client without its random password (reads,
 * writes and CONFIG alike), the password is in no process's command line or
 * readable environment, not in the arguments or environment the server was
 * started with, and in no file of its 0700 directory, another uid
 * can neither enter that directory nor use the server, and the store and the
 * demo's path (a given password) work with it. Skips without redis-server. */
#define _GNU_SOURCE /* setresuid */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_local.h"
#include "store.h"
#include "testutil.h"
#include "ul_err.h"

static redis_local *start_or_skip(void) {
    char err[UL_ERRSTR_SIZE];
    if (!redis_local_available(NULL))
        skip();
    redis_local *rl = redis_local_start(NULL, 10000, err, sizeof(err));
    if (rl == NULL)
        fail_msg("redis_local_start: %s", err);
    return rl;
}

static redisContext *connect_to(const redis_local *rl) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_local_port(rl), tv);
    assert_true(c != NULL && c->err == 0);
    return c;
}

/* The reply's type and text, e.g. "error NOAUTH Authentication required." */
static void command(redisContext *c, char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    const char *kind = r->type == REDIS_REPLY_ERROR    ? "error"
                       : r->type == REDIS_REPLY_STATUS ? "status"
                                                       : "other";
    snprintf(out, size, "%s %s", kind, r->str ? r->str : "");
    freeReplyObject(r);
}

static int file_contains(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++) /* cmdline and environ are NUL-separated */
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

/* pid of our child redis-server, or -1. */
static pid_t server_pid(void) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    pid_t found = -1;
    char path[300], comm[64];
    while (d && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        int pid, ppid;
        if (f && fscanf(f, "%d (%63[^)]) %*c %d", &pid, comm, &ppid) == 3 && ppid == getpid() &&
            strncmp(comm, "redis-server", 12) == 0)
            found = pid;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return found;
}

static void test_password_required(void **state) {
    (void)state;
    redis_local *rl = start_or_skip();
    const char *pw = redis_local_password(rl);
    assert_int_equal(strlen(pw), 64);
    for (const char *p = pw; *p; p++)
        assert_true(isxdigit((unsigned char)*p));
    char reply[256];
    redisContext *c = connect_to(rl);
    const char *denied[] = {"PING",   "GET ul:model", "SET x 1",
                            "KEYS *", "FLUSHALL",     "CONFIG GET requirepass"};
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        command(c, reply, sizeof(reply), denied[i]);
        if (strncmp(reply, "error NOAUTH", 12) != 0)
            fail_msg("%s without AUTH: %s", denied[i], reply);
    }
    command(c, reply, sizeof(reply), "AUTH %s", "not-the-password");
    assert_non_null(strstr(reply, "error WRONGPASS"));
    command(c, reply, sizeof(reply), "AUTH %s", pw);
    assert_string_equal(reply, "status OK");
    command(c, reply, sizeof(reply), "PING");
    assert_string_equal(reply, "status PONG");
    redisFree(c);
    /* a second server gets another password */
    redis_local *rl2 = start_or_skip();
    assert_string_not_equal(redis_local_password(rl2), pw);
    redis_local_stop(rl2);
    redis_local_stop(rl);
}

static void test_password_not_exposed(void **state) {
    (void)state;
    redis_local *rl = start_or_skip();
    const char *pw = redis_local_password(rl);
    char path[300];
    /* no command line (what ps shows), no environment we can read */
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    int scanned = 0;
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        if (file_contains(path, pw))
            fail_msg("the password is in %s", path);
        snprintf(path, sizeof(path), "/proc/%s/environ", e->d_name);
        if (file_contains(path, pw))
            fail_msg("the password is in %s", path);
        scanned++;
    }
    closedir(d);
    assert_true(scanned >= 2);
    /* the server's directory: 0700, no file holding the password */
    pid_t pid = server_pid();
    assert_true(pid > 0);
    char dir[300];
    snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
    ssize_t n = readlink(path, dir, sizeof(dir) - 1);
    assert_true(n > 0);
    dir[n] = '\0';
    assert_non_null(strstr(dir, "unlearnd-redis-"));
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (snprintf(path, sizeof(path), "%.200s/%.90s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        if (e->d_name[0] != '.' && file_contains(path, pw))
            fail_msg("the password is in %s", path);
    }
    closedir(d);
    /* another uid (when we may switch): no way into the directory, NOAUTH */
    if (geteuid() == 0) {
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0)
                _exit(3);
            if (opendir(dir) != NULL)
                _exit(4);
            struct timeval tv = {2, 0};
            redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_local_port(rl), tv);
            redisReply *r = c && !c->err ? redisCommand(c, "GET ul:model") : NULL;
            int noauth = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOAUTH", 6) == 0;
            _exit(noauth ? 0 : 5);
        }
        int status = 0;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) != 3) /* 3: no permission to switch here */
            assert_int_equal(WEXITSTATUS(status), 0);
    }
    redis_local_stop(rl);
}

/* redis-server replaces its argv with a title once started, so /proc shows
 * only the end state: a wrapper records the arguments and environment the
 * server was really given, before exec'ing it. */
static void test_password_not_in_argv_or_environment(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE], script[2048], argv_path[600], env_path[600];
    if (!redis_local_available(NULL))
        skip();
    snprintf(argv_path, sizeof(argv_path), "%s/server-argv.txt", tu_tmpdir());
    snprintf(env_path, sizeof(env_path), "%s/server-env.txt", tu_tmpdir());
    snprintf(script, sizeof(script),
             "#!/bin/sh\nprintf '%%s\\n' \"$@\" >'%s'\nenv >'%s'\nexec redis-server \"$@\"\n",
             argv_path, env_path);
    const char *wrapper = tu_write_file("redis-wrapper.sh", script);
    assert_int_equal(chmod(wrapper, 0700), 0);
    redis_local *rl = redis_local_start(wrapper, 10000, err, sizeof(err));
    if (rl == NULL)
        fail_msg("redis_local_start(wrapper): %s", err);
    const char *pw = redis_local_password(rl);
    assert_true(file_contains(argv_path, "--port")); /* the wrapper did run */
    if (file_contains(argv_path, pw) || file_contains(argv_path, "requirepass"))
        fail_msg("the server's arguments carry the password");
    if (file_contains(env_path, pw))
        fail_msg("the server's environment carries the password");
    redisContext *c = connect_to(rl);
    char reply[256];
    command(c, reply, sizeof(reply), "PING");
    assert_non_null(strstr(reply, "error NOAUTH"));
    redisFree(c);
    redis_local_stop(rl);
}

static void test_store_and_given_password(void **state) {
    (void)state;
    char err[UL_ERRSTR_SIZE];
    redis_local *rl = start_or_skip();
    store_opts o;
    store_opts_init(&o);
    o.port = redis_local_port(rl);
    store *st = store_connect(&o, err, sizeof(err)); /* no password: commands refused */
    if (st != NULL) {
        assert_int_not_equal(store_ping(st, err, sizeof(err)), UL_OK);
        assert_non_null(strstr(err, "NOAUTH"));
        store_destroy(st);
    }
    o.password = redis_local_password(rl);
    st = store_connect(&o, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_ping(st, err, sizeof(err)), UL_OK);
    store_destroy(st);
    redis_local_stop(rl);
    /* a chosen password (several servers behind one redis.password) */
    rl = redis_local_start_with_password(NULL, "shared-pw.1", 10000, err, sizeof(err));
    assert_non_null(rl);
    assert_string_equal(redis_local_password(rl), "shared-pw.1");
    o.port = redis_local_port(rl);
    o.password = "shared-pw.1";
    st = store_connect(&o, err, sizeof(err));
    assert_non_null(st);
    assert_int_equal(store_ping(st, err, sizeof(err)), UL_OK);
    store_destroy(st);
    redis_local_stop(rl);
    /* one that would not be a single config token is refused, unquoted */
    assert_null(
        redis_local_start_with_password(NULL, "pw\nrename-command", 1000, err, sizeof(err)));
    assert_non_null(strstr(err, "a password is"));
    assert_null(strstr(err, "rename-command"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_required),
        cmocka_unit_test(test_password_not_exposed),
        cmocka_unit_test(test_password_not_in_argv_or_environment),
        cmocka_unit_test(test_store_and_given_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
