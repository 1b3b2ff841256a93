"""logsumexp.set_num_threads and logsumexp.show_config: the public knobs of the CPU kernels."""

from __future__ import annotations

import numpy as np
import pytest

import logsumexp as lse
from logsumexp import _cpu


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    lse.set_num_threads(None)


def test_set_num_threads_sets_the_count_show_config_reports() -> None:
    lse.set_num_threads(3)
    assert lse.show_config(print_out=False)["threads"] == 3 == _cpu.num_threads()
    lse.set_num_threads(None)
    assert _cpu.num_threads() >= 1


@pytest.mark.parametrize(("bad", "err"), [(0, ValueError), (-2, ValueError), (1.5, TypeError), ("2", TypeError), (True, TypeError)])
def test_set_num_threads_refuses_bad_counts_naming_n(bad: object, err: type) -> None:
    with pytest.raises(err, match=r"\bn\b"):
        lse.set_num_threads(bad)  # type: ignore[arg-type]


def test_the_thread_count_changes_no_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long slice is cut into the kernels' fixed items whatever the thread count."""
    monkeypatch.setattr(_cpu, "PARALLEL_MIN", 0)
    x = np.random.default_rng(5).standard_normal((3, 300_001)) * 7
    lse.set_num_threads(1)
    one = lse.logsumexp(x, axis=1), lse.softmax(x, axis=1), lse.logsumexp(x)
    lse.set_num_threads(4)
    four = lse.logsumexp(x, axis=1), lse.softmax(x, axis=1), lse.logsumexp(x)
    for a, b in zip(one, four):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_show_config_prints_the_target(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = lse.show_config()
    out = capsys.readouterr().out
    assert cfg["target"] in out and "supported targets" in out
    assert set(cfg["supported_targets"]) <= {"baseline", "avx2", "avx512"}

