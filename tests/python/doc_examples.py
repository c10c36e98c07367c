"""Runs every `$ grpcurl ...` example of docs/admin.md, in order, against a
live router, with Python grpcio and server reflection only (grpcurl itself is
not packaged for Debian; this plays its part for the subset the docs use:
-plaintext, -H, -d, list, describe, unary and server-streaming calls).

An example followed by `Code: X` (grpcurl's error format) must fail with that
code, and with the `Message:` shown if there is one; any other example must
succeed. `list` must print exactly the services shown.

Usage: doc_examples.py HOST:PORT path/to/admin.md"""

import re
import shlex
import sys

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

target, doc = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel(target)
db = ProtoReflectionDescriptorDatabase(channel)
pool = DescriptorPool(db)


def examples(text):
    """Yields (command, output lines) for each `$ grpcurl` line."""
    in_block = False
    current = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            if current:
                yield current
                current = None
            in_block = not in_block
        elif in_block and line.startswith("$ grpcurl"):
            if current:
                yield current
            cmd = line[2:]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            current = (cmd, [])
        elif in_block and current:
            current[1].append(line)
        i += 1
    if current:
        yield current


def status_name(camel):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()


def run(cmd, output):
    args = shlex.split(cmd)[1:]
    metadata, data, rest = [], "{}", []
    while args:
        a = args.pop(0)
        if a == "-plaintext":
            continue
        if a == "-H":
            k, v = args.pop(0).split(":", 1)
            metadata.append((k.strip().lower(), v.strip()))
        elif a == "-d":
            data = args.pop(0)
        else:
            rest.append(a)
    _addr, verb = rest[0], rest[1:]
    if verb == ["list"]:
        services = sorted(db.get_services())
        shown = [l.strip() for l in output if l.strip()]
        assert services == shown, (services, shown)
        return "listed " + ", ".join(services)
    if verb[0] == "describe":
        svc = pool.FindServiceByName(verb[1])
        return "described %s: %s" % (svc.full_name, ", ".join(m.name for m in svc.methods))
    service_name, method_name = verb[0].rsplit("/", 1)
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    req_cls = message_factory.GetMessageClass(method.input_type)
    resp_cls = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(data, req_cls())
    path = "/%s/%s" % (service_name, method_name)
    want = next((l.split(":", 1)[1].strip() for l in output if l.strip().startswith("Code:")), None)
    want_msg = next(
        (l.split(":", 1)[1].strip() for l in output if l.strip().startswith("Message:")), None
    )
    try:
        if method.server_streaming:
            rpc = channel.unary_stream(
                path,
                request_serializer=req_cls.SerializeToString,
                response_deserializer=resp_cls.FromString,
            )
            stream = rpc(request, metadata=metadata, timeout=10)
            first = next(stream)
            stream.cancel()
            got = json_format.MessageToJson(first, indent=None)
        else:
            rpc = channel.unary_unary(
                path,
                request_serializer=req_cls.SerializeToString,
                response_deserializer=resp_cls.FromString,
            )
            got = json_format.MessageToJson(rpc(request, metadata=metadata, timeout=10), indent=None)
    except grpc.RpcError as e:
        if want is None:
            raise SystemExit("FAILED: %s\n  -> %s %s" % (cmd, e.code(), e.details()))
        assert e.code().name == status_name(want), (cmd, e.code(), want)
        if want_msg is not None:
            assert e.details() == want_msg, (cmd, e.details(), want_msg)
        return "%s (as documented)" % e.code().name
    if want is not None:
        raise SystemExit("FAILED: %s\n  -> succeeded, documented as %s" % (cmd, want))
    return got


count = 0
for cmd, output in examples(open(doc, encoding="utf-8").read()):
    result = run(cmd, output)
    count += 1
    print("ok  %s\n    %s" % (cmd, result[:300]))
print("doc examples ok: %d" % count)
