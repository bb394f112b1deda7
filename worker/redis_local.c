/* redis_local.c: fork/exec of a private redis-server. The port comes from
 * binding port 0 on 127.0.0.1 and releasing it just before the server
 * starts; if another process takes it in between, the server exits and we
 * retry with a new port (a few times).
 *
 * DESIGN (access): the server listens on loopback TCP, which every local
 * user can reach, so it requires a password: 32 bytes from getrandom(2),
 * hex-encoded. The password reaches redis-server through a pipe on its
 * stdin (`redis-server -` reads its configuration there), never its argv or
 * environment (both readable in /proc by other users, argv also in `ps`),
 * and is never written to a file. A unix socket in a 0700 directory would
 * also keep others out, but the store, the tests and the operators' tools
 * all speak host:port, and a password keeps that one code path. */
#define _GNU_SOURCE /* prctl, PR_SET_PDEATHSIG, pipe2 */
#include "redis_local.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redact.h"
#include "ul_err.h"

#define PASSWORD_BYTES 32
#define PASSWORD_MAX 128

struct redis_local {
    pid_t pid;
    int port;
    char dir[256];
    char password[PASSWORD_MAX + 1];
};

/* 2 * PASSWORD_BYTES hex digits from the kernel's CSPRNG into out. */
static int random_password(char *out, size_t size, char *errstr, size_t errstr_size) {
    unsigned char raw[PASSWORD_BYTES];
    size_t got = 0;
    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ul_set_err(errstr, errstr_size, "cannot draw a password for redis: getrandom: %s",
                       strerror(errno));
            return -1;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw) && 2 * i + 2 < size; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    explicit_bzero(raw, sizeof(raw));
    return 0;
}

/* A given password goes into a config line: no spaces, quotes or newlines. */
static int password_ok(const char *pw) {
    size_t n = strlen(pw);
    if (n == 0 || n > PASSWORD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)pw[i]) && pw[i] != '-' && pw[i] != '_' && pw[i] != '.')
            return 0;
    return 1;
}

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

/* Fork and exec the server with its configuration secret on stdin. */
static pid_t spawn(const char *path, int port, const char *dir, const char *password) {
    char port_s[16], log[300], conf[PASSWORD_MAX + 32];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(log, sizeof(log), "%s/redis.log", dir);
    int len = snprintf(conf, sizeof(conf), "requirepass %s\n", password);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    /* far below the pipe's capacity: written whole before the fork, so the
     * child reads it and then EOF */
    ssize_t put = write(fds[1], conf, (size_t)len);
    explicit_bzero(conf, sizeof(conf));
    close(fds[1]);
    if (put != len) {
        close(fds[0]);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        close(fds[0]);
        return pid;
    }
    /* Own process group: a Ctrl-C meant for the worker must not stop Redis
     * before the worker's final checkpoint. It still dies with its parent. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) /* the parent died before prctl took effect */
        _exit(1);
    /* stdin: the configuration; stdout/stderr (what redis says before it
     * opens its log file) into that file, where log_tail finds it */
    int logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (dup2(fds[0], STDIN_FILENO) < 0 || logfd < 0 || dup2(logfd, STDOUT_FILENO) < 0 ||
        dup2(logfd, STDERR_FILENO) < 0)
        _exit(126);
    execl(path, path, "-", "--port", port_s, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
          "--appendonly", "no", "--daemonize", "no", "--logfile", log, (char *)NULL);
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
        redisReply *r = redisCommand(c, "AUTH %s", rl->password);
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        r = ok ? redisCommand(c, "PING") : NULL;
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* The last line of the server's log (a config error quotes the line, so
 * the password is masked). */
static void log_tail(const char *dir, const char *password, char *out, size_t size) {
    char path[300], line[512], last[512] = "";
    snprintf(path, sizeof(path), "%s/redis.log", dir);
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f))
        snprintf(last, sizeof(last), "%s", line);
    fclose(f);
    last[strcspn(last, "\n")] = '\0';
    redact_text(last, &password, 1, out, size);
}

redis_local *redis_local_start(const char *server, int timeout_ms, char *errstr,
                               size_t errstr_size) {
    return redis_local_start_with_password(server, NULL, timeout_ms, errstr, errstr_size);
}

redis_local *redis_local_start_with_password(const char *server, const char *password,
                                             int timeout_ms, char *errstr, size_t errstr_size) {
    char path[1024];
    if (password && !password_ok(password)) {
        ul_set_err(errstr, errstr_size,
                   "redis_local: a password is 1..%d of [A-Za-z0-9._-] (not shown)", PASSWORD_MAX);
        return NULL;
    }
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
    if (password)
        snprintf(rl->password, sizeof(rl->password), "%s", password);
    else if (random_password(rl->password, sizeof(rl->password), errstr, errstr_size) != 0) {
        free(rl);
        return NULL;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(rl->dir, sizeof(rl->dir), "%s/unlearnd-redis-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(rl->dir) == NULL) {
        ul_set_err(errstr, errstr_size, "cannot create a directory for redis: %s", strerror(errno));
        explicit_bzero(rl->password, sizeof(rl->password));
        free(rl);
        return NULL;
    }
    if (timeout_ms <= 0)
        timeout_ms = 10000;
    char last[512] = "";
    for (int attempt = 0; attempt < 3; attempt++) {
        rl->port = free_port();
        if (rl->port < 0 || (rl->pid = spawn(path, rl->port, rl->dir, rl->password)) < 0) {
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
        log_tail(rl->dir, rl->password, last, sizeof(last));
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

const char *redis_local_password(const redis_local *rl) {
    return rl->password;
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
    explicit_bzero(rl->password, sizeof(rl->password));
    free(rl);
}
