/*
 * info.h - io.traind.GetInfo's reply: what traind computes on, the CPU and
 * the BLAS kernel (include/traind/cpu.h, blaskernel.h), as the interface
 * (io.traind.varlink) declares it.
 *
 * Thread: any (it reads what start-up settled); the loop thread calls it.
 */
#ifndef TRAIND_PROTO_INFO_H
#define TRAIND_PROTO_INFO_H

#include <jansson.h>

/* A new JSON object (the caller owns it); NULL on ENOMEM. */
json_t *info_reply(void);

#endif
