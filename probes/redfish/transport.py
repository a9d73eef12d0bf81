"""HTTP GET of Redfish resources with the standard library: basic auth, TLS options, a deadline.

Blocking on purpose: the probe calls it from its own poller thread, never from the sampler.
The password is read from a file once, kept only in the ``Authorization`` header, and never
appears in an error message. TLS verifies against the system CAs by default, against ``ca``
(a PEM file) if given, or not at all with ``insecure`` (which the probe says in its channel
descriptions). A whole request, including a server that trickles bytes, is bounded by
``timeout_s``; bodies over ``MAX_BODY`` bytes are refused.
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from powerd.probes.redfish.parse import loads

MAX_BODY = 4 * 1024 * 1024
CHUNK = 65536


class RedfishError(Exception):
    """A request failed; the message names the URI and why, never the credentials."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: it could carry the Authorization header to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """GETs JSON from one Redfish service (``base_url`` such as ``https://bmc1``)."""

    def __init__(
        self,
        base_url: str,
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        insecure: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._headers = {"Accept": "application/json", "OData-Version": "4.0"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self.base_url.startswith("https:"):
            if insecure:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context(cafile=ca_file)
            handlers.append(urllib.request.HTTPSHandler(context=ctx))
        self._opener = urllib.request.build_opener(*handlers)

    def url(self, path: str) -> str:
        return path if "://" in path else self.base_url + "/" + path.lstrip("/")

    def get(self, path: str) -> Any:
        """The parsed JSON at ``path``; RedfishError on any failure."""
        url = self.url(path)
        where = urllib.parse.urlsplit(url).path or "/"
        req = urllib.request.Request(url, headers=self._headers, method="GET")
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                body = bytearray()
                while True:
                    if time.monotonic() > deadline:
                        late = f"no complete answer in {self.timeout_s:g} s"
                        raise RedfishError(f"GET {where}: {late}")
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise RedfishError(f"GET {where}: body over {MAX_BODY} bytes")
        except urllib.error.HTTPError as err:
            hint = " (check user and password_file)" if err.code in (401, 403) else ""
            raise RedfishError(f"GET {where}: HTTP {err.code} {err.reason}{hint}") from None
        except urllib.error.URLError as err:
            reason = err.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise RedfishError(
                    f"GET {where}: TLS certificate not trusted ({reason.verify_message}); "
                    "give ca=PEM_FILE, or insecure=1 to skip verification"
                ) from None
            if isinstance(reason, TimeoutError | OSError) and "timed out" in str(reason):
                raise RedfishError(f"GET {where}: no answer in {self.timeout_s:g} s") from None
            raise RedfishError(f"GET {where}: {reason}") from None
        except TimeoutError:
            raise RedfishError(f"GET {where}: no answer in {self.timeout_s:g} s") from None
        except (OSError, ssl.SSLError) as err:
            raise RedfishError(f"GET {where}: {err}") from None
        try:
            return loads(bytes(body))
        except ValueError as err:
            raise RedfishError(f"GET {where}: {err}") from None
