"""The runs' effective degrees of freedom reach the group design as a covariate (issue 14, section 1)."""

from __future__ import annotations

import pandas as pd
import pytest

from clbp_bidsapp.config import GroupSettings
from clbp_bidsapp.group.design import build_design
from clbp_bidsapp.group.voxelwise import model_columns


def test_dof_bandpass_is_averaged_per_participant_and_usable_as_a_covariate():
    participants = pd.DataFrame(
        {"participant_id": ["sub-01", "sub-02", "sub-03"], "group": ["CLBP", "HC", "HC"], "age": [40, 50, 45]}
    )
    run_qc = pd.DataFrame(
        {
            "participant_id": ["01", "01", "02", "03"],
            "mean_fd": [0.2, 0.4, 0.1, 0.1],
            "dof_bandpass": [12.0, 20.0, 30.0, 4.0],
            "used": [True, True, True, False],  # sub-03's only run kept too few DOF
        }
    )
    design = build_design(participants, run_qc, settings=GroupSettings(), table_name="participants.tsv")
    dof = design.included.set_index("participant_id")["dof_bandpass"]
    assert dof.to_dict() == {"01": pytest.approx(16.0), "02": pytest.approx(30.0)}
    (reason,) = design.excluded.loc[design.excluded["participant_id"] == "03", "reason"]
    assert "too few degrees of freedom" in reason
    covariates, _, notes = model_columns(design.included, GroupSettings(covariates=("age", "dof_bandpass")))
    assert covariates == ["age", "dof_bandpass"] and not notes
