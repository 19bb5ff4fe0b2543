#!/usr/bin/env python3
"""Keys and tokens made by libraries sse-hub did not write (PyJWT with `cryptography`), for the key tests.

  pyjwt_tokens.py keys DIR   writes private and public PEM files of every key kind, and two JWKS documents:
                             jwks.json (rsa-1, ps-1, ec256-1, ec384-1, ed-1) and jwks-rotated.json (rsa-2 only)
  pyjwt_tokens.py sign DIR SPECS   SPECS: a JSON list of token specs; prints {name: token} as JSON

A spec: {"name": ..., "alg": "RS256"|...|"none", "key": "rsa"|"rsa2"|"ec256"|"ec384"|"ed"|"secret:TEXT"|"pem-as-secret:rsa",
"kid": optional, "claims": {...}, "tamper": optional bool}. "pem-as-secret" is the algorithm-confusion attack: an
HS256 token whose HMAC key is the RSA public key's PEM text, which PyJWT itself refuses to make, so it is built here
with hmac by hand.
"""
import base64, hashlib, hmac, json, os, sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

KINDS = {
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "rsa2": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ec256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed": lambda: ed25519.Ed25519PrivateKey.generate(),
}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_private(directory, kind):
    with open(os.path.join(directory, kind + ".pem"), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def public_pem(directory, kind) -> bytes:
    with open(os.path.join(directory, kind + ".pub.pem"), "rb") as f:
        return f.read()


def jwk(key, kid, alg):
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        entry = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    else:
        entry = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
    entry.update({"kid": kid, "alg": alg, "use": "sig"})
    return entry


def make_keys(directory):
    os.makedirs(directory, exist_ok=True)
    keys = {}
    for kind, generate in KINDS.items():
        key = generate()
        keys[kind] = key
        with open(os.path.join(directory, kind + ".pem"), "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        with open(os.path.join(directory, kind + ".pub.pem"), "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    first = [jwk(keys["rsa"], "rsa-1", "RS256"), jwk(keys["rsa"], "ps-1", "PS256"), jwk(keys["ec256"], "ec256-1", "ES256"),
             jwk(keys["ec384"], "ec384-1", "ES384"), jwk(keys["ed"], "ed-1", "EdDSA"),
             # An encryption key sse-hub must skip without refusing the document.
             dict(jwk(keys["rsa2"], "enc-1", "RSA-OAEP"), use="enc")]
    with open(os.path.join(directory, "jwks.json"), "w") as f:
        json.dump({"keys": first}, f)
    with open(os.path.join(directory, "jwks-rotated.json"), "w") as f:
        json.dump({"keys": [jwk(keys["rsa2"], "rsa-2", "RS256")]}, f)


def sign(directory, spec):
    alg, key_name, claims = spec["alg"], spec.get("key", ""), spec.get("claims", {})
    headers = {"kid": spec["kid"]} if spec.get("kid") else None
    if alg == "none":
        token = jwt.encode(claims, None, algorithm="none")
    elif key_name.startswith("pem-as-secret:"):
        header = {"alg": "HS256", "typ": "JWT", **(headers or {})}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        mac = hmac.new(public_pem(directory, key_name.split(":", 1)[1]), signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + "." + b64url(mac)
    elif key_name.startswith("secret:"):
        token = jwt.encode(claims, key_name.split(":", 1)[1], algorithm=alg, headers=headers)
    else:
        token = jwt.encode(claims, load_private(directory, key_name), algorithm=alg, headers=headers)
    if spec.get("tamper"):
        head, body, signature = token.split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
        raw[0] ^= 0x01
        token = head + "." + body + "." + b64url(bytes(raw))
    return token


if __name__ == "__main__":
    command, directory = sys.argv[1], sys.argv[2]
    if command == "keys":
        make_keys(directory)
    elif command == "sign":
        print(json.dumps({spec["name"]: sign(directory, spec) for spec in json.loads(sys.argv[3])}))
    else:
        sys.exit(f"unknown command {command}")
