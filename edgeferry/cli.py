"""The `edgeferry` command: one entry point, subcommands per side, one-line errors."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeferry import __version__
from shared.broker_address import parse_broker as shared_parse_broker
from shared.config_loader import parse_dotted_args, parse_set_pairs
from shared.errors import EdgeferryError

app = typer.Typer(
    no_args_is_help=True, pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]},
)

# Top-level modules of each extra that the commands import; a missing one means the extra is not installed.
_EXTRA_OF = {"torch": "cloud", "pytorch_lightning": "cloud", "lightning": "cloud", "torchmetrics": "cloud",
             "onnxruntime": "edge", "paho": "edge", "cv2": "edge", "boto3": "edge", "onnx": "cloud",
             "onnxconverter_common": "cloud", "mlxtend": "cloud", "sklearn": "cloud", "PIL": "cloud",
             "sqlalchemy": "fleet", "psycopg": "fleet"}
_EXTRA_NEEDS = {"cloud": ("torch", "pytorch_lightning", "onnx", "onnxruntime"),
                "edge": ("onnxruntime", "paho", "cv2")}


def _needs_extra(extra: str, command: str, missing: str) -> str:
    return f"'edgeferry {command}' needs the {extra} extra ({missing} is missing): pip install -e '.[{extra}]'"


def _check_extra(extra: str, command: str) -> None:
    """Stop in one line before any work when a module the extra brings is not importable."""
    for module in _EXTRA_NEEDS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            _fail(_needs_extra(extra, command, module))


def _require(module: str, command: str) -> Any:
    """Import a side's module, or say in one line which extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        root = (exc.name or "").split(".")[0]
        extra = _EXTRA_OF.get(root)
        if extra is None:
            raise
        _fail(_needs_extra(extra, command, root))


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# What `make train-cloud` signs with when no publish.signing_key is set (cloud/signing_key.py: .keys/edgeferry.key,
# its public half .keys/edgeferry.pub is what devices trust); publish-pointer and bench default to it.
DEV_SIGNING_KEY = Path(".keys/edgeferry.key")


def _deprecated(old: str, new: str) -> None:
    """One warning line for a spelling kept for one release (hidden from --help)."""
    typer.echo(f"warning: {old} is deprecated and goes in the next release; use {new}", err=True)


def _pick(new: Any, old: Any, old_flag: str, new_flag: str) -> Any:
    """The value of a renamed option: the new spelling, else the old one (with its warning line)."""
    if old is None or old == []:
        return new
    _deprecated(old_flag, new_flag)
    return new if new is not None and new != [] else old


def parse_broker(text: str, flag: str = "--broker") -> tuple[str, int | None]:
    """HOST[:PORT] ([v6]:PORT for IPv6) as (host, port or None when left out), or a one-line error; the rule the
    fleet commands' --broker follows too (shared.broker_address)."""
    try:
        return shared_parse_broker(text, flag)
    except ValueError as exc:
        _fail(str(exc))
        raise  # unreachable: _fail exits


def _signing_key(path: Path) -> Path:
    """The package key, checked here so a missing one names the trainer's key rather than suggest a keygen that
    would overwrite the public key devices trust."""
    if not path.exists():
        hint = (f"make train-cloud writes {DEV_SIGNING_KEY}; run it first" if path == DEV_SIGNING_KEY
                else f"the default is {DEV_SIGNING_KEY}, the key make train-cloud signs with")
        _fail(f"signing key {path} not found: --signing-key is the private key the package was signed with "
              f"(publish.signing_key of the train config; {hint})")
    return path


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeferry {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """Edge-to-cloud ML deployment pipeline."""


def _help_config(schema: str, title: str) -> Any:
    """An eager --help-config option: print every option of the config schema (module:Class) and exit."""

    def show(value: bool) -> None:
        if not value:
            return
        from edgeferry.config_help import options, render

        module, cls = schema.split(":")
        typer.echo(render(title, options(getattr(_require(module, "--help-config"), cls))), nl=False)
        raise typer.Exit()

    return typer.Option(
        "--help-config", is_eager=True, expose_value=False, callback=show,
        help="List every config option (key, type, default, description) and exit.",
    )


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Pulled in through torchmetrics; its font-cache notice on first use says nothing about training.
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    # INT8 quantization announces each internal step at INFO; our own line reports the result.
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="YAML training config.")] = None,
    task: Annotated[str | None, typer.Option(
        help="detection (boxes), or sensor jobs: sensor-classification or anomaly (or `task:` in the config); "
        "default: image classification.")] = None,
    data: Annotated[Path | None, typer.Option(
        help="ImageFolder data set (one sub-folder per class), COCO JSON (DIR/annotations.json) for --task "
        "detection, or a folder of CSV recordings for a sensor task.")
    ] = None,
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
    help_config: Annotated[bool, _help_config("cloud.config:TrainConfig", "edgeferry train options")] = False,
) -> None:
    """Train, export FP32/FP16/INT8 ONNX, verify every variant, sign and publish.

    Every config option is also a flag (--trainer.lr=0.001, --export.precisions='[fp32, int8]') and an
    EDGEFERRY_SECTION__KEY environment variable; --help-config lists them all.
    """
    _check_extra("cloud", "train")
    _logging()
    loader = _require("shared.config_loader", "train")
    cfg_mod = _require("cloud.config", "train")
    pipeline = _require("cloud.pipeline", "train")
    labels = {"model.arch": "--model", "trainer.devices": "--devices", "trainer.num_nodes": "--num-nodes",
              "trainer.strategy": "--strategy", "trainer.accelerator": "--accelerator",
              "trainer.max_epochs": "--epochs", "trainer.seed": "--seed", "data.max_samples": "--max-samples",
              "publish.store.uri": "--store", "publish.name": "--name", "publish.signing_key": "--signing-key",
              "publish.enabled": "--publish", "data.source": "--data", "data.dir": "--data"}
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
    sensor = _require("cloud.sensor.cli_task", "train")
    sensor_task = sensor.sensor_task(task, config)
    if sensor_task is not None:  # 1-D sensor models: their own config tree and pipeline (cloud/sensor)
        flags, labels = sensor.sensor_flags(sensor_task, flags, data)
    elif task == "detection":  # COCO JSON at DIR/annotations.json, or seeded synthetic scenes without --data
        flags["task"] = task
        labels["task"] = "--task"
        if data is not None:
            flags.update({"data.source": "coco", "data.dir": str(data)})
    elif data is not None:
        flags.update({"data.source": "folder", "data.dir": str(data)})
    sets = parse_set_pairs(set_)
    dotted = parse_dotted_args(list(ctx.args))
    flags.update(sets)
    flags.update(dotted)
    labels.update({k: f"--set {k}" for k in sets})
    labels.update({k: f"--{k}" for k in dotted})
    if sensor_task is not None:
        sensor_cfg = _require("cloud.sensor.config", "train")
        run_sensor = _require("cloud.sensor.pipeline", "train").run_sensor
        run_sensor(loader.load_config(sensor_cfg.SensorTrainConfig, config, flags, flag_labels=labels))
        return
    cfg = loader.load_config(cfg_mod.TrainConfig, config, flags, flag_labels=labels)
    pipeline.run(cfg)


@app.command()
def keygen(
    path: Annotated[Path, typer.Argument(help="Private key path; the public key is written beside it as .pub.")],
    force: Annotated[bool, typer.Option(help="Overwrite existing keys.")] = False,
) -> None:
    """Write an ed25519 key pair (private key mode 0600) for signing packages or commands."""
    from shared.signing import generate_keypair, key_id, load_public_key

    pair = generate_keypair(path, overwrite=force)
    typer.echo(
        f"private key: {pair.private} (mode 0600)\npublic key:  {pair.public} (give this to devices)\n"
        f"key id:      {key_id(load_public_key(pair.public))}\n"
        f"packages: publish.signing_key={pair.private}, devices list {pair.public.name} in sync.trusted_keys\n"
        f"commands: edgeferry cmd ... --command-key {pair.private}, devices list {pair.public.name} in "
        "device.command_keys"
    )


@app.command()
def cmd(
    device: Annotated[str, typer.Argument(help="Device id (topic level 3).")],
    name: Annotated[str, typer.Argument(help="Command: deploy, rollback, set-config or ping.")],
    command_key: Annotated[Path | None, typer.Option(
        help="ed25519 private key PEM whose public key devices list in device.command_keys (required); its "
             "sequence is kept in KEY.seq.")] = None,
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Command fields as key=value (YAML values): version=3 pin=true allow_downgrade=true; "
                            "for set-config, dotted config keys: events.mode=every."),
    ] = None,
    fleet: Annotated[str, typer.Option(help="Fleet of the device (topic level 2).")] = "default",
    args_json: Annotated[str | None, typer.Option(help="Command fields as one JSON object.")] = None,
    broker: Annotated[str, typer.Option(help="MQTT broker as HOST[:PORT].")] = "localhost:1883",
    username: Annotated[str | None, typer.Option(help="Broker user.")] = None,
    password: Annotated[str | None, typer.Option(envvar="EDGEFERRY_MQTT_PASSWORD",
                                                 help="Broker password (or EDGEFERRY_MQTT_PASSWORD).")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="CA bundle to verify the broker (enables TLS).")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Client certificate for mutual TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Client key for mutual TLS.")] = None,
    expires_in: Annotated[float, typer.Option(min=0.001, max=3600, help="Seconds until devices refuse it.")] = 60,
    timeout: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds to wait for the reply.")] = 10,
    key: Annotated[Path | None, typer.Option(hidden=True, help="Deprecated: --command-key.")] = None,
    json_: Annotated[str | None, typer.Option("--json", hidden=True, help="Deprecated: --args-json.")] = None,
    host: Annotated[str | None, typer.Option(hidden=True, help="Deprecated: --broker HOST:PORT.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, hidden=True, help="Deprecated: --broker.")] = None,
) -> None:
    """Sign a command, send it to one device and print its reply (exit 1 when ok=false, 3 when none came)."""
    import json

    import yaml

    client = _require("edgeferry.cmd_client", "cmd")
    command_key = _pick(command_key, key, "--key", "--command-key")
    if command_key is None:
        _fail("--command-key is required: the private key whose public half devices list in device.command_keys")
    args_json = _pick(args_json, json_, "--json", "--args-json")
    broker_host, broker_port = parse_broker(broker)
    if host is not None or port is not None:
        _deprecated("--host/--port", "--broker HOST:PORT")
        broker_host, broker_port = host or broker_host, port or broker_port
    fields: dict[str, Any] = {}
    if args_json is not None:
        try:
            fields = json.loads(args_json)
        except ValueError as exc:
            _fail(f"--args-json is not JSON: {exc}")
        if not isinstance(fields, dict):
            _fail("--args-json must be a JSON object")
    pairs: dict[str, Any] = {}
    for pair in args or []:
        field, sep, raw = pair.partition("=")
        if not sep or not field.strip():
            _fail(f"command fields are key=value (e.g. version=3), got {pair!r}")
        pairs[field.strip()] = yaml.safe_load(raw) if raw else ""
    if name == "set-config" and pairs:
        fields["values"] = {**fields.get("values", {}), **pairs}
    else:
        fields.update(pairs)
    options = client.BrokerOptions(host=broker_host, port=broker_port or 1883, username=username, password=password,
                                   tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    try:
        reply = client.send_command(device, name, fields, key_path=command_key, fleet=fleet, broker=options,
                                    expires_in_s=expires_in, timeout_s=timeout)
    except client.NoReplyError as exc:
        _fail(str(exc), code=3)
    typer.echo(json.dumps(reply, indent=2))
    if not reply.get("ok"):
        _fail(f"{device} refused {name}: {reply.get('error')}")


@app.command()
def verify(
    store: Annotated[str, typer.Option(help="Store URI.")] = ".store",
    name: Annotated[str, typer.Option(help="Model name.")] = "digits",
    model_version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
    trusted_key: Annotated[list[Path] | None, typer.Option(
        help="Trusted public key PEM (repeatable; default .keys/edgeferry.pub, make train-cloud's).")] = None,
    version: Annotated[int | None, typer.Option(hidden=True, help="Deprecated: --model-version.")] = None,
    key: Annotated[list[Path] | None, typer.Option(hidden=True, help="Deprecated: --trusted-key.")] = None,
) -> None:
    """Download a published package and check its signature and every file's sha256."""
    from shared.signing import load_public_key
    from shared.store_config import StoreConfig
    from shared.store_open import open_store

    version = _pick(model_version, version, "--version", "--model-version")
    trusted = _pick(trusted_key, key, "--key", "--trusted-key")
    publish_mod = _require("cloud.publish", "verify")
    keys = [load_public_key(k) for k in trusted or [DEV_SIGNING_KEY.with_suffix(".pub")]]
    manifest = publish_mod.verify_published(open_store(StoreConfig(uri=store)), name, version, keys)
    typer.echo(
        f"ok: {manifest.name} v{manifest.version}: signature valid, "
        f"{len(manifest.files())} files verified ({', '.join(v.precision for v in manifest.variants)})"
    )


@app.command()
def package(
    onnx: Annotated[Path, typer.Option(help="The ONNX file to package (e.g. from `yolo export format=onnx`).")],
    task: Annotated[str, typer.Option(help="detection or classification.")],
    name: Annotated[str, typer.Option(help="Model name in the store.")],
    labels: Annotated[Path | None, typer.Option(
        help="Class names, one per line in output order (default: the model's own metadata names).")] = None,
    format_: Annotated[str, typer.Option("--format", help="Output contract: detection yolo, packed or decoded; "
                                         "classification logits or probabilities; auto reads it from the outputs."
                                         )] = "auto",
    preprocess: Annotated[list[str] | None, typer.Option(
        help="Override a recipe field, e.g. resize_mode=stretch, mean=0.485,0.456,0.406 (repeatable).")] = None,
    calibration_dir: Annotated[Path | None, typer.Option(
        help="Images for golden samples and INT8 calibration (default: seeded synthetic scenes, no INT8).")] = None,
    eval_data: Annotated[Path | None, typer.Option(
        help="Labelled images the INT8 gate scores on: COCO JSON dir (detection) or class folders.")] = None,
    store: Annotated[str, typer.Option(help="Store URI: path or s3://bucket/prefix.")] = ".store",
    signing_key: Annotated[Path, typer.Option(help="ed25519 private key PEM to sign with.")] = DEV_SIGNING_KEY,
    target_runtime: Annotated[list[str] | None, typer.Option(
        help="Runtime the devices use: every op must be on its list (repeatable; default onnxruntime, openvino).")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16/--no-fp16", help="Build FP16 (for GPUs), gated like INT8.")] = True,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Build INT8 from the calibration images.")] = True,
    max_map_drop: Annotated[float, typer.Option(
        min=0, max=1, help="FP16 and INT8 mAP@.5:.95 budget below FP32 (0-1).")] = 0.015,
    max_accuracy_drop: Annotated[float, typer.Option(
        min=0, max=1, help="FP16 and INT8 accuracy budget below FP32 (0-1).")] = 0.01,
) -> None:
    """Package an external ONNX detector or classifier: check, build golden samples, FP16 (and INT8), sign, publish."""
    _check_extra("cloud", "package")
    _logging("WARNING")
    byo = _require("cloud.byo.package", "package")
    variants = _require("cloud.byo.variants", "package")
    request = byo.PackageRequest(
        onnx=onnx, task=task, name=name, store=store, signing_key=_signing_key(signing_key), labels=labels,
        format=format_, preprocess=list(preprocess or []), calibration_dir=calibration_dir, eval_data=eval_data,
        target_runtimes=list(target_runtime or ["onnxruntime", "openvino"]), fp16=fp16, int8=int8,
        budget=variants.Budget(map_drop=max_map_drop, accuracy_drop=max_accuracy_drop),
    )
    done = byo.package_model(request)
    for line in done.lines:
        typer.echo(line)
    typer.echo(f"published {done.published.name} v{done.published.version} to {done.published.uri} "
               f"({done.manifest.task}, {done.manifest.head.format} head, {len(done.manifest.labels)} labels; "
               f"variants: {', '.join(v.precision for v in done.manifest.variants)})")


@app.command("publish-pointer")
def publish_pointer(
    store: Annotated[str, typer.Option(help="Store URI.")] = ".store",
    name: Annotated[str, typer.Option(help="Model name.")] = "digits",
    signing_key: Annotated[Path, typer.Option(help="ed25519 private key PEM the package was signed with.")
                           ] = DEV_SIGNING_KEY,
    ttl_days: Annotated[float, typer.Option(min=0.01, max=3650, help="Days until devices see it as stale.")] = 30.0,
    channel: Annotated[str, typer.Option(help="Channel: 'stable' is latest.json; another name is "
                                              "channels/<name>.json, followed by devices whose sync.channel names it."
                                         )] = "stable",
    model_version: Annotated[int | None, typer.Option(min=1, help="Move the channel to this published version "
                                                                  "(default: re-sign where it points).")] = None,
    key: Annotated[Path | None, typer.Option(hidden=True, help="Deprecated: --signing-key.")] = None,
) -> None:
    """Re-sign a channel's pointer (latest.json by default) with a fresh expiry, or move it to a published version.

    Devices in sync.follow 'latest' mode follow their sync.channel's pointer; fleet-managed devices ignore pointers
    and follow their signed desired state.
    """
    from datetime import timedelta

    from shared.pointer import pointer_file
    from shared.signing import load_private_key
    from shared.store_config import StoreConfig
    from shared.store_open import open_store

    signing = _signing_key(_pick(signing_key, key, "--key", "--signing-key"))
    publish_mod = _require("cloud.publish", "publish-pointer")
    latest = publish_mod.publish_pointer(
        open_store(StoreConfig(uri=store)), name, load_private_key(signing), timedelta(days=ttl_days),
        channel=channel, version=model_version,
    )
    expires = f"{latest.expires_at:%Y-%m-%d %H:%M} UTC"
    typer.echo(f"ok: {latest.name} {pointer_file(channel)} -> v{latest.version}, signed, expires {expires}")


@app.command()
def bench(
    target: Annotated[str, typer.Option(help="Target name devices give as sync.target (e.g. jetson-orin-nano).")],
    store: Annotated[str, typer.Option(help="Store URI.")] = ".store",
    name: Annotated[str, typer.Option(help="Model name.")] = "digits",
    model_version: Annotated[int | None, typer.Option(min=1, help="Version (default: latest).")] = None,
    signing_key: Annotated[Path, typer.Option(help="ed25519 private key PEM the package was signed with.")
                           ] = DEV_SIGNING_KEY,
    config: Annotated[Path | None, typer.Option(help="The fleet's agent YAML: its backend and sync sections "
                                                     "decide the candidates, as on the devices.")] = None,
    version: Annotated[int | None, typer.Option(min=1, hidden=True, help="Deprecated: --model-version.")] = None,
    key: Annotated[Path | None, typer.Option(hidden=True, help="Deprecated: --signing-key.")] = None,
) -> None:
    """On one device of a fleet of identical ones: measure every runtime candidate and record the signed choice.

    Devices whose sync.target names the target, with the same hardware fingerprint and runtime versions, then serve
    it after their smoke test, without measuring. The package, its manifest and latest.json are left untouched.
    """
    version = _pick(model_version, version, "--version", "--model-version")
    signing = _signing_key(_pick(signing_key, key, "--key", "--signing-key"))
    _check_extra("edge", "bench")
    _logging("ERROR")  # the device's own warnings ("polling retries it") do not fit a one-shot command
    loader = _require("shared.config_loader", "bench")
    cfg_mod = _require("edge.config", "bench")
    bench_mod = _require("edgeferry.bench_target", "bench")
    from shared.store_config import StoreConfig
    from shared.store_open import open_store

    cfg = loader.load_config(cfg_mod.AgentConfig, config, {})
    done = bench_mod.record_choice(open_store(StoreConfig(uri=store)), name, target, signing, cfg,
                                  version=version)
    typer.echo(bench_mod.report(done))


@app.command()
def dashboards(
    out: Annotated[Path, typer.Option(help="Directory for the generated dashboard files.")] = Path("deploy/grafana"),
) -> None:
    """Write the Grafana dashboards (fleet, device) generated from the metric table (deploy/grafana provisions them)."""
    from dashboards.grafana import write_dashboards

    for path in write_dashboards(out):
        typer.echo(f"wrote {path}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def agent(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(envvar="EDGEFERRY_CONFIG", help="YAML agent config.")] = None,
    store: Annotated[str | None, typer.Option(help="Model store URI (sync.store.uri).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name to follow (sync.model).")] = None,
    source: Annotated[str | None, typer.Option(help="Source type: synthetic, video_file, camera, ...")] = None,
    broker: Annotated[str | None, typer.Option(help="MQTT broker as HOST[:PORT] (mqtt.host, mqtt.port).")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    log_json: Annotated[bool | None, typer.Option("--log-json/--no-log-json", help="JSON log lines.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any config value: --set mqtt.port=1884")] = None,
    help_config: Annotated[bool, _help_config("edge.config:AgentConfig", "edgeferry agent options")] = False,
    print_config: Annotated[bool, typer.Option(
        help="Print the resolved config (file, variables and flags applied; secrets masked) as JSON and exit.")
    ] = False,
    mqtt_host: Annotated[str | None, typer.Option(hidden=True, help="Deprecated: --broker.")] = None,
    mqtt_port: Annotated[int | None, typer.Option(hidden=True, help="Deprecated: --broker.")] = None,
) -> None:
    """Run the edge agent: verified model sync, hot-swap, stream inference, MQTT telemetry.

    Every config option is also a flag (--mqtt.keepalive_s=30, --source.path=cam.mp4) and an
    EDGEFERRY_SECTION__KEY environment variable; --help-config lists them all.
    """
    loader = _require("shared.config_loader", "agent")
    cfg_mod = _require("edge.config", "agent")
    agent_mod = _require("edge.agent", "agent")
    from edge.log_setup import setup_logging

    broker_host, broker_port = parse_broker(broker) if broker is not None else (None, None)
    if mqtt_host is not None or mqtt_port is not None:
        _deprecated("--mqtt-host/--mqtt-port", "--broker HOST:PORT")
    flags: dict[str, Any] = {
        "sync.store.uri": store,
        "sync.model": model,
        "source.type": source,
        "mqtt.host": broker_host or mqtt_host,
        "mqtt.port": broker_port or mqtt_port,
        "run.max_frames": max_frames,
        "run.duration_s": duration,
        "daemon.log_json": log_json,
    }
    labels = {"sync.store.uri": "--store", "sync.model": "--model", "source.type": "--source",
              "mqtt.host": "--broker" if broker else "--mqtt-host",
              "mqtt.port": "--broker" if broker else "--mqtt-port", "run.max_frames": "--max-frames",
              "run.duration_s": "--duration", "daemon.log_json": "--log-json"}
    sets = parse_set_pairs(set_)
    dotted = parse_dotted_args(list(ctx.args))
    flags.update(sets)
    flags.update(dotted)
    labels.update({k: f"--set {k}" for k in sets})
    labels.update({k: f"--{k}" for k in dotted})

    def load(overrides: Any) -> Any:
        over_labels = {k: f"set-config {k}" for k in overrides}
        return loader.load_config(
            cfg_mod.AgentConfig, config, {**flags, **overrides}, flag_labels={**labels, **over_labels}
        )

    cfg = load({})
    if print_config:
        import json

        typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True))
        return
    setup_logging(cfg.daemon.log_level, cfg.daemon.log_json)
    runner = agent_mod.Agent(cfg, reload=load)
    runner.install_signal_handlers()
    try:
        runner.start()
        runner.run()
    finally:
        runner.stop()


def _mount_hil() -> None:
    """`edgeferry hil ...`: the hardware-in-the-loop harness (hil/, present in a source checkout and the wheel)."""
    from hil.cli import app as hil_app

    app.add_typer(hil_app, name="hil")


_mount_hil()


def _one_line(exc: BaseException) -> str | None:
    """The line a user error prints instead of a traceback; None for a bug, which keeps its traceback."""
    from pydantic import ValidationError

    if isinstance(exc, EdgeferryError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        root = (exc.name or "").split(".")[0]
        extra = _EXTRA_OF.get(root)
        command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
        return _needs_extra(extra, command, root) if extra else None
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"invalid {exc.title}{f' {where}' if where else ''}: {first['msg']}"
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return None


app.command("sim")(_require("fleet.sim.cli", "sim").sim)
_fleet_app = _require("fleet.cli", "fleet").app
# `fleet serve` also serves the web app (dashboards/serve.py: fleet/ never imports dashboards/); without the web
# extra installed it stays the control plane's own.
if importlib.util.find_spec("fastapi") is not None:
    importlib.import_module("dashboards.serve").mount(_fleet_app)
app.add_typer(_fleet_app, name="fleet")


def main() -> None:
    """Console-script entry: a user error (EdgeferryError, a missing extra, a bad file) is one line and exit 1."""
    from edgeferry.legacy_flags import LEGACY, translate

    argv = sys.argv[1:]
    old = {spelling for table in LEGACY.values() for spelling in table}
    if any(token.split("=", 1)[0] in old for token in argv):  # the click tree is built only when it may matter
        argv, warnings = translate(typer.main.get_command(app), argv)
        for warning in warnings:
            typer.echo(warning, err=True)
    try:
        app(args=argv)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        line = _one_line(exc)
        if line is None:
            raise
        typer.echo(f"error: {line}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
