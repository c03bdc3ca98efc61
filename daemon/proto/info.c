/*
 * info.c - io.traind.GetInfo's reply. See daemon/proto/info.h.
 */
#include "daemon/proto/info.h"

#include <string.h>

#include "traind-config.h"
#include "traind/blaskernel.h"
#include "traind/cpu.h"
#include "traind/numerics.h"

/* A string, or null when empty. */
static json_t *string_or_null(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

json_t *info_reply(void)
{
	const struct cpu_info *cpu = cpu_this();
	const struct blaskernel_state *b = blaskernel_state();
	json_t *features = json_array();
	char library[NUMERICS_TEXT_MAX];
	size_t n;

	if (!features)
		return NULL;
	for (unsigned i = 0; i < CPU_FEATURE_COUNT; i++)
		if (cpu->usable & (1u << i))
			json_array_append_new(features, json_string(cpu_feature_name(1u << i)));
	/* "OpenBLAS 0.3.21 SkylakeX": the library is all but the kernel */
	numerics_blas(library, sizeof(library));
	n = strlen(library);
	if (n > strlen(numerics_core()) && strcmp(library + n - strlen(numerics_core()), numerics_core()) == 0)
		library[n - strlen(numerics_core()) - 1] = '\0';
	return json_pack("{s:s,s:{s:s,s:s,s:i,s:i,s:i,s:o},s:{s:s,s:s,s:o,s:o,s:s,s:s,s:o}}",
			 "version", TRAIND_VERSION,
			 "cpu", "brand", cpu->brand, "vendor", cpu->vendor_id, "family", (int)cpu->family,
			 "model", (int)cpu->model, "stepping", (int)cpu->stepping, "features", features,
			 "blas", "library", library, "kernel", b->in_use,
			 "openblas_pick", string_or_null(b->openblas_pick), "wanted", string_or_null(b->wanted),
			 "reason", blaskernel_reason_name(b->reason), "why", b->why,
			 "note", string_or_null(b->note));
}
