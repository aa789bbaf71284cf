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
