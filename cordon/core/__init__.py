"""The pure core: values in, values out, no I/O.

What lives here: the data model (routes, secrets, config values), HTTP/1.1
framing (`http1`), header injection and path scopes (`inject`), the route
table (`routes`), the SSRF address rules (`ssrf`), certificate building
(`certs`), the child's environment contract (`envvars`), shell rendering
(`shellhooks`) and the error types every layer raises (`errors`).

May import: the standard library's pure modules and `cryptography`; nothing else
of cordon. No files, sockets, processes, environment or clock side effects
(`tests/test_layers.py` lists the forbidden modules).
"""
