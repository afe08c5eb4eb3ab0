/*
 * NAME
 *	enroll - tokens and token mails for enrollment (see enroll.h)
 */
#include "autoconfig.h"
#include "enroll.h"

#include <string.h>

#include "common/address.h"
#include "common/token.h"
#include "keyvault/db.h"

gboolean
kms_enroll_user(PGconn *c, const KmsEnrollParams *p, const char *address, KmsSecret **token,
    char **normalized_address, GError **err)
{
	KmsDbParams q = KMS_DB_PARAMS_INIT;
	g_autofree char *addr = kms_address_normalize(address, -1);
	g_autoptr(KmsSecret) tok = NULL, norm = NULL;
	g_autoptr(PGresult) u = NULL, t = NULL, r = NULL;
	g_autoptr(GBytes) sealed = NULL;
	g_autofree char *payload = NULL, *b64 = NULL;
	guint8 hash[KMS_TOKEN_HASH_LEN];
	gint64 uid, tid, rid;

	*token = NULL;
	if (addr == NULL) {
		g_set_error(err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
		    "'%s' is not a mail address", address);
		return FALSE;
	}
	if ((tok = kms_token_new(err)) == NULL)
		return FALSE;
	norm = kms_token_normalize((const char *)tok->data, tok->len);
	kms_token_hash(norm, hash);

	kms_db_param_text(&q, addr);
	u = kms_db_run(c, "INSERT INTO users (address) VALUES ($1)"
	    " ON CONFLICT (lower(address)) DO UPDATE SET status = 'active'"
	    " RETURNING id, address", &q, err);
	if (u == NULL)
		return FALSE;
	uid = kms_db_get_int(u, 0, 0);

	kms_db_param_int(&q, uid);
	kms_db_param_text(&q, p->purpose);
	if (!kms_db_exec(c, "UPDATE tokens SET status = 'cancelled' WHERE user_id = $1"
	    " AND purpose = $2 AND status = 'pending'", &q, err))
		return FALSE;
	kms_db_param_int(&q, uid);
	kms_db_param_text(&q, p->purpose);
	kms_db_param_bytes(&q, hash, sizeof(hash));
	kms_db_param_int(&q, p->token_ttl);
	t = kms_db_run(c, "INSERT INTO tokens (user_id, purpose, token_hash, expires_at)"
	    " VALUES ($1, $2, $3, now() + $4 * interval '1 second')"
	    " RETURNING id, to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI \"UTC\"')",
	    &q, err);
	if (t == NULL)
		return FALSE;
	tid = kms_db_get_int(t, 0, 0);

	r = kms_db_run(c, "SELECT nextval(pg_get_serial_sequence('requests', 'id'))", NULL, err);
	if (r == NULL)
		return FALSE;
	rid = kms_db_get_int(r, 0, 0);
	if (p->deliver_mail) {
		sealed = kms_queue_seal(p->queue_pub, "token-mail", rid, tok->data, tok->len, err);
		if (sealed == NULL)
			return FALSE;
		b64 = g_base64_encode(g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	}
	payload = g_strdup_printf("{\"template\": \"%s\", \"token_id\": %" G_GINT64_FORMAT
	    ", \"expires\": \"%s\", \"sealed_token\": %s%s%s}",
	    p->deliver_mail ? p->purpose : (strcmp(p->purpose, "enroll") == 0 ? "enroll-oob" : "recover-oob"),
	    tid, PQgetvalue(t, 0, 1), b64 ? "\"" : "", b64 ? b64 : "null", b64 ? "\"" : "");
	kms_db_param_int(&q, rid);
	kms_db_param_int(&q, uid);
	kms_db_param_text(&q, payload);
	kms_db_param_int(&q, p->request_ttl);
	if (!kms_db_exec(c, "INSERT INTO requests (id, kind, user_id, payload, expires_at)"
	    " VALUES ($1, 'mail', $2, $3::jsonb, now() + $4 * interval '1 second')", &q, err))
		return FALSE;
	if (normalized_address)
		*normalized_address = g_strdup(PQgetvalue(u, 0, 1));
	*token = g_steal_pointer(&tok);
	return TRUE;
}
