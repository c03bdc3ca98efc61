/*
 * methods-service.c - org.varlink.service's GetInfo and
 * GetInterfaceDescription, io.traind.Counters and io.traind.GetInfo (the CPU
 * and the BLAS kernel, info.c): what a client asks of traind itself. See daemon/proto/methods.h.
 */
#include "daemon/proto/methods.h"

#include <stdio.h>
#include <string.h>

#include "traind-config.h"
#include "daemon/core/counters.h"
#include "daemon/proto/info.h"

/* The interface descriptions, embedded by tools/check-errors. */
extern const char traind_interface_description[];
extern const char varlink_service_description[];

void m_counters(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { NULL };
	json_t *r;

	(void)fds;
	if (!params_only(c, keys))
		return;
	r = counters_json(&d->counters);
	if (r) {
		struct bg_counts bg;

		bgwork_counts(d->bg, &bg);
		json_object_set_new(r, "background", json_pack("{s:I,s:I,s:I}", "waiting", (json_int_t)bg.waiting,
							       "running", (json_int_t)bg.running,
							       "refused", (json_int_t)bg.refused));
	}
	if (!r) {
		call_error(c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
		return;
	}
	call_reply(c, r, false);
}

void m_get_info(struct daemon *d, struct call *c, struct call_fds *fds)
{
	(void)d;
	(void)fds;
	call_reply(c, json_pack("{s:s,s:s,s:s,s:s,s:[s,s]}", "vendor", "traind", "product", "traind",
				"version", TRAIND_VERSION, "url", "https://traind.invalid/",
				"interfaces", "org.varlink.service", "io.traind"),
		   false);
}

/* io.traind.GetInfo: what traind computes on. */
void m_traind_info(struct daemon *d, struct call *c, struct call_fds *fds)
{
	static const char *const keys[] = { NULL };
	json_t *r;

	(void)d;
	(void)fds;
	if (!params_only(c, keys))
		return;
	r = info_reply();
	if (!r) {
		call_error(c, PROTO_STORAGE_ERROR, &(struct proto_detail){ .message = "out of memory" });
		return;
	}
	call_reply(c, r, false);
}

void m_get_interface(struct daemon *d, struct call *c, struct call_fds *fds)
{
	json_t *iface = json_object_get(call_params(c), "interface");
	static const char *const keys[] = { "interface", NULL };
	const char *name;

	(void)d;
	(void)fds;
	if (!params_only(c, keys))
		return;
	if (!json_is_string(iface)) {
		call_invalid_parameter(c, "interface", "'interface' must be an interface name");
		return;
	}
	name = json_string_value(iface);
	if (strcmp(name, "io.traind") == 0) {
		call_reply(c, json_pack("{s:s}", "description", traind_interface_description), false);
	} else if (strcmp(name, "org.varlink.service") == 0) {
		call_reply(c, json_pack("{s:s}", "description", varlink_service_description), false);
	} else {
		char shown[TR_QUOTE_MAX + 1];

		snprintf(shown, sizeof(shown), "%.*s", tr_utf8_cut(name, TR_QUOTE_MAX), name);
		call_error(c, PROTO_INTERFACE_NOT_FOUND, &(struct proto_detail){ .interface = shown });
	}
}
