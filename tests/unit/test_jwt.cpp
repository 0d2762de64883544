// Unit tests for probes/keycloak: base64url, JWT splitting, JWKS parsing, signature and claim
// checks. Keys are generated here at run time and tokens are signed by a small test-only signer.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "probes/keycloak/base64url.h"
#include "probes/keycloak/jwks.h"
#include "probes/keycloak/jwt.h"
#include "probes/keycloak/ossl_handles.h"

namespace pes::jwt {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'700'000'000;
constexpr const char* kIssuer = "https://sso.example.test/realms/pes";

// ---------------------------------------------------------------------------------------------
// Test-only key generation, JWK export and signing.

PkeyPtr generate_rsa(unsigned bits) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
  if (!key) throw std::runtime_error("RSA keygen failed");
  return key;
}

PkeyPtr generate_ec(const char* curve) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
  if (!key) throw std::runtime_error("EC keygen failed");
  return key;
}

std::string bn_param(EVP_PKEY* key, const char* name, int pad_to = 0) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) throw std::runtime_error("get_bn_param");
  BignumPtr bn(raw);
  const int len = pad_to > 0 ? pad_to : BN_num_bytes(bn.get());
  std::string out(static_cast<size_t>(len), '\0');
  BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), len);
  return out;
}

json rsa_jwk(EVP_PKEY* key, const std::string& kid) {
  return {{"kty", "RSA"},
          {"kid", kid},
          {"use", "sig"},
          {"n", base64url_encode(bn_param(key, OSSL_PKEY_PARAM_RSA_N))},
          {"e", base64url_encode(bn_param(key, OSSL_PKEY_PARAM_RSA_E))}};
}

json ec_jwk(EVP_PKEY* key, const std::string& crv, const std::string& kid) {
  const int size = crv == "P-384" ? 48 : 32;
  return {{"kty", "EC"},
          {"kid", kid},
          {"crv", crv},
          {"x", base64url_encode(bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, size))},
          {"y", base64url_encode(bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, size))}};
}

// Signs like a JWS issuer does: PKCS#1 v1.5, PSS (salt = hash length) or ECDSA as raw r||s.
std::string sign(EVP_PKEY* key, const std::string& alg, const std::string& input,
                 int pss_salt = RSA_PSS_SALTLEN_DIGEST) {
  const std::string bits = alg.substr(2);
  const std::string md = "SHA" + bits;
  MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestSignInit_ex(ctx.get(), &pctx, md.c_str(), nullptr, nullptr, key, nullptr) != 1) {
    throw std::runtime_error("DigestSignInit");
  }
  if (alg[0] == 'P') {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt);
  }
  size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, input.size()) != 1) {
    throw std::runtime_error("DigestSign size");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in,
                     input.size()) != 1) {
    throw std::runtime_error("DigestSign");
  }
  sig.resize(len);
  if (alg[0] != 'E') return sig;
  const int part = alg == "ES384" ? 48 : 32;
  const auto* der = reinterpret_cast<const unsigned char*>(sig.data());
  EcdsaSigPtr ecdsa(d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(sig.size())));
  std::string raw(static_cast<size_t>(2 * part), '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa.get()), out, part);
  BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa.get()), out + part, part);
  return raw;
}

std::string hmac(const std::string& md, const std::string& secret, const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  if (!EVP_Q_mac(nullptr, "HMAC", nullptr, md.c_str(), nullptr, secret.data(), secret.size(),
                 reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, sizeof(out),
                 &len)) {
    throw std::runtime_error("HMAC");
  }
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string signing_input(const json& header, const json& payload) {
  return base64url_encode(header.dump()) + "." + base64url_encode(payload.dump());
}

std::string make_token(const json& header, const json& payload, const std::string& signature) {
  return signing_input(header, payload) + "." + base64url_encode(signature);
}

std::string make_token(EVP_PKEY* key, const json& header, const json& payload) {
  const auto input = signing_input(header, payload);
  return input + "." + base64url_encode(sign(key, header.at("alg"), input));
}

std::string public_key_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, OsslDeleter<BIO_free_all>> bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string public_key_der(EVP_PKEY* key) {
  const int len = i2d_PUBKEY(key, nullptr);
  std::string out(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  i2d_PUBKEY(key, &p);
  return out;
}

Jwks jwks_from(const json& doc) {
  std::string error;
  auto jwks = parse_jwks(doc.dump(), error);
  if (!jwks) throw std::runtime_error("parse_jwks: " + error);
  return std::move(*jwks);
}

json claims(int64_t now = kNow) {
  return {{"iss", kIssuer},     {"sub", "service-account-pes"},
          {"azp", "pes-agent"}, {"aud", "account"},
          {"iat", now - 10},    {"nbf", now - 10},
          {"exp", now + 300},   {"scope", "openid"}};
}

// Keys are generated once for the whole binary (RSA generation takes a while).
class Keys : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = generate_rsa(2048).release();
    rsa_other_ = generate_rsa(2048).release();
    ec256_ = generate_ec("P-256").release();
    ec384_ = generate_ec("P-384").release();
  }
  static void TearDownTestSuite() {
    for (EVP_PKEY* k : {rsa_, rsa_other_, ec256_, ec384_}) EVP_PKEY_free(k);
  }

  // The issuer's JWKS: one key of each kind, as Keycloak publishes it (plus an enc key).
  static json jwks_doc() {
    json enc = rsa_jwk(rsa_other_, "rsa-enc");
    enc["use"] = "enc";
    enc["alg"] = "RSA-OAEP";
    return {{"keys",
             {rsa_jwk(rsa_, "rsa-1"), ec_jwk(ec256_, "P-256", "ec-256"),
              ec_jwk(ec384_, "P-384", "ec-384"), enc}}};
  }

  static Expectations expect() {
    Expectations e;
    e.issuer = kIssuer;
    e.audience = "pes-agent";
    return e;
  }

  // A token signed by the issuer's key for `alg`.
  static std::string token(const std::string& alg, const json& payload = claims()) {
    if (alg == "ES256") return make_token(ec256_, {{"alg", alg}, {"kid", "ec-256"}}, payload);
    if (alg == "ES384") return make_token(ec384_, {{"alg", alg}, {"kid", "ec-384"}}, payload);
    return make_token(rsa_, {{"alg", alg}, {"typ", "JWT"}, {"kid", "rsa-1"}}, payload);
  }

  static VerifyResult check(const std::string& tok, const Expectations& e = expect(),
                            int64_t now = kNow) {
    const Jwks jwks = jwks_from(jwks_doc());
    VerifyResult r = verify(tok, jwks, e, now);
    // Whatever happens, the token never appears in the message.
    if (!tok.empty()) {
      EXPECT_EQ(r.message.find(tok), std::string::npos);
    }
    const auto last_dot = tok.rfind('.');
    if (last_dot != std::string::npos && tok.size() - last_dot > 8) {
      EXPECT_EQ(r.message.find(tok.substr(last_dot + 1)), std::string::npos);
    }
    EXPECT_EQ(r.ok(), r.message.empty()) << r.message;
    return r;
  }

  static inline EVP_PKEY* rsa_ = nullptr;
  static inline EVP_PKEY* rsa_other_ = nullptr;
  static inline EVP_PKEY* ec256_ = nullptr;
  static inline EVP_PKEY* ec384_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// base64url

TEST(Base64Url, Rfc4648Vectors) {
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("foob"), "Zm9vYg");
  EXPECT_EQ(base64url_encode("fooba"), "Zm9vYmE");
  EXPECT_EQ(base64url_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64url_encode(std::string("\xfb\xff\xbf", 3)), "-_-_");
  EXPECT_EQ(base64url_decode("Zm9vYmE"), "fooba");
  EXPECT_EQ(base64url_decode("-_-_"), std::string("\xfb\xff\xbf", 3));
  EXPECT_EQ(base64url_decode(""), "");
}

TEST(Base64Url, RoundTripsEveryLengthAndByte) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    bytes += static_cast<char>((i * 37 + 11) & 0xFF);
    const auto decoded = base64url_decode(base64url_encode(bytes));
    ASSERT_TRUE(decoded.has_value()) << "length " << bytes.size();
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Base64Url, RejectsPaddingAndForeignCharacters) {
  EXPECT_FALSE(base64url_decode("Zg=="));
  EXPECT_FALSE(base64url_decode("Zm8="));
  EXPECT_FALSE(base64url_decode("+/+/"));  // standard base64 alphabet
  EXPECT_FALSE(base64url_decode("Zm9v Yg"));
  EXPECT_FALSE(base64url_decode("Zm9v\nYg"));
  EXPECT_FALSE(base64url_decode(std::string("Zm\0v", 4)));
  EXPECT_FALSE(base64url_decode("Zm9v.Yg"));
  EXPECT_FALSE(base64url_decode("Zm9v\xc3\xa4"));
}

TEST(Base64Url, RejectsImpossibleLengthAndNonCanonicalTail) {
  EXPECT_FALSE(base64url_decode("Z"));
  EXPECT_FALSE(base64url_decode("Zm9vY"));
  EXPECT_FALSE(base64url_decode("Zh"));   // "Zg" is the only encoding of "f"
  EXPECT_FALSE(base64url_decode("Zm9"));  // "Zm8" is the only encoding of "fo"
  EXPECT_TRUE(base64url_decode("Zm8"));
}

// ---------------------------------------------------------------------------------------------
// split_jwt

TEST(SplitJwt, DecodesAllThreeParts) {
  const json header = {{"alg", "RS256"}, {"kid", "k"}};
  const json payload = {{"sub", "x"}, {"exp", 5}};
  const std::string token = make_token(header, payload, "\x01\x02sig");
  std::string error;
  const auto parts = split_jwt(token, error);
  ASSERT_TRUE(parts) << error;
  EXPECT_EQ(parts->header, header);
  EXPECT_EQ(parts->payload, payload);
  EXPECT_EQ(parts->signing_input, signing_input(header, payload));
  EXPECT_EQ(parts->signature, "\x01\x02sig");
}

TEST(SplitJwt, AcceptsEmptySignaturePart) {
  std::string error;
  const auto parts = split_jwt(make_token({{"alg", "none"}}, {{"a", 1}}, ""), error);
  ASSERT_TRUE(parts) << error;
  EXPECT_TRUE(parts->signature.empty());
}

TEST(SplitJwt, RejectsWrongPartCount) {
  const std::string three = make_token({{"alg", "RS256"}}, {{"a", 1}}, "sig");
  const std::string two = three.substr(0, three.rfind('.'));
  for (const std::string& bad : {std::string(), std::string("abc"), two, three + ".x",
                                 three + ".x.y" /* JWE-like 5 parts */}) {
    std::string error;
    EXPECT_FALSE(split_jwt(bad, error)) << bad;
    EXPECT_NE(error.find("parts"), std::string::npos) << error;
  }
}

TEST(SplitJwt, RejectsBadBase64AndNonJsonAndNonObjects) {
  const std::string h = base64url_encode(R"({"alg":"RS256"})");
  const std::string p = base64url_encode(R"({"sub":"x"})");
  const struct {
    std::string token;
    std::string error;
  } cases[] = {
      {h + "=." + p + ".c2ln", "header is not valid base64url"},
      {h + "." + p + "*." + "c2ln", "payload is not valid base64url"},
      {h + "." + p + ".c2ln+", "signature is not valid base64url"},
      {base64url_encode("{not json") + "." + p + ".c2ln", "header is not valid JSON"},
      {h + "." + base64url_encode("sub=x") + ".c2ln", "payload is not valid JSON"},
      {base64url_encode("[1,2]") + "." + p + ".c2ln", "header is not a JSON object"},
      {h + "." + base64url_encode("42") + ".c2ln", "payload is not a JSON object"},
      {h + "." + base64url_encode("\"text\"") + ".c2ln", "payload is not a JSON object"},
      {"." + p + ".c2ln", "header is not valid JSON"},
  };
  for (const auto& c : cases) {
    std::string error;
    EXPECT_FALSE(split_jwt(c.token, error)) << c.error;
    EXPECT_EQ(error, c.error);
  }
}

// ---------------------------------------------------------------------------------------------
// parse_jwks

TEST(ParseJwks, RejectsDocumentsWithoutKeysArray) {
  for (const std::string doc : {"", "not json", "[]", "{}", R"({"keys": {}})", R"({"keys": 1})"}) {
    std::string error;
    EXPECT_FALSE(parse_jwks(doc, error)) << doc;
    EXPECT_FALSE(error.empty());
  }
  std::string error;
  const auto empty = parse_jwks(R"({"keys": []})", error);
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->keys.empty());
}

TEST_F(Keys, ParsesRsaAndEcKeysWithTheirMembers) {
  json doc = jwks_doc();
  doc["keys"][0]["alg"] = "RS256";
  const Jwks jwks = jwks_from(doc);
  ASSERT_EQ(jwks.keys.size(), 3u);  // the enc key is skipped
  EXPECT_EQ(jwks.keys[0].kid, "rsa-1");
  EXPECT_EQ(jwks.keys[0].kty, "RSA");
  EXPECT_EQ(jwks.keys[0].alg, "RS256");
  EXPECT_EQ(jwks.keys[0].use, "sig");
  EXPECT_TRUE(EVP_PKEY_is_a(jwks.keys[0].key.get(), "RSA"));
  EXPECT_EQ(EVP_PKEY_get_bits(jwks.keys[0].key.get()), 2048);
  EXPECT_EQ(EVP_PKEY_eq(jwks.keys[0].key.get(), rsa_), 1);
  EXPECT_EQ(jwks.keys[1].kid, "ec-256");
  EXPECT_EQ(jwks.keys[1].crv, "P-256");
  EXPECT_EQ(EVP_PKEY_eq(jwks.keys[1].key.get(), ec256_), 1);
  EXPECT_EQ(jwks.keys[2].crv, "P-384");
  EXPECT_EQ(EVP_PKEY_get_bits(jwks.keys[2].key.get()), 384);
  EXPECT_EQ(EVP_PKEY_eq(jwks.keys[2].key.get(), ec384_), 1);
  ASSERT_EQ(jwks.skipped.size(), 1u);
  EXPECT_NE(jwks.skipped[0].find("rsa-enc"), std::string::npos) << jwks.skipped[0];
}

TEST_F(Keys, SkipsKeysItCannotUse) {
  json small = rsa_jwk(generate_rsa(1024).get(), "small");
  json no_n = rsa_jwk(rsa_, "no-n");
  no_n.erase("n");
  json bad_b64 = rsa_jwk(rsa_, "bad-b64");
  bad_b64["e"] = "AQAB==";
  json n_number = rsa_jwk(rsa_, "n-number");
  n_number["n"] = 12345;
  json kid_number = rsa_jwk(rsa_, "x");
  kid_number["kid"] = 7;
  json okp = {{"kty", "OKP"}, {"crv", "Ed25519"}, {"kid", "okp"}, {"x", "11qYAYKxCrfVS_7T"}};
  json oct = {{"kty", "oct"}, {"kid", "oct"}, {"k", "c2VjcmV0"}};
  json p521 = ec_jwk(ec256_, "P-256", "p521");
  p521["crv"] = "P-521";
  json no_crv = ec_jwk(ec256_, "P-256", "no-crv");
  no_crv.erase("crv");
  // A P-384 point labelled P-256: wrong coordinate size.
  json wrong_curve = ec_jwk(ec384_, "P-384", "wrong-curve");
  wrong_curve["crv"] = "P-256";
  // Right size, but the point is not on the curve.
  json off_curve = ec_jwk(ec256_, "P-256", "off-curve");
  std::string y = *base64url_decode(off_curve["y"].get<std::string>());
  y.back() = static_cast<char>(y.back() ^ 1);
  off_curve["y"] = base64url_encode(y);
  json enc_ec = ec_jwk(ec256_, "P-256", "enc-ec");
  enc_ec["use"] = "enc";

  const json doc = {{"keys",
                     {small, no_n, bad_b64, n_number, kid_number, okp, oct, p521, no_crv,
                      wrong_curve, off_curve, enc_ec, "not an object", rsa_jwk(rsa_, "good")}}};
  const Jwks jwks = jwks_from(doc);
  ASSERT_EQ(jwks.keys.size(), 1u);
  EXPECT_EQ(jwks.keys[0].kid, "good");
  ASSERT_EQ(jwks.skipped.size(), 13u);
  const auto skipped_has = [&](const std::string& needle) {
    for (const auto& s : jwks.skipped) {
      if (s.find(needle) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(skipped_has("'small': RSA modulus below 2048 bits"));
  EXPECT_TRUE(skipped_has("'okp': kty 'OKP' not supported"));
  EXPECT_TRUE(skipped_has("'oct': kty 'oct' not supported"));
  EXPECT_TRUE(skipped_has("'p521': curve 'P-521' not supported"));
  EXPECT_TRUE(skipped_has("'wrong-curve': coordinates are not 32 bytes long for P-256"));
  EXPECT_TRUE(skipped_has("'off-curve': OpenSSL rejected the key"));
  EXPECT_TRUE(skipped_has("'enc-ec': use 'enc' is not a signature key"));
  EXPECT_TRUE(skipped_has("'bad-b64': \"e\" is not valid base64url"));
  EXPECT_TRUE(skipped_has("'no-n': \"n\" missing or not a string"));
  EXPECT_TRUE(skipped_has("\"kid\" is not a string"));
}

// ---------------------------------------------------------------------------------------------
// verify: good tokens

class EachAlg : public Keys, public ::testing::WithParamInterface<const char*> {};

TEST_P(EachAlg, ValidTokenVerifies) {
  const std::string alg = GetParam();
  const VerifyResult r = check(token(alg));
  ASSERT_TRUE(r.ok()) << to_string(r.status) << ": " << r.message;
  EXPECT_EQ(r.status, VerifyStatus::ok);
  EXPECT_EQ(r.alg, alg);
  EXPECT_EQ(r.kid, alg[0] == 'E' ? (alg == "ES256" ? "ec-256" : "ec-384") : "rsa-1");
  EXPECT_EQ(r.exp, kNow + 300);
  EXPECT_EQ(r.claims.at("sub"), "service-account-pes");
}

TEST_P(EachAlg, TamperedPayloadFails) {
  const std::string alg = GetParam();
  const std::string good = token(alg);
  json evil = claims();
  evil["sub"] = "admin";
  const std::string forged = good.substr(0, good.find('.')) + "." + base64url_encode(evil.dump()) +
                             good.substr(good.rfind('.'));
  const VerifyResult r = check(forged);
  EXPECT_EQ(r.status, VerifyStatus::bad_signature) << r.message;
  EXPECT_TRUE(r.claims.is_null());  // unverified claims are not handed out
}

TEST_P(EachAlg, TamperedSignatureFails) {
  const std::string alg = GetParam();
  const std::string good = token(alg);
  const auto dot = good.rfind('.');
  std::string sig = *base64url_decode(good.substr(dot + 1));
  for (const size_t pos : {size_t{0}, sig.size() / 2, sig.size() - 1}) {
    std::string bad_sig = sig;
    bad_sig[pos] = static_cast<char>(bad_sig[pos] ^ 0x01);
    const VerifyResult r = check(good.substr(0, dot + 1) + base64url_encode(bad_sig));
    EXPECT_EQ(r.status, VerifyStatus::bad_signature) << "byte " << pos;
  }
  // Signature with its last bytes cut off.
  EXPECT_EQ(check(good.substr(0, dot + 1) + base64url_encode(sig.substr(0, sig.size() - 3))).status,
            VerifyStatus::bad_signature);
  // Empty signature.
  EXPECT_EQ(check(good.substr(0, dot + 1)).status, VerifyStatus::bad_signature);
}

INSTANTIATE_TEST_SUITE_P(Algs, EachAlg,
                         ::testing::Values("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                           "ES256", "ES384"));

TEST_F(Keys, FloatingPointTimesAreAccepted) {
  json payload = claims();
  payload["exp"] = static_cast<double>(kNow) + 300.75;
  payload["iat"] = static_cast<double>(kNow) - 0.5;
  const VerifyResult r = check(token("RS256", payload));
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.exp, kNow + 300);
}

TEST_F(Keys, SignatureFromAnotherKeyWithTheSameKidFails) {
  const auto tok = make_token(rsa_other_, {{"alg", "RS256"}, {"kid", "rsa-1"}}, claims());
  const VerifyResult r = check(tok);
  EXPECT_EQ(r.status, VerifyStatus::bad_signature);
  EXPECT_NE(r.message.find("'rsa-1'"), std::string::npos) << r.message;
}

TEST_F(Keys, PssSaltMustBeTheHashLength) {
  const auto input = signing_input({{"alg", "PS256"}, {"kid", "rsa-1"}}, claims());
  EXPECT_TRUE(check(input + "." + base64url_encode(sign(rsa_, "PS256", input, 32))).ok());
  for (const int salt : {0, 20, 64, RSA_PSS_SALTLEN_MAX}) {
    EXPECT_EQ(check(input + "." + base64url_encode(sign(rsa_, "PS256", input, salt))).status,
              VerifyStatus::bad_signature)
        << "salt " << salt;
  }
}

TEST_F(Keys, PssSignatureLabelledRs256Fails) {
  const auto input = signing_input({{"alg", "RS256"}, {"kid", "rsa-1"}}, claims());
  const auto tok = input + "." + base64url_encode(sign(rsa_, "PS256", input));
  EXPECT_EQ(check(tok).status, VerifyStatus::bad_signature);
}

// ---------------------------------------------------------------------------------------------
// verify: algorithms

TEST_F(Keys, AlgNoneIsRejected) {
  for (const char* none : {"none", "None", "NONE", "nOnE"}) {
    const json header = {{"alg", none}, {"kid", "rsa-1"}};
    EXPECT_EQ(check(make_token(header, claims(), "")).status, VerifyStatus::unsupported_alg)
        << none;
    // A none token carrying a valid RS256 signature over its input is still refused.
    const auto input = signing_input(header, claims());
    EXPECT_EQ(check(input + "." + base64url_encode(sign(rsa_, "RS256", input))).status,
              VerifyStatus::unsupported_alg);
  }
}

TEST_F(Keys, HmacWithThePublicKeyAsSecretIsRejected) {
  // The algorithm-confusion attack: HMAC over the token keyed with the issuer's public key, in
  // each form an attacker might guess (PEM, DER, the JWK's modulus, the JWK's JSON).
  const std::vector<std::string> secrets = {public_key_pem(rsa_), public_key_der(rsa_),
                                            bn_param(rsa_, OSSL_PKEY_PARAM_RSA_N),
                                            rsa_jwk(rsa_, "rsa-1").dump(), public_key_pem(ec256_)};
  for (const std::string alg : {"HS256", "HS384", "HS512"}) {
    for (const auto& secret : secrets) {
      const json header = {{"alg", alg}, {"kid", "rsa-1"}};
      const auto input = signing_input(header, claims());
      const auto tok = input + "." + base64url_encode(hmac("SHA" + alg.substr(2), secret, input));
      const VerifyResult r = check(tok);
      EXPECT_EQ(r.status, VerifyStatus::unsupported_alg) << alg;
      EXPECT_NE(r.message.find(alg), std::string::npos) << r.message;
    }
  }
}

TEST_F(Keys, OtherAlgorithmsAndBadAlgMembersAreRefused) {
  for (const char* alg : {"ES512", "EdDSA", "RS1", "rs256", "RSA-OAEP", ""}) {
    EXPECT_EQ(check(make_token({{"alg", alg}}, claims(), "x")).status,
              VerifyStatus::unsupported_alg)
        << alg;
  }
  EXPECT_EQ(check(make_token({{"kid", "rsa-1"}}, claims(), "x")).status, VerifyStatus::malformed);
  EXPECT_EQ(check(make_token({{"alg", 256}}, claims(), "x")).status, VerifyStatus::malformed);
}

TEST_F(Keys, CritHeaderIsRejected) {
  const auto tok = make_token(
      rsa_, {{"alg", "RS256"}, {"kid", "rsa-1"}, {"crit", {"exp"}}, {"exp", 1}}, claims());
  EXPECT_EQ(check(tok).status, VerifyStatus::malformed);
}

TEST_F(Keys, EcKeyOnTheWrongCurveIsNotUsed) {
  // ES256 header pointing at the P-384 key: the key does not fit the alg.
  const auto tok = make_token(ec384_, {{"alg", "ES256"}, {"kid", "ec-384"}}, claims());
  const VerifyResult r = check(tok);
  EXPECT_EQ(r.status, VerifyStatus::bad_signature);
  EXPECT_NE(r.message.find("does not fit ES256"), std::string::npos) << r.message;
  // ES384 header pointing at the P-256 key, signed with it.
  const auto input = signing_input({{"alg", "ES384"}, {"kid", "ec-256"}}, claims());
  EXPECT_EQ(check(input + "." + base64url_encode(sign(ec256_, "ES256", input))).status,
            VerifyStatus::bad_signature);
  // RS256 header pointing at an EC key and vice versa.
  EXPECT_EQ(check(make_token(rsa_, {{"alg", "RS256"}, {"kid", "ec-256"}}, claims())).status,
            VerifyStatus::bad_signature);
  EXPECT_EQ(check(make_token(ec256_, {{"alg", "ES256"}, {"kid", "rsa-1"}}, claims())).status,
            VerifyStatus::bad_signature);
}

TEST_F(Keys, KeyDeclaredAlgMustMatch) {
  json doc = jwks_doc();
  doc["keys"][0]["alg"] = "RS256";
  const Jwks jwks = jwks_from(doc);
  EXPECT_TRUE(verify(token("RS256"), jwks, expect(), kNow).ok());
  const VerifyResult r = verify(token("PS256"), jwks, expect(), kNow);
  EXPECT_EQ(r.status, VerifyStatus::bad_signature);
  EXPECT_NE(r.message.find("alg RS256"), std::string::npos) << r.message;
}

TEST_F(Keys, EcdsaSignatureOfWrongLengthFails) {
  const auto good = token("ES256");
  const auto dot = good.rfind('.');
  const std::string raw = *base64url_decode(good.substr(dot + 1));
  // An extra byte, a missing byte, r = s = 0, and a DER-encoded signature instead of r||s.
  const auto input = good.substr(0, dot);
  const std::string der = sign(ec256_, "RS256", input);  // "RS256" makes sign() return DER
  for (const std::string& bad : {raw + '\0', raw.substr(1), std::string(64, '\0'), der}) {
    EXPECT_EQ(check(input + "." + base64url_encode(bad)).status, VerifyStatus::bad_signature);
  }
}

TEST(VerifySignature, RefusesKeysOfTheWrongTypeOrSize) {
  const PkeyPtr rsa = generate_rsa(2048);
  const PkeyPtr ec = generate_ec("P-384");
  const std::string input = "header.payload";
  const std::string rs = sign(rsa.get(), "RS256", input);
  const std::string es = sign(ec.get(), "ES384", input);
  EXPECT_TRUE(verify_signature(Alg::RS256, rsa.get(), input, rs));
  EXPECT_FALSE(verify_signature(Alg::RS256, rsa.get(), input + "x", rs));
  EXPECT_FALSE(verify_signature(Alg::RS384, rsa.get(), input, rs));
  EXPECT_FALSE(verify_signature(Alg::PS256, rsa.get(), input, rs));
  EXPECT_TRUE(verify_signature(Alg::ES384, ec.get(), input, es));
  EXPECT_FALSE(verify_signature(Alg::ES256, ec.get(), input, es));
  EXPECT_FALSE(verify_signature(Alg::RS256, ec.get(), input, es));
  EXPECT_FALSE(verify_signature(Alg::ES384, rsa.get(), input, rs));
  EXPECT_FALSE(verify_signature(Alg::RS256, nullptr, input, rs));
  EXPECT_EQ(ERR_peek_error(), 0u);  // the error queue is left clean
}

TEST(ParseAlg, KnowsExactlyTheAcceptedNames) {
  for (const Alg a : {Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512,
                      Alg::ES256, Alg::ES384}) {
    EXPECT_EQ(parse_alg(to_string(a)), a);
  }
  for (const char* n : {"none", "HS256", "HS384", "HS512", "ES512", "EdDSA", "PS256 ", ""}) {
    EXPECT_FALSE(parse_alg(n)) << n;
  }
}

// ---------------------------------------------------------------------------------------------
// verify: keys

TEST_F(Keys, UnknownKidIsReportedAsSuch) {
  const auto tok = make_token(rsa_other_, {{"alg", "RS256"}, {"kid", "rotated-key"}}, claims());
  const VerifyResult r = check(tok);
  EXPECT_EQ(r.status, VerifyStatus::unknown_kid);
  EXPECT_NE(r.message.find("'rotated-key'"), std::string::npos) << r.message;
  // After the probe refetches the JWKS holding the new key, the same token verifies.
  json doc = jwks_doc();
  doc["keys"].push_back(rsa_jwk(rsa_other_, "rotated-key"));
  EXPECT_TRUE(verify(tok, jwks_from(doc), expect(), kNow).ok());
}

TEST_F(Keys, MissingKidWithASingleKeyUsesIt) {
  const Jwks one = jwks_from({{"keys", {rsa_jwk(rsa_, "only")}}});
  const auto tok = make_token(rsa_, {{"alg", "RS256"}}, claims());
  const VerifyResult r = verify(tok, one, expect(), kNow);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.kid, "only");
  // A token without kid signed by another key still fails.
  const auto forged = make_token(rsa_other_, {{"alg", "RS256"}}, claims());
  EXPECT_EQ(verify(forged, one, expect(), kNow).status, VerifyStatus::bad_signature);
}

TEST_F(Keys, MissingKidTriesEveryFittingKey) {
  json doc = {
      {"keys", {rsa_jwk(rsa_other_, "a"), rsa_jwk(rsa_, "b"), ec_jwk(ec256_, "P-256", "c")}}};
  const Jwks jwks = jwks_from(doc);
  const VerifyResult r =
      verify(make_token(rsa_, {{"alg", "RS256"}}, claims()), jwks, expect(), kNow);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.kid, "b");
  // No key fits ES384 at all: nothing to try, so the JWKS may be stale.
  const VerifyResult none =
      verify(make_token(ec384_, {{"alg", "ES384"}}, claims()), jwks, expect(), kNow);
  EXPECT_EQ(none.status, VerifyStatus::unknown_kid);
}

TEST_F(Keys, EmptyJwksGivesUnknownKid) {
  const Jwks empty;
  EXPECT_EQ(verify(token("RS256"), empty, expect(), kNow).status, VerifyStatus::unknown_kid);
  EXPECT_EQ(verify(make_token(rsa_, {{"alg", "RS256"}}, claims()), empty, expect(), kNow).status,
            VerifyStatus::unknown_kid);
}

TEST_F(Keys, NonStringKidIsMalformed) {
  EXPECT_EQ(check(make_token(rsa_, {{"alg", "RS256"}, {"kid", 1}}, claims())).status,
            VerifyStatus::malformed);
}

// ---------------------------------------------------------------------------------------------
// verify: malformed tokens

TEST_F(Keys, MalformedTokensAreReportedAsMalformed) {
  const std::string good = token("RS256");
  const auto first_dot = good.find('.');
  const auto last_dot = good.rfind('.');
  const std::vector<std::string> bad = {
      "",
      "not a token",
      good.substr(0, last_dot),                                  // 2 parts
      good.substr(0, last_dot / 2),                              // truncated inside the payload
      good + ".extra",                                           // 4 parts
      good.substr(0, first_dot) + "!" + good.substr(first_dot),  // bad base64 in header
      good.substr(0, last_dot) + "=" + good.substr(last_dot),    // padding in payload
      good + "=",                                                // padding in signature
      " " + good,
  };
  for (const auto& t : bad) {
    const VerifyResult r = check(t);
    EXPECT_EQ(r.status, VerifyStatus::malformed) << r.message;
    EXPECT_FALSE(r.message.empty());
  }
}

// ---------------------------------------------------------------------------------------------
// verify: claims

TEST_F(Keys, WrongOrMissingIssuerFails) {
  json payload = claims();
  payload["iss"] = "https://evil.example.test/realms/pes";
  VerifyResult r = check(token("RS256", payload));
  EXPECT_EQ(r.status, VerifyStatus::wrong_issuer);
  EXPECT_NE(r.message.find("evil.example.test"), std::string::npos) << r.message;
  EXPECT_EQ(r.kid, "rsa-1");  // the signature was fine; the result says whose key it was
  payload["iss"] = std::string(kIssuer) + "/";
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::wrong_issuer);
  payload.erase("iss");
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::wrong_issuer);
  payload["iss"] = 1;
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::wrong_issuer);
  // Without an expected issuer the claim is not checked.
  Expectations any = expect();
  any.issuer.clear();
  EXPECT_TRUE(check(token("RS256", payload), any).ok());
}

TEST_F(Keys, ExpiryIsRequiredAndChecked) {
  json payload = claims();
  payload["exp"] = kNow - 3600;
  VerifyResult r = check(token("ES256", payload));
  EXPECT_EQ(r.status, VerifyStatus::expired);
  EXPECT_EQ(r.exp, kNow - 3600);
  EXPECT_NE(r.message.find(std::to_string(kNow - 3600)), std::string::npos) << r.message;
  payload.erase("exp");
  EXPECT_EQ(check(token("ES256", payload)).status, VerifyStatus::malformed);
  for (const json& bad :
       {json("1700000300"), json(true), json(nullptr), json::array({1}), json(1e300)}) {
    payload["exp"] = bad;
    EXPECT_EQ(check(token("ES256", payload)).status, VerifyStatus::malformed) << bad.dump();
  }
}

TEST_F(Keys, NotBeforeAndIssuedAtInTheFutureFail) {
  json payload = claims();
  payload["nbf"] = kNow + 3600;
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::not_yet_valid);
  payload = claims();
  payload["iat"] = kNow + 3600;
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::not_yet_valid);
  payload = claims();
  payload.erase("nbf");
  payload.erase("iat");
  EXPECT_TRUE(check(token("RS256", payload)).ok());  // both are optional
  payload["nbf"] = "soon";
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::malformed);
  payload.erase("nbf");
  payload["iat"] = json::object();
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::malformed);
}

TEST_F(Keys, LeewayEdges) {
  const std::string tok = token("RS256");  // iat = nbf = kNow - 10, exp = kNow + 300
  const int64_t exp = kNow + 300, nbf = kNow - 10;
  Expectations e = expect();  // default leeway 30 s
  EXPECT_EQ(e.leeway_seconds, 30);
  EXPECT_TRUE(check(tok, e, exp - 1).ok());
  EXPECT_TRUE(check(tok, e, exp + 29).ok());
  EXPECT_EQ(check(tok, e, exp + 30).status, VerifyStatus::expired);
  EXPECT_TRUE(check(tok, e, nbf - 30).ok());
  EXPECT_EQ(check(tok, e, nbf - 31).status, VerifyStatus::not_yet_valid);

  e.leeway_seconds = 0;
  EXPECT_TRUE(check(tok, e, exp - 1).ok());
  EXPECT_EQ(check(tok, e, exp).status, VerifyStatus::expired);
  EXPECT_TRUE(check(tok, e, nbf).ok());
  EXPECT_EQ(check(tok, e, nbf - 1).status, VerifyStatus::not_yet_valid);

  e.leeway_seconds = -100;  // counts as 0, never narrows the window below the token's own
  EXPECT_TRUE(check(tok, e, exp - 1).ok());
  EXPECT_EQ(check(tok, e, exp).status, VerifyStatus::expired);

  e.leeway_seconds = 600;
  EXPECT_TRUE(check(tok, e, exp + 599).ok());
  EXPECT_EQ(check(tok, e, exp + 600).status, VerifyStatus::expired);
}

TEST_F(Keys, IssuedAtLeewayEdge) {
  json payload = claims();
  payload.erase("nbf");
  payload["iat"] = kNow + 30;
  EXPECT_TRUE(check(token("RS256", payload)).ok());
  payload["iat"] = kNow + 31;
  EXPECT_EQ(check(token("RS256", payload)).status, VerifyStatus::not_yet_valid);
}

TEST_F(Keys, AudienceFromAudStringArrayOrAzp) {
  json payload = claims();  // aud "account", azp "pes-agent"
  Expectations e = expect();
  EXPECT_TRUE(check(token("RS256", payload), e).ok());  // via azp

  payload["azp"] = "other-client";
  EXPECT_EQ(check(token("RS256", payload), e).status, VerifyStatus::wrong_audience);
  payload["aud"] = "pes-agent";
  EXPECT_TRUE(check(token("RS256", payload), e).ok());
  payload["aud"] = json::array({"account", "pes-agent"});
  EXPECT_TRUE(check(token("RS256", payload), e).ok());
  payload["aud"] = json::array({"account", "pes-agent-x"});
  VerifyResult r = check(token("RS256", payload), e);
  EXPECT_EQ(r.status, VerifyStatus::wrong_audience);
  EXPECT_NE(r.message.find("'pes-agent'"), std::string::npos) << r.message;
  payload["aud"] = json::array();
  EXPECT_EQ(check(token("RS256", payload), e).status, VerifyStatus::wrong_audience);

  payload.erase("aud");
  payload.erase("azp");
  EXPECT_EQ(check(token("RS256", payload), e).status, VerifyStatus::wrong_audience);
  payload["azp"] = "pes-agent";
  EXPECT_TRUE(check(token("RS256", payload), e).ok());

  payload["aud"] = 5;
  EXPECT_EQ(check(token("RS256", payload), e).status, VerifyStatus::malformed);
  payload["aud"] = json::array({"pes-agent", 5});
  EXPECT_EQ(check(token("RS256", payload), e).status, VerifyStatus::malformed);

  // No expected audience: aud is not looked at.
  e.audience.clear();
  payload["aud"] = "someone-else";
  payload["azp"] = "someone-else";
  EXPECT_TRUE(check(token("RS256", payload), e).ok());
}

TEST(CheckClaims, OrderAndStatuses) {
  Expectations e;
  e.issuer = "iss-a";
  e.audience = "aud-a";
  const json good = {{"iss", "iss-a"}, {"aud", "aud-a"}, {"exp", kNow + 10}};
  EXPECT_TRUE(check_claims(good, e, kNow).ok());
  // The issuer is checked before expiry: a foreign token is reported as foreign.
  const json foreign_expired = {{"iss", "iss-b"}, {"aud", "aud-a"}, {"exp", kNow - 1000}};
  EXPECT_EQ(check_claims(foreign_expired, e, kNow).status, VerifyStatus::wrong_issuer);
  const json expired_wrong_aud = {{"iss", "iss-a"}, {"aud", "aud-b"}, {"exp", kNow - 1000}};
  EXPECT_EQ(check_claims(expired_wrong_aud, e, kNow).status, VerifyStatus::expired);
}

TEST(VerifyStatusNames, AreTheEnumNames) {
  EXPECT_EQ(to_string(VerifyStatus::ok), "ok");
  EXPECT_EQ(to_string(VerifyStatus::malformed), "malformed");
  EXPECT_EQ(to_string(VerifyStatus::unsupported_alg), "unsupported_alg");
  EXPECT_EQ(to_string(VerifyStatus::unknown_kid), "unknown_kid");
  EXPECT_EQ(to_string(VerifyStatus::bad_signature), "bad_signature");
  EXPECT_EQ(to_string(VerifyStatus::wrong_issuer), "wrong_issuer");
  EXPECT_EQ(to_string(VerifyStatus::expired), "expired");
  EXPECT_EQ(to_string(VerifyStatus::not_yet_valid), "not_yet_valid");
  EXPECT_EQ(to_string(VerifyStatus::wrong_audience), "wrong_audience");
}

}  // namespace
}  // namespace pes::jwt
