"""`noveltykit serve`'s defaults, apart from the server so that the CLI's --help can show them
without importing FastAPI (the image pixel limit is the loaders' DEFAULT_MAX_PIXELS)."""

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # a request body larger than this is a 413
DEFAULT_MAX_IMAGES = 64  # more files in one request is a 413
DEFAULT_MAX_BATCH = 64  # images in one model call (micro-batching; 1: one request at a time)
DEFAULT_MAX_WAIT_MS = 5.0  # how long the first request of a batch waits for others to join it
DEFAULT_STOP_TIMEOUT = 30.0  # seconds a stopping server gives its requests in flight
