#include "probes/registry.h"

#include "probes/http/http_probe.h"
#include "probes/jitsi/jitsi_probe.h"
#include "probes/keycloak/keycloak_probe.h"
#include "probes/ldap/ldap_probe.h"
#include "probes/postgres/postgres_probe.h"
#include "probes/presets/preset.h"
#include "probes/tcp/tcp_probe.h"

namespace pes {

std::span<const ProbeType> probe_types() {
  static const ProbeType kTypes[] = {
      {"http", &HttpProbe::parse},           {"tcp", &TcpProbe::parse},
      {"keycloak", &KeycloakProbe::parse},   {"postgres", &PostgresProbe::parse},
      {"ldap", &LdapProbe::parse},           {"jitsi", &JitsiProbe::parse},
      {"nextcloud", &parse_nextcloud_probe}, {"collabora", &parse_collabora_probe},
      {"gitea", &parse_gitea_probe},         {"nexus", &parse_nexus_probe},
      {"moodle", &parse_moodle_probe},
  };
  return kTypes;
}

}  // namespace pes
