"""`edgeferry fleet serve` with the web app: one process, one lifecycle, the control plane first and the page last.

fleet/ never imports dashboards/, so the fleet CLI's `serve` is replaced here (`mount`, called by edgeferry/cli.py)
by one that takes the same options plus `--web/--no-web` and `--web-config`; with `--no-web` it is the fleet's own.
"""

# No `from __future__ import annotations`: typer reads the serve command's annotations, which name fleet.cli's.
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from dashboards.web.config import WebConfig
from shared.config_loader import load_config

log = logging.getLogger(__name__)


class DashboardService:
    """A fleet worker (fleet.service.FleetService) plus the web app over its store and broker connection."""

    def __init__(self, fleet_cfg: Any, web_cfg: WebConfig, rollout_plan: Any = None) -> None:
        from fleet.service import FleetService

        self.fleet_cfg = fleet_cfg
        self.web_cfg = web_cfg
        self.rollout_plan = rollout_plan
        self.fleet = FleetService(fleet_cfg)
        self.feed: Any = None
        self.objects: Any = None
        self.server: Any = None

    def start(self) -> None:
        """Start the control plane, then the MQTT feed, then the web server (stop() undoes them in reverse)."""
        self.fleet.start()
        if self.web_cfg.enabled:
            self.start_web()

    def start_web(self) -> None:
        """The web app over the started control plane."""
        from dashboards.web.app import create_app
        from dashboards.web.event_buffer import EventBuffer
        from dashboards.web.figures import FigureBuffer
        from dashboards.web.fleet_adapter import FleetAdapter
        from dashboards.web.known_devices import KnownDevices
        from dashboards.web.live import LiveHub
        from dashboards.web.mqtt_feed import MqttFeed
        from dashboards.web.objects import ObjectBuffer
        from dashboards.web.server import WebServer

        cfg, web = self.fleet_cfg, self.web_cfg
        store = self.fleet.store
        assert store is not None
        events, figures = EventBuffer(), FigureBuffer()
        known = KnownDevices()  # a detector's objects are kept only for devices in the registry
        self.objects = ObjectBuffer(known)
        broker = cfg.broker
        self.feed = MqttFeed(cfg.fleet, broker.host, broker.port, events, figures, username=broker.username,
                             password=broker.password.get_secret_value() if broker.password else None,
                             client_id=f"edgeferry-web-{cfg.lease.worker_id}"[:64], objects=self.objects)
        self.feed.start(wait_s=broker.connect_timeout_s)
        adapter = FleetAdapter(store, self._control(), self.fleet.sender, events, figures, self.rollout_plan,
                               trust_device_groups=cfg.controller.trust_device_groups)
        hub = LiveHub(adapter, web.live_interval_s, web.alerts, alert_sink=self.feed.publish_alerts,
                      clock_ms=store.clock, objects=self.objects)
        known.follow(hub)
        self.server = WebServer(create_app(web, adapter, adapter, hub, clock_ms=store.clock, objects=self.objects,
                                           streams=store.streams.get), web.host, web.port)
        self.server.start()
        if not web.users and not web.api_tokens:
            log.warning("web app: no users or API tokens configured; nobody can sign in (see --web-config)")
        log.info("web app on %s", self.server.url)

    def _control(self) -> Any:
        """Direct deploys and rollbacks need the command key and the model store; None when observing only."""
        cfg = self.fleet_cfg
        if cfg.commands.key is None or self.fleet.mqtt is None or self.fleet.store is None:
            return None
        from fleet.control import FleetControl
        from fleet.package_check import PackageChecker
        from shared.signing import load_private_key, load_public_key
        from shared.store_open import open_store

        checker = PackageChecker(open_store(cfg.packages.store),
                                 [load_public_key(p) for p in cfg.packages.trusted_keys], cfg.packages.allow_unsigned)
        return FleetControl(self.fleet.store, checker, self.fleet.mqtt, load_private_key(cfg.commands.key),
                            cfg.commands.expires_in_s)

    def run(self) -> None:
        """Block until a stop is requested (the serve command handles SIGTERM/SIGINT from before start())."""
        self.fleet.run()

    def stop(self) -> None:
        """Web server, feed, then the control plane."""
        if self.server is not None:
            self.server.stop()
        if self.feed is not None:
            self.feed.stop()
        self.fleet.stop()


def load_web_config(path: Path | None, port: int | None = None) -> WebConfig:
    """The web config from its own YAML file (the fleet config stays the control plane's)."""
    flags = {"port": port} if port is not None else {}
    return load_config(WebConfig, path, flags, known_env_roots=set())


def mount(fleet_app: typer.Typer) -> None:
    """Replace the fleet CLI's `serve` with one that also serves the web app."""
    from fleet import cli as fleet_cli

    fleet_app.registered_commands = [c for c in fleet_app.registered_commands
                                     if (c.name or getattr(c.callback, "__name__", "")) != "serve"]

    @fleet_app.command("serve")
    def serve(
        config: fleet_cli.ConfigOpt = None,
        set_: fleet_cli.SetOpt = None,
        broker: fleet_cli.BrokerOpt = None,
        web: Annotated[bool, typer.Option("--web/--no-web", help="Serve the web app beside the control plane.")] = True,
        web_config: Annotated[Path | None, typer.Option(
            help="Web app config (users, tokens, bind address, alert rules): YAML, see dashboards/web/config.py.")
        ] = None,
        web_port: Annotated[int | None, typer.Option(help="Web app port (overrides the web config).")] = None,
    ) -> None:
        """Run a control-plane worker and its web app: ingest, leader lease, rollouts, the live fleet page."""
        cfg = fleet_cli.load(config, set_, broker)
        web_cfg = load_web_config(web_config, web_port)
        if not web:
            web_cfg = web_cfg.model_copy(update={"enabled": False})
        logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        service = DashboardService(cfg, web_cfg)
        # Handled from the first step: a SIGTERM during a slow start is a clean stop once the start is done, never the
        # default handler's abrupt exit (which left the lease held).
        service.fleet.install_signal_handlers()
        try:
            service.start()
            if service.server is not None:
                typer.echo(f"fleet {cfg.fleet}: web app on {service.server.url}", err=True)
            service.run()
        finally:
            service.stop()
