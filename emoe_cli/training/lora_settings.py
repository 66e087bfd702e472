"""The `lora` group's switch and its name in records, without torch or peft (`lora.py`
applies the adapters; `emoe_cli/config/schema.py` types the group, `config/checks.py` checks
it)."""

from __future__ import annotations

from emoe_cli.config.naming import lora_enabled, lora_method  # noqa: F401 (importable from here too)

LORA_MODES = ("standard", "moe_layers", "emoe")
