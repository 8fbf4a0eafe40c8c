"""The network: listener, CONNECT tunnels, TLS MITM, forwarding, WebSocket relay.

The only package that touches sockets. It never reads config files or the
keyring: `serve(settings)` is handed routes, a secret resolver and a
certificate issuer, so tests can hand it fakes.

    settings = ProxySettings(routes=..., issuer=LeafIssuer(ca), resolver=..., auth=ProxyAuth(...),
                             policy=Policy(), port=0, secrets_gen_file=...)
    port = await task_group.start(serve, settings)   # bound 127.0.0.1 port; cancel to stop

Modules: server (listener, dispatch, /health, /status), mitm (route hosts),
forward (one exchange, streaming), pool (upstream connections), tunnel (SSRF
guard, pinned connect), websocket, tls (leaf contexts), auth (proxy tokens),
secretcache, filewatch (inotify), eventloop (uvloop or asyncio), stats, conn
(buffered reads); transport/ holds the byte streams.

May import: `core`. Never `store`, `app` or `cli`.
"""
