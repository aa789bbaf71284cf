"""The packaged config groups (``model/``, ``data/``, ``peft/``, ``train/``) Hydra composes from."""
