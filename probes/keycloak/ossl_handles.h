// The OpenSSL handles of the JWT/JWKS code, owned with the agent's one owner template
// (agent/core/handles.h), so no path that returns early can leak one.
#pragma once

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include "agent/core/handles.h"

namespace pes::jwt {

// The deleter by its older name (the tests own handles with it).
template <auto Free>
using OsslDeleter = CFree<Free>;

using PkeyPtr = Owned<EVP_PKEY, EVP_PKEY_free>;
using PkeyCtxPtr = Owned<EVP_PKEY_CTX, EVP_PKEY_CTX_free>;
using MdCtxPtr = Owned<EVP_MD_CTX, EVP_MD_CTX_free>;
using BignumPtr = Owned<BIGNUM, BN_free>;
using ParamBldPtr = Owned<OSSL_PARAM_BLD, OSSL_PARAM_BLD_free>;
using ParamPtr = Owned<OSSL_PARAM, OSSL_PARAM_free>;
using EcdsaSigPtr = Owned<ECDSA_SIG, ECDSA_SIG_free>;

}  // namespace pes::jwt
