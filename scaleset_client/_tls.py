"""The TLS context every pool of the client uses: urllib3's defaults plus partial-chain trust.

GitHub Enterprise Server is often fronted by a certificate issued by an internal intermediate
CA, and the CA bundle an operator hands us may hold only that intermediate. OpenSSL insists on
a self-signed root unless ``VERIFY_X509_PARTIAL_CHAIN`` is set; Go (the reference client)
accepts any certificate in the pool as an anchor. With the flag, a bundle that holds only the
intermediate works; trust still comes only from what the bundle (or the default store) holds.

``check_hostname`` is off on the context because urllib3 then matches the host name itself
(``match_hostname``) and may switch ``verify_mode`` per pool (``verify=False``), which the ssl
module refuses while ``check_hostname`` is on.
"""

from __future__ import annotations

import ssl

from urllib3.util.ssl_ import create_urllib3_context

__all__ = ["partial_chain_context"]


def partial_chain_context() -> ssl.SSLContext:
    """A client context with urllib3's protocol and cipher defaults and partial-chain trust.

    No CA is loaded here: urllib3 loads ``verify`` (a bundle path, or certifi for ``True``)
    into it for each connection, exactly as it would into its own default context.
    """
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.check_hostname = False
    flag = getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    context.verify_flags |= flag
    return context
