"""DD-PPO and GRPO on torch.distributed (gloo here): the 2-rank update is the 1-rank update over the union of both
ranks' rollouts, parameters stay identical, torchrun runs resume after a kill, and a run directory has one writer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flare_training.distributed import GradientSync, Ranks, learner_device
from flare_training.grpo import GRPOConfig, group_advantages, grpo_update, select_rows, sequence_logprob
from flare_training.inputs import ACTION_MASK, ObservationAdapter, gridhouse_cameras, gridhouse_tokenizer, to_device
from flare_training.model import ActorCritic, ModelConfig
from flare_training.ppo import Episodes, PPOConfig, ReturnNormalizer, adam, build_sequences, ppo_update

ENVS, T = 4, 6


def tiny_model() -> ActorCritic:
    torch.manual_seed(0)
    adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
    config = ModelConfig(d_model=32, layers=1, heads=2, vocab_size=len(adapter.tokenizer))
    return ActorCritic(config, adapter.camera_shapes)


def synthetic_batch(model: ActorCritic, seed: int) -> dict:
    """A rollout's PPO batch of ENVS whole rows (no prefix), old log-probs from the model itself."""
    g = torch.Generator().manual_seed(seed)
    rollout = {
        "visual": torch.randn(T, ENVS, model.visual.out_dim, generator=g),
        "goal": torch.randint(2, 10, (T, ENVS, model.config.max_goal_tokens), generator=g),
        "prev_action": torch.randint(0, 20, (T, ENVS), generator=g),
        "holding": torch.zeros(T, ENVS, dtype=torch.long),
        "step": torch.arange(T)[:, None].expand(T, ENVS).clone(),
    }
    last = {k: v[-1] for k, v in rollout.items()}
    dones = torch.zeros(T, ENVS)
    seq = build_sequences([[] for _ in range(ENVS)], rollout, dones, last)
    index = seq.pop("index")
    action = torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (ENVS, T), generator=g)]  # gridhouse-valid actions
    with torch.no_grad():
        logits = model.actor.sequence(seq)["logits"]
        logp = torch.log_softmax(logits[torch.arange(ENVS)[:, None], index[:, :-1]].masked_fill(~ACTION_MASK, -1e9), -1)
    old = logp.gather(2, action[..., None])[..., 0] + 0.05 * torch.randn(ENVS, T, generator=g)
    return {"seq": seq, "index": index, "action": action, "old_logprob": old,
            "advantages": torch.randn(ENVS, T, generator=g), "returns": torch.randn(ENVS, T, generator=g)}  # fmt: skip


def rows(batch: dict, keep: slice) -> dict:
    return {
        "seq": {k: v[keep] for k, v in batch["seq"].items()},
        **{k: v[keep] for k, v in batch.items() if k != "seq"},
    }


CONFIG = PPOConfig(epochs=2, minibatches=1)


def normalized_returns(batch: dict, norm: ReturnNormalizer) -> dict:
    """The batch with its returns on a success-reward scale, then normalised (`ppo --normalize-returns`): each
    rank's statistics must be the union's, or the ranks' targets differ from the one-rank run's."""
    returns = 10 * batch["returns"] + 3
    norm.update(returns)
    return {**batch, "returns": norm.normalize(returns)}


def join_group(rank: int, world: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)


def flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def send_params(params, rank: int, world: int, queue) -> None:
    """Every rank's parameters, to the test through rank 0; then leave the group and end the process at once.
    Its work is done: ending through the interpreter's teardown instead now and then aborts there (SIGABRT,
    "terminate called without an active exception", seen once in about ten runs of this file), which would fail
    the test over nothing it checks."""
    mine = flat(params)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    if rank == 0:
        queue.put([g.tolist() for g in gathered])
        queue.close()
        queue.join_thread()  # in the pipe before the process ends
    dist.destroy_process_group()
    os._exit(0)


def two_ranks(target, updates: int) -> list[list[float]]:
    """`target(rank, 2, port, updates, queue)` in two spawned processes; their parameters at the end, which
    must be bit for bit the same: every rank applied the same all-reduced step."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=target, args=(r, 2, port, updates, queue)) for r in range(2)]
    for p in procs:
        p.start()
    rank_params = queue.get(timeout=240)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert rank_params[0] == rank_params[1]
    return rank_params


def run_rank(rank: int, world: int, port: int, updates: int, queue) -> None:
    join_group(rank, world, port)
    torch.manual_seed(100 + rank)  # the shuffles differ per rank; with one minibatch they do not matter
    model = tiny_model()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, 1e-3)  # the optimiser every rank of a run steps
    sync = GradientSync(params, Ranks(rank, world))
    norm = ReturnNormalizer(Ranks(rank, world))
    half = ENVS // world
    for update in range(updates):
        batch = rows(synthetic_batch(model, seed=update), slice(rank * half, (rank + 1) * half))
        batch = normalized_returns(batch, norm)
        ppo_update(model, optimizer, params, batch, CONFIG, ACTION_MASK, False, sync=sync, batch_total=ENVS)
    send_params(params, rank, world, queue)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_take_the_one_rank_step_over_the_union_and_stay_identical():
    updates = 3
    rank_params = two_ranks(run_rank, updates)

    model = tiny_model()  # one process, both halves at once
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, 1e-3)  # the optimiser every rank of a run steps
    norm = ReturnNormalizer()
    for update in range(updates):
        batch = normalized_returns(synthetic_batch(model, seed=update), norm)
        ppo_update(model, optimizer, params, batch, CONFIG, ACTION_MASK, False)
    single = flat(params)
    assert (torch.tensor(rank_params[0]) - single).abs().max().item() <= 1e-6
    assert (single - flat(tiny_model().parameters())).abs().max() > 1e-4


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
            "flare_training", *args]  # fmt: skip


def ppo_args(out, init, updates: int) -> list[str]:
    return ["ppo", "--out", str(out), "--init", str(init), "--num-envs", "2", "--rollout", "8", "--env-workers", "0",
            "--total-env-steps", str(2 * 2 * 8 * updates), "--critic-warmup-steps", "0", "--eval-every", "1000000000",
            "--eval-episodes", "1", "--final-eval-episodes", "0", "--threads", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from flare_training.checkpoint import save_checkpoint

    adapter = ObservationAdapter(gridhouse_tokenizer(), gridhouse_cameras())
    path = tmp_path_factory.mktemp("init") / "checkpoint.pt"
    return save_checkpoint(path, tiny_model(), adapter, kind="bc")


def test_torchrun_two_ranks_train_resume_after_a_kill_and_keep_one_writer(tmp_path, tiny_checkpoint):
    out = tmp_path / "run"
    metrics = out / "metrics.jsonl"
    proc = subprocess.Popen(torchrun(*ppo_args(out, tiny_checkpoint, 400)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 240
        while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.5)
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        assert rows[-1]["ranks"] == 2 and all(r["param_spread"] == 0.0 for r in rows)
        assert rows[0]["env_steps"] == 2 * 2 * 8  # the global batch: both ranks' envs
        second = subprocess.run([sys.executable, "-m", "flare_training", *ppo_args(out, tiny_checkpoint, 400)],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert second.returncode == 2 and "is being written by a running trainer" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        proc.send_signal(signal.SIGTERM)  # torchrun stops its ranks (they run in sessions of their own)
        proc.wait(timeout=60)
    done = max(json.loads(line)["update"] for line in metrics.read_text().splitlines())
    resumed = subprocess.run(torchrun(*ppo_args(out, tiny_checkpoint, done + 2)), capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"from update {done}" in resumed.stdout or f"from update {done - 1}" in resumed.stdout
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert rows[-1]["update"] == done + 2 and rows[-1]["param_spread"] == 0.0


def test_torchrun_bc_splits_the_demonstrations_and_keeps_the_ranks_identical(tmp_path):
    out = tmp_path / "bc"
    done = subprocess.run(torchrun("bc", "--out", str(out), "--demos", "6", "--workers", "1", "--epochs", "2",
                                   "--batch-episodes", "2", "--eval-episodes", "0"),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    history = json.loads((out / "bc_history.json").read_text())
    assert len(history) == 2 and all(row["param_spread"] == 0.0 for row in history)
    from flare_training.bc import Demos

    shards = [Demos.load(out / name) for name in ("demos.npz", "demos_rank1.npz")]
    assert [len(d) for d in shards] == [3, 3] and shards[0].goal.tolist() != shards[1].goal.tolist()


def test_torchrun_grpo_keeps_the_ranks_identical(tmp_path, tiny_checkpoint):
    out = tmp_path / "grpo"
    done = subprocess.run(torchrun("grpo", "--out", str(out), "--init", str(tiny_checkpoint), "--num-envs", "4",
                                   "--group-size", "2", "--groups", "2", "--env-workers", "0", "--threads", "1",
                                   "--no-dynamic-sampling", "--total-env-steps", "300", "--eval-every", "1000000000",
                                   "--eval-episodes", "1", "--final-eval-episodes", "0"),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) >= 2 and all(r["ranks"] == 2 and r["param_spread"] == 0.0 for r in rows)
    assert rows[-1]["env_steps"] >= 300


def grpo_batch(model: ActorCritic, seed: int):
    """8 whole trajectories (two groups of 4) of random inputs, old log-probs from the model itself."""
    g = torch.Generator().manual_seed(seed)
    n, length = 8, 7
    steps = {
        "visual": torch.randn(n, length, model.visual.out_dim, generator=g),
        "goal": torch.randint(2, 10, (n, length, model.config.max_goal_tokens), generator=g),
        "prev_action": torch.randint(0, 20, (n, length), generator=g),
        "holding": torch.zeros(n, length, dtype=torch.long),
        "step": torch.arange(length)[None].expand(n, length).clone(),
        "action": torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (n, length), generator=g)],
    }
    batch = Episodes(steps, torch.randint(2, length + 1, (n,), generator=g), torch.rand(n, generator=g) < 0.5,
                     ["objectnav"] * n, 0, torch.zeros(n, dtype=torch.bool))  # fmt: skip
    advantages = group_advantages(batch.success.view(2, 4)).flatten()
    old = sequence_logprob(model, steps, batch.length, GRPOConfig().temperature, ACTION_MASK)
    return batch, advantages, old


GRPO_CONFIG = GRPOConfig(minibatches=1, max_grad_norm=1e9)  # no clipping: it would hide a wrong gradient scale


def run_grpo_rank(rank: int, world: int, port: int, updates: int, queue) -> None:
    join_group(rank, world, port)
    model = tiny_model()
    params = [p for p in model.actor.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)  # not Adam: it would hide a wrong gradient scale
    sync = GradientSync(params, Ranks(rank, world))
    mine = torch.arange(rank * 4, rank * 4 + 4)  # one group each
    for update in range(updates):
        batch, advantages, old = grpo_batch(model, seed=update)
        grpo_update(model, optimizer, params, select_rows(batch, mine), advantages[mine], old[mine], GRPO_CONFIG,
                    ACTION_MASK, sync=sync, batch_total=8)  # fmt: skip
    send_params(params, rank, world, queue)


def test_two_grpo_ranks_take_the_one_rank_step_over_both_groups():
    """GRPO's loss is a mean over trajectories: two ranks with one group each, gradients scaled by their share
    and summed, take the step one process takes over both groups."""
    updates = 3
    rank_params = two_ranks(run_grpo_rank, updates)

    model = tiny_model()  # one process, both groups at once
    params = [p for p in model.actor.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)  # not Adam: it would hide a wrong gradient scale
    for update in range(updates):
        batch, advantages, old = grpo_batch(model, seed=update)
        grpo_update(model, optimizer, params, batch, advantages, old, GRPO_CONFIG, ACTION_MASK)
    single = flat(params)
    assert (torch.tensor(rank_params[0]) - single).abs().max().item() <= 1e-6
    assert (single - flat(tiny_model().actor.parameters())).abs().max() > 1e-4


def test_the_learner_device_is_the_cpu_or_this_ranks_own_gpu(monkeypatch):
    assert learner_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="cpu or cuda"):
        learner_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU.*use --device cpu"):
        learner_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert learner_device("cuda", local_rank=1) == torch.device("cuda", 1)  # torchrun: one GPU per local rank
    with pytest.raises(ValueError, match="local rank 2 has no GPU.*nproc-per-node"):
        learner_device("cuda", local_rank=2)


def test_model_inputs_move_to_the_learner_device_nested_and_whole():
    batch = {"frames": {"nav": torch.zeros(2, 3, 4, 4)}, "goal": torch.ones(2, 5, dtype=torch.long)}
    moved = to_device(batch, torch.device("meta"))
    assert moved["frames"]["nav"].device.type == "meta" and moved["goal"].device.type == "meta"
    assert moved["goal"].dtype == torch.long and batch["goal"].device.type == "cpu"  # the original is kept
