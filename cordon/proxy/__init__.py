"""The network shell: anyio listener, CONNECT tunnels, TLS MITM, WebSocket relay.

The only package that touches sockets. It never reads config files or the
keyring: it is handed routes, a secret resolver and a certificate issuer.

INTERFACE (owned by the proxy issue; start/exec/doctor rely on it):
    from cordon.proxy.server import ProxySettings, serve
    settings = ProxySettings(routes=..., policy=..., port=0, issuer=..., resolver=...,
                             auth=...)   # see server.py
    port = await task_group.start(serve, settings)   # bound 127.0.0.1 port
"""
