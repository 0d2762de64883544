// JSON Web Key Sets (RFC 7517/7518): the signing keys an OpenID issuer publishes, turned into
// OpenSSL public keys. Only signature keys the verifier can use are kept; the rest are skipped.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probes/keycloak/ossl_handles.h"

namespace pes::jwt {

// One usable public key.
struct Jwk {
  std::string kid;  // may be empty
  std::string kty;  // "RSA" or "EC"
  std::string crv;  // "P-256" / "P-384" for EC, empty for RSA
  std::string alg;  // the key's declared "alg", empty when absent
  std::string use;  // "sig" or empty
  PkeyPtr key;      // never null
};

struct Jwks {
  std::vector<Jwk> keys;
  // One line per key that was left out and why ("kid 'x': kty 'OKP' not supported"); for logs.
  std::vector<std::string> skipped;
};

// Parses a JWKS document ({"keys": [...]}). Keys with an unknown kty or curve, with
// "use": "enc", or with bad/missing members are skipped and listed in `skipped`; RSA keys
// below 2048 bits are skipped too. Returns nullopt (and sets `error`) only when the document
// is not JSON or has no "keys" array. Never throws.
std::optional<Jwks> parse_jwks(std::string_view json_text, std::string& error);

}  // namespace pes::jwt
