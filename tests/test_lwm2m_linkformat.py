"""Link format with LwM2M meaning (core/lwm2m/linkformat.py): registrations and Discover."""

from __future__ import annotations

import contextlib
import time

import pytest

from custom_components.iot_bridge.core.lwm2m import (
    MAX_PAYLOAD_BYTES,
    FormatError,
    LimitError,
    LwM2MPath,
    RegisteredObjects,
    SupportedObject,
    parse_discover,
    parse_registration,
)


def test_registration_with_root_link_versions_and_instances() -> None:
    """The register payload of a 1.1 client: root link, object versions, instances."""
    registered = parse_registration(
        b'</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3/0>,</31024/10>,</31024/11>'
    )
    assert registered.root == "/"
    assert registered.content_formats == (110,)
    assert dict(registered.objects) == {
        1: SupportedObject(1, "1.1", (0,)),
        3: SupportedObject(3, None, (0,)),
        31024: SupportedObject(31024, None, (10, 11)),
    }
    assert registered.instance_paths() == [
        LwM2MPath(1, 0),
        LwM2MPath(3, 0),
        LwM2MPath(31024, 10),
        LwM2MPath(31024, 11),
    ]


def test_registration_with_alternate_root_path() -> None:
    """Objects below an alternate root are read relative to it."""
    registered = parse_registration(
        b'</lwm2m>;rt="oma.lwm2m";ct="110 112",</lwm2m/1/0>,</lwm2m/3/0>,</lwm2m/5>'
    )
    assert registered.root == "/lwm2m"
    assert registered.content_formats == (110, 112)
    assert dict(registered.objects) == {
        1: SupportedObject(1, None, (0,)),
        3: SupportedObject(3, None, (0,)),
        5: SupportedObject(5, None, ()),
    }


def test_registration_of_a_1_0_client_without_root_link() -> None:
    """LwM2M 1.0 clients send only object links; ver may sit on an object with instances."""
    registered = parse_registration(b"</1/0>,</3/0>,</3/0>,</3>;ver=1.0,</3303/1>,</3303/0>")
    assert registered == RegisteredObjects(
        "/",
        (),
        registered.objects,
    )
    assert dict(registered.objects) == {
        1: SupportedObject(1, None, (0,)),
        3: SupportedObject(3, "1.0", (0,)),
        3303: SupportedObject(3303, None, (0, 1)),
    }
    assert parse_registration(b"").objects == {}


def test_discover_answer_with_attributes() -> None:
    """Discover links carry paths and typed notification attributes."""
    links = parse_discover(
        b"</3/0>;pmin=10;pmax=60,</3/0/1>,</3/0/7>;dim=2;gt=50.5;lt=-1;st=.5,"
        b'</3/0/9>;epmin=1;epmax=5;title="Battery";obs'
    )
    assert [str(link.path) for link in links] == ["/3/0", "/3/0/1", "/3/0/7", "/3/0/9"]
    assert dict(links[0].attributes) == {"pmin": 10, "pmax": 60}
    assert dict(links[1].attributes) == {}
    assert dict(links[2].attributes) == {"dim": 2, "gt": 50.5, "lt": -1.0, "st": 0.5}
    assert dict(links[3].attributes) == {"epmin": 1, "epmax": 5, "title": "Battery", "obs": None}
    assert [str(link.path) for link in parse_discover(b"</lwm2m/3/0/1>", root="/lwm2m")] == [
        "/3/0/1"
    ]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff", "registration is not UTF-8 \\(byte 0\\)"),
        (b"</1/0", "'<' at character 0 is never closed"),
        (b"<" + b" " * 5000, "is never closed"),
        (b" " * 5000 + b"x", "run of whitespace at character 0"),
        (b"garbage", "registration is not valid link format"),
        (b"</1/0>,,</3/0>", "not valid link format"),
        (b"</a>", "registration link '/a': path '/a'"),
        (b"<1/0>", "must start with '/'"),
        (b"</>", "link '/' names no object"),
        (b"</3/0/1>", "registration link /3/0/1 names a resource"),
        (b"</3/65535>", "instance id 65535 is outside"),
        (b"</1>;ver=one", "link /1: ver='one' is not a version like 1.1"),
        (b"</1>;ver", "link /1: ver has no value"),
        (b'</>;rt="oma.lwm2m",</x>;rt="oma.lwm2m"', "registration names 2 roots"),
        (b'</lwm2m>;rt="oma.lwm2m",</3/0>', "link '/3/0' lies outside the root '/lwm2m'"),
        (b'</lwm2m/>;rt="oma.lwm2m"', "alternate root '/lwm2m/' is not an absolute path"),
        (b'<lwm2m>;rt="oma.lwm2m"', "alternate root 'lwm2m' is not an absolute path"),
        (b'</3>;rt="oma.lwm2m"', "alternate root '/3' would hide an LwM2M path"),
        (b'</>;rt="oma.lwm2m";ct=json', "ct='json' is not a list of content formats"),
        (b'</>;rt="oma.lwm2m";ct=70000', "is not a list of content formats"),
        (b'</>;rt="oma.lwm2m";ct=""', "is not a list of content formats"),
    ],
)
def test_bad_registrations_fail_clearly(payload: bytes, message: str) -> None:
    """Each malformed registration raises a FormatError (a CodecError) saying what is wrong."""
    with pytest.raises(FormatError, match=message):
        parse_registration(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"</3/0>;pmin=soon", "link '/3/0': pmin='soon' is not a number"),
        (b"</3/0>;gt=1e5", "gt='1e5' is not a number"),
        (b"</3/0/x>", "discover answer link '/3/0/x'"),
        (b"</3/0>", "lies outside the root"),
    ],
)
def test_bad_discover_answers_fail_clearly(payload: bytes, message: str) -> None:
    """Malformed Discover answers raise FormatError."""
    root = "/lwm2m" if message == "lies outside the root" else "/"
    with pytest.raises(FormatError, match=message):
        parse_discover(payload, root=root)


def test_size_and_count_limits() -> None:
    """An oversized payload, or one with too many links, is refused before parsing."""
    with pytest.raises(LimitError, match="limit is 65536"):
        parse_registration(b"</1/0>," * (MAX_PAYLOAD_BYTES // 7 + 1))
    with pytest.raises(LimitError, match="registration has more than 4096 entries"):
        parse_registration(b"<>" * 4097)


@pytest.mark.parametrize(
    "payload",
    [
        # Shapes that make aiocoap's backtracking parser slow without the pre-checks.
        "<" + " " * 60000 + ">",
        "<" + " " * 16 + "x" + " " * 16 + ">" * 3000,
        "</1>;" + "a;" * 30000,
        "<>" * 4000,
        "</1>;a=" + '"' + "\\x" * 30000,
        ",".join(["</3/0>"] * 4000),
    ],
)
def test_hostile_shapes_stay_fast(payload: str) -> None:
    """No 64 KiB input makes the link parser take long (a bare parse took minutes)."""
    started = time.perf_counter()
    with contextlib.suppress(FormatError):
        parse_registration(payload.encode())
    assert time.perf_counter() - started < 1.0
