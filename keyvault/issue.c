/*
 * NAME
 *	issue - enrollment and recovery (see issue.h)
 * SECURITY
 *	The CA key, the new encryption key, an ephemeral signing key, the
 *	escrowed keys of a recovery and the PKCS#12 password live in this
 *	file's Job only while one request runs; EVP_PKEY_free wipes the
 *	private numbers and KmsSecret wipes the password and PKCS#8 blobs.
 *	Log lines name the request, the address and certificate serials.
 */
#include "autoconfig.h"
#include "issue.h"

#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "keyvault/adminwork.h"
#include "keyvault/audit.h"
#include "keyvault/certstore.h"
#include "keyvault/db.h"
#include "keyvault/queuekey.h"
#include "keyvault/vaultca.h"
#include "smime/ca.h"
#include "smime/csr.h"
#include "smime/pkcs12.h"
#include "smime/x509util.h"

G_DEFINE_QUARK(kms-issue-error-quark, kms_issue_error)

/*
 * Escrowed keys per recovery file. Opened keys live in OpenSSL's secure
 * heap (64 KiB in kmsd, common/secret.c), where an RSA-3072 key takes
 * about 1.8 KiB: a long key history is mailed in several files so that
 * memory stays bounded whatever the history's length.
 */
#define RECOVER_PER_FILE 16

/* One request's working set; job_clear() frees and wipes it. */
typedef struct {
	KmsWorker *w;
	PGconn *db;
	gint64 id;
	gint64 user_id;
	const char *address;
	const KmsVaultCa *ca;	/* the worker's (kms_worker_ca) */
	EVP_PKEY *ca_key;	/* the worker's */
	KmsSecret *password;
	gboolean pin;		/* the password is the administrator's PIN */
	GArray *entries;	/* KmsP12Entry, pointing into the arrays below */
	GPtrArray *keys;	/* EVP_PKEY, owned */
	GPtrArray *certs;	/* X509, owned */
	GPtrArray *names;	/* friendly names, owned */
	STACK_OF(X509) *chain;	/* extra certificates (in certs), borrowed */
	char *expiry;		/* the new encryption certificate's notAfter date */
	const char *signing;	/* what the enrollment did for signing */
} Job;

static void
job_clear(Job *j)
{
	sk_X509_free(j->chain);
	if (j->entries)
		g_array_unref(j->entries);
	if (j->keys)
		g_ptr_array_unref(j->keys);
	if (j->certs)
		g_ptr_array_unref(j->certs);
	if (j->names)
		g_ptr_array_unref(j->names);
	kms_secret_free(j->password);
	g_free(j->expiry);
}

gboolean
kms_refuse(GError **err, const char *fmt, ...)
{
	va_list ap;
	g_autofree char *msg = NULL;

	va_start(ap, fmt);
	msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error_literal(err, KMS_ISSUE_ERROR, KMS_ISSUE_ERROR_REFUSED, msg);
	return FALSE;
}

/* "2026-11-22" of an ASN1_TIME; g_free. */
static char *
day_of(const ASN1_TIME *t)
{
	g_autofree char *iso = kms_asn1_time_iso8601(t);

	return g_strndup(iso ? iso : "", 10);
}

/* Put KEY (may be NULL: a certificate only) and CERT into the job, which
 * owns them from now on. With a key they become a PKCS#12 entry named
 * "ADDRESS (USAGE DATE)"; without, an extra certificate. */
static void
job_add(Job *j, EVP_PKEY *key, X509 *cert, const char *usage)
{
	g_ptr_array_add(j->certs, cert);
	if (key == NULL) {
		sk_X509_push(j->chain, cert);
		return;
	}
	{
		g_autofree char *day = day_of(X509_get0_notBefore(cert));
		char *name = g_strdup_printf("%s (%s %s)", j->address, usage, day);
		KmsP12Entry e = {key, cert, name};

		g_ptr_array_add(j->keys, key);
		g_ptr_array_add(j->names, name);
		g_array_append_val(j->entries, e);
	}
}

/* The PKCS#12 password: the PIN sealed on the token row in pin mode, else
 * the token of the reply, sealed to the queue key in the payload. */
static gboolean
open_password(Job *j, JsonObject *o, GError **err)
{
	const char *mode = kms_config_get(j->w->cfg, "enrollment", "p12_password");
	const char *sealed = json_object_get_string_member_with_default(o, "sealed_password", NULL);
	g_autoptr(GError) e = NULL;
	g_autofree guchar *blob = NULL;
	gsize len;

	if (mode && strcmp(mode, "pin") == 0) {
		gint64 tid = json_object_get_int_member_with_default(o, "token_id", 0);
		KmsDbParams p = KMS_DB_PARAMS_INIT;
		g_autoptr(PGresult) r = NULL;

		kms_db_param_int(&p, tid);
		kms_db_param_int(&p, j->user_id);
		r = kms_db_run(j->db, "SELECT sealed_pin FROM tokens WHERE id = $1 AND user_id = $2",
		    &p, err);
		if (r == NULL)
			return FALSE;
		if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
			g_autoptr(GBytes) pin = kms_db_get_bytes(r, 0, 0);

			j->password = kms_queue_open(j->w->queue_priv, "p12-pin", tid,
			    g_bytes_get_data(pin, NULL), g_bytes_get_size(pin), &e);
			if (j->password == NULL)
				return kms_refuse(err, "request %" G_GINT64_FORMAT ": cannot open the PIN"
				    " of token %" G_GINT64_FORMAT ": %s", j->id, tid, e->message);
			j->pin = TRUE;
			/* used once: the sealed PIN goes with this transaction */
			kms_db_param_int(&p, tid);
			return kms_db_exec(j->db, "UPDATE tokens SET sealed_pin = NULL WHERE id = $1",
			    &p, err);
		}
		kms_warn("request %" G_GINT64_FORMAT ": token %" G_GINT64_FORMAT " of %s has no PIN"
		    " (made before p12_password = pin?): the PKCS#12 password is the token",
		    j->id, tid, j->address);
	}
	if (sealed == NULL || *sealed == '\0')
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": the payload has no sealed password",
		    j->id);
	blob = g_base64_decode(sealed, &len);
	j->password = kms_queue_open(j->w->queue_priv, "p12-password", j->id, blob, len, &e);
	if (j->password == NULL)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": cannot open the PKCS#12 password: %s",
		    j->id, e->message);
	return TRUE;
}

/* A certificate of PROFILE for PUB from the active CA. Caller frees. */
static X509 *
issue(Job *j, EVP_PKEY *pub, KmsCertProfile profile, GError **err)
{
	KmsIssueParams ip = {
		profile, j->address, NULL,
		(int)kms_config_get_int(j->w->cfg, "ca", "cert_days"),
		kms_config_get(j->w->cfg, "ca", "crl_url"),
	};

	return kms_ca_issue(j->ca->cert, j->ca_key, pub, &ip, err);
}

/* Seal KEY's PKCS#8 into a new escrowed_keys row for CERT_ID. */
static gboolean
escrow(Job *j, EVP_PKEY *key, KmsKeyType type, gint64 cert_id, GError **err)
{
	KmsVault *v = j->w->vault;
	g_autoptr(KmsSecret) p8 = kms_key_to_pkcs8(key, err);
	g_autoptr(GBytes) sealed = NULL;
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	gint64 row;

	if (p8 == NULL || !kms_vault_next_id(v, "escrowed_keys", &row, err))
		return FALSE;
	sealed = kms_vault_seal(v, "escrowed_keys", "sealed_key", row, p8->data, p8->len, err);
	if (sealed == NULL)
		return FALSE;
	kms_db_param_int(&p, row);
	kms_db_param_int(&p, j->user_id);
	kms_db_param_int(&p, cert_id);
	kms_db_param_text(&p, kms_key_type_name(type));
	kms_db_param_int(&p, kms_vault_key_version(v));
	kms_db_param_bytes(&p, g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
	return kms_db_exec(j->db, "INSERT INTO escrowed_keys (id, user_id, certificate_id, key_type,"
	    " key_version, sealed_key) VALUES ($1, $2, $3, $4, $5, $6)", &p, err);
}

/* Issue CERT's record and log it; FALSE with *err. */
static gboolean
record(Job *j, X509 *cert, const char *usage, gint64 *cert_id, GError **err)
{
	g_autofree char *serial = kms_x509_serial_hex(cert);
	gint64 cid = kms_certstore_add_issued(j->db, cert, usage, j->user_id, err);

	if (cid == 0)
		return FALSE;
	kms_info("request %" G_GINT64_FORMAT ": issued %s certificate %s for %s", j->id, usage,
	    serial, j->address);
	if (cert_id)
		*cert_id = cid;
	return TRUE;
}

/* Enrollment: new encryption key, escrowed; certificates; signing. */
static gboolean
do_enroll(Job *j, JsonObject *o, GError **err)
{
	const KmsConfig *cfg = j->w->cfg;
	const char *kt = kms_config_get(cfg, "enrollment", "key_type");
	const char *sk = kms_config_get(cfg, "enrollment", "signing_key");
	const char *csr64 = json_object_get_string_member_with_default(o, "csr", NULL);
	X509_REQ *req = NULL;
	EVP_PKEY *key, *skey;
	X509 *cert, *scert;
	KmsKeyType type;
	gint64 cid;
	gboolean ok = FALSE;

	if (kt == NULL || !kms_key_type_parse(kt, &type))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": unknown [enrollment] key_type %s",
		    j->id, kt ? kt : "(unset)");
	/* the request first: a bad one costs no key generation */
	if (csr64 && *csr64) {
		gsize len;
		g_autofree guchar *der = g_base64_decode(csr64, &len);
		g_autoptr(GError) e = NULL;

		if ((req = kms_csr_parse(der, len, &e)) == NULL)
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": the certificate request of"
			    " %s is not usable: %s", j->id, j->address, e->message);
	}
	kms_info("request %" G_GINT64_FORMAT ": generating %s encryption key for %s", j->id,
	    kms_key_type_name(type), j->address);
	if ((key = kms_key_generate(type, err)) == NULL)
		goto out;
	if ((cert = issue(j, key, KMS_PROFILE_ENCRYPTION, err)) == NULL) {
		EVP_PKEY_free(key);
		goto out;
	}
	job_add(j, key, cert, "encryption");
	j->expiry = day_of(X509_get0_notAfter(cert));
	if (!record(j, cert, "encryption", &cid, err) || !escrow(j, key, type, cid, err))
		goto out;

	if (req) {
		/* the user keeps the key; we certify what she proved to hold */
		if ((scert = issue(j, X509_REQ_get0_pubkey(req), KMS_PROFILE_SIGNING, err)) == NULL)
			goto out;
		job_add(j, NULL, scert, "signing");
		if (!record(j, scert, "signing", NULL, err))
			goto out;
		j->signing = "a signing certificate for the key of the certificate request you sent"
		    " (that key never left your computer)";
	} else if (sk && strcmp(sk, "ephemeral") == 0) {
		/* lives in this process and the PKCS#12 only, never stored */
		if ((skey = kms_key_generate(type, err)) == NULL)
			goto out;
		if ((scert = issue(j, skey, KMS_PROFILE_SIGNING, err)) == NULL) {
			EVP_PKEY_free(skey);
			goto out;
		}
		job_add(j, skey, scert, "signing");
		if (!record(j, scert, "signing", NULL, err))
			goto out;
		j->signing = "a signing key and its certificate (the service keeps no copy of"
		    " the signing key)";
	} else
		j->signing = "no signing certificate";
	ok = TRUE;
out:
	X509_REQ_free(req);
	return ok;
}

/* Drop the entries and extra certificates (one recovery file is out). */
static void
job_reset(Job *j)
{
	g_array_set_size(j->entries, 0);
	g_ptr_array_set_size(j->keys, 0);
	g_ptr_array_set_size(j->names, 0);
	while (sk_X509_num(j->chain) > 0)
		sk_X509_pop(j->chain);
	g_ptr_array_set_size(j->certs, 0);
}

/* Build the PKCS#12 and mail it to the enrolled address; PART of PARTS
 * when a recovery needs several files. */
static gboolean
send_p12(Job *j, gboolean enroll, guint part, guint parts, GError **err)
{
	const char *pname = kms_config_get(j->w->cfg, "enrollment", "p12_profile");
	const char *enroll_addr = kms_config_get(j->w->cfg, "milter", "enroll_address");
	g_autoptr(GBytes) p12 = NULL;
	g_autofree char *file = NULL, *local = NULL, *count = NULL, *partof = NULL;
	STACK_OF(X509) *chain = sk_X509_dup(j->chain);
	KmsP12Profile profile;

	if (pname == NULL || !kms_p12_profile_parse(pname, &profile))
		profile = KMS_P12_MODERN;
	sk_X509_push(chain, j->ca->cert);
	for (int i = 0; i < sk_X509_num(j->ca->chain); i++)
		sk_X509_push(chain, sk_X509_value(j->ca->chain, i));
	p12 = kms_p12_build((const KmsP12Entry *)(void *)j->entries->data, j->entries->len,
	    chain, (const char *)j->password->data, profile, err);
	sk_X509_free(chain);
	if (p12 == NULL)
		return FALSE;
	if (parts > 1) {
		file = g_strdup_printf("smime-%s-%u.p12", j->address, part);
		partof = g_strdup_printf(" (file %u of %u)", part, parts);
	} else
		file = g_strdup_printf("smime-%s.p12", j->address);
	local = g_strndup(j->address, strcspn(j->address, "@"));
	count = g_strdup_printf("%u", j->entries->len);
	{
		const char *vars[] = {
			"address", j->address, "name", local,
			"enroll_address", enroll_addr ? enroll_addr : "the enrollment address",
			"attachment", file, "profile", kms_p12_profile_name(profile),
			"password_hint", j->pin ? "the PIN your administrator gave you" :
			    "the token of your reply, exactly as it was mailed to you"
			    " (XXXXX-XXXXX-XXXXX-XXXXX-XXXXX, upper case, with the dashes)",
			"expiry", j->expiry ? j->expiry : "",
			"signing", j->signing ? j->signing : "",
			"count", count, "part", partof ? partof : "", NULL
		};

		return kms_worker_send(j->w, enroll ? "issued" : "recovered", j->address, vars, file,
		    "application/pkcs12", p12, err);
	}
}

/* Recovery: every escrowed key of the user with its certificate, newest
 * first, in files of RECOVER_PER_FILE keys, each mailed as it is made. */
static gboolean
do_recover(Job *j, GError **err)
{
	KmsDbParams p = KMS_DB_PARAMS_INIT;
	g_autoptr(PGresult) r = NULL;
	int skipped = 0, n;
	guint parts, part = 0;

	kms_db_param_int(&p, j->user_id);
	r = kms_db_run(j->db, "SELECT e.id, e.key_version, e.sealed_key, c.der"
	    " FROM escrowed_keys e LEFT JOIN certificates c ON c.id = e.certificate_id"
	    " WHERE e.user_id = $1 ORDER BY c.der IS NULL, e.created_at DESC, e.id DESC", &p, err);
	if (r == NULL)
		return FALSE;
	for (n = 0; n < PQntuples(r) && !PQgetisnull(r, n, 3); n++)
		;
	skipped = PQntuples(r) - n;	/* escrowed without a certificate: nothing to import */
	if (skipped)
		kms_warn("request %" G_GINT64_FORMAT ": %d escrowed key%s of %s without a certificate"
		    " left out", j->id, skipped, skipped == 1 ? "" : "s", j->address);
	if (n == 0)
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": %s has no escrowed key to recover",
		    j->id, j->address);
	parts = (guint)(n + RECOVER_PER_FILE - 1) / RECOVER_PER_FILE;
	kms_info("request %" G_GINT64_FORMAT ": recovering %d escrowed key%s of %s", j->id, n,
	    n == 1 ? "" : "s", j->address);
	for (int i = 0; i < n; i++) {
		gint64 row = kms_db_get_int(r, i, 0);
		g_autoptr(GBytes) blob = NULL, der = NULL;
		g_autoptr(KmsSecret) p8 = NULL;
		EVP_PKEY *key;
		X509 *cert;

		der = kms_db_get_bytes(r, i, 3);
		if ((cert = kms_x509_from_der(g_bytes_get_data(der, NULL), g_bytes_get_size(der))) == NULL)
			return kms_refuse(err, "request %" G_GINT64_FORMAT ": the certificate of escrowed key"
			    " %" G_GINT64_FORMAT " is corrupt", j->id, row);
		blob = kms_db_get_bytes(r, i, 2);
		p8 = kms_vault_open_value(j->w->vault, "escrowed_keys", "sealed_key", row,
		    (int)kms_db_get_int(r, i, 1), blob, err);
		if (p8 == NULL || (key = kms_key_from_pkcs8(p8, err)) == NULL) {
			X509_free(cert);
			return FALSE;
		}
		job_add(j, key, cert, "encryption");
		if (j->entries->len == RECOVER_PER_FILE || i == n - 1) {
			if (!send_p12(j, FALSE, ++part, parts, err))
				return FALSE;
			job_reset(j);
		}
	}
	{
		g_autoptr(JsonObject) d = json_object_new();

		json_object_set_int_member(d, "request_id", j->id);
		json_object_set_string_member(d, "address", j->address);
		json_object_set_int_member(d, "keys", n);
		json_object_set_int_member(d, "files", parts);
		json_object_set_int_member(d, "left_out", skipped);
		return kms_audit_append(j->db, "keys recovered", d, err);
	}
}

/* The audit entry of an enrollment: the certificates issued (audit.h). */
static gboolean
audit_issued(Job *j, GError **err)
{
	g_autoptr(JsonObject) d = json_object_new();
	g_autoptr(JsonArray) serials = json_array_new();

	for (guint i = 0; i < j->certs->len; i++) {
		g_autofree char *serial = kms_x509_serial_hex(g_ptr_array_index(j->certs, i));

		json_array_add_string_element(serials, serial);
	}
	json_object_set_int_member(d, "request_id", j->id);
	json_object_set_string_member(d, "address", j->address);
	json_object_set_string_member(d, "key_type", kms_config_get(j->w->cfg, "enrollment",
	    "key_type"));
	json_object_set_array_member(d, "serials", json_array_ref(serials));
	json_object_set_string_member(d, "signing", j->signing);
	return kms_audit_append(j->db, "certificates issued", d, err);
}

gboolean
kms_work_enroll(KmsWorker *w, gint64 id, const char *kind, const char *payload,
    gint64 user_id, const char *address, GError **err)
{
	g_autoptr(JsonParser) parser = json_parser_new();
	gboolean enroll = strcmp(kind, "enroll") == 0;
	JsonNode *root;
	Job j = {0};
	gboolean ok = FALSE;

	if (user_id == 0 || address == NULL || *address == '\0')
		return kms_refuse(err, "request %" G_GINT64_FORMAT " (%s) names no user", id, kind);
	if (!json_parser_load_from_data(parser, payload, -1, NULL) ||
	    (root = json_parser_get_root(parser)) == NULL || !JSON_NODE_HOLDS_OBJECT(root))
		return kms_refuse(err, "request %" G_GINT64_FORMAT ": the payload is not a JSON object", id);
	j.w = w;
	j.db = kms_vault_db(w->vault);
	j.id = id;
	j.user_id = user_id;
	j.address = address;
	/* the worker commits its attempt count even when we fail: whatever we
	 * did before failing must go */
	if (!kms_db_exec(j.db, "SAVEPOINT kms_issue", NULL, err))
		return FALSE;
	j.entries = g_array_new(FALSE, TRUE, sizeof(KmsP12Entry));
	j.keys = g_ptr_array_new_with_free_func((GDestroyNotify)EVP_PKEY_free);
	j.certs = g_ptr_array_new_with_free_func((GDestroyNotify)X509_free);
	j.names = g_ptr_array_new_with_free_func(g_free);
	j.chain = sk_X509_new_null();

	if ((j.ca = kms_worker_ca(w, err)) == NULL)
		goto out;
	if (j.ca->cert == NULL || strcmp(j.ca->status, "active") != 0) {
		g_set_error(err, KMS_VAULT_ERROR, KMS_VAULT_ERROR_NOT_INITIALIZED,
		    "request %" G_GINT64_FORMAT ": no active CA (a subordinate CA waits for its"
		    " certificate)", id);
		goto out;
	}
	if (!open_password(&j, json_node_get_object(root), err))
		goto out;
	if (enroll) {
		if ((j.ca_key = kms_worker_ca_key(w, err)) == NULL ||
		    !do_enroll(&j, json_node_get_object(root), err))
			goto out;
		/* last: once the MTA has the mail, only the commit remains
		 * (then the audit entry: its lock is held until the commit, so
		 * not while the mail is being sent) */
		ok = send_p12(&j, TRUE, 1, 1, err) && audit_issued(&j, err);
	} else
		ok = kms_work_recover_allowed(w, id, json_object_get_int_member_with_default(
		    json_node_get_object(root), "token_id", 0), err) && do_recover(&j, err);
out:
	if (!ok)
		kms_db_exec(j.db, "ROLLBACK TO SAVEPOINT kms_issue", NULL, NULL);
	else
		ok = kms_db_exec(j.db, "RELEASE SAVEPOINT kms_issue", NULL, err);
	job_clear(&j);
	return ok;
}
