"""Training with TRL: SFT (`training.sft`) and GRPO (`training.grpo`), the arguments they share
(`training.args`) and the one rule for which checkpoint a re-run resumes from
(`training.checkpoints`). Callers import the module they need; importing this package loads
neither torch nor TRL."""
