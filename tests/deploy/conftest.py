"""Fixtures of the deployment tests: the production broker config running on loopback, and its accounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.prod_broker import DEPLOY, DEVICES, ROLES, SENSOR, Account, ProdBroker, local_conf, provision, pw
from tests.fixtures.broker import Broker
from tests.fixtures.ports import free_port, wait_port


@pytest.fixture
def prod(mosquitto_factory: Callable[..., Broker], tmp_path: Path) -> ProdBroker:
    """A broker on the shipped config with three devices (cam-1 may read SENSOR) and the four role users."""
    workdir = tmp_path / "broker"
    workdir.mkdir()
    (workdir / "edgeferry.acl").write_text((DEPLOY / "edgeferry.acl").read_text())
    for fleet, device in DEVICES:
        sensor = ["--sensor-topic", SENSOR] if (fleet, device) == ("lab", "cam-1") else []
        done = provision(workdir, "device", fleet, device, *sensor, password=pw(f"{fleet}.{device}"))
        assert done.returncode == 0, done.stderr
    for role in ROLES:
        done = provision(workdir, "password", role, password=pw(role))
        assert done.returncode == 0, done.stderr
    services_port = free_port()
    broker = mosquitto_factory(raw_conf=local_conf(workdir, services_port))
    wait_port(services_port)
    return ProdBroker(broker, broker.port, services_port, workdir)


@pytest.fixture
def login(prod: ProdBroker) -> Iterator[Callable[..., Account]]:
    """login(user, **kw): a device user on the devices' listener, a role user on the services' one."""
    made: list[Account] = []

    def make(user: str, **kw: Any) -> Account:
        port = prod.port if "." in user else prod.services_port
        account = Account(kw.pop("port", port), user, **kw)
        made.append(account)
        return account

    yield make
    for account in made:
        account.close()
