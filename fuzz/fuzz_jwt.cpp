// libFuzzer target: JWT and JWKS parsing of the keycloak probe (tokens and key sets come from
// the issuer over the network). Each input is tried
//  - as a token: split_jwt, parse_alg on its header, check_claims on its payload, and the whole
//    verify() against a fixed JWKS (RSA-2048 for RS256/PS256, EC P-256 for ES256, the keys the
//    seeds in fuzz/corpus/jwt/ are signed with; fuzz/make_jwt_seeds.py makes both);
//  - as a JWKS document: parse_jwks.
// Checked promises of jwt.h/jwks.h: nothing throws, a failure message never quotes the token's
// signature, a verified token names the key that verified it, parsed keys are never null.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "probes/keycloak/jwks.h"
#include "probes/keycloak/jwt.h"

namespace {

constexpr int64_t kNow = 1'700'000'000;  // the seeds' tokens are valid at this time

constexpr const char* kJwks =
#include "fuzz/fuzz_jwt_keys.inc"
    ;

const pes::jwt::Jwks& fixed_jwks() {
  static const pes::jwt::Jwks jwks = [] {
    std::string error;
    auto parsed = pes::jwt::parse_jwks(kJwks, error);
    if (!parsed || parsed->keys.size() != 3) __builtin_trap();
    return std::move(*parsed);
  }();
  return jwks;
}

const pes::jwt::Expectations kExpect{"https://sso.example.test/realms/pes", "pes-agent", 30};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)fixed_jwks();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::string error;
  if (auto parts = pes::jwt::split_jwt(input, error)) {
    if (!parts->header.is_object() || !parts->payload.is_object()) __builtin_trap();
    if (const auto alg = parts->header.find("alg");
        alg != parts->header.end() && alg->is_string()) {
      if (const auto a = pes::jwt::parse_alg(alg->get<std::string>())) {
        (void)pes::jwt::to_string(*a);
        for (const auto& k : fixed_jwks().keys) (void)pes::jwt::key_fits_alg(k, *a);
      }
    }
    const auto claims = pes::jwt::check_claims(parts->payload, kExpect, kNow);
    (void)pes::jwt::to_string(claims.status);
  } else if (error.empty()) {
    __builtin_trap();  // a refusal always says why
  }

  const auto v = pes::jwt::verify(input, fixed_jwks(), kExpect, kNow);
  (void)pes::jwt::to_string(v.status);
  if (v.ok() != v.message.empty()) __builtin_trap();
  if (v.ok() && (v.kid.empty() || v.alg.empty() || !v.claims.is_object())) __builtin_trap();
  // The signature part of a token is its secret-bearing tail: never quoted in messages.
  if (const size_t dot = input.rfind('.'); dot != std::string_view::npos) {
    const std::string_view sig = input.substr(dot + 1);
    if (sig.size() >= 16 && v.message.find(sig) != std::string::npos) __builtin_trap();
  }

  if (auto jwks = pes::jwt::parse_jwks(input, error)) {
    for (const auto& k : jwks->keys) {
      if (!k.key || (k.kty != "RSA" && k.kty != "EC")) __builtin_trap();
      for (const auto alg :
           {pes::jwt::Alg::RS256, pes::jwt::Alg::PS512, pes::jwt::Alg::ES256, pes::jwt::Alg::ES384})
        (void)pes::jwt::key_fits_alg(k, alg);
    }
  }
  return 0;
}
