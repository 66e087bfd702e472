"""The command line checked before Hydra runs it: one line for a bad override, before torch.

Hydra reports a misspelt key or preset over many lines, accepts any `+key`, and a bad value
shows only once the run has made its folder. Here the config is composed as the run will
compose it (Hydra's compose API, no model code) and checked: overrides that do not parse,
unknown presets, keys the config lacks (with the closest names), `+` keys no preset knows
(unless under `+extra.`), then, for a run, the values (`config.validate`). A multirun checks
each job of a sweep of up to MAX_JOBS jobs; a larger one, every swept value at least once.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import itertools
import re
import sys
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources

from omegaconf import DictConfig

from emoe_cli.config.checks import check_group_choices, config_groups
from emoe_cli.errors import UserError

USER_ERROR_EXIT = 2
FREE_FORM = "extra"  # `+extra.<name>=...`: the user's own notes, recorded with the config
MAX_JOBS = 32  # a sweep this small is checked job by job
CONFIG_MODULE = "emoe_cli.conf"


def exit_on_bad_command_line(prog: str, argv: list[str], config_name: str,
                             check_values: Callable[[DictConfig], None]) -> None:
    """Print `<prog>: error: ...` and exit 2 if `command_line_problem` finds one."""
    problem = command_line_problem(argv, config_name, check_values)
    if problem:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def command_line_problem(argv: list[str], config_name: str,
                         check_values: Callable[[DictConfig], None]) -> str | None:
    """The first mistake in a Hydra command line as one line, or None.

    `--help`, shell completion and a user's own config folder are Hydra's alone; `--cfg`
    and `--info` get the name checks, a run or multirun the value checks too.
    """
    args = hydra_arguments(argv)
    if isinstance(args, str) or args is None:
        return args
    if args.help or args.hydra_help or args.shell_completion or (
            args.config_dir or args.config_path or args.config_name
            or args.experimental_rerun):
        return None
    if sum(bool(flag) for flag in (args.run, args.multirun, args.cfg, args.info)) > 1:
        return "--run, --multirun, --cfg and --info exclude each other; valid: one of them"
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for text in args.overrides:
        try:
            parser.parse_override(text)
        except Exception as error:
            why = " ".join(str(error).split())
            return (f"{text} does not parse ({why}); valid: key=value, group=choice, "
                    "+key=value, ~key, and for lists key=[a,b]")
    overrides = parser.parse_overrides(args.overrides)
    if any(o.key_or_group.startswith("hydra.searchpath") for o in overrides):
        return None  # the user's own presets: Hydra finds and reports them
    problem = check_group_choices(args.overrides)
    if problem:
        return problem
    for override in overrides:
        problem = added_key_problem(override)
        if problem:
            return problem
    return compose_problem(config_name, overrides, args.multirun,
                           None if args.cfg or args.info else check_values)


def hydra_arguments(argv: list[str]):
    """Hydra's own reading of the command line; argparse's complaint as one line, or None
    where argparse answers itself (--version)."""
    from hydra._internal.utils import get_args_parser

    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint), contextlib.redirect_stdout(io.StringIO()):
            return get_args_parser().parse_args(argv)
    except SystemExit as stop:
        lines = complaint.getvalue().strip().splitlines()
        if stop.code == 0 or not lines:
            return None
        why = lines[-1].split(": error: ", 1)[-1]
        return f"{why}; valid: options first, then overrides (key=value ...), see --help"


def added_key_problem(override) -> str | None:
    """`+key=value` adds a key Hydra would take silently: only keys some preset or schema
    defines, entries of a mapping such a key holds (`+task.files.<name>`), and `+extra.`."""
    key = override.key_or_group
    if not (override.is_add() or override.is_force_add()) or "/" in key:
        return None
    if key in config_groups() or key.startswith("hydra.") or key.split(".")[0] == FREE_FORM:
        return None
    index = known_keys()
    parts = key.split(".")
    mappings = (".".join(parts[:depth]) for depth in range(2, len(parts)))
    if key in index or any(index.get(prefix, {}).get("mapping") for prefix in mappings):
        return None
    return (f"{key} is not a config key; + adds only keys a preset defines, or free-form "
            f"ones under +{FREE_FORM}.<name>" + closest(key))


def compose_problem(config_name: str, overrides: list, multirun: bool,
                    check_values: Callable[[DictConfig], None] | None) -> str | None:
    """Compose each job the command line makes; the first composition or value error."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
        jobs = job_overrides(overrides, multirun)
        if multirun:
            base = compose_or_problem(compose, config_name, jobs[0], hydra=True)
            if isinstance(base, str):
                return base
            jobs = job_overrides([*sweeper_params(base), *overrides], multirun)
        for job in jobs:
            cfg = compose_or_problem(compose, config_name, job)
            if isinstance(cfg, str):
                return cfg
            if check_values is not None:
                try:
                    check_values(cfg)
                except UserError as error:
                    return str(error) + (f" (in the job {' '.join(job)})" if len(jobs) > 1
                                         else "")
    return None


def compose_or_problem(compose, config_name: str, job: list[str], hydra: bool = False):
    try:
        return compose(config_name, overrides=job, return_hydra_config=hydra)
    except Exception as error:
        return composition_message(error)


def job_overrides(overrides: list, multirun: bool) -> list[list[str]]:
    """Each job's overrides (a run: one job); sweeps that are not lists (Optuna's
    intervals) keep the configured value, a later override of a key replaces an earlier."""
    by_key: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if override.is_discrete_sweep() and multirun:
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        elif override.is_sweep_override() and multirun:
            by_key.pop(key, None)
        else:  # without --multirun a sweep is Hydra's error, reported as one line
            by_key[key] = [override.input_line]
    choices = list(by_key.values())
    total = 1
    for values in choices:
        total *= len(values)
    if total <= MAX_JOBS:
        return [list(job) for job in itertools.product(*choices)]
    widest = max(len(values) for values in choices)
    return [[values[i % len(values)] for values in choices] for i in range(widest)]


def sweeper_params(cfg: DictConfig) -> list:
    """A preset's `hydra.sweeper.params` as overrides (the command line's come after)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = cfg.hydra.get("sweeper", {}).get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    try:
        return OverridesParser.create().parse_overrides(lines)
    except Exception:
        return []


PATTERNS = [
    (re.compile(r"Could not find '([^']+)/([^'/]+)'"), "preset"),
    (re.compile(r"Could not override '([^']+)'"), "override"),
    (re.compile(r"Could not append to config\. An item is already at '([^']+)'"), "present"),
    (re.compile(r"Could not delete from config\. '([^']+)' does not exist"), "absent"),
]


def composition_message(error: Exception) -> str:
    """Hydra's composition error as one line naming the key and what would be valid."""
    from emoe_cli.config.schema import composition_refusal

    refusal = composition_refusal(error)
    if refusal is not None:  # a value of the wrong type for a structured config
        return refusal
    text = str(error)
    removed = re.match(r"Error merging override ~(\S+)", text)
    if removed and "does not support deletion" in str(error.__cause__):
        key = removed.group(1)  # a key of a structured config (emoe_cli/config/schema.py)
        return f"~{key}: {key} is a typed setting, which cannot be removed; valid: {key}=<value>"
    for pattern, kind in PATTERNS:
        match = pattern.search(text)
        if not match:
            continue
        key = match.group(1)
        if kind == "preset":  # Hydra's own groups (hydra/launcher=...): ours are checked first
            options = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.M)
            return (f"{key}={match.group(2)} is unknown; valid: {', '.join(options)}"
                    if options else f"{key}={match.group(2)} is unknown")
        if key.startswith("hydra."):
            return f"{key} is not a Hydra setting; valid: the keys of emoe-run --cfg hydra"
        if kind == "present":
            return f"+{key}: {key} is already in the config; valid: {key}=... (no +)"
        if kind == "absent":
            return f"~{key}: {key} is not in the config" + closest(key)
        return missing_key(key)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(error).__name__


def missing_key(key: str) -> str:
    """`key` is not in the composed config: where it would come from, or the closest names."""
    index, parts = known_keys(), key.split(".")
    for depth in range(1, len(parts)):
        parent = ".".join(parts[:depth])
        if not any(path.startswith(f"{parent}.") for path in index):
            return f"{key}: " + missing_key(parent)
    entry = index.get(key, {})
    sources = entry.get("from")
    if sources and not entry["primary"]:
        return (f"{key} is not a key of this config; it comes with "
                + " or ".join(sorted(sources)))
    what = "config group or key" if "." not in key else "config key"
    return f"{key} is not a {what}" + closest(key)


def closest(key: str) -> str:
    """`; closest: a, b` from the keys beside `key` (or, under an unknown parent, the keys
    and groups at its depth), or ''."""
    index = known_keys()
    parent, _, leaf = key.rpartition(".")
    if parent and any(path.startswith(f"{parent}.") for path in index):
        siblings = {path.rpartition(".")[2]: path for path in index
                    if path.rpartition(".")[0] == parent}
        matches = [siblings[name] for name in
                   difflib.get_close_matches(leaf, list(siblings), n=3, cutoff=0.6)]
    else:
        names = {path for path in index if path.count(".") == key.count(".")}
        if "." not in key:
            names |= {group for group in config_groups() if "/" not in group}
        matches = difflib.get_close_matches(key, sorted(names), n=3, cutoff=0.6)
    return f"; closest: {', '.join(matches)}" if matches else ""


@cache
def known_keys() -> dict[str, dict]:
    """Every key path some YAML under conf/ defines, itself or through the structured config
    it pulls in (`/schema/...`): {path: {"from": {"group=choice"},
    "mapping": whether it ever holds a mapping, "primary": whether config.yaml (or another
    primary config) defines it}}."""
    import yaml

    index: dict[str, dict] = {}
    root = resources.files(CONFIG_MODULE)
    for group, name, text in yaml_files(root):
        package = package_of(text, group)
        if package is None:
            continue
        data = yaml.safe_load(text) or {}
        for path, value in [*schema_keys(data, package), *flatten(data, package)]:
            entry = index.setdefault(path, {"from": set(), "mapping": False, "primary": False})
            entry["from" if group else "primary"] = (
                entry["from"] | {f"{group}={name}"} if group else True)
            entry["mapping"] |= isinstance(value, dict)
    return index


def yaml_files(root, group: str = "") -> Iterable[tuple[str, str, str]]:
    for item in root.iterdir():
        if item.is_dir() and not item.name.startswith(("_", ".")) and item.name != "hydra":
            yield from yaml_files(item, f"{group}/{item.name}".lstrip("/"))
        elif item.name.endswith(".yaml") and (group or item.name == "config.yaml"):
            yield group, item.name[:-5], item.read_text()  # emoe-run's own primary config


def package_of(text: str, group: str) -> str | None:
    """Where a preset's keys land: its `# @package` header, else its group (root for a
    primary config); None for Hydra's own."""
    match = re.search(r"^#\s*@package\s+(\S+)", text, re.MULTILINE)
    package = match.group(1) if match else group.replace("/", ".")
    package = package.replace("_group_", group.replace("/", "."))
    package = "" if package == "_global_" else package.removeprefix("_global_.")
    return None if package.split(".")[0] == "hydra" else package


def schema_keys(data: dict, package: str) -> Iterable[tuple[str, object]]:
    """The keys of the structured configs a preset's defaults list pulls in
    (`- /schema/trainer@_here_` in trainer/default.yaml: trainer.lr, ...)."""
    from dataclasses import fields

    from emoe_cli.config.schema import STORED

    for entry in data.get("defaults") or []:
        if not (isinstance(entry, str) and entry.startswith("/schema/")):
            continue
        name, _, at = entry.removeprefix("/schema/").partition("@")
        place = package if at in ("", "_here_") else ".".join(filter(None, [package, at]))
        for spec in fields(STORED[name]):
            yield f"{place}.{spec.name}" if place else spec.name, None


def flatten(data: dict, prefix: str) -> Iterable[tuple[str, object]]:
    for key, value in data.items():
        if not isinstance(key, str) or key == "defaults" or (not prefix and key == "hydra"):
            continue
        path = f"{prefix}.{key}" if prefix else key
        yield path, value
        if isinstance(value, dict):
            yield from flatten(value, path)
