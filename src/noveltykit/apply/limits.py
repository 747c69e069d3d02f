"""`noveltykit serve`'s default request limits, apart from the server so that the CLI's --help can
show them without importing FastAPI (the image pixel limit is the loaders' DEFAULT_MAX_PIXELS)."""

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024  # a request body larger than this is a 413
DEFAULT_MAX_IMAGES = 64  # more files in one request is a 413
