"""The live fleet web app: FastAPI over the fleet registry, history and rollouts, with a batched live channel."""
