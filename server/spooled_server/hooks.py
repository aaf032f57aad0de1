"""Parts of the server that join the app's lifespan (started after the core, stopped before it).

Each entry is `"module:function"`; the function takes `(app, core)` and returns an async context manager.
"""

LIFESPAN_HOOKS: list[str] = [
]
