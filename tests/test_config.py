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


def test_every_field_carries_a_check_and_the_defaults_pass_it():
    from dataclasses import fields

    settings = Settings()
    for section in fields(settings):
        for f in fields(getattr(settings, section.name)):
            assert "check" in f.metadata, f"{section.name}.{f.name} has no Check"
    assert settings.validate() == []


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('[inputs]\nparticipant_label = "01"', "[inputs] participant_label: expected a list of texts"),
        ('[execution]\nnprocs = "two"', "[execution] nprocs: expected an integer >= 1, got 'two'"),
        ("[execution]\nnprocs = true", "[execution] nprocs: expected an integer >= 1, got True"),
        ("[ml]\nn_permutations = -5", "[ml] n_permutations: expected an integer >= 0, got -5"),
        ("[group]\ncluster_forming_p = 7", "[group] cluster_forming_p: expected a number in (0, 1), got 7"),
        ("[denoise]\nfd_thresh = -1", "[denoise] fd_thresh: expected a number >= 0, got -1"),
        ("[metrics]\nreho_neighbourhood = 8", "[metrics] reho_neighbourhood: expected one of 7, 19, 27, got 8"),
        ("[denoise]\nband_pass = [0.01]", "[denoise] band_pass: expected a list of 0 or 2 numbers, each > 0"),
        ("[denoise]\nband_pass = [0.1, 0.01]", "[denoise] band_pass [0.1, 0.01]: need LOW < HIGH"),
        (
            "[connectivity]\ngraph_sparsity = [0.4, 0.05, 0.01]",
            "[connectivity] graph_sparsity [0.4, 0.05, 0.01]: need LOW <= HIGH",
        ),
        ('[denoise]\ndummy_scans = "some"', "[denoise] dummy_scans: expected 'auto' or a number of volumes >= 0"),
        ("[denoise]\nmin_time = nan", "[denoise] min_time: expected a number >= 0, got nan"),
        ('[ml]\nmodels = ["linear_svm", "svm"]', "[ml] models: expected a list of texts, each one of linear_svm"),
        ("[execution]\nplugin_args = 3", "[execution] plugin_args: expected a table, got 3"),
    ],
)
def test_toml_values_are_type_and_range_checked(toml, problem):
    """A replayed config skipped every check: "01" became labels 0 and 1, "two" failed in every participant."""
    from clbp_bidsapp.config import SettingsError

    with pytest.raises(SettingsError) as exc:
        Settings.from_toml(toml)
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].startswith(problem), exc.value.problems


def test_every_problem_is_reported_at_once():
    from clbp_bidsapp.config import SettingsError

    with pytest.raises(SettingsError) as exc:
        Settings.from_toml(
            '[execution]\nnprocs = "two"\nfoo = 1\n[ml]\nn_permutations = -5\n[metrics]\ndc_threshold = 1'
        )
    assert len(exc.value.problems) == 4


def test_validate_names_the_flag_given():
    bad = Settings().replace({"ml": {"n_permutations": -5}, "denoise": {"band_pass": (0.2, 0.1)}})
    assert bad.validate({"ml.n_permutations": "--ml-permutations", "denoise.band_pass": "--band-pass"}) == [
        "--ml-permutations: expected an integer >= 0, got -5",
        "--band-pass [0.2, 0.1]: need LOW < HIGH (Hz), e.g. 0.01 0.08",
    ]


def test_every_parser_destination_is_a_checked_setting():
    """The parser's words are converted by the field's Check: each destination is a field (or a file option)."""
    from clbp_bidsapp.cli.parser import build_parser, flag_names
    from clbp_bidsapp.config import field_check

    names = flag_names(build_parser())
    assert names["ml.n_permutations"] == "--ml-permutations"
    assert names["denoise.band_pass"] == "--band-pass"
    assert names["execution.work_dir"] == "--work-dir"
    for dest in names:
        if "." in dest:
            assert field_check(dest) is not None


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
