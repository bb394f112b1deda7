/* test_redact.c: secret masking (worker/redact.h) and its use by the logger
 * (log_add_secret): given strings and credentials embedded in endpoints are
 * masked, ordinary '@' text is not, a cut result never shows part of a
 * secret, and a log line longer than the line limit is masked before it is
 * cut. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redact.h"

static void expect_redacted(const char *in, const char *want) {
    char out[512];
    size_t n = redact_text(in, NULL, 0, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("redact('%s') = '%s', want '%s'", in, out, want);
    assert_int_equal(n, strlen(want));
}

static void test_endpoint_credentials(void **state) {
    (void)state;
    expect_redacted("user:pw@h:9092", "user:********@h:9092");
    expect_redacted("h1:9092,bob:pw@h2:9092", "h1:9092,bob:********@h2:9092");
    expect_redacted("redis://:pw@db:6379/0", "redis://:********@db:6379/0");
    expect_redacted("redis://alice:pw@db", "redis://alice:********@db");
    expect_redacted("https://TOKEN@registry/x", "https://********@registry/x");
    expect_redacted("sasl_ssl://u:p@ss@h:1", "sasl_ssl://u:********@h:1"); /* '@' in password */
    expect_redacted("Failed to resolve 'u:pw@h:1': x", "Failed to resolve 'u:********@h:1': x");
    expect_redacted("[thrd:u:pw@h:1/bootstrap]", "[thrd:********@h:1/bootstrap]");
    /* not credentials */
    expect_redacted("mail alice@example.com", "mail alice@example.com");
    expect_redacted("principal kafka/broker1@EXAMPLE.COM", "principal kafka/broker1@EXAMPLE.COM");
    expect_redacted("@ start, end @", "@ start, end @");
    expect_redacted("user:@h", "user:@h");
    expect_redacted("", "");
    assert_true(redact_has_credentials("a:1,u:p@b:2"));
    assert_false(redact_has_credentials("a:1,b:2"));
    assert_false(redact_has_credentials(NULL));
}

static void test_given_secrets(void **state) {
    (void)state;
    char out[128];
    const char *secrets[] = {"hunter2", NULL, "", "s3"};
    redact_text("hunter2 and s3 and hunter2s3!", secrets, 4, out, sizeof(out));
    assert_string_equal(out, "******** and ******** and ********!");
    /* a secret that is also a URL password is masked once */
    const char *pw[] = {"pw"};
    redact_text("u:pw@h pw", pw, 1, out, sizeof(out));
    assert_string_equal(out, "u:********@h ********");
    redact_text(NULL, NULL, 0, out, sizeof(out));
    assert_string_equal(out, "");
}

/* Every cut of a result keeps the secret out: the mask is decided first. */
static void test_truncation_never_shows_a_secret(void **state) {
    (void)state;
    const char *in = "k=alice:VERYSECRETVALUE@host:1 tail";
    char full[128], cut[128];
    size_t need = redact_text(in, NULL, 0, full, sizeof(full));
    for (size_t size = 1; size <= need + 1; size++) {
        size_t n = redact_text(in, NULL, 0, cut, size);
        assert_int_equal(n, need);
        assert_int_equal(strlen(cut), size - 1 < need ? size - 1 : need);
        assert_int_equal(strncmp(cut, full, strlen(cut)), 0);
        if (strstr(cut, "VE")) /* the secret's first letters */
            fail_msg("size %zu shows '%s'", size, cut);
    }
    char *dup = redact_dup(in, NULL, 0);
    assert_string_equal(dup, "k=alice:********@host:1 tail");
    free(dup);
}

/* Long input: over the on-stack mask size. */
static void test_long_input(void **state) {
    (void)state;
    size_t n = 10000;
    char *in = malloc(n + 32);
    memset(in, 'x', n);
    strcpy(in + n, " u:LONGSECRET@h");
    char *out = redact_dup(in, NULL, 0);
    assert_non_null(out);
    assert_null(strstr(out, "LONGSECRET"));
    assert_int_equal(strlen(out), n + strlen(" u:********@h"));
    free(out);
    free(in);
}

static char *capture(void (*write_lines)(ul_log *lg)) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    ul_log *lg = log_new(mem, LOG_LEVEL_DEBUG);
    write_lines(lg);
    log_destroy(lg);
    fclose(mem);
    return buf;
}

static void write_secret_lines(ul_log *lg) {
    assert_int_equal(log_add_secret(lg, "LOGPW"), 0);
    assert_int_equal(log_add_secret(lg, ""), 0);
    assert_int_equal(log_add_secret(NULL, "x"), 0);
    log_info(lg, "redis", "AUTH LOGPW failed");
    log_warn(lg, "rdkafka", "Failed to resolve 'u:BOOTPW@h:1'");
    /* longer than a line: the '@' that identifies the credential comes after
     * the cut, so it must be masked before cutting */
    char big[5000];
    memset(big, 'y', 1980);
    snprintf(big + 1980, sizeof(big) - 1980, " u:CUTPW%s@h %0100d",
             "0123456789012345678901234567890", 0);
    log_error(lg, "kafka", "%s", big);
}

static void test_log_masks_lines(void **state) {
    (void)state;
    char *text = capture(write_secret_lines);
    assert_null(strstr(text, "LOGPW"));
    assert_null(strstr(text, "BOOTPW"));
    assert_null(strstr(text, "CUTPW"));
    assert_non_null(strstr(text, "INFO  redis: AUTH ******** failed\n"));
    assert_non_null(strstr(text, "Failed to resolve 'u:********@h:1'\n"));
    assert_non_null(strstr(text, "...\n")); /* the long line was cut */
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoint_credentials),
        cmocka_unit_test(test_given_secrets),
        cmocka_unit_test(test_truncation_never_shows_a_secret),
        cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_log_masks_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
