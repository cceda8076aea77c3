/*
 * tests/test_duration.c — the one duration grammar (core/duration.c):
 * plain seconds, compound units in decreasing order, and every malformed
 * or overflowing value refused without touching the result.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "duration.h"

START_TEST(accepted)
{
	static const struct {
		const char *s;
		int64_t v;
	} ok[] = {
		{"0", 0},
		{"90", 90},
		{"90s", 90},
		{"15m", 900},
		{"2h", 7200},
		{"1h30m", 5400},
		{"2d", 172800},
		{"1w", 604800},
		{"1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5},
		{"1d12h", 129600},
		{"0s", 0},
		{"100m", 6000},
		{"9223372036854775807", INT64_MAX},
		{"9223372036854775807s", INT64_MAX},
	};
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t v = -1;

		ck_assert_msg(envdbi_duration_parse(&v, ok[i].s) == 0, "'%s' refused", ok[i].s);
		ck_assert_msg(v == ok[i].v, "'%s' gave %lld, not %lld", ok[i].s, (long long)v,
			      (long long)ok[i].v);
	}
}
END_TEST

START_TEST(refused)
{
	static const char *const bad[] = {
		"",
		"x",
		"1x",
		"-1",
		"+1",
		"1.5h",
		" 1h",
		"1h ",
		"1 h",
		"h",
		"1h1h",
		"30m1h",
		"1s1m",
		"1h30",
		"1hm",
		"1H",
		"1ms",
		"1w1w",
		"0x10",
		"9223372036854775808",
		"1537228672809129302w",
		"106751991167301d",
		"9223372036854775807s1s",
		"1d9223372036854775807s",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t v = 42;

		ck_assert_msg(envdbi_duration_parse(&v, bad[i]) == -1, "'%s' accepted", bad[i]);
		ck_assert_msg(v == 42, "'%s' changed the result on failure", bad[i]);
	}
	ck_assert_int_eq(envdbi_duration_parse(NULL, "1s"), -1);
	{
		int64_t v = 42;
		ck_assert_int_eq(envdbi_duration_parse(&v, NULL), -1);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("duration");
	TCase *tc = tcase_create("grammar");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, accepted);
	tcase_add_test(tc, refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
