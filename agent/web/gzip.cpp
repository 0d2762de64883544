#include "agent/web/gzip.h"

#include <zlib.h>

#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "agent/core/types.h"

namespace pes {

namespace {

std::string trim_lower(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  return ascii_lower(s.substr(b, s.find_last_not_of(" \t") - b + 1));
}

// The q value of one Accept-Encoding element ("gzip;q=0.5"), 1 when absent.
double quality(const std::string& params) {
  auto q = params.find("q=");
  return q == std::string::npos ? 1.0 : std::strtod(params.c_str() + q + 2, nullptr);
}

// Owns a deflate stream so that every path out of gzip_compress ends it.
struct Deflater {
  z_stream z{};
  Deflater() {
    // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
    if (deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      throw std::runtime_error("zlib: deflateInit2 failed");
  }
  ~Deflater() { deflateEnd(&z); }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
};

}  // namespace

bool accepts_gzip(const std::string& accept_encoding) {
  // An explicit gzip element wins over "*" ("gzip;q=0, *" refuses gzip).
  double gzip_q = -1, star_q = -1;
  size_t pos = 0;
  while (pos <= accept_encoding.size()) {
    size_t comma = accept_encoding.find(',', pos);
    if (comma == std::string::npos) comma = accept_encoding.size();
    std::string element = trim_lower(accept_encoding.substr(pos, comma - pos));
    size_t semi = element.find(';');
    std::string coding = trim_lower(element.substr(0, semi));
    std::string params = semi == std::string::npos ? "" : element.substr(semi + 1);
    if (coding == "gzip" || coding == "x-gzip") gzip_q = quality(params);
    if (coding == "*") star_q = quality(params);
    pos = comma + 1;
  }
  return gzip_q >= 0 ? gzip_q > 0 : star_q > 0;
}

std::string gzip_compress(const std::string& text) {
  Deflater d;
  d.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  d.z.avail_in = static_cast<uInt>(text.size());
  // Out in chunks: a buffer of deflateBound's size (the input's, 27 MB at 10,000 probes) would stay
  // allocated with the response while only a fourteenth of it is used.
  constexpr size_t kChunk = 256 * 1024;
  std::string out;
  int rc = Z_OK;
  while (rc == Z_OK) {
    size_t used = out.size();
    out.resize(used + kChunk);
    d.z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    d.z.avail_out = static_cast<uInt>(kChunk);
    rc = deflate(&d.z, Z_FINISH);
    out.resize(used + kChunk - d.z.avail_out);
  }
  if (rc != Z_STREAM_END) throw std::runtime_error("zlib: deflate failed");
  out.shrink_to_fit();
  return out;
}

}  // namespace pes
