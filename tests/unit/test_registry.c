/* test_registry.c: the Schema Registry client and the codec's lookups
 * against a local stand-in that speaks the registry's REST API on loopback
 * (tests/registry_standin.py, started here and stopped afterwards; the test
 * skips without python3): registering (idempotent ids), fetching by id,
 * basic auth, 404, a registry that is down (with a second URL that is up),
 * the codec fetching an id once and then serving it from its cache, and the
 * registration of our output schemas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <avro.h>

#include "codec.h"
#include "registry.h"
#include "testutil.h"
#include "ul_err.h"

static char err[UL_ERRSTR_SIZE];

typedef struct standin {
    pid_t pid;
    char url[48];
    char log[512];
} standin;

static standin reg; /* the running stand-in of this program */

/* Rating v2 (a field added with a default), as a producer registers it. */
static const char rating_v2[] =
    "{\"type\":\"record\",\"name\":\"Rating\",\"namespace\":\"io.unlearnd\",\"fields\":["
    "{\"name\":\"user_id\",\"type\":\"long\"},{\"name\":\"item_id\",\"type\":\"long\"},"
    "{\"name\":\"rating\",\"type\":\"float\"},{\"name\":\"event_time\",\"type\":\"long\"},"
    "{\"name\":\"source\",\"type\":\"string\",\"default\":\"\"}]}";
static const char rating_no_item[] =
    "{\"type\":\"record\",\"name\":\"Rating\",\"fields\":[{\"name\":\"user_id\",\"type\":"
    "\"long\"},{\"name\":\"rating\",\"type\":\"float\"},{\"name\":\"event_time\",\"type\":"
    "\"long\"}]}";

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int standin_start(void **state) {
    (void)state;
    const char *dir = getenv("UNLEARND_TESTS_DIR");
    char script[512], port_file[512];
    snprintf(script, sizeof(script), "%s/registry_standin.py", dir ? dir : "tests");
    if (access(script, R_OK) != 0 || system("python3 -c '' 2>/dev/null") != 0)
        return 0; /* reg.pid stays 0: the tests skip */
    snprintf(port_file, sizeof(port_file), "%s/registry.port", tu_tmpdir());
    snprintf(reg.log, sizeof(reg.log), "%s/registry.log", tu_tmpdir());
    unlink(port_file);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("python3", "python3", script, "--port-file", port_file, "--log", reg.log, "--user",
               "unlearnd", "--password", "s3cret", "--first-id", "100", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200 && pid > 0; i++) { /* up to 10 s */
        FILE *f = fopen(port_file, "r");
        int port = 0;
        if (f && fscanf(f, "%d", &port) == 1 && port > 0) {
            fclose(f);
            reg.pid = pid;
            snprintf(reg.url, sizeof(reg.url), "http://127.0.0.1:%d", port & 0xffff);
            return 0;
        }
        if (f)
            fclose(f);
        sleep_ms(50);
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

static void standin_stop(void) {
    if (reg.pid > 0) {
        kill(reg.pid, SIGTERM);
        waitpid(reg.pid, NULL, 0);
        reg.pid = 0;
    }
}

static int standin_teardown(void **state) {
    (void)state;
    standin_stop();
    return 0;
}

/* Requests the stand-in logged that are exactly `line`. */
static int logged(const char *line) {
    char buf[512];
    int n = 0;
    FILE *f = fopen(reg.log, "r");
    while (f && fgets(buf, sizeof(buf), f)) {
        buf[strcspn(buf, "\n")] = '\0';
        n += strcmp(buf, line) == 0;
    }
    if (f)
        fclose(f);
    return n;
}

/* An http URL on a loopback port nobody listens on. */
static void closed_url(char *url, size_t size) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    socklen_t len = sizeof(a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    snprintf(url, size, "http://127.0.0.1:%d", ntohs(a.sin_port));
}

static registry *client(const char *url, const char *user, const char *password) {
    registry_opts o = {url, user, password, 2000};
    registry *r = registry_new(&o, err, sizeof(err));
    if (r == NULL)
        fail_msg("registry_new: %s", err);
    return r;
}

static codec *codec_on(const char *url, long retry_ms) {
    codec_opts o;
    codec_opts_init(&o);
    o.registry_url = url;
    o.registry_user = "unlearnd";
    o.registry_password = "s3cret";
    o.registry_timeout_ms = 2000;
    o.registry_retry_ms = retry_ms;
    codec *c = codec_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("codec_new: %s", err);
    return c;
}

/* A v2 rating record under `id`: user 7, item 8, 4.5, time 9, source "x". */
static size_t v2_record(uint8_t *b, int32_t id) {
    const uint8_t body[] = {14, 16, 0, 0, 0x90, 0x40, 18, 2, 'x'};
    b[0] = 0;
    for (int i = 0; i < 4; i++)
        b[1 + i] = (uint8_t)((uint32_t)id >> (24 - 8 * i));
    memcpy(b + 5, body, sizeof(body));
    return 5 + sizeof(body);
}

#define NEED_STANDIN()                                                                             \
    do {                                                                                           \
        if (reg.pid <= 0)                                                                          \
            skip();                                                                                \
    } while (0)

static void test_register_and_fetch(void **state) {
    (void)state;
    NEED_STANDIN();
    registry *r = client(reg.url, "unlearnd", "s3cret");
    int32_t id = -1, again = -1, other = -1;
    assert_int_equal(registry_register(r, "ratings-value", rating_v2, &id, err, sizeof(err)),
                     UL_OK);
    assert_true(id >= 100);
    assert_int_equal(registry_register(r, "ratings-value", rating_v2, &again, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(again, id); /* the same schema keeps its id */
    assert_int_equal(
        registry_register(r, "ratings-value", rating_no_item, &other, err, sizeof(err)), UL_OK);
    assert_true(other != id);
    char *text = NULL;
    assert_int_equal(registry_get_schema(r, id, &text, err, sizeof(err)), UL_OK);
    assert_string_equal(text, rating_v2);
    free(text);
    assert_int_equal(registry_get_schema(r, 999999, &text, err, sizeof(err)),
                     REGISTRY_ERR_NOT_FOUND);
    assert_null(text);
    assert_non_null(strstr(err, "schema id 999999 is not in the schema registry at http://127."));
    assert_non_null(strstr(err, "404"));
    assert_non_null(strstr(err, "40403"));
    registry_destroy(r);
}

static void test_basic_auth(void **state) {
    (void)state;
    NEED_STANDIN();
    const char *users[] = {"unlearnd", NULL}, *passwords[] = {"wrong", NULL};
    for (int k = 0; k < 2; k++) {
        registry *r = client(reg.url, users[k], passwords[k]);
        char *text = NULL;
        int32_t id;
        assert_int_equal(registry_get_schema(r, 100, &text, err, sizeof(err)),
                         REGISTRY_ERR_REFUSED);
        assert_non_null(strstr(err, "HTTP 401"));
        assert_non_null(strstr(err, "schema.registry.user and schema.registry.password"));
        assert_null(strstr(err, "wrong")); /* the password is never printed */
        assert_int_equal(registry_register(r, "x-value", rating_v2, &id, err, sizeof(err)),
                         REGISTRY_ERR_REFUSED);
        registry_destroy(r);
    }
    /* Credentials inside the URL are not printed either. */
    char url[640];
    snprintf(url, sizeof(url), "http://someone:pw123@%s", reg.url + 7);
    registry *r = client(url, NULL, NULL);
    char *text = NULL;
    assert_int_equal(registry_get_schema(r, 999998, &text, err, sizeof(err)), REGISTRY_ERR_REFUSED);
    assert_null(strstr(err, "pw123"));
    registry_destroy(r);
    registry_opts bad = {"ftp://x", NULL, NULL, 0};
    assert_null(registry_new(&bad, err, sizeof(err)));
    assert_non_null(strstr(err, "not an http:// or https:// URL"));
    registry_opts nouser = {reg.url, "", "pw", 0};
    assert_null(registry_new(&nouser, err, sizeof(err)));
    assert_non_null(strstr(err, "schema.registry.user is empty"));
}

/* The codec asks once per id, then serves the id from its cache; a 404 is
 * remembered for retry_ms too. */
static void test_codec_fetches_once(void **state) {
    (void)state;
    NEED_STANDIN();
    registry *r = client(reg.url, "unlearnd", "s3cret");
    int32_t v2 = 0, bad = 0;
    assert_int_equal(registry_register(r, "ratings-value", rating_v2, &v2, err, sizeof(err)),
                     UL_OK);
    assert_int_equal(registry_register(r, "ratings-value", rating_no_item, &bad, err, sizeof(err)),
                     UL_OK);
    registry_destroy(r);
    char get_v2[64], get_bad[64], get_missing[64];
    snprintf(get_v2, sizeof(get_v2), "GET /schemas/ids/%d", (int)v2);
    snprintf(get_bad, sizeof(get_bad), "GET /schemas/ids/%d", (int)bad);
    snprintf(get_missing, sizeof(get_missing), "GET /schemas/ids/%d", 555555);
    int before = logged(get_v2);

    codec *c = codec_on(reg.url, 60000);
    uint8_t buf[32];
    size_t len = v2_record(buf, v2);
    for (int i = 0; i < 5; i++) {
        codec_rating out;
        assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)), CODEC_OK);
        assert_true(out.user_id == 7 && out.item_id == 8 && out.rating == 4.5f &&
                    out.event_time == 9);
    }
    assert_int_equal(logged(get_v2), before + 1);
    codec_rating out;
    len = v2_record(buf, bad);
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)),
                     CODEC_ERR_UNRESOLVED);
    assert_non_null(strstr(err, "from the schema registry"));
    assert_non_null(strstr(err, "'item_id' is missing"));
    len = v2_record(buf, 555555);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)),
                         CODEC_ERR_UNKNOWN_SCHEMA);
        assert_non_null(strstr(err, "not in the schema registry"));
    }
    assert_int_equal(logged(get_missing), 1);
    codec_destroy(c);
    /* With retry 1 ms, a 404 is asked again. */
    c = codec_on(reg.url, 1);
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)),
                     CODEC_ERR_UNKNOWN_SCHEMA);
    sleep_ms(5);
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)),
                     CODEC_ERR_UNKNOWN_SCHEMA);
    assert_int_equal(logged(get_missing), 3);
    codec_destroy(c);
}

static void test_register_outputs(void **state) {
    (void)state;
    NEED_STANDIN();
    codec_opts o;
    codec_opts_init(&o);
    assert_int_equal(codec_register_outputs(&o, "factors", "forget-receipts", err, sizeof(err)),
                     UL_ERR_ARG);
    assert_non_null(strstr(err, "schema.registry.url"));
    o.registry_url = reg.url;
    o.registry_user = "unlearnd";
    o.registry_password = "s3cret";
    assert_int_equal(codec_register_outputs(&o, "factors", "forget-receipts", err, sizeof(err)),
                     UL_OK);
    assert_true(o.schema_id_factor >= 100 && o.schema_id_receipt >= 100);
    assert_true(o.schema_id_factor != o.schema_id_receipt);
    assert_true(logged("POST /subjects/factors-value/versions") >= 1);
    assert_true(logged("POST /subjects/forget-receipts-value/versions") >= 1);
    int32_t factor_id = o.schema_id_factor;
    assert_int_equal(codec_register_outputs(&o, "factors", "forget-receipts", err, sizeof(err)),
                     UL_OK);
    assert_int_equal(o.schema_id_factor, factor_id);
    /* What we write carries the registry's id, and the registry holds our schema. */
    codec *c = codec_new(&o, err, sizeof(err));
    assert_non_null(c);
    float v[2] = {0.5f, -1.0f};
    codec_factor f = {3, CODEC_KIND_ITEM, 12, v, 2, 0.25f};
    codec_buf b = {0};
    assert_int_equal(codec_encode_factor(c, &f, &b, err, sizeof(err)), CODEC_OK);
    assert_int_equal(codec_peek_schema_id(b.data, b.len), factor_id);
    registry *r = client(reg.url, "unlearnd", "s3cret");
    char *text = NULL;
    assert_int_equal(registry_get_schema(r, factor_id, &text, err, sizeof(err)), UL_OK);
    assert_string_equal(text, codec_schema_text("factor"));
    free(text);
    registry_destroy(r);
    codec_buf_free(&b);
    codec_destroy(c);
}

/* A registry that is down: registry-unavailable with the reason, retried
 * after retry_ms; ids already cached keep decoding; a second URL that is up
 * is used. Last: it stops the stand-in. */
static void test_unreachable(void **state) {
    (void)state;
    NEED_STANDIN();
    char down[64], both[160];
    closed_url(down, sizeof(down));
    codec *c = codec_on(down, 60000);
    uint8_t buf[32];
    size_t len = v2_record(buf, 100);
    codec_rating out;
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)), CODEC_ERR_REGISTRY);
    assert_non_null(strstr(err, "schema registry unavailable"));
    assert_non_null(strstr(err, "unreachable"));
    assert_non_null(strstr(err, down));
    codec_destroy(c);

    snprintf(both, sizeof(both), "%s,%s", down, reg.url);
    registry *r = client(both, "unlearnd", "s3cret");
    int32_t v2 = 0;
    assert_int_equal(registry_register(r, "ratings-value", rating_v2, &v2, err, sizeof(err)),
                     UL_OK);
    registry_destroy(r);
    c = codec_on(both, 60000);
    len = v2_record(buf, v2);
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)), CODEC_OK);
    standin_stop();
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)), CODEC_OK);
    len = v2_record(buf, 424242);
    assert_int_equal(codec_decode_rating(c, buf, len, &out, err, sizeof(err)), CODEC_ERR_REGISTRY);
    codec_destroy(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_fetch), cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_codec_fetches_once), cmocka_unit_test(test_register_outputs),
        cmocka_unit_test(test_unreachable),
    };
    return cmocka_run_group_tests(tests, standin_start, standin_teardown);
}
