/*
 * fuzz-image.c - libFuzzer harness for predict_decode and predict_fit (the
 * PGM, PNG and IDX image readers of io.traind.Predict, daemon/data/predict.c).
 *
 * Input: the first byte picks a target size for predict_fit (0: none,
 * else 1..255 pixels square, resizing); the rest is the file.
 *
 * Checks beyond "no crash":
 *   - a failure returns a negative code with a non-empty message and leaves
 *     the images zeroed (nothing to free);
 *   - a success is self-consistent: 1..PREDICT_MAX_IMAGES images of sides
 *     in [1, PREDICT_MAX_SIDE], every pixel readable (ASan checks bounds),
 *     and for an IDX file the pixels equal its payload bytes;
 *   - a resize gives exactly the size asked for.
 * Any violation calls __builtin_trap(), which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "daemon/data/predict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct predict_images im;
	struct tr_err err = { 0 };
	unsigned sum = 0;
	uint32_t side;
	int rc;

	if (size < 1)
		return 0;
	side = data[0];
	rc = predict_decode(data + 1, size - 1, "fuzz", &im, &err);
	if (rc < 0) {
		CHECK(err.msg[0] != '\0');
		CHECK(im.pixels == NULL && im.count == 0);
		return 0;
	}
	CHECK(im.count >= 1 && im.count <= PREDICT_MAX_IMAGES);
	CHECK(im.h >= 1 && im.h <= PREDICT_MAX_SIDE && im.w >= 1 && im.w <= PREDICT_MAX_SIDE);
	for (size_t i = 0; i < (size_t)im.count * im.h * im.w; i++)
		sum += im.pixels[i];
	if (size - 1 >= 4 && data[1] == 0 && data[2] == 0 && data[3] == 8 && data[4] == 3)
		CHECK(memcmp(im.pixels, data + 1 + 16, (size_t)im.count * im.h * im.w) == 0);
	if (side) {
		rc = predict_fit(&im, side, side, true, "fuzz", &err);
		CHECK(rc == 0 || rc == -ENOMEM);
		if (rc == 0)
			CHECK(im.h == side && im.w == side);
	}
	predict_images_free(&im);
	return (int)(sum & 0);
}
