"""A gRPC client in Python (grpcio) calling shoal.example.Echo through Shoal (127.0.0.1:8080),
with no generated code: the request is a protobuf message with one string field, encoded by hand.
Exits non-zero if a call does not come back as expected."""

import sys

import grpc

ident = lambda b: b  # noqa: E731


def message(text: str) -> bytes:
    data = text.encode()
    return bytes([0x0A, len(data)]) + data  # field 1, length-delimited


def main(target="127.0.0.1:8080"):
    with grpc.insecure_channel(target) as channel:
        unary = channel.unary_unary("/shoal.example.Echo/Unary", ident, ident)
        reply, call = unary.with_call(message("hello through shoal"), timeout=5)
        assert reply == message("hello through shoal"), reply
        trailers = dict(call.trailing_metadata())
        print("unary:", reply[2:].decode(), "| trailers:", trailers)
        assert trailers.get("x-served-by") == "python", trailers

        stream = channel.unary_stream("/shoal.example.Echo/ServerStream", ident, ident)
        replies = list(stream(message("tick"), timeout=5))
        print("server stream:", len(replies), "replies")
        assert len(replies) == 3

        missing = channel.unary_unary("/shoal.example.Missing/Call", ident, ident)
        try:
            missing(message("x"), timeout=5)
            raise SystemExit("expected UNIMPLEMENTED")
        except grpc.RpcError as e:
            print("unknown service:", e.code(), "-", e.details())
            assert e.code() == grpc.StatusCode.UNIMPLEMENTED
    print("ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
