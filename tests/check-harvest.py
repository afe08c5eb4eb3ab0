#!/usr/bin/env python3
"""check-harvest.py CERT-LIST.json NAME.expect

Compare what `kmsctl cert list --json` shows after one message went through
kmsmilter with what the message's .expect file (tests/peers/make-signed.sh)
says a correct harvester finds. Prints one line per mismatch and exits 1 if
there is any, 0 otherwise."""
import json
import sys


def parse_expect(path):
    blocks, cur = [], {}
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = {}
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "address":
            cur.setdefault("address", []).append(value.lower())
        else:
            cur[key] = value
    if cur:
        blocks.append(cur)
    return blocks


def main():
    certs = json.load(open(sys.argv[1], encoding="utf-8"))
    by_sha = {c["sha256"]: c for c in certs}
    errors = []
    for b in parse_expect(sys.argv[2]):
        status = b.get("status")
        signer = b.get("signer_sha256", "-")
        if status in ("none", "bad-signature"):
            harvested = [c for c in certs if c["source"] == "harvested"]
            if signer != "-" and signer in by_sha:
                errors.append(f"{status}: signer {signer[:16]} was stored")
            if status == "none" and harvested:
                errors.append(f"none: {len(harvested)} certificates stored, want 0")
            continue
        c = by_sha.get(signer)
        if c is None:
            errors.append(f"signer {signer[:16]} not stored (have {[x['sha256'][:16] for x in certs]})")
            continue
        if c["source"] != "harvested":
            errors.append(f"source: got {c['source']}, want harvested")
        if c["status"] != status:
            errors.append(f"status: got {c['status']} ({c.get('status_detail')}), want {status}")
        want_addrs = sorted(b.get("address", []))
        got_addrs = sorted(a.lower() for a in c["addresses"])
        if got_addrs != want_addrs:
            errors.append(f"addresses: got {got_addrs}, want {want_addrs}")
        caps = b.get("capabilities")
        if caps is not None:
            want = None if caps == "-" else caps.split(",")
            if c["capabilities"] != want:
                errors.append(f"capabilities: got {c['capabilities']}, want {want}")
        kp = b.get("key_preference", "-")
        if kp != "-":
            k = by_sha.get(kp)
            if k is None:
                errors.append(f"key preference certificate {kp[:16]} not stored")
            elif not k["key_preference"]:
                errors.append(f"certificate {kp[:16]} not marked as key preference")
            elif caps is not None and caps != "-" and k["capabilities"] != caps.split(","):
                errors.append(f"key preference capabilities: got {k['capabilities']}")
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
