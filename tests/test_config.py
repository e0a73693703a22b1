from pathlib import Path

import pytest

from clbp_bidsapp.config import DenoiseSettings, ExecutionSettings, Settings


def test_toml_round_trip_preserves_every_field():
    settings = Settings().replace(
        {
            "execution": {
                "bids_dir": Path("/data/bids"),
                "nprocs": 4,
                "skip": ("tsnr",),
                "plugin_args": {"sbatch_args": "-p short"},
            },
            "inputs": {
                "participant_label": ("01", "02"),
                "res": "2",
                "bids_filters": {"bold": {"acq": "mb"}},
            },
            "denoise": {"band_pass": (), "dvars_thresh": 1.5, "fd_thresh": 0.2},
        }
    )
    again = Settings.from_toml(settings.to_toml())
    assert again == settings
    assert again.denoise.band_pass == ()  # "no band-pass" survives the round trip
    assert again.result_hash() == settings.result_hash()


def test_result_hash_ignores_execution_details_but_not_science():
    base = Settings()
    faster = base.replace({"execution": {"nprocs": 8, "work_dir": Path("/scratch")}})
    other_strategy = base.replace({"denoise": {"strategy": "36P"}})
    other_seed = base.replace({"execution": {"random_seed": 7}})
    assert faster.result_hash() == base.result_hash()
    assert other_strategy.result_hash() != base.result_hash()
    assert other_seed.result_hash() != base.result_hash()


def test_unknown_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.from_dict({"denoise": {"fd_threshold": 0.3}})
    with pytest.raises(ValueError, match="unknown settings section"):
        Settings.from_dict({"denoising": {}})


def test_sections_are_frozen():
    with pytest.raises(AttributeError):
        DenoiseSettings().fd_thresh = 0.1  # type: ignore[misc]
    assert ExecutionSettings().random_seed == 0


def test_participant_hash_covers_participant_settings_only():
    """Group and ML settings never change the participant hash; denoising, metrics, inputs and the seed do."""
    base = Settings()
    same = base.replace({
        "group": {"n_permutations": 10, "covariates": ("age",)},
        "ml": {"n_splits": 3},
        "execution": {"nprocs": 4, "output_dir": Path("/elsewhere")},
    })  # fmt: skip
    assert same.participant_hash() == base.participant_hash()
    assert same.result_hash() != base.result_hash()  # the whole-run hash still sees the group settings
    for change in (
        {"denoise": {"strategy": "36P"}},
        {"metrics": {"smoothing_fwhm": 0.0}},
        {"connectivity": {"atlases": ("aal",)}},
        {"inputs": {"res": "2"}},
        {"execution": {"random_seed": 1}},
    ):
        assert base.replace(change).participant_hash() != base.participant_hash(), change
    assert set(base.participant_settings()) == {"execution", "inputs", "denoise", "metrics", "connectivity"}
    assert base.participant_settings()["execution"] == {"random_seed": 0}
