// Verification of signed JWTs (JWS compact form, RFC 7515/7519) against an issuer's JWKS:
// the pure, engine-independent part of the keycloak probe.
//
//   verify(token, jwks, expectations, now_unix) -> VerifyResult
//     1. split_jwt: three base64url parts, header and payload JSON objects
//     2. parse_alg: RS256/384/512, PS256/384/512, ES256/384 only; "none" and HS* are refused
//        (a public key must never serve as an HMAC secret)
//     3. key by "kid" (or, without a kid, every key that fits the alg); kty/crv (and the key's
//        own "alg", when set) must fit the token's alg
//     4. verify_signature (OpenSSL 3 EVP; ES* signatures are raw r||s)
//     5. check_claims: iss, exp (required), nbf, iat with leeway against the injected time, aud/azp
// Nothing here throws; messages never contain the token.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "probes/keycloak/jwks.h"

namespace pes::jwt {

// The decoded parts of a compact JWS. Header and payload are JSON objects.
struct JwtParts {
  nlohmann::json header;
  nlohmann::json payload;
  std::string signing_input;  // "<header b64>.<payload b64>", the bytes that were signed
  std::string signature;      // raw signature bytes (may be empty)
};

// Splits and decodes a token; on failure returns nullopt and sets `error` (which never quotes
// the token).
std::optional<JwtParts> split_jwt(std::string_view token, std::string& error);

enum class Alg { RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 };

// The accepted signature algorithms; nullopt for everything else ("none", HS*, ES512, ...).
std::optional<Alg> parse_alg(std::string_view name);
std::string_view to_string(Alg alg);

// Whether the key's type and curve (and its declared "alg", when set) fit `alg`.
bool key_fits_alg(const Jwk& jwk, Alg alg);

// Checks `signature` (for ES*: raw r||s, as JWS carries it) over `signing_input`. The caller
// makes sure key_fits_alg(); a mismatched key simply fails.
bool verify_signature(Alg alg, EVP_PKEY* key, std::string_view signing_input,
                      std::string_view signature);

struct Expectations {
  std::string issuer;    // "iss" must equal it; empty = not checked
  std::string audience;  // "aud" (string or array) or "azp" must hold it; empty = not checked
  int64_t leeway_seconds = 30;  // clock skew allowed for exp, nbf and iat; negative counts as 0
};

enum class VerifyStatus {
  ok,
  malformed,        // not a JWS, bad base64/JSON, bad claim types, missing exp
  unsupported_alg,  // alg is none, HS*, or anything not listed in Alg
  unknown_kid,      // no key in the JWKS for this token: refetch the JWKS once and retry
  bad_signature,    // signature does not verify, or the kid's key does not fit the alg
  wrong_issuer,
  expired,
  not_yet_valid,  // nbf in the future, or iat in the future
  wrong_audience,
};
std::string_view to_string(VerifyStatus status);

struct VerifyResult {
  VerifyStatus status = VerifyStatus::malformed;
  std::string message;  // human-readable; empty when ok
  // Filled once the signature has verified (so also for claim failures), empty before.
  std::string kid;  // the kid of the key that verified the signature
  std::string alg;
  int64_t exp = 0;        // "exp", whole seconds
  nlohmann::json claims;  // the payload object

  bool ok() const { return status == VerifyStatus::ok; }
};

// Claim checks alone (step 5) on an already verified payload. Only status and message are set.
VerifyResult check_claims(const nlohmann::json& payload, const Expectations& expect,
                          int64_t now_unix);

// The whole verification. `now_unix` is the current time in seconds (injected, not read here).
VerifyResult verify(std::string_view token, const Jwks& jwks, const Expectations& expect,
                    int64_t now_unix);

}  // namespace pes::jwt
