"""Config of store access, used by the trainer (publish) and the agent (sync)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class StoreConfig(BaseModel):
    """Where model packages live and how to reach them."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(default=".store", description="Local path, s3://bucket/prefix, or https:// base URL.")
    endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, moto, ...); AWS_ENDPOINT_URL is used when unset."
    )
    region: str | None = Field(default=None, description="S3 region; AWS_DEFAULT_REGION when unset.")
    access_key_id: str | None = Field(default=None, description="S3 key id; the AWS credential chain when unset.")
    secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    max_attempts: int = Field(default=4, ge=1, le=20, description="Attempts per request before giving up.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Connect timeout per attempt, seconds.")
    read_timeout_s: float = Field(default=30.0, gt=0, description="Read timeout per attempt, seconds.")
    http_query: str | None = Field(
        default=None, description="Query string appended to every https:// store URL (e.g. a token)."
    )
