"""Which entries a close covers, as one SQL predicate every reader of that range shares.

Why a module of its own: the close (:mod:`ledger.storage.closes`), a collective's split
(:mod:`ledger.storage.collectives`, which the close's module imports) and the auditors' totals
(:mod:`ledger.storage.audit`) must select exactly the same entries, or a statement, its members'
portions and the verified totals would disagree. It imports nothing of ours.
"""

COVERED = "entry_id <= ? AND (period = ? OR (period < ? AND entry_id > ?))"
"""The entries a close of ``period`` covers, given its watermark and the previous close's:
entries of the period up to the watermark, plus entries of earlier periods booked after the
previous close (prior-period adjustments). Parameters: watermark, period, period, previous."""
