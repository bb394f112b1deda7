/* http.h: the worker's HTTP endpoint (libmicrohttpd, its own thread):
 *
 *   GET /metrics  200, Prometheus text format 0.0.4 (metrics_render)
 *   GET /livez    200 "ok" while the worker loop's heartbeat is fresh, else 503
 *   GET /readyz   200 "ready" while connected to Kafka and Redis with an
 *                 assignment known (metrics_is_ready), else 503 and the reason
 *   anything else 404; methods other than GET and HEAD 405.
 *
 * The server only reads the `metrics` handle it is given; the worker keeps
 * writing to it. Config: metrics.bind, metrics.port (0 = no server: the
 * worker then does not call http_server_start). The default address is
 * loopback: the counters and the health endpoints are for this machine
 * unless metrics.bind says otherwise (deploy/ sets 0.0.0.0 for its
 * scrapers and probes). */
#ifndef UL_HTTP_H
#define UL_HTTP_H

#include <stddef.h>

#include "log.h"
#include "metrics.h"

typedef struct http_server http_server;

typedef struct http_opts {
    const char *bind;      /* numeric address or host name; NULL or "" = 127.0.0.1 */
    int port;              /* 0 = an ephemeral port (see http_server_port) */
    double live_timeout_s; /* /livez fails when the heartbeat is older; <= 0 = 30 */
} http_opts;

/* Listen and serve from an internal thread. `m` and `lg` (may be NULL) are
 * borrowed until http_server_stop. NULL with errstr when the address cannot
 * be resolved or bound ("metrics.bind 10.0.0.9:9464: cannot bind: ..."). */
http_server *http_server_start(metrics *m, ul_log *lg, const http_opts *opts, char *errstr,
                               size_t errstr_size);

/* The port actually bound (useful with port 0). */
int http_server_port(const http_server *srv);

/* Stop accepting, finish requests in flight, join the thread, free. NULL is
 * a no-op. */
void http_server_stop(http_server *srv);

#endif
