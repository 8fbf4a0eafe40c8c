// Node 20's fetch ignores proxy variables; undici's EnvHttpProxyAgent makes it honour them.
// Usage: node fetch_via_proxy.mjs URL   (prints {"status": N, "body": "..."} on stdout)
import { setGlobalDispatcher, EnvHttpProxyAgent } from 'undici';

setGlobalDispatcher(new EnvHttpProxyAgent());
const headers = {};
if (process.env.TEST_AUTHORIZATION) headers.authorization = process.env.TEST_AUTHORIZATION;
try {
  const r = await fetch(process.argv[2], { headers });
  console.log(JSON.stringify({ status: r.status, body: await r.text() }));
} catch (e) {
  console.error(String(e && e.cause ? e.cause : e));
  process.exit(1);
}
