"""Lineage produced by a use case, independent of Airflow: the operator hands it to the provider."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openlineage.client.event_v2 import InputDataset, OutputDataset


@dataclass
class StepLineage:
    inputs: list[InputDataset] = field(default_factory=list)
    outputs: list[OutputDataset] = field(default_factory=list)
    run_facets: dict[str, Any] = field(default_factory=dict)
    job_facets: dict[str, Any] = field(default_factory=dict)

    def extend(self, other: StepLineage) -> None:
        self.inputs.extend(other.inputs)
        self.outputs.extend(other.outputs)
        self.run_facets.update(other.run_facets)
        self.job_facets.update(other.job_facets)
