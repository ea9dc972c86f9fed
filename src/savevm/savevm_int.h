/* SPDX-License-Identifier: MIT */
/*
 * Private interface between the vmstate engine and the framing code of the
 * savevm layer: saving with a vmdesc JSON description, and loading
 * subsections on their own (the configuration record uses that). Not for
 * other layers.
 */
#ifndef HPTMIG_SAVEVM_INT_H
#define HPTMIG_SAVEVM_INT_H

#include <jansson.h>

#include "hptmig/savevm.h"

/* The page size QEMU's ppc64 target writes in the vmdesc. */
#define SAVEVM_PAGE_SIZE 4096

/*
 * Save like vmstate_save and, when desc is not NULL, add "fields" (and
 * "subsections" when any is sent) to the JSON object desc, in QEMU's vmdesc
 * schema, with sizes measured from the bytes written.
 */
int vmstate_save_json(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque, uint32_t version,
		      json_t *desc, hm_error_t *err);

/*
 * Read the subsections that follow a payload of vmsd (wire-format.md §3):
 * stops at the first byte that is not a subsection of vmsd.
 */
int vmstate_load_subsections(mig_file_t *f, const vmstate_desc_t *vmsd, void *opaque,
			     const char *path, hm_error_t *err);

#endif
