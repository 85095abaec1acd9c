"""The `edgeferry` command: one entry point, subcommands per side, one-line errors."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from shared.errors import EdgeferryError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Edge-to-cloud ML deployment pipeline.",
)

_EXTRA_OF = {"torch": "cloud", "pytorch_lightning": "cloud", "lightning": "cloud", "onnxruntime": "edge",
             "paho": "edge", "cv2": "edge", "boto3": "edge", "onnx": "cloud", "onnxconverter_common": "cloud"}


def _require(module: str, command: str) -> Any:
    """Import a side's module, or say in one line which extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        extra = _EXTRA_OF.get(root)
        if extra is None:
            raise
        _fail(f"'edgeferry {command}' needs the {extra} extra ({root} is missing): pip install 'edgeferry[{extra}]'")


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _set_pairs(pairs: list[str] | None) -> dict[str, Any]:
    """--set a.b=value pairs as dotted overrides (values parsed as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            _fail(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = yaml.safe_load(raw) if raw else ""
    return out


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def train(
    config: Annotated[Path | None, typer.Option(help="YAML training config.")] = None,
    data: Annotated[Path | None, typer.Option(help="ImageFolder data set (one sub-folder per class).")] = None,
    model: Annotated[str | None, typer.Option(help="Architecture: digits_cnn, resnet18, mobilenetv2.")] = None,
    devices: Annotated[str | None, typer.Option(help="Devices per node (int or auto).")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes for multi-node DDP.")] = None,
    strategy: Annotated[str | None, typer.Option(help="Lightning strategy, e.g. ddp.")] = None,
    accelerator: Annotated[str | None, typer.Option(help="cpu, gpu or auto.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    max_samples: Annotated[int | None, typer.Option(help="Use at most this many samples.")] = None,
    seed: Annotated[int | None, typer.Option(help="Global seed.")] = None,
    store: Annotated[str | None, typer.Option(help="Store URI: path or s3://bucket/prefix.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name in the store.")] = None,
    signing_key: Annotated[Path | None, typer.Option(help="ed25519 private key PEM.")] = None,
    publish: Annotated[bool | None, typer.Option("--publish/--no-publish", help="Publish after export.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any config value: --set trainer.lr=0.001")] = None,
) -> None:
    """Train, export FP32/FP16/INT8 ONNX, verify every variant, sign and publish."""
    _logging()
    loader = _require("shared.config_loader", "train")
    cfg_mod = _require("cloud.config", "train")
    pipeline = _require("cloud.pipeline", "train")
    flags: dict[str, Any] = {
        "model.arch": model,
        "trainer.devices": int(devices) if devices and devices.isdigit() else devices,
        "trainer.num_nodes": num_nodes,
        "trainer.strategy": strategy,
        "trainer.accelerator": accelerator,
        "trainer.max_epochs": epochs,
        "trainer.seed": seed,
        "data.max_samples": max_samples,
        "publish.store.uri": store,
        "publish.name": name,
        "publish.signing_key": str(signing_key) if signing_key else None,
        "publish.enabled": publish,
    }
    if data is not None:
        flags.update({"data.source": "folder", "data.dir": str(data)})
    flags.update(_set_pairs(set_))
    cfg = loader.load_config(cfg_mod.TrainConfig, config, flags)
    pipeline.run(cfg)


@app.command()
def keygen(
    path: Annotated[Path, typer.Argument(help="Private key path; the public key is written beside it as .pub.")],
    force: Annotated[bool, typer.Option(help="Overwrite existing keys.")] = False,
) -> None:
    """Write an ed25519 signing key pair (private key mode 0600)."""
    from shared.signing import generate_keypair

    pair = generate_keypair(path, overwrite=force)
    typer.echo(f"private key: {pair.private} (mode 0600)\npublic key:  {pair.public} (give this to devices)")


@app.command()
def verify(
    store: Annotated[str, typer.Option(help="Store URI.")] = ".store",
    name: Annotated[str, typer.Option(help="Model name.")] = "digits",
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    key: Annotated[list[Path] | None, typer.Option(help="Trusted public key PEM (repeatable).")] = None,
) -> None:
    """Download a published package and check its signature and every file's sha256."""
    from shared.signing import load_public_key
    from shared.store_config import StoreConfig
    from shared.store_open import open_store

    publish_mod = _require("cloud.publish", "verify")
    keys = [load_public_key(k) for k in key or [Path(".keys/edgeferry.pub")]]
    manifest = publish_mod.verify_published(open_store(StoreConfig(uri=store)), name, version, keys)
    typer.echo(
        f"ok: {manifest.name} v{manifest.version}: signature valid, "
        f"{len(manifest.files())} files verified ({', '.join(v.precision for v in manifest.variants)})"
    )


@app.command()
def dashboards(
    out: Annotated[Path, typer.Option(help="Directory for the generated dashboard files.")] = Path("deploy/grafana"),
) -> None:
    """Write the Grafana dashboard generated from the metric table (import it into Grafana)."""
    import json

    from shared.dashboard_views import grafana_dashboard

    out.mkdir(parents=True, exist_ok=True)
    path = out / "edgeferry-fleet.json"
    path.write_text(json.dumps(grafana_dashboard(), indent=2) + "\n")
    typer.echo(f"wrote {path}")


def _dotted_flags(args: list[str]) -> dict[str, Any]:
    """Extra `--section.key=value` / `--section.key value` arguments: every config option as a flag."""
    import yaml

    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            _fail(f"unexpected argument {arg!r}; config options are given as --section.key=value")
        key, sep, raw = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                _fail(f"{arg} needs a value")
            raw = args[i + 1]
            i += 1
        out[key.replace("-", "_")] = yaml.safe_load(raw) if raw else ""
        i += 1
    return out


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def agent(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(envvar="EDGEFERRY_CONFIG", help="YAML agent config.")] = None,
    store: Annotated[str | None, typer.Option(help="Model store URI (sync.store.uri).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name to follow (sync.model).")] = None,
    source: Annotated[str | None, typer.Option(help="Source type: synthetic, video_file, camera, ...")] = None,
    mqtt_host: Annotated[str | None, typer.Option(help="Broker host (mqtt.host).")] = None,
    mqtt_port: Annotated[int | None, typer.Option(help="Broker port (mqtt.port).")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--no-log-json", help="JSON log lines.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any config value: --set mqtt.port=1884")] = None,
) -> None:
    """Run the edge agent: verified model sync, hot-swap, stream inference, MQTT telemetry.

    Every config option is also a flag (--mqtt.keepalive_s=30, --source.path=cam.mp4) and an
    EDGEFERRY_SECTION__KEY environment variable.
    """
    loader = _require("shared.config_loader", "agent")
    cfg_mod = _require("edge.config", "agent")
    agent_mod = _require("edge.agent", "agent")
    from edge.log_setup import setup_logging

    flags: dict[str, Any] = {
        "sync.store.uri": store,
        "sync.model": model,
        "source.type": source,
        "mqtt.host": mqtt_host,
        "mqtt.port": mqtt_port,
        "run.max_frames": max_frames,
        "run.duration_s": duration,
        "daemon.log_json": log_json,
    }
    flags.update(_set_pairs(set_))
    flags.update(_dotted_flags(list(ctx.args)))

    def load(overrides: Any) -> Any:
        return loader.load_config(cfg_mod.AgentConfig, config, {**flags, **overrides})

    cfg = load({})
    setup_logging(cfg.daemon.log_level, cfg.daemon.log_json)
    runner = agent_mod.Agent(cfg, reload=load)
    runner.install_signal_handlers()
    try:
        runner.start()
        runner.run()
    finally:
        runner.stop()


def main() -> None:
    """Console-script entry: EdgeferryError becomes one line on stderr and exit 1."""
    try:
        app()
    except EdgeferryError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
