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
#include "tool.h"

static const char usage[] =
	"usage: hptmig rewrite IN OUT [--json] [--max-input SIZE]\n"
	"\n"
	"Copy every record of the QEMU migration stream IN (plain or .zst) to OUT\n"
	"unchanged, except spapr/htab: its table is loaded with every check and sent\n"
	"again canonically, whole, in the section's END record (START kept, PART\n"
	"records dropped). No section is ever added, so real QEMU accepts OUT.\n"
	"\n"
	"OUT is a file (written to a temporary file beside it, read back, renamed\n"
	"into place only on success, its mode kept; a symlink is followed and its\n"
	"target replaced), or a pipe, character device, listening unix socket, or\n"
	"'-' for stdout (written straight through; the summary then goes to\n"
	"stderr).\n"
	"\n"
	"  --json    print a JSON summary on stdout\n"
	"  --max-input SIZE  refuse an IN larger than SIZE bytes (suffix K, M, G:\n"
	"            binary units), plain or once decompressed; default 1G for a\n"
	"            plain file, 112M for a .zst (docs/limits.md)\n";

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

/* The bytes of fd from offset 0 are exactly data[0, len). */
static int read_back(int fd, const uint8_t *data, size_t len)
{
	uint8_t buf[1 << 16];
	size_t off = 0;
	for (;;) {
		ssize_t k = pread(fd, buf, sizeof(buf), (off_t)off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (k == 0)
			return off == len ? 0 : -EIO;
		if ((size_t)k > len - off || memcmp(buf, data + off, (size_t)k) != 0)
			return -EIO;
		off += (size_t)k;
	}
}

/* Straight through to an open pipe, character device, socket or stdout. */
static int write_stream(int fd, const char *name, const uint8_t *data, size_t len, hm_error_t *err)
{
	int rc = write_all(fd, data, len);
	if (rc < 0)
		return hm_error_set(err, rc, -1, "%s: %s", name, strerror(-rc));
	return 0;
}

/*
 * A regular file, or a new one: temporary file beside it, written, synced,
 * read back, given OUT's mode (new: 0666 & ~umask), renamed over it.
 */
static int write_regular(const char *path, const struct stat *old, const uint8_t *data, size_t len,
			 hm_error_t *err)
{
	char dcopy[PATH_MAX], bcopy[PATH_MAX], tmp[PATH_MAX + 32];
	if (strlen(path) >= sizeof(dcopy))
		return hm_error_set(err, -ENAMETOOLONG, -1, "%s: path too long", path);
	strcpy(dcopy, path);
	strcpy(bcopy, path);
	int n = snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dirname(dcopy), basename(bcopy));
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return hm_error_set(err, -ENAMETOOLONG, -1, "%s: path too long", path);
	int fd = mkstemp(tmp); /* O_CREAT | O_EXCL, mode 0600 */
	if (fd < 0)
		return hm_error_set(err, -errno, -1, "%s: cannot create a temporary file beside it: %s", path,
				    strerror(errno));
	mode_t mode;
	if (old) {
		mode = old->st_mode & 07777;
		/* Root rewriting another user's file keeps its owner; anyone
		 * else cannot give a file away and keeps their own (as any
		 * editor's save-by-rename does). */
		if (old->st_uid != geteuid() || old->st_gid != getegid()) {
			if (fchown(fd, old->st_uid, old->st_gid) != 0) {
				/* EPERM: not root; the file stays ours */
			}
		}
	} else {
		mode_t um = umask(0);
		umask(um);
		mode = 0666 & ~um;
	}
	const char *what = "writing";
	int rc = write_all(fd, data, len);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno, what = "syncing";
	if (rc == 0 && (rc = read_back(fd, data, len)) < 0)
		what = "reading back";
	if (rc == 0 && fchmod(fd, mode) != 0)
		rc = -errno, what = "setting the mode of";
	if (close(fd) != 0 && rc == 0)
		rc = -errno, what = "closing";
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno, what = "renaming into place";
	if (rc < 0) {
		unlink(tmp);
		return hm_error_set(err, rc, -1, "%s: %s the temporary file %s: %s%s", path, what, tmp,
				    strerror(-rc), rc == -EIO && strcmp(what, "reading back") == 0
							   ? " (the bytes read back differ)" : "");
	}
	return 0;
}

/*
 * Write the rewritten stream to out_path. *checked says whether the bytes
 * were read back from OUT; *to_stdout whether they went to our stdout.
 */
static int write_out(const char *out_path, const uint8_t *data, size_t len, bool *checked, bool *to_stdout,
		     hm_error_t *err)
{
	*checked = false;
	*to_stdout = false;
	/* a reader that goes away is an error to report, not a signal */
	signal(SIGPIPE, SIG_IGN);
	if (strcmp(out_path, "-") == 0) {
		*to_stdout = true;
		return write_stream(STDOUT_FILENO, "stdout", data, len, err);
	}
	struct stat st, lst, so;
	if (stat(out_path, &st) != 0) {
		if (errno != ENOENT)
			return hm_error_set(err, -errno, -1, "%s: %s", out_path, strerror(errno));
		if (lstat(out_path, &lst) == 0)
			return hm_error_set(err, -ENOENT, -1,
					    "%s: a symlink to a file that does not exist: not following it", out_path);
		if (write_regular(out_path, NULL, data, len, err) < 0)
			return err->code;
		*checked = true;
		return 0;
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
		if (write_regular(dest, &st, data, len, err) < 0)
			return err->code;
		*checked = true;
		return 0;
	}
	if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISSOCK(st.st_mode))
		return hm_error_set(err, -EINVAL, -1,
				    "%s: not a regular file, pipe, character device or socket: not writing to it",
				    out_path);
	/* /dev/stdout, /proc/self/fd/1: our own stdout, whatever it is */
	if (fstat(STDOUT_FILENO, &so) == 0 && so.st_dev == st.st_dev && so.st_ino == st.st_ino) {
		*to_stdout = true;
		return write_stream(STDOUT_FILENO, out_path, data, len, err);
	}
	int fd;
	if (S_ISSOCK(st.st_mode)) {
		/* a listening unix socket (e.g. QEMU's -incoming unix:PATH) */
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
	int rc = write_stream(fd, out_path, data, len, err);
	if (close(fd) != 0 && rc == 0)
		rc = hm_error_set(err, -errno, -1, "%s: %s", out_path, strerror(errno));
	return rc;
}

/* The summary of a rewrite: one JSON object or one line, on sum. */
static void print_summary(FILE *sum, bool json, const char *in_path, const char *out_path,
			  size_t in_len, size_t out_len, const an_report_t *a, const an_report_t *b,
			  bool unchecked, bool checked, uint64_t rewrite_ns)
{
	char dig[65];
	hm_hex(b->htab.digest, HM_SHA256_LEN, dig);
	if (json) {
		json_t *o = json_pack("{sssososIsIsIsIsIsssbsbsf}", "status", "ok", "in", tool_json_str(in_path), "out",
				      tool_json_str(out_path),
				      "bytes_in", (json_int_t)in_len, "bytes_out", (json_int_t)out_len,
				      "htab_records_in", (json_int_t)a->htab.records, "htab_records_out",
				      (json_int_t)b->htab.records, "valid", (json_int_t)b->htab.valid, "digest", dig,
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
			(unsigned long long)b->htab.records, (unsigned long long)b->htab.valid, dig,
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

static int run(int argc, char **argv)
{
	const char *in_path = NULL, *out_path = NULL;
	bool json = false;
	uint64_t max_input = 0; /* the defaults */
	if (parse_args(argc, argv, &in_path, &out_path, &json, &max_input) != 0)
		return 2;
	hm_error_t err;
	hm_error_clear(&err);
	an_input_t in;
	if (an_input_open_max(in_path, max_input, &in, &err) < 0) {
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		return 1;
	}
	uint64_t t0 = hm_now_ns();
	uint8_t *out = NULL;
	size_t out_len = 0;
	bool unchecked = false;
	if (an_rewrite(in.data, in.len, &out, &out_len, &unchecked, &err) < 0) {
		char line[768];
		/* the library's message starts with "rewrite: " already */
		const char *msg = hm_error_line(&err, line, sizeof(line));
		if (strncmp(msg, "rewrite: ", 9) == 0)
			msg += 9;
		tool_fail("rewrite", "%s: %s", in_path, msg);
		fail_json(json, in_path, out_path, &err);
		an_input_close(&in);
		return 1;
	}
	uint64_t t1 = hm_now_ns();
	/* Before writing: the output walks like the input and carries the
	 * same table. an_rewrite only succeeds on such output (the fuzz
	 * target fuzz_rewrite holds it to that), so this refusing is a bug in
	 * hptmig, never an answer to input. */
	an_report_t *a = NULL, *b = NULL;
	hm_error_t aerr;
	int arc = an_analyze(in.data, in.len, 0, &a, &aerr);
	int rc = an_analyze(out, out_len, 0, &b, &err);
	bool same = arc == 0 && rc == 0 && memcmp(a->htab.digest, b->htab.digest, HM_SHA256_LEN) == 0 &&
		    b->complete == a->complete;
	if (!same) {
		char line[768];
		tool_fail("rewrite", "%s: not writing %s: the rewritten stream %s (a bug in hptmig: please report it"
			  " with IN)",
			  in_path, out_path,
			  arc < 0 ? "input no longer walks"
			  : rc < 0 ? hm_error_line(&err, line, sizeof(line))
				   : "has another HTAB digest");
		if (err.code == 0)
			hm_error_set(&err, HM_E_DIGEST, -1, "the rewritten stream %s",
				     arc < 0 ? "no longer walks" : "has another HTAB digest");
		fail_json(json, in_path, out_path, &err);
		rc = 1;
		goto out;
	}
	bool checked = false, to_stdout = false;
	if (write_out(out_path, out, out_len, &checked, &to_stdout, &err) < 0) {
		tool_fail_error("rewrite", &err);
		fail_json(json, in_path, out_path, &err);
		rc = 1;
		goto out;
	}
	if (!checked)
		tool_fail("rewrite", "note: %s is not a regular file: written straight through, not read back to"
			  " check it", strcmp(out_path, "-") == 0 ? "stdout" : out_path);
	/* When the stream went to our stdout, the summary goes to stderr. */
	print_summary(to_stdout ? stderr : stdout, json, in_path, out_path, in.len, out_len, a, b,
		      unchecked, checked, t1 - t0);
	rc = 0;
out:
	free(out);
	an_report_free(a);
	an_report_free(b);
	an_input_close(&in);
	return rc;
}

const struct hm_cmd hm_cmd_rewrite = {
	.name = "rewrite",
	.summary = "re-encode spapr/htab canonically, keep every other byte",
	.usage = usage,
	.run = run,
};
