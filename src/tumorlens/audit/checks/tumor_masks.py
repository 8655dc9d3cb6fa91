"""Where the audit's tumor masks come from: the dataset's expert masks, and (unless
`--no-predicted-masks`) the bundled segmenter's for every audited slice that has none (Kaggle), so
that the pointing game, energy in the tumor and the counterfactuals run there too. Its section
says which (`mask_source`), quotes the segmenter's validated Dice for every tumor figure, and,
where an audited slice is a figshare slice (same perceptual hash), how well its predicted mask
agrees with that slice's expert mask."""

from __future__ import annotations

from dataclasses import dataclass

from tumorlens.audit.checks.base import AuditContext, Check, CheckResult


@dataclass
class TumorMaskResult(CheckResult):
    fill: dict
    figshare_agreement: dict | None

    def to_summary(self) -> dict:
        return {"tumor_masks": {**self.fill, "figshare_agreement": self.figshare_agreement}}


class TumorMaskCheck(Check):
    name = "tumor_masks"

    def start(self, ctx: AuditContext) -> None:
        from tumorlens.segment.audit import fill_predicted_masks

        self.predicted: set[int] = set()  # audited slices whose mask is the segmenter's
        segmenter = self.segmenter = None
        if getattr(ctx.config, "predicted_masks", False):
            from tumorlens.segment.model import load_segmenter

            segmenter = self.segmenter = load_segmenter(getattr(ctx.config, "segmenter", None))
        before = [s.mask is None for s in ctx.audited.samples]
        self.fill = fill_predicted_masks(ctx.audited, segmenter, batch_size=ctx.config.forward_batch)
        self.predicted = {i for i, was_none in enumerate(before) if was_none}

    def finish(self, ctx: AuditContext) -> TumorMaskResult:
        agreement = None
        figshare = getattr(ctx.config, "figshare_reference", None)
        if self.fill.n_predicted and figshare:
            from tumorlens.data.sources import open_dataset
            from tumorlens.segment.audit import figshare_agreement

            ref = open_dataset(figshare, progress=False)
            # patients the segmenter was never trained on (the held-out list it was trained without)
            never = set(self.segmenter.provenance.get("excluded_patients") or [])
            preds = [ctx.audited.samples[i].mask if i in self.predicted else None for i in range(len(ctx.audited))]
            agreement = figshare_agreement(ctx.audited, preds, ref, never_trained=never)
        return TumorMaskResult(self.fill.to_dict(), agreement)
