"""Model sync for the agent: poll, fetch, verify, install, load with a smoke test, activate, roll back."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.backends.base import Hardware, InferenceBackend, LoadedModel
from edge.backends.capabilities import F32
from edge.backends.chain import BackendChain
from edge.choice_cache import CHOICE_CACHE_DIR, ChoiceCache
from edge.config import SyncConfig
from edge.errors import BackendError, InstallError, InsufficientSpace, PackageRejected
from edge.golden_agreement import scorer_for
from edge.golden_check import load_golden, run_smoke_test
from edge.hot_swap import ServingModel, prepare
from edge.model_cache import InstalledModel, ModelCache, Pointer
from edge.package_fetch import RetryPolicy, fetch_version, with_retries
from edge.package_verify import verify_package
from edge.recorded_choice import RecordedChoices
from edge.runtime_bench import ChosenModel, PackageIdentity, choose, cpu_model_name
from edge.runtime_choice import Candidate, candidates, hardware_fingerprint
from edge.variant_select import rank_variants
from shared.errors import ConfigError, EdgeferryError, ManifestError, SignatureError, StoreError, StoreNotFoundError
from shared.integrity import sha256_bytes
from shared.manifest import Latest, Manifest, Variant, utcnow
from shared.object_store import ObjectStore
from shared.payloads import BenchmarkResult
from shared.pointer import is_expired, pointer_file, pointer_key, pointer_signature_key, verify_pointer
from shared.signing import load_public_key
from shared.store_open import open_store

log = logging.getLogger(__name__)

__all__ = ["FollowMode", "InstalledModel", "ModelSync", "follow_mode", "load_trusted_keys"]

FollowMode = Literal["latest", "desired"]


def follow_mode(configured: str, managed: bool) -> FollowMode:
    """sync.follow resolved: 'auto' follows the pointer until the device is managed (has applied a desired state)."""
    if configured == "auto":
        return "desired" if managed else "latest"
    return "desired" if configured == "desired" else "latest"


def load_trusted_keys(paths: list[Path]) -> list[Ed25519PublicKey]:
    """Public keys from the configured PEM files (KeyFileError names the bad one)."""
    return [load_public_key(p) for p in paths]


@dataclass(frozen=True)
class FetchFailure:
    """A version whose store objects (or the disk) failed; polling retries it only after next_at."""

    count: int
    next_at: float
    reason: str


class ModelSync:
    """Keeps a verified model in the local cache; the current model is never touched by a failed update."""

    def __init__(
        self,
        cfg: SyncConfig,
        store: ObjectStore,
        trusted: list[Ed25519PublicKey],
        backend: InferenceBackend,
        hw: Hardware,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.trusted = list(trusted)
        self.backend = backend
        self.hw = hw
        self.cache = ModelCache(cfg.cache_dir, cfg.model)
        try:
            self.cache.prepare_root()
        except OSError as exc:
            raise ConfigError(
                f"sync.cache_dir {cfg.cache_dir} is not a writable directory ({exc.strerror or exc}); point it at a "
                "directory this agent may create and write"
            ) from exc
        self.policy = RetryPolicy(cfg.download_attempts, cfg.backoff_s, sleep)
        self.clock = clock
        self.now = now
        self.rejects = 0
        self.last_reject: str | None = None
        self.variant_failures = 0
        self.store_errors = 0
        self.pointer_rejects = 0
        self.pointer_rollbacks = 0
        self.pointer_expired = False
        self.notes: tuple[str, ...] = ()
        self.recorded = RecordedChoices(store, cfg.target, self.policy) if cfg.target else None
        self.failures: dict[int, FetchFailure] = {}
        self._rejected_versions: set[int] = set()
        self._pointer_sha: dict[int, str] = {}
        # Highest version seen per pointer key: switching channel is not a pointer moving backwards.
        self._highest_pointer: dict[str, int] = {}
        # Whether a fleet manages this device (it applied a signed desired state); the agent wires the answer in.
        self.managed: Callable[[], bool] = lambda: False
        # The agent's say on a verified package before it is loaded (one model per task, edge.task_claims):
        # raises PackageRejected, which counts it and keeps polling from retrying that version.
        self.admit: Callable[[Manifest], None] = lambda manifest: None
        # The channel a desired state in force names (it overrides sync.channel); the agent wires the answer in.
        self.desired_channel: Callable[[], str | None] = lambda: None
        # The last pointer each warning was logged for: one line per change, not one per poll.
        self._noted: dict[str, object] = {}
        self._lock = threading.RLock()
        if not self.trusted and not cfg.allow_unsigned:
            log.warning("no trusted public keys configured: every package will be rejected (set sync.trusted_keys)")
        if cfg.allow_unsigned:
            log.warning("sync.allow_unsigned is on: unsigned packages will be accepted")

    @classmethod
    def from_config(cls, cfg: SyncConfig, backend: InferenceBackend, hw: Hardware) -> ModelSync:
        """Open the configured store and trusted keys."""
        return cls(cfg, open_store(cfg.store), load_trusted_keys(cfg.trusted_keys), backend, hw)

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The pointer channel followed: the one a desired state in force names, else sync.channel."""
        return self.desired_channel() or self.cfg.channel

    @property
    def mode(self) -> FollowMode:
        """What moves this device now: the channel's signed pointer ('latest') or the desired state only."""
        return follow_mode(self.cfg.follow, self.managed())

    def current_version(self) -> int | None:
        """Version current.json names, if any."""
        ptr = self.cache.read_pointer()
        return ptr.version if ptr else None

    def metrics(self) -> dict[str, float]:
        """Telemetry figures of model sync (declared in shared/metrics.py)."""
        return {
            "package_rejects": float(self.rejects),
            "store_errors": float(self.store_errors),
            "pointer_rejects": float(self.pointer_rejects),
            "pointer_rollbacks": float(self.pointer_rollbacks),
            "pointer_expired": 1.0 if self.pointer_expired else 0.0,
            "choice_record_rejects": float(self.recorded.rejects if self.recorded else 0),
        }

    def _floor(self, ptr: Pointer | None) -> int:
        """Lowest version an automatic update may install: the current one or the highest ever activated."""
        return max(ptr.version, ptr.highest) if ptr else 0

    def _verify(self, version: int, path: Path) -> Manifest:
        return verify_package(path, self.cfg.model, version, self.trusted, self.cfg.allow_unsigned)

    def _count(self, exc: PackageRejected, version: int | None) -> None:
        """Record a rejection where the agent can read it: rejects, last_reject, and no automatic retry."""
        self.rejects += 1
        self.last_reject = str(exc)
        if version is not None:
            self._rejected_versions.add(version)
        log.warning("package rejected: %s", exc)

    def _reject(self, exc: PackageRejected, version: int | None) -> PackageRejected:
        self._count(exc, version)
        return exc

    def _note_once(self, topic: str, ident: object) -> bool:
        """True the first time `ident` is seen for `topic` (so a warning is logged once per change)."""
        if self._noted.get(topic) == ident:
            return False
        self._noted[topic] = ident
        return True

    def _record_failure(self, version: int, exc: EdgeferryError) -> None:
        """Back off polling for a version whose objects failed: poll interval doubling, capped at retry_max_s."""
        count = self.failures[version].count + 1 if version in self.failures else 1
        delay = min(self.cfg.retry_max_s, self.cfg.poll_interval_s * 2 ** min(count - 1, 30))
        self.failures[version] = FetchFailure(count, self.clock() + delay, str(exc))
        log.warning(
            "%s v%d not installed (failure %d): %s; polling retries it in %.0f s",
            self.cfg.model, version, count, exc, delay,
        )

    def _backing_off(self, version: int) -> bool:
        failure = self.failures.get(version)
        return failure is not None and self.clock() < failure.next_at

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def recover(self) -> InstalledModel | None:
        """At start: clear interrupted installs and return the verified version to serve (None: nothing usable)."""
        with self._lock:
            installed = self.cache.recover(self._verify)
        if installed is None:
            log.info("no verified %s model in %s yet", self.cfg.model, self.cache.model_dir)
        else:
            log.info("serving %s v%d from the cache", self.cfg.model, installed.version)
        return installed

    def _get_optional(self, key: str) -> bytes | None:
        try:
            return with_retries(lambda: self.store.get(key), f"get {key}", self.policy)
        except StoreNotFoundError:
            return None

    def read_pointer(self) -> Latest | None:
        """The channel's pointer (latest.json for 'stable') with its signature checked (re-read once: the publisher
        may be between its two writes)."""
        channel = self.channel
        key, sig_key = pointer_key(self.cfg.model, channel), pointer_signature_key(self.cfg.model, channel)
        for attempt in (1, 2):
            try:
                body = self._get_optional(key)
                if body is None:
                    log.debug("nothing published for %s yet", self.cfg.model)
                    return None
                signature = self._get_optional(sig_key)
            except StoreError:
                self.store_errors += 1
                raise
            try:
                latest, _ = verify_pointer(body, signature, self.trusted, self.cfg.allow_unsigned, channel)
            except (SignatureError, ManifestError) as exc:
                if attempt == 1 and signature is not None:
                    self.policy.sleep(self.policy.backoff_s)
                    continue
                if self._note_once("pointer-reject", (body, signature)):
                    self.pointer_rejects += 1
                    log.warning("%s refused, keeping the current model: %s", key, exc)
                return None
            if latest.name != self.cfg.model:
                raise ManifestError(f"{key} names model {latest.name!r}, expected {self.cfg.model!r}")
            return latest
        raise AssertionError("unreachable: the second attempt returns")

    def _judge_pointer(self, latest: Latest, floor: int) -> bool:
        """Whether a verified pointer may drive an update: not expired and not behind what this device has seen."""
        channel = self.channel
        what = pointer_file(channel)
        ident = (channel, latest.version, latest.manifest_sha256, latest.published_at, latest.expires_at)
        if is_expired(latest, self.now()):
            if self._note_once("expired", ident):
                log.warning(
                    "%s %s (v%d) expired at %s: the store is stale or held back (freeze attack?); "
                    "serving what is installed until it is re-signed (edgeferry publish-pointer)",
                    self.cfg.model, what, latest.version, latest.expires_at,
                )
            self.pointer_expired = True
            return False
        if self.pointer_expired:
            log.info("%s %s is current again (expires %s)", self.cfg.model, what, latest.expires_at)
            self._noted.pop("expired", None)
        self.pointer_expired = False
        seen = max(floor, self._highest_pointer.get(channel, 0))
        if latest.version < seen:
            if self._note_once("rollback", ident):
                self.pointer_rollbacks += 1
                log.warning(
                    "%s %s moved backwards to v%d, below v%d this device has served or seen; ignoring it",
                    self.cfg.model, what, latest.version, seen,
                )
            return False
        self._highest_pointer[channel] = latest.version
        return True

    def check_latest(self, *, explicit: bool = False) -> int | None:
        """The version to install next (the pinned one, or a newer signed pointer of the channel followed), or None
        when up to date or when this device follows its desired state only (then only pins move it).

        explicit (a deploy command): ignore the backoff of failed versions and earlier rejections, and read the
        pointer also in 'desired' mode (an operator's signed deploy without a version asks for it).
        """
        ptr = self.cache.read_pointer()
        pinned = self.cfg.pinned_version
        if pinned is not None:
            if ptr and ptr.version == pinned:
                return None
            if not explicit and (pinned in self._rejected_versions or self._backing_off(pinned)):
                return None
            return pinned
        if not explicit and self.mode == "desired" and self.desired_channel() is None:
            if self._note_once("follow", "desired"):
                log.info(
                    "%s: following the fleet's desired state only (sync.follow=%s): a published version does not "
                    "move this device; set sync.follow=latest to follow %s",
                    self.cfg.model, self.cfg.follow, pointer_file(self.channel),
                )
            return None
        self._noted.pop("follow", None)
        latest = self.read_pointer()
        if latest is None or not self._judge_pointer(latest, self._floor(ptr)):
            return None
        if latest.version <= self._floor(ptr):
            return None
        if not explicit:
            if latest.version in self._rejected_versions:
                log.debug("%s v%d was rejected before; waiting for a newer version", self.cfg.model, latest.version)
                return None
            if self._backing_off(latest.version):
                log.debug("%s v%d failed recently; waiting out its backoff", self.cfg.model, latest.version)
                return None
        self._pointer_sha[latest.version] = latest.manifest_sha256
        return latest.version

    def check_rollback(self, version: int, *, allow_downgrade: bool = False) -> None:
        """PackageRejected (counted) when version is below the anti-rollback floor and no downgrade is allowed; run
        before anything changes for a deploy (a pin), so a refused deploy leaves nothing behind."""
        with self._lock:
            floor = self._floor(self.cache.read_pointer())
            if not allow_downgrade and version < floor:
                raise self._reject(
                    PackageRejected(
                        f"{self.cfg.model} v{version} is older than v{floor} already activated "
                        "(anti-rollback); a signed deploy command with allow_downgrade may downgrade"
                    ),
                    version,
                )

    def install(self, version: int, *, allow_downgrade: bool = False) -> InstalledModel:
        """Fetch, verify and install a version into the cache without switching to it (see activate)."""
        with self._lock:
            self.check_rollback(version, allow_downgrade=allow_downgrade)
            existing = self.cache.version_dir(version)
            if existing.is_dir():
                try:
                    return InstalledModel(version, existing, self._verify(version, existing))
                except (EdgeferryError, OSError) as exc:
                    log.warning("installed v%d is damaged (%s); downloading it again", version, exc)
            staging = self.cache.new_staging(version)
            try:
                fetched = fetch_version(
                    self.store,
                    self.cfg.model,
                    version,
                    staging,
                    self.trusted,
                    allow_unsigned=self.cfg.allow_unsigned,
                    policy=self.policy,
                    reserve_bytes=int(self.cfg.min_free_mb * (1 << 20)),
                    expected_sha256=self._pointer_sha.get(version),
                )
                path = self.cache.install(staging, version)
            except InsufficientSpace as exc:
                self.cache.discard(staging)
                self.rejects += 1
                self.last_reject = str(exc)
                self._record_failure(version, exc)
                raise
            except PackageRejected as exc:
                self.cache.discard(staging)
                self._count(exc, version)
                raise
            except (StoreError, InstallError) as exc:
                self.cache.discard(staging)
                self.store_errors += 1
                self._record_failure(version, exc)
                raise
            except BaseException:
                self.cache.discard(staging)
                raise
            self.failures.pop(version, None)
            log.info("installed %s v%d into %s", self.cfg.model, version, path)
            return InstalledModel(version, path, fetched.manifest)

    def sync_version(self, version: int, *, allow_downgrade: bool = False) -> InstalledModel:
        """Install a version a deploy command asked for, at once; below the anti-rollback floor only if allowed."""
        self._rejected_versions.discard(version)
        return self.install(version, allow_downgrade=allow_downgrade)

    def activate(self, version: int) -> None:
        """Point current.json at an installed version once it passed its smoke test, then prune old versions."""
        with self._lock:
            if not self.cache.version_dir(version).is_dir():
                raise InstallError(f"{self.cfg.model} v{version} is not installed; install it before activating")
            ptr = self.cache.read_pointer()
            if ptr is not None and ptr.version == version:
                return
            self.cache.write_pointer(
                Pointer(
                    version=version,
                    previous=ptr.version if ptr else None,
                    highest=max(self._floor(ptr), version),
                )
            )
            log.info("activated %s v%d (previous %s)", self.cfg.model, version, ptr.version if ptr else None)
            try:
                self.cache.prune(self.cfg.keep_versions)
            except InstallError as exc:
                log.warning("pruning old versions failed (will retry on the next activation): %s", exc)

    def rollback(self) -> InstalledModel:
        """The newest verified version older than the current one (previous first); activate it to switch."""
        with self._lock:
            ptr = self.cache.read_pointer()
            if ptr is None:
                raise InstallError(f"no {self.cfg.model} version is active; nothing to roll back from")
            order = [ptr.previous] if ptr.previous is not None and ptr.previous < ptr.version else []
            order += [v for v in reversed(self.cache.installed_versions()) if v < ptr.version and v not in order]
            for version in order:
                path = self.cache.version_dir(version)
                try:
                    return InstalledModel(version, path, self._verify(version, path))
                except (EdgeferryError, OSError) as exc:
                    log.warning("cannot roll back to v%d: %s", version, exc)
            raise InstallError(f"no verified {self.cfg.model} version older than v{ptr.version} is installed")

    # -- the whole step: install, verify, choose, smoke-test, warm up, activate ---------------------------------

    def serve_version(self, version: int, *, explicit: bool, allow_downgrade: bool = False) -> ServingModel:
        """A version ready for the slot: fetched and verified if needed, loaded, smoke-tested, warmed, activated."""
        installed = self.sync_version(version, allow_downgrade=allow_downgrade) if explicit else self.install(version)
        return self.prepare_serving(installed, activate=True)

    def serve_recovered(self) -> ServingModel | None:
        """What to serve at start: the re-verified active version (or the previous one), not yet activated anew."""
        installed = self.recover()
        return None if installed is None else self.prepare_serving(installed, activate=False)

    def serve_rollback(self) -> ServingModel:
        """The previous verified version, ready and activated."""
        return self.prepare_serving(self.rollback(), activate=True)

    def serve_remeasured(self, version: int) -> ServingModel:
        """The served version with its runtime chosen anew (the `benchmark` command): ignore the cached choice."""
        return self.prepare_serving(self.install(version, allow_downgrade=True), activate=False, remeasure=True)

    def prepare_serving(self, installed: InstalledModel, *, activate: bool, remeasure: bool = False) -> ServingModel:
        """Load the best candidate, build the serving model off the frame thread; nothing changes on failure."""
        try:
            self.admit(installed.manifest)
        except PackageRejected as exc:
            raise self._reject(exc, installed.version) from exc
        chosen, variant = self.load(installed, remeasure=remeasure)
        try:
            serving = prepare(chosen, installed.manifest, variant)
        except BaseException:
            chosen.close()
            raise
        if activate:
            self.activate(installed.version)
        return serving

    # -- loading -----------------------------------------------------------------------------------------------

    def load(self, installed: InstalledModel, *, remeasure: bool = False) -> tuple[ChosenModel, Variant]:
        """Choose runtime x variant x inference precision for this device, load it and pass the smoke test.

        The backend chain's settings decide how: by measurement (every candidate timed on the golden inputs, the
        fastest that passes its gates serves, the result cached per package, hardware and runtime versions) or by
        preference (the first that passes). With sync.target, a signed choice recorded for that target on identical
        hardware replaces the timing (not the gates). remeasure: ignore cache and record, as `benchmark` does.
        """
        manifest = installed.manifest
        try:
            selection = rank_variants(manifest, self.hw, self.cfg.variant, self.cfg.max_accuracy_drop)
        except PackageRejected as exc:
            self._count(exc, installed.version)
            raise
        self.notes = selection.notes
        for note in selection.notes:
            log.info("variant choice for %s v%d: %s", manifest.name, manifest.version, note)
        chain = self.backend if isinstance(self.backend, BackendChain) else BackendChain([self.backend], self.hw)
        settings = chain.settings
        if self.cfg.benchmark_on_install and not settings.measure:
            settings = dataclasses.replace(settings, measure=True)
        offered = candidates(selection.ranked, chain.offers(), measure=settings.measure)
        if not offered:
            raise self._reject(
                PackageRejected(
                    f"{manifest.name} v{manifest.version}: backend {chain.name} can run none of "
                    + ", ".join(v.precision for v in selection.ranked)
                ),
                installed.version,
            )
        try:
            golden = load_golden(installed.dir / manifest.golden.file, manifest)
        except PackageRejected as exc:
            raise self._reject(exc, installed.version) from exc
        identity = PackageIdentity(
            model=manifest.name,
            version=manifest.version,
            package_sha256=sha256_bytes(manifest.to_bytes()),
            hardware=hardware_fingerprint(self.hw, cpu_model_name()),
            runtimes=chain.runtime_versions(),
        )
        # The golden reference in the task's terms: FP32's top-1, or its detections (gated on F1).
        scorer = scorer_for(golden, manifest, self.cfg.detection_min_agreement)
        try:
            chosen = choose(
                offered,
                lambda c: self._load_checked(installed, c, chain),
                golden.inputs,
                scorer.reference,
                settings,
                identity,
                ChoiceCache(self.cfg.cache_dir / CHOICE_CACHE_DIR),
                remeasure=remeasure,
                recorded=self._recorded_lookup(identity),
                scorer=scorer,
            )
        except PackageRejected as exc:
            raise self._reject(exc, installed.version) from exc
        return chosen, chosen.candidate.variant

    def _recorded_lookup(self, identity: PackageIdentity) -> Callable[[], BenchmarkResult | None] | None:
        """Reads this device's target's recorded choice when choose() asks (a cache miss); None without a target."""
        recorded = self.recorded
        if recorded is None:
            return None
        return lambda: recorded.lookup(identity, self.trusted)

    def _load_checked(self, installed: InstalledModel, candidate: Candidate, chain: BackendChain) -> LoadedModel:
        """Load one candidate and smoke-test it; the model is closed again when it fails."""
        variant = candidate.variant
        try:
            loaded = chain.load_candidate(installed.dir / variant.file, candidate, installed.manifest)
        except BackendError as exc:
            self.variant_failures += 1
            raise PackageRejected(f"{variant.file}: {candidate.backend} cannot load it: {exc}") from exc
        try:
            result = run_smoke_test(
                loaded,
                installed.dir / installed.manifest.golden.file,
                installed.manifest,
                # A reduced inference hint is held to the reduced-precision floor here; the hint gate then
                # requires its top-1 to match FP32's on hint_min_agreement of the samples.
                precision=variant.precision if candidate.hint == F32 else "fp16",
                reduced_min_agreement=self.cfg.smoke_min_agreement,
                detection_min_agreement=self.cfg.detection_min_agreement,
                threshold=variant.metrics.threshold,
            )
        except BaseException as exc:
            loaded.close()
            if isinstance(exc, PackageRejected):
                self.variant_failures += 1
                log.warning("%s of v%d failed its smoke test: %s", candidate.label, installed.version, exc)
            raise
        log.info(
            "%s v%d %s passed the smoke test (%s)", installed.manifest.name, installed.version, candidate.label,
            result.summary,
        )
        return loaded
