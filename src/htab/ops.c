/* SPDX-License-Identifier: MIT */
/*
 * The savevm glue: the `spapr/htab` handler tables (save side over an
 * htab_save_t, load side over an htab_loader_t) and their registration as
 * idstr "spapr/htab", instance 0, version 1. Only adapters live here: it
 * must never hold state of its own.
 */
#include "hptmig/htab.h"

/* Errors travel in the channel: the savevm layer names the section. */
static int op_setup(void *opaque, mig_file_t *f)
{
	return htab_save_setup(opaque, f);
}

static int op_iterate(void *opaque, mig_file_t *f, uint64_t budget_ns)
{
	return htab_save_iterate(opaque, f, budget_ns);
}

static uint64_t op_pending(void *opaque)
{
	return htab_save_pending(opaque);
}

static int op_complete(void *opaque, mig_file_t *f)
{
	return htab_save_complete(opaque, f);
}

static void op_cleanup(void *opaque)
{
	htab_save_cleanup(opaque);
}

static int op_load(void *opaque, mig_file_t *f, uint32_t version_id, int record_type)
{
	if (version_id != HTAB_VERSION_ID)
		return mig_file_set_error(f, HM_E_VERSION, "spapr/htab: version %u (only %u exists)",
					  version_id, HTAB_VERSION_ID);
	return htab_loader_load(opaque, f, record_type);
}

const savevm_live_ops_t htab_save_ops = {
	.setup = op_setup,
	.iterate = op_iterate,
	.pending = op_pending,
	.complete = op_complete,
	.cleanup = op_cleanup,
};

const savevm_live_ops_t htab_load_ops = {
	.load = op_load,
};

int htab_register_save(savevm_registry_t *r, htab_save_t *s, hm_error_t *err)
{
	return savevm_register_live(r, HTAB_IDSTR, HTAB_INSTANCE_ID, HTAB_VERSION_ID,
				    HTAB_VERSION_ID, &htab_save_ops, s, err);
}

int htab_register_load(savevm_registry_t *r, htab_loader_t *l, hm_error_t *err)
{
	return savevm_register_live(r, HTAB_IDSTR, HTAB_INSTANCE_ID, HTAB_VERSION_ID,
				    HTAB_VERSION_ID, &htab_load_ops, l, err);
}
