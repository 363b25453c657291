"""A gRPC echo server in Python (grpcio), with no generated code: the service
shoal.example.Echo has Unary (echo the request back) and ServerStream (the request back 3 times).
Messages are treated as opaque protobuf bytes, so no protoc is needed."""

from concurrent import futures

import grpc

ident = lambda b: b  # noqa: E731  (messages stay bytes)


def unary(request, context):
    context.set_trailing_metadata((("x-served-by", "python"),))
    return request


def server_stream(request, context):
    for _ in range(3):
        yield request


def main():
    handler = grpc.method_handlers_generic_handler(
        "shoal.example.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:50051")
    server.start()
    print("echo server on 127.0.0.1:50051", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
