import pytest

from tunesmith.errors import ConfigError
from tunesmith.registry import Registry, check_arguments


def test_register_get_and_names():
    reg = Registry("widget", key="x.widget")

    @reg.register("alpha")
    def alpha():
        return 1

    assert reg.get("alpha") is alpha
    assert reg.names() == ["alpha"]
    assert "alpha" in reg


def test_unknown_name_suggests_and_lists_known():
    reg = Registry("widget", key="x.widget")
    reg.register("alpha", 1)
    reg.register("beta", 2)
    with pytest.raises(ConfigError) as err:
        reg.get("alpah")
    msg = str(err.value)
    assert "x.widget" in msg and "'alpah'" in msg and "Did you mean 'alpha'" in msg and "beta" in msg


def test_duplicate_registration_is_refused_unless_overwrite():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("a", 2)
    reg.register("a", 2, overwrite=True)
    assert reg.get("a") == 2


def test_dotted_path_resolves_to_the_users_object_and_is_cached():
    reg = Registry("widget", key="x.widget")
    got = reg.get("json:dumps")
    import json

    assert got is json.dumps and reg.get("json:dumps") is got
    assert "json:dumps" not in reg  # imported, not registered


@pytest.mark.parametrize("name, match", [
    ("no_such_module_xyz:thing", "cannot import module 'no_such_module_xyz'"),
    ("json:lods", "'json' has no attribute 'lods'. Did you mean 'loads'"),
])
def test_bad_dotted_paths_name_the_key(name, match):
    with pytest.raises(ConfigError, match=match) as err:
        Registry("widget", key="x.widget").get(name)
    assert str(err.value).startswith("x.widget: ")


def test_names_with_a_colon_cannot_be_registered():
    with pytest.raises(ConfigError, match="without ':'"):
        Registry("widget").register("a:b", 1)


def build(split, seed, n, topic="math", *, level=1):
    return [split, seed, n, topic, level]


def test_arguments_are_checked_against_the_signature():
    check_arguments(build, {"topic": "x", "level": 2}, "data.train", provided=3)
    with pytest.raises(ConfigError, match=r"data.train_args: 'topik' is not a parameter of build\(split, seed, n, "
                                          r"topic='math', \*, level=1\). Did you mean 'topic'\? Allowed: topic, level"):
        check_arguments(build, {"topik": "x"}, "data.train", provided=3)
    with pytest.raises(ConfigError, match="'seed' is passed by tunesmith"):
        check_arguments(build, {"seed": 3}, "data.train", provided=3)


def test_missing_required_arguments_are_named():
    class Needs:
        def __init__(self, path, mode="r"):
            self.path = path

    with pytest.raises(ConfigError, match=r"x.widget_args: .*needs 'path'; set x.widget_args.path=..."):
        check_arguments(Needs, {"mode": "w"}, "x.widget")
    check_arguments(Needs, {"path": "p"}, "x.widget")
    with pytest.raises(ConfigError, match=r"other.key: .*needs 'path'"):
        check_arguments(Needs, {}, "x.widget", args_key="other.key")


def test_keyword_catch_all_accepts_anything_but_what_tunesmith_passes():
    def loader(name_or_path, task, dtype, device, **kwargs):
        return kwargs

    check_arguments(loader, {"anything": 1}, "model.loader", provided=4)
    with pytest.raises(ConfigError, match="'task' is passed by tunesmith"):
        check_arguments(loader, {"task": "x"}, "model.loader", provided=4)


def test_build_instantiates_classes_and_binds_functions():
    objects = Registry("handler", key="h", instantiate=True, provided=("system_prompt",))

    class Handler:
        def __init__(self, scale=1, system_prompt=None):
            self.scale, self.system_prompt = scale, system_prompt

    objects.register("h", Handler)
    made = objects.build("h", {"scale": 3}, supplied={"system_prompt": "Be brief."})
    assert (made.scale, made.system_prompt) == (3, "Be brief.")

    factories = Registry("factory", key="f", provided=("model",))
    factories.register("f", lambda model, factor=1: model * factor)
    assert factories.build("f", {"factor": 4})(model=2) == 8
    assert factories.build("f")(model=2) == 2


def test_dict_style_registration_remove_and_adapt():
    reg = Registry("widget", key="x.widget", adapt=lambda name, obj: ("adapted", obj))
    reg["a"] = 1  # REGISTRY["a"] = obj, as Hydra-based toolkits write it
    assert reg["a"] == ("adapted", 1) == reg.get("a") and "a" in reg
    reg["a"] = 1  # the same object again is fine
    with pytest.raises(ConfigError, match="already registered"):
        reg["a"] = 2
    reg.remove("a")
    assert "a" not in reg
    with pytest.raises(ConfigError, match="unknown widget 'a'"):
        reg.remove("a")

    @reg.register("b")
    def b():
        pass

    assert reg.get("b") == ("adapted", b)  # the decorator form returns the function itself
