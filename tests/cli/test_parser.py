"""The command line: every flag lands in its setting, errors are reported all at once, no traceback."""

import json

import pytest

from clbp_bidsapp.cli.parser import build_parser
from clbp_bidsapp.cli.run import main, parse_settings
from clbp_bidsapp.errors import UserError


def test_build_parser_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build_parser()
    assert list(tmp_path.iterdir()) == []


def test_every_flag_reaches_its_setting(dataset, tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"acquisition": "mb4"}}))
    argv = [
        str(dataset),
        str(tmp_path / "out"),
        "participant",
        "--participant_label",
        "sub-01",
        "02",
        "--session-id",
        "ses-A",
        "--task-id",
        "rest",
        "--task-pattern",
        "resting",
        "--bids-filter-file",
        str(filters),
        "--space",
        "MNI152NLin6Asym:res-2",
        "--bids-database-dir",
        str(tmp_path / "db"),
        "--skip-bids-validation",
        "--strategy",
        "36P",
        "--fd-thresh",
        "0.3",
        "--dvars-thresh",
        "1.5",
        "--censor-neighbours",
        "--dummy-scans",
        "4",
        "--min-time",
        "200",
        "--band-pass",
        "0.009",
        "0.1",
        "--save-denoised",
        "--group-column",
        "diagnosis",
        "--patient-label",
        "P",
        "--control-label",
        "C",
        "--min-per-group",
        "3",
        "-w",
        str(tmp_path / "work"),
        "--nprocs",
        "3",
        "--omp-nthreads",
        "2",
        "--mem-gb",
        "8",
        "--plugin",
        "Linear",
        "--plugin-args",
        '{"a": 1}',
        "--random-seed",
        "42",
        "--stop-on-first-crash",
        "--clean-workdir",
        "--skip",
        "tsnr",
        "-vv",
    ]
    s, _ = parse_settings(argv)
    assert s.inputs.participant_label == ("01", "02")
    assert s.inputs.session_id == ("A",)
    assert s.inputs.task_id == ("rest",)
    assert s.inputs.task_pattern == "resting"
    assert s.inputs.bids_filters == {"bold": {"acquisition": "mb4"}}
    assert (s.inputs.space, s.inputs.res) == ("MNI152NLin6Asym", "2")
    assert s.execution.bids_database_dir == tmp_path / "db"
    assert s.execution.skip_bids_validation
    d = s.denoise
    assert (d.strategy, d.fd_thresh, d.dvars_thresh, d.censor_neighbours) == ("36P", 0.3, 1.5, True)
    assert (d.dummy_scans, d.min_time, d.band_pass, d.save_denoised) == ("4", 200.0, (0.009, 0.1), True)
    g = s.group
    assert (g.group_column, g.patient_label, g.control_label, g.min_per_group) == ("diagnosis", "P", "C", 3)
    e = s.execution
    assert (e.work_dir, e.nprocs, e.omp_nthreads, e.mem_gb) == (tmp_path / "work", 3, 2, 8.0)
    assert (e.plugin, dict(e.plugin_args), e.random_seed) == ("Linear", {"a": 1}, 42)
    assert e.stop_on_first_crash and e.clean_workdir
    assert (e.skip, e.verbosity) == (("tsnr",), 2)


def test_defaults_come_from_the_settings(dataset, tmp_path):
    s, _ = parse_settings([str(dataset), str(tmp_path / "out"), "participant"])
    assert s.denoise.fd_thresh == 0.5
    assert s.denoise.band_pass == (0.01, 0.08)
    assert s.inputs.space == "MNI152NLin2009cAsym"
    assert s.inputs.res is None


def test_no_band_pass(dataset, tmp_path):
    s, _ = parse_settings([str(dataset), str(tmp_path / "out"), "participant", "--no-band-pass"])
    assert s.denoise.band_pass == ()


def test_all_errors_are_reported_at_once(dataset, tmp_path, capsys):
    argv = [
        str(dataset),
        str(tmp_path / "out"),
        "participant",
        "--fd-thresh",
        "lots",
        "--nprocs",
        "0",
        "--skip",
        "nonsense",
        "--participant-label",
        "../x",
        "--band-pass",
        "0.1",
        "0.01",
        "--plugin-args",
        "[1]",
        "--strategy",
        "no-such-strategy",
    ]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("clbp-bidsapp: error:")]
    assert len(lines) == 7, err
    for fragment in (
        "--fd-thresh",
        "--nprocs",
        "nonsense",
        "../x",
        "--band-pass",
        "--plugin-args",
        "--strategy",
    ):
        assert fragment in err
    assert "Traceback" not in err


def test_missing_dataset_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"clbp-bidsapp: error: BIDS_DIR {tmp_path / 'nope'} does not exist or is not a folder"]


def test_not_a_bids_dataset(tmp_path, capsys):
    (tmp_path / "plain").mkdir()
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "plain"), str(tmp_path / "out"), "participant"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "dataset_description.json not found" in err
    assert "no fMRIPrep derivatives" in err


def test_output_inside_input_exits_4(dataset, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(dataset), str(dataset / "code" / "clbp"), "participant"])  # the raw part, not derivatives/
    assert exc.value.code == 4
    assert "inside the input dataset" in capsys.readouterr().err


def test_config_file_is_overridden_by_flags(dataset, tmp_path):
    first, _ = parse_settings(
        [str(dataset), str(tmp_path / "out"), "participant", "--fd-thresh", "0.2", "--strategy", "36P"]
    )
    saved = tmp_path / "config.toml"
    saved.write_text(first.to_toml())
    again, _ = parse_settings(
        [
            str(dataset),
            str(tmp_path / "out"),
            "participant",
            "--config-file",
            str(saved),
            "--fd-thresh",
            "0.9",
        ]
    )
    assert again.denoise.strategy == "36P"
    assert again.denoise.fd_thresh == 0.9


def test_malformed_config_and_filter_files(dataset, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[denoise\nfd_thresh = ")
    filt = tmp_path / "f.json"
    filt.write_text("{not json")
    with pytest.raises(UserError) as exc:
        parse_settings(
            [
                str(dataset),
                str(tmp_path / "out"),
                "participant",
                "--config-file",
                str(bad),
                "--bids-filter-file",
                str(filt),
            ]
        )
    assert "is not valid JSON" in str(exc.value)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("clbp-bidsapp ")


def test_unknown_option_is_a_user_error(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(dataset), str(tmp_path / "out"), "participant", "--frobnicate"])
    assert exc.value.code == 2
    assert "--frobnicate" in capsys.readouterr().err
