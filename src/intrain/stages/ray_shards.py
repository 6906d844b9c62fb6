"""A stage's shards on Ray actors (`model.ray`, the 'dist' extra).

`ShardPool.run` hands each shard's work (the same picklable `ShardWork` that `run_shards` calls in
process) to one of `workers` actors and yields each shard's records as it finishes; the driver writes
them, so every shard file is written by one process through the store's atomic write, and the rows are
the in-process rows (a shard's seed comes from its index, not from where or after what it runs).

An actor holds a `RunContext` of its own: the engine the work asks for and, once a shard grades, a
grading pool, both kept across shards and stages until the driver releases its generators.

Failure rule: an actor that dies mid-shard (its process killed, its node lost) is replaced by a new
actor and the shard is redone from the start. A shard leaves the queue only once its records are back
in the driver, so nothing is lost, and only the driver writes, so nothing is written twice. We replace
actors ourselves rather than through `max_restarts`: one rule then covers a crashed process, a lost node
and a spent restart budget, and the driver always knows which shard to redo.

Only `RunContext.shard_pool` imports this module, so a run without a `ray` section never imports ray.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from intrain.config import Config, ConfigError, RayConfig
from intrain.progress import console
from intrain.records import Record
from intrain.stages.common import RunContext, ShardReport, ShardWork

try:
    import ray
    from ray.exceptions import ObjectLostError, RayActorError, RayTaskError
except ImportError as exc:
    raise ConfigError("model.ray: ray is not installed; pip install 'intrain[dist]'") from exc

# A shard that takes its worker down this often (e.g. it runs the node out of memory) fails the stage
# instead of being retried forever.
MAX_ATTEMPTS = 3

Job = tuple[int, list[Any]]  # (shard index, the shard's items)


class ShardWorker:
    """The actor: runs shard work against its own RunContext, rebuilt only when the config changes."""

    def __init__(self, run_dir: str):
        self.run_dir = Path(run_dir)
        self.ctx: RunContext | None = None

    def run(
        self, config: Config, work: ShardWork, index: int, items: list[Any]
    ) -> tuple[Sequence[Record], ShardReport]:
        if self.ctx is None or self.ctx.config != config:
            if self.ctx is not None:
                self.ctx.close()
            self.ctx = RunContext(config=config, run_dir=self.run_dir)
        report = ShardReport()  # no live progress from here: the driver advances its bar per returned shard
        return work(self.ctx, index, items, report), report


class ShardPool:
    """`ray.workers` ShardWorker actors with `ray.resources_per_worker` each, started on first use."""

    def __init__(self, ray_config: RayConfig, run_dir: Path):
        self.ray = ray_config
        self.run_dir = run_dir
        connect(ray_config)
        self._actor_class = ray.remote(ShardWorker).options(max_restarts=0, **actor_options(ray_config))
        self.actors: list[Any] = []

    def _new_actor(self) -> Any:
        return self._actor_class.remote(str(self.run_dir))

    def run(
        self, config: Config, work: ShardWork, jobs: list[Job]
    ) -> Iterator[tuple[int, Sequence[Record], ShardReport]]:
        """Yield (index, records, report) for every job, in the order shards finish."""
        if not self.actors:
            self.actors = [self._new_actor() for _ in range(self.ray.workers)]
        queue = deque(jobs)
        attempts: Counter[int] = Counter()
        running: dict[Any, tuple[int, Job]] = {}  # result ref -> (actor slot, job)
        idle = list(range(len(self.actors)))
        try:
            while queue or running:
                # One shard per actor at a time, so a lost actor takes exactly one shard with it.
                while queue and idle:
                    slot, job = idle.pop(), queue.popleft()
                    running[self.actors[slot].run.remote(config, work, *job)] = (slot, job)
                [ref], _ = ray.wait(list(running), num_returns=1)
                slot, job = running.pop(ref)
                try:
                    records, report = ray.get(ref)
                except RayTaskError as err:
                    # The work raised (bad data, a missing model): the driver raises the same error, one line.
                    raise err.cause from err
                except (RayActorError, ObjectLostError) as err:
                    if isinstance(err, RayActorError) and err.actor_init_failed:
                        raise
                    attempts[job[0]] += 1
                    if attempts[job[0]] >= MAX_ATTEMPTS:
                        raise RuntimeError(f"shard {job[0]} lost its Ray worker {MAX_ATTEMPTS} times") from err
                    console.print(f"[yellow]ray: the worker of shard {job[0]} died; replacing it and redoing the shard")
                    ray.kill(self.actors[slot])
                    self.actors[slot] = self._new_actor()
                    queue.appendleft(job)
                else:
                    yield job[0], records, report
                idle.append(slot)
        except BaseException:
            # Shards may still be running: stop them; the next run starts fresh actors.
            self.close()
            raise

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def actor_options(ray_config: RayConfig) -> dict[str, Any]:
    """`resources_per_worker` as actor options: Ray takes CPU and GPU only as num_cpus and num_gpus."""
    resources = dict(ray_config.resources_per_worker)
    options: dict[str, Any] = {}
    if "CPU" in resources:
        options["num_cpus"] = resources.pop("CPU")
    if "GPU" in resources:
        options["num_gpus"] = resources.pop("GPU")
    if resources:
        options["resources"] = resources
    return options


def connect(ray_config: RayConfig) -> None:
    """Join (or, for 'local', start) the cluster, unless this process already has (a test, a notebook)."""
    if not ray.is_initialized():
        address = ray_config.address
        try:
            if address == "local":
                ray.init(address="local", include_dashboard=False)
            else:
                ray.init(address=address)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise ConfigError(f"model.ray.address={address!r}: {str(err).splitlines()[0]}") from err
    # Actors that do not fit wait for resources (an autoscaler may add nodes); say so rather than hang silently.
    available = ray.cluster_resources()
    short = {
        name: amount * ray_config.workers
        for name, amount in ray_config.resources_per_worker.items()
        if available.get(name, 0) < amount * ray_config.workers
    }
    if short:
        console.print(
            f"[yellow]ray: {ray_config.workers} workers need {short}, the cluster has "
            f"{ {name: available.get(name, 0) for name in short} }; the others wait for resources"
        )
