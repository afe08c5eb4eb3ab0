#!/bin/sh
# A database superuser with a full pg_dump and no startup password learns
# no private key: the dump holds neither the CA key nor an escrowed key, in
# DER, PEM or as the raw private scalar, while it does hold the public
# certificate (which shows the search itself can find things in a dump).
. "$top_srcdir/tests/lib.sh"
pg_start
CONF=$T/kms.conf
write_config "$CONF"
write_password "$T/pw" 'dump test password'
"$KMSCTL" -c "$CONF" init --password-file "$T/pw" >/dev/null || bail "init failed"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/user.key" 2>/dev/null
"$VAULTTOOL" -c "$CONF" -p "$T/pw" escrow carol@example.org "$T/user.key" >/dev/null || bail "escrow failed"

check "the CA key is obtained through the unsealed API" "$VAULTTOOL" -c "$CONF" -p "$T/pw" ca-key
cp "$T/out" "$T/ca.key"
"$KMSCTL" -c "$CONF" ca show --pem >"$T/ca.pem" || bail "ca show failed"

"$PG_BINDIR/pg_dump" -h "$PGSOCK" -U kmsdba kms >"$T/dump.sql" || bail "pg_dump failed"
"$PG_BINDIR/pg_dump" -h "$PGSOCK" -U kmsdba -Fc kms >"$T/dump.custom" || bail "pg_dump -Fc failed"
"$PG_BINDIR/pg_restore" -f "$T/dump-restored.sql" "$T/dump.custom" || bail "pg_restore failed"

hex() { od -An -tx1 -v | tr -d ' \n'; }
# the private exponent d (RSA) in hex, as OpenSSL prints it
privhex() { openssl pkey -in "$1" -text -noout 2>/dev/null | awk '/^privateExponent:|^priv:/{f=1;next} /^[a-zA-Z]/{f=0} f' | tr -d ' :\n' | sed 's/^00//'; }

CERTHEX=$(openssl x509 -in "$T/ca.pem" -outform DER | hex)
like "$T/dump.sql" "$(echo "$CERTHEX" | cut -c1-200)" "positive control: the public CA certificate is found in the dump"

for k in ca user; do
	DERHEX=$(openssl pkey -in "$T/$k.key" -outform DER | hex)
	P8HEX=$(openssl pkcs8 -topk8 -nocrypt -in "$T/$k.key" -outform DER | hex)
	D=$(privhex "$T/$k.key")
	[ ${#D} -ge 64 ] || bail "could not extract the private exponent of $k"
	for f in dump.sql dump-restored.sql; do
		unlike "$T/$f" "$DERHEX" "$f holds no DER of the $k key"
		unlike "$T/$f" "$P8HEX" "$f holds no PKCS#8 of the $k key"
		unlike "$T/$f" "$(echo "$D" | cut -c1-64)" "$f holds no part of the $k private exponent"
		unlike "$T/$f" "$(sed -n 2p "$T/$k.key")" "$f holds no line of the $k key's PEM"
	done
done
unlike "$T/dump.sql" "dump test password" "the dump holds no startup password"
done_testing
