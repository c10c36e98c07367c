"""A gRPC client Switchboard did not write: Python grpcio, discovering the
admin service through server reflection only (no .proto file), then creating
a room and listing it. Usage: admin_reflection.py HOST:PORT [CA_PEM [TOKEN]]:
with CA_PEM the channel is TLS, the router's certificate verified against
that file; with TOKEN every call carries `authorization: Bearer TOKEN`."""

import sys

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

if len(sys.argv) > 2:
    with open(sys.argv[2], "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    if len(sys.argv) > 3:
        bearer = grpc.access_token_call_credentials(sys.argv[3])
        creds = grpc.composite_channel_credentials(creds, bearer)
    channel = grpc.secure_channel(sys.argv[1], creds)
else:
    channel = grpc.insecure_channel(sys.argv[1])
db = ProtoReflectionDescriptorDatabase(channel)
services = list(db.get_services())
assert "switchboard.v1.Admin" in services, services
assert "grpc.health.v1.Health" in services, services
pool = DescriptorPool(db)
admin = pool.FindServiceByName("switchboard.v1.Admin")


def call(method, **fields):
    m = admin.FindMethodByName(method)
    req = message_factory.GetMessageClass(m.input_type)
    resp = message_factory.GetMessageClass(m.output_type)
    rpc = channel.unary_unary(
        f"/{admin.full_name}/{m.name}",
        request_serializer=req.SerializeToString,
        response_deserializer=resp.FromString,
    )
    return rpc(req(**fields), timeout=5)


room = call("CreateRoom", name="from-python", kind="ptt", options={"queue": "false"})
assert room.name == "from-python" and room.kind == "ptt", room
names = [r.name for r in call("ListRooms").rooms]
assert "from-python" in names, names
try:
    call("GetRoom", name="nowhere")
    raise SystemExit("GetRoom of an unknown room succeeded")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
print("reflection ok:", sorted(services), names)
