// A real OpenID provider (npm `oidc-provider`, certified) on 127.0.0.1 for the dashboard's sign-in tests
// (crates/gateway/tests/it/oidc.rs). Everything comes from the JSON in OIDC_TEST_CONFIG:
//   {"port": 21001, "clients": [{"client_id", "client_secret", "redirect_uri", "alg": "RS256"|"ES256",
//     "auth": "client_secret_basic"|"client_secret_post"}], "accounts": {"alice": {"email", "name", "groups"}},
//    "userinfo_only": false}
// With `userinfo_only` the claims the scopes ask for are only in the userinfo answer, not in the ID token (the
// provider's default, conformIdTokenClaims); without it they are in both, as most providers do.
// The development login form (devInteractions) takes any login name and password: the name is the account id,
// its claims those of `accounts` (an unknown name gets no groups). Signing keys are made fresh at each start.
// Prints `listening <port>` once it accepts connections.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_TEST_CONFIG ?? '{}');
const port = Number(config.port);
const issuer = `http://127.0.0.1:${port}`;

function key(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg, use: 'sig' };
}

const accounts = config.accounts ?? {};
const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: [c.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.auth ?? 'client_secret_basic',
    id_token_signed_response_alg: c.alg ?? 'RS256',
  })),
  jwks: {
    keys: [
      key('rsa', { modulusLength: 2048 }, 'RS256'),
      key('ec', { namedCurve: 'P-256' }, 'ES256'),
    ],
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  conformIdTokenClaims: Boolean(config.userinfo_only),
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const a = accounts[id] ?? {};
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: a.email ?? (id.includes('@') ? id : undefined),
          email_verified: a.email_verified ?? true,
          name: a.name ?? id,
          groups: a.groups ?? [],
        };
      },
    };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
