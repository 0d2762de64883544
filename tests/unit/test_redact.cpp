// What a debug trace shows of a URL: no userinfo, and no one-time credential of a login flow in
// the query (Keycloak's form action carries session_code; an OAuth redirect carries code and
// state), while the parameters that say which step ran stay readable.
#include <gtest/gtest.h>

#include "agent/core/redact.h"

using namespace pes;

TEST(TraceUrl, HidesOneTimeCredentialsInTheQuery) {
  EXPECT_EQ(trace_url("http://kc:8080/realms/pes/login-actions/authenticate?session_code=abc123&"
                      "execution=e1&client_id=app&tab_id=t9"),
            "http://kc:8080/realms/pes/login-actions/authenticate?session_code=<redacted>&"
            "execution=e1&client_id=app&tab_id=t9");
  EXPECT_EQ(trace_url("https://app.example/cb?STATE=s1&Code=c2#frag"),
            "https://app.example/cb?STATE=<redacted>&Code=<redacted>#frag");
  EXPECT_EQ(trace_url("http://x/?access_token=t&codec=h264&password=p&flag"),
            "http://x/?access_token=<redacted>&codec=h264&password=<redacted>&flag");
}

TEST(TraceUrl, DropsUserinfoAndLeavesPlainUrlsAlone) {
  EXPECT_EQ(trace_url("http://user:pw@host:81/path"), "http://host:81/path");
  EXPECT_EQ(trace_url("http://host/status.php"), "http://host/status.php");
  EXPECT_EQ(trace_url("http://host/a?execution=e1"), "http://host/a?execution=e1");
}
