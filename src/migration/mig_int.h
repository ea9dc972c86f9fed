/* SPDX-License-Identifier: MIT */
/*
 * Private parts of the migration layer shared by its files. Nothing outside
 * src/migration/ includes this.
 */
#ifndef HPTMIG_MIG_INT_H
#define HPTMIG_MIG_INT_H

#include <stdio.h>

#include "hptmig/hpt.h"
#include "hptmig/htab.h"
#include "hptmig/machine.h"
#include "hptmig/migration.h"
#include "hptmig/savevm.h"

/* The machine type we announce in the CONFIGURATION record. */
#define MIG_MACHINE_NAME "pseries-10.0"

/* Register (or with NULL forget) the connection a cancel must wake. */
void mig_cancel_attach(mig_cancel_t *c, mig_conn_t *conn);

/*
 * Create *reg (the caller frees it, also on failure) and register the
 * guest's sections: `spapr/htab` with save (source) or else load
 * (destination), `spapr` on spapr, and `hptmig/verify` on verify unless it
 * is NULL (a stream meant for QEMU). The states must outlive the registry.
 */
int mig_register_guest(savevm_registry_t **reg, htab_save_t *save, htab_loader_t *load,
		       spapr_state_t *spapr, savevm_verify_t *verify, hm_error_t *err);

#endif
