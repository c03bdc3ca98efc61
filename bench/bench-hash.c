/*
 * bench-hash.c - the checkpoint's hashing and base64 throughput, MB/s, on
 * checkpoint-sized buffers: traind's own API (engine/core/sha256.c, base64.c)
 * against OpenSSL's libcrypto called directly (EVP_Digest, EVP_EncodeBlock,
 * EVP_DecodeBlock), in one run. The lesson's checkpoint with Adam state is
 * about 2.6 MB; 50 MB stands for a large model.
 *   build/bench/bench-hash
 *
 * Each figure is the best of several repetitions (the machine is shared).
 * The two implementations must agree (digest and bytes); a mismatch fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "traind/base64.h"
#include "traind/sha256.h"

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double mbps(size_t bytes, double seconds)
{
	return (double)bytes / seconds / 1e6;
}

/* Best of `reps` timings of traind's sha256_hex and of EVP_Digest. */
static int bench_sha(const uint8_t *buf, size_t len, int reps)
{
	char ours[SHA256_HEX_LEN + 1], theirs[SHA256_HEX_LEN + 1];
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	double best_ours = 1e9, best_theirs = 1e9;

	for (int r = 0; r < reps; r++) {
		double t0 = now();

		sha256_hex(buf, len, ours);
		t0 = now() - t0;
		if (t0 < best_ours)
			best_ours = t0;
		t0 = now();
		if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL))
			return -1;
		t0 = now() - t0;
		if (t0 < best_theirs)
			best_theirs = t0;
	}
	sha256_to_hex(md, theirs);
	if (strcmp(ours, theirs) != 0) {
		fprintf(stderr, "sha256 digests differ: %s vs %s\n", ours, theirs);
		return -1;
	}
	printf("sha256  %6.1f MB: traind %7.1f MB/s (%6.2f ms), libcrypto EVP_Digest %7.1f MB/s "
	       "(%6.2f ms): libcrypto/traind %.2fx\n",
	       (double)len / 1e6, mbps(len, best_ours), best_ours * 1e3, mbps(len, best_theirs),
	       best_theirs * 1e3, best_ours / best_theirs);
	return 0;
}

static int bench_base64(const uint8_t *buf, size_t len, int reps)
{
	size_t elen = (len + 2) / 3 * 4;
	char *theirs = malloc(elen + 1);
	uint8_t *dec = malloc(elen / 4 * 3 + 3);
	double best[4] = { 1e9, 1e9, 1e9, 1e9 };
	int rc = -1;

	if (!theirs || !dec)
		goto out;
	for (int r = 0; r < reps; r++) {
		char *ours;
		uint8_t *back = NULL;
		size_t blen = 0;
		double t[5];

		t[0] = now();
		ours = base64_encode(buf, len);
		t[1] = now();
		EVP_EncodeBlock((unsigned char *)theirs, buf, (int)len);
		t[2] = now();
		if (!ours || base64_decode(ours, elen, &back, &blen) < 0) {
			free(ours);
			goto out;
		}
		t[3] = now();
		if (EVP_DecodeBlock(dec, (const unsigned char *)theirs, (int)elen) < 0) {
			free(ours);
			free(back);
			goto out;
		}
		t[4] = now();
		if (strcmp(ours, theirs) != 0 || blen != len || memcmp(back, buf, len) != 0 ||
		    memcmp(dec, buf, len) != 0) {
			fprintf(stderr, "base64 implementations disagree\n");
			free(ours);
			free(back);
			goto out;
		}
		free(ours);
		free(back);
		for (int k = 0; k < 4; k++)
			if (t[k + 1] - t[k] < best[k])
				best[k] = t[k + 1] - t[k];
	}
	printf("base64  %6.1f MB: encode traind %7.1f MB/s, libcrypto %7.1f MB/s (%.2fx); "
	       "decode traind %7.1f MB/s, libcrypto %7.1f MB/s (%.2fx; not strict)\n",
	       (double)len / 1e6, mbps(len, best[0]), mbps(len, best[1]), best[0] / best[1],
	       mbps(len, best[2]), mbps(len, best[3]), best[2] / best[3]);
	rc = 0;
out:
	free(theirs);
	free(dec);
	return rc;
}

int main(void)
{
	const size_t sizes[] = { 2650000, 50u * 1000 * 1000 };
	int rc = 0;

	for (size_t s = 0; s < 2 && rc == 0; s++) {
		size_t len = sizes[s];
		uint8_t *buf = malloc(len);
		uint32_t x = 12345;

		if (!buf)
			return 1;
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			buf[i] = (uint8_t)(x >> 24);
		}
		rc = bench_sha(buf, len, len < (10u << 20) ? 20 : 5);
		if (rc == 0)
			rc = bench_base64(buf, len, len < (10u << 20) ? 10 : 3);
		free(buf);
	}
	return rc == 0 ? 0 : 1;
}
