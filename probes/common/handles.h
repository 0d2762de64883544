// Owners of the probe libraries' handles (libpq, libldap), on the same template as the agent's
// own owners in agent/core/handles.h, which this header also brings in.
#pragma once

#include <ldap.h>
#include <libpq-fe.h>

#include "agent/core/handles.h"

namespace pes {

namespace detail {
inline void unbind_ldap(LDAP* ld) { ldap_unbind_ext_s(ld, nullptr, nullptr); }
inline void free_ldap_message(LDAPMessage* m) { ldap_msgfree(m); }
}  // namespace detail

using PgConnPtr = Owned<PGconn, PQfinish>;
using PgResultPtr = Owned<PGresult, PQclear>;
using LdapPtr = Owned<LDAP, detail::unbind_ldap>;  // unbinding also closes its socket
using LdapMessagePtr = Owned<LDAPMessage, detail::free_ldap_message>;
using LdapMemPtr = Owned<char, ldap_memfree>;
using BervalPtr = Owned<berval, ber_bvfree>;

}  // namespace pes
