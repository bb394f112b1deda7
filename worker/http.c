/* http.c: /metrics, /livez and /readyz over libmicrohttpd (see http.h).
 *
 * DESIGN: we create, bind and listen on the socket ourselves and hand it to
 * MHD (MHD_OPTION_LISTEN_SOCKET), so a bad metrics.bind or a port in use
 * fails at start with the system's reason, and port 0 yields the port the
 * kernel chose. MHD runs one internal polling thread (MHD_USE_AUTO: epoll or
 * poll, never select, whose FD_SETSIZE a worker with many Kafka sockets
 * could exceed); each request renders into a fresh malloc'd buffer that MHD
 * frees after sending, so nothing is shared with the worker but the
 * thread-safe `metrics` handle. MHD closes the listening socket in
 * MHD_stop_daemon. */
#include "http.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <microhttpd.h>

#include "ul_err.h"

#define DEFAULT_LIVE_TIMEOUT_S 30.0

struct http_server {
    struct MHD_Daemon *daemon;
    metrics *m;
    ul_log *lg;
    double live_timeout_s;
    int port;
};

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_warn((ul_log *)cls, "http", "%s", line);
}

/* Queue a response whose body is `body` (malloc'd: MHD frees it). */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, char *body,
                             size_t len, const char *content_type) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned int status,
                                  const char *text) {
    size_t len = strlen(text);
    char *body = malloc(len + 2);
    if (body == NULL)
        return MHD_NO;
    memcpy(body, text, len);
    body[len] = '\n';
    body[len + 1] = '\0';
    return reply(conn, status, body, len + 1, "text/plain; charset=utf-8");
}

static enum MHD_Result serve_metrics(http_server *srv, struct MHD_Connection *conn) {
    size_t len = 0;
    char *body = metrics_render(srv->m, srv->live_timeout_s, &len);
    if (body == NULL)
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    return reply(conn, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result serve_readyz(http_server *srv, struct MHD_Connection *conn) {
    char why[256], text[300];
    if (metrics_is_ready(srv->m, why, sizeof(why)))
        return reply_text(conn, MHD_HTTP_OK, "ready");
    snprintf(text, sizeof(text), "not ready: %s", why);
    return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result serve_livez(http_server *srv, struct MHD_Connection *conn) {
    char text[160];
    if (metrics_is_live(srv->m, srv->live_timeout_s))
        return reply_text(conn, MHD_HTTP_OK, "ok");
    snprintf(text, sizeof(text), "not live: the worker loop has not reported for over %g s",
             srv->live_timeout_s);
    return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, text);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls) {
    http_server *srv = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    if (*upload_data_size != 0) { /* a body we do not want: drop it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed");
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(srv, conn);
    if (strcmp(url, "/livez") == 0)
        return serve_livez(srv, conn);
    if (strcmp(url, "/readyz") == 0)
        return serve_readyz(srv, conn);
    return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found (try /metrics, /livez, /readyz)");
}

/* A listening socket on bind:port, or -1 with errstr. */
static int listen_on(const char *bind_addr, int port, char *errstr, size_t errstr_size) {
    struct addrinfo hints, *res = NULL;
    char port_text[16];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port_text, sizeof(port_text), "%d", port);
    int gai = getaddrinfo(bind_addr, port_text, &hints, &res);
    if (gai != 0) {
        ul_set_err(errstr, errstr_size, "metrics.bind %s: cannot resolve: %s", bind_addr,
                   gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        ul_set_err(errstr, errstr_size, "metrics.bind %s, metrics.port %d: cannot listen: %s",
                   bind_addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    char serv[16];
    if (getnameinfo((struct sockaddr *)&ss, len, NULL, 0, serv, sizeof(serv), NI_NUMERICSERV))
        return -1;
    return atoi(serv);
}

http_server *http_server_start(metrics *m, ul_log *lg, const http_opts *opts, char *errstr,
                               size_t errstr_size) {
    const char *bind_addr = opts && opts->bind && *opts->bind ? opts->bind : "127.0.0.1";
    int port = opts ? opts->port : 0;
    if (m == NULL) {
        ul_set_err(errstr, errstr_size, "http_server_start: no metrics handle");
        return NULL;
    }
    if (port < 0 || port > 65535) {
        ul_set_err(errstr, errstr_size, "metrics.port %d: outside 0..65535", port);
        return NULL;
    }
    http_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        ul_set_err(errstr, errstr_size, "out of memory");
        return NULL;
    }
    srv->m = m;
    srv->lg = lg;
    srv->live_timeout_s =
        opts && opts->live_timeout_s > 0 ? opts->live_timeout_s : DEFAULT_LIVE_TIMEOUT_S;
    int fd = listen_on(bind_addr, port, errstr, errstr_size);
    if (fd < 0)
        goto fail;
    srv->port = bound_port(fd);
    srv->daemon = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                                   handle, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, lg,
                                   MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 64u,
                                   MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (srv->daemon == NULL) {
        close(fd);
        ul_set_err(errstr, errstr_size,
                   "metrics.bind %s, metrics.port %d: libmicrohttpd failed "
                   "to start its thread",
                   bind_addr, port);
        goto fail;
    }
    log_info(lg, "http", "serving /metrics, /livez, /readyz on %s:%d", bind_addr, srv->port);
    return srv;
fail:
    free(srv);
    return NULL;
}

int http_server_port(const http_server *srv) {
    return srv ? srv->port : -1;
}

void http_server_stop(http_server *srv) {
    if (srv == NULL)
        return;
    if (srv->daemon)
        MHD_stop_daemon(srv->daemon);
    free(srv);
}
