/* redis_local.h: a throwaway redis-server for the embedded default and the
 * tests: started on a free loopback port with its own temporary directory
 * (mode 0700), no persistence, stopped (and its directory removed) by
 * redis_local_stop. The server also dies with the process that started it
 * (Linux PR_SET_PDEATHSIG), so a crashed worker leaves no orphan behind.
 *
 * It requires a password (requirepass): random unless given, passed to the
 * server on its stdin, never on its command line, in its environment or in
 * a file; clients AUTH with redis_local_password(). Another local user can
 * reach the port but gets NOAUTH: they can neither read nor change the
 * state. */
#ifndef UL_REDIS_LOCAL_H
#define UL_REDIS_LOCAL_H

#include <stddef.h>

typedef struct redis_local redis_local;

/* Start `server` (NULL: "redis-server" from PATH) and wait up to
 * timeout_ms until it answers PING. NULL with a message on failure (e.g.
 * "redis-server not found: install the redis-server package"). */
redis_local *redis_local_start(const char *server, int timeout_ms, char *errstr,
                               size_t errstr_size);

/* The same with a chosen password (NULL = random), for several local servers
 * behind one redis.password (the tests' shards). A password is 1..128 of
 * [A-Za-z0-9._-]. */
redis_local *redis_local_start_with_password(const char *server, const char *password,
                                             int timeout_ms, char *errstr, size_t errstr_size);

const char *redis_local_host(const redis_local *rl); /* "127.0.0.1" */
int redis_local_port(const redis_local *rl);

/* The password clients must AUTH with; borrowed until redis_local_stop. */
const char *redis_local_password(const redis_local *rl);

/* SIGTERM, wait (SIGKILL after 5 s), remove the directory. NULL is a no-op. */
void redis_local_stop(redis_local *rl);

/* 1 when `server` (NULL: "redis-server") can be executed from PATH. */
int redis_local_available(const char *server);

#endif
