-- kmsmilter vault schema, migration 1.
-- Applied by `kmsctl init` inside one transaction. Secret columns
-- (sealed_*) hold AES-256-GCM blobs whose associated data names
-- table, column, row id and vault-key version (keyvault/seal.h).

CREATE TABLE schema_version (
	version		integer PRIMARY KEY,
	description	text NOT NULL,
	applied_at	timestamptz NOT NULL DEFAULT now()
);

-- The vault key, wrapped under a key derived from the startup password.
-- One row; `kmsctl passwd` rewrites only wrapped_key and the KDF columns.
CREATE TABLE vault_seal (
	id		integer PRIMARY KEY CHECK (id = 1),
	key_version	integer NOT NULL,
	kdf		text NOT NULL CHECK (kdf IN ('argon2id')),
	kdf_salt	bytea NOT NULL,
	kdf_t_cost	integer NOT NULL,
	kdf_m_cost_kib	integer NOT NULL,
	kdf_parallelism	integer NOT NULL,
	wrapped_key	bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now(),
	changed_at	timestamptz NOT NULL DEFAULT now()
);

-- Shamir unseal (keyvault/shamir.h): the same vault key wrapped under a
-- key derived (HKDF-SHA256, salt set_id) from a random unseal secret split
-- into share_count shares, threshold of which recombine it. No share is
-- stored: share_checks[i] = SHA-256("kmsmilter-share-v1" || set_id || i ||
-- share i) lets a wrong share be named when it is entered. A vault made
-- with shares only has no vault_seal row (no startup password).
CREATE TABLE vault_shares (
	id		integer PRIMARY KEY CHECK (id = 1),
	key_version	integer NOT NULL,
	threshold	integer NOT NULL CHECK (threshold >= 2),
	share_count	integer NOT NULL CHECK (share_count >= threshold AND share_count <= 255),
	set_id		bytea NOT NULL CHECK (length(set_id) = 16),
	share_checks	bytea NOT NULL CHECK (length(share_checks) = 32 * share_count),
	wrapped_key	bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- A sealed kmsd waiting for shares publishes an ephemeral X25519 public
-- key; kmsctl unseal encrypts a share to it (kms_queue_seal, label
-- "unseal-share", the unseal_shares row id). kmsd opens it, records the
-- outcome, and clears sealed_share; its private key never leaves memory.
CREATE TABLE unseal_sessions (
	id		bigserial PRIMARY KEY,
	worker		text NOT NULL,		-- host:pid
	public_key	bytea NOT NULL CHECK (length(public_key) = 32),
	status		text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'unsealed')),
	created_at	timestamptz NOT NULL DEFAULT now(),
	heartbeat_at	timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE unseal_shares (
	id		bigserial PRIMARY KEY,
	session_id	bigint NOT NULL REFERENCES unseal_sessions (id) ON DELETE CASCADE,
	sealed_share	bytea,			-- NULL once kmsd has read it
	submitted_by	text NOT NULL DEFAULT current_user,
	status		text NOT NULL DEFAULT 'pending'
			CHECK (status IN ('pending', 'accepted', 'duplicate', 'rejected', 'unsealed')),
	detail		text,			-- "2 of 3", or why it was rejected
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- Certification authority: the active internal CA (root or subordinate).
CREATE TABLE ca (
	id		bigserial PRIMARY KEY,
	status		text NOT NULL CHECK (status IN ('active', 'pending', 'retired')),
	key_type	text NOT NULL,
	subject		text NOT NULL,
	certificate	bytea,			-- DER, NULL while a CSR is pending
	chain		bytea[] NOT NULL DEFAULT '{}',	-- DER issuers, nearest first
	csr		bytea,			-- DER, for a subordinate CA
	key_version	integer NOT NULL,
	sealed_key	bytea NOT NULL,		-- PKCS#8 DER, sealed
	crl_number	bigint NOT NULL DEFAULT 0,	-- of the last CRL published
	crl		bytea,			-- that CRL (DER), NULL before the first
	crl_next_update	timestamptz,		-- its nextUpdate
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ca_one_active ON ca ((true)) WHERE status = 'active';

CREATE TABLE users (
	id		bigserial PRIMARY KEY,
	address		text NOT NULL,
	display_name	text,
	status		text NOT NULL DEFAULT 'active'
			CHECK (status IN ('active', 'disabled', 'exported')),
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_address ON users (lower(address));

-- One-time tokens for enrollment and recovery; only a hash is stored.
CREATE TABLE tokens (
	id		bigserial PRIMARY KEY,
	user_id		bigint NOT NULL REFERENCES users (id),
	purpose		text NOT NULL CHECK (purpose IN ('enroll', 'recover')),
	token_hash	bytea NOT NULL UNIQUE,
	expires_at	timestamptz NOT NULL,
	attempts	integer NOT NULL DEFAULT 0,
	status		text NOT NULL DEFAULT 'pending'
			CHECK (status IN ('pending', 'used', 'expired', 'locked', 'cancelled')),
	-- [enrollment] p12_password = pin: the PIN, sealed to kmsd's queue key
	-- (label "p12-pin", this row's id); kms_milter cannot read it
	sealed_pin	bytea,
	created_at	timestamptz NOT NULL DEFAULT now(),
	used_at		timestamptz
);
CREATE INDEX tokens_user ON tokens (user_id, status);

-- Certificates: issued by the internal CA and harvested from signed mail.
CREATE TABLE certificates (
	id		bigserial PRIMARY KEY,
	source		text NOT NULL CHECK (source IN ('issued', 'harvested')),
	usage		text CHECK (usage IN ('encryption', 'signing', 'both')),
	status		text NOT NULL,	-- issued: valid|revoked; harvested: trusted|untrusted-chain|expired
	status_detail	text,		-- why a harvested chain is not trusted
	sha256		text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	serial		text NOT NULL,
	subject		text NOT NULL,
	issuer		text NOT NULL,
	not_before	timestamptz NOT NULL,
	not_after	timestamptz NOT NULL,
	der		bytea NOT NULL,
	user_id		bigint REFERENCES users (id),
	first_seen	timestamptz NOT NULL DEFAULT now(),
	last_seen	timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificates_issuer_serial ON certificates (issuer, serial);

CREATE TABLE certificate_addresses (
	certificate_id	bigint NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
	address		text NOT NULL,
	PRIMARY KEY (certificate_id, address)
);
CREATE INDEX certificate_addresses_address ON certificate_addresses (lower(address));

-- SMIMECapabilities announced in signed mail, with history by signing time.
CREATE TABLE capabilities (
	id		bigserial PRIMARY KEY,
	certificate_id	bigint NOT NULL REFERENCES certificates (id) ON DELETE CASCADE,
	address		text NOT NULL,
	signing_time	timestamptz NOT NULL,
	algorithms	text[],			-- in the signer's order; NULL: not announced
	key_preference	bigint REFERENCES certificates (id),
	seen_at		timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX capabilities_address_time ON capabilities (lower(address), signing_time DESC);
CREATE UNIQUE INDEX capabilities_once ON capabilities (certificate_id, lower(address), signing_time);

-- Escrowed private encryption keys (never signing keys). History is kept.
CREATE TABLE escrowed_keys (
	id		bigserial PRIMARY KEY,
	user_id		bigint NOT NULL REFERENCES users (id),
	certificate_id	bigint UNIQUE REFERENCES certificates (id),
	key_type	text NOT NULL,
	key_version	integer NOT NULL,
	sealed_key	bytea NOT NULL,		-- PKCS#8 DER, sealed
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escrowed_keys_user ON escrowed_keys (user_id);

CREATE TABLE revocations (
	certificate_id	bigint PRIMARY KEY REFERENCES certificates (id),
	reason		text NOT NULL DEFAULT 'unspecified',
	revoked_at	timestamptz NOT NULL DEFAULT now(),
	revoked_by	text
);

-- Certificate trust list: external roots accepted for harvested chains.
CREATE TABLE trust_list (
	id		bigserial PRIMARY KEY,
	sha256		text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
	subject		text NOT NULL,
	der		bytea NOT NULL,
	added_at	timestamptz NOT NULL DEFAULT now(),
	added_by	text
);

-- Encryption policy overrides: scope 'domain' or 'user' with its name.
CREATE TABLE policy (
	scope		text NOT NULL CHECK (scope IN ('domain', 'user')),
	name		text NOT NULL,
	key		text NOT NULL,
	value		text NOT NULL,
	changed_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (scope, name, key)
);

-- Work for kmsd: token mails, enrollments, recoveries, CRL refresh.
-- kind 'mail': payload {template, token_id, expires, sealed_token};
-- 'enroll' / 'recover' (queued by kmsmilter when a reply's token is
-- consumed): {token_id, sealed_password (absent in pin mode), csr
-- (base64 DER, enroll only), reply_from, auth, queue_id}; 'crl': {}.
CREATE TABLE requests (
	id		bigserial PRIMARY KEY,
	kind		text NOT NULL CHECK (kind IN ('mail', 'enroll', 'recover', 'crl')),
	status		text NOT NULL DEFAULT 'queued'
			CHECK (status IN ('queued', 'awaiting-approval', 'running',
			    'done', 'failed', 'expired', 'rejected')),
	user_id		bigint REFERENCES users (id),
	payload		jsonb NOT NULL DEFAULT '{}',
	attempts	integer NOT NULL DEFAULT 0,
	last_error	text,
	created_at	timestamptz NOT NULL DEFAULT now(),
	expires_at	timestamptz NOT NULL,
	finished_at	timestamptz
);
CREATE INDEX requests_queued ON requests (created_at) WHERE status = 'queued';

CREATE TABLE admins (
	id		bigserial PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	public_key	bytea NOT NULL,
	sealed_private	bytea NOT NULL,
	mac		bytea NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- Audit log, a hash chain (keyvault/audit.h): entries are appended under
-- pg_advisory_xact_lock with id = last id + 1 (dense: a gap is a deletion)
-- and hash = SHA-256(prev_hash || id || at || actor || action || detail);
-- kmsd later sets mac = HMAC-SHA256(key derived from the vault key, hash).
-- actor is free text: "kmsd@host:pid", "kmsmilter", "login (db role r)".
CREATE TABLE audit (
	id		bigint PRIMARY KEY CHECK (id > 0),
	at		timestamptz NOT NULL,
	actor		text NOT NULL,
	action		text NOT NULL,
	detail		jsonb NOT NULL DEFAULT '{}',
	prev_hash	bytea NOT NULL CHECK (length(prev_hash) = 32),
	hash		bytea NOT NULL CHECK (length(hash) = 32),
	mac		bytea CHECK (length(mac) = 32)
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_unmaced ON audit (id) WHERE mac IS NULL;

-- kmsd's queue key: kmsctl encrypts secrets it queues for kmsd (tokens
-- to mail) to the public half; the private half is sealed (queuekey.h).
CREATE TABLE queue_key (
	id		integer PRIMARY KEY CHECK (id = 1),
	public_key	bytea NOT NULL,
	key_version	integer NOT NULL,
	sealed_private	bytea NOT NULL
);

-- Running kmsd processes; a row whose heartbeat is recent counts as live.
CREATE TABLE workers (
	id		text PRIMARY KEY,
	host		text NOT NULL,
	pid		integer NOT NULL,
	started_at	timestamptz NOT NULL DEFAULT now(),
	heartbeat_at	timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_version (version, description) VALUES (1, 'initial schema');
