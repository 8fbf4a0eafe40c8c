"""The network shell: listener, CONNECT tunnels, TLS MITM, WebSocket relay (anyio, asyncio backend).

The only package that touches sockets. It never reads config files or the
keyring: it is handed routes, a secret resolver and a certificate issuer.

INTERFACE (owned by the proxy issue; start/exec/doctor rely on it):
    from cordon.proxy.server import ProxySettings, serve
    from cordon.proxy.tls import LeafIssuer            # .server_context(host), cached per host
    from cordon.proxy.auth import ProxyAuth            # ProxyAuth({token: client_name}) / .single(token)
    from cordon.proxy.secretcache import SecretCache, bump_generation, generation_file
    settings = ProxySettings(routes=(...), issuer=LeafIssuer(ca), resolver=resolver,
                             auth=ProxyAuth(...) | None, policy=Policy(), port=0,
                             upstream_ca_file=None, secrets_gen_file=generation_file(paths.cordon_home),
                             timeouts=Timeouts())   # Timeouts from cordon.proxy.forward
    port = await task_group.start(serve, settings)   # bound 127.0.0.1 port; cancel to stop
    settings.stats                                    # ProxyStats: what /status reports

Modules: server (listener, dispatch, /health, /status), mitm (route hosts),
forward (one exchange, streaming), pool (upstream connections), tunnel (SSRF
guard, pinned connect), websocket, tls,
auth, secretcache, stats, conn (buffered reads), fastio (lean TCP streams),
fasttls (TLS over them: SSLObject + memory BIOs).
"""
