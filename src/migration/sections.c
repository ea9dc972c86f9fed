/* SPDX-License-Identifier: MIT */
/*
 * The guest's sections, registered the same way on both ends of a
 * migration: `spapr/htab` (the live table; a saver on the source, a loader
 * on the destination), `spapr` and, unless the stream is meant for QEMU,
 * `hptmig/verify`. One place, so the two ends cannot drift apart.
 */
#include "mig_int.h"

int mig_register_guest(savevm_registry_t **reg, htab_save_t *save, htab_loader_t *load,
		       spapr_state_t *spapr, savevm_verify_t *verify, hm_error_t *err)
{
	int rc = savevm_registry_new(reg);
	if (rc)
		return hm_error_set(err, rc, -1, "out of memory");
	rc = save ? htab_register_save(*reg, save, err) : htab_register_load(*reg, load, err);
	if (!rc)
		rc = machine_spapr_register(*reg, spapr, err);
	if (!rc && verify)
		rc = savevm_register_verify(*reg, verify, err);
	return rc;
}
