"""`intrain report RUN_DIR`: one self-contained HTML page (and a Markdown summary) of what a run did,
and the forwarding of a run's metrics to the trackers of `output.report_to`.

    collect.py   what the run's stage folders say (funnel, first-error locations, RL logs, pass@k, gallery)
    model.py     numbers that need a model: per-token NLL of SFT data, next-token entropy before/after SFT
    figures.py   matplotlib figures as base64 PNG data URIs (the page says so when matplotlib is missing)
    build.py     the sections, the Jinja page (templates/report.html.j2) and the Markdown summary
    trackers.py  tensorboard / wandb / trackio sinks for RUN/metrics.jsonl lines

Importing this package imports nothing heavy: the store reaches `trackers` through it.
"""
