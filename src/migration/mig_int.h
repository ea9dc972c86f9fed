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

/*
 * The run handle's private side (live.c), each a no-op on NULL. begin: a
 * new run (status setup; the settings from bw and dl_ns unless a setter
 * ran before). settings: the values in force. attach_file: the stream a
 * bandwidth change applies to at once (NULL: none; it must stay open while
 * attached). publish: a snapshot (its settings and side are ignored).
 * end: the final status.
 */
void mig_live_begin(mig_live_t *l, bool source, uint64_t bw, uint64_t dl_ns);
void mig_live_settings(mig_live_t *l, uint64_t *bw, uint64_t *dl_ns);
void mig_live_attach_file(mig_live_t *l, mig_file_t *f);
void mig_live_publish(mig_live_t *l, const mig_status_t *s);
void mig_live_end(mig_live_t *l, enum mig_run_status status, uint64_t transferred,
		  uint64_t downtime_ns);

/*
 * A TLS session over a connected socket (tls.c). Reads never block: a
 * caller polls the fd for POLLIN when mig_tls_recv gives -EAGAIN, and
 * checks mig_tls_pending before a poll. Sends block as the socket does.
 * One thread may send while another receives (GnuTLS allows it); no
 * renegotiation is ever started.
 */
typedef struct mig_tls mig_tls_t;
/* Handshake on fd (host: the name a client checks when the credentials name
 * none) by end (absolute ns), ended early when the cancel's fd cfd (-1:
 * none) becomes readable; 0, or -errno, HM_E_TIMEOUT or HM_E_CANCELLED
 * with why filled (-EPROTO: refused by GnuTLS or the peer,
 * -EPROTONOSUPPORT: a server's peer sent a plain migration stream, -EACCES:
 * a DN --tls-authz does not allow). */
int mig_tls_handshake(const mig_tls_creds_t *c, int fd, const char *host, uint64_t end, int cfd,
		      mig_tls_t **out, char *why, size_t wl);
/* The TLS session of c (NULL: none), for a relay that does its own I/O on
 * mig_conn_raw_fd: every byte must then go through mig_tls_recv/send. */
mig_tls_t *mig_conn_tls(const mig_conn_t *c);
enum mig_tls_endpoint mig_tls_creds_endpoint(const mig_tls_creds_t *c);
/* recv(MSG_DONTWAIT) on fd, through tls when it is not NULL: >= 0 bytes,
 * or -1 with errno (EAGAIN: nothing now; EPROTO: mig_tls_why says why). */
ssize_t mig_sock_recv_nb(int fd, mig_tls_t *tls, void *buf, size_t len);
bool mig_tls_pending(mig_tls_t *t);
/* >0 bytes, 0 at the end (close_notify or a close), -EAGAIN, -errno; for
 * -EPROTO the words are in mig_tls_why. */
ssize_t mig_tls_recv(mig_tls_t *t, void *buf, size_t len);
ssize_t mig_tls_send(mig_tls_t *t, const void *buf, size_t len);
/* Send close_notify: the peer's reads see the end of the stream. */
void mig_tls_bye(mig_tls_t *t);
const char *mig_tls_why(const mig_tls_t *t);
/* The peer ended the session with a fatal alert before sending a byte:
 * it refused us at the handshake (a certificate, --tls-authz). */
bool mig_tls_refused(const mig_tls_t *t);
/* c's TLS session was refused so (mig_tls_refused): the destination never
 * loaded anything, so a stopped source may resume. */
bool mig_conn_tls_refused(const mig_conn_t *c);
void mig_tls_free(mig_tls_t *t);

#endif
