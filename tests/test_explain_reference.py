"""Same inputs, same heatmaps: every method reproduces the maps the explain code computed before
the registry refactor (fixture and its inputs: tests/explain_reference.py)."""

import numpy as np
import pytest

import explain_reference as ref


@pytest.fixture(scope="module")
def stored():
    data = np.load(ref.FIXTURE)
    return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def computed(stored):
    state = {k.split(":", 1)[1]: v for k, v in stored.items() if k.startswith("state:")}
    return ref.compute(ref.small_net(state))


@pytest.mark.parametrize("key", [c[0] for c in ref.CASES] + [c[0] for c in ref.DEFAULT_MODEL_CASES])
def test_heatmaps_match_the_reference(stored, computed, key):
    np.testing.assert_array_equal(computed[key + ":targets"], stored[key + ":targets"])
    expected = stored[key].astype(np.float32)
    assert computed[key].shape == expected.shape
    # float16 storage rounds by at most 2.5e-4 on [0, 1]; the rest is float32 summation order.
    np.testing.assert_allclose(computed[key], expected, atol=2e-3, err_msg=key)
