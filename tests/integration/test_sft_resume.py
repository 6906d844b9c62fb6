"""`train_sft` on the tiny model: an interrupted run resumes from its last checkpoint, and LoRA saving.

8 rows, batch 2 (no accumulation), 2 epochs: 8 optimizer steps, a checkpoint after each. The first
run is killed right after checkpoint-3 is written, and a half-written checkpoint-4 (everything but
trainer_state.json) is left beside it; the re-run must resume from checkpoint-3, train steps 4..8
only and end on the same weights as an uninterrupted run (Trainer restores optimizer, scheduler and
RNG state and skips the batches already seen in the interrupted epoch).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from intrain.config import LoraConfig, ModelConfig, SFTConfig
from intrain.training.sft import sft_row, train_sft

STEPS = 8  # 8 rows / batch 2 x 2 epochs


class Interrupted(Exception):
    pass


def make_callback(kill_after_save: int | None = None):
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Counts the optimizer steps this trainer runs; optionally dies once checkpoint-N is saved."""

        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

        def on_save(self, args, state, control, **kwargs):
            if kill_after_save is not None and state.global_step == kill_after_save:
                raise Interrupted  # like a kill between steps, after the checkpoint is on disk

    return Probe()


def with_callback(monkeypatch, callback) -> None:
    """Make `train_sft` build its SFTTrainer with `callback` attached (it imports trl.SFTTrainer late)."""
    import trl

    real = trl.SFTTrainer

    class ProbedSFTTrainer(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(callback)

    monkeypatch.setattr(trl, "SFTTrainer", ProbedSFTTrainer)


def half_written_copy(checkpoint: Path, name: str) -> None:
    """A checkpoint killed mid-save: every file but trainer_state.json, which Trainer writes last."""
    half = checkpoint.parent / name
    half.mkdir()
    for f in checkpoint.iterdir():
        if f.is_file() and f.name != "trainer_state.json":
            shutil.copy(f, half / f.name)


def load_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def rows(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [
        (f"What is {a} + {b}?", f"Step 1: {a} + {b} = {a + b}, so the answer is \\boxed{{{a + b}}}.")
        for a, b in [(3, 4), (12, 7), (25, 30), (8, 9), (41, 2), (16, 16), (7, 70), (99, 1)]
    ]
    return [sft_row(tokenizer, "{problem}", problem, target) for problem, target in examples]


MODEL = ModelConfig(path="unused", device="cpu")
SFT = SFTConfig(
    effective_batch_size=2, per_device_batch_size=2, epochs=2, save_steps=1, learning_rate=1e-3, max_length=512
)


@pytest.fixture(scope="module")
def uninterrupted(rows, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft-uninterrupted")
    result = train_sft(rows, MODEL, SFT, tiny_model_dir, None, out)
    return out, result


def test_uninterrupted_run(uninterrupted):
    out, result = uninterrupted
    assert result["steps"] == STEPS and result["resumed"] is False
    assert result["path"] == str(out / "model")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == list(range(1, STEPS + 1))
    kept = sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*"))
    assert kept == [f"checkpoint-{STEPS}"]  # keep_checkpoints=0: one resume point while training


def test_keep_checkpoints_keeps_that_many_resume_points(rows, tiny_model_dir, tmp_path):
    train_sft(rows[:4], MODEL, SFT, tiny_model_dir, None, tmp_path, keep_checkpoints=2)
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*"))
    assert kept == ["checkpoint-3", "checkpoint-4"]


def test_interrupted_run_resumes(rows, tiny_model_dir, tmp_path, monkeypatch, uninterrupted):
    from transformers import AutoModelForCausalLM

    first = make_callback(kill_after_save=3)
    with_callback(monkeypatch, first)
    with pytest.raises(Interrupted):
        train_sft(rows, MODEL, SFT, tiny_model_dir, None, tmp_path)
    assert first.steps == [1, 2, 3]
    assert (tmp_path / "checkpoints" / "checkpoint-3").is_dir()
    assert not (tmp_path / "model").exists()
    # transformers' resume_from_checkpoint=True would pick checkpoint-4 and fail on it every re-run.
    half_written_copy(tmp_path / "checkpoints" / "checkpoint-3", "checkpoint-4")

    monkeypatch.undo()
    second = make_callback()
    with_callback(monkeypatch, second)
    result = train_sft(rows, MODEL, SFT, tiny_model_dir, None, tmp_path)
    assert result["resumed"] is True and result["steps"] == STEPS
    assert second.steps == [4, 5, 6, 7, 8]  # continued from checkpoint-3, nothing redone
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*"))
    assert kept == [f"checkpoint-{STEPS}"]

    # The log holds the restored history of steps 1-3 plus the new steps, each step once.
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == list(range(1, STEPS + 1))

    model = AutoModelForCausalLM.from_pretrained(result["path"])
    assert model.config.num_hidden_layers == 2
    ours, base = load_weights(Path(result["path"])), load_weights(Path(tiny_model_dir))
    assert ours.keys() == base.keys()
    assert any(not ours[k].equal(base[k]) for k in ours)

    # Same data order, optimizer, schedule and RNG: the same weights as the uninterrupted run (bitwise
    # equal on CPU in practice; the tolerance only leaves room for kernel/threading differences).
    reference_dir, _reference = uninterrupted
    theirs = load_weights(reference_dir / "model")
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max().item() < 1e-5, name
    ref_log = [json.loads(line) for line in (reference_dir / "train_log.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in log if "loss" in e] == pytest.approx(
        [e["loss"] for e in ref_log if "loss" in e], abs=1e-5
    )


LORA_SFT = SFT.model_copy(update={"epochs": 1, "save_steps": 100, "lora": LoraConfig(r=4, alpha=8)})


def test_lora_merged(rows, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    result = train_sft(rows[:4], MODEL, LORA_SFT, tiny_model_dir, None, tmp_path)
    assert result["path"] == str(tmp_path / "model") and not (tmp_path / "adapter").exists()
    assert not (tmp_path / "model" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(result["path"])
    state = model.state_dict()
    assert not any("lora_" in k for k in state)
    ours, base = load_weights(tmp_path / "model"), load_weights(Path(tiny_model_dir))
    assert ours.keys() == base.keys()
    # The merged adapter moved exactly the attention projections it targeted.
    changed = {k for k in ours if not ours[k].equal(base[k])}
    assert changed and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)


def test_lora_adapter_only(rows, tiny_model_dir, tmp_path):
    result = train_sft(rows[:4], MODEL, LORA_SFT, tiny_model_dir, None, tmp_path, merge_lora=False)
    adapter = tmp_path / "adapter"
    assert result["path"] == str(adapter) and not (tmp_path / "model").exists()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert (adapter / "adapter_model.safetensors").exists()
