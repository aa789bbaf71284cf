import pytest

from tunesmith.errors import ConfigError
from tunesmith.registry import Registry


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
