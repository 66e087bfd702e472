"""Write the composed config (unresolved YAML) and run identity of every shipped preset, so a
restructuring of conf/ or emoe_cli/config/schema.py can be diffed against the commit before it.

    PYTHONPATH=. python scripts/dump_configs.py /tmp/before   # on the old commit
    PYTHONPATH=. python scripts/dump_configs.py /tmp/after    # on the new one
    diff -r /tmp/before /tmp/after                            # empty: nothing moved
"""

import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import emoe_cli.cli.train  # noqa: F401 (registers the resolvers the run folder names use)
from emoe_cli.config.checks import available_choices
from emoe_cli.sweep.identity import run_identity

GROUPS = ("experiment", "method", "model", "task", "moe", "gate", "profile", "lora", "trainer",
          "ingredient", "debug", "hparams_search", "logger")
MIXED = {  # a few combinations the single presets do not reach
    "domainbed_b_pacs": ["experiment=domainbed_vit_b", "task=pacs"],
    "extra": ["+extra.note=hello", "profile=clean", "gate=cosine", "moe=noisy"],
    "ints_in_floats": ["trainer.weight_decay=0", "trainer.lr=1", "gate=learned", "gate.noise=0"],
    "gmoe_clean": ["method=gmoe", "profile=clean", "experiment=glue_gpt2"],
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cases = {"config:default": ("config", []), "eval:default": ("eval", []),
             "inspect:default": ("inspect", [])}
    for group in GROUPS:
        for choice in available_choices(group):
            cases[f"config:{group}={choice}"] = ("config", [f"{group}={choice}"])
    cases |= {f"config:{name}": ("config", overrides) for name, overrides in MIXED.items()}
    identities = {}
    with initialize_config_module("emoe_cli.conf", version_base="1.3"):
        for name, (config_name, overrides) in cases.items():
            try:
                cfg = compose(config_name, overrides=overrides)
                text = OmegaConf.to_yaml(cfg)
                identities[name] = run_identity(OmegaConf.to_container(cfg, resolve=True),
                                                cfg.sweep.identity_ignore)
            except Exception as error:  # e.g. a DomainBed grid without its task
                text = identities[name] = f"error: {type(error).__name__}"
            (out / f"{name}.yaml").write_text(text)
    (out / "identities.json").write_text(json.dumps(identities, indent=1, sort_keys=True))
    print(f"{len(cases)} configs under {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
