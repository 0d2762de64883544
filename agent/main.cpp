// pes-agent entry point: process-wide library initialisation, then the command line.
#include <curl/curl.h>
#include <ldap.h>
#include <malloc.h>

#include "agent/app/cli.h"

int main(int argc, char** argv) {
  // Scrapes run on the listener's handler threads; without a cap each one keeps its own malloc
  // arena full of a scrape's temporaries (bench/README.md: 80 MB -> 1 GB after 13 scrapes of 10k
  // probes).
  mallopt(M_ARENA_MAX, 2);
  // The text of a scrape (27 MB at 10,000 probes) goes straight back to the kernel when it is
  // freed: a fixed threshold stops glibc from raising it after the first such buffer and then
  // keeping the next ones in the heap.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = pes::run_cli(argc, argv);
  curl_global_cleanup();
  return rc;
}
