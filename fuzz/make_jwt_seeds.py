#!/usr/bin/env python3
"""Regenerates the fuzz_jwt seeds and the fixed JWKS the harness verifies against.

Makes a fresh RSA-2048 and EC P-256 key pair with the openssl CLI, writes their public halves as
fuzz/fuzz_jwt_keys.inc (a JWKS in a C++ raw string, included by fuzz_jwt.cpp) and signs a set of
tokens into fuzz/corpus/jwt/: valid RS256/PS256/ES256 tokens (so the fuzzer starts past the
signature check) and tokens failing each later step. The private keys are thrown away.
Standard library plus `openssl` only. Run from anywhere: python3 fuzz/make_jwt_seeds.py
"""
import base64
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus", "jwt")
NOW = 1_700_000_000  # must equal kNow in fuzz_jwt.cpp
ISS = "https://sso.example.test/realms/pes"
AUD = "pes-agent"


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True, capture_output=True).stdout


def der_ecdsa_to_raw(der, size):
    # SEQUENCE { INTEGER r, INTEGER s }, short or long form lengths.
    def read_len(b, i):
        n = b[i]
        if n < 0x80:
            return n, i + 1
        k = n & 0x7F
        return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k

    assert der[0] == 0x30
    _, i = read_len(der, 1)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n, i = read_len(der, i + 1)
        out += int.from_bytes(der[i:i + n], "big").to_bytes(size, "big")
        i += n
    return out


def main():
    os.makedirs(CORPUS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rsa = os.path.join(tmp, "rsa.pem")
        ec = os.path.join(tmp, "ec.pem")
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec)
        modulus = openssl("rsa", "-in", rsa, "-noout", "-modulus").decode().strip().split("=")[1]
        n = bytes.fromhex(modulus)
        ec_der = openssl("pkey", "-in", ec, "-pubout", "-outform", "DER")
        point = ec_der[-65:]
        assert point[0] == 4
        jwks = {"keys": [
            {"kid": "rsa-1", "kty": "RSA", "alg": "RS256", "use": "sig", "n": b64u(n), "e": "AQAB"},
            {"kid": "rsa-1-pss", "kty": "RSA", "alg": "PS256", "use": "sig", "n": b64u(n),
             "e": "AQAB"},
            {"kid": "ec-1", "kty": "EC", "crv": "P-256", "use": "sig", "x": b64u(point[1:33]),
             "y": b64u(point[33:65])},
        ]}

        def sign(alg, kid, payload, header_extra=None):
            header = {"alg": alg, "typ": "JWT"}
            if kid is not None:
                header["kid"] = kid
            header.update(header_extra or {})
            signing_input = b64u(json.dumps(header, separators=(",", ":"))) + "." + \
                b64u(json.dumps(payload, separators=(",", ":")))
            data = signing_input.encode()
            if alg == "RS256":
                sig = openssl("dgst", "-sha256", "-sign", rsa, data=data)
            elif alg == "PS256":
                sig = openssl("dgst", "-sha256", "-sign", rsa, "-sigopt", "rsa_padding_mode:pss",
                              "-sigopt", "rsa_pss_saltlen:digest", data=data)
            elif alg == "ES256":
                sig = der_ecdsa_to_raw(openssl("dgst", "-sha256", "-sign", ec, data=data), 32)
            else:
                sig = b"\x00" * 32
            return signing_input + "." + b64u(sig)

        good = {"iss": ISS, "aud": AUD, "azp": AUD, "sub": "8f1c", "exp": NOW + 300,
                "iat": NOW - 5, "nbf": NOW - 5, "typ": "Bearer", "scope": "openid profile"}
        tokens = {
            "rs256_valid": sign("RS256", "rsa-1", good),
            "ps256_valid": sign("PS256", "rsa-1-pss", good),
            "es256_valid": sign("ES256", "ec-1", good),
            "rs256_no_kid": sign("RS256", None, good),
            "rs256_aud_array": sign("RS256", "rsa-1", {**good, "aud": ["account", AUD]}),
            "rs256_expired": sign("RS256", "rsa-1", {**good, "exp": NOW - 600}),
            "rs256_not_yet_valid": sign("RS256", "rsa-1", {**good, "nbf": NOW + 600}),
            "rs256_wrong_issuer": sign("RS256", "rsa-1", {**good, "iss": "https://evil.test/"}),
            "rs256_wrong_audience": sign("RS256", "rsa-1", {**good, "aud": "other",
                                                           "azp": "other"}),
            "rs256_no_exp": sign("RS256", "rsa-1", {k: v for k, v in good.items() if k != "exp"}),
            "rs256_exp_string": sign("RS256", "rsa-1", {**good, "exp": "soon"}),
            "es256_with_rsa_kid": sign("ES256", "rsa-1", good),
            "rs256_unknown_kid": sign("RS256", "rotated-2", good),
            "hs256": sign("HS256", "rsa-1", good),
            "none": sign("none", None, good).rsplit(".", 1)[0] + ".",
        }
        for name, tok in tokens.items():
            with open(os.path.join(CORPUS, name + ".jwt"), "w") as f:
                f.write(tok)
        with open(os.path.join(CORPUS, "jwks_fixed.json"), "w") as f:
            json.dump(jwks, f, indent=1)
        # JWKS documents with the shapes parse_jwks must skip or accept.
        odd = {"keys": [
            {"kid": "enc", "kty": "RSA", "use": "enc", "n": b64u(n), "e": "AQAB"},
            {"kid": "okp", "kty": "OKP", "crv": "Ed25519", "x": b64u(b"\x01" * 32)},
            {"kid": "small", "kty": "RSA", "n": b64u(b"\xc1" * 64), "e": "AQAB"},
            {"kid": "p384", "kty": "EC", "crv": "P-384", "x": b64u(b"\x02" * 48),
             "y": b64u(b"\x03" * 48)},
            {"kid": "hmac", "kty": "oct", "k": b64u(b"secret")},
            {"kid": 7, "kty": "RSA"},
        ]}
        with open(os.path.join(CORPUS, "jwks_odd.json"), "w") as f:
            json.dump(odd, f)
        with open(os.path.join(HERE, "fuzz_jwt_keys.inc"), "w") as f:
            f.write("// Generated by fuzz/make_jwt_seeds.py with the seeds in fuzz/corpus/jwt/; "
                    "do not edit.\n")
            f.write('R"JWKS(' + json.dumps(jwks, separators=(",", ":")) + ')JWKS"\n')


if __name__ == "__main__":
    main()
