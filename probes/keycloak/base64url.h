// base64url (RFC 4648 §5) without padding, as JWS/JWK (RFC 7515 §2) require.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace pes::jwt {

// Encodes bytes as unpadded base64url.
std::string base64url_encode(std::string_view bytes);

// Decodes unpadded base64url into bytes. Returns nullopt on any character outside the
// base64url alphabet (including '=' padding, whitespace and '+' '/'), on an impossible length
// (len % 4 == 1) and on non-zero unused trailing bits, so every byte string has exactly one
// accepted encoding.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace pes::jwt
