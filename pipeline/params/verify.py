"""The `verify:` section: how far a reproduction's headline metrics may move from the committed ones."""

from __future__ import annotations

from pydantic import Field

from pipeline.params.common import Strict


class Verify(Strict):
    """`make verify` (pipeline/tools/verify.py): each metrics.json key's allowed absolute difference.

    A key is a metric name (`accuracy`: every model's) or `<name>.<metric>` (`transfer.accuracy`:
    the transfer model's alone, as reports/metrics.json names it), the more specific one winning.
    """

    tolerance: dict[str, float] = Field(min_length=1)

    def allowed(self, name: str, metric: str) -> float | None:
        """The tolerance of `metric` in the metrics.json of `name`; None where none is declared."""
        return self.tolerance.get(f"{name}.{metric}", self.tolerance.get(metric))
