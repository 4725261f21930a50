"""Trust by network address: which address a request really comes from, and whether to believe it.

The peer address a framework reports is not always the socket's: uvicorn (``--proxy-headers``,
on by default, for 127.0.0.1) and werkzeug's ``ProxyFix`` replace it with an address taken from
``X-Forwarded-For``, which the caller writes. The middleware cannot see the socket, so it keeps
to what it can know:

- A request without forwarding headers comes from the reported peer.
- With no proxy named, a request with forwarding headers is not vouched for (``forwarded``):
  the reported peer may have been rewritten from them.
- With proxies named, the chain is the forwarding header's hops followed by the reported peer,
  walked from the right, skipping named proxies; the first other address is the caller. A
  reported peer that equals an address in any forwarding header is taken to be a rewrite (by the
  server, or a hop that repeats) and refused (``forwarding_ambiguous``), as are conflicting
  headers, a hop that is not an IP address before the caller is reached, and a chain of
  nothing but named proxies. Anything left of the caller is the caller's own writing and is not
  read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Final

from ..exceptions import ConfigurationError
from ._verify import Caller, ClaimRefused

__all__ = ["FORWARDING_HEADERS", "TrustedPeers", "caller_address"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Headers through which a proxy, a CDN or a server reports the address of the original caller.
#: Any of them on a request makes the reported peer address suspect.
FORWARDING_HEADERS: Final = (
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-forwarded",
    "forwarded-for",
)


def parse_address(text: str) -> Address | None:
    """The IP address in a peer or hop: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``
    (IPv4-mapped IPv6 as IPv4); None for anything else (``unknown``, ``_hidden``, names)."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _forwarded_hops(value: str) -> list[str]:
    """The ``for=`` of each element of a ``Forwarded`` header (RFC 7239); ``""`` if it has none."""
    hops = []
    for element in value.split(","):
        found = ""
        for pair in element.split(";"):
            name, eq, text = pair.partition("=")
            if eq and name.strip().lower() == "for":
                found = text.strip().strip('"')
        hops.append(found)
    return hops


def _chain(headers: Mapping[str, str]) -> list[str]:
    """The forwarded hops, oldest first, with the conflicting cases refused."""
    chains = []
    if "x-forwarded-for" in headers:
        chains.append([hop.strip() for hop in headers["x-forwarded-for"].split(",")])
    if "forwarded" in headers:
        chains.append(_forwarded_hops(headers["forwarded"]))
    if len(chains) == 2 and [parse_address(h) for h in chains[0]] != [
        parse_address(h) for h in chains[1]
    ]:
        raise ClaimRefused("forwarding_ambiguous")  # which one did our proxy write?
    chain = chains[0] if chains else []
    real_ip = headers.get("x-real-ip")
    if real_ip is not None:
        # a proxy sets X-Real-IP to its own peer, the hop it appends to X-Forwarded-For
        if not chain:
            chain = [real_ip]
        elif parse_address(real_ip) is None or parse_address(real_ip) != parse_address(chain[-1]):
            raise ClaimRefused("forwarding_ambiguous")
    return chain


def _mentioned(headers: Mapping[str, str], present: list[str]) -> set[Address]:
    """Every address that any forwarding header names."""
    found: set[Address] = set()
    for name in present:
        value = headers[name]
        hops = _forwarded_hops(value) if name == "forwarded" else value.split(",")
        found.update(a for a in map(parse_address, hops) if a is not None)
    return found


def _contains(networks: tuple[Network, ...], address: Address) -> bool:
    return any(address in net for net in networks)


def caller_address(caller: Caller, proxies: tuple[Network, ...] = ()) -> Address:
    """The address of whoever sent the request, by the rule in this module's docstring.

    Raises :class:`ClaimRefused` (``untrusted``, ``forwarded`` or ``forwarding_ambiguous``)
    when it cannot be known.
    """
    peer = parse_address(caller.client[0]) if caller.client else None
    if peer is None:
        raise ClaimRefused("untrusted")  # no peer address (a unix socket, a test client)
    headers = caller.headers
    present = [name for name in FORWARDING_HEADERS if name in headers]
    if not present:
        return peer
    if not proxies:
        raise ClaimRefused("forwarded")
    if peer in _mentioned(headers, present):
        raise ClaimRefused("forwarding_ambiguous")  # the server rewrote the peer from a header
    hops = [parse_address(hop) for hop in _chain(headers)]
    for hop in reversed([*hops, peer]):
        if hop is None:
            raise ClaimRefused("forwarding_ambiguous")  # not an address: who sent it?
        if not _contains(proxies, hop):
            return hop
    raise ClaimRefused("forwarding_ambiguous")  # nothing but named proxies


def _networks(items: Iterable[str], what: str) -> tuple[Network, ...]:
    if isinstance(items, str):
        raise ConfigurationError(f"TrustedPeers: {what} takes a list of addresses or networks")
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"TrustedPeers: {what}: {exc}; give IP addresses or networks such as '10.0.0.0/8'"
        ) from None


class TrustedPeers:
    """Trust a plain claim (just the purpose id) from these addresses or networks, for example a
    mesh sidecar that has already checked the caller's mTLS identity.

    - ``peers``: the addresses whose claims count.
    - ``proxies``: the reverse proxies in front of this service that append the caller's
      address to ``X-Forwarded-For`` (or ``Forwarded``). With none named (the default), a request
      carrying any forwarding header is refused (``forwarded``). Named, the caller is the first
      address left of the named proxies. Turn off the server's own rewriting of the peer
      address (uvicorn ``--no-proxy-headers``); a rewritten peer is refused
      (``forwarding_ambiguous``). See docs/web.md, "Who is trusted".
    """

    __slots__ = ("_networks", "_proxies")

    def __init__(self, peers: Iterable[str], *, proxies: Iterable[str] = ()) -> None:
        self._networks = _networks(peers, "peers")
        self._proxies = _networks(proxies, "proxies")

    def __repr__(self) -> str:
        return f"TrustedPeers(<{len(self._networks)} network(s)>, proxies=<{len(self._proxies)}>)"

    def __call__(self, claim: str, caller: Caller) -> str | None:
        address = caller_address(caller, self._proxies)
        return claim if _contains(self._networks, address) else None
