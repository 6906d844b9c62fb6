"""Config files for the tiny test model."""


def write_config(tmp_path, model_dir: str, **sections) -> str:
    """A tiny-model config file: common settings, each given section merged over them."""
    import yaml

    cfg = {
        "model": {"path": model_dir, "device": "cpu", "batch_size": 8},
        "data": {
            "train": {"kind": "arithmetic", "size": 4, "seed": 11},
            "eval": {"kind": "arithmetic", "size": 2, "seed": 12},
            "prompt_template": "{problem}\nPut your final answer within \\boxed{}.",
        },
        "grading": {"workers": 1},
        "output": {"run_dir": str(tmp_path / "run")},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
