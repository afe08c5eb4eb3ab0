-- kmsmilter vault schema, migration 2: administrators, approvals,
-- export/import between vaults. Applied after 001 by `kmsctl init`.

-- Administrators (keyvault/admin.h). Each has an Ed25519 key pair; the
-- private half is sealed under a key derived (Argon2id, the kdf_* columns)
-- from the administrator's own passphrase, AD = admins.sealed_private and
-- the row id. mac = HMAC-SHA256(HKDF(vault key, "kmsmilter-admins-v1"),
-- id || name || public_key): only a holder of the vault key (kmsd, kmsctl
-- init) can make a row that kmsd accepts; a row inserted by SQL is ignored.
ALTER TABLE admins
	ADD COLUMN kdf_salt bytea NOT NULL DEFAULT '\x',
	ADD COLUMN kdf_t_cost integer NOT NULL DEFAULT 0,
	ADD COLUMN kdf_m_cost_kib integer NOT NULL DEFAULT 0,
	ADD COLUMN kdf_parallelism integer NOT NULL DEFAULT 0,
	ADD COLUMN created_by text;
ALTER TABLE admins ALTER COLUMN kdf_salt DROP DEFAULT, ALTER COLUMN kdf_t_cost DROP DEFAULT,
	ALTER COLUMN kdf_m_cost_kib DROP DEFAULT, ALTER COLUMN kdf_parallelism DROP DEFAULT;
ALTER TABLE admins ALTER COLUMN mac DROP NOT NULL;	-- NULL: requested, not yet added by kmsd

-- How many administrators must approve each operation (one row,
-- "admin-change=1,export=1,..." in operation order), MACed like admins:
-- kmsd refuses every gated operation while the row is missing or its MAC
-- does not verify.
CREATE TABLE approval_policy (
	id		integer PRIMARY KEY CHECK (id = 1),
	counts		text NOT NULL,
	mac		bytea NOT NULL CHECK (length(mac) = 32),
	changed_at	timestamptz NOT NULL DEFAULT now()
);

-- Requests made by an administrator carry who asked and an Ed25519
-- signature over the request (keyvault/admin.h); gated ones wait in
-- 'awaiting-approval' until enough approvals exist. result: what kmsd
-- hands back to kmsctl (an export bundle).
ALTER TABLE requests DROP CONSTRAINT requests_kind_check;
ALTER TABLE requests ADD CONSTRAINT requests_kind_check CHECK (kind IN ('mail', 'enroll',
	'recover', 'crl', 'recover-start', 'admin-add', 'admin-remove', 'approvals-set',
	'export', 'import', 'revoke', 'policy-set'));
ALTER TABLE requests
	ADD COLUMN requested_by bigint,		-- admins.id (no FK: admins may leave)
	ADD COLUMN requester text,		-- its name when asked
	ADD COLUMN signature bytea,
	ADD COLUMN result bytea;
CREATE INDEX requests_awaiting ON requests (id) WHERE status = 'awaiting-approval';

-- Approvals and rejections of a request, each signed by its administrator.
CREATE TABLE approvals (
	request_id	bigint NOT NULL REFERENCES requests (id),
	admin_id	bigint NOT NULL,
	admin_name	text NOT NULL,
	decision	text NOT NULL CHECK (decision IN ('approve', 'reject')),
	comment		text,
	signature	bytea NOT NULL,
	at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (request_id, admin_id)
);

-- A recovery token made by kmsd for an approved recover-start request.
ALTER TABLE tokens ADD COLUMN request_id bigint;

-- Export/import between vaults: this vault's transport key pair (the
-- certificate others export to; private half sealed) and the bundles
-- already imported (a bundle id is imported once).
CREATE TABLE transport_keys (
	id		bigserial PRIMARY KEY,
	status		text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
	certificate	bytea NOT NULL,
	sha256		text NOT NULL UNIQUE,
	key_version	integer NOT NULL,
	sealed_key	bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX transport_keys_one_active ON transport_keys ((true)) WHERE status = 'active';

CREATE TABLE imported_bundles (
	bundle_id	text PRIMARY KEY,
	source		text NOT NULL,		-- the signer's certificate sha256
	users		integer NOT NULL,
	keys		integer NOT NULL,
	report		text,
	imported_at	timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_version (version, description) VALUES (2, 'administrators, approvals, export/import');
