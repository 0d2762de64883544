// pes-agent entry point: process-wide library initialisation, then the command line.
#include <civetweb.h>
#include <curl/curl.h>
#include <ldap.h>

#include "agent/app/cli.h"

int main(int argc, char** argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  mg_init_library(MG_FEATURES_TLS);
  int rc = pes::run_cli(argc, argv);
  mg_exit_library();
  curl_global_cleanup();
  return rc;
}
