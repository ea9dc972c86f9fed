/* SPDX-License-Identifier: MIT */
/*
 * `hptmig rewrite IN OUT [--json]`: copy a QEMU migration stream record for
 * record, re-encoding only `spapr/htab` canonically (the whole table once in
 * its END record). A regular OUT is written to a fresh temporary file
 * (mkstemp: O_EXCL, random name, in OUT's directory, so a planted symlink is
 * never followed), read back, and renamed into place only when everything
 * succeeded; its mode is kept. A pipe, character device, socket or `-` is
 * written straight through. It never replaces anything but a regular file.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hptmig/analyze.h"
#include "stream_input.h"
#include "tool.h"

static const char usage[] =
	"usage: hptmig rewrite IN OUT [--json] [--max-input SIZE]\n"
	"\n"
	"Copy every record of the QEMU migration stream IN to OUT as it is read, in\n"
	"constant memory, unchanged except spapr/htab: its table is loaded with every\n"
	"check and sent again canonically, whole, in the section's END record (START\n"
	"kept, PART records dropped). No section is ever added, so real QEMU accepts\n"
	"OUT.\n"
	"\n"
	"IN: a file (plain or .zst), '-' (stdin), or a migration URI as for analyze\n"
	"(file:, fd:, exec:, and tcp:/unix: listened on). 'rewrite - -' is a filter.\n"
	"\n"
	"OUT is a file or file:PATH (written to a temporary file beside it, walked\n"
	"again from the disk, renamed into place only on success, its mode kept; a\n"
	"symlink is followed and its target replaced), or a pipe, character device,\n"
	"listening unix socket, or '-' for stdout (written straight through, as\n"
	"validated; the summary then goes to stderr; after an error what was\n"
	"written is not a whole stream).\n"
	"\n"
	"  --json    print a JSON summary on stdout\n"
	"  --max-input SIZE  refuse an IN larger than SIZE bytes (suffix K, M, G:\n"
	"            binary units), once decompressed; default 16G (docs/limits.md)\n";

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t k = write(fd, p, len > ((size_t)1 << 30) ? (size_t)1 << 30 : len);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

/* With --json a failure prints an object too: status, error, error_code. */
static void fail_json(bool json, const char *in_path, const char *out_path, const hm_error_t *e)
{
	if (!json)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "status", json_string("failed"));
	json_object_set_new(o, "in", tool_json_str(in_path));
	json_object_set_new(o, "out", tool_json_str(out_path));
	const char *msg = e->code && e->msg[0] ? e->msg : hm_err_str(e->code);
	json_t *js = json_string(msg); /* ASCII: hm_error_t messages are escaped */
	json_object_set_new(o, "error", js ? js : tool_json_str(msg));
	json_object_set_new(o, "error_code", json_string(hm_err_name(e->code)));
	if (e->offset >= 0)
		json_object_set_new(o, "error_offset", json_integer(e->offset));
	/* OUT on stdout: stdout is the stream's, the summary goes to stderr */
	if (strcmp(out_path, "-") == 0) {
		char *text = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (text)
			fprintf(stderr, "%s\n", text);
		free(text);
		json_decref(o);
		return;
	}
	tool_print_json(o);
}

/* Where the rewritten stream goes, written as it is produced. */
struct sink {
	int fd;
	bool own_fd;        /* close it */
	bool regular;       /* a temporary file, renamed over dest on success */
	bool to_stdout;
	const char *name;
	char dest[PATH_MAX];
	char tmp[PATH_MAX + 32];
	mode_t mode;
};

static int sink_write(void *opaque, const uint8_t *p, size_t n)
{
	struct sink *k = opaque;
	return write_all(k->fd, p, n);
}

/* A temporary file beside path (O_EXCL, random name: a planted symlink is
 * never followed), given old's owner where we may. */
static int sink_temp(struct sink *k, const char *path, const struct stat *old, hm_error_t *err)
{
	char dcopy[PATH_MAX], bcopy[PATH_MAX];
	if (strlen(path) >= sizeof(dcopy))
		return hm_error_set(err, -ENAMETOOLONG, -1, "%s: path too long", path);
	strcpy(dcopy, path);
	strcpy(bcopy, path);
	strcpy(k->dest, path);
	int n = snprintf(k->tmp, sizeof(k->tmp), "%s/.%s.XXXXXX", dirname(dcopy), basename(bcopy));
	if (n < 0 || (size_t)n >= sizeof(k->tmp))
		return hm_error_set(err, -ENAMETOOLONG, -1, "%s: path too long", path);
	k->fd = mkstemp(k->tmp); /* O_CREAT | O_EXCL, mode 0600 */
	if (k->fd < 0)
		return hm_error_set(err, -errno, -1, "%s: cannot create a temporary file beside it: %s", path,
				    strerror(errno));
	k->own_fd = true;
	k->regular = true;
	if (old) {
		k->mode = old->st_mode & 07777;
		/* Root rewriting another user's file keeps its owner; anyone
		 * else cannot give a file away and keeps their own (as any
		 * editor's save-by-rename does). */
		if (old->st_uid != geteuid() || old->st_gid != getegid()) {
			if (fchown(k->fd, old->st_uid, old->st_gid) != 0) {
				/* EPERM: not root; the file stays ours */
			}
		}
	} else {
		mode_t um = umask(0);
		umask(um);
		k->mode = 0666 & ~um;
	}
	return 0;
}

/* A pipe, character device or socket (a listening unix one, e.g. QEMU's
 * -incoming unix:PATH), or our own stdout by another name. */
static int sink_special(struct sink *k, const char *out_path, const struct stat *st, hm_error_t *err)
{
	struct stat so;
	if (!S_ISFIFO(st->st_mode) && !S_ISCHR(st->st_mode) && !S_ISSOCK(st->st_mode))
		return hm_error_set(err, -EINVAL, -1,
				    "%s: not a regular file, pipe, character device or socket: not writing to it",
				    out_path);
	/* /dev/stdout, /proc/self/fd/1: our own stdout, whatever it is */
	if (fstat(STDOUT_FILENO, &so) == 0 && so.st_dev == st->st_dev && so.st_ino == st->st_ino) {
		k->to_stdout = true;
		k->fd = STDOUT_FILENO;
		return 0;
	}
	int fd;
	if (S_ISSOCK(st->st_mode)) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		if (strlen(out_path) >= sizeof(sa.sun_path))
			return hm_error_set(err, -ENAMETOOLONG, -1, "%s: socket path too long", out_path);
		strcpy(sa.sun_path, out_path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			int e = errno;
			close(fd);
			fd = -1;
			errno = e;
		}
	} else {
		fd = open(out_path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
	}
	if (fd < 0)
		return hm_error_set(err, -errno, -1, "%s: %s", out_path, strerror(errno));
	k->fd = fd;
	k->own_fd = true;
	return 0;
}

/* Open OUT: '-' is stdout (never a file named '-'); a regular file, a new
 * one or a symlink to one gets a temporary file beside its target. */
static int sink_open(struct sink *k, const char *out_path, hm_error_t *err)
{
	memset(k, 0, sizeof(*k));
	k->fd = -1;
	k->name = out_path;
	/* a reader that goes away is an error to report, not a signal */
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(out_path, "-") == 0) {
		k->to_stdout = true;
		k->fd = STDOUT_FILENO;
		k->name = "stdout";
		return 0;
	}
	if (strncmp(out_path, "file:", 5) == 0)
		out_path += 5;
	struct stat st, lst;
	if (stat(out_path, &st) != 0) {
		if (errno != ENOENT)
			return hm_error_set(err, -errno, -1, "%s: %s", out_path, strerror(errno));
		if (lstat(out_path, &lst) == 0)
			return hm_error_set(err, -ENOENT, -1,
					    "%s: a symlink to a file that does not exist: not following it", out_path);
		return sink_temp(k, out_path, NULL, err);
	}
	if (S_ISREG(st.st_mode)) {
		/* A symlink to a regular file: write its target (temporary
		 * file in the target's directory), the symlink stays. */
		char real[PATH_MAX];
		const char *dest = out_path;
		if (lstat(out_path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
			if (!realpath(out_path, real))
				return hm_error_set(err, -errno, -1, "%s: cannot resolve the symlink: %s", out_path,
						    strerror(errno));
			dest = real;
		}
		return sink_temp(k, dest, &st, err);
	}
	return sink_special(k, out_path, &st, err);
}

/*
 * A regular OUT: synced, walked again from the disk (it must walk like the
 * input did and carry the same table), given its mode and renamed into
 * place. *b: the output's report. Anything else: closed.
 */
static int sink_finish(struct sink *k, const an_report_t *a, an_report_t **b, hm_error_t *err)
{
	int rc = 0;
	const char *what = "closing";
	if (k->regular) {
		what = "syncing";
		if (fsync(k->fd) != 0)
			rc = -errno;
		an_fd_source_t *src = NULL;
		if (rc == 0 && lseek(k->fd, 0, SEEK_SET) != 0)
			rc = -errno;
		if (rc == 0) {
			what = "reading back";
			hm_error_t e;
			an_stream_opts_t so = {.max_input = AN_INPUT_MAX_LIMIT, .max_device_state = AN_DEVICE_STATE_MAX_LIMIT};
			if (an_fd_source_new(k->fd, k->tmp, &src, &e) < 0 ||
			    an_analyze_stream(an_fd_source_get(src), &so, b, &e) < 0 ||
			    memcmp(a->htab.digest, (*b)->htab.digest, HM_SHA256_LEN) != 0 || (*b)->complete != a->complete)
				rc = -EIO;
			an_fd_source_free(src);
		}
		if (rc == 0 && fchmod(k->fd, k->mode) != 0)
			rc = -errno, what = "setting the mode of";
	}
	if (k->own_fd && close(k->fd) != 0 && rc == 0)
		rc = -errno, what = "closing";
	k->own_fd = false;
	if (k->regular && rc == 0 && rename(k->tmp, k->dest) != 0)
		rc = -errno, what = "renaming into place";
	if (rc < 0 && k->regular) {
		unlink(k->tmp);
		return hm_error_set(err, rc, -1, "%s: %s the temporary file %s: %s%s", k->dest, what, k->tmp,
				    strerror(-rc),
				    rc == -EIO && strcmp(what, "reading back") == 0
					    ? " (the rewritten stream does not walk like the input: a bug in hptmig,"
					      " please report it with IN)"
					    : "");
	}
	if (rc < 0)
		return hm_error_set(err, rc, -1, "%s: %s: %s", k->name, what, strerror(-rc));
	return 0;
}

/* After a failure: nothing is renamed into place. */
static void sink_abort(struct sink *k)
{
	if (k->own_fd)
		close(k->fd);
	k->own_fd = false;
	if (k->regular)
		unlink(k->tmp);
}

/* The summary of a rewrite: one JSON object or one line, on sum. */
static void print_summary(FILE *sum, bool json, const char *in_path, const char *out_path,
			  size_t in_len, size_t out_len, const an_report_t *a, const an_report_t *b,
			  bool unchecked, bool checked, uint64_t rewrite_ns)
{
	char dig[65];
	/* b: OUT walked again (a regular file), else what was written:
	 * START, a PART after a resize, END */
	const an_htab_stats_t *h = &a->htab;
	unsigned long long rec_out = b ? b->htab.records
				       : h->n_start + 1 + (!h->no_hpt && h->shift != h->start_shift ? 1 : 0);
	hm_hex((b ? b : a)->htab.digest, HM_SHA256_LEN, dig);
	if (json) {
		json_t *o = json_pack("{sssososIsIsIsIsIsssbsbsf}", "status", "ok", "in", tool_json_str(in_path), "out",
				      tool_json_str(out_path),
				      "bytes_in", (json_int_t)in_len, "bytes_out", (json_int_t)out_len,
				      "htab_records_in", (json_int_t)a->htab.records, "htab_records_out",
				      (json_int_t)rec_out, "valid", (json_int_t)(b ? b : a)->htab.valid, "digest", dig,
				      "unchecked_tail", unchecked, "read_back", checked, "rewrite_ms",
				      (double)rewrite_ns / 1e6);
		char *js = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
		if (js)
			fprintf(sum, "%s\n", js);
		free(js);
		json_decref(o);
	} else {
		fprintf(sum,
			"rewrote %s -> %s: %zu -> %zu bytes; spapr/htab %llu records -> %llu, %llu valid entries,"
			" digest %s%s\n",
			in_path, out_path, in_len, out_len, (unsigned long long)a->htab.records,
			rec_out, (unsigned long long)(b ? b : a)->htab.valid, dig,
			unchecked ? " (records after the table copied unchecked: no vmdesc)" : "");
	}
	fflush(sum);
}

/* Parses the command line; returns 0, or 2 after saying what was wrong. */
static int parse_args(int argc, char **argv, const char **in_path, const char **out_path, bool *json,
		      uint64_t *max_input)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			*json = true;
		} else if (strcmp(argv[i], "--max-input") == 0) {
			if (i + 1 >= argc || !tool_parse_max_input(argv[i + 1], max_input)) {
				tool_fail("rewrite", "--max-input needs a size from 1 to 16G (e.g. 512M), got '%s'",
					  i + 1 < argc ? argv[i + 1] : "");
				return 2;
			}
			i++;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			tool_fail("rewrite", "unknown option '%s' (hptmig rewrite --help)", argv[i]);
			return 2;
		} else if (!*in_path) {
			*in_path = argv[i];
		} else if (!*out_path) {
			*out_path = argv[i];
		} else {
			tool_fail("rewrite", "extra argument '%s'", argv[i]);
			return 2;
		}
	}
	if (!*in_path || !*out_path) {
		tool_fail("rewrite", "needs IN and OUT (hptmig rewrite --help)");
		return 2;
	}
	return 0;
}

/* The library's message, which starts with "rewrite: " already. */
static void fail_rewrite(const char *in_path, const hm_error_t *err)
{
	char line[768];
	const char *msg = hm_error_line(err, line, sizeof(line));
	if (strncmp(msg, "rewrite: ", 9) == 0)
		msg += 9;
	tool_fail("rewrite", "%s: %s", in_path, msg);
}

static int run(int argc, char **argv)
{
	const char *in_path = NULL, *out_path = NULL;
	bool json = false;
	uint64_t max_input = 0; /* the defaults */
	if (parse_args(argc, argv, &in_path, &out_path, &json, &max_input) != 0)
		return 2;
	hm_error_t err;
	hm_error_clear(&err);
	tool_input_t *in = NULL;
	struct sink k;
	if (sink_open(&k, out_path, &err) < 0) {
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		return 1;
	}
	if (tool_input_open("rewrite", in_path, &in, &err) < 0) {
		sink_abort(&k);
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		return 1;
	}
	uint64_t t0 = hm_now_ns(), out_len = 0;
	bool unchecked = false;
	an_report_t *a = NULL, *b = NULL;
	an_stream_opts_t so = {.max_input = max_input};
	int rc = an_rewrite_stream(tool_input_source(in), &so, sink_write, &k, &a, &out_len, &unchecked, &err);
	uint64_t t1 = hm_now_ns();
	if (rc < 0) {
		sink_abort(&k);
		fail_rewrite(in_path, &err);
		if (!k.regular && out_len)
			tool_fail("rewrite", "%s: the %llu bytes written are not a whole stream", k.name,
				  (unsigned long long)out_len);
		fail_json(json, in_path, out_path, &err);
		rc = 1;
		goto out;
	}
	if (sink_finish(&k, a, &b, &err) < 0) {
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		rc = 1;
		goto out;
	}
	if (!k.regular)
		tool_fail("rewrite", "note: %s is not a regular file: written straight through, not read back to"
			  " check it", k.name);
	/* When the stream went to our stdout, the summary goes to stderr. */
	print_summary(k.to_stdout ? stderr : stdout, json, in_path, out_path, (size_t)a->file_bytes,
		      (size_t)out_len, a, b, unchecked, k.regular, t1 - t0);
	rc = 0;
out:
	an_report_free(a);
	an_report_free(b);
	tool_input_close(in);
	return rc;
}

const struct hm_cmd hm_cmd_rewrite = {
	.name = "rewrite",
	.summary = "re-encode spapr/htab canonically, keep every other byte",
	.usage = usage,
	.run = run,
};
