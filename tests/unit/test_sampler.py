"""The scheduler and its isolation of collectors, with sources that fail or hang on purpose."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from exporter.collectors import CollectorDef
from exporter.metrics import Families, Writer, declare
from exporter.sampler import Sampler, SnapshotStore
from exporter.settings import Settings
from exporter.snapshot import CollectorState, Snapshot
from exporter.tick import Tick
from tests.helpers import Sample, parse, select, value

VALUE = declare(
    "test_source_value", "gauge", "A test source's value.", ("collector",), collector="test"
)


class Steady:
    def __init__(self) -> None:
        self.reads = 0

    def read(self, tick: Tick) -> object:
        self.reads += 1
        return self.reads

    def close(self) -> None:
        pass


class Failing(Steady):
    def __init__(self, message: str = "boom") -> None:
        super().__init__()
        self.message = message

    def read(self, tick: Tick) -> object:
        self.reads += 1
        raise OSError(self.message)


class Hanging(Steady):
    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def read(self, tick: Tick) -> object:
        self.reads += 1
        run = self.reads
        self.release.wait(30)
        return run


class RecordingStore(SnapshotStore):
    def __init__(self, writers: list[Writer]) -> None:
        super().__init__(writers)
        self.published: list[CollectorState] = []

    def publish(self, state: CollectorState) -> None:
        self.published.append(state)
        super().publish(state)


def definition(name: str) -> CollectorDef:
    def write(snapshot: Snapshot, out: Families) -> None:
        facts = snapshot.current(name, int)
        if facts is not None:
            out.add(VALUE, facts, name)

    return CollectorDef(
        name,
        name,
        facts=int,
        source=lambda s: Steady(),
        writer=lambda s: write,
        report=lambda s: [],
    )


@pytest.fixture
def started() -> Iterator[list[Sampler]]:
    samplers: list[Sampler] = []
    yield samplers
    for s in samplers:
        s.stop()


def start(started: list[Sampler], settings: Settings, **sources: Steady) -> Sampler:
    sampler = Sampler(((definition(n), s) for n, s in sources.items()), settings)
    sampler.start()
    started.append(sampler)
    return sampler


def test_failure_is_isolated_and_logged_once(
    started: list[Sampler], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good, bad = Steady(), Failing()
    sampler = start(started, Settings(sample_interval=0.05), good=good, bad=bad)
    assert sampler.store.wait(lambda s: good.reads >= 5 and bad.reads >= 5, timeout=10)
    samples = parse(sampler.store.exposition.text)
    assert value(samples, "docker_host_collector_success", collector="good") == 1
    assert value(samples, "docker_host_collector_success", collector="bad") == 0
    assert value(samples, "docker_host_test_source_value", collector="good") >= 1
    failed = [r for r in caplog.records if r.getMessage() == "collector failed"]
    assert len(failed) == 1
    assert failed[0].__dict__["reason"] == "boom"


def test_a_new_reason_is_logged_and_recovery_too(
    started: list[Sampler], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    flaky = Failing("first")
    sampler = start(started, Settings(sample_interval=0.05), flaky=flaky)
    assert sampler.store.wait(lambda s: flaky.reads >= 3, timeout=10)
    flaky.message = "second"
    reads = flaky.reads
    assert sampler.store.wait(lambda s: flaky.reads >= reads + 3, timeout=10)
    flaky.read = lambda tick: 7  # type: ignore[method-assign]
    assert sampler.store.wait(lambda s: s.collectors["flaky"].success, timeout=10)
    messages = [(r.getMessage(), r.__dict__.get("reason")) for r in caplog.records]
    assert messages.count(("collector failed", "first")) == 1
    assert messages.count(("collector failed", "second")) == 1
    assert ("collector recovered", None) in messages


def test_a_hung_source_times_out_blocks_nothing_and_is_not_redispatched(
    started: list[Sampler],
) -> None:
    steady, hung = Steady(), Hanging()
    settings = Settings(sample_interval=0.1, sample_timeout=0.05)
    defs = [definition("steady"), definition("hung")]
    store = RecordingStore([w for d in defs for w in d.writers(settings)])
    sampler = Sampler(zip(defs, (steady, hung), strict=True), settings, store)
    sampler.start()
    started.append(sampler)
    try:
        assert sampler.store.wait(
            lambda s: "hung" in s.collectors and not s.collectors["hung"].success, timeout=10
        )
        assert sampler.store.snapshot.collectors["hung"].error == "timed out after 0.05s"
        assert sampler.store.wait(lambda s: steady.reads >= 10, timeout=10)
        assert hung.reads == 1  # still stuck: never given a second job
    finally:
        hung.release.set()
    # Once it returns, the next interval runs it again; the late answer of run 1 is dropped.
    assert sampler.store.wait(lambda s: s.collectors["hung"].success, timeout=10)
    answers = [s.facts for s in store.published if s.name == "hung" and s.success]
    assert answers and 1 not in answers


def test_per_collector_interval(started: list[Sampler]) -> None:
    fast, slow = Steady(), Steady()
    settings = Settings(sample_interval=0.05, collector_intervals={"slow": 3600})
    sampler = start(started, settings, fast=fast, slow=slow)
    assert sampler.store.wait(lambda s: fast.reads >= 10, timeout=10)
    assert slow.reads == 1


def test_timeout_is_always_shorter_than_the_interval() -> None:
    settings = Settings(sample_interval=2, sample_timeout=10, collector_intervals={"x": 60})
    assert settings.timeout("y") == pytest.approx(1.6)
    assert settings.timeout("x") == 10


def test_sample_once_reports_a_hung_source_as_timed_out() -> None:
    hung = Hanging()
    sampler = Sampler(
        [(definition("hung"), hung), (definition("ok"), Steady())],
        Settings(sample_interval=0.5, sample_timeout=0.1),
    )
    started_at = time.monotonic()
    snapshot = sampler.sample_once()
    hung.release.set()
    assert time.monotonic() - started_at < 5
    assert snapshot.collectors["ok"].success
    assert snapshot.collectors["hung"].error == "timed out after 0.1s"


def test_a_snapshot_is_rendered_when_first_asked_for_once_and_never_served_stale() -> None:
    """Collectors publish one after another and far more often than they are scraped: nothing
    renders until a reader asks, the first reader renders the newest snapshot once, and every
    reader until the next publish gets those bytes, concurrent ones included."""
    renders: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def write(snapshot: Snapshot, out: Families) -> None:
        renders.append(len(snapshot.collectors))
        if len(snapshot.collectors) == 4:
            started.set()
            release.wait(10)  # a slow render, for the concurrent readers below
        for name in sorted(snapshot.collectors):
            out.add(VALUE, 1, name)

    store = SnapshotStore([Writer(write, cached=False)])
    for name in ("a", "b", "c"):
        store.publish(CollectorState(name, True, 0.01, time.time(), facts=name))
    assert renders == []  # published, not asked for: not rendered
    first = store.exposition
    assert value(parse(first.text), "docker_host_test_source_value", collector="c")
    assert renders == [3]
    assert store.exposition is first  # asked again, nothing new: the same bytes
    assert renders == [3]

    store.publish(CollectorState("d", True, 0.01, time.time(), facts="d"))
    with ThreadPoolExecutor(4) as pool:
        readers = [pool.submit(lambda: store.exposition) for _ in range(4)]
        assert started.wait(10)
        release.set()
        served = {id(reader.result(10)) for reader in readers}
    assert renders == [3, 4]  # four readers of one new snapshot: one render
    assert len(served) == 1
    assert value(parse(store.exposition.text), "docker_host_test_source_value", collector="d")


OTHER = declare(
    "test_other_value", "gauge", "Another test source's value.", ("collector",), collector="test"
)


def test_a_writer_that_raises_fails_its_collector_not_the_scrape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Facts one collector's writer cannot format leave its families out and report it failed
    (success 0: the alerts that wait for it to judge hold), logged once per reason with the
    traceback. The other collectors and every scrape go on, and once it writes again nothing
    of the failed render is left in what the renderer keeps."""
    caplog.set_level(logging.INFO)

    def fragile(snapshot: Snapshot, out: Families) -> None:
        facts = snapshot.current("fragile", int)
        if facts is not None:
            if facts < 0:
                raise ValueError(f"cannot format {facts}")
            out.add(VALUE, facts, "fragile")

    def steady(snapshot: Snapshot, out: Families) -> None:
        facts = snapshot.current("steady", int)
        if facts is not None:
            out.add(OTHER, facts, "steady")

    assert definition("fragile").writers(Settings())[0].collector == "fragile"
    store = SnapshotStore(
        [Writer(fragile, collector="fragile"), Writer(steady, collector="steady")]
    )

    def scrape(fragile_facts: int) -> list[Sample]:
        store.publish(CollectorState("fragile", True, 0.01, time.time(), facts=fragile_facts))
        store.publish(CollectorState("steady", True, 0.01, time.time(), facts=7))
        return parse(store.exposition.text)

    def failures() -> list[tuple[str, object]]:
        return [
            (r.getMessage(), r.__dict__.get("reason"))
            for r in caplog.records
            if r.getMessage().startswith("metrics")
        ]

    samples = scrape(1)
    assert value(samples, "docker_host_test_source_value", collector="fragile") == 1
    assert value(samples, "docker_host_collector_success", collector="fragile") == 1

    for facts in (-1, -1, -2):
        samples = scrape(facts)
        assert select(samples, "docker_host_test_source_value") == []
        assert value(samples, "docker_host_test_other_value", collector="steady") == 7
        assert value(samples, "docker_host_collector_success", collector="fragile") == 0
        assert value(samples, "docker_host_collector_success", collector="steady") == 1
    assert failures() == [
        ("metrics not rendered", "ValueError: cannot format -1"),
        ("metrics not rendered", "ValueError: cannot format -2"),
    ]
    first = next(r for r in caplog.records if r.getMessage() == "metrics not rendered")
    assert first.exc_info is not None and first.__dict__["collector"] == "fragile"

    # The same facts as the first render: its output is written again, not taken from a
    # cache the failed render emptied.
    samples = scrape(1)
    assert value(samples, "docker_host_test_source_value", collector="fragile") == 1
    assert value(samples, "docker_host_collector_success", collector="fragile") == 1
    assert failures()[-1] == ("metrics rendered again", None)
