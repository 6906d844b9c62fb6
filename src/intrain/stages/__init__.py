"""Pipeline stages, one module each. A stage module exposes `run(ctx, ...) -> Stage`: it opens its
folder through `RunContext.open_stage` with the inputs it declares in `intrain.fingerprints`, returns
at once when that folder is complete, otherwise writes the missing shards of its typed records
(`intrain.records`) and finishes the manifest with its counts."""
