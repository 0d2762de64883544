// A Keycloak-shaped OpenID Connect issuer for the pes-agent tests, built on oidc-provider.
// Started by tests/fixtures/oidc.sh; configured through the environment:
//   OIDC_PORT, OIDC_MANAGEMENT_PORT (optional), OIDC_REALM, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET,
//   OIDC_CLIENT2_ID, OIDC_CLIENT2_SECRET, OIDC_USER, OIDC_USER_PASSWORD, OIDC_AUDIENCE,
//   OIDC_KEYS (rsa | ec | both), OIDC_TTL (access token lifetime, seconds)
// What looks like Keycloak: the issuer http://127.0.0.1:PORT/realms/REALM and its
// /protocol/openid-connect/{token,certs,auth,userinfo,...} endpoints, /realms/REALM (realm
// info), /health/ready and /health/live, the password grant, 401 for bad user credentials, and
// access tokens that are JWTs with azp, typ "Bearer", preferred_username and realm_access.
// Signing keys are generated at every start, so a restart rotates them.
import { generateKeyPairSync, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) throw new Error(`${name} must be set`);
    return fallback;
  }
  return v;
};

const port = Number(env('OIDC_PORT'));
const managementPort = Number(env('OIDC_MANAGEMENT_PORT', '0'));
const realm = env('OIDC_REALM', 'pes');
const clientId = env('OIDC_CLIENT_ID', 'pes-agent');
const clientSecret = env('OIDC_CLIENT_SECRET');
const client2Id = env('OIDC_CLIENT2_ID', 'pes-other');
const client2Secret = env('OIDC_CLIENT2_SECRET');
const username = env('OIDC_USER', 'alice');
const userPassword = env('OIDC_USER_PASSWORD');
const audience = env('OIDC_AUDIENCE', 'pes-api');
const keyKind = env('OIDC_KEYS', 'rsa');
const ttl = Number(env('OIDC_TTL', '300'));
const realmPath = `/realms/${realm}`;
const issuer = `http://127.0.0.1:${port}${realmPath}`;
// Resource indicators must be absolute URIs; tokens asked for without one are for this one,
// whose audience is OIDC_AUDIENCE.
const defaultResource = `urn:pes:${audience}`;

if (!['rsa', 'ec', 'both'].includes(keyKind)) throw new Error('OIDC_KEYS must be rsa, ec or both');

function signingKey(type) {
  const { privateKey } = type === 'rsa'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk, kid: randomUUID(), use: 'sig', alg: type === 'rsa' ? 'RS256' : 'ES256',
  };
}
const keys = keyKind === 'both' ? [signingKey('rsa'), signingKey('ec')] : [signingKey(keyKind)];
const signingAlg = keys[0].alg;

function sameSecret(a, b) {
  const x = Buffer.from(String(a ?? ''));
  const y = Buffer.from(String(b ?? ''));
  return x.length === y.length && timingSafeEqual(x, y);
}

function resourceServerInfo(resource) {
  return {
    audience: resource === defaultResource ? audience : resource,
    scope: 'openid profile email roles',
    accessTokenFormat: 'jwt',
    accessTokenTTL: ttl,
    jwt: { sign: { alg: signingAlg } },
  };
}

const confidential = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials', 'password'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'openid profile email roles',
});

const provider = new Provider(issuer, {
  clients: [confidential(clientId, clientSecret), confidential(client2Id, client2Secret)],
  jwks: { keys },
  cookies: { keys: [randomUUID()] },
  clientDefaults: { id_token_signed_response_alg: signingAlg },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'roles'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? defaultResource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resource) => resourceServerInfo(resource),
    },
  },
  ttl: { AccessToken: ttl, ClientCredentials: ttl, Grant: 3600 },
  formats: {
    customizers: {
      // Keycloak's access token shape.
      async jwt(_ctx, token, jwt) {
        const isUser = !!token.accountId;
        jwt.header = { typ: 'JWT' };
        Object.assign(jwt.payload, {
          typ: 'Bearer',
          azp: token.clientId,
          preferred_username: isUser ? token.accountId : `service-account-${token.clientId}`,
          realm_access: { roles: ['default-roles-' + realm, 'offline_access'] },
        });
      },
    },
  },
  findAccount: async (_ctx, sub) => (sub === username
    ? { accountId: sub, claims: async () => ({ sub, preferred_username: sub }) }
    : undefined),
  routes: {
    authorization: '/protocol/openid-connect/auth',
    token: '/protocol/openid-connect/token',
    jwks: '/protocol/openid-connect/certs',
    userinfo: '/protocol/openid-connect/userinfo',
    introspection: '/protocol/openid-connect/token/introspect',
    revocation: '/protocol/openid-connect/revoke',
    end_session: '/protocol/openid-connect/logout',
  },
});
provider.proxy = false;

// The Resource Owner Password Credentials grant, which oidc-provider does not ship (Keycloak
// does). The client is already authenticated when this runs.
provider.registerGrantType('password', async (ctx) => {
  const { client, params } = ctx.oidc;
  if (params.username !== username || !sameSecret(params.password, userPassword)) {
    const err = new errors.InvalidGrant('Invalid user credentials');
    err.error_description = 'Invalid user credentials';
    err.status = 401; // what Keycloak answers
    err.statusCode = 401;
    throw err;
  }
  const allowed = new Set(client.scope.split(' '));
  const scope = (params.scope || 'openid profile email').split(' ')
    .filter((s) => allowed.has(s)).join(' ');
  const resource = params.resource || defaultResource;
  if (Array.isArray(resource)) throw new errors.InvalidTarget('only one resource is supported');

  const grant = new provider.Grant({ clientId: client.clientId, accountId: username });
  grant.addOIDCScope(scope);
  grant.addResourceScope(resource, scope);
  const grantId = await grant.save();

  const token = new provider.AccessToken({
    accountId: username, client, grantId, gty: 'password', scope,
  });
  token.resourceServer = new provider.ResourceServer(resource, resourceServerInfo(resource));
  const value = await token.save();
  ctx.body = {
    access_token: value,
    expires_in: token.expiration,
    refresh_expires_in: 0,
    token_type: 'Bearer',
    'not-before-policy': 0,
    scope,
  };
}, ['username', 'password', 'scope', 'resource']);

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function health(req, res) {
  if (req.url === '/health/ready' || req.url === '/health/live' || req.url === '/health') {
    sendJson(res, 200, { status: 'UP', checks: [] });
    return true;
  }
  return false;
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const started = Date.now();
  const { url } = req;
  res.on('finish', () => {
    console.log(`${new Date().toISOString()} ${req.method} ${url} ${res.statusCode} ${Date.now() - started}ms`);
  });
  if (health(req, res)) return;
  if (req.method === 'GET' && (req.url === realmPath || req.url === `${realmPath}/`)) {
    sendJson(res, 200, {
      realm,
      'token-service': `${issuer}/protocol/openid-connect`,
      'account-service': `${issuer}/account`,
      'tokens-not-before': 0,
    });
    return;
  }
  // oidc-provider serves the issuer's path as if mounted there: strip it, and leave the full URL
  // in originalUrl, from which it derives the mount path for the URLs it publishes.
  if (req.url === realmPath || req.url.startsWith(`${realmPath}/`) || req.url.startsWith(`${realmPath}?`)) {
    req.originalUrl = req.url;
    req.url = req.url.slice(realmPath.length) || '/';
    callback(req, res);
    return;
  }
  sendJson(res, 404, { error: 'Realm does not exist' });
});

const servers = [server];
server.listen(port, '127.0.0.1', () => {
  console.log(`oidc: issuer ${issuer} (keys: ${keys.map((k) => `${k.alg}/${k.kid}`).join(', ')})`);
});
if (managementPort) {
  const management = http.createServer((req, res) => {
    if (!health(req, res)) sendJson(res, 404, { error: 'not found' });
  });
  management.listen(managementPort, '127.0.0.1');
  servers.push(management);
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const s of servers) s.close();
    for (const s of servers) s.closeAllConnections?.();
    process.exit(0);
  });
}
