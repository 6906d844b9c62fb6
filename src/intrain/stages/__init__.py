"""Pipeline stages. Each is a function of (config, run directory) that writes one stage folder."""
