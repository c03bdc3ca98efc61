/*
 * rpc.h - trainctl's calls to the daemon, over varlink.c.
 *
 * It owns the run's one connection (cli->conn, opened on first use with a
 * 300 s reply timeout; main() frees it) and turns what goes wrong into
 * trainctl's one error line (msg.h): a connection failure as varlink.c
 * words it (with "(is traind running?)" when there is no daemon), a daemon
 * error reply as a sentence from its name and parameters ("no such job 42"),
 * in trainctl's own words: the flags, not the protocol's parameter names
 * ("--batch-size: ...", not "invalid parameter config.batch_size: ..."),
 * the --config file's line for a setting from there, and for a dataset
 * traind does not have the ones it has, with the nearest.
 *
 * Thread: trainctl has one.
 */
#ifndef TRAIND_CLIENT_RPC_H
#define TRAIND_CLIENT_RPC_H

#include <jansson.h>
#include <stddef.h>

#include "cli.h"
#include "describe.h"
#include "varlink.h"

/* Connect cli->conn unless it is; RC_OK or RC_ERROR (line printed). */
int ensure_connected(struct cli *cli);

/* Call `method` with `params` (stolen; NULL: none) and read its one reply.
 * On success *out holds the reply's parameters (caller owns). On failure the
 * line is printed and the exit code returned: RC_ERROR, or for Wait
 * RC_TIMEOUT and RC_STATE. */
int rpc(struct cli *cli, const char *method, json_t *params, json_t **out);

/* rpc(), passing open file descriptors with the call (vl_call_fds). */
int rpc_fds(struct cli *cli, const char *method, json_t *params, const int *fds, size_t nfds,
	    json_t **out);

/* The parameters {"id": JOB}; NULL if out of memory. */
json_t *id_params(struct cli *cli);

/* rpc() with the parameters {"id": JOB}. */
int rpc_id(struct cli *cli, const char *method, json_t **out);

#endif
