/*
 * methods.c - the method table and the dispatch. See
 * daemon/proto/methods.h; the methods are in methods-*.c.
 */
#include "daemon/proto/methods.h"

#include <stdio.h>
#include <string.h>

/* The method table's flags column. */
enum {
	M_SHUTDOWN = 1u << 0,  /* answered during a shutdown too (else ShuttingDown) */
	M_FDS = 1u << 1,       /* takes the descriptors passed with it (struct call_fds) */
};

static const struct method {
	const char *name;
	method_fn *fn;
	unsigned flags;
} methods[] = {
	{ "io.traind.Start", m_start, 0 },
	{ "io.traind.Pause", m_pause, 0 },
	{ "io.traind.Resume", m_resume, 0 },
	{ "io.traind.Kill", m_kill, 0 },
	{ "io.traind.Status", m_status, M_SHUTDOWN },
	{ "io.traind.List", m_list, M_SHUTDOWN },
	{ "io.traind.History", m_history, 0 },
	{ "io.traind.Steps", m_steps, 0 },
	{ "io.traind.Checkpoints", m_checkpoints, 0 },
	{ "io.traind.Wait", m_wait, 0 },
	{ "io.traind.Eval", m_eval, 0 },
	{ "io.traind.Export", m_export, 0 },
	{ "io.traind.Watch", m_watch, 0 },
	{ "io.traind.Delete", m_delete, 0 },
	{ "io.traind.Counters", m_counters, 0 },
	{ "io.traind.Datasets", m_datasets, 0 },
	{ "io.traind.DatasetImport", m_dataset_import, M_FDS },
	{ "io.traind.DatasetRemove", m_dataset_remove, 0 },
	{ "io.traind.Predict", m_predict, M_FDS },
	{ "io.traind.Generate", m_generate, 0 },
	{ "io.traind.SweepStart", m_sweep_start, 0 },
	{ "io.traind.SweepStatus", m_sweep_status, 0 },
	{ "io.traind.SweepList", m_sweep_list, 0 },
	{ "io.traind.SweepKill", m_sweep_kill, 0 },
	{ "io.traind.SweepPause", m_sweep_pause, 0 },
	{ "io.traind.SweepResume", m_sweep_resume, 0 },
	{ "io.traind.SweepDelete", m_sweep_delete, 0 },
	{ "io.traind.GetInfo", m_traind_info, M_SHUTDOWN },
	{ "org.varlink.service.GetInfo", m_get_info, M_SHUTDOWN },
	{ "org.varlink.service.GetInterfaceDescription", m_get_interface, 0 },
};

void methods_dispatch(void *ctx, struct call *c, const char *method)
{
	struct daemon *d = ctx;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		const struct method *m = &methods[i];
		struct call_fds fds;

		if (strcmp(m->name, method) != 0)
			continue;
		if (d->shutting_down && !(m->flags & M_SHUTDOWN)) {
			call_error(c, PROTO_SHUTTING_DOWN,
				   &(struct proto_detail){ .message = "traind is shutting down" });
			return;
		}
		if (!(m->flags & M_FDS)) {
			m->fn(d, c, NULL);
			return;
		}
		/* All of them first, so that a refused call leaves none
		 * behind for the next one; those the method kept are its. */
		params_take_fds(c, &fds);
		m->fn(d, c, &fds);
		params_close_fds(&fds);
		return;
	}
	if (strncmp(method, "io.traind.", 10) == 0 || strncmp(method, "org.varlink.service.", 20) == 0) {
		call_error(c, PROTO_METHOD_NOT_FOUND, &(struct proto_detail){ .method = method });
	} else {
		char iface[256];
		const char *dot = strrchr(method, '.');

		snprintf(iface, sizeof(iface), "%.*s", dot ? (int)(dot - method) : (int)strlen(method), method);
		call_error(c, PROTO_INTERFACE_NOT_FOUND, &(struct proto_detail){ .interface = iface });
	}
}
