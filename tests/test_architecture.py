"""Imports point one way: cli -> api -> training/inference/evaluation -> data, models -> config -> registry, errors."""

import ast
from pathlib import Path

import tunesmith

ROOT = Path(tunesmith.__file__).parent
ALLOWED = {
    "registry": {"errors"},
    "errors": set(),
    "cache_dirs": set(),
    "config": {"registry", "errors"},
    "data": {"config", "registry", "errors", "cache_dirs"},
    "models": {"config", "registry", "errors", "cache_dirs"},
    "training": {"config", "registry", "errors", "reporting"},
    "evaluation": {"data", "models", "config", "registry", "errors"},
    "inference": {"data", "models", "config", "registry", "errors"},
    "reporting": {"config", "registry", "errors"},
    "api": {"config", "data", "models", "training", "evaluation", "inference", "reporting", "registry", "errors"},
    "entry": {"api", "cli", "config"},
    "cli": {"api", "config", "data", "models", "evaluation", "inference", "reporting", "errors", "registry",
            "cache_dirs"},
}


def layer(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0].removesuffix(".py")


def test_imports_point_down_the_layers():
    problems = []
    for path in ROOT.rglob("*.py"):
        own = layer(path)
        if own in ("__init__", "__main__"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tunesmith."):
                target = node.module.split(".")[1]
                if target != own and target not in ALLOWED[own]:
                    problems.append(f"{path.relative_to(ROOT)} imports {node.module}")
    assert not problems, problems


# --- decide once: no "auto" below api/ -------------------------------------------------------------

BELOW_API = ("data", "models", "training", "evaluation", "inference", "reporting")
# "auto" strings that are not a decision: DeepSpeed's own vocabulary (DeepSpeed fills these in), and a
# built-in dataset's metadata, written as the data.format value its rows need (read by api/choices/data.py).
OTHER_TOOLS_AUTO = {("training/arguments.py", "deepspeed_config"), ("data/builtin/__init__.py", "BuiltinDataset")}
TASK_NAMES = {"causal_lm", "seq2seq", "sequence_classification"}
TRAINER_NAMES = {"sft", "seq2seq", "classification", "dpo", "orpo", "kto", "reward", "grpo", "grad_ascent",
                 "grad_diff", "npo"}


def _below_api_modules():
    for part in BELOW_API:
        for path in sorted((ROOT / part).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text())


def _functions_by_line(tree):
    """{line: name of the top-level function or class holding it}."""
    spans = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                spans[line] = node.name
    return spans


def _names_in(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}


def test_nothing_below_api_reads_auto():
    """Every ``auto`` is decided in api/ (``api/choices``); the layers below receive the chosen value
    and never name ``auto`` (config/ declares it, as ``config.vocabulary.Auto``)."""
    problems = []
    for rel, tree in _below_api_modules():
        functions = _functions_by_line(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value == "auto":
                if (rel, functions.get(node.lineno)) not in OTHER_TOOLS_AUTO:
                    problems.append(f"{rel}:{node.lineno}: the string 'auto'")
            elif isinstance(node, (ast.Name, ast.Attribute)) and (
                    getattr(node, "id", None) in ("Auto", "is_auto") or getattr(node, "attr", None) in ("AUTO", "is_auto")):
                problems.append(f"{rel}:{node.lineno}: reads config's auto ({ast.unparse(node)})")
            elif isinstance(node, ast.alias) and node.name in ("Auto", "is_auto"):
                problems.append(f"{rel}: imports {node.name}")
    assert not problems, "\n".join(problems)


def _name_literals(node):
    """The task or trainer names among the string constants ``node`` is or holds (a tuple, list or set)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {i.value for i in items if isinstance(i, ast.Constant) and i.value in TASK_NAMES | TRAINER_NAMES}


def test_nothing_below_api_compares_a_task_or_trainer_name_with_a_string():
    """Task checks use ``config.vocabulary.Task``; trainer checks use the traits trainers are
    registered with (``training.trainers.trainer_traits``)."""
    problems = []
    for rel, tree in _below_api_modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            named = [s for s in sides if any("task" in n.lower() or "trainer" in n.lower() for n in _names_in(s))]
            literal = set().union(*(_name_literals(s) for s in sides))
            if named and literal:
                problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not problems, "\n".join(problems)


def test_the_checks_above_catch_what_they_look_for(tmp_path):
    """The two scans find an ``auto`` literal and a task compared with a string (they can fail)."""
    tree = ast.parse('if cfg.packing == "auto" and task == "causal_lm" or trainer in ("dpo", "kto"):\n    pass\n')
    autos = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "auto"]
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)
                and any(any("task" in x or "trainer" in x for x in _names_in(s)) for s in [n.left, *n.comparators])
                and set().union(*(_name_literals(s) for s in [n.left, *n.comparators]))]
    assert len(autos) == 1 and len(compares) == 2


# The one module allowed to reach into transformers' Trainer (its private members are checked by
# tests/training/test_guarded_trainer.py, which fails when transformers changes them).
TRAINER_ADAPTER = "training/guarded_trainer.py"


def private_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """Assignments to another object's private attribute (``obj._name = ...``, ``setattr(obj, "_name", ...)``)."""
    found = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for sub in ast.walk(target):
                if (isinstance(sub, ast.Attribute) and sub.attr.startswith("_") and not sub.attr.startswith("__")
                        and not (isinstance(sub.value, ast.Name) and sub.value.id in ("self", "cls"))):
                    found.append((node.lineno, ast.unparse(sub)))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
                and str(node.args[1].value).startswith("_") and not str(node.args[1].value).startswith("__")):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_only_the_trainer_adapter_writes_other_objects_private_attributes():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == TRAINER_ADAPTER:
            continue
        problems += [f"{rel}:{line}: {text}" for line, text in private_writes(ast.parse(path.read_text()))]
    assert not problems, "\n".join(problems)


def test_the_private_write_check_catches_both_forms():
    tree = ast.parse("config._attn_implementation = 'sdpa'\nsetattr(trainer, '_flag', 1)\nself._mine = 2\n")
    assert [line for line, _ in private_writes(tree)] == [1, 2]
