"""Names of the optional stages that ``--skip`` accepts, with what each one writes (from :mod:`clbp_bidsapp.registry`).

Only stages that exist are listed: an unknown name given to ``--skip`` is an error, never silently ignored.
"""

from __future__ import annotations

from clbp_bidsapp import registry

PARTICIPANT_STAGES: dict[str, str] = {stage.name: stage.description for stage in registry.PARTICIPANT_STAGES}
GROUP_STAGES: dict[str, str] = {stage.name: stage.description for stage in registry.GROUP_STAGES}
