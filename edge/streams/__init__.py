"""One agent, many streams: per-stream capture into small rings, and one batching scheduler per served model."""
