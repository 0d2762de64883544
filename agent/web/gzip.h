// gzip for responses (zlib): /metrics is compressed when the scraper asks, as Prometheus does.
#pragma once

#include <string>

namespace pes {

// True if an Accept-Encoding value admits gzip (a "gzip" or "*" coding without q=0).
bool accepts_gzip(const std::string& accept_encoding);

// `text` as one gzip member. Level 1: a scrape is compressed on every request, and on exposition
// text level 1 already gets most of the ratio of level 6 for a fraction of the CPU.
std::string gzip_compress(const std::string& text);

}  // namespace pes
