"""Accounting for the release service: price lists, reconciled counts, balances and holds,
shared accounts, PaperCut-managed printers, reports (docs/accounting.md).

``pricing`` is pure; ``accounts`` and ``usage`` change the database inside the caller's
transaction (``ledger`` calls them from the job book); ``reports`` only reads; ``papercut`` talks
to PaperCut; ``api`` is the HTTP edge.
"""
