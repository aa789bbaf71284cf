"""Every public name in the package has a docstring: modules, functions, classes and their methods."""

import importlib
import inspect
import pkgutil

import tunesmith

# Methods whose meaning is fixed by Python or by the base class they override.
INHERITED_MEANING = {"__call__", "__init__", "__post_init__", "__getattr__", "__dir__", "__len__", "__iter__",
                     "__contains__", "__getitem__", "__enter__", "__exit__", "__repr__", "__str__"}


def public_modules():
    for info in pkgutil.walk_packages(tunesmith.__path__, "tunesmith."):
        if info.name.endswith("__main__"):
            continue
        yield importlib.import_module(info.name)


def undocumented_in(module):
    missing = []
    if not (module.__doc__ or "").strip():
        missing.append(module.__name__)
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if not (obj.__doc__ or "").strip():
            missing.append(f"{module.__name__}.{name}")
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_") or attr in INHERITED_MEANING or not inspect.isfunction(member):
                    continue
                if not inspect.getdoc(getattr(obj, attr)):  # getdoc also finds a base class's docstring
                    missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


def test_every_public_name_has_a_docstring():
    missing = [name for module in public_modules() for name in undocumented_in(module)]
    assert not missing, "no docstring: " + ", ".join(missing)
