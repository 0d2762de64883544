#include "probes/keycloak/jwks.h"

#include <openssl/core_names.h>
#include <openssl/err.h>

#include <nlohmann/json.hpp>

#include "probes/keycloak/base64url.h"

namespace pes::jwt {
namespace {

constexpr int kMinRsaBits = 2048;

// Key members are copied into messages, so keep them short and printable.
std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) out += "...";
  return out;
}

// Optional string member; a present non-string member is an error.
bool string_member(const nlohmann::json& obj, const char* name, std::string& out,
                   std::string& error) {
  const auto it = obj.find(name);
  if (it == obj.end()) return true;
  if (!it->is_string()) {
    error = std::string("\"") + name + "\" is not a string";
    return false;
  }
  out = it->get<std::string>();
  return true;
}

// Required base64url member, decoded.
std::optional<std::string> bytes_member(const nlohmann::json& obj, const char* name,
                                        std::string& error) {
  const auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    error = std::string("\"") + name + "\" missing or not a string";
    return std::nullopt;
  }
  auto bytes = base64url_decode(it->get_ref<const std::string&>());
  if (!bytes || bytes->empty()) {
    error = std::string("\"") + name + "\" is not valid base64url";
    return std::nullopt;
  }
  return bytes;
}

PkeyPtr from_params(const char* type, OSSL_PARAM_BLD* bld, std::string& error) {
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    error = "OpenSSL rejected the key";
    ERR_clear_error();  // leave nothing for the next TLS user of this thread's queue
    return nullptr;
  }
  return PkeyPtr(raw);
}

PkeyPtr rsa_key(const nlohmann::json& obj, std::string& error) {
  const auto n = bytes_member(obj, "n", error);
  if (!n) return nullptr;
  const auto e = bytes_member(obj, "e", error);
  if (!e) return nullptr;
  BignumPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                           static_cast<int>(n->size()), nullptr));
  BignumPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                           static_cast<int>(e->size()), nullptr));
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bn_n || !bn_e || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    error = "out of memory";
    return nullptr;
  }
  if (BN_num_bits(bn_n.get()) < kMinRsaBits) {
    error = "RSA modulus below " + std::to_string(kMinRsaBits) + " bits";
    return nullptr;
  }
  return from_params("RSA", bld.get(), error);
}

PkeyPtr ec_key(const nlohmann::json& obj, const std::string& crv, std::string& error) {
  size_t field_bytes = 0;
  if (crv == "P-256") {
    field_bytes = 32;
  } else if (crv == "P-384") {
    field_bytes = 48;
  } else {
    error = "curve '" + printable(crv) + "' not supported";
    return nullptr;
  }
  const auto x = bytes_member(obj, "x", error);
  if (!x) return nullptr;
  const auto y = bytes_member(obj, "y", error);
  if (!y) return nullptr;
  // RFC 7518 §6.2.1.2: coordinates are exactly the field size, so a point from another curve
  // cannot pass as this one.
  if (x->size() != field_bytes || y->size() != field_bytes) {
    error = "coordinates are not " + std::to_string(field_bytes) + " bytes long for " + crv;
    return nullptr;
  }
  std::string point = "\x04" + *x + *y;  // uncompressed SEC1 point
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, crv.c_str(), 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    error = "out of memory";
    return nullptr;
  }
  // OpenSSL checks that the point lies on the named curve.
  return from_params("EC", bld.get(), error);
}

// Returns the key, or nullopt with `why` set when it is to be skipped.
std::optional<Jwk> parse_key(const nlohmann::json& obj, std::string& why) {
  if (!obj.is_object()) {
    why = "not a JSON object";
    return std::nullopt;
  }
  Jwk jwk;
  if (!string_member(obj, "kid", jwk.kid, why) || !string_member(obj, "kty", jwk.kty, why) ||
      !string_member(obj, "alg", jwk.alg, why) || !string_member(obj, "use", jwk.use, why) ||
      !string_member(obj, "crv", jwk.crv, why)) {
    return std::nullopt;
  }
  if (!jwk.use.empty() && jwk.use != "sig") {
    why = "use '" + printable(jwk.use) + "' is not a signature key";
    return std::nullopt;
  }
  if (jwk.kty == "RSA") {
    jwk.crv.clear();
    jwk.key = rsa_key(obj, why);
  } else if (jwk.kty == "EC") {
    jwk.key = ec_key(obj, jwk.crv, why);
  } else {
    why = "kty '" + printable(jwk.kty) + "' not supported";
    return std::nullopt;
  }
  if (!jwk.key) return std::nullopt;
  return jwk;
}

}  // namespace

std::optional<Jwks> parse_jwks(std::string_view json_text, std::string& error) {
  try {
    const auto doc = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      error = "JWKS is not valid JSON";
      return std::nullopt;
    }
    if (!doc.is_object() || !doc.contains("keys") || !doc["keys"].is_array()) {
      error = "JWKS has no \"keys\" array";
      return std::nullopt;
    }
    Jwks jwks;
    for (const auto& entry : doc["keys"]) {
      std::string why;
      if (auto jwk = parse_key(entry, why)) {
        jwks.keys.push_back(std::move(*jwk));
      } else {
        std::string kid;
        if (entry.is_object() && entry.contains("kid") && entry["kid"].is_string()) {
          kid = entry["kid"].get<std::string>();
        }
        jwks.skipped.push_back("kid '" + printable(kid) + "': " + why);
      }
    }
    return jwks;
  } catch (const std::exception& e) {
    error = std::string("JWKS could not be read: ") + e.what();
    return std::nullopt;
  }
}

}  // namespace pes::jwt
