/* test_http.c: the HTTP endpoint on a free loopback port, spoken to with a
 * plain socket client: /metrics, /livez, /readyz (toggled through the
 * metrics handle), 404, 405, HEAD, bind errors, a clean stop, and the
 * default address (loopback only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"
#include "metrics.h"
#include "ul_err.h"

typedef struct http_reply {
    int status;
    char head[2048];
    char body[65536];
} http_reply;

/* One request over HTTP/1.0 (the server closes after replying). */
static void request(int port, const char *method, const char *path, http_reply *r) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    static char buf[sizeof(r->head) + sizeof(r->body)];
    size_t got = 0;
    ssize_t k;
    while ((k = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)k;
    close(fd);
    buf[got] = '\0';
    memset(r, 0, sizeof(*r));
    assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1);
    char *sep = strstr(buf, "\r\n\r\n");
    assert_non_null(sep);
    size_t head_len = (size_t)(sep - buf);
    assert_true(head_len < sizeof(r->head));
    memcpy(r->head, buf, head_len);
    snprintf(r->body, sizeof(r->body), "%s", sep + 4);
}

static double fake_clock(void *opaque) {
    return *(double *)opaque;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_endpoints(void **state) {
    (void)state;
    int fds_before = count_fds();
    metrics *m = metrics_new();
    double now = 10;
    metrics_set_clock(m, fake_clock, &now);
    char err[UL_ERRSTR_SIZE];
    http_opts opts = {"127.0.0.1", 0, 5};
    http_server *srv = http_server_start(m, NULL, &opts, err, sizeof(err));
    assert_non_null(srv);
    int port = http_server_port(srv);
    assert_true(port > 0 && port < 65536);

    http_reply r;
    metrics_add(m, METRICS_RATINGS_APPLIED, 7);
    metrics_inc_dead_letter(m, "forget-requests", "invalid");
    request(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body, "\nunlearnd_ratings_applied_total 7\n"));
    assert_non_null(strstr(
        r.body, "\nunlearnd_dead_letter_total{topic=\"forget-requests\",reason=\"invalid\"} 1\n"));
    assert_non_null(strstr(r.body, "# TYPE unlearnd_unlearning_cycle_seconds histogram\n"));

    request(port, "GET", "/livez", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    now = 16; /* heartbeat 6 s old, timeout 5 s */
    request(port, "GET", "/livez", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "not live"));
    metrics_heartbeat(m);
    request(port, "GET", "/livez", &r);
    assert_int_equal(r.status, 200);

    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "Kafka"));
    metrics_set_kafka_connected(m, 1);
    metrics_set_redis_connected(m, 1);
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "assignment"));
    metrics_set_assigned_partitions(m, 0);
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    metrics_set_assigned_partitions(m, -1);
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    metrics_set_assigned_partitions(m, 4);
    metrics_set_redis_connected(m, 0);
    request(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "Redis"));
    metrics_set_redis_connected(m, 1);
    request(port, "GET", "/metrics", &r);
    assert_non_null(strstr(r.body, "\nunlearnd_ready 1\n"));
    assert_non_null(strstr(r.body, "\nunlearnd_assigned_partitions 4\n"));

    request(port, "GET", "/nope", &r);
    assert_int_equal(r.status, 404);
    request(port, "GET", "/metricsx", &r);
    assert_int_equal(r.status, 404);
    request(port, "POST", "/metrics", &r);
    assert_int_equal(r.status, 405);
    request(port, "HEAD", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");

    /* The port is taken while we serve... */
    opts.port = port;
    assert_null(http_server_start(m, NULL, &opts, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot listen"));

    /* ...and free again after a clean stop, with no descriptor left open. */
    http_server_stop(srv);
    assert_int_equal(count_fds(), fds_before);
    srv = http_server_start(m, NULL, &opts, err, sizeof(err));
    assert_non_null(srv);
    assert_int_equal(http_server_port(srv), port);
    request(port, "GET", "/livez", &r);
    assert_int_equal(r.status, 200);
    http_server_stop(srv);
    http_server_stop(NULL);
    metrics_destroy(m);
}

static void test_bad_options(void **state) {
    (void)state;
    metrics *m = metrics_new();
    char err[UL_ERRSTR_SIZE];
    http_opts opts = {"192.0.2.1", 0, 0}; /* TEST-NET-1: not an address of this host */
    assert_null(http_server_start(m, NULL, &opts, err, sizeof(err)));
    assert_non_null(strstr(err, "metrics.bind 192.0.2.1"));
    opts.bind = "127.0.0.1";
    opts.port = 70000;
    assert_null(http_server_start(m, NULL, &opts, err, sizeof(err)));
    assert_non_null(strstr(err, "outside 0..65535"));
    assert_null(http_server_start(NULL, NULL, NULL, err, sizeof(err)));
    metrics_destroy(m);
}

/* The local address of the listening TCP socket on `port` (from
 * /proc/net/tcp, as the kernel's hex), or "" when there is none. */
static void listen_address(int port, char *addr, size_t size) {
    char line[512], local[64], st[8];
    unsigned p;
    addr[0] = '\0';
    FILE *f = fopen("/proc/net/tcp", "r");
    if (f == NULL)
        skip();
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, " %*d: %63[0-9A-F]:%x %*s %7s", local, &p, st) == 3 && (int)p == port &&
            strcmp(st, "0A") == 0)
            snprintf(addr, size, "%s", local);
    fclose(f);
}

/* With no metrics.bind the server listens on loopback only (it was 0.0.0.0). */
static void test_default_bind_is_loopback(void **state) {
    (void)state;
    metrics *m = metrics_new();
    char err[UL_ERRSTR_SIZE], addr[64];
    http_opts opts = {NULL, 0, 0};
    http_server *srv = http_server_start(m, NULL, &opts, err, sizeof(err));
    assert_non_null(srv);
    listen_address(http_server_port(srv), addr, sizeof(addr));
    assert_string_equal(addr, "0100007F"); /* 127.0.0.1, little-endian hex */
    http_reply r;
    request(http_server_port(srv), "GET", "/livez", &r);
    assert_int_equal(r.status, 200);
    http_server_stop(srv);
    /* an explicit 0.0.0.0 is every interface */
    opts.bind = "0.0.0.0";
    srv = http_server_start(m, NULL, &opts, err, sizeof(err));
    assert_non_null(srv);
    listen_address(http_server_port(srv), addr, sizeof(addr));
    assert_string_equal(addr, "00000000");
    http_server_stop(srv);
    metrics_destroy(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_default_bind_is_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
