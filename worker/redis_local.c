/* redis_local.c: fork/exec of a private redis-server. The port comes from
 * binding port 0 on 127.0.0.1 and releasing it just before the server
 * starts; if another process takes it in between, the server exits and we
 * retry with a new port (a few times). */
#define _GNU_SOURCE /* prctl, PR_SET_PDEATHSIG */
#include "redis_local.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ul_err.h"

struct redis_local {
    pid_t pid;
    int port;
    char dir[256];
};

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int which(const char *prog, char *out, size_t size) {
    if (strchr(prog, '/')) {
        snprintf(out, size, "%s", prog);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        snprintf(out, size, "%.*s/%s", (int)n, path, prog);
        if (n > 0 && access(out, X_OK) == 0)
            return 0;
        path += n + (end ? 1 : 0);
    }
    return -1;
}

int redis_local_available(const char *server) {
    char path[1024];
    return which(server ? server : "redis-server", path, sizeof(path)) == 0;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t spawn(const char *path, int port, const char *dir) {
    char port_s[16], log[300];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Own process group: a Ctrl-C meant for the worker must not stop Redis
     * before the worker's final checkpoint. It still dies with its parent. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) /* the parent died before prctl took effect */
        _exit(1);
    execl(path, path, "--port", port_s, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
          "--appendonly", "no", "--daemonize", "no", "--logfile", log, "--protected-mode", "no",
          (char *)NULL);
    _exit(127);
}

/* 1: answers PING; 0: not yet; -1: the child exited. */
static int probe(redis_local *rl) {
    int status;
    if (waitpid(rl->pid, &status, WNOHANG) == rl->pid) {
        rl->pid = 0;
        return -1;
    }
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", rl->port, tv);
    int ok = 0;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

static void log_tail(const char *dir, char *out, size_t size) {
    char path[300];
    snprintf(path, sizeof(path), "%s/redis.log", dir);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f))
        snprintf(out, size, "%s", line);
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

redis_local *redis_local_start(const char *server, int timeout_ms, char *errstr,
                               size_t errstr_size) {
    char path[1024];
    if (server == NULL)
        server = "redis-server";
    if (which(server, path, sizeof(path)) != 0) {
        ul_set_err(errstr, errstr_size,
                   "%s not found: install the redis-server package or configure redis.host",
                   server);
        return NULL;
    }
    redis_local *rl = calloc(1, sizeof(*rl));
    if (rl == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(rl->dir, sizeof(rl->dir), "%s/unlearnd-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(rl->dir) == NULL) {
        ul_set_err(errstr, errstr_size, "cannot create a directory for redis: %s", strerror(errno));
        free(rl);
        return NULL;
    }
    if (timeout_ms <= 0)
        timeout_ms = 10000;
    char last[512] = "";
    for (int attempt = 0; attempt < 3; attempt++) {
        rl->port = free_port();
        if (rl->port < 0 || (rl->pid = spawn(path, rl->port, rl->dir)) < 0) {
            ul_set_err(errstr, errstr_size, "cannot start %s: %s", path, strerror(errno));
            goto fail;
        }
        for (int waited = 0; waited < timeout_ms; waited += 20) {
            int st = probe(rl);
            if (st == 1)
                return rl;
            if (st < 0)
                break;
            sleep_ms(20);
        }
        log_tail(rl->dir, last, sizeof(last));
        if (rl->pid > 0) { /* still running but silent: give up */
            ul_set_err(errstr, errstr_size, "%s on port %d did not answer PING within %d ms%s%s",
                       path, rl->port, timeout_ms, last[0] ? ": " : "", last);
            goto fail;
        }
    }
    ul_set_err(errstr, errstr_size, "%s exited at start%s%s", path, last[0] ? ": " : "", last);
fail:
    redis_local_stop(rl);
    return NULL;
}

const char *redis_local_host(const redis_local *rl) {
    (void)rl;
    return "127.0.0.1";
}

int redis_local_port(const redis_local *rl) {
    return rl->port;
}

void redis_local_stop(redis_local *rl) {
    if (rl == NULL)
        return;
    if (rl->pid > 0) {
        kill(rl->pid, SIGTERM);
        int status;
        int waited = 0;
        while (waitpid(rl->pid, &status, WNOHANG) == 0) {
            if (waited >= 5000) {
                kill(rl->pid, SIGKILL);
                waitpid(rl->pid, &status, 0);
                break;
            }
            sleep_ms(10);
            waited += 10;
        }
    }
    remove_dir(rl->dir);
    free(rl);
}
