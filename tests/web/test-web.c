/*
 * test-web.c - traind-web's pure parts: the request decision (web/route.c)
 * on a table of requests, the start body check (web/api.c) and the
 * Prometheus writer (web/metrics.c) on replies shaped like traind's,
 * including io.traind.Counters' histogram (which the web suite sees only
 * once traind has that method).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "api.h"
#include "metrics.h"
#include "route.h"

#define TOKEN "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

static void decide(struct web_request r, bool metrics_token, struct web_route *out)
{
	struct web_policy p = { .token = TOKEN, .metrics_token = metrics_token };

	web_decide(&r, &p, out);
}

static void test_routes(void **state)
{
	struct web_route r;
	const char *bearer = "Bearer " TOKEN, *cookie = "x=1; traind_token=" TOKEN "; y=2";

	decide((struct web_request){ .method = "GET", .path = "/api/jobs" }, false, &r);
	assert_int_equal(r.kind, WEB_REFUSE);
	assert_int_equal(r.status, 401);
	decide((struct web_request){ .method = "GET", .path = "/api/jobs", .authorization = bearer }, false, &r);
	assert_int_equal(r.kind, WEB_API_JOBS);
	decide((struct web_request){ .method = "GET", .path = "/api/jobs/12/history", .cookie = cookie }, false, &r);
	assert_int_equal(r.kind, WEB_API_HISTORY);
	assert_int_equal(r.job, 12);
	decide((struct web_request){ .method = "GET", .path = "/jobs/3", .query_token = TOKEN }, false, &r);
	assert_int_equal(r.kind, WEB_REDIRECT_TOKEN);
	decide((struct web_request){ .method = "GET", .path = "/api/jobs", .query_token = TOKEN }, false, &r);
	assert_int_equal(r.status, 401);   /* ?token= only opens pages */
	decide((struct web_request){ .method = "GET", .path = "/api/jobs", .cookie = "traind_token=" TOKEN "0" }, false, &r);
	assert_int_equal(r.status, 401);   /* longer than the token */
	decide((struct web_request){ .method = "GET", .path = "/api/jobs/0", .authorization = bearer }, false, &r);
	assert_int_equal(r.status, 404);
	decide((struct web_request){ .method = "PUT", .path = "/api/jobs", .authorization = bearer }, false, &r);
	assert_int_equal(r.status, 405);
	decide((struct web_request){ .method = "GET", .path = "/static/a/b", .authorization = bearer }, false, &r);
	assert_int_equal(r.status, 404);

	/* control */
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/1/pause", .authorization = bearer }, false, &r);
	assert_int_equal(r.status, 403);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/1/pause", .authorization = bearer,
				     .control = "1", .host = "127.0.0.1:8765", .origin = "http://127.0.0.1:8765" },
	       false, &r);
	assert_int_equal(r.kind, WEB_API_PAUSE);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/1/kill", .authorization = bearer,
				     .control = "1", .host = "127.0.0.1:8765", .origin = "http://127.0.0.1:8766" },
	       false, &r);
	assert_int_equal(r.status, 403);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs", .cookie = cookie, .control = "1",
				     .fetch_site = "cross-site" }, false, &r);
	assert_int_equal(r.status, 403);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs", .cookie = cookie, .control = "1" }, false, &r);
	assert_int_equal(r.kind, WEB_API_START);
	/* delete: a control request like the others; steps: a read */
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/4/delete", .cookie = cookie }, false, &r);
	assert_int_equal(r.status, 403);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/4/delete", .cookie = cookie, .control = "1",
				     .origin = "http://evil.example", .host = "127.0.0.1:8765" }, false, &r);
	assert_int_equal(r.status, 403);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/4/delete", .cookie = cookie, .control = "1" },
	       false, &r);
	assert_int_equal(r.kind, WEB_API_DELETE);
	assert_int_equal(r.job, 4);
	decide((struct web_request){ .method = "GET", .path = "/api/jobs/4/delete", .cookie = cookie }, false, &r);
	assert_int_equal(r.status, 405);
	decide((struct web_request){ .method = "GET", .path = "/api/jobs/4/steps", .cookie = cookie }, false, &r);
	assert_int_equal(r.kind, WEB_API_STEPS);
	decide((struct web_request){ .method = "POST", .path = "/api/jobs/4/steps", .cookie = cookie, .control = "1" },
	       false, &r);
	assert_int_equal(r.status, 405);
	/* the favicon browsers ask for: the static one, behind the token as the rest */
	decide((struct web_request){ .method = "GET", .path = "/favicon.ico", .cookie = cookie }, false, &r);
	assert_int_equal(r.kind, WEB_STATIC);
	assert_string_equal(r.name, "favicon.svg");
	decide((struct web_request){ .method = "GET", .path = "/favicon.ico" }, false, &r);
	assert_int_equal(r.status, 401);

	/* /metrics */
	decide((struct web_request){ .method = "GET", .path = "/metrics", .local_peer = true, .host = "127.0.0.1:9" },
	       false, &r);
	assert_int_equal(r.kind, WEB_METRICS);
	decide((struct web_request){ .method = "GET", .path = "/metrics", .local_peer = true, .host = "[::1]:9" },
	       false, &r);
	assert_int_equal(r.kind, WEB_METRICS);
	decide((struct web_request){ .method = "GET", .path = "/metrics", .local_peer = true, .host = "evil.example" },
	       false, &r);
	assert_int_equal(r.status, 401);
	decide((struct web_request){ .method = "GET", .path = "/metrics", .local_peer = false }, false, &r);
	assert_int_equal(r.status, 401);
	decide((struct web_request){ .method = "GET", .path = "/metrics", .local_peer = true }, true, &r);
	assert_int_equal(r.status, 401);
}

static void test_start_params(void **state)
{
	char why[256];
	json_t *p = NULL;
	const char *ok = "{\"name\":\"a\",\"config\":{\"epochs\":2},\"keep\":3}";

	assert_int_equal(web_start_params(ok, strlen(ok), &p, why, sizeof(why)), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "config"), "epochs")), 2);
	json_decref(p);
	assert_int_equal(web_start_params("{\"init_from\":\"x\"}", 17, &p, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "init_from"));
	assert_int_equal(web_start_params("[1]", 3, &p, why, sizeof(why)), -1);
	assert_int_equal(web_start_params("{\"keep\":\"all\"}", 14, &p, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "keep"));
}

static void test_metrics(void **state)
{
	json_t *jobs = json_loads("[{\"id\":7,\"name\":\"a\\\"b\\\\c\\nd\",\"state\":\"running\",\"committed_epoch\":2,"
				  "\"step\":5,\"samples_per_second\":1000.5,\"val_acc\":0.25}]", 0, NULL);
	json_t *hist = json_loads("{\"7\":[{\"epoch\":1,\"val_loss\":0.5},{\"epoch\":2,\"val_loss\":0.75}]}", 0, NULL);
	json_t *ctrs = json_loads("{\"epochs_committed\":9,\"jobs_failed\":1,\"client_errors\":4,"
				  "\"commit_seconds\":{\"buckets\":[0.005,0.1,1],\"counts\":[2,5,9],"
				  "\"sum\":1.25,\"count\":9}}", 0, NULL);
	char *text = NULL;
	size_t len = 0;

	assert_int_equal(metrics_render(jobs, hist, ctrs, &text, &len), 0);
	assert_non_null(strstr(text, "traind_up 1\n"));
	assert_non_null(strstr(text, "traind_jobs{state=\"running\"} 1\n"));
	assert_non_null(strstr(text, "traind_jobs{state=\"done\"} 0\n"));
	assert_non_null(strstr(text, "traind_job_epoch{job=\"7\",name=\"a\\\"b\\\\c\\nd\"} 2\n"));
	assert_non_null(strstr(text, "traind_job_samples_per_second{job=\"7\",name=\"a\\\"b\\\\c\\nd\"} 1000.5\n"));
	assert_non_null(strstr(text, "traind_job_val_loss{job=\"7\",name=\"a\\\"b\\\\c\\nd\"} 0.75\n"));
	assert_non_null(strstr(text, "traind_job_best_val_loss{job=\"7\",name=\"a\\\"b\\\\c\\nd\"} 0.5\n"));
	assert_non_null(strstr(text, "# TYPE traind_checkpoint_commit_seconds histogram\n"
				     "traind_checkpoint_commit_seconds_bucket{le=\"0.005\"} 2\n"
				     "traind_checkpoint_commit_seconds_bucket{le=\"0.1\"} 5\n"
				     "traind_checkpoint_commit_seconds_bucket{le=\"1\"} 9\n"
				     "traind_checkpoint_commit_seconds_bucket{le=\"+Inf\"} 9\n"
				     "traind_checkpoint_commit_seconds_sum 1.25\n"
				     "traind_checkpoint_commit_seconds_count 9\n"));
	assert_non_null(strstr(text, "# TYPE traind_epochs_committed_total counter\ntraind_epochs_committed_total 9\n"));
	assert_non_null(strstr(text, "traind_jobs_failed_total 1\n"));
	assert_non_null(strstr(text, "traind_client_errors_total 4\n"));
	free(text);

	/* traind down: only traind_up 0; no Counters: no histogram */
	assert_int_equal(metrics_render(NULL, NULL, NULL, &text, &len), 0);
	assert_string_equal(text, "# HELP traind_up Whether traind answered traind-web.\n"
				  "# TYPE traind_up gauge\ntraind_up 0\n");
	free(text);
	assert_int_equal(metrics_render(jobs, hist, NULL, &text, &len), 0);
	assert_null(strstr(text, "commit_seconds"));
	free(text);
	json_decref(jobs);
	json_decref(hist);
	json_decref(ctrs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes),
		cmocka_unit_test(test_start_params),
		cmocka_unit_test(test_metrics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
