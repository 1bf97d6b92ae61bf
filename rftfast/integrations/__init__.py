"""Adapters for other trainers, each imported on demand (`from rftfast.integrations.trl import ...`): nothing here
is imported by `rftfast` itself, so their dependencies stay optional.

    trl.py   TRL's `DPOTrainer` with the fused preference loss; search pairs as a TRL preference dataset
"""
