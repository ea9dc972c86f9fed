/* SPDX-License-Identifier: MIT */
/*
 * TEST-ONLY QEMU stream walker (see qemu_walk.h): framing, `ram` skipping,
 * `spapr/htab` payloads to a callback. Strict: anything it does not know
 * (another live section, an unsupported ram flag) fails with the offset,
 * so a fixture that changes shape is noticed rather than misread.
 */
#include "qemu_walk.h"

#include <string.h>

#define QW_MAX_SECTIONS 64

enum { QW_OTHER = 0, QW_RAM = 1, QW_HTAB = 2 };

struct qw_section {
	uint32_t id;
	int kind;
};

static int qw_skip_ram(mig_file_t *f, int record_type)
{
	for (;;) {
		uint64_t off = mig_file_offset(f);
		uint64_t word = mig_file_get_be64(f);
		uint64_t flags = word & 0xfff;
		if (mig_file_status(f))
			return mig_file_status(f);
		if (flags & 0x10) /* EOS */
			return 0;
		if (flags & 0x04) { /* MEM_SIZE: block list, no block name before */
			uint64_t total = word & ~UINT64_C(0xfff), sum = 0;
			if (record_type != 1)
				return mig_file_set_error_at(f, HM_E_FORMAT, (int64_t)off,
							     "ram: MEM_SIZE outside START");
			while (sum < total && !mig_file_status(f)) {
				uint8_t l = mig_file_get_u8(f);
				mig_file_skip(f, l);
				sum += mig_file_get_be64(f);
			}
			continue;
		}
		if (flags & ~UINT64_C(0x2a))
			return mig_file_set_error_at(f, HM_E_UNSUPPORTED, (int64_t)off,
						     "ram: unsupported flags 0x%llx",
						     (unsigned long long)flags);
		if (!(flags & 0x20)) {
			uint8_t l = mig_file_get_u8(f);
			mig_file_skip(f, l);
		}
		if (flags & 0x02)
			mig_file_skip(f, 1);
		else if (flags & 0x08)
			mig_file_skip(f, 4096);
		else
			return mig_file_set_error_at(f, HM_E_FORMAT, (int64_t)off,
						     "ram: item without ZERO or PAGE (flags 0x%llx)",
						     (unsigned long long)flags);
	}
}

int qw_walk(const uint8_t *buf, size_t len, qw_htab_fn fn, void *opaque,
	    struct qw_stats *stats, hm_error_t *err)
{
	struct qw_section secs[QW_MAX_SECTIONS];
	unsigned nsecs = 0;
	mig_file_t *f;
	int rc = mig_file_open_mem_reader(buf, len, &f);
	if (rc)
		return hm_error_set(err, rc, -1, "walk: cannot open reader");
	if (stats)
		memset(stats, 0, sizeof(*stats));
	if (mig_file_get_be32(f) != 0x5145564d || mig_file_get_be32(f) != 3) {
		mig_file_set_error_at(f, HM_E_MAGIC, 0, "walk: not a version 3 QEMU stream");
		goto out;
	}
	for (;;) {
		uint64_t off = mig_file_offset(f);
		uint8_t type = mig_file_get_u8(f);
		if (mig_file_status(f))
			goto out;
		if (type == 0x00 || type == 0x04) /* EOF, or the first FULL: done */
			goto out;
		if (type == 0x07) { /* CONFIGURATION */
			mig_file_skip(f, mig_file_get_be32(f));
			if (mig_file_peek_u8(f) == 0x05) {
				mig_file_set_error_at(f, HM_E_UNSUPPORTED, (int64_t)mig_file_offset(f),
						      "walk: configuration subsections");
				goto out;
			}
			continue;
		}
		if (type == 0x08) { /* COMMAND */
			mig_file_get_be16(f);
			mig_file_skip(f, mig_file_get_be16(f));
			if (stats)
				stats->commands++;
			continue;
		}
		if (type != 0x01 && type != 0x02 && type != 0x03) {
			mig_file_set_error_at(f, HM_E_UNKNOWN, (int64_t)off,
					      "walk: record type 0x%02x", type);
			goto out;
		}
		uint32_t id = mig_file_get_be32(f);
		int kind = -1;
		if (type == 0x01) {
			char name[256];
			uint8_t l = mig_file_get_u8(f);
			mig_file_get_buffer(f, name, l);
			name[l] = 0;
			mig_file_get_be32(f); /* instance */
			mig_file_get_be32(f); /* version */
			kind = !strcmp(name, "ram") ? QW_RAM : !strcmp(name, "spapr/htab") ? QW_HTAB : QW_OTHER;
			if (kind == QW_OTHER || nsecs == QW_MAX_SECTIONS) {
				mig_file_set_error_at(f, HM_E_UNSUPPORTED, (int64_t)off,
						      "walk: live section '%s' not supported", name);
				goto out;
			}
			secs[nsecs].id = id;
			secs[nsecs++].kind = kind;
		} else {
			for (unsigned i = 0; i < nsecs; i++)
				if (secs[i].id == id)
					kind = secs[i].kind;
			if (kind < 0) {
				mig_file_set_error_at(f, HM_E_FORMAT, (int64_t)off,
						      "walk: record for unknown section id %u", id);
				goto out;
			}
		}
		if (mig_file_status(f))
			goto out;
		if (kind == QW_RAM) {
			if (qw_skip_ram(f, type))
				goto out;
			if (stats)
				stats->ram_records++;
		} else {
			rc = fn(opaque, type, f);
			if (rc && !mig_file_status(f))
				mig_file_set_error_at(f, rc, (int64_t)mig_file_offset(f),
						      "walk: htab callback failed");
			if (rc)
				goto out;
			if (stats)
				stats->htab_records++;
		}
		uint64_t foff = mig_file_offset(f);
		uint8_t ft = mig_file_get_u8(f);
		uint32_t fid = mig_file_get_be32(f);
		if (!mig_file_status(f) && (ft != 0x7e || fid != id)) {
			mig_file_set_error_at(f, HM_E_FOOTER, (int64_t)foff,
					      "walk: bad footer (type 0x%02x id %u, want 0x7e id %u)",
					      ft, fid, id);
			goto out;
		}
	}
out:
	return mig_file_close(f, err);
}
