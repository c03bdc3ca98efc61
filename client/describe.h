/*
 * describe.h - one line for a daemon error reply: its name's last component
 * in words, then what its parameters say ("no such job 42", "invalid
 * parameter config.lr: 20 is out of range (0, 10]"). The protocol's own
 * names: trainctl turns them into its flags (rpc.c), traind-web shows them.
 *
 * Thread: any (pure).
 */
#ifndef TRAIND_CLIENT_DESCRIBE_H
#define TRAIND_CLIENT_DESCRIBE_H

#include <stddef.h>

#include "varlink.h"

/* One line for a daemon error reply into out (n bytes). */
void describe_error(const struct vl_reply *r, char *out, size_t n);

#endif
