/*
 * main.c - traind-web: the command line, the listening socket, the token,
 * then http.c serves until SIGINT or SIGTERM.
 *
 *   traind-web [--socket PATH] [--listen ADDR:PORT | --listen unix:PATH]
 *              [--token-file PATH] [--metrics-token] [--behind-proxy]
 *              [--static-dir DIR] [--max-connections N] [--max-client-connections N]
 *              [--request-timeout SECONDS] [--timeout SECONDS]
 *
 * A new token is made at every start (32 random bytes from getrandom, in
 * hex), written mode 0640 to the token file (by rename, so a reader never
 * sees half of one) and printed with the URL. A --listen address that is
 * not loopback needs --behind-proxy: traind-web speaks plain HTTP, and a
 * token sent in clear over a network is no token.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"
#include "pages.h"
#include "route.h"
#include "traind-config.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#ifndef WEB_STATIC_DIR
#define WEB_STATIC_DIR "/usr/share/traind/web"
#endif

struct options {
	const char *socket;
	const char *listen;
	const char *token_file;
	const char *static_dir;
	bool metrics_token;
	bool behind_proxy;
	unsigned max_connections;
	unsigned max_per_client;    /* 0: half of max_connections (all of them behind a proxy) */
	unsigned timeout_s;
	unsigned request_timeout_s;
	char socket_buf[4096];
	char token_buf[4096];
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: traind-web [OPTIONS]\n"
		"  --socket PATH         traind's socket (default $TRAIND_SOCKET, else\n"
		"                        $XDG_RUNTIME_DIR/traind/traind.sock, else /run/traind/traind.sock)\n"
		"  --listen ADDR:PORT    where to serve HTTP (default 127.0.0.1:8765; [::1]:PORT;\n"
		"                        port 0 picks a free one); --listen unix:PATH for a Unix socket\n"
		"  --token-file PATH     where the token is written, mode 0640 (default\n"
		"                        $RUNTIME_DIRECTORY/token, else $XDG_RUNTIME_DIR/traind-web/token,\n"
		"                        else /run/traind-web/token)\n"
		"  --metrics-token       /metrics needs the token from loopback too\n"
		"  --behind-proxy        allow a non-loopback --listen (TLS must be done by a proxy)\n"
		"  --static-dir DIR      the pages (default " WEB_STATIC_DIR ")\n"
		"  --max-connections N   connections served at once (default 128)\n"
		"  --max-client-connections N  connections of one client (a uid for local\n"
		"                        peers, else an address) at once (default half of\n"
		"                        --max-connections; all of them with --behind-proxy)\n"
		"  --request-timeout SECONDS  a whole request (line, headers, body), from the\n"
		"                        connection's start or the previous response (default 10)\n"
		"  --timeout SECONDS     idle timeout while a response is written (default 30)\n"
		"  --version, --help\n");
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int die(const char *fmt, ...)
{
	va_list ap;

	fputs("traind-web: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* die() for a bad command line: exit code 2. */
#define BAD_FLAG(...) (die(__VA_ARGS__) + 1)

static bool parse_uint(const char *s, unsigned min, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = (unsigned)v;
	return true;
}

static void default_socket(struct options *o)
{
	const char *env = getenv("TRAIND_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (env && *env) {
		o->socket = env;
	} else if (xdg && *xdg &&
		   snprintf(o->socket_buf, sizeof(o->socket_buf), "%s/traind/traind.sock", xdg) <
			   (int)sizeof(o->socket_buf) &&
		   (access(o->socket_buf, F_OK) == 0 || access("/run/traind/traind.sock", F_OK) != 0)) {
		o->socket = o->socket_buf;
	} else {
		o->socket = "/run/traind/traind.sock";
	}
}

/* The default token file; its directory is made (0750) if missing. */
static int default_token_file(struct options *o)
{
	const char *rt = getenv("RUNTIME_DIRECTORY");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[4000];

	if (rt && *rt) {
		snprintf(dir, sizeof(dir), "%.3900s", rt);
		if (strchr(dir, ':'))   /* several directories: the first */
			*strchr(dir, ':') = '\0';
	} else if (xdg && *xdg) {
		snprintf(dir, sizeof(dir), "%.3900s/traind-web", xdg);
	} else {
		snprintf(dir, sizeof(dir), "/run/traind-web");
	}
	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return die("cannot make %s for the token: %s (give --token-file)", dir, strerror(errno));
	snprintf(o->token_buf, sizeof(o->token_buf), "%s/token", dir);
	o->token_file = o->token_buf;
	return 0;
}

static int make_token(char token[WEB_TOKEN_LEN + 1])
{
	unsigned char raw[WEB_TOKEN_LEN / 2];
	size_t got = 0;

	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return die("getrandom: %s", strerror(errno));
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(token + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

/* Write the token to `path` mode 0640: a temporary file beside it, fsync,
 * rename. */
static int write_token(const char *path, const char *token)
{
	char tmp[4200];
	int fd, rc = 0;
	size_t len = strlen(token);

	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0)
		return die("cannot write the token file %s: %s", tmp, strerror(errno));
	if (fchmod(fd, 0640) < 0 || write(fd, token, len) != (ssize_t)len || write(fd, "\n", 1) != 1 ||
	    fsync(fd) < 0)
		rc = die("cannot write the token file %s: %s", tmp, strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = die("cannot write the token file %s: %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, path) < 0)
		rc = die("cannot rename %s to %s: %s", tmp, path, strerror(errno));
	if (rc != 0)
		unlink(tmp);
	return rc;
}

static bool addr_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr);
	return false;
}

/* Bind and listen as --listen says; *url gets "http://HOST:PORT" (the port
 * the kernel chose for port 0) or "unix:PATH". */
static int open_listen(const struct options *o, int *fd_out, bool *unix_out, char *url, size_t n)
{
	const char *spec = o->listen;
	int fd = -1, one = 1;

	*fd_out = -1;
	*unix_out = false;
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		const char *path = spec + 5;
		struct stat st;

		if (!*path || strlen(path) >= sizeof(sun.sun_path))
			return BAD_FLAG("--listen %s: the path is empty or longer than %zu bytes", spec,
				   sizeof(sun.sun_path) - 1);
		memcpy(sun.sun_path, path, strlen(path));
		if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);   /* a stale socket of an earlier run */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || chmod(path, 0660) < 0 ||
		    listen(fd, 511) < 0) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			return die("--listen %s: %s", spec, strerror(e));
		}
		*unix_out = true;
		snprintf(url, n, "unix:%s", path);
	} else {
		char host[256];
		const char *colon = strrchr(spec, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
					  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
		struct addrinfo *ai = NULL;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		unsigned port;
		size_t hl;
		int grc;

		if (!colon || !parse_uint(colon + 1, 0, 65535, &port))
			return BAD_FLAG("--listen %s: want ADDR:PORT (127.0.0.1:8765, [::1]:8765) or unix:PATH", spec);
		hl = (size_t)(colon - spec);
		if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
			spec++;
			hl -= 2;
		}
		if (hl == 0 || hl >= sizeof(host))
			return BAD_FLAG("--listen %s: no address before the port", o->listen);
		memcpy(host, spec, hl);
		host[hl] = '\0';
		grc = getaddrinfo(host, colon + 1, &hints, &ai);
		if (grc != 0)
			return BAD_FLAG("--listen %s: %s is not a numeric IP address (%s)", o->listen, host,
				   gai_strerror(grc));
		if (!addr_loopback(ai->ai_addr) && !o->behind_proxy) {
			freeaddrinfo(ai);
			return BAD_FLAG("--listen %s: not a loopback address; traind-web speaks plain HTTP, so "
				   "serve it to a network only behind a TLS proxy, with --behind-proxy "
				   "(see doc/web.md)", o->listen);
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0)
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 511) < 0 ||
		    getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			freeaddrinfo(ai);
			return die("--listen %s: %s", o->listen, strerror(e));
		}
		port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						: ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(url, n, "http://%s%s%s:%u", ai->ai_family == AF_INET6 ? "[" : "", host,
			 ai->ai_family == AF_INET6 ? "]" : "", port);
		freeaddrinfo(ai);
	}
	*fd_out = fd;
	return 0;
}

/* A connection takes two descriptors (the gate keeps a duplicate) and
 * one being closed two more: raise the soft limit to the hard one, as traind
 * does, so that --max-connections is not cut short by a default of 1024. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int parse_args(int argc, char **argv, struct options *o)
{
	enum { OPT_SOCKET = 256, OPT_LISTEN, OPT_TOKEN_FILE, OPT_METRICS_TOKEN, OPT_BEHIND_PROXY,
	       OPT_STATIC_DIR, OPT_MAX_CONN, OPT_MAX_CLIENT, OPT_REQ_TIMEOUT, OPT_TIMEOUT, OPT_VERSION, OPT_HELP };
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, OPT_SOCKET },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "metrics-token", no_argument, NULL, OPT_METRICS_TOKEN },
		{ "behind-proxy", no_argument, NULL, OPT_BEHIND_PROXY },
		{ "static-dir", required_argument, NULL, OPT_STATIC_DIR },
		{ "max-connections", required_argument, NULL, OPT_MAX_CONN },
		{ "max-client-connections", required_argument, NULL, OPT_MAX_CLIENT },
		{ "request-timeout", required_argument, NULL, OPT_REQ_TIMEOUT },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, OPT_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	o->listen = "127.0.0.1:8765";
	o->static_dir = WEB_STATIC_DIR;
	o->max_connections = 128;
	o->timeout_s = 30;
	o->request_timeout_s = 10;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_SOCKET:
			if (!*optarg)
				return die("--socket: empty path");
			o->socket = optarg;
			break;
		case OPT_LISTEN: o->listen = optarg; break;
		case OPT_TOKEN_FILE:
			if (!*optarg)
				return die("--token-file: empty path");
			o->token_file = optarg;
			break;
		case OPT_METRICS_TOKEN: o->metrics_token = true; break;
		case OPT_BEHIND_PROXY: o->behind_proxy = true; break;
		case OPT_STATIC_DIR: o->static_dir = optarg; break;
		case OPT_MAX_CONN:
			if (!parse_uint(optarg, 1, 4096, &o->max_connections))
				return die("--max-connections %s: want a number from 1 to 4096", optarg);
			break;
		case OPT_MAX_CLIENT:
			if (!parse_uint(optarg, 1, 4096, &o->max_per_client))
				return die("--max-client-connections %s: want a number from 1 to 4096", optarg);
			break;
		case OPT_REQ_TIMEOUT:
			if (!parse_uint(optarg, 1, 3600, &o->request_timeout_s))
				return die("--request-timeout %s: want seconds from 1 to 3600", optarg);
			break;
		case OPT_TIMEOUT:
			if (!parse_uint(optarg, 1, 3600, &o->timeout_s))
				return die("--timeout %s: want seconds from 1 to 3600", optarg);
			break;
		case OPT_VERSION:
			printf("traind-web %s\n", TRAIND_VERSION);
			exit(0);
		case OPT_HELP:
			usage(stdout);
			exit(0);
		default:
			if (optopt >= 256 || (optopt == 0 && optind > 0))
				die("%s: needs a value or is not an option (see --help)", argv[optind - 1]);
			else
				die("unknown option (see --help)");
			return 2;
		}
	}
	if (optind < argc)
		return die("unexpected argument '%s' (see --help)", argv[optind]);
	if (!o->socket)
		default_socket(o);
	if (o->max_per_client > o->max_connections)
		return die("--max-client-connections %u: more than --max-connections %u", o->max_per_client,
			   o->max_connections);
	if (!o->max_per_client)
		/* behind a proxy every client is the proxy: let it limit them */
		o->max_per_client = o->behind_proxy || o->max_connections < 2 ? o->max_connections
									  : o->max_connections / 2;
	return 0;
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct web_config cfg = { 0 };
	struct web_server *server = NULL;
	struct tr_err err = { 0 };
	char token[WEB_TOKEN_LEN + 1];
	char url[512];
	sigset_t set;
	int sig, rc;

	rc = parse_args(argc, argv, &o);
	if (rc != 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	/* the signals that stop us are taken by sigwait below, blocked in every thread */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	rc = open_listen(&o, &cfg.listen_fd, &cfg.unix_listen, url, sizeof(url));
	if (rc != 0)
		return rc;
	if (pages_load(o.static_dir, &err) < 0) {
		close(cfg.listen_fd);
		return die("%s", err.msg);
	}
	if ((!o.token_file && default_token_file(&o) != 0) || make_token(token) != 0 ||
	    write_token(o.token_file, token) != 0) {
		close(cfg.listen_fd);
		pages_free();
		return 1;
	}
	cfg.socket = o.socket;
	cfg.policy.token = token;
	cfg.policy.metrics_token = o.metrics_token;
	cfg.max_connections = o.max_connections;
	cfg.max_per_client = o.max_per_client;
	cfg.timeout_s = o.timeout_s;
	cfg.request_timeout_s = o.request_timeout_s;
	if (http_start(&server, &cfg, &err) < 0) {
		close(cfg.listen_fd);
		pages_free();
		unlink(o.token_file);
		return die("%s", err.msg);
	}
	if (cfg.unix_listen)
		printf("traind-web: serving %s for traind at %s; the token is in %s\n", url, o.socket,
		       o.token_file);
	else
		printf("traind-web: serving %s/?token=%s for traind at %s (token in %s)\n", url, token,
		       o.socket, o.token_file);
	fflush(stdout);
#ifdef HAVE_SYSTEMD
	sd_notify(0, "READY=1");
#endif
	while (sigwait(&set, &sig) != 0)
		;
#ifdef HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1");
#endif
	http_stop(server);
	pages_free();
	unlink(o.token_file);   /* the token dies with us */
	return 0;
}
