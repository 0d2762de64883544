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
  // name, section parser, label names of the type's samples
  static const ProbeType kTypes[] = {
      {"http", &HttpProbe::parse, HttpProbe::kSampleLabels},
      {"tcp", &TcpProbe::parse},
      {"keycloak", &KeycloakProbe::parse, KeycloakProbe::kSampleLabels},
      {"postgres", &PostgresProbe::parse, PostgresProbe::kSampleLabels},
      {"ldap", &LdapProbe::parse},
      {"jitsi", &JitsiProbe::parse, JitsiProbe::kSampleLabels},
      {"nextcloud", &parse_nextcloud_probe, PresetProbe::kSampleLabels},
      {"collabora", &parse_collabora_probe, PresetProbe::kSampleLabels},
      {"gitea", &parse_gitea_probe, PresetProbe::kSampleLabels},
      {"nexus", &parse_nexus_probe, PresetProbe::kSampleLabels},
      {"moodle", &parse_moodle_probe, PresetProbe::kSampleLabels},
  };
  return kTypes;
}

}  // namespace pes
