#include "probes/keycloak/jwt.h"

#include <openssl/err.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "probes/keycloak/base64url.h"

namespace pes::jwt {
namespace {

// Values taken from the token are quoted in messages: short and printable only.
std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) out += "...";
  return out;
}

VerifyResult fail(VerifyStatus status, std::string message) {
  VerifyResult r;
  r.status = status;
  r.message = std::move(message);
  return r;
}

std::optional<nlohmann::json> decode_object(std::string_view part, const char* what,
                                            std::string& error) {
  const auto bytes = base64url_decode(part);
  if (!bytes) {
    error = std::string(what) + " is not valid base64url";
    return std::nullopt;
  }
  auto json = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    error = std::string(what) + " is not valid JSON";
    return std::nullopt;
  }
  if (!json.is_object()) {
    error = std::string(what) + " is not a JSON object";
    return std::nullopt;
  }
  return json;
}

bool is_rsa_alg(Alg alg) { return alg != Alg::ES256 && alg != Alg::ES384; }
bool is_pss_alg(Alg alg) { return alg == Alg::PS256 || alg == Alg::PS384 || alg == Alg::PS512; }

const char* digest_name(Alg alg) {
  switch (alg) {
    case Alg::RS256:
    case Alg::PS256:
    case Alg::ES256:
      return "SHA256";
    case Alg::RS384:
    case Alg::PS384:
    case Alg::ES384:
      return "SHA384";
    case Alg::RS512:
    case Alg::PS512:
      return "SHA512";
  }
  return "SHA256";
}

// Size in bytes of r and s in a JWS ECDSA signature (the curve's field size).
size_t ec_part_bytes(Alg alg) { return alg == Alg::ES384 ? 48 : 32; }

// JWS carries ECDSA signatures as raw r||s (RFC 7518 §3.4); OpenSSL wants DER.
std::optional<std::string> ecdsa_raw_to_der(std::string_view raw, size_t part_bytes) {
  if (raw.size() != 2 * part_bytes) return std::nullopt;
  const auto* data = reinterpret_cast<const unsigned char*>(raw.data());
  BignumPtr r(BN_bin2bn(data, static_cast<int>(part_bytes), nullptr));
  BignumPtr s(BN_bin2bn(data + part_bytes, static_cast<int>(part_bytes), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return std::nullopt;
  static_cast<void>(r.release());  // now owned by sig
  static_cast<void>(s.release());
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::string der(static_cast<size_t>(len), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  if (i2d_ECDSA_SIG(sig.get(), &out) != len) return std::nullopt;
  return der;
}

bool verify_signature_impl(Alg alg, EVP_PKEY* key, std::string_view signing_input,
                           std::string_view signature) {
  if (key == nullptr) return false;
  std::string der;
  if (is_rsa_alg(alg)) {
    if (!EVP_PKEY_is_a(key, "RSA")) return false;
  } else {
    const int want_bits = alg == Alg::ES384 ? 384 : 256;
    if (!EVP_PKEY_is_a(key, "EC") || EVP_PKEY_get_bits(key) != want_bits) return false;
    auto converted = ecdsa_raw_to_der(signature, ec_part_bytes(alg));
    if (!converted) return false;
    der = std::move(*converted);
    signature = der;
  }
  MdCtxPtr md_ctx(EVP_MD_CTX_new());
  if (!md_ctx) return false;
  EVP_PKEY_CTX* pkey_ctx = nullptr;  // owned by md_ctx
  if (EVP_DigestVerifyInit_ex(md_ctx.get(), &pkey_ctx, digest_name(alg), nullptr, nullptr, key,
                              nullptr) != 1) {
    return false;
  }
  if (is_rsa_alg(alg)) {
    if (EVP_PKEY_CTX_set_rsa_padding(
            pkey_ctx, is_pss_alg(alg) ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) != 1) {
      return false;
    }
    // RFC 7518 §3.5: salt as long as the hash; MGF1 uses the same hash (OpenSSL's default).
    if (is_pss_alg(alg) &&
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pkey_ctx, RSA_PSS_SALTLEN_DIGEST) != 1) {
      return false;
    }
  }
  return EVP_DigestVerify(md_ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(),
                          reinterpret_cast<const unsigned char*>(signing_input.data()),
                          signing_input.size()) == 1;
}

// A NumericDate claim: absent is fine unless required; present must be a finite number.
enum class TimeRead { absent, ok, bad };
TimeRead read_time(const nlohmann::json& payload, const char* name, double& out) {
  const auto it = payload.find(name);
  if (it == payload.end()) return TimeRead::absent;
  if (!it->is_number()) return TimeRead::bad;
  out = it->get<double>();
  // Beyond ±1e13 s (~300000 years) is nonsense, and would not fit the int64 we expose.
  if (!std::isfinite(out) || std::fabs(out) > 1e13) return TimeRead::bad;
  return TimeRead::ok;
}

}  // namespace

std::optional<JwtParts> split_jwt(std::string_view token, std::string& error) {
  try {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (true) {
      const size_t dot = token.find('.', start);
      if (dot == std::string_view::npos) {
        parts.push_back(token.substr(start));
        break;
      }
      parts.push_back(token.substr(start, dot - start));
      start = dot + 1;
    }
    if (parts.size() != 3) {
      error = "token has " + std::to_string(parts.size()) + " parts, a JWS has 3";
      return std::nullopt;
    }
    JwtParts out;
    auto header = decode_object(parts[0], "header", error);
    if (!header) return std::nullopt;
    auto payload = decode_object(parts[1], "payload", error);
    if (!payload) return std::nullopt;
    auto signature = base64url_decode(parts[2]);
    if (!signature) {
      error = "signature is not valid base64url";
      return std::nullopt;
    }
    out.header = std::move(*header);
    out.payload = std::move(*payload);
    out.signing_input = std::string(token.substr(0, parts[0].size() + 1 + parts[1].size()));
    out.signature = std::move(*signature);
    return out;
  } catch (const std::exception& e) {
    error = std::string("token could not be read: ") + e.what();
    return std::nullopt;
  }
}

std::optional<Alg> parse_alg(std::string_view name) {
  static constexpr std::pair<std::string_view, Alg> kAlgs[] = {
      {"RS256", Alg::RS256}, {"RS384", Alg::RS384}, {"RS512", Alg::RS512}, {"PS256", Alg::PS256},
      {"PS384", Alg::PS384}, {"PS512", Alg::PS512}, {"ES256", Alg::ES256}, {"ES384", Alg::ES384},
  };
  for (const auto& [n, a] : kAlgs) {
    if (n == name) return a;
  }
  return std::nullopt;
}

std::string_view to_string(Alg alg) {
  switch (alg) {
    case Alg::RS256:
      return "RS256";
    case Alg::RS384:
      return "RS384";
    case Alg::RS512:
      return "RS512";
    case Alg::PS256:
      return "PS256";
    case Alg::PS384:
      return "PS384";
    case Alg::PS512:
      return "PS512";
    case Alg::ES256:
      return "ES256";
    case Alg::ES384:
      return "ES384";
  }
  return "?";
}

std::string_view to_string(VerifyStatus status) {
  switch (status) {
    case VerifyStatus::ok:
      return "ok";
    case VerifyStatus::malformed:
      return "malformed";
    case VerifyStatus::unsupported_alg:
      return "unsupported_alg";
    case VerifyStatus::unknown_kid:
      return "unknown_kid";
    case VerifyStatus::bad_signature:
      return "bad_signature";
    case VerifyStatus::wrong_issuer:
      return "wrong_issuer";
    case VerifyStatus::expired:
      return "expired";
    case VerifyStatus::not_yet_valid:
      return "not_yet_valid";
    case VerifyStatus::wrong_audience:
      return "wrong_audience";
  }
  return "?";
}

bool key_fits_alg(const Jwk& jwk, Alg alg) {
  if (!jwk.alg.empty() && jwk.alg != to_string(alg)) return false;
  switch (alg) {
    case Alg::ES256:
      return jwk.kty == "EC" && jwk.crv == "P-256";
    case Alg::ES384:
      return jwk.kty == "EC" && jwk.crv == "P-384";
    default:
      return jwk.kty == "RSA";
  }
}

bool verify_signature(Alg alg, EVP_PKEY* key, std::string_view signing_input,
                      std::string_view signature) {
  const bool ok = verify_signature_impl(alg, key, signing_input, signature);
  // Leave nothing on this thread's OpenSSL error queue for the next TLS user (curl) to find.
  ERR_clear_error();
  return ok;
}

VerifyResult check_claims(const nlohmann::json& payload, const Expectations& expect,
                          int64_t now_unix) {
  const double leeway = static_cast<double>(std::max<int64_t>(0, expect.leeway_seconds));
  const double now = static_cast<double>(now_unix);

  if (!expect.issuer.empty()) {
    const auto it = payload.find("iss");
    if (it == payload.end() || !it->is_string()) {
      return fail(VerifyStatus::wrong_issuer,
                  "token has no issuer (iss), expected '" + printable(expect.issuer) + "'");
    }
    if (it->get_ref<const std::string&>() != expect.issuer) {
      return fail(VerifyStatus::wrong_issuer,
                  "issuer '" + printable(it->get_ref<const std::string&>()) +
                      "' is not the expected '" + printable(expect.issuer) + "'");
    }
  }

  double exp = 0, nbf = 0, iat = 0;
  switch (read_time(payload, "exp", exp)) {
    case TimeRead::absent:
      return fail(VerifyStatus::malformed, "token has no expiry (exp)");
    case TimeRead::bad:
      return fail(VerifyStatus::malformed, "exp is not a valid NumericDate");
    case TimeRead::ok:
      break;
  }
  const auto nbf_read = read_time(payload, "nbf", nbf);
  if (nbf_read == TimeRead::bad) {
    return fail(VerifyStatus::malformed, "nbf is not a valid NumericDate");
  }
  const auto iat_read = read_time(payload, "iat", iat);
  if (iat_read == TimeRead::bad) {
    return fail(VerifyStatus::malformed, "iat is not a valid NumericDate");
  }
  const std::string clock = " (now " + std::to_string(now_unix) + ", leeway " +
                            std::to_string(static_cast<int64_t>(leeway)) + " s)";
  if (now >= exp + leeway) {
    return fail(
        VerifyStatus::expired,
        "token expired at " + std::to_string(static_cast<int64_t>(std::floor(exp))) + clock);
  }
  if (nbf_read == TimeRead::ok && now + leeway < nbf) {
    return fail(
        VerifyStatus::not_yet_valid,
        "token not valid before " + std::to_string(static_cast<int64_t>(std::floor(nbf))) + clock);
  }
  if (iat_read == TimeRead::ok && now + leeway < iat) {
    return fail(VerifyStatus::not_yet_valid,
                "token issued in the future at " +
                    std::to_string(static_cast<int64_t>(std::floor(iat))) + clock);
  }

  if (!expect.audience.empty()) {
    bool found = false;
    if (const auto it = payload.find("aud"); it != payload.end()) {
      if (it->is_string()) {
        found = it->get_ref<const std::string&>() == expect.audience;
      } else if (it->is_array()) {
        for (const auto& a : *it) {
          if (!a.is_string()) return fail(VerifyStatus::malformed, "aud holds a non-string");
          found = found || a.get_ref<const std::string&>() == expect.audience;
        }
      } else {
        return fail(VerifyStatus::malformed, "aud is neither a string nor an array");
      }
    }
    if (const auto it = payload.find("azp"); !found && it != payload.end()) {
      if (!it->is_string()) return fail(VerifyStatus::malformed, "azp is not a string");
      found = it->get_ref<const std::string&>() == expect.audience;
    }
    if (!found) {
      return fail(VerifyStatus::wrong_audience,
                  "audience '" + printable(expect.audience) + "' is in neither aud nor azp");
    }
  }

  VerifyResult ok;
  ok.status = VerifyStatus::ok;
  return ok;
}

VerifyResult verify(std::string_view token, const Jwks& jwks, const Expectations& expect,
                    int64_t now_unix) {
  try {
    std::string error;
    auto parts = split_jwt(token, error);
    if (!parts) return fail(VerifyStatus::malformed, error);

    const auto alg_it = parts->header.find("alg");
    if (alg_it == parts->header.end() || !alg_it->is_string()) {
      return fail(VerifyStatus::malformed, "header has no alg");
    }
    const auto& alg_name = alg_it->get_ref<const std::string&>();
    const auto alg = parse_alg(alg_name);
    if (!alg) {
      return fail(VerifyStatus::unsupported_alg,
                  "alg '" + printable(alg_name) + "' is not accepted (RS*, PS*, ES256, ES384 are)");
    }
    // RFC 7515 §4.1.11: extensions we do not understand must make the token invalid.
    if (parts->header.contains("crit")) {
      return fail(VerifyStatus::malformed, "header has a crit member, no extension is supported");
    }
    // Keys are only ever taken from the JWKS, never from jwk/jku/x5u/x5c header members.
    std::optional<std::string> kid;
    if (const auto it = parts->header.find("kid"); it != parts->header.end()) {
      if (!it->is_string()) return fail(VerifyStatus::malformed, "kid is not a string");
      kid = it->get<std::string>();
    }

    std::vector<const Jwk*> candidates;
    for (const auto& jwk : jwks.keys) {
      if (!kid || jwk.kid == *kid) candidates.push_back(&jwk);
    }
    if (kid && candidates.empty()) {
      return fail(VerifyStatus::unknown_kid, "no key with kid '" + printable(*kid) +
                                                 "' among the JWKS's " +
                                                 std::to_string(jwks.keys.size()) + " keys");
    }
    std::erase_if(candidates, [&](const Jwk* k) { return !key_fits_alg(*k, *alg); });
    if (candidates.empty()) {
      if (!kid) {
        return fail(VerifyStatus::unknown_kid,
                    "token has no kid and no JWKS key fits " + std::string(to_string(*alg)));
      }
      const Jwk& k = *std::find_if(jwks.keys.begin(), jwks.keys.end(),
                                   [&](const Jwk& j) { return j.kid == *kid; });
      return fail(VerifyStatus::bad_signature,
                  "key '" + printable(*kid) + "' (" + k.kty + (k.crv.empty() ? "" : " " + k.crv) +
                      (k.alg.empty() ? "" : ", alg " + printable(k.alg)) + ") does not fit " +
                      std::string(to_string(*alg)));
    }
    const Jwk* signer = nullptr;
    for (const Jwk* k : candidates) {
      if (verify_signature(*alg, k->key.get(), parts->signing_input, parts->signature)) {
        signer = k;
        break;
      }
    }
    if (signer == nullptr) {
      return fail(VerifyStatus::bad_signature,
                  std::string(to_string(*alg)) + " signature does not verify with " +
                      (kid ? "key '" + printable(*kid) + "'"
                           : std::to_string(candidates.size()) + " candidate key(s)"));
    }

    VerifyResult result = check_claims(parts->payload, expect, now_unix);
    result.kid = signer->kid;
    result.alg = std::string(to_string(*alg));
    if (const auto it = parts->payload.find("exp"); it != parts->payload.end() && it->is_number()) {
      const double exp = it->get<double>();
      if (std::isfinite(exp) && std::fabs(exp) <= 1e13) {
        result.exp = static_cast<int64_t>(std::floor(exp));
      }
    }
    result.claims = std::move(parts->payload);
    return result;
  } catch (const std::exception& e) {
    return fail(VerifyStatus::malformed, std::string("token could not be verified: ") + e.what());
  }
}

}  // namespace pes::jwt
