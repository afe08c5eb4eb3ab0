/*
 * NAME
 *	adminwork - kmsd's side of administrators and approvals
 * DESCRIPTION
 *	kms_worker_approvals() looks at every request waiting for approvals
 *	(requests.status 'awaiting-approval') and decides it with
 *	kms_approval_check(): enough verified approvals -> 'queued' (kmsd then
 *	runs it); a verified rejection -> 'rejected'; past its expiry ->
 *	'expired'; else it keeps waiting. Votes that do not verify (an
 *	administrator row kmsd never authenticated, a bad signature, the
 *	requester's own vote) are ignored and logged.
 *
 *	kms_work_authorize() is called before any gated request runs, whatever
 *	its status says (a status set by SQL proves nothing): the request must
 *	be approved under the verified approval policy, else it is refused.
 *
 *	kms_work_admin() runs the administrators' own kinds: 'admin-add'
 *	(MAC the row kmsctl made), 'admin-remove', 'approvals-set', and
 *	'recover-start' (make the recovery token and its mail, the token
 *	remembering the request: tokens.request_id).
 *
 *	kms_work_recover_allowed() is the check at the other end of a
 *	recovery: when the verified policy gates recover, the token the user
 *	replied with must come from a recover-start request that is still
 *	approved when checked again, so a token inserted by SQL recovers
 *	nothing.
 * DIAGNOSTICS
 *	Refusals are KMS_ISSUE_ERROR_REFUSED (the worker fails the request).
 */
#ifndef KMS_ADMINWORK_H
#define KMS_ADMINWORK_H

#include <glib.h>

#include "keyvault/worker.h"

guint kms_worker_approvals(KmsWorker *w);
gboolean kms_work_authorize(KmsWorker *w, gint64 id, const char *kind, GError **err);
gboolean kms_work_admin(KmsWorker *w, gint64 id, const char *kind, const char *payload,
    GError **err);
gboolean kms_work_recover_allowed(KmsWorker *w, gint64 request_id, gint64 token_id, GError **err);

#endif
