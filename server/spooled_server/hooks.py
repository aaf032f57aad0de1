"""Parts of the server that join the app's lifespan (started after the core, stopped before it).

Each entry is `"module:function"`; the function takes `(app, core)` and returns an async context manager.
"""

LIFESPAN_HOOKS: list[str] = [
    "spooled_server.events.lifespan:lifespan",
    "spooled_server.maintenance.webhook_dispatch:lifespan",
    "spooled_server.maintenance.scheduling:lifespan",
    # Last in, first out: gRPC streams stop (and release their jobs) while the rest still runs.
    "spooled_server.grpc.server:grpc_lifespan",
]
