"""The group permutation tests fanned out as SLURM job arrays on a real cluster give the single-process bytes.

Uses the cluster of tests/cluster/test_slurm.py (skipped with the reason when none answers, failing under
CLBP_REQUIRE_SLURM=1, which CI sets after .ci/slurm-up.sh). The executor is the one ``--plugin SLURM`` gives the
group level (``group/fanout.py``); tests/group/test_fanout.py shows the command line gives the same bytes through
it as a single process, with the process pool.
"""

from __future__ import annotations

import os

import pytest

from clbp_bidsapp.errors import ExitCode, InputError
from clbp_bidsapp.group import fanout
from tests.cluster.test_slurm import cluster  # noqa: F401  (the fixture)
from tests.group.test_fanout import OPTIONS, assert_same_result, problem  # noqa: F401  (problem: the fixture)

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def logname(monkeypatch):
    monkeypatch.setenv("LOGNAME", os.environ.get("LOGNAME", "root"))


def test_job_arrays_give_the_single_process_result(cluster, problem, tmp_path):  # noqa: F811
    """Two units, two array tasks each (chunks_per_job=2 of 3 chunks), one job array per unit."""
    data, design, mask = problem
    units = [(data, "gpd"), (data[::-1].copy(), "none")]
    expected = [fanout.Serial().submit(d, design, label="u", mask=mask, tail=t, **OPTIONS)() for d, t in units]
    with fanout.Slurm(tmp_path, chunks_per_job=2, units_per_array=1) as slurm:
        pending = [slurm.submit(d, design, label="u", mask=mask, tail=t, **OPTIONS) for d, t in units]
        results = [finish() for finish in pending]
        assert slurm.arrays == 2
        assert [unit.tasks for unit in slurm.units] == [[range(0, 2), range(2, 3)]] * 2
    for got, want in zip(results, expected, strict=True):
        assert_same_result(got, want)
    assert list(tmp_path.iterdir()) == []  # unit data, task files and logs removed after success


def test_a_failed_array_task_is_reported_with_its_logs_kept(cluster, problem, tmp_path):  # noqa: F811
    data, design, mask = problem
    slurm = fanout.Slurm(tmp_path, chunks_per_job=2)
    finish = slurm.submit(data, design, label="alff (CLBPvsHC) permutations", mask=mask, tail="none", **OPTIONS)
    slurm.units[0].data_path.unlink()  # every task of the array fails to read it
    with pytest.raises(InputError, match=r"job array ended with code .* 2 task\(s\) without a result") as caught:
        finish()
    assert caught.value.exit_code == ExitCode.SOME_FAILED
    slurm.close()
    logs = sorted((slurm.folder / "array-000").glob("task-*.log"))
    assert [log.name for log in logs] == ["task-0.log", "task-1.log"]
    assert "unit-0000.npy" in logs[0].read_text()  # the task's own error, kept for the user


def test_an_nbs_job_array_gives_the_single_process_result(cluster, tmp_path):  # noqa: F811
    """The connectome's Network-Based Statistic as array tasks (one chunk each) merges to the one-process bytes."""
    from tests.group.test_connectome_fanout import N_PERM, planted_edges

    edges, design, n_nodes = planted_edges()
    options = {"kind": "nbs", "n_nodes": n_nodes, "threshold": 2.5, "n_permutations": N_PERM, "seed": 4}
    expected = fanout.Serial().submit(edges, design, label="nbs", **options)()
    with fanout.Slurm(tmp_path, chunks_per_job=1) as slurm:
        got = slurm.submit(edges, design, label="nbs", **options)()
        assert slurm.arrays == 1 and len(slurm.units[0].tasks) == 3
    assert got.null.tobytes() == expected.null.tobytes() and expected.components[0].p_fwe < 0.05
    assert [(c.edges.tolist(), c.p_fwe) for c in got.components] == [(c.edges.tolist(), c.p_fwe)
                                                                      for c in expected.components]  # fmt: skip
