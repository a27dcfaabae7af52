# SPDX-License-Identifier: MIT
"""A small MaxMind DB writer for the tests: Debian's libmaxminddb can read these files but ships
nothing that writes them, and a real GeoLite2 file is neither free to redistribute nor small.

Writes the format of https://maxmind.github.io/MaxMind-DB/ (version 2.0): a binary search tree of
24-bit records over IPv6 addresses (IPv4 networks live under ::/96, where libmaxminddb looks for
them), 16 zero bytes, the data section (maps, UTF-8 strings, unsigned integers, arrays), and the
metadata map after the marker b"\\xab\\xcd\\xefMaxMind.com".

    write_mmdb(path, [("192.0.2.0/25", {"country": {"iso_code": "FR"}}), ...])

Networks may overlap: a longer prefix inside a shorter one wins for its addresses, whatever the
order given (they are inserted shortest first).
"""

import ipaddress
import struct
import time

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
RECORD_SIZE = 24

# Data types (the spec's numbers); those above 7 are "extended": the control byte holds 0 and the
# next byte the type minus 7.
T_UTF8, T_UINT16, T_UINT32, T_MAP, T_UINT64, T_ARRAY, T_BOOLEAN = 2, 5, 6, 7, 9, 11, 14


def _control(type_, size):
    """The control byte(s) of a field of this type and size (bytes, or items of a map/array)."""
    if size < 29:
        first, extra = size, b""
    elif size < 29 + 256:
        first, extra = 29, bytes([size - 29])
    elif size < 285 + 65536:
        first, extra = 30, struct.pack(">H", size - 285)
    else:
        first, extra = 31, struct.pack(">I", size - 65821)[1:]
    if type_ <= 7:
        return bytes([(type_ << 5) | first]) + extra
    return bytes([first, type_ - 7]) + extra


def _uint(type_, value, width):
    raw = value.to_bytes(width, "big").lstrip(b"\0")
    return _control(type_, len(raw)) + raw


def encode(value):
    """One value of the data section: dict, str, bool, list or a non-negative int (uint32 when it
    fits, else uint64)."""
    if isinstance(value, bool):
        return _control(T_BOOLEAN, int(value))
    if isinstance(value, dict):
        out = _control(T_MAP, len(value))
        for k, v in value.items():
            out += encode(str(k)) + encode(v)
        return out
    if isinstance(value, str):
        raw = value.encode()
        return _control(T_UTF8, len(raw)) + raw
    if isinstance(value, list):
        return _control(T_ARRAY, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, int) and value >= 0:
        return _uint(T_UINT32, value, 4) if value < 2**32 else _uint(T_UINT64, value, 8)
    raise TypeError(f"cannot encode {value!r}")


class _Node:
    __slots__ = ("children",)

    def __init__(self):
        self.children = [None, None]   # None (no data), a _Node, or ("data", offset)


def _bits(network):
    """The network's prefix as bits of an IPv6 address (IPv4 under ::/96)."""
    if network.version == 4:
        value, length = int(network.network_address), network.prefixlen + 96
    else:
        value, length = int(network.network_address), network.prefixlen
    return [(value >> (127 - i)) & 1 for i in range(length)]


def _insert(root, bits, leaf):
    node = root
    for i, b in enumerate(bits):
        if i == len(bits) - 1:
            node.children[b] = leaf    # replaces what a shorter prefix put there
            return
        child = node.children[b]
        if child is None:
            child = node.children[b] = _Node()
        elif not isinstance(child, _Node):   # inside a shorter network: split its leaf
            split = _Node()
            split.children = [child, child]
            child = node.children[b] = split
        node = child


def write_mmdb(path, networks, database_type="idm-test-Country", ip_version=6):
    """Writes networks ([(cidr, record), ...]) to path as a MaxMind DB."""
    data = b""
    offsets = {}
    leaves = []
    for cidr, record in networks:
        net = ipaddress.ip_network(cidr)
        if net.prefixlen == 0:
            raise ValueError("a /0 network is not supported here")
        blob = encode(record)
        if blob not in offsets:
            offsets[blob] = len(data)
            data += blob
        leaves.append((net, ("data", offsets[blob])))

    root = _Node()
    for net, leaf in sorted(leaves, key=lambda x: (x[0].version, x[0].prefixlen)):
        _insert(root, _bits(net), leaf)

    nodes, index = [root], {id(root): 0}
    for node in nodes:                 # breadth first: the list grows while it is walked
        for child in node.children:
            if isinstance(child, _Node):
                index[id(child)] = len(nodes)
                nodes.append(child)
    node_count = len(nodes)

    def record(child):
        if child is None:
            return node_count
        if isinstance(child, _Node):
            return index[id(child)]
        return node_count + 16 + child[1]

    tree = b"".join(record(n.children[0]).to_bytes(3, "big") + record(n.children[1]).to_bytes(3, "big")
                    for n in nodes)
    metadata = {
        "node_count": node_count,
        "record_size": RECORD_SIZE,
        "ip_version": ip_version,
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": 2,
        "binary_format_minor_version": 0,
        "build_epoch": int(time.time()),
        "description": {"en": "written by idm's tests"},
    }
    # The spec types these: uint16 for the versions and record size, uint64 for the epoch.
    meta = _control(T_MAP, len(metadata))
    for k, v in metadata.items():
        meta += encode(k)
        if k in ("record_size", "ip_version", "binary_format_major_version", "binary_format_minor_version"):
            meta += _uint(T_UINT16, v, 2)
        elif k == "build_epoch":
            meta += _uint(T_UINT64, v, 8)
        else:
            meta += encode(v)
    with open(path, "wb") as f:
        f.write(tree + b"\0" * 16 + data + METADATA_MARKER + meta)
