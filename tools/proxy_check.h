/* SPDX-License-Identifier: MIT */
/*
 * The proxy's checker: a mig_proxy_filter_t that walks the stream as it
 * arrives with the analyser's streaming walker and forwards only bytes the
 * walk has validated (re-encoding spapr/htab canonically unless
 * passthrough), holding the final device sections until the vmdesc after
 * EOF is walked. It keeps the counts the proxy reports and prints the
 * progress lines (as analyze --follow). Tools only.
 */
#ifndef HPTMIG_TOOLS_PROXY_CHECK_H
#define HPTMIG_TOOLS_PROXY_CHECK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hptmig/proxy.h"

/* Default and largest cap of the held final device sections. */
#define PROXY_DEVICE_STATE_DEFAULT ((uint64_t)64 << 20)
#define PROXY_DEVICE_STATE_MAX ((uint64_t)1 << 30)

struct proxy_check_opts {
	bool passthrough;          /* forward spapr/htab records as they came */
	bool no_hold;              /* forward the final device sections unchecked */
	uint64_t max_device_state; /* cap of the held sections (bytes) */
	bool quiet;                /* no progress lines on stderr */
};

struct proxy_check;

void proxy_check_opts_default(struct proxy_check_opts *o);
int proxy_check_new(const struct proxy_check_opts *o, struct proxy_check **out, hm_error_t *err);
void proxy_check_free(struct proxy_check *c);
/* The filter to hand to mig_proxy_run (c outlives the run). */
void proxy_check_filter(struct proxy_check *c, mig_proxy_filter_t *f);
/* Add ram, htab, held_ms (and what else the walk learnt) to the report o. */
void proxy_check_json(const struct proxy_check *c, json_t *o);

#endif
