-- Roles and privileges, applied by `kmsctl init` after the migrations.
-- Roles are cluster-wide: they are created once and granted in each vault
-- database. kms_milter parses hostile mail and must never be able to read
-- a sealed key: it gets no privilege at all on vault_seal, vault_shares,
-- unseal_sessions, unseal_shares, escrowed_keys or admins, only the
-- public columns of ca, and of tokens only the columns it needs to check
-- a reply.
DO $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kms_milter') THEN
		CREATE ROLE kms_milter LOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kms_service') THEN
		CREATE ROLE kms_service LOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kms_admin') THEN
		CREATE ROLE kms_admin LOGIN;
	END IF;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO kms_milter, kms_service, kms_admin;

-- kmsmilter: public certificates and capabilities, queueing requests,
-- consuming tokens (by hash).
GRANT SELECT ON schema_version, users, trust_list, policy, revocations TO kms_milter;
GRANT SELECT, INSERT, UPDATE ON certificates, certificate_addresses, capabilities TO kms_milter;
GRANT SELECT (id, user_id, purpose, token_hash, expires_at, attempts, status), UPDATE (attempts, status, used_at)
	ON tokens TO kms_milter;
GRANT INSERT ON requests TO kms_milter;
-- the CA's public certificate and chain (trust anchor for harvesting), never its key
GRANT SELECT (id, status, certificate, chain) ON ca TO kms_milter;
GRANT SELECT (id, kind, status, user_id, created_at, expires_at) ON requests TO kms_milter;
-- the queue key's public half: the milter seals the reply's token (the
-- PKCS#12 password) to kmsd with it
GRANT SELECT (id, public_key) ON queue_key TO kms_milter;
GRANT USAGE ON SEQUENCE certificates_id_seq, capabilities_id_seq, requests_id_seq TO kms_milter;
-- the audit log (keyvault/audit.h): append entries (a failed token
-- attempt, a consumed token), reading only what chaining needs
GRANT SELECT (id, hash), INSERT ON audit TO kms_milter;

-- kmsd: everything it needs to run the CA and escrow keys.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO kms_service;
GRANT DELETE ON workers, escrowed_keys, certificate_addresses, unseal_sessions, unseal_shares,
	admins TO kms_service;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO kms_service;

-- administrators (kmsctl when connecting as kms_admin)
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO kms_admin;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO kms_admin;

-- The audit log is append-only for every role but the owner: kmsd (and
-- kmsctl init/passwd, which unseal the vault) only fill in the mac of
-- entries; nobody else may change or delete an entry.
REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM kms_service, kms_admin;
GRANT UPDATE (mac) ON audit TO kms_service, kms_admin;
